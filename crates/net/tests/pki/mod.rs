//! A throwaway PKI for TLS tests, made with the `openssl` command (Debian's
//! openssl, installed by scripts/test): a CA, a server certificate for
//! 127.0.0.1 and localhost, and a client certificate. Shared through
//! `#[path]` by the etcd and S3 TLS tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Pki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// Certificate then key in one file, as HAProxy's `crt` wants it.
    pub server_combined: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A second CA that signed nothing here: trusting it must fail.
    pub other_ca: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (scripts/test installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
            "-days",
            "2",
            "-subj",
            &format!("/CN=berth test {name}"),
        ],
    );
}

fn leaf(dir: &Path, name: &str, ext: &str) {
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &format!("{name}.crt"),
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
        ],
    );
}

impl Pki {
    pub fn create(dir: &Path) -> Pki {
        ca(dir, "ca");
        ca(dir, "other-ca");
        leaf(
            dir,
            "server",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
        );
        leaf(dir, "client", "extendedKeyUsage=clientAuth\n");
        let combined = [
            std::fs::read_to_string(dir.join("server.crt")).unwrap(),
            std::fs::read_to_string(dir.join("server.key")).unwrap(),
        ]
        .concat();
        std::fs::write(dir.join("server.pem"), combined).unwrap();
        Pki {
            ca: dir.join("ca.crt"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            server_combined: dir.join("server.pem"),
            client_cert: dir.join("client.crt"),
            client_key: dir.join("client.key"),
            other_ca: dir.join("other-ca.crt"),
        }
    }
}
