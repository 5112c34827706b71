//! The `lbsim` binary as a user runs it: flag errors, `--print-config`, the embedded mock
//! app, the README walk-through, graceful shutdown on SIGTERM/SIGINT, the log line that
//! explains a 504, and `lbsim upstream`.

mod support;

use std::net::SocketAddr;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_lbsim");

/// Upper bound for a process to start, print, or exit: a broken binary fails the test
/// instead of hanging it.
const PROCESS_LIMIT: Duration = Duration::from_secs(15);

/// Where lbsim listens in these tests: an ephemeral port it picks and announces, which
/// [`Running::ready`] reads back (a port found free and released could be taken by a
/// parallel test before lbsim binds it).
const EPHEMERAL: &str = "127.0.0.1:0";

/// The address after `marker` in an announcement line (up to the next space or `)`).
fn announced(line: &str, marker: &str) -> SocketAddr {
    let (_, rest) = line
        .split_once(marker)
        .unwrap_or_else(|| panic!("no {marker:?} in {line:?}"));
    let addr = rest.split([' ', ')']).next().unwrap_or_default();
    addr.parse()
        .unwrap_or_else(|e| panic!("{addr:?} in {line:?} is not an address: {e}"))
}

/// A loopback address that was free a moment ago (bound to port 0, then released): only
/// where a test needs a port nothing listens on, or the same port for two flags.
fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// Runs `lbsim args` to completion.
async fn run(args: &[&str]) -> Output {
    let child = command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn lbsim");
    tokio::time::timeout(PROCESS_LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("lbsim {args:?} did not exit within {PROCESS_LIMIT:?}"))
        .unwrap()
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Removes ANSI colour sequences (`ESC [ … letter`) in case the log is coloured anyway.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A usage error: exit code 2, clap's message naming `flag` on stderr, no panic.
#[track_caller]
fn assert_usage_error(out: &Output, flag: &str) {
    let err = stderr_of(out);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(!err.contains("panicked"), "panic on a bad flag: {err}");
    assert!(
        err.starts_with("error: ") || err.starts_with("lbsim: "),
        "not a usage message: {err}"
    );
    assert!(err.contains(flag), "message does not name {flag}: {err}");
    assert!(out.stdout.is_empty(), "stdout: {}", stdout_of(out));
}

#[tokio::test]
async fn unknown_cloud_is_a_usage_error() {
    let listen = EPHEMERAL.to_string();
    let out = run(&["--cloud", "azure", "--listen", &listen]).await;
    assert_usage_error(&out, "--cloud");
    assert!(stderr_of(&out).contains("azure"), "{}", stderr_of(&out));
}

#[tokio::test]
async fn unparsable_idle_timeout_is_a_usage_error() {
    let listen = EPHEMERAL.to_string();
    let out = run(&["--idle-timeout", "abc", "--listen", &listen]).await;
    assert_usage_error(&out, "--idle-timeout");
    assert!(stderr_of(&out).contains("abc"), "{}", stderr_of(&out));
}

#[tokio::test]
async fn non_positive_time_scale_is_a_usage_error() {
    let listen = EPHEMERAL.to_string();
    for value in ["--time-scale=-1", "--time-scale=0", "--time-scale=NaN"] {
        let out = run(&[value, "--listen", &listen]).await;
        assert_usage_error(&out, "--time-scale");
    }
}

#[tokio::test]
async fn negative_time_scale_as_separate_argument_names_the_flag() {
    let listen = EPHEMERAL.to_string();
    let out = run(&["--time-scale", "-1", "--listen", &listen]).await;
    assert_usage_error(&out, "--time-scale");
}

#[tokio::test]
async fn log_format_without_access_log_is_a_usage_error() {
    // Alone it would write nothing and say nothing: clap names the flag it needs.
    let listen = EPHEMERAL.to_string();
    let out = run(&["--log-format", "json", "--listen", &listen]).await;
    assert_usage_error(&out, "--log-format");
    assert!(
        stderr_of(&out).contains("--access-log"),
        "{}",
        stderr_of(&out)
    );
    // With it, the pair is accepted.
    let out = run(&[
        "--log-format",
        "json",
        "--access-log",
        "-",
        "--print-config",
    ])
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
}

/// A start that fails on a port: exit 1, one line naming `flag` and `addr`, no panic.
#[track_caller]
fn assert_bind_error(out: &Output, flag: &str, addr: SocketAddr) -> String {
    let err = stderr_of(out);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line: {err:?}");
    let line = lines[0].to_string();
    assert!(
        line.starts_with(&format!("lbsim: {flag} {addr}: address already in use")),
        "{line}"
    );
    line
}

#[tokio::test]
async fn a_taken_port_is_named_by_its_flag() {
    // Held for the whole test: nothing else can bind it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let busy = addr.to_string();

    let out = run(&["--listen", &busy]).await;
    let line = assert_bind_error(&out, "--listen", addr);
    assert!(
        line.ends_with("(is another lbsim or your app on it?)"),
        "{line}"
    );

    let listen = EPHEMERAL.to_string();
    let out = run(&["--listen", &listen, "--admin", &busy]).await;
    let line = assert_bind_error(&out, "--admin", addr);
    assert!(
        line.ends_with("(is another lbsim or your app on it?)"),
        "{line}"
    );
    drop(taken);
}

#[tokio::test]
async fn admin_on_the_listen_port_says_lbsim_holds_it() {
    let addr = free_addr();
    let same = addr.to_string();
    let out = run(&["--listen", &same, "--admin", &same]).await;
    let line = assert_bind_error(&out, "--admin", addr);
    assert!(
        line.contains(&format!("by lbsim's own --listen {addr}")),
        "{line}"
    );
}

#[tokio::test]
async fn idle_timeout_on_gcp_points_to_backend_timeout() {
    let listen = EPHEMERAL.to_string();
    let out = run(&[
        "--cloud",
        "gcp",
        "--idle-timeout",
        "5s",
        "--listen",
        &listen,
    ])
    .await;
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line: {err}");
    let line = lines[0];
    assert!(
        line.starts_with("lbsim: --idle-timeout does not apply"),
        "{line}"
    );
    assert!(line.contains("GCP"), "{line}");
    assert!(line.contains("use") || line.contains("set with"), "{line}");
    assert!(line.ends_with("--backend-timeout"), "{line}");
}

#[tokio::test]
async fn unresolvable_upstream_is_one_clear_line() {
    let listen = EPHEMERAL.to_string();
    let out = run(&[
        "--upstream",
        "no-such-host.invalid:8000",
        "--listen",
        &listen,
    ])
    .await;
    let err = stderr_of(&out);
    assert!(!out.status.success(), "exit {:?}: {err}", out.status);
    assert!(out.status.code().is_some(), "killed by a signal: {err}");
    assert!(!err.contains("panicked"), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "expected exactly one line: {err:?}");
    assert!(lines[0].starts_with("lbsim: "), "{err}");
    assert!(lines[0].contains("no-such-host.invalid:8000"), "{err}");
    assert!(lines[0].contains("resolve"), "{err}");
}

/// `--print-config` output as (label, value) pairs, split at the first `:`.
async fn print_config(args: &[&str]) -> Vec<(String, String)> {
    let listen = EPHEMERAL.to_string();
    let mut all = vec!["--print-config", "--listen", &listen];
    all.extend_from_slice(args);
    let out = run(&all).await;
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        stderr_of(&out)
    );
    assert_eq!(stderr_of(&out), "", "--print-config writes to stdout only");
    stdout_of(&out)
        .lines()
        .map(|l| {
            let (k, v) = l
                .split_once(':')
                .unwrap_or_else(|| panic!("line without a label: {l:?}"));
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect()
}

#[track_caller]
fn value<'a>(config: &'a [(String, String)], label: &str) -> &'a str {
    config
        .iter()
        .find(|(k, _)| k == label)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {label:?} line in {config:?}"))
}

