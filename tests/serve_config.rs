//! `lbsim doctor --serve-config`: the static check of a Ray Serve config (or an Anyscale
//! service config) against the cloud's values, through the library and the built binary.
//! Uses the files in examples/serve-configs/.

use std::path::PathBuf;
use std::time::Duration;

use lbsim::doctor::serve_config::{diagnose, Options, ServeConfig, BACKPRESSURE, TIMEOUT};
use lbsim::doctor::{DoctorError, Report, Verdict, HEALTH, KEEP_ALIVE};
use lbsim::profile::Profile;
use lbsim::{Cloud, Config, LbDefaults, Reason, Settings};

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples/serve-configs")
        .join(name)
}

fn options(cloud: Cloud, file: PathBuf) -> Options {
    Options {
        settings: Settings::new(cloud),
        file,
        health_path: None,
    }
}

fn report(cloud: Cloud, name: &str) -> Report {
    diagnose(&options(cloud, example(name))).expect("the example parses")
}

/// A file in a fresh temporary folder.
fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "lbsim-serve-config-{}-{}",
        std::process::id(),
        name.replace('.', "-")
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn keep_alive_of_90_s_behind_gcp_is_a_risk_with_the_numbers_and_the_fix() {
    let report = report(Cloud::Gcp, "keep-alive-90.yaml");
    assert_eq!(report.exit_code, 1, "{report:#?}");
    assert_eq!(report.upstream, None);
    assert!(report
        .serve_config
        .as_deref()
        .unwrap()
        .ends_with("keep-alive-90.yaml"));
    let ka = report.check(KEEP_ALIVE).unwrap();
    assert_eq!(ka.verdict, Verdict::Risk);
    assert_eq!(ka.measured, "90 s");
    assert_eq!(ka.measured_s, Some(90.0));
    assert_eq!(ka.lb_value, "600 s");
    assert_eq!(ka.lb_value_s, 600.0);
    // The status is the profile's own keep-alive-race answer, whatever it is.
    let status = Profile::of(Cloud::Gcp)
        .outcome(Reason::KeepAliveRace)
        .status;
    assert!(
        ka.detail
            .contains("keep-alive-90.yaml: http_options.keep_alive_timeout_s is 90 s"),
        "{}",
        ka.detail
    );
    assert!(
        ka.detail.ends_with(&format!(
            "GCP load balancer keeps them 600 s → {status} on reuse for the requests it does \
             not send again (GET, HEAD, OPTIONS, DELETE, PUT, PATCH are retried)"
        )),
        "{}",
        ka.detail
    );
    // One fix for both doctors and the proxy's explanation.
    let config = Config::build(&Settings::new(Cloud::Gcp)).unwrap();
    assert_eq!(
        ka.fix.as_deref(),
        Some(lbsim::advice::keep_alive_fix(&config).as_str())
    );
    assert!(ka
        .fix
        .as_deref()
        .unwrap()
        .contains("`http_options.keep_alive_timeout_s: 610`"));
    // The other checks pass and say whose error a slow or queued request gets.
    let timeout = report.check(TIMEOUT).unwrap();
    assert_eq!(timeout.verdict, Verdict::Pass);
    assert_eq!(timeout.measured_s, None);
    assert!(
        timeout.detail.contains("request_timeout_s is unset"),
        "{}",
        timeout.detail
    );
    let bp = report.check(BACKPRESSURE).unwrap();
    assert_eq!(bp.verdict, Verdict::Pass);
    assert!(
        bp.detail.contains(
            "applications[0].deployments[0].max_queued_requests (app1/Model) is 100: beyond 100 \
             queued requests Ray answers its own 503 (the app's, not the LB's)"
        ),
        "{}",
        bp.detail
    );
    // The file sets Ray's own replica health checks: the health reminder is there.
    let health = report.check(HEALTH).unwrap();
    assert_eq!(health.verdict, Verdict::Pass);
    assert!(health.detail.contains("/-/healthz"), "{}", health.detail);
    assert!(
        health.detail.contains("Ray's own replica checks"),
        "{}",
        health.detail
    );
}

