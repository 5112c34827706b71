//! `lbsim scenario run|list|show` and `lbsim demo`: the clap arguments and what the commands
//! print. Apart so that the library side (parse, run, render) stays free of clap and stdout.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use super::bundled::{bundled, Bundled, BUNDLED, DEMO};
use super::model::Scenario;
use super::parse::{load, LoadError};
use super::picture::{html_page, svg_picture};
use super::render::{render_checks, render_report, render_timeline, Style};
use super::run::{run, run_shown};
use crate::lb::config::parse_duration;

// The minimal file is a macro so that `concat!` can put it in the help text and the unit
// test can parse the very same text.
macro_rules! help_example {
    () => {
        r#"description = "AWS 502: app keep-alive (5 s) shorter than the ALB's (300 s)"
cloud = "aws"            # or "gcp" (global external), "gcp-classic"
time_scale = 0.01        # every duration below is cloud time: 300 s plays in 3 s

[lb]
race_window = "always"   # every stale reuse fails (not scaled)
health_checks = false

[[targets]]
name = "app"             # kind = "mock" (default): lbsim's mock app
keep_alive = "5s"

[[steps]]
send = "GET /"
expect = { status = 200, reason = "none" }

[[steps]]
target = "app"
wait_for = "idle_close"  # the app closed its idle connection

[[steps]]
send = "GET /"
expect = { status = 502, reason = "target_closed_connection" }
"#
    };
}

/// A complete scenario, as small as one can be and still show a failure; shown by
/// `lbsim scenario --help` (a unit test parses it).
pub const HELP_EXAMPLE: &str = help_example!();

/// `lbsim scenario -h`: where the file format is written down.
const HELP_SHORT: &str = "The file format, every key: scenarios/README.md in the lbsim repository \
(`lbsim scenario --help` shows an example; `lbsim scenario show NAME` prints a bundled file).";

/// `lbsim scenario --help`: the pointer and a minimal file.
const HELP_LONG: &str = concat!(
    "The file format, every key (targets, steps, expectations, which durations scale with \
     time_scale): scenarios/README.md in the lbsim repository. `lbsim scenario show NAME` \
     prints a bundled file to adapt.\n\nA minimal scenario file:\n\n",
    help_example!()
);

/// `lbsim scenario ...`
#[derive(Debug, clap::Args)]
#[command(after_help = HELP_SHORT, after_long_help = HELP_LONG)]
pub struct ScenarioArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ScenarioCommand,
}

/// Subcommands of `lbsim scenario`.
#[derive(Debug, clap::Subcommand)]
pub enum ScenarioCommand {
    /// Run scenario files, folders of them, or bundled scenarios by name (all bundled ones
    /// when none is given). Exits 1 when an expectation fails, 2 when a file is invalid or a
    /// picture cannot be written.
    Run {
        /// Files, folders (their *.toml files) or bundled names.
        paths: Vec<String>,
        /// Also write the runs as one self-contained HTML page (inline CSS and SVG, nothing
        /// loaded): each timeline as a client / load balancer / app sequence diagram, the
        /// PASS/FAIL lines, why and fix. For a CI artifact or a slide.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        /// Also write the run as one SVG picture (the same diagram, with the PASS/FAIL
        /// lines, why and fix below it). Takes exactly one scenario.
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
    },
    /// List the bundled scenarios with their one-line description.
    List,
    /// Print a bundled scenario's file.
    Show {
        /// Bundled scenario name.
        name: String,
    },
}

/// `lbsim demo`
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Pause between scenarios (for a presenter to talk over).
    #[arg(long, value_parser = parse_duration, default_value = "0s", value_name = "DURATION")]
    pub pause: Duration,
    /// Also show each scenario in the live view (a web page; see `lbsim --ui`): print its
    /// address, open it in a browser, wait for it to connect, and keep serving it after
    /// the last scenario until Ctrl-C.
    #[arg(long)]
    pub ui: bool,
    /// With --ui: print the live view's address, do not open a browser.
    #[arg(long, requires = "ui")]
    pub no_browser: bool,
}

/// How long `lbsim demo --ui` waits for the page to connect before it starts anyway.
const PAGE_WAIT: Duration = Duration::from_secs(30);

/// `lbsim demo --ui`: the control API, serving whichever scenario's simulator runs (an
/// idle one before the first), for the live view.
struct DemoView {
    /// Moves the control API to a scenario's simulator.
    show: tokio::sync::watch::Sender<crate::sim::Control>,
    /// Serves the page and the API.
    server: crate::admin::AdminServer,
    /// What the page shows before the first scenario: a simulator with no target.
    _lobby: crate::sim::SimHandle,
}

