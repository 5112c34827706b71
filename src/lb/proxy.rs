//! The engine: one HTTP/1.1 proxy that reads its behaviour from a [`Profile`].
//!
//! The path of a request: pick a target, check out a pooled connection, send, and race
//! all of it against the [`Deadline`]. Whatever fails becomes a [`Reason`], and one
//! place ([`Engine::lb_error`]) turns that into the cloud's page, a counter and a log
//! line that says what to change.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{Request, Response, Version};
use http_body_util::{Either, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::lb::h1::server::{Session, Stop};
use crate::lb::h1::target::SendError;
use crate::lb::h1::wire::NameCase;
use crate::lb::h1::PendingUpgrade;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::lb::accesslog::{AccessLog, Tries, Try, FINAL_FLUSH_LIMIT};
use crate::lb::advice::{explain, Detail};
use crate::lb::client::{ClientHooks, ClientIo, ClientStream, ConnState, InFlight};
use crate::lb::config::Config;
use crate::lb::deadline::{BodyEnd, Deadline, DeadlineBody, OnEnd, Touching};
use crate::lb::drain::Connections;
use crate::lb::events::{micros, EventKind, Events};
use crate::lb::forward::{self, Peer};
use crate::lb::health;
use crate::lb::http2;
use crate::lb::logline::{head_size, Ending, Facts};
use crate::lb::pool::{
    Checkout, ClientBody, Conn, ConnectError, Pool, Sender, TargetBody, UpstreamBody,
};
use crate::lb::profile::{HeaderCase, Profile, Upgrades, MAX_FREE_RETRIES};
use crate::lb::reason::Reason;
use crate::lb::respond::{self, ProxyBody};
use crate::lb::stats::Stats;
use crate::lb::targets::{RoutingRules, Target, TargetGroup};
use crate::lb::validate::Rejection;
use crate::lb::websocket::Active;

/// Pause after a failed accept (out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Shared state of one running simulator.
pub(crate) struct Engine {
    /// Effective, scaled settings.
    pub config: Config,
    /// Where requests go.
    pub targets: TargetGroup,
    /// Keep-alive connections to targets, with the LB's view of their liveness.
    pub pool: Pool,
    /// Counters for tests and the control API.
    pub stats: Stats,
    /// Turns true when the simulator stops, ending background tasks (health checks).
    stop: watch::Sender<bool>,
    /// The cloud-format access log, when asked for.
    access_log: Option<AccessLog>,
    /// `--explain`: a plain sentence on stderr per LB-generated error.
    explain: bool,
    /// Tears down exchanges the LB gave up on, after the answers of the moment are out.
    reaper: Reaper,
    /// What happens to requests, pooled connections and targets, for whoever listens.
    pub events: Events,
    /// The next client connection's number (from 1), for the events.
    next_conn: AtomicU64,
}

/// Drops abandoned exchanges (closing their target connections) in a task of its own
/// that yields between each, so a burst of timeouts writes all its 504s before it pays
/// for the closes: when 1,000 timers fired at once, closing the target connections (a
/// FIN and a wake-up of the app each) took about half of lbsim's CPU in the burst.
struct Reaper(tokio::sync::mpsc::UnboundedSender<Box<dyn std::any::Any + Send>>);

impl Reaper {
    /// Starts the reaping task; it ends with the engine.
    fn spawn() -> Reaper {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Box<dyn std::any::Any + Send>>();
        tokio::spawn(async move {
            while let Some(abandoned) = rx.recv().await {
                drop(abandoned);
                // Back of the queue: tasks woken meanwhile (other answers) go first.
                tokio::task::yield_now().await;
            }
        });
        Reaper(tx)
    }

    /// Tears `abandoned` down soon, but after what is ready to run now.
    fn discard(&self, abandoned: impl Send + 'static) {
        // With the task gone (runtime shutting down) the returned value drops here.
        let _ = self.0.send(Box::new(abandoned));
    }
}

/// Why a request got an LB answer instead of the app's.
struct Failure {
    reason: Reason,
    detail: Detail,
}

impl Engine {
    /// An engine for `config` with `targets` registered; starts their health checks, so
    /// it must be called inside a tokio runtime. It announces what it does on `events`.
    pub(crate) fn new(
        config: Config,
        targets: Vec<SocketAddr>,
        access_log: Option<AccessLog>,
        explain: bool,
        events: Events,
    ) -> Arc<Engine> {
        let pool = Pool::new(
            config.timers.backend_keep_alive,
            config.timers.connect_timeout,
            config.race_window,
            config.profile.forwarding.header_case,
            config.target_protocol.is_http2(),
            events.clone(),
        );
        let rules = RoutingRules {
            fails_open: config.profile.fails_open,
            health_checks: config.health.enabled,
            warmup: config.timers.warmup,
            deregistration_delay: config.timers.deregistration_delay,
        };
        let engine = Arc::new(Engine {
            config,
            targets: TargetGroup::new(rules, events.clone()),
            pool,
            stats: Stats::default(),
            stop: watch::channel(false).0,
            access_log,
            explain,
            reaper: Reaper::spawn(),
            events,
            next_conn: AtomicU64::new(1),
        });
        for addr in targets {
            engine.register(addr);
        }
        let sweeper = Arc::downgrade(&engine);
        let mut stop = engine.stop.subscribe();
        let every = engine.pool.sweep_interval();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                match sweeper.upgrade() {
                    Some(engine) => engine.pool.sweep(),
                    None => return,
                }
            }
        });
        engine
    }

    /// Registers a target and starts checking its health.
    pub(crate) fn register(&self, addr: SocketAddr) -> Arc<Target> {
        let target = self.targets.register(addr);
        if self.config.health.enabled {
            health::spawn(
                target.clone(),
                self.config.health.clone(),
                self.stop.subscribe(),
            );
        }
        target
    }

    /// Waits until every access-log line queued so far is written, for at most
    /// [`FINAL_FLUSH_LIMIT`]: a destination that never reads must not keep lbsim alive
    /// (past the limit, a warning says how many lines were not written).
    pub(crate) async fn flush_logs(&self) {
        if let Some(log) = &self.access_log {
            let _ = log.flush_within(FINAL_FLUSH_LIMIT).await;
        }
    }

    /// Ends background tasks; called when serving stops.
    pub(crate) fn stop_background(&self) {
        let _ = self.stop.send(true);
    }

    fn profile(&self) -> &'static Profile {
        self.config.profile
    }

    /// The cloud's page for `reason`, counted and explained in one log line; `tries` are
    /// the request's tries at targets (the last one failed with `reason`), for the log.
    pub(crate) fn lb_error(
        &self,
        reason: Reason,
        detail: &Detail,
        facts: Option<&Facts>,
        tries: Tries,
    ) -> Response<ProxyBody> {
        let outcome = self.profile().outcome(reason);
        self.count_and_say(reason, detail);
        // Only a timed-out request was dispatched; the others never reached a target.
        let dispatched = matches!(
            reason,
            Reason::TargetTimeout | Reason::DeregistrationDelayElapsed
        );
        self.log_access(
            facts,
            Ending {
                target: detail.target.as_deref().and_then(|t| t.parse().ok()),
                dispatched: if dispatched {
                    tokio::time::Instant::now().checked_sub(detail.elapsed)
                } else {
                    None
                },
                lb_status: Some(outcome.status),
                reason: Some(outcome.code),
                log_word: Some(outcome.log_word),
                sent_bytes: outcome.page.body.len() as u64,
                body_bytes: outcome.page.body.len() as u64,
                tries,
                ..Ending::default()
            },
        );
        respond::page(outcome)
    }

    /// The log line (and `--explain` sentence) for an LB-generated error.
    /// One shape: a short log line always; the sentence that says why and what to change
    /// with `--explain` (and, per cause, in the summary when lbsim stops).
    fn say(&self, reason: Reason, detail: &Detail, what: &str) {
        let code = self.profile().outcome(reason).code;
        let target = detail.target.as_deref().unwrap_or("-");
        tracing::warn!(
            reason = code,
            target,
            "{what} after {:.3} s{}",
            detail.elapsed.as_secs_f64(),
            if self.explain {
                ""
            } else {
                " (--explain says why and what to change)"
            }
        );
        if self.explain {
            let why = explain(&self.config, reason, detail);
            eprintln!("lbsim explain: {what}: {why}");
        }
    }

    /// Counts and explains an LB outcome: a page sent as a response ([`Engine::lb_error`]),
    /// or one whose bytes (if any) were not: a 408 written on the socket, a
    /// 460 that is only logged.
    fn count_and_say(&self, reason: Reason, detail: &Detail) {
        self.announce_lb(reason, detail, false);
        let outcome = self.profile().outcome(reason);
        self.say(
            reason,
            detail,
            &format!("{} {}", outcome.status, outcome.code),
        );
        self.stats.record(Some(outcome.status), Some(reason));
    }

    /// Logs a response that was cut after its head went out (no status can be sent).
    fn report_cut(&self, reason: Reason, detail: &Detail) {
        self.announce_lb(reason, detail, true);
        let code = self.profile().outcome(reason).code;
        self.say(reason, detail, &format!("response cut ({code})"));
        self.stats.record(None, Some(reason));
    }

    /// The event for an LB outcome: an answer of the LB's own, or (`cut`) a response
    /// cut after its head went out.
    fn announce_lb(&self, cause: Reason, detail: &Detail, cut: bool) {
        self.events.emit(|| {
            let outcome = self.profile().outcome(cause);
            let conn = detail.conn;
            let target = detail.target.as_deref().and_then(|t| t.parse().ok());
            // Only errors pay for the sentence, and only while someone listens.
            let explanation = explain(&self.config, cause, detail);
            if cut {
                EventKind::ResponseCut {
                    conn,
                    cause,
                    code: outcome.code,
                    target,
                    explanation,
                }
            } else {
                EventKind::LbAnswered {
                    conn,
                    status: outcome.status,
                    cause,
                    code: outcome.code,
                    target,
                    explanation,
                }
            }
        });
    }

    fn log_access(&self, facts: Option<&Facts>, ending: Ending) {
        if let (Some(log), Some(facts)) = (&self.access_log, facts) {
            log.log(facts.record(ending));
        }
    }

    /// Answers one request, from either protocol's client connection.
    pub(crate) async fn handle(
        self: Arc<Self>,
        req: Request<ClientBody>,
        conn: Arc<ConnState>,
        peer: Arc<Peer>,
    ) -> Result<Response<ProxyBody>, Infallible> {
        let deadline = Deadline::start(self.profile().timeout_kind, self.config.timers.timeout);
        let (mut parts, body) = req.into_parts();
        self.events.emit(|| EventKind::RequestReceived {
            conn: conn.id,
            method: parts.method.to_string(),
            path: parts
                .uri
                .path_and_query()
                .map_or(parts.uri.path(), |pq| pq.as_str())
                .to_string(),
        });
        // The client socket for after a 101 (only an HTTP/1.1 upgrade request has one);
        // the request sent on to the target must not carry it.
        let mut client_upgrade = parts.extensions.remove::<PendingUpgrade>();
        // An upgrade the profile does not relay: dropped (h2c) or refused.
        let mut upgrade_refused = None;
        if client_upgrade.is_some() && self.profile().upgrades == Upgrades::WebSocketOnly {
            match forward::upgrade_of(&parts.headers) {
                Some(p) if p.as_bytes().eq_ignore_ascii_case(b"websocket") => {}
                Some(p) if p.as_bytes().eq_ignore_ascii_case(b"h2c") => {
                    // The request goes on as plain HTTP/1.1: without its Upgrade header
                    // nothing restores the handshake once hop-by-hop headers are stripped.
                    parts.headers.remove(http::header::UPGRADE);
                    client_upgrade = None;
                }
                Some(p) => {
                    upgrade_refused = Some(format!(
                        "an upgrade to {:?}, which the load balancer does not relay",
                        String::from_utf8_lossy(p.as_bytes())
                    ));
                }
                None => {}
            }
        }
        // The target gets HTTP/1.1 whatever the client spoke, as from the clouds.
        let over_http2 = parts.version == Version::HTTP_2;
        if over_http2 {
            http2::to_http1_head(&mut parts);
        }
        if http_body::Body::is_end_stream(&body) {
            deadline.mark_request_complete();
        }
        // The client's header bytes, before the LB adds its own (logs count what arrived).
        let client_head = self.access_log.is_some().then(|| head_size(&parts.headers));
        // gRPC rides on HTTP/2 only; an HTTP/1.1 request pays for neither lookup.
        let grpc = over_http2 && respond::is_grpc(&parts.headers);
        let wants_trailers =
            self.config.target_protocol.is_http2() && http2::wants_trailers(&parts.headers);
        forward::add_request_headers(&mut parts.headers, &self.profile().forwarding, &peer);
        // Only an access log needs these facts; skip the copies otherwise.
        let facts = client_head.map(|head| Arc::new(Facts::capture(&parts, &peer, head)));
        if self.config.target_protocol.is_http2() {
            http2::to_http2_target(&mut parts, wants_trailers);
        } else {
            parts.version = Version::HTTP_11;
        }
        let in_flight = conn.begin_request(&deadline);
        // Defensive desync mitigation serves an Ambiguous request, then closes both sides.
        let ambiguous = in_flight.ambiguous();
        let mut pending = Unanswered {
            engine: &self,
            deadline: &deadline,
            facts: facts.clone(),
            in_flight: Some(in_flight),
            answered: false,
            conn: conn.id,
        };
        // Filled only when there is an access log; one try is held without allocating.
        let mut tries = Tries::default();
        let refused = self
            .profile()
            .checks_target_protocol
            .then(|| {
                self.config
                    .target_protocol
                    .refuses(over_http2, grpc, &parts.method)
            })
            .flatten();
        let refused = match (upgrade_refused, refused) {
            (Some(why), _) => Some((Reason::UpgradeRefused, why)),
            (None, Some(why)) => Some((Reason::IncompatibleProtocol, why.to_string())),
            (None, None) => None,
        };
        let forwarded = match refused {
            Some((reason, why)) => Err(Failure {
                reason,
                detail: Detail {
                    error: Some(why),
                    ..Detail::default()
                },
            }),
            None => {
                self.forward(
                    parts,
                    body,
                    facts.clone(),
                    &deadline,
                    &mut pending.in_flight,
                    ambiguous,
                    &conn,
                    client_upgrade,
                    &mut tries,
                )
                .await
            }
        };
        // The app answered while its request body was still on its way: the rest of the
        // body must go nowhere, so the connection ends with this answer. (An LB page
        // leaves it to the session, which closes a connection whose body was left unread.)
        let mut body_unfinished = false;
        let mut resp = match forwarded {
            Ok(resp) => {
                body_unfinished = !deadline.request_complete();
                resp
            }
            Err(Failure { reason, mut detail }) => {
                detail.elapsed = deadline.elapsed();
                detail.conn = Some(conn.id);
                if conn.client_eof() {
                    // The client had closed its side: the page still goes out, but what
                    // the LB logs is the client's departure.
                    pending.client_left();
                    let outcome = self.profile().outcome(reason);
                    respond::page(outcome)
                } else {
                    let mut page = self.lb_error(reason, &detail, facts.as_deref(), tries);
                    if grpc {
                        let outcome = self.profile().outcome(reason);
                        respond::for_grpc(&mut page, self.profile().grpc_errors, outcome.page.body);
                    }
                    page
                }
            }
        };
        pending.answered = true;
        // (HTTP/2 ends a connection with GOAWAY instead: see `http2::Limited`.)
        if !over_http2
            && resp.status() != http::StatusCode::SWITCHING_PROTOCOLS
            && (ambiguous
                || body_unfinished
                || self
                    .config
                    .timers
                    .client_max_age
                    .is_some_and(|max| conn.age() >= max))
        {
            // An Ambiguous request, an answer that came before the body ended, or the
            // client keep-alive duration ran out: this is the connection's last response.
            resp.headers_mut()
                .insert(CONNECTION, http::HeaderValue::from_static("close"));
        }
        Ok(resp)
    }

    /// Socket-level behaviour of client connections, built once per listener.
    fn client_hooks(self: &Arc<Self>) -> Arc<ClientHooks> {
        let page_engine = self.clone();
        let report_engine = self.clone();
        let reject_engine = self.clone();
        Arc::new(ClientHooks {
            rules: self.config.validation,
            stalled_page: Box::new(move || {
                let outcome = page_engine.profile().outcome(Reason::ClientTimeout);
                respond::page_bytes(page_engine.profile(), outcome)
            }),
            report_timeout: Box::new(move |stalled| {
                if stalled {
                    report_engine.count_and_say(Reason::ClientTimeout, &Detail::default());
                } else {
                    tracing::debug!("closed an idle client connection");
                }
            }),
            reject: Box::new(move |rejection, head, peer| {
                let reason = rejection_reason(rejection);
                let detail = Detail {
                    error: Some(rejection.to_string()),
                    ..Detail::default()
                };
                reject_engine.count_and_say(reason, &detail);
                let outcome = reject_engine.profile().outcome(reason);
                let page = respond::page_bytes(reject_engine.profile(), outcome);
                // The cloud logs the requests it rejects too: not routed, so no target
                // group, rule or action (AWS's published 400 lines show `-` there).
                if reject_engine.access_log.is_some() {
                    let facts = Facts::rejected(head, peer);
                    reject_engine.log_access(
                        Some(&facts),
                        Ending {
                            lb_status: Some(outcome.status),
                            reason: Some(outcome.code),
                            log_word: Some(outcome.log_word),
                            sent_bytes: page.len() as u64,
                            body_bytes: outcome.page.body.len() as u64,
                            ..Ending::default()
                        },
                    );
                }
                page
            }),
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn forward(
        self: &Arc<Self>,
        parts: http::request::Parts,
        body: ClientBody,
        facts: Option<Arc<Facts>>,
        deadline: &Deadline,
        in_flight: &mut Option<InFlight>,
        close_target: bool,
        client: &Arc<ConnState>,
        client_upgrade: Option<PendingUpgrade>,
        tries: &mut Tries,
    ) -> Result<Response<ProxyBody>, Failure> {
        // A request the cloud may send again keeps a copy of its head; only a request
        // without a body qualifies, so the retry sends an empty one.
        let retry = self
            .config
            .retry
            .filter(|r| r.covers(parts.method.as_str()) && deadline.request_complete());
        let again = retry.map(|_| head_copy(&parts));
        // A standard method clones without allocating: this runs on every request.
        let method = parts.method.clone();
        let mut first = Some((parts, body));
        // Attempts that counted (from 1), and retries that did not (nginx gives a try
        // back after an error on a cached keep-alive connection).
        let mut attempt = 1;
        let mut free_retries = 0;
        // Each try's start, for its time in the log; only an access log needs them.
        let logging = facts.is_some();
        let mut try_start = None;
        let (target, kill, on_target, timer, (resp, conn, dispatched)) = loop {
            let picked = self.targets.pick().map_err(|reason| Failure {
                reason,
                detail: Detail::default(),
            })?;
            let target = picked.addr;
            if logging {
                try_start = Some(tokio::time::Instant::now());
            }
            self.events.emit(|| EventKind::Forwarded {
                conn: client.id,
                target,
                attempt: attempt + free_retries,
            });
            // Both outlive the wait for the head: the response body goes on using them.
            let mut kill: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(picked.drain_over());
            let on_target = picked.start_request();
            let upstream_req = match (first.take(), &again) {
                (Some((parts, body)), _) => Request::from_parts(parts, Either::Left(body)),
                (None, Some(parts)) => {
                    Request::from_parts(head_copy(parts), Either::Right(Empty::new()))
                }
                // A second attempt is made only for a request with a copy of its head.
                (None, None) => unreachable_attempt()?,
            };
            let upstream_req = upstream_req.map(|body| Touching::new(body, deadline.clone()));

            // Boxed so that, when the LB gives up on it, the exchange (and the target
            // connection under it) is torn down after the answer, not before it.
            let mut exchange = Box::pin(self.clone().exchange(
                target,
                upstream_req,
                deadline.clone(),
            ));
            let mut timer = deadline.timer();
            let outcome = tokio::select! {
                biased;
                result = &mut exchange => Ok(result),
                _ = kill.as_mut() => Err(Reason::DeregistrationDelayElapsed),
                // Waiting for the client's body is the client's stall; waiting for an app
                // that takes no more of it (or sends nothing) is the app's.
                _ = deadline.expired(timer.as_mut()) => Err(if deadline.waiting_for_client() {
                    Reason::ClientTimeout
                } else {
                    Reason::TargetTimeout
                }),
            };
            // Which failure this attempt ended with, if the profile sends it again.
            let failed_with = match &outcome {
                Ok(Err(failure)) => Some(failure.reason),
                // A timeout waiting for the head (not the client's stall) is retried by
                // an LB whose policy lists it; the deregistration cut never is.
                Err(Reason::TargetTimeout) => Some(Reason::TargetTimeout),
                _ => None,
            };
            // A try that ended without a response is logged with the status the LB gives
            // its failure (nginx: 504 for a timeout, 502 for an error), retried or not.
            let failed_try = |reason: Reason| {
                let status = self.profile().outcome(reason).status;
                Try {
                    target,
                    // The client's own failures (a body that broke, a stall) are no
                    // status of the target's.
                    status: (status >= 500).then_some(status),
                    cause: Some(reason),
                    bytes: 0,
                    time: try_start.map_or(Duration::ZERO, |t| t.elapsed()),
                }
            };
            if logging {
                match &outcome {
                    Ok(Err(failure)) => tries.push(failed_try(failure.reason)),
                    Err(reason) => tries.push(failed_try(*reason)),
                    Ok(Ok(_)) => {}
                }
            }
            if let (Some(reason), Some(policy)) = (failed_with, retry) {
                let free = policy.free.contains(&reason) && free_retries < MAX_FREE_RETRIES;
                if policy.retries(method.as_str(), reason, attempt)
                    && (free || attempt < policy.attempts)
                {
                    // The LB sends the request again, to the target it picks next; only
                    // the last attempt is logged and counted, as in its request log.
                    tracing::info!(
                        target = %target,
                        "the {} retries the request after {} (attempt {} of {}{})",
                        self.profile().display_name,
                        self.profile().outcome(reason).code,
                        attempt + 1,
                        policy.attempts,
                        if free { ", not counted" } else { "" },
                    );
                    if outcome.is_err() {
                        // The abandoned exchange (and its target connection) goes after
                        // the answers of the moment.
                        self.reaper.discard(exchange);
                    }
                    if policy.fresh_timer {
                        deadline.restart();
                    }
                    self.stats.record_retry();
                    if free {
                        free_retries += 1;
                    } else {
                        attempt += 1;
                    }
                    continue;
                }
            }
            match outcome {
                Ok(Ok(exchanged)) => break (target, kill, on_target, timer, exchanged),
                Ok(Err(failure)) => return Err(failure),
                Err(reason) => {
                    self.reaper.discard(exchange);
                    return Err(Failure {
                        reason,
                        detail: Detail {
                            target: Some(target.to_string()),
                            ..Detail::default()
                        },
                    });
                }
            }
        };

        // The head's bytes are traffic: the idle clock restarts when it arrives.
        let head_at = tokio::time::Instant::now();
        deadline.touch_at(head_at);
        let status = resp.status().as_u16();
        let (mut parts, body) = resp.into_parts();
        let conn_id = client.id;
        if parts.headers.contains_key(CONTENT_LENGTH)
            && parts.headers.contains_key(TRANSFER_ENCODING)
        {
            // RFC 9112 §6.3: a response framed both ways may be smuggling; the LB refuses it
            // (and the target connection, whose framing is now unknown, goes with `conn`).
            if logging {
                let status = self.profile().outcome(Reason::MalformedResponse).status;
                tries.push(Try {
                    target,
                    status: Some(status),
                    cause: Some(Reason::MalformedResponse),
                    bytes: 0,
                    time: try_start.map_or(Duration::ZERO, |t| t.elapsed()),
                });
            }
            return Err(Failure {
                reason: Reason::MalformedResponse,
                detail: Detail {
                    target: Some(target.to_string()),
                    error: Some(
                        "the response has both Content-Length and Transfer-Encoding".into(),
                    ),
                    ..Detail::default()
                },
            });
        }
        self.events.emit(|| EventKind::AppAnswered {
            conn: conn_id,
            status,
            target,
        });
        if status == 101 {
            // The app accepted the client's upgrade: from here on both connections carry
            // raw bytes, relayed until either side closes or the cloud's timer fires.
            // (A 101 the client did not ask for falls through and is sent on as it was.)
            let target_upgrade = parts.extensions.remove::<PendingUpgrade>();
            let protocol = forward::upgrade_of(&parts.headers);
            if let (Some(client_side), Some(target_side), Some(protocol)) =
                (client_upgrade, target_upgrade, protocol)
            {
                forward::add_response_headers(&mut parts.headers, &self.profile().forwarding);
                forward::restore_upgrade(&mut parts.headers, protocol);
                self.stats.record(Some(status), None);
                let relay_deadline =
                    Deadline::start(self.profile().websocket_timeout, self.config.timers.timeout);
                client.mark_upgraded(&relay_deadline);
                let relay = Relay {
                    engine: self.clone(),
                    conn_id,
                    target,
                    client_side,
                    target_side,
                    conn,
                    deadline: relay_deadline,
                    request: deadline.clone(),
                    kill,
                    held: (on_target, in_flight.take()),
                    facts,
                    dispatched,
                    head_at,
                    head_bytes: 17 + head_size(&parts.headers) as u64,
                };
                tokio::spawn(relay.run());
                return Ok(Response::from_parts(
                    parts,
                    Either::Left(Full::new(Bytes::new())),
                ));
            }
        }
        let reusable = !close_target && !says_close(&parts.headers);
        forward::add_response_headers(&mut parts.headers, &self.profile().forwarding);
        let client_left = client.client_eof();
        if client_left {
            // Answered all the same (what was received is answered), logged as the
            // client's departure, as the LB's log would.
            let detail = Detail {
                conn: Some(conn_id),
                ..Detail::default()
            };
            self.count_and_say(Reason::ClientClosed, &detail);
        } else {
            self.stats.record(Some(status), None);
        }
        let head_bytes = 17 + head_size(&parts.headers) as u64;

        let engine = self.clone();
        let end_deadline = deadline.clone();
        // The client connection counts as busy until the body ends, not just the head.
        let busy = in_flight.take();
        // The tries before this one (none, most often: no allocation was made).
        let mut tries = std::mem::take(tries);
        let on_end = OnEnd::new(move |end, sent| {
            let _on_target = on_target;
            let _busy = busy;
            if let Some(start) = try_start {
                tries.push(Try {
                    target,
                    status: Some(status),
                    cause: None,
                    bytes: sent,
                    time: start.elapsed(),
                });
            }
            let mut ending = Ending {
                target: Some(target),
                dispatched: Some(dispatched),
                head_at: Some(head_at),
                lb_status: Some(status),
                target_status: Some(status),
                sent_bytes: head_bytes + sent,
                body_bytes: sent,
                tries,
                ..Ending::default()
            };
            let detail = |error: Option<String>| Detail {
                target: Some(target.to_string()),
                elapsed: end_deadline.elapsed(),
                error,
                after_head: true,
                conn: Some(conn_id),
                ..Detail::default()
            };
            if client_left {
                let outcome = engine.profile().outcome(Reason::ClientClosed);
                ending.lb_status = Some(outcome.status);
                ending.reason = Some(outcome.code);
                ending.log_word = Some(outcome.log_word);
            }
            let cut = match end {
                // Only a connection whose request went out whole can carry another.
                BodyEnd::Complete if reusable && end_deadline.request_complete() => {
                    engine.pool.checkin(conn);
                    None
                }
                BodyEnd::Complete => None,
                BodyEnd::Cut => Some((Reason::TargetTimeout, None)),
                BodyEnd::TargetError(e) => Some((Reason::TargetClosedMidBody, Some(e))),
                BodyEnd::Killed => Some((Reason::DeregistrationDelayElapsed, None)),
                BodyEnd::Abandoned if end_deadline.client_stalled() => Some((
                    Reason::TargetTimeout,
                    Some("the client stopped reading the response".to_string()),
                )),
                BodyEnd::Abandoned => {
                    tracing::info!(target = %target, "client closed the connection before the response ended");
                    None
                }
            };
            if let Some((reason, error)) = cut {
                engine.report_cut(reason, &detail(error));
                ending.cut = true;
                let outcome = engine.profile().outcome(reason);
                ending.reason = Some(outcome.code);
                ending.log_word = Some(outcome.log_word);
            }
            engine.log_access(facts.as_deref(), ending);
        });
        let body = DeadlineBody::new(body, deadline.clone(), timer, on_end).cut_when(kill);
        Ok(Response::from_parts(parts, Either::Right(body)))
    }

    /// Gets a connection and sends the request on it; the caller bounds it in time.
    async fn exchange(
        self: Arc<Self>,
        target: SocketAddr,
        req: Request<UpstreamBody>,
        deadline: Deadline,
    ) -> Result<(Response<TargetBody>, Conn, tokio::time::Instant), Failure> {
        let fail = |reason, idle_for, error: Option<String>| Failure {
            reason,
            detail: Detail {
                target: Some(target.to_string()),
                idle_for,
                error,
                ..Detail::default()
            },
        };
        let mut conn = match self.pool.checkout(target).await {
            Ok(Checkout::Ready(conn)) => conn,
            Ok(Checkout::Stale {
                idle_for,
                closed_for,
                id,
            }) => {
                tracing::debug!(
                    conn = id,
                    ?closed_for,
                    "reusing a connection the target closed"
                );
                return Err(fail(Reason::KeepAliveRace, Some(idle_for), None));
            }
            Err(ConnectError::Timeout) => return Err(fail(Reason::ConnectTimeout, None, None)),
            Err(ConnectError::Refused(e)) => {
                return Err(fail(Reason::ConnectRefused, None, Some(e.to_string())))
            }
        };
        // Each protocol's own future, called directly (a wrapper future would hold the
        // request and both protocols' futures at once: measurably more bytes copied).
        let sent = match &mut conn.sender {
            Sender::Http1(slot) => {
                let wire = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
                match wire {
                    Some(wire) => {
                        crate::lb::h1::target::send(wire, req, self.pool.name_case(), slot.clone())
                            .await
                            .map_err(ExchangeError::Http1)
                    }
                    None => Err(ExchangeError::Http1(SendError::Closed {
                        reset: false,
                        partial: false,
                    })),
                }
            }
            Sender::Http2(sender) => match sender.ready().await {
                Ok(()) => {
                    let dispatched = tokio::time::Instant::now();
                    sender
                        .send_request(req)
                        .await
                        .map(|r| (r.map(TargetBody::H2), dispatched))
                        .map_err(ExchangeError::Http2)
                }
                Err(e) => Err(ExchangeError::Http2(e)),
            },
        };
        match sent {
            Ok((resp, dispatched)) => Ok((resp, conn, dispatched)),
            // The client's body broke its framing while it was being sent: the client's
            // error (400), whatever it did to the target exchange.
            Err(e) if deadline.client_body_failed() => Err(fail(
                Reason::MalformedRequest,
                None,
                Some(format!("request body: {}", e.describe())),
            )),
            Err(e) => {
                let reason = e.classify(&conn);
                if reason == Reason::KeepAliveRace {
                    self.events.emit(|| EventKind::ConnectionFoundClosed {
                        id: conn.id,
                        target,
                        idle_us: micros(conn.idle_for),
                        closed_us: None,
                    });
                }
                Err(fail(reason, Some(conn.idle_for), Some(e.describe())))
            }
        }
    }
}

/// Why an exchange with a target failed, in its protocol's terms.
enum ExchangeError {
    Http1(SendError),
    Http2(hyper::Error),
}

impl ExchangeError {
    /// The cause a load balancer would log.
    fn classify(&self, conn: &Conn) -> Reason {
        match self {
            ExchangeError::Http1(e) if e.is_malformed() => Reason::MalformedResponse,
            // The request never got an answer: the pooled connection was already dead.
            ExchangeError::Http1(e) if e.is_stale() => Reason::KeepAliveRace,
            ExchangeError::Http1(_) => Reason::TargetClosedConnection,
            ExchangeError::Http2(e) => classify(e, conn),
        }
    }

    /// The error with its causes ("connection reset by peer").
    fn describe(&self) -> String {
        match self {
            ExchangeError::Http1(e) => e.to_string(),
            ExchangeError::Http2(e) => describe(e),
        }
    }
}

/// An upgraded (WebSocket) connection being relayed: what it holds until it ends.
struct Relay {
    engine: Arc<Engine>,
    /// The client connection's number, for the events.
    conn_id: u64,
    /// The target that answered 101.
    target: SocketAddr,
    /// The client socket, once the session has written the 101 on it.
    client_side: PendingUpgrade,
    /// The target socket, which the exchange took out of the connection with the 101.
    target_side: PendingUpgrade,
    /// The pooled connection the 101 came on: never checked in again.
    conn: Conn,
    /// The relay's own timer, idle or end to end as the profile's `websocket_timeout`.
    deadline: Deadline,
    /// The upgrade request's deadline, for the time since the request arrived.
    request: Deadline,
    /// Resolves when the target's deregistration delay ends: the relay is cut then.
    kill: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// The target's in-flight count and the client connection's busy mark, both held
    /// while the relay lasts.
    held: (crate::lb::targets::InFlightOnTarget, Option<InFlight>),
    /// For the access-log line written when the relay ends.
    facts: Option<Arc<Facts>>,
    /// When the upgrade request went out.
    dispatched: tokio::time::Instant,
    /// When the 101 arrived.
    head_at: tokio::time::Instant,
    /// The 101 head's size, for the access log.
    head_bytes: u64,
}

/// How a relay ended.
enum RelayEnd {
    /// Both sides closed (or one failed): the relay's work is done.
    Closed(io::Result<(u64, u64)>),
    /// The profile's WebSocket timer fired: the LB closed both sides.
    TimedOut,
    /// The target's deregistration delay ended.
    Killed,
    /// A side never completed the switch (the client left before the 101 went out).
    NotUpgraded(String),
}

impl Relay {
    /// Relays bytes both ways until either side closes or the timer fires, then closes
    /// both sockets (by dropping them) and reports how it ended.
    async fn run(self) {
        let Relay {
            engine,
            conn_id,
            target,
            client_side,
            target_side,
            conn,
            deadline,
            request,
            mut kill,
            held,
            facts,
            dispatched,
            head_at,
            head_bytes,
        } = self;
        let mut timer = deadline.timer();
        let mut moved = (0, 0);
        let end = tokio::select! {
            biased;
            _ = deadline.expired(timer.as_mut()) => RelayEnd::TimedOut,
            _ = kill.as_mut() => RelayEnd::Killed,
            sides = async { tokio::join!(client_side.wait(), target_side.wait()) } => match sides {
                (Ok(client_io), Ok(target_io)) => {
                    drop(conn);
                    let mut client_io = Active::new(client_io, deadline.clone());
                    let mut target_io = Active::new(target_io, deadline.clone());
                    tokio::select! {
                        biased;
                        _ = deadline.expired(timer.as_mut()) => RelayEnd::TimedOut,
                        _ = kill.as_mut() => RelayEnd::Killed,
                        copied = tokio::io::copy_bidirectional(&mut client_io, &mut target_io) => {
                            if let Ok(bytes) = &copied {
                                moved = *bytes;
                            }
                            RelayEnd::Closed(copied)
                        }
                    }
                    // Both upgraded sockets drop here: each side gets its FIN.
                }
                (Err(e), _) => RelayEnd::NotUpgraded(format!("client side: {e}")),
                (_, Err(e)) => RelayEnd::NotUpgraded(format!("target side: {e}")),
            },
        };
        drop(held);
        let mut ending = Ending {
            target: Some(target),
            dispatched: Some(dispatched),
            head_at: Some(head_at),
            lb_status: Some(101),
            target_status: Some(101),
            sent_bytes: head_bytes + moved.1,
            body_bytes: moved.1,
            ..Ending::default()
        };
        let cut = match end {
            RelayEnd::Closed(Ok((up, down))) => {
                tracing::debug!(%target, up, down, "WebSocket relay ended: a side closed");
                None
            }
            RelayEnd::Closed(Err(e)) => {
                tracing::debug!(%target, "WebSocket relay ended: {e}");
                None
            }
            RelayEnd::NotUpgraded(e) => {
                tracing::debug!(%target, "WebSocket upgrade not completed: {e}");
                None
            }
            RelayEnd::TimedOut => Some(Reason::TargetTimeout),
            RelayEnd::Killed => Some(Reason::DeregistrationDelayElapsed),
        };
        if let Some(reason) = cut {
            let detail = Detail {
                target: Some(target.to_string()),
                elapsed: request.elapsed(),
                after_head: true,
                websocket: true,
                conn: Some(conn_id),
                ..Detail::default()
            };
            engine.report_cut(reason, &detail);
            let outcome = engine.profile().outcome(reason);
            ending.cut = true;
            ending.reason = Some(outcome.code);
            ending.log_word = Some(outcome.log_word);
        }
        engine.log_access(facts.as_deref(), ending);
    }
}

/// Notices a request whose client left before the LB answered (ALB logs 460).
struct Unanswered<'a> {
    engine: &'a Engine,
    deadline: &'a Deadline,
    facts: Option<Arc<Facts>>,
    /// Held until the answer is complete; a streamed body takes it along.
    in_flight: Option<InFlight>,
    answered: bool,
    /// The client connection's number, for the events.
    conn: u64,
}

impl Unanswered<'_> {
    /// Counts and logs the request as one whose client left before the answer (an
    /// answer may still go out to a client that only half-closed).
    fn client_left(&mut self) {
        self.answered = false;
        self.report();
        self.answered = true;
    }

    fn report(&self) {
        if self.answered {
            return;
        }
        let reason = Reason::ClientClosed;
        let outcome = self.engine.profile().outcome(reason);
        let detail = Detail {
            elapsed: self.deadline.elapsed(),
            conn: Some(self.conn),
            ..Detail::default()
        };
        self.engine.count_and_say(reason, &detail);
        self.engine.log_access(
            self.facts.as_deref(),
            Ending {
                lb_status: Some(outcome.status),
                reason: Some(outcome.code),
                log_word: Some(outcome.log_word),
                ..Ending::default()
            },
        );
    }
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        self.report();
    }
}

