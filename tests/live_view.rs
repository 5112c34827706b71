//! The live view (`--ui`) in a real browser: headless Chromium, driven through
//! chromedriver's W3C WebDriver HTTP API (plain JSON over HTTP from here), loads `/ui` from
//! a control API on port 0, traffic through the proxy makes a 200, a 502 and a 504, and the
//! page must show each as a row with its status, the LB's rows with the cloud's word and
//! the sentence with the fix, the counters, and the target group's states. A screenshot
//! goes to `target/live-view.png`.
//!
//! Needs `chromium` and `chromedriver` (Debian: `apt-get install chromium chromium-driver`;
//! `CHROMIUM` and `CHROMEDRIVER` name other binaries). Without them the test says so and
//! passes, unless the environment variable `CI` is set: then it fails.
//!
//! Also: `lbsim --ui --no-browser` starts the control API by itself and prints the page's
//! address.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use lbsim::http1::{Interim, Reader};
use lbsim::profile::Profile;
use lbsim::{AdminServer, Cloud, Reason, Simulator, TargetState};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_lbsim");

/// Longest wait for chromedriver to start, the browser to load the page, or the page to
/// show what happened: generous for a loaded CI machine; the waits end as soon as the
/// page is there.
const BROWSER_LIMIT: Duration = Duration::from_secs(30);

/// The rows the page keeps (`ROW_CAP` in live.js).
const ROW_CAP: usize = 200;

/// The burst: this many keep-alive connections at once, each sending this many requests.
const BURST_CONNECTIONS: usize = 20;
const BURST_PER_CONNECTION: usize = 100;

/// How often the DOM is read while waiting for it.
const POLL: Duration = Duration::from_millis(100);

/// The test's `--time-scale`: an idle timeout of 60 s is 600 ms.
const TIME_SCALE: f64 = 0.01;

/// Chromium's flags: headless, no sandbox (root in a container), no GPU, no network of its
/// own (updates, QUIC, sync, background fetches), a small /dev/shm tolerated, a window
/// wide enough for the screenshot; a fresh profile is added per run.
const CHROMIUM_FLAGS: [&str; 10] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1500,1100",
];

/// The first of `candidates` (an env override first) that exists as a file.
fn find_binary(env: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    candidates.iter().map(PathBuf::from).find(|p| p.is_file())
}

/// Chromium and chromedriver, or `None` after saying why the test does not run. With `CI`
/// set, a missing browser is a failure, not a skip: CI must have installed it.
fn browser_tools() -> Option<(PathBuf, PathBuf)> {
    let chromium = find_binary(
        "CHROMIUM",
        &[
            "/usr/bin/chromium",
            "/usr/bin/chromium-browser",
            "/usr/bin/google-chrome",
        ],
    );
    let driver = find_binary(
        "CHROMEDRIVER",
        &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"],
    );
    match (chromium, driver) {
        (Some(c), Some(d)) => Some((c, d)),
        (c, d) => {
            let missing = [(c.is_none(), "chromium"), (d.is_none(), "chromedriver")]
                .iter()
                .filter(|(gone, _)| *gone)
                .map(|(_, name)| *name)
                .collect::<Vec<_>>()
                .join(" and ");
            let message = format!(
                "live view test: {missing} not found (apt-get install chromium chromium-driver, \
                 or set CHROMIUM / CHROMEDRIVER)"
            );
            if std::env::var_os("CI").is_some() {
                panic!("{message}; CI is set, so this is a failure");
            }
            eprintln!("SKIPPED {message}");
            None
        }
    }
}

/// A free loopback port for chromedriver (which takes a port number, not a listener).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("its address").port()
}

/// A running chromedriver and one browser session in it; both end with [`Browser::quit`],
/// or, when a failed assertion unwinds past it, when it is dropped.
struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    profile: PathBuf,
    /// Set by `quit`: nothing is left to clean up.
    quit: bool,
}

