//! `--l4`: a cloud's TCP load balancer in front of the L7 one (issue #17). Real sockets,
//! short scaled idle timeouts: what a keep-alive client sees when its flow idles out. Each
//! test checks that every TCP socket it opened (client, relay, engine, app) is closed again,
//! so the file's tests run one at a time.

mod support;

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use lbsim::{Cloud, L4Flavour, MockUpstream, SimHandle, Simulator, StartError};
use support::*;
use tokio::io::AsyncReadExt;

/// The L4 idle timeout the tests run with: 50 s at time scale 0.01.
const IDLE: Duration = Duration::from_millis(500);
const TOLERANCE: Duration = Duration::from_millis(300);

/// ingress-nginx behind `flavour`, its flow idle timeout 50 s scaled by 0.01; the client
/// keep-alive is long (1000 s scaled: 10 s) so that nginx never closes first.
async fn behind(flavour: L4Flavour, app: std::net::SocketAddr) -> SimHandle {
    Simulator::builder(Cloud::IngressNginx)
        .upstream(app)
        .no_health_checks()
        .time_scale(0.01)
        .client_keep_alive(Duration::from_secs(1000))
        .l4(flavour, Some(Duration::from_secs(50)))
        .start()
        .await
        .expect("lbsim starts")
}

/// One test's set-up: its turn and socket count, the app, ingress-nginx behind `flavour`,
/// and a client connection that has had one 200 (the flow exists and is tracked).
async fn flow_behind(flavour: L4Flavour) -> (SocketsCheck, MockUpstream, SimHandle, RawClient) {
    let check = SocketsCheck::begin().await;
    let app = mock(Duration::from_secs(30)).await;
    let lb = behind(flavour, app.addr).await;
    let mut client = RawClient::connect(lb.addr()).await;
    get_ok(&mut client).await;
    (check, app, lb, client)
}

/// Reads once, bounded: the read's outcome, or None for silence within `limit`.
async fn read_within(client: &mut RawClient, limit: Duration) -> Option<std::io::Result<usize>> {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(limit, client.stream.read(&mut buf))
        .await
        .ok()
}

#[tokio::test]
async fn aws_nlb_resets_a_keep_alive_connection_that_sends_after_the_idle_timeout() {
    let (check, app, lb, mut client) = flow_behind(L4Flavour::AwsNlb).await;
    tokio::time::sleep(IDLE + TOLERANCE).await;
    // Nothing happened at the timeout itself: the NLB only answers the next segment.
    assert!(read_within(&mut client, Duration::from_millis(50))
        .await
        .is_none());
    client
        .send(b"GET / HTTP/1.1\r\nHost: lbsim.test\r\n\r\n")
        .await;
    match read_within(&mut client, Duration::from_secs(5)).await {
        Some(Err(e)) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}"),
        other => panic!("expected a TCP RST (ConnectionReset), got {other:?}"),
    }
    // The request died at the NLB: the app saw only the first one.
    assert_eq!(app.requests(), 1);
    drop(client);
    check.finish(lb, app).await;
}

#[tokio::test]
async fn aws_nlb_keeps_a_connection_that_keeps_talking() {
    let (check, app, lb, mut client) = flow_behind(L4Flavour::AwsNlb).await;
    let start = Instant::now();
    for _ in 0..5 {
        tokio::time::sleep(IDLE / 2).await;
        get_ok(&mut client).await;
    }
    assert!(
        start.elapsed() > IDLE * 2,
        "outlived the idle timeout twice"
    );
    assert_eq!(app.requests(), 6);
    drop(client);
    check.finish(lb, app).await;
}

#[tokio::test]
async fn azure_lb_drops_an_idled_out_flow_silently() {
    let (check, app, lb, mut client) = flow_behind(L4Flavour::AzureLb).await;
    tokio::time::sleep(IDLE + TOLERANCE).await;
    client
        .send(b"GET / HTTP/1.1\r\nHost: lbsim.test\r\n\r\n")
        .await;
    // No answer, no close, no reset: the client waits until its own timeout.
    assert!(
        read_within(&mut client, Duration::from_millis(1500))
            .await
            .is_none(),
        "the request after the idle timeout must go unanswered"
    );
    assert_eq!(app.requests(), 1);
    drop(client);
    check.finish(lb, app).await;
}

#[tokio::test]
async fn azure_lb_with_tcp_reset_resets_the_client_at_the_idle_timeout() {
    let (check, app, lb, mut client) = flow_behind(L4Flavour::AzureLbReset).await;
    let idle_since = Instant::now();
    // The client sends nothing: the reset comes at the timeout all the same.
    match read_within(&mut client, Duration::from_secs(5)).await {
        Some(Err(e)) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}"),
        other => panic!("expected a TCP RST (ConnectionReset), got {other:?}"),
    }
    assert_elapsed(idle_since.elapsed(), IDLE, TOLERANCE);
    drop(client);
    check.finish(lb, app).await;
}

