//! The client side of the load balancer: request-head validation, idle client
//! connections, stalled requests (408), clients that leave early (460), and the client
//! keep-alive duration.
//!
//! The HTTP/1.1 session ([`crate::lb::h1::server`]) parses the requests; [`ClientIo`] sits
//! under it on the socket. At the start
//! of each request it holds the bytes back until the head is complete and the cloud's
//! rules ([`crate::lb::validate`]) accept it; a rejected head gets the cloud's page and the
//! connection closes, so nothing of it reaches the session or the app. It also watches time:
//! when no request is being served and nothing moved for the client idle timeout, it ends
//! the connection, with a bare close when the connection was idle or with the cloud's 408
//! page when the client had sent part of a request and stalled.

use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use crate::lb::chunked::{ChunkedScanner, Scan};
use crate::lb::deadline::Deadline;
use crate::lb::forward::Peer;
use crate::lb::h1::wire::Located;
use crate::lb::validate::{check_head_located, BodyLength, Rejection, Rules, Verdict};

/// Read size while a head is being gathered.
const HEAD_READ: usize = 8 * 1024;

/// What the service and the socket wrapper of one client connection share.
#[derive(Debug)]
pub(crate) struct ConnState {
    /// The connection's number, from 1 in accept order, for the event stream.
    pub id: u64,
    /// Requests whose answer is still being worked out; the client timer waits meanwhile.
    in_flight: AtomicUsize,
    /// Requests answered so far: a rejected pipelined head is answered only after them.
    answered: AtomicU64,
    /// Requests begun so far: the number of the one being answered (the session serves a
    /// connection's requests one at a time, in the order the gate released their heads).
    begun: AtomicU64,
    /// The number (in release order, from 1) of the first head the validator classed
    /// Ambiguous, or 0: that request closes both connections after its answer. A number,
    /// not a flag, because the gate judges a pipelined head while an earlier request is
    /// still being answered, and that earlier request must not take the verdict.
    ambiguous_head: AtomicU64,
    /// The client half-closed (FIN) while answers were still owed: they are still sent
    /// (what was received is answered), and each is logged as the client's departure.
    client_eof: AtomicBool,
    /// The main timeout of the request being answered: it also bounds a response that
    /// cannot be written because the client stopped reading.
    deadline: Mutex<Option<Deadline>>,
    /// The socket wrapper waits for the answers owed before it acts (a rejected
    /// pipelined head, a half-close): the answer's end wakes it, since the session does
    /// not read again by itself once a read was pending.
    answer_waker: Mutex<Option<Waker>>,
    /// Set when `answer_waker` holds a waker, so that answers need no lock otherwise.
    wake_on_answer: AtomicBool,
    /// When the connection was accepted, for the client keep-alive duration.
    opened: Instant,
    /// The target answered 101 to an upgrade (WebSocket): the bytes that follow are no
    /// longer HTTP, so the socket wrapper passes them through unjudged, and the client
    /// idle timer gives way to the relay's own timer.
    upgraded: AtomicBool,
}

impl ConnState {
    /// State of connection number `id`, accepted now.
    pub(crate) fn new(id: u64) -> Arc<ConnState> {
        Arc::new(ConnState {
            id,
            in_flight: AtomicUsize::new(0),
            answered: AtomicU64::new(0),
            begun: AtomicU64::new(0),
            ambiguous_head: AtomicU64::new(0),
            client_eof: AtomicBool::new(false),
            deadline: Mutex::new(None),
            answer_waker: Mutex::new(None),
            wake_on_answer: AtomicBool::new(false),
            opened: Instant::now(),
            upgraded: AtomicBool::new(false),
        })
    }