/// The failure reported should an attempt ever lack a request to send (it cannot: only a
/// request with a copy of its head is retried); an error, not a panic, all the same.
fn unreachable_attempt<T>() -> Result<T, Failure> {
    Err(Failure {
        reason: Reason::TargetClosedConnection,
        detail: Detail {
            error: Some("no request left to send again".into()),
            ..Detail::default()
        },
    })
}

/// A copy of a request head, for sending the request again (the record of the header
/// names' case travels in the extensions).
fn head_copy(parts: &http::request::Parts) -> http::request::Parts {
    let (mut copy, ()) = Request::new(()).into_parts();
    copy.method = parts.method.clone();
    copy.uri = parts.uri.clone();
    copy.version = parts.version;
    copy.headers = parts.headers.clone();
    copy.extensions = parts.extensions.clone();
    copy
}

/// The cause behind a rejected request head.
fn rejection_reason(rejection: &Rejection) -> Reason {
    match rejection {
        Rejection::Malformed(_) => Reason::MalformedRequest,
        Rejection::RequestLineTooLong | Rejection::HeaderTooLong | Rejection::HeadTooLarge => {
            Reason::RequestTooLarge
        }
        Rejection::TooManyForwardedFor(_) => Reason::TooManyForwardedFor,
        Rejection::UnsupportedTransferEncoding => Reason::UnsupportedTransferEncoding,
        Rejection::MethodNotAllowed(_) => Reason::MethodNotAllowed,
        // The clouds answer CONNECT with their 400 page: the request-is-rejected reason
        // that yields it (the rejection's text names the method).
        Rejection::UnsupportedMethod(_) => Reason::MalformedRequest,
        Rejection::Desync(..) => Reason::DesyncBlocked,
    }
}

