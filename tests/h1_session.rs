//! lbsim's own HTTP/1.1 data plane (`src/lb/h1/`), byte for byte on real sockets: heads
//! and bodies of every framing cut anywhere, bodies of megabytes in both directions,
//! header names' case both ways, messages without a body (HEAD, 204, 304), HTTP/1.0
//! clients, `Expect: 100-continue`, trailers, and a target's own reason phrase.
//!
//! The apps here are raw sockets (not the mock) so that every byte the target writes is
//! known, and the client reads raw bytes so that every byte lbsim writes is checked.

mod support;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lbsim::{Cloud, SimHandle};
use support::{lb, SocketsCheck};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Longest wait for any one answer: a hung exchange fails the test quickly.
const ANSWER_LIMIT: Duration = Duration::from_secs(3);

/// 5 MiB: far more than any buffer on the way, so bodies stream in many reads.
const BIG: usize = 5 * 1024 * 1024;

/// `len` bytes that differ from position to position (a byte lost, doubled or moved
/// shows), unlike a run of one byte.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// The app side: a raw listener, one task per connection.

/// One connection the raw app accepted.
struct AppConn {
    io: BufReader<TcpStream>,
}

/// A request as the app read it.
struct AppRequest {
    /// The head, byte for byte (up to and with the empty line).
    head: Vec<u8>,
    method: String,
    target: String,
    /// The body, de-chunked.
    body: Vec<u8>,
}

impl AppConn {
    /// Reads the next request; `None` when the connection ends between requests.
    async fn request(&mut self) -> Option<AppRequest> {
        let mut head = Vec::new();
        loop {
            let n = self.io.read_until(b'\n', &mut head).await.ok()?;
            if n == 0 {
                return None;
            }
            if head.ends_with(b"\r\n\r\n") {
                break;
            }
        }
        let mut slots = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut slots);
        assert!(
            req.parse(&head)
                .expect("lbsim sends a valid head")
                .is_complete(),
            "complete head"
        );
        let method = req.method.unwrap().to_string();
        let target = req.path.unwrap().to_string();
        let field = |name: &str| {
            req.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).to_ascii_lowercase())
        };
        let chunked = field("transfer-encoding").is_some_and(|v| v.contains("chunked"));
        let length: usize = field("content-length").map_or(0, |v| v.trim().parse().unwrap());
        let mut body = Vec::new();
        if chunked {
            loop {
                let mut line = String::new();
                self.io.read_line(&mut line).await.ok()?;
                let size = usize::from_str_radix(line.trim().split(';').next()?, 16).unwrap();
                if size == 0 {
                    // Trailers until the empty line.
                    loop {
                        line.clear();
                        self.io.read_line(&mut line).await.ok()?;
                        if line == "\r\n" {
                            break;
                        }
                    }
                    break;
                }
                let start = body.len();
                body.resize(start + size, 0);
                self.io.read_exact(&mut body[start..]).await.ok()?;
                let mut crlf = [0u8; 2];
                self.io.read_exact(&mut crlf).await.ok()?;
                assert_eq!(&crlf, b"\r\n", "chunk data ends with CRLF");
            }
        } else {
            body.resize(length, 0);
            self.io.read_exact(&mut body).await.ok()?;
        }
        Some(AppRequest {
            head,
            method,
            target,
            body,
        })
    }

    async fn write(&mut self, bytes: &[u8]) {
        let _ = self.io.get_mut().write_all(bytes).await;
    }
}

