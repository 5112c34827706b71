//! The timeline: the log every part of a run writes its events to, and the sampler that
//! turns the load balancer's event stream and the mock targets' counters into lines. Apart
//! from the runner because the client logs and samples too.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast::{self, error::TryRecvError};
use tokio::sync::watch;
use tokio::time::Instant;

use super::report::{Actor, Event};
use crate::lb::events::{Event as LbEvent, EventKind, StateChange};
use crate::mock::MockStats;

/// How often the timeline samples the mock targets' counters (the load balancer's lines
/// come from its events, each stamped when it happened).
pub(super) const POLL: Duration = Duration::from_millis(2);

pub(super) type Names = Arc<Mutex<HashMap<u64, String>>>;

#[derive(Clone)]
pub(super) struct Log {
    pub(super) t0: Instant,
    events: Arc<Mutex<Vec<Event>>>,
}

impl Log {
    pub(super) fn new() -> Log {
        Log {
            t0: Instant::now(),
            events: Arc::new(Mutex::new(Vec::new())),
        }
    }
    pub(super) fn push(&self, actor: Actor, who: impl Into<String>, what: impl Into<String>) {
        self.push_at(self.t0.elapsed(), actor, who, what);
    }
    /// Logs something that happened `at` (since `t0`), earlier than now.
    pub(super) fn push_at(
        &self,
        at: Duration,
        actor: Actor,
        who: impl Into<String>,
        what: impl Into<String>,
    ) {
        let event = Event {
            at,
            actor,
            who: who.into(),
            what: what.into(),
        };
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event);
    }
    pub(super) fn take(&self) -> Vec<Event> {
        let mut events =
            std::mem::take(&mut *self.events.lock().unwrap_or_else(|e| e.into_inner()));
        // Stable: lines with one time stay in the order they were pushed.
        events.sort_by_key(|e| e.at);
        events
    }
}

/// What the sampler needs to know about the run to word the load balancer's lines.
pub(super) struct Run {
    /// Health checks on: state changes say what the last check saw.
    pub(super) health_checks: bool,
    /// The scenario's time scale (cloud durations = real ones / scale).
    pub(super) scale: f64,
    /// Where the engine's clock starts on the log's (`Control::started_at` - `Log::t0`).
    pub(super) epoch: Duration,
    /// Target names by control API id.
    pub(super) names: Names,
    /// Target names by address, for an event that comes before its id is named (a
    /// registration announces itself before `register` returns the id).
    pub(super) addrs: HashMap<SocketAddr, String>,
    /// The targets the run starts with: their registration needs no line.
    pub(super) registered_at_start: HashSet<u64>,
}

/// Turns the load balancer's events and the mock targets' counters into timeline lines.
///
/// The load balancer's lines come from a subscription to its event stream, each stamped
/// with the event's own time. The mocks only count, so their lines are sampled: a task
/// samples on every event that makes a line and every [`POLL`], and each client samples
/// right before it logs a request and a response, so whatever the app and the LB did for
/// a request is logged before its answer (a sample takes every event sent so far).
pub(super) struct Sampler {
    mocks: Vec<(String, Arc<MockStats>)>,
    run: Run,
    log: Log,
    seen: Mutex<Seen>,
}

struct Seen {
    events: broadcast::Receiver<LbEvent>,
    mocks: Vec<[u64; 3]>,
    /// When the mocks' counters were last read (since `t0`).
    sampled: Duration,
    /// The time of the last event received, where a gap in the stream is logged.
    last_event: Duration,
}

impl Sampler {
    /// A sampler reading `events`, a subscription taken before the run's first request.
    pub(super) fn new(
        events: broadcast::Receiver<LbEvent>,
        mocks: Vec<(String, Arc<MockStats>)>,
        run: Run,
        log: Log,
    ) -> Self {
        let seen = Seen {
            events,
            mocks: vec![[0; 3]; mocks.len()],
            sampled: Duration::ZERO,
            last_event: run.epoch,
        };
        Sampler {
            mocks,
            run,
            log,
            seen: Mutex::new(seen),
        }
    }

