//! `lbsim triage` as a user runs it: on the example entries AWS and Google publish
//! (tests/triage/README.md says where each comes from) and on lines lbsim's own formatter
//! writes, plain, gzipped, in a folder and on standard input; the counts per cause, the
//! app-versus-LB split, the unparsed line numbers, the suggested scenarios, `--json`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lbsim::accesslog::{format_line, ConnTraceId, LogFormat, Record, Try};
use lbsim::profile::{Cloud, Profile};
use lbsim::Reason;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_lbsim");

fn sample(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/triage")
        .join(name)
        .display()
        .to_string()
}

/// A fresh folder for this test's files.
fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lbsim-triage-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn triage(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(BIN)
        .arg("triage")
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn lbsim");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn json(args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = triage(&all, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("--json prints JSON")
}

/// The cause whose `log` word or evidence is `log` (and, when given, status).
fn cause<'a>(report: &'a Value, log: &str) -> &'a Value {
    report["causes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["log"].as_str().is_some_and(|l| l.starts_with(log)))
        .unwrap_or_else(|| panic!("no cause `{log}` in {report:#}"))
}

fn app_5xx(report: &Value) -> Vec<(u64, u64)> {
    report["app_5xx"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["status"].as_u64().unwrap(), a["count"].as_u64().unwrap()))
        .collect()
}

fn unparsed_lines(report: &Value) -> Vec<u64> {
    report["unparsed_at"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["line"].as_u64().unwrap())
        .collect()
}

#[test]
fn awss_published_examples_parse_and_only_the_lambda_failure_is_the_lbs() {
    let r = json(&[&sample("alb-published.log")]);
    assert_eq!(r["requests"], 9, "{r:#}");
    assert_eq!(r["alb_entries"], 9);
    assert_eq!(r["lb_errors"], 1);
    let lambda = cause(&r, "LambdaInvalidResponse");
    assert_eq!(lambda["status"], 502);
    assert_eq!(lambda["lbsim"], Value::Null);
    assert_eq!(lambda["scenario"], Value::Null);
    assert_eq!(lambda["first"], "2018-11-30T22:23:00.186641Z");
    assert!(app_5xx(&r).is_empty());
    assert_eq!(r["unparsed"], 1);
    assert_eq!(unparsed_lines(&r), vec![10]);
}

#[test]
fn googles_published_entry_and_documented_failures_by_generation() {
    // GCP's two generations log alike; --cloud picks whose statuses and scenarios apply.
    let r = json(&["--cloud", "gcp-classic", &sample("gcp-published.jsonl")]);
    assert_eq!(r["requests"], 4, "{r:#}");
    assert_eq!(r["gcp_entries"], 4);
    assert_eq!(r["lb_errors"], 2);
    let race = cause(&r, "backend_connection_closed_before_data_sent_to_client");
    assert_eq!(race["cloud"], "gcp-classic");
    assert_eq!(race["scenario"], "gcp-502-keepalive");
    assert_eq!(race["status"], 502);
    let unhealthy = cause(&r, "failed_to_pick_backend");
    assert_eq!(unhealthy["lbsim"], "no_healthy_backend");
    assert_eq!(unhealthy["scenario"], "gcp-classic-502-unhealthy");
    assert_eq!(app_5xx(&r), vec![(500, 1)]);
    assert_eq!(unparsed_lines(&r), vec![5]);

    let r = json(&[&sample("gcp-published.jsonl")]);
    assert_eq!(
        cause(&r, "backend_connection_closed_before_data_sent_to_client")["scenario"],
        "gcp-503-keepalive"
    );
    assert_eq!(
        cause(&r, "failed_to_pick_backend")["scenario"],
        "gcp-503-unhealthy"
    );
}

