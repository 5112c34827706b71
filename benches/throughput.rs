//! Throughput and latency: requests/s and p50/p99/p99.9 with 32 and 256 keep-alive
//! connections, small and 1 MiB responses, direct to a fast hyper upstream, through lbsim,
//! and through nginx and HAProxy when they are installed; then lbsim's ratios. Each cell
//! also reads the proxy's CPU time (/proc/<pid>/stat, workers included) and divides it by
//! the requests served: CPU per request is far steadier than requests/s on a shared
//! machine. A fifth target, `hyper-bare`, is a bare hyper proxy with lbsim's shape (this
//! bench binary started again as a child process): the floor of that design.
//!
//! lbsim runs as a separate process from the release binary, as users run it: it gets
//! its own tokio runtime (2 workers on 2 cores) instead of sharing the load generator's
//! scheduler, which would make the two slow each other down in ways a real deployment
//! never sees, and it stands on the same footing as nginx and HAProxy (also processes).
//!
//! The load generator opens its connections 32 at a time before the clock starts (lbsim's
//! accept queue is 128), then each connection sends requests back to back; requests that
//! start after the warm-up and end before the deadline are counted.
//!
//! Knobs: `BENCH_SECS` (measured seconds per cell, default 1.2), `BENCH_WARMUP` (default
//! 0.3), `LOADGEN` (`ct2`: two threads with a current_thread runtime each, the default,
//! the steadiest of the three; `mt2`: one multi-thread runtime with 2 workers; `ct1`: one
//! thread), `UPSTREAM_WORKERS` (default 1), `ROUNDS` (repeat the whole matrix, targets
//! interleaved; each cell reports its median round and the median CPU per request,
//! default 1), `TARGETS` (comma list of direct, lbsim, nginx, haproxy, hyper-bare),
//! `CONNS` (default `32,256`), `SIZES` (`small`, `1m`, default both), `NGINX_BUFFERING`,
//! `HAPROXY_SPLICE` (see benches/common/mod.rs), `BARE_CT=1` (hyper-bare runs one
//! current_thread runtime per core, each with its own `SO_REUSEPORT` listener and pool,
//! instead of one 2-worker runtime).
//!
//! Then the peer run of issue #14 (module `peers` below): `wrk -t1` through HAProxy, nginx
//! and lbsim (AWS and GCP) in front of one nginx origin returning 6 bytes, with the ratios
//! to HAProxy and nginx. It needs wrk and nginx; `PEERS=0` skips it, `PEERS=only` runs it
//! alone, `PEER_SECS` and `PEER_ROUNDS` set its length.
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

/// The round whose requests/s is the median (so its latencies stay consistent with it),
/// with the median CPU per request of all rounds.
fn median_round(mut rounds: Vec<Cell>) -> Cell {
    let cpu: Vec<(f64, f64)> = rounds.iter().filter_map(|c| c.cpu_per_req).collect();
    rounds.sort_by(|a, b| a.rps.partial_cmp(&b.rps).expect("no NaN"));
    let mid = (rounds.len() - 1) / 2;
    let mut cell = rounds.swap_remove(mid);
    if !cpu.is_empty() {
        let total: Vec<f64> = cpu.iter().map(|(u, s)| u + s).collect();
        let med = median(&total);
        // Keep the user/system split of the round closest to the median.
        let (u, s) = cpu
            .iter()
            .min_by(|a, b| {
                ((a.0 + a.1) - med)
                    .abs()
                    .partial_cmp(&((b.0 + b.1) - med).abs())
                    .expect("no NaN")
            })
            .copied()
            .expect("not empty");
        cell.cpu_per_req = Some((u, s));
    }
    cell
}

