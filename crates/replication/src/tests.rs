//! The service over in-memory ports: records, triggers, and a whole copy
//! between two in-memory registries.

use crate::copy::{Control, Copier};
use crate::model::*;
use crate::side::Local;
use crate::{ErrorKind, Replication, SecretKey, Settings};
use berth_core::events::{Event, EventKind};
use berth_core::{Kv, LocalLocks, MemoryBlobStore, MemoryKv, Registry};
use berth_oci::{Digest, Reference, RepoName};
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::json;
use std::sync::Arc;

fn service(key: bool) -> (Replication, Arc<MemoryKv>) {
    let key = key.then(|| SecretKey::from_bytes(&[9; 32]).unwrap());
    service_with(key, Settings::default())
}

/// A service on node `node-a` over memory stores, with `key` and `settings`.
fn service_with(key: Option<SecretKey>, settings: Settings) -> (Replication, Arc<MemoryKv>) {
    let kv = Arc::new(MemoryKv::new());
    let registry = Registry::new(kv.clone(), Arc::new(MemoryBlobStore::new()));
    let r = Replication::new(
        kv.clone(),
        registry,
        Arc::new(LocalLocks::default()),
        "node-a",
        key,
        settings,
    );
    (r, kv)
}

fn endpoint(name: &str, secret: Option<&str>) -> EndpointInput {
    EndpointInput {
        name: name.into(),
        url: "http://127.0.0.1:1".into(),
        username: Some("u".into()),
        secret: secret.map(str::to_owned),
        ..EndpointInput::default()
    }
}

fn policy(name: &str, v: serde_json::Value) -> Policy {
    let mut base = json!({"name": name, "direction": "push", "endpoint": "dst"});
    for (k, val) in v.as_object().unwrap() {
        base[k] = val.clone();
    }
    serde_json::from_value(base).unwrap()
}

#[tokio::test]
async fn endpoint_secrets_are_sealed_and_never_shown() {
    let (r, kv) = service(false);
    let e = r
        .create_endpoint(endpoint("dst", Some("pw")))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Invalid);
    assert!(e.message.contains("secret_key_file"), "{e}");
    // Without a secret it is fine even without a key.
    r.create_endpoint(endpoint("anon", None)).await.unwrap();

    let (r, kv2) = service(true);
    let view = r
        .create_endpoint(endpoint("dst", Some("pw-123")))
        .await
        .unwrap();
    assert!(view.has_secret);
    let shown = serde_json::to_string(&r.endpoints().await.unwrap()).unwrap();
    assert!(
        !shown.contains("pw-123") && !shown.contains("sealed"),
        "{shown}"
    );
    let stored = kv2.get("repl:endpoint:dst").await.unwrap().unwrap();
    assert!(!String::from_utf8_lossy(&stored.value).contains("pw-123"));
    // The client gets the secret back.
    let (record, _) = r
        .read::<Endpoint>("repl:endpoint:dst")
        .await
        .unwrap()
        .unwrap();
    assert!(r.client(&record).is_ok());
    // Update without a secret keeps it; with "" removes it.
    let mut change = endpoint("dst", None);
    change.url = "https://example.com".into();
    assert!(
        r.update_endpoint("dst", change.clone())
            .await
            .unwrap()
            .has_secret
    );
    change.secret = Some(String::new());
    assert!(!r.update_endpoint("dst", change).await.unwrap().has_secret);
    assert_eq!(
        r.create_endpoint(endpoint("dst", None))
            .await
            .unwrap_err()
            .kind,
        ErrorKind::Conflict
    );
    let mut bad = endpoint("x", None);
    bad.url = "ftp://h".into();
    assert_eq!(
        r.create_endpoint(bad).await.unwrap_err().kind,
        ErrorKind::Invalid
    );
    drop(kv);
}

