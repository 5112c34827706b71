//! `lbsim triage`: read the load balancer's own logs and name the cause of every error it
//! made itself, with the fix and the bundled scenario that reproduces it.
//!
//! Input is what a user downloads: ALB access-log files (`.log` or `.log.gz`, S3's
//! layout), GCP load-balancer request logs exported from Cloud Logging (one JSON entry
//! per line, or one JSON array such as `gcloud logging read --format=json` prints), and
//! the ingress-nginx controller's access log in its default `log-format-upstream` (what
//! `kubectl logs` prints; the controller's error-log and klog lines mixed in are skipped).
//! The format is told apart per line (a JSON object is a GCP entry, `addr - user [time]
//! ...` an ingress-nginx line, anything else an ALB line), so one run can read all three;
//! gzip is recognised by its magic bytes, not its name.
//!
//! Causes come from the engine's own tables, not a second one: a GCP `statusDetails` word
//! is looked up among the profile's [`Outcome::log_word`](crate::lb::profile::Outcome)s, and
//! an ALB line goes through [`classify_alb`], a few documented rules over status, target
//! status, timings and `error_reason`, which end in a [`Reason`] whose status and word the
//! AWS profile holds; an ingress-nginx line goes through [`classify_nginx`], which reads
//! `$status` against the tries nginx lists (`$upstream_status`, lengths and times). What
//! the app answered itself (a target status on an ALB line, `response_sent_by_backend` on
//! GCP, an ingress-nginx status that is the last try's own) is never blamed on the load
//! balancer: its 5xx are listed apart, as "answered by the app".
//!
//! A line that does not parse is counted and named by file and line number; nothing in
//! the input can make triage panic.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;

use crate::lb::advice::{self, Detail};
use crate::lb::config::{Config, Settings};
use crate::lb::profile::{Cloud, Profile};
use crate::lb::reason::Reason;

/// Events of one cause closer together than this belong to one burst: a deploy or a
/// rolling update produces its errors within seconds of each other, while the background
/// keep-alive race is spread out.
pub const BURST_GAP: Duration = Duration::from_secs(60);
/// A burst needs at least this many events; two errors a few seconds apart are chance.
pub const BURST_MIN: usize = 3;
/// Bursts listed per cause, largest first.
const BURSTS_SHOWN: usize = 3;
/// Unparsed lines named in the report (all are counted).
const UNPARSED_SHOWN: usize = 10;

/// Flags of `lbsim triage`.
#[derive(Debug, clap::Args)]
pub struct TriageArgs {
    /// The cloud the logs come from. ALB lines are always read as AWS and ingress-nginx
    /// lines as ingress-nginx; GCP entries as the global external load balancer unless
    /// `gcp-classic` is given (their logs look alike, but the two generations answer some
    /// causes with other statuses and scenarios).
    #[arg(long, value_enum)]
    pub cloud: Option<Cloud>,
    /// Print the report as JSON, for tools.
    #[arg(long)]
    pub json: bool,
    /// Log files or folders (their `.log`, `.log.gz`, `.json`, `.jsonl` files); `-` reads
    /// standard input.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<String>,
}

// ---------------------------------------------------------------------------------------
// What one log entry says

/// Who answered one request, as its log entry shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The app answered (`status` is what the client got, if it got anything), or the
    /// request needed no answer from anyone to count as fine.
    App {
        /// Status sent to the client.
        status: Option<u16>,
    },
    /// The load balancer answered (or cut the request) itself.
    Lb(Cause),
}

/// One cause of LB-made answers, as triage groups them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    /// The load balancer that logged it.
    pub cloud: Cloud,
    /// Status sent to the client; `None` when nothing was sent (a client that left).
    pub status: Option<u16>,
    /// lbsim's cause, when lbsim models it; `None` for causes outside lbsim (Lambda,
    /// authentication, WAF, a status AWS documents that lbsim does not produce).
    pub reason: Option<Reason>,
    /// What in the log names the cause: the GCP `statusDetails` word, the ALB
    /// `error_reason`, or the ALB fields the rule read (`502, target_status -`).
    pub evidence: String,
}

// `Cloud` has no `Hash` (profile.rs is shared ground); its discriminant stands in.
impl std::hash::Hash for Cause {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        (self.cloud as u8).hash(h);
        self.status.hash(h);
        self.reason.hash(h);
        self.evidence.hash(h);
    }
}

/// One parsed log entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// When the response was sent (ALB `time`) or the request arrived (GCP
    /// `timestamp`), in microseconds since 1970; `None` if the entry has no usable time.
    pub time: Option<i64>,
    /// Arrival to finish in seconds (ALB `time` − `request_creation_time`, GCP `latency`).
    pub duration: Option<f64>,
    /// Who answered.
    pub verdict: Verdict,
}

// ---------------------------------------------------------------------------------------
// ALB lines

/// Splits an ALB access-log line into its fields: separated by spaces, a field that
/// starts with `"` runs to the next unescaped `"` (inside it, `\"` is a quote and `\\` a
/// backslash, the escapes AWS's own Athena table reads) and loses its quotes.
///
/// Errors on an unterminated quote; how many fields there are is the caller's business.
pub fn tokenize(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = line.trim_end_matches(['\r', '\n']).chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        let Some(&first) = chars.peek() else {
            return Ok(fields);
        };
        let mut field = String::new();
        if first == '"' {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => match chars.peek() {
                        Some(&n @ ('"' | '\\')) => {
                            field.push(n);
                            chars.next();
                        }
                        _ => field.push('\\'),
                    },
                    '"' => {
                        closed = true;
                        break;
                    }
                    _ => field.push(c),
                }
            }
            if !closed {
                return Err(format!(
                    "field {} opens a quote that never closes",
                    fields.len() + 1
                ));
            }
            // Text glued to the closing quote stays in the field rather than failing the line.
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                field.push(c);
                chars.next();
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                field.push(c);
                chars.next();
            }
        }
        fields.push(field);
    }
}

/// The fields of an ALB line that classification reads.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AlbFields {
    /// `elb_status_code`; `None` for `-`.
    pub elb_status: Option<u16>,
    /// `target_status_code`; `None` for `-` (no response came from a target).
    pub target_status: Option<u16>,
    /// `target:port` was not `-`: a target was chosen.
    pub has_target: bool,
    /// `request_processing_time`; `None` for `-1` (never dispatched to a target).
    pub request_processing: Option<f64>,
    /// `target_processing_time`; `None` for `-1` (no response head from the target).
    pub target_processing: Option<f64>,
    /// `error_reason` when not `-` (Lambda, authentication, WAF codes); older lines lack it.
    pub error_reason: Option<String>,
    /// `classification` when not `-` (desync mitigation: `Ambiguous`, `Severe`).
    pub classification: Option<String>,
}

/// Index of each ALB field used here, in the documented order (aws-alb.md, "Access log").
mod alb_field {
    pub(super) const TYPE: usize = 0;
    pub(super) const TIME: usize = 1;
    pub(super) const TARGET: usize = 4;
    pub(super) const REQUEST_PROCESSING: usize = 5;
    pub(super) const TARGET_PROCESSING: usize = 6;
    pub(super) const ELB_STATUS: usize = 8;
    pub(super) const TARGET_STATUS: usize = 9;
    pub(super) const REQUEST_CREATION_TIME: usize = 21;
    pub(super) const ERROR_REASON: usize = 24;
    pub(super) const CLASSIFICATION: usize = 27;
    /// Lines up to `target_status_code` carry all a cause needs; ALB lines have grown
    /// fields at the end over the years, so anything longer is fine too.
    pub(super) const MIN: usize = TARGET_STATUS + 1;
}

/// The `type` values AWS documents for ALB lines.
const ALB_TYPES: &[&str] = &["http", "https", "h2", "grpcs", "ws", "wss"];

fn status_field(s: &str, name: &str) -> Result<Option<u16>, String> {
    if s == "-" {
        return Ok(None);
    }
    match s.parse::<u16>() {
        Ok(v) if (100..1000).contains(&v) => Ok(Some(v)),
        _ => Err(format!("{name} `{s}` is not a status code")),
    }
}

fn timing_field(s: &str, name: &str) -> Result<Option<f64>, String> {
    match s.parse::<f64>() {
        Ok(v) if v < 0.0 => Ok(None),
        Ok(v) if v.is_finite() => Ok(Some(v)),
        _ => Err(format!("{name} `{s}` is not a time")),
    }
}

fn optional(fields: &[String], i: usize) -> Option<String> {
    fields
        .get(i)
        .filter(|s| !s.is_empty() && s.as_str() != "-")
        .cloned()
}

/// Parses one ALB access-log line.
pub fn parse_alb(line: &str) -> Result<Entry, String> {
    use alb_field::*;
    let f = tokenize(line)?;
    // The type first: a line of some other log says so better than by its field count.
    let kind = f.get(TYPE).map(String::as_str).unwrap_or_default();
    if !ALB_TYPES.contains(&kind) {
        return Err(format!("`{kind}` is not an ALB request type"));
    }
    if f.len() < MIN {
        return Err(format!(
            "{} fields; an ALB line has at least {MIN}",
            f.len()
        ));
    }
    let time =
        parse_rfc3339(&f[TIME]).ok_or_else(|| format!("time `{}` is not a time", f[TIME]))?;
    let fields = AlbFields {
        elb_status: status_field(&f[ELB_STATUS], "elb_status_code")?,
        target_status: status_field(&f[TARGET_STATUS], "target_status_code")?,
        has_target: f[TARGET] != "-",
        request_processing: timing_field(&f[REQUEST_PROCESSING], "request_processing_time")?,
        target_processing: timing_field(&f[TARGET_PROCESSING], "target_processing_time")?,
        error_reason: optional(&f, ERROR_REASON),
        classification: optional(&f, CLASSIFICATION),
    };
    let duration = f
        .get(REQUEST_CREATION_TIME)
        .and_then(|s| parse_rfc3339(s))
        .map(|created| (time - created).max(0) as f64 / 1e6);
    Ok(Entry {
        time: Some(time),
        duration,
        verdict: classify_alb(&fields),
    })
}

