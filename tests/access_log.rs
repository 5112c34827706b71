//! The access log in the cloud's own format, written by a running lbsim.

mod support;

use std::time::Duration;

use lbsim::accesslog::LogFormat;
use lbsim::{Cloud, RaceWindow, Simulator};
use support::*;

fn temp_log(name: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("lbsim-{}-{name}.log", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

/// ALB fields 5..=10: client, target, three timings, elb status, target status.
fn timing_and_status(line: &str) -> Vec<String> {
    line.split(' ')
        .skip(5)
        .take(5)
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn alb_lines_for_a_200_a_504_and_a_keep_alive_race() {
    let app = mock(Duration::from_millis(200)).await;
    let path = temp_log("alb");
    let lb = Simulator::builder(Cloud::Aws)
        .no_health_checks()
        .upstream(app.addr)
        .idle_timeout(Duration::from_millis(400))
        .race_window(RaceWindow::Always)
        .access_log(path.to_str().unwrap(), None)
        .start()
        .await
        .unwrap();
    let mut client = RawClient::connect(lb.addr()).await;
    assert_eq!(client.get("/").await.status, 200);
    wait_until(
        "the app closes its idle connection",
        Duration::from_secs(3),
        || app.idle_closes() == 1,
    )
    .await;
    assert_eq!(client.get("/").await.status, 502);
    assert_eq!(client.get("/sleep/2").await.status, 504);
    lb.shutdown().await;

    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines.iter().all(|l| l.starts_with("http ")), "{text}");
    let ok = timing_and_status(lines[0]);
    assert_eq!(&ok[3..], ["200", "200"], "{}", lines[0]);
    assert_ne!(ok[0], "-1");
    let race = timing_and_status(lines[1]);
    assert_eq!(race, ["-1", "-1", "-1", "502", "-"], "{}", lines[1]);
    let timeout = timing_and_status(lines[2]);
    assert_eq!(&timeout[1..], ["-1", "-1", "504", "-"], "{}", lines[2]);
    assert!(
        lines[2].contains("\"GET http://lbsim.test:"),
        "{}",
        lines[2]
    );
    let _ = std::fs::remove_file(&path);
}

/// The last field of an ALB line, checked to be a conn_trace_id: `TID_` and 32 hex digits,
/// the shape of AWS's published examples (`TID_3180a73013c8ca4bac2f731159d4b0fe`).
fn conn_trace_id(line: &str) -> &str {
    let last = line.rsplit(' ').next().unwrap_or_default();
    let hex = last.strip_prefix("TID_").unwrap_or_default();
    assert!(
        hex.len() == 32
            && hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
        "last field is not a conn_trace_id: {line}"
    );
    last
}

#[tokio::test]
async fn alb_lines_end_with_one_conn_trace_id_per_client_connection() {
    let app = mock(Duration::from_secs(5)).await;
    let path = temp_log("alb-tid");
    let lb = Simulator::builder(Cloud::Aws)
        .no_health_checks()
        .upstream(app.addr)
        .access_log(path.to_str().unwrap(), None)
        .start()
        .await
        .unwrap();
    let mut first = RawClient::connect(lb.addr()).await;
    assert_eq!(first.get("/").await.status, 200);
    assert_eq!(first.get("/").await.status, 200);
    let mut second = RawClient::connect(lb.addr()).await;
    assert_eq!(second.get("/").await.status, 200);
    lb.shutdown().await;

    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let ids: Vec<&str> = lines.iter().map(|l| conn_trace_id(l)).collect();
    assert_eq!(ids[0], ids[1], "one connection, one conn_trace_id:\n{text}");
    assert_ne!(ids[0], ids[2], "another connection, another one:\n{text}");
    let _ = std::fs::remove_file(&path);
}

/// An ALB with no target and an access log in the ALB format; the log's path.
async fn alb_without_targets(name: &str) -> (std::path::PathBuf, lbsim::SimHandle) {
    let path = temp_log(name);
    let lb = Simulator::builder(Cloud::Aws)
        .no_health_checks()
        .access_log(path.to_str().unwrap(), None)
        .start()
        .await
        .unwrap();
    (path, lb)
}

#[tokio::test]
async fn alb_line_of_the_503_for_an_empty_target_group() {
    // No upstream: the target group has no registered targets, so the ALB answers 503
    // itself. It still routed the request: captured lines show the target group ARN,
    // rule priority 0 and "forward", with `-` for the target, the target status and both
    // target lists, and -1 for the three timings.
    let (path, lb) = alb_without_targets("alb-503").await;
    let mut client = RawClient::connect(lb.addr()).await;
    assert_eq!(client.get("/").await.status, 503);
    lb.shutdown().await;

    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    let line = lines[0];
    let f: Vec<&str> = line.split(' ').collect();
    assert_eq!(&f[4..10], ["-", "-1", "-1", "-1", "503", "-"], "{line}");
    // From target_group_arn to the end: arn "trace_id" "-" "-" 0 request_creation_time
    // "forward" "-" "-" "-" "-" "-" "-" conn_trace_id.
    let tail = &f[f.len() - 14..];
    assert_eq!(tail[0], lbsim::accesslog::ALB_TARGET_GROUP_ARN, "{line}");
    assert!(tail[1].starts_with("\"Root=1-"), "{line}");
    assert_eq!(&tail[2..5], ["\"-\"", "\"-\"", "0"], "{line}");
    assert_eq!(tail[6], "\"forward\"", "{line}");
    assert!(tail[7..13].iter().all(|v| *v == "\"-\""), "{line}");
    conn_trace_id(line);
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn gcp_entries_carry_status_details() {
    let app = mock(Duration::from_secs(5)).await;
    let path = temp_log("gcp");
    // No retry: GCP would send the GET that met the closed port to the app instead.
    let lb = Simulator::builder(Cloud::GcpClassic)
        .no_health_checks()
        .no_retry()
        .upstream(app.addr)
        .upstream(closed_port().await)
        .access_log(path.to_str().unwrap(), Some(LogFormat::Gcp))
        .start()
        .await
        .unwrap();
    let mut client = RawClient::connect(lb.addr()).await;
    assert_eq!(client.get("/").await.status, 200);
    assert_eq!(client.get("/").await.status, 502);
    lb.shutdown().await;
    let text = std::fs::read_to_string(&path).unwrap();
    let entries: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len(), 2, "{text}");
    let details: Vec<&str> = entries
        .iter()
        .map(|e| e["jsonPayload"]["statusDetails"].as_str().unwrap())
        .collect();
    assert_eq!(
        details,
        ["response_sent_by_backend", "failed_to_connect_to_backend"]
    );
    assert_eq!(entries[1]["httpRequest"]["status"], 502);
    assert_eq!(entries[0]["httpRequest"]["requestMethod"], "GET");
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn alb_lines_of_requests_the_alb_rejects_show_no_routing() {
    // Rejected before routing: `-` for the target group, the trace id, the rule priority
    // and the action (AWS's field descriptions; published 400 lines show the same), and
    // -1 for the three timings. A request line that cannot be read is logged "- ...- -".
    let (path, lb) = alb_without_targets("alb-rejected").await;
    let port = lb.addr().port();
    let mut trace = RawClient::connect(lb.addr()).await;
    trace
        .send(b"TRACE /x HTTP/1.1\r\nHost: lbsim.test\r\nUser-Agent: probe/1\r\n\r\n")
        .await;
    assert_eq!(trace.response().await.expect("the 405").status, 405);
    let mut garbled = RawClient::connect(lb.addr()).await;
    garbled.send(b"GARBAGE\r\n\r\n").await;
    assert_eq!(garbled.response().await.expect("the 400").status, 400);
    lb.shutdown().await;

    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    for (line, status) in lines.iter().zip(["405", "400"]) {
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!(&f[4..10], ["-", "-1", "-1", "-1", status, "-"], "{line}");
        // target_group_arn "trace_id" "domain" "cert" priority time "actions" ...
        let tail = &f[f.len() - 14..];
        assert_eq!(&tail[0..5], ["-", "\"-\"", "\"-\"", "\"-\"", "-"], "{line}");
        assert_eq!(tail[6], "\"-\"", "{line}");
        conn_trace_id(line);
    }
    assert!(
        lines[0].contains(&format!(
            "\"TRACE http://lbsim.test:{port}/x HTTP/1.1\" \"probe/1\""
        )),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains(&format!("\"- http://127.0.0.1:{port}- -\"")),
        "{}",
        lines[1]
    );
    let _ = std::fs::remove_file(&path);
}
