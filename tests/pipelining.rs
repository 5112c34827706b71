//! Requests pipelined on one connection, several in one write: each is judged by the
//! cloud's rules on its own and answered in order, a bad one is answered with the cloud's
//! page only after the answers owed before it (and never reaches the app), and the bytes of
//! a body are never judged as a head, however the bytes are cut on the way.
//!
//! `tests/validation.rs` covers each rule on a request alone (and keep-alive requests sent
//! one after another's answer), `tests/reliability.rs` a thousand identical pipelined GETs
//! and a body that looks like requests when the app answers before reading it; the
//! pipelines here mix methods, bodies and framings, and put the bad head second or third.

mod support;

use std::time::Duration;

use lbsim::{Cloud, SimHandle};
use support::*;

/// One request of a pipeline and the answer the app gives it.
struct Exchange {
    /// The request, byte for byte.
    request: Vec<u8>,
    /// The answer's status.
    status: u16,
    /// The answer's body, byte for byte.
    body: Vec<u8>,
    /// The answer says `Connection: close` (the LB ends the connection after it); every
    /// other answer must not.
    closes: bool,
}

fn exchange(request: &[u8], status: u16, body: &[u8]) -> Exchange {
    Exchange {
        request: request.to_vec(),
        status,
        body: body.to_vec(),
        closes: false,
    }
}

/// Both `Content-Length` and `Transfer-Encoding` (`BothTeClPresent`, Ambiguous): AWS's
/// defensive mode serves it by its chunks, then closes the connection.
const AMBIGUOUS: &[u8] = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\
    Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";

