//! The bundled scenarios: the files of `scenarios/`, embedded in the binary. Apart because
//! the list grows with every new file while the rest of the tool stays as it is.

use super::model::Scenario;
use super::parse::{parse, LoadError};

/// A scenario file shipped inside the binary.
#[derive(Clone, Copy, Debug)]
pub struct Bundled {
    /// File stem, e.g. `aws-502-keepalive`.
    pub name: &'static str,
    /// The file's text.
    pub source: &'static str,
}

macro_rules! bundled {
    ($($name:literal),* $(,)?) => {
        &[$(Bundled {
            name: $name,
            source: include_str!(concat!("../../../scenarios/", $name, ".toml")),
        }),*]
    };
}

/// Every file of `scenarios/`, in the order `lbsim scenario list` shows them.
pub static BUNDLED: &[Bundled] = bundled![
    "aws-502-keepalive",
    "aws-502-keepalive-fixed",
    "gcp-502-keepalive",
    "gcp-503-keepalive",
    "gcp-get-retry",
    "gcp-502-keepalive-fixed",
    "aws-502-connection-refused",
    "aws-500-passthrough",
    "aws-503-no-targets",
    "aws-unhealthy-fails-open",
    "gcp-503-unhealthy",
    "gcp-classic-502-unhealthy",
    "gcp-503-startup",
    "aws-502-app-stopped",
    "gcp-503-app-stopped",
    "aws-504-slow-app",
    "gcp-504-slow-app",
    "aws-stream-survives",
    "gcp-stream-cut",
    "aws-502-deregistration-cut",
    "aws-deregistration-drains",
    "ray-503-backpressure",
    "ray-408-request-timeout",
    "ingress-nginx-502-keepalive-post",
    "ingress-nginx-504-slow-app",
    "aws-nlb-idle-reset",
    "azure-lb-reset-idle-keepalive",
];

/// The scenarios `lbsim demo` plays, in order.
pub const DEMO: &[&str] = &[
    "aws-502-keepalive",
    "aws-502-keepalive-fixed",
    "gcp-502-keepalive",
    "aws-503-no-targets",
    "gcp-503-startup",
    "aws-unhealthy-fails-open",
    "aws-504-slow-app",
    "aws-stream-survives",
    "gcp-stream-cut",
    "aws-502-deregistration-cut",
];

/// The bundled scenario called `name` (a trailing `.toml` is ignored).
pub fn bundled(name: &str) -> Option<&'static Bundled> {
    let name = name.strip_suffix(".toml").unwrap_or(name);
    BUNDLED.iter().find(|b| b.name == name)
}

impl Bundled {
    /// Parses it; `origin` in messages is `scenarios/NAME.toml`.
    pub fn parse(&self) -> Result<Scenario, LoadError> {
        parse(
            self.source,
            &format!("scenarios/{}.toml", self.name),
            self.name,
        )
    }
}
