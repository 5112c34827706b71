//! What the engine remembers about a request so that, when it ends, one access-log
//! [`Record`] can be written in the cloud's format.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use http::request::Parts;
use http::HeaderMap;
use tokio::time::Instant;

use crate::lb::accesslog::{version_str, ConnTraceId, Record, Tries};
use crate::lb::forward::Peer;

/// Facts captured when a request arrives (after the LB's headers were added; the bytes
/// received are the client's).
#[derive(Debug)]
pub(crate) struct Facts {
    start_wall: SystemTime,
    start: Instant,
    client: SocketAddr,
    listener: SocketAddr,
    /// The client connection's ID (ALB `conn_trace_id`), the same for all its requests.
    conn_trace_id: ConnTraceId,
    method: String,
    host: String,
    path: String,
    version: &'static str,
    /// `http` or `https`: how the client connected.
    scheme: &'static str,
    user_agent: Option<String>,
    referer: Option<String>,
    trace_id: Option<String>,
    /// The `X-Request-ID` sent on (ingress-nginx's `$req_id`).
    request_id: Option<String>,
    /// Request line and headers as received, plus the declared body length.
    received_bytes: u64,
    /// The request passed the LB's checks and went to routing; a head the LB rejects is
    /// logged without a target group, rule or action.
    routed: bool,
}

/// How the request ended, as far as the log cares.
#[derive(Debug, Default)]
pub(crate) struct Ending {
    /// Target chosen, if any.
    pub target: Option<SocketAddr>,
    /// When the connection to the target was ready and the request went out.
    pub dispatched: Option<Instant>,
    /// When the target's response head arrived.
    pub head_at: Option<Instant>,
    /// Status sent to the client (None: nothing was sent).
    pub lb_status: Option<u16>,
    /// Status the target sent.
    pub target_status: Option<u16>,
    /// Response bytes sent (head estimate plus body).
    pub sent_bytes: u64,
    /// Of them, the body's.
    pub body_bytes: u64,
    /// lbsim's cause code when the LB answered or cut.
    pub reason: Option<&'static str>,
    /// The cloud's request-log word for that cause (GCP `statusDetails`).
    pub log_word: Option<&'static str>,
    /// The response head went out and the body was cut.
    pub cut: bool,
    /// Every try at a target, in order (nginx's `$upstream_*` lists).
    pub tries: Tries,
}

/// The cloud's word for a response the backend sent itself.
const SENT_BY_BACKEND: &str = "response_sent_by_backend";

impl Facts {
    /// Captures what the log needs from a request head that arrived on `peer`'s
    /// connection (its addresses and connection ID), after the LB added its headers (the
    /// request id is one); `client_head` is the header block's size as the client sent it.
    pub(crate) fn capture(parts: &Parts, peer: &Peer, client_head: usize) -> Facts {
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let host = header("host")
            .map(|h| {
                h.rsplit_once(':')
                    .map_or(h.clone(), |(host, _)| host.to_string())
            })
            .unwrap_or_default();
        let trace_id = header("x-amzn-trace-id").or_else(|| header("x-cloud-trace-context"));
        let declared: u64 = header("content-length")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let path = parts
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_string(), |pq| pq.as_str().to_string());
        let line = parts.method.as_str().len() + path.len() + 11;
        Facts {
            start_wall: SystemTime::now(),
            start: Instant::now(),
            client: peer.client,
            listener: peer.local,
            conn_trace_id: peer.conn_trace_id,
            scheme: peer.scheme(),
            method: parts.method.to_string(),
            host,
            path,
            version: version_str(parts.version),
            user_agent: header("user-agent"),
            referer: header("referer"),
            trace_id,
            request_id: header("x-request-id"),
            received_bytes: (line + client_head) as u64 + declared,
            routed: true,
        }
    }

    /// What the log can say of a head the LB rejected, from its raw bytes: the request
    /// line's three parts where they can be read (`-` where not, as ALB logs a malformed
    /// request), and the `Host` and `User-Agent` lines.
    pub(crate) fn rejected(head: &[u8], peer: &Peer) -> Facts {
        let text = String::from_utf8_lossy(head);
        let mut lines = text.split('\n').map(|l| l.trim_end_matches('\r'));
        let request_line = lines.next().unwrap_or_default();
        let mut parts = request_line.split(' ');
        let (method, path, version) = match (parts.next(), parts.next(), parts.next()) {
            (Some(m), Some(p), Some(v)) if parts.next().is_none() && !m.is_empty() => {
                let version = match v {
                    "HTTP/1.0" => "HTTP/1.0",
                    "HTTP/1.1" => "HTTP/1.1",
                    _ => "-",
                };
                (m.to_string(), p.to_string(), version)
            }
            _ => ("-".to_string(), "-".to_string(), "-"),
        };
        let mut host = String::new();
        let mut user_agent = None;
        for line in lines.take_while(|l| !l.is_empty()) {
            if let Some((name, value)) = line.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("host") && host.is_empty() {
                    host = value
                        .rsplit_once(':')
                        .map_or(value, |(host, _)| host)
                        .to_string();
                } else if name.eq_ignore_ascii_case("user-agent") && user_agent.is_none() {
                    user_agent = Some(value.to_string());
                }
            }
        }
        Facts {
            start_wall: SystemTime::now(),
            start: Instant::now(),
            client: peer.client,
            listener: peer.local,
            conn_trace_id: peer.conn_trace_id,
            scheme: peer.scheme(),
            method,
            host,
            path,
            version,
            user_agent,
            referer: None,
            trace_id: None,
            request_id: None,
            received_bytes: head.len() as u64,
            routed: false,
        }
    }

    /// The record for this request ending as `e`.
    pub(crate) fn record(&self, e: Ending) -> Record {
        let now = Instant::now();
        let request_processing = e
            .dispatched
            .map(|d| d.saturating_duration_since(self.start));
        let target_processing = match (e.dispatched, e.head_at) {
            (Some(d), Some(h)) => Some(h.saturating_duration_since(d)),
            _ => None,
        };
        // From the head's arrival to the head going out: lbsim forwards at once.
        let response_processing = e.head_at.map(|_| Duration::ZERO);
        Record {
            start: self.start_wall,
            end: self.start_wall + now.saturating_duration_since(self.start),
            client: self.client,
            listener: self.listener,
            target: e.target,
            request_processing,
            target_processing,
            response_processing,
            lb_status: e.lb_status,
            target_status: e.target_status,
            received_bytes: self.received_bytes,
            sent_bytes: e.sent_bytes,
            body_bytes: e.body_bytes,
            method: self.method.clone(),
            scheme: self.scheme,
            host: self.host.clone(),
            port: self.listener.port(),
            path: self.path.clone(),
            version: self.version,
            user_agent: self.user_agent.clone(),
            referer: self.referer.clone(),
            trace_id: self.trace_id.clone(),
            request_id: self.request_id.clone(),
            reason: e.reason,
            status_details: e.log_word.or(e.reason).unwrap_or(SENT_BY_BACKEND),
            cut: e.cut,
            conn_trace_id: self.conn_trace_id,
            routed: self.routed,
            tries: e.tries,
        }
    }
}

/// Bytes of a header block as it travels: `name: value\r\n` each, and the blank line.
pub(crate) fn head_size(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.as_bytes().len() + 4)
        .sum::<usize>()
        + 2
}
