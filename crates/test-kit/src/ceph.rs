//! A throwaway single-node Ceph for tests, from Debian's packages
//! (`ceph-mon ceph-mgr ceph-osd radosgw ceph-common`, installed by
//! scripts/test): one mon, one mgr with no modules, one OSD on memstore (or
//! BlueStore on a sparse file, for data that should not live in memory),
//! radosgw on 127.0.0.1, pool size 1, no cephx, and an S3 user. Everything
//! lives in a temporary directory; every daemon runs in the foreground as
//! our child and is killed by PID on drop.

use crate::{random_u64, stdout_ok};
use berth_storage::{S3BlobStore, S3Config};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BUCKET: &str = "berth";
pub const ACCESS_KEY: &str = "BERTHTESTKEY";
pub const SECRET_KEY: &str = "berth-test-secret-key";

/// A CephFS on a [`Ceph`], mounted several times with ceph-fuse. Dropped
/// mounts first: the memstore OSD holds the data, and a mount with dirty
/// data whose OSD is gone cannot be unmounted.
pub struct CephFs {
    /// Mount points and their ceph-fuse processes.
    pub mounts: Vec<(PathBuf, Child)>,
    pub ceph: Ceph,
}

impl CephFs {
    pub fn mount(&self, i: usize) -> &Path {
        &self.mounts[i].0
    }
}

impl Drop for CephFs {
    fn drop(&mut self) {
        for (point, child) in &mut self.mounts {
            // A clean unmount ends ceph-fuse; if it does not, kill it (by
            // PID) and detach the dead mount.
            let unmounted = Command::new("umount")
                .arg(&*point)
                .status()
                .is_ok_and(|s| s.success());
            if !unmounted {
                let _ = child.kill();
                let _ = Command::new("umount").arg("-l").arg(&*point).status();
            }
            let _ = child.wait();
        }
    }
}

/// Where the OSD keeps objects.
#[derive(Clone, Copy, Debug)]
pub enum Objectstore {
    /// In memory, at most 4 GiB: fast, for small data.
    Memstore,
    /// BlueStore on a sparse file of `gib` GiB in the temporary directory.
    Bluestore { gib: u64 },
}

pub struct Ceph {
    pub dir: tempfile::TempDir,
    pub rgw_port: u16,
    children: Vec<Child>,
    rgw: Option<Child>,
}

impl Drop for Ceph {
    fn drop(&mut self) {
        if let Some(mut c) = self.rgw.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for c in self.children.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn uuid() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .unwrap()
        .trim()
        .to_owned()
}

fn free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

impl Ceph {
    /// A running cluster. An OSD that does not come up (seen once under
    /// load: its first boot refused by the monitor) is retried with a fresh
    /// cluster, like a taken port.
    pub async fn start() -> Ceph {
        Ceph::start_on(Objectstore::Memstore).await
    }

    pub async fn start_on(store: Objectstore) -> Ceph {
        let mut failures = Vec::new();
        for _ in 0..10 {
            let base = 17_000 + (random_u64() % 2_000) as u16 * 2;
            if free(base) && free(base + 1) {
                match Ceph::start_at(base, base + 1, store).await {
                    Ok(ceph) => return ceph,
                    Err(why) => failures.push(why),
                }
            }
            if failures.len() >= 3 {
                break;
            }
        }
        panic!("could not start ceph:\n{}", failures.join("\n"));
    }

