//! A report as a picture: the timeline as a sequence diagram (client, load balancer, app),
//! the PASS/FAIL lines and the scenario's why and fix, as one SVG or one self-contained HTML
//! page (`lbsim scenario run NAME --svg FILE --html FILE`), for a CI artifact or a slide.
//!
//! It reads the very [`Report`] the terminal rendering prints (nothing is run again, the
//! timeline is not rebuilt): each event's actor and words say which lane it sits on and
//! which way its arrow goes. The words it reads are the ones `client.rs` and `timeline.rs`
//! write (`→ GET /`, `← 502 Bad Gateway · x-lbsim-reason: ...`, `answers 504 itself: ...`,
//! `receives a request`, ...); an event it does not recognise is still drawn, as a mark on
//! its actor's lane with its full text, so a new wording degrades to a plainer picture, never
//! to a missing line.
//!
//! Every piece of text is escaped ([`escape`]): scenario names, notes and what the app
//! answered come from files and programs lbsim does not control.

use std::fmt::Write as _;

use super::model::Scenario;
use super::report::{Actor, Event, Report};

/// Escapes text for XML and HTML (element content and quoted attribute values alike), and
/// replaces the control characters XML 1.0 cannot hold, so that any text (an app's body, a
/// scenario's name) keeps the document well-formed and inert.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c.is_control() || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// The three lanes of the diagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lane {
    Client,
    Lb,
    App,
}

impl Lane {
    /// Where the lane's vertical line is.
    fn x(self) -> f64 {
        match self {
            Lane::Client => 260.0,
            Lane::Lb => 590.0,
            Lane::App => 920.0,
        }
    }
}

/// What colour an answer or a line gets: who answered, and for the load balancer's own
/// answers, the cause (its `x-lbsim-reason` code).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Tone {
    /// A request on its way.
    Request,
    /// The app's answer (passed through by the LB).
    App,
    /// The load balancer's own answer or decision, for this cause code.
    Cause(String),
    /// A connection closed (FIN) or reset.
    Close,
    /// The client got no answer at all.
    NoAnswer,
    /// Anything else: state changes, setup lines.
    Plain,
}

/// One row of the diagram, built from one event.
#[derive(Clone, Debug, PartialEq)]
enum Row {
    /// An arrow between two lanes.
    Arrow {
        from: Lane,
        to: Lane,
        label: String,
        tone: Tone,
        dashed: bool,
    },
    /// Something that happened on one lane.
    Mark {
        lane: Lane,
        label: String,
        tone: Tone,
    },
    /// A band across every lane: a wait, a note, the runner's actions.
    Band { label: String, note: bool },
}

/// The cause code of a client line `← 502 Bad Gateway · x-lbsim-reason: CODE · ...`.
fn reason_of(what: &str) -> Option<String> {
    let rest = what.split("x-lbsim-reason: ").nth(1)?;
    let code = rest.split(" · ").next()?.trim();
    (!code.is_empty()).then(|| code.to_string())
}

