//! Access log: one line per finished request, in the shape the cloud itself would log it,
//! written by a task of its own so that logging never blocks or slows a request.
//!
//! The engine fills a cloud-neutral [`Record`] when a request is done (answered, cut, or
//! abandoned by the client) and hands it to [`AccessLog::log`], which formats it and queues
//! the line on a bounded channel without waiting: when the writer is slower than the
//! traffic the line is counted as dropped ([`AccessLog::dropped`]) and the writer task says
//! how many it lost, at most once a second, with `tracing::warn`.
//!
//! The destination is written by a thread of its own ([`AccessLog::open`]), never by a
//! runtime worker or tokio's blocking pool: a FIFO that has no reader yet is opened there
//! (lines queue, bounded, meanwhile), and a destination that never reads can block that
//! thread for ever without holding up the proxy or its exit. At shutdown the last lines
//! get [`FINAL_FLUSH_LIMIT`] ([`AccessLog::flush_within`]); what is still unwritten then
//! is reported and left behind.
//!
//! Four formats ([`LogFormat`], [`format_line`]):
//!
//! - `alb`: the AWS ALB access-log line, every field in the documented order
//!   (`shared/reference/aws-alb.md`, "Access log"), ending with `conn_trace_id` as current
//!   lines do (the Athena table AWS publishes lists it after `classification_reason`); the
//!   line parses with the regular expression AWS publishes for Athena. `time` is when the
//!   response was finished, `request_creation_time` when the request arrived; a timing that
//!   is `None` prints `-1`, a missing target status `-`, a missing target `-`.
//!   `conn_trace_id` is the client connection's [`ConnTraceId`] (`TID_` and 32 hex digits),
//!   the same on every request of one connection. Fields lbsim has no use for are fixed:
//!   `ssl_cipher`/`ssl_protocol` `-`, elb `app/lbsim/0000000000000000`, and `-` for the
//!   redirect URL, error reason and classification fields. A request that reached routing
//!   ([`Record::routed`]) logs a fake target group ARN ([`ALB_TARGET_GROUP_ARN`]),
//!   `matched_rule_priority` `0` (the default rule) and `actions_executed` `forward`, even
//!   when the LB answered it itself (503 no registered targets, 502, 504), as ALB lines
//!   do; one rejected before routing (400, 405, 463, 501, ...) logs `-` for all three.
//!   AWS does not document how it escapes odd bytes, so lbsim keeps the line parseable:
//!   in quoted fields `"` and control characters are percent-encoded (`%22`); in the
//!   request line spaces are too.
//! - `gcp`: one JSON object shaped like a Cloud Logging entry of an external Application
//!   Load Balancer request log: `httpRequest` (`requestSize`/`responseSize` as strings, as
//!   Cloud Logging writes int64), `jsonPayload` (`@type`, `statusDetails`,
//!   `backendTargetProjectNumber`), `severity` (`WARNING` for a 5xx the load balancer
//!   generated, else `INFO`), `timestamp` (request arrival, RFC 3339), `trace`
//!   (`projects/lbsim/traces/<id>`, when a trace id is known), `resource` and `logName`.
//!   `serverIp` is the target's address (omitted when none was chosen); `status` is omitted
//!   when nothing was sent (no status, or ALB's log-only 460). `cacheDecision` is omitted:
//!   it describes Cloud CDN, which lbsim does not model.
//! - `nginx`: the ingress-nginx controller's default `log-format-upstream` (its `upstreaminfo`
//!   format, [`NGINX_LOG_FORMAT`], from the controller's
//!   `internal/ingress/controller/config/config.go`, `logFormatUpstream`), the variables
//!   written as nginx writes them: `$time_local` in UTC (`[01/May/2024:12:34:56 +0000]`),
//!   `$request_time` and `$upstream_response_time` in seconds with millisecond resolution,
//!   `-` for a variable that has no value (no `User-Agent`, no upstream), and in variable
//!   values `"`, `\`, control characters and bytes from 0x7f as `\xHH` (nginx's default
//!   `escape`). The four `$upstream_*` fields list every try ([`Record::tries`]) in order,
//!   separated by `, ` as nginx does when `proxy_next_upstream` sent the request again: a
//!   try that failed shows the status nginx assigned to it (504 for a timeout, 502 for an
//!   error), a response length of 0 and its time; an answer made before any endpoint was
//!   tried (503 with no endpoint, 400, 499 before routing) shows `-` in all four.
//!   `$proxy_upstream_name` is `namespace-service-port` in a cluster: lbsim writes the
//!   fixed [`NGINX_UPSTREAM_NAME`] (`default-app-80`) for a routed request and nothing
//!   (`[]`) for one rejected before routing; `$proxy_alternative_upstream_name` is empty
//!   (`[]`, no canary); `$remote_user` is `-`; `$req_id` is the request's `X-Request-ID`
//!   ([`Record::request_id`]), or 32 fresh hex digits when it has none.
//! - `json`: lbsim's own flat object, one per line, with these fields:
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `time` | string | when the response was finished (RFC 3339, µs, UTC) |
//! | `request_time` | string | when the request arrived |
//! | `client` | string | client `ip:port` |
//! | `listener` | string | lbsim's listen `ip:port` |
//! | `target` | string or null | target `ip:port`, null when none was chosen |
//! | `method`, `scheme`, `host`, `port`, `path`, `version` | | the request (`path` includes the query) |
//! | `status` | number or null | status sent to the client (460: client left first) |
//! | `target_status` | number or null | status the target sent, null when none came |
//! | `reason` | string or null | `x-lbsim-reason` code when the LB answered or cut |
//! | `status_details` | string | the GCP `statusDetails` word for the outcome |
//! | `cut` | bool | the body was cut after the head went out |
//! | `request_processing_ms`, `target_processing_ms`, `response_processing_ms` | number or null | the ALB's three timings in ms; null where ALB logs -1 |
//! | `duration_ms` | number | arrival to finish, in ms |
//! | `received_bytes`, `sent_bytes` | number | bytes from and to the client |
//! | `user_agent`, `trace_id` | string or null | `User-Agent`; trace header value sent to the target |

use std::borrow::Cow;
use std::fmt::Write as _;
use std::future::Future;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// The `elb` field of every ALB line.
pub const ALB_NAME: &str = "app/lbsim/0000000000000000";
/// The `target_group_arn` field of every ALB line (a well-formed, fake ARN).
pub const ALB_TARGET_GROUP_ARN: &str =
    "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/lbsim/0000000000000000";
/// Project named in GCP `trace` and `logName` fields.
pub const GCP_PROJECT: &str = "lbsim";
/// The ingress-nginx controller's default `log-format-upstream`, as its source holds it
/// (`internal/ingress/controller/config/config.go`, `logFormatUpstream`; the same string
/// as the `log_format upstreaminfo` of its "Log format" documentation page). The `nginx`
/// format writes these fields, in this order.
pub const NGINX_LOG_FORMAT: &str = "$remote_addr - $remote_user [$time_local] \"$request\" \
    $status $body_bytes_sent \"$http_referer\" \"$http_user_agent\" $request_length \
    $request_time [$proxy_upstream_name] [$proxy_alternative_upstream_name] $upstream_addr \
    $upstream_response_length $upstream_response_time $upstream_status $req_id";
/// The `$proxy_upstream_name` of every routed `nginx` line: in a cluster the controller
/// names a backend `<namespace>-<service>-<port>` (`upstreamName` in its
/// `internal/ingress/controller/util.go`); lbsim has no Service, so it writes a Service
/// `app` on port 80 in namespace `default`.
pub const NGINX_UPSTREAM_NAME: &str = "default-app-80";

/// The ALB's connection traceability ID (`conn_trace_id`): one per client connection,
/// logged on every request of that connection, so that a user can group the requests of a
/// keep-alive connection (AWS uses it to link access-log lines to the connection log).
///
/// AWS calls it "a unique opaque ID"; its published connection-log examples, and captured
/// access-log lines, show `TID_` and 32 lowercase hex digits
/// (`TID_3180a73013c8ca4bac2f731159d4b0fe`): lbsim prints 128 random bits that way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnTraceId(pub u128);

impl ConnTraceId {
    /// A fresh random ID, for a new client connection.
    pub fn random() -> ConnTraceId {
        ConnTraceId(rand::random())
    }
}

impl std::fmt::Display for ConnTraceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TID_{:032x}", self.0)
    }
}

/// Drop reports come at most this often.
const REPORT_EVERY: Duration = Duration::from_secs(1);
/// The writer task writes at most this many bytes in one batch.
const MAX_BATCH_BYTES: usize = 64 * 1024;
/// How long shutdown waits for queued access-log lines to be written: seconds are plenty
/// for a disk or a reading pipe to take 8,192 lines, and a destination that never reads
/// must not keep lbsim alive (nor eat a container's stop timeout, often 10 s).
pub const FINAL_FLUSH_LIMIT: Duration = Duration::from_secs(2);