#[tokio::test]
async fn print_config_aws_anyscale_defaults() {
    let c = print_config(&["--cloud", "aws"]).await;
    assert_eq!(value(&c, "load balancer"), "AWS ALB");
    assert_eq!(value(&c, "defaults"), "anyscale");
    assert_eq!(value(&c, "time scale"), "1");
    assert_eq!(
        value(&c, "idle timeout"),
        "300 s [idle (no byte for this long)]"
    );
    assert_eq!(value(&c, "connect timeout"), "10 s");
    assert_eq!(value(&c, "backend keep-alive"), "300 s");
    assert_eq!(value(&c, "upstreams"), "(embedded mock app)");
}

#[tokio::test]
async fn print_config_aws_native_defaults() {
    let c = print_config(&["--cloud", "aws", "--lb-defaults", "native"]).await;
    assert_eq!(value(&c, "defaults"), "native");
    assert_eq!(
        value(&c, "idle timeout"),
        "60 s [idle (no byte for this long)]"
    );
    assert_eq!(value(&c, "backend keep-alive"), "60 s");
}

#[tokio::test]
async fn print_config_gcp_anyscale_and_native() {
    let end_to_end = "[end-to-end (whole response, streaming included)]";
    let c = print_config(&["--cloud", "gcp"]).await;
    assert_eq!(value(&c, "load balancer"), "GCP load balancer");
    assert_eq!(
        value(&c, "backend service timeout"),
        format!("600 s {end_to_end}")
    );
    assert_eq!(value(&c, "backend keep-alive"), "600 s");
    let c = print_config(&["--cloud", "gcp", "--lb-defaults", "native"]).await;
    assert_eq!(value(&c, "defaults"), "native");
    assert_eq!(
        value(&c, "backend service timeout"),
        format!("30 s {end_to_end}")
    );
    // The backend keep-alive is fixed at 600 s whatever the defaults.
    assert_eq!(value(&c, "backend keep-alive"), "600 s");
}

