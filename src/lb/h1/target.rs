//! One HTTP/1.1 exchange on a pooled target connection, driven by the client
//! connection's own task: the request head and body go out while the response head is
//! awaited, and once it is in, the response body ([`ResponseBody`]) goes on pushing what
//! is left of the request body as it is read. A connection whose exchange ended cleanly
//! goes back into its [`Slot`] for the pool.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use http::header::{HeaderValue, TRANSFER_ENCODING};
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::lb::h1::wire::{self, BodyState, Framing, NameCase, Unframed};
use crate::lb::h1::{
    poll_read_body, poll_read_into, BoxError, Outbox, PendingUpgrade, ReadSize, Upgraded,
};
use crate::lb::pool::{TargetBody, UpstreamBody};

/// Largest response head taken from a target (hyper's client allowed about as much).
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// A target connection's socket and the bytes read from it but not yet used.
pub(crate) struct Wire {
    pub stream: TcpStream,
    pub buf: BytesMut,
    /// The write buffer, kept from exchange to exchange (its head buffer is reused).
    pub outbox: Outbox,
    /// How much a read of a response body asks for (grows with a streamed download).
    pub read_size: ReadSize,
}

/// Where a connection's [`Wire`] lives between exchanges: taken by an exchange, put
/// back by its response body when the exchange ended cleanly.
pub(crate) type Slot = Mutex<Option<Wire>>;

/// Why an exchange failed.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The connection was found closed (or sent bytes nobody asked for) as the request
    /// was about to go: the LB lost the keep-alive race.
    Stale,
    /// The target closed the connection (`reset`: with a RST) before a response head.
    Closed {
        reset: bool,
        /// Some bytes of a response had arrived.
        partial: bool,
    },
    /// Any other socket error.
    Io(io::Error),
    /// The response head is not HTTP/1.1.
    Malformed(String),
    /// The client's request body failed (broken framing, the client gone).
    ClientBody(BoxError),
}

impl SendError {
    /// True when the request never left: the connection was already closed.
    pub(crate) fn is_stale(&self) -> bool {
        matches!(self, SendError::Stale)
    }

    /// True for a response the LB could not read as HTTP.
    pub(crate) fn is_malformed(&self) -> bool {
        matches!(self, SendError::Malformed(_))
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Stale => f.write_str("connection closed before the request was sent"),
            SendError::Closed { reset: true, .. } => {
                f.write_str("connection reset by peer before the response was complete")
            }
            SendError::Closed { partial: true, .. } => {
                f.write_str("connection closed before the response head was complete")
            }
            SendError::Closed { .. } => f.write_str("connection closed before message completed"),
            SendError::Io(e) => write!(f, "connection error: {e}"),
            SendError::Malformed(e) => write!(f, "invalid HTTP response: {e}"),
            SendError::ClientBody(e) => write!(f, "request body: {e}"),
        }
    }
}

impl From<io::Error> for SendError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::ConnectionReset {
            SendError::Closed {
                reset: true,
                partial: false,
            }
        } else {
            SendError::Io(e)
        }
    }
}

/// The request side of an exchange: the bytes to write and the body still to come.
struct Sending {
    outbox: Outbox,
    body: Option<UpstreamBody>,
    chunked: bool,
    /// A write failed: nothing more is sent, the response may still be read.
    failed: Option<io::Error>,
}

impl Sending {
    /// True when the whole request has been written.
    fn done(&self) -> bool {
        self.body.is_none() && self.outbox.is_empty() && self.failed.is_none()
    }

    /// Writes what it can; `Ready(Ok)` once the whole request is out. A client body
    /// that fails is an error; a write that fails stops the sending (recorded).
    fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        stream: &mut TcpStream,
    ) -> Poll<Result<(), SendError>> {
        if self.failed.is_some() {
            return Poll::Ready(Ok(()));
        }
        loop {
            if let Err(e) = ready!(self.outbox.poll_flush(cx, stream)) {
                self.failed = Some(e);
                self.body = None;
                return Poll::Ready(Ok(()));
            }
            let Some(body) = self.body.as_mut() else {
                return Poll::Ready(Ok(()));
            };
            match ready!(Pin::new(body).poll_frame(cx)) {
                None => {
                    self.body = None;
                    if self.chunked {
                        self.outbox.push(Bytes::from_static(b"0\r\n\r\n"));
                    }
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        if data.is_empty() {
                            continue;
                        }
                        if self.chunked {
                            self.outbox.push(wire::chunk_size_line(data.len()));
                            self.outbox.push(data);
                            self.outbox.push(Bytes::from_static(b"\r\n"));
                        } else {
                            self.outbox.push(data);
                        }
                    }
                    Err(frame) => {
                        // Trailers end the body (a target reads them after the last chunk).
                        self.body = None;
                        if self.chunked {
                            let trailers = frame.into_trailers().ok();
                            self.outbox
                                .push(wire::chunked_end(trailers.as_ref(), NameCase::Preserve));
                        }
                    }
                },
                Some(Err(e)) => {
                    self.body = None;
                    return Poll::Ready(Err(SendError::ClientBody(e)));
                }
            }
        }
    }
}

