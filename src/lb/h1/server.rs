//! One client connection speaking HTTP/1.1, served by one task.
//!
//! The connection's life, in order, for each request:
//!
//! 1. **Head.** Bytes come through the client-side gate ([`ClientIo`]), which has
//!    already judged the head by the cloud's rules; the head is parsed once here, into
//!    the request the engine works on (the names' case kept where the cloud keeps it).
//! 2. **Answer.** The engine gets the request; its body ([`RequestBody`]) reads this
//!    socket directly as the target takes it. Meanwhile the socket is read ahead, so a
//!    client that goes away is noticed (the engine logs it as the client's departure).
//! 3. **Response.** The head goes out with the profile's case, the body streams with its
//!    framing (its own, a length, or chunked); a client that stops reading is cut by the
//!    request's deadline (the gate's write timer).
//! 4. **Next.** The connection carries another request unless the answer, the request,
//!    a body left unread or lbsim's shutdown ends it; a `101` hands the socket to the
//!    WebSocket relay.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll, Waker};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{
    HeaderValue, CONNECTION, CONTENT_LENGTH, DATE, EXPECT, TE, TRAILER, TRANSFER_ENCODING,
};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Either;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::Notify;

use crate::lb::client::{ClientHooks, ClientIo, ClientStream, ConnState};
use crate::lb::forward::Peer;
#[cfg(target_os = "linux")]
use crate::lb::h1::splice;
use crate::lb::h1::wire::{self, BodyState, Framing, NameCase, Unframed};
use crate::lb::h1::{
    poll_read_body, poll_read_into, BoxError, Outbox, PendingUpgrade, ReadSize, Upgraded,
};
use crate::lb::pool::ClientBody;
use crate::lb::proxy::Engine;
use crate::lb::respond::ProxyBody;
use crate::lb::validate::Rejection;

/// Most response bytes queued before they must be written.
const MAX_QUEUED: usize = 256 * 1024;

/// What the session and its request's body share: the socket and what was read.
struct Inbound<S> {
    io: ClientIo<S>,
    /// Read, not yet used: the rest of a body, the next head.
    buf: BytesMut,
    /// The current request's body.
    body: BodyState,
    /// The current request's body broke (its framing, or the client went away).
    body_failed: bool,
    /// `100 Continue`, to write before the body is first read (the client waits for it).
    continue_due: Option<Bytes>,
    /// The session's read-ahead, woken when the body ends and the socket is its again.
    ahead: Option<Waker>,
    /// How much a read of a body asks for (grows with a streamed upload).
    read_size: ReadSize,
}

type Shared<S> = Arc<Mutex<Inbound<S>>>;

fn lock<S>(shared: &Mutex<Inbound<S>>) -> MutexGuard<'_, Inbound<S>> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

