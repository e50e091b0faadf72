//! Outbound TLS, set up once for every client berth runs: LDAP, etcd, S3,
//! the CLI and the tests.
//!
//! rustls uses the ring provider, named explicitly (never a process-wide
//! default), so no crate in the tree can make the choice ambiguous and no
//! C toolchain beyond `cc` is needed. reqwest is built with its rustls
//! backend but without a provider, so a `reqwest::Client` must come from
//! [`client_builder`]: reqwest's own `Client::new()` would panic.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How a client verifies servers and, optionally, proves who it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsClient {
    /// PEM file of the CA certificates to trust; the system's when `None`.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain and private key presented to servers that ask
    /// for one (etcd's `--client-cert-auth`).
    pub identity: Option<(PathBuf, PathBuf)>,
}

impl TlsClient {
    /// Trusts the CAs in `ca_file`, or the system's when `None`.
    pub fn with_ca(ca_file: Option<&Path>) -> TlsClient {
        TlsClient {
            ca_file: ca_file.map(Path::to_path_buf),
            identity: None,
        }
    }
}

/// The rustls client configuration for `tls`. `what` names the setting in
/// error messages, such as `"metadata"` for `metadata.ca_file`.
pub fn tls_config(tls: &TlsClient, what: &str) -> Result<ClientConfig, String> {
    let roots = roots(tls.ca_file.as_deref(), what)?;
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_root_certificates(roots);
    match &tls.identity {
        None => Ok(builder.with_no_client_auth()),
        Some((cert_file, key_file)) => {
            let chain = CertificateDer::pem_file_iter(cert_file)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("{what}.cert_file {}: {e}", cert_file.display()))?;
            if chain.is_empty() {
                return Err(format!(
                    "{what}.cert_file {}: no PEM certificate in it",
                    cert_file.display()
                ));
            }
            let key = PrivateKeyDer::from_pem_file(key_file)
                .map_err(|e| format!("{what}.key_file {}: {e}", key_file.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("{what}.cert_file/key_file: {e}"))
        }
    }
}

fn roots(ca_file: Option<&Path>, what: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("{what}.ca_file {}: {e}", path.display()))?;
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("{what}.ca_file {}: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!(
                    "{what}.ca_file {}: no PEM certificate in it",
                    path.display()
                ));
            }
        }
        None => {
            // Loaded once per process: reading the system store costs
            // milliseconds and every client would repeat it.
            static SYSTEM: std::sync::OnceLock<Vec<CertificateDer<'static>>> =
                std::sync::OnceLock::new();
            let certs = SYSTEM.get_or_init(|| rustls_native_certs::load_native_certs().certs);
            roots.add_parsable_certificates(certs.iter().cloned());
        }
    }
    Ok(roots)
}

/// A reqwest builder that speaks TLS as `tls` says; add timeouts and build.
pub fn client_builder(tls: &TlsClient, what: &str) -> Result<reqwest::ClientBuilder, String> {
    let mut config = tls_config(tls, what)?;
    // reqwest is built without HTTP/2 in this workspace.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(reqwest::Client::builder().tls_backend_preconfigured(config))
}

/// [`client_builder`] trusting the system's CAs, for tests: panics where
/// the system's setup is broken.
pub fn builder() -> reqwest::ClientBuilder {
    client_builder(&TlsClient::default(), "tls")
        .unwrap_or_else(|e| panic!("setting up TLS for an HTTP client: {e}"))
}

/// [`builder`], built: for tests.
pub fn client() -> reqwest::Client {
    builder()
        .build()
        .unwrap_or_else(|e| panic!("building an HTTP client: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_client_builds() {
        let _ = client();
    }

    /// The error of a client configuration (`setting`) trusting only the
    /// CA file at `path`.
    fn ca_file_error(path: &str, setting: &str) -> String {
        tls_config(&TlsClient::with_ca(Some(Path::new(path))), setting).unwrap_err()
    }

    #[test]
    fn missing_ca_file_names_the_setting() {
        let err = ca_file_error("/nonexistent/ca.pem", "storage");
        assert!(
            err.starts_with("storage.ca_file /nonexistent/ca.pem"),
            "{err}"
        );
    }

    #[test]
    fn empty_ca_file_is_refused() {
        let err = ca_file_error("/dev/null", "metadata");
        assert!(err.contains("no PEM certificate"), "{err}");
    }
}
