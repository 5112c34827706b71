//! An integration test of your own, written against lbsim's library API: what a team
//! adds to its repository to check, in CI, that its app survives the load balancer.
//!
//! `cargo test --example integration_test` runs it (Cargo.toml marks it `test = true`,
//! so plain `cargo test` runs it too). Replace the mock app with your own server's
//! address to test the real thing.

fn main() {
    eprintln!("this example is a test: cargo test --example integration_test");
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use lbsim::{Cloud, MockOptions, MockUpstream, RaceWindow, Reason, Simulator};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// One `GET path` on `conn`; returns the status line and the whole head.
    async fn get(conn: &mut TcpStream, path: &str) -> (u16, String) {
        let req = format!("GET {path} HTTP/1.1\r\nHost: app\r\n\r\n");
        conn.write_all(req.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 8192];
        let n = conn.read(&mut buf).await.unwrap();
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, text)
    }

    async fn app(keep_alive: Duration) -> MockUpstream {
        let opts = MockOptions {
            keep_alive,
            ..MockOptions::default()
        };
        MockUpstream::start("127.0.0.1:0".parse().unwrap(), opts)
            .await
            .unwrap()
    }

    /// The keep-alive rule: an app that closes idle connections before the ALB does gets
    /// 502s. Made certain with `RaceWindow::Always`; scaled 100× faster.
    #[tokio::test]
    async fn app_keep_alive_must_outlast_the_alb() {
        for (app_keep_alive, expected) in
            [(Duration::from_secs(1), 502), (Duration::from_secs(4), 200)]
        {
            let app = app(app_keep_alive).await;
            let lb = Simulator::builder(Cloud::Aws)
                .upstream(app.addr)
                .no_health_checks()
                .time_scale(0.01) // ALB idle timeout 300 s -> 3 s
                .race_window(RaceWindow::Always)
                .start()
                .await
                .unwrap();
            let mut conn = TcpStream::connect(lb.addr()).await.unwrap();
            assert_eq!(get(&mut conn, "/").await.0, 200);
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let (status, head) = get(&mut conn, "/").await;
            assert_eq!(
                status, expected,
                "app keep-alive {app_keep_alive:?}: {head}"
            );
            // The counters name the cause: the keep-alive race, not an app that crashed
            // (on AWS both are logged as target_closed_connection).
            let races = lb.stats().count(Reason::KeepAliveRace);
            assert_eq!(races, u64::from(expected == 502), "{:?}", lb.stats());
            lb.shutdown().await;
        }
    }

    /// A streaming endpoint must finish within GCP's end-to-end backend timeout, however
    /// steadily it sends.
    #[tokio::test]
    async fn streams_must_finish_within_the_gcp_backend_timeout() {
        let app = app(Duration::from_secs(5)).await;
        let lb = Simulator::builder(Cloud::GcpClassic)
            .upstream(app.addr)
            .no_health_checks()
            .backend_timeout(Duration::from_millis(500))
            .start()
            .await
            .unwrap();
        let mut conn = TcpStream::connect(lb.addr()).await.unwrap();
        conn.write_all(b"GET /stream/10?interval=0.1 HTTP/1.1\r\nHost: app\r\n\r\n")
            .await
            .unwrap();
        let mut received = Vec::new();
        conn.read_to_end(&mut received).await.unwrap();
        let text = String::from_utf8_lossy(&received);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(
            !text.contains("chunk 9"),
            "the stream was cut at the deadline: {text}"
        );
        assert_eq!(lb.stats().count(Reason::TargetTimeout), 1);
    }
}