/// Who answered an ALB request, from its log fields.
///
/// The rules, each from AWS's "Troubleshoot your Application Load Balancers" guide (its
/// HTTP 4xx/5xx sections) and "Access logs" field descriptions, as collected in
/// `shared/reference/aws-alb.md`:
///
/// 1. A target status code means a target answered: the client got the app's answer,
///    a 500 or 503 included. Only a 502 *with* a target status is the ALB's: it rejected
///    the target's response ("The target response is malformed or contains HTTP headers
///    that are not valid"; "The target response header exceeded 32 K").
/// 2. An `error_reason` (Lambda, authentication, WAF, weighted target groups) names a
///    cause lbsim does not model; it is reported under that word.
/// 3. No target status, status 502: "The target closed the connection with a TCP RST or a
///    TCP FIN while the load balancer had an outstanding request to the target" — when the
///    connection had been idle this is the keep-alive race (the app's keep-alive shorter
///    than the ALB's idle timeout). The log cannot show the idle gap, nor tell a refused
///    connect (all timings `-1` as well), so this is reported as "target closed the
///    connection (most often the keep-alive race)" and counted as [`Reason::KeepAliveRace`].
/// 4. No target status, 504: "The load balancer established a connection to the target but
///    the target did not respond before the idle timeout period elapsed" when the request
///    was dispatched (`request_processing_time` is not `-1`, `target_processing_time` is);
///    "The load balancer failed to establish a connection to the target before the
///    connection timeout expired (10 seconds)" when it never was (all `-1`).
/// 5. No target status, 503: "The target groups for the load balancer have no registered
///    targets" (the ALB fails open, so unhealthy targets alone never give a 503).
/// 6. Client-side statuses: 460 "the client closed the connection ... before the idle
///    timeout", 463 more than 30 `X-Forwarded-For` addresses, 408 the client sent no data
///    in time, 405 `TRACE`, 501 an unsupported `Transfer-Encoding`, 400 a malformed request
///    (or one the desync mitigation blocked, when `classification` is filled).
/// 7. Any other status without a target status is the ALB's own answer to a cause lbsim
///    does not model (414, 505, 561, ...); a status below 400 is fine.
pub fn classify_alb(f: &AlbFields) -> Verdict {
    let status = f.elb_status;
    let lb = |reason: Option<Reason>, evidence: String| {
        Verdict::Lb(Cause {
            cloud: Cloud::Aws,
            status,
            reason,
            evidence,
        })
    };
    if let Some(target) = f.target_status {
        if status == Some(502) && target != 502 {
            return lb(
                Some(Reason::MalformedResponse),
                format!("502, target_status {target}"),
            );
        }
        return Verdict::App { status };
    }
    if let Some(word) = &f.error_reason {
        return lb(None, word.clone());
    }
    let Some(code) = status else {
        // Nothing sent and nothing said: not an error lbsim can name.
        return Verdict::App { status };
    };
    let timing = |t: Option<f64>| t.map_or("-1".to_string(), |v| format!("{v:.3}"));
    let reason = match code {
        502 => Some(Reason::KeepAliveRace),
        504 if f.request_processing.is_some() => Some(Reason::TargetTimeout),
        504 => Some(Reason::ConnectTimeout),
        503 => Some(Reason::NoRegisteredTargets),
        460 => Some(Reason::ClientClosed),
        463 => Some(Reason::TooManyForwardedFor),
        464 => Some(Reason::IncompatibleProtocol),
        408 => Some(Reason::ClientTimeout),
        405 => Some(Reason::MethodNotAllowed),
        501 => Some(Reason::UnsupportedTransferEncoding),
        400 if f.classification.is_some() => Some(Reason::DesyncBlocked),
        400 => Some(Reason::MalformedRequest),
        c if c < 400 => return Verdict::App { status },
        _ => None,
    };
    let evidence = match reason {
        Some(Reason::TargetTimeout | Reason::ConnectTimeout) => format!(
            "{code}, target_status -, request_processing_time {}, target_processing_time {}",
            timing(f.request_processing),
            timing(f.target_processing)
        ),
        Some(Reason::KeepAliveRace) => format!(
            "{code}, target_status -, target_processing_time {}",
            timing(f.target_processing)
        ),
        Some(Reason::DesyncBlocked) => format!(
            "{code}, classification {}",
            f.classification.as_deref().unwrap_or("-")
        ),
        _ if f.has_target => format!("{code}, target_status -"),
        _ => format!("{code}, no target"),
    };
    lb(reason, evidence)
}

// ---------------------------------------------------------------------------------------
// GCP entries

/// `statusDetails` words that mean the backend itself answered (Google's table, gcp-lb.md).
const GCP_BACKEND_ANSWERED: &[&str] = &[
    "response_sent_by_backend",
    "backend_early_response_with_non_error_status",
];

/// When one `statusDetails` word stands for several of lbsim's causes, the one production
/// logs are most often about: a closed connection before any byte is the keep-alive race
/// far more often than a crash; `failed_to_pick_backend` is usually unhealthy backends,
/// `failed_to_connect_to_backend` a refused connect.
const GCP_PREFERRED: &[Reason] = &[
    Reason::KeepAliveRace,
    Reason::NoHealthyTargets,
    Reason::ConnectRefused,
];

/// The lbsim cause whose request-log word on `cloud`'s profile is `word`.
pub fn reason_for_log_word(cloud: Cloud, word: &str) -> Option<Reason> {
    let profile = Profile::of(cloud);
    let matches: Vec<Reason> = Reason::ALL
        .into_iter()
        .filter(|&r| profile.outcome(r).log_word == word)
        .collect();
    matches
        .iter()
        .copied()
        .find(|r| GCP_PREFERRED.contains(r))
        .or_else(|| matches.first().copied())
}

/// Who answered a GCP request, from its status and `statusDetails`.
pub fn classify_gcp(cloud: Cloud, status: Option<u16>, details: Option<&str>) -> Verdict {
    let lb = |reason: Option<Reason>, evidence: &str| {
        Verdict::Lb(Cause {
            cloud,
            status,
            reason,
            evidence: evidence.to_string(),
        })
    };
    match details {
        Some(word) if GCP_BACKEND_ANSWERED.contains(&word) => Verdict::App { status },
        Some(word) => match reason_for_log_word(cloud, word) {
            Some(reason) => lb(Some(reason), word),
            // Words lbsim does not model (Cloud Armor, cache, TLS...): the LB's when it
            // answered with an error, else nothing to report.
            None if status.is_some_and(|s| s >= 400) => lb(None, word),
            None => Verdict::App { status },
        },
        None if status.is_some_and(|s| s >= 500) => lb(None, "(no statusDetails)"),
        None => Verdict::App { status },
    }
}

fn json_u16(v: Option<&Value>) -> Option<u16> {
    match v? {
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// `"0.058927s"` (Cloud Logging's Duration) to seconds.
fn json_latency(v: Option<&Value>) -> Option<f64> {
    match v? {
        Value::String(s) => s
            .strip_suffix('s')?
            .parse()
            .ok()
            .filter(|x: &f64| x.is_finite()),
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

/// Parses one Cloud Logging entry of a GCP load balancer request log.
pub fn parse_gcp(entry: &Value, cloud: Cloud) -> Result<Entry, String> {
    let Some(obj) = entry.as_object() else {
        return Err("not a JSON object".to_string());
    };
    let http = obj.get("httpRequest");
    let details = obj
        .get("jsonPayload")
        .and_then(|p| p.get("statusDetails"))
        .and_then(Value::as_str);
    if http.is_none() && details.is_none() {
        return Err("a JSON entry without httpRequest or jsonPayload.statusDetails".to_string());
    }
    let status = json_u16(http.and_then(|h| h.get("status")));
    let time = obj
        .get("timestamp")
        .and_then(Value::as_str)
        .and_then(parse_rfc3339);
    Ok(Entry {
        time,
        duration: json_latency(http.and_then(|h| h.get("latency"))),
        verdict: classify_gcp(cloud, status, details),
    })
}

// ---------------------------------------------------------------------------------------
// ingress-nginx lines

/// One try at an endpoint, as an ingress-nginx line lists it: the n-th value of each of
/// `$upstream_addr`, `$upstream_response_length`, `$upstream_response_time` and
/// `$upstream_status`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NginxTry {
    /// The endpoint (`ip:port`); `None` for `-`.
    pub addr: Option<String>,
    /// Response body bytes read from it; `None` for `-`.
    pub length: Option<u64>,
    /// Seconds the try took; `None` for `-`.
    pub time: Option<f64>,
    /// Its status: the endpoint's, or the one nginx gave a failed try (504 for a timeout,
    /// 502 for an error); `None` for `-`.
    pub status: Option<u16>,
}

/// The fields of an ingress-nginx line that classification reads.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NginxFields {
    /// `$status`; `None` for `000` (nothing sent).
    pub status: Option<u16>,
    /// `$body_bytes_sent`.
    pub body_bytes: u64,
    /// The tries of the request's own upstream, in order: the values before any ` : `
    /// (an internal redirect, such as a custom error page, starts another group, which is
    /// not the app's). Empty when nginx tried no endpoint (the four fields are `-`).
    pub tries: Vec<NginxTry>,
}

/// nginx's `proxy_connect_timeout` in ingress-nginx's default (proxy-connect-timeout 5):
/// a timed-out try that took this long most likely timed out connecting.
const NGINX_CONNECT_TIMEOUT_SECS: f64 = 5.0;

/// Reads a line's fields left to right.
struct Cursor<'a>(&'a str);

impl<'a> Cursor<'a> {
    fn skip_spaces(&mut self) {
        self.0 = self.0.trim_start_matches(' ');
    }

    /// The next space-separated word.
    fn word(&mut self, name: &str) -> Result<&'a str, String> {
        self.skip_spaces();
        let end = self.0.find(' ').unwrap_or(self.0.len());
        if end == 0 {
            return Err(format!("the line ends before {name}"));
        }
        let (w, rest) = self.0.split_at(end);
        self.0 = rest;
        Ok(w)
    }

    /// The text between `open` and `close` (nginx escapes `"` inside values as `\x22`, so
    /// the first `close` ends the field).
    fn enclosed(&mut self, open: char, close: char, name: &str) -> Result<&'a str, String> {
        self.skip_spaces();
        let rest = self
            .0
            .strip_prefix(open)
            .ok_or_else(|| format!("{name} does not start with `{open}`"))?;
        let end = rest
            .find(close)
            .ok_or_else(|| format!("{name} opens `{open}` and never closes it"))?;
        self.0 = &rest[end + close.len_utf8()..];
        Ok(&rest[..end])
    }

    fn at(&mut self, c: char) -> bool {
        self.skip_spaces();
        self.0.starts_with(c)
    }
}

