//! GCP backend timeout: end to end, bytes flowing or not; and each generation's own
//! answers (the classic load balancer's GFE pages, the global one's Envoy replies).

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use lbsim::{Cloud, MockUpstream, Reason, SimHandle};
use support::*;

const TIMEOUT: Duration = Duration::from_millis(500);

/// A classic GFE with two targets served round-robin: `first` gets the first request,
/// `then` the second. No retry, so that the first target's failure is what the client
/// sees (GCP would otherwise send a failed GET to the next one).
async fn gfe(first: SocketAddr, then: SocketAddr) -> SimHandle {
    two_targets(Cloud::GcpClassic, first, then)
        .no_retry()
        .backend_timeout(Duration::from_secs(5))
        .start()
        .await
        .expect("lbsim starts")
}

/// `GET /sleep/3` behind `cloud` with the backend timeout at [`TIMEOUT`]: the answer,
/// which must come at the timeout.
async fn timed_out(cloud: Cloud) -> (SimHandle, RawResponse) {
    let app = mock(Duration::from_secs(5)).await;
    let lb = lb(cloud, app.addr, TIMEOUT).await;
    let mut client = RawClient::connect(lb.addr()).await;
    let start = Instant::now();
    let resp = client.get("/sleep/3").await;
    let elapsed = start.elapsed();
    assert!(elapsed >= TIMEOUT, "answered after {elapsed:?}");
    assert_elapsed(elapsed, TIMEOUT, Duration::from_millis(250));
    assert_eq!(lb.stats().count(Reason::TargetTimeout), 1);
    (lb, resp)
}

#[tokio::test]
async fn classic_no_head_within_backend_timeout_is_the_502_gfe_page() {
    // gcloud `--timeout`: "If the backend does not reply at all, the load balancer
    // returns a 502 Bad Gateway error to the client."
    let (lb, resp) = timed_out(Cloud::GcpClassic).await;
    assert_gfe_page(&resp, 502, "Bad Gateway", "Server Error", "backend_timeout");
    assert_eq!(lb.stats().by_status.get(&502), Some(&1));
}

#[tokio::test]
async fn global_no_head_within_backend_timeout_is_envoys_504() {
    // Envoy's route timeout, as the Anyscale article and public reports show (Google's log
    // table says "502, 503": lbsim follows the reports; see `lbsim facts`).
    let (lb, resp) = timed_out(Cloud::Gcp).await;
    assert_envoy_page(
        &resp,
        504,
        "Gateway Timeout",
        "upstream request timeout",
        "backend_timeout",
    );
    assert_eq!(lb.stats().by_status.get(&504), Some(&1));
}

const STREAM: &str = "/stream/20?interval=0.1";
const STREAM_TIMEOUT: Duration = Duration::from_millis(800);

fn chunk_text(range: std::ops::Range<u32>) -> String {
    range.map(|i| format!("chunk {i}\n")).collect()
}

#[tokio::test]
async fn flowing_stream_is_cut_at_the_backend_timeout() {
    let app = mock(Duration::from_secs(5)).await;
    let lb = lb(Cloud::GcpClassic, app.addr, STREAM_TIMEOUT).await;
    let mut client = RawClient::connect(lb.addr()).await;
    let start = Instant::now();
    // 20 chunks 100 ms apart: bytes flow all the time, the whole takes 2 s.
    let resp = client.get(STREAM).await;
    let elapsed = start.elapsed();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("x-lbsim-reason"), None);
    assert!(!resp.complete, "stream should be cut: {:?}", resp.text());
    assert!(
        elapsed >= STREAM_TIMEOUT - Duration::from_millis(50),
        "cut after {elapsed:?}"
    );
    assert_elapsed(elapsed, STREAM_TIMEOUT, Duration::from_millis(250));
    let text = resp.text();
    let chunks = text.lines().count() as u32;
    assert!(
        (3..20).contains(&chunks),
        "{chunks} chunks arrived; expected some, but not all 20"
    );
    assert!(
        chunk_text(0..20).starts_with(&text),
        "body is not a prefix of the stream: {text:?}"
    );
    assert_eq!(lb.stats().count(Reason::TargetTimeout), 1);
    assert_eq!(lb.stats().by_status.get(&200), Some(&1));
}

