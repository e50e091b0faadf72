//! EtcdKv over TLS: a real etcd (Debian's etcd-server) serving clients on
//! https:// and requiring client certificates (`--client-cert-auth`), with a
//! throwaway PKI made by openssl.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_core::kv::Kv;
use berth_meta::{EtcdConfig, EtcdKv};

use berth_test_kit::etcd::no_hang;
use berth_test_kit::pki::Pki;
use berth_test_kit::{random_u64, Killed};

struct Etcd {
    _process: Killed,
    endpoint: String,
    log: std::path::PathBuf,
}

fn start(dir: &std::path::Path, pki: &Pki) -> Etcd {
    for _ in 0..10 {
        let base = 14_000 + (random_u64() % 1_000) as u16 * 2;
        let client = format!("https://127.0.0.1:{base}");
        let peer = format!("http://127.0.0.1:{}", base + 1);
        let log = dir.join(format!("etcd-{base}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let mut child = Command::new("etcd")
            .args(["--name", "tls"])
            .arg("--data-dir")
            .arg(dir.join(format!("data-{base}")))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("tls={peer}")])
            .arg("--cert-file")
            .arg(&pki.server_cert)
            .arg("--key-file")
            .arg(&pki.server_key)
            .arg("--trusted-ca-file")
            .arg(&pki.ca)
            .arg("--client-cert-auth")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("etcd (Debian package etcd-server) must be installed");
        // Ready once it accepts connections; an exit means a port was taken.
        let started = Instant::now();
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if std::net::TcpStream::connect(("127.0.0.1", base)).is_ok() {
                return Etcd {
                    _process: Killed(child),
                    endpoint: client,
                    log,
                };
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "etcd never served: {text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    panic!("could not start a TLS etcd");
}

fn config(etcd: &Etcd) -> EtcdConfig {
    let mut c = EtcdConfig::new([etcd.endpoint.clone()]);
    c.prefix = format!("t{:x}/", random_u64());
    c.timeout_secs = 3;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn speaks_tls_with_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(dir.path());
    let etcd = start(dir.path(), &pki);

    let mut good = config(&etcd);
    good.ca_file = Some(pki.ca.clone());
    good.cert_file = Some(pki.client_cert.clone());
    good.key_file = Some(pki.client_key.clone());
    let kv = EtcdKv::new(good.clone()).unwrap();
    no_hang(
        "the suite over TLS",
        berth_core::kv_suite::run_all(Arc::new(kv)),
    )
    .await;

    // Leases and watches go over the same client.
    let kv = EtcdKv::new(good.clone()).unwrap();
    let lease = kv.lease_grant(5).await.unwrap();
    kv.put_with_lease("leased", b"x".to_vec(), lease)
        .await
        .unwrap();
    assert!(kv.get("leased").await.unwrap().is_some());

    // Each missing piece is refused, and says so instead of hanging.
    let mut no_identity = good.clone();
    no_identity.cert_file = None;
    no_identity.key_file = None;
    let mut wrong_ca = good.clone();
    wrong_ca.ca_file = Some(pki.other_ca.clone());
    let mut system_ca = good.clone();
    system_ca.ca_file = None;
    for (what, config) in [
        ("no client certificate", no_identity),
        ("a CA that did not sign the server", wrong_ca),
        ("the system's CAs", system_ca),
    ] {
        let kv = EtcdKv::new(config).unwrap();
        let r = no_hang(what, kv.get("leased")).await;
        assert!(r.is_err(), "{what}: read succeeded: {r:?}\n{:?}", etcd.log);
    }

    // A key file without its certificate is a configuration error.
    let mut half = good;
    half.key_file = None;
    assert!(EtcdKv::new(half).is_err());
}
