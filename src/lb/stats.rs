//! Request counters by status and by cause, for tests and the control API.
//!
//! Every proxied response is counted, on whichever worker served it, so the status
//! counters are atomics spread over a few shards: one mutex (or one shared counter)
//! would make both workers write the same cache line on every request. Causes are
//! counted only for LB-generated answers and cuts, which are rare; they keep a map.
//!
//! Causes are counted by [`Reason`], which is cloud-neutral and tells apart what one cloud
//! logs under one word (AWS's `target_closed_connection` is the keep-alive race, an app
//! that closed before its response head, and a killed app). [`Counts::by_word`] gives the
//! cloud's words, as the control API and the access log show them.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::lb::profile::Profile;
use crate::lb::reason::Reason;

/// Status codes 0..STATUSES are counted in arrays; HTTP only has three digits.
const STATUSES: usize = 1000;

/// Counter shards; threads take them round-robin, so up to this many workers never
/// share one (a shard is 8 KB, far apart from the next).
const SHARDS: usize = 8;

/// Counts of answered requests.
#[derive(Debug)]
pub(crate) struct Stats {
    /// Responses by status code, one array per shard, summed when read.
    by_status: Box<[[AtomicU64; STATUSES]]>,
    /// LB-generated responses and cuts by cause, and the LB's own answers by status:
    /// what `by_status` holds beyond them is the app's.
    lb: Mutex<LbCounts>,
    /// Requests the LB sent to a backend again (GCP's GET retry): invisible in the status
    /// counts, as in the cloud's request log, so counted apart.
    retries: AtomicU64,
    /// Response body bytes moved socket to socket by `splice(2)`.
    spliced: AtomicU64,
}

/// What the LB answered itself, behind one lock (it is rare: errors only).
#[derive(Debug, Default)]
struct LbCounts {
    /// Answers and cuts by cause.
    by_cause: BTreeMap<Reason, u64>,
    /// Answers by status.
    by_status: BTreeMap<u16, u64>,
}

/// A snapshot of the counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Responses by status code (the app's and the LB's).
    pub by_status: BTreeMap<u16, u64>,
    /// LB-generated responses and cuts by cause ([`Counts::count`] reads one; the
    /// cloud's words are [`Counts::by_word`]). Serialized by [`Reason::name`].
    pub by_cause: BTreeMap<Reason, u64>,
    /// The LB's own answers by status (part of `by_status`; the rest is the app's).
    pub lb_by_status: BTreeMap<u16, u64>,
    /// Requests the LB sent to a backend again.
    pub retries: u64,
    /// Response body bytes moved from the target's socket to the client's by
    /// `splice(2)`, never entering lbsim's memory (long Content-Length bodies over plain
    /// TCP on Linux); the rest of the bytes were copied.
    pub spliced_bytes: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            by_status: (0..SHARDS)
                .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
                .collect(),
            lb: Mutex::default(),
            retries: AtomicU64::new(0),
            spliced: AtomicU64::new(0),
        }
    }
}

/// This thread's shard.
fn shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: Cell<Option<usize>> = const { Cell::new(None) };
    }
    SHARD.with(|s| {
        s.get().unwrap_or_else(|| {
            let mine = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
            s.set(Some(mine));
            mine
        })
    })
}

impl Stats {
    /// Counts one response; `reason` is set when the LB generated or cut it. An app's
    /// response (`reason` `None`) takes no lock.
    pub(crate) fn record(&self, status: Option<u16>, reason: Option<Reason>) {
        if let Some(status) = status {
            let slot = usize::from(status).min(STATUSES - 1);
            self.by_status[shard()][slot].fetch_add(1, Ordering::Relaxed);
        }
        if let Some(reason) = reason {
            let mut lb = self.lb();
            *lb.by_cause.entry(reason).or_default() += 1;
            if let Some(status) = status {
                *lb.by_status.entry(status).or_default() += 1;
            }
        }
    }

