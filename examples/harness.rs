//! A test harness in a few lines: start the mock app and an AWS ALB in front of it,
//! reproduce the keep-alive 502, then show that raising the app's keep-alive fixes it.
//!
//! Run with `cargo run --example harness`.

use std::net::SocketAddr;
use std::time::Duration;

use lbsim::{Cloud, MockOptions, MockUpstream, RaceWindow, Simulator};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `GET /` on `conn` and returns the status code of the answer.
async fn get(conn: &mut TcpStream) -> std::io::Result<u16> {
    conn.write_all(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n")
        .await?;
    let mut buf = vec![0u8; 4096];
    let n = conn.read(&mut buf).await?;
    let head = String::from_utf8_lossy(&buf[..n]);
    Ok(head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0))
}

async fn two_requests(app_keep_alive: Duration) -> Result<(u16, u16), Box<dyn std::error::Error>> {
    let localhost = SocketAddr::from(([127, 0, 0, 1], 0));
    let app = MockUpstream::start(
        localhost,
        MockOptions {
            keep_alive: app_keep_alive,
            ..MockOptions::default()
        },
    )
    .await?;
    // 300 s ALB idle timeout scaled to 3 s; every stale reuse fails (the race made certain).
    let lb = Simulator::builder(Cloud::Aws)
        .upstream(app.addr)
        .no_health_checks()
        .time_scale(0.01)
        .race_window(RaceWindow::Always)
        .start()
        .await?;
    let mut conn = TcpStream::connect(lb.addr()).await?;
    let first = get(&mut conn).await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second = get(&mut conn).await?;
    lb.shutdown().await;
    Ok((first, second))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (a, b) = two_requests(Duration::from_secs(1)).await?;
    println!("app keep-alive 1 s (shorter than the ALB's 3 s): {a} then {b}");
    let (a, b) = two_requests(Duration::from_secs(4)).await?;
    println!("app keep-alive 4 s (longer than the ALB's 3 s):  {a} then {b}");
    Ok(())
}
