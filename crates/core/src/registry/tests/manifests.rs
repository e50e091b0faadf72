//! Manifests and tags: a manifest is accepted only when everything it names
//! is in the repository when it commits, tag moves are compare-and-swap,
//! and immutability and retention rules hold under concurrent pushes.

use super::*;
use crate::registry::policy::{ProjectPolicy, RetentionRule, TagSelector};
use berth_oci::ErrorCode;

async fn put(
    reg: &Registry,
    r: &RepoName,
    tag: &str,
    body: Bytes,
) -> Result<Digest, crate::CoreError> {
    let tag = reference(tag);
    let put = reg.manifest_put(r, &tag, Some(IMAGE), body);
    Ok(put.await?.digest)
}

fn immutable(tags: &str) -> ProjectPolicy {
    ProjectPolicy {
        immutable: vec![TagSelector {
            repositories: "**".into(),
            tags: tags.into(),
        }],
        ..ProjectPolicy::default()
    }
}

#[tokio::test]
async fn a_manifest_needs_its_blobs_in_its_repository() {
    let fx = Fixture::new();
    let (r, other) = (repo("p/app"), repo("p/other"));
    let config = push_blob(&fx.reg, &r, b"{}").await;
    let layer = push_blob(&fx.reg, &other, b"layer").await;
    let body = image(&config, &[&layer], serde_json::json!({}));
    let e = put(&fx.reg, &r, "v1", body.clone()).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::ManifestBlobUnknown);
    assert!(fx.reg.blob_mount(&r, &layer, &other).await.unwrap());
    put(&fx.reg, &r, "v1", body).await.unwrap();
}

/// A proxy cache keeps what its upstream sent before the blobs are asked
/// for: the manifest is stored without them, tagged, and sends no event
/// (nothing was pushed); the digest is still checked.
#[tokio::test]
async fn a_cached_manifest_waits_for_its_blobs_and_sends_no_event() {
    let fx = Fixture::new();
    let r = repo("hub/library/app");
    let (config, layer) = (Digest::sha256_of(b"{}"), Digest::sha256_of(b"layer"));
    let body = image(&config, &[&layer], serde_json::json!({}));
    let e = put(&fx.reg, &r, "v1", body.clone()).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::ManifestBlobUnknown, "a push needs them");
    let wrong = Reference::Digest(Digest::sha256_of(b"other"));
    let e = fx
        .reg
        .manifest_cache(&r, &wrong, Some(IMAGE), body.clone())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::DigestInvalid);
    let cached = fx
        .reg
        .manifest_cache(&r, &reference("v1"), Some(IMAGE), body.clone())
        .await
        .unwrap();
    let got = fx.reg.manifest_get(&r, &reference("v1")).await.unwrap();
    assert_eq!((got.digest, got.body), (cached.digest, body));
    assert!(fx.keys("outbox:").await.is_empty(), "no event");
}

#[tokio::test]
async fn an_index_needs_its_children() {
    let fx = Fixture::new();
    let r = repo("p/app");
    let child = push_image(&fx.reg, &r, "child", b"layer").await;
    let missing = Digest::sha256_of(b"never pushed");
    let index = |children: &[&Digest]| {
        let manifests: Vec<_> = children
            .iter()
            .map(|d| serde_json::json!({"mediaType": IMAGE, "digest": d, "size": 1}))
            .collect();
        let body =
            serde_json::json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": manifests});
        Bytes::from(body.to_string())
    };
    let e = fx
        .reg
        .manifest_put(
            &r,
            &reference("all"),
            Some(INDEX),
            index(&[&child, &missing]),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::ManifestBlobUnknown);
    fx.reg
        .manifest_put(&r, &reference("all"), Some(INDEX), index(&[&child]))
        .await
        .unwrap();
}