#[test]
fn ingress_nginx_lines_name_nginxs_own_errors_and_leave_the_apps_500_to_the_app() {
    let r = json(&[&sample("ingress-nginx.log")]);
    assert_eq!(r["requests"], 7, "{r:#}");
    assert_eq!(r["nginx_entries"], 7);
    assert_eq!(
        r["skipped"], 2,
        "the error-log and klog lines are not requests"
    );
    assert_eq!(r["lb_errors"], 4);
    // The app's 500 passed through nginx: the app's, not nginx's.
    assert_eq!(app_5xx(&r), vec![(500, 1)]);

    let read = cause(&r, "504, upstream_status 504 on every try");
    assert_eq!(read["cloud"], "ingress-nginx");
    assert_eq!(read["lbsim"], "upstream_timed_out");
    assert_eq!(
        read["cause"],
        "proxy-read-timeout: the app sent nothing in time, on every try"
    );
    assert!(read["fix"].as_str().unwrap().contains(
        "raise proxy-read-timeout (annotation nginx.ingress.kubernetes.io/proxy-read-timeout"
    ));
    assert_eq!(read["scenario"], "ingress-nginx-504-slow-app");
    assert_eq!(read["median_seconds"], 180.006);

    let connect = cause(&r, "504, upstream_status 504 on every try, each after ~5 s");
    assert_eq!(connect["lbsim"], "upstream_connect_timed_out");
    assert_eq!(connect["scenario"], Value::Null);

    let race = cause(&r, "502, upstream_status 502, upstream_response_length 0");
    assert_eq!(race["lbsim"], "upstream_prematurely_closed_connection");
    assert!(race["cause"]
        .as_str()
        .unwrap()
        .contains("keep-alive mismatch"));
    assert!(race["fix"]
        .as_str()
        .unwrap()
        .starts_with("Set the app's keep-alive above 60 s"));
    assert_eq!(race["scenario"], "ingress-nginx-502-keepalive-post");

    let none = cause(&r, "503, upstream_status -");
    assert_eq!(none["lbsim"], "no_ready_endpoints");
    assert_eq!(
        none["cause"],
        "no ready endpoint: the Service has no ready pod (or no pod at all)"
    );
    assert!(none["fix"].as_str().unwrap().contains("readiness probe"));
    assert_eq!(none["first"], "2024-03-12T10:30:02.000000Z");

    assert_eq!(unparsed_lines(&r), vec![10]);
    assert!(r["unparsed_at"][0]["why"]
        .as_str()
        .unwrap()
        .contains("$proxy_upstream_name"));

    // The text report says the same, cause, fix and scenario on their lines.
    let out = triage(&[&sample("ingress-nginx.log")], None);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "7 ingress-nginx lines): 4 answered by the load balancer itself, 1 5xx answered by the app",
        "(2 other ingress-nginx controller lines skipped: error log, klog)",
        "504 [ingress-nginx] proxy-read-timeout: the app sent nothing in time, on every try",
        "reproduce: lbsim scenario run ingress-nginx-504-slow-app",
        "502 [ingress-nginx] the app closed the connection before answering",
        "reproduce: lbsim scenario run ingress-nginx-502-keepalive-post",
        "503 [ingress-nginx] no ready endpoint",
        "Answered by the app (passed through, not the load balancer's):\n  500  1",
    ] {
        assert!(text.contains(expected), "{expected}\n{text}");
    }
}

// ---------------------------------------------------------------------------------------
// Lines lbsim writes