/// Everything one access-log line needs, filled by the engine when a request is done.
///
/// Cloud-neutral: each format picks what its cloud logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// When the request arrived (ALB `request_creation_time`, GCP `timestamp`).
    pub start: SystemTime,
    /// When the response was finished, cut, or abandoned (ALB `time`).
    pub end: SystemTime,
    /// The client's address.
    pub client: SocketAddr,
    /// lbsim's listen address the client connected to.
    pub listener: SocketAddr,
    /// The target the request went to, if one was chosen.
    pub target: Option<SocketAddr>,
    /// Arrival to dispatch to the target; `None` prints `-1` (not dispatched).
    pub request_processing: Option<Duration>,
    /// Dispatch to the target's response head; `None` prints `-1` (no answer, or not dispatched).
    pub target_processing: Option<Duration>,
    /// Response head to the response sent; `None` prints `-1` (not dispatched).
    pub response_processing: Option<Duration>,
    /// Status sent to the client. `None` when nothing was sent; for a client that left
    /// before any response the engine passes `Some(460)`, as the ALB logs it.
    pub lb_status: Option<u16>,
    /// Status the target sent; `None` prints `-` (no response came).
    pub target_status: Option<u16>,
    /// Bytes received from the client (request line, headers and body).
    pub received_bytes: u64,
    /// Bytes sent to the client (status line, headers and body).
    pub sent_bytes: u64,
    /// Of them, the body's bytes (nginx's `$body_bytes_sent`).
    pub body_bytes: u64,
    /// Request method (`GET`); empty prints `-`.
    pub method: String,
    /// `http`.
    pub scheme: &'static str,
    /// Host from the `Host` header, without its port; empty means the listener's IP.
    pub host: String,
    /// Port the client connected to.
    pub port: u16,
    /// Path and query as the client sent them (`/a?b=c`).
    pub path: String,
    /// `HTTP/1.1` (see [`version_str`]).
    pub version: &'static str,
    /// The `User-Agent` header, if any.
    pub user_agent: Option<String>,
    /// The `Referer` header, if any.
    pub referer: Option<String>,
    /// The `X-Request-ID` sent to the target (ingress-nginx's `$req_id`: the client's own,
    /// or the one the LB added), if any.
    pub request_id: Option<String>,
    /// The trace header value as sent to the target (`X-Amzn-Trace-Id` or
    /// `X-Cloud-Trace-Context`), if any.
    pub trace_id: Option<String>,
    /// lbsim's `x-lbsim-reason` code when the load balancer answered or cut the response.
    pub reason: Option<&'static str>,
    /// GCP `statusDetails`: `response_sent_by_backend`, `backend_timeout`,
    /// `failed_to_connect_to_backend`, `backend_connection_closed_before_data_sent_to_client`,
    /// `client_disconnected_before_any_response`, ...
    pub status_details: &'static str,
    /// The response head went out and the body was cut.
    pub cut: bool,
    /// The client connection the request came on (ALB `conn_trace_id`): lets a reader
    /// group the requests of one keep-alive connection.
    pub conn_trace_id: ConnTraceId,
    /// The request passed the LB's own checks and went to routing (a listener rule chose
    /// the target group), whether or not a target then answered. ALB logs the target
    /// group, rule priority and `forward` only then: a request it rejects first (400,
    /// 405, 463, 501, ...) has none, and its line shows `-` for them.
    pub routed: bool,
    /// Every try at a target, in order: one for a request answered at the first attempt,
    /// more when the LB sent it again (nginx's `proxy_next_upstream`), none when no target
    /// was tried. Empty with a `target` set (a record from an older caller) reads as one
    /// try at that target with the target's status.
    pub tries: Tries,
}

/// One try of a request at a target: what nginx keeps per try and logs in its
/// `$upstream_addr`, `$upstream_status`, `$upstream_response_length` and
/// `$upstream_response_time` lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Try {
    /// The target tried.
    pub target: SocketAddr,
    /// The status the target sent; for a try that failed, the status the LB assigned to
    /// the failure (nginx: 504 for a timeout, 502 for any other error); `None` prints `-`.
    pub status: Option<u16>,
    /// Why the try failed, when it did.
    pub cause: Option<crate::lb::reason::Reason>,
    /// Response body bytes received from the target (0 for a failed try).
    pub bytes: u64,
    /// From the start of the try (the connection checkout) to its end: the response's
    /// last byte, or the failure.
    pub time: Duration,
}

/// The tries of one request, in order ([`Record::tries`]).
///
/// The first try is held inline, so the common request (one try) costs no allocation;
/// only a retried request puts its further tries on the heap.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tries {
    first: Option<Try>,
    more: Vec<Try>,
}

impl Tries {
    /// Appends a try.
    pub fn push(&mut self, t: Try) {
        if self.first.is_none() {
            self.first = Some(t);
        } else {
            self.more.push(t);
        }
    }

    /// The tries in order.
    pub fn iter(&self) -> impl Iterator<Item = &Try> + '_ {
        self.first.iter().chain(self.more.iter())
    }

    /// How many tries.
    pub fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.more.len()
    }

    /// No target was tried.
    pub fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    /// The last try, if any.
    pub fn last(&self) -> Option<&Try> {
        self.more.last().or(self.first.as_ref())
    }
}

impl FromIterator<Try> for Tries {
    fn from_iter<I: IntoIterator<Item = Try>>(iter: I) -> Tries {
        let mut tries = Tries::default();
        for t in iter {
            tries.push(t);
        }
        tries
    }
}

/// The access-log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// AWS ALB access-log line (space separated, Athena-parseable).
    Alb,
    /// GCP Cloud Logging load balancer request entry (JSON).
    Gcp,
    /// lbsim's own flat JSON with its reason codes.
    Json,
    /// ingress-nginx controller's default `log-format-upstream` line, every try listed.
    Nginx,
}

/// The protocol string of an HTTP version, as logs write it.
pub fn version_str(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// The ALB log's first field, the connection type: `http`, `https` (HTTP/1.x over TLS)
/// or `h2` (HTTP/2 over TLS). AWS, "Access logs for your Application Load Balancer",
/// "Access log entries", `type`. HTTP/2 in cleartext (lbsim's `--h2c`; an ALB has no
/// such listener) is logged `http`.
fn alb_type(r: &Record) -> &'static str {
    match (r.scheme, r.version) {
        ("https", "HTTP/2.0") => "h2",
        ("https", _) => "https",
        _ => "http",
    }
}

/// One log line for `r`, without a trailing newline.
pub fn format_line(format: LogFormat, r: &Record) -> String {
    match format {
        LogFormat::Alb => alb_line(r),
        LogFormat::Gcp => gcp_line(r),
        LogFormat::Json => json_line(r),
        LogFormat::Nginx => nginx_line(r),
    }
}

// ---------------------------------------------------------------------------------------
// Time

