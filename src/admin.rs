//! The control API: JSON over HTTP/1.1 on its own listener (`lbsim --admin 127.0.0.1:9901`),
//! so a test harness in any language can change targets and read counters while lbsim runs.
//! It never shares a port with the proxy: `/targets` on the proxy port goes to the app.
//!
//! | method | path | answer |
//! |---|---|---|
//! | `GET` | `/targets` | 200, every target in the group (registered or draining): `[{"id", "address", "state", "checked_state", "reason", "override", "in_flight"}]`, plus `"drain_remaining_ms"` while draining |
//! | `POST` | `/targets` | body `{"address": "HOST:PORT"}`: registers it; 201 with the target (409 if already registered) |
//! | `GET` | `/targets/{id}` | 200 with the target |
//! | `DELETE` | `/targets/{id}` | deregisters it (it drains, then leaves the group: 404 from then on); 202 with the target; 200 with it if it was already draining (nothing changes, as on AWS) |
//! | `PUT` | `/targets/{id}/health` | body `{"override": "healthy" \| "unhealthy" \| "auto"}`; 200 with the target |
//! | `GET` | `/stats` | 200, `{"by_status": {"504": 1}, "by_reason": {"target_idle_timeout": 1}, "by_cause": {"target_timeout": 1}, "lb_by_status": {"504": 1}, "retries": 0, "spliced_bytes": 0}` |
//! | `POST` | `/stats/reset` | zeroes the counters; 204 |
//! | `GET` | `/metrics` | Prometheus text format (`lbsim_requests_total`, `lbsim_lb_errors_total{reason, cause}`, `lbsim_targets`, `lbsim_target_in_flight`) |
//! | `GET` | `/config` | 200, the effective (scaled) settings |
//! | `GET` | `/ui` | 200, the live view: an HTML page (its script and style at `/ui/live.js`, `/ui/live.css`) that follows `/events`, `/stats`, `/targets` and `/config` in a browser ([`crate::ui`]); `GET /` from a browser (`Accept: text/html`) redirects to it, from anything else it is the 404 listing the endpoints |
//! | `GET` | `/events` | 200, the engine's events as they happen, newline-delimited JSON (`application/x-ndjson`, chunked), one per line: `{"at_us": 1520, "event": "lb_answered", "status": 504, ...}`; until the client disconnects or the control API shuts down. A reader too slow for [`crate::EVENT_CAPACITY`] events gets `{"event":"lagged","missed":N}` and the stream goes on; under `lbsim demo --ui`, `{"event":"simulator_changed"}` when the next scenario's simulator takes over |
//!
//! `/stats` counts the LB's own answers and cuts twice over: `by_reason` in the cloud's
//! words (what the `x-lbsim-reason` header says; stable, harnesses in any language key on
//! it), and `by_cause` by lbsim's cloud-neutral cause ([`crate::Reason::name`]), which
//! tells apart causes one cloud gives the same word (on AWS the keep-alive race and an app
//! that closed the connection are both `target_closed_connection`). `lb_by_status` is the
//! LB's answers by status (the rest of `by_status` is the app's); `retries` the requests
//! the LB sent to a backend again; `spliced_bytes` the response body bytes moved socket to
//! socket by `splice(2)` (the rest were copied). `lbsim_lb_errors_total` has one line per cause, with
//! both labels.
//!
//! `state` is the effective state, the one routing and `/metrics` go by: an `unhealthy`
//! override makes it `unhealthy` whatever the checks say. `checked_state` is what the health
//! checks alone say, and `override` the manual verdict.
//!
//! Every error has a JSON body `{"error": "..."}`: 400 for a body that is not the JSON asked
//! for, 404 for an unknown path or target id, 405 (with `Allow`) for a method the path does
//! not take, 409 for a target registered twice, 413 for a body over [`MAX_BODY`]; and 503
//! when the control API will not do the work: over [`MAX_CONCURRENT`] requests at once (the
//! one too many is answered at once, not queued), or a request not answered within
//! [`REQUEST_TIMEOUT`] (a body that stops arriving, a name that takes that long to resolve).
//! 503 and not 504: the control API is no gateway, and 504 is the simulated load balancer's
//! word, which a harness must not mistake this for.
//!
//! The shape is tower's: [`Router`] is a `Service<Request<Incoming>>` (path and method to
//! handler), in layers built with [`tower::ServiceBuilder`], outermost first: the 503
//! answers, load shedding, the concurrency limit, the timeout; hyper-util's
//! `TowerToHyperService` hands it to hyper. The limit and the timeout hold until the
//! answer's head is ready: `GET /events` has its head at once, so its stream runs on past
//! the timeout and does not count toward the limit. [`AdminLimits`] sets both.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION,
    X_CONTENT_TYPE_OPTIONS,
};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full, LengthLimitError, Limited, StreamBody};
use hyper::body::Frame;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, oneshot, watch};
use tokio::task::JoinHandle;
use tower::load_shed::error::Overloaded;
use tower::timeout::error::Elapsed;
use tower::{BoxError, Service, ServiceBuilder};

