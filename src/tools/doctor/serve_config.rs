//! `lbsim doctor --serve-config FILE`: the doctor's checks made on a Ray Serve config file
//! (or an Anyscale service config that wraps one), with no running app.
//!
//! The file's settings are compared with the load balancer's values from [`Config::build`],
//! as the live doctor does, and reported with the same [`Report`], [`Check`] and exit codes:
//!
//! - **keep-alive** (502): `http_options.keep_alive_timeout_s` (unset: Ray's default,
//!   [`RAY_DEFAULT_KEEP_ALIVE_TIMEOUT_S`]) against the LB's backend keep-alive. RISK when
//!   it is not above it.
//! - **timeout** (Ray's 408 or the LB's 504): `http_options.request_timeout_s` (unset: no
//!   timeout) against the LB's main timeout. Always PASS: it says which of the two answers a
//!   slow request.
//! - **backpressure** (Ray's 503 or the LB's 504), one per deployment the file lists:
//!   `max_queued_requests` (unset or -1: unlimited). Always PASS (why: on `Judge::backpressure`).
//! - **health** (503): only when `--health-path` is given or a deployment sets Ray's own
//!   health-check settings: whether Ray Serve answers the LB's health-check path.
//!
//! Ray's values are in production seconds, so they are compared with the LB's values at full
//! scale: `--time-scale` changes nothing here but is shown next to the LB's value.
//!
//! Unknown keys are ignored (a `serve build` file and an Anyscale service file carry many);
//! a file that does not parse is a [`ServeConfigError`] with `file:line:column`.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::de::{self, Deserializer, Unexpected, Visitor};
use serde::Deserialize;

use super::{exit_code, health_consequence, Check, Report, Verdict};
use crate::human;
use crate::lb::advice::keep_alive_fix;
use crate::lb::config::{Config, Settings};
use crate::lb::reason::Reason;
use crate::mock::RAY_DEFAULT_MAX_ONGOING_REQUESTS;

/// Ray Serve's `http_options.keep_alive_timeout_s` when the file leaves it unset: 90 s in
/// current Ray (`ray.serve.config.HTTPOptions`, `keep_alive_timeout_s: int = 90`; measured
/// on ray 2.x in shared/reference/aws-alb.md), 5 s in old releases. The cluster's
/// `RAY_SERVE_HTTP_KEEP_ALIVE_TIMEOUT_S` can change it; the file cannot show that.
pub const RAY_DEFAULT_KEEP_ALIVE_TIMEOUT_S: f64 = 90.0;

/// Ray Serve's `max_queued_requests` default: -1, no limit (Ray's deployment options).
pub const RAY_UNLIMITED_QUEUE: i64 = -1;

/// The path Ray Serve's proxy answers itself: 200 when ready, 503 while draining or with
/// no application running (shared/reference/gcp-lb.md).
pub const RAY_HEALTH_PATH: &str = "/-/healthz";

/// Name of the request-timeout check.
pub const TIMEOUT: &str = "timeout";
/// Name of the per-deployment queue check.
pub const BACKPRESSURE: &str = "backpressure";

/// What to check and against which load balancer values.
#[derive(Clone, Debug)]
pub struct Options {
    /// The cloud and its timers, as the proxy and the live doctor take them.
    pub settings: Settings,
    /// The Ray Serve config or Anyscale service config file.
    pub file: std::path::PathBuf,
    /// The LB's health-check path when the user gave one (`--health-path`).
    pub health_path: Option<String>,
}

/// Why a file gives no report; the doctor exits with 2.
#[derive(Debug, thiserror::Error)]
pub enum ServeConfigError {
    /// The file cannot be read.
    #[error("cannot read {origin}: {reason}")]
    Read {
        /// The path as given.
        origin: String,
        /// The operating system's words.
        reason: String,
    },
    /// The file is not YAML, or a setting has the wrong type or value.
    #[error("{origin}:{line}:{column}: {message}")]
    Parse {
        /// The path as given.
        origin: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What was expected, in the YAML parser's words.
        message: String,
    },
}

