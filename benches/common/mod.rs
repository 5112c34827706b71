//! Shared pieces of the benchmark programs: a fast hyper upstream, child processes
//! (lbsim, nginx, HAProxy), a byte pattern to verify streamed bodies, percentiles and
//! table printing. Each bench uses only part of it.
#![allow(dead_code)]

use std::convert::Infallible;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::task::{Context, Poll};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

/// The lbsim binary: `$LBSIM_BIN` (benches/run.sh sets it to a copy of the plain
/// `cargo build --release` binary), else the `target/release/lbsim` that `cargo bench`
/// built, which carries the dev-dependency features (tokio `test-util`).
pub fn lbsim_bin() -> PathBuf {
    match std::env::var_os("LBSIM_BIN") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_BIN_EXE_lbsim")),
    }
}

fn lbsim_bin_note() -> &'static str {
    if std::env::var_os("LBSIM_BIN").is_some() {
        ""
    } else {
        " (built by cargo bench with dev-dependency features; benches/run.sh uses the plain \
         release build)"
    }
}

/// Reads an environment knob, e.g. `BENCH_SECS=3`.
pub fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A loopback address that was free a moment ago.
pub fn free_addr() -> SocketAddr {
    let l = StdListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr")
}

/// Waits until something accepts connections on `addr`.
pub fn wait_listening(addr: SocketAddr, limit: Duration) -> io::Result<()> {
    let start = Instant::now();
    loop {
        match StdStream::connect(addr) {
            Ok(_) => return Ok(()),
            Err(e) if start.elapsed() > limit => return Err(e),
            Err(_) => thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// A fresh scratch directory under the system temp dir, removed by [`Scratch`]'s drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("lbsim-bench-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }
    pub fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // `KEEP_SCRATCH=1` keeps configs and logs (lbsim's log explains its errors).
        if std::env::var_os("KEEP_SCRATCH").is_none() {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

/// A child process this bench started; stopped with SIGTERM (then SIGKILL) on drop.
pub struct Proc {
    pub name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr going to `log`.
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> io::Result<Proc> {
        let out = fs::File::create(log)?;
        let err = out.try_clone()?;
        let child = cmd.stdin(Stdio::null()).stdout(out).stderr(err).spawn()?;
        Ok(Proc {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The child's output so far (for error messages).
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics with the child's log if it has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited ({status}); its output:\n{}",
                self.name,
                self.log_text()
            );
        }
    }

    /// Waits until the child listens on `addr`, or panics with its log.
    pub fn wait_listening(&mut self, addr: SocketAddr) {
        let start = Instant::now();
        while StdStream::connect(addr).is_err() {
            self.assert_running();
            if start.elapsed() > Duration::from_secs(10) {
                panic!(
                    "{} does not listen on {addr}:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Resident set size in KiB, from /proc/<pid>/status `VmRSS`.
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid())
    }

    /// `VmRSS` of the child plus its own children (nginx's workers), in KiB.
    pub fn rss_tree_kib(&self) -> u64 {
        let pid = self.pid();
        rss_kib(pid) + children_of(pid).into_iter().map(rss_kib).sum::<u64>()
    }

    /// Open file descriptors of the child.
    pub fn fd_count(&self) -> usize {
        fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// SIGTERM, up to 3 s to exit, then SIGKILL.
    pub fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .stderr(Stdio::null())
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `VmRSS` of a process in KiB (0 if unreadable).
pub fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// (ppid, utime, stime) of a process, times in clock ticks (1/100 s on Linux).
fn stat_of(pid: u32) -> Option<(u32, u64, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some((f[1].parse().ok()?, f[11].parse().ok()?, f[12].parse().ok()?))
}

/// CPU time (user, system) used so far by `pid` and its live children (nginx workers),
/// in microseconds.
pub fn cpu_us(pid: u32) -> (u64, u64) {
    let mut user = 0;
    let mut sys = 0;
    let mut add = |p: u32| {
        if let Some((_, u, s)) = stat_of(p) {
            user += u * 10_000;
            sys += s * 10_000;
        }
    };
    add(pid);
    for child in children_of(pid) {
        add(child);
    }
    (user, sys)
}

/// Live child processes of `pid`.
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .filter(|&child| stat_of(child).is_some_and(|(ppid, _, _)| ppid == pid))
        .collect()
}

/// The soft limit on open files of this process (`ulimit -n`).
pub fn open_files_limit() -> u64 {
    let limits = fs::read_to_string("/proc/self/limits").unwrap_or_default();
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
}

/// lbsim's log filter in the benches: `$LBSIM_LOG`, by default `lbsim=info` as users run
/// it (LB errors are logged at warn, one line each, to a file in the scratch dir).
pub fn lbsim_log() -> String {
    std::env::var("LBSIM_LOG").unwrap_or_else(|_| "lbsim=info".into())
}

/// The command line of an lbsim (AWS, no health checks) on `listen` in front of `upstream`.
pub fn lbsim_command(upstream: SocketAddr, listen: SocketAddr) -> Command {
    lbsim_command_for("aws", upstream, listen)
}

/// The command line of an lbsim as `cloud` (`--cloud` value), no health checks, on
/// `listen` in front of `upstream`.
pub fn lbsim_command_for(cloud: &str, upstream: SocketAddr, listen: SocketAddr) -> Command {
    let mut cmd = Command::new(lbsim_bin());
    cmd.args([
        "--cloud",
        cloud,
        "--listen",
        &listen.to_string(),
        "--upstream",
        &upstream.to_string(),
        "--no-health-checks",
    ])
    .env("RUST_LOG", lbsim_log())
    .env("NO_COLOR", "1");
    cmd
}

/// Starts lbsim from the release binary in front of `upstream`, with `extra` flags, and
/// waits until it listens.
pub fn spawn_lbsim(upstream: SocketAddr, extra: &[&str], scratch: &Scratch) -> (Proc, SocketAddr) {
    let listen = free_addr();
    let mut cmd = lbsim_command(upstream, listen);
    cmd.args(extra);
    let mut proc = Proc::spawn("lbsim", &mut cmd, &scratch.path("lbsim.log")).expect("spawn lbsim");
    proc.wait_listening(listen);
    (proc, listen)
}

/// Full path of `prog` when it is installed (`which`).
pub fn which(prog: &str) -> Option<PathBuf> {
    let out = Command::new("which").arg(prog).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!path.is_empty()).then(|| PathBuf::from(path))
}

/// nginx's response buffering: `NGINX_BUFFERING=off` streams through a small buffer
/// (`proxy_buffering off`); the default keeps nginx's buffering on with 64 KiB buffers
/// and no temp files, its fastest setting for 1 MiB bodies here.
pub fn nginx_buffering() -> &'static str {
    match std::env::var("NGINX_BUFFERING").as_deref() {
        Ok("off") => "proxy_buffering off; proxy_request_buffering off;",
        Ok("default") => "proxy_request_buffering off;",
        _ => {
            "proxy_buffering on; proxy_buffer_size 64k; proxy_buffers 8 64k; \
              proxy_busy_buffers_size 128k; proxy_max_temp_file_size 0; \
              proxy_request_buffering off;"
        }
    }
}

/// nginx as a plain reverse proxy with upstream keep-alive, 2 worker processes.
pub fn spawn_nginx(bin: &Path, upstream: SocketAddr, scratch: &Scratch) -> (Proc, SocketAddr) {
    spawn_nginx_proxy(bin, upstream, scratch, "nginx", 512, nginx_buffering())
}

/// nginx as a reverse proxy in front of `upstream` (2 workers), keeping up to `keepalive`
/// idle connections to it, with `buffering` (proxy directives) in its location; in the
/// scratch dir `name`.
pub fn spawn_nginx_proxy(
    bin: &Path,
    upstream: SocketAddr,
    scratch: &Scratch,
    name: &str,
    keepalive: u32,
    buffering: &str,
) -> (Proc, SocketAddr) {
    let http = format!(
        r#"    upstream app {{
        server {upstream};
        keepalive {keepalive};
        keepalive_requests 100000000;
    }}
    server {{
        listen {{listen}};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            {buffering}
        }}
    }}
"#
    );
    spawn_nginx_with(bin, scratch, name, 2, &http)
}

/// nginx with `workers` worker processes and `servers` inside its `http` block (where
/// `{listen}` stands for the address it gets), access log off and keep-alive without
/// limits; in the scratch dir `name`. Waits until it listens.
pub fn spawn_nginx_with(
    bin: &Path,
    scratch: &Scratch,
    name: &str,
    workers: u32,
    servers: &str,
) -> (Proc, SocketAddr) {
    let listen = free_addr();
    let dir = scratch.path(name);
    fs::create_dir_all(&dir).expect("nginx dir");
    let d = dir.display();
    let servers = servers.replace("{listen}", &listen.to_string());
    let conf = format!(
        r#"worker_processes {workers};
daemon off;
master_process on;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
worker_rlimit_nofile 20000;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_max_body_size 0;
{servers}}}
"#
    );
    let conf_path = dir.join("nginx.conf");
    fs::write(&conf_path, conf).expect("write nginx.conf");
    let mut cmd = Command::new(bin);
    cmd.arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(&conf_path)
        .arg("-e")
        .arg(dir.join("error.log"));
    let mut proc =
        Proc::spawn(name, &mut cmd, &scratch.path(&format!("{name}.log"))).expect("spawn nginx");
    proc.wait_listening(listen);
    (proc, listen)
}

