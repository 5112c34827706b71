//! Streaming: MB/s of a 1 GiB response and a 1 GiB upload, direct to a hyper upstream and
//! through lbsim (child process from the release binary), every byte checked on arrival:
//! byte i of each body is i mod 251, the client verifies the download, the upstream
//! verifies the upload and answers the count it received. nginx and HAProxy, when
//! installed, run the same transfers for comparison (a proxy on a 2-core machine adds a
//! third busy process and two more copies of every byte; they show what that costs).
//!
//! Knobs: `STREAM_MIB` (default 1024), `STREAM_RUNS` (default 3; the median is reported),
//! `HAPROXY_SPLICE=1` (HAProxy moves bodies with splice(2): what zero-copy reaches here).
//! Run: `cargo bench --bench streaming`.

mod common;

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use common::*;
use http::header::{CONTENT_LENGTH, HOST};
use http::{Method, Request};
use http_body_util::{BodyExt, Empty};

/// Target: through lbsim at least this share of direct.
const TARGET_SHARE: f64 = 0.8;

/// Downloads `len` pattern bytes, verifying them; returns MB/s.
async fn download(addr: SocketAddr, len: u64) -> f64 {
    let mut s = connect::<Empty<Bytes>>(addr).await.expect("connect");
    let req = Request::get(format!("/pattern/{len}"))
        .header(HOST, "127.0.0.1")
        .body(Empty::new())
        .expect("request");
    let t0 = Instant::now();
    let resp = s.send_request(req).await.expect("response head");
    assert_eq!(resp.status(), 200, "download status");
    let mut v = Verifier::default();
    let n = drain(resp.into_body(), Some(&mut v))
        .await
        .expect("download body intact");
    let secs = t0.elapsed().as_secs_f64();
    assert_eq!(n, len, "download length");
    n as f64 / secs / 1e6
}

/// Uploads `len` pattern bytes; the upstream verifies them and answers the count.
async fn upload(addr: SocketAddr, len: u64) -> f64 {
    let mut s = connect::<PatternBody>(addr).await.expect("connect");
    let req = Request::builder()
        .method(Method::POST)
        .uri("/upload")
        .header(HOST, "127.0.0.1")
        .header(CONTENT_LENGTH, len)
        .body(PatternBody::new(len))
        .expect("request");
    let t0 = Instant::now();
    let resp = s.send_request(req).await.expect("response head");
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("response body")
        .to_bytes();
    let secs = t0.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, 200, "upload refused: {text}");
    assert_eq!(text, len.to_string(), "upstream counted a different length");
    len as f64 / secs / 1e6
}

fn main() {
    println!("# streaming: one large body through lbsim vs direct, bytes verified");
    println!("{}", machine_note());
    let mib = env_f64("STREAM_MIB", 1024.0) as u64;
    let len = mib * 1024 * 1024;
    let runs = env_f64("STREAM_RUNS", 3.0).max(1.0) as usize;
    let scratch = Scratch::new("streaming");
    let upstream = start_fast_upstream(1);
    let want = wanted_targets();
    let mut targets: Vec<(&'static str, SocketAddr, Option<u32>)> =
        vec![("direct", upstream.addr, None)];
    let (proxies, mut procs, notes) = spawn_proxies(upstream.addr, &scratch, &want);
    for ((name, addr), p) in proxies.into_iter().zip(&procs) {
        targets.push((name, addr, Some(p.pid())));
    }
    for n in &notes {
        println!("{n}");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");

    // results[direction][target] = MB/s per run; cpu[direction][target] = proxy CPU µs
    // (user + system) per run.
    let mut results = vec![vec![Vec::new(); targets.len()]; 2];
    let mut cpu = vec![vec![Vec::new(); targets.len()]; 2];
    for _ in 0..runs {
        for (t, (_, addr, pid)) in targets.iter().enumerate() {
            for d in 0..2 {
                let before = pid.map(cpu_us);
                let rate = if d == 0 {
                    rt.block_on(download(*addr, len))
                } else {
                    rt.block_on(upload(*addr, len))
                };
                results[d][t].push(rate);
                if let (Some(pid), Some((u0, s0))) = (pid, before) {
                    let (u1, s1) = cpu_us(*pid);
                    cpu[d][t].push((u1 + s1 - u0 - s0) as f64);
                }
            }
        }
    }
    for p in &mut procs {
        p.assert_running();
    }
    drop(procs);

    let mut rows = Vec::new();
    let mut verdicts = Vec::new();
    for (d, direction) in ["download (response)", "upload (request)"]
        .iter()
        .enumerate()
    {
        let direct = median(&results[d][0]);
        for (t, (name, _, _)) in targets.iter().enumerate() {
            let med = median(&results[d][t]);
            let cpu_per_gib = if cpu[d][t].is_empty() {
                "-".to_string()
            } else {
                format!(
                    "{:.2}",
                    median(&cpu[d][t]) / 1e6 / (len as f64 / (1u64 << 30) as f64)
                )
            };
            rows.push(vec![
                direction.to_string(),
                name.to_string(),
                results[d][t]
                    .iter()
                    .map(|m| format!("{m:.0}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                format!("{med:.0}"),
                format!("{:.0} %", med / direct * 100.0),
                cpu_per_gib,
            ]);
            if *name == "lbsim" {
                let share = med / direct;
                verdicts.push(format!(
                    "{direction}: lbsim/direct {:.0} % (target ≥ {:.0} %) {}",
                    share * 100.0,
                    TARGET_SHARE * 100.0,
                    verdict(share >= TARGET_SHARE)
                ));
            }
        }
    }
    println!("{mib} MiB per transfer, {runs} runs each, MB/s = 10^6 bytes/s, every byte verified");
    print_table(
        &[
            "direction",
            "path",
            "MB/s per run",
            "median MB/s",
            "of direct",
            "proxy CPU s/GiB",
        ],
        &rows,
    );
    println!();
    for v in verdicts {
        println!("{v}");
    }
}
