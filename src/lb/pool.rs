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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::lb::config::RaceWindow;
use crate::lb::deadline::Touching;
use crate::lb::events::{micros, EventKind, Events};
use crate::lb::profile::HeaderCase;

/// The body type sent to targets: the client's body (or, for a request the LB sends
/// again, an empty one), counted as activity.
pub(crate) type UpstreamBody = Touching<Either<Incoming, Empty<Bytes>>>;

/// One HTTP/1.1 connection to a target.
pub(crate) struct Conn {
    /// Pool-wide sequence number, for logs.
    pub id: u64,
    /// Where it goes.
    pub target: SocketAddr,
    /// True when it served a request before this one.
    pub reused: bool,
    /// How long it sat idle in the pool before this checkout.
    pub idle_for: Duration,
    /// hyper's handle for sending on it.
    pub sender: Sender,
    /// Set by the connection task when the target closed it (or it failed).
    closed_at: Arc<OnceLock<Instant>>,
    /// Ends the connection task when the connection is dropped rather than pooled: an
    /// exchange the LB gave up on (a timeout, a body the app never read) must close the
    /// target socket, not leave hyper waiting on it forever.
    task: tokio::task::AbortHandle,
}

/// hyper's handle on a target connection, in the protocol the LB speaks to targets.
pub(crate) enum Sender {
    /// HTTP/1.1, the clouds' default.
    Http1(http1::SendRequest<UpstreamBody>),
    /// HTTP/2 in cleartext (`--target-protocol http2|grpc`). The pool still hands each
    /// connection to one exchange at a time, as for HTTP/1.1.
    Http2(http2::SendRequest<UpstreamBody>),
}

impl Sender {
    /// True once hyper knows the connection is closed.
    pub(crate) fn is_closed(&self) -> bool {
        match self {
            Sender::Http1(s) => s.is_closed(),
            Sender::Http2(s) => s.is_closed(),
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
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
            if let Some(closed_at) = conn.closed_at.get() {
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
        if conn.closed_at.get().is_some() || conn.sender.is_closed() {
            return;
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
        let closed_at = Arc::new(OnceLock::new());
        let mark = closed_at.clone();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let handshake = |e: hyper::Error| ConnectError::Refused(io::Error::other(e));
        let (sender, task) = if self.http2 {
            let (sender, connection) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(TokioIo::new(stream))
                .await
                .map_err(handshake)?;
            let task = tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(conn = id, "target connection ended: {e}");
                }
                let _ = mark.set(Instant::now());
            });
            (Sender::Http2(sender), task.abort_handle())
        } else {
            let (sender, connection) = http1::Builder::new()
                .max_buf_size(crate::lb::MAX_BUF_SIZE)
                .preserve_header_case(self.header_case == HeaderCase::Preserve)
                .title_case_headers(self.header_case == HeaderCase::Preserve)
                .handshake(TokioIo::new(stream))
                .await
                .map_err(handshake)?;
            let task = tokio::spawn(async move {
                // With upgrades, a 101 hands the socket to the WebSocket relay (the task
                // then ends and the connection is never pooled again); without, hyper
                // would fail the exchange.
                if let Err(e) = connection.with_upgrades().await {
                    tracing::debug!(conn = id, "target connection ended: {e}");
                }
                let _ = mark.set(Instant::now());
            });
            (Sender::Http1(sender), task.abort_handle())
        };
        self.events
            .emit(|| EventKind::ConnectionOpened { id, target });
        Ok(Conn {
            id,
            target,
            reused: false,
            idle_for: Duration::ZERO,
            sender,
            closed_at,
            task,
        })
    }
}
