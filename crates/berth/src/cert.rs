//! `berth cert self-signed`: a private CA and a server certificate signed by
//! it (ECDSA P-256, with the names and addresses clients use as subject
//! alternative names), for serving TLS without a public CA.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};
use std::net::IpAddr;
use std::path::Path;

pub fn self_signed(domains: &[String], ips: &[IpAddr], out: &Path) -> Result<(), String> {
    let err = |e: rcgen::Error| e.to_string();
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(err)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca.distinguished_name
        .push(DnType::CommonName, "berth private CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).map_err(err)?;

    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(err)?;
    let mut leaf = CertificateParams::new(domains.to_vec()).map_err(err)?;
    leaf.distinguished_name
        .push(DnType::CommonName, domains[0].clone());
    leaf.subject_alt_names
        .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = leaf.signed_by(&key, &ca_cert, &ca_key).map_err(err)?;

    std::fs::create_dir_all(out).map_err(|e| format!("creating {}: {e}", out.display()))?;
    let write = |name: &str, text: String| {
        std::fs::write(out.join(name), text).map_err(|e| format!("writing {name}: {e}"))
    };
    write("ca.crt", ca_cert.pem())?;
    write("cert.pem", cert.pem())?;
    write("key.pem", key.serialize_pem())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ =
            std::fs::set_permissions(out.join("key.pem"), std::fs::Permissions::from_mode(0o600));
    }
    let host = domains[0].as_str();
    println!(
        "wrote {0}/ca.crt, {0}/cert.pem and {0}/key.pem",
        out.display()
    );
    println!();
    println!("serve with, in the configuration file:");
    println!("  [tls]");
    println!("  cert_file = \"{}\"", out.join("cert.pem").display());
    println!("  key_file = \"{}\"", out.join("key.pem").display());
    println!();
    println!("make the Docker engine trust it (on every client machine):");
    println!("  sudo mkdir -p /etc/docker/certs.d/{host}:5000");
    println!(
        "  sudo cp {} /etc/docker/certs.d/{host}:5000/ca.crt",
        out.join("ca.crt").display()
    );
    println!("podman, buildah and skopeo read the same file from /etc/containers/certs.d/{host}:5000/ca.crt");
    Ok(())
}
