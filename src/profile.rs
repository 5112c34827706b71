//! Cloud profiles: everything that differs between load balancers, as data.
//!
//! The engine reads these fields; it never asks which cloud it runs. Facts and their
//! sources are in `shared/reference/` (aws-alb.md, gcp-lb.md).

use std::time::Duration;

use crate::accesslog::LogFormat;
use crate::reason::Reason;
use crate::validate::{Rules, AWS_RULES, GCP_RULES};

/// The cloud whose load balancer lbsim imitates.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Cloud {
    /// AWS Application Load Balancer: idle timeout semantics.
    Aws,
    /// Google Cloud external Application Load Balancer (GFE): end-to-end timeout.
    Gcp,
}

/// Which set of default timer values to start from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LbDefaults {
    /// The values Anyscale services configure (AWS idle 300 s, GCP backend 600 s).
    #[default]
    Anyscale,
    /// The provider's stock values (ALB idle 60 s, GCP backend 30 s).
    Native,
}

/// What the main timeout measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeoutKind {
    /// Fires only when no byte moved for the whole period (AWS ALB).
    Idle,
    /// Fires when the whole response has not finished in time, bytes flowing or not (GCP).
    EndToEnd,
}

/// How long the LB keeps an idle pooled connection to a target before closing it itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKeepAlive {
    /// The main (idle) timeout also governs target connections (ALB).
    SameAsTimeout,
    /// A fixed value that no setting changes (GCP: 600 s).
    Fixed(Duration),
}

/// How long an idle client connection stays open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientIdle {
    /// The main (idle) timeout also closes idle client connections (ALB).
    SameAsTimeout,
    /// The client HTTP keep-alive timeout (GCP: 610 s).
    Fixed(Duration),
}

/// What `--client-keep-alive` sets on this cloud.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientKeepAliveMeaning {
    /// Total age of a client connection; the first response after it says `Connection: close`
    /// (ALB `client_keep_alive.seconds`).
    MaxAge,
    /// Idle time before an idle client connection is closed (GCP).
    Idle,
}

/// The cloud's request-tracing header added to forwarded requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceHeader {
    /// `X-Amzn-Trace-Id: Root=1-{epoch hex}-{24 hex}`; `Self=` in front of an existing one.
    AmznTraceId,
    /// `X-Cloud-Trace-Context: {32 hex}/{decimal span};o=1` unless the client sent one.
    CloudTraceContext,
}

/// Headers the LB adds to every forwarded request.
#[derive(Clone, Copy, Debug)]
pub struct Forwarding {
    /// GCP appends its own address after the client's in `X-Forwarded-For`; AWS does not.
    pub xff_appends_lb_address: bool,
    /// ALB sends `X-Forwarded-Port`; GCP does not.
    pub port_header: bool,
    /// Tracing header flavour.
    pub trace: TraceHeader,
    /// `Via` value added to requests and responses (GCP: `1.1 google`).
    pub via: Option<&'static str>,
}

/// Status and the cloud's own word for one [`Reason`].
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    /// Status code sent to the client.
    pub status: u16,
    /// Stable snake_case cause in `x-lbsim-reason` (AWS-style, or GCP `statusDetails`).
    pub code: &'static str,
    /// The word the cloud's own request log uses (GCP `statusDetails`), where it differs
    /// from lbsim's cause word.
    pub log_word: &'static str,
}

/// One error page, byte for byte.
#[derive(Clone, Copy, Debug)]
pub struct Page {
    /// Status code this page is for.
    pub status: u16,
    /// Reason phrase on the status line (the ALB's differ from hyper's canonical ones).
    pub phrase: &'static str,
    /// The body exactly as the LB sends it.
    pub body: &'static str,
    /// The LB closes the client connection after this page (`Connection: close`).
    pub close: bool,
}

/// Default timer values of one flavour (Anyscale or native).
#[derive(Clone, Copy, Debug)]
pub struct TimerDefaults {
    /// Idle timeout (AWS) or backend service timeout (GCP).
    pub timeout: Duration,
    /// TCP connect to a target.
    pub connect_timeout: Duration,
}