use crate::human;
use crate::lb::config::{Config, RaceWindow};
use crate::lb::events::Event;
use crate::lb::profile::{LbDefaults, TimeoutKind};
use crate::lb::targets::{HealthOverride, TargetState};
use crate::net::resolve_upstream;
use crate::sim::{Control, Deregistered, NoSuchTarget};
use crate::ui::{Asset, PAGE_PATH};

/// Largest request body the control API reads; a larger one gets 413.
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// Content type of `GET /metrics` (Prometheus text exposition format 0.0.4).
pub(crate) const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Requests the control API handles at once; one more gets 503 at once. Its handlers answer
/// in microseconds, so only stalled bodies or slow name lookups fill it: a harness (or a
/// runaway loop in one) cannot pile up unbounded admin work.
pub(crate) const MAX_CONCURRENT: usize = 64;

/// Longest a request may take until its answer's head is ready; then 503. The slowest
/// legitimate one is `POST /targets` resolving a name (the system resolver gives up after
/// about 5 s); a request body that stops arriving is cut here instead of holding its slot.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause after a failed accept (out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Every endpoint, for the 404 message.
const ENDPOINTS: &str = "GET|POST /targets, GET|DELETE /targets/{id}, PUT /targets/{id}/health, \
                         GET /stats, POST /stats/reset, GET /metrics, GET /config, GET /events, \
                         GET /ui (the live view)";

/// Every target state, in the order `/metrics` lists them.
const ALL_STATES: [TargetState; 6] = [
    TargetState::Initial,
    TargetState::Healthy,
    TargetState::Unhealthy,
    TargetState::Draining,
    TargetState::Unused,
    TargetState::Unavailable,
];

type AdminResponse = Response<AdminBody>;

/// A whole body, or the endless one of `GET /events`.
type AdminBody = Either<Full<Bytes>, StreamBody<EventLines>>;

/// A whole body of `bytes`.
fn full(bytes: impl Into<Bytes>) -> AdminBody {
    Either::Left(Full::new(bytes.into()))
}

/// Content type of `GET /events`: one JSON object per line.
pub(crate) const EVENTS_CONTENT_TYPE: &str = "application/x-ndjson";

/// Most event lines sent in one chunk: those already waiting when the stream is polled
/// go out together, so a burst costs a few writes, not one per event.
const EVENT_LINES_PER_CHUNK: usize = 64;

/// An error answer: its status, the message for the JSON body, and `Allow` for a 405.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
    allow: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            allow: None,
        }
    }

    fn into_response(self) -> AdminResponse {
        let mut resp = json_response(self.status, &json!({ "error": self.message }));
        if let Some(v) = self.allow.and_then(|a| HeaderValue::from_str(&a).ok()) {
            resp.headers_mut().insert(ALLOW, v);
        }
        resp
    }
}

/// Shared by every admin connection.
struct Admin {
    /// The simulator's one control surface; the API adds HTTP and JSON, no rules of its own.
    /// A watch, because `lbsim demo --ui` moves the API from one scenario's simulator to
    /// the next; otherwise it never changes.
    controls: watch::Receiver<Control>,
    /// `GET /events` streams open now (the demo waits for the live view's).
    streams: Arc<AtomicUsize>,
    /// Turns true when the control API shuts down: `GET /events` streams end then.
    closing: watch::Receiver<bool>,
}

/// Bounds on the control API's own work; [`Default`] is what `lbsim --admin` uses (64
/// requests at once, 10 s each).
#[derive(Clone, Copy, Debug)]
pub struct AdminLimits {
    /// Requests handled at once (at least 1); one more is answered 503 at once, not queued.
    /// An open `GET /events` stream does not count: only the time until its head does.
    pub max_concurrent: usize,
    /// Longest a request may take until its answer's head is ready; then 503. A `GET
    /// /events` stream has its head at once and runs on past it.
    pub request_timeout: Duration,
}

impl Default for AdminLimits {
    fn default() -> Self {
        AdminLimits {
            max_concurrent: MAX_CONCURRENT,
            request_timeout: REQUEST_TIMEOUT,
        }
    }
}

/// The control API, serving on its own listener until shut down.
pub struct AdminServer {
    /// Where it listens (the port is known even when port 0 was asked for).
    addr: SocketAddr,
    /// Dropping it (or sending) stops the accept loop.
    stop: Option<oneshot::Sender<()>>,
    /// The serving task; aborted if the server is dropped without `shutdown`.
    task: Option<JoinHandle<io::Result<()>>>,
    /// `GET /events` streams open now.
    streams: Arc<AtomicUsize>,
}

