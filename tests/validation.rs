//! What each cloud rejects before a request reaches the app, with the cloud's page.

mod support;

use std::time::Duration;

use lbsim::validate::DesyncMode;
use lbsim::{Cloud, Reason, Simulator};
use support::*;

/// Sends `raw` on a new connection; returns the response and whether lbsim then closed.
async fn send_raw(lb: &lbsim::SimHandle, raw: &[u8]) -> (RawResponse, bool) {
    let mut client = RawClient::connect(lb.addr()).await;
    client.send(raw).await;
    let resp = client.response().await.expect("a response");
    let closed = client.closed_within(Duration::from_secs(2)).await;
    (resp, closed)
}

#[tokio::test]
async fn aws_rejects_oversized_heads_with_400_and_close() {
    // One test at a time in this file: others count the process's sockets.
    let _serial = serial().await;
    let app = mock(Duration::from_secs(5)).await;
    let lb = lb(Cloud::Aws, app.addr, Duration::from_secs(5)).await;
    let long_line = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(17 * 1024));
    let (resp, closed) = send_raw(&lb, long_line.as_bytes()).await;
    assert_alb_page(&resp, 400, "Bad Request", "request_too_large");
    assert!(closed);
    let long_header = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "b".repeat(17 * 1024)
    );
    let (resp, _) = send_raw(&lb, long_header.as_bytes()).await;
    assert_alb_page(&resp, 400, "Bad Request", "request_too_large");
    let many: String = (0..8)
        .map(|i| format!("X-H{i}: {}\r\n", "c".repeat(9 * 1024)))
        .collect();
    let (resp, _) = send_raw(
        &lb,
        format!("GET / HTTP/1.1\r\nHost: t\r\n{many}\r\n").as_bytes(),
    )
    .await;
    assert_alb_page(&resp, 400, "Bad Request", "request_too_large");
    assert_eq!(app.requests(), 0, "no rejected request reaches the app");
}

#[tokio::test]
async fn aws_status_per_rule_and_nothing_reaches_the_app() {
    // One test at a time in this file: others count the process's sockets.
    let _serial = serial().await;
    let app = mock(Duration::from_secs(5)).await;
    let lb = lb(Cloud::Aws, app.addr, Duration::from_secs(5)).await;
    let xff: Vec<String> = (0..31).map(|i| format!("10.0.0.{i}")).collect();
    let cases: [(String, u16, &str, &str); 5] = [
        (
            format!(
                "GET / HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: {}\r\n\r\n",
                xff.join(", ")
            ),
            463,
            "Bad Request",
            "too_many_forwarded_for",
        ),
        (
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n".into(),
            501,
            "Not Implemented",
            "unsupported_transfer_encoding",
        ),
        (
            "TRACE / HTTP/1.1\r\nHost: t\r\n\r\n".into(),
            405,
            "Method Not Allowed",
            "method_not_allowed",
        ),
        (
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n".into(),
            400,
            "Bad Request",
            "desync_mitigation",
        ),
        (
            "GET / HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n".into(),
            400,
            "Bad Request",
            "malformed_request",
        ),
    ];
    for (raw, status, phrase, reason) in cases {
        let (resp, closed) = send_raw(&lb, raw.as_bytes()).await;
        assert_alb_page(&resp, status, phrase, reason);
        assert!(closed, "{reason}: connection closed");
    }
    assert_eq!(app.requests(), 0, "no rejected request reaches the app");
    assert_eq!(lb.stats().by_status.get(&400), Some(&2));
    // A valid request on a fresh connection still works.
    let mut client = RawClient::connect(lb.addr()).await;
    assert_eq!(client.get("/").await.status, 200);
}

