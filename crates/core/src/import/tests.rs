//! The import over in-memory ports: a Distribution tree in a
//! [`MemoryTree`], the registry on [`MemoryKv`] and [`MemoryBlobStore`].
//! In place (the store holds the tree's blobs) and copying; a second run
//! writes nothing; a run cut short at every commit is finished by the
//! next; what berth cannot serve is skipped, saying why.

use super::*;
use crate::blob::BlobStore;
use crate::kv::{KeyRange, Kv, KvError, Txn, Versioned};
use crate::{MemoryBlobStore, MemoryKv, Registry};
use async_trait::async_trait;
use berth_oci::{Digest, Reference, RepoName};
use bytes::Bytes;
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const IMAGE: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Projects as a set; `refuse` names one whose creation fails.
#[derive(Default)]
struct ProjectSet {
    names: Mutex<BTreeSet<String>>,
    refuse: Option<String>,
}

#[async_trait]
impl Projects for ProjectSet {
    async fn ensure(&self, project: &str) -> Result<bool, String> {
        if self.refuse.as_deref() == Some(project) {
            return Err("directory unavailable".into());
        }
        let mut names = self.names.lock().unwrap();
        Ok(names.insert(project.to_owned()))
    }
}

struct Fx {
    kv: Arc<MemoryKv>,
    blobs: Arc<MemoryBlobStore>,
    reg: Registry,
    tree: MemoryTree,
    projects: ProjectSet,
}

impl Fx {
    fn new() -> Fx {
        let kv = Arc::new(MemoryKv::new());
        let blobs = Arc::new(MemoryBlobStore::new());
        let reg = Registry::new(kv.clone(), blobs.clone());
        Fx {
            kv,
            blobs,
            reg,
            tree: MemoryTree::new(),
            projects: ProjectSet::default(),
        }
    }

    /// Puts every blob of the tree into the registry's store, as when berth
    /// runs on the Distribution's own storage.
    async fn share_blobs(&self) {
        for file in self.tree.files("blobs/").await.unwrap() {
            let parts: Vec<&str> = file.split('/').collect();
            let digest: Digest = format!("{}:{}", parts[0], parts[2]).parse().unwrap();
            let FileRead::Bytes(data) = self
                .tree
                .read(&format!("blobs/{file}"), u64::MAX)
                .await
                .unwrap()
            else {
                panic!("{file} unreadable");
            };
            self.blobs.put(&digest, data).await.unwrap();
        }
    }

    async fn run_with(&self, reg: &Registry, in_place: bool, verify: bool) -> ImportReport {
        let options = ImportOptions {
            verify,
            in_place,
            jobs: 3,
        };
        let importer = Importer::new(reg, &self.tree, &self.projects, options);
        importer.run().await.unwrap()
    }

    async fn run(&self, in_place: bool) -> ImportReport {
        self.run_with(&self.reg, in_place, false).await
    }

    /// Every metadata record with its version: equal snapshots mean
    /// nothing was written in between.
    async fn snapshot(&self) -> Vec<(String, u64, Vec<u8>)> {
        let all = self.kv.scan("", None, 1_000_000).await.unwrap();
        all.into_iter()
            .map(|(k, v)| (k, v.version, v.value))
            .collect()
    }

    async fn sound(&self) {
        let report = self.reg.fsck(true, false).await.unwrap();
        assert_eq!(report.problems, Vec::<String>::new());
    }

    async fn body(&self, repo: &str, reference: &str) -> Bytes {
        let r = RepoName::parse(repo).unwrap();
        let reference = Reference::parse(reference).unwrap();
        self.reg.manifest_get(&r, &reference).await.unwrap().body
    }
}

