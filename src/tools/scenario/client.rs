//! The scenario's own HTTP/1.1 client: one request on a new or named connection, read as
//! the bytes come (cut bodies included), logged, and checked against the step's `expect`.
//! Apart from the runner, which only says what to send and when.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::net::http1::{Fill, Interim, ReadError, Reader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::model::{Dur, Expect, SendSpec};
use super::report::{Actor, Check};
use super::timeline::{Log, Sampler};

/// Longest wait for one response (real time): a hung scenario fails instead of hanging.
pub const READ_LIMIT: Duration = Duration::from_secs(20);

/// Default upper tolerance of an `elapsed` expectation (real time).
pub const DEFAULT_TOLERANCE: Duration = Duration::from_millis(250);

/// An `elapsed` expectation accepts this much less than asked (timer and clock granularity).
pub const CLOCK_SLACK: Duration = Duration::from_millis(25);

/// `closed = true` waits this long (real time) for the load balancer to close.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// `closed = false` watches the connection this long (real time) for a close.
const OPEN_PROBE: Duration = Duration::from_millis(50);

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

/// The socket under a scenario connection: reads until a deadline, and remembers the close.
struct Socket {
    stream: TcpStream,
    /// Reads give up at this instant (set per response, or per close watch).
    until: Instant,
    /// The peer closed (or reset) the connection.
    eof: bool,
    /// The peer reset it (a TCP RST, not a FIN).
    reset: bool,
}

impl Fill for Socket {
    async fn fill(&mut self, buf: &mut Vec<u8>) -> Result<usize, ReadError> {
        buf.reserve(16 * 1024);
        match tokio::time::timeout_at(self.until, self.stream.read_buf(buf)).await {
            Err(_) => Err(ReadError::TimedOut),
            Ok(Ok(0)) => {
                self.eof = true;
                Ok(0)
            }
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => {
                self.eof = true;
                let e = ReadError::from_io(e);
                self.reset |= matches!(e, ReadError::Closed { reset: true });
                Err(e)
            }
        }
    }
}