    /// Marks the connection as switched to another protocol: from now on the socket
    /// carries raw bytes timed by `relay` (which also bounds a write the client does
    /// not take), not HTTP requests.
    pub(crate) fn mark_upgraded(&self, relay: &Deadline) {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner()) = Some(relay.clone());
        self.upgraded.store(true, Ordering::Release);
    }

    /// True once the connection was switched to another protocol.
    pub(crate) fn upgraded(&self) -> bool {
        self.upgraded.load(Ordering::Acquire)
    }

    /// Marks a request as started under `deadline`; the guard marks it answered when
    /// dropped, and says whether the request's head was classed Ambiguous.
    pub(crate) fn begin_request(self: &Arc<Self>, deadline: &Deadline) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner()) = Some(deadline.clone());
        let number = self.begun.fetch_add(1, Ordering::Relaxed) + 1;
        InFlight {
            conn: self.clone(),
            number,
        }
    }

    /// Records that head number `number` (release order, from 1) was classed Ambiguous.
    /// Only the first counts: its answer closes the connection.
    fn mark_ambiguous(&self, number: u64) {
        let _ =
            self.ambiguous_head
                .compare_exchange(0, number, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// True once the client has half-closed its side with answers still owed.
    pub(crate) fn client_eof(&self) -> bool {
        self.client_eof.load(Ordering::Relaxed)
    }

    /// How long ago the connection was accepted.
    pub(crate) fn age(&self) -> Duration {
        self.opened.elapsed()
    }

    /// Wakes `cx` when the next answer is out.
    fn wake_after_answer(&self, cx: &Context<'_>) {
        *self.answer_waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
        self.wake_on_answer.store(true, Ordering::Release);
    }

    fn deadline(&self) -> Option<Deadline> {
        self.deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// A request being served on a connection.
#[derive(Debug)]
pub(crate) struct InFlight {
    conn: Arc<ConnState>,
    /// The request's number on its connection, from 1.
    number: u64,
}

impl InFlight {
    /// True when the validator classed this request's head Ambiguous: its answer must
    /// close both connections.
    pub(crate) fn ambiguous(&self) -> bool {
        self.conn.ambiguous_head.load(Ordering::Relaxed) == self.number
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let conn = &self.conn;
        conn.answered.fetch_add(1, Ordering::Relaxed);
        conn.in_flight.fetch_sub(1, Ordering::Relaxed);
        if conn.wake_on_answer.swap(false, Ordering::AcqRel) {
            let waker = conn
                .answer_waker
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }
}

/// Counts, explains and logs a rejected head (given with the connection's two ends);
/// returns the page to write on the socket.
pub(crate) type RejectHook = Box<dyn Fn(&Rejection, &[u8], &Peer) -> Vec<u8> + Send + Sync>;

/// What the socket wrapper asks of the engine (built once per listener).
pub(crate) struct ClientHooks {
    /// The request-head rules of the cloud.
    pub rules: Rules,
    /// Bytes to write when a request was half sent (the cloud's 408 page, dated now).
    pub stalled_page: Box<dyn Fn() -> Vec<u8> + Send + Sync>,
    /// Called with `true` for a stalled request, `false` for a plain idle close.
    pub report_timeout: Box<dyn Fn(bool) + Send + Sync>,
    /// Counts and explains a rejected head; returns the page to write.
    pub reject: RejectHook,
}

/// Where the wrapper is in the stream of requests. Every head is judged before the
/// session sees it, pipelined ones included, and the bytes of a body are never judged as a head:
/// the wrapper follows each body's framing to its end.
#[derive(Clone, Copy)]
enum Gate {
    /// Gathering the next head in `ClientIo::held`.
    Scanning,
    /// Handing the session `held[from..to]` (an accepted head, and the body bytes that came
    /// with it); then `then`.
    Releasing {
        from: usize,
        to: usize,
        then: Following,
    },
    /// Passing the rest of a body straight through.
    Body(Following),
    /// A head was rejected; its page is written once the answers owed before it are out.
    Rejected(Rejection),
    /// The framing could not be followed (a body the session will refuse): pass
    /// everything, judge nothing more; the session ends the connection. Also the state of an upgraded
    /// connection ([`ConnState::mark_upgraded`]), whose bytes are not HTTP.
    Untracked,
}

/// How much of the current body is still to come.
#[derive(Clone, Copy, Debug)]
enum Following {
    /// The body has ended: scan for the next head.
    Done,
    /// This many bytes.
    Bytes(u64),
    /// A chunked body, followed to its last chunk.
    Chunked(ChunkedScanner),
    /// Not followable.
    Lost,
}

impl Following {
    fn start(body: BodyLength) -> Following {
        match body {
            BodyLength::Bytes(0) => Following::Done,
            BodyLength::Bytes(n) => Following::Bytes(n),
            BodyLength::Chunked => Following::Chunked(ChunkedScanner::default()),
        }
    }

    /// Feeds bytes that follow; how many of them belong to the body.
    fn take(&mut self, bytes: &[u8]) -> usize {
        match self {
            Following::Done => 0,
            Following::Lost => bytes.len(),
            Following::Bytes(left) => {
                let n = usize::try_from(*left)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                *left -= n as u64;
                if *left == 0 {
                    *self = Following::Done;
                }
                n
            }
            Following::Chunked(scanner) => match scanner.scan(bytes) {
                Scan::Body => bytes.len(),
                Scan::End(n) => {
                    *self = Following::Done;
                    n
                }
                Scan::Invalid => {
                    *self = Following::Lost;
                    bytes.len()
                }
            },
        }
    }

    fn into_gate(self) -> Gate {
        match self {
            Following::Done => Gate::Scanning,
            Following::Lost => Gate::Untracked,
            body => Gate::Body(body),
        }
    }
}

/// What a client connection runs over: the accepted socket, or TLS over it.
pub(crate) trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Writes what can be written now, without waiting: the LB's last page on a
    /// connection it closes (a 408, a rejected head's page).
    fn write_now(&mut self, bytes: &[u8]) -> io::Result<usize>;

    /// The TCP socket itself, when the bytes written are the bytes sent (no TLS): a
    /// body may then be spliced into it.
    fn tcp(&self) -> Option<&TcpStream> {
        None
    }
}

impl ClientStream for TcpStream {
    fn write_now(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.try_write(bytes)
    }

    fn tcp(&self) -> Option<&TcpStream> {
        Some(self)
    }
}

impl ClientStream for tokio_rustls::server::TlsStream<TcpStream> {
    fn write_now(&mut self, bytes: &[u8]) -> io::Result<usize> {
        // rustls takes the bytes into its own buffer and sends what the socket takes;
        // the rest goes out with the close_notify when the session shuts the connection down.
        let mut cx = Context::from_waker(Waker::noop());
        let written = match Pin::new(&mut *self).poll_write(&mut cx, bytes) {
            Poll::Ready(result) => result?,
            Poll::Pending => return Err(io::ErrorKind::WouldBlock.into()),
        };
        let _ = Pin::new(&mut *self).poll_flush(&mut cx);
        Ok(written)
    }
}

/// A client socket that validates request heads and enforces the client idle timeout.
/// Generic over the stream so that plain HTTP keeps its direct calls on the socket.
pub(crate) struct ClientIo<S = TcpStream> {
    inner: S,
    /// Shared with the service: is a request being answered?
    state: Arc<ConnState>,
    /// The client idle timeout.
    idle: Duration,
    /// Last byte read or written.
    last_activity: Instant,
    /// Boxed so the socket stays `Unpin`, as the session's reads want.
    sleep: Pin<Box<Sleep>>,
    /// Times a write the client does not take (it stopped reading) against the
    /// request's deadline; made on the first such write only.
    write_timer: Option<Pin<Box<Sleep>>>,
    hooks: Arc<ClientHooks>,
    /// The connection's two ends, for the log line of a head the LB rejects.
    peer: Arc<Peer>,
    gate: Gate,
    /// Bytes held back from the session until the head is judged; reused from request to
    /// request, so the gate allocates once per connection.
    held: Vec<u8>,
    /// Heads handed to the session so far: a rejected head waits until all are answered.
    released: u64,
    /// The client half-closed; reported to the session once every answer owed is out.
    eof: bool,
    /// The last write did not complete: the session still holds bytes of an answer.
    write_blocked: bool,
    /// Once closed by lbsim (timeout or rejection), every read reports end of stream.
    closed: bool,
    /// Where the parts of the last head accepted lie (the session builds its request from
    /// this instead of parsing the head again); taken once.
    located: Located,
    /// `located` describes a head the session has not taken yet.
    located_fresh: bool,
}

impl<S: ClientStream> ClientIo<S> {
    /// Wraps an accepted socket (after its TLS handshake, on an HTTPS listener).
    pub(crate) fn new(
        inner: S,
        state: Arc<ConnState>,
        idle: Duration,
        hooks: Arc<ClientHooks>,
        peer: Arc<Peer>,
    ) -> Self {
        let now = Instant::now();
        ClientIo {
            inner,
            state,
            idle,
            last_activity: now,
            sleep: Box::pin(tokio::time::sleep_until(now + idle)),
            write_timer: None,
            hooks,
            peer,
            gate: Gate::Scanning,
            held: Vec::new(),
            released: 0,
            eof: false,
            write_blocked: false,
            closed: false,
            located: Located::default(),
            located_fresh: false,
        }
    }

    /// Reads what the socket has into `buf`, updating the activity clock.
    fn read_socket(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<usize>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len() - before;
                if n > 0 {
                    self.last_activity = Instant::now();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// True while answers are owed to heads already handed to the session.
    fn answers_owed(&self) -> bool {
        self.state.in_flight.load(Ordering::Relaxed) > 0
            || self.state.answered.load(Ordering::Relaxed) < self.released
    }

    /// Pending until the client idle timer fires; then ends the connection.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The timer is armed for an earlier deadline than activity has since pushed the
        // real one to; re-arming only when it fires keeps the timer wheel out of the
        // per-request path. It stays armed while a request is answered (the target-side
        // deadline governs that time), so that it wakes the connection afterwards.
        loop {
            if self.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let now = Instant::now();
            let at = if self.answers_owed() {
                now + self.idle
            } else {
                self.last_activity + self.idle
            };
            if at <= now {
                break;
            }
            self.sleep.as_mut().reset(at);
        }
        self.closed = true;
        // Part of a request arrived (a head, or a body whose answer is already out) and
        // the client stalled: the cloud answers 408. A connection between requests is
        // closed without a word.
        let stalled = match self.gate {
            Gate::Scanning | Gate::Releasing { .. } => !self.held.is_empty(),
            Gate::Body(_) => true,
            Gate::Rejected(_) | Gate::Untracked => false,
        };
        if stalled {
            // Best effort: the page is small and the socket idle, so one write suffices.
            let _ = self.inner.write_now(&(self.hooks.stalled_page)());
        }
        (self.hooks.report_timeout)(stalled);
        // End of stream: the session closes the connection.
        Poll::Ready(Ok(()))
    }

    /// The client half-closed: the session learns of it only once every answer owed is out,
    /// so that what was received is answered. `None`: the gate moved on; read again.
    fn on_eof(&mut self, cx: &mut Context<'_>) -> Option<Poll<io::Result<()>>> {
        self.eof = true;
        if self.answers_owed() {
            self.state.client_eof.store(true, Ordering::Relaxed);
            self.state.wake_after_answer(cx);
            if self.answers_owed() {
                return Some(Poll::Pending);
            }
        }
        if self.held.is_empty() {
            return Some(Poll::Ready(Ok(())));
        }
        // Half a head, then FIN: the session sees the incomplete head and closes.
        self.gate = Gate::Releasing {
            from: 0,
            to: self.held.len(),
            then: Following::Lost,
        };
        None
    }

    /// A write the client did not take: fails it once the request's deadline passes, so
    /// a client that stops reading is cut like a target that stops sending.
    fn write_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        self.write_blocked = true;
        let Some(deadline) = self.state.deadline() else {
            return Poll::Pending;
        };
        let timer = self
            .write_timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.expiry())));
        loop {
            let at = deadline.expiry();
            if Instant::now() >= at {
                deadline.mark_client_stalled();
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client stopped reading the response",
                )));
            }
            if timer.deadline() != at {
                timer.as_mut().reset(at);
            }
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }

    fn poll_read_gate(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if self.closed {
                return Poll::Ready(Ok(()));
            }
            if matches!(self.gate, Gate::Scanning) && self.state.upgraded() {
                // The target switched protocols: what follows the upgrade request is
                // WebSocket frames, never a head to judge. Bytes already held (a client
                // that sent frames early) go through first.
                self.gate = if self.held.is_empty() {
                    Gate::Untracked
                } else {
                    Gate::Releasing {
                        from: 0,
                        to: self.held.len(),
                        then: Following::Lost,
                    }
                };
            }
            match self.gate {
                Gate::Untracked => {
                    return match self.read_socket(cx, buf) {
                        Poll::Ready(Ok(_)) => Poll::Ready(Ok(())),
                        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                        // An upgraded connection is timed by its relay, not by the
                        // client idle timer (which would also write a 408 into a tunnel).
                        Poll::Pending if self.state.upgraded() => Poll::Pending,
                        Poll::Pending => self.poll_idle(cx),
                    };
                }
                Gate::Body(mut following) => {
                    let before = buf.filled().len();
                    let n = match self.read_socket(cx, buf) {
                        Poll::Ready(Ok(n)) => n,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => return self.poll_idle(cx),
                    };
                    if n == 0 {
                        // End of stream inside a body: the session reports the cut body.
                        return Poll::Ready(Ok(()));
                    }
                    let body = following.take(&buf.filled()[before..]);
                    if body < n {
                        // The body ended inside this read: the rest is the next head,
                        // taken back from the session to be judged first.
                        self.held
                            .extend_from_slice(&buf.filled()[before + body..before + n]);
                        buf.set_filled(before + body);
                    }
                    self.gate = following.into_gate();
                    return Poll::Ready(Ok(()));
                }
                Gate::Releasing { from, to, then } => {
                    let n = buf.remaining().min(to - from);
                    buf.put_slice(&self.held[from..from + n]);
                    if from + n < to {
                        self.gate = Gate::Releasing {
                            from: from + n,
                            to,
                            then,
                        };
                    } else {
                        self.held.drain(..to);
                        if self.held.is_empty() && self.held.capacity() > HEAD_READ {
                            // A rare large head: do not keep its buffer for the connection's life.
                            self.held = Vec::new();
                        }
                        self.gate = then.into_gate();
                    }
                    return Poll::Ready(Ok(()));
                }
                Gate::Rejected(rejection) => {
                    if self.answers_owed() {
                        // Answers to earlier requests go first.
                        self.state.wake_after_answer(cx);
                        if self.answers_owed() {
                            return Poll::Pending;
                        }
                    }
                    if self.write_blocked {
                        // the session still holds bytes of the last answer; the socket's
                        // readiness for them wakes this connection again.
                        return Poll::Pending;
                    }
                    let page = (self.hooks.reject)(&rejection, &self.held, &self.peer);
                    let _ = self.inner.write_now(&page);
                    self.closed = true;
                }
                Gate::Scanning => {
                    if !self.held.is_empty() && self.judge_held() {
                        continue;
                    }
                    if self.eof {
                        match self.on_eof(cx) {
                            Some(polled) => return polled,
                            None => continue,
                        }
                    }
                    // Left uninitialised: zeroing 8 KiB on every poll cost more than the
                    // rest of the gate (the read fills only what arrived).
                    let mut chunk = [MaybeUninit::<u8>::uninit(); HEAD_READ];
                    let mut chunk_buf = ReadBuf::uninit(&mut chunk);
                    let n = match self.read_socket(cx, &mut chunk_buf) {
                        Poll::Ready(Ok(n)) => n,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => return self.poll_idle(cx),
                    };
                    if n == 0 {
                        match self.on_eof(cx) {
                            Some(polled) => return polled,
                            None => continue,
                        }
                    }
                    self.held.extend_from_slice(chunk_buf.filled());
                    self.judge_held();
                }
            }
        }
    }

    /// Judges the head gathered in `held`; false when it needs more bytes.
    fn judge_held(&mut self) -> bool {
        match check_head_located(&self.held, &self.hooks.rules, Some(&mut self.located)) {
            Verdict::NeedMore => false,
            Verdict::Accept {
                head_len,
                body,
                ambiguous,
            } => {
                self.located_fresh = true;
                let mut following = Following::start(body);
                let to = head_len + following.take(&self.held[head_len..]);
                self.released += 1;
                if ambiguous {
                    self.state.mark_ambiguous(self.released);
                }
                self.gate = Gate::Releasing {
                    from: 0,
                    to,
                    then: following,
                };
                true
            }
            Verdict::Reject(rejection) => {
                self.gate = Gate::Rejected(rejection);
                true
            }
        }
    }
}

