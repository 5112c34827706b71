//! The target group: registered targets, their health states, and the routing rule that
//! picks one (round-robin over routable targets, the cloud's rule when none is healthy).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::lb::events::{EventKind, Events, StateChange};
use crate::lb::reason::Reason;
pub use crate::lb::target_state::TargetState;

/// A manual verdict that overrides health checks (control API).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthOverride {
    /// Health checks decide.
    Auto,
    /// Treated as healthy whatever the checks say.
    Healthy,
    /// Treated as unhealthy whatever the checks say.
    Unhealthy,
}

/// The health-check rules a target moves by.
#[derive(Clone, Copy, Debug)]
pub struct Thresholds {
    /// Consecutive passes that make an unhealthy target healthy.
    pub healthy: u32,
    /// Consecutive failures that make a target unhealthy.
    pub unhealthy: u32,
    /// Passes a new (`initial`) target needs before it gets traffic.
    pub initial: u32,
}

#[derive(Debug)]
struct Health {
    /// What the health checks (and deregistration) made of the target, before the
    /// override: `checked_state` in [`TargetInfo`].
    state: TargetState,
    /// Consecutive passed checks.
    passes: u32,
    /// Consecutive failed checks.
    failures: u32,
    /// What the last check saw, in words.
    last_result: String,
    /// The manual verdict, if any.
    over: HealthOverride,
    /// When the deregistration delay ends; set once, by the call that started draining.
    drain_ends: Option<Instant>,
}

impl Health {
    /// The state routing goes by: the override wins over the checks while the target is
    /// registered; draining and unused are past what an override can change.
    fn effective(&self) -> TargetState {
        match (self.state, self.over) {
            (TargetState::Draining | TargetState::Unused, _) => self.state,
            (_, HealthOverride::Healthy) => TargetState::Healthy,
            (_, HealthOverride::Unhealthy) => TargetState::Unhealthy,
            (state, HealthOverride::Auto) => state,
        }
    }
}

/// One registered target.
#[derive(Debug)]
pub(crate) struct Target {
    /// Stable id for the control API.
    pub id: u64,
    /// Where it listens.
    pub addr: SocketAddr,
    health: Mutex<Health>,
    /// [`Route`] bits derived from `health`, republished on every change under its lock,
    /// so that picking a target (every request, both workers) reads one atomic instead
    /// of taking the lock three times.
    route: AtomicU8,
    /// Requests being served by it now.
    in_flight: AtomicUsize,
    /// Becomes true when its deregistration delay ends with requests still running.
    drain_over: watch::Sender<bool>,
    /// Where its state changes are announced.
    events: Events,
}

/// A snapshot of one target for the control API, the library and scenario checks.
#[derive(Clone, Debug, Serialize)]
pub struct TargetInfo {
    /// Control API id.
    pub id: u64,
    /// host:port.
    pub address: String,
    /// The effective state, the one routing goes by: an `unhealthy` override makes it
    /// `unhealthy` whatever the checks say, a `healthy` one `healthy`.
    pub state: TargetState,
    /// What the health checks alone say (`draining`/`unused` once deregistered); differs
    /// from `state` only while an override is set.
    pub checked_state: TargetState,
    /// What the last health check saw.
    pub reason: String,
    /// Manual override (`auto`: the checks decide).
    #[serde(rename = "override")]
    pub over: HealthOverride,
    /// Requests in flight.
    pub in_flight: usize,
    /// While draining: milliseconds until the deregistration delay ends and the target
    /// leaves the group (absent otherwise, and from the JSON).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain_remaining_ms: Option<u64>,
}

/// [`Target::route`] bit: registered (not draining or unused).
const REGISTERED: u8 = 1;
/// [`Target::route`] bit: gets new requests now.
const ROUTABLE: u8 = 2;

/// Derived from the effective state, so that what the API reports and what routing does
/// cannot disagree.
fn route_bits(h: &Health) -> u8 {
    let effective = h.effective();
    let registered = !matches!(effective, TargetState::Draining | TargetState::Unused);
    let routable = matches!(effective, TargetState::Healthy | TargetState::Unavailable);
    (if registered { REGISTERED } else { 0 }) | (if routable { ROUTABLE } else { 0 })
}