#[tokio::test]
async fn print_config_scales_every_timer() {
    let c = print_config(&["--cloud", "aws", "--time-scale", "0.01"]).await;
    assert_eq!(value(&c, "time scale"), "0.01");
    assert_eq!(
        value(&c, "idle timeout"),
        "3 s [idle (no byte for this long)]"
    );
    assert_eq!(value(&c, "connect timeout"), "100 ms");
    assert_eq!(value(&c, "backend keep-alive"), "3 s");
}

/// A team pastes its Ingress: the annotations' timers become lbsim's, a flag given on the
/// command line wins, what lbsim does not model is said, and another cloud is refused.
#[tokio::test]
async fn ingress_annotations_set_ingress_nginx_timers() {
    let path = std::env::temp_dir().join(format!("lbsim-ingress-{}.yaml", std::process::id()));
    std::fs::write(
        &path,
        "kind: Ingress\nmetadata:\n  annotations:\n    \
         nginx.ingress.kubernetes.io/proxy-read-timeout: \"120\"\n    \
         nginx.ingress.kubernetes.io/proxy-connect-timeout: \"3\"\n    \
         nginx.ingress.kubernetes.io/proxy-send-timeout: \"120\"\n",
    )
    .unwrap();
    let file = path.to_str().unwrap();
    let out = run(&[
        "--cloud",
        "ingress-nginx",
        "--ingress-config",
        file,
        "--connect-timeout",
        "1s",
        "--print-config",
        "--listen",
        EPHEMERAL,
    ])
    .await;
    assert!(out.status.success(), "{}", stderr_of(&out));
    let stdout = stdout_of(&out);
    assert!(
        stdout.contains("proxy-read-timeout:       120 s [idle"),
        "{stdout}"
    );
    assert!(
        stdout.contains("connect timeout:          1 s\n"),
        "{stdout}"
    );
    let err = stderr_of(&out);
    assert_eq!(
        err.lines().collect::<Vec<_>>(),
        [
            format!("lbsim: {file}: proxy-read-timeout 120 → --idle-timeout 120s"),
            format!(
                "lbsim: {file}: left alone: proxy-connect-timeout: --connect-timeout was given \
                 on the command line"
            ),
            format!(
                "lbsim: {file}: left alone: proxy-send-timeout: lbsim times the app's reads \
                 only (the request body is sent as it comes)"
            ),
        ]
    );

    let out = run(&[
        "--ingress-config",
        file,
        "--print-config",
        "--listen",
        EPHEMERAL,
    ])
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr_of(&out).trim_end(),
        "lbsim: --ingress-config holds ingress-nginx's settings; it needs --cloud \
         ingress-nginx (this is AWS ALB)"
    );
    std::fs::remove_file(&path).unwrap();
}

