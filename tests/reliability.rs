//! Reliability: the failures of an abuse run (issue 19), each over real sockets with the
//! shape of traffic that broke it — a body in a later segment, a half-close, a client that
//! stops reading, an app that never reads — and, after each, every file descriptor the
//! test opened is closed again.
//!
//! The tests here run one at a time (see [`SocketsCheck`]): TCP sockets are counted for the whole
//! test process, so a test running beside another would see its sockets.

mod support;

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use lbsim::{Cloud, MockUpstream, Reason, SimHandle};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The main timeout in these tests: short, so the suite stays fast.
const TIMEOUT: Duration = Duration::from_millis(400);
/// Scheduling slack around a timer on a loaded 2-core machine.
const TOLERANCE: Duration = Duration::from_millis(300);

/// A hand-written app on a free port: each accepted connection is given to `serve`.
/// The returned task ends when the test drops it (its sockets close with it).
async fn raw_app<F, Fut>(serve: F) -> (SocketAddr, tokio::task::JoinHandle<()>)
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            conns.spawn(serve(stream));
        }
    });
    (addr, task)
}

/// Reads a request head (up to the empty line) from an app-side socket.
async fn read_head(stream: &mut TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    head
}

/// Reads whatever comes until end of stream or reset; the bytes read.
async fn read_to_close(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut all = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    let start = Instant::now();
    loop {
        let left = limit.checked_sub(start.elapsed())?;
        match tokio::time::timeout(left, stream.read(&mut chunk)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(all),
            Ok(Ok(n)) => all.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The same socket twice (a duplicated descriptor): one handle writes an upload while the
/// other reads the answer with [`RawClient`].
fn two_handles(stream: TcpStream) -> (TcpStream, TcpStream) {
    let std = stream.into_std().unwrap();
    let other = std.try_clone().unwrap();
    (
        TcpStream::from_std(std).unwrap(),
        TcpStream::from_std(other).unwrap(),
    )
}

async fn aws_lb(app: SocketAddr) -> SimHandle {
    lb(Cloud::Aws, app, TIMEOUT).await
}

// 1. A body sent after its head.

/// The mock's echo of `abc`, then the client idle timeout closes the connection with no
/// stray bytes (no unsolicited 408), then every socket is closed.
async fn answered_abc_then_idle_close(
    rig: SocketsCheck,
    lb: SimHandle,
    app: MockUpstream,
    mut client: RawClient,
) {
    let resp = client.response().await.expect("the app's answer");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"abc");
    let idle_from = Instant::now();
    assert!(client.closed_within(Duration::from_secs(3)).await);
    assert_elapsed(idle_from.elapsed(), TIMEOUT, TOLERANCE);
    assert!(client.leftover().is_empty());
    assert_eq!(lb.stats().by_status.get(&408), None);
    drop(client);
    rig.finish(lb, app).await;
}

#[tokio::test]
async fn body_in_a_later_segment_earns_no_unsolicited_408() {
    let rig = SocketsCheck::begin().await;
    let app = mock(Duration::from_secs(30)).await;
    let lb = aws_lb(app.addr).await;
    let mut client = RawClient::connect(lb.addr()).await;
    client
        .send(b"POST /echo HTTP/1.1\r\nHost: lbsim.test\r\nContent-Length: 3\r\n\r\n")
        .await;
    // The shape under test: Python's http.client writes head and body separately.
    tokio::time::sleep(Duration::from_millis(50)).await;
    client.send(b"abc").await;
    let resp = client.response().await.expect("the app's answer");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"abc");
    let idle_from = Instant::now();
    assert!(client.closed_within(Duration::from_secs(3)).await);
    assert_elapsed(idle_from.elapsed(), TIMEOUT, TOLERANCE);
    assert!(
        client.leftover().is_empty(),
        "nothing after the answer, got {:?}",
        String::from_utf8_lossy(client.leftover())
    );
    let stats = lb.stats();
    assert_eq!(stats.by_status.get(&408), None);
    assert_eq!(stats.by_status.get(&200), Some(&1));
    drop(client);
    rig.finish(lb, app).await;
}

#[tokio::test]
async fn chunked_body_in_one_packet_then_the_idle_close() {
    let rig = SocketsCheck::begin().await;
    let app = mock(Duration::from_secs(30)).await;
    let lb = aws_lb(app.addr).await;
    let mut client = RawClient::connect(lb.addr()).await;
    client
        .send(b"POST /echo HTTP/1.1\r\nHost: lbsim.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
        .await;
    answered_abc_then_idle_close(rig, lb, app, client).await;
}

#[tokio::test]
async fn expect_100_continue_then_the_idle_close() {
    let rig = SocketsCheck::begin().await;
    let app = mock(Duration::from_secs(30)).await;
    let lb = aws_lb(app.addr).await;
    let mut client = RawClient::connect(lb.addr()).await;
    client
        .send(b"POST /echo HTTP/1.1\r\nHost: lbsim.test\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
        .await;
    let interim = client.response().await.expect("100 Continue");
    assert_eq!(interim.status, 100);
    client.send(b"abc").await;
    answered_abc_then_idle_close(rig, lb, app, client).await;
}

// 2. A request, then the client's FIN.

#[tokio::test]
async fn request_then_half_close_is_answered() {
    let rig = SocketsCheck::begin().await;
    let app = mock(Duration::from_secs(30)).await;
    let lb = aws_lb(app.addr).await;
    let mut client = RawClient::connect(lb.addr()).await;
    client
        .send(b"GET / HTTP/1.1\r\nHost: lbsim.test\r\n\r\n")
        .await;
    client.stream.shutdown().await.unwrap();
    let resp = client.response().await.expect("an answer despite the FIN");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "ok");
    assert!(client.closed_within(Duration::from_secs(2)).await);
    assert_eq!(app.requests(), 1);
    // The FIN came before the answer: the LB logs the client's departure (ALB's 460:
    // "the client closed the connection"), though the answer went out all the same.
    let stats = lb.stats();
    assert_eq!(stats.by_status.get(&460), Some(&1));
    assert_eq!(stats.count(Reason::ClientClosed), 1);
    assert_eq!(stats.by_status.get(&200), None);
    drop(client);
    rig.finish(lb, app).await;
}

#[tokio::test]
async fn a_thousand_pipelined_requests_then_half_close_are_all_answered() {
    const N: usize = 1000;
    let rig = SocketsCheck::begin().await;
    let app = mock(Duration::from_secs(30)).await;
    let lb = aws_lb(app.addr).await;
    let mut client = TcpStream::connect(lb.addr()).await.unwrap();
    let one = b"GET / HTTP/1.1\r\nHost: lbsim.test\r\n\r\n";
    let (mut read, mut write) = client.split();
    let writer = async {
        write.write_all(&one.repeat(N)).await.unwrap();
        write.shutdown().await.unwrap();
    };
    let mut all = Vec::new();
    let reader = async {
        // A reset here would be an error: the answers must end with a clean FIN.
        tokio::time::timeout(Duration::from_secs(20), read.read_to_end(&mut all))
            .await
            .expect("lbsim closes after the last answer")
            .expect("closed with a FIN, not a reset");
    };
    tokio::join!(writer, reader);
    let answers = all
        .windows(b"HTTP/1.1 200 OK\r\n".len())
        .filter(|w| *w == b"HTTP/1.1 200 OK\r\n")
        .count();
    assert_eq!(answers, N);
    assert_eq!(app.requests(), N as u64);
    // Answers still owed when the FIN arrived are logged 460 (at most the one in flight
    // then: hyper takes pipelined requests one at a time).
    let stats = lb.stats();
    let left = stats.by_status.get(&460).copied().unwrap_or(0);
    assert!(left <= 1, "{:?}", stats.by_status);
    assert_eq!(
        stats.by_status.get(&200).copied().unwrap_or(0) + left,
        N as u64
    );
    drop(client);
    rig.finish(lb, app).await;
}

// 3. A client that never reads.

/// The cut is the main timeout's, on either cloud (AWS idle, GCP end to end).
async fn client_that_never_reads_is_cut(cloud: Cloud) {
    let rig = SocketsCheck::begin().await;
    let app = mock(Duration::from_secs(30)).await;
    let lb = lb(cloud, app.addr, TIMEOUT).await;
    let mut client = RawClient::connect(lb.addr()).await;
    let start = Instant::now();
    client
        .send(b"GET /bytes/1073741824 HTTP/1.1\r\nHost: lbsim.test\r\n\r\n")
        .await;
    // Never read: once the socket buffers are full, no byte moves.
    wait_until(
        "the LB cuts the stalled response",
        Duration::from_secs(5),
        || lb.stats().count(Reason::TargetTimeout) == 1,
    )
    .await;
    if cloud == Cloud::Gcp {
        // End to end: the cut comes at the timeout, bytes flowing or not.
        assert_elapsed(start.elapsed(), TIMEOUT, TOLERANCE);
    }
    // lbsim holds at most a bounded amount per connection: what reaches the client is
    // the socket buffers and a few of hyper's, not the gigabyte.
    let received = read_to_close(&mut client.stream, Duration::from_secs(5))
        .await
        .expect("the connection is closed after the cut");
    assert!(
        received.len() < 64 * 1024 * 1024,
        "{} bytes were buffered for a client that did not read",
        received.len()
    );
    drop(client);
    rig.finish(lb, app).await;
}

#[tokio::test]
async fn aws_client_that_never_reads_is_cut_at_the_idle_timeout() {
    client_that_never_reads_is_cut(Cloud::Aws).await;
}

#[tokio::test]
async fn gcp_client_that_never_reads_is_cut_at_the_backend_timeout() {
    client_that_never_reads_is_cut(Cloud::Gcp).await;
}

// 4. An app that never reads the body and never answers.

async fn app_that_never_reads_the_body(cloud: Cloud, check: impl Fn(&RawResponse)) {
    let rig = SocketsCheck::begin().await;
    let (closed_tx, mut closed_rx) = tokio::sync::mpsc::unbounded_channel();
    let (addr, app_task) = raw_app(move |mut stream| {
        let closed = closed_tx.clone();
        async move {
            // Takes the connection and never reads: its buffers fill and the upload
            // stalls. Then learns, by reading at last, that lbsim closed it.
            let mut byte = [0u8; 1];
            let _ = tokio::time::timeout(TIMEOUT * 3, std::future::pending::<()>()).await;
            let ended = read_to_close(&mut stream, Duration::from_secs(10))
                .await
                .is_some();
            let _ = stream.read(&mut byte).await;
            let _ = closed.send(ended);
        }
    })
    .await;
    let lb = lb(cloud, addr, TIMEOUT).await;
    let (read, mut write) = two_handles(TcpStream::connect(lb.addr()).await.unwrap());
    let uploader = tokio::spawn(async move {
        let head = "POST /upload HTTP/1.1\r\nHost: lbsim.test\r\nContent-Length: 104857600\r\n\r\n";
        if write.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let block = vec![b'u'; 64 * 1024];
        // Until lbsim stops taking bytes for good (the write then fails).
        for _ in 0..1600 {
            if write.write_all(&block).await.is_err() {
                return;
            }
        }
    });
    let mut client = RawClient::from_stream(read);
    let resp = client.response().await.expect("the LB's answer");
    check(&resp);
    assert!(client.closed_within(Duration::from_secs(2)).await);
    let stats = lb.stats();
    assert_eq!(stats.by_status.get(&408), None, "the stall was the app's");
    assert_eq!(stats.by_status.get(&504), Some(&1));
    let app_saw_close = tokio::time::timeout(Duration::from_secs(15), closed_rx.recv())
        .await
        .expect("the app task ends");
    assert_eq!(
        app_saw_close,
        Some(true),
        "lbsim closed the app's connection"
    );
    let _ = uploader.await;
    drop(client);
    app_task.abort();
    let _ = app_task.await;
    lb.shutdown().await;
    rig.all_closed().await;
}

/// The timeout page (the connection then closes: the rest of the upload must never be
/// read as requests).
#[track_caller]
fn assert_closing_page(resp: &RawResponse, page: String, reason: &str) {
    assert_eq!(resp.status, 504);
    assert_eq!(resp.header("x-lbsim-reason"), Some(reason));
    assert_eq!(resp.text(), page);
}

#[tokio::test]
async fn aws_app_that_never_reads_the_body_gets_504_and_both_sides_close() {
    app_that_never_reads_the_body(Cloud::Aws, |resp| {
        assert_eq!(resp.reason, "Gateway Time-out");
        assert_eq!(resp.header("Server"), Some("awselb/2.0"));
        assert_closing_page(
            resp,
            alb_page("504 Gateway Time-out"),
            "target_idle_timeout",
        )
    })
    .await;
}

#[tokio::test]
async fn gcp_app_that_never_reads_the_body_gets_504_and_both_sides_close() {
    app_that_never_reads_the_body(Cloud::Gcp, |resp| {
        assert_envoy_page(
            resp,
            504,
            "Gateway Timeout",
            "upstream request timeout",
            "backend_timeout",
        )
    })
    .await;
}

// 5. A response with both Content-Length and Transfer-Encoding.

#[tokio::test]
async fn response_with_content_length_and_transfer_encoding_is_a_502() {
    let rig = SocketsCheck::begin().await;
    let (addr, app_task) = raw_app(|mut stream| async move {
        read_head(&mut stream).await;
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
            .await;
        let _ = read_to_close(&mut stream, Duration::from_secs(5)).await;
    })
    .await;
    let lb = aws_lb(addr).await;
    let mut client = RawClient::connect(lb.addr()).await;
    let resp = client.get("/").await;
    assert_alb_page(&resp, 502, "Bad Gateway", "target_malformed_response");
    let stats = lb.stats();
    assert_eq!(stats.by_status.get(&502), Some(&1));
    assert_eq!(stats.by_status.get(&200), None);
    assert_eq!(stats.count(Reason::MalformedResponse), 1);
    drop(client);
    app_task.abort();
    let _ = app_task.await;
    lb.shutdown().await;
    rig.all_closed().await;
}

// 6. An app that answers before reading the request body.

#[tokio::test]
async fn answer_before_the_body_never_turns_the_body_into_requests() {
    let rig = SocketsCheck::begin().await;
    let (addr, app_task) = raw_app(|mut stream| async move {
        read_head(&mut stream).await;
        let _ = stream
            .write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
            .await;
        let _ = read_to_close(&mut stream, Duration::from_secs(10)).await;
    })
    .await;
    let lb = aws_lb(addr).await;
    let mut client = RawClient::connect(lb.addr()).await;
    // The body looks like requests: answering them would be request smuggling.
    let body = b"GET /smuggled HTTP/1.1\r\nHost: lbsim.test\r\n\r\n".repeat(100);
    client
        .send(
            format!(
                "POST /login HTTP/1.1\r\nHost: lbsim.test\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await;
    let resp = client.response().await.expect("the app's 401");
    assert_eq!(resp.status, 401);
    assert_eq!(resp.header("Connection"), Some("close"));
    // The body, sent after the answer, goes nowhere.
    let _ = client.stream.write_all(&body).await;
    let rest = read_to_close(&mut client.stream, Duration::from_secs(3))
        .await
        .expect("lbsim closes after the answer");
    assert!(
        client.leftover().is_empty() && rest.is_empty(),
        "bytes after the 401: {:?}",
        String::from_utf8_lossy(&rest)
    );
    let stats = lb.stats();
    assert_eq!(stats.by_status.get(&401), Some(&1));
    assert_eq!(stats.by_status.len(), 1, "{:?}", stats.by_status);
    drop(client);
    app_task.abort();
    let _ = app_task.await;
    lb.shutdown().await;
    rig.all_closed().await;
}

// 7. A malformed chunked request body.

#[tokio::test]
async fn malformed_chunk_size_is_the_clients_400() {
    let rig = SocketsCheck::begin().await;
    let app = mock(Duration::from_secs(30)).await;
    let lb = aws_lb(app.addr).await;
    let mut client = RawClient::connect(lb.addr()).await;
    client
        .send(
            b"POST /echo HTTP/1.1\r\nHost: lbsim.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        )
        .await;
    let resp = client.response().await.expect("the LB's answer");
    assert_alb_page(&resp, 400, "Bad Request", "malformed_request");
    assert!(client.closed_within(Duration::from_secs(2)).await);
    let stats = lb.stats();
    assert_eq!(stats.by_status.get(&502), None);
    assert_eq!(stats.count(Reason::MalformedRequest), 1);
    drop(client);
    rig.finish(lb, app).await;
}