/// A blob unlinked between the push's look and its commit: the commit's
/// check on the link fails it, and the retry finds the blob gone.
#[tokio::test]
async fn a_blob_unlinked_during_a_push_fails_the_push() {
    let (ix, fx) = Fixture::interposed();
    let r = repo("p/app");
    let (body, layer) = push_image_blobs(&fx.reg, &r, b"{}", b"layer").await;
    let (other, gone) = (fx.node(), layer.clone());
    ix.before(|call| call.puts("man:", ""), async move {
        other.blob_delete(&repo("p/app"), &gone).await.unwrap();
    });
    let e = put(&fx.reg, &r, "v1", body).await.unwrap_err();
    assert!(ix.done());
    assert_eq!(e.code, ErrorCode::ManifestBlobUnknown);
    assert!(fx.keys("man:").await.is_empty());
    assert!(fx.keys("tag:").await.is_empty());
}

#[tokio::test]
async fn a_manifest_must_be_what_it_claims_to_be() {
    let fx = Fixture::new();
    let r = repo("p/app");
    let config = push_blob(&fx.reg, &r, b"{}").await;
    let body = image(&config, &[], serde_json::json!({}));
    let wrong = Reference::Digest(Digest::sha256_of(b"something else"));
    let e = fx
        .reg
        .manifest_put(&r, &wrong, Some(IMAGE), body)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::DigestInvalid);
    let e = put(&fx.reg, &r, "v1", Bytes::from_static(b"{not json"))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::ManifestInvalid);
    let huge = image(
        &config,
        &[],
        serde_json::json!({"annotations": {"x": "y".repeat(5 << 20)}}),
    );
    let e = put(&fx.reg, &r, "v1", huge).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::ManifestTooLarge);
    assert!(fx.keys("man:").await.is_empty());
}

/// Deleting a tag leaves its manifest; deleting a manifest takes every tag
/// pointing to it and its pull record.
#[tokio::test]
async fn deletes_by_tag_and_by_digest() {
    let fx = Fixture::new();
    let r = repo("p/app");
    let digest = push_image(&fx.reg, &r, "v1", b"layer").await;
    assert_eq!(push_image(&fx.reg, &r, "latest", b"layer").await, digest);
    for name in ["v1", "latest", digest.as_str()] {
        let m = fx.reg.manifest_get(&r, &reference(name)).await.unwrap();
        assert_eq!(
            (m.digest.clone(), m.media_type.as_str()),
            (digest.clone(), IMAGE)
        );
    }
    fx.reg
        .manifest_delete(&r, &reference("latest"))
        .await
        .unwrap();
    let unknown = |e: crate::CoreError| assert_eq!(e.code, ErrorCode::ManifestUnknown);
    let latest = reference("latest");
    unknown(fx.reg.manifest_get(&r, &latest).await.unwrap_err());
    unknown(fx.reg.manifest_delete(&r, &latest).await.unwrap_err());
    fx.reg.manifest_get(&r, &reference("v1")).await.unwrap();
    fx.reg.record_pull(&r, &digest).await.unwrap();

    let by_digest = Reference::Digest(digest.clone());
    fx.reg.manifest_delete(&r, &by_digest).await.unwrap();
    unknown(fx.reg.manifest_get(&r, &by_digest).await.unwrap_err());
    unknown(fx.reg.manifest_get(&r, &reference("v1")).await.unwrap_err());
    assert_eq!(fx.reg.last_pulled(&r, &digest).await.unwrap(), None);
    assert!(fx
        .reg
        .tags(&r, None, None)
        .await
        .unwrap()
        .items()
        .is_empty());
}

