//! The library API: start a simulator in-process (on port 0 in tests) and drive it.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;

use crate::lb::accesslog::{AccessLog, LogFormat};
use crate::lb::config::{Config, ConfigError, RaceWindow, Settings, TargetProtocol};
use crate::lb::events::{Event, Events};
use crate::lb::profile::{Cloud, LbDefaults};
use crate::lb::proxy::{self, Engine};
use crate::lb::stats::Counts;
use crate::lb::targets::{Deregistration, HealthOverride, TargetInfo, TargetState};
use crate::net::tls::Tls;

/// Why a simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The settings contradict the cloud.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `--l4` in front of a cloud it is never put in front of.
    #[error(transparent)]
    L4(#[from] crate::lb::l4::L4Refused),
    /// The access log could not be opened.
    #[error("cannot open access log {path}: {source}")]
    AccessLog {
        /// The path asked for.
        path: String,
        /// The file error.
        source: io::Error,
    },
    /// The HTTPS listener could not be set up (a certificate or key file unreadable or
    /// invalid, the CA certificate not writable).
    #[error("HTTPS: {0}")]
    Tls(String),
    /// The listen address (for clients) could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The socket error.
        source: io::Error,
    },
}

/// Lines the access log may queue before it drops (and counts) the excess: the request
/// path never waits on a slow log destination.
pub(crate) const ACCESS_LOG_CAPACITY: usize = 8192;

/// Builds a simulator; see [`Simulator::builder`].
#[derive(Clone, Debug)]
pub struct SimulatorBuilder {
    settings: Settings,
    /// Access-log destination (`-` for stdout) and format (None: the cloud's own).
    access_log: Option<(String, Option<LogFormat>)>,
    /// Plain sentence on stderr per LB-generated error.
    explain: bool,
    listen: SocketAddr,
    upstreams: Vec<SocketAddr>,
    /// A cloud's TCP load balancer in front (`--l4`), with its idle timeout override.
    l4: Option<(crate::lb::l4::L4Flavour, Option<Duration>)>,
    /// HTTPS on the listener (a listener setting, not the load balancer's behaviour).
    tls: Option<Tls>,
    /// Cleartext HTTP/2 with prior knowledge beside HTTP/1.1 (`--h2c`).
    http2_cleartext: bool,
}

/// Entry point of the library API.
///
/// ```no_run
/// # async fn demo(app: std::net::SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
/// use lbsim::{Cloud, Simulator};
/// use std::time::Duration;
///
/// let lb = Simulator::builder(Cloud::Aws)
///     .upstream(app)
///     .idle_timeout(Duration::from_millis(500))
///     .start()
///     .await?;
/// println!("send requests to http://{}", lb.addr());
/// lb.shutdown().await;
/// # Ok(()) }
/// ```
pub struct Simulator;

impl Simulator {
    /// A builder for `cloud`, listening on `127.0.0.1:0`, with no targets yet.
    pub fn builder(cloud: Cloud) -> SimulatorBuilder {
        SimulatorBuilder {
            settings: Settings::new(cloud),
            access_log: None,
            explain: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            upstreams: Vec::new(),
            l4: None,
            tls: None,
            http2_cleartext: false,
        }
    }
}