    /// Logs what the mocks' counters and the load balancer's events say happened since
    /// the last call.
    pub(super) fn sample(&self) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let seen = &mut *seen;
        // The counters first, then every event sent so far: whatever the app did that
        // made the LB act (answering, health checks) was counted by now.
        let now = self.log.t0.elapsed();
        let mut app_lines = Vec::new();
        for ((name, stats), seen) in self.mocks.iter().zip(seen.mocks.iter_mut()) {
            let counts = [
                stats.connections.load(Ordering::Relaxed),
                stats.requests.load(Ordering::Relaxed),
                stats.idle_closes.load(Ordering::Relaxed),
            ];
            let says: [fn(u64) -> String; 3] = [
                |n| format!("accepts a connection ({n} so far)"),
                |n| format!("receives a request ({n} so far)"),
                |_| "closes an idle keep-alive connection (FIN, no response)".to_string(),
            ];
            for ((seen, count), say) in seen.iter_mut().zip(counts).zip(says) {
                while *seen < count {
                    *seen += 1;
                    app_lines.push((name, say(*seen)));
                }
            }
        }
        let mut lb_lines = Vec::new();
        loop {
            match seen.events.try_recv() {
                Ok(event) => {
                    let at = self.run.epoch + Duration::from_micros(event.at_us);
                    seen.last_event = at;
                    if let Some(what) = self.describe(&event.kind) {
                        lb_lines.push((at, Actor::Lb, "lb", what));
                    }
                }
                Err(TryRecvError::Lagged(n)) => lb_lines.push((
                    seen.last_event,
                    Actor::Runner,
                    "runner",
                    format!(
                        "misses {n} load balancer events (the timeline fell behind): \
                         their lines are missing here"
                    ),
                )),
                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
            }
        }
        // The counters changed after the last sample and before this one; the app's
        // lines go there, before the first of the LB's lines in between (what the app
        // does, an answer or a health check, comes before what the LB makes of it).
        let app_at = lb_lines
            .iter()
            .map(|(at, ..)| *at)
            .min()
            .map_or(now, |first| first.clamp(seen.sampled, now));
        for (name, what) in app_lines {
            self.log.push_at(app_at, Actor::Target, name, what);
        }
        for (at, actor, who, what) in lb_lines {
            self.log.push_at(at, actor, who, what);
        }
        seen.sampled = now;
    }

    /// The timeline line for an event; `None` for the steps of a request that its answer
    /// sums up (received, forwarded, a connection opened or reused).
    fn describe(&self, kind: &EventKind) -> Option<String> {
        let line = match kind {
            EventKind::AppAnswered { status, .. } => {
                format!("passes the app's {status} through")
            }
            EventKind::LbAnswered { status, code, .. } => {
                format!("answers {status} itself: {code}")
            }
            EventKind::ResponseCut { code, .. } => {
                format!("cuts the response mid-body: {code} (no status can be sent any more)")
            }
            EventKind::TargetRegistered { id, .. } if self.run.registered_at_start.contains(id) => {
                return None
            }
            EventKind::TargetRegistered { id, address, state } => {
                let name = self.name(*id, *address);
                format!("target {name}: new → {}", state.as_str())
            }
            EventKind::TargetStateChanged {
                id,
                address,
                from,
                to,
                by,
                reason,
                ..
            } => {
                let name = self.name(*id, *address);
                let (from, to) = (from.as_str(), to.as_str());
                let mut what = format!("target {name}: {from} → {to}");
                if *by == StateChange::DrainEnded {
                    what.push_str(" (it leaves the target group)");
                } else if self.run.health_checks {
                    let _ = write!(what, " (last health check: {reason})");
                }
                what
            }
            EventKind::ConnectionFoundClosed {
                target,
                idle_us,
                closed_us,
                ..
            } => {
                let name = self.name_at(*target);
                let idle = self.idle(Duration::from_micros(*idle_us));
                match closed_us {
                    // `idle_us` is how long it idled before the app closed it.
                    Some(_) => format!(
                        "reuses a pooled connection that {name} closed after {idle}: \
                         the keep-alive race"
                    ),
                    // Only seen as the request went out: `idle_us` runs until then.
                    None => format!(
                        "reuses a pooled connection ({idle}) that {name} had closed: \
                         the keep-alive race"
                    ),
                }
            }
            EventKind::RequestReceived { .. }
            | EventKind::Forwarded { .. }
            | EventKind::ConnectionOpened { .. }
            | EventKind::ConnectionReused { .. } => return None,
        };
        Some(line)
    }

    /// Target `id`'s scenario name (by its address until the runner has named the id).
    fn name(&self, id: u64, address: SocketAddr) -> String {
        let by_id = self
            .run
            .names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned();
        by_id
            .or_else(|| self.run.addrs.get(&address).cloned())
            .unwrap_or_else(|| format!("target {id}"))
    }

    /// The scenario name of the target at `address`.
    fn name_at(&self, address: SocketAddr) -> String {
        self.run
            .addrs
            .get(&address)
            .cloned()
            .unwrap_or_else(|| address.to_string())
    }

    /// `5 s idle`, and `(50 ms real)` when scaled: a real idle time as the cloud time it
    /// stands for.
    fn idle(&self, real: Duration) -> String {
        let scale = self.run.scale;
        if scale == 1.0 {
            format!("{} idle", crate::human::duration(real))
        } else {
            format!(
                "{} idle ({} real)",
                crate::human::duration(real.div_f64(scale)),
                crate::human::duration(real)
            )
        }
    }
}

