//! Ray Serve's own answers, told apart from the load balancer's: the mock app answers as
//! Ray Serve's proxy does under backpressure (503) and at `request_timeout_s` (408), and
//! lbsim passes them through as the app's, never counting them as its own.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use lbsim::{Cloud, MockOptions, MockUpstream};
use support::*;

async fn ray_like(opts: MockOptions) -> MockUpstream {
    MockUpstream::start(SocketAddr::from(([127, 0, 0, 1], 0)), opts)
        .await
        .expect("mock app starts")
}

#[tokio::test]
async fn rays_503_under_backpressure_is_the_apps_not_the_lbs() {
    let sockets = SocketsCheck::begin().await;
    // One request at a time, none queued: a second one at once is dropped by Ray.
    let app = ray_like(MockOptions {
        max_ongoing_requests: 1,
        max_queued_requests: Some(0),
        ..MockOptions::default()
    })
    .await;
    let lb = lb(Cloud::Aws, app.addr, Duration::from_secs(5)).await;
    let mut busy = RawClient::connect(lb.addr()).await;
    busy.send(b"GET /sleep/1 HTTP/1.1\r\nHost: lbsim.test\r\n\r\n")
        .await;
    wait_until(
        "the first request is being served",
        Duration::from_secs(2),
        || {
            app.stats
                .in_progress
                .load(std::sync::atomic::Ordering::Relaxed)
                == 1
        },
    )
    .await;
    let resp = RawClient::connect(lb.addr()).await.get("/").await;
    assert_eq!(resp.status, 503);
    assert_eq!(resp.reason, "Service Unavailable");
    assert_eq!(
        resp.text(),
        "Request dropped due to backpressure (num_queued_requests=0, max_queued_requests=0)."
    );
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(resp.header("x-lbsim-reason"), None, "not the LB's answer");
    assert_eq!(busy.response().await.expect("the slow answer").status, 200);
    let stats = lb.stats();
    assert_eq!(stats.by_status.get(&503), Some(&1));
    assert!(stats.lb_by_status.is_empty(), "{:?}", stats.lb_by_status);
    assert!(stats.by_cause.is_empty(), "{:?}", stats.by_cause);
    drop(busy);
    sockets.finish(lb, app).await;
}

#[tokio::test]
async fn request_timeout_shorter_than_the_lbs_gives_rays_408_not_the_lbs_504() {
    let sockets = SocketsCheck::begin().await;
    let ray_timeout = Duration::from_millis(300);
    let app = ray_like(MockOptions {
        request_timeout: Some(ray_timeout),
        ..MockOptions::default()
    })
    .await;
    let lb = lb(Cloud::Aws, app.addr, Duration::from_secs(2)).await;
    let mut client = RawClient::connect(lb.addr()).await;
    let start = Instant::now();
    let resp = client.get("/sleep/1").await;
    assert_elapsed(start.elapsed(), ray_timeout, Duration::from_millis(250));
    assert_eq!(resp.status, 408);
    let text = resp.text();
    assert!(
        text.starts_with("Request ") && text.ends_with(" timed out after 0.3s."),
        "{text}"
    );
    assert_eq!(resp.header("x-lbsim-reason"), None);
    let stats = lb.stats();
    assert_eq!(stats.by_status.get(&408), Some(&1));
    assert!(stats.lb_by_status.is_empty());
    drop(client);
    sockets.finish(lb, app).await;
}

#[tokio::test]
async fn the_reverse_an_lb_timeout_shorter_than_rays_is_the_lbs_504() {
    let sockets = SocketsCheck::begin().await;
    let app = ray_like(MockOptions {
        request_timeout: Some(Duration::from_secs(2)),
        ..MockOptions::default()
    })
    .await;
    let lb = lb(Cloud::Aws, app.addr, Duration::from_millis(300)).await;
    let resp = RawClient::connect(lb.addr()).await.get("/sleep/1").await;
    assert_alb_page(&resp, 504, "Gateway Time-out", "target_idle_timeout");
    assert_eq!(lb.stats().lb_by_status.get(&504), Some(&1));
    sockets.finish(lb, app).await;
}
