//! Scenario files: every bundled scenario passes, bad files point at `file:line:col`, and the
//! `lbsim scenario` / `lbsim demo` commands behave.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use lbsim::scenario::{self, LoadError, BUNDLED, DEMO};

const BIN: &str = env!("CARGO_BIN_EXE_lbsim");

/// A fresh folder for this test's files.
fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lbsim-scenarios-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn lbsim(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .expect("run lbsim")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bundled_scenario_passes() {
    let scenarios: Vec<_> = BUNDLED
        .iter()
        .map(|b| b.parse().unwrap_or_else(|e| panic!("{e}")))
        .collect();
    assert!(scenarios.len() >= 16, "{} bundled", scenarios.len());
    // Side by side: they only sleep, and each has its own ports.
    let tasks: Vec<_> = scenarios
        .into_iter()
        .map(|s| tokio::spawn(async move { scenario::run(&s).await }))
        .collect();
    let mut failed = Vec::new();
    for task in tasks {
        let report = task.await.unwrap();
        assert!(!report.checks.is_empty(), "{} checks nothing", report.name);
        if !report.passed() {
            failed.push(scenario::render_report(&report, scenario::Style::plain()));
        }
    }
    assert!(failed.is_empty(), "failed:\n{}", failed.join("\n"));
}

#[test]
fn every_file_in_scenarios_is_bundled_and_says_what_it_reproduces() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut on_disk = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        // The file-format reference lives beside the files it describes.
        if path.file_name().is_some_and(|n| n == "README.md") {
            continue;
        }
        assert_eq!(
            path.extension().and_then(|e| e.to_str()),
            Some("toml"),
            "{path:?}"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("# Reproduces:"),
            "{path:?} must start with a comment saying what it reproduces"
        );
        let header: String = text
            .lines()
            .take_while(|l| l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(header.contains("Fixed by:"), "{path:?}: header says no fix");
        on_disk.insert(path.file_stem().unwrap().to_string_lossy().into_owned());
    }
    let bundled: BTreeSet<String> = BUNDLED.iter().map(|b| b.name.to_string()).collect();
    assert_eq!(on_disk, bundled);
    for name in DEMO {
        assert!(scenario::bundled(name).is_some(), "demo names {name}");
    }
}

/// Loads `text` from a file and returns the error, which must start with `path:line:col: `.
fn load_error(test: &str, text: &str, line: usize, col: usize) -> String {
    let dir = temp_dir(test);
    let path = write(&dir, "bad.toml", text);
    let err = scenario::load(&path).expect_err("the file is invalid");
    assert!(matches!(err, LoadError::Parse { .. }), "{err:?}");
    let text = err.to_string();
    let prefix = format!("{}:{line}:{col}: ", path.display());
    assert!(
        text.starts_with(&prefix),
        "expected {prefix:?} at the start of {text:?}"
    );
    text[prefix.len()..].to_string()
}

const GOOD_HEAD: &str = "description = \"d\"\ncloud = \"aws\"\n";

#[test]
fn unknown_field_gets_file_line_col_and_the_expected_names() {
    let text = format!("{GOOD_HEAD}[lb]\nidle_timout = \"3s\"\n\n[[steps]]\nsend = \"GET /\"\n");
    let msg = load_error("unknown-field", &text, 4, 1);
    assert!(msg.contains("unknown field `idle_timout`"), "{msg}");
    assert!(msg.contains("expected one of"), "{msg}");
    assert!(msg.contains("`idle_timeout`"), "{msg}");

    // In a step's expect table too.
    let text = format!(
        "{GOOD_HEAD}\n[[steps]]\nsend = \"GET /\"\nexpect = {{ status = 200, stauts = 1 }}\n"
    );
    let msg = load_error("unknown-expect", &text, 6, 26);
    assert!(msg.contains("unknown field `stauts`"), "{msg}");
}

#[test]
fn wrong_type_gets_file_line_col() {
    let text = format!("{GOOD_HEAD}time_scale = \"fast\"\n[[steps]]\nsend = \"GET /\"\n");
    let msg = load_error("wrong-type", &text, 3, 14);
    assert!(msg.contains("invalid type: string \"fast\""), "{msg}");

    let text = format!("{GOOD_HEAD}[lb]\nidle_timeout = 300\n[[steps]]\nsend = \"GET /\"\n");
    let msg = load_error("duration-number", &text, 4, 16);
    assert!(msg.contains("a duration string such as \"300s\""), "{msg}");

    let text = format!("{GOOD_HEAD}[[steps]]\nwait = \"soon\"\n");
    let msg = load_error("bad-duration", &text, 4, 8);
    assert!(msg.contains("expected a duration like"), "{msg}");

    let text = format!("{GOOD_HEAD}[[steps]]\ntarget = \"app\"\naction = \"explode\"\n");
    let msg = load_error("bad-action", &text, 5, 10);
    assert!(msg.contains("unknown variant `explode`"), "{msg}");
    assert!(msg.contains("`deregister`"), "{msg}");
}

