//! The runner: starts a scenario's targets and simulator on loopback and plays its steps in
//! order. Apart from the client and the timeline, which it drives.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::client::{run_send, SendJob, Slot};
use super::model::{Action, Scenario, SendSpec, Step, StepKind, TargetKind, TargetStep, WaitFor};
use super::report::{Actor, Check, Report};
use super::timeline::{monitor, Log, Names, Run, Sampler, POLL};
use crate::lb::targets::{HealthOverride, TargetState};
use crate::mock::{MockOptions, MockStats, MockUpstream};
use crate::sim::{Control, SimHandle, Simulator};

/// Default limit of a `wait_for` step (real time).
pub const DEFAULT_WAIT_LIMIT: Duration = Duration::from_secs(5);

struct LiveTarget {
    name: String,
    addr: SocketAddr,
    mock: Option<MockUpstream>,
    id: Option<u64>,
    idle_waits: u64,
}

struct Runner {
    sim: SimHandle,
    lb: SocketAddr,
    log: Log,
    scale: f64,
    targets: Vec<LiveTarget>,
    names: Names,
    sampler: Arc<Sampler>,
    conns: HashMap<String, Slot>,
    background: Vec<JoinHandle<Vec<Check>>>,
    checks: Vec<Check>,
    unnamed: usize,
    monitor_stop: watch::Sender<bool>,
    monitor: JoinHandle<()>,
    /// Sockets that keep `closed` targets' ports reserved.
    _closed_ports: Vec<tokio::net::TcpSocket>,
}

/// Plays `scenario` on loopback and reports what happened.
pub async fn run(scenario: &Scenario) -> Report {
    run_shown(scenario, None).await
}

/// [`run`], and once the scenario's simulator has started, `show` gets its [`Control`]:
/// `lbsim demo --ui` moves the control API (and so the live view) to it.
pub(crate) async fn run_shown(
    scenario: &Scenario,
    show: Option<&watch::Sender<Control>>,
) -> Report {
    let log = Log::new();
    let mut report = Report {
        name: scenario.name.clone(),
        origin: scenario.origin.clone(),
        description: scenario.description.clone(),
        time_scale: scenario.time_scale,
        events: Vec::new(),
        checks: Vec::new(),
        error: None,
        duration: Duration::ZERO,
    };
    match Runner::start(scenario, log.clone(), show).await {
        Err(e) => report.error = Some(e),
        Ok(mut runner) => {
            for step in &scenario.steps {
                runner.play(step).await;
            }
            report.checks = runner.finish().await;
        }
    }
    report.events = log.take();
    report.duration = log.t0.elapsed();
    report
}

/// A loopback port that refuses connections for as long as the socket is kept: bound but
/// not listening, so no other program (or concurrent scenario) can take it meanwhile.
fn closed_port() -> std::io::Result<(SocketAddr, tokio::net::TcpSocket)> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    Ok((socket.local_addr()?, socket))
}