#[test]
fn keep_alive_of_620_s_passes_and_a_shorter_request_timeout_is_rays_408() {
    let report = report(Cloud::Gcp, "keep-alive-620.yaml");
    assert_eq!(report.exit_code, 0, "{report:#?}");
    assert!(report.checks.iter().all(|c| c.verdict == Verdict::Pass));
    assert!(report.checks.iter().all(|c| c.fix.is_none()));
    let ka = report.check(KEEP_ALIVE).unwrap();
    assert_eq!(ka.measured_s, Some(620.0));
    assert!(
        ka.detail.ends_with("so the LB closes first"),
        "{}",
        ka.detail
    );
    let status = Profile::of(Cloud::Gcp)
        .outcome(Reason::TargetTimeout)
        .status;
    let timeout = report.check(TIMEOUT).unwrap();
    assert_eq!(timeout.measured_s, Some(300.0));
    assert_eq!(timeout.lb_value_s, 600.0);
    assert!(
        timeout
            .detail
            .ends_with(&format!("the client sees Ray's 408, not the LB's {status}")),
        "{}",
        timeout.detail
    );
    // No --health-path and no Ray health settings: no health check.
    assert!(report.check(HEALTH).is_none());
}

#[test]
fn the_anyscale_wrapper_is_read_and_unset_keep_alive_is_rays_default() {
    let report = report(Cloud::Aws, "anyscale-service.yaml");
    assert_eq!(report.exit_code, 1);
    let ka = report.check(KEEP_ALIVE).unwrap();
    assert_eq!(ka.verdict, Verdict::Risk);
    assert_eq!(ka.measured, "90 s (unset: Ray's default)");
    assert_eq!(ka.lb_value_s, 300.0);
    assert!(
        ka.detail
            .contains("ray_serve_config.http_options.keep_alive_timeout_s is unset"),
        "{}",
        ka.detail
    );
    let timeout = report.check(TIMEOUT).unwrap();
    assert_eq!(timeout.measured_s, Some(30.0));
    let bp = report.check(BACKPRESSURE).unwrap();
    assert!(
        bp.detail.contains(
            "ray_serve_config.applications[0].deployments[0].max_queued_requests (app1/Model) \
             is unset"
        ),
        "{}",
        bp.detail
    );
    assert!(bp.detail.contains("unlimited"), "{}", bp.detail);
}

#[test]
fn the_lb_values_follow_the_same_flags_as_the_live_doctor() {
    // The ALB's stock idle timeout (60 s) is under Ray's 90 s: the LB closes first.
    let mut o = options(Cloud::Aws, example("keep-alive-90.yaml"));
    o.settings.defaults = LbDefaults::Native;
    let r = diagnose(&o).unwrap();
    assert_eq!(r.check(KEEP_ALIVE).unwrap().verdict, Verdict::Pass);
    assert_eq!(r.check(KEEP_ALIVE).unwrap().lb_value_s, 60.0);
    o.settings.idle_timeout = Some(Duration::from_secs(90));
    let r = diagnose(&o).unwrap();
    // Equal values race: a risk.
    assert_eq!(r.check(KEEP_ALIVE).unwrap().verdict, Verdict::Risk);
    // A time scale shrinks what lbsim runs, not the file's production numbers.
    let mut o = options(Cloud::Gcp, example("keep-alive-90.yaml"));
    o.settings.time_scale = 0.01;
    let r = diagnose(&o).unwrap();
    let ka = r.check(KEEP_ALIVE).unwrap();
    assert_eq!(ka.verdict, Verdict::Risk);
    assert_eq!(ka.lb_value_s, 600.0);
    assert_eq!(
        ka.lb_value,
        "600 s (6 s as lbsim runs it at --time-scale 0.01)"
    );
    assert!(ka
        .fix
        .as_deref()
        .unwrap()
        .starts_with("Set the app's keep-alive above 600 s"));
    // A flag that contradicts the cloud is an error, as in the live doctor.
    let mut o = options(Cloud::Gcp, example("keep-alive-90.yaml"));
    o.settings.idle_timeout = Some(Duration::from_secs(10));
    assert!(matches!(diagnose(&o), Err(DoctorError::Config(_))));
}

