//! `[storage] backend = "s3"`: where the bucket is and how to sign for it.
//! Credentials come from the config, a secret file, or the usual AWS
//! environment variables, in that order.

use super::sigv4::Credentials;
use crate::layout::BlobLayout;
use serde::Deserialize;
use std::io;
use std::path::PathBuf;

/// Multipart parts must be at least this large, except the last (S3 rule).
pub const MIN_PART: u64 = 5 * 1024 * 1024;

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// Base URL of the S3 service: `http://127.0.0.1:3900` (Garage),
    /// `http://rgw.internal:7480` (Ceph RGW), `https://s3.eu-west-1.amazonaws.com`.
    pub endpoint: String,
    /// PEM file of the CA that signed an `https://` endpoint's certificate,
    /// for a private CA; the system's CAs when absent.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The bucket, which must exist; berth owns everything under `prefix` in
    /// it.
    pub bucket: String,
    /// Region named in request signatures. Garage checks it against its
    /// `s3_region`; Ceph RGW and MinIO accept the default.
    #[serde(default = "default_region")]
    pub region: String,
    /// Access key id; when absent, `AWS_ACCESS_KEY_ID` from the environment.
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// Secret access key. Prefer `secret_access_key_file`; when neither is
    /// set, `AWS_SECRET_ACCESS_KEY` from the environment.
    #[serde(default)]
    pub secret_access_key: Option<String>,
    /// File holding the secret access key (surrounding whitespace ignored).
    #[serde(default)]
    pub secret_access_key_file: Option<PathBuf>,
    /// Address the bucket as `endpoint/bucket/key` (true: Garage, Ceph, MinIO
    /// by default) or as `bucket.endpoint-host/key` (false: AWS's preference).
    #[serde(default = "default_true")]
    pub path_style: bool,
    /// Key prefix for everything berth stores, e.g. `"berth/"`, so a bucket
    /// can be shared; empty for the whole bucket.
    #[serde(default)]
    pub prefix: String,
    /// Size of the objects an upload is written in, in MiB (5 to 1024); each
    /// upload in progress holds at most two of them in memory.
    #[serde(default = "default_part_size")]
    pub part_size_mib: u64,
    /// Deadline for each S3 request, in seconds; for a streamed read, the
    /// longest wait for the next bytes.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Where committed blobs live under `prefix`: `"berth"`
    /// (`blobs/<alg>/<2 hex>/<hex>`) or `"distribution"`
    /// (`docker/registry/v2/blobs/<alg>/<2 hex>/<hex>/data`, where a CNCF
    /// Distribution registry whose S3 `rootdirectory` is `prefix` keeps
    /// them).
    #[serde(default)]
    pub layout: BlobLayout,
}

fn default_region() -> String {
    "us-east-1".into()
}

fn default_true() -> bool {
    true
}

fn default_part_size() -> u64 {
    16
}

