//! lbsim: a local reverse proxy that fails like a cloud load balancer.
//!
//! Put it in front of an app and it answers as AWS's Application Load Balancer, either
//! generation of Google Cloud's external Application Load Balancer, or the Kubernetes
//! NGINX ingress controller would: the same 502, 503 and 504
//! pages, for the same reasons, with the same timers, and a log line that says which
//! setting to change.
//!
//! A cloud is data ([`profile`]); there is one engine ([`proxy`]). Modules, in the
//! order a request meets them:
//!
//! - [`config`]: a profile plus the user's flags; every timer is scaled once here.
//! - [`proxy`]: the engine. Accepts client connections, forwards, races the deadline.
//! - [`validate`]: the request-head checks each cloud makes before anything reaches the app:
//!   sizes, syntax, `TRACE`, `X-Forwarded-For`, request-smuggling (desync) classification.
//! - [`client`]: the client side: idle client connections, stalled requests (408), 460;
//!   it follows each request body's framing (`chunked`) so every pipelined head is judged.
//! - [`drain`]: graceful shutdown of client connections (finish the request, then close).
//! - [`forward`]: headers the cloud adds on the way through (`X-Forwarded-For`, trace ids).
//! - [`targets`]: the target group: states, and which target serves the next request.
//! - [`health`]: active health checks that move targets between states.
//! - [`pool`]: lbsim's own keep-alive connections to targets, and the keep-alive race.
//! - [`deadline`]: idle and end-to-end timeouts, and the body wrappers that enforce them.
//! - [`websocket`]: what the relay of an upgraded (WebSocket) connection needs: its
//!   activity clock, and the handshake's accept key for the mock app.
//! - [`reason`]: why the LB answered instead of the app, and the fix in words.
//! - [`respond`]: every LB-generated response, built from profile data in one place.
//! - [`logline`]: what the engine remembers of a request for its access-log line.
//! - [`stats`]: counters by status and by cause ([`Reason`]; [`Counts::count`] reads one).
//! - [`events`]: the engine's event stream ([`Event`]), for [`Control::subscribe`] and
//!   the control API's `GET /events`.
//! - [`report`]: the start-up state and the summary printed for a person.
//! - [`accesslog`]: one line per finished request, as the cloud would log it, written off the request path.
//! - [`upstream`]: the embedded mock app (`lbsim upstream`).
//! - [`sim`]: the library API for test harnesses ([`Simulator`]).
//! - [`doctor`]: `lbsim doctor`, a client that probes a running app for the keep-alive,
//!   health-check and latency settings that lead to 502/503/504 behind the cloud's LB;
//!   `--serve-config` ([`doctor::serve_config`]) makes the same checks on a Ray Serve or
//!   Anyscale service config file, with no app running.
//! - [`admin`]: the control API, JSON over HTTP for harnesses in any language (`--admin`).
//! - [`scenario`]: scenario files (TOML) played end to end with a timeline and PASS/FAIL
//!   per expectation; `lbsim scenario` and the narrated `lbsim demo`.
//! - [`facts`]: every value a profile holds, with its source and confidence (`lbsim facts`).
//! - [`triage`]: `lbsim triage`, which reads ALB access logs and GCP request logs and names
//!   the cause of each error the load balancer made itself, with its fix and scenario.
//! - [`http1`]: the raw HTTP/1 response reader the doctor, the health checker and the
//!   tests share: heads, RFC 9112 body framing, chunked bodies, under the caller's clock.
//! - [`cli`]: command-line flags; `main.rs` only parses and calls in.
//!
//! # In a test harness
//!
//! Start the mock app and a simulator on port 0, drive it over real sockets, assert on
//! what the load balancer did:
//!
//! ```no_run
//! use std::time::Duration;
//! use lbsim::{Cloud, MockOptions, MockUpstream, Reason, Simulator};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! #[tokio::test]
//! async fn slow_app_gets_the_alb_504() {
//!     let app = MockUpstream::start("127.0.0.1:0".parse().unwrap(), MockOptions::default())
//!         .await
//!         .unwrap();
//!     let lb = Simulator::builder(Cloud::Aws)
//!         .upstream(app.addr)
//!         .no_health_checks()
//!         .idle_timeout(Duration::from_millis(300))
//!         .start()
//!         .await
//!         .unwrap();
//!     let mut conn = tokio::net::TcpStream::connect(lb.addr()).await.unwrap();
//!     conn.write_all(b"GET /sleep/2 HTTP/1.1\r\nHost: t\r\n\r\n").await.unwrap();
//!     let mut buf = vec![0; 1024];
//!     let n = conn.read(&mut buf).await.unwrap();
//!     assert!(buf[..n].starts_with(b"HTTP/1.1 504 Gateway Time-out\r\n"));
//!     assert_eq!(lb.stats().count(Reason::TargetTimeout), 1);
//!     lb.shutdown().await;
//! }
//! # fn main() {}
//! ```
//!
//! `examples/harness.rs` reproduces the keep-alive 502 and its fix the same way.

mod admin;
pub mod cli;
mod human;
mod lb;
mod mock;
mod net;
mod sim;
mod tools;

pub use admin::AdminServer;
pub use lb::config::{Config, RaceWindow, Settings};
pub use lb::events::{Event, EventKind, StateChange, EVENT_CAPACITY};
pub use lb::profile::{Cloud, LbDefaults};
pub use lb::reason::Reason;
pub use lb::stats::Counts;
pub use lb::targets::{HealthOverride, TargetInfo, TargetState};
pub use lb::{accesslog, advice, events, profile, reason, validate};
pub use mock::{MockOptions, MockUpstream};
/// The raw HTTP/1 response reader (heads, body framing, chunked bodies) that `lbsim doctor`,
/// the health checker and raw-socket test clients use: see [`http1::Reader`].
pub use net::http1;
pub use sim::{
    AlreadyRegistered, Control, Deregistered, NoSuchTarget, SimHandle, Simulator, SimulatorBuilder,
    StartError,
};
pub use tools::{doctor, scenario, triage};
