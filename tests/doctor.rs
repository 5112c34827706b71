//! `lbsim doctor`: probes a real app over loopback and judges it against the LB's values.
//!
//! The LB's timers are shrunk (`idle_timeout`, `backend_timeout`, `time_scale`) so that a
//! keep-alive measurement takes about a second.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lbsim::doctor::{
    diagnose, parse_path, DoctorError, Options, Report, Verdict, HEALTH, KEEP_ALIVE, LATENCY,
};
use lbsim::Cloud;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn aws(app: SocketAddr, idle: Duration) -> Options {
    let mut o = Options::new(Cloud::Aws, app.to_string());
    o.settings.idle_timeout = Some(idle);
    o
}

fn gcp(app: SocketAddr, backend: Duration) -> Options {
    let mut o = Options::new(Cloud::GcpClassic, app.to_string());
    o.settings.backend_timeout = Some(backend);
    o
}

/// The doctor's report on `app` behind an ALB with a 2 s idle timeout, probing `path`
/// as the health-check path.
async fn aws_report_with_health_path(app: &lbsim::MockUpstream, path: &str) -> Report {
    let mut o = aws(app.addr, Duration::from_secs(2));
    o.health_path = path.to_string();
    diagnose(&o).await.unwrap()
}

#[track_caller]
fn verdict(report: &Report, name: &str) -> Verdict {
    report
        .check(name)
        .unwrap_or_else(|| panic!("no {name} check in {report:#?}"))
        .verdict
}

#[track_caller]
fn measured_s(report: &Report, name: &str) -> f64 {
    report.check(name).unwrap().measured_s.unwrap()
}

#[tokio::test]
async fn app_keep_alive_shorter_than_the_albs_is_a_502_risk() {
    let app = mock(Duration::from_secs(1)).await;
    let start = Instant::now();
    let report = diagnose(&aws(app.addr, Duration::from_secs(2)))
        .await
        .unwrap();
    // The app closed at 1 s: no need to wait for the LB's 2 s + 10 %.
    assert!(start.elapsed() < Duration::from_millis(1800), "{report:#?}");
    let ka = report.check(KEEP_ALIVE).unwrap();
    assert_eq!(ka.verdict, Verdict::Risk, "{ka:#?}");
    assert!(!ka.at_least);
    let m = ka.measured_s.unwrap();
    assert!(
        (0.9..=1.1).contains(&m),
        "measured {m} s, expected 1 s ± 10 %"
    );
    assert_eq!(ka.lb_value, "2 s");
    assert_eq!(ka.lb_value_s, 2.0);
    let fix = ka.fix.as_deref().unwrap();
    assert!(
        fix.starts_with("Set the app's keep-alive above 2 s"),
        "{fix}"
    );
    assert!(
        fix.contains("http_options.keep_alive_timeout_s: 12"),
        "{fix}"
    );
    assert!(fix.contains("--timeout-keep-alive"), "{fix}");
    assert!(
        ka.detail.contains("AWS ALB keeps them 2 s → 502 on reuse"),
        "{}",
        ka.detail
    );
    assert_eq!(verdict(&report, HEALTH), Verdict::Pass);
    assert_eq!(verdict(&report, LATENCY), Verdict::Pass);
    assert_eq!(report.exit_code, 1);
    let names: Vec<&str> = report.checks.iter().map(|c| c.name).collect();
    assert_eq!(names, [KEEP_ALIVE, HEALTH, LATENCY]);
    let first = &report.lines()[0];
    assert!(
        first.starts_with("RISK  keep-alive  app closes idle connections after "),
        "{first}"
    );
    assert!(first.contains(". Fix: Set the app's keep-alive above 2 s"));
}

