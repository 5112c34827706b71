//! HTTP/2 from clients: hyper's own HTTP/2 client (a real client library) over TLS with
//! ALPN `h2`, and over cleartext with prior knowledge (`--h2c`), against lbsim and its
//! mock app on 127.0.0.1. The app still gets HTTP/1.1; the LB's own pages arrive as
//! HTTP/2 responses; the connection ends with GOAWAY at the cloud's client idle timeout
//! (PINGs do not keep it open) or keep-alive duration. Each test checks that every TCP
//! socket it opened is closed again, so the file's tests run one at a time.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use lbsim::{Cloud, Simulator, Tls};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::rustls::pki_types::ServerName;

use support::*;

/// An HTTP/2 client connection: the request handle, and the task driving the connection
/// (it ends when lbsim closes the connection; `Ok` after a graceful GOAWAY).
struct H2 {
    send: SendRequest<Empty<Bytes>>,
    conn: JoinHandle<Result<(), hyper::Error>>,
    authority: String,
    scheme: &'static str,
}

/// PINGs the client sends while idle, to show they do not keep a connection open.
const CLIENT_PING_EVERY: Duration = Duration::from_millis(50);

impl H2 {
    async fn over<S>(io: S, authority: String, scheme: &'static str) -> H2
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(CLIENT_PING_EVERY)
            .keep_alive_while_idle(true)
            .keep_alive_timeout(READ_LIMIT)
            .handshake(TokioIo::new(io))
            .await
            .expect("HTTP/2 handshake");
        H2 {
            send,
            conn: tokio::spawn(conn),
            authority,
            scheme,
        }
    }

    /// Cleartext, prior knowledge.
    async fn cleartext(addr: std::net::SocketAddr) -> H2 {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        H2::over(tcp, addr.to_string(), "http").await
    }

    /// Over TLS to `localhost`, trusting `ca`; asserts that ALPN chose h2.
    async fn tls(addr: std::net::SocketAddr, ca: &Path) -> H2 {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let name = ServerName::try_from("localhost").expect("a name");
        let tls = tokio::time::timeout(
            READ_LIMIT,
            tls_client(ca, &[b"h2", b"http/1.1"]).connect(name, tcp),
        )
        .await
        .expect("handshake in time")
        .expect("handshake succeeds");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        H2::over(tls, format!("localhost:{}", addr.port()), "https").await
    }

    fn request(&self, path: &str) -> http::request::Builder {
        Request::get(format!("{}://{}{path}", self.scheme, self.authority))
    }

    /// Sends `req`; the response head and its whole body.
    async fn send(&mut self, req: Request<Empty<Bytes>>) -> (Response<()>, Bytes) {
        self.send.ready().await.expect("connection usable");
        let resp = tokio::time::timeout(READ_LIMIT, self.send.send_request(req))
            .await
            .expect("answered in time")
            .expect("a response");
        let (head, body) = resp.into_parts();
        let body = tokio::time::timeout(READ_LIMIT, body.collect())
            .await
            .expect("body in time")
            .expect("whole body")
            .to_bytes();
        (Response::from_parts(head, ()), body)
    }

    async fn get(&mut self, path: &str) -> (Response<()>, Bytes) {
        let req = self.request(path).body(Empty::new()).expect("request");
        self.send(req).await
    }

    /// Waits until lbsim ends the connection; how it ended.
    async fn ended(self) -> Result<(), hyper::Error> {
        tokio::time::timeout(READ_LIMIT, self.conn)
            .await
            .expect("connection ended in time")
            .expect("connection task")
    }
}

/// lbsim for `cloud` in front of `app`, serving cleartext HTTP/2 beside HTTP/1.1,
/// health checks off.
fn h2c_lb(cloud: Cloud, app: std::net::SocketAddr) -> lbsim::SimulatorBuilder {
    Simulator::builder(cloud)
        .upstream(app)
        .no_health_checks()
        .http2_cleartext(true)
}

/// What most tests here begin with: the sockets check (taken first), the mock app, lbsim
/// for `cloud` in front of it with cleartext HTTP/2 and what `settings` adds, and an
/// HTTP/2 client connection to it.
async fn h2c_rig(
    cloud: Cloud,
    settings: impl FnOnce(lbsim::SimulatorBuilder) -> lbsim::SimulatorBuilder,
) -> (SocketsCheck, lbsim::MockUpstream, lbsim::SimHandle, H2) {
    let check = SocketsCheck::begin().await;
    // Longer than any LB keep-alive here: the app never closes a pooled connection first.
    let app = mock(Duration::from_secs(700)).await;
    let lb = settings(h2c_lb(cloud, app.addr))
        .start()
        .await
        .expect("lbsim starts");
    let h2 = H2::cleartext(lb.addr()).await;
    (check, app, lb, h2)
}

