//! The library API: start a simulator in-process (on port 0 in tests) and drive it.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::accesslog::{AccessLog, LogFormat};
use crate::admin;
use crate::config::{Config, ConfigError, RaceWindow, Settings};
use crate::profile::{Cloud, LbDefaults};
use crate::proxy::{self, Engine};
use crate::stats::Counts;
use crate::targets::{HealthOverride, TargetInfo};

/// Why a simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The settings contradict the cloud.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The access log could not be opened.
    #[error("cannot open access log {path}: {source}")]
    AccessLog {
        /// The path asked for.
        path: String,
        /// The file error.
        source: io::Error,
    },
    /// The listen address (for clients) could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The socket error.
        source: io::Error,
    },
    /// The control API's address could not be bound. A variant of its own so that the
    /// caller can say which of the two addresses failed (the CLI names the flag).
    #[error("cannot serve the control API on {addr}: {source}")]
    AdminBind {
        /// The address asked for.
        addr: SocketAddr,
        /// The socket error.
        source: io::Error,
    },
}

/// Lines the access log may queue before it drops (and counts) the excess: the request
/// path never waits on a slow log destination.
pub const ACCESS_LOG_CAPACITY: usize = 8192;

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
    admin: Option<SocketAddr>,
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
            admin: None,
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
    /// Anyscale or native defaults.
    pub fn defaults(mut self, defaults: LbDefaults) -> Self {
        self.settings.defaults = defaults;
        self
    }
    /// The cloud's main timeout, whatever it measures: the idle timeout where it is idle
    /// (AWS), the backend service timeout where it is end to end (GCP). For harnesses that
    /// run against every cloud.
    pub fn main_timeout(self, d: Duration) -> Self {
        match crate::profile::Profile::of(self.settings.cloud).timeout_kind {
            crate::profile::TimeoutKind::Idle => self.idle_timeout(d),
            crate::profile::TimeoutKind::EndToEnd => self.backend_timeout(d),
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
    pub fn desync_mode(mut self, mode: crate::validate::DesyncMode) -> Self {
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
        self.settings.shutdown_grace = d;
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
    /// Also serves the control API ([`crate::admin`]) on `addr`; off unless set.
    pub fn admin(mut self, addr: SocketAddr) -> Self {
        self.admin = Some(addr);
        self
    }
    /// Replaces all settings at once (the CLI uses this).
    pub fn settings(mut self, s: Settings) -> Self {
        self.settings = s;
        self
    }

    /// Binds and starts serving on the current tokio runtime.
    pub async fn start(self) -> Result<SimHandle, StartError> {
        let config = Config::build(&self.settings)?;
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
        let listener = proxy::bind(self.listen).map_err(|source| StartError::Bind {
            addr: self.listen,
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: self.listen,
            source,
        })?;
        let admin = match self.admin {
            Some(want) => {
                let bind_err = |source| StartError::AdminBind { addr: want, source };
                let l = proxy::bind(want).map_err(bind_err)?;
                let bound = l.local_addr().map_err(bind_err)?;
                Some((l, bound))
            }
            None => None,
        };
        let mut handle = SimHandle::serve(
            listener,
            addr,
            Engine::new(config, self.upstreams, access_log, self.explain),
        );
        if let Some((l, bound)) = admin {
            handle.serve_admin(l, bound);
        }
        Ok(handle)
    }
}

/// A running simulator.
pub struct SimHandle {
    addr: SocketAddr,
    engine: Arc<Engine>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
    admin: Option<AdminServer>,
}

/// The control API's listener task, when the builder asked for one.
struct AdminServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl SimHandle {
    fn serve(listener: TcpListener, addr: SocketAddr, engine: Arc<Engine>) -> SimHandle {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(proxy::serve(listener, engine.clone(), async {
            let _ = stopped.await;
        }));
        SimHandle {
            addr,
            engine,
            stop: Some(stop),
            task: Some(task),
            admin: None,
        }
    }

    fn serve_admin(&mut self, listener: TcpListener, addr: SocketAddr) {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(admin::serve(listener, self.engine.clone(), async {
            let _ = stopped.await;
        }));
        self.admin = Some(AdminServer {
            addr,
            stop: Some(stop),
            task: Some(task),
        });
    }

    /// The control API's address, when the builder set [`SimulatorBuilder::admin`].
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|a| a.addr)
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

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

    /// Registers a target (it starts `initial`, or `unavailable` without health checks).
    pub fn register(&self, addr: SocketAddr) -> TargetInfo {
        self.engine.register(addr).info()
    }

    /// Deregisters target `id`: it drains for the deregistration delay, then leaves the
    /// group. `None` if it is not in the group; a target already draining is left as it
    /// is (the delay is not restarted), as AWS's DeregisterTargets does.
    pub fn deregister(&self, id: u64) -> Option<TargetInfo> {
        self.engine
            .targets
            .deregister(id)
            .map(|d| d.target().info())
    }

    /// Forces target `id` healthy or unhealthy, or hands it back to the checks.
    /// `None` if unknown.
    pub fn set_health(&self, id: u64, over: HealthOverride) -> Option<TargetInfo> {
        let target = self.engine.targets.get(id)?;
        target.set_override(over);
        Some(target.info())
    }

    /// The engine, for code that needs more than the handle offers.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Stops accepting, lets in-flight requests finish (bounded), writes the access log's
    /// last lines (for at most
    /// [`crate::accesslog::FINAL_FLUSH_LIMIT`], then warns what it left), and waits.
    pub async fn shutdown(mut self) {
        self.stop_and_wait().await
    }

    /// Like [`SimHandle::shutdown`], for callers that hold the handle by `&mut`.
    pub async fn stop_and_wait(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let admin_task = self.admin.as_mut().and_then(|a| {
            if let Some(stop) = a.stop.take() {
                let _ = stop.send(());
            }
            a.task.take()
        });
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        if let Some(task) = admin_task {
            let _ = task.await;
        }
        self.engine.flush_logs().await;
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
        if let Some(task) = self.admin.as_ref().and_then(|a| a.task.as_ref()) {
            task.abort();
        }
    }
}
