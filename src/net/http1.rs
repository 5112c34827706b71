//! One reader of raw HTTP/1 responses (RFC 9112), for the clients that need every byte
//! under their own control: `lbsim doctor`, the health checker, and the test support.
//!
//! It is sans framework: a [`Reader`] owns a buffer and pulls bytes from a [`Fill`] source,
//! so the caller decides how long a read may wait and what each read records (the doctor
//! keeps its clocks, the tests fail a read that waits too long). Any tokio [`AsyncRead`]
//! is a source as it is.
//!
//! Reading a response is two steps, or one:
//!
//! 1. [`Reader::head`] reads a [`Head`] (skipping or returning 1xx interim heads, see
//!    [`Interim`]); [`Head::framing`] says, for the request's method, how the body is
//!    delimited (RFC 9112 §6.3), and [`Head::reusable`] whether the server keeps the
//!    connection (§9.3).
//! 2. [`Reader::body`] reads that body into a sink callback and says whether it ended
//!    cleanly ([`BodyEnd`]).
//!
//! [`Reader::response`] does both and keeps the whole body. [`Reader::status_line`] reads
//! a status line alone. Bytes read past the response stay in the buffer
//! ([`Reader::leftover`]): the next pipelined response, or what follows a 101.

use std::future::Future;
use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest response head (status line and header fields; each interim head counts on its
/// own): far above what apps and load balancers send (nginx buffers 4–8 KiB), and a bound
/// on what a stream that never ends its head can make the reader buffer.
pub const MAX_HEAD: usize = 64 * 1024;

/// Longest chunk-size line, trailer line or lone status line: the 8 KiB nginx allows for a
/// header line; a longer one is garbage, and the bound keeps the search for its end cheap.
pub const MAX_LINE: usize = 8 * 1024;

/// Most header fields in one head (httparse parses into a fixed array): hyper's default.
pub const MAX_HEADERS: usize = 100;

/// How much a plain [`AsyncRead`] source asks for per read.
const READ_CHUNK: usize = 16 * 1024;

/// Why a response could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The peer closed the connection before the bytes the reader needed (`reset`: with
    /// a TCP RST). A body cut this way is not an error: [`BodyEnd::Cut`].
    #[error("connection {} before the response was complete", if *reset { "reset" } else { "closed" })]
    Closed {
        /// The connection was reset (RST) rather than closed (FIN).
        reset: bool,
    },
    /// The source stopped waiting (its deadline or silence limit passed).
    #[error("no more bytes in time")]
    TimedOut,
    /// Any other socket error.
    #[error("read failed: {0}")]
    Io(#[source] io::Error),
    /// No complete head within [`MAX_HEAD`] bytes.
    #[error("response head over {} KiB", MAX_HEAD / 1024)]
    HeadTooLarge,
    /// The bytes are not an HTTP/1 response head.
    #[error("not an HTTP/1.1 response ({error}): {preview}")]
    BadHead {
        /// What httparse found wrong.
        error: httparse::Error,
        /// The start of the bytes, printable.
        preview: String,
    },
    /// The line is not an HTTP/1 status line (from [`Reader::status_line`]).
    #[error("not an HTTP status line: {0:?}")]
    BadStatusLine(String),
    /// A Content-Length value that is not a number.
    #[error("invalid Content-Length `{0}`")]
    BadContentLength(String),
    /// Content-Length values that differ (RFC 9110 §8.6: the framing cannot be trusted).
    #[error("conflicting Content-Length values `{0}`")]
    ConflictingContentLength(String),
    /// A chunk-size line that does not start with a hexadecimal size.
    #[error("invalid chunk size `{0}`")]
    BadChunkSize(String),
    /// Chunk data not followed by CRLF.
    #[error("chunk not followed by CRLF")]
    BadChunkEnd,
    /// A trailer line that is not a header field.
    #[error("invalid trailer line `{0}`")]
    BadTrailer(String),
    /// A line (named) over [`MAX_LINE`] bytes.
    #[error("{what} over {} KiB", MAX_LINE / 1024, what = .0)]
    LineTooLong(&'static str),
    /// A trailer section over [`MAX_HEAD`] bytes.
    #[error("trailer section over {} KiB", MAX_HEAD / 1024)]
    TrailersTooLarge,
}

impl ReadError {
    /// The error for a failed socket read: resets (and aborts, broken pipes) are
    /// [`ReadError::Closed`] with `reset`, the rest [`ReadError::Io`].
    pub fn from_io(e: io::Error) -> ReadError {
        match e.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => ReadError::Closed { reset: true },
            _ => ReadError::Io(e),
        }
    }

    /// True when the bytes themselves are at fault (not HTTP/1, bad framing, over a
    /// limit), rather than the connection or the clock.
    pub fn is_malformed(&self) -> bool {
        !matches!(
            self,
            ReadError::Closed { .. } | ReadError::TimedOut | ReadError::Io(_)
        )
    }
}

/// Where a [`Reader`] gets its bytes: the one place a caller decides how long a read may
/// wait (return [`ReadError::TimedOut`], or panic in a test) and what it records.
pub trait Fill {
    /// Appends at least one byte read from the peer to `buf` and returns how many; `Ok(0)`
    /// when the peer has closed the connection (end of stream).
    fn fill(&mut self, buf: &mut Vec<u8>) -> impl Future<Output = Result<usize, ReadError>> + Send;
}

/// Any tokio byte stream, read as it comes, with no deadline of its own (wrap the whole
/// read in `tokio::time::timeout`, or write a [`Fill`] that has one).
impl<R: AsyncRead + Unpin + Send> Fill for R {
    async fn fill(&mut self, buf: &mut Vec<u8>) -> Result<usize, ReadError> {
        buf.reserve(READ_CHUNK);
        self.read_buf(buf).await.map_err(ReadError::from_io)
    }
}

/// A status line: `HTTP/1.1 200 OK`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusLine {
    /// `HTTP/1.0` or `HTTP/1.1`.
    pub version: http::Version,
    /// Status code.
    pub status: u16,
    /// Reason phrase as sent (may be empty).
    pub reason: String,
}

