//! What a person is told about an LB-generated error: what happened, which setting caused
//! it, and the fix, with the measured facts ([`Detail`]) that make it concrete.

use std::time::Duration;

use crate::human;
use crate::lb::config::Config;
use crate::lb::profile::TimeoutKind;
use crate::lb::reason::Reason;

/// Measured facts that make an explanation concrete ("nothing for 3.0 s").
#[derive(Clone, Debug, Default)]
pub struct Detail {
    /// Target the request went to, when one was chosen.
    pub target: Option<String>,
    /// Time since the request arrived.
    pub elapsed: Duration,
    /// How long the reused connection had been idle (keep-alive race).
    pub idle_for: Option<Duration>,
    /// The lower-level error, verbatim, for the log.
    pub error: Option<String>,
    /// True when the response head had already gone out, so the body was cut.
    pub after_head: bool,
    /// True when what was cut is an upgraded (WebSocket) connection, not a response.
    pub websocket: bool,
    /// The client connection's number, for the event stream (not for the sentence).
    pub conn: Option<u64>,
}

/// An LB timer as the user configured it: the scaled value, and the full-scale one when
/// `--time-scale` is in use, so the advice stays in real-world numbers.
pub(crate) fn lb_secs(config: &Config, d: Duration) -> String {
    if config.time_scale == 1.0 {
        human::duration(d)
    } else {
        format!(
            "{} ({} at full scale)",
            human::duration(d),
            human::duration(d.div_f64(config.time_scale))
        )
    }
}

/// What a reused connection the app has closed costs a client: the profile's status for
/// the keep-alive race, and which methods the LB (as configured: `--no-retry` drops the
/// retry) sends again instead, so that only the others see it. "502 on reuse", or "502 on
/// reuse for the requests it does not send again (GET, HEAD, ... are retried)".
pub(crate) fn race_consequence(config: &Config) -> String {
    let status = config.profile.outcome(Reason::KeepAliveRace).status;
    let mut retried: Vec<&str> = Vec::new();
    if let Some(r) = &config.retry {
        if r.on.contains(&Reason::KeepAliveRace) {
            retried.extend_from_slice(r.methods);
        }
        if r.unsent.contains(&Reason::KeepAliveRace) {
            retried.extend_from_slice(r.unsent_methods);
        }
    }
    if retried.is_empty() {
        format!("{status} on reuse")
    } else {
        format!(
            "{status} on reuse for the requests it does not send again ({} are retried)",
            retried.join(", ")
        )
    }
}

/// What to change so that the app never closes a connection the LB may still reuse, in
/// real-world numbers (the LB's backend keep-alive at full scale, whatever `--time-scale`
/// says): one sentence for the proxy's explanation and `lbsim doctor` alike.
pub fn keep_alive_fix(config: &Config) -> String {
    let full_scale = config.timers.backend_keep_alive.div_f64(config.time_scale);
    format!(
        "Set the app's keep-alive above {} — Ray Serve: `http_options.keep_alive_timeout_s: {}` \
         or more; uvicorn `--timeout-keep-alive`; gunicorn `--keep-alive`; Node \
         `server.keepAliveTimeout`",
        human::duration(full_scale),
        full_scale.as_secs_f64().ceil() as u64 + 10,
    )
}

/// The sentence logged for an LB-generated error: what happened and what to change.
pub fn explain(config: &Config, reason: Reason, d: &Detail) -> String {
    let sentence = explain_cause(config, reason, d);
    match config.profile.outcome(reason).caveat {
        Some(caveat) => format!("{sentence} (Fidelity: {caveat}.)"),
        None => sentence,
    }
}

