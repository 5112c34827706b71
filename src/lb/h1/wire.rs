//! HTTP/1.1 on the wire, without I/O: request and response heads parsed once into the
//! `http` types the engine works on (with the names' case as received), heads written
//! back with the profile's case, and bodies framed and unframed.
//!
//! Everything here works on byte slices and buffers, so each piece is unit-tested with
//! its input split at every position.

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{Method, Request, Response, StatusCode, Uri, Version};

use crate::lb::chunked::{ChunkedScanner, Scan};

/// Most header fields in one head: hyper's default, which the clouds' limits sit under.
const MAX_HEADERS: usize = 100;

/// Fields a load balancer adds to a message, at most (`X-Forwarded-*`, trace ids, `Via`,
/// `Date`, its diagnostic header).
const LB_FIELDS: usize = 8;

/// Largest trailer section kept from a chunked body; a longer one is refused.
const MAX_TRAILERS: usize = 16 * 1024;

/// The header names of a message as they arrived, for writing them back in the same
/// case (the `HeaderMap` keeps them lower-cased): the received head (shared, not
/// copied) and where each field's name lies in it, in order.
#[derive(Clone, Debug, Default)]
pub(crate) struct RawCase {
    head: Bytes,
    names: Vec<(u32, u16)>,
}

impl RawCase {
    /// The name of the `index`-th received field, as it was written.
    fn at(&self, index: usize) -> Option<&[u8]> {
        let &(at, len) = self.names.get(index)?;
        Some(&self.head[at as usize..at as usize + len as usize])
    }

    /// The `nth` received field named `name` (any case), as it was written.
    fn nth(&self, name: &HeaderName, nth: usize) -> Option<&[u8]> {
        let wanted = name.as_str().as_bytes();
        self.names
            .iter()
            // The length first: most names differ in it, and it costs no byte compare.
            .filter(|&&(_, len)| len as usize == wanted.len())
            .map(|&(at, len)| &self.head[at as usize..at as usize + len as usize])
            .filter(|raw| raw.eq_ignore_ascii_case(wanted))
            .nth(nth)
    }
}

/// How header names are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameCase {
    /// As received where known ([`RawCase`]), the LB's own in Title-Case (ALB, nginx,
    /// Google's classic GFE).
    Preserve,
    /// Lower-case, as Envoy writes them (Google's global external generation).
    Lower,
}

/// Why a head could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    /// What httparse (or the `http` types) refused.
    #[error("{0}")]
    Invalid(String),
}

fn invalid(what: impl std::fmt::Display) -> HeadError {
    HeadError::Invalid(what.to_string())
}

/// Where a field's name and value lie in the head.
#[derive(Clone, Copy, Debug, Default)]
struct Field {
    name: (u32, u16),
    value: (u32, u32),
}

/// Where the parts of a request head lie, as the client-side gate's parse found them:
/// the session builds the request from these offsets instead of parsing the head again
/// (one parse per head). Its buffer is kept for the connection's life.
#[derive(Debug, Default)]
pub(crate) struct Located {
    head_len: usize,
    method: (u32, u16),
    path: (u32, u32),
    http10: bool,
    fields: Vec<Field>,
}

impl Located {
    /// Records the parse of the head `buf[..head_len]` that httparse made in `req`.
    pub(crate) fn record(&mut self, buf: &[u8], req: &httparse::Request<'_, '_>, head_len: usize) {
        let (Some(method), Some(path)) = (req.method, req.path) else {
            self.head_len = 0;
            return;
        };
        self.head_len = head_len;
        self.method = (offset(buf, method.as_bytes()), method.len() as u16);
        self.path = (offset(buf, path.as_bytes()), path.len() as u32);
        self.http10 = req.version == Some(0);
        self.fields.clear();
        self.fields.extend(req.headers.iter().map(|field| Field {
            name: (offset(buf, field.name.as_bytes()), field.name.len() as u16),
            value: (offset(buf, field.value), field.value.len() as u32),
        }));
    }

    /// The head's length, when it was recorded.
    pub(crate) fn head_len(&self) -> Option<usize> {
        (self.head_len > 0).then_some(self.head_len)
    }
}

