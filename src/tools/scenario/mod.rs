//! Scenarios: a load-balancer failure written down as a TOML file and played end to end.
//!
//! A scenario names a cloud and its settings, starts its targets (lbsim's mock app, an
//! external address, or a closed port) and plays a list of steps: requests on new or named
//! client connections, waits, and actions on the target group, with expectations on every
//! response. [`run`] plays one against a [`Simulator`] on loopback and returns a [`Report`]:
//! a timeline of what the client, the load balancer and the targets did, and PASS/FAIL per
//! expectation. `lbsim scenario run|list|show` and `lbsim demo` are built on it; the bundled
//! scenarios ([`BUNDLED`]) are the files of `scenarios/`, embedded in the binary.
//!
//! # File format
//!
//! The complete reference, key by key, is `scenarios/README.md` (tests/scenarios.rs checks
//! that it names every key [`file_keys`] reads from the parser). In short: every table
//! refuses keys it does not know; any error is reported as `file:line:column: message`.
//!
//! ```toml
//! description = "one line, shown by `lbsim scenario list`"
//! why = "why the load balancer answers this way"   # optional; the demo prints it
//! fix = "what to change"                           # optional; the demo prints it
//! cloud = "aws"                                    # or "gcp", "gcp-classic"
//! time_scale = 0.01      # multiplies every duration of the file (default 1)
//!
//! [lb]                   # the Simulator builder's options; all optional
//! lb_defaults = "anyscale"         # or "native"
//! idle_timeout = "300s"            # AWS; GCP takes backend_timeout
//! connect_timeout = "10s"
//! client_keep_alive = "3600s"
//! race_window = "always"           # or a duration; not scaled (it models the network)
//! health_checks = false            # default true, as on the cloud
//! health_path = "/-/healthz"
//! health_interval = "5s"
//! health_timeout = "5s"
//! healthy_threshold = 2
//! unhealthy_threshold = 2
//! warmup = "300s"
//! deregistration_delay = "300s"
//!
//! [[targets]]            # none: an empty target group
//! name = "app"
//! kind = "mock"          # "mock" (default), "external" (needs address), "closed" (a port
//!                        # nothing listens on)
//! keep_alive = "5s"      # mock: idle keep-alive, closed with a bare FIN (uvicorn's 5 s default)
//! latency = "0s"         # mock: delay before every answer
//! address = "127.0.0.1:8000"       # external only
//! registered = true      # false: in the group only after a `register` action
//!
//! [[steps]]              # played in order
//! note = "printed in the timeline"  # any step may carry one; a step may be only a note
//!
//! # a request
//! send = "GET /sleep/{400s}"  # method and path; {duration} becomes scaled seconds ("4")
//! body = "hello"              # optional request body (sent with Content-Length)
//! headers = { x-user = "1" }  # optional request headers
//! conn = "a"                  # a named client connection, reused while open; default: new
//! concurrent = 5              # N copies at once, each on a new connection
//! background = true           # do not wait for it; awaited by `join` or at the end
//! expect = { status = 502, reason = "target_closed_connection" }
//!   # expect keys: status, reason (x-lbsim-reason; "none" = the header is absent), body,
//!   # body_contains, headers = { name = "value" }, elapsed + tolerance (from the request's
//!   # first byte to the end of the response; at least `elapsed` less 25 ms of clock slack,
//!   # at most `elapsed` + `tolerance`, which defaults to 250 ms of real time),
//!   # closed (the LB closed the connection afterwards), truncated (the body was cut)
//!
//! # a pause
//! wait = "30s"
//!
//! # wait for every background request
//! join = true
//!
//! # the target group
//! target = "app"
//! action = "deregister"   # register | deregister | unhealthy | healthy | auto | stop
//! wait_for = "healthy"    # a state (initial, healthy, unhealthy, draining, unused,
//!                         # unavailable) or "idle_close": the Nth idle_close wait on a
//!                         # target returns once the app has closed N idle connections
//! timeout = "60s"         # for wait_for; default 5 s of real time
//! state = "healthy"       # checks, on the target now:
//! requests = 2            # mock: requests received (health checks count too)
//! connections = 1         # mock: connections accepted
//! idle_closes = 1         # mock: idle keep-alive connections closed
//! ```
//!
//! Times in the timeline are real; with a time scale, a second column says what they stand
//! for in the cloud.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use toml::Spanned;

use crate::lb::config::{parse_duration, Config, RaceWindow, Settings};
use crate::lb::profile::{Cloud, LbDefaults, Profile};
use crate::lb::stats::Counts;
use crate::lb::targets::{HealthOverride, TargetState};
use crate::mock::{MockOptions, MockStats, MockUpstream, DEFAULT_KEEP_ALIVE};
use crate::sim::Control;
use crate::sim::{SimHandle, Simulator};

/// Longest wait for one response (real time): a hung scenario fails instead of hanging.
pub const READ_LIMIT: Duration = Duration::from_secs(20);

/// Default upper tolerance of an `elapsed` expectation (real time).
pub const DEFAULT_TOLERANCE: Duration = Duration::from_millis(250);

/// An `elapsed` expectation accepts this much less than asked (timer and clock granularity).
pub const CLOCK_SLACK: Duration = Duration::from_millis(25);

/// Default limit of a `wait_for` step (real time).
pub const DEFAULT_WAIT_LIMIT: Duration = Duration::from_secs(5);

/// How often the timeline samples the targets' and the load balancer's counters.
const POLL: Duration = Duration::from_millis(2);

/// `closed = true` waits this long (real time) for the load balancer to close.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// `closed = false` watches the connection this long (real time) for a close.
const OPEN_PROBE: Duration = Duration::from_millis(50);

/// In-flight requests get this long when a scenario's simulator shuts down.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

/// A response head larger than this is refused.
const MAX_HEAD: usize = 64 * 1024;

// ---------------------------------------------------------------------------------------
// Bundled scenarios
// ---------------------------------------------------------------------------------------

/// A scenario file shipped inside the binary.
#[derive(Clone, Copy, Debug)]
pub struct Bundled {
    /// File stem, e.g. `aws-502-keepalive`.
    pub name: &'static str,
    /// The file's text.
    pub source: &'static str,
}

macro_rules! bundled {
    ($($name:literal),* $(,)?) => {
        &[$(Bundled {
            name: $name,
            source: include_str!(concat!("../../../scenarios/", $name, ".toml")),
        }),*]
    };
}

/// Every file of `scenarios/`, in the order `lbsim scenario list` shows them.
pub static BUNDLED: &[Bundled] = bundled![
    "aws-502-keepalive",
    "aws-502-keepalive-fixed",
    "gcp-502-keepalive",
    "gcp-503-keepalive",
    "gcp-get-retry",
    "gcp-502-keepalive-fixed",
    "aws-502-connection-refused",
    "aws-500-passthrough",
    "aws-503-no-targets",
    "aws-unhealthy-fails-open",
    "gcp-503-unhealthy",
    "gcp-classic-502-unhealthy",
    "gcp-503-startup",
    "aws-502-app-stopped",
    "gcp-503-app-stopped",
    "aws-504-slow-app",
    "gcp-504-slow-app",
    "aws-stream-survives",
    "gcp-stream-cut",
    "aws-502-deregistration-cut",
    "aws-deregistration-drains",
    "ray-503-backpressure",
    "ray-408-request-timeout",
];

/// The scenarios `lbsim demo` plays, in order.
pub const DEMO: &[&str] = &[
    "aws-502-keepalive",
    "aws-502-keepalive-fixed",
    "gcp-502-keepalive",
    "aws-503-no-targets",
    "gcp-503-startup",
    "aws-unhealthy-fails-open",
    "aws-504-slow-app",
    "aws-stream-survives",
    "gcp-stream-cut",
    "aws-502-deregistration-cut",
];

/// The bundled scenario called `name` (a trailing `.toml` is ignored).
pub fn bundled(name: &str) -> Option<&'static Bundled> {
    let name = name.strip_suffix(".toml").unwrap_or(name);
    BUNDLED.iter().find(|b| b.name == name)
}

impl Bundled {
    /// Parses it; `origin` in messages is `scenarios/NAME.toml`.
    pub fn parse(&self) -> Result<Scenario, LoadError> {
        parse(
            self.source,
            &format!("scenarios/{}.toml", self.name),
            self.name,
        )
    }
}

// ---------------------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------------------

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
    /// Targets, in file order.
    pub targets: Vec<TargetSpec>,
    /// Steps, in file order.
    pub steps: Vec<Step>,
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

/// `"always"` or a duration.
#[derive(Clone, Copy, Debug)]
struct RaceWin(RaceWindow);

