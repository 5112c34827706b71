//! Replays the request-head corpus (`tests/corpus/validate/*.http`, verdicts in
//! `expected.txt`) through `lbsim::validate::check_head`, then checks what must hold for any
//! bytes: every prefix of every corpus file and of random and mutated heads is either
//! undecided or decided as the whole is, and every head that is accepted also parses in
//! hyper configured as lbsim's engine configures it (a real hyper server on loopback).

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use lbsim::validate::{check_head, DesyncMode, Rejection, Rules, Verdict, AWS_RULES, GCP_RULES};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The rule sets every property is checked under.
const RULE_SETS: [(&str, Rules); 4] = [
    ("aws", AWS_RULES),
    ("gcp", GCP_RULES),
    (
        "aws monitor",
        Rules {
            desync: DesyncMode::Monitor,
            ..AWS_RULES
        },
    ),
    (
        "aws strictest",
        Rules {
            desync: DesyncMode::Strictest,
            ..AWS_RULES
        },
    ),
];

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/validate")
}

struct Case {
    file: String,
    bytes: Vec<u8>,
    aws: String,
    gcp: String,
}

/// The manifest's cases, with their bytes; fails if a file and the manifest disagree.
fn cases() -> Vec<Case> {
    let dir = corpus_dir();
    let manifest = std::fs::read_to_string(dir.join("expected.txt")).unwrap();
    let mut cases = Vec::new();
    for (n, line) in manifest.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(" | ").collect();
        assert!(
            fields.len() == 4,
            "expected.txt line {}: want `FILE | AWS | GCP | why`, got {line:?}",
            n + 1
        );
        let bytes = std::fs::read(dir.join(fields[0]))
            .unwrap_or_else(|e| panic!("expected.txt line {}: {}: {e}", n + 1, fields[0]));
        cases.push(Case {
            file: fields[0].to_string(),
            bytes,
            aws: fields[1].to_string(),
            gcp: fields[2].to_string(),
        });
    }
    let listed: BTreeSet<&str> = cases.iter().map(|c| c.file.as_str()).collect();
    assert_eq!(
        listed.len(),
        cases.len(),
        "a file is listed twice in expected.txt"
    );
    let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".http"))
        .collect();
    let on_disk: BTreeSet<&str> = on_disk.iter().map(String::as_str).collect();
    assert_eq!(listed, on_disk, "expected.txt and the .http files differ");
    cases
}

/// A verdict in the manifest's words.
fn show(verdict: Verdict) -> String {
    match verdict {
        Verdict::NeedMore => "need-more".into(),
        Verdict::Accept {
            ambiguous: false, ..
        } => "accept".into(),
        Verdict::Accept {
            ambiguous: true, ..
        } => "accept ambiguous".into(),
        Verdict::Reject(rejection) => match rejection {
            Rejection::Malformed(what) => format!("malformed: {what}"),
            Rejection::RequestLineTooLong => "request-line-too-long".into(),
            Rejection::HeaderTooLong => "header-too-long".into(),
            Rejection::HeadTooLarge => "head-too-large".into(),
            Rejection::TooManyForwardedFor(n) => format!("too-many-xff {n}"),
            Rejection::UnsupportedTransferEncoding => "unsupported-te".into(),
            Rejection::MethodNotAllowed(method) => format!("method-not-allowed {method}"),
            Rejection::UnsupportedMethod(method) => format!("unsupported-method {method}"),
            Rejection::Desync(class, reason) => format!("desync {class:?} {reason}"),
        },
    }
}