/// A response head as it came off the socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// `HTTP/1.0` or `HTTP/1.1`.
    pub version: http::Version,
    /// Status code.
    pub status: u16,
    /// Reason phrase as sent (may be empty).
    pub reason: String,
    /// Header fields in order, names in their original case; values as sent, decoded
    /// lossily (bytes that are not UTF-8 become U+FFFD).
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.values(name).next()
    }

    /// Every value of header `name` (case-insensitive), in order.
    pub fn values<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The comma-separated elements of every `name` field, trimmed, empty ones dropped.
    fn list<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.values(name)
            .flat_map(|v| v.split(','))
            .map(|t| t.trim_matches([' ', '\t']))
            .filter(|t| !t.is_empty())
    }

    /// An interim (1xx) head that a final response follows: every 1xx but 101, which
    /// ends the HTTP exchange instead.
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status) && self.status != 101
    }

    /// Whether the server keeps the connection open after this response, by RFC 9112
    /// §9.3: not with `Connection: close`; HTTP/1.1 otherwise does; HTTP/1.0 only with
    /// `Connection: keep-alive`. The body's framing matters too (a body read to the close,
    /// or a tunnel, ends the connection): [`Framing::keeps_connection`],
    /// [`Response::reusable`].
    pub fn reusable(&self) -> bool {
        let has = |option: &str| {
            self.list("connection")
                .any(|t| t.eq_ignore_ascii_case(option))
        };
        if has("close") {
            false
        } else if self.version == http::Version::HTTP_10 {
            has("keep-alive")
        } else {
            true
        }
    }

    /// How the body that follows this head is delimited, for a request with `method` (as
    /// sent: methods are case-sensitive), by RFC 9112 §6.3.
    pub fn framing(&self, method: &str) -> Result<Framing, ReadError> {
        if self.status == 101 || (method == "CONNECT" && (200..300).contains(&self.status)) {
            return Ok(Framing::Tunnel);
        }
        if method == "HEAD" || (100..200).contains(&self.status) || matches!(self.status, 204 | 304)
        {
            return Ok(Framing::Empty);
        }
        if self.header("transfer-encoding").is_some() {
            // Transfer-Encoding overrides Content-Length; a response whose last coding is
            // not chunked runs until the close.
            let last = self.list("transfer-encoding").last().unwrap_or("");
            return Ok(if last.eq_ignore_ascii_case("chunked") {
                Framing::Chunked
            } else {
                Framing::Close
            });
        }
        let mut length = None;
        for value in self.list("content-length") {
            if !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ReadError::BadContentLength(value.to_string()));
            }
            let n: u64 = value
                .parse()
                .map_err(|_| ReadError::BadContentLength(value.to_string()))?;
            if length.is_some_and(|l| l != n) {
                let all: Vec<&str> = self.values("content-length").collect();
                return Err(ReadError::ConflictingContentLength(all.join(", ")));
            }
            length = Some(n);
        }
        if self.header("content-length").is_some() && length.is_none() {
            return Err(ReadError::BadContentLength(String::new()));
        }
        Ok(length.map_or(Framing::Close, Framing::Length))
    }
}

