//! Every value a profile holds, with its source and a confidence: `lbsim facts`.
//!
//! [`Profile::values`] lists what a profile holds as `(key, value)`; the tables below give
//! each key of each profile its source (a document's title and section, or a public
//! capture) and a [`Confidence`]. A test fails when a profile value has no entry here, or
//! an entry names a key the profile no longer has, so a fact cannot arrive without its
//! source and a source cannot outlive its fact.
//!
//! The sources are the ones collected in the project's reference notes
//! (`shared/reference/aws-alb.md`, `gcp-lb.md`, `fidelity-audit.md`) and the research on
//! Google's two generations; several keys share one source text. Where sources disagree,
//! the text says which one lbsim follows and what production may show instead.

use std::fmt;
use std::process::ExitCode;

use clap::ValueEnum;
use serde::Serialize;

use crate::lb::profile::{Cloud, Profile};

/// How well a value is supported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Confidence {
    /// The cloud's own documentation (user guide, API reference, gcloud help) states it.
    Documented,
    /// A public capture (curl transcript, issue thread, log paste) shows it.
    Captured,
    /// Derived: from a neighbouring documented fact, a documented pattern, or the software
    /// the cloud runs (Envoy's defaults); no source states it for this case.
    Inferred,
    /// Nothing found: lbsim's choice, to be replaced when a source turns up.
    Unconfirmed,
}

impl Confidence {
    /// Every confidence, strongest first (the order of `lbsim facts`' counts).
    pub(crate) const ALL: [Confidence; 4] = [
        Confidence::Documented,
        Confidence::Captured,
        Confidence::Inferred,
        Confidence::Unconfirmed,
    ];

    /// The word `lbsim facts` and its JSON use.
    pub(crate) fn word(self) -> &'static str {
        match self {
            Confidence::Documented => "documented",
            Confidence::Captured => "captured",
            Confidence::Inferred => "inferred",
            Confidence::Unconfirmed => "unconfirmed",
        }
    }
}

impl fmt::Display for Confidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

/// One value of one profile, with where it comes from.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Fact {
    /// The profile it belongs to.
    pub cloud: Cloud,
    /// Stable dotted name of the value (`outcome.keep_alive_race.page`).
    pub key: String,
    /// The value as lbsim holds it, in words.
    pub value: String,
    /// Document title and section, or the public capture, the value rests on.
    pub source: &'static str,
    /// How well the source supports the value.
    pub confidence: Confidence,
}

/// One row of a source table: key, source, confidence.
pub(crate) type Entry = (&'static str, &'static str, Confidence);

/// The facts of `profile`, in [`Profile::values`] order. A value without a source entry
/// (which the tests forbid) is shown as unconfirmed with a source saying so, rather than
/// hidden.
pub(crate) fn facts(profile: &Profile) -> Vec<Fact> {
    let table = sources(profile.cloud);
    profile
        .values()
        .into_iter()
        .map(|(key, value)| {
            let (source, confidence) = table
                .iter()
                .find(|(k, _, _)| *k == key)
                .map(|&(_, source, confidence)| (source, confidence))
                .unwrap_or((NO_SOURCE, Confidence::Unconfirmed));
            Fact {
                cloud: profile.cloud,
                key,
                value,
                source,
                confidence,
            }
        })
        .collect()
}

/// Shown for a value that has no entry in its profile's source table.
const NO_SOURCE: &str = "(no source recorded: add one to src/lb/facts.rs)";

#[cfg(test)]
/// What is wrong between a profile's values and its source table.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct SourceGaps {
    /// Keys the profile holds with no source entry.
    pub missing: Vec<String>,
    /// Keys with more than one source entry.
    pub duplicated: Vec<String>,
    /// Source entries naming a key the profile does not hold.
    pub stale: Vec<String>,
    /// Source entries whose source text is empty.
    pub empty: Vec<String>,
}

#[cfg(test)]
impl SourceGaps {
    /// True when every value has exactly one non-empty source and no source is left over.
    pub(crate) fn is_empty(&self) -> bool {
        *self == SourceGaps::default()
    }
}

#[cfg(test)]
/// Compares `profile`'s values with its source table.
pub(crate) fn check(profile: &Profile) -> SourceGaps {
    let table = sources(profile.cloud);
    let keys: Vec<String> = profile.values().into_iter().map(|(k, _)| k).collect();
    let mut gaps = SourceGaps::default();
    for key in &keys {
        match table.iter().filter(|(k, _, _)| k == key).count() {
            0 => gaps.missing.push(key.clone()),
            1 => {}
            _ => gaps.duplicated.push(key.clone()),
        }
    }
    for (key, source, _) in table {
        if !keys.iter().any(|k| k == key) {
            gaps.stale.push(key.to_string());
        }
        if source.trim().is_empty() {
            gaps.empty.push(key.to_string());
        }
    }
    gaps
}

/// The source table of a profile: key, source, confidence.
pub(crate) fn sources(cloud: Cloud) -> Vec<Entry> {
    match cloud {
        Cloud::Aws => AWS_SOURCES.to_vec(),
        Cloud::Gcp => [GCP_SHARED_SOURCES, GCP_GLOBAL_SOURCES].concat(),
        Cloud::GcpClassic => [GCP_SHARED_SOURCES, GCP_CLASSIC_SOURCES].concat(),
        Cloud::IngressNginx => NGINX_SOURCES.to_vec(),
    }
}

/// `lbsim facts`: every value a profile holds, with its source and confidence.
#[derive(clap::Args, Debug)]
pub struct FactsArgs {
    /// Only this cloud's profile (default: all three).
    #[arg(long, value_enum)]
    pub cloud: Option<Cloud>,
    /// Print the facts as one JSON array (full source texts) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The profiles `lbsim facts` shows, in the order of `--cloud`'s values.
const CLOUDS: [Cloud; 4] = [
    Cloud::Aws,
    Cloud::Gcp,
    Cloud::GcpClassic,
    Cloud::IngressNginx,
];

/// Runs `lbsim facts`.
pub(crate) fn run(args: FactsArgs) -> ExitCode {
    let clouds: Vec<Cloud> = match args.cloud {
        Some(cloud) => vec![cloud],
        None => CLOUDS.to_vec(),
    };
    if args.json {
        let all: Vec<Fact> = clouds.iter().flat_map(|&c| facts(Profile::of(c))).collect();
        return match serde_json::to_string_pretty(&all) {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("lbsim facts: cannot write JSON: {e}");
                ExitCode::from(1)
            }
        };
    }
    let width = terminal_width();
    for (i, &cloud) in clouds.iter().enumerate() {
        if i > 0 {
            println!();
        }
        print!("{}", table(Profile::of(cloud), width));
    }
    // The TCP load balancers `--l4` puts in front: shown with the whole list.
    if args.cloud.is_none() {
        print!("{}", crate::lb::l4::facts_text());
    }
    ExitCode::SUCCESS
}

/// Width the table is wrapped to: `$COLUMNS` when set (shells export it to programs only
/// on request, so it is a choice, not a measurement), else a width most terminals have.
fn terminal_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|&w| w >= MIN_WIDTH)
        .unwrap_or(DEFAULT_WIDTH)
}

/// Table width when `$COLUMNS` says nothing.
const DEFAULT_WIDTH: usize = 140;
/// Narrowest table: below it the source column would be a few words a line.
const MIN_WIDTH: usize = 80;
/// Longest key column; longer keys wrap.
const MAX_KEY_WIDTH: usize = 42;
/// Space between columns.
const GAP: &str = "  ";

/// The name `--cloud` takes for `cloud` (`gcp-classic`).
fn cloud_flag(cloud: Cloud) -> String {
    cloud
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_else(|| format!("{cloud:?}"))
}

/// One profile's facts as a table wrapped to `width`: a heading with the counts per
/// confidence, then one row per fact (key, value, confidence, source), each cell wrapped
/// in its own column.
pub(crate) fn table(profile: &Profile, width: usize) -> String {
    let facts = facts(profile);
    let counts = Confidence::ALL
        .iter()
        .map(|&c| {
            let n = facts.iter().filter(|f| f.confidence == c).count();
            format!("{n} {c}")
        })
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = format!(
        "{} (--cloud {}): {} facts: {counts}\n",
        profile.display_name,
        cloud_flag(profile.cloud),
        facts.len()
    );
    let width = width.max(MIN_WIDTH);
    // Keys get at most 3/10 of the width (a longer key wraps at its dots).
    let key_w = facts
        .iter()
        .map(|f| f.key.chars().count())
        .max()
        .unwrap_or(0)
        .clamp("KEY".len(), MAX_KEY_WIDTH.min(width * 3 / 10));
    let conf_w = "unconfirmed".len();
    let rest = width.saturating_sub(key_w + conf_w + 3 * GAP.len());
    // The value column gets two fifths of what is left: values are short, sources long.
    let value_w = rest * 2 / 5;
    let source_w = rest - value_w;
    let widths = [key_w, value_w, conf_w, source_w];
    push_row(&mut out, &widths, ["KEY", "VALUE", "CONFIDENCE", "SOURCE"]);
    for f in &facts {
        push_row(
            &mut out,
            &widths,
            [&f.key, &f.value, f.confidence.word(), f.source],
        );
    }
    out
}