const START: u64 = 1_717_200_000; // 2024-06-01T00:00:00Z

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(START + secs)
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A record as the engine fills it when `reason` ends a request (proxy.rs `lb_error`:
/// only a timed-out request was dispatched; nothing came back from the target), or, with
/// no reason, when the app answered `status`.
fn record(cloud: Cloud, secs: u64, reason: Option<Reason>, status: u16) -> Record {
    let outcome = reason.map(|r| Profile::of(cloud).outcome(r));
    let target = match reason {
        Some(Reason::NoRegisteredTargets | Reason::NoHealthyTargets) => None,
        _ => Some(addr("127.0.0.1:8000")),
    };
    let answered = reason.is_none();
    let took = Duration::from_millis(if reason == Some(Reason::TargetTimeout) {
        300_000
    } else {
        5
    });
    // The try at the target, when one was made: the app's status and body, or the status
    // the LB gave the failure (nginx lists it in $upstream_status).
    let tries = target
        .map(|target| Try {
            target,
            status: Some(outcome.map_or(status, |o| o.status)),
            cause: reason,
            bytes: if answered { 120 } else { 0 },
            time: took,
        })
        .into_iter()
        .collect();
    Record {
        start: at(secs),
        end: at(secs) + took,
        client: addr("127.0.0.1:50000"),
        listener: addr("127.0.0.1:8080"),
        target,
        request_processing: (answered || reason == Some(Reason::TargetTimeout))
            .then_some(Duration::ZERO),
        target_processing: answered.then_some(Duration::from_millis(5)),
        response_processing: answered.then_some(Duration::ZERO),
        lb_status: Some(outcome.map_or(status, |o| o.status)),
        target_status: answered.then_some(status),
        received_bytes: 80,
        sent_bytes: 200,
        body_bytes: 120,
        method: "POST".into(),
        scheme: "http",
        host: "localhost".into(),
        port: 8080,
        path: "/predict".into(),
        version: "HTTP/1.1",
        user_agent: Some("curl/8.5.0".into()),
        trace_id: None,
        referer: None,
        request_id: None,
        reason: outcome.map(|o| o.code),
        status_details: outcome.map_or("response_sent_by_backend", |o| o.log_word),
        cut: false,
        conn_trace_id: ConnTraceId(7),
        routed: true,
        tries,
    }
}

/// A rolling update's burst of keep-alive 502s (5 s apart), one more much later, a
/// timeout, an empty group, the app's 500 twice and a 200.
fn lbsim_lines(cloud: Cloud, format: LogFormat) -> String {
    let mut records: Vec<Record> = (0..4)
        .map(|i| record(cloud, 5 * i, Some(Reason::KeepAliveRace), 0))
        .collect();
    records.push(record(cloud, 3600, Some(Reason::KeepAliveRace), 0));
    records.push(record(cloud, 100, Some(Reason::TargetTimeout), 0));
    records.push(record(
        cloud,
        200,
        Some(if cloud == Cloud::Aws {
            Reason::NoRegisteredTargets
        } else {
            Reason::NoHealthyTargets
        }),
        0,
    ));
    records.push(record(cloud, 300, None, 500));
    records.push(record(cloud, 301, None, 500));
    records.push(record(cloud, 302, None, 200));
    let mut text: String = records
        .iter()
        .map(|r| format_line(format, r) + "\n")
        .collect();
    text.push_str("not a log line\n");
    text
}

fn gzip(text: &str) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(text.as_bytes()).unwrap();
    enc.finish().unwrap()
}