impl Runner {
    async fn start(
        s: &Scenario,
        log: Log,
        show: Option<&watch::Sender<Control>>,
    ) -> Result<Runner, String> {
        let mut targets = Vec::new();
        let mut held = Vec::new();
        for t in &s.targets {
            let (addr, mock) = match &t.kind {
                TargetKind::Mock {
                    keep_alive,
                    latency,
                    max_ongoing_requests,
                    max_queued_requests,
                    request_timeout,
                } => {
                    let opts = MockOptions {
                        keep_alive: s.scaled(*keep_alive),
                        latency: s.scaled(*latency),
                        max_ongoing_requests: *max_ongoing_requests,
                        max_queued_requests: *max_queued_requests,
                        request_timeout: request_timeout.map(|d| s.scaled(d)),
                    };
                    let mock = MockUpstream::start(SocketAddr::from(([127, 0, 0, 1], 0)), opts)
                        .await
                        .map_err(|e| format!("cannot start mock target {}: {e}", t.name))?;
                    log.push(
                        Actor::Target,
                        &t.name,
                        format!(
                            "mock app on {} (keep-alive {}{})",
                            mock.addr,
                            crate::human::duration(*keep_alive),
                            if s.time_scale == 1.0 {
                                String::new()
                            } else {
                                format!(", {} real", crate::human::duration(s.scaled(*keep_alive)))
                            }
                        ),
                    );
                    (mock.addr, Some(mock))
                }
                TargetKind::External(a) => {
                    let addr = crate::net::resolve_upstream(a).await?;
                    log.push(Actor::Target, &t.name, format!("external app at {addr}"));
                    (addr, None)
                }
                TargetKind::Closed => {
                    let (addr, socket) =
                        closed_port().map_err(|e| format!("cannot reserve a port: {e}"))?;
                    held.push(socket);
                    log.push(
                        Actor::Target,
                        &t.name,
                        format!("{addr}: nothing listens there"),
                    );
                    (addr, None)
                }
            };
            targets.push(LiveTarget {
                name: t.name.clone(),
                addr,
                mock,
                id: None,
                idle_waits: 0,
            });
        }
        let mut builder = Simulator::builder(s.cloud).settings(s.settings.clone());
        if let Some((flavour, idle)) = s.l4 {
            builder = builder.l4(flavour, idle);
        }
        for (spec, live) in s.targets.iter().zip(&targets) {
            if spec.registered {
                builder = builder.upstream(live.addr);
            }
        }
        // The LB's side of the timeline is its events, from the first: a subscription
        // taken after `start` could miss what the first health checks do.
        let (sim, events) = builder
            .start_subscribed()
            .await
            .map_err(|e| e.to_string())?;
        if let Some(show) = show {
            show.send_replace(sim.control());
        }
        // Rings the monitor on each later event (the sampler's own receiver has them all).
        let wake = events.resubscribe();
        // The builder registers upstreams in order, so ids follow the registered targets.
        let infos = sim.targets();
        let names: Names = Arc::new(Mutex::new(HashMap::new()));
        {
            let mut map = names.lock().unwrap_or_else(|e| e.into_inner());
            let registered = s
                .targets
                .iter()
                .zip(targets.iter_mut())
                .filter(|(spec, _)| spec.registered);
            for ((_, live), info) in registered.zip(&infos) {
                live.id = Some(info.id);
                map.insert(info.id, live.name.clone());
            }
        }
        let c = sim.config();
        let mut what = format!(
            "{} on {}: {} {}, backend keep-alive {}",
            c.profile.display_name,
            sim.addr(),
            c.profile.timeout_setting,
            crate::human::duration(c.timers.timeout),
            crate::human::duration(c.timers.backend_keep_alive)
        );
        if s.time_scale != 1.0 {
            let _ = write!(what, " (real times, scale {})", s.time_scale);
        }
        if let Some((flavour, idle)) = s.l4 {
            let l4 = crate::lb::l4::L4Profile::of(flavour);
            let idle = idle.unwrap_or(l4.idle_timeout);
            let _ = write!(
                what,
                "; in front: {} ({} {}: {})",
                l4.display_name,
                l4.timeout_setting,
                crate::human::duration(s.scaled(idle)),
                l4.on_idle.describe()
            );
        }
        log.push(Actor::Lb, "lb", what);
        let (monitor_stop, stop_rx) = watch::channel(false);
        let mocks: Vec<(String, Arc<MockStats>)> = targets
            .iter()
            .filter_map(|t| t.mock.as_ref().map(|m| (t.name.clone(), m.stats.clone())))
            .collect();
        let run = Run {
            health_checks: c.health.enabled,
            scale: s.time_scale,
            epoch: sim.started_at().saturating_duration_since(log.t0),
            names: names.clone(),
            addrs: targets.iter().map(|t| (t.addr, t.name.clone())).collect(),
            registered_at_start: infos.iter().map(|t| t.id).collect(),
        };
        let sampler = Arc::new(Sampler::new(events, mocks, run, log.clone()));
        let monitor = tokio::spawn(monitor(sampler.clone(), wake, stop_rx));
        Ok(Runner {
            lb: sim.addr(),
            sim,
            log,
            scale: s.time_scale,
            targets,
            names,
            sampler,
            conns: HashMap::new(),
            background: Vec::new(),
            checks: Vec::new(),
            unnamed: 0,
            monitor_stop,
            monitor,
            _closed_ports: held,
        })
    }

    fn check(&mut self, step: &Step, who: &str, expected: String, v: Result<String, String>) {
        self.checks.push(Check {
            step: step.index,
            line: step.line,
            who: who.to_string(),
            expected,
            passed: v.is_ok(),
            detail: match v {
                Ok(s) | Err(s) => s,
            },
        });
    }

    fn real(&self, d: Duration) -> Duration {
        d.mul_f64(self.scale)
    }

    fn cloud_and_real(&self, d: Duration) -> String {
        if self.scale == 1.0 {
            crate::human::duration(d)
        } else {
            format!(
                "{} ({} real)",
                crate::human::duration(d),
                crate::human::duration(self.real(d))
            )
        }
    }

    async fn play(&mut self, step: &Step) {
        // Whatever happened before this step is logged before it.
        self.sampler.sample();
        if let Some(note) = &step.note {
            self.log.push(Actor::Note, "note", note.clone());
        }
        match &step.kind {
            StepKind::Note => {}
            StepKind::Wait(d) => {
                self.log.push(
                    Actor::Runner,
                    "runner",
                    format!("waits {}", self.cloud_and_real(*d)),
                );
                tokio::time::sleep(self.real(*d)).await;
            }
            StepKind::Join => self.join().await,
            StepKind::Send(spec) => self.send(step, spec).await,
            StepKind::Target(t) => self.target_step(step, t).await,
        }
    }