/// A raw app: `serve` runs on each accepted connection.
struct RawApp {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl RawApp {
    async fn start<F, Fut>(serve: F) -> RawApp
    where
        F: Fn(AppConn) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        let task = tokio::spawn(async move {
            // Dropped with the accept task: every connection's task ends with it.
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                stream.set_nodelay(true).unwrap();
                conns.spawn(serve(AppConn {
                    io: BufReader::new(stream),
                }));
            }
        });
        RawApp {
            addr,
            connections,
            task,
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Stops lbsim and the app, then checks every socket of the test closed.
    async fn finish(self, lb: SimHandle, sockets: SocketsCheck) {
        lb.shutdown().await;
        self.task.abort();
        let _ = self.task.await;
        sockets.all_closed().await;
    }
}

/// An answer that names the request it answers: `METHOD target\n` and the body.
fn echo_answer(req: &AppRequest) -> Vec<u8> {
    let mut body = format!("{} {}\n", req.method, req.target).into_bytes();
    body.extend_from_slice(&req.body);
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

/// Answers every request with [`echo_answer`], keeping the connection.
async fn echo_app() -> RawApp {
    RawApp::start(|mut conn| async move {
        while let Some(req) = conn.request().await {
            conn.write(&echo_answer(&req)).await;
        }
    })
    .await
}

// ---------------------------------------------------------------------------------------
// The client side: raw bytes, parsed here so that every byte is seen.

/// One response as it came off the client's socket.
#[derive(Debug)]
struct Answer {
    /// The head, byte for byte (status line to the empty line).
    head: String,
    /// The body as framed on the wire (chunk lines and trailers included).
    wire_body: Vec<u8>,
    /// The body, de-chunked.
    body: Vec<u8>,
    /// The trailer section's lines, byte for byte ("" when none).
    trailers: String,
}

impl Answer {
    fn status_line(&self) -> &str {
        self.head.split("\r\n").next().unwrap()
    }

    /// The field lines as sent, names in their case.
    fn fields(&self) -> Vec<(&str, &str)> {
        self.head
            .split("\r\n")
            .skip(1)
            .take_while(|line| !line.is_empty())
            .map(|line| line.split_once(": ").expect("a field line"))
            .collect()
    }

    /// Values of the fields named `name` (any case).
    fn values(&self, name: &str) -> Vec<&str> {
        self.fields()
            .into_iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .collect()
    }

    /// The head with each `Date` value replaced by `*` (it changes every second).
    fn head_without_date(&self) -> String {
        self.head
            .split_inclusive("\r\n")
            .map(|line| match line.split_once(": ") {
                Some((name, _)) if name.eq_ignore_ascii_case("date") => format!("{name}: *\r\n"),
                _ => line.to_string(),
            })
            .collect()
    }
}

/// A client connection read byte by byte.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads more; false at end of stream.
    async fn fill(&mut self) -> bool {
        self.buf.reserve(64 * 1024);
        let n = tokio::time::timeout(ANSWER_LIMIT, self.stream.read_buf(&mut self.buf))
            .await
            .unwrap_or_else(|_| panic!("no bytes from lbsim within {ANSWER_LIMIT:?}"))
            .unwrap_or(0);
        n > 0
    }

    /// Takes exactly `n` bytes.
    async fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill().await, "connection closed {n} bytes short");
        }
        self.buf.drain(..n).collect()
    }

    /// Takes one line, CRLF included.
    async fn line(&mut self) -> String {
        loop {
            if let Some(at) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.take(at + 2).await;
                return String::from_utf8(line).unwrap();
            }
            assert!(self.fill().await, "connection closed inside a line");
        }
    }

    /// Reads one response to a request with `method`, framed as RFC 9112 says.
    async fn answer(&mut self, method: &str) -> Answer {
        let mut head = String::new();
        loop {
            let line = self.line().await;
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let mut answer = Answer {
            head,
            wire_body: Vec::new(),
            body: Vec::new(),
            trailers: String::new(),
        };
        let status: u16 = answer
            .status_line()
            .get(9..12)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("not a status line: {:?}", answer.head));
        let chunked = answer
            .values("transfer-encoding")
            .iter()
            .any(|v| v.eq_ignore_ascii_case("chunked"));
        let length = answer
            .values("content-length")
            .first()
            .map(|v| v.parse::<usize>().unwrap());
        if method == "HEAD" || status < 200 || status == 204 || status == 304 {
            return answer;
        }
        if chunked {
            loop {
                let size_line = self.line().await;
                answer.wire_body.extend_from_slice(size_line.as_bytes());
                let size_text = size_line.trim_end().split(';').next().unwrap();
                let size = usize::from_str_radix(size_text, 16).unwrap();
                if size == 0 {
                    loop {
                        let line = self.line().await;
                        answer.wire_body.extend_from_slice(line.as_bytes());
                        if line == "\r\n" {
                            return answer;
                        }
                        answer.trailers.push_str(&line);
                    }
                }
                let data = self.take(size + 2).await;
                assert!(data.ends_with(b"\r\n"), "chunk data ends with CRLF");
                answer.wire_body.extend_from_slice(&data);
                answer.body.extend_from_slice(&data[..size]);
            }
        } else if let Some(length) = length {
            answer.body = self.take(length).await;
        } else {
            // Until the connection closes.
            while self.fill().await {}
            answer.body = std::mem::take(&mut self.buf);
        }
        if !chunked {
            answer.wire_body = answer.body.clone();
        }
        answer
    }

    /// True when lbsim closes the connection within a second, with no byte before.
    async fn closes(&mut self) -> bool {
        let mut chunk = [0u8; 1024];
        match tokio::time::timeout(Duration::from_secs(1), self.stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => self.buf.is_empty(),
            Ok(Ok(n)) => panic!("bytes after the answer: {:?}", &chunk[..n]),
            Err(_) => false,
        }
    }
}

