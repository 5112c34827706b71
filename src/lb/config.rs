//! Effective settings: a cloud profile plus the user's flags, every timer scaled once here.

use std::fmt;
use std::time::Duration;

use crate::lb::health::{CheckVia, HealthCheck, GRPC_HEALTH_CHECK_PATH};
use crate::lb::profile::{
    BackendKeepAlive, ClientIdle, ClientKeepAliveMeaning, Cloud, GrpcHealth, LbDefaults, Profile,
    RetryPolicy, TimeoutKind,
};
use crate::lb::targets::Thresholds;
use crate::lb::validate::{DesyncMode, Rules};

/// How long after a target closes an idle pooled connection the LB goes on believing it open.
/// About one datacenter round trip plus scheduling: the window in which the production race
/// happens.
pub(crate) const DEFAULT_RACE_WINDOW: Duration = Duration::from_millis(5);

/// How long in-flight requests may run after SIGINT/SIGTERM before lbsim exits anyway.
pub(crate) const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// When a stale pooled connection is still (wrongly) believed open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RaceWindow {
    /// For this long after the target closed it.
    Window(Duration),
    /// Forever: every reuse of a connection the target closed fails (the race made certain).
    Always,
}

impl RaceWindow {
    /// True when a connection closed `closed_for` ago is still believed open.
    pub fn covers(self, closed_for: Duration) -> bool {
        match self {
            RaceWindow::Window(w) => closed_for < w,
            RaceWindow::Always => true,
        }
    }
}

impl std::str::FromStr for RaceWindow {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "always" {
            return Ok(RaceWindow::Always);
        }
        parse_duration(s).map(RaceWindow::Window)
    }
}

impl fmt::Display for RaceWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RaceWindow::Window(d) => f.write_str(&crate::human::flag_value(*d)),
            RaceWindow::Always => f.write_str("always"),
        }
    }
}

/// Parses `500ms`, `3s`, `5m`, `1h 30m` (humantime), for clap value parsers.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{e} (expected a duration like 500ms, 3s, 5m)"))
}

/// Parses a positive, finite time scale.
pub(crate) fn parse_time_scale(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if f.is_finite() && f > 0.0 => Ok(f),
        _ => Err("expected a positive number, e.g. 0.01".to_string()),
    }
}