impl AdminServer {
    /// Binds `addr` and serves the control API for `control` on it, with the default
    /// [`AdminLimits`].
    pub fn start(addr: SocketAddr, control: Control) -> io::Result<AdminServer> {
        AdminServer::start_with(addr, control, AdminLimits::default())
    }

    /// [`AdminServer::start`] with other bounds on the concurrency and the time a request
    /// takes (a test of the 503s sets short ones).
    pub fn start_with(
        addr: SocketAddr,
        control: Control,
        limits: AdminLimits,
    ) -> io::Result<AdminServer> {
        AdminServer::start_on(crate::net::bind(addr)?, control, limits)
    }

    /// Serves on `listener`, already bound (the CLI binds it before the simulator starts,
    /// so that a taken port is reported before anything serves).
    pub fn start_on(
        listener: TcpListener,
        control: Control,
        limits: AdminLimits,
    ) -> io::Result<AdminServer> {
        // Nobody changes it: the sender may go at once.
        AdminServer::start_following(listener, watch::channel(control).1, limits)
    }

    /// Serves on `listener` for whichever simulator `controls` holds now: `lbsim demo
    /// --ui` sends each scenario's in turn. An open `GET /events` stream moves to the new
    /// simulator with a line `{"event":"simulator_changed"}` (its clock, connection numbers
    /// and targets start afresh).
    pub(crate) fn start_following(
        listener: TcpListener,
        controls: watch::Receiver<Control>,
        limits: AdminLimits,
    ) -> io::Result<AdminServer> {
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let streams = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(serve(listener, controls, streams.clone(), limits, async {
            let _ = stopped.await;
        }));
        Ok(AdminServer {
            addr,
            stop: Some(stop),
            task: Some(task),
            streams,
        })
    }

    /// `GET /events` streams open now (the live view holds one while it is open).
    pub(crate) fn event_streams(&self) -> usize {
        self.streams.load(Ordering::Relaxed)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and lets running requests finish (bounded by the shutdown grace).
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Serves the control API on `listener` until `shutdown` resolves, then lets running
/// requests finish for at most the configured grace period.
async fn serve(
    listener: TcpListener,
    controls: watch::Receiver<Control>,
    streams: Arc<AtomicUsize>,
    limits: AdminLimits,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let grace = controls.borrow().config().shutdown_grace;
    let (closing, closing_rx) = watch::channel(false);
    let router = Router {
        admin: Arc::new(Admin {
            controls,
            streams,
            closing: closing_rx,
        }),
    };
    // Built once: its clones (one per request) share the concurrency limit's permits.
    let service = TowerToHyperService::new(
        ServiceBuilder::new()
            .map_result(answer_refusals(limits))
            .load_shed()
            .concurrency_limit(limits.max_concurrent.max(1))
            .timeout(limits.request_timeout)
            .service(router),
    );
    let graceful = GracefulShutdown::new();
    let http = hyper::server::conn::http1::Builder::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!("control API: accept failed: {e}");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let service = service.clone();
                let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(%peer, "control API connection ended: {e}");
                    }
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    // Event streams end (their last chunk goes out), so their connections can close.
    let _ = closing.send(true);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(grace) => {
            tracing::warn!("control API requests still running after {grace:?}; stopping anyway")
        }
    }
    Ok(())
}

/// The control API as a tower service: each request to its endpoint's handler. It never
/// fails (every error is an answer); the layers around it add the 503s.
#[derive(Clone)]
struct Router {
    admin: Arc<Admin>,
}

impl Service<Request<Incoming>> for Router {
    type Response = AdminResponse;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<AdminResponse, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let admin = self.admin.clone();
        Box::pin(async move { Ok(admin.handle(req).await) })
    }
}

/// The outermost layer's function: a request the layers refused or gave up on gets its
/// 503. The error type stays `BoxError` only because `map_result` must be able to pass on
/// a failed `poll_ready` (none of these layers fails one).
fn answer_refusals(
    limits: AdminLimits,
) -> impl Fn(Result<AdminResponse, BoxError>) -> Result<AdminResponse, BoxError> + Clone {
    move |result| Ok(result.unwrap_or_else(|e| unavailable(&e, limits)))
}

/// The 503 for a request the layers refused or gave up on: over the concurrency limit, or
/// over the timeout.
fn unavailable(e: &BoxError, limits: AdminLimits) -> AdminResponse {
    let message = if e.is::<Overloaded>() {
        format!(
            "the control API is busy: at its limit of {} requests at once; retry shortly",
            limits.max_concurrent.max(1)
        )
    } else if e.is::<Elapsed>() {
        format!(
            "no answer within {}: the request body stopped arriving, or the address took \
             that long to resolve",
            human::duration(limits.request_timeout)
        )
    } else {
        // The router never fails and these two layers fail only as above.
        format!("the control API could not answer: {e}")
    };
    tracing::warn!("control API: 503, {message}");
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message).into_response()
}

