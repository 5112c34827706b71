//! Command-line interface: `lbsim [run flags]`, `lbsim upstream`, `lbsim doctor`,
//! `lbsim scenario`, `lbsim demo`, `lbsim facts`.

use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::admin::{AdminLimits, AdminServer};
use crate::lb::config::{parse_duration, Config, Settings, PRINT_LABEL_WIDTH};
use crate::mock::{MockOptions, MockUpstream};
use crate::net::resolve_upstream;
use crate::sim::{Simulator, StartError};

/// Reproduce AWS ALB and GCP load balancer 502/503/504 errors locally.
#[derive(Debug, Parser)]
#[command(name = "lbsim", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// A subcommand; none runs the proxy.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The proxy's flags.
    #[command(flatten)]
    pub run: RunArgs,
}

impl Cli {
    /// True for commands that tell their own story on the terminal (scenarios, demo),
    /// where the engine's log lines would only get in the way.
    pub fn narrates(&self) -> bool {
        matches!(
            self.command,
            Some(Command::Scenario(_)) | Some(Command::Demo(_))
        )
    }
}

/// Subcommands besides the proxy itself.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the mock upstream app (imitates a Ray Serve/uvicorn app).
    Upstream(UpstreamArgs),
    /// Probe a running app (or check a Ray Serve config file) and say whether it will hit the LB's 502/503/504.
    Doctor(Box<crate::tools::doctor::DoctorArgs>),
    /// Run scenario files (502/503/504 reproductions) and check what happens.
    Scenario(crate::tools::scenario::ScenarioArgs),
    /// A narrated tour of the bundled scenarios, for workshops.
    Demo(crate::tools::scenario::DemoArgs),
    /// Every value a profile holds (timers, statuses, pages, headers, rules), with its
    /// source and confidence.
    Facts(crate::lb::facts::FactsArgs),
    /// Read the load balancer's own logs (ALB access logs, GCP request logs, ingress-nginx
    /// access logs) and name the cause, fix and reproducing scenario of every error it made
    /// itself.
    Triage(crate::tools::triage::TriageArgs),
}

/// Flags of the proxy (the main command).
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Every load-balancer setting (the same type a scenario's `[lb]` table fills).
    #[command(flatten)]
    pub lb: Settings,
    /// Address to listen on for clients.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Serve HTTPS (ALPN offers h2 and http/1.1, as both clouds do; the app still gets
    /// HTTP/1.1) with a certificate for localhost, 127.0.0.1 and ::1 signed by a CA
    /// generated at start, whose certificate goes to --tls-ca-out; or with
    /// --tls-cert/--tls-key.
    #[arg(long)]
    pub tls: bool,
    /// Also serve cleartext HTTP/2 with prior knowledge (`curl --http2-prior-knowledge`)
    /// on the plain listener, beside HTTP/1.1. Neither cloud has such a listener (their
    /// HTTP/2 is over TLS); it spares a test the certificate.
    #[arg(long, conflicts_with = "tls")]
    pub h2c: bool,
    /// Where --tls writes the generated CA's certificate (PEM; overwritten at each start),
    /// for clients to trust: `curl --cacert lbsim-ca.pem https://localhost:8080/`.
    /// [default: lbsim-ca.pem in the current directory]
    #[arg(
        long,
        value_name = "PATH",
        requires = "tls",
        conflicts_with = "tls_cert"
    )]
    pub tls_ca_out: Option<std::path::PathBuf>,
    /// With --tls: your own certificate chain (PEM, server certificate first) instead of
    /// a generated one.
    #[arg(long, value_name = "FILE", requires_all = ["tls", "tls_key"])]
    pub tls_cert: Option<std::path::PathBuf>,
    /// With --tls: the private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires_all = ["tls", "tls_cert"])]
    pub tls_key: Option<std::path::PathBuf>,
    /// The app, as host:port (repeatable). Without it, lbsim starts its mock app.
    #[arg(long, value_name = "HOST:PORT")]
    pub upstream: Vec<String>,
    /// Write an access log to PATH (`-` for stdout), one line per request.
    #[arg(long, value_name = "PATH")]
    pub access_log: Option<String>,
    /// Access-log format (default: the cloud's own: alb, gcp, or nginx for ingress-nginx;
    /// json is lbsim's schema).
    /// Only with --access-log: alone it would write nothing, so clap refuses it.
    #[arg(long, value_enum, requires = "access_log")]
    pub log_format: Option<crate::lb::accesslog::LogFormat>,
    /// Print one plain sentence on stderr per LB-generated error: what, which setting, the fix.
    #[arg(long)]
    pub explain: bool,
    /// Also print the summary (requests by status, the LB's own answers with the fix,
    /// targets) this often; it is always printed when lbsim stops.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub summary_every: Option<Duration>,
    /// Keep-alive of the embedded mock app (used only without --upstream).
    #[arg(long, value_parser = parse_duration, default_value = "5s", value_name = "DURATION")]
    pub mock_keep_alive: Duration,
    /// Serve the control API (JSON over HTTP: /targets, /stats, /metrics, /config) on this
    /// address, e.g. 127.0.0.1:9901. Off unless given.
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<SocketAddr>,
    /// Allow --admin on a non-loopback address (whoever reaches it can change targets).
    #[arg(long, requires = "admin")]
    pub admin_allow_remote: bool,
    /// Serve the live view, a web page of each request, the target group and the counters
    /// as they happen (at /ui on the control API), print its address and open it in a
    /// browser. Starts the control API on 127.0.0.1 (port 9901, or a free one) unless
    /// --admin is given.
    #[arg(long)]
    pub ui: bool,
    /// With --ui: print the live view's address, do not open a browser.
    #[arg(long, requires = "ui")]
    pub no_browser: bool,
    /// ingress-nginx's own settings from an Ingress manifest (its
    /// `nginx.ingress.kubernetes.io/` annotations) or the controller's ConfigMap:
    /// proxy-read-timeout, proxy-connect-timeout, keep-alive, proxy-next-upstream. Flags given
    /// win over the file. Only with --cloud ingress-nginx.
    #[arg(long, value_name = "FILE")]
    pub ingress_config: Option<std::path::PathBuf>,
    /// A cloud's TCP load balancer in front (`--l4`, `--l4-idle-timeout`).
    #[command(flatten)]
    pub l4: crate::lb::l4::L4Args,
    /// Print the effective settings and exit.
    #[arg(long)]
    pub print_config: bool,
}

