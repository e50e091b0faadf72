//! Blob GETs that a registry on S3 storage redirects to presigned URLs
//! (CNCF Distribution on a real Garage, through HAProxy recording every
//! request that reaches the storage host): the client follows them, keeps
//! `Range`, and never carries the registry's credentials there.

use berth_oci::RepoName;
use berth_registry_client::{Client, Credentials, Endpoint};
use berth_test_kit::distribution::{Distribution, Recorder, Setup, Storage, S3};
use berth_test_kit::garage::Garage;
use berth_test_kit::registry_client::{assert_blob, push_blob_in};
use berth_test_kit::server::noise;

#[tokio::test]
async fn s3_redirects_carry_no_registry_credentials() {
    let garage = Garage::start().await;
    let storage_host = Recorder::start(garage.s3_port);
    let reg = Distribution::start_with(
        Setup::default()
            .user("alice", "pass-of-alice")
            .storage(Storage::S3(S3::garage(&garage).via_port(storage_host.port))),
    );
    let mut ep =
        Endpoint::new(&reg.url).with_credentials(Credentials::new("alice", "pass-of-alice"));
    ep.chunk_size = 1 << 20;
    let c = Client::new(&ep).unwrap();
    let app = RepoName::parse("team/app").unwrap();
    let data = noise(9, (3 << 20) + 99);
    let digest = push_blob_in(&c, &app, &data, 50_000).await;

    assert_blob(&c, &app, &digest, &data, 2_000_001).await;

    // The registry redirected the HEAD and both GETs.
    let redirects = reg
        .requests()
        .iter()
        .filter(|r| r.contains(&format!(" /v2/team/app/blobs/{digest} ")) && r.ends_with(" 307"))
        .count();
    assert_eq!(redirects, 3, "{:#?}", reg.requests());

    // At the storage host: the registry's own calls are signed (so the
    // recorder does see Authorization headers), the client's requests to
    // presigned URLs carry none.
    let seen = storage_host.seen();
    assert!(
        seen.iter()
            .any(|s| s.authorization.starts_with("AWS4-HMAC-SHA256")),
        "{seen:#?}"
    );
    let presigned: Vec<_> = seen
        .iter()
        .filter(|s| s.uri.contains("X-Amz-Signature="))
        .collect();
    assert_eq!(presigned.len(), 3, "{seen:#?}");
    for s in presigned {
        assert_eq!(s.authorization, "", "{s:?}");
    }
}
