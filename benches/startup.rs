//! Start-up time: from spawning the release binary (`lbsim --upstream … --no-health-checks`)
//! to the first proxied 200, polled with connect + GET in a tight loop; median of 20 runs
//! (after one untimed run that warms the page cache).
//!
//! Knobs: `STARTUP_RUNS` (default 20). Run: `cargo bench --bench startup`.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// Target: median start-up.
const TARGET: Duration = Duration::from_millis(50);

/// Spawns lbsim and polls until it proxies a 200; returns the time taken and the number
/// of polls.
fn one_run(upstream: std::net::SocketAddr, scratch: &Scratch) -> (Duration, u32) {
    let listen = free_addr();
    let mut cmd = lbsim_command(upstream, listen);
    let t0 = Instant::now();
    let mut proc = Proc::spawn("lbsim", &mut cmd, &scratch.path("lbsim.log")).expect("spawn");
    let mut polls = 0u32;
    loop {
        polls += 1;
        match blocking_get_status(listen, "/small") {
            Ok(200) => break,
            Ok(other) => panic!("lbsim answered {other} during start-up"),
            Err(_) => {
                if t0.elapsed() > Duration::from_secs(10) {
                    proc.assert_running();
                    panic!("lbsim did not answer within 10 s:\n{}", proc.log_text());
                }
                std::thread::yield_now();
            }
        }
    }
    let took = t0.elapsed();
    proc.stop();
    (took, polls)
}

fn main() {
    println!("# startup: spawn of the lbsim release binary to its first proxied 200");
    println!("{}", machine_note());
    let runs = env_f64("STARTUP_RUNS", 20.0).max(1.0) as usize;
    let scratch = Scratch::new("startup");
    let upstream = start_fast_upstream(1);
    let _ = one_run(upstream.addr, &scratch);
    let mut ms = Vec::with_capacity(runs);
    let mut polls = Vec::with_capacity(runs);
    for _ in 0..runs {
        let (d, p) = one_run(upstream.addr, &scratch);
        ms.push(d.as_secs_f64() * 1e3);
        polls.push(p as f64);
    }
    let mut sorted = ms.clone();
    sorted.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let med = median(&ms);
    print_table(
        &["runs", "min", "median", "p90", "max", "polls (median)"],
        &[vec![
            runs.to_string(),
            format!("{:.1} ms", sorted[0]),
            format!("{med:.1} ms"),
            format!("{:.1} ms", sorted[(runs * 9).div_ceil(10) - 1]),
            format!("{:.1} ms", sorted[runs - 1]),
            format!("{:.0}", median(&polls)),
        ]],
    );
    println!(
        "all runs (ms): {}",
        ms.iter()
            .map(|m| format!("{m:.1}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!();
    println!(
        "start-up median: {med:.1} ms (target < {} ms) {}",
        TARGET.as_millis(),
        verdict(med < TARGET.as_secs_f64() * 1e3)
    );
}