/// What a user asked for, before defaults and scaling: every load-balancer setting,
/// declared once. The CLI flattens it into its flags (clap), a scenario file's `[lb]`
/// table deserializes into it (serde; `cloud` and `time_scale` are top-level keys there),
/// and [`crate::SimulatorBuilder::settings`] takes it whole. A field added here is a flag,
/// a scenario key and a builder value at once.
#[derive(Clone, Debug, PartialEq, clap::Args, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Which cloud's load balancer to imitate.
    #[arg(long, value_enum, default_value = "aws")]
    #[serde(skip)]
    pub cloud: Cloud,
    /// Start from Anyscale's values (AWS idle 300 s, GCP 600 s) or the provider's (60 s, 30 s).
    #[arg(
        long = "lb-defaults",
        value_enum,
        default_value = "anyscale",
        value_name = "LB_DEFAULTS"
    )]
    #[serde(rename = "lb_defaults")]
    pub defaults: LbDefaults,
    /// AWS idle timeout: no byte moved for this long fails the request (504); also the
    /// ALB's keep-alive towards the app.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    #[serde(deserialize_with = "serde_duration::option")]
    pub idle_timeout: Option<Duration>,
    /// GCP backend service timeout: the whole response must finish within it.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    #[serde(deserialize_with = "serde_duration::option")]
    pub backend_timeout: Option<Duration>,
    /// TCP connect timeout to a target.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    #[serde(deserialize_with = "serde_duration::option")]
    pub connect_timeout: Option<Duration>,
    /// Client keep-alive: AWS connection duration (3600 s, then `Connection: close`);
    /// GCP idle client connection timeout (610 s).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    #[serde(deserialize_with = "serde_duration::option")]
    pub client_keep_alive: Option<Duration>,
    /// Health-check path, e.g. `/-/healthz` for Ray Serve (default `/`).
    #[arg(long, value_parser = parse_path, value_name = "PATH")]
    #[serde(deserialize_with = "de_path")]
    pub health_path: Option<String>,
    /// Time between health checks (AWS 30s, GCP 5s).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    #[serde(deserialize_with = "serde_duration::option")]
    pub health_interval: Option<Duration>,
    /// Health-check timeout (5s on both clouds).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    #[serde(deserialize_with = "serde_duration::option")]
    pub health_timeout: Option<Duration>,
    /// Consecutive passes that make a target healthy (AWS 5, GCP 2).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10), value_name = "N")]
    pub healthy_threshold: Option<u32>,
    /// Consecutive failures that make a target unhealthy (2 on both clouds).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10), value_name = "N")]
    pub unhealthy_threshold: Option<u32>,
    /// False with `--no-health-checks` (scenario key `health_checks = false`): every
    /// registered target gets traffic.
    #[arg(
        long = "no-health-checks",
        action = clap::ArgAction::SetFalse,
        help = "Turn health checks off: every registered target gets traffic"
    )]
    pub health_checks: bool,
    /// After start, no target counts as healthy for this long (GCP's start-up 503s, up to 5m).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    #[serde(deserialize_with = "serde_duration::option")]
    pub warmup: Option<Duration>,
    /// How long a deregistered target drains before in-flight requests are cut (AWS 300s).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    #[serde(deserialize_with = "serde_duration::option")]
    pub deregistration_delay: Option<Duration>,
    /// Request-smuggling (desync) mitigation: defensive blocks Severe requests and closes
    /// after Ambiguous ones; strictest blocks all but compliant ones; monitor blocks none.
    #[arg(long, value_enum, value_name = "MODE")]
    pub desync_mode: Option<DesyncMode>,
    /// How long the LB goes on using a connection the app closed ("always": forever). Not
    /// scaled: it models network latency, not a cloud timer.
    #[arg(long, default_value_t = RaceWindow::Window(DEFAULT_RACE_WINDOW), value_name = "DURATION|always")]
    pub race_window: RaceWindow,
    /// Multiply every timer, e.g. 0.01 turns 300 s into 3 s.
    #[arg(
        long,
        value_parser = parse_time_scale,
        default_value = "1",
        value_name = "F",
        allow_negative_numbers = true
    )]
    #[serde(skip)]
    pub time_scale: f64,
    /// How long in-flight requests may run after SIGINT/SIGTERM before lbsim stops anyway
    /// (default 10s; a scenario's default is 500ms). Not scaled.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    #[serde(deserialize_with = "serde_duration::option")]
    pub shutdown_grace: Option<Duration>,
    /// Never retry a failed request, even where the cloud does (GCP retries a GET once
    /// when the backend closes before answering; `--print-config` shows the rule).
    #[arg(long)]
    pub no_retry: bool,
    /// What the LB speaks to the app: http1 (the clouds' default), or http2 / grpc
    /// (cleartext HTTP/2 with prior knowledge: ALB target group protocol version HTTP2 /
    /// GRPC, GCP backend service protocol HTTP2). AWS answers 464 to a request its target
    /// group's version does not take.
    #[arg(long, value_enum, default_value_t = TargetProtocol::Http1, value_name = "PROTOCOL")]
    #[serde(default)]
    pub target_protocol: TargetProtocol,
}

/// The protocol the LB speaks to targets (ALB: the target group's protocol version; GCP:
/// the backend service's protocol).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetProtocol {
    /// HTTP/1.1, whatever the client spoke.
    #[default]
    Http1,
    /// HTTP/2 in cleartext (h2c, prior knowledge).
    Http2,
    /// HTTP/2 for gRPC calls (ALB: only gRPC, and HTTP/2 POSTs, are accepted).
    Grpc,
}

