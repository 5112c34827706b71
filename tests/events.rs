//! The engine's event stream (`Control::subscribe`, `GET /events`): over real sockets on
//! 127.0.0.1, each test subscribes, drives traffic or the target group, and awaits the
//! events it should cause, each with a time limit (never a sleep).

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use lbsim::{
    AdminServer, Cloud, Event, EventKind, HealthOverride, RaceWindow, Reason, Simulator,
    StateChange, TargetState,
};
use serde_json::Value;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::broadcast;

/// Bound for any one event to arrive.
const EVENT_LIMIT: Duration = Duration::from_secs(5);

/// Receives events until one matches `want`; fails with what came meanwhile if none does
/// within [`EVENT_LIMIT`]. Returns the match and the events before it.
async fn until(
    rx: &mut broadcast::Receiver<Event>,
    what: &str,
    want: impl Fn(&EventKind) -> bool,
) -> (Event, Vec<Event>) {
    let deadline = tokio::time::Instant::now() + EVENT_LIMIT;
    let mut before = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(event)) if want(&event.kind) => return (event, before),
            Ok(Ok(event)) => before.push(event),
            Ok(Err(e)) => panic!("{what}: the subscription failed ({e}) after {before:#?}"),
            Err(_) => panic!("{what}: no such event within {EVENT_LIMIT:?}; got {before:#?}"),
        }
    }
}

/// The client connection number of the request events in `events`.
fn conn_of(kind: &EventKind) -> Option<u64> {
    match kind {
        EventKind::RequestReceived { conn, .. }
        | EventKind::Forwarded { conn, .. }
        | EventKind::AppAnswered { conn, .. } => Some(*conn),
        EventKind::LbAnswered { conn, .. } | EventKind::ResponseCut { conn, .. } => *conn,
        _ => None,
    }
}

#[tokio::test]
async fn a_200_is_received_forwarded_and_answered_by_the_app_in_order() {
    let app = mock(Duration::from_secs(5)).await;
    let lb = lb(Cloud::Aws, app.addr, Duration::from_secs(10)).await;
    let mut rx = lb.subscribe();
    let mut client = RawClient::connect(lb.addr()).await;
    get_ok(&mut client).await;

    let (received, _) = until(&mut rx, "request received", |k| {
        matches!(k, EventKind::RequestReceived { .. })
    })
    .await;
    let EventKind::RequestReceived { conn, method, path } = &received.kind else {
        unreachable!()
    };
    assert_eq!((method.as_str(), path.as_str()), ("GET", "/"));
    let conn = *conn;
    let (forwarded, _) = until(&mut rx, "forwarded", |k| {
        matches!(k, EventKind::Forwarded { .. })
    })
    .await;
    assert_eq!(
        forwarded.kind,
        EventKind::Forwarded {
            conn,
            target: app.addr,
            attempt: 1
        }
    );
    let (answered, between) = until(&mut rx, "answered by the app", |k| {
        matches!(k, EventKind::AppAnswered { .. })
    })
    .await;
    assert_eq!(
        answered.kind,
        EventKind::AppAnswered {
            conn,
            status: 200,
            target: app.addr
        }
    );
    // The first request opened the pool's first connection to the app, in between.
    assert!(
        between.iter().any(|e| e.kind
            == EventKind::ConnectionOpened {
                id: 1,
                target: app.addr
            }),
        "{between:#?}"
    );
    assert!(received.at_us <= forwarded.at_us && forwarded.at_us <= answered.at_us);

    // The next request on the connection reuses the pooled one, and says how long it idled.
    tokio::time::sleep(Duration::from_millis(20)).await;
    get_ok(&mut client).await;
    let (reused, before) = until(&mut rx, "pooled connection reused", |k| {
        matches!(k, EventKind::ConnectionReused { .. })
    })
    .await;
    let EventKind::ConnectionReused {
        id,
        target,
        idle_us,
    } = reused.kind
    else {
        unreachable!()
    };
    assert_eq!((id, target), (1, app.addr));
    assert!(idle_us >= 20_000, "idle for {idle_us} µs");
    // Same client connection, next request: received and forwarded before the reuse.
    assert!(
        before.iter().all(|e| conn_of(&e.kind) == Some(conn)),
        "{before:#?}"
    );
    until(&mut rx, "second answer", |k| {
        matches!(k, EventKind::AppAnswered { status: 200, .. })
    })
    .await;
    lb.shutdown().await;
}

