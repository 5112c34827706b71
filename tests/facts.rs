//! `lbsim facts` as a user runs it: the JSON list, the table for all three clouds, and
//! clap's error for a cloud it does not know.

use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_lbsim");

/// Runs `lbsim args` to completion (the command only prints, so it cannot hang on input).
fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .env_remove("COLUMNS")
        .stdin(Stdio::null())
        .output()
        .expect("run lbsim")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn json_for_gcp_has_the_backend_timeout_with_its_confidence_and_both_sides() {
    let out = run(&["facts", "--cloud", "gcp", "--json"]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let facts: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("`facts --json` prints JSON");
    let facts = facts.as_array().expect("a JSON array of facts");
    assert!(facts.len() > 50, "{} facts", facts.len());
    for f in facts {
        assert_eq!(f["cloud"], "gcp", "{f}");
        for field in ["key", "value", "source", "confidence"] {
            assert!(
                f[field].as_str().is_some_and(|s| !s.is_empty()),
                "{field} missing or empty: {f}"
            );
        }
    }
    let timeout = facts
        .iter()
        .find(|f| f["key"] == "outcome.target_timeout")
        .expect("the backend-timeout fact");
    assert_eq!(timeout["value"], "504 backend_timeout");
    assert_eq!(timeout["confidence"], "inferred");
    let source = timeout["source"].as_str().unwrap_or_default();
    assert!(
        source.contains("502, 503") && source.contains("504"),
        "{source}"
    );
}

#[test]
fn the_table_has_rows_for_every_cloud() {
    let out = run(&["facts"]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let table = text(&out.stdout);
    for heading in [
        "AWS ALB (--cloud aws):",
        "GCP load balancer (--cloud gcp):",
        "GCP classic load balancer (--cloud gcp-classic):",
        "ingress-nginx (--cloud ingress-nginx):",
    ] {
        assert!(table.contains(heading), "no `{heading}` in:\n{table}");
    }
    // One row per cloud for the same key, each with its own status and confidence.
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| l.starts_with("outcome.target_timeout "))
        .collect();
    assert_eq!(rows.len(), 4, "{rows:#?}");
    assert!(rows[0].contains("504 target_idle_timeout") && rows[0].contains("documented"));
    assert!(rows[1].contains("504 backend_timeout") && rows[1].contains("inferred"));
    assert!(rows[2].contains("502 backend_timeout") && rows[2].contains("documented"));
    assert!(rows[3].contains("504 upstream_timed_out") && rows[3].contains("documented"));
    assert!(!table.contains("no source recorded"), "{table}");
}

#[test]
fn an_unknown_cloud_is_claps_usage_error() {
    let out = run(&["facts", "--cloud", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.starts_with("error: ") && err.contains("nope"), "{err}");
    assert!(
        err.contains("gcp-classic"),
        "the message lists the clouds: {err}"
    );
    assert!(out.stdout.is_empty());
}
