//! The client side of the load balancer: idle client connections, stalled requests
//! (408), clients that leave early (460), and the client keep-alive duration.
//!
//! hyper owns the HTTP parsing; [`ClientIo`] sits under it on the socket and watches
//! time. When no request is being served and nothing moved for the client idle timeout,
//! it ends the connection: with a bare close when the connection was idle, or with the
//! cloud's 408 page when the client had sent part of a request and stalled.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use std::future::Future;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// What the service and the socket wrapper of one client connection share.
#[derive(Debug)]
pub struct ConnState {
    /// Requests whose answer is still being worked out; the client timer waits meanwhile.
    in_flight: AtomicUsize,
    /// Bytes arrived that no request has claimed yet: a request head in progress.
    unclaimed_bytes: AtomicBool,
    /// When the connection was accepted, for the client keep-alive duration.
    opened: Instant,
}

impl ConnState {
    /// State of a connection accepted now.
    pub fn new() -> Arc<ConnState> {
        Arc::new(ConnState {
            in_flight: AtomicUsize::new(0),
            unclaimed_bytes: AtomicBool::new(false),
            opened: Instant::now(),
        })
    }

    /// Marks a request as started; the guard marks it answered when dropped.
    pub fn begin_request(self: &Arc<Self>) -> InFlight {
        self.unclaimed_bytes.store(false, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
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
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What to do when a client connection times out.
pub struct OnClientTimeout {
    /// Bytes to write when a request was half sent (the cloud's 408 page, dated now).
    pub stalled_page: Box<dyn Fn() -> Vec<u8> + Send + Sync>,
    /// Called with `true` for a stalled request, `false` for a plain idle close.
    pub report: Box<dyn Fn(bool) + Send + Sync>,
}

/// A client socket that enforces the client idle timeout.
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
    on_timeout: Arc<OnClientTimeout>,
    /// Once timed out, every read reports end of stream.
    timed_out: bool,
}

impl ClientIo {
    /// Wraps an accepted socket.
    pub fn new(
        inner: TcpStream,
        state: Arc<ConnState>,
        idle: Duration,
        on_timeout: Arc<OnClientTimeout>,
    ) -> Self {
        let now = Instant::now();
        ClientIo {
            inner,
            state,
            idle,
            last_activity: now,
            sleep: Box::pin(tokio::time::sleep_until(now + idle)),
            on_timeout,
            timed_out: false,
        }
    }
}

impl AsyncRead for ClientIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.timed_out {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.last_activity = Instant::now();
                    this.state.unclaimed_bytes.store(true, Ordering::Relaxed);
                }
                return Poll::Ready(Ok(()));
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {}
        }
        if this.state.in_flight.load(Ordering::Relaxed) > 0 {
            // A request is being answered: the target-side deadline governs it.
            return Poll::Pending;
        }
        loop {
            let at = this.last_activity + this.idle;
            if at > Instant::now() {
                if this.sleep.deadline() != at {
                    this.sleep.as_mut().reset(at);
                }
                if this.sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                continue;
            }
            break;
        }
        this.timed_out = true;
        let stalled = this.state.unclaimed_bytes.load(Ordering::Relaxed);
        if stalled {
            // Best effort: the page is small and the socket idle, so one write suffices.
            let _ = this.inner.try_write(&(this.on_timeout.stalled_page)());
        }
        (this.on_timeout.report)(stalled);
        // End of stream: hyper closes the connection.
        Poll::Ready(Ok(()))
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
