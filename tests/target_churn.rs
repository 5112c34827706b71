//! Target churn (issue 19, item 10): thousands of register/deregister cycles must not make
//! the target group grow. A deregistered target drains for the deregistration delay and
//! then leaves the group, as on AWS: it is no longer listed (library and control API) and
//! no longer scanned when a target is picked. Requests keep routing correctly throughout,
//! and every file descriptor the test opened is closed again at the end.
//!
//! Both tests count `/proc/self/fd`, which the whole test process shares: each runs on a
//! runtime of its own under [`ONE_AT_A_TIME`], dropped before the lock is released, so
//! that one's sockets (or runtime) never show up in the other's count.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lbsim::{AdminServer, Cloud, MockUpstream, SimHandle, Simulator, TargetState};
use serde_json::Value;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Register/deregister cycles through the library API: enough that the old group (every
/// target ever registered kept) is unmistakably larger than the live one.
const LIBRARY_CYCLES: usize = 2_000;
/// Cycles through the control API, each two HTTP exchanges on their own connections.
const ADMIN_CYCLES: usize = 200;
/// A tiny deregistration delay, so that the churned targets finish draining quickly.
const DELAY: Duration = Duration::from_millis(5);
/// Bound for draining to finish and for descriptors to be closed on a loaded machine.
const WAIT: Duration = Duration::from_secs(10);

/// Serialises the tests of this file (see the module doc).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `test` on a two-worker runtime of its own, alone among this file's tests.
fn run_alone<F: std::future::Future<Output = ()>>(test: impl FnOnce() -> F) {
    // A test that panicked poisons the lock; the next one may still run.
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(test());
    // Gone (with every task left on it) before the next test takes its baseline.
    drop(runtime);
}

/// Open file descriptors of this process.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd is readable")
        .count()
}

