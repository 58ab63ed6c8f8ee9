//! TLS for elastickv (rustls, with the *ring* crypto provider): a
//! certificate, its key and a CA read from PEM files, kept in a
//! [`TlsContext`] that can be reloaded (on SIGHUP) without a restart. New
//! handshakes use the new files; established connections keep their
//! session. A reload that fails (a half-copied file, a key that does not
//! match) changes nothing, and says why.
//!
//! The files are Redis's (`tls-cert-file`, `tls-key-file`,
//! `tls-ca-cert-file`), and serve two uses:
//!
//! - [`Usage::Clients`]: the Redis TLS port. Clients are asked for a
//!   certificate as `tls-auth-clients` says (required, optional, or not).
//! - [`Usage::Cluster`]: between nodes (`tls-cluster`). Mutual TLS: a node
//!   presents its certificate both when it serves and when it calls, and
//!   accepts only peers whose certificate chains to the CA. A caller checks
//!   the name it dialled (host name or IP address) against the serving
//!   node's certificate, so the certificates name the addresses the nodes
//!   reach each other at.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use parking_lot::RwLock;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

pub use rustls::pki_types::ServerName;
pub use tokio_rustls::{TlsAcceptor, TlsConnector, client, server};

/// Where a node's TLS material is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The node's certificate chain (PEM), its own certificate first.
    pub cert: PathBuf,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The CA certificates (PEM) that clients' and peers' certificates
    /// must chain to.
    pub ca: Option<PathBuf>,
}

/// Whether the Redis TLS port asks clients for a certificate
/// (`tls-auth-clients`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// `yes` (Redis's default): a client without a valid certificate is
    /// refused at the handshake.
    #[default]
    Required,
    /// `optional`: a certificate is not needed, but one given must be
    /// valid.
    Optional,
    /// `no`: none is asked for.
    Off,
}

/// What a [`TlsContext`] serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// The Redis TLS port.
    Clients(ClientAuth),
    /// Node-to-node gRPC: mutual TLS, HTTP/2 negotiated by ALPN.
    Cluster,
}

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot read the {what} {path}: {detail}")]
    Read {
        what: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error("the {what} {path} holds no certificate")]
    NoCertificate { what: &'static str, path: PathBuf },
    #[error("{what} needs tls-ca-cert-file (the CA that certificates must chain to)")]
    NoCa { what: &'static str },
    #[error("cannot use the certificate {cert} with the key {key}: {detail}")]
    Unusable {
        cert: PathBuf,
        key: PathBuf,
        detail: String,
    },
    #[error("cannot use the CA certificates in {path}: {detail}")]
    BadCa { path: PathBuf, detail: String },
}

/// The files, parsed.
struct Material {
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    roots: Option<Arc<RootCertStore>>,
}

/// The configurations in force.
struct Configs {
    server: Arc<ServerConfig>,
    client: Option<Arc<ClientConfig>>,
}

/// TLS configurations built from [`TlsFiles`] for one [`Usage`], and
/// rebuilt from them by [`TlsContext::reload`]. Cheap to share (`Arc`).
pub struct TlsContext {
    files: TlsFiles,
    usage: Usage,
    configs: RwLock<Configs>,
}

impl std::fmt::Debug for TlsContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsContext")
            .field("files", &self.files)
            .field("usage", &self.usage)
            .finish()
    }
}

impl TlsContext {
    /// Reads the files and builds the configurations for `usage`.
    pub fn load(files: TlsFiles, usage: Usage) -> Result<Arc<TlsContext>, TlsError> {
        let configs = build(&files, usage)?;
        Ok(Arc::new(TlsContext {
            files,
            usage,
            configs: RwLock::new(configs),
        }))
    }

    /// Reads the files again; on success later handshakes use them, on
    /// failure the configurations in force stay.
    pub fn reload(&self) -> Result<(), TlsError> {
        let configs = build(&self.files, self.usage)?;
        *self.configs.write() = configs;
        Ok(())
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Accepts TLS connections with the configuration in force.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.configs.read().server.clone())
    }

    /// Opens TLS connections to peers with the configuration in force
    /// (for [`Usage::Cluster`]; `None` otherwise).
    pub fn connector(&self) -> Option<TlsConnector> {
        self.configs.read().client.clone().map(TlsConnector::from)
    }
}