#[test]
fn unknown_keys_are_ignored() {
    let plain = "http_options:\n  keep_alive_timeout_s: 700\napplications:\n- name: a\n  \
                 deployments:\n  - name: d\n    max_queued_requests: 5\n";
    let noisy = "kind: whatever\nhttp_options:\n  keep_alive_timeout_s: 700\n  \
                 middlewares: [x]\n  ssl_keyfile: null\napplications:\n- name: a\n  \
                 args: {model: big, sizes: [1, 2]}\n  deployments:\n  - name: d\n    \
                 max_queued_requests: 5\n    autoscaling_config: {min_replicas: 1}\n\
                 extra_top: {nested: {deeper: [1, {x: y}]}}\n";
    let a = ServeConfig::parse("plain.yaml", plain).unwrap();
    let b = ServeConfig::parse("noisy.yaml", noisy).unwrap();
    assert_eq!(a, b);
    assert_eq!(b.keep_alive_timeout_s, Some(700.0));
    assert_eq!(
        b.applications[0].deployments[0].max_queued_requests,
        Some(5)
    );
}

#[test]
fn a_health_path_no_route_covers_is_a_503_risk_and_rays_own_passes() {
    let file = temp_file(
        "routes.yaml",
        "http_options:\n  keep_alive_timeout_s: 700\napplications:\n- name: api\n  \
         route_prefix: /api\n",
    );
    let mut o = options(Cloud::Gcp, file);
    o.health_path = Some("/healthz".into());
    let r = diagnose(&o).unwrap();
    let h = r.check(HEALTH).unwrap();
    assert_eq!(h.verdict, Verdict::Risk, "{h:#?}");
    assert_eq!(r.exit_code, 1);
    assert!(
        h.detail.contains("Ray Serve's proxy answers 404"),
        "{}",
        h.detail
    );
    assert!(h.fix.as_deref().unwrap().contains("/-/healthz"));
    o.health_path = Some("/api/health".into());
    let r = diagnose(&o).unwrap();
    assert_eq!(r.check(HEALTH).unwrap().verdict, Verdict::Pass);
    assert!(r
        .check(HEALTH)
        .unwrap()
        .detail
        .contains("route_prefix /api sends it to api"));
    o.health_path = Some("/-/healthz".into());
    let r = diagnose(&o).unwrap();
    assert_eq!(r.exit_code, 0);
    assert!(r
        .check(HEALTH)
        .unwrap()
        .detail
        .contains("answers /-/healthz itself"));
}

#[test]
fn a_malformed_file_gives_file_line_column_and_what_was_expected() {
    let file = temp_file(
        "broken.yaml",
        "http_options:\n  keep_alive_timeout_s: 90\n applications: [\n",
    );
    let err = diagnose(&options(Cloud::Gcp, file.clone())).unwrap_err();
    let said = err.to_string();
    assert!(
        said.starts_with(&format!("{}:3:2: ", file.display())),
        "{said}"
    );
    assert!(said.contains("expected"), "{said}");
    let file = temp_file(
        "wrong-type.yaml",
        "applications:\n- name: a\n  deployments:\n  - max_queued_requests: lots\n",
    );
    let said = diagnose(&options(Cloud::Gcp, file.clone()))
        .unwrap_err()
        .to_string();
    assert!(
        said.starts_with(&format!("{}:4:26: ", file.display())),
        "{said}"
    );
    assert!(
        said.contains("expected -1 (unlimited) or a positive number of requests"),
        "{said}"
    );
}

