//! Shared test support: start the mock app and lbsim on port 0, and a raw-socket HTTP/1.1
//! client for byte-exact checks.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use lbsim::http1::{Fill, Interim, ReadError, Reader};
use lbsim::SimulatorBuilder;
use lbsim::{Cloud, MockOptions, MockUpstream, SimHandle, Simulator};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Upper bound for any single read in a test: a hung test fails instead of hanging CI.
pub const READ_LIMIT: Duration = Duration::from_secs(20);

/// Mock app on a free loopback port.
pub async fn mock(keep_alive: Duration) -> MockUpstream {
    MockUpstream::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        MockOptions {
            keep_alive,
            ..MockOptions::default()
        },
    )
    .await
    .expect("mock upstream starts")
}

/// lbsim for `cloud` in front of `upstream`, with its main timeout set to `timeout`.
/// Health checks are off so that the app sees only the test's requests.
pub async fn lb(cloud: Cloud, upstream: SocketAddr, timeout: Duration) -> SimHandle {
    Simulator::builder(cloud)
        .upstream(upstream)
        .no_health_checks()
        .main_timeout(timeout)
        .start()
        .await
        .expect("lbsim starts")
}

/// lbsim for `cloud`, health checks off, with two targets served round-robin: `first`
/// gets the first request, `then` the second.
pub fn two_targets(cloud: Cloud, first: SocketAddr, then: SocketAddr) -> SimulatorBuilder {
    Simulator::builder(cloud)
        .no_health_checks()
        .upstream(first)
        .upstream(then)
}

/// Sends `GET /` on `client` and asserts the mock app's plain 200 "ok".
pub async fn get_ok(client: &mut RawClient) -> RawResponse {
    let resp = client.get("/").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "ok");
    resp
}

/// A mock app behind an ALB (idle timeout 10 s) and one client connection on which
/// `GET path` has been sent and has reached the app, not answered yet.
pub async fn aws_request_at_app(path: &str) -> (MockUpstream, SimHandle, RawClient) {
    let app = mock(Duration::from_secs(5)).await;
    let lb = lb(Cloud::Aws, app.addr, Duration::from_secs(10)).await;
    let mut client = RawClient::connect(lb.addr()).await;
    client
        .send(format!("GET {path} HTTP/1.1\r\nHost: lbsim.test\r\n\r\n").as_bytes())
        .await;
    wait_until(
        "the request reaches the app",
        Duration::from_secs(2),
        || app.requests() == 1,
    )
    .await;
    (app, lb, client)
}

/// A loopback address on which nothing listens (bound, then released).
/// The port stays bound (without listening) for the life of the test process, so a
/// test running beside it cannot take it: connects to it are refused.
pub async fn closed_port() -> SocketAddr {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    std::mem::forget(socket);
    addr
}

/// A parsed response as it came off the socket.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// Status code.
    pub status: u16,
    /// Reason phrase as sent.
    pub reason: String,
    /// Header lines as sent, in order, names in their original case.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// True when the body ended cleanly (length reached or last chunk seen).
    pub complete: bool,
}

impl RawResponse {
    /// First header value with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One client connection, driven byte by byte.
pub struct RawClient {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl RawClient {
    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect(addr).await.expect("connect to lbsim");
        stream.set_nodelay(true).unwrap();
        RawClient {
            stream,
            buf: Vec::new(),
        }
    }

    /// Wraps a connected stream.
    pub fn from_stream(stream: TcpStream) -> RawClient {
        RawClient {
            stream,
            buf: Vec::new(),
        }
    }

    /// Bytes received but not part of any response read so far (after
    /// [`RawClient::closed_within`]: whatever came before the close).
    pub fn leftover(&self) -> &[u8] {
        &self.buf
    }

    /// Sends `GET path` with keep-alive.
    pub async fn get(&mut self, path: &str) -> RawResponse {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: lbsim.test\r\n\r\n").as_bytes())
            .await;
        self.response().await.expect("a response")
    }

    /// Writes raw bytes.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write request");
    }

