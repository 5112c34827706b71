//! Fuzzes `ChunkedScanner` (src/lb/chunked.rs) against hyper's own chunked decoder: the
//! gate hands hyper a chunked request body up to where the scanner says it ends, and
//! judges what follows as the next head, so the two must agree on where a body ends
//! whenever hyper accepts it.
//!
//! The input is a chunked body. hyper's HTTP/1 server reads, over an in-memory stream,
//! `POST` with that body, then a marker request (`GET /marker`), then the end of the
//! stream. Each input checks:
//! - when hyper decodes the body and then serves the marker (the body ended at the end
//!   of the input, or before empty lines there, which a request line may follow), the
//!   scanner ends the body at that byte: not earlier, not later, and never gives up on it
//!   (`Invalid`: the gate would pass the marker unjudged);
//! - when the scanner ends the body at the end of the input, hyper does not serve any
//!   request other than the marker after it (it may fail the body instead: that closes
//!   the connection, which is safe).
#![no_main]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use lbsim::fuzzing::{ChunkedScanner, Scan};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HEAD: &[u8] = b"POST /body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n";
const MARKER: &[u8] = b"GET /marker HTTP/1.1\r\nHost: t\r\n\r\n";

/// What hyper served: each request's method and path (`GET /marker`), and whether its
/// body was read whole.
fn hyper_serves(body: &[u8]) -> Vec<(String, bool)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let record = record.clone();
            async move {
                let path = format!("{} {}", req.method(), req.uri().path());
                let whole = req.into_body().collect().await.is_ok();
                record.lock().expect("lock").push((path, whole));
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
            }
        });
        // half_close: the requests are all written, then the stream ends; hyper must
        // still serve the ones after the first (as lbsim's gate lets it).
        let serve = hyper::server::conn::http1::Builder::new()
            .half_close(true)
            .serve_connection(TokioIo::new(server), service);
        let talk = async {
            let mut stream = HEAD.to_vec();
            stream.extend_from_slice(body);
            stream.extend_from_slice(MARKER);
            let _ = client.write_all(&stream).await;
            let _ = client.shutdown().await;
            let mut answers = Vec::new();
            let _ = client.read_to_end(&mut answers).await;
        };
        let (_, _) = tokio::join!(serve, talk);
        let seen = seen.lock().expect("lock").clone();
        seen
    })
}

fuzz_target!(|body: &[u8]| {
    let scanned = ChunkedScanner::default().scan(body);
    let served = hyper_serves(body);
    let marker_after_body = served.len() == 2
        && served[0] == ("POST /body".to_string(), true)
        && served[1].0 == "GET /marker";
    if marker_after_body {
        // hyper (like httparse in the gate) skips empty lines before a request line, so
        // the body may end before trailing CR/LF bytes of the input.
        let ends_before_empty_lines = matches!(scanned, Scan::End(n)
            if body[n..].iter().all(|&b| b == b'\r' || b == b'\n'));
        assert!(
            ends_before_empty_lines,
            "hyper read the body to its end and served the marker; the scanner: {scanned:?}"
        );
    }
    if scanned == Scan::End(body.len()) {
        for (path, _) in served.iter().skip(1) {
            assert_eq!(path, "GET /marker", "hyper served body bytes as a request");
        }
    }
});
