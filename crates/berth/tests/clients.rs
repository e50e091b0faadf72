//! Real clients against the real binary: the Docker engine, skopeo, podman
//! and buildah push to berth and pull back what they pushed. A missing tool
//! fails the test (scripts/test installs them); nothing is skipped.

mod common;

use common::oci::{write_oci_layout, LayoutImage};
use common::{noise, sha256, Server, ADMIN_PASSWORD};
use serde_json::json;
use std::path::Path;
use std::process::Command;

/// Runs a command, panicking with its output when it fails.
fn run(program: &str, args: &[&str]) -> String {
    run_with(program, args, &[], None)
}

/// Runs a command with extra environment and standard input; its standard
/// output, and a panic with everything it printed when it fails.
fn run_with(program: &str, args: &[&str], envs: &[(&str, &str)], stdin: Option<&str>) -> String {
    let out = try_run(program, args, envs, stdin);
    berth_test_kit::stdout_ok(out, &format!("{program} {args:?}"))
}

/// Runs a command (containers' tools on the vfs storage driver); what it
/// did and printed.
fn try_run(
    program: &str,
    args: &[&str],
    envs: &[(&str, &str)],
    stdin: Option<&str>,
) -> std::process::Output {
    let mut all = vec![("STORAGE_DRIVER", "vfs")];
    all.extend_from_slice(envs);
    berth_test_kit::run(program, args, &all, stdin)
}

/// A tar of a small root filesystem whose content depends on `seed`.
fn rootfs_tar(dir: &Path, seed: u64) -> std::path::PathBuf {
    let root = dir.join(format!("rootfs-{seed}"));
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/seed"), seed.to_string()).unwrap();
    std::fs::write(root.join("etc/data.bin"), noise(seed, 200_000)).unwrap();
    let tar = dir.join(format!("rootfs-{seed}.tar"));
    berth_test_kit::tar(&root, &tar);
    tar
}

/// Writes an OCI image layout with one image per platform, all tagged
/// `tag` through an index, and returns the layer digests.
fn oci_layout(dir: &Path, tag: &str, seed: u64, platforms: &[&str]) -> Vec<String> {
    let images: Vec<LayoutImage> = platforms
        .iter()
        .enumerate()
        .map(|(i, arch)| LayoutImage {
            arch: arch.to_string(),
            layer: std::fs::read(rootfs_tar(dir, seed + i as u64)).unwrap(),
            config: json!({"Env": [format!("SEED={seed}")]}),
        })
        .collect();
    write_oci_layout(dir, tag, &images)
}

/// The sha256 of every blob of a layout, gunzipped where it is gzip.
fn decompressed_digests(layout: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(layout.join("blobs/sha256")).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        if data.starts_with(&[0x1f, 0x8b]) {
            let gz = Command::new("gzip").arg("-dc").arg(&path).output().unwrap();
            assert!(gz.status.success());
            out.push(sha256(&gz.stdout));
        } else {
            out.push(sha256(&data));
        }
    }
    out
}

