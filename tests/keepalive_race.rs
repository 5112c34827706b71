//! Keep-alive mismatch: the app closes an idle connection the LB still reuses → 502.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use lbsim::accesslog::LogFormat;
use lbsim::profile::Profile;
use lbsim::{Cloud, RaceWindow, Reason, Simulator};
use support::*;

async fn lb_always(cloud: Cloud, app: std::net::SocketAddr) -> lbsim::SimHandle {
    // The Anyscale defaults (ALB 300 s idle, GCP 600 s): far longer than any test.
    Simulator::builder(cloud)
        .no_health_checks()
        .upstream(app)
        .race_window(RaceWindow::Always)
        .start()
        .await
        .unwrap()
}

/// Waits until the mock has closed `n` idle connections: the event, not a guess.
async fn app_closed_idle(app: &lbsim::MockUpstream, n: u64) {
    wait_until(
        "the app closes its idle connection",
        Duration::from_secs(4),
        || app.idle_closes() >= n,
    )
    .await;
}

#[tokio::test]
async fn aws_reuse_after_app_keep_alive_gets_502_every_time() {
    let app = mock(Duration::from_millis(300)).await;
    let lb = lb_always(Cloud::Aws, app.addr).await;
    let mut client = RawClient::connect(lb.addr()).await;
    for round in 1..=3u64 {
        let ok = client.get("/").await;
        assert_eq!(ok.status, 200, "round {round}");
        app_closed_idle(&app, round).await;
        let dead = client.get("/").await;
        assert_eq!(dead.status, 502, "round {round}");
        assert_eq!(
            dead.header("x-lbsim-reason"),
            Some("target_closed_connection")
        );
        assert_eq!(dead.text(), alb_page("502 Bad Gateway"));
    }
    // Each 502 consumed its dead connection: three targets connections, three 502s.
    assert_eq!(
        app.stats
            .connections
            .load(std::sync::atomic::Ordering::Relaxed),
        3
    );
    assert_eq!(app.requests(), 3);
    let stats = lb.stats();
    assert_eq!(stats.by_status.get(&502), Some(&3));
    // Counted as the race, though the word is the one an app's crash gets too.
    assert_eq!(stats.by_cause, BTreeMap::from([(Reason::KeepAliveRace, 3)]));
}

/// On AWS the keep-alive race and an app that closes the connection before answering get
/// the same 502 and the same word, `target_closed_connection`, in the header and the log
/// line: a harness tells them apart by cause.
#[tokio::test]
async fn aws_race_and_app_close_share_a_word_but_not_a_cause() {
    let app = mock(Duration::from_millis(300)).await;
    let log = std::env::temp_dir().join(format!(
        "lbsim-{}-race-and-app-close.log",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&log);
    let lb = Simulator::builder(Cloud::Aws)
        .no_health_checks()
        .upstream(app.addr)
        .race_window(RaceWindow::Always)
        .access_log(log.to_str().unwrap(), Some(LogFormat::Json))
        .start()
        .await
        .unwrap();
    let mut client = RawClient::connect(lb.addr()).await;
    assert_eq!(client.get("/").await.status, 200);
    app_closed_idle(&app, 1).await;
    // The pooled connection the app has closed is reused: the race.
    let race = client.get("/").await;
    // On a fresh connection, the app reads the request and closes without an answer.
    let closed = client.get("/close").await;
    for resp in [&race, &closed] {
        assert_alb_page(resp, 502, "Bad Gateway", "target_closed_connection");
    }
    let stats = lb.stats();
    assert_eq!(
        stats.by_cause,
        BTreeMap::from([
            (Reason::TargetClosedConnection, 1),
            (Reason::KeepAliveRace, 1)
        ])
    );
    assert_eq!(stats.count(Reason::KeepAliveRace), 1);
    assert_eq!(stats.count(Reason::TargetClosedConnection), 1);
    assert_eq!(stats.count(Reason::TargetClosedMidBody), 0);
    // In the cloud's words (the control API's `by_reason`), one word twice.
    assert_eq!(
        stats.by_word(Profile::of(Cloud::Aws)),
        BTreeMap::from([("target_closed_connection", 2)])
    );
    lb.shutdown().await;

    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    let reasons: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()["reason"].clone())
        .collect();
    assert_eq!(
        reasons,
        [
            serde_json::Value::Null,
            "target_closed_connection".into(),
            "target_closed_connection".into()
        ],
        "{text}"
    );
}