/// Sends `req` on `wire` and waits for the response head; `case` is how the head's
/// names are written. The response body returns the connection to `slot` when the
/// exchange ends cleanly. Also gives when the request went out, for the access log.
pub(crate) async fn send(
    mut wire: Wire,
    req: Request<UpstreamBody>,
    case: NameCase,
    slot: Arc<Slot>,
) -> Result<(Response<TargetBody>, Instant), SendError> {
    if already_closed(&wire) {
        return Err(SendError::Stale);
    }
    let (mut parts, body) = req.into_parts();
    let framing =
        wire::request_framing(&parts.headers).map_err(|e| SendError::ClientBody(Box::new(e)))?;
    let chunked = match framing {
        Framing::Chunked => true,
        Framing::Empty
            if !body.is_end_stream()
                && !parts.headers.contains_key(http::header::CONTENT_LENGTH) =>
        {
            // A body of unknown length (from an HTTP/2 client): chunked, as hyper sends it.
            parts
                .headers
                .insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
            true
        }
        _ => false,
    };
    let mut outbox = std::mem::take(&mut wire.outbox);
    wire::write_request_head(outbox.head(), &parts, case);
    outbox.head_written();
    let sending = Sending {
        outbox,
        body: (!body.is_end_stream() || chunked).then_some(body),
        chunked,
        failed: None,
    };
    let method = parts.method;
    let dispatched = Instant::now();
    let mut exchange = Exchange {
        wire,
        sending,
        preserve: case == NameCase::Preserve,
        parsed_up_to: 0,
    };
    let head = std::future::poll_fn(|cx| exchange.poll_head(cx)).await?;
    let Exchange { wire, sending, .. } = exchange;
    let mut parts = head.parts;
    if parts.status == http::StatusCode::SWITCHING_PROTOCOLS {
        // The socket becomes a tunnel: the relay takes it with what followed the head.
        let Wire { stream, buf, .. } = wire;
        parts.extensions.insert(PendingUpgrade::ready(Upgraded {
            io: Box::new(stream),
            leftover: buf,
        }));
        return Ok((Response::from_parts(parts, TargetBody::Empty), dispatched));
    }
    let framing = wire::response_framing(&method, parts.status, &parts.headers)
        .map_err(|e| SendError::Malformed(e.to_string()))?;
    let keep = parts.version == http::Version::HTTP_11
        && !parts
            .headers
            .get_all(http::header::CONNECTION)
            .iter()
            .any(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    let body = ResponseBody {
        wire: Some(wire),
        sending,
        state: BodyState::new(framing),
        keep: keep && framing != Framing::UntilClose,
        slot,
    };
    let mut body = body;
    if body.state.is_done() {
        body.finish();
    }
    Ok((
        Response::from_parts(parts, TargetBody::H1(Box::new(body))),
        dispatched,
    ))
}

/// True when the target has closed `wire` (or sent bytes nobody asked for) by now, as
/// far as the runtime has seen: free when the socket has no read readiness (no system
/// call), as for almost every reused connection.
fn already_closed(wire: &Wire) -> bool {
    if !wire.buf.is_empty() {
        return true;
    }
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match wire.stream.poll_read_ready(&mut cx) {
        Poll::Pending => false,
        Poll::Ready(Err(_)) => true,
        Poll::Ready(Ok(())) => {
            let mut probe = [0u8; 1];
            !matches!(wire.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
        }
    }
}

/// An exchange waiting for its response head.
struct Exchange {
    wire: Wire,
    sending: Sending,
    preserve: bool,
    /// How much of the buffer the last parse saw (an incomplete head is not parsed
    /// again until more bytes arrive).
    parsed_up_to: usize,
}

impl Exchange {
    fn poll_head(&mut self, cx: &mut Context<'_>) -> Poll<Result<wire::ResponseHead, SendError>> {
        loop {
            // Keep the request going; a write that fails leaves the response to tell.
            if let Poll::Ready(Err(e)) = self.sending.poll_send(cx, &mut self.wire.stream) {
                return Poll::Ready(Err(e));
            }
            // Parsed only when bytes came since the last try.
            let parsed = if self.wire.buf.len() > self.parsed_up_to {
                wire::parse_response(&mut self.wire.buf, self.preserve)
            } else {
                Ok(None)
            };
            // What is left after a head (the next one, after an interim 100) is new.
            self.parsed_up_to = match parsed {
                Ok(None) => self.wire.buf.len(),
                _ => 0,
            };
            match parsed {
                Ok(Some(head)) => {
                    let status = head.parts.status;
                    if status.is_informational() && status != http::StatusCode::SWITCHING_PROTOCOLS
                    {
                        // 100 Continue and other interim answers are not sent on.
                        continue;
                    }
                    return Poll::Ready(Ok(head));
                }
                Ok(None) if self.wire.buf.len() > MAX_RESPONSE_HEAD => {
                    return Poll::Ready(Err(SendError::Malformed(format!(
                        "response head over {} KiB",
                        MAX_RESPONSE_HEAD / 1024
                    ))))
                }
                Ok(None) => {}
                Err(e) => return Poll::Ready(Err(SendError::Malformed(e.to_string()))),
            }
            let partial = !self.wire.buf.is_empty();
            match ready!(poll_read_into(
                cx,
                &mut self.wire.stream,
                &mut self.wire.buf
            )) {
                Ok(0) => {
                    return Poll::Ready(Err(match self.sending.failed.take() {
                        Some(e) if !partial => SendError::from(e),
                        _ => SendError::Closed {
                            reset: false,
                            partial,
                        },
                    }))
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    return Poll::Ready(Err(SendError::Closed {
                        reset: true,
                        partial,
                    }))
                }
                Err(e) => return Poll::Ready(Err(SendError::Io(e))),
            }
        }
    }
}

/// The body of a target's HTTP/1.1 response, read from its connection as the client
/// takes it; it also pushes the rest of the request body, if any is left.
pub(crate) struct ResponseBody {
    wire: Option<Wire>,
    sending: Sending,
    state: BodyState,
    /// The response lets the connection carry another exchange.
    keep: bool,
    slot: Arc<Slot>,
}

impl ResponseBody {
    /// The body has ended: a connection whose exchange is complete goes back to its slot.
    fn finish(&mut self) {
        self.state = BodyState::Done;
        if let Some(mut wire) = self.wire.take() {
            if self.keep && self.sending.done() && wire.buf.is_empty() {
                wire.outbox = std::mem::take(&mut self.sending.outbox);
                *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(wire);
            }
        }
    }

    /// The target socket and the body bytes left, when the rest of the body can go
    /// straight from socket to socket: a long Content-Length body, nothing of it
    /// buffered, and the request out whole (nothing else needs the socket).
    pub(crate) fn splice_source(&self) -> Option<(&TcpStream, u64)> {
        match (&self.state, &self.wire) {
            (BodyState::Length(left), Some(wire))
                if *left >= super::splice::SPLICE_MIN
                    && wire.buf.is_empty()
                    && self.sending.done() =>
            {
                Some((&wire.stream, *left))
            }
            _ => None,
        }
    }

    /// Counts `n` bytes spliced out of the target's socket.
    pub(crate) fn spliced(&mut self, n: u64) {
        if let BodyState::Length(left) = &mut self.state {
            *left -= n.min(*left);
            if *left == 0 {
                self.finish();
            }
        }
    }

    /// Reads more from the target; `Ok(0)` at its close.
    fn poll_more(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        match self.wire.as_mut() {
            Some(wire) => poll_read_body(cx, &mut wire.stream, &mut wire.buf, &mut wire.read_size),
            None => Poll::Ready(Ok(0)),
        }
    }

    fn cut(&mut self, what: &str) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.state = BodyState::Done;
        self.wire = None;
        Poll::Ready(Some(Err(what.to_string().into())))
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(wire) = this.wire.as_mut() {
            if !this.sending.done() && this.sending.failed.is_none() {
                // What the client still sends goes on to the target meanwhile.
                if let Poll::Ready(Err(e)) = this.sending.poll_send(cx, &mut wire.stream) {
                    this.wire = None;
                    this.state = BodyState::Done;
                    return Poll::Ready(Some(Err(e.to_string().into())));
                }
            }
        }
        loop {
            let Some(wire) = this.wire.as_mut() else {
                return Poll::Ready(None);
            };
            match this.state.take(&mut wire.buf) {
                Unframed::Data(data) => {
                    if this.state.is_done() {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Unframed::Trailers(trailers) => {
                    this.finish();
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                }
                Unframed::End => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Unframed::NeedMore => {}
                Unframed::Invalid(e) => return this.cut(&e),
            }
            match ready!(this.poll_more(cx)) {
                Ok(0) => match this.state.at_close() {
                    Unframed::End => {
                        this.finish();
                        return Poll::Ready(None);
                    }
                    _ => {
                        return this.cut("connection closed before the response body was complete")
                    }
                },
                Ok(_) => {}
                Err(e) => return this.cut(&format!("error reading the response body: {e}")),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.state.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        self.state.size_hint()
    }
}
