//! WebSockets per profile (issue 15): the handshake passes through, bytes are relayed
//! both ways after the 101, and each cloud's timer closes an upgraded connection as the
//! cloud does — AWS ALB and GCP global external when it is idle, GCP classic at the
//! backend timeout whether idle or active. After each test every TCP socket is closed.
//!
//! The tests run one at a time (see [`serial`]): TCP sockets are counted for the whole
//! test process.

mod support;

use std::time::{Duration, Instant};

use lbsim::{Cloud, MockUpstream, Reason, SimHandle};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// RFC 6455 section 1.3's example key and the accept value it must produce.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
/// Scheduling slack after a timer on a loaded 2-core machine (never before it).
const LATE: Duration = Duration::from_millis(300);
/// A timer may fire this much before its nominal instant as the test measures it (the
/// test's clock starts before the request is sent, the relay's when the 101 arrives).
const EARLY: Duration = Duration::from_millis(20);

/// The mock app and lbsim for one test, with the socket count from before they started.
struct Rig {
    sockets: SocketsCheck,
    app: MockUpstream,
    lb: SimHandle,
}

impl Rig {
    async fn new(cloud: Cloud, timeout: Duration) -> Rig {
        let sockets = SocketsCheck::begin().await;
        let app = mock(Duration::from_secs(30)).await;
        let lb = lb(cloud, app.addr, timeout).await;
        Rig { sockets, app, lb }
    }

    /// Stops lbsim and the app, then waits until the socket count is back where it was.
    async fn finish(self) {
        self.sockets.finish(self.lb, self.app).await;
    }
}

/// An opened WebSocket: the client socket after the 101, and the 101's head.
struct Opened {
    stream: TcpStream,
    head: String,
    /// When the handshake was sent.
    sent_at: Instant,
}

impl Opened {
    /// The value of header `name` in the 101 (names compared without case: GCP's global
    /// profile lower-cases them).
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Sends a WebSocket handshake for `path` and reads the answer's head.
async fn handshake(lb: &SimHandle, path: &str) -> Opened {
    let mut stream = TcpStream::connect(lb.addr()).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    let sent_at = Instant::now();
    stream.write_all(request.as_bytes()).await.unwrap();
    // Byte by byte, so that nothing after the head is taken from the socket.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(READ_LIMIT, stream.read(&mut byte))
            .await
            .expect("the answer's head comes")
            .unwrap();
        assert_eq!(
            n,
            1,
            "closed inside the head: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    Opened {
        stream,
        head: String::from_utf8(head).unwrap(),
        sent_at,
    }
}

/// Asserts the 101 passed through with its handshake headers.
#[track_caller]
fn assert_switched(ws: &Opened) {
    assert!(
        ws.head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{}",
        ws.head
    );
    assert_eq!(ws.header("upgrade"), Some("websocket"), "{}", ws.head);
    assert_eq!(ws.header("connection"), Some("Upgrade"), "{}", ws.head);
    assert_eq!(
        ws.header("sec-websocket-accept"),
        Some(ACCEPT),
        "{}",
        ws.head
    );
}

/// A masked client text frame carrying `text` (RFC 6455 section 5.3).
fn client_frame(text: &str) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x81, 0x80 | text.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Reads from `stream` until it closes (end of stream or reset); the ticker frames seen
/// (each starts with the text opcode 0x81) and when it closed. None: still open at `limit`.
async fn frames_until_close(stream: &mut TcpStream, limit: Duration) -> Option<(usize, Instant)> {
    let mut frames = 0;
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    loop {
        let left = limit.checked_sub(start.elapsed())?;
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some((frames, Instant::now())),
            Ok(Ok(n)) => frames += count_frames(&buf[..n]),
        }
    }
}

/// Ticker frames in `bytes`: each is `0x81, len, "tick N"` (len < 126).
fn count_frames(bytes: &[u8]) -> usize {
    let mut at = 0;
    let mut count = 0;
    while at + 2 <= bytes.len() {
        assert_eq!(bytes[at], 0x81, "a text frame: {bytes:?}");
        at += 2 + bytes[at + 1] as usize;
        count += 1;
    }
    count
}

/// Waits for lbsim to close `ws`, asserts it did so at `timeout` (from the request) and
/// counted the cut as a timeout; the frames that arrived before.
async fn closed_at_the_timeout(rig: &Rig, ws: &mut Opened, timeout: Duration) -> usize {
    let (frames, closed) = frames_until_close(&mut ws.stream, Duration::from_secs(5))
        .await
        .expect("lbsim closes the WebSocket at the timeout");
    let open = closed - ws.sent_at;
    assert!(
        open + EARLY >= timeout && open <= timeout + LATE,
        "{open:?}"
    );
    wait_until("the cut is counted", Duration::from_secs(1), || {
        rig.lb.stats().count(Reason::TargetTimeout) == 1
    })
    .await;
    frames
}

