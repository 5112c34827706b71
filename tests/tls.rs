//! HTTPS listeners (`--tls`, [`lbsim::SimulatorBuilder::tls`]): real sockets on 127.0.0.1
//! and a real TLS client (tokio-rustls) that trusts the CA certificate lbsim wrote, or the
//! user's own certificate. Each test checks that every TCP socket it opened is closed
//! again (a failed handshake included), so the file's tests run one at a time.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use lbsim::{Cloud, Simulator, Tls};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::TlsConnector;

use support::*;

/// Connects over TLS to `addr` for server name `name`; asserts ALPN chose http/1.1.
async fn connect(
    tls: &TlsConnector,
    addr: std::net::SocketAddr,
    name: &str,
) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(name.to_string()).unwrap();
    let stream = tokio::time::timeout(READ_LIMIT, tls.connect(name, tcp))
        .await
        .expect("handshake in time")
        .expect("handshake succeeds");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    stream
}

/// Everything the peer sends until it closes (or the connection fails), within the limit.
async fn read_all(conn: &mut (impl AsyncRead + Unpin)) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(READ_LIMIT, conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return out,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "connection still open after {READ_LIMIT:?}; got {:?}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
}

/// `GET path` with `Connection: close` over TLS; the whole answer as text.
async fn get(tls: &TlsConnector, addr: std::net::SocketAddr, name: &str, path: &str) -> String {
    let mut conn = connect(tls, addr, name).await;
    conn.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    String::from_utf8_lossy(&read_all(&mut conn).await).into_owned()
}

fn generated(dir: &Path) -> (Tls, PathBuf) {
    let ca = dir.join("ca.pem");
    (Tls::Generate { ca_out: ca.clone() }, ca)
}