impl Drop for Browser {
    /// A test that panics never reaches `quit`: chromedriver dies with its handle
    /// (`kill_on_drop`), but the Chromium it started would outlive the test and keep a
    /// core busy. Its processes are found by this browser's own profile directory.
    fn drop(&mut self) {
        if self.quit {
            return;
        }
        let _ = std::process::Command::new("pkill")
            .arg("-9")
            .arg("-f")
            .arg(format!("--user-data-dir={}", self.profile.display()))
            .status();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Browser {
    async fn start(chromium: &Path, chromedriver: &Path) -> Browser {
        let port = free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + BROWSER_LIMIT;
        loop {
            if let Ok(status) = webdriver(addr, "GET", "/status", None).await {
                if status["value"]["ready"] == json!(true) {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver never got ready");
            tokio::time::sleep(POLL).await;
        }
        let profile = Path::new(env!("CARGO_TARGET_TMPDIR"))
            // One per browser: two Chromiums on one profile would be one browser.
            .join(format!("live-view-profile-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|f| f.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let created = webdriver(
            addr,
            "POST",
            "/session",
            Some(json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {"binary": chromium, "args": args},
            }}})),
        )
        .await
        .expect("a WebDriver session");
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id: {created}"))
            .to_string();
        Browser {
            driver,
            addr,
            session,
            profile,
            quit: false,
        }
    }

    /// A WebDriver command of this session; its `value`.
    async fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let answer = webdriver(self.addr, method, &path, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        answer["value"].clone()
    }

    async fn open(&self, url: &str) {
        self.command("POST", "/url", Some(json!({ "url": url })))
            .await;
    }

    /// Runs `body` (a function body that `return`s JSON-able data) in the page.
    async fn script(&self, body: &str) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            Some(json!({"script": body, "args": []})),
        )
        .await
    }

    /// Clicks the first element matching `css`, as a user does (WebDriver's own click).
    async fn click(&self, css: &str) {
        let found = self
            .command(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        let id = found["element-6066-11e4-a52e-4f735466cecf"]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_string();
        self.command("POST", &format!("/element/{id}/click"), Some(json!({})))
            .await;
    }

    /// The page as it looks now, as PNG bytes.
    async fn screenshot(&self) -> Vec<u8> {
        let encoded = self.command("GET", "/screenshot", None).await;
        base64_decode(encoded.as_str().expect("a base64 string"))
    }

    async fn quit(mut self) {
        let _ = webdriver(
            self.addr,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        )
        .await;
        let _ = self.driver.start_kill();
        let _ = self.driver.wait().await;
        let _ = std::fs::remove_dir_all(&self.profile);
        self.quit = true;
    }
}

/// One WebDriver call: `method path` with a JSON body, on its own connection; the JSON
/// answer, or why there is none (an error answer included).
async fn webdriver(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<Value, String> {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let exchange = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        Reader::new(stream)
            .response(method, Interim::Skip)
            .await
            .map_err(|e| format!("read: {e:?}"))
    };
    let resp = tokio::time::timeout(BROWSER_LIMIT, exchange)
        .await
        .map_err(|_| format!("no answer within {BROWSER_LIMIT:?}"))??;
    let value: Value = serde_json::from_slice(&resp.body)
        .map_err(|e| format!("not JSON ({e}): {}", String::from_utf8_lossy(&resp.body)))?;
    if resp.head.status != 200 {
        return Err(format!("{}: {value}", resp.head.status));
    }
    Ok(value)
}

/// Standard base64 (RFC 4648, with padding), for the screenshot: the one decoder this
/// crate needs does not warrant a dependency.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a') as u32 + 26,
            b'0'..=b'9' => (c - b'0') as u32 + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c:?}"),
        }
    };
    let clean: Vec<u8> = text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for group in clean.chunks(4) {
        let mut n = 0u32;
        for (i, c) in group.iter().enumerate() {
            n |= value(*c) << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..group.len()]);
    }
    out
}

#[test]
fn base64_decodes_what_webdriver_sends() {
    assert_eq!(base64_decode("iVBORw0KGgo="), b"\x89PNG\r\n\x1a\n");
    assert_eq!(base64_decode("YWJj"), b"abc");
    assert_eq!(base64_decode("YWI="), b"ab");
}

