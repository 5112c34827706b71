//! The ingress-nginx access log (`--cloud ingress-nginx --access-log PATH`): the
//! controller's default `log-format-upstream` line, written by a running lbsim over real
//! sockets, with every try nginx made in the four `$upstream_*` fields; then the same
//! lines read back by `lbsim triage`.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use lbsim::accesslog::{LogFormat, NGINX_UPSTREAM_NAME};
use lbsim::triage::{Report, Tally};
use lbsim::{Cloud, RaceWindow, Simulator};
use regex::Regex;
use support::*;

/// proxy-read-timeout for these tests: three tries take three of it.
const READ: Duration = Duration::from_millis(300);

fn temp_log(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("lbsim-{}-{name}.log", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

/// The line for `request` (`GET /`) with `status`, `body` bytes and the four upstream
/// fields matching `upstream` (a regex), as the controller's default format writes it:
/// `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
/// "$http_referer" "$http_user_agent" $request_length $request_time [$proxy_upstream_name]
/// [$proxy_alternative_upstream_name] $upstream_addr $upstream_response_length
/// $upstream_response_time $upstream_status $req_id`. Captures: 1 `$request_time`, then
/// the upstream regex's own groups, then `$req_id` (see [`req_id`]).
fn line_shape(request: &str, status: u16, body: usize, agent: &str, upstream: &str) -> Regex {
    Regex::new(&format!(
        r#"^127\.0\.0\.1 - - \[\d\d/[A-Z][a-z]{{2}}/\d{{4}}:\d\d:\d\d:\d\d \+0000\] "{}" {status} {body} "-" "{}" \d+ (\d+\.\d{{3}}) \[{}\] \[\] {upstream} ([0-9a-f]{{32}})$"#,
        regex::escape(request),
        regex::escape(agent),
        regex::escape(NGINX_UPSTREAM_NAME),
    ))
    .unwrap()
}

fn captures<'a>(shape: &Regex, line: &'a str) -> regex::Captures<'a> {
    shape
        .captures(line)
        .unwrap_or_else(|| panic!("not the expected shape:\n  {line}\n  {shape}"))
}

/// The `$req_id` a [`line_shape`] matched: its last group.
fn req_id(c: &regex::Captures<'_>) -> String {
    c[c.len() - 1].to_string()
}

fn seconds(text: &str) -> Duration {
    Duration::from_secs_f64(text.parse().unwrap())
}

/// What `lbsim triage` makes of `text`.
fn triage(text: &str) -> Report {
    let mut tally = Tally::default();
    tally.read_text("access.log", text, Cloud::Gcp);
    tally.report()
}

