//! Request-head validation: what the cloud's load balancer rejects before a request
//! reaches the app.
//!
//! hyper parses leniently where the clouds do not (it drops `Content-Length` when
//! `Transfer-Encoding` is present, forwards `TRACE`, and answers a malformed head with a
//! bare 400 instead of the cloud's page). [`check_head`] looks at the bytes a client has
//! sent so far at the start of a request, before hyper does, and says whether to wait for
//! more, serve the request, or reject it and why. It is a pure function of the bytes and
//! the [`Rules`]; it never panics (it is fuzzed: `fuzz/fuzz_targets/check_head.rs`).
//!
//! # Order of checks
//!
//! 1. **Sizes**, as soon as the bytes prove them (no waiting for the end of the head):
//!    request line over `max_request_line`, one header line over `max_header_line`, the
//!    head over `max_head`. Line lengths exclude the line ending.
//! 2. **Syntax**: httparse, with the configuration hyper uses, so that anything accepted
//!    here also parses in hyper. A syntax error is reported as soon as the bytes prove
//!    it. When a size and a syntax error are both present, the one that the shorter
//!    prefix of the bytes proves wins, so a verdict never changes as more bytes arrive.
//!    The request target must also parse as an [`http::Uri`] (hyper's next step).
//! 3. **Transfer-Encoding** naming a coding other than `chunked` or `identity`:
//!    [`Rejection::UnsupportedTransferEncoding`] (AWS answers 501, as RFC 9112 §6.1
//!    recommends).
//! 4. **Desync classification** (below), then the mode: `Defensive` rejects Severe and
//!    serves Ambiguous with [`Verdict::Accept`]`{ ambiguous: true }` (the caller closes
//!    both connections after the response); `Strictest` rejects all but Compliant;
//!    `Monitor` rejects nothing for desync reasons.
//! 5. **Methods the LB answers itself** (`refused_methods`): `TRACE` (AWS 405) and
//!    `CONNECT` (400 on both clouds; neither tunnels).
//! 6. **`Host`** (`host`): none in an HTTP/1.1 request, or more than one in any request
//!    (but see GCP below), is [`Rejection::Malformed`] (400). HTTP/1.0 without `Host` is
//!    served. Made on the complete head only, so the verdict cannot change with more bytes.
//! 7. `X-Forwarded-For` holding more than `max_forwarded_for` addresses, counted over all
//!    `X-Forwarded-For` lines, empty list elements not counted (AWS 463).
//! 8. **Framing hyper cannot serve**: `Transfer-Encoding` in HTTP/1.0, a coding list that
//!    does not end in `chunked`, and (in `Monitor` mode) a bad or conflicting
//!    `Content-Length`: [`Rejection::Malformed`], because accepting it would let hyper
//!    answer its own bare 400.
//!
//! # Desync classification
//!
//! AWS classifies with its open-source `http_desync_guardian` library; the tiers and
//! reason codes below are those of the ALB access-log documentation ("Classification
//! reasons"), applied to what is left once httparse has accepted the syntax:
//!
//! | reason | class | when |
//! |---|---|---|
//! | `NonCrLfLineTermination` | Acceptable | a line ends in a bare LF |
//! | `GetHeadZeroContentLength` | Acceptable | `Content-Length: 0` on GET or HEAD |
//! | `SuspiciousHeader` | Ambiguous | a header name that is `Transfer-Encoding` or `Content-Length` once non-alphanumerics and case are ignored (`Transfer_Encoding`, `Content.Length`) |
//! | `UndefinedTransferEncodingSemantics` | Ambiguous | `Transfer-Encoding` on GET or HEAD, or in an HTTP/1.0 request |
//! | `UndefinedContentLengthSemantics` | Ambiguous | `Content-Length` above 0 on GET or HEAD |
//! | `DuplicateContentLength` | Ambiguous | several `Content-Length` with the same value |
//! | `BothTeClPresent` | Ambiguous | both `Transfer-Encoding` and `Content-Length` |
//! | `BadContentLength` | Severe | a `Content-Length` that is not 1*DIGIT fitting in 64 bits (`-1`, `+5`, `5, 5`, empty, 2^64) |
//! | `MultipleContentLength` | Severe | several `Content-Length` with different values |
//! | `MultipleTransferEncodingChunked` | Severe | `chunked` more than once over all `Transfer-Encoding` lines |
//! | `BadTransferEncoding` | Severe | an empty element in a `Transfer-Encoding` list (`chunked,`, or an empty value) |
//!
//! `BothTeClPresent` is **Ambiguous**, not Severe: AWS's table and library say so, and
//! RFC 9112 §6.1 lets a server serve such a request by `Transfer-Encoding` alone provided
//! it closes the connection afterwards, which is what `ambiguous: true` asks for.
//!
//! What AWS would classify but this module cannot serve, because hyper (behind it) rejects
//! the syntax, is [`Rejection::Malformed`] in every mode: a space in the request target
//! (`SpaceInUri`, Acceptable on AWS), versions other than HTTP/1.0 and 1.1
//! (`NonCompliantVersion`; the ALB answers 505 for some), obs-fold and whitespace-only
//! lines (`MultilineHeader`, `EmptyHeader`, Ambiguous on AWS), whitespace before a header
//! colon (`Transfer-Encoding : chunked`, `SuspiciousHeader` on AWS), control characters,
//! NUL and bare CR anywhere (`BadHeader`, `BadUri`, Severe on AWS: the same 400), and
//! `Transfer-Encoding` in an HTTP/1.0 request or not ending in `chunked`. Non-ASCII bytes
//! are accepted in header values and in the request target (AWS counts them as valid),
//! refused in methods and header names (httparse).
//!
//! # Methods and `Host`, with sources and confidence
//!
//! | rule | AWS ALB | GCP (classic) |
//! |---|---|---|
//! | `TRACE` | 405 — ALB troubleshooting guide, "HTTP 405: Method not allowed": "The client used the TRACE method". High | forwarded — no GCP rule found |
//! | `CONNECT` | 400 — Classic Load Balancer troubleshooting guide, "HTTP 400: BAD_REQUEST", cause 2: "the HTTP CONNECT method, which is not supported by Elastic Load Balancing"; the ALB guide is silent. Medium | 400 — no Google source: unconfirmed, low (RFC 9110 §9.1 would say 501 for a method not implemented) |
//! | HTTP/1.1, no `Host` | 400 — RFC 9112 §3.2; no AWS source: unconfirmed | 400 — RFC 9112 §3.2; no Google source: unconfirmed |
//! | HTTP/1.0, no `Host` | served — the ALB guide's 401 causes include an HTTP/1.0 request without a host header reaching an authenticate action. Medium-high | served — RFC 9112 §3.2 asks `Host` of HTTP/1.1 only; unconfirmed for GCP |
//! | two `Host` lines | 400 — RFC 9112 §3.2; unconfirmed | served if the first is a valid host, else 400 — Google's "Migration overview", data-plane differences, "(HTTP/1.1 only) Multiple hosts in header", classic column. Medium-high |
//! | `Host:` empty | served — RFC 9112 §3.2/§3.3 (an empty value is what a client sends when the target has no authority; the server may apply its default); unconfirmed | same |
//! | absolute-form target, no `Host` | 400 — RFC 9112 §3.2 asks `Host` of every HTTP/1.1 request, absolute-form included (§3.2.2: the target's authority then wins over `Host`); unconfirmed | same |
//!
//! Sources: the ALB guide, "Troubleshoot your Application Load Balancers"
//! (<https://docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-troubleshooting.html>,
//! HTTP 401 and HTTP 405); the Classic Load Balancer guide, "Troubleshoot a Classic Load
//! Balancer: HTTP errors"
//! (<https://docs.aws.amazon.com/elasticloadbalancing/latest/classic/ts-elb-error-message.html>,
//! HTTP 400); Google Cloud, "Migration overview"
//! (<https://cloud.google.com/load-balancing/docs/https/migrate-to-global>, G-MIG in the
//! project's fidelity audit); RFC 9112 §3.2, §3.2.2, §3.3 and RFC 9110 §9.1. AWS's
//! desync library (`http_desync_guardian`) has no `Host` rule, so `Host` defects do not
//! change the desync class.
//!
//! # Size accounting
//!
//! `max_head` counts the header lines, from the byte after the request line to the end of
//! the empty line, when `max_request_line` is set (the request line then has its own
//! limit, as on AWS: "all headers > 64 KiB"); it counts the whole head, request line
//! included, when `max_request_line` is `None` (GCP counts the request URL with the
//! headers). Empty lines before the request line, which httparse skips, count as part of
//! the request line. A head of exactly `max_head` bytes passes; one more byte is rejected.
//!
//! # GCP
//!
//! The reference says nothing about GCP's request-smuggling rules, so [`GCP_RULES`] uses
//! `Defensive`: it is the floor RFC 9112 §6.3 sets for any server (an invalid or
//! conflicting `Content-Length` is a 400; both `Transfer-Encoding` and `Content-Length`
//! may be served but the connection must then close). GCP has no documented request-line,
//! header-line or `X-Forwarded-For` limit and no `TRACE` rule, so those are off. Its
//! `Host` rule is the classic load balancer's: a repeated `Host` is served when the first
//! value is valid (see the table above).
//!
//! # Status per rejection (for the caller's mapping)
//!
//! | rejection | AWS ALB | GCP |
//! |---|---|---|
//! | `Malformed` (missing or repeated `Host` included) | 400 | 400 |
//! | `RequestLineTooLong` | 400 (the ALB also lists 414 "URI too long"; which one applies is unconfirmed) | — |
//! | `HeaderTooLong`, `HeadTooLarge` | 400 | 413 (`headers_too_long`) for `HeadTooLarge` |
//! | `TooManyForwardedFor` | 463 | — |
//! | `UnsupportedTransferEncoding` | 501 | 501 (RFC 9112; unconfirmed for GFE) |
//! | `MethodNotAllowed` | 405 (`TRACE`) | — |
//! | `UnsupportedMethod` | 400 (`CONNECT`) | 400 (`CONNECT`, unconfirmed) |
//! | `Desync` | 400 | 400 |
//!
//! # For the caller
//!
//! Call [`check_head`] with everything received since the request started, each time
//! more arrives, until it stops answering [`Verdict::NeedMore`]; a verdict, once given,
//! does not change with more bytes. The clouds limit heads by bytes only; lbsim also
//! rejects a head of more than [`INLINE_HEADERS`] (100) header lines as too large,
//! because hyper answers a bare 431 above that unless its `max_headers` is raised, and
//! raising it costs every request (see the constant).