impl TargetProtocol {
    /// True when targets are spoken to in HTTP/2.
    pub fn is_http2(self) -> bool {
        !matches!(self, TargetProtocol::Http1)
    }

    /// Why an ALB target group of this protocol version refuses a request (HTTP/1.1 or
    /// HTTP/2 from the client, gRPC or not, its method), or None when it takes it. AWS,
    /// "Target groups for your Application Load Balancers", "Protocol version": HTTP/1.1
    /// and HTTP/2 requests go to HTTP1; gRPC to HTTP1 is an error; HTTP/1.1 to HTTP2 or
    /// GRPC is an error; HTTP/2 to GRPC succeeds "if a POST request".
    pub fn refuses(
        self,
        client_http2: bool,
        grpc: bool,
        method: &http::Method,
    ) -> Option<&'static str> {
        match self {
            TargetProtocol::Http1 if grpc => {
                Some("a gRPC request to a target group of protocol version HTTP1")
            }
            TargetProtocol::Http1 => None,
            TargetProtocol::Http2 | TargetProtocol::Grpc if !client_http2 => {
                Some("an HTTP/1.1 request to a target group of protocol version HTTP2 or GRPC")
            }
            TargetProtocol::Grpc if method != http::Method::POST => {
                Some("a non-POST request to a target group of protocol version GRPC")
            }
            TargetProtocol::Http2 | TargetProtocol::Grpc => None,
        }
    }

    /// The word of `--target-protocol`.
    pub fn word(self) -> &'static str {
        match self {
            TargetProtocol::Http1 => "http1",
            TargetProtocol::Http2 => "http2",
            TargetProtocol::Grpc => "grpc",
        }
    }
}

impl Settings {
    /// Defaults for `cloud`.
    pub fn new(cloud: Cloud) -> Self {
        Settings {
            cloud,
            defaults: LbDefaults::Anyscale,
            idle_timeout: None,
            backend_timeout: None,
            connect_timeout: None,
            client_keep_alive: None,
            health_path: None,
            health_interval: None,
            health_timeout: None,
            healthy_threshold: None,
            unhealthy_threshold: None,
            health_checks: true,
            warmup: None,
            deregistration_delay: None,
            desync_mode: None,
            race_window: RaceWindow::Window(DEFAULT_RACE_WINDOW),
            time_scale: 1.0,
            shutdown_grace: None,
            no_retry: false,
            target_protocol: TargetProtocol::Http1,
        }
    }
}

impl Default for Settings {
    /// AWS's defaults; serde fills a scenario's absent keys from here (its `cloud` and
    /// `time_scale` are set from the file's top level afterwards).
    fn default() -> Self {
        Settings::new(Cloud::Aws)
    }
}

/// Accepts an origin-form path: starts with `/`, visible ASCII only (no spaces, no CR/LF).
pub fn parse_path(s: &str) -> Result<String, String> {
    if s.starts_with('/') && s.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "`{s}`: expected a path starting with / and without spaces, e.g. /-/healthz"
        ))
    }
}

fn de_path<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = <String as serde::Deserialize>::deserialize(d)?;
    parse_path(&s).map(Some).map_err(serde::de::Error::custom)
}

/// Durations in files are strings, as on the command line: `"500ms"`, `"3s"`, `"5m"`.
pub(crate) mod serde_duration {
    use std::time::Duration;

    use serde::de::{self, Deserializer, Visitor};

    struct HumanDuration;

    impl Visitor<'_> for HumanDuration {
        type Value = Duration;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a duration string such as \"300s\" or \"500ms\"")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Duration, E> {
            super::parse_duration(s).map_err(E::custom)
        }
    }

    /// A duration string, for an optional key (absent is `None` by the struct's default).
    pub(crate) fn option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        d.deserialize_str(HumanDuration).map(Some)
    }
}