#[tokio::test]
async fn an_idle_timeout_is_an_lb_answer_504_with_its_cause() {
    let app = mock(Duration::from_secs(5)).await;
    let lb = lb(Cloud::Aws, app.addr, Duration::from_millis(200)).await;
    let mut rx = lb.subscribe();
    let mut client = RawClient::connect(lb.addr()).await;
    let resp = client.get("/sleep/2").await;
    assert_eq!(resp.status, 504);

    let (answer, before) = until(&mut rx, "the LB's answer", |k| {
        matches!(k, EventKind::LbAnswered { .. })
    })
    .await;
    let EventKind::LbAnswered {
        conn,
        status,
        cause,
        code,
        target,
        explanation,
    } = answer.kind
    else {
        unreachable!()
    };
    assert_eq!(
        (status, cause, target),
        (504, Reason::TargetTimeout, Some(app.addr))
    );
    // The cloud's word is the one its page and counters carry.
    assert_eq!(Some(code), resp.header("x-lbsim-reason"));
    assert_eq!(lb.stats().count(cause), 1);
    assert_eq!(lb.stats().by_word(lb.config().profile).get(code), Some(&1));
    // The sentence a person reads comes with it: what happened and the fix.
    assert!(
        explanation.starts_with(&format!(
            "{} sent no response within the AWS ALB idle timeout of 200 ms",
            app.addr
        )),
        "{explanation}"
    );
    assert!(
        explanation.ends_with(lbsim::profile::Profile::of(Cloud::Aws).timeout_fix),
        "{explanation}"
    );
    // The request's own events came first, on the same client connection.
    let kinds: Vec<&str> = before
        .iter()
        .filter(|e| conn_of(&e.kind).is_some())
        .map(|e| match e.kind {
            EventKind::RequestReceived { .. } => "received",
            EventKind::Forwarded { .. } => "forwarded",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["received", "forwarded"]);
    assert!(before
        .iter()
        .all(|e| conn_of(&e.kind).is_none_or(|c| Some(c) == conn)));
    // Sent when the idle timeout ran out, not when the app would have answered.
    let received_at = before[0].at_us;
    let waited = Duration::from_micros(answer.at_us - received_at);
    assert!(
        waited >= Duration::from_millis(190) && waited < Duration::from_millis(1500),
        "{waited:?}"
    );
    lb.shutdown().await;
}

#[tokio::test]
async fn the_keep_alive_race_is_a_pooled_connection_found_closed_then_a_502() {
    let app = mock(Duration::from_millis(300)).await;
    let lb = Simulator::builder(Cloud::Aws)
        .no_health_checks()
        .upstream(app.addr)
        .race_window(RaceWindow::Always)
        .start()
        .await
        .unwrap();
    let mut rx = lb.subscribe();
    let mut client = RawClient::connect(lb.addr()).await;
    get_ok(&mut client).await;
    // The app closes its idle connection after its keep-alive (not an lbsim event).
    wait_until(
        "the app closes its idle connection",
        Duration::from_secs(4),
        || app.idle_closes() >= 1,
    )
    .await;
    let dead = client.get("/").await;
    assert_eq!(dead.status, 502);

    let (found, _) = until(&mut rx, "the dead pooled connection", |k| {
        matches!(k, EventKind::ConnectionFoundClosed { .. })
    })
    .await;
    let EventKind::ConnectionFoundClosed {
        id,
        target,
        idle_us,
        closed_us,
    } = found.kind
    else {
        unreachable!()
    };
    assert_eq!((id, target), (1, app.addr));
    // It had idled for the app's keep-alive (300 ms) when the app closed it.
    let idle = Duration::from_micros(idle_us);
    assert!(
        idle >= Duration::from_millis(280) && idle < Duration::from_secs(2),
        "{idle:?}"
    );
    assert!(closed_us.is_some());
    let (answer, _) = until(&mut rx, "the LB's 502", |k| {
        matches!(k, EventKind::LbAnswered { .. })
    })
    .await;
    assert!(
        matches!(
            answer.kind,
            EventKind::LbAnswered {
                status: 502,
                cause: Reason::KeepAliveRace,
                code: "target_closed_connection",
                ..
            }
        ),
        "{answer:?}"
    );
    assert!(found.at_us <= answer.at_us);
    lb.shutdown().await;
}

#[tokio::test]
async fn an_override_and_a_deregistration_are_target_state_changes() {
    let app = mock(Duration::from_secs(5)).await;
    let lb = Simulator::builder(Cloud::Aws)
        .no_health_checks()
        .upstream(app.addr)
        .deregistration_delay(Duration::from_millis(200))
        .start()
        .await
        .unwrap();
    let id = lb.targets()[0].id;
    let mut rx = lb.subscribe();
    let change = |from, to, checked_state, by| EventKind::TargetStateChanged {
        id,
        address: app.addr,
        from,
        to,
        checked_state,
        by,
        reason: "not checked yet".into(),
    };
    use StateChange::*;
    use TargetState::*;

    lb.set_health(id, HealthOverride::Unhealthy).unwrap();
    let (e, _) = until(&mut rx, "override", |_| true).await;
    assert_eq!(
        e.kind,
        change(Unavailable, Unhealthy, Unavailable, Override)
    );
    lb.set_health(id, HealthOverride::Auto).unwrap();
    let (e, _) = until(&mut rx, "override cleared", |_| true).await;
    assert_eq!(
        e.kind,
        change(Unhealthy, Unavailable, Unavailable, Override)
    );
    // An override that changes nothing announces nothing: the next event is the drain.

    lb.set_health(id, HealthOverride::Auto).unwrap();
    lb.deregister(id).unwrap();
    let (e, _) = until(&mut rx, "deregistration", |_| true).await;
    assert_eq!(
        e.kind,
        change(Unavailable, Draining, Draining, Deregistration)
    );
    let drain_started = e.at_us;
    let (e, _) = until(&mut rx, "drain over", |_| true).await;
    assert_eq!(e.kind, change(Draining, Unused, Unused, DrainEnded));
    let drained = Duration::from_micros(e.at_us - drain_started);
    assert!(drained >= Duration::from_millis(190), "{drained:?}");
    // Announced once it has left the group.
    assert!(lb.targets().is_empty());

    // Registering again is announced too.
    let again = lb.register(app.addr).unwrap();
    let (e, _) = until(&mut rx, "registration", |_| true).await;
    assert_eq!(
        e.kind,
        EventKind::TargetRegistered {
            id: again.id,
            address: app.addr,
            state: Unavailable
        }
    );
    lb.shutdown().await;
}

#[tokio::test]
async fn health_checks_move_a_registered_target_and_say_what_they_saw() {
    let app = mock(Duration::from_secs(5)).await;
    let lb = Simulator::builder(Cloud::Aws)
        .health_interval(Duration::from_millis(50))
        .health_timeout(Duration::from_secs(2))
        .healthy_threshold(2)
        .unhealthy_threshold(2)
        .start()
        .await
        .unwrap();
    let mut rx = lb.subscribe();
    let target = lb.register(app.addr).unwrap();
    let (e, _) = until(&mut rx, "registration", |_| true).await;
    assert_eq!(
        e.kind,
        EventKind::TargetRegistered {
            id: target.id,
            address: app.addr,
            state: TargetState::Initial
        }
    );
    let (e, _) = until(&mut rx, "healthy", |k| {
        matches!(k, EventKind::TargetStateChanged { .. })
    })
    .await;
    assert_eq!(
        e.kind,
        EventKind::TargetStateChanged {
            id: target.id,
            address: app.addr,
            from: TargetState::Initial,
            to: TargetState::Healthy,
            checked_state: TargetState::Healthy,
            by: StateChange::HealthCheck,
            reason: "200".into(),
        }
    );
    app.kill();
    let (e, _) = until(&mut rx, "unhealthy", |k| {
        matches!(k, EventKind::TargetStateChanged { .. })
    })
    .await;
    let EventKind::TargetStateChanged {
        from,
        to,
        by,
        reason,
        ..
    } = e.kind
    else {
        unreachable!()
    };
    assert_eq!(
        (from, to, by),
        (
            TargetState::Healthy,
            TargetState::Unhealthy,
            StateChange::HealthCheck
        )
    );
    assert!(reason.starts_with("connect: "), "{reason}");
    lb.shutdown().await;
}

/// A `GET /events` response read off the socket: the head, then its chunks as lines.
struct EventStream {
    stream: TcpStream,
    buf: Vec<u8>,
    /// The start of a line whose end is in a chunk not read yet.
    partial: Vec<u8>,
    lines: std::collections::VecDeque<String>,
    ended: bool,
}

impl EventStream {
    /// Sends `GET /events` to the control API at `admin` and reads the response head.
    async fn open(admin: SocketAddr) -> (EventStream, String) {
        let mut stream = TcpStream::connect(admin).await.unwrap();
        stream
            .write_all(b"GET /events HTTP/1.1\r\nHost: lbsim.test\r\n\r\n")
            .await
            .unwrap();
        let mut s = EventStream {
            stream,
            buf: Vec::new(),
            partial: Vec::new(),
            lines: Default::default(),
            ended: false,
        };
        let head_end = loop {
            if let Some(i) = s.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            assert!(s.fill().await, "the control API closed before the head");
        };
        let head = String::from_utf8(s.buf.drain(..head_end).collect()).unwrap();
        (s, head)
    }

    /// Reads more bytes; false at the end of the connection.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(EVENT_LIMIT, self.stream.read(&mut chunk))
            .await
            .expect("bytes from the control API in time")
            .unwrap();
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    /// Decodes the chunks buffered so far into lines; true once the last chunk came.
    fn decode(&mut self) -> bool {
        loop {
            let Some(eol) = self.buf.windows(2).position(|w| w == b"\r\n") else {
                return false;
            };
            let size = usize::from_str_radix(std::str::from_utf8(&self.buf[..eol]).unwrap(), 16)
                .expect("a chunk size");
            if self.buf.len() < eol + 2 + size + 2 {
                return false;
            }
            let data: Vec<u8> = self.buf[eol + 2..eol + 2 + size].to_vec();
            assert_eq!(&self.buf[eol + 2 + size..eol + 4 + size], b"\r\n");
            self.buf.drain(..eol + 4 + size);
            if size == 0 {
                return true;
            }
            self.partial.extend_from_slice(&data);
            while let Some(nl) = self.partial.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.partial.drain(..=nl).collect();
                self.lines
                    .push_back(String::from_utf8(line[..nl].to_vec()).unwrap());
            }
        }
    }

    /// The next line as JSON, or `None` once the stream has ended.
    async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(line) = self.lines.pop_front() {
                return Some(serde_json::from_str(&line).expect("each line is JSON"));
            }
            if self.ended {
                return None;
            }
            if self.decode() {
                self.ended = true;
            } else if self.lines.is_empty() {
                assert!(
                    self.fill().await,
                    "connection closed inside the chunked body"
                );
            }
        }
    }

    /// Lines until one whose `event` is `name`; that one last.
    async fn until(&mut self, name: &str) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let line = self
                .next()
                .await
                .unwrap_or_else(|| panic!("the stream ended before {name}: {seen:#?}"));
            let done = line["event"] == name;
            seen.push(line);
            if done {
                return seen;
            }
        }
    }
}