/// What the test reads off the page: the request rows, the counters, the targets, the
/// stream's state, in one script call.
const READ_PAGE: &str = r##"
const text = (root, css) => { const e = root.querySelector(css); return e ? e.textContent : null; };
return {
  link: text(document, "#link"),
  missed: Number(text(document, "#missed")),
  lb: text(document, "#lb-name"),
  settings: text(document, "#settings"),
  last: text(document, "#last-explanation"),
  note: text(document, "#rows-note"),
  total: Number(document.getElementById("rows-note").dataset.total),
  rows: [...document.querySelectorAll("#rows li.req")].map((li) => ({
    status: li.dataset.status, by: li.dataset.by, cause: li.dataset.cause,
    what: text(li, ".what"), legs: text(li, ".legs"), end: text(li, ".end"),
    word: text(li, ".why .word"), explanation: text(li, ".why .explanation"),
  })),
  chips: [...document.querySelectorAll("#by-status .chip")].map((c) => ({
    status: c.dataset.status, by: c.dataset.by, n: Number(text(c, ".n")) })),
  causes: [...document.querySelectorAll("#by-cause tr")].map((tr) => ({
    cause: tr.dataset.cause, n: Number(text(tr, ".n")) })),
  targets: [...document.querySelectorAll("#targets li.target")].map((t) => ({
    id: Number(t.dataset.id), state: t.dataset.state, text: t.textContent })),
};
"##;