impl<'de> serde::Deserialize<'de> for RaceWindow {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = RaceWindow;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("\"always\" or a duration string such as \"5ms\"")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<RaceWindow, E> {
                s.parse::<RaceWindow>().map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// The timers the engine uses, already scaled.
#[derive(Clone, Copy, Debug)]
pub struct Timers {
    /// Idle or end-to-end, per the profile's `timeout_kind`.
    pub timeout: Duration,
    /// TCP connect to a target.
    pub connect_timeout: Duration,
    /// Idle pooled target connections older than this are closed by the LB.
    pub backend_keep_alive: Duration,
    /// Idle client connections are closed after this; a stalled request gets 408.
    pub client_idle: Duration,
    /// Client connections older than this get `Connection: close` on their next response.
    pub client_max_age: Option<Duration>,
    /// No target counts as healthy this long after start.
    pub warmup: Duration,
    /// How long a deregistered target drains.
    pub deregistration_delay: Duration,
}

/// A setting that contradicts the chosen cloud.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A flag for the other cloud's timeout.
    #[error(
        "{flag} does not apply to {lb}: its main timeout is the {setting}, set with {right_flag}"
    )]
    WrongTimeoutFlag {
        flag: &'static str,
        lb: &'static str,
        setting: &'static str,
        right_flag: &'static str,
    },
    /// A zero timeout would fail every request.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
}

/// Effective settings of one simulator.
#[derive(Clone, Debug)]
pub struct Config {
    /// The cloud's data.
    pub profile: &'static Profile,
    /// Which defaults were used (for `--print-config`).
    pub defaults: LbDefaults,
    /// Scaled timers.
    pub timers: Timers,
    /// Keep-alive race model.
    pub race_window: RaceWindow,
    /// The scale applied to the timers.
    pub time_scale: f64,
    /// Bound on graceful shutdown.
    pub shutdown_grace: Duration,
    /// Active health checks.
    pub health: HealthCheck,
    /// Request-head rules (the profile's, with the chosen desync mode).
    pub validation: Rules,
    /// The cloud's retry of failed requests, unless `--no-retry` turned it off.
    pub retry: Option<RetryPolicy>,
    /// What the LB speaks to targets.
    pub target_protocol: TargetProtocol,
}

