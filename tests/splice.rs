//! Long Content-Length response bodies moved socket to socket by `splice(2)`
//! (`src/lb/h1/splice.rs`): bytes arrive intact, only plain TCP clients get them spliced
//! (`Counts::spliced_bytes`), the deadline sees every move (AWS idle, GCP end to end),
//! and a client that stops reading is cut as on the copying path.
//!
//! The app is a raw socket so that every byte and every pause of the target is known;
//! byte `i` of every body is `i mod 251` (a byte lost, doubled or moved shows). Each test
//! checks that every TCP socket it opened is closed again, so they run one at a time.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lbsim::{Cloud, Reason, SimHandle, Simulator, Tls};
use support::{assert_elapsed, lb, wait_until, SocketsCheck, READ_LIMIT};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::ServerName;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
/// lbsim's `SPLICE_MIN`: what arrives with the head, or the last bytes, may be copied.
const SPLICE_MIN: u64 = 256 * KIB as u64;
/// The timeout under test (AWS idle, GCP backend).
const TIMEOUT: Duration = Duration::from_millis(500);
/// Timing slack for a loaded 2-core machine.
const TOLERANCE: Duration = Duration::from_millis(250);
/// The trickle: `TRICKLE_PIECES` pieces of `TRICKLE_PIECE` bytes, `TRICKLE_GAP` apart,
/// about four times [`TIMEOUT`] in all.
const TRICKLE_PIECE: usize = 512 * KIB;
const TRICKLE_PIECES: usize = 20;
const TRICKLE_GAP: Duration = Duration::from_millis(100);

/// Bytes `start..start + len` of every body: byte `i` is `i mod 251`.
fn pattern(start: usize, len: usize) -> Vec<u8> {
    // Built by repeating one period: byte by byte, 64 MiB take the app longer (in a
    // debug build) than the timeouts under test.
    let mut period: Vec<u8> = (0..251u8).collect();
    period.rotate_left(start % 251);
    let mut out = period.repeat(len / 251 + 1);
    out.truncate(len);
    out
}

/// Asserts `body` is the first `body.len()` bytes of the pattern, naming the first
/// wrong byte (not a megabyte-long diff).
#[track_caller]
fn assert_pattern_prefix(body: &[u8]) {
    if let Some(at) = body
        .iter()
        .enumerate()
        .position(|(i, b)| *b != (i % 251) as u8)
    {
        panic!(
            "byte {at} of {} is {}, expected {}",
            body.len(),
            body[at],
            at % 251
        );
    }
}

// ---------------------------------------------------------------------------------------
// The app: a raw listener; what it sends is chosen by the request's path.