#[tokio::test]
async fn policies_need_their_endpoint_and_hold_it() {
    let (r, _) = service(true);
    let p = policy("p", json!({}));
    assert_eq!(
        r.create_policy(p.clone()).await.unwrap_err().kind,
        ErrorKind::Invalid
    );
    r.create_endpoint(endpoint("dst", None)).await.unwrap();
    r.create_policy(p.clone()).await.unwrap();
    assert_eq!(
        r.create_policy(p).await.unwrap_err().kind,
        ErrorKind::Conflict
    );
    assert_eq!(
        r.delete_endpoint("dst").await.unwrap_err().kind,
        ErrorKind::Conflict
    );
    r.delete_policy("p").await.unwrap();
    r.delete_endpoint("dst").await.unwrap();
    assert_eq!(r.policy("p").await.unwrap_err().kind, ErrorKind::NotFound);
}

fn pushed(repo: &str, tag: Option<&str>, digest: &Digest) -> Event {
    let mut e = Event::new(EventKind::ManifestPushed, repo, 1);
    e.tag = tag.map(str::to_owned);
    e.digest = Some(digest.clone());
    e
}

#[tokio::test]
async fn events_start_executions_of_matching_push_policies() {
    let (r, kv) = service(true);
    r.create_endpoint(endpoint("dst", None)).await.unwrap();
    r.create_policy(policy(
        "ev",
        json!({
            "filters": {"repository": "lib/**", "tag": "v*"},
            "namespace": {"mode": "replace", "with": "mirror"},
            "triggers": {"event": true},
        }),
    ))
    .await
    .unwrap();
    r.create_policy(policy("manual", json!({}))).await.unwrap();
    let d = Digest::sha256_of(b"x");

    let started = r
        .on_event(&pushed("lib/app", Some("v1"), &d))
        .await
        .unwrap();
    assert_eq!(started.len(), 1);
    let detail = r.execution(&started[0].id).await.unwrap();
    assert_eq!(detail.execution.trigger, Trigger::Event);
    let t = &detail.task_list[0];
    assert_eq!(
        (t.repository.as_str(), t.destination.as_str()),
        ("lib/app", "mirror/app")
    );
    assert_eq!(t.tags, vec!["v1".to_owned()]);
    assert_eq!(t.status, Status::Pending);
    assert!(kv
        .get(&format!("repl:active:{}", started[0].id))
        .await
        .unwrap()
        .is_some());

    // Filters, untagged pushes (index children), deletes without the flag.
    assert!(r
        .on_event(&pushed("lib/app", Some("latest"), &d))
        .await
        .unwrap()
        .is_empty());
    assert!(r
        .on_event(&pushed("other/app", Some("v1"), &d))
        .await
        .unwrap()
        .is_empty());
    assert!(r
        .on_event(&pushed("lib/app", None, &d))
        .await
        .unwrap()
        .is_empty());
    let mut del = Event::new(EventKind::TagDeleted, "lib/app", 2);
    del.tag = Some("v1".into());
    del.digest = Some(d.clone());
    assert!(r.on_event(&del).await.unwrap().is_empty());
    // A referrer (pushed by digest, with a subject) is copied.
    let mut referrer = pushed("lib/app", None, &d);
    referrer.subject = Some(Digest::sha256_of(b"subject"));
    assert_eq!(r.on_event(&referrer).await.unwrap().len(), 1);

    // Deletes, with the flag: tags, manifests and whole repositories.
    let mut p = r.policy("ev").await.unwrap();
    p.replicate_deletes = true;
    r.update_policy("ev", p).await.unwrap();
    let started = r.on_event(&del).await.unwrap();
    let t = &r.execution(&started[0].id).await.unwrap().task_list[0];
    assert_eq!(t.operation, Operation::DeleteTags);
    let repo_del = Event::new(EventKind::RepositoryDeleted, "lib/app", 3);
    let started = r.on_event(&repo_del).await.unwrap();
    let t = &r.execution(&started[0].id).await.unwrap().task_list[0];
    assert_eq!(t.operation, Operation::DeleteRepository);

    // The loop guard: what a pull brought from `dst` is not pushed back.
    kv.put(&format!("repl:origin:lib/app@{d}"), b"dst".to_vec())
        .await
        .unwrap();
    assert!(r
        .on_event(&pushed("lib/app", Some("v2"), &d))
        .await
        .unwrap()
        .is_empty());

    // Stop: pending tasks never start.
    let e = r.executions(Some("ev")).await.unwrap();
    assert_eq!(e.len(), 4);
    let stopped = r.stop(&e[0].id).await.unwrap();
    assert!(stopped.stop_requested);
}