/// Maps a hyper (HTTP/2) client error to the cause a load balancer would log.
fn classify(e: &hyper::Error, conn: &Conn) -> Reason {
    if e.is_parse() || e.is_parse_status() || e.is_parse_too_large() {
        Reason::MalformedResponse
    } else if conn.reused && (e.is_canceled() || e.is_closed()) {
        // The request never left: the pooled connection was already dead.
        Reason::KeepAliveRace
    } else {
        Reason::TargetClosedConnection
    }
}

/// hyper's message plus the socket error under it ("connection reset by peer").
fn describe(e: &hyper::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn says_close(headers: &http::HeaderMap) -> bool {
    headers.get_all(CONNECTION).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.to_ascii_lowercase().contains("close"))
    })
}

/// Longest a client may take to complete the TLS handshake. Loopback clients finish in
/// milliseconds; a client that opened the socket and sent nothing (or something that is
/// not TLS and then waits) must not hold a socket and a task for good.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How a listener speaks to clients, besides plain HTTP/1.1.
pub(crate) struct ClientProtocols {
    /// HTTPS: the acceptor (ALPN offers `h2` and `http/1.1`, as both clouds do).
    pub tls: Option<TlsAcceptor>,
    /// Cleartext HTTP/2 with prior knowledge, told apart from HTTP/1.1 by its preface
    /// (`--h2c`; neither cloud has such a listener, but it spares a test the TLS set-up).
    pub http2_cleartext: bool,
}

