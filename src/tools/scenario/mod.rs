//! Scenarios: a load-balancer failure written down as a TOML file and played end to end.
//!
//! A scenario names a cloud and its settings, starts its targets (lbsim's mock app, an
//! external address, or a closed port) and plays a list of steps: requests on new or named
//! client connections, waits, and actions on the target group, with expectations on every
//! response. [`run`] plays one against a [`Simulator`] on loopback and returns a [`Report`]:
//! a timeline of what the client, the load balancer and the targets did, and PASS/FAIL per
//! expectation. `lbsim scenario run|list|show` and `lbsim demo` are built on it; the bundled
//! scenarios ([`BUNDLED`]) are the files of `scenarios/`, embedded in the binary.
//!
//! # How a run goes
//!
//! 1. [`parse`] (or [`load`] for a path, [`Bundled::parse`] for a bundled file) reads the
//!    TOML into the serde types of the file as written (`raw.rs`) and checks them into a
//!    [`Scenario`] (`model.rs`); every error names `file:line:column` (`parse.rs`).
//! 2. [`run`] (`run.rs`) starts the targets and a simulator on loopback and plays the steps
//!    in order. Requests go through the scenario's own HTTP client (`client.rs`), which
//!    reads each response as the bytes came and checks it against the step's `expect`.
//! 3. Meanwhile the timeline (`timeline.rs`) samples the targets' and the load balancer's
//!    counters and logs every change as an event, in time order with the client's lines.
//! 4. The [`Report`] (`report.rs`) holds the events and one PASS/FAIL [`Check`] per
//!    expectation; `render.rs` prints it ([`render_report`]) and `picture.rs` draws it as
//!    a sequence diagram ([`svg_picture`], [`html_page`]: `--svg`, `--html`). `command.rs`
//!    is `lbsim scenario run|list|show` and `lbsim demo`; `bundled.rs` lists the files of
//!    `scenarios/`.
//!
//! # File format
//!
//! The complete reference, key by key, is `scenarios/README.md` (tests/scenarios.rs checks
//! that it names every key [`file_keys`] reads from the parser). In short: every table
//! refuses keys it does not know; any error is reported as `file:line:column: message`.
//!
//! ```toml
//! description = "one line, shown by `lbsim scenario list`"
//! why = "why the load balancer answers this way"   # optional; the demo prints it
//! fix = "what to change"                           # optional; the demo prints it
//! cloud = "aws"                                    # or "gcp", "gcp-classic"
//! time_scale = 0.01      # multiplies every duration of the file (default 1)
//!
//! [lb]                   # the Simulator builder's options; all optional
//! lb_defaults = "anyscale"         # or "native"
//! idle_timeout = "300s"            # AWS; GCP takes backend_timeout
//! connect_timeout = "10s"
//! client_keep_alive = "3600s"
//! race_window = "always"           # or a duration; not scaled (it models the network)
//! health_checks = false            # default true, as on the cloud
//! health_path = "/-/healthz"
//! health_interval = "5s"
//! health_timeout = "5s"
//! healthy_threshold = 2
//! unhealthy_threshold = 2
//! warmup = "300s"
//! deregistration_delay = "300s"
//!
//! [[targets]]            # none: an empty target group
//! name = "app"
//! kind = "mock"          # "mock" (default), "external" (needs address), "closed" (a port
//!                        # nothing listens on)
//! keep_alive = "5s"      # mock: idle keep-alive, closed with a bare FIN (uvicorn's 5 s default)
//! latency = "0s"         # mock: delay before every answer
//! address = "127.0.0.1:8000"       # external only
//! registered = true      # false: in the group only after a `register` action
//!
//! [[steps]]              # played in order
//! note = "printed in the timeline"  # any step may carry one; a step may be only a note
//!
//! # a request
//! send = "GET /sleep/{400s}"  # method and path; {duration} becomes scaled seconds ("4")
//! body = "hello"              # optional request body (sent with Content-Length)
//! headers = { x-user = "1" }  # optional request headers
//! conn = "a"                  # a named client connection, reused while open; default: new
//! concurrent = 5              # N copies at once, each on a new connection
//! background = true           # do not wait for it; awaited by `join` or at the end
//! expect = { status = 502, reason = "target_closed_connection" }
//!   # expect keys: status, reason (x-lbsim-reason; "none" = the header is absent), body,
//!   # body_contains, headers = { name = "value" }, elapsed + tolerance (from the request's
//!   # first byte to the end of the response; at least `elapsed` less 25 ms of clock slack,
//!   # at most `elapsed` + `tolerance`, which defaults to 250 ms of real time),
//!   # closed (the LB closed the connection afterwards), truncated (the body was cut)
//!
//! # a pause
//! wait = "30s"
//!
//! # wait for every background request
//! join = true
//!
//! # the target group
//! target = "app"
//! action = "deregister"   # register | deregister | unhealthy | healthy | auto | stop
//! wait_for = "healthy"    # a state (initial, healthy, unhealthy, draining, unused,
//!                         # unavailable) or "idle_close": the Nth idle_close wait on a
//!                         # target returns once the app has closed N idle connections
//! timeout = "60s"         # for wait_for; default 5 s of real time
//! state = "healthy"       # checks, on the target now:
//! requests = 2            # mock: requests received (health checks count too)
//! connections = 1         # mock: connections accepted
//! idle_closes = 1         # mock: idle keep-alive connections closed
//! ```
//!
//! Times in the timeline are real; with a time scale, a second column says what they stand
//! for in the cloud.
//!
//! [`Simulator`]: crate::Simulator

mod bundled;
mod client;
mod command;
mod model;
mod parse;
mod picture;
mod raw;
mod render;
mod report;
mod run;
mod timeline;

pub use bundled::{bundled, Bundled, BUNDLED, DEMO};
pub use client::{Response, CLOCK_SLACK, DEFAULT_TOLERANCE, READ_LIMIT};
pub use command::{
    demo, resolve, run_command, DemoArgs, ScenarioArgs, ScenarioCommand, HELP_EXAMPLE,
};
pub use model::{
    Action, Dur, Expect, Scenario, SendSpec, Step, StepKind, TargetKind, TargetSpec, TargetStep,
    WaitFor,
};
pub use parse::{line_col, load, parse, LoadError};
pub use picture::{html_page, svg_picture, tags_balance};
pub use raw::{file_keys, file_values};
pub use render::{render_checks, render_report, render_timeline, Style};
pub use report::{Actor, Check, Event, Report};
pub use run::{run, DEFAULT_WAIT_LIMIT};