async fn push_blob(reg: &Registry, repo: &RepoName, data: &'static [u8]) -> serde_json::Value {
    let d = Digest::sha256_of(data);
    let body = futures_util::stream::iter(vec![Ok(Bytes::from_static(data))]).boxed();
    reg.upload_monolithic(repo, &d, Some(data.len() as u64), body)
        .await
        .unwrap();
    json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d.as_str(), "size": data.len()})
}

async fn put(
    reg: &Registry,
    repo: &RepoName,
    r: Reference,
    m: &serde_json::Value,
) -> (Digest, Bytes) {
    let body = Bytes::from(serde_json::to_vec(m).unwrap());
    let mt = m["mediaType"].as_str().unwrap().to_owned();
    let d = reg
        .manifest_put(repo, &r, Some(&mt), body.clone())
        .await
        .unwrap()
        .digest;
    (d, body)
}

#[tokio::test]
async fn copy_brings_index_children_blobs_and_referrers_byte_identical() {
    let src = Registry::new(Arc::new(MemoryKv::new()), Arc::new(MemoryBlobStore::new()));
    let dst = Registry::new(Arc::new(MemoryKv::new()), Arc::new(MemoryBlobStore::new()));
    let repo = RepoName::parse("lib/app").unwrap();
    let mut config = push_blob(&src, &repo, b"{}").await;
    config["mediaType"] = json!("application/vnd.oci.image.config.v1+json");
    let mut children = Vec::new();
    for layer in [&b"layer-amd64"[..], &b"layer-arm64"[..]] {
        let layer: &'static [u8] = layer;
        let l = push_blob(&src, &repo, layer).await;
        let m = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": config, "layers": [l]});
        let (d, body) = put(
            &src,
            &repo,
            Reference::Digest(Digest::sha256_of(&serde_json::to_vec(&m).unwrap())),
            &m,
        )
        .await;
        children.push(json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d.as_str(), "size": body.len()}));
    }
    let index = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": children});
    let (index_digest, index_body) =
        put(&src, &repo, Reference::parse("v1").unwrap(), &index).await;
    let mut empty = push_blob(&src, &repo, b"{}").await;
    empty["mediaType"] = json!("application/vnd.oci.empty.v1+json");
    let sig = push_blob(&src, &repo, b"signature").await;
    let referrer = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example.sig", "config": empty, "layers": [sig],
        "subject": {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": index_digest.as_str(), "size": index_body.len()}});
    let rbody = serde_json::to_vec(&referrer).unwrap();
    let (ref_digest, _) = put(
        &src,
        &repo,
        Reference::Digest(Digest::sha256_of(&rbody)),
        &referrer,
    )
    .await;
    assert_eq!(
        crate::copy::classify("application/vnd.oci.image.index.v1+json", &index_body),
        Some(ArtifactKind::Index)
    );
    assert_eq!(
        crate::copy::classify("application/vnd.oci.image.manifest.v1+json", &rbody),
        Some(ArtifactKind::Artifact)
    );

    let (s, d) = (Local(src.clone()), Local(dst.clone()));
    let control = Control::default();
    let mut copier = Copier::new(&s, &d, control.clone(), true);
    let marks = Arc::new(MemoryKv::new());
    copier.origin = Some(crate::copy::Origin {
        kv: marks.clone(),
        endpoint: "far".into(),
    });
    let to = RepoName::parse("mirror/app").unwrap();
    copier
        .copy_artifact(&repo, &to, &index_digest, &["v1".into()])
        .await
        .unwrap();
    let got = dst
        .manifest_get(&to, &Reference::parse("v1").unwrap())
        .await
        .unwrap();
    assert_eq!(got.body, index_body);
    for c in &children {
        let cd: Digest = c["digest"].as_str().unwrap().parse().unwrap();
        dst.manifest_get(&to, &Reference::Digest(cd)).await.unwrap();
    }
    let refs = dst.referrers(&to, &index_digest, None).await.unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].digest, ref_digest);
    let sent = control.bytes.load(std::sync::atomic::Ordering::Relaxed);
    assert!(sent > 0);
    // Every manifest written has its origin recorded (the loop guard).
    for d in [&index_digest, &ref_digest] {
        let mark = marks
            .get(&format!("repl:origin:mirror/app@{d}"))
            .await
            .unwrap();
        assert_eq!(mark.unwrap().value, b"far");
    }

    // Again: nothing is sent, the destination has it all.
    let control = Control::default();
    let copier = Copier::new(&s, &d, control.clone(), true);
    copier
        .copy_artifact(&repo, &to, &index_digest, &["v1".into()])
        .await
        .unwrap();
    assert_eq!(control.bytes.load(std::sync::atomic::Ordering::Relaxed), 0);

    // A stopped control stops before anything is written.
    let control = Control::default();
    control
        .stopped
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let copier = Copier::new(&s, &d, control, true);
    let other = RepoName::parse("mirror/other").unwrap();
    let e = copier
        .copy_artifact(&repo, &other, &index_digest, &["v1".into()])
        .await
        .unwrap_err();
    assert_eq!(e.message, crate::copy::STOPPED);
}