/// A GET, then [`AMBIGUOUS`], answered with `Connection: close`.
fn ambiguous_pipeline() -> Vec<Exchange> {
    vec![
        exchange(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", 200, b"ok"),
        Exchange {
            closes: true,
            ..exchange(AMBIGUOUS, 200, b"abc")
        },
    ]
}

/// A body that looks like requests: a complete GET, a head every cloud rejects (a header
/// line without a colon), and the end of a chunked body. Judged as heads, these bytes
/// would reach the app as a request of their own or get a 400.
const HEADS_IN_A_BODY: &[u8] = b"GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n\
    GET / HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n0\r\n\r\n";

/// Three requests with bodies of each framing, and a plain GET, all valid on every cloud.
fn good_pipeline() -> Vec<Exchange> {
    let binary: Vec<u8> = (0..=255u8).collect();
    let mut post_binary = format!(
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        binary.len()
    )
    .into_bytes();
    post_binary.extend_from_slice(&binary);
    vec![
        exchange(
            b"GET /status/201 HTTP/1.1\r\nHost: t\r\n\r\n",
            201,
            b"status 201",
        ),
        exchange(&post_binary, 200, &binary),
        exchange(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
              5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n",
            200,
            b"hello world",
        ),
        exchange(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", 200, b"ok"),
    ]
}

/// Requests whose bodies hold [`HEADS_IN_A_BODY`], framed by Content-Length and by
/// chunks (a chunk of it, and a chunk that is exactly a last chunk and trailers' end), then
/// a GET: three requests for the app, whatever the bodies look like.
fn heads_in_bodies_pipeline() -> Vec<Exchange> {
    let mut by_length = format!(
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        HEADS_IN_A_BODY.len()
    )
    .into_bytes();
    by_length.extend_from_slice(HEADS_IN_A_BODY);
    let mut chunked = format!(
        "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
        HEADS_IN_A_BODY.len()
    )
    .into_bytes();
    chunked.extend_from_slice(HEADS_IN_A_BODY);
    chunked.extend_from_slice(b"\r\n5\r\n0\r\n\r\n\r\n0\r\n\r\n");
    let mut chunked_body = HEADS_IN_A_BODY.to_vec();
    chunked_body.extend_from_slice(b"0\r\n\r\n");
    vec![
        exchange(&by_length, 200, HEADS_IN_A_BODY),
        exchange(&chunked, 200, &chunked_body),
        exchange(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", 200, b"ok"),
    ]
}

/// The bytes of `exchanges`, in one piece.
fn bytes_of(exchanges: &[Exchange]) -> Vec<u8> {
    exchanges.iter().flat_map(|e| e.request.clone()).collect()
}

/// Writes `bytes` on a new connection in two writes cut at `cut` (one write when `cut` is
/// 0), then reads `expected.len()` answers and asserts each status, body byte for byte,
/// and whether it closes the connection.
/// The pause between the writes lets lbsim read the first part on its own; the answers
/// must be the same whether or not it did.
async fn send_and_check(
    lb: &SimHandle,
    bytes: &[u8],
    cut: usize,
    expected: &[Exchange],
) -> RawClient {
    let mut client = RawClient::connect(lb.addr()).await;
    if cut == 0 {
        client.send(bytes).await;
    } else {
        client.send(&bytes[..cut]).await;
        tokio::time::sleep(Duration::from_millis(1)).await;
        client.send(&bytes[cut..]).await;
    }
    for (i, want) in expected.iter().enumerate() {
        let resp = client
            .response()
            .await
            .unwrap_or_else(|| panic!("answer {i} (cut at {cut}): connection closed first"));
        assert_eq!(
            (resp.status, resp.body.as_slice()),
            (want.status, want.body.as_slice()),
            "answer {i} (cut at {cut})"
        );
        assert!(resp.complete, "answer {i} (cut at {cut}) complete");
        assert_eq!(
            resp.header("connection") == Some("close"),
            want.closes,
            "answer {i} (cut at {cut}): Connection {:?}",
            resp.header("connection")
        );
    }
    client
}

/// lbsim for `cloud` in front of a fresh mock app.
async fn rig(cloud: Cloud) -> (lbsim::MockUpstream, SimHandle) {
    let app = mock(Duration::from_secs(30)).await;
    let lb = lb(cloud, app.addr, Duration::from_secs(10)).await;
    (app, lb)
}

#[tokio::test]
async fn requests_in_one_write_are_each_answered_in_order() {
    let sockets = SocketsCheck::begin().await;
    for cloud in [
        Cloud::Aws,
        Cloud::Gcp,
        Cloud::GcpClassic,
        Cloud::IngressNginx,
    ] {
        let (app, lb) = rig(cloud).await;
        let pipeline = good_pipeline();
        let mut client = send_and_check(&lb, &bytes_of(&pipeline), 0, &pipeline).await;
        // The connection stays open for more.
        assert_eq!(get_ok(&mut client).await.status, 200, "{cloud:?}");
        assert_eq!(app.requests(), 5, "{cloud:?}");
        drop(client);
        lb.shutdown().await;
        app.kill();
    }
    sockets.all_closed().await;
}

/// A bad head after `good` valid requests: the valid ones are answered, then the bad one
/// gets the page `check` asserts, the connection closes, and nothing after the valid ones
/// reaches the app (not the bad request, not the GET after it).
async fn bad_head_after(
    lb: &SimHandle,
    app: &lbsim::MockUpstream,
    good: usize,
    bad: &[u8],
    check: impl Fn(&RawResponse),
) {
    let mut pipeline = good_pipeline();
    pipeline.truncate(good);
    bad_head_after_exchanges(lb, app, &pipeline, bad, check).await;
}

/// [`bad_head_after`], with the valid requests given.
async fn bad_head_after_exchanges(
    lb: &SimHandle,
    app: &lbsim::MockUpstream,
    pipeline: &[Exchange],
    bad: &[u8],
    check: impl Fn(&RawResponse),
) {
    let good = pipeline.len();
    let mut bytes = bytes_of(pipeline);
    bytes.extend_from_slice(bad);
    bytes.extend_from_slice(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let before = app.requests();
    let mut client = send_and_check(lb, &bytes, 0, pipeline).await;
    let page = client
        .response()
        .await
        .expect("the cloud's page for the bad head");
    check(&page);
    assert!(
        client.closed_within(Duration::from_secs(2)).await,
        "closed after the page"
    );
    assert!(
        client.leftover().is_empty(),
        "nothing after the page: {:?}",
        String::from_utf8_lossy(client.leftover())
    );
    assert_eq!(
        app.requests() - before,
        good as u64,
        "only the valid requests reached the app"
    );
}

#[tokio::test]
async fn a_bad_second_or_third_head_is_answered_after_the_earlier_ones() {
    let sockets = SocketsCheck::begin().await;
    // obs-fold, and two different Content-Lengths (a smuggling shape: Severe on AWS).
    let folded = b"GET / HTTP/1.1\r\nHost: t\r\nX-Folded: a\r\n b\r\n\r\n";
    let two_lengths =
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd";

    let (app, aws) = rig(Cloud::Aws).await;
    for good in [1, 2] {
        bad_head_after(&aws, &app, good, folded, |r| {
            assert_alb_page(r, 400, "Bad Request", "malformed_request")
        })
        .await;
        bad_head_after(&aws, &app, good, two_lengths, |r| {
            assert_alb_page(r, 400, "Bad Request", "desync_mitigation")
        })
        .await;
        bad_head_after(
            &aws,
            &app,
            good,
            b"TRACE / HTTP/1.1\r\nHost: t\r\n\r\n",
            |r| assert_alb_page(r, 405, "Method Not Allowed", "method_not_allowed"),
        )
        .await;
    }
    aws.shutdown().await;

    let gcp = lb(Cloud::GcpClassic, app.addr, Duration::from_secs(10)).await;
    for good in [1, 2] {
        for (bad, reason) in [
            (&folded[..], "malformed_request"),
            (&two_lengths[..], "desync_mitigation"),
        ] {
            bad_head_after(&gcp, &app, good, bad, |r| {
                assert_gfe_page(r, 400, "Bad Request", "Bad Request", reason)
            })
            .await;
        }
    }
    sockets.finish(gcp, app).await;
}

/// Regression: the gate's chunk scanner refused sizes of more than 16 digits that hyper
/// accepts (leading zeros), stopped following the body, and let the requests after it
/// through unjudged: a TRACE reached the app instead of getting the ALB's 405.
#[tokio::test]
async fn a_chunk_size_with_leading_zeros_does_not_let_the_next_head_through_unjudged() {
    let sockets = SocketsCheck::begin().await;
    let (app, lb) = rig(Cloud::Aws).await;
    let pipeline = [exchange(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
          00000000000000000003\r\nabc\r\n0\r\n\r\n",
        200,
        b"abc",
    )];
    bad_head_after_exchanges(
        &lb,
        &app,
        &pipeline,
        b"TRACE / HTTP/1.1\r\nHost: t\r\n\r\n",
        |r| assert_alb_page(r, 405, "Method Not Allowed", "method_not_allowed"),
    )
    .await;
    sockets.finish(lb, app).await;
}

/// Regression (request smuggling): the gate's chunk scanner ended trailers at a bare-LF
/// empty line, where hyper reads on to the next CRLF. A head after `X: a\n\n` was judged
/// as the next request (a POST with a 29-byte body), while hyper took it for trailers
/// and served the 29 bytes, a TRACE, which reached the app unjudged.
#[tokio::test]
async fn a_head_hidden_in_trailers_does_not_smuggle_the_request_after_it() {
    let sockets = SocketsCheck::begin().await;
    let (app, lb) = rig(Cloud::Aws).await;
    let trace = b"TRACE / HTTP/1.1\r\nHost: t\r\n\r\n";
    let mut request = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
        3\r\nabc\r\n0\r\nX: a\n\nPOST /echo HTTP/1.1\r\nHost: t\r\n"
        .to_vec();
    request.extend_from_slice(format!("Content-Length: {}\r\n\r\n", trace.len()).as_bytes());
    // Both hyper and the gate now end the body after the CRLF CRLF: the TRACE is the
    // next head, judged, and answered with the ALB's 405.
    let pipeline = [exchange(&request, 200, b"abc")];
    bad_head_after_exchanges(&lb, &app, &pipeline, trace, |r| {
        assert_alb_page(r, 405, "Method Not Allowed", "method_not_allowed")
    })
    .await;
    sockets.finish(lb, app).await;
}

#[tokio::test]
async fn an_ambiguous_head_in_a_pipeline_is_served_then_nothing_after_it() {
    let sockets = SocketsCheck::begin().await;
    let (app, lb) = rig(Cloud::Aws).await;
    // The GET before it keeps the connection (the Ambiguous verdict is not its own);
    // the GET after it is never read.
    let pipeline = ambiguous_pipeline();
    let mut bytes = bytes_of(&pipeline);
    bytes.extend_from_slice(b"GET /status/202 HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut client = send_and_check(&lb, &bytes, 0, &pipeline).await;
    assert!(
        client.closed_within(Duration::from_secs(2)).await,
        "closed after the ambiguous one"
    );
    assert!(
        client.leftover().is_empty(),
        "the GET after it is not answered"
    );
    assert_eq!(app.requests(), 2);
    drop(client);
    sockets.finish(lb, app).await;
}

#[tokio::test]
async fn bytes_that_look_like_heads_inside_bodies_are_never_judged_as_heads() {
    let sockets = SocketsCheck::begin().await;
    for cloud in [Cloud::Aws, Cloud::GcpClassic] {
        let (app, lb) = rig(cloud).await;
        let pipeline = heads_in_bodies_pipeline();
        let mut client = send_and_check(&lb, &bytes_of(&pipeline), 0, &pipeline).await;
        assert_eq!(get_ok(&mut client).await.status, 200, "{cloud:?}");
        assert_eq!(
            app.requests(),
            4,
            "{cloud:?}: no request made of body bytes"
        );
        assert_eq!(lb.stats().by_status.get(&400), None, "{cloud:?}");
        drop(client);
        lb.shutdown().await;
        app.kill();
    }
    sockets.all_closed().await;
}

#[tokio::test]
async fn pipelines_cut_at_every_position_get_the_same_answers() {
    let sockets = SocketsCheck::begin().await;
    let (app, lb) = rig(Cloud::Aws).await;

    // Valid requests, bodies that look like heads, an Ambiguous request after a GET:
    // every position.
    for pipeline in [
        good_pipeline(),
        heads_in_bodies_pipeline(),
        ambiguous_pipeline(),
    ] {
        let bytes = bytes_of(&pipeline);
        let before = app.requests();
        let mut positions = 0;
        for cut in 1..bytes.len() {
            send_and_check(&lb, &bytes, cut, &pipeline).await;
            positions += 1;
        }
        assert_eq!(app.requests() - before, positions * pipeline.len() as u64);
    }

    // A bad third head (two Content-Lengths) after two valid requests.
    let mut pipeline = good_pipeline();
    pipeline.truncate(2);
    let mut bytes = bytes_of(&pipeline);
    bytes.extend_from_slice(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    );
    let before = app.requests();
    let mut positions = 0;
    for cut in 1..bytes.len() {
        let mut client = send_and_check(&lb, &bytes, cut, &pipeline).await;
        let page = client.response().await.expect("the 400 page");
        assert_alb_page(&page, 400, "Bad Request", "desync_mitigation");
        assert!(client.closed_within(Duration::from_secs(2)).await);
        positions += 1;
    }
    assert_eq!(
        app.requests() - before,
        positions * 2,
        "the bad head never reached the app"
    );
    sockets.finish(lb, app).await;
}