fn run_binary(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lbsim"))
        .arg("doctor")
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .expect("lbsim runs");
    (
        out.status.code().expect("exit code"),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn binary_exit_codes_follow_the_live_doctor() {
    let ninety = example("keep-alive-90.yaml");
    let ninety = ninety.to_str().unwrap();
    let (code, stdout, stderr) = run_binary(&["--cloud", "gcp", "--serve-config", ninety]);
    assert_eq!(code, 1, "stdout {stdout}\nstderr {stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(
        lines[0].starts_with(&format!(
            "RISK  keep-alive    {ninety}: http_options.keep_alive_timeout_s is 90 s"
        )),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains(". Fix: Set the app's keep-alive above 600 s"),
        "{}",
        lines[0]
    );
    assert!(lines[1].starts_with("PASS  timeout       "), "{}", lines[1]);
    assert!(lines[2].starts_with("PASS  backpressure  "), "{}", lines[2]);
    assert!(lines[3].starts_with("PASS  health        "), "{}", lines[3]);

    let fixed = example("keep-alive-620.yaml");
    let (code, stdout, _) =
        run_binary(&["--cloud", "gcp", "--serve-config", fixed.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}");

    let broken = temp_file(
        "broken-bin.yaml",
        "http_options:\n  keep_alive_timeout_s: 90\n applications: [\n",
    );
    let broken = broken.to_str().unwrap();
    let (code, stdout, stderr) = run_binary(&["--cloud", "gcp", "--serve-config", broken]);
    assert_eq!(code, 2);
    assert_eq!(stdout, "");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("lbsim doctor: {broken}:3:2: ")),
        "{stderr}"
    );
    let (code, stdout, _) = run_binary(&["--serve-config", broken, "--json"]);
    assert_eq!(code, 2);
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["exit_code"], 2);
    assert_eq!(v["serve_config"], broken);
    assert_eq!(v["checks"].as_array().unwrap().len(), 0);
    assert!(v["error"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{broken}:3:2: ")));

    // Probing flags make no sense for a file: clap refuses them (exit 2).
    let (code, _, stderr) = run_binary(&["--serve-config", broken, "--upstream", "x:1"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("cannot be used with"), "{stderr}");
}

#[test]
fn binary_json_has_the_live_doctors_shape() {
    let file = example("anyscale-service.yaml");
    let file = file.to_str().unwrap();
    let (code, stdout, _) = run_binary(&[
        "--cloud",
        "aws",
        "--serve-config",
        file,
        "--health-path",
        "/-/healthz",
        "--json",
    ]);
    assert_eq!(code, 1);
    assert_eq!(stdout.trim().lines().count(), 1);
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    assert_eq!(v["cloud"], "aws");
    assert_eq!(v["serve_config"], file);
    assert!(v.get("upstream").is_none(), "{v}");
    assert_eq!(v["exit_code"], 1);
    let checks = v["checks"].as_array().unwrap();
    let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["keep-alive", "timeout", "backpressure", "health"]);
    for c in checks {
        for key in [
            "verdict",
            "measured",
            "lb_value",
            "fix",
            "detail",
            "measured_s",
            "lb_value_s",
            "at_least",
        ] {
            assert!(c.get(key).is_some(), "{key} missing from {c}");
        }
        assert!(c["detail"].as_str().unwrap().starts_with(file), "{c}");
    }
    assert_eq!(checks[0]["verdict"], "RISK");
    assert_eq!(checks[0]["measured_s"], 90.0);
    assert_eq!(checks[0]["lb_value_s"], 300.0);
    assert!(checks[0]["fix"]
        .as_str()
        .unwrap()
        .contains("keep_alive_timeout_s: 310"));
    assert_eq!(checks[3]["verdict"], "PASS");
    assert!(checks[3]["fix"].is_null());
}

#[test]
fn help_says_what_serve_config_does_and_its_exit_code() {
    let (code, stdout, _) = run_binary(&["--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("--serve-config <FILE>"), "{stdout}");
    assert!(
        stdout.contains("or the --serve-config file cannot\n     be read or parsed"),
        "{stdout}"
    );
}
