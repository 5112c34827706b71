//! Timer accuracy: 1,000 concurrent requests that each hit lbsim's AWS idle timeout of
//! 1 s (lbsim in front of the mock app's `/sleep/5`, both child processes from the release
//! binary); how late is each 504 beyond 1 s (p50, p99, max)?
//!
//! Lateness is measured by the client: from just before its request is written to the
//! socket to the first byte of the 504, minus 1 s. It therefore includes loopback, lbsim
//! reading the request, and the client noticing the answer among 1,000 others. To show
//! how much of it is the measurement itself, the same client does the same against a
//! reference: a bare hyper server in this process that answers after
//! `tokio::time::sleep(1 s)`. Before each timed burst every connection carries a warm-up
//! request held 0.5 s by the app, so that lbsim's pool holds an upstream connection per
//! client connection and the burst measures timers, not connects.
//!
//! Also printed: lbsim's CPU time per 504 around the moment the timers fire (to the last
//! answer, and until 0.1 s later with the teardown of the abandoned target connections,
//! which lbsim defers until the answers are out), and a side measurement of 1,000
//! simultaneous connects (lbsim's accept queue).
//!
//! Knobs: `TIMER_CONNS` (default 1000), `TIMER_ROUNDS` (default 3; each round uses fresh
//! connections), `LBSIM_LOG` (lbsim's `RUST_LOG`, default `lbsim=info`).
//! Run: `cargo bench --bench timer_accuracy`.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connections opened and warmed up at once.
const OPEN_BATCH: usize = 50;
/// Pause between batches.
const BATCH_PAUSE: Duration = Duration::from_millis(10);
/// A connect without SYN-ACK after this long is abandoned and tried again.
const CONNECT_RETRY: Duration = Duration::from_millis(100);
const TIMEOUT: Duration = Duration::from_secs(1);
/// Target: p99 lateness.
const TARGET_P99: Duration = Duration::from_millis(5);

struct Answer {
    status: u16,
    reason: Option<String>,
    first_byte: Instant,
}

/// Reads one response (head plus a Content-Length body); notes when its first byte came.
async fn read_response(s: &mut TcpStream) -> std::io::Result<Answer> {
    let mut buf = Vec::with_capacity(1024);
    let mut first_byte = None;
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        first_byte.get_or_insert_with(Instant::now);
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(head_len) =
            resp.parse(&buf).map_err(std::io::Error::other)?
        {
            let header = |name: &str| {
                resp.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .and_then(|h| std::str::from_utf8(h.value).ok())
                    .map(|v| v.trim().to_string())
            };
            let len: usize = header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let answer = Answer {
                status: resp.code.unwrap_or(0),
                reason: header("x-lbsim-reason"),
                first_byte: first_byte.expect("set above"),
            };
            while buf.len() < head_len + len {
                let n = s.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Ok(answer);
        }
    }
}

/// Sends `GET path`; returns the instant just before the write (so that a thread
/// descheduled right after writing cannot make the answer look early).
async fn get(s: &mut TcpStream, path: &str) -> std::io::Result<Instant> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let t = Instant::now();
    s.write_all(req.as_bytes()).await?;
    Ok(t)
}

/// What one round measured.
#[derive(Default)]
struct Round {
    /// Lateness in ns (negative would mean early) of each timed request.
    late: Vec<i64>,
    /// Status and `x-lbsim-reason` of each timed answer.
    answers: Vec<(u16, Option<String>)>,
    /// Connects that got no SYN-ACK within `CONNECT_RETRY` and were tried again.
    retried_connects: usize,
    /// Connections dropped from the round because their warm-up failed.
    lost_warmup: usize,
    /// Timed requests whose connection closed without an answer.
    lost_timed: usize,
    /// Connections that the server closed after its timed answer.
    closed_after_answer: usize,
    /// CPU time (user + system, µs) the proxy spent from 0.9 s after the burst until
    /// the last answer: the work of firing the timers and answering.
    cpu_at_expiry_us: Option<u64>,
    /// The same, until 0.1 s after the last answer: with the target connections'
    /// teardown, which lbsim leaves until the answers of the moment are out.
    cpu_with_teardown_us: Option<u64>,
}

