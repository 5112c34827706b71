//! A report as text for a terminal: the timeline, the PASS/FAIL lines and the verdict, in
//! color when stdout is a terminal. Apart so that running a scenario never formats for a person.

use std::fmt::Write as _;
use std::io::IsTerminal;

use super::report::{Actor, Report};

/// ANSI colors, on when stdout is a terminal and `NO_COLOR` is unset.
#[derive(Clone, Copy, Debug)]
pub struct Style {
    /// Emit ANSI escapes.
    pub color: bool,
}

impl Style {
    /// Colors when stdout is a terminal (and `NO_COLOR` is not set).
    pub fn detect() -> Style {
        Style {
            color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }
    /// No escapes.
    pub fn plain() -> Style {
        Style { color: false }
    }
    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
    pub(super) fn bold(&self, t: &str) -> String {
        self.paint("1", t)
    }
    pub(super) fn dim(&self, t: &str) -> String {
        self.paint("2", t)
    }
    pub(super) fn green(&self, t: &str) -> String {
        self.paint("1;32", t)
    }
    pub(super) fn red(&self, t: &str) -> String {
        self.paint("1;31", t)
    }
    fn actor(&self, a: Actor, t: &str) -> String {
        match a {
            Actor::Client => self.paint("36", t),
            Actor::Lb => self.paint("33", t),
            Actor::Target => self.paint("35", t),
            Actor::Runner => self.paint("2", t),
            Actor::Note => self.paint("1;34", t),
        }
    }
}

/// The timeline, one line per event.
pub fn render_timeline(r: &Report, style: Style, indent: &str) -> String {
    let mut out = String::new();
    let width = r
        .events
        .iter()
        .map(|e| e.who.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    for e in &r.events {
        let real = format!("+{:.3}s", e.at.as_secs_f64());
        let cloud = if r.time_scale == 1.0 {
            String::new()
        } else {
            format!(
                "{:>9}",
                format!("~{}", crate::human::duration(e.at.div_f64(r.time_scale)))
            )
        };
        let who = format!("{:<width$}", e.who);
        let what = if e.actor == Actor::Note {
            style.actor(Actor::Note, &format!("» {}", e.what))
        } else {
            e.what.clone()
        };
        let _ = writeln!(
            out,
            "{indent}{} {} {}  {what}",
            style.dim(&format!("{real:>8}")),
            style.dim(&cloud),
            style.actor(e.actor, &who)
        );
    }
    out
}

/// The PASS/FAIL lines.
pub fn render_checks(r: &Report, style: Style, indent: &str) -> String {
    let mut out = String::new();
    for c in &r.checks {
        let mark = if c.passed {
            style.green("PASS")
        } else {
            style.red("FAIL")
        };
        let _ = writeln!(
            out,
            "{indent}{mark}  step {} (line {}) {}: {} — {}",
            c.step, c.line, c.who, c.expected, c.detail
        );
    }
    if let Some(e) = &r.error {
        let _ = writeln!(out, "{indent}{}  could not run: {e}", style.red("FAIL"));
    }
    out
}

/// The full report of `lbsim scenario run`.
pub fn render_report(r: &Report, style: Style) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {}",
        style.bold(&format!("== {} ==", r.name)),
        style.dim(&format!("({})", r.origin))
    );
    let _ = writeln!(out, "{}", r.description);
    let _ = writeln!(
        out,
        "timeline (real time; ~ what it stands for in the cloud):"
    );
    out.push_str(&render_timeline(r, style, "  "));
    let _ = writeln!(out, "checks:");
    out.push_str(&render_checks(r, style, "  "));
    out.push_str(&verdict_line(r, style));
    out
}

fn verdict_line(r: &Report, style: Style) -> String {
    let passed = r.checks.iter().filter(|c| c.passed).count();
    let word = if r.passed() {
        style.green("PASS")
    } else {
        style.red("FAIL")
    };
    format!(
        "{word} {}: {passed}/{} checks in {:.2} s\n",
        r.name,
        r.checks.len(),
        r.duration.as_secs_f64()
    )
}