fn header<'a>(resp: &'a Response<()>, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn an_http2_request_over_tls_reaches_the_app_as_http1() {
    let check = SocketsCheck::begin().await;
    let dir = scratch("h2", "ok");
    let ca = dir.join("ca.pem");
    let app = mock(Duration::from_secs(60)).await;
    let lb = Simulator::builder(Cloud::Aws)
        .upstream(app.addr)
        .no_health_checks()
        .tls(Tls::Generate { ca_out: ca.clone() })
        .start()
        .await
        .expect("lbsim starts");
    let mut h2 = H2::tls(lb.addr(), &ca).await;
    let req = h2
        .request("/headers?x=1")
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .body(Empty::new())
        .expect("request");
    let (resp, body) = h2.send(req).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.version(), Version::HTTP_2);
    // What the app received: an HTTP/1.1 head in origin form, the authority as Host,
    // the two cookie fields joined (RFC 9113 §8.2.3), and the ALB's headers.
    let seen = String::from_utf8_lossy(&body).to_ascii_lowercase();
    let port = lb.addr().port();
    assert!(seen.starts_with("get /headers?x=1 http/1.1\r\n"), "{seen}");
    assert!(
        seen.contains(&format!("\r\nhost: localhost:{port}\r\n")),
        "{seen}"
    );
    assert!(seen.contains("\r\ncookie: a=1; b=2\r\n"), "{seen}");
    assert!(seen.contains("\r\nx-forwarded-proto: https\r\n"), "{seen}");
    assert!(
        seen.contains(&format!("\r\nx-forwarded-port: {port}\r\n")),
        "{seen}"
    );
    assert!(seen.contains("\r\nx-amzn-trace-id: root=1-"), "{seen}");
    // Several requests on the one connection, the app's own statuses passed through.
    for _ in 0..3 {
        let (resp, body) = h2.get("/status/500").await;
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(header(&resp, "x-lbsim-reason"), None);
        assert!(!body.is_empty());
    }
    assert_eq!(lb.stats().by_status.get(&500).copied(), Some(3));
    drop(h2);
    check.finish(lb, app).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn the_albs_own_pages_arrive_as_http2_responses() {
    let (check, app, lb, mut h2) =
        h2c_rig(Cloud::Aws, |lb| lb.idle_timeout(Duration::from_millis(300))).await;
    for (path, status, line, reason) in [
        (
            "/sleep/3",
            StatusCode::GATEWAY_TIMEOUT,
            "504 Gateway Time-out",
            "target_idle_timeout",
        ),
        (
            "/close",
            StatusCode::BAD_GATEWAY,
            "502 Bad Gateway",
            "target_closed_connection",
        ),
    ] {
        let started = Instant::now();
        let (resp, body) = h2.get(path).await;
        assert_eq!(resp.status(), status, "{path}");
        assert_eq!(resp.version(), Version::HTTP_2);
        // As captured from an ALB over HTTP/2 (server, content-type, content-length: 122
        // for the 502), with no connection-specific header (RFC 9113 §8.2.2).
        assert_eq!(header(&resp, "server"), Some("awselb/2.0"));
        assert_eq!(header(&resp, "content-type"), Some("text/html"));
        assert_eq!(header(&resp, "x-lbsim-reason"), Some(reason));
        assert_eq!(header(&resp, "connection"), None);
        let page = alb_page(line);
        assert_eq!(String::from_utf8_lossy(&body), page);
        assert_eq!(
            header(&resp, "content-length"),
            Some(page.len().to_string().as_str())
        );
        if status == StatusCode::GATEWAY_TIMEOUT {
            assert_elapsed(
                started.elapsed(),
                Duration::from_millis(300),
                Duration::from_millis(250),
            );
        }
    }
    assert_eq!(
        alb_page("502 Bad Gateway").len(),
        122,
        "the captured length"
    );
    // The connection outlives the LB's errors: one more request on it.
    let (resp, body) = h2.get("/").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(&body[..], b"ok");
    drop(h2);
    check.finish(lb, app).await;
}

