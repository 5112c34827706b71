//! lbsim's own HTTP/1.1 data plane: the client connections' sessions ([`server`]) and
//! the exchanges on pooled target connections ([`target`]), both over [`wire`].
//!
//! One task per client connection does everything its requests need: it parses each
//! head once (after the client-side gate has judged it), hands the engine a request
//! whose body reads the client socket directly, and drives the exchange on the target
//! connection itself — writing the request, reading the response, streaming both bodies
//! — with no channel or second task between the two sockets. Heads go out with the
//! names' case as received where the cloud keeps it. hyper stays for HTTP/2 (clients
//! and targets), the mock app, the control API and the health checker.

pub(crate) mod server;
#[cfg(target_os = "linux")]
pub(crate) mod splice;
pub(crate) mod target;
pub(crate) mod wire;

use std::collections::VecDeque;
use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;

/// The error type of the bodies the data plane streams.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Smallest free space offered to a read: a head arrives in one read.
const READ_SPACE: usize = 8 * 1024;

/// Smallest and largest read of a body: reads grow while they fill the space offered
/// (a stream) and shrink when they do not (a small body), as hyper's adaptive reads do.
/// Large reads matter: 64 KiB reads of a 1 GiB upload cost twice the CPU of the
/// megabyte reads hyper grew to (an allocation, a read and a write per 64 KiB).
const BODY_READ_MIN: usize = 16 * 1024;
const BODY_READ_MAX: usize = 1024 * 1024;

/// The size of the next read of a body, adapted to what the reads before it got.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReadSize(usize);

impl Default for ReadSize {
    fn default() -> Self {
        ReadSize(BODY_READ_MIN)
    }
}

impl ReadSize {
    /// Learns from a read of `got` bytes into `offered`.
    fn record(&mut self, got: usize, offered: usize) {
        if got >= offered && self.0 < BODY_READ_MAX {
            self.0 = (self.0 * 2).min(BODY_READ_MAX);
        } else if got < offered / 4 && self.0 > BODY_READ_MIN {
            self.0 = (self.0 / 2).max(BODY_READ_MIN);
        }
    }
}

/// Most buffers handed to one vectored write.
const MAX_IOVECS: usize = 16;

/// Bytes waiting to be written, in order, without copying them together: a head (its
/// buffer kept from message to message) and the body chunks after it go out in one
/// vectored write.
#[derive(Default)]
pub(crate) struct Outbox {
    /// The head being written; `head_sent` of it are out.
    head: Vec<u8>,
    head_sent: usize,
    queue: VecDeque<Bytes>,
    /// Bytes queued: a writer stops taking more above its limit.
    len: usize,
}

impl Outbox {
    /// The (cleared) buffer to write the next head into; it goes out first.
    pub(crate) fn head(&mut self) -> &mut Vec<u8> {
        self.len -= self.head.len() - self.head_sent;
        self.head.clear();
        self.head_sent = 0;
        &mut self.head
    }

    /// Counts the head written with [`Outbox::head`].
    pub(crate) fn head_written(&mut self) {
        self.len += self.head.len();
    }

