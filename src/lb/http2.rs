//! HTTP/2 from clients: the connection-level rules of a cloud load balancer's HTTP/2
//! front end. Requests themselves go through the same engine as HTTP/1.1 ones (the
//! clouds talk HTTP/1.1 to targets by default, and so does lbsim), so every timer, page
//! and cause is unchanged; what differs is how a connection ends:
//!
//! - **Idle**: when no stream has been open for the client idle timeout, the LB sends
//!   GOAWAY and closes. Only requests count as activity: HTTP/2 PING frames are answered
//!   but do not keep a connection open (AWS: "Application Load Balancers do not support
//!   HTTP/2 PING frames. These do not reset the connection idle timeout").
//! - **Keep-alive duration** (ALB `client_keep_alive.seconds`): once the connection is
//!   that old the LB sends GOAWAY; streams in flight finish, new ones go to a new
//!   connection (HTTP/1.1 gets `Connection: close` on its next response instead).
//!
//! Both are a graceful GOAWAY (`NO_ERROR`), as RFC 9113 §6.8 asks of an endpoint that
//! closes a connection.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{COOKIE, HOST};
use http::{HeaderValue, Uri};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// The client connection preface of HTTP/2 (RFC 9113 §3.4): how a cleartext connection
/// says it speaks HTTP/2 with prior knowledge.
pub(crate) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Longest wait for a cleartext connection's first bytes to tell HTTP/2 from HTTP/1.1:
/// the same bound as a TLS handshake, for the same reason (a silent socket must not hold
/// a task for good).
pub(crate) const PREFACE_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause between two peeks at a preface that arrived in pieces (rare: clients send it in
/// one write, usually with their SETTINGS).
const PREFACE_REPEEK: Duration = Duration::from_millis(1);

/// True when `stream` starts with the HTTP/2 preface; false as soon as its first bytes
/// differ (an HTTP/1.1 request) or it ends. Nothing is consumed.
pub(crate) async fn starts_with_preface(stream: &TcpStream) -> std::io::Result<bool> {
    let mut buf = [0u8; PREFACE.len()];
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 || buf[..n] != PREFACE[..n] {
            return Ok(false);
        }
        if n == PREFACE.len() {
            return Ok(true);
        }
        tokio::time::sleep(PREFACE_REPEEK).await;
    }
}

/// Reads and drops a cleartext HTTP/2 preface that is known to be there (used only by
/// tests of the peek).
#[cfg(test)]
async fn consume_preface(stream: &mut TcpStream) -> std::io::Result<()> {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; PREFACE.len()];
    stream.read_exact(&mut buf).await.map(|_| ())
}

/// Turns an HTTP/2 request head into the HTTP/1.1 one the target gets (RFC 9113 §8.3.1
/// and §8.2.3): the authority becomes `Host` (unless the client sent one), the target is
/// the origin form, and split `cookie` fields are joined with `; `.
pub(crate) fn to_http1_head(parts: &mut http::request::Parts) {
    if !parts.headers.contains_key(HOST) {
        if let Some(authority) = parts.uri.authority() {
            if let Ok(value) = HeaderValue::from_str(authority.as_str()) {
                parts.headers.insert(HOST, value);
            }
        }
    }
    let origin = parts
        .uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .parse::<Uri>();
    if let Ok(origin) = origin {
        parts.uri = origin;
    }
    let mut cookies = parts.headers.get_all(COOKIE).iter();
    if let (Some(first), Some(_)) = (cookies.next(), cookies.next()) {
        let mut joined = first.as_bytes().to_vec();
        for more in parts.headers.get_all(COOKIE).iter().skip(1) {
            joined.extend_from_slice(b"; ");
            joined.extend_from_slice(more.as_bytes());
        }
        // Made of valid values joined by "; ": valid too.
        if let Ok(value) = HeaderValue::from_bytes(&joined) {
            parts.headers.insert(COOKIE, value);
        }
    }
}

/// True when the client said it takes trailers (`te: trailers`, as gRPC clients do).
/// `TE` is hop-by-hop, so the LB strips it; an HTTP/2 target still gets `te: trailers`.
pub(crate) fn wants_trailers(headers: &http::HeaderMap) -> bool {
    headers.get_all(http::header::TE).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        })
    })
}

