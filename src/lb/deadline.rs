//! The main timeout, in both flavours, and the body wrappers that enforce it.
//!
//! A [`Deadline`] is shared by the request body (bytes sent to the target count as
//! activity), the wait for the response head, and the response body. With idle
//! semantics every frame pushes the expiry forward; with end-to-end semantics the expiry
//! is fixed when the request arrives.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use crate::lb::profile::TimeoutKind;

/// Boxed error type of the bodies lbsim streams.
pub(crate) type BoxError = Box<dyn StdError + Send + Sync>;

/// When the main timeout of one request fires.
#[derive(Clone, Debug)]
pub(crate) struct Deadline(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    kind: TimeoutKind,
    timeout: Duration,
    /// When the request arrived; activity is stored relative to it.
    origin: Instant,
    /// Nanoseconds after `origin` of the last byte moved (idle semantics only).
    last_activity: AtomicU64,
    /// Nanoseconds after `origin` at which the current attempt began: an end-to-end
    /// timer counts from it (a retry that gets the timeout afresh moves it).
    attempt_start: AtomicU64,
    /// Set once the client's request body has been read to its end.
    request_complete: AtomicBool,
    /// The last poll of the request body found no bytes from the client: a timeout now
    /// is the client's stall (408). Clear while the target is not taking the bytes it
    /// was given (it stopped reading): a timeout then is the target's.
    awaiting_client: AtomicBool,
    /// The client's request body broke its framing (a bad chunk size): the failure of
    /// the exchange is the client's (400), not the target's.
    client_body_failed: AtomicBool,
    /// The deadline passed while the client was not reading the response: lbsim cut it.
    client_stalled: AtomicBool,
}

impl Deadline {
    /// Starts the clock now.
    pub(crate) fn start(kind: TimeoutKind, timeout: Duration) -> Self {
        Deadline(Arc::new(Inner {
            kind,
            timeout,
            origin: Instant::now(),
            last_activity: AtomicU64::new(0),
            attempt_start: AtomicU64::new(0),
            request_complete: AtomicBool::new(false),
            awaiting_client: AtomicBool::new(false),
            client_body_failed: AtomicBool::new(false),
            client_stalled: AtomicBool::new(false),
        }))
    }

    /// Records that a byte moved; only idle deadlines care.
    pub(crate) fn touch(&self) {
        if self.0.kind == TimeoutKind::Idle {
            self.touch_at(Instant::now());
        }
    }

    /// Records that a byte moved at `at` (for a caller that has just read the clock).
    pub(crate) fn touch_at(&self, at: Instant) {
        if self.0.kind == TimeoutKind::Idle {
            let nanos = at.saturating_duration_since(self.0.origin).as_nanos() as u64;
            self.0.last_activity.fetch_max(nanos, Ordering::Relaxed);
        }
    }

    /// Gives a new attempt the whole timeout from now, for an LB whose timers belong to
    /// one connection to a target (nginx's `proxy_read_timeout` starts again on the next
    /// upstream). [`Deadline::elapsed`] still counts from the request's arrival.
    pub(crate) fn restart(&self) {
        let nanos = self.0.origin.elapsed().as_nanos() as u64;
        self.0.attempt_start.fetch_max(nanos, Ordering::Relaxed);
        self.0.last_activity.fetch_max(nanos, Ordering::Relaxed);
    }

    /// The instant at which the timeout fires if nothing else moves.
    pub(crate) fn expiry(&self) -> Instant {
        match self.0.kind {
            TimeoutKind::EndToEnd => {
                let start = Duration::from_nanos(self.0.attempt_start.load(Ordering::Relaxed));
                self.0.origin + start + self.0.timeout
            }
            TimeoutKind::Idle => {
                let last = Duration::from_nanos(self.0.last_activity.load(Ordering::Relaxed));
                self.0.origin + last + self.0.timeout
            }
        }
    }

    /// True once the whole request body has gone to the target.
    pub(crate) fn request_complete(&self) -> bool {
        self.0.request_complete.load(Ordering::Relaxed)
    }

