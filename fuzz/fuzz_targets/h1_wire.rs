//! Fuzzes the sans-IO pieces of the HTTP/1.1 data plane (src/lb/h1/wire.rs): the request
//! and response head parsers and writers, the framing rules, and `ChunkedDecoder`.
//!
//! The input's first four bytes give two cut positions; the rest is read three ways: as
//! a response head, as a request head, and as a chunked body (and what follows it). Each
//! input checks, beyond "never panics":
//! - heads: a prefix of the input ending at a cut is incomplete (`Ok(None)`, nothing
//!   taken) or gives what the whole input gives (the same head, the same bytes left, or
//!   the same error); a parsed head takes exactly its bytes off the buffer; keeping the
//!   names' case or not gives the same status, method, target and fields; a parsed head
//!   written back with `NameCase::Preserve` parses again to the same status (version,
//!   reason), or method and origin-form target, and the same fields in the same order,
//!   and writing that again gives the same bytes (the round trip is stable); the framing
//!   functions answer without panicking;
//! - chunked: the decoder gives the same data, the same end (trailers) or verdict and
//!   consumes the same bytes whether the input comes whole, cut in two, cut in three or
//!   one byte at a time; it never hands out empty data and asks for more only once it
//!   has taken every byte; `ChunkedScanner` fed the same bytes ends the body at the byte
//!   where the decoder does and says `Invalid` where the decoder finds the framing
//!   invalid (a trailer section the decoder cannot parse ends where the scanner ends it:
//!   the scanner does not read trailer fields);
//! - on inputs whose line ends are all CRLF (`http1::Reader`'s decoder also takes bare
//!   LF; the data plane reads as hyper does and does not), the decoder and the Reader
//!   agree where both read a whole body (same end, data and trailers), the decoder never
//!   reads a whole body where the Reader wants more, and the Reader never reads a whole
//!   body where the decoder wants more. Where only one of them refuses the framing, that
//!   is by design (the Reader allows at most 16 size digits and whitespace before them;
//!   the decoder allows no stray CR in an extension or trailer line and checks trailer
//!   names as tokens).
#![no_main]

mod drive;

use bytes::BytesMut;
use drive::{cuts_and_rest, error_text, finish, Parts};
use hyper::ext::ReasonPhrase;
use hyper::{HeaderMap, Method};
use lbsim::fuzzing::{
    parse_request, parse_response, request_framing, response_framing, write_request_head,
    write_response_head, ChunkedDecoder, ChunkedScanner, Decoded, NameCase, Scan,
};
use lbsim::http1::{BodyEnd, Framing as ReaderFraming, Reader};
use libfuzzer_sys::fuzz_target;

/// Methods whose responses frame differently (no body for HEAD; CONNECT's 2xx is a
/// tunnel for hyper, a body here).
const METHODS: [Method; 3] = [Method::GET, Method::HEAD, Method::CONNECT];

/// A header map's fields in its iteration order (fields of one name together, in the
/// order the names first came).
fn field_list(headers: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect()
}

/// What a parsed response head is, to compare: version, status, the reason phrase kept,
/// the fields, and the head written back with the names' case kept.
#[derive(Debug, PartialEq)]
struct ResponseSeen {
    version: hyper::Version,
    status: u16,
    reason: Option<Vec<u8>>,
    fields: Vec<(String, Vec<u8>)>,
    written: Vec<u8>,
}

/// A parse's outcome: the head seen and the bytes left in the buffer, `None` while
/// incomplete, or the error.
type Parsed<T> = Result<Option<(T, Vec<u8>)>, String>;

fn response_of(bytes: &[u8], preserve: bool) -> Parsed<ResponseSeen> {
    let mut buf = BytesMut::from(bytes);
    let parsed = parse_response(&mut buf, preserve).map_err(|e| e.to_string())?;
    let Some(head) = parsed else {
        assert_eq!(&buf[..], bytes, "an incomplete response head takes nothing");
        return Ok(None);
    };
    let parts = &head.parts;
    assert!(
        bytes.ends_with(&buf),
        "what is left is the end of the input"
    );
    for method in &METHODS {
        let _ = response_framing(method, parts.status, &parts.headers);
    }
    let mut written = Vec::new();
    write_response_head(&mut written, parts, NameCase::Preserve);
    let seen = ResponseSeen {
        version: parts.version,
        status: parts.status.as_u16(),
        reason: parts
            .extensions
            .get::<ReasonPhrase>()
            .map(|r| r.as_bytes().to_vec()),
        fields: field_list(&parts.headers),
        written,
    };
    Ok(Some((seen, buf.to_vec())))
}

