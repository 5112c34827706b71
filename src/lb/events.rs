//! The engine's event stream: what happened to each request, pooled connection and
//! target, as typed [`Event`]s on a [`tokio::sync::broadcast`] channel, so the scenario
//! timeline, tests and the control API (`GET /events`) follow the engine as it works
//! instead of polling its counters.
//!
//! Listening is opt-in and costs nothing until someone subscribes: [`Events::emit`] takes
//! a closure and builds the event only while a receiver exists, so with nobody listening
//! the request path pays one atomic load per emission point (the channel itself is only
//! allocated by the first [`Events::subscribe`]).
//!
//! A subscriber that falls more than [`EVENT_CAPACITY`] events behind loses the oldest:
//! its next `recv` returns [`tokio::sync::broadcast::error::RecvError::Lagged`] with how
//! many it missed, then goes on from the oldest event still held. The engine never waits
//! for a subscriber.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Serialize, Serializer};
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::lb::reason::Reason;
use crate::lb::target_state::TargetState;

/// Events held for the slowest subscriber: a burst of 1,000 requests (about four events
/// each) fits before a subscriber that is busy elsewhere lags, and the memory (about
/// 0.5 MiB) is spent only once someone subscribes.
pub const EVENT_CAPACITY: usize = 4096;

/// One thing the engine did, with when it did it.
///
/// Serialized flat, `at_us` first, then the kind's tag and fields:
/// `{"at_us":1520,"event":"lb_answered","conn":3,"status":504,"cause":"target_timeout",
/// "code":"target_idle_timeout","target":"127.0.0.1:8001","explanation":"127.0.0.1:8001 sent
/// no response within ..."}`.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    /// Microseconds since the simulator started: comparable across events of one
    /// simulator, and increasing in the order they were emitted on one task.
    pub at_us: u64,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened. `conn` is the client connection (numbered from 1 per simulator, in
/// accept order): the events of one request share it, and HTTP/1.1 serves the requests
/// of a connection one after another. `id` in the `connection_*` events numbers lbsim's
/// own connections to targets; in the `target_*` events it is the target's control API id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// A request head was read from a client and is being handled (requests the LB
    /// rejects on their head alone never get here: they get an `lb_answered`).
    RequestReceived {
        /// The client connection.
        conn: u64,
        /// `GET`, `POST`, ...
        method: String,
        /// The request target's path and query, as sent.
        path: String,
    },
    /// The LB picked a target and sends the request to it.
    Forwarded {
        /// The client connection.
        conn: u64,
        /// The target picked.
        target: SocketAddr,
        /// 1 for the first send; more when the cloud sends the request again (GCP's GET
        /// retry, nginx's `proxy_next_upstream`).
        attempt: u32,
    },
    /// The app's response head arrived and goes on to the client.
    AppAnswered {
        /// The client connection.
        conn: u64,
        /// The app's status.
        status: u16,
        /// The target that answered.
        target: SocketAddr,
    },
    /// The LB answered (or, for a status only logged such as 460, ended) the request
    /// itself: the cloud's error page.
    LbAnswered {
        /// The client connection, when the request got as far as a handler (absent for
        /// heads rejected on arrival and client timeouts).
        #[serde(skip_serializing_if = "Option::is_none")]
        conn: Option<u64>,
        /// Status sent (or logged).
        status: u16,
        /// Why, cloud-neutral ([`Reason::name`]).
        #[serde(serialize_with = "reason_name")]
        cause: Reason,
        /// The cloud's word for it (the profile's, as in `x-lbsim-reason` and `/stats`).
        code: &'static str,
        /// The target involved, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        target: Option<SocketAddr>,
        /// What a person is told ([`crate::advice::explain`], the `--explain` sentence):
        /// what happened, which setting, and the fix, so that a listener (the live view)
        /// can show it without knowing the profile. Built only when someone listens.
        explanation: String,
    },
    /// A response (or WebSocket relay) was cut after its head had gone out: no status
    /// could be sent.
    ResponseCut {
        /// The client connection, where known.
        #[serde(skip_serializing_if = "Option::is_none")]
        conn: Option<u64>,
        /// Why ([`Reason::name`]).
        #[serde(serialize_with = "reason_name")]
        cause: Reason,
        /// The cloud's word for it.
        code: &'static str,
        /// The target whose response was cut.
        #[serde(skip_serializing_if = "Option::is_none")]
        target: Option<SocketAddr>,
        /// What a person is told about the cut (the `--explain` sentence, with the fix).
        explanation: String,
    },
    /// A target joined the group.
    TargetRegistered {
        /// Control API id.
        id: u64,
        /// host:port.
        address: SocketAddr,
        /// `initial`, or `unavailable` with health checks off.
        state: TargetState,
    },
    /// A target's state changed: by health checks, a manual override, the start of its
    /// deregistration, or the end of its delay (`to: unused`, it left the group).
    TargetStateChanged {
        /// Control API id.
        id: u64,
        /// host:port.
        address: SocketAddr,
        /// The effective state before (the one routing goes by).
        from: TargetState,
        /// The effective state now.
        to: TargetState,
        /// What the health checks alone say now (differs from `to` under an override).
        checked_state: TargetState,
        /// What moved it.
        by: StateChange,
        /// What the last health check saw.
        reason: String,
    },
    /// lbsim opened a new connection to a target.
    ConnectionOpened {
        /// Pool-wide connection number.
        id: u64,
        /// The target.
        target: SocketAddr,
    },
    /// A request goes out on a pooled keep-alive connection.
    ConnectionReused {
        /// Pool-wide connection number.
        id: u64,
        /// The target.
        target: SocketAddr,
        /// How long it had sat idle in the pool, in microseconds.
        idle_us: u64,
    },
    /// The keep-alive race: the LB picked a pooled connection the app had already
    /// closed (the request that picked it fails).
    ConnectionFoundClosed {
        /// Pool-wide connection number.
        id: u64,
        /// The target.
        target: SocketAddr,
        /// How long it had been idle when the app closed it (the app's keep-alive), in
        /// microseconds.
        idle_us: u64,
        /// How long before the reuse the app had closed it, in microseconds, when known
        /// (absent when the close was only seen as the request went out).
        #[serde(skip_serializing_if = "Option::is_none")]
        closed_us: Option<u64>,
    },
}