// ---------------------------------------------------------------------------------------

/// A GET, a POST with a Content-Length body, and a POST with a chunked body (a chunk
/// extension, two chunks, a trailer), as one byte stream.
fn three_requests() -> Vec<u8> {
    let mut bytes = b"GET /first?x=1 HTTP/1.1\r\nHost: t\r\n\r\n".to_vec();
    bytes.extend_from_slice(b"POST /second HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\n");
    bytes.extend_from_slice(b"hello\r\nPOST");
    bytes.extend_from_slice(
        b"POST /third HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
          4;name=value\r\nchun\r\n6\r\nked \r\n\r\n0\r\nX-Tail: 1\r\n\r\n",
    );
    bytes
}

#[tokio::test]
async fn three_pipelined_requests_cut_at_every_byte_are_each_answered_in_order() {
    let sockets = SocketsCheck::begin().await;
    let app = echo_app().await;
    let lb = lb(Cloud::Aws, app.addr, Duration::from_secs(10)).await;
    let bytes = three_requests();
    let expected: [&[u8]; 3] = [
        b"GET /first?x=1\n",
        b"POST /second\nhello\r\nPOST",
        b"POST /third\nchunked \r\n",
    ];
    for cut in 1..bytes.len() {
        let mut client = Client::connect(lb.addr()).await;
        client.send(&bytes[..cut]).await;
        // The first part is read on its own most of the time; the answers must be the
        // same either way.
        tokio::task::yield_now().await;
        client.send(&bytes[cut..]).await;
        for (i, want) in expected.iter().enumerate() {
            let answer = client.answer("POST").await;
            assert_eq!(
                answer.status_line(),
                "HTTP/1.1 200 OK",
                "answer {i}, cut {cut}"
            );
            assert_eq!(
                String::from_utf8_lossy(&answer.body),
                String::from_utf8_lossy(want),
                "answer {i}, cut {cut}"
            );
            assert_eq!(
                answer.values("Content-Length"),
                [want.len().to_string().as_str()],
                "answer {i}, cut {cut}"
            );
        }
        assert!(client.buf.is_empty(), "nothing after the three answers");
    }
    app.finish(lb, sockets).await;
}

/// Serves `/up` (echo), `/down/length`, `/down/chunked` and `/down/close` with
/// [`pattern`] bodies of [`BIG`] bytes.
async fn bulk_app() -> RawApp {
    RawApp::start(|mut conn| async move {
        while let Some(req) = conn.request().await {
            match req.target.as_str() {
                "/up" => conn.write(&echo_answer(&req)).await,
                "/down/length" => {
                    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\n\r\n");
                    conn.write(head.as_bytes()).await;
                    conn.write(&pattern(BIG, 1)).await;
                }
                "/down/chunked" => {
                    conn.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                        .await;
                    let body = pattern(BIG, 2);
                    // Chunks of uneven sizes, from one byte to 100 KiB.
                    let mut sent = 0;
                    let mut size = 1;
                    while sent < body.len() {
                        let n = size.min(body.len() - sent);
                        conn.write(format!("{n:x}\r\n").as_bytes()).await;
                        conn.write(&body[sent..sent + n]).await;
                        conn.write(b"\r\n").await;
                        sent += n;
                        size = (size * 7 + 3) % (100 * 1024) + 1;
                    }
                    conn.write(b"0\r\n\r\n").await;
                }
                "/down/close" => {
                    conn.write(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n",
                    )
                    .await;
                    conn.write(&pattern(BIG, 3)).await;
                    return;
                }
                other => panic!("unexpected target {other}"),
            }
        }
    })
    .await
}

