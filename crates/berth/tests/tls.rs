//! TLS terminated by berth itself, with a certificate from `berth cert
//! self-signed`: curl and skopeo verify it against the CA it wrote, and the
//! Docker engine logs in, pushes and pulls over it.

mod common;

use common::{Server, ADMIN_PASSWORD};
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn run(
    program: &str,
    args: &[&str],
    stdin: Option<&str>,
    envs: &[(&str, &str)],
) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

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
    let printed = ok(run(
        env!("CARGO_BIN_EXE_berth"),
        &[
            "cert",
            "self-signed",
            "--domain",
            "localhost",
            "--ip",
            "127.0.0.1",
            "--out",
            tls.to_str().unwrap(),
        ],
        None,
        &[],
    ));
    assert!(printed.contains("/etc/docker/certs.d/"), "{printed}");
    let server = Server::start_with_config(&format!(
        "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        tls.join("cert.pem").display(),
        tls.join("key.pem").display()
    ));
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
        let code = ok(run(
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
            None,
            &[],
        ));
        assert_eq!(code, "401", "{url}");
    }
    let untrusted = run(
        "curl",
        &["-s", "-o", "/dev/null", &format!("https://{host}/v2/")],
        None,
        &[],
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
    let listed = ok(run(
        env!("CARGO_BIN_EXE_berth"),
        &["user", "list", "--ca-file", ca.to_str().unwrap()],
        None,
        &cli_env,
    ));
    assert!(listed.contains("admin"), "{listed}");
    let refused = run(
        env!("CARGO_BIN_EXE_berth"),
        &["user", "list"],
        None,
        &cli_env,
    );
    assert!(!refused.status.success(), "the CLI trusted an unknown CA");

    // The Docker engine, trusting the CA the way the command printed.
    let trust = DockerTrust(PathBuf::from(format!("/etc/docker/certs.d/{host}")));
    std::fs::create_dir_all(&trust.0).unwrap();
    std::fs::copy(&ca, trust.0.join("ca.crt")).unwrap();
    let config = tmp.path().join("docker");
    std::fs::create_dir_all(&config).unwrap();
    let env = [("DOCKER_CONFIG", config.to_str().unwrap())];
    let login = ok(run(
        "docker",
        &["login", "-u", "admin", "--password-stdin", &host],
        Some(ADMIN_PASSWORD),
        &env,
    ));
    assert!(login.contains("Login Succeeded"));
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("f"), common::noise(9, 100_000)).unwrap();
    let tar = tmp.path().join("r.tar");
    ok(run(
        "tar",
        &[
            "-C",
            root.to_str().unwrap(),
            "-cf",
            tar.to_str().unwrap(),
            ".",
        ],
        None,
        &[],
    ));
    let image = format!("{host}/tls/app:v1");
    ok(run(
        "docker",
        &["import", tar.to_str().unwrap(), &image],
        None,
        &env,
    ));
    let id = ok(run(
        "docker",
        &["image", "inspect", "--format", "{{.Id}}", &image],
        None,
        &env,
    ));
    ok(run("docker", &["push", &image], None, &env));
    ok(run("docker", &["rmi", &image], None, &env));
    ok(run("docker", &["pull", &image], None, &env));
    assert_eq!(
        ok(run(
            "docker",
            &["image", "inspect", "--format", "{{.Id}}", &image],
            None,
            &env
        )),
        id
    );
    let _ = run("docker", &["rmi", &image], None, &env);

    // skopeo verifies TLS (no insecure flag) against the CA directory.
    let certs = tmp.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(&ca, certs.join("ca.crt")).unwrap();
    let creds = format!("admin:{ADMIN_PASSWORD}");
    let raw = ok(run(
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
        None,
        &[],
    ));
    assert!(raw.contains("schemaVersion"), "{raw}");
}