/// `2024-05-01T12:34:56.123456Z`: UTC, microseconds. Times before 1970 print as 1970.
pub fn rfc3339_micros(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_micros()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn elapsed(r: &Record) -> Duration {
    r.end.duration_since(r.start).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// ALB

/// Percent-encodes what would break the line: `"`, control characters, and (when
/// `space` is false) spaces. Empty values print as `-`.
fn alb_safe(s: &str, space: bool) -> Cow<'_, str> {
    let bad = |c: char| c == '"' || c.is_control() || (!space && c == ' ');
    if s.is_empty() {
        return Cow::Borrowed("-");
    }
    if !s.chars().any(bad) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if bad(c) {
            let mut b = [0u8; 4];
            for byte in c.encode_utf8(&mut b).bytes() {
                let _ = write!(out, "%{byte:02X}");
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn alb_timing(out: &mut String, d: Option<Duration>) {
    match d {
        Some(d) => {
            let _ = write!(out, "{:.3} ", d.as_secs_f64());
        }
        None => out.push_str("-1 "),
    }
}

fn host_or_listener(r: &Record) -> Cow<'_, str> {
    if r.host.is_empty() {
        Cow::Owned(match r.listener.ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        })
    } else {
        Cow::Borrowed(&r.host)
    }
}

fn alb_line(r: &Record) -> String {
    let mut out = String::with_capacity(512);
    let target = r.target.map(|t| t.to_string());
    let target = target.as_deref().unwrap_or("-");
    let target_status = r.target_status.map(|s| s.to_string());
    let target_status = target_status.as_deref().unwrap_or("-");
    let lb_status = r.lb_status.map(|s| s.to_string());
    let lb_status = lb_status.as_deref().unwrap_or("-");

    // type time elb client:port target:port
    let _ = write!(
        out,
        "{} {} {ALB_NAME} {} {target} ",
        alb_type(r),
        rfc3339_micros(r.end),
        r.client
    );
    // request_processing_time target_processing_time response_processing_time
    alb_timing(&mut out, r.request_processing);
    alb_timing(&mut out, r.target_processing);
    alb_timing(&mut out, r.response_processing);
    // elb_status_code target_status_code received_bytes sent_bytes
    let _ = write!(
        out,
        "{lb_status} {target_status} {} {} ",
        r.received_bytes, r.sent_bytes
    );
    // "request" "user_agent"
    let _ = write!(
        out,
        "\"{} {}://{}:{}{} {}\" \"{}\" ",
        alb_safe(&r.method, false),
        alb_safe(r.scheme, false),
        alb_safe(&host_or_listener(r), false),
        r.port,
        alb_safe(&r.path, false),
        alb_safe(r.version, false),
        alb_safe(r.user_agent.as_deref().unwrap_or(""), true),
    );
    // A routed request names its target group, the default rule (priority 0: lbsim has
    // no other rules) and the action `forward`, even when the LB answered it itself:
    // captured 503 lines with no target and -1 timings (an empty target group) show the
    // ARN, `0` and "forward". AWS, "Access logs for your Application Load Balancer"
    // (docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-access-logs.html),
    // "Access log entries": matched_rule_priority "If no rule matched and the default action
    // was taken, this value is set to 0 ... For any other error, it is set to -";
    // actions_executed "If no action was taken, such as for a malformed request, this
    // value is set to -". Captured lines of requests the ALB rejected (400) show `-` for
    // the target group too, and for the target, the timings (-1), the target status and
    // both target lists, as the Record of such a request says anyway:
    //   ... 205.210.31.158:61084 - -1 -1 -1 400 - 0 272 "- http://...:80- -" "-" - - -
    //   "-" "-" "-" - 2025-03-01T10:03:16.682000Z "-" "-" "-" "-" "-" "-" "-" TID_6cfb...
    let (target_group, priority, actions) = if r.routed {
        (ALB_TARGET_GROUP_ARN, "0", "forward")
    } else {
        ("-", "-", "-")
    };
    // ssl_cipher ssl_protocol target_group_arn "trace_id" "domain_name" "chosen_cert_arn"
    // matched_rule_priority request_creation_time "actions_executed" "redirect_url"
    // "error_reason" "target:port_list" "target_status_code_list" "classification"
    // "classification_reason" conn_trace_id
    let _ = write!(
        out,
        "- - {target_group} \"{}\" \"-\" \"-\" {priority} {} \"{actions}\" \"-\" \"-\" \"{target}\" \"{target_status}\" \"-\" \"-\" {}",
        alb_safe(r.trace_id.as_deref().unwrap_or(""), false),
        rfc3339_micros(r.start),
        r.conn_trace_id,
    );
    out
}

// ---------------------------------------------------------------------------------------
// GCP

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GcpEntry<'a> {
    http_request: GcpHttpRequest<'a>,
    json_payload: GcpPayload<'a>,
    resource: GcpResource,
    log_name: String,
    severity: &'static str,
    timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GcpHttpRequest<'a> {
    request_method: &'a str,
    request_url: String,
    request_size: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    response_size: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<&'a str>,
    remote_ip: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_ip: Option<String>,
    latency: String,
    protocol: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GcpPayload<'a> {
    #[serde(rename = "@type")]
    type_: &'static str,
    status_details: &'a str,
    backend_target_project_number: &'static str,
}

#[derive(Serialize)]
struct GcpResource {
    #[serde(rename = "type")]
    type_: &'static str,
    labels: GcpLabels,
}

#[derive(Serialize)]
struct GcpLabels {
    project_id: &'static str,
    forwarding_rule_name: &'static str,
    url_map_name: &'static str,
    backend_service_name: &'static str,
    target_proxy_name: &'static str,
    zone: &'static str,
}

/// The trace id part of a trace header value: the `Root=` of an `X-Amzn-Trace-Id`, or
/// the part before `/` of an `X-Cloud-Trace-Context`.
fn gcp_trace(value: &str) -> &str {
    if let Some(root) = value
        .split(';')
        .find_map(|f| f.trim().strip_prefix("Root="))
    {
        return root;
    }
    value.split(['/', ';']).next().unwrap_or(value).trim()
}

fn gcp_line(r: &Record) -> String {
    let host = host_or_listener(r);
    let default_port = matches!((r.scheme, r.port), ("http", 80) | ("https", 443));
    let request_url = if default_port {
        format!("{}://{host}{}", r.scheme, r.path)
    } else {
        format!("{}://{host}:{}{}", r.scheme, r.port, r.path)
    };
    let d = elapsed(r);
    // 460 is ALB's log-only code for "nothing sent"; Cloud Logging has no status then.
    let status = r.lb_status.filter(|&s| s != 460);
    let severity = match status {
        Some(s) if s >= 500 && r.reason.is_some() => "WARNING",
        _ => "INFO",
    };
    let entry = GcpEntry {
        http_request: GcpHttpRequest {
            request_method: &r.method,
            request_url,
            request_size: r.received_bytes.to_string(),
            status,
            response_size: r.sent_bytes.to_string(),
            user_agent: r.user_agent.as_deref(),
            remote_ip: r.client.ip().to_string(),
            server_ip: r.target.map(|t| t.ip().to_string()),
            latency: format!("{}.{:06}s", d.as_secs(), d.subsec_micros()),
            protocol: r.version,
        },
        json_payload: GcpPayload {
            type_: "type.googleapis.com/google.cloud.loadbalancing.type.LoadBalancerLogEntry",
            status_details: r.status_details,
            backend_target_project_number: "projects/0",
        },
        resource: GcpResource {
            type_: "http_load_balancer",
            labels: GcpLabels {
                project_id: GCP_PROJECT,
                forwarding_rule_name: "lbsim",
                url_map_name: "lbsim",
                backend_service_name: "lbsim",
                target_proxy_name: "lbsim",
                zone: "global",
            },
        },
        log_name: format!("projects/{GCP_PROJECT}/logs/requests"),
        severity,
        timestamp: rfc3339_micros(r.start),
        trace: r
            .trace_id
            .as_deref()
            .map(gcp_trace)
            .filter(|t| !t.is_empty())
            .map(|t| format!("projects/{GCP_PROJECT}/traces/{t}")),
    };
    serde_json::to_string(&entry).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// lbsim JSON

#[derive(Serialize)]
struct JsonLine<'a> {
    time: String,
    request_time: String,
    client: String,
    listener: String,
    target: Option<String>,
    method: &'a str,
    scheme: &'a str,
    host: &'a str,
    port: u16,
    path: &'a str,
    version: &'a str,
    status: Option<u16>,
    target_status: Option<u16>,
    reason: Option<&'a str>,
    status_details: &'a str,
    cut: bool,
    request_processing_ms: Option<f64>,
    target_processing_ms: Option<f64>,
    response_processing_ms: Option<f64>,
    duration_ms: f64,
    received_bytes: u64,
    sent_bytes: u64,
    user_agent: Option<&'a str>,
    trace_id: Option<&'a str>,
}

/// Milliseconds with microsecond precision.
fn ms(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

fn json_line(r: &Record) -> String {
    let line = JsonLine {
        time: rfc3339_micros(r.end),
        request_time: rfc3339_micros(r.start),
        client: r.client.to_string(),
        listener: r.listener.to_string(),
        target: r.target.map(|t| t.to_string()),
        method: &r.method,
        scheme: r.scheme,
        host: &r.host,
        port: r.port,
        path: &r.path,
        version: r.version,
        status: r.lb_status,
        target_status: r.target_status,
        reason: r.reason,
        status_details: r.status_details,
        cut: r.cut,
        request_processing_ms: r.request_processing.map(ms),
        target_processing_ms: r.target_processing.map(ms),
        response_processing_ms: r.response_processing.map(ms),
        duration_ms: ms(elapsed(r)),
        received_bytes: r.received_bytes,
        sent_bytes: r.sent_bytes,
        user_agent: r.user_agent.as_deref(),
        trace_id: r.trace_id.as_deref(),
    };
    serde_json::to_string(&line).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// ingress-nginx

/// Appends `s` as nginx writes a variable's value with its default `escape`
/// (`ngx_http_log_escape`): `"`, `\`, control characters and every byte from 0x7f as
/// `\xHH` (upper-case hex); an empty value prints nothing.
fn nginx_escaped(out: &mut String, s: &str) {
    for &b in s.as_bytes() {
        if !(0x20..0x7f).contains(&b) || b == b'"' || b == b'\\' {
            let _ = write!(out, "\\x{b:02X}");
        } else {
            out.push(char::from(b));
        }
    }
}

/// A variable that may have no value: `-` then (nginx's `not_found`), else escaped.
fn nginx_var(out: &mut String, v: Option<&str>) {
    match v {
        Some(v) => nginx_escaped(out, v),
        None => out.push('-'),
    }
}

/// Seconds with millisecond resolution, as nginx prints `$request_time` and
/// `$upstream_response_time` (`%T.%03M`, the milliseconds truncated).
fn nginx_secs(out: &mut String, d: Duration) {
    let ms = d.as_millis();
    let _ = write!(out, "{}.{:03}", ms / 1000, ms % 1000);
}

/// `$time_local` in the Common Log Format, for a controller whose clock is UTC (its
/// container's default): `01/May/2024:12:34:56 +0000`.
pub fn nginx_time_local(t: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{day:02}/{}/{year:04}:{:02}:{:02}:{:02} +0000",
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// One of the four `$upstream_*` lists: each try's value, `, ` between tries; `-` when no
/// try was made (the variables are not found then).
fn nginx_list(
    out: &mut String,
    tries: impl Iterator<Item = Try>,
    mut each: impl FnMut(&mut String, &Try),
) {
    let mut none = true;
    for t in tries {
        if !none {
            out.push_str(", ");
        }
        none = false;
        each(out, &t);
    }
    if none {
        out.push('-');
    }
}

fn nginx_line(r: &Record) -> String {
    let mut out = String::with_capacity(320);
    // $remote_addr - $remote_user [$time_local] "$request"
    let _ = write!(
        out,
        "{} - - [{}] \"",
        r.client.ip(),
        nginx_time_local(r.end)
    );
    nginx_escaped(&mut out, &r.method);
    out.push(' ');
    nginx_escaped(&mut out, &r.path);
    out.push(' ');
    nginx_escaped(&mut out, r.version);
    // $status $body_bytes_sent "$http_referer" "$http_user_agent"
    let _ = write!(
        out,
        "\" {:03} {} \"",
        r.lb_status.unwrap_or(0),
        r.body_bytes
    );
    nginx_var(&mut out, r.referer.as_deref());
    out.push_str("\" \"");
    nginx_var(&mut out, r.user_agent.as_deref());
    // $request_length $request_time [$proxy_upstream_name] [$proxy_alternative_upstream_name]
    let _ = write!(out, "\" {} ", r.received_bytes);
    nginx_secs(&mut out, elapsed(r));
    let upstream = if r.routed { NGINX_UPSTREAM_NAME } else { "" };
    let _ = write!(out, " [{upstream}] [] ");
    // $upstream_addr $upstream_response_length $upstream_response_time $upstream_status
    // A record with a target but no tries reads as one try at it, as the target answered.
    let synthesized = r.target.filter(|_| r.tries.is_empty()).map(|target| Try {
        target,
        status: r.target_status,
        cause: None,
        bytes: r.body_bytes,
        time: elapsed(r).saturating_sub(r.request_processing.unwrap_or_default()),
    });
    let tries = || r.tries.iter().copied().chain(synthesized);
    nginx_list(&mut out, tries(), |o, t| {
        let _ = write!(o, "{}", t.target);
    });
    out.push(' ');
    nginx_list(&mut out, tries(), |o, t| {
        let _ = write!(o, "{}", t.bytes);
    });
    out.push(' ');
    nginx_list(&mut out, tries(), |o, t| nginx_secs(o, t.time));
    out.push(' ');
    nginx_list(&mut out, tries(), |o, t| match t.status {
        Some(s) => {
            let _ = write!(o, "{s}");
        }
        None => o.push('-'),
    });
    // $req_id: the X-Request-ID, or nginx's $request_id (16 random bytes in hex).
    out.push(' ');
    match r.request_id.as_deref() {
        Some(id) if !id.is_empty() => nginx_escaped(&mut out, id),
        _ => {
            let _ = write!(out, "{:032x}", rand::random::<u128>());
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Writer

enum Msg {
    Line(String),
    Flush(oneshot::Sender<()>),
}

/// A handle to the access-log writer task; cheap to clone, one per connection is fine.
///
/// The task ends when every handle is dropped, after writing what was queued.
#[derive(Clone, Debug)]
pub struct AccessLog {
    /// Lines (and flush requests) for the writer task; bounded, so a slow destination
    /// costs dropped lines, never memory or a wait on the request path.
    tx: mpsc::Sender<Msg>,
    /// The format lines are written in.
    format: LogFormat,
    /// Lines lost so far (queue full, or the writer stopped), for reports and tests.
    dropped: Arc<AtomicU64>,
    /// Lines the writer task has taken off the queue and not yet written: with the queue's
    /// length, what a shutdown that gives up on the destination leaves behind. Set once
    /// per batch, so it costs the request path nothing.
    in_batch: Arc<AtomicU64>,
}

/// Lines a bounded final flush ([`AccessLog::flush_within`]) gave up on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unwritten {
    /// Lines queued or being written when the time ran out (lost at exit).
    pub lines: u64,
    /// Lines dropped earlier because the destination was slower than the traffic.
    pub dropped: u64,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Line(l) => f.debug_tuple("Line").field(l).finish(),
            Msg::Flush(_) => f.write_str("Flush"),
        }
    }
}

impl AccessLog {
    /// Starts the writer task on `writer`, with room for `capacity` queued lines.
    ///
    /// Must be called inside a Tokio runtime.
    pub fn spawn(
        writer: impl AsyncWrite + Unpin + Send + 'static,
        format: LogFormat,
        capacity: usize,
    ) -> AccessLog {
        let capacity = capacity.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        let dropped = Arc::new(AtomicU64::new(0));
        let in_batch = Arc::new(AtomicU64::new(0));
        tokio::spawn(run(
            writer,
            rx,
            capacity,
            Arc::clone(&dropped),
            Arc::clone(&in_batch),
        ));
        AccessLog {
            tx,
            format,
            dropped,
            in_batch,
        }
    }

    /// Opens `path` for appending (created if missing), or stdout for `-`, and starts
    /// the writer on it. Must be called inside a Tokio runtime. Never blocks: a FIFO is
    /// opened by the writer thread (opening one for writing waits for a reader), and
    /// lines queue until it is open; any other path is opened here, so that one that
    /// cannot be opened (a missing directory, no permission) is an error at once.
    pub fn open(path: &str, format: LogFormat, capacity: usize) -> io::Result<AccessLog> {
        let sink = if path == "-" {
            ThreadSink::start("stdout".to_string(), || {
                Ok(Box::new(io::stdout()) as Box<dyn Write + Send>)
            })?
        } else if is_fifo(path) {
            let owned = path.to_string();
            tracing::info!("access log: {path} is a FIFO; lines queue until a reader opens it");
            ThreadSink::start(path.to_string(), move || {
                let file = append_to(&owned)?;
                tracing::info!("access log: {owned} has a reader; writing");
                Ok(Box::new(file) as Box<dyn Write + Send>)
            })?
        } else {
            let file = append_to(path)?;
            ThreadSink::start(path.to_string(), move || {
                Ok(Box::new(file) as Box<dyn Write + Send>)
            })?
        };
        Ok(AccessLog::spawn(sink, format, capacity))
    }

    /// Formats `record` and queues the line. Never blocks and never waits: when the queue
    /// is full (or the writer has stopped) the line is counted in [`AccessLog::dropped`].
    pub fn log(&self, record: Record) {
        // A full queue costs a counter increment, not a formatted line.
        if self.tx.capacity() == 0 {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut line = format_line(self.format, &record);
        line.push('\n');
        if self.tx.try_send(Msg::Line(line)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Lines dropped so far because the writer could not keep up (or had stopped).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The format lines are written in.
    pub fn format(&self) -> LogFormat {
        self.format
    }

    /// Waits until every line queued before this call is written and flushed.
    ///
    /// For shutdown and tests, not for the request path: it waits for queue room.
    pub async fn flush(&self) -> io::Result<()> {
        let stopped = || io::Error::new(io::ErrorKind::BrokenPipe, "access log writer stopped");
        let (ack, done) = oneshot::channel();
        self.tx.send(Msg::Flush(ack)).await.map_err(|_| stopped())?;
        done.await.map_err(|_| stopped())
    }

    /// [`AccessLog::flush`] for at most `limit`, for shutdown: a destination that does not
    /// take the lines (a FIFO nobody reads) must not keep the process alive. Past the
    /// limit it warns how many lines were not written and how many were dropped before,
    /// and returns those counts; the lines stay queued and are lost when the process
    /// exits. A writer that already stopped on an error is warned about too (its lines
    /// were counted as dropped when it stopped).
    pub async fn flush_within(&self, limit: Duration) -> Result<(), Unwritten> {
        let mut queued_flush = false;
        let flushed = tokio::time::timeout(limit, async {
            let stopped = || io::Error::new(io::ErrorKind::BrokenPipe, "access log writer stopped");
            let (ack, done) = oneshot::channel();
            self.tx.send(Msg::Flush(ack)).await.map_err(|_| stopped())?;
            queued_flush = true;
            done.await.map_err(|_| stopped())
        })
        .await;
        match flushed {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                tracing::warn!("access log: {e}");
                Ok(())
            }
            Err(_) => {
                // Queued messages are lines, but for the flush request this call queued.
                let queued = (self.tx.max_capacity() - self.tx.capacity()) as u64;
                let lines = queued.saturating_sub(u64::from(queued_flush))
                    + self.in_batch.load(Ordering::Relaxed);
                let unwritten = Unwritten {
                    lines,
                    dropped: self.dropped(),
                };
                tracing::warn!(
                    unwritten = unwritten.lines,
                    dropped = unwritten.dropped,
                    "access log: {} not written: the destination did not take them within \
                     {limit:?} at shutdown (a FIFO with no reader, or a reader that does not \
                     read?); exiting without them ({} dropped earlier, {} lost in all)",
                    count_lines(unwritten.lines),
                    count_lines(unwritten.dropped),
                    count_lines(unwritten.lines + unwritten.dropped)
                );
                Err(unwritten)
            }
        }
    }
}

/// "1 line", "2 lines".
fn count_lines(n: u64) -> String {
    format!("{n} line{}", if n == 1 { "" } else { "s" })
}

/// Whether `path` names a FIFO (following symlinks); false if it does not exist.
fn is_fifo(path: &str) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo())
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

/// Opens `path` for appending, created if missing.
fn append_to(path: &str) -> io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// One request to the destination's thread, with where to say how it went.
enum Job {
    /// Write all of these bytes.
    Write(Vec<u8>, oneshot::Sender<io::Result<()>>),
    /// Flush the destination.
    Flush(oneshot::Sender<io::Result<()>>),
}

/// An [`AsyncWrite`] over a blocking destination written by a thread of its own.
///
/// Not tokio's blocking pool (`tokio::fs::File`, `tokio::io::stdout`): the runtime waits
/// for that pool's threads when it shuts down, so a write blocked for ever on a pipe
/// nobody reads would keep the process alive. This thread is never joined; dropping the
/// sink ends it after its current job, and the process exits without it.
///
/// One job at a time: a write is acknowledged at once (as `tokio::fs::File` does) and
/// its result is returned by the next write or flush, which waits for it first.
struct ThreadSink {
    /// Jobs for the thread; closed when the sink is dropped, which ends the thread.
    jobs: std::sync::mpsc::Sender<Job>,
    /// The job the thread is doing now, and whether it is a flush.
    pending: Option<(bool, oneshot::Receiver<io::Result<()>>)>,
}

impl ThreadSink {
    /// Starts the thread; it first calls `open` (which may block, e.g. on a FIFO with no
    /// reader), then runs jobs. If `open` fails, every job gets its error.
    fn start(
        what: String,
        open: impl FnOnce() -> io::Result<Box<dyn Write + Send>> + Send + 'static,
    ) -> io::Result<ThreadSink> {
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("lbsim-access-log".to_string())
            .spawn(move || {
                let mut dest = open();
                if let Err(e) = &dest {
                    tracing::warn!("access log: cannot open {what}: {e}");
                }
                for job in rx {
                    let (result, done) = match (&mut dest, job) {
                        (Ok(w), Job::Write(buf, done)) => (w.write_all(&buf), done),
                        (Ok(w), Job::Flush(done)) => (w.flush(), done),
                        (Err(e), Job::Write(_, done) | Job::Flush(done)) => {
                            (Err(io::Error::new(e.kind(), e.to_string())), done)
                        }
                    };
                    let _ = done.send(result);
                }
            })?;
        Ok(ThreadSink {
            jobs,
            pending: None,
        })
    }

    /// Waits for the job in progress, if any; says whether it was a flush.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        let Some((flush, done)) = &mut self.pending else {
            return Poll::Ready(Ok(false));
        };
        let result = match Pin::new(done).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(result)) => result,
            Poll::Ready(Err(_)) => Err(thread_gone()),
        };
        let flush = *flush;
        self.pending = None;
        Poll::Ready(result.map(|()| flush))
    }

    /// Hands `job` (built around its acknowledgement) to the thread.
    fn send(
        &mut self,
        flush: bool,
        job: impl FnOnce(oneshot::Sender<io::Result<()>>) -> Job,
    ) -> io::Result<()> {
        let (ack, done) = oneshot::channel();
        self.jobs.send(job(ack)).map_err(|_| thread_gone())?;
        self.pending = Some((flush, done));
        Ok(())
    }
}

fn thread_gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "access log writer thread stopped",
    )
}