/// What a parsed request head is, to compare: method, target, version, the fields, the
/// head written back with the names' case kept, and the head's length.
#[derive(Debug, PartialEq)]
struct RequestSeen {
    method: Method,
    uri: String,
    /// The origin-form target `write_request_head` writes for it.
    origin: String,
    version: hyper::Version,
    fields: Vec<(String, Vec<u8>)>,
    written: Vec<u8>,
    len: usize,
}

fn request_of(bytes: &[u8], preserve: bool) -> Parsed<RequestSeen> {
    let mut buf = BytesMut::from(bytes);
    let parsed = parse_request(&mut buf, preserve).map_err(|e| e.to_string())?;
    let Some((parts, len)) = parsed else {
        assert_eq!(&buf[..], bytes, "an incomplete request head takes nothing");
        return Ok(None);
    };
    assert_eq!(
        len + buf.len(),
        bytes.len(),
        "the head's length is what was taken"
    );
    assert_eq!(
        &buf[..],
        &bytes[len..],
        "what is left is the end of the input"
    );
    let _ = request_framing(&parts.headers);
    let mut written = Vec::new();
    write_request_head(&mut written, &parts, NameCase::Preserve);
    // Origin-form: the path (`/` when empty) and the query, if any.
    let mut origin = match parts.uri.path() {
        "" => "/".to_owned(),
        path => path.to_owned(),
    };
    if let Some(query) = parts.uri.query() {
        origin.push('?');
        origin.push_str(query);
    }
    let seen = RequestSeen {
        method: parts.method.clone(),
        uri: parts.uri.to_string(),
        origin,
        version: parts.version,
        fields: field_list(&parts.headers),
        written,
        len,
    };
    Ok(Some((seen, buf.to_vec())))
}

/// `parse` on the whole input and on the prefixes ending at `cuts`: each prefix is
/// incomplete or gives what the whole gives; the whole's outcome is returned.
fn prefixes_agree<T: PartialEq + std::fmt::Debug>(
    bytes: &[u8],
    cuts: [usize; 2],
    parse: impl Fn(&[u8]) -> Parsed<T>,
) -> Parsed<T> {
    let whole = parse(bytes);
    for cut in cuts {
        match parse(&bytes[..cut]) {
            Ok(None) => {}
            Ok(Some((seen, left))) => {
                let Ok(Some((whole_seen, whole_left))) = &whole else {
                    panic!("the prefix of {cut} bytes parses, the whole gives {whole:?}");
                };
                assert_eq!(&seen, whole_seen, "prefix of {cut} bytes");
                assert_eq!(
                    [&left[..], &bytes[cut..]].concat(),
                    *whole_left,
                    "prefix of {cut} bytes: a different head length"
                );
            }
            Err(e) => assert_eq!(Err(&e), whole.as_ref(), "prefix of {cut} bytes"),
        }
    }
    whole
}

