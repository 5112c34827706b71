//! The client side of the load balancer: request-head validation, idle client
//! connections, stalled requests (408), clients that leave early (460), and the client
//! keep-alive duration.
//!
//! hyper owns the HTTP parsing; [`ClientIo`] sits under it on the socket. At the start
//! of each request it holds the bytes back until the head is complete and the cloud's
//! rules ([`crate::validate`]) accept it; a rejected head gets the cloud's page and the
//! connection closes, so nothing of it reaches hyper or the app. It also watches time:
//! when no request is being served and nothing moved for the client idle timeout, it ends
//! the connection, with a bare close when the connection was idle or with the cloud's 408
//! page when the client had sent part of a request and stalled.

use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use crate::validate::{check_head, Rejection, Rules, Verdict};

/// Read size while a head is being gathered.
const HEAD_READ: usize = 8 * 1024;

/// What the service and the socket wrapper of one client connection share.
#[derive(Debug)]
pub struct ConnState {
    /// Requests whose answer is still being worked out; the client timer waits meanwhile.
    in_flight: AtomicUsize,
    /// Requests answered so far: a new head starts only after the last one's answer.
    answered: AtomicU64,
    /// Bytes arrived that no request has claimed yet: a request head in progress.
    unclaimed_bytes: AtomicBool,
    /// The validator classed the current request Ambiguous: close both connections after it.
    ambiguous: AtomicBool,
    /// When the connection was accepted, for the client keep-alive duration.
    opened: Instant,
}

impl ConnState {
    /// State of a connection accepted now.
    pub fn new() -> Arc<ConnState> {
        Arc::new(ConnState {
            in_flight: AtomicUsize::new(0),
            answered: AtomicU64::new(0),
            unclaimed_bytes: AtomicBool::new(false),
            ambiguous: AtomicBool::new(false),
            opened: Instant::now(),
        })
    }

