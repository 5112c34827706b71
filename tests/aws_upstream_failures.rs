//! AWS ALB answers for targets that fail before a response head: refused, connect timeout,
//! closed (FIN or RST), malformed. The client connection survives each of them.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use lbsim::{Cloud, SimHandle, Simulator};
use support::*;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

const IDLE: Duration = Duration::from_millis(2000);
const CONNECT: Duration = Duration::from_millis(300);

/// An ALB with two targets served round-robin: `first` gets the first request, the
/// healthy mock the second, so one client connection can see a failure then a success.
async fn alb(first: SocketAddr, then: SocketAddr) -> SimHandle {
    Simulator::builder(Cloud::Aws)
        .no_health_checks()
        .upstream(first)
        .upstream(then)
        .idle_timeout(IDLE)
        .connect_timeout(CONNECT)
        .start()
        .await
        .expect("lbsim starts")
}

/// The same client connection serves the next request from the healthy target.
async fn still_works(client: &mut RawClient) {
    let resp = client.get("/").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "ok");
    assert_eq!(resp.header("x-lbsim-reason"), None);
}

#[tokio::test]
async fn refused_connection_is_502_bad_gateway() {
    let app = mock(Duration::from_secs(5)).await;
    let lb = alb(closed_port().await, app.addr).await;
    let mut client = RawClient::connect(lb.addr()).await;
    let resp = client.get("/").await;
    assert_alb_page(&resp, 502, "Bad Gateway", "target_connection_refused");
    assert_eq!(resp.body.len(), 122);
    assert_eq!(resp.text(), alb_page("502 Bad Gateway"));
    still_works(&mut client).await;
    let stats = lb.stats();
    assert_eq!(stats.by_reason.get("target_connection_refused"), Some(&1));
    assert_eq!(stats.by_status.get(&502), Some(&1));
    assert_eq!(stats.by_status.get(&200), Some(&1));
}

/// A loopback address whose TCP connects hang: a listener with backlog 0 that never
/// accepts, its accept queue filled first. Returns the listener and the fillers, which
/// must stay alive for as long as the address must hang.
async fn hanging_address() -> (TcpListener, Vec<TcpStream>, SocketAddr) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        let probe = Instant::now();
        match tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => fillers.push(stream),
            Ok(Err(e)) => panic!("connect to the full listener failed instead of hanging: {e}"),
            Err(_) => {
                // The kernel drops SYNs to a full accept queue: connects now hang.
                assert!(probe.elapsed() >= Duration::from_millis(200));
                return (listener, fillers, addr);
            }
        }
    }
    panic!("accept queue never filled after {} connects", fillers.len());
}

#[tokio::test]
async fn connect_timeout_is_504_after_the_connect_timeout() {
    let app = mock(Duration::from_secs(5)).await;
    let (_listener, _fillers, hang) = hanging_address().await;
    let lb = alb(hang, app.addr).await;
    let mut client = RawClient::connect(lb.addr()).await;
    let start = Instant::now();
    let resp = client.get("/").await;
    let elapsed = start.elapsed();
    assert!(
        elapsed >= CONNECT,
        "answered after {elapsed:?}, before the connect timeout"
    );
    assert_elapsed(elapsed, CONNECT, Duration::from_millis(250));
    assert_alb_page(&resp, 504, "Gateway Time-out", "target_connect_timeout");
    still_works(&mut client).await;
    assert_eq!(lb.stats().by_reason.get("target_connect_timeout"), Some(&1));
    assert_eq!(app.requests(), 1);
}

async fn closed_before_head(path: &str) {
    let app = mock(Duration::from_secs(5)).await;
    let lb = alb(app.addr, app.addr).await;
    let mut client = RawClient::connect(lb.addr()).await;
    let start = Instant::now();
    let resp = client.get(path).await;
    assert!(
        start.elapsed() < IDLE,
        "waited for the idle timeout instead"
    );
    assert_alb_page(&resp, 502, "Bad Gateway", "target_closed_connection");
    assert_eq!(app.requests(), 1, "the request reached the app");
    still_works(&mut client).await;
    assert_eq!(
        lb.stats().by_reason.get("target_closed_connection"),
        Some(&1)
    );
}

#[tokio::test]
async fn target_fin_before_head_is_502() {
    closed_before_head("/close").await;
}

#[tokio::test]
async fn target_rst_before_head_is_502() {
    closed_before_head("/reset").await;
}

#[tokio::test]
async fn malformed_response_is_502() {
    let app = mock(Duration::from_secs(5)).await;
    let lb = alb(app.addr, app.addr).await;
    let mut client = RawClient::connect(lb.addr()).await;
    let resp = client.get("/garbage").await;
    assert_alb_page(&resp, 502, "Bad Gateway", "target_malformed_response");
    still_works(&mut client).await;
    assert_eq!(
        lb.stats().by_reason.get("target_malformed_response"),
        Some(&1)
    );
}

#[tokio::test]
async fn failures_in_a_row_on_one_client_connection() {
    // Every failure, one after another on the same client connection, then a success.
    let app = mock(Duration::from_secs(5)).await;
    let lb = alb(app.addr, app.addr).await;
    let mut client = RawClient::connect(lb.addr()).await;
    for (path, reason) in [
        ("/close", "target_closed_connection"),
        ("/garbage", "target_malformed_response"),
        ("/reset", "target_closed_connection"),
    ] {
        let resp = client.get(path).await;
        assert_alb_page(&resp, 502, "Bad Gateway", reason);
    }
    still_works(&mut client).await;
    let stats = lb.stats();
    assert_eq!(stats.by_status.get(&502), Some(&3));
    assert_eq!(stats.by_status.get(&200), Some(&1));
}

#[tokio::test]
async fn app_killed_mid_request_is_502_at_once() {
    let app = mock(Duration::from_secs(5)).await;
    let lb = lb(Cloud::Aws, app.addr, Duration::from_secs(10)).await;
    let mut client = RawClient::connect(lb.addr()).await;
    client
        .send(b"GET /sleep/5 HTTP/1.1\r\nHost: lbsim.test\r\n\r\n")
        .await;
    wait_until(
        "the request reaches the app",
        Duration::from_secs(2),
        || app.requests() == 1,
    )
    .await;
    let killed_at = Instant::now();
    app.kill();
    let resp = client.response().await.expect("a 502 page");
    assert!(
        killed_at.elapsed() < Duration::from_millis(500),
        "{:?}",
        killed_at.elapsed()
    );
    assert_alb_page(&resp, 502, "Bad Gateway", "target_closed_connection");
}
