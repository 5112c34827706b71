//! lbsim's own pool of keep-alive connections to targets.
//!
//! hyper-util's client pool checks a connection's liveness before reuse, which hides the
//! race a real load balancer loses: the target closes an idle connection, the LB learns
//! of it only a little later, and a request sent in between dies. This pool records when
//! each connection really closed and lets the [`RaceWindow`] decide whether the LB still
//! believed it open.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::lb::config::RaceWindow;
use crate::lb::deadline::Touching;
use crate::lb::events::{micros, EventKind, Events};
use crate::lb::h1::server::RequestBody;
use crate::lb::h1::target::{ResponseBody, Slot, Wire};
use crate::lb::h1::BoxError;
use crate::lb::profile::HeaderCase;

/// The body type sent to targets: the client's body (or, for a request the LB sends
/// again, an empty one), counted as activity.
pub(crate) type UpstreamBody = Touching<Either<ClientBody, Empty<Bytes>>>;

/// A request body as the client sends it: over HTTP/1.1 (lbsim's own session) or
/// HTTP/2 (hyper's).
pub(crate) enum ClientBody {
    H1(RequestBody),
    H2(Incoming),
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ClientBody::H1(b) => Pin::new(b).poll_frame(cx),
            ClientBody::H2(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::H1(b) => b.is_end_stream(),
            ClientBody::H2(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::H1(b) => b.size_hint(),
            ClientBody::H2(b) => b.size_hint(),
        }
    }
}

/// A response body as the target sends it.
pub(crate) enum TargetBody {
    /// Over HTTP/1.1, read by lbsim's own exchange.
    H1(Box<ResponseBody>),
    /// Over HTTP/2 (hyper's client).
    H2(Incoming),
    /// None (a `101`'s).
    Empty,
}

impl Body for TargetBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            TargetBody::H1(b) => Pin::new(&mut **b).poll_frame(cx),
            TargetBody::H2(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            TargetBody::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            TargetBody::H1(b) => b.is_end_stream(),
            TargetBody::H2(b) => b.is_end_stream(),
            TargetBody::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            TargetBody::H1(b) => b.size_hint(),
            TargetBody::H2(b) => b.size_hint(),
            TargetBody::Empty => SizeHint::with_exact(0),
        }
    }
}

/// One connection to a target.
pub(crate) struct Conn {
    /// Pool-wide sequence number, for logs.
    pub id: u64,
    /// Where it goes.
    pub target: SocketAddr,
    /// True when it served a request before this one.
    pub reused: bool,
    /// How long it sat idle in the pool before this checkout.
    pub idle_for: Duration,
    /// The handle for sending on it.
    pub sender: Sender,
    /// When the target closed it (or it failed), once known.
    closed: Arc<Closed>,
    /// Ends hyper's connection task (HTTP/2) when the connection is dropped rather than
    /// pooled: an exchange the LB gave up on must close the target socket.
    task: Option<tokio::task::AbortHandle>,
}

/// The handle on a target connection, in the protocol the LB speaks to targets.
pub(crate) enum Sender {
    /// HTTP/1.1, the clouds' default: lbsim's own exchange ([`crate::lb::h1::target`])
    /// takes the socket from the slot and its response body puts it back.
    Http1(Arc<Slot>),
    /// HTTP/2 in cleartext (`--target-protocol http2|grpc`). The pool still hands each
    /// connection to one exchange at a time, as for HTTP/1.1.
    Http2(http2::SendRequest<UpstreamBody>),
}