impl<S: ClientStream> AsyncRead for ClientIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().poll_read_gate(cx, buf)
    }
}

impl<S: ClientStream> ClientIo<S> {
    /// Where the parts of the head just released lie, once `available` bytes of it are
    /// in the session's hands (taken once per head): the gate has parsed it, so the
    /// session need not.
    pub(crate) fn take_located(&mut self, available: usize) -> Option<&Located> {
        let whole = self.located.head_len().is_some_and(|len| available >= len);
        if self.located_fresh && whole {
            self.located_fresh = false;
            Some(&self.located)
        } else {
            None
        }
    }

    /// The plain TCP socket under the wrapper, for a body spliced into it.
    pub(crate) fn tcp(&self) -> Option<&TcpStream> {
        self.inner.tcp()
    }

    /// Bookkeeping for bytes written to the socket directly (spliced).
    pub(crate) fn wrote_directly(&mut self) {
        self.write_blocked = false;
        self.last_activity = Instant::now();
    }

    /// For a direct write the client does not take: `Ready` with the error once the
    /// request's deadline passes (the client stopped reading), as for any write.
    pub(crate) fn poll_write_stalled(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        match self.write_pending(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(e),
            Poll::Ready(Ok(_)) | Poll::Pending => Poll::Pending,
        }
    }