#[test]
fn missing_required_field_gets_file_line_col() {
    // No `cloud` at all: the whole document is the place.
    let text = "description = \"d\"\n[[steps]]\nsend = \"GET /\"\n";
    let msg = load_error("missing-cloud", text, 1, 1);
    assert!(msg.contains("missing field `cloud`"), "{msg}");

    // A target without a name: its table.
    let text = format!("{GOOD_HEAD}[[targets]]\nkind = \"closed\"\n[[steps]]\nsend = \"GET /\"\n");
    let msg = load_error("missing-name", &text, 3, 1);
    assert!(msg.contains("missing field `name`"), "{msg}");
}

#[test]
fn invalid_steps_point_at_their_table() {
    let text = format!(
        "{GOOD_HEAD}\n[[steps]]\nsend = \"GET /\"\n\n[[steps]]\nsend = \"GET /\"\nwait = \"1s\"\n"
    );
    let msg = load_error("two-things", &text, 7, 1);
    assert!(msg.contains("cannot also have `wait`"), "{msg}");

    let text = format!("{GOOD_HEAD}[[steps]]\ntarget = \"nope\"\naction = \"stop\"\n");
    let msg = load_error("unknown-target", &text, 4, 10);
    assert!(msg.contains("no target named `nope`"), "{msg}");

    let text = format!("{GOOD_HEAD}[[steps]]\nsend = \"GET /sleep/{{soon}}\"\n");
    let msg = load_error("bad-template", &text, 4, 8);
    assert!(msg.contains("{soon}"), "{msg}");

    // The settings must suit the cloud.
    let text = format!("{GOOD_HEAD}[lb]\nbackend_timeout = \"3s\"\n[[steps]]\nsend = \"GET /\"\n");
    let msg = load_error("wrong-cloud-flag", &text, 3, 1);
    assert!(msg.contains("does not apply to AWS ALB"), "{msg}");
}