    /// Records that the whole request body has been read (or that there is none).
    pub(crate) fn mark_request_complete(&self) {
        self.0.request_complete.store(true, Ordering::Relaxed);
    }

    /// True when a timeout now would be the client's stall: its body is incomplete and
    /// lbsim is waiting for its bytes (not for the target to take them).
    pub(crate) fn waiting_for_client(&self) -> bool {
        !self.request_complete() && self.0.awaiting_client.load(Ordering::Relaxed)
    }

    /// True when the client's request body broke its framing.
    pub(crate) fn client_body_failed(&self) -> bool {
        self.0.client_body_failed.load(Ordering::Relaxed)
    }

    /// Records that the deadline passed with the client not reading the response.
    pub(crate) fn mark_client_stalled(&self) {
        self.0.client_stalled.store(true, Ordering::Relaxed);
    }

    /// True when lbsim cut the response because the client stopped reading it.
    pub(crate) fn client_stalled(&self) -> bool {
        self.0.client_stalled.load(Ordering::Relaxed)
    }

    /// Time since the request arrived.
    pub(crate) fn elapsed(&self) -> Duration {
        self.0.origin.elapsed()
    }

    /// Resolves when the deadline has passed, using `sleep` as its timer (which the
    /// response body then takes over: one timer per request, not two).
    pub(crate) async fn expired(&self, mut sleep: Pin<&mut Sleep>) {
        loop {
            let at = self.expiry();
            if Instant::now() >= at {
                return;
            }
            if sleep.deadline() != at {
                sleep.as_mut().reset(at);
            }
            sleep.as_mut().await;
        }
    }

    /// A timer armed for the current expiry, for [`Deadline::expired`].
    pub(crate) fn timer(&self) -> Pin<Box<Sleep>> {
        Box::pin(tokio::time::sleep_until(self.expiry()))
    }
}

/// The response body was cut because the main timeout fired mid-stream.
#[derive(Debug)]
pub(crate) struct Cut;

impl fmt::Display for Cut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("load balancer timeout cut the response")
    }
}

impl StdError for Cut {}

/// How a proxied response body ended, reported once to its [`OnEnd`] hook.
#[derive(Debug)]
pub(crate) enum BodyEnd {
    /// Every byte was delivered.
    Complete,
    /// The deadline fired mid-body and the client connection was cut.
    Cut,
    /// The target failed mid-body (closed, reset, bad chunk).
    TargetError(String),
    /// The client went away before the end.
    Abandoned,
    /// The target's deregistration delay ended mid-body.
    Killed,
}

/// A hook run exactly once when a body ends; dropping it unfired reports `Abandoned`.
/// The hook also learns how many body bytes went to the client, for the access log.
pub(crate) struct OnEnd {
    hook: Option<Box<dyn FnOnce(BodyEnd, u64) + Send>>,
    sent: u64,
}

impl OnEnd {
    /// Wraps `f`.
    pub(crate) fn new(f: impl FnOnce(BodyEnd, u64) + Send + 'static) -> Self {
        OnEnd {
            hook: Some(Box::new(f)),
            sent: 0,
        }
    }

    fn fire(&mut self, end: BodyEnd) {
        if let Some(f) = self.hook.take() {
            f(end, self.sent)
        }
    }
}

impl Drop for OnEnd {
    fn drop(&mut self) {
        self.fire(BodyEnd::Abandoned)
    }
}

impl fmt::Debug for OnEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OnEnd")
    }
}

pin_project! {
    /// A response body that the deadline can cut, reporting how it ended.
    pub struct DeadlineBody<B> {
        #[pin]
        inner: B,
        deadline: Deadline,
        // The request's timer, taken over from the wait for the head; re-armed only
        // when it fires early (idle semantics moved the expiry).
        sleep: Pin<Box<Sleep>>,
        on_end: OnEnd,
        kill: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    }
}