/// HAProxy's `maxconn`: it needs two file descriptors per connection, so half the fd
/// limit, less a margin, at most 16,000.
pub fn haproxy_maxconn() -> u64 {
    (open_files_limit().saturating_sub(400) / 2).clamp(256, 16_000)
}

/// HAProxy as a plain HTTP reverse proxy (server keep-alive is its default), 2 threads.
pub fn spawn_haproxy(bin: &Path, upstream: SocketAddr, scratch: &Scratch) -> (Proc, SocketAddr) {
    let listen = free_addr();
    let maxconn = haproxy_maxconn();
    // HAPROXY_SPLICE=1: let HAProxy move bodies with splice(2) (zero-copy), to show
    // what a proxy that does not copy bodies through user space reaches here.
    let (pipes, splice) = if std::env::var("HAPROXY_SPLICE").as_deref() == Ok("1") {
        // Each pipe takes two more descriptors: keep them within the fd limit.
        (
            "    maxpipes 64\n",
            "    option splice-request\n    option splice-response\n",
        )
    } else {
        ("", "")
    };
    let conf = format!(
        r#"global
    nbthread 2
    maxconn {maxconn}
{pipes}
defaults
    mode http
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    option http-keep-alive
    http-reuse always
{splice}
frontend fe
    bind {listen}
    default_backend be

backend be
    server app {upstream}
"#
    );
    let conf_path = scratch.path("haproxy.cfg");
    fs::write(&conf_path, conf).expect("write haproxy.cfg");
    let mut cmd = Command::new(bin);
    cmd.arg("-db").arg("-f").arg(&conf_path);
    let mut proc =
        Proc::spawn("haproxy", &mut cmd, &scratch.path("haproxy.log")).expect("spawn haproxy");
    proc.wait_listening(listen);
    (proc, listen)
}

