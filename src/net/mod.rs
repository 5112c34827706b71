//! Network plumbing shared by the load balancer, the mock app and the tools: listeners,
//! address resolution, and the raw HTTP/1 response reader ([`http1`]). It imports nothing
//! else of lbsim.

use std::io;
use std::net::SocketAddr;

use tokio::net::TcpListener;

pub mod http1;
pub(crate) mod tls;

/// Listen queue length. tokio's default (128) drops connection attempts in a burst of
/// test clients, which then wait a second for the SYN retry; the kernel caps it anyway.
pub(crate) const LISTEN_BACKLOG: u32 = 4096;

/// Binds `addr` with a listen queue long enough for a burst of clients.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As std and tokio do on Unix: a restarted lbsim can bind at once.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Resolves `host:port` (a leading `http://` and trailing `/` are tolerated), preferring
/// IPv4 because apps such as uvicorn bind 127.0.0.1 by default.
pub(crate) async fn resolve_upstream(text: &str) -> Result<SocketAddr, String> {
    let trimmed = text.trim_start_matches("http://").trim_end_matches('/');
    if !trimmed.contains(':') {
        return Err(format!(
            "upstream `{text}`: expected HOST:PORT, e.g. localhost:8000"
        ));
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(trimmed)
        .await
        .map_err(|e| format!("upstream `{text}` cannot be resolved: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("upstream `{text}` resolved to no address"))
}