impl<B: Body> DeadlineBody<B> {
    /// Wraps `inner`, timed by `sleep` (from [`Deadline::timer`]); an already finished
    /// body reports `Complete` at once, since the writer may never poll it.
    pub(crate) fn new(
        inner: B,
        deadline: Deadline,
        sleep: Pin<Box<Sleep>>,
        mut on_end: OnEnd,
    ) -> Self {
        if inner.is_end_stream() {
            on_end.fire(BodyEnd::Complete);
        }
        DeadlineBody {
            inner,
            deadline,
            sleep,
            on_end,
            kill: None,
        }
    }

    /// Also cuts the body when `kill` resolves (a deregistration delay ending).
    pub(crate) fn cut_when(mut self, kill: Pin<Box<dyn Future<Output = ()> + Send>>) -> Self {
        self.kill = Some(kill);
        self
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: fmt::Display + Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.deadline.touch();
                if let Some(data) = frame.data_ref() {
                    this.on_end.sent += data.len() as u64;
                }
                // Trailers are the last frame: a writer sends them and drops the
                // body without polling it for its end.
                if frame.is_trailers() || this.inner.is_end_stream() {
                    this.on_end.fire(BodyEnd::Complete);
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(Some(Err(e))) => {
                this.on_end.fire(BodyEnd::TargetError(e.to_string()));
                return Poll::Ready(Some(Err(e.into())));
            }
            Poll::Ready(None) => {
                this.on_end.fire(BodyEnd::Complete);
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        ready!(poll_cut(
            this.kill,
            this.sleep,
            this.deadline,
            this.on_end,
            cx
        ));
        Poll::Ready(Some(Err(Box::new(Cut))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Pending until the body must be cut (the target's deregistration delay ended, or the
/// deadline passed); then reports how it ended.
fn poll_cut(
    kill: &mut Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    sleep: &mut Pin<Box<Sleep>>,
    deadline: &Deadline,
    on_end: &mut OnEnd,
    cx: &mut Context<'_>,
) -> Poll<()> {
    if let Some(kill) = kill.as_mut() {
        if kill.as_mut().poll(cx).is_ready() {
            on_end.fire(BodyEnd::Killed);
            return Poll::Ready(());
        }
    }
    loop {
        ready!(sleep.as_mut().poll(cx));
        let at = deadline.expiry();
        if at > Instant::now() {
            // Bytes moved since the timer was set (idle semantics): wait again.
            sleep.as_mut().reset(at);
            continue;
        }
        on_end.fire(BodyEnd::Cut);
        return Poll::Ready(());
    }
}

impl DeadlineBody<crate::lb::pool::TargetBody> {
    /// The target socket and the bytes left, when the rest of the body can be spliced
    /// (see [`crate::lb::h1::target::ResponseBody::splice_source`]).
    pub(crate) fn splice_source(self: Pin<&mut Self>) -> Option<(&tokio::net::TcpStream, u64)> {
        match self.project().inner.get_mut() {
            crate::lb::pool::TargetBody::H1(body) => body.splice_source(),
            _ => None,
        }
    }

    /// Records `n` body bytes moved by splice: activity for the deadline, bytes for the
    /// log, and the body's end when they were the last.
    pub(crate) fn spliced(self: Pin<&mut Self>, n: u64) {
        let this = self.project();
        this.deadline.touch();
        this.on_end.sent += n;
        if let crate::lb::pool::TargetBody::H1(body) = this.inner.get_mut() {
            body.spliced(n);
            if body.is_end_stream() {
                this.on_end.fire(BodyEnd::Complete);
            }
        }
    }

    /// The target failed while its bytes were spliced.
    pub(crate) fn fail(self: Pin<&mut Self>, error: String) {
        self.project().on_end.fire(BodyEnd::TargetError(error));
    }

    /// Pending until the body must be cut (the deadline, the deregistration delay);
    /// polled while bytes move outside [`Body::poll_frame`].
    pub(crate) fn poll_stop(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        poll_cut(this.kill, this.sleep, this.deadline, this.on_end, cx)
    }
}

pin_project! {
    /// A request body that counts each frame sent to the target as activity.
    pub struct Touching<B> {
        #[pin]
        inner: B,
        deadline: Deadline,
    }
}

impl<B: Body> Touching<B> {
    /// Wraps `inner`; a body that is already finished (a GET) counts as complete.
    pub(crate) fn new(inner: B, deadline: Deadline) -> Self {
        if inner.is_end_stream() {
            deadline.mark_request_complete();
        }
        Touching { inner, deadline }
    }
}

impl<B: Body> Body for Touching<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        let inner = &this.deadline.0;
        inner
            .awaiting_client
            .store(polled.is_pending(), Ordering::Relaxed);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                this.deadline.touch();
                // Trailers are a body's last frame: a writer sends them and the
                // end of the message, and never polls the body again for its end.
                if frame.is_trailers() || this.inner.is_end_stream() {
                    this.deadline.mark_request_complete();
                }
            }
            Poll::Ready(None) => this.deadline.mark_request_complete(),
            Poll::Ready(Some(Err(_))) => inner.client_body_failed.store(true, Ordering::Relaxed),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_deadline_moves_with_activity_end_to_end_does_not() {
        let idle = Deadline::start(TimeoutKind::Idle, Duration::from_secs(1));
        let e2e = Deadline::start(TimeoutKind::EndToEnd, Duration::from_secs(1));
        let first = idle.expiry();
        tokio::time::advance(Duration::from_millis(600)).await;
        idle.touch();
        e2e.touch();
        assert!(idle.expiry() >= first + Duration::from_millis(600));
        assert_eq!(e2e.expiry(), first);
    }

    /// A body that yields `frames`, then its end (which hyper never asks for after
    /// trailers).
    struct Frames(std::collections::VecDeque<Frame<Bytes>>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(Ok))
        }
    }

    fn data_then_trailers() -> Frames {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-checksum", http::HeaderValue::from_static("abc"));
        Frames(
            [
                Frame::data(Bytes::from_static(b"hello")),
                Frame::trailers(trailers),
            ]
            .into(),
        )
    }

    /// Regression: a chunked request with trailers left the request "incomplete" (hyper's
    /// client writes the trailers and never polls the body again), so its answer said
    /// `Connection: close` and a pipelined request after it went unanswered.
    #[tokio::test]
    async fn a_request_body_ends_with_its_trailers() {
        use http_body_util::BodyExt;
        let deadline = Deadline::start(TimeoutKind::Idle, Duration::from_secs(60));
        let mut body = Touching::new(data_then_trailers(), deadline.clone());
        assert!(body.frame().await.is_some());
        assert!(!deadline.request_complete(), "data, trailers to come");
        assert!(body.frame().await.is_some_and(|f| f.unwrap().is_trailers()));
        assert!(deadline.request_complete(), "complete with its trailers");
    }

    /// Regression: a response with trailers was reported `Abandoned` (the client gone)
    /// when hyper's server dropped it after writing the trailers, so its target
    /// connection was never reused.
    #[tokio::test]
    async fn a_response_body_ends_with_its_trailers() {
        use http_body_util::BodyExt;
        let deadline = Deadline::start(TimeoutKind::Idle, Duration::from_secs(60));
        let ended = Arc::new(std::sync::Mutex::new(None));
        let record = ended.clone();
        let on_end = OnEnd::new(move |end, sent| *record.lock().unwrap() = Some((end, sent)));
        let sleep = Box::pin(tokio::time::sleep(Duration::from_secs(60)));
        let mut body = DeadlineBody::new(data_then_trailers(), deadline, sleep, on_end);
        assert!(body.frame().await.is_some());
        assert!(body.frame().await.is_some_and(|f| f.unwrap().is_trailers()));
        drop(body);
        let ended = ended.lock().unwrap().take();
        assert!(matches!(ended, Some((BodyEnd::Complete, 5))), "{ended:?}");
    }
}