/// Turns the request head the LB forwards into the one an HTTP/2 target gets
/// (`--target-protocol http2|grpc`): version 2, the authority from `Host` (RFC 9113
/// §8.3.1: an intermediary builds `:authority` from the original request), and
/// `te: trailers` when the client asked for trailers.
pub(crate) fn to_http2_target(parts: &mut http::request::Parts, trailers: bool) {
    parts.version = http::Version::HTTP_2;
    let authority = parts
        .headers
        .remove(HOST)
        .and_then(|h| h.to_str().ok().map(str::to_string))
        .unwrap_or_else(|| "localhost".to_string());
    let target = format!(
        "http://{authority}{}",
        parts.uri.path_and_query().map_or("/", |pq| pq.as_str())
    );
    if let Ok(uri) = target.parse::<Uri>() {
        parts.uri = uri;
    }
    if trailers {
        parts
            .headers
            .insert(http::header::TE, HeaderValue::from_static("trailers"));
    }
}

/// The open streams of one HTTP/2 client connection, and when the last one ended: what
/// the idle timer goes by.
#[derive(Debug)]
pub(crate) struct Streams {
    /// Streams whose response has not ended (or whose request is still being answered).
    open: AtomicUsize,
    /// When the last stream ended (or the connection opened).
    last_end: Mutex<Instant>,
}

impl Streams {
    /// A connection opened now, with no stream yet.
    pub(crate) fn new() -> Arc<Streams> {
        Arc::new(Streams {
            open: AtomicUsize::new(0),
            last_end: Mutex::new(Instant::now()),
        })
    }

    /// Counts a stream as open until the guard is dropped (with its response body).
    pub(crate) fn begin(self: &Arc<Self>) -> StreamGuard {
        self.open.fetch_add(1, Ordering::Relaxed);
        StreamGuard(self.clone())
    }