/// Flags of `lbsim upstream`.
#[derive(Debug, Args)]
pub struct UpstreamArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,
    /// Close idle keep-alive connections after this long (uvicorn's default is 5s).
    #[arg(long, value_parser = parse_duration, default_value = "5s", value_name = "DURATION")]
    pub keep_alive: Duration,
    /// Delay added before every answer.
    #[arg(long, value_parser = parse_duration, default_value = "0s", value_name = "DURATION")]
    pub latency: Duration,
    /// As Ray Serve's `max_queued_requests`: past this many queued requests, answer Ray's
    /// own 503 ("Request dropped due to backpressure ...") — the app's 503, not the LB's.
    #[arg(long, value_name = "N")]
    pub max_queued_requests: Option<usize>,
    /// As Ray Serve's `max_ongoing_requests` (requests served at once before queueing).
    #[arg(long, value_name = "N", default_value_t = crate::mock::RAY_DEFAULT_MAX_ONGOING_REQUESTS)]
    pub max_ongoing_requests: usize,
    /// As Ray Serve's `http_options.request_timeout_s`: a request still unanswered after
    /// this long gets Ray's own 408 ("Request ... timed out after ...s.").
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub request_timeout: Option<Duration>,
}

impl RunArgs {
    /// The HTTPS set-up the flags ask for, if any.
    pub fn tls_setting(&self) -> Option<crate::Tls> {
        if !self.tls {
            return None;
        }
        Some(match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => crate::Tls::Files {
                cert: cert.clone(),
                key: key.clone(),
            },
            _ => crate::Tls::Generate {
                ca_out: self
                    .tls_ca_out
                    .clone()
                    .unwrap_or_else(|| crate::DEFAULT_CA_OUT.into()),
            },
        })
    }
}

/// Installs the SIGINT and SIGTERM handlers now and returns a future that resolves on
/// either. Call it before announcing readiness: a signal that arrives between the
/// announcement and the handler would otherwise kill the process outright.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            match (interrupt, terminate) {
                (Ok(mut int), Ok(mut term)) => {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                }
                (Ok(mut int), Err(_)) => {
                    int.recv().await;
                }
                (Err(_), Ok(mut term)) => {
                    term.recv().await;
                }
                (Err(_), Err(_)) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Runs the parsed command line; the exit code follows Unix habits (2 for usage errors).