impl<'de> Deserialize<'de> for RaceWin {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RaceWin;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("\"always\" or a duration string such as \"5ms\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RaceWin, E> {
                s.parse::<RaceWindow>().map(RaceWin).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum KindName {
    #[default]
    Mock,
    External,
    Closed,
}

// ---------------------------------------------------------------------------------------
// The file as written
// ---------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    description: Spanned<String>,
    why: Option<String>,
    fix: Option<String>,
    cloud: Cloud,
    time_scale: Option<Spanned<f64>>,
    lb: Option<Spanned<RawLb>>,
    #[serde(default)]
    targets: Vec<Spanned<RawTarget>>,
    steps: Vec<Spanned<RawStep>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLb {
    lb_defaults: Option<LbDefaults>,
    idle_timeout: Option<Dur>,
    backend_timeout: Option<Dur>,
    connect_timeout: Option<Dur>,
    client_keep_alive: Option<Dur>,
    race_window: Option<RaceWin>,
    health_checks: Option<bool>,
    health_path: Option<String>,
    health_interval: Option<Dur>,
    health_timeout: Option<Dur>,
    healthy_threshold: Option<u32>,
    unhealthy_threshold: Option<u32>,
    warmup: Option<Dur>,
    deregistration_delay: Option<Dur>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    name: String,
    #[serde(default)]
    kind: KindName,
    keep_alive: Option<Dur>,
    latency: Option<Dur>,
    max_ongoing_requests: Option<usize>,
    max_queued_requests: Option<usize>,
    request_timeout: Option<Dur>,
    address: Option<String>,
    registered: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    note: Option<String>,
    send: Option<Spanned<String>>,
    body: Option<String>,
    headers: Option<BTreeMap<String, String>>,
    conn: Option<String>,
    concurrent: Option<u32>,
    background: Option<bool>,
    expect: Option<Spanned<Expect>>,
    wait: Option<Dur>,
    join: Option<bool>,
    target: Option<Spanned<String>>,
    action: Option<Action>,
    wait_for: Option<WaitFor>,
    timeout: Option<Dur>,
    state: Option<TargetState>,
    requests: Option<u64>,
    connections: Option<u64>,
    idle_closes: Option<u64>,
}

/// The keys a scenario file accepts, table by table (`top level`, `[lb]`, `[[targets]]`,
/// `[[steps]]`, `expect`), read from the parser's own serde types rather than listed by
/// hand, so that a key added to a `Raw*` struct shows up here and the test that holds
/// `scenarios/README.md` to this list fails until the key is documented.
#[doc(hidden)]
pub fn file_keys() -> Vec<(&'static str, &'static [&'static str])> {
    vec![
        ("top level", serde_names::<RawScenario>()),
        ("[lb]", serde_names::<RawLb>()),
        ("[[targets]]", serde_names::<RawTarget>()),
        ("[[steps]]", serde_names::<RawStep>()),
        ("expect", serde_names::<Expect>()),
    ]
}

/// The words each key with a fixed set of values accepts (`cloud = "aws"`, ...), read from
/// the serde enums the parser uses; see [`file_keys`].
#[doc(hidden)]
pub fn file_values() -> Vec<(&'static str, &'static [&'static str])> {
    vec![
        ("cloud", serde_names::<Cloud>()),
        ("lb_defaults", serde_names::<LbDefaults>()),
        ("kind", serde_names::<KindName>()),
        ("action", serde_names::<Action>()),
        ("wait_for", serde_names::<WaitFor>()),
        ("state", serde_names::<TargetState>()),
    ]
}

/// The field names of a derived-`Deserialize` struct, or the variant names of an enum, as
/// serde spells them in a file (after `rename`): the derive hands them to the deserializer,
/// and this one only records them and stops.
fn serde_names<T: de::DeserializeOwned>() -> &'static [&'static str] {
    struct Probe<'a>(&'a mut &'static [&'static str]);
    impl<'de> Deserializer<'de> for Probe<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("neither a struct nor an enum"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("names recorded"))
        }
        fn deserialize_enum<V: Visitor<'de>>(
            self,
            _: &'static str,
            variants: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = variants;
            Err(de::Error::custom("names recorded"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map
            identifier ignored_any
        }
    }
    let mut names: &'static [&'static str] = &[];
    // The probe always ends in an error once it has the names; the error says nothing.
    let _ = T::deserialize(Probe(&mut names));
    names
}

impl RawStep {
    /// Names of the keys present, in declaration order.
    fn present(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        let mut add = |on: bool, k: &'static str| {
            if on {
                keys.push(k)
            }
        };
        add(self.send.is_some(), "send");
        add(self.body.is_some(), "body");
        add(self.headers.is_some(), "headers");
        add(self.conn.is_some(), "conn");
        add(self.concurrent.is_some(), "concurrent");
        add(self.background.is_some(), "background");
        add(self.expect.is_some(), "expect");
        add(self.wait.is_some(), "wait");
        add(self.join.is_some(), "join");
        add(self.target.is_some(), "target");
        add(self.action.is_some(), "action");
        add(self.wait_for.is_some(), "wait_for");
        add(self.timeout.is_some(), "timeout");
        add(self.state.is_some(), "state");
        add(self.requests.is_some(), "requests");
        add(self.connections.is_some(), "connections");
        add(self.idle_closes.is_some(), "idle_closes");
        keys
    }
}

// ---------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------

/// Why a scenario file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read, or the name is unknown.
    #[error("{origin}: {message}")]
    Io {
        /// The path or name given.
        origin: String,
        /// What went wrong.
        message: String,
    },
    /// The text is not a valid scenario.
    #[error("{origin}:{line}:{column}: {message}")]
    Parse {
        /// The path.
        origin: String,
        /// 1-based line.
        line: usize,
        /// 1-based column (characters).
        column: usize,
        /// What was expected.
        message: String,
    },
}

/// 1-based line and column of byte `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut at = offset.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

struct Ctx<'a> {
    text: &'a str,
    origin: &'a str,
}

impl Ctx<'_> {
    fn err(&self, span: Range<usize>, message: impl Into<String>) -> LoadError {
        let (line, column) = line_col(self.text, span.start);
        LoadError::Parse {
            origin: self.origin.to_string(),
            line,
            column,
            message: message.into(),
        }
    }
    fn line(&self, span: &Range<usize>) -> usize {
        line_col(self.text, span.start).0
    }
}

/// Reads and parses a scenario file; the name is the file stem.
pub fn load(path: &Path) -> Result<Scenario, LoadError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| LoadError::Io {
        origin: origin.clone(),
        message: format!("cannot read: {e}"),
    })?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| origin.clone());
    parse(&text, &origin, &name)
}

/// Parses scenario `text`; `origin` prefixes error messages.
pub fn parse(text: &str, origin: &str, name: &str) -> Result<Scenario, LoadError> {
    let cx = Ctx { text, origin };
    let raw: RawScenario = toml::from_str(text)
        .map_err(|e| cx.err(e.span().unwrap_or(0..0), e.message().trim_end()))?;

    let description = raw.description.get_ref().trim().to_string();
    if description.is_empty() || description.contains('\n') {
        return Err(cx.err(
            raw.description.span(),
            "description must be one non-empty line",
        ));
    }
    let time_scale = match &raw.time_scale {
        None => 1.0,
        Some(s) => {
            let f = *s.get_ref();
            if !(f.is_finite() && f > 0.0) {
                return Err(cx.err(s.span(), "time_scale must be a positive number, e.g. 0.01"));
            }
            f
        }
    };
    let cloud = raw.cloud;
    let mut settings = Settings::new(cloud);
    settings.time_scale = time_scale;
    settings.shutdown_grace = SHUTDOWN_GRACE;
    let lb_span = raw.lb.as_ref().map_or(0..0, |l| l.span());
    if let Some(lb) = raw.lb {
        apply_lb(&mut settings, lb.into_inner());
    }
    if let Err(e) = Config::build(&settings) {
        return Err(cx.err(lb_span, format!("[lb]: {e}")));
    }

    let mut targets: Vec<TargetSpec> = Vec::new();
    for t in raw.targets {
        let span = t.span();
        let t = t.into_inner();
        if t.name.trim().is_empty() {
            return Err(cx.err(span, "a target needs a non-empty name"));
        }
        if targets.iter().any(|o| o.name == t.name) {
            return Err(cx.err(span, format!("two targets are named `{}`", t.name)));
        }
        let kind = match t.kind {
            KindName::Mock => {
                if t.address.is_some() {
                    return Err(cx.err(
                        span,
                        "`address` is for kind = \"external\"; a mock target gets a free port",
                    ));
                }
                TargetKind::Mock {
                    keep_alive: t.keep_alive.map_or(DEFAULT_KEEP_ALIVE, |d| d.0),
                    latency: t.latency.map_or(Duration::ZERO, |d| d.0),
                    max_ongoing_requests: t
                        .max_ongoing_requests
                        .unwrap_or(crate::mock::RAY_DEFAULT_MAX_ONGOING_REQUESTS),
                    max_queued_requests: t.max_queued_requests,
                    request_timeout: t.request_timeout.map(|d| d.0),
                }
            }
            other => {
                if t.keep_alive.is_some()
                    || t.latency.is_some()
                    || t.max_ongoing_requests.is_some()
                    || t.max_queued_requests.is_some()
                    || t.request_timeout.is_some()
                {
                    return Err(cx.err(
                        span,
                        "`keep_alive`, `latency`, `max_ongoing_requests`, `max_queued_requests` \
                         and `request_timeout` are for kind = \"mock\" targets",
                    ));
                }
                if other == KindName::Closed {
                    if t.address.is_some() {
                        return Err(cx.err(
                            span,
                            "a closed target gets a free port; `address` is for kind = \"external\"",
                        ));
                    }
                    TargetKind::Closed
                } else {
                    match t.address {
                        Some(a) if a.contains(':') => TargetKind::External(a),
                        _ => {
                            return Err(
                                cx.err(span, "an external target needs `address = \"HOST:PORT\"`")
                            )
                        }
                    }
                }
            }
        };
        targets.push(TargetSpec {
            name: t.name,
            kind,
            registered: t.registered.unwrap_or(true),
        });
    }

    let mut steps = Vec::new();
    for (i, s) in raw.steps.into_iter().enumerate() {
        let span = s.span();
        let step = check_step(&cx, s.into_inner(), span.clone(), time_scale, &targets)?;
        steps.push(Step {
            index: i + 1,
            line: cx.line(&span),
            note: step.0,
            kind: step.1,
        });
    }
    if steps.is_empty() {
        return Err(cx.err(0..0, "a scenario needs at least one [[steps]] table"));
    }
    Ok(Scenario {
        name: name.to_string(),
        origin: origin.to_string(),
        description,
        why: raw.why.map(|s| s.trim().to_string()),
        fix: raw.fix.map(|s| s.trim().to_string()),
        cloud,
        time_scale,
        settings,
        targets,
        steps,
    })
}

fn apply_lb(s: &mut Settings, lb: RawLb) {
    if let Some(d) = lb.lb_defaults {
        s.defaults = d;
    }
    s.idle_timeout = lb.idle_timeout.map(|d| d.0);
    s.backend_timeout = lb.backend_timeout.map(|d| d.0);
    s.connect_timeout = lb.connect_timeout.map(|d| d.0);
    s.client_keep_alive = lb.client_keep_alive.map(|d| d.0);
    if let Some(w) = lb.race_window {
        s.race_window = w.0;
    }
    if let Some(on) = lb.health_checks {
        s.health_checks = on;
    }
    s.health_path = lb.health_path;
    s.health_interval = lb.health_interval.map(|d| d.0);
    s.health_timeout = lb.health_timeout.map(|d| d.0);
    s.healthy_threshold = lb.healthy_threshold;
    s.unhealthy_threshold = lb.unhealthy_threshold;
    s.warmup = lb.warmup.map(|d| d.0);
    s.deregistration_delay = lb.deregistration_delay.map(|d| d.0);
}

