//! A layer-4 (TCP) load balancer in front of the L7 one: `--l4 aws-nlb|azure-lb|
//! azure-lb-reset|gcp-passthrough` (issue #17).
//!
//! Kubernetes teams run ingress-nginx behind their cloud's TCP load balancer. That load
//! balancer tracks each TCP flow and forgets it after an idle timeout; what a client then
//! sees depends on the cloud: a reset when it next sends (AWS NLB), silence (Azure Load
//! Balancer's default), a reset at once (Azure with "TCP reset on idle"), or nothing at
//! all (Google's passthrough Network Load Balancer re-hashes the flow to the same
//! backend). Each flavour is data, an [`L4Profile`]; one relay (`serve`) reads it.
//!
//! The relay listens on the user's `--listen` address and relays each client connection,
//! bytes both ways, to the L7 engine's own listener (bound on `127.0.0.1:0`). Every flow
//! has an idle clock that bytes in either direction reset, scaled by `--time-scale` like
//! every cloud timer. What happens when it runs out is the profile's [`OnIdle`].
//!
//! Every value below carries its source and confidence (`L4Profile::facts`), listed by
//! `lbsim facts` under each L4 flavour.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::lb::facts::Confidence;
use crate::lb::profile::Cloud;

/// Which cloud's TCP load balancer sits in front.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum L4Flavour {
    /// AWS Network Load Balancer: TCP idle timeout 350 s; a late sender gets a reset.
    AwsNlb,
    /// Azure Load Balancer (Standard), TCP reset on idle off (the default): idle timeout
    /// 4 minutes; the flow is silently dropped.
    AzureLb,
    /// Azure Load Balancer with "TCP reset on idle" on: a reset to both ends at the
    /// timeout.
    AzureLbReset,
    /// Google Cloud external passthrough Network Load Balancer (Maglev): the tracking
    /// entry expires, the next packet is hashed to the same backend.
    GcpPassthrough,
}

/// What the load balancer does to a flow that stayed idle for its timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnIdle {
    /// The flow is forgotten; the next segment from either end gets a TCP RST, and the
    /// connection is gone for both.
    ResetOnNextSend,
    /// The flow is forgotten silently: whatever either end sends is dropped, nothing is
    /// answered, nothing is closed, until the client gives up on its own.
    Blackhole,
    /// Both ends get a TCP RST at the moment the flow times out.
    ResetBoth,
    /// The tracking entry expires but the next packet is sent to the same backend: the
    /// connection goes on.
    Rehash,
}

impl OnIdle {
    /// The outcome in words (`lbsim facts`).
    pub fn describe(self) -> &'static str {
        match self {
            OnIdle::ResetOnNextSend => {
                "flow forgotten; the next send from client or target gets a TCP RST"
            }
            OnIdle::Blackhole => {
                "flow silently dropped: later packets go unanswered until the client times out"
            }
            OnIdle::ResetBoth => "TCP RST sent to both client and target at the timeout",
            OnIdle::Rehash => {
                "tracking entry expires; the next packet is hashed to the same backend and \
                 the connection goes on"
            }
        }
    }
}

/// One TCP load balancer, as data.
#[derive(Clone, Copy, Debug)]
pub struct L4Profile {
    /// The flavour.
    pub flavour: L4Flavour,
    /// Its product name.
    pub display_name: &'static str,
    /// The setting that holds the idle timeout, as the cloud names it.
    pub timeout_setting: &'static str,
    /// Default idle timeout of an established TCP flow.
    pub idle_timeout: Duration,
    /// What happens at the idle timeout.
    pub on_idle: OnIdle,
    /// The L7 profiles this L4 load balancer is put in front of in a real setup.
    pub fronts: &'static [Cloud],
    /// Why other L7 profiles are refused behind it.
    pub refusal: &'static str,
    /// Sources: (key, source, confidence).
    pub(crate) sources: &'static [(&'static str, &'static str, Confidence)],
}

