//! ingress-nginx (`--cloud ingress-nginx`): nginx's idle read timeout, its own pages byte
//! for byte, 503 with no endpoint, and `proxy_next_upstream error timeout` retries on the
//! next endpoint.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use lbsim::{Cloud, RaceWindow, Reason, Simulator};
use support::*;

const READ: Duration = Duration::from_millis(600);
const TOLERANCE: Duration = Duration::from_millis(400);

#[tokio::test]
async fn a_silent_app_gets_nginx_504_at_the_read_timeout() {
    let app = mock(Duration::from_secs(5)).await;
    let lb = lb(Cloud::IngressNginx, app.addr, READ).await;
    let mut client = RawClient::connect(lb.addr()).await;
    let start = Instant::now();
    let resp = client.get("/sleep/5").await;
    // proxy_read_timeout is per try, and `timeout` is retried: 3 tries on the one target.
    assert_nginx_page(&resp, 504, "Gateway Time-out", "upstream_timed_out");
    assert_eq!(resp.body.len(), 160);
    assert_elapsed(start.elapsed(), READ * 3, TOLERANCE);
    assert_eq!(app.requests(), 3);
    assert_eq!(lb.stats().count(Reason::TargetTimeout), 1);
}

#[tokio::test]
async fn without_retries_the_504_comes_at_one_read_timeout() {
    let app = mock(Duration::from_secs(5)).await;
    let lb = Simulator::builder(Cloud::IngressNginx)
        .upstream(app.addr)
        .no_health_checks()
        .no_retry()
        .idle_timeout(READ)
        .start()
        .await
        .unwrap();
    let mut client = RawClient::connect(lb.addr()).await;
    let start = Instant::now();
    let resp = client.get("/sleep/5").await;
    assert_nginx_page(&resp, 504, "Gateway Time-out", "upstream_timed_out");
    assert_elapsed(start.elapsed(), READ, TOLERANCE);
}

#[tokio::test]
async fn a_stream_that_keeps_sending_outlives_the_read_timeout() {
    let app = mock(Duration::from_secs(5)).await;
    let lb = lb(Cloud::IngressNginx, app.addr, READ).await;
    let mut client = RawClient::connect(lb.addr()).await;
    let start = Instant::now();
    // Six chunks 250 ms apart: 1.5 s in all, never 600 ms without a byte.
    let resp = client.get("/stream/6?interval=0.25").await;
    assert_eq!(resp.status, 200);
    assert!(resp.complete, "the stream was cut");
    assert!(start.elapsed() > READ * 2);
}

#[tokio::test]
async fn no_endpoint_is_nginx_503() {
    let lb = Simulator::builder(Cloud::IngressNginx)
        .no_health_checks()
        .start()
        .await
        .unwrap();
    let mut client = RawClient::connect(lb.addr()).await;
    let resp = client.get("/").await;
    assert_nginx_page(
        &resp,
        503,
        "Service Temporarily Unavailable",
        "no_endpoints",
    );
    // The length public captures show.
    assert_eq!(resp.body.len(), 190);
}

#[tokio::test]
async fn a_refused_endpoint_is_retried_on_the_next_one() {
    let app = mock(Duration::from_secs(5)).await;
    let lb = two_targets(Cloud::IngressNginx, closed_port().await, app.addr)
        .start()
        .await
        .unwrap();
    let mut client = RawClient::connect(lb.addr()).await;
    let resp = get_ok(&mut client).await;
    assert_eq!(resp.header("x-lbsim-reason"), None);
    assert_eq!(app.requests(), 1);
    assert_eq!(lb.stats().retries, 1);
}

/// Sends `raw` (a POST) through ingress-nginx whose first endpoint refuses connections
/// and whose second is the mock app; the app, lbsim and the answer.
async fn post_with_the_first_endpoint_refused(
    raw: &[u8],
) -> (lbsim::MockUpstream, lbsim::SimHandle, RawResponse) {
    let app = mock(Duration::from_secs(5)).await;
    let lb = two_targets(Cloud::IngressNginx, closed_port().await, app.addr)
        .start()
        .await
        .unwrap();
    let mut client = RawClient::connect(lb.addr()).await;
    client.send(raw).await;
    let resp = client.response().await.expect("an answer");
    (app, lb, resp)
}