/// The proxies under test in front of `upstream`: lbsim always, nginx and HAProxy when
/// installed. Returns (name, address) pairs, the processes (stopped on drop) and notes
/// about what was skipped.
pub fn spawn_proxies(
    upstream: SocketAddr,
    scratch: &Scratch,
    want: impl Fn(&str) -> bool,
) -> (Vec<(&'static str, SocketAddr)>, Vec<Proc>, Vec<String>) {
    let mut targets = Vec::new();
    let mut procs = Vec::new();
    let mut notes = Vec::new();
    if want("lbsim") {
        let (p, addr) = spawn_lbsim(upstream, &[], scratch);
        notes.push(format!(
            "lbsim: {} --cloud aws --no-health-checks (tokio, 2 workers)",
            lbsim_bin().display()
        ));
        targets.push(("lbsim", addr));
        procs.push(p);
    }
    if want("nginx") {
        match which("nginx") {
            Some(bin) => {
                let (p, addr) = spawn_nginx(&bin, upstream, scratch);
                notes.push(format!(
                    "nginx: {} (2 workers, upstream keepalive 512; {})",
                    bin.display(),
                    nginx_buffering()
                ));
                targets.push(("nginx", addr));
                procs.push(p);
            }
            None => notes.push("nginx not installed: skipped (apt-get install -y nginx)".into()),
        }
    }
    if want("haproxy") {
        match which("haproxy") {
            Some(bin) => {
                let (p, addr) = spawn_haproxy(&bin, upstream, scratch);
                notes.push(format!(
                    "haproxy: {} (nbthread 2, http-reuse always)",
                    bin.display()
                ));
                targets.push(("haproxy", addr));
                procs.push(p);
            }
            None => {
                notes.push("haproxy not installed: skipped (apt-get install -y haproxy)".into())
            }
        }
    }
    (targets, procs, notes)
}

/// `TARGETS=direct,lbsim` limits a bench to those targets (all by default).
pub fn wanted_targets() -> impl Fn(&str) -> bool {
    let wanted: Option<Vec<String>> = std::env::var("TARGETS")
        .ok()
        .map(|t| t.split(',').map(|s| s.trim().to_string()).collect());
    move |name: &str| wanted.as_ref().is_none_or(|w| w.iter().any(|x| x == name))
}

// ---------------------------------------------------------------------------------------
// The byte pattern of streamed bodies: byte i of a body is i mod 251.

const PERIOD: usize = 251;
/// Size of the frames the pattern body yields.
pub const CHUNK: usize = 64 * 1024;

fn pattern_buf() -> &'static Bytes {
    static BUF: OnceLock<Bytes> = OnceLock::new();
    BUF.get_or_init(|| {
        (0..CHUNK + PERIOD)
            .map(|i| (i % PERIOD) as u8)
            .collect::<Vec<u8>>()
            .into()
    })
}