/// Which lane, arrow and colour an event of the report gets.
fn row_of(e: &Event) -> Row {
    let what = e.what.as_str();
    let named = |text: &str| format!("{}: {text}", e.who);
    match e.actor {
        Actor::Note => Row::Band {
            label: e.what.clone(),
            note: true,
        },
        Actor::Runner => Row::Band {
            label: e.what.clone(),
            note: false,
        },
        Actor::Client => {
            if let Some(rest) = what.strip_prefix("→ ") {
                let tone = if rest.contains('✗') {
                    Tone::NoAnswer
                } else {
                    Tone::Request
                };
                Row::Arrow {
                    from: Lane::Client,
                    to: Lane::Lb,
                    label: named(rest),
                    tone,
                    dashed: false,
                }
            } else if let Some(rest) = what.strip_prefix("← ") {
                let tone = match reason_of(rest) {
                    Some(code) => Tone::Cause(code),
                    None => Tone::App,
                };
                Row::Arrow {
                    from: Lane::Lb,
                    to: Lane::Client,
                    label: named(rest),
                    tone,
                    dashed: false,
                }
            } else if what.starts_with("connection closed") || what.starts_with("connection reset")
            {
                Row::Arrow {
                    from: Lane::Lb,
                    to: Lane::Client,
                    label: named(what),
                    tone: Tone::Close,
                    dashed: true,
                }
            } else {
                Row::Mark {
                    lane: Lane::Client,
                    label: named(what.trim_start_matches("✗ ")),
                    tone: if what.starts_with('✗') {
                        Tone::NoAnswer
                    } else {
                        Tone::Plain
                    },
                }
            }
        }
        Actor::Lb => {
            if let Some(rest) = what.strip_prefix("passes the app's ") {
                Row::Arrow {
                    from: Lane::App,
                    to: Lane::Lb,
                    label: format!("app answers {}", rest.trim_end_matches(" through")),
                    tone: Tone::App,
                    dashed: false,
                }
            } else if let Some(rest) = what.strip_prefix("answers ") {
                let code = rest.split(": ").nth(1).unwrap_or(rest).to_string();
                Row::Mark {
                    lane: Lane::Lb,
                    label: format!("LB {what}"),
                    tone: Tone::Cause(code),
                }
            } else if what.starts_with("reuses a pooled connection") {
                Row::Arrow {
                    from: Lane::Lb,
                    to: Lane::App,
                    label: format!("LB {what}"),
                    tone: Tone::Close,
                    dashed: true,
                }
            } else {
                Row::Mark {
                    lane: Lane::Lb,
                    label: format!("LB {what}"),
                    tone: if what.starts_with("cuts") {
                        Tone::NoAnswer
                    } else {
                        Tone::Plain
                    },
                }
            }
        }
        Actor::Target => {
            if what.starts_with("receives a request") {
                Row::Arrow {
                    from: Lane::Lb,
                    to: Lane::App,
                    label: named(what),
                    tone: Tone::Request,
                    dashed: false,
                }
            } else if what.starts_with("accepts a connection") {
                Row::Arrow {
                    from: Lane::Lb,
                    to: Lane::App,
                    label: named(what),
                    tone: Tone::Plain,
                    dashed: true,
                }
            } else if what.starts_with("closes an idle") {
                Row::Arrow {
                    from: Lane::App,
                    to: Lane::Lb,
                    label: named(what),
                    tone: Tone::Close,
                    dashed: true,
                }
            } else {
                Row::Mark {
                    lane: Lane::App,
                    label: named(what),
                    tone: Tone::Plain,
                }
            }
        }
    }
}

/// Colours for the load balancer's causes, given in order of first appearance.
const CAUSE_COLOURS: [&str; 6] = [
    "#d62728", "#9467bd", "#e67e22", "#8c564b", "#e377c2", "#7f7f7f",
];
const APP_COLOUR: &str = "#2ca02c";
const REQUEST_COLOUR: &str = "#1f77b4";
const CLOSE_COLOUR: &str = "#555555";
const NO_ANSWER_COLOUR: &str = "#000000";
const PLAIN_COLOUR: &str = "#444444";

