//! lbsim: a local reverse proxy that fails like a cloud load balancer.
//!
//! Put it in front of an app and it answers as AWS's Application Load Balancer, either
//! generation of Google Cloud's external Application Load Balancer, or the Kubernetes
//! NGINX ingress controller would: the same 502, 503 and 504
//! pages, for the same reasons, with the same timers, and a log line that says which
//! setting to change.
//!
//! A cloud is data ([`profile`]); there is one engine. The folders show the layers, and
//! imports point one way: `cli → tools → admin → sim → lb`, with `net` and `human` shared
//! by all (they import nothing of lbsim).
//!
//! | where | what |
//! |---|---|
//! | `src/lb/` | the load balancer. `profile.rs` (each cloud as data) and `facts.rs` (each value's source, `lbsim facts`); `config.rs` ([`Settings`], the one settings type: clap flags, scenario `[lb]` keys and builder values at once; scaled into a `Config`); `proxy.rs`, the engine; `h1/` (its HTTP/1.1 data plane: `server.rs`, one task per client connection; `target.rs`, the exchange on a pooled target connection; `wire.rs`, heads and chunked bodies without I/O; `splice.rs`, long bodies socket to socket); `client.rs` (the client side: idle connections, 408, 460, body framing via `chunked.rs`), `validate.rs` (the head checks each cloud makes, desync classification), `forward.rs` (headers added on the way), `pool.rs` (keep-alive connections to targets, the keep-alive race), `deadline.rs` (idle and end-to-end timers), `targets.rs` and `health.rs` (the target group and its checks), `drain.rs` (graceful shutdown), `websocket.rs`, `http2.rs` (HTTP/2 clients: GOAWAY on idle and age); `reason.rs` (the cause enum, [`Reason`]), `respond.rs` (every LB-made response, in one place), `advice.rs` (the sentence and fix a person reads), `stats.rs` ([`Counts`], by status and by cause), [`events`] (the typed event stream), `logline.rs` and [`accesslog`] (the cloud's log lines); [`l4`] (a cloud's TCP load balancer in front, `--l4`: each flavour as data, one relay with an idle clock per flow) |
//! | `src/sim.rs` | [`Simulator`] and [`SimHandle`]; [`Control`] is the one control surface: the control API, scenarios and tests change targets and read counters through it, never the engine |
//! | `src/admin.rs` | the control API over a [`Control`] ([`AdminServer`]): JSON over HTTP, `GET /events` as NDJSON; a tower router behind a concurrency limit and a timeout ([`AdminLimits`]) |
//! | `src/ui/` | the live view (`--ui`): a page, its script and its style compiled in, served by the control API at `/ui`; it follows `GET /events` in the browser |
//! | `src/mock.rs` | the embedded mock app ([`MockUpstream`], `lbsim upstream`): a hand-written server, so that it can misbehave byte by byte as real apps do |
//! | `src/net/` | listeners, address resolution, `tls.rs` (HTTPS listeners: [`Tls`], the generated CA and certificate), and [`http1`], the one raw HTTP/1 response reader (doctor, health checks, scenarios, tests) |
//! | `src/tools/` | [`doctor`] (probes an app or a Ray Serve config), [`scenario`] (files played with a timeline and PASS/FAIL; `lbsim demo`), [`triage`] (reads the cloud's logs), `report.rs` (banner and summary) |
//! | `src/cli.rs` | clap types and dispatch; `main.rs` only parses and calls in; nothing imports `cli` |
//! | `src/human.rs` | the one way a duration is written for a person |
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

#![warn(missing_docs, unreachable_pub)]

mod admin;
pub mod cli;
mod human;
mod lb;
mod mock;
mod net;
mod sim;
mod tools;
mod ui;

pub use admin::{AdminLimits, AdminServer};
pub use lb::config::{Config, RaceWindow, Settings, TargetProtocol};
pub use lb::events::{Event, EventKind, StateChange, EVENT_CAPACITY};
pub use lb::l4::{L4Flavour, L4Profile, OnIdle};
pub use lb::profile::{Cloud, LbDefaults};
pub use lb::reason::Reason;
pub use lb::stats::Counts;
pub use lb::targets::{HealthOverride, TargetInfo, TargetState};
pub use lb::{accesslog, advice, events, l4, profile, reason, validate};
pub use mock::{MockOptions, MockUpstream};
/// The raw HTTP/1 response reader (heads, body framing, chunked bodies) that `lbsim doctor`,
/// the health checker and raw-socket test clients use: see [`http1::Reader`].
pub use net::http1;
pub use net::tls::{Tls, DEFAULT_CA_OUT};
pub use sim::{
    AlreadyRegistered, Control, Deregistered, NoSuchTarget, SimHandle, Simulator, SimulatorBuilder,
    StartError,
};
pub use tools::{doctor, scenario, triage};

/// Parsers that are internal to the engine, exposed only so that the cargo-fuzz targets in
/// `fuzz/` (a separate crate) can drive them: not part of lbsim's API, and free to change.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::lb::chunked::{ChunkedScanner, Scan};
    /// The HTTP/1.1 data plane's head parsers and writers and its chunked decoder.
    pub use crate::lb::h1::wire::{
        parse_request, parse_response, request_framing, response_framing, write_request_head,
        write_response_head, ChunkedDecoder, Decoded, Framing, HeadError, NameCase, ResponseHead,
    };
}
