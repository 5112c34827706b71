//! `lbsim doctor`: probe a running app and say, before deploying, whether it will meet the
//! load balancer's 502, 503 or 504.
//!
//! The doctor has no engine of its own: the cloud's values come from [`Config::build`] and
//! the profile, and the app is probed over raw TCP (tokio + httparse) so that every
//! connection is under exact control. Three checks, each PASS or RISK:
//!
//! - **keep-alive** (502): one request with keep-alive, then the connection is left idle
//!   until the app closes it (FIN or RST). The wait lasts the LB's backend keep-alive
//!   (`config.timers.backend_keep_alive`) plus [`KEEP_ALIVE_MARGIN_PERCENT`] %, or
//!   `--max-wait` if shorter. RISK when the app closes first or at the same time: a close
//!   within 1 % (at most 1 s) after the LB's value counts as the same time, because the two
//!   timers then race. When the wait ends with the connection still open the result is
//!   "at least N s": PASS if N is already past the LB's value, otherwise NOT MEASURED
//!   (`--max-wait` stopped the measurement too early to clear the app; the detail gives
//!   the command that settles it).
//!   An app that answers `Connection: close` (or frames the body by closing) is a PASS:
//!   the LB never reuses such a connection, so there is nothing to race.
//! - **health** (503): `GET <health-path>` on a new connection with the cloud's health
//!   checker `User-Agent`; PASS on status 200 within the health-check timeout
//!   (the profile's, scaled by `--time-scale`).
//! - **latency** (504): `GET <path>` timed to the first byte and to the end. The relevant
//!   figure follows the profile's timeout kind: the longest silence (first byte included)
//!   for an idle timeout (AWS), the whole response for an end-to-end timeout (GCP). RISK
//!   when it is over half the main timeout (`config.timers.timeout`). The probe waits at
//!   most the main timeout (end-to-end) or one main timeout of silence (idle), and never
//!   longer than `--max-wait`; a response that `--max-wait` cut before it reached half the
//!   timeout is NOT MEASURED.
//!
//! The health and latency probes run first, then the keep-alive probe, one connection at a
//! time, so an app that serves one connection at a time is not misjudged.
//!
//! Exit codes ([`EXIT_CODES`]): 0 every check passes, 1 a risk was found, 2 the app cannot
//! be reached (or the flags are wrong, or the `--serve-config` file cannot be read or
//! parsed), 3 nothing failed but `--max-wait` left a check not measured.
//!
//! `--serve-config FILE` makes the same kind of report from a Ray Serve config (or an
//! Anyscale service config) instead of a running app: see [`serve_config`].

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::ValueEnum;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::human;
pub use crate::lb::config::parse_path;
use crate::lb::config::{parse_duration, Config, ConfigError, Settings};
use crate::lb::profile::{Cloud, LbDefaults, Profile, TimeoutKind};
use crate::lb::reason::Reason;
use crate::net::http1::{BodyEnd, Fill, Interim, ReadError, Reader};
use crate::net::resolve_upstream;

pub mod serve_config;

/// The keep-alive probe waits the LB's backend keep-alive plus this percentage.
pub const KEEP_ALIVE_MARGIN_PERCENT: u32 = 10;

/// How much of a response body is kept to show in a verdict.
const BODY_PREFIX: usize = 120;

/// Name of the keep-alive check.
pub const KEEP_ALIVE: &str = "keep-alive";
/// Name of the health check.
pub const HEALTH: &str = "health";
/// Name of the latency check.
pub const LATENCY: &str = "latency";

/// The exit codes, as `lbsim doctor --help` lists them.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  every check passes
  1  a risk was found (the app would meet a 502, 503 or 504)
  2  the app cannot be reached, or the flags are wrong, or the --serve-config file cannot
     be read or parsed (the error says file:line:column and what was expected)
  3  nothing failed, but a check was NOT MEASURED: --max-wait stopped it before it could
     decide; the report gives the command (without --max-wait) that decides it";

/// `lbsim doctor`: probe a running app and report the load balancer errors it would hit.
#[derive(clap::Args, Debug)]
#[command(after_help = EXIT_CODES)]
pub struct DoctorArgs {
    /// The cloud the app will sit behind, and its settings (the proxy's own flags: the
    /// doctor judges an app by the values the proxy would use).
    #[command(flatten)]
    pub lb: Settings,
    /// The running app, as host:port.
    #[arg(
        long,
        value_name = "HOST:PORT",
        required_unless_present = "serve_config"
    )]
    pub upstream: Option<String>,
    /// Check a Ray Serve config or an Anyscale service config (YAML) instead of a running
    /// app: keep_alive_timeout_s, request_timeout_s, max_queued_requests against the
    /// cloud's values. Nothing is contacted.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with_all = ["upstream", "max_wait", "path"]
    )]
    pub serve_config: Option<PathBuf>,
    /// Path timed by the latency check.
    #[arg(long, default_value = "/", value_parser = parse_path, value_name = "PATH")]
    pub path: String,
    /// Print one JSON object on stdout instead of lines of text.
    #[arg(long)]
    pub json: bool,
    /// Longest the doctor waits for the app to close an idle connection (or to answer the
    /// latency probe); a wait cut short is reported as "at least", and as NOT MEASURED
    /// (exit code 3) when it ends before the LB's own value could be cleared.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub max_wait: Option<Duration>,
}

