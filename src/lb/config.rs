//! Effective settings: a cloud profile plus the user's flags, every timer scaled once here.

use std::fmt;
use std::time::Duration;

use crate::lb::health::HealthCheck;
use crate::lb::profile::{
    BackendKeepAlive, ClientIdle, ClientKeepAliveMeaning, Cloud, LbDefaults, Profile, RetryPolicy,
    TimeoutKind,
};
use crate::lb::targets::Thresholds;
use crate::lb::validate::{DesyncMode, Rules};

/// How long after a target closes an idle pooled connection the LB goes on believing it open.
/// About one datacenter round trip plus scheduling: the window in which the production race
/// happens.
pub const DEFAULT_RACE_WINDOW: Duration = Duration::from_millis(5);

/// How long in-flight requests may run after SIGINT/SIGTERM before lbsim exits anyway.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

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
            RaceWindow::Window(d) => write!(f, "{}", humantime::format_duration(*d)),
            RaceWindow::Always => f.write_str("always"),
        }
    }
}

/// Parses `500ms`, `3s`, `5m`, `1h 30m` (humantime), for clap value parsers.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{e} (expected a duration like 500ms, 3s, 5m)"))
}

/// Parses a positive, finite time scale.
pub fn parse_time_scale(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if f.is_finite() && f > 0.0 => Ok(f),
        _ => Err("expected a positive number, e.g. 0.01".to_string()),
    }
}

/// What a user asked for, before defaults and scaling.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Which cloud to imitate.
    pub cloud: Cloud,
    /// Anyscale or provider stock defaults.
    pub defaults: LbDefaults,
    /// `--idle-timeout` (AWS main timeout).
    pub idle_timeout: Option<Duration>,
    /// `--backend-timeout` (GCP main timeout).
    pub backend_timeout: Option<Duration>,
    /// `--connect-timeout`.
    pub connect_timeout: Option<Duration>,
    /// `--client-keep-alive`: connection age (AWS) or idle time (GCP), per the profile.
    pub client_keep_alive: Option<Duration>,
    /// `--health-path`.
    pub health_path: Option<String>,
    /// `--health-interval`.
    pub health_interval: Option<Duration>,
    /// `--health-timeout`.
    pub health_timeout: Option<Duration>,
    /// `--healthy-threshold`.
    pub healthy_threshold: Option<u32>,
    /// `--unhealthy-threshold`.
    pub unhealthy_threshold: Option<u32>,
    /// False with `--no-health-checks`.
    pub health_checks: bool,
    /// `--warmup`: no target counts as healthy this long after start.
    pub warmup: Option<Duration>,
    /// `--deregistration-delay`.
    pub deregistration_delay: Option<Duration>,
    /// `--desync-mode`.
    pub desync_mode: Option<DesyncMode>,
    /// `--race-window`; not scaled, it models network latency, not a cloud timer.
    pub race_window: RaceWindow,
    /// Multiplies every timer.
    pub time_scale: f64,
    /// Bound on graceful shutdown; not scaled.
    pub shutdown_grace: Duration,
    /// `--no-retry`: the LB never retries, even where the cloud does (GCP's GET retry).
    pub no_retry: bool,
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
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            no_retry: false,
        }
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
        let health = HealthCheck {
            enabled: s.health_checks,
            path: s.health_path.clone().unwrap_or_else(|| hd.path.to_string()),
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
            shutdown_grace: s.shutdown_grace,
            retry: profile.retry.filter(|_| !s.no_retry),
        })
    }
}

fn fmt_d(d: Duration) -> String {
    // Round to the millisecond so scaled values print cleanly.
    humantime::format_duration(Duration::from_millis(d.as_millis() as u64)).to_string()
}

/// Width of the label column of `--print-config`, long enough for every label.
pub const PRINT_LABEL_WIDTH: usize = 26;

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
            format!(
                "GET {} every {}, timeout {}, healthy {}, unhealthy {}, new target {}, agent {}",
                h.path,
                fmt_d(h.interval),
                fmt_d(h.timeout),
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
            Some(d) => format!("{} (then Connection: close)", fmt_d(d)),
            None => "-".to_string(),
        };
        vec![
            ("load balancer".into(), p.display_name.into()),
            ("defaults".into(), defaults.into()),
            ("time scale".into(), self.time_scale.to_string()),
            (
                p.timeout_setting.into(),
                format!("{} [{kind}]", fmt_d(t.timeout)),
            ),
            ("connect timeout".into(), fmt_d(t.connect_timeout)),
            ("backend keep-alive".into(), fmt_d(t.backend_keep_alive)),
            ("client idle timeout".into(), fmt_d(t.client_idle)),
            ("client keep-alive".into(), client_keep_alive),
            ("health checks".into(), health),
            ("no healthy target".into(), no_healthy),
            ("warmup".into(), fmt_d(t.warmup)),
            ("deregistration delay".into(), fmt_d(t.deregistration_delay)),
            (
                "desync mitigation".into(),
                format!("{:?}", self.validation.desync).to_lowercase(),
            ),
            ("race window".into(), self.race_window.to_string()),
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
            ("shutdown grace".into(), fmt_d(self.shutdown_grace)),
        ]
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