impl<S: ClientStream> Inbound<S> {
    fn poll_body(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(due) = self.continue_due.as_mut() {
            while !due.is_empty() {
                match ready!(Pin::new(&mut self.io).poll_write(cx, due)) {
                    Ok(n) => due.advance(n),
                    Err(e) => {
                        self.body_failed = true;
                        return Poll::Ready(Some(Err(e.into())));
                    }
                }
            }
            self.continue_due = None;
        }
        if self.body_failed {
            return Poll::Ready(Some(Err("the request body failed".into())));
        }
        loop {
            match self.body.take(&mut self.buf) {
                Unframed::Data(data) => {
                    if self.body.is_done() {
                        self.body_ended();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Unframed::Trailers(trailers) => {
                    self.body_ended();
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                }
                Unframed::End => {
                    self.body_ended();
                    return Poll::Ready(None);
                }
                Unframed::NeedMore => {}
                Unframed::Invalid(e) => {
                    self.body_failed = true;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
            match ready!(poll_read_body(
                cx,
                &mut self.io,
                &mut self.buf,
                &mut self.read_size
            )) {
                Ok(0) => {
                    self.body_failed = true;
                    return Poll::Ready(Some(Err(
                        "the client closed the connection before the request body ended".into(),
                    )));
                }
                Ok(_) => {}
                Err(e) => {
                    self.body_failed = true;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
        }
    }

    fn body_ended(&mut self) {
        self.body = BodyState::Done;
        if let Some(waker) = self.ahead.take() {
            waker.wake();
        }
    }

    /// Reads past the current request while it is answered: pipelined bytes are kept,
    /// and the client's departure is noticed. `Ready` only when the client is gone.
    fn poll_read_ahead(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            if self.body_failed {
                return Poll::Pending;
            }
            if !self.body.is_done() {
                // The body's reader has the socket; it wakes this when done.
                self.ahead = Some(cx.waker().clone());
                return Poll::Pending;
            }
            // Only an empty buffer is read ahead into (hyper's rule too): pipelined
            // requests wait their turn, and a FIN behind them is seen once they are
            // answered, so only the request in flight then counts as the client's
            // departure.
            if !self.buf.is_empty() {
                return Poll::Pending;
            }
            match ready!(poll_read_into(cx, &mut self.io, &mut self.buf)) {
                Ok(0) => return Poll::Ready(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => {}
                Err(e) => return Poll::Ready(e),
            }
        }
    }
}

/// What reads a request body: the session's shared socket, type-erased so that the
/// engine's types do not depend on the stream (plain or TLS).
trait BodySource: Send + Sync {
    fn poll_frame(&self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>>;
    fn is_done(&self) -> bool;
    fn size_hint(&self) -> SizeHint;
}

impl<S: ClientStream> BodySource for Mutex<Inbound<S>> {
    fn poll_frame(&self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        lock(self).poll_body(cx)
    }

    fn is_done(&self) -> bool {
        lock(self).body.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        lock(self).body.size_hint()
    }
}

/// The body of a request from an HTTP/1.1 client, read from its socket as the target
/// takes it.
pub(crate) struct RequestBody {
    source: Arc<dyn BodySource>,
    /// Cached once the body has ended (no lock needed to tell).
    ended: bool,
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        let polled = this.source.poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.ended = true,
            Poll::Ready(Some(Ok(frame))) if frame.is_trailers() => this.ended = true,
            _ => this.ended = this.source.is_done(),
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }

    fn size_hint(&self) -> SizeHint {
        self.source.size_hint()
    }
}

/// The socket after a `101`, for the relay: reads take the bytes already read first.
struct SharedIo<S>(Shared<S>);

impl<S: ClientStream> AsyncRead for SharedIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut inbound = lock(&self.0);
        if !inbound.buf.is_empty() {
            let n = inbound.buf.len().min(buf.remaining());
            buf.put_slice(&inbound.buf[..n]);
            inbound.buf.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut inbound.io).poll_read(cx, buf)
    }
}

impl<S: ClientStream> AsyncWrite for SharedIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut lock(&self.0).io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut lock(&self.0).io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut lock(&self.0).io).poll_shutdown(cx)
    }
}

/// Asks a session to finish its current request and close (lbsim is stopping).
#[derive(Default)]
pub(crate) struct Stop {
    asked: AtomicBool,
    notify: Notify,
}

impl Stop {
    pub(crate) fn ask(&self) {
        self.asked.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    fn asked(&self) -> bool {
        self.asked.load(Ordering::Acquire)
    }
}

/// How a response went out.
enum Sent {
    /// Whole; the connection may carry another request.
    Complete,
    /// The connection must end now (a cut, a client gone, a failed write).
    Broken,
    /// Switched protocols: the socket went to the relay.
    Upgraded,
}

/// One client connection's session.
pub(crate) struct Session<S> {
    shared: Shared<S>,
    engine: Arc<Engine>,
    hooks: Arc<ClientHooks>,
    state: Arc<ConnState>,
    peer: Arc<Peer>,
    case: NameCase,
    stop: Arc<Stop>,
    /// The response writer's buffers, kept from response to response.
    outbox: Outbox,
    /// The pipe for spliced bodies, made at the first one and kept.
    #[cfg(target_os = "linux")]
    pipe: Option<splice::Pipe>,
}

impl<S: ClientStream> Session<S> {
    /// A session on `io`; `stop` asks it to finish.
    pub(crate) fn new(
        io: ClientIo<S>,
        engine: Arc<Engine>,
        hooks: Arc<ClientHooks>,
        state: Arc<ConnState>,
        peer: Arc<Peer>,
        case: NameCase,
        stop: Arc<Stop>,
    ) -> Self {
        let inbound = Inbound {
            io,
            buf: BytesMut::new(),
            body: BodyState::Done,
            body_failed: false,
            continue_due: None,
            ahead: None,
            read_size: ReadSize::default(),
        };
        Session {
            shared: Arc::new(Mutex::new(inbound)),
            engine,
            hooks,
            state,
            peer,
            case,
            stop,
            outbox: Outbox::default(),
            #[cfg(target_os = "linux")]
            pipe: None,
        }
    }