    async fn send(&mut self, step: &Step, spec: &SendSpec) {
        let (who, slot) = match &spec.conn {
            Some(name) => {
                let slot = self.conns.entry(name.clone()).or_default().clone();
                (format!("client {name}"), Some(slot))
            }
            None => {
                self.unnamed += 1;
                (format!("client #{}", self.unnamed), None)
            }
        };
        let job = SendJob {
            lb: self.lb,
            log: self.log.clone(),
            spec: spec.clone(),
            step: step.index,
            line: step.line,
            scale: self.scale,
            who,
            slot,
            sampler: self.sampler.clone(),
            sent: None,
        };
        if spec.background {
            let (tx, mut rx) = mpsc::unbounded_channel();
            let job = SendJob {
                sent: Some(tx),
                ..job
            };
            self.background.push(tokio::spawn(run_send(job)));
            // The next step starts once the request has left (or failed to).
            for _ in 0..spec.concurrent {
                if rx.recv().await.is_none() {
                    break;
                }
            }
        } else {
            let checks = run_send(job).await;
            self.checks.extend(checks);
        }
    }

    async fn join(&mut self) {
        for task in std::mem::take(&mut self.background) {
            match task.await {
                Ok(checks) => self.checks.extend(checks),
                Err(e) => self.checks.push(Check {
                    step: 0,
                    line: 0,
                    who: "runner".into(),
                    expected: "background request finished".into(),
                    detail: e.to_string(),
                    passed: false,
                }),
            }
        }
    }

    async fn target_step(&mut self, step: &Step, t: &TargetStep) {
        let Some(i) = self.targets.iter().position(|x| x.name == t.target) else {
            // The parser checked the name; stay total.
            self.check(
                step,
                &t.target,
                "target exists".into(),
                Err("unknown".into()),
            );
            return;
        };
        if let Some(action) = t.action {
            self.act(step, i, action).await;
        }
        if let Some(w) = t.wait_for {
            self.wait_for(step, i, w, t.timeout).await;
        }
        let name = self.targets[i].name.clone();
        if let Some(want) = t.state {
            let got = self.state_of(i);
            let v = match got {
                Some(s) if s == want => Ok(s.as_str().to_string()),
                Some(s) => Err(s.as_str().to_string()),
                None => Err("not registered".to_string()),
            };
            self.check(step, &name, format!("state {}", want.as_str()), v);
        }
        if let Some(stats) = self.targets[i].mock.as_ref().map(|m| m.stats.clone()) {
            let counters = [
                ("requests", t.requests, &stats.requests),
                ("connections", t.connections, &stats.connections),
                ("idle_closes", t.idle_closes, &stats.idle_closes),
            ];
            for (label, want, counter) in counters {
                if let Some(want) = want {
                    let got = counter.load(Ordering::Relaxed);
                    let v = if got == want {
                        Ok(format!("{got}"))
                    } else {
                        Err(format!("{got}"))
                    };
                    self.check(step, &name, format!("{label} = {want}"), v);
                }
            }
        }
    }

    /// The state of target `i`, `None` if it was never registered. A target that was
    /// registered and is no longer in the group (its deregistration ended) is `unused`,
    /// as AWS reports a target named in `describe-target-health` that is not registered.
    fn state_of(&self, i: usize) -> Option<TargetState> {
        let id = self.targets[i].id?;
        let state = self
            .sim
            .targets()
            .into_iter()
            .find(|x| x.id == id)
            .map_or(TargetState::Unused, |x| x.state);
        Some(state)
    }