const SEND_KEYS: &[&str] = &[
    "send",
    "body",
    "headers",
    "conn",
    "concurrent",
    "background",
    "expect",
];
const TARGET_KEYS: &[&str] = &[
    "target",
    "action",
    "wait_for",
    "timeout",
    "state",
    "requests",
    "connections",
    "idle_closes",
];

fn check_step(
    cx: &Ctx<'_>,
    raw: RawStep,
    span: Range<usize>,
    scale: f64,
    targets: &[TargetSpec],
) -> Result<(Option<String>, StepKind), LoadError> {
    let present = raw.present();
    let (kind_key, allowed): (&str, &[&str]) = if raw.send.is_some() {
        ("send", SEND_KEYS)
    } else if raw.wait.is_some() {
        ("wait", &["wait"])
    } else if raw.join.is_some() {
        ("join", &["join"])
    } else if raw.target.is_some() {
        ("target", TARGET_KEYS)
    } else if let Some(first) = present.first() {
        let needs = if SEND_KEYS.contains(first) {
            "`send`"
        } else {
            "`target`"
        };
        return Err(cx.err(span, format!("`{first}` needs {needs} in the same step")));
    } else if raw.note.is_some() {
        return Ok((raw.note, StepKind::Note));
    } else {
        return Err(cx.err(
            span,
            "empty step: expected one of `send`, `wait`, `join`, `target` (or a `note`)",
        ));
    };
    if let Some(stray) = present.iter().find(|k| !allowed.contains(k)) {
        return Err(cx.err(
            span,
            format!("a `{kind_key}` step cannot also have `{stray}`: one step does one thing"),
        ));
    }
    let note = raw.note;
    match kind_key {
        "send" => {
            let send = raw
                .send
                .ok_or_else(|| cx.err(span.clone(), "missing `send`"))?;
            let (method, path) = parse_send(send.get_ref(), scale)
                .map_err(|m| cx.err(send.span(), format!("send: {m}")))?;
            let concurrent = raw.concurrent.unwrap_or(1);
            if concurrent == 0 {
                return Err(cx.err(span, "`concurrent` must be at least 1"));
            }
            if concurrent > 1 && raw.conn.is_some() {
                return Err(cx.err(
                    span,
                    "`concurrent` requests each open a new connection; drop `conn`",
                ));
            }
            let expect = match raw.expect {
                None => Expect::default(),
                Some(e) => {
                    let espan = e.span();
                    let e = e.into_inner();
                    if e.tolerance.is_some() && e.elapsed.is_none() {
                        return Err(cx.err(espan, "`tolerance` needs `elapsed`"));
                    }
                    e
                }
            };
            let spec = SendSpec {
                method,
                path,
                body: raw.body,
                headers: raw.headers.unwrap_or_default().into_iter().collect(),
                conn: raw.conn,
                concurrent,
                background: raw.background.unwrap_or(false),
                expect,
            };
            Ok((note, StepKind::Send(Box::new(spec))))
        }
        "wait" => Ok((
            note,
            StepKind::Wait(raw.wait.map_or(Duration::ZERO, |d| d.0)),
        )),
        "join" => {
            if raw.join != Some(true) {
                return Err(cx.err(span, "`join` can only be true"));
            }
            Ok((note, StepKind::Join))
        }
        _ => {
            let target = raw
                .target
                .ok_or_else(|| cx.err(span.clone(), "missing `target`"))?;
            let tspan = target.span();
            let name = target.into_inner();
            let Some(spec) = targets.iter().find(|t| t.name == name) else {
                let known: Vec<String> = targets.iter().map(|t| format!("`{}`", t.name)).collect();
                return Err(cx.err(
                    tspan,
                    format!(
                        "no target named `{name}` (targets: {})",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            };
            let is_mock = matches!(spec.kind, TargetKind::Mock { .. });
            if raw.action.is_some() && raw.wait_for.is_some() {
                return Err(cx.err(
                    span,
                    "`action` and `wait_for` go in separate steps: one step does one thing",
                ));
            }
            if raw.timeout.is_some() && raw.wait_for.is_none() {
                return Err(cx.err(span, "`timeout` needs `wait_for`"));
            }
            let counters = raw.requests.is_some()
                || raw.connections.is_some()
                || raw.idle_closes.is_some()
                || raw.action == Some(Action::Stop)
                || raw.wait_for == Some(WaitFor::IdleClose);
            if counters && !is_mock {
                return Err(cx.err(
                    span,
                    format!(
                        "`{name}` is not a mock target: only lbsim's mock app can be stopped \
                         or have its requests, connections and idle closes counted"
                    ),
                ));
            }
            if raw.action.is_none() && raw.wait_for.is_none() && raw.state.is_none() && !counters {
                return Err(cx.err(
                    span,
                    "a target step needs `action`, `wait_for`, or a check \
                     (`state`, `requests`, `connections`, `idle_closes`)",
                ));
            }
            Ok((
                note,
                StepKind::Target(TargetStep {
                    target: name,
                    action: raw.action,
                    wait_for: raw.wait_for,
                    timeout: raw.timeout.map(|d| d.0),
                    state: raw.state,
                    requests: raw.requests,
                    connections: raw.connections,
                    idle_closes: raw.idle_closes,
                }),
            ))
        }
    }
}

/// `"GET /sleep/{400s}"` → `("GET", "/sleep/4")` at scale 0.01.
fn parse_send(text: &str, scale: f64) -> Result<(String, String), String> {
    const USAGE: &str = "expected \"METHOD /path\", e.g. \"GET /sleep/{400s}\"";
    let mut words = text.split_whitespace();
    let (Some(method), Some(target), None) = (words.next(), words.next(), words.next()) else {
        return Err(USAGE.to_string());
    };
    if !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(format!("method `{method}`: {USAGE}"));
    }
    if !target.starts_with('/') {
        return Err(format!("path `{target}` must start with /"));
    }
    let mut path = String::new();
    let mut rest = target;
    while let Some(open) = rest.find('{') {
        path.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("unclosed `{{` in path `{target}`"))?;
        let inner = &after[..close];
        let d = parse_duration(inner).map_err(|e| {
            format!("`{{{inner}}}` in the path: {e}; {{duration}} becomes scaled seconds")
        })?;
        path.push_str(&seconds_text(d.mul_f64(scale)));
        rest = &after[close + 1..];
    }
    path.push_str(rest);
    if !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!("path `{target}` must be visible ASCII"));
    }
    Ok((method.to_string(), path))
}

/// Seconds as the mock app's paths take them: `0.2`, `4`, `1.25`.
fn seconds_text(d: Duration) -> String {
    let text = format!("{:.3}", d.as_secs_f64());
    text.trim_end_matches('0').trim_end_matches('.').to_string()
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
        let mut parts = vec![p.display_name.to_string()];
        if let Ok(c) = Config::build(&self.settings) {
            let unscale = |d: Duration| show(d.div_f64(self.time_scale));
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
                        let mut s = format!("mock app, keep-alive {}", show(*keep_alive));
                        if let Some(n) = max_queued_requests {
                            let _ = write!(s, ", max_queued_requests {n}");
                        }
                        if let Some(d) = request_timeout {
                            let _ = write!(s, ", request_timeout {}", show(*d));
                        }
                        if !latency.is_zero() {
                            let _ = write!(s, ", latency {}", show(*latency));
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

// ---------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------

/// Who did something in the timeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Actor {
    /// A client connection.
    Client,
    /// The load balancer.
    Lb,
    /// A target.
    Target,
    /// The scenario runner (waits, actions on the target group).
    Runner,
    /// A step's note.
    Note,
}

/// One line of the timeline.
#[derive(Clone, Debug)]
pub struct Event {
    /// Real time since the scenario started.
    pub at: Duration,
    /// Kind of actor.
    pub actor: Actor,
    /// `client a`, `lb`, `app`, ...
    pub who: String,
    /// What happened.
    pub what: String,
}

/// One expectation's verdict.
#[derive(Clone, Debug)]
pub struct Check {
    /// Step number (1-based).
    pub step: usize,
    /// Line of the step in the file.
    pub line: usize,
    /// Who was checked (`client a`, `app`).
    pub who: String,
    /// What was expected.
    pub expected: String,
    /// What was seen.
    pub detail: String,
    /// Verdict.
    pub passed: bool,
}

/// The result of one run.
#[derive(Clone, Debug)]
pub struct Report {
    /// Scenario name.
    pub name: String,
    /// Where it came from.
    pub origin: String,
    /// Scenario description.
    pub description: String,
    /// The time scale, to show cloud times beside real ones.
    pub time_scale: f64,
    /// What happened, in time order.
    pub events: Vec<Event>,
    /// Verdicts, in step order.
    pub checks: Vec<Check>,
    /// Set when the scenario could not be played at all.
    pub error: Option<String>,
    /// Real time the run took.
    pub duration: Duration,
}

impl Report {
    /// True when it ran and every expectation held.
    pub fn passed(&self) -> bool {
        self.error.is_none() && self.checks.iter().all(|c| c.passed)
    }

    /// The checks that failed.
    pub fn failures(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| !c.passed).collect()
    }
}

#[derive(Clone)]
struct Log {
    t0: Instant,
    events: Arc<Mutex<Vec<Event>>>,
}

impl Log {
    fn new() -> Log {
        Log {
            t0: Instant::now(),
            events: Arc::new(Mutex::new(Vec::new())),
        }
    }
    fn push(&self, actor: Actor, who: impl Into<String>, what: impl Into<String>) {
        let event = Event {
            at: self.t0.elapsed(),
            actor,
            who: who.into(),
            what: what.into(),
        };
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event);
    }
    fn take(&self) -> Vec<Event> {
        let mut events =
            std::mem::take(&mut *self.events.lock().unwrap_or_else(|e| e.into_inner()));
        events.sort_by_key(|e| e.at);
        events
    }
}

/// `250 ms`, `1.5 s`, `300 s`.
pub fn show(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        let ms = d.as_secs_f64() * 1000.0;
        if ms >= 10.0 || ms == 0.0 {
            format!("{ms:.0} ms")
        } else {
            format!("{ms:.1} ms")
        }
    } else {
        let s = format!("{:.3}", d.as_secs_f64());
        format!("{} s", s.trim_end_matches('0').trim_end_matches('.'))
    }
}

// ---------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------

