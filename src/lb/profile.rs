//! Cloud profiles: everything that differs between load balancers, as data.
//!
//! The engine reads these fields; it never asks which cloud it runs. Every value has its
//! source and confidence in `facts.rs` (`lbsim facts`), drawn from
//! `shared/reference/` (aws-alb.md, gcp-lb.md, fidelity-audit.md).

use std::time::Duration;

use crate::lb::accesslog::LogFormat;
use crate::lb::reason::Reason;
use crate::lb::validate::{
    DesyncMode, HostRule, MethodAnswer, RepeatedHost, Rules, AWS_RULES, GCP_GLOBAL_RULES,
    GCP_RULES, NGINX_RULES,
};

/// The cloud whose load balancer lbsim imitates.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Cloud {
    /// AWS Application Load Balancer: idle timeout semantics.
    Aws,
    /// Google Cloud global external Application Load Balancer (Envoy-based, the
    /// generation Google now creates): end-to-end timeout.
    Gcp,
    /// Google Cloud classic Application Load Balancer (Google Front Ends): end-to-end
    /// timeout; answers some failures with other statuses than the global one.
    #[serde(rename = "gcp-classic")]
    GcpClassic,
    /// The Kubernetes NGINX ingress controller (ingress-nginx) with its ConfigMap defaults:
    /// nginx's idle read timeout, its own error pages, retries on the next endpoint.
    #[serde(rename = "ingress-nginx")]
    IngressNginx,
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
    /// `X-Request-ID: {32 hex}` unless the client sent one (ingress-nginx's `$req_id`).
    RequestId,
}

/// How the LB writes header names on both of its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderCase {
    /// As received from the other side; the LB's own headers in Title-Case.
    Preserve,
    /// Every header name lower-cased, both ways (Envoy on HTTP/1.1).
    Lower,
}

/// Headers the LB adds to every forwarded request.
#[derive(Clone, Copy, Debug)]
pub struct Forwarding {
    /// GCP appends its own address after the client's in `X-Forwarded-For`; AWS does not.
    pub xff_appends_lb_address: bool,
    /// What separates the addresses the LB appends to `X-Forwarded-For`.
    pub xff_separator: &'static str,
    /// Header-name case towards the app and back.
    pub header_case: HeaderCase,
    /// ALB sends `X-Forwarded-Port`; GCP does not.
    pub port_header: bool,
    /// Tracing header flavour.
    pub trace: TraceHeader,
    /// `Via` value added to requests and responses (GCP: `1.1 google`).
    pub via: Option<&'static str>,
}

/// Which failed requests the LB sends to a backend again (GCP, nginx); the ALB never
/// retries. A retry is invisible to the client: it sees, and the request log records, only
/// the final attempt's outcome; the app sees the request again. Each attempt picks a
/// target anew, so with several targets the retry usually goes to another one.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Methods that are retried: only requests without a body can be sent again.
    pub methods: &'static [&'static str],
    /// Failures before a response head that are retried.
    pub on: &'static [Reason],
    /// Attempts in all, the first one included.
    pub attempts: u32,
    /// Methods retried only after a failure in `unsent`, when the request never reached
    /// the target (nginx: POST, LOCK and PATCH are not passed on once sent).
    pub unsent_methods: &'static [&'static str],
    /// Failures in which the request never left lbsim (a refused or timed-out connect).
    pub unsent: &'static [Reason],
    /// Failures whose retry does not use up an attempt (nginx: an error on a cached
    /// keep-alive connection gives the try back).
    pub free: &'static [Reason],
    /// Each attempt gets the main timeout afresh (nginx's timers belong to one upstream
    /// connection); otherwise every attempt shares the request's timer (GCP).
    pub fresh_timer: bool,
}

/// Free retries allowed in a row: the pool holds finitely many stale connections, so the
/// loop ends anyway; the cap only keeps a bug from spinning.
pub const MAX_FREE_RETRIES: u32 = 16;

impl RetryPolicy {
    /// Whether a request with `method` may be sent again at all (some failure would).
    pub fn covers(&self, method: &str) -> bool {
        self.methods.contains(&method) || self.unsent_methods.contains(&method)
    }

    /// Whether a request with `method` that failed with `reason` on attempt number
    /// `attempt` (counted from 1, free retries not counted) is sent again.
    pub fn retries(&self, method: &str, reason: Reason, attempt: u32) -> bool {
        let method_ok = self.methods.contains(&method)
            || (self.unsent_methods.contains(&method) && self.unsent.contains(&reason));
        let attempt_left = attempt < self.attempts || self.free.contains(&reason);
        attempt_left && method_ok && self.on.contains(&reason)
    }
}

/// Status, page and the cloud's own word for one [`Reason`].
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    /// Status code sent to the client (the page's).
    pub status: u16,
    /// Stable snake_case cause in `x-lbsim-reason` (AWS-style, or GCP `statusDetails`).
    pub code: &'static str,
    /// The word the cloud's own request log uses (GCP `statusDetails`), where it differs
    /// from lbsim's cause word.
    pub log_word: &'static str,
    /// What the LB sends: one status can come with several bodies (Envoy says why).
    pub page: &'static Page,
    /// Where sources disagree on this outcome: which one lbsim follows and what else
    /// production may show (said with `--explain`).
    pub caveat: Option<&'static str>,
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
    /// Headers in the order the LB writes them, names lowercase (the listener's header
    /// case decides how they look on the wire); [`LENGTH`] marks where the body's length
    /// goes. `Date` follows them.
    pub headers: &'static [(&'static str, &'static str)],
}

/// Stands for the body's length in [`Page::headers`].
pub const LENGTH: (&str, &str) = ("content-length", "");

/// Stands for the date in [`Page::headers`], where a capture shows it before the others
/// end; without it, `Date` comes last.
pub const DATE: (&str, &str) = ("date", "");

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
    /// How targets spoken to in gRPC (`--target-protocol grpc`) are checked.
    pub grpc: GrpcHealth,
}

/// The cloud's health check of a gRPC target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrpcHealth {
    /// A gRPC call to `path` with an empty message; it passes when the answer's
    /// `grpc-status` is one of `codes` (ALB: `/AWS.ALB/healthcheck`, code 12, UNIMPLEMENTED,
    /// the answer of any gRPC server that lacks the method).
    Codes {
        /// The method called.
        path: &'static str,
        /// The gRPC codes that pass.
        codes: &'static [u32],
    },
    /// The gRPC health checking protocol (`grpc.health.v1.Health/Check`): it passes when
    /// the server answers SERVING.
    HealthService,
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
    /// Failed requests the LB retries itself (GCP), if any.
    pub retry: Option<RetryPolicy>,
    /// How long a deregistered target drains before in-flight requests are cut.
    pub deregistration_delay: Duration,
    /// What the LB rejects before a request reaches a target.
    pub validation: Rules,
    /// The access-log format the cloud writes.
    pub log_format: LogFormat,
    /// Status, page and cause word per reason: a function whose body is one exhaustive
    /// `match`, so a missing or misplaced row is a compile error.
    pub outcomes: fn(Reason) -> Outcome,
    /// Headers the LB adds to forwarded requests.
    pub forwarding: Forwarding,
    /// What the main timeout measures once a connection is upgraded (WebSockets): the
    /// same timer value, but not always the same kind as for a response.
    pub websocket_timeout: TimeoutKind,
    /// How the LB's own errors reach a gRPC client.
    pub grpc_errors: GrpcErrors,
    /// The LB refuses a request whose protocol the target protocol does not take (ALB's
    /// target group protocol version table, answered 464); false: it translates.
    pub checks_target_protocol: bool,
    /// Which `Upgrade`s the LB relays to the app.
    pub upgrades: Upgrades,
}