impl Sender {
    /// True once the connection cannot carry another exchange.
    pub(crate) fn is_closed(&self) -> bool {
        match self {
            Sender::Http1(slot) => slot.lock().unwrap_or_else(|e| e.into_inner()).is_none(),
            Sender::Http2(s) => s.is_closed(),
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// When the target closed a connection, as the LB would learn it.
///
/// An idle HTTP/1.1 connection has no task watching it: when it goes into the pool, its
/// socket's read readiness is registered with this as the waker, so the runtime's I/O
/// driver notes the moment the socket turns readable (the target's FIN, a RST, stray
/// bytes). A wake proves nothing by itself: an event for bytes the last exchange already
/// read can reach the driver after the connection was pooled. So the checkout looks at
/// the socket (a peek) before it believes the note: only then is the close confirmed,
/// dated by the wake. Armed only while the connection is idle.
#[derive(Default)]
struct Closed {
    /// The close, confirmed (or, for HTTP/2, reported by hyper's connection task).
    at: OnceLock<Instant>,
    /// When the socket last turned readable while idle, not yet looked at.
    woken_at: Mutex<Option<Instant>>,
    armed: AtomicBool,
}

impl Closed {
    fn stamp(&self) {
        let _ = self.at.set(Instant::now());
    }

    /// Confirms a noted wake by looking at the socket: true (and the close dated by the
    /// wake) when the target closed it or sent bytes nobody asked for.
    fn confirm(&self, sender: &Sender) -> bool {
        if self.at.get().is_some() {
            return true;
        }
        let woken = self
            .woken_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let (Some(woken), Sender::Http1(slot)) = (woken, sender) else {
            return false;
        };
        let wire = slot.lock().unwrap_or_else(|e| e.into_inner());
        let closed = wire.as_ref().is_none_or(|w| peer_closed(&w.stream));
        if closed {
            let _ = self.at.set(woken);
        }
        closed
    }
}

impl Wake for Closed {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.armed.load(Ordering::Acquire) {
            let mut woken = self.woken_at.lock().unwrap_or_else(|e| e.into_inner());
            woken.get_or_insert_with(Instant::now);
        }
    }
}

/// True when the target has closed `stream` (or reset it, or sent bytes nobody asked
/// for), looking without taking anything (a peek).
fn peer_closed(stream: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    let mut buf = tokio::io::ReadBuf::new(&mut probe);
    let mut cx = Context::from_waker(Waker::noop());
    // Pending: nothing to read, open as it should be. Ready: end of stream, stray
    // bytes, or an error: not usable.
    stream.poll_peek(&mut cx, &mut buf).is_ready()
}

/// Starts watching an idle HTTP/1.1 connection for its close; false when it is already
/// unusable (closed, or the target sent bytes nobody asked for).
fn watch_idle(wire: &Wire, closed: &Arc<Closed>) -> bool {
    closed.armed.store(true, Ordering::Release);
    let waker = Waker::from(closed.clone());
    let mut cx = Context::from_waker(&waker);
    loop {
        match wire.stream.poll_read_ready(&mut cx) {
            Poll::Pending => return true,
            Poll::Ready(Err(_)) => return false,
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                match wire.stream.try_read(&mut probe) {
                    // Readiness was stale; now registered afresh.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    _ => return false,
                }
            }
        }
    }
}

struct Idle {
    conn: Conn,
    since: Instant,
}

/// Result of asking the pool for a connection.
pub(crate) enum Checkout {
    /// A usable connection, fresh or reused.
    Ready(Conn),
    /// The LB picked a connection the target had already closed and does not know yet.
    Stale {
        /// How long it had been idle before the target closed it (the app's keep-alive).
        idle_for: Duration,
        /// How long ago the target closed it.
        closed_for: Duration,
        /// The connection's id, for logs.
        id: u64,
    },
}

/// Why no connection could be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    /// Refused, unreachable or reset during connect.
    #[error("{0}")]
    Refused(io::Error),
    /// The handshake did not finish in the connect timeout.
    #[error("connect timed out")]
    Timeout,
}

/// Idle connections per target, with the LB's view of their liveness.
pub(crate) struct Pool {
    idle: Mutex<HashMap<SocketAddr, Vec<Idle>>>,
    /// The LB closes pooled connections idle longer than this itself.
    keep_alive: Duration,
    /// TCP connect budget.
    connect_timeout: Duration,
    /// How long the LB goes on believing in a connection the target closed.
    race_window: RaceWindow,
    /// Header-name case towards targets (preserved, or lower-cased as Envoy does).
    header_case: HeaderCase,
    /// HTTP/2 (cleartext) to targets instead of HTTP/1.1.
    http2: bool,
    next_id: AtomicU64,
    /// Where opened, reused and found-closed connections are announced.
    events: Events,
}