#[tokio::test]
async fn get_events_streams_ndjson_lines_until_the_control_api_shuts_down() {
    let app = mock(Duration::from_secs(5)).await;
    let lb = lb(Cloud::Aws, app.addr, Duration::from_millis(200)).await;
    let admin = AdminServer::start("127.0.0.1:0".parse().unwrap(), lb.control()).unwrap();
    let (mut events, head) = EventStream::open(admin.addr()).await;
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    assert!(
        head.contains("content-type: application/x-ndjson\r\n"),
        "{head}"
    );
    assert!(head.contains("transfer-encoding: chunked\r\n"), "{head}");

    // The head is out: the subscription exists, so nothing from here on is missed.
    let mut client = RawClient::connect(lb.addr()).await;
    get_ok(&mut client).await;
    let lines = events.until("app_answered").await;
    let names: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "request_received",
            "forwarded",
            "connection_opened",
            "app_answered"
        ]
    );
    let received = &lines[0];
    assert_eq!(received["method"], "GET");
    assert_eq!(received["path"], "/");
    assert!(received["at_us"].is_u64());
    let conn = received["conn"].as_u64().unwrap();
    assert_eq!(lines[1]["target"], app.addr.to_string());
    assert_eq!(lines[1]["attempt"], 1);
    assert_eq!(lines[3]["status"], 200);
    assert_eq!(lines[3]["conn"], conn);

    let timed_out = client.get("/sleep/2").await;
    assert_eq!(timed_out.status, 504);
    let lines = events.until("lb_answered").await;
    let answer = lines.last().unwrap();
    assert_eq!(answer["status"], 504);
    assert_eq!(answer["cause"], "target_timeout");
    assert_eq!(answer["code"].as_str(), timed_out.header("x-lbsim-reason"));
    assert_eq!(answer["target"], app.addr.to_string());
    assert_eq!(answer["conn"], conn);

    // Shutting the control API down ends the stream (last chunk), and promptly: the
    // stream does not hold the shutdown for its grace period.
    let started = Instant::now();
    admin.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(events.next().await, None);
    lb.shutdown().await;
}

