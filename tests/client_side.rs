//! The client side of the LB: idle client connections, stalled requests (408), clients
//! that leave early (460), and the client keep-alive duration.

mod support;

use std::time::{Duration, Instant};

use lbsim::{Cloud, Reason, Simulator};
use support::*;

const IDLE: Duration = Duration::from_millis(500);
const TOLERANCE: Duration = Duration::from_millis(250);

#[tokio::test]
async fn aws_closes_an_idle_client_connection_after_the_idle_timeout() {
    let app = mock(Duration::from_secs(5)).await;
    let lb = lb(Cloud::Aws, app.addr, IDLE).await;
    let mut client = RawClient::connect(lb.addr()).await;
    assert_eq!(client.get("/").await.status, 200);
    let idle_from = Instant::now();
    assert!(client.closed_within(Duration::from_secs(3)).await);
    assert_elapsed(idle_from.elapsed(), IDLE, TOLERANCE);
}

#[tokio::test]
async fn aws_client_that_stalls_mid_head_gets_408_and_close() {
    let app = mock(Duration::from_secs(5)).await;
    let lb = lb(Cloud::Aws, app.addr, IDLE).await;
    let mut client = RawClient::connect(lb.addr()).await;
    let start = Instant::now();
    client.send(b"GET / HTTP/1.1\r\nHost: lbsim.test\r\n").await;
    let resp = client.response().await.expect("a 408 page");
    assert_elapsed(start.elapsed(), IDLE, TOLERANCE);
    assert_eq!(resp.status, 408);
    assert_eq!(resp.reason, "Request Time-out");
    assert_eq!(resp.header("Server"), Some("awselb/2.0"));
    assert_eq!(resp.header("Connection"), Some("close"));
    assert_eq!(resp.header("X-Lbsim-Reason"), Some("client_idle_timeout"));
    assert_eq!(resp.text(), alb_page("408 Request Time-out"));
    assert!(client.closed_within(Duration::from_secs(1)).await);
    assert_eq!(
        app.requests(),
        0,
        "a half-sent request never reaches the app"
    );
    assert_eq!(lb.stats().count(Reason::ClientTimeout), 1);
}

#[tokio::test]
async fn aws_client_that_stalls_mid_body_gets_408() {
    let app = mock(Duration::from_secs(5)).await;
    let lb = lb(Cloud::Aws, app.addr, IDLE).await;
    let mut client = RawClient::connect(lb.addr()).await;
    let start = Instant::now();
    client
        .send(b"POST /echo HTTP/1.1\r\nHost: lbsim.test\r\nContent-Length: 100\r\n\r\n0123456789")
        .await;
    let resp = client.response().await.expect("a 408 page");
    assert_elapsed(start.elapsed(), IDLE, TOLERANCE);
    assert_eq!(resp.status, 408);
    assert_eq!(resp.header("x-lbsim-reason"), Some("client_idle_timeout"));
}

#[tokio::test]
async fn client_that_leaves_before_the_answer_is_counted_as_460() {
    // The request has reached the app; leave. The LB learns of the FIN at once but
    // logs the request when the app's answer comes (it is still sent: a client that only
    // half-closed gets it).
    let (_app, lb, client) = aws_request_at_app("/sleep/1").await;
    drop(client);
    wait_until("the LB counts a 460", Duration::from_secs(3), || {
        lb.stats().by_status.contains_key(&460)
    })
    .await;
    assert_eq!(lb.stats().by_status.get(&460), Some(&1));
    assert_eq!(lb.stats().count(Reason::ClientClosed), 1);
}

#[tokio::test]
async fn aws_client_keep_alive_duration_ends_with_connection_close() {
    let app = mock(Duration::from_secs(5)).await;
    let lb = Simulator::builder(Cloud::Aws)
        .no_health_checks()
        .upstream(app.addr)
        .idle_timeout(Duration::from_secs(5))
        .client_keep_alive(Duration::from_millis(300))
        .start()
        .await
        .unwrap();
    let mut client = RawClient::connect(lb.addr()).await;
    let first = client.get("/").await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("connection"), None);
    tokio::time::sleep(Duration::from_millis(400)).await; // past the 300 ms duration
    let last = client.get("/").await;
    assert_eq!(last.status, 200);
    assert_eq!(last.header("connection"), Some("close"));
    assert!(client.closed_within(Duration::from_secs(1)).await);
}

#[tokio::test]
async fn gcp_client_keep_alive_closes_idle_client_connections() {
    let app = mock(Duration::from_secs(5)).await;
    let lb = Simulator::builder(Cloud::GcpClassic)
        .no_health_checks()
        .upstream(app.addr)
        .client_keep_alive(IDLE)
        .start()
        .await
        .unwrap();
    let mut client = RawClient::connect(lb.addr()).await;
    assert_eq!(client.get("/").await.status, 200);
    let idle_from = Instant::now();
    assert!(client.closed_within(Duration::from_secs(3)).await);
    assert_elapsed(idle_from.elapsed(), IDLE, TOLERANCE);
}