    /// Serves requests until the connection ends.
    pub(crate) async fn run(mut self) -> io::Result<()> {
        loop {
            let parts = match self.read_head().await? {
                Some(head) => head,
                None => break,
            };
            let mut keep_alive = parts.version == Version::HTTP_11
                && !has_token(&parts.headers, CONNECTION, "close")
                || parts.version == Version::HTTP_10
                    && has_token(&parts.headers, CONNECTION, "keep-alive");
            let framing = match wire::request_framing(&parts.headers) {
                Ok(f) => f,
                Err(_) => {
                    // The head is parsed and gone: the log line gets what it can (nothing).
                    self.refuse(&[], "invalid message framing").await;
                    break;
                }
            };
            let method = parts.method.clone();
            let version = parts.version;
            let trailers_ok = has_token(&parts.headers, TE, "trailers");
            let upgrade = crate::lb::forward::upgrade_of(&parts.headers).is_some();
            let (req, upgraded) = self.request(parts, framing, upgrade);
            let answer = self
                .engine
                .clone()
                .handle(req, self.state.clone(), self.peer.clone());
            let resp = {
                // In the session's own future (2.9 KB per connection, idle or not):
                // boxing it per request kept idle connections at 1.2 KB but cost about
                // 1,100 instructions per request (an allocation and a copy of the future).
                let mut answer = std::pin::pin!(answer);
                let ahead = std::future::poll_fn(|cx| lock(&self.shared).poll_read_ahead(cx));
                tokio::select! {
                    biased;
                    resp = &mut answer => match resp {
                        Ok(resp) => resp,
                        Err(never) => match never {},
                    },
                    gone = ahead => {
                        // The client left before its answer (the engine logs it so as the
                        // request's future is dropped).
                        tracing::debug!("client connection ended before its answer: {gone}");
                        break;
                    }
                }
            };
            if self.stop.asked() {
                keep_alive = false;
            }
            match self
                .respond(
                    resp,
                    &method,
                    version,
                    &mut keep_alive,
                    trailers_ok,
                    upgraded,
                )
                .await
            {
                Sent::Complete => {}
                Sent::Broken => return Ok(()),
                Sent::Upgraded => return Ok(()),
            }
            if !lock(&self.shared).body.is_done() {
                // The answer came before the body ended: the rest of it goes nowhere.
                keep_alive = false;
            }
            if !keep_alive {
                break;
            }
        }
        let mut io = SharedIo(self.shared.clone());
        let _ = io.shutdown().await;
        Ok(())
    }

    /// Reads the next head; `None` when the connection ends before one (the client
    /// closed, the gate closed it, lbsim is stopping).
    async fn read_head(&self) -> io::Result<Option<http::request::Parts>> {
        let preserve = self.case == NameCase::Preserve;
        loop {
            let parsed = {
                let mut inbound = lock(&self.shared);
                if inbound.buf.is_empty() {
                    Ok(None)
                } else {
                    let inbound = &mut *inbound;
                    // One parse per head: the gate's, when it describes this head.
                    match inbound.io.take_located(inbound.buf.len()) {
                        Some(located) => {
                            wire::request_from(&mut inbound.buf, located, preserve).map(Some)
                        }
                        None => wire::parse_request(&mut inbound.buf, preserve),
                    }
                }
            };
            match parsed {
                Ok(Some((parts, _len))) => return Ok(Some(parts)),
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!("request head the gate passed but httparse refused: {e}");
                    let head = lock(&self.shared).buf.clone();
                    self.refuse(&head, "invalid request head").await;
                    return Ok(None);
                }
            }
            let stop = self.stop.notify.notified();
            let idle = lock(&self.shared).buf.is_empty();
            if idle && self.stop.asked() {
                return Ok(None);
            }
            let read = std::future::poll_fn(|cx| {
                let mut inbound = lock(&self.shared);
                let inbound = &mut *inbound;
                poll_read_into(cx, &mut inbound.io, &mut inbound.buf)
            });
            tokio::select! {
                n = read => match n {
                    Ok(0) => return Ok(None),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!("client connection ended: {e}");
                        return Ok(None);
                    }
                },
                _ = stop, if idle => return Ok(None),
            }
        }
    }