/// What to probe and against which load balancer values.
#[derive(Clone, Debug)]
pub struct Options {
    /// The cloud and its timers, as the proxy takes them.
    pub settings: Settings,
    /// The app, as `host:port`.
    pub upstream: String,
    /// Health-check path (also requested by the keep-alive probe).
    pub health_path: String,
    /// Path timed by the latency check.
    pub path: String,
    /// Cap on the keep-alive wait and on the latency probe.
    pub max_wait: Option<Duration>,
}

impl Options {
    /// Defaults for `cloud`: paths `/`, no wait cap.
    pub fn new(cloud: Cloud, upstream: impl Into<String>) -> Options {
        Options {
            settings: Settings::new(cloud),
            upstream: upstream.into(),
            health_path: "/".to_string(),
            path: "/".to_string(),
            max_wait: None,
        }
    }
}

impl DoctorArgs {
    /// The options these flags ask for.
    pub fn options(&self) -> Options {
        Options {
            settings: self.lb.clone(),
            upstream: self.upstream.clone().unwrap_or_default(),
            health_path: self
                .lb
                .health_path
                .clone()
                .unwrap_or_else(|| "/".to_string()),
            path: self.path.clone(),
            max_wait: self.max_wait,
        }
    }
}

/// Why no report could be made; every variant exits with 2.
#[derive(Debug, thiserror::Error)]
pub enum DoctorError {
    /// The flags contradict the cloud.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A path that cannot go on a request line.
    #[error("{0}")]
    BadPath(String),
    /// The `--serve-config` file cannot be read or parsed.
    #[error(transparent)]
    ServeConfig(#[from] serve_config::ServeConfigError),
    /// The app cannot be reached: unresolvable, refused, or no answer to connect.
    #[error("cannot reach the app at {upstream}: {reason}")]
    Unreachable {
        /// The address as given.
        upstream: String,
        /// What went wrong, in words.
        reason: String,
    },
}

/// The result of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    /// Nothing to fix.
    Pass,
    /// The load balancer error is likely (or could not be ruled out).
    Risk,
    /// `--max-wait` ended the measurement before it could decide: the app did nothing wrong
    /// in the time it was watched, but that time was too short to clear it.
    #[serde(rename = "NOT_MEASURED")]
    NotMeasured,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "PASS",
            Verdict::Risk => "RISK",
            Verdict::NotMeasured => "NOT MEASURED",
        })
    }
}

/// One check's verdict with its evidence.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Check {
    /// `keep-alive`, `health` or `latency`; with `--serve-config`, `keep-alive`,
    /// `timeout`, `backpressure` (one per deployment) and `health`.
    pub name: &'static str,
    /// PASS, RISK or NOT MEASURED.
    pub verdict: Verdict,
    /// What the app did, in words: `1.003 s`, `at least 2.2 s`, `503 in 0.002 s`.
    pub measured: String,
    /// The load balancer's value it was compared with, in words.
    pub lb_value: String,
    /// What to change; `null` on PASS.
    pub fix: Option<String>,
    /// The whole finding as one sentence (the text line without verdict and fix).
    pub detail: String,
    /// The measured figure in seconds, when there is one (a lower bound if `at_least`).
    pub measured_s: Option<f64>,
    /// The load balancer's figure in seconds.
    pub lb_value_s: f64,
    /// True when the measurement stopped before the app acted: `measured_s` is a lower bound.
    pub at_least: bool,
}

/// What one check compares against; builds its [`Check`] rows.
struct Checking {
    name: &'static str,
    lb_value: String,
    lb_value_s: f64,
}

impl Checking {
    /// A finding.
    fn found(
        &self,
        verdict: Verdict,
        measured: String,
        measured_s: Option<f64>,
        at_least: bool,
        detail: String,
        fix: Option<String>,
    ) -> Check {
        Check {
            name: self.name,
            verdict,
            measured,
            lb_value: self.lb_value.clone(),
            fix,
            detail,
            measured_s,
            lb_value_s: self.lb_value_s,
            at_least,
        }
    }

    /// The app could not be measured (`what` went wrong): a risk until it can be.
    fn unmeasured(&self, what: String, fix: &str) -> Check {
        let detail = format!("could not measure: {what}");
        self.found(
            Verdict::Risk,
            "unknown".into(),
            None,
            false,
            detail,
            Some(fix.into()),
        )
    }
}