#[tokio::test]
async fn same_stream_survives_aws_idle_timeout_of_the_same_length() {
    // The migration trap: what GCP cuts at 800 ms, the ALB with idle 800 ms lets through.
    let app = mock(Duration::from_secs(5)).await;
    let lb = lb(Cloud::Aws, app.addr, STREAM_TIMEOUT).await;
    let mut client = RawClient::connect(lb.addr()).await;
    let start = Instant::now();
    let resp = client.get(STREAM).await;
    assert_eq!(resp.status, 200);
    assert!(resp.complete, "stream was cut: {:?}", resp.text());
    assert_eq!(resp.text(), chunk_text(0..20));
    assert!(start.elapsed() >= Duration::from_secs(2));
    assert!(lb.stats().by_cause.is_empty());
}

/// What [`gfe_502_for`] leaves for further checks.
struct Failed {
    /// The mock app, kept running for as long as the test holds this.
    _app: MockUpstream,
    lb: SimHandle,
    /// The 502 page.
    resp: RawResponse,
}

/// Sends `GET path` through a GFE whose first target is `first` (the mock app when
/// `None`), asserts the GFE's 502 "Server Error" page with cause `reason`, and that the
/// same client connection then gets a 200 from the mock.
async fn gfe_502_for(first: Option<SocketAddr>, path: &str, reason: &str) -> Failed {
    let app = mock(Duration::from_secs(5)).await;
    let lb = gfe(first.unwrap_or(app.addr), app.addr).await;
    let mut client = RawClient::connect(lb.addr()).await;
    let resp = client.get(path).await;
    assert_gfe_page(&resp, 502, "Bad Gateway", "Server Error", reason);
    get_ok(&mut client).await;
    Failed {
        _app: app,
        lb,
        resp,
    }
}

#[tokio::test]
async fn refused_is_502_server_error() {
    let reason = "failed_to_connect_to_backend";
    let failed = gfe_502_for(Some(closed_port().await), "/", reason).await;
    assert_eq!(failed.resp.text(), gfe_page("502 Server Error"));
    // A connect timeout has the same word.
    assert_eq!(
        failed.lb.stats().by_cause,
        BTreeMap::from([(Reason::ConnectRefused, 1)])
    );
}

#[tokio::test]
async fn refused_get_is_retried_on_the_next_backend_a_post_is_not() {
    let app = mock(Duration::from_secs(5)).await;
    let lb = two_targets(Cloud::GcpClassic, closed_port().await, app.addr)
        .start()
        .await
        .unwrap();
    let mut client = RawClient::connect(lb.addr()).await;
    // The GET meets the closed port, then the app: the client sees only the app's 200.
    get_ok(&mut client).await;
    assert_eq!(lb.stats().retries, 1);
    assert_eq!(app.requests(), 1);
    // Round robin brings the closed port round again: a POST is not retried.
    client
        .send(b"POST /echo HTTP/1.1\r\nHost: lbsim.test\r\nContent-Length: 0\r\n\r\n")
        .await;
    let resp = client.response().await.expect("an answer");
    assert_gfe_page(
        &resp,
        502,
        "Bad Gateway",
        "Server Error",
        "failed_to_connect_to_backend",
    );
    assert_eq!(lb.stats().retries, 1);
    // The retried GET's failure is not counted: only the POST's answer is.
    assert_eq!(
        lb.stats().by_cause,
        BTreeMap::from([(Reason::ConnectRefused, 1)])
    );
}

#[tokio::test]
async fn closed_before_data_is_502() {
    let reason = "backend_connection_closed_before_data_sent_to_client";
    let failed = gfe_502_for(None, "/close", reason).await;
    // The keep-alive race has the same word.
    assert_eq!(
        failed.lb.stats().by_cause,
        BTreeMap::from([(Reason::TargetClosedConnection, 1)])
    );
}

#[tokio::test]
async fn reset_before_data_is_502() {
    let reason = "backend_connection_closed_before_data_sent_to_client";
    let failed = gfe_502_for(None, "/reset", reason).await;
    assert_eq!(
        failed.lb.stats().by_cause,
        BTreeMap::from([(Reason::TargetClosedConnection, 1)])
    );
}

#[tokio::test]
async fn garbage_is_502_backend_response_corrupted() {
    let reason = "backend_response_corrupted";
    let failed = gfe_502_for(None, "/garbage", reason).await;
    assert_eq!(failed.lb.stats().count(Reason::MalformedResponse), 1);
}