/// A bare hyper 1.x reverse proxy with lbsim's shape and none of its logic: a hyper
/// server connection per client, a pool of hyper client connections to the upstream,
/// the response body handed through. It runs as a separate process (this bench binary
/// started again with `LBSIM_BENCH_ROLE=bare-proxy`), on a 2-worker runtime like lbsim.
/// Its CPU per request is the floor of that design: what lbsim adds is above it.
mod bare {
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::pin::Pin;
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll};

    use bytes::Bytes;
    use http::{Request, Response, StatusCode};
    use http_body::{Body, Frame, SizeHint};
    use http_body_util::{Either, Empty};
    use hyper::body::Incoming;
    use hyper::client::conn::http1::SendRequest;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use tokio::net::{TcpListener, TcpStream};

    type Pool = Arc<Mutex<Vec<SendRequest<Incoming>>>>;

    /// The response body; gives the upstream connection back to the pool when done.
    struct Back {
        inner: Incoming,
        sender: Option<SendRequest<Incoming>>,
        pool: Pool,
    }

    impl Body for Back {
        type Data = Bytes;
        type Error = hyper::Error;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
            Pin::new(&mut self.inner).poll_frame(cx)
        }
        fn is_end_stream(&self) -> bool {
            self.inner.is_end_stream()
        }
        fn size_hint(&self) -> SizeHint {
            self.inner.size_hint()
        }
    }

    impl Drop for Back {
        fn drop(&mut self) {
            if let Some(s) = self.sender.take() {
                if !s.is_closed() && self.inner.is_end_stream() {
                    self.pool.lock().unwrap_or_else(|e| e.into_inner()).push(s);
                }
            }
        }
    }

    type Answer = Response<Either<Back, Empty<Bytes>>>;

    async fn forward(
        req: Request<Incoming>,
        upstream: SocketAddr,
        pool: Pool,
    ) -> Result<Answer, Infallible> {
        let bad_gateway = || {
            let mut r = Response::new(Either::Right(Empty::new()));
            *r.status_mut() = StatusCode::BAD_GATEWAY;
            r
        };
        let pooled = pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut sender = match pooled {
            Some(s) => s,
            None => {
                let Ok(stream) = TcpStream::connect(upstream).await else {
                    return Ok(bad_gateway());
                };
                let _ = stream.set_nodelay(true);
                let Ok((s, conn)) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
                else {
                    return Ok(bad_gateway());
                };
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                s
            }
        };
        if sender.ready().await.is_err() {
            return Ok(bad_gateway());
        }
        match sender.send_request(req).await {
            Ok(resp) => {
                let (parts, inner) = resp.into_parts();
                let body = Back {
                    inner,
                    sender: Some(sender),
                    pool,
                };
                Ok(Response::from_parts(parts, Either::Left(body)))
            }
            Err(_) => Ok(bad_gateway()),
        }
    }

    /// One current_thread runtime per core, each with its own listener (SO_REUSEPORT)
    /// and pool: no task ever wakes another core.
    fn run_per_core(listen: SocketAddr, upstream: SocketAddr) {
        let threads: Vec<_> = (0..2)
            .map(|_| {
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("runtime");
                    rt.block_on(async move {
                        let sock = tokio::net::TcpSocket::new_v4().expect("socket");
                        sock.set_reuseaddr(true).expect("reuseaddr");
                        sock.set_reuseport(true).expect("reuseport");
                        sock.bind(listen).expect("bind");
                        accept_forever(sock.listen(1024).expect("listen"), upstream).await
                    });
                })
            })
            .collect();
        for t in threads {
            let _ = t.join();
        }
    }

    /// Serves forever on `listen`.
    pub fn run(listen: SocketAddr, upstream: SocketAddr) {
        if std::env::var("BARE_CT").as_deref() == Ok("1") {
            run_per_core(listen, upstream);
            return;
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = TcpListener::bind(listen).await.expect("bind");
            accept_forever(listener, upstream).await
        });
    }

    /// Serves every connection `listener` accepts, with one pool for all of them.
    async fn accept_forever(listener: TcpListener, upstream: SocketAddr) {
        let pool: Pool = Arc::default();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let pool = pool.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| forward(req, upstream, pool.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }
}

/// Starts the bare hyper proxy as a child process in front of `upstream`.
fn spawn_bare_proxy(upstream: SocketAddr, scratch: &Scratch) -> (Proc, SocketAddr) {
    let listen = free_addr();
    let mut cmd = std::process::Command::new(std::env::current_exe().expect("own path"));
    cmd.env("LBSIM_BENCH_ROLE", "bare-proxy")
        .env("BARE_LISTEN", listen.to_string())
        .env("BARE_UPSTREAM", upstream.to_string());
    let mut p =
        Proc::spawn("hyper-bare", &mut cmd, &scratch.path("bare.log")).expect("spawn bare proxy");
    p.wait_listening(listen);
    (p, listen)
}