/// Accepts client connections on `listener` until `shutdown` resolves, then lets
/// in-flight requests finish for at most the configured grace period. With TLS, each
/// connection's handshake runs in its own task, so a slow one never holds up accepting.
pub(crate) async fn serve(
    listener: TcpListener,
    engine: Arc<Engine>,
    protocols: ClientProtocols,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let listen_addr = listener.local_addr()?;
    let connections = Arc::new(Connections::default());
    let hooks = engine.client_hooks();
    // Forward header case as received and write the LB's own headers in Title-Case, or
    // lower-case every name, as the cloud does.
    let case = match engine.profile().forwarding.header_case {
        HeaderCase::Preserve => NameCase::Preserve,
        HeaderCase::Lower => NameCase::Lower,
    };
    let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    http2.timer(TokioTimer::new());
    let accepting = Accepting {
        engine,
        hooks,
        case,
        http2,
        connections,
    };
    let ClientProtocols {
        tls,
        http2_cleartext,
    } = protocols;
    // Turns true at shutdown: a TLS handshake still running then is dropped, so that no
    // connection joins after the drain has asked the others to finish.
    let (stopping_tx, stopping) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, client) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                };
                // Socket options and both addresses come from the TCP socket, before TLS.
                let _ = stream.set_nodelay(true);
                let local = stream.local_addr().unwrap_or(listen_addr);
                let engine = &accepting.engine;
                let state = ConnState::new(engine.next_conn.fetch_add(1, Ordering::Relaxed));
                let peer = Peer::new(&engine.profile().forwarding, client, local)
                    .over_tls(tls.is_some());
                let peer = Arc::new(peer);
                match &tls {
                    None if http2_cleartext => {
                        let accepting = accepting.clone();
                        tokio::spawn(async move {
                            let sniffed = tokio::time::timeout(
                                http2::PREFACE_TIMEOUT,
                                http2::starts_with_preface(&stream),
                            );
                            match sniffed.await {
                                Ok(Ok(true)) => {
                                    accepting.http2_connection(stream, state, peer, client).await
                                }
                                Ok(Ok(false)) => {
                                    accepting.connection(stream, state, peer, client).await
                                }
                                Ok(Err(e)) => tracing::debug!(%client, "client connection ended: {e}"),
                                Err(_) => tracing::debug!(%client, "no request after {:?}; closed", http2::PREFACE_TIMEOUT),
                            }
                        });
                    }
                    None => {
                        tokio::spawn(accepting.connection(stream, state, peer, client));
                    }
                    Some(acceptor) => {
                        let handshake = acceptor.accept(stream);
                        let accepting = accepting.clone();
                        let mut stopping = stopping.clone();
                        tokio::spawn(async move {
                            let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, handshake);
                            let done = tokio::select! {
                                done = handshake => done,
                                _ = stopping.wait_for(|s| *s) => {
                                    tracing::debug!(%client, "lbsim is stopping; TLS handshake dropped");
                                    return;
                                }
                            };
                            match done {
                                // Done just as lbsim began stopping: dropped as well.
                                Ok(Ok(_)) if *stopping.borrow() => {}
                                Ok(Ok(tls)) if tls.get_ref().1.alpn_protocol() == Some(b"h2") => {
                                    accepting.http2_connection(tls, state, peer, client).await
                                }
                                Ok(Ok(tls)) => accepting.connection(tls, state, peer, client).await,
                                // No HTTP answer is possible before the handshake: the
                                // socket is dropped, which closes it.
                                Ok(Err(e)) => tracing::debug!(%client, "TLS handshake failed: {e}"),
                                Err(_) => tracing::debug!(
                                    %client,
                                    "TLS handshake not done after {TLS_HANDSHAKE_TIMEOUT:?}; closed"
                                ),
                            }
                        });
                    }
                }
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = stopping_tx.send(true);
    let Accepting {
        engine,
        connections,
        ..
    } = accepting;
    engine.stop_background();
    let grace = engine.config.shutdown_grace;
    tokio::select! {
        _ = connections.drain() => tracing::info!("all client connections closed"),
        _ = tokio::time::sleep(grace) => {
            tracing::warn!("requests still running after {grace:?}; exiting anyway")
        }
    }
    Ok(())
}