/// What moved a target between states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StateChange {
    /// A health-check result crossed a threshold.
    HealthCheck,
    /// A manual override was set or cleared (control API).
    Override,
    /// Deregistration started: the target drains.
    Deregistration,
    /// The deregistration delay ended: the target left the group.
    DrainEnded,
}

fn reason_name<S: Serializer>(reason: &Reason, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(reason.name())
}

/// The sending side, owned by the engine; the pool and the target group hold clones.
/// Cheap to clone (one reference count).
#[derive(Clone, Debug)]
pub struct Events(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    /// Created by the first subscription.
    tx: OnceLock<broadcast::Sender<Event>>,
    /// True while there may be a receiver: the one thing `emit` reads when nobody
    /// listens (`Sender::receiver_count` takes the channel's lock).
    listening: AtomicBool,
    /// Orders subscribing against clearing `listening`, so that a subscription made
    /// while the last receiver goes away is never missed.
    gate: Mutex<()>,
    /// The simulator's start, for `at_us`.
    started: Instant,
}

impl Default for Events {
    fn default() -> Self {
        Events::new()
    }
}

impl Events {
    /// A stream with no subscriber yet, its clock starting now.
    pub fn new() -> Events {
        Events(Arc::new(Shared {
            tx: OnceLock::new(),
            listening: AtomicBool::new(false),
            gate: Mutex::new(()),
            started: Instant::now(),
        }))
    }

    /// A receiver of every event emitted from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        let _gate = self.0.gate.lock().unwrap_or_else(|e| e.into_inner());
        let rx = self
            .0
            .tx
            .get_or_init(|| broadcast::channel(EVENT_CAPACITY).0)
            .subscribe();
        self.0.listening.store(true, Ordering::Release);
        rx
    }

    /// The instant [`Event::at_us`] counts from (when the stream, and so the simulator,
    /// was created).
    pub fn started(&self) -> Instant {
        self.0.started
    }

    /// Sends the event `build` makes, stamped now, if anyone listens; with nobody
    /// listening `build` is not called.
    #[inline]
    pub fn emit(&self, build: impl FnOnce() -> EventKind) {
        if self.0.listening.load(Ordering::Acquire) {
            self.emit_listening(build);
        }
    }

    #[cold]
    #[inline(never)]
    fn emit_listening(&self, build: impl FnOnce() -> EventKind) {
        let Some(tx) = self.0.tx.get() else {
            return;
        };
        if tx.receiver_count() == 0 {
            // The last receiver went away: back to one atomic load per emission, unless
            // a subscription came in meanwhile.
            let _gate = self.0.gate.lock().unwrap_or_else(|e| e.into_inner());
            if tx.receiver_count() == 0 {
                self.0.listening.store(false, Ordering::Release);
            }
            return;
        }
        let event = Event {
            at_us: self.0.started.elapsed().as_micros() as u64,
            kind: build(),
        };
        // A receiver dropped since the count: the event goes nowhere, as it should.
        let _ = tx.send(event);
    }
}