/// Appends one table row: each cell wrapped to its column, lines side by side.
fn push_row(out: &mut String, widths: &[usize; 4], cells: [&str; 4]) {
    let wrapped: Vec<Vec<String>> = cells
        .iter()
        .zip(widths)
        .map(|(cell, &w)| wrap(cell, w))
        .collect();
    let lines = wrapped.iter().map(Vec::len).max().unwrap_or(1);
    for i in 0..lines {
        let mut line = String::new();
        for (col, cell) in wrapped.iter().enumerate() {
            let text = cell.get(i).map(String::as_str).unwrap_or("");
            if col + 1 == wrapped.len() {
                line.push_str(text);
            } else {
                line.push_str(text);
                let pad = widths[col].saturating_sub(text.chars().count());
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(GAP);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

/// Splits `text` into lines of at most `width` characters, at spaces where it can; a word
/// longer than the width is cut.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let mut word: Vec<char> = word.chars().collect();
        loop {
            let used = line.chars().count();
            let room = if used == 0 {
                width
            } else {
                width.saturating_sub(used + 1)
            };
            if word.len() <= room {
                if used > 0 {
                    line.push(' ');
                }
                line.extend(word.iter());
                break;
            }
            if used > 0 {
                lines.push(std::mem::take(&mut line));
                continue;
            }
            // A word wider than the column: cut it after its last `.`, `_` or `/` that
            // keeps a third of the line, else at the width.
            let cut = word[..width]
                .iter()
                .rposition(|c| matches!(c, '.' | '_' | '/'))
                .map(|p| p + 1)
                .filter(|&p| p >= width / 3)
                .unwrap_or(width);
            let rest = word.split_off(cut);
            lines.push(word.iter().collect());
            word = rest;
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

use Confidence::{Captured, Documented, Inferred, Unconfirmed};

// ---------------------------------------------------------------------------------------
// AWS Application Load Balancer. Pages of the Elastic Load Balancing user guide for
// Application Load Balancers (public repository awsdocs/elb-application-load-balancers-
// user-guide), as collected in shared/reference/aws-alb.md.
// ---------------------------------------------------------------------------------------

const A_IDLE: &str = "AWS ALB user guide, \"Edit attributes for your Application Load Balancer\", \
     \"Connection idle timeout\": idle_timeout.timeout_seconds, default 60 s (1-4000 s); a \
     connection, client or target side, on which no data is sent or received for that long is \
     closed";
const A_HTTP2_IDLE: &str = "AWS ALB user guide, \"Edit attributes for your Application Load \
     Balancer\", \"Connection idle timeout\": \"Application Load Balancers do not support HTTP/2 \
     PING frames. These do not reset the connection idle timeout.\" That the idle close is a \
     GOAWAY (NO_ERROR) before the FIN is inferred from RFC 9113 §6.8 (an endpoint SHOULD send \
     GOAWAY before closing); no capture seen";
const A_HTTP2_MAX_AGE: &str = "AWS ALB user guide, \"Edit attributes ...\", \"HTTP client \
     keepalive duration\": the page says HTTP/1.x clients get `Connection: close`; that HTTP/2 \
     clients get a GOAWAY frame is recalled from the same page but was not found in a stored \
     copy, so lbsim marks it inferred. The page's \"accepts one request\" is HTTP/1 wording: \
     lbsim sends the GOAWAY when the age is reached and lets open streams finish";
const A_GRPC_ERRORS: &str = "Captured (fidelity-audit.md, public threads): gRPC through an ALB \
     with the target unavailable: `HTTP/2 502`, `server: awselb/2.0`, `grpc-status: 14`, \
     `grpc-message: unavailable`. For the ALB's other statuses lbsim infers the code from \
     gRPC's HTTP-to-gRPC mapping (grpc/grpc doc/http-grpc-status-mapping.md: 502, 503, 504, \
     429 -> 14 UNAVAILABLE; 400 -> 13; other -> 2) and its name as the message";
const A_PROTOCOL_VERSION: &str = "AWS ALB user guide, \"Target groups for your Application \
     Load Balancers\", \"Protocol version\" (its table, as quoted in public READMEs): HTTP/1.1 \
     and HTTP/2 requests succeed to HTTP1; gRPC to HTTP1 is an error; HTTP/1.1 to HTTP2 is an \
     error; HTTP/2 to GRPC succeeds if a POST request; HTTP/1.1 to GRPC is an error";
const A_TS_464: &str = "AWS ALB user guide, \"Troubleshoot your Application Load Balancers\", \
     HTTP 464: the load balancer received an incoming request protocol that is incompatible \
     with the version config of the target group protocol";
const A_GRPC_HEALTH: &str = "AWS ALB user guide, \"Health checks for your target groups\": \
     for a target group of protocol version GRPC the default health check path is \
     /AWS.ALB/healthcheck and the default success code (Matcher GrpcCode) is 12";
const A_UPGRADES: &str = "Unconfirmed: AWS documents WebSocket support on ALB listeners and \
     nothing on other upgrades; lbsim relays any upgrade the app accepts and never refuses one";
const A_ANYSCALE: &str = "Anyscale documentation, services on AWS (the troubleshooting article \
     lbsim started from, and Anyscale's timeouts page): the ALB idle timeout is set to 300 s";
const A_TARGET_KEEPALIVE: &str = "AWS ALB user guide, \"Edit attributes for your Application Load \
     Balancer\", \"Connection idle timeout\": the load balancer keeps two connections per request \
     and the idle timeout applies to both; the same page advises a target keep-alive longer than \
     the idle timeout";
const A_CLIENT_KEEPALIVE: &str = "AWS ALB user guide, \"Edit attributes for your Application Load \
     Balancer\", \"HTTP client keepalive duration\": client_keep_alive.seconds, default 3600 s \
     (60-604800 s), counted from the start of the connection; after it the ALB answers the next \
     HTTP/1.x request with `Connection: close`";
const A_TS_504: &str = "AWS ALB user guide, \"Troubleshoot your Application Load Balancers\", \
     \"HTTP 504: Gateway timeout\": the target does not respond before the idle timeout elapses; \
     a connection to the target is not established within 10 seconds (fixed, no setting)";
const A_TS_502_CONNECT: &str = "AWS ALB user guide, \"Troubleshoot your Application Load \
     Balancers\", \"HTTP 502: Bad gateway\": the load balancer received a TCP RST from the target \
     when attempting to establish a connection";
const A_TS_502_CLOSED: &str = "AWS ALB user guide, \"Troubleshoot your Application Load \
     Balancers\", \"HTTP 502: Bad gateway\": the target closed the connection with a TCP RST or a \
     TCP FIN while the load balancer had an outstanding request to the target (a reused \
     keep-alive connection the target closed is this case: the keep-alive mismatch)";
const A_TS_502_MIDBODY: &str = "Inferred from AWS ALB user guide, \"Troubleshoot your Application \
     Load Balancers\", \"HTTP 502\" (target closed the connection with a request outstanding): \
     once the response head has gone out no status can be sent, the client's response is cut, \
     and lbsim counts and logs it as that 502; AWS documents no separate case";
const A_TS_502_MALFORMED: &str = "AWS ALB user guide, \"Troubleshoot your Application Load \
     Balancers\", \"HTTP 502: Bad gateway\": the target response is malformed or contains HTTP \
     headers that are not valid";
const A_TS_502_DEREG: &str = "AWS ALB user guide, \"Troubleshoot your Application Load \
     Balancers\", \"HTTP 502: Bad gateway\": the deregistration delay period elapsed for a \
     request being handled by a target that was deregistered";
const A_TS_503: &str = "AWS ALB user guide, \"Troubleshoot your Application Load Balancers\", \
     \"HTTP 503: Service unavailable\": the target groups for the load balancer have no \
     registered targets";
const A_NO_HEALTHY: &str = "Inferred: with fail-open (\"Health checks for Application Load \
     Balancer target groups\") \
     the ALB never answers for unhealthy targets; lbsim keeps the 503 of an empty target group \
     so the outcome table is total, and the case cannot occur";
const A_TS_400: &str = "AWS ALB user guide, \"Troubleshoot your Application Load Balancers\", \
     \"HTTP 400: Bad request\": the client sent a malformed request that does not meet the HTTP \
     specification";
const A_TS_400_SIZE: &str = "AWS ALB user guide, \"Troubleshoot your Application Load \
     Balancers\", \"HTTP 400: Bad request\": the request header exceeded 16K per request line, \
     16K per single header, or 64K for the entire request header (the same guide also lists 414 \
     \"URI too long\"; which of the two a long request line gets is unconfirmed)";
const A_TS_463: &str = "AWS ALB user guide, \"Troubleshoot your Application Load Balancers\", \
     \"HTTP 463\": the load balancer received an X-Forwarded-For request header with more than \
     30 IP addresses";
const A_TS_501: &str = "AWS ALB user guide, \"Troubleshoot your Application Load Balancers\", \
     \"HTTP 501: Not implemented\": a Transfer-Encoding header with an unsupported value; the \
     supported values are chunked and identity";
const A_TS_405: &str = "AWS ALB user guide, \"Troubleshoot your Application Load Balancers\", \
     \"HTTP 405: Method not allowed\": the client used the TRACE method";
const A_DESYNC_400: &str = "Inferred: AWS ALB user guide, \"Application Load Balancers\", \
     \"Desync mitigation mode\": defensive mode blocks Severe requests (the status is not named \
     there); aws-alb.md lists a Severe request in defensive mode among the 400 causes";
const A_TS_408: &str = "AWS ALB user guide, \"Troubleshoot your Application Load Balancers\", \
     \"HTTP 408: Request timeout\": the client did not send data before the idle timeout period \
     expired";
const A_TS_460: &str = "AWS ALB user guide, \"Troubleshoot your Application Load Balancers\", \
     \"HTTP 460\": the client closed the connection before the idle timeout period elapsed; a \
     code of the access log only, nothing is sent";
const A_PAGE_502: &str = "Public captures of the ALB's 502 (curl transcripts, fidelity-audit.md \
     row 1 and \"ALB captures\"): this body, `server: awselb/2.0`, `content-type: text/html`, \
     `content-length: 122`; HTTP/1.1 captures also show `Date` right after `Server` and \
     `Connection: keep-alive` last, as lbsim sends them";
const A_PAGE_503: &str = "Public `curl -v` capture of an empty target group's 503 \
     (fidelity-audit.md row 2 and \"ALB captures\"): this 162-byte body and phrase; headers \
     `Server: awselb/2.0`, `Date`, `Content-Type: text/html`, `Content-Length: 162`, \
     `Connection: keep-alive` in that order, as lbsim writes them";
const A_PAGE_400: &str = "Inferred: no capture of the ALB's 400 body found; the captured \
     502/503 layout (CRLF lines, title and h1 the same) with \"400 Bad Request\", and \
     `Connection: close` (aws-alb.md, \"The ALB's own error responses\")";
const A_PAGE_UNSEEN: &str = "No capture found (fidelity-audit.md row 3): the captured 502/503 \
     layout with this status and phrase; the phrase (nginx's) and the bytes are lbsim's guess";
const A_PAGE_NONE: &str = "AWS ALB user guide, \"Troubleshoot your Application Load \
     Balancers\", \"HTTP 460\": the client has closed the connection, so nothing is sent";
const A_HC: &str = "AWS ALB user guide, \"Health checks for Application Load Balancer target \
     groups\", \"Health check settings\": path /, interval 30 s (5-300), timeout 5 s (2-120), healthy threshold 5, \
     unhealthy threshold 2, success codes 200; the checker's User-Agent is ELB-HealthChecker/2.0";
const A_HC_INITIAL: &str = "AWS ALB user guide, \"Health checks for Application Load Balancer \
     target groups\": \"After your target is registered, it must pass one health check to be \
     considered healthy\"";
const A_FAIL_OPEN: &str = "AWS ALB user guide, \"Health checks for Application Load Balancer \
     target groups\": \"If a target group contains only unhealthy registered targets, the load \
     balancer routes requests to all those targets, regardless of their health status\"";
const A_NO_RETRY: &str = "Inferred: no cause in \"Troubleshoot your Application Load Balancers\" \
     mentions a retry, and an access-log line names one target per request";
const A_DEREG: &str = "AWS ALB user guide, \"Target groups for your Application Load \
     Balancers\", \"Deregistration delay\": deregistration_delay.timeout_seconds, default 300 s \
     (0-3600 s)";
const A_LOG: &str = "AWS ALB user guide, \"Access logs for your Application Load Balancer\", \
     \"Access log entries\" (field order; `-` for target group, rule and action of unrouted \
     requests), and AWS Athena user guide, \"Query Application Load Balancer logs\" \
     (`conn_trace_id` last)";
const A_XFF: &str = "AWS ALB user guide, \"HTTP headers and Application Load Balancers\", \
     \"X-Forwarded-For\": `X-Forwarded-For: client-ip-address`, or with a supplied header \
     `ip-address-1, ip-address-2, client-ip-address` (mode `append`, the default); the load \
     balancer's own address is not added";
const A_PORT: &str = "AWS ALB user guide, \"HTTP headers and Application Load Balancers\", \
     \"X-Forwarded-Port\": the destination port the client connected to";
const A_TRACE: &str = "AWS ALB user guide, \"Request tracing for your Application Load \
     Balancer\": `X-Amzn-Trace-Id: Root=1-{epoch hex}-{24 hex}`; `Self=` added in front of an \
     existing one";
const A_VIA: &str = "Inferred: \"HTTP headers and Application Load Balancers\" lists the \
     X-Forwarded headers and X-Amzn-Trace-Id, no Via; captures of ALB responses show none";
const A_CASE: &str = "Unconfirmed: no AWS page says how the ALB writes header names on \
     HTTP/1.1; lbsim passes them as received and writes its own in Title-Case";
const A_QUOTA: &str = "AWS ALB user guide, \"Quotas for your Application Load Balancers\", \
     \"HTTP headers\": request line 16K, single header 16K, entire request header 64K (lbsim \
     counts the request line apart from the 64K)";
const A_CONNECT: &str = "Inferred from the Classic Load Balancer guide, \"Troubleshoot a \
     Classic Load Balancer: HTTP errors\", \"HTTP 400: BAD_REQUEST\": the client used the HTTP \
     CONNECT method, which is not supported by Elastic Load Balancing; the ALB guide is silent";
const A_HOST: &str = "Unconfirmed: no AWS source; RFC 9112 section 3.2 (400 for an HTTP/1.1 \
     request without Host or with more than one). HTTP/1.0 without Host is served: the ALB \
     guide's \"HTTP 401\" causes include an HTTP/1.0 request without a host header";
const A_DESYNC: &str = "AWS ALB user guide, \"Application Load Balancers\", \"Desync \
     mitigation mode\": routing.http.desync_mitigation_mode, default defensive; tiers from aws/http-desync-guardian (docs/README.md)";

const A_WEBSOCKET: &str = "AWS ALB user guide, \"Edit attributes for your Application Load \
     Balancer\", \"Connection idle timeout\" and \"WebSockets\": the idle timeout applies to \
     upgraded (WebSocket) connections; frames sent or received either way are activity";

/// Sources of [`crate::lb::profile::AWS_ALB`], in the order of its values.
static AWS_SOURCES: &[Entry] = &[
    ("websocket_timeout", A_WEBSOCKET, Documented),
    ("timeout_kind", A_IDLE, Documented),
    ("timers.anyscale.timeout", A_ANYSCALE, Documented),
    ("timers.anyscale.connect_timeout", A_TS_504, Documented),
    ("timers.native.timeout", A_IDLE, Documented),
    ("timers.native.connect_timeout", A_TS_504, Documented),
    ("backend_keep_alive", A_TARGET_KEEPALIVE, Documented),
    ("client_idle", A_IDLE, Documented),
    ("client_max_age", A_CLIENT_KEEPALIVE, Documented),
    ("http2_client_idle", A_HTTP2_IDLE, Documented),
    ("grpc_errors", A_GRPC_ERRORS, Captured),
    ("health.grpc", A_GRPC_HEALTH, Documented),
    ("checks_target_protocol", A_PROTOCOL_VERSION, Documented),
    ("upgrades", A_UPGRADES, Unconfirmed),
    ("outcome.upgrade_refused", A_UPGRADES, Unconfirmed),
    ("outcome.upgrade_refused.page", A_UPGRADES, Unconfirmed),
    ("outcome.incompatible_protocol", A_TS_464, Documented),
    (
        "outcome.incompatible_protocol.page",
        A_PAGE_UNSEEN,
        Unconfirmed,
    ),
    ("http2_client_max_age", A_HTTP2_MAX_AGE, Inferred),
    ("client_keep_alive_meaning", A_CLIENT_KEEPALIVE, Documented),
    ("health.path", A_HC, Documented),
    ("health.interval", A_HC, Documented),
    ("health.timeout", A_HC, Documented),
    ("health.healthy_threshold", A_HC, Documented),
    ("health.unhealthy_threshold", A_HC, Documented),
    ("health.initial_passes", A_HC_INITIAL, Documented),
    ("health.user_agent", A_HC, Documented),
    ("fails_open", A_FAIL_OPEN, Documented),
    ("retry", A_NO_RETRY, Inferred),
    ("deregistration_delay", A_DEREG, Documented),
    ("log_format", A_LOG, Documented),
    ("outcome.target_timeout", A_TS_504, Documented),
    ("outcome.target_timeout.page", A_PAGE_UNSEEN, Unconfirmed),
    ("outcome.connect_timeout", A_TS_504, Documented),
    ("outcome.connect_timeout.page", A_PAGE_UNSEEN, Unconfirmed),
    ("outcome.connect_refused", A_TS_502_CONNECT, Documented),
    ("outcome.connect_refused.page", A_PAGE_502, Captured),
    (
        "outcome.target_closed_connection",
        A_TS_502_CLOSED,
        Documented,
    ),
    (
        "outcome.target_closed_connection.page",
        A_PAGE_502,
        Captured,
    ),
    ("outcome.target_closed_mid_body", A_TS_502_MIDBODY, Inferred),
    (
        "outcome.target_closed_mid_body.page",
        A_TS_502_MIDBODY,
        Inferred,
    ),
    ("outcome.keep_alive_race", A_TS_502_CLOSED, Documented),
    ("outcome.keep_alive_race.page", A_PAGE_502, Captured),
    ("outcome.malformed_response", A_TS_502_MALFORMED, Documented),
    ("outcome.malformed_response.page", A_PAGE_502, Captured),
    ("outcome.no_registered_targets", A_TS_503, Documented),
    ("outcome.no_registered_targets.page", A_PAGE_503, Captured),
    ("outcome.no_healthy_targets", A_NO_HEALTHY, Inferred),
    ("outcome.no_healthy_targets.page", A_PAGE_503, Captured),
    (
        "outcome.deregistration_delay_elapsed",
        A_TS_502_DEREG,
        Documented,
    ),
    (
        "outcome.deregistration_delay_elapsed.page",
        A_PAGE_502,
        Captured,
    ),
    ("outcome.malformed_request", A_TS_400, Documented),
    ("outcome.malformed_request.page", A_PAGE_400, Inferred),
    ("outcome.request_too_large", A_TS_400_SIZE, Documented),
    ("outcome.request_too_large.page", A_PAGE_400, Inferred),
    ("outcome.too_many_forwarded_for", A_TS_463, Documented),
    (
        "outcome.too_many_forwarded_for.page",
        A_PAGE_UNSEEN,
        Unconfirmed,
    ),
    (
        "outcome.unsupported_transfer_encoding",
        A_TS_501,
        Documented,
    ),
    (
        "outcome.unsupported_transfer_encoding.page",
        A_PAGE_UNSEEN,
        Unconfirmed,
    ),
    ("outcome.method_not_allowed", A_TS_405, Documented),
    (
        "outcome.method_not_allowed.page",
        A_PAGE_UNSEEN,
        Unconfirmed,
    ),
    ("outcome.desync_blocked", A_DESYNC_400, Inferred),
    ("outcome.desync_blocked.page", A_PAGE_400, Inferred),
    ("outcome.client_timeout", A_TS_408, Documented),
    ("outcome.client_timeout.page", A_PAGE_UNSEEN, Unconfirmed),
    ("outcome.client_closed", A_TS_460, Documented),
    ("outcome.client_closed.page", A_PAGE_NONE, Documented),
    ("forwarding.xff_appends_lb_address", A_XFF, Documented),
    ("forwarding.xff_separator", A_XFF, Documented),
    ("forwarding.header_case", A_CASE, Unconfirmed),
    ("forwarding.port_header", A_PORT, Documented),
    ("forwarding.trace", A_TRACE, Documented),
    ("forwarding.via", A_VIA, Inferred),
    ("validation.max_request_line", A_QUOTA, Documented),
    ("validation.max_header_line", A_QUOTA, Documented),
    ("validation.max_head", A_QUOTA, Documented),
    ("validation.max_forwarded_for", A_TS_463, Documented),
    ("validation.refused_method.TRACE", A_TS_405, Documented),
    ("validation.refused_method.CONNECT", A_CONNECT, Inferred),
    ("validation.host.required_in_http11", A_HOST, Unconfirmed),
    ("validation.host.repeated", A_HOST, Unconfirmed),
    ("validation.desync", A_DESYNC, Documented),
];

// ---------------------------------------------------------------------------------------
// Google Cloud: both generations. Google's load-balancing documentation and gcloud help,
// as collected in shared/reference/gcp-lb.md, fidelity-audit.md and the research on the
// two generations (its section 7 is the decision table these follow).
// ---------------------------------------------------------------------------------------

const G_TIMEOUT: &str = "gcloud compute backend-services create --help, `--timeout` (default \
     30s): for HTTP, the amount of time the load balancer waits for a backend to return a full \
     response to a request";
const G_ANYSCALE: &str = "Anyscale documentation, services on GCP (the troubleshooting article \
     lbsim started from): the backend service timeout is set to 600 s, and it applies even while \
     a response is in progress";
const G_CONNECT: &str = "Unconfirmed: no Google source gives a connect timeout for backends \
     (fidelity-audit.md row 20; connect failures, timeouts included, log \
     failed_to_connect_to_backend); lbsim uses the ALB's fixed 10 s";
const G_DIST: &str = "Google Cloud, \"Request distribution for external Application Load \
     Balancers\" (load-balancing/docs/https/request-distribution), keep-alive timeouts: backend \
     HTTP keep-alive 600 s, fixed; client HTTP keep-alive 610 s (configurable 5-1200 s on the \
     global external one)";
const G_HTTP2_IDLE: &str = "Inferred: Google's client HTTP keep-alive timeout (610 s, \
     \"Request distribution for external Application Load Balancers\") is documented for \
     connections, not per protocol; lbsim applies it to HTTP/2 as to HTTP/1.1. Whether a \
     client's PING frames keep a connection open is not documented; lbsim counts only streams";
const G_GLOBAL_GRPC_ERRORS: &str = "Inferred from Envoy, which the global external load \
     balancer runs: a local reply to a gRPC request is trailers-only (HTTP 200, \
     content-type application/grpc, grpc-status from Grpc::Utility::httpToGrpcStatus, the \
     reply text as grpc-message). No capture from Google seen";
const G_CLASSIC_GRPC_ERRORS: &str = "Unconfirmed: no source or capture of the Google Front \
     End's answer to a gRPC client seen; lbsim sends its page, which gRPC clients map by HTTP \
     status (502 -> UNAVAILABLE)";
const G_TRANSLATES: &str = "Inferred: a backend service's protocol (HTTP, HTTP2) is what the \
     load balancer speaks to backends; clients may use HTTP/1.1 or HTTP/2 either way, and no \
     Google source names a status for a mismatch";
const G_GRPC_HEALTH: &str = "Google Cloud, \"Health checks overview\", gRPC health checks: \
     the prober calls the gRPC health checking protocol (grpc.health.v1.Health/Check, an \
     optional grpcServiceName) and passes on SERVING";
const G_UPGRADE_STATUS: &str = "Google Cloud, \"Migration overview\" \
     (load-balancing/docs/https/migrate-to-global), data plane differences: \"Connection \
     upgrade failure (for example, upgrading to Websocket)\": classic returns HTTP 400, global \
     external returns HTTP 403";
const G_UPGRADES: &str = "Inferred: Google's load balancers support WebSockets and document no \
     other upgrade; the global one runs Envoy, which answers an upgrade type it is not \
     configured for with a 403 local reply (response_code_details upgrade_failed: \
     envoyproxy/gateway#9452, istio/istio#50980) and drops h2c upgrades. lbsim refuses every \
     Upgrade but websocket (h2c dropped) with the migration overview's statuses";
const G_UPGRADE_CLASSIC_PAGE: &str = "Inferred: the Google Front End's 400 page, as for its \
     other rejected requests; no capture of a failed upgrade seen";
const G_UPGRADE_GLOBAL_PAGE: &str = "Inferred from an Envoy capture (projectcontour/contour#5675: \
     403, `content-length: 0`, `connection: close`, no body) with Google's headers (no \
     `server`, `via: 1.1 google`); no capture from Google seen";
const G_NO_MAX_AGE: &str = "Inferred: Google documents an idle client keep-alive timeout \
     (\"Request distribution ...\") and no limit on a client connection's total age";
const G_HC: &str = "Google Cloud Compute API reference, HealthCheck (checkIntervalSec 5, \
     timeoutSec 5, healthyThreshold 2, unhealthyThreshold 2, requestPath /), and \"Health checks \
     overview\" (probes send User-Agent GoogleHC/1.0)";
const G_HC_INITIAL: &str =
    "Inferred: gcp-lb.md \"a backend counts only once healthy\"; lbsim asks \
     a new backend for the full healthy threshold, as Google states no shorter first check";
const G_FAIL_CLOSED: &str = "Google Cloud, \"Migration overview\" \
     (load-balancing/docs/https/migrate-to-global), data-plane differences: \"All backends are \
     unhealthy\" returns HTTP 502 (classic) / 503 (global external): no failing open";
const G_RETRY_CLASSIC: &str = "gcloud compute backend-services create --help, `--timeout`: \"The \
     load balancer retries the HTTP GET request one time if the backend closes the connection \
     or times out before sending response headers ... If the backend sends response headers or \
     if the request sent to the backend is not an HTTP GET request, the load balancer does not \
     retry\"";
const G_RETRY_ON_CLASSIC: &str = "Inferred from gcloud `--timeout` help (a GET is retried once if \
     the backend closes the connection before response headers: documented) for a refused \
     connection too; a timeout before headers, which the text also retries, is not retried by \
     lbsim (how the two attempts share the timeout is unconfirmed)";
const G_RETRY_GLOBAL: &str = "Inferred for the global external load balancer from Google's \
     internal Application Load Balancer overview, \"Retries\" (same Envoy data plane): without a \
     retry policy, unsuccessful requests that have no HTTP body (for example, GET) that result \
     in 502, 503 or 504 are retried once; POST is not retried; one log entry for the final \
     response. lbsim retries a request without a body of any method but POST, on a close or a \
     refused connection, not on a timeout";
const G_DRAIN: &str = "Unconfirmed: gcloud `--connection-draining-timeout` help says \"If the \
     flag is omitted API default value (0s) will be used\" (draining off); lbsim keeps 300 s, \
     the value consoles and Terraform examples commonly set; `--deregistration-delay 0` gives \
     the API default";
const G_LOG_FORMAT: &str = "Google Cloud, \"Global external Application Load Balancer and \
     classic Application Load Balancer logging and monitoring\": one Cloud Logging entry per \
     request (httpRequest, jsonPayload.statusDetails)";
const G_MIG_RESET: &str = "Google Cloud, \"Migration overview\" \
     (load-balancing/docs/https/migrate-to-global), data-plane differences: \"Early upstream \
     connection reset by the backend\" returns HTTP 502 (classic) / 503 (global external); the \
     logging page's word is backend_connection_closed_before_data_sent_to_client";
const G_MIG_UNHEALTHY: &str = "Google Cloud, \"Migration overview\" \
     (load-balancing/docs/https/migrate-to-global), data-plane differences: \"All backends are \
     unhealthy\" returns HTTP 502 (classic) / 503 (global external); logged \
     failed_to_pick_backend (logging page)";
const G_EMPTY: &str = "Inferred: an empty backend service is the \"All backends are unhealthy\" \
     row of Google's \"Migration overview\" (502 classic / 503 global) with no backend at all; \
     Google logs both failed_to_pick_backend";
const G_CONNECT_FAIL: &str = "Google Cloud logging page, statusDetails \
     failed_to_connect_to_backend (\"includes timeouts during the connection phase\"): 502, 503; \
     which generation answers which is inferred from the \"Migration overview\" pattern \
     (classic 502, global external 503)";
const G_MIDBODY: &str = "Google Cloud logging page, statusDetails \
     backend_connection_closed_after_partial_response_sent: Google logs the backend's status \
     (0 if its headers were incomplete); the client's response is cut. lbsim's status here is \
     its own count (inferred) and never reaches the client";
const G_CORRUPTED: &str = "Google Cloud logging page, statusDetails backend_response_corrupted \
     (\"invalid chunked transfer-encoding or is otherwise corrupted\", often 502, 503): its use \
     for a malformed response head is inferred (fidelity-audit.md row 23), the status by the \
     \"Migration overview\" pattern (classic 502, global 503)";
const G_DEREG: &str = "Unconfirmed: Google documents that draining ends with existing \
     connections closed (gcloud `--connection-draining-timeout`) but no status or statusDetails \
     for a request still in flight; the word is lbsim's";
const G_400: &str = "Google Cloud logging page: requests a first-layer Google Front End rejects \
     (failed_parsing_client_headers, invalid_request_headers, http_version_not_supported, \
     invalid_chunk_framing) get 400, for both the global external and the classic load balancer";
const G_NEVER: &str = "Never produced on Google Cloud: lbsim's GCP rules have no such check (no \
     Google limit or rule documented), so this row only keeps the outcome table total";
const G_501: &str = "Unconfirmed for Google Front Ends: RFC 9112 section 6.1 (501 for a \
     transfer coding the server does not understand); no Google source names the answer";
const G_DESYNC_400: &str = "Inferred: no Google source on request smuggling; RFC 9112 section 6.3 \
     makes an invalid or conflicting Content-Length a 400, and Google's logging page lists 400 \
     for invalid chunk framing and a missing required Content-Length";
const G_408: &str = "Google Cloud logging page, statusDetails client_timed_out: \"The Google \
     Front End (GFE) idled out the client connection due to lack of progress while it was \
     proxying either the request or the response\": 0 or 408";
const G_460: &str = "Google Cloud logging page, statusDetails \
     client_disconnected_before_any_response: status 0, nothing sent. lbsim's 460 is the ALB's \
     code for the same case; its GCP log entry writes no status";
const G_NONE_SENT: &str = "Google Cloud logging page, client_disconnected_before_any_response: \
     the connection to the client was broken before the load balancer sent any response";
const G_XFF_APPEND: &str = "Google Cloud, \"External Application Load Balancer overview\", \
     \"X-Forwarded-For header\": `X-Forwarded-For: [<supplied-value>,]<client-ip>,<load-balancer-ip>` \
     (the client's address, then the load balancer's)";
const G_PORT: &str = "Inferred: the header table of Google's \"External Application Load \
     Balancer overview\" lists X-Forwarded-For, X-Forwarded-Proto and Via, no X-Forwarded-Port";
const G_TRACE: &str = "Google Cloud, \"External Application Load Balancer overview\", target \
     proxies' headers: X-Cloud-Trace-Context `<32 hex>/<decimal span>;o=1` added when the \
     request carries no tracing header";
const G_VIA: &str = "Google Cloud, \"External Application Load Balancer overview\", target \
     proxies' headers: `Via: 1.1 google` on requests to backends and on responses to clients";
const G_NO_LINE_LIMIT: &str = "Inferred: Google documents one limit for the request URL and \
     headers together (gcp-lb.md \"Limits\"), none per line";
const G_NO_XFF_LIMIT: &str = "Inferred: no Google source gives a limit on X-Forwarded-For \
     addresses (the load balancer keeps a supplied value unverified, per the External ALB \
     overview)";
const G_CONNECT_METHOD: &str = "Inferred: Google's logging page lists statusDetails \
     unsupported_method with 400, but no Google source names CONNECT; the load balancer offers \
     no tunnel, and AWS documents the 400 for its load balancers (RFC 9110 section 9.1 would \
     suggest 501)";
const G_HOST_MISSING: &str = "Unconfirmed: no Google source; RFC 9112 section 3.2 (400 for an \
     HTTP/1.1 request without Host; HTTP/1.0 has no Host requirement)";
const G_DESYNC: &str = "Inferred: no Google source on request smuggling; lbsim applies the floor \
     RFC 9112 section 6.3 sets for any server, which is AWS's defensive mode";

/// Sources both Google generations share; each generation adds its own rows.
static GCP_SHARED_SOURCES: &[Entry] = &[
    ("timeout_kind", G_TIMEOUT, Documented),
    ("timers.anyscale.timeout", G_ANYSCALE, Documented),
    ("timers.anyscale.connect_timeout", G_CONNECT, Unconfirmed),
    ("timers.native.timeout", G_TIMEOUT, Documented),
    ("timers.native.connect_timeout", G_CONNECT, Unconfirmed),
    ("backend_keep_alive", G_DIST, Documented),
    ("client_idle", G_DIST, Documented),
    ("client_max_age", G_NO_MAX_AGE, Inferred),
    ("http2_client_idle", G_HTTP2_IDLE, Inferred),
    ("http2_client_max_age", G_NO_MAX_AGE, Inferred),
    ("client_keep_alive_meaning", G_DIST, Documented),
    ("health.path", G_HC, Documented),
    ("health.interval", G_HC, Documented),
    ("health.timeout", G_HC, Documented),
    ("health.healthy_threshold", G_HC, Documented),
    ("health.unhealthy_threshold", G_HC, Documented),
    ("health.initial_passes", G_HC_INITIAL, Inferred),
    ("health.user_agent", G_HC, Documented),
    ("fails_open", G_FAIL_CLOSED, Documented),
    ("deregistration_delay", G_DRAIN, Unconfirmed),
    ("log_format", G_LOG_FORMAT, Documented),
    ("outcome.deregistration_delay_elapsed", G_DEREG, Unconfirmed),
    ("outcome.too_many_forwarded_for", G_NEVER, Inferred),
    ("outcome.too_many_forwarded_for.page", G_NEVER, Inferred),
    ("outcome.unsupported_transfer_encoding", G_501, Unconfirmed),
    (
        "outcome.unsupported_transfer_encoding.page",
        GFE_PAGE_UNSEEN,
        Unconfirmed,
    ),
    ("outcome.method_not_allowed", G_NEVER, Inferred),
    ("outcome.method_not_allowed.page", G_NEVER, Inferred),
    ("outcome.incompatible_protocol", G_NEVER, Inferred),
    ("outcome.incompatible_protocol.page", G_NEVER, Inferred),
    ("checks_target_protocol", G_TRANSLATES, Inferred),
    ("upgrades", G_UPGRADES, Inferred),
    ("health.grpc", G_GRPC_HEALTH, Documented),
    ("outcome.desync_blocked", G_DESYNC_400, Inferred),
    ("outcome.client_timeout", G_408, Documented),
    ("outcome.client_timeout.page", GFE_PAGE_UNSEEN, Unconfirmed),
    ("outcome.client_closed", G_460, Documented),
    ("outcome.client_closed.page", G_NONE_SENT, Documented),
    (
        "forwarding.xff_appends_lb_address",
        G_XFF_APPEND,
        Documented,
    ),
    ("forwarding.port_header", G_PORT, Inferred),
    ("forwarding.trace", G_TRACE, Documented),
    ("forwarding.via", G_VIA, Documented),
    ("validation.max_request_line", G_NO_LINE_LIMIT, Inferred),
    ("validation.max_header_line", G_NO_LINE_LIMIT, Inferred),
    ("validation.max_forwarded_for", G_NO_XFF_LIMIT, Inferred),
    (
        "validation.refused_method.CONNECT",
        G_CONNECT_METHOD,
        Inferred,
    ),
    (
        "validation.host.required_in_http11",
        G_HOST_MISSING,
        Unconfirmed,
    ),
    ("validation.desync", G_DESYNC, Inferred),
    ("retry.unsent_methods", G_RETRY_NO_MORE, Inferred),
    ("retry.free", G_RETRY_NO_MORE, Inferred),
    ("retry.fresh_timer", G_RETRY_NO_TIMEOUT, Inferred),
];

const G_RETRY_NO_MORE: &str = "Inferred: Google's retry documentation (gcloud `--timeout` help; \
     the internal ALB overview, \"Retries\") names the methods and the single retry, nothing \
     that is retried only before the request is sent, and no retry that costs nothing";
const G_RETRY_NO_TIMEOUT: &str = "Inferred: lbsim does not retry a GCP timeout (how the backend \
     service timeout would be shared between attempts is undocumented), so the attempts share \
     the request's timer";

// Pages of the Google Front End family (classic, and the first-layer front end of the
// global one).
const GFE_502: &str = "Public captures of the Google Front End's 502 (GKE Ingress, a classic \
     load balancer): `Content-Length: 332`, `Content-Type: text/html; charset=UTF-8`, \
     `Referrer-Policy: no-referrer`, no Server, no Via; the text also in kubernetes/ingress-gce's \
     README; the leading line feed in a test fixture and a log paste (fidelity-audit.md rows \
     10-12). The header order is an HTTPie print, possibly sorted";
const GFE_400: &str = "Public captures of the Google Front End's 400: an escaped error string \
     with the exact body (leading line feed included) and a replay with `Content-Length: 273` \
     (fidelity-audit.md row 11, research section 1A)";
const GFE_413: &str = "Inferred: the 413's title, heading and text are captured (a \
     Google-fronted API's 413, quoted reflowed), the bytes follow the captured 502/400 layout";
const GFE_PAGE_UNSEEN: &str = "Unconfirmed: no capture of this Google Front End page; lbsim uses \
     the family's captured layout with the status's own words";

const G_WEBSOCKET_CLASSIC: &str = "Google Cloud logging page, statusDetails backend_timeout: \
     \"For ... classic Application Load Balancer, ... closes the websocket connection in either \
     idle or active state after the backend service timeout expires\"; gcloud \
     backend-services `--timeout` help: \"If WebSockets traffic is supported, the timeout \
     parameter sets the maximum amount of time that a WebSocket can be open (idle or not)\"";
const G_WEBSOCKET_GLOBAL: &str = "Google Cloud logging page, statusDetails backend_timeout: \
     \"For global external Application Load Balancer, ... closes the websocket connection in \
     idle state after the backend service timeout expires\". gcloud's `--timeout` help says \
     \"idle or not\" without naming a generation; lbsim follows the logging page, which \
     names the two apart";

/// Sources of [`crate::lb::profile::GCP_CLASSIC`] besides the shared ones.
static GCP_CLASSIC_SOURCES: &[Entry] = &[
    ("outcome.upgrade_refused", G_UPGRADE_STATUS, Documented),
    (
        "outcome.upgrade_refused.page",
        G_UPGRADE_CLASSIC_PAGE,
        Inferred,
    ),
    ("grpc_errors", G_CLASSIC_GRPC_ERRORS, Unconfirmed),
    ("websocket_timeout", G_WEBSOCKET_CLASSIC, Documented),
    ("retry.methods", G_RETRY_CLASSIC, Documented),
    ("retry.on", G_RETRY_ON_CLASSIC, Inferred),
    ("retry.attempts", G_RETRY_CLASSIC, Documented),
    ("outcome.target_timeout", G_TIMEOUT_CLASSIC, Documented),
    ("outcome.target_timeout.page", GFE_502, Captured),
    ("outcome.connect_timeout", G_CONNECT_FAIL, Inferred),
    ("outcome.connect_timeout.page", GFE_502, Captured),
    ("outcome.connect_refused", G_CONNECT_FAIL, Inferred),
    ("outcome.connect_refused.page", GFE_502, Captured),
    ("outcome.target_closed_connection", G_MIG_RESET, Documented),
    ("outcome.target_closed_connection.page", GFE_502, Captured),
    ("outcome.target_closed_mid_body", G_MIDBODY, Inferred),
    ("outcome.target_closed_mid_body.page", G_MIDBODY, Inferred),
    ("outcome.keep_alive_race", G_MIG_RESET, Documented),
    ("outcome.keep_alive_race.page", GFE_502, Captured),
    ("outcome.malformed_response", G_CORRUPTED, Inferred),
    ("outcome.malformed_response.page", GFE_502, Captured),
    ("outcome.no_registered_targets", G_EMPTY, Inferred),
    ("outcome.no_registered_targets.page", GFE_502, Captured),
    ("outcome.no_healthy_targets", G_MIG_UNHEALTHY, Documented),
    ("outcome.no_healthy_targets.page", GFE_502, Captured),
    (
        "outcome.deregistration_delay_elapsed.page",
        GFE_502,
        Captured,
    ),
    ("outcome.malformed_request", G_400, Documented),
    ("outcome.malformed_request.page", GFE_400, Captured),
    ("outcome.request_too_large", G_413, Documented),
    ("outcome.request_too_large.page", GFE_413, Inferred),
    ("outcome.desync_blocked.page", GFE_400, Captured),
    ("forwarding.xff_separator", G_MIG_XFF, Documented),
    ("forwarding.header_case", G_MIG_CASE, Documented),
    ("validation.max_head", G_HEAD_CLASSIC, Documented),
    ("validation.host.repeated", G_HOST_CLASSIC, Documented),
];

const G_TIMEOUT_CLASSIC: &str = "gcloud compute backend-services create --help, `--timeout`: \"If \
     the backend does not reply at all, the load balancer returns a 502 Bad Gateway error\"; \
     Google's logging page lists backend_timeout with 502, 503 (classic: 502 by the \"Migration \
     overview\" pattern); public GKE reports show the Google Front End 502 page after exactly \
     30 s. The Anyscale article's 504 is not this generation's";
const G_413: &str = "Google Cloud, \"Migration overview\", data-plane differences: \"Header is \
     too large\" returns HTTP 413 (classic); the logging page's word is headers_too_long (413)";
const G_MIG_XFF: &str =
    "Google Cloud, \"Migration overview\", data-plane differences, \"Format of \
     the X-Forwarded-For header\": classic \"Uses ', ' delimiter between IPs\"; global external \
     \"Uses ',' delimiter between IPs (no space after the comma)\"";
const G_MIG_CASE: &str = "Google Cloud, \"Migration overview\", data-plane differences, \"Header \
     case preservation\": classic \"Header case is preserved\"; global external \"All header keys \
     are transformed to lowercase\" (Envoy on HTTP/1.1, both directions). A 2019 Google notice \
     said all HTTP(S) load balancers would lower-case; lbsim follows the newer Migration overview";
const G_HEAD_CLASSIC: &str = "Google Cloud load-balancing limits as collected in gcp-lb.md \
     \"Limits\" (the page is not named there): request URL plus headers 64 KiB on the classic \
     load balancer; larger requests get 413 headers_too_long";
const G_HOST_CLASSIC: &str = "Google Cloud, \"Migration overview\", data-plane differences, \
     \"(HTTP/1.1 only) Multiple hosts in header\", classic: if two or more hosts are added and \
     the first host is valid, the header is accepted (the English row is cut off in the stored \
     copy; taken from the zh-CN page)";

/// Sources of [`crate::lb::profile::GCP_GLOBAL`] besides the shared ones.
static GCP_GLOBAL_SOURCES: &[Entry] = &[
    ("outcome.upgrade_refused", G_UPGRADE_STATUS, Documented),
    (
        "outcome.upgrade_refused.page",
        G_UPGRADE_GLOBAL_PAGE,
        Inferred,
    ),
    ("grpc_errors", G_GLOBAL_GRPC_ERRORS, Inferred),
    ("websocket_timeout", G_WEBSOCKET_GLOBAL, Documented),
    ("retry.methods", G_RETRY_GLOBAL, Inferred),
    ("retry.on", G_RETRY_GLOBAL, Inferred),
    ("retry.attempts", G_RETRY_GLOBAL, Inferred),
    ("outcome.target_timeout", G_TIMEOUT_GLOBAL, Inferred),
    ("outcome.target_timeout.page", ENVOY_TIMEOUT, Inferred),
    ("outcome.connect_timeout", G_CONNECT_FAIL, Inferred),
    ("outcome.connect_timeout.page", ENVOY_RESET, Inferred),
    ("outcome.connect_refused", G_CONNECT_FAIL, Inferred),
    ("outcome.connect_refused.page", ENVOY_RESET, Inferred),
    ("outcome.target_closed_connection", G_MIG_RESET, Documented),
    (
        "outcome.target_closed_connection.page",
        ENVOY_RESET,
        Inferred,
    ),
    ("outcome.target_closed_mid_body", G_MIDBODY, Inferred),
    ("outcome.target_closed_mid_body.page", G_MIDBODY, Inferred),
    ("outcome.keep_alive_race", G_MIG_RESET, Documented),
    ("outcome.keep_alive_race.page", ENVOY_RESET, Inferred),
    ("outcome.malformed_response", G_CORRUPTED, Inferred),
    ("outcome.malformed_response.page", ENVOY_RESET, Inferred),
    ("outcome.no_registered_targets", G_EMPTY, Inferred),
    ("outcome.no_registered_targets.page", ENVOY_EMPTY, Inferred),
    ("outcome.no_healthy_targets", G_MIG_UNHEALTHY, Documented),
    (
        "outcome.no_healthy_targets.page",
        ENVOY_NO_HEALTHY,
        Captured,
    ),
    (
        "outcome.deregistration_delay_elapsed.page",
        ENVOY_RESET,
        Inferred,
    ),
    ("outcome.malformed_request", G_400, Documented),
    ("outcome.malformed_request.page", GFE_400_GLOBAL, Inferred),
    ("outcome.request_too_large", G_431, Documented),
    ("outcome.request_too_large.page", ENVOY_431, Inferred),
    ("outcome.desync_blocked.page", GFE_400_GLOBAL, Inferred),
    ("forwarding.xff_separator", G_MIG_XFF, Documented),
    ("forwarding.header_case", G_MIG_CASE, Documented),
    ("validation.max_head", G_HEAD_GLOBAL, Inferred),
    ("validation.host.repeated", G_HOST_GLOBAL, Unconfirmed),
];

const G_TIMEOUT_GLOBAL: &str = "Sources disagree. Google's logging page lists backend_timeout \
     with 502, 503, and by the \"Migration overview\" pattern (classic 502, global external 503) \
     the global one would answer 503; gcloud `--timeout` help says 502. The Anyscale \
     troubleshooting article and a public report of a Cloud Run service behind the global load \
     balancer (fidelity-audit.md row 13) show 504, which is Envoy's route timeout. lbsim follows \
     the 504 reports; production may show 503 (or 502)";
const ENVOY_TIMEOUT: &str = "Inferred: Envoy's default route-timeout reply `upstream request \
     timeout` (24 bytes; generic Envoy captures, none through Google). Headers as captured for \
     Envoy's 503 through Google (restringer issue #94): content-length, content-type: \
     text/plain, via: 1.1 google, no server";
const ENVOY_RESET: &str = "Inferred: Envoy's default local reply `upstream connect error or \
     disconnect/reset before headers. reset reason: ...` (connection termination, connection \
     failure, protocol error; no capture through Google). Headers as captured for Envoy's 503 \
     through Google (restringer issue #94)";
const ENVOY_EMPTY: &str = "Inferred: Envoy answers an empty cluster as it answers one with no \
     healthy host, `no healthy upstream` (captured through Google for the unhealthy case, \
     restringer issue #94)";
const ENVOY_NO_HEALTHY: &str = "Public capture through Google's load balancer, HumanSecurity/\
     restringer issue #94 (2023-11-05): `HTTP/2 503`, `content-length: 19`, `content-type: \
     text/plain`, `via: 1.1 google`, `date`, no server; body `no healthy upstream` without a \
     line feed";
const GFE_400_GLOBAL: &str = "Inferred: the first-layer Google Front End parses the client's \
     request on the global external load balancer too (logging page, \
     failed_parsing_client_headers), so its captured 400 page (classic captures); whether Envoy's \
     plain `Bad Request` answers some malformed requests instead is unconfirmed";
const G_431: &str = "Google Cloud, \"Migration overview\", data-plane differences: \"Header is \
     too large\" returns HTTP 431 (global external). The logging page lists headers_too_long \
     with 413 only, a table not split by generation; lbsim follows the Migration overview";
const ENVOY_431: &str = "Inferred from Envoy's source (http1 codec sendProtocolError): the \
     status's reason phrase as a plain-text body, then the connection closes; no capture \
     through Google";
const G_HEAD_GLOBAL: &str = "Inferred: gcp-lb.md \"Limits\" gives request URL plus headers 60 \
     KiB on the global external load balancer (64 KiB on the classic one); the note does not \
     name the Google page it comes from";
const G_HOST_GLOBAL: &str = "Unconfirmed, and partly contradicted: Google's \"Migration \
     overview\", \"(HTTP/1.1 only) Multiple hosts in header\", says the global external load \
     balancer returns 502 if any of two or more hosts is invalid; lbsim applies the classic \
     rule (served if the first is valid) to both generations";

// ingress-nginx: the controller's ConfigMap reference
// (kubernetes.github.io/ingress-nginx, user-guide/nginx-configuration/configmap), its
// defaults in internal/ingress/controller/config/config.go and its nginx.tmpl; nginx's
// own behaviour from its source (nginx/nginx) and the ngx_http_proxy_module docs.
const N_READ: &str = "ingress-nginx ConfigMap reference, proxy-read-timeout (default 60): \
     \"The timeout is set only between two successive read operations, not for the \
     transmission of the whole response\"; proxy-send-timeout (60) likewise for writes \
     (ngx_http_proxy_module, proxy_read_timeout); nginx answers 504 when it fires";
const N_CONNECT: &str = "ingress-nginx ConfigMap reference, proxy-connect-timeout: default 5 \
     (config.go ProxyConnectTimeout: 5); nginx answers 504 for a connect timeout \
     (ngx_http_upstream_next: NGX_HTTP_UPSTREAM_FT_TIMEOUT gives NGX_HTTP_GATEWAY_TIME_OUT)";
const N_NO_ANYSCALE: &str = "Inferred: Anyscale's Kubernetes guides install ingress-nginx \
     (fidelity-audit.md) without documented timer values, so both sets are the controller's \
     ConfigMap defaults";
const N_UPSTREAM_KA: &str = "ingress-nginx ConfigMap reference, upstream-keepalive-timeout: \
     \"Sets a timeout during which an idle keepalive connection to an upstream server will \
     stay open\", default 60 (nginx.tmpl: keepalive_timeout in the upstream block)";
const N_CLIENT_KA: &str = "ingress-nginx ConfigMap reference, keep-alive: \"the time, in \
     seconds, during which a keep-alive client connection will stay open on the server \
     side\", default 75 (nginx keepalive_timeout); an idle timeout, no maximum age \
     (keep-alive-requests 1000 counts requests, not modelled)";
const N_HTTP2_IDLE: &str = "nginx documentation, ngx_http_v2_module: http2_idle_timeout is \
     obsolete since 1.19.7, keepalive_timeout applies to HTTP/2 connections (ingress-nginx's \
     keep-alive, 75 s). Whether PING frames keep a connection open is not documented; lbsim \
     counts only streams";
const N_GRPC_ERRORS: &str = "Inferred: nginx sends its own error pages (502, 504 HTML) to gRPC \
     clients like any other unless the Ingress adds custom error handling; gRPC clients map \
     the HTTP status";
const N_TRANSLATES: &str = "Inferred: nginx speaks HTTP/1.1 to upstreams (grpc_pass for \
     backend-protocol GRPC is not modelled) whatever the client spoke; it has no target \
     protocol version check, so this row only keeps the outcome table total";
const N_GRPC_HEALTH: &str = "Kubernetes documentation, \"Configure Liveness, Readiness and \
     Startup Probes\", gRPC probes (stable since 1.27): the kubelet calls the gRPC health \
     checking protocol and passes on SERVING";
const N_UPGRADES: &str = "Inferred: ingress-nginx's template passes `Upgrade $http_upgrade` \
     and `Connection $connection_upgrade` to the upstream, so any upgrade reaches the app; \
     this row only keeps the outcome table total";
const N_PROBE: &str = "Inferred: nginx makes no active health checks; the kubelet's readiness \
     probe removes a pod from the Service's endpoints. Values are the Kubernetes probe \
     defaults (periodSeconds 10, timeoutSeconds 1, successThreshold 1, failureThreshold 3; a \
     pod is not ready until one probe passes)";
const N_PROBE_PATH: &str = "Unconfirmed: a readiness probe has no default path; `/` is \
     lbsim's choice, as for the clouds' checks";
const N_PROBE_AGENT: &str = "Inferred: the kubelet's HTTP probes send `User-Agent: \
     kube-probe/<major>.<minor>`; the version is lbsim's choice";
const N_NO_ENDPOINTS: &str = "Captured: kubernetes/ingress-nginx issue 3253, a deleted Service \
     answered with nginx's `503 Service Temporarily Unavailable` page; the Lua balancer \
     answers 503 when a backend has no endpoint. With no ready endpoint the controller has \
     nothing to fail open to";
const N_RETRY: &str = "ingress-nginx ConfigMap reference: proxy-next-upstream \"error \
     timeout\", proxy-next-upstream-tries 3, proxy-next-upstream-timeout 0, \
     retry-non-idempotent false (\"Since 1.9.13 NGINX will not retry non-idempotent requests \
     (POST, LOCK, PATCH) in case of an error in the upstream server\"); \
     ngx_http_proxy_module, proxy_next_upstream: error and timeout cover connecting, passing \
     the request and reading the response header, and non-idempotent requests are not \
     passed on \"if a request has been sent to an upstream server\". lbsim retries only \
     requests without a body (it does not buffer bodies)";
const N_RETRY_FREE: &str = "nginx source, ngx_http_upstream_next: \"if (u->peer.cached && \
     ft_type == NGX_HTTP_UPSTREAM_FT_ERROR) { u->peer.tries++; }\": an error on a cached \
     keep-alive connection gives its try back. nginx wrote the request on it first, so a \
     POST is not retried (request_sent)";
const N_RETRY_TIMER: &str = "ngx_http_proxy_module: proxy_read_timeout is per read on one \
     upstream connection, and proxy-next-upstream-timeout 0 sets no limit across tries \
     (ingress-nginx ConfigMap reference)";
const N_DRAIN: &str = "Inferred: Kubernetes' terminationGracePeriodSeconds default, 30 s: a \
     terminating pod leaves the endpoints and is killed 30 s later";
const N_LOG: &str = "ingress-nginx source, internal/ingress/controller/config/config.go, \
     logFormatUpstream (the default of the ConfigMap's log-format-upstream; the same string as \
     the `log_format upstreaminfo` of the \"Log format\" page, \
     user-guide/nginx-configuration/log-format): `$remote_addr - $remote_user [$time_local] \
     \"$request\" $status $body_bytes_sent \"$http_referer\" \"$http_user_agent\" \
     $request_length $request_time [$proxy_upstream_name] [$proxy_alternative_upstream_name] \
     $upstream_addr $upstream_response_length $upstream_response_time $upstream_status \
     $req_id`. nginx docs, ngx_http_upstream_module, Embedded Variables, $upstream_addr: \"If \
     several servers were contacted during request processing, their addresses are separated \
     by commas\", and by colons across an internal redirect (X-Accel-Redirect, error_page; \
     ` : ` in the source); $upstream_status, $upstream_response_length and \
     $upstream_response_time \"are separated by commas and colons like addresses\"; nginx \
     source (ngx_http_upstream_next) gives a failed try 504 for a timeout and 502 for an \
     error, ngx_http_log_module prints `-` for a variable with no value. Captured: three \
     timed-out tries as `504, 504, 504` with three addresses and `0, 0, 0` (kubernetes/\
     ingress-nginx issues 7673, 9443). A 503 for a Service with no endpoint is made in the \
     rewrite phase by the Lua balancer (rootfs/etc/nginx/lua/balancer.lua, _M.rewrite), before \
     any upstream, so its upstream fields are `-`. lbsim's stand-ins: $proxy_upstream_name \
     `default-app-80` (upstreamName in controller/util.go: namespace-service-port), \
     $time_local in UTC, no internal redirects (no ` : `)";
const N_WS: &str = "Inferred: an upgraded connection is proxied by the same location, so \
     proxy_read_timeout and proxy_send_timeout (between two reads or writes) close it when \
     idle";
const N_PAGE: &str = "nginx source, src/http/ngx_http_special_response.c: the status's page \
     plus ngx_http_error_tail (`<hr><center>nginx</center>`, chosen by server_tokens off); \
     status line from ngx_http_status_lines; header order from ngx_http_header_filter_module \
     (Date, Content-Type, Content-Length, Connection). No Server header: ingress-nginx's \
     server-tokens default false renders `more_clear_headers Server` (nginx.tmpl). A 503 \
     of 190 bytes matches public captures (issue 3253's body, with the older version tail)";
const N_PAGE_CLOSE: &str = "nginx source: ngx_http_special_response_handler clears \
     keep-alive for 400, 413, 414 and 501; lbsim closes after every rejected head (405 \
     included, which nginx would keep open)";
const N_502: &str = "nginx source, ngx_http_upstream_next: any failure other than a timeout \
     (connection refused, upstream prematurely closed connection, a bad header) ends in \
     NGX_HTTP_BAD_GATEWAY once no try is left";
const N_DEREG: &str = "Inferred: a pod killed mid-request closes its connections: nginx \
     logs \"upstream prematurely closed connection\" and answers 502";
const N_400: &str = "nginx source, ngx_http_request.c: a malformed request line or header, an \
     HTTP/1.1 request without Host, a duplicate Host: NGX_HTTP_BAD_REQUEST";
const N_494: &str = "nginx source: a header line over large-client-header-buffers (ingress-nginx \
     default \"4 8k\") is NGX_HTTP_REQUEST_HEADER_TOO_LARGE (494), sent as 400 with the title \
     \"400 Request Header Or Cookie Too Large\"; an over-long request line is 414 (lbsim \
     answers both with the 494 page)";
const N_XFF: &str = "Inferred: nginx sets no limit on X-Forwarded-For addresses; the rules \
     never produce this outcome";
const N_501: &str = "nginx source, ngx_http_request.c: \"client sent unknown \
     Transfer-Encoding\" gives NGX_HTTP_NOT_IMPLEMENTED";
const N_405: &str = "nginx source, ngx_http_request.c: \"client sent TRACE method\" and \
     \"client sent CONNECT method\" give NGX_HTTP_NOT_ALLOWED (405 Not Allowed)";
const N_DESYNC: &str = "nginx source, ngx_http_request.c: \"client sent Content-Length and \
     Transfer-Encoding headers at the same time\" gives 400, the defensive floor";
const N_408: &str = "nginx docs, client_header_timeout and client_body_timeout: \"the request \
     is terminated with the 408 (Request Time-out) error\" (ingress-nginx default 60 s); \
     whether the page is sent before the close is not confirmed";
const N_499: &str = "nginx source: NGX_HTTP_CLIENT_CLOSED_REQUEST (499) is logged when the \
     client closed first; nothing is sent";
const N_XFF_SET: &str = "ingress-nginx nginx.tmpl: `proxy_set_header X-Forwarded-For \
     $remote_addr` by default (use-forwarded-headers false), so nginx adds no address of \
     its own. lbsim appends the client's address to one the client sent, where nginx \
     replaces it";
const N_PORT: &str = "ingress-nginx nginx.tmpl: `proxy_set_header X-Forwarded-Port $pass_port`";
const N_REQID: &str = "ingress-nginx nginx.tmpl: `proxy_set_header X-Request-ID $req_id`, the \
     client's X-Request-ID or nginx's $request_id (32 hex digits)";
const N_NO_VIA: &str = "ingress-nginx nginx.tmpl sets no Via header";
const N_CASE: &str = "Inferred: nginx writes header names as received (proxy_set_header names \
     as written in the template)";
const N_SIZES: &str = "ingress-nginx ConfigMap reference, large-client-header-buffers \
     \"4 8k\": a request line or header line must fit one 8 KiB buffer, the head four";
const N_HOST: &str = "nginx source, ngx_http_request.c: \"client sent HTTP/1.1 request without \
     Host header\" and \"client sent duplicate host header\" give 400";

/// Sources of [`crate::lb::profile::INGRESS_NGINX`].
static NGINX_SOURCES: &[Entry] = &[
    ("timeout_kind", N_READ, Documented),
    ("timers.anyscale.timeout", N_NO_ANYSCALE, Inferred),
    ("timers.anyscale.connect_timeout", N_NO_ANYSCALE, Inferred),
    ("timers.native.timeout", N_READ, Documented),
    ("timers.native.connect_timeout", N_CONNECT, Documented),
    ("backend_keep_alive", N_UPSTREAM_KA, Documented),
    ("client_idle", N_CLIENT_KA, Documented),
    ("client_max_age", N_CLIENT_KA, Documented),
    ("http2_client_idle", N_HTTP2_IDLE, Documented),
    ("grpc_errors", N_GRPC_ERRORS, Inferred),
    ("health.grpc", N_GRPC_HEALTH, Documented),
    ("checks_target_protocol", N_TRANSLATES, Inferred),
    ("upgrades", N_UPGRADES, Inferred),
    ("outcome.upgrade_refused", N_UPGRADES, Inferred),
    ("outcome.upgrade_refused.page", N_UPGRADES, Inferred),
    ("outcome.incompatible_protocol", N_TRANSLATES, Inferred),
    ("outcome.incompatible_protocol.page", N_TRANSLATES, Inferred),
    ("http2_client_max_age", N_CLIENT_KA, Documented),
    ("client_keep_alive_meaning", N_CLIENT_KA, Documented),
    ("health.path", N_PROBE_PATH, Unconfirmed),
    ("health.interval", N_PROBE, Inferred),
    ("health.timeout", N_PROBE, Inferred),
    ("health.healthy_threshold", N_PROBE, Inferred),
    ("health.unhealthy_threshold", N_PROBE, Inferred),
    ("health.initial_passes", N_PROBE, Inferred),
    ("health.user_agent", N_PROBE_AGENT, Inferred),
    ("fails_open", N_NO_ENDPOINTS, Inferred),
    ("retry.methods", N_RETRY, Documented),
    ("retry.on", N_RETRY, Documented),
    ("retry.attempts", N_RETRY, Documented),
    ("retry.unsent_methods", N_RETRY, Documented),
    ("retry.free", N_RETRY_FREE, Inferred),
    ("retry.fresh_timer", N_RETRY_TIMER, Inferred),
    ("deregistration_delay", N_DRAIN, Inferred),
    ("log_format", N_LOG, Documented),
    ("websocket_timeout", N_WS, Inferred),
    ("outcome.target_timeout", N_READ, Documented),
    ("outcome.target_timeout.page", N_PAGE, Inferred),
    ("outcome.connect_timeout", N_CONNECT, Inferred),
    ("outcome.connect_timeout.page", N_PAGE, Inferred),
    ("outcome.connect_refused", N_502, Inferred),
    ("outcome.connect_refused.page", N_PAGE, Inferred),
    ("outcome.target_closed_connection", N_502, Inferred),
    ("outcome.target_closed_connection.page", N_PAGE, Inferred),
    ("outcome.target_closed_mid_body", N_502, Inferred),
    ("outcome.target_closed_mid_body.page", N_PAGE, Inferred),
    ("outcome.keep_alive_race", N_RETRY_FREE, Inferred),
    ("outcome.keep_alive_race.page", N_PAGE, Inferred),
    ("outcome.malformed_response", N_502, Inferred),
    ("outcome.malformed_response.page", N_PAGE, Inferred),
    ("outcome.no_registered_targets", N_NO_ENDPOINTS, Captured),
    ("outcome.no_registered_targets.page", N_PAGE, Captured),
    ("outcome.no_healthy_targets", N_NO_ENDPOINTS, Inferred),
    ("outcome.no_healthy_targets.page", N_PAGE, Captured),
    ("outcome.deregistration_delay_elapsed", N_DEREG, Inferred),
    (
        "outcome.deregistration_delay_elapsed.page",
        N_PAGE,
        Inferred,
    ),
    ("outcome.malformed_request", N_400, Inferred),
    ("outcome.malformed_request.page", N_PAGE_CLOSE, Inferred),
    ("outcome.request_too_large", N_494, Inferred),
    ("outcome.request_too_large.page", N_494, Inferred),
    ("outcome.too_many_forwarded_for", N_XFF, Inferred),
    ("outcome.too_many_forwarded_for.page", N_XFF, Inferred),
    ("outcome.unsupported_transfer_encoding", N_501, Inferred),
    (
        "outcome.unsupported_transfer_encoding.page",
        N_PAGE_CLOSE,
        Inferred,
    ),
    ("outcome.method_not_allowed", N_405, Inferred),
    ("outcome.method_not_allowed.page", N_PAGE_CLOSE, Inferred),
    ("outcome.desync_blocked", N_DESYNC, Inferred),
    ("outcome.desync_blocked.page", N_PAGE_CLOSE, Inferred),
    ("outcome.client_timeout", N_408, Documented),
    ("outcome.client_timeout.page", N_408, Unconfirmed),
    ("outcome.client_closed", N_499, Inferred),
    ("outcome.client_closed.page", N_499, Inferred),
    ("forwarding.xff_appends_lb_address", N_XFF_SET, Inferred),
    ("forwarding.xff_separator", N_XFF_SET, Inferred),
    ("forwarding.header_case", N_CASE, Inferred),
    ("forwarding.port_header", N_PORT, Inferred),
    ("forwarding.trace", N_REQID, Inferred),
    ("forwarding.via", N_NO_VIA, Inferred),
    ("validation.max_request_line", N_SIZES, Documented),
    ("validation.max_header_line", N_SIZES, Documented),
    ("validation.max_head", N_SIZES, Documented),
    ("validation.max_forwarded_for", N_XFF, Inferred),
    ("validation.refused_method.TRACE", N_405, Inferred),
    ("validation.refused_method.CONNECT", N_405, Inferred),
    ("validation.host.required_in_http11", N_HOST, Inferred),
    ("validation.host.repeated", N_HOST, Inferred),
    ("validation.desync", N_DESYNC, Inferred),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Every value of every profile has exactly one source entry, and every entry names a
    /// value the profile holds: a new fact cannot arrive without its source, and a removed
    /// one cannot leave its source behind.
    #[test]
    fn every_profile_value_has_exactly_one_source_and_no_source_is_stale() {
        let mut failures = Vec::new();
        for cloud in CLOUDS {
            let gaps = check(Profile::of(cloud));
            if !gaps.is_empty() {
                failures.push(format!(
                    "{cloud:?}:\n  no source for: {:?}\n  more than one source for: {:?}\n  \
                     source for a value the profile does not hold: {:?}\n  empty source: {:?}",
                    gaps.missing, gaps.duplicated, gaps.stale, gaps.empty
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "add or fix the entries in src/lb/facts.rs:\n{}",
            failures.join("\n")
        );
    }

    #[test]
    fn a_value_without_a_source_is_reported_by_its_key() {
        // A profile whose source table lacks a key: the check names it.
        let keys: Vec<String> = Profile::of(Cloud::Aws)
            .values()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert!(keys.contains(&"outcome.keep_alive_race".to_string()));
        let table = sources(Cloud::Aws);
        let without: Vec<&Entry> = table
            .iter()
            .filter(|(k, _, _)| *k != "outcome.keep_alive_race")
            .collect();
        let missing: Vec<&String> = keys
            .iter()
            .filter(|k| !without.iter().any(|(key, _, _)| key == k))
            .collect();
        assert_eq!(missing, ["outcome.keep_alive_race"]);
    }

    #[test]
    fn no_source_text_is_empty_and_every_fact_has_one() {
        for cloud in CLOUDS {
            for (key, source, _) in sources(cloud) {
                assert!(!source.trim().is_empty(), "{cloud:?} {key}: empty source");
            }
            for fact in facts(Profile::of(cloud)) {
                assert_ne!(fact.source, NO_SOURCE, "{cloud:?} {}", fact.key);
            }
        }
    }

    /// A source text that opens with its verdict ("Inferred: ...", "Unconfirmed: ...") must
    /// carry that confidence, so the words and the column cannot disagree.
    #[test]
    fn a_source_that_says_inferred_or_unconfirmed_has_that_confidence() {
        for cloud in CLOUDS {
            for (key, source, confidence) in sources(cloud) {
                for (word, expected) in [
                    ("Inferred", Confidence::Inferred),
                    ("Unconfirmed", Confidence::Unconfirmed),
                ] {
                    if source.starts_with(word) {
                        assert_eq!(confidence, expected, "{cloud:?} {key}: {source}");
                    }
                }
            }
        }
    }

    #[test]
    fn gcp_global_backend_timeout_names_both_the_504_reports_and_googles_502_503() {
        let fact = facts(Profile::of(Cloud::Gcp))
            .into_iter()
            .find(|f| f.key == "outcome.target_timeout")
            .expect("the global profile has a backend-timeout outcome");
        assert!(
            fact.value.starts_with("504 backend_timeout"),
            "{}",
            fact.value
        );
        assert_eq!(fact.confidence, Confidence::Inferred);
        assert!(fact.source.contains("Sources disagree"), "{}", fact.source);
        assert!(fact.source.contains("502, 503"), "{}", fact.source);
        assert!(fact.source.contains("504 reports"), "{}", fact.source);
        assert!(fact.source.contains("Anyscale"), "{}", fact.source);
        // The classic one answers 502, documented.
        let classic = facts(Profile::of(Cloud::GcpClassic))
            .into_iter()
            .find(|f| f.key == "outcome.target_timeout")
            .expect("the classic profile has a backend-timeout outcome");
        assert!(
            classic.value.starts_with("502 backend_timeout"),
            "{}",
            classic.value
        );
        assert_eq!(classic.confidence, Confidence::Documented);
    }

    #[test]
    fn ingress_nginx_logs_the_controllers_default_format_and_says_where_it_comes_from() {
        let fact = facts(Profile::of(Cloud::IngressNginx))
            .into_iter()
            .find(|f| f.key == "log_format")
            .expect("the ingress-nginx profile has a log format");
        assert!(fact.value.starts_with("nginx: "), "{}", fact.value);
        assert_eq!(fact.confidence, Confidence::Documented);
        // The format the writer follows is the one the source quotes, word for word.
        let quoted = format!("`{}`", crate::lb::accesslog::NGINX_LOG_FORMAT);
        assert!(fact.source.contains(&quoted), "{}", fact.source);
        for source in ["config.go", "ngx_http_upstream_module", "issues 7673, 9443"] {
            assert!(fact.source.contains(source), "{source}: {}", fact.source);
        }
    }

    #[test]
    fn captured_pages_are_the_ones_with_public_captures() {
        let captured = |cloud: Cloud| -> Vec<String> {
            facts(Profile::of(cloud))
                .into_iter()
                .filter(|f| f.confidence == Confidence::Captured)
                .map(|f| f.key)
                .collect()
        };
        // The ALB 502 and 503, the GFE 502 and 400, Envoy's `no healthy upstream`.
        assert!(captured(Cloud::Aws).contains(&"outcome.keep_alive_race.page".into()));
        assert!(!captured(Cloud::Aws).contains(&"outcome.target_timeout.page".into()));
        assert!(captured(Cloud::GcpClassic).contains(&"outcome.malformed_request.page".into()));
        assert_eq!(
            captured(Cloud::Gcp),
            ["outcome.no_healthy_targets.page"],
            "only Envoy's 503 has been captured through Google"
        );
    }

    #[test]
    fn the_table_wraps_every_line_to_its_width_and_keeps_every_fact() {
        for width in [80, 140] {
            let text = table(Profile::of(Cloud::GcpClassic), width);
            for line in text.lines().skip(1) {
                assert!(line.chars().count() <= width, "{width}: {line}");
            }
            let rows = text
                .lines()
                .filter(|l| l.starts_with("outcome.target_timeout "))
                .count();
            assert_eq!(rows, 1, "{text}");
        }
        assert_eq!(
            wrap("a bcd efghijk", 4),
            ["a", "bcd", "efgh", "ijk"],
            "words wrap; a word wider than the column is cut"
        );
        assert_eq!(
            wrap("outcome.request_too_large.page", 20),
            ["outcome.request_too_", "large.page"],
            "a key is cut after a dot or underscore"
        );
        assert_eq!(wrap("", 5), [""]);
    }

    #[test]
    fn json_words_are_lowercase_and_the_cloud_is_named_as_the_flag_takes_it() {
        let fact = &facts(Profile::of(Cloud::GcpClassic))[0];
        let json = serde_json::to_value(fact).expect("a fact serialises");
        assert_eq!(json["cloud"], "gcp-classic");
        assert_eq!(json["confidence"], "documented");
        assert_eq!(json["key"], "timeout_kind");
    }
}