/// What serving an accepted client connection needs (cloned into a TLS handshake's task).
#[derive(Clone)]
struct Accepting {
    engine: Arc<Engine>,
    hooks: Arc<ClientHooks>,
    /// How HTTP/1.1 heads' names are written to clients and targets.
    case: NameCase,
    /// For clients that speak HTTP/2 (ALPN `h2`, or the cleartext preface with `--h2c`).
    http2: hyper::server::conn::http2::Builder<TokioExecutor>,
    connections: Arc<Connections>,
}

impl Accepting {
    /// Serves HTTP/1.1 on one client connection (a plain socket, or TLS over it) until it
    /// ends.
    fn connection<S: ClientStream>(
        &self,
        stream: S,
        state: Arc<ConnState>,
        peer: Arc<Peer>,
        client: SocketAddr,
    ) -> impl Future<Output = ()> + Send + 'static {
        let io = ClientIo::new(
            stream,
            state.clone(),
            self.engine.config.timers.client_idle,
            self.hooks.clone(),
            peer.clone(),
        );
        let stop = Arc::new(Stop::default());
        let session = Session::new(
            io,
            self.engine.clone(),
            self.hooks.clone(),
            state,
            peer,
            self.case,
            stop.clone(),
        );
        let serving = Serving {
            run: Box::pin(session.run()),
            stop,
        };
        self.until_closed(serving, |s| s.stop.ask(), client)
    }

    /// Serves HTTP/2 on one client connection until it ends: each stream is a request
    /// for the same engine; the connection ends with GOAWAY when the cloud's client idle
    /// timeout or keep-alive duration runs out ([`http2::Limited`]).
    fn http2_connection<S: ClientStream>(
        &self,
        stream: S,
        state: Arc<ConnState>,
        peer: Arc<Peer>,
        client: SocketAddr,
    ) -> impl Future<Output = ()> + Send + 'static {
        let engine = self.engine.clone();
        let streams = http2::Streams::new();
        let counting = streams.clone();
        let service = service_fn(move |req| {
            // Open from the request's arrival to its response's end (or the client's reset).
            let stream = counting.begin();
            let answer =
                engine
                    .clone()
                    .handle(req.map(ClientBody::H2), state.clone(), peer.clone());
            async move {
                let Ok(resp) = answer.await;
                Ok::<_, Infallible>(resp.map(|body| http2::CountedBody::new(body, stream)))
            }
        });
        let conn = self.http2.serve_connection(TokioIo::new(stream), service);
        let timers = &self.engine.config.timers;
        let limits = http2::Limits {
            idle: timers.client_idle,
            max_age: timers.client_max_age,
        };
        let limited = http2::Limited::new(conn, streams, limits, |c: Pin<&mut _>| {
            c.graceful_shutdown()
        });
        self.until_closed(limited, |c| c.graceful_shutdown(), client)
    }

    /// Runs a client connection until it ends, among the listener's connections (so that
    /// lbsim's shutdown asks it to finish with `graceful`).
    fn until_closed<C, G, E>(
        &self,
        conn: C,
        graceful: G,
        client: SocketAddr,
    ) -> impl Future<Output = ()> + Send + 'static
    where
        C: Future<Output = Result<(), E>> + Send + 'static,
        G: FnOnce(Pin<&mut C>) + Send + 'static,
        E: std::fmt::Display,
    {
        let watched = self.connections.clone().watch(conn, graceful);
        async move {
            if let Err(e) = watched.await {
                tracing::debug!(%client, "client connection ended: {e}");
            }
        }
    }
}

/// An HTTP/1.1 session as the listener's registry of connections runs it: `stop` asks
/// it to finish its current request and close.
struct Serving {
    run: Pin<Box<dyn Future<Output = io::Result<()>> + Send>>,
    stop: Arc<Stop>,
}

impl Future for Serving {
    type Output = io::Result<()>;

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        self.run.as_mut().poll(cx)
    }
}