/// How a response body is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body: a response to HEAD, a 1xx, 204 or 304.
    Empty,
    /// No HTTP body and no more HTTP: a 101, or a 2xx to CONNECT. What follows the head
    /// belongs to the other protocol ([`Reader::leftover`], then the source).
    Tunnel,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding, up to the last chunk and the trailers.
    Chunked,
    /// Everything until the server closes the connection.
    Close,
}

impl Framing {
    /// False when the response ends the HTTP connection whatever its head says: a body
    /// read to the close, or a tunnel.
    pub fn keeps_connection(self) -> bool {
        !matches!(self, Framing::Close | Framing::Tunnel)
    }
}

/// How a body read ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyEnd {
    /// As its framing says: the length reached, the last chunk and trailers read, or the
    /// close that frames it.
    Complete,
    /// The connection ended before that (`reset`: with a TCP RST, which also cuts a body
    /// framed by the close). The sink has what came.
    Cut {
        /// The connection was reset (RST) rather than closed (FIN).
        reset: bool,
    },
}

/// Whether [`Reader::head`] returns 1xx interim heads or reads past them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interim {
    /// Return the final head (101 counts as final).
    Skip,
    /// Return whatever head comes first, 100 Continue included.
    Return,
}

/// A whole response, from [`Reader::response`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The head.
    pub head: Head,
    /// How the body was delimited.
    pub framing: Framing,
    /// The body, de-chunked (what came, when it was cut).
    pub body: Vec<u8>,
    /// Trailer fields of a chunked body, names in their original case.
    pub trailers: Vec<(String, String)>,
    /// How the body ended.
    pub end: BodyEnd,
}

impl Response {
    /// True when the body ended as its framing says.
    pub fn complete(&self) -> bool {
        self.end == BodyEnd::Complete
    }

    /// True when another request may follow on the connection: the head allows it
    /// ([`Head::reusable`]), the framing does ([`Framing::keeps_connection`]), and the body
    /// was read to its end.
    pub fn reusable(&self) -> bool {
        self.complete() && self.framing.keeps_connection() && self.head.reusable()
    }
}

/// Reads responses from a [`Fill`] source into its own buffer.
#[derive(Debug)]
pub struct Reader<S> {
    source: S,
    buf: Vec<u8>,
    trailers: Vec<(String, String)>,
}

impl<S> Reader<S> {
    /// A reader with nothing buffered yet.
    pub fn new(source: S) -> Reader<S> {
        Reader::with_buffer(source, Vec::new())
    }

    /// A reader that starts with `buffered`: bytes already read from `source` (the
    /// leftover of an earlier reader).
    pub fn with_buffer(source: S, buffered: Vec<u8>) -> Reader<S> {
        Reader {
            source,
            buf: buffered,
            trailers: Vec::new(),
        }
    }

    /// Bytes read from the source but not part of anything read so far: the start of the
    /// next response, what follows a 101, or (after an error) what could not be read.
    pub fn leftover(&self) -> &[u8] {
        &self.buf
    }

    /// The source.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// The source, to write on it or read it directly (bytes in [`Reader::leftover`] came
    /// before anything read that way).
    pub fn source_mut(&mut self) -> &mut S {
        &mut self.source
    }

    /// Appends bytes the caller read from the source itself (through
    /// [`Reader::source_mut`]) after the leftover ones, so the next read parses them first.
    pub fn push_read(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The source and the leftover bytes.
    pub fn into_parts(self) -> (S, Vec<u8>) {
        (self.source, self.buf)
    }

    /// Trailer fields of the last chunked body read, names in their original case.
    pub fn trailers(&self) -> &[(String, String)] {
        &self.trailers
    }
}

impl<S: Fill> Reader<S> {
    /// Reads more bytes; [`ReadError::Closed`] at the end of the stream.
    async fn more(&mut self) -> Result<(), ReadError> {
        match self.source.fill(&mut self.buf).await? {
            0 => Err(ReadError::Closed { reset: false }),
            _ => Ok(()),
        }
    }