    /// Answers a head the gate let through but that cannot be served with the cloud's
    /// 400 page (counted and logged, `head` in the log line); the connection then closes.
    /// Neither case is known to happen: the gate refuses what the data plane cannot read.
    async fn refuse(&self, head: &[u8], what: &'static str) {
        let page = (self.hooks.reject)(&Rejection::Malformed(what), head, &self.peer);
        let mut io = SharedIo(self.shared.clone());
        let _ = io.write_all(&page).await;
    }

    /// The request for the engine, its body reading this connection.
    fn request(
        &self,
        mut parts: http::request::Parts,
        framing: Framing,
        upgrade: bool,
    ) -> (
        Request<ClientBody>,
        Option<tokio::sync::oneshot::Sender<Upgraded>>,
    ) {
        let mut inbound = lock(&self.shared);
        // A request is never read until the client closes (RFC 9112 §6.3).
        inbound.body = match framing {
            Framing::UntilClose => BodyState::Done,
            framing => BodyState::new(framing),
        };
        inbound.body_failed = false;
        let ended = inbound.body.is_done();
        inbound.continue_due = (!ended
            && parts.version == Version::HTTP_11
            && parts
                .headers
                .get(EXPECT)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue")))
        .then(|| Bytes::from_static(b"HTTP/1.1 100 Continue\r\n\r\n"));
        drop(inbound);
        let upgraded = upgrade.then(|| {
            let (tx, pending) = PendingUpgrade::new();
            parts.extensions.insert(pending);
            tx
        });
        let body = RequestBody {
            source: self.shared.clone(),
            ended,
        };
        (Request::from_parts(parts, ClientBody::H1(body)), upgraded)
    }

    /// Writes `resp`; `keep_alive` turns false when this response ends the connection.
    async fn respond(
        &mut self,
        resp: Response<ProxyBody>,
        method: &Method,
        version: Version,
        keep_alive: &mut bool,
        trailers_ok: bool,
        upgraded: Option<tokio::sync::oneshot::Sender<Upgraded>>,
    ) -> Sent {
        let (mut parts, mut body) = resp.into_parts();
        let bodiless = method == Method::HEAD
            || parts.status.is_informational()
            || parts.status == StatusCode::NO_CONTENT
            || parts.status == StatusCode::NOT_MODIFIED;
        let headers = &mut parts.headers;
        if has_token(headers, CONNECTION, "close") {
            *keep_alive = false;
        }
        let chunked = if headers.contains_key(TRANSFER_ENCODING) {
            wire::is_chunked(headers)
        } else if headers.contains_key(CONTENT_LENGTH) || bodiless {
            false
        } else if body.is_end_stream() {
            headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
            false
        } else if let Some(n) = body.size_hint().exact() {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(n));
            false
        } else if version == Version::HTTP_10 {
            // An HTTP/1.0 client knows no chunks: the body ends with the connection.
            false
        } else {
            headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
            true
        };
        let close_delimited = !bodiless && !chunked && !headers.contains_key(CONTENT_LENGTH);
        if close_delimited {
            *keep_alive = false;
        }
        if !*keep_alive
            && !has_token(headers, CONNECTION, "close")
            && parts.status != StatusCode::SWITCHING_PROTOCOLS
        {
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        if version == Version::HTTP_10 {
            // Spoken back in the client's version, as hyper's server does; a kept
            // HTTP/1.0 connection must say so.
            parts.version = Version::HTTP_10;
            if *keep_alive {
                headers.insert(CONNECTION, HeaderValue::from_static("keep-alive"));
            }
        }
        if !headers.contains_key(DATE) {
            headers.insert(DATE, crate::lb::respond::date_now());
        }
        // Trailers go to a client that asked for them (`TE: trailers`), the fields the
        // response declared (`Trailer`), as hyper's server sends them.
        let declared: Option<Vec<HeaderValue>> =
            (chunked && trailers_ok).then(|| headers.get_all(TRAILER).iter().cloned().collect());
        let mut outbox = std::mem::take(&mut self.outbox);
        wire::write_response_head(outbox.head(), &parts, self.case);
        outbox.head_written();

        if parts.status == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(tx) = upgraded {
                if self.flush(&mut outbox).await.is_err() {
                    return Sent::Broken;
                }
                self.outbox = outbox;
                let _ = tx.send(Upgraded {
                    io: Box::new(SharedIo(self.shared.clone())),
                    leftover: BytesMut::new(),
                });
                return Sent::Upgraded;
            }
        }
        if bodiless {
            drop(body);
            let flushed = self.flush(&mut outbox).await;
            self.outbox = outbox;
            return if flushed.is_ok() {
                Sent::Complete
            } else {
                Sent::Broken
            };
        }
        // A long Content-Length body from a target goes socket to socket (splice) when
        // the client's socket is plain TCP; chunks and TLS are copied.
        #[cfg(target_os = "linux")]
        let mut splicing = !chunked && lock(&self.shared).io.tcp().is_some();
        let pipe = &mut self.pipe;
        let streamed = std::future::poll_fn(|cx| -> Poll<Result<(), ()>> {
            loop {
                #[cfg(target_os = "linux")]
                if splicing {
                    if let Either::Right(db) = &mut body {
                        let mut db = Pin::new(db);
                        let held = pipe.as_ref().is_some_and(|p| p.holds());
                        if held || db.as_mut().splice_source().is_some() {
                            // What was copied goes out first: the bytes keep their order.
                            if !outbox.is_empty() {
                                let mut inbound = lock(&self.shared);
                                if ready!(outbox.poll_flush(cx, &mut inbound.io)).is_err() {
                                    return Poll::Ready(Err(()));
                                }
                            }
                            if pipe.is_none() {
                                match splice::Pipe::new() {
                                    Ok(p) => *pipe = Some(p),
                                    Err(e) => {
                                        tracing::debug!("no pipe for splice ({e}); copying");
                                        splicing = false;
                                        continue;
                                    }
                                }
                            }
                            if let Some(p) = pipe.as_mut() {
                                let engine = &self.engine;
                                let moved = poll_splice(cx, db.as_mut(), p, &self.shared, |n| {
                                    engine.stats.record_spliced(n)
                                });
                                match ready!(moved) {
                                    // Ended, or no longer spliceable: frames take over.
                                    Ok(()) => splicing = false,
                                    Err(()) => return Poll::Ready(Err(())),
                                }
                            }
                            continue;
                        }
                    }
                }
                if outbox.len() >= MAX_QUEUED {
                    // A client that does not read holds the target back (no byte moves,
                    // so an idle timer sees the stall), not lbsim's memory.
                    let mut inbound = lock(&self.shared);
                    if ready!(outbox.poll_flush(cx, &mut inbound.io)).is_err() {
                        return Poll::Ready(Err(()));
                    }
                    // The rest may now be spliced.
                    continue;
                }
                match Pin::new(&mut body).poll_frame(cx) {
                    Poll::Ready(None) => {
                        if chunked {
                            outbox.push(wire::chunked_end(None, self.case));
                        }
                        break;
                    }
                    Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                        Ok(data) => {
                            if data.is_empty() {
                                continue;
                            }
                            if chunked {
                                outbox.push(wire::chunk_size_line(data.len()));
                                outbox.push(data);
                                outbox.push(Bytes::from_static(b"\r\n"));
                            } else {
                                outbox.push(data);
                            }
                        }
                        Err(frame) => {
                            if chunked {
                                let trailers = frame.into_trailers().ok().map(|t| {
                                    let mut kept = http::HeaderMap::new();
                                    for (name, value) in &t {
                                        let listed = declared.as_ref().is_some_and(|d| {
                                            d.iter().any(|v| {
                                                v.to_str().is_ok_and(|v| {
                                                    v.split(',').any(|n| {
                                                        n.trim().eq_ignore_ascii_case(name.as_str())
                                                    })
                                                })
                                            })
                                        });
                                        if listed {
                                            kept.append(name.clone(), value.clone());
                                        }
                                    }
                                    kept
                                });
                                outbox.push(wire::chunked_end(trailers.as_ref(), self.case));
                            }
                            break;
                        }
                    },
                    // A cut (the deadline, the target failing): the connection ends
                    // without the body's end, so the client sees it incomplete.
                    Poll::Ready(Some(Err(e))) => {
                        tracing::debug!("response body ended early: {e}");
                        return Poll::Ready(Err(()));
                    }
                    Poll::Pending => {
                        let mut inbound = lock(&self.shared);
                        if let Poll::Ready(gone) = inbound.poll_read_ahead(cx) {
                            tracing::debug!("client connection ended during the response: {gone}");
                            return Poll::Ready(Err(()));
                        }
                        if !outbox.is_empty() {
                            if let Poll::Ready(Err(_)) = outbox.poll_flush(cx, &mut inbound.io) {
                                return Poll::Ready(Err(()));
                            }
                        }
                        return Poll::Pending;
                    }
                }
            }
            let mut inbound = lock(&self.shared);
            match ready!(outbox.poll_flush(cx, &mut inbound.io)) {
                Ok(()) => Poll::Ready(Ok(())),
                Err(_) => Poll::Ready(Err(())),
            }
        })
        .await;
        // The body is dropped here: whole, or abandoned (which its end hook reports).
        drop(body);
        self.outbox = outbox;
        match streamed {
            Ok(()) => Sent::Complete,
            Err(()) => Sent::Broken,
        }
    }

    async fn flush(&self, outbox: &mut Outbox) -> io::Result<()> {
        std::future::poll_fn(|cx| {
            let mut inbound = lock(&self.shared);
            outbox.poll_flush(cx, &mut inbound.io)
        })
        .await
    }
}

