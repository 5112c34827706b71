//! From the file as written to the checked model: every rule a scenario file must follow,
//! with errors that point at `file:line:column`. Apart from the types it reads and builds.

use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use super::model::{
    Action, Expect, Scenario, SendSpec, Step, StepKind, TargetKind, TargetSpec, TargetStep, WaitFor,
};
use super::raw::{KindName, RawScenario, RawStep};
use crate::lb::config::{parse_duration, Config};
use crate::lb::l4::L4Profile;
use crate::mock::DEFAULT_KEEP_ALIVE;

/// In-flight requests get this long when a scenario's simulator shuts down.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

/// Why a scenario file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read, or the name is unknown.
    #[error("{origin}: {message}")]
    Io {
        /// The path or name given.
        origin: String,
        /// What went wrong.
        message: String,
    },
    /// The text is not a valid scenario.
    #[error("{origin}:{line}:{column}: {message}")]
    Parse {
        /// The path.
        origin: String,
        /// 1-based line.
        line: usize,
        /// 1-based column (characters).
        column: usize,
        /// What was expected.
        message: String,
    },
}

/// 1-based line and column of byte `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut at = offset.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

struct Ctx<'a> {
    text: &'a str,
    origin: &'a str,
}

impl Ctx<'_> {
    fn err(&self, span: Range<usize>, message: impl Into<String>) -> LoadError {
        let (line, column) = line_col(self.text, span.start);
        LoadError::Parse {
            origin: self.origin.to_string(),
            line,
            column,
            message: message.into(),
        }
    }
    fn line(&self, span: &Range<usize>) -> usize {
        line_col(self.text, span.start).0
    }
}

/// Reads and parses a scenario file; the name is the file stem.
pub fn load(path: &Path) -> Result<Scenario, LoadError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| LoadError::Io {
        origin: origin.clone(),
        message: format!("cannot read: {e}"),
    })?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| origin.clone());
    parse(&text, &origin, &name)
}

