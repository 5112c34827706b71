//! Throughput and latency: requests/s and p50/p99/p99.9 with 32 and 256 keep-alive
//! connections, small and 1 MiB responses, direct to a fast hyper upstream, through lbsim,
//! and through nginx and HAProxy when they are installed; then lbsim's ratios.
//!
//! lbsim runs as a separate process from the release binary, as users run it: it gets
//! its own tokio runtime (2 workers on 2 cores) instead of sharing the load generator's
//! scheduler, which would make the two slow each other down in ways a real deployment
//! never sees, and it stands on the same footing as nginx and HAProxy (also processes).
//!
//! Knobs: `BENCH_SECS` (measured seconds per cell, default 1.5), `BENCH_WARMUP` (default
//! 0.3), `LOADGEN` (`ct2`: two threads with a current_thread runtime each, the default;
//! `mt2`: one multi-thread runtime with 2 workers; `ct1`: one thread),
//! `UPSTREAM_WORKERS` (default 1), `ROUNDS` (repeat the whole matrix; each cell reports
//! its median round, default 1), `TARGETS` (comma list, e.g. `direct,lbsim`), `CONNS`
//! (default `32,256`), `SIZES` (`small`, `1m`, default both).
//!
//! Run: `cargo bench --bench throughput` (or `benches/run.sh`).

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::header::HOST;
use http::Request;
use http_body_util::Empty;
use hyper::client::conn::http1::SendRequest;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Size {
    Small,
    Mib,
}

impl Size {
    fn path(self) -> &'static str {
        match self {
            Size::Small => "/small",
            Size::Mib => "/1m",
        }
    }
    fn len(self) -> u64 {
        match self {
            Size::Small => SMALL_BODY.len() as u64,
            Size::Mib => MIB as u64,
        }
    }
    fn label(self) -> &'static str {
        match self {
            Size::Small => "13 B",
            Size::Mib => "1 MiB",
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum LoadGen {
    /// Two OS threads, each with a current_thread runtime and half the connections.
    Ct2,
    /// One multi-thread runtime with two workers.
    Mt2,
    /// One thread, one current_thread runtime.
    Ct1,
}

#[derive(Default)]
struct WorkerResult {
    latencies_ns: Vec<u64>,
    /// Requests answered in full at any time, warm-up included.
    all_requests: u64,
    /// Requests counted in the measured window.
    requests: u64,
    bytes: u64,
    errors: u64,
}

impl WorkerResult {
    fn merge(&mut self, other: WorkerResult) {
        self.latencies_ns.extend(other.latencies_ns);
        self.all_requests += other.all_requests;
        self.requests += other.requests;
        self.bytes += other.bytes;
        self.errors += other.errors;
    }
}

/// Connections opened at once: lbsim listens with an accept queue of 128 (see
/// RESULTS.md), and a larger burst would lose SYNs and stall a connection for a second.
const CONNECT_BATCH: usize = 32;

type Sender = SendRequest<Empty<Bytes>>;

/// Opens `n` connections, `CONNECT_BATCH` at a time.
async fn open(addr: SocketAddr, n: usize) -> Vec<Sender> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let k = CONNECT_BATCH.min(n - out.len());
        let batch: Vec<_> = (0..k).map(|_| tokio::spawn(connect(addr))).collect();
        for t in batch {
            out.push(t.await.expect("task").expect("connect"));
        }
    }
    out
}

