//! A real three-member etcd cluster (Debian's etcd-server) for tests, started
//! as child processes on 127.0.0.1 with ports retried until free, and killed
//! on drop: for berth-meta's etcd tests, the registry's cluster tests and
//! the benchmark.

use std::fs::File;
use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::random_u64;
use berth_meta::{EtcdConfig, EtcdKv};
use serde_json::{json, Value};

pub const MEMBERS: usize = 3;

/// Only to catch a hang; nothing is asserted about how long things take.
pub const HANG: Duration = Duration::from_secs(90);

pub async fn no_hang<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(HANG, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what} hung"),
    }
}

pub struct Member {
    name: String,
    client: u16,
    peer: u16,
    child: Option<Child>,
}

/// A running cluster; its members are killed when it is dropped.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub token: String,
    pub members: Vec<Member>,
    pub http: reqwest::Client,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

impl Cluster {
    pub async fn start() -> Cluster {
        let mut failures = Vec::new();
        for _ in 0..10 {
            // Below Linux's ephemeral range, so outgoing connections of
            // parallel tests cannot be holding these ports.
            let base = 12_000 + (random_u64() % 2_000) as u16 * 10;
            match Cluster::try_start(base).await {
                Ok(cluster) => return cluster,
                Err(why) => failures.push(why),
            }
        }
        panic!("could not start an etcd cluster:\n{}", failures.join("\n"));
    }

    pub async fn try_start(base: u16) -> Result<Cluster, String> {
        let token = format!("berth-test-{:x}", random_u64());
        let members = (0..MEMBERS)
            .map(|i| Member {
                name: format!("m{i}"),
                client: base + i as u16 * 2,
                peer: base + i as u16 * 2 + 1,
                child: None,
            })
            .collect();
        let mut cluster = Cluster {
            dir: tempfile::tempdir().unwrap(),
            token,
            members,
            http: berth_net::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .unwrap(),
        };
        for i in 0..MEMBERS {
            cluster.spawn(i);
        }
        // A member that cannot bind its ports exits; the caller then tries
        // other ports (the dropped cluster kills the rest).
        for i in 0..MEMBERS {
            cluster.wait_healthy(i).await?;
        }
        Ok(cluster)
    }

    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}.log", self.members[i].name))
    }

    pub fn spawn(&mut self, i: usize) {
        let initial: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect();
        let m = &self.members[i];
        let client = format!("http://127.0.0.1:{}", m.client);
        let peer = format!("http://127.0.0.1:{}", m.peer);
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .unwrap();
        let child = Command::new("etcd")
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(self.dir.path().join(&m.name))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial.join(",")])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &self.token])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("etcd (Debian package etcd-server) must be installed");
        self.members[i].child = Some(child);
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a killed member again on its old data directory.
    pub async fn restart(&mut self, i: usize) {
        self.spawn(i);
        if let Err(why) = self.wait_healthy(i).await {
            panic!("restarting member {i}: {why}");
        }
    }

    /// Polls `/health` until the member reports a leader.
    pub async fn wait_healthy(&mut self, i: usize) -> Result<(), String> {
        let url = format!("{}/health", self.endpoint(i));
        let started = Instant::now();
        loop {
            let exited = match self.members[i].child.as_mut() {
                Some(child) => child.try_wait().unwrap(),
                None => return Err(format!("member {i} is not running")),
            };
            if let Some(status) = exited {
                return Err(format!(
                    "member {i} exited ({status}): {}",
                    self.log_tail(i)
                ));
            }
            if let Ok(r) = self.http.get(&url).send().await {
                if let Ok(v) = r.json::<Value>().await {
                    if v["health"] == "true" {
                        return Ok(());
                    }
                }
            }
            if started.elapsed() > HANG {
                return Err(format!(
                    "member {i} never became healthy: {}",
                    self.log_tail(i)
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn log_tail(&self, i: usize) -> String {
        let log = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    }

    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].client)
    }

    /// An EtcdKv over the members in `order`, with a prefix of its own.
    pub fn kv(&self, order: &[usize], prefix: &str) -> EtcdKv {
        let mut config = EtcdConfig::new(order.iter().map(|&i| self.endpoint(i)));
        config.prefix = prefix.to_owned();
        EtcdKv::new(config).unwrap()
    }

    /// A direct gateway call, for setting clusters up.
    pub async fn gateway(&self, i: usize, path: &str, body: Value) -> Value {
        let r = self
            .http
            .post(format!("{}/v3/{path}", self.endpoint(i)))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }

    /// The index of the current leader, as member `asking` sees it.
    pub async fn leader(&self, asking: usize) -> usize {
        let status = self.gateway(asking, "maintenance/status", json!({})).await;
        for i in 0..MEMBERS {
            if self.members[i].child.is_none() {
                continue;
            }
            let own = self.gateway(i, "maintenance/status", json!({})).await;
            if own["header"]["member_id"] == status["leader"] {
                return i;
            }
        }
        panic!("no running member is the leader: {status}");
    }
}