const AWS_NLB_TIMEOUT_SOURCE: &str = "AWS Elastic Load Balancing, Network Load Balancers user \
    guide, \"Update the TCP idle timeout for your Network Load Balancer listener\", \
    Considerations: \"The default idle timeout value for TCP flows is 350 seconds\" \
    (tcp.idle_timeout.seconds, 60-6000 s; TLS listeners fixed at 350 s)";
const AWS_NLB_OUTCOME_SOURCE: &str = "AWS Elastic Load Balancing, Network Load Balancers user \
    guide, \"Network Load Balancers\", Connection idle timeout: a client or target that sends \
    data after the idle timeout elapses receives a TCP RST packet (the sentence issue #17 \
    quotes; not retrieved again here); \"Update the TCP idle timeout\": if no data is sent \
    by client or target for longer than the idle timeout, the connection is closed; AWS \
    Networking & Content Delivery blog, \"Introducing NLB TCP configurable idle timeout\": \
    NLB tracks each connection in a flow table until closed or idle; a public write-up \
    quoting AWS (kupczynski.info, \"Load Balancer Gotchas\") shows no FIN or RST at the \
    timeout, then a TCP RST to the next packet";
const AWS_NLB_FRONTS_SOURCE: &str = "AWS Elastic Load Balancing, Network Load Balancers user \
    guide, \"Use an Application Load Balancer as a target of a Network Load Balancer\": a \
    target group with a single ALB as the target; any TCP server (ingress-nginx's \
    Service of type LoadBalancer) is an ordinary target";
const AZURE_TIMEOUT_SOURCE: &str = "Microsoft Learn, Azure Load Balancer, \"Configure TCP \
    reset and idle timeout for Azure Load Balancer\": \"The default setting is 4 minutes\" \
    (range 4 to 100 minutes, IdleTimeoutInMinutes / --idle-timeout)";
const AZURE_SILENT_SOURCE: &str = "Microsoft Learn, Azure Load Balancer, \"Load Balancer TCP \
    Reset and Idle Timeout\": \"Load Balancer's default behavior is to silently drop flows \
    when the idle timeout of a flow is reached\"";
const AZURE_RESET_SOURCE: &str = "Microsoft Learn, Azure Load Balancer, \"Load Balancer TCP \
    Reset and Idle Timeout\", TCP reset: with TCP reset on idle enabled (EnableTcpReset / \
    --enable-tcp-reset), Load Balancer sends bidirectional TCP Resets (TCP RST packets) to \
    both client and server endpoints at the time of idle timeout";
const AZURE_FRONTS_SOURCE: &str = "lbsim's choice: Azure Load Balancer fronts Azure \
    workloads (AKS's ingress-nginx); it does not front AWS's ALB or Google's Application \
    Load Balancers, which lbsim refuses";
const GCP_TIMEOUT_SOURCE: &str = "Google Cloud Compute Engine API reference, \
    BackendServiceConnectionTrackingPolicy.idleTimeoutSec: \"Specifies how long to keep a \
    Connection Tracking entry while there is no matching traffic\"; \"For external \
    passthrough Network Load Balancers the default is 60 seconds\" (not settable for \
    them: \"This option is not available publicly\")";
const GCP_OUTCOME_SOURCE: &str = "Inferred from Google Cloud, \"Traffic distribution for \
    external passthrough Network Load Balancers\", Backend selection and connection \
    tracking: \"a backend is selected using consistent hashing. Then, this selection is \
    recorded in a connection tracking table\"; a packet of a flow whose entry expired is \
    hashed again, to the same backend while the backend set is unchanged (one ingress \
    controller here). No Google text says what an idled-out flow sees";
const GCP_FRONTS_SOURCE: &str = "Google Cloud, \"Backend service-based external passthrough \
    Network Load Balancer overview\": passthrough NLBs are not proxies and send packets to \
    backend VMs (such as ingress-nginx's nodes); Google's Application Load Balancers are \
    proxies with their own front ends and are not placed behind one";