pub async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Some(Command::Upstream(args)) => run_upstream(args).await,
        Some(Command::Doctor(args)) => crate::tools::doctor::run(*args).await,
        Some(Command::Scenario(args)) => crate::tools::scenario::run_command(args).await,
        Some(Command::Demo(args)) => crate::tools::scenario::demo(args).await,
        Some(Command::Facts(args)) => crate::lb::facts::run(args),
        Some(Command::Triage(args)) => crate::tools::triage::run(args),
        None => run_proxy(cli.run).await,
    }
}

async fn run_upstream(args: UpstreamArgs) -> ExitCode {
    let stop = shutdown_signal();
    let opts = MockOptions {
        keep_alive: args.keep_alive,
        latency: args.latency,
        max_queued_requests: args.max_queued_requests,
        max_ongoing_requests: args.max_ongoing_requests,
        request_timeout: args.request_timeout,
    };
    let mock = match MockUpstream::start(args.listen, opts).await {
        Ok(m) => m,
        Err(e) => {
            // 8000 is Ray Serve's port too: the likeliest owner is the user's own app.
            let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
                " — another program has it (Ray Serve and uvicorn listen on 8000 by default); \
                 pick another port with --listen 127.0.0.1:PORT"
            } else {
                ""
            };
            eprintln!(
                "lbsim upstream: cannot listen on {}: {e}{hint}",
                args.listen
            );
            return ExitCode::from(1);
        }
    };
    eprintln!(
        "lbsim upstream: mock app on http://{} (keep-alive {}; paths: {})",
        mock.addr,
        crate::human::duration(args.keep_alive),
        crate::mock::PATHS.join(" ")
    );
    stop.await;
    ExitCode::SUCCESS
}

