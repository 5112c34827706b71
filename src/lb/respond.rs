//! Every response the load balancer itself generates is built here, from profile data.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, DATE};
use http::{Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::ext::ReasonPhrase;

use crate::lb::deadline::DeadlineBody;
use crate::lb::pool::TargetBody;
use crate::lb::profile::{self, GrpcErrors, HeaderCase, Outcome, Profile, LENGTH};

/// Diagnostic header naming the cause of an LB-generated response.
pub(crate) const REASON_HEADER: &str = "x-lbsim-reason";

/// The body of every response lbsim sends: its own page, or the target's stream.
pub(crate) type ProxyBody = Either<Full<Bytes>, DeadlineBody<TargetBody>>;

/// The cloud's page for `outcome`, with its cause in the diagnostic header.
///
/// Headers come in the page's order (its length where the page says), then
/// `Connection: close` when the page closes the connection; `Date` is added as the
/// response is written (last, as hyper's server does for HTTP/2 and lbsim's session
/// for HTTP/1.1).
pub(crate) fn page(outcome: Outcome) -> Response<ProxyBody> {
    let page = outcome.page;
    let mut resp = Response::new(Either::Left(Full::new(Bytes::from_static(
        page.body.as_bytes(),
    ))));
    *resp.status_mut() = StatusCode::from_u16(page.status).unwrap_or(StatusCode::BAD_GATEWAY);
    *resp.headers_mut() = headers(outcome);
    resp.extensions_mut()
        .insert(ReasonPhrase::from_static(page.phrase.as_bytes()));
    resp
}

/// True for a gRPC call: `content-type: application/grpc` (or `application/grpc+proto`, ...).
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The LB's page `resp` as the cloud sends it to a gRPC client (`style`).
pub(crate) fn for_grpc(resp: &mut Response<ProxyBody>, style: GrpcErrors, page_text: &str) {
    let (code, name) = profile::grpc_status_of(resp.status().as_u16());
    let headers = resp.headers_mut();
    match style {
        GrpcErrors::HttpStatus => {}
        GrpcErrors::HttpStatusWithGrpcStatus => {
            headers.insert("grpc-status", HeaderValue::from(u16::from(code)));
            headers.insert("grpc-message", HeaderValue::from_static(name));
        }
        GrpcErrors::TrailersOnly => {
            headers.remove(CONTENT_LENGTH);
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            headers.insert("grpc-status", HeaderValue::from(u16::from(code)));
            if let Ok(message) = HeaderValue::from_str(&grpc_message(page_text)) {
                headers.insert("grpc-message", message);
            }
            *resp.status_mut() = StatusCode::OK;
            resp.extensions_mut().remove::<ReasonPhrase>();
            *resp.body_mut() = Either::Left(Full::new(Bytes::new()));
        }
    }
}

/// `text` percent-encoded as gRPC's `grpc-message` wants (printable ASCII but `%` as it
/// is; every other byte as `%XX`).
fn grpc_message(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.trim_end().bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The same page serialized for writing straight to a socket, for the moments when
/// the session has no request to answer (a client that stalled mid-head), with header names
/// as the profile writes them.
pub(crate) fn page_bytes(profile: &'static Profile, outcome: Outcome) -> Vec<u8> {
    let page = outcome.page;
    let mut out = format!("HTTP/1.1 {} {}\r\n", page.status, page.phrase).into_bytes();
    let name = |name: &str| match profile.forwarding.header_case {
        HeaderCase::Preserve => title_case(name),
        HeaderCase::Lower => name.to_string(),
    };
    let mut headers = headers(outcome);
    if !headers.contains_key(DATE) {
        // Added last to the pages a response carries; the same here.
        headers.insert(DATE, date_now());
    }
    for (header, value) in headers.iter() {
        out.extend_from_slice(name(header.as_str()).as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(page.body.as_bytes());
    out
}

/// The `Date` value for now, formatted once per second per thread (as hyper caches it):
/// every response carries one.
pub(crate) fn date_now() -> HeaderValue {
    thread_local! {
        static CACHED: std::cell::RefCell<(u64, HeaderValue)> =
            const { std::cell::RefCell::new((u64::MAX, HeaderValue::from_static(""))) };
    }
    let now = std::time::SystemTime::now();
    let second = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHED.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != second {
            let text = httpdate::fmt_http_date(now);
            cached.1 = HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static(""));
            cached.0 = second;
        }
        cached.1.clone()
    })
}

fn title_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        out.push(if upper { c.to_ascii_uppercase() } else { c });
        upper = c == '-';
    }
    out
}

fn headers(outcome: Outcome) -> HeaderMap {
    let page = outcome.page;
    let mut headers = HeaderMap::new();
    for &(name, value) in page.headers {
        if (name, value) == LENGTH {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(page.body.len()));
        } else if (name, value) == profile::DATE {
            headers.insert(DATE, date_now());
        } else {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
    }
    if page.close {
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    headers.insert(REASON_HEADER, HeaderValue::from_static(outcome.code));
    headers
}