/// Connects, trying again at once when the SYN-ACK does not come within
/// `CONNECT_RETRY` (a full accept queue drops the SYN, and the kernel would wait a whole
/// second to send it again). Returns the stream and the number of retries.
async fn connect_retrying(addr: SocketAddr) -> std::io::Result<(TcpStream, usize)> {
    for retries in 0..20 {
        if let Ok(s) = tokio::time::timeout(CONNECT_RETRY, TcpStream::connect(addr)).await {
            return Ok((s?, retries));
        }
    }
    Err(std::io::ErrorKind::TimedOut.into())
}

/// One round: `conns` connections, each warmed up with `warmup_path`, then all send
/// `path` at once.
async fn round(
    addr: SocketAddr,
    pid: Option<u32>,
    warmup_path: &'static str,
    path: &'static str,
    conns: usize,
) -> Round {
    let mut r = Round::default();
    // Phase 1: open every connection, a batch at a time, and send on each a warm-up
    // request that the app holds for 500 ms, so that they are in flight together and
    // lbsim ends up with about one pooled upstream connection per client connection:
    // the timed burst then measures timers, not upstream connects. AWS closes a client
    // connection idle for the idle timeout (1 s), so this phase must end well within a
    // second of the first warm-up answer.
    let mut opened = Vec::with_capacity(conns);
    while opened.len() < conns {
        let k = OPEN_BATCH.min(conns - opened.len());
        let batch: Vec<_> = (0..k)
            .map(|_| {
                tokio::spawn(async move {
                    let (mut s, retries) = connect_retrying(addr).await?;
                    s.set_nodelay(true)?;
                    get(&mut s, warmup_path).await?;
                    Ok::<_, std::io::Error>((s, retries))
                })
            })
            .collect();
        for t in batch {
            let (s, retries) = t.await.expect("task").expect("connect");
            r.retried_connects += retries;
            opened.push(s);
        }
        // lbsim opens an upstream connection per request, and both its and the mock
        // app's accept queues are 128: give them time to accept.
        tokio::time::sleep(BATCH_PAUSE).await;
    }
    let warming: Vec<_> = opened
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                let warm = read_response(&mut s).await?;
                if warm.status != 200 {
                    return Err(std::io::Error::other(format!(
                        "warm-up {} {:?}",
                        warm.status, warm.reason
                    )));
                }
                Ok::<_, std::io::Error>(s)
            })
        })
        .collect();
    let mut streams = Vec::with_capacity(conns);
    for t in warming {
        match t.await.expect("task") {
            Ok(s) => streams.push(s),
            Err(_) => r.lost_warmup += 1,
        }
    }
    // Phase 2: every connection sends at once and waits for its answer.
    let before_expiry = pid.map(|pid| {
        let at = tokio::time::Instant::now() + TIMEOUT - Duration::from_millis(100);
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let (u, s) = cpu_us(pid);
            u + s
        })
    });
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                let sent = get(&mut s, path).await?;
                let a = read_response(&mut s).await?;
                let late = (a.first_byte - sent).as_nanos() as i64 - TIMEOUT.as_nanos() as i64;
                // The stream goes back to the caller: closing it now would make lbsim
                // close its side while other timers are still firing.
                Ok::<_, std::io::Error>((late, a.status, a.reason, s))
            })
        })
        .collect();
    let mut keep = Vec::with_capacity(conns);
    for t in tasks {
        match t.await.expect("task") {
            Ok((l, status, reason, s)) => {
                r.late.push(l);
                r.answers.push((status, reason));
                keep.push(s);
            }
            Err(_) => r.lost_timed += 1,
        }
    }
    let mut before = None;
    if let (Some(pid), Some(at_start)) = (pid, before_expiry) {
        let at_start = at_start.await.expect("task");
        let (u, s) = cpu_us(pid);
        r.cpu_at_expiry_us = Some((u + s).saturating_sub(at_start));
        before = Some(at_start);
    }
    // Did lbsim keep the connections open after its answer, as a 504 page says it does?
    tokio::time::sleep(Duration::from_millis(100)).await;
    if let (Some(pid), Some(at_start)) = (pid, before) {
        let (u, s) = cpu_us(pid);
        r.cpu_with_teardown_us = Some((u + s).saturating_sub(at_start));
    }
    let mut buf = [0u8; 1];
    r.closed_after_answer = keep
        .iter()
        .filter(|s| matches!(s.try_read(&mut buf), Ok(0)))
        .count();
    drop(keep);
    r
}