    /// Reads one line (up to LF, an optional CR before it dropped) of at most
    /// [`MAX_LINE`] bytes; `what` names it in the error.
    async fn line(&mut self, what: &'static str) -> Result<Vec<u8>, ReadError> {
        let mut searched = 0;
        loop {
            if let Some(i) = self.buf[searched..].iter().position(|&b| b == b'\n') {
                let end = searched + i;
                if end > MAX_LINE {
                    return Err(ReadError::LineTooLong(what));
                }
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            if self.buf.len() > MAX_LINE {
                return Err(ReadError::LineTooLong(what));
            }
            searched = self.buf.len();
            self.more().await?;
        }
    }

    /// Reads a status line alone (`HTTP/1.1 200 OK`), leaving the header fields unread:
    /// for a client that decides on the status and hangs up, as a health checker does.
    pub async fn status_line(&mut self) -> Result<StatusLine, ReadError> {
        let line = self.line("status line").await?;
        let mut head = line.clone();
        head.extend_from_slice(b"\r\n\r\n");
        let mut no_headers = [httparse::EMPTY_HEADER; 0];
        let mut parsed = httparse::Response::new(&mut no_headers);
        match parsed.parse(&head) {
            Ok(httparse::Status::Complete(_)) => Ok(StatusLine {
                version: version(parsed.version),
                status: parsed.code.unwrap_or(0),
                reason: parsed.reason.unwrap_or("").to_string(),
            }),
            _ => Err(ReadError::BadStatusLine(
                String::from_utf8_lossy(&line).into_owned(),
            )),
        }
    }

    /// Reads one response head; with [`Interim::Skip`], reads past 1xx interim heads
    /// (not 101) to the final one.
    pub async fn head(&mut self, interim: Interim) -> Result<Head, ReadError> {
        loop {
            let head = self.one_head().await?;
            if interim == Interim::Return || !head.is_interim() {
                return Ok(head);
            }
        }
    }

    async fn one_head(&mut self) -> Result<Head, ReadError> {
        loop {
            let parsed = {
                let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut parsed = httparse::Response::new(&mut slots);
                match parsed.parse(&self.buf) {
                    Ok(httparse::Status::Complete(len)) if len > MAX_HEAD => {
                        return Err(ReadError::HeadTooLarge)
                    }
                    Ok(httparse::Status::Complete(len)) => Some((
                        len,
                        Head {
                            version: version(parsed.version),
                            status: parsed.code.unwrap_or(0),
                            reason: parsed.reason.unwrap_or("").to_string(),
                            headers: parsed
                                .headers
                                .iter()
                                .map(|h| {
                                    (
                                        h.name.to_string(),
                                        String::from_utf8_lossy(h.value).into_owned(),
                                    )
                                })
                                .collect(),
                        },
                    )),
                    Ok(httparse::Status::Partial) if self.buf.len() > MAX_HEAD => {
                        return Err(ReadError::HeadTooLarge)
                    }
                    Ok(httparse::Status::Partial) => None,
                    Err(error) => {
                        return Err(ReadError::BadHead {
                            error,
                            preview: preview(&self.buf),
                        })
                    }
                }
            };
            match parsed {
                Some((len, head)) => {
                    self.buf.drain(..len);
                    return Ok(head);
                }
                None => self.more().await?,
            }
        }
    }

    /// Reads a body delimited by `framing` (from [`Head::framing`]), handing its bytes,
    /// de-chunked, to `sink` as they come. A body cut by the peer is
    /// [`BodyEnd::Cut`], not an error; errors are the source's (a timeout) or malformed
    /// framing.
    pub async fn body(
        &mut self,
        framing: Framing,
        mut sink: impl FnMut(&[u8]),
    ) -> Result<BodyEnd, ReadError> {
        self.trailers.clear();
        let read = match framing {
            Framing::Empty | Framing::Tunnel => Ok(()),
            Framing::Length(len) => self.take(len, &mut sink).await,
            Framing::Chunked => self.chunked(&mut sink).await,
            Framing::Close => loop {
                if !self.buf.is_empty() {
                    sink(&self.buf);
                    self.buf.clear();
                }
                match self.source.fill(&mut self.buf).await {
                    Ok(0) => break Ok(()),
                    Ok(_) => {}
                    Err(e) => break Err(e),
                }
            },
        };
        match read {
            Ok(()) => Ok(BodyEnd::Complete),
            Err(ReadError::Closed { reset }) => Ok(BodyEnd::Cut { reset }),
            Err(e) => Err(e),
        }
    }

    /// Passes the next `len` bytes to `sink`.
    async fn take(&mut self, mut len: u64, sink: &mut impl FnMut(&[u8])) -> Result<(), ReadError> {
        while len > 0 {
            if self.buf.is_empty() {
                self.more().await?;
            }
            let n = usize::try_from(len).map_or(self.buf.len(), |l| l.min(self.buf.len()));
            sink(&self.buf[..n]);
            self.buf.drain(..n);
            len -= n as u64;
        }
        Ok(())
    }

    /// A chunked body: chunks (extensions ignored), the last chunk, the trailers.
    async fn chunked(&mut self, sink: &mut impl FnMut(&[u8])) -> Result<(), ReadError> {
        loop {
            let line = self.line("chunk-size line").await?;
            let size = chunk_size(&line)?;
            if size == 0 {
                return self.read_trailers().await;
            }
            self.take(size, sink).await?;
            // CRLF (or a bare LF) after the data.
            loop {
                match self.buf[..] {
                    [b'\n', ..] => drop(self.buf.drain(..1)),
                    [b'\r', b'\n', ..] => drop(self.buf.drain(..2)),
                    [] | [b'\r'] => {
                        self.more().await?;
                        continue;
                    }
                    _ => return Err(ReadError::BadChunkEnd),
                }
                break;
            }
        }
    }

    /// Trailer fields up to the empty line, [`MAX_HEAD`] bytes in all.
    async fn read_trailers(&mut self) -> Result<(), ReadError> {
        let mut total = 0;
        loop {
            let line = self.line("trailer line").await?;
            if line.is_empty() {
                return Ok(());
            }
            total += line.len() + 2;
            if total > MAX_HEAD {
                return Err(ReadError::TrailersTooLarge);
            }
            let text = String::from_utf8_lossy(&line);
            let field = text
                .split_once(':')
                .filter(|(name, _)| !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic()));
            let Some((name, value)) = field else {
                return Err(ReadError::BadTrailer(clip(&text)));
            };
            self.trailers.push((
                name.to_string(),
                value.trim_matches([' ', '\t']).to_string(),
            ));
        }
    }