impl SimulatorBuilder {
    /// Adds a target.
    pub fn upstream(mut self, addr: SocketAddr) -> Self {
        self.upstreams.push(addr);
        self
    }
    /// Where to listen (default `127.0.0.1:0`).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }
    /// Serves HTTPS with the certificate `tls` says (ALPN offers `h2` and `http/1.1`, as
    /// both clouds do); see [`SimHandle::tls_ca`] for where a generated CA was written.
    pub fn tls(mut self, tls: Tls) -> Self {
        self.tls = Some(tls);
        self
    }
    /// What the LB speaks to targets: HTTP/1.1 (default), or cleartext HTTP/2 for an
    /// ALB target group of protocol version HTTP2 / GRPC or a GCP backend service of
    /// protocol HTTP2.
    pub fn target_protocol(mut self, protocol: TargetProtocol) -> Self {
        self.settings.target_protocol = protocol;
        self
    }
    /// Also serves cleartext HTTP/2 with prior knowledge (a connection that opens with
    /// the HTTP/2 preface; others get HTTP/1.1). Neither cloud offers this on a listener;
    /// it lets a test speak HTTP/2 without TLS.
    pub fn http2_cleartext(mut self, on: bool) -> Self {
        self.http2_cleartext = on;
        self
    }
    /// Anyscale or native defaults.
    pub fn defaults(mut self, defaults: LbDefaults) -> Self {
        self.settings.defaults = defaults;
        self
    }
    /// The cloud's main timeout, whatever it measures: the idle timeout where it is idle
    /// (AWS), the backend service timeout where it is end to end (GCP). For harnesses that
    /// run against every cloud.
    pub fn main_timeout(self, d: Duration) -> Self {
        match crate::lb::profile::Profile::of(self.settings.cloud).timeout_kind {
            crate::lb::profile::TimeoutKind::Idle => self.idle_timeout(d),
            crate::lb::profile::TimeoutKind::EndToEnd => self.backend_timeout(d),
        }
    }
    /// AWS idle timeout (before scaling).
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.settings.idle_timeout = Some(d);
        self
    }
    /// GCP backend service timeout (before scaling).
    pub fn backend_timeout(mut self, d: Duration) -> Self {
        self.settings.backend_timeout = Some(d);
        self
    }
    /// Target connect timeout (before scaling).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.settings.connect_timeout = Some(d);
        self
    }
    /// Client keep-alive (before scaling): connection age on AWS, idle time on GCP.
    pub fn client_keep_alive(mut self, d: Duration) -> Self {
        self.settings.client_keep_alive = Some(d);
        self
    }
    /// Turns active health checks off: targets are `unavailable` and always get traffic.
    pub fn no_health_checks(mut self) -> Self {
        self.settings.health_checks = false;
        self
    }
    /// Health-check path (default `/`).
    pub fn health_path(mut self, path: &str) -> Self {
        self.settings.health_path = Some(path.to_string());
        self
    }
    /// Time between health checks (before scaling).
    pub fn health_interval(mut self, d: Duration) -> Self {
        self.settings.health_interval = Some(d);
        self
    }
    /// Health-check timeout (before scaling).
    pub fn health_timeout(mut self, d: Duration) -> Self {
        self.settings.health_timeout = Some(d);
        self
    }
    /// Consecutive passes to become healthy.
    pub fn healthy_threshold(mut self, n: u32) -> Self {
        self.settings.healthy_threshold = Some(n);
        self
    }
    /// Consecutive failures to become unhealthy.
    pub fn unhealthy_threshold(mut self, n: u32) -> Self {
        self.settings.unhealthy_threshold = Some(n);
        self
    }
    /// Start-up window in which no target counts as healthy (before scaling).
    pub fn warmup(mut self, d: Duration) -> Self {
        self.settings.warmup = Some(d);
        self
    }
    /// How long deregistered targets drain (before scaling).
    pub fn deregistration_delay(mut self, d: Duration) -> Self {
        self.settings.deregistration_delay = Some(d);
        self
    }
    /// Request-smuggling mitigation mode (default: the profile's).
    pub fn desync_mode(mut self, mode: crate::lb::validate::DesyncMode) -> Self {
        self.settings.desync_mode = Some(mode);
        self
    }
    /// Multiplies every timer.
    pub fn time_scale(mut self, f: f64) -> Self {
        self.settings.time_scale = f;
        self
    }
    /// Never retry a failed request, even where the cloud does (GCP's GET retry).
    pub fn no_retry(mut self) -> Self {
        self.settings.no_retry = true;
        self
    }

    /// Keep-alive race model.
    pub fn race_window(mut self, w: RaceWindow) -> Self {
        self.settings.race_window = w;
        self
    }
    /// Bound on graceful shutdown.
    pub fn shutdown_grace(mut self, d: Duration) -> Self {
        self.settings.shutdown_grace = Some(d);
        self
    }
    /// Writes an access log to `path` (`-`: stdout) in `format` (None: the cloud's own).
    pub fn access_log(mut self, path: &str, format: Option<LogFormat>) -> Self {
        self.access_log = Some((path.to_string(), format));
        self
    }
    /// Prints a plain sentence on stderr for each LB-generated error.
    pub fn explain(mut self, on: bool) -> Self {
        self.explain = on;
        self
    }
    /// Puts a cloud's TCP load balancer in front (`--l4`): clients connect to it, it relays
    /// each TCP flow to the L7 listener with the flavour's idle timeout per flow (`idle`,
    /// default the flavour's; scaled by the time scale) and its outcome (reset, silence).
    /// A flavour the cloud is never put behind makes `start` fail.
    pub fn l4(mut self, flavour: crate::lb::l4::L4Flavour, idle: Option<Duration>) -> Self {
        self.l4 = Some((flavour, idle));
        self
    }
    /// Replaces all settings at once (the CLI uses this).
    pub fn settings(mut self, s: Settings) -> Self {
        self.settings = s;
        self
    }

    /// Binds and starts serving on the current tokio runtime.
    pub async fn start(self) -> Result<SimHandle, StartError> {
        self.start_with(Events::new(), None).await
    }

    /// Starts serving on `listener`, already bound (its address wins over
    /// [`SimulatorBuilder::listen`]): a caller that binds several ports can report a taken
    /// one before anything serves.
    pub async fn start_on(self, listener: TcpListener) -> Result<SimHandle, StartError> {
        self.start_with(Events::new(), Some(listener)).await
    }

    /// Like [`SimulatorBuilder::start`], with an [`Event`] subscription taken before the
    /// simulator does anything: it also gets the registration of the builder's targets
    /// and what their first health checks do, which may come before a
    /// [`Control::subscribe`] made once `start` has returned.
    pub async fn start_subscribed(
        self,
    ) -> Result<(SimHandle, broadcast::Receiver<Event>), StartError> {
        let events = Events::new();
        let rx = events.subscribe();
        Ok((self.start_with(events, None).await?, rx))
    }

    async fn start_with(
        self,
        events: Events,
        bound: Option<TcpListener>,
    ) -> Result<SimHandle, StartError> {
        let config = Config::build(&self.settings)?;
        if let Some((flavour, _)) = self.l4 {
            crate::lb::l4::L4Profile::of(flavour).check(self.settings.cloud)?;
        }
        let access_log = match &self.access_log {
            Some((path, format)) => {
                let format = format.unwrap_or(config.profile.log_format);
                Some(
                    AccessLog::open(path, format, ACCESS_LOG_CAPACITY).map_err(|source| {
                        StartError::AccessLog {
                            path: path.clone(),
                            source,
                        }
                    })?,
                )
            }
            None => None,
        };
        let tls = match &self.tls {
            Some(tls) => Some(crate::net::tls::listener(tls).map_err(StartError::Tls)?),
            None => None,
        };
        let listener = match bound {
            Some(l) => l,
            None => crate::net::bind(self.listen).map_err(|source| StartError::Bind {
                addr: self.listen,
                source,
            })?,
        };
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: self.listen,
            source,
        })?;
        // With an L4 load balancer, the user's address is its; the engine listens inside.
        let (listener, l4) = match self.l4 {
            None => (listener, None),
            Some((flavour, idle)) => {
                let l4 = crate::lb::l4::L4Config::new(flavour, idle, config.time_scale);
                let inner = SocketAddr::from(([127, 0, 0, 1], 0));
                let bind_err = |source| StartError::Bind {
                    addr: inner,
                    source,
                };
                let engine_listener = crate::net::bind(inner).map_err(bind_err)?;
                let inner = engine_listener.local_addr().map_err(bind_err)?;
                (engine_listener, Some((listener, l4, inner)))
            }
        };
        let mut handle = SimHandle::serve(
            listener,
            addr,
            Engine::new(config, self.upstreams, access_log, self.explain, events),
            tls,
            self.http2_cleartext,
        );
        if let Some((outer, l4, inner)) = l4 {
            handle.l4 = Some(crate::lb::l4::Relay::start(outer, l4, inner));
        }
        Ok(handle)
    }
}

