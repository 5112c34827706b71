//! The embedded mock upstream: a small app that behaves like a Ray Serve/uvicorn app,
//! with a path for each upstream behaviour a load balancer has to cope with.
//!
//! It is written on raw sockets, not on hyper nor as a tower `Service` (both deal in
//! well-formed requests and responses, not bytes), because it must misbehave in ways a
//! well-made HTTP server never does: close without answering, reset, send garbage, and
//! close idle keep-alive connections with a bare FIN exactly as uvicorn does.
//!
//! | path | behaviour |
//! |---|---|
//! | `/` | 200 `ok` |
//! | `/sleep/{seconds}` | waits, then 200 |
//! | `/stream/{chunks}?interval={seconds}` | head at once, then one chunk per interval |
//! | `/status/{code}` | that status, body `status {code}` |
//! | `/bytes/{n}` | n bytes of `x` with a Content-Length |
//! | `/short/{declared}/{sent}` | declares one Content-Length, sends fewer bytes, stalls |
//! | `/headers` | the request head as received, as the body |
//! | `/echo` | the request body back (up to 16 MiB) |
//! | `/close` | reads the request, closes without answering (FIN) |
//! | `/reset` | reads the request, resets the connection (RST) |
//! | `/garbage` | answers bytes that are not HTTP |
//! | `/ws/echo` | WebSocket handshake (101), then every byte received sent back as is |
//! | `/ws/ticker?interval={seconds}` | WebSocket handshake, then a text frame per interval |
//! | `/-/healthz` | 200 `success` |

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// uvicorn's default `--timeout-keep-alive`: what an app gets unless it changes it.
pub(crate) const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(5);

/// A request head larger than this is refused, as uvicorn's h11 does.
const MAX_HEAD: usize = 64 * 1024;

/// `/echo` buffers the body; bound it so a test cannot exhaust memory.
const MAX_ECHO: usize = 16 * 1024 * 1024;

/// How the mock app behaves.
#[derive(Clone, Debug)]
pub struct MockOptions {
    /// Idle keep-alive: a connection with no new request for this long is closed (FIN).
    pub keep_alive: Duration,
    /// Added before every answer, to imitate a slower app.
    pub latency: Duration,
    /// Ray Serve's `max_queued_requests`: with this many requests queued behind
    /// [`MockOptions::max_ongoing_requests`] running ones, Ray's proxy answers the next
    /// with its own 503. `None`: unlimited (Ray's default, -1).
    pub max_queued_requests: Option<usize>,
    /// Ray Serve's `max_ongoing_requests` (Ray 2.x default: 5), counted with the queue.
    pub max_ongoing_requests: usize,
    /// Ray Serve's `http_options.request_timeout_s`: a request still without an answer
    /// after this long gets Ray's own 408. `None`: no timeout (Ray's default).
    pub request_timeout: Option<Duration>,
}

impl Default for MockOptions {
    fn default() -> Self {
        MockOptions {
            keep_alive: DEFAULT_KEEP_ALIVE,
            latency: Duration::ZERO,
            max_queued_requests: None,
            max_ongoing_requests: RAY_DEFAULT_MAX_ONGOING_REQUESTS,
            request_timeout: None,
        }
    }
}

/// Ray Serve's default `max_ongoing_requests` (since Ray 2.32; 100 before).
pub(crate) const RAY_DEFAULT_MAX_ONGOING_REQUESTS: usize = 5;

/// Ray Serve's own answer when a deployment's queue is full: `BackPressureError.message`
/// (ray/serve/exceptions.py), sent by Ray's proxy with status 503
/// (`get_http_response_status` in ray/serve/_private/http_util.py).
pub(crate) fn ray_backpressure_body(queued: usize, max_queued: usize) -> String {
    format!(
        "Request dropped due to backpressure (num_queued_requests={queued}, \
         max_queued_requests={max_queued})."
    )
}

/// Ray Serve's own answer when `request_timeout_s` runs out before the response starts:
/// status 408 (ray/serve/_private/http_util.py, `get_http_response_status`). Python
/// prints the float timeout with its decimal point ("2.0s").
pub(crate) fn ray_timeout_body(request_id: &str, timeout: Duration) -> String {
    format!(
        "Request {request_id} timed out after {:?}s.",
        timeout.as_secs_f64()
    )
}