#[tokio::test]
async fn megabyte_bodies_go_through_byte_for_byte_in_every_framing() {
    let sockets = SocketsCheck::begin().await;
    let app = bulk_app().await;
    let lb = lb(Cloud::Aws, app.addr, Duration::from_secs(10)).await;
    let mut client = Client::connect(lb.addr()).await;

    // Upload with a Content-Length.
    let up = pattern(BIG, 4);
    client
        .send(format!("POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: {BIG}\r\n\r\n").as_bytes())
        .await;
    client.send(&up).await;
    let answer = client.answer("POST").await;
    assert_eq!(answer.status_line(), "HTTP/1.1 200 OK");
    assert_eq!(&answer.body[..9], b"POST /up\n");
    assert!(answer.body[9..] == up[..], "Content-Length upload intact");

    // Chunked upload, in chunks of 64 KiB + 1.
    let up = pattern(BIG, 5);
    let mut request =
        b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for chunk in up.chunks(64 * 1024 + 1) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    client.send(&request).await;
    let answer = client.answer("POST").await;
    assert_eq!(answer.status_line(), "HTTP/1.1 200 OK");
    assert!(answer.body[9..] == up[..], "chunked upload intact");

    // Download with a Content-Length: the length passed through, the bytes as sent.
    client
        .send(b"GET /down/length HTTP/1.1\r\nHost: t\r\n\r\n")
        .await;
    let answer = client.answer("GET").await;
    assert_eq!(answer.values("Content-Length"), [BIG.to_string().as_str()]);
    assert!(answer.values("Transfer-Encoding").is_empty());
    assert!(
        answer.body == pattern(BIG, 1),
        "Content-Length download intact"
    );

    // Chunked download: chunked to the client too, the data the same.
    client
        .send(b"GET /down/chunked HTTP/1.1\r\nHost: t\r\n\r\n")
        .await;
    let answer = client.answer("GET").await;
    assert_eq!(answer.values("Transfer-Encoding"), ["chunked"]);
    assert!(answer.values("Content-Length").is_empty());
    assert!(answer.body == pattern(BIG, 2), "chunked download intact");
    assert!(answer.wire_body.ends_with(b"\r\n0\r\n\r\n"));

    // A body that ends with the target's connection: an HTTP/1.1 client gets it chunked,
    // on a connection that stays open for the next request.
    client
        .send(b"GET /down/close HTTP/1.1\r\nHost: t\r\n\r\n")
        .await;
    let answer = client.answer("GET").await;
    assert_eq!(answer.values("Transfer-Encoding"), ["chunked"]);
    assert!(answer.values("Content-Length").is_empty());
    assert!(answer.values("Connection").is_empty(), "{}", answer.head);
    assert!(
        answer.body == pattern(BIG, 3),
        "close-delimited download intact"
    );
    client
        .send(b"GET /down/length HTTP/1.1\r\nHost: t\r\n\r\n")
        .await;
    assert!(client.answer("GET").await.body == pattern(BIG, 1));

    // An HTTP/1.0 client knows no chunks: the body ends with the connection.
    let mut old = Client::connect(lb.addr()).await;
    old.send(b"GET /down/close HTTP/1.0\r\nHost: t\r\n\r\n")
        .await;
    let answer = old.answer("GET").await;
    assert_eq!(answer.status_line(), "HTTP/1.0 200 OK");
    assert!(answer.values("Transfer-Encoding").is_empty());
    assert!(answer.values("Content-Length").is_empty());
    assert_eq!(answer.values("Connection"), ["close"]);
    assert!(
        answer.body == pattern(BIG, 3),
        "close-delimited to HTTP/1.0 intact"
    );

    drop((client, old));
    app.finish(lb, sockets).await;
}