use std::fmt;
use std::mem::MaybeUninit;

use httparse::{Header, Request, Status, EMPTY_HEADER};

/// Per-cloud limits and rules, as data (one value per profile).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rules {
    /// Longest request line, line ending excluded (AWS 16 KiB).
    pub max_request_line: Option<usize>,
    /// Longest header line, line ending excluded (AWS 16 KiB per header).
    pub max_header_line: Option<usize>,
    /// Largest head: the header lines when `max_request_line` is set (AWS 64 KiB of
    /// headers), else the whole head (GCP 64 KiB for request URL + headers, classic ALB).
    pub max_head: usize,
    /// Most addresses allowed in `X-Forwarded-For` (AWS 30).
    pub max_forwarded_for: Option<usize>,
    /// Methods the LB answers itself and never forwards, with the answer: a tunnel or a
    /// trace would reach the app through a proxy that cannot serve it (hyper hands a
    /// `CONNECT` answered 200 over as a tunnel, and the client gets nothing). Matched
    /// case-sensitively, as methods are (RFC 9110 §9.1).
    pub refused_methods: &'static [(&'static str, MethodAnswer)],
    /// What the LB does with the `Host` lines of a request: RFC 9112 §3.2 makes a missing
    /// (HTTP/1.1) or repeated `Host` a 400, but the clouds do not all follow it.
    pub host: HostRule,
    /// Desync mitigation mode (AWS default `Defensive`).
    pub desync: DesyncMode,
}

/// How the LB answers a method it refuses (see [`Rules::refused_methods`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MethodAnswer {
    /// 405 Method Not Allowed: [`Rejection::MethodNotAllowed`].
    NotAllowed,
    /// The cloud's 400 page: [`Rejection::UnsupportedMethod`].
    BadRequest,
}

/// The `Host` checks, made on a complete head only (a later line can add a second `Host`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostRule {
    /// Reject an HTTP/1.1 request without a `Host` line (RFC 9112 §3.2: "MUST respond with
    /// a 400"). HTTP/1.0 has no `Host` requirement and is always served without one.
    pub required_in_http11: bool,
    /// What to do with more than one `Host` line, in either HTTP version.
    pub repeated: RepeatedHost,
}

/// The answer to a request with more than one `Host` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RepeatedHost {
    /// 400, as RFC 9112 §3.2 requires.
    Reject,
    /// Served when the first value is a valid host (`host[:port]`, not empty), else 400:
    /// Google's classic Application Load Balancer ("Migration overview": "If two or more
    /// hosts are added and the first host is valid, the header is accepted").
    ServeIfFirstValid,
}

/// The AWS ALB's desync mitigation modes (`routing.http.desync_mitigation_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DesyncMode {
    /// Classify, reject nothing for desync reasons.
    Monitor,
    /// Reject Severe; serve Ambiguous, then close both connections.
    Defensive,
    /// Reject everything that is not Compliant.
    Strictest,
}

/// AWS Application Load Balancer (aws-alb.md: status table and desync mitigation).
pub const AWS_RULES: Rules = Rules {
    max_request_line: Some(16 * 1024),
    max_header_line: Some(16 * 1024),
    max_head: 64 * 1024,
    max_forwarded_for: Some(30),
    // TRACE: 405, documented for the ALB ("HTTP 405: Method not allowed: The client used
    // the TRACE method"); confidence high. CONNECT: 400, documented for Elastic Load
    // Balancing's Classic Load Balancer ("HTTP 400: BAD_REQUEST ... Cause 2: The client
    // used the HTTP CONNECT method, which is not supported by Elastic Load Balancing");
    // the ALB's own troubleshooting page names no status for CONNECT, so for the ALB this
    // is inferred from its predecessor: confidence medium.
    refused_methods: &[
        ("TRACE", MethodAnswer::NotAllowed),
        ("CONNECT", MethodAnswer::BadRequest),
    ],
    // No AWS source says what the ALB does with a missing or repeated Host in HTTP/1.1
    // (unconfirmed): RFC 9112 §3.2's 400. That the ALB serves HTTP/1.0 without Host is
    // documented (its 401 causes include "an HTTP/1.0 request without a host header" that
    // reached an authenticate action).
    host: HostRule {
        required_in_http11: true,
        repeated: RepeatedHost::Reject,
    },
    desync: DesyncMode::Defensive,
};

/// GCP external Application Load Balancer, classic (gcp-lb.md: "Limits"). The desync
/// mode is not documented; `Defensive` is RFC 9112's floor (see the module docs).
pub const GCP_RULES: Rules = Rules {
    max_request_line: None,
    max_header_line: None,
    max_head: 64 * 1024,
    max_forwarded_for: None,
    // CONNECT: no Google source names the answer (unconfirmed, confidence low); the load
    // balancer routes requests by URL map and offers no tunnel, so lbsim answers the 400
    // page, as AWS documents for its load balancers. RFC 9110 §9.1 would suggest 501 for
    // a method not implemented, but no lbsim reason yields a 501 with a fitting cause
    // word. TRACE is forwarded: no GCP rule for it.
    refused_methods: &[("CONNECT", MethodAnswer::BadRequest)],
    // Repeated Host: served if the first is valid, per Google's "Migration overview"
    // (data plane differences, "(HTTP/1.1 only) Multiple hosts in header", classic
    // column); confidence medium-high for the classic ALB modelled here (the global
    // external ALB answers 502 if any of them is invalid: not modelled). Missing Host in
    // HTTP/1.1: no Google source (unconfirmed), RFC 9112 §3.2's 400.
    host: HostRule {
        required_in_http11: true,
        repeated: RepeatedHost::ServeIfFirstValid,
    },
    desync: DesyncMode::Defensive,
};

/// GCP's global external Application Load Balancer: the classic rules with its smaller
/// head limit, "Request URL plus headers: 60 KiB on the global external ALB, 64 KiB on
/// the classic one" (gcp-lb.md, "Limits"). Its stricter rules for repeated `Host` lines,
/// invalid header names and odd bytes in the path (502 in Google's "Migration overview")
/// are not modelled: no lbsim reason answers a client's request with a 502.
pub const GCP_GLOBAL_RULES: Rules = Rules {
    max_head: 60 * 1024,
    ..GCP_RULES
};

/// nginx as ingress-nginx configures it. `large-client-header-buffers` "4 8k": a request
/// line or a header line must fit one 8 KiB buffer (else 414, or 494 sent as 400), and
/// the head four of them. nginx answers TRACE and CONNECT with 405 ("client sent TRACE
/// method", `ngx_http_request.c`), refuses an HTTP/1.1 request without `Host` and a
/// duplicate `Host` with 400, and both `Content-Length` and `Transfer-Encoding` with
/// 400: the defensive floor. No `X-Forwarded-For` limit.
pub const NGINX_RULES: Rules = Rules {
    max_request_line: Some(8 * 1024),
    max_header_line: Some(8 * 1024),
    max_head: 32 * 1024,
    max_forwarded_for: None,
    refused_methods: &[
        ("TRACE", MethodAnswer::NotAllowed),
        ("CONNECT", MethodAnswer::NotAllowed),
    ],
    host: HostRule {
        required_in_http11: true,
        repeated: RepeatedHost::Reject,
    },
    desync: DesyncMode::Defensive,
};

/// Desync-mitigation tiers, in increasing order of risk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DesyncClass {
    /// Complies with RFC 7230.
    Compliant,
    /// Not compliant, no known risk.
    Acceptable,
    /// Not compliant; servers may disagree on where the request ends.
    Ambiguous,
    /// High risk: the end of the request cannot be known.
    Severe,
}