#[tokio::test]
async fn app_keep_alive_longer_than_the_albs_passes() {
    let app = mock(Duration::from_secs(3)).await;
    let report = diagnose(&aws(app.addr, Duration::from_secs(2)))
        .await
        .unwrap();
    let ka = report.check(KEEP_ALIVE).unwrap();
    assert_eq!(ka.verdict, Verdict::Pass, "{ka:#?}");
    // Waited the LB's 2 s + 10 %, the app still had the connection open.
    assert!(ka.at_least);
    assert_eq!(ka.measured, "at least 2.2 s");
    assert!(ka.fix.is_none());
    assert_eq!(verdict(&report, HEALTH), Verdict::Pass);
    assert_eq!(verdict(&report, LATENCY), Verdict::Pass);
    assert_eq!(report.exit_code, 0);
    for line in report.lines() {
        assert!(line.starts_with("PASS  "), "{line}");
        assert!(!line.contains("Fix:"), "{line}");
    }
    // One bare reachability connection, then one request per probe; the app never timed
    // the idle connection out: the doctor gave up first.
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(app.stats.connections.load(Relaxed), 4);
    assert_eq!(app.requests(), 3);
    assert_eq!(app.stats.idle_closes.load(Relaxed), 0);
}

#[tokio::test]
async fn max_wait_shorter_than_the_lbs_value_is_not_measured() {
    // A healthy app: its keep-alive (3 s) outlasts the ALB's (2 s); only the cap is short.
    let app = mock(Duration::from_secs(3)).await;
    let mut opts = aws(app.addr, Duration::from_secs(2));
    opts.max_wait = Some(Duration::from_millis(500));
    let start = Instant::now();
    let report = diagnose(&opts).await.unwrap();
    assert!(start.elapsed() < Duration::from_millis(1200));
    let ka = report.check(KEEP_ALIVE).unwrap();
    assert_eq!(ka.verdict, Verdict::NotMeasured, "{ka:#?}");
    assert!(ka.at_least);
    assert_eq!(ka.measured, "at least 500 ms");
    assert_eq!(ka.measured_s, Some(0.5));
    // Not a risk, so nothing to fix; the detail says what was seen and what settles it.
    assert!(ka.fix.is_none(), "{:?}", ka.fix);
    let command = format!(
        "lbsim doctor --cloud aws --idle-timeout 2s --upstream {}",
        app.addr
    );
    assert_eq!(
        ka.detail,
        format!(
            "app kept an idle connection open for at least 500 ms; --max-wait 500ms ended the \
             wait before the AWS ALB's 2 s, so whether the app closes first is not measured. \
             To decide it (waits up to 2.2 s): {command}"
        )
    );
    assert_eq!(lbsim::doctor::deciding_command(&opts), command);
    assert_eq!(verdict(&report, HEALTH), Verdict::Pass);
    assert_eq!(verdict(&report, LATENCY), Verdict::Pass);
    assert_eq!(report.exit_code, 3);
    assert!(
        report.lines()[0].starts_with("NOT MEASURED  keep-alive  app kept an idle connection"),
        "{:?}",
        report.lines()
    );

    // The command it gives decides it: without the cap, the same app passes.
    opts.max_wait = None;
    let report = diagnose(&opts).await.unwrap();
    assert_eq!(verdict(&report, KEEP_ALIVE), Verdict::Pass, "{report:#?}");
    assert_eq!(report.exit_code, 0);
}

#[tokio::test]
async fn a_risk_outranks_a_check_not_measured() {
    let app = mock(Duration::from_secs(3)).await;
    let mut opts = aws(app.addr, Duration::from_secs(2));
    opts.max_wait = Some(Duration::from_millis(300));
    opts.health_path = "/status/503".to_string();
    let report = diagnose(&opts).await.unwrap();
    // The keep-alive probe asks the health path, which answers 503 with keep-alive.
    assert_eq!(verdict(&report, KEEP_ALIVE), Verdict::NotMeasured);
    assert_eq!(verdict(&report, HEALTH), Verdict::Risk);
    assert_eq!(report.exit_code, 1);
}