#[tokio::test]
async fn nginx_lines_for_a_200_a_504_after_three_tries_an_apps_500_and_a_503_with_no_endpoint() {
    let app = mock(Duration::from_secs(5)).await;
    let path = temp_log("nginx");
    // No --log-format: ingress-nginx's own format is the profile's default.
    let lb = Simulator::builder(Cloud::IngressNginx)
        .no_health_checks()
        .upstream(app.addr)
        .idle_timeout(READ)
        .access_log(path.to_str().unwrap(), None)
        .start()
        .await
        .unwrap();
    let mut client = RawClient::connect(lb.addr()).await;
    client
        .send(
            b"GET / HTTP/1.1\r\nHost: lbsim.test\r\nUser-Agent: curl/8.5.0\r\n\
              X-Request-ID: 0123456789abcdef0123456789abcdef\r\n\r\n",
        )
        .await;
    assert_eq!(client.response().await.unwrap().status, 200);
    // The app sends nothing within proxy-read-timeout: three tries on the one endpoint.
    assert_eq!(client.get("/sleep/5").await.status, 504);
    assert_eq!(app.requests(), 4);
    // The app's own 500 (body `status 500`).
    assert_eq!(client.get("/status/500").await.status, 500);
    lb.shutdown().await;

    // An ingress whose Service has no endpoint: nginx answers 503 before any try.
    let empty_path = temp_log("nginx-503");
    let empty = Simulator::builder(Cloud::IngressNginx)
        .no_health_checks()
        .access_log(empty_path.to_str().unwrap(), None)
        .start()
        .await
        .unwrap();
    let mut client = RawClient::connect(empty.addr()).await;
    assert_eq!(client.get("/").await.status, 503);
    empty.shutdown().await;

    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let target = regex::escape(&app.addr.to_string());

    // 200: one try, its body length, time and status; the client's X-Request-ID.
    let ok = line_shape(
        "GET / HTTP/1.1",
        200,
        2,
        "curl/8.5.0",
        &format!(r"{target} 2 \d+\.\d{{3}} 200"),
    );
    let c = captures(&ok, lines[0]);
    assert_eq!(req_id(&c), "0123456789abcdef0123456789abcdef");

    // 504: three addresses, three empty responses, three read timeouts, three 504s.
    let timeout = line_shape(
        "GET /sleep/5 HTTP/1.1",
        504,
        160,
        "-",
        &format!(
            r"{target}, {target}, {target} 0, 0, 0 (\d+\.\d{{3}}), (\d+\.\d{{3}}), (\d+\.\d{{3}}) 504, 504, 504"
        ),
    );
    let c = captures(&timeout, lines[1]);
    let tolerance = Duration::from_millis(250);
    for try_time in [&c[2], &c[3], &c[4]] {
        assert_elapsed(seconds(try_time), READ, tolerance);
    }
    assert_elapsed(seconds(&c[1]), READ * 3, tolerance * 2);

    // The app's 500 passes through: one try whose status is the app's, with its body.
    let app_500 = line_shape(
        "GET /status/500 HTTP/1.1",
        500,
        10,
        "-",
        &format!(r"{target} 10 \d+\.\d{{3}} 500"),
    );
    let ids: Vec<String> = [captures(&app_500, lines[2]), captures(&timeout, lines[1])]
        .iter()
        .map(req_id)
        .collect();
    assert_ne!(ids[0], ids[1], "each request has its own $req_id");

    // 503 with no endpoint: `-` in all four upstream fields.
    let text_503 = std::fs::read_to_string(&empty_path).unwrap();
    let lines_503: Vec<&str> = text_503.lines().collect();
    assert_eq!(lines_503.len(), 1, "{text_503}");
    captures(
        &line_shape("GET / HTTP/1.1", 503, 190, "-", "- - - -"),
        lines_503[0],
    );

    // lbsim triage reads them back: nginx's 504 and 503 are nginx's, the 500 the app's.
    let report = triage(&format!("{text}{text_503}"));
    assert_eq!(report.requests, 4);
    assert_eq!(report.nginx_entries, 4);
    assert_eq!(report.lb_errors, 2, "{report}");
    let read_timeout = report
        .causes
        .iter()
        .find(|c| c.status == Some(504))
        .unwrap();
    assert_eq!(read_timeout.lbsim, Some("upstream_timed_out"));
    assert_eq!(read_timeout.scenario, Some("ingress-nginx-504-slow-app"));
    assert_eq!(read_timeout.log, "504, upstream_status 504 on every try");
    let no_endpoint = report
        .causes
        .iter()
        .find(|c| c.status == Some(503))
        .unwrap();
    assert!(
        no_endpoint.cause.starts_with("no ready endpoint"),
        "{report}"
    );
    assert_eq!(report.app_5xx.len(), 1);
    assert_eq!(report.app_5xx[0].status, 500);

    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&empty_path);
}

/// The app closes its idle keep-alive connection and nginx reuses it: a GET is sent again
/// on a new connection (a try given back: nginx still logs both, `502, 200`); a POST was
/// written on it and gets nginx's 502, one try.
#[tokio::test]
async fn the_keep_alive_race_logs_the_failed_try_before_the_apps_answer() {
    let app = mock(Duration::from_millis(300)).await;
    let path = temp_log("nginx-race");
    let lb = Simulator::builder(Cloud::IngressNginx)
        .no_health_checks()
        .upstream(app.addr)
        .race_window(RaceWindow::Always)
        .access_log(path.to_str().unwrap(), Some(LogFormat::Nginx))
        .start()
        .await
        .unwrap();
    let mut client = RawClient::connect(lb.addr()).await;
    get_ok(&mut client).await;
    wait_until("the app closes its idle connection", READ_LIMIT, || {
        app.idle_closes() >= 1
    })
    .await;
    get_ok(&mut client).await;
    wait_until("the app closes its idle connection", READ_LIMIT, || {
        app.idle_closes() >= 2
    })
    .await;
    client
        .send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
        .await;
    assert_eq!(client.response().await.unwrap().status, 502);
    lb.shutdown().await;

    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let target = regex::escape(&app.addr.to_string());
    captures(
        &line_shape(
            "GET / HTTP/1.1",
            200,
            2,
            "-",
            &format!(r"{target}, {target} 0, 2 \d+\.\d{{3}}, \d+\.\d{{3}} 502, 200"),
        ),
        lines[1],
    );
    captures(
        &line_shape(
            "POST / HTTP/1.1",
            502,
            150,
            "-",
            &format!(r"{target} 0 \d+\.\d{{3}} 502"),
        ),
        lines[2],
    );

    let report = triage(&text);
    assert_eq!(report.lb_errors, 1, "{report}");
    let race = &report.causes[0];
    assert_eq!(race.status, Some(502));
    assert_eq!(race.scenario, Some("ingress-nginx-502-keepalive-post"));
    assert!(race.cause.contains("keep-alive mismatch"), "{report}");
    assert!(
        race.fix.starts_with("Set the app's keep-alive above 60 s"),
        "{report}"
    );
    let _ = std::fs::remove_file(&path);
}