#[tokio::test]
async fn print_config_names_the_l4_in_front_scaled() {
    let c = print_config(&["--cloud", "ingress-nginx", "--time-scale", "0.01"]).await;
    assert_eq!(value(&c, "l4 in front"), "none");
    let c = print_config(&[
        "--cloud",
        "ingress-nginx",
        "--l4",
        "azure-lb",
        "--time-scale",
        "0.01",
    ])
    .await;
    assert!(
        value(&c, "l4 in front")
            .starts_with("Azure Load Balancer (TCP reset on idle off) (idle timeout (minutes) 2.4 s per TCP flow, then: "),
        "{c:?}"
    );
}

#[tokio::test]
async fn print_config_separates_every_label_from_its_value() {
    let listen = EPHEMERAL.to_string();
    for cloud in ["aws", "gcp"] {
        let out = run(&["--print-config", "--cloud", cloud, "--listen", &listen]).await;
        for line in stdout_of(&out).lines() {
            let (_, v) = line.split_once(':').unwrap();
            assert!(
                v.starts_with(' '),
                "{cloud}: no space after the label: {line:?}"
            );
        }
    }
}

/// Stderr lines of a running lbsim, collected as they arrive.
#[derive(Clone, Default)]
struct Log {
    lines: Vec<String>,
    eof: bool,
}

/// A running `lbsim`; killed when dropped.
struct Running {
    child: Child,
    log: watch::Receiver<Log>,
}

impl Running {
    fn spawn(args: &[&str]) -> Running {
        let mut child = command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn lbsim");
        let stderr = child.stderr.take().unwrap();
        let (tx, log) = watch::channel(Log::default());
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let line = strip_ansi(&line);
                tx.send_modify(|l| l.lines.push(line));
            }
            tx.send_modify(|l| l.eof = true);
        });
        Running { child, log }
    }

    fn pid(&self) -> u32 {
        self.child.id().expect("lbsim is running")
    }

    fn stderr(&self) -> String {
        self.log.borrow().lines.join("\n")
    }

    /// Waits for a stderr line that satisfies `pred`; fails if stderr ends or `limit` passes.
    async fn line(&mut self, what: &str, limit: Duration, pred: impl Fn(&str) -> bool) -> String {
        let found = tokio::time::timeout(
            limit,
            self.log
                .wait_for(|l| l.eof || l.lines.iter().any(|s| pred(s))),
        )
        .await
        .is_ok();
        let log = self.log.borrow();
        match (found, log.lines.iter().find(|s| pred(s))) {
            (true, Some(line)) => line.clone(),
            _ => panic!(
                "no stderr line {what} within {limit:?} (stderr ended: {}):\n{}",
                log.eof,
                log.lines.join("\n")
            ),
        }
    }

    /// Waits for the "listening on" line, after which the listener is bound, and returns
    /// the address it names (lbsim was started on port 0).
    async fn ready(&mut self) -> SocketAddr {
        let line = self
            .line("saying it listens", PROCESS_LIMIT, |l| {
                l.starts_with("lbsim: ") && l.contains(" listening on http://")
            })
            .await;
        announced(&line, " listening on http://")
    }

    /// Sends `signal` (e.g. "TERM") with the `kill` command.
    async fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .await
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed: {status:?}");
    }

    /// Waits for the process to exit by itself.
    async fn exit_code(&mut self, limit: Duration) -> Option<i32> {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => status.unwrap().code(),
            Err(_) => panic!(
                "lbsim still running after {limit:?}; stderr:\n{}",
                self.stderr()
            ),
        }
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// The README promise: `lbsim --cloud aws --time-scale 0.01` with no upstream starts the
/// mock app, `/sleep/5` gets the ALB's 504 after the scaled 3 s idle timeout, and `/`
/// is answered by the app.
#[tokio::test]
async fn readme_walk_through_on_the_embedded_mock_app() {
    let l = EPHEMERAL.to_string();
    let mut lbsim = Running::spawn(&["--cloud", "aws", "--time-scale", "0.01", "--listen", &l]);
    // The mock app is started (and announced) before lbsim says it listens.
    let listen = lbsim.ready().await;
    lbsim
        .line("saying it started the mock app", PROCESS_LIMIT, |l| {
            l.starts_with("lbsim: no --upstream given; started the mock app on http://127.0.0.1:")
        })
        .await;

    let mut client = RawClient::connect(listen).await;
    let start = Instant::now();
    let resp = client.get("/sleep/5").await;
    let elapsed = start.elapsed();
    let idle = Duration::from_secs(3);
    // The timer starts when lbsim has the request, after the client's clock started.
    assert!(
        elapsed >= idle && elapsed <= idle + Duration::from_millis(750),
        "504 after {elapsed:?}, expected 3 s (+0.75 s)"
    );
    assert_eq!(resp.status, 504);
    assert_eq!(resp.reason, "Gateway Time-out");
    assert_eq!(resp.header("Server"), Some("awselb/2.0"));
    assert_eq!(resp.header("x-lbsim-reason"), Some("target_idle_timeout"));
    assert_eq!(resp.text(), alb_page("504 Gateway Time-out"));
    lbsim
        .line("logging the 504", Duration::from_secs(5), |l| {
            l.contains("504 target_idle_timeout")
        })
        .await;

    let mut client = RawClient::connect(listen).await;
    let resp = client.get("/").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "ok");
    assert_eq!(resp.header("x-lbsim-reason"), None);
    lbsim.stop().await;
}