impl Pool {
    /// An empty pool, announcing its connections on `events`.
    pub(crate) fn new(
        keep_alive: Duration,
        connect_timeout: Duration,
        race_window: RaceWindow,
        header_case: HeaderCase,
        http2: bool,
        events: Events,
    ) -> Self {
        Pool {
            idle: Mutex::new(HashMap::new()),
            keep_alive,
            connect_timeout,
            race_window,
            header_case,
            http2,
            next_id: AtomicU64::new(1),
            events,
        }
    }

    /// The most recently used idle connection to `target`, or a new one.
    pub(crate) async fn checkout(&self, target: SocketAddr) -> Result<Checkout, ConnectError> {
        if let Some(found) = self.take_idle(target) {
            self.announce(target, &found);
            return Ok(found);
        }
        self.connect(target).await.map(Checkout::Ready)
    }

    fn take_idle(&self, target: SocketAddr) -> Option<Checkout> {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let stack = idle.get_mut(&target)?;
        while let Some(Idle { mut conn, since }) = stack.pop() {
            let idle_for = now.saturating_duration_since(since);
            if idle_for >= self.keep_alive {
                // The LB's own backend keep-alive ran out: it closed this one itself.
                continue;
            }
            conn.closed.armed.store(false, Ordering::Release);
            if conn.closed.confirm(&conn.sender) {
                let Some(closed_at) = conn.closed.at.get() else {
                    continue;
                };
                let closed_for = now.saturating_duration_since(*closed_at);
                if self.race_window.covers(closed_for) {
                    return Some(Checkout::Stale {
                        idle_for: closed_at.saturating_duration_since(since),
                        closed_for,
                        id: conn.id,
                    });
                }
                // The LB has seen the FIN by now and drops the connection.
                continue;
            }
            conn.reused = true;
            conn.idle_for = idle_for;
            return Some(Checkout::Ready(conn));
        }
        None
    }

    /// Announces what a checkout found in the pool (after the pool's lock is released).
    fn announce(&self, target: SocketAddr, found: &Checkout) {
        self.events.emit(|| match found {
            Checkout::Ready(conn) => EventKind::ConnectionReused {
                id: conn.id,
                target,
                idle_us: micros(conn.idle_for),
            },
            Checkout::Stale {
                idle_for,
                closed_for,
                id,
            } => EventKind::ConnectionFoundClosed {
                id: *id,
                target,
                idle_us: micros(*idle_for),
                closed_us: Some(micros(*closed_for)),
            },
        });
    }