/// The endpoints, by path; the id segment is kept as text until the handler parses it.
#[derive(Debug)]
enum Route<'a> {
    Targets,
    Target(&'a str),
    TargetHealth(&'a str),
    Stats,
    StatsReset,
    Metrics,
    Config,
    Events,
    /// `/`: a redirect to the live view (a browser pointed at the control API lands there).
    Root,
    /// A file of the live view.
    Ui(&'static Asset),
}

impl<'a> Route<'a> {
    fn of(path: &'a str) -> Option<Route<'a>> {
        if path == "/" {
            return Some(Route::Root);
        }
        if let Some(asset) = crate::ui::asset(path) {
            return Some(Route::Ui(asset));
        }
        let rest = path.strip_prefix('/')?;
        let segments: Vec<&str> = rest.split('/').collect();
        if segments.iter().any(|s| s.is_empty()) {
            return None;
        }
        Some(match segments.as_slice() {
            ["targets"] => Route::Targets,
            ["targets", id] => Route::Target(id),
            ["targets", id, "health"] => Route::TargetHealth(id),
            ["stats"] => Route::Stats,
            ["stats", "reset"] => Route::StatsReset,
            ["metrics"] => Route::Metrics,
            ["config"] => Route::Config,
            ["events"] => Route::Events,
            _ => return None,
        })
    }

    fn allowed(&self) -> &'static [Method] {
        match self {
            Route::Targets => &[Method::GET, Method::POST],
            Route::Target(_) => &[Method::GET, Method::DELETE],
            Route::TargetHealth(_) => &[Method::PUT],
            Route::Stats
            | Route::Metrics
            | Route::Config
            | Route::Events
            | Route::Root
            | Route::Ui(_) => &[Method::GET],
            Route::StatsReset => &[Method::POST],
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBody {
    address: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthBody {
    #[serde(rename = "override")]
    over: HealthOverride,
}

impl Admin {
    async fn handle(&self, req: Request<Incoming>) -> AdminResponse {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let resp = match self.route(req).await {
            Ok(resp) => resp,
            Err(e) => e.into_response(),
        };
        tracing::debug!("control API: {method} {path} -> {}", resp.status().as_u16());
        resp
    }

    async fn route(&self, req: Request<Incoming>) -> Result<AdminResponse, ApiError> {
        let path = req.uri().path().to_string();
        let method = req.method().clone();
        let Some(route) = Route::of(&path) else {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no endpoint {method} {path}; the control API has {ENDPOINTS}"),
            ));
        };
        let allowed = route.allowed();
        if !allowed.contains(&method) {
            return Err(method_not_allowed(&method, &path, allowed));
        }
        // Cloned out of the watch: no lock is held while a handler awaits.
        let current = self.controls.borrow().clone();
        let control = &current;
        match (route, method) {
            (Route::Targets, Method::GET) => Ok(json_response(StatusCode::OK, &control.targets())),
            (Route::Targets, _) => {
                let body: RegisterBody = read_json(req, r#"{"address": "127.0.0.1:8001"}"#).await?;
                let addr = resolve_upstream(&body.address)
                    .await
                    .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
                match control.register(addr) {
                    Ok(t) => Ok(json_response(StatusCode::CREATED, &t)),
                    Err(e) => Err(ApiError::new(StatusCode::CONFLICT, e.to_string())),
                }
            }
            (Route::Target(id), Method::GET) => {
                let target = control.target(parse_id(id)?).map_err(not_found)?;
                Ok(json_response(StatusCode::OK, &target))
            }
            // A repeated DELETE gets 200, not a second 202: nothing new was accepted.
            // AWS's DeregisterTargets on a target already draining succeeds and changes
            // nothing (the delay is not restarted), so this is no 409 either: a harness
            // that retries a DELETE is not told it failed. The body shows the target
            // still draining and `drain_remaining_ms`, when it leaves the group.
            (Route::Target(id), _) => match control.deregister(parse_id(id)?).map_err(not_found)? {
                Deregistered::Started(t) => Ok(json_response(StatusCode::ACCEPTED, &t)),
                Deregistered::Already(t) => Ok(json_response(StatusCode::OK, &t)),
            },
            (Route::TargetHealth(id), _) => {
                let id = parse_id(id)?;
                control.target(id).map_err(not_found)?;
                let body: HealthBody = read_json(req, r#"{"override": "unhealthy"}"#).await?;
                let target = control.set_health(id, body.over).map_err(not_found)?;
                Ok(json_response(StatusCode::OK, &target))
            }
            (Route::Stats, _) => Ok(json_response(StatusCode::OK, &stats_json(control))),
            (Route::StatsReset, _) => {
                control.reset_stats();
                tracing::info!("control API: counters reset");
                Ok(empty(StatusCode::NO_CONTENT))
            }
            (Route::Metrics, _) => {
                let mut resp = Response::new(full(metrics_text(control)));
                resp.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static(METRICS_CONTENT_TYPE));
                Ok(resp)
            }
            (Route::Config, _) => Ok(json_response(
                StatusCode::OK,
                &config_json(control.config()),
            )),
            (Route::Events, _) => Ok(self.events()),
            // A browser (it accepts HTML) is sent to the live view; a harness or curl
            // gets the usual JSON 404 listing the endpoints, as before the page existed.
            (Route::Root, _) if !accepts_html(&req) => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!(
                    "no endpoint {} /; the control API has {ENDPOINTS}",
                    Method::GET
                ),
            )),
            (Route::Root, _) => {
                let mut resp = Response::new(full(format!(
                    "The live view is at {PAGE_PATH}; the control API has {ENDPOINTS}\n"
                )));
                *resp.status_mut() = StatusCode::FOUND;
                let headers = resp.headers_mut();
                headers.insert(LOCATION, HeaderValue::from_static(PAGE_PATH));
                headers.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                Ok(resp)
            }
            (Route::Ui(asset), _) => Ok(ui_response(asset)),
        }
    }

    /// `GET /events`: subscribed now (before the head goes out, so a client that has
    /// read the head misses nothing after it), streamed until the client goes or the
    /// control API shuts down.
    fn events(&self) -> AdminResponse {
        let mut controls = self.controls.clone();
        // Seen: only a later change moves the stream.
        let events = controls.borrow_and_update().subscribe();
        let lines = EventLines::new(EventSource {
            events,
            controls,
            follows: true,
            closing: self.closing.clone(),
            _open: OpenStream::count(&self.streams),
        });
        let mut resp = Response::new(Either::Right(StreamBody::new(lines)));
        let headers = resp.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(EVENTS_CONTENT_TYPE));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        resp
    }
}

/// True when the request's `Accept` names HTML: a browser's navigation.
fn accepts_html<B>(req: &Request<B>) -> bool {
    req.headers()
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"))
}

/// A file of the live view, with the headers that keep it to the control API's origin.
fn ui_response(asset: &Asset) -> AdminResponse {
    let mut resp = Response::new(full(asset.body));
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(crate::ui::CONTENT_SECURITY_POLICY),
    );
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // A new lbsim binary may serve another page: never keep a stale one.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// Where `GET /events` reads from.
struct EventSource {
    /// The current simulator's events.
    events: broadcast::Receiver<Event>,
    /// Which simulator that is; a change moves the stream to the new one.
    controls: watch::Receiver<Control>,
    /// False once nobody can change `controls` any more (its sender is gone).
    follows: bool,
    closing: watch::Receiver<bool>,
    /// Counts the stream as open while it lives.
    _open: OpenStream,
}

/// One open `GET /events` stream, counted while it lives.
struct OpenStream(Arc<AtomicUsize>);

impl OpenStream {
    fn count(open: &Arc<AtomicUsize>) -> OpenStream {
        open.fetch_add(1, Ordering::Relaxed);
        OpenStream(open.clone())
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The waiting for the next chunk of lines, or `None` once the stream is over.
type NextLines = Pin<Box<dyn Future<Output = Option<(Bytes, EventSource)>> + Send>>;

/// The body of `GET /events`: newline-delimited JSON, a chunk per batch of events that
/// are ready, ending when the control API shuts down. A client that disconnects drops
/// it (hyper notices when the next chunk cannot be written), and its subscription with it.
struct EventLines {
    next: Option<NextLines>,
}

impl EventLines {
    fn new(source: EventSource) -> Self {
        EventLines {
            next: Some(Box::pin(next_lines(source))),
        }
    }
}

impl futures_core::Stream for EventLines {
    type Item = Result<Frame<Bytes>, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(next) = self.next.as_mut() else {
            return Poll::Ready(None);
        };
        match next.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some((chunk, source))) => {
                self.next = Some(Box::pin(next_lines(source)));
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Poll::Ready(None) => {
                self.next = None;
                Poll::Ready(None)
            }
        }
    }
}

/// Waits for the next event, then takes those already waiting behind it (up to
/// [`EVENT_LINES_PER_CHUNK`]): one line each. `None` when the control API shuts down
/// (or the simulator's event stream is gone).
async fn next_lines(mut source: EventSource) -> Option<(Bytes, EventSource)> {
    /// What woke the stream.
    enum Woken {
        Closing,
        Changed(bool),
        Received(Result<Event, RecvError>),
    }
    let first = loop {
        let woken = tokio::select! {
            biased;
            // A closed channel (the server task gone) ends the stream as a shutdown does.
            _ = source.closing.wait_for(|closing| *closing) => Woken::Closing,
            changed = source.controls.changed(), if source.follows => Woken::Changed(changed.is_ok()),
            received = source.events.recv() => Woken::Received(received),
        };
        match woken {
            Woken::Closing => return None,
            Woken::Changed(false) => source.follows = false,
            Woken::Changed(true) => {
                source.events = source.controls.borrow_and_update().subscribe();
                let mut chunk = Vec::with_capacity(64);
                push_line(&mut chunk, &json!({ "event": "simulator_changed" }));
                return Some((Bytes::from(chunk), source));
            }
            Woken::Received(received) => break received,
        }
    };
    let mut chunk = Vec::with_capacity(256);
    match first {
        Ok(event) => push_line(&mut chunk, &event),
        Err(RecvError::Lagged(missed)) => push_line(&mut chunk, &lagged(missed)),
        Err(RecvError::Closed) => return None,
    }
    for _ in 1..EVENT_LINES_PER_CHUNK {
        match source.events.try_recv() {
            Ok(event) => push_line(&mut chunk, &event),
            Err(TryRecvError::Lagged(missed)) => push_line(&mut chunk, &lagged(missed)),
            Err(TryRecvError::Empty | TryRecvError::Closed) => break,
        }
    }
    Some((Bytes::from(chunk), source))
}

/// The line a subscriber gets in place of the events it was too slow for.
fn lagged(missed: u64) -> Value {
    json!({ "event": "lagged", "missed": missed })
}

fn push_line(chunk: &mut Vec<u8>, value: &impl serde::Serialize) {
    // Events are plain data: serializing them does not fail (a line is skipped if it did).
    if serde_json::to_writer(&mut *chunk, value).is_ok() {
        chunk.push(b'\n');
    }
}

/// The id path segment, or 404 (an id that is not a number names no target).
fn parse_id(id: &str) -> Result<u64, ApiError> {
    id.parse::<u64>().map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no target with id {id:?}; GET /targets lists them"),
        )
    })
}