/// The four flavours, in `--l4`'s order.
/// AWS Network Load Balancer.
const AWS_NLB: L4Profile = L4Profile {
    flavour: L4Flavour::AwsNlb,
    display_name: "AWS Network Load Balancer",
    timeout_setting: "tcp.idle_timeout.seconds",
    idle_timeout: Duration::from_secs(350),
    on_idle: OnIdle::ResetOnNextSend,
    fronts: &[Cloud::IngressNginx, Cloud::Aws],
    refusal: "an AWS Network Load Balancer fronts ingress-nginx or an AWS Application \
              Load Balancer (an ALB-type target group), not Google's load balancers",
    sources: &[
        (
            "l4.idle_timeout",
            AWS_NLB_TIMEOUT_SOURCE,
            Confidence::Documented,
        ),
        ("l4.on_idle", AWS_NLB_OUTCOME_SOURCE, Confidence::Documented),
        ("l4.fronts", AWS_NLB_FRONTS_SOURCE, Confidence::Documented),
    ],
};

/// Azure Load Balancer, TCP reset on idle off (its default).
const AZURE_LB: L4Profile = L4Profile {
    flavour: L4Flavour::AzureLb,
    display_name: "Azure Load Balancer (TCP reset on idle off)",
    timeout_setting: "idle timeout (minutes)",
    idle_timeout: Duration::from_secs(4 * 60),
    on_idle: OnIdle::Blackhole,
    fronts: &[Cloud::IngressNginx],
    refusal: "Azure Load Balancer fronts Azure workloads such as ingress-nginx on AKS, \
              not AWS's or Google's Application Load Balancers",
    sources: &[
        (
            "l4.idle_timeout",
            AZURE_TIMEOUT_SOURCE,
            Confidence::Documented,
        ),
        ("l4.on_idle", AZURE_SILENT_SOURCE, Confidence::Documented),
        ("l4.fronts", AZURE_FRONTS_SOURCE, Confidence::Inferred),
    ],
};

/// Azure Load Balancer with "TCP reset on idle" on: Azure's profile but for what an
/// idled-out flow meets.
const AZURE_LB_RESET: L4Profile = L4Profile {
    flavour: L4Flavour::AzureLbReset,
    display_name: "Azure Load Balancer (TCP reset on idle on)",
    on_idle: OnIdle::ResetBoth,
    sources: &[
        (
            "l4.idle_timeout",
            AZURE_TIMEOUT_SOURCE,
            Confidence::Documented,
        ),
        ("l4.on_idle", AZURE_RESET_SOURCE, Confidence::Documented),
        ("l4.fronts", AZURE_FRONTS_SOURCE, Confidence::Inferred),
    ],
    ..AZURE_LB
};

/// Google Cloud external passthrough Network Load Balancer.
const GCP_PASSTHROUGH: L4Profile = L4Profile {
    flavour: L4Flavour::GcpPassthrough,
    display_name: "Google Cloud external passthrough Network Load Balancer",
    timeout_setting: "connectionTrackingPolicy.idleTimeoutSec",
    idle_timeout: Duration::from_secs(60),
    on_idle: OnIdle::Rehash,
    fronts: &[Cloud::IngressNginx],
    refusal: "a passthrough Network Load Balancer sends packets to VMs such as \
              ingress-nginx's nodes; Google's Application Load Balancers are proxies \
              with their own front ends, and AWS's ALB is not on Google Cloud",
    sources: &[
        (
            "l4.idle_timeout",
            GCP_TIMEOUT_SOURCE,
            Confidence::Documented,
        ),
        ("l4.on_idle", GCP_OUTCOME_SOURCE, Confidence::Inferred),
        ("l4.fronts", GCP_FRONTS_SOURCE, Confidence::Inferred),
    ],
};

/// Every flavour, for listings (`lbsim facts`) and tests.
pub const L4_PROFILES: [L4Profile; 4] = [AWS_NLB, AZURE_LB, AZURE_LB_RESET, GCP_PASSTHROUGH];