impl Target {
    /// The effective state now (the override applied), as routing sees it.
    pub(crate) fn state(&self) -> TargetState {
        self.lock().effective()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn routable(&self) -> bool {
        self.route.load(Ordering::Relaxed) & ROUTABLE != 0
    }

    fn registered(&self) -> bool {
        self.route.load(Ordering::Relaxed) & REGISTERED != 0
    }

    /// Recomputes the route bits; called with the health lock held after each change.
    fn publish(&self, h: &Health) {
        self.route.store(route_bits(h), Ordering::Relaxed);
    }

    /// Announces a state change (`from` the effective state before it) on the event
    /// stream; called with the health lock held, after [`Target::publish`].
    fn announce(&self, h: &Health, from: TargetState, by: StateChange) {
        self.events.emit(|| EventKind::TargetStateChanged {
            id: self.id,
            address: self.addr,
            from,
            to: h.effective(),
            checked_state: h.state,
            by,
            reason: h.last_result.clone(),
        });
    }

    /// Applies one health-check result and logs a state change.
    pub(crate) fn record_check(&self, passed: bool, what: String, t: Thresholds) {
        let mut h = self.lock();
        let before = h.state;
        let was = h.effective();
        if passed {
            h.passes += 1;
            h.failures = 0;
        } else {
            h.failures += 1;
            h.passes = 0;
        }
        h.state = match (h.state, passed) {
            (TargetState::Initial, true) if h.passes >= t.initial => TargetState::Healthy,
            (TargetState::Unhealthy, true) if h.passes >= t.healthy => TargetState::Healthy,
            (TargetState::Initial | TargetState::Healthy, false) if h.failures >= t.unhealthy => {
                TargetState::Unhealthy
            }
            (state, _) => state,
        };
        h.last_result = what;
        self.publish(&h);
        if h.state != before {
            tracing::info!(target_addr = %self.addr, "target {} {:?} -> {:?} ({})", self.addr, before, h.state, h.last_result);
            self.announce(&h, was, StateChange::HealthCheck);
        }
    }

    /// Sets or clears the manual override.
    pub(crate) fn set_override(&self, over: HealthOverride) {
        let mut h = self.lock();
        let was = h.effective();
        h.over = over;
        self.publish(&h);
        tracing::info!("target {} health override: {over:?}", self.addr);
        if h.effective() != was {
            self.announce(&h, was, StateChange::Override);
        }
    }

    /// Counts a request as running on this target until the guard drops (which holds
    /// the target: no second reference count taken per request).
    pub(crate) fn start_request(self: Arc<Self>) -> InFlightOnTarget {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlightOnTarget(self)
    }

    /// Resolves when the deregistration delay has ended (never, while registered).
    pub(crate) fn drain_over(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.drain_over.subscribe();
        async move {
            if rx.wait_for(|over| *over).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// A snapshot for the control API.
    pub(crate) fn info(&self) -> TargetInfo {
        let h = self.lock();
        let drain_remaining_ms = match (h.state, h.drain_ends) {
            (TargetState::Draining, Some(ends)) => {
                Some(ends.saturating_duration_since(Instant::now()).as_millis() as u64)
            }
            _ => None,
        };
        TargetInfo {
            id: self.id,
            address: self.addr.to_string(),
            state: h.effective(),
            checked_state: h.state,
            reason: h.last_result.clone(),
            over: h.over,
            in_flight: self.in_flight.load(Ordering::Relaxed),
            drain_remaining_ms,
        }
    }
}

/// What [`TargetGroup::deregister`] did, so that a caller can tell a new deregistration
/// from a repeated one (the control API answers them differently).
#[derive(Debug)]
pub(crate) enum Deregistration {
    /// This call started the drain.
    Started(Arc<Target>),
    /// The target was already draining (or its drain had just ended); nothing changed.
    AlreadyDeregistered(Arc<Target>),
}

/// Marks a request as finished on its target when dropped.
#[derive(Debug)]
pub(crate) struct InFlightOnTarget(Arc<Target>);

impl Drop for InFlightOnTarget {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How the group routes when no target is healthy, and how new targets start.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RoutingRules {
    /// AWS: with no healthy target, route to every registered one.
    pub fails_open: bool,
    /// False when health checks are off: targets start `unavailable` and get traffic.
    pub health_checks: bool,
    /// No target counts as healthy until this long after start (GCP start-up window).
    pub warmup: Duration,
    /// How long a deregistered target drains.
    pub deregistration_delay: Duration,
}

/// The group's members, split by whether they can take new requests, so that picking
/// scans only the registered ones whatever the group's history.
#[derive(Debug, Default)]
struct Members {
    /// Registered targets (not draining), in registration order: the only ones `pick`
    /// scans, so its cost follows the live group, not how many targets came and went.
    registered: Vec<Arc<Target>>,
    /// Deregistered targets still draining: listed, never picked. Each leaves the group
    /// when its deregistration delay ends, so the group does not grow with churn.
    draining: Vec<Arc<Target>>,
}

/// Registered targets, chosen round-robin among the routable ones.
#[derive(Debug)]
pub(crate) struct TargetGroup {
    /// Shared with the task that removes a target when its drain ends (it holds a weak
    /// reference, so a stopped simulator's group is not kept alive by pending drains).
    members: Arc<RwLock<Members>>,
    /// Round-robin turn, shared by every worker.
    next: AtomicUsize,
    /// The next target id; ids are never reused, so one id always means one target.
    next_id: AtomicU64,
    /// How this cloud routes, and the deregistration delay.
    rules: RoutingRules,
    /// Start of the group, for the warm-up window.
    started: Instant,
    /// Where targets announce joining the group and their state changes.
    events: Events,
    /// Whether the last pick failed open, so the switch is logged once, not per request.
    failing_open: AtomicBool,
}

impl TargetGroup {
    /// An empty group, announcing its changes on `events`.
    pub(crate) fn new(rules: RoutingRules, events: Events) -> Self {
        TargetGroup {
            members: Arc::new(RwLock::new(Members::default())),
            next: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            rules,
            started: Instant::now(),
            failing_open: AtomicBool::new(false),
            events,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Members> {
        self.members.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Members> {
        write_members(&self.members)
    }

    /// Registers `addr`; it starts `initial` (or `unavailable` with health checks off).
    pub(crate) fn register(&self, addr: SocketAddr) -> Arc<Target> {
        let state = if self.rules.health_checks {
            TargetState::Initial
        } else {
            TargetState::Unavailable
        };
        let health = Health {
            state,
            passes: 0,
            failures: 0,
            last_result: "not checked yet".to_string(),
            over: HealthOverride::Auto,
            drain_ends: None,
        };
        let target = Arc::new(Target {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            addr,
            route: AtomicU8::new(route_bits(&health)),
            health: Mutex::new(health),
            in_flight: AtomicUsize::new(0),
            drain_over: watch::channel(false).0,
            events: self.events.clone(),
        });
        self.write().registered.push(target.clone());
        tracing::info!("registered target {addr} (id {}, {state:?})", target.id);
        self.events.emit(|| EventKind::TargetRegistered {
            id: target.id,
            address: addr,
            state,
        });
        target
    }

    /// Starts draining target `id`; after the deregistration delay it becomes `unused`,
    /// requests still running on it fail, and it leaves the group. `None` for an id that
    /// is not in the group (never registered, or already gone); a target already
    /// draining is left as it is (its delay is not restarted) and says so.
    pub(crate) fn deregister(&self, id: u64) -> Option<Deregistration> {
        let target = self.get(id)?;
        let delay = self.rules.deregistration_delay;
        {
            let mut h = target.lock();
            if matches!(h.state, TargetState::Draining | TargetState::Unused) {
                return Some(Deregistration::AlreadyDeregistered(target.clone()));
            }
            let was = h.effective();
            h.state = TargetState::Draining;
            h.drain_ends = Some(Instant::now() + delay);
            target.publish(&h);
            target.announce(&h, was, StateChange::Deregistration);
        }
        // Only the caller that made it draining gets here: it moves the target once.
        {
            let mut members = self.write();
            if let Some(i) = members
                .registered
                .iter()
                .position(|t| Arc::ptr_eq(t, &target))
            {
                // `remove`, not `swap_remove`: the others keep their round-robin order.
                let moved = members.registered.remove(i);
                members.draining.push(moved);
            }
        }
        tracing::info!("target {} draining for {delay:?}", target.addr);
        let draining = target.clone();
        let members = Arc::downgrade(&self.members);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let was = {
                let mut h = draining.lock();
                let was = h.effective();
                h.state = TargetState::Unused;
                draining.publish(&h);
                was
            };
            // Leaves the group: one removal per deregistration, nothing per request.
            // Before the cut, so that whoever sees a request cut sees the target gone;
            // requests still holding the target keep it alive until they end.
            if let Some(members) = members.upgrade() {
                let mut members = write_members(&members);
                if let Some(i) = members
                    .draining
                    .iter()
                    .position(|t| Arc::ptr_eq(t, &draining))
                {
                    members.draining.swap_remove(i);
                }
            }
            // Announced once it has left, so that a listener sees it gone from the list.
            draining.announce(&draining.lock(), was, StateChange::DrainEnded);
            let running = draining.in_flight.load(Ordering::Relaxed);
            tracing::info!(
                "target {} deregistered ({running} requests cut); it left the target group",
                draining.addr
            );
            let _ = draining.drain_over.send(true);
        });
        Some(Deregistration::Started(target))
    }

    /// Target `id`, while it is in the group (registered or draining).
    pub(crate) fn get(&self, id: u64) -> Option<Arc<Target>> {
        let members = self.read();
        members
            .registered
            .iter()
            .chain(&members.draining)
            .find(|t| t.id == id)
            .cloned()
    }

    /// Whether id `id` was ever given to a target (it may have left the group since).
    pub(crate) fn was_issued(&self, id: u64) -> bool {
        id >= 1 && id < self.next_id.load(Ordering::Relaxed)
    }

    /// Every target in the group (registered or draining), in registration order.
    /// Targets whose deregistration has ended are not in it.
    pub(crate) fn all(&self) -> Vec<Arc<Target>> {
        let members = self.read();
        let mut all: Vec<Arc<Target>> = members
            .registered
            .iter()
            .chain(&members.draining)
            .cloned()
            .collect();
        drop(members);
        all.sort_by_key(|t| t.id);
        all
    }

    /// The target for the next request, or why there is none. Allocation-free: it runs
    /// on every request, and scans only registered targets (never drained ones).
    pub(crate) fn pick(&self) -> Result<Arc<Target>, Reason> {
        let members = self.read();
        let targets = &members.registered;
        // A target being deregistered is draining before it moves out of `registered`:
        // the bit, not the list, says whether it may be picked.
        let registered = targets.iter().filter(|t| t.registered()).count();
        if registered == 0 {
            return Err(Reason::NoRegisteredTargets);
        }
        let warming = self.started.elapsed() < self.rules.warmup;
        let healthy = if warming {
            0
        } else {
            targets.iter().filter(|t| t.routable()).count()
        };
        let fail_open = healthy == 0 && self.rules.fails_open;
        // Load first: a swap on every request would bounce the line between the workers.
        if self.failing_open.load(Ordering::Relaxed) != fail_open
            && self.failing_open.swap(fail_open, Ordering::Relaxed) != fail_open
        {
            if fail_open {
                tracing::warn!(
                    "no healthy target: failing open, routing to all {registered} registered targets"
                );
            } else {
                tracing::info!("a target is healthy again: no longer failing open");
            }
        }
        let candidates = if healthy > 0 { healthy } else { registered };
        // One candidate needs no turn (and no write to a counter both workers share).
        let turn = if candidates > 1 {
            self.next.fetch_add(1, Ordering::Relaxed)
        } else {
            0
        };
        let chosen = if healthy > 0 {
            targets.iter().filter(|t| t.routable()).nth(turn % healthy)
        } else if fail_open {
            targets
                .iter()
                .filter(|t| t.registered())
                .nth(turn % registered)
        } else {
            return Err(Reason::NoHealthyTargets);
        };
        // A state can change between the count and the walk; then try the first one.
        chosen
            .or_else(|| targets.iter().find(|t| t.registered()))
            .cloned()
            .ok_or(Reason::NoRegisteredTargets)
    }
}

/// Write access to the members, tolerating a poisoned lock (the data is a list of
/// `Arc`s: a panic elsewhere cannot leave it half-changed).
fn write_members(members: &RwLock<Members>) -> std::sync::RwLockWriteGuard<'_, Members> {
    members.write().unwrap_or_else(|e| e.into_inner())
}