/// Polls until the process has `baseline` descriptors open again; fails after [`WAIT`].
async fn assert_fds_back_to(baseline: usize) {
    let start = Instant::now();
    loop {
        let now = open_fds();
        if now == baseline {
            return;
        }
        assert!(
            start.elapsed() < WAIT,
            "{now} file descriptors open, {baseline} before the test"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two live apps `a` and `b` behind lbsim (health checks off, [`DELAY`] to drain), and a
/// third app `c` whose address is the one registered and deregistered over and over.
async fn setup() -> (SimHandle, [MockUpstream; 3]) {
    let apps = [
        mock(Duration::from_secs(30)).await,
        mock(Duration::from_secs(30)).await,
        mock(Duration::from_secs(30)).await,
    ];
    let lb = Simulator::builder(Cloud::Aws)
        .upstream(apps[0].addr)
        .upstream(apps[1].addr)
        .no_health_checks()
        .deregistration_delay(DELAY)
        .start()
        .await
        .expect("lbsim starts");
    (lb, apps)
}

/// Waits until the group holds exactly the two live targets again.
async fn wait_only_live(lb: &SimHandle, a: &MockUpstream, b: &MockUpstream) {
    let live = [a.addr.to_string(), b.addr.to_string()];
    let start = Instant::now();
    loop {
        let targets = lb.targets();
        if targets.len() == 2 {
            let addrs: Vec<&str> = targets.iter().map(|t| t.address.as_str()).collect();
            assert_eq!(addrs, live, "{targets:?}");
            assert!(
                targets.iter().all(|t| t.state == TargetState::Unavailable),
                "{targets:?}"
            );
            return;
        }
        assert!(
            start.elapsed() < WAIT,
            "still {} targets in the group after {WAIT:?} (2 live)",
            targets.len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `n` requests on one keep-alive connection alternate between `a` and `b`.
async fn assert_round_robin(lb: &SimHandle, a: &MockUpstream, b: &MockUpstream, n: u64) {
    let before = (a.requests(), b.requests());
    let mut client = RawClient::connect(lb.addr()).await;
    for _ in 0..n {
        get_ok(&mut client).await;
    }
    assert_eq!(
        (a.requests() - before.0, b.requests() - before.1),
        (n / 2, n / 2),
        "round-robin over the two live targets"
    );
}

/// Shuts lbsim and the apps down and checks that every descriptor opened since
/// `baseline` was taken is closed again.
async fn shut_down(lb: SimHandle, apps: [MockUpstream; 3], baseline: usize) {
    lb.shutdown().await;
    for app in &apps {
        app.kill();
    }
    drop(apps);
    assert_fds_back_to(baseline).await;
}

#[test]
fn churned_targets_leave_the_group_and_routing_stays_right() {
    run_alone(churned_targets_leave);
}

async fn churned_targets_leave() {
    let baseline = open_fds();
    let (lb, apps) = setup().await;
    let [a, b, c] = &apps;

    // A client keeps sending through the churn: every answer is a 200 from one of the
    // apps (a churned target is `c`, alive, while it is registered).
    let addr = lb.addr();
    let churning = Arc::new(AtomicBool::new(true));
    let traffic = tokio::spawn({
        let churning = churning.clone();
        async move {
            let mut client = RawClient::connect(addr).await;
            let mut sent = 0u32;
            while churning.load(Ordering::Relaxed) {
                get_ok(&mut client).await;
                sent += 1;
            }
            sent
        }
    });

    for _ in 0..2 {
        let mut first = None;
        for _ in 0..LIBRARY_CYCLES / 2 {
            let info = lb.register(c.addr).expect("c is not in the group");
            first.get_or_insert(info.id);
            let drained = lb.deregister(info.id).expect("just registered");
            let drained = drained.info();
            // Draining, or already past its 5 ms delay on a loaded machine.
            assert!(
                matches!(drained.state, TargetState::Draining | TargetState::Unused),
                "{:?}",
                drained.state
            );
        }
        // Listed while draining, gone once drained: the group is back to the two.
        wait_only_live(&lb, a, b).await;
        let first = first.unwrap();
        assert!(
            lb.deregister(first).is_err(),
            "drained target {first} is still in the group"
        );
    }
    churning.store(false, Ordering::Relaxed);
    let sent = traffic
        .await
        .expect("every request during the churn got a 200");
    assert!(sent > 0);
    assert_round_robin(&lb, a, b, 10).await;
    assert_eq!(lb.stats().by_cause, Default::default(), "{:?}", lb.stats());

    shut_down(lb, apps, baseline).await;
}

/// `method path` on a new connection to the control API; the status and the body.
async fn admin_call(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: admin.test\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut bytes = Vec::new();
    tokio::time::timeout(READ_LIMIT, stream.read_to_end(&mut bytes))
        .await
        .expect("the control API closes after a Connection: close exchange")
        .unwrap();
    let head_end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head")
        + 4;
    let status = std::str::from_utf8(&bytes[9..12]).unwrap().parse().unwrap();
    (status, bytes[head_end..].to_vec())
}

#[test]
fn churn_through_the_control_api_keeps_get_targets_small() {
    run_alone(admin_churn);
}

async fn admin_churn() {
    let baseline = open_fds();
    let (lb, apps) = setup().await;
    let [a, b, c] = &apps;
    let admin = AdminServer::start(SocketAddr::from(([127, 0, 0, 1], 0)), lb.control())
        .expect("control API on");
    let api = admin.addr();

    let (status, listed) = admin_call(api, "GET", "/targets", "").await;
    assert_eq!(status, 200);
    let size_before = listed.len();

    let register = format!(r#"{{"address": "{}"}}"#, c.addr);
    let mut last_id = 0;
    for _ in 0..ADMIN_CYCLES {
        let (status, body) = admin_call(api, "POST", "/targets", &register).await;
        // 409 only if `c` from the cycle before were still registered: it is draining.
        assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
        let created: Value = serde_json::from_slice(&body).unwrap();
        last_id = created["id"].as_u64().unwrap();
        let (status, body) = admin_call(api, "DELETE", &format!("/targets/{last_id}"), "").await;
        assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    }
    wait_only_live(&lb, a, b).await;

    // GET /targets is as small as before the churn: the two live targets, byte for byte.
    let (status, after) = admin_call(api, "GET", "/targets", "").await;
    assert_eq!(status, 200);
    assert_eq!(
        after.len(),
        size_before,
        "{}",
        String::from_utf8_lossy(&after)
    );
    let listed: Value = serde_json::from_slice(&after).unwrap();
    let ids: Vec<u64> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [1, 2]);
    // A drained target's id says it left, instead of listing it forever.
    let (status, body) = admin_call(api, "GET", &format!("/targets/{last_id}"), "").await;
    assert_eq!(status, 404);
    assert!(
        String::from_utf8_lossy(&body).contains("no longer in the target group"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert_round_robin(&lb, a, b, 10).await;

    admin.shutdown().await;
    shut_down(lb, apps, baseline).await;
}
