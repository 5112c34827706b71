//! The timeline: the log every part of a run writes its events to, and the sampler that
//! turns the targets' and the load balancer's counters into events as they change. Apart
//! from the runner because the client logs and samples too.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::report::{Actor, Event};
use crate::lb::profile::Profile;
use crate::lb::stats::Counts;
use crate::lb::targets::TargetState;
use crate::mock::MockStats;
use crate::sim::Control;

/// How often the timeline samples the targets' and the load balancer's counters.
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
        let event = Event {
            at: self.t0.elapsed(),
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
        events.sort_by_key(|e| e.at);
        events
    }
}

/// Turns the targets' counters, target states and the LB's counters into timeline events.
///
/// A background task samples every [`POLL`]; each client also samples right before it logs
/// a response, so what the app and the LB did for a request is logged before its answer.
pub(super) struct Sampler {
    control: Control,
    mocks: Vec<(String, Arc<MockStats>)>,
    names: Names,
    log: Log,
    seen: Mutex<Seen>,
}

struct Seen {
    counts: Counts,
    mocks: Vec<[u64; 3]>,
    states: HashMap<u64, TargetState>,
}

impl Sampler {
    pub(super) fn new(
        control: Control,
        mocks: Vec<(String, Arc<MockStats>)>,
        names: Names,
        log: Log,
    ) -> Self {
        // Targets start `initial` (or `unavailable` without checks): a change made before the
        // first sample is still logged.
        let first = if control.config().health.enabled {
            TargetState::Initial
        } else {
            TargetState::Unavailable
        };
        let states = control.targets().iter().map(|t| (t.id, first)).collect();
        let seen = Seen {
            counts: Counts::default(),
            mocks: vec![[0; 3]; mocks.len()],
            states,
        };
        Sampler {
            control,
            mocks,
            names,
            log,
            seen: Mutex::new(seen),
        }
    }

    pub(super) fn sample(&self) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let log = &self.log;
        for ((name, stats), seen) in self.mocks.iter().zip(seen.mocks.iter_mut()) {
            let now = [
                stats.connections.load(Ordering::Relaxed),
                stats.requests.load(Ordering::Relaxed),
                stats.idle_closes.load(Ordering::Relaxed),
            ];
            let says: [fn(u64) -> String; 3] = [
                |n| format!("accepts a connection ({n} so far)"),
                |n| format!("receives a request ({n} so far)"),
                |_| "closes an idle keep-alive connection (FIN, no response)".to_string(),
            ];
            for ((seen, now), say) in seen.iter_mut().zip(now).zip(says) {
                while *seen < now {
                    *seen += 1;
                    log.push(Actor::Target, name, say(*seen));
                }
            }
        }
        let name_of = |id: u64| {
            self.names
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&id)
                .cloned()
                .unwrap_or_else(|| format!("target {id}"))
        };
        let members = self.control.targets();
        for info in &members {
            let before = seen.states.insert(info.id, info.state);
            if before != Some(info.state) {
                let name = name_of(info.id);
                let from = before.map_or("new", TargetState::as_str);
                let mut what = format!("target {name}: {from} → {}", info.state.as_str());
                if self.control.config().health.enabled {
                    let _ = write!(what, " (last health check: {})", info.reason);
                }
                log.push(Actor::Lb, "lb", what);
            }
        }
        // A target whose deregistration ended has left the group: it is `unused` now.
        // Sorted by id: several leaving in one sample are logged in a stable order.
        let mut left: Vec<(u64, TargetState)> = seen
            .states
            .iter()
            .filter(|(id, s)| **s != TargetState::Unused && !members.iter().any(|t| t.id == **id))
            .map(|(id, s)| (*id, *s))
            .collect();
        left.sort_by_key(|(id, _)| *id);
        for (id, from) in left {
            seen.states.insert(id, TargetState::Unused);
            let (name, from) = (name_of(id), from.as_str());
            let what = format!("target {name}: {from} → unused (it leaves the target group)");
            log.push(Actor::Lb, "lb", what);
        }
        let now = self.control.stats();
        for line in diff_counts(&seen.counts, &now, self.control.config().profile) {
            log.push(Actor::Lb, "lb", line);
        }
        seen.counts = now;
    }
}

/// Samples until `stop` turns true, then once more.
pub(super) async fn monitor(sampler: Arc<Sampler>, mut stop: watch::Receiver<bool>) {
    loop {
        let stopping = *stop.borrow();
        sampler.sample();
        if stopping {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.changed() => {}
        }
    }
}

/// What the LB's counters say happened between two snapshots.
fn diff_counts(before: &Counts, now: &Counts, profile: &Profile) -> Vec<String> {
    let mut statuses: BTreeMap<u16, u64> = now
        .by_status
        .iter()
        .map(|(s, n)| {
            (
                *s,
                n - before.by_status.get(s).copied().unwrap_or(0).min(*n),
            )
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    let mut lines = Vec::new();
    for (reason, n) in &now.by_cause {
        let delta = n - before.count(*reason).min(*n);
        if delta == 0 {
            continue;
        }
        let outcome = profile.outcome(*reason);
        let (status, code) = (outcome.status, outcome.code);
        let paged = statuses.get_mut(&status).map_or(0, |left| {
            let k = (*left).min(delta);
            *left -= k;
            k
        });
        for _ in 0..paged {
            lines.push(format!("answers {status} itself: {code}"));
        }
        for _ in paged..delta {
            lines.push(format!(
                "cuts the response mid-body: {code} (no status can be sent any more)"
            ));
        }
    }
    for (status, n) in statuses {
        for _ in 0..n {
            lines.push(format!("passes the app's {status} through"));
        }
    }
    lines
}