/// Whether this process's kernel holds a TCP socket from `local` port to `remote` port
/// (IPv4 loopback).
fn tcp_socket(local: u16, remote: u16) -> bool {
    let port = |field: &str| {
        field
            .rsplit(':')
            .next()
            .and_then(|hex| u16::from_str_radix(hex, 16).ok())
    };
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() > 2 && port(fields[1]) == Some(local) && port(fields[2]) == Some(remote)
        })
}

#[tokio::test]
async fn a_client_that_leaves_get_events_is_let_go() {
    let app = mock(Duration::from_secs(5)).await;
    let lb = lb(Cloud::Aws, app.addr, Duration::from_secs(10)).await;
    let admin = AdminServer::start("127.0.0.1:0".parse().unwrap(), lb.control()).unwrap();
    let (events, _) = EventStream::open(admin.addr()).await;
    let client_port = events.stream.local_addr().unwrap().port();
    let admin_port = admin.addr().port();
    assert!(tcp_socket(admin_port, client_port));
    drop(events);
    // The next events cannot be written: hyper ends the connection, dropping the body
    // and its subscription with it; the control API's side of the socket goes away.
    let mut client = RawClient::connect(lb.addr()).await;
    for _ in 0..3 {
        get_ok(&mut client).await;
    }
    wait_until(
        "the control API closes the departed client's event stream",
        Duration::from_secs(3),
        || !tcp_socket(admin_port, client_port),
    )
    .await;
    admin.shutdown().await;
    lb.shutdown().await;
}