/// A connection a listener accepted: plain TCP, or TLS over it.
pub enum ServedConn {
    Plain(TcpStream),
    Tls(Box<server::TlsStream<TcpStream>>),
}

impl ServedConn {
    /// The TCP connection underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            ServedConn::Plain(tcp) => tcp,
            ServedConn::Tls(tls) => tls.get_ref().0,
        }
    }
}

impl AsyncRead for ServedConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServedConn::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            ServedConn::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ServedConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ServedConn::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            ServedConn::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServedConn::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            ServedConn::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServedConn::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            ServedConn::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ServedConn::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            ServedConn::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ServedConn::Plain(tcp) => tcp.is_write_vectored(),
            ServedConn::Tls(tls) => tls.is_write_vectored(),
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn build(files: &TlsFiles, usage: Usage) -> Result<Configs, TlsError> {
    let material = read(files)?;
    let unusable = |e: rustls::Error| TlsError::Unusable {
        cert: files.cert.clone(),
        key: files.key.clone(),
        detail: e.to_string(),
    };
    let verifier = |roots: &Arc<RootCertStore>, optional: bool| {
        let builder = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider());
        let builder = if optional {
            builder.allow_unauthenticated()
        } else {
            builder
        };
        builder.build().map_err(|e| TlsError::BadCa {
            path: files.ca.clone().unwrap_or_default(),
            detail: e.to_string(),
        })
    };
    let client_verifier = match (usage, &material.roots) {
        (Usage::Clients(ClientAuth::Off), _) => WebPkiClientVerifier::no_client_auth(),
        (Usage::Clients(ClientAuth::Required), Some(roots)) | (Usage::Cluster, Some(roots)) => {
            verifier(roots, false)?
        }
        (Usage::Clients(ClientAuth::Optional), Some(roots)) => verifier(roots, true)?,
        (Usage::Clients(_), None) => {
            return Err(TlsError::NoCa {
                what: "tls-auth-clients yes|optional",
            });
        }
        (Usage::Cluster, None) => {
            return Err(TlsError::NoCa {
                what: "tls-cluster",
            });
        }
    };
    let mut server = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(unusable)?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(material.certs.clone(), material.key.clone_key())
        .map_err(unusable)?;
    let client = match (usage, &material.roots) {
        (Usage::Cluster, Some(roots)) => {
            server.alpn_protocols = vec![b"h2".to_vec()];
            let mut client = ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(unusable)?
                .with_root_certificates(roots.clone())
                .with_client_auth_cert(material.certs, material.key)
                .map_err(unusable)?;
            client.alpn_protocols = vec![b"h2".to_vec()];
            Some(Arc::new(client))
        }
        _ => None,
    };
    Ok(Configs {
        server: Arc::new(server),
        client,
    })
}

fn read(files: &TlsFiles) -> Result<Material, TlsError> {
    let certs = read_certs("tls-cert-file", &files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| TlsError::Read {
        what: "tls-key-file",
        path: files.key.clone(),
        detail: e.to_string(),
    })?;
    let roots = match &files.ca {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs("tls-ca-cert-file", path)? {
                roots.add(cert).map_err(|e| TlsError::BadCa {
                    path: path.clone(),
                    detail: e.to_string(),
                })?;
            }
            Some(Arc::new(roots))
        }
        None => None,
    };
    Ok(Material { certs, key, roots })
}

