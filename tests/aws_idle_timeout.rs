//! AWS ALB idle timeout: 504 only when no byte moved for the idle period.

mod support;

use std::time::{Duration, Instant};

use lbsim::{Cloud, MockOptions, MockUpstream, Reason};
use support::*;

const IDLE: Duration = Duration::from_millis(500);

#[tokio::test]
async fn silent_target_gets_alb_504_after_idle_timeout() {
    let app = mock(Duration::from_secs(5)).await;
    let lb = lb(Cloud::Aws, app.addr, IDLE).await;
    let mut client = RawClient::connect(lb.addr()).await;
    let start = Instant::now();
    let resp = client.get("/sleep/3").await;
    assert_elapsed(start.elapsed(), IDLE, Duration::from_millis(150));
    assert_eq!(resp.status, 504);
    assert_eq!(resp.reason, "Gateway Time-out");
    assert_eq!(resp.header("Server"), Some("awselb/2.0"));
    assert_eq!(resp.header("Content-Type"), Some("text/html"));
    assert_eq!(resp.header("x-lbsim-reason"), Some("target_idle_timeout"));
    assert_eq!(resp.text(), alb_page("504 Gateway Time-out"));
    assert_eq!(
        resp.header("Content-Length"),
        Some(resp.body.len().to_string().as_str())
    );
    assert_eq!(lb.stats().count(Reason::TargetTimeout), 1);
}

/// Sends `GET path`, waits for the first response byte (the head) without consuming it,
/// and returns when it came.
async fn get_and_wait_for_head(client: &mut RawClient, path: &str) -> Instant {
    client
        .send(format!("GET {path} HTTP/1.1\r\nHost: lbsim.test\r\n\r\n").as_bytes())
        .await;
    let mut one = [0u8; 1];
    let n = tokio::time::timeout(READ_LIMIT, client.stream.peek(&mut one))
        .await
        .expect("a response head in time")
        .expect("peek");
    assert_eq!(n, 1, "connection closed before any response byte");
    Instant::now()
}

fn chunk_text(range: std::ops::Range<u32>) -> String {
    range.map(|i| format!("chunk {i}\n")).collect()
}

#[tokio::test]
async fn stream_with_short_gaps_outlives_the_idle_timeout() {
    let app = mock(Duration::from_secs(5)).await;
    let lb = lb(Cloud::Aws, app.addr, IDLE).await;
    let mut client = RawClient::connect(lb.addr()).await;
    let start = Instant::now();
    // 8 chunks 200 ms apart: no gap reaches the idle timeout, the whole takes 1.6 s.
    let resp = client.get("/stream/8?interval=0.2").await;
    let elapsed = start.elapsed();
    assert_eq!(resp.status, 200);
    assert!(resp.complete, "stream was cut: {:?}", resp.text());
    assert_eq!(resp.text(), chunk_text(0..8));
    assert!(
        elapsed >= Duration::from_millis(1600),
        "stream ended after {elapsed:?}, before its 1.6 s length"
    );
    assert_eq!(resp.header("x-lbsim-reason"), None);
    assert_eq!(lb.stats().count(Reason::TargetTimeout), 0);
    // The client connection is still usable.
    assert_eq!(client.get("/").await.text(), "ok");
}

#[tokio::test]
async fn body_stalled_after_head_is_cut_at_the_idle_timeout() {
    let app = mock(Duration::from_secs(5)).await;
    let lb = lb(Cloud::Aws, app.addr, IDLE).await;
    let mut client = RawClient::connect(lb.addr()).await;
    // Head at once, first chunk only after 2 s: four times the idle timeout.
    let head_at = get_and_wait_for_head(&mut client, "/stream/2?interval=2").await;
    let resp = client.response().await.expect("the response head");
    let after_head = head_at.elapsed();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.reason, "OK");
    assert_eq!(resp.header("server"), Some("uvicorn"));
    assert!(!resp.complete, "body should be truncated");
    assert!(resp.body.is_empty(), "no chunk was sent: {:?}", resp.text());
    assert_eq!(resp.header("x-lbsim-reason"), None);
    assert!(
        after_head + Duration::from_millis(50) >= IDLE
            && after_head <= IDLE + Duration::from_millis(250),
        "connection closed {after_head:?} after the head, expected about {IDLE:?}"
    );
    let stats = lb.stats();
    assert_eq!(stats.count(Reason::TargetTimeout), 1);
    assert_eq!(stats.by_status.get(&200), Some(&1));
    assert_eq!(stats.by_status.get(&504), None);
}

