//! A real CNCF Distribution registry (Debian's `docker-registry`, 2.8) for
//! the client's tests: started on 127.0.0.1:0 with its own storage, plain
//! or behind htpasswd Basic auth or TLS, killed on drop. Plus fixtures:
//! pseudo-random bytes, streams, and OCI manifests.

#![allow(dead_code)]

pub mod garage;
pub mod haproxy;

use berth_oci::{media, Digest};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const BINARY: &str = "/usr/bin/docker-registry";

/// A running `docker-registry serve`.
pub struct Distribution {
    child: Child,
    /// `http://127.0.0.1:<port>` or `https://...`.
    pub url: String,
    pub dir: tempfile::TempDir,
}

impl Drop for Distribution {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Distribution {
    /// The access log's request lines so far, as `METHOD path status`
    /// (query strings dropped).
    pub fn requests(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.dir.path().join("access.log")).expect("read log");
        log.lines()
            .filter_map(|l| {
                let mut quoted = l.split('"');
                let request = quoted.nth(1)?;
                let status = quoted.next()?.split_whitespace().next()?;
                let mut parts = request.split_whitespace();
                let method = parts.next()?;
                let path = parts.next()?.split('?').next()?;
                Some(format!("{method} {path} {status}"))
            })
            .collect()
    }
}

/// How the registry is set up.
#[derive(Default)]
pub struct Setup {
    /// htpasswd users (bcrypt, made with `htpasswd -Bbn`).
    pub users: Vec<(&'static str, &'static str)>,
    /// PEM certificate and key files to serve TLS with.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// A `storage:` section replacing the filesystem one.
    pub storage: Option<String>,
}

impl Distribution {
    /// An anonymous plain-http registry.
    pub fn start() -> Distribution {
        Distribution::start_with(Setup::default())
    }

    pub fn start_with(setup: Setup) -> Distribution {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = setup.storage.clone().unwrap_or_else(|| {
            format!(
                "storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n",
                dir.path().join("data").display()
            )
        });
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\n{storage}\
             http:\n  addr: 127.0.0.1:0\n  secret: berth-client-test\n"
        );
        if let Some((cert, key)) = &setup.tls {
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ));
        }
        if !setup.users.is_empty() {
            let mut lines = String::new();
            for (user, password) in &setup.users {
                let out = Command::new("htpasswd")
                    .args(["-Bbn", user, password])
                    .output()
                    .expect("htpasswd (apache2-utils) must be installed");
                assert!(out.status.success(), "htpasswd failed");
                lines.push_str(String::from_utf8_lossy(&out.stdout).trim());
                lines.push('\n');
            }
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, lines).expect("write htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                file.display()
            ));
        }
        let config_file = dir.path().join("config.yml");
        std::fs::write(&config_file, config).expect("write config");
        // The access log (combined format) goes to standard output.
        let access = std::fs::File::create(dir.path().join("access.log")).expect("access log");
        let mut child = Command::new(BINARY)
            .arg("serve")
            .arg(&config_file)
            // Its S3 driver (aws-sdk-go) panics on a custom CA bundle with
            // its own transport; Garage here is plain http anyway.
            .env_remove("AWS_CA_BUNDLE")
            .stdin(Stdio::null())
            .stdout(Stdio::from(access))
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{BINARY} could not be run ({e}): install docker-registry"));
        let stderr = child.stderr.take().expect("stderr");
        let mut reader = BufReader::new(stderr);
        let mut line = String::new();
        let mut seen = String::new();
        let addr = loop {
            line.clear();
            if reader.read_line(&mut line).expect("read registry log") == 0 {
                let _ = child.kill();
                panic!("docker-registry exited before listening:\n{seen}");
            }
            seen.push_str(&line);
            if let Some(rest) = line.split("listening on ").nth(1) {
                let addr: String = rest
                    .chars()
                    .take_while(|c| !matches!(c, ',' | '"' | ' '))
                    .collect();
                break addr;
            }
        };
        // Keep draining so that the registry never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        let scheme = if setup.tls.is_some() { "https" } else { "http" };
        Distribution {
            child,
            url: format!("{scheme}://{addr}"),
            dir,
        }
    }
}

/// A test PKI made with rcgen: a CA, and a server certificate it signed
/// for 127.0.0.1 and localhost. Returns (ca.pem, cert.pem, key.pem).
pub fn pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "berth client test CA");
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let key = rcgen::KeyPair::generate().expect("server key");
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("server params");
    let cert = params
        .signed_by(&key, &ca, &ca_key)
        .expect("server certificate");
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca.pem()).expect("write CA");
    std::fs::write(&paths.1, cert.pem()).expect("write cert");
    std::fs::write(&paths.2, key.serialize_pem()).expect("write key");
    paths
}

/// `len` pseudo-random bytes from `seed` (xorshift64*).
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// `data` as a stream of `piece`-byte items, as a file or socket gives.
pub fn stream_of(
    data: &[u8],
    piece: usize,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let items: Vec<Result<Bytes, std::io::Error>> = data
        .chunks(piece)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures_util::stream::iter(items)
}

/// Everything a blob stream yields.
pub async fn collect(
    mut s: berth_registry_client::BlobStream,
) -> Result<Vec<u8>, berth_registry_client::ClientError> {
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

/// An OCI image manifest over `config` and `layers`, with an optional
/// artifact type and subject (descriptor of media type, digest, size).
pub fn image_manifest(
    config: (&str, &[u8]),
    layers: &[&[u8]],
    artifact_type: Option<&str>,
    subject: Option<(&str, &Digest, usize)>,
) -> Vec<u8> {
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": config.0, "digest": Digest::sha256_of(config.1), "size": config.1.len()},
        "layers": layers.iter().map(|l| json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": Digest::sha256_of(l),
            "size": l.len(),
        })).collect::<Vec<_>>(),
    });
    if let Some(t) = artifact_type {
        m["artifactType"] = json!(t);
    }
    if let Some((mt, d, size)) = subject {
        m["subject"] = json!({"mediaType": mt, "digest": d, "size": size});
        m["annotations"] = json!({"org.example.note": "attached"});
    }
    serde_json::to_vec_pretty(&m).expect("json")
}

/// An OCI image index over `(media type, manifest bytes)` children.
pub fn image_index(children: &[(&str, &[u8])]) -> Vec<u8> {
    let m = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": children.iter().map(|(mt, b)| json!({
            "mediaType": mt,
            "digest": Digest::sha256_of(b),
            "size": b.len(),
            "platform": {"architecture": "amd64", "os": "linux"},
        })).collect::<Vec<_>>(),
    });
    serde_json::to_vec_pretty(&m).expect("json")
}