/// The 404 for a target id: gone (its deregistration ended) or never issued.
fn not_found(e: NoSuchTarget) -> ApiError {
    let message = match e {
        NoSuchTarget::Gone(_) => format!("{e}; GET /targets lists the current ones"),
        NoSuchTarget::Unknown(n) => format!("no target with id \"{n}\"; GET /targets lists them"),
    };
    ApiError::new(StatusCode::NOT_FOUND, message)
}

/// Reads a JSON body of at most [`MAX_BODY`] bytes; `example` goes into the 400 message.
async fn read_json<T: DeserializeOwned>(
    req: Request<Incoming>,
    example: &str,
) -> Result<T, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body over {MAX_BODY} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_large());
    }
    let bytes = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => return Err(too_large()),
        Err(e) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("could not read the request body: {e}"),
            ))
        }
    };
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("invalid JSON body ({e}); expected {example}"),
        )
    })
}

fn json_response(status: StatusCode, value: &impl serde::Serialize) -> AdminResponse {
    match serde_json::to_vec(value) {
        Ok(mut body) => {
            body.push(b'\n');
            let mut resp = Response::new(full(body));
            *resp.status_mut() = status;
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp
        }
        // Serializing plain data does not fail; answer rather than panic if it ever does.
        Err(e) => {
            let mut resp = Response::new(full(format!(
                "{{\"error\":\"cannot serialize the answer: {}\"}}\n",
                e.to_string().replace(['"', '\\'], "'")
            )));
            *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp
        }
    }
}