#[tokio::test]
async fn both_te_and_cl_is_ambiguous_served_then_closed_unless_strictest() {
    // One test at a time in this file: others count the process's sockets.
    let _serial = serial().await;
    let app = mock(Duration::from_secs(5)).await;
    let raw = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    let lb = lb(Cloud::Aws, app.addr, Duration::from_secs(5)).await;
    let (resp, closed) = send_raw(&lb, raw).await;
    assert_eq!(
        resp.status, 200,
        "defensive mode serves an Ambiguous request"
    );
    assert_eq!(resp.text(), "abc");
    assert_eq!(resp.header("connection"), Some("close"));
    assert!(closed, "then closes the client connection");
    assert_eq!(
        lb.idle_connections(app.addr),
        0,
        "and the target connection"
    );

    let strict = Simulator::builder(Cloud::Aws)
        .no_health_checks()
        .upstream(app.addr)
        .desync_mode(DesyncMode::Strictest)
        .start()
        .await
        .unwrap();
    let (resp, _) = send_raw(&strict, raw).await;
    assert_alb_page(&resp, 400, "Bad Request", "desync_mitigation");
    assert_eq!(
        app.requests(),
        1,
        "only the defensive request reached the app"
    );
}

#[tokio::test]
async fn gcp_answers_413_for_large_heads_and_forwards_trace() {
    // One test at a time in this file: others count the process's sockets.
    let _serial = serial().await;
    let app = mock(Duration::from_secs(5)).await;
    let lb = lb(Cloud::GcpClassic, app.addr, Duration::from_secs(5)).await;
    let many: String = (0..8)
        .map(|i| format!("X-H{i}: {}\r\n", "c".repeat(9 * 1024)))
        .collect();
    let (resp, closed) = send_raw(
        &lb,
        format!("GET / HTTP/1.1\r\nHost: t\r\n{many}\r\n").as_bytes(),
    )
    .await;
    assert_eq!(resp.status, 413);
    assert_eq!(resp.header("x-lbsim-reason"), Some("headers_too_long"));
    assert_eq!(resp.text(), gfe_page("413 Request Entity Too Large"));
    assert!(closed);
    assert_eq!(app.requests(), 0);
    let (resp, _) = send_raw(&lb, b"TRACE /status/200 HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(resp.status, 200, "GCP has no TRACE rule: the app answers");
    assert_eq!(app.requests(), 1);
}

#[tokio::test]
async fn keep_alive_requests_are_each_validated() {
    // One test at a time in this file: others count the process's sockets.
    let _serial = serial().await;
    let app = mock(Duration::from_secs(5)).await;
    let lb = lb(Cloud::Aws, app.addr, Duration::from_secs(5)).await;
    let mut client = RawClient::connect(lb.addr()).await;
    assert_eq!(client.get("/").await.status, 200);
    client
        .send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")
        .await;
    assert_eq!(client.response().await.unwrap().text(), "hello");
    client.send(b"TRACE / HTTP/1.1\r\nHost: t\r\n\r\n").await;
    let resp = client.response().await.unwrap();
    assert_eq!(
        resp.status, 405,
        "the third request on the connection is checked too"
    );
    assert_eq!(app.requests(), 2);
}

#[tokio::test]
async fn connect_gets_each_clouds_400_page_and_never_reaches_the_app() {
    let sockets = SocketsCheck::begin().await;
    let raw = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n";
    let app = mock(Duration::from_secs(5)).await;

    let aws = lb(Cloud::Aws, app.addr, Duration::from_secs(5)).await;
    let (resp, closed) = send_raw(&aws, raw).await;
    assert_alb_page(&resp, 400, "Bad Request", "malformed_request");
    assert!(closed, "AWS: connection closed after the page");
    assert_eq!(aws.stats().by_status.get(&400), Some(&1));
    assert_eq!(aws.stats().count(Reason::MalformedRequest), 1);
    assert_eq!(
        aws.stats().by_status.get(&200),
        None,
        "no tunnel counted as a 200"
    );

    let gcp = lb(Cloud::GcpClassic, app.addr, Duration::from_secs(5)).await;
    let (resp, closed) = send_raw(&gcp, raw).await;
    assert_gfe_page(
        &resp,
        400,
        "Bad Request",
        "Bad Request",
        "malformed_request",
    );
    assert!(closed, "GCP: connection closed after the page");
    assert_eq!(gcp.stats().by_status.get(&400), Some(&1));
    assert_eq!(gcp.stats().by_status.get(&200), None);

    assert_eq!(app.requests(), 0, "CONNECT never reaches the app");
    aws.shutdown().await;
    sockets.finish(gcp, app).await;
}

#[tokio::test]
async fn http_1_1_without_host_is_a_400_and_http_1_0_without_host_is_served() {
    let sockets = SocketsCheck::begin().await;
    for cloud in [Cloud::Aws, Cloud::Gcp, Cloud::GcpClassic] {
        let app = mock(Duration::from_secs(5)).await;
        let lb = lb(cloud, app.addr, Duration::from_secs(5)).await;
        let (resp, closed) = send_raw(&lb, b"GET / HTTP/1.1\r\n\r\n").await;
        match cloud {
            Cloud::Aws => assert_alb_page(&resp, 400, "Bad Request", "malformed_request"),
            Cloud::IngressNginx => {
                assert_nginx_page(&resp, 400, "Bad Request", "client_sent_invalid_request")
            }
            // The first-layer Google Front End parses the request on both generations.
            Cloud::Gcp | Cloud::GcpClassic => assert_gfe_page(
                &resp,
                400,
                "Bad Request",
                "Bad Request",
                "malformed_request",
            ),
        }
        assert!(closed, "{cloud:?}: closed after the 400");
        // Absolute-form carries the authority, but HTTP/1.1 still needs the Host line.
        let (resp, _) = send_raw(&lb, b"GET http://t/ HTTP/1.1\r\n\r\n").await;
        assert_eq!(resp.status, 400, "{cloud:?}: absolute-form without Host");
        assert_eq!(app.requests(), 0, "{cloud:?}: nothing reached the app");

        let (resp, _) = send_raw(&lb, b"GET / HTTP/1.0\r\n\r\n").await;
        assert_eq!(resp.status, 200, "{cloud:?}: HTTP/1.0 needs no Host");
        assert_eq!(resp.text(), "ok");
        assert_eq!(
            app.requests(),
            1,
            "{cloud:?}: the HTTP/1.0 request reached the app"
        );
        assert_eq!(lb.stats().by_status.get(&400), Some(&2));
        lb.shutdown().await;
        app.kill();
    }
    sockets.all_closed().await;
}

#[tokio::test]
async fn two_host_lines_are_a_400_on_aws_and_served_on_gcp() {
    let same = b"GET / HTTP/1.1\r\nHost: t\r\nHost: t\r\n\r\n";
    let differ = b"GET / HTTP/1.1\r\nHost: t\r\nHost: other.example\r\n\r\n";
    let sockets = SocketsCheck::begin().await;
    let app = mock(Duration::from_secs(5)).await;

    let aws = lb(Cloud::Aws, app.addr, Duration::from_secs(5)).await;
    for raw in [&same[..], &differ[..]] {
        let (resp, closed) = send_raw(&aws, raw).await;
        assert_alb_page(&resp, 400, "Bad Request", "malformed_request");
        assert!(closed);
    }
    assert_eq!(
        app.requests(),
        0,
        "AWS: no request with two Hosts reached the app"
    );
    assert_eq!(aws.stats().by_status.get(&400), Some(&2));

    // Google's classic load balancer accepts them when the first Host is valid.
    let gcp = lb(Cloud::GcpClassic, app.addr, Duration::from_secs(5)).await;
    for raw in [&same[..], &differ[..]] {
        let (resp, _) = send_raw(&gcp, raw).await;
        assert_eq!(
            resp.status,
            200,
            "GCP serves {:?}",
            String::from_utf8_lossy(raw)
        );
    }
    assert_eq!(app.requests(), 2);
    let (resp, _) = send_raw(&gcp, b"GET / HTTP/1.1\r\nHost: a@b\r\nHost: t\r\n\r\n").await;
    assert_gfe_page(
        &resp,
        400,
        "Bad Request",
        "Bad Request",
        "malformed_request",
    );
    assert_eq!(app.requests(), 2, "an invalid first Host is not served");
    aws.shutdown().await;
    sockets.finish(gcp, app).await;
}