/// Content type of Ray Serve's own text answers (a `str` through Serve's response
/// conversion; inferred from Ray's source, not captured).
const RAY_TEXT: &str = "text/plain; charset=utf-8";

/// Counters a test reads to prove what reached the app.
#[derive(Debug, Default)]
pub struct MockStats {
    /// Request heads fully received.
    pub requests: AtomicU64,
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Connections closed by the keep-alive timer.
    pub idle_closes: AtomicU64,
    /// Requests being answered now, for Ray's `max_ongoing_requests` + `max_queued_requests`.
    pub in_progress: std::sync::atomic::AtomicUsize,
    /// Ray Serve's own 503s (backpressure) and 408s (request timeout) sent.
    pub ray_rejections: AtomicU64,
}

/// Serves the mock app on `listener` until the task is dropped; open connections end
/// when `kill` turns true.
pub(crate) async fn run(
    listener: TcpListener,
    opts: MockOptions,
    stats: Arc<MockStats>,
    kill: watch::Receiver<bool>,
) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("mock upstream accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        stats.connections.fetch_add(1, Ordering::Relaxed);
        let opts = opts.clone();
        let stats = stats.clone();
        let mut kill = kill.clone();
        tokio::spawn(async move {
            tokio::select! {
                served = serve_connection(stream, &opts, &stats) => {
                    if let Err(e) = served {
                        tracing::debug!("mock upstream connection ended: {e}");
                    }
                }
                // A crash: the socket is dropped, the kernel closes it.
                _ = kill.wait_for(|k| *k) => {}
            }
        });
    }
}

/// Every path the mock app serves, as the banners list them.
pub(crate) const PATHS: &[&str] = &[
    "/",
    "/sleep/{s}",
    "/stream/{n}?interval={s}",
    "/status/{code}",
    "/bytes/{n}",
    "/short/{declared}/{sent}",
    "/headers",
    "/echo",
    "/close",
    "/reset",
    "/garbage",
    "/ws/echo",
    "/ws/ticker?interval={s}",
    "/-/healthz",
];

/// A mock upstream running on its own task; dropping the handle stops it.
#[derive(Debug)]
pub struct MockUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it has seen.
    pub stats: Arc<MockStats>,
    task: tokio::task::JoinHandle<()>,
    kill: watch::Sender<bool>,
}

impl MockUpstream {
    /// Binds `addr` (port 0 for a free port) and starts serving.
    pub async fn start(addr: SocketAddr, opts: MockOptions) -> io::Result<MockUpstream> {
        let listener = crate::net::bind(addr)?;
        let addr = listener.local_addr()?;
        let stats = Arc::new(MockStats::default());
        let kill = watch::channel(false).0;
        let task = tokio::spawn(run(listener, opts, stats.clone(), kill.subscribe()));
        Ok(MockUpstream {
            addr,
            stats,
            task,
            kill,
        })
    }

    /// Requests received so far.
    pub fn requests(&self) -> u64 {
        self.stats.requests.load(Ordering::Relaxed)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.stats.connections.load(Ordering::Relaxed)
    }

    /// Idle keep-alive connections closed by the app so far.
    pub fn idle_closes(&self) -> u64 {
        self.stats.idle_closes.load(Ordering::Relaxed)
    }

    /// Stops accepting; open connections finish on their own (a graceful stop).
    pub fn stop(&self) {
        self.task.abort();
    }

