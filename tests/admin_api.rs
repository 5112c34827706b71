//! The control API (`--admin`): every endpoint over a real TCP connection, its effect on
//! traffic through the proxy, every error case, the separation of the two ports, and the
//! CLI's refusal of a non-loopback address.

mod support;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use lbsim::{AdminLimits, AdminServer, Cloud, SimHandle, Simulator, SimulatorBuilder};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;

use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_lbsim");

/// Upper bound for a process to start or exit.
const PROCESS_LIMIT: Duration = Duration::from_secs(15);

/// Exact `Content-Type` of `/metrics`.
const METRICS_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A control API answer, read to the end of a `Connection: close` exchange.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("UTF-8 body")
    }

    /// The body as JSON; the content type must say so.
    #[track_caller]
    fn json(&self) -> Value {
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text()))
    }

    /// An error answer: `status`, a JSON body `{"error": "..."}` whose message contains
    /// `needle`; returns the message.
    #[track_caller]
    fn assert_error(&self, status: u16, needle: &str) -> String {
        assert_eq!(self.status, status, "{}", self.text());
        let v = self.json();
        let obj = v.as_object().expect("error body is an object");
        assert_eq!(obj.len(), 1, "only an `error` field: {v}");
        let message = obj["error"].as_str().expect("`error` is a string");
        assert!(
            message.contains(needle),
            "error message {message:?} lacks {needle:?}"
        );
        message.to_string()
    }
}

/// Sends raw bytes on a new connection and reads until the server closes it.
async fn raw(addr: SocketAddr, request: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write request");
    read_reply(stream).await
}

/// Reads an answer on `stream` until the server closes it.
async fn read_reply(mut stream: TcpStream) -> Reply {
    let mut bytes = Vec::new();
    tokio::time::timeout(READ_LIMIT, stream.read_to_end(&mut bytes))
        .await
        .expect("the server closes the connection after a Connection: close exchange")
        .expect("read reply");
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut parsed = httparse::Response::new(&mut headers);
    let head_len = match parsed.parse(&bytes).expect("valid response head") {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => {
            panic!("incomplete response: {:?}", String::from_utf8_lossy(&bytes))
        }
    };
    let reply = Reply {
        status: parsed.code.expect("status"),
        headers: parsed
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
        body: bytes[head_len..].to_vec(),
    };
    if let Some(len) = reply.header("content-length") {
        assert_eq!(len.parse::<usize>().unwrap(), reply.body.len(), "{reply:?}");
    }
    reply
}

/// `method path` with an optional JSON body, on a new connection.
async fn call(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> Reply {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: admin.test\r\nConnection: close\r\n");
    if let Some(body) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    } else {
        req.push_str("\r\n");
    }
    raw(addr, req.as_bytes()).await
}

async fn get_json(addr: SocketAddr, path: &str) -> Value {
    let r = call(addr, "GET", path, None).await;
    assert_eq!(r.status, 200, "GET {path}: {}", r.text());
    r.json()
}

/// lbsim on `cloud` in front of `upstreams`, health checks off, control API on port 0.
async fn lb_with_admin(cloud: Cloud, upstreams: &[SocketAddr], timeout: Duration) -> WithAdmin {
    let mut b = Simulator::builder(cloud).no_health_checks();
    for u in upstreams {
        b = b.upstream(*u);
    }
    start_with_admin(b.main_timeout(timeout)).await
}

/// A simulator and its control API, stopped together.
struct WithAdmin {
    lb: SimHandle,
    admin: AdminServer,
}

impl std::ops::Deref for WithAdmin {
    type Target = SimHandle;
    fn deref(&self) -> &SimHandle {
        &self.lb
    }
}

impl WithAdmin {
    async fn shutdown(self) {
        self.admin.shutdown().await;
        self.lb.shutdown().await;
    }
}

/// Starts `b` and serves the control API for it on a port of its own.
async fn start_with_admin(b: SimulatorBuilder) -> WithAdmin {
    let lb = b.start().await.expect("lbsim starts");
    let admin = AdminServer::start(SocketAddr::from(([127, 0, 0, 1], 0)), lb.control())
        .expect("the control API starts");
    WithAdmin { lb, admin }
}

fn admin(lb: &WithAdmin) -> SocketAddr {
    lb.admin.addr()
}

/// What GET /targets shows for a target nobody touched, health checks off.
fn fresh(id: u64, addr: SocketAddr) -> Value {
    json!({
        "id": id,
        "address": addr.to_string(),
        "state": "unavailable",
        "checked_state": "unavailable",
        "reason": "not checked yet",
        "override": "auto",
        "in_flight": 0,
    })
}