/// A response as it came off the socket.
#[derive(Clone, Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub phrase: String,
    /// Header lines as sent.
    pub headers: Vec<(String, String)>,
    /// Body, de-chunked.
    pub body: Vec<u8>,
    /// The body ended cleanly.
    pub complete: bool,
}

impl Response {
    /// First header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    eof: bool,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Conn {
    async fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
            eof: false,
        })
    }

    /// True when the peer closed it while it sat idle (as urllib3 checks before reuse).
    fn dropped(&mut self) -> bool {
        if self.eof {
            return true;
        }
        let mut probe = [0u8; 1024];
        match self.stream.try_read(&mut probe) {
            Ok(0) => self.eof = true,
            Ok(n) => self.buf.extend_from_slice(&probe[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => self.eof = true,
        }
        self.eof
    }

    /// Reads more; `Ok(false)` at EOF or on a socket error, `Err` when `until` passes.
    async fn fill(&mut self, until: Instant) -> Result<bool, ()> {
        let mut chunk = [0u8; 16 * 1024];
        match tokio::time::timeout_at(until, self.stream.read(&mut chunk)).await {
            Err(_) => Err(()),
            Ok(Ok(0)) | Ok(Err(_)) => {
                self.eof = true;
                Ok(false)
            }
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
        }
    }

    async fn read_response(&mut self, method: &str) -> Result<Response, String> {
        let until = Instant::now() + READ_LIMIT;
        let head_len = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            if self.buf.len() > MAX_HEAD {
                return Err("response head larger than 64 KiB".to_string());
            }
            match self.fill(until).await {
                Ok(true) => {}
                Ok(false) if self.buf.is_empty() => {
                    return Err("connection closed before any response byte".to_string())
                }
                Ok(false) => return Err("connection closed inside the response head".to_string()),
                Err(()) => return Err(format!("no response within {}", show(READ_LIMIT))),
            }
        };
        let mut headers = [httparse::EMPTY_HEADER; 100];
        let mut parsed = httparse::Response::new(&mut headers);
        match parsed.parse(&self.buf[..head_len]) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => return Err("incomplete response head".to_string()),
            Err(e) => return Err(format!("invalid response head: {e}")),
        }
        let mut resp = Response {
            status: parsed.code.unwrap_or(0),
            phrase: parsed.reason.unwrap_or("").to_string(),
            headers: parsed
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_string(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect(),
            body: Vec::new(),
            complete: false,
        };
        self.buf.drain(..head_len);
        let no_body =
            method == "HEAD" || resp.status / 100 == 1 || resp.status == 204 || resp.status == 304;
        let chunked = resp
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let length = resp
            .header("content-length")
            .and_then(|v| v.trim().parse::<usize>().ok());
        if no_body {
            resp.complete = true;
        } else if chunked {
            resp.complete = self.read_chunked(&mut resp.body, until).await;
        } else if let Some(len) = length {
            while self.buf.len() < len {
                if self.fill(until).await != Ok(true) {
                    resp.body = std::mem::take(&mut self.buf);
                    return Ok(resp);
                }
            }
            resp.body = self.buf.drain(..len).collect();
            resp.complete = true;
        } else {
            // Framed by the close.
            loop {
                match self.fill(until).await {
                    Ok(true) => {}
                    Ok(false) => {
                        resp.complete = true;
                        break;
                    }
                    Err(()) => break,
                }
            }
            resp.body = std::mem::take(&mut self.buf);
        }
        Ok(resp)
    }

    /// De-chunks into `body`; true when the last chunk arrived.
    async fn read_chunked(&mut self, body: &mut Vec<u8>, until: Instant) -> bool {
        loop {
            let line_end = loop {
                if let Some(i) = find(&self.buf, b"\r\n") {
                    break i;
                }
                if self.fill(until).await != Ok(true) {
                    return false;
                }
            };
            let size_text = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
            let size_text = size_text.split(';').next().unwrap_or("").trim();
            let Ok(size) = usize::from_str_radix(size_text, 16) else {
                return false;
            };
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                        self.buf.drain(..i + 4);
                        return true;
                    }
                    if self.fill(until).await != Ok(true) {
                        return false;
                    }
                }
            }
            while self.buf.len() < line_end + 2 + size + 2 {
                if self.fill(until).await != Ok(true) {
                    let have = self.buf.len().saturating_sub(line_end + 2).min(size);
                    body.extend_from_slice(&self.buf[line_end + 2..line_end + 2 + have]);
                    self.buf.clear();
                    return false;
                }
            }
            body.extend_from_slice(&self.buf[line_end + 2..line_end + 2 + size]);
            self.buf.drain(..line_end + 2 + size + 2);
        }
    }

    /// True when the peer closes within `limit` (bytes that come meanwhile are kept).
    async fn closed_within(&mut self, limit: Duration) -> bool {
        if self.eof {
            return true;
        }
        let until = Instant::now() + limit;
        loop {
            match self.fill(until).await {
                Ok(true) => {}
                Ok(false) => return true,
                Err(()) => return false,
            }
        }
    }
}

fn request_bytes(spec: &SendSpec) -> Vec<u8> {
    let mut out = format!(
        "{} {} HTTP/1.1\r\nHost: lbsim.scenario\r\nUser-Agent: lbsim-scenario\r\n",
        spec.method, spec.path
    );
    for (name, value) in &spec.headers {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    if let Some(body) = &spec.body {
        let _ = write!(out, "Content-Length: {}\r\n", body.len());
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if let Some(body) = &spec.body {
        bytes.extend_from_slice(body.as_bytes());
    }
    bytes
}

/// What one request met.
struct Exchange {
    result: Result<Response, String>,
    elapsed: Duration,
    closed: Option<bool>,
}

type Slot = Arc<tokio::sync::Mutex<Option<Conn>>>;

/// One request on a named connection (`slot`) or a new one.
async fn exchange(
    lb: SocketAddr,
    log: &Log,
    sampler: &Sampler,
    who: &str,
    spec: &SendSpec,
    slot: Option<Slot>,
    sent: Option<&mpsc::UnboundedSender<()>>,
) -> Exchange {
    // However it ends, tell a waiting runner that this request is no longer pending.
    struct Sent<'a>(Option<&'a mpsc::UnboundedSender<()>>);
    impl Drop for Sent<'_> {
        fn drop(&mut self) {
            if let Some(tx) = self.0.take() {
                let _ = tx.send(());
            }
        }
    }
    let mut sent = Sent(sent);
    let mut guard = match &slot {
        Some(s) => Some(s.clone().lock_owned().await),
        None => None,
    };
    let previous = guard.as_mut().and_then(|g| g.take());
    let (conn, how) = match previous {
        Some(mut c) => {
            if c.dropped() {
                (
                    None,
                    "a new connection: the load balancer had closed the previous one",
                )
            } else {
                (Some(c), "the same connection")
            }
        }
        None => (None, "a new connection"),
    };
    let mut conn = match conn {
        Some(c) => c,
        None => match Conn::open(lb).await {
            Ok(c) => c,
            Err(e) => {
                let why = format!("cannot connect to the load balancer: {e}");
                log.push(Actor::Client, who, format!("✗ {why}"));
                return Exchange {
                    result: Err(why),
                    elapsed: Duration::ZERO,
                    closed: None,
                };
            }
        },
    };
    let body_note = spec
        .body
        .as_ref()
        .map_or(String::new(), |b| format!(" with a {}-byte body", b.len()));
    sampler.sample();
    log.push(
        Actor::Client,
        who,
        format!("→ {} {}{body_note} on {how}", spec.method, spec.path),
    );
    let start = Instant::now();
    let written = conn.stream.write_all(&request_bytes(spec)).await;
    drop(std::mem::replace(&mut sent, Sent(None)));
    let result = match written {
        Err(e) => {
            conn.eof = true;
            Err(format!("could not send the request: {e}"))
        }
        Ok(()) => conn.read_response(&spec.method).await,
    };
    let elapsed = start.elapsed();
    sampler.sample();
    match &result {
        Ok(r) => log.push(Actor::Client, who, describe_response(r, elapsed)),
        Err(e) => log.push(
            Actor::Client,
            who,
            format!("✗ no response: {e} (after {})", show(elapsed)),
        ),
    }
    let closed = match spec.expect.closed {
        Some(true) => Some(conn.closed_within(CLOSE_WAIT).await),
        Some(false) => Some(conn.closed_within(OPEN_PROBE).await),
        None => None,
    };
    if conn.eof {
        log.push(Actor::Client, who, "connection closed by the load balancer");
    }
    if let Some(g) = guard.as_mut() {
        if !conn.eof {
            **g = Some(conn);
        }
    }
    Exchange {
        result,
        elapsed,
        closed,
    }
}

fn describe_response(r: &Response, elapsed: Duration) -> String {
    let mut s = format!("← {} {}", r.status, r.phrase);
    match r.header(crate::lb::respond::REASON_HEADER) {
        Some(reason) => {
            let _ = write!(s, " · x-lbsim-reason: {reason}");
        }
        None => s.push_str(" · from the app"),
    }
    let text = String::from_utf8_lossy(&r.body);
    let printable = !r.body.is_empty()
        && r.body.len() <= 48
        && !text.contains('<')
        && text.chars().all(|c| !c.is_control() || c == '\n');
    if r.complete {
        if printable {
            let _ = write!(s, " · body {:?}", text.trim_end());
        } else {
            let _ = write!(s, " · {}-byte body", r.body.len());
        }
    } else {
        let _ = write!(s, " · body CUT after {} bytes", r.body.len());
    }
    let _ = write!(s, " · {}", show(elapsed));
    s
}

/// Expectation label and verdict (Ok = passed) with what was seen.
type Verdict = (String, Result<String, String>);