/// The protocol switches (`Upgrade`) a load balancer relays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upgrades {
    /// Any the app accepts with a 101.
    Any,
    /// WebSocket only; `h2c` is dropped (the request goes on as plain HTTP/1.1, as Envoy
    /// does), anything else is refused with [`Reason::UpgradeRefused`].
    WebSocketOnly,
}

/// How the LB's own answers reach a gRPC client (a request with `content-type:
/// application/grpc`). gRPC clients read `grpc-status`; without it they derive a code
/// from the HTTP status (gRPC's "HTTP to gRPC Status Code Mapping").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrpcErrors {
    /// The page as for any client; nothing gRPC-specific.
    HttpStatus,
    /// The page, with `grpc-status` and `grpc-message` headers added.
    HttpStatusWithGrpcStatus,
    /// A gRPC trailers-only answer: HTTP 200, `content-type: application/grpc`,
    /// `grpc-status`, and the page's text as `grpc-message`; no body.
    TrailersOnly,
}

/// The gRPC status code (and its name in lower case) a gRPC client makes of an HTTP
/// status: gRPC's "HTTP to gRPC Status Code Mapping" (grpc/grpc,
/// doc/http-grpc-status-mapping.md), which Envoy's `Grpc::Utility::httpToGrpcStatus`
/// follows too.
pub fn grpc_status_of(http_status: u16) -> (u8, &'static str) {
    match http_status {
        400 => (13, "internal"),
        401 => (16, "unauthenticated"),
        403 => (7, "permission denied"),
        404 => (12, "unimplemented"),
        429 | 502 | 503 | 504 => (14, "unavailable"),
        _ => (2, "unknown"),
    }
}