#[tokio::test]
async fn post_events_is_refused_and_the_404_lists_get_events() {
    let app = mock(Duration::from_secs(5)).await;
    let lb = lb(Cloud::Aws, app.addr, Duration::from_secs(10)).await;
    let admin = AdminServer::start("127.0.0.1:0".parse().unwrap(), lb.control()).unwrap();
    let mut client = RawClient::connect(admin.addr()).await;
    client
        .send(b"POST /events HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
        .await;
    let refused = client.response().await.unwrap();
    assert_eq!(refused.status, 405);
    assert_eq!(refused.header("allow"), Some("GET"));
    let missing = client.get("/event").await;
    assert_eq!(missing.status, 404);
    assert!(missing.text().contains("GET /events"), "{}", missing.text());
    admin.shutdown().await;
    lb.shutdown().await;
}

#[tokio::test]
async fn a_subscription_taken_at_start_sees_the_builders_targets_and_first_checks() {
    let app = mock(Duration::from_secs(5)).await;
    let before = tokio::time::Instant::now();
    let (lb, mut rx) = Simulator::builder(Cloud::Aws)
        .upstream(app.addr)
        .health_interval(Duration::from_secs(60))
        .healthy_threshold(1)
        .start_subscribed()
        .await
        .unwrap();
    let id = lb.targets()[0].id;
    let (registered, _) = until(&mut rx, "target registered", |k| {
        matches!(k, EventKind::TargetRegistered { .. })
    })
    .await;
    assert_eq!(
        registered.kind,
        EventKind::TargetRegistered {
            id,
            address: app.addr,
            state: TargetState::Initial
        }
    );
    // The first check runs at once: a subscription made after `start` may miss it, this
    // one does not.
    let (healthy, _) = until(&mut rx, "first check passed", |k| {
        matches!(k, EventKind::TargetStateChanged { .. })
    })
    .await;
    let EventKind::TargetStateChanged { from, to, by, .. } = healthy.kind else {
        unreachable!()
    };
    assert_eq!(
        (from, to, by),
        (
            TargetState::Initial,
            TargetState::Healthy,
            StateChange::HealthCheck
        )
    );
    // `started_at` puts event times on the caller's clock.
    let started = lb.started_at();
    assert!(before <= started, "started before start was called");
    let at = started + Duration::from_micros(healthy.at_us);
    assert!(at <= tokio::time::Instant::now());
    assert!(registered.at_us <= healthy.at_us);
}