fn method_not_allowed(method: &Method, path: &str, allowed: &[Method]) -> ApiError {
    let allow = allowed
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    ApiError {
        allow: Some(allow.clone()),
        ..ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{path} does not take {method}; it takes {allow}"),
        )
    }
}

fn empty(status: StatusCode) -> AdminResponse {
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = status;
    resp
}

/// Escapes a Prometheus label value (backslash, double quote, newline).
fn label(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', r#"\""#)
        .replace('\n', r"\n")
}

/// `GET /stats`: the counters, the LB's own answers by the cloud's word and by cause.
fn stats_json(control: &Control) -> Value {
    let counts = control.stats();
    json!({
        "by_status": counts.by_status,
        "by_reason": counts.by_word(control.config().profile),
        "by_cause": counts.by_cause,
        "lb_by_status": counts.lb_by_status,
        "retries": counts.retries,
        "spliced_bytes": counts.spliced_bytes,
    })
}

/// The counters and target gauges in the Prometheus text exposition format (0.0.4).
///
/// `lbsim_target_in_flight` has one line per address: targets registered again at the
/// address of a drained one are summed, so that no two lines share a label set.
fn metrics_text(control: &Control) -> String {
    let counts = control.stats();
    let targets = control.targets();
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, lines: Vec<(String, u64)>| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in lines {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    };
    family(
        "lbsim_requests_total",
        "counter",
        "Responses sent to clients, by status code (the app's and the load balancer's).",
        counts
            .by_status
            .iter()
            .map(|(status, n)| (format!("status=\"{status}\""), *n))
            .collect(),
    );
    family(
        "lbsim_lb_errors_total",
        "counter",
        "Responses the load balancer generated or cut, by the cloud's word for the cause (reason) and lbsim's cloud-neutral cause (cause).",
        counts
            .by_cause
            .iter()
            .map(|(cause, n)| {
                let word = control.config().profile.outcome(*cause).code;
                let labels = format!("reason=\"{}\",cause=\"{}\"", label(word), cause.name());
                (labels, *n)
            })
            .collect(),
    );
    family(
        "lbsim_targets",
        "gauge",
        "Targets by state.",
        ALL_STATES
            .iter()
            .map(|s| {
                let n = targets.iter().filter(|t| t.state == *s).count() as u64;
                (format!("state=\"{}\"", s.as_str()), n)
            })
            .collect(),
    );
    let mut in_flight: Vec<(String, u64)> = Vec::new();
    for t in &targets {
        let n = t.in_flight as u64;
        match in_flight.iter_mut().find(|(a, _)| *a == t.address) {
            Some((_, total)) => *total += n,
            None => in_flight.push((t.address.clone(), n)),
        }
    }
    family(
        "lbsim_target_in_flight",
        "gauge",
        "Requests in flight, by target address.",
        in_flight
            .into_iter()
            .map(|(address, n)| (format!("address=\"{}\"", label(&address)), n))
            .collect(),
    );
    out
}

