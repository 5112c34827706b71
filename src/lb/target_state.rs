//! A target's state, apart from the target group so that the event stream can name states
//! without importing the group that emits the events.

use serde::{Deserialize, Serialize};

/// A target's state, with the ALB's names (also how scenario files write it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetState {
    /// Registered, health checks not yet passed.
    Initial,
    /// Passing health checks: receives traffic.
    Healthy,
    /// Failing health checks: no traffic (unless the cloud fails open).
    Unhealthy,
    /// Deregistered: no new requests, in-flight ones may finish within the delay.
    Draining,
    /// Deregistration finished: the target has left the group. Listings no longer show
    /// it (as `describe-target-health` stops listing it); AWS reports `unused` for a
    /// target asked about by name once it is not registered, and so do scenario checks.
    Unused,
    /// Health checks are off: receives traffic.
    Unavailable,
}

impl TargetState {
    /// The ALB's word for the state, as the control API and scenario timelines print it.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetState::Initial => "initial",
            TargetState::Healthy => "healthy",
            TargetState::Unhealthy => "unhealthy",
            TargetState::Draining => "draining",
            TargetState::Unused => "unused",
            TargetState::Unavailable => "unavailable",
        }
    }
}