    /// Reads one response; `None` when the connection closed before a complete head.
    /// A body cut by a closed connection comes back with `complete: false`. Read as the
    /// answer to a GET: 1xx heads come back one at a time, 101 leaves what follows it in
    /// [`RawClient::leftover`].
    pub async fn response(&mut self) -> Option<RawResponse> {
        let buffered = std::mem::take(&mut self.buf);
        let mut reader = Reader::with_buffer(Limited(&mut self.stream), buffered);
        let result = reader.response("GET", Interim::Return).await;
        self.buf = reader.into_parts().1;
        match result {
            Ok(resp) => Some(RawResponse {
                complete: resp.complete(),
                status: resp.head.status,
                reason: resp.head.reason,
                headers: resp.head.headers,
                body: resp.body,
            }),
            Err(ReadError::Closed { .. }) => None,
            Err(e) => panic!("not a valid response: {e}"),
        }
    }

    /// Waits until the server closes the connection; true if it did within `limit`.
    pub async fn closed_within(&mut self, limit: Duration) -> bool {
        let mut chunk = [0u8; 1024];
        let start = Instant::now();
        loop {
            let left = limit.saturating_sub(start.elapsed());
            match tokio::time::timeout(left, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => return false,
            }
        }
    }
}

/// The client's socket as the reader's source: a read that waits [`READ_LIMIT`] fails
/// the test, and any read error ends the connection as a reset does.
struct Limited<'a>(&'a mut TcpStream);

impl Fill for Limited<'_> {
    async fn fill(&mut self, buf: &mut Vec<u8>) -> Result<usize, ReadError> {
        buf.reserve(16 * 1024);
        match tokio::time::timeout(READ_LIMIT, self.0.read_buf(buf)).await {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(_)) => Err(ReadError::Closed { reset: true }),
            Err(_) => panic!("no bytes from lbsim within {READ_LIMIT:?}"),
        }
    }
}

/// Asserts `elapsed` is within `expected` ± `tolerance`.
#[track_caller]
pub fn assert_elapsed(elapsed: Duration, expected: Duration, tolerance: Duration) {
    assert!(
        elapsed + tolerance >= expected && elapsed <= expected + tolerance,
        "took {elapsed:?}, expected {expected:?} ± {tolerance:?}"
    );
}

/// The ALB's page for 502/503/504, byte for byte.
pub fn alb_page(status_line: &str) -> String {
    format!(
        "<html>\r\n<head><title>{status_line}</title></head>\r\n<body>\r\n<center><h1>{status_line}</h1></center>\r\n</body>\r\n</html>\r\n"
    )
}

/// The Google Front End page titled `title` (`"502 Server Error"`, `"400 Bad Request"`,
/// ...), byte for byte as captured: a line feed first, then the status's heading and text.
pub fn gfe_page(title: &str) -> String {
    let (heading, text) = match title {
        "502 Server Error" => (
            "Server Error",
            "The server encountered a temporary error and could not complete your request.<p>Please try again in 30 seconds.",
        ),
        "400 Bad Request" => (
            "Bad Request",
            "Your client has issued a malformed or illegal request.",
        ),
        "413 Request Entity Too Large" => (
            "Request Entity Too Large",
            "Your client issued a request that was too large.",
        ),
        "408 Request Timeout" => (
            "Request Timeout",
            "Your client has taken too long to issue its request.",
        ),
        other => panic!("no GFE page known for {other:?}"),
    };
    format!(
        "\n<html><head>\n<meta http-equiv=\"content-type\" content=\"text/html;charset=utf-8\">\n<title>{title}</title>\n</head>\n<body text=#000000 bgcolor=#ffffff>\n<h1>Error: {heading}</h1>\n<h2>{text}</h2>\n<h2></h2>\n</body></html>\n"
    )
}