    /// Polls `ceph <args>` until `ready` accepts its output, for 30 s at
    /// most; an error naming `what`, with the end of its `log`, when the
    /// daemon `child` exited first or was never ready.
    fn wait_for(
        &self,
        child: &mut Child,
        what: &str,
        log: &str,
        args: &[&str],
        ready: impl Fn(&Output) -> bool,
    ) -> Result<(), String> {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("{what} exited ({status}): {}", self.log(log)));
            }
            let out = Command::new("ceph")
                .arg("-c")
                .arg(self.conf())
                .args(args)
                .args(["--connect-timeout", "5"])
                .output()
                .map_err(|e| e.to_string())?;
            if ready(&out) {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err(format!(
                    "{what} was not ready: {}{} {}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr),
                    self.log(log)
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until the OSD is up and in; an error when it exited first.
    fn wait_osd_up(&self, osd: &mut Child) -> Result<(), String> {
        let args = ["osd", "stat", "--format", "json"];
        self.wait_for(osd, "the OSD", "osd.0.log", &args, |out| {
            String::from_utf8_lossy(&out.stdout).contains("\"num_up_osds\":1")
        })
    }

    /// Waits until the monitor answers a command; an error when it exited
    /// or stayed silent for 30 s.
    fn wait_mon(&self, mon: &mut Child) -> Result<(), String> {
        self.wait_for(mon, "the monitor", "mon.a.log", &["mon", "stat"], |out| {
            out.status.success()
        })
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("ceph.conf")
    }

    fn daemon(&self, program: &str, args: &[&str]) -> Child {
        let log = std::fs::File::create(self.dir.path().join("log").join(format!("{program}.out")))
            .unwrap();
        Command::new(program)
            .args(args)
            .arg("-f")
            .arg("-c")
            .arg(self.conf())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{program} (scripts/test installs Ceph): {e}"))
    }

    fn cli(&self, program: &str, args: &[&str]) -> String {
        let run = || {
            let mut command = Command::new(program);
            command.arg("-c").arg(self.conf()).args(args);
            if program == "ceph" {
                // Fail in a minute, not the CLI's default five.
                command.args(["--connect-timeout", "60"]);
            }
            command
                .output()
                .unwrap_or_else(|e| panic!("{program}: {e}"))
        };
        let mut out = run();
        // The CLI can hit the monitor's "no monmap yet" race too ("problem
        // getting command descriptions"); asking again works.
        for _ in 0..5 {
            if out.status.success()
                || !String::from_utf8_lossy(&out.stderr).contains("problem getting command")
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
            out = run();
        }
        stdout_ok(out, &format!("{program} {args:?}"))
    }

    async fn start_at(mon_port: u16, rgw_port: u16, store: Objectstore) -> Result<Ceph, String> {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for sub in ["run", "log", "mon", "osd/ceph-0", "mds/ceph-a", "rgw"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let fsid = uuid();
        let p = |s: &str| d.join(s).display().to_string();
        std::fs::write(
            d.join("ceph.conf"),
            format!(
                "[global]
fsid = {fsid}
mon host = v1:127.0.0.1:{mon_port}
public addr = 127.0.0.1
auth cluster required = none
auth service required = none
auth client required = none
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon max pg per osd = 1000
osd pool default pg autoscale mode = off
osd pool default pg num = 8
osd pool default pgp num = 8
mon warn on pool no redundancy = false
# The monitor stops when its disk has less than 5% free: on a big shared
# disk that is gigabytes, and a neighbouring test writing a 5 GiB blob
# crossed it in CI. A test cluster runs until the disk is really full.
mon data avail crit = 0
mon data avail warn = 0
paxos propose interval = 0.1
osd crush chooseleaf type = 0
osd class update on start = false
{objectstore}
mgr initial modules =
ms bind ipv6 = false
run dir = {run}
admin socket = {run}/$name.asok
log file = {log}/$name.log
pid file = {run}/$name.pid
mon data = {mon}/$cluster-$id
osd data = {osd}/$cluster-$id
mds data = {mds}/$cluster-$id
# A file renamed on one CephFS client is seen by another after the MDS
# flushes its journal, on its tick (5 s by default).
mds tick interval = 1
[client.admin]
# Several ceph-fuse mounts run as client.admin: one socket and log each.
admin socket = {run}/$name.$pid.asok
log file = {log}/$name.$pid.log
[client.rgw.berth]
rgw frontends = beast endpoint=127.0.0.1:{rgw_port}
rgw data = {rgw}
rgw gc obj min wait = 10
rgw gc processor period = 5
",
                run = p("run"),
                log = p("log"),
                mon = p("mon"),
                osd = p("osd"),
                mds = p("mds"),
                rgw = p("rgw"),
                objectstore = match store {
                    Objectstore::Memstore =>
                        "osd objectstore = memstore\nmemstore device bytes = 4294967296".to_owned(),
                    // A sparse file in the temporary directory; only what
                    // is written takes disk space.
                    Objectstore::Bluestore { gib } => format!(
                        "osd objectstore = bluestore\nbluestore block create = true\n\
                         bluestore block size = {}\nbluestore fsck on mkfs = false\n\
                         bluestore fsck on mount = false\nosd memory target = 1073741824\n\
                         bluestore cache autotune = false\nbluestore cache size = 268435456",
                        gib << 30
                    ),
                },
            ),
        )
        .unwrap();
        let mut ceph = Ceph {
            dir,
            rgw_port,
            children: Vec::new(),
            rgw: None,
        };
        let monmap = ceph.dir.path().join("monmap");
        stdout_ok(
            Command::new("monmaptool")
                .args(["--create", "--add", "a"])
                .arg(format!("v1:127.0.0.1:{mon_port}"))
                .args(["--fsid", &fsid])
                .arg(&monmap)
                .output()
                .expect("monmaptool (scripts/test installs Ceph)"),
            "monmaptool",
        );
        stdout_ok(
            Command::new("ceph-mon")
                .args(["--mkfs", "-i", "a", "--monmap"])
                .arg(&monmap)
                .arg("-c")
                .arg(ceph.conf())
                .output()
                .unwrap(),
            "ceph-mon --mkfs",
        );
        let mut mon = ceph.daemon("ceph-mon", &["-i", "a"]);
        // A monitor that never answers (seen once in CI: every command
        // hunted for it until the CLI's 300 s timeout) is a failed start,
        // retried with a fresh cluster on other ports.
        let answered = ceph.wait_mon(&mut mon);
        ceph.children.push(mon);
        answered?;
        let mgr = ceph.daemon("ceph-mgr", &["-i", "x"]);
        ceph.children.push(mgr);
        let osd_uuid = uuid();
        let id = ceph.cli("ceph", &["osd", "create", &osd_uuid]);
        let id = id.trim().to_owned();
        stdout_ok(
            Command::new("ceph-osd")
                .args(["-i", &id, "--mkfs", "--osd-uuid", &osd_uuid, "-c"])
                .arg(ceph.conf())
                .output()
                .unwrap(),
            "ceph-osd --mkfs",
        );
        // The OSD's first boot is refused by the monitor about half the
        // time on this kind of machine ("wrong fsid": it asked before it had
        // the monmap) and the OSD exits; starting it again works.
        let mut osd = ceph.daemon("ceph-osd", &["-i", &id]);
        for attempt in 0.. {
            match ceph.wait_osd_up(&mut osd) {
                Ok(()) => break,
                Err(why) if attempt >= 3 => {
                    ceph.children.push(osd);
                    return Err(why);
                }
                Err(_) => {
                    let _ = osd.kill();
                    let _ = osd.wait();
                    osd = ceph.daemon("ceph-osd", &["-i", &id]);
                }
            }
        }
        ceph.children.push(osd);
        ceph.start_rgw();
        ceph.cli(
            "radosgw-admin",
            &[
                "user",
                "create",
                "--uid=berth",
                "--display-name=berth",
                &format!("--access-key={ACCESS_KEY}"),
                &format!("--secret-key={SECRET_KEY}"),
            ],
        );
        S3BlobStore::new(&ceph.config())
            .unwrap()
            .client()
            .create_bucket()
            .await
            .unwrap();
        Ok(ceph)
    }

    /// Adds an MDS and a filesystem, and mounts it `mounts` times with
    /// ceph-fuse (the kernel client cannot be loaded in this sandbox), each
    /// mount a separate client of the same filesystem, like separate nodes.
    pub fn cephfs(self, mounts: usize) -> CephFs {
        let mut ceph = self;
        let mds = ceph.daemon("ceph-mds", &["-i", "a"]);
        ceph.children.push(mds);
        ceph.cli("ceph", &["osd", "pool", "create", "cephfs_metadata", "8"]);
        ceph.cli("ceph", &["osd", "pool", "create", "cephfs_data", "8"]);
        ceph.cli(
            "ceph",
            &["fs", "new", "cephfs", "cephfs_metadata", "cephfs_data"],
        );
        let started = Instant::now();
        while !ceph.cli("ceph", &["mds", "stat"]).contains("up:active") {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the MDS did not become active: {}",
                ceph.log("mds.a.log")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let mut fs = CephFs {
            mounts: Vec::new(),
            ceph,
        };
        for i in 0..mounts {
            let point = fs.ceph.dir.path().join(format!("mnt{i}"));
            std::fs::create_dir_all(&point).unwrap();
            let log =
                std::fs::File::create(fs.ceph.dir.path().join("log").join(format!("fuse{i}.out")))
                    .unwrap();
            let child = Command::new("ceph-fuse")
                .arg("-f")
                .arg("-c")
                .arg(fs.ceph.conf())
                .arg(&point)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("ceph-fuse (scripts/test installs it): {e}"));
            fs.mounts.push((point.clone(), child));
            let needle = format!(" {} fuse.ceph-fuse ", point.display());
            let started = Instant::now();
            while !std::fs::read_to_string("/proc/mounts")
                .unwrap_or_default()
                .contains(&needle)
            {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "ceph-fuse did not mount {}",
                    point.display()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        fs
    }

    /// Starts radosgw and waits until it answers.
    pub fn start_rgw(&mut self) {
        let rgw = self.daemon("radosgw", &["-n", "client.rgw.berth"]);
        self.rgw = Some(rgw);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.rgw_port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "radosgw did not start: {}",
                self.log("client.rgw.berth.log")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops radosgw (SIGKILL, by PID), leaving the cluster up.
    pub fn stop_rgw(&mut self) {
        if let Some(mut c) = self.rgw.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self, name: &str) -> String {
        let text =
            std::fs::read_to_string(self.dir.path().join("log").join(name)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    pub fn config(&self) -> S3Config {
        let mut c = S3Config::new(&format!("http://127.0.0.1:{}", self.rgw_port), BUCKET);
        c.access_key_id = Some(ACCESS_KEY.into());
        c.secret_access_key = Some(SECRET_KEY.into());
        c.timeout_secs = 20;
        c
    }

    /// The `[storage]` section of a berth configuration on this RGW,
    /// followed by `extra` (more keys of that section).
    pub fn storage_toml(&self, extra: &str) -> String {
        format!(
            "[storage]\nbackend = \"s3\"\nendpoint = \"http://127.0.0.1:{}\"\nbucket = \"{BUCKET}\"\n\
             access_key_id = \"{ACCESS_KEY}\"\nsecret_access_key = \"{SECRET_KEY}\"\n{extra}",
            self.rgw_port
        )
    }

    pub fn node(&self) -> S3BlobStore {
        S3BlobStore::new(&self.config()).unwrap()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}
