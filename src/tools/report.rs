//! What lbsim tells a person at the command line: the state it starts in (and so what the
//! next requests will get), and a summary of what happened, printed when it stops or every
//! `--summary-every`.
//!
//! Both read the effective config, the profile and the counters: no cloud is named here,
//! every status and word comes from the profile.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::lb::advice::{explain, lb_secs, Detail};
use crate::lb::config::Config;
use crate::lb::reason::Reason;
use crate::lb::stats::Counts;
use crate::lb::targets::{TargetInfo, TargetState};

/// How long the start-up probe waits for a target's TCP handshake: enough for a local app,
/// short enough not to delay the banner.
const PROBE_CONNECT: Duration = Duration::from_millis(300);

/// Whether something accepts TCP connections at `addr` now.
async fn listening(addr: SocketAddr) -> bool {
    matches!(
        tokio::time::timeout(PROBE_CONNECT, TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

/// Lines for the banner: each target's state as probed now, and what the next requests
/// will get because of it.
pub(crate) async fn start_state(config: &Config, targets: &[TargetInfo]) -> Vec<String> {
    let p = config.profile;
    let lb = p.display_name;
    let mut lines = Vec::new();
    let mut reachable = 0;
    for t in targets {
        let up = match t.address.parse::<SocketAddr>() {
            Ok(addr) => listening(addr).await,
            Err(_) => false,
        };
        if up {
            reachable += 1;
        } else {
            let refused = p.outcome(Reason::ConnectRefused);
            lines.push(format!(
                "nothing listens on {}: requests sent to it will get {} ({}) until an app does",
                t.address, refused.status, refused.code
            ));
        }
    }
    if targets.is_empty() {
        let none = p.outcome(Reason::NoRegisteredTargets);
        lines.push(format!(
            "no target is registered: requests will get {} ({})",
            none.status, none.code
        ));
    } else if config.health.enabled {
        let checks = &config.health;
        let passes = checks.thresholds.initial;
        let ready_in = checks.interval * passes;
        if p.fails_open {
            lines.push(format!(
                "targets start `{}` and need {passes} passing health check(s) of GET {} (every {}); \
                 the {lb} fails open meanwhile, so requests are served",
                TargetState::Initial.as_str(),
                checks.path,
                lb_secs(config, checks.interval),
            ));
        } else {
            let none = p.outcome(Reason::NoHealthyTargets);
            lines.push(format!(
                "the {lb} does not fail open: requests get {} ({}) until {passes} health checks of GET {} pass, ~{}",
                none.status,
                none.code,
                checks.path,
                lb_secs(config, ready_in),
            ));
        }
        if reachable == 0 {
            lines.push(format!(
                "no target answers yet: its health checks fail and it turns `{}`",
                TargetState::Unhealthy.as_str()
            ));
        }
    }
    if !config.timers.warmup.is_zero() {
        let none = p.outcome(Reason::NoHealthyTargets);
        lines.push(format!(
            "warm-up: no target counts as healthy for {} after start ({} meanwhile)",
            lb_secs(config, config.timers.warmup),
            none.status
        ));
    }
    if let Some(retry) = config.retry {
        let times = if retry.attempts == 2 {
            "once more".to_string()
        } else {
            format!("up to {} times in all", retry.attempts)
        };
        lines.push(format!(
            "the {lb} sends a failed {} {times} when the app failed before answering \
             (--no-retry to see every failure)",
            retry.methods.join("/"),
        ));
    }
    lines
}

/// The summary: requests by status, the LB's own answers by cause with what to change
/// (one line per cause, in the cloud's words: causes that share a word keep their own
/// line and explanation), and the targets.
pub(crate) fn summary(config: &Config, counts: &Counts, targets: &[TargetInfo]) -> String {
    let mut out = String::new();
    let total: u64 = counts.by_status.values().sum();
    out.push_str(&format!(
        "lbsim summary ({}): {total} answered",
        config.profile.display_name
    ));
    if counts.retries > 0 {
        out.push_str(&format!(", {} retried by the LB", counts.retries));
    }
    out.push('\n');
    if !counts.by_status.is_empty() {
        let statuses: Vec<String> = counts
            .by_status
            .iter()
            .map(|(status, n)| format!("{status} × {n}"))
            .collect();
        out.push_str(&format!("  by status: {}\n", statuses.join(", ")));
        // Who answered: a 503 from the app (Ray Serve's backpressure) is not the LB's.
        let from_app: Vec<String> = counts
            .by_status
            .iter()
            .filter_map(|(status, n)| {
                let lb = counts.lb_by_status.get(status).copied().unwrap_or(0);
                (*n > lb).then(|| format!("{status} × {}", n - lb))
            })
            .collect();
        if !from_app.is_empty() {
            out.push_str(&format!("  answered by the app: {}\n", from_app.join(", ")));
        }
    }
    if counts.by_cause.is_empty() {
        out.push_str("  the load balancer answered nothing itself\n");
    } else {
        out.push_str("  the load balancer's own answers:\n");
        for (reason, n) in &counts.by_cause {
            let outcome = config.profile.outcome(*reason);
            let why = explain(config, *reason, &Detail::default());
            out.push_str(&format!(
                "    {} {} × {n}: {why}\n",
                outcome.status, outcome.code
            ));
        }
    }
    out.push_str("  targets:");
    if targets.is_empty() {
        out.push_str(" none registered\n");
    } else {
        out.push('\n');
        for t in targets {
            out.push_str(&format!(
                "    #{} {} {}, {} in flight\n",
                t.id,
                t.address,
                t.state.as_str(),
                t.in_flight
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::config::Settings;
    use crate::lb::profile::Cloud;
    use crate::lb::stats::Stats;

    #[test]
    fn causes_that_share_a_word_get_a_line_and_an_explanation_each() {
        let config = Config::build(&Settings::new(Cloud::Aws)).expect("default settings");
        let stats = Stats::default();
        stats.record(Some(502), Some(Reason::KeepAliveRace));
        stats.record(Some(502), Some(Reason::KeepAliveRace));
        stats.record(Some(502), Some(Reason::TargetClosedConnection));
        let text = summary(&config, &stats.snapshot(), &[]);
        let race = explain(&config, Reason::KeepAliveRace, &Detail::default());
        let closed = explain(&config, Reason::TargetClosedConnection, &Detail::default());
        assert_ne!(race, closed);
        assert!(
            text.contains(&format!("    502 target_closed_connection × 2: {race}\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("    502 target_closed_connection × 1: {closed}\n")),
            "{text}"
        );
    }
}