/// Why a head is rejected; the caller maps each to a status per profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// Not HTTP/1.x as hyper parses it; the text names the defect.
    Malformed(&'static str),
    /// The request line is longer than `max_request_line`.
    RequestLineTooLong,
    /// A header line is longer than `max_header_line`.
    HeaderTooLong,
    /// The head is larger than `max_head`.
    HeadTooLarge,
    /// `X-Forwarded-For` holds this many addresses, more than `max_forwarded_for`.
    TooManyForwardedFor(usize),
    /// `Transfer-Encoding` names a coding other than `chunked` or `identity`.
    UnsupportedTransferEncoding,
    /// A method in [`Rules::refused_methods`] answered 405 (`TRACE` on AWS).
    MethodNotAllowed(&'static str),
    /// A method in [`Rules::refused_methods`] answered with the cloud's 400 page
    /// (`CONNECT`): the LB does not implement it, though the request is well-formed.
    UnsupportedMethod(&'static str),
    /// Blocked by the desync mitigation mode: the class and AWS's reason code
    /// (`BadContentLength`, `BothTeClPresent`, ...).
    Desync(DesyncClass, &'static str),
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Malformed(what) => write!(f, "malformed request: {what}"),
            Rejection::RequestLineTooLong => f.write_str("request line too long"),
            Rejection::HeaderTooLong => f.write_str("a header line is too long"),
            Rejection::HeadTooLarge => f.write_str("request headers too large"),
            Rejection::TooManyForwardedFor(n) => {
                write!(f, "X-Forwarded-For holds too many addresses ({n})")
            }
            Rejection::UnsupportedTransferEncoding => {
                f.write_str("Transfer-Encoding other than chunked or identity")
            }
            Rejection::MethodNotAllowed(method) => write!(f, "{method} method not allowed"),
            Rejection::UnsupportedMethod(method) => {
                write!(f, "{method} method not supported by the load balancer")
            }
            Rejection::Desync(class, reason) => {
                write!(f, "desync mitigation: {class:?} request ({reason})")
            }
        }
    }
}

/// What to do with the bytes received so far on a connection, at the start of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The head is incomplete and within the limits: read more.
    NeedMore,
    /// Serve it. `head_len` bytes are the head; `body` says how many of the bytes after
    /// it are the request's body (what follows that is the next request); `ambiguous`:
    /// close the client and target connections after the response.
    Accept {
        /// Length of the head in the bytes given.
        head_len: usize,
        /// How many bytes after the head are this request's body.
        body: BodyLength,
        /// Desync mitigation: close both connections after the response.
        ambiguous: bool,
    },
    /// Answer with the cloud's page for this rejection and close.
    Reject(Rejection),
}

/// How the body of an accepted request is framed, as hyper will read it (RFC 9112 §6.3):
/// the client socket follows it to know where the next request head starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyLength {
    /// Exactly this many bytes (0: no body, as for a request without framing headers).
    Bytes(u64),
    /// `Transfer-Encoding: chunked` (it wins over any `Content-Length`).
    Chunked,
}

/// Scans `buf`, the bytes received so far on a connection at the start of a request.
pub fn check_head(buf: &[u8], rules: &Rules) -> Verdict {
    check_head_located(buf, rules, None)
}

/// [`check_head`], also recording where an accepted head's parts lie in `buf`, so that
/// the HTTP/1.1 session builds the request without parsing the head again.
pub(crate) fn check_head_located(
    buf: &[u8],
    rules: &Rules,
    located: Option<&mut crate::lb::h1::wire::Located>,
) -> Verdict {
    // Past this many bytes, either the head is complete or a size limit is broken: the
    // rest cannot change the verdict, and the parse stays bounded whatever arrives.
    let buf = &buf[..buf.len().min(decisive_len(rules))];
    // Uninitialised: writing 100 empty headers first cost more than parsing a small head.
    let mut inline = [const { MaybeUninit::<Header<'_>>::uninit() }; INLINE_HEADERS];
    let mut req = Request::new(&mut []);
    match req.parse_with_uninit_headers(buf, &mut inline) {
        Err(httparse::Error::TooManyHeaders) => {}
        parsed => {
            let verdict = decide(buf, rules, &req, parsed);
            if let (Verdict::Accept { head_len, .. }, Some(located)) = (&verdict, located) {
                located.record(buf, &req, *head_len);
            }
            return verdict;
        }
    }
    // Every header ends with a line feed.
    let mut slots = vec![EMPTY_HEADER; line_feeds(buf) + 1];
    let mut req = Request::new(&mut slots);
    let parsed = req.parse(buf);
    match decide(buf, rules, &req, parsed) {
        // More headers than hyper parses: it would answer a bare 431 of its own.
        Verdict::Accept { .. } => Verdict::Reject(Rejection::HeadTooLarge),
        verdict => verdict,
    }
}

/// Headers parsed without allocating, and the most a head may have: hyper's default
/// limit. Raising hyper's limit makes it allocate and zero its header array on every
/// request (measured: 6 % of lbsim's CPU at 2,048), so lbsim keeps hyper's 100 and
/// answers more, which no cloud documents as a limit, as a head too large.
pub const INLINE_HEADERS: usize = 100;

/// hyper's largest body length (`DecodedLength::MAX_LEN`).
const HYPER_MAX_CONTENT_LENGTH: u64 = u64::MAX - 2;

/// hyper answers 414 above this request-target length (`MAX_URI_LEN`).
const HYPER_MAX_URI_LEN: usize = (u16::MAX - 1) as usize;

/// A prefix this long holds a complete head or proves a size limit broken: the request
/// line with its line ending, then `max_head` counted bytes and one more.
fn decisive_len(rules: &Rules) -> usize {
    let counted = rules.max_head.saturating_add(1);
    match rules.max_request_line {
        Some(line) => line.saturating_add(2).saturating_add(counted),
        None => counted,
    }
}

fn decide(
    buf: &[u8],
    rules: &Rules,
    req: &Request<'_, '_>,
    parsed: Result<Status<usize>, httparse::Error>,
) -> Verdict {
    let (end, error_at) = match parsed {
        Ok(Status::Complete(n)) => (n, None),
        Ok(Status::Partial) => (buf.len(), None),
        Err(_) => {
            let at = shortest_failing_prefix(buf);
            (at, Some(at))
        }
    };
    // Only sizes proven by `buf[..end]` count: with a syntax error, the shorter proof wins,
    // so the verdict does not change as more bytes arrive.
    if let Some((_, rejection)) = size_violation(&buf[..end], rules) {
        return Verdict::Reject(rejection);
    }
    if let Some(at) = error_at {
        return Verdict::Reject(Rejection::Malformed(describe_error(buf, at)));
    }
    match parsed {
        Ok(Status::Complete(head_len)) => judge(req, &buf[..head_len], rules),
        _ => Verdict::NeedMore,
    }
}

fn line_feeds(buf: &[u8]) -> usize {
    buf.iter().filter(|&&b| b == b'\n').count()
}

/// The length of the shortest prefix of `buf` that httparse rejects; `buf` is rejected.
/// httparse reads left to right, so a rejected prefix stays rejected as bytes are added.
fn shortest_failing_prefix(buf: &[u8]) -> usize {
    let mut slots = vec![EMPTY_HEADER; line_feeds(buf) + 1];
    let mut fails = |len: usize| {
        matches!(
            Request::new(&mut slots).parse(&buf[..len]),
            Err(e) if e != httparse::Error::TooManyHeaders
        )
    };
    let (mut ok, mut bad) = (0, buf.len());
    while bad - ok > 1 {
        let mid = ok + (bad - ok) / 2;
        if fails(mid) {
            bad = mid;
        } else {
            ok = mid;
        }
    }
    bad
}

/// Names the defect that makes `buf[..at]` unparseable: the byte at `at - 1` is the first
/// one httparse refused. Only `buf[..at]` is read, so the name does not change as more
/// bytes arrive.
fn describe_error(buf: &[u8], at: usize) -> &'static str {
    let buf = &buf[..at.min(buf.len())];
    let Some((&byte, before_byte)) = buf.split_last() else {
        return "malformed head";
    };
    if byte == 0 {
        return "NUL byte";
    }
    if before_byte.last() == Some(&b'\r') && byte != b'\n' {
        return "CR not followed by LF";
    }
    let line_start = before_byte
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let before = &before_byte[line_start..];
    if before_byte[..line_start]
        .iter()
        .all(|&b| b == b'\r' || b == b'\n')
    {
        return describe_request_line_error(before, byte);
    }
    let whitespace = |b: u8| b == b' ' || b == b'\t';
    if before.first().map_or(whitespace(byte), |&b| whitespace(b)) {
        return "header line starts with whitespace (obs-fold)";
    }
    if before.contains(&b':') {
        return "invalid character in header value";
    }
    match byte {
        b':' => "empty header name",
        b' ' | b'\t' => "whitespace in header name or before its colon",
        b'\r' | b'\n' => "header line without a colon",
        _ => "invalid character in header name",
    }
}

/// [`describe_error`] in the request line: `before` is the line up to the refused `byte`.
fn describe_request_line_error(before: &[u8], byte: u8) -> &'static str {
    let mut parts = before.splitn(3, |&b| b == b' ');
    let (method, target, version) = (parts.next(), parts.next(), parts.next());
    match (method, target, version) {
        (Some([]), None, _) if byte == b' ' => "request line starts with a space",
        (_, None, _) => "invalid character in method",
        (_, Some([]), None) if byte == b' ' => "more than one space between request-line parts",
        (_, Some(_), None) if byte == b'\r' || byte == b'\n' => "missing HTTP version",
        (_, Some(_), None) => "invalid character in request target",
        (_, _, Some([])) if byte == b' ' => "more than one space between request-line parts",
        (_, _, Some([])) => "space in request target, or invalid HTTP version",
        (_, _, Some(b"HTTP/1.1" | b"HTTP/1.0")) if byte == b' ' => "space after the HTTP version",
        (_, _, Some(_)) => "unsupported HTTP version",
    }
}