#[tokio::test]
async fn a_request_over_tls_reaches_the_app() {
    let check = SocketsCheck::begin().await;
    let dir = scratch("tls", "ok");
    let (tls, ca) = generated(&dir);
    let app = mock(Duration::from_secs(60)).await;
    let lb = Simulator::builder(Cloud::Aws)
        .upstream(app.addr)
        .no_health_checks()
        .tls(tls)
        .start()
        .await
        .unwrap();
    assert_eq!(lb.scheme(), "https");
    assert_eq!(lb.tls_ca(), Some(ca.as_path()));
    let client = tls_client(&ca, &[b"http/1.1"]);
    // By name and by both loopback addresses the certificate names.
    for name in ["localhost", "127.0.0.1"] {
        let answer = get(&client, lb.addr(), name, "/").await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.ends_with("\r\n\r\nok"), "{answer}");
    }
    // Keep-alive over TLS: two requests on one connection.
    let mut conn = connect(&client, lb.addr(), "localhost").await;
    for _ in 0..2 {
        conn.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !got.ends_with(b"\r\n\r\nok") {
            let n = tokio::time::timeout(READ_LIMIT, conn.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"));
    }
    assert_eq!(lb.stats().by_status.get(&200).copied().unwrap_or(0), 4);
    drop(conn);
    check.finish(lb, app).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn the_alb_504_page_comes_over_tls() {
    let dir = scratch("tls", "504");
    let (tls, ca) = generated(&dir);
    let app = mock(Duration::from_secs(60)).await;
    let lb = Simulator::builder(Cloud::Aws)
        .upstream(app.addr)
        .no_health_checks()
        .idle_timeout(Duration::from_millis(300))
        .tls(tls)
        .start()
        .await
        .unwrap();
    let answer = get(
        &tls_client(&ca, &[b"http/1.1"]),
        lb.addr(),
        "localhost",
        "/sleep/2",
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 504 Gateway Time-out\r\n"),
        "{answer}"
    );
    assert!(answer.contains("\r\nServer: awselb/2.0\r\n"), "{answer}");
    assert_eq!(lb.stats().count(lbsim::Reason::TargetTimeout), 1);
    lb.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn the_ca_file_is_one_pem_certificate() {
    let check = SocketsCheck::begin().await;
    let dir = scratch("tls", "ca");
    let (tls, ca) = generated(&dir);
    let lb = Simulator::builder(Cloud::Aws)
        .no_health_checks()
        .tls(tls)
        .start()
        .await
        .unwrap();
    let text = std::fs::read_to_string(&ca).unwrap();
    assert!(text.starts_with("-----BEGIN CERTIFICATE-----\n"), "{text}");
    assert!(
        text.trim_end().ends_with("-----END CERTIFICATE-----"),
        "{text}"
    );
    let certs: Vec<_> = CertificateDer::pem_file_iter(&ca)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(certs.len(), 1);
    assert!(
        !text.contains("PRIVATE KEY"),
        "the CA's key is never written"
    );
    lb.shutdown().await;
    check.all_closed().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_plain_http_client_on_the_tls_port_is_closed_without_an_answer() {
    let check = SocketsCheck::begin().await;
    let dir = scratch("tls", "plain");
    let (tls, ca) = generated(&dir);
    let app = mock(Duration::from_secs(60)).await;
    let lb = Simulator::builder(Cloud::Aws)
        .upstream(app.addr)
        .no_health_checks()
        .tls(tls)
        .start()
        .await
        .unwrap();
    let mut plain = TcpStream::connect(lb.addr()).await.unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    // Closed, with at most a TLS alert: nothing HTTP.
    let got = read_all(&mut plain).await;
    assert!(
        !got.windows(5).any(|w| w == b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(lb.stats().by_status.is_empty(), "{:?}", lb.stats());
    // The listener goes on serving TLS clients.
    let answer = get(
        &tls_client(&ca, &[b"http/1.1"]),
        lb.addr(),
        "localhost",
        "/",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    drop(plain);
    check.finish(lb, app).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn the_users_own_certificate_and_key() {
    let check = SocketsCheck::begin().await;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let dir = scratch("tls", "own");
    // The user's CA, and a certificate it signed for localhost.
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "the user's own CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let (cert, key, ca) = (
        dir.join("cert.pem"),
        dir.join("key.pem"),
        dir.join("ca.pem"),
    );
    std::fs::write(&cert, leaf.pem()).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    std::fs::write(&ca, ca_cert.pem()).unwrap();

    let app = mock(Duration::from_secs(60)).await;
    let lb = Simulator::builder(Cloud::Aws)
        .upstream(app.addr)
        .no_health_checks()
        .tls(Tls::Files {
            cert: cert.clone(),
            key: key.clone(),
        })
        .start()
        .await
        .unwrap();
    assert_eq!(
        lb.tls_ca(),
        None,
        "no CA is generated for the user's own certificate"
    );
    let answer = get(
        &tls_client(&ca, &[b"http/1.1"]),
        lb.addr(),
        "localhost",
        "/",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    check.finish(lb, app).await;

    // A key file that holds no key is refused at start, naming the file.
    let err = match Simulator::builder(Cloud::Aws)
        .tls(Tls::Files {
            cert: cert.clone(),
            key: cert.clone(),
        })
        .start()
        .await
    {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a certificate given as the key was accepted"),
    };
    assert!(err.contains("cert.pem"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

/// The binary: `lbsim --tls --listen 127.0.0.1:0` writes `lbsim-ca.pem` in its current
/// directory, says where on stderr, and serves HTTPS to a client that trusts it.
#[tokio::test]
async fn the_binary_says_where_the_ca_is() {
    // Its client sockets count in this process too: it waits for its turn.
    let _turn = serial().await;
    let dir = scratch("tls", "bin");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_lbsim"))
        .args(["--tls", "--listen", "127.0.0.1:0"])
        .current_dir(&dir)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (mut listen, mut ca_line) = (None, None);
    while listen.is_none() || ca_line.is_none() {
        let line = tokio::time::timeout(READ_LIMIT, lines.next_line())
            .await
            .expect("lbsim announces itself in time")
            .unwrap()
            .expect("lbsim is still running");
        if let Some((_, rest)) = line.split_once(" listening on https://") {
            let addr: std::net::SocketAddr = rest.split(' ').next().unwrap().parse().unwrap();
            listen = Some(addr);
        }
        if line.contains("lbsim-ca.pem") {
            ca_line = Some(line);
        }
    }
    let ca = dir.join("lbsim-ca.pem");
    let ca_line = ca_line.unwrap();
    assert!(ca_line.contains(&ca.display().to_string()), "{ca_line}");
    assert!(ca_line.contains("curl --http2 --cacert"), "{ca_line}");
    let answer = get(
        &tls_client(&ca, &[b"http/1.1"]),
        listen.unwrap(),
        "localhost",
        "/",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    let _ = child.start_kill();
    let _ = child.wait().await;
    let _ = std::fs::remove_dir_all(dir);
}