    /// Reads one whole response to a request with `method` (as sent): the head (see
    /// [`Reader::head`] for `interim`) and its body, kept in full. Errors are those of
    /// the head, its framing, or a body that failed other than by being cut.
    pub async fn response(
        &mut self,
        method: &str,
        interim: Interim,
    ) -> Result<Response, ReadError> {
        let head = self.head(interim).await?;
        let framing = head.framing(method)?;
        let mut body = Vec::new();
        let end = self
            .body(framing, |bytes| body.extend_from_slice(bytes))
            .await?;
        Ok(Response {
            head,
            framing,
            body,
            trailers: std::mem::take(&mut self.trailers),
            end,
        })
    }
}

fn version(minor: Option<u8>) -> http::Version {
    match minor {
        Some(0) => http::Version::HTTP_10,
        _ => http::Version::HTTP_11,
    }
}

/// The size of a chunk-size line `1*HEXDIG [ chunk-ext ]`.
fn chunk_size(line: &[u8]) -> Result<u64, ReadError> {
    let text = String::from_utf8_lossy(line);
    let size = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim_matches([' ', '\t']);
    // At most 16 hex digits: a u64 (leading zeros beyond that are not worth allowing).
    if size.is_empty() || size.len() > 16 || !size.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ReadError::BadChunkSize(clip(size)));
    }
    u64::from_str_radix(size, 16).map_err(|_| ReadError::BadChunkSize(clip(size)))
}

/// `text` cut to 60 characters for an error message.
fn clip(text: &str) -> String {
    text.chars().take(60).collect()
}