/// Reads the page until `ready` holds for it; the page as last read.
async fn wait_for_page(browser: &Browser, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + BROWSER_LIMIT;
    loop {
        let page = browser.script(READ_PAGE).await;
        if ready(&page) {
            return page;
        }
        assert!(
            Instant::now() < deadline,
            "the page never showed {what} within {BROWSER_LIMIT:?}; it shows {page:#}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// The row for `path` (the first, i.e. newest, one).
fn row<'a>(page: &'a Value, path: &str) -> &'a Value {
    page["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["what"].as_str().is_some_and(|w| w.ends_with(path)))
        .unwrap_or_else(|| panic!("no row for {path}: {page:#}"))
}

fn has_row(page: &Value, path: &str, status: u16) -> bool {
    page["rows"].as_array().is_some_and(|rows| {
        rows.iter().any(|r| {
            r["what"].as_str().is_some_and(|w| w.ends_with(path))
                && r["status"] == json!(status.to_string())
        })
    })
}

/// A duration as the page writes it (`601 ms`, `1.20 s`), in milliseconds.
fn shown_ms(text: &str) -> Option<f64> {
    let (number, unit) = text.trim().split_once(' ')?;
    let n: f64 = number.parse().ok()?;
    match unit {
        "µs" => Some(n / 1000.0),
        "ms" => Some(n),
        "s" => Some(n * 1000.0),
        _ => None,
    }
}

fn chip(page: &Value, status: &str, by: &str) -> Option<u64> {
    page["chips"]
        .as_array()?
        .iter()
        .find(|c| c["status"] == json!(status) && c["by"] == json!(by))
        .and_then(|c| c["n"].as_u64())
}

#[tokio::test]
async fn the_page_shows_each_request_its_ending_and_the_target_group_live() {
    let Some((chromium, chromedriver)) = browser_tools() else {
        return;
    };
    // Every socket this process opens (lbsim, the app, the test's clients, its WebDriver
    // calls) is closed again by the end; the file's other tests wait for their turn.
    let check = SocketsCheck::begin().await;
    let started = Instant::now();
    let app = mock(Duration::from_secs(5)).await;
    // AWS at 1/100 scale: the 60 s idle timeout is 600 ms, health checks every 300 ms.
    // No target yet: the app is registered once the page watches, so that the page sees
    // it arrive (initial) and pass its checks (healthy).
    let lb = Simulator::builder(Cloud::Aws)
        .idle_timeout(Duration::from_secs(60))
        .time_scale(TIME_SCALE)
        .start()
        .await
        .expect("lbsim starts");
    let admin = AdminServer::start(SocketAddr::from(([127, 0, 0, 1], 0)), lb.control())
        .expect("the control API starts");
    let browser = Browser::start(&chromium, &chromedriver).await;
    browser.open(&format!("http://{}/ui", admin.addr())).await;

    // The page is following the event stream (subscribed) and has read the settings.
    let page = wait_for_page(&browser, "its live event stream", |p| {
        p["link"] == json!("live") && p["lb"] == json!("AWS ALB")
    })
    .await;
    let settings = page["settings"].as_str().unwrap_or_default();
    assert!(
        settings.contains("idle timeout (idle)600 ms60 s"),
        "the timeout scaled and at full scale: {settings}"
    );

    // The target passes its health checks while the page watches: initial, then healthy.
    let registered = lb.register(app.addr).expect("the app is a new target");
    assert_eq!(registered.id, 1);
    wait_until("the app is healthy", BROWSER_LIMIT, || {
        lb.targets()
            .first()
            .is_some_and(|t| t.state == TargetState::Healthy)
    })
    .await;

    // A burst the page cannot draw row by row: it keeps the newest ROW_CAP rows and counts.
    let burst_started = Instant::now();
    let senders: Vec<_> = (0..BURST_CONNECTIONS)
        .map(|_| {
            let proxy = lb.addr();
            tokio::spawn(async move {
                let mut client = RawClient::connect(proxy).await;
                for _ in 0..BURST_PER_CONNECTION {
                    get_ok(&mut client).await;
                }
            })
        })
        .collect();
    for sender in senders {
        sender.await.expect("a burst connection");
    }
    let burst = BURST_CONNECTIONS * BURST_PER_CONNECTION;
    let burst_took = burst_started.elapsed();
    // The page has read the whole burst (or says it had to drop some of it).
    let page = wait_for_page(&browser, "the burst, aggregated", |p| {
        (p["total"] == json!(burst) || p["missed"].as_u64().is_some_and(|n| n > 0))
            && chip(p, "200", "app") == Some(burst as u64)
            && p["rows"].as_array().map(Vec::len) == Some(ROW_CAP)
            && p["note"]
                .as_str()
                .is_some_and(|n| n.starts_with(&format!("newest {ROW_CAP} of ")))
    })
    .await;
    eprintln!(
        "live view: a burst of {burst} requests in {burst_took:?} ({:.0}/s); the page: {:?}, \
         {} events missed",
        burst as f64 / burst_took.as_secs_f64(),
        page["note"],
        page["missed"]
    );

    // A 200 from the app, a 502 (the app closes without answering), a 504 (the app
    // answers after 2 s, the idle timeout is 600 ms).
    for (path, status) in [("/", 200), ("/close", 502), ("/sleep/2", 504)] {
        let mut client = RawClient::connect(lb.addr()).await;
        assert_eq!(client.get(path).await.status, status, "{path}");
    }
    // A second target where nothing listens: its checks fail, it turns unhealthy.
    let dead = lb.register(closed_port().await).expect("a new target");

    let page = wait_for_page(
        &browser,
        "the three requests, the counters and the targets",
        |p| {
            has_row(p, "GET /", 200)
                && has_row(p, "GET /close", 502)
                && has_row(p, "GET /sleep/2", 504)
                && chip(p, "504", "LB") == Some(1)
                && p["targets"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t["state"] == json!("unhealthy")))
        },
    )
    .await;

    let aws = Profile::of(Cloud::Aws);
    let ok = row(&page, "GET /");
    assert_eq!(
        (ok["by"].as_str(), ok["cause"].as_str()),
        (Some("app"), Some(""))
    );
    assert!(ok["end"].as_str().unwrap().starts_with("200"), "{ok}");
    assert!(ok["legs"].as_str().unwrap().starts_with("LB "), "{ok}");
    assert!(
        ok["word"].is_null(),
        "the app's answer needs no explanation: {ok}"
    );

    let closed = row(&page, "GET /close");
    let word = aws.outcome(Reason::TargetClosedConnection).code;
    assert_eq!(closed["by"], json!("lb"), "{closed}");
    assert_eq!(
        closed["cause"],
        json!("target_closed_connection"),
        "{closed}"
    );
    assert_eq!(closed["word"], json!(word), "{closed}");
    assert!(
        closed["end"]
            .as_str()
            .unwrap()
            .contains(&format!("502 LB: {word}")),
        "{closed}"
    );
    let why = closed["explanation"].as_str().unwrap();
    assert!(
        why.starts_with(&format!(
            "{} closed the connection before sending a complete response",
            app.addr
        )) && why.ends_with("check its logs"),
        "{why}"
    );

    let slow = row(&page, "GET /sleep/2");
    let word = aws.outcome(Reason::TargetTimeout).code;
    assert_eq!(
        (slow["by"].as_str(), slow["cause"].as_str()),
        (Some("lb"), Some("target_timeout"))
    );
    assert_eq!(slow["word"], json!(word), "{slow}");
    let why = slow["explanation"].as_str().unwrap();
    assert!(
        why.contains("idle timeout of 600 ms (60 s at full scale)")
            && why.ends_with(aws.timeout_fix),
        "{why}"
    );
    // The app leg of the 504 is the idle timeout (600 ms), not the app's 2 s.
    let legs = slow["legs"].as_str().unwrap();
    let app_leg = shown_ms(legs.split_once("→ app ").map(|(_, t)| t).unwrap_or(legs));
    assert!(
        app_leg.is_some_and(|ms| (590.0..1500.0).contains(&ms)),
        "{legs}"
    );
    // The banner shows the latest of the LB's own answers: the 504's sentence.
    assert_eq!(page["last"].as_str(), Some(why));

    // Counters: the app's 200, the LB's 502 and 504, by cause.
    assert_eq!(
        chip(&page, "200", "app"),
        Some(burst as u64 + 1),
        "{page:#}"
    );
    assert_eq!(chip(&page, "502", "LB"), Some(1), "{page:#}");
    let causes = page["causes"].as_array().unwrap();
    for cause in ["target_timeout", "target_closed_connection"] {
        assert!(
            causes
                .iter()
                .any(|c| c["cause"] == json!(cause) && c["n"] == json!(1)),
            "{cause}: {causes:?}"
        );
    }
    // Targets: the app healthy (it went there from initial on the page), the dead one
    // unhealthy, with its last health check's result.
    let targets = page["targets"].as_array().unwrap();
    let app_row = targets
        .iter()
        .find(|t| t["id"] == json!(1))
        .expect("target 1");
    assert_eq!(app_row["state"], json!("healthy"), "{app_row}");
    assert!(
        app_row["text"]
            .as_str()
            .unwrap()
            .contains("healthy (health check)"),
        "{app_row}"
    );
    let dead_row = targets
        .iter()
        .find(|t| t["id"] == json!(dead.id))
        .expect("the dead target");
    assert!(
        dead_row["text"]
            .as_str()
            .unwrap()
            .contains("last health check:"),
        "{dead_row}"
    );

    // The presenter clicks the 504: its sentence opens under the row.
    browser.click("#rows li.req[data-status='504']").await;
    let opened = browser
        .script("return document.querySelector(\"#rows li.req[data-status='504']\").classList.contains('open') && getComputedStyle(document.querySelector(\"#rows li.req[data-status='504'] .why\")).display !== 'none';")
        .await;
    assert_eq!(opened, json!(true), "a click opens the row's explanation");

    let png = browser.screenshot().await;
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("live-view.png");
    std::fs::write(&out, &png).expect("write the screenshot");
    eprintln!(
        "live view: screenshot in {} ({} bytes); test took {:?}",
        out.display(),
        png.len(),
        started.elapsed()
    );

    // A page that read too slowly (a loaded machine) may have missed some of the burst's
    // events: it says how many. Events the control API drops for a slow reader arrive as
    // one `lagged` line (unit tested in src/admin.rs); the page adds them up.
    let missed_so_far = page["missed"]
        .as_u64()
        .expect("the page says what it missed");
    browser
        .script(r#"onEvent({"event": "lagged", "missed": 7}); return null;"#)
        .await;
    wait_for_page(&browser, "the missed events added up", |p| {
        p["missed"] == json!(missed_so_far + 7)
    })
    .await;

    browser.quit().await;
    admin.shutdown().await;
    check.finish(lb, app).await;
}

#[tokio::test]
async fn cli_ui_starts_the_control_api_and_prints_the_page_address() {
    // Its requests to the child's control API count among this process's sockets.
    let _turn = serial().await;
    let mut child = Command::new(BIN)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--ui",
            "--no-browser",
            "--no-health-checks",
        ])
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("lbsim starts");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let prefix = "lbsim: live view on http://";
    let line = tokio::time::timeout(BROWSER_LIMIT, async {
        while let Some(line) = lines.next_line().await.expect("read stderr") {
            if line.starts_with(prefix) {
                return line;
            }
        }
        panic!("lbsim exited without printing the live view's address");
    })
    .await
    .expect("lbsim prints the live view's address");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let url = &line["lbsim: live view on ".len()..];
    let (addr, path) = url["http://".len()..].split_once('/').expect("host/path");
    assert_eq!(path, "ui", "{line}");
    let addr: SocketAddr = addr.parse().expect("an address");
    assert!(addr.ip().is_loopback(), "{line}");

    // The page is there; the control API's root sends a browser to it, and still tells
    // a harness (no HTML accepted) which endpoints there are.
    let browser_accept = "text/html,application/xhtml+xml,*/*;q=0.8";
    for (path, accept, status, content_type) in [
        ("/ui", browser_accept, 200, "text/html; charset=utf-8"),
        ("/", browser_accept, 302, "text/plain; charset=utf-8"),
        ("/", "*/*", 404, "application/json"),
    ] {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.expect("write");
        let resp = Reader::new(stream)
            .response("GET", Interim::Skip)
            .await
            .expect("an answer");
        assert_eq!(resp.head.status, status, "{path} ({accept})");
        assert_eq!(
            resp.head.header("content-type"),
            Some(content_type),
            "{path} ({accept})"
        );
        match status {
            302 => assert_eq!(resp.head.header("location"), Some("/ui")),
            404 => {
                let body = String::from_utf8_lossy(&resp.body);
                assert!(body.contains("GET /ui (the live view)"), "{body}");
            }
            _ => {}
        }
    }
    child.start_kill().expect("stop lbsim");
    let _ = child.wait().await;
}