impl L4Profile {
    /// The profile of `flavour`.
    pub fn of(flavour: L4Flavour) -> &'static L4Profile {
        match flavour {
            L4Flavour::AwsNlb => &AWS_NLB,
            L4Flavour::AzureLb => &AZURE_LB,
            L4Flavour::AzureLbReset => &AZURE_LB_RESET,
            L4Flavour::GcpPassthrough => &GCP_PASSTHROUGH,
        }
    }

    /// The name `--l4` takes for this flavour.
    pub fn flag(&self) -> String {
        use clap::ValueEnum;
        self.flavour
            .to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_else(|| format!("{:?}", self.flavour))
    }

    /// What the profile holds, as `(key, value)` (the keys of [`L4Profile::sources`]).
    pub(crate) fn values(&self) -> Vec<(&'static str, String)> {
        let fronts: Vec<String> = self
            .fronts
            .iter()
            .map(|c| {
                use clap::ValueEnum;
                c.to_possible_value()
                    .map(|v| v.get_name().to_string())
                    .unwrap_or_default()
            })
            .collect();
        vec![
            (
                "l4.idle_timeout",
                format!(
                    "{} ({})",
                    crate::human::duration(self.idle_timeout),
                    self.timeout_setting
                ),
            ),
            ("l4.on_idle", self.on_idle.describe().to_string()),
            ("l4.fronts", format!("--cloud {}", fronts.join(" | "))),
        ]
    }

    /// `(key, value, source, confidence)` for each value.
    pub(crate) fn facts(&self) -> Vec<(&'static str, String, &'static str, Confidence)> {
        self.values()
            .into_iter()
            .map(|(key, value)| {
                let (source, confidence) = self
                    .sources
                    .iter()
                    .find(|(k, _, _)| *k == key)
                    .map(|&(_, s, c)| (s, c))
                    .unwrap_or(("(no source recorded)", Confidence::Unconfirmed));
                (key, value, source, confidence)
            })
            .collect()
    }

    /// Refuses an L7 profile this load balancer is not put in front of.
    pub fn check(&self, cloud: Cloud) -> Result<(), L4Refused> {
        if self.fronts.contains(&cloud) {
            Ok(())
        } else {
            Err(L4Refused {
                l4: self.flag(),
                cloud: crate::lb::profile::Profile::of(cloud).display_name,
                why: self.refusal,
            })
        }
    }
}

/// The L4 flavours' facts for `lbsim facts`: a heading per flavour, then one block per
/// value (key, value, confidence, source).
pub(crate) fn facts_text() -> String {
    let mut out = String::new();
    for p in &L4_PROFILES {
        out.push_str(&format!("\n{} (--l4 {}):\n", p.display_name, p.flag()));
        for (key, value, source, confidence) in p.facts() {
            out.push_str(&format!(
                "{key:<18}{value}  [{confidence}]\n{:<18}{source}\n",
                ""
            ));
        }
    }
    out
}

/// `--l4` with a `--cloud` no cloud combines it with.
#[derive(Debug, Clone, thiserror::Error)]
#[error("--l4 {l4} cannot front {cloud}: {why}")]
pub struct L4Refused {
    l4: String,
    cloud: &'static str,
    why: &'static str,
}

/// `--l4` and `--l4-idle-timeout` (flattened into the proxy's flags).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct L4Args {
    /// Put a cloud's TCP load balancer in front (ingress-nginx behind an NLB, Azure Load
    /// Balancer or a passthrough NLB): its idle timeout per TCP flow and what an
    /// idled-out flow sees (reset, silence). `lbsim facts` lists the values and sources.
    #[arg(long, value_enum, value_name = "FLAVOUR")]
    pub l4: Option<L4Flavour>,
    /// The L4 load balancer's idle timeout per TCP flow (before --time-scale; default: the
    /// flavour's own).
    #[arg(long, value_parser = crate::lb::config::parse_duration, value_name = "DURATION", requires = "l4")]
    pub l4_idle_timeout: Option<Duration>,
}

/// What the relay runs with: the profile and its (scaled) idle timeout.
#[derive(Clone, Copy, Debug)]
pub(crate) struct L4Config {
    pub profile: &'static L4Profile,
    pub idle_timeout: Duration,
}

