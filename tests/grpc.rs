//! gRPC through lbsim (`--target-protocol grpc`): hyper's HTTP/2 client as the gRPC client
//! and a gRPC app served by hyper's HTTP/2 server (unary calls, length-prefixed messages,
//! `grpc-status` in trailers), both on 127.0.0.1. A call goes through end to end in
//! HTTP/2, trailers included; the LB's own errors reach the gRPC client the way each cloud
//! sends them (ALB: its page with `grpc-status: 14`, as captured; GCP's global external
//! load balancer: Envoy's trailers-only answer). Each test checks that every TCP socket it
//! opened (client, lbsim, app) is closed again, so the file's tests run one at a time.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use lbsim::{Cloud, SimHandle, Simulator, TargetProtocol};
use tokio::net::{TcpListener, TcpStream};

use support::*;

/// What the app saw of each call: version, path, and headers.
type Seen = Arc<Mutex<Vec<(Version, String, HeaderMap)>>>;

/// A gRPC message as it travels: uncompressed flag, big-endian length, bytes.
fn frame(message: &[u8]) -> Bytes {
    let mut out = vec![0u8];
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    Bytes::from(out)
}

/// A gRPC app on a free port: `/echo.Echo/Say` answers at once with the request's
/// message, `/echo.Echo/Slow` after 2 s, `grpc.health.v1.Health/Check` SERVING; all end
/// with `grpc-status: 0` in trailers. Any other method gets 12 (UNIMPLEMENTED),
/// trailers-only, as from a real gRPC server.
async fn grpc_app(seen: Seen) -> GrpcApp {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        // Dropped with the accept loop: every connection's task ends with it.
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen.clone();
            let service = service_fn(move |req: Request<Incoming>| {
                let seen = seen.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let path = parts.uri.path().to_string();
                    seen.lock().expect("lock").push((
                        parts.version,
                        format!("{}", parts.uri),
                        parts.headers.clone(),
                    ));
                    let message = body
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let message = match path.as_str() {
                        "/echo.Echo/Say" => message,
                        "/echo.Echo/Slow" => {
                            tokio::time::sleep(Duration::from_secs(2)).await;
                            message
                        }
                        // HealthCheckResponse { status: SERVING }.
                        "/grpc.health.v1.Health/Check" => frame(&[0x08, 0x01]),
                        _ => {
                            let body = Full::new(Bytes::new())
                                .map_err(|never: Infallible| match never {})
                                .boxed();
                            let resp: Response<BoxBody<Bytes, Infallible>> = Response::builder()
                                .header("content-type", "application/grpc")
                                .header("grpc-status", "12")
                                .body(body)
                                .expect("response");
                            return Ok::<_, Infallible>(resp);
                        }
                    };
                    let mut trailers = HeaderMap::new();
                    trailers.insert("grpc-status", "0".parse().expect("value"));
                    let body = Full::new(message)
                        .with_trailers(async move { Some(Ok(trailers)) })
                        .map_err(|never: Infallible| match never {})
                        .boxed();
                    let resp: Response<BoxBody<Bytes, Infallible>> = Response::builder()
                        .header("content-type", "application/grpc")
                        .body(body)
                        .expect("response");
                    Ok::<_, Infallible>(resp)
                }
            });
            connections.spawn(
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    GrpcApp { addr, task }
}