/// Takes the head that `located` describes off the front of `buf` (which must start
/// with it) and builds its request without parsing it again.
pub(crate) fn request_from(
    buf: &mut BytesMut,
    located: &Located,
    preserve: bool,
) -> Result<(http::request::Parts, usize), HeadError> {
    let len = located.head_len;
    if len == 0 || buf.len() < len || buf[len - 1] != b'\n' {
        return Err(invalid("the gate's parse does not match the head"));
    }
    let head = buf.split_to(len).freeze();
    let (at, n) = (located.method.0 as usize, located.method.1 as usize);
    let method = Method::from_bytes(&head[at..at + n]).map_err(invalid)?;
    let (at, n) = (located.path.0 as usize, located.path.1 as usize);
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method = method;
    parts.uri = Uri::from_maybe_shared(head.slice(at..at + n)).map_err(invalid)?;
    parts.version = if located.http10 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let (headers, case) = fields(&head, &located.fields, preserve)?;
    parts.headers = headers;
    if let Some(case) = case {
        parts.extensions.insert(case);
    }
    Ok((parts, len))
}

/// Offset of `part` (a slice of `base`) in `base`.
fn offset(base: &[u8], part: &[u8]) -> u32 {
    (part.as_ptr() as usize - base.as_ptr() as usize) as u32
}

/// Records where httparse found each field, so that the head can be taken out of the
/// read buffer and the values shared with it, not copied.
fn locate(base: &[u8], found: &[httparse::Header<'_>], out: &mut [Field; MAX_HEADERS]) -> usize {
    for (slot, field) in out.iter_mut().zip(found) {
        *slot = Field {
            name: (offset(base, field.name.as_bytes()), field.name.len() as u16),
            value: (offset(base, field.value), field.value.len() as u32),
        };
    }
    found.len()
}

/// Builds the `HeaderMap` (and the names' case, when `preserve`) from the taken head.
fn fields(
    head: &Bytes,
    located: &[Field],
    preserve: bool,
) -> Result<(HeaderMap, Option<RawCase>), HeadError> {
    // Room for the fields the LB adds (forwarding headers, `Via`, `Date`): growing the
    // map re-hashes every field.
    let mut headers = HeaderMap::with_capacity(located.len() + LB_FIELDS);
    for field in located {
        let (at, len) = (field.name.0 as usize, field.name.1 as usize);
        let name = HeaderName::from_bytes(&head[at..at + len]).map_err(invalid)?;
        let (at, len) = (field.value.0 as usize, field.value.1 as usize);
        let value = HeaderValue::from_maybe_shared(head.slice(at..at + len)).map_err(invalid)?;
        headers.append(name, value);
    }
    let case = preserve.then(|| RawCase {
        head: head.clone(),
        names: located.iter().map(|f| f.name).collect(),
    });
    Ok((headers, case))
}

/// Takes a complete request head off the front of `buf`: its parts (the names' case in
/// the extensions when `preserve`) and its length in bytes; `None` while the head is
/// incomplete (nothing is taken then). Header values share the head's bytes.
pub fn parse_request(
    buf: &mut BytesMut,
    preserve: bool,
) -> Result<Option<(http::request::Parts, usize)>, HeadError> {
    let mut slots = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut located = [Field::default(); MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(invalid(e)),
    };
    let count = locate(buf, req.headers, &mut located);
    let method = Method::from_bytes(req.method.unwrap_or("").as_bytes()).map_err(invalid)?;
    let path = req.path.unwrap_or("");
    let path_at = offset(buf, path.as_bytes()) as usize;
    let path_range = path_at..path_at + path.len();
    let version = if req.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let head = buf.split_to(len).freeze();
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method = method;
    parts.uri = Uri::from_maybe_shared(head.slice(path_range)).map_err(invalid)?;
    parts.version = version;
    let (headers, case) = fields(&head, &located[..count], preserve)?;
    parts.headers = headers;
    if let Some(case) = case {
        parts.extensions.insert(case);
    }
    Ok(Some((parts, len)))
}

/// A response head taken from a target: status, headers (case kept when asked), and a
/// reason phrase other than the status's usual one.
pub struct ResponseHead {
    /// Status, version, headers; the reason phrase and names' case in the extensions.
    pub parts: http::response::Parts,
}

/// Fields most responses fit in; a head with more is parsed again with room for
/// [`MAX_HEADERS`] (httparse has no uninitialised variant for responses, and filling
/// a hundred slots for every response costs more than the parse).
const USUAL_RESPONSE_HEADERS: usize = 24;

/// Takes a complete response head off the front of `buf`; `None` while it is
/// incomplete (nothing is taken then).
pub fn parse_response(
    buf: &mut BytesMut,
    preserve: bool,
) -> Result<Option<ResponseHead>, HeadError> {
    let mut few = [httparse::EMPTY_HEADER; USUAL_RESPONSE_HEADERS];
    let mut many;
    let mut resp = httparse::Response::new(&mut few);
    let mut parsed = resp.parse(buf);
    if matches!(parsed, Err(httparse::Error::TooManyHeaders)) {
        many = [httparse::EMPTY_HEADER; MAX_HEADERS];
        resp = httparse::Response::new(&mut many);
        parsed = resp.parse(buf);
    }
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(invalid(e)),
    };
    let mut located = [Field::default(); MAX_HEADERS];
    let count = locate(buf, resp.headers, &mut located);
    let status = StatusCode::from_u16(resp.code.unwrap_or(0)).map_err(invalid)?;
    let version = if resp.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    // Sent on as the target wrote it, as hyper's client and server do.
    let phrase = resp
        .reason
        .filter(|reason| status.canonical_reason() != Some(*reason))
        .and_then(|reason| {
            hyper::ext::ReasonPhrase::try_from(Bytes::copy_from_slice(reason.as_bytes())).ok()
        });
    let head = buf.split_to(len).freeze();
    let (mut parts, ()) = Response::new(()).into_parts();
    parts.status = status;
    parts.version = version;
    if let Some(phrase) = phrase {
        parts.extensions.insert(phrase);
    }
    let (headers, case) = fields(&head, &located[..count], preserve)?;
    parts.headers = headers;
    if let Some(case) = case {
        parts.extensions.insert(case);
    }
    Ok(Some(ResponseHead { parts }))
}