/// Asserts an answer of Envoy behind Google's global external load balancer: status and
/// phrase, the captured headers (lower-case names, `content-type: text/plain`,
/// `via: 1.1 google`, no `server`), the cause, and the plain-text body.
#[track_caller]
pub fn assert_envoy_page(resp: &RawResponse, status: u16, phrase: &str, body: &str, reason: &str) {
    assert_eq!(resp.status, status, "body: {}", resp.text());
    assert_eq!(resp.reason, phrase);
    let names: Vec<&str> = resp.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.iter().all(|n| *n == n.to_ascii_lowercase()),
        "header names lower-cased: {names:?}"
    );
    assert_eq!(
        &names[..3],
        ["content-length", "content-type", "via"],
        "captured order"
    );
    assert_eq!(resp.header("content-type"), Some("text/plain"));
    assert_eq!(resp.header("via"), Some("1.1 google"));
    assert_eq!(resp.header("server"), None);
    assert_eq!(resp.header("x-lbsim-reason"), Some(reason));
    assert_eq!(resp.text(), body);
    assert_eq!(
        resp.header("content-length"),
        Some(body.len().to_string().as_str())
    );
    assert!(resp.complete);
}

/// The global external load balancer's answer when no backend can take the request.
#[track_caller]
pub fn assert_no_healthy_upstream(resp: &RawResponse, reason: &str) {
    assert_envoy_page(
        resp,
        503,
        "Service Unavailable",
        "no healthy upstream",
        reason,
    );
}

/// Asserts an ALB-generated page: status and its ALB reason phrase, the ALB's headers,
/// the cause, and the body byte for byte with a matching Content-Length.
#[track_caller]
pub fn assert_alb_page(resp: &RawResponse, status: u16, phrase: &str, reason: &str) {
    assert_eq!(resp.status, status, "body: {}", resp.text());
    assert_eq!(resp.reason, phrase);
    assert_eq!(resp.header("Server"), Some("awselb/2.0"));
    assert_eq!(resp.header("Content-Type"), Some("text/html"));
    assert_eq!(resp.header("x-lbsim-reason"), Some(reason));
    // Pages that reject the client's request close its connection; the others keep it,
    // and say so, as captures show.
    let closes = matches!(status, 400 | 405 | 408 | 414 | 463 | 501);
    assert_eq!(
        resp.header("Connection"),
        Some(if closes { "close" } else { "keep-alive" })
    );
    // The captured order: Server, Date, Content-Type, Content-Length, Connection.
    let names: Vec<&str> = resp.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        &names[..5],
        [
            "Server",
            "Date",
            "Content-Type",
            "Content-Length",
            "Connection"
        ],
        "{names:?}"
    );
    let page = alb_page(&format!("{status} {phrase}"));
    assert_eq!(resp.text(), page);
    assert_eq!(
        resp.header("Content-Length"),
        Some(page.len().to_string().as_str())
    );
    assert!(resp.complete);
}

/// Asserts a GFE-generated page: status and phrase, GCP's headers (no `Server`), the
/// cause, and the page titled `{status} {title}` byte for byte.
#[track_caller]
pub fn assert_gfe_page(resp: &RawResponse, status: u16, phrase: &str, title: &str, reason: &str) {
    assert_eq!(resp.status, status, "body: {}", resp.text());
    assert_eq!(resp.reason, phrase);
    assert_eq!(
        resp.header("Content-Type"),
        Some("text/html; charset=UTF-8")
    );
    assert_eq!(resp.header("Referrer-Policy"), Some("no-referrer"));
    assert_eq!(
        resp.header("Server"),
        None,
        "GFE pages carry no Server header"
    );
    assert_eq!(resp.header("x-lbsim-reason"), Some(reason));
    let closes = matches!(status, 400 | 405 | 408 | 413 | 501);
    assert_eq!(resp.header("Connection"), closes.then_some("close"));
    let page = gfe_page(&format!("{status} {title}"));
    assert_eq!(resp.text(), page);
    assert_eq!(
        resp.header("Content-Length"),
        Some(page.len().to_string().as_str())
    );
    assert!(resp.complete);
}

