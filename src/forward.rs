//! Headers on the way through: what the cloud adds to forwarded requests and responses,
//! and the hop-by-hop headers that belong to one connection only.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, TE, UPGRADE, VIA};
use rand::Rng;

use crate::profile::{Forwarding, TraceHeader};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const X_AMZN_TRACE_ID: HeaderName = HeaderName::from_static("x-amzn-trace-id");
const X_CLOUD_TRACE_CONTEXT: HeaderName = HeaderName::from_static("x-cloud-trace-context");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Removes headers that describe the client or target connection, not the message:
/// lbsim keeps its two sides' connections apart, as a load balancer does.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
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

/// Adds the cloud's forwarding headers to a request bound for a target.
pub fn add_request_headers(
    headers: &mut HeaderMap,
    fwd: &Forwarding,
    client: SocketAddr,
    local: SocketAddr,
) {
    strip_hop_by_hop(headers);
    let mut xff = String::new();
    for v in headers.get_all(&X_FORWARDED_FOR).iter() {
        if let Ok(v) = v.to_str() {
            if !xff.is_empty() {
                xff.push_str(", ");
            }
            xff.push_str(v);
        }
    }
    if !xff.is_empty() {
        xff.push_str(", ");
    }
    xff.push_str(&client.ip().to_string());
    if fwd.xff_appends_lb_address {
        xff.push_str(", ");
        xff.push_str(&local.ip().to_string());
    }
    set(headers, X_FORWARDED_FOR, &xff);
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    if fwd.port_header {
        headers.insert(X_FORWARDED_PORT, HeaderValue::from(local.port()));
    }
    match fwd.trace {
        TraceHeader::AmznTraceId => {
            let fresh = amzn_trace_id();
            let value = match headers.get(&X_AMZN_TRACE_ID).and_then(|v| v.to_str().ok()) {
                Some(existing) if existing.contains("Root=") => {
                    let rest = existing
                        .split(';')
                        .filter(|f| !f.trim_start().starts_with("Self="))
                        .collect::<Vec<_>>()
                        .join(";");
                    format!("Self={fresh};{rest}")
                }
                _ => format!("Root={fresh}"),
            };
            set(headers, X_AMZN_TRACE_ID, &value);
        }
        TraceHeader::CloudTraceContext => {
            if !headers.contains_key(&X_CLOUD_TRACE_CONTEXT) {
                let mut rng = rand::thread_rng();
                let value = format!("{:032x}/{};o=1", rng.gen::<u128>(), rng.gen::<u64>());
                set(headers, X_CLOUD_TRACE_CONTEXT, &value);
            }
        }
    }
    if let Some(via) = fwd.via {
        append_via(headers, via);
    }
}

/// Prepares a target's response head for the client.
pub fn add_response_headers(headers: &mut HeaderMap, fwd: &Forwarding) {
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

/// `1-{epoch seconds, 8 hex}-{96 random bits, 24 hex}`.
fn amzn_trace_id() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let random: u128 = rand::thread_rng().gen::<u128>() & ((1u128 << 96) - 1);
    format!("1-{:08x}-{:024x}", secs as u32, random)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{AWS_ALB, GCP_GFE};

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
        add_request_headers(&mut h, &AWS_ALB.forwarding, client, local);
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
    fn gcp_appends_lb_address_and_via() {
        let (client, local) = addrs();
        let mut h = HeaderMap::new();
        add_request_headers(&mut h, &GCP_GFE.forwarding, client, local);
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
