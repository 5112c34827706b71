//! Google's two external Application Load Balancers, side by side: the rows of Google's
//! "Migration overview" (load-balancing/docs/https/migrate-to-global) that lbsim emits,
//! one test per row, each over real sockets against both `--cloud gcp` (global external,
//! Envoy-based) and `--cloud gcp-classic` (Google Front Ends).
//!
//! Rows not here: a failed WebSocket upgrade (400 / 403) — lbsim does not relay
//! WebSockets yet; a banned TLS cipher — lbsim listens on plain HTTP.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use lbsim::{Cloud, HealthOverride, SimHandle};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

async fn gcp(cloud: Cloud, app: SocketAddr) -> SimHandle {
    lb(cloud, app, Duration::from_secs(5)).await
}

#[tokio::test]
async fn all_backends_unhealthy_is_502_classic_503_global() {
    let sockets = SocketsCheck::begin().await;
    let app = mock(Duration::from_secs(5)).await;
    for cloud in [Cloud::GcpClassic, Cloud::Gcp] {
        let lb = gcp(cloud, app.addr).await;
        let id = lb.targets()[0].id;
        lb.set_health(id, HealthOverride::Unhealthy).unwrap();
        let resp = RawClient::connect(lb.addr()).await.get("/").await;
        match cloud {
            Cloud::GcpClassic => assert_gfe_page(
                &resp,
                502,
                "Bad Gateway",
                "Server Error",
                "no_healthy_backend",
            ),
            _ => assert_no_healthy_upstream(&resp, "no_healthy_backend"),
        }
        lb.shutdown().await;
    }
    assert_eq!(app.requests(), 0, "no fail-open on either generation");
    app.kill();
    drop(app);
    sockets.all_closed().await;
}

#[tokio::test]
async fn headers_too_large_is_413_classic_431_global() {
    let sockets = SocketsCheck::begin().await;
    let app = mock(Duration::from_secs(5)).await;
    // GCP's limit is 64 KiB for the request line and headers together.
    let big = format!(
        "GET / HTTP/1.1\r\nHost: lbsim.test\r\nX-Big: {}\r\n\r\n",
        "x".repeat(70 * 1024)
    );
    for cloud in [Cloud::GcpClassic, Cloud::Gcp] {
        let lb = gcp(cloud, app.addr).await;
        let mut client = RawClient::connect(lb.addr()).await;
        client.send(big.as_bytes()).await;
        let resp = client.response().await.expect("the LB's answer");
        match cloud {
            Cloud::GcpClassic => assert_gfe_page(
                &resp,
                413,
                "Payload Too Large",
                "Request Entity Too Large",
                "headers_too_long",
            ),
            _ => {
                assert_envoy_page(
                    &resp,
                    431,
                    "Request Header Fields Too Large",
                    "Request Header Fields Too Large",
                    "headers_too_long",
                );
                assert_eq!(resp.header("connection"), Some("close"));
            }
        }
        assert!(client.closed_within(Duration::from_secs(2)).await);
        lb.shutdown().await;
    }
    assert_eq!(app.requests(), 0);
    app.kill();
    drop(app);
    sockets.all_closed().await;
}

/// The request head the app received through `cloud` for a request carrying `extra`.
async fn seen_by_app(cloud: Cloud, extra: &str) -> String {
    let app = mock(Duration::from_secs(5)).await;
    let lb = gcp(cloud, app.addr).await;
    let mut client = RawClient::connect(lb.addr()).await;
    client
        .send(format!("GET /headers HTTP/1.1\r\nHost: lbsim.test\r\n{extra}\r\n").as_bytes())
        .await;
    let resp = client.response().await.expect("the app's answer");
    assert_eq!(resp.status, 200);
    drop(client);
    lb.shutdown().await;
    app.kill();
    resp.text()
}

#[tokio::test]
async fn x_forwarded_for_separator_is_comma_space_classic_comma_global() {
    let sockets = SocketsCheck::begin().await;
    let classic = seen_by_app(Cloud::GcpClassic, "X-Forwarded-For: 10.0.0.1\r\n").await;
    assert!(
        classic.contains("X-Forwarded-For: 10.0.0.1, 127.0.0.1, 127.0.0.1\r\n"),
        "{classic}"
    );
    let global = seen_by_app(Cloud::Gcp, "X-Forwarded-For: 10.0.0.1\r\n").await;
    assert!(
        global.contains("x-forwarded-for: 10.0.0.1,127.0.0.1,127.0.0.1\r\n"),
        "{global}"
    );
    sockets.all_closed().await;
}

#[tokio::test]
async fn header_names_are_preserved_classic_lower_cased_global_both_ways() {
    let sockets = SocketsCheck::begin().await;
    // Towards the app.
    let classic = seen_by_app(Cloud::GcpClassic, "X-Request-Tag: a\r\n").await;
    assert!(classic.contains("X-Request-Tag: a\r\n"), "{classic}");
    let global = seen_by_app(Cloud::Gcp, "X-Request-Tag: a\r\n").await;
    assert!(global.contains("x-request-tag: a\r\n"), "{global}");
    assert!(!global.contains("X-Request-Tag"), "{global}");

    // Back to the client: an app that writes its own header names.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nX-App-Header: 1\r\nContent-Length: 2\r\n\r\nok")
                    .await;
            });
        }
    });
    for (cloud, name) in [
        (Cloud::GcpClassic, "X-App-Header"),
        (Cloud::Gcp, "x-app-header"),
    ] {
        let lb = gcp(cloud, addr).await;
        let resp = RawClient::connect(lb.addr()).await.get("/").await;
        assert_eq!(resp.status, 200);
        assert!(
            resp.headers.iter().any(|(n, v)| n == name && v == "1"),
            "{cloud:?}: {:?}",
            resp.headers
        );
        lb.shutdown().await;
    }
    app.abort();
    let _ = app.await;
    sockets.all_closed().await;
}