/// Writes `name` as `case` says: as received when the case is kept and known (`raw`),
/// else in Title-Case (or lower-case).
fn write_name(out: &mut Vec<u8>, name: &HeaderName, case: NameCase, raw: Option<&[u8]>) {
    match (case, raw) {
        (NameCase::Lower, _) => out.extend_from_slice(name.as_str().as_bytes()),
        (NameCase::Preserve, Some(raw)) => out.extend_from_slice(raw),
        (NameCase::Preserve, None) => {
            let start = out.len();
            out.extend_from_slice(name.as_str().as_bytes());
            let mut upper = true;
            for b in &mut out[start..] {
                if upper {
                    b.make_ascii_uppercase();
                }
                upper = *b == b'-';
            }
        }
    }
}

/// Writes the field lines of `headers` and the empty line that ends the head.
fn write_fields(out: &mut Vec<u8>, headers: &HeaderMap, case: NameCase, raw: Option<&RawCase>) {
    // Room for the usual head at once: the lines are short and many.
    out.reserve(headers.len() * 32 + 2);
    // The fields of one name come together: count them to find each one's case.
    let mut previous: Option<&HeaderName> = None;
    let mut nth = 0;
    // The map keeps the received fields in their order (a name's repeats grouped, the
    // LB's own after them): most fields are the next received one, found without a
    // search.
    let mut next_raw = 0;
    for (name, value) in headers {
        let original = match (case, raw) {
            (NameCase::Preserve, Some(raw)) => {
                if previous == Some(name) {
                    nth += 1;
                } else {
                    previous = Some(name);
                    nth = 0;
                }
                match raw
                    .at(next_raw)
                    .filter(|r| r.eq_ignore_ascii_case(name.as_str().as_bytes()))
                {
                    Some(found) if nth == 0 || raw.nth(name, nth) == Some(found) => {
                        next_raw += 1;
                        Some(found)
                    }
                    _ => raw.nth(name, nth),
                }
            }
            _ => None,
        };
        write_name(out, name, case, original);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes a request head for a target: origin-form target, HTTP/1.1.
pub fn write_request_head(out: &mut Vec<u8>, parts: &http::request::Parts, case: NameCase) {
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    // Origin-form: the path (`/` when empty, RFC 9110 §4.2.3) and the query. Taken
    // apart, since `http://h?q` has the path-and-query `?q` (found by fuzzing).
    let path = parts.uri.path();
    out.extend_from_slice(if path.is_empty() {
        b"/"
    } else {
        path.as_bytes()
    });
    if let Some(query) = parts.uri.query() {
        out.push(b'?');
        out.extend_from_slice(query.as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    write_fields(out, &parts.headers, case, parts.extensions.get::<RawCase>());
}

/// Writes a response head for a client (`HTTP/1.0` to a client that spoke it, as
/// hyper's server does): the reason phrase from the extensions when one was kept (an
/// LB page's, or the target's own), else the status's usual one.
pub fn write_response_head(out: &mut Vec<u8>, parts: &http::response::Parts, case: NameCase) {
    out.extend_from_slice(if parts.version == Version::HTTP_10 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    match parts.extensions.get::<hyper::ext::ReasonPhrase>() {
        Some(phrase) => out.extend_from_slice(phrase.as_bytes()),
        None => out.extend_from_slice(
            parts
                .status
                .canonical_reason()
                .unwrap_or("<none>")
                .as_bytes(),
        ),
    }
    out.extend_from_slice(b"\r\n");
    write_fields(out, &parts.headers, case, parts.extensions.get::<RawCase>());
}

/// How a message's body is delimited (RFC 9112 §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the connection closes (responses only).
    UntilClose,
}

/// True when the last transfer coding of `headers` is chunked.
fn chunked_last(headers: &HeaderMap) -> Option<bool> {
    let mut last = None;
    for value in headers.get_all(TRANSFER_ENCODING) {
        let text = value.to_str().ok()?;
        if let Some(coding) = text.rsplit(',').map(str::trim).find(|c| !c.is_empty()) {
            last = Some(coding.eq_ignore_ascii_case("chunked"));
        }
    }
    last
}

/// True when a message's `Transfer-Encoding` ends with `chunked`.
pub(crate) fn is_chunked(headers: &HeaderMap) -> bool {
    chunked_last(headers) == Some(true)
}

/// The Content-Length of `headers`: `Err` when values disagree or are not numbers.
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, HeadError> {
    let mut found = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        for part in value.to_str().map_err(invalid)?.split(',') {
            let n: u64 = part
                .trim()
                .parse()
                .map_err(|_| invalid(format_args!("invalid Content-Length {part:?}")))?;
            if found.is_some_and(|f| f != n) {
                return Err(invalid("conflicting Content-Length values"));
            }
            found = Some(n);
        }
    }
    Ok(found)
}

/// The framing of a request body (the gate has refused what it cannot follow).
pub fn request_framing(headers: &HeaderMap) -> Result<Framing, HeadError> {
    match chunked_last(headers) {
        Some(true) => return Ok(Framing::Chunked),
        Some(false) => return Err(invalid("a transfer coding other than chunked")),
        None => {}
    }
    Ok(match content_length(headers)? {
        Some(0) | None => Framing::Empty,
        Some(n) => Framing::Length(n),
    })
}

/// The framing of a response to a request made with `method` (RFC 9112 §6.3).
pub fn response_framing(
    method: &Method,
    status: StatusCode,
    headers: &HeaderMap,
) -> Result<Framing, HeadError> {
    if method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(Framing::Empty);
    }
    match chunked_last(headers) {
        Some(true) => return Ok(Framing::Chunked),
        Some(false) => return Ok(Framing::UntilClose),
        None => {}
    }
    Ok(match content_length(headers)? {
        Some(0) => Framing::Empty,
        Some(n) => Framing::Length(n),
        None => Framing::UntilClose,
    })
}

/// What the next bytes of a chunked body gave.
#[derive(Debug)]
pub enum Decoded {
    /// Body bytes.
    Data(Bytes),
    /// The body ended with these trailer fields.
    Trailers(HeaderMap),
    /// The body ended.
    End,
    /// More bytes are needed.
    NeedMore,
    /// Not chunked framing.
    Invalid(String),
}

/// Unframes a chunked body. The framing is read by [`ChunkedScanner`] (the rules of
/// hyper's decoder, fuzzed against hyper), so the decoder and the client-side gate can
/// never disagree on where a body ends; the data between is handed on without copying.
#[derive(Debug, Default)]
pub struct ChunkedDecoder {
    scanner: ChunkedScanner,
    /// The trailer section's bytes, gathered until the body's end.
    trailers: Vec<u8>,
}

impl ChunkedDecoder {
    /// Takes what it can from the front of `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Decoded {
        loop {
            if buf.is_empty() {
                return Decoded::NeedMore;
            }
            if let Some(left) = self.scanner.data_left() {
                let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                // Inside a chunk's data the scanner only counts.
                let _ = self.scanner.scan(&buf[..n]);
                return Decoded::Data(buf.split_to(n).freeze());
            }
            let in_trailers = self.scanner.in_trailers();
            let byte = buf[0];
            match self.scanner.scan(&buf[..1]) {
                Scan::Body => {
                    if in_trailers {
                        if self.trailers.len() >= MAX_TRAILERS {
                            return Decoded::Invalid("trailer section too large".into());
                        }
                        self.trailers.push(byte);
                    }
                    buf.advance(1);
                }
                Scan::End(_) => {
                    buf.advance(1);
                    // Only the CR of the empty line: no trailer fields.
                    if self.trailers.len() <= 1 {
                        return Decoded::End;
                    }
                    self.trailers.extend_from_slice(b"\n");
                    return match parse_trailers(&self.trailers) {
                        Ok(map) => Decoded::Trailers(map),
                        Err(e) => Decoded::Invalid(e),
                    };
                }
                Scan::Invalid => return Decoded::Invalid("invalid chunked framing".into()),
            }
        }
    }
}

/// Where a body is, read by its framing: the one state machine both bodies use (a
/// request's from the client, a response's from the target), fed whatever the socket gave.
#[derive(Debug)]
pub(crate) enum BodyState {
    /// This many bytes left.
    Length(u64),
    /// Chunked: the decoder's state.
    Chunked(ChunkedDecoder),
    /// Until the sender closes (responses only).
    UntilClose,
    /// Ended.
    Done,
}

/// What the next bytes of a body gave ([`BodyState::take`]).
#[derive(Debug)]
pub(crate) enum Unframed {
    /// Body bytes (the body may have ended with them: [`BodyState::is_done`]).
    Data(Bytes),
    /// The body ended with these trailer fields.
    Trailers(HeaderMap),
    /// The body ended.
    End,
    /// More bytes are needed.
    NeedMore,
    /// The framing is broken.
    Invalid(String),
}

impl BodyState {
    /// The state at the start of a body framed as `framing`.
    pub(crate) fn new(framing: Framing) -> BodyState {
        match framing {
            Framing::Empty => BodyState::Done,
            Framing::Length(n) => BodyState::Length(n),
            Framing::Chunked => BodyState::Chunked(ChunkedDecoder::default()),
            Framing::UntilClose => BodyState::UntilClose,
        }
    }

    /// True once the body has ended.
    pub(crate) fn is_done(&self) -> bool {
        matches!(self, BodyState::Done)
    }

    /// Takes what belongs to the body from the front of `buf` (the rest stays: the next
    /// message).
    pub(crate) fn take(&mut self, buf: &mut BytesMut) -> Unframed {
        let unframed = match self {
            BodyState::Done => Unframed::End,
            BodyState::Length(left) => {
                if buf.is_empty() {
                    return Unframed::NeedMore;
                }
                let n = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                *left -= n as u64;
                if *left == 0 {
                    *self = BodyState::Done;
                }
                return Unframed::Data(buf.split_to(n).freeze());
            }
            BodyState::Chunked(decoder) => match decoder.decode(buf) {
                Decoded::Data(data) => return Unframed::Data(data),
                Decoded::Trailers(trailers) => Unframed::Trailers(trailers),
                Decoded::End => Unframed::End,
                Decoded::NeedMore => return Unframed::NeedMore,
                Decoded::Invalid(e) => {
                    return Unframed::Invalid(format!("invalid chunked body: {e}"))
                }
            },
            BodyState::UntilClose => {
                if buf.is_empty() {
                    return Unframed::NeedMore;
                }
                return Unframed::Data(buf.split().freeze());
            }
        };
        *self = BodyState::Done;
        unframed
    }

    /// The sender closed the connection: the end of a body read until then, a cut
    /// otherwise.
    pub(crate) fn at_close(&mut self) -> Unframed {
        match self {
            BodyState::UntilClose | BodyState::Done => {
                *self = BodyState::Done;
                Unframed::End
            }
            _ => Unframed::Invalid("the connection closed before the body ended".into()),
        }
    }

    /// What is known of the length left.
    pub(crate) fn size_hint(&self) -> http_body::SizeHint {
        match self {
            BodyState::Done => http_body::SizeHint::with_exact(0),
            BodyState::Length(n) => http_body::SizeHint::with_exact(*n),
            _ => http_body::SizeHint::default(),
        }
    }
}

/// The fields of a trailer section (its lines and the CR of the empty line).
fn parse_trailers(section: &[u8]) -> Result<HeaderMap, String> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match httparse::parse_headers(section, &mut slots) {
        Ok(httparse::Status::Complete((_, found))) => {
            let mut map = HeaderMap::with_capacity(found.len());
            for field in found {
                let name =
                    HeaderName::from_bytes(field.name.as_bytes()).map_err(|e| e.to_string())?;
                let value = HeaderValue::from_bytes(field.value).map_err(|e| e.to_string())?;
                map.append(name, value);
            }
            Ok(map)
        }
        Ok(httparse::Status::Partial) => Err("incomplete trailer section".into()),
        Err(e) => Err(format!("trailers: {e}")),
    }
}