/// One keep-alive connection sending `GET path` back to back until `end`; requests that
/// start after `measure_from` and finish by `end` are counted.
async fn worker(
    addr: SocketAddr,
    sender: Sender,
    size: Size,
    measure_from: Instant,
    end: Instant,
) -> WorkerResult {
    let mut res = WorkerResult {
        latencies_ns: Vec::with_capacity(4096),
        ..WorkerResult::default()
    };
    let mut sender = Some(sender);
    while Instant::now() < end {
        let s = match &mut sender {
            Some(s) => s,
            None => match connect(addr).await {
                Ok(s) => sender.insert(s),
                Err(_) => {
                    res.errors += 1;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
            },
        };
        if s.ready().await.is_err() {
            sender = None;
            res.errors += 1;
            continue;
        }
        let req = Request::get(size.path())
            .header(HOST, "127.0.0.1")
            .body(Empty::new())
            .expect("request");
        let t0 = Instant::now();
        let outcome = async {
            let resp = s.send_request(req).await.map_err(std::io::Error::other)?;
            if resp.status() != 200 {
                return Err(std::io::Error::other(format!("status {}", resp.status())));
            }
            drain(resp.into_body(), None).await
        }
        .await;
        let t1 = Instant::now();
        match outcome {
            Ok(n) if n == size.len() => {
                res.all_requests += 1;
                if t0 >= measure_from && t1 <= end {
                    res.requests += 1;
                    res.bytes += n;
                    res.latencies_ns.push((t1 - t0).as_nanos() as u64);
                }
            }
            _ => {
                res.errors += 1;
                sender = None;
            }
        }
    }
    res
}

async fn drive(
    addr: SocketAddr,
    senders: Vec<Sender>,
    size: Size,
    measure_from: Instant,
    end: Instant,
) -> WorkerResult {
    let tasks: Vec<_> = senders
        .into_iter()
        .map(|s| tokio::spawn(worker(addr, s, size, measure_from, end)))
        .collect();
    let mut total = WorkerResult::default();
    for t in tasks {
        total.merge(t.await.expect("worker task"));
    }
    total
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The measured window, fixed once every connection is open.
fn window(warmup: Duration, measure: Duration) -> (Instant, Instant) {
    let measure_from = Instant::now() + warmup;
    (measure_from, measure_from + measure)
}

/// Opens `conns` connections, then drives them for warm-up + measure; returns the merged
/// result.
fn load(
    gen: LoadGen,
    addr: SocketAddr,
    size: Size,
    conns: usize,
    warmup: Duration,
    measure: Duration,
) -> WorkerResult {
    let one_runtime = |rt: tokio::runtime::Runtime| {
        rt.block_on(async {
            let senders = open(addr, conns).await;
            let (from, end) = window(warmup, measure);
            drive(addr, senders, size, from, end).await
        })
    };
    match gen {
        LoadGen::Ct1 => one_runtime(current_thread()),
        LoadGen::Mt2 => one_runtime(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime"),
        ),
        LoadGen::Ct2 => {
            let half = conns / 2;
            let opened = Arc::new(Barrier::new(2));
            let times = Arc::new(OnceLock::new());
            let threads: Vec<_> = [half, conns - half]
                .into_iter()
                .map(|n| {
                    let opened = opened.clone();
                    let times = times.clone();
                    std::thread::spawn(move || {
                        let rt = current_thread();
                        let senders = rt.block_on(open(addr, n));
                        opened.wait();
                        let (from, end) = *times.get_or_init(|| window(warmup, measure));
                        rt.block_on(drive(addr, senders, size, from, end))
                    })
                })
                .collect();
            let mut total = WorkerResult::default();
            for t in threads {
                total.merge(t.join().expect("load thread"));
            }
            total
        }
    }
}

struct Cell {
    target: &'static str,
    size: Size,
    conns: usize,
    rps: f64,
    mb_s: f64,
    p50: u64,
    p99: u64,
    p999: u64,
    errors: u64,
    /// CPU time of the proxy per request, (user, system) in µs; None for direct.
    cpu_per_req: Option<(f64, f64)>,
}

/// What the load goes to.
struct Target {
    name: &'static str,
    addr: SocketAddr,
    /// The proxy's process, whose CPU time is read before and after each cell.
    pid: Option<u32>,
}

fn measure_cell(
    gen: LoadGen,
    target: &Target,
    size: Size,
    conns: usize,
    warmup: Duration,
    secs: Duration,
) -> Cell {
    let cpu_before = target.pid.map(cpu_us);
    let mut r = load(gen, target.addr, size, conns, warmup, secs);
    let cpu_per_req = target.pid.zip(cpu_before).map(|(pid, (u0, s0))| {
        let (u1, s1) = cpu_us(pid);
        let n = r.all_requests.max(1) as f64;
        ((u1 - u0) as f64 / n, (s1 - s0) as f64 / n)
    });
    r.latencies_ns.sort_unstable();
    let s = secs.as_secs_f64();
    Cell {
        target: target.name,
        size,
        conns,
        rps: r.requests as f64 / s,
        mb_s: r.bytes as f64 / s / 1e6,
        p50: percentile(&r.latencies_ns, 50.0),
        p99: percentile(&r.latencies_ns, 99.0),
        p999: percentile(&r.latencies_ns, 99.9),
        errors: r.errors,
        cpu_per_req,
    }
}

/// The round whose requests/s is the median (so its latencies stay consistent with it).
fn median_round(mut rounds: Vec<Cell>) -> Cell {
    rounds.sort_by(|a, b| a.rps.partial_cmp(&b.rps).expect("no NaN"));
    let mid = (rounds.len() - 1) / 2;
    rounds.swap_remove(mid)
}

fn main() {
    println!("# throughput: keep-alive connections sending requests back to back");
    println!("{}", machine_note());
    let secs = Duration::from_secs_f64(env_f64("BENCH_SECS", 1.5));
    let warmup = Duration::from_secs_f64(env_f64("BENCH_WARMUP", 0.3));
    let rounds = env_f64("ROUNDS", 1.0).max(1.0) as usize;
    let gen = match std::env::var("LOADGEN").as_deref() {
        Ok("mt2") => LoadGen::Mt2,
        Ok("ct1") => LoadGen::Ct1,
        _ => LoadGen::Ct2,
    };
    let upstream_workers = env_f64("UPSTREAM_WORKERS", 1.0) as usize;
    let want = wanted_targets();
    let conns_list: Vec<usize> = std::env::var("CONNS")
        .ok()
        .map(|v| v.split(',').filter_map(|c| c.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![32, 256]);
    let sizes: Vec<Size> = match std::env::var("SIZES").as_deref() {
        Ok("small") => vec![Size::Small],
        Ok("1m") => vec![Size::Mib],
        _ => vec![Size::Small, Size::Mib],
    };
    println!(
        "load generator {gen:?}; upstream: hyper 1.x, {upstream_workers} worker thread(s); \
         {warmup:?} warm-up + {secs:?} measured per cell, {rounds} round(s)"
    );

    let scratch = Scratch::new("throughput");
    let upstream = start_fast_upstream(upstream_workers);
    let mut targets: Vec<Target> = Vec::new();
    if want("direct") {
        targets.push(Target {
            name: "direct",
            addr: upstream.addr,
            pid: None,
        });
    }
    let (proxies, mut procs, notes) = spawn_proxies(upstream.addr, &scratch, &want);
    for ((name, addr), proc) in proxies.into_iter().zip(&procs) {
        targets.push(Target {
            name,
            addr,
            pid: Some(proc.pid()),
        });
    }
    for n in &notes {
        println!("{n}");
    }
    println!();

    let mut cells: Vec<Cell> = Vec::new();
    for &size in &sizes {
        for &conns in &conns_list {
            let mut per_target: Vec<Vec<Cell>> = targets.iter().map(|_| Vec::new()).collect();
            // Rounds interleave the targets so that a burst of load from other jobs on
            // the machine hits all of them alike.
            for _ in 0..rounds {
                for (i, target) in targets.iter().enumerate() {
                    let c = measure_cell(gen, target, size, conns, warmup, secs);
                    eprintln!(
                        "  {:<8} {:>5} {:>4} conns: {:>9.0} req/s  p99 {}",
                        target.name,
                        size.label(),
                        conns,
                        c.rps,
                        fmt_ns(c.p99)
                    );
                    per_target[i].push(c);
                }
            }
            for rounds in per_target {
                cells.push(median_round(rounds));
            }
        }
    }
    for p in &mut procs {
        p.assert_running();
    }
    drop(procs);

    let rows: Vec<Vec<String>> = cells
        .iter()
        .map(|c| {
            vec![
                c.target.to_string(),
                c.size.label().to_string(),
                c.conns.to_string(),
                format!("{:.0}", c.rps),
                format!("{:.0}", c.mb_s),
                fmt_ns(c.p50),
                fmt_ns(c.p99),
                fmt_ns(c.p999),
                c.errors.to_string(),
                match c.cpu_per_req {
                    Some((u, s)) => format!("{:.1} ({:.0} % sys)", u + s, s / (u + s) * 100.0),
                    None => "-".into(),
                },
            ]
        })
        .collect();
    print_table(
        &[
            "target",
            "body",
            "conns",
            "req/s",
            "MB/s",
            "p50",
            "p99",
            "p99.9",
            "errors",
            "proxy CPU µs/req",
        ],
        &rows,
    );
    println!();

    let find = |t: &str, size: Size, conns: usize| {
        cells
            .iter()
            .find(|c| c.target == t && c.size == size && c.conns == conns)
    };
    let mut ratio_rows = Vec::new();
    for &size in &sizes {
        for &conns in &conns_list {
            let Some(lb) = find("lbsim", size, conns) else {
                continue;
            };
            let mut row = vec![size.label().to_string(), conns.to_string()];
            row.push(match find("direct", size, conns) {
                Some(d) => format!("{:.2}×", lb.rps / d.rps),
                None => "-".into(),
            });
            row.push(match find("haproxy", size, conns) {
                Some(h) => format!("{:.2}× {}", lb.rps / h.rps, verdict(lb.rps >= h.rps)),
                None => "- (no haproxy)".into(),
            });
            row.push(match find("nginx", size, conns) {
                Some(n) => format!("{:.2}× {}", lb.rps / n.rps, verdict(lb.rps >= 1.2 * n.rps)),
                None => "- (no nginx)".into(),
            });
            row.push(match find("haproxy", size, conns) {
                Some(h) => format!(
                    "{} vs {} {}",
                    fmt_ns(lb.p99),
                    fmt_ns(h.p99),
                    verdict(lb.p99 <= h.p99)
                ),
                None => "-".into(),
            });
            let cpu = |c: Option<&Cell>| c.and_then(|c| c.cpu_per_req).map(|(u, s)| u + s);
            row.push(
                match (
                    cpu(Some(lb)),
                    cpu(find("haproxy", size, conns)),
                    cpu(find("nginx", size, conns)),
                ) {
                    (Some(l), h, n) => format!(
                        "{l:.1} / {} / {}",
                        h.map_or("-".into(), |h| format!("{h:.1}")),
                        n.map_or("-".into(), |n| format!("{n:.1}"))
                    ),
                    _ => "-".into(),
                },
            );
            ratio_rows.push(row);
        }
    }
    if !ratio_rows.is_empty() {
        println!("targets: req/s lbsim ≥ 1.0× HAProxy and ≥ 1.2× nginx; p99 lbsim ≤ HAProxy");
        print_table(
            &[
                "body",
                "conns",
                "lbsim/direct",
                "lbsim/haproxy (≥1.0)",
                "lbsim/nginx (≥1.2)",
                "p99 lbsim vs haproxy",
                "CPU µs/req lbsim / haproxy / nginx",
            ],
            &ratio_rows,
        );
    }
    println!(
        "upstream served {} requests on {} connections",
        upstream
            .stats
            .requests
            .load(std::sync::atomic::Ordering::Relaxed),
        upstream
            .stats
            .connections
            .load(std::sync::atomic::Ordering::Relaxed)
    );
}