/// Parses scenario `text`; `origin` prefixes error messages.
pub fn parse(text: &str, origin: &str, name: &str) -> Result<Scenario, LoadError> {
    let cx = Ctx { text, origin };
    let raw: RawScenario = toml::from_str(text)
        .map_err(|e| cx.err(e.span().unwrap_or(0..0), e.message().trim_end()))?;

    let description = raw.description.get_ref().trim().to_string();
    if description.is_empty() || description.contains('\n') {
        return Err(cx.err(
            raw.description.span(),
            "description must be one non-empty line",
        ));
    }
    let time_scale = match &raw.time_scale {
        None => 1.0,
        Some(s) => {
            let f = *s.get_ref();
            if !(f.is_finite() && f > 0.0) {
                return Err(cx.err(s.span(), "time_scale must be a positive number, e.g. 0.01"));
            }
            f
        }
    };
    let cloud = raw.cloud;
    let lb_span = raw.lb.as_ref().map_or(0..0, |l| l.span());
    let mut settings = raw.lb.map(toml::Spanned::into_inner).unwrap_or_default();
    // A scenario's cloud and time scale are top-level keys; `[lb]` holds the rest.
    settings.cloud = cloud;
    settings.time_scale = time_scale;
    settings.shutdown_grace.get_or_insert(SHUTDOWN_GRACE);
    if let Err(e) = Config::build(&settings) {
        return Err(cx.err(lb_span, format!("[lb]: {e}")));
    }
    let l4 = match (raw.l4, raw.l4_idle_timeout) {
        (None, None) => None,
        (None, Some(idle)) => {
            return Err(cx.err(
                idle.span(),
                "`l4_idle_timeout` needs `l4` (which TCP load balancer's idle timeout)",
            ))
        }
        (Some(flavour), idle) => {
            // The combinations lbsim refuses on the command line are refused here too,
            // with the same words.
            if let Err(e) = L4Profile::of(*flavour.get_ref()).check(cloud) {
                return Err(cx.err(flavour.span(), e.to_string()));
            }
            let idle = match idle {
                Some(d) if d.get_ref().0.is_zero() => {
                    return Err(cx.err(d.span(), "`l4_idle_timeout` must be more than 0"))
                }
                Some(d) => Some(d.into_inner().0),
                None => None,
            };
            Some((flavour.into_inner(), idle))
        }
    };

    let mut targets: Vec<TargetSpec> = Vec::new();
    for t in raw.targets {
        let span = t.span();
        let t = t.into_inner();
        if t.name.trim().is_empty() {
            return Err(cx.err(span, "a target needs a non-empty name"));
        }
        if targets.iter().any(|o| o.name == t.name) {
            return Err(cx.err(span, format!("two targets are named `{}`", t.name)));
        }
        let kind = match t.kind {
            KindName::Mock => {
                if t.address.is_some() {
                    return Err(cx.err(
                        span,
                        "`address` is for kind = \"external\"; a mock target gets a free port",
                    ));
                }
                TargetKind::Mock {
                    keep_alive: t.keep_alive.map_or(DEFAULT_KEEP_ALIVE, |d| d.0),
                    latency: t.latency.map_or(Duration::ZERO, |d| d.0),
                    max_ongoing_requests: t
                        .max_ongoing_requests
                        .unwrap_or(crate::mock::RAY_DEFAULT_MAX_ONGOING_REQUESTS),
                    max_queued_requests: t.max_queued_requests,
                    request_timeout: t.request_timeout.map(|d| d.0),
                }
            }
            other => {
                if t.keep_alive.is_some()
                    || t.latency.is_some()
                    || t.max_ongoing_requests.is_some()
                    || t.max_queued_requests.is_some()
                    || t.request_timeout.is_some()
                {
                    return Err(cx.err(
                        span,
                        "`keep_alive`, `latency`, `max_ongoing_requests`, `max_queued_requests` \
                         and `request_timeout` are for kind = \"mock\" targets",
                    ));
                }
                if other == KindName::Closed {
                    if t.address.is_some() {
                        return Err(cx.err(
                            span,
                            "a closed target gets a free port; `address` is for kind = \"external\"",
                        ));
                    }
                    TargetKind::Closed
                } else {
                    match t.address {
                        Some(a) if a.contains(':') => TargetKind::External(a),
                        _ => {
                            return Err(
                                cx.err(span, "an external target needs `address = \"HOST:PORT\"`")
                            )
                        }
                    }
                }
            }
        };
        targets.push(TargetSpec {
            name: t.name,
            kind,
            registered: t.registered.unwrap_or(true),
        });
    }

    let mut steps = Vec::new();
    for (i, s) in raw.steps.into_iter().enumerate() {
        let span = s.span();
        let step = check_step(&cx, s.into_inner(), span.clone(), time_scale, &targets)?;
        steps.push(Step {
            index: i + 1,
            line: cx.line(&span),
            note: step.0,
            kind: step.1,
        });
    }
    if steps.is_empty() {
        return Err(cx.err(0..0, "a scenario needs at least one [[steps]] table"));
    }
    Ok(Scenario {
        name: name.to_string(),
        origin: origin.to_string(),
        description,
        why: raw.why.map(|s| s.trim().to_string()),
        fix: raw.fix.map(|s| s.trim().to_string()),
        cloud,
        time_scale,
        settings,
        l4,
        targets,
        steps,
    })
}

const SEND_KEYS: &[&str] = &[
    "send",
    "body",
    "headers",
    "conn",
    "concurrent",
    "background",
    "expect",
];
const TARGET_KEYS: &[&str] = &[
    "target",
    "action",
    "wait_for",
    "timeout",
    "state",
    "requests",
    "connections",
    "idle_closes",
];