/// Health-check defaults of a cloud.
#[derive(Clone, Copy, Debug)]
pub struct HealthDefaults {
    /// Path requested.
    pub path: &'static str,
    /// Time between checks.
    pub interval: Duration,
    /// Per-check timeout.
    pub timeout: Duration,
    /// Consecutive passes to become healthy.
    pub healthy_threshold: u32,
    /// Consecutive failures to become unhealthy.
    pub unhealthy_threshold: u32,
    /// Passes a newly registered target needs before traffic; `None`: the healthy threshold.
    pub initial_passes: Option<u32>,
    /// The checker's `User-Agent`.
    pub user_agent: &'static str,
}

/// A cloud load balancer, described as data.
#[derive(Debug)]
pub struct Profile {
    /// Which cloud this is (for `--print-config` and logs, not for branching).
    pub cloud: Cloud,
    /// Name used in log sentences: "AWS ALB".
    pub display_name: &'static str,
    /// Idle or end-to-end.
    pub timeout_kind: TimeoutKind,
    /// The cloud's name for the main timeout, as its console calls it.
    pub timeout_setting: &'static str,
    /// The lbsim flag that sets the main timeout.
    pub timeout_flag: &'static str,
    /// What to change when the main timeout fires.
    pub timeout_fix: &'static str,
    /// Anyscale service values.
    pub anyscale: TimerDefaults,
    /// Provider stock values.
    pub native: TimerDefaults,
    /// How long pooled target connections live.
    pub backend_keep_alive: BackendKeepAlive,
    /// How long idle client connections live.
    pub client_idle: ClientIdle,
    /// Age after which a client connection is closed after its next response (ALB: 3600 s).
    pub client_max_age: Option<Duration>,
    /// What `--client-keep-alive` changes.
    pub client_keep_alive_meaning: ClientKeepAliveMeaning,
    /// Health-check defaults.
    pub health: HealthDefaults,
    /// With no healthy target, route to all registered ones (ALB) instead of answering 503.
    pub fails_open: bool,
    /// How long a deregistered target drains before in-flight requests are cut.
    pub deregistration_delay: Duration,
    /// What the LB rejects before a request reaches a target.
    pub validation: Rules,
    /// The access-log format the cloud writes.
    pub log_format: LogFormat,
    /// Status and cause word per reason, indexed by [`Reason::index`].
    pub outcomes: [Outcome; Reason::ALL.len()],
    /// Error pages by status; a status without a page falls back to the first one's layout.
    pub pages: &'static [Page],
    /// Headers on every LB-generated page, in order; lowercase here, Title-Case on the wire.
    pub page_headers: &'static [(&'static str, &'static str)],
    /// Headers the LB adds to forwarded requests.
    pub forwarding: Forwarding,
}

impl Profile {
    /// The profile for `cloud`.
    pub fn of(cloud: Cloud) -> &'static Profile {
        match cloud {
            Cloud::Aws => &AWS_ALB,
            Cloud::Gcp => &GCP_GFE,
        }
    }

    /// Status and cause word for `reason`.
    pub fn outcome(&self, reason: Reason) -> Outcome {
        self.outcomes[reason.index()]
    }

    /// The page for `status`, if the profile has one.
    pub fn page(&self, status: u16) -> Option<&'static Page> {
        self.pages.iter().find(|p| p.status == status)
    }

    /// Default timers for the chosen flavour.
    pub fn defaults(&self, which: LbDefaults) -> TimerDefaults {
        match which {
            LbDefaults::Anyscale => self.anyscale,
            LbDefaults::Native => self.native,
        }
    }
}

/// The ALB's page layout: CRLF after every line, title and h1 the same text.
macro_rules! alb_page {
    ($status:literal, $phrase:literal) => {
        alb_page!($status, $phrase, close = false)
    };
    ($status:literal, $phrase:literal, close = $close:literal) => {
        Page {
            status: $status,
            phrase: $phrase,
            close: $close,
            body: concat!(
                "<html>\r\n<head><title>",
                $status,
                " ",
                $phrase,
                "</title></head>\r\n<body>\r\n<center><h1>",
                $status,
                " ",
                $phrase,
                "</h1></center>\r\n</body>\r\n</html>\r\n"
            ),
        }
    };
}

/// The GFE page: only the title changes with the status; LF line ends.
macro_rules! gfe_page {
    ($status:literal, $phrase:literal, $title:literal) => {
        gfe_page!($status, $phrase, $title, close = false)
    };
    ($status:literal, $phrase:literal, $title:literal, close = $close:literal) => {
        Page {
            status: $status,
            phrase: $phrase,
            close: $close,
            body: concat!(
                "<html><head>\n<meta http-equiv=\"content-type\" content=\"text/html;charset=utf-8\">\n<title>",
                $status,
                " ",
                $title,
                "</title>\n</head>\n<body text=#000000 bgcolor=#ffffff>\n<h1>Error: Server Error</h1>\n<h2>The server encountered a temporary error and could not complete your request.<p>Please try again in 30 seconds.</h2>\n<h2></h2>\n</body></html>\n"
            ),
        }
    };
}

