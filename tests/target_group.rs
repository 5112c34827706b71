//! The target group: which target gets a request, on each cloud, with real mock targets.
//!
//! - round-robin over routable targets;
//! - an empty group is a 503 on both clouds;
//! - no healthy target: AWS fails open (routes to all), GCP answers 503 (also right after a
//!   start, until the healthy threshold passes, and during a warm-up window);
//! - a target that dies is taken out of rotation after the unhealthy threshold;
//! - deregistration: draining, in-flight requests finish within the delay, are cut after,
//!   and the target leaves the group (no longer listed);
//! - manual health overrides.
//!
//! Health checks run on short intervals with explicit thresholds. Where a test counts
//! requests per target it uses a "quiet" group: a 10 s interval and a threshold of 1, so
//! each target is checked once at registration and then not again while the test runs,
//! and `app.requests()` counts only the test's own requests.

mod support;

use std::time::{Duration, Instant};

use lbsim::SimulatorBuilder;
use lbsim::{
    Cloud, Deregistered, HealthOverride, MockUpstream, NoSuchTarget, Reason, SimHandle, Simulator,
    TargetInfo, TargetState,
};
use support::*;

/// Bound for every wait on a state change: generous, a hung test fails instead.
const WAIT: Duration = Duration::from_secs(5);
/// Interval of the "active" health checks used where state changes are awaited.
const INTERVAL: Duration = Duration::from_millis(50);
/// Interval of a quiet group: longer than any test, so no check lands mid-test.
const QUIET_INTERVAL: Duration = Duration::from_secs(10);
/// Slack for timing upper bounds on a loaded 2-core machine.
const SLACK: Duration = Duration::from_millis(250);

/// Mock app with a keep-alive longer than any test (no idle closes get in the way).
async fn app() -> MockUpstream {
    mock(Duration::from_secs(60)).await
}