/// Opens `n` connections all at once; returns each connect's duration in ns, sorted.
async fn connect_burst(addr: SocketAddr, n: usize) -> Vec<u64> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            tokio::spawn(async move {
                let t0 = Instant::now();
                let s = TcpStream::connect(addr).await.expect("connect");
                (t0.elapsed().as_nanos() as u64, s)
            })
        })
        .collect();
    let mut times = Vec::with_capacity(n);
    let mut streams = Vec::with_capacity(n);
    for t in tasks {
        let (d, s) = t.await.expect("task");
        times.push(d);
        streams.push(s);
    }
    drop(streams);
    times.sort_unstable();
    times
}

/// A round that does not finish in 30 s (a connection failed before the barrier) aborts.
async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("round did not finish in 30 s")
}

fn summarize(label: &str, mut late: Vec<i64>, rows: &mut Vec<Vec<String>>) -> i64 {
    late.sort_unstable();
    let min = late[0];
    let pos: Vec<u64> = late.iter().map(|&l| l.max(0) as u64).collect();
    let p = |q| percentile(&pos, q);
    let signed = |ns: i64| {
        if ns < 0 {
            format!("-{}", fmt_ns(ns.unsigned_abs()))
        } else {
            fmt_ns(ns as u64)
        }
    };
    rows.push(vec![
        label.to_string(),
        late.len().to_string(),
        signed(min),
        fmt_ns(p(50.0)),
        fmt_ns(p(99.0)),
        fmt_ns(*pos.last().expect("samples")),
    ]);
    p(99.0) as i64
}