impl Config {
    /// Resolves defaults, checks flags against the profile and scales every timer once.
    pub fn build(s: &Settings) -> Result<Config, ConfigError> {
        let profile = Profile::of(s.cloud);
        let defaults = profile.defaults(s.defaults);
        let (given, wrong_flag) = match profile.timeout_kind {
            TimeoutKind::Idle => (
                s.idle_timeout,
                s.backend_timeout.map(|_| "--backend-timeout"),
            ),
            TimeoutKind::EndToEnd => (s.backend_timeout, s.idle_timeout.map(|_| "--idle-timeout")),
        };
        if let Some(flag) = wrong_flag {
            return Err(ConfigError::WrongTimeoutFlag {
                flag,
                lb: profile.display_name,
                setting: profile.timeout_setting,
                right_flag: profile.timeout_flag,
            });
        }
        let timeout = given.unwrap_or(defaults.timeout);
        let connect = s.connect_timeout.unwrap_or(defaults.connect_timeout);
        if timeout.is_zero() {
            return Err(ConfigError::Zero(profile.timeout_flag));
        }
        if connect.is_zero() {
            return Err(ConfigError::Zero("--connect-timeout"));
        }
        let keep_alive = match profile.backend_keep_alive {
            BackendKeepAlive::SameAsTimeout => timeout,
            BackendKeepAlive::Fixed(d) => d,
        };
        let mut client_idle = match profile.client_idle {
            ClientIdle::SameAsTimeout => timeout,
            ClientIdle::Fixed(d) => d,
        };
        let mut client_max_age = profile.client_max_age;
        if let Some(d) = s.client_keep_alive {
            if d.is_zero() {
                return Err(ConfigError::Zero("--client-keep-alive"));
            }
            match profile.client_keep_alive_meaning {
                ClientKeepAliveMeaning::MaxAge => client_max_age = Some(d),
                ClientKeepAliveMeaning::Idle => client_idle = d,
            }
        }
        let scale = |d: Duration| d.mul_f64(s.time_scale);
        let hd = profile.health;
        let healthy = s.healthy_threshold.unwrap_or(hd.healthy_threshold);
        let thresholds = Thresholds {
            healthy,
            unhealthy: s.unhealthy_threshold.unwrap_or(hd.unhealthy_threshold),
            initial: hd.initial_passes.map_or(healthy, |n| n.min(healthy)),
        };
        if thresholds.healthy == 0 || thresholds.unhealthy == 0 {
            return Err(ConfigError::Zero(
                "--healthy-threshold/--unhealthy-threshold",
            ));
        }
        // The check follows the protocol targets are spoken to (ALB and GCP alike).
        let (via, default_path) = match (s.target_protocol, hd.grpc) {
            (TargetProtocol::Http1, _) => (CheckVia::Http1Get, hd.path),
            (TargetProtocol::Http2, _) => (CheckVia::Http2Get, hd.path),
            (TargetProtocol::Grpc, GrpcHealth::Codes { path, codes }) => {
                (CheckVia::GrpcCodes(codes), path)
            }
            (TargetProtocol::Grpc, GrpcHealth::HealthService) => {
                (CheckVia::GrpcHealthService, GRPC_HEALTH_CHECK_PATH)
            }
        };
        let health = HealthCheck {
            enabled: s.health_checks,
            path: s
                .health_path
                .clone()
                .unwrap_or_else(|| default_path.to_string()),
            via,
            interval: scale(s.health_interval.unwrap_or(hd.interval)),
            timeout: scale(s.health_timeout.unwrap_or(hd.timeout)),
            thresholds,
            user_agent: hd.user_agent,
        };
        Ok(Config {
            profile,
            defaults: s.defaults,
            timers: Timers {
                timeout: scale(timeout),
                connect_timeout: scale(connect),
                backend_keep_alive: scale(keep_alive),
                client_idle: scale(client_idle),
                client_max_age: client_max_age.map(scale),
                warmup: scale(s.warmup.unwrap_or(Duration::ZERO)),
                deregistration_delay: scale(
                    s.deregistration_delay
                        .unwrap_or(profile.deregistration_delay),
                ),
            },
            health,
            validation: Rules {
                desync: s.desync_mode.unwrap_or(profile.validation.desync),
                ..profile.validation
            },
            race_window: s.race_window,
            time_scale: s.time_scale,
            shutdown_grace: s.shutdown_grace.unwrap_or(DEFAULT_SHUTDOWN_GRACE),
            retry: profile.retry.filter(|_| !s.no_retry),
            target_protocol: s.target_protocol,
        })
    }
}

/// Width of the label column of `--print-config`, long enough for every label.
pub(crate) const PRINT_LABEL_WIDTH: usize = 26;