/// Everything the doctor found.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    /// The cloud checked against.
    pub cloud: Cloud,
    /// The app's address as given; absent for `--serve-config`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// The Serve config file as given; absent for a running app.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serve_config: Option<String>,
    /// keep-alive, health, latency, in that order (see [`serve_config`] for a file's).
    pub checks: Vec<Check>,
    /// 0 when every check passes, 1 on any risk, 3 when nothing failed but a check was
    /// not measured (see [`EXIT_CODES`]).
    pub exit_code: u8,
}

impl Report {
    /// The check called `name`.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// One line per check: `RISK  keep-alive  … Fix: …`.
    pub fn lines(&self) -> Vec<String> {
        // Names are padded to the longest (at least 10, the live doctor's column).
        let width = self
            .checks
            .iter()
            .map(|c| c.name.len())
            .max()
            .unwrap_or(0)
            .max(10);
        self.checks
            .iter()
            .map(|c| {
                let mut line = format!("{}  {:<width$}  {}", c.verdict, c.name, c.detail);
                if let Some(fix) = &c.fix {
                    line.push_str(". Fix: ");
                    line.push_str(fix);
                }
                line
            })
            .collect()
    }
}

/// What a failing health check leads to, from the profile's routing rule.
fn health_consequence(profile: &Profile) -> String {
    let lb = profile.display_name;
    if profile.fails_open {
        // Failing open covers an all-unhealthy group, but a new target that never passes
        // a check never enters service beside healthy ones.
        let empty = profile.outcome(Reason::NoRegisteredTargets).status;
        format!("the {lb} keeps the target out of service (a new deploy never gets traffic; {empty} once no target is registered)")
    } else {
        let none = profile.outcome(Reason::NoHealthyTargets).status;
        format!("the {lb} marks the backend unhealthy and answers {none} when no backend is healthy (it does not fail open)")
    }
}

/// An app that answered a TCP connect, with the load balancer values to judge it by.
#[derive(Clone, Debug)]
pub struct Target {
    /// The cloud's effective values.
    pub config: Config,
    /// The app's resolved address.
    pub addr: SocketAddr,
}

/// Checks the options, resolves the app and opens (and drops) one connection to it, so that
/// "cannot reach" is told apart from every other finding.
pub async fn reach(opts: &Options) -> Result<Target, DoctorError> {
    let config = Config::build(&opts.settings)?;
    parse_path(&opts.health_path).map_err(DoctorError::BadPath)?;
    parse_path(&opts.path).map_err(DoctorError::BadPath)?;
    let unreachable = |reason: String| DoctorError::Unreachable {
        upstream: opts.upstream.clone(),
        reason,
    };
    let addr = resolve_upstream(&opts.upstream)
        .await
        .map_err(unreachable)?;
    connect(addr, config.timers.connect_timeout)
        .await
        .map_err(unreachable)?;
    Ok(Target { config, addr })
}

/// Runs the three checks against a reached app. Health and latency go first, the long
/// keep-alive wait last, one connection at a time.
pub async fn probe(opts: &Options, target: &Target) -> Report {
    let ctx = Ctx {
        addr: target.addr,
        config: &target.config,
        opts,
    };
    let health = ctx.health().await;
    let latency = ctx.latency().await;
    let keep_alive = ctx.keep_alive().await;
    let checks = vec![keep_alive, health, latency];
    let exit_code = exit_code(&checks);
    Report {
        cloud: target.config.profile.cloud,
        upstream: Some(opts.upstream.clone()),
        serve_config: None,
        checks,
        exit_code,
    }
}

/// 1 on any risk (a risk outranks a check left unmeasured), else 3 when a check was not
/// measured, else 0.
fn exit_code(checks: &[Check]) -> u8 {
    let any = |v: Verdict| checks.iter().any(|c| c.verdict == v);
    if any(Verdict::Risk) {
        1
    } else if any(Verdict::NotMeasured) {
        3
    } else {
        0
    }
}

/// [`reach`] then [`probe`]: `Err` only when no probe could be made (exit code 2).
pub async fn diagnose(opts: &Options) -> Result<Report, DoctorError> {
    let target = reach(opts).await?;
    Ok(probe(opts, &target).await)
}

/// Prints a report as lines of text or one JSON object; the exit code to end with.
fn print_report(report: &Report, json: bool) -> Result<ExitCode, String> {
    if json {
        let text = serde_json::to_string(report)
            .map_err(|e| format!("cannot write the report as JSON: {e}"))?;
        println!("{text}");
    } else {
        for line in report.lines() {
            println!("{line}");
        }
    }
    Ok(ExitCode::from(report.exit_code))
}