fn evaluate(e: &Expect, x: &Exchange, scale: f64) -> Vec<Verdict> {
    let mut out: Vec<Verdict> = Vec::new();
    let resp = x.result.as_ref();
    let none = |why: &String| format!("no response ({why})");
    let mut on_resp = |label: String, check: &dyn Fn(&Response) -> Result<String, String>| {
        let v = match resp {
            Ok(r) => check(r),
            Err(why) => Err(none(why)),
        };
        out.push((label, v));
    };
    if let Some(status) = e.status {
        on_resp(format!("status {status}"), &|r| {
            let got = format!("got {} {}", r.status, r.phrase);
            if r.status == status {
                Ok(got)
            } else {
                Err(got)
            }
        });
    }
    if let Some(reason) = &e.reason {
        let want_none = reason == "none";
        let label = if want_none {
            "no x-lbsim-reason (the app's own answer)".to_string()
        } else {
            format!("x-lbsim-reason {reason}")
        };
        on_resp(label, &|r| {
            let got = r.header(crate::lb::respond::REASON_HEADER);
            let text = got.map_or("got none".to_string(), |g| format!("got {g}"));
            let ok = if want_none {
                got.is_none()
            } else {
                got == Some(reason.as_str())
            };
            if ok {
                Ok(text)
            } else {
                Err(text)
            }
        });
    }
    if let Some(body) = &e.body {
        on_resp(format!("body {}", clip(body)), &|r| {
            let text = String::from_utf8_lossy(&r.body);
            if text == body.as_str() {
                Ok("same".to_string())
            } else {
                Err(format!("got {}", clip(&text)))
            }
        });
    }
    if let Some(part) = &e.body_contains {
        on_resp(format!("body contains {part:?}"), &|r| {
            let text = String::from_utf8_lossy(&r.body);
            if text.contains(part.as_str()) {
                Ok("found".to_string())
            } else {
                Err(format!("body is {}", clip(&text)))
            }
        });
    }
    for (name, value) in e.headers.iter().flatten() {
        on_resp(
            format!("header {name}: {value}"),
            &|r| match r.header(name) {
                Some(v) if v == value => Ok(format!("got {v}")),
                Some(v) => Err(format!("got {v}")),
                None => Err("absent".to_string()),
            },
        );
    }
    if let Some(truncated) = e.truncated {
        let label = if truncated {
            "body cut short"
        } else {
            "body complete"
        };
        on_resp(label.to_string(), &|r| {
            let got = if r.complete {
                format!("complete, {} bytes", r.body.len())
            } else {
                format!("cut after {} bytes", r.body.len())
            };
            if r.complete != truncated {
                Ok(got)
            } else {
                Err(got)
            }
        });
    }
    if let Some(Dur(want)) = e.elapsed {
        let real = want.mul_f64(scale);
        let tol = e
            .tolerance
            .map_or(DEFAULT_TOLERANCE, |t| t.0.mul_f64(scale));
        let low = real.saturating_sub(CLOCK_SLACK.min(tol));
        let high = real + tol;
        let label = match e.tolerance {
            Some(Dur(t)) => format!("takes {} (+{})", show(want), show(t)),
            None => format!("takes {} (+{} real)", show(want), show(DEFAULT_TOLERANCE)),
        };
        let mut got = format!("took {}", show(x.elapsed));
        if scale != 1.0 {
            let _ = write!(got, " (stands for {})", show(x.elapsed.div_f64(scale)));
        }
        let ok = x.elapsed >= low && x.elapsed <= high;
        out.push((label, if ok { Ok(got) } else { Err(got) }));
    }
    if let Some(closed) = e.closed {
        let label = if closed {
            "connection closed afterwards"
        } else {
            "connection still open afterwards"
        };
        let got = match x.closed {
            Some(true) => "closed",
            Some(false) => "open",
            None => "not checked",
        };
        let ok = x.closed == Some(closed);
        out.push((
            label.to_string(),
            if ok {
                Ok(got.to_string())
            } else {
                Err(got.to_string())
            },
        ));
    }
    out
}

fn clip(text: &str) -> String {
    let mut s: String = text.chars().take(60).collect();
    if s.len() < text.len() {
        s.push('…');
    }
    format!("{s:?}")
}

struct SendJob {
    lb: SocketAddr,
    log: Log,
    spec: SendSpec,
    step: usize,
    line: usize,
    scale: f64,
    who: String,
    slot: Option<Slot>,
    sampler: Arc<Sampler>,
    /// Told once per request when its bytes are out (background requests).
    sent: Option<mpsc::UnboundedSender<()>>,
}