    /// Stops accepting and closes every open connection at once, as a crashed app does.
    pub fn kill(&self) {
        self.task.abort();
        let _ = self.kill.send(true);
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Counts a request as in progress while it lives.
struct InProgress<'a> {
    stats: &'a MockStats,
    /// Requests in progress, this one included, when it started.
    count: usize,
}

impl<'a> InProgress<'a> {
    fn start(stats: &'a MockStats) -> Self {
        let count = stats.in_progress.fetch_add(1, Ordering::Relaxed) + 1;
        InProgress { stats, count }
    }
}

impl Drop for InProgress<'_> {
    fn drop(&mut self) {
        self.stats.in_progress.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How long `/sleep/{s}` makes the handler think (zero for other paths).
fn sleep_of(head: &Head) -> Duration {
    match head
        .path
        .trim_start_matches('/')
        .split('/')
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["sleep", s] => seconds(s).unwrap_or_default(),
        _ => Duration::ZERO,
    }
}

/// A request id shaped like Ray Serve's (a UUID4).
fn request_id() -> String {
    let r: u128 = rand::random();
    let hex = format!("{r:032x}");
    format!(
        "{}-{}-4{}-a{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

/// A parsed request head.
struct Head {
    method: String,
    path: String,
    query: String,
    raw: Vec<u8>,
    content_length: Option<usize>,
    chunked: bool,
    close: bool,
    /// `Sec-WebSocket-Key`, when the request is a WebSocket handshake.
    websocket_key: Option<String>,
}

async fn serve_connection(
    stream: TcpStream,
    opts: &MockOptions,
    stats: &MockStats,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut conn = BufReader::new(stream);
    loop {
        let head = match tokio::time::timeout(opts.keep_alive, read_head(&mut conn)).await {
            // uvicorn closes an idle keep-alive connection with a plain FIN, no response.
            Err(_) => {
                stats.idle_closes.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            Ok(Ok(Some(head))) => head,
            Ok(Ok(None)) => return Ok(()),
            Ok(Err(e)) => {
                let msg = b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: 11\r\nconnection: close\r\n\r\nBad Request";
                conn.get_mut().write_all(msg).await?;
                return Err(e);
            }
        };
        stats.requests.fetch_add(1, Ordering::Relaxed);
        let body = read_body(&mut conn, &head).await?;
        let arrived = tokio::time::Instant::now();
        let running = InProgress::start(stats);
        if let Some(max_queued) = opts.max_queued_requests {
            let queued = running.count.saturating_sub(opts.max_ongoing_requests + 1);
            if running.count > opts.max_ongoing_requests + max_queued {
                // Ray's proxy answers for the app: the request never reaches it.
                stats.ray_rejections.fetch_add(1, Ordering::Relaxed);
                let text = ray_backpressure_body(queued, max_queued);
                write_simple(conn.get_mut(), 503, RAY_TEXT, text.as_bytes()).await?;
                continue;
            }
        }
        let think = opts.latency + sleep_of(&head);
        if let Some(limit) = opts.request_timeout.filter(|limit| think > *limit) {
            tokio::time::sleep_until(arrived + limit).await;
            stats.ray_rejections.fetch_add(1, Ordering::Relaxed);
            let text = ray_timeout_body(&request_id(), limit);
            write_simple(conn.get_mut(), 408, RAY_TEXT, text.as_bytes()).await?;
            continue;
        }
        if !opts.latency.is_zero() {
            tokio::time::sleep(opts.latency).await;
        }
        let answered = if head.path.starts_with("/ws/") {
            websocket(&mut conn, &head).await?
        } else {
            respond(conn.get_mut(), &head, body).await?
        };
        drop(running);
        if !answered || head.close {
            return Ok(());
        }
    }
}

/// Reads one request head; `None` on a clean EOF between requests.
async fn read_head(conn: &mut BufReader<TcpStream>) -> io::Result<Option<Head>> {
    let mut raw = Vec::new();
    loop {
        let n = conn.read_until(b'\n', &mut raw).await?;
        if n == 0 {
            return if raw.is_empty() {
                Ok(None)
            } else {
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "eof inside request head",
                ))
            };
        }
        if raw.len() > MAX_HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request head too large",
            ));
        }
        if raw == b"\r\n" || raw == b"\n" {
            // Tolerate a stray CRLF between requests, as h11 does.
            raw.clear();
            continue;
        }
        if raw.ends_with(b"\r\n\r\n") || raw.ends_with(b"\n\n") {
            break;
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 100];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(&raw) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) | Err(_) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "malformed request head",
            ))
        }
    }
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut content_length = None;
    let mut chunked = false;
    let mut close = req.version == Some(0);
    let mut websocket_key = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("sec-websocket-key") {
            websocket_key = Some(String::from_utf8_lossy(h.value).trim().to_string());
        }
        let value = String::from_utf8_lossy(h.value).to_ascii_lowercase();
        if h.name.eq_ignore_ascii_case("content-length") {
            content_length = value.trim().parse().ok();
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.contains("chunked");
        } else if h.name.eq_ignore_ascii_case("connection") {
            close = value.contains("close");
        }
    }
    Ok(Some(Head {
        method: req.method.unwrap_or("GET").to_string(),
        path: path.to_string(),
        query: query.to_string(),
        content_length,
        chunked,
        close,
        websocket_key,
        raw: raw.clone(),
    }))
}