#[test]
fn lbsims_alb_lines_plain_gzipped_and_in_a_folder() {
    let dir = temp_dir("alb");
    let text = lbsim_lines(Cloud::Aws, LogFormat::Alb);
    std::fs::write(dir.join("a.log"), &text).unwrap();
    std::fs::write(dir.join("b.log.gz"), gzip(&text)).unwrap();
    // Not a log file name: a folder read skips it.
    std::fs::write(dir.join("notes.txt"), "hello").unwrap();

    let r = json(&[&dir.display().to_string()]);
    assert_eq!(r["files"].as_array().unwrap().len(), 2, "{r:#}");
    assert_eq!(r["requests"], 20);
    assert_eq!(r["lb_errors"], 14);
    let race = cause(&r, "502, target_status -, target_processing_time -1");
    assert_eq!(race["count"], 10);
    assert_eq!(race["lbsim"], "target_closed_connection");
    assert_eq!(
        race["cause"],
        "target closed the connection (most often the keep-alive race)"
    );
    assert_eq!(race["scenario"], "aws-502-keepalive");
    assert_eq!(race["share"], 0.5);
    assert_eq!(race["first"], "2024-06-01T00:00:00.005000Z");
    assert_eq!(race["last"], "2024-06-01T01:00:00.005000Z");
    // The rolling update is one burst (both files' copies of it); the late one is not.
    let bursts = race["bursts"].as_array().unwrap();
    assert_eq!(bursts.len(), 1, "{bursts:?}");
    assert_eq!(bursts[0]["count"], 8);
    assert!(race["fix"]
        .as_str()
        .unwrap()
        .starts_with("Set the app's keep-alive above 300 s"));

    let timeout = cause(&r, "504, target_status -, request_processing_time 0.000");
    assert_eq!(timeout["lbsim"], "target_idle_timeout");
    assert_eq!(timeout["scenario"], "aws-504-slow-app");
    assert_eq!(timeout["count"], 2);
    assert_eq!(timeout["median_seconds"], 300.0);
    let empty = cause(&r, "503, no target");
    assert_eq!(empty["lbsim"], "no_registered_targets");
    assert_eq!(empty["scenario"], "aws-503-no-targets");
    // The app's 500s are the app's.
    assert_eq!(app_5xx(&r), vec![(500, 4)]);
    // The junk line is line 11 of each file.
    assert_eq!(r["unparsed"], 2);
    assert_eq!(unparsed_lines(&r), vec![11, 11]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn lbsims_gcp_entries_as_lines_as_an_array_and_on_stdin() {
    let dir = temp_dir("gcp");
    let text = lbsim_lines(Cloud::Gcp, LogFormat::Gcp);
    let lines = dir.join("requests.jsonl");
    std::fs::write(&lines, &text).unwrap();
    let r = json(&[&lines.display().to_string()]);
    assert_eq!(r["requests"], 10, "{r:#}");
    let race = cause(&r, "backend_connection_closed_before_data_sent_to_client");
    assert_eq!(
        (race["count"].as_u64(), race["status"].as_u64()),
        (Some(5), Some(503))
    );
    assert_eq!(race["scenario"], "gcp-503-keepalive");
    assert_eq!(race["bursts"][0]["count"], 4);
    let timeout = cause(&r, "backend_timeout");
    assert_eq!(timeout["scenario"], "gcp-504-slow-app");
    assert_eq!(timeout["median_seconds"], 300.0);
    assert_eq!(
        cause(&r, "failed_to_pick_backend")["scenario"],
        "gcp-503-unhealthy"
    );
    assert_eq!(app_5xx(&r), vec![(500, 2)]);
    assert_eq!(unparsed_lines(&r), vec![11]);

    // What `gcloud logging read --format=json` prints: one array; one bad entry in it.
    let entries: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .chain([serde_json::json!({"textPayload": "not a request"})])
        .collect();
    let array = dir.join("export.json");
    std::fs::write(&array, serde_json::to_string_pretty(&entries).unwrap()).unwrap();
    let r = json(&[&array.display().to_string()]);
    assert_eq!(r["requests"], 10);
    assert_eq!(r["unparsed_at"][0]["line"], 11);
    assert_eq!(r["unparsed_at"][0]["array_entry"], true);

    // Standard input, gzipped.
    let out = triage(&["--json", "-"], Some(&gzip(&text)));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["requests"], 10);
    assert_eq!(r["files"][0], "-");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn lbsims_nginx_lines_read_back_as_nginxs_causes() {
    let dir = temp_dir("nginx");
    let file = dir.join("access.log");
    std::fs::write(&file, lbsim_lines(Cloud::IngressNginx, LogFormat::Nginx)).unwrap();
    let r = json(&[&file.display().to_string()]);
    assert_eq!(r["requests"], 10, "{r:#}");
    assert_eq!(r["nginx_entries"], 10);
    let race = cause(&r, "502, upstream_status 502, upstream_response_length 0");
    assert_eq!(race["count"], 5);
    assert_eq!(race["scenario"], "ingress-nginx-502-keepalive-post");
    assert_eq!(race["bursts"][0]["count"], 4);
    let timeout = cause(&r, "504, upstream_status 504");
    assert_eq!(timeout["lbsim"], "upstream_timed_out");
    assert_eq!(timeout["median_seconds"], 300.0);
    let none = cause(&r, "503, upstream_status -");
    assert_eq!(none["lbsim"], "no_ready_endpoints");
    assert_eq!(app_5xx(&r), vec![(500, 2)]);
    assert_eq!(unparsed_lines(&r), vec![11]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_text_report_names_cause_fix_and_scenario_and_keeps_the_apps_500_apart() {
    let dir = temp_dir("text");
    let file = dir.join("alb.log");
    std::fs::write(&file, lbsim_lines(Cloud::Aws, LogFormat::Alb)).unwrap();
    let out = triage(&[&file.display().to_string()], None);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("lbsim triage: 10 requests in 1 file(s)"),
        "{text}"
    );
    assert!(
        text.contains("502 [aws] target closed the connection (most often the keep-alive race)"),
        "{text}"
    );
    assert!(
        text.contains("reproduce: lbsim scenario run aws-502-keepalive"),
        "{text}"
    );
    assert!(
        text.contains("burst: 4 from 2024-06-01T00:00:00.005000Z to 2024-06-01T00:00:15.005000Z"),
        "{text}"
    );
    assert!(
        text.contains("Answered by the app (passed through, not the load balancer's):\n  500  2"),
        "{text}"
    );
    assert!(
        text.contains(":11: `not` is not an ALB request type"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_missing_file_is_reported_and_the_rest_still_read() {
    let out = triage(
        &[
            "--json",
            "/nonexistent/lbsim.log",
            &sample("alb-published.log"),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["requests"], 9);
    assert!(r["read_errors"][0]
        .as_str()
        .unwrap()
        .starts_with("/nonexistent/lbsim.log: "));
}
