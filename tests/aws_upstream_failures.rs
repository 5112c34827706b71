//! AWS ALB answers for targets that fail before a response head: refused, connect timeout,
//! closed (FIN or RST), malformed. The client connection survives each of them.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use lbsim::{Cloud, MockUpstream, Reason, SimHandle};
use support::*;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

const IDLE: Duration = Duration::from_millis(2000);
const CONNECT: Duration = Duration::from_millis(300);

/// An ALB with two targets served round-robin: `first` gets the first request, the
/// healthy mock the second, so one client connection can see a failure then a success.
async fn alb(first: SocketAddr, then: SocketAddr) -> SimHandle {
    two_targets(Cloud::Aws, first, then)
        .idle_timeout(IDLE)
        .connect_timeout(CONNECT)
        .start()
        .await
        .expect("lbsim starts")
}

/// The same client connection serves the next request from the healthy target.
async fn still_works(client: &mut RawClient) {
    let resp = get_ok(client).await;
    assert_eq!(resp.header("x-lbsim-reason"), None);
}

/// What [`alb_page_for`] leaves for further checks.
struct Failed {
    app: MockUpstream,
    lb: SimHandle,
    /// The ALB's page.
    resp: RawResponse,
    /// How long the page took, from sending the request.
    took: Duration,
    /// Requests the mock had received when the page came, before the follow-up request.
    reached_app: u64,
}

/// Sends `GET path` through an ALB whose first target is `first` (the mock app when
/// `None`), asserts the ALB's page `status` `phrase` with cause `reason`, and that the
/// same client connection then gets a 200 from the mock.
async fn alb_page_for(
    first: Option<SocketAddr>,
    path: &str,
    status: u16,
    phrase: &str,
    reason: &str,
) -> Failed {
    let app = mock(Duration::from_secs(5)).await;
    let lb = alb(first.unwrap_or(app.addr), app.addr).await;
    let mut client = RawClient::connect(lb.addr()).await;
    let start = Instant::now();
    let resp = client.get(path).await;
    let took = start.elapsed();
    assert_alb_page(&resp, status, phrase, reason);
    let reached_app = app.requests();
    still_works(&mut client).await;
    Failed {
        app,
        lb,
        resp,
        took,
        reached_app,
    }
}

#[tokio::test]
async fn refused_connection_is_502_bad_gateway() {
    let reason = "target_connection_refused";
    let failed = alb_page_for(Some(closed_port().await), "/", 502, "Bad Gateway", reason).await;
    assert_eq!(failed.resp.body.len(), 122);
    assert_eq!(failed.resp.text(), alb_page("502 Bad Gateway"));
    let stats = failed.lb.stats();
    assert_eq!(stats.count(Reason::ConnectRefused), 1);
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
    let (_listener, _fillers, hang) = hanging_address().await;
    let reason = "target_connect_timeout";
    let failed = alb_page_for(Some(hang), "/", 504, "Gateway Time-out", reason).await;
    let elapsed = failed.took;
    assert!(
        elapsed >= CONNECT,
        "answered after {elapsed:?}, before the connect timeout"
    );
    assert_elapsed(elapsed, CONNECT, Duration::from_millis(250));
    assert_eq!(failed.lb.stats().count(Reason::ConnectTimeout), 1);
    assert_eq!(failed.app.requests(), 1);
}

async fn closed_before_head(path: &str) {
    let reason = "target_closed_connection";
    let failed = alb_page_for(None, path, 502, "Bad Gateway", reason).await;
    assert!(failed.took < IDLE, "waited for the idle timeout instead");
    assert_eq!(failed.reached_app, 1, "the request reached the app");
    // The app closed a fresh connection: not the keep-alive race, which logs the same word.
    assert_eq!(
        failed.lb.stats().by_cause,
        BTreeMap::from([(Reason::TargetClosedConnection, 1)])
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
    let reason = "target_malformed_response";
    let failed = alb_page_for(None, "/garbage", 502, "Bad Gateway", reason).await;
    assert_eq!(failed.lb.stats().count(Reason::MalformedResponse), 1);
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
    assert_eq!(
        stats.by_cause,
        BTreeMap::from([
            (Reason::TargetClosedConnection, 2),
            (Reason::MalformedResponse, 1)
        ])
    );
}

#[tokio::test]
async fn app_killed_mid_request_is_502_at_once() {
    let (app, lb, mut client) = aws_request_at_app("/sleep/5").await;
    let killed_at = Instant::now();
    app.kill();
    let resp = client.response().await.expect("a 502 page");
    assert!(
        killed_at.elapsed() < Duration::from_millis(500),
        "{:?}",
        killed_at.elapsed()
    );
    assert_alb_page(&resp, 502, "Bad Gateway", "target_closed_connection");
    assert_eq!(
        lb.stats().by_cause,
        BTreeMap::from([(Reason::TargetClosedConnection, 1)])
    );
}
