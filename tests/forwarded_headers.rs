//! Headers on the way through lbsim: what each cloud adds to the request the target sees
//! (read back from the mock app's `/headers`, which echoes the request head as received),
//! what it adds to the response, and what it must not forward.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lbsim::Cloud;
use support::*;

const TIMEOUT: Duration = Duration::from_secs(5);
const APP_KEEP_ALIVE: Duration = Duration::from_secs(5);

/// The request head the target received, as (name, value) pairs in the case they arrived in.
struct Seen {
    request_line: String,
    headers: Vec<(String, String)>,
}

impl Seen {
    fn parse(resp: &RawResponse) -> Seen {
        assert_eq!(resp.status, 200, "mock /headers answered {resp:?}");
        let text = resp.text();
        let mut lines = text.split("\r\n");
        let request_line = lines.next().unwrap_or_default().to_string();
        let headers = lines
            .take_while(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l
                    .split_once(':')
                    .unwrap_or_else(|| panic!("header line {l:?}"));
                (n.to_string(), v.trim().to_string())
            })
            .collect();
        Seen {
            request_line,
            headers,
        }
    }

    /// Every value of `name` (case-insensitive).
    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The one value of `name`; fails if it is absent or repeated.
    #[track_caller]
    fn one(&self, name: &str) -> &str {
        match self.all(name).as_slice() {
            [v] => v,
            other => panic!(
                "expected exactly one {name} at the target, got {other:?}; head: {:?}",
                self.headers
            ),
        }
    }

    fn names(&self) -> Vec<&str> {
        self.headers.iter().map(|(n, _)| n.as_str()).collect()
    }
}

/// Sends `GET /headers` with `extra` header lines (each ending in CRLF) through `lb`.
async fn through(cloud: Cloud, extra: &str) -> (RawResponse, Seen, u16) {
    let app = mock(APP_KEEP_ALIVE).await;
    let lb = lb(cloud, app.addr, TIMEOUT).await;
    let mut client = RawClient::connect(lb.addr()).await;
    client
        .send(format!("GET /headers HTTP/1.1\r\nHost: lbsim.test\r\n{extra}\r\n").as_bytes())
        .await;
    let resp = client.response().await.expect("a response");
    let seen = Seen::parse(&resp);
    assert_eq!(seen.request_line, "GET /headers HTTP/1.1");
    (resp, seen, lb.addr().port())
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Checks `1-{8 hex: epoch seconds}-{24 hex}` and that the epoch is about now.
#[track_caller]
fn assert_amzn_trace_id(id: &str) {
    let parts: Vec<&str> = id.split('-').collect();
    assert!(
        parts.len() == 3
            && parts[0] == "1"
            && is_lower_hex(parts[1], 8)
            && is_lower_hex(parts[2], 24),
        "not a trace id of the form 1-[0-9a-f]{{8}}-[0-9a-f]{{24}}: {id:?}"
    );
    let epoch = u64::from_str_radix(parts[1], 16).unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        epoch.abs_diff(now) <= 60,
        "trace id time {epoch} is not now ({now}): {id:?}"
    );
}

#[tokio::test]
async fn aws_adds_client_ip_proto_port_and_a_fresh_trace_id() {
    let (resp, seen, port) = through(Cloud::Aws, "").await;
    assert_eq!(seen.one("X-Forwarded-For"), "127.0.0.1");
    assert_eq!(seen.one("X-Forwarded-Proto"), "http");
    assert_eq!(seen.one("X-Forwarded-Port"), port.to_string());
    let trace = seen.one("X-Amzn-Trace-Id");
    let root = trace
        .strip_prefix("Root=")
        .unwrap_or_else(|| panic!("trace header without Root=: {trace:?}"));
    assert_amzn_trace_id(root);
    // The ALB adds no Via, and nothing GCP-specific.
    assert!(seen.all("Via").is_empty(), "{:?}", seen.headers);
    assert!(seen.all("X-Cloud-Trace-Context").is_empty());
    assert_eq!(resp.header("Via"), None);
}

#[tokio::test]
async fn aws_appends_the_client_ip_to_an_existing_x_forwarded_for() {
    let (_, seen, _) = through(Cloud::Aws, "X-Forwarded-For: 10.0.0.1\r\n").await;
    assert_eq!(seen.one("X-Forwarded-For"), "10.0.0.1, 127.0.0.1");
}