impl DemoView {
    /// Starts the control API on [`crate::ui::DEFAULT_ADDR`] (or a free port), says where
    /// the page is, opens it unless `no_browser`, and waits (at most [`PAGE_WAIT`]) for it
    /// to follow the events, so that it misses none of the first scenario.
    async fn start(no_browser: bool, style: Style) -> Result<DemoView, String> {
        let lobby = crate::sim::Simulator::builder(crate::lb::profile::Cloud::Aws)
            .listen(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
            .no_health_checks()
            .start()
            .await
            .map_err(|e| format!("cannot start: {e}"))?;
        let listener = crate::ui::bind_default()
            .map_err(|e| format!("cannot listen on 127.0.0.1 for the live view: {e}"))?;
        let (show, controls) = tokio::sync::watch::channel(lobby.control());
        let server = crate::admin::AdminServer::start_following(
            listener,
            controls,
            crate::admin::AdminLimits::default(),
        )
        .map_err(|e| format!("cannot serve the live view: {e}"))?;
        let url = format!("http://{}{}", server.addr(), crate::ui::PAGE_PATH);
        println!("{}", style.bold(&format!("lbsim demo: live view on {url}")));
        if !no_browser {
            crate::ui::open_in_browser(&url);
        }
        let deadline = tokio::time::Instant::now() + PAGE_WAIT;
        if server.event_streams() == 0 {
            println!("{}", style.dim("waiting for the page to open ..."));
        }
        while server.event_streams() == 0 {
            if tokio::time::Instant::now() >= deadline {
                println!(
                    "{}",
                    style.dim("the page did not connect; starting anyway (it can join later)")
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(DemoView {
            show,
            server,
            _lobby: lobby,
        })
    }
}

/// Resolves command-line arguments to scenarios: files, folders, bundled names.
pub fn resolve(args: &[String]) -> Result<Vec<Scenario>, Vec<LoadError>> {
    let mut found = Vec::new();
    let mut errors = Vec::new();
    if args.is_empty() {
        for b in BUNDLED {
            match b.parse() {
                Ok(s) => found.push(s),
                Err(e) => errors.push(e),
            }
        }
    }
    for arg in args {
        let path = Path::new(arg);
        if path.is_dir() {
            let mut files: Vec<_> = match std::fs::read_dir(path) {
                Ok(entries) => entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                    .collect(),
                Err(e) => {
                    errors.push(LoadError::Io {
                        origin: arg.clone(),
                        message: format!("cannot read folder: {e}"),
                    });
                    continue;
                }
            };
            files.sort();
            if files.is_empty() {
                errors.push(LoadError::Io {
                    origin: arg.clone(),
                    message: "no .toml files in this folder".to_string(),
                });
            }
            for f in files {
                match load(&f) {
                    Ok(s) => found.push(s),
                    Err(e) => errors.push(e),
                }
            }
        } else if path.is_file() {
            match load(path) {
                Ok(s) => found.push(s),
                Err(e) => errors.push(e),
            }
        } else if let Some(b) = bundled(arg) {
            match b.parse() {
                Ok(s) => found.push(s),
                Err(e) => errors.push(e),
            }
        } else {
            errors.push(LoadError::Io {
                origin: arg.clone(),
                message: "no such file, folder or bundled scenario (see `lbsim scenario list`)"
                    .to_string(),
            });
        }
    }
    if errors.is_empty() {
        Ok(found)
    } else {
        Err(errors)
    }
}

/// Runs `lbsim scenario ...`.
pub async fn run_command(args: ScenarioArgs) -> ExitCode {
    match args.command {
        ScenarioCommand::List => {
            let width = BUNDLED.iter().map(|b| b.name.len()).max().unwrap_or(0);
            for b in BUNDLED {
                let description = b
                    .parse()
                    .map(|s| s.description)
                    .unwrap_or_else(|e| format!("(invalid: {e})"));
                println!("{:<width$}  {description}", b.name);
            }
            ExitCode::SUCCESS
        }
        ScenarioCommand::Show { name } => {
            match bundled(&name) {
                Some(b) => {
                    print!("{}", b.source);
                    ExitCode::SUCCESS
                }
                None => {
                    eprintln!("lbsim scenario show: no bundled scenario `{name}` (see `lbsim scenario list`)");
                    ExitCode::from(2)
                }
            }
        }
        ScenarioCommand::Run { paths, html, svg } => {
            let scenarios = match resolve(&paths) {
                Ok(s) => s,
                Err(errors) => {
                    for e in errors {
                        eprintln!("{e}");
                    }
                    return ExitCode::from(2);
                }
            };
            if svg.is_some() && scenarios.len() != 1 {
                eprintln!(
                    "lbsim scenario run: --svg draws one scenario, {} given (--html takes several)",
                    scenarios.len()
                );
                return ExitCode::from(2);
            }
            let style = Style::detect();
            let mut failed = Vec::new();
            let mut reports = Vec::new();
            for s in &scenarios {
                let report = run(s).await;
                println!("{}", render_report(&report, style));
                if !report.passed() {
                    failed.push(report.name.clone());
                }
                reports.push(report);
            }
            let runs: Vec<_> = scenarios.iter().zip(&reports).collect();
            if let Some(path) = &html {
                if let Err(code) = write_picture(path, &html_page(&runs), style) {
                    return code;
                }
            }
            if let (Some(path), Some((s, r))) = (&svg, runs.first()) {
                if let Err(code) = write_picture(path, &svg_picture(s, r), style) {
                    return code;
                }
            }
            let total = scenarios.len();
            if failed.is_empty() {
                println!(
                    "{}",
                    style.green(&format!("{total}/{total} scenarios passed"))
                );
                ExitCode::SUCCESS
            } else {
                println!(
                    "{}",
                    style.red(&format!(
                        "{}/{total} scenarios passed; failed: {}",
                        total - failed.len(),
                        failed.join(", ")
                    ))
                );
                ExitCode::from(1)
            }
        }
    }
}

/// Writes a `--html` or `--svg` picture and says so; exit code 2 when it cannot.
fn write_picture(path: &Path, text: &str, style: Style) -> Result<(), ExitCode> {
    match std::fs::write(path, text) {
        Ok(()) => {
            println!("{}", style.dim(&format!("wrote {}", path.display())));
            Ok(())
        }
        Err(e) => {
            eprintln!("lbsim scenario run: cannot write {}: {e}", path.display());
            Err(ExitCode::from(2))
        }
    }
}

fn wrap_indented(text: &str, indent: &str) -> String {
    text.lines()
        .map(|l| format!("{indent}{}\n", l.trim()))
        .collect()
}

/// Runs `lbsim demo`: the [`DEMO`] scenarios, narrated.
pub async fn demo(args: DemoArgs) -> ExitCode {
    let style = Style::detect();
    let mut scenarios = Vec::new();
    for name in DEMO {
        match bundled(name).map(Bundled::parse) {
            Some(Ok(s)) => scenarios.push(s),
            Some(Err(e)) => {
                eprintln!("lbsim demo: {e}");
                return ExitCode::from(2);
            }
            None => {
                eprintln!("lbsim demo: bundled scenario {name} is missing");
                return ExitCode::from(2);
            }
        }
    }
    let n = scenarios.len();
    println!(
        "{}",
        style.bold(&format!(
            "lbsim demo: {n} ways a cloud load balancer answers 502, 503 or 504 — reproduced on this laptop"
        ))
    );
    println!(
        "{}",
        style.dim(
            "Each scenario runs lbsim in front of its mock app with the cloud's timers scaled down \
             (time scale), so minutes take a second. Times are real; ~ shows what they stand for."
        )
    );
    let view = if args.ui {
        match DemoView::start(args.no_browser, style).await {
            Ok(view) => Some(view),
            Err(e) => {
                eprintln!("lbsim demo: --ui: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        None
    };
    let mut passed = 0;
    for (i, s) in scenarios.iter().enumerate() {
        println!();
        println!(
            "{}",
            style.bold(&format!("[{}/{n}] {}", i + 1, s.description))
        );
        println!("{}", style.dim(&format!("      setup: {}", s.setup_line())));
        let notes = s.notes();
        if !notes.is_empty() {
            println!("      what is about to happen:");
            for (k, note) in notes.iter().enumerate() {
                println!("        {}. {note}", k + 1);
            }
        }
        let report = run_shown(s, view.as_ref().map(|v| &v.show)).await;
        println!("      what happened:");
        print!("{}", render_timeline(&report, style, "        "));
        if report.passed() {
            passed += 1;
            println!(
                "      {} {} checks held, as the cloud would behave",
                style.green("✔"),
                report.checks.len()
            );
        } else {
            println!("      {} unexpected:", style.red("✘"));
            print!("{}", render_checks(&report, style, "        "));
        }
        if let Some(why) = &s.why {
            println!("      {}", style.bold("why:"));
            print!("{}", wrap_indented(why, "        "));
        }
        if let Some(fix) = &s.fix {
            println!("      {}", style.bold("fix:"));
            print!("{}", wrap_indented(fix, "        "));
        }
        println!(
            "{}",
            style.dim(&format!("      (lbsim scenario show {})", s.name))
        );
        if !args.pause.is_zero() && i + 1 < n {
            tokio::time::sleep(args.pause).await;
        }
    }
    println!();
    let code = if passed == n {
        println!(
            "{}",
            style.green(&format!(
                "{passed}/{n} scenarios behaved as the clouds do. More: lbsim scenario list"
            ))
        );
        ExitCode::SUCCESS
    } else {
        println!(
            "{}",
            style.red(&format!("{passed}/{n} scenarios behaved as expected"))
        );
        ExitCode::from(1)
    };
    if let Some(view) = view {
        println!(
            "{}",
            style.dim(&format!(
                "the live view (http://{}{}) still shows the last scenario; Ctrl-C to stop",
                view.server.addr(),
                crate::ui::PAGE_PATH
            ))
        );
        let _ = tokio::signal::ctrl_c().await;
        view.server.shutdown().await;
    }
    code
}

#[cfg(test)]
mod tests {
    use super::super::parse::parse;
    use super::*;

    #[test]
    fn the_help_example_is_a_valid_scenario() {
        let s = parse(HELP_EXAMPLE, "help", "help").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.steps.len(), 3);
        assert!(HELP_LONG.ends_with(HELP_EXAMPLE));
        assert!(HELP_LONG.contains("scenarios/README.md"));
    }
}