    async fn act(&mut self, step: &Step, i: usize, action: Action) {
        let name = self.targets[i].name.clone();
        let id = self.targets[i].id;
        let fail = |what: &str| Err(format!("{name} is {what}"));
        // What the runner does to the target group is logged as of when it started: the
        // load balancer's line for the change it made (an event, stamped as it happened)
        // comes after it.
        let at = self.log.t0.elapsed();
        match action {
            Action::Register => {
                let info = match self.sim.register(self.targets[i].addr) {
                    Ok(info) => info,
                    Err(e) => {
                        self.check(step, &name, "register".into(), Err(e.to_string()));
                        return;
                    }
                };
                self.targets[i].id = Some(info.id);
                self.names
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(info.id, name.clone());
                self.log.push_at(
                    at,
                    Actor::Runner,
                    "runner",
                    format!("registers {name} ({})", info.state.as_str()),
                );
            }
            Action::Deregister => match id.and_then(|id| self.sim.deregister(id).ok()) {
                Some(_) => {
                    let delay = self.sim.config().timers.deregistration_delay;
                    self.log.push_at(
                        at,
                        Actor::Runner,
                        "runner",
                        format!(
                            "deregisters {name}: it drains for the deregistration delay, {}",
                            self.cloud_and_real(delay.div_f64(self.scale))
                        ),
                    );
                }
                None => self.check(step, &name, "deregister".into(), fail("not registered")),
            },
            Action::Unhealthy | Action::Healthy | Action::Auto => {
                let (over, word) = match action {
                    Action::Unhealthy => (HealthOverride::Unhealthy, "marks {} unhealthy"),
                    Action::Healthy => (HealthOverride::Healthy, "marks {} healthy"),
                    _ => (HealthOverride::Auto, "hands {} back to the health checks"),
                };
                match id.and_then(|id| self.sim.set_health(id, over).ok()) {
                    Some(_) => {
                        self.log
                            .push_at(at, Actor::Runner, "runner", word.replace("{}", &name))
                    }
                    None => self.check(step, &name, format!("{action:?}"), fail("not registered")),
                }
            }
            Action::Stop => {
                if let Some(m) = &self.targets[i].mock {
                    m.stop();
                }
                // Stopping takes effect when the accept task is dropped: wait for the refusal
                // (a probe that still gets in is counted by the app, so let the abort land first).
                let addr = self.targets[i].addr;
                let until = Instant::now() + Duration::from_secs(2);
                let mut refused = false;
                while Instant::now() < until {
                    tokio::time::sleep(POLL).await;
                    if TcpStream::connect(addr).await.is_err() {
                        refused = true;
                        break;
                    }
                }
                if refused {
                    self.log.push(
                        Actor::Runner,
                        "runner",
                        format!("stops {name}: its port refuses connections now"),
                    );
                } else {
                    self.check(
                        step,
                        &name,
                        "stop".into(),
                        fail("still accepting connections"),
                    );
                }
            }
        }
    }

    async fn wait_for(&mut self, step: &Step, i: usize, w: WaitFor, timeout: Option<Duration>) {
        let name = self.targets[i].name.clone();
        let limit = timeout.map_or(DEFAULT_WAIT_LIMIT, |d| self.real(d));
        let start = Instant::now();
        let (label, goal) = match w {
            WaitFor::IdleClose => {
                let n = self.targets[i].idle_waits + 1;
                (format!("closes an idle keep-alive connection (#{n})"), None)
            }
            other => {
                let state = match other {
                    WaitFor::Initial => TargetState::Initial,
                    WaitFor::Healthy => TargetState::Healthy,
                    WaitFor::Unhealthy => TargetState::Unhealthy,
                    WaitFor::Draining => TargetState::Draining,
                    WaitFor::Unused => TargetState::Unused,
                    _ => TargetState::Unavailable,
                };
                (format!("becomes {}", state.as_str()), Some(state))
            }
        };
        self.log.push(
            Actor::Runner,
            "runner",
            format!("waits until {name} {label}"),
        );
        let stats = self.targets[i].mock.as_ref().map(|m| m.stats.clone());
        let want_closes = self.targets[i].idle_waits + 1;
        let reached = loop {
            let done = match goal {
                Some(state) => self.state_of(i) == Some(state),
                None => stats
                    .as_ref()
                    .is_some_and(|s| s.idle_closes.load(Ordering::Relaxed) >= want_closes),
            };
            if done {
                break true;
            }
            if start.elapsed() >= limit {
                break false;
            }
            tokio::time::sleep(POLL).await;
        };
        if goal.is_none() {
            self.targets[i].idle_waits = want_closes;
        }
        let took = start.elapsed();
        let mut seen = format!("after {}", crate::human::duration(took));
        if self.scale != 1.0 {
            let _ = write!(
                seen,
                " (stands for {})",
                crate::human::duration(took.div_f64(self.scale))
            );
        }
        let v = if reached {
            Ok(seen)
        } else {
            let now = self
                .state_of(i)
                .map_or("not registered".to_string(), |s| s.as_str().to_string());
            Err(format!(
                "not within {} (state {now})",
                crate::human::duration(limit)
            ))
        };
        self.check(step, &name, label, v);
    }

    async fn finish(mut self) -> Vec<Check> {
        self.join().await;
        let _ = self.monitor_stop.send(true);
        let _ = self.monitor.await;
        self.conns.clear();
        self.sim.shutdown().await;
        drop(self.targets);
        let mut checks = self.checks;
        checks.sort_by_key(|c| c.step);
        checks
    }
}