/// The causes of a report's rows, in order of first appearance, with their colour.
fn causes(rows: &[Row]) -> Vec<(String, &'static str)> {
    let mut out: Vec<(String, &'static str)> = Vec::new();
    for row in rows {
        let tone = match row {
            Row::Arrow { tone, .. } | Row::Mark { tone, .. } => tone,
            Row::Band { .. } => continue,
        };
        if let Tone::Cause(code) = tone {
            if !out.iter().any(|(c, _)| c == code) {
                let colour = CAUSE_COLOURS[out.len() % CAUSE_COLOURS.len()];
                out.push((code.clone(), colour));
            }
        }
    }
    out
}

fn colour(tone: &Tone, causes: &[(String, &'static str)]) -> &'static str {
    match tone {
        Tone::Request => REQUEST_COLOUR,
        Tone::App => APP_COLOUR,
        Tone::Cause(code) => causes
            .iter()
            .find(|(c, _)| c == code)
            .map_or(CAUSE_COLOURS[0], |(_, colour)| colour),
        Tone::Close => CLOSE_COLOUR,
        Tone::NoAnswer => NO_ANSWER_COLOUR,
        Tone::Plain => PLAIN_COLOUR,
    }
}

/// Width of the picture, in SVG units.
const WIDTH: f64 = 1180.0;
/// Height of one row of the timeline.
const ROW: f64 = 30.0;
/// Height of one line of text below the diagram.
const LINE: f64 = 17.0;
/// Where text below the diagram wraps (characters).
const WRAP: usize = 150;
/// The longest labels drawn in full (a longer one is clipped; its full text stays in the
/// element's tooltip): what fits from where each kind of label starts to the picture's edge.
const ARROW_MAX: usize = 140;
/// A mark's label, bold, rightwards from the client's or the load balancer's lane.
const MARK_MAX: usize = 82;
/// A mark's label, leftwards from the app's lane (to the time column).
const APP_MARK_MAX: usize = 105;
/// A band's label, centred.
const BAND_MAX: usize = 125;

/// `text` cut to `max` characters, with an ellipsis when cut.
fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(max - 1).collect();
        s.push('…');
        s
    }
}

/// `text` in lines of at most `width` characters, broken at spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in text.lines() {
        let mut line = String::new();
        for word in paragraph.split_whitespace() {
            if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        if !line.is_empty() {
            lines.push(line);
        }
    }
    lines
}

/// The real time of an event and, when the scenario is scaled, the cloud time it stands for.
fn times(e: &Event, scale: f64) -> (String, Option<String>) {
    let real = format!("+{:.3} s", e.at.as_secs_f64());
    let cloud = (scale != 1.0 && scale > 0.0)
        .then(|| format!("~{}", crate::human::duration(e.at.div_f64(scale))));
    (real, cloud)
}

/// A `<text>` element, escaped.
fn text(out: &mut String, x: f64, y: f64, class: &str, anchor: &str, fill: &str, body: &str) {
    let _ = writeln!(
        out,
        r#"<text x="{x:.1}" y="{y:.1}" class="{class}" text-anchor="{anchor}" fill="{fill}">{}</text>"#,
        escape(body)
    );
}

/// A `<text>` element whose text may be clipped; the full text is its tooltip.
fn label(out: &mut String, at: (f64, f64), anchor: &str, fill: &str, body: &str, max: usize) {
    let (x, y) = at;
    let shown = clip(body, max);
    let _ = writeln!(
        out,
        r#"<text x="{x:.1}" y="{y:.1}" class="label" text-anchor="{anchor}" fill="{fill}"><title>{}</title>{}</text>"#,
        escape(body),
        escape(&shown)
    );
}

/// The inner CSS of the SVG: fonts only, colours are attributes (so that the SVG looks the
/// same pasted anywhere).
const SVG_STYLE: &str = "text{font-family:Helvetica,Arial,sans-serif;font-size:12px}\
.title{font-size:18px;font-weight:bold}.lane{font-size:14px;font-weight:bold}\
.time{font-family:Menlo,Consolas,monospace;font-size:11px}.band{font-style:italic}\
.mark{font-weight:bold}";

/// The parts of the SVG a page or a file shows: what goes above the timeline and below it.
struct Parts {
    /// The title, the description and the setup line above the lanes.
    heading: bool,
    /// The PASS/FAIL lines, the why and the fix below the timeline.
    story: bool,
}

/// The SVG of one run. `xmlns`: a standalone file needs the namespace; an SVG inline in
/// HTML takes it from the parser.
fn svg_of(scenario: &Scenario, report: &Report, parts: Parts, xmlns: bool) -> String {
    let rows: Vec<Row> = report.events.iter().map(row_of).collect();
    let causes = causes(&rows);
    let mut body = String::new();
    let mut y = 24.0;
    if parts.heading {
        text(&mut body, 16.0, y, "title", "start", "#000", &report.name);
        y += 20.0;
        text(
            &mut body,
            16.0,
            y,
            "desc",
            "start",
            "#333",
            &report.description,
        );
        y += 18.0;
        for line in wrap(&format!("setup: {}", scenario.setup_line()), WRAP) {
            text(&mut body, 16.0, y, "desc", "start", "#666", &line);
            y += LINE;
        }
        y += 10.0;
    }
    // The lane headings and the legend.
    let lanes_top = y;
    for (lane, name) in [
        (Lane::Client, "client"),
        (Lane::Lb, "load balancer"),
        (Lane::App, "app"),
    ] {
        let _ = writeln!(
            body,
            r##"<rect x="{:.1}" y="{:.1}" width="140" height="26" rx="4" fill="#eef2f7" stroke="#8899aa"/>"##,
            lane.x() - 70.0,
            y
        );
        text(
            &mut body,
            lane.x(),
            y + 18.0,
            "lane",
            "middle",
            "#223",
            name,
        );
    }
    text(
        &mut body,
        16.0,
        y + 11.0,
        "time",
        "start",
        "#555",
        "real time",
    );
    if report.time_scale != 1.0 {
        text(
            &mut body,
            16.0,
            y + 24.0,
            "time",
            "start",
            "#555",
            &format!("~ cloud time (scale {})", report.time_scale),
        );
    }
    y += 26.0 + 16.0;
    let mut rows_svg = String::new();
    for (e, row) in report.events.iter().zip(&rows) {
        let mid = y + ROW / 2.0;
        let (real, cloud) = times(e, report.time_scale);
        text(
            &mut rows_svg,
            16.0,
            mid + 4.0,
            "time",
            "start",
            "#333",
            &real,
        );
        if let Some(cloud) = cloud {
            text(
                &mut rows_svg,
                90.0,
                mid + 4.0,
                "time",
                "start",
                "#777",
                &cloud,
            );
        }
        match row {
            Row::Arrow {
                from,
                to,
                label: words,
                tone,
                dashed,
            } => {
                let fill = colour(tone, &causes);
                let (x1, x2) = (from.x(), to.x());
                let dir = if x2 > x1 { 1.0 } else { -1.0 };
                let line_y = mid + 6.0;
                let dash = if *dashed {
                    r#" stroke-dasharray="6 4""#
                } else {
                    ""
                };
                let _ = writeln!(
                    rows_svg,
                    r#"<line x1="{x1:.1}" y1="{line_y:.1}" x2="{:.1}" y2="{line_y:.1}" stroke="{fill}" stroke-width="2"{dash}/>"#,
                    x2 - dir * 8.0
                );
                let _ = writeln!(
                    rows_svg,
                    r#"<polygon points="{x2:.1},{line_y:.1} {:.1},{:.1} {:.1},{:.1}" fill="{fill}"/>"#,
                    x2 - dir * 10.0,
                    line_y - 5.0,
                    x2 - dir * 10.0,
                    line_y + 5.0
                );
                // Text reads rightwards from the arrow's left end, over the line, and may run
                // past its right end (the rest of its row is free); the head says which way.
                label(
                    &mut rows_svg,
                    (x1.min(x2) + 6.0, line_y - 5.0),
                    "start",
                    fill,
                    words,
                    ARROW_MAX,
                );
            }
            Row::Mark {
                lane,
                label: words,
                tone,
            } => {
                let fill = colour(tone, &causes);
                let _ = writeln!(
                    rows_svg,
                    r#"<circle cx="{:.1}" cy="{mid:.1}" r="6" fill="{fill}"/>"#,
                    lane.x()
                );
                // The app's marks read leftwards, the others rightwards: both stay inside.
                let (x, anchor, max) = if *lane == Lane::App {
                    (lane.x() - 12.0, "end", APP_MARK_MAX)
                } else {
                    (lane.x() + 12.0, "start", MARK_MAX)
                };
                let _ = write!(rows_svg, "<g class=\"mark\">");
                label(&mut rows_svg, (x, mid + 4.0), anchor, fill, words, max);
                let _ = writeln!(rows_svg, "</g>");
            }
            Row::Band { label: words, note } => {
                let (fill, stroke, ink) = if *note {
                    ("#eaf1fb", "#9db7e0", "#1f3b70")
                } else {
                    ("#f4f4f4", "#cccccc", "#444444")
                };
                let left = Lane::Client.x() - 90.0;
                let _ = writeln!(
                    rows_svg,
                    r#"<rect x="{left:.1}" y="{:.1}" width="{:.1}" height="{:.1}" rx="3" fill="{fill}" stroke="{stroke}"/>"#,
                    y + 3.0,
                    Lane::App.x() + 90.0 - left,
                    ROW - 6.0
                );
                let shown = if *note {
                    format!("» {words}")
                } else {
                    words.clone()
                };
                let _ = write!(rows_svg, "<g class=\"band\">");
                label(
                    &mut rows_svg,
                    (Lane::Lb.x(), mid + 4.0),
                    "middle",
                    ink,
                    &shown,
                    BAND_MAX,
                );
                let _ = writeln!(rows_svg, "</g>");
            }
        }
        y += ROW;
    }
    // The lanes' lines go under the rows.
    for lane in [Lane::Client, Lane::Lb, Lane::App] {
        let _ = writeln!(
            body,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#bbbbbb" stroke-width="1.5"/>"##,
            lanes_top + 26.0,
            y + 6.0,
            x = lane.x()
        );
    }
    body.push_str(&rows_svg);
    y += 22.0;
    // The legend: who answered, and each of the load balancer's causes.
    let mut x = 16.0;
    let mut legend = vec![
        ("request".to_string(), REQUEST_COLOUR),
        ("the app's answer".to_string(), APP_COLOUR),
    ];
    legend.extend(
        causes
            .iter()
            .map(|(code, c)| (format!("LB's own answer: {code}"), *c)),
    );
    legend.push(("close (FIN/RST)".to_string(), CLOSE_COLOUR));
    for (words, fill) in legend {
        let _ = writeln!(
            body,
            r#"<rect x="{x:.1}" y="{:.1}" width="14" height="10" fill="{fill}"/>"#,
            y - 9.0
        );
        text(&mut body, x + 18.0, y, "legend", "start", "#333", &words);
        x += 18.0 + 7.0 * words.chars().count() as f64 + 18.0;
    }
    y += 14.0;
    if parts.story {
        y += 14.0;
        text(&mut body, 16.0, y, "lane", "start", "#223", "expectations");
        y += LINE + 2.0;
        for c in &report.checks {
            let (mark, fill) = if c.passed {
                ("PASS", "#1a7f37")
            } else {
                ("FAIL", "#cf222e")
            };
            text(&mut body, 16.0, y, "mark", "start", fill, mark);
            let line = format!(
                "step {} (line {}) {}: {} — {}",
                c.step, c.line, c.who, c.expected, c.detail
            );
            for (i, part) in wrap(&line, WRAP - 10).into_iter().enumerate() {
                if i > 0 {
                    y += LINE;
                }
                text(&mut body, 60.0, y, "check", "start", "#222", &part);
            }
            y += LINE;
        }
        if let Some(e) = &report.error {
            text(&mut body, 16.0, y, "mark", "start", "#cf222e", "FAIL");
            text(
                &mut body,
                60.0,
                y,
                "check",
                "start",
                "#222",
                &format!("could not run: {e}"),
            );
            y += LINE;
        }
        for (title, words) in [("why", &scenario.why), ("fix", &scenario.fix)] {
            if let Some(words) = words {
                y += 10.0;
                text(&mut body, 16.0, y, "lane", "start", "#223", title);
                y += LINE + 2.0;
                for line in wrap(words, WRAP) {
                    text(&mut body, 16.0, y, "story", "start", "#222", &line);
                    y += LINE;
                }
            }
        }
        y += 8.0;
        let (word, fill) = verdict(report);
        text(&mut body, 16.0, y, "lane", "start", fill, &word);
        y += LINE;
    }
    let height = y + 10.0;
    let ns = if xmlns {
        r#" xmlns="http://www.w3.org/2000/svg""#
    } else {
        ""
    };
    format!(
        "<svg{ns} width=\"{WIDTH:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {WIDTH:.0} {height:.0}\" \
         role=\"img\"><title>{}</title>\n<style>{SVG_STYLE}</style>\n\
         <rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n{body}</svg>\n",
        escape(&format!("lbsim scenario {}: {}", report.name, report.description))
    )
}

/// `PASS name: 3/3 checks` (or FAIL) and its colour.
fn verdict(report: &Report) -> (String, &'static str) {
    let passed = report.checks.iter().filter(|c| c.passed).count();
    let (word, fill) = if report.passed() {
        ("PASS", "#1a7f37")
    } else {
        ("FAIL", "#cf222e")
    };
    (
        format!(
            "{word} {}: {passed}/{} checks in {:.2} s",
            report.name,
            report.checks.len(),
            report.duration.as_secs_f64()
        ),
        fill,
    )
}

/// One run as a standalone SVG file: heading, timeline, legend, PASS/FAIL lines, why and fix.
pub fn svg_picture(scenario: &Scenario, report: &Report) -> String {
    svg_of(
        scenario,
        report,
        Parts {
            heading: true,
            story: true,
        },
        true,
    )
}

/// The page's CSS (inline: the page loads nothing).
const PAGE_STYLE: &str = "body{font-family:Helvetica,Arial,sans-serif;margin:24px;color:#222;\
max-width:1200px}h1{font-size:22px;margin:0 0 4px}section{margin-bottom:48px}\
.desc{margin:0 0 4px}.setup{color:#666;margin:0 0 12px;font-size:14px}\
svg{max-width:100%;height:auto;border:1px solid #ddd}h2{font-size:16px;margin:18px 0 6px}\
ul.checks{list-style:none;padding:0;margin:0}ul.checks li{margin:2px 0;font-size:14px}\
.pass{color:#1a7f37;font-weight:bold}.fail{color:#cf222e;font-weight:bold}\
p.story{white-space:pre-line;margin:0;font-size:14px}.verdict{font-weight:bold;margin-top:12px}\
footer{color:#888;font-size:12px}";

/// One page for one or more runs (each a section: heading, the timeline as an inline SVG,
/// the PASS/FAIL lines, why and fix). Self-contained: inline CSS, no script, no link.
pub fn html_page(runs: &[(&Scenario, &Report)]) -> String {
    let mut out = String::new();
    let title = runs
        .iter()
        .map(|(_, r)| r.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>lbsim scenario: {}</title>\n<style>{PAGE_STYLE}</style>\n</head>\n<body>",
        escape(&title)
    );
    for (scenario, report) in runs {
        let _ = writeln!(out, "<section>");
        let _ = writeln!(out, "<h1>{}</h1>", escape(&report.name));
        let _ = writeln!(out, "<p class=\"desc\">{}</p>", escape(&report.description));
        let _ = writeln!(
            out,
            "<p class=\"setup\">setup: {} ({})</p>",
            escape(&scenario.setup_line()),
            escape(&report.origin)
        );
        out.push_str(&svg_of(
            scenario,
            report,
            Parts {
                heading: false,
                story: false,
            },
            false,
        ));
        let _ = writeln!(out, "<h2>Expectations</h2>\n<ul class=\"checks\">");
        for c in &report.checks {
            let (class, word) = if c.passed {
                ("pass", "PASS")
            } else {
                ("fail", "FAIL")
            };
            let _ = writeln!(
                out,
                "<li><span class=\"{class}\">{word}</span> step {} (line {}) {}: {} — {}</li>",
                c.step,
                c.line,
                escape(&c.who),
                escape(&c.expected),
                escape(&c.detail)
            );
        }
        if let Some(e) = &report.error {
            let _ = writeln!(
                out,
                "<li><span class=\"fail\">FAIL</span> could not run: {}</li>",
                escape(e)
            );
        }
        let _ = writeln!(out, "</ul>");
        for (title, words) in [("Why", &scenario.why), ("Fix", &scenario.fix)] {
            if let Some(words) = words {
                let _ = writeln!(
                    out,
                    "<h2>{title}</h2>\n<p class=\"story\">{}</p>",
                    escape(words.trim())
                );
            }
        }
        let (word, _) = verdict(report);
        let class = if report.passed() { "pass" } else { "fail" };
        let _ = writeln!(
            out,
            "<p class=\"verdict {class}\">{}</p>\n</section>",
            escape(&word)
        );
    }
    let _ = writeln!(
        out,
        "<footer>lbsim {} · times are real; ~ is what they stand for in the cloud</footer>\n\
         </body>\n</html>",
        env!("CARGO_PKG_VERSION")
    );
    out
}

/// For the pictures' tests (here and in tests/scenario_pictures.rs), not API: every tag
/// opened is closed, in order (text is escaped, so every `<` in the output starts a tag,
/// a comment, or a declaration).
#[doc(hidden)]
pub fn tags_balance(doc: &str) -> Result<(), String> {
    let mut open: Vec<String> = Vec::new();
    let mut rest = doc;
    while let Some(start) = rest.find('<') {
        let end = rest[start..]
            .find('>')
            .ok_or_else(|| format!("unclosed tag at {:?}", &rest[start..]))?;
        let tag = &rest[start + 1..start + end];
        rest = &rest[start + end + 1..];
        if tag.starts_with('!') || tag.starts_with('?') || tag.ends_with('/') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            match open.pop() {
                Some(o) if o == name.trim() => {}
                other => return Err(format!("</{name}> closes {other:?}")),
            }
        } else {
            let name = tag.split_whitespace().next().unwrap_or("").to_string();
            // HTML's void elements close themselves.
            if !["meta", "br", "link", "img"].contains(&name.as_str()) {
                open.push(name);
            }
        }
    }
    if open.is_empty() {
        Ok(())
    } else {
        Err(format!("left open: {open:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse::parse;
    use super::super::report::Check;
    use super::*;
    use std::time::Duration;

    fn scenario(name: &str) -> Scenario {
        let text =
            "description = \"d\"\nwhy = \"the app <closed> it\"\nfix = \"keep-alive & more\"\n\
                    cloud = \"aws\"\ntime_scale = 0.01\n[[targets]]\nname = \"app\"\n\
                    [[steps]]\nsend = \"GET /\"\n";
        parse(text, name, name).unwrap_or_else(|e| panic!("{e}"))
    }

    fn event(ms: u64, actor: Actor, who: &str, what: &str) -> Event {
        Event {
            at: Duration::from_millis(ms),
            actor,
            who: who.into(),
            what: what.into(),
        }
    }

    /// A 200 from the app, a 502 from the LB and a 504 from the LB, worded as the client
    /// and the timeline word them.
    fn report(name: &str) -> Report {
        use Actor::*;
        Report {
            name: name.into(),
            origin: "test".into(),
            description: "a 200, a 502 and a 504".into(),
            time_scale: 0.01,
            events: vec![
                event(0, Note, "note", "the app answers"),
                event(1, Client, "client", "→ GET / on a new connection"),
                event(2, Target, "app", "accepts a connection (1 so far)"),
                event(2, Target, "app", "receives a request (1 so far)"),
                event(3, Lb, "lb", "passes the app's 200 through"),
                event(3, Client, "client", "← 200 OK · from the app · body \"ok\" · 2 ms"),
                event(50, Target, "app", "closes an idle keep-alive connection (FIN, no response)"),
                event(60, Runner, "runner", "waits 5 s (50 ms real)"),
                event(120, Client, "client", "→ GET / on a new connection"),
                event(121, Lb, "lb", "answers 502 itself: target_closed_connection"),
                event(
                    121,
                    Client,
                    "client",
                    "← 502 Bad Gateway · x-lbsim-reason: target_closed_connection · 122-byte body · 1 ms",
                ),
                event(130, Client, "client", "→ GET /sleep/2 on a new connection"),
                event(1130, Lb, "lb", "answers 504 itself: target_idle_timeout"),
                event(
                    1130,
                    Client,
                    "client",
                    "← 504 Gateway Time-out · x-lbsim-reason: target_idle_timeout · 132-byte body · 1 s",
                ),
                event(1131, Client, "client", "connection closed by the load balancer"),
            ],
            checks: vec![
                Check {
                    step: 1,
                    line: 9,
                    who: "client".into(),
                    expected: "status 502".into(),
                    detail: "got 502".into(),
                    passed: true,
                },
                Check {
                    step: 2,
                    line: 12,
                    who: "client".into(),
                    expected: "status 504".into(),
                    detail: "got 503".into(),
                    passed: false,
                },
            ],
            error: None,
            duration: Duration::from_millis(1200),
        }
    }

    #[test]
    fn escape_makes_markup_text() {
        assert_eq!(
            escape(r#"<script src="x">a & 'b'</script>"#),
            "&lt;script src=&quot;x&quot;&gt;a &amp; &#39;b&#39;&lt;/script&gt;"
        );
        // XML 1.0 cannot hold most control characters, not even escaped.
        assert_eq!(
            escape("a\u{0}b\u{1b}[1mc\nd\u{FFFF}"),
            "a\u{FFFD}b\u{FFFD}[1mc\nd\u{FFFD}"
        );
    }

    #[test]
    fn untrusted_text_stays_text_in_both_pictures() {
        let name = "x</title><script>alert(1)</script>";
        let mut r = report(name);
        r.events.push(event(
            1200,
            Actor::Client,
            "client",
            "← 200 OK · from the app · body \"<img src=x onerror=alert(1)>\" · 1 ms",
        ));
        let s = scenario("x");
        for doc in [svg_picture(&s, &r), html_page(&[(&s, &r)])] {
            assert!(!doc.contains("<script"), "{doc}");
            assert!(!doc.contains("<img"), "{doc}");
            assert!(doc.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
            assert!(doc.contains("the app &lt;closed&gt; it"), "why escaped");
            assert!(doc.contains("keep-alive &amp; more"), "fix escaped");
            tags_balance(&doc).unwrap_or_else(|e| panic!("{e}\n{doc}"));
        }
    }

    #[test]
    fn a_200_a_502_and_a_504_make_lanes_arrows_and_labels() {
        let r = report("three-answers");
        let rows: Vec<Row> = r.events.iter().map(row_of).collect();
        // The requests go client → LB; the answers come back LB → client, coloured by who
        // made them: the app's 200, and the LB's 502 and 504 by their causes.
        let answers: Vec<(Lane, Lane, Tone)> = rows
            .iter()
            .filter_map(|row| match row {
                Row::Arrow { from, to, tone, .. }
                    if *to == Lane::Client && !matches!(tone, Tone::Close) =>
                {
                    Some((*from, *to, tone.clone()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            answers,
            vec![
                (Lane::Lb, Lane::Client, Tone::App),
                (
                    Lane::Lb,
                    Lane::Client,
                    Tone::Cause("target_closed_connection".into())
                ),
                (
                    Lane::Lb,
                    Lane::Client,
                    Tone::Cause("target_idle_timeout".into())
                ),
            ]
        );
        assert!(rows.contains(&Row::Arrow {
            from: Lane::App,
            to: Lane::Lb,
            label: "app answers 200".into(),
            tone: Tone::App,
            dashed: false,
        }));
        assert!(matches!(
            &rows[6],
            Row::Arrow {
                from: Lane::App,
                to: Lane::Lb,
                tone: Tone::Close,
                dashed: true,
                ..
            }
        ));
        assert!(matches!(&rows[7], Row::Band { note: false, .. }));
        assert!(matches!(&rows[0], Row::Band { note: true, .. }));
        let causes = causes(&rows);
        assert_eq!(causes.len(), 2);
        assert_ne!(causes[0].1, causes[1].1, "one colour per cause");

        let svg = svg_picture(&scenario("three-answers"), &r);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        for lane in [">client<", ">load balancer<", ">app<"] {
            assert!(svg.contains(lane), "lane {lane}");
        }
        // An arrow head per arrow row.
        let arrows = rows
            .iter()
            .filter(|r| matches!(r, Row::Arrow { .. }))
            .count();
        assert_eq!(svg.matches("<polygon").count(), arrows);
        for label in [
            "200 OK",
            "502 Bad Gateway",
            "504 Gateway Time-out",
            "LB answers 502 itself: target_closed_connection",
            "LB&#39;s own answer: target_idle_timeout",
            "waits 5 s (50 ms real)",
            "» the app answers",
            "~113 s",
            "+1.130 s",
            "PASS",
            "FAIL",
            "status 504 — got 503",
            "FAIL three-answers: 1/2 checks",
        ] {
            assert!(svg.contains(label), "{label} missing from\n{svg}");
        }
        tags_balance(&svg).unwrap_or_else(|e| panic!("{e}\n{svg}"));
    }

    #[test]
    fn the_page_is_one_self_contained_file() {
        let (a, b) = (report("first"), report("second"));
        let s = scenario("s");
        let page = html_page(&[(&s, &a), (&s, &b)]);
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert_eq!(page.matches("<svg").count(), 2, "one inline SVG per run");
        assert_eq!(page.matches("<section>").count(), 2);
        for outside in ["http://", "https://", "<script", "<link", "url(", "src="] {
            assert!(!page.contains(outside), "{outside} in the page");
        }
        assert!(page.contains("<h2>Why</h2>") && page.contains("<h2>Fix</h2>"));
        assert!(page.contains("<span class=\"pass\">PASS</span>"));
        tags_balance(&page).unwrap_or_else(|e| panic!("{e}\n{page}"));
    }

    #[test]
    fn long_labels_are_clipped_and_kept_whole_in_the_tooltip() {
        let long = "x".repeat(200);
        let mut out = String::new();
        label(&mut out, (0.0, 0.0), "start", "#000", &long, ARROW_MAX);
        assert!(out.contains(&format!("<title>{long}</title>")));
        assert!(out.contains(&format!("{}…</text>", "x".repeat(ARROW_MAX - 1))));
        assert_eq!(wrap("a bb ccc dddd", 6), vec!["a bb", "ccc", "dddd"]);
    }
}