impl L4Config {
    /// The profile of `flavour`, with `idle_timeout` (default: the profile's) times `scale`.
    pub(crate) fn new(flavour: L4Flavour, idle_timeout: Option<Duration>, scale: f64) -> Self {
        let profile = L4Profile::of(flavour);
        L4Config {
            profile,
            idle_timeout: idle_timeout.unwrap_or(profile.idle_timeout).mul_f64(scale),
        }
    }
}

/// The relay task, started by the simulator: it owns the user's address; the engine's is
/// internal. Dropping it drops every flow.
pub(crate) struct Relay {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Starts relaying `outer`'s clients to the engine listening on `inner`.
    pub(crate) fn start(outer: TcpListener, config: L4Config, inner: SocketAddr) -> Relay {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(outer, inner, config, async {
            let _ = stopped.await;
        }));
        Relay {
            stop: Some(stop),
            task,
        }
    }

    /// Stops accepting; open flows go on until the relay is dropped.
    pub(crate) fn stop_accepting(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop_accepting();
        self.task.abort();
    }
}

/// Accepts clients on `listener` and relays each to `backend` (the L7 engine) until `stop`
/// resolves, then waits for the open flows (the caller aborts the task to drop them).
pub(crate) async fn serve(
    listener: TcpListener,
    backend: SocketAddr,
    config: L4Config,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut flows = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    flows.spawn(flow(client, backend, config));
                }
                Err(e) => {
                    tracing::warn!("l4: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = flows.join_next(), if !flows.is_empty() => {}
        }
    }
    drop(listener);
    while flows.join_next().await.is_some() {}
}

/// Size of each direction's relay buffer.
const BUF: usize = 16 * 1024;

/// One TCP flow: relays both ways with an idle clock, then applies the profile's outcome.
async fn flow(client: TcpStream, backend: SocketAddr, config: L4Config) {
    let _ = client.set_nodelay(true);
    let Ok(target) = TcpStream::connect(backend).await else {
        // A passthrough LB's target refusing shows the client a reset.
        reset(client);
        return;
    };
    let _ = target.set_nodelay(true);
    // A re-hashed flow goes to the same backend: its idle clock changes nothing.
    let idle = match config.profile.on_idle {
        OnIdle::Rehash => None,
        _ => Some(config.idle_timeout),
    };
    let (client, target) = match relay(client, target, idle).await {
        Some(both) => both,
        None => return,
    };
    tracing::debug!(
        "l4: flow idle for {:?}: {}",
        config.idle_timeout,
        config.profile.on_idle.describe()
    );
    match config.profile.on_idle {
        OnIdle::ResetBoth => {
            reset(client);
            reset(target);
        }
        OnIdle::ResetOnNextSend => {
            // Wait for either end to send anything (or close): the flow is unknown, so
            // the load balancer answers it with a reset, and both ends lose it.
            let (mut client, mut target) = (client, target);
            let mut a = [0u8; 1];
            let mut b = [0u8; 1];
            tokio::select! {
                _ = client.read(&mut a) => {}
                _ = target.read(&mut b) => {}
            }
            reset(client);
            reset(target);
        }
        OnIdle::Blackhole => blackhole(client, target).await,
        OnIdle::Rehash => unreachable!("relay never ends idle for Rehash"),
    }
}