/// Sends `n` requests for `/` through the proxy, each on its own connection; all 200 `ok`.
async fn send_through(lb: &SimHandle, n: usize) {
    for _ in 0..n {
        let mut c = RawClient::connect(lb.addr()).await;
        let r = c.get("/").await;
        assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    }
}

/// Polls GET /targets until target `id` satisfies `done`; fails after `limit`.
async fn wait_for_target(
    addr: SocketAddr,
    id: u64,
    limit: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        let all = get_json(addr, "/targets").await;
        let t = all
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id)
            .cloned()
            .expect("target listed");
        if done(&t) {
            return t;
        }
        assert!(start.elapsed() < limit, "target {id} never got there: {t}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn get_targets_lists_the_configured_target() {
    let app = mock(Duration::from_secs(5)).await;
    let lb = lb_with_admin(Cloud::Aws, &[app.addr], Duration::from_secs(5)).await;
    let r = call(admin(&lb), "GET", "/targets", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!([fresh(1, app.addr)]));
    assert_eq!(get_json(admin(&lb), "/targets/1").await, fresh(1, app.addr));
    lb.shutdown().await;
}

#[tokio::test]
async fn registered_target_gets_its_round_robin_share() {
    let a = mock(Duration::from_secs(5)).await;
    let b = mock(Duration::from_secs(5)).await;
    let lb = lb_with_admin(Cloud::Aws, &[a.addr], Duration::from_secs(5)).await;

    // The host:port form goes through the CLI's resolver: `localhost` becomes 127.0.0.1.
    let body = format!(r#"{{"address": "http://localhost:{}/"}}"#, b.addr.port());
    let r = call(admin(&lb), "POST", "/targets", Some(&body)).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json(), fresh(2, b.addr));
    assert_eq!(
        get_json(admin(&lb), "/targets").await,
        json!([fresh(1, a.addr), fresh(2, b.addr)])
    );

    send_through(&lb, 6).await;
    assert_eq!(
        (a.requests(), b.requests()),
        (3, 3),
        "round-robin over both"
    );

    // The same address again, while it is registered, is a conflict, not a second entry.
    let again = format!(r#"{{"address": "{}"}}"#, b.addr);
    call(admin(&lb), "POST", "/targets", Some(&again))
        .await
        .assert_error(409, "already registered (id 2)");
    assert_eq!(
        get_json(admin(&lb), "/targets")
            .await
            .as_array()
            .unwrap()
            .len(),
        2
    );
    lb.shutdown().await;
}

#[tokio::test]
async fn delete_drains_the_target_then_it_leaves_the_group() {
    let a = mock(Duration::from_secs(5)).await;
    let b = mock(Duration::from_secs(5)).await;
    let delay = Duration::from_millis(400);
    let lb = start_with_admin(
        Simulator::builder(Cloud::Aws)
            .upstream(a.addr)
            .upstream(b.addr)
            .no_health_checks()
            .deregistration_delay(delay),
    )
    .await;
    let api = admin(&lb);

    let start = Instant::now();
    let r = call(api, "DELETE", "/targets/2", None).await;
    assert_eq!(r.status, 202, "{}", r.text());
    let mut draining = fresh(2, b.addr);
    draining["state"] = json!("draining");
    draining["checked_state"] = json!("draining");
    // The time left is the one field that moves: checked, then compared without it.
    let without_time_left = |mut v: Value| {
        let left = v["drain_remaining_ms"]
            .as_u64()
            .expect("time left while draining");
        assert!(left <= delay.as_millis() as u64, "{left} ms left: {v}");
        v.as_object_mut().unwrap().remove("drain_remaining_ms");
        (v, left)
    };
    let (first, left_first) = without_time_left(r.json());
    assert_eq!(first, draining);
    assert_eq!(
        without_time_left(get_json(api, "/targets/2").await).0,
        draining
    );

    // Deleting it again changes nothing, as AWS's DeregisterTargets on a draining target:
    // 200 (not a second 202 "accepted"), still draining, the delay not restarted.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let r = call(api, "DELETE", "/targets/2", None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (again, left_again) = without_time_left(r.json());
    assert_eq!(again, draining);
    assert!(
        left_again + 40 <= left_first,
        "the delay went on: {left_first} ms left, then {left_again} ms"
    );

    // A draining target gets no new requests.
    send_through(&lb, 4).await;
    assert_eq!((a.requests(), b.requests()), (4, 0));

    // When the delay ends the target leaves the group, as on AWS: no longer listed.
    loop {
        let r = call(api, "GET", "/targets/2", None).await;
        if r.status == 404 {
            assert!(
                r.text().contains("no longer in the target group"),
                "{}",
                r.text()
            );
            break;
        }
        assert_eq!(r.json()["state"], "draining");
        assert!(start.elapsed() < Duration::from_secs(5), "still there");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = start.elapsed();
    assert!(elapsed >= delay, "gone after {elapsed:?}, before the delay");
    assert_elapsed(elapsed, delay, Duration::from_millis(300));
    assert_eq!(get_json(api, "/targets").await, json!([fresh(1, a.addr)]));
    let r = call(api, "DELETE", "/targets/2", None).await;
    assert_eq!(r.status, 404, "{}", r.text());

    // Once gone, the address can be registered again as a new target.
    let body = format!(r#"{{"address": "{}"}}"#, b.addr);
    let r = call(api, "POST", "/targets", Some(&body)).await;
    assert_eq!((r.status, r.json()), (201, fresh(3, b.addr)));
    lb.shutdown().await;
}

#[tokio::test]
async fn unhealthy_override_keeps_traffic_away_until_auto() {
    let a = mock(Duration::from_secs(5)).await;
    let b = mock(Duration::from_secs(5)).await;
    let lb = lb_with_admin(Cloud::Aws, &[a.addr, b.addr], Duration::from_secs(5)).await;
    let api = admin(&lb);

    let r = call(
        api,
        "PUT",
        "/targets/2/health",
        Some(r#"{"override": "unhealthy"}"#),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // `state` is what routing goes by; the checks' own verdict stays beside it.
    let mut overridden = fresh(2, b.addr);
    overridden["override"] = json!("unhealthy");
    overridden["state"] = json!("unhealthy");
    assert_eq!(r.json(), overridden);
    assert_eq!(
        get_json(api, "/targets").await,
        json!([fresh(1, a.addr), overridden])
    );
    let metrics = call(api, "GET", "/metrics", None).await.text();
    for line in [
        "lbsim_targets{state=\"unhealthy\"} 1\n",
        "lbsim_targets{state=\"unavailable\"} 1\n",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }

    send_through(&lb, 4).await;
    assert_eq!((a.requests(), b.requests()), (4, 0), "traffic avoids it");

    let r = call(
        api,
        "PUT",
        "/targets/2/health",
        Some(r#"{"override": "auto"}"#),
    )
    .await;
    assert_eq!((r.status, r.json()), (200, fresh(2, b.addr)));
    send_through(&lb, 4).await;
    assert_eq!((a.requests(), b.requests()), (6, 2), "back in the rotation");

    let r = call(
        api,
        "PUT",
        "/targets/1/health",
        Some(r#"{"override": "healthy"}"#),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["override"], "healthy");
    assert_eq!(
        (&r.json()["state"], &r.json()["checked_state"]),
        (&json!("healthy"), &json!("unavailable"))
    );
    lb.shutdown().await;
}

#[tokio::test]
async fn gcp_with_every_target_overridden_unhealthy_answers_503() {
    let app = mock(Duration::from_secs(5)).await;
    let lb = lb_with_admin(Cloud::Gcp, &[app.addr], Duration::from_secs(5)).await;
    let r = call(
        admin(&lb),
        "PUT",
        "/targets/1/health",
        Some(r#"{"override": "unhealthy"}"#),
    )
    .await;
    assert_eq!(r.status, 200);
    let mut c = RawClient::connect(lb.addr()).await;
    let r = c.get("/").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.header("x-lbsim-reason"), Some("no_healthy_backend"));
    assert_eq!(app.requests(), 0);
    lb.shutdown().await;
}

/// Two 200s, one 404 from the app, and one 504 from the LB (the app sleeps past the
/// 300 ms idle timeout).
async fn mixed_traffic(lb: &SimHandle) {
    send_through(lb, 2).await;
    let mut c = RawClient::connect(lb.addr()).await;
    assert_eq!(c.get("/status/404").await.status, 404);
    let mut c = RawClient::connect(lb.addr()).await;
    let r = c.get("/sleep/2").await;
    assert_eq!(r.status, 504);
    assert_eq!(r.header("x-lbsim-reason"), Some("target_idle_timeout"));
}

#[tokio::test]
async fn stats_count_requests_and_reset_zeroes_them() {
    let app = mock(Duration::from_secs(5)).await;
    let lb = lb_with_admin(Cloud::Aws, &[app.addr], Duration::from_millis(300)).await;
    let api = admin(&lb);
    assert_eq!(
        get_json(api, "/stats").await,
        json!({"by_status": {}, "by_reason": {}, "by_cause": {}, "lb_by_status": {}, "retries": 0, "spliced_bytes": 0})
    );

    mixed_traffic(&lb).await;
    assert_eq!(
        get_json(api, "/stats").await,
        json!({
            "by_status": {"200": 2, "404": 1, "504": 1},
            "by_reason": {"target_idle_timeout": 1},
            "by_cause": {"target_timeout": 1},
            "lb_by_status": {"504": 1},
            "retries": 0,
            "spliced_bytes": 0,
        })
    );

    let r = call(api, "POST", "/stats/reset", None).await;
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    assert_eq!(
        get_json(api, "/stats").await,
        json!({"by_status": {}, "by_reason": {}, "by_cause": {}, "lb_by_status": {}, "retries": 0, "spliced_bytes": 0})
    );
    assert_eq!(lb.stats(), Default::default(), "the library sees the reset");

    send_through(&lb, 1).await;
    assert_eq!(
        get_json(api, "/stats").await,
        json!({"by_status": {"200": 1}, "by_reason": {}, "by_cause": {}, "lb_by_status": {}, "retries": 0, "spliced_bytes": 0})
    );
    lb.shutdown().await;
}

#[tokio::test]
async fn metrics_are_a_prometheus_scrape() {
    let a = mock(Duration::from_secs(5)).await;
    let b = mock(Duration::from_secs(5)).await;
    let lb = lb_with_admin(Cloud::Aws, &[a.addr, b.addr], Duration::from_millis(300)).await;
    let api = admin(&lb);
    call(
        api,
        "PUT",
        "/targets/2/health",
        Some(r#"{"override": "unhealthy"}"#),
    )
    .await;
    mixed_traffic(&lb).await;
    call(api, "DELETE", "/targets/2", None).await;

    let r = call(api, "GET", "/metrics", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some(METRICS_TYPE));
    let expected = format!(
        "\
# HELP lbsim_requests_total Responses sent to clients, by status code (the app's and the load balancer's).
# TYPE lbsim_requests_total counter
lbsim_requests_total{{status=\"200\"}} 2
lbsim_requests_total{{status=\"404\"}} 1
lbsim_requests_total{{status=\"504\"}} 1
# HELP lbsim_lb_errors_total Responses the load balancer generated or cut, by the cloud's word for the cause (reason) and lbsim's cloud-neutral cause (cause).
# TYPE lbsim_lb_errors_total counter
lbsim_lb_errors_total{{reason=\"target_idle_timeout\",cause=\"target_timeout\"}} 1
# HELP lbsim_targets Targets by state.
# TYPE lbsim_targets gauge
lbsim_targets{{state=\"initial\"}} 0
lbsim_targets{{state=\"healthy\"}} 0
lbsim_targets{{state=\"unhealthy\"}} 0
lbsim_targets{{state=\"draining\"}} 1
lbsim_targets{{state=\"unused\"}} 0
lbsim_targets{{state=\"unavailable\"}} 1
# HELP lbsim_target_in_flight Requests in flight, by target address.
# TYPE lbsim_target_in_flight gauge
lbsim_target_in_flight{{address=\"{a}\"}} 0
lbsim_target_in_flight{{address=\"{b}\"}} 0
",
        a = a.addr,
        b = b.addr
    );
    assert_eq!(r.text(), expected);

    // Every sample line is `name{labels} integer` and every family has HELP and TYPE.
    let text = r.text();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        value.parse::<u64>().unwrap();
        let name = series.split('{').next().unwrap();
        assert!(text.contains(&format!("# HELP {name} ")), "{name}");
        assert!(text.contains(&format!("# TYPE {name} ")), "{name}");
    }

    // After a reset the counter families are empty; the gauges are not counters.
    call(api, "POST", "/stats/reset", None).await;
    let text = call(api, "GET", "/metrics", None).await.text();
    assert!(!text.contains("lbsim_requests_total{"), "{text}");
    assert!(!text.contains("lbsim_lb_errors_total{"), "{text}");
    assert!(
        text.contains("lbsim_targets{state=\"draining\"} 1\n"),
        "{text}"
    );
    lb.shutdown().await;
}

#[tokio::test]
async fn in_flight_counts_a_running_request() {
    let app = mock(Duration::from_secs(5)).await;
    let lb = lb_with_admin(Cloud::Aws, &[app.addr], Duration::from_secs(5)).await;
    let api = admin(&lb);

    let mut slow = RawClient::connect(lb.addr()).await;
    slow.send(b"GET /sleep/0.6 HTTP/1.1\r\nHost: lbsim.test\r\n\r\n")
        .await;
    wait_for_target(api, 1, Duration::from_secs(5), |t| t["in_flight"] == 1).await;
    let text = call(api, "GET", "/metrics", None).await.text();
    let line = format!("lbsim_target_in_flight{{address=\"{}\"}} 1\n", app.addr);
    assert!(text.contains(&line), "{text}");

    let r = slow.response().await.unwrap();
    assert_eq!(r.status, 200);
    wait_for_target(api, 1, Duration::from_secs(5), |t| t["in_flight"] == 0).await;
    lb.shutdown().await;
}

#[tokio::test]
async fn config_shows_the_effective_scaled_settings() {
    let app = mock(Duration::from_secs(5)).await;
    let lb = start_with_admin(
        Simulator::builder(Cloud::Aws)
            .upstream(app.addr)
            .no_health_checks()
            .idle_timeout(Duration::from_secs(60))
            .time_scale(0.01),
    )
    .await;
    let c = get_json(admin(&lb), "/config").await;
    assert_eq!(c["cloud"], "aws");
    assert_eq!(c["load_balancer"], "AWS ALB");
    assert_eq!(c["defaults"], "anyscale");
    assert_eq!(c["time_scale"], 0.01);
    assert_eq!(
        c["timeout"],
        json!({"setting": "idle timeout", "flag": "--idle-timeout", "kind": "idle", "ms": 600})
    );
    // ALB: 10 s connect timeout; target and client connections share the idle timeout.
    assert_eq!(c["connect_timeout_ms"], 100);
    assert_eq!(c["backend_keep_alive_ms"], 600);
    assert_eq!(c["client_idle_timeout_ms"], 600);
    assert_eq!(c["client_keep_alive_ms"], 36_000);
    assert_eq!(c["health_checks"]["enabled"], false);
    assert_eq!(c["no_healthy_target"], "fail_open");
    assert_eq!(c["deregistration_delay_ms"], 3_000);
    assert_eq!(c["race_window"], "5ms");
    assert_eq!(c["race_window_ms"], 5);
    // The same rows as `--print-config`, in order.
    let rows: Vec<(String, String)> = c["print_config"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["setting"].as_str().unwrap().to_string(),
                r["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected = [
        ("load balancer", "AWS ALB"),
        ("defaults", "anyscale"),
        ("time scale", "0.01"),
        ("idle timeout", "600 ms [idle (no byte for this long)]"),
        ("connect timeout", "100 ms"),
        ("backend keep-alive", "600 ms"),
        ("client idle timeout", "600 ms"),
        ("client keep-alive", "36 s (then Connection: close)"),
        ("health checks", "off"),
        ("no healthy target", "fail open (route to all)"),
        ("warmup", "0 ms"),
        ("deregistration delay", "3 s"),
        ("desync mitigation", "defensive"),
        ("race window", "5 ms"),
        ("retries", "none"),
        ("shutdown grace", "10 s"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(rows, expected);
    lb.shutdown().await;

    // GCP (global external): end-to-end timeout, 503 when no target is healthy.
    let lb = lb_with_admin(Cloud::Gcp, &[app.addr], Duration::from_millis(1500)).await;
    let c = get_json(admin(&lb), "/config").await;
    assert_eq!(c["cloud"], "gcp");
    assert_eq!(c["timeout"]["kind"], "end_to_end");
    assert_eq!(c["timeout"]["flag"], "--backend-timeout");
    assert_eq!(c["timeout"]["ms"], 1500);
    assert_eq!(c["no_healthy_target"], "503");
    lb.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_json_errors() {
    let app = mock(Duration::from_secs(5)).await;
    let lb = lb_with_admin(Cloud::Aws, &[app.addr], Duration::from_secs(5)).await;
    let api = admin(&lb);

    // Bodies that are not the JSON asked for: 400, and the message shows what to send.
    let cases = [
        ("POST", "/targets", r#"{"address": "#, "invalid JSON"),
        ("POST", "/targets", "not json", "expected {\"address\""),
        ("POST", "/targets", "{}", "missing field `address`"),
        ("POST", "/targets", r#"{"address": 8001}"#, "invalid type"),
        (
            "POST",
            "/targets",
            r#"{"addr": "127.0.0.1:1"}"#,
            "unknown field `addr`",
        ),
        (
            "POST",
            "/targets",
            r#"{"address": "nohost"}"#,
            "expected HOST:PORT",
        ),
        (
            "POST",
            "/targets",
            r#"{"address": "no-such-host.invalid:80"}"#,
            "cannot be resolved",
        ),
        (
            "PUT",
            "/targets/1/health",
            r#"{"override": "sick"}"#,
            "unknown variant `sick`",
        ),
        ("PUT", "/targets/1/health", "", "EOF"),
        ("PUT", "/targets/1/health", "{}", "missing field `override`"),
    ];
    for (method, path, body, needle) in cases {
        call(api, method, path, Some(body))
            .await
            .assert_error(400, needle);
    }

    // Unknown ids: 404.
    call(api, "GET", "/targets/99", None)
        .await
        .assert_error(404, "no target with id \"99\"");
    call(api, "DELETE", "/targets/99", None)
        .await
        .assert_error(404, "no target with id \"99\"");
    call(api, "DELETE", "/targets/abc", None)
        .await
        .assert_error(404, "no target with id \"abc\"");
    call(
        api,
        "PUT",
        "/targets/99/health",
        Some(r#"{"override": "auto"}"#),
    )
    .await
    .assert_error(404, "no target with id \"99\"");

    // Unknown paths: 404 naming the endpoints there are.
    for path in [
        "/",
        "/nope",
        "/targets/",
        "/targets/1/health/x",
        "/stats/",
        "//targets",
    ] {
        call(api, "GET", path, None)
            .await
            .assert_error(404, "GET|POST /targets");
    }

    // Wrong methods: 405 with Allow.
    let wrong = [
        ("DELETE", "/targets", "GET, POST"),
        ("PUT", "/targets", "GET, POST"),
        ("POST", "/targets/1", "GET, DELETE"),
        ("GET", "/targets/1/health", "PUT"),
        ("POST", "/stats", "GET"),
        ("GET", "/stats/reset", "POST"),
        ("POST", "/metrics", "GET"),
        ("PUT", "/config", "GET"),
    ];
    for (method, path, allow) in wrong {
        let r = call(api, method, path, None).await;
        assert_eq!(r.status, 405, "{method} {path}");
        assert_eq!(r.header("allow"), Some(allow), "{method} {path}");
        r.assert_error(405, &format!("it takes {allow}"));
    }

    // A body over 64 KiB: 413 before it is read.
    let r = raw(
        api,
        b"POST /targets HTTP/1.1\r\nHost: admin.test\r\nConnection: close\r\n\
          Content-Type: application/json\r\nContent-Length: 70000\r\n\r\n",
    )
    .await;
    r.assert_error(413, "over 65536 bytes");

    // The same, chunked (no length up front): the limit still holds.
    let filler = "x".repeat(65_000);
    let body = format!(r#"{{"address": "127.0.0.1:1", "x": "{filler}{filler}"}}"#);
    let mut req = b"POST /targets HTTP/1.1\r\nHost: admin.test\r\nConnection: close\r\n\
          Transfer-Encoding: chunked\r\n\r\n"
        .to_vec();
    req.extend_from_slice(format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len()).as_bytes());
    let mut stream = TcpStream::connect(api).await.unwrap();
    // Write on a task: the server may answer before it has read everything.
    let (mut rd, mut wr) = stream.split();
    let (_, reply) = tokio::join!(async { wr.write_all(&req).await }, async {
        let mut bytes = Vec::new();
        let _ = tokio::time::timeout(READ_LIMIT, rd.read_to_end(&mut bytes)).await;
        bytes
    });
    let head = String::from_utf8_lossy(&reply);
    assert!(
        head.starts_with("HTTP/1.1 413 "),
        "chunked body over the limit: {head:?}"
    );

    // None of it changed anything, and the server still answers.
    assert_eq!(get_json(api, "/targets").await, json!([fresh(1, app.addr)]));
    lb.shutdown().await;
}

#[tokio::test]
async fn admin_and_proxy_ports_are_separate() {
    let app = mock(Duration::from_secs(5)).await;
    let lb = lb_with_admin(Cloud::Aws, &[app.addr], Duration::from_secs(5)).await;
    let api = admin(&lb);
    assert_ne!(api, lb.addr());

    // The admin port does not proxy: app paths are unknown there and the app sees nothing.
    for path in ["/", "/status/200", "/-/healthz"] {
        call(api, "GET", path, None)
            .await
            .assert_error(404, "no endpoint GET");
    }
    assert_eq!(app.requests(), 0);

    // The proxy port does not serve the control API: these reach the app, which has no
    // such paths.
    for path in ["/targets", "/stats", "/metrics", "/config"] {
        let mut c = RawClient::connect(lb.addr()).await;
        let r = c.get(path).await;
        assert_eq!((r.status, r.text().as_str()), (404, "not found"), "{path}");
    }
    let mut c = RawClient::connect(lb.addr()).await;
    c.send(b"POST /targets HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        .await;
    assert_eq!(c.response().await.unwrap().status, 404);
    assert_eq!(app.requests(), 5);
    assert_eq!(get_json(api, "/targets").await.as_array().unwrap().len(), 1);
    lb.shutdown().await;
}

/// lbsim in front of `app` (health checks off) and its control API with `limits`.
async fn lb_with_limits(app: SocketAddr, limits: AdminLimits) -> WithAdmin {
    let lb = Simulator::builder(Cloud::Aws)
        .no_health_checks()
        .upstream(app)
        .main_timeout(Duration::from_secs(5))
        .start()
        .await
        .expect("lbsim starts");
    let admin =
        AdminServer::start_with(SocketAddr::from(([127, 0, 0, 1], 0)), lb.control(), limits)
            .expect("the control API starts");
    WithAdmin { lb, admin }
}

/// Sends the head of `POST /targets` with `body` and the first half of `body`, then
/// stalls; returns the connection and the half not sent.
async fn stalled_post(addr: SocketAddr, body: &str) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let (sent, rest) = body.split_at(body.len() / 2);
    let head = format!(
        "POST /targets HTTP/1.1\r\nHost: admin.test\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{sent}",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write head");
    (stream, rest.to_string())
}

/// Opens `GET /events` and reads its head (a 200): the subscription exists from then on.
async fn open_events(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /events HTTP/1.1\r\nHost: admin.test\r\n\r\n")
        .await
        .expect("write request");
    let head = read_events_until(&mut stream, "\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    stream
}

/// Reads an open `GET /events` stream until what came contains `needle`; returns it.
async fn read_events_until(stream: &mut TcpStream, needle: &str) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(needle) {
        let n = tokio::time::timeout(READ_LIMIT, stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} in {:?}", String::from_utf8_lossy(&seen)))
            .expect("read the event stream");
        assert!(
            n > 0,
            "the event stream ended: {:?}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test]
async fn a_request_not_answered_in_time_gets_503_and_event_streams_go_on() {
    let app = mock(Duration::from_secs(5)).await;
    let timeout = Duration::from_millis(300);
    let lb = lb_with_limits(
        app.addr,
        AdminLimits {
            request_timeout: timeout,
            ..AdminLimits::default()
        },
    )
    .await;
    let api = admin(&lb);
    let mut events = open_events(api).await;
    let opened = Instant::now();

    // A body that stops arriving: the request is given up after the timeout.
    let body = r#"{"address": "127.0.0.1:9"}"#;
    let started = Instant::now();
    let (stalled, _) = stalled_post(api, body).await;
    let r = read_reply(stalled).await;
    let took = started.elapsed();
    let message = r.assert_error(503, "no answer within 300 ms");
    assert_eq!(
        message,
        "no answer within 300 ms: the request body stopped arriving, or the address took \
         that long to resolve"
    );
    assert!(took >= timeout, "answered after {took:?}");
    assert!(took < READ_LIMIT, "answered after {took:?}");
    assert_eq!(get_json(api, "/targets").await, json!([fresh(1, app.addr)]));

    // The event stream, open for well over the timeout by now, is not cut: it carries
    // what happens next.
    tokio::time::sleep(timeout).await;
    assert!(opened.elapsed() > 2 * timeout);
    send_through(&lb, 1).await;
    read_events_until(&mut events, r#""event":"app_answered""#).await;
    lb.shutdown().await;
}

#[tokio::test]
async fn over_the_concurrency_limit_the_control_api_answers_503_at_once() {
    let app = mock(Duration::from_secs(5)).await;
    let other = mock(Duration::from_secs(5)).await;
    let lb = lb_with_limits(
        app.addr,
        AdminLimits {
            max_concurrent: 1,
            request_timeout: Duration::from_secs(30),
        },
    )
    .await;
    let api = admin(&lb);

    // An open event stream does not hold the one slot: only the time to its head did.
    let mut events = open_events(api).await;
    assert_eq!(call(api, "GET", "/stats", None).await.status, 200);

    // A POST whose body is half sent holds the slot from when its head is read; until
    // then GET /stats still gets through. The one too many is answered at once, well
    // within the 30 s timeout: it is refused, not queued.
    let body = format!(r#"{{"address": "{}"}}"#, other.addr);
    let (mut stalled, rest) = stalled_post(api, &body).await;
    let waiting = Instant::now();
    let busy = loop {
        let asked = Instant::now();
        let r = call(api, "GET", "/stats", None).await;
        if r.status != 200 {
            assert!(
                asked.elapsed() < Duration::from_secs(5),
                "{:?}",
                asked.elapsed()
            );
            break r;
        }
        assert!(waiting.elapsed() < READ_LIMIT, "GET /stats never refused");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let message = busy.assert_error(503, "busy");
    assert_eq!(
        message,
        "the control API is busy: at its limit of 1 requests at once; retry shortly"
    );

    // The rest of the body comes: the POST is answered as ever, and frees the slot.
    stalled
        .write_all(rest.as_bytes())
        .await
        .expect("write rest");
    let r = read_reply(stalled).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json(), fresh(2, other.addr));
    assert_eq!(call(api, "GET", "/stats", None).await.status, 200);
    read_events_until(&mut events, r#""event":"target_registered""#).await;
    lb.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_the_admin_port() {
    let app = mock(Duration::from_secs(5)).await;
    let lb = lb_with_admin(Cloud::Aws, &[app.addr], Duration::from_secs(5)).await;
    let api = admin(&lb);
    assert_eq!(call(api, "GET", "/stats", None).await.status, 200);
    tokio::time::timeout(Duration::from_secs(5), lb.shutdown())
        .await
        .expect("shutdown does not hang on the control API");
    assert!(
        TcpStream::connect(api).await.is_err(),
        "control API still accepting after shutdown"
    );
}

#[tokio::test]
async fn cli_refuses_a_non_loopback_admin_address() {
    let out = Command::new(BIN)
        .args(["--admin", "0.0.0.0:0", "--listen", "127.0.0.1:0"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(PROCESS_LIMIT, out)
        .await
        .expect("lbsim exits")
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert!(
        lines[0].starts_with("lbsim: --admin 0.0.0.0:0 is not a loopback address"),
        "{err}"
    );
    assert!(lines[0].ends_with("or add --admin-allow-remote"), "{err}");
    assert!(out.stdout.is_empty());

    // --admin-allow-remote needs --admin.
    let out = Command::new(BIN)
        .args(["--admin-allow-remote", "--listen", "127.0.0.1:0"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(PROCESS_LIMIT, out)
        .await
        .expect("lbsim exits")
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--admin <ADDR>"));

    // With it, the address is accepted (checked with --print-config, which binds nothing).
    let out = Command::new(BIN)
        .args([
            "--admin",
            "0.0.0.0:9901",
            "--admin-allow-remote",
            "--print-config",
        ])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{:?}", out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("control API:") && l.ends_with(" 0.0.0.0:9901")),
        "{stdout}"
    );
}

#[tokio::test]
async fn cli_serves_the_control_api_and_prints_its_address() {
    let mut child = Command::new(BIN)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--no-health-checks",
        ])
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut proxy = None;
    let admin_line = tokio::time::timeout(PROCESS_LIMIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.split_once(" listening on http://") {
                proxy = rest.1.split_whitespace().next().map(str::to_string);
            }
            if line.starts_with("lbsim: control API on http://") {
                return line;
            }
        }
        panic!("lbsim exited without printing the control API address");
    })
    .await
    .expect("lbsim prints the control API address");
    // Keep draining stderr so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let api: SocketAddr = admin_line["lbsim: control API on http://".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(api.ip().is_loopback() && api.port() != 0, "{admin_line}");
    let proxy: SocketAddr = proxy.expect("proxy address printed first").parse().unwrap();

    // The embedded mock app is the one target, and traffic through the proxy is counted.
    let targets = get_json(api, "/targets").await;
    assert_eq!(targets.as_array().unwrap().len(), 1, "{targets}");
    assert_eq!(targets[0]["state"], "unavailable");
    let mut c = RawClient::connect(proxy).await;
    assert_eq!(c.get("/").await.status, 200);
    assert_eq!(
        get_json(api, "/stats").await,
        json!({"by_status": {"200": 1}, "by_reason": {}, "by_cause": {}, "lb_by_status": {}, "retries": 0, "spliced_bytes": 0})
    );
    child.start_kill().unwrap();
    let _ = child.wait().await;
}
