//! Memory per idle client connection: open 10,000 keep-alive connections through lbsim
//! (a child process from the release binary), one request on each, keep them all open,
//! and read lbsim's resident set size (/proc/<pid>/status VmRSS) as they pile up.
//!
//! Needs `ulimit -n` above 10,000 + a few hundred (benches/run.sh raises it); with a lower
//! limit it opens as many as the limit allows and says so.
//!
//! Knobs: `IDLE_CONNS` (default 10000). Run: `cargo bench --bench idle_conns`.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::header::HOST;
use http::Request;
use http_body_util::Empty;
use hyper::client::conn::http1::SendRequest;

/// Requests in flight at once while opening connections; also bounds how many upstream
/// connections lbsim needs.
const BATCH: usize = 100;
/// File descriptors kept free for everything else (upstream side, runtime, logs).
const FD_MARGIN: u64 = 300;
/// Target: resident memory per idle client connection.
const TARGET_KIB: f64 = 16.0;

async fn open_one(addr: std::net::SocketAddr) -> std::io::Result<SendRequest<Empty<Bytes>>> {
    let mut s = connect(addr).await?;
    let req = Request::get("/small")
        .header(HOST, "127.0.0.1")
        .body(Empty::new())
        .expect("request");
    let resp = s.send_request(req).await.map_err(std::io::Error::other)?;
    if resp.status() != 200 {
        return Err(std::io::Error::other(format!("status {}", resp.status())));
    }
    drain(resp.into_body(), None).await?;
    Ok(s)
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

fn main() {
    println!("# idle_conns: lbsim memory per idle keep-alive client connection");
    println!("{}", machine_note());
    let wanted = env_f64("IDLE_CONNS", 10_000.0) as u64;
    let limit = open_files_limit();
    let n = wanted.min(limit.saturating_sub(FD_MARGIN + BATCH as u64)) as usize;
    if (n as u64) < wanted {
        println!(
            "note: ulimit -n is {limit}: opening {n} connections instead of {wanted} \
             (raise it with `ulimit -n 65536`, as benches/run.sh does)"
        );
    } else {
        println!("ulimit -n {limit}: opening {n} connections");
    }

    let scratch = Scratch::new("idle");
    let upstream = start_fast_upstream(1);
    let (lbsim, addr) = spawn_lbsim(upstream.addr, &[], &scratch);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");

    rt.block_on(async {
        // Warm-up: runtime threads, the upstream pool, the first allocations.
        for _ in 0..BATCH {
            open_one(addr).await.expect("warm-up request");
        }
        settle().await;
        let base = lbsim.rss_kib();
        let mut rows = vec![vec![
            "0".to_string(),
            format!("{base}"),
            "-".into(),
            "-".into(),
            lbsim.fd_count().to_string(),
        ]];
        let mut open: Vec<SendRequest<Empty<Bytes>>> = Vec::with_capacity(n);
        let steps = 4;
        let mut failures = 0usize;
        for step in 1..=steps {
            let goal = n * step / steps;
            while open.len() < goal {
                let k = BATCH.min(goal - open.len());
                let batch: Vec<_> = (0..k).map(|_| tokio::spawn(open_one(addr))).collect();
                for t in batch {
                    match t.await.expect("task") {
                        Ok(s) => open.push(s),
                        Err(e) => {
                            failures += 1;
                            if failures > 10 {
                                panic!("too many failed connections, last: {e}");
                            }
                        }
                    }
                }
            }
            settle().await;
            let rss = lbsim.rss_kib();
            let per = (rss - base.min(rss)) as f64 / open.len() as f64;
            rows.push(vec![
                open.len().to_string(),
                rss.to_string(),
                format!("{}", rss as i64 - base as i64),
                format!("{per:.1}"),
                lbsim.fd_count().to_string(),
            ]);
        }
        let still_open = open.iter().filter(|s| !s.is_closed()).count();
        let rss = lbsim.rss_kib();
        print_table(
            &[
                "client conns",
                "lbsim VmRSS KiB",
                "Δ KiB",
                "KiB per conn",
                "lbsim fds",
            ],
            &rows,
        );
        let per = (rss.saturating_sub(base)) as f64 / open.len() as f64;
        println!();
        println!(
            "{} connections open through lbsim, {still_open} still open at the end; \
             lbsim opened {} upstream connections",
            open.len(),
            upstream
                .stats
                .connections
                .load(std::sync::atomic::Ordering::Relaxed)
        );
        println!(
            "RSS per idle client connection: {per:.1} KiB (target < {TARGET_KIB} KiB) {}",
            verdict(per < TARGET_KIB)
        );
        if failures > 0 {
            println!("note: {failures} connection attempts failed and were not counted");
        }
        drop(open);
    });
    drop(lbsim);
}