    /// Queues `bytes` after what is already waiting.
    pub(crate) fn push(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.len += bytes.len();
            self.queue.push_back(bytes);
        }
    }

    /// Bytes waiting.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// True when nothing waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes everything queued to `w`.
    pub(crate) fn poll_flush<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        cx: &mut Context<'_>,
        w: &mut W,
    ) -> Poll<io::Result<()>> {
        while self.len > 0 {
            let head = &self.head[self.head_sent..];
            let n = if w.is_write_vectored() && self.queue.len() + usize::from(!head.is_empty()) > 1
            {
                let mut slices = [io::IoSlice::new(&[]); MAX_IOVECS];
                let mut count = 0;
                for part in std::iter::once(head)
                    .filter(|h| !h.is_empty())
                    .chain(self.queue.iter().map(|b| &b[..]))
                    .take(MAX_IOVECS)
                {
                    slices[count] = io::IoSlice::new(part);
                    count += 1;
                }
                ready!(Pin::new(&mut *w).poll_write_vectored(cx, &slices[..count]))?
            } else if !head.is_empty() {
                ready!(Pin::new(&mut *w).poll_write(cx, head))?
            } else {
                ready!(Pin::new(&mut *w).poll_write(cx, &self.queue[0]))?
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.consume(n);
        }
        Poll::Ready(Ok(()))
    }

    fn consume(&mut self, mut n: usize) {
        self.len -= n.min(self.len);
        let head_left = self.head.len() - self.head_sent;
        let from_head = n.min(head_left);
        self.head_sent += from_head;
        n -= from_head;
        while n > 0 {
            let Some(front) = self.queue.front_mut() else {
                return;
            };
            if front.len() <= n {
                n -= front.len();
                self.queue.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }
}

/// Reads what `r` has into `buf`; the number of bytes read (0 at end of stream).
pub(crate) fn poll_read_into<R: AsyncRead + Unpin + ?Sized>(
    cx: &mut Context<'_>,
    r: &mut R,
    buf: &mut BytesMut,
) -> Poll<io::Result<usize>> {
    poll_read_sized(cx, r, buf, READ_SPACE)
}

/// [`poll_read_into`] for a body's bytes: reads sized by `size`, which learns from each.
pub(crate) fn poll_read_body<R: AsyncRead + Unpin + ?Sized>(
    cx: &mut Context<'_>,
    r: &mut R,
    buf: &mut BytesMut,
    size: &mut ReadSize,
) -> Poll<io::Result<usize>> {
    if buf.capacity() - buf.len() < size.0 / 2 {
        buf.reserve(size.0);
    }
    let offered = buf.capacity() - buf.len();
    let polled = std::pin::pin!(r.read_buf(buf)).poll(cx);
    if let Poll::Ready(Ok(n)) = polled {
        size.record(n, offered);
    }
    polled
}

fn poll_read_sized<R: AsyncRead + Unpin + ?Sized>(
    cx: &mut Context<'_>,
    r: &mut R,
    buf: &mut BytesMut,
    space: usize,
) -> Poll<io::Result<usize>> {
    if buf.capacity() - buf.len() < space / 2 {
        buf.reserve(space);
    }
    // `read_buf` reads once per poll and keeps no state between polls.
    std::pin::pin!(r.read_buf(buf)).poll(cx)
}

/// A socket handed from HTTP to a tunnel (a WebSocket after `101`), with the bytes
/// already read past the `101` exchange.
pub(crate) struct Upgraded {
    /// The socket.
    pub io: Box<dyn Tunnel>,
    /// Bytes that arrived with the head and belong to the tunnel.
    pub leftover: BytesMut,
}

/// What a tunnel side is: any socket.
pub(crate) trait Tunnel: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Tunnel for T {}

impl AsyncRead for Upgraded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.leftover.is_empty() {
            let n = this.leftover.len().min(buf.remaining());
            buf.put_slice(&this.leftover[..n]);
            this.leftover.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// One side of an upgrade, in a message's extensions: the socket arrives once the `101`
/// has gone out (client side) or come in (target side). Cloneable, as extensions are.
#[derive(Clone)]
pub(crate) struct PendingUpgrade(Arc<Mutex<Option<oneshot::Receiver<Upgraded>>>>);

impl PendingUpgrade {
    /// A pending upgrade and the sender that completes it.
    pub(crate) fn new() -> (oneshot::Sender<Upgraded>, PendingUpgrade) {
        let (tx, rx) = oneshot::channel();
        (tx, PendingUpgrade(Arc::new(Mutex::new(Some(rx)))))
    }

    /// An upgrade already done.
    pub(crate) fn ready(upgraded: Upgraded) -> PendingUpgrade {
        let (tx, pending) = PendingUpgrade::new();
        let _ = tx.send(upgraded);
        pending
    }

    /// Waits for the socket.
    pub(crate) async fn wait(self) -> io::Result<Upgraded> {
        let rx = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        match rx {
            Some(rx) => rx
                .await
                .map_err(|_| io::Error::other("the connection ended before switching")),
            None => Err(io::Error::other("upgrade already taken")),
        }
    }
}