impl AsyncWrite for ThreadSink {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Err(e) = ready!(this.poll_pending(cx)) {
            return Poll::Ready(Err(e));
        }
        let bytes = buf.to_vec();
        Poll::Ready(
            this.send(false, |ack| Job::Write(bytes, ack))
                .map(|()| buf.len()),
        )
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match ready!(this.poll_pending(cx)) {
                Err(e) => return Poll::Ready(Err(e)),
                Ok(true) => return Poll::Ready(Ok(())),
                // Nothing pending, or a write that just finished: now the flush.
                Ok(false) => this.send(true, Job::Flush)?,
            }
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}

/// Says how many lines were dropped since the last report, at most once per [`REPORT_EVERY`].
struct DropReporter {
    dropped: Arc<AtomicU64>,
    reported: u64,
    last: Option<Instant>,
}

impl DropReporter {
    fn report(&mut self, force: bool) {
        let total = self.dropped.load(Ordering::Relaxed);
        if total <= self.reported {
            return;
        }
        let due = self.last.is_none_or(|t| t.elapsed() >= REPORT_EVERY);
        if !(due || force) {
            return;
        }
        let lost = total - self.reported;
        tracing::warn!(
            dropped = lost,
            total,
            "access log: {lost} lines dropped since the last report ({total} in all): \
             the log destination is slower than the traffic"
        );
        self.reported = total;
        self.last = Some(Instant::now());
    }
}