#[test]
fn every_corpus_file_gets_its_expected_verdict_per_cloud() {
    let cases = cases();
    assert!(
        cases.len() >= 50,
        "the corpus shrank to {} cases",
        cases.len()
    );
    let mut wrong = Vec::new();
    for case in &cases {
        for (cloud, rules, want) in [("aws", AWS_RULES, &case.aws), ("gcp", GCP_RULES, &case.gcp)] {
            let got = show(check_head(&case.bytes, &rules));
            if &got != want {
                wrong.push(format!(
                    "{} ({cloud}): want {want:?}, got {got:?}",
                    case.file
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

/// What must hold for `buf` under `rules`: `Accept` names the end of an empty line, and
/// the head alone gets the same verdict.
fn assert_accept_is_a_head(buf: &[u8], rules: &Rules, label: &str) {
    if let Verdict::Accept { head_len, .. } = check_head(buf, rules) {
        assert!(
            head_len <= buf.len(),
            "{label}: head_len {head_len} past the end"
        );
        let head = &buf[..head_len];
        assert!(
            head.ends_with(b"\n\n") || head.ends_with(b"\n\r\n"),
            "{label}: the head does not end with an empty line: {:?}",
            String::from_utf8_lossy(head)
        );
        assert_eq!(check_head(head, rules), check_head(buf, rules), "{label}");
    }
}

/// Prefix lengths worth checking: all of them for small inputs. For the large limit
/// cases: the start, a stride, and the bytes around the shortest deciding prefix (found
/// by bisection; the checks on the other lengths catch a verdict that flips back).
fn prefix_lengths(buf: &[u8], rules: &Rules) -> Vec<usize> {
    let len = buf.len();
    if len <= 4096 {
        return (0..=len).collect();
    }
    let mut lengths: BTreeSet<usize> = (0..256).collect();
    lengths.extend((0..=len).step_by(509));
    let (mut undecided, mut decided) = (0, len);
    if check_head(buf, rules) != Verdict::NeedMore {
        while decided - undecided > 1 {
            let mid = undecided + (decided - undecided) / 2;
            if check_head(&buf[..mid], rules) == Verdict::NeedMore {
                undecided = mid;
            } else {
                decided = mid;
            }
        }
    }
    lengths.extend(decided.saturating_sub(4)..=(decided + 4).min(len));
    lengths.insert(len);
    lengths.into_iter().collect()
}

/// Every prefix is undecided or decided as the whole is; once the head is complete, the
/// prefix is decided as the whole is.
fn assert_prefixes_agree(buf: &[u8], rules: &Rules, lengths: &[usize], label: &str) {
    let full = check_head(buf, rules);
    for &len in lengths {
        let early = check_head(&buf[..len], rules);
        let head_done = matches!(full, Verdict::Accept { head_len, .. } if len >= head_len);
        let fine = if head_done {
            early == full
        } else {
            early == Verdict::NeedMore || early == full
        };
        assert!(
            fine,
            "{label}: the first {len} of {} bytes give {early:?}, all of them {full:?}",
            buf.len()
        );
    }
}

#[test]
fn no_prefix_of_a_corpus_file_is_decided_differently() {
    for case in cases() {
        for (name, rules) in &RULE_SETS {
            let lengths = prefix_lengths(&case.bytes, rules);
            let label = format!("{} ({name})", case.file);
            assert_prefixes_agree(&case.bytes, rules, &lengths, &label);
            assert_accept_is_a_head(&case.bytes, rules, &label);
        }
    }
}

/// xorshift64*: a fixed seed gives the same inputs on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

const METHODS: &[&[u8]] = &[
    b"GET", b"GET", b"POST", b"POST", b"POST", b"HEAD", b"PUT", b"TRACE", b"OPTIONS", b"DELETE",
    b"trace", b"G\xc3T", b"CONNECT",
];
const TARGETS: &[&[u8]] = &[
    b"/",
    b"/",
    b"/",
    b"/a?b=c",
    b"http://example.com/x",
    b"*",
    b"/caf\xc3\xa9",
    b"/a b",
    b"/<x>",
    b"/%20",
    b"",
];
const VERSIONS: &[&[u8]] = &[
    b"HTTP/1.1",
    b"HTTP/1.1",
    b"HTTP/1.1",
    b"HTTP/1.1",
    b"HTTP/1.1",
    b"HTTP/1.0",
    b"HTTP/1.2",
    b"http/1.1",
    b"",
    b"HTTP/1.1 ",
];
const LINE_ENDS: &[&[u8]] = &[
    b"\r\n", b"\r\n", b"\r\n", b"\r\n", b"\r\n", b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r",
    b"\r\r\n", b"\n\r",
];
const NAMES: &[&[u8]] = &[
    b"Host",
    b"Content-Length",
    b"Content-Length",
    b"Transfer-Encoding",
    b"Transfer-Encoding",
    b"transfer-encoding",
    b"Transfer_Encoding",
    b"Content.Length",
    b"X-Forwarded-For",
    b"Connection",
    b"Transfer-Encoding ",
    b" Content-Length",
    b"",
    b"X\x00",
    b"X-Caf\xc3\xa9",
];
const VALUES: &[&[u8]] = &[
    b"5",
    b"0",
    b"-1",
    b"5, 5",
    b"99999999999999999999",
    b"chunked",
    b"chunked, chunked",
    b"identity",
    b"identity, chunked",
    b"gzip",
    b"xchunked",
    b"chunked,",
    b"1.1.1.1, 2.2.2.2",
    b"close",
    b"",
    b"a\x01b",
    b"caf\xc3\xa9",
    b"a\rb",
];
const SPECIAL: &[u8] = b"\r\n\0 \t:,;\x7f\xff\x0ba5";

/// A head assembled from HTTP-shaped pieces, some of them wrong, and maybe a body.
fn random_head(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    if rng.chance(20) {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(rng.pick(METHODS));
    out.push(b' ');
    out.extend_from_slice(rng.pick(TARGETS));
    out.push(b' ');
    out.extend_from_slice(rng.pick(VERSIONS));
    out.extend_from_slice(rng.pick(LINE_ENDS));
    // Mostly a Host line first, as clients send: without one, every HTTP/1.1 head is
    // rejected before the other rules are reached (NAMES adds a second now and then).
    if !rng.chance(5) {
        out.extend_from_slice(b"Host: example.com\r\n");
    }
    for _ in 0..rng.below(7) {
        out.extend_from_slice(rng.pick(NAMES));
        if !rng.chance(15) {
            out.push(b':');
        }
        out.extend_from_slice(rng.pick(&[&b" "[..], b"", b"\t", b"  "]));
        out.extend_from_slice(rng.pick(VALUES));
        out.extend_from_slice(rng.pick(LINE_ENDS));
    }
    out.extend_from_slice(rng.pick(LINE_ENDS));
    if rng.chance(2) {
        out.extend_from_slice(rng.pick(&[&b"hello"[..], b"0\r\n\r\n", b"5\r\nhello\r\n0\r\n\r\n"]));
    }
    out
}

/// A small corpus file with a few bytes flipped, inserted or cut.
fn mutated(rng: &mut Rng, small: &[Vec<u8>]) -> Vec<u8> {
    let mut out = small[rng.below(small.len())].clone();
    for _ in 0..=rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(4) {
            0 if at < out.len() => out[at] = rng.pick(SPECIAL),
            1 => {
                let piece: &[u8] = if rng.chance(2) {
                    rng.pick(VALUES)
                } else {
                    rng.pick(LINE_ENDS)
                };
                out.splice(at..at, piece.iter().copied());
            }
            2 => {
                let end = (at + rng.below(8)).min(out.len());
                out.drain(at..end);
            }
            _ => out.truncate(at.max(out.len() / 2)),
        }
    }
    out
}

/// Fixed-seed random and mutated inputs: a mix of accepted, rejected and unfinished ones.
fn random_inputs() -> Vec<Vec<u8>> {
    let small: Vec<Vec<u8>> = cases()
        .into_iter()
        .map(|c| c.bytes)
        .filter(|b| !b.is_empty() && b.len() <= 512)
        .collect();
    let mut rng = Rng(0x1b5_7e57_5eed);
    let mut inputs = Vec::new();
    for i in 0..1500 {
        inputs.push(match i % 3 {
            0 => random_head(&mut rng),
            1 => mutated(&mut rng, &small),
            _ => {
                let len = rng.below(200);
                (0..len).map(|_| rng.next() as u8).collect()
            }
        });
    }
    inputs
}

#[test]
fn random_and_mutated_heads_never_panic_and_decide_once() {
    let mut kinds = BTreeSet::new();
    for (i, input) in random_inputs().iter().enumerate() {
        let lengths: Vec<usize> = (0..=input.len()).collect();
        for (name, rules) in &RULE_SETS {
            let label = format!("input {i} ({name}) {:?}", String::from_utf8_lossy(input));
            assert_prefixes_agree(input, rules, &lengths, &label);
            assert_accept_is_a_head(input, rules, &label);
            kinds.insert(show(check_head(input, rules)));
        }
    }
    // The generator reaches every kind of verdict, or this test would prove little.
    for kind in [
        "need-more",
        "accept",
        "accept ambiguous",
        "unsupported-te",
        "method-not-allowed TRACE",
        "unsupported-method CONNECT",
        "malformed: missing Host header",
        "malformed: more than one Host header",
        "desync Severe BadContentLength",
        "desync Acceptable NonCrLfLineTermination",
        "malformed: NUL byte",
        "malformed: CR not followed by LF",
    ] {
        assert!(
            kinds.contains(kind),
            "no input gave {kind:?}; got {kinds:?}"
        );
    }
}

/// A hyper HTTP/1.1 server configured as lbsim's engine configures its client side,
/// answering 200 to whatever it parses.
async fn hyper_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut http = hyper::server::conn::http1::Builder::new();
                http.preserve_header_case(true).title_case_headers(true);
                let service = service_fn(|req: Request<hyper::body::Incoming>| async move {
                    let seen = format!("{} {}", req.method(), req.uri());
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(seen))))
                });
                let _ = http.serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    addr
}

/// The status line hyper answers to `bytes` on a fresh connection.
async fn status_from_hyper(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut seen = Vec::new();
    let mut chunk = [0u8; 1024];
    let read = async {
        while !seen.windows(2).any(|w| w == b"\r\n") {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("hyper answers within 10 s");
    let text = String::from_utf8_lossy(&seen);
    text.lines().next().unwrap_or("").to_string()
}

/// `HTTP/1.1 200 OK`, or `HTTP/1.0 200 OK` to an HTTP/1.0 request: the service answered.
fn answered_200(status_line: &str) -> bool {
    let mut parts = status_line.split(' ');
    matches!(parts.next(), Some("HTTP/1.1" | "HTTP/1.0")) && parts.next() == Some("200")
}

#[tokio::test]
async fn every_accepted_head_parses_in_hyper() {
    let addr = hyper_server().await;
    let mut accepted: Vec<(String, Vec<u8>)> = Vec::new();
    for case in cases() {
        if RULE_SETS
            .iter()
            .any(|(_, rules)| matches!(check_head(&case.bytes, rules), Verdict::Accept { .. }))
        {
            accepted.push((case.file, case.bytes));
        }
    }
    let corpus_accepted = accepted.len();
    assert!(
        corpus_accepted >= 20,
        "only {corpus_accepted} corpus files accepted"
    );
    let mut seen = BTreeSet::new();
    for (i, input) in random_inputs().into_iter().enumerate() {
        let head_len = RULE_SETS
            .iter()
            .find_map(|(_, rules)| match check_head(&input, rules) {
                Verdict::Accept { head_len, .. } => Some(head_len),
                _ => None,
            });
        if let Some(head_len) = head_len {
            if seen.insert(input[..head_len].to_vec()) {
                accepted.push((format!("random input {i}"), input));
            }
        }
    }
    assert!(
        accepted.len() > corpus_accepted + 50,
        "only {} random heads accepted",
        accepted.len() - corpus_accepted
    );
    let mut refused = Vec::new();
    for (label, bytes) in &accepted {
        let status = status_from_hyper(addr, bytes).await;
        if !answered_200(&status) {
            refused.push(format!(
                "{label}: hyper answered {status:?} to {:?}",
                String::from_utf8_lossy(bytes)
            ));
        }
    }
    assert!(refused.is_empty(), "\n{}", refused.join("\n"));
}

#[tokio::test]
async fn hyper_alone_serves_what_the_clouds_reject() {
    // Why the module exists: each of these reaches the app through bare hyper.
    let addr = hyper_server().await;
    for file in [
        "trace.http",
        "connect_http10.http",
        "get_missing_host.http",
        "host_duplicate_differ.http",
        "xff_31.http",
        "request_line_16385.http",
        "head_aws_ok_gcp_too_large.http",
    ] {
        let bytes = std::fs::read(corpus_dir().join(file)).unwrap();
        assert!(
            matches!(check_head(&bytes, &AWS_RULES), Verdict::Reject(_))
                || matches!(check_head(&bytes, &GCP_RULES), Verdict::Reject(_)),
            "{file}"
        );
        let status = status_from_hyper(addr, &bytes).await;
        assert!(answered_200(&status), "{file}: {status}");
    }
}