/// The settings lbsim reads from a Serve config, wherever the file put them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServeConfig {
    /// `ray_serve_config.` when the file is an Anyscale service config wrapping the Serve
    /// config, else empty: put in front of every setting's YAML path.
    pub prefix: &'static str,
    /// `http_options.keep_alive_timeout_s`, seconds, when set.
    pub keep_alive_timeout_s: Option<f64>,
    /// `http_options.request_timeout_s`, seconds, when set (unset: no timeout).
    pub request_timeout_s: Option<f64>,
    /// `applications`, in file order.
    pub applications: Vec<Application>,
    /// Whether the file has an `applications` key at all.
    pub lists_applications: bool,
}

/// One entry of `applications`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Application {
    /// `name`, when set.
    pub name: Option<String>,
    /// `route_prefix`: `None` when set to null (no HTTP route); Ray's default `/` when unset.
    pub route_prefix: Option<String>,
    /// `deployments`, in file order (those the file overrides; others keep their code's values).
    pub deployments: Vec<Deployment>,
}

/// One entry of an application's `deployments`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Deployment {
    /// `name`, when set.
    pub name: Option<String>,
    /// `max_ongoing_requests`, when set.
    pub max_ongoing_requests: Option<i64>,
    /// `max_queued_requests`, when set (-1: unlimited).
    pub max_queued_requests: Option<i64>,
    /// `health_check_period_s` (Ray's own replica check), when set.
    pub health_check_period_s: Option<f64>,
    /// `health_check_timeout_s` (Ray's own replica check), when set.
    pub health_check_timeout_s: Option<f64>,
}

// ---- the file, as serde reads it -------------------------------------------------------
//
// Typed structs rather than a YAML value tree: serde_norway then reports every wrong type
// or value at its own line and column. No `deny_unknown_fields`: unknown keys are ignored.

/// The top level: a Serve config, or an Anyscale service config with `ray_serve_config`.
#[derive(Deserialize, Default)]
struct RawFile {
    ray_serve_config: Option<RawServe>,
    http_options: Option<RawHttp>,
    applications: Option<Vec<RawApp>>,
}

#[derive(Deserialize, Default)]
struct RawServe {
    http_options: Option<RawHttp>,
    applications: Option<Vec<RawApp>>,
}

#[derive(Deserialize, Default)]
struct RawHttp {
    keep_alive_timeout_s: Option<Seconds>,
    request_timeout_s: Option<Seconds>,
}

#[derive(Deserialize)]
struct RawApp {
    name: Option<Name>,
    /// Outer `None`: the key is absent (Ray's default `/`); `Some(None)`: null, no route.
    #[serde(default, deserialize_with = "present")]
    route_prefix: Option<Option<Name>>,
    deployments: Option<Vec<RawDeployment>>,
}

#[derive(Deserialize)]
struct RawDeployment {
    name: Option<Name>,
    max_ongoing_requests: Option<OngoingLimit>,
    max_queued_requests: Option<QueueLimit>,
    health_check_period_s: Option<Seconds>,
    health_check_timeout_s: Option<Seconds>,
}