/// Polls the target list every 5 ms until `cond` holds; panics after [`WAIT`].
async fn wait_targets(
    lb: &SimHandle,
    what: &str,
    cond: impl Fn(&[TargetInfo]) -> bool,
) -> Vec<TargetInfo> {
    let start = Instant::now();
    loop {
        let targets = lb.targets();
        if cond(&targets) {
            return targets;
        }
        assert!(
            start.elapsed() < WAIT,
            "{what}: not reached within {WAIT:?}; targets: {targets:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The entry for `app` in `targets`.
fn info_of<'a>(targets: &'a [TargetInfo], app: &MockUpstream) -> &'a TargetInfo {
    let addr = app.addr.to_string();
    targets
        .iter()
        .find(|t| t.address == addr)
        .unwrap_or_else(|| panic!("{addr} not in {targets:?}"))
}

/// Waits until `app`'s target is in `state`; returns its entry.
async fn wait_state(lb: &SimHandle, app: &MockUpstream, state: TargetState) -> TargetInfo {
    let targets = wait_targets(lb, &format!("{} {state:?}", app.addr), |t| {
        info_of(t, app).state == state
    })
    .await;
    info_of(&targets, app).clone()
}

/// Waits until `app`'s target has left the group (its deregistration ended).
async fn wait_gone(lb: &SimHandle, app: &MockUpstream) {
    let addr = app.addr.to_string();
    wait_targets(lb, &format!("{addr} leaves the group"), |t| {
        t.iter().all(|t| t.address != addr)
    })
    .await;
}

/// One app behind an actively checked group whose health checks get `health_path` (a
/// failing status); returns once the target is unhealthy, with its entry and a client
/// connection.
async fn only_target_unhealthy(
    cloud: Cloud,
    health_path: &str,
) -> (MockUpstream, SimHandle, TargetInfo, RawClient) {
    let a = app().await;
    let lb = active(cloud, &[&a])
        .health_path(health_path)
        .start()
        .await
        .unwrap();
    let info = wait_state(&lb, &a, TargetState::Unhealthy).await;
    let client = RawClient::connect(lb.addr()).await;
    (a, lb, info, client)
}

/// Builder with active health checks on `apps`, interval [`INTERVAL`], thresholds 2/2.
fn active(cloud: Cloud, apps: &[&MockUpstream]) -> SimulatorBuilder {
    let mut b = Simulator::builder(cloud)
        .health_interval(INTERVAL)
        .health_timeout(Duration::from_secs(1))
        .healthy_threshold(2)
        .unhealthy_threshold(2);
    for app in apps {
        b = b.upstream(app.addr);
    }
    b
}

/// A quiet group (see the module doc) on `apps`, started, with every target healthy.
async fn quiet_group(
    cloud: Cloud,
    apps: &[&MockUpstream],
    tweak: impl FnOnce(SimulatorBuilder) -> SimulatorBuilder,
) -> SimHandle {
    let mut b = Simulator::builder(cloud)
        .health_interval(QUIET_INTERVAL)
        .health_timeout(Duration::from_secs(1))
        .healthy_threshold(1)
        .unhealthy_threshold(2);
    for app in apps {
        b = b.upstream(app.addr);
    }
    let lb = tweak(b).start().await.expect("lbsim starts");
    wait_targets(&lb, "every target healthy", |t| {
        t.len() == apps.len() && t.iter().all(|t| t.state == TargetState::Healthy)
    })
    .await;
    // The one check per target has been answered: from here on only the test's requests
    // reach the apps.
    lb
}

/// Sends `GET /` and says which of `apps` served it (exactly one must have).
async fn served_by(client: &mut RawClient, apps: &[&MockUpstream]) -> usize {
    let before: Vec<u64> = apps.iter().map(|a| a.requests()).collect();
    let resp = client.get("/").await;
    assert_eq!(resp.status, 200, "body: {}", resp.text());
    assert_eq!(resp.text(), "ok");
    assert_eq!(resp.header("x-lbsim-reason"), None);
    let grew: Vec<usize> = apps
        .iter()
        .zip(&before)
        .enumerate()
        .filter(|(_, (a, b))| a.requests() != **b)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(grew.len(), 1, "one request reached apps {grew:?}");
    let i = grew[0];
    assert_eq!(apps[i].requests(), before[i] + 1);
    i
}

/// `n` requests alternate strictly between the two apps.
async fn assert_alternates(lb: &SimHandle, a: &MockUpstream, b: &MockUpstream, n: usize) {
    let mut client = RawClient::connect(lb.addr()).await;
    let mut order = Vec::new();
    for _ in 0..n {
        order.push(served_by(&mut client, &[a, b]).await);
    }
    assert!(
        order.windows(2).all(|w| w[0] != w[1]),
        "requests did not alternate: {order:?}"
    );
    assert_eq!(order.iter().filter(|&&i| i == 0).count(), n / 2);
}

/// The cloud's answer to a request cut by the end of a deregistration delay: the ALB's
/// 502; Envoy's reset (503) on GCP's global load balancer; the GFE 502 on the classic one.
#[track_caller]
fn assert_deregistration_cut(cloud: Cloud, resp: &RawResponse) {
    let reason = "deregistration_delay_elapsed";
    match cloud {
        Cloud::Aws => assert_alb_page(resp, 502, "Bad Gateway", reason),
        Cloud::Gcp => assert_envoy_page(
            resp,
            503,
            "Service Unavailable",
            "upstream connect error or disconnect/reset before headers. reset reason: connection termination",
            reason,
        ),
        Cloud::GcpClassic => assert_gfe_page(resp, 502, "Bad Gateway", "Server Error", reason),
        Cloud::IngressNginx => assert_nginx_page(resp, 502, "Bad Gateway", "pod_terminated"),
    }
}

// ---------------------------------------------------------------------------------------
// Round-robin

async fn round_robin_without_checks(cloud: Cloud) {
    let (a, b) = (app().await, app().await);
    let lb = Simulator::builder(cloud)
        .no_health_checks()
        .upstream(a.addr)
        .upstream(b.addr)
        .start()
        .await
        .unwrap();
    let targets = lb.targets();
    assert_eq!(targets.len(), 2);
    assert!(
        targets.iter().all(|t| t.state == TargetState::Unavailable),
        "{targets:?}"
    );
    assert_alternates(&lb, &a, &b, 6).await;
}

#[tokio::test]
async fn aws_round_robin_over_unchecked_targets() {
    round_robin_without_checks(Cloud::Aws).await;
}

#[tokio::test]
async fn gcp_round_robin_over_unchecked_targets() {
    round_robin_without_checks(Cloud::Gcp).await;
}

#[tokio::test]
async fn aws_round_robin_over_healthy_targets() {
    let (a, b) = (app().await, app().await);
    let lb = quiet_group(Cloud::Aws, &[&a, &b], |b| b).await;
    assert_alternates(&lb, &a, &b, 6).await;
}

#[tokio::test]
async fn gcp_round_robin_over_healthy_targets() {
    let (a, b) = (app().await, app().await);
    let lb = quiet_group(Cloud::Gcp, &[&a, &b], |b| b).await;
    assert_alternates(&lb, &a, &b, 6).await;
}

// ---------------------------------------------------------------------------------------
// No registered targets

#[tokio::test]
async fn aws_empty_target_group_is_503_until_a_target_registers() {
    let lb = Simulator::builder(Cloud::Aws)
        .health_interval(INTERVAL)
        .start()
        .await
        .unwrap();
    let mut client = RawClient::connect(lb.addr()).await;
    let resp = client.get("/").await;
    assert_alb_page(
        &resp,
        503,
        "Service Temporarily Unavailable",
        "no_registered_targets",
    );
    assert_eq!(resp.body.len(), 162, "the documented 503 page length");
    assert_eq!(lb.stats().count(Reason::NoRegisteredTargets), 1);
    assert_eq!(lb.stats().by_status.get(&503), Some(&1));

    // Registering a target ends it: one passing check is enough on AWS.
    let a = app().await;
    let info = lb.register(a.addr).expect("a new address");
    assert_eq!(info.state, TargetState::Initial);
    assert_eq!(info.address, a.addr.to_string());
    wait_state(&lb, &a, TargetState::Healthy).await;
    let resp = client.get("/").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "ok");
}