/// Polls `cond` every 5 ms until it holds; fails naming `what` after `limit`. For state
/// that changes without an event a test can await (counters, target states).
pub async fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// nginx's own page for `status_line` ("502 Bad Gateway"), as ingress-nginx sends it
/// (`server_tokens off`: the tail without a version), byte for byte.
pub fn nginx_page(title: &str, h1: &str) -> String {
    format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{h1}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )
}

/// Asserts an nginx error page as ingress-nginx sends it: status line, headers in nginx's
/// order (`Date`, `Content-Type`, `Content-Length`, `Connection`; no `Server`), the cause,
/// and the body byte for byte.
#[track_caller]
pub fn assert_nginx_page(resp: &RawResponse, status: u16, phrase: &str, reason: &str) {
    assert_eq!(resp.status, status, "body: {}", resp.text());
    assert_eq!(resp.reason, phrase);
    assert_eq!(resp.header("Server"), None);
    assert_eq!(resp.header("Content-Type"), Some("text/html"));
    assert_eq!(resp.header("x-lbsim-reason"), Some(reason));
    let closes = matches!(status, 400 | 405 | 408 | 413 | 414 | 501);
    assert_eq!(
        resp.header("Connection"),
        Some(if closes { "close" } else { "keep-alive" })
    );
    let names: Vec<&str> = resp.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        &names[..4],
        ["Date", "Content-Type", "Content-Length", "Connection"],
        "{names:?}"
    );
    let line = format!("{status} {phrase}");
    let page = nginx_page(&line, &line);
    assert_eq!(resp.text(), page);
    assert_eq!(
        resp.header("Content-Length"),
        Some(page.len().to_string().as_str())
    );
    assert!(resp.complete);
}

/// One test at a time, in the test files that count sockets (the count is per process).
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SERIAL.lock().await
}

/// Open TCP sockets of this process. Only TCP: each test's runtime holds descriptors of
/// its own (epoll, eventfd, a copy of the signal socket), which come and go as the
/// harness starts the tests that wait for their turn.
pub fn open_tcp_sockets() -> usize {
    let inodes: std::collections::HashSet<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|text| {
            text.lines()
                .skip(1)
                .filter_map(|line| line.split_whitespace().nth(9).map(str::to_string))
                .collect::<Vec<_>>()
        })
        .collect();
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter(|target| {
            let target = target.to_string_lossy();
            target
                .strip_prefix("socket:[")
                .and_then(|rest| rest.strip_suffix(']'))
                .is_some_and(|inode| inodes.contains(inode))
        })
        .count()
}

/// For a test file whose tests each check that every TCP socket they opened is closed
/// again: holds the file's serial lock (the count is per process) and the count from
/// before the test.
pub struct SocketsCheck {
    baseline: usize,
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

impl SocketsCheck {
    /// Waits for the test's turn and counts the sockets open now.
    pub async fn begin() -> SocketsCheck {
        let serial = serial().await;
        SocketsCheck {
            baseline: open_tcp_sockets(),
            _serial: serial,
        }
    }

    /// Stops lbsim and the app, then waits until the count is back where it began.
    pub async fn finish(self, lb: SimHandle, app: MockUpstream) {
        lb.shutdown().await;
        app.kill();
        drop(app);
        self.all_closed().await;
    }

    /// Waits until the count is back where it began (everything already stopped).
    pub async fn all_closed(self) {
        let baseline = self.baseline;
        wait_until(
            &format!(
                "TCP sockets back to {baseline} (now {})",
                open_tcp_sockets()
            ),
            Duration::from_secs(3),
            || open_tcp_sockets() <= baseline,
        )
        .await;
    }
}

/// A fresh folder for one test's files (the generated CA, certificates, keys), named
/// after the test file (`prefix`) and the test (`name`).
pub fn scratch(prefix: &str, name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("lbsim-{prefix}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

/// A TLS client (tokio-rustls) that trusts the certificates in `ca` (PEM) and offers the
/// `alpn` protocols (`curl --http1.1` offers `http/1.1` only; a browser `h2` first).
pub fn tls_client(ca: &std::path::Path, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::CertificateDer;
    use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("CA file readable") {
        roots.add(cert.expect("a PEM certificate")).expect("a CA");
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
}