/// The first size limit that `head` (the head, or what has arrived of it) breaks, with the
/// length of the shortest prefix that proves it.
fn size_violation(head: &[u8], rules: &Rules) -> Option<(usize, Rejection)> {
    let mut found: Option<(usize, Rejection)> = None;
    let mut keep = |at: usize, why: Rejection| {
        if found.is_none_or(|(best, _)| at < best) {
            found = Some((at, why));
        }
    };
    // Empty lines before the request line belong to it.
    let leading = head
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    let request_line_end = head[leading..]
        .iter()
        .position(|&b| b == b'\n')
        .map(|i| leading + i + 1);
    if let Some(max) = rules.max_request_line {
        if let Some(at) = line_over(head, 0, leading, max) {
            keep(at, Rejection::RequestLineTooLong);
        }
    }
    if let (Some(max), Some(mut start)) = (rules.max_header_line, request_line_end) {
        while start < head.len() {
            if let Some(at) = line_over(head, start, start, max) {
                keep(at, Rejection::HeaderTooLong);
                break;
            }
            match head[start..].iter().position(|&b| b == b'\n') {
                Some(i) => start += i + 1,
                None => break,
            }
        }
    }
    let counted_from = match rules.max_request_line {
        Some(_) => request_line_end,
        None => Some(0),
    };
    if let Some(from) = counted_from {
        if head.len().saturating_sub(from) > rules.max_head {
            keep(
                from.saturating_add(rules.max_head).saturating_add(1),
                Rejection::HeadTooLarge,
            );
        }
    }
    found
}

/// If the line starting at `start` in `buf` is longer than `max` (line ending excluded),
/// the length of the shortest prefix of `buf` that proves it. Bytes before `content_from`
/// are content (the empty lines before a request line): a line ending comes after them.
fn line_over(buf: &[u8], start: usize, content_from: usize, max: usize) -> Option<usize> {
    let content_from = content_from.clamp(start, buf.len());
    // Up to the line feed, or to the end of what has arrived.
    let end = buf[content_from..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(buf.len(), |i| content_from + i);
    let cr = end > content_from && buf[end - 1] == b'\r';
    let len = end - start - usize::from(cr);
    if len <= max {
        return None;
    }
    // The byte at `max` is content; if it is a CR, only the byte after it shows that it
    // does not end the line.
    let at = start + max;
    Some(if buf[at] == b'\r' && at >= content_from {
        at + 2
    } else {
        at + 1
    })
}

/// The checks that need the whole head; `head` is exactly the head.
fn judge(req: &Request<'_, '_>, head: &[u8], rules: &Rules) -> Verdict {
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Verdict::Reject(Rejection::Malformed("incomplete request line"));
    };
    // hyper's next steps after httparse.
    if http::Method::from_bytes(method.as_bytes()).is_err() {
        return Verdict::Reject(Rejection::Malformed("invalid character in method"));
    }
    if target.len() > HYPER_MAX_URI_LEN {
        return Verdict::Reject(Rejection::Malformed("request target too long"));
    }
    if http::Uri::try_from(target.as_bytes()).is_err() {
        return Verdict::Reject(Rejection::Malformed("invalid request target"));
    }

    let framing = Framing::read(req.headers);
    if framing.unsupported_coding {
        return Verdict::Reject(Rejection::UnsupportedTransferEncoding);
    }

    let (class, reason) = classify(method, version, head, req.headers, &framing);
    let blocked = match rules.desync {
        DesyncMode::Monitor => false,
        DesyncMode::Defensive => class == DesyncClass::Severe,
        DesyncMode::Strictest => class != DesyncClass::Compliant,
    };
    if blocked {
        return Verdict::Reject(Rejection::Desync(class, reason));
    }

    // After the desync classification, so that a smuggling attempt is counted as one
    // whatever its method.
    if let Some(&(name, answer)) = rules.refused_methods.iter().find(|(m, _)| *m == method) {
        return Verdict::Reject(match answer {
            MethodAnswer::NotAllowed => Rejection::MethodNotAllowed(name),
            MethodAnswer::BadRequest => Rejection::UnsupportedMethod(name),
        });
    }

    if let Err(why) = host_lines(version, req.headers, &rules.host) {
        return Verdict::Reject(Rejection::Malformed(why));
    }

    if let Some(max) = rules.max_forwarded_for {
        let count = forwarded_for_count(req.headers);
        if count > max {
            return Verdict::Reject(Rejection::TooManyForwardedFor(count));
        }
    }

    let body = match hyper_framing(version, req.headers) {
        Ok(body) => body,
        Err(why) => return Verdict::Reject(Rejection::Malformed(why)),
    };

    Verdict::Accept {
        head_len: head.len(),
        body,
        ambiguous: rules.desync == DesyncMode::Defensive && class == DesyncClass::Ambiguous,
    }
}

/// What the `Transfer-Encoding` and `Content-Length` lines say.
struct Framing {
    /// At least one `Transfer-Encoding` line.
    has_te: bool,
    /// A coding other than chunked or identity.
    unsupported_coding: bool,
    /// An empty element in a `Transfer-Encoding` list.
    empty_coding: bool,
    /// How often `chunked` appears over all `Transfer-Encoding` lines.
    chunked: usize,
    /// `Content-Length` values, in order; `None` for one that does not parse.
    lengths: Vec<Option<u64>>,
}