#[tokio::test]
async fn latency_cut_by_max_wait_says_so_instead_of_a_complete_time() {
    let app = mock(Duration::from_secs(3)).await;
    // Idle timeout 2 s: risk above 1 s. A 300 ms cap cuts /sleep/1 before either.
    let mut opts = aws(app.addr, Duration::from_secs(2));
    opts.path = "/sleep/1?x=1&y=2".to_string();
    opts.max_wait = Some(Duration::from_millis(300));
    let report = diagnose(&opts).await.unwrap();
    let l = report.check(LATENCY).unwrap();
    assert_eq!(l.verdict, Verdict::NotMeasured, "{l:#?}");
    assert!(l.at_least);
    assert!(l.fix.is_none());
    assert!(
        l.measured
            .starts_with("longest wait for a byte at least 30")
            && l.measured.contains(" (first byte -, cut at 30")
            && l.measured
                .ends_with(" ms by --max-wait (no complete answer))"),
        "{}",
        l.measured
    );
    assert!(!l.detail.contains(", complete "), "{}", l.detail);
    assert!(
        l.detail.contains(
            "--max-wait ended the wait before half the AWS ALB idle timeout (1 s), so whether \
             it answers in time is not measured. To decide it: lbsim doctor --cloud aws \
             --idle-timeout 2s --upstream "
        ) && l.detail.ends_with(" --path '/sleep/1?x=1&y=2'"),
        "{}",
        l.detail
    );
    assert_eq!(report.exit_code, 3);

    // A cap past half the timeout: the slow answer is a risk, and still reported as cut.
    let mut opts = aws(app.addr, Duration::from_secs(1));
    opts.path = "/sleep/2".to_string();
    opts.max_wait = Some(Duration::from_millis(700));
    let report = diagnose(&opts).await.unwrap();
    let l = report.check(LATENCY).unwrap();
    assert_eq!(l.verdict, Verdict::Risk, "{l:#?}");
    assert!(
        l.measured.contains("(first byte -, cut at 70")
            && l.measured
                .contains(" ms by --max-wait (no complete answer))"),
        "{}",
        l.measured
    );
    assert!(!l.detail.contains(", complete "), "{}", l.detail);
}

#[tokio::test]
async fn max_wait_past_the_lbs_value_passes_as_at_least() {
    let app = mock(Duration::from_secs(3)).await;
    let mut opts = aws(app.addr, Duration::from_secs(1));
    opts.max_wait = Some(Duration::from_millis(1500));
    let report = diagnose(&opts).await.unwrap();
    let ka = report.check(KEEP_ALIVE).unwrap();
    assert_eq!(ka.verdict, Verdict::Pass, "{ka:#?}");
    assert!(ka.at_least);
    assert_eq!(ka.measured, "at least 1.1 s");
    assert_eq!(report.exit_code, 0);
}

