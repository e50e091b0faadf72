//! TLS terminated by berth itself, with a certificate from `berth cert
//! self-signed`: curl and skopeo verify it against the CA it wrote, and the
//! Docker engine logs in, pushes and pulls over it.

mod common;

use berth_test_kit::{run, run_ok, Docker};
use common::{Berth, Binary, Server, ADMIN_PASSWORD};
use std::path::PathBuf;

/// Removes the Docker engine's trust directory for this server when dropped.
struct DockerTrust(PathBuf);

impl Drop for DockerTrust {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn docker_skopeo_and_curl_over_tls_with_a_self_signed_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let tls = tmp.path().join("tls");
    let (server, printed) = Server::start_self_signed(&tls);
    assert!(printed.contains("/etc/docker/certs.d/"), "{printed}");
    assert_eq!(server.scheme, "https");
    let port = server.addr.rsplit(':').next().unwrap().to_owned();
    let host = format!("localhost:{port}");
    let ca = tls.join("ca.crt");

    // The certificate verifies against the CA, for the name and the address,
    // over HTTP/2 and HTTP/1.1; without the CA it does not.
    for (url, http) in [
        (format!("https://{host}/v2/"), "--http2"),
        (format!("https://127.0.0.1:{port}/v2/"), "--http1.1"),
    ] {
        let code = run_ok(
            "curl",
            &[
                "-s",
                http,
                "--cacert",
                ca.to_str().unwrap(),
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &url,
            ],
            &[],
            None,
        );
        assert_eq!(code, "401", "{url}");
    }
    let untrusted = run(
        "curl",
        &["-s", "-o", "/dev/null", &format!("https://{host}/v2/")],
        &[],
        None,
    );
    assert!(
        !untrusted.status.success(),
        "curl trusted a private CA it was not given"
    );

    // The CLI reaches the https:// server with --ca-file, and refuses it
    // without (the CA is not among the system's).
    let url = format!("https://{host}");
    let cli_env = [
        ("BERTH_URL", url.as_str()),
        ("BERTH_PASSWORD", ADMIN_PASSWORD),
        ("NO_PROXY", "*"),
    ];
    let listed = run_ok(
        Berth::PATH,
        &["user", "list", "--ca-file", ca.to_str().unwrap()],
        &cli_env,
        None,
    );
    assert!(listed.contains("admin"), "{listed}");
    let refused = run(Berth::PATH, &["user", "list"], &cli_env, None);
    assert!(!refused.status.success(), "the CLI trusted an unknown CA");

    // The Docker engine, trusting the CA the way the command printed.
    let trust = DockerTrust(PathBuf::from(format!("/etc/docker/certs.d/{host}")));
    std::fs::create_dir_all(&trust.0).unwrap();
    std::fs::copy(&ca, trust.0.join("ca.crt")).unwrap();
    let docker = Docker::new(&tmp.path().join("docker"));
    let login = docker.login(&host, "admin", ADMIN_PASSWORD);
    assert!(login.contains("Login Succeeded"));
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("f"), common::noise(9, 100_000)).unwrap();
    let tar = tmp.path().join("r.tar");
    berth_test_kit::tar(&root, &tar);
    let image = format!("{host}/tls/app:v1");
    docker.ok(&["import", tar.to_str().unwrap(), &image]);
    let id = docker.ok(&["image", "inspect", "--format", "{{.Id}}", &image]);
    docker.ok(&["push", &image]);
    docker.ok(&["rmi", &image]);
    docker.ok(&["pull", &image]);
    assert_eq!(
        docker.ok(&["image", "inspect", "--format", "{{.Id}}", &image]),
        id
    );
    let _ = docker.run(&["rmi", &image], None);

    // skopeo verifies TLS (no insecure flag) against the CA directory.
    let certs = tmp.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(&ca, certs.join("ca.crt")).unwrap();
    let creds = format!("admin:{ADMIN_PASSWORD}");
    let raw = run_ok(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--cert-dir",
            certs.to_str().unwrap(),
            "--creds",
            &creds,
            &format!("docker://{image}"),
        ],
        &[],
        None,
    );
    assert!(raw.contains("schemaVersion"), "{raw}");
}