    /// Bookkeeping after a write: activity, and the deadline when the client takes nothing.
    fn wrote(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match polled {
            Poll::Ready(Ok(n)) => {
                self.write_blocked = false;
                if n > 0 {
                    self.last_activity = Instant::now();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Pending => self.write_pending(cx),
            other => other,
        }
    }
}

impl<S: ClientStream> AsyncWrite for ClientIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.wrote(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.wrote(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::profile::TimeoutKind;

    /// Regression: the Ambiguous verdict was one flag per connection, taken by whichever
    /// request began next. The gate judges a pipelined head while the request before it
    /// is still being answered, so that earlier request took the verdict (and closed the
    /// connection), and the Ambiguous request itself went unanswered.
    #[tokio::test]
    async fn an_ambiguous_verdict_belongs_to_its_own_request() {
        let conn = ConnState::new(1);
        let deadline = Deadline::start(TimeoutKind::Idle, Duration::from_secs(60));
        let first = conn.begin_request(&deadline);
        // Judged while the first request is in flight: heads 2 and 3 are Ambiguous.
        conn.mark_ambiguous(2);
        conn.mark_ambiguous(3);
        assert!(
            !first.ambiguous(),
            "the first request is not the Ambiguous one"
        );
        drop(first);
        let second = conn.begin_request(&deadline);
        assert!(
            second.ambiguous(),
            "the second request closes the connection"
        );
    }
}