    /// Marks a request as started; the guard marks it answered when dropped.
    pub fn begin_request(self: &Arc<Self>) -> InFlight {
        self.unclaimed_bytes.store(false, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// True (once) when the current request must close both connections after its answer.
    pub fn take_ambiguous(&self) -> bool {
        self.ambiguous.swap(false, Ordering::Relaxed)
    }

    /// How long ago the connection was accepted.
    pub fn age(&self) -> Duration {
        self.opened.elapsed()
    }
}

/// A request being served on a connection.
#[derive(Debug)]
pub struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.answered.fetch_add(1, Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts and explains a rejected head; returns the page to write on the socket.
pub type RejectHook = Box<dyn Fn(&Rejection) -> Vec<u8> + Send + Sync>;

/// What the socket wrapper asks of the engine (built once per listener).
pub struct ClientHooks {
    /// The request-head rules of the cloud.
    pub rules: Rules,
    /// Bytes to write when a request was half sent (the cloud's 408 page, dated now).
    pub stalled_page: Box<dyn Fn() -> Vec<u8> + Send + Sync>,
    /// Called with `true` for a stalled request, `false` for a plain idle close.
    pub report_timeout: Box<dyn Fn(bool) + Send + Sync>,
    /// Counts and explains a rejected head; returns the page to write.
    pub reject: RejectHook,
}

/// Where the wrapper is in the life of the current request.
enum Gate {
    /// Gathering a head in `ClientIo::held`.
    Scanning,
    /// Handing `held[from..]` (an accepted head and what came with it) to hyper.
    Releasing { from: usize },
    /// Passing bytes through until the answer to request number `answered + 1` is done.
    Passing { answered: u64 },
}

/// A client socket that validates request heads and enforces the client idle timeout.
pub struct ClientIo {
    inner: TcpStream,
    /// Shared with the service: is a request being answered?
    state: Arc<ConnState>,
    /// The client idle timeout.
    idle: Duration,
    /// Last byte read or written.
    last_activity: Instant,
    /// Boxed so the socket stays `Unpin`, as hyper wants.
    sleep: Pin<Box<Sleep>>,
    hooks: Arc<ClientHooks>,
    gate: Gate,
    /// Bytes held back from hyper until the head is judged; reused from request to
    /// request, so the gate allocates once per connection.
    held: Vec<u8>,
    /// Once closed by lbsim (timeout or rejection), every read reports end of stream.
    closed: bool,
}

impl ClientIo {
    /// Wraps an accepted socket.
    pub fn new(
        inner: TcpStream,
        state: Arc<ConnState>,
        idle: Duration,
        hooks: Arc<ClientHooks>,
    ) -> Self {
        let now = Instant::now();
        ClientIo {
            inner,
            state,
            idle,
            last_activity: now,
            sleep: Box::pin(tokio::time::sleep_until(now + idle)),
            hooks,
            gate: Gate::Scanning,
            held: Vec::new(),
            closed: false,
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
                    self.state.unclaimed_bytes.store(true, Ordering::Relaxed);
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Pending until the client idle timer fires; then ends the connection.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.state.in_flight.load(Ordering::Relaxed) > 0 {
            // A request is being answered: the target-side deadline governs it.
            return Poll::Pending;
        }
        // The timer is armed for an earlier deadline than activity has since pushed the
        // real one to; re-arming only when it fires keeps the timer wheel out of the
        // per-request path.
        loop {
            if self.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let at = self.last_activity + self.idle;
            if at <= Instant::now() {
                break;
            }
            self.sleep.as_mut().reset(at);
        }
        self.closed = true;
        let stalled = self.state.unclaimed_bytes.load(Ordering::Relaxed);
        if stalled {
            // Best effort: the page is small and the socket idle, so one write suffices.
            let _ = self.inner.try_write(&(self.hooks.stalled_page)());
        }
        (self.hooks.report_timeout)(stalled);
        // End of stream: hyper closes the connection.
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for ClientIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.closed {
                return Poll::Ready(Ok(()));
            }
            match &mut this.gate {
                Gate::Passing { answered } => {
                    let done = this.state.answered.load(Ordering::Relaxed);
                    let idle = this.state.in_flight.load(Ordering::Relaxed) == 0;
                    if done > *answered && idle {
                        // The last answer is out: the next bytes start a new head.
                        this.gate = Gate::Scanning;
                        continue;
                    }
                    return match this.read_socket(cx, buf) {
                        Poll::Ready(Ok(_)) => Poll::Ready(Ok(())),
                        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                        Poll::Pending => this.poll_idle(cx),
                    };
                }
                Gate::Releasing { from } => {
                    let n = buf.remaining().min(this.held.len() - *from);
                    buf.put_slice(&this.held[*from..*from + n]);
                    *from += n;
                    if *from == this.held.len() {
                        this.held.clear();
                        if this.held.capacity() > HEAD_READ {
                            // A rare large head: do not keep its buffer for the connection's life.
                            this.held = Vec::new();
                        }
                        let answered = this.state.answered.load(Ordering::Relaxed);
                        this.gate = Gate::Passing { answered };
                    }
                    return Poll::Ready(Ok(()));
                }
                Gate::Scanning => {
                    // Left uninitialised: zeroing 8 KiB on every poll cost more than the
                    // rest of the gate (the read fills only what arrived).
                    let mut chunk = [MaybeUninit::<u8>::uninit(); HEAD_READ];
                    let mut chunk_buf = ReadBuf::uninit(&mut chunk);
                    let n = match this.read_socket(cx, &mut chunk_buf) {
                        Poll::Ready(Ok(n)) => n,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => return this.poll_idle(cx),
                    };
                    if n == 0 {
                        // End of stream: hand over what there is; hyper reports it.
                        if this.held.is_empty() {
                            return Poll::Ready(Ok(()));
                        }
                        this.gate = Gate::Releasing { from: 0 };
                        continue;
                    }
                    this.held.extend_from_slice(chunk_buf.filled());
                    match check_head(&this.held, &this.hooks.rules) {
                        Verdict::NeedMore => continue,
                        Verdict::Accept { ambiguous, .. } => {
                            this.state.ambiguous.store(ambiguous, Ordering::Relaxed);
                            this.gate = Gate::Releasing { from: 0 };
                        }
                        Verdict::Reject(rejection) => {
                            let page = (this.hooks.reject)(&rejection);
                            let _ = this.inner.try_write(&page);
                            this.closed = true;
                        }
                    }
                }
            }
        }
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &polled {
            if *n > 0 {
                this.last_activity = Instant::now();
            }
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &polled {
            if *n > 0 {
                this.last_activity = Instant::now();
            }
        }
        polled
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