/// Relays until both ends have closed (None) or the flow stays idle for `idle` (Some: the
/// two sockets, for the outcome); without `idle`, until both ends have closed.
async fn relay(
    mut client: TcpStream,
    mut target: TcpStream,
    idle: Option<Duration>,
) -> Option<(TcpStream, TcpStream)> {
    let mut cbuf = vec![0u8; BUF];
    let mut tbuf = vec![0u8; BUF];
    let mut client_open = true;
    let mut target_open = true;
    let sleep = tokio::time::sleep(idle.unwrap_or(Duration::ZERO));
    tokio::pin!(sleep);
    let touch = |sleep: std::pin::Pin<&mut tokio::time::Sleep>| {
        if let Some(idle) = idle {
            sleep.reset(Instant::now() + idle);
        }
    };
    loop {
        tokio::select! {
            r = client.read(&mut cbuf), if client_open => match r {
                Ok(0) => {
                    client_open = false;
                    let _ = target.shutdown().await;
                }
                Ok(n) => {
                    if target.write_all(&cbuf[..n]).await.is_err() {
                        reset(client);
                        return None;
                    }
                    touch(sleep.as_mut());
                }
                Err(_) => {
                    reset(target);
                    return None;
                }
            },
            r = target.read(&mut tbuf), if target_open => match r {
                Ok(0) => {
                    target_open = false;
                    let _ = client.shutdown().await;
                }
                Ok(n) => {
                    if client.write_all(&tbuf[..n]).await.is_err() {
                        reset(target);
                        return None;
                    }
                    touch(sleep.as_mut());
                }
                Err(_) => {
                    reset(client);
                    return None;
                }
            },
            _ = &mut sleep, if idle.is_some() => return Some((client, target)),
        }
        if !client_open && !target_open {
            return None;
        }
    }
}

/// Reads and discards what either end sends, answering nothing and closing nothing, until
/// the client closes or fails (it gave up). The target's own close is not passed on: the
/// load balancer would drop its FIN too.
async fn blackhole(mut client: TcpStream, mut target: TcpStream) {
    let mut cbuf = vec![0u8; BUF];
    let mut tbuf = vec![0u8; BUF];
    let mut target_open = true;
    loop {
        tokio::select! {
            r = client.read(&mut cbuf) => match r {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            },
            r = target.read(&mut tbuf), if target_open => {
                if !matches!(r, Ok(n) if n > 0) {
                    target_open = false;
                }
            }
        }
    }
    reset(target);
}

/// Closes `stream` with a TCP RST (SO_LINGER 0, then close).
fn reset(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_flavour_gets_its_own_profile_and_the_listing_has_each_once() {
        use clap::ValueEnum;
        for f in L4Flavour::value_variants() {
            assert_eq!(L4Profile::of(*f).flavour, *f);
            assert_eq!(L4_PROFILES.iter().filter(|p| p.flavour == *f).count(), 1);
        }
        // Azure with reset differs from Azure only in what an idled-out flow meets.
        let (quiet, reset) = (
            L4Profile::of(L4Flavour::AzureLb),
            L4Profile::of(L4Flavour::AzureLbReset),
        );
        assert_eq!(quiet.idle_timeout, reset.idle_timeout);
        assert_eq!(
            (quiet.on_idle, reset.on_idle),
            (OnIdle::Blackhole, OnIdle::ResetBoth)
        );
    }

    #[test]
    fn every_value_has_a_source() {
        for p in &L4_PROFILES {
            for (key, _, source, confidence) in p.facts() {
                assert_ne!(confidence, Confidence::Unconfirmed, "{:?} {key}", p.flavour);
                assert!(!source.is_empty());
            }
            assert_eq!(p.sources.len(), p.values().len(), "{:?}", p.flavour);
        }
    }

    #[test]
    fn combinations() {
        let nlb = L4Profile::of(L4Flavour::AwsNlb);
        assert!(nlb.check(Cloud::IngressNginx).is_ok());
        assert!(nlb.check(Cloud::Aws).is_ok());
        assert!(nlb.check(Cloud::Gcp).is_err());
        for f in [
            L4Flavour::AzureLb,
            L4Flavour::AzureLbReset,
            L4Flavour::GcpPassthrough,
        ] {
            let p = L4Profile::of(f);
            assert!(p.check(Cloud::IngressNginx).is_ok());
            for c in [Cloud::Aws, Cloud::Gcp, Cloud::GcpClassic] {
                assert!(p.check(c).is_err(), "{f:?} {c:?}");
            }
        }
    }

    #[test]
    fn time_scale_applies() {
        let c = L4Config::new(L4Flavour::AwsNlb, None, 0.01);
        assert_eq!(c.idle_timeout, Duration::from_millis(3500));
    }
}