impl Config {
    /// `--print-config` rows: label and value.
    pub fn rows(&self) -> Vec<(String, String)> {
        let p = self.profile;
        let t = &self.timers;
        let kind = match p.timeout_kind {
            TimeoutKind::Idle => "idle (no byte for this long)",
            TimeoutKind::EndToEnd => "end-to-end (whole response, streaming included)",
        };
        let defaults = match self.defaults {
            LbDefaults::Anyscale => "anyscale",
            LbDefaults::Native => "native",
        };
        let h = &self.health;
        let health = if h.enabled {
            let how = match h.via {
                CheckVia::Http1Get => format!("GET {}", h.path),
                CheckVia::Http2Get => format!("GET {} over HTTP/2", h.path),
                CheckVia::GrpcCodes(codes) => format!(
                    "gRPC {} (passes on grpc-status {})",
                    h.path,
                    codes
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                CheckVia::GrpcHealthService => format!("gRPC {} (passes on SERVING)", h.path),
            };
            format!(
                "{how} every {}, timeout {}, healthy {}, unhealthy {}, new target {}, agent {}",
                crate::human::duration(h.interval),
                crate::human::duration(h.timeout),
                h.thresholds.healthy,
                h.thresholds.unhealthy,
                h.thresholds.initial,
                h.user_agent
            )
        } else {
            "off".to_string()
        };
        let no_healthy = if p.fails_open {
            "fail open (route to all)".to_string()
        } else {
            p.outcome(crate::lb::reason::Reason::NoHealthyTargets)
                .status
                .to_string()
        };
        let client_keep_alive = match t.client_max_age {
            Some(d) => format!("{} (then Connection: close)", crate::human::duration(d)),
            None => "-".to_string(),
        };
        let mut rows: Vec<(String, String)> = vec![
            ("load balancer".into(), p.display_name.into()),
            ("defaults".into(), defaults.into()),
            ("time scale".into(), self.time_scale.to_string()),
            (
                p.timeout_setting.into(),
                format!("{} [{kind}]", crate::human::duration(t.timeout)),
            ),
            (
                "connect timeout".into(),
                crate::human::duration(t.connect_timeout),
            ),
            (
                "backend keep-alive".into(),
                crate::human::duration(t.backend_keep_alive),
            ),
            (
                "client idle timeout".into(),
                crate::human::duration(t.client_idle),
            ),
            ("client keep-alive".into(), client_keep_alive),
            ("health checks".into(), health),
            ("no healthy target".into(), no_healthy),
            ("warmup".into(), crate::human::duration(t.warmup)),
            (
                "deregistration delay".into(),
                crate::human::duration(t.deregistration_delay),
            ),
            (
                "desync mitigation".into(),
                format!("{:?}", self.validation.desync).to_lowercase(),
            ),
            (
                "race window".into(),
                match self.race_window {
                    RaceWindow::Window(w) => crate::human::duration(w),
                    RaceWindow::Always => "always".into(),
                },
            ),
            (
                "retries".into(),
                match self.retry {
                    Some(r) => {
                        // Several causes share one cloud word: name each word once.
                        let mut words: Vec<&str> =
                            r.on.iter().map(|reason| p.outcome(*reason).code).collect();
                        words.dedup();
                        let mut said = if r.attempts == 2 {
                            format!(
                                "{} once more after {}",
                                r.methods.join(", "),
                                words.join(", ")
                            )
                        } else {
                            format!(
                                "{} up to {} attempts in all after {}",
                                r.methods.join(", "),
                                r.attempts,
                                words.join(", ")
                            )
                        };
                        if !r.unsent_methods.is_empty() {
                            said.push_str(&format!(
                                "; {} only if the request was never sent",
                                r.unsent_methods.join(", ")
                            ));
                        }
                        said
                    }
                    None => "none".into(),
                },
            ),
            (
                "shutdown grace".into(),
                crate::human::duration(self.shutdown_grace),
            ),
        ];
        // Shown only when set: HTTP/1.1 to the app is every cloud's default.
        if self.target_protocol.is_http2() {
            rows.push((
                "target protocol".into(),
                format!(
                    "{} (HTTP/2 without TLS, prior knowledge)",
                    self.target_protocol.word()
                ),
            ));
        }
        rows
    }
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows = self.rows();
        for (i, (label, value)) in rows.iter().enumerate() {
            let label = format!("{label}:");
            write!(f, "{label:<PRINT_LABEL_WIDTH$}{value}")?;
            if i + 1 < rows.len() {
                writeln!(f)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alb_protocol_version_table() {
        use http::Method;
        let (get, post) = (Method::GET, Method::POST);
        // (target, client HTTP/2, gRPC, method) -> refused?
        for (target, h2, grpc, method, refused) in [
            (TargetProtocol::Http1, false, false, &get, false),
            (TargetProtocol::Http1, true, false, &get, false),
            (TargetProtocol::Http1, true, true, &post, true),
            (TargetProtocol::Http2, false, false, &get, true),
            (TargetProtocol::Http2, true, false, &get, false),
            (TargetProtocol::Http2, true, true, &post, false),
            (TargetProtocol::Grpc, false, false, &post, true),
            (TargetProtocol::Grpc, true, false, &get, true),
            (TargetProtocol::Grpc, true, false, &post, false),
            (TargetProtocol::Grpc, true, true, &post, false),
        ] {
            assert_eq!(
                target.refuses(h2, grpc, method).is_some(),
                refused,
                "{target:?} h2={h2} grpc={grpc} {method}"
            );
        }
    }

    #[test]
    fn time_scale_applies_to_every_timer() {
        let mut s = Settings::new(Cloud::Aws);
        s.time_scale = 0.01;
        let c = Config::build(&s).unwrap();
        assert_eq!(c.timers.timeout, Duration::from_secs(3));
        assert_eq!(c.timers.connect_timeout, Duration::from_millis(100));
        assert_eq!(c.timers.backend_keep_alive, Duration::from_secs(3));
    }

    #[test]
    fn native_defaults_and_wrong_flag() {
        let mut s = Settings::new(Cloud::Gcp);
        s.defaults = LbDefaults::Native;
        assert_eq!(
            Config::build(&s).unwrap().timers.timeout,
            Duration::from_secs(30)
        );
        s.idle_timeout = Some(Duration::from_secs(1));
        let err = Config::build(&s).unwrap_err().to_string();
        assert!(err.contains("--backend-timeout"), "{err}");
    }
}

#[cfg(test)]
mod settings_tests {
    use super::*;

    #[test]
    fn a_scenario_lb_table_fills_every_setting_but_cloud_and_time_scale() {
        let toml = r#"
            lb_defaults = "native"
            idle_timeout = "4s"
            connect_timeout = "250ms"
            client_keep_alive = "1m"
            health_path = "/-/healthz"
            health_interval = "5s"
            health_timeout = "2s"
            healthy_threshold = 3
            unhealthy_threshold = 4
            health_checks = false
            warmup = "1s"
            deregistration_delay = "30s"
            desync_mode = "strictest"
            race_window = "always"
            shutdown_grace = "3s"
            no_retry = true
        "#;
        let s: Settings = toml::from_str(toml).expect("every key is a setting");
        assert_eq!(
            s,
            Settings {
                defaults: LbDefaults::Native,
                idle_timeout: Some(Duration::from_secs(4)),
                connect_timeout: Some(Duration::from_millis(250)),
                client_keep_alive: Some(Duration::from_secs(60)),
                health_path: Some("/-/healthz".into()),
                health_interval: Some(Duration::from_secs(5)),
                health_timeout: Some(Duration::from_secs(2)),
                healthy_threshold: Some(3),
                unhealthy_threshold: Some(4),
                health_checks: false,
                warmup: Some(Duration::from_secs(1)),
                deregistration_delay: Some(Duration::from_secs(30)),
                desync_mode: Some(DesyncMode::Strictest),
                race_window: RaceWindow::Always,
                shutdown_grace: Some(Duration::from_secs(3)),
                no_retry: true,
                ..Settings::new(Cloud::Aws)
            }
        );
        assert_eq!(
            toml::from_str::<Settings>("").expect("every key is optional"),
            Settings::default()
        );
    }

    #[test]
    fn a_scenario_lb_table_refuses_what_is_not_an_lb_setting() {
        for (toml, says) in [
            ("cloud = \"gcp\"", "unknown field `cloud`"),
            ("time_scale = 0.5", "unknown field `time_scale`"),
            ("idle_timeot = \"3s\"", "unknown field `idle_timeot`"),
            (
                "idle_timeout = \"3 parsecs\"",
                "expected a duration like 500ms",
            ),
            ("idle_timeout = 3", "a duration string such as \"300s\""),
            (
                "health_path = \"healthz\"",
                "expected a path starting with /",
            ),
            (
                "race_window = \"sometimes\"",
                "expected a duration like 500ms",
            ),
        ] {
            let e = toml::from_str::<Settings>(toml)
                .expect_err(toml)
                .to_string();
            assert!(e.contains(says), "{toml}: {e}");
        }
    }
}
