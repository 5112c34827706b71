//! The access-log writer: `log()` never blocks the request path, drops are counted and
//! reported, and a file destination gets every line, in order.
mod support;

use std::io::{self, Write as _};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lbsim::accesslog::{AccessLog, ConnTraceId, LogFormat, Record};
use tokio::io::AsyncWrite;

/// A destination that never accepts a byte and never wakes its writer.
struct Stall;

impl AsyncWrite for Stall {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Pending
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Pending
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Pending
    }
}

/// A destination whose every write fails.
struct Broken;

impl AsyncWrite for Broken {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(io::Error::other("disk on fire")))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn record(path: &str) -> Record {
    let start = UNIX_EPOCH + Duration::from_secs(1_714_566_896);
    Record {
        start,
        end: start + Duration::from_millis(12),
        client: "127.0.0.1:50314".parse().unwrap(),
        listener: "127.0.0.1:8080".parse().unwrap(),
        target: Some("127.0.0.1:9000".parse().unwrap()),
        request_processing: Some(Duration::from_millis(1)),
        target_processing: Some(Duration::from_millis(10)),
        response_processing: Some(Duration::from_millis(1)),
        lb_status: Some(200),
        target_status: Some(200),
        received_bytes: 78,
        sent_bytes: 155,
        body_bytes: 2,
        method: "GET".into(),
        scheme: "http",
        host: "localhost".into(),
        port: 8080,
        path: path.into(),
        version: "HTTP/1.1",
        user_agent: Some("curl/8.5.0".into()),
        trace_id: Some("Root=1-66323af0-0123456789abcdef01234567".into()),
        referer: None,
        request_id: None,
        reason: None,
        status_details: "response_sent_by_backend",
        cut: false,
        conn_trace_id: ConnTraceId(1),
        routed: true,
        tries: Default::default(),
    }
}

const CALLS: u64 = 10_000;
const CAPACITY: usize = 64;

/// Calls `log()` CALLS times on another thread; the test fails (instead of hanging)
/// if the loop does not come back, and returns how long it took.
fn time_log_calls(log: &AccessLog) -> Duration {
    let log = log.clone();
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = record("/");
        let t = Instant::now();
        for _ in 0..CALLS {
            log.log(r.clone());
        }
        let _ = done.send(t.elapsed());
    });
    finished
        .recv_timeout(Duration::from_secs(10))
        .expect("log() blocked on a stalled writer")
}

fn assert_never_blocked(log: &AccessLog, took: Duration) {
    // A blocking log() would never return at all; 10,000 calls that only count a drop
    // take a few ms even in a debug build, and far less than this bound on a loaded CI box.
    assert!(
        took < Duration::from_millis(250),
        "10,000 log() calls took {took:?}"
    );
    let dropped = log.dropped();
    assert!(dropped > 0);
    // At most one batch in the writer's hands plus a full queue got through.
    assert!(
        dropped >= CALLS - 2 * CAPACITY as u64,
        "dropped {dropped} of {CALLS}"
    );
    assert!(dropped <= CALLS);
}

#[tokio::test]
async fn log_never_blocks_on_a_writer_that_never_becomes_ready() {
    let log = AccessLog::spawn(Stall, LogFormat::Alb, CAPACITY);
    let took = time_log_calls(&log);
    eprintln!("stalled writer: 10,000 log() calls in {took:?}");
    assert_never_blocked(&log, took);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_never_blocks_on_a_pipe_nobody_reads() {
    let (writer, _unread) = tokio::io::duplex(64);
    let log = AccessLog::spawn(writer, LogFormat::Gcp, CAPACITY);
    let took = time_log_calls(&log);
    eprintln!("unread duplex: 10,000 log() calls in {took:?}");
    assert_never_blocked(&log, took);
}

/// Everything `tracing` prints while the guard lives, on this thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let sink = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
    fn reports(&self) -> Vec<String> {
        self.text()
            .lines()
            .filter(|l| l.contains("lines dropped"))
            .map(str::to_owned)
            .collect()
    }
}

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Lets the writer task (same thread, paused clock) run until it waits again.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn drops_are_reported_at_most_once_a_second_even_while_the_writer_is_stuck() {
    let captured = Captured::default();
    let _guard = captured.install();
    let log = AccessLog::spawn(Stall, LogFormat::Json, 4);
    for _ in 0..100 {
        log.log(record("/"));
    }
    // The writer task has not run yet: 4 lines queued, 96 dropped.
    assert_eq!(log.dropped(), 96);
    settle().await;
    let reports = captured.reports();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert!(reports[0].contains("WARN"), "{}", reports[0]);
    assert!(
        reports[0].contains("96 lines dropped since the last report (96 in all)"),
        "{}",
        reports[0]
    );

    // The writer holds its first batch (stuck in write); the queue takes 4 more.
    for _ in 0..10 {
        log.log(record("/"));
    }
    assert_eq!(log.dropped(), 102);
    tokio::time::advance(Duration::from_millis(500)).await;
    settle().await;
    assert_eq!(captured.reports().len(), 1, "a second report within 1 s");
    tokio::time::advance(Duration::from_millis(600)).await;
    settle().await;
    let reports = captured.reports();
    assert_eq!(reports.len(), 2, "{reports:?}");
    assert!(
        reports[1].contains("6 lines dropped since the last report (102 in all)"),
        "{}",
        reports[1]
    );

    // Nothing new dropped: no more reports.
    tokio::time::advance(Duration::from_secs(3)).await;
    settle().await;
    assert_eq!(captured.reports().len(), 2);
}