/// A duration in whole microseconds, for event fields.
pub(crate) fn micros(d: std::time::Duration) -> u64 {
    d.as_micros() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn opened(id: u64) -> EventKind {
        EventKind::ConnectionOpened {
            id,
            target: SocketAddr::from(([127, 0, 0, 1], 8001)),
        }
    }

    #[tokio::test]
    async fn nothing_is_built_without_a_subscriber() {
        let events = Events::new();
        let built = Cell::new(0);
        events.emit(|| {
            built.set(built.get() + 1);
            opened(1)
        });
        assert_eq!(built.get(), 0, "no subscriber ever: nothing built");

        let rx = events.subscribe();
        events.emit(|| {
            built.set(built.get() + 1);
            opened(2)
        });
        assert_eq!(built.get(), 1, "built for the subscriber");
        drop(rx);

        for id in 3..6 {
            events.emit(|| {
                built.set(built.get() + 1);
                opened(id)
            });
        }
        assert_eq!(built.get(), 1, "the subscriber left: nothing built again");
        assert!(!events.0.listening.load(Ordering::Relaxed));
    }

    #[tokio::test]
    async fn a_subscriber_gets_events_in_order_and_a_late_one_only_later_ones() {
        let events = Events::new();
        let mut first = events.subscribe();
        events.emit(|| opened(1));
        let mut second = events.subscribe();
        events.emit(|| opened(2));
        let a = first.recv().await.unwrap();
        let b = first.recv().await.unwrap();
        assert_eq!(a.kind, opened(1));
        assert_eq!(b.kind, opened(2));
        assert!(a.at_us <= b.at_us);
        assert_eq!(second.recv().await.unwrap().kind, opened(2));
    }

    #[tokio::test]
    async fn a_lagging_subscriber_is_told_how_many_it_missed() {
        let events = Events::new();
        let mut rx = events.subscribe();
        let extra = 5;
        for id in 0..(EVENT_CAPACITY + extra) as u64 {
            events.emit(|| opened(id));
        }
        match rx.recv().await {
            Err(broadcast::error::RecvError::Lagged(n)) => assert_eq!(n, extra as u64),
            other => panic!("expected Lagged, got {other:?}"),
        }
        // Then the oldest event still held.
        assert_eq!(rx.recv().await.unwrap().kind, opened(extra as u64));
    }

    #[test]
    fn events_serialize_flat_with_their_tag_and_cause_names() {
        let event = Event {
            at_us: 1520,
            kind: EventKind::LbAnswered {
                conn: Some(3),
                status: 504,
                cause: Reason::TargetTimeout,
                code: "target_idle_timeout",
                target: Some(SocketAddr::from(([127, 0, 0, 1], 8001))),
                explanation: "raise it".into(),
            },
        };
        assert_eq!(
            serde_json::to_string(&event).unwrap(),
            r#"{"at_us":1520,"event":"lb_answered","conn":3,"status":504,"cause":"target_timeout","code":"target_idle_timeout","target":"127.0.0.1:8001","explanation":"raise it"}"#
        );
        let change = Event {
            at_us: 7,
            kind: EventKind::TargetStateChanged {
                id: 1,
                address: SocketAddr::from(([127, 0, 0, 1], 8001)),
                from: TargetState::Healthy,
                to: TargetState::Draining,
                checked_state: TargetState::Draining,
                by: StateChange::Deregistration,
                reason: "200".into(),
            },
        };
        assert_eq!(
            serde_json::to_string(&change).unwrap(),
            r#"{"at_us":7,"event":"target_state_changed","id":1,"address":"127.0.0.1:8001","from":"healthy","to":"draining","checked_state":"draining","by":"deregistration","reason":"200"}"#
        );
    }
}