/// A running simulator. It derefs to its [`Control`], the one control surface.
pub struct SimHandle {
    addr: SocketAddr,
    /// HTTPS: where the generated CA certificate was written (None: plain HTTP, or the
    /// user's own certificate).
    tls_ca: Option<PathBuf>,
    /// True when the listener serves HTTPS.
    https: bool,
    control: Control,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
    /// The TCP load balancer in front, if any (`--l4`).
    l4: Option<crate::lb::l4::Relay>,
}

/// What may be done to a running simulator: read its settings and counters, change its
/// target group. The control API, scenarios and test harnesses all go through this (no
/// caller reaches into the engine), so a rule such as "no target registered twice" holds
/// for each of them. Cheap to clone; a clone outliving the [`SimHandle`] still reads it.
#[derive(Clone)]
pub struct Control {
    /// Private: the engine's fields are not API.
    engine: Arc<Engine>,
    /// Serialises registrations: two concurrent calls cannot both add one address.
    registering: Arc<std::sync::Mutex<()>>,
}

/// Why [`Control::register`] refused an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("target {addr} is already registered (id {id}); deregister it first")]
pub struct AlreadyRegistered {
    /// The address asked for.
    pub addr: SocketAddr,
    /// The target that already serves it.
    pub id: u64,
}