    /// Returns a connection whose exchange finished cleanly.
    pub(crate) fn checkin(&self, conn: Conn) {
        if conn.closed.at.get().is_some() || conn.sender.is_closed() {
            return;
        }
        // A fresh idle period: what an earlier one noted was looked at, or is stale.
        *conn
            .closed
            .woken_at
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
        if let Sender::Http1(slot) = &conn.sender {
            let wire = slot.lock().unwrap_or_else(|e| e.into_inner());
            if !wire.as_ref().is_some_and(|w| watch_idle(w, &conn.closed)) {
                return;
            }
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.entry(conn.target).or_default().push(Idle {
            conn,
            since: Instant::now(),
        });
    }

    /// Closes idle connections the LB's own backend keep-alive has run out on, as the
    /// cloud does: the app sees the LB close them, not linger forever.
    pub(crate) fn sweep(&self) {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        for stack in idle.values_mut() {
            stack.retain(|i| now.saturating_duration_since(i.since) < self.keep_alive);
        }
        idle.retain(|_, stack| !stack.is_empty());
    }

    /// How often [`Pool::sweep`] should run: a quarter of the keep-alive, at least 10 ms.
    pub(crate) fn sweep_interval(&self) -> Duration {
        (self.keep_alive / 4).max(Duration::from_millis(10))
    }

    /// How request heads' names are written to targets.
    pub(crate) fn name_case(&self) -> crate::lb::h1::wire::NameCase {
        match self.header_case {
            HeaderCase::Preserve => crate::lb::h1::wire::NameCase::Preserve,
            HeaderCase::Lower => crate::lb::h1::wire::NameCase::Lower,
        }
    }

    /// Number of idle connections held for `target`.
    pub(crate) fn idle_count(&self, target: SocketAddr) -> usize {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.get(&target).map_or(0, Vec::len)
    }

    async fn connect(&self, target: SocketAddr) -> Result<Conn, ConnectError> {
        let stream =
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(target)).await {
                Err(_) => return Err(ConnectError::Timeout),
                Ok(Err(e)) => return Err(ConnectError::Refused(e)),
                Ok(Ok(s)) => s,
            };
        // Small requests and responses must not wait for Nagle.
        let _ = stream.set_nodelay(true);
        let closed = Arc::new(Closed::default());
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (sender, task) = if self.http2 {
            let mark = closed.clone();
            let handshake = |e: hyper::Error| ConnectError::Refused(io::Error::other(e));
            let (sender, connection) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(TokioIo::new(stream))
                .await
                .map_err(handshake)?;
            let task = tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(conn = id, "target connection ended: {e}");
                }
                mark.stamp();
            });
            (Sender::Http2(sender), Some(task.abort_handle()))
        } else {
            let wire = Wire {
                stream,
                buf: BytesMut::new(),
                outbox: Default::default(),
                read_size: Default::default(),
            };
            (Sender::Http1(Arc::new(Mutex::new(Some(wire)))), None)
        };
        self.events
            .emit(|| EventKind::ConnectionOpened { id, target });
        Ok(Conn {
            id,
            target,
            reused: false,
            idle_for: Duration::ZERO,
            sender,
            closed,
            task,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn pool(race_window: RaceWindow) -> Pool {
        Pool::new(
            Duration::from_secs(60),
            Duration::from_secs(1),
            race_window,
            HeaderCase::Preserve,
            false,
            Events::new(),
        )
    }

    /// A pooled connection to a listener on loopback, and the listener's side of it.
    async fn pooled(pool: &Pool) -> (Arc<Closed>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = listener.local_addr().unwrap();
        let Ok(Checkout::Ready(conn)) = pool.checkout(target).await else {
            panic!("a fresh connection");
        };
        let (server_side, _) = listener.accept().await.unwrap();
        let closed = conn.closed.clone();
        pool.checkin(conn);
        assert_eq!(pool.idle_count(target), 1);
        (closed, server_side)
    }

    /// Regression: a readiness event for bytes the last exchange had already read could
    /// reach the driver after the connection was pooled; its wake was taken for the
    /// target's close, and the next request on the connection got a 502 for a keep-alive
    /// race that never happened (4 in 16,000 requests of the throughput bench).
    #[tokio::test]
    async fn a_wake_without_a_close_leaves_the_connection_usable() {
        let pool = pool(RaceWindow::Always);
        let (closed, _server_side) = pooled(&pool).await;
        Waker::from(closed.clone()).wake_by_ref();
        let target = _server_side.local_addr().unwrap();
        match pool.checkout(target).await {
            Ok(Checkout::Ready(conn)) => assert!(conn.reused, "the pooled connection"),
            Ok(Checkout::Stale { .. }) => panic!("a spurious wake was taken for a close"),
            Err(e) => panic!("{e}"),
        }
    }

    /// The target's FIN on an idle connection is noted when it arrives: the LB still
    /// believes in the connection within the race window (the race, made certain here).
    #[tokio::test]
    async fn a_close_while_idle_is_dated_and_found_at_checkout() {
        let pool = pool(RaceWindow::Always);
        let (closed, server_side) = pooled(&pool).await;
        let target = server_side.local_addr().unwrap();
        drop(server_side);
        let noted = async {
            while closed.woken_at.lock().unwrap().is_none() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(2), noted)
            .await
            .expect("the FIN wakes the idle connection's watcher");
        match pool.checkout(target).await {
            Ok(Checkout::Stale { closed_for, .. }) => {
                assert!(closed_for < Duration::from_secs(2), "{closed_for:?}")
            }
            Ok(Checkout::Ready(_)) => panic!("a closed connection handed out as usable"),
            Err(e) => panic!("{e}"),
        }
    }
}
