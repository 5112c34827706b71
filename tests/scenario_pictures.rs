//! `lbsim scenario run NAME --html FILE --svg FILE`: the binary writes one self-contained
//! page and one SVG picture of a bundled scenario's run, with its name, its answers' statuses
//! and its verdicts, and nothing that loads from elsewhere.

use lbsim::scenario::tags_balance;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_lbsim");

/// The only `http://` a picture may hold: the SVG namespace, a name rather than an address
/// anything loads.
const SVG_NAMESPACE: &str = "xmlns=\"http://www.w3.org/2000/svg\"";

/// A fresh folder for this test's files.
fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lbsim-pictures-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn lbsim(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .expect("run lbsim")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Nothing in `doc` loads from anywhere: no address, script, link, external url() or src.
fn assert_self_contained(doc: &str, what: &str) {
    let without_namespace = doc.replace(SVG_NAMESPACE, "");
    for outside in [
        "http://", "https://", "<script", "<link", "url(", "src=", "href=",
    ] {
        assert!(
            !without_namespace.contains(outside),
            "{what} holds {outside:?}:\n{doc}"
        );
    }
}

#[test]
fn html_and_svg_pictures_of_bundled_scenarios() {
    let dir = temp_dir("pictures");
    let html = dir.join("run.html");
    let svg = dir.join("run.svg");
    let two_html = dir.join("two.html");
    // Two runs side by side (each ~0.1 to 1 s at its own time scale of 0.01): one writes
    // both pictures of the keep-alive 502, the other a page of two scenarios with a 504.
    let (one, two) = std::thread::scope(|s| {
        let one = s.spawn(|| {
            lbsim(&[
                "scenario",
                "run",
                "aws-502-keepalive",
                "--html",
                html.to_str().unwrap(),
                "--svg",
                svg.to_str().unwrap(),
            ])
        });
        let two = s.spawn(|| {
            lbsim(&[
                "scenario",
                "run",
                "aws-502-keepalive",
                "aws-504-slow-app",
                "--html",
                two_html.to_str().unwrap(),
            ])
        });
        (one.join().unwrap(), two.join().unwrap())
    });
    for out in [&one, &two] {
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(String::from_utf8_lossy(&one.stdout).contains(&format!("wrote {}", svg.display())));

    let (html, svg, two_html) = (read(&html), read(&svg), read(&two_html));
    for (doc, what) in [
        (&html, "html"),
        (&svg, "svg"),
        (&two_html, "two-scenario html"),
    ] {
        assert!(doc.len() > 2000, "{what} is {} bytes", doc.len());
        assert!(
            doc.contains("aws-502-keepalive"),
            "{what} names the scenario"
        );
        // The first answer is the app's 200, the second the ALB's 502 over the stale
        // connection, and every expectation passed.
        for text in [
            "200 OK",
            "502 Bad Gateway",
            "target_closed_connection",
            "PASS",
        ] {
            assert!(doc.contains(text), "{text} missing from the {what}");
        }
        assert!(!doc.contains("FAIL"), "{what}");
        assert_self_contained(doc, what);
        tags_balance(doc).unwrap_or_else(|e| panic!("{what}: {e}"));
    }
    // Who answered, read from the run's own timeline lines: the 200 is drawn in the app's
    // green, the 502 in the colour of its cause (the first cause's), named in the legend.
    for doc in [&html, &svg] {
        assert!(doc.contains("fill=\"#2ca02c\"><title>client a: 200 OK"));
        assert!(doc.contains("fill=\"#d62728\"><title>client #1: 502 Bad Gateway"));
        assert!(doc.contains(">LB&#39;s own answer: target_closed_connection</text>"));
    }
    assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
    assert!(svg.trim_end().ends_with("</svg>"));
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_eq!(html.matches("<svg").count(), 1, "the SVG is inline");
    // Why and fix, as the terminal report's scenario file words them.
    assert!(html.contains("<h2>Why</h2>") && html.contains("<h2>Fix</h2>"));
    assert!(svg.contains(">why</text>") && svg.contains(">fix</text>"));

    assert_eq!(two_html.matches("<section>").count(), 2);
    for text in [
        "aws-504-slow-app",
        "504 Gateway Time-out",
        "target_idle_timeout",
    ] {
        assert!(two_html.contains(text), "{text} missing from the page");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn svg_takes_one_scenario_and_runs_none_otherwise() {
    let dir = temp_dir("svg-two");
    let svg = dir.join("two.svg");
    let out = lbsim(&[
        "scenario",
        "run",
        "aws-502-keepalive",
        "aws-504-slow-app",
        "--svg",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--svg draws one scenario, 2 given"));
    assert!(out.stdout.is_empty(), "nothing ran");
    assert!(!svg.exists());
    let _ = std::fs::remove_dir_all(&dir);
}