/// An image in `repo` of `layers` (linked), with `extra` fields; its
/// digest and body.
fn image_in(
    tree: &MemoryTree,
    repo: &str,
    layers: &[&[u8]],
    extra: serde_json::Value,
) -> (Digest, Bytes) {
    let config = format!("{{\"os\":\"linux\",\"n\":{}}}", layers.len()).into_bytes();
    let config_digest = tree.blob(&config);
    tree.link_layer(repo, &config_digest);
    let mut descriptors = Vec::new();
    for layer in layers {
        let d = tree.blob(layer);
        tree.link_layer(repo, &d);
        descriptors.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": layer.len()}));
    }
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": IMAGE,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": descriptors,
    });
    if let (Some(m), serde_json::Value::Object(extra)) = (m.as_object_mut(), extra) {
        m.extend(extra);
    }
    manifest_in(tree, repo, m)
}

fn manifest_in(tree: &MemoryTree, repo: &str, m: serde_json::Value) -> (Digest, Bytes) {
    let body = Bytes::from(m.to_string());
    let digest = tree.blob(&body);
    tree.link_revision(repo, &digest);
    (digest, body)
}

fn index_in(
    tree: &MemoryTree,
    repo: &str,
    children: &[(&Digest, &Bytes, &str)],
) -> (Digest, Bytes) {
    let manifests: Vec<_> = children
        .iter()
        .map(|(d, b, t)| json!({"mediaType": t, "digest": d, "size": b.len()}))
        .collect();
    manifest_in(
        tree,
        repo,
        json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": manifests}),
    )
}

/// What a Distribution holds after pushes of a multi-platform image, a
/// signature of one of its images (by digest, with the `sha256-<hex>` tag
/// of the referrers tag scheme), an index of indexes, and a second
/// repository that shares a layer.
struct Pushed {
    amd: Digest,
    index: Digest,
    outer: Digest,
    signature: Digest,
}

fn push_everything(tree: &MemoryTree) -> Pushed {
    let repo = "proj/app";
    let (amd, amd_body) = image_in(tree, repo, &[b"base layer", b"amd64 layer"], json!({}));
    let (arm, arm_body) = image_in(tree, repo, &[b"base layer", b"arm64 layer"], json!({}));
    let (index, index_body) = index_in(
        tree,
        repo,
        &[(&amd, &amd_body, IMAGE), (&arm, &arm_body, IMAGE)],
    );
    tree.tag(repo, "v1", &index);
    tree.tag(repo, "amd64", &amd);
    let (outer, _) = index_in(tree, repo, &[(&index, &index_body, INDEX)]);
    tree.tag(repo, "outer", &outer);
    let empty = tree.blob(b"{}");
    tree.link_layer(repo, &empty);
    let (signature, signature_body) = manifest_in(
        tree,
        repo,
        json!({
            "schemaVersion": 2, "mediaType": IMAGE,
            "artifactType": "application/vnd.example.signature",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
            "layers": [],
            "subject": {"mediaType": IMAGE, "digest": amd, "size": amd_body.len()},
        }),
    );
    let (fallback, _) = index_in(tree, repo, &[(&signature, &signature_body, IMAGE)]);
    tree.tag(repo, &format!("sha256-{}", amd.encoded()), &fallback);
    let (tool, _) = image_in(tree, "other/deep/tool", &[b"base layer"], json!({}));
    tree.tag("other/deep/tool", "latest", &tool);
    Pushed {
        amd,
        index,
        outer,
        signature,
    }
}

/// Blob links `push_everything` makes: app has one config (both images
/// have the same), three layers and the empty config; tool a config and
/// the layer it shares with app.
const LINKS: u64 = 5 + 2;
const MANIFESTS: u64 = 7;
const TAGS: u64 = 5;

