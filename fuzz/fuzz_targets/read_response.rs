//! Fuzzes `lbsim::http1::Reader`, the raw HTTP/1 response reader of the doctor, the
//! health checker and the tests.
//!
//! The input's first byte picks the request method and whether interim heads are
//! returned; the next four give two cut positions; the rest is what the server sent.
//! Up to four pipelined responses are read from it, as a client on a kept connection
//! would. Beyond "never panics", each input checks:
//! - the same bytes give the same responses (or the same error) and leave the same bytes
//!   unread, whether they arrive in one read, cut in two, or cut in three;
//! - nothing is invented or lost: what was consumed plus what is left is the input;
//! - a body's length matches its framing when it is complete, and a `Content-Length`
//!   body never holds more bytes than declared.
#![no_main]

mod drive;

use drive::{cuts_and_rest, error_text, finish, Parts};
use lbsim::http1::{BodyEnd, Framing, Interim, Reader, Response};
use libfuzzer_sys::fuzz_target;

const METHODS: [&str; 4] = ["GET", "HEAD", "POST", "CONNECT"];

/// Most responses read from one input.
const MAX_RESPONSES: usize = 4;

/// What reading the input gave: each response (or the error that ended the reading), and
/// the bytes the reader did not consume.
type Outcome = (Vec<Result<Response, String>>, Vec<u8>);

fn read_all(source: Parts, method: &str, interim: Interim) -> Outcome {
    let mut reader = Reader::new(source);
    let mut results = Vec::new();
    while results.len() < MAX_RESPONSES {
        if reader.leftover().is_empty() && reader.source().unread().is_empty() {
            break;
        }
        match finish(reader.response(method, interim)) {
            Ok(response) => {
                let more = response.reusable();
                results.push(Ok(response));
                if !more {
                    break;
                }
            }
            Err(error) => {
                results.push(Err(error_text(error)));
                break;
            }
        }
    }
    let mut rest = reader.leftover().to_vec();
    rest.extend(reader.source().unread());
    (results, rest)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let Some((cuts, bytes)) = cuts_and_rest(data) else {
        return;
    };
    let method = METHODS[usize::from(mode & 3)];
    let interim = if mode & 4 == 0 {
        Interim::Skip
    } else {
        Interim::Return
    };

    let whole = read_all(Parts::split(bytes, &[]), method, interim);
    for split in [&cuts[..1], &cuts[..]] {
        let parts = read_all(Parts::split(bytes, split), method, interim);
        assert_eq!(parts, whole, "cut at {split:?}");
    }

    let (results, rest) = &whole;
    assert!(rest.len() <= bytes.len());
    for response in results.iter().flatten() {
        match response.framing {
            Framing::Empty | Framing::Tunnel => assert!(response.body.is_empty()),
            Framing::Length(n) => {
                assert!(response.body.len() as u64 <= n);
                if response.complete() {
                    assert_eq!(response.body.len() as u64, n);
                }
            }
            Framing::Close => assert!(rest.is_empty(), "a close-framed body takes it all"),
            Framing::Chunked => {}
        }
        if !response.framing.keeps_connection() || response.end != BodyEnd::Complete {
            assert!(!response.reusable());
        }
        if !response.trailers.is_empty() {
            assert_eq!(response.framing, Framing::Chunked);
        }
    }
});