/// A POST on the pooled connection the app closed: GCP does not retry it.
async fn post_on_a_dead_connection(
    cloud: Cloud,
) -> (lbsim::MockUpstream, lbsim::SimHandle, RawResponse) {
    let app = mock(Duration::from_millis(300)).await;
    let lb = lb_always(cloud, app.addr).await;
    let mut client = RawClient::connect(lb.addr()).await;
    assert_eq!(client.get("/").await.status, 200);
    app_closed_idle(&app, 1).await;
    client
        .send(b"POST /echo HTTP/1.1\r\nHost: lbsim.test\r\nContent-Length: 2\r\n\r\nhi")
        .await;
    let dead = client.response().await.expect("the LB's answer");
    (app, lb, dead)
}

#[tokio::test]
async fn gcp_classic_post_on_a_reused_connection_gets_502() {
    let (_app, lb, dead) = post_on_a_dead_connection(Cloud::GcpClassic).await;
    // Migration overview: "Early upstream connection reset by the backend" → 502 (classic).
    assert_gfe_page(
        &dead,
        502,
        "Bad Gateway",
        "Server Error",
        "backend_connection_closed_before_data_sent_to_client",
    );
    assert_eq!(lb.stats().retries, 0, "a POST is never retried");
    assert_eq!(
        lb.stats().by_cause,
        BTreeMap::from([(Reason::KeepAliveRace, 1)])
    );
}

#[tokio::test]
async fn gcp_global_post_on_a_reused_connection_gets_503() {
    let (_app, lb, dead) = post_on_a_dead_connection(Cloud::Gcp).await;
    // Migration overview: the same event → 503 (global external), in Envoy's words.
    assert_envoy_page(
        &dead,
        503,
        "Service Unavailable",
        "upstream connect error or disconnect/reset before headers. reset reason: connection termination",
        "backend_connection_closed_before_data_sent_to_client",
    );
    assert_eq!(lb.stats().retries, 0, "a POST is never retried");
    assert_eq!(
        lb.stats().by_cause,
        BTreeMap::from([(Reason::KeepAliveRace, 1)])
    );
}

/// A GET on the pooled connection the app closed, on `cloud`.
async fn get_on_a_dead_connection(
    cloud: Cloud,
    no_retry: bool,
) -> (lbsim::MockUpstream, lbsim::SimHandle, RawResponse) {
    let app = mock(Duration::from_millis(300)).await;
    let b = Simulator::builder(cloud)
        .no_health_checks()
        .upstream(app.addr)
        .race_window(RaceWindow::Always)
        .backend_timeout(Duration::from_secs(600));
    let lb = if no_retry { b.no_retry() } else { b }
        .start()
        .await
        .unwrap();
    let mut client = RawClient::connect(lb.addr()).await;
    assert_eq!(client.get("/").await.status, 200);
    app_closed_idle(&app, 1).await;
    let resp = client.get("/").await;
    (app, lb, resp)
}

#[tokio::test]
async fn gcp_retries_a_get_the_app_closed_under_it_once() {
    for cloud in [Cloud::Gcp, Cloud::GcpClassic] {
        let (app, lb, resp) = get_on_a_dead_connection(cloud, false).await;
        // gcloud `--timeout`: "retries the HTTP GET request one time if the backend
        // closes the connection ... before sending response headers".
        assert_eq!(resp.status, 200, "{cloud:?}");
        assert_eq!(resp.text(), "ok");
        assert_eq!(app.requests(), 2, "{cloud:?}: the retry reached the app");
        let stats = lb.stats();
        assert_eq!(stats.retries, 1, "{cloud:?}");
        assert_eq!(
            stats.by_status.get(&200),
            Some(&2),
            "{cloud:?}: one count per request"
        );
        assert!(stats.by_cause.is_empty(), "{cloud:?}: {:?}", stats.by_cause);
    }
}

#[tokio::test]
async fn with_no_retry_gcp_shows_the_race_on_a_get_too() {
    let (_app, lb, resp) = get_on_a_dead_connection(Cloud::GcpClassic, true).await;
    assert_eq!(resp.status, 502);
    assert_eq!(lb.stats().retries, 0);
    assert_eq!(
        lb.stats().by_cause,
        BTreeMap::from([(Reason::KeepAliveRace, 1)])
    );
}

#[tokio::test]
async fn app_keep_alive_longer_than_the_lb_never_502s() {
    // LB keeps pooled connections 400 ms (its idle timeout); the app keeps them 2 s.
    let app = mock(Duration::from_secs(2)).await;
    let lb = Simulator::builder(Cloud::Aws)
        .no_health_checks()
        .upstream(app.addr)
        .idle_timeout(Duration::from_millis(400))
        .race_window(RaceWindow::Always)
        .start()
        .await
        .unwrap();
    let mut client = RawClient::connect(lb.addr()).await;
    assert_eq!(client.get("/").await.status, 200);
    // The LB drops its pooled connection after its own 400 ms keep-alive (the app would
    // have kept it 2 s).
    wait_until(
        "the LB closes its pooled connection",
        Duration::from_secs(2),
        || lb.idle_connections(app.addr) == 0,
    )
    .await;
    assert_eq!(app.idle_closes(), 0);
    // The idle client connection is gone too (ALB idle timeout): come back on a new one.
    let mut client = RawClient::connect(lb.addr()).await;
    assert_eq!(client.get("/").await.status, 200);
    assert_eq!(client.get("/").await.status, 200);
    assert_eq!(lb.stats().by_status.get(&502), None);
}

