//! lbsim: a local reverse proxy that fails like a cloud load balancer.
//!
//! Put it in front of an app and it answers as AWS's Application Load Balancer or
//! Google Cloud's external Application Load Balancer would: the same 502, 503 and 504
//! pages, for the same reasons, with the same timers, and a log line that says which
//! setting to change.
//!
//! A cloud is data ([`profile`]); there is one engine ([`proxy`]). Modules, in the
//! order a request meets them:
//!
//! - [`config`]: a profile plus the user's flags; every timer is scaled once here.
//! - [`proxy`]: the engine. Accepts client connections, forwards, races the deadline.
//! - [`client`]: the client side: idle client connections, stalled requests (408), 460.
//! - [`forward`]: headers the cloud adds on the way through (`X-Forwarded-For`, trace ids).
//! - [`targets`]: the target group: states, and which target serves the next request.
//! - [`health`]: active health checks that move targets between states.
//! - [`pool`]: lbsim's own keep-alive connections to targets, and the keep-alive race.
//! - [`deadline`]: idle and end-to-end timeouts, and the body wrappers that enforce them.
//! - [`reason`]: why the LB answered instead of the app, and the fix in words.
//! - [`respond`]: every LB-generated response, built from profile data in one place.
//! - [`stats`]: counters by status and cause.
//! - [`upstream`]: the embedded mock app (`lbsim upstream`).
//! - [`sim`]: the library API for test harnesses ([`Simulator`]).
//! - [`doctor`]: `lbsim doctor`, a client that probes a running app for the keep-alive,
//!   health-check and latency settings that lead to 502/503/504 behind the cloud's LB.
//! - [`scenario`]: scenario files (TOML) played end to end with a timeline and PASS/FAIL
//!   per expectation; `lbsim scenario` and the narrated `lbsim demo`.
//! - [`cli`]: command-line flags; `main.rs` only parses and calls in.

pub mod cli;
pub mod client;
pub mod config;
pub mod deadline;
pub mod doctor;
pub mod forward;
pub mod health;
pub mod pool;
pub mod profile;
pub mod proxy;
pub mod reason;
pub mod respond;
pub mod scenario;
pub mod sim;
pub mod stats;
pub mod targets;
pub mod upstream;

pub use config::{Config, RaceWindow, Settings};
pub use profile::{Cloud, LbDefaults};
pub use reason::Reason;
pub use sim::{SimHandle, Simulator};
pub use targets::{HealthOverride, TargetInfo, TargetState};
pub use upstream::{MockOptions, MockUpstream};