/// A duration in milliseconds: an integer when whole, else a fraction (to the microsecond).
fn ms(d: Duration) -> Value {
    let micros = d.as_micros();
    if micros.is_multiple_of(1000) {
        json!((micros / 1000) as u64)
    } else {
        json!(micros as f64 / 1000.0)
    }
}

/// The effective settings (timers already scaled) as a JSON object; `print_config` holds
/// the same rows as `lbsim --print-config`.
pub(crate) fn config_json(c: &Config) -> Value {
    let p = c.profile;
    let t = &c.timers;
    let h = &c.health;
    let rows: Vec<Value> = c
        .rows()
        .into_iter()
        .map(|(setting, value)| json!({ "setting": setting, "value": value }))
        .collect();
    json!({
        "cloud": p.cloud,
        "load_balancer": p.display_name,
        "defaults": match c.defaults {
            LbDefaults::Anyscale => "anyscale",
            LbDefaults::Native => "native",
        },
        "time_scale": c.time_scale,
        "timeout": {
            "setting": p.timeout_setting,
            "flag": p.timeout_flag,
            "kind": match p.timeout_kind {
                TimeoutKind::Idle => "idle",
                TimeoutKind::EndToEnd => "end_to_end",
            },
            "ms": ms(t.timeout),
        },
        "connect_timeout_ms": ms(t.connect_timeout),
        "backend_keep_alive_ms": ms(t.backend_keep_alive),
        "client_idle_timeout_ms": ms(t.client_idle),
        "client_keep_alive_ms": t.client_max_age.map(ms),
        "health_checks": {
            "enabled": h.enabled,
            "path": h.path,
            "interval_ms": ms(h.interval),
            "timeout_ms": ms(h.timeout),
            "healthy_threshold": h.thresholds.healthy,
            "unhealthy_threshold": h.thresholds.unhealthy,
            "initial_passes": h.thresholds.initial,
            "user_agent": h.user_agent,
        },
        "no_healthy_target": if p.fails_open {
            "fail_open".to_string()
        } else {
            p.outcome(crate::lb::reason::Reason::NoHealthyTargets).status.to_string()
        },
        "retry": c.retry.map(|r| json!({
            "methods": r.methods,
            "on": r.on.iter().map(|reason| p.outcome(*reason).code).collect::<Vec<_>>(),
            "attempts": r.attempts,
        })),
        "warmup_ms": ms(t.warmup),
        "deregistration_delay_ms": ms(t.deregistration_delay),
        "race_window": c.race_window.to_string(),
        "race_window_ms": match c.race_window {
            RaceWindow::Window(w) => ms(w),
            RaceWindow::Always => Value::Null,
        },
        "shutdown_grace_ms": ms(c.shutdown_grace),
        "print_config": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::events::EventKind;

    fn opened(id: u64) -> Event {
        Event {
            at_us: id * 10,
            kind: EventKind::ConnectionOpened {
                id,
                target: SocketAddr::from(([127, 0, 0, 1], 8001)),
            },
        }
    }

    /// A simulator with no target and no health checks, on a free port.
    async fn idle_simulator() -> crate::sim::SimHandle {
        crate::sim::Simulator::builder(crate::lb::profile::Cloud::Aws)
            .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
            .no_health_checks()
            .start()
            .await
            .expect("a simulator starts")
    }

    #[tokio::test]
    async fn an_event_stream_sends_waiting_events_together_and_says_what_it_missed() {
        let sim = idle_simulator().await;
        let (tx, rx) = broadcast::channel(2);
        let (closing, closing_rx) = watch::channel(false);
        let open = Arc::new(AtomicUsize::new(0));
        let source = EventSource {
            events: rx,
            controls: watch::channel(sim.control()).1,
            follows: true,
            closing: closing_rx,
            _open: OpenStream::count(&open),
        };
        assert_eq!(open.load(Ordering::Relaxed), 1);
        for id in 1..=5 {
            tx.send(opened(id)).unwrap();
        }
        let (chunk, source) = next_lines(source).await.expect("a chunk");
        assert_eq!(
            std::str::from_utf8(&chunk).unwrap(),
            "{\"event\":\"lagged\",\"missed\":3}\n\
             {\"at_us\":40,\"event\":\"connection_opened\",\"id\":4,\"target\":\"127.0.0.1:8001\"}\n\
             {\"at_us\":50,\"event\":\"connection_opened\",\"id\":5,\"target\":\"127.0.0.1:8001\"}\n"
        );
        // Waiting for the next event, the stream ends when the control API shuts down.
        let next = tokio::spawn(next_lines(source));
        closing.send(true).unwrap();
        assert!(next.await.unwrap().is_none());
        assert_eq!(
            open.load(Ordering::Relaxed),
            0,
            "an ended stream is no longer counted"
        );
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn an_event_stream_moves_to_the_next_simulator_and_says_so() {
        let (first, second) = (idle_simulator().await, idle_simulator().await);
        let (show, controls) = watch::channel(first.control());
        let (_closing, closing_rx) = watch::channel(false);
        let open = Arc::new(AtomicUsize::new(0));
        let mut following = controls.clone();
        let events = following.borrow_and_update().subscribe();
        let source = EventSource {
            events,
            controls: following,
            follows: true,
            closing: closing_rx,
            _open: OpenStream::count(&open),
        };
        show.send_replace(second.control());
        let (chunk, source) = next_lines(source).await.expect("a chunk");
        assert_eq!(&chunk[..], b"{\"event\":\"simulator_changed\"}\n");
        // From now on the second simulator's events, not the first's.
        let app = SocketAddr::from(([127, 0, 0, 1], 8001));
        first.register(app).expect("registered on the first");
        second.register(app).expect("registered on the second");
        let (chunk, source) = next_lines(source).await.expect("a chunk");
        let line = std::str::from_utf8(&chunk).unwrap();
        assert!(
            line.contains("\"event\":\"target_registered\"") && line.lines().count() == 1,
            "{line}"
        );
        assert_eq!(second.targets().len(), 1);
        // Nobody can change the simulator any more: the stream simply goes on.
        drop(show);
        second.deregister(1).expect("deregistered");
        let (chunk, _source) = next_lines(source).await.expect("a chunk");
        assert!(std::str::from_utf8(&chunk)
            .unwrap()
            .contains("target_state_changed"));
        first.shutdown().await;
        second.shutdown().await;
    }

    #[tokio::test]
    async fn the_live_view_is_served_typed_and_kept_to_its_origin() {
        let route = Route::of("/ui").expect("a route");
        assert!(matches!(route, Route::Ui(_)));
        assert_eq!(route.allowed(), &[Method::GET]);
        let Route::Ui(asset) = route else {
            unreachable!()
        };
        let resp = ui_response(asset);
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(resp.headers()[X_CONTENT_TYPE_OPTIONS], "nosniff");
        let csp = resp.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(
            csp.starts_with("default-src 'none'; script-src 'self';"),
            "{csp}"
        );
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(body.starts_with(b"<!doctype html>"));
        for (path, kind) in [
            ("/ui/live.js", "text/javascript"),
            ("/ui/live.css", "text/css"),
        ] {
            let Some(Route::Ui(asset)) = Route::of(path) else {
                panic!("{path} is a file of the live view")
            };
            let resp = ui_response(asset);
            let content_type = resp.headers()[CONTENT_TYPE].to_str().unwrap();
            assert!(content_type.starts_with(kind), "{path}: {content_type}");
        }
        assert!(matches!(Route::of("/"), Some(Route::Root)));
        assert!(Route::of("/ui/nothing.js").is_none());
        assert!(ENDPOINTS.contains("GET /ui"));
    }

    #[test]
    fn events_is_a_get_route() {
        let route = Route::of("/events").expect("a route");
        assert!(matches!(route, Route::Events));
        assert_eq!(route.allowed(), &[Method::GET]);
        assert!(ENDPOINTS.contains("GET /events"));
    }
}