/// One client connection, read with lbsim's one HTTP/1 reader ([`crate::net::http1`]).
pub(super) struct Conn {
    reader: Reader<Socket>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            reader: Reader::new(Socket {
                stream,
                until: Instant::now(),
                eof: false,
                reset: false,
            }),
        })
    }

    fn eof(&self) -> bool {
        self.reader.source().eof
    }

    /// How the peer ended it while it sat idle, if it did (as urllib3 checks before reuse).
    fn dropped(&mut self) -> Option<Ended> {
        if !self.eof() {
            let mut probe = [0u8; 1024];
            match self.reader.source().stream.try_read(&mut probe) {
                Ok(0) => self.reader.source_mut().eof = true,
                Ok(n) => self.reader.push_read(&probe[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    let source = self.reader.source_mut();
                    source.eof = true;
                    source.reset |=
                        matches!(ReadError::from_io(e), ReadError::Closed { reset: true });
                }
            }
        }
        match (self.eof(), self.reader.source().reset) {
            (false, _) => None,
            (true, false) => Some(Ended::Fin),
            (true, true) => Some(Ended::Reset),
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        let written = self.reader.source_mut().stream.write_all(bytes).await;
        match written {
            Ok(()) => Ok(()),
            Err(e) => {
                let source = self.reader.source_mut();
                source.eof = true;
                let text = format!("could not send the request: {e}");
                if matches!(ReadError::from_io(e), ReadError::Closed { reset: true }) {
                    source.reset = true;
                    Err(Failure::new(NoAnswer::Reset, text))
                } else {
                    Err(Failure::new(NoAnswer::Other, text))
                }
            }
        }
    }

    /// The response, read for up to `limit` (real time).
    async fn read_response(&mut self, method: &str, limit: Duration) -> Result<Response, Failure> {
        self.reader.source_mut().until = Instant::now() + limit;
        let got_bytes = !self.reader.leftover().is_empty();
        let result = self.reader.response(method, Interim::Skip).await;
        let none_came = !got_bytes && self.reader.leftover().is_empty();
        match result {
            Ok(r) => Ok(Response {
                complete: r.complete(),
                status: r.head.status,
                phrase: r.head.reason,
                headers: r.head.headers,
                body: r.body,
            }),
            Err(ReadError::TimedOut) if none_came => Err(Failure::new(
                NoAnswer::Silent,
                format!(
                    "no response byte and no close within {}",
                    crate::human::duration(limit)
                ),
            )),
            Err(ReadError::TimedOut) => Err(Failure::new(
                NoAnswer::Other,
                format!(
                    "no complete response head within {}",
                    crate::human::duration(limit)
                ),
            )),
            Err(ReadError::Closed { reset: true }) if none_came => Err(Failure::new(
                NoAnswer::Reset,
                "connection reset (TCP RST) before any response byte",
            )),
            Err(ReadError::Closed { reset: false }) if none_came => Err(Failure::new(
                NoAnswer::Fin,
                "connection closed before any response byte",
            )),
            Err(ReadError::Closed { reset }) => Err(Failure::new(
                NoAnswer::Other,
                format!(
                    "connection {} inside the response head",
                    if reset { "reset" } else { "closed" }
                ),
            )),
            Err(e) => Err(Failure::new(
                NoAnswer::Other,
                format!("invalid response: {e}"),
            )),
        }
    }

    /// True when the peer closes within `limit` (bytes that come meanwhile are kept).
    async fn closed_within(&mut self, limit: Duration) -> bool {
        if self.eof() {
            return true;
        }
        self.reader.source_mut().until = Instant::now() + limit;
        let mut came = Vec::new();
        let closed = loop {
            match self.reader.source_mut().fill(&mut came).await {
                Ok(0) | Err(ReadError::Closed { .. } | ReadError::Io(_)) => break true,
                Ok(_) => {}
                Err(_) => break false,
            }
        };
        self.reader.push_read(&came);
        closed
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

/// How a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ended {
    /// An orderly close (FIN).
    Fin,
    /// A TCP RST.
    Reset,
}

/// Why a request got no response, as `reset` and `silent` tell them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NoAnswer {
    /// A TCP RST before any response byte (on the send, the read, or while it sat idle).
    Reset,
    /// A FIN before any response byte.
    Fin,
    /// No byte and no close until the client stopped waiting.
    Silent,
    /// Anything else: no connection, a cut or invalid head.
    Other,
}

/// A request that got no response: why, and in words.
#[derive(Clone, Debug)]
struct Failure {
    kind: NoAnswer,
    text: String,
}

impl Failure {
    fn new(kind: NoAnswer, text: impl Into<String>) -> Failure {
        Failure {
            kind,
            text: text.into(),
        }
    }
}

/// What one request met.
struct Exchange {
    result: Result<Response, Failure>,
    elapsed: Duration,
    closed: Option<bool>,
}

pub(super) type Slot = Arc<tokio::sync::Mutex<Option<Conn>>>;

/// Where a request goes (the load balancer) and where what it meets is told.
#[derive(Clone, Copy)]
struct Wire<'a> {
    lb: SocketAddr,
    log: &'a Log,
    sampler: &'a Sampler,
}