#[tokio::test]
async fn gcp_passthrough_flow_outlives_its_tracking_entry() {
    let (check, app, lb, mut client) = flow_behind(L4Flavour::GcpPassthrough).await;
    tokio::time::sleep(IDLE + TOLERANCE).await;
    // Re-hashed to the same backend: the connection goes on.
    get_ok(&mut client).await;
    assert_eq!(app.requests(), 2);
    drop(client);
    check.finish(lb, app).await;
}

#[tokio::test]
async fn the_library_refuses_an_l4_no_cloud_offers() {
    let _turn = serial().await;
    let app = mock(Duration::from_secs(30)).await;
    for (cloud, flavour) in [
        (Cloud::Gcp, L4Flavour::GcpPassthrough),
        (Cloud::GcpClassic, L4Flavour::AwsNlb),
        (Cloud::Aws, L4Flavour::AzureLb),
    ] {
        let err = Simulator::builder(cloud)
            .upstream(app.addr)
            .no_health_checks()
            .l4(flavour, None)
            .start()
            .await
            .err()
            .unwrap_or_else(|| panic!("{cloud:?} behind {flavour:?} must be refused"));
        assert!(matches!(err, StartError::L4(_)), "{err}");
        assert!(err.to_string().contains("cannot front"), "{err}");
    }
    // An ALB behind an NLB is an AWS setup (ALB-type target group).
    let lb = Simulator::builder(Cloud::Aws)
        .upstream(app.addr)
        .no_health_checks()
        .l4(L4Flavour::AwsNlb, None)
        .start()
        .await
        .expect("an NLB fronts an ALB");
    let mut client = RawClient::connect(lb.addr()).await;
    get_ok(&mut client).await;
}

fn lbsim(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_lbsim"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run lbsim")
}

#[test]
fn the_cli_refuses_combinations_no_cloud_offers_with_exit_code_2() {
    for (cloud, l4, says) in [
        (
            "gcp",
            "gcp-passthrough",
            "--l4 gcp-passthrough cannot front",
        ),
        ("gcp-classic", "aws-nlb", "--l4 aws-nlb cannot front"),
        ("aws", "azure-lb", "--l4 azure-lb cannot front AWS"),
        ("gcp", "azure-lb-reset", "--l4 azure-lb-reset cannot front"),
        (
            "aws",
            "gcp-passthrough",
            "--l4 gcp-passthrough cannot front AWS",
        ),
    ] {
        let out = lbsim(&[
            "--cloud",
            cloud,
            "--l4",
            l4,
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "127.0.0.1:9",
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cloud} {l4}: {stderr}");
        assert!(stderr.contains(says), "{cloud} {l4}: {stderr}");
    }
}

#[test]
fn l4_idle_timeout_needs_l4() {
    let out = lbsim(&["--l4-idle-timeout", "10s", "--print-config"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--l4"));
}

/// The command line end to end: `--l4` with `--l4-idle-timeout` under `--time-scale`, on
/// the embedded mock app; the client is reset at the scaled timeout.
#[tokio::test]
async fn the_cli_runs_an_azure_reset_flow_at_the_scaled_timeout() {
    // lbsim runs as its own process; this one's client sockets still wait their turn.
    let _turn = serial().await;
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_lbsim"))
        .args([
            "--cloud",
            "ingress-nginx",
            "--l4",
            "azure-lb-reset",
            "--l4-idle-timeout",
            "50s",
            "--time-scale",
            "0.01",
            "--client-keep-alive",
            "1000s",
            // The embedded app serves at once: no readiness probe to race (its first
            // check may not have passed when the request comes: nginx's 503).
            "--no-health-checks",
            "--listen",
            "127.0.0.1:0",
        ])
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn lbsim");
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut addr = None;
    let mut in_front = None;
    while addr.is_none() || in_front.is_none() {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("lbsim announces itself")
            .unwrap()
            .expect("lbsim is still running");
        if let Some((_, rest)) = line.split_once(" listening on http://") {
            let a: std::net::SocketAddr = rest.split(' ').next().unwrap().parse().unwrap();
            addr = Some(a);
        }
        if line.contains("in front: ") {
            in_front = Some(line);
        }
    }
    let in_front = in_front.unwrap();
    assert!(
        in_front.contains("Azure Load Balancer (TCP reset on idle on)")
            && in_front.contains("500 ms per TCP flow"),
        "{in_front}"
    );
    let mut client = RawClient::connect(addr.unwrap()).await;
    get_ok(&mut client).await;
    let idle_since = Instant::now();
    match read_within(&mut client, Duration::from_secs(5)).await {
        Some(Err(e)) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}"),
        other => panic!("expected a TCP RST (ConnectionReset), got {other:?}"),
    }
    assert_elapsed(idle_since.elapsed(), IDLE, TOLERANCE);
    child.kill().await.unwrap();
}