fn explain_cause(config: &Config, reason: Reason, d: &Detail) -> String {
    let profile = config.profile;
    let timers = &config.timers;
    let lb = profile.display_name;
    let target = d.target.as_deref().unwrap_or("the target");
    match reason {
        Reason::TargetTimeout => {
            let setting = profile.timeout_setting;
            let t = lb_secs(config, timers.timeout);
            let flag = profile.timeout_flag;
            if d.websocket && profile.websocket_timeout == TimeoutKind::Idle {
                format!(
                    "the WebSocket connection to {target} carried no frame in either direction \
                     for the {lb} {setting} of {t} (open {}); the {lb} closed both sides. Have \
                     the app or the client send a ping (any frame) more often than that, or \
                     raise the {setting} ({flag})",
                    human::duration(d.elapsed)
                )
            } else if d.websocket {
                format!(
                    "the WebSocket connection to {target} reached the {lb} {setting} of {t}; \
                     the {lb} closes a WebSocket at that timeout whether idle or active, so both \
                     sides were closed with frames still flowing. Clients must reconnect before \
                     (or when) it ends, or raise the {setting} ({flag})"
                )
            } else if d.after_head && d.error.is_some() {
                // The deadline ran out on the client's side: it stopped reading.
                format!(
                    "the client stopped reading the response from {target} and the {lb} \
                     {setting} of {t} ran out before it was delivered; the connection was cut \
                     mid-body. The client (or a proxy in front of it) must keep reading the \
                     response; the app is not at fault"
                )
            } else if d.after_head {
                format!(
                    "{target} was still sending its response when the {lb} {setting} of {t} ran out; \
                     the connection was cut mid-body. {}",
                    profile.timeout_fix
                )
            } else {
                format!(
                    "{target} sent no response within the {lb} {setting} of {t} (waited {}). {}",
                    human::duration(d.elapsed),
                    profile.timeout_fix
                )
            }
        }
        Reason::ConnectTimeout => format!(
            "TCP connect to {target} did not complete within the {lb} connect timeout of {}: \
             the app is overloaded or its listen backlog is full; check that it accepts connections",
            lb_secs(config, timers.connect_timeout)
        ),
        Reason::ConnectRefused => format!(
            "{target} refused the connection ({}): nothing listens there. Start the app, or fix the \
             target's address/port",
            d.error.as_deref().unwrap_or("connection refused")
        ),
        Reason::TargetClosedConnection => format!(
            "{target} closed the connection before sending a complete response ({}). \
             The app crashed, was killed, or closes connections under load; check its logs",
            d.error.as_deref().unwrap_or("connection closed")
        ),
        Reason::TargetClosedMidBody => format!(
            "{target} closed the connection in the middle of its response ({}); the {lb} can only \
             cut the client's response too. The app crashed or was killed mid-stream; check its logs",
            d.error.as_deref().unwrap_or("connection closed")
        ),
        Reason::KeepAliveRace => format!(
            "the app at {target} closed an idle connection after ~{}; the {lb} keeps them {} and \
             sent this request on it. {}",
            human::duration(d.idle_for.unwrap_or_default()),
            lb_secs(config, timers.backend_keep_alive),
            keep_alive_fix(config),
        ),
        Reason::MalformedResponse => format!(
            "{target} sent a response that is not valid HTTP/1.1 ({}); check what the app writes \
             on the socket (a debug print to stdout of a raw socket server, a wrong protocol, TLS on a plain port)",
            d.error.as_deref().unwrap_or("parse error")
        ),
        Reason::NoRegisteredTargets => format!(
            "the {lb} target group has no registered targets; register the app (or wait for the deploy to register it)"
        ),
        Reason::NoHealthyTargets => format!(
            "no target passes the {lb} health check (GET {}) and the {lb} does not fail open; make the \
             health check path answer 200 (Ray Serve: `/-/healthz`), or wait {} × {} after a start",
            config.health.path,
            config.health.thresholds.healthy,
            lb_secs(config, config.health.interval),
        ),
        Reason::DeregistrationDelayElapsed => format!(
            "{target} was deregistered and the request was still running when the deregistration \
             delay of {} ended; raise the delay above your longest request, or finish requests sooner",
            lb_secs(config, timers.deregistration_delay)
        ),
        Reason::ClientTimeout => format!(
            "the client started a request and then sent nothing for the {lb} client timeout of {}; \
             the client (or a proxy in front of it) stalled mid-request: send the whole request promptly",
            lb_secs(config, timers.client_idle)
        ),
        Reason::ClientClosed => format!(
            "the client closed its connection after {} while {target} was still working; a client \
             timeout shorter than the app's latency (raise the client's timeout or make the app faster)",
            human::duration(d.elapsed)
        ),
        Reason::RequestTooLarge => format!(
            "the request head is over the {lb}'s limits ({}); shorten the URL or the headers \
             (large cookies and tokens are the usual cause)",
            d.error.as_deref().unwrap_or("too large")
        ),
        Reason::TooManyForwardedFor => format!(
            "{}; the {lb} accepts at most 30: a chain of proxies in front of it keeps appending. \
             Strip or reset X-Forwarded-For at the edge",
            d.error.as_deref().unwrap_or("X-Forwarded-For holds too many addresses")
        ),
        Reason::UnsupportedTransferEncoding => format!(
            "the request uses a Transfer-Encoding the {lb} does not implement; send `chunked` or a \
             Content-Length"
        ),
        Reason::MethodNotAllowed => format!(
            "{}: the {lb} answers it itself and never forwards it; use another method",
            d.error.as_deref().unwrap_or("a method the load balancer refuses")
        ),
        Reason::IncompatibleProtocol => format!(
            "{}; the {lb} answers it itself. Make the target group's protocol version match \
             the clients (HTTP1 takes HTTP/1.1 and HTTP/2 clients; HTTP2 and GRPC need HTTP/2 \
             over HTTPS, GRPC a POST), lbsim --target-protocol",
            d.error.as_deref().unwrap_or("the request's protocol does not match the target group's")
        ),
        Reason::UpgradeRefused => format!(
            "{}; the {lb} relays WebSocket upgrades only. Speak WebSocket, or plain HTTP without \
             an Upgrade header",
            d.error.as_deref().unwrap_or("the client asked for a protocol switch the load balancer does not relay")
        ),
        Reason::DesyncBlocked => format!(
            "the {lb}'s desync (request smuggling) mitigation blocked the request ({}); send exactly \
             one valid Content-Length or `Transfer-Encoding: chunked`, never both",
            d.error.as_deref().unwrap_or("ambiguous framing")
        ),
        Reason::MalformedRequest => format!(
            "the client's request is not valid HTTP/1.1 ({}); the {lb} rejects it before it reaches the app",
            d.error.as_deref().unwrap_or("parse error")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::config::Settings;
    use crate::lb::profile::Cloud;

    fn sentence(cloud: Cloud, reason: Reason, detail: &Detail) -> String {
        let config = Config::build(&Settings::new(cloud)).expect("default settings are valid");
        explain(&config, reason, detail)
    }

    #[test]
    fn a_websocket_cut_says_it_was_a_websocket_and_which_timer() {
        let cut = Detail {
            target: Some("127.0.0.1:8000".into()),
            after_head: true,
            websocket: true,
            ..Detail::default()
        };
        for cloud in [Cloud::Aws, Cloud::Gcp] {
            let said = sentence(cloud, Reason::TargetTimeout, &cut);
            assert!(
                said.starts_with("the WebSocket connection to 127.0.0.1:8000 carried no frame"),
                "{said}"
            );
        }
        let said = sentence(Cloud::GcpClassic, Reason::TargetTimeout, &cut);
        assert!(said.contains("whether idle or active"), "{said}");
        assert!(said.contains("--backend-timeout"), "{said}");
    }

    #[test]
    fn a_cut_caused_by_a_client_that_stopped_reading_blames_the_client() {
        let stalled = Detail {
            target: Some("127.0.0.1:8000".into()),
            error: Some("the client stopped reading the response".into()),
            after_head: true,
            ..Detail::default()
        };
        let said = sentence(Cloud::Aws, Reason::TargetTimeout, &stalled);
        assert!(said.starts_with("the client stopped reading the response from 127.0.0.1:8000 and the AWS ALB idle timeout of 300 s ran out"), "{said}");
        assert!(said.contains("the app is not at fault"), "{said}");
        let app_cut = Detail {
            error: None,
            ..stalled
        };
        let said = sentence(Cloud::Gcp, Reason::TargetTimeout, &app_cut);
        assert!(said.starts_with("127.0.0.1:8000 was still sending its response when the GCP load balancer backend service timeout"), "{said}");
    }

    #[test]
    fn keep_alive_fix_is_in_full_scale_numbers_whatever_the_time_scale() {
        let mut settings = Settings::new(Cloud::Aws);
        settings.time_scale = 0.01;
        let config = Config::build(&settings).expect("valid settings");
        let fix = keep_alive_fix(&config);
        assert!(
            fix.starts_with("Set the app's keep-alive above 300 s"),
            "{fix}"
        );
        assert!(
            fix.contains("`http_options.keep_alive_timeout_s: 310`"),
            "{fix}"
        );
        let race = explain(&config, Reason::KeepAliveRace, &Detail::default());
        assert!(race.ends_with(&fix), "{race}");
    }

    #[test]
    fn a_disputed_outcome_says_which_source_lbsim_follows() {
        let timed_out = Detail {
            target: Some("127.0.0.1:8000".into()),
            ..Detail::default()
        };
        let global = sentence(Cloud::Gcp, Reason::TargetTimeout, &timed_out);
        assert!(
            global.ends_with("so production may show a 502 or 503 here.)"),
            "{global}"
        );
        assert!(global.contains("(Fidelity: sources disagree"), "{global}");
        let classic = sentence(Cloud::GcpClassic, Reason::TargetTimeout, &timed_out);
        assert!(
            classic.contains("the Anyscale article says 504"),
            "{classic}"
        );
        let aws = sentence(Cloud::Aws, Reason::TargetTimeout, &timed_out);
        assert!(!aws.contains("Fidelity"), "{aws}");
    }
}