/// What [`Control::deregister`] did.
#[derive(Debug, Clone)]
pub enum Deregistered {
    /// The target now drains, for the deregistration delay.
    Started(TargetInfo),
    /// It was already draining; nothing changed (AWS's DeregisterTargets does the same).
    Already(TargetInfo),
}

impl Deregistered {
    /// The target, draining either way.
    pub fn info(&self) -> &TargetInfo {
        match self {
            Deregistered::Started(t) | Deregistered::Already(t) => t,
        }
    }
}

/// Why a target id names no target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoSuchTarget {
    /// It was in the group, was deregistered and its delay has ended.
    #[error(
        "target {0} is no longer in the target group: it was deregistered and its \
         deregistration delay has ended"
    )]
    Gone(u64),
    /// No target ever had this id.
    #[error("no target with id {0}")]
    Unknown(u64),
}

impl Control {
    /// Effective settings.
    pub fn config(&self) -> &Config {
        &self.engine.config
    }

    /// Request counters.
    pub fn stats(&self) -> Counts {
        self.engine.stats.snapshot()
    }

    /// Zeroes the request counters.
    pub fn reset_stats(&self) {
        self.engine.stats.reset()
    }

    /// Every target in the group (registered or draining) with its state, last health
    /// result and in-flight count. A target leaves the list when its deregistration ends.
    pub fn targets(&self) -> Vec<TargetInfo> {
        self.engine.targets.all().iter().map(|t| t.info()).collect()
    }

    /// Target `id`.
    pub fn target(&self, id: u64) -> Result<TargetInfo, NoSuchTarget> {
        self.engine
            .targets
            .get(id)
            .map(|t| t.info())
            .ok_or_else(|| self.no_such(id))
    }

    /// Registers a target (it starts `initial`, or `unavailable` without health checks).
    /// An address already in the group (and not draining) is refused, as AWS's
    /// RegisterTargets keeps one registration per target.
    pub fn register(&self, addr: SocketAddr) -> Result<TargetInfo, AlreadyRegistered> {
        let _one_at_a_time = self.registering.lock().unwrap_or_else(|e| e.into_inner());
        let existing = self.engine.targets.all().into_iter().find(|t| {
            t.addr == addr && !matches!(t.state(), TargetState::Draining | TargetState::Unused)
        });
        if let Some(t) = existing {
            return Err(AlreadyRegistered { addr, id: t.id });
        }
        Ok(self.engine.register(addr).info())
    }

    /// Deregisters target `id`: it drains for the deregistration delay, then leaves the
    /// group. A target already draining is left as it is (the delay is not restarted).
    pub fn deregister(&self, id: u64) -> Result<Deregistered, NoSuchTarget> {
        match self.engine.targets.deregister(id) {
            Some(Deregistration::Started(t)) => Ok(Deregistered::Started(t.info())),
            Some(Deregistration::AlreadyDeregistered(t)) => Ok(Deregistered::Already(t.info())),
            None => Err(self.no_such(id)),
        }
    }

