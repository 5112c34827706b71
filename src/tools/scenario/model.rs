//! The checked scenario the runner plays: what `parse` makes of a file. Apart from the raw
//! serde types so that the runner never sees a file's unchecked shape.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::lb::config::{parse_duration, Config, RaceWindow, Settings};
use crate::lb::l4::{L4Flavour, L4Profile};
use crate::lb::profile::{Cloud, Profile};
use crate::lb::targets::TargetState;

/// A parsed, checked scenario.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// File stem.
    pub name: String,
    /// Where it came from (a path, or `scenarios/NAME.toml` for a bundled one).
    pub origin: String,
    /// One line.
    pub description: String,
    /// Why the load balancer behaves so.
    pub why: Option<String>,
    /// What fixes it.
    pub fix: Option<String>,
    /// Which load balancer.
    pub cloud: Cloud,
    /// Multiplies every duration of the file.
    pub time_scale: f64,
    /// Load balancer settings, unscaled (the simulator scales them).
    pub settings: Settings,
    /// A cloud's TCP load balancer in front (`--l4`) and its idle timeout override
    /// (unscaled; the simulator scales it).
    pub l4: Option<(L4Flavour, Option<Duration>)>,
    /// Targets, in file order.
    pub targets: Vec<TargetSpec>,
    /// Steps, in file order.
    pub steps: Vec<Step>,
}

impl Scenario {
    /// `d` of the file, in real time.
    pub fn scaled(&self, d: Duration) -> Duration {
        d.mul_f64(self.time_scale)
    }

    /// The notes of its steps, in order: what is about to happen.
    pub fn notes(&self) -> Vec<&str> {
        self.steps
            .iter()
            .filter_map(|s| s.note.as_deref())
            .collect()
    }

    /// One line on the load balancer and its targets.
    pub fn setup_line(&self) -> String {
        let p = Profile::of(self.cloud);
        let front = match self.l4 {
            Some((flavour, idle)) => {
                let l4 = L4Profile::of(flavour);
                format!(
                    "{} ({} {}) in front of {}",
                    l4.display_name,
                    l4.timeout_setting,
                    crate::human::duration(idle.unwrap_or(l4.idle_timeout)),
                    p.display_name
                )
            }
            None => p.display_name.to_string(),
        };
        let mut parts = vec![front];
        if let Ok(c) = Config::build(&self.settings) {
            let unscale = |d: Duration| crate::human::duration(d.div_f64(self.time_scale));
            parts.push(format!(
                "{} {}",
                p.timeout_setting,
                unscale(c.timers.timeout)
            ));
            parts.push(format!(
                "backend keep-alive {}",
                unscale(c.timers.backend_keep_alive)
            ));
            if c.race_window == RaceWindow::Always {
                parts.push("keep-alive race made certain (race_window = always)".into());
            }
            if !c.health.enabled {
                parts.push("health checks off".into());
            }
        }
        let targets: Vec<String> = self
            .targets
            .iter()
            .map(|t| {
                let what = match &t.kind {
                    TargetKind::Mock {
                        keep_alive,
                        latency,
                        max_queued_requests,
                        request_timeout,
                        ..
                    } => {
                        let mut s = format!(
                            "mock app, keep-alive {}",
                            crate::human::duration(*keep_alive)
                        );
                        if let Some(n) = max_queued_requests {
                            let _ = write!(s, ", max_queued_requests {n}");
                        }
                        if let Some(d) = request_timeout {
                            let _ = write!(s, ", request_timeout {}", crate::human::duration(*d));
                        }
                        if !latency.is_zero() {
                            let _ = write!(s, ", latency {}", crate::human::duration(*latency));
                        }
                        s
                    }
                    TargetKind::External(a) => format!("external app at {a}"),
                    TargetKind::Closed => "a closed port".to_string(),
                };
                let reg = if t.registered { "" } else { ", not registered" };
                format!("{} ({what}{reg})", t.name)
            })
            .collect();
        let targets = if targets.is_empty() {
            "no targets".to_string()
        } else {
            format!("targets: {}", targets.join("; "))
        };
        let scale = if self.time_scale == 1.0 {
            String::new()
        } else {
            format!("; time scale {}", self.time_scale)
        };
        format!("{}; {targets}{scale}", parts.join(", "))
    }
}

/// One target of a scenario.
#[derive(Clone, Debug)]
pub struct TargetSpec {
    /// Name used by steps.
    pub name: String,
    /// What listens behind it.
    pub kind: TargetKind,
    /// In the target group from the start.
    pub registered: bool,
}