#[tokio::test]
async fn idle_clock_restarts_when_the_head_arrives() {
    // The app takes 400 ms to send its head, then stalls. The head's bytes are activity,
    // so the idle timeout runs from the head: the cut comes ~500 ms after it (~900 ms after
    // the request), not 500 ms after the request.
    let app = MockUpstream::start(
        "127.0.0.1:0".parse().unwrap(),
        MockOptions {
            keep_alive: Duration::from_secs(5),
            latency: Duration::from_millis(400),
            ..MockOptions::default()
        },
    )
    .await
    .unwrap();
    let lb = lb(Cloud::Aws, app.addr, IDLE).await;
    let mut client = RawClient::connect(lb.addr()).await;
    let start = Instant::now();
    let head_at = get_and_wait_for_head(&mut client, "/stream/2?interval=2").await;
    assert!(
        head_at - start >= Duration::from_millis(400),
        "head came before the app's latency"
    );
    let resp = client.response().await.expect("the response head");
    let after_head = head_at.elapsed();
    assert_eq!(resp.status, 200);
    assert!(!resp.complete);
    assert!(
        after_head + Duration::from_millis(50) >= IDLE
            && after_head <= IDLE + Duration::from_millis(250),
        "connection closed {after_head:?} after the head, expected about {IDLE:?}"
    );
    assert_eq!(lb.stats().count(Reason::TargetTimeout), 1);
}

#[tokio::test]
async fn content_length_longer_than_body_is_cut_at_the_idle_timeout() {
    let app = mock(Duration::from_secs(5)).await;
    let lb = lb(Cloud::Aws, app.addr, IDLE).await;
    let mut client = RawClient::connect(lb.addr()).await;
    let start = Instant::now();
    // Declares 100 bytes, sends 10, then nothing.
    let resp = client.get("/short/100/10").await;
    assert_elapsed(start.elapsed(), IDLE, Duration::from_millis(250));
    assert!(start.elapsed() >= IDLE - Duration::from_millis(50));
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-length"), Some("100"));
    assert!(!resp.complete, "body should be truncated");
    assert_eq!(resp.body, vec![b'x'; 10]);
    assert_eq!(lb.stats().count(Reason::TargetTimeout), 1);
}

/// Sends a POST to `/echo` whose body goes out in `pieces` pieces `gap` apart.
async fn slow_upload(client: &mut RawClient, chunked: bool, pieces: &[Vec<u8>], gap: Duration) {
    let total: usize = pieces.iter().map(Vec::len).sum();
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_string()
    } else {
        format!("Content-Length: {total}")
    };
    client
        .send(format!("POST /echo HTTP/1.1\r\nHost: lbsim.test\r\n{framing}\r\n\r\n").as_bytes())
        .await;
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(gap).await;
        }
        if chunked {
            let mut framed = format!("{:x}\r\n", piece.len()).into_bytes();
            framed.extend_from_slice(piece);
            framed.extend_from_slice(b"\r\n");
            client.send(&framed).await;
        } else {
            client.send(piece).await;
        }
    }
    if chunked {
        client.send(b"0\r\n\r\n").await;
    }
}

async fn slow_upload_case(chunked: bool) {
    let app = mock(Duration::from_secs(5)).await;
    let lb = lb(Cloud::Aws, app.addr, IDLE).await;
    let mut client = RawClient::connect(lb.addr()).await;
    // 7 pieces 200 ms apart: 1.2 s in total, more than twice the idle timeout.
    let pieces: Vec<Vec<u8>> = (0..7u8).map(|i| vec![b'a' + i; 1000]).collect();
    let start = Instant::now();
    slow_upload(&mut client, chunked, &pieces, Duration::from_millis(200)).await;
    let resp = client.response().await.expect("a response");
    assert!(start.elapsed() >= Duration::from_millis(1200));
    assert_eq!(resp.status, 200, "body: {}", resp.text());
    assert_eq!(resp.header("x-lbsim-reason"), None);
    assert!(resp.complete);
    assert_eq!(resp.body, pieces.concat());
    assert_eq!(lb.stats().count(Reason::TargetTimeout), 0);
}

#[tokio::test]
async fn slow_upload_counts_as_activity() {
    slow_upload_case(false).await;
}

#[tokio::test]
async fn slow_chunked_upload_counts_as_activity() {
    slow_upload_case(true).await;
}