/// The start of `bytes` as printable text, in backquotes (for messages about bytes that
/// are not what was expected).
pub(crate) fn preview(bytes: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(&bytes[..bytes.len().min(60)])
        .chars()
        .map(|c| if c.is_control() { '.' } else { c })
        .collect();
    format!("`{text}`")
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    /// A source that hands out `parts` one per read (empty ones skipped), then the end
    /// of the stream, or `end` instead.
    struct Parts {
        parts: VecDeque<Vec<u8>>,
        end: Option<fn() -> ReadError>,
    }

    impl Parts {
        fn new(parts: impl IntoIterator<Item = Vec<u8>>) -> Parts {
            Parts {
                parts: parts.into_iter().filter(|p| !p.is_empty()).collect(),
                end: None,
            }
        }

        /// What was never read.
        fn unread(&self) -> Vec<u8> {
            self.parts.iter().flatten().copied().collect()
        }
    }

    impl Fill for Parts {
        async fn fill(&mut self, buf: &mut Vec<u8>) -> Result<usize, ReadError> {
            match self.parts.pop_front() {
                Some(part) => {
                    buf.extend_from_slice(&part);
                    Ok(part.len())
                }
                None => self.end.map_or(Ok(0), |end| Err(end())),
            }
        }
    }

    /// What one read of a response gave: the response (or the error's message), and the
    /// bytes not consumed (the reader's leftover, then what it never read).
    type Outcome = (Result<Response, String>, Vec<u8>);

    async fn read(parts: Vec<Vec<u8>>, method: &str, interim: Interim) -> Outcome {
        let mut reader = Reader::new(Parts::new(parts));
        let result = reader.response(method, interim).await.map_err(|e| match e {
            // The preview shows what had come when httparse saw the error: it varies.
            ReadError::BadHead { error, .. } => format!("not an HTTP/1.1 response ({error})"),
            e => e.to_string(),
        });
        let mut rest = reader.leftover().to_vec();
        rest.extend(reader.source().unread());
        (result, rest)
    }

    /// Reads `bytes` split in two at every position, and one byte per read; asserts every
    /// way gives the same outcome, and returns it.
    async fn every_split(bytes: &[u8], method: &str, interim: Interim) -> Outcome {
        let whole = read(vec![bytes.to_vec()], method, interim).await;
        for at in 1..bytes.len() {
            let split = vec![bytes[..at].to_vec(), bytes[at..].to_vec()];
            assert_eq!(
                read(split, method, interim).await,
                whole,
                "split at {at}: {:?} | {:?}",
                String::from_utf8_lossy(&bytes[..at]),
                String::from_utf8_lossy(&bytes[at..])
            );
        }
        let bytewise = bytes.iter().map(|&b| vec![b]).collect();
        assert_eq!(read(bytewise, method, interim).await, whole, "byte by byte");
        whole
    }

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[tokio::test]
    async fn content_length() {
        let bytes =
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Mixed-Case: a b\r\n\r\nhelloHTTP/1.1 204";
        let (resp, rest) = every_split(bytes, "GET", Interim::Skip).await;
        let resp = resp.unwrap();
        assert_eq!(
            resp.head,
            Head {
                version: http::Version::HTTP_11,
                status: 200,
                reason: "OK".into(),
                headers: headers(&[("Content-Length", "5"), ("X-Mixed-Case", "a b")]),
            }
        );
        assert_eq!(resp.head.header("x-mixed-case"), Some("a b"));
        assert_eq!(resp.framing, Framing::Length(5));
        assert_eq!(resp.body, b"hello");
        assert!(resp.complete() && resp.reusable());
        assert_eq!(rest, b"HTTP/1.1 204", "the next response stays unread");
    }

    #[tokio::test]
    async fn chunked_with_extensions_and_trailers() {
        let bytes = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
            5;name=value\r\nhello\r\n\
            6 ; a=\"b;c\" ; d\r\n world\r\n\
            A\r\n0123456789\r\n\
            0;last\r\nX-Checksum: abc\r\nServer-Timing: db;dur=53\r\n\r\nnext";
        let (resp, rest) = every_split(bytes, "GET", Interim::Skip).await;
        let resp = resp.unwrap();
        assert_eq!(resp.framing, Framing::Chunked);
        assert_eq!(resp.body, b"hello world0123456789");
        assert_eq!(
            resp.trailers,
            headers(&[("X-Checksum", "abc"), ("Server-Timing", "db;dur=53")])
        );
        assert!(resp.complete() && resp.reusable());
        assert_eq!(rest, b"next");
    }

    #[tokio::test]
    async fn chunked_with_bare_line_feeds() {
        let bytes = b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n3\nabc\n0\n\n";
        let (resp, rest) = every_split(bytes, "GET", Interim::Skip).await;
        assert_eq!(resp.unwrap().body, b"abc");
        assert!(rest.is_empty());
    }

    #[tokio::test]
    async fn http10_framed_by_the_close() {
        let bytes = b"HTTP/1.0 200 OK\r\nServer: old\r\n\r\nall of it\r\nuntil the end";
        let (resp, rest) = every_split(bytes, "GET", Interim::Skip).await;
        let resp = resp.unwrap();
        assert_eq!(resp.head.version, http::Version::HTTP_10);
        assert_eq!(resp.framing, Framing::Close);
        assert_eq!(resp.body, b"all of it\r\nuntil the end");
        assert!(resp.complete());
        assert!(!resp.head.reusable(), "HTTP/1.0 without keep-alive");
        assert!(!resp.reusable());
        assert!(rest.is_empty());
    }

    #[tokio::test]
    async fn http10_keep_alive() {
        let bytes = b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok";
        let resp = every_split(bytes, "GET", Interim::Skip).await.0.unwrap();
        assert!(resp.head.reusable() && resp.reusable());
    }

    #[tokio::test]
    async fn interim_heads_then_the_final_one() {
        let bytes = b"HTTP/1.1 100 Continue\r\n\r\n\
            HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n\
            HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let (resp, rest) = every_split(bytes, "POST", Interim::Skip).await;
        let resp = resp.unwrap();
        assert_eq!((resp.head.status, resp.body.as_slice()), (200, &b"ok"[..]));
        assert!(rest.is_empty());

        // Returned one at a time, each without a body.
        let (resp, rest) = every_split(bytes, "POST", Interim::Return).await;
        let resp = resp.unwrap();
        assert_eq!((resp.head.status, resp.framing), (100, Framing::Empty));
        assert!(resp.complete());
        assert!(rest.starts_with(b"HTTP/1.1 103 Early Hints\r\n"));
    }

    #[tokio::test]
    async fn head_request_with_content_length() {
        let bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\nHTTP/1.1 200 OK\r\n";
        let (resp, rest) = every_split(bytes, "HEAD", Interim::Skip).await;
        let resp = resp.unwrap();
        assert_eq!(resp.framing, Framing::Empty);
        assert!(resp.body.is_empty() && resp.complete() && resp.reusable());
        assert_eq!(rest, b"HTTP/1.1 200 OK\r\n");
    }

    #[tokio::test]
    async fn no_content_has_no_body_whatever_its_headers_say() {
        let bytes = b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello";
        let (resp, rest) = every_split(bytes, "DELETE", Interim::Skip).await;
        let resp = resp.unwrap();
        assert_eq!((resp.head.status, resp.framing), (204, Framing::Empty));
        assert!(resp.body.is_empty() && resp.complete());
        assert_eq!(rest, b"hello");
    }

    #[tokio::test]
    async fn switching_protocols_ends_the_exchange() {
        let bytes = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x02hi";
        let (resp, rest) = every_split(bytes, "GET", Interim::Skip).await;
        let resp = resp.unwrap();
        assert_eq!((resp.head.status, resp.framing), (101, Framing::Tunnel));
        assert!(!resp.reusable(), "no more HTTP on this connection");
        assert_eq!(rest, b"\x81\x02hi");
    }

    #[tokio::test]
    async fn transfer_encoding_overrides_content_length() {
        let bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: Chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";
        let resp = every_split(bytes, "GET", Interim::Skip).await.0.unwrap();
        assert_eq!(
            (resp.framing, resp.body.as_slice()),
            (Framing::Chunked, &b"ok"[..])
        );

        // The last coding not chunked: read to the close.
        let bytes = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nzipped";
        let resp = every_split(bytes, "GET", Interim::Skip).await.0.unwrap();
        assert_eq!(
            (resp.framing, resp.body.as_slice()),
            (Framing::Close, &b"zipped"[..])
        );
    }

    #[tokio::test]
    async fn repeated_equal_content_lengths_are_one() {
        let bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\ncontent-length: 2\r\n\r\nok";
        let resp = every_split(bytes, "GET", Interim::Skip).await.0.unwrap();
        assert_eq!(
            (resp.framing, resp.body.as_slice()),
            (Framing::Length(2), &b"ok"[..])
        );
    }

    #[test]
    fn reusable_follows_the_connection_header_and_version() {
        let head = |version, connection: &[&str]| Head {
            version,
            status: 200,
            reason: "OK".into(),
            headers: connection
                .iter()
                .map(|v| ("Connection".to_string(), v.to_string()))
                .collect(),
        };
        use http::Version as V;
        assert!(head(V::HTTP_11, &[]).reusable());
        assert!(!head(V::HTTP_11, &["close"]).reusable());
        assert!(!head(V::HTTP_11, &["Upgrade, Close"]).reusable());
        assert!(!head(V::HTTP_11, &["keep-alive", "close"]).reusable());
        assert!(!head(V::HTTP_10, &[]).reusable());
        assert!(head(V::HTTP_10, &["KEEP-ALIVE"]).reusable());
        assert!(!head(V::HTTP_10, &["keep-alive, close"]).reusable());
    }

    #[tokio::test]
    async fn cut_bodies_are_incomplete_not_errors() {
        let bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf";
        let resp = every_split(bytes, "GET", Interim::Skip).await.0.unwrap();
        assert_eq!(resp.end, BodyEnd::Cut { reset: false });
        assert_eq!(resp.body, b"half");
        assert!(!resp.complete() && !resp.reusable());

        let bytes = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel";
        let resp = every_split(bytes, "GET", Interim::Skip).await.0.unwrap();
        assert_eq!(
            (resp.end, resp.body.as_slice()),
            (BodyEnd::Cut { reset: false }, &b"hel"[..])
        );

        // Before the trailers end.
        let bytes =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX: y\r\n";
        let resp = every_split(bytes, "GET", Interim::Skip).await.0.unwrap();
        assert_eq!(resp.end, BodyEnd::Cut { reset: false });
    }

    #[tokio::test]
    async fn a_reset_cuts_even_a_body_framed_by_the_close() {
        let mut source = Parts::new([b"HTTP/1.0 200 OK\r\n\r\npartial".to_vec()]);
        source.end = Some(|| ReadError::Closed { reset: true });
        let resp = Reader::new(source)
            .response("GET", Interim::Skip)
            .await
            .unwrap();
        assert_eq!(resp.end, BodyEnd::Cut { reset: true });
        assert_eq!(resp.body, b"partial");
    }

    #[tokio::test]
    async fn the_sources_timeout_is_an_error() {
        let mut source = Parts::new([b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nsome".to_vec()]);
        source.end = Some(|| ReadError::TimedOut);
        let mut reader = Reader::new(source);
        let head = reader.head(Interim::Skip).await.unwrap();
        let mut seen = Vec::new();
        let result = reader
            .body(head.framing("GET").unwrap(), |b| seen.extend_from_slice(b))
            .await;
        assert!(matches!(result, Err(ReadError::TimedOut)), "{result:?}");
        assert_eq!(seen, b"some", "the sink has what came");
    }

    #[tokio::test]
    async fn closed_before_a_complete_head() {
        let (resp, rest) = every_split(b"HTTP/1.1 200 OK\r\nConte", "GET", Interim::Skip).await;
        assert_eq!(
            resp.unwrap_err(),
            "connection closed before the response was complete"
        );
        assert_eq!(rest, b"HTTP/1.1 200 OK\r\nConte", "kept for a look");
        let (resp, _) = read(vec![], "GET", Interim::Skip).await;
        assert!(resp.is_err());
    }

    /// The error message for `bytes`, the same at every split.
    async fn malformed(bytes: &[u8]) -> String {
        every_split(bytes, "GET", Interim::Skip)
            .await
            .0
            .unwrap_err()
    }

    #[tokio::test]
    async fn malformed_responses() {
        assert_eq!(
            malformed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").await,
            "invalid chunk size `zz`"
        );
        assert_eq!(
            malformed(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n"
            )
            .await,
            "invalid chunk size `+5`"
        );
        assert_eq!(
            malformed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokX\r\n").await,
            "chunk not followed by CRLF"
        );
        assert_eq!(
            malformed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!")
                .await,
            "conflicting Content-Length values `5, 6`"
        );
        assert_eq!(
            malformed(b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello!").await,
            "conflicting Content-Length values `5, 6`"
        );
        assert_eq!(
            malformed(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n").await,
            "invalid Content-Length `-1`"
        );
        assert_eq!(
            malformed(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nno colon\r\n\r\n"
            )
            .await,
            "invalid trailer line `no colon`"
        );
        assert_eq!(
            malformed(b"SSH-2.0-OpenSSH_9.6\r\n").await,
            "not an HTTP/1.1 response (invalid HTTP version)"
        );
        let mut reader = Reader::new(Parts::new([b"SSH-2.0-OpenSSH_9.6\r\n".to_vec()]));
        assert_eq!(
            reader.head(Interim::Skip).await.unwrap_err().to_string(),
            "not an HTTP/1.1 response (invalid HTTP version): `SSH-2.0-OpenSSH_9.6..`"
        );
    }

    #[tokio::test]
    async fn limits() {
        // A head that never ends: over MAX_HEAD, whether it arrives at once or in parts.
        let mut big = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
        big.resize(MAX_HEAD + 10, b'a');
        for parts in [
            vec![big.clone()],
            big.chunks(1000).map(<[u8]>::to_vec).collect(),
        ] {
            let (resp, _) = read(parts, "GET", Interim::Skip).await;
            assert_eq!(resp.unwrap_err(), "response head over 64 KiB");
        }
        // A complete head that is too large.
        let mut complete = big.clone();
        complete.extend_from_slice(b"\r\n\r\n");
        let (resp, _) = read(vec![complete], "GET", Interim::Skip).await;
        assert_eq!(resp.unwrap_err(), "response head over 64 KiB");

        let mut chunk_line = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;".to_vec();
        chunk_line.resize(chunk_line.len() + MAX_LINE + 10, b'x');
        let (resp, _) = read(vec![chunk_line], "GET", Interim::Skip).await;
        assert_eq!(resp.unwrap_err(), "chunk-size line over 8 KiB");
    }

    #[tokio::test]
    async fn status_line_alone() {
        for bytes in [
            &b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"[..],
            b"HTTP/1.1 503\r\n",
        ] {
            let mut reader = Reader::new(Parts::new(bytes.iter().map(|&b| vec![b])));
            let line = reader.status_line().await.unwrap();
            assert_eq!((line.version, line.status), (http::Version::HTTP_11, 503));
        }
        let mut reader = Reader::new(Parts::new([b"SSH-2.0-OpenSSH\r\n".to_vec()]));
        assert_eq!(
            reader.status_line().await.unwrap_err().to_string(),
            "not an HTTP status line: \"SSH-2.0-OpenSSH\""
        );
        let mut reader = Reader::new(Parts::new([vec![b'H'; MAX_LINE + 1]]));
        assert_eq!(
            reader.status_line().await.unwrap_err().to_string(),
            "status line over 8 KiB"
        );
    }

    #[tokio::test]
    async fn any_async_read_is_a_source() {
        let bytes: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let mut reader = Reader::new(bytes);
        let resp = reader.response("GET", Interim::Skip).await.unwrap();
        assert_eq!(resp.body, b"ok");
    }
}