/// Answers each request with its own head as the body, and a response head whose names
/// come in mixed case, `Set-Cookie` twice in two cases with another field between.
async fn case_app() -> RawApp {
    RawApp::start(|mut conn| async move {
        while let Some(req) = conn.request().await {
            let mut out = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nSet-Cookie: a=1\r\nX-App-MiXed: v\r\n\
                 set-cookie: b=2\r\nCONTENT-TYPE: text/plain\r\n\r\n",
                req.head.len()
            )
            .into_bytes();
            out.extend_from_slice(&req.head);
            conn.write(&out).await;
        }
    })
    .await
}

/// A request whose names come in mixed case, one of them twice in two cases.
const MIXED_CASE_REQUEST: &[u8] = b"GET /case HTTP/1.1\r\nHost: t\r\nX-MiXeD-Case: a\r\n\
    x-lower: b\r\nX-UPPER: c\r\nX-Twice: 1\r\nx-twice: 2\r\n\r\n";

/// The field lines of a raw head, `(name, value)`, in order.
fn field_lines(head: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(head)
        .split("\r\n")
        .skip(1)
        .take_while(|line| !line.is_empty())
        .map(|line| {
            let (n, v) = line.split_once(": ").expect("a field line");
            (n.to_string(), v.to_string())
        })
        .collect()
}

#[tokio::test]
async fn header_names_keep_their_case_both_ways_on_aws_and_are_lower_case_on_gcp() {
    let sockets = SocketsCheck::begin().await;
    let app = case_app().await;

    // AWS keeps the names as written, each field of a repeated name in its own case.
    let aws = lb(Cloud::Aws, app.addr, Duration::from_secs(10)).await;
    let mut client = Client::connect(aws.addr()).await;
    client.send(MIXED_CASE_REQUEST).await;
    let answer = client.answer("GET").await;
    assert_eq!(answer.status_line(), "HTTP/1.1 200 OK");
    let at_app = field_lines(&answer.body);
    for want in [
        ("Host", "t"),
        ("X-MiXeD-Case", "a"),
        ("x-lower", "b"),
        ("X-UPPER", "c"),
    ] {
        assert!(
            at_app.iter().any(|(n, v)| (n.as_str(), v.as_str()) == want),
            "{want:?} at the app: {at_app:?}"
        );
    }
    let twice: Vec<_> = at_app
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("x-twice"))
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    assert_eq!(twice, [("X-Twice", "1"), ("x-twice", "2")]);
    let fields = answer.fields();
    let cookies: Vec<_> = fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("set-cookie"))
        .copied()
        .collect();
    assert_eq!(cookies, [("Set-Cookie", "a=1"), ("set-cookie", "b=2")]);
    assert!(fields.contains(&("X-App-MiXed", "v")), "{}", answer.head);
    assert!(
        fields.contains(&("CONTENT-TYPE", "text/plain")),
        "{}",
        answer.head
    );
    assert!(fields.contains(&("Content-Length", answer.body.len().to_string().as_str())));
    drop(client);
    aws.shutdown().await;

    // GCP's global generation (Envoy) writes every name lower-case, both ways.
    let gcp = lb(Cloud::Gcp, app.addr, Duration::from_secs(10)).await;
    let mut client = Client::connect(gcp.addr()).await;
    client.send(MIXED_CASE_REQUEST).await;
    let answer = client.answer("GET").await;
    assert_eq!(answer.status_line(), "HTTP/1.1 200 OK");
    let at_app = field_lines(&answer.body);
    assert!(
        at_app.iter().all(|(n, _)| *n == n.to_ascii_lowercase()),
        "lower-case at the app: {at_app:?}"
    );
    for want in [("x-mixed-case", "a"), ("x-upper", "c")] {
        assert!(
            at_app.iter().any(|(n, v)| (n.as_str(), v.as_str()) == want),
            "{want:?} at the app: {at_app:?}"
        );
    }
    let twice: Vec<_> = at_app
        .iter()
        .filter(|(n, _)| n == "x-twice")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(twice, ["1", "2"]);
    let fields = answer.fields();
    assert!(
        fields.iter().all(|(n, _)| *n == n.to_ascii_lowercase()),
        "lower-case to the client: {}",
        answer.head
    );
    assert_eq!(answer.values("set-cookie"), ["a=1", "b=2"]);
    assert!(fields.contains(&("x-app-mixed", "v")), "{}", answer.head);

    drop(client);
    app.finish(gcp, sockets).await;
}