async fn write_batch<W: AsyncWrite + Unpin>(writer: &mut W, buf: &[u8]) -> io::Result<()> {
    if !buf.is_empty() {
        writer.write_all(buf).await?;
    }
    writer.flush().await
}

/// The writer task: drains the queue in batches (at most `capacity` lines or
/// [`MAX_BATCH_BYTES`], so at most twice the queue is held in memory), writes and flushes
/// each batch, and reports drops while it waits (even on a writer that is stuck).
async fn run<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut rx: mpsc::Receiver<Msg>,
    capacity: usize,
    dropped: Arc<AtomicU64>,
    in_batch: Arc<AtomicU64>,
) {
    let mut reporter = DropReporter {
        dropped,
        reported: 0,
        last: None,
    };
    let mut tick = tokio::time::interval(REPORT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buf = String::new();
    let mut acks: Vec<oneshot::Sender<()>> = Vec::new();
    loop {
        let first = tokio::select! {
            msg = rx.recv() => match msg {
                Some(m) => m,
                None => break,
            },
            _ = tick.tick() => {
                reporter.report(false);
                continue;
            }
        };
        buf.clear();
        let mut lines = 0u64;
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Line(line) => {
                    buf.push_str(&line);
                    lines += 1;
                }
                Msg::Flush(ack) => {
                    acks.push(ack);
                    break;
                }
            }
            if buf.len() < MAX_BATCH_BYTES && lines < capacity as u64 {
                next = rx.try_recv().ok();
            }
        }
        in_batch.store(lines, Ordering::Relaxed);
        let result = {
            let write = write_batch(&mut writer, buf.as_bytes());
            tokio::pin!(write);
            loop {
                tokio::select! {
                    res = &mut write => break res,
                    _ = tick.tick() => reporter.report(false),
                }
            }
        };
        in_batch.store(0, Ordering::Relaxed);
        if let Err(e) = result {
            tracing::warn!(error = %e, "access log: write failed, no further lines will be written");
            // This batch is lost, and queued lines will not be written either: count them.
            reporter.dropped.fetch_add(lines, Ordering::Relaxed);
            rx.close();
            while let Ok(msg) = rx.try_recv() {
                if let Msg::Line(_) = msg {
                    reporter.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            reporter.report(true);
            return;
        }
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
        reporter.report(false);
    }
    let _ = writer.flush().await;
    reporter.report(true);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, micros: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, micros * 1000)
    }

    fn millis(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A normal 200 forwarded to the target.
    fn ok_200() -> Record {
        Record {
            start: at(1_714_566_896, 100_000),
            end: at(1_714_566_896, 112_345),
            client: "127.0.0.1:50314".parse().unwrap(),
            listener: "127.0.0.1:8080".parse().unwrap(),
            target: Some("127.0.0.1:9000".parse().unwrap()),
            request_processing: Some(Duration::from_micros(1_200)),
            target_processing: Some(millis(10)),
            response_processing: Some(Duration::from_micros(400)),
            lb_status: Some(200),
            target_status: Some(200),
            received_bytes: 78,
            sent_bytes: 155,
            body_bytes: 2,
            method: "GET".into(),
            scheme: "http",
            host: "localhost".into(),
            port: 8080,
            path: "/sleep/0?x=1".into(),
            version: "HTTP/1.1",
            user_agent: Some("curl/8.5.0".into()),
            trace_id: Some("Root=1-66323af0-0123456789abcdef01234567".into()),
            referer: None,
            request_id: Some("8d2e6f4c3b1a09f8e7d6c5b4a3928170".into()),
            reason: None,
            status_details: "response_sent_by_backend",
            cut: false,
            conn_trace_id: ConnTraceId(0x3180_a730_13c8_ca4b_ac2f_7311_59d4_b0fe),
            routed: true,
            tries: [Try {
                target: "127.0.0.1:9000".parse().unwrap(),
                status: Some(200),
                cause: None,
                bytes: 2,
                time: millis(11),
            }]
            .into_iter()
            .collect(),
        }
    }

    /// A request the ALB rejected before routing (a malformed head): 400, no target, no
    /// target group, no trace header added.
    fn rejected_400() -> Record {
        Record {
            end: at(1_714_566_896, 100_500),
            target: None,
            request_processing: None,
            target_processing: None,
            response_processing: None,
            lb_status: Some(400),
            target_status: None,
            sent_bytes: 272,
            user_agent: None,
            trace_id: None,
            reason: Some("malformed_request"),
            status_details: "malformed_request",
            routed: false,
            tries: Tries::default(),
            ..ok_200()
        }
    }

    /// The target sent nothing within the idle timeout: the ALB answered 504.
    fn idle_504() -> Record {
        Record {
            end: at(1_714_566_897, 100_000),
            request_processing: Some(millis(1)),
            target_processing: None,
            response_processing: None,
            lb_status: Some(504),
            target_status: None,
            sent_bytes: 291,
            path: "/sleep/5".into(),
            reason: Some("target_idle_timeout"),
            status_details: "backend_timeout",
            tries: Tries::default(),
            ..ok_200()
        }
    }

    /// A pooled connection the target had closed was reused: 502, not dispatched.
    fn race_502() -> Record {
        Record {
            end: at(1_714_566_896, 103_000),
            request_processing: None,
            target_processing: None,
            response_processing: None,
            lb_status: Some(502),
            target_status: None,
            sent_bytes: 272,
            path: "/".into(),
            user_agent: None,
            reason: Some("target_closed_connection"),
            status_details: "backend_connection_closed_before_data_sent_to_client",
            tries: Tries::default(),
            ..ok_200()
        }
    }

    fn fields(line: &str) -> Vec<&str> {
        line.split(' ').collect()
    }

    #[test]
    fn dates_are_utc_with_microseconds() {
        assert_eq!(rfc3339_micros(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339_micros(at(951_782_400, 0)),
            "2000-02-29T00:00:00.000000Z"
        );
        assert_eq!(
            rfc3339_micros(at(1_700_000_000, 7)),
            "2023-11-14T22:13:20.000007Z"
        );
        assert_eq!(
            rfc3339_micros(at(4_102_444_799, 999_999)),
            "2099-12-31T23:59:59.999999Z"
        );
        assert_eq!(
            rfc3339_micros(UNIX_EPOCH - Duration::from_secs(5)),
            "1970-01-01T00:00:00.000000Z"
        );
    }

    #[test]
    fn alb_line_of_a_normal_200() {
        let line = format_line(LogFormat::Alb, &ok_200());
        assert_eq!(
            line,
            "http 2024-05-01T12:34:56.112345Z app/lbsim/0000000000000000 127.0.0.1:50314 \
             127.0.0.1:9000 0.001 0.010 0.000 200 200 78 155 \
             \"GET http://localhost:8080/sleep/0?x=1 HTTP/1.1\" \"curl/8.5.0\" - - \
             arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/lbsim/0000000000000000 \
             \"Root=1-66323af0-0123456789abcdef01234567\" \"-\" \"-\" 0 \
             2024-05-01T12:34:56.100000Z \"forward\" \"-\" \"-\" \"127.0.0.1:9000\" \"200\" \"-\" \"-\" \
             TID_3180a73013c8ca4bac2f731159d4b0fe"
        );
        // 30 documented fields; the request line holds two spaces of its own.
        assert_eq!(fields(&line).len(), 30 + 2);
    }

    #[test]
    fn the_alb_type_field_says_https_and_h2() {
        // AWS, "Access log entries", `type`: http, https (HTTP/S over TLS), h2 (HTTP/2
        // over TLS). The request field carries the scheme, the listener port and version.
        for (scheme, version, kind) in [
            ("http", "HTTP/1.1", "http"),
            ("https", "HTTP/1.1", "https"),
            ("https", "HTTP/2.0", "h2"),
            ("http", "HTTP/2.0", "http"),
        ] {
            let r = Record {
                scheme,
                version,
                ..ok_200()
            };
            let line = format_line(LogFormat::Alb, &r);
            assert!(line.starts_with(&format!("{kind} ")), "{line}");
            assert!(
                line.contains(&format!(
                    " \"GET {scheme}://localhost:8080/sleep/0?x=1 {version}\" "
                )),
                "{line}"
            );
        }
    }

    #[test]
    fn alb_line_of_an_idle_timeout_504() {
        let line = format_line(LogFormat::Alb, &idle_504());
        let f = fields(&line);
        assert_eq!(
            f[1], "2024-05-01T12:34:57.100000Z",
            "time is when the response went out"
        );
        assert_eq!(f[4], "127.0.0.1:9000");
        assert_eq!(&f[5..12], ["0.001", "-1", "-1", "504", "-", "78", "291"]);
        assert!(line.contains(" 0 2024-05-01T12:34:56.100000Z \"forward\" "));
        assert!(
            line.ends_with(
                " \"127.0.0.1:9000\" \"-\" \"-\" \"-\" TID_3180a73013c8ca4bac2f731159d4b0fe"
            ),
            "{line}"
        );
    }

    #[test]
    fn alb_line_of_a_keep_alive_race_502() {
        let line = format_line(LogFormat::Alb, &race_502());
        let f = fields(&line);
        // aws-alb.md: all three timings are -1 when the request could not be dispatched
        // (the target closed the connection); no target status.
        assert_eq!(&f[5..12], ["-1", "-1", "-1", "502", "-", "78", "272"]);
        assert!(line.contains(" \"GET http://localhost:8080/ HTTP/1.1\" \"-\" - - "));
        assert!(
            line.ends_with(
                " \"127.0.0.1:9000\" \"-\" \"-\" \"-\" TID_3180a73013c8ca4bac2f731159d4b0fe"
            ),
            "{line}"
        );
    }

    #[test]
    fn alb_line_prints_whatever_timings_the_engine_measured() {
        // aws-alb.md also shows a race line with measured times: `0.001 4.205 -1 502 -`.
        let r = Record {
            request_processing: Some(millis(1)),
            target_processing: Some(millis(4205)),
            ..race_502()
        };
        let line = format_line(LogFormat::Alb, &r);
        assert!(line.contains(" 0.001 4.205 -1 502 - 78 272 "), "{line}");
    }

    #[test]
    fn alb_line_without_target_client_status_or_host() {
        let r = Record {
            target: None,
            lb_status: None,
            host: String::new(),
            method: String::new(),
            trace_id: None,
            ..race_502()
        };
        let line = format_line(LogFormat::Alb, &r);
        let f = fields(&line);
        assert_eq!(f[4], "-");
        assert_eq!(&f[8..10], ["-", "-"]);
        assert!(
            line.contains(" \"- http://127.0.0.1:8080/ HTTP/1.1\" "),
            "{line}"
        );
        assert!(line.contains(" \"-\" \"-\" \"-\" 0 "), "{line}");
        assert!(
            line.ends_with(" \"-\" \"-\" \"-\" \"-\" TID_3180a73013c8ca4bac2f731159d4b0fe"),
            "{line}"
        );
        let v6 = Record {
            listener: "[::1]:8080".parse().unwrap(),
            ..r
        };
        let line = format_line(LogFormat::Alb, &v6);
        assert!(
            line.contains(" \"- http://[::1]:8080/ HTTP/1.1\" "),
            "{line}"
        );
    }

    #[test]
    fn alb_line_keeps_quotes_and_newlines_out_of_fields() {
        let r = Record {
            user_agent: Some("evil\" \"agent\nnext".into()),
            path: "/a b\"c".into(),
            ..ok_200()
        };
        let line = format_line(LogFormat::Alb, &r);
        assert!(!line.contains('\n'));
        assert!(
            line.contains(" \"GET http://localhost:8080/a%20b%22c HTTP/1.1\" "),
            "{line}"
        );
        assert!(line.contains(" \"evil%22 %22agent%0Anext\" "), "{line}");
    }

    #[test]
    fn alb_line_of_a_request_rejected_before_routing() {
        // The shape of captured 400 lines (AWS logs the malformed request line as it can;
        // lbsim logs the request it parsed): no target group, rule or action.
        let line = format_line(LogFormat::Alb, &rejected_400());
        let f = fields(&line);
        assert_eq!(&f[4..10], ["-", "-1", "-1", "-1", "400", "-"], "{line}");
        assert!(
            line.ends_with(
                " \"-\" - - - \"-\" \"-\" \"-\" - 2024-05-01T12:34:56.100000Z \
                 \"-\" \"-\" \"-\" \"-\" \"-\" \"-\" \"-\" TID_3180a73013c8ca4bac2f731159d4b0fe"
            ),
            "{line}"
        );
        assert!(!line.contains("targetgroup"), "{line}");
    }

    #[test]
    fn conn_trace_ids_are_tid_and_32_hex_digits() {
        assert_eq!(
            ConnTraceId(0xab).to_string(),
            "TID_000000000000000000000000000000ab"
        );
        let (a, b) = (ConnTraceId::random(), ConnTraceId::random());
        assert_ne!(a, b);
        for id in [a, b] {
            let text = id.to_string();
            let hex = text.strip_prefix("TID_").unwrap_or_default();
            assert_eq!(hex.len(), 32, "{text}");
            assert!(hex.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')));
        }
    }

    fn json(format: LogFormat, r: &Record) -> serde_json::Value {
        let line = format_line(format, r);
        assert!(!line.contains('\n'));
        serde_json::from_str(&line).unwrap()
    }

    #[test]
    fn gcp_entry_of_a_normal_200() {
        let v = json(LogFormat::Gcp, &ok_200());
        assert_eq!(
            v,
            serde_json::json!({
                "httpRequest": {
                    "requestMethod": "GET",
                    "requestUrl": "http://localhost:8080/sleep/0?x=1",
                    "requestSize": "78",
                    "status": 200,
                    "responseSize": "155",
                    "userAgent": "curl/8.5.0",
                    "remoteIp": "127.0.0.1",
                    "serverIp": "127.0.0.1",
                    "latency": "0.012345s",
                    "protocol": "HTTP/1.1"
                },
                "jsonPayload": {
                    "@type": "type.googleapis.com/google.cloud.loadbalancing.type.LoadBalancerLogEntry",
                    "statusDetails": "response_sent_by_backend",
                    "backendTargetProjectNumber": "projects/0"
                },
                "resource": {
                    "type": "http_load_balancer",
                    "labels": {
                        "project_id": "lbsim",
                        "forwarding_rule_name": "lbsim",
                        "url_map_name": "lbsim",
                        "backend_service_name": "lbsim",
                        "target_proxy_name": "lbsim",
                        "zone": "global"
                    }
                },
                "logName": "projects/lbsim/logs/requests",
                "severity": "INFO",
                "timestamp": "2024-05-01T12:34:56.100000Z",
                "trace": "projects/lbsim/traces/1-66323af0-0123456789abcdef01234567"
            })
        );
    }

    #[test]
    fn gcp_entry_of_a_backend_timeout_504() {
        let r = Record {
            trace_id: Some("0123456789abcdef0123456789abcdef/123;o=1".into()),
            port: 80,
            ..idle_504()
        };
        let v = json(LogFormat::Gcp, &r);
        let h = &v["httpRequest"];
        assert_eq!(h["status"], 504);
        assert_eq!(
            h["requestUrl"], "http://localhost/sleep/5",
            "port 80 is implied"
        );
        assert_eq!(h["latency"], "1.000000s");
        assert_eq!(h["responseSize"], "291");
        assert_eq!(v["jsonPayload"]["statusDetails"], "backend_timeout");
        assert_eq!(v["severity"], "WARNING");
        assert_eq!(
            v["trace"],
            "projects/lbsim/traces/0123456789abcdef0123456789abcdef"
        );
    }

    #[test]
    fn gcp_entry_of_a_keep_alive_race_502() {
        let v = json(LogFormat::Gcp, &race_502());
        let h = &v["httpRequest"];
        assert_eq!(h["status"], 502);
        assert_eq!(h["latency"], "0.003000s");
        assert!(h.get("userAgent").is_none());
        assert_eq!(
            v["jsonPayload"]["statusDetails"],
            "backend_connection_closed_before_data_sent_to_client"
        );
        assert_eq!(v["severity"], "WARNING");
    }

    #[test]
    fn gcp_entry_when_the_client_left_or_no_target() {
        let r = Record {
            lb_status: Some(460),
            target: None,
            trace_id: None,
            reason: None,
            status_details: "client_disconnected_before_any_response",
            ..race_502()
        };
        let v = json(LogFormat::Gcp, &r);
        let h = &v["httpRequest"];
        assert!(h.get("status").is_none(), "{v}");
        assert!(h.get("serverIp").is_none(), "{v}");
        assert!(v.get("trace").is_none(), "{v}");
        assert_eq!(v["severity"], "INFO");
        // A 5xx from the app itself is the app's business: INFO.
        let app_500 = Record {
            lb_status: Some(500),
            target_status: Some(500),
            ..ok_200()
        };
        assert_eq!(json(LogFormat::Gcp, &app_500)["severity"], "INFO");
    }

    #[test]
    fn json_line_of_each_case() {
        assert_eq!(
            json(LogFormat::Json, &ok_200()),
            serde_json::json!({
                "time": "2024-05-01T12:34:56.112345Z",
                "request_time": "2024-05-01T12:34:56.100000Z",
                "client": "127.0.0.1:50314",
                "listener": "127.0.0.1:8080",
                "target": "127.0.0.1:9000",
                "method": "GET",
                "scheme": "http",
                "host": "localhost",
                "port": 8080,
                "path": "/sleep/0?x=1",
                "version": "HTTP/1.1",
                "status": 200,
                "target_status": 200,
                "reason": null,
                "status_details": "response_sent_by_backend",
                "cut": false,
                "request_processing_ms": 1.2,
                "target_processing_ms": 10.0,
                "response_processing_ms": 0.4,
                "duration_ms": 12.345,
                "received_bytes": 78,
                "sent_bytes": 155,
                "user_agent": "curl/8.5.0",
                "trace_id": "Root=1-66323af0-0123456789abcdef01234567"
            })
        );
        let v = json(LogFormat::Json, &idle_504());
        assert_eq!(v["status"], 504);
        assert_eq!(v["target_status"], serde_json::Value::Null);
        assert_eq!(v["reason"], "target_idle_timeout");
        assert_eq!(v["target_processing_ms"], serde_json::Value::Null);
        assert_eq!(v["duration_ms"], 1000.0);
        let v = json(LogFormat::Json, &race_502());
        assert_eq!(v["status"], 502);
        assert_eq!(v["reason"], "target_closed_connection");
        assert_eq!(v["request_processing_ms"], serde_json::Value::Null);
        assert_eq!(v["user_agent"], serde_json::Value::Null);
        let cut = Record {
            cut: true,
            reason: Some("target_idle_timeout"),
            ..ok_200()
        };
        assert_eq!(json(LogFormat::Json, &cut)["cut"], true);
    }

    /// `input.regex` of the `alb_access_logs` table in the AWS Athena User Guide, "Query
    /// Application Load Balancer logs" / "Create the table for ALB access logs"
    /// (docs.aws.amazon.com/athena/latest/ug/create-alb-access-logs-table.html), the
    /// current version, whose table adds `conn_trace_id` after `classification_reason`,
    /// copied as it stands in the DDL's SQL string literal. Its last group, `( .*)?`, is
    /// there (the guide says) to take fields AWS may add later.
    const ATHENA_ALB_INPUT_REGEX: &str = r#"([^ ]*) ([^ ]*) ([^ ]*) ([^ ]*):([0-9]*) ([^ ]*)[:-]([0-9]*) ([-.0-9]*) ([-.0-9]*) ([-.0-9]*) (|[-0-9]*) (-|[-0-9]*) ([-0-9]*) ([-0-9]*) \"([^ ]*) (.*) (- |[^ ]*)\" \"([^\"]*)\" ([A-Z0-9-_]+) ([A-Za-z0-9.-]*) ([^ ]*) \"([^\"]*)\" \"([^\"]*)\" \"([^\"]*)\" ([-.0-9]*) ([^ ]*) \"([^\"]*)\" \"([^\"]*)\" \"([^ ]*)\" \"([^\\s]+?)\" \"([^\\s]+)\" \"([^ ]*)\" \"([^ ]*)\" ?([^ ]*)? ?( .*)?"#;

    /// The Athena table's columns, in the order of the regex's groups (the last group,
    /// for fields added later, has no column).
    const ATHENA_COLUMNS: [&str; 34] = [
        "type",
        "time",
        "elb",
        "client_ip",
        "client_port",
        "target_ip",
        "target_port",
        "request_processing_time",
        "target_processing_time",
        "response_processing_time",
        "elb_status_code",
        "target_status_code",
        "received_bytes",
        "sent_bytes",
        "request_verb",
        "request_url",
        "request_proto",
        "user_agent",
        "ssl_cipher",
        "ssl_protocol",
        "target_group_arn",
        "trace_id",
        "domain_name",
        "chosen_cert_arn",
        "matched_rule_priority",
        "request_creation_time",
        "actions_executed",
        "redirect_url",
        "lambda_error_reason",
        "target_port_list",
        "target_status_code_list",
        "classification",
        "classification_reason",
        "conn_trace_id",
    ];

    /// The regex Hive reads from a SQL string literal: `\\` is one backslash and `\"` a
    /// quote (so the DDL's `[^\\s]` reaches the regex as `[^\s]`).
    fn unescape_sql_literal(literal: &str) -> String {
        let mut out = String::with_capacity(literal.len());
        let mut chars = literal.chars();
        while let Some(c) = chars.next() {
            match (c, chars.clone().next()) {
                ('\\', Some(next @ ('\\' | '"'))) => {
                    out.push(next);
                    chars.next();
                }
                _ => out.push(c),
            }
        }
        out
    }

    /// One parsed line: column name to value.
    type AthenaRow = std::collections::HashMap<&'static str, String>;

    /// Athena's RegexSerDe needs the whole line to match (Java `Matcher.matches`).
    /// Returns the named columns, and what the trailing group took (fields lbsim would
    /// have added past the documented ones).
    fn athena_parse(line: &str) -> Option<(AthenaRow, Option<String>)> {
        // The rest is Java regex syntax that the regex crate reads the same way.
        let pattern = format!("^(?:{})$", unescape_sql_literal(ATHENA_ALB_INPUT_REGEX));
        let re = regex::Regex::new(&pattern).unwrap();
        assert_eq!(re.captures_len() - 1, ATHENA_COLUMNS.len() + 1);
        let caps = re.captures(line)?;
        let row = ATHENA_COLUMNS
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let value = caps.get(i + 1).map_or("", |m| m.as_str());
                (*name, value.to_string())
            })
            .collect();
        let extra = caps
            .get(ATHENA_COLUMNS.len() + 1)
            .map(|m| m.as_str().to_string());
        Some((row, extra))
    }

    #[test]
    fn alb_lines_parse_with_the_athena_regex() {
        let unusual = Record {
            user_agent: Some("Mozilla/5.0 (X11; \"quoted\")\tx".into()),
            path: "/a b".into(),
            target: None,
            lb_status: Some(460),
            host: String::new(),
            ..race_502()
        };
        for r in [ok_200(), idle_504(), race_502(), unusual] {
            let line = format_line(LogFormat::Alb, &r);
            let (row, extra) = athena_parse(&line).unwrap_or_else(|| panic!("no match: {line}"));
            assert_eq!(extra, None, "no field past conn_trace_id: {line}");
            assert_eq!(row["type"], "http");
            assert_eq!(row["elb"], ALB_NAME);
            assert_eq!(row["client_ip"], "127.0.0.1");
            assert_eq!(row["client_port"], "50314");
            assert_eq!(
                row["elb_status_code"],
                r.lb_status.map(|s| s.to_string()).unwrap_or_default()
            );
            assert_eq!(row["request_verb"], "GET");
            assert_eq!(row["request_proto"], "HTTP/1.1");
            assert_eq!(row["target_group_arn"], ALB_TARGET_GROUP_ARN);
            assert_eq!(row["matched_rule_priority"], "0");
            assert_eq!(row["actions_executed"], "forward");
            assert_eq!(row["classification_reason"], "-");
            assert_eq!(row["conn_trace_id"], "TID_3180a73013c8ca4bac2f731159d4b0fe");
        }
        let (row, _) = athena_parse(&format_line(LogFormat::Alb, &ok_200())).unwrap();
        assert_eq!(row["time"], "2024-05-01T12:34:56.112345Z");
        assert_eq!(row["target_ip"], "127.0.0.1");
        assert_eq!(row["target_port"], "9000");
        assert_eq!(row["request_processing_time"], "0.001");
        assert_eq!(row["target_processing_time"], "0.010");
        assert_eq!(row["target_status_code"], "200");
        assert_eq!(row["received_bytes"], "78");
        assert_eq!(row["sent_bytes"], "155");
        assert_eq!(row["request_url"], "http://localhost:8080/sleep/0?x=1");
        assert_eq!(row["user_agent"], "curl/8.5.0");
        assert_eq!(row["trace_id"], "Root=1-66323af0-0123456789abcdef01234567");
        assert_eq!(row["request_creation_time"], "2024-05-01T12:34:56.100000Z");
        assert_eq!(row["target_port_list"], "127.0.0.1:9000");
        assert_eq!(row["target_status_code_list"], "200");

        let (row, _) = athena_parse(&format_line(LogFormat::Alb, &race_502())).unwrap();
        assert_eq!(row["request_processing_time"], "-1");
        assert_eq!(row["target_processing_time"], "-1");
        assert_eq!(row["response_processing_time"], "-1");
        assert_eq!(row["target_status_code"], "-");
        assert_eq!(row["user_agent"], "-");
        assert_eq!(row["target_status_code_list"], "-");

        // A request rejected before routing: `-` where the documentation and captured
        // 400 lines have it.
        let (row, extra) = athena_parse(&format_line(LogFormat::Alb, &rejected_400())).unwrap();
        assert_eq!(extra, None);
        // The regex reads the `-` target as the separator: no address, no port.
        assert_eq!((&*row["target_ip"], &*row["target_port"]), ("", ""));
        for column in [
            "target_status_code",
            "ssl_cipher",
            "target_group_arn",
            "trace_id",
            "matched_rule_priority",
            "actions_executed",
            "redirect_url",
            "lambda_error_reason",
            "target_port_list",
            "target_status_code_list",
            "classification",
            "classification_reason",
        ] {
            assert_eq!(row[column], "-", "{column}");
        }
        assert_eq!(row["target_processing_time"], "-1");
        assert_eq!(row["elb_status_code"], "400");
        assert_eq!(row["conn_trace_id"], "TID_3180a73013c8ca4bac2f731159d4b0fe");

        // The check itself can fail: a line with a field missing does not parse.
        let line = format_line(LogFormat::Alb, &ok_200());
        let broken = line.replacen(" 200 200 ", " 200 ", 1);
        assert!(athena_parse(&broken).is_none());
    }

    /// ingress-nginx's three read timeouts on one endpoint: 504, every try listed.
    fn nginx_504_three_tries() -> Record {
        let target: SocketAddr = "10.0.0.7:8000".parse().unwrap();
        let timed_out = |ms| Try {
            target,
            status: Some(504),
            cause: Some(crate::lb::reason::Reason::TargetTimeout),
            bytes: 0,
            time: millis(ms),
        };
        Record {
            end: at(1_714_566_896 + 180, 400_000),
            lb_status: Some(504),
            target_status: None,
            body_bytes: 160,
            sent_bytes: 160,
            path: "/sleep/200".into(),
            user_agent: Some("curl/8.5.0".into()),
            reason: Some("upstream_timed_out"),
            tries: [timed_out(60_001), timed_out(60_000), timed_out(60_002)]
                .into_iter()
                .collect(),
            ..ok_200()
        }
    }

    #[test]
    fn nginx_lines_have_the_controllers_default_format() {
        assert_eq!(
            format_line(LogFormat::Nginx, &ok_200()),
            "127.0.0.1 - - [01/May/2024:12:34:56 +0000] \"GET /sleep/0?x=1 HTTP/1.1\" 200 2 \
             \"-\" \"curl/8.5.0\" 78 0.012 [default-app-80] [] 127.0.0.1:9000 2 0.011 200 \
             8d2e6f4c3b1a09f8e7d6c5b4a3928170"
        );
        // Three timeouts on one endpoint: three addresses, lengths, times and 504s, in
        // the shape of captured controller lines (kubernetes/ingress-nginx issue 7673).
        assert_eq!(
            format_line(LogFormat::Nginx, &nginx_504_three_tries()),
            "127.0.0.1 - - [01/May/2024:12:37:56 +0000] \"GET /sleep/200 HTTP/1.1\" 504 160 \
             \"-\" \"curl/8.5.0\" 78 180.300 [default-app-80] [] 10.0.0.7:8000, \
             10.0.0.7:8000, 10.0.0.7:8000 0, 0, 0 60.001, 60.000, 60.002 504, 504, 504 \
             8d2e6f4c3b1a09f8e7d6c5b4a3928170"
        );
        // No endpoint tried: `-` for all four upstream fields.
        let no_endpoint = Record {
            target: None,
            target_status: None,
            lb_status: Some(503),
            body_bytes: 190,
            tries: Tries::default(),
            user_agent: None,
            referer: Some("http://example.test/".into()),
            ..ok_200()
        };
        let line = format_line(LogFormat::Nginx, &no_endpoint);
        assert!(
            line.ends_with(
                "\" 503 190 \"http://example.test/\" \"-\" 78 0.012 [default-app-80] [] \
                 - - - - 8d2e6f4c3b1a09f8e7d6c5b4a3928170"
            ),
            "{line}"
        );
        // Rejected before routing: no upstream name; a missing request id is made up.
        let rejected = Record {
            request_id: None,
            ..rejected_400()
        };
        let line = format_line(LogFormat::Nginx, &rejected);
        assert!(line.contains(" 400 2 "), "{line}");
        assert!(line.contains(" [] [] - - - - "), "{line}");
        let id = line.rsplit(' ').next().unwrap();
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{line}"
        );
    }

    #[test]
    fn nginx_lines_escape_as_nginx_does_and_a_record_without_tries_names_its_target() {
        let r = Record {
            user_agent: Some("evil\" \\agent\n\u{e9}".into()),
            path: "/a\"b".into(),
            tries: Tries::default(),
            ..ok_200()
        };
        let line = format_line(LogFormat::Nginx, &r);
        assert!(line.contains("\"GET /a\\x22b HTTP/1.1\""), "{line}");
        assert!(
            line.contains("\"evil\\x22 \\x5Cagent\\x0A\\xC3\\xA9\""),
            "{line}"
        );
        // One try at the record's target with the target's status (the 101 of a relay).
        assert!(
            line.contains(" [default-app-80] [] 127.0.0.1:9000 2 0.011 200 "),
            "{line}"
        );
    }

    #[test]
    fn tries_hold_one_inline_and_keep_their_order() {
        let t = |status| Try {
            target: "127.0.0.1:1".parse().unwrap(),
            status: Some(status),
            cause: None,
            bytes: 0,
            time: Duration::ZERO,
        };
        let mut tries = Tries::default();
        assert!(tries.is_empty() && tries.last().is_none());
        tries.push(t(502));
        assert_eq!(tries.len(), 1);
        assert_eq!(tries.more.capacity(), 0, "one try allocates nothing");
        tries.push(t(504));
        tries.push(t(200));
        let statuses: Vec<_> = tries.iter().map(|t| t.status).collect();
        assert_eq!(statuses, [Some(502), Some(504), Some(200)]);
        assert_eq!(tries.last().and_then(|t| t.status), Some(200));
    }

    #[test]
    fn nginx_time_local_is_the_common_log_format_in_utc() {
        assert_eq!(nginx_time_local(UNIX_EPOCH), "01/Jan/1970:00:00:00 +0000");
        assert_eq!(
            nginx_time_local(at(951_782_400, 999_999)),
            "29/Feb/2000:00:00:00 +0000"
        );
    }

    #[test]
    fn log_formats_are_cli_values() {
        use clap::ValueEnum;
        let names: Vec<_> = LogFormat::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value())
            .map(|p| p.get_name().to_string())
            .collect();
        assert_eq!(names, ["alb", "gcp", "json", "nginx"]);
    }
}