/// Whether `line` has the shape of an ingress-nginx access-log line: `$remote_addr -
/// $remote_user [$time_local] ...`. ALB lines start with their type and a timestamp.
pub fn looks_like_nginx(line: &str) -> bool {
    let mut words = line.split(' ');
    let (_, dash, _, time) = (words.next(), words.next(), words.next(), words.next());
    dash == Some("-") && time.is_some_and(|t| t.starts_with('['))
}

/// Whether `line` is one of the controller's other lines that `kubectl logs` mixes in:
/// nginx's error log (`2024/03/12 10:15:01 [error] ...`) or the controller's own klog
/// lines (`W0312 10:15:01.123456 ...`). Not requests, so neither parsed nor unparsed.
pub fn is_controller_line(line: &str) -> bool {
    let b = line.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let error_log = digits(0..4)
        && b.get(4) == Some(&b'/')
        && digits(5..7)
        && b.get(7) == Some(&b'/')
        && line.get(19..21) == Some(" [");
    let klog = matches!(b.first(), Some(b'I' | b'W' | b'E' | b'F'))
        && digits(1..5)
        && b.get(5) == Some(&b' ')
        && digits(6..8)
        && b.get(8) == Some(&b':');
    error_log || klog
}

/// `08/Mar/2023:16:02:45 +0000` (nginx's `$time_local`) to microseconds since 1970.
pub fn parse_time_local(s: &str) -> Option<i64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let b = s.as_bytes();
    if b.len() != 26 || b[2] != b'/' || b[6] != b'/' || b[11] != b':' || b[20] != b' ' {
        return None;
    }
    let d = num(0..2)?;
    let mo = MONTHS.iter().position(|m| s.get(3..6) == Some(*m))? as i64 + 1;
    let y = num(7..11)?;
    let (h, mi, sec) = (num(12..14)?, num(15..17)?, num(18..20)?);
    if !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let sign = match b[21] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let offset = sign * (num(22..24)? * 3600 + num(24..26)? * 60);
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset;
    Some(secs * 1_000_000)
}

/// The upstream lists after `[$proxy_alternative_upstream_name]`: each list's values in
/// groups (`, ` between tries, ` : ` between groups), then whatever single words follow
/// (`$req_id`).
fn nginx_lists(rest: &str) -> Vec<Vec<Vec<&str>>> {
    let mut words = rest.split(' ').filter(|w| !w.is_empty()).peekable();
    let mut lists = Vec::new();
    while let Some(first) = words.next() {
        let mut groups = vec![Vec::new()];
        let mut word = first;
        loop {
            let value = word.strip_suffix(',');
            if let Some(group) = groups.last_mut() {
                group.push(value.unwrap_or(word));
            }
            if value.is_some() {
                match words.next() {
                    Some(next) => word = next,
                    None => break,
                }
            } else if words.peek() == Some(&":") {
                words.next();
                groups.push(Vec::new());
                match words.next() {
                    Some(next) => word = next,
                    None => break,
                }
            } else {
                break;
            }
        }
        lists.push(groups);
    }
    lists
}

fn dash_or<T>(s: &str, name: &str, parse: impl Fn(&str) -> Option<T>) -> Result<Option<T>, String> {
    if s == "-" {
        return Ok(None);
    }
    parse(s)
        .map(Some)
        .ok_or_else(|| format!("{name} `{s}` is not what nginx writes there"))
}

/// Parses one ingress-nginx access-log line in the controller's default
/// `log-format-upstream` ([`crate::lb::accesslog::NGINX_LOG_FORMAT`]); lines of older
/// controllers, without `[$proxy_alternative_upstream_name]` or `$req_id`, parse too.
pub fn parse_nginx(line: &str) -> Result<Entry, String> {
    let mut c = Cursor(line.trim_end_matches(['\r', '\n']));
    c.word("$remote_addr")?;
    if c.word("`-`")? != "-" {
        return Err("the second field is not `-`".to_string());
    }
    c.word("$remote_user")?;
    let time_local = c.enclosed('[', ']', "$time_local")?;
    let time = parse_time_local(time_local)
        .ok_or_else(|| format!("$time_local `{time_local}` is not a time"))?;
    c.enclosed('"', '"', "$request")?;
    let status = c.word("$status")?;
    let status = match status {
        "000" => None,
        s => status_field(s, "$status")?,
    };
    let body_bytes = c.word("$body_bytes_sent")?;
    let body_bytes = body_bytes
        .parse()
        .map_err(|_| format!("$body_bytes_sent `{body_bytes}` is not a number"))?;
    c.enclosed('"', '"', "$http_referer")?;
    c.enclosed('"', '"', "$http_user_agent")?;
    c.word("$request_length")?;
    let request_time = c.word("$request_time")?;
    let duration = timing_field(request_time, "$request_time")?;
    c.enclosed('[', ']', "$proxy_upstream_name")?;
    if c.at('[') {
        c.enclosed('[', ']', "$proxy_alternative_upstream_name")?;
    }
    let lists = nginx_lists(c.0);
    if lists.len() < 4 {
        return Err(format!(
            "{} upstream fields; an ingress-nginx line has four ($upstream_addr, \
             $upstream_response_length, $upstream_response_time, $upstream_status)",
            lists.len()
        ));
    }
    // The request's own upstream: the first group of each list.
    let first = |i: usize| lists[i].first().map(Vec::as_slice).unwrap_or_default();
    let (addrs, lengths, times, statuses) = (first(0), first(1), first(2), first(3));
    let no_try = |v: &[&str]| v == ["-"];
    let tries = if [addrs, lengths, times, statuses].iter().all(|v| no_try(v)) {
        Vec::new()
    } else {
        let n = statuses.len();
        if [addrs.len(), lengths.len(), times.len()] != [n, n, n] {
            return Err(format!(
                "the upstream fields list {}, {}, {} and {} tries",
                addrs.len(),
                lengths.len(),
                times.len(),
                n
            ));
        }
        (0..n)
            .map(|i| {
                Ok(NginxTry {
                    addr: (addrs[i] != "-").then(|| addrs[i].to_string()),
                    length: dash_or(lengths[i], "$upstream_response_length", |s| s.parse().ok())?,
                    time: dash_or(times[i], "$upstream_response_time", |s| {
                        s.parse().ok().filter(|t: &f64| t.is_finite() && *t >= 0.0)
                    })?,
                    status: dash_or(statuses[i], "$upstream_status", |s| {
                        s.parse().ok().filter(|v| (100..1000).contains(v))
                    })?,
                })
            })
            .collect::<Result<Vec<_>, String>>()?
    };
    let fields = NginxFields {
        status,
        body_bytes,
        tries,
    };
    Ok(Entry {
        time: Some(time),
        duration,
        verdict: classify_nginx(&fields),
    })
}

/// A try whose status nginx gave it itself: a timeout (504) or an error (502) leaves the
/// status nginx assigned and no response body (ngx_http_upstream_next). An app's own 502
/// or 504 with an empty body reads the same; one with a body does not.
fn nginx_made(t: &NginxTry) -> bool {
    matches!(t.status, Some(502 | 504)) && t.length.unwrap_or(0) == 0
}

