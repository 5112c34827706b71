//! A flood of malformed requests breaks nothing. In a file of its own: it counts the
//! process's open file descriptors, which tests running beside it would disturb.

mod support;

use std::time::Duration;

use lbsim::Cloud;
use support::*;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

fn fd_list() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| {
                    std::fs::read_link(e.path())
                        .map(|p| p.display().to_string())
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[tokio::test]
async fn a_thousand_malformed_requests_break_nothing() {
    let app = mock(Duration::from_secs(5)).await;
    let lb = lb(Cloud::Aws, app.addr, Duration::from_secs(5)).await;
    let baseline = open_fds();
    let bad: [&[u8]; 5] = [
        b"GET / HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n",
        b"\x00\x01\x02\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"GET /\x7f HTTP/1.1\r\n\r\n",
    ];
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..20usize {
        let addr = lb.addr();
        tasks.spawn(async move {
            for i in 0..50usize {
                let mut client = RawClient::connect(addr).await;
                client.send(bad[(worker + i) % bad.len()]).await;
                let resp = client.response().await.expect("a page");
                assert!(resp.status == 400 || resp.status == 501, "{}", resp.status);
                assert!(client.closed_within(Duration::from_secs(2)).await);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    assert_eq!(lb.stats().by_status.values().sum::<u64>(), 1000);
    let mut client = RawClient::connect(lb.addr()).await;
    assert_eq!(client.get("/").await.status, 200);
    drop(client);
    assert_eq!(app.requests(), 1);
    // Every rejected connection's socket is gone: back to baseline (the valid request's
    // pooled target connection may stay open, so allow it and its peer).
    let mut now = open_fds();
    for _ in 0..100 {
        if now <= baseline + 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        now = open_fds();
    }
    assert!(
        now <= baseline + 2,
        "fds: baseline {baseline}, now {now}: {:?}",
        fd_list()
    );
}