#[tokio::test]
async fn unreachable_app_is_an_error_not_a_report() {
    let closed = closed_port().await;
    match diagnose(&aws(closed, Duration::from_secs(2))).await {
        Err(DoctorError::Unreachable { upstream, reason }) => {
            assert_eq!(upstream, closed.to_string());
            assert!(reason.contains("refused"), "{reason}");
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    let opts = Options::new(Cloud::Aws, "no-such-host.invalid:8000");
    assert!(matches!(
        diagnose(&opts).await,
        Err(DoctorError::Unreachable { .. })
    ));
}

#[tokio::test]
async fn app_that_closes_without_answering_cannot_be_measured_and_is_a_risk() {
    let app = mock(Duration::from_secs(5)).await;
    let report = aws_report_with_health_path(&app, "/close").await;
    let ka = report.check(KEEP_ALIVE).unwrap();
    assert_eq!(ka.verdict, Verdict::Risk, "{ka:#?}");
    assert_eq!((ka.measured.as_str(), ka.measured_s), ("unknown", None));
    assert!(
        ka.detail.starts_with("could not measure: GET /close ")
            && ka.detail.contains("keeps idle connections"),
        "{ka:#?}"
    );
    let fix = ka.fix.as_deref().unwrap_or_default();
    assert!(
        fix.starts_with("Make GET /close answer with keep-alive so it can be measured"),
        "{ka:#?}"
    );
}

#[tokio::test]
async fn bad_flags_are_errors() {
    assert!(parse_path("/-/healthz").is_ok());
    assert!(parse_path("healthz").is_err());
    assert!(parse_path("/a b").is_err());
    let app = mock(Duration::from_secs(1)).await;
    let mut opts = aws(app.addr, Duration::from_secs(2));
    opts.health_path = "/x\r\nX-Injected: 1".to_string();
    assert!(matches!(
        diagnose(&opts).await,
        Err(DoctorError::BadPath(_))
    ));
    // --backend-timeout means nothing to the ALB.
    let mut opts = aws(app.addr, Duration::from_secs(2));
    opts.settings.backend_timeout = Some(Duration::from_secs(1));
    assert!(matches!(diagnose(&opts).await, Err(DoctorError::Config(_))));
    assert_eq!(app.requests(), 0);
}

#[tokio::test]
async fn failing_health_path_is_a_503_risk() {
    let app = mock(Duration::from_millis(300)).await;
    let report = aws_report_with_health_path(&app, "/status/503").await;
    let h = report.check(HEALTH).unwrap();
    assert_eq!(h.verdict, Verdict::Risk, "{h:#?}");
    assert!(h.measured.starts_with("503 in "), "{}", h.measured);
    assert_eq!(h.lb_value, "200 within 5 s");
    assert!(
        h.detail.starts_with(
            "GET /status/503 as ELB-HealthChecker/2.0 answered 503 Service Unavailable in "
        ),
        "{}",
        h.detail
    );
    assert!(h.detail.contains("(body `status 503`)"), "{}", h.detail);
    assert!(
        h.fix.as_deref().unwrap().contains("/-/healthz"),
        "{:?}",
        h.fix
    );
    assert_eq!(verdict(&report, LATENCY), Verdict::Pass);
    assert_eq!(report.exit_code, 1);

    // The same app with its real health path passes.
    let report = aws_report_with_health_path(&app, "/-/healthz").await;
    assert_eq!(verdict(&report, HEALTH), Verdict::Pass);
}

#[tokio::test]
async fn health_check_slower_than_its_timeout_is_a_risk() {
    let app = mock(Duration::from_millis(300)).await;
    // time scale 0.1: health-check timeout 5 s -> 500 ms (idle timeout 300 s -> 30 s).
    let mut opts = Options::new(Cloud::Aws, app.addr.to_string());
    opts.settings.time_scale = 0.1;
    opts.health_path = "/sleep/1".to_string();
    let start = Instant::now();
    let report = diagnose(&opts).await.unwrap();
    // Health gave up at 500 ms; the keep-alive probe on /sleep/1 then took 1 s + 300 ms.
    assert!(start.elapsed() < Duration::from_millis(2500));
    let h = report.check(HEALTH).unwrap();
    assert_eq!(h.verdict, Verdict::Risk, "{h:#?}");
    assert_eq!(h.lb_value, "200 within 500 ms");
    assert_eq!(h.measured, "got no answer within 500 ms");
    let took = h.measured_s.unwrap();
    assert!((0.5..0.75).contains(&took), "{took}");
}

#[tokio::test]
async fn slow_path_over_half_the_timeout_is_a_504_risk() {
    let app = mock(Duration::from_millis(300)).await;
    let mut opts = aws(app.addr, Duration::from_secs(1));
    opts.path = "/sleep/0.7".to_string();
    let report = diagnose(&opts).await.unwrap();
    let l = report.check(LATENCY).unwrap();
    assert_eq!(l.verdict, Verdict::Risk, "{l:#?}");
    let m = measured_s(&report, LATENCY);
    assert!((0.7..0.95).contains(&m), "{m}");
    assert_eq!(l.lb_value, "idle timeout 1 s (risk above 500 ms)");
    let fix = l.fix.as_deref().unwrap();
    assert!(fix.contains("idle timeout"), "{fix}");
    assert!(fix.contains("--idle-timeout"), "{fix}");
    assert!(
        l.detail
            .contains("over half the AWS ALB idle timeout of 1 s → 504"),
        "{}",
        l.detail
    );

    // Under half passes.
    opts.path = "/sleep/0.2".to_string();
    let report = diagnose(&opts).await.unwrap();
    assert_eq!(verdict(&report, LATENCY), Verdict::Pass, "{report:#?}");
    let m = measured_s(&report, LATENCY);
    assert!((0.2..0.45).contains(&m), "{m}");
}

#[tokio::test]
async fn steady_stream_passes_an_idle_timeout_but_not_an_end_to_end_one() {
    let app = mock(Duration::from_millis(300)).await;
    let path = "/stream/4?interval=0.2";

    // AWS: only silences count, and none is longer than 200 ms.
    let mut opts = aws(app.addr, Duration::from_secs(1));
    opts.path = path.to_string();
    let report = diagnose(&opts).await.unwrap();
    assert_eq!(verdict(&report, LATENCY), Verdict::Pass, "{report:#?}");
    let m = measured_s(&report, LATENCY);
    assert!((0.2..0.45).contains(&m), "longest silence {m}");

    // GCP: the whole ~800 ms response counts against the 1 s backend timeout.
    let mut opts = gcp(app.addr, Duration::from_secs(1));
    opts.path = path.to_string();
    opts.max_wait = Some(Duration::from_secs(1));
    let report = diagnose(&opts).await.unwrap();
    let l = report.check(LATENCY).unwrap();
    assert_eq!(l.verdict, Verdict::Risk, "{l:#?}");
    let m = l.measured_s.unwrap();
    assert!((0.8..1.0).contains(&m), "whole response {m}");
    assert!(
        l.fix.as_deref().unwrap().contains("--backend-timeout"),
        "{:?}",
        l.fix
    );
    assert!(l.detail.contains("backend service timeout"), "{}", l.detail);
}

#[tokio::test]
async fn gcp_keep_alive_is_the_fixed_600_s_not_the_backend_timeout() {
    let app = mock(Duration::from_secs(1)).await;
    // 600 s * (1/300) = 2 s; the 30 s backend timeout becomes 100 ms and changes nothing here.
    let mut opts = gcp(app.addr, Duration::from_secs(30));
    opts.settings.time_scale = 1.0 / 300.0;
    let report = diagnose(&opts).await.unwrap();
    let ka = report.check(KEEP_ALIVE).unwrap();
    assert_eq!(ka.verdict, Verdict::Risk, "{ka:#?}");
    assert!((ka.lb_value_s - 2.0).abs() < 0.001, "{}", ka.lb_value_s);
    let m = ka.measured_s.unwrap();
    assert!((0.9..=1.1).contains(&m), "{m}");
    assert!(
        ka.detail
            .contains("GCP classic load balancer keeps them 2 s → 502 on reuse"),
        "{}",
        ka.detail
    );
    assert_eq!(report.cloud, Cloud::GcpClassic);
}

/// Behind ingress-nginx the keep-alive race costs only the requests nginx does not send
/// again: the doctor says which (its retry rule is the profile's), and `--no-retry` makes
/// every request pay.
#[tokio::test]
async fn ingress_nginx_keep_alive_risk_names_the_requests_that_get_the_502() {
    let app = mock(Duration::from_secs(1)).await;
    // nginx's 60 s upstream keep-alive * (1/30) = 2 s: the app's 1 s is shorter.
    let mut opts = Options::new(Cloud::IngressNginx, app.addr.to_string());
    opts.settings.time_scale = 1.0 / 30.0;
    let report = diagnose(&opts).await.unwrap();
    let ka = report.check(KEEP_ALIVE).unwrap();
    assert_eq!(ka.verdict, Verdict::Risk, "{ka:#?}");
    assert!(
        ka.detail.ends_with(
            "ingress-nginx keeps them 2 s → 502 on reuse for the requests it does not send \
             again (GET, HEAD, OPTIONS, PUT, DELETE, TRACE are retried)"
        ),
        "{}",
        ka.detail
    );
    opts.settings.no_retry = true;
    let report = diagnose(&opts).await.unwrap();
    let ka = report.check(KEEP_ALIVE).unwrap();
    assert!(
        ka.detail
            .ends_with("ingress-nginx keeps them 2 s → 502 on reuse"),
        "{}",
        ka.detail
    );
}

/// An app that answers every request with 200 and `Connection: close`, and records each
/// request head it received (one per connection).
async fn recording_app() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.ends_with(b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).into_owned());
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    (addr, heads)
}

