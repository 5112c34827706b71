//! AWS ALB idle timeout: 504 only when no byte moved for the idle period.

mod support;

use std::time::{Duration, Instant};

use lbsim::Cloud;
use support::*;

const IDLE: Duration = Duration::from_millis(500);

#[tokio::test]
async fn silent_target_gets_alb_504_after_idle_timeout() {
    let app = mock(Duration::from_secs(5)).await;
    let lb = lb(Cloud::Aws, app.addr, IDLE).await;
    let mut client = RawClient::connect(lb.addr()).await;
    let start = Instant::now();
    let resp = client.get("/sleep/3").await;
    assert_elapsed(start.elapsed(), IDLE, Duration::from_millis(150));
    assert_eq!(resp.status, 504);
    assert_eq!(resp.reason, "Gateway Time-out");
    assert_eq!(resp.header("Server"), Some("awselb/2.0"));
    assert_eq!(resp.header("Content-Type"), Some("text/html"));
    assert_eq!(resp.header("x-lbsim-reason"), Some("target_idle_timeout"));
    assert_eq!(resp.text(), alb_page("504 Gateway Time-out"));
    assert_eq!(
        resp.header("Content-Length"),
        Some(resp.body.len().to_string().as_str())
    );
    assert_eq!(lb.stats().by_reason.get("target_idle_timeout"), Some(&1));
}