/// The gRPC app's address; dropping it stops the app and closes its connections.
struct GrpcApp {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for GrpcApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Stops lbsim, then waits until every TCP socket the test opened is closed again (the
/// test dropped its clients and apps first).
async fn finish(check: SocketsCheck, lb: SimHandle) {
    lb.shutdown().await;
    check.all_closed().await;
}

/// A gRPC client connection to lbsim (cleartext HTTP/2, prior knowledge).
async fn grpc_client(lb: &SimHandle) -> SendRequest<Full<Bytes>> {
    let tcp = TcpStream::connect(lb.addr()).await.expect("connect");
    let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .handshake(TokioIo::new(tcp))
        .await
        .expect("HTTP/2 handshake");
    tokio::spawn(conn);
    send
}

/// A unary call: the response head, its data and its trailers.
async fn call(
    send: &mut SendRequest<Full<Bytes>>,
    lb: &SimHandle,
    method: &str,
    message: &[u8],
) -> (Response<()>, Bytes, Option<HeaderMap>) {
    let req = Request::post(format!("http://{}/echo.Echo/{method}", lb.addr()))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(frame(message)))
        .expect("request");
    send.ready().await.expect("connection usable");
    let resp = tokio::time::timeout(READ_LIMIT, send.send_request(req))
        .await
        .expect("answered in time")
        .expect("a response");
    let (head, body) = resp.into_parts();
    let collected = tokio::time::timeout(READ_LIMIT, body.collect())
        .await
        .expect("body in time")
        .expect("whole body");
    let trailers = collected.trailers().cloned();
    (
        Response::from_parts(head, ()),
        collected.to_bytes(),
        trailers,
    )
}

/// lbsim for `cloud` in front of `app`, speaking `protocol` to it, serving cleartext
/// HTTP/2 beside HTTP/1.1, health checks off.
fn grpc_lb(cloud: Cloud, app: SocketAddr, protocol: TargetProtocol) -> lbsim::SimulatorBuilder {
    Simulator::builder(cloud)
        .upstream(app)
        .no_health_checks()
        .target_protocol(protocol)
        .http2_cleartext(true)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn a_grpc_call_goes_through_in_http2_end_to_end() {
    let check = SocketsCheck::begin().await;
    let seen = Seen::default();
    let app = grpc_app(seen.clone()).await;
    let lb = grpc_lb(Cloud::Aws, app.addr, TargetProtocol::Grpc)
        .start()
        .await
        .expect("lbsim starts");
    let mut client = grpc_client(&lb).await;
    for _ in 0..2 {
        let (resp, data, trailers) = call(&mut client, &lb, "Say", b"hello").await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            header(resp.headers(), "content-type"),
            Some("application/grpc")
        );
        assert_eq!(data, frame(b"hello"));
        let trailers = trailers.expect("the app's trailers reach the client");
        assert_eq!(header(&trailers, "grpc-status"), Some("0"));
    }
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 2);
    let (version, uri, headers) = &seen[0];
    assert_eq!(*version, Version::HTTP_2);
    assert_eq!(uri, &format!("http://{}/echo.Echo/Say", lb.addr()));
    // TE is hop-by-hop, but gRPC's `te: trailers` reaches an HTTP/2 target.
    assert_eq!(header(headers, "te"), Some("trailers"));
    assert_eq!(header(headers, "x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(header(headers, "x-forwarded-proto"), Some("http"));
    assert!(header(headers, "x-amzn-trace-id").is_some());
    drop((client, app));
    finish(check, lb).await;
}

#[tokio::test]
async fn an_alb_answers_a_grpc_client_with_its_page_and_grpc_status_14() {
    let check = SocketsCheck::begin().await;
    let lb = grpc_lb(Cloud::Aws, closed_port().await, TargetProtocol::Grpc)
        .start()
        .await
        .expect("lbsim starts");
    let mut client = grpc_client(&lb).await;
    let (resp, data, trailers) = call(&mut client, &lb, "Say", b"hello").await;
    // As captured: HTTP/2 502, server awselb/2.0, grpc-status 14, grpc-message unavailable,
    // and the ALB's 122-byte page.
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    let h = resp.headers();
    assert_eq!(header(h, "server"), Some("awselb/2.0"));
    assert_eq!(header(h, "content-type"), Some("text/html"));
    assert_eq!(header(h, "grpc-status"), Some("14"));
    assert_eq!(header(h, "grpc-message"), Some("unavailable"));
    assert_eq!(header(h, "content-length"), Some("122"));
    assert_eq!(String::from_utf8_lossy(&data), alb_page("502 Bad Gateway"));
    assert!(trailers.is_none());
    drop(client);
    finish(check, lb).await;
}

#[tokio::test]
async fn gcp_global_ends_a_slow_grpc_call_trailers_only() {
    let check = SocketsCheck::begin().await;
    let app = grpc_app(Seen::default()).await;
    let lb = grpc_lb(Cloud::Gcp, app.addr, TargetProtocol::Grpc)
        .backend_timeout(Duration::from_millis(300))
        .start()
        .await
        .expect("lbsim starts");
    let mut client = grpc_client(&lb).await;
    let (resp, data, _) = call(&mut client, &lb, "Slow", b"hello").await;
    // Envoy's local reply to a gRPC request: HTTP 200, the code in the headers of a
    // trailers-only response, the reply text as the message, no body.
    assert_eq!(resp.status(), StatusCode::OK);
    let h = resp.headers();
    assert_eq!(header(h, "content-type"), Some("application/grpc"));
    assert_eq!(header(h, "grpc-status"), Some("14"));
    assert_eq!(header(h, "grpc-message"), Some("upstream request timeout"));
    assert_eq!(header(h, "x-lbsim-reason"), Some("backend_timeout"));
    assert!(data.is_empty());
    // The same app answers a quick call on the same connection.
    let (resp, data, trailers) = call(&mut client, &lb, "Say", b"again").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(data, frame(b"again"));
    assert_eq!(
        trailers.as_ref().and_then(|t| header(t, "grpc-status")),
        Some("0")
    );
    drop((client, app));
    finish(check, lb).await;
}

#[tokio::test]
async fn an_alb_answers_464_to_a_protocol_its_target_group_does_not_take() {
    let check = SocketsCheck::begin().await;
    // HTTP/1.1 to a gRPC target group: refused before any target is asked.
    let seen = Seen::default();
    let app = grpc_app(seen.clone()).await;
    let lb = Simulator::builder(Cloud::Aws)
        .upstream(app.addr)
        .no_health_checks()
        .target_protocol(TargetProtocol::Grpc)
        .start()
        .await
        .expect("lbsim starts");
    let mut raw = RawClient::connect(lb.addr()).await;
    let resp = raw.get("/").await;
    assert_eq!(resp.status, 464, "{}", resp.text());
    assert_eq!(resp.header("x-lbsim-reason"), Some("incompatible_protocol"));
    assert_eq!(resp.header("Server"), Some("awselb/2.0"));
    assert!(
        seen.lock().expect("lock").is_empty(),
        "the app never sees it"
    );
    assert_eq!(lb.stats().count(lbsim::Reason::IncompatibleProtocol), 1);
    drop((raw, app));
    lb.shutdown().await;

    // gRPC to an HTTP1 target group (the default): refused too, the gRPC way.
    let app = mock(Duration::from_secs(60)).await;
    let lb = Simulator::builder(Cloud::Aws)
        .upstream(app.addr)
        .no_health_checks()
        .http2_cleartext(true)
        .start()
        .await
        .expect("lbsim starts");
    let mut client = grpc_client(&lb).await;
    let (resp, _, _) = call(&mut client, &lb, "Say", b"hello").await;
    assert_eq!(resp.status().as_u16(), 464);
    assert_eq!(header(resp.headers(), "grpc-status"), Some("2"));
    assert_eq!(app.requests(), 0);
    drop(client);
    check.finish(lb, app).await;
}

#[tokio::test]
async fn gcp_takes_any_client_protocol_to_an_http2_backend() {
    let check = SocketsCheck::begin().await;
    let seen = Seen::default();
    let app = grpc_app(seen.clone()).await;
    let lb = Simulator::builder(Cloud::Gcp)
        .upstream(app.addr)
        .no_health_checks()
        .target_protocol(TargetProtocol::Http2)
        .start()
        .await
        .expect("lbsim starts");
    // An HTTP/1.1 client; the backend gets HTTP/2.
    let mut raw = RawClient::connect(lb.addr()).await;
    let resp = raw.get("/echo.Echo/Say").await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0, Version::HTTP_2);
    drop((raw, app));
    finish(check, lb).await;
}

/// Waits until the one target is healthy; what the app saw of the checks.
async fn checked_healthy(lb: &SimHandle, seen: &Seen) -> (Version, String, HeaderMap) {
    wait_until("the gRPC target turns healthy", READ_LIMIT, || {
        lb.targets()
            .first()
            .is_some_and(|t| t.state == lbsim::TargetState::Healthy)
    })
    .await;
    let seen = seen.lock().expect("lock").clone();
    seen.into_iter()
        .next()
        .expect("a health check reached the app")
}

#[tokio::test]
async fn an_alb_checks_a_grpc_target_with_its_own_call_and_takes_code_12() {
    let check = SocketsCheck::begin().await;
    let seen = Seen::default();
    let app = grpc_app(seen.clone()).await;
    let lb = Simulator::builder(Cloud::Aws)
        .upstream(app.addr)
        .target_protocol(TargetProtocol::Grpc)
        .health_interval(Duration::from_millis(50))
        .start()
        .await
        .expect("lbsim starts");
    let (version, uri, headers) = checked_healthy(&lb, &seen).await;
    assert_eq!(version, Version::HTTP_2);
    assert_eq!(uri, format!("http://{}/AWS.ALB/healthcheck", app.addr));
    assert_eq!(header(&headers, "content-type"), Some("application/grpc"));
    assert_eq!(
        header(&headers, "user-agent"),
        Some("ELB-HealthChecker/2.0")
    );
    assert_eq!(
        lb.targets().first().map(|t| t.reason.clone()).as_deref(),
        Some("grpc-status 12")
    );
    drop(app);
    finish(check, lb).await;
}

#[tokio::test]
async fn gcp_checks_a_grpc_target_with_the_grpc_health_protocol() {
    let check = SocketsCheck::begin().await;
    let seen = Seen::default();
    let app = grpc_app(seen.clone()).await;
    let lb = Simulator::builder(Cloud::Gcp)
        .upstream(app.addr)
        .target_protocol(TargetProtocol::Grpc)
        .health_interval(Duration::from_millis(50))
        .start()
        .await
        .expect("lbsim starts");
    let (_, uri, headers) = checked_healthy(&lb, &seen).await;
    assert_eq!(
        uri,
        format!("http://{}/grpc.health.v1.Health/Check", app.addr)
    );
    assert_eq!(header(&headers, "user-agent"), Some("GoogleHC/1.0"));
    assert_eq!(
        lb.targets().first().map(|t| t.reason.clone()).as_deref(),
        Some("SERVING")
    );
    // An app that does not serve the health protocol stays unhealthy (12 is no SERVING).
    let lb2 = Simulator::builder(Cloud::Gcp)
        .upstream(app.addr)
        .target_protocol(TargetProtocol::Grpc)
        .health_path("/no.Such/Method")
        .health_interval(Duration::from_millis(50))
        .start()
        .await
        .expect("lbsim starts");
    wait_until("the target is found unhealthy", READ_LIMIT, || {
        lb2.targets()
            .first()
            .is_some_and(|t| t.state == lbsim::TargetState::Unhealthy)
    })
    .await;
    assert_eq!(
        lb2.targets().first().map(|t| t.reason.clone()).as_deref(),
        Some("grpc-status 12, not SERVING")
    );
    drop(app);
    lb.shutdown().await;
    finish(check, lb2).await;
}
