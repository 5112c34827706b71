//! Request counters by status and by cause, for tests and the control API.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Counts of answered requests.
#[derive(Debug, Default)]
pub struct Stats {
    inner: Mutex<Counts>,
}

/// A snapshot of the counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Responses by status code (the app's and the LB's).
    pub by_status: BTreeMap<u16, u64>,
    /// LB-generated responses and cuts by cause word.
    pub by_reason: BTreeMap<&'static str, u64>,
}

impl Stats {
    /// Counts one response; `reason` is set when the LB generated or cut it.
    pub fn record(&self, status: Option<u16>, reason: Option<&'static str>) {
        let mut c = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(status) = status {
            *c.by_status.entry(status).or_default() += 1;
        }
        if let Some(reason) = reason {
            *c.by_reason.entry(reason).or_default() += 1;
        }
    }

    /// The counters now.
    pub fn snapshot(&self) -> Counts {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Zeroes every counter.
    pub fn reset(&self) {
        *self.inner.lock().unwrap_or_else(|e| e.into_inner()) = Counts::default();
    }
}