/// `lbsim doctor --serve-config FILE`: the static check; same output and exit codes.
fn run_serve_config(args: &DoctorArgs, file: &std::path::Path) -> ExitCode {
    let fail = |message: String| {
        eprintln!("lbsim doctor: {message}");
        if args.json {
            let obj = serde_json::json!({
                "cloud": args.lb.cloud,
                "serve_config": file.display().to_string(),
                "checks": [],
                "exit_code": 2,
                "error": message,
            });
            println!("{obj}");
        }
        ExitCode::from(2)
    };
    let opts = serve_config::Options {
        settings: args.lb.clone(),
        file: file.to_path_buf(),
        health_path: args.lb.health_path.clone(),
    };
    match serve_config::diagnose(&opts) {
        Ok(report) => print_report(&report, args.json).unwrap_or_else(fail),
        Err(e) => fail(e.to_string()),
    }
}

/// Runs `lbsim doctor` and prints its findings.
pub async fn run(args: DoctorArgs) -> ExitCode {
    if let Some(file) = &args.serve_config {
        return run_serve_config(&args, file);
    }
    let opts = args.options();
    let fail = |message: String| {
        eprintln!("lbsim doctor: {message}");
        if args.json {
            let obj = serde_json::json!({
                "cloud": args.lb.cloud,
                "upstream": args.upstream,
                "checks": [],
                "exit_code": 2,
                "error": message,
            });
            println!("{obj}");
        }
        ExitCode::from(2)
    };
    let target = match reach(&opts).await {
        Ok(t) => t,
        Err(e) => return fail(e.to_string()),
    };
    let config = &target.config;
    let wait = keep_alive_wait(config, opts.max_wait);
    let lb = config.timers.backend_keep_alive;
    // Said up front so nobody waits for a verdict this run cannot give.
    let note = if opts.max_wait.is_none() {
        " (--max-wait shortens it)".to_string()
    } else if wait <= lb + keep_alive_tie(lb) {
        format!(
            " (--max-wait ends it before the LB's {}: it will be NOT MEASURED)",
            human::duration(lb)
        )
    } else {
        String::new()
    };
    eprintln!(
        "lbsim doctor: probing {} as the {} would; the keep-alive check waits up to {} \
         for the app to close an idle connection{note}",
        opts.upstream,
        config.profile.display_name,
        human::duration(wait),
    );
    let report = probe(&opts, &target).await;
    print_report(&report, args.json).unwrap_or_else(fail)
}

/// A close this soon after the LB's own keep-alive `lb` is a tie: the two timers race.
fn keep_alive_tie(lb: Duration) -> Duration {
    (lb / 100).min(Duration::from_secs(1))
}

/// The `lbsim doctor` command line that repeats this run without `--max-wait`, so that each
/// wait lasts as long as the LB's own values require: what settles a NOT MEASURED check.
/// Built from the options (the flags `lbsim doctor` takes), so the library API gets it too.
pub fn deciding_command(opts: &Options) -> String {
    let s = &opts.settings;
    let cloud = s
        .cloud
        .to_possible_value()
        .map_or_else(|| format!("{:?}", s.cloud), |v| v.get_name().to_string());
    let mut words: Vec<String> = vec!["lbsim".into(), "doctor".into(), "--cloud".into(), cloud];
    let mut flag = |name: &str, value: String| {
        words.push(name.to_string());
        words.push(shell_word(&value));
    };
    if s.defaults == LbDefaults::Native {
        flag("--lb-defaults", "native".into());
    }
    if let Some(d) = s.idle_timeout {
        flag("--idle-timeout", human::flag_value(d));
    }
    if let Some(d) = s.backend_timeout {
        flag("--backend-timeout", human::flag_value(d));
    }
    if s.time_scale != 1.0 {
        flag("--time-scale", s.time_scale.to_string());
    }
    flag("--upstream", opts.upstream.clone());
    if opts.health_path != "/" {
        flag("--health-path", opts.health_path.clone());
    }
    if opts.path != "/" {
        flag("--path", opts.path.clone());
    }
    words.join(" ")
}

/// `word` as one shell word: as it is when it is plain, otherwise in single quotes
/// (paths carry `?` and `&`).
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./:@%+=,-".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// How long the keep-alive probe waits: the LB's backend keep-alive plus the margin, or
/// `--max-wait` if shorter.
fn keep_alive_wait(config: &Config, max_wait: Option<Duration>) -> Duration {
    let lb = config.timers.backend_keep_alive;
    let full = lb + lb * KEEP_ALIVE_MARGIN_PERCENT / 100;
    max_wait.map_or(full, |m| m.min(full))
}

/// Opens a TCP connection within the connect timeout; the error is a sentence.
async fn connect(addr: SocketAddr, limit: Duration) -> Result<TcpStream, String> {
    match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => {
            // Latency of small writes must not depend on Nagle; failure here is harmless.
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => Err(format!(
            "connection to {addr} refused: nothing listens there (start the app, or fix --upstream)"
        )),
        Ok(Err(e)) => Err(format!("connect to {addr} failed: {e}")),
        Err(_) => Err(format!(
            "connect to {addr} did not complete within {}",
            human::duration(limit)
        )),
    }
}