/// Answers `HEAD /big` with a length and no body, `GET /204` with 204, `GET /304` with
/// 304, `GET /fine` with the reason phrase `Fine`, `GET /trailers` chunked with a
/// declared trailer, and anything else with [`echo_answer`].
async fn edge_app() -> RawApp {
    RawApp::start(|mut conn| async move {
        while let Some(req) = conn.request().await {
            let answer: &[u8] = match (req.method.as_str(), req.target.as_str()) {
                ("HEAD", "/big") => {
                    b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nContent-Type: text/plain\r\n\r\n"
                }
                (_, "/204") => b"HTTP/1.1 204 No Content\r\nX-Kind: none\r\n\r\n",
                (_, "/304") => b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n",
                (_, "/fine") => b"HTTP/1.1 200 Fine\r\nContent-Length: 2\r\n\r\nok",
                (_, "/trailers") => {
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n\
                      5\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n"
                }
                _ => {
                    conn.write(&echo_answer(&req)).await;
                    continue;
                }
            };
            conn.write(answer).await;
        }
    })
    .await
}

#[tokio::test]
async fn a_head_answer_keeps_its_length_and_carries_no_body() {
    let sockets = SocketsCheck::begin().await;
    let app = edge_app().await;
    let lb = lb(Cloud::Aws, app.addr, Duration::from_secs(10)).await;
    let mut client = Client::connect(lb.addr()).await;
    client
        .send(b"HEAD /big HTTP/1.1\r\nHost: t\r\n\r\nGET /next HTTP/1.1\r\nHost: t\r\n\r\n")
        .await;
    let head = client.answer("HEAD").await;
    assert_eq!(head.status_line(), "HTTP/1.1 200 OK");
    assert_eq!(head.values("Content-Length"), ["1234"]);
    assert!(head.values("Transfer-Encoding").is_empty());
    // The next answer's status line comes right after the HEAD answer's empty line (a
    // body byte between them would be read as its status line).
    let next = client.answer("GET").await;
    assert_eq!(next.status_line(), "HTTP/1.1 200 OK");
    assert_eq!(next.body, b"GET /next\n");
    drop(client);
    app.finish(lb, sockets).await;
}