fn check_response(bytes: &[u8], cuts: [usize; 2]) {
    let whole = prefixes_agree(bytes, cuts, |b| response_of(b, true));
    let plain = response_of(bytes, false);
    let Ok(Some((seen, _))) = whole else {
        assert_eq!(
            whole.as_ref().map(|w| w.is_some()),
            plain.as_ref().map(|p| p.is_some()),
            "keeping the case changed the verdict"
        );
        return;
    };
    let Ok(Some((plain, _))) = plain else {
        panic!("parses with the case kept, not without: {plain:?}");
    };
    assert_eq!(
        (plain.version, plain.status, &plain.reason, &plain.fields),
        (seen.version, seen.status, &seen.reason, &seen.fields),
        "keeping the case changed the head"
    );

    // Written back, the head parses to itself; written again, to the same bytes.
    let again = match response_of(&seen.written, true) {
        Ok(Some((again, left))) => {
            assert!(left.is_empty(), "the written head is one whole head");
            again
        }
        other => panic!(
            "the written head {:?} parses to {other:?}",
            bytes_text(&seen.written)
        ),
    };
    assert_eq!(again.version, seen.version, "version");
    assert_eq!(again.status, seen.status, "status");
    assert_eq!(again.fields, seen.fields, "fields");
    if seen.reason.is_some() {
        assert_eq!(again.reason, seen.reason, "reason phrase");
    }
    assert_eq!(again.written, seen.written, "written again differently");
}

fn check_request(bytes: &[u8], cuts: [usize; 2]) {
    let whole = prefixes_agree(bytes, cuts, |b| request_of(b, true));
    let plain = request_of(bytes, false);
    let Ok(Some((seen, _))) = whole else {
        assert_eq!(
            whole.as_ref().map(|w| w.is_some()),
            plain.as_ref().map(|p| p.is_some()),
            "keeping the case changed the verdict"
        );
        return;
    };
    let Ok(Some((plain, _))) = plain else {
        panic!("parses with the case kept, not without: {plain:?}");
    };
    assert_eq!(
        (
            &plain.method,
            &plain.uri,
            plain.version,
            &plain.fields,
            plain.len
        ),
        (
            &seen.method,
            &seen.uri,
            seen.version,
            &seen.fields,
            seen.len
        ),
        "keeping the case changed the head"
    );

    let again = match request_of(&seen.written, true) {
        Ok(Some((again, left))) => {
            assert!(left.is_empty(), "the written head is one whole head");
            again
        }
        other => panic!(
            "the written head {:?} parses to {other:?}",
            bytes_text(&seen.written)
        ),
    };
    assert_eq!(again.method, seen.method, "method");
    assert_eq!(again.uri, seen.origin, "the target, in origin form");
    assert_eq!(
        again.version,
        hyper::Version::HTTP_11,
        "written as HTTP/1.1"
    );
    assert_eq!(again.fields, seen.fields, "fields");
    assert_eq!(again.written, seen.written, "written again differently");
}

fn bytes_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// How the decoder's reading ended.
#[derive(Debug, PartialEq)]
enum Ending {
    /// The body ended, with these trailer fields (`None`: no trailer section).
    End(Option<Vec<(String, Vec<u8>)>>),
    /// Malformed (the decoder's message).
    Invalid(String),
    /// Every byte taken, the body goes on.
    NeedMore,
}

/// What the decoder made of the input: the body's data, how it ended, and how many bytes
/// it consumed.
type DecoderOutcome = (Vec<u8>, Ending, usize);

/// Feeds `parts` to one decoder, each part appended to what it left.
fn decode_parts<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> DecoderOutcome {
    let parts: Vec<&[u8]> = parts.into_iter().collect();
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let mut decoder = ChunkedDecoder::default();
    let mut buf = BytesMut::new();
    let mut data = Vec::new();
    let mut fed = 0;
    for part in parts {
        buf.extend_from_slice(part);
        fed += part.len();
        loop {
            let ending = match decoder.decode(&mut buf) {
                Decoded::Data(d) => {
                    assert!(!d.is_empty(), "empty data");
                    data.extend_from_slice(&d);
                    continue;
                }
                Decoded::NeedMore => {
                    assert!(buf.is_empty(), "asks for more with {} bytes", buf.len());
                    break;
                }
                Decoded::End => Ending::End(None),
                Decoded::Trailers(map) => Ending::End(Some(field_list(&map))),
                Decoded::Invalid(e) => Ending::Invalid(e),
            };
            return (data, ending, fed - buf.len());
        }
    }
    assert_eq!(fed, total);
    (data, Ending::NeedMore, total)
}

/// Where the scanner ends the body fed `bytes` in one call, as a position in `bytes`.
fn scan(bytes: &[u8]) -> Scan {
    ChunkedScanner::default().scan(bytes)
}