impl Framing {
    fn read(headers: &[Header<'_>]) -> Framing {
        let mut framing = Framing {
            has_te: false,
            unsupported_coding: false,
            empty_coding: false,
            chunked: 0,
            lengths: Vec::new(),
        };
        for header in headers {
            if header.name.eq_ignore_ascii_case("transfer-encoding") {
                framing.has_te = true;
                for element in header.value.split(|&b| b == b',') {
                    let element = trim(element);
                    if element.is_empty() {
                        framing.empty_coding = true;
                        continue;
                    }
                    let coding = trim(element.split(|&b| b == b';').next().unwrap_or_default());
                    if coding.eq_ignore_ascii_case(b"chunked") {
                        framing.chunked += 1;
                    } else if !coding.eq_ignore_ascii_case(b"identity") {
                        framing.unsupported_coding = true;
                    }
                }
            } else if header.name.eq_ignore_ascii_case("content-length") {
                framing.lengths.push(digits(trim(header.value)));
            }
        }
        framing
    }
}

/// The desync class of a syntactically valid head, with the reason of the first finding
/// of the highest class.
fn classify(
    method: &str,
    version: u8,
    head: &[u8],
    headers: &[Header<'_>],
    framing: &Framing,
) -> (DesyncClass, &'static str) {
    let mut class = DesyncClass::Compliant;
    let mut reason = "Compliant";
    let mut note = |c: DesyncClass, r: &'static str| {
        if c > class {
            class = c;
            reason = r;
        }
    };

    if headers.iter().any(|h| suspicious_name(h.name)) {
        note(DesyncClass::Ambiguous, "SuspiciousHeader");
    }
    if framing.has_te && version == 0 {
        note(DesyncClass::Ambiguous, "UndefinedTransferEncodingSemantics");
    }
    if framing.empty_coding {
        note(DesyncClass::Severe, "BadTransferEncoding");
    }
    if framing.chunked > 1 {
        note(DesyncClass::Severe, "MultipleTransferEncodingChunked");
    }
    let mut length: Option<u64> = None;
    for value in &framing.lengths {
        match (value, length) {
            (None, _) => note(DesyncClass::Severe, "BadContentLength"),
            (Some(v), None) => length = Some(*v),
            (Some(v), Some(first)) if *v != first => {
                note(DesyncClass::Severe, "MultipleContentLength")
            }
            (Some(_), Some(_)) => note(DesyncClass::Ambiguous, "DuplicateContentLength"),
        }
    }
    if method == "GET" || method == "HEAD" {
        if framing.has_te {
            note(DesyncClass::Ambiguous, "UndefinedTransferEncodingSemantics");
        }
        match length {
            Some(0) => note(DesyncClass::Acceptable, "GetHeadZeroContentLength"),
            Some(_) => note(DesyncClass::Ambiguous, "UndefinedContentLengthSemantics"),
            None => {}
        }
    }
    if framing.has_te && !framing.lengths.is_empty() {
        note(DesyncClass::Ambiguous, "BothTeClPresent");
    }
    let bare_lf = head
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r'));
    if bare_lf {
        note(DesyncClass::Acceptable, "NonCrLfLineTermination");
    }
    (class, reason)
}

/// A name that reads `Transfer-Encoding` or `Content-Length` once case and everything but
/// letters and digits are ignored, without being it.
fn suspicious_name(name: &str) -> bool {
    if name.eq_ignore_ascii_case("transfer-encoding") || name.eq_ignore_ascii_case("content-length")
    {
        return false;
    }
    let letters = name
        .bytes()
        .filter(u8::is_ascii_alphanumeric)
        .map(|b| b.to_ascii_lowercase());
    letters.clone().eq(*b"transferencoding") || letters.eq(*b"contentlength")
}

/// The [`HostRule`] applied to a complete head. An absolute-form target
/// (`GET http://a/ HTTP/1.1`) carries the authority that wins over `Host` (RFC 9112
/// §3.2.2), but the client must still send `Host` (§3.2: "A client MUST send a Host header
/// field in all HTTP/1.1 request messages"), so it gets no exemption. An empty value is
/// accepted: it is what §3.2 tells a client to send when the target URI has no
/// authority, and §3.3 lets the server use its default authority then, as a load
/// balancer's default rule does.
fn host_lines(version: u8, headers: &[Header<'_>], rule: &HostRule) -> Result<(), &'static str> {
    let mut hosts = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"))
        .map(|h| trim(h.value));
    let Some(first) = hosts.next() else {
        return if rule.required_in_http11 && version == 1 {
            Err("missing Host header")
        } else {
            Ok(())
        };
    };
    if hosts.next().is_none() {
        return Ok(());
    }
    match rule.repeated {
        RepeatedHost::ServeIfFirstValid if valid_host(first) => Ok(()),
        _ => Err("more than one Host header"),
    }
}

/// `uri-host [ ":" port ]` (RFC 9112 §3.2), not empty: an authority without userinfo.
fn valid_host(value: &[u8]) -> bool {
    !value.is_empty()
        && !value.contains(&b'@')
        && http::uri::Authority::try_from(value).is_ok_and(|a| !a.host().is_empty())
}

/// Addresses in all `X-Forwarded-For` lines.
fn forwarded_for_count(headers: &[Header<'_>]) -> usize {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("x-forwarded-for"))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .filter(|address| !trim(address).is_empty())
        .count()
}

/// hyper's own framing rules after httparse (`proto::h1::role::Server::parse`): a head
/// accepted here must not earn hyper's bare 400.
fn hyper_framing(version: u8, headers: &[Header<'_>]) -> Result<BodyLength, &'static str> {
    let mut te = false;
    let mut te_chunked = false;
    let mut length: Option<u64> = None;
    for header in headers {
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            if version == 0 {
                return Err("Transfer-Encoding in an HTTP/1.0 request");
            }
            te = true;
            // chunked must be the last coding of the last line.
            te_chunked = std::str::from_utf8(header.value).is_ok_and(|v| {
                v.rsplit(',')
                    .next()
                    .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
            });
        } else if header.name.eq_ignore_ascii_case("content-length") && !te {
            match (digits(header.value), length) {
                (None, _) => return Err("invalid Content-Length"),
                (Some(n), None) if n > HYPER_MAX_CONTENT_LENGTH => {
                    return Err("Content-Length too large")
                }
                (Some(n), None) => length = Some(n),
                (Some(n), Some(first)) if n != first => return Err("Content-Length values differ"),
                (Some(_), Some(_)) => {}
            }
        }
    }
    if te && !te_chunked {
        return Err("Transfer-Encoding does not end with chunked");
    }
    Ok(if te {
        BodyLength::Chunked
    } else {
        BodyLength::Bytes(length.unwrap_or(0))
    })
}

/// 1*DIGIT as a u64; `None` for anything else, overflow included.
fn digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// Without leading and trailing spaces and tabs.
fn trim(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |i| i + 1);
    &value[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: usize = 1024;

    fn aws(buf: &[u8]) -> Verdict {
        check_head(buf, &AWS_RULES)
    }

    fn gcp(buf: &[u8]) -> Verdict {
        check_head(buf, &GCP_RULES)
    }

    /// [`super::check_head`] with the body framing left out (see [`shape`]).
    fn check_head(buf: &[u8], rules: &Rules) -> Verdict {
        shape(super::check_head(buf, rules))
    }

    /// The verdict without its body framing, which the tests below do not look at
    /// (`body_framing_is_as_hyper_reads_it` does).
    fn shape(verdict: Verdict) -> Verdict {
        match verdict {
            Verdict::Accept {
                head_len,
                ambiguous,
                ..
            } => Verdict::Accept {
                head_len,
                body: BodyLength::Bytes(0),
                ambiguous,
            },
            other => other,
        }
    }

    #[test]
    fn body_framing_is_as_hyper_reads_it() {
        let body = |head: &[u8]| match super::check_head(head, &AWS_RULES) {
            Verdict::Accept { body, .. } => body,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            body(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
            BodyLength::Bytes(0)
        );
        assert_eq!(
            body(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n"),
            BodyLength::Bytes(12)
        );
        assert_eq!(
            body(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"),
            BodyLength::Chunked
        );
        // Both: served (Ambiguous) by Transfer-Encoding, as hyper reads it.
        assert_eq!(
            body(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
            BodyLength::Chunked
        );
    }

    fn mode(desync: DesyncMode) -> Rules {
        Rules {
            desync,
            ..AWS_RULES
        }
    }

    fn served(head_len: usize) -> Verdict {
        Verdict::Accept {
            head_len,
            body: BodyLength::Bytes(0),
            ambiguous: false,
        }
    }

    fn served_then_closed(head_len: usize) -> Verdict {
        Verdict::Accept {
            head_len,
            body: BodyLength::Bytes(0),
            ambiguous: true,
        }
    }

    fn rejected(r: Rejection) -> Verdict {
        Verdict::Reject(r)
    }

    fn malformed(what: &'static str) -> Verdict {
        Verdict::Reject(Rejection::Malformed(what))
    }

    fn desync(class: DesyncClass, reason: &'static str) -> Verdict {
        Verdict::Reject(Rejection::Desync(class, reason))
    }

    /// `POST /` with these header lines (CRLF added) and an empty line.
    fn post(headers: &[&str]) -> Vec<u8> {
        request("POST", headers)
    }

    fn request(method: &str, headers: &[&str]) -> Vec<u8> {
        let mut head = format!("{method} / HTTP/1.1\r\nHost: example.com\r\n");
        for h in headers {
            head.push_str(h);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        head.into_bytes()
    }

    /// A request line of exactly `len` bytes, line ending excluded.
    fn request_line(len: usize) -> String {
        let fixed = "GET / HTTP/1.1".len();
        format!("GET /{} HTTP/1.1", "a".repeat(len - fixed))
    }

    #[test]
    fn accepts_a_plain_get_and_reports_where_its_head_ends() {
        let head = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";
        assert_eq!(aws(head), served(head.len()));
        assert_eq!(gcp(head), served(head.len()));
        // Body bytes and a pipelined request after the head are not part of it.
        let mut more = head.to_vec();
        more.extend_from_slice(b"GET /next HTTP/1.1\r\n\r\n");
        assert_eq!(aws(&more), served(head.len()));
    }

    #[test]
    fn http_1_1_without_host_is_a_400_on_both_clouds() {
        let want = malformed("missing Host header");
        assert_eq!(aws(b"GET / HTTP/1.1\r\n\r\n"), want);
        assert_eq!(gcp(b"GET / HTTP/1.1\r\n\r\n"), want);
        // Whatever the desync mode: it is not a framing question.
        for desync in [DesyncMode::Monitor, DesyncMode::Strictest] {
            assert_eq!(check_head(b"GET / HTTP/1.1\r\n\r\n", &mode(desync)), want);
        }
        // Undecided until the head is complete: a Host line may still come.
        assert_eq!(aws(b"GET / HTTP/1.1\r\nX-A: 1\r\n"), Verdict::NeedMore);
    }

    #[test]
    fn http_1_0_without_host_is_served() {
        assert_eq!(aws(b"GET / HTTP/1.0\r\n\r\n"), served(18));
        assert_eq!(gcp(b"GET / HTTP/1.0\r\n\r\n"), served(18));
    }

    #[test]
    fn host_is_matched_in_any_case_and_may_come_last() {
        let head = b"GET / HTTP/1.1\r\nX-A: 1\r\nhOsT: example.com\r\n\r\n";
        assert_eq!(aws(head), served(head.len()));
        assert_eq!(gcp(head), served(head.len()));
    }

    #[test]
    fn two_host_lines_are_a_400_on_aws() {
        for second in [
            "Host: example.com",
            "Host: other.example",
            "host: example.com",
        ] {
            let head = request("GET", &[second]);
            assert_eq!(
                aws(&head),
                malformed("more than one Host header"),
                "{second}"
            );
        }
        // HTTP/1.0 too: RFC 9112 §3.2 forbids a repeated Host in any request message.
        let old = b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n";
        assert_eq!(aws(old), malformed("more than one Host header"));
    }

    #[test]
    fn two_host_lines_are_served_on_gcp_when_the_first_is_valid() {
        for second in ["Host: example.com", "Host: other.example:8080", "Host: "] {
            let head = request("GET", &[second]);
            assert_eq!(gcp(&head), served(head.len()), "{second}");
        }
        for first in ["", "user@example.com", ":80", "a b", "caf\u{e9}"] {
            let head = format!("GET / HTTP/1.1\r\nHost: {first}\r\nHost: example.com\r\n\r\n");
            assert_eq!(
                gcp(head.as_bytes()),
                malformed("more than one Host header"),
                "{first:?}"
            );
        }
    }

    #[test]
    fn an_empty_host_is_served() {
        let head = b"GET / HTTP/1.1\r\nHost:\r\n\r\n";
        assert_eq!(aws(head), served(head.len()));
        assert_eq!(gcp(head), served(head.len()));
    }

    #[test]
    fn absolute_form_needs_a_host_line_too() {
        let with = b"GET http://example.com/x HTTP/1.1\r\nHost: example.com\r\n\r\n";
        assert_eq!(aws(with), served(with.len()));
        assert_eq!(gcp(with), served(with.len()));
        // The target's authority wins over Host (RFC 9112 §3.2.2): a different Host is
        // not checked against it.
        let differ = b"GET http://example.com/x HTTP/1.1\r\nHost: other\r\n\r\n";
        assert_eq!(aws(differ), served(differ.len()));
        let without = b"GET http://example.com/x HTTP/1.1\r\n\r\n";
        assert_eq!(aws(without), malformed("missing Host header"));
        assert_eq!(gcp(without), malformed("missing Host header"));
        let old = b"GET http://example.com/x HTTP/1.0\r\n\r\n";
        assert_eq!(aws(old), served(old.len()));
    }

    #[test]
    fn waits_for_more_while_the_head_is_incomplete() {
        let head = b"POST /x HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\n";
        for len in 0..head.len() {
            assert_eq!(
                aws(&head[..len]),
                Verdict::NeedMore,
                "prefix of {len} bytes"
            );
            assert_eq!(
                gcp(&head[..len]),
                Verdict::NeedMore,
                "prefix of {len} bytes"
            );
        }
        assert_eq!(aws(head), served(head.len()));
    }

    #[test]
    fn empty_lines_before_the_request_line_are_skipped() {
        assert_eq!(aws(b"\r\n"), Verdict::NeedMore);
        assert_eq!(aws(b"\r\n\r\nGET / HTTP/1.0\r\n\r\n"), served(22));
    }

    #[test]
    fn aws_request_line_limit_is_16_kib_without_the_line_ending() {
        let at_limit = format!("{}\r\nHost: t\r\n\r\n", request_line(16 * KIB));
        assert_eq!(aws(at_limit.as_bytes()), served(at_limit.len()));
        let over = format!("{}\r\nHost: t\r\n\r\n", request_line(16 * KIB + 1));
        assert_eq!(
            aws(over.as_bytes()),
            rejected(Rejection::RequestLineTooLong)
        );
        // Proven before the line ends: 16 KiB + 1 bytes of line are enough...
        assert_eq!(
            aws(&over.as_bytes()[..16 * KIB + 1]),
            rejected(Rejection::RequestLineTooLong)
        );
        // ...but not 16 KiB and a CR, which may start the line ending.
        let cr = format!("{}\r", request_line(16 * KIB));
        assert_eq!(aws(cr.as_bytes()), Verdict::NeedMore);
        // GCP has no request-line limit of its own.
        assert_eq!(gcp(over.as_bytes()), served(over.len()));
    }

    #[test]
    fn aws_header_line_limit_is_16_kib_per_header() {
        let name = "X-Big: ";
        let at_limit = post(&[&format!("{name}{}", "v".repeat(16 * KIB - name.len()))]);
        assert_eq!(aws(&at_limit), served(at_limit.len()));
        let over = post(&[&format!("{name}{}", "v".repeat(16 * KIB + 1 - name.len()))]);
        assert_eq!(aws(&over), rejected(Rejection::HeaderTooLong));
        // Proven as soon as the line passes the limit, with no line ending in sight.
        let start = over.len() - (16 * KIB + 1) - 4;
        assert_eq!(
            aws(&over[..start + 16 * KIB + 1]),
            rejected(Rejection::HeaderTooLong)
        );
        assert_eq!(aws(&over[..start + 16 * KIB]), Verdict::NeedMore);
        assert_eq!(gcp(&over), served(over.len()));
    }

    /// Header lines of `line` bytes each (CRLF included) filling `total` bytes with the
    /// final empty line, after `request_line`.
    fn head_of(request_line: &str, total: usize) -> Vec<u8> {
        let mut head = format!("{request_line}\r\n").into_bytes();
        let mut left = total - 2;
        let mut n = 0;
        while left > 0 {
            let line = left.min(8000);
            assert!(line >= 12, "cannot fill {left} bytes");
            // The first line is the Host that an HTTP/1.1 request needs.
            let lead = if n == 0 {
                "Host: ".to_string()
            } else {
                format!("X-{n:04}: ")
            };
            let value = "v".repeat(line - lead.len() - 2);
            head.extend_from_slice(format!("{lead}{value}\r\n").as_bytes());
            left -= line;
            n += 1;
            if left > 0 && left < 12 {
                // Rebalance: give the last line enough room.
                head.truncate(head.len() - line);
                left += line;
                let line = left - 12;
                let value = "v".repeat(line - lead.len() - 2);
                head.extend_from_slice(format!("{lead}{value}\r\n").as_bytes());
                left -= line;
            }
        }
        head.extend_from_slice(b"\r\n");
        head
    }

    #[test]
    fn aws_head_limit_counts_the_header_lines_only() {
        let line = request_line(1000);
        let at_limit = head_of(&line, 64 * KIB);
        assert_eq!(at_limit.len(), 1002 + 64 * KIB);
        assert_eq!(aws(&at_limit), served(at_limit.len()));
        let over = head_of(&line, 64 * KIB + 1);
        assert_eq!(aws(&over), rejected(Rejection::HeadTooLarge));
        // Proven before the empty line arrives.
        assert_eq!(
            aws(&over[..1002 + 64 * KIB + 1]),
            rejected(Rejection::HeadTooLarge)
        );
        assert_eq!(aws(&over[..1002 + 64 * KIB]), Verdict::NeedMore);
    }

    #[test]
    fn gcp_head_limit_counts_the_request_line_too() {
        let line = request_line(1000);
        let at_limit = head_of(&line, 64 * KIB - 1002);
        assert_eq!(at_limit.len(), 64 * KIB);
        assert_eq!(gcp(&at_limit), served(at_limit.len()));
        let over = head_of(&line, 64 * KIB - 1001);
        assert_eq!(gcp(&over), rejected(Rejection::HeadTooLarge));
        assert_eq!(
            gcp(&over[..64 * KIB + 1]),
            rejected(Rejection::HeadTooLarge)
        );
        assert_eq!(gcp(&over[..64 * KIB]), Verdict::NeedMore);
        // The same head is within AWS's limits: 63 KiB of header lines.
        assert_eq!(aws(&over), served(over.len()));
    }

    #[test]
    fn endless_empty_lines_hit_a_limit() {
        let crlfs = b"\r\n".repeat(40 * KIB);
        assert_eq!(aws(&crlfs), rejected(Rejection::RequestLineTooLong));
        assert_eq!(gcp(&crlfs), rejected(Rejection::HeadTooLarge));
    }

    #[test]
    fn endless_header_lines_hit_a_limit() {
        let mut buf = b"GET / HTTP/1.1\r\n".to_vec();
        buf.extend(b"a:b\r\n".repeat(40 * KIB));
        assert_eq!(aws(&buf), rejected(Rejection::HeadTooLarge));
        assert_eq!(gcp(&buf), rejected(Rejection::HeadTooLarge));
    }

    #[test]
    fn between_a_size_and_a_syntax_error_the_first_proven_wins() {
        let mut nul_first = b"GET / HTTP/1.1\r\nA: \0".to_vec();
        nul_first.extend(vec![b'v'; 20 * KIB]);
        assert_eq!(aws(&nul_first), malformed("NUL byte"));
        let mut long_first = b"GET / HTTP/1.1\r\nA: ".to_vec();
        long_first.extend(vec![b'v'; 20 * KIB]);
        long_first.push(0);
        assert_eq!(aws(&long_first), rejected(Rejection::HeaderTooLong));
        // GCP has no line limit: the NUL decides.
        assert_eq!(gcp(&long_first), malformed("NUL byte"));
    }

    #[test]
    fn malformed_heads_are_named() {
        let cases: &[(&[u8], &str)] = &[
            (b"GET / HTTP/1.1\r\nA: x\0y\r\n\r\n", "NUL byte"),
            (b"GET /\0 HTTP/1.1\r\n\r\n", "NUL byte"),
            (
                b"GET / HTTP/1.1\r\nA: x\ry\r\n\r\n",
                "CR not followed by LF",
            ),
            (
                b"GET / HTTP/1.1\r\nA: x\r\n y\r\n\r\n",
                "header line starts with whitespace (obs-fold)",
            ),
            (
                b"GET / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n",
                "whitespace in header name or before its colon",
            ),
            (
                b"GET / HTTP/1.1\r\nNoColon\r\n\r\n",
                "header line without a colon",
            ),
            (b"GET / HTTP/1.1\r\n: x\r\n\r\n", "empty header name"),
            (
                b"GET / HTTP/1.1\r\nA\x01: x\r\n\r\n",
                "invalid character in header name",
            ),
            (
                b"GET / HTTP/1.1\r\nA: x\x7f\r\n\r\n",
                "invalid character in header value",
            ),
            (
                b"GET /a b HTTP/1.1\r\n\r\n",
                "space in request target, or invalid HTTP version",
            ),
            (b"GET / HTTP/1.2\r\n\r\n", "unsupported HTTP version"),
            (b"GET / HTTP/2.0\r\n\r\n", "unsupported HTTP version"),
            (b"GET / HTTP/1.1 \r\n\r\n", "space after the HTTP version"),
            (b"GET /\r\n\r\n", "missing HTTP version"),
            (
                b"GET  / HTTP/1.1\r\n\r\n",
                "more than one space between request-line parts",
            ),
            (
                b" GET / HTTP/1.1\r\n\r\n",
                "request line starts with a space",
            ),
            (
                b"G\xc3\xa9T / HTTP/1.1\r\n\r\n",
                "invalid character in method",
            ),
            (b"\x16\x03\x01\x02\x00\x01", "invalid character in method"),
            (
                b"GET /\x01 HTTP/1.1\r\n\r\n",
                "invalid character in request target",
            ),
            // httparse takes these; the URI parser behind hyper does not.
            (b"GET /<a> HTTP/1.1\r\n\r\n", "invalid request target"),
            (b"GET /a`b HTTP/1.1\r\n\r\n", "invalid request target"),
            (
                b"GET / HTTP/1.1\r\nX\xc3\xa9: 1\r\n\r\n",
                "invalid character in header name",
            ),
        ];
        for (buf, what) in cases {
            let shown = String::from_utf8_lossy(buf);
            assert_eq!(aws(buf), malformed(what), "AWS {shown:?}");
            assert_eq!(gcp(buf), malformed(what), "GCP {shown:?}");
            assert_eq!(
                check_head(buf, &mode(DesyncMode::Monitor)),
                malformed(what),
                "Monitor {shown:?}"
            );
        }
    }

    #[test]
    fn a_syntax_error_is_rejected_before_the_head_ends() {
        assert_eq!(aws(b"GET / HTTP/1.1\r\nA: \0"), malformed("NUL byte"));
        assert_eq!(aws(b"\x16\x03"), malformed("invalid character in method"));
        assert_eq!(
            aws(b"GET / HTTP/1.7"),
            malformed("unsupported HTTP version")
        );
    }

    #[test]
    fn non_ascii_is_accepted_in_values_and_the_target() {
        let value = b"GET / HTTP/1.1\r\nHost: t\r\nX-Name: caf\xc3\xa9\r\n\r\n";
        assert_eq!(aws(value), served(value.len()));
        let target = b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: t\r\n\r\n";
        assert_eq!(aws(target), served(target.len()));
    }

    #[test]
    fn transfer_codings_other_than_chunked_or_identity_are_not_implemented() {
        for te in [
            "gzip",
            "xchunked",
            "chunked, gzip",
            "gzip, chunked",
            "chunked;x, deflate",
        ] {
            let head = post(&[&format!("Transfer-Encoding: {te}")]);
            let want = rejected(Rejection::UnsupportedTransferEncoding);
            assert_eq!(aws(&head), want, "{te}");
            assert_eq!(gcp(&head), want, "{te}");
            assert_eq!(check_head(&head, &mode(DesyncMode::Monitor)), want, "{te}");
        }
        // Split over two lines too, and before the desync check.
        let head = post(&[
            "Transfer-Encoding: chunked",
            "Transfer-Encoding: xchunked",
            "Content-Length: 5",
        ]);
        assert_eq!(aws(&head), rejected(Rejection::UnsupportedTransferEncoding));
    }

    #[test]
    fn chunked_is_case_insensitive_and_may_follow_identity() {
        for te in [
            "chunked",
            "Chunked",
            "CHUNKED",
            "identity, chunked",
            "\tchunked",
        ] {
            let head = post(&[&format!("Transfer-Encoding: {te}")]);
            assert_eq!(aws(&head), served(head.len()), "{te:?}");
        }
    }

    #[test]
    fn a_body_length_hyper_cannot_frame_is_malformed() {
        // identity alone: no way to tell where the body ends.
        let identity = post(&["Transfer-Encoding: identity"]);
        assert_eq!(
            aws(&identity),
            malformed("Transfer-Encoding does not end with chunked")
        );
        let params = post(&["Transfer-Encoding: chunked;ext=1"]);
        assert_eq!(
            aws(&params),
            malformed("Transfer-Encoding does not end with chunked")
        );
    }

    #[test]
    fn bad_content_lengths_are_severe() {
        for cl in [
            "-1",
            "+5",
            "5, 5",
            "0x10",
            "5 5",
            "",
            "18446744073709551616",
            "99999999999999999999999",
        ] {
            let head = post(&[&format!("Content-Length: {cl}")]);
            let want = desync(DesyncClass::Severe, "BadContentLength");
            assert_eq!(aws(&head), want, "{cl:?}");
            assert_eq!(gcp(&head), want, "{cl:?}");
        }
        // Leading zeros are still digits.
        let zeros = post(&["Content-Length: 005"]);
        assert_eq!(aws(&zeros), served(zeros.len()));
    }

    #[test]
    fn differing_content_lengths_are_severe_and_equal_ones_ambiguous() {
        let differ = post(&["Content-Length: 5", "Content-Length: 6"]);
        assert_eq!(
            aws(&differ),
            desync(DesyncClass::Severe, "MultipleContentLength")
        );
        let same = post(&["Content-Length: 5", "Content-Length: 5"]);
        assert_eq!(aws(&same), served_then_closed(same.len()));
        assert_eq!(
            check_head(&same, &mode(DesyncMode::Strictest)),
            desync(DesyncClass::Ambiguous, "DuplicateContentLength")
        );
    }

    #[test]
    fn chunked_twice_and_empty_codings_are_severe() {
        for headers in [
            &["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"][..],
            &["Transfer-Encoding: chunked, chunked"][..],
        ] {
            assert_eq!(
                aws(&post(headers)),
                desync(DesyncClass::Severe, "MultipleTransferEncodingChunked")
            );
        }
        for te in ["chunked,", ", chunked", ""] {
            let head = post(&[&format!("Transfer-Encoding: {te}")]);
            assert_eq!(
                aws(&head),
                desync(DesyncClass::Severe, "BadTransferEncoding"),
                "{te:?}"
            );
        }
    }

    #[test]
    fn both_transfer_encoding_and_content_length_are_served_then_closed() {
        // CL.TE and TE.CL: AWS classifies both orders as Ambiguous (BothTeClPresent).
        for headers in [
            &["Content-Length: 6", "Transfer-Encoding: chunked"][..],
            &["Transfer-Encoding: chunked", "Content-Length: 4"][..],
        ] {
            let head = post(headers);
            assert_eq!(aws(&head), served_then_closed(head.len()));
            assert_eq!(gcp(&head), served_then_closed(head.len()));
            assert_eq!(
                check_head(&head, &mode(DesyncMode::Strictest)),
                desync(DesyncClass::Ambiguous, "BothTeClPresent")
            );
            assert_eq!(
                check_head(&head, &mode(DesyncMode::Monitor)),
                served(head.len())
            );
        }
    }

    #[test]
    fn bodies_on_get_and_head_are_ambiguous_except_a_zero_length() {
        for method in ["GET", "HEAD"] {
            let cl = request(method, &["Content-Length: 5"]);
            assert_eq!(aws(&cl), served_then_closed(cl.len()));
            assert_eq!(
                check_head(&cl, &mode(DesyncMode::Strictest)),
                desync(DesyncClass::Ambiguous, "UndefinedContentLengthSemantics")
            );
            let te = request(method, &["Transfer-Encoding: chunked"]);
            assert_eq!(aws(&te), served_then_closed(te.len()));
            assert_eq!(
                check_head(&te, &mode(DesyncMode::Strictest)),
                desync(DesyncClass::Ambiguous, "UndefinedTransferEncodingSemantics")
            );
            let zero = request(method, &["Content-Length: 0"]);
            assert_eq!(aws(&zero), served(zero.len()));
            assert_eq!(
                check_head(&zero, &mode(DesyncMode::Strictest)),
                desync(DesyncClass::Acceptable, "GetHeadZeroContentLength")
            );
        }
        // Other methods carry bodies as they like.
        let delete = request("DELETE", &["Content-Length: 5"]);
        assert_eq!(
            check_head(&delete, &mode(DesyncMode::Strictest)),
            served(delete.len())
        );
    }

    #[test]
    fn names_that_normalise_to_te_or_cl_are_suspicious() {
        for name in [
            "Transfer_Encoding",
            "Transfer.Encoding",
            "TransferEncoding",
            "Content~Length",
            "-content-length",
            "Content-Length-",
        ] {
            let head = post(&[&format!("{name}: chunked")]);
            assert_eq!(aws(&head), served_then_closed(head.len()), "{name}");
            assert_eq!(
                check_head(&head, &mode(DesyncMode::Strictest)),
                desync(DesyncClass::Ambiguous, "SuspiciousHeader"),
                "{name}"
            );
        }
        for name in [
            "Transfer-Encodings",
            "X-Content-Length",
            "TRANSFER-ENCODING",
        ] {
            let head = post(&[&format!("{name}: 5"), "Content-Length: 0"]);
            let verdict = check_head(&head, &mode(DesyncMode::Strictest));
            assert!(
                !matches!(
                    verdict,
                    Verdict::Reject(Rejection::Desync(_, "SuspiciousHeader"))
                ),
                "{name}: {verdict:?}"
            );
        }
    }

    #[test]
    fn bare_line_feeds_are_acceptable() {
        let head = b"GET / HTTP/1.1\nHost: example.com\n\n";
        assert_eq!(aws(head), served(head.len()));
        assert_eq!(
            check_head(head, &mode(DesyncMode::Strictest)),
            desync(DesyncClass::Acceptable, "NonCrLfLineTermination")
        );
        let one = b"GET / HTTP/1.1\r\nHost: example.com\n\r\n";
        assert_eq!(
            check_head(one, &mode(DesyncMode::Strictest)),
            desync(DesyncClass::Acceptable, "NonCrLfLineTermination")
        );
    }

    #[test]
    fn the_worst_class_wins_and_its_first_reason_is_named() {
        let head =
            b"GET / HTTP/1.1\nTransfer_Encoding: x\nContent-Length: 1\nContent-Length: 2\n\n";
        assert_eq!(
            check_head(head, &mode(DesyncMode::Strictest)),
            desync(DesyncClass::Severe, "MultipleContentLength")
        );
        let ambiguous = b"GET / HTTP/1.1\nTransfer_Encoding: x\nContent-Length: 1\n\n";
        assert_eq!(
            check_head(ambiguous, &mode(DesyncMode::Strictest)),
            desync(DesyncClass::Ambiguous, "SuspiciousHeader")
        );
    }

    #[test]
    fn monitor_serves_what_hyper_can_frame_and_nothing_else() {
        let monitor = mode(DesyncMode::Monitor);
        let twice = post(&["Transfer-Encoding: chunked, chunked"]);
        assert_eq!(check_head(&twice, &monitor), served(twice.len()));
        let bad = post(&["Content-Length: abc"]);
        assert_eq!(
            check_head(&bad, &monitor),
            malformed("invalid Content-Length")
        );
        let differ = post(&["Content-Length: 1", "Content-Length: 2"]);
        assert_eq!(
            check_head(&differ, &monitor),
            malformed("Content-Length values differ")
        );
        // After Transfer-Encoding, hyper ignores Content-Length, good or bad.
        let ignored = post(&["Transfer-Encoding: chunked", "Content-Length: abc"]);
        assert_eq!(check_head(&ignored, &monitor), served(ignored.len()));
        let trailing = post(&["Transfer-Encoding: chunked,"]);
        assert_eq!(
            check_head(&trailing, &monitor),
            malformed("Transfer-Encoding does not end with chunked")
        );
        let huge = post(&["Content-Length: 18446744073709551615"]);
        assert_eq!(
            check_head(&huge, &monitor),
            malformed("Content-Length too large")
        );
    }

    #[test]
    fn transfer_encoding_in_http_1_0_cannot_be_served() {
        let head = b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(
            aws(head),
            malformed("Transfer-Encoding in an HTTP/1.0 request")
        );
        assert_eq!(
            check_head(head, &mode(DesyncMode::Strictest)),
            desync(DesyncClass::Ambiguous, "UndefinedTransferEncodingSemantics")
        );
    }

    #[test]
    fn aws_rejects_trace_and_gcp_does_not() {
        let trace = b"TRACE / HTTP/1.1\r\nHost: example.com\r\n\r\n";
        assert_eq!(aws(trace), rejected(Rejection::MethodNotAllowed("TRACE")));
        assert_eq!(gcp(trace), served(trace.len()));
        // Methods are case-sensitive: `trace` is some other method.
        let lower = b"trace / HTTP/1.1\r\nHost: example.com\r\n\r\n";
        assert_eq!(aws(lower), served(lower.len()));
        // A severe desync is rejected as such first.
        let severe = request("TRACE", &["Content-Length: x"]);
        assert_eq!(
            aws(&severe),
            desync(DesyncClass::Severe, "BadContentLength")
        );
    }

    #[test]
    fn both_clouds_answer_connect_with_their_400() {
        let connect = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n";
        let want = rejected(Rejection::UnsupportedMethod("CONNECT"));
        assert_eq!(aws(connect), want);
        assert_eq!(gcp(connect), want);
        // In every desync mode, in HTTP/1.0, and with an origin-form target too.
        assert_eq!(check_head(connect, &mode(DesyncMode::Monitor)), want);
        assert_eq!(check_head(connect, &mode(DesyncMode::Strictest)), want);
        let old = b"CONNECT example.com:443 HTTP/1.0\r\n\r\n";
        assert_eq!(aws(old), want);
        let origin = request("CONNECT", &[]);
        assert_eq!(gcp(&origin), want);
        // The method decides before the missing Host does.
        let hostless = b"CONNECT example.com:443 HTTP/1.1\r\n\r\n";
        assert_eq!(aws(hostless), want);
        // Case-sensitive: `connect` is some other method, forwarded.
        let lower = b"connect / HTTP/1.1\r\nHost: example.com\r\n\r\n";
        assert_eq!(aws(lower), served(lower.len()));
        assert_eq!(gcp(lower), served(lower.len()));
        // A severe desync is rejected as such first.
        let severe = request("CONNECT", &["Content-Length: x"]);
        assert_eq!(
            gcp(&severe),
            desync(DesyncClass::Severe, "BadContentLength")
        );
    }

    fn addresses(n: usize) -> String {
        (0..n)
            .map(|i| format!("10.0.{}.{}", i / 256, i % 256))
            .collect::<Vec<_>>()
            .join(", ")
    }

    #[test]
    fn aws_allows_30_forwarded_for_addresses() {
        let thirty = request("GET", &[&format!("X-Forwarded-For: {}", addresses(30))]);
        assert_eq!(aws(&thirty), served(thirty.len()));
        let thirty_one = request("GET", &[&format!("X-Forwarded-For: {}", addresses(31))]);
        assert_eq!(
            aws(&thirty_one),
            rejected(Rejection::TooManyForwardedFor(31))
        );
        assert_eq!(gcp(&thirty_one), served(thirty_one.len()));
        // Counted over every line, any case; empty list elements are not addresses.
        let split = request(
            "GET",
            &[
                &format!("X-Forwarded-For: {}", addresses(16)),
                &format!("x-forwarded-for: {}", addresses(15)),
            ],
        );
        assert_eq!(aws(&split), rejected(Rejection::TooManyForwardedFor(31)));
        let empties = request(
            "GET",
            &[&format!("X-Forwarded-For: , {}, ,", addresses(30))],
        );
        assert_eq!(aws(&empties), served(empties.len()));
    }

    #[test]
    fn hundreds_of_headers_are_parsed() {
        let lines: Vec<String> = (0..500).map(|i| format!("X-H{i}: {i}")).collect();
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let head = request("GET", &lines);
        // Within the byte limits, but more lines than hyper parses.
        assert_eq!(aws(&head), rejected(Rejection::HeadTooLarge));
        let hundred = request("GET", &lines[..INLINE_HEADERS - 1]);
        assert_eq!(aws(&hundred), served(hundred.len()));
        let mut bad = head.clone();
        bad.truncate(head.len() - 2);
        bad.extend_from_slice(b"Content-Length: 1\r\nContent-Length: 2\r\n\r\n");
        assert_eq!(
            aws(&bad),
            desync(DesyncClass::Severe, "MultipleContentLength")
        );
    }

    #[test]
    fn a_verdict_does_not_change_as_bytes_arrive() {
        let inputs: &[&[u8]] = &[
            b"GET / HTTP/1.1\r\nA: x\0\r\n\r\n",
            b"GET /a b HTTP/1.1\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"GET / HTTP/1.1\r\nA: x\r\n y\r\n\r\n",
            b"\r\n\r\rGET",
            // Decided on the complete head: before it, a Host line may still come (or a
            // second one).
            b"GET / HTTP/1.1\r\nX-A: 1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
        ];
        for input in inputs {
            let full = aws(input);
            for len in 0..input.len() {
                let early = aws(&input[..len]);
                assert!(
                    early == Verdict::NeedMore || early == full,
                    "{:?}: prefix {len} gave {early:?}, all gave {full:?}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }

    #[test]
    fn rejections_read_as_text() {
        assert_eq!(
            Rejection::Desync(DesyncClass::Severe, "BadContentLength").to_string(),
            "desync mitigation: Severe request (BadContentLength)"
        );
        assert_eq!(
            Rejection::TooManyForwardedFor(31).to_string(),
            "X-Forwarded-For holds too many addresses (31)"
        );
        assert_eq!(
            Rejection::Malformed("NUL byte").to_string(),
            "malformed request: NUL byte"
        );
        assert_eq!(
            Rejection::MethodNotAllowed("TRACE").to_string(),
            "TRACE method not allowed"
        );
        assert_eq!(
            Rejection::UnsupportedMethod("CONNECT").to_string(),
            "CONNECT method not supported by the load balancer"
        );
    }
}