#[tokio::test]
async fn gcp_empty_backend_service_is_503() {
    let lb = Simulator::builder(Cloud::Gcp).start().await.unwrap();
    let mut client = RawClient::connect(lb.addr()).await;
    let resp = client.get("/").await;
    assert_no_healthy_upstream(&resp, "no_registered_targets");
    assert_eq!(lb.stats().count(Reason::NoRegisteredTargets), 1);
}

#[tokio::test]
async fn gcp_classic_empty_backend_service_is_502() {
    let lb = Simulator::builder(Cloud::GcpClassic).start().await.unwrap();
    let mut client = RawClient::connect(lb.addr()).await;
    let resp = client.get("/").await;
    // Classic: failed_to_pick_backend is answered with the 502 page, as "all backends
    // are unhealthy" is (Migration overview).
    assert_gfe_page(
        &resp,
        502,
        "Bad Gateway",
        "Server Error",
        "no_registered_targets",
    );
    assert_eq!(lb.stats().by_status.get(&502), Some(&1));
}

// ---------------------------------------------------------------------------------------
// No healthy target: AWS fails open, GCP does not

#[tokio::test]
async fn aws_unhealthy_only_target_fails_open() {
    let (_a, lb, info, mut client) = only_target_unhealthy(Cloud::Aws, "/status/503").await;
    assert_eq!(info.reason, "status 503, expected 200");
    for _ in 0..3 {
        let resp = client.get("/").await;
        assert_eq!(
            resp.status, 200,
            "ALB routes to unhealthy targets when all are"
        );
        assert_eq!(resp.text(), "ok");
        assert_eq!(resp.header("x-lbsim-reason"), None);
    }
    assert_eq!(lb.stats().by_status.get(&503), None);
    assert!(lb.stats().by_cause.is_empty(), "{:?}", lb.stats());
}

#[tokio::test]
async fn aws_fails_open_to_every_unhealthy_target_in_turn() {
    let (a, b) = (app().await, app().await);
    // One failed check makes a target unhealthy; the next check is after the test.
    let lb = Simulator::builder(Cloud::Aws)
        .upstream(a.addr)
        .upstream(b.addr)
        .health_path("/status/500")
        .health_interval(QUIET_INTERVAL)
        .healthy_threshold(2)
        .unhealthy_threshold(1)
        .start()
        .await
        .unwrap();
    wait_targets(&lb, "both unhealthy", |t| {
        t.iter().all(|t| t.state == TargetState::Unhealthy)
    })
    .await;
    assert_alternates(&lb, &a, &b, 6).await;
}