#[tokio::test]
async fn log_line_of_a_504_names_the_cause_and_the_fix() {
    let l = EPHEMERAL.to_string();
    let mut lbsim = Running::spawn(&[
        "--cloud",
        "aws",
        "--idle-timeout",
        "300ms",
        "--listen",
        &l,
        "--explain",
    ]);
    let listen = lbsim.ready().await;
    let mut client = RawClient::connect(listen).await;
    let resp = client.get("/sleep/2").await;
    assert_eq!(resp.status, 504);
    // A short log line...
    let warn = lbsim
        .line("logging the 504", Duration::from_secs(5), |l| {
            l.contains("WARN") && l.contains("504 target_idle_timeout after 0.")
        })
        .await;
    assert!(!warn.contains("--explain says"), "{warn}");
    // ...and the sentence, with --explain.
    let line = lbsim
        .line("explaining the 504", Duration::from_secs(5), |l| {
            l.starts_with("lbsim explain: 504 target_idle_timeout: ")
        })
        .await;
    // The cause, with the measured numbers...
    assert!(
        line.contains("sent no response within the AWS ALB idle timeout of 300 ms"),
        "{line}"
    );
    let waited_ms: u64 = line
        .split_once("(waited ")
        .and_then(|(_, rest)| rest.split_once(" ms)"))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("no \"(waited N ms)\" in {line}"));
    assert!((300..1000).contains(&waited_ms), "{line}");
    // ...and the fix: the cloud setting and the lbsim flag.
    assert!(line.contains("idle_timeout.timeout_seconds"), "{line}");
    assert!(line.contains("--idle-timeout"), "{line}");
    lbsim.stop().await;
}

#[tokio::test]
async fn without_explain_the_log_line_is_short_and_points_to_it() {
    let l = EPHEMERAL.to_string();
    let mut lbsim = Running::spawn(&["--cloud", "aws", "--idle-timeout", "300ms", "--listen", &l]);
    let listen = lbsim.ready().await;
    let mut client = RawClient::connect(listen).await;
    assert_eq!(client.get("/sleep/2").await.status, 504);
    let warn = lbsim
        .line("logging the 504", Duration::from_secs(5), |l| {
            l.contains("WARN") && l.contains("504 target_idle_timeout after 0.")
        })
        .await;
    assert!(
        warn.contains("(--explain says why and what to change)"),
        "{warn}"
    );
    assert!(!warn.contains("idle_timeout.timeout_seconds"), "{warn}");
    lbsim.stop().await;
}

