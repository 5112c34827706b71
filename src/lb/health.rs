//! Active health checks: one task per target, a new connection per check, the cloud's
//! user agent, and the thresholds that move a target between states.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::lb::targets::{Target, TargetState, Thresholds};
use crate::net::http1::{self, ReadError, Reader};

/// Effective health-check settings (scaled).
#[derive(Clone, Debug)]
pub struct HealthCheck {
    /// False with `--no-health-checks`.
    pub enabled: bool,
    /// Path requested, e.g. `/-/healthz` for Ray Serve.
    pub path: String,
    /// Time between checks.
    pub interval: Duration,
    /// A check without a full status line in this long fails.
    pub timeout: Duration,
    /// State-change thresholds.
    pub thresholds: Thresholds,
    /// The cloud's checker identifies itself (apps often filter on it).
    pub user_agent: &'static str,
    /// What a check sends and what passes: it follows the protocol targets are spoken to.
    pub via: CheckVia,
}

/// How a check is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckVia {
    /// `GET` over HTTP/1.1; 200 passes.
    Http1Get,
    /// `GET` over cleartext HTTP/2 (`--target-protocol http2`); 200 passes.
    Http2Get,
    /// A gRPC call with an empty message over cleartext HTTP/2; passes when its
    /// `grpc-status` is one of these (ALB: 12).
    GrpcCodes(&'static [u32]),
    /// The gRPC health checking protocol; passes on SERVING.
    GrpcHealthService,
}

/// The method of the gRPC health checking protocol.
pub(crate) const GRPC_HEALTH_CHECK_PATH: &str = "/grpc.health.v1.Health/Check";

/// Probes `target` until it is `unused` or `stop` turns true.
pub(crate) fn spawn(target: Arc<Target>, check: HealthCheck, mut stop: watch::Receiver<bool>) {
    tokio::spawn(async move {
        loop {
            if target.state() == TargetState::Unused {
                return;
            }
            let (passed, what) = check_once(&target, &check).await;
            target.record_check(passed, what, check.thresholds);
            tokio::select! {
                _ = tokio::time::sleep(check.interval) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    });
}

/// One check on a new connection; the checker closes it afterwards, as the ALB's does.
pub(crate) async fn check_once(target: &Target, check: &HealthCheck) -> (bool, String) {
    if check.via != CheckVia::Http1Get {
        return match tokio::time::timeout(check.timeout, probe_http2(target, check)).await {
            Err(_) => (false, format!("timed out after {:?}", check.timeout)),
            Ok(Err(e)) => (false, e),
            Ok(Ok(verdict)) => verdict,
        };
    }
    match tokio::time::timeout(check.timeout, probe(target, check)).await {
        Err(_) => (false, format!("timed out after {:?}", check.timeout)),
        Ok(Err(e)) => (false, e),
        Ok(Ok(200)) => (true, "200".to_string()),
        Ok(Ok(status)) => (false, format!("status {status}, expected 200")),
    }
}

/// One check over cleartext HTTP/2: whether it passed, and what was seen.
async fn probe_http2(target: &Target, check: &HealthCheck) -> Result<(bool, String), String> {
    use http_body_util::{BodyExt, Full};
    let stream = TcpStream::connect(target.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut send, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .handshake::<_, Full<bytes::Bytes>>(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
    // Ends with this function: the checker closes its connection after each check.
    let conn = AbortOnDrop(tokio::spawn(conn));
    let uri = format!("http://{}{}", target.addr, check.path);
    let grpc = !matches!(check.via, CheckVia::Http1Get | CheckVia::Http2Get);
    let req = if grpc {
        http::Request::post(uri)
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("user-agent", check.user_agent)
            // An empty message: HealthCheckRequest with no service name, or nothing.
            .body(Full::new(bytes::Bytes::from_static(&[0, 0, 0, 0, 0])))
    } else {
        http::Request::get(uri)
            .header("user-agent", check.user_agent)
            .body(Full::new(bytes::Bytes::new()))
    }
    .map_err(|e| format!("request: {e}"))?;
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| format!("HTTP/2: {e}"))?;
    let status = resp.status().as_u16();
    if !grpc {
        drop(conn);
        return Ok((status == 200, format!("{status}")));
    }
    let grpc_status_in = |h: &http::HeaderMap| {
        h.get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u32>().ok())
    };
    let in_head = grpc_status_in(resp.headers());
    let collected = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("gRPC answer: {e}"))?;
    drop(conn);
    let code = in_head.or_else(|| collected.trailers().and_then(grpc_status_in));
    let Some(code) = code else {
        return Ok((false, format!("HTTP {status} with no grpc-status")));
    };
    Ok(match check.via {
        CheckVia::GrpcCodes(codes) => (codes.contains(&code), format!("grpc-status {code}")),
        _ => {
            // HealthCheckResponse { status: SERVING (1) }: field 1, varint 1.
            let message = collected.to_bytes();
            let serving = code == 0 && message.len() >= 7 && message[5..7] == [0x08, 0x01];
            (
                serving,
                if serving {
                    "SERVING".to_string()
                } else {
                    format!("grpc-status {code}, not SERVING")
                },
            )
        }
    })
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn probe(target: &Target, check: &HealthCheck) -> Result<u16, String> {
    let mut stream = TcpStream::connect(target.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        check.path, target.addr, check.user_agent
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    // The status line decides; the checker hangs up without reading further.
    match Reader::new(&mut stream).status_line().await {
        Ok(line) => Ok(line.status),
        Err(ReadError::Closed { reset: false }) => {
            Err("connection closed before a status line".to_string())
        }
        Err(ReadError::Closed { reset: true }) => {
            Err("connection reset before a status line".to_string())
        }
        Err(ReadError::LineTooLong(_)) => Err(format!(
            "no status line in the first {} KiB",
            http1::MAX_LINE / 1024
        )),
        Err(ReadError::Io(e)) => Err(format!("read: {e}")),
        Err(e) => Err(e.to_string()),
    }
}
