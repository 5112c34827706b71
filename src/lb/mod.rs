//! The load balancer: a cloud profile (data) read by one engine.
//!
//! Nothing here imports the simulator, the control API, the tools or the CLI.

pub mod accesslog;
pub mod advice;
pub(crate) mod annotations;
pub(crate) mod chunked;
pub(crate) mod client;
pub(crate) mod config;
pub(crate) mod deadline;
pub(crate) mod drain;
pub mod events;
pub(crate) mod facts;
pub(crate) mod forward;
pub(crate) mod h1;
pub(crate) mod health;
pub(crate) mod http2;
pub mod l4;
pub(crate) mod logline;
pub(crate) mod pool;
pub mod profile;
pub(crate) mod proxy;
pub mod reason;
pub(crate) mod respond;
pub(crate) mod stats;
pub(crate) mod target_state;
pub(crate) mod targets;
pub mod validate;
pub(crate) mod websocket;