/// One request on a named connection (`slot`) or a new one.
async fn exchange(
    wire: Wire<'_>,
    who: &str,
    spec: &SendSpec,
    scale: f64,
    slot: Option<Slot>,
    sent: Option<&mpsc::UnboundedSender<()>>,
) -> Exchange {
    let Wire { lb, log, sampler } = wire;
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
        Some(mut c) => match c.dropped() {
            Some(Ended::Fin) => (
                None,
                "a new connection: the load balancer had closed the previous one",
            ),
            Some(Ended::Reset) => {
                // A FIN is an orderly end a pool notices and replaces; a connection reset
                // while idle is the error the client meets when it reuses it.
                let why = Failure::new(
                    NoAnswer::Reset,
                    "connection reset (TCP RST) while it sat idle, before this request",
                );
                sampler.sample();
                log.push(
                    Actor::Client,
                    who,
                    format!(
                        "→ {} {} on the same connection: ✗ {}",
                        spec.method, spec.path, why.text
                    ),
                );
                return Exchange {
                    result: Err(why),
                    elapsed: Duration::ZERO,
                    closed: None,
                };
            }
            None => (Some(c), "the same connection"),
        },
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
                    result: Err(Failure::new(NoAnswer::Other, why)),
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
    let written = conn.write(&request_bytes(spec)).await;
    drop(std::mem::replace(&mut sent, Sent(None)));
    // A `silent` expectation is the client's own timeout: it stops waiting then.
    let limit = spec
        .expect
        .silent
        .map_or(READ_LIMIT, |d| d.0.mul_f64(scale));
    let result = match written {
        Err(f) => Err(f),
        Ok(()) => conn.read_response(&spec.method, limit).await,
    };
    let elapsed = start.elapsed();
    sampler.sample();
    match &result {
        Ok(r) => log.push(Actor::Client, who, describe_response(r, elapsed)),
        Err(e) => log.push(
            Actor::Client,
            who,
            format!(
                "✗ no response: {} (after {})",
                e.text,
                crate::human::duration(elapsed)
            ),
        ),
    }
    let closed = match spec.expect.closed {
        Some(true) => Some(conn.closed_within(CLOSE_WAIT).await),
        Some(false) => Some(conn.closed_within(OPEN_PROBE).await),
        None => None,
    };
    if conn.eof() {
        let how = if conn.reader.source().reset {
            "connection reset by the load balancer"
        } else {
            "connection closed by the load balancer"
        };
        log.push(Actor::Client, who, how);
    }
    if let Some(g) = guard.as_mut() {
        if !conn.eof() {
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
    let _ = write!(s, " · {}", crate::human::duration(elapsed));
    s
}

/// Expectation label and verdict (Ok = passed) with what was seen.
type Verdict = (String, Result<String, String>);

fn evaluate(e: &Expect, x: &Exchange, scale: f64) -> Vec<Verdict> {
    let mut out: Vec<Verdict> = Vec::new();
    let resp = x.result.as_ref();
    let none = |why: &Failure| format!("no response ({})", why.text);
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
            Some(Dur(t)) => format!(
                "takes {} (+{})",
                crate::human::duration(want),
                crate::human::duration(t)
            ),
            None => format!(
                "takes {} (+{} real)",
                crate::human::duration(want),
                crate::human::duration(DEFAULT_TOLERANCE)
            ),
        };
        let mut got = format!("took {}", crate::human::duration(x.elapsed));
        if scale != 1.0 {
            let _ = write!(
                got,
                " (stands for {})",
                crate::human::duration(x.elapsed.div_f64(scale))
            );
        }
        let ok = x.elapsed >= low && x.elapsed <= high;
        out.push((label, if ok { Ok(got) } else { Err(got) }));
    }
    if let Some(reset) = e.reset {
        let label = if reset {
            "connection reset (TCP RST) before any response byte"
        } else {
            "no connection reset"
        };
        let was_reset = matches!(&x.result, Err(f) if f.kind == NoAnswer::Reset);
        out.push((
            label.to_string(),
            if was_reset == reset {
                Ok(outcome(x))
            } else {
                Err(outcome(x))
            },
        ));
    }
    if let Some(Dur(want)) = e.silent {
        let mut label = format!(
            "no response byte and no close for {}",
            crate::human::duration(want)
        );
        if scale != 1.0 {
            let _ = write!(
                label,
                " ({} real)",
                crate::human::duration(want.mul_f64(scale))
            );
        }
        let silent = matches!(&x.result, Err(f) if f.kind == NoAnswer::Silent);
        out.push((
            label,
            if silent {
                Ok(outcome(x))
            } else {
                Err(outcome(x))
            },
        ));
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

/// What the request met, in words: the status, or why there was none.
fn outcome(x: &Exchange) -> String {
    let after = crate::human::duration(x.elapsed);
    match &x.result {
        Ok(r) => format!("got {} {} after {after}", r.status, r.phrase),
        Err(f) => match f.kind {
            NoAnswer::Silent => format!("silence: {}", f.text),
            NoAnswer::Reset | NoAnswer::Fin => format!("{} (after {after})", f.text),
            NoAnswer::Other => format!("no response: {}", f.text),
        },
    }
}

fn clip(text: &str) -> String {
    let mut s: String = text.chars().take(60).collect();
    if s.len() < text.len() {
        s.push('…');
    }
    format!("{s:?}")
}

pub(super) struct SendJob {
    pub(super) lb: SocketAddr,
    pub(super) log: Log,
    pub(super) spec: SendSpec,
    pub(super) step: usize,
    pub(super) line: usize,
    pub(super) scale: f64,
    pub(super) who: String,
    pub(super) slot: Option<Slot>,
    pub(super) sampler: Arc<Sampler>,
    /// Told once per request when its bytes are out (background requests).
    pub(super) sent: Option<mpsc::UnboundedSender<()>>,
}

pub(super) async fn run_send(job: SendJob) -> Vec<Check> {
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
        let wire = Wire {
            lb: job.lb,
            log: &job.log,
            sampler: &job.sampler,
        };
        let x = exchange(
            wire,
            &job.who,
            &job.spec,
            job.scale,
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
        let scale = job.scale;
        let who = format!("{}.{i}", job.who);
        tasks.push(tokio::spawn(async move {
            let wire = Wire {
                lb,
                log: &log,
                sampler: &sampler,
            };
            exchange(wire, &who, &spec, scale, None, sent.as_ref()).await
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

#[cfg(test)]
mod tests {
    use super::*;

    fn met(kind: NoAnswer, text: &str) -> Exchange {
        Exchange {
            result: Err(Failure::new(kind, text)),
            elapsed: Duration::from_millis(3),
            closed: None,
        }
    }

    fn verdicts(e: &Expect, x: &Exchange) -> Vec<bool> {
        evaluate(e, x, 1.0)
            .into_iter()
            .map(|(_, v)| v.is_ok())
            .collect()
    }

    #[test]
    fn reset_fin_and_silence_each_pass_only_their_own_expectation() {
        let reset = Expect {
            reset: Some(true),
            ..Expect::default()
        };
        let no_reset = Expect {
            reset: Some(false),
            ..Expect::default()
        };
        let silent = Expect {
            silent: Some(Dur(Duration::from_secs(1))),
            ..Expect::default()
        };
        let rst = met(NoAnswer::Reset, "connection reset (TCP RST)");
        let fin = met(NoAnswer::Fin, "connection closed before any response byte");
        let quiet = met(NoAnswer::Silent, "no response byte and no close within 1 s");
        let other = met(NoAnswer::Other, "cannot connect");
        assert_eq!(verdicts(&reset, &rst), [true]);
        assert_eq!(verdicts(&reset, &fin), [false]);
        assert_eq!(verdicts(&reset, &quiet), [false]);
        assert_eq!(verdicts(&reset, &other), [false]);
        assert_eq!(verdicts(&no_reset, &rst), [false]);
        assert_eq!(verdicts(&no_reset, &fin), [true]);
        assert_eq!(verdicts(&silent, &quiet), [true]);
        assert_eq!(verdicts(&silent, &rst), [false]);
        assert_eq!(verdicts(&silent, &fin), [false]);
        // A FIN is named as a close, not a reset, in what the check saw.
        let (_, seen) = &evaluate(&reset, &fin, 1.0)[0];
        assert!(
            seen.as_ref()
                .is_err_and(|s| s.contains("closed before any response byte")),
            "{seen:?}"
        );
    }
}
