//! `S3BlobStore` over https: real Garage behind a real HAProxy terminating
//! TLS with a certificate from a throwaway CA (as in front of Ceph RGW or
//! MinIO), the shared conformance suite through it, and refusal of a server
//! the configured CA did not sign.

use berth_core::blob_suite;
use berth_core::BlobStore;
use berth_storage::S3BlobStore;
use std::time::Duration;

use berth_test_kit::garage::Garage;
use berth_test_kit::pki::Pki;
use berth_test_kit::{haproxy, random_u64, Killed};

/// HAProxy on a free port, TLS in front of `backend`; returns it and the port.
fn tls_proxy(dir: &std::path::Path, cert: &std::path::Path, backend: &str) -> (Killed, u16) {
    for _ in 0..10 {
        let port = 16_000 + (random_u64() % 2_000) as u16;
        let cfg = dir.join(format!("haproxy-{port}.cfg"));
        std::fs::write(
            &cfg,
            format!(
                "global\n  maxconn 256\ndefaults\n  mode http\n  timeout connect 5s\n  \
                 timeout client 60s\n  timeout server 60s\nfrontend s3\n  \
                 bind 127.0.0.1:{port} ssl crt {}\n  default_backend garage\n\
                 backend garage\n  server g {backend}\n",
                cert.display()
            ),
        )
        .unwrap();
        if let Some(proxy) = haproxy(&cfg, port) {
            return (proxy, port);
        }
    }
    panic!("could not start haproxy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_suite_over_https() {
    let garage = Garage::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(dir.path());
    let plain = garage.config();
    let backend = plain.endpoint.trim_start_matches("http://").to_owned();
    let (_proxy, port) = tls_proxy(dir.path(), &pki.server_combined, &backend);

    let mut config = plain.clone();
    config.endpoint = format!("https://127.0.0.1:{port}");
    config.ca_file = Some(pki.ca.clone());
    let store = S3BlobStore::new(&config).unwrap();
    blob_suite::run_all(&store).await;

    // A CA that did not sign the proxy's certificate, and the system's CAs,
    // are refused: a clear error, not a hang and not a silent success.
    for ca in [Some(pki.other_ca.clone()), None] {
        let mut wrong = config.clone();
        wrong.ca_file = ca.clone();
        wrong.timeout_secs = 5;
        let store = S3BlobStore::new(&wrong).unwrap();
        let digest = berth_oci::Digest::sha256_of(b"x");
        let r = tokio::time::timeout(Duration::from_secs(60), store.stat(&digest))
            .await
            .expect("a refused certificate must not hang");
        assert!(r.is_err(), "trusting {ca:?}: {r:?}");
    }

    // A CA file that does not exist fails at startup, naming the setting.
    let mut missing = config;
    missing.ca_file = Some(dir.path().join("absent.crt"));
    let Err(err) = S3BlobStore::new(&missing) else {
        panic!("a missing ca_file must fail");
    };
    assert!(err.to_string().contains("storage.ca_file"), "{err}");
}