async fn run_send(job: SendJob) -> Vec<Check> {
    let check = |who: &str, (expected, v): Verdict| Check {
        step: job.step,
        line: job.line,
        who: who.to_string(),
        expected,
        passed: v.is_ok(),
        detail: match v {
            Ok(s) | Err(s) => s,
        },
    };
    if job.spec.concurrent <= 1 {
        let x = exchange(
            job.lb,
            &job.log,
            &job.sampler,
            &job.who,
            &job.spec,
            job.slot.clone(),
            job.sent.as_ref(),
        )
        .await;
        return evaluate(&job.spec.expect, &x, job.scale)
            .into_iter()
            .map(|v| check(&job.who, v))
            .collect();
    }
    let n = job.spec.concurrent;
    let spec = Arc::new(job.spec.clone());
    let mut tasks = Vec::new();
    for i in 1..=n {
        let (lb, log, spec) = (job.lb, job.log.clone(), spec.clone());
        let sampler = job.sampler.clone();
        let sent = job.sent.clone();
        let who = format!("{}.{i}", job.who);
        tasks.push(tokio::spawn(async move {
            exchange(lb, &log, &sampler, &who, &spec, None, sent.as_ref()).await
        }));
    }
    let mut per_copy: Vec<Vec<Verdict>> = Vec::new();
    for t in tasks {
        match t.await {
            Ok(x) => per_copy.push(evaluate(&spec.expect, &x, job.scale)),
            Err(e) => per_copy.push(vec![(
                "request ran".to_string(),
                Err(format!("request task failed: {e}")),
            )]),
        }
    }
    // One verdict per expectation over all copies.
    let labels: Vec<String> = per_copy
        .first()
        .map(|v| v.iter().map(|(l, _)| l.clone()).collect())
        .unwrap_or_default();
    let who = format!("{} ×{n}", job.who);
    labels
        .into_iter()
        .enumerate()
        .map(|(i, label)| {
            let results: Vec<&Result<String, String>> = per_copy
                .iter()
                .filter_map(|v| v.get(i).map(|(_, r)| r))
                .collect();
            let passed = results.iter().filter(|r| r.is_ok()).count();
            let first_fail = results.iter().find_map(|r| r.as_ref().err());
            let v = match first_fail {
                None => Ok(format!("{passed}/{n}")),
                Some(f) => Err(format!("{passed}/{n} passed; first failure: {f}")),
            };
            check(&who, (label, v))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// The runner
// ---------------------------------------------------------------------------------------

struct LiveTarget {
    name: String,
    addr: SocketAddr,
    mock: Option<MockUpstream>,
    id: Option<u64>,
    idle_waits: u64,
}

type Names = Arc<Mutex<HashMap<u64, String>>>;

struct Runner {
    sim: SimHandle,
    lb: SocketAddr,
    log: Log,
    scale: f64,
    targets: Vec<LiveTarget>,
    names: Names,
    sampler: Arc<Sampler>,
    conns: HashMap<String, Slot>,
    background: Vec<JoinHandle<Vec<Check>>>,
    checks: Vec<Check>,
    unnamed: usize,
    monitor_stop: watch::Sender<bool>,
    monitor: JoinHandle<()>,
    /// Sockets that keep `closed` targets' ports reserved.
    _closed_ports: Vec<tokio::net::TcpSocket>,
}

/// Plays `scenario` on loopback and reports what happened.
pub async fn run(scenario: &Scenario) -> Report {
    let log = Log::new();
    let mut report = Report {
        name: scenario.name.clone(),
        origin: scenario.origin.clone(),
        description: scenario.description.clone(),
        time_scale: scenario.time_scale,
        events: Vec::new(),
        checks: Vec::new(),
        error: None,
        duration: Duration::ZERO,
    };
    match Runner::start(scenario, log.clone()).await {
        Err(e) => report.error = Some(e),
        Ok(mut runner) => {
            for step in &scenario.steps {
                runner.play(step).await;
            }
            report.checks = runner.finish().await;
        }
    }
    report.events = log.take();
    report.duration = log.t0.elapsed();
    report
}

/// A loopback port that refuses connections for as long as the socket is kept: bound but
/// not listening, so no other program (or concurrent scenario) can take it meanwhile.
fn closed_port() -> std::io::Result<(SocketAddr, tokio::net::TcpSocket)> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    Ok((socket.local_addr()?, socket))
}

impl Runner {
    async fn start(s: &Scenario, log: Log) -> Result<Runner, String> {
        let mut targets = Vec::new();
        let mut held = Vec::new();
        for t in &s.targets {
            let (addr, mock) = match &t.kind {
                TargetKind::Mock {
                    keep_alive,
                    latency,
                    max_ongoing_requests,
                    max_queued_requests,
                    request_timeout,
                } => {
                    let opts = MockOptions {
                        keep_alive: s.scaled(*keep_alive),
                        latency: s.scaled(*latency),
                        max_ongoing_requests: *max_ongoing_requests,
                        max_queued_requests: *max_queued_requests,
                        request_timeout: request_timeout.map(|d| s.scaled(d)),
                    };
                    let mock = MockUpstream::start(SocketAddr::from(([127, 0, 0, 1], 0)), opts)
                        .await
                        .map_err(|e| format!("cannot start mock target {}: {e}", t.name))?;
                    log.push(
                        Actor::Target,
                        &t.name,
                        format!(
                            "mock app on {} (keep-alive {}{})",
                            mock.addr,
                            show(*keep_alive),
                            if s.time_scale == 1.0 {
                                String::new()
                            } else {
                                format!(", {} real", show(s.scaled(*keep_alive)))
                            }
                        ),
                    );
                    (mock.addr, Some(mock))
                }
                TargetKind::External(a) => {
                    let addr = crate::net::resolve_upstream(a).await?;
                    log.push(Actor::Target, &t.name, format!("external app at {addr}"));
                    (addr, None)
                }
                TargetKind::Closed => {
                    let (addr, socket) =
                        closed_port().map_err(|e| format!("cannot reserve a port: {e}"))?;
                    held.push(socket);
                    log.push(
                        Actor::Target,
                        &t.name,
                        format!("{addr}: nothing listens there"),
                    );
                    (addr, None)
                }
            };
            targets.push(LiveTarget {
                name: t.name.clone(),
                addr,
                mock,
                id: None,
                idle_waits: 0,
            });
        }
        let mut builder = Simulator::builder(s.cloud).settings(s.settings.clone());
        for (spec, live) in s.targets.iter().zip(&targets) {
            if spec.registered {
                builder = builder.upstream(live.addr);
            }
        }
        let sim = builder.start().await.map_err(|e| e.to_string())?;
        // The builder registers upstreams in order, so ids follow the registered targets.
        let infos = sim.targets();
        let names: Names = Arc::new(Mutex::new(HashMap::new()));
        {
            let mut map = names.lock().unwrap_or_else(|e| e.into_inner());
            let registered = s
                .targets
                .iter()
                .zip(targets.iter_mut())
                .filter(|(spec, _)| spec.registered);
            for ((_, live), info) in registered.zip(&infos) {
                live.id = Some(info.id);
                map.insert(info.id, live.name.clone());
            }
        }
        let c = sim.config();
        let mut what = format!(
            "{} on {}: {} {}, backend keep-alive {}",
            c.profile.display_name,
            sim.addr(),
            c.profile.timeout_setting,
            show(c.timers.timeout),
            show(c.timers.backend_keep_alive)
        );
        if s.time_scale != 1.0 {
            let _ = write!(what, " (real times, scale {})", s.time_scale);
        }
        log.push(Actor::Lb, "lb", what);
        let (monitor_stop, stop_rx) = watch::channel(false);
        let mocks: Vec<(String, Arc<MockStats>)> = targets
            .iter()
            .filter_map(|t| t.mock.as_ref().map(|m| (t.name.clone(), m.stats.clone())))
            .collect();
        let sampler = Arc::new(Sampler::new(
            sim.control(),
            mocks,
            names.clone(),
            log.clone(),
        ));
        let monitor = tokio::spawn(monitor(sampler.clone(), stop_rx));
        Ok(Runner {
            lb: sim.addr(),
            sim,
            log,
            scale: s.time_scale,
            targets,
            names,
            sampler,
            conns: HashMap::new(),
            background: Vec::new(),
            checks: Vec::new(),
            unnamed: 0,
            monitor_stop,
            monitor,
            _closed_ports: held,
        })
    }

    fn check(&mut self, step: &Step, who: &str, expected: String, v: Result<String, String>) {
        self.checks.push(Check {
            step: step.index,
            line: step.line,
            who: who.to_string(),
            expected,
            passed: v.is_ok(),
            detail: match v {
                Ok(s) | Err(s) => s,
            },
        });
    }

    fn real(&self, d: Duration) -> Duration {
        d.mul_f64(self.scale)
    }

    fn cloud_and_real(&self, d: Duration) -> String {
        if self.scale == 1.0 {
            show(d)
        } else {
            format!("{} ({} real)", show(d), show(self.real(d)))
        }
    }

    async fn play(&mut self, step: &Step) {
        // Whatever happened before this step is logged before it.
        self.sampler.sample();
        if let Some(note) = &step.note {
            self.log.push(Actor::Note, "note", note.clone());
        }
        match &step.kind {
            StepKind::Note => {}
            StepKind::Wait(d) => {
                self.log.push(
                    Actor::Runner,
                    "runner",
                    format!("waits {}", self.cloud_and_real(*d)),
                );
                tokio::time::sleep(self.real(*d)).await;
            }
            StepKind::Join => self.join().await,
            StepKind::Send(spec) => self.send(step, spec).await,
            StepKind::Target(t) => self.target_step(step, t).await,
        }
    }

    async fn send(&mut self, step: &Step, spec: &SendSpec) {
        let (who, slot) = match &spec.conn {
            Some(name) => {
                let slot = self.conns.entry(name.clone()).or_default().clone();
                (format!("client {name}"), Some(slot))
            }
            None => {
                self.unnamed += 1;
                (format!("client #{}", self.unnamed), None)
            }
        };
        let job = SendJob {
            lb: self.lb,
            log: self.log.clone(),
            spec: spec.clone(),
            step: step.index,
            line: step.line,
            scale: self.scale,
            who,
            slot,
            sampler: self.sampler.clone(),
            sent: None,
        };
        if spec.background {
            let (tx, mut rx) = mpsc::unbounded_channel();
            let job = SendJob {
                sent: Some(tx),
                ..job
            };
            self.background.push(tokio::spawn(run_send(job)));
            // The next step starts once the request has left (or failed to).
            for _ in 0..spec.concurrent {
                if rx.recv().await.is_none() {
                    break;
                }
            }
        } else {
            let checks = run_send(job).await;
            self.checks.extend(checks);
        }
    }

    async fn join(&mut self) {
        for task in std::mem::take(&mut self.background) {
            match task.await {
                Ok(checks) => self.checks.extend(checks),
                Err(e) => self.checks.push(Check {
                    step: 0,
                    line: 0,
                    who: "runner".into(),
                    expected: "background request finished".into(),
                    detail: e.to_string(),
                    passed: false,
                }),
            }
        }
    }

    async fn target_step(&mut self, step: &Step, t: &TargetStep) {
        let Some(i) = self.targets.iter().position(|x| x.name == t.target) else {
            // The parser checked the name; stay total.
            self.check(
                step,
                &t.target,
                "target exists".into(),
                Err("unknown".into()),
            );
            return;
        };
        if let Some(action) = t.action {
            self.act(step, i, action).await;
        }
        if let Some(w) = t.wait_for {
            self.wait_for(step, i, w, t.timeout).await;
        }
        let name = self.targets[i].name.clone();
        if let Some(want) = t.state {
            let got = self.state_of(i);
            let v = match got {
                Some(s) if s == want => Ok(s.as_str().to_string()),
                Some(s) => Err(s.as_str().to_string()),
                None => Err("not registered".to_string()),
            };
            self.check(step, &name, format!("state {}", want.as_str()), v);
        }
        if let Some(stats) = self.targets[i].mock.as_ref().map(|m| m.stats.clone()) {
            let counters = [
                ("requests", t.requests, &stats.requests),
                ("connections", t.connections, &stats.connections),
                ("idle_closes", t.idle_closes, &stats.idle_closes),
            ];
            for (label, want, counter) in counters {
                if let Some(want) = want {
                    let got = counter.load(Ordering::Relaxed);
                    let v = if got == want {
                        Ok(format!("{got}"))
                    } else {
                        Err(format!("{got}"))
                    };
                    self.check(step, &name, format!("{label} = {want}"), v);
                }
            }
        }
    }

    /// The state of target `i`, `None` if it was never registered. A target that was
    /// registered and is no longer in the group (its deregistration ended) is `unused`,
    /// as AWS reports a target named in `describe-target-health` that is not registered.
    fn state_of(&self, i: usize) -> Option<TargetState> {
        let id = self.targets[i].id?;
        let state = self
            .sim
            .targets()
            .into_iter()
            .find(|x| x.id == id)
            .map_or(TargetState::Unused, |x| x.state);
        Some(state)
    }

    async fn act(&mut self, step: &Step, i: usize, action: Action) {
        let name = self.targets[i].name.clone();
        let id = self.targets[i].id;
        let fail = |what: &str| Err(format!("{name} is {what}"));
        match action {
            Action::Register => {
                let info = match self.sim.register(self.targets[i].addr) {
                    Ok(info) => info,
                    Err(e) => {
                        self.check(step, &name, "register".into(), Err(e.to_string()));
                        return;
                    }
                };
                self.targets[i].id = Some(info.id);
                self.names
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(info.id, name.clone());
                self.log.push(
                    Actor::Runner,
                    "runner",
                    format!("registers {name} ({})", info.state.as_str()),
                );
            }
            Action::Deregister => match id.and_then(|id| self.sim.deregister(id).ok()) {
                Some(_) => {
                    let delay = self.sim.config().timers.deregistration_delay;
                    self.log.push(
                        Actor::Runner,
                        "runner",
                        format!(
                            "deregisters {name}: it drains for the deregistration delay, {}",
                            self.cloud_and_real(delay.div_f64(self.scale))
                        ),
                    );
                }
                None => self.check(step, &name, "deregister".into(), fail("not registered")),
            },
            Action::Unhealthy | Action::Healthy | Action::Auto => {
                let (over, word) = match action {
                    Action::Unhealthy => (HealthOverride::Unhealthy, "marks {} unhealthy"),
                    Action::Healthy => (HealthOverride::Healthy, "marks {} healthy"),
                    _ => (HealthOverride::Auto, "hands {} back to the health checks"),
                };
                match id.and_then(|id| self.sim.set_health(id, over).ok()) {
                    Some(_) => self
                        .log
                        .push(Actor::Runner, "runner", word.replace("{}", &name)),
                    None => self.check(step, &name, format!("{action:?}"), fail("not registered")),
                }
            }
            Action::Stop => {
                if let Some(m) = &self.targets[i].mock {
                    m.stop();
                }
                // Stopping takes effect when the accept task is dropped: wait for the refusal
                // (a probe that still gets in is counted by the app, so let the abort land first).
                let addr = self.targets[i].addr;
                let until = Instant::now() + Duration::from_secs(2);
                let mut refused = false;
                while Instant::now() < until {
                    tokio::time::sleep(POLL).await;
                    if TcpStream::connect(addr).await.is_err() {
                        refused = true;
                        break;
                    }
                }
                if refused {
                    self.log.push(
                        Actor::Runner,
                        "runner",
                        format!("stops {name}: its port refuses connections now"),
                    );
                } else {
                    self.check(
                        step,
                        &name,
                        "stop".into(),
                        fail("still accepting connections"),
                    );
                }
            }
        }
    }

    async fn wait_for(&mut self, step: &Step, i: usize, w: WaitFor, timeout: Option<Duration>) {
        let name = self.targets[i].name.clone();
        let limit = timeout.map_or(DEFAULT_WAIT_LIMIT, |d| self.real(d));
        let start = Instant::now();
        let (label, goal) = match w {
            WaitFor::IdleClose => {
                let n = self.targets[i].idle_waits + 1;
                (format!("closes an idle keep-alive connection (#{n})"), None)
            }
            other => {
                let state = match other {
                    WaitFor::Initial => TargetState::Initial,
                    WaitFor::Healthy => TargetState::Healthy,
                    WaitFor::Unhealthy => TargetState::Unhealthy,
                    WaitFor::Draining => TargetState::Draining,
                    WaitFor::Unused => TargetState::Unused,
                    _ => TargetState::Unavailable,
                };
                (format!("becomes {}", state.as_str()), Some(state))
            }
        };
        self.log.push(
            Actor::Runner,
            "runner",
            format!("waits until {name} {label}"),
        );
        let stats = self.targets[i].mock.as_ref().map(|m| m.stats.clone());
        let want_closes = self.targets[i].idle_waits + 1;
        let reached = loop {
            let done = match goal {
                Some(state) => self.state_of(i) == Some(state),
                None => stats
                    .as_ref()
                    .is_some_and(|s| s.idle_closes.load(Ordering::Relaxed) >= want_closes),
            };
            if done {
                break true;
            }
            if start.elapsed() >= limit {
                break false;
            }
            tokio::time::sleep(POLL).await;
        };
        if goal.is_none() {
            self.targets[i].idle_waits = want_closes;
        }
        let took = start.elapsed();
        let mut seen = format!("after {}", show(took));
        if self.scale != 1.0 {
            let _ = write!(seen, " (stands for {})", show(took.div_f64(self.scale)));
        }
        let v = if reached {
            Ok(seen)
        } else {
            let now = self
                .state_of(i)
                .map_or("not registered".to_string(), |s| s.as_str().to_string());
            Err(format!("not within {} (state {now})", show(limit)))
        };
        self.check(step, &name, label, v);
    }

    async fn finish(mut self) -> Vec<Check> {
        self.join().await;
        let _ = self.monitor_stop.send(true);
        let _ = self.monitor.await;
        self.conns.clear();
        self.sim.shutdown().await;
        drop(self.targets);
        let mut checks = self.checks;
        checks.sort_by_key(|c| c.step);
        checks
    }
}

/// Turns the targets' counters, target states and the LB's counters into timeline events.
///
/// A background task samples every [`POLL`]; each client also samples right before it logs
/// a response, so what the app and the LB did for a request is logged before its answer.
struct Sampler {
    control: Control,
    mocks: Vec<(String, Arc<MockStats>)>,
    names: Names,
    log: Log,
    seen: Mutex<Seen>,
}

struct Seen {
    counts: Counts,
    mocks: Vec<[u64; 3]>,
    states: HashMap<u64, TargetState>,
}

impl Sampler {
    fn new(control: Control, mocks: Vec<(String, Arc<MockStats>)>, names: Names, log: Log) -> Self {
        // Targets start `initial` (or `unavailable` without checks): a change made before the
        // first sample is still logged.
        let first = if control.config().health.enabled {
            TargetState::Initial
        } else {
            TargetState::Unavailable
        };
        let states = control.targets().iter().map(|t| (t.id, first)).collect();
        let seen = Seen {
            counts: Counts::default(),
            mocks: vec![[0; 3]; mocks.len()],
            states,
        };
        Sampler {
            control,
            mocks,
            names,
            log,
            seen: Mutex::new(seen),
        }
    }

    fn sample(&self) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let log = &self.log;
        for ((name, stats), seen) in self.mocks.iter().zip(seen.mocks.iter_mut()) {
            let now = [
                stats.connections.load(Ordering::Relaxed),
                stats.requests.load(Ordering::Relaxed),
                stats.idle_closes.load(Ordering::Relaxed),
            ];
            let says: [fn(u64) -> String; 3] = [
                |n| format!("accepts a connection ({n} so far)"),
                |n| format!("receives a request ({n} so far)"),
                |_| "closes an idle keep-alive connection (FIN, no response)".to_string(),
            ];
            for ((seen, now), say) in seen.iter_mut().zip(now).zip(says) {
                while *seen < now {
                    *seen += 1;
                    log.push(Actor::Target, name, say(*seen));
                }
            }
        }
        let name_of = |id: u64| {
            self.names
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&id)
                .cloned()
                .unwrap_or_else(|| format!("target {id}"))
        };
        let members = self.control.targets();
        for info in &members {
            let before = seen.states.insert(info.id, info.state);
            if before != Some(info.state) {
                let name = name_of(info.id);
                let from = before.map_or("new", TargetState::as_str);
                let mut what = format!("target {name}: {from} → {}", info.state.as_str());
                if self.control.config().health.enabled {
                    let _ = write!(what, " (last health check: {})", info.reason);
                }
                log.push(Actor::Lb, "lb", what);
            }
        }
        // A target whose deregistration ended has left the group: it is `unused` now.
        // Sorted by id: several leaving in one sample are logged in a stable order.
        let mut left: Vec<(u64, TargetState)> = seen
            .states
            .iter()
            .filter(|(id, s)| **s != TargetState::Unused && !members.iter().any(|t| t.id == **id))
            .map(|(id, s)| (*id, *s))
            .collect();
        left.sort_by_key(|(id, _)| *id);
        for (id, from) in left {
            seen.states.insert(id, TargetState::Unused);
            let (name, from) = (name_of(id), from.as_str());
            let what = format!("target {name}: {from} → unused (it leaves the target group)");
            log.push(Actor::Lb, "lb", what);
        }
        let now = self.control.stats();
        for line in diff_counts(&seen.counts, &now, self.control.config().profile) {
            log.push(Actor::Lb, "lb", line);
        }
        seen.counts = now;
    }
}

