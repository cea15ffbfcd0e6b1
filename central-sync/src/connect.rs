//! Connecting to the central database: a URL without secrets, the password handed over
//! separately (never logged, never part of an error), TLS through rustls.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, Config};
use tokio_postgres_rustls::MakeRustlsConnect;

/// How the database's certificate is treated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Tls {
    /// Plain TCP: only for a database on the same host or a private link.
    Disable,
    /// Encrypted, the certificate is not checked (protects against eavesdropping only).
    Require,
    /// Encrypted; the certificate must chain to `ca_file` (PEM) or, when `None`, to the
    /// system's CAs, and must name the host.
    #[default]
    VerifyFull,
    VerifyFullWith {
        ca_file: PathBuf,
    },
}

/// Where and how to connect.
#[derive(Clone)]
pub struct ConnectOptions {
    /// `postgres://USER@HOST[:PORT]/DATABASE`, without a password.
    pub url: String,
    pub password: Option<String>,
    pub tls: Tls,
    /// Connecting gives up after this long (default 10 s).
    pub connect_timeout: Duration,
    /// Shown in `pg_stat_activity`.
    pub application_name: String,
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("url", &self.url)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl ConnectOptions {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            password: None,
            tls: Tls::default(),
            connect_timeout: Duration::from_secs(10),
            application_name: "central-sync".to_owned(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL did not parse. The text is the parser's, which never repeats a password.
    #[error("bad database URL: {0}")]
    Url(String),
    #[error("the database URL must not carry a password; pass it separately")]
    PasswordInUrl,
    #[error("cannot read the CA file {path}: {why}")]
    CaFile { path: PathBuf, why: String },
    #[error("no trusted CA certificate for verify-full (set a CA file)")]
    NoTrustedCa,
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot connect to the database: {0}")]
    Db(#[from] tokio_postgres::Error),
}

/// Connects and spawns the connection task on the current tokio runtime. The task ends
/// when the client is dropped or the connection breaks.
pub async fn connect(opts: &ConnectOptions) -> Result<Client, ConnectError> {
    let mut config: Config = opts
        .url
        .parse()
        .map_err(|e: tokio_postgres::Error| ConnectError::Url(e.to_string()))?;
    if config.get_password().is_some() {
        return Err(ConnectError::PasswordInUrl);
    }
    if let Some(pw) = &opts.password {
        config.password(pw);
    }
    config
        .connect_timeout(opts.connect_timeout)
        .application_name(&opts.application_name)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30));
    match &opts.tls {
        Tls::Disable => {
            config.ssl_mode(SslMode::Disable);
            let (client, conn) = config.connect(tokio_postgres::NoTls).await?;
            tokio::spawn(log_connection_end(conn));
            Ok(client)
        }
        tls => {
            config.ssl_mode(SslMode::Require);
            let make = MakeRustlsConnect::new(client_config(tls)?);
            let (client, conn) = config.connect(make).await?;
            tokio::spawn(log_connection_end(conn));
            Ok(client)
        }
    }
}

async fn log_connection_end<F>(conn: F)
where
    F: std::future::Future<Output = Result<(), tokio_postgres::Error>>,
{
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "database connection ended");
    }
}

/// The rustls configuration for `tls` (not [`Tls::Disable`]).
pub fn client_config(tls: &Tls) -> Result<rustls::ClientConfig, ConnectError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?;
    let config = match tls {
        Tls::Require | Tls::Disable => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
            .with_no_client_auth(),
        Tls::VerifyFull | Tls::VerifyFullWith { .. } => {
            let mut roots = rustls::RootCertStore::empty();
            if let Tls::VerifyFullWith { ca_file } = tls {
                let bad = |why: String| ConnectError::CaFile {
                    path: ca_file.clone(),
                    why,
                };
                for cert in
                    CertificateDer::pem_file_iter(ca_file).map_err(|e| bad(e.to_string()))?
                {
                    let cert = cert.map_err(|e| bad(e.to_string()))?;
                    roots.add(cert).map_err(|e| bad(e.to_string()))?;
                }
            } else {
                // Certificates the system store cannot parse are skipped, as browsers do.
                roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            }
            if roots.is_empty() {
                return Err(ConnectError::NoTrustedCa);
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    Ok(config)
}

/// `require`: encryption without authentication of the server, as libpq's `sslmode=require`.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