fn main() {
    println!("# timer_accuracy: lateness of the 504 beyond lbsim's 1 s AWS idle timeout");
    println!("{}", machine_note());
    let conns = env_f64("TIMER_CONNS", 1000.0) as usize;
    let rounds = env_f64("TIMER_ROUNDS", 3.0).max(1.0) as usize;
    let scratch = Scratch::new("timer");

    let mock_addr = free_addr();
    let mut mock_cmd = Command::new(lbsim_bin());
    mock_cmd.args([
        "upstream",
        "--listen",
        &mock_addr.to_string(),
        "--keep-alive",
        "60s",
    ]);
    let mut mock = Proc::spawn("lbsim upstream", &mut mock_cmd, &scratch.path("mock.log"))
        .expect("spawn mock");
    mock.wait_listening(mock_addr);
    let (mut lbsim, lb_addr) = spawn_lbsim(mock_addr, &["--idle-timeout", "1s"], &scratch);
    let reference = start_fast_upstream(1);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut rows = Vec::new();
    let mut all_lbsim = Vec::new();
    let mut all_ref = Vec::new();
    let mut wrong = 0usize;
    let mut retried = [0usize; 2];
    let mut cpu_per_504 = Vec::new();
    let mut cpu_with_teardown = Vec::new();
    let mut under_ticks = 0.0f64;
    let mut lost = [0usize; 2];
    let mut closed = [0usize; 2];
    for r in 1..=rounds {
        let lb = rt.block_on(bounded(round(
            lb_addr,
            Some(lbsim.pid()),
            "/sleep/0.5",
            "/sleep/5",
            conns,
        )));
        wrong += lb
            .answers
            .iter()
            .filter(|(s, reason)| *s != 504 || reason.as_deref() != Some("target_idle_timeout"))
            .count();
        retried[0] += lb.retried_connects;
        // /proc counts CPU time in 10 ms ticks: fewer than 5 say nothing.
        let answers = lb.answers.len().max(1) as f64;
        cpu_per_504.extend(
            lb.cpu_at_expiry_us
                .filter(|&us| us >= 50_000)
                .map(|us| us as f64 / answers),
        );
        under_ticks = under_ticks.max(50_000.0 / answers);
        cpu_with_teardown.extend(
            lb.cpu_with_teardown_us
                .filter(|&us| us >= 50_000)
                .map(|us| us as f64 / answers),
        );
        lost[0] += lb.lost_warmup + lb.lost_timed;
        closed[0] += lb.closed_after_answer;
        summarize(&format!("lbsim, round {r}"), lb.late.clone(), &mut rows);
        all_lbsim.extend(lb.late);
        let re = rt.block_on(bounded(round(
            reference.addr,
            None,
            "/delay/500",
            "/delay/1000",
            conns,
        )));
        wrong += re.answers.iter().filter(|(s, _)| *s != 200).count();
        retried[1] += re.retried_connects;
        lost[1] += re.lost_warmup + re.lost_timed;
        closed[1] += re.closed_after_answer;
        summarize(&format!("reference, round {r}"), re.late.clone(), &mut rows);
        all_ref.extend(re.late);
    }
    lbsim.assert_running();

    // Side measurement: the same number of connects in one burst, to lbsim and to the
    // reference (whose accept queue is 4096).
    let mut burst_rows = Vec::new();
    for (name, addr) in [("lbsim", lb_addr), ("reference", reference.addr)] {
        let t = rt.block_on(bounded(connect_burst(addr, conns)));
        let slow = t.iter().filter(|&&d| d > 900_000_000).count();
        burst_rows.push(vec![
            name.to_string(),
            conns.to_string(),
            fmt_ns(percentile(&t, 50.0)),
            fmt_ns(percentile(&t, 99.0)),
            fmt_ns(*t.last().expect("samples")),
            slow.to_string(),
        ]);
        // Let lbsim close the idle connections before the next burst.
        std::thread::sleep(Duration::from_millis(200));
    }
    let p99 = summarize("lbsim, all rounds", all_lbsim, &mut rows);
    summarize("reference, all rounds", all_ref, &mut rows);
    println!(
        "{conns} concurrent requests per round, {rounds} rounds; lateness = first byte of the \
         answer − request written − 1 s"
    );
    print_table(&["run", "requests", "min", "p50", "p99", "max"], &rows);
    println!();
    println!("connect burst: {conns} connects at once (not part of the target; see RESULTS.md)");
    print_table(
        &["to", "connects", "p50", "p99", "max", "over 900 ms"],
        &burst_rows,
    );
    println!();
    if wrong > 0 {
        println!("note: {wrong} answers were not the expected 504 target_idle_timeout / 200");
    }
    for (i, name) in ["lbsim", "reference"].iter().enumerate() {
        if closed[i] > 0 {
            println!(
                "note ({name}): {} client connections were closed by the server right after \
                 their timed answer",
                closed[i]
            );
        }
        if retried[i] > 0 || lost[i] > 0 {
            println!(
                "note ({name}): {} connects got no SYN-ACK within {CONNECT_RETRY:?} (full \
                 accept queue) and were retried; {} connections lost (warm-up failed or \
                 closed before the timed answer) and left out",
                retried[i], lost[i]
            );
        }
    }
    let per_504 = |v: &[f64]| {
        if v.is_empty() {
            format!(
                "under {} µs (fewer than 5 of /proc's 10 ms ticks)",
                under_ticks.round()
            )
        } else {
            format!("{} µs (median of rounds)", median(v).round())
        }
    };
    println!(
        "lbsim CPU time per 504, from 0.1 s before the timers fire: to the last 504 {}; \
         until 0.1 s later, with the target connections' teardown, {}",
        per_504(&cpu_per_504),
        per_504(&cpu_with_teardown)
    );
    println!(
        "lbsim timer lateness p99: {} (target < {:?}) {}",
        fmt_ns(p99.max(0) as u64),
        TARGET_P99,
        verdict(p99 < TARGET_P99.as_nanos() as i64)
    );
    drop(lbsim);
    drop(mock);
}