/// Samples until `stop` turns true, then once more.
async fn monitor(sampler: Arc<Sampler>, mut stop: watch::Receiver<bool>) {
    loop {
        let stopping = *stop.borrow();
        sampler.sample();
        if stopping {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.changed() => {}
        }
    }
}

/// What the LB's counters say happened between two snapshots.
fn diff_counts(before: &Counts, now: &Counts, profile: &Profile) -> Vec<String> {
    let mut statuses: BTreeMap<u16, u64> = now
        .by_status
        .iter()
        .map(|(s, n)| {
            (
                *s,
                n - before.by_status.get(s).copied().unwrap_or(0).min(*n),
            )
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    let mut lines = Vec::new();
    for (reason, n) in &now.by_cause {
        let delta = n - before.count(*reason).min(*n);
        if delta == 0 {
            continue;
        }
        let outcome = profile.outcome(*reason);
        let (status, code) = (outcome.status, outcome.code);
        let paged = statuses.get_mut(&status).map_or(0, |left| {
            let k = (*left).min(delta);
            *left -= k;
            k
        });
        for _ in 0..paged {
            lines.push(format!("answers {status} itself: {code}"));
        }
        for _ in paged..delta {
            lines.push(format!(
                "cuts the response mid-body: {code} (no status can be sent any more)"
            ));
        }
    }
    for (status, n) in statuses {
        for _ in 0..n {
            lines.push(format!("passes the app's {status} through"));
        }
    }
    lines
}

// ---------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------

/// ANSI colors, on when stdout is a terminal and `NO_COLOR` is unset.
#[derive(Clone, Copy, Debug)]
pub struct Style {
    /// Emit ANSI escapes.
    pub color: bool,
}

impl Style {
    /// Colors when stdout is a terminal (and `NO_COLOR` is not set).
    pub fn detect() -> Style {
        Style {
            color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }
    /// No escapes.
    pub fn plain() -> Style {
        Style { color: false }
    }
    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
    fn bold(&self, t: &str) -> String {
        self.paint("1", t)
    }
    fn dim(&self, t: &str) -> String {
        self.paint("2", t)
    }
    fn green(&self, t: &str) -> String {
        self.paint("1;32", t)
    }
    fn red(&self, t: &str) -> String {
        self.paint("1;31", t)
    }
    fn actor(&self, a: Actor, t: &str) -> String {
        match a {
            Actor::Client => self.paint("36", t),
            Actor::Lb => self.paint("33", t),
            Actor::Target => self.paint("35", t),
            Actor::Runner => self.paint("2", t),
            Actor::Note => self.paint("1;34", t),
        }
    }
}

/// The timeline, one line per event.
pub fn render_timeline(r: &Report, style: Style, indent: &str) -> String {
    let mut out = String::new();
    let width = r
        .events
        .iter()
        .map(|e| e.who.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    for e in &r.events {
        let real = format!("+{:.3}s", e.at.as_secs_f64());
        let cloud = if r.time_scale == 1.0 {
            String::new()
        } else {
            format!(
                "{:>9}",
                format!("~{}", show_short(e.at.div_f64(r.time_scale)))
            )
        };
        let who = format!("{:<width$}", e.who);
        let what = if e.actor == Actor::Note {
            style.actor(Actor::Note, &format!("» {}", e.what))
        } else {
            e.what.clone()
        };
        let _ = writeln!(
            out,
            "{indent}{} {} {}  {what}",
            style.dim(&format!("{real:>8}")),
            style.dim(&cloud),
            style.actor(e.actor, &who)
        );
    }
    out
}

fn show_short(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 100.0 {
        format!("{s:.0}s")
    } else {
        format!("{s:.1}s")
    }
}

/// The PASS/FAIL lines.
pub fn render_checks(r: &Report, style: Style, indent: &str) -> String {
    let mut out = String::new();
    for c in &r.checks {
        let mark = if c.passed {
            style.green("PASS")
        } else {
            style.red("FAIL")
        };
        let _ = writeln!(
            out,
            "{indent}{mark}  step {} (line {}) {}: {} — {}",
            c.step, c.line, c.who, c.expected, c.detail
        );
    }
    if let Some(e) = &r.error {
        let _ = writeln!(out, "{indent}{}  could not run: {e}", style.red("FAIL"));
    }
    out
}

/// The full report of `lbsim scenario run`.
pub fn render_report(r: &Report, style: Style) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {}",
        style.bold(&format!("== {} ==", r.name)),
        style.dim(&format!("({})", r.origin))
    );
    let _ = writeln!(out, "{}", r.description);
    let _ = writeln!(
        out,
        "timeline (real time; ~ what it stands for in the cloud):"
    );
    out.push_str(&render_timeline(r, style, "  "));
    let _ = writeln!(out, "checks:");
    out.push_str(&render_checks(r, style, "  "));
    out.push_str(&verdict_line(r, style));
    out
}

fn verdict_line(r: &Report, style: Style) -> String {
    let passed = r.checks.iter().filter(|c| c.passed).count();
    let word = if r.passed() {
        style.green("PASS")
    } else {
        style.red("FAIL")
    };
    format!(
        "{word} {}: {passed}/{} checks in {:.2} s\n",
        r.name,
        r.checks.len(),
        r.duration.as_secs_f64()
    )
}

// ---------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------

// The minimal file is a macro so that `concat!` can put it in the help text and the unit
// test can parse the very same text.
macro_rules! help_example {
    () => {
        r#"description = "AWS 502: app keep-alive (5 s) shorter than the ALB's (300 s)"
cloud = "aws"            # or "gcp" (global external), "gcp-classic"
time_scale = 0.01        # every duration below is cloud time: 300 s plays in 3 s

[lb]
race_window = "always"   # every stale reuse fails (not scaled)
health_checks = false

[[targets]]
name = "app"             # kind = "mock" (default): lbsim's mock app
keep_alive = "5s"

[[steps]]
send = "GET /"
expect = { status = 200, reason = "none" }

[[steps]]
target = "app"
wait_for = "idle_close"  # the app closed its idle connection

[[steps]]
send = "GET /"
expect = { status = 502, reason = "target_closed_connection" }
"#
    };
}

/// A complete scenario, as small as one can be and still show a failure; shown by
/// `lbsim scenario --help` (a unit test parses it).
pub const HELP_EXAMPLE: &str = help_example!();

/// `lbsim scenario -h`: where the file format is written down.
const HELP_SHORT: &str = "The file format, every key: scenarios/README.md in the lbsim repository \
(`lbsim scenario --help` shows an example; `lbsim scenario show NAME` prints a bundled file).";

/// `lbsim scenario --help`: the pointer and a minimal file.
const HELP_LONG: &str = concat!(
    "The file format, every key (targets, steps, expectations, which durations scale with \
     time_scale): scenarios/README.md in the lbsim repository. `lbsim scenario show NAME` \
     prints a bundled file to adapt.\n\nA minimal scenario file:\n\n",
    help_example!()
);

/// `lbsim scenario ...`
#[derive(Debug, clap::Args)]
#[command(after_help = HELP_SHORT, after_long_help = HELP_LONG)]
pub struct ScenarioArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ScenarioCommand,
}

/// Subcommands of `lbsim scenario`.
#[derive(Debug, clap::Subcommand)]
pub enum ScenarioCommand {
    /// Run scenario files, folders of them, or bundled scenarios by name (all bundled ones
    /// when none is given). Exits 1 when an expectation fails, 2 when a file is invalid.
    Run {
        /// Files, folders (their *.toml files) or bundled names.
        paths: Vec<String>,
    },
    /// List the bundled scenarios with their one-line description.
    List,
    /// Print a bundled scenario's file.
    Show {
        /// Bundled scenario name.
        name: String,
    },
}

/// `lbsim demo`
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Pause between scenarios (for a presenter to talk over).
    #[arg(long, value_parser = parse_duration, default_value = "0s", value_name = "DURATION")]
    pub pause: Duration,
}