/// What a target is.
#[derive(Clone, Debug)]
pub enum TargetKind {
    /// lbsim's mock app; durations unscaled.
    Mock {
        /// Idle keep-alive.
        keep_alive: Duration,
        /// Delay before every answer.
        latency: Duration,
        /// As Ray Serve's `max_ongoing_requests`.
        max_ongoing_requests: usize,
        /// As Ray Serve's `max_queued_requests`: Ray's own 503 beyond it.
        max_queued_requests: Option<usize>,
        /// As Ray Serve's `request_timeout_s`: Ray's own 408 after it (unscaled).
        request_timeout: Option<Duration>,
    },
    /// An app already running at `host:port`.
    External(String),
    /// A loopback port nothing listens on.
    Closed,
}

/// One step, with where it is in the file.
#[derive(Clone, Debug)]
pub struct Step {
    /// 1-based position among the steps.
    pub index: usize,
    /// Line of its `[[steps]]` table.
    pub line: usize,
    /// Text for the timeline.
    pub note: Option<String>,
    /// What it does.
    pub kind: StepKind,
}

/// What a step does.
#[derive(Clone, Debug)]
pub enum StepKind {
    /// Only prints its note.
    Note,
    /// Sends a request.
    Send(Box<SendSpec>),
    /// Pauses (unscaled).
    Wait(Duration),
    /// Waits for every background request.
    Join,
    /// Acts on, waits for or checks a target.
    Target(TargetStep),
}

/// A request step.
#[derive(Clone, Debug)]
pub struct SendSpec {
    /// `GET`, `POST`, ...
    pub method: String,
    /// Path with `{duration}` already replaced by scaled seconds.
    pub path: String,
    /// Request body.
    pub body: Option<String>,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
    /// Named client connection; `None` opens a new one.
    pub conn: Option<String>,
    /// Copies sent at once, each on a new connection.
    pub concurrent: u32,
    /// Do not wait for the answer before the next step.
    pub background: bool,
    /// What the answer must look like.
    pub expect: Expect,
}

/// Expectations on one response.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Status code.
    pub status: Option<u16>,
    /// `x-lbsim-reason`; `"none"` asserts it is absent.
    pub reason: Option<String>,
    /// Exact body.
    pub body: Option<String>,
    /// A substring of the body.
    pub body_contains: Option<String>,
    /// Response headers, case-insensitive names, exact values.
    pub headers: Option<BTreeMap<String, String>>,
    /// Time from the request to the end of the response (unscaled).
    pub elapsed: Option<Dur>,
    /// Upper tolerance on `elapsed` (unscaled).
    pub tolerance: Option<Dur>,
    /// The load balancer closed the connection after the response.
    pub closed: Option<bool>,
    /// The body was cut short.
    pub truncated: Option<bool>,
    /// The connection was reset (TCP RST) before any response byte.
    pub reset: Option<bool>,
    /// No response byte and no close (FIN or RST) for this long (unscaled): the client's
    /// wait for this request ends then.
    pub silent: Option<Dur>,
}

/// A step on the target group.
#[derive(Clone, Debug)]
pub struct TargetStep {
    /// Target name.
    pub target: String,
    /// What to do to it.
    pub action: Option<Action>,
    /// What to wait for.
    pub wait_for: Option<WaitFor>,
    /// Limit on `wait_for` (unscaled).
    pub timeout: Option<Duration>,
    /// Expected state now.
    pub state: Option<TargetState>,
    /// Expected mock counter: requests.
    pub requests: Option<u64>,
    /// Expected mock counter: connections.
    pub connections: Option<u64>,
    /// Expected mock counter: idle closes.
    pub idle_closes: Option<u64>,
}

/// An action on a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Add it to the target group (again).
    Register,
    /// Start draining it.
    Deregister,
    /// Force it unhealthy.
    Unhealthy,
    /// Force it healthy.
    Healthy,
    /// Hand it back to the health checks.
    Auto,
    /// Stop the mock app listening (open connections finish).
    Stop,
}

/// What a `wait_for` step waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitFor {
    /// State `initial`.
    Initial,
    /// State `healthy`.
    Healthy,
    /// State `unhealthy`.
    Unhealthy,
    /// State `draining`.
    Draining,
    /// State `unused`.
    Unused,
    /// State `unavailable`.
    Unavailable,
    /// The mock app closed one more idle keep-alive connection.
    IdleClose,
}

/// A duration written as a string (`"300s"`, `"500ms"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a duration string such as \"300s\" or \"500ms\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Dur, E> {
                parse_duration(s).map(Dur).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}
