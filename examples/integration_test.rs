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

    /// Polls `cond` every 10 ms until it holds; fails the test after 5 s.
    async fn until(what: &str, cond: impl Fn() -> bool) {
        let start = std::time::Instant::now();
        while !cond() {
            assert!(start.elapsed() < Duration::from_secs(5), "never: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The keep-alive rule: an app that closes idle connections before the ALB does gets
    /// 502s; one that keeps them open longer never does, because the ALB closes first.
    /// Scaled 1000× faster: the ALB's 300 s idle timeout (its keep-alive towards the app)
    /// takes 300 ms; the race is made certain with `RaceWindow::Always`.
    #[tokio::test]
    async fn app_keep_alive_must_outlast_the_alb() {
        let alb = |app: &MockUpstream| {
            Simulator::builder(Cloud::Aws)
                .upstream(app.addr)
                .no_health_checks()
                .time_scale(0.001)
                .race_window(RaceWindow::Always)
                .start()
        };

        // Too short (100 ms < 300 ms): once the app has closed the idle connection, the
        // ALB still reuses it, and the request dies under it: 502.
        let short = app(Duration::from_millis(100)).await;
        let lb = alb(&short).await.unwrap();
        let mut conn = TcpStream::connect(lb.addr()).await.unwrap();
        assert_eq!(get(&mut conn, "/").await.0, 200);
        until("the app closes its idle connection", || {
            short.idle_closes() == 1
        })
        .await;
        let (status, head) = get(&mut conn, "/").await;
        assert_eq!(status, 502, "{head}");
        assert!(
            head.contains("Server: awselb/2.0"),
            "the ALB's page: {head}"
        );
        // The counters name the cause: the keep-alive race, not an app that crashed (on
        // AWS both are logged as target_closed_connection).
        assert_eq!(
            lb.stats().count(Reason::KeepAliveRace),
            1,
            "{:?}",
            lb.stats()
        );
        lb.shutdown().await;

        // Long enough (400 ms > 300 ms): the ALB closes its idle connection first, so
        // the next request opens a fresh one, and the app never closed one itself.
        let long = app(Duration::from_millis(400)).await;
        let lb = alb(&long).await.unwrap();
        let mut conn = TcpStream::connect(lb.addr()).await.unwrap();
        assert_eq!(get(&mut conn, "/").await.0, 200);
        until("the ALB closes its idle connection to the app", || {
            lb.idle_connections(long.addr) == 0
        })
        .await;
        assert_eq!(long.idle_closes(), 0, "the app closed first");
        // The ALB closed the idle client connection too (same idle timeout): a new one.
        let mut conn = TcpStream::connect(lb.addr()).await.unwrap();
        let (status, head) = get(&mut conn, "/").await;
        assert_eq!(status, 200, "{head}");
        assert_eq!(long.connections(), 2, "a fresh connection to the app");
        assert_eq!(lb.stats().count(Reason::KeepAliveRace), 0);
        lb.shutdown().await;
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