/// Why an exchange did not produce a complete response.
#[derive(Debug)]
enum Failure {
    /// The connection could not be opened.
    Connect(String),
    /// Writing the request failed.
    Write(io::Error),
    /// The overall deadline or the silence limit passed.
    TimedOut,
    /// The app closed the connection (`reset`: with RST).
    Closed { reset: bool },
    /// Bytes that are not an HTTP/1.1 response.
    Malformed(String),
    /// Any other socket error.
    Io(io::Error),
}

impl From<ReadError> for Failure {
    fn from(e: ReadError) -> Failure {
        match e {
            ReadError::Closed { reset } => Failure::Closed { reset },
            ReadError::TimedOut => Failure::TimedOut,
            ReadError::Io(e) => Failure::Io(e),
            malformed => Failure::Malformed(malformed.to_string()),
        }
    }
}

/// A complete response.
#[derive(Debug)]
struct Response {
    status: u16,
    reason: String,
    /// The app allows the connection to be reused.
    reusable: bool,
    body_prefix: Vec<u8>,
}

/// The app's socket as the reader's source, timed byte by byte: when the first byte
/// came, the longest silence, and the deadlines (overall, and silence if set) that end
/// a read with [`ReadError::TimedOut`].
struct Clocked {
    stream: TcpStream,
    sent: Instant,
    last: Instant,
    first_byte: Option<Duration>,
    longest_silence: Duration,
    overall: Instant,
    silence_limit: Option<Duration>,
    /// The last timeout was the overall deadline, not the silence limit.
    cut_by_overall: bool,
}

impl Fill for Clocked {
    async fn fill(&mut self, buf: &mut Vec<u8>) -> Result<usize, ReadError> {
        let deadline = match self.silence_limit {
            Some(limit) => self.overall.min(self.last + limit),
            None => self.overall,
        };
        buf.reserve(16 * 1024);
        match tokio::time::timeout_at(deadline, self.stream.read_buf(buf)).await {
            Err(_) => {
                self.longest_silence = self.longest_silence.max(self.last.elapsed());
                self.cut_by_overall = deadline == self.overall;
                Err(ReadError::TimedOut)
            }
            Ok(Ok(0)) => Ok(0),
            Ok(Ok(n)) => {
                let now = Instant::now();
                self.longest_silence = self.longest_silence.max(now - self.last);
                self.last = now;
                if self.first_byte.is_none() {
                    self.first_byte = Some(now - self.sent);
                }
                Ok(n)
            }
            Ok(Err(e)) => Err(ReadError::from_io(e)),
        }
    }
}

/// One connection, one request, timed byte by byte.
struct Exchange {
    reader: Reader<Clocked>,
    got_head: bool,
}