/// The framing line before a chunk of `len` bytes.
pub(crate) fn chunk_size_line(len: usize) -> Bytes {
    Bytes::from(format!("{len:X}\r\n"))
}

/// The end of a chunked body, with the `trailers` a client may receive.
pub(crate) fn chunked_end(trailers: Option<&HeaderMap>, case: NameCase) -> Bytes {
    match trailers {
        Some(map) if !map.is_empty() => {
            let mut out = b"0\r\n".to_vec();
            write_fields(&mut out, map, case, None);
            Bytes::from(out)
        }
        _ => Bytes::from_static(b"0\r\n\r\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_head_split_at_every_position_parses_once_complete() {
        let head =
            b"POST /a?b=c HTTP/1.1\r\nHost: x\r\nX-Mixed-Case: 1\r\ncontent-length: 3\r\n\r\nabc";
        let end = head.len() - 3;
        for cut in 0..end {
            let mut partial = BytesMut::from(&head[..cut]);
            assert!(
                parse_request(&mut partial, true).unwrap().is_none(),
                "cut {cut}"
            );
            assert_eq!(partial.len(), cut, "nothing taken");
        }
        let mut buf = BytesMut::from(&head[..]);
        let (parts, len) = parse_request(&mut buf, true).unwrap().unwrap();
        assert_eq!(len, end);
        assert_eq!(&buf[..], b"abc", "the body stays");
        assert_eq!(parts.method, Method::POST);
        assert_eq!(parts.uri, "/a?b=c");
        assert_eq!(parts.headers["x-mixed-case"], "1");
        assert_eq!(request_framing(&parts.headers).unwrap(), Framing::Length(3));
        let mut out = Vec::new();
        write_request_head(&mut out, &parts, NameCase::Preserve);
        assert_eq!(out, &head[..end], "names written back as received");
    }

    #[test]
    fn a_head_located_by_the_gate_builds_the_same_request_as_a_parse() {
        let head = b"\r\nPOST /a?b HTTP/1.0\r\nHost: x\r\nX-Two: 1\r\nx-two: 2\r\n\r\nbody";
        let mut slots = [httparse::EMPTY_HEADER; 8];
        let mut req = httparse::Request::new(&mut slots);
        let Ok(httparse::Status::Complete(len)) = req.parse(head) else {
            panic!("parses")
        };
        let mut located = Located::default();
        located.record(head, &req, len);
        let (from_gate, n) = request_from(&mut BytesMut::from(&head[..]), &located, true).unwrap();
        let (parsed, m) = parse_request(&mut BytesMut::from(&head[..]), true)
            .unwrap()
            .unwrap();
        assert_eq!((n, m), (len, len));
        assert_eq!(from_gate.method, parsed.method);
        assert_eq!(from_gate.uri, parsed.uri);
        assert_eq!(from_gate.version, Version::HTTP_10);
        assert_eq!(from_gate.headers, parsed.headers);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        write_request_head(&mut a, &from_gate, NameCase::Preserve);
        write_request_head(&mut b, &parsed, NameCase::Preserve);
        assert_eq!(a, b, "the names' case kept alike");
        // A buffer that does not hold the head the gate saw is refused, not misread.
        assert!(request_from(&mut BytesMut::from(&head[..len - 1]), &located, true).is_err());
    }

    /// Regression (fuzzing): an absolute-form target with a query and no path was sent
    /// on as `GET ?q`, a request line every server refuses.
    #[test]
    fn an_absolute_target_without_a_path_goes_out_as_slash_and_its_query() {
        for (target, sent) in [
            ("http://h?q=1", "GET /?q=1 HTTP/1.1\r\n"),
            ("http://h", "GET / HTTP/1.1\r\n"),
            ("http://h/a/b?c", "GET /a/b?c HTTP/1.1\r\n"),
            ("/x?", "GET /x? HTTP/1.1\r\n"),
        ] {
            let mut buf = BytesMut::from(format!("GET {target} HTTP/1.1\r\n\r\n").as_bytes());
            let (parts, _) = parse_request(&mut buf, true).unwrap().unwrap();
            let mut out = Vec::new();
            write_request_head(&mut out, &parts, NameCase::Preserve);
            assert!(
                out.starts_with(sent.as_bytes()),
                "{target}: {:?}",
                String::from_utf8_lossy(&out)
            );
        }
    }

    #[test]
    fn names_the_lb_adds_are_title_case_or_lower_case() {
        let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"[..]);
        let (mut parts, _) = parse_request(&mut buf, true).unwrap().unwrap();
        parts
            .headers
            .insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
        parts.headers.append("host", HeaderValue::from_static("y"));
        let mut out = Vec::new();
        write_request_head(&mut out, &parts, NameCase::Preserve);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET / HTTP/1.1\r\nhost: x\r\nHost: y\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n"
        );
        let mut out = Vec::new();
        write_request_head(&mut out, &parts, NameCase::Lower);
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("x-forwarded-for: 1.2.3.4\r\n"));
    }

    #[test]
    fn a_response_head_keeps_its_reason_phrase_and_case() {
        let head =
            b"HTTP/1.1 200 Fine\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n";
        for cut in 0..head.len() {
            let mut partial = BytesMut::from(&head[..cut]);
            assert!(parse_response(&mut partial, true).unwrap().is_none());
        }
        let mut buf = BytesMut::from(&head[..]);
        let parsed = parse_response(&mut buf, true).unwrap().unwrap();
        assert!(buf.is_empty(), "the whole head taken");
        assert_eq!(
            response_framing(&Method::GET, parsed.parts.status, &parsed.parts.headers).unwrap(),
            Framing::Chunked
        );
        assert_eq!(
            response_framing(&Method::HEAD, parsed.parts.status, &parsed.parts.headers).unwrap(),
            Framing::Empty
        );
        let mut out = Vec::new();
        write_response_head(&mut out, &parsed.parts, NameCase::Preserve);
        assert_eq!(out, head);
    }

    #[test]
    fn a_response_with_many_fields_and_repeated_names_keeps_each_ones_case() {
        let mut head = b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nset-COOKIE: b=2\r\n".to_vec();
        for i in 0..40 {
            head.extend_from_slice(format!("X-Field-{i}: {i}\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        let parsed = parse_response(&mut BytesMut::from(&head[..]), true)
            .unwrap()
            .unwrap();
        assert_eq!(parsed.parts.headers.len(), 42);
        let mut out = Vec::new();
        write_response_head(&mut out, &parsed.parts, NameCase::Preserve);
        assert_eq!(out, head, "written back byte for byte");
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        let with = |name: &'static str, value: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_static(value));
            h
        };
        let ok = StatusCode::OK;
        assert_eq!(
            response_framing(&Method::GET, ok, &HeaderMap::new()).unwrap(),
            Framing::UntilClose
        );
        assert_eq!(
            response_framing(&Method::GET, ok, &with("content-length", "5")).unwrap(),
            Framing::Length(5)
        );
        assert_eq!(
            response_framing(&Method::GET, ok, &with("transfer-encoding", "gzip")).unwrap(),
            Framing::UntilClose
        );
        assert_eq!(
            response_framing(
                &Method::GET,
                StatusCode::NOT_MODIFIED,
                &with("content-length", "5")
            )
            .unwrap(),
            Framing::Empty
        );
        assert!(response_framing(&Method::GET, ok, &with("content-length", "x")).is_err());
    }

    /// Decodes `stream` fed in two parts cut at `cut`: the data and how it ended.
    fn decode_split(stream: &[u8], cut: usize) -> (Vec<u8>, String) {
        let mut decoder = ChunkedDecoder::default();
        let mut buf = BytesMut::new();
        let mut data = Vec::new();
        for (i, part) in [&stream[..cut], &stream[cut..]].into_iter().enumerate() {
            buf.extend_from_slice(part);
            // What the decoder left, counting the part not yet fed.
            let unfed = if i == 0 { stream.len() - cut } else { 0 };
            loop {
                match decoder.decode(&mut buf) {
                    Decoded::Data(d) => data.extend_from_slice(&d),
                    Decoded::NeedMore => break,
                    Decoded::End => return (data, format!("end, {} left", buf.len() + unfed)),
                    Decoded::Trailers(t) => {
                        return (data, format!("trailers {t:?}, {} left", buf.len() + unfed))
                    }
                    Decoded::Invalid(e) => return (data, format!("invalid: {e}")),
                }
            }
        }
        (data, "more".into())
    }

    #[test]
    fn a_chunked_body_split_at_every_position_decodes_the_same() {
        let cases: [(&[u8], &[u8], &str); 3] = [
            (b"3\r\nabc\r\n0\r\n\r\nGET", b"abc", "end, 3 left"),
            (
                b"1;ext=1\r\nz\r\nA\r\n0123456789\r\n0\r\nX-Sum: 7\r\n\r\n",
                b"z0123456789",
                "trailers {\"x-sum\": \"7\"}, 0 left",
            ),
            (b"3\r\nabcX", b"abc", "invalid: invalid chunked framing"),
        ];
        for (stream, data, end) in cases {
            for cut in 0..=stream.len() {
                let (got, how) = decode_split(stream, cut);
                assert_eq!(got, data, "cut {cut}");
                assert_eq!(how, end, "cut {cut}");
            }
        }
    }

    /// Feeds `stream` to a body of `framing` in two parts cut at `cut`, then closes.
    fn unframe_split(framing: Framing, stream: &[u8], cut: usize) -> (Vec<u8>, String) {
        let mut state = BodyState::new(framing);
        let mut buf = BytesMut::new();
        let mut data = Vec::new();
        for part in [&stream[..cut], &stream[cut..]] {
            buf.extend_from_slice(part);
            loop {
                match state.take(&mut buf) {
                    Unframed::Data(d) => {
                        data.extend_from_slice(&d);
                        if state.is_done() {
                            return (data, format!("done, {} left", buf.len()));
                        }
                    }
                    Unframed::NeedMore => break,
                    Unframed::End => return (data, format!("end, {} left", buf.len())),
                    Unframed::Trailers(t) => return (data, format!("trailers {}", t.len())),
                    Unframed::Invalid(e) => return (data, e),
                }
            }
        }
        match state.at_close() {
            Unframed::End => (data, "closed: end".into()),
            other => (data, format!("closed: {other:?}")),
        }
    }

    #[test]
    fn a_body_of_every_framing_split_at_every_position_reads_the_same() {
        let cases: [(Framing, &[u8], &[u8], &str); 4] = [
            (Framing::Length(5), b"hello", b"hello", "done, 0 left"),
            (
                Framing::Chunked,
                b"2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n",
                b"hello",
                "end, 0 left",
            ),
            (Framing::UntilClose, b"hello", b"hello", "closed: end"),
            (
                Framing::Length(9),
                b"hello",
                b"hello",
                "closed: Invalid(\"the connection closed before the body ended\")",
            ),
        ];
        for (framing, stream, data, how) in cases {
            for cut in 0..=stream.len() {
                let (got, end) = unframe_split(framing, stream, cut);
                assert_eq!(got, data, "{framing:?} cut {cut}");
                assert_eq!(end, how, "{framing:?} cut {cut}");
            }
        }
    }

    #[test]
    fn a_chunked_end_carries_the_trailers() {
        let mut t = HeaderMap::new();
        t.insert("grpc-status", HeaderValue::from_static("0"));
        assert_eq!(
            &chunked_end(Some(&t), NameCase::Preserve)[..],
            b"0\r\nGrpc-Status: 0\r\n\r\n"
        );
        assert_eq!(&chunked_end(None, NameCase::Lower)[..], b"0\r\n\r\n");
    }
}
