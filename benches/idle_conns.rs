//! Memory per idle client connection: open 10,000 keep-alive connections through lbsim
//! (a child process from the release binary), one request on each, keep them all open,
//! and read lbsim's resident set size (/proc/<pid>/status VmRSS) as they pile up. nginx
//! and HAProxy, when installed, get the same treatment afterwards for comparison (their
//! RSS summed over master and workers).
//!
//! Needs `ulimit -n` above 10,000 + a few hundred (benches/run.sh raises it); with a lower
//! limit it opens as many as the limit allows and says so. HAProxy needs two descriptors
//! per connection and gets what half the limit allows.
//!
//! Knobs: `IDLE_CONNS` (default 10000), `TARGETS` (e.g. `lbsim`). Run:
//! `cargo bench --bench idle_conns`.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::header::HOST;
use http::Request;
use http_body_util::Empty;
use hyper::client::conn::http1::SendRequest;

/// Requests in flight at once while opening connections; below lbsim's accept queue
/// of 128, and it bounds how many upstream connections a proxy needs.
const BATCH: usize = 100;
/// File descriptors kept free for everything else (upstream side, runtime, logs).
const FD_MARGIN: u64 = 300;
/// Target: resident memory per idle client connection.
const TARGET_KIB: f64 = 16.0;

async fn open_one(addr: SocketAddr) -> std::io::Result<SendRequest<Empty<Bytes>>> {
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

/// What one proxy showed.
struct Outcome {
    name: &'static str,
    conns: usize,
    still_open: usize,
    base_kib: u64,
    end_kib: u64,
    failures: usize,
}

impl Outcome {
    fn per_conn(&self) -> f64 {
        self.end_kib.saturating_sub(self.base_kib) as f64 / self.conns.max(1) as f64
    }
}

/// Opens `n` connections through `proc` at `addr` in four steps, printing RSS after each.
async fn measure(name: &'static str, proc: &Proc, addr: SocketAddr, n: usize) -> Outcome {
    // Warm-up: worker threads, the upstream pool, the first allocations.
    for _ in 0..BATCH {
        open_one(addr).await.expect("warm-up request");
    }
    settle().await;
    let base = proc.rss_tree_kib();
    let mut rows = vec![vec![
        "0".to_string(),
        base.to_string(),
        "-".into(),
        "-".into(),
    ]];
    let mut open: Vec<SendRequest<Empty<Bytes>>> = Vec::with_capacity(n);
    let mut failures = 0usize;
    let steps = 4;
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
                            panic!("{name}: too many failed connections, last: {e}");
                        }
                    }
                }
            }
        }
        settle().await;
        let rss = proc.rss_tree_kib();
        rows.push(vec![
            open.len().to_string(),
            rss.to_string(),
            format!("{}", rss as i64 - base as i64),
            format!("{:.1}", rss.saturating_sub(base) as f64 / open.len() as f64),
        ]);
    }
    let still_open = open.iter().filter(|s| !s.is_closed()).count();
    let end = proc.rss_tree_kib();
    println!("{name}:");
    print_table(
        &["client conns", "VmRSS KiB", "Δ KiB", "KiB per conn"],
        &rows,
    );
    println!();
    drop(open);
    Outcome {
        name,
        conns: n,
        still_open,
        base_kib: base,
        end_kib: end,
        failures,
    }
}

fn main() {
    println!("# idle_conns: memory per idle keep-alive client connection");
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
    let want = wanted_targets();
    let (targets, procs, notes) = spawn_proxies(upstream.addr, &scratch, &want);
    for note in &notes {
        println!("{note}");
    }
    println!();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut outcomes = Vec::new();
    for ((name, addr), proc) in targets.iter().zip(&procs) {
        let cap = if *name == "haproxy" {
            (haproxy_maxconn() as usize).saturating_sub(BATCH + 50)
        } else {
            usize::MAX
        };
        let n = n.min(cap);
        let upstream_before = upstream
            .stats
            .connections
            .load(std::sync::atomic::Ordering::Relaxed);
        let o = rt.block_on(measure(name, proc, *addr, n));
        let upstream_conns = upstream
            .stats
            .connections
            .load(std::sync::atomic::Ordering::Relaxed)
            - upstream_before;
        println!(
            "{name}: {} client connections, {} still open at the end; {upstream_conns} \
             upstream connections opened{}",
            o.conns,
            o.still_open,
            if o.failures > 0 {
                format!("; {} connection attempts failed", o.failures)
            } else {
                String::new()
            }
        );
        println!();
        outcomes.push(o);
        // Let the proxy close the dropped connections before the next one is measured.
        std::thread::sleep(Duration::from_millis(300));
    }
    drop(procs);

    let rows: Vec<Vec<String>> = outcomes
        .iter()
        .map(|o| {
            vec![
                o.name.to_string(),
                o.conns.to_string(),
                o.base_kib.to_string(),
                o.end_kib.to_string(),
                format!("{:.1}", o.per_conn()),
            ]
        })
        .collect();
    print_table(
        &[
            "proxy",
            "idle client conns",
            "RSS before KiB",
            "RSS after KiB",
            "KiB per conn",
        ],
        &rows,
    );
    println!();
    if let Some(lb) = outcomes.iter().find(|o| o.name == "lbsim") {
        println!(
            "lbsim RSS per idle client connection: {:.1} KiB (target < {TARGET_KIB} KiB) {}",
            lb.per_conn(),
            verdict(lb.per_conn() < TARGET_KIB)
        );
    }
}
