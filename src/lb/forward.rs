//! Headers on the way through: what the cloud adds to forwarded requests and responses,
//! and the hop-by-hop headers that belong to one connection only.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, TE, UPGRADE, VIA};
use rand::Rng;

use crate::lb::accesslog::ConnTraceId;
use crate::lb::profile::{Forwarding, TraceHeader};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const X_AMZN_TRACE_ID: HeaderName = HeaderName::from_static("x-amzn-trace-id");
const X_CLOUD_TRACE_CONTEXT: HeaderName = HeaderName::from_static("x-cloud-trace-context");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// The two ends of one client connection, with the forwarding header values derived
/// from them formatted once per connection rather than once per request, and the
/// connection's access-log ID.
#[derive(Debug)]
pub(crate) struct Peer {
    /// The client's address, as the target sees it in `X-Forwarded-For`.
    pub client: SocketAddr,
    /// The listener's address (the LB's own, for GCP's `X-Forwarded-For` and the port).
    pub local: SocketAddr,
    /// What the LB appends to `X-Forwarded-For`: the client, then (GCP) the LB itself.
    xff_tail: HeaderValue,
    /// `X-Forwarded-Port`.
    port: HeaderValue,
    /// The connection's ALB `conn_trace_id`, drawn once here so that every request on
    /// the connection logs the same one (AWS uses it to group a connection's requests).
    pub conn_trace_id: ConnTraceId,
    /// The client connected over TLS (`--tls`): `X-Forwarded-Proto: https`, and the
    /// access log's scheme and connection type say so.
    pub tls: bool,
}

impl Peer {
    /// The values `fwd` adds for a connection from `client` to `local`.
    pub(crate) fn new(fwd: &Forwarding, client: SocketAddr, local: SocketAddr) -> Peer {
        let tail = if fwd.xff_appends_lb_address {
            format!("{}{}{}", client.ip(), fwd.xff_separator, local.ip())
        } else {
            client.ip().to_string()
        };
        Peer {
            client,
            local,
            // An IP address is always a valid header value.
            xff_tail: HeaderValue::from_str(&tail).unwrap_or(HeaderValue::from_static("")),
            port: HeaderValue::from(local.port()),
            conn_trace_id: ConnTraceId::random(),
            tls: false,
        }
    }

    /// The same ends, for a connection that came over TLS.
    pub(crate) fn over_tls(self, tls: bool) -> Peer {
        Peer { tls, ..self }
    }

    /// What `X-Forwarded-Proto` and the access log call the client's protocol.
    pub(crate) fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }
}

/// Headers that belong to one connection; `Connection` may name more.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == CONNECTION
        || name == KEEP_ALIVE
        || name == PROXY_CONNECTION
        || name == TE
        || name == UPGRADE
}

/// Removes headers that describe the client or target connection, not the message:
/// lbsim keeps its two sides' connections apart, as a load balancer does.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over the names, no hashing, no allocation.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let listed: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        // Never drop framing headers because a client listed them.
        if name != http::header::CONTENT_LENGTH && name != http::header::TRANSFER_ENCODING {
            headers.remove(name);
        }
    }
    for name in [CONNECTION, KEEP_ALIVE, PROXY_CONNECTION, TE, UPGRADE] {
        headers.remove(name);
    }
}

/// The protocol a message asks to switch to: its `Upgrade` value when `Connection`
/// lists `upgrade` (RFC 9110 section 7.8), as a WebSocket handshake does.
pub(crate) fn upgrade_of(headers: &HeaderMap) -> Option<HeaderValue> {
    let listed = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    if listed {
        headers.get(UPGRADE).cloned()
    } else {
        None
    }
}

/// Puts back the upgrade headers [`strip_hop_by_hop`] removed: the two connections of
/// a WebSocket become one tunnel, so the handshake must reach the other side (the
/// cloud's load balancers forward it; the `Sec-WebSocket-*` headers are end to end and
/// were never removed).
pub(crate) fn restore_upgrade(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(UPGRADE, protocol);
}

