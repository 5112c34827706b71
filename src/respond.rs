//! Every response the load balancer itself generates is built here, from profile data.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH};
use http::{Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::ext::ReasonPhrase;

use crate::deadline::DeadlineBody;
use crate::profile::{Page, Profile};

/// Diagnostic header naming the cause of an LB-generated response.
pub const REASON_HEADER: &str = "x-lbsim-reason";

/// The body of every response lbsim sends: its own page, or the target's stream.
pub type ProxyBody = Either<Full<Bytes>, DeadlineBody<Incoming>>;

/// The cloud's page for `status`, with `code` in the diagnostic header.
///
/// Headers come in the profile's order, then `Content-Length`, then `Connection: close`
/// when the page closes the connection; hyper adds `Date`.
pub fn page(profile: &'static Profile, status: u16, code: &'static str) -> Response<ProxyBody> {
    let (page, headers) = page_parts(profile, status, code);
    let mut resp = Response::new(Either::Left(Full::new(Bytes::from_static(
        page.body.as_bytes(),
    ))));
    *resp.status_mut() = StatusCode::from_u16(page.status).unwrap_or(StatusCode::BAD_GATEWAY);
    *resp.headers_mut() = headers;
    resp.extensions_mut()
        .insert(ReasonPhrase::from_static(page.phrase.as_bytes()));
    resp
}

/// The same page serialized for writing straight to a socket, for the moments when
/// hyper has no request to answer (a client that stalled mid-head).
pub fn page_bytes(profile: &'static Profile, status: u16, code: &'static str) -> Vec<u8> {
    let (page, headers) = page_parts(profile, status, code);
    let mut out = format!("HTTP/1.1 {} {}\r\n", page.status, page.phrase).into_bytes();
    for (name, value) in headers.iter() {
        out.extend_from_slice(title_case(name.as_str()).as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Date: ");
    out.extend_from_slice(httpdate::fmt_http_date(std::time::SystemTime::now()).as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(page.body.as_bytes());
    out
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

fn page_parts(
    profile: &'static Profile,
    status: u16,
    code: &'static str,
) -> (&'static Page, HeaderMap) {
    let page: &Page = match profile.page(status) {
        Some(p) => p,
        // Every outcome status has a page (tested); stay total anyway.
        None => &profile.pages[0],
    };
    let mut headers = HeaderMap::new();
    for (name, value) in profile.page_headers {
        headers.append(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    headers.insert(CONTENT_LENGTH, HeaderValue::from(page.body.len()));
    if page.close {
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    headers.insert(REASON_HEADER, HeaderValue::from_static(code));
    (page, headers)
}