#[test]
fn durations_in_paths_are_scaled() {
    let text = format!(
        "{GOOD_HEAD}time_scale = 0.01\n[[steps]]\nsend = \"GET /stream/10?interval={{20s}}&x={{250ms}}\"\n"
    );
    let s = scenario::parse(&text, "t.toml", "t").unwrap();
    match &s.steps[0].kind {
        scenario::StepKind::Send(send) => {
            assert_eq!(send.path, "/stream/10?interval=0.2&x=0.003")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_bad_file_makes_scenario_run_exit_2_with_file_line_col() {
    let dir = temp_dir("cli-bad-file");
    let path = write(
        &dir,
        "typo.toml",
        &format!("{GOOD_HEAD}[[steps]]\nsend = \"GET /\"\nexpect = {{ statsu = 200 }}\n"),
    );
    let out = lbsim(&["scenario", "run", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{}:5:12: unknown field `statsu`", path.display())),
        "{err}"
    );
    assert!(stdout(&out).is_empty(), "nothing runs: {}", stdout(&out));

    let out = lbsim(&["scenario", "run", "no-such-scenario"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no-such-scenario: no such file, folder or bundled scenario"),
        "{}",
        stderr(&out)
    );
}

const WRONG: &str = r#"description = "expects 200 from a closed port"
cloud = "aws"
time_scale = 0.01

[lb]
health_checks = false

[[targets]]
name = "app"
kind = "closed"

[[steps]]
send = "GET /"
expect = { status = 200, reason = "target_connection_refused" }
"#;

#[test]
fn a_wrong_expectation_fails_with_a_non_zero_exit() {
    let dir = temp_dir("cli-wrong");
    let path = write(&dir, "wrong.toml", WRONG);
    let out = lbsim(&["scenario", "run", path.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}\n{}", stderr(&out));
    assert!(
        text.contains("FAIL  step 1 (line 12) client #1: status 200 — got 502 Bad Gateway"),
        "{text}"
    );
    // The other expectation of the same step held, and says so.
    assert!(
        text.contains("PASS  step 1 (line 12) client #1: x-lbsim-reason target_connection_refused"),
        "{text}"
    );
    assert!(text.contains("FAIL wrong: 1/2 checks"), "{text}");
    assert!(
        text.contains("0/1 scenarios passed; failed: wrong"),
        "{text}"
    );
    // The timeline shows the client and the load balancer.
    assert!(
        text.contains("client #1  → GET / on a new connection"),
        "{text}"
    );
    assert!(
        text.contains("lb         answers 502 itself: target_connection_refused"),
        "{text}"
    );
}

#[tokio::test]
async fn a_wrong_expectation_is_a_failed_check_in_the_report() {
    let s = scenario::parse(WRONG, "wrong.toml", "wrong").unwrap();
    let report = scenario::run(&s).await;
    assert!(!report.passed());
    let failures = report.failures();
    assert_eq!(failures.len(), 1, "{:?}", report.checks);
    assert_eq!(failures[0].expected, "status 200");
    assert_eq!(failures[0].detail, "got 502 Bad Gateway");
    assert_eq!((failures[0].step, failures[0].line), (1, 12));
}

#[test]
fn scenario_run_takes_folders_and_bundled_names() {
    let dir = temp_dir("cli-folder");
    let passthrough = scenario::bundled("aws-500-passthrough").unwrap().source;
    write(&dir, "one.toml", passthrough);
    write(&dir, "two.toml", passthrough);
    write(&dir, "notes.txt", "not a scenario");
    let out = lbsim(&[
        "scenario",
        "run",
        dir.to_str().unwrap(),
        "aws-503-no-targets",
    ]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", stderr(&out));
    assert!(text.contains("PASS one: 10/10 checks"), "{text}");
    assert!(text.contains("PASS two: 10/10 checks"), "{text}");
    assert!(text.contains("PASS aws-503-no-targets:"), "{text}");
    assert!(text.contains("3/3 scenarios passed"), "{text}");
    assert!(!text.contains('\x1b'), "not a terminal: no colors");
}

#[test]
fn scenario_list_shows_every_bundled_one_with_its_description() {
    let out = lbsim(&["scenario", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), BUNDLED.len(), "{text}");
    for (line, b) in lines.iter().zip(BUNDLED) {
        let description = b.parse().unwrap().description;
        assert!(line.starts_with(b.name), "{line}");
        assert!(line.ends_with(&description), "{line}");
    }
    assert!(text.contains("gcp-stream-cut"), "{text}");

    let out = lbsim(&["scenario", "show", "gcp-stream-cut"]);
    assert!(out.status.success());
    assert_eq!(
        stdout(&out),
        scenario::bundled("gcp-stream-cut").unwrap().source
    );
}

#[test]
fn demo_in_plain_mode_finishes_with_success_and_no_escapes() {
    let start = Instant::now();
    let out = lbsim(&["demo"]);
    let took = start.elapsed();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(took < Duration::from_secs(120), "demo took {took:?}");
    assert!(
        !text.contains('\x1b'),
        "ANSI escape in plain output:\n{text}"
    );
    assert!(
        text.contains(&format!(
            "{0}/{0} scenarios behaved as the clouds do",
            DEMO.len()
        )),
        "{text}"
    );
    for (i, name) in DEMO.iter().enumerate() {
        let s = scenario::bundled(name).unwrap().parse().unwrap();
        assert!(
            text.contains(&format!("[{}/{}] {}", i + 1, DEMO.len(), s.description)),
            "{name} missing:\n{text}"
        );
    }
    for part in [
        "what is about to happen:",
        "what happened:",
        "why:",
        "fix:",
        "← 502 Bad Gateway · x-lbsim-reason: target_closed_connection",
        "← 200 OK · from the app · body CUT after",
    ] {
        assert!(text.contains(part), "{part:?} missing:\n{text}");
    }
    assert!(!text.contains("✘"), "{text}");
}

#[tokio::test]
async fn an_external_target_is_used_as_it_is() {
    // An app lbsim did not start: the scenario names its address.
    let app = lbsim::MockUpstream::start(
        "127.0.0.1:0".parse().unwrap(),
        lbsim::MockOptions::default(),
    )
    .await
    .unwrap();
    let text = format!(
        r#"description = "external"
cloud = "gcp"

[lb]
health_checks = false

[[targets]]
name = "mine"
kind = "external"
address = "{}"

[[steps]]
send = "POST /echo"
body = "hello"
conn = "a"
expect = {{ status = 200, reason = "none", body = "hello", headers = {{ via = "1.1 google" }} }}

[[steps]]
send = "GET /status/404"
conn = "a"
expect = {{ status = 404, body = "status 404", closed = false }}
"#,
        app.addr
    );
    let s = scenario::parse(&text, "external.toml", "external").unwrap();
    let report = scenario::run(&s).await;
    assert!(
        report.passed(),
        "{}",
        scenario::render_report(&report, scenario::Style::plain())
    );
    assert_eq!(report.checks.len(), 7);
    // Both requests reached the external app, on one connection from the load balancer.
    assert_eq!(app.requests(), 2);
    assert_eq!(
        app.stats
            .connections
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // The timeline names the client connection and says it was reused.
    let events: Vec<String> = report
        .events
        .iter()
        .map(|e| format!("{} {}", e.who, e.what))
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e == "client a → POST /echo with a 5-byte body on a new connection"),
        "{events:#?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e == "client a → GET /status/404 on the same connection"),
        "{events:#?}"
    );
}

fn reference() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/README.md");
    std::fs::read_to_string(&path).expect("scenarios/README.md")
}

/// The part of `doc` under the one heading that contains `label` (case-insensitive), down
/// to the next heading of the same or a higher level.
fn section<'a>(doc: &'a str, label: &str) -> &'a str {
    let level = |line: &str| line.chars().take_while(|&c| c == '#').count();
    let mut starts = doc
        .match_indices('\n')
        .map(|(i, _)| i + 1)
        .collect::<Vec<_>>();
    starts.insert(0, 0);
    let lines: Vec<(usize, &str)> = starts
        .iter()
        .map(|&i| (i, doc[i..].lines().next().unwrap_or("")))
        .collect();
    let headings: Vec<usize> = (0..lines.len())
        .filter(|&k| {
            let l = lines[k].1;
            level(l) > 0 && l.to_lowercase().contains(&label.to_lowercase())
        })
        .collect();
    assert_eq!(
        headings.len(),
        1,
        "one heading with {label:?} in scenarios/README.md"
    );
    let k = headings[0];
    let own = level(lines[k].1);
    let end = lines[k + 1..]
        .iter()
        .find(|(_, l)| (1..=own).contains(&level(l)))
        .map_or(doc.len(), |(i, _)| *i);
    &doc[lines[k].0..end]
}

#[test]
fn the_reference_names_every_key_and_value_the_parser_accepts() {
    let doc = reference();
    // The lists come from the parser's serde types: a new key fails here until documented.
    let tables = scenario::file_keys();
    let labels: Vec<&str> = tables.iter().map(|(t, _)| *t).collect();
    assert_eq!(
        labels,
        ["top level", "[lb]", "[[targets]]", "[[steps]]", "expect"]
    );
    let mut missing = Vec::new();
    for (table, keys) in &tables {
        assert!(!keys.is_empty(), "{table}: no keys read from the parser");
        let text = section(&doc, table);
        for key in *keys {
            if !text.contains(&format!("`{key}`")) {
                missing.push(format!("{table} key `{key}`"));
            }
        }
    }
    for (key, values) in scenario::file_values() {
        assert!(!values.is_empty(), "{key}: no values read from the parser");
        for value in values {
            if !doc.contains(&format!("`{value}`")) {
                missing.push(format!("`{key}` value `{value}`"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "scenarios/README.md does not document: {missing:#?}"
    );
    // Spot checks that the lists are the parser's and not empty shells.
    assert!(tables[1].1.contains(&"race_window"));
    assert!(tables[4].1.contains(&"tolerance"));
}

#[test]
fn the_references_examples_are_valid_scenarios() {
    let doc = reference();
    let mut found = 0;
    for (i, block) in doc.split("```toml\n").skip(1).enumerate() {
        let text = block.split("```").next().unwrap_or("");
        scenario::parse(
            text,
            &format!("scenarios/README.md example {}", i + 1),
            "example",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        found += 1;
    }
    assert!(found >= 1, "no ```toml example in scenarios/README.md");
    // The minimal file `lbsim scenario --help` shows is valid too.
    scenario::parse(scenario::HELP_EXAMPLE, "help", "help").unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn scenario_help_points_to_the_reference() {
    let long = lbsim(&["scenario", "--help"]);
    assert!(long.status.success(), "{}", stderr(&long));
    let text = stdout(&long);
    assert!(text.contains("scenarios/README.md"), "{text}");
    assert!(text.contains(scenario::HELP_EXAMPLE.trim_end()), "{text}");
    let short = lbsim(&["scenario", "-h"]);
    assert!(
        stdout(&short).contains("scenarios/README.md"),
        "{}",
        stdout(&short)
    );
}

#[tokio::test]
async fn a_target_marked_unhealthy_is_unhealthy_in_checks_and_the_timeline() {
    // Health checks off: the checks' own state is `unavailable`; the override is what
    // routing goes by, so that is the state a scenario sees and checks.
    let text = r#"description = "override"
cloud = "aws"

[lb]
health_checks = false

[[targets]]
name = "app1"

[[targets]]
name = "app2"

[[steps]]
target = "app1"
action = "unhealthy"

[[steps]]
target = "app1"
state = "unhealthy"

[[steps]]
send = "GET /"
expect = { status = 200, body = "ok" }

[[steps]]
target = "app1"
requests = 0

[[steps]]
target = "app1"
action = "auto"

[[steps]]
target = "app1"
state = "unavailable"
"#;
    let s = scenario::parse(text, "override.toml", "override").unwrap();
    let report = scenario::run(&s).await;
    assert!(
        report.passed(),
        "{}",
        scenario::render_report(&report, scenario::Style::plain())
    );
    let events: Vec<String> = report
        .events
        .iter()
        .map(|e| format!("{} {}", e.who, e.what))
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e == "lb target app1: unavailable → unhealthy"),
        "{events:#?}"
    );
}

/// The load balancer's lines come from its event stream, each stamped when it happened:
/// the first health check's verdict (right after start), a deregistration and its end, an
/// answer of the LB's own, worded as ever and in order with the runner's and the client's.
#[tokio::test]
async fn the_timeline_shows_the_load_balancers_events_in_order() {
    let text = r#"description = "timeline"
cloud = "aws"
time_scale = 0.01

[lb]
health_interval = "5s"
deregistration_delay = "20s"

[[targets]]
name = "app"
keep_alive = "310s"

[[steps]]
target = "app"
wait_for = "healthy"
timeout = "100s"

[[steps]]
target = "app"
action = "deregister"

[[steps]]
send = "GET /"
expect = { status = 503, reason = "no_registered_targets" }

[[steps]]
target = "app"
wait_for = "unused"
timeout = "100s"
"#;
    let s = scenario::parse(text, "timeline.toml", "timeline").unwrap();
    let report = scenario::run(&s).await;
    let rendered = scenario::render_report(&report, scenario::Style::plain());
    assert!(report.passed(), "{rendered}");
    let lines: Vec<String> = report
        .events
        .iter()
        .map(|e| format!("{} {}", e.who, e.what))
        .collect();
    let want = [
        "lb target app: initial → healthy (last health check: 200)",
        "runner deregisters app: it drains",
        "lb target app: healthy → draining (last health check: 200)",
        "client #1 → GET / on a new connection",
        "lb answers 503 itself: no_registered_targets",
        "client #1 ← 503 Service Temporarily Unavailable",
        "lb target app: draining → unused (it leaves the target group)",
    ];
    // Each once, in this order.
    let mut at = Vec::new();
    for w in want {
        let found: Vec<usize> = (0..lines.len())
            .filter(|&i| lines[i].starts_with(w))
            .collect();
        assert_eq!(found.len(), 1, "{w:?} once in\n{rendered}");
        at.push(found[0]);
    }
    assert!(at.windows(2).all(|p| p[0] < p[1]), "{at:?} in\n{rendered}");
    // The timeline kept up with the events.
    assert!(!lines.iter().any(|l| l.contains("misses")), "{rendered}");
}

#[test]
fn l4_keys_are_checked_at_their_line() {
    // A combination lbsim refuses on the command line, with the same words, at `l4`.
    let text = format!("{GOOD_HEAD}l4 = \"azure-lb\"\n[[steps]]\nsend = \"GET /\"\n");
    let msg = load_error("l4-refused", &text, 3, 6);
    assert!(msg.contains("--l4 azure-lb cannot front"), "{msg}");

    let text = format!("{GOOD_HEAD}l4 = \"aws-alb\"\n[[steps]]\nsend = \"GET /\"\n");
    let msg = load_error("l4-unknown", &text, 3, 6);
    assert!(msg.contains("`aws-nlb`"), "{msg}");

    let text = format!("{GOOD_HEAD}l4_idle_timeout = \"350s\"\n[[steps]]\nsend = \"GET /\"\n");
    let msg = load_error("l4-idle-alone", &text, 3, 19);
    assert!(msg.contains("needs `l4`"), "{msg}");

    // An ALB behind an NLB is allowed, with an idle timeout.
    let text = format!(
        "{GOOD_HEAD}l4 = \"aws-nlb\"\nl4_idle_timeout = \"60s\"\n[[steps]]\nsend = \"GET /\"\n"
    );
    let s = scenario::parse(&text, "ok.toml", "ok").unwrap();
    assert_eq!(
        s.l4,
        Some((lbsim::L4Flavour::AwsNlb, Some(Duration::from_secs(60))))
    );
}

#[test]
fn reset_and_silent_exclude_a_response() {
    for (expect, word) in [
        ("{ reset = true, status = 200 }", "`status`"),
        ("{ silent = \"1s\", closed = true }", "`closed`"),
        ("{ silent = \"1s\", reset = true }", "exclude each other"),
        ("{ silent = \"1s\", elapsed = \"1s\" }", "`elapsed`"),
    ] {
        let text = format!("{GOOD_HEAD}[[steps]]\nsend = \"GET /\"\nexpect = {expect}\n");
        let msg = load_error("no-answer", &text, 5, 10);
        assert!(msg.contains(word), "{expect}: {msg}");
    }
}

/// ingress-nginx behind `l4` at time scale 0.005: connection `a` answers, idles 400 s
/// (2 s real; past every flavour's timeout), then sends again with `expect`.
fn idled_out(l4: &str, expect: &str) -> scenario::Scenario {
    let text = format!(
        "description = \"d\"\ncloud = \"ingress-nginx\"\nl4 = \"{l4}\"\ntime_scale = 0.005\n\
         [lb]\nclient_keep_alive = \"3600s\"\nhealth_checks = false\n\
         [[targets]]\nname = \"app\"\nkeep_alive = \"3600s\"\n\
         [[steps]]\nsend = \"GET /\"\nconn = \"a\"\nexpect = {{ status = 200 }}\n\
         [[steps]]\nwait = \"400s\"\n\
         [[steps]]\nsend = \"GET /\"\nconn = \"a\"\nexpect = {expect}\n"
    );
    scenario::parse(&text, "idle.toml", "idle").unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_fin_and_silence_are_told_apart() {
    let cases = [
        // Azure's silent drop: silence passes, and the client stops waiting at 100 s
        // (0.5 s real) instead of after 20 s.
        ("azure-lb", "{ silent = \"100s\" }", None),
        // The NLB's reset on the next send.
        ("aws-nlb", "{ reset = true }", None),
        ("aws-nlb", "{ silent = \"100s\" }", Some("reset (TCP RST)")),
        ("aws-nlb", "{ reset = false }", Some("reset (TCP RST)")),
        // Azure's reset at the timeout, met when the idle connection is reused.
        ("azure-lb-reset", "{ reset = true }", None),
        // GCP's passthrough goes on: an answer is neither a reset nor silence.
        ("gcp-passthrough", "{ reset = false }", None),
        ("gcp-passthrough", "{ reset = true }", Some("got 200 OK")),
        (
            "gcp-passthrough",
            "{ silent = \"100s\" }",
            Some("got 200 OK"),
        ),
    ];
    let tasks: Vec<_> = cases
        .iter()
        .map(|&(l4, expect, _)| {
            let s = idled_out(l4, expect);
            tokio::spawn(async move {
                let start = Instant::now();
                (scenario::run(&s).await, start.elapsed())
            })
        })
        .collect();
    for ((l4, expect, fails), task) in cases.iter().zip(tasks) {
        let (report, took) = task.await.unwrap();
        let failures = report.failures();
        assert!(
            took < Duration::from_secs(8),
            "{l4} {expect}: took {took:?}"
        );
        match fails {
            None => assert!(
                report.passed(),
                "{l4} {expect}:\n{}",
                scenario::render_report(&report, scenario::Style::plain())
            ),
            Some(word) => {
                assert_eq!(failures.len(), 1, "{l4} {expect}: {:?}", report.checks);
                assert_eq!(failures[0].step, 3, "{l4} {expect}");
                assert!(
                    failures[0].detail.contains(word),
                    "{l4} {expect}: {:?}",
                    failures[0].detail
                );
            }
        }
    }
}