    /// The counters now.
    pub(crate) fn snapshot(&self) -> Counts {
        let mut by_status = BTreeMap::new();
        for status in 0..STATUSES {
            let n: u64 = self
                .by_status
                .iter()
                .map(|shard| shard[status].load(Ordering::Relaxed))
                .sum();
            if n > 0 {
                by_status.insert(status as u16, n);
            }
        }
        let lb = self.lb();
        Counts {
            by_status,
            by_cause: lb.by_cause.clone(),
            lb_by_status: lb.by_status.clone(),
            retries: self.retries.load(Ordering::Relaxed),
            spliced_bytes: self.spliced.load(Ordering::Relaxed),
        }
    }

    /// Zeroes every counter.
    pub(crate) fn reset(&self) {
        for shard in self.by_status.iter() {
            for n in shard {
                n.store(0, Ordering::Relaxed);
            }
        }
        *self.lb() = LbCounts::default();
        self.retries.store(0, Ordering::Relaxed);
        self.spliced.store(0, Ordering::Relaxed);
    }

    /// Counts one retried attempt.
    pub(crate) fn record_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts `n` body bytes spliced.
    pub(crate) fn record_spliced(&self, n: u64) {
        self.spliced.fetch_add(n, Ordering::Relaxed);
    }

    fn lb(&self) -> std::sync::MutexGuard<'_, LbCounts> {
        self.lb.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Counts {
    /// How many answers and cuts the LB made for `reason` (0 if none).
    pub fn count(&self, reason: Reason) -> u64 {
        self.by_cause.get(&reason).copied().unwrap_or(0)
    }

    /// The LB's answers and cuts by the cloud's word for their cause (the
    /// `x-lbsim-reason` header's), as the control API's `by_reason` shows them: causes
    /// that share a word on `profile` are summed.
    pub fn by_word(&self, profile: &Profile) -> BTreeMap<&'static str, u64> {
        let mut words = BTreeMap::new();
        for (reason, n) in &self.by_cause {
            *words.entry(profile.outcome(*reason).code).or_default() += n;
        }
        words
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_every_thread_add_up_and_reset() {
        let stats = std::sync::Arc::new(Stats::default());
        let threads: Vec<_> = (0..12)
            .map(|_| {
                let stats = stats.clone();
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        stats.record(Some(200), None);
                    }
                    stats.record(Some(504), Some(Reason::TargetTimeout));
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let counts = stats.snapshot();
        assert_eq!(counts.by_status, BTreeMap::from([(200, 1200), (504, 12)]));
        assert_eq!(
            counts.by_cause,
            BTreeMap::from([(Reason::TargetTimeout, 12)])
        );
        assert_eq!(counts.count(Reason::TargetTimeout), 12);
        assert_eq!(counts.count(Reason::KeepAliveRace), 0);
        assert_eq!(counts.lb_by_status, BTreeMap::from([(504, 12)]));
        stats.reset();
        assert_eq!(stats.snapshot(), Counts::default());
    }

    #[test]
    fn causes_that_share_a_word_are_apart_by_cause_and_summed_by_word() {
        use crate::lb::profile::{AWS_ALB, GCP_CLASSIC};
        let stats = Stats::default();
        stats.record(Some(502), Some(Reason::KeepAliveRace));
        stats.record(Some(502), Some(Reason::KeepAliveRace));
        stats.record(Some(502), Some(Reason::TargetClosedConnection));
        stats.record(None, Some(Reason::TargetClosedMidBody));
        let counts = stats.snapshot();
        assert_eq!(counts.count(Reason::KeepAliveRace), 2);
        assert_eq!(counts.count(Reason::TargetClosedConnection), 1);
        assert_eq!(counts.count(Reason::TargetClosedMidBody), 1);
        assert_eq!(counts.lb_by_status, BTreeMap::from([(502, 3)]));
        // AWS has one word for all three.
        assert_eq!(
            counts.by_word(&AWS_ALB),
            BTreeMap::from([("target_closed_connection", 4)])
        );
        // GCP tells a cut after the head apart.
        assert_eq!(
            counts.by_word(&GCP_CLASSIC),
            BTreeMap::from([
                ("backend_connection_closed_after_partial_response_sent", 1),
                ("backend_connection_closed_before_data_sent_to_client", 3),
            ])
        );
        assert_eq!(
            serde_json::to_value(&counts).unwrap()["by_cause"],
            serde_json::json!({
                "target_closed_connection": 1,
                "target_closed_mid_body": 1,
                "keep_alive_race": 2,
            })
        );
    }
}