/// A stand-in app that holds one request until the test lets it answer.
struct HeldApp {
    listener: TcpListener,
}

impl HeldApp {
    async fn start() -> HeldApp {
        HeldApp {
            listener: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap()
    }

    /// Accepts connections until one carries a request head (lbsim's start-up probe
    /// connects and closes without a word), and reads that head: the request is now in
    /// flight.
    async fn receive(&self) -> (TcpStream, String) {
        loop {
            let (mut stream, _) = tokio::time::timeout(PROCESS_LIMIT, self.listener.accept())
                .await
                .expect("lbsim forwarded the request")
                .unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.ends_with(b"\r\n\r\n") {
                let n = tokio::time::timeout(READ_LIMIT, stream.read(&mut buf))
                    .await
                    .expect("request head")
                    .unwrap();
                if n == 0 {
                    assert!(
                        head.is_empty(),
                        "lbsim closed the target connection mid-head"
                    );
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            if !head.is_empty() {
                return (stream, String::from_utf8_lossy(&head).into_owned());
            }
        }
    }
}

/// Connects until refused; the listener closes a moment after the shutdown log line.
async fn wait_until_refused(addr: SocketAddr) {
    let limit = Duration::from_secs(2);
    let start = Instant::now();
    loop {
        match TcpStream::connect(addr).await {
            // Refused, or reset when the connect raced the listener's close.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset
                ) =>
            {
                return
            }
            Err(e) => panic!("unexpected connect error: {e}"),
            Ok(_) => {}
        }
        assert!(
            start.elapsed() < limit,
            "{addr} still accepts connections {limit:?} after the signal"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// On `signal`, lbsim stops accepting, lets the in-flight request finish, and exits 0.
async fn graceful_shutdown_on(signal: &str) {
    let app = HeldApp::start().await;
    let (l, up) = (EPHEMERAL.to_string(), app.addr().to_string());
    // Default AWS idle timeout: 300 s, far longer than this test.
    // No health checks: the stand-in app must see only the client's request.
    let mut lbsim = Running::spawn(&[
        "--cloud",
        "aws",
        "--upstream",
        &up,
        "--listen",
        &l,
        "--no-health-checks",
    ]);
    let listen = lbsim.ready().await;

    let mut client = RawClient::connect(listen).await;
    client
        .send(b"GET /sleep/1 HTTP/1.1\r\nHost: lbsim.test\r\n\r\n")
        .await;
    let (mut target, head) = app.receive().await;
    assert!(head.starts_with("GET /sleep/1 HTTP/1.1\r\n"), "{head}");

    lbsim.signal(signal).await;
    lbsim
        .line("announcing the shutdown", PROCESS_LIMIT, |l| {
            l.starts_with("lbsim: shutting down")
        })
        .await;
    wait_until_refused(listen).await;
    assert!(
        lbsim.child.try_wait().unwrap().is_none(),
        "lbsim exited with a request in flight:\n{}",
        lbsim.stderr()
    );

    // Only now does the app answer: the request was in flight for the whole shutdown.
    target
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\nslept 1")
        .await
        .unwrap();
    let resp = client.response().await.expect("the in-flight response");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "slept 1");
    assert!(resp.complete);

    assert_eq!(
        lbsim.exit_code(PROCESS_LIMIT).await,
        Some(0),
        "{}",
        lbsim.stderr()
    );
    let stderr = lbsim.stderr();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("exiting anyway"), "{stderr}");
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_and_exits_0() {
    graceful_shutdown_on("TERM").await;
}

#[tokio::test]
async fn sigint_finishes_in_flight_requests_and_exits_0() {
    graceful_shutdown_on("INT").await;
}

#[tokio::test]
async fn upstream_subcommand_serves_and_closes_idle_connections() {
    let l = EPHEMERAL.to_string();
    let mut app = Running::spawn(&["upstream", "--listen", &l, "--keep-alive", "1s"]);
    let marker = "lbsim upstream: mock app on http://";
    let line = app
        .line("saying where it listens", PROCESS_LIMIT, |l| {
            l.starts_with(marker)
        })
        .await;
    let listen = announced(&line, marker);
    let expected = format!(
        "lbsim upstream: mock app on http://{listen} (keep-alive 1 s; paths: / /sleep/{{s}} \
         /stream/{{n}}?interval={{s}} /status/{{code}} /bytes/{{n}} /short/{{declared}}/{{sent}} \
         /headers /echo /close /reset /garbage /ws/echo /ws/ticker?interval={{s}} /-/healthz)"
    );
    assert_eq!(line, expected);

    let mut client = RawClient::connect(listen).await;
    let resp = client.get("/").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "ok");
    assert_eq!(resp.header("server"), Some("uvicorn"));

    // Now idle: the app closes the connection with a FIN (read returns 0) after 1 s.
    let start = Instant::now();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(READ_LIMIT, client.stream.read(&mut buf))
        .await
        .expect("the app closes the idle connection")
        .expect("a clean close, not a reset");
    let elapsed = start.elapsed();
    assert_eq!(n, 0, "unexpected bytes: {:?}", &buf[..n]);
    // The app's timer started a moment before the client's clock (when it sent the reply).
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed <= Duration::from_millis(1500),
        "closed after {elapsed:?}, expected 1 s"
    );
    app.stop().await;
}

#[tokio::test]
async fn upstream_on_a_taken_port_says_who_likely_has_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run(&["upstream", "--listen", &addr]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(
        err.contains(&format!("cannot listen on {addr}")) && err.contains("Ray Serve"),
        "{err}"
    );
    assert!(err.contains("--listen 127.0.0.1:PORT"), "{err}");
}

#[tokio::test]
async fn banner_says_what_the_next_requests_will_get_and_stop_prints_a_summary() {
    let l = EPHEMERAL.to_string();
    let nobody = free_addr().to_string();
    let mut lb = Running::spawn(&[
        "--cloud",
        "gcp-classic",
        "--listen",
        &l,
        "--upstream",
        &nobody,
        "--time-scale",
        "0.01",
    ]);
    let listen = lb.ready().await;
    lb.line("naming the dead target", PROCESS_LIMIT, |line| {
        line == format!(
            "lbsim: nothing listens on {nobody}: requests sent to it will get 502 \
             (failed_to_connect_to_backend) until an app does"
        )
    })
    .await;
    lb.line("saying GCP does not fail open", PROCESS_LIMIT, |line| {
        line == "lbsim: the GCP classic load balancer does not fail open: requests get 502 \
                 (no_healthy_backend) until 2 health checks of GET / pass, ~100 ms (10 s at \
                 full scale)"
    })
    .await;
    let mut client = RawClient::connect(listen).await;
    assert_eq!(client.get("/").await.status, 502);
    drop(client);
    lb.line("the first health check failing", PROCESS_LIMIT, |line| {
        line.contains("Initial -> Unhealthy")
    })
    .await;
    lb.signal("TERM").await;
    assert_eq!(lb.exit_code(PROCESS_LIMIT).await, Some(0));
    for expected in [
        "lbsim summary (GCP classic load balancer): 1 answered".to_string(),
        "  by status: 502 × 1".to_string(),
        format!("    #1 {nobody} unhealthy, 0 in flight"),
    ] {
        lb.line("in the summary", PROCESS_LIMIT, |line| line == expected)
            .await;
    }
    lb.line("explaining the 502 in the summary", PROCESS_LIMIT, |line| {
        line.starts_with("    502 no_healthy_backend × 1: no target passes")
    })
    .await;
}

#[tokio::test]
async fn summary_every_prints_while_running() {
    let l = EPHEMERAL.to_string();
    let mut lb = Running::spawn(&["--listen", &l, "--summary-every", "200ms"]);
    let listen = lb.ready().await;
    lb.line("printing a summary", PROCESS_LIMIT, |line| {
        line == "lbsim summary (AWS ALB): 0 answered"
    })
    .await;
    // A later summary counts what was answered since.
    assert_eq!(RawClient::connect(listen).await.get("/").await.status, 200);
    lb.line("printing the next summary", PROCESS_LIMIT, |line| {
        line.starts_with("lbsim summary (AWS ALB): 1 answered")
    })
    .await;
    lb.stop().await;
}
