//! Where a registry is and how to talk to it: base URL, credentials, TLS
//! verification, timeouts, upload chunk size; and the HTTP client built
//! from that (through `berth_net`, as every outbound client of berth).

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::ClientError;

/// The default size of the chunks of a chunked upload.
pub const DEFAULT_CHUNK_SIZE: usize = 8 << 20;

/// The largest chunk a registry's `OCI-Chunk-Min-Length` can make the
/// client hold in memory; a larger minimum is capped to this (the spec
/// makes the minimum a SHOULD).
pub const MAX_CHUNK_SIZE: usize = 128 << 20;

/// A user name and its password, or a robot's secret / an access token
/// used as a password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name (`robot$name` for berth or Harbor robots).
    pub username: String,
    /// The password or secret.
    pub secret: String,
}

impl Credentials {
    /// Credentials of `username` with `secret`.
    pub fn new(username: impl Into<String>, secret: impl Into<String>) -> Credentials {
        Credentials {
            username: username.into(),
            secret: secret.into(),
        }
    }

    /// The value of a Basic `Authorization` header.
    pub(crate) fn basic(&self) -> String {
        use base64::Engine as _;
        let raw = format!("{}:{}", self.username, self.secret);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// How the registry's TLS certificate is checked (https endpoints only).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum TlsVerify {
    /// Against the system's trusted CAs.
    #[default]
    System,
    /// Against the CA certificates of this PEM file only.
    CaFile(PathBuf),
    /// Not at all: any certificate is accepted. An explicit opt-in for
    /// registries with self-signed certificates; the connection is then
    /// open to whoever sits in between.
    SkipVerification,
}

/// A registry to talk to.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// The base URL, `http://host[:port]` or `https://host[:port]`, with no
    /// path (the API lives at `/v2/`).
    pub url: String,
    /// Credentials for Basic auth or for the token service; anonymous when
    /// `None`.
    pub credentials: Option<Credentials>,
    /// Certificate verification.
    pub tls: TlsVerify,
    /// The longest wait for a TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// The longest wait for any read: response headers, or the next bytes
    /// of a body. There is no total timeout, so a large blob streams as long
    /// as bytes keep coming.
    pub read_timeout: Duration,
    /// The size of the chunks of a chunked upload, and the largest blob
    /// uploaded in one request; raised to the registry's
    /// `OCI-Chunk-Min-Length` when it sends one (up to [`MAX_CHUNK_SIZE`]).
    pub chunk_size: usize,
    /// The page size (`n=`) asked of paginated listings (catalog, tags);
    /// the registry's default when `None`.
    pub page_size: Option<u32>,
}

impl Endpoint {
    /// An endpoint at `url`, anonymous, verifying TLS with the system's CAs,
    /// 30 s connect and 60 s read timeouts, 8 MiB chunks.
    pub fn new(url: impl Into<String>) -> Endpoint {
        Endpoint {
            url: url.into(),
            credentials: None,
            tls: TlsVerify::System,
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            chunk_size: DEFAULT_CHUNK_SIZE,
            page_size: None,
        }
    }

    /// This endpoint with credentials.
    pub fn with_credentials(mut self, credentials: Credentials) -> Endpoint {
        self.credentials = Some(credentials);
        self
    }

    /// This endpoint with the TLS verification `tls`.
    pub fn with_tls(mut self, tls: TlsVerify) -> Endpoint {
        self.tls = tls;
        self
    }

    /// The base URL, checked: http or https, a host, no path, query or
    /// credentials in it.
    pub(crate) fn base_url(&self) -> Result<reqwest::Url, ClientError> {
        let invalid = |why: &str| ClientError::Invalid(format!("registry URL {}: {why}", self.url));
        let url = reqwest::Url::parse(self.url.trim()).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("no host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                "put credentials in the endpoint's credentials, not the URL",
            ));
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(invalid(
                "no path or query is allowed (the API lives at /v2/)",
            ));
        }
        Ok(url)
    }

    /// The HTTP client: TLS as configured, the timeouts, no proxy from the
    /// environment, and no automatic redirects (the client follows them
    /// itself, to keep credentials on the registry's origin).
    pub(crate) fn http_client(&self) -> Result<reqwest::Client, ClientError> {
        let builder = match &self.tls {
            TlsVerify::System => berth_net::client_builder(&berth_net::TlsClient::default(), "tls"),
            TlsVerify::CaFile(path) => {
                berth_net::client_builder(&berth_net::TlsClient::with_ca(Some(path)), "tls")
            }
            TlsVerify::SkipVerification => unverified_builder(),
        }
        .map_err(|e| ClientError::Invalid(format!("registry {}: {e}", self.url)))?;
        builder
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(self.connect_timeout)
            .read_timeout(self.read_timeout)
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Invalid(format!("registry {}: HTTP client: {e}", self.url)))
    }
}

/// A reqwest builder whose TLS accepts any certificate. `berth_net` has
/// no such mode (it always verifies), so this one config is made here, on
/// `berth_net`'s verifying config with its verifier replaced; the
/// handshake signatures are still checked with ring.
fn unverified_builder() -> Result<reqwest::ClientBuilder, String> {
    let mut config = berth_net::tls_config(&berth_net::TlsClient::default(), "tls")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    config
        .dangerous()
        .set_certificate_verifier(Arc::new(AnyCertificate(provider)));
    // As berth_net::client_builder: reqwest is built without HTTP/2.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(reqwest::Client::builder().tls_backend_preconfigured(config))
}

/// Accepts every server certificate ([`TlsVerify::SkipVerification`]).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked() {
        for good in [
            "http://127.0.0.1:5000",
            "https://registry.example.com/",
            " https://r:443 ",
        ] {
            assert!(Endpoint::new(good).base_url().is_ok(), "{good}");
        }
        for bad in [
            "registry.example.com",
            "ftp://r",
            "https://r/prefix",
            "https://r/?x=1",
            "https://u:p@r",
        ] {
            assert!(Endpoint::new(bad).base_url().is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let c = Credentials::new("alice", "hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(c.basic(), "Basic YWxpY2U6aHVudGVyMg==");
    }

    #[test]
    fn every_tls_mode_builds() {
        for tls in [TlsVerify::System, TlsVerify::SkipVerification] {
            Endpoint::new("https://r")
                .with_tls(tls)
                .http_client()
                .unwrap();
        }
        let err = Endpoint::new("https://r")
            .with_tls(TlsVerify::CaFile("/nonexistent.pem".into()))
            .http_client()
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent.pem"), "{err}");
    }
}