#[tokio::test]
async fn the_handshake_and_bytes_both_ways_pass_through_on_every_profile() {
    for cloud in [Cloud::Aws, Cloud::Gcp, Cloud::GcpClassic] {
        let rig = Rig::new(cloud, Duration::from_secs(10)).await;
        let mut ws = handshake(&rig.lb, "/ws/echo").await;
        assert_switched(&ws);
        for text in ["hello", "and again, longer"] {
            let frame = client_frame(text);
            ws.stream.write_all(&frame).await.unwrap();
            let mut back = vec![0u8; frame.len()];
            tokio::time::timeout(READ_LIMIT, ws.stream.read_exact(&mut back))
                .await
                .expect("the echo comes back")
                .unwrap();
            assert_eq!(back, frame, "{cloud:?}: relayed both ways, byte for byte");
        }
        // The client closes: the relay ends, and the app's side closes after it.
        drop(ws);
        let stats = rig.lb.stats();
        assert_eq!(stats.by_status.get(&101), Some(&1), "{cloud:?}: {stats:?}");
        assert!(stats.by_cause.is_empty(), "{cloud:?}: {stats:?}");
        // An upgraded target connection is never pooled for another request.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(rig.lb.idle_connections(rig.app.addr), 0, "{cloud:?}");
        rig.finish().await;
    }
}

#[tokio::test]
async fn a_refused_upgrade_is_the_apps_answer_and_the_connection_stays_http() {
    let rig = Rig::new(Cloud::Aws, Duration::from_secs(10)).await;
    // The mock app answers 404 to a WebSocket path it does not have.
    let mut ws = handshake(&rig.lb, "/ws/nowhere").await;
    assert!(
        ws.head.starts_with("HTTP/1.1 404 Not Found\r\n"),
        "{}",
        ws.head
    );
    let mut body = [0u8; 9];
    ws.stream.read_exact(&mut body).await.unwrap();
    assert_eq!(&body, b"not found");
    // Still HTTP: the next request on the connection is judged and answered.
    let mut client = RawClient::from_stream(ws.stream);
    get_ok(&mut client).await;
    assert_eq!(rig.lb.stats().by_status.get(&404), Some(&1));
    drop(client);
    rig.finish().await;
}

#[tokio::test]
async fn aws_an_active_websocket_outlives_the_idle_timeout() {
    let timeout = Duration::from_millis(300);
    let rig = Rig::new(Cloud::Aws, timeout).await;
    let mut ws = handshake(&rig.lb, "/ws/ticker?interval=0.1").await;
    assert_switched(&ws);
    // Three idle timeouts long, a frame every 100 ms: never idle, never closed.
    assert_eq!(frames_until_close(&mut ws.stream, 3 * timeout).await, None);
    assert!(rig.lb.stats().by_cause.is_empty(), "{:?}", rig.lb.stats());
    drop(ws);
    rig.finish().await;
}

#[tokio::test]
async fn aws_a_silent_websocket_is_closed_at_the_idle_timeout() {
    let timeout = Duration::from_millis(300);
    let rig = Rig::new(Cloud::Aws, timeout).await;
    let mut ws = handshake(&rig.lb, "/ws/echo").await;
    assert_switched(&ws);
    closed_at_the_timeout(&rig, &mut ws, timeout).await;
    drop(ws);
    rig.finish().await;
}

#[tokio::test]
async fn aws_activity_then_silence_closes_one_idle_timeout_after_the_last_frame() {
    let timeout = Duration::from_millis(300);
    let rig = Rig::new(Cloud::Aws, timeout).await;
    let mut ws = handshake(&rig.lb, "/ws/echo").await;
    assert_switched(&ws);
    // Frames from the client for two timeouts' worth, each echoed: all activity.
    let mut last = Instant::now();
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let frame = client_frame("ping");
        ws.stream.write_all(&frame).await.unwrap();
        let mut back = vec![0u8; frame.len()];
        ws.stream.read_exact(&mut back).await.unwrap();
        last = Instant::now();
    }
    let (_, closed) = frames_until_close(&mut ws.stream, Duration::from_secs(5))
        .await
        .expect("closed once idle");
    let quiet = closed - last;
    assert!(
        quiet + EARLY >= timeout && quiet <= timeout + LATE,
        "{quiet:?}"
    );
    drop(ws);
    rig.finish().await;
}