/// A body of `len` pattern bytes, in frames of [`CHUNK`] (zero-copy slices).
pub struct PatternBody {
    offset: u64,
    len: u64,
}

impl PatternBody {
    pub fn new(len: u64) -> Self {
        PatternBody { offset: 0, len }
    }
}

impl Body for PatternBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        let left = this.len - this.offset;
        if left == 0 {
            return Poll::Ready(None);
        }
        let n = left.min(CHUNK as u64) as usize;
        let start = (this.offset % PERIOD as u64) as usize;
        this.offset += n as u64;
        Poll::Ready(Some(Ok(Frame::data(pattern_buf().slice(start..start + n)))))
    }

    fn is_end_stream(&self) -> bool {
        self.offset == self.len
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len - self.offset)
    }
}

/// Checks that received bytes continue the pattern.
#[derive(Default)]
pub struct Verifier {
    pub offset: u64,
}

impl Verifier {
    /// Err(offset of the first wrong byte's piece).
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), u64> {
        let buf = pattern_buf();
        while !data.is_empty() {
            let n = data.len().min(CHUNK);
            let start = (self.offset % PERIOD as u64) as usize;
            if data[..n] != buf[start..start + n] {
                return Err(self.offset);
            }
            self.offset += n as u64;
            data = &data[n..];
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// The fast upstream: a minimal hyper 1.x server.

/// Body of `/small`.
pub const SMALL_BODY: &[u8] = b"hello, world\n";
/// Size of `/1m`.
pub const MIB: usize = 1024 * 1024;

/// What the fast upstream counts.
#[derive(Debug, Default)]
pub struct UpstreamStats {
    pub connections: AtomicU64,
    pub requests: AtomicU64,
}

/// A running fast upstream (its runtime lives on its own threads until the process ends).
pub struct FastUpstream {
    pub addr: SocketAddr,
    pub stats: Arc<UpstreamStats>,
}

type UpBody = Either<Full<Bytes>, PatternBody>;

/// Accept queue of the bench's own listeners. `tokio::net::TcpListener::bind` asks for
/// 128 (mio copies std's value), and a burst of more connects than that loses SYNs that
/// the client only retransmits a second later.
pub const LISTEN_BACKLOG: u32 = 4096;

/// A listener on 127.0.0.1, free port, with the given accept queue.
pub fn listen_loopback(backlog: u32) -> io::Result<TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    socket.listen(backlog)
}

/// Starts the fast upstream on its own tokio runtime with `workers` threads
/// (1 = current_thread). Paths: `/small` (13 bytes), `/1m` (1 MiB), `/pattern/{n}`
/// (n pattern bytes, streamed), `/delay/{ms}` (`ok` after ms), `POST /upload` (consumes and verifies a pattern body,
/// answers its length), anything else `ok`.
pub fn start_fast_upstream(workers: usize) -> FastUpstream {
    let (tx, rx) = mpsc::channel();
    let stats = Arc::new(UpstreamStats::default());
    let st = stats.clone();
    thread::Builder::new()
        .name("upstream".into())
        .spawn(move || {
            let rt = if workers <= 1 {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            } else {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(workers)
                    .thread_name("upstream-worker")
                    .enable_all()
                    .build()
            }
            .expect("upstream runtime");
            rt.block_on(async move {
                let listener = listen_loopback(LISTEN_BACKLOG).expect("bind");
                tx.send(listener.local_addr().expect("addr"))
                    .expect("send addr");
                let one_mib = Bytes::from(vec![b'x'; MIB]);
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    st.connections.fetch_add(1, Ordering::Relaxed);
                    let st = st.clone();
                    let one_mib = one_mib.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |req| {
                            st.requests.fetch_add(1, Ordering::Relaxed);
                            answer(req, one_mib.clone())
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        })
        .expect("upstream thread");
    let addr = rx.recv().expect("upstream address");
    FastUpstream { addr, stats }
}

async fn answer(req: Request<Incoming>, one_mib: Bytes) -> Result<Response<UpBody>, Infallible> {
    let path = req.uri().path().to_string();
    let full = |status: StatusCode, body: Bytes| {
        let mut r = Response::new(Either::Left(Full::new(body)));
        *r.status_mut() = status;
        r
    };
    if path == "/small" {
        return Ok(full(StatusCode::OK, Bytes::from_static(SMALL_BODY)));
    }
    if path == "/1m" {
        return Ok(full(StatusCode::OK, one_mib));
    }
    if let Some(n) = path.strip_prefix("/pattern/").and_then(|n| n.parse().ok()) {
        let mut r = Response::new(Either::Right(PatternBody::new(n)));
        r.headers_mut()
            .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(n));
        return Ok(r);
    }
    if let Some(ms) = path.strip_prefix("/delay/").and_then(|n| n.parse().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        return Ok(full(StatusCode::OK, Bytes::from_static(b"ok")));
    }
    if path == "/upload" {
        let mut body = req.into_body();
        let mut v = Verifier::default();
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                return Ok(full(StatusCode::BAD_REQUEST, "body error\n".into()));
            };
            if let Ok(data) = frame.into_data() {
                if let Err(at) = v.feed(&data) {
                    let msg = format!("pattern mismatch near offset {at}\n");
                    return Ok(full(StatusCode::UNPROCESSABLE_ENTITY, msg.into()));
                }
            }
        }
        return Ok(full(StatusCode::OK, v.offset.to_string().into()));
    }
    Ok(full(StatusCode::OK, Bytes::from_static(b"ok")))
}

// ---------------------------------------------------------------------------------------
// Client side.

/// Opens an HTTP/1.1 client connection (hyper) to `addr`; its driver task is spawned on
/// the current runtime.
pub async fn connect<B>(addr: SocketAddr) -> io::Result<SendRequest<B>>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(io::Error::other)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Reads a response body to its end; returns its length.
pub async fn drain(mut body: Incoming, mut verify: Option<&mut Verifier>) -> io::Result<u64> {
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(io::Error::other)?;
        if let Ok(data) = frame.into_data() {
            if let Some(v) = verify.as_deref_mut() {
                v.feed(&data)
                    .map_err(|at| io::Error::other(format!("pattern mismatch near offset {at}")))?;
            }
            n += data.len() as u64;
        }
    }
    Ok(n)
}