impl Exchange {
    /// Sends `GET path` on `stream` and starts the clocks.
    async fn start(
        mut stream: TcpStream,
        addr: SocketAddr,
        path: &str,
        agent: &str,
        keep_alive: bool,
        overall: Duration,
        silence_limit: Option<Duration>,
    ) -> Result<Exchange, Failure> {
        let connection = if keep_alive { "keep-alive" } else { "close" };
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: {agent}\r\nAccept: */*\r\nConnection: {connection}\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(Failure::Write)?;
        let sent = Instant::now();
        let clocked = Clocked {
            stream,
            sent,
            last: sent,
            first_byte: None,
            longest_silence: Duration::ZERO,
            overall: sent + overall,
            silence_limit,
            cut_by_overall: false,
        };
        Ok(Exchange {
            reader: Reader::new(clocked),
            got_head: false,
        })
    }

    /// The clocks.
    fn clocks(&self) -> &Clocked {
        self.reader.source()
    }

    fn elapsed(&self) -> Duration {
        self.clocks().sent.elapsed()
    }

    /// Reads one complete response (skipping 1xx heads), keeping the start of its body.
    async fn response(&mut self) -> Result<Response, Failure> {
        let head = self.reader.head(Interim::Skip).await?;
        self.got_head = true;
        let framing = head.framing("GET")?;
        let mut body_prefix = Vec::new();
        let end = self
            .reader
            .body(framing, |bytes| {
                let room = BODY_PREFIX.saturating_sub(body_prefix.len());
                body_prefix.extend_from_slice(&bytes[..bytes.len().min(room)]);
            })
            .await?;
        if let BodyEnd::Cut { reset } = end {
            return Err(Failure::Closed { reset });
        }
        Ok(Response {
            status: head.status,
            reusable: head.reusable() && framing.keeps_connection(),
            reason: head.reason,
            body_prefix,
        })
    }

    /// After a response: waits up to `limit` for the app to close the idle connection.
    /// `Some(idle time)` when it did.
    async fn wait_for_close(&mut self, limit: Duration) -> Option<Duration> {
        let start = Instant::now();
        let deadline = start + limit;
        let mut scratch = [0u8; 1024];
        let stream = &mut self.reader.source_mut().stream;
        loop {
            match tokio::time::timeout_at(deadline, stream.read(&mut scratch)).await {
                Err(_) => return None,
                Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
                // Unsolicited bytes (some servers send a 408 before closing): keep waiting.
                Ok(Ok(_)) => {}
            }
        }
    }
}

/// What went wrong, as words after "GET /x "; `limit` is the deadline a timeout ran into.
fn describe(f: &Failure, got_head: bool, elapsed: Duration, limit: Duration) -> String {
    match f {
        Failure::Connect(e) => format!("could not connect ({e})"),
        Failure::Write(e) => format!("could not be sent ({e})"),
        Failure::TimedOut if got_head => {
            format!(
                "sent a head but no complete body within {}",
                human::duration(limit)
            )
        }
        Failure::TimedOut => format!("got no answer within {}", human::duration(limit)),
        Failure::Closed { reset } => format!(
            "saw the app {} the connection {} after {}",
            if *reset { "reset" } else { "close" },
            if got_head {
                "in the middle of the body"
            } else {
                "before any response"
            },
            human::duration(elapsed)
        ),
        Failure::Malformed(e) => format!("got a malformed response: {e}"),
        Failure::Io(e) => format!("failed: {e}"),
    }
}

struct Ctx<'a> {
    addr: SocketAddr,
    config: &'a Config,
    opts: &'a Options,
}

impl Ctx<'_> {
    fn profile(&self) -> &'static Profile {
        self.config.profile
    }

    async fn exchange(
        &self,
        path: &str,
        agent: &str,
        keep_alive: bool,
        overall: Duration,
        silence_limit: Option<Duration>,
    ) -> Result<Exchange, Failure> {
        let stream = connect(self.addr, self.config.timers.connect_timeout)
            .await
            .map_err(Failure::Connect)?;
        Exchange::start(
            stream,
            self.addr,
            path,
            agent,
            keep_alive,
            overall,
            silence_limit,
        )
        .await
    }

    async fn keep_alive(&self) -> Check {
        let p = self.profile();
        let lb = self.config.timers.backend_keep_alive;
        let lb_s = human::duration(lb);
        let lb_name = p.display_name;
        let path = &self.opts.health_path;
        // The same advice, in the same full-scale numbers, as the proxy's explanation.
        let fix = crate::lb::advice::keep_alive_fix(self.config);
        let unmeasured_fix = format!(
            "Make GET {path} answer with keep-alive so it can be measured (--health-path picks \
             another path); then: {fix}"
        );
        let wait = keep_alive_wait(self.config, self.opts.max_wait);
        let tie = keep_alive_tie(lb);
        let checking = Checking {
            name: KEEP_ALIVE,
            lb_value: lb_s.clone(),
            lb_value_s: lb.as_secs_f64(),
        };
        let check = |verdict, measured, measured_s, at_least, detail, fix| {
            checking.found(verdict, measured, measured_s, at_least, detail, fix)
        };

        let mut ex = match self
            .exchange(path, "lbsim-doctor", true, self.config.timers.timeout, None)
            .await
        {
            Ok(ex) => ex,
            Err(f) => {
                let what = describe(&f, false, Duration::ZERO, Duration::ZERO);
                return checking.unmeasured(
                    format!("GET {path} {what}; {lb_name} keeps idle connections {lb_s}"),
                    &unmeasured_fix,
                );
            }
        };
        let response = match ex.response().await {
            Ok(r) => r,
            Err(f) => {
                let what = describe(&f, ex.got_head, ex.elapsed(), self.config.timers.timeout);
                return checking.unmeasured(
                    format!("GET {path} {what}; {lb_name} keeps idle connections {lb_s}"),
                    &unmeasured_fix,
                );
            }
        };
        if !response.reusable {
            return check(
                Verdict::Pass,
                "closes after every response".to_string(),
                Some(0.0),
                false,
                format!(
                    "app closes the connection after every response, so the {lb_name} never \
                     reuses one: no keep-alive race (a new connection per request)"
                ),
                None,
            );
        }
        match ex.wait_for_close(wait).await {
            Some(idle) if idle <= lb + tie => check(
                Verdict::Risk,
                human::duration(idle),
                Some(idle.as_secs_f64()),
                false,
                format!(
                    "app closes idle connections after {}; {lb_name} keeps them {lb_s} → {}",
                    human::duration(idle),
                    crate::lb::advice::race_consequence(self.config),
                ),
                Some(fix),
            ),
            Some(idle) => check(
                Verdict::Pass,
                human::duration(idle),
                Some(idle.as_secs_f64()),
                false,
                format!(
                    "app closes idle connections after {}; {lb_name} keeps them {lb_s}, so the LB closes first",
                    human::duration(idle)
                ),
                None,
            ),
            None if wait > lb + tie => check(
                Verdict::Pass,
                format!("at least {}", human::duration(wait)),
                Some(wait.as_secs_f64()),
                true,
                format!(
                    "app kept an idle connection open for at least {} (stopped waiting); \
                     {lb_name} keeps them {lb_s}, so the LB closes first",
                    human::duration(wait)
                ),
                None,
            ),
            None => {
                // Nothing went wrong while watched, but the watch ended too early to clear
                // the app: not a risk, and not a pass either.
                let full = keep_alive_wait(self.config, None);
                check(
                    Verdict::NotMeasured,
                    format!("at least {}", human::duration(wait)),
                    Some(wait.as_secs_f64()),
                    true,
                    format!(
                        "app kept an idle connection open for at least {}; --max-wait {} ended the \
                         wait before the {lb_name}'s {lb_s}, so whether the app closes first is \
                         not measured. To decide it (waits up to {}): {}",
                        human::duration(wait),
                        self.opts.max_wait.map_or_else(|| human::flag_value(wait), human::flag_value),
                        human::duration(full),
                        deciding_command(self.opts)
                    ),
                    None,
                )
            }
        }
    }

    async fn health(&self) -> Check {
        let p = self.profile();
        let agent = self.config.health.user_agent;
        let limit = self.config.health.timeout;
        let limit_s = human::duration(limit);
        let path = &self.opts.health_path;
        let lb_value = format!("200 within {limit_s}");
        let wants = format!("{} health checks want 200 within {limit_s}", p.display_name);
        let fix = format!(
            "Make GET {path} answer 200 within {limit_s} (Ray Serve: `/-/healthz`), or point the \
             health check at a path that does (--health-path to try it)"
        );
        let checking = Checking {
            name: HEALTH,
            lb_value: lb_value.clone(),
            lb_value_s: limit.as_secs_f64(),
        };
        let check = |verdict, measured, measured_s, detail, fix| {
            checking.found(verdict, measured, measured_s, false, detail, fix)
        };
        let request = format!("GET {path} as {agent}");
        let result = match self.exchange(path, agent, false, limit, None).await {
            Ok(mut ex) => match ex.response().await {
                Ok(r) => Ok((r, ex.elapsed())),
                Err(f) => Err((describe(&f, ex.got_head, ex.elapsed(), limit), ex.elapsed())),
            },
            Err(f) => Err((
                describe(&f, false, Duration::ZERO, Duration::ZERO),
                Duration::ZERO,
            )),
        };
        match result {
            Ok((r, took)) if r.status == 200 && took < limit => check(
                Verdict::Pass,
                format!("200 in {}", human::duration(took)),
                Some(took.as_secs_f64()),
                format!(
                    "{request} answered 200 in {}; {wants}",
                    human::duration(took)
                ),
                None,
            ),
            Ok((r, took)) => {
                let body = String::from_utf8_lossy(&r.body_prefix);
                let body = body.trim();
                let body = if body.is_empty() {
                    String::new()
                } else {
                    format!(" (body {})", crate::net::http1::preview(body.as_bytes()))
                };
                check(
                    Verdict::Risk,
                    format!("{} in {}", r.status, human::duration(took)),
                    Some(took.as_secs_f64()),
                    format!(
                        "{request} answered {} {} in {}{body}; {wants} → {}",
                        r.status,
                        r.reason,
                        human::duration(took),
                        health_consequence(self.config.profile)
                    ),
                    Some(fix),
                )
            }
            Err((what, took)) => check(
                Verdict::Risk,
                what.clone(),
                Some(took.as_secs_f64()),
                format!(
                    "{request} {what}; {wants} → {}",
                    health_consequence(self.config.profile)
                ),
                Some(fix),
            ),
        }
    }

    async fn latency(&self) -> Check {
        let p = self.profile();
        let lb_name = p.display_name;
        let timeout = self.config.timers.timeout;
        let half = timeout / 2;
        let setting = p.timeout_setting;
        let timed_out = p.outcome(Reason::TargetTimeout).status;
        let lb_value = format!(
            "{setting} {} (risk above {})",
            human::duration(timeout),
            human::duration(half)
        );
        let fix = format!(
            "{} — the {setting} here is {}; `lbsim {}` tries another value",
            p.timeout_fix,
            human::duration(timeout),
            p.timeout_flag
        );
        let path = &self.opts.path;
        let idle = p.timeout_kind == TimeoutKind::Idle;
        // Wait as long as the LB would (one timeout of silence, or the whole timeout),
        // idle streams at most twice the timeout overall, and never past --max-wait.
        let (natural, silence_limit) = if idle {
            (timeout * 2, Some(timeout))
        } else {
            (timeout, None)
        };
        let overall = self.opts.max_wait.map_or(natural, |m| m.min(natural));
        let checking = Checking {
            name: LATENCY,
            lb_value: lb_value.clone(),
            lb_value_s: timeout.as_secs_f64(),
        };
        let check = |verdict, measured, measured_s, at_least, detail, fix| {
            checking.found(verdict, measured, measured_s, at_least, detail, fix)
        };
        let mut ex = match self
            .exchange(path, "lbsim-doctor", false, overall, silence_limit)
            .await
        {
            Ok(ex) => ex,
            Err(f) => {
                let what = describe(&f, false, Duration::ZERO, Duration::ZERO);
                return checking.unmeasured(format!("GET {path} {what}"), &fix);
            }
        };
        let result = ex.response().await;
        let total = ex.elapsed();
        let first = ex.clocks().first_byte;
        let silence = ex.clocks().longest_silence;
        let figure = if idle { silence } else { total };
        let what = if idle {
            "longest wait for a byte"
        } else {
            "whole response"
        };
        // A response the doctor stopped reading has no "complete" time; say who stopped it.
        let end = match &result {
            Err(Failure::TimedOut) if ex.clocks().cut_by_overall && overall < natural => {
                format!(
                    "cut at {} by --max-wait (no complete answer)",
                    human::duration(total)
                )
            }
            Err(Failure::TimedOut) => format!("stopped waiting at {}", human::duration(total)),
            _ => format!("complete {}", human::duration(total)),
        };
        let timings = format!(
            "first byte {}, {end}",
            first.map_or("-".to_string(), human::duration)
        );
        match result {
            Ok(r) => {
                let verdict = if figure > half {
                    Verdict::Risk
                } else {
                    Verdict::Pass
                };
                let tail = if verdict == Verdict::Risk {
                    format!(
                        "over half the {lb_name} {setting} of {} → {timed_out} once it is a little slower",
                        human::duration(timeout)
                    )
                } else {
                    format!("{lb_name} {setting} {}", human::duration(timeout))
                };
                check(
                    verdict,
                    format!("{what} {} ({timings})", human::duration(figure)),
                    Some(figure.as_secs_f64()),
                    false,
                    format!(
                        "GET {path} answered {}; {what} {} ({timings}); {tail}",
                        r.status,
                        human::duration(figure)
                    ),
                    (verdict == Verdict::Risk).then(|| fix.clone()),
                )
            }
            Err(Failure::TimedOut) => {
                // Stopped waiting: the figure so far is a lower bound.
                if figure > half {
                    check(
                        Verdict::Risk,
                        format!("{what} at least {} ({timings})", human::duration(figure)),
                        Some(figure.as_secs_f64()),
                        true,
                        format!(
                            "GET {path} {what} at least {} ({timings}); over half the {lb_name} \
                             {setting} of {} → {timed_out}",
                            human::duration(figure),
                            human::duration(timeout)
                        ),
                        Some(fix),
                    )
                } else if idle && first.is_some() {
                    // An idle timeout lets a steady stream run: only silences count.
                    check(
                        Verdict::Pass,
                        format!(
                            "{what} {} ({timings}, still streaming)",
                            human::duration(figure)
                        ),
                        Some(figure.as_secs_f64()),
                        false,
                        format!(
                            "GET {path} was still streaming after {} with no silence over {}; \
                             the {lb_name} {setting} ({}) counts only silences",
                            human::duration(total),
                            human::duration(figure),
                            human::duration(timeout)
                        ),
                        None,
                    )
                } else {
                    // Only --max-wait can end the wait this early: nothing was slow yet, but
                    // the wait was too short to say the app is fast enough.
                    check(
                        Verdict::NotMeasured,
                        format!("{what} at least {} ({timings})", human::duration(figure)),
                        Some(figure.as_secs_f64()),
                        true,
                        format!(
                            "GET {path} {what} at least {} ({timings}); --max-wait ended the wait \
                             before half the {lb_name} {setting} ({}), so whether it answers in \
                             time is not measured. To decide it: {}",
                            human::duration(figure),
                            human::duration(half),
                            deciding_command(self.opts)
                        ),
                        None,
                    )
                }
            }
            Err(f) => {
                let what = describe(&f, ex.got_head, total, total);
                check(
                    Verdict::Risk,
                    what.clone(),
                    None,
                    false,
                    format!(
                        "GET {path} {what} → the {lb_name} answers {} for a response cut or garbled like this",
                        p.outcome(Reason::MalformedResponse).status
                    ),
                    Some(
                        "Check the app's logs: it closed or garbled the response, which the LB \
                         turns into a 502"
                            .to_string(),
                    ),
                )
            }
        }
    }
}
