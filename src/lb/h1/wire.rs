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

/// Largest trailer section kept from a chunked body; a longer one is refused.
const MAX_TRAILERS: usize = 16 * 1024;

/// The header names of a message as they arrived, for writing them back in the same
/// case (the `HeaderMap` keeps them lower-cased). One entry per field, in order.
#[derive(Clone, Debug, Default)]
pub(crate) struct RawCase(HeaderMap<Bytes>);

/// How header names are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NameCase {
    /// As received where known ([`RawCase`]), the LB's own in Title-Case (ALB, nginx,
    /// Google's classic GFE).
    Preserve,
    /// Lower-case, as Envoy writes them (Google's global external generation).
    Lower,
}

/// Why a head could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HeadError {
    /// What httparse (or the `http` types) refused.
    #[error("{0}")]
    Invalid(String),
}

fn invalid(what: impl std::fmt::Display) -> HeadError {
    HeadError::Invalid(what.to_string())
}

/// Reads the field lines httparse found into a `HeaderMap`, keeping the names' case
/// when `preserve` asks for it.
fn fields(
    found: &[httparse::Header<'_>],
    preserve: bool,
) -> Result<(HeaderMap, Option<RawCase>), HeadError> {
    let mut headers = HeaderMap::with_capacity(found.len());
    let mut case = preserve.then(|| RawCase(HeaderMap::with_capacity(found.len())));
    for field in found {
        let name = HeaderName::from_bytes(field.name.as_bytes()).map_err(invalid)?;
        let value = HeaderValue::from_bytes(field.value).map_err(invalid)?;
        if let Some(RawCase(raw)) = &mut case {
            raw.append(name.clone(), Bytes::copy_from_slice(field.name.as_bytes()));
        }
        headers.append(name, value);
    }
    Ok((headers, case))
}

/// A request head parsed from `buf`: its parts (the names' case in the extensions when
/// `preserve`) and its length in bytes; `None` while the head is incomplete.
pub(crate) fn parse_request(
    buf: &[u8],
    preserve: bool,
) -> Result<Option<(http::request::Parts, usize)>, HeadError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(invalid(e)),
    };
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method = Method::from_bytes(req.method.unwrap_or("").as_bytes()).map_err(invalid)?;
    parts.uri = Uri::try_from(req.path.unwrap_or("")).map_err(invalid)?;
    parts.version = if req.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let (headers, case) = fields(req.headers, preserve)?;
    parts.headers = headers;
    if let Some(case) = case {
        parts.extensions.insert(case);
    }
    Ok(Some((parts, len)))
}

/// A response head parsed from `buf`: status, headers (case kept when `preserve`), a
/// reason phrase other than the status's usual one, and the head's length.
pub(crate) struct ResponseHead {
    pub parts: http::response::Parts,
    pub len: usize,
}

/// Parses a response head; `None` while it is incomplete.
pub(crate) fn parse_response(
    buf: &[u8],
    preserve: bool,
) -> Result<Option<ResponseHead>, HeadError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut slots);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(invalid(e)),
    };
    let (mut parts, ()) = Response::new(()).into_parts();
    parts.status = StatusCode::from_u16(resp.code.unwrap_or(0)).map_err(invalid)?;
    parts.version = if resp.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    if let Some(reason) = resp.reason {
        if parts.status.canonical_reason() != Some(reason) {
            // Sent on as the target wrote it, as hyper's client and server do.
            if let Ok(phrase) =
                hyper::ext::ReasonPhrase::try_from(Bytes::copy_from_slice(reason.as_bytes()))
            {
                parts.extensions.insert(phrase);
            }
        }
    }
    let (headers, case) = fields(resp.headers, preserve)?;
    parts.headers = headers;
    if let Some(case) = case {
        parts.extensions.insert(case);
    }
    Ok(Some(ResponseHead { parts, len }))
}

/// Writes `name` as `case` says: the `index`-th field of that name as received when the
/// case is kept and known, else in Title-Case (or lower-case).
fn write_name(out: &mut Vec<u8>, name: &HeaderName, case: NameCase, raw: Option<&Bytes>) {
    match (case, raw) {
        (NameCase::Lower, _) => out.extend_from_slice(name.as_str().as_bytes()),
        (NameCase::Preserve, Some(raw)) => out.extend_from_slice(raw),
        (NameCase::Preserve, None) => {
            let mut upper = true;
            for &b in name.as_str().as_bytes() {
                out.push(if upper { b.to_ascii_uppercase() } else { b });
                upper = b == b'-';
            }
        }
    }
}

/// Writes the field lines of `headers` and the empty line that ends the head.
fn write_fields(out: &mut Vec<u8>, headers: &HeaderMap, case: NameCase, raw: Option<&RawCase>) {
    let mut current: Option<(&HeaderName, http::header::GetAll<'_, Bytes>, usize)> = None;
    for (name, value) in headers {
        let original = match (case, raw) {
            (NameCase::Preserve, Some(RawCase(raw))) => {
                let index = match &mut current {
                    Some((n, _, i)) if *n == name => {
                        *i += 1;
                        *i
                    }
                    _ => {
                        current = Some((name, raw.get_all(name), 0));
                        0
                    }
                };
                current
                    .as_ref()
                    .and_then(|(_, all, _)| all.iter().nth(index))
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
pub(crate) fn write_request_head(out: &mut Vec<u8>, parts: &http::request::Parts, case: NameCase) {
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    out.extend_from_slice(if target.is_empty() {
        b"/"
    } else {
        target.as_bytes()
    });
    out.extend_from_slice(b" HTTP/1.1\r\n");
    write_fields(out, &parts.headers, case, parts.extensions.get::<RawCase>());
}

/// Writes a response head for a client: the reason phrase from the extensions when one
/// was kept (an LB page's, or the target's own), else the status's usual one.
pub(crate) fn write_response_head(
    out: &mut Vec<u8>,
    parts: &http::response::Parts,
    case: NameCase,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
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
pub(crate) enum Framing {
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
pub(crate) fn request_framing(headers: &HeaderMap) -> Result<Framing, HeadError> {
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
pub(crate) fn response_framing(
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
pub(crate) enum Decoded {
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
pub(crate) struct ChunkedDecoder {
    scanner: ChunkedScanner,
    /// The trailer section's bytes, gathered until the body's end.
    trailers: Vec<u8>,
}

impl ChunkedDecoder {
    /// Takes what it can from the front of `buf`.
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Decoded {
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
            assert!(
                parse_request(&head[..cut], true).unwrap().is_none(),
                "cut {cut}"
            );
        }
        let (parts, len) = parse_request(head, true).unwrap().unwrap();
        assert_eq!(len, end);
        assert_eq!(parts.method, Method::POST);
        assert_eq!(parts.uri, "/a?b=c");
        assert_eq!(parts.headers["x-mixed-case"], "1");
        assert_eq!(request_framing(&parts.headers).unwrap(), Framing::Length(3));
        let mut out = Vec::new();
        write_request_head(&mut out, &parts, NameCase::Preserve);
        assert_eq!(out, &head[..end], "names written back as received");
    }

    #[test]
    fn names_the_lb_adds_are_title_case_or_lower_case() {
        let (mut parts, _) = parse_request(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", true)
            .unwrap()
            .unwrap();
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
            assert!(parse_response(&head[..cut], true).unwrap().is_none());
        }
        let parsed = parse_response(head, true).unwrap().unwrap();
        assert_eq!(parsed.len, head.len());
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