#[tokio::test]
async fn gcp_classic_closes_even_an_active_websocket_at_the_backend_timeout() {
    let timeout = Duration::from_millis(500);
    let rig = Rig::new(Cloud::GcpClassic, timeout).await;
    let mut ws = handshake(&rig.lb, "/ws/ticker?interval=0.1").await;
    assert_switched(&ws);
    let frames = closed_at_the_timeout(&rig, &mut ws, timeout).await;
    // It was active all along: ticks arrived until the cut.
    assert!(frames >= 3, "{frames} frames");
    drop(ws);
    rig.finish().await;
}

#[tokio::test]
async fn gcp_global_keeps_an_active_websocket_past_the_backend_timeout() {
    let timeout = Duration::from_millis(500);
    let rig = Rig::new(Cloud::Gcp, timeout).await;
    let mut ws = handshake(&rig.lb, "/ws/ticker?interval=0.1").await;
    assert_switched(&ws);
    assert_eq!(
        frames_until_close(&mut ws.stream, 1200 * Duration::from_millis(1)).await,
        None
    );
    assert!(rig.lb.stats().by_cause.is_empty(), "{:?}", rig.lb.stats());
    drop(ws);
    rig.finish().await;
}

#[tokio::test]
async fn gcp_global_closes_a_silent_websocket_at_the_backend_timeout() {
    let timeout = Duration::from_millis(500);
    let rig = Rig::new(Cloud::Gcp, timeout).await;
    let mut ws = handshake(&rig.lb, "/ws/echo").await;
    assert_switched(&ws);
    closed_at_the_timeout(&rig, &mut ws, timeout).await;
    drop(ws);
    rig.finish().await;
}

/// An `Upgrade` to something other than WebSocket, then a GET on the same connection.
fn other_upgrade(protocol: &str) -> Vec<u8> {
    format!(
        "GET /headers HTTP/1.1\r\nHost: lbsim.test\r\nConnection: Upgrade\r\nUpgrade: {protocol}\r\n\r\n"
    )
    .into_bytes()
}

#[tokio::test]
async fn gcp_refuses_an_upgrade_it_does_not_relay_400_classic_403_global() {
    // Migration overview, "Connection upgrade failure": classic 400, global 403.
    for (cloud, status) in [(Cloud::GcpClassic, 400), (Cloud::Gcp, 403)] {
        let rig = Rig::new(cloud, Duration::from_secs(10)).await;
        let mut client = RawClient::connect(rig.lb.addr()).await;
        client.send(&other_upgrade("foo/1")).await;
        let resp = client.response().await.expect("the LB's answer");
        if status == 400 {
            assert_gfe_page(&resp, 400, "Bad Request", "Bad Request", "upgrade_failed");
        } else {
            // Envoy's local reply: no body, the connection closed.
            assert_eq!(resp.status, 403, "{}", resp.text());
            assert_eq!(resp.header("x-lbsim-reason"), Some("upgrade_failed"));
            assert_eq!(resp.header("content-length"), Some("0"));
            assert_eq!(resp.header("content-type"), None);
            assert_eq!(resp.header("via"), Some("1.1 google"));
            assert_eq!(resp.header("connection"), Some("close"));
            assert!(resp.text().is_empty());
        }
        assert!(client.closed_within(READ_LIMIT).await, "{cloud:?} closes");
        assert_eq!(rig.app.requests(), 0, "{cloud:?}: the app never sees it");
        assert_eq!(rig.lb.stats().count(Reason::UpgradeRefused), 1);
        drop(client);
        rig.finish().await;
    }
}

#[tokio::test]
async fn gcp_drops_an_h2c_upgrade_and_aws_relays_any_upgrade_to_the_app() {
    // GCP (Envoy drops h2c upgrades): the app gets a plain request, no Upgrade.
    let rig = Rig::new(Cloud::Gcp, Duration::from_secs(10)).await;
    let mut client = RawClient::connect(rig.lb.addr()).await;
    client.send(&other_upgrade("h2c")).await;
    let resp = client.response().await.expect("the app's answer");
    assert_eq!(resp.status, 200);
    let seen = resp.text().to_ascii_lowercase();
    assert!(!seen.contains("\r\nupgrade:"), "{seen}");
    assert!(!seen.contains("\r\nconnection: upgrade"), "{seen}");
    drop(client);
    rig.finish().await;
    // AWS: the upgrade reaches the app as asked (the mock answers it as a plain GET).
    let rig = Rig::new(Cloud::Aws, Duration::from_secs(10)).await;
    let mut client = RawClient::connect(rig.lb.addr()).await;
    client.send(&other_upgrade("foo/1")).await;
    let resp = client.response().await.expect("the app's answer");
    assert_eq!(resp.status, 200);
    assert!(resp.text().contains("Upgrade: foo/1"), "{}", resp.text());
    assert_eq!(rig.lb.stats().count(Reason::UpgradeRefused), 0);
    drop(client);
    rig.finish().await;
}
