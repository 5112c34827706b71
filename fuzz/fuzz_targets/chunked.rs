//! Fuzzes the two chunked-body parsers against themselves and each other:
//! - `ChunkedScanner` (src/lb/chunked.rs), which finds where a chunked request body ends
//!   so that the bytes after it are judged as the next head (and a body's bytes never
//!   are);
//! - the chunked decoder of `lbsim::http1::Reader` (responses).
//!
//! The input's first four bytes give two cut positions; the rest is a chunked body and
//! whatever follows it. Each input checks:
//! - the scanner finds the same end (or the same verdict) fed in one call, cut in two,
//!   cut in three, or one byte per call, and never an end past what it was given;
//! - the decoder gives the same body, trailers, end and leftover, whole or cut;
//! - on inputs whose line ends are all CRLF (the decoder also takes bare LF, the scanner
//!   reads as hyper does and does not): where both find an end, it is the same byte;
//!   where the decoder reads a whole body, the scanner does not expect more; where the
//!   scanner finds an end, the decoder does not run out of bytes before it.
#![no_main]

mod drive;

use drive::{cuts_and_rest, error_text, finish, Parts};
use lbsim::fuzzing::{ChunkedScanner, Scan};
use lbsim::http1::{BodyEnd, Framing, Reader};
use libfuzzer_sys::fuzz_target;

/// What the scanner found over the whole input: the body's end as a position in the
/// input, not yet (`Body`), or not chunked framing (`Invalid`).
fn scan_parts<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> Scan {
    let mut scanner = ChunkedScanner::default();
    let mut offset = 0;
    for part in parts {
        match scanner.scan(part) {
            Scan::Body => offset += part.len(),
            Scan::End(n) => {
                assert!(
                    0 < n && n <= part.len(),
                    "end {n} of a {}-byte part",
                    part.len()
                );
                return Scan::End(offset + n);
            }
            Scan::Invalid => return Scan::Invalid,
        }
    }
    Scan::Body
}

/// What the decoder made of the body: its bytes, trailers and end (or its error), and how
/// many bytes of the input it consumed.
type Decoded = (
    Result<(Vec<u8>, Vec<(String, String)>, BodyEnd), String>,
    usize,
);

fn decode(bytes: &[u8], cuts: &[usize]) -> Decoded {
    let mut reader = Reader::new(Parts::split(bytes, cuts));
    let mut body = Vec::new();
    let result = finish(reader.body(Framing::Chunked, |b| body.extend_from_slice(b)))
        .map(|end| (body, reader.trailers().to_vec(), end))
        .map_err(error_text);
    let left = reader.leftover().len() + reader.source().unread().len();
    (result, bytes.len() - left)
}

fuzz_target!(|data: &[u8]| {
    let Some(([a, b], bytes)) = cuts_and_rest(data) else {
        return;
    };
    let (a, b) = (a.min(b), a.max(b));

    let scanned = scan_parts([bytes]);
    assert_eq!(
        scan_parts([&bytes[..a], &bytes[a..]]),
        scanned,
        "cut at {a}"
    );
    assert_eq!(
        scan_parts([&bytes[..a], &bytes[a..b], &bytes[b..]]),
        scanned,
        "cut at {a} and {b}"
    );
    assert_eq!(scan_parts(bytes.chunks(1)), scanned, "byte by byte");
    if let Scan::End(end) = scanned {
        assert!(end >= 3, "the shortest chunked body is `0\\n\\n`");
        // The body alone ends at the same byte.
        assert_eq!(scan_parts([&bytes[..end]]), scanned);
    }

    let decoded = decode(bytes, &[]);
    assert_eq!(decode(bytes, &[a]), decoded, "decoder cut at {a}");
    assert_eq!(
        decode(bytes, &[a, b]),
        decoded,
        "decoder cut at {a} and {b}"
    );

    // The scanner reads the framing as hyper does (CRLF only); the response decoder, like
    // the clients it serves, also takes bare LF line ends. Compare them where no bare LF
    // can make them differ by design (`chunked_vs_hyper` holds the scanner to hyper).
    let crlf_only = bytes
        .iter()
        .enumerate()
        .all(|(i, &b)| b != b'\n' || (i > 0 && bytes[i - 1] == b'\r'));
    if !crlf_only {
        return;
    }
    let (result, consumed) = &decoded;
    match (result, scanned) {
        (Ok((_, _, BodyEnd::Complete)), Scan::End(end)) => assert_eq!(
            *consumed, end,
            "the decoder and the scanner end the body at different bytes"
        ),
        (Ok((_, _, BodyEnd::Complete)), Scan::Body) => {
            panic!("the decoder read a whole body where the scanner expects more")
        }
        (Ok((_, _, BodyEnd::Cut { .. })), Scan::End(end)) => {
            panic!("the scanner ends the body at {end}; the decoder wants more")
        }
        _ => {}
    }
});