fn read_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read_error = |detail: String| TlsError::Read {
        what,
        path: path.to_path_buf(),
        detail,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| read_error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A CA, and certificates it signed for 127.0.0.1, written as PEM.
    struct Pki {
        dir: tempfile::TempDir,
        ca: rcgen::Certificate,
        ca_key: KeyPair,
    }

    impl Pki {
        fn new() -> Pki {
            let dir = tempfile::tempdir().unwrap();
            let ca_key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let ca = params.self_signed(&ca_key).unwrap();
            std::fs::write(dir.path().join("ca.crt"), ca.pem()).unwrap();
            Pki { dir, ca, ca_key }
        }

        /// Files for a certificate named `name` signed by this CA.
        fn issue(&self, name: &str) -> TlsFiles {
            let key = KeyPair::generate().unwrap();
            let params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
            let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
            let path = |ext: &str| self.dir.path().join(format!("{name}.{ext}"));
            std::fs::write(path("crt"), cert.pem()).unwrap();
            std::fs::write(path("key"), key.serialize_pem()).unwrap();
            TlsFiles {
                cert: path("crt"),
                key: path("key"),
                ca: Some(self.dir.path().join("ca.crt")),
            }
        }
    }

    /// Whether a mutual-TLS exchange between `server` and `client`
    /// contexts succeeds.
    async fn exchange(server: &TlsContext, client: &TlsContext) -> bool {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = server.acceptor();
        let served = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(tcp).await.ok()?;
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await.ok()?;
            tls.write_all(&buf).await.ok()?;
            tls.flush().await.ok()?;
            Some(())
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let called = async {
            let mut tls = client.connector().unwrap().connect(name, tcp).await.ok()?;
            tls.write_all(b"ping").await.ok()?;
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await.ok()?;
            (&buf == b"ping").then_some(())
        }
        .await;
        let served = served.await.unwrap();
        called.is_some() && served.is_some()
    }

    #[tokio::test]
    async fn nodes_with_certificates_of_one_ca_talk_and_others_are_refused() {
        let pki = Pki::new();
        let a = TlsContext::load(pki.issue("a"), Usage::Cluster).unwrap();
        let b = TlsContext::load(pki.issue("b"), Usage::Cluster).unwrap();
        assert!(exchange(&a, &b).await);
        let other = Pki::new();
        let stranger = TlsContext::load(other.issue("x"), Usage::Cluster).unwrap();
        assert!(!exchange(&a, &stranger).await, "a stranger's call taken");
        assert!(!exchange(&stranger, &a).await, "a stranger served a call");
    }

    #[tokio::test]
    async fn a_reload_takes_new_files_and_a_failed_one_keeps_the_old() {
        let pki = Pki::new();
        let files = pki.issue("a");
        let a = TlsContext::load(files.clone(), Usage::Cluster).unwrap();
        let other = Pki::new();
        let from_other = other.issue("b");
        let b = TlsContext::load(from_other.clone(), Usage::Cluster).unwrap();
        assert!(!exchange(&a, &b).await);
        // Node a moves to the other CA: its files are replaced, then
        // reloaded.
        for (from, to) in [
            (&from_other.cert, &files.cert),
            (&from_other.key, &files.key),
            (from_other.ca.as_ref().unwrap(), files.ca.as_ref().unwrap()),
        ] {
            std::fs::copy(from, to).unwrap();
        }
        a.reload().unwrap();
        assert!(exchange(&a, &b).await);
        // A broken key file: the reload fails and the files in force stay.
        std::fs::write(&files.key, "not a key").unwrap();
        let e = a.reload().unwrap_err().to_string();
        assert!(e.contains("tls-key-file"), "{e}");
        assert!(exchange(&a, &b).await);
    }

    #[test]
    fn bad_files_are_one_clear_error() {
        let pki = Pki::new();
        let good = pki.issue("a");
        let other = pki.issue("b");
        let missing = TlsFiles {
            cert: pki.dir.path().join("nope.crt"),
            ..good.clone()
        };
        let e = TlsContext::load(missing, Usage::Cluster).unwrap_err();
        assert!(e.to_string().contains("nope.crt"), "{e}");
        let mismatched = TlsFiles {
            key: other.key,
            ..good.clone()
        };
        let e = TlsContext::load(mismatched, Usage::Clients(ClientAuth::Off)).unwrap_err();
        assert!(matches!(e, TlsError::Unusable { .. }), "{e}");
        let no_ca = TlsFiles {
            ca: None,
            ..good.clone()
        };
        let e = TlsContext::load(no_ca.clone(), Usage::Clients(ClientAuth::Required)).unwrap_err();
        assert!(e.to_string().contains("tls-ca-cert-file"), "{e}");
        assert!(TlsContext::load(no_ca, Usage::Clients(ClientAuth::Off)).is_ok());
        let not_pem = TlsFiles {
            ca: Some(good.key.clone()),
            ..good
        };
        let e = TlsContext::load(not_pem, Usage::Cluster).unwrap_err();
        assert!(matches!(e, TlsError::NoCertificate { .. }), "{e}");
    }
}