#[tokio::test]
async fn a_failing_task_is_retried_with_backoff_then_fails() {
    let settings = Settings {
        backoff: std::time::Duration::from_millis(50),
        attempts: 3,
        ..Settings::default()
    };
    let (r, kv) = service_with(None, settings);
    let r = Arc::new(r);
    // Nothing listens on port 1: connection refused, a retryable error.
    r.create_endpoint(endpoint("dst", None)).await.unwrap();
    // A pull: the unreachable endpoint is the source.
    let p = policy("pull", json!({"direction": "pull"}));
    r.create_policy(p.clone()).await.unwrap();
    let d = Digest::sha256_of(b"x");
    let task = crate::service::new_task(
        Operation::Copy,
        "lib/app",
        "lib/app",
        Some(d),
        vec!["v1".into()],
    );
    let id = r
        .record_execution(&p, Trigger::Manual, vec![task], None)
        .await
        .unwrap()
        .id;
    let start = std::time::Instant::now();
    let detail = loop {
        r.tick().await.unwrap();
        let detail = r.execution(&id).await.unwrap();
        if detail.execution.status.is_final() {
            break detail;
        }
        assert!(start.elapsed().as_secs() < 20, "{detail:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(detail.execution.status, Status::Failed);
    let t = &detail.task_list[0];
    assert_eq!(t.status, Status::Failed);
    assert_eq!(t.attempts, 3, "{t:?}");
    assert!(t.message.is_some());
    // Backoff: 50 ms then 100 ms between the three attempts at least.
    assert!(start.elapsed() >= std::time::Duration::from_millis(150));
    assert!(kv
        .get(&format!("repl:active:{id}"))
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn history_is_pruned_to_the_newest_executions() {
    let settings = Settings {
        keep_executions: 2,
        ..Settings::default()
    };
    let (r, _) = service_with(None, settings);
    r.create_endpoint(endpoint("dst", None)).await.unwrap();
    let p = policy("p", json!({}));
    r.create_policy(p.clone()).await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..4 {
        // No tasks: finished at once.
        ids.push(
            r.record_execution(&p, Trigger::Manual, Vec::new(), None)
                .await
                .unwrap()
                .id,
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let kept: Vec<String> = r
        .executions(Some("p"))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(kept, vec![ids[3].clone(), ids[2].clone()]);
}