const fn outcome(status: u16, code: &'static str) -> Outcome {
    Outcome {
        status,
        code,
        log_word: code,
    }
}

/// An outcome whose request-log word differs from lbsim's cause word.
const fn logged_as(status: u16, code: &'static str, log_word: &'static str) -> Outcome {
    Outcome {
        status,
        code,
        log_word,
    }
}

/// AWS Application Load Balancer (aws-alb.md).
pub static AWS_ALB: Profile = Profile {
    cloud: Cloud::Aws,
    display_name: "AWS ALB",
    timeout_kind: TimeoutKind::Idle,
    timeout_setting: "idle timeout",
    timeout_flag: "--idle-timeout",
    timeout_fix: "Make the app send its response (or a first byte of a stream) sooner, \
                  or raise the ALB idle timeout (idle_timeout.timeout_seconds, lbsim --idle-timeout)",
    anyscale: TimerDefaults {
        timeout: Duration::from_secs(300),
        connect_timeout: Duration::from_secs(10),
    },
    native: TimerDefaults {
        timeout: Duration::from_secs(60),
        connect_timeout: Duration::from_secs(10),
    },
    backend_keep_alive: BackendKeepAlive::SameAsTimeout,
    client_idle: ClientIdle::SameAsTimeout,
    client_max_age: Some(Duration::from_secs(3600)),
    client_keep_alive_meaning: ClientKeepAliveMeaning::MaxAge,
    health: HealthDefaults {
        path: "/",
        interval: Duration::from_secs(30),
        timeout: Duration::from_secs(5),
        healthy_threshold: 5,
        unhealthy_threshold: 2,
        // "A newly registered target ... needs one passing check" (aws-alb.md).
        initial_passes: Some(1),
        user_agent: "ELB-HealthChecker/2.0",
    },
    fails_open: true,
    log_format: LogFormat::Alb,
    validation: AWS_RULES,
    deregistration_delay: Duration::from_secs(300),
    // Order follows Reason::ALL.
    outcomes: [
        outcome(504, "target_idle_timeout"),
        outcome(504, "target_connect_timeout"),
        outcome(502, "target_connection_refused"),
        outcome(502, "target_closed_connection"),
        outcome(502, "target_closed_connection"),
        outcome(502, "target_closed_connection"),
        outcome(502, "target_malformed_response"),
        outcome(503, "no_registered_targets"),
        // Unreachable with fail-open, kept so the table is total.
        outcome(503, "no_healthy_targets"),
        outcome(502, "deregistration_delay_elapsed"),
        outcome(400, "malformed_request"),
        outcome(400, "request_too_large"),
        outcome(463, "too_many_forwarded_for"),
        outcome(501, "unsupported_transfer_encoding"),
        outcome(405, "method_not_allowed"),
        outcome(400, "desync_mitigation"),
        outcome(408, "client_idle_timeout"),
        outcome(460, "client_closed_connection"),
    ],
    pages: &[
        alb_page!(502, "Bad Gateway"),
        alb_page!(400, "Bad Request", close = true),
        alb_page!(405, "Method Not Allowed", close = true),
        alb_page!(408, "Request Time-out", close = true),
        alb_page!(414, "Request-URI Too Large", close = true),
        alb_page!(463, "Bad Request", close = true),
        alb_page!(501, "Not Implemented", close = true),
        alb_page!(503, "Service Temporarily Unavailable"),
        alb_page!(504, "Gateway Time-out"),
        alb_page!(505, "HTTP Version Not Supported"),
    ],
    page_headers: &[("server", "awselb/2.0"), ("content-type", "text/html")],
    forwarding: Forwarding {
        xff_appends_lb_address: false,
        port_header: true,
        trace: TraceHeader::AmznTraceId,
        via: None,
    },
};