/// What `http1::Reader`'s chunked decoder made of the input: its data, trailers and end
/// (or its error), and how many bytes it consumed.
type ReaderOutcome = (
    Result<(Vec<u8>, Vec<(String, String)>, BodyEnd), String>,
    usize,
);

fn reader_decode(bytes: &[u8]) -> ReaderOutcome {
    let mut reader = Reader::new(Parts::split(bytes, &[]));
    let mut body = Vec::new();
    let result = finish(reader.body(ReaderFraming::Chunked, |b| body.extend_from_slice(b)))
        .map(|end| (body, reader.trailers().to_vec(), end))
        .map_err(error_text);
    let left = reader.leftover().len() + reader.source().unread().len();
    (result, bytes.len() - left)
}

/// Trailer fields as (lower-case name, value) in name order (a stable sort: fields of
/// one name keep theirs), for comparing a `HeaderMap` with the Reader's list.
fn sorted_trailers(fields: impl IntoIterator<Item = (String, String)>) -> Vec<(String, String)> {
    let mut fields: Vec<_> = fields
        .into_iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value))
        .collect();
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    fields
}

fn check_chunked(bytes: &[u8], [a, b]: [usize; 2]) {
    let (a, b) = (a.min(b), a.max(b));
    let whole = decode_parts([bytes]);
    assert_eq!(
        decode_parts([&bytes[..a], &bytes[a..]]),
        whole,
        "cut at {a}"
    );
    assert_eq!(
        decode_parts([&bytes[..a], &bytes[a..b], &bytes[b..]]),
        whole,
        "cut at {a} and {b}"
    );
    assert_eq!(decode_parts(bytes.chunks(1)), whole, "byte by byte");

    let (data, ending, consumed) = &whole;
    let consumed = *consumed;
    match ending {
        Ending::End(_) => assert_eq!(
            scan(bytes),
            Scan::End(consumed),
            "the decoder and the scanner end the body at different bytes"
        ),
        Ending::NeedMore => assert_eq!(scan(bytes), Scan::Body, "the decoder wants more"),
        // The byte the decoder refused is the one the scanner refuses.
        Ending::Invalid(e) if e == "invalid chunked framing" => {
            assert_eq!(scan(&bytes[..consumed]), Scan::Body);
            assert_eq!(scan(&bytes[..=consumed]), Scan::Invalid, "the decoder: {e}");
        }
        // The trailer section's fields, which the scanner does not read: it ends the body
        // where the decoder found the section malformed.
        Ending::Invalid(e) => assert_eq!(scan(bytes), Scan::End(consumed), "the decoder: {e}"),
    }

    // The Reader also takes bare LF; the data plane reads as hyper does and does not.
    let crlf_only = bytes
        .iter()
        .enumerate()
        .all(|(i, &b)| b != b'\n' || (i > 0 && bytes[i - 1] == b'\r'));
    if !crlf_only {
        return;
    }
    let (read, read_consumed) = reader_decode(bytes);
    match (&read, ending) {
        (Ok((read_data, trailers, BodyEnd::Complete)), Ending::End(fields)) => {
            assert_eq!(
                read_consumed, consumed,
                "the Reader ends the body elsewhere"
            );
            assert_eq!(read_data, data, "the Reader reads other data");
            let fields = fields
                .iter()
                .flatten()
                .map(|(name, value)| (name.clone(), String::from_utf8_lossy(value).into_owned()));
            assert_eq!(
                sorted_trailers(trailers.iter().cloned()),
                sorted_trailers(fields),
                "the Reader reads other trailers"
            );
        }
        (Ok((_, _, BodyEnd::Complete)), Ending::NeedMore) => {
            panic!("the Reader reads a whole body where the decoder wants more")
        }
        (Ok((_, _, BodyEnd::Cut { .. })), Ending::End(_)) => {
            panic!("the decoder ends the body at {consumed}; the Reader wants more")
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((cuts, bytes)) = cuts_and_rest(data) else {
        return;
    };
    check_response(bytes, cuts);
    check_request(bytes, cuts);
    check_chunked(bytes, cuts);
});
