//! `--access-log` on a FIFO (issue 19, item 11), with the `lbsim` binary as a user runs it:
//!
//! - a FIFO with no reader: opening it for writing blocks until a reader comes, and it
//!   used to block lbsim's start (port never bound, SIGTERM ignored). lbsim must announce
//!   readiness and serve at once, and exit on SIGTERM within the bounded final flush;
//! - a reader that never reads: proxying goes on, and at SIGTERM lbsim exits within the
//!   bound and says how many lines it did not write, instead of staying alive until the
//!   reader dies.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lbsim::accesslog::FINAL_FLUSH_LIMIT;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_lbsim");

/// Start to first proxied answer: the bound (lbsim takes milliseconds).
const READY_LIMIT: Duration = Duration::from_secs(2);
/// Exit after SIGTERM: the final flush's bound plus this, for the rest of the shutdown on
/// a loaded machine.
const EXIT_SLACK: Duration = Duration::from_secs(2);
/// How much earlier than [`FINAL_FLUSH_LIMIT`] a timer may seem to fire, seen from here.
const TIMER_TOLERANCE: Duration = Duration::from_millis(100);

/// A FIFO in a directory of its own, removed with it.
struct Fifo {
    dir: PathBuf,
    path: PathBuf,
}

impl Fifo {
    fn new(name: &str) -> Fifo {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("lbsim-fifo-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join("access.log");
        let status = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .expect("run mkfifo");
        assert!(status.success(), "mkfifo failed: {status:?}");
        Fifo { dir, path }
    }
}

impl Drop for Fifo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running `lbsim` (in front of its embedded mock app) whose stderr is collected line
/// by line; killed when dropped.
struct Lbsim {
    child: Child,
    stderr: watch::Receiver<Vec<String>>,
}

impl Lbsim {
    fn spawn(access_log: &std::path::Path) -> Lbsim {
        let mut child = Command::new(BIN)
            .args([
                "--cloud",
                "aws",
                "--listen",
                "127.0.0.1:0",
                "--no-health-checks",
            ])
            .arg("--access-log")
            .arg(access_log)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn lbsim");
        let pipe = child.stderr.take().unwrap();
        let (tx, stderr) = watch::channel(Vec::new());
        tokio::spawn(async move {
            let mut lines = BufReader::new(pipe).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tx.send_modify(|l| l.push(line));
            }
        });
        Lbsim { child, stderr }
    }

    fn stderr(&self) -> String {
        self.stderr.borrow().join("\n")
    }

    /// Waits for "listening on http://ADDR " and returns ADDR; fails after `limit`.
    async fn ready(&mut self, limit: Duration) -> SocketAddr {
        let announced = |line: &String| {
            let rest = line.split("listening on http://").nth(1)?;
            rest.split(' ').next()?.parse::<SocketAddr>().ok()
        };
        let wait = self
            .stderr
            .wait_for(|l| l.iter().any(|s| announced(s).is_some()));
        let found = match tokio::time::timeout(limit, wait).await {
            Ok(Ok(lines)) => lines.iter().find_map(announced),
            _ => None,
        };
        found.unwrap_or_else(|| {
            panic!(
                "lbsim did not say it listens within {limit:?}; stderr:\n{}",
                self.stderr()
            )
        })
    }

    /// Sends SIGTERM (with `kill`) and waits for the exit; returns the exit code and how
    /// long the exit took. Fails if lbsim is still running after the flush bound + slack.
    async fn terminate(&mut self) -> (Option<i32>, Duration) {
        let pid = self.child.id().expect("lbsim is running");
        let sent = Instant::now();
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed: {status:?}");
        let limit = FINAL_FLUSH_LIMIT + EXIT_SLACK;
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => (status.unwrap().code(), sent.elapsed()),
            Err(_) => panic!(
                "lbsim still running {limit:?} after SIGTERM; stderr:\n{}",
                self.stderr()
            ),
        }
    }

    /// The number in lbsim's "access log: N line(s) not written" warning.
    async fn unwritten(&mut self) -> u64 {
        // The collector may still be reading the last lines after the exit.
        let warned = |s: &String| s.contains(" not written: ");
        let wait = self.stderr.wait_for(|l| l.iter().any(warned));
        let found = match tokio::time::timeout(READ_LIMIT, wait).await {
            Ok(Ok(lines)) => lines.iter().find(|s| warned(s)).cloned(),
            _ => None,
        };
        let line =
            found.unwrap_or_else(|| panic!("no 'not written' warning; stderr:\n{}", self.stderr()));
        assert!(line.contains("WARN"), "{line}");
        let count = line.split("access log: ").nth(1).unwrap();
        count.split(' ').next().unwrap().parse().unwrap()
    }
}

#[tokio::test]
async fn a_fifo_without_reader_neither_blocks_start_nor_keeps_lbsim_alive() {
    let fifo = Fifo::new("no-reader");
    let started = Instant::now();
    let mut lbsim = Lbsim::spawn(&fifo.path);
    let addr = lbsim.ready(READY_LIMIT).await;
    let mut client = RawClient::connect(addr).await;
    get_ok(&mut client).await;
    let served = started.elapsed();
    assert!(
        served < READY_LIMIT,
        "first answer {served:?} after the start"
    );
    drop(client);

    let (code, took) = lbsim.terminate().await;
    assert_eq!(code, Some(0), "{}", lbsim.stderr());
    // The one line waited for a reader for the flush's bound, not less, not for ever.
    assert!(
        took + TIMER_TOLERANCE >= FINAL_FLUSH_LIMIT,
        "exited {took:?} after SIGTERM, before the final flush's bound"
    );
    eprintln!("no reader: first answer after {served:?}, exit {took:?} after SIGTERM");
    assert_eq!(lbsim.unwritten().await, 1, "{}", lbsim.stderr());
    let stderr = lbsim.stderr();
    assert!(
        stderr.contains("access log: 1 line not written"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_never_reads_does_not_keep_lbsim_alive() {
    /// Far more ALB lines (~450 bytes each) than a 64 KiB pipe holds.
    const REQUESTS: u64 = 1_000;
    let fifo = Fifo::new("stalled-reader");
    // Read and write: on Linux this open does not wait for a writer, and the read end is
    // open for as long as the test holds it, without ever being read.
    let _reader = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo.path)
        .unwrap();
    let mut lbsim = Lbsim::spawn(&fifo.path);
    let addr = lbsim.ready(READY_LIMIT).await;

    // Proxying is unaffected by the stuck destination.
    let mut client = RawClient::connect(addr).await;
    for _ in 0..REQUESTS {
        get_ok(&mut client).await;
    }
    drop(client);

    let (code, took) = lbsim.terminate().await;
    assert_eq!(code, Some(0), "{}", lbsim.stderr());
    assert!(
        took + TIMER_TOLERANCE >= FINAL_FLUSH_LIMIT,
        "exited {took:?} after SIGTERM: were all lines written after all?"
    );
    let unwritten = lbsim.unwritten().await;
    eprintln!("reader that never reads: {unwritten} lines unwritten, exit {took:?} after SIGTERM");
    assert!(
        unwritten > 0 && unwritten <= REQUESTS,
        "{unwritten} of {REQUESTS} lines reported unwritten"
    );
    let stderr = lbsim.stderr();
    assert!(stderr.contains("dropped earlier"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