#[test]
fn docker_login_push_then_pull_gives_the_same_image() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    // A private Docker client configuration, so credentials stay in the test.
    let config = tmp.path().join("docker-config");
    std::fs::create_dir_all(&config).unwrap();
    let env = [("DOCKER_CONFIG", config.to_str().unwrap())];
    let docker = |args: &[&str]| run_with("docker", args, &env, None);

    let image = format!("{}/clients/docker-app:v1", server.addr);
    let tar = rootfs_tar(tmp.path(), 1);
    docker(&["import", tar.to_str().unwrap(), &image]);
    let id = docker(&["image", "inspect", "--format", "{{.Id}}", &image]);

    let denied = try_run("docker", &["push", &image], &env, None);
    assert!(!denied.status.success(), "an anonymous push was accepted");
    let wrong = try_run(
        "docker",
        &["login", "-u", "admin", "--password-stdin", &server.addr],
        &env,
        Some("wrong-password"),
    );
    assert!(
        !wrong.status.success(),
        "docker login accepted a wrong password"
    );
    let login = run_with(
        "docker",
        &["login", "-u", "admin", "--password-stdin", &server.addr],
        &env,
        Some(ADMIN_PASSWORD),
    );
    assert!(login.contains("Login Succeeded"), "{login}");

    let pushed = docker(&["push", &image]);
    // The same image in another repository: docker asks its token for pull
    // on the first one too, and mounts the layer instead of sending it.
    let copy = format!("{}/clients/docker-copy:v1", server.addr);
    docker(&["tag", &image, &copy]);
    let mounted = docker(&["push", &copy]);
    assert!(
        mounted.contains("Mounted from clients/docker-app"),
        "{mounted}"
    );
    docker(&["rmi", &copy]);
    docker(&["rmi", &image]);
    let pulled = docker(&["pull", &image]);
    assert!(pulled.contains("Downloaded newer image"), "{pulled}");
    assert_eq!(
        docker(&["image", "inspect", "--format", "{{.Id}}", &image]),
        id
    );
    // The digest docker reported is the one the registry serves for the tag.
    let digest = pushed
        .split_whitespace()
        .find(|w| w.starts_with("sha256:"))
        .expect("push reports a digest");
    let repo_digests = docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .RepoDigests}}",
        &image,
    ]);
    assert!(
        repo_digests.contains(digest),
        "{repo_digests} lacks {digest}"
    );
    docker(&["rmi", &image]);
    docker(&["logout", &server.addr]);
    // The project was created private: after logout the pull is refused.
    let anonymous = try_run("docker", &["pull", &image], &env, None);
    assert!(
        !anonymous.status.success(),
        "anonymous pull of a private project"
    );
}

#[test]
fn skopeo_copies_images_and_indexes_both_ways() {
    let server = Server::start();
    let creds = format!("admin:{ADMIN_PASSWORD}");
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let layers = oci_layout(&src, "v1", 10, &["amd64", "arm64"]);
    let dest = format!("docker://{}/clients/skopeo/multi:v1", server.addr);
    let tls = "--tls-verify=false";
    let (src_tls, dest_tls) = ("--src-tls-verify=false", "--dest-tls-verify=false");
    let bad = try_run(
        "skopeo",
        &[
            "copy",
            dest_tls,
            "--dest-creds",
            "admin:wrong-password",
            &format!("oci:{}:v1", src.display()),
            &dest,
        ],
        &[],
        None,
    );
    assert!(
        !bad.status.success(),
        "a push with wrong credentials was accepted"
    );
    run(
        "skopeo",
        &[
            "copy",
            dest_tls,
            "--dest-creds",
            &creds,
            "--multi-arch",
            "all",
            &format!("oci:{}:v1", src.display()),
            &dest,
        ],
    );
    // Also as Docker schema 2, which skopeo converts to.
    let v2s2 = format!("docker://{}/clients/skopeo/single:v2s2", server.addr);
    run(
        "skopeo",
        &[
            "copy",
            src_tls,
            dest_tls,
            "--src-creds",
            &creds,
            "--dest-creds",
            &creds,
            "--format",
            "v2s2",
            &dest,
            &v2s2,
        ],
    );
    let raw = run(
        "skopeo",
        &["inspect", "--raw", tls, "--creds", &creds, &v2s2],
    );
    assert!(
        raw.contains("application/vnd.docker.distribution.manifest.v2+json"),
        "{raw}"
    );

    let back = tmp.path().join("back");
    run(
        "skopeo",
        &[
            "copy",
            src_tls,
            "--src-creds",
            &creds,
            "--multi-arch",
            "all",
            &dest,
            &format!("oci:{}:v1", back.display()),
        ],
    );
    // skopeo gzips layers on the way to a registry: every original layer
    // must come back as some blob that decompresses to exactly its bytes.
    let returned = decompressed_digests(&back);
    for layer in &layers {
        assert!(
            returned.contains(layer),
            "layer {layer} did not come back intact"
        );
    }
    let tags = run(
        "skopeo",
        &[
            "list-tags",
            tls,
            "--creds",
            &creds,
            &format!("docker://{}/clients/skopeo/multi", server.addr),
        ],
    );
    assert!(tags.contains("\"v1\""), "{tags}");

    run("skopeo", &["delete", tls, "--creds", &creds, &v2s2]);
    let gone = try_run(
        "skopeo",
        &["inspect", "--raw", tls, "--creds", &creds, &v2s2],
        &[],
        None,
    );
    assert!(!gone.status.success(), "deleted manifest is still served");
}