/// Who answered an ingress-nginx request, from its status and the tries its line lists.
///
/// The rules, from nginx's source and documentation (`ngx_http_upstream_next`, the
/// upstream module's variables) and the controller's Lua balancer:
///
/// 1. No try (`-` in the four upstream fields): nginx answered before reaching any
///    endpoint. 503 is the controller's "no endpoint" (the balancer finds no ready
///    endpoint for the Service and answers in the rewrite phase); 499 a client that left;
///    400, 408, 405, 501, 414 and 494 nginx's rejections of the request itself.
/// 2. The last try's status is `$status` and came from the app (not a 502/504 without a
///    body): the app's answer, a 500 or 503 included. Earlier tries that failed (`502,
///    200`: nginx sent a GET again after a dead keep-alive connection) do not change that.
/// 3. `$status` 504 and the last try 504 with no body: a timeout. When every timed-out try
///    took about 5 s, the default proxy-connect-timeout, it was the connect that timed
///    out; otherwise proxy-read-timeout (the app sent nothing in time), retried on each
///    try by `proxy_next_upstream timeout`.
/// 4. `$status` 502 and the last try 502 with no body: an error on the connection. One
///    try: most often the keep-alive mismatch (the app closed an idle connection nginx
///    reused; a GET is sent again on a new one without using a try, so it is a POST that
///    shows it). Several tries all failing: the app refused or closed every connection.
/// 5. 499 with tries: the client left while the app was working.
/// 6. Anything else at 400 or more that nginx sent instead of the app's status is nginx's
///    own, under a cause lbsim does not model.
pub fn classify_nginx(f: &NginxFields) -> Verdict {
    let status = f.status;
    let lb = |reason: Option<Reason>, evidence: String| {
        Verdict::Lb(Cause {
            cloud: Cloud::IngressNginx,
            status,
            reason,
            evidence,
        })
    };
    let Some(code) = status else {
        return Verdict::App { status };
    };
    let Some(last) = f.tries.last() else {
        let reason = match code {
            c if c < 400 => return Verdict::App { status },
            503 => Some(Reason::NoHealthyTargets),
            499 => Some(Reason::ClientClosed),
            400 => Some(Reason::MalformedRequest),
            408 => Some(Reason::ClientTimeout),
            405 => Some(Reason::MethodNotAllowed),
            501 => Some(Reason::UnsupportedTransferEncoding),
            414 | 494 => Some(Reason::RequestTooLarge),
            _ => None,
        };
        return lb(reason, format!("{code}, upstream_status -"));
    };
    if code == 499 {
        return lb(
            Some(Reason::ClientClosed),
            "499, after reaching the app".to_string(),
        );
    }
    let show = |s: Option<u16>| s.map_or("-".to_string(), |s| s.to_string());
    if last.status != Some(code) {
        return if code < 400 {
            Verdict::App { status }
        } else {
            lb(
                None,
                format!("{code}, last upstream_status {}", show(last.status)),
            )
        };
    }
    if !nginx_made(last) {
        return Verdict::App { status };
    }
    // The tries that ended as this one did, and how the list reads.
    let every = f.tries.iter().all(|t| t.status == last.status);
    let pattern = match (f.tries.len(), every) {
        (1, _) => format!("upstream_status {code}"),
        (_, true) => format!("upstream_status {code} on every try"),
        (_, false) => format!("upstream_status ending in {code}"),
    };
    match code {
        504 => {
            let timed_out: Vec<&NginxTry> =
                f.tries.iter().filter(|t| t.status == Some(504)).collect();
            let connecting = timed_out.iter().all(|t| {
                t.time
                    .is_some_and(|s| (s - NGINX_CONNECT_TIMEOUT_SECS).abs() < 0.05)
            });
            if connecting {
                lb(
                    Some(Reason::ConnectTimeout),
                    format!("504, {pattern}, each after ~5 s (proxy-connect-timeout)"),
                )
            } else {
                lb(Some(Reason::TargetTimeout), format!("504, {pattern}"))
            }
        }
        _ if f.tries.len() == 1 => lb(
            Some(Reason::KeepAliveRace),
            format!("502, {pattern}, upstream_response_length 0"),
        ),
        _ => lb(
            Some(Reason::TargetClosedConnection),
            format!("502, {pattern}"),
        ),
    }
}