impl Profile {
    /// The profile for `cloud`.
    pub fn of(cloud: Cloud) -> &'static Profile {
        match cloud {
            Cloud::Aws => &AWS_ALB,
            Cloud::Gcp => &GCP_GLOBAL,
            Cloud::GcpClassic => &GCP_CLASSIC,
            Cloud::IngressNginx => &INGRESS_NGINX,
        }
    }

    /// Status and cause word for `reason`.
    pub fn outcome(&self, reason: Reason) -> Outcome {
        (self.outcomes)(reason)
    }

    /// Default timers for the chosen flavour.
    pub fn defaults(&self, which: LbDefaults) -> TimerDefaults {
        match which {
            LbDefaults::Anyscale => self.anyscale,
            LbDefaults::Native => self.native,
        }
    }

    /// Every cloud fact this profile holds, as `(key, value)` in a fixed order: what
    /// `lbsim facts` prints, and what the test in `facts.rs` pairs with a source each.
    ///
    /// Every struct is destructured without `..`, so a field added to `Profile` (or to a
    /// struct inside it) does not compile until it is rendered here, and the facts test
    /// then asks for its source.
    pub fn values(&self) -> Vec<(String, String)> {
        let Profile {
            // Which profile this is: the facts are grouped by it, it is not one of them.
            cloud: _,
            // Words lbsim prints in its sentences, not behaviour of the cloud.
            display_name: _,
            timeout_setting: _,
            timeout_flag: _,
            timeout_fix: _,
            timeout_kind,
            anyscale,
            native,
            backend_keep_alive,
            client_idle,
            client_max_age,
            client_keep_alive_meaning,
            health,
            fails_open,
            retry,
            deregistration_delay,
            validation,
            log_format,
            outcomes,
            forwarding,
            websocket_timeout,
            grpc_errors,
            checks_target_protocol,
            upgrades,
        } = self;
        let mut out: Vec<(String, String)> = Vec::new();
        let mut put = |key: &str, value: String| out.push((key.to_string(), value));

        put(
            "timeout_kind",
            match timeout_kind {
                TimeoutKind::Idle => "idle: fires when no byte moved for the whole period",
                TimeoutKind::EndToEnd => "end-to-end: the whole response must finish within it",
            }
            .to_string(),
        );
        for (flavour, timers) in [("anyscale", anyscale), ("native", native)] {
            let TimerDefaults {
                timeout,
                connect_timeout,
            } = timers;
            put(
                &format!("timers.{flavour}.timeout"),
                crate::human::duration(*timeout),
            );
            put(
                &format!("timers.{flavour}.connect_timeout"),
                crate::human::duration(*connect_timeout),
            );
        }
        put(
            "backend_keep_alive",
            match backend_keep_alive {
                BackendKeepAlive::SameAsTimeout => "the idle timeout".to_string(),
                BackendKeepAlive::Fixed(d) => format!("{}, fixed", crate::human::duration(*d)),
            },
        );
        put(
            "client_idle",
            match client_idle {
                ClientIdle::SameAsTimeout => "the idle timeout".to_string(),
                ClientIdle::Fixed(d) => crate::human::duration(*d),
            },
        );
        put(
            "client_max_age",
            match client_max_age {
                Some(d) => format!(
                    "{}, then `Connection: close` on the next response",
                    crate::human::duration(*d)
                ),
                None => "none".to_string(),
            },
        );
        // HTTP/2 clients meet the same two timers; a connection ends with GOAWAY
        // (src/lb/http2.rs), and only open streams count as activity.
        put(
            "http2_client_idle",
            format!(
                "GOAWAY after {} with no open stream; PING frames do not count",
                match client_idle {
                    ClientIdle::SameAsTimeout => "the idle timeout".to_string(),
                    ClientIdle::Fixed(d) => crate::human::duration(*d),
                }
            ),
        );
        put(
            "http2_client_max_age",
            match client_max_age {
                Some(d) => format!(
                    "GOAWAY at {}; open streams finish",
                    crate::human::duration(*d)
                ),
                None => "none".to_string(),
            },
        );
        put(
            "client_keep_alive_meaning",
            match client_keep_alive_meaning {
                ClientKeepAliveMeaning::MaxAge => "connection age",
                ClientKeepAliveMeaning::Idle => "idle time",
            }
            .to_string(),
        );

        let HealthDefaults {
            path,
            interval,
            timeout,
            healthy_threshold,
            unhealthy_threshold,
            initial_passes,
            user_agent,
            grpc,
        } = health;
        put("health.path", path.to_string());
        put("health.interval", crate::human::duration(*interval));
        put("health.timeout", crate::human::duration(*timeout));
        put("health.healthy_threshold", healthy_threshold.to_string());
        put(
            "health.unhealthy_threshold",
            unhealthy_threshold.to_string(),
        );
        put(
            "health.initial_passes",
            match initial_passes {
                Some(n) => n.to_string(),
                None => "the healthy threshold".to_string(),
            },
        );
        put("health.user_agent", user_agent.to_string());
        put(
            "health.grpc",
            match grpc {
                GrpcHealth::Codes { path, codes } => format!(
                    "a gRPC call to {path}; passes on grpc-status {}",
                    codes
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                GrpcHealth::HealthService => {
                    "grpc.health.v1.Health/Check; passes on SERVING".to_string()
                }
            },
        );
        put(
            "fails_open",
            if *fails_open {
                "yes: with no healthy target, routes to all registered ones"
            } else {
                "no: with no healthy target, the LB answers itself"
            }
            .to_string(),
        );
        match retry {
            None => put("retry", "never".to_string()),
            Some(RetryPolicy {
                methods,
                on,
                attempts,
                unsent_methods,
                unsent,
                free,
                fresh_timer,
            }) => {
                let names = |reasons: &[Reason]| {
                    if reasons.is_empty() {
                        "none".to_string()
                    } else {
                        reasons
                            .iter()
                            .map(|r| r.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                };
                put("retry.methods", methods.join(", "));
                put("retry.on", names(on));
                put("retry.attempts", format!("{attempts}, the first included"));
                put(
                    "retry.unsent_methods",
                    if unsent_methods.is_empty() {
                        "none".to_string()
                    } else {
                        format!(
                            "{}, only when the request never left ({})",
                            unsent_methods.join(", "),
                            names(unsent)
                        )
                    },
                );
                put("retry.free", names(free));
                put(
                    "retry.fresh_timer",
                    if *fresh_timer {
                        "yes: each attempt has the whole timeout"
                    } else {
                        "no: the attempts share the request's timer"
                    }
                    .to_string(),
                );
            }
        }
        put(
            "deregistration_delay",
            crate::human::duration(*deregistration_delay),
        );
        put(
            "log_format",
            match log_format {
                LogFormat::Alb => "alb: the ALB access-log line",
                LogFormat::Gcp => "gcp: a Cloud Logging request entry",
                LogFormat::Json => "json: lbsim's own",
                LogFormat::Nginx => {
                    "nginx: the controller's default log-format-upstream (upstreaminfo), \
                     every try in $upstream_addr, $upstream_response_length, \
                     $upstream_response_time and $upstream_status"
                }
            }
            .to_string(),
        );

        put(
            "websocket_timeout",
            match websocket_timeout {
                TimeoutKind::Idle => {
                    "idle: an upgraded connection is closed when no byte moved either way for \
                     the main timeout"
                }
                TimeoutKind::EndToEnd => {
                    "end-to-end: an upgraded connection is closed when the main timeout has \
                     passed since the request, active or not"
                }
            }
            .to_string(),
        );
        put(
            "upgrades",
            match upgrades {
                Upgrades::Any => "any the app accepts (101)",
                Upgrades::WebSocketOnly => {
                    "WebSocket only; h2c dropped, others refused (upgrade_refused)"
                }
            }
            .to_string(),
        );
        put(
            "checks_target_protocol",
            if *checks_target_protocol {
                "HTTP/1.1 to an http2/grpc target, gRPC to an http1 one, or a non-POST to a \
                 grpc one: refused"
            } else {
                "translates: any client protocol to any target protocol"
            }
            .to_string(),
        );
        put(
            "grpc_errors",
            match grpc_errors {
                GrpcErrors::HttpStatus => "the page as for any client (no grpc-status)",
                GrpcErrors::HttpStatusWithGrpcStatus => {
                    "the page, plus grpc-status (502/503/504: 14) and grpc-message"
                }
                GrpcErrors::TrailersOnly => {
                    "HTTP 200 trailers-only: grpc-status (502/503/504: 14), the page's text as grpc-message"
                }
            }
            .to_string(),
        );
        for reason in Reason::ALL {
            let Outcome {
                status,
                code,
                log_word,
                page,
                // Where sources disagree, that is the fact's source text (facts.rs), not
                // another value.
                caveat: _,
            } = &outcomes(reason);
            let name = reason.name();
            let mut said = format!("{status} {code}");
            if log_word != code {
                said.push_str(&format!(" (logged as {log_word})"));
            }
            put(&format!("outcome.{name}"), said);
            put(&format!("outcome.{name}.page"), page_summary(page));
        }

        let Forwarding {
            xff_appends_lb_address,
            xff_separator,
            header_case,
            port_header,
            trace,
            via,
        } = forwarding;
        put(
            "forwarding.xff_appends_lb_address",
            yes_no(*xff_appends_lb_address),
        );
        put("forwarding.xff_separator", format!("{xff_separator:?}"));
        put(
            "forwarding.header_case",
            match header_case {
                HeaderCase::Preserve => "preserved",
                HeaderCase::Lower => "lower-cased, both ways",
            }
            .to_string(),
        );
        put("forwarding.port_header", yes_no(*port_header));
        put(
            "forwarding.trace",
            match trace {
                TraceHeader::AmznTraceId => "X-Amzn-Trace-Id",
                TraceHeader::CloudTraceContext => "X-Cloud-Trace-Context",
                TraceHeader::RequestId => "X-Request-ID",
            }
            .to_string(),
        );
        put(
            "forwarding.via",
            via.map_or("none".to_string(), |v| v.to_string()),
        );

        let Rules {
            max_request_line,
            max_header_line,
            max_head,
            max_forwarded_for,
            refused_methods,
            host,
            desync,
        } = validation;
        let bytes = |limit: &Option<usize>| match limit {
            Some(n) => format!("{n} bytes"),
            None => "no limit of its own".to_string(),
        };
        put("validation.max_request_line", bytes(max_request_line));
        put("validation.max_header_line", bytes(max_header_line));
        put("validation.max_head", bytes(&Some(*max_head)));
        put(
            "validation.max_forwarded_for",
            match max_forwarded_for {
                Some(n) => format!("{n} addresses"),
                None => "no limit".to_string(),
            },
        );
        for (method, answer) in refused_methods.iter() {
            put(
                &format!("validation.refused_method.{method}"),
                match answer {
                    MethodAnswer::NotAllowed => "405, never forwarded",
                    MethodAnswer::BadRequest => "the 400 page, never forwarded",
                }
                .to_string(),
            );
        }
        let HostRule {
            required_in_http11,
            repeated,
        } = host;
        put(
            "validation.host.required_in_http11",
            if *required_in_http11 {
                "yes: 400 without it (HTTP/1.0 is served)"
            } else {
                "no"
            }
            .to_string(),
        );
        put(
            "validation.host.repeated",
            match repeated {
                RepeatedHost::Reject => "400",
                RepeatedHost::ServeIfFirstValid => "served if the first is a valid host, else 400",
            }
            .to_string(),
        );
        put(
            "validation.desync",
            match desync {
                DesyncMode::Monitor => "monitor",
                DesyncMode::Defensive => "defensive",
                DesyncMode::Strictest => "strictest",
            }
            .to_string(),
        );
        out
    }
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

/// How many characters of a page body `lbsim facts` quotes: enough to recognise it.
const BODY_PREVIEW: usize = 40;

/// One line about a page: status line, body length and what identifies it (an HTML
/// page's title, else the start of the text), headers in order, whether it closes.
fn page_summary(page: &Page) -> String {
    let Page {
        status,
        phrase,
        body,
        close,
        headers,
    } = page;
    if body.is_empty() && headers.is_empty() {
        return "nothing is sent (the client has gone)".to_string();
    }
    // An HTML page is known by its title; the markup before it is the same on every page.
    let title = body
        .split_once("<title>")
        .and_then(|(_, rest)| rest.split_once("</title>"))
        .map(|(title, _)| title);
    let what = match title {
        Some(title) => format!("{}-byte HTML body titled {title:?}", body.len()),
        None => {
            let start: String = body.chars().take(BODY_PREVIEW).collect();
            let more = if start.len() < body.len() { "…" } else { "" };
            format!("{}-byte body {start:?}{more}", body.len())
        }
    };
    let headers = headers
        .iter()
        .map(|&(name, value)| {
            if (name, value) == LENGTH {
                format!("{name}: {}", body.len())
            } else {
                format!("{name}: {value}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{status} {phrase}; {what}; headers {headers}{}",
        if *close {
            "; closes the connection"
        } else {
            ""
        }
    )
}

/// Headers of every ALB page, in the order of a `curl -v` capture of its 503:
/// `Server: awselb/2.0`, `Date`, `Content-Type: text/html`, `Content-Length`,
/// `Connection: keep-alive` (`close` on the pages that end the connection;
/// fidelity-audit.md, "ALB captures").
const ALB_PAGE_HEADERS: &[(&str, &str)] = &[
    ("server", "awselb/2.0"),
    DATE,
    ("content-type", "text/html"),
    LENGTH,
    ("connection", "keep-alive"),
];

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
            headers: ALB_PAGE_HEADERS,
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

/// Headers of a Google Front End page (GKE capture of the 502: `Content-Length`,
/// `Content-Type: text/html; charset=UTF-8`, `Referrer-Policy: no-referrer`; no `Server`,
/// no `Via`; fidelity-audit.md row 12).
const GFE_PAGE_HEADERS: &[(&str, &str)] = &[
    ("content-type", "text/html; charset=UTF-8"),
    ("referrer-policy", "no-referrer"),
    LENGTH,
];

/// The Google Front End page family: a line feed first, LF line ends, then the title,
/// heading and text of the status (captures: the 502 is 332 bytes, the 400 273 bytes).
macro_rules! gfe_page {
    ($status:literal, $phrase:literal, $title:literal, $h1:literal, $text:literal, close = $close:literal) => {
        Page {
            status: $status,
            phrase: $phrase,
            close: $close,
            headers: GFE_PAGE_HEADERS,
            body: concat!(
                "\n<html><head>\n<meta http-equiv=\"content-type\" content=\"text/html;charset=utf-8\">\n<title>",
                $status,
                " ",
                $title,
                "</title>\n</head>\n<body text=#000000 bgcolor=#ffffff>\n<h1>Error: ",
                $h1,
                "</h1>\n<h2>",
                $text,
                "</h2>\n<h2></h2>\n</body></html>\n"
            ),
        }
    };
}

/// Headers of an Envoy-made answer through Google's global external load balancer
/// (capture, restringer issue #94: `content-length: 19`, `content-type: text/plain`,
/// `via: 1.1 google`, `date`, in that order; no `server`).
const ENVOY_PAGE_HEADERS: &[(&str, &str)] = &[
    LENGTH,
    ("content-type", "text/plain"),
    ("via", "1.1 google"),
];

/// An Envoy local reply: a short plain-text body naming what failed.
macro_rules! envoy_page {
    ($status:literal, $phrase:literal, $body:literal) => {
        envoy_page!($status, $phrase, $body, close = false)
    };
    ($status:literal, $phrase:literal, $body:literal, close = $close:literal) => {
        Page {
            status: $status,
            phrase: $phrase,
            close: $close,
            headers: ENVOY_PAGE_HEADERS,
            body: $body,
        }
    };
}

const fn outcome(page: &'static Page, code: &'static str) -> Outcome {
    Outcome {
        status: page.status,
        code,
        log_word: code,
        page,
        caveat: None,
    }
}

/// An outcome on which sources disagree; `caveat` says which one lbsim follows.
const fn disputed(page: &'static Page, code: &'static str, caveat: &'static str) -> Outcome {
    Outcome {
        caveat: Some(caveat),
        ..outcome(page, code)
    }
}

/// An outcome whose request-log word differs from lbsim's cause word.
const fn logged_as(page: &'static Page, code: &'static str, log_word: &'static str) -> Outcome {
    Outcome {
        status: page.status,
        code,
        log_word,
        page,
        caveat: None,
    }
}

/// What a client that left is counted as: ALB's 460. Nothing is sent, so the page is empty.
static CLIENT_LEFT: Page = Page {
    status: 460,
    phrase: "",
    body: "",
    close: true,
    headers: &[],
};

/// GCP's retry of a failed GET: gcloud `compute backend-services create --help`,
/// `--timeout`: "The load balancer retries the HTTP GET request one time if the backend
/// closes the connection or times out before sending response headers to the load
/// balancer. If the backend sends response headers or if the request sent to the backend
/// is not an HTTP GET request, the load balancer does not retry." (documented, for both
/// generations; the Envoy-based ones document the same default: "unsuccessful requests that
/// have no HTTP body (for example, GET requests) ... are retried once. HTTP POST requests
/// aren't retried", internal ALB overview, "Retries"). lbsim retries closes and refused
/// connections; a timeout is not retried (unconfirmed how the budget would be shared).
const GCP_GET_RETRY: RetryPolicy = RetryPolicy {
    methods: &["GET"],
    on: GCP_RETRY_ON,
    attempts: 2,
    unsent_methods: &[],
    unsent: &[],
    free: &[],
    fresh_timer: false,
};

/// The global external (Envoy-based) load balancers retry "unsuccessful requests that have
/// no HTTP body (for example, GET requests) ... once. HTTP POST requests aren't retried"
/// (Google's internal Application Load Balancer overview, "Retries"; inferred for the
/// global external one, which runs the same data plane). The engine retries only requests
/// without a body, whatever the method.
const GCP_BODYLESS_RETRY: RetryPolicy = RetryPolicy {
    methods: &["GET", "HEAD", "OPTIONS", "DELETE", "PUT", "PATCH"],
    on: GCP_RETRY_ON,
    attempts: 2,
    unsent_methods: &[],
    unsent: &[],
    free: &[],
    fresh_timer: false,
};

/// What GCP retries: a backend that closed before answering (the keep-alive race
/// included) or refused the connection.
const GCP_RETRY_ON: &[Reason] = &[
    Reason::TargetClosedConnection,
    Reason::KeepAliveRace,
    Reason::ConnectRefused,
];

static ALB_502: Page = alb_page!(502, "Bad Gateway");
static ALB_400: Page = alb_page!(400, "Bad Request", close = true);
static ALB_405: Page = alb_page!(405, "Method Not Allowed", close = true);
static ALB_408: Page = alb_page!(408, "Request Time-out", close = true);
static ALB_463: Page = alb_page!(463, "Bad Request", close = true);
static ALB_501: Page = alb_page!(501, "Not Implemented", close = true);
// The status is documented; no capture of its page or reason phrase seen (unconfirmed).
static ALB_464: Page = alb_page!(464, "", close = true);
static ALB_503: Page = alb_page!(503, "Service Temporarily Unavailable");
static ALB_504: Page = alb_page!(504, "Gateway Time-out");

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
        grpc: GrpcHealth::Codes {
            path: "/AWS.ALB/healthcheck",
            codes: &[12],
        },
    },
    fails_open: true,
    // No cause in AWS's troubleshooting guide mentions a retry, and its access log names
    // one target per request (aws-alb.md).
    retry: None,
    log_format: LogFormat::Alb,
    validation: AWS_RULES,
    deregistration_delay: Duration::from_secs(300),
    outcomes: alb_outcome,
    forwarding: Forwarding {
        xff_appends_lb_address: false,
        // "X-Forwarded-For: client-ip-address, ..." (ALB user guide, "X-Forwarded headers").
        xff_separator: ", ",
        header_case: HeaderCase::Preserve,
        port_header: true,
        trace: TraceHeader::AmznTraceId,
        via: None,
    },
    // ALB user guide, "Connection idle timeout": WebSocket frames either way are activity.
    websocket_timeout: TimeoutKind::Idle,
    // As captured (fidelity-audit.md: gRPC through an ALB, target unavailable: HTTP/2 502,
    // `server: awselb/2.0`, `grpc-status: 14`, `grpc-message: unavailable`).
    grpc_errors: GrpcErrors::HttpStatusWithGrpcStatus,
    checks_target_protocol: true,
    upgrades: Upgrades::Any,
};

/// [`AWS_ALB`]'s status, page and word for each cause.
///
/// One arm per [`Reason`] and no `_` arm: a new cause does not compile until every
/// profile says what it answers.
fn alb_outcome(reason: Reason) -> Outcome {
    match reason {
        Reason::TargetTimeout => outcome(&ALB_504, "target_idle_timeout"),
        Reason::ConnectTimeout => outcome(&ALB_504, "target_connect_timeout"),
        Reason::ConnectRefused => outcome(&ALB_502, "target_connection_refused"),
        Reason::TargetClosedConnection => outcome(&ALB_502, "target_closed_connection"),
        Reason::TargetClosedMidBody => outcome(&ALB_502, "target_closed_connection"),
        Reason::KeepAliveRace => outcome(&ALB_502, "target_closed_connection"),
        Reason::MalformedResponse => outcome(&ALB_502, "target_malformed_response"),
        Reason::NoRegisteredTargets => outcome(&ALB_503, "no_registered_targets"),
        // Unreachable with fail-open, kept so the match is total.
        Reason::NoHealthyTargets => outcome(&ALB_503, "no_healthy_targets"),
        Reason::DeregistrationDelayElapsed => outcome(&ALB_502, "deregistration_delay_elapsed"),
        Reason::MalformedRequest => outcome(&ALB_400, "malformed_request"),
        Reason::RequestTooLarge => outcome(&ALB_400, "request_too_large"),
        Reason::TooManyForwardedFor => outcome(&ALB_463, "too_many_forwarded_for"),
        Reason::UnsupportedTransferEncoding => outcome(&ALB_501, "unsupported_transfer_encoding"),
        Reason::MethodNotAllowed => outcome(&ALB_405, "method_not_allowed"),
        Reason::IncompatibleProtocol => outcome(&ALB_464, "incompatible_protocol"),
        // Never produced: lbsim's ALB relays any upgrade the app accepts.
        Reason::UpgradeRefused => outcome(&ALB_400, "upgrade_refused"),
        Reason::DesyncBlocked => outcome(&ALB_400, "desync_mitigation"),
        Reason::ClientTimeout => outcome(&ALB_408, "client_idle_timeout"),
        Reason::ClientClosed => outcome(&CLIENT_LEFT, "client_closed_connection"),
    }
}

/// The Google Front End's 502: captured (GKE, `Content-Length: 332`; its text in
/// ingress-gce's README). The classic load balancer answers every error of its own
/// making on the backend side with it (Migration overview: 502 where the global one
/// answers 503; no LB-made 503 or 504 page has been captured).
static GFE_502: Page = gfe_page!(
    502,
    "Bad Gateway",
    "Server Error",
    "Server Error",
    "The server encountered a temporary error and could not complete your request.<p>Please try again in 30 seconds.",
    close = false
);
/// Captured byte for byte (an escaped client error string; a replay with
/// `Content-Length: 273`).
static GFE_400: Page = gfe_page!(
    400,
    "Bad Request",
    "Bad Request",
    "Bad Request",
    "Your client has issued a malformed or illegal request.",
    close = true
);
/// Wording captured (a Google-fronted API's 413), bytes unconfirmed.
static GFE_413: Page = gfe_page!(
    413,
    "Payload Too Large",
    "Request Entity Too Large",
    "Request Entity Too Large",
    "Your client issued a request that was too large.",
    close = true
);
/// Unconfirmed: the family's layout with the status's own words.
static GFE_408: Page = gfe_page!(
    408,
    "Request Timeout",
    "Request Timeout",
    "Request Timeout",
    "Your client has taken too long to issue its request.",
    close = true
);
/// Unconfirmed, as 408.
static GFE_405: Page = gfe_page!(
    405,
    "Method Not Allowed",
    "Method Not Allowed",
    "Method Not Allowed",
    "Your client has issued a malformed or illegal request.",
    close = true
);
/// Unconfirmed, as 408.
static GFE_501: Page = gfe_page!(
    501,
    "Not Implemented",
    "Not Implemented",
    "Not Implemented",
    "Your client has issued a malformed or illegal request.",
    close = true
);

/// Google Cloud classic Application Load Balancer, on Google Front Ends (gcp-lb.md;
/// statuses from Google's "Migration overview", load-balancing/docs/https/migrate-to-global).
const GCP_CLASSIC_DATA: Profile = Profile {
    cloud: Cloud::GcpClassic,
    display_name: "GCP classic load balancer",
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
    health: GCP_HEALTH,
    fails_open: false,
    retry: Some(GCP_GET_RETRY),
    log_format: LogFormat::Gcp,
    validation: GCP_RULES,
    deregistration_delay: GCP_CONNECTION_DRAINING,
    outcomes: gcp_classic_outcome,
    forwarding: Forwarding {
        xff_appends_lb_address: true,
        // Migration overview: classic "Uses ', ' delimiter between IPs".
        xff_separator: ", ",
        // Migration overview: classic "Header case is preserved".
        header_case: HeaderCase::Preserve,
        port_header: false,
        trace: TraceHeader::CloudTraceContext,
        via: Some("1.1 google"),
    },
    // Google's logging page, backend_timeout: classic closes a WebSocket at the backend
    // service timeout "in either idle or active state".
    websocket_timeout: TimeoutKind::EndToEnd,
    // Unconfirmed for the Google Front End: the page alone, which a gRPC client maps by
    // its HTTP status (502 → UNAVAILABLE).
    grpc_errors: GrpcErrors::HttpStatus,
    checks_target_protocol: false,
    // Migration overview, "Connection upgrade failure (for example, upgrading to
    // Websocket)": classic 400, global 403; what else fails is inferred (below).
    upgrades: Upgrades::WebSocketOnly,
};

/// The classic GCP load balancer's status, page and word for each cause.
///
/// One arm per [`Reason`] and no `_` arm: a new cause does not compile until every
/// profile says what it answers.
fn gcp_classic_outcome(reason: Reason) -> Outcome {
    match reason {
        // gcloud `--timeout` help: "If the backend does not reply at all, the load balancer
        // returns a 502 Bad Gateway error"; the log table lists backend_timeout with
        // "502, 503" (classic 502). The Anyscale article's 504 is not this generation's.
        Reason::TargetTimeout => disputed(
            &GFE_502,
            "backend_timeout",
            "lbsim follows gcloud's --timeout help (\"the load balancer returns a 502 Bad \
             Gateway error\") and Google's log table (502, 503); the Anyscale article says \
             504, which is the global external load balancer's answer (--cloud gcp)",
        ),
        Reason::ConnectTimeout => outcome(&GFE_502, "failed_to_connect_to_backend"),
        Reason::ConnectRefused => outcome(&GFE_502, "failed_to_connect_to_backend"),
        // Migration overview: "Early upstream connection reset by the backend: Returns
        // HTTP 502" (classic).
        Reason::TargetClosedConnection => outcome(
            &GFE_502,
            "backend_connection_closed_before_data_sent_to_client",
        ),
        Reason::TargetClosedMidBody => outcome(
            &GFE_502,
            "backend_connection_closed_after_partial_response_sent",
        ),
        Reason::KeepAliveRace => outcome(
            &GFE_502,
            "backend_connection_closed_before_data_sent_to_client",
        ),
        Reason::MalformedResponse => outcome(&GFE_502, "backend_response_corrupted"),
        // Migration overview: "All backends are unhealthy: Returns HTTP 502" (classic);
        // GCP logs both as failed_to_pick_backend, the header keeps them apart.
        Reason::NoRegisteredTargets => {
            logged_as(&GFE_502, "no_registered_targets", "failed_to_pick_backend")
        }
        Reason::NoHealthyTargets => {
            logged_as(&GFE_502, "no_healthy_backend", "failed_to_pick_backend")
        }
        Reason::DeregistrationDelayElapsed => outcome(&GFE_502, "deregistration_delay_elapsed"),
        Reason::MalformedRequest => outcome(&GFE_400, "malformed_request"),
        // Migration overview: "Header is too large: Returns HTTP 413" (classic).
        Reason::RequestTooLarge => outcome(&GFE_413, "headers_too_long"),
        // GCP has no forwarded-for or TRACE rule (its rules never produce these).
        Reason::TooManyForwardedFor => outcome(&GFE_400, "too_many_forwarded_for"),
        Reason::UnsupportedTransferEncoding => outcome(&GFE_501, "unsupported_transfer_encoding"),
        Reason::MethodNotAllowed => outcome(&GFE_405, "method_not_allowed"),
        // Never produced: Google translates between client and backend protocols.
        Reason::IncompatibleProtocol => outcome(&GFE_400, "incompatible_protocol"),
        // Migration overview: a failed connection upgrade gets 400 from the classic one.
        Reason::UpgradeRefused => outcome(&GFE_400, "upgrade_failed"),
        Reason::DesyncBlocked => outcome(&GFE_400, "desync_mitigation"),
        Reason::ClientTimeout => outcome(&GFE_408, "client_timed_out"),
        Reason::ClientClosed => outcome(&CLIENT_LEFT, "client_disconnected_before_any_response"),
    }
}

/// The classic profile itself; the global one starts from the same data.
pub static GCP_CLASSIC: Profile = GCP_CLASSIC_DATA;

/// Health-check defaults of both GCP generations (Compute API HealthCheck reference).
const GCP_HEALTH: HealthDefaults = HealthDefaults {
    path: "/",
    interval: Duration::from_secs(5),
    timeout: Duration::from_secs(5),
    healthy_threshold: 2,
    unhealthy_threshold: 2,
    // "A backend counts only once healthy": the full threshold from the start.
    initial_passes: None,
    user_agent: "GoogleHC/1.0",
    grpc: GrpcHealth::HealthService,
};

/// Connection draining on a backend service. The API's default is 0 s, draining off
/// (gcloud `--connection-draining-timeout`: "If the flag is omitted API default value
/// (0s) will be used"); lbsim keeps 300 s, the value the console and Terraform's
/// `connection_draining_timeout_sec` fill in (unconfirmed), so a deregistered target
/// drains as a team's own backend service usually does. `--deregistration-delay 0` gives
/// the API default.
const GCP_CONNECTION_DRAINING: Duration = Duration::from_secs(300);

/// Envoy's answer when no endpoint is healthy, captured through Google's load balancer.
static ENVOY_NO_HEALTHY: Page = envoy_page!(503, "Service Unavailable", "no healthy upstream");
/// Envoy's default body for a reset before the response head (inferred: Envoy's
/// default; no capture through Google).
static ENVOY_RESET_TERMINATION: Page = envoy_page!(
    503,
    "Service Unavailable",
    "upstream connect error or disconnect/reset before headers. reset reason: connection termination"
);
/// Envoy's default body for a failed connect (inferred, as above).
static ENVOY_CONNECT_FAILURE: Page = envoy_page!(
    503,
    "Service Unavailable",
    "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
);
/// Envoy's default body for an upstream protocol error (inferred, as above).
static ENVOY_PROTOCOL_ERROR: Page = envoy_page!(
    503,
    "Service Unavailable",
    "upstream connect error or disconnect/reset before headers. reset reason: protocol error"
);
/// Envoy's route timeout (inferred: Envoy's default; no capture through Google).
/// Envoy's local reply to an upgrade it does not relay (`upgrade_failed`): 403, no body,
/// and the connection closed (as an Envoy capture shows: `content-length: 0`,
/// `connection: close`).
static ENVOY_UPGRADE_FAILED: Page = Page {
    status: 403,
    phrase: "Forbidden",
    close: true,
    // No body, so no content type.
    headers: &[LENGTH, ("via", "1.1 google")],
    body: "",
};
static ENVOY_TIMEOUT: Page = envoy_page!(504, "Gateway Timeout", "upstream request timeout");
/// Envoy's codec error reply: the status's phrase as the body (inferred from Envoy's
/// source); the status is the Migration overview's ("Header is too large: Returns HTTP
/// 431", global).
static ENVOY_431: Page = envoy_page!(
    431,
    "Request Header Fields Too Large",
    "Request Header Fields Too Large",
    close = true
);

/// Google Cloud global external Application Load Balancer: Google Front Ends in front of
/// Envoy (gcp-lb.md; statuses from Google's "Migration overview",
/// load-balancing/docs/https/migrate-to-global). The first-layer front end parses the
/// client's request ("failed_parsing_client_headers ... applies only to global external
/// Application Load Balancers and classic"), so its client-side answers are the GFE pages
/// (inferred); what Envoy answers about backends is short plain text.
pub static GCP_GLOBAL: Profile = Profile {
    cloud: Cloud::Gcp,
    display_name: "GCP load balancer",
    retry: Some(GCP_BODYLESS_RETRY),
    validation: GCP_GLOBAL_RULES,
    outcomes: gcp_global_outcome,
    forwarding: Forwarding {
        xff_appends_lb_address: true,
        // Migration overview: global "Uses ',' delimiter between IPs (no space after the
        // comma)".
        xff_separator: ",",
        // Migration overview: global "All header keys are transformed to lowercase".
        header_case: HeaderCase::Lower,
        port_header: false,
        trace: TraceHeader::CloudTraceContext,
        via: Some("1.1 google"),
    },
    // Google's logging page, backend_timeout: the global external one "closes the
    // websocket connection in idle state after the backend service timeout expires".
    websocket_timeout: TimeoutKind::Idle,
    // Envoy answers a gRPC request it fails itself trailers-only (inferred from Envoy's
    // local replies; no capture from Google seen).
    grpc_errors: GrpcErrors::TrailersOnly,
    checks_target_protocol: false,
    upgrades: Upgrades::WebSocketOnly,
    // Timers, health checks, routing and the log format are the classic one's.
    ..GCP_CLASSIC_DATA
};

/// [`GCP_GLOBAL`]'s status, page and word for each cause.
///
/// One arm per [`Reason`] and no `_` arm: a new cause does not compile until every
/// profile says what it answers.
fn gcp_global_outcome(reason: Reason) -> Outcome {
    match reason {
        // Sources disagree: Google's log table lists backend_timeout with "502, 503"; the
        // Anyscale article and public reports (a Cloud Run service behind the load
        // balancer) show 504, which is Envoy's route timeout. lbsim follows the reports.
        Reason::TargetTimeout => disputed(
            &ENVOY_TIMEOUT,
            "backend_timeout",
            "sources disagree on this status: lbsim follows the Anyscale article and public \
             reports (504, Envoy's route timeout); Google's request-log table lists \
             backend_timeout with 502 and 503, and gcloud's --timeout help says 502, so \
             production may show a 502 or 503 here",
        ),
        Reason::ConnectTimeout => outcome(&ENVOY_CONNECT_FAILURE, "failed_to_connect_to_backend"),
        Reason::ConnectRefused => outcome(&ENVOY_CONNECT_FAILURE, "failed_to_connect_to_backend"),
        // Migration overview: "Early upstream connection reset by the backend: Returns
        // HTTP 503" (global).
        Reason::TargetClosedConnection => outcome(
            &ENVOY_RESET_TERMINATION,
            "backend_connection_closed_before_data_sent_to_client",
        ),
        Reason::TargetClosedMidBody => outcome(
            &ENVOY_RESET_TERMINATION,
            "backend_connection_closed_after_partial_response_sent",
        ),
        Reason::KeepAliveRace => outcome(
            &ENVOY_RESET_TERMINATION,
            "backend_connection_closed_before_data_sent_to_client",
        ),
        Reason::MalformedResponse => outcome(&ENVOY_PROTOCOL_ERROR, "backend_response_corrupted"),
        // Migration overview: "All backends are unhealthy: Returns HTTP 503" (global);
        // Envoy says the same of an empty backend (inferred).
        Reason::NoRegisteredTargets => logged_as(
            &ENVOY_NO_HEALTHY,
            "no_registered_targets",
            "failed_to_pick_backend",
        ),
        Reason::NoHealthyTargets => logged_as(
            &ENVOY_NO_HEALTHY,
            "no_healthy_backend",
            "failed_to_pick_backend",
        ),
        Reason::DeregistrationDelayElapsed => {
            outcome(&ENVOY_RESET_TERMINATION, "deregistration_delay_elapsed")
        }
        Reason::MalformedRequest => outcome(&GFE_400, "malformed_request"),
        Reason::RequestTooLarge => outcome(&ENVOY_431, "headers_too_long"),
        // No forwarded-for or TRACE rule (the rules never produce these).
        Reason::TooManyForwardedFor => outcome(&GFE_400, "too_many_forwarded_for"),
        Reason::UnsupportedTransferEncoding => outcome(&GFE_501, "unsupported_transfer_encoding"),
        Reason::MethodNotAllowed => outcome(&GFE_405, "method_not_allowed"),
        // Never produced: Google translates between client and backend protocols.
        Reason::IncompatibleProtocol => outcome(&GFE_400, "incompatible_protocol"),
        // Migration overview: 403 from the global one; Envoy's empty local reply.
        Reason::UpgradeRefused => outcome(&ENVOY_UPGRADE_FAILED, "upgrade_failed"),
        Reason::DesyncBlocked => outcome(&GFE_400, "desync_mitigation"),
        Reason::ClientTimeout => outcome(&GFE_408, "client_timed_out"),
        Reason::ClientClosed => outcome(&CLIENT_LEFT, "client_disconnected_before_any_response"),
    }
}

/// Headers of an nginx error page as ingress-nginx sends it, in the order nginx's header
/// filter writes them (`ngx_http_header_filter_module.c`): `Date`, `Content-Type:
/// text/html`, `Content-Length`, `Connection`. No `Server`: ingress-nginx's default
/// `server-tokens: false` renders `server_tokens off` plus `more_clear_headers Server`
/// (its nginx.tmpl), so the header nginx would write is removed.
const NGINX_PAGE_HEADERS: &[(&str, &str)] = &[
    DATE,
    ("content-type", "text/html"),
    LENGTH,
    ("connection", "keep-alive"),
];

/// nginx's built-in page (`ngx_http_special_response.c`): the status's page, then
/// `ngx_http_error_tail`, the tail without a version that `server_tokens off` selects.
/// The MSIE/Chrome padding nginx appends for browsers' user agents is not modelled: lbsim
/// sends what curl and HTTP libraries get. `title` differs from the status line for
/// nginx's own codes (494 is sent as 400 with its own title).
macro_rules! nginx_page {
    ($status:literal, $phrase:literal) => {
        nginx_page!($status, $phrase, title = $phrase, close = false)
    };
    ($status:literal, $phrase:literal, close = $close:literal) => {
        nginx_page!($status, $phrase, title = $phrase, close = $close)
    };
    ($status:literal, $phrase:literal, title = $title:literal, close = $close:literal) => {
        Page {
            status: $status,
            phrase: $phrase,
            close: $close,
            headers: NGINX_PAGE_HEADERS,
            body: concat!(
                "<html>\r\n<head><title>",
                $status,
                " ",
                $title,
                "</title></head>\r\n<body>\r\n<center><h1>",
                $status,
                " ",
                $phrase,
                "</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
            ),
        }
    };
}

// Status lines and titles are nginx's own (`ngx_http_status_lines`): "Time-out",
// "Temporarily", "Not Allowed". Pages for a rejected head close the connection: nginx
// clears keep-alive for 400, 413, 414 and 501, and lbsim closes after every rejected head.
static NGINX_502: Page = nginx_page!(502, "Bad Gateway");
static NGINX_503: Page = nginx_page!(503, "Service Temporarily Unavailable");
static NGINX_504: Page = nginx_page!(504, "Gateway Time-out");
static NGINX_400: Page = nginx_page!(400, "Bad Request", close = true);
/// nginx's 494 (a header line over `large-client-header-buffers`) goes out as a 400 with
/// its own title.
static NGINX_494: Page = nginx_page!(
    400,
    "Bad Request",
    title = "Request Header Or Cookie Too Large",
    close = true
);
static NGINX_405: Page = nginx_page!(405, "Not Allowed", close = true);
static NGINX_408: Page = nginx_page!(408, "Request Time-out", close = true);
static NGINX_501: Page = nginx_page!(501, "Not Implemented", close = true);

/// nginx's `proxy_next_upstream error timeout` with `proxy_next_upstream_tries 3`, the
/// ingress-nginx defaults (ConfigMap `proxy-next-upstream`, `proxy-next-upstream-tries`).
/// `error` and `timeout` cover connecting, sending the request and reading the response
/// head; once the head is in, nothing is retried. POST, LOCK and PATCH are passed on only
/// if the request was never sent (nginx 1.9.13; `retry-non-idempotent: false`). A failure
/// on a cached keep-alive connection gives its try back (`ngx_http_upstream_next`: "if
/// (u->peer.cached && ft_type == NGX_HTTP_UPSTREAM_FT_ERROR) u->peer.tries++"), and each
/// try has its own `proxy_read_timeout` (`proxy-next-upstream-timeout` 0: no overall
/// limit). A malformed response (`invalid_header`) is not in the default list.
const NGINX_NEXT_UPSTREAM: RetryPolicy = RetryPolicy {
    methods: &["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"],
    on: &[
        Reason::ConnectRefused,
        Reason::ConnectTimeout,
        Reason::TargetTimeout,
        Reason::TargetClosedConnection,
        Reason::KeepAliveRace,
    ],
    attempts: 3,
    unsent_methods: &["POST", "LOCK", "PATCH"],
    unsent: &[Reason::ConnectRefused, Reason::ConnectTimeout],
    free: &[Reason::KeepAliveRace],
    fresh_timer: true,
};

/// The Kubernetes NGINX ingress controller (kubernetes/ingress-nginx) with its ConfigMap
/// defaults (docs/user-guide/nginx-configuration/configmap.md), the controller Anyscale's
/// Kubernetes guides install in front of Ray Serve (fidelity-audit.md).
pub static INGRESS_NGINX: Profile = Profile {
    cloud: Cloud::IngressNginx,
    display_name: "ingress-nginx",
    // proxy-read-timeout: "set only between two successive read operations, not for the
    // transmission of the whole response"; proxy-send-timeout likewise for writes.
    timeout_kind: TimeoutKind::Idle,
    timeout_setting: "proxy-read-timeout",
    timeout_flag: "--idle-timeout",
    timeout_fix: "Make the app send its response (or a first byte of a stream) sooner, or raise \
                  proxy-read-timeout (annotation nginx.ingress.kubernetes.io/proxy-read-timeout, \
                  lbsim --idle-timeout)",
    // No Anyscale value is known: the controller's own defaults in both sets.
    anyscale: NGINX_TIMERS,
    native: NGINX_TIMERS,
    // upstream-keepalive-timeout 60: nginx closes idle upstream connections after it.
    backend_keep_alive: BackendKeepAlive::Fixed(Duration::from_secs(60)),
    // keep-alive 75: nginx's keepalive_timeout for client connections.
    client_idle: ClientIdle::Fixed(Duration::from_secs(75)),
    client_max_age: None,
    client_keep_alive_meaning: ClientKeepAliveMeaning::Idle,
    // nginx makes no health checks: the kubelet's readiness probe takes a pod out of the
    // Service's endpoints, and the controller stops sending to it. lbsim's checks play
    // that probe, with Kubernetes' probe defaults.
    health: HealthDefaults {
        path: "/",
        interval: Duration::from_secs(10),
        timeout: Duration::from_secs(1),
        healthy_threshold: 1,
        unhealthy_threshold: 3,
        initial_passes: None,
        user_agent: "kube-probe/1.30",
        grpc: GrpcHealth::HealthService,
    },
    // No ready endpoint: the Service has none, and the controller answers 503.
    fails_open: false,
    retry: Some(NGINX_NEXT_UPSTREAM),
    // terminationGracePeriodSeconds 30: a terminating pod leaves the endpoints and gets
    // SIGKILL 30 s later.
    deregistration_delay: Duration::from_secs(30),
    validation: NGINX_RULES,
    // The controller's default log-format-upstream (its `upstreaminfo` log_format).
    log_format: LogFormat::Nginx,
    outcomes: nginx_outcome,
    forwarding: Forwarding {
        // X-Forwarded-For: the client's address ($proxy_add_x_forwarded_for).
        xff_appends_lb_address: false,
        xff_separator: ", ",
        header_case: HeaderCase::Preserve,
        // X-Forwarded-Port is set by the template.
        port_header: true,
        trace: TraceHeader::RequestId,
        via: None,
    },
    // nginx's proxy_read_timeout applies to upgraded connections too: idle.
    websocket_timeout: TimeoutKind::Idle,
    // nginx's own error pages go to gRPC clients as they are (inferred; ingress-nginx's
    // backend-protocol GRPC is not modelled).
    grpc_errors: GrpcErrors::HttpStatus,
    checks_target_protocol: false,
    upgrades: Upgrades::Any,
};

/// [`INGRESS_NGINX`]'s status, page and word for each cause.
///
/// One arm per [`Reason`] and no `_` arm: a new cause does not compile until every
/// profile says what it answers.
fn nginx_outcome(reason: Reason) -> Outcome {
    match reason {
        Reason::TargetTimeout => outcome(&NGINX_504, "upstream_timed_out"),
        Reason::ConnectTimeout => outcome(&NGINX_504, "upstream_connect_timed_out"),
        Reason::ConnectRefused => outcome(&NGINX_502, "connect_refused"),
        Reason::TargetClosedConnection => {
            outcome(&NGINX_502, "upstream_prematurely_closed_connection")
        }
        Reason::TargetClosedMidBody => {
            outcome(&NGINX_502, "upstream_prematurely_closed_connection")
        }
        Reason::KeepAliveRace => outcome(&NGINX_502, "upstream_prematurely_closed_connection"),
        Reason::MalformedResponse => outcome(&NGINX_502, "upstream_sent_invalid_header"),
        Reason::NoRegisteredTargets => outcome(&NGINX_503, "no_endpoints"),
        Reason::NoHealthyTargets => outcome(&NGINX_503, "no_ready_endpoints"),
        Reason::DeregistrationDelayElapsed => outcome(&NGINX_502, "pod_terminated"),
        Reason::MalformedRequest => outcome(&NGINX_400, "client_sent_invalid_request"),
        Reason::RequestTooLarge => outcome(&NGINX_494, "request_header_too_large"),
        Reason::TooManyForwardedFor => outcome(&NGINX_400, "too_many_forwarded_for"),
        Reason::UnsupportedTransferEncoding => outcome(&NGINX_501, "unknown_transfer_encoding"),
        Reason::MethodNotAllowed => outcome(&NGINX_405, "method_not_allowed"),
        // Never produced: nginx checks no target protocol version.
        Reason::IncompatibleProtocol => outcome(&NGINX_400, "incompatible_protocol"),
        // Never produced: ingress-nginx passes any Upgrade on ($http_upgrade).
        Reason::UpgradeRefused => outcome(&NGINX_400, "upgrade_refused"),
        Reason::DesyncBlocked => outcome(&NGINX_400, "content_length_and_transfer_encoding"),
        Reason::ClientTimeout => disputed(
            &NGINX_408,
            "client_timed_out",
            "nginx logs 408 when client_header_timeout or client_body_timeout fires, but \
             may close the connection without sending the page; lbsim sends it",
        ),
        // nginx logs 499 for a client that closed first; nothing is sent.
        Reason::ClientClosed => outcome(&NGINX_CLIENT_LEFT, "client_closed_request"),
    }
}

/// proxy-read-timeout 60 s (idle), proxy-connect-timeout 5 s.
const NGINX_TIMERS: TimerDefaults = TimerDefaults {
    timeout: Duration::from_secs(60),
    connect_timeout: Duration::from_secs(5),
};

/// What a client that left is counted as: nginx's 499. Nothing is sent.
static NGINX_CLIENT_LEFT: Page = Page {
    status: 499,
    phrase: "",
    body: "",
    close: true,
    headers: &[],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_have_the_captured_lengths() {
        assert_eq!(AWS_ALB.outcome(Reason::ConnectRefused).page.body.len(), 122);
        assert_eq!(
            AWS_ALB.outcome(Reason::NoRegisteredTargets).page.body.len(),
            162
        );
        // GKE capture: Content-Length 332; a replayed 400: Content-Length 273.
        assert_eq!(
            GCP_CLASSIC.outcome(Reason::KeepAliveRace).page.body.len(),
            332
        );
        assert_eq!(
            GCP_CLASSIC
                .outcome(Reason::MalformedRequest)
                .page
                .body
                .len(),
            273
        );
        // restringer issue #94: content-length 19.
        assert_eq!(
            GCP_GLOBAL.outcome(Reason::NoHealthyTargets).page.body.len(),
            19
        );
    }

    #[test]
    fn every_outcome_has_its_page_and_every_page_its_length() {
        for profile in [&AWS_ALB, &GCP_GLOBAL, &GCP_CLASSIC, &INGRESS_NGINX] {
            for reason in Reason::ALL {
                let outcome = profile.outcome(reason);
                assert_eq!(
                    outcome.status, outcome.page.status,
                    "{:?} {reason:?}",
                    profile.cloud
                );
                // A client that left is only logged: nothing is sent, so no header either.
                if reason != Reason::ClientClosed {
                    assert!(
                        outcome.page.headers.contains(&LENGTH),
                        "{:?} {reason:?}",
                        profile.cloud
                    );
                }
            }
        }
    }
}
