//! Every response the load balancer itself generates is built here, from profile data.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH};
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
pub fn page(profile: &Profile, status: u16, code: &'static str) -> Response<ProxyBody> {
    let page: &Page = match profile.page(status) {
        Some(p) => p,
        // Every outcome status has a page (tested); stay total anyway.
        None => &profile.pages[0],
    };
    let mut resp = Response::new(Either::Left(Full::new(Bytes::from_static(
        page.body.as_bytes(),
    ))));
    *resp.status_mut() = StatusCode::from_u16(page.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let headers = resp.headers_mut();
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
    resp.extensions_mut()
        .insert(ReasonPhrase::from_static(page.phrase.as_bytes()));
    resp
}