#[tokio::test]
async fn demo_ui_tells_on_the_page_the_story_the_terminal_narrates() {
    let Some((chromium, chromedriver)) = browser_tools() else {
        return;
    };
    // Its WebDriver calls count among this process's sockets.
    let _turn = serial().await;
    let mut demo = Command::new(BIN)
        .args(["demo", "--ui", "--no-browser"])
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("lbsim demo starts");
    let mut stdout = BufReader::new(demo.stdout.take().expect("stdout")).lines();
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Ok(Some(line)) = stdout.next_line().await {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut narration = Vec::new();
    let mut until_line = async |needle: &str, limit: Duration| -> String {
        let found = tokio::time::timeout(limit, async {
            while let Some(line) = lines.recv().await {
                narration.push(line.clone());
                if line.contains(needle) {
                    return line;
                }
            }
            panic!("lbsim demo ended before printing {needle:?}: {narration:#?}")
        })
        .await;
        found.unwrap_or_else(|_| panic!("lbsim demo never printed {needle:?}"))
    };
    let line = until_line("lbsim demo: live view on ", BROWSER_LIMIT).await;
    let url = line
        .split_once("live view on ")
        .map(|(_, url)| url.trim().to_string())
        .expect("the address");

    // The demo waits for the page before its first scenario.
    let browser = Browser::start(&chromium, &chromedriver).await;
    browser.open(&url).await;
    let done = until_line("Ctrl-C to stop", Duration::from_secs(120)).await;
    assert!(done.contains(&url), "{done}");
    assert!(
        narration
            .iter()
            .any(|l| l.contains("lbsim scenario show aws-502-deregistration-cut")),
        "the terminal narrated the last scenario"
    );

    // The page shows the last scenario alone (each one starts it afresh): its long request
    // cut by the end of the deregistration delay, with the sentence and the fix, and the
    // target draining.
    let page = wait_for_page(&browser, "the last scenario's 502, counted", |p| {
        chip(p, "502", "LB") == Some(1)
            && p["rows"].as_array().is_some_and(|rows| {
                rows.iter().any(|r| {
                    r["status"] == json!("502")
                        && r["cause"] == json!("deregistration_delay_elapsed")
                })
            })
    })
    .await;
    let cut = page["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["cause"] == json!("deregistration_delay_elapsed"))
        .unwrap();
    assert_eq!(cut["word"], json!("deregistration_delay_elapsed"), "{cut}");
    let why = cut["explanation"].as_str().unwrap();
    assert!(
        why.contains("deregistration delay of 500 ms (50 s at full scale) ended")
            && why
                .ends_with("raise the delay above your longest request, or finish requests sooner"),
        "{why}"
    );
    assert_eq!(page["lb"], json!("AWS ALB"));
    assert!(
        page["rows"].as_array().unwrap().len() < 10,
        "only the last scenario's requests: {page:#}"
    );
    let target = page["targets"]
        .as_array()
        .unwrap()
        .first()
        .cloned()
        .unwrap_or_default();
    assert!(
        target["text"]
            .as_str()
            .is_some_and(|t| t.contains("draining (deregistration)")),
        "{target}"
    );

    let png = browser.screenshot().await;
    let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("live-view-demo.png");
    std::fs::write(&out, &png).expect("write the screenshot");
    browser.quit().await;
    demo.start_kill().expect("stop the demo");
    let _ = demo.wait().await;
}