async fn everything_is_there(fx: &Fx, pushed: &Pushed) {
    let app = RepoName::parse("proj/app").unwrap();
    assert_eq!(
        fx.body("proj/app", "v1").await,
        fx.body("proj/app", pushed.index.as_str()).await
    );
    assert_eq!(
        fx.reg
            .resolve(&app, &Reference::parse("outer").unwrap())
            .await
            .unwrap(),
        pushed.outer
    );
    let referrers = fx.reg.referrers(&app, &pushed.amd, None).await.unwrap();
    let found: Vec<&Digest> = referrers.iter().map(|d| &d.digest).collect();
    assert_eq!(found, [&pushed.signature]);
    let page = fx.reg.tags(&app, None, None).await.unwrap();
    assert_eq!(page.items().len(), 4);
    let tool = RepoName::parse("other/deep/tool").unwrap();
    let layer = Digest::sha256_of(b"base layer");
    assert_eq!(fx.reg.blob_size(&tool, &layer).await.unwrap(), 10);
    let stored = crate::blob_suite::read_all(fx.blobs.as_ref(), &layer, 0, 10).await;
    assert_eq!(stored, b"base layer");
    fx.sound().await;
}

#[tokio::test]
async fn a_tree_is_imported_in_place_without_a_byte_copied() {
    let fx = Fx::new();
    let pushed = push_everything(&fx.tree);
    fx.share_blobs().await;
    let report = fx.run(true).await;
    assert_eq!(report.failures, Vec::<(String, String)>::new());
    assert_eq!(report.skipped, Vec::<(String, String)>::new());
    assert_eq!(report.repositories.imported, 2);
    assert_eq!(report.manifests.imported, MANIFESTS);
    assert_eq!(report.tags.imported, TAGS);
    assert_eq!(report.blobs.imported, LINKS);
    // The shared layer is adopted once, then linked as a blob berth has.
    assert_eq!((report.blobs_adopted, report.blobs_known), (LINKS - 1, 1));
    assert_eq!((report.blobs_copied, report.bytes_copied), (0, 0));
    assert_eq!(report.projects_created, ["other", "proj"]);
    let none: Vec<String> = Vec::new();
    let uploads = fx
        .blobs
        .stale_uploads(std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(uploads, none, "no upload was made");
    everything_is_there(&fx, &pushed).await;
}

#[tokio::test]
async fn a_tree_elsewhere_is_copied_and_verified() {
    let fx = Fx::new();
    let pushed = push_everything(&fx.tree);
    let report = fx.run(false).await;
    assert_eq!(report.failures, Vec::<(String, String)>::new());
    assert_eq!(report.blobs.imported, LINKS);
    assert_eq!((report.blobs_copied, report.blobs_adopted), (LINKS - 1, 0));
    assert!(report.bytes_copied > 0);
    everything_is_there(&fx, &pushed).await;
}

#[tokio::test]
async fn a_second_run_writes_nothing_and_finds_everything_present() {
    for in_place in [true, false] {
        let fx = Fx::new();
        push_everything(&fx.tree);
        if in_place {
            fx.share_blobs().await;
        }
        let first = fx.run(in_place).await;
        let before = fx.snapshot().await;
        let second = fx.run(in_place).await;
        assert!(second.nothing_new(), "{second}");
        assert_eq!(fx.snapshot().await, before, "a record was written");
        assert_eq!(second.manifests.present, first.manifests.imported);
        assert_eq!(second.tags.present, first.tags.imported);
        assert_eq!(second.blobs.present, first.blobs.imported);
        assert_eq!(second.repositories.present, 2);
        assert_eq!(second.bytes_copied, 0);
    }
}

/// A `Kv` that dies after `left` commits: every later commit fails, as
/// a process killed there would make none.
struct Dying {
    inner: Arc<MemoryKv>,
    left: AtomicUsize,
}

#[async_trait]
impl Kv for Dying {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, KvError> {
        self.inner.get(key).await
    }

    async fn scan_range(&self, range: KeyRange<'_>) -> Result<Vec<(String, Versioned)>, KvError> {
        self.inner.scan_range(range).await
    }

    async fn commit(&self, txn: Txn) -> Result<bool, KvError> {
        let left = self.left.load(Ordering::SeqCst);
        if left == 0 {
            return Err(KvError::Unavailable("killed".into()));
        }
        self.left.store(left - 1, Ordering::SeqCst);
        self.inner.commit(txn).await
    }
}

/// Cut after each number of commits in turn (in place and copying): what
/// the cut run made visible is consistent, and a second run completes
/// everything as an uncut run does.
#[tokio::test]
async fn a_run_cut_short_anywhere_is_finished_by_the_next() {
    for in_place in [true, false] {
        let mut cut = 0;
        loop {
            let fx = Fx::new();
            let pushed = push_everything(&fx.tree);
            if in_place {
                fx.share_blobs().await;
            }
            let dying = Arc::new(Dying {
                inner: fx.kv.clone(),
                left: AtomicUsize::new(cut),
            });
            let cut_reg = Registry::new(dying, fx.blobs.clone());
            let first = fx.run_with(&cut_reg, in_place, false).await;
            fx.sound().await;
            let second = fx.run(in_place).await;
            assert_eq!(
                second.failures,
                Vec::<(String, String)>::new(),
                "cut at {cut}"
            );
            assert_eq!(
                (
                    second.manifests.imported + second.manifests.present,
                    second.tags.imported + second.tags.present
                ),
                (MANIFESTS, TAGS),
                "cut at {cut}: {second}"
            );
            assert_eq!(second.blobs.imported + second.blobs.present, LINKS);
            everything_is_there(&fx, &pushed).await;
            if first.failures.is_empty() {
                assert!(cut > 10, "the import made only {cut} commits");
                break;
            }
            cut += 1;
        }
    }
}

#[tokio::test]
async fn what_berth_cannot_serve_is_skipped_saying_why() {
    let fx = Fx::new();
    let t = &fx.tree;
    let repo = "proj/app";
    let (good, _) = image_in(t, repo, &[b"good"], json!({}));
    t.tag(repo, "good", &good);
    // A schema 1 manifest, tagged.
    let (schema1, _) = manifest_in(
        t,
        repo,
        json!({"schemaVersion": 1, "name": repo, "tag": "old", "fsLayers": []}),
    );
    t.tag(repo, "old", &schema1);
    // An image whose layer's data is gone, in an index, both tagged.
    let (broken, broken_body) = image_in(t, repo, &[b"lost layer"], json!({}));
    t.remove(&tree::blob_data(&Digest::sha256_of(b"lost layer")));
    t.tag(repo, "broken", &broken);
    let (index, _) = index_in(t, repo, &[(&broken, &broken_body, IMAGE)]);
    t.tag(repo, "multi", &index);
    // A manifest whose descriptor gives the wrong size.
    let layer = t.blob(b"sized");
    t.link_layer(repo, &layer);
    let config = t.blob(b"{}");
    t.link_layer(repo, &config);
    let (missized, _) = manifest_in(
        t,
        repo,
        json!({
            "schemaVersion": 2, "mediaType": DOCKER,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config, "size": 2},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": layer, "size": 99}],
        }),
    );
    // A revision link whose data is gone; a tag to no revision; a tag
    // link holding no digest; an invalid repository name.
    let gone = Digest::sha256_of(b"deleted manifest");
    t.link_revision(repo, &gone);
    t.tag(repo, "dangling", &Digest::sha256_of(b"never pushed"));
    t.put(
        "repositories/proj/app/_manifests/tags/junk/current/link",
        "not a digest",
    );
    let (bad_name, _) = image_in(t, "proj/Bad_Name", &[b"x"], json!({}));
    t.tag("proj/Bad_Name", "v1", &bad_name);
    // A repository of nothing but a schema 1 manifest.
    let (legacy, _) = manifest_in(
        t,
        "proj/legacy",
        json!({"schemaVersion": 1, "fsLayers": []}),
    );
    t.tag("proj/legacy", "1.0", &legacy);

    let report = fx.run(false).await;
    assert_eq!(report.failures, Vec::<(String, String)>::new(), "{report}");
    let why = |what: &str| -> String {
        let found = report.skipped.iter().find(|(w, _)| w.contains(what));
        found
            .map(|(_, why)| why.clone())
            .unwrap_or_else(|| panic!("{what} not skipped:\n{report}"))
    };
    assert!(why(&format!("manifest proj/app@{schema1}")).contains("schema 1"));
    assert!(why("tag proj/app:old").contains("schema 1"));
    assert!(why(&format!(
        "blob proj/app@{}",
        Digest::sha256_of(b"lost layer")
    ))
    .contains("gone"));
    assert!(why(&format!("manifest proj/app@{broken}")).contains("missing"));
    assert!(why(&format!("manifest proj/app@{index}")).contains("child manifest"));
    assert!(why("tag proj/app:multi").contains("skipped"));
    assert!(why(&format!("manifest proj/app@{missized}")).contains("the manifest says 99"));
    assert!(why(&format!("manifest proj/app@{gone}")).contains("dangles"));
    assert!(why("tag proj/app:dangling").contains("dangling"));
    assert!(why("tag proj/app:junk").contains("no valid digest"));
    assert!(why("repository proj/Bad_Name").contains("not a valid repository name"));
    assert!(why("repository proj/legacy").contains("nothing in it that berth can serve"));
    assert_eq!(report.repositories.imported, 1, "{report}");
    assert_eq!(report.repositories.skipped, 2, "{report}");
    assert_eq!(report.manifests.imported, 1, "{report}");
    assert_eq!(report.tags.imported, 1, "{report}");
    assert_eq!(
        fx.body(repo, "good").await,
        fx.body(repo, good.as_str()).await
    );
    fx.sound().await;

    // Skipped again, for the same reasons, with nothing new.
    let again = fx.run(false).await;
    assert!(again.nothing_new(), "{again}");
    assert_eq!(again.skipped.len(), report.skipped.len());
}