/// Adds the cloud's forwarding headers to a request bound for a target.
pub(crate) fn add_request_headers(headers: &mut HeaderMap, fwd: &Forwarding, peer: &Peer) {
    let upgrade = upgrade_of(headers);
    strip_hop_by_hop(headers);
    if let Some(protocol) = upgrade {
        restore_upgrade(headers, protocol);
    }
    let xff = match headers.get(&X_FORWARDED_FOR) {
        None => peer.xff_tail.clone(),
        Some(_) => {
            let mut xff = Vec::with_capacity(64);
            for v in headers.get_all(&X_FORWARDED_FOR).iter() {
                xff.extend_from_slice(v.as_bytes());
                xff.extend_from_slice(fwd.xff_separator.as_bytes());
            }
            xff.extend_from_slice(peer.xff_tail.as_bytes());
            match HeaderValue::from_bytes(&xff) {
                Ok(v) => v,
                Err(_) => peer.xff_tail.clone(),
            }
        }
    };
    headers.insert(X_FORWARDED_FOR, xff);
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(peer.scheme()));
    if fwd.port_header {
        headers.insert(X_FORWARDED_PORT, peer.port.clone());
    }
    match fwd.trace {
        TraceHeader::AmznTraceId => {
            let fresh = amzn_trace_id();
            let fresh = fresh.as_str();
            let value = match headers.get(&X_AMZN_TRACE_ID).and_then(|v| v.to_str().ok()) {
                Some(existing) if existing.contains("Root=") => {
                    let rest = existing
                        .split(';')
                        .filter(|f| !f.trim_start().starts_with("Self="))
                        .collect::<Vec<_>>()
                        .join(";");
                    HeaderValue::from_str(&format!("Self={fresh};{rest}")).ok()
                }
                _ => {
                    let mut root = [0u8; 5 + TRACE_ID_LEN];
                    root[..5].copy_from_slice(b"Root=");
                    root[5..].copy_from_slice(fresh.as_bytes());
                    HeaderValue::from_bytes(&root).ok()
                }
            };
            if let Some(value) = value {
                headers.insert(X_AMZN_TRACE_ID, value);
            }
        }
        TraceHeader::CloudTraceContext => {
            if !headers.contains_key(&X_CLOUD_TRACE_CONTEXT) {
                // `TRACE_ID/SPAN_ID;o=1`: 32 hex digits, a decimal span id. Written by
                // hand: `format!` cost GCP about 2 % of its instructions per request.
                let mut rng = rand::thread_rng();
                let mut value = [0u8; 32 + 1 + 20 + 4];
                let mut len = push_hex(&mut value, 0, rng.gen::<u128>());
                value[len] = b'/';
                len = push_decimal(&mut value, len + 1, rng.gen::<u64>());
                value[len..len + 4].copy_from_slice(b";o=1");
                if let Ok(v) = HeaderValue::from_bytes(&value[..len + 4]) {
                    headers.insert(X_CLOUD_TRACE_CONTEXT, v);
                }
            }
        }
        TraceHeader::RequestId => {
            // ingress-nginx sends `X-Request-ID: $req_id`: the client's own if it sent
            // one, else nginx's $request_id (32 hex digits).
            if !headers.contains_key(X_REQUEST_ID) {
                let mut value = [0u8; 32];
                push_hex(&mut value, 0, rand::thread_rng().gen::<u128>());
                if let Ok(v) = HeaderValue::from_bytes(&value) {
                    headers.insert(http::HeaderName::from_static(X_REQUEST_ID), v);
                }
            }
        }
    }
    if let Some(via) = fwd.via {
        append_via(headers, via);
    }
}

/// ingress-nginx's request id header.
const X_REQUEST_ID: &str = "x-request-id";

/// Prepares a target's response head for the client.
pub(crate) fn add_response_headers(headers: &mut HeaderMap, fwd: &Forwarding) {
    strip_hop_by_hop(headers);
    if let Some(via) = fwd.via {
        append_via(headers, via);
    }
}

fn append_via(headers: &mut HeaderMap, via: &'static str) {
    match headers.get(VIA).and_then(|v| v.to_str().ok()) {
        Some(existing) => {
            let value = format!("{existing}, {via}");
            set(headers, VIA, &value);
        }
        None => {
            headers.insert(VIA, HeaderValue::from_static(via));
        }
    }
}