/// Reads the request body (kept only up to [`MAX_ECHO`]).
async fn read_body(conn: &mut BufReader<TcpStream>, head: &Head) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    if head.chunked {
        loop {
            let mut line = String::new();
            conn.read_line(&mut line).await?;
            let size_text = line.trim().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            if size == 0 {
                // Trailers until the empty line.
                loop {
                    line.clear();
                    if conn.read_line(&mut line).await? == 0 || line.trim().is_empty() {
                        return Ok(body);
                    }
                }
            }
            copy_some(conn, size as u64, &mut body).await?;
            line.clear();
            conn.read_line(&mut line).await?;
        }
    } else if let Some(len) = head.content_length {
        copy_some(conn, len as u64, &mut body).await?;
    }
    Ok(body)
}

async fn copy_some(
    conn: &mut BufReader<TcpStream>,
    len: u64,
    keep: &mut Vec<u8>,
) -> io::Result<()> {
    let mut left = len;
    let mut buf = [0u8; 16 * 1024];
    while left > 0 {
        let want = buf.len().min(left as usize);
        let n = conn.read(&mut buf[..want]).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "eof inside request body",
            ));
        }
        if keep.len() + n <= MAX_ECHO {
            keep.extend_from_slice(&buf[..n]);
        }
        left -= n as u64;
    }
    Ok(())
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn seconds(text: &str) -> Option<Duration> {
    text.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

fn reason_phrase(status: u16) -> &'static str {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Unknown")
}

async fn write_simple(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &[u8],
) -> io::Result<bool> {
    let head = format!(
        "HTTP/1.1 {status} {}\r\ndate: {}\r\nserver: uvicorn\r\ncontent-length: {}\r\ncontent-type: {content_type}\r\n\r\n",
        reason_phrase(status),
        httpdate_now(),
        body.len()
    );
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    stream.write_all(&out).await?;
    Ok(true)
}

fn httpdate_now() -> String {
    httpdate::fmt_http_date(std::time::SystemTime::now())
}

/// The WebSocket paths: a handshake (101 with the accept key), then raw bytes until the
/// client closes. Frames are not parsed: `/ws/echo` sends back exactly the bytes it got
/// (a real server unmasks client frames; lbsim only relays bytes, so an echo is what a
/// test needs to see both directions), `/ws/ticker` writes one unmasked text frame per
/// interval. False: the connection has ended (it is never HTTP again).
async fn websocket(conn: &mut BufReader<TcpStream>, head: &Head) -> io::Result<bool> {
    let Some(key) = head.websocket_key.as_deref() else {
        return write_simple(
            conn.get_mut(),
            400,
            "text/plain",
            b"not a WebSocket handshake",
        )
        .await;
    };
    let ticker = match head.path.as_str() {
        "/ws/echo" => None,
        "/ws/ticker" => Some(
            query_param(&head.query, "interval")
                .and_then(seconds)
                .unwrap_or(Duration::from_secs(1))
                // A zero interval would spin; one tick per millisecond is plenty.
                .max(Duration::from_millis(1)),
        ),
        _ => return write_simple(conn.get_mut(), 404, "text/plain", b"not found").await,
    };
    let handshake = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        crate::lb::websocket::accept_key(key)
    );
    conn.get_mut().write_all(handshake.as_bytes()).await?;
    let mut buf = [0u8; 16 * 1024];
    let Some(interval) = ticker else {
        loop {
            // Through the BufReader: frames sent right behind the handshake are in it.
            let n = conn.read(&mut buf).await?;
            if n == 0 {
                return Ok(false);
            }
            conn.get_mut().write_all(&buf[..n]).await?;
        }
    };
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    let mut sent = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let text = format!("tick {sent}");
                // FIN + text opcode, then an unmasked length under 126: server frames
                // are never masked (RFC 6455 section 5.1).
                let mut frame = vec![0x81, text.len() as u8];
                frame.extend_from_slice(text.as_bytes());
                conn.get_mut().write_all(&frame).await?;
                sent += 1;
            }
            // What the client sends is read and dropped; its close ends the ticker.
            read = conn.read(&mut buf) => {
                if read? == 0 {
                    return Ok(false);
                }
            }
        }
    }
}

