//! What a run leaves behind: the timeline's events and one PASS/FAIL verdict per
//! expectation. Apart so that rendering and tests read a report without the runner.

use std::time::Duration;

/// Who did something in the timeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Actor {
    /// A client connection.
    Client,
    /// The load balancer.
    Lb,
    /// A target.
    Target,
    /// The scenario runner (waits, actions on the target group).
    Runner,
    /// A step's note.
    Note,
}

/// One line of the timeline.
#[derive(Clone, Debug)]
pub struct Event {
    /// Real time since the scenario started.
    pub at: Duration,
    /// Kind of actor.
    pub actor: Actor,
    /// `client a`, `lb`, `app`, ...
    pub who: String,
    /// What happened.
    pub what: String,
}

/// One expectation's verdict.
#[derive(Clone, Debug)]
pub struct Check {
    /// Step number (1-based).
    pub step: usize,
    /// Line of the step in the file.
    pub line: usize,
    /// Who was checked (`client a`, `app`).
    pub who: String,
    /// What was expected.
    pub expected: String,
    /// What was seen.
    pub detail: String,
    /// Verdict.
    pub passed: bool,
}

/// The result of one run.
#[derive(Clone, Debug)]
pub struct Report {
    /// Scenario name.
    pub name: String,
    /// Where it came from.
    pub origin: String,
    /// Scenario description.
    pub description: String,
    /// The time scale, to show cloud times beside real ones.
    pub time_scale: f64,
    /// What happened, in time order.
    pub events: Vec<Event>,
    /// Verdicts, in step order.
    pub checks: Vec<Check>,
    /// Set when the scenario could not be played at all.
    pub error: Option<String>,
    /// Real time the run took.
    pub duration: Duration,
}

impl Report {
    /// True when it ran and every expectation held.
    pub fn passed(&self) -> bool {
        self.error.is_none() && self.checks.iter().all(|c| c.passed)
    }

    /// The checks that failed.
    pub fn failures(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| !c.passed).collect()
    }
}
