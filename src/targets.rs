//! The target group: which target serves the next request.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::reason::Reason;

/// Registered targets, chosen round-robin.
#[derive(Debug)]
pub struct TargetGroup {
    /// Addresses in registration order.
    targets: Vec<SocketAddr>,
    /// Round-robin cursor; wraps, so it never overflows in practice.
    next: AtomicUsize,
}

impl TargetGroup {
    /// A group of `targets`.
    pub fn new(targets: Vec<SocketAddr>) -> Self {
        TargetGroup {
            targets,
            next: AtomicUsize::new(0),
        }
    }

    /// The target for the next request, or why there is none.
    pub fn pick(&self) -> Result<SocketAddr, Reason> {
        if self.targets.is_empty() {
            return Err(Reason::NoRegisteredTargets);
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.targets.len();
        Ok(self.targets[i])
    }

    /// Every registered target.
    pub fn addresses(&self) -> &[SocketAddr] {
        &self.targets
    }
}