#[test]
fn podman_login_push_then_pull_gives_the_same_image() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let tar = rootfs_tar(tmp.path(), 20);
    let authfile = tmp.path().join("auth.json");
    let env = [("REGISTRY_AUTH_FILE", authfile.to_str().unwrap())];
    let storage = berth_test_kit::storage_options(tmp.path());
    let base: Vec<&str> = storage.iter().map(String::as_str).collect();
    let podman = |args: &[&str]| {
        let all: Vec<&str> = base.iter().copied().chain(args.iter().copied()).collect();
        run_with("podman", &all, &env, None)
    };
    let image = format!("{}/clients/podman/app:v1", server.addr);
    let id = podman(&["import", tar.to_str().unwrap(), &image])
        .trim()
        .to_owned();
    let login: Vec<&str> = base
        .iter()
        .copied()
        .chain([
            "login",
            "--tls-verify=false",
            "-u",
            "admin",
            "--password-stdin",
            &server.addr,
        ])
        .collect();
    let wrong = try_run("podman", &login, &env, Some("wrong-password"));
    assert!(
        !wrong.status.success(),
        "podman login accepted a wrong password"
    );
    run_with("podman", &login, &env, Some(ADMIN_PASSWORD));
    podman(&["push", "--tls-verify=false", &image]);
    podman(&["rmi", "-a", "-f"]);
    assert_eq!(podman(&["images", "-q"]).trim(), "");
    podman(&["pull", "--tls-verify=false", &image]);
    let pulled = podman(&["image", "inspect", "--format", "{{.Id}}", &image]);
    assert_eq!(
        pulled.trim().trim_start_matches("sha256:"),
        id.trim_start_matches("sha256:")
    );
}

#[test]
fn buildah_builds_pushes_and_pushes_a_manifest_list() {
    let server = Server::start();
    let creds = format!("admin:{ADMIN_PASSWORD}");
    let tmp = tempfile::tempdir().unwrap();
    let storage = berth_test_kit::storage_options(tmp.path());
    let buildah = |args: &[&str]| {
        let mut all: Vec<&str> = storage.iter().map(String::as_str).collect();
        all.extend_from_slice(args);
        run("buildah", &all)
    };
    let file = tmp.path().join("hello.txt");
    std::fs::write(&file, noise(30, 50_000)).unwrap();
    let c = buildah(&["from", "scratch"]).trim().to_owned();
    buildah(&["copy", &c, file.to_str().unwrap(), "/hello.txt"]);
    buildah(&[
        "config",
        "--env",
        "GREETING=hello",
        "--entrypoint",
        "[\"/hello\"]",
        &c,
    ]);
    buildah(&["commit", &c, "built"]);
    let image = format!("docker://{}/clients/buildah/deep/name:v1", server.addr);
    buildah(&[
        "push",
        "--tls-verify=false",
        "--creds",
        &creds,
        "built",
        &image,
    ]);
    buildah(&["manifest", "create", "list"]);
    buildah(&[
        "manifest",
        "add",
        "--tls-verify=false",
        "--creds",
        &creds,
        "list",
        &image,
    ]);
    let list = format!("docker://{}/clients/buildah/list:v1", server.addr);
    buildah(&[
        "manifest",
        "push",
        "--all",
        "--tls-verify=false",
        "--creds",
        &creds,
        "list",
        &list,
    ]);
    buildah(&["rm", "-a"]);
    buildah(&["rmi", "-a", "-f"]);
    let pulled = format!("{}/clients/buildah/list:v1", server.addr);
    buildah(&["pull", "--tls-verify=false", "--creds", &creds, &pulled]);
    let inspect = buildah(&["inspect", "--type", "image", &pulled]);
    assert!(
        inspect.contains("GREETING=hello"),
        "config lost in the round trip"
    );
}