/// Sixteen clients pushing sixteen tags at once: all land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pushes_of_distinct_tags_all_land() {
    let fx = Fixture::new();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let reg = fx.node();
            tokio::spawn(async move {
                let config = format!("{{\"n\":{i}}}");
                let (r, tag) = (repo("p/app"), format!("t{i:02}"));
                push_image_of(&reg, &r, &tag, config.as_bytes(), b"layer")
                    .await
                    .unwrap()
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let tags = fx.reg.tags(&repo("p/app"), None, None).await.unwrap();
    let expected: Vec<String> = (0..16).map(|i| format!("t{i:02}")).collect();
    assert_eq!(tags.items(), expected.as_slice());
    sound_registry(&fx.reg).await;
}

/// Sixteen clients moving one tag at once: every push lands, the tag ends
/// on one of them, and the next push moves it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_moves_of_one_tag_leave_it_on_a_pushed_manifest() {
    let fx = Fixture::new();
    let r = repo("p/app");
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let reg = fx.node();
            tokio::spawn(async move {
                let config = format!("{{\"n\":{i}}}");
                let r = repo("p/app");
                push_image_of(&reg, &r, "latest", config.as_bytes(), b"layer")
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut pushed = Vec::new();
    for task in tasks {
        pushed.push(task.await.unwrap());
    }
    let latest = fx.reg.manifest_get(&r, &reference("latest")).await.unwrap();
    assert!(pushed.contains(&latest.digest));
    for digest in &pushed {
        let by_digest = Reference::Digest(digest.clone());
        fx.reg.manifest_get(&r, &by_digest).await.unwrap();
    }
    let last = push_image(&fx.reg, &r, "latest", b"last").await;
    let latest = fx.reg.manifest_get(&r, &reference("latest")).await.unwrap();
    assert_eq!(latest.digest, last, "the last writer wins");
}

async fn sound_registry(reg: &Registry) {
    let report = reg.fsck(true, false).await.unwrap();
    assert_eq!(report.problems, Vec::<String>::new());
}

/// A tag moved to a new manifest while its old manifest is deleted by
/// digest: the delete must not take the tag with it.
#[tokio::test]
async fn a_tag_moved_during_a_delete_of_its_old_manifest_survives() {
    let (ix, fx) = Fixture::interposed();
    let r = repo("p/app");
    let old = push_image(&fx.reg, &r, "latest", b"one").await;
    let other = fx.node();
    ix.before(|call| call.deletes("man:p/app@"), async move {
        push_image(&other, &repo("p/app"), "latest", b"two").await;
    });
    fx.reg
        .manifest_delete(&r, &Reference::Digest(old.clone()))
        .await
        .unwrap();
    assert!(ix.done());
    let latest = fx.reg.manifest_get(&r, &reference("latest")).await.unwrap();
    assert_ne!(latest.digest, old);
    sound_registry(&fx.reg).await;
}

/// Two pushes race to create an immutable tag: the first to commit keeps
/// it, the other is refused instead of overwriting it.
#[tokio::test]
async fn an_immutable_tag_raced_by_two_pushes_keeps_the_first() {
    let (ix, fx) = Fixture::interposed();
    let r = repo("p/app");
    fx.reg
        .set_project_policy("p", &immutable("v*"))
        .await
        .unwrap();
    push_image(&fx.reg, &r, "base", b"base").await;
    let other = fx.node();
    ix.before(|call| call.puts("tag:p/app@v1", ""), async move {
        let r = repo("p/app");
        let config = b"{\"by\":\"b\"}";
        push_image_of(&other, &r, "v1", config, b"b").await.unwrap();
    });
    let e = push_image_of(&fx.reg, &r, "v1", b"{\"by\":\"a\"}", b"a")
        .await
        .unwrap_err();
    assert!(ix.done());
    assert_eq!(e.code, ErrorCode::Denied);
    let v1 = fx.reg.manifest_get(&r, &reference("v1")).await.unwrap();
    let parsed = berth_oci::manifest::parse(Some(IMAGE), &v1.body).unwrap();
    assert_eq!(parsed.layers[0].digest, Digest::sha256_of(b"b"));
}

#[tokio::test]
async fn immutable_tags_neither_move_nor_go() {
    let fx = Fixture::new();
    let r = repo("p/app");
    fx.reg
        .set_project_policy("p", &immutable("v*"))
        .await
        .unwrap();
    let v1 = push_image(&fx.reg, &r, "v1", b"one").await;
    push_image(&fx.reg, &r, "latest", b"one").await;
    let denied = |e: crate::CoreError| assert_eq!(e.code, ErrorCode::Denied);
    denied(
        push_image_of(&fx.reg, &r, "v1", b"{}", b"two")
            .await
            .unwrap_err(),
    );
    let (by_tag, by_digest) = (reference("v1"), Reference::Digest(v1.clone()));
    denied(fx.reg.manifest_delete(&r, &by_tag).await.unwrap_err());
    denied(fx.reg.manifest_delete(&r, &by_digest).await.unwrap_err());
    denied(fx.reg.repository_delete(&r).await.unwrap_err());
    // The same content again is no move; other tags move freely.
    assert_eq!(push_image(&fx.reg, &r, "v1", b"one").await, v1);
    push_image(&fx.reg, &r, "latest", b"two").await;
    fx.reg
        .manifest_delete(&r, &reference("latest"))
        .await
        .unwrap();
    assert_eq!(fx.reg.resolve(&r, &reference("v1")).await.unwrap(), v1);
}

/// Retention keeps what some rule keeps (the N latest, those pushed within
/// N days by the clock) and immutable tags; it deletes the rest, or only
/// lists them when dry.
#[tokio::test]
async fn retention_deletes_what_no_rule_keeps() {
    let fx = Fixture::new();
    let r = repo("p/app");
    for tag in ["t1", "t2", "t3", "t4", "t5"] {
        push(&fx.reg, &r, tag, tag.as_bytes()).await;
        fx.advance_secs(86_400);
    }
    let mut policy = immutable("t1");
    policy.retention = vec![
        RetentionRule {
            repositories: "**".into(),
            tags: "**".into(),
            latest_pushed: Some(1),
            pushed_within_days: None,
            pulled_within_days: None,
        },
        RetentionRule {
            repositories: "**".into(),
            tags: "**".into(),
            latest_pushed: None,
            pushed_within_days: Some(3),
            pulled_within_days: None,
        },
    ];
    fx.reg.set_project_policy("p", &policy).await.unwrap();
    let dry = fx.reg.apply_retention("p", true).await.unwrap();
    assert_eq!(dry.deleted, ["p/app:t3", "p/app:t2"]);
    assert_eq!(fx.reg.tags(&r, None, None).await.unwrap().items().len(), 5);
    // A day later, t4 is past three days too.
    fx.advance_secs(86_400);
    let real = fx.reg.apply_retention("p", false).await.unwrap();
    assert_eq!(real.deleted, ["p/app:t4", "p/app:t3", "p/app:t2"]);
    let tags = fx.reg.tags(&r, None, None).await.unwrap();
    assert_eq!(tags.items(), ["t1", "t5"]);
}

/// "Keep what was pulled lately": a tag whose manifest was pulled within
/// the rule's days stays, however old its push; one pulled long ago or
/// never goes (a proxy cache's retention).
#[tokio::test]
async fn retention_keeps_what_was_pulled_lately() {
    let fx = Fixture::new();
    let r = repo("p/app");
    let mut digests = Vec::new();
    for tag in ["old-used", "old-stale", "never"] {
        push(&fx.reg, &r, tag, tag.as_bytes()).await;
        digests.push(fx.reg.resolve(&r, &reference(tag)).await.unwrap());
    }
    fx.reg.record_pull(&r, &digests[1]).await.unwrap();
    fx.advance_secs(10 * 86_400);
    fx.reg.record_pull(&r, &digests[0]).await.unwrap();
    fx.advance_secs(86_400);
    let policy = ProjectPolicy {
        retention: vec![RetentionRule {
            repositories: "**".into(),
            tags: "**".into(),
            latest_pushed: None,
            pushed_within_days: None,
            pulled_within_days: Some(7),
        }],
        ..ProjectPolicy::default()
    };
    fx.reg.set_project_policy("p", &policy).await.unwrap();
    let report = fx.reg.apply_retention("p", false).await.unwrap();
    let mut deleted = report.deleted.clone();
    deleted.sort();
    assert_eq!(deleted, ["p/app:never", "p/app:old-stale"]);
    let tags = fx.reg.tags(&r, None, None).await.unwrap();
    assert_eq!(tags.items(), ["old-used"]);
}