#[tokio::test]
async fn gcp_unhealthy_only_backend_is_503_no_healthy_backend() {
    let (_a, lb, info, mut client) = only_target_unhealthy(Cloud::Gcp, "/status/503").await;
    assert_eq!(info.reason, "status 503, expected 200");
    for _ in 0..2 {
        assert_no_healthy_upstream(&client.get("/").await, "no_healthy_backend");
    }
    assert_eq!(lb.stats().count(Reason::NoHealthyTargets), 2);
    assert_eq!(lb.stats().by_status.get(&200), None);
}

/// Sends `GET /` every 5 ms until a 200; every earlier answer must be the GFE's 503
/// `no_healthy_backend`. Returns when the 200 came (from `t0`) and how many 503s preceded.
async fn first_200_after(lb: &SimHandle, t0: Instant) -> (Duration, usize) {
    let mut client = RawClient::connect(lb.addr()).await;
    let mut refused = 0;
    loop {
        let resp = client.get("/").await;
        if resp.status == 200 {
            assert_eq!(resp.text(), "ok");
            return (t0.elapsed(), refused);
        }
        assert_no_healthy_upstream(&resp, "no_healthy_backend");
        refused += 1;
        assert!(t0.elapsed() < WAIT, "no 200 within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// GCP after a start: 503 until the healthy threshold's worth of checks has passed. The
/// first check runs at registration, so the threshold-th pass comes (threshold - 1)
/// intervals later.
async fn gcp_start_waits_for_threshold(threshold: u32) {
    let interval = Duration::from_millis(100);
    let a = app().await;
    let t0 = Instant::now();
    let lb = Simulator::builder(Cloud::Gcp)
        .upstream(a.addr)
        .health_interval(interval)
        .healthy_threshold(threshold)
        .unhealthy_threshold(2)
        .start()
        .await
        .unwrap();
    let (elapsed, refused) = first_200_after(&lb, t0).await;
    assert!(refused > 0, "the first request after start must be refused");
    let earliest = interval * (threshold - 1);
    assert!(
        elapsed >= earliest,
        "first 200 after {elapsed:?}, before {threshold} checks could pass ({earliest:?})"
    );
    assert!(
        elapsed <= interval * threshold + SLACK,
        "first 200 only after {elapsed:?}"
    );
    assert_eq!(lb.targets()[0].state, TargetState::Healthy);
    assert_eq!(lb.stats().count(Reason::NoHealthyTargets), refused as u64);
}

#[tokio::test]
async fn gcp_503_after_start_until_two_checks_pass() {
    gcp_start_waits_for_threshold(2).await;
}

#[tokio::test]
async fn gcp_503_after_start_until_three_checks_pass() {
    gcp_start_waits_for_threshold(3).await;
}

#[tokio::test]
async fn gcp_warmup_keeps_503_although_checks_pass() {
    let warmup = Duration::from_millis(600);
    let a = app().await;
    let t0 = Instant::now();
    let lb = active(Cloud::Gcp, &[&a])
        .warmup(warmup)
        .start()
        .await
        .unwrap();
    wait_state(&lb, &a, TargetState::Healthy).await;
    assert!(
        t0.elapsed() < warmup - Duration::from_millis(200),
        "checks passed only after {:?}: the warm-up test needs them to pass well inside it",
        t0.elapsed()
    );
    // Healthy, and still refused.
    let mut client = RawClient::connect(lb.addr()).await;
    assert_no_healthy_upstream(&client.get("/").await, "no_healthy_backend");
    let (elapsed, _) = first_200_after(&lb, t0).await;
    assert!(
        elapsed >= warmup,
        "first 200 after {elapsed:?}, inside the warm-up"
    );
    assert!(
        elapsed <= warmup + SLACK,
        "first 200 only after {elapsed:?}"
    );
}

// ---------------------------------------------------------------------------------------
// A target dies

async fn killed_target_leaves_rotation(cloud: Cloud) {
    let (a, b) = (app().await, app().await);
    let lb = active(cloud, &[&a, &b]).start().await.unwrap();
    wait_targets(&lb, "both healthy", |t| {
        t.iter().all(|t| t.state == TargetState::Healthy)
    })
    .await;
    // Some traffic first, so the pool holds connections to both.
    let mut client = RawClient::connect(lb.addr()).await;
    for _ in 0..4 {
        assert_eq!(client.get("/").await.status, 200);
    }

    assert_eq!(info_of(&lb.targets(), &a).state, TargetState::Healthy);
    a.stop();
    let killed_at = Instant::now();
    let info = wait_state(&lb, &a, TargetState::Unhealthy).await;
    let took = killed_at.elapsed();
    assert!(
        info.reason.contains("connect"),
        "reason should name the connect failure: {:?}",
        info.reason
    );
    // Two failed checks, an interval apart.
    assert!(took >= INTERVAL, "unhealthy after {took:?}");
    assert!(
        took <= INTERVAL * 2 + SLACK,
        "unhealthy only after {took:?}"
    );
    assert_eq!(info_of(&lb.targets(), &b).state, TargetState::Healthy);

    lb.reset_stats();
    let served_by_a = a.requests();
    for _ in 0..10 {
        let resp = client.get("/").await;
        assert_eq!(resp.status, 200, "body: {}", resp.text());
        assert_eq!(resp.text(), "ok");
    }
    assert_eq!(
        a.requests(),
        served_by_a,
        "a request reached the dead target"
    );
    let stats = lb.stats();
    assert_eq!(stats.by_status.get(&200), Some(&10), "{stats:?}");
    assert_eq!(
        stats.by_status.len(),
        1,
        "no 502 once it is unhealthy: {stats:?}"
    );
    assert!(stats.by_cause.is_empty(), "{stats:?}");
}

#[tokio::test]
async fn aws_killed_target_leaves_rotation_after_unhealthy_threshold() {
    killed_target_leaves_rotation(Cloud::Aws).await;
}

#[tokio::test]
async fn gcp_killed_backend_leaves_rotation_after_unhealthy_threshold() {
    killed_target_leaves_rotation(Cloud::Gcp).await;
}

// ---------------------------------------------------------------------------------------
// Deregistration

/// Sends `GET path` on a new client connection without reading the answer; returns the
/// connection and the target that took the request (the one whose in-flight count
/// became 1).
async fn start_request(lb: &SimHandle, path: &str) -> (RawClient, TargetInfo) {
    let mut client = RawClient::connect(lb.addr()).await;
    client
        .send(format!("GET {path} HTTP/1.1\r\nHost: lbsim.test\r\n\r\n").as_bytes())
        .await;
    let targets = wait_targets(lb, "a request in flight", |t| {
        t.iter().any(|t| t.in_flight == 1)
    })
    .await;
    (
        client,
        targets.into_iter().find(|t| t.in_flight == 1).unwrap(),
    )
}

async fn deregistered_target_drains_then_leaves(cloud: Cloud) {
    let delay = Duration::from_millis(300);
    let (a, b) = (app().await, app().await);
    let lb = quiet_group(cloud, &[&a, &b], |b| b.deregistration_delay(delay)).await;
    let id = info_of(&lb.targets(), &a).id;
    let started = Instant::now();
    let Ok(Deregistered::Started(info)) = lb.deregister(id) else {
        panic!("deregistering a known target starts its drain");
    };
    assert_eq!(info.state, TargetState::Draining);
    let left = info.drain_remaining_ms.expect("time left while draining");
    assert!(left <= delay.as_millis() as u64, "{left} ms left");
    assert_eq!(info_of(&lb.targets(), &a).state, TargetState::Draining);
    // Again while draining: the same target, the delay not restarted.
    let Ok(Deregistered::Already(again)) = lb.deregister(id) else {
        panic!("a draining target is left as it is");
    };
    assert_eq!(again.state, TargetState::Draining);
    assert!(again.drain_remaining_ms.expect("time left") <= left);

    let mut client = RawClient::connect(lb.addr()).await;
    for _ in 0..4 {
        assert_eq!(
            served_by(&mut client, &[&a, &b]).await,
            1,
            "went to the draining target"
        );
    }
    wait_gone(&lb, &a).await;
    let took = started.elapsed();
    assert!(took >= delay, "gone after {took:?}, before the delay");
    assert!(took <= delay + SLACK, "gone only after {took:?}");
    assert_eq!(lb.targets().len(), 1, "{:?}", lb.targets());
    for _ in 0..2 {
        assert_eq!(served_by(&mut client, &[&a, &b]).await, 1);
    }
    assert_eq!(
        lb.deregister(id).err(),
        Some(NoSuchTarget::Gone(id)),
        "a target that left is gone"
    );
    assert_eq!(lb.deregister(999).err(), Some(NoSuchTarget::Unknown(999)));
}

#[tokio::test]
async fn aws_deregistered_target_drains_then_leaves_the_group() {
    deregistered_target_drains_then_leaves(Cloud::Aws).await;
}

#[tokio::test]
async fn gcp_deregistered_backend_drains_then_leaves_the_group() {
    deregistered_target_drains_then_leaves(Cloud::Gcp).await;
}

#[tokio::test]
async fn aws_in_flight_request_finishes_within_deregistration_delay() {
    let delay = Duration::from_millis(700);
    let (a, b) = (app().await, app().await);
    let apps = [&a, &b];
    let lb = quiet_group(Cloud::Aws, &apps, |b| b.deregistration_delay(delay)).await;
    let (mut slow, busy) = start_request(&lb, "/sleep/0.3").await;
    let busy_app = apps
        .iter()
        .position(|a| a.addr.to_string() == busy.address)
        .unwrap();
    let started = Instant::now();
    assert_eq!(
        lb.deregister(busy.id).unwrap().info().state,
        TargetState::Draining
    );

    // New requests go to the other target only.
    let mut client = RawClient::connect(lb.addr()).await;
    for _ in 0..3 {
        assert_eq!(served_by(&mut client, &apps).await, 1 - busy_app);
    }
    let resp = slow.response().await.expect("the in-flight answer");
    assert!(
        started.elapsed() < delay,
        "answer only after {:?}",
        started.elapsed()
    );
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "slept 0.3");
    assert!(resp.complete);
    let info = info_of(&lb.targets(), apps[busy_app]).clone();
    assert_eq!(
        info.state,
        TargetState::Draining,
        "still draining: {info:?}"
    );
    assert_eq!(info.in_flight, 0);
    wait_gone(&lb, apps[busy_app]).await;
    assert!(started.elapsed() >= delay);
    assert!(lb.stats().by_cause.is_empty(), "{:?}", lb.stats());
}

async fn request_outliving_deregistration_delay_is_502(cloud: Cloud) {
    let delay = Duration::from_millis(300);
    let a = app().await;
    let lb = quiet_group(cloud, &[&a], |b| b.deregistration_delay(delay)).await;
    let (mut slow, busy) = start_request(&lb, "/sleep/3").await;
    let started = Instant::now();
    lb.deregister(busy.id).unwrap();
    // Only target gone: new requests have nowhere to go.
    let mut client = RawClient::connect(lb.addr()).await;
    let resp = client.get("/").await;
    match cloud {
        Cloud::Aws => assert_alb_page(
            &resp,
            503,
            "Service Temporarily Unavailable",
            "no_registered_targets",
        ),
        Cloud::Gcp | Cloud::GcpClassic => {
            assert_no_healthy_upstream(&resp, "no_registered_targets")
        }
        Cloud::IngressNginx => assert_nginx_page(
            &resp,
            503,
            "Service Temporarily Unavailable",
            "no_endpoints",
        ),
    }

    let resp = slow.response().await.expect("an answer");
    let took = started.elapsed();
    assert!(took >= delay, "502 after {took:?}, before the delay ended");
    assert!(took <= delay + SLACK, "502 only after {took:?}");
    assert_deregistration_cut(cloud, &resp);
    assert!(
        lb.targets().is_empty(),
        "left the group: {:?}",
        lb.targets()
    );
    assert_eq!(lb.stats().count(Reason::DeregistrationDelayElapsed), 1);
}

#[tokio::test]
async fn aws_request_outliving_deregistration_delay_is_502() {
    request_outliving_deregistration_delay_is_502(Cloud::Aws).await;
}

#[tokio::test]
async fn gcp_request_outliving_deregistration_delay_is_502() {
    request_outliving_deregistration_delay_is_502(Cloud::Gcp).await;
}

#[tokio::test]
async fn aws_stream_in_flight_is_cut_when_deregistration_delay_ends() {
    let delay = Duration::from_millis(300);
    let a = app().await;
    let lb = quiet_group(Cloud::Aws, &[&a], |b| b.deregistration_delay(delay)).await;
    // 20 chunks 50 ms apart: a one-second stream.
    let (mut client, busy) = start_request(&lb, "/stream/20?interval=0.05").await;
    let mut first = [0u8; 1];
    let n = tokio::time::timeout(READ_LIMIT, client.stream.peek(&mut first))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 1, "the head arrives before the deregistration");
    let started = Instant::now();
    lb.deregister(busy.id).unwrap();
    let resp = client.response().await.expect("a head");
    let took = started.elapsed();
    assert_eq!(resp.status, 200);
    assert!(!resp.complete, "stream not cut: {:?}", resp.text());
    let full: String = (0..20).map(|i| format!("chunk {i}\n")).collect();
    let got = resp.text();
    assert!(
        !got.is_empty() && got.len() < full.len() && full.starts_with(&got),
        "cut body should be a proper prefix of the stream: {got:?}"
    );
    assert!(took >= delay, "cut after {took:?}, before the delay");
    assert!(took <= delay + SLACK, "cut only after {took:?}");
    assert!(
        lb.targets().is_empty(),
        "left the group: {:?}",
        lb.targets()
    );
    assert_eq!(lb.stats().count(Reason::DeregistrationDelayElapsed), 1);
}

// ---------------------------------------------------------------------------------------
// Manual health overrides

async fn unhealthy_override_diverts_traffic(cloud: Cloud) {
    let (a, b) = (app().await, app().await);
    let lb = quiet_group(cloud, &[&a, &b], |b| b).await;
    let id = info_of(&lb.targets(), &a).id;

    let info = lb.set_health(id, HealthOverride::Unhealthy).unwrap();
    assert_eq!(info.over, HealthOverride::Unhealthy);
    assert_eq!(
        info.state,
        TargetState::Unhealthy,
        "the effective state, the one routing goes by"
    );
    assert_eq!(
        info.checked_state,
        TargetState::Healthy,
        "the checks' verdict is kept beside it"
    );
    assert_eq!(info_of(&lb.targets(), &a).state, TargetState::Unhealthy);
    let mut client = RawClient::connect(lb.addr()).await;
    for _ in 0..4 {
        assert_eq!(
            served_by(&mut client, &[&a, &b]).await,
            1,
            "reached the forced-unhealthy target"
        );
    }

    let info = lb.set_health(id, HealthOverride::Auto).unwrap();
    assert_eq!(info.over, HealthOverride::Auto);
    assert_eq!(
        (info.state, info.checked_state),
        (TargetState::Healthy, TargetState::Healthy)
    );
    assert_alternates(&lb, &a, &b, 4).await;
    assert_eq!(
        lb.set_health(999, HealthOverride::Healthy).err(),
        Some(NoSuchTarget::Unknown(999))
    );
}

#[tokio::test]
async fn aws_unhealthy_override_diverts_traffic_until_auto() {
    unhealthy_override_diverts_traffic(Cloud::Aws).await;
}

#[tokio::test]
async fn gcp_unhealthy_override_diverts_traffic_until_auto() {
    unhealthy_override_diverts_traffic(Cloud::Gcp).await;
}

#[tokio::test]
async fn gcp_healthy_override_forces_traffic_to_a_failing_backend() {
    let (a, lb, info, mut client) = only_target_unhealthy(Cloud::Gcp, "/status/500").await;
    assert_no_healthy_upstream(&client.get("/").await, "no_healthy_backend");

    let forced = lb.set_health(info.id, HealthOverride::Healthy).unwrap();
    assert_eq!(forced.over, HealthOverride::Healthy);
    assert_eq!(
        (forced.state, forced.checked_state),
        (TargetState::Healthy, TargetState::Unhealthy)
    );
    for _ in 0..3 {
        let resp = client.get("/").await;
        assert_eq!(resp.status, 200, "body: {}", resp.text());
        assert_eq!(resp.text(), "ok");
    }
    // The checks go on failing underneath; the override wins.
    let now = info_of(&lb.targets(), &a).clone();
    assert_eq!(
        (now.state, now.checked_state),
        (TargetState::Healthy, TargetState::Unhealthy)
    );

    lb.set_health(info.id, HealthOverride::Auto).unwrap();
    assert_no_healthy_upstream(&client.get("/").await, "no_healthy_backend");
}