/// The count in a report line: "... N lines dropped since the last report ...".
fn reported_count(line: &str) -> u64 {
    let before = line.split(" lines dropped").next().unwrap();
    before.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_writer_that_keeps_up_between_bursts_still_reports_once_a_second() {
    let captured = Captured::default();
    let _guard = captured.install();
    let log = AccessLog::spawn(tokio::io::sink(), LogFormat::Alb, 4);
    // 25 bursts of 10 lines, 100 ms apart: each burst overflows the queue of 4, and the
    // writer empties it (and could report) after every burst.
    for _ in 0..25 {
        for _ in 0..10 {
            log.log(record("/"));
        }
        settle().await;
        tokio::time::advance(Duration::from_millis(100)).await;
    }
    assert_eq!(log.dropped(), 25 * 6);
    // 2.5 s went by: reports at 0 s, 1 s and 2 s only.
    let reports = captured.reports();
    assert_eq!(reports.len(), 3, "{reports:#?}");
    // The rest is reported once its second is up, and every drop is reported once.
    tokio::time::advance(Duration::from_secs(1)).await;
    settle().await;
    let reports = captured.reports();
    assert_eq!(reports.len(), 4, "{reports:#?}");
    let total: u64 = reports.iter().map(|l| reported_count(l)).sum();
    assert_eq!(total, log.dropped());
}

fn temp_log_path(name: &str) -> std::path::PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    std::env::temp_dir().join(format!("lbsim-{name}-{}-{nanos}.log", std::process::id()))
}

#[tokio::test]
async fn a_file_gets_every_line_in_order_appended_after_what_it_held() {
    let path = temp_log_path("order");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(b"earlier line\n")
        .unwrap();
    let log = AccessLog::open(path.to_str().unwrap(), LogFormat::Json, 1024).unwrap();
    for i in 0..500 {
        log.log(record(&format!("/n/{i}")));
    }
    log.flush().await.unwrap();
    assert_eq!(log.dropped(), 0);
    let text = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("earlier line"),
        "the file was appended to"
    );
    let paths: Vec<String> = lines
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["path"].as_str().unwrap().to_owned()
        })
        .collect();
    let expected: Vec<String> = (0..500).map(|i| format!("/n/{i}")).collect();
    assert_eq!(paths, expected);
    assert!(text.ends_with('\n'));
}

#[tokio::test]
async fn queued_lines_are_written_when_the_last_handle_is_dropped() {
    let path = temp_log_path("drain");
    let log = AccessLog::open(path.to_str().unwrap(), LogFormat::Alb, 1024).unwrap();
    let other = log.clone();
    for i in 0..100 {
        log.log(record(&format!("/n/{i}")));
    }
    drop(log);
    drop(other);
    let deadline = Instant::now() + support::READ_LIMIT;
    let text = loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if text.lines().count() >= 100 || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let _ = std::fs::remove_file(&path);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 100);
    assert!(lines[0].contains(" \"GET http://localhost:8080/n/0 HTTP/1.1\" "));
    assert!(lines[99].contains(" \"GET http://localhost:8080/n/99 HTTP/1.1\" "));
}

#[tokio::test]
async fn a_failing_destination_stops_the_writer_and_counts_what_is_lost() {
    let log = AccessLog::spawn(Broken, LogFormat::Alb, 16);
    log.log(record("/"));
    let err = log.flush().await.expect_err("the write failed");
    assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    assert_eq!(log.dropped(), 1, "the failed batch is counted");
    for _ in 0..5 {
        log.log(record("/"));
    }
    assert_eq!(log.dropped(), 6);
}

#[tokio::test]
async fn dash_means_stdout_not_a_file_named_dash() {
    let log = AccessLog::open("-", LogFormat::Json, 16).unwrap();
    log.flush().await.unwrap();
    assert!(!std::path::Path::new("-").exists());
    let missing_dir = temp_log_path("nodir").join("x.log");
    assert!(AccessLog::open(missing_dir.to_str().unwrap(), LogFormat::Json, 16).is_err());
}
