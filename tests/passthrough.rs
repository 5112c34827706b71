//! The app's own statuses and bodies pass through both clouds unchanged.

mod support;

use std::time::Duration;

use lbsim::Cloud;
use support::*;

const TIMEOUT: Duration = Duration::from_secs(5);

/// Header names, in order, that came from the app (not added by the LB).
fn app_header_names(resp: &RawResponse) -> Vec<&str> {
    resp.headers
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| !n.eq_ignore_ascii_case("via"))
        .collect()
}

#[track_caller]
fn assert_app_status(resp: &RawResponse, status: u16, phrase: &str) {
    assert_eq!(resp.status, status);
    assert_eq!(resp.reason, phrase);
    assert_eq!(resp.text(), format!("status {status}"));
    assert!(resp.complete);
    assert_eq!(resp.header("x-lbsim-reason"), None);
    // The app's header names, in the app's order and (lowercase) case, nothing added.
    assert_eq!(
        app_header_names(resp),
        ["date", "server", "content-length", "content-type"],
        "{:?}",
        resp.headers
    );
    assert_eq!(resp.header("server"), Some("uvicorn"));
    assert_eq!(resp.header("content-type"), Some("text/plain"));
    assert_eq!(resp.header("content-length"), Some("10"));
    assert!(resp.header("date").is_some(), "the app's date header");
}

async fn passes_through(cloud: Cloud) {
    let app = mock(Duration::from_secs(5)).await;
    let lb = lb(cloud, app.addr, TIMEOUT).await;
    let mut client = RawClient::connect(lb.addr()).await;

    let resp = client.get("/status/500").await;
    assert_app_status(&resp, 500, "Internal Server Error");
    let resp = client.get("/status/404").await;
    assert_app_status(&resp, 404, "Not Found");
    // The app's own 502/503/504 are not the LB's pages.
    let resp = client.get("/status/502").await;
    assert_app_status(&resp, 502, "Bad Gateway");
    let resp = client.get("/status/503").await;
    assert_app_status(&resp, 503, "Service Unavailable");
    let resp = client.get("/status/504").await;
    assert_app_status(&resp, 504, "Gateway Timeout");

    let resp = client.get("/bytes/1048576").await;
    assert_eq!(resp.status, 200);
    assert!(resp.complete);
    assert_eq!(resp.header("content-length"), Some("1048576"));
    assert_eq!(
        resp.header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(resp.body.len(), 1048576);
    assert!(resp.body.iter().all(|&b| b == b'x'));
    assert_eq!(resp.header("x-lbsim-reason"), None);

    // Same client connection, same pooled target connection: all six on one of each.
    assert_eq!(app.requests(), 6);
    assert_eq!(
        app.stats
            .connections
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );

    let stats = lb.stats();
    for (status, n) in [(200, 1), (404, 1), (500, 1), (502, 1), (503, 1), (504, 1)] {
        assert_eq!(
            stats.by_status.get(&status),
            Some(&n),
            "{:?}",
            stats.by_status
        );
    }
    assert_eq!(stats.by_status.len(), 6, "{:?}", stats.by_status);
    assert!(stats.by_cause.is_empty(), "{:?}", stats.by_cause);
}

#[tokio::test]
async fn app_statuses_pass_through_aws() {
    passes_through(Cloud::Aws).await;
}

#[tokio::test]
async fn app_statuses_pass_through_gcp() {
    passes_through(Cloud::GcpClassic).await;
}

#[tokio::test]
async fn gcp_adds_via_to_passed_through_responses() {
    let app = mock(Duration::from_secs(5)).await;
    let lb = lb(Cloud::GcpClassic, app.addr, TIMEOUT).await;
    let mut client = RawClient::connect(lb.addr()).await;
    let resp = client.get("/status/500").await;
    assert_eq!(resp.header("via"), Some("1.1 google"));
    let lb = self::lb(Cloud::Aws, app.addr, TIMEOUT).await;
    let mut client = RawClient::connect(lb.addr()).await;
    let resp = client.get("/status/500").await;
    assert_eq!(resp.header("via"), None);
}
