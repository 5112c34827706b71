//! Active health checks, seen from the target: the checker's request, a new connection
//! per check, the interval, the timeout, and the exact number of checks each state change
//! takes on each cloud.
//!
//! The target here is a stand-in app on a raw `TcpListener` that records every check: the
//! request head, when it came, whether the checker closed the connection afterwards, and
//! the target's state as lbsim saw it when the check arrived. A check's result is
//! recorded before the checker sleeps for the interval, so the state on arrival of check
//! k+1 is the verdict after k checks: that gives exact threshold counts without racing.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use lbsim::SimulatorBuilder;
use lbsim::{Cloud, Control, SimHandle, Simulator, TargetInfo, TargetState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use TargetState::{Healthy as H, Initial as I, Unhealthy as U};

/// Bound for every wait: a hung test fails instead.
const WAIT: Duration = Duration::from_secs(5);
/// Slack for timing upper bounds on a loaded 2-core machine.
const SLACK: Duration = Duration::from_millis(250);

/// What the stand-in app answers to one check.
#[derive(Clone, Copy, Debug)]
enum Answer {
    /// A status line with this code, no body.
    Status(u16),
    /// Reads the request and never answers.
    Silent,
}

/// One check as the app saw it.
#[derive(Clone, Debug)]
struct Check {
    /// When the request head was complete.
    at: Instant,
    /// The request head as received.
    head: String,
    /// Which accepted connection it came on (0, 1, ...).
    conn: u64,
    /// The target's state in lbsim when the check arrived.
    state: Option<TargetState>,
    /// When the checker closed the connection, counted from `at`.
    closed_after: Option<Duration>,
    /// The checker sent more bytes on the connection after this check.
    more_bytes: bool,
}

#[derive(Default)]
struct Shared {
    checks: Mutex<Vec<Check>>,
    lb: OnceLock<Control>,
}

/// The stand-in app: answers check k with `script[k]` (the last entry repeats).
struct CheckApp {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CheckApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CheckApp {
    async fn start(script: Vec<Answer>) -> CheckApp {
        assert!(!script.is_empty());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let state = shared.clone();
        let task = tokio::spawn(async move {
            let mut conn = 0;
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(serve(stream, conn, addr, state.clone(), script.clone()));
                conn += 1;
            }
        });
        CheckApp { addr, shared, task }
    }

    /// Starts lbsim from `builder` and registers this app once the app can see lbsim's
    /// target states (so even the first check records one).
    async fn behind(&self, builder: SimulatorBuilder) -> SimHandle {
        let lb = builder.start().await.expect("lbsim starts");
        assert!(self.shared.lb.set(lb.control()).is_ok());
        let info = lb.register(self.addr).expect("a new address");
        assert_eq!(info.state, TargetState::Initial);
        lb
    }

    fn checks(&self) -> Vec<Check> {
        self.shared.checks.lock().unwrap().clone()
    }

    /// Waits until `n` checks have arrived (and, with `closed`, the checker has closed
    /// each of their connections); returns the first `n`.
    async fn wait_checks(&self, n: usize, closed: bool) -> Vec<Check> {
        let start = Instant::now();
        loop {
            let checks = self.checks();
            if checks.len() >= n
                && (!closed || checks[..n].iter().all(|c| c.closed_after.is_some()))
            {
                return checks[..n].to_vec();
            }
            assert!(
                start.elapsed() < WAIT,
                "{n} checks not seen within {WAIT:?}: {checks:#?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

async fn serve(
    mut stream: TcpStream,
    conn: u64,
    me: SocketAddr,
    shared: Arc<Shared>,
    script: Vec<Answer>,
) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(WAIT, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buf[..n]),
            _ => return,
        }
    }
    let at = Instant::now();
    let state = shared.lb.get().and_then(|lb| {
        lb.targets()
            .into_iter()
            .find(|t| t.address == me.to_string())
            .map(|t| t.state)
    });
    let index = {
        let mut checks = shared.checks.lock().unwrap();
        checks.push(Check {
            at,
            head: String::from_utf8_lossy(&head).into_owned(),
            conn,
            state,
            closed_after: None,
            more_bytes: false,
        });
        checks.len() - 1
    };
    let answer = script[index.min(script.len() - 1)];
    if let Answer::Status(code) = answer {
        let response = format!("HTTP/1.1 {code} Status\r\ncontent-length: 0\r\n\r\n");
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
    // The app never closes first: the checker must.
    let (closed, more) = match tokio::time::timeout(WAIT, stream.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => (true, false),
        Ok(Ok(_)) => (false, true),
        Err(_) => (false, false),
    };
    let mut checks = shared.checks.lock().unwrap();
    checks[index].more_bytes = more;
    if closed {
        checks[index].closed_after = Some(at.elapsed());
    }
}

/// A builder for `cloud` with no targets; the app registers itself (see [`CheckApp::behind`]).
fn builder(cloud: Cloud, interval: Duration) -> SimulatorBuilder {
    Simulator::builder(cloud)
        .health_interval(interval)
        .health_timeout(Duration::from_secs(1))
}

/// Polls lbsim's only target until `cond` holds.
async fn wait_target(lb: &SimHandle, what: &str, cond: impl Fn(&TargetInfo) -> bool) -> TargetInfo {
    let start = Instant::now();
    loop {
        let targets = lb.targets();
        if let Some(t) = targets.first().filter(|t| cond(t)) {
            return t.clone();
        }
        assert!(
            start.elapsed() < WAIT,
            "{what}: not within {WAIT:?}: {targets:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Header value from a raw request head (first match, case-insensitive name).
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn states(checks: &[Check]) -> Vec<Option<TargetState>> {
    checks.iter().map(|c| c.state).collect()
}

// ---------------------------------------------------------------------------------------
// The checker's request and connection

async fn checker_request(cloud: Cloud, path: Option<&str>, agent: &str) {
    let app = CheckApp::start(vec![Answer::Status(200)]).await;
    let mut b = builder(cloud, Duration::from_millis(50));
    if let Some(p) = path {
        b = b.health_path(p);
    }
    let _lb = app.behind(b).await;
    let checks = app.wait_checks(3, true).await;
    let path = path.unwrap_or("/");
    for c in &checks {
        let request_line = c.head.split("\r\n").next().unwrap();
        assert_eq!(request_line, format!("GET {path} HTTP/1.1"));
        assert_eq!(header(&c.head, "User-Agent"), Some(agent), "{}", c.head);
        assert_eq!(header(&c.head, "Connection"), Some("close"), "{}", c.head);
        assert_eq!(header(&c.head, "Host"), Some(app.addr.to_string().as_str()));
        assert!(!c.more_bytes, "a check reused its connection: {checks:#?}");
        // The checker hangs up as soon as it has its status line.
        assert!(
            c.closed_after.unwrap() < SLACK,
            "checker kept the connection open: {c:?}"
        );
    }
    let conns: Vec<u64> = checks.iter().map(|c| c.conn).collect();
    assert_eq!(conns, [0, 1, 2], "one new connection per check");
}

#[tokio::test]
async fn aws_checker_identifies_itself_and_closes_each_connection() {
    checker_request(Cloud::Aws, Some("/ready"), "ELB-HealthChecker/2.0").await;
}

#[tokio::test]
async fn gcp_checker_identifies_itself_and_closes_each_connection() {
    checker_request(Cloud::GcpClassic, Some("/-/healthz"), "GoogleHC/1.0").await;
}

#[tokio::test]
async fn default_health_path_is_root() {
    checker_request(Cloud::Aws, None, "ELB-HealthChecker/2.0").await;
}

// ---------------------------------------------------------------------------------------
// Interval and timeout

async fn checks_come_every_interval(cloud: Cloud) {
    let interval = Duration::from_millis(100);
    let app = CheckApp::start(vec![Answer::Status(200)]).await;
    let _lb = app.behind(builder(cloud, interval)).await;
    let checks = app.wait_checks(7, false).await;
    let gaps: Vec<Duration> = checks.windows(2).map(|w| w[1].at - w[0].at).collect();
    for gap in &gaps {
        assert!(*gap >= interval, "checks {gap:?} apart: {gaps:?}");
    }
    let total = checks[6].at - checks[0].at;
    // Six intervals, plus six quick checks on loopback.
    assert!(
        total <= interval * 6 + SLACK,
        "6 intervals of {interval:?} took {total:?}: {gaps:?}"
    );
}

#[tokio::test]
async fn aws_checks_come_every_interval() {
    checks_come_every_interval(Cloud::Aws).await;
}

#[tokio::test]
async fn gcp_checks_come_every_interval() {
    checks_come_every_interval(Cloud::GcpClassic).await;
}

async fn silent_target_times_out(cloud: Cloud) {
    let interval = Duration::from_millis(100);
    let timeout = Duration::from_millis(200);
    let app = CheckApp::start(vec![Answer::Silent]).await;
    let t0 = Instant::now();
    let lb = app
        .behind(
            builder(cloud, interval)
                .health_timeout(timeout)
                .healthy_threshold(2)
                .unhealthy_threshold(2),
        )
        .await;
    let info = wait_target(&lb, "unhealthy", |t| t.state == TargetState::Unhealthy).await;
    let took = t0.elapsed();
    assert_eq!(info.reason, format!("timed out after {timeout:?}"));
    // Two checks that each run out their timeout, an interval apart.
    let expected = timeout * 2 + interval;
    assert!(
        took >= expected,
        "unhealthy after {took:?}, before {expected:?}"
    );
    assert!(took <= expected + SLACK, "unhealthy only after {took:?}");

    let checks = app.wait_checks(3, false).await;
    assert_eq!(
        states(&checks),
        [
            Some(TargetState::Initial),
            Some(TargetState::Initial),
            Some(TargetState::Unhealthy)
        ]
    );
    // The checker gave up on the connection at its timeout.
    let closed = app.wait_checks(2, true).await;
    for c in closed {
        let after = c.closed_after.unwrap();
        assert!(
            after + Duration::from_millis(20) >= timeout && after <= timeout + SLACK,
            "checker closed after {after:?}, timeout {timeout:?}"
        );
    }
}

#[tokio::test]
async fn aws_target_that_never_answers_fails_at_the_timeout() {
    silent_target_times_out(Cloud::Aws).await;
}

#[tokio::test]
async fn gcp_backend_that_never_answers_fails_at_the_timeout() {
    silent_target_times_out(Cloud::GcpClassic).await;
}

// ---------------------------------------------------------------------------------------
// Thresholds: exactly how many checks each change takes

/// Runs `script` against lbsim and checks the state seen on each check's arrival.
async fn state_sequence(builder: SimulatorBuilder, script: &[u16], expected: &[TargetState]) {
    let app = CheckApp::start(script.iter().map(|&s| Answer::Status(s)).collect()).await;
    let _lb = app.behind(builder).await;
    let checks = app.wait_checks(expected.len(), false).await;
    let want: Vec<Option<TargetState>> = expected.iter().map(|&s| Some(s)).collect();
    assert_eq!(
        states(&checks),
        want,
        "state on arrival of each check; answers {script:?}"
    );
}

#[tokio::test]
async fn aws_new_target_needs_one_passing_check() {
    // A healthy threshold of 5 does not apply to a new target: one pass is enough.
    state_sequence(
        builder(Cloud::Aws, Duration::from_millis(50))
            .healthy_threshold(5)
            .unhealthy_threshold(2),
        &[200],
        &[I, H, H],
    )
    .await;
}

#[tokio::test]
async fn aws_thresholds_count_consecutive_checks() {
    // Pass (healthy at once), fail twice (unhealthy at the 2nd), pass three times
    // (healthy at the 3rd).
    state_sequence(
        builder(Cloud::Aws, Duration::from_millis(50))
            .healthy_threshold(3)
            .unhealthy_threshold(2),
        &[200, 503, 503, 200, 200, 200],
        &[I, H, H, U, U, U, H],
    )
    .await;
}

#[tokio::test]
async fn aws_a_pass_resets_the_failure_count() {
    // fail, pass, fail: never two failures in a row, so never unhealthy.
    state_sequence(
        builder(Cloud::Aws, Duration::from_millis(50))
            .healthy_threshold(3)
            .unhealthy_threshold(2),
        &[200, 500, 200, 500, 200],
        &[I, H, H, H, H, H],
    )
    .await;
}

#[tokio::test]
async fn gcp_new_backend_needs_the_default_healthy_threshold() {
    // GCP's default healthy threshold is 2; a new backend counts only once healthy.
    state_sequence(
        builder(Cloud::GcpClassic, Duration::from_millis(50)).unhealthy_threshold(2),
        &[200],
        &[I, I, H],
    )
    .await;
}

#[tokio::test]
async fn gcp_new_backend_needs_a_raised_healthy_threshold() {
    state_sequence(
        builder(Cloud::GcpClassic, Duration::from_millis(50))
            .healthy_threshold(3)
            .unhealthy_threshold(2),
        &[200],
        &[I, I, I, H],
    )
    .await;
}

#[tokio::test]
async fn gcp_thresholds_count_consecutive_checks() {
    // Two passes (healthy), three failures (unhealthy at the 3rd), two passes (healthy).
    state_sequence(
        builder(Cloud::GcpClassic, Duration::from_millis(50))
            .healthy_threshold(2)
            .unhealthy_threshold(3),
        &[200, 200, 503, 503, 503, 200, 200],
        &[I, I, H, H, H, U, U, H],
    )
    .await;
}

#[tokio::test]
async fn gcp_new_backend_failing_checks_becomes_unhealthy() {
    state_sequence(
        builder(Cloud::GcpClassic, Duration::from_millis(50))
            .healthy_threshold(2)
            .unhealthy_threshold(2),
        &[500],
        &[I, I, U, U],
    )
    .await;
}

#[tokio::test]
async fn aws_checks_accept_only_200() {
    // 204 and 301 fail as 503 does: the ALB's default success code is 200 alone.
    state_sequence(
        builder(Cloud::Aws, Duration::from_millis(50))
            .healthy_threshold(2)
            .unhealthy_threshold(2),
        &[200, 204, 301],
        &[I, H, H, U],
    )
    .await;
}