/// Google Cloud external Application Load Balancer on Google Front Ends (gcp-lb.md).
pub static GCP_GFE: Profile = Profile {
    cloud: Cloud::Gcp,
    display_name: "GCP load balancer",
    timeout_kind: TimeoutKind::EndToEnd,
    timeout_setting: "backend service timeout",
    timeout_flag: "--backend-timeout",
    timeout_fix: "The whole response, streaming included, must finish within it: finish sooner, \
                  or raise the backend service timeout (timeoutSec, lbsim --backend-timeout)",
    anyscale: TimerDefaults {
        timeout: Duration::from_secs(600),
        // Not documented by Google; the same as the ALB's fixed value.
        connect_timeout: Duration::from_secs(10),
    },
    native: TimerDefaults {
        timeout: Duration::from_secs(30),
        connect_timeout: Duration::from_secs(10),
    },
    backend_keep_alive: BackendKeepAlive::Fixed(Duration::from_secs(600)),
    client_idle: ClientIdle::Fixed(Duration::from_secs(610)),
    client_max_age: None,
    client_keep_alive_meaning: ClientKeepAliveMeaning::Idle,
    health: HealthDefaults {
        path: "/",
        interval: Duration::from_secs(5),
        timeout: Duration::from_secs(5),
        healthy_threshold: 2,
        unhealthy_threshold: 2,
        // "A backend counts only once healthy": the full threshold from the start.
        initial_passes: None,
        user_agent: "GoogleHC/1.0",
    },
    fails_open: false,
    log_format: LogFormat::Gcp,
    validation: GCP_RULES,
    // Connection draining timeout; not in the reference: the ALB's value, until confirmed.
    deregistration_delay: Duration::from_secs(300),
    outcomes: [
        outcome(504, "backend_timeout"),
        outcome(502, "failed_to_connect_to_backend"),
        outcome(502, "failed_to_connect_to_backend"),
        outcome(502, "backend_connection_closed_before_data_sent_to_client"),
        outcome(502, "backend_connection_closed_after_partial_response_sent"),
        outcome(502, "backend_connection_closed_before_data_sent_to_client"),
        outcome(502, "backend_response_corrupted"),
        // GCP logs both as failed_to_pick_backend; the header keeps them apart.
        logged_as(503, "no_registered_targets", "failed_to_pick_backend"),
        logged_as(503, "no_healthy_backend", "failed_to_pick_backend"),
        outcome(502, "deregistration_delay_elapsed"),
        outcome(400, "malformed_request"),
        outcome(413, "headers_too_long"),
        // GCP has no forwarded-for or TRACE rule (its rules never produce these).
        outcome(400, "too_many_forwarded_for"),
        outcome(501, "unsupported_transfer_encoding"),
        outcome(405, "method_not_allowed"),
        outcome(400, "desync_mitigation"),
        outcome(408, "client_timed_out"),
        outcome(460, "client_disconnected_before_any_response"),
    ],
    pages: &[
        gfe_page!(502, "Bad Gateway", "Server Error"),
        gfe_page!(400, "Bad Request", "Bad Request", close = true),
        gfe_page!(
            413,
            "Payload Too Large",
            "Request Entity Too Large",
            close = true
        ),
        gfe_page!(408, "Request Timeout", "Request Timeout", close = true),
        gfe_page!(
            405,
            "Method Not Allowed",
            "Method Not Allowed",
            close = true
        ),
        gfe_page!(501, "Not Implemented", "Not Implemented", close = true),
        gfe_page!(503, "Service Unavailable", "Service Unavailable"),
        gfe_page!(504, "Gateway Timeout", "Gateway Timeout"),
    ],
    page_headers: &[
        ("content-type", "text/html; charset=UTF-8"),
        ("referrer-policy", "no-referrer"),
    ],
    forwarding: Forwarding {
        xff_appends_lb_address: true,
        port_header: false,
        trace: TraceHeader::CloudTraceContext,
        via: Some("1.1 google"),
    },
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alb_pages_have_the_documented_lengths() {
        assert_eq!(AWS_ALB.page(502).map(|p| p.body.len()), Some(122));
        assert_eq!(AWS_ALB.page(503).map(|p| p.body.len()), Some(162));
    }

    #[test]
    fn every_outcome_status_has_a_page() {
        for profile in [&AWS_ALB, &GCP_GFE] {
            // A client that left is only logged: nothing is sent, so no page.
            for reason in Reason::ALL
                .into_iter()
                .filter(|r| *r != Reason::ClientClosed)
            {
                let status = profile.outcome(reason).status;
                assert!(
                    profile.page(status).is_some(),
                    "{:?} {status}",
                    profile.cloud
                );
            }
        }
    }
}
