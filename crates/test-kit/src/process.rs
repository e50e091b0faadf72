//! Running programs in tests: children killed on drop, commands whose
//! failure fails the test, and the few tools several tests drive.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// A child process, killed (by PID) and reaped on drop, also when a test
/// panics.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The standard output of a command that must have succeeded; otherwise a
/// panic naming `what`, with everything the command printed.
pub fn stdout_ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `program` with `args` and the extra environment `envs`, writing
/// `stdin` (if any) to its standard input; what it did and printed. A
/// program that cannot be started fails the test.
pub fn run(program: &str, args: &[&str], envs: &[(&str, &str)], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} could not be run ({e}); scripts/test installs it"));
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("wait")
}

/// The options that keep podman's or buildah's storage under `dir`
/// (`storage/` and `run/`), on the vfs driver.
pub fn storage_options(dir: &Path) -> Vec<String> {
    let path = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    vec![
        "--root".to_owned(),
        path("storage"),
        "--runroot".to_owned(),
        path("run"),
        "--storage-driver".to_owned(),
        "vfs".to_owned(),
    ]
}

/// [`run`], which must succeed: the standard output.
pub fn run_ok(program: &str, args: &[&str], envs: &[(&str, &str)], stdin: Option<&str>) -> String {
    stdout_ok(
        run(program, args, envs, stdin),
        &format!("{program} {args:?}"),
    )
}

/// Writes a tar of the directory `root` (its content, as `./...`) to `tar`.
pub fn tar(root: &Path, tar: &Path) {
    let (root, tar) = (root.to_str().unwrap(), tar.to_str().unwrap());
    run_ok("tar", &["-C", root, "-cf", tar, "."], &[], None);
}

/// HAProxy (Debian's, installed by scripts/test) on the configuration file
/// `config`, which binds `port` on 127.0.0.1, once it accepts connections
/// there; `None` when it exited first (the port was taken: try another).
pub fn haproxy(config: &Path, port: u16) -> Option<Killed> {
    let child = Command::new("haproxy")
        .arg("-f")
        .arg(config)
        .arg("-db")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("haproxy (scripts/test installs it)");
    let mut proxy = Killed(child);
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(10) {
        if proxy.0.try_wait().unwrap().is_some() {
            return None;
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(proxy);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    None
}

/// The Docker engine's command line with a client configuration of its own
/// (`DOCKER_CONFIG`), so that its logins stay in the test's directory.
pub struct Docker {
    config: PathBuf,
    /// The daemon's socket (`DOCKER_HOST`), when not the shared engine's.
    host: Option<String>,
}

impl Docker {
    /// A client keeping its configuration in `dir` (created).
    pub fn new(dir: &Path) -> Docker {
        std::fs::create_dir_all(dir).unwrap();
        Docker {
            config: dir.to_path_buf(),
            host: None,
        }
    }

    /// `docker <args>`, writing `stdin` (if any) to its input.
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut env = vec![("DOCKER_CONFIG", self.config.to_str().unwrap())];
        if let Some(host) = &self.host {
            env.push(("DOCKER_HOST", host));
        }
        run("docker", args, &env, stdin)
    }

    /// `docker <args>`, which must succeed; its standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        stdout_ok(self.run(args, None), &format!("docker {args:?}"))
    }

    /// `docker login` to `host` as `user`, which must succeed.
    pub fn login(&self, host: &str, user: &str, password: &str) -> String {
        let args = ["login", "-u", user, "--password-stdin", host];
        stdout_ok(self.run(&args, Some(password)), "docker login")
    }

    /// `docker <args>` started, not waited for: its output goes nowhere.
    pub fn spawn(&self, args: &[&str]) -> Child {
        let mut cmd = Command::new("docker");
        cmd.args(args).env("DOCKER_CONFIG", &self.config);
        if let Some(host) = &self.host {
            cmd.env("DOCKER_HOST", host);
        }
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker (scripts/test installs it)")
    }
}

/// A Docker daemon of the test's own, for daemon settings a test cannot
/// change on the shared engine (its `registry-mirrors`): its root, state,
/// socket and an empty `daemon.json` under a directory of the test's, no
/// networks, iptables left alone. Killed on drop.
pub struct Dockerd {
    child: Child,
    socket: PathBuf,
}

impl Dockerd {
    /// Starts `dockerd` in `dir` (created) with `args` added; waits until
    /// it answers.
    pub fn start(dir: &Path, args: &[&str]) -> Dockerd {
        std::fs::create_dir_all(dir).unwrap();
        let config = dir.join("daemon.json");
        std::fs::write(&config, "{}").unwrap();
        let socket = dir.join("docker.sock");
        let child = Command::new("dockerd")
            .arg("--config-file")
            .arg(&config)
            .arg("--data-root")
            .arg(dir.join("root"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .arg("--host")
            .arg(format!("unix://{}", socket.display()))
            .args(["--bridge=none", "--iptables=false", "--ip6tables=false"])
            .args(args)
            .stdout(std::fs::File::create(dir.join("dockerd.log")).unwrap())
            .stderr(std::fs::File::create(dir.join("dockerd.err")).unwrap())
            .spawn()
            .expect("dockerd (the Docker engine)");
        let mut d = Dockerd { child, socket };
        let client = d.client(&dir.join("probe"));
        for _ in 0..300 {
            if client.run(&["version"], None).status.success() {
                return d;
            }
            if d.child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let err = std::fs::read_to_string(dir.join("dockerd.err")).unwrap_or_default();
        panic!("dockerd did not start: {err}");
    }

    /// A client of this daemon, keeping its configuration in `dir`.
    pub fn client(&self, dir: &Path) -> Docker {
        let mut docker = Docker::new(dir);
        docker.host = Some(format!("unix://{}", self.socket.display()));
        docker
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // SIGTERM: the daemon stops its own containerd.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        for _ in 0..100 {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