/// A blocking `GET path` on a fresh connection with `Connection: close`; returns the
/// status code (for start-up polling and warm-ups).
pub fn blocking_get_status(addr: SocketAddr, path: &str) -> io::Result<u16> {
    let mut s = StdStream::connect(addr)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head)?;
    std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::other("bad status line"))
}

// ---------------------------------------------------------------------------------------
// Statistics and printing.

/// Nearest-rank percentile of sorted samples.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Median of unsorted values.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    if v.is_empty() {
        return 0.0;
    }
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Nanoseconds as a short human string (µs below 10 ms, else ms).
pub fn fmt_ns(ns: u64) -> String {
    if ns < 10_000_000 {
        format!("{:.0} µs", ns as f64 / 1e3)
    } else {
        format!("{:.1} ms", ns as f64 / 1e6)
    }
}

pub fn verdict(pass: bool) -> &'static str {
    if pass {
        "PASS"
    } else {
        "MISS"
    }
}

/// Prints a table with a header row; columns are padded to their widest cell.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            width[i] = width[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = width[i]))
            .collect();
        println!("| {} |", padded.join(" | "));
    };
    line(header.iter().map(|s| s.to_string()).collect());
    println!(
        "|{}|",
        width
            .iter()
            .map(|w| "-".repeat(w + 2))
            .collect::<Vec<_>>()
            .join("|")
    );
    for row in rows {
        line(row.clone());
    }
    let _ = io::stdout().flush();
}

/// One line describing the machine, printed at the top of every bench.
pub fn machine_note() -> String {
    let cores = thread::available_parallelism().map_or(0, |n| n.get());
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!(
        "machine: {cores} cores (shared with other jobs), load average {}; lbsim binary {}{}",
        load.join(" "),
        lbsim_bin().display(),
        lbsim_bin_note()
    )
}