#[tokio::test]
async fn aws_trace_id_from_the_client_keeps_its_root_behind_a_new_self() {
    let root = "Root=1-5759e988-bd862e3fe1be46a994272793";
    let (_, seen, _) = through(Cloud::Aws, &format!("X-Amzn-Trace-Id: {root}\r\n")).await;
    let trace = seen.one("X-Amzn-Trace-Id");
    let (self_part, rest) = trace
        .split_once(';')
        .unwrap_or_else(|| panic!("expected Self=…;{root}, got {trace:?}"));
    assert_eq!(rest, root, "{trace:?}");
    let self_id = self_part
        .strip_prefix("Self=")
        .unwrap_or_else(|| panic!("expected Self= first, got {trace:?}"));
    assert_amzn_trace_id(self_id);
    assert_ne!(self_id, "1-5759e988-bd862e3fe1be46a994272793");
}

#[tokio::test]
async fn gcp_adds_client_and_lb_ip_via_and_a_cloud_trace_context() {
    let (resp, seen, _) = through(Cloud::GcpClassic, "").await;
    assert_eq!(seen.one("X-Forwarded-For"), "127.0.0.1, 127.0.0.1");
    assert_eq!(seen.one("X-Forwarded-Proto"), "http");
    assert_eq!(seen.one("Via"), "1.1 google");
    assert!(
        seen.all("X-Forwarded-Port").is_empty(),
        "GCP sends no X-Forwarded-Port: {:?}",
        seen.headers
    );
    assert!(seen.all("X-Amzn-Trace-Id").is_empty());
    let ctx = seen.one("X-Cloud-Trace-Context");
    let (trace, rest) = ctx
        .split_once('/')
        .unwrap_or_else(|| panic!("expected <trace>/<span>;o=1, got {ctx:?}"));
    let span = rest
        .strip_suffix(";o=1")
        .unwrap_or_else(|| panic!("expected ;o=1 at the end, got {ctx:?}"));
    assert!(is_lower_hex(trace, 32), "trace id {trace:?} in {ctx:?}");
    assert!(
        !span.is_empty() && span.bytes().all(|b| b.is_ascii_digit()),
        "span id {span:?} in {ctx:?}"
    );
    // And on the way back to the client.
    assert_eq!(resp.header("Via"), Some("1.1 google"));
}

#[tokio::test]
async fn gcp_appends_client_and_lb_ip_after_an_existing_x_forwarded_for() {
    let (_, seen, _) = through(Cloud::GcpClassic, "X-Forwarded-For: 10.0.0.1\r\n").await;
    assert_eq!(
        seen.one("X-Forwarded-For"),
        "10.0.0.1, 127.0.0.1, 127.0.0.1"
    );
}

#[tokio::test]
async fn hop_by_hop_headers_are_not_forwarded() {
    for cloud in [Cloud::Aws, Cloud::GcpClassic] {
        let (_, seen, _) = through(
            cloud,
            "Connection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\n\
             Proxy-Connection: keep-alive\r\nX-Kept: yes\r\n",
        )
        .await;
        for name in ["X-Secret", "Keep-Alive", "Proxy-Connection"] {
            assert!(
                seen.all(name).is_empty(),
                "{cloud:?}: {name} reached the target: {:?}",
                seen.headers
            );
        }
        // lbsim may open its own target connection with its own Connection header, but
        // never with the client's list.
        for v in seen.all("Connection") {
            assert!(
                !v.to_ascii_lowercase().contains("x-secret"),
                "{cloud:?}: client's Connection list reached the target: {v:?}"
            );
        }
        // The control: an end-to-end header next to them does get through.
        assert_eq!(seen.one("X-Kept"), "yes", "{cloud:?}");
    }
}

#[tokio::test]
async fn client_header_case_reaches_the_target_unchanged() {
    for cloud in [Cloud::Aws, Cloud::GcpClassic] {
        let (_, seen, _) = through(
            cloud,
            "X-Custom-Header: v\r\nx-lower-case: w\r\nX-MiXeD-cAsE: x\r\n",
        )
        .await;
        let names = seen.names();
        for (name, value) in [
            ("X-Custom-Header", "v"),
            ("x-lower-case", "w"),
            ("X-MiXeD-cAsE", "x"),
        ] {
            assert!(
                names.contains(&name),
                "{cloud:?}: {name} did not reach the target in that case: {names:?}"
            );
            assert_eq!(seen.one(name), value, "{cloud:?}");
        }
    }
}
