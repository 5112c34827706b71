//! HTTPS listeners: the server certificate (generated at start, or the user's own PEM
//! files) and the rustls acceptor. ALPN offers `h2` and `http/1.1`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// Where the CA certificate of a generated server certificate is written by default
/// (in the current directory).
pub const DEFAULT_CA_OUT: &str = "lbsim-ca.pem";

/// The names the generated server certificate is for.
pub(crate) const GENERATED_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Where an HTTPS listener's certificate comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tls {
    /// A certificate for `localhost`, `127.0.0.1` and `::1`, signed by a CA generated at
    /// start (new each start) whose certificate (PEM) is written to `ca_out`, for clients
    /// to trust. The CA's private key is never written and is dropped once it has signed.
    Generate {
        /// Where the CA certificate is written (overwritten if it exists).
        ca_out: PathBuf,
    },
    /// The user's own certificate chain and private key (PEM files).
    Files {
        /// The certificate chain, server certificate first.
        cert: PathBuf,
        /// The private key (PKCS#8, PKCS#1 or SEC1).
        key: PathBuf,
    },
}

impl Tls {
    /// A generated certificate whose CA goes to [`DEFAULT_CA_OUT`].
    pub fn generate() -> Tls {
        Tls::Generate {
            ca_out: PathBuf::from(DEFAULT_CA_OUT),
        }
    }
}

/// A listener's TLS set-up, ready to accept.
pub(crate) struct Listener {
    pub acceptor: TlsAcceptor,
    /// Where the generated CA certificate was written (absolute), if one was.
    pub ca_written: Option<PathBuf>,
}

/// Builds the acceptor for `tls`, writing the CA certificate where asked. The message
/// of an error names the file and what is wrong with it.
pub(crate) fn listener(tls: &Tls) -> Result<Listener, String> {
    let (chain, key, ca_written) = match tls {
        Tls::Generate { ca_out } => {
            let (ca_pem, chain, key) =
                generate().map_err(|e| format!("generating the certificate: {e}"))?;
            std::fs::write(ca_out, ca_pem).map_err(|e| {
                format!(
                    "cannot write the CA certificate to {}: {e}",
                    ca_out.display()
                )
            })?;
            let shown = std::path::absolute(ca_out).unwrap_or_else(|_| ca_out.clone());
            (chain, key, Some(shown))
        }
        Tls::Files { cert, key } => (read_chain(cert)?, read_key(key)?, None),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("the certificate and key do not make a server identity: {e}"))?;
    // Both clouds offer HTTP/2 and HTTP/1.1 by ALPN, h2 first (ALB: HTTP/2 on HTTPS
    // listeners, `routing.http2.enabled` true by default; GCP: HTTP/2 by ALPN on HTTPS).
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Listener {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        ca_written,
    })
}

/// A CA and a server certificate it signed: the CA's PEM, the server's chain and key.
fn generate() -> Result<(String, Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), rcgen::Error>
{
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name
        .push(DnType::CommonName, "lbsim local CA (generated at start)");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let mut leaf = CertificateParams::new(GENERATED_NAMES.map(String::from).to_vec())?;
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf.use_authority_key_identifier_extension = true;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate()?;
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    Ok((
        ca_cert.pem(),
        vec![leaf_cert.der().clone(), ca_cert.der().clone()],
        key,
    ))
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("TLS certificate {}: {e}", path.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "TLS certificate {}: no CERTIFICATE block in the file",
            path.display()
        ));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("TLS key {}: {e}", path.display()))
}