/// `--ingress-config FILE`: the file's ingress-nginx timers and retry rule, under the
/// flags given; says on stderr what it took and what it left.
fn read_ingress_config(path: &std::path::Path, settings: &mut Settings) -> Result<(), String> {
    if settings.cloud != crate::lb::profile::Cloud::IngressNginx {
        return Err(format!(
            "--ingress-config holds ingress-nginx's settings; it needs --cloud ingress-nginx \
             (this is {})",
            crate::lb::profile::Profile::of(settings.cloud).display_name
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--ingress-config {}: {e}", path.display()))?;
    let applied = crate::lb::annotations::apply(&text, settings)
        .map_err(|e| format!("--ingress-config {}: {e}", path.display()))?;
    for line in &applied.taken {
        eprintln!("lbsim: {}: {line}", path.display());
    }
    for line in &applied.ignored {
        eprintln!("lbsim: {}: left alone: {line}", path.display());
    }
    Ok(())
}

/// The TCP load balancer in front, in words: its name, idle timeout per flow (scaled) and
/// what an idled-out flow meets; `None` without `--l4`. The banner and `--print-config`.
fn l4_words(l4: &crate::lb::l4::L4Args, time_scale: f64) -> Option<String> {
    let p = crate::lb::l4::L4Profile::of(l4.l4?);
    let idle = l4.l4_idle_timeout.unwrap_or(p.idle_timeout);
    Some(format!(
        "{} ({} {} per TCP flow, then: {})",
        p.display_name,
        p.timeout_setting,
        crate::human::duration(idle.mul_f64(time_scale)),
        p.on_idle.describe()
    ))
}

/// Refuses a control API address that other machines could reach, unless allowed.
fn check_admin_addr(args: &RunArgs) -> Result<(), String> {
    match args.admin {
        Some(addr) if !addr.ip().is_loopback() && !args.admin_allow_remote => Err(format!(
            "--admin {addr} is not a loopback address and anyone who reaches the control API \
             can change targets; use 127.0.0.1 or ::1, or add --admin-allow-remote"
        )),
        _ => Ok(()),
    }
}

/// A start error in the user's terms: a port that cannot be bound is named by the flag
/// that asked for it, since the library's error knows only the address, and "Address
/// already in use" alone does not say which of --listen and --admin it was.
fn start_error_line(e: &StartError, flag: &str, args: &RunArgs) -> String {
    let StartError::Bind { addr, source } = e else {
        return e.to_string();
    };
    let problem = match source.kind() {
        // The proxy binds first, so --admin on the --listen port fails here: say so.
        io::ErrorKind::AddrInUse
            if flag == "--admin"
                && addr.port() == args.listen.port()
                && (addr.ip() == args.listen.ip()
                    || addr.ip().is_unspecified()
                    || args.listen.ip().is_unspecified()) =>
        {
            format!(
                "address already in use by lbsim's own --listen {}; give the control API a \
                 port of its own",
                args.listen
            )
        }
        io::ErrorKind::AddrInUse => {
            "address already in use (is another lbsim or your app on it?)".to_string()
        }
        io::ErrorKind::PermissionDenied => {
            "permission denied (ports below 1024 need privileges; pick a higher one)".to_string()
        }
        io::ErrorKind::AddrNotAvailable => {
            "address not available (no interface of this machine has that IP)".to_string()
        }
        _ => source.to_string(),
    };
    format!("{flag} {addr}: {problem}")
}

async fn run_proxy(args: RunArgs) -> ExitCode {
    let stop = shutdown_signal();
    if let Err(e) = check_admin_addr(&args) {
        eprintln!("lbsim: {e}");
        return ExitCode::from(2);
    }
    let mut settings = args.lb.clone();
    if let Some(path) = &args.ingress_config {
        if let Err(e) = read_ingress_config(path, &mut settings) {
            eprintln!("lbsim: {e}");
            return ExitCode::from(2);
        }
    }
    let config = match Config::build(&settings) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("lbsim: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(flavour) = args.l4.l4 {
        if let Err(e) = crate::lb::l4::L4Profile::of(flavour).check(settings.cloud) {
            eprintln!("lbsim: {e}");
            return ExitCode::from(2);
        }
    }
    if config.target_protocol.is_http2() && args.upstream.is_empty() {
        eprintln!(
            "lbsim: --target-protocol {} needs --upstream: the embedded mock app speaks HTTP/1.1 only",
            config.target_protocol.word()
        );
        return ExitCode::from(2);
    }
    if args.print_config {
        println!("{config}");
        println!("{:<w$}{}", "listen:", args.listen, w = PRINT_LABEL_WIDTH);
        let tls = match args.tls_setting() {
            None if args.h2c => "off (plain HTTP/1.1, and HTTP/2 with prior knowledge)".to_string(),
            None => "off (plain HTTP)".to_string(),
            Some(crate::Tls::Generate { ca_out }) => format!(
                "HTTPS (h2, http/1.1), certificate generated at start, CA written to {}",
                ca_out.display()
            ),
            Some(crate::Tls::Files { cert, key }) => format!(
                "HTTPS (h2, http/1.1), certificate {} and key {}",
                cert.display(),
                key.display()
            ),
        };
        println!("{:<w$}{tls}", "tls:", w = PRINT_LABEL_WIDTH);
        let l4 = l4_words(&args.l4, config.time_scale).unwrap_or_else(|| "none".to_string());
        println!("{:<w$}{l4}", "l4 in front:", w = PRINT_LABEL_WIDTH);
        let upstreams = if args.upstream.is_empty() {
            "(embedded mock app)".to_string()
        } else {
            args.upstream.join(", ")
        };
        println!("{:<w$}{upstreams}", "upstreams:", w = PRINT_LABEL_WIDTH);
        if let Some(admin) = args.admin {
            println!("{:<w$}{admin}", "control API:", w = PRINT_LABEL_WIDTH);
        }
        if args.ui {
            let at = match args.admin {
                Some(admin) => format!("http://{admin}{}", crate::ui::PAGE_PATH),
                None => format!(
                    "http://{}{} (or a free port if taken)",
                    crate::ui::DEFAULT_ADDR,
                    crate::ui::PAGE_PATH
                ),
            };
            println!("{:<w$}{at}", "live view:", w = PRINT_LABEL_WIDTH);
        }
        return ExitCode::SUCCESS;
    }
    let mut targets = Vec::new();
    for text in &args.upstream {
        match resolve_upstream(text).await {
            Ok(addr) => targets.push(addr),
            Err(e) => {
                eprintln!("lbsim: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let mut builder = Simulator::builder(args.lb.cloud)
        .settings(settings)
        .listen(args.listen)
        .explain(args.explain);
    if let Some(flavour) = args.l4.l4 {
        builder = builder.l4(flavour, args.l4.l4_idle_timeout);
    }
    if let Some(path) = &args.access_log {
        builder = builder.access_log(path, args.log_format);
    }
    if let Some(tls) = args.tls_setting() {
        builder = builder.tls(tls);
    }
    builder = builder.http2_cleartext(args.h2c);
    for t in &targets {
        builder = builder.upstream(*t);
    }
    // Both ports are bound before anything serves, the proxy's first: --admin on the
    // --listen port is reported as that, and a failure leaves nothing running behind it.
    // (The mock app's free port, taken later, can never be either.)
    let bind = |addr: SocketAddr, flag: &str| {
        crate::net::bind(addr).map_err(|source| {
            let e = StartError::Bind { addr, source };
            eprintln!("lbsim: {}", start_error_line(&e, flag, &args));
            ExitCode::from(1)
        })
    };
    let proxy_listener = match bind(args.listen, "--listen") {
        Ok(l) => l,
        Err(code) => return code,
    };
    let admin_listener = match (args.admin, args.ui) {
        (Some(addr), _) => match bind(addr, "--admin") {
            Ok(l) => Some(l),
            Err(code) => return code,
        },
        (None, true) => match crate::ui::bind_default() {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("lbsim: --ui: cannot listen on 127.0.0.1 for the control API: {e}");
                return ExitCode::from(1);
            }
        },
        (None, false) => None,
    };
    let mut sim = match builder.start_on(proxy_listener).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("lbsim: {}", start_error_line(&e, "--listen", &args));
            return ExitCode::from(1);
        }
    };
    let admin = match admin_listener
        .map(|l| AdminServer::start_on(l, sim.control(), AdminLimits::default()))
        .transpose()
    {
        Ok(a) => a,
        Err(e) => {
            eprintln!("lbsim: cannot serve the control API: {e}");
            return ExitCode::from(1);
        }
    };
    // Kept alive for as long as the proxy runs.
    let mut _mock = None;
    if targets.is_empty() {
        let opts = MockOptions {
            keep_alive: args.mock_keep_alive,
            ..MockOptions::default()
        };
        match MockUpstream::start(SocketAddr::from(([127, 0, 0, 1], 0)), opts).await {
            Ok(mock) => {
                eprintln!(
                    "lbsim: no --upstream given; started the mock app on http://{} (paths: {})",
                    mock.addr,
                    crate::mock::PATHS.join(" ")
                );
                // A fresh mock's address cannot already be a target.
                let _ = sim.register(mock.addr);
                targets.push(mock.addr);
                _mock = Some(mock);
            }
            Err(e) => {
                eprintln!("lbsim: cannot start the mock app: {e}");
                return ExitCode::from(1);
            }
        }
    }
    let c = sim.config();
    eprintln!(
        "lbsim: {} listening on {}://{} -> {} ({} {:?}, time scale {})",
        c.profile.display_name,
        sim.scheme(),
        sim.addr(),
        targets
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        c.profile.timeout_setting,
        c.timers.timeout,
        c.time_scale
    );
    if let Some(l4) = l4_words(&args.l4, c.time_scale) {
        eprintln!("lbsim: in front: {l4}");
    }
    if let Some(ca) = sim.tls_ca() {
        eprintln!(
            "lbsim: HTTPS (HTTP/2 and HTTP/1.1) certificate for localhost, 127.0.0.1 and ::1, \
             signed by a CA made at start; its certificate is in {} \
             (curl --http2 --cacert {} https://localhost:{}/)",
            ca.display(),
            ca.display(),
            sim.addr().port()
        );
    }
    if let Some(admin) = admin.as_ref().map(AdminServer::addr) {
        eprintln!(
            "lbsim: control API on http://{admin} (GET /targets /stats /metrics /config; \
             POST /targets; DELETE /targets/{{id}}; PUT /targets/{{id}}/health; POST /stats/reset)"
        );
    }
    if let (true, Some(admin)) = (args.ui, admin.as_ref().map(AdminServer::addr)) {
        let url = format!("http://{admin}{}", crate::ui::PAGE_PATH);
        eprintln!("lbsim: live view on {url}");
        if !args.no_browser {
            crate::ui::open_in_browser(&url);
        }
    }
    for line in crate::tools::report::start_state(c, &sim.targets()).await {
        eprintln!("lbsim: {line}");
    }
    let say_summary = |sim: &crate::SimHandle| {
        eprint!(
            "{}",
            crate::tools::report::summary(sim.config(), &sim.stats(), &sim.targets())
        );
    };
    tokio::pin!(stop);
    match args.summary_every {
        Some(every) if !every.is_zero() => loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = tokio::time::sleep(every) => say_summary(&sim),
            }
        },
        _ => stop.await,
    }
    eprintln!("lbsim: shutting down; letting in-flight requests finish");
    sim.stop_and_wait().await;
    if let Some(admin) = admin {
        admin.shutdown().await;
    }
    say_summary(&sim);
    ExitCode::SUCCESS
}