/// A step of a request that its answer sums up: no line of its own.
fn is_step(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::RequestReceived { .. }
            | EventKind::Forwarded { .. }
            | EventKind::ConnectionOpened { .. }
            | EventKind::ConnectionReused { .. }
    )
}

/// Samples on every load balancer event that makes a line (`wake`, a second subscription
/// that only rings the bell: the sampler's own receives the events) and every [`POLL`],
/// until `stop` turns true, then once more.
pub(super) async fn monitor(
    sampler: Arc<Sampler>,
    mut wake: broadcast::Receiver<LbEvent>,
    mut stop: watch::Receiver<bool>,
) {
    let mut ringing = true;
    loop {
        let stopping = *stop.borrow();
        // One sample answers every ring so far.
        while let Ok(_) | Err(TryRecvError::Lagged(_)) = wake.try_recv() {}
        sampler.sample();
        if stopping {
            return;
        }
        let tick = Instant::now() + POLL;
        loop {
            tokio::select! {
                rung = wake.recv(), if ringing => match rung {
                    // The steps of a request wait for its answer (or the next POLL).
                    Ok(event) if is_step(&event.kind) => continue,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    // The engine is gone: no more events, the counters are still read.
                    Err(broadcast::error::RecvError::Closed) => ringing = false,
                },
                _ = tokio::time::sleep_until(tick) => {}
                _ = stop.changed() => {}
            }
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::reason::Reason;
    use crate::lb::targets::TargetState;

    const APP: SocketAddr = SocketAddr::new(
        std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1)),
        8001,
    );

    fn sampler(events: broadcast::Receiver<LbEvent>, health_checks: bool) -> (Sampler, Log) {
        let log = Log::new();
        let run = Run {
            health_checks,
            scale: 0.01,
            epoch: Duration::from_millis(1),
            names: Arc::new(Mutex::new(HashMap::from([(1, "app".to_string())]))),
            addrs: HashMap::from([(APP, "app".to_string())]),
            registered_at_start: HashSet::from([1]),
        };
        (Sampler::new(events, Vec::new(), run, log.clone()), log)
    }

    fn lines(log: &Log) -> Vec<(Duration, String, String)> {
        log.take()
            .into_iter()
            .map(|e| (e.at, e.who, e.what))
            .collect()
    }

    #[test]
    fn events_become_lines_stamped_with_their_own_time() {
        let (tx, rx) = broadcast::channel(16);
        let (sampler, log) = sampler(rx, true);
        let send = |at_us, kind| {
            tx.send(LbEvent { at_us, kind }).unwrap();
        };
        // Later first: the log orders by the events' times, not by arrival.
        send(
            3000,
            EventKind::TargetStateChanged {
                id: 1,
                address: APP,
                from: TargetState::Draining,
                to: TargetState::Unused,
                checked_state: TargetState::Unused,
                by: StateChange::DrainEnded,
                reason: "200".into(),
            },
        );
        send(
            2000,
            EventKind::LbAnswered {
                conn: Some(1),
                status: 504,
                cause: Reason::TargetTimeout,
                code: "target_idle_timeout",
                target: Some(APP),
                explanation: String::new(),
            },
        );
        send(
            1000,
            EventKind::TargetStateChanged {
                id: 1,
                address: APP,
                from: TargetState::Initial,
                to: TargetState::Healthy,
                checked_state: TargetState::Healthy,
                by: StateChange::HealthCheck,
                reason: "200".into(),
            },
        );
        send(
            1500,
            EventKind::Forwarded {
                conn: 1,
                target: APP,
                attempt: 1,
            },
        );
        sampler.sample();
        let ms = |n| Duration::from_millis(n);
        assert_eq!(
            lines(&log),
            vec![
                (
                    ms(2),
                    "lb".into(),
                    "target app: initial → healthy (last health check: 200)".into()
                ),
                (
                    ms(3),
                    "lb".into(),
                    "answers 504 itself: target_idle_timeout".into()
                ),
                (
                    ms(4),
                    "lb".into(),
                    "target app: draining → unused (it leaves the target group)".into()
                ),
            ]
        );
    }

    #[test]
    fn a_lagging_timeline_says_how_many_events_it_missed() {
        let (tx, rx) = broadcast::channel(2);
        let (sampler, log) = sampler(rx, false);
        for at_us in 1..=5 {
            let kind = EventKind::AppAnswered {
                conn: at_us,
                status: 200,
                target: APP,
            };
            tx.send(LbEvent { at_us, kind }).unwrap();
        }
        sampler.sample();
        let whats: Vec<String> = lines(&log).into_iter().map(|(_, _, what)| what).collect();
        assert_eq!(
            whats,
            [
                "misses 3 load balancer events (the timeline fell behind): their lines are \
                 missing here",
                "passes the app's 200 through",
                "passes the app's 200 through",
            ]
        );
    }
}
