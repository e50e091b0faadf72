//! A Distribution's directory copied into berth's own storage.

use super::fixture::*;
use crate::common::{expect_status, Server, ADMIN_PASSWORD};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_distribution_elsewhere_is_copied_verified_and_left_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("old-registry");
    let dist = distribution_on_dir(&root);
    fill(&dist, tmp.path()).await;
    let before = content(&dist.url, None).await;
    dist.stop();
    let source_files = files_under(&root);

    let data = tmp.path().join("berth-data");
    let data_arg = data.to_str().unwrap();
    let root_arg = root.to_str().unwrap();
    let args = [
        "--data", data_arg, "--from", root_arg, "--verify", "--public",
    ];
    let first = berth_import_ok(&args);
    let out = &first.stdout;
    assert!(first.stderr.contains("copying"), "{}", first.stderr);
    assert_eq!(first.count("manifests", "imported"), 7, "{out}");
    assert_eq!(first.count("manifests", "skipped"), 0, "{out}");
    assert!(out.contains("skipped: nothing"), "{out}");
    assert!(out.contains(" 0 adopted in place (0 B)"), "{out}");
    let copied = first.count("blobs", "imported");
    assert!(copied >= 8, "{out}");
    assert_eq!(files_under(&root), source_files, "the source was changed");

    // Blobs are in berth's own layout in its data directory.
    let layer = before
        .iter()
        // A blob's entry is its size; a manifest's names its media type.
        .find(|(k, v)| k.starts_with("team/sub/multi@") && !v.contains('/'))
        .map(|(k, _)| k.split('@').nth(1).unwrap().to_owned())
        .unwrap();
    let hex = layer.trim_start_matches("sha256:");
    let stored = data.join(format!("blobs/blobs/sha256/{}/{hex}", &hex[..2]));
    assert!(stored.is_file(), "{} missing", stored.display());

    let again = berth_import_ok(&args);
    assert!(again.stdout.contains("nothing new"), "{}", again.stdout);
    assert!(again.stdout.contains(" 0 copied (0 B)"), "{}", again.stdout);

    let server = Server::start_in(&data, &[]);
    let admin = Some(("admin", ADMIN_PASSWORD));
    assert_eq!(content(&server.url(""), admin).await, before);
    // --public: anyone may pull.
    let anonymous = berth_net::builder().no_proxy().build().unwrap();
    let tags = anonymous.get(server.url("/v2/team/sub/multi/tags/list"));
    expect_status(tags, 200).await;
    drop(server);
    let (ok, fsck) = Server::fsck(&data, &[]);
    assert!(ok, "{fsck}");
}