#[tokio::test]
async fn the_gcp_global_timeout_page_arrives_as_an_http2_response() {
    let (check, app, lb, mut h2) = h2c_rig(Cloud::Gcp, |lb| {
        lb.backend_timeout(Duration::from_millis(300))
    })
    .await;
    let (resp, body) = h2.get("/sleep/3").await;
    assert_eq!(resp.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(header(&resp, "content-type"), Some("text/plain"));
    assert_eq!(header(&resp, "via"), Some("1.1 google"));
    assert_eq!(header(&resp, "server"), None);
    assert_eq!(&body[..], b"upstream request timeout");
    assert_eq!(header(&resp, "content-length"), Some("24"));
    drop(h2);
    check.finish(lb, app).await;
}

#[tokio::test]
async fn an_idle_http2_connection_gets_goaway_at_the_idle_timeout_despite_pings() {
    let check = SocketsCheck::begin().await;
    let app = mock(Duration::from_secs(60)).await;
    let idle = Duration::from_millis(500);
    let lb = h2c_lb(Cloud::Aws, app.addr)
        .idle_timeout(idle)
        .start()
        .await
        .expect("lbsim starts");
    let mut h2 = H2::cleartext(lb.addr()).await;
    let (resp, _) = h2.get("/").await;
    assert_eq!(resp.status(), StatusCode::OK);
    // The client PINGs every 50 ms; ALB does not count PINGs as activity.
    let answered = Instant::now();
    let ended = h2.ended().await;
    assert!(ended.is_ok(), "a graceful GOAWAY, not an error: {ended:?}");
    assert_elapsed(answered.elapsed(), idle, Duration::from_millis(250));
    check.finish(lb, app).await;
}

#[tokio::test]
async fn a_busy_http2_connection_is_not_idle() {
    let check = SocketsCheck::begin().await;
    let app = mock(Duration::from_secs(60)).await;
    let idle = Duration::from_millis(400);
    let lb = h2c_lb(Cloud::Aws, app.addr)
        .idle_timeout(idle)
        .start()
        .await
        .expect("lbsim starts");
    let mut h2 = H2::cleartext(lb.addr()).await;
    // A stream that sends every 150 ms for 1.2 s: three idle timeouts long, never idle.
    let started = Instant::now();
    let (resp, body) = h2.get("/stream/8?interval=0.15").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(1000));
    assert_eq!(body.iter().filter(|b| **b == b'\n').count(), 8, "{body:?}");
    // Still open afterwards: another request goes through on it.
    let (resp, _) = h2.get("/").await;
    assert_eq!(resp.status(), StatusCode::OK);
    drop(h2);
    check.finish(lb, app).await;
}

#[tokio::test]
async fn the_alb_keep_alive_duration_ends_an_http2_connection_after_its_streams() {
    let (check, app, lb, mut h2) = h2c_rig(Cloud::Aws, |lb| {
        lb.idle_timeout(Duration::from_secs(10))
            .client_keep_alive(Duration::from_millis(400))
    })
    .await;
    // The stream is in flight when the connection turns 400 ms old: the GOAWAY lets it
    // finish whole, then the connection closes.
    let (resp, body) = h2.get("/stream/4?interval=0.2").await;
    let answered = Instant::now();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body.iter().filter(|b| **b == b'\n').count(), 4, "{body:?}");
    let ended = h2.ended().await;
    assert!(ended.is_ok(), "a graceful GOAWAY, not an error: {ended:?}");
    assert!(
        answered.elapsed() < Duration::from_millis(300),
        "closed once its stream ended, took {:?}",
        answered.elapsed()
    );
    check.finish(lb, app).await;
}

#[tokio::test]
async fn cleartext_http2_and_http1_share_the_port() {
    let check = SocketsCheck::begin().await;
    let app = mock(Duration::from_secs(60)).await;
    let lb = h2c_lb(Cloud::Aws, app.addr)
        .start()
        .await
        .expect("lbsim starts");
    let mut raw = RawClient::connect(lb.addr()).await;
    let resp = get_ok(&mut raw).await;
    assert_eq!(resp.text(), "ok");
    let mut h2 = H2::cleartext(lb.addr()).await;
    let (resp, body) = h2.get("/").await;
    assert_eq!(resp.version(), Version::HTTP_2);
    assert_eq!(&body[..], b"ok");
    // The HTTP/1.1 connection is still served as before.
    let resp = get_ok(&mut raw).await;
    assert_eq!(resp.text(), "ok");
    drop((raw, h2));
    check.finish(lb, app).await;
}