#[tokio::test]
async fn health_check_sends_the_clouds_user_agent_on_its_own_connection() {
    for (cloud, agent) in [
        (Cloud::Aws, "ELB-HealthChecker/2.0"),
        (Cloud::GcpClassic, "GoogleHC/1.0"),
    ] {
        let (addr, heads) = recording_app().await;
        let mut opts = Options::new(cloud, addr.to_string());
        opts.health_path = "/-/healthz".to_string();
        opts.max_wait = Some(Duration::from_millis(300));
        let report = diagnose(&opts).await.unwrap();
        assert_eq!(verdict(&report, HEALTH), Verdict::Pass, "{report:#?}");
        // An app that closes after every response gives the LB nothing stale to reuse.
        let ka = report.check(KEEP_ALIVE).unwrap();
        assert_eq!(ka.verdict, Verdict::Pass, "{ka:#?}");
        assert_eq!(ka.measured, "closes after every response");
        assert_eq!(report.exit_code, 0);

        let heads = heads.lock().unwrap().clone();
        assert_eq!(heads.len(), 3, "one connection per probe: {heads:#?}");
        let health: Vec<&String> = heads
            .iter()
            .filter(|h| h.contains(&format!("\r\nUser-Agent: {agent}\r\n")))
            .collect();
        assert_eq!(health.len(), 1, "{heads:#?}");
        assert!(health[0].starts_with("GET /-/healthz HTTP/1.1\r\n"));
        assert!(health[0].contains("\r\nConnection: close\r\n"));
        let keep_alive = heads
            .iter()
            .find(|h| h.contains("\r\nConnection: keep-alive\r\n"))
            .expect("keep-alive probe");
        assert!(keep_alive.starts_with("GET /-/healthz HTTP/1.1\r\n"));
    }
}

