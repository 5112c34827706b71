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
}

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
    match tokio::time::timeout(check.timeout, probe(target, check)).await {
        Err(_) => (false, format!("timed out after {:?}", check.timeout)),
        Ok(Err(e)) => (false, e),
        Ok(Ok(200)) => (true, "200".to_string()),
        Ok(Ok(status)) => (false, format!("status {status}, expected 200")),
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