#[tokio::test]
async fn a_request_body_streams_from_an_http2_client_to_the_app() {
    let check = SocketsCheck::begin().await;
    let app = mock(Duration::from_secs(60)).await;
    let lb = h2c_lb(Cloud::Aws, app.addr)
        .start()
        .await
        .expect("lbsim starts");
    let tcp = TcpStream::connect(lb.addr()).await.expect("connect");
    let (mut send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake::<_, Full<Bytes>>(TokioIo::new(tcp))
        .await
        .expect("HTTP/2 handshake");
    tokio::spawn(conn);
    // 200 KiB: several HTTP/2 DATA frames and flow-control windows, one HTTP/1.1 body.
    let body: Vec<u8> = (0..200 * 1024).map(|i| (i % 251) as u8).collect();
    let req = Request::post(format!("http://{}/echo", lb.addr()))
        .body(Full::new(Bytes::from(body.clone())))
        .expect("request");
    let resp = tokio::time::timeout(READ_LIMIT, send.send_request(req))
        .await
        .expect("answered in time")
        .expect("a response");
    assert_eq!(resp.status(), StatusCode::OK);
    let echoed = resp.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(echoed.len(), body.len());
    assert!(echoed[..] == body[..], "the app got the body byte for byte");
    drop(send);
    check.finish(lb, app).await;
}

#[tokio::test]
async fn an_http2_client_that_resets_its_stream_is_counted_as_460_on_aws() {
    let (check, app, lb, mut h2) = h2c_rig(Cloud::Aws, |lb| lb).await;
    let req = h2.request("/sleep/1").body(Empty::new()).expect("request");
    h2.send.ready().await.expect("connection usable");
    // Dropping the response future resets the stream (RST_STREAM CANCEL) before the app
    // has answered; the connection itself stays open.
    let pending = h2.send.send_request(req);
    tokio::time::timeout(Duration::from_millis(200), pending)
        .await
        .expect_err("no answer yet: the app sleeps for 1 s");
    wait_until("the LB counts the client's departure", READ_LIMIT, || {
        lb.stats().count(lbsim::Reason::ClientClosed) == 1
    })
    .await;
    assert_eq!(lb.stats().by_status.get(&460), Some(&1));
    // The connection is still usable for the next stream.
    let (resp, _) = h2.get("/").await;
    assert_eq!(resp.status(), StatusCode::OK);
    drop(h2);
    check.finish(lb, app).await;
}

/// What the README shows: `curl --http2 --cacert lbsim-ca.pem https://localhost:PORT/`
/// against the binary started with `--tls`. curl (with nghttp2) is the client; the test
/// is skipped without it, except in CI.
#[tokio::test]
async fn curl_speaks_http2_to_the_binary_over_tls() {
    use tokio::io::AsyncBufReadExt;
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "curl is missing in CI (.ci/run installs it)"
        );
        eprintln!("skipped: curl is not installed");
        return;
    }
    let _turn = serial().await;
    let dir = scratch("h2", "curl");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_lbsim"))
        .args(["--tls", "--listen", "127.0.0.1:0", "--no-health-checks"])
        .current_dir(&dir)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("lbsim starts");
    let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let port = loop {
        let line = tokio::time::timeout(READ_LIMIT, lines.next_line())
            .await
            .expect("lbsim announces itself in time")
            .expect("stderr readable")
            .expect("lbsim is still running");
        if let Some((_, rest)) = line.split_once(" listening on https://") {
            let addr: std::net::SocketAddr = rest
                .split(' ')
                .next()
                .and_then(|a| a.parse().ok())
                .expect("an address");
            break addr.port();
        }
    };
    let curl = tokio::process::Command::new("curl")
        .args([
            "--http2",
            "--cacert",
            "lbsim-ca.pem",
            "-sS",
            "-w",
            "\n%{http_version} %{http_code}",
        ])
        .arg(format!("https://localhost:{port}/"))
        .current_dir(&dir)
        .output();
    let out = tokio::time::timeout(READ_LIMIT, curl)
        .await
        .expect("curl in time")
        .expect("curl runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout, "ok\n2 200");
    let _ = child.start_kill();
    let _ = child.wait().await;
    let _ = std::fs::remove_dir_all(dir);
}