async fn run_binary(args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_lbsim"))
        .arg("doctor")
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .await
        .expect("lbsim runs");
    (
        out.status.code().expect("exit code"),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[tokio::test]
async fn binary_prints_one_json_object_and_exits_1_on_risk() {
    let app = mock(Duration::from_secs(1)).await;
    let upstream = app.addr.to_string();
    let (code, stdout, stderr) = run_binary(&[
        "--cloud",
        "aws",
        "--upstream",
        &upstream,
        "--idle-timeout",
        "2s",
        "--health-path",
        "/-/healthz",
        "--json",
    ])
    .await;
    assert_eq!(code, 1, "stdout {stdout}\nstderr {stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    assert_eq!(stdout.trim().lines().count(), 1);
    assert_eq!(v["cloud"], "aws");
    assert_eq!(v["upstream"], upstream.as_str());
    assert_eq!(v["exit_code"], 1);
    let checks = v["checks"].as_array().unwrap();
    let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["keep-alive", "health", "latency"]);
    let ka = &checks[0];
    assert_eq!(ka["verdict"], "RISK");
    assert_eq!(ka["lb_value"], "2 s");
    let m = ka["measured_s"].as_f64().unwrap();
    assert!((0.9..=1.1).contains(&m), "{m}");
    assert!(ka["measured"].as_str().unwrap().ends_with(" s"));
    assert!(ka["fix"]
        .as_str()
        .unwrap()
        .contains("keep_alive_timeout_s: 12"));
    assert_eq!(checks[1]["verdict"], "PASS");
    assert!(checks[1]["fix"].is_null());
    assert_eq!(checks[2]["verdict"], "PASS");
}

#[tokio::test]
async fn binary_prints_one_line_per_check() {
    let app = mock(Duration::from_millis(300)).await;
    let upstream = app.addr.to_string();
    let (code, stdout, _) = run_binary(&[
        "--upstream",
        &upstream,
        "--idle-timeout",
        "1s",
        "--health-path",
        "/status/503",
    ])
    .await;
    assert_eq!(code, 1, "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(lines[0].starts_with("RISK  keep-alive  app closes idle connections after "));
    assert!(lines[0].contains("AWS ALB keeps them 1 s → 502 on reuse. Fix: "));
    assert!(lines[1].starts_with("RISK  health      GET /status/503 as ELB-HealthChecker/2.0"));
    assert!(lines[2].starts_with("PASS  latency     GET / answered 200"));
}

#[tokio::test]
async fn binary_exits_3_when_max_wait_leaves_a_healthy_app_not_measured() {
    let app = mock(Duration::from_secs(3)).await;
    let upstream = app.addr.to_string();
    let args = [
        "--upstream",
        &upstream,
        "--idle-timeout",
        "2s",
        "--max-wait",
        "300ms",
    ];
    let (code, stdout, stderr) = run_binary(&args).await;
    assert_eq!(code, 3, "stdout {stdout}\nstderr {stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    let command = format!("lbsim doctor --cloud aws --idle-timeout 2s --upstream {upstream}");
    assert!(
        lines[0].starts_with(
            "NOT MEASURED  keep-alive  app kept an idle connection open for at least 300 ms"
        ) && lines[0].ends_with(&format!("To decide it (waits up to 2.2 s): {command}")),
        "{}",
        lines[0]
    );
    assert!(!lines[0].contains("Fix:"), "{}", lines[0]);
    assert!(lines[1].starts_with("PASS  health  "), "{}", lines[1]);
    assert!(lines[2].starts_with("PASS  latency  "), "{}", lines[2]);
    assert!(stderr.contains("it will be NOT MEASURED"), "{stderr}");

    let (code, stdout, _) = run_binary(&[&args[..], &["--json"]].concat()).await;
    assert_eq!(code, 3);
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["exit_code"], 3);
    let ka = &v["checks"][0];
    assert_eq!(ka["verdict"], "NOT_MEASURED");
    assert_eq!(ka["at_least"], true);
    assert!(ka["fix"].is_null());
    assert!(ka["detail"].as_str().unwrap().ends_with(&command), "{ka}");

    // The command it printed, run as printed (at this scale), decides it: PASS, exit 0.
    let words: Vec<&str> = command.split(' ').skip(2).collect();
    let (code, stdout, _) = run_binary(&words).await;
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.starts_with("PASS  keep-alive  "), "{stdout}");
}

#[tokio::test]
async fn help_lists_the_exit_codes() {
    let (code, stdout, _) = run_binary(&["--help"]).await;
    assert_eq!(code, 0);
    for line in [
        "Exit codes:",
        "  0  every check passes",
        "  1  a risk was found",
        "  2  the app cannot be reached",
        "  3  nothing failed, but a check was NOT MEASURED",
    ] {
        assert!(stdout.contains(line), "{line:?} missing from:\n{stdout}");
    }
}

#[tokio::test]
async fn binary_exits_2_with_one_line_when_the_app_is_unreachable() {
    let closed = closed_port().await.to_string();
    let (code, stdout, stderr) = run_binary(&["--upstream", &closed]).await;
    assert_eq!(code, 2);
    assert_eq!(stdout, "");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("lbsim doctor: cannot reach the app at {closed}: ")),
        "{stderr}"
    );
    assert!(stderr.contains("refused"), "{stderr}");

    let (code, stdout, _) = run_binary(&["--upstream", &closed, "--json"]).await;
    assert_eq!(code, 2);
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["exit_code"], 2);
    assert_eq!(v["checks"].as_array().unwrap().len(), 0);
    assert!(v["error"].as_str().unwrap().contains("cannot reach"));
}