fn default_timeout() -> u64 {
    30
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("ca_file", &self.ca_file)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("secret_access_key_file", &self.secret_access_key_file)
            .field("path_style", &self.path_style)
            .field("prefix", &self.prefix)
            .field("part_size_mib", &self.part_size_mib)
            .field("timeout_secs", &self.timeout_secs)
            .field("layout", &self.layout)
            .finish()
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

impl S3Config {
    /// A config with defaults for everything but what has none.
    pub fn new(endpoint: &str, bucket: &str) -> Self {
        S3Config {
            endpoint: endpoint.into(),
            ca_file: None,
            bucket: bucket.into(),
            region: default_region(),
            access_key_id: None,
            secret_access_key: None,
            secret_access_key_file: None,
            path_style: true,
            prefix: String::new(),
            part_size_mib: default_part_size(),
            timeout_secs: default_timeout(),
            layout: BlobLayout::Berth,
        }
    }

    /// Checks the values that have limits.
    pub(crate) fn validate(&self) -> io::Result<()> {
        if self.bucket.is_empty() {
            return Err(invalid("storage.bucket is empty".into()));
        }
        if !(5..=1024).contains(&self.part_size_mib) {
            return Err(invalid(format!(
                "storage.part_size_mib = {}: must be 5 to 1024",
                self.part_size_mib
            )));
        }
        if self.timeout_secs == 0 {
            return Err(invalid("storage.timeout_secs must be at least 1".into()));
        }
        Ok(())
    }

    /// The prefix as keys use it: empty, or ending in one `/`.
    pub(crate) fn key_prefix(&self) -> String {
        let p = self.prefix.trim_matches('/');
        if p.is_empty() {
            String::new()
        } else {
            format!("{p}/")
        }
    }

    /// Resolves the key pair from the config, the secret file and the
    /// environment.
    pub fn credentials(&self) -> io::Result<Credentials> {
        self.credentials_with(|name| std::env::var(name).ok())
    }

    fn credentials_with(&self, env: impl Fn(&str) -> Option<String>) -> io::Result<Credentials> {
        let access_key_id = match &self.access_key_id {
            Some(id) => id.clone(),
            None => env("AWS_ACCESS_KEY_ID").ok_or_else(|| {
                invalid("storage.access_key_id is not set, nor AWS_ACCESS_KEY_ID".into())
            })?,
        };
        let secret_access_key = match (&self.secret_access_key, &self.secret_access_key_file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "storage: set secret_access_key or secret_access_key_file, not both".into(),
                ))
            }
            (Some(secret), None) => secret.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("storage.secret_access_key_file {}: {e}", path.display()),
                    )
                })?
                .trim()
                .to_owned(),
            (None, None) => env("AWS_SECRET_ACCESS_KEY").ok_or_else(|| {
                invalid(
                    "storage.secret_access_key(_file) is not set, nor AWS_SECRET_ACCESS_KEY".into(),
                )
            })?,
        };
        if access_key_id.is_empty() || secret_access_key.is_empty() {
            return Err(invalid("storage: empty S3 access key or secret".into()));
        }
        Ok(Credentials {
            access_key_id,
            secret_access_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &str) -> Result<S3Config, toml::de::Error> {
        toml::from_str(&format!(
            "endpoint = \"http://127.0.0.1:3900\"\nbucket = \"b\"\n{extra}"
        ))
    }

    #[test]
    fn defaults_and_unknown_fields() {
        let c = parse("").unwrap();
        assert_eq!(c.region, "us-east-1");
        assert!(c.path_style);
        assert_eq!(c.part_size_mib, 16);
        assert_eq!(c.timeout_secs, 30);
        assert_eq!(c.key_prefix(), "");
        assert_eq!(c.layout, BlobLayout::Berth);
        c.validate().unwrap();
        let c = parse("layout = \"distribution\"").unwrap();
        assert_eq!(c.layout, BlobLayout::Distribution);
        assert!(parse("layout = \"flat\"").is_err());
        assert!(parse("bogus = 1").is_err());
        let c = parse("prefix = \"/berth\"\npart_size_mib = 4").unwrap();
        assert_eq!(c.key_prefix(), "berth/");
        assert!(c.validate().is_err());
    }

    #[test]
    fn credentials_fall_back_in_order() {
        let env = |name: &str| Some(format!("env-{name}"));
        let none = |_: &str| None;
        let c = parse("access_key_id = \"id\"\nsecret_access_key = \"s\"").unwrap();
        let k = c.credentials_with(env).unwrap();
        assert_eq!(
            (k.access_key_id.as_str(), k.secret_access_key.as_str()),
            ("id", "s")
        );

        let c = parse("").unwrap();
        let k = c.credentials_with(env).unwrap();
        assert_eq!(k.access_key_id, "env-AWS_ACCESS_KEY_ID");
        assert_eq!(k.secret_access_key, "env-AWS_SECRET_ACCESS_KEY");
        assert!(c.credentials_with(none).is_err());

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "from-file\n").unwrap();
        let c = parse(&format!(
            "access_key_id = \"id\"\nsecret_access_key_file = {:?}",
            file.display().to_string()
        ))
        .unwrap();
        assert_eq!(
            c.credentials_with(none).unwrap().secret_access_key,
            "from-file"
        );
        let mut both = c.clone();
        both.secret_access_key = Some("s".into());
        assert!(both.credentials_with(none).is_err());
        assert!(
            !format!("{both:?}").contains("\"s\""),
            "secret in Debug output"
        );
    }
}
