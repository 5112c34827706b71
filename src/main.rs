use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = lbsim::cli::Cli::parse();
    // Narrating commands print their own story; engine logs would interleave with it.
    let default_filter = if cli.narrates() {
        "lbsim=off"
    } else {
        "lbsim=info"
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter)),
        )
        .init();
    lbsim::cli::run(cli).await
}
