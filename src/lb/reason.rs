//! Why the load balancer answered instead of the app.
//!
//! A [`Reason`] is cloud-neutral; the profile maps it to a status and to the cloud's
//! own word for it (AWS-style cause, GCP `statusDetails`), and
//! `advice::explain` turns it into the sentence a person reads: what
//! happened, which setting caused it, the fix. The counters count by it
//! (`stats::Counts::count`): causes that share a word on one cloud (the
//! keep-alive race and an app's crash are both `target_closed_connection` on AWS) are
//! counted apart. This module imports nothing of lbsim's.

/// Every cause for which the load balancer itself answers (or cuts) a response.
///
/// Ordered as declared (counters list causes in this order); serialized as its
/// [`Reason::name`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// The target sent nothing in time: idle timeout (AWS) or backend timeout (GCP).
    TargetTimeout,
    /// TCP connect to the target did not complete in the connect timeout.
    ConnectTimeout,
    /// The target refused the TCP connection (nothing listening).
    ConnectRefused,
    /// The target closed the connection (FIN or RST) before a complete response head.
    TargetClosedConnection,
    /// The target closed the connection after the head, mid-body (the client's response is cut).
    TargetClosedMidBody,
    /// A pooled keep-alive connection that the target had already closed was reused.
    KeepAliveRace,
    /// The target's response could not be parsed as HTTP/1.1.
    MalformedResponse,
    /// The target group has no registered targets.
    NoRegisteredTargets,
    /// No target is healthy and the cloud does not fail open.
    NoHealthyTargets,
    /// A draining target was still serving when the deregistration delay ended.
    DeregistrationDelayElapsed,
    /// The client's request is not valid HTTP/1.1.
    MalformedRequest,
    /// The request head is over the cloud's size limits.
    RequestTooLarge,
    /// `X-Forwarded-For` holds more addresses than the cloud accepts.
    TooManyForwardedFor,
    /// A `Transfer-Encoding` other than chunked or identity.
    UnsupportedTransferEncoding,
    /// A method the LB refuses itself (TRACE on AWS).
    MethodNotAllowed,
    /// The desync (request smuggling) mitigation blocked the request.
    DesyncBlocked,
    /// The request's protocol is not one the target group's protocol version takes
    /// (AWS 464: HTTP/1.1 to an HTTP/2 or gRPC target group, gRPC to an HTTP/1.1 one).
    IncompatibleProtocol,
    /// The client asked to switch to a protocol the LB does not relay (GCP: anything but
    /// WebSocket; Google's "connection upgrade failure").
    UpgradeRefused,
    /// The client started a request and then sent nothing for the client timeout.
    ClientTimeout,
    /// The client closed its connection before the LB answered (logged, nothing sent).
    ClientClosed,
}

impl Reason {
    /// Every reason, in declaration order, for iterating over all of them (`lbsim facts`,
    /// triage, the summary). A new variant goes here too: the test below checks that each
    /// one is listed once, in order.
    pub const ALL: [Reason; 20] = [
        Reason::TargetTimeout,
        Reason::ConnectTimeout,
        Reason::ConnectRefused,
        Reason::TargetClosedConnection,
        Reason::TargetClosedMidBody,
        Reason::KeepAliveRace,
        Reason::MalformedResponse,
        Reason::NoRegisteredTargets,
        Reason::NoHealthyTargets,
        Reason::DeregistrationDelayElapsed,
        Reason::MalformedRequest,
        Reason::RequestTooLarge,
        Reason::TooManyForwardedFor,
        Reason::UnsupportedTransferEncoding,
        Reason::MethodNotAllowed,
        Reason::DesyncBlocked,
        Reason::IncompatibleProtocol,
        Reason::UpgradeRefused,
        Reason::ClientTimeout,
        Reason::ClientClosed,
    ];

    /// The variant's name in snake_case, cloud-neutral (the profile's cause words differ
    /// per cloud): keys of `lbsim facts` (`outcome.keep_alive_race`).
    pub const fn name(self) -> &'static str {
        match self {
            Reason::TargetTimeout => "target_timeout",
            Reason::ConnectTimeout => "connect_timeout",
            Reason::ConnectRefused => "connect_refused",
            Reason::TargetClosedConnection => "target_closed_connection",
            Reason::TargetClosedMidBody => "target_closed_mid_body",
            Reason::KeepAliveRace => "keep_alive_race",
            Reason::MalformedResponse => "malformed_response",
            Reason::NoRegisteredTargets => "no_registered_targets",
            Reason::NoHealthyTargets => "no_healthy_targets",
            Reason::DeregistrationDelayElapsed => "deregistration_delay_elapsed",
            Reason::MalformedRequest => "malformed_request",
            Reason::RequestTooLarge => "request_too_large",
            Reason::TooManyForwardedFor => "too_many_forwarded_for",
            Reason::UnsupportedTransferEncoding => "unsupported_transfer_encoding",
            Reason::MethodNotAllowed => "method_not_allowed",
            Reason::DesyncBlocked => "desync_blocked",
            Reason::IncompatibleProtocol => "incompatible_protocol",
            Reason::UpgradeRefused => "upgrade_refused",
            Reason::ClientTimeout => "client_timeout",
            Reason::ClientClosed => "client_closed",
        }
    }
}

impl serde::Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_variant_once_in_declaration_order() {
        for (i, reason) in Reason::ALL.into_iter().enumerate() {
            assert_eq!(
                reason as usize, i,
                "{reason:?} is out of place in Reason::ALL"
            );
        }
        // The last variant declared closes the list, so nothing after it is left out (a
        // variant added after it takes its place here).
        assert_eq!(Reason::ClientClosed as usize, Reason::ALL.len() - 1);
    }

    #[test]
    fn names_are_distinct() {
        let names: std::collections::BTreeSet<&str> =
            Reason::ALL.into_iter().map(Reason::name).collect();
        assert_eq!(names.len(), Reason::ALL.len());
    }
}