/// Moves the rest of a body from the target's socket to the client's through `pipe`:
/// `Ok` once the pipe is empty and the body ended (or can no longer be spliced),
/// `Err` when the response was cut (the deadline, the target, a client gone or not
/// reading), which the body's end hook has reported.
#[cfg(target_os = "linux")]
fn poll_splice<S: ClientStream>(
    cx: &mut Context<'_>,
    mut body: Pin<&mut crate::lb::deadline::DeadlineBody<crate::lb::pool::TargetBody>>,
    pipe: &mut splice::Pipe,
    shared: &Mutex<Inbound<S>>,
    count: impl Fn(u64),
) -> Poll<Result<(), ()>> {
    loop {
        if body.as_mut().poll_stop(cx).is_ready() {
            return Poll::Ready(Err(()));
        }
        // Both ends move at once: the pipe is emptied into the client while it is
        // filled from the target, so neither socket waits on the other.
        let mut moved = false;
        if pipe.holds() {
            let mut inbound = lock(shared);
            let drained = match inbound.io.tcp() {
                Some(client) => splice::poll_drain(cx, client, pipe),
                None => return Poll::Ready(Err(())),
            };
            match drained {
                Poll::Ready(Ok(_)) => {
                    inbound.io.wrote_directly();
                    moved = true;
                }
                Poll::Ready(Err(e)) => {
                    tracing::debug!("client connection ended during the response: {e}");
                    return Poll::Ready(Err(()));
                }
                Poll::Pending => {
                    // A client that takes nothing is cut at the deadline, as when copying.
                    if let Poll::Ready(e) = inbound.io.poll_write_stalled(cx) {
                        tracing::debug!("{e}");
                        return Poll::Ready(Err(()));
                    }
                }
            }
        }
        if pipe.has_room() {
            let filled = match body.as_mut().splice_source() {
                None if pipe.holds() => Poll::Pending,
                // The body ended (or can no longer be spliced) and the pipe is empty.
                None => return Poll::Ready(Ok(())),
                Some((target, left)) => splice::poll_fill(cx, target, pipe, left),
            };
            match filled {
                Poll::Ready(Ok(0)) => {
                    body.as_mut()
                        .fail("connection closed before the response body was complete".into());
                    return Poll::Ready(Err(()));
                }
                Poll::Ready(Ok(n)) => {
                    body.as_mut().spliced(n as u64);
                    count(n as u64);
                    moved = true;
                }
                Poll::Ready(Err(e)) => {
                    body.as_mut()
                        .fail(format!("error reading the response body: {e}"));
                    return Poll::Ready(Err(()));
                }
                Poll::Pending => {}
            }
        }
        if !moved {
            if let Poll::Ready(gone) = lock(shared).poll_read_ahead(cx) {
                tracing::debug!("client connection ended during the response: {gone}");
                return Poll::Ready(Err(()));
            }
            return Poll::Pending;
        }
    }
}

/// True when a field `name` of `headers` lists `token` (comma-separated, any case).
fn has_token(headers: &http::HeaderMap, name: http::header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}