    fn idle_since(&self) -> Option<Instant> {
        if self.open.load(Ordering::Relaxed) > 0 {
            return None;
        }
        Some(*self.last_end.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// One open stream; dropping it (when its response body is done or dropped, or when the
/// client reset the stream before an answer) marks it ended.
#[derive(Debug)]
pub(crate) struct StreamGuard(Arc<Streams>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        // The time first: a timer that sees no open stream must see this end.
        *self.0.last_end.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

pin_project! {
    /// A response body that holds its stream open until it ends.
    pub(crate) struct CountedBody<B> {
        #[pin]
        inner: B,
        guard: Option<StreamGuard>,
    }
}

impl<B> CountedBody<B> {
    /// `inner`, counted as an open stream while it lasts.
    pub(crate) fn new(inner: B, guard: StreamGuard) -> CountedBody<B> {
        CountedBody {
            inner,
            guard: Some(guard),
        }
    }
}

impl<B: Body> Body for CountedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(None) = polled {
            // Ended: the stream stops counting now, not when hyper drops the body.
            this.guard.take();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Why the LB ended an HTTP/2 client connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Goaway {
    /// No stream for the client idle timeout.
    Idle,
    /// The client keep-alive duration ran out.
    MaxAge,
}

/// When an HTTP/2 client connection ends on its own.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// The client idle timeout (scaled).
    pub idle: Duration,
    /// The client keep-alive duration (scaled), where the cloud has one.
    pub max_age: Option<Duration>,
}

pin_project! {
    /// An HTTP/2 client connection under the LB's idle and age limits: when one runs
    /// out, `shutdown` (hyper's `graceful_shutdown`: GOAWAY, then close once the open
    /// streams end) is called once.
    pub(crate) struct Limited<C, G> {
        #[pin]
        conn: C,
        #[pin]
        timer: Sleep,
        streams: Arc<Streams>,
        limits: Limits,
        opened: Instant,
        shutdown: G,
        closing: bool,
    }
}

impl<C, G: FnMut(Pin<&mut C>)> Limited<C, G> {
    /// `conn`, opened now, whose streams `streams` counts.
    pub(crate) fn new(conn: C, streams: Arc<Streams>, limits: Limits, shutdown: G) -> Self {
        let opened = Instant::now();
        let first_look = limits
            .max_age
            .map_or(limits.idle, |age| age.min(limits.idle));
        Limited {
            conn,
            timer: tokio::time::sleep(first_look),
            streams,
            limits,
            opened,
            shutdown,
            closing: false,
        }
    }

    /// Asks the connection to finish its streams and close (GOAWAY), as at the end of
    /// its life; for lbsim's own shutdown.
    pub(crate) fn graceful_shutdown(self: Pin<&mut Self>) {
        let this = self.project();
        if !*this.closing {
            *this.closing = true;
            (this.shutdown)(this.conn);
        }
    }
}

/// What the limits say at `now`: a reason to end the connection, or when to look again.
fn judge(
    now: Instant,
    opened: Instant,
    limits: Limits,
    idle_since: Option<Instant>,
) -> Result<Goaway, Instant> {
    let age_end = limits.max_age.map(|age| opened + age);
    if age_end.is_some_and(|end| now >= end) {
        return Ok(Goaway::MaxAge);
    }
    let idle_end = match idle_since {
        Some(since) if now >= since + limits.idle => return Ok(Goaway::Idle),
        Some(since) => since + limits.idle,
        // A stream is open: look again one idle period on (it may have ended by then).
        None => now + limits.idle,
    };
    Err(age_end.map_or(idle_end, |age| age.min(idle_end)))
}

impl<C: Future, G: FnMut(Pin<&mut C>)> Future for Limited<C, G> {
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let mut this = self.project();
        while !*this.closing && this.timer.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            match judge(now, *this.opened, *this.limits, this.streams.idle_since()) {
                Ok(why) => {
                    tracing::debug!(?why, "GOAWAY to an HTTP/2 client connection");
                    *this.closing = true;
                    (this.shutdown)(this.conn.as_mut());
                }
                Err(next) => this.timer.as_mut().reset(next),
            }
        }
        this.conn.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(10);

    fn at(base: Instant, secs: u64) -> Instant {
        base + Duration::from_secs(secs)
    }

    #[test]
    fn idle_counts_from_the_last_stream_end() {
        let t0 = Instant::now();
        let limits = Limits {
            idle: IDLE,
            max_age: None,
        };
        assert_eq!(judge(at(t0, 5), t0, limits, Some(t0)), Err(at(t0, 10)));
        assert_eq!(judge(at(t0, 10), t0, limits, Some(t0)), Ok(Goaway::Idle));
        assert_eq!(
            judge(at(t0, 12), t0, limits, Some(at(t0, 8))),
            Err(at(t0, 18))
        );
    }

    #[test]
    fn an_open_stream_is_never_idle() {
        let t0 = Instant::now();
        let limits = Limits {
            idle: IDLE,
            max_age: None,
        };
        assert_eq!(judge(at(t0, 100), t0, limits, None), Err(at(t0, 110)));
    }

    #[test]
    fn the_keep_alive_duration_ends_even_a_busy_connection() {
        let t0 = Instant::now();
        let limits = Limits {
            idle: IDLE,
            max_age: Some(Duration::from_secs(30)),
        };
        assert_eq!(judge(at(t0, 25), t0, limits, None), Err(at(t0, 30)));
        assert_eq!(judge(at(t0, 30), t0, limits, None), Ok(Goaway::MaxAge));
        assert_eq!(
            judge(at(t0, 25), t0, limits, Some(at(t0, 24))),
            Err(at(t0, 30))
        );
    }

    #[test]
    fn an_http2_head_becomes_an_http1_one() {
        let req = http::Request::builder()
            .uri("https://example.test:8443/a/b?c=d")
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .body(())
            .expect("request");
        let (mut parts, ()) = req.into_parts();
        to_http1_head(&mut parts);
        assert_eq!(parts.uri, "/a/b?c=d");
        assert_eq!(parts.headers["host"], "example.test:8443");
        assert_eq!(parts.headers.get_all("cookie").iter().count(), 1);
        assert_eq!(parts.headers["cookie"], "a=1; b=2");
    }

    #[test]
    fn a_host_header_the_client_sent_wins() {
        let req = http::Request::builder()
            .uri("https://authority.test/")
            .header("host", "host.test")
            .body(())
            .expect("request");
        let (mut parts, ()) = req.into_parts();
        to_http1_head(&mut parts);
        assert_eq!(parts.headers["host"], "host.test");
        assert_eq!(parts.uri, "/");
    }

    #[tokio::test]
    async fn the_preface_is_told_from_an_http1_request_without_consuming_it() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        for (sent, is_h2) in [
            (&PREFACE[..], true),
            (&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..], false),
            (&b"PRI * HTTP/1.1\r\n\r\n"[..], false),
        ] {
            let mut client = TcpStream::connect(addr).await.expect("connect");
            let (mut server, _) = listener.accept().await.expect("accept");
            tokio::io::AsyncWriteExt::write_all(&mut client, sent)
                .await
                .expect("write");
            assert_eq!(starts_with_preface(&server).await.expect("peek"), is_h2);
            if is_h2 {
                consume_preface(&mut server).await.expect("still there");
            }
        }
    }
}