// ---------------------------------------------------------------------------------------
// Time

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2024-05-01T12:34:56.123456789Z` (or with a `+hh:mm` offset) to microseconds since
/// 1970; `None` for anything else.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut micros = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            if i - start < 6 {
                micros = micros * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        for _ in (i - start)..6 {
            micros *= 10;
        }
    }
    let offset = match s.get(i..)? {
        "Z" | "z" => 0,
        rest if rest.len() == 6 && matches!(&rest[..1], "+" | "-") && &rest[3..4] == ":" => {
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60)
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset;
    Some(secs * 1_000_000 + micros)
}

fn show_time(micros: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_micros(micros.max(0) as u64);
    crate::lb::accesslog::rfc3339_micros(t)
}

// ---------------------------------------------------------------------------------------
// Reading files

/// Where an entry that did not parse is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Location {
    /// The file (`-` for standard input).
    pub file: String,
    /// Line number, from 1; for a JSON array, the entry's number in it instead.
    pub line: usize,
    /// Whether `line` counts entries of a JSON array rather than lines.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub array_entry: bool,
    /// Why it did not parse.
    pub why: String,
}

/// One LB-made answer as the summary needs it: its time (µs since 1970) and duration (s),
/// each when the entry has it.
pub type Seen = (Option<i64>, Option<f64>);

/// Everything read, before it is summarised.
#[derive(Debug, Default)]
pub struct Tally {
    /// Files read (in order).
    pub files: Vec<String>,
    /// Parsed entries: one per request.
    pub requests: u64,
    /// Entries read as ALB lines.
    pub alb_entries: u64,
    /// Entries read as GCP JSON.
    pub gcp_entries: u64,
    /// Entries read as ingress-nginx lines.
    pub nginx_entries: u64,
    /// The ingress-nginx controller's other lines (error log, klog) skipped.
    pub skipped: u64,
    /// LB-made answers by cause: the time (when known) and duration of each.
    pub causes: HashMap<Cause, Vec<Seen>>,
    /// The app's own 5xx by status: their times.
    pub app_5xx: BTreeMap<u16, Vec<Option<i64>>>,
    /// Entries that did not parse (all counted, the first ten kept).
    pub unparsed: Vec<Location>,
    /// How many entries did not parse.
    pub unparsed_count: u64,
    /// Files (or folders) that could not be read, with the error.
    pub read_errors: Vec<String>,
}

impl Tally {
    fn add(&mut self, e: Entry) {
        self.requests += 1;
        match e.verdict {
            Verdict::Lb(cause) => self
                .causes
                .entry(cause)
                .or_default()
                .push((e.time, e.duration)),
            Verdict::App {
                status: Some(s @ 500..=599),
            } => self.app_5xx.entry(s).or_default().push(e.time),
            Verdict::App { .. } => {}
        }
    }

    fn bad(&mut self, file: &str, line: usize, array_entry: bool, why: String) {
        self.unparsed_count += 1;
        if self.unparsed.len() < UNPARSED_SHOWN {
            self.unparsed.push(Location {
                file: file.to_string(),
                line,
                array_entry,
                why,
            });
        }
    }

    /// Reads one file's text: a JSON array, or one entry per line.
    pub fn read_text(&mut self, file: &str, text: &str, cloud: Cloud) {
        self.files.push(file.to_string());
        if text.trim_start().starts_with('[') {
            match serde_json::from_str::<Vec<Value>>(text) {
                Ok(entries) => {
                    for (i, v) in entries.iter().enumerate() {
                        match parse_gcp(v, cloud) {
                            Ok(e) => {
                                self.gcp_entries += 1;
                                self.add(e);
                            }
                            Err(why) => self.bad(file, i + 1, true, why),
                        }
                    }
                }
                Err(e) => self.bad(file, e.line(), false, format!("not a JSON array: {e}")),
            }
            return;
        }
        for (i, line) in text.lines().enumerate() {
            let trimmed = line.trim();
            if trimmed.is_empty() {
                continue;
            }
            let parsed = if trimmed.starts_with('{') {
                serde_json::from_str::<Value>(trimmed)
                    .map_err(|e| format!("not JSON: {e}"))
                    .and_then(|v| parse_gcp(&v, cloud))
                    .inspect(|_| self.gcp_entries += 1)
            } else if looks_like_nginx(trimmed) {
                parse_nginx(trimmed).inspect(|_| self.nginx_entries += 1)
            } else if is_controller_line(trimmed) {
                self.skipped += 1;
                continue;
            } else {
                parse_alb(trimmed).inspect(|_| self.alb_entries += 1)
            };
            match parsed {
                Ok(e) => self.add(e),
                Err(why) => self.bad(file, i + 1, false, why),
            }
        }
    }

    /// Reads `path`: `-` for standard input, a folder's log files (sorted by name, not
    /// recursive: S3's date folders are one level each, so a user points at the day), or
    /// one file, gzipped or not.
    pub fn read_path(&mut self, path: &str, cloud: Cloud) {
        if path == "-" {
            let mut raw = Vec::new();
            match std::io::stdin().lock().read_to_end(&mut raw) {
                Ok(_) => self.read_bytes("-", raw, cloud),
                Err(e) => self.read_errors.push(format!("-: {e}")),
            }
            return;
        }
        let p = Path::new(path);
        if p.is_dir() {
            let mut files: Vec<PathBuf> = match std::fs::read_dir(p) {
                Ok(dir) => dir
                    .filter_map(|d| d.ok().map(|d| d.path()))
                    .filter(|f| f.is_file() && is_log_name(f))
                    .collect(),
                Err(e) => {
                    self.read_errors.push(format!("{path}: {e}"));
                    return;
                }
            };
            files.sort();
            if files.is_empty() {
                self.read_errors.push(format!(
                    "{path}: no .log, .log.gz, .json or .jsonl file in this folder"
                ));
            }
            for f in files {
                self.read_file(&f.display().to_string(), &f, cloud);
            }
        } else {
            self.read_file(path, p, cloud);
        }
    }

    fn read_file(&mut self, name: &str, p: &Path, cloud: Cloud) {
        match std::fs::read(p) {
            Ok(raw) => self.read_bytes(name, raw, cloud),
            Err(e) => self.read_errors.push(format!("{name}: {e}")),
        }
    }

    fn read_bytes(&mut self, name: &str, raw: Vec<u8>, cloud: Cloud) {
        // gzip's magic bytes, whatever the file is called (S3 keeps `.log.gz`; a user's
        // download may not).
        let raw = if raw.starts_with(&[0x1f, 0x8b]) {
            let mut out = Vec::new();
            // MultiGzDecoder: concatenated gzip members (`cat a.gz b.gz`) are one stream.
            match flate2::read::MultiGzDecoder::new(raw.as_slice()).read_to_end(&mut out) {
                Ok(_) => out,
                Err(e) => {
                    // Keep what decompressed before the damage: those lines are good.
                    self.read_errors.push(format!(
                        "{name}: gzip data is damaged ({e}); read what came before"
                    ));
                    out
                }
            }
        } else {
            raw
        };
        // Odd bytes in a user agent must not cost the whole file.
        let text = String::from_utf8_lossy(&raw);
        self.read_text(name, &text, cloud);
    }
}

fn is_log_name(p: &Path) -> bool {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    [
        ".log",
        ".log.gz",
        ".json",
        ".jsonl",
        ".json.gz",
        ".jsonl.gz",
    ]
    .iter()
    .any(|ext| name.ends_with(ext))
}

// ---------------------------------------------------------------------------------------
// The report

/// A run of events of one cause with gaps under [`BURST_GAP`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Burst {
    /// First event (RFC 3339).
    pub start: String,
    /// Last event.
    pub end: String,
    /// Events in it.
    pub count: usize,
}

/// One cause in the report.
#[derive(Clone, Debug, Serialize)]
pub struct CauseReport {
    /// Which load balancer.
    pub cloud: Cloud,
    /// Status sent to the client (`null`: nothing was sent).
    pub status: Option<u16>,
    /// lbsim's cause word (its `x-lbsim-reason`), `null` for causes lbsim does not model.
    pub lbsim: Option<&'static str>,
    /// The cloud's word for it (`statusDetails`, `error_reason`) or the fields that show it.
    pub log: String,
    /// The cause in words.
    pub cause: String,
    /// Entries with this cause.
    pub count: usize,
    /// `count` over all parsed requests, 0 to 1.
    pub share: f64,
    /// First and last time seen (RFC 3339), when entries have times.
    pub first: Option<String>,
    /// Last time seen.
    pub last: Option<String>,
    /// Median arrival-to-finish time in seconds (a timeout shows its value here).
    pub median_seconds: Option<f64>,
    /// The largest bursts, largest first.
    pub bursts: Vec<Burst>,
    /// What to change.
    pub fix: String,
    /// The bundled scenario that reproduces it.
    pub scenario: Option<&'static str>,
}

/// The app's own 5xx of one status.
#[derive(Clone, Debug, Serialize)]
pub struct AppReport {
    /// The status the app sent.
    pub status: u16,
    /// How many.
    pub count: usize,
    /// Share of all parsed requests.
    pub share: f64,
    /// First time seen.
    pub first: Option<String>,
    /// Last time seen.
    pub last: Option<String>,
}

/// What `lbsim triage` prints (as text, or as JSON with `--json`).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Files read.
    pub files: Vec<String>,
    /// Parsed entries (requests).
    pub requests: u64,
    /// Of them, ALB lines.
    pub alb_entries: u64,
    /// Of them, GCP entries.
    pub gcp_entries: u64,
    /// Of them, ingress-nginx lines.
    pub nginx_entries: u64,
    /// The ingress-nginx controller's error-log and klog lines, skipped (not requests).
    pub skipped: u64,
    /// Entries the load balancer answered itself.
    pub lb_errors: usize,
    /// The LB's answers by cause, most frequent first.
    pub causes: Vec<CauseReport>,
    /// The app's own 5xx by status ("answered by the app").
    pub app_5xx: Vec<AppReport>,
    /// Entries that did not parse.
    pub unparsed: usize,
    /// The first of them, by file and line.
    pub unparsed_at: Vec<Location>,
    /// Files that could not be read.
    pub read_errors: Vec<String>,
}

/// The bundled scenario that reproduces `reason` on `cloud`, if one does.
pub fn scenario_for(cloud: Cloud, reason: Reason) -> Option<&'static str> {
    use Reason::*;
    Some(match (cloud, reason) {
        (Cloud::Aws, KeepAliveRace | TargetClosedConnection) => "aws-502-keepalive",
        (Cloud::Aws, ConnectRefused) => "aws-502-connection-refused",
        (Cloud::Aws, TargetTimeout) => "aws-504-slow-app",
        (Cloud::Aws, NoRegisteredTargets) => "aws-503-no-targets",
        (Cloud::Aws, NoHealthyTargets) => "aws-unhealthy-fails-open",
        (Cloud::Aws, DeregistrationDelayElapsed) => "aws-502-deregistration-cut",
        (Cloud::Gcp, KeepAliveRace | TargetClosedConnection) => "gcp-503-keepalive",
        (Cloud::GcpClassic, KeepAliveRace | TargetClosedConnection) => "gcp-502-keepalive",
        (Cloud::Gcp, NoHealthyTargets | NoRegisteredTargets) => "gcp-503-unhealthy",
        (Cloud::GcpClassic, NoHealthyTargets | NoRegisteredTargets) => "gcp-classic-502-unhealthy",
        (Cloud::Gcp, ConnectRefused) => "gcp-503-app-stopped",
        // The end-to-end timeout is the same timer on both generations.
        (Cloud::Gcp | Cloud::GcpClassic, TargetTimeout) => "gcp-504-slow-app",
        (Cloud::IngressNginx, TargetTimeout) => "ingress-nginx-504-slow-app",
        (Cloud::IngressNginx, KeepAliveRace) => "ingress-nginx-502-keepalive-post",
        _ => return None,
    })
}

/// The cause in words (the log cannot tell everything the engine knows).
fn describe(cloud: Cloud, reason: Reason) -> &'static str {
    let nginx = cloud == Cloud::IngressNginx;
    match reason {
        Reason::KeepAliveRace if nginx => {
            "the app closed the connection before answering (most often the keep-alive \
             mismatch: the app's keep-alive is shorter than nginx's upstream-keepalive-timeout)"
        }
        Reason::TargetTimeout if nginx => {
            "proxy-read-timeout: the app sent nothing in time, on every try"
        }
        Reason::ConnectTimeout if nginx => {
            "proxy-connect-timeout: connecting to the endpoint timed out, on every try"
        }
        Reason::TargetClosedConnection if nginx => {
            "every try failed: the endpoints refused or closed the connection (the app is \
             down, restarting or crashing; not the keep-alive mismatch, which nginx retries)"
        }
        Reason::NoHealthyTargets if nginx => {
            "no ready endpoint: the Service has no ready pod (or no pod at all)"
        }
        Reason::KeepAliveRace if cloud == Cloud::Aws => {
            "target closed the connection (most often the keep-alive race)"
        }
        Reason::KeepAliveRace => {
            "backend closed the connection before answering (most often the keep-alive race)"
        }
        Reason::TargetTimeout if cloud == Cloud::Aws => {
            "idle timeout: the target sent nothing in time"
        }
        Reason::TargetTimeout => "backend service timeout: the response did not finish in time",
        Reason::ConnectTimeout => "connect to the target timed out",
        Reason::ConnectRefused if cloud == Cloud::Aws => "target refused the connection",
        Reason::ConnectRefused => "connect to the backend failed (refused or timed out)",
        Reason::TargetClosedConnection => "target closed the connection before answering",
        Reason::TargetClosedMidBody => "backend closed the connection mid-response",
        Reason::MalformedResponse => "target's response was not valid HTTP",
        Reason::NoRegisteredTargets => "no registered targets",
        Reason::NoHealthyTargets => "no healthy backend",
        Reason::DeregistrationDelayElapsed => "deregistration delay ended mid-request",
        Reason::MalformedRequest => "malformed (or too large) request from the client",
        Reason::RequestTooLarge => "request headers too large",
        Reason::TooManyForwardedFor => "more than 30 X-Forwarded-For addresses",
        Reason::UnsupportedTransferEncoding => "unsupported Transfer-Encoding",
        Reason::MethodNotAllowed => "method refused by the load balancer (TRACE)",
        Reason::DesyncBlocked => "blocked by the desync mitigation",
        Reason::IncompatibleProtocol => {
            "request protocol not taken by the target group's protocol version"
        }
        Reason::UpgradeRefused => "protocol upgrade the load balancer does not relay",
        Reason::ClientTimeout => "client sent its request too slowly",
        Reason::ClientClosed => "client closed the connection before the answer",
    }
}

/// What to change for `reason`: the engine's own sentences, short where the engine's needs
/// facts a log does not have (how long a connection had been idle).
fn fix(config: Option<&Config>, reason: Reason) -> String {
    let Some(config) = config else {
        return String::new();
    };
    match reason {
        Reason::KeepAliveRace => format!(
            "{} (if the app crashed or restarted instead, its own logs say so)",
            advice::keep_alive_fix(config)
        ),
        Reason::ConnectTimeout if config.profile.cloud == Cloud::IngressNginx => {
            "a connect to a pod's address that times out means the pod is unreachable: gone \
             while its endpoint was still listed, a NetworkPolicy, a node that went down, or an \
             app whose listen backlog is full; check the endpoints and the app's readiness"
                .to_string()
        }
        Reason::NoHealthyTargets | Reason::NoRegisteredTargets
            if config.profile.cloud == Cloud::IngressNginx =>
        {
            "check that the Service's selector matches running pods and that their readiness \
             probe passes (`kubectl get endpointslices -l kubernetes.io/service-name=<service>`); \
             during a rollout keep enough ready replicas (maxUnavailable, a PodDisruptionBudget)"
                .to_string()
        }
        Reason::TargetTimeout => config.profile.timeout_fix.to_string(),
        Reason::ClientClosed => "clients gave up before the answer: raise the client's timeout \
                                 or make the app answer sooner"
            .to_string(),
        _ => advice::explain(
            config,
            reason,
            &Detail {
                target: Some("the target".to_string()),
                ..Detail::default()
            },
        ),
    }
}

/// Groups sorted times into runs with gaps under [`BURST_GAP`]; keeps runs of at least
/// [`BURST_MIN`], largest first (the earlier one first on a tie).
pub fn bursts(sorted: &[i64]) -> Vec<(i64, i64, usize)> {
    let gap = BURST_GAP.as_micros() as i64;
    let mut runs: Vec<(i64, i64, usize)> = Vec::new();
    for &t in sorted {
        match runs.last_mut() {
            Some((_, end, n)) if t - *end < gap => {
                *end = t;
                *n += 1;
            }
            _ => runs.push((t, t, 1)),
        }
    }
    runs.retain(|r| r.2 >= BURST_MIN);
    runs.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
    runs
}

fn share(n: usize, of: u64) -> f64 {
    if of == 0 {
        0.0
    } else {
        n as f64 / of as f64
    }
}

impl Tally {
    /// The summary of everything read.
    pub fn report(self) -> Report {
        // Default settings always build; a failure only costs the fix sentences.
        let configs: Vec<(Cloud, Option<Config>)> = [
            Cloud::Aws,
            Cloud::Gcp,
            Cloud::GcpClassic,
            Cloud::IngressNginx,
        ]
        .into_iter()
        .map(|c| (c, Config::build(&Settings::new(c)).ok()))
        .collect();
        let requests = self.requests;
        let mut causes: Vec<CauseReport> = self
            .causes
            .into_iter()
            .map(|(cause, events)| {
                let mut times: Vec<i64> = events.iter().filter_map(|e| e.0).collect();
                times.sort_unstable();
                let mut durations: Vec<f64> = events.iter().filter_map(|e| e.1).collect();
                durations.sort_by(f64::total_cmp);
                let config = configs
                    .iter()
                    .find(|(c, _)| *c == cause.cloud)
                    .and_then(|(_, config)| config.as_ref());
                let profile = Profile::of(cause.cloud);
                CauseReport {
                    cloud: cause.cloud,
                    status: cause.status,
                    lbsim: cause.reason.map(|r| profile.outcome(r).code),
                    cause: cause.reason.map_or_else(
                        || format!("{} (not modelled by lbsim)", cause.evidence),
                        |r| describe(cause.cloud, r).to_string(),
                    ),
                    log: cause.evidence,
                    count: events.len(),
                    share: share(events.len(), requests),
                    first: times.first().map(|&t| show_time(t)),
                    last: times.last().map(|&t| show_time(t)),
                    median_seconds: durations.get(durations.len() / 2).copied(),
                    bursts: bursts(&times)
                        .into_iter()
                        .take(BURSTS_SHOWN)
                        .map(|(s, e, count)| Burst {
                            start: show_time(s),
                            end: show_time(e),
                            count,
                        })
                        .collect(),
                    fix: cause.reason.map_or_else(
                        || "see the cloud's documentation for this code".to_string(),
                        |r| fix(config, r),
                    ),
                    scenario: cause.reason.and_then(|r| scenario_for(cause.cloud, r)),
                }
            })
            .collect();
        causes.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then(a.status.cmp(&b.status))
                .then(a.log.cmp(&b.log))
        });
        let app_5xx = self
            .app_5xx
            .into_iter()
            .map(|(status, times)| {
                let mut known: Vec<i64> = times.iter().filter_map(|t| *t).collect();
                known.sort_unstable();
                AppReport {
                    status,
                    count: times.len(),
                    share: share(times.len(), requests),
                    first: known.first().map(|&t| show_time(t)),
                    last: known.last().map(|&t| show_time(t)),
                }
            })
            .collect();
        Report {
            files: self.files,
            requests,
            alb_entries: self.alb_entries,
            gcp_entries: self.gcp_entries,
            nginx_entries: self.nginx_entries,
            skipped: self.skipped,
            lb_errors: causes.iter().map(|c| c.count).sum(),
            causes,
            app_5xx,
            unparsed: self.unparsed_count as usize,
            unparsed_at: self.unparsed,
            read_errors: self.read_errors,
        }
    }
}

fn percent(share: f64) -> String {
    let p = share * 100.0;
    if p > 0.0 && p < 0.01 {
        "<0.01 %".to_string()
    } else {
        format!("{p:.2} %")
    }
}

fn cloud_name(c: Cloud) -> &'static str {
    match c {
        Cloud::Aws => "aws",
        Cloud::Gcp => "gcp",
        Cloud::GcpClassic => "gcp-classic",
        Cloud::IngressNginx => "ingress-nginx",
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let apps: usize = self.app_5xx.iter().map(|a| a.count).sum();
        writeln!(
            f,
            "lbsim triage: {} requests in {} file(s) ({} ALB lines, {} GCP entries, {} \
             ingress-nginx lines): {} answered by the load balancer itself, {} 5xx answered by \
             the app; {} not parsed",
            self.requests,
            self.files.len(),
            self.alb_entries,
            self.gcp_entries,
            self.nginx_entries,
            self.lb_errors,
            apps,
            self.unparsed
        )?;
        if self.skipped > 0 {
            writeln!(
                f,
                "({} other ingress-nginx controller lines skipped: error log, klog)",
                self.skipped
            )?;
        }
        if !self.causes.is_empty() {
            writeln!(f, "\nAnswered by the load balancer:")?;
        }
        for c in &self.causes {
            let status = c.status.map_or("---".to_string(), |s| s.to_string());
            writeln!(f, "\n  {status} [{}] {}", cloud_name(c.cloud), c.cause)?;
            writeln!(
                f,
                "      lbsim: {} | log: {}",
                c.lbsim.unwrap_or("-"),
                c.log
            )?;
            write!(f, "      {} ({} of requests)", c.count, percent(c.share))?;
            if let (Some(first), Some(last)) = (&c.first, &c.last) {
                write!(f, ", first {first}, last {last}")?;
            }
            if let Some(m) = c.median_seconds {
                write!(f, ", median {m:.3} s")?;
            }
            writeln!(f)?;
            for b in &c.bursts {
                writeln!(f, "      burst: {} from {} to {}", b.count, b.start, b.end)?;
            }
            writeln!(f, "      fix: {}", c.fix)?;
            if let Some(s) = c.scenario {
                writeln!(f, "      reproduce: lbsim scenario run {s}")?;
            }
        }
        if !self.app_5xx.is_empty() {
            writeln!(
                f,
                "\nAnswered by the app (passed through, not the load balancer's):"
            )?;
            for a in &self.app_5xx {
                write!(
                    f,
                    "  {}  {} ({} of requests)",
                    a.status,
                    a.count,
                    percent(a.share)
                )?;
                if let (Some(first), Some(last)) = (&a.first, &a.last) {
                    write!(f, ", first {first}, last {last}")?;
                }
                writeln!(f)?;
            }
        }
        if self.unparsed > 0 {
            writeln!(f, "\nNot parsed: {} entries; the first:", self.unparsed)?;
            for l in &self.unparsed_at {
                let unit = if l.array_entry { "entry " } else { "" };
                writeln!(f, "  {}:{unit}{}: {}", l.file, l.line, l.why)?;
            }
        }
        for e in &self.read_errors {
            writeln!(f, "\nCould not read: {e}")?;
        }
        Ok(())
    }
}

/// Runs `lbsim triage`. Exit code 0 when every path could be read (whatever the logs
/// say), 1 when one could not.
pub fn run(args: TriageArgs) -> ExitCode {
    let gcp_cloud = match args.cloud {
        Some(Cloud::GcpClassic) => Cloud::GcpClassic,
        _ => Cloud::Gcp,
    };
    let mut tally = Tally::default();
    for path in &args.files {
        tally.read_path(path, gcp_cloud);
    }
    let report = tally.report();
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("lbsim triage: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        print!("{report}");
    }
    if report.read_errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::scenario::BUNDLED;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn tokenizer_splits_on_spaces_and_unquotes() {
        assert_eq!(
            tokenize(r#"http 2018 "GET http://x:80/ HTTP/1.1" "curl/7.46.0" - "-""#).unwrap(),
            s(&[
                "http",
                "2018",
                "GET http://x:80/ HTTP/1.1",
                "curl/7.46.0",
                "-",
                "-"
            ])
        );
    }

    #[test]
    fn tokenizer_reads_escaped_quotes_and_backslashes() {
        assert_eq!(
            tokenize(r#"a "say \"hi\" \\ there" b"#).unwrap(),
            s(&["a", r#"say "hi" \ there"#, "b"])
        );
        // A lone backslash stays as it is.
        assert_eq!(tokenize(r#""C:\dir""#).unwrap(), s(&[r"C:\dir"]));
        assert_eq!(tokenize(r#""""#).unwrap(), s(&[""]));
    }

    #[test]
    fn tokenizer_refuses_an_unterminated_quote_and_tolerates_odd_spacing() {
        assert!(tokenize(r#"a "never closed"#)
            .unwrap_err()
            .contains("field 2"));
        assert_eq!(tokenize("  a   b  \r\n").unwrap(), s(&["a", "b"]));
        assert_eq!(tokenize("").unwrap(), Vec::<String>::new());
    }

    const OLD_SHORT: &str = "h2 2016-08-10T00:10:33.145057Z app/my-loadbalancer/50dc6c495c0c9188 \
        10.0.1.252:48160 10.0.0.66:9000 0.000 0.002 0.000 200 200 5 257";

    #[test]
    fn short_and_long_alb_lines_parse() {
        let e = parse_alb(OLD_SHORT).unwrap();
        assert_eq!(e.verdict, Verdict::App { status: Some(200) });
        assert_eq!(e.duration, None);
        let long = format!(
            "{OLD_SHORT} \"GET / HTTP/1.1\" \"-\" - - - \"-\" \"-\" \"-\" 0 \
             2016-08-10T00:10:33.000000Z \"forward\" \"-\" \"-\" \"10.0.0.66:9000\" \"200\" \
             \"-\" \"-\" TID_1 \"new-field\" \"another\""
        );
        let e = parse_alb(&long).unwrap();
        assert_eq!(e.verdict, Verdict::App { status: Some(200) });
        let d = e.duration.unwrap();
        assert!((d - 0.145057).abs() < 1e-9, "{d}");
    }

    #[test]
    fn broken_alb_lines_say_why() {
        assert!(parse_alb("http 2018-07-02T22:23:00Z app/x")
            .unwrap_err()
            .contains("fields"));
        assert!(parse_alb(&OLD_SHORT.replace("h2 ", "tcp "))
            .unwrap_err()
            .contains("request type"));
        assert!(parse_alb(&OLD_SHORT.replace(" 200 200 ", " OK 200 "))
            .unwrap_err()
            .contains("elb_status_code"));
        assert!(parse_alb(&OLD_SHORT.replace("2016-08-10T", "yesterday"))
            .unwrap_err()
            .contains("time"));
    }

    fn alb(elb: u16, target: Option<u16>, rp: Option<f64>, tp: Option<f64>) -> AlbFields {
        AlbFields {
            elb_status: Some(elb),
            target_status: target,
            has_target: true,
            request_processing: rp,
            target_processing: tp,
            ..AlbFields::default()
        }
    }

    fn reason_of(v: Verdict) -> Option<Reason> {
        match v {
            Verdict::Lb(c) => c.reason,
            Verdict::App { .. } => panic!("expected an LB cause, got {v:?}"),
        }
    }

    #[test]
    fn alb_rule_a_target_status_is_the_apps_answer() {
        for status in [500, 503, 504, 200, 404] {
            assert_eq!(
                classify_alb(&alb(status, Some(status), Some(0.0), Some(1.0))),
                Verdict::App {
                    status: Some(status)
                }
            );
        }
        // The ALB refused what the target sent.
        assert_eq!(
            reason_of(classify_alb(&alb(502, Some(200), Some(0.0), Some(0.1)))),
            Some(Reason::MalformedResponse)
        );
    }

    #[test]
    fn alb_rule_502_without_a_response_is_the_target_closing() {
        let v = classify_alb(&alb(502, None, None, None));
        let Verdict::Lb(c) = v else { panic!() };
        assert_eq!(c.reason, Some(Reason::KeepAliveRace));
        assert_eq!(
            c.evidence,
            "502, target_status -, target_processing_time -1"
        );
        assert_eq!(
            describe(Cloud::Aws, Reason::KeepAliveRace),
            "target closed the connection (most often the keep-alive race)"
        );
        assert_eq!(aws_code(Reason::KeepAliveRace), "target_closed_connection");
    }

    fn aws_code(r: Reason) -> &'static str {
        Profile::of(Cloud::Aws).outcome(r).code
    }

    #[test]
    fn alb_rule_504_is_the_idle_timeout_when_dispatched_else_the_connect_timeout() {
        assert_eq!(
            reason_of(classify_alb(&alb(504, None, Some(0.001), None))),
            Some(Reason::TargetTimeout)
        );
        assert_eq!(aws_code(Reason::TargetTimeout), "target_idle_timeout");
        assert_eq!(
            reason_of(classify_alb(&alb(504, None, None, None))),
            Some(Reason::ConnectTimeout)
        );
    }

    #[test]
    fn alb_rule_503_without_a_target_is_no_registered_targets() {
        let mut f = alb(503, None, None, None);
        f.has_target = false;
        let Verdict::Lb(c) = classify_alb(&f) else {
            panic!()
        };
        assert_eq!(c.reason, Some(Reason::NoRegisteredTargets));
        assert_eq!(c.evidence, "503, no target");
    }

    #[test]
    fn alb_rule_client_side_statuses() {
        for (status, reason) in [
            (460, Reason::ClientClosed),
            (463, Reason::TooManyForwardedFor),
            (464, Reason::IncompatibleProtocol),
            (408, Reason::ClientTimeout),
            (405, Reason::MethodNotAllowed),
            (501, Reason::UnsupportedTransferEncoding),
            (400, Reason::MalformedRequest),
        ] {
            assert_eq!(
                reason_of(classify_alb(&alb(status, None, None, None))),
                Some(reason),
                "{status}"
            );
            // The profile logs the same status for it.
            assert_eq!(Profile::of(Cloud::Aws).outcome(reason).status, status);
        }
        let mut desync = alb(400, None, None, None);
        desync.classification = Some("Severe".into());
        assert_eq!(
            reason_of(classify_alb(&desync)),
            Some(Reason::DesyncBlocked)
        );
    }

    #[test]
    fn alb_rule_error_reason_and_unmodelled_statuses() {
        let mut lambda = alb(502, None, Some(0.0), Some(0.001));
        lambda.error_reason = Some("LambdaInvalidResponse".into());
        let Verdict::Lb(c) = classify_alb(&lambda) else {
            panic!()
        };
        assert_eq!(
            (c.reason, c.evidence.as_str()),
            (None, "LambdaInvalidResponse")
        );
        assert_eq!(reason_of(classify_alb(&alb(505, None, None, None))), None);
        assert_eq!(
            classify_alb(&alb(301, None, None, None)),
            Verdict::App { status: Some(301) }
        );
    }

    #[test]
    fn gcp_words_map_through_the_profiles_log_words() {
        let lb = |cloud, status, word| reason_of(classify_gcp(cloud, Some(status), Some(word)));
        assert_eq!(
            lb(
                Cloud::Gcp,
                503,
                "backend_connection_closed_before_data_sent_to_client"
            ),
            Some(Reason::KeepAliveRace)
        );
        assert_eq!(
            lb(Cloud::GcpClassic, 502, "failed_to_pick_backend"),
            Some(Reason::NoHealthyTargets)
        );
        assert_eq!(
            lb(Cloud::Gcp, 504, "backend_timeout"),
            Some(Reason::TargetTimeout)
        );
        assert_eq!(
            lb(Cloud::Gcp, 503, "failed_to_connect_to_backend"),
            Some(Reason::ConnectRefused)
        );
        assert_eq!(
            lb(
                Cloud::Gcp,
                502,
                "backend_connection_closed_after_partial_response_sent"
            ),
            Some(Reason::TargetClosedMidBody)
        );
        assert_eq!(lb(Cloud::Gcp, 403, "denied_by_security_policy"), None);
        assert_eq!(
            classify_gcp(Cloud::Gcp, Some(500), Some("response_sent_by_backend")),
            Verdict::App { status: Some(500) }
        );
        // Every word the profiles log maps back to a reason with that word.
        for cloud in [Cloud::Gcp, Cloud::GcpClassic] {
            for r in Reason::ALL {
                let word = Profile::of(cloud).outcome(r).log_word;
                let back = reason_for_log_word(cloud, word).unwrap();
                assert_eq!(Profile::of(cloud).outcome(back).log_word, word);
            }
        }
    }

    #[test]
    fn every_suggested_scenario_is_bundled() {
        for cloud in [
            Cloud::Aws,
            Cloud::Gcp,
            Cloud::GcpClassic,
            Cloud::IngressNginx,
        ] {
            for r in Reason::ALL {
                if let Some(name) = scenario_for(cloud, r) {
                    assert!(BUNDLED.iter().any(|b| b.name == name), "{name}");
                }
            }
        }
    }

    /// An ingress-nginx line with `status`, `upstream` (the four upstream fields as nginx
    /// writes them) and a fixed head.
    fn nginx_line(status: &str, upstream: &str) -> String {
        format!(
            "10.244.0.1 - - [12/Mar/2024:10:15:01 +0000] \"GET /predict HTTP/1.1\" {status} 160 \
             \"-\" \"curl/8.5.0\" 93 15.004 [default-app-80] [] {upstream} \
             5a401812d3491489148c16a589f9e84c"
        )
    }

    fn nginx_verdict(status: &str, upstream: &str) -> Verdict {
        parse_nginx(&nginx_line(status, upstream))
            .unwrap_or_else(|e| panic!("{e}"))
            .verdict
    }

    fn nginx_cause(status: &str, upstream: &str) -> (Option<Reason>, String) {
        match nginx_verdict(status, upstream) {
            Verdict::Lb(c) => {
                assert_eq!(c.cloud, Cloud::IngressNginx);
                (c.reason, c.evidence)
            }
            v => panic!("expected nginx's own answer, got {v:?}"),
        }
    }

    #[test]
    fn nginx_lines_parse_with_every_try() {
        let e = parse_nginx(&nginx_line(
            "504",
            "10.0.0.7:8000, 10.0.0.7:8000, 10.0.0.8:8000 0, 0, 0 60.001, 60.000, 60.002 504, 504, 504",
        ))
        .unwrap();
        assert_eq!(e.time, parse_rfc3339("2024-03-12T10:15:01Z"));
        assert_eq!(e.duration, Some(15.004));
        // An older controller's line: no alternative upstream, no request id.
        let old = "111.93.1.2 - [111.93.1.2] - - [23/Feb/2017:10:08:21 +0000] \"GET / HTTP/2.0\" \
                   304 212 \"-\" \"-\" 117 0.005 100.96.13.7:3000 0 0.005 304";
        // (That one has `[$the_real_ip]` where the user goes: not the default format.)
        assert!(parse_nginx(old).is_err());
        let older = "10.0.0.1 - - [24/Feb/2017:09:37:45 +0000] \"GET /f HTTP/2.0\" 304 213 \
                     \"-\" \"-\" 260 0.006 [service-3000] 100.96.14.20:3000 0 0.006 304";
        assert_eq!(
            parse_nginx(older).unwrap().verdict,
            Verdict::App { status: Some(304) }
        );
        assert!(looks_like_nginx(older));
        assert!(!looks_like_nginx(OLD_SHORT));
    }

    #[test]
    fn broken_nginx_lines_say_why() {
        let ok = nginx_line("200", "10.0.0.7:8000 2 0.010 200");
        assert!(parse_nginx(&ok).is_ok());
        for (broken, why) in [
            (ok.replace("12/Mar/2024", "12/Foo/2024"), "$time_local"),
            (ok.replace(" 200 160 ", " OK 160 "), "$status"),
            (
                ok[..ok.find("curl/8.5.0").unwrap()].to_string(),
                "never closes",
            ),
            (
                ok.replace(" 10.0.0.7:8000 2 0.010 200", " 10.0.0.7:8000 2"),
                "upstream fields",
            ),
            (
                ok.replace(
                    "10.0.0.7:8000 2 0.010 200",
                    "10.0.0.7:8000, 10.0.0.8:8000 2 0.010 200",
                ),
                "tries",
            ),
            (ok.replace(" 0.010 200", " 0.010 2x0"), "$upstream_status"),
        ] {
            let e = parse_nginx(&broken).unwrap_err();
            assert!(e.contains(why), "{broken}: {e}");
        }
    }

    #[test]
    fn nginx_rule_the_apps_own_status_is_the_apps() {
        for status in ["500", "503", "200", "404"] {
            assert_eq!(
                nginx_verdict(status, &format!("10.0.0.7:8000 21 0.152 {status}")),
                Verdict::App {
                    status: status.parse().ok()
                }
            );
        }
        // An app's 502 with a body of its own is the app's too.
        assert_eq!(
            nginx_verdict("502", "10.0.0.7:8000 57 0.020 502"),
            Verdict::App { status: Some(502) }
        );
        // A GET sent again after a dead keep-alive connection: the app answered.
        assert_eq!(
            nginx_verdict(
                "200",
                "10.0.0.7:8000, 10.0.0.7:8000 0, 2 0.000, 0.004 502, 200"
            ),
            Verdict::App { status: Some(200) }
        );
    }

    #[test]
    fn nginx_rule_timeouts_read_and_connect() {
        let (reason, evidence) = nginx_cause(
            "504",
            "10.0.0.7:8000, 10.0.0.7:8000, 10.0.0.7:8000 0, 0, 0 60.001, 60.000, 60.002 504, 504, 504",
        );
        assert_eq!(reason, Some(Reason::TargetTimeout));
        assert_eq!(evidence, "504, upstream_status 504 on every try");
        assert_eq!(
            Profile::of(Cloud::IngressNginx)
                .outcome(Reason::TargetTimeout)
                .code,
            "upstream_timed_out"
        );
        // Each try took the 5 s proxy-connect-timeout: the connect timed out.
        let (reason, evidence) = nginx_cause(
            "504",
            "10.0.0.7:8000, 10.0.0.7:8000, 10.0.0.7:8000 0, 0, 0 5.000, 5.005, 5.004 504, 504, 504",
        );
        assert_eq!(reason, Some(Reason::ConnectTimeout));
        assert!(evidence.contains("proxy-connect-timeout"), "{evidence}");
        assert_eq!(
            nginx_cause("504", "10.0.0.7:8000 0 60.000 504").1,
            "504, upstream_status 504"
        );
    }

    #[test]
    fn nginx_rule_502_is_the_keep_alive_mismatch_once_and_a_dead_app_on_every_try() {
        assert_eq!(
            nginx_cause("502", "10.0.0.7:8000 0 0.001 502"),
            (
                Some(Reason::KeepAliveRace),
                "502, upstream_status 502, upstream_response_length 0".to_string()
            )
        );
        assert_eq!(
            nginx_cause(
                "502",
                "10.0.0.7:8000, 10.0.0.8:8000, 10.0.0.9:8000 0, 0, 0 0.001, 0.000, 0.001 502, 502, 502"
            )
            .0,
            Some(Reason::TargetClosedConnection)
        );
    }

    #[test]
    fn nginx_rule_no_try_is_nginxs_own_answer() {
        assert_eq!(
            nginx_cause("503", "- - - -"),
            (
                Some(Reason::NoHealthyTargets),
                "503, upstream_status -".to_string()
            )
        );
        assert_eq!(
            nginx_cause("400", "- - - -").0,
            Some(Reason::MalformedRequest)
        );
        assert_eq!(nginx_cause("499", "- - - -").0, Some(Reason::ClientClosed));
        assert_eq!(
            nginx_cause("499", "10.0.0.7:8000 0 3.000 -").0,
            Some(Reason::ClientClosed)
        );
        assert_eq!(nginx_cause("413", "- - - -").0, None);
        assert_eq!(
            nginx_verdict("308", "- - - -"),
            Verdict::App { status: Some(308) }
        );
    }

    #[test]
    fn an_internal_redirect_keeps_the_apps_group() {
        // A custom error page after three timeouts: the app's group decides.
        let (reason, _) = nginx_cause(
            "504",
            "10.0.0.7:8000, 10.0.0.7:8000 : 10.0.0.9:8080 0, 0 : 555 60.000, 60.001 : 0.002 504, 504 : 504",
        );
        assert_eq!(reason, Some(Reason::TargetTimeout));
    }

    #[test]
    fn controller_lines_are_skipped_not_unparsed() {
        let mut t = Tally::default();
        t.read_text(
            "controller.log",
            "2024/03/12 10:15:01 [error] 31#31: *569 upstream timed out (110: Operation timed out)\n\
             W0312 10:15:01.252884       7 controller.go:1111] Service \"default/app\" does not have any active Endpoint.\n",
            Cloud::Gcp,
        );
        assert_eq!((t.requests, t.skipped, t.unparsed_count), (0, 2, 0));
        assert_eq!(
            parse_time_local("08/Mar/2023:16:02:45 +0100"),
            parse_rfc3339("2023-03-08T15:02:45Z")
        );
        assert_eq!(parse_time_local("08/Mar/2023:16:02:45"), None);
    }

    #[test]
    fn rfc3339_times() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2018-07-02T22:23:00.186641Z"),
            Some(1_530_570_180_186_641)
        );
        // Nanoseconds are cut to microseconds; offsets are applied.
        assert_eq!(
            parse_rfc3339("2018-07-02T22:23:00.186641999Z"),
            Some(1_530_570_180_186_641)
        );
        assert_eq!(
            parse_rfc3339("2018-07-03T00:23:00+02:00"),
            Some(1_530_570_180_000_000)
        );
        for bad in [
            "",
            "2018-07-02",
            "2018-13-02T22:23:00Z",
            "2018-07-02T22:23:00",
            "é€-07-02T22:23:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        assert_eq!(
            show_time(1_530_570_180_186_641),
            "2018-07-02T22:23:00.186641Z"
        );
    }

    #[test]
    fn bursts_group_close_events() {
        let s = 1_000_000;
        let times = [
            0,
            10 * s,
            20 * s,
            500 * s,
            1000 * s,
            1001 * s,
            1002 * s,
            1003 * s,
        ];
        assert_eq!(
            bursts(&times),
            vec![(1000 * s, 1003 * s, 4), (0, 20 * s, 3)]
        );
    }

    #[test]
    fn nothing_in_a_line_panics() {
        let mut t = Tally::default();
        for junk in [
            "\"",
            "{",
            "[",
            "{}",
            "[1,2",
            "http",
            "\u{0}\u{1}",
            "{\"httpRequest\": 5}",
            "{\"jsonPayload\": {\"statusDetails\": 7}}",
        ] {
            t.read_text("x", junk, Cloud::Gcp);
        }
        assert_eq!(t.requests, 1, "{:?}", t.unparsed);
    }
}