/// Resolves command-line arguments to scenarios: files, folders, bundled names.
pub fn resolve(args: &[String]) -> Result<Vec<Scenario>, Vec<LoadError>> {
    let mut found = Vec::new();
    let mut errors = Vec::new();
    if args.is_empty() {
        for b in BUNDLED {
            match b.parse() {
                Ok(s) => found.push(s),
                Err(e) => errors.push(e),
            }
        }
    }
    for arg in args {
        let path = Path::new(arg);
        if path.is_dir() {
            let mut files: Vec<_> = match std::fs::read_dir(path) {
                Ok(entries) => entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                    .collect(),
                Err(e) => {
                    errors.push(LoadError::Io {
                        origin: arg.clone(),
                        message: format!("cannot read folder: {e}"),
                    });
                    continue;
                }
            };
            files.sort();
            if files.is_empty() {
                errors.push(LoadError::Io {
                    origin: arg.clone(),
                    message: "no .toml files in this folder".to_string(),
                });
            }
            for f in files {
                match load(&f) {
                    Ok(s) => found.push(s),
                    Err(e) => errors.push(e),
                }
            }
        } else if path.is_file() {
            match load(path) {
                Ok(s) => found.push(s),
                Err(e) => errors.push(e),
            }
        } else if let Some(b) = bundled(arg) {
            match b.parse() {
                Ok(s) => found.push(s),
                Err(e) => errors.push(e),
            }
        } else {
            errors.push(LoadError::Io {
                origin: arg.clone(),
                message: "no such file, folder or bundled scenario (see `lbsim scenario list`)"
                    .to_string(),
            });
        }
    }
    if errors.is_empty() {
        Ok(found)
    } else {
        Err(errors)
    }
}

/// Runs `lbsim scenario ...`.
pub async fn run_command(args: ScenarioArgs) -> ExitCode {
    match args.command {
        ScenarioCommand::List => {
            let width = BUNDLED.iter().map(|b| b.name.len()).max().unwrap_or(0);
            for b in BUNDLED {
                let description = b
                    .parse()
                    .map(|s| s.description)
                    .unwrap_or_else(|e| format!("(invalid: {e})"));
                println!("{:<width$}  {description}", b.name);
            }
            ExitCode::SUCCESS
        }
        ScenarioCommand::Show { name } => {
            match bundled(&name) {
                Some(b) => {
                    print!("{}", b.source);
                    ExitCode::SUCCESS
                }
                None => {
                    eprintln!("lbsim scenario show: no bundled scenario `{name}` (see `lbsim scenario list`)");
                    ExitCode::from(2)
                }
            }
        }
        ScenarioCommand::Run { paths } => {
            let scenarios = match resolve(&paths) {
                Ok(s) => s,
                Err(errors) => {
                    for e in errors {
                        eprintln!("{e}");
                    }
                    return ExitCode::from(2);
                }
            };
            let style = Style::detect();
            let mut failed = Vec::new();
            for s in &scenarios {
                let report = run(s).await;
                println!("{}", render_report(&report, style));
                if !report.passed() {
                    failed.push(report.name.clone());
                }
            }
            let total = scenarios.len();
            if failed.is_empty() {
                println!(
                    "{}",
                    style.green(&format!("{total}/{total} scenarios passed"))
                );
                ExitCode::SUCCESS
            } else {
                println!(
                    "{}",
                    style.red(&format!(
                        "{}/{total} scenarios passed; failed: {}",
                        total - failed.len(),
                        failed.join(", ")
                    ))
                );
                ExitCode::from(1)
            }
        }
    }
}

fn wrap_indented(text: &str, indent: &str) -> String {
    text.lines()
        .map(|l| format!("{indent}{}\n", l.trim()))
        .collect()
}

/// Runs `lbsim demo`: the [`DEMO`] scenarios, narrated.
pub async fn demo(args: DemoArgs) -> ExitCode {
    let style = Style::detect();
    let mut scenarios = Vec::new();
    for name in DEMO {
        match bundled(name).map(Bundled::parse) {
            Some(Ok(s)) => scenarios.push(s),
            Some(Err(e)) => {
                eprintln!("lbsim demo: {e}");
                return ExitCode::from(2);
            }
            None => {
                eprintln!("lbsim demo: bundled scenario {name} is missing");
                return ExitCode::from(2);
            }
        }
    }
    let n = scenarios.len();
    println!(
        "{}",
        style.bold(&format!(
            "lbsim demo: {n} ways a cloud load balancer answers 502, 503 or 504 — reproduced on this laptop"
        ))
    );
    println!(
        "{}",
        style.dim(
            "Each scenario runs lbsim in front of its mock app with the cloud's timers scaled down \
             (time scale), so minutes take a second. Times are real; ~ shows what they stand for."
        )
    );
    let mut passed = 0;
    for (i, s) in scenarios.iter().enumerate() {
        println!();
        println!(
            "{}",
            style.bold(&format!("[{}/{n}] {}", i + 1, s.description))
        );
        println!("{}", style.dim(&format!("      setup: {}", s.setup_line())));
        let notes = s.notes();
        if !notes.is_empty() {
            println!("      what is about to happen:");
            for (k, note) in notes.iter().enumerate() {
                println!("        {}. {note}", k + 1);
            }
        }
        let report = run(s).await;
        println!("      what happened:");
        print!("{}", render_timeline(&report, style, "        "));
        if report.passed() {
            passed += 1;
            println!(
                "      {} {} checks held, as the cloud would behave",
                style.green("✔"),
                report.checks.len()
            );
        } else {
            println!("      {} unexpected:", style.red("✘"));
            print!("{}", render_checks(&report, style, "        "));
        }
        if let Some(why) = &s.why {
            println!("      {}", style.bold("why:"));
            print!("{}", wrap_indented(why, "        "));
        }
        if let Some(fix) = &s.fix {
            println!("      {}", style.bold("fix:"));
            print!("{}", wrap_indented(fix, "        "));
        }
        println!(
            "{}",
            style.dim(&format!("      (lbsim scenario show {})", s.name))
        );
        if !args.pause.is_zero() && i + 1 < n {
            tokio::time::sleep(args.pause).await;
        }
    }
    println!();
    if passed == n {
        println!(
            "{}",
            style.green(&format!(
                "{passed}/{n} scenarios behaved as the clouds do. More: lbsim scenario list"
            ))
        );
        ExitCode::SUCCESS
    } else {
        println!(
            "{}",
            style.red(&format!("{passed}/{n} scenarios behaved as expected"))
        );
        ExitCode::from(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_key_belongs_to_one_kind_of_step() {
        // check_step sorts a step by these lists; a key in RawStep but in none of them
        // would be accepted by serde and then ignored.
        let keys = file_keys();
        let steps = keys
            .iter()
            .find(|(table, _)| *table == "[[steps]]")
            .map(|(_, k)| k.to_vec())
            .unwrap_or_default();
        let mut sorted: Vec<&str> = ["note", "wait", "join"]
            .iter()
            .chain(SEND_KEYS)
            .chain(TARGET_KEYS)
            .copied()
            .collect();
        sorted.sort_unstable();
        let mut steps_sorted = steps.clone();
        steps_sorted.sort_unstable();
        assert_eq!(steps_sorted, sorted);
    }

    #[test]
    fn names_come_from_serde() {
        let keys = file_keys();
        assert_eq!(keys[0].1[0], "description");
        assert!(keys.iter().all(|(_, k)| !k.is_empty()), "{keys:?}");
        let values = file_values();
        assert_eq!(
            values[0],
            ("cloud", &["aws", "gcp", "gcp-classic", "ingress-nginx"][..])
        );
    }

    #[test]
    fn the_help_example_is_a_valid_scenario() {
        let s = parse(HELP_EXAMPLE, "help", "help").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.steps.len(), 3);
        assert!(HELP_LONG.ends_with(HELP_EXAMPLE));
        assert!(HELP_LONG.contains("scenarios/README.md"));
    }
}