    /// Forces target `id` healthy or unhealthy, or hands it back to the checks.
    pub fn set_health(&self, id: u64, over: HealthOverride) -> Result<TargetInfo, NoSuchTarget> {
        let target = self
            .engine
            .targets
            .get(id)
            .ok_or_else(|| self.no_such(id))?;
        target.set_override(over);
        Ok(target.info())
    }

    /// Every [`Event`] from now on: requests received, forwarded and answered (by the app
    /// or the LB), responses cut, target state changes, pooled connections opened,
    /// reused and found closed. Nothing is built for the stream while no receiver
    /// exists. A receiver that falls more than [`crate::EVENT_CAPACITY`] events behind
    /// gets [`broadcast::error::RecvError::Lagged`] (how many it missed) and goes on
    /// from the oldest event still held; the engine never waits for it.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.engine.events.subscribe()
    }

    /// When the simulator started (when `start` was called): the instant
    /// [`Event::at_us`] counts from. An event happened at
    /// `started_at() + Duration::from_micros(at_us)`, which places it on a listener's own
    /// clock (the scenario timeline does so).
    pub fn started_at(&self) -> tokio::time::Instant {
        self.engine.events.started()
    }

    /// How many of lbsim's keep-alive connections to `target` sit idle in its pool.
    pub fn idle_connections(&self, target: SocketAddr) -> usize {
        self.engine.pool.idle_count(target)
    }

    fn no_such(&self, id: u64) -> NoSuchTarget {
        if self.engine.targets.was_issued(id) {
            NoSuchTarget::Gone(id)
        } else {
            NoSuchTarget::Unknown(id)
        }
    }
}

impl std::ops::Deref for SimHandle {
    type Target = Control;
    fn deref(&self) -> &Control {
        &self.control
    }
}

impl SimHandle {
    fn serve(
        listener: TcpListener,
        addr: SocketAddr,
        engine: Arc<Engine>,
        tls: Option<crate::net::tls::Listener>,
        http2_cleartext: bool,
    ) -> SimHandle {
        let (stop, stopped) = oneshot::channel::<()>();
        let https = tls.is_some();
        let (acceptor, tls_ca) = match tls {
            Some(t) => (Some(t.acceptor), t.ca_written),
            None => (None, None),
        };
        let protocols = proxy::ClientProtocols {
            tls: acceptor,
            http2_cleartext,
        };
        let task = tokio::spawn(proxy::serve(listener, engine.clone(), protocols, async {
            let _ = stopped.await;
        }));
        SimHandle {
            addr,
            tls_ca,
            https,
            control: Control {
                engine,
                registering: Arc::default(),
            },
            stop: Some(stop),
            task: Some(task),
            l4: None,
        }
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https` on an HTTPS listener ([`SimulatorBuilder::tls`]), else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.https {
            "https"
        } else {
            "http"
        }
    }

    /// Where the CA certificate of the generated server certificate was written
    /// (absolute), for clients to trust; None for plain HTTP or the user's own certificate.
    pub fn tls_ca(&self) -> Option<&Path> {
        self.tls_ca.as_deref()
    }

    /// A clone of the control surface, for a task that outlives this borrow.
    pub fn control(&self) -> Control {
        self.control.clone()
    }

    /// Stops accepting, lets in-flight requests finish (bounded), writes the access log's
    /// last lines (for at most
    /// [`crate::lb::accesslog::FINAL_FLUSH_LIMIT`], then warns what it left), and waits.
    pub async fn shutdown(mut self) {
        self.stop_and_wait().await
    }

    /// Like [`SimHandle::shutdown`], for callers that hold the handle by `&mut`.
    pub async fn stop_and_wait(&mut self) {
        // The TCP load balancer in front stops accepting first; its open flows carry the
        // engine's in-flight answers while the engine drains, and go with it.
        let mut l4 = self.l4.take();
        if let Some(l4) = l4.as_mut() {
            l4.stop_accepting();
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        drop(l4);
        self.control.engine.flush_logs().await;
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}
