//! Moving a response body from the target's socket to the client's with `splice(2)`
//! through a pipe: the bytes never enter lbsim's memory, which halves the copies a
//! user-space proxy adds to a large download.
//!
//! Used only where nothing needs to see the bytes: a body with a Content-Length, between
//! two plain TCP sockets (TLS needs the bytes), once the request has gone out whole. The
//! deadline still sees every move (the caller touches it per read), and a client that
//! stops reading is timed as on the copying path.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::task::{ready, Context, Poll};

use tokio::io::Interest;
use tokio::net::TcpStream;

/// Smallest body worth splicing: below it, one copy costs less than the pipe's system
/// calls.
pub(crate) const SPLICE_MIN: u64 = 256 * 1024;

/// Most bytes asked of one `splice` call (the pipe is grown to this when allowed).
const PIPE_SIZE: usize = 1024 * 1024;

/// A pipe between the two sockets, and how many bytes sit in it.
pub(crate) struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Bytes in the pipe, not yet spliced to the client.
    held: usize,
}

impl Pipe {
    /// A non-blocking pipe, grown to [`PIPE_SIZE`] where the system allows.
    pub(crate) fn new() -> io::Result<Pipe> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // Best effort: a smaller pipe only means more calls.
        // SAFETY: a valid descriptor and a plain integer argument.
        let _ = unsafe {
            libc::fcntl(
                write.as_raw_fd(),
                libc::F_SETPIPE_SZ,
                PIPE_SIZE as libc::c_int,
            )
        };
        Ok(Pipe {
            read,
            write,
            held: 0,
        })
    }

    /// True when bytes wait in the pipe.
    pub(crate) fn holds(&self) -> bool {
        self.held > 0
    }

    /// True when the pipe has room for more.
    pub(crate) fn has_room(&self) -> bool {
        self.held < PIPE_SIZE
    }
}

/// One `splice` call, non-blocking.
fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: both descriptors are open for the duration of the call (borrowed from a
    // live socket or pipe); null offsets are allowed for sockets and pipes.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Fills the pipe from `target` with at most `left` bytes; `Ready(Ok(0))` when the
/// target closed.
pub(crate) fn poll_fill(
    cx: &mut Context<'_>,
    target: &TcpStream,
    pipe: &mut Pipe,
    left: u64,
) -> Poll<io::Result<usize>> {
    let want = usize::try_from(left)
        .unwrap_or(usize::MAX)
        .min(PIPE_SIZE - pipe.held.min(PIPE_SIZE));
    loop {
        ready!(target.poll_read_ready(cx))?;
        match target.try_io(Interest::READABLE, || {
            splice(target.as_raw_fd(), pipe.write.as_raw_fd(), want)
        }) {
            Ok(n) => {
                pipe.held += n;
                return Poll::Ready(Ok(n));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
}

/// Empties the pipe into `client` as far as it takes; the bytes moved, `Pending` when
/// the client takes none now.
pub(crate) fn poll_drain(
    cx: &mut Context<'_>,
    client: &TcpStream,
    pipe: &mut Pipe,
) -> Poll<io::Result<usize>> {
    loop {
        ready!(client.poll_write_ready(cx))?;
        match client.try_io(Interest::WRITABLE, || {
            splice(pipe.read.as_raw_fd(), client.as_raw_fd(), pipe.held)
        }) {
            Ok(n) => {
                pipe.held -= n.min(pipe.held);
                return Poll::Ready(Ok(n));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
}
