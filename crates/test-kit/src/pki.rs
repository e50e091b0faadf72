//! A throwaway PKI for TLS tests, made with the `openssl` command (Debian's
//! openssl, installed by scripts/test): a CA, a server certificate for
//! 127.0.0.1 and localhost, and a client certificate: for the etcd, S3 and
//! LDAP TLS tests.

use crate::stdout_ok;
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
    stdout_ok(out, &format!("openssl {args:?}"));
}

/// A new P-256 key `<name>.key`, and for it a self-signed CA certificate
/// `<name>.crt` (`ca`) or a request `<name>.csr` for the common name
/// `<name>` (not `ca`).
fn new_key(dir: &Path, name: &str, ca: bool) {
    let key = format!("{name}.key");
    let (kind, out, subject): (&[&str], String, String) = if ca {
        (
            &["-x509", "-days", "2"],
            format!("{name}.crt"),
            format!("/CN=berth test {name}"),
        )
    } else {
        (&[], format!("{name}.csr"), format!("/CN={name}"))
    };
    let mut args = vec!["req"];
    args.extend(kind);
    args.extend([
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ]);
    args.extend(["-keyout", &key, "-out", &out, "-subj", &subject]);
    openssl(dir, &args);
}

/// `<name>.crt`, signed by `ca.crt` with the extensions `ext`.
fn leaf(dir: &Path, name: &str, ext: &str) {
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    new_key(dir, name, false);
    let (csr, crt, extfile) = (
        format!("{name}.csr"),
        format!("{name}.crt"),
        format!("{name}.ext"),
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "2",
            "-extfile",
            &extfile,
        ],
    );
}

impl Pki {
    pub fn create(dir: &Path) -> Pki {
        new_key(dir, "ca", true);
        new_key(dir, "other-ca", true);
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