/// Tells a key set to null (`Some(None)`) from an absent one (`None`, via `default`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A number of seconds, 0 or more; a quoted number is accepted, as Ray's pydantic does.
struct Seconds(f64);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl V {
            fn check<E: de::Error>(&self, v: f64, seen: Unexpected<'_>) -> Result<Seconds, E> {
                if v.is_finite() && v >= 0.0 {
                    Ok(Seconds(v))
                } else {
                    Err(E::invalid_value(seen, self))
                }
            }
        }
        impl Visitor<'_> for V {
            type Value = Seconds;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number of seconds, 0 or more")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Seconds, E> {
                Ok(Seconds(v as f64))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Seconds, E> {
                self.check(v as f64, Unexpected::Signed(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Seconds, E> {
                self.check(v, Unexpected::Float(v))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Seconds, E> {
                match s.trim().parse::<f64>() {
                    Ok(v) => self.check(v, Unexpected::Str(s)),
                    Err(_) => Err(E::invalid_value(Unexpected::Str(s), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// An integer that `ok` accepts; `expecting` says which (for the error message).
fn integer<'de, D: Deserializer<'de>>(
    d: D,
    expecting: &'static str,
    ok: fn(i64) -> bool,
) -> Result<i64, D::Error> {
    struct V {
        expecting: &'static str,
        ok: fn(i64) -> bool,
    }
    impl V {
        fn check<E: de::Error>(&self, v: i64, seen: Unexpected<'_>) -> Result<i64, E> {
            if (self.ok)(v) {
                Ok(v)
            } else {
                Err(E::invalid_value(seen, self))
            }
        }
    }
    impl Visitor<'_> for V {
        type Value = i64;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(self.expecting)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
            match i64::try_from(v) {
                Ok(i) => self.check(i, Unexpected::Unsigned(v)),
                Err(_) => Err(E::invalid_value(Unexpected::Unsigned(v), &self)),
            }
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
            self.check(v, Unexpected::Signed(v))
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<i64, E> {
            match s.trim().parse::<i64>() {
                Ok(v) => self.check(v, Unexpected::Str(s)),
                Err(_) => Err(E::invalid_value(Unexpected::Str(s), &self)),
            }
        }
    }
    d.deserialize_any(V { expecting, ok })
}

/// `max_queued_requests`: -1 (unlimited) or a positive count, as Ray validates it.
struct QueueLimit(i64);

impl<'de> Deserialize<'de> for QueueLimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        integer(d, "-1 (unlimited) or a positive number of requests", |v| {
            v == RAY_UNLIMITED_QUEUE || v > 0
        })
        .map(QueueLimit)
    }
}

/// `max_ongoing_requests`: a positive count.
struct OngoingLimit(i64);

impl<'de> Deserialize<'de> for OngoingLimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        integer(d, "a positive number of requests", |v| v > 0).map(OngoingLimit)
    }
}

/// A name or route: any scalar, as text (`name: 2024` is a name too).
struct Name(String);

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Name;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Name, E> {
                Ok(Name(s.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Name, E> {
                Ok(Name(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Name, E> {
                Ok(Name(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Name, E> {
                Ok(Name(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Name, E> {
                Ok(Name(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl ServeConfig {
    /// Reads `path` (see [`ServeConfig::parse`]).
    pub fn read(path: &Path) -> Result<ServeConfig, ServeConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ServeConfigError::Read {
            origin: origin.clone(),
            reason: e.to_string(),
        })?;
        ServeConfig::parse(&origin, &text)
    }

    /// Parses `text`, a Ray Serve config or an Anyscale service config, whose name is
    /// `origin` (used in errors). With a `ray_serve_config` key, the Serve config is read
    /// from it and the top-level Serve keys are ignored.
    pub fn parse(origin: &str, text: &str) -> Result<ServeConfig, ServeConfigError> {
        let at = |line: usize, column: usize, message: String| ServeConfigError::Parse {
            origin: origin.to_string(),
            line,
            column,
            message,
        };
        // An empty file, or one of comments only, is YAML's null: say what was expected.
        let blank = text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'));
        let not_serve = "expected a Ray Serve config (`http_options`, `applications`) or an \
                         Anyscale service config (`ray_serve_config`)";
        if blank {
            return Err(at(1, 1, format!("the file is empty: {not_serve}")));
        }
        let raw: RawFile = serde_norway::from_str(text).map_err(|e| {
            let (line, column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
            at(line, column, parser_message(&e))
        })?;
        let (prefix, serve) = match raw.ray_serve_config {
            Some(inner) => ("ray_serve_config.", inner),
            None if raw.http_options.is_none() && raw.applications.is_none() => {
                return Err(at(1, 1, format!("no Serve settings found: {not_serve}")));
            }
            None => (
                "",
                RawServe {
                    http_options: raw.http_options,
                    applications: raw.applications,
                },
            ),
        };
        let http = serve.http_options.unwrap_or_default();
        let lists_applications = serve.applications.is_some();
        let applications = serve
            .applications
            .unwrap_or_default()
            .into_iter()
            .map(|a| Application {
                name: a.name.map(|n| n.0),
                route_prefix: match a.route_prefix {
                    // Ray's schema default for an application's route_prefix.
                    None => Some("/".to_string()),
                    Some(p) => p.map(|n| n.0),
                },
                deployments: a
                    .deployments
                    .unwrap_or_default()
                    .into_iter()
                    .map(|d| Deployment {
                        name: d.name.map(|n| n.0),
                        max_ongoing_requests: d.max_ongoing_requests.map(|v| v.0),
                        max_queued_requests: d.max_queued_requests.map(|v| v.0),
                        health_check_period_s: d.health_check_period_s.map(|v| v.0),
                        health_check_timeout_s: d.health_check_timeout_s.map(|v| v.0),
                    })
                    .collect(),
            })
            .collect();
        Ok(ServeConfig {
            prefix,
            keep_alive_timeout_s: http.keep_alive_timeout_s.map(|v| v.0),
            request_timeout_s: http.request_timeout_s.map(|v| v.0),
            applications,
            lists_applications,
        })
    }
}

/// The parser's message without its own " at line L column C" (the error puts the location
/// in front instead), and with the words a person knows for lbsim's own struct names.
fn parser_message(e: &serde_norway::Error) -> String {
    let mut text = e.to_string();
    for (ours, theirs) in [
        ("struct RawFile", "a mapping of Serve settings"),
        ("struct RawServe", "a mapping (http_options, applications)"),
        (
            "struct RawHttp",
            "a mapping (keep_alive_timeout_s, request_timeout_s, ...)",
        ),
        (
            "struct RawApp",
            "an application mapping (name, route_prefix, deployments, ...)",
        ),
        (
            "struct RawDeployment",
            "a deployment mapping (name, max_queued_requests, ...)",
        ),
    ] {
        text = text.replace(ours, theirs);
    }
    match e.location() {
        Some(l) => {
            let tail = format!(" at line {} column {}", l.line(), l.column());
            match text.find(&tail) {
                Some(i) => format!("{}{}", &text[..i], &text[i + tail.len()..]),
                None => text,
            }
        }
        None => text,
    }
}

/// Seconds as the doctor writes durations (`90 s`, `0.5 s` as `500 ms`).
fn secs(v: f64) -> String {
    Duration::try_from_secs_f64(v).map_or_else(|_| format!("{v} s"), human::duration)
}

/// Reads the file and judges it against the LB's values: `Err` only when no report can be
/// made (the flags or the file are wrong; exit code 2).
pub fn diagnose(opts: &Options) -> Result<Report, super::DoctorError> {
    let config = Config::build(&opts.settings)?;
    if let Some(path) = &opts.health_path {
        crate::lb::config::parse_path(path).map_err(super::DoctorError::BadPath)?;
    }
    let serve = ServeConfig::read(&opts.file)?;
    let origin = opts.file.display().to_string();
    Ok(report(
        &config,
        &origin,
        &serve,
        opts.health_path.as_deref(),
    ))
}

/// The report on `serve` (read from `origin`) behind the LB that `config` describes.
pub fn report(
    config: &Config,
    origin: &str,
    serve: &ServeConfig,
    health_path: Option<&str>,
) -> Report {
    let judge = Judge {
        config,
        origin,
        serve,
    };
    let mut checks = vec![judge.keep_alive(), judge.timeout()];
    checks.extend(judge.backpressure());
    checks.extend(judge.health(health_path));
    let exit_code = exit_code(&checks);
    Report {
        cloud: config.profile.cloud,
        upstream: None,
        serve_config: Some(origin.to_string()),
        checks,
        exit_code,
    }
}

struct Judge<'a> {
    config: &'a Config,
    origin: &'a str,
    serve: &'a ServeConfig,
}

impl Judge<'_> {
    /// An LB timer at full scale, the scale Ray's settings are written in.
    fn full(&self, d: Duration) -> Duration {
        d.div_f64(self.config.time_scale)
    }

    /// An LB timer in words: full scale, and what lbsim runs when `--time-scale` is used.
    fn lb_words(&self, d: Duration) -> String {
        if self.config.time_scale == 1.0 {
            human::duration(d)
        } else {
            format!(
                "{} ({} as lbsim runs it at --time-scale {})",
                human::duration(self.full(d)),
                human::duration(d),
                self.config.time_scale
            )
        }
    }

    /// `FILE: ray_serve_config.http_options.keep_alive_timeout_s`.
    fn setting(&self, path: &str) -> String {
        format!("{}: {}{path}", self.origin, self.serve.prefix)
    }

    #[allow(clippy::too_many_arguments)]
    fn check(
        &self,
        name: &'static str,
        verdict: Verdict,
        measured: String,
        measured_s: Option<f64>,
        lb_value: String,
        lb_value_s: f64,
        detail: String,
        fix: Option<String>,
    ) -> Check {
        Check {
            name,
            verdict,
            measured,
            lb_value,
            fix,
            detail,
            measured_s,
            lb_value_s,
            at_least: false,
        }
    }

    fn keep_alive(&self) -> Check {
        let p = self.config.profile;
        let lb = self.config.timers.backend_keep_alive;
        let lb_full = self.full(lb).as_secs_f64();
        let (app, source) = match self.serve.keep_alive_timeout_s {
            Some(v) => (v, format!("is {}", secs(v))),
            None => (
                RAY_DEFAULT_KEEP_ALIVE_TIMEOUT_S,
                format!(
                    "is unset, so Ray Serve uses its default {} (current Ray; 5 s in old \
                     releases; RAY_SERVE_HTTP_KEEP_ALIVE_TIMEOUT_S on the cluster overrides it)",
                    secs(RAY_DEFAULT_KEEP_ALIVE_TIMEOUT_S)
                ),
            ),
        };
        let measured = match self.serve.keep_alive_timeout_s {
            Some(v) => secs(v),
            None => format!("{} (unset: Ray's default)", secs(app)),
        };
        let setting = self.setting("http_options.keep_alive_timeout_s");
        let lb_name = p.display_name;
        let lb_words = self.lb_words(lb);
        // Not above the LB's value is a risk: at equal values the two timers race.
        if app <= lb_full {
            self.check(
                super::KEEP_ALIVE,
                Verdict::Risk,
                measured,
                Some(app),
                lb_words.clone(),
                lb_full,
                format!(
                    "{setting} {source}: Ray closes idle connections after {}; {lb_name} keeps \
                     them {lb_words} → {}",
                    secs(app),
                    crate::lb::advice::race_consequence(self.config)
                ),
                Some(keep_alive_fix(self.config)),
            )
        } else {
            self.check(
                super::KEEP_ALIVE,
                Verdict::Pass,
                measured,
                Some(app),
                lb_words.clone(),
                lb_full,
                format!(
                    "{setting} {source}: Ray closes idle connections after {}; {lb_name} keeps \
                     them {lb_words}, so the LB closes first",
                    secs(app)
                ),
                None,
            )
        }
    }

    /// Ray's `request_timeout_s` against the LB's main timeout. PASS either way (the
    /// verdicts stay PASS/RISK/NOT MEASURED): a timeout in front of the LB's is not a
    /// misconfiguration, it only decides whose error a slow request gets; whether requests
    /// are slow is the live doctor's latency check.
    fn timeout(&self) -> Check {
        let p = self.config.profile;
        let timeout = self.config.timers.timeout;
        let lb_full = self.full(timeout).as_secs_f64();
        let status = p.outcome(Reason::TargetTimeout).status;
        let what = p.timeout_setting;
        let lb_name = p.display_name;
        let lb_words = self.lb_words(timeout);
        let lb_value = format!("{what} {lb_words}");
        let setting = self.setting("http_options.request_timeout_s");
        // What the LB's timeout counts: silences (AWS) or the whole response (GCP).
        let slow = match p.timeout_kind {
            crate::lb::profile::TimeoutKind::Idle => format!("a request silent for {lb_words}"),
            crate::lb::profile::TimeoutKind::EndToEnd => {
                format!("a request not finished in {lb_words}")
            }
        };
        let (measured, measured_s, detail) = match self.serve.request_timeout_s {
            Some(v) if v < lb_full => (
                secs(v),
                Some(v),
                format!(
                    "{setting} is {}, under the {lb_name} {what} of {lb_words}: Ray ends a slow \
                     request first, so the client sees Ray's 408, not the LB's {status}",
                    secs(v)
                ),
            ),
            Some(v) if v == lb_full => (
                secs(v),
                Some(v),
                format!(
                    "{setting} is {}, the same as the {lb_name} {what}: the two timers race, so \
                     a slow request gets Ray's 408 or the LB's {status}; set it lower to make it \
                     Ray's 408",
                    secs(v)
                ),
            ),
            Some(v) => (
                secs(v),
                Some(v),
                format!(
                    "{setting} is {}, over the {lb_name} {what} of {lb_words}: {slow} gets the \
                     LB's {status} first, and Ray's 408 never shows; set it under {} to answer \
                     Ray's 408 instead",
                    secs(v),
                    human::duration(self.full(timeout))
                ),
            ),
            None => (
                "unset (no timeout)".to_string(),
                None,
                format!(
                    "{setting} is unset, so Ray Serve never times a request out: {slow} gets \
                     the {lb_name}'s {status}; set it under {} to answer Ray's 408 instead",
                    human::duration(self.full(timeout))
                ),
            ),
        };
        self.check(
            TIMEOUT,
            Verdict::Pass,
            measured,
            measured_s,
            lb_value,
            lb_full,
            detail,
            None,
        )
    }

    /// One check per deployment the file lists (one per application that lists none).
    ///
    /// Always PASS, also for an unlimited queue: a RISK names a setting that makes the LB
    /// answer an error by itself, and an unbounded queue does so only under an overload the
    /// file cannot show. Bounding the queue does not remove the error either; it trades the
    /// LB's timeout for Ray's own fast 503. The detail says both, with the numbers.
    fn backpressure(&self) -> Vec<Check> {
        let p = self.config.profile;
        let timeout = self.config.timers.timeout;
        let lb_full = self.full(timeout).as_secs_f64();
        let status = p.outcome(Reason::TargetTimeout).status;
        let lb_value = format!("{} {}", p.timeout_setting, self.lb_words(timeout));
        let waits = format!(
            "queued requests wait until the {} {} of {} answers its {status}: a {status} risk \
             under load",
            p.display_name,
            p.timeout_setting,
            self.lb_words(timeout)
        );
        let check = |measured: String, detail: String| {
            self.check(
                BACKPRESSURE,
                Verdict::Pass,
                measured,
                None,
                lb_value.clone(),
                lb_full,
                detail,
                None,
            )
        };
        if self.serve.applications.is_empty() {
            let what = if self.serve.lists_applications {
                "lists no application"
            } else {
                "has no `applications`"
            };
            return vec![check(
                "not in the file".to_string(),
                format!(
                    "{}applications: the file {what}, so each deployment keeps its code's \
                     max_queued_requests (Ray's default -1, unlimited: {waits})",
                    self.setting("")
                ),
            )];
        }
        let mut checks = Vec::new();
        for (i, app) in self.serve.applications.iter().enumerate() {
            let app_name = app
                .name
                .as_deref()
                .map_or(String::new(), |n| format!(" ({n})"));
            if app.deployments.is_empty() {
                checks.push(check(
                    "not in the file".to_string(),
                    format!(
                        "{}{app_name}: no deployment listed, so each keeps its code's \
                         max_queued_requests (Ray's default -1, unlimited: {waits})",
                        self.setting(&format!("applications[{i}].deployments"))
                    ),
                ));
                continue;
            }
            for (j, d) in app.deployments.iter().enumerate() {
                let who = match (&app.name, &d.name) {
                    (Some(a), Some(n)) => format!(" ({a}/{n})"),
                    (None, Some(n)) => format!(" ({n})"),
                    (Some(a), None) => format!(" ({a})"),
                    (None, None) => String::new(),
                };
                let setting = self.setting(&format!(
                    "applications[{i}].deployments[{j}].max_queued_requests"
                ));
                let ongoing = match d.max_ongoing_requests {
                    Some(n) => format!("max_ongoing_requests {n}"),
                    None => format!(
                        "max_ongoing_requests unset: the code's, else Ray's default \
                         {RAY_DEFAULT_MAX_ONGOING_REQUESTS}"
                    ),
                };
                let (measured, detail) = match d.max_queued_requests {
                    Some(n) if n > 0 => (
                        format!("{n} queued"),
                        format!(
                            "{setting}{who} is {n}: beyond {n} queued requests Ray answers its \
                             own 503 (the app's, not the LB's) instead of letting them wait for \
                             the {}'s {status} ({ongoing} per replica)",
                            p.display_name
                        ),
                    ),
                    Some(_) => (
                        "unlimited (-1)".to_string(),
                        format!("{setting}{who} is -1, unlimited: {waits} ({ongoing} per replica)"),
                    ),
                    None => (
                        "unset (code's value, else -1: unlimited)".to_string(),
                        format!(
                            "{setting}{who} is unset: the code's value applies, else Ray's \
                             default -1, unlimited: {waits} ({ongoing} per replica)"
                        ),
                    ),
                };
                checks.push(check(measured, detail));
            }
        }
        checks
    }

    /// Only when asked (`--health-path`) or when the file sets Ray's own health checks.
    fn health(&self, asked: Option<&str>) -> Option<Check> {
        let ray_checks: Vec<String> = self
            .serve
            .applications
            .iter()
            .flat_map(|a| &a.deployments)
            .filter(|d| d.health_check_period_s.is_some() || d.health_check_timeout_s.is_some())
            .map(|d| {
                let name = d.name.as_deref().unwrap_or("a deployment");
                let every = d
                    .health_check_period_s
                    .map_or(String::new(), |v| format!(" every {}", secs(v)));
                let within = d
                    .health_check_timeout_s
                    .map_or(String::new(), |v| format!(" within {}", secs(v)));
                format!("{name}{every}{within}")
            })
            .collect();
        if asked.is_none() && ray_checks.is_empty() {
            return None;
        }
        let p = self.config.profile;
        let health = &self.config.health;
        let path = asked.unwrap_or(&health.path);
        let limit = health.timeout;
        let lb_value = format!("GET {path}: 200 within {}", self.lb_words(limit));
        let lb_value_s = self.full(limit).as_secs_f64();
        let wants = format!(
            "{} health checks want GET {path} to answer 200 within {}",
            p.display_name,
            self.lb_words(limit)
        );
        let ray_note = if ray_checks.is_empty() {
            String::new()
        } else {
            format!(
                "; the file's health_check_period_s/health_check_timeout_s ({}) are Ray's own \
                 replica checks, which restart a replica, not the LB's",
                ray_checks.join(", ")
            )
        };
        let route_path = path.split('?').next().unwrap_or(path);
        let route = self
            .serve
            .applications
            .iter()
            .enumerate()
            .filter_map(|(i, a)| a.route_prefix.as_deref().map(|r| (i, a, r)))
            .filter(|(_, _, r)| covers(r, route_path))
            .max_by_key(|(_, _, r)| r.len());
        let check = |verdict, measured: String, detail: String, fix| {
            self.check(
                super::HEALTH,
                verdict,
                measured,
                None,
                lb_value.clone(),
                lb_value_s,
                detail,
                fix,
            )
        };
        let origin = self.origin;
        Some(if route_path == RAY_HEALTH_PATH {
            check(
                Verdict::Pass,
                "Ray Serve's own health path".to_string(),
                format!(
                    "{origin}: {wants}; Ray Serve's proxy answers {RAY_HEALTH_PATH} itself (200 \
                     when ready, 503 while it drains or before an application runs){ray_note}"
                ),
                None,
            )
        } else if let Some((i, app, prefix)) = route {
            let name = app.name.as_deref().unwrap_or("an application");
            check(
                Verdict::Pass,
                format!("served by {name}"),
                format!(
                    "{origin}: {wants}; {}applications[{i}].route_prefix {prefix} sends it to {name}, \
                     whose code must answer 200 in time, during deploys too; Ray Serve's \
                     {RAY_HEALTH_PATH} needs no code{ray_note}",
                    self.serve.prefix
                ),
                None,
            )
        } else if !self.serve.lists_applications {
            check(
                Verdict::Pass,
                "routes not in the file".to_string(),
                format!(
                    "{origin}: {wants}; the file has no `applications`, so its routes are not \
                     known: Ray Serve answers 404 to a path no route_prefix covers, and \
                     {RAY_HEALTH_PATH} itself{ray_note}"
                ),
                None,
            )
        } else {
            check(
                Verdict::Risk,
                "404 (no route)".to_string(),
                format!(
                    "{origin}: {wants}; no application's {}route_prefix covers {path}, so Ray \
                     Serve's proxy answers 404 → {}{ray_note}",
                    self.serve.prefix,
                    health_consequence(p)
                ),
                Some(format!(
                    "Point the health check at {RAY_HEALTH_PATH} (Ray Serve's proxy answers it), \
                     or serve {path} from an application"
                )),
            )
        })
    }
}

/// Whether Ray Serve routes `path` to an application with `prefix` (whole path segments:
/// `/api` covers `/api` and `/api/x`, not `/apix`).
fn covers(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty()
        || path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_prefixes_cover_whole_segments() {
        assert!(covers("/", "/healthz"));
        assert!(covers("/api", "/api"));
        assert!(covers("/api/", "/api/health"));
        assert!(!covers("/api", "/apix"));
    }

    #[test]
    fn a_null_route_prefix_is_no_route_and_an_absent_one_is_root() {
        let c = ServeConfig::parse(
            "f.yaml",
            "applications:\n- name: a\n  route_prefix: null\n- name: b\n",
        )
        .expect("valid");
        assert_eq!(c.applications[0].route_prefix, None);
        assert_eq!(c.applications[1].route_prefix.as_deref(), Some("/"));
    }

    #[test]
    fn bad_values_are_located() {
        let e = ServeConfig::parse("f.yaml", "http_options:\n  keep_alive_timeout_s: -3\n")
            .expect_err("negative");
        let text = e.to_string();
        assert!(text.starts_with("f.yaml:2:"), "{text}");
        assert!(text.contains("a number of seconds, 0 or more"), "{text}");
        let e = ServeConfig::parse(
            "f.yaml",
            "applications:\n- deployments:\n  - max_queued_requests: 0\n",
        )
        .expect_err("zero");
        assert!(e.to_string().starts_with("f.yaml:3:"), "{e}");
        assert!(e.to_string().contains("-1 (unlimited)"), "{e}");
    }

    #[test]
    fn quoted_numbers_and_names_are_accepted() {
        let c = ServeConfig::parse(
            "f.yaml",
            "http_options:\n  keep_alive_timeout_s: \"620\"\napplications:\n- name: 2024\n",
        )
        .expect("valid");
        assert_eq!(c.keep_alive_timeout_s, Some(620.0));
        assert_eq!(c.applications[0].name.as_deref(), Some("2024"));
    }

    #[test]
    fn empty_and_foreign_files_say_what_was_expected() {
        for text in ["", "# only a comment\n", "kind: Deployment\nspec: {}\n"] {
            let e = ServeConfig::parse("f.yaml", text).expect_err("not a Serve config");
            let said = e.to_string();
            assert!(said.starts_with("f.yaml:1:1: "), "{said}");
            assert!(said.contains("ray_serve_config"), "{said}");
        }
    }
}