fn check_step(
    cx: &Ctx<'_>,
    raw: RawStep,
    span: Range<usize>,
    scale: f64,
    targets: &[TargetSpec],
) -> Result<(Option<String>, StepKind), LoadError> {
    let present = raw.present();
    let (kind_key, allowed): (&str, &[&str]) = if raw.send.is_some() {
        ("send", SEND_KEYS)
    } else if raw.wait.is_some() {
        ("wait", &["wait"])
    } else if raw.join.is_some() {
        ("join", &["join"])
    } else if raw.target.is_some() {
        ("target", TARGET_KEYS)
    } else if let Some(first) = present.first() {
        let needs = if SEND_KEYS.contains(first) {
            "`send`"
        } else {
            "`target`"
        };
        return Err(cx.err(span, format!("`{first}` needs {needs} in the same step")));
    } else if raw.note.is_some() {
        return Ok((raw.note, StepKind::Note));
    } else {
        return Err(cx.err(
            span,
            "empty step: expected one of `send`, `wait`, `join`, `target` (or a `note`)",
        ));
    };
    if let Some(stray) = present.iter().find(|k| !allowed.contains(k)) {
        return Err(cx.err(
            span,
            format!("a `{kind_key}` step cannot also have `{stray}`: one step does one thing"),
        ));
    }
    let note = raw.note;
    match kind_key {
        "send" => {
            let send = raw
                .send
                .ok_or_else(|| cx.err(span.clone(), "missing `send`"))?;
            let (method, path) = parse_send(send.get_ref(), scale)
                .map_err(|m| cx.err(send.span(), format!("send: {m}")))?;
            let concurrent = raw.concurrent.unwrap_or(1);
            if concurrent == 0 {
                return Err(cx.err(span, "`concurrent` must be at least 1"));
            }
            if concurrent > 1 && raw.conn.is_some() {
                return Err(cx.err(
                    span,
                    "`concurrent` requests each open a new connection; drop `conn`",
                ));
            }
            let expect = match raw.expect {
                None => Expect::default(),
                Some(e) => {
                    let espan = e.span();
                    let e = e.into_inner();
                    if e.tolerance.is_some() && e.elapsed.is_none() {
                        return Err(cx.err(espan, "`tolerance` needs `elapsed`"));
                    }
                    check_no_answer(&e).map_err(|m| cx.err(espan, m))?;
                    e
                }
            };
            let spec = SendSpec {
                method,
                path,
                body: raw.body,
                headers: raw.headers.unwrap_or_default().into_iter().collect(),
                conn: raw.conn,
                concurrent,
                background: raw.background.unwrap_or(false),
                expect,
            };
            Ok((note, StepKind::Send(Box::new(spec))))
        }
        "wait" => Ok((
            note,
            StepKind::Wait(raw.wait.map_or(Duration::ZERO, |d| d.0)),
        )),
        "join" => {
            if raw.join != Some(true) {
                return Err(cx.err(span, "`join` can only be true"));
            }
            Ok((note, StepKind::Join))
        }
        _ => {
            let target = raw
                .target
                .ok_or_else(|| cx.err(span.clone(), "missing `target`"))?;
            let tspan = target.span();
            let name = target.into_inner();
            let Some(spec) = targets.iter().find(|t| t.name == name) else {
                let known: Vec<String> = targets.iter().map(|t| format!("`{}`", t.name)).collect();
                return Err(cx.err(
                    tspan,
                    format!(
                        "no target named `{name}` (targets: {})",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            };
            let is_mock = matches!(spec.kind, TargetKind::Mock { .. });
            if raw.action.is_some() && raw.wait_for.is_some() {
                return Err(cx.err(
                    span,
                    "`action` and `wait_for` go in separate steps: one step does one thing",
                ));
            }
            if raw.timeout.is_some() && raw.wait_for.is_none() {
                return Err(cx.err(span, "`timeout` needs `wait_for`"));
            }
            let counters = raw.requests.is_some()
                || raw.connections.is_some()
                || raw.idle_closes.is_some()
                || raw.action == Some(Action::Stop)
                || raw.wait_for == Some(WaitFor::IdleClose);
            if counters && !is_mock {
                return Err(cx.err(
                    span,
                    format!(
                        "`{name}` is not a mock target: only lbsim's mock app can be stopped \
                         or have its requests, connections and idle closes counted"
                    ),
                ));
            }
            if raw.action.is_none() && raw.wait_for.is_none() && raw.state.is_none() && !counters {
                return Err(cx.err(
                    span,
                    "a target step needs `action`, `wait_for`, or a check \
                     (`state`, `requests`, `connections`, `idle_closes`)",
                ));
            }
            Ok((
                note,
                StepKind::Target(TargetStep {
                    target: name,
                    action: raw.action,
                    wait_for: raw.wait_for,
                    timeout: raw.timeout.map(|d| d.0),
                    state: raw.state,
                    requests: raw.requests,
                    connections: raw.connections,
                    idle_closes: raw.idle_closes,
                }),
            ))
        }
    }
}

/// `reset = true` and `silent` say there was no response: they cannot be combined with a
/// key about one (or with each other).
fn check_no_answer(e: &Expect) -> Result<(), String> {
    let about_response = [
        ("status", e.status.is_some()),
        ("reason", e.reason.is_some()),
        ("body", e.body.is_some()),
        ("body_contains", e.body_contains.is_some()),
        ("headers", e.headers.is_some()),
        ("closed", e.closed.is_some()),
        ("truncated", e.truncated.is_some()),
    ];
    let first = about_response.iter().find(|(_, on)| *on).map(|(k, _)| *k);
    if let Some(silent) = e.silent {
        if silent.0.is_zero() {
            return Err("`silent` must be more than 0".to_string());
        }
        if e.reset.is_some() {
            return Err("`silent` and `reset` exclude each other: \
                        silence is neither a response nor a reset"
                .to_string());
        }
        if let Some(k) = first.or(e.elapsed.map(|_| "elapsed")) {
            return Err(format!(
                "`silent` means no response byte: it cannot go with `{k}`"
            ));
        }
    }
    if e.reset == Some(true) {
        if let Some(k) = first {
            return Err(format!(
                "`reset = true` means no response byte: it cannot go with `{k}`"
            ));
        }
    }
    Ok(())
}

/// `"GET /sleep/{400s}"` → `("GET", "/sleep/4")` at scale 0.01.
fn parse_send(text: &str, scale: f64) -> Result<(String, String), String> {
    const USAGE: &str = "expected \"METHOD /path\", e.g. \"GET /sleep/{400s}\"";
    let mut words = text.split_whitespace();
    let (Some(method), Some(target), None) = (words.next(), words.next(), words.next()) else {
        return Err(USAGE.to_string());
    };
    if !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(format!("method `{method}`: {USAGE}"));
    }
    if !target.starts_with('/') {
        return Err(format!("path `{target}` must start with /"));
    }
    let mut path = String::new();
    let mut rest = target;
    while let Some(open) = rest.find('{') {
        path.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("unclosed `{{` in path `{target}`"))?;
        let inner = &after[..close];
        let d = parse_duration(inner).map_err(|e| {
            format!("`{{{inner}}}` in the path: {e}; {{duration}} becomes scaled seconds")
        })?;
        path.push_str(&seconds_text(d.mul_f64(scale)));
        rest = &after[close + 1..];
    }
    path.push_str(rest);
    if !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!("path `{target}` must be visible ASCII"));
    }
    Ok((method.to_string(), path))
}

/// Seconds as the mock app's paths take them: `0.2`, `4`, `1.25`.
fn seconds_text(d: Duration) -> String {
    let text = format!("{:.3}", d.as_secs_f64());
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::super::raw::file_keys;
    use super::*;

    #[test]
    fn every_step_key_belongs_to_one_kind_of_step() {
        // check_step sorts a step by these lists; a key in RawStep but in none of them
        // would be accepted by serde and then ignored.
        let keys = file_keys();
        let steps = keys
            .iter()
            .find(|(table, _)| *table == "[[steps]]")
            .map(|(_, k)| k.to_vec())
            .unwrap_or_default();
        let mut sorted: Vec<&str> = ["note", "wait", "join"]
            .iter()
            .chain(SEND_KEYS)
            .chain(TARGET_KEYS)
            .copied()
            .collect();
        sorted.sort_unstable();
        let mut steps_sorted = steps.clone();
        steps_sorted.sort_unstable();
        assert_eq!(steps_sorted, sorted);
    }
}