fn main() {
    if std::env::var("LBSIM_BENCH_ROLE").as_deref() == Ok("bare-proxy") {
        let addr = |k: &str| {
            std::env::var(k)
                .expect("address")
                .parse()
                .expect("socket address")
        };
        bare::run(addr("BARE_LISTEN"), addr("BARE_UPSTREAM"));
        return;
    }
    let conns_list: Vec<usize> = std::env::var("CONNS")
        .ok()
        .map(|v| v.split(',').filter_map(|c| c.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![32, 256]);
    let peers = std::env::var("PEERS").unwrap_or_default();
    if peers == "only" {
        println!("{}", machine_note());
        peers::run(&conns_list);
        return;
    }
    println!("# throughput: keep-alive connections sending requests back to back");
    println!("{}", machine_note());
    let secs = Duration::from_secs_f64(env_f64("BENCH_SECS", 1.2));
    let warmup = Duration::from_secs_f64(env_f64("BENCH_WARMUP", 0.3));
    let rounds = env_f64("ROUNDS", 1.0).max(1.0) as usize;
    let gen = match std::env::var("LOADGEN").as_deref() {
        Ok("mt2") => LoadGen::Mt2,
        Ok("ct1") => LoadGen::Ct1,
        _ => LoadGen::Ct2,
    };
    let upstream_workers = env_f64("UPSTREAM_WORKERS", 1.0) as usize;
    let want = wanted_targets();
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
    if want("hyper-bare") {
        let (p, addr) = spawn_bare_proxy(upstream.addr, &scratch);
        println!(
            "hyper-bare: a bare hyper proxy with lbsim's shape and none of its logic (this \
             bench binary, 2 workers), for the floor of that design"
        );
        targets.push(Target {
            name: "hyper-bare",
            addr,
            pid: Some(p.pid()),
        });
        procs.push(p);
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
                        "  {:<10} {:>5} {:>4} conns: {:>9.0} req/s  p99 {:>9}  CPU {} µs/req",
                        target.name,
                        size.label(),
                        conns,
                        c.rps,
                        fmt_ns(c.p99),
                        c.cpu_per_req
                            .map_or("-".to_string(), |(u, s)| format!("{:.1}", u + s))
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
            let cpu = |t: &str| {
                find(t, size, conns)
                    .and_then(|c| c.cpu_per_req)
                    .map_or("-".to_string(), |(u, s)| format!("{:.1}", u + s))
            };
            row.push(format!(
                "{} / {} / {} / {}",
                cpu("lbsim"),
                cpu("haproxy"),
                cpu("nginx"),
                cpu("hyper-bare")
            ));
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
                "CPU µs/req lbsim / haproxy / nginx / hyper-bare",
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
    if peers != "0" {
        peers::run(&conns_list);
    }
}

/// The peer run of issue #14, as a new user would measure it: `wrk -t1` against one
/// nginx origin (1 worker) returning 6 bytes, through HAProxy (`nbthread 2`,
/// `http-reuse always`), nginx (`worker_processes 2`, upstream keepalive 64), and lbsim
/// `--cloud aws` and `--cloud gcp` (2 tokio workers); 32 and 256 connections. Per target:
/// req/s, CPU µs per request (the proxy's utime+stime, workers included, over the
/// requests wrk completed) and wrk's p99; then each lbsim's ratios to HAProxy and nginx
/// from the same run, with the targets (CPU ≤ both, req/s ≥ 1.0× both, p99 ≤
/// HAProxy's).
///
/// Runs after the main matrix when wrk and nginx are installed (`PEERS=0` skips it,
/// `PEERS=only` runs it alone). Knobs: `PEER_SECS` (wrk's `-d`, default 4), `PEER_ROUNDS`
/// (default 1; targets interleaved; the round with the median req/s is shown, with the
/// median CPU per request of all rounds), `CONNS`.
mod peers {
    use std::net::SocketAddr;
    use std::path::Path;
    use std::process::Command;
    use std::time::Duration;

    use crate::common::*;

    /// What wrk reported for one run, and the proxy's CPU time over it.
    pub struct Run {
        /// The proxy's name in the tables.
        pub target: &'static str,
        /// wrk's `-c`.
        pub conns: usize,
        /// wrk's `Requests/sec`.
        pub rps: f64,
        /// wrk's 99th percentile latency, in µs.
        pub p99_us: f64,
        /// Requests wrk completed (the divisor of the CPU per request).
        pub requests: u64,
        /// Non-2xx answers and socket errors wrk counted.
        pub errors: u64,
        pub cpu_us_per_req: f64,
    }

    /// A latency as wrk prints it (`812.00us`, `1.25ms`, `2.01s`), in µs.
    fn wrk_duration_us(text: &str) -> Option<f64> {
        let split = text.find(|c: char| c.is_ascii_alphabetic())?;
        let (number, unit) = text.split_at(split);
        let n: f64 = number.parse().ok()?;
        Some(match unit {
            "us" => n,
            "ms" => n * 1e3,
            "s" => n * 1e6,
            "m" => n * 60e6,
            _ => return None,
        })
    }

    /// Req/s, p99 (µs), requests completed and errors from wrk's `--latency` output.
    pub fn parse_wrk(out: &str) -> Option<(f64, f64, u64, u64)> {
        let mut rps = None;
        let mut p99 = None;
        let mut requests = None;
        let mut errors = 0;
        for line in out.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["Requests/sec:", n] => rps = n.parse().ok(),
                ["99%", d] => p99 = wrk_duration_us(d),
                [n, "requests", "in", ..] => requests = n.parse().ok(),
                ["Non-2xx", "or", "3xx", "responses:", n] => errors += n.parse::<u64>().ok()?,
                ["Socket", "errors:", rest @ ..] => {
                    // "connect 0, read 0, write 0, timeout 0"
                    errors += rest
                        .iter()
                        .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                        .sum::<u64>();
                }
                _ => {}
            }
        }
        Some((rps?, p99?, requests?, errors))
    }

    fn wrk(
        wrk: &Path,
        target: &'static str,
        addr: SocketAddr,
        pid: u32,
        conns: usize,
        secs: u32,
    ) -> Run {
        let (u0, s0) = cpu_us(pid);
        let out = Command::new(wrk)
            .args([
                "-t1",
                &format!("-c{conns}"),
                &format!("-d{secs}s"),
                "--latency",
            ])
            .arg(format!("http://{addr}/"))
            .output()
            .expect("run wrk");
        let (u1, s1) = cpu_us(pid);
        let text = String::from_utf8_lossy(&out.stdout);
        let (rps, p99_us, requests, errors) = parse_wrk(&text).unwrap_or_else(|| {
            panic!(
                "wrk output not understood:\n{text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        Run {
            target,
            conns,
            rps,
            p99_us,
            requests,
            errors,
            cpu_us_per_req: (u1 - u0 + s1 - s0) as f64 / requests.max(1) as f64,
        }
    }

    /// The origin: nginx, 1 worker, answering every request with 6 bytes.
    fn origin(nginx: &Path, scratch: &Scratch) -> (Proc, SocketAddr) {
        spawn_nginx_with(
            nginx,
            scratch,
            "origin",
            1,
            "    server {\n        listen {listen};\n        location / { return 200 \"hello\\n\"; }\n    }\n",
        )
    }

    fn lbsim(cloud: &str, upstream: SocketAddr, scratch: &Scratch) -> (Proc, SocketAddr) {
        let listen = free_addr();
        let mut cmd = lbsim_command_for(cloud, upstream, listen);
        let name = format!("lbsim-{cloud}");
        let mut p = Proc::spawn(&name, &mut cmd, &scratch.path(&format!("{name}.log")))
            .expect("spawn lbsim");
        p.wait_listening(listen);
        (p, listen)
    }

    /// Runs the peer matrix; prints its tables. Says why and returns when wrk or nginx
    /// is missing.
    pub fn run(conns_list: &[usize]) {
        println!();
        println!("# peer run (issue #14): wrk -t1, nginx origin returning 6 bytes");
        let (Some(wrk_bin), Some(nginx)) = (which("wrk"), which("nginx")) else {
            println!("wrk or nginx not installed: skipped (apt-get install -y wrk nginx haproxy)");
            return;
        };
        let secs = env_f64("PEER_SECS", 4.0).max(1.0) as u32;
        let rounds = env_f64("PEER_ROUNDS", 1.0).max(1.0) as usize;
        let scratch = Scratch::new("peers");
        let (mut origin_proc, origin_addr) = origin(&nginx, &scratch);
        let mut targets: Vec<(&'static str, SocketAddr, Proc)> = Vec::new();
        match which("haproxy") {
            Some(bin) => {
                let (p, a) = spawn_haproxy(&bin, origin_addr, &scratch);
                targets.push(("haproxy", a, p));
            }
            None => println!("haproxy not installed: its column is empty"),
        }
        let (p, a) = spawn_nginx_proxy(&nginx, origin_addr, &scratch, "nginx-proxy", 64, "");
        targets.push(("nginx", a, p));
        for (name, cloud) in [("lbsim aws", "aws"), ("lbsim gcp", "gcp")] {
            let (p, a) = lbsim(cloud, origin_addr, &scratch);
            targets.push((name, a, p));
        }
        println!(
            "origin: {} (1 worker, `return 200 \"hello\\n\"`); haproxy: nbthread 2, http-reuse \
             always; nginx: worker_processes 2, upstream keepalive 64; lbsim: --cloud aws / gcp \
             --no-health-checks (2 tokio workers); wrk -t1 -d{secs}s --latency, {rounds} round(s)",
            nginx.display()
        );
        // A first request through each, so that no run pays for a first connection.
        for (name, addr, _) in &targets {
            if let Err(e) = blocking_get_status(*addr, "/") {
                panic!("{name} does not answer: {e}");
            }
        }

        let mut runs: Vec<Run> = Vec::new();
        for &conns in conns_list {
            let mut per_target: Vec<Vec<Run>> = targets.iter().map(|_| Vec::new()).collect();
            for _ in 0..rounds {
                for (i, (name, addr, proc)) in targets.iter().enumerate() {
                    let r = wrk(&wrk_bin, name, *addr, proc.pid(), conns, secs);
                    eprintln!(
                        "  {name:<10} {conns:>4} conns: {:>8.0} req/s  p99 {:>8.0} µs  CPU {:.1} µs/req",
                        r.rps, r.p99_us, r.cpu_us_per_req
                    );
                    per_target[i].push(r);
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
            // The round with the median req/s (its p99 with it), and the median CPU per
            // request of all rounds, as the main matrix does.
            for mut rs in per_target {
                let cpu: Vec<f64> = rs.iter().map(|r| r.cpu_us_per_req).collect();
                rs.sort_by(|a, b| a.rps.total_cmp(&b.rps));
                let mid = (rs.len() - 1) / 2;
                let mut run = rs.swap_remove(mid);
                run.cpu_us_per_req = median(&cpu);
                runs.push(run);
            }
        }
        for (_, _, p) in &mut targets {
            p.assert_running();
        }
        origin_proc.assert_running();

        let rows: Vec<Vec<String>> = runs
            .iter()
            .map(|r| {
                vec![
                    r.target.to_string(),
                    r.conns.to_string(),
                    format!("{:.0}", r.rps),
                    format!("{:.1}", r.cpu_us_per_req),
                    format!("{:.0} µs", r.p99_us),
                    r.requests.to_string(),
                    r.errors.to_string(),
                ]
            })
            .collect();
        print_table(
            &[
                "target",
                "conns",
                "req/s",
                "CPU µs/req",
                "p99",
                "requests",
                "errors",
            ],
            &rows,
        );
        println!();

        let find = |t: &str, c: usize| runs.iter().find(|r| r.target == t && r.conns == c);
        let mut ratio_rows = Vec::new();
        for &conns in conns_list {
            for lb in ["lbsim aws", "lbsim gcp"] {
                let Some(l) = find(lb, conns) else { continue };
                let mut row = vec![lb.to_string(), conns.to_string()];
                for peer in ["haproxy", "nginx"] {
                    match find(peer, conns) {
                        Some(p) => {
                            row.push(format!("{:.2}× {}", l.rps / p.rps, verdict(l.rps >= p.rps)));
                            row.push(format!(
                                "{:.2}× {}",
                                l.cpu_us_per_req / p.cpu_us_per_req,
                                verdict(l.cpu_us_per_req <= p.cpu_us_per_req)
                            ));
                        }
                        None => row.extend(["-".to_string(), "-".to_string()]),
                    }
                }
                row.push(match find("haproxy", conns) {
                    Some(h) => format!(
                        "{:.2}× {}",
                        l.p99_us / h.p99_us,
                        verdict(l.p99_us <= h.p99_us)
                    ),
                    None => "-".into(),
                });
                ratio_rows.push(row);
            }
        }
        println!(
            "issue #14 targets: req/s ≥ 1.0× HAProxy and nginx; CPU per request ≤ both; p99 ≤ HAProxy's"
        );
        print_table(
            &[
                "lbsim",
                "conns",
                "req/s ÷ haproxy",
                "CPU ÷ haproxy",
                "req/s ÷ nginx",
                "CPU ÷ nginx",
                "p99 ÷ haproxy",
            ],
            &ratio_rows,
        );
    }
}