#[tokio::test]
async fn answers_204_and_304_carry_no_body_and_keep_the_connection() {
    let sockets = SocketsCheck::begin().await;
    let app = edge_app().await;
    let lb = lb(Cloud::Aws, app.addr, Duration::from_secs(10)).await;
    let mut client = Client::connect(lb.addr()).await;
    client
        .send(
            b"GET /204 HTTP/1.1\r\nHost: t\r\n\r\nGET /304 HTTP/1.1\r\nHost: t\r\n\r\n\
              GET /after HTTP/1.1\r\nHost: t\r\n\r\n",
        )
        .await;
    let none = client.answer("GET").await;
    assert_eq!(
        none.head_without_date(),
        "HTTP/1.1 204 No Content\r\nX-Kind: none\r\nDate: *\r\n\r\n"
    );
    let unmodified = client.answer("GET").await;
    assert_eq!(
        unmodified.head_without_date(),
        "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nDate: *\r\n\r\n"
    );
    let after = client.answer("GET").await;
    assert_eq!(after.status_line(), "HTTP/1.1 200 OK");
    assert_eq!(after.body, b"GET /after\n");
    // One client connection and one target connection carried all three.
    assert_eq!(app.connections(), 1);
    client.send(b"GET /again HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(client.answer("GET").await.body, b"GET /again\n");
    drop(client);
    app.finish(lb, sockets).await;
}

#[tokio::test]
async fn http_1_0_clients_are_answered_in_1_0_and_kept_only_when_they_ask() {
    let sockets = SocketsCheck::begin().await;
    let app = edge_app().await;
    let lb = lb(Cloud::Aws, app.addr, Duration::from_secs(10)).await;

    let mut client = Client::connect(lb.addr()).await;
    client.send(b"GET /plain HTTP/1.0\r\nHost: t\r\n\r\n").await;
    let answer = client.answer("GET").await;
    assert_eq!(answer.status_line(), "HTTP/1.0 200 OK");
    assert_eq!(answer.body, b"GET /plain\n");
    assert_eq!(answer.values("Connection"), ["close"]);
    assert!(client.closes().await, "closed after the answer");
    drop(client);

    let mut client = Client::connect(lb.addr()).await;
    for path in ["/kept", "/again"] {
        client
            .send(
                format!("GET {path} HTTP/1.0\r\nHost: t\r\nConnection: keep-alive\r\n\r\n")
                    .as_bytes(),
            )
            .await;
        let answer = client.answer("GET").await;
        assert_eq!(answer.status_line(), "HTTP/1.0 200 OK");
        assert_eq!(answer.values("Connection"), ["keep-alive"]);
        assert_eq!(answer.body, format!("GET {path}\n").as_bytes());
    }
    // Without the token again, the connection ends after the answer.
    client.send(b"GET /last HTTP/1.0\r\nHost: t\r\n\r\n").await;
    let answer = client.answer("GET").await;
    assert_eq!(answer.status_line(), "HTTP/1.0 200 OK");
    assert_eq!(answer.values("Connection"), ["close"]);
    assert!(client.closes().await, "closed after the answer");
    drop(client);

    app.finish(lb, sockets).await;
}

#[tokio::test]
async fn expect_100_continue_is_answered_before_the_body_is_sent() {
    let sockets = SocketsCheck::begin().await;
    let app = edge_app().await;
    let lb = lb(Cloud::Aws, app.addr, Duration::from_secs(10)).await;
    let mut client = Client::connect(lb.addr()).await;
    client
        .send(
            b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\
              Expect: 100-continue\r\n\r\n",
        )
        .await;
    // Nothing of the body has been sent: the interim answer must come on its own.
    let interim = b"HTTP/1.1 100 Continue\r\n\r\n";
    assert_eq!(client.take(interim.len()).await, interim);
    assert!(client.buf.is_empty(), "nothing but the interim answer yet");
    client.send(b"hello").await;
    let answer = client.answer("POST").await;
    assert_eq!(answer.status_line(), "HTTP/1.1 200 OK");
    assert_eq!(answer.body, b"POST /upload\nhello");
    // The connection carries the next request.
    client.send(b"GET /next HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(client.answer("GET").await.body, b"GET /next\n");
    drop(client);
    app.finish(lb, sockets).await;
}

#[tokio::test]
async fn trailers_reach_a_client_that_asked_for_them_and_only_that_one() {
    let sockets = SocketsCheck::begin().await;
    let app = edge_app().await;
    let lb = lb(Cloud::Aws, app.addr, Duration::from_secs(10)).await;
    let mut client = Client::connect(lb.addr()).await;

    client
        .send(b"GET /trailers HTTP/1.1\r\nHost: t\r\nTE: trailers\r\n\r\n")
        .await;
    let answer = client.answer("GET").await;
    assert_eq!(answer.values("Trailer"), ["X-Sum"]);
    assert_eq!(answer.body, b"hello world");
    assert_eq!(answer.trailers, "X-Sum: 42\r\n");
    assert!(answer.wire_body.ends_with(b"\r\n0\r\nX-Sum: 42\r\n\r\n"));

    client
        .send(b"GET /trailers HTTP/1.1\r\nHost: t\r\n\r\n")
        .await;
    let answer = client.answer("GET").await;
    assert_eq!(answer.body, b"hello world");
    assert_eq!(answer.trailers, "");
    assert!(answer.wire_body.ends_with(b"\r\n0\r\n\r\n"));

    drop(client);
    app.finish(lb, sockets).await;
}

#[tokio::test]
async fn a_targets_own_reason_phrase_reaches_the_client() {
    let sockets = SocketsCheck::begin().await;
    let app = edge_app().await;
    let lb = lb(Cloud::Aws, app.addr, Duration::from_secs(10)).await;
    let mut client = Client::connect(lb.addr()).await;
    client.send(b"GET /fine HTTP/1.1\r\nHost: t\r\n\r\n").await;
    let answer = client.answer("GET").await;
    assert_eq!(answer.status_line(), "HTTP/1.1 200 Fine");
    assert_eq!(answer.body, b"ok");
    drop(client);
    app.finish(lb, sockets).await;
}