#[tokio::test]
async fn verify_rehashes_what_is_adopted_in_place() {
    for verify in [false, true] {
        let fx = Fx::new();
        let (digest, _) = image_in(&fx.tree, "proj/app", &[b"original"], json!({}));
        fx.tree.tag("proj/app", "v1", &digest);
        fx.share_blobs().await;
        // The same size, other bytes: only a re-hash tells.
        fx.blobs.tamper(
            &Digest::sha256_of(b"original"),
            Bytes::from_static(b"ORIGINAL"),
        );
        let report = fx.run_with(&fx.reg, true, verify).await;
        assert_eq!(report.failures, Vec::<(String, String)>::new());
        if verify {
            assert_eq!(report.manifests.skipped, 1, "{report}");
            assert!(report
                .skipped
                .iter()
                .any(|(_, why)| why.contains("does not match its digest")));
        } else {
            assert_eq!(report.manifests.imported, 1, "{report}");
        }
    }
}

#[tokio::test]
async fn a_project_that_cannot_be_made_fails_its_repositories_only() {
    let mut fx = Fx::new();
    fx.projects.refuse = Some("other".into());
    push_everything(&fx.tree);
    let report = fx.run(false).await;
    assert_eq!(report.repositories.failed, 1);
    assert_eq!(report.repositories.imported, 1);
    assert_eq!(report.failures.len(), 1, "{report}");
    assert!(report.failures[0].0.contains("project other"));
}

#[tokio::test]
async fn progress_counts_everything_once() {
    let fx = Fx::new();
    push_everything(&fx.tree);
    let importer = Importer::new(&fx.reg, &fx.tree, &fx.projects, ImportOptions::default());
    let progress = importer.progress();
    importer.run().await.unwrap();
    assert_eq!(progress.repositories.done(), 2);
    assert_eq!(progress.repositories.total(), 2);
    assert_eq!(
        (progress.manifests.done(), progress.manifests.total()),
        (MANIFESTS, MANIFESTS)
    );
    assert_eq!(
        (progress.blobs.done(), progress.blobs.total()),
        (LINKS, LINKS)
    );
    assert!(progress
        .line()
        .starts_with("repositories 2/2, manifests 7/7, blobs 7/7"));
}