/// Writes the answer for `head`; false when the connection must end.
async fn respond(stream: &mut TcpStream, head: &Head, body: Vec<u8>) -> io::Result<bool> {
    let parts: Vec<&str> = head.path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        [""] => write_simple(stream, 200, "text/plain", b"ok").await,
        ["-", "healthz"] => write_simple(stream, 200, "text/plain", b"success").await,
        ["sleep", s] => match seconds(s) {
            Some(d) => {
                tokio::time::sleep(d).await;
                write_simple(stream, 200, "text/plain", format!("slept {s}").as_bytes()).await
            }
            None => write_simple(stream, 400, "text/plain", b"bad seconds").await,
        },
        ["status", code] => match code.parse::<u16>() {
            Ok(c) if (100..=999).contains(&c) => {
                write_simple(stream, c, "text/plain", format!("status {c}").as_bytes()).await
            }
            _ => write_simple(stream, 400, "text/plain", b"bad status").await,
        },
        ["bytes", n] => match n.parse::<usize>() {
            Ok(n) => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nserver: uvicorn\r\ncontent-length: {n}\r\ncontent-type: application/octet-stream\r\n\r\n"
                );
                stream.write_all(head.as_bytes()).await?;
                let block = [b'x'; 16 * 1024];
                let mut left = n;
                while left > 0 {
                    let k = left.min(block.len());
                    stream.write_all(&block[..k]).await?;
                    left -= k;
                }
                Ok(true)
            }
            Err(_) => write_simple(stream, 400, "text/plain", b"bad length").await,
        },
        ["short", declared, sent] => {
            let (Ok(declared), Ok(sent)) = (declared.parse::<usize>(), sent.parse::<usize>())
            else {
                return write_simple(stream, 400, "text/plain", b"bad lengths").await;
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\nserver: uvicorn\r\ncontent-length: {declared}\r\ncontent-type: text/plain\r\n\r\n"
            );
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(&vec![b'x'; sent.min(declared)]).await?;
            // Never send the rest: the LB waits for bytes that do not come.
            std::future::pending::<()>().await;
            Ok(false)
        }
        ["stream", n] => {
            let Ok(chunks) = n.parse::<u32>() else {
                return write_simple(stream, 400, "text/plain", b"bad chunk count").await;
            };
            let interval = query_param(&head.query, "interval")
                .and_then(seconds)
                .unwrap_or(Duration::from_secs(1));
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nserver: uvicorn\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n")
                .await?;
            for i in 0..chunks {
                tokio::time::sleep(interval).await;
                let data = format!("chunk {i}\n");
                stream
                    .write_all(format!("{:x}\r\n{data}\r\n", data.len()).as_bytes())
                    .await?;
            }
            stream.write_all(b"0\r\n\r\n").await?;
            Ok(true)
        }
        ["headers"] => write_simple(stream, 200, "text/plain", &head.raw).await,
        ["echo"] => write_simple(stream, 200, "application/octet-stream", &body).await,
        ["close"] => Ok(false),
        ["reset"] => {
            // SO_LINGER 0 makes close() send RST instead of FIN.
            socket2::SockRef::from(&*stream).set_linger(Some(Duration::ZERO))?;
            Ok(false)
        }
        ["garbage"] => {
            stream
                .write_all(b"HTTP/1.1 2OO NOT-HTTP\r\n\x00\x01\x02 this is not a response\r\n\r\n")
                .await?;
            Ok(false)
        }
        _ if head.method == "HEAD" => write_simple(stream, 404, "text/plain", b"").await,
        _ => write_simple(stream, 404, "text/plain", b"not found").await,
    }
}