fn set(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

/// Length of an ALB trace id: `1-` + 8 hex + `-` + 24 hex.
const TRACE_ID_LEN: usize = 35;

/// An ALB trace id, formatted without the formatting machinery (it is made per request).
struct TraceId([u8; TRACE_ID_LEN]);

impl TraceId {
    fn as_str(&self) -> &str {
        // Only ASCII digits, hex letters and dashes are ever written.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

/// `1-{epoch seconds, 8 hex}-{96 random bits, 24 hex}`.
/// Writes `n` as 32 lower-case hex digits at `out[at..]`; where the digits end.
fn push_hex(out: &mut [u8], at: usize, n: u128) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, slot) in out[at..at + 32].iter_mut().enumerate() {
        *slot = HEX[((n >> (124 - 4 * i)) & 0xf) as usize];
    }
    at + 32
}

/// Writes `n` in decimal at `out[at..]` (room for 20 digits); where the digits end.
fn push_decimal(out: &mut [u8], at: usize, mut n: u64) -> usize {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let len = digits.len() - i;
    out[at..at + len].copy_from_slice(&digits[i..]);
    at + len
}

fn amzn_trace_id() -> TraceId {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as u32;
    let random: u128 = rand::thread_rng().gen::<u128>();
    let mut id = [0u8; TRACE_ID_LEN];
    id[0] = b'1';
    id[1] = b'-';
    for (i, slot) in id[2..10].iter_mut().enumerate() {
        *slot = HEX[((secs >> (28 - 4 * i)) & 0xf) as usize];
    }
    id[10] = b'-';
    for (i, slot) in id[11..].iter_mut().enumerate() {
        *slot = HEX[((random >> (92 - 4 * i)) & 0xf) as usize];
    }
    TraceId(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::profile::{AWS_ALB, GCP_CLASSIC};

    #[test]
    fn trace_ids_are_written_as_format_would() {
        for n in [
            0u128,
            1,
            0xabc,
            u128::MAX,
            0x0123_4567_89ab_cdef_0011_2233_4455_6677,
        ] {
            let mut out = [0u8; 32];
            assert_eq!(push_hex(&mut out, 0, n), 32);
            assert_eq!(std::str::from_utf8(&out).unwrap(), format!("{n:032x}"));
        }
        for n in [0u64, 7, 10, 1234567890, u64::MAX] {
            let mut out = [0u8; 21];
            let end = push_decimal(&mut out, 1, n);
            assert_eq!(std::str::from_utf8(&out[1..end]).unwrap(), n.to_string());
        }
    }

    fn addrs() -> (SocketAddr, SocketAddr) {
        (
            "127.0.0.9:5555".parse().unwrap(),
            "127.0.0.1:8080".parse().unwrap(),
        )
    }

    #[test]
    fn aws_appends_client_and_prefixes_self() {
        let (client, local) = addrs();
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        h.insert(
            "x-amzn-trace-id",
            HeaderValue::from_static("Root=1-5759e988-bd862e3fe1be46a994272793"),
        );
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-private"),
        );
        h.insert("x-private", HeaderValue::from_static("1"));
        add_request_headers(
            &mut h,
            &AWS_ALB.forwarding,
            &Peer::new(&AWS_ALB.forwarding, client, local),
        );
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.9");
        assert_eq!(h["x-forwarded-port"], "8080");
        assert_eq!(h["x-forwarded-proto"], "http");
        let trace = h["x-amzn-trace-id"].to_str().unwrap();
        assert!(trace.starts_with("Self=1-"), "{trace}");
        assert!(
            trace.ends_with(";Root=1-5759e988-bd862e3fe1be46a994272793"),
            "{trace}"
        );
        assert!(!h.contains_key("x-private") && !h.contains_key("connection"));
    }

    #[test]
    fn aws_starts_a_trace_when_there_is_none() {
        let (client, local) = addrs();
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        h.append("x-forwarded-for", HeaderValue::from_static("10.0.0.2"));
        let fwd = &AWS_ALB.forwarding;
        add_request_headers(&mut h, fwd, &Peer::new(fwd, client, local));
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 10.0.0.2, 127.0.0.9");
        let trace = h["x-amzn-trace-id"].to_str().unwrap();
        let id = trace.strip_prefix("Root=1-").expect(trace);
        let (secs, random) = id.split_once('-').expect(trace);
        let hex = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        assert!(
            secs.len() == 8 && random.len() == 24 && hex(secs) && hex(random),
            "{trace}"
        );
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let stamped = u64::from_str_radix(secs, 16).unwrap();
        assert!(now.abs_diff(stamped) <= 2, "{trace} vs {now}");
    }

    #[test]
    fn an_upgrade_request_keeps_its_handshake_headers() {
        let (client, local) = addrs();
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            "sec-websocket-key",
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        let fwd = &AWS_ALB.forwarding;
        add_request_headers(&mut h, fwd, &Peer::new(fwd, client, local));
        assert_eq!(h["connection"], "Upgrade");
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["sec-websocket-key"], "dGhlIHNhbXBsZSBub25jZQ==");
        assert!(!h.contains_key("keep-alive"));
        // An Upgrade header that Connection does not list is a hop-by-hop leftover.
        let mut h = HeaderMap::new();
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        add_request_headers(&mut h, fwd, &Peer::new(fwd, client, local));
        assert!(!h.contains_key("upgrade") && !h.contains_key("connection"));
    }

    #[test]
    fn gcp_appends_lb_address_and_via() {
        let (client, local) = addrs();
        let mut h = HeaderMap::new();
        add_request_headers(
            &mut h,
            &GCP_CLASSIC.forwarding,
            &Peer::new(&GCP_CLASSIC.forwarding, client, local),
        );
        assert_eq!(h["x-forwarded-for"], "127.0.0.9, 127.0.0.1");
        assert_eq!(h["via"], "1.1 google");
        assert!(!h.contains_key("x-forwarded-port"));
        let ctx = h["x-cloud-trace-context"].to_str().unwrap();
        assert!(
            ctx.ends_with(";o=1") && ctx.split('/').next().unwrap().len() == 32,
            "{ctx}"
        );
    }
}