#[tokio::test]
async fn a_refused_bodyless_post_is_retried_as_it_was_never_sent() {
    let (app, _lb, resp) = post_with_the_first_endpoint_refused(
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert_eq!(resp.status, 200);
    assert_eq!(app.requests(), 1);
}

#[tokio::test]
async fn a_post_with_a_body_is_not_retried() {
    let (app, _lb, resp) = post_with_the_first_endpoint_refused(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
    )
    .await;
    assert_nginx_page(&resp, 502, "Bad Gateway", "connect_refused");
    assert_eq!(app.requests(), 0);
}

#[tokio::test]
async fn a_post_the_app_closed_on_is_502_and_not_retried() {
    let app = mock(Duration::from_secs(5)).await;
    let lb = two_targets(Cloud::IngressNginx, app.addr, app.addr)
        .start()
        .await
        .unwrap();
    let mut client = RawClient::connect(lb.addr()).await;
    client
        .send(b"POST /close HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
        .await;
    let resp = client.response().await.expect("an answer");
    assert_nginx_page(
        &resp,
        502,
        "Bad Gateway",
        "upstream_prematurely_closed_connection",
    );
    assert_eq!(app.requests(), 1);
    // A GET to the same path is sent to all three tries.
    let resp = client.get("/close").await;
    assert_eq!(resp.status, 502);
    assert_eq!(app.requests(), 4);
    // The app closed fresh connections: not the keep-alive race, which nginx logs alike.
    assert_eq!(
        lb.stats().by_cause,
        BTreeMap::from([(Reason::TargetClosedConnection, 2)])
    );
}

/// The app closes its idle keep-alive connection; nginx still reuses it. A GET is sent
/// again without using up a try (a cached connection's error gives the try back); a POST
/// was written on it, so nginx answers 502.
#[tokio::test]
async fn the_keep_alive_race_is_retried_for_a_get_and_502_for_a_post() {
    let app = mock(Duration::from_millis(300)).await;
    let lb = Simulator::builder(Cloud::IngressNginx)
        .no_health_checks()
        .upstream(app.addr)
        .race_window(RaceWindow::Always)
        .start()
        .await
        .unwrap();
    let mut client = RawClient::connect(lb.addr()).await;
    get_ok(&mut client).await;
    wait_until("the app closes its idle connection", READ_LIMIT, || {
        app.idle_closes() >= 1
    })
    .await;
    get_ok(&mut client).await;
    assert_eq!(app.requests(), 2);

    wait_until("the app closes its idle connection", READ_LIMIT, || {
        app.idle_closes() >= 2
    })
    .await;
    client
        .send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
        .await;
    let resp = client.response().await.expect("an answer");
    assert_nginx_page(
        &resp,
        502,
        "Bad Gateway",
        "upstream_prematurely_closed_connection",
    );
    assert_eq!(app.requests(), 2);
    // Only the POST's race was answered; the GET's retry left no count.
    assert_eq!(
        lb.stats().by_cause,
        BTreeMap::from([(Reason::KeepAliveRace, 1)])
    );
}

#[tokio::test]
async fn an_idle_client_connection_is_closed_after_keep_alive() {
    let app = mock(Duration::from_secs(5)).await;
    // keep-alive 75 s, scaled by 0.01: 750 ms.
    let lb = Simulator::builder(Cloud::IngressNginx)
        .no_health_checks()
        .upstream(app.addr)
        .time_scale(0.01)
        .start()
        .await
        .unwrap();
    assert_eq!(lb.config().timers.client_idle, Duration::from_millis(750));
    let mut client = RawClient::connect(lb.addr()).await;
    get_ok(&mut client).await;
    let start = Instant::now();
    assert!(client.closed_within(Duration::from_secs(3)).await);
    assert_elapsed(start.elapsed(), Duration::from_millis(750), TOLERANCE);
}

#[tokio::test]
async fn trace_is_nginx_405_and_a_long_header_its_494_page() {
    let app = mock(Duration::from_secs(5)).await;
    let lb = lb(Cloud::IngressNginx, app.addr, READ).await;
    let mut client = RawClient::connect(lb.addr()).await;
    client.send(b"TRACE / HTTP/1.1\r\nHost: t\r\n\r\n").await;
    let resp = client.response().await.expect("an answer");
    assert_nginx_page(&resp, 405, "Not Allowed", "method_not_allowed");

    let mut client = RawClient::connect(lb.addr()).await;
    let long = "x".repeat(9000);
    client
        .send(format!("GET / HTTP/1.1\r\nHost: t\r\nX-Long: {long}\r\n\r\n").as_bytes())
        .await;
    let resp = client.response().await.expect("an answer");
    assert_eq!(resp.status, 400);
    assert_eq!(resp.reason, "Bad Request");
    assert_eq!(resp.header("Connection"), Some("close"));
    assert_eq!(
        resp.text(),
        nginx_page("400 Request Header Or Cookie Too Large", "400 Bad Request")
    );
    assert_eq!(app.requests(), 0);
}