/// A raw app on a free loopback port.
struct RawApp {
    addr: SocketAddr,
    /// Connections accepted.
    accepted: Arc<AtomicUsize>,
    /// Connections whose handler ended (lbsim closed them, or a write failed).
    ended: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl RawApp {
    async fn start() -> RawApp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let ended = Arc::new(AtomicUsize::new(0));
        let (counted, finished) = (accepted.clone(), ended.clone());
        let task = tokio::spawn(async move {
            // Dropped with the accept task: every connection's task ends with it.
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                stream.set_nodelay(true).unwrap();
                let finished = finished.clone();
                conns.spawn(async move {
                    serve(BufReader::new(stream)).await;
                    finished.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        RawApp {
            addr,
            accepted,
            ended,
            task,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn ended(&self) -> usize {
        self.ended.load(Ordering::SeqCst)
    }

    /// Stops lbsim and the app, then checks every socket of the test closed.
    async fn finish(self, lb: SimHandle, sockets: SocketsCheck) {
        lb.shutdown().await;
        self.task.abort();
        let _ = self.task.await;
        sockets.all_closed().await;
    }
}

/// The path of the next request (a GET: no body); `None` when the connection ends.
async fn request_path(io: &mut BufReader<TcpStream>) -> Option<String> {
    let mut head = Vec::new();
    loop {
        let n = io.read_until(b'\n', &mut head).await.ok()?;
        if n == 0 {
            return None;
        }
        if head.ends_with(b"\r\n\r\n") {
            break;
        }
    }
    let line = String::from_utf8_lossy(&head).into_owned();
    Some(line.split(' ').nth(1)?.to_string())
}

fn length_head(len: usize) -> Vec<u8> {
    format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nContent-Type: application/octet-stream\r\n\r\n")
        .into_bytes()
}

/// Answers requests until the connection ends:
/// - `/length/N`: N bytes with a Content-Length, head and body in one write;
/// - `/paused/N`: the same, the body 100 ms after the head (so that none of it comes
///   with the head and all of it can be spliced);
/// - `/chunked/N`: N bytes chunked, 64 KiB a chunk;
/// - `/stall`: Content-Length 10 MiB, the head, 300 ms later 1 MiB, then nothing;
/// - `/trickle`: Content-Length 10 MiB, the head, then 512 KiB every 100 ms.
async fn serve(mut io: BufReader<TcpStream>) {
    while let Some(path) = request_path(&mut io).await {
        let (kind, len) = path[1..].split_once('/').unwrap_or((&path[1..], ""));
        let len: usize = len.parse().unwrap_or(0);
        let conn = io.get_mut();
        let sent = match kind {
            "length" => {
                let mut out = length_head(len);
                out.extend_from_slice(&pattern(0, len));
                conn.write_all(&out).await
            }
            "paused" => {
                let head = conn.write_all(&length_head(len)).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                match head {
                    Ok(()) => conn.write_all(&pattern(0, len)).await,
                    Err(e) => Err(e),
                }
            }
            "chunked" => {
                let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
                let body = pattern(0, len);
                for chunk in body.chunks(64 * KIB) {
                    out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                    out.extend_from_slice(chunk);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
                conn.write_all(&out).await
            }
            "stall" => {
                let _ = conn.write_all(&length_head(10 * MIB)).await;
                tokio::time::sleep(Duration::from_millis(300)).await;
                let _ = conn.write_all(&pattern(0, MIB)).await;
                // Nothing more: wait for lbsim to close the connection.
                let mut rest = Vec::new();
                let _ = tokio::time::timeout(READ_LIMIT, io.read_to_end(&mut rest)).await;
                return;
            }
            "trickle" => {
                let mut sent = conn
                    .write_all(&length_head(TRICKLE_PIECES * TRICKLE_PIECE))
                    .await;
                for piece in 0..TRICKLE_PIECES {
                    if sent.is_err() {
                        break;
                    }
                    tokio::time::sleep(TRICKLE_GAP).await;
                    sent = conn
                        .write_all(&pattern(piece * TRICKLE_PIECE, TRICKLE_PIECE))
                        .await;
                }
                sent
            }
            other => panic!("the app has no {other:?}"),
        };
        if sent.is_err() {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------
// The client: raw bytes over plain TCP or TLS.

/// One client connection.
struct Client<S> {
    io: S,
    buf: Vec<u8>,
}

impl Client<TcpStream> {
    async fn connect(addr: SocketAddr) -> Client<TcpStream> {
        let io = TcpStream::connect(addr).await.unwrap();
        io.set_nodelay(true).unwrap();
        Client {
            io,
            buf: Vec::new(),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    async fn get(&mut self, path: &str) {
        self.io
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: lbsim.test\r\n\r\n").as_bytes())
            .await
            .unwrap();
    }

    /// Reads more; false at end of stream (a reset counts as one).
    async fn fill(&mut self) -> bool {
        self.buf.reserve(256 * KIB);
        let n = tokio::time::timeout(READ_LIMIT, self.io.read_buf(&mut self.buf))
            .await
            .unwrap_or_else(|_| panic!("no bytes from lbsim within {READ_LIMIT:?}"))
            .unwrap_or(0);
        n > 0
    }

    /// The response head (to the empty line), as text.
    async fn head(&mut self) -> String {
        loop {
            if let Some(at) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..at + 4).collect();
                return String::from_utf8(head).unwrap();
            }
            assert!(self.fill().await, "closed before the response head");
        }
    }

    /// Up to `len` body bytes: fewer when the connection closes first.
    async fn body(&mut self, len: usize) -> Vec<u8> {
        while self.buf.len() < len && self.fill().await {}
        let n = self.buf.len().min(len);
        self.buf.drain(..n).collect()
    }

    /// A chunked body, de-chunked (the trailer section must be empty).
    async fn chunked_body(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let line = loop {
                if let Some(at) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    let line: Vec<u8> = self.buf.drain(..at + 2).collect();
                    break String::from_utf8(line).unwrap();
                }
                assert!(self.fill().await, "closed inside a chunk-size line");
            };
            let size = usize::from_str_radix(line.trim_end().split(';').next().unwrap(), 16)
                .unwrap_or_else(|_| panic!("not a chunk-size line: {line:?}"));
            let data = self.body(size + 2).await;
            assert_eq!(data.len(), size + 2, "closed inside a chunk");
            if size == 0 {
                assert_eq!(data, b"\r\n", "no trailers");
                return body;
            }
            assert!(data.ends_with(b"\r\n"), "chunk data ends with CRLF");
            body.extend_from_slice(&data[..size]);
        }
    }

    /// Waits for the end of the connection, with no byte before it.
    async fn closes(&mut self) {
        assert!(!self.fill().await, "bytes after the body: {:?}", self.buf);
    }
}

/// The value of field `name` in `head` (any case).
fn field<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(": "))
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

#[track_caller]
fn assert_ok_head(head: &str, length: Option<usize>) {
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(
        field(head, "content-length"),
        length.map(|n| n.to_string()).as_deref(),
        "{head}"
    );
}

// ---------------------------------------------------------------------------------------
// 1. A long download over plain TCP is spliced, byte for byte, and the connections stay
//    usable.

#[tokio::test]
async fn a_long_download_over_plain_tcp_is_spliced_byte_for_byte() {
    let sockets = SocketsCheck::begin().await;
    let app = RawApp::start().await;
    let lb = lb(Cloud::Aws, app.addr, Duration::from_secs(10)).await;
    let mut client = Client::connect(lb.addr()).await;
    let len = 8 * MIB;
    client.get(&format!("/length/{len}")).await;
    assert_ok_head(&client.head().await, Some(len));
    let body = client.body(len).await;
    assert_eq!(body.len(), len, "body cut short");
    assert_pattern_prefix(&body);
    let spliced = lb.stats().spliced_bytes;
    // Head and body came in one write: what came with the head (and, at most, the last
    // SPLICE_MIN) may be copied, the rest is spliced.
    assert!(
        spliced > 0 && spliced >= (len as u64) - SPLICE_MIN,
        "{spliced} of {len} bytes spliced"
    );
    assert!(spliced <= len as u64);

    // The same client connection and the same target connection carry more: a spliced
    // body whose bytes all come after the head (all of it spliced but a tail under
    // SPLICE_MIN at most), then a short one (copied).
    let second = MIB;
    client.get(&format!("/paused/{second}")).await;
    assert_ok_head(&client.head().await, Some(second));
    let body = client.body(second).await;
    assert_eq!(body.len(), second, "second body cut short");
    assert_pattern_prefix(&body);
    let more = lb.stats().spliced_bytes - spliced;
    assert!(
        more >= second as u64 - SPLICE_MIN && more <= second as u64,
        "{more} of {second} bytes spliced"
    );
    client.get("/length/10").await;
    assert_ok_head(&client.head().await, Some(10));
    assert_eq!(client.body(10).await, pattern(0, 10));
    assert_eq!(
        lb.stats().spliced_bytes - spliced,
        more,
        "10 bytes are copied"
    );
    assert_eq!(
        app.accepted(),
        1,
        "the target connection is reused after a spliced body"
    );
    let stats = lb.stats();
    assert_eq!(stats.by_status.get(&200), Some(&3));
    assert!(stats.by_cause.is_empty(), "{:?}", stats.by_cause);
    drop(client);
    app.finish(lb, sockets).await;
}

// 2. TLS clients and chunked bodies are copied.

#[tokio::test]
async fn a_long_download_over_tls_is_copied_intact() {
    let sockets = SocketsCheck::begin().await;
    let dir = support::scratch("splice", "tls");
    let ca = dir.join("ca.pem");
    let app = RawApp::start().await;
    let lb = Simulator::builder(Cloud::Aws)
        .upstream(app.addr)
        .no_health_checks()
        .idle_timeout(Duration::from_secs(10))
        .tls(Tls::Generate { ca_out: ca.clone() })
        .start()
        .await
        .expect("lbsim starts");
    let tcp = TcpStream::connect(lb.addr()).await.unwrap();
    let name = ServerName::try_from("localhost".to_string()).unwrap();
    let io = tokio::time::timeout(
        READ_LIMIT,
        support::tls_client(&ca, &[b"http/1.1"]).connect(name, tcp),
    )
    .await
    .expect("handshake in time")
    .expect("handshake succeeds");
    let mut client = Client {
        io,
        buf: Vec::new(),
    };
    let len = 8 * MIB;
    // Both shapes: body with the head, and body after a pause (splice-eligible on TCP).
    for path in [format!("/length/{len}"), format!("/paused/{len}")] {
        client.get(&path).await;
        assert_ok_head(&client.head().await, Some(len));
        let body = client.body(len).await;
        assert_eq!(body.len(), len, "{path}: body cut short");
        assert_pattern_prefix(&body);
    }
    let stats = lb.stats();
    assert_eq!(stats.spliced_bytes, 0, "TLS needs the bytes: never spliced");
    assert_eq!(stats.by_status.get(&200), Some(&2));
    drop(client);
    app.finish(lb, sockets).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_long_chunked_download_is_copied_intact() {
    let sockets = SocketsCheck::begin().await;
    let app = RawApp::start().await;
    let lb = lb(Cloud::Aws, app.addr, Duration::from_secs(10)).await;
    let mut client = Client::connect(lb.addr()).await;
    let len = 8 * MIB;
    client.get(&format!("/chunked/{len}")).await;
    let head = client.head().await;
    assert_ok_head(&head, None);
    assert_eq!(field(&head, "transfer-encoding"), Some("chunked"), "{head}");
    let body = client.chunked_body().await;
    assert_eq!(body.len(), len);
    assert_pattern_prefix(&body);
    // The connection is kept: a short answer follows.
    client.get("/length/10").await;
    assert_ok_head(&client.head().await, Some(10));
    assert_eq!(client.body(10).await, pattern(0, 10));
    assert_eq!(lb.stats().spliced_bytes, 0, "chunks are copied");
    drop(client);
    app.finish(lb, sockets).await;
}

// 3. A spliced body that stalls is cut at the idle timeout after its last byte.

#[tokio::test]
async fn aws_a_spliced_body_that_stalls_is_cut_at_the_idle_timeout_after_its_last_byte() {
    let sockets = SocketsCheck::begin().await;
    let app = RawApp::start().await;
    let lb = lb(Cloud::Aws, app.addr, TIMEOUT).await;
    let mut client = Client::connect(lb.addr()).await;
    client.get("/stall").await;
    assert_ok_head(&client.head().await, Some(10 * MIB));
    // The app pauses 300 ms after the head: were the spliced megabyte not activity, the
    // cut would come 200 ms after it.
    let body = client.body(MIB).await;
    let last_byte_at = Instant::now();
    assert_eq!(body.len(), MIB);
    assert_pattern_prefix(&body);
    client.closes().await;
    let stalled_for = last_byte_at.elapsed();
    assert!(
        stalled_for + Duration::from_millis(50) >= TIMEOUT,
        "cut {stalled_for:?} after the last byte, before the idle timeout {TIMEOUT:?}"
    );
    assert_elapsed(stalled_for, TIMEOUT, TOLERANCE);
    let stats = lb.stats();
    assert_eq!(
        stats.count(Reason::TargetTimeout),
        1,
        "{:?}",
        stats.by_cause
    );
    assert_eq!(
        stats.by_cause.values().sum::<u64>(),
        1,
        "{:?}",
        stats.by_cause
    );
    assert_eq!(
        stats.spliced_bytes, MIB as u64,
        "the whole megabyte is spliced"
    );
    wait_until(
        "lbsim closes the target connection after the cut",
        Duration::from_secs(2),
        || app.ended() == 1,
    )
    .await;
    drop(client);
    app.finish(lb, sockets).await;
}

// 4. A trickle: AWS lets it through (each splice is activity), GCP cuts it end to end.

/// Starts `GET /trickle` behind `cloud` with [`TIMEOUT`]; the body as far as it came,
/// the time from the request to the body's end, and lbsim.
async fn trickle(cloud: Cloud) -> (RawApp, SimHandle, Vec<u8>, Duration) {
    let app = RawApp::start().await;
    let lb = lb(cloud, app.addr, TIMEOUT).await;
    let mut client = Client::connect(lb.addr()).await;
    let start = Instant::now();
    client.get("/trickle").await;
    let len = TRICKLE_PIECES * TRICKLE_PIECE;
    assert_ok_head(&client.head().await, Some(len));
    let body = client.body(len).await;
    if body.len() == len {
        // Whole: the connection is kept.
        client.get("/length/10").await;
        assert_ok_head(&client.head().await, Some(10));
    } else {
        client.closes().await;
    }
    let elapsed = start.elapsed();
    assert_pattern_prefix(&body);
    (app, lb, body, elapsed)
}

#[tokio::test]
async fn aws_a_spliced_trickle_longer_than_the_idle_timeout_arrives_whole() {
    let sockets = SocketsCheck::begin().await;
    let (app, lb, body, elapsed) = trickle(Cloud::Aws).await;
    let len = TRICKLE_PIECES * TRICKLE_PIECE;
    assert_eq!(body.len(), len, "the trickle was cut after {elapsed:?}");
    assert!(
        elapsed >= TRICKLE_GAP * TRICKLE_PIECES as u32,
        "took {elapsed:?}: not a trickle"
    );
    let stats = lb.stats();
    assert!(stats.by_cause.is_empty(), "{:?}", stats.by_cause);
    // Every piece comes after a pause, so all but a last tail under SPLICE_MIN is spliced.
    assert!(
        stats.spliced_bytes >= len as u64 - SPLICE_MIN && stats.spliced_bytes <= len as u64,
        "{} of {len} bytes spliced",
        stats.spliced_bytes
    );
    app.finish(lb, sockets).await;
}

#[tokio::test]
async fn gcp_a_spliced_trickle_is_cut_at_the_backend_timeout() {
    let sockets = SocketsCheck::begin().await;
    let (app, lb, body, elapsed) = trickle(Cloud::Gcp).await;
    let len = TRICKLE_PIECES * TRICKLE_PIECE;
    assert!(
        !body.is_empty() && body.len() < len,
        "{} of {len} bytes arrived",
        body.len()
    );
    assert!(
        elapsed + Duration::from_millis(50) >= TIMEOUT,
        "cut after {elapsed:?}, before the timeout"
    );
    assert_elapsed(elapsed, TIMEOUT, TOLERANCE);
    let stats = lb.stats();
    assert_eq!(
        stats.count(Reason::TargetTimeout),
        1,
        "{:?}",
        stats.by_cause
    );
    assert!(stats.spliced_bytes > 0, "the trickle was not spliced");
    app.finish(lb, sockets).await;
}

// 5. A client that never reads a spliced body is cut at the idle timeout.

#[tokio::test]
async fn aws_a_client_that_never_reads_a_spliced_body_is_cut() {
    let sockets = SocketsCheck::begin().await;
    let app = RawApp::start().await;
    let lb = lb(Cloud::Aws, app.addr, TIMEOUT).await;
    let mut client = Client::connect(lb.addr()).await;
    let len = 64 * MIB;
    let start = Instant::now();
    client.get(&format!("/paused/{len}")).await;
    // Never read: once the socket buffers and the pipe are full, no byte moves.
    wait_until(
        "the LB cuts the stalled response",
        Duration::from_secs(5),
        || lb.stats().count(Reason::TargetTimeout) == 1,
    )
    .await;
    let cut_after = start.elapsed();
    // The buffers fill within milliseconds of the body's start (100 ms after the
    // request); the cut comes one idle timeout after that.
    assert!(
        cut_after >= TIMEOUT && cut_after <= TIMEOUT + Duration::from_millis(100) + TOLERANCE,
        "cut {cut_after:?} after the request"
    );
    let stats = lb.stats();
    assert!(stats.spliced_bytes > 0, "the body was not spliced");
    assert_eq!(
        stats.by_cause.values().sum::<u64>(),
        1,
        "{:?}",
        stats.by_cause
    );
    // What reaches the client is what sat in the buffers, then the connection closes.
    let head = client.head().await;
    assert_ok_head(&head, Some(len));
    let body = client.body(len).await;
    assert!(
        !body.is_empty() && body.len() < 16 * MIB,
        "{} bytes reached a client that did not read",
        body.len()
    );
    assert_pattern_prefix(&body);
    wait_until(
        "lbsim closes the target connection after the cut",
        Duration::from_secs(2),
        || app.ended() == 1,
    )
    .await;
    drop(client);
    app.finish(lb, sockets).await;
}