#[tokio::test]
async fn with_a_short_race_window_the_lb_learns_and_redials() {
    let app = mock(Duration::from_millis(200)).await;
    let lb = Simulator::builder(Cloud::Aws)
        .no_health_checks()
        .upstream(app.addr)
        .race_window(RaceWindow::Window(Duration::from_millis(5)))
        .start()
        .await
        .unwrap();
    let mut client = RawClient::connect(lb.addr()).await;
    assert_eq!(client.get("/").await.status, 200);
    app_closed_idle(&app, 1).await;
    tokio::time::sleep(Duration::from_millis(50)).await; // well past the 5 ms window
    assert_eq!(client.get("/").await.status, 200);
    assert_eq!(
        app.stats
            .connections
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
}

/// The README promise for the race: run the binary on its embedded mock app with a 1 s
/// keep-alive, and the 502's log line names the mismatch and the Ray Serve setting.
#[tokio::test]
async fn binary_explains_the_race_with_the_fix() {
    use std::process::Stdio;
    use tokio::io::AsyncBufReadExt;

    // Port 0: lbsim picks a free port and announces it (a port found free and released
    // could be taken by a parallel test before lbsim binds it).
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_lbsim"))
        .args(["--cloud", "aws", "--listen", "127.0.0.1:0"])
        .args([
            "--mock-keep-alive",
            "300ms",
            "--race-window",
            "always",
            "--explain",
        ])
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let listen: std::net::SocketAddr = loop {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("lbsim starts")
            .unwrap()
            .expect("stderr open");
        if let Some((_, rest)) = line.split_once(" listening on http://") {
            let addr = rest.split(' ').next().unwrap_or_default();
            break addr.parse().expect("the announced address");
        }
    };
    let mut client = RawClient::connect(listen).await;
    assert_eq!(client.get("/").await.status, 200);
    tokio::time::sleep(Duration::from_millis(600)).await; // the app's 300 ms keep-alive lapses
    let dead = client.get("/").await;
    assert_eq!(dead.status, 502);
    let explained = loop {
        let line = tokio::time::timeout(Duration::from_secs(5), lines.next_line())
            .await
            .expect("an explanation")
            .unwrap()
            .expect("stderr open");
        if line.starts_with("lbsim explain: 502 target_closed_connection") {
            break line;
        }
    };
    // The measured app keep-alive: about the mock's 300 ms.
    let measured: u64 = explained
        .split("closed an idle connection after ~")
        .nth(1)
        .and_then(|rest| rest.split(" ms;").next())
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("no measured keep-alive in: {explained}"));
    assert!((250..=400).contains(&measured), "{explained}");
    assert!(
        explained.contains(" ms; the AWS ALB keeps them 300 s"),
        "{explained}"
    );
    assert!(
        explained.contains("`http_options.keep_alive_timeout_s: 310`"),
        "{explained}"
    );
    assert!(
        explained.contains("uvicorn `--timeout-keep-alive`"),
        "{explained}"
    );
}

#[tokio::test]
async fn the_lb_closes_pooled_connections_after_its_own_keep_alive() {
    // LB keep-alive (AWS: the idle timeout) 300 ms; the app would keep them 5 s.
    let app = mock(Duration::from_secs(5)).await;
    let lb = Simulator::builder(Cloud::Aws)
        .no_health_checks()
        .upstream(app.addr)
        .idle_timeout(Duration::from_millis(300))
        .start()
        .await
        .unwrap();
    let mut client = RawClient::connect(lb.addr()).await;
    assert_eq!(client.get("/").await.status, 200);
    assert_eq!(lb.idle_connections(app.addr), 1);
    let start = std::time::Instant::now();
    wait_until(
        "the pool closes its idle connection",
        Duration::from_secs(2),
        || lb.idle_connections(app.addr) == 0,
    )
    .await;
    // Swept within the keep-alive plus one sweep period (a quarter of it) and slack.
    assert!(
        start.elapsed() <= Duration::from_millis(300 + 75 + 150),
        "{:?}",
        start.elapsed()
    );
    assert!(
        start.elapsed() >= Duration::from_millis(250),
        "{:?}",
        start.elapsed()
    );
}
