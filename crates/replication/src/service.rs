//! [`Replication`]: endpoints and policies (records in `Kv`), and the
//! executions a trigger starts: planned here into tasks, run by the
//! workers (`worker`).

use crate::crypto::SecretKey;
use crate::error::ReplError;
use crate::keys;
use crate::model::*;
use crate::side::{Local, Remote, Side};
use berth_core::{Clock, Kv, Locks, Registry, SystemClock, Txn, Versioned};
use berth_oci::{Digest, Reference, RepoName};
use berth_registry_client::{AuthKind, Client, Credentials, TlsVerify};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How replication runs (the `[replication]` section).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Tasks at once on this node, all executions together.
    pub workers: usize,
    /// How often workers look for pending tasks.
    pub poll_interval: Duration,
    /// The longest one attempt of a task may take.
    pub task_timeout: Duration,
    /// Attempts of a task before it fails.
    pub attempts: u32,
    /// The wait after the first failed attempt, doubled after each.
    pub backoff: Duration,
    /// Executions kept per policy.
    pub keep_executions: usize,
    /// Where CA certificates of endpoints are written for the client.
    pub work_dir: PathBuf,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            workers: 4,
            poll_interval: Duration::from_secs(1),
            task_timeout: Duration::from_secs(3600),
            attempts: 3,
            backoff: Duration::from_secs(2),
            keep_executions: 50,
            work_dir: std::env::temp_dir(),
        }
    }
}

/// A policy's source and destination.
pub(crate) type Sides = (Box<dyn Side>, Box<dyn Side>);

/// Replication, shared by the API and the background workers.
pub struct Replication {
    pub(crate) kv: Arc<dyn Kv>,
    pub(crate) registry: Registry,
    pub(crate) locks: Arc<dyn Locks>,
    pub(crate) node: String,
    key: Option<Arc<SecretKey>>,
    pub(crate) settings: Settings,
    pub(crate) clock: Arc<dyn Clock>,
    /// Task keys running on this node.
    pub(crate) running: Mutex<HashSet<String>>,
    /// Wakes this node's scheduler before its next tick: a task of this
    /// node ended, or an execution was created here, so the next pending
    /// task starts at once instead of on the tick.
    pub(crate) wake: tokio::sync::Notify,
}

impl std::fmt::Debug for Replication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replication")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// An execution with its tasks.
#[derive(Clone, Debug, Serialize)]
pub struct ExecutionDetail {
    #[serde(flatten)]
    pub execution: Execution,
    pub counts: BTreeMap<String, u32>,
    pub bytes: u64,
    pub task_list: Vec<Task>,
}

impl Replication {
    /// `key` seals endpoint secrets; without one, endpoints cannot have
    /// secrets (refused with a clear error).
    pub fn new(
        kv: Arc<dyn Kv>,
        registry: Registry,
        locks: Arc<dyn Locks>,
        node: impl Into<String>,
        key: Option<SecretKey>,
        settings: Settings,
    ) -> Replication {
        Replication {
            kv,
            registry,
            locks,
            node: node.into(),
            key: key.map(Arc::new),
            settings,
            clock: Arc::new(SystemClock),
            running: Mutex::default(),
            wake: tokio::sync::Notify::new(),
        }
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    pub(crate) async fn read<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<(T, Versioned)>, ReplError> {
        match self.kv.get(key).await? {
            Some(v) => Ok(Some((serde_json::from_slice(&v.value)?, v))),
            None => Ok(None),
        }
    }

    pub(crate) async fn scan_all<T: DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, T, Versioned)>, ReplError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.kv.scan(prefix, after.as_deref(), 500).await?;
            let n = page.len();
            for (k, v) in page {
                let value = serde_json::from_slice(&v.value)?;
                after = Some(k.clone());
                out.push((k, value, v));
            }
            if n < 500 {
                return Ok(out);
            }
        }
    }

    // Endpoints.

    pub async fn endpoints(&self) -> Result<Vec<EndpointView>, ReplError> {
        let all: Vec<(String, Endpoint, Versioned)> = self.scan_all(keys::ENDPOINT_PREFIX).await?;
        Ok(all.into_iter().map(|(_, e, _)| e.public()).collect())
    }

    pub async fn endpoint(&self, name: &str) -> Result<EndpointView, ReplError> {
        Ok(self.endpoint_record(name).await?.0.public())
    }

    async fn endpoint_record(&self, name: &str) -> Result<(Endpoint, Versioned), ReplError> {
        self.read(&keys::endpoint(name))
            .await?
            .ok_or_else(|| ReplError::not_found(format!("endpoint {name} not found")))
    }

    fn seal(&self, name: &str, secret: &str) -> Result<String, ReplError> {
        let key = self.key.as_ref().ok_or_else(|| {
            ReplError::invalid(
                "endpoint secrets need a key: set [replication] secret_key_file (required on etcd)",
            )
        })?;
        key.seal(&keys::endpoint(name), secret)
            .map_err(ReplError::internal)
    }

    fn check_endpoint(input: &EndpointInput) -> Result<(), ReplError> {
        check_name(&input.name).map_err(ReplError::invalid)?;
        let url = input.url.trim_end_matches('/');
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or_else(|| {
                ReplError::invalid("the endpoint URL must start with http:// or https://")
            })?;
        if rest.is_empty() || rest.contains('/') {
            return Err(ReplError::invalid(
                "the endpoint URL is scheme://host[:port], without a path",
            ));
        }
        Ok(())
    }

    pub async fn create_endpoint(&self, input: EndpointInput) -> Result<EndpointView, ReplError> {
        Self::check_endpoint(&input)?;
        let sealed = match input.secret.as_deref() {
            Some(s) if !s.is_empty() => Some(self.seal(&input.name, s)?),
            _ => None,
        };
        let record = input.into_record(sealed, self.now_ms());
        let key = keys::endpoint(&record.name);
        self.create(&key, &record, || format!("endpoint {}", record.name))
            .await?;
        Ok(record.public())
    }

    /// Changes an endpoint (its name stays); an absent secret keeps the
    /// stored one, an empty one removes it.
    pub async fn update_endpoint(
        &self,
        name: &str,
        mut input: EndpointInput,
    ) -> Result<EndpointView, ReplError> {
        input.name = name.to_owned();
        Self::check_endpoint(&input)?;
        let (old, seen) = self.endpoint_record(name).await?;
        let sealed = match input.secret.as_deref() {
            None => old.sealed_secret.clone(),
            Some("") => None,
            Some(s) => Some(self.seal(name, s)?),
        };
        let record = input.into_record(sealed, old.created_ms);
        if !self
            .write_if(&keys::endpoint(name), Some(&seen), &record)
            .await?
        {
            return Err(ReplError::conflict(
                "the endpoint changed meanwhile; try again",
            ));
        }
        Ok(record.public())
    }

    pub async fn delete_endpoint(&self, name: &str) -> Result<(), ReplError> {
        self.endpoint_record(name).await?;
        let users: Vec<String> = self
            .policies()
            .await?
            .into_iter()
            .filter(|p| p.endpoint == name)
            .map(|p| p.name)
            .collect();
        if !users.is_empty() {
            return Err(ReplError::conflict(format!(
                "endpoint {name} is used by policies {}",
                users.join(", ")
            )));
        }
        self.kv.delete(&keys::endpoint(name)).await?;
        Ok(())
    }

    /// The registry client of an endpoint, its secret opened.
    /// A client of the endpoint `name`, with its secret opened, and the
    /// endpoint as shown (for the proxy cache, which pulls through
    /// endpoints).
    pub async fn connect(&self, name: &str) -> Result<(EndpointView, Client), ReplError> {
        let (e, _) = self.endpoint_record(name).await?;
        let client = self.client(&e)?;
        Ok((e.public(), client))
    }

    pub(crate) fn client(&self, e: &Endpoint) -> Result<Client, ReplError> {
        let mut endpoint = berth_registry_client::Endpoint::new(e.url.clone());
        if let Some(user) = &e.username {
            let secret = match &e.sealed_secret {
                Some(sealed) => {
                    let key = self.key.as_ref().ok_or_else(|| {
                        ReplError::invalid(
                            "the endpoint has a secret but [replication] has no key to open it",
                        )
                    })?;
                    key.open(&keys::endpoint(&e.name), sealed)
                        .map_err(ReplError::invalid)?
                }
                None => String::new(),
            };
            endpoint = endpoint.with_credentials(Credentials::new(user.clone(), secret));
        }
        if e.tls.insecure {
            endpoint = endpoint.with_tls(TlsVerify::SkipVerification);
        } else if let Some(pem) = &e.tls.ca_pem {
            let digest = Digest::sha256_of(pem.as_bytes());
            let path = self
                .settings
                .work_dir
                .join(format!("replication-ca-{}.pem", &digest.encoded()[..16]));
            if !path.exists() {
                std::fs::write(&path, pem)
                    .map_err(|e| ReplError::internal(format!("writing {}: {e}", path.display())))?;
            }
            endpoint = endpoint.with_tls(TlsVerify::CaFile(path));
        }
        Client::new(&endpoint)
            .map_err(|err| ReplError::invalid(format!("endpoint {}: {err}", e.name)))
    }

    /// Pings the endpoint with its credentials: `Ok` with what it said.
    pub async fn test_endpoint(&self, name: &str) -> Result<serde_json::Value, ReplError> {
        let (e, _) = self.endpoint_record(name).await?;
        let client = self.client(&e)?;
        match client.ping().await {
            Ok(p) => {
                let (auth, realm) = match p.auth {
                    AuthKind::Anonymous => ("anonymous", None),
                    AuthKind::Basic => ("basic", None),
                    AuthKind::Bearer { realm } => ("bearer", Some(realm)),
                };
                Ok(serde_json::json!({
                    "ok": true,
                    "auth": auth,
                    "realm": realm,
                    "api_version": p.api_version,
                }))
            }
            Err(err) => Ok(serde_json::json!({"ok": false, "message": err.to_string()})),
        }
    }

    // Policies.

    pub async fn policies(&self) -> Result<Vec<Policy>, ReplError> {
        let all: Vec<(String, Policy, Versioned)> = self.scan_all(keys::POLICY_PREFIX).await?;
        Ok(all.into_iter().map(|(_, p, _)| p).collect())
    }

    pub async fn policy(&self, name: &str) -> Result<Policy, ReplError> {
        Ok(self.policy_record(name).await?.0)
    }

    async fn policy_record(&self, name: &str) -> Result<(Policy, Versioned), ReplError> {
        self.read(&keys::policy(name))
            .await?
            .ok_or_else(|| ReplError::not_found(format!("policy {name} not found")))
    }

    async fn check_policy(&self, p: &Policy) -> Result<(), ReplError> {
        p.validate().map_err(ReplError::invalid)?;
        if self.kv.get(&keys::endpoint(&p.endpoint)).await?.is_none() {
            return Err(ReplError::invalid(format!(
                "endpoint {} does not exist",
                p.endpoint
            )));
        }
        Ok(())
    }

    pub async fn create_policy(&self, p: Policy) -> Result<Policy, ReplError> {
        self.check_policy(&p).await?;
        let key = keys::policy(&p.name);
        self.create(&key, &p, || format!("policy {}", p.name))
            .await?;
        Ok(p)
    }

    /// Writes `value` at `key` unless something is there: a conflict
    /// naming `what` then.
    async fn create<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        what: impl FnOnce() -> String,
    ) -> Result<(), ReplError> {
        if !self.write_if(key, None, value).await? {
            return Err(ReplError::conflict(format!("{} already exists", what())));
        }
        Ok(())
    }

    /// Writes `value` at `key` if the key is still as `seen` (absent for
    /// `None`); `false` where it changed meanwhile.
    async fn write_if<T: Serialize>(
        &self,
        key: &str,
        seen: Option<&Versioned>,
        value: &T,
    ) -> Result<bool, ReplError> {
        let txn = Txn::new()
            .if_unchanged(key, seen)
            .put(key, serde_json::to_vec(value)?);
        Ok(self.kv.commit(txn).await?)
    }

    pub async fn update_policy(&self, name: &str, mut p: Policy) -> Result<Policy, ReplError> {
        p.name = name.to_owned();
        self.check_policy(&p).await?;
        let (_, seen) = self.policy_record(name).await?;
        if !self.write_if(&keys::policy(name), Some(&seen), &p).await? {
            return Err(ReplError::conflict(
                "the policy changed meanwhile; try again",
            ));
        }
        Ok(p)
    }

    /// Deletes a policy; its running executions are stopped, and its
    /// history goes with it.
    pub async fn delete_policy(&self, name: &str) -> Result<(), ReplError> {
        self.policy_record(name).await?;
        for e in self.executions(Some(name)).await? {
            if !e.status.is_final() {
                self.stop(&e.id).await?;
            }
        }
        self.kv
            .commit(
                Txn::new()
                    .delete(keys::policy(name))
                    .delete(keys::cron(name)),
            )
            .await?;
        Ok(())
    }

    // Executions.

    /// Executions, newest first (of one policy when given).
    pub async fn executions(&self, policy: Option<&str>) -> Result<Vec<Execution>, ReplError> {
        let all: Vec<(String, Execution, Versioned)> = self.scan_all(keys::EXEC_PREFIX).await?;
        let mut out: Vec<Execution> = all
            .into_iter()
            .map(|(_, e, _)| e)
            .filter(|e| policy.is_none_or(|p| e.policy == p))
            .collect();
        out.reverse();
        Ok(out)
    }

    pub async fn execution(&self, id: &str) -> Result<ExecutionDetail, ReplError> {
        let (execution, _) = self
            .read::<Execution>(&keys::execution(id))
            .await?
            .ok_or_else(|| ReplError::not_found(format!("execution {id} not found")))?;
        let tasks = self.tasks(id).await?;
        let mut counts = BTreeMap::new();
        let mut bytes = 0;
        for t in &tasks {
            let status = serde_json::to_value(t.status)?;
            *counts
                .entry(status.as_str().unwrap_or_default().to_owned())
                .or_insert(0) += 1;
            bytes += t.bytes;
        }
        Ok(ExecutionDetail {
            execution,
            counts,
            bytes,
            task_list: tasks,
        })
    }

    pub(crate) async fn tasks(&self, exec: &str) -> Result<Vec<Task>, ReplError> {
        let all: Vec<(String, Task, Versioned)> = self.scan_all(&keys::task_prefix(exec)).await?;
        Ok(all.into_iter().map(|(_, t, _)| t).collect())
    }

    /// Stops an execution: pending tasks will not start, running ones are
    /// cancelled between two chunks by the node running them.
    pub async fn stop(&self, id: &str) -> Result<Execution, ReplError> {
        let key = keys::execution(id);
        loop {
            let (mut e, seen) = self
                .read::<Execution>(&key)
                .await?
                .ok_or_else(|| ReplError::not_found(format!("execution {id} not found")))?;
            if e.status.is_final() || e.stop_requested {
                return Ok(e);
            }
            e.stop_requested = true;
            if self.write_if(&key, Some(&seen), &e).await? {
                return Ok(e);
            }
        }
    }

    /// Starts an execution of policy `name` now: lists what to copy and
    /// records one task per artifact. Disabled policies run only by hand.
    pub async fn run(&self, name: &str, trigger: Trigger) -> Result<Execution, ReplError> {
        let policy = self.policy(name).await?;
        if !policy.enabled && trigger != Trigger::Manual {
            return Err(ReplError::conflict(format!("policy {name} is disabled")));
        }
        let (endpoint, _) = self.endpoint_record(&policy.endpoint).await?;
        let planned = self.plan(&policy, &endpoint).await;
        let (tasks, message) = match planned {
            Ok(t) => (t, None),
            Err(e) => (Vec::new(), Some(e)),
        };
        self.record_execution(&policy, trigger, tasks, message)
            .await
    }

    /// Records an execution with `tasks` (given with seq 0: numbered here).
    pub(crate) async fn record_execution(
        &self,
        policy: &Policy,
        trigger: Trigger,
        mut tasks: Vec<Task>,
        message: Option<String>,
    ) -> Result<Execution, ReplError> {
        let now = self.now_ms();
        let id = format!(
            "{now:015}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        for (i, t) in tasks.iter_mut().enumerate() {
            t.execution = id.clone();
            t.seq = i as u32;
        }
        let status = match (&message, tasks.is_empty()) {
            (Some(_), _) => Status::Failed,
            (None, true) => Status::Succeeded,
            (None, false) => Status::Running,
        };
        let execution = Execution {
            id: id.clone(),
            policy: policy.name.clone(),
            trigger,
            status,
            stop_requested: false,
            tasks: tasks.len() as u32,
            started_ms: now,
            finished_ms: status.is_final().then_some(now),
            message,
        };
        for chunk in tasks.chunks(100) {
            let mut txn = Txn::new();
            for t in chunk {
                txn = txn.put(keys::task(&id, t.seq), serde_json::to_vec(t)?);
            }
            self.kv.commit(txn).await?;
        }
        let mut txn = Txn::new().put(keys::execution(&id), serde_json::to_vec(&execution)?);
        if !status.is_final() {
            txn = txn.put(keys::active(&id), Vec::new());
        }
        self.kv.commit(txn).await?;
        if status.is_final() {
            self.prune(&policy.name).await?;
        } else {
            self.wake.notify_one();
        }
        Ok(execution)
    }

    /// The source and destination of a policy.
    pub(crate) fn sides(&self, policy: &Policy, endpoint: &Endpoint) -> Result<Sides, ReplError> {
        let remote: Box<dyn Side> = Box::new(Remote(self.client(endpoint)?));
        let local: Box<dyn Side> = Box::new(Local(self.registry.clone()));
        Ok(match policy.direction {
            Direction::Push => (local, remote),
            Direction::Pull => (remote, local),
        })
    }

    /// The destination name of source repository `repo`.
    pub(crate) fn destination(policy: &Policy, endpoint: &Endpoint, repo: &str) -> String {
        let mapped = policy.namespace.map(repo);
        match policy.direction {
            Direction::Push => endpoint.remote_name(&mapped),
            Direction::Pull => mapped
                .strip_prefix("library/")
                .filter(|_| endpoint.kind == EndpointKind::DockerHub)
                .map(str::to_owned)
                .unwrap_or(mapped),
        }
    }

    /// One task per artifact the filters select: tagged manifests of the
    /// matching repositories, their tags grouped by digest.
    async fn plan(&self, policy: &Policy, endpoint: &Endpoint) -> Result<Vec<Task>, String> {
        let (src, _) = self.sides(policy, endpoint).map_err(|e| e.message)?;
        let repos = src
            .repositories()
            .await
            .map_err(|e| format!("listing repositories: {e}"))?;
        let mut tasks = Vec::new();
        for name in repos {
            if !policy.filters.repo_matches(&name) {
                continue;
            }
            let Some(repo) = RepoName::parse(&name) else {
                continue;
            };
            let mut by_digest: BTreeMap<Digest, (String, Vec<String>)> = BTreeMap::new();
            let tags = src
                .tags(&repo)
                .await
                .map_err(|e| format!("listing tags of {name}: {e}"))?;
            for tag in tags {
                if !policy.filters.tag_matches(&tag) || is_referrers_tag(&tag) {
                    continue;
                }
                let Some(t) = berth_oci::Tag::parse(&tag) else {
                    continue;
                };
                let Some(m) = src
                    .manifest(&repo, &Reference::Tag(t))
                    .await
                    .map_err(|e| format!("reading {name}:{tag}: {e}"))?
                else {
                    continue;
                };
                if !by_digest.contains_key(&m.digest) {
                    let kind = crate::copy::classify(&m.media_type, &m.bytes);
                    if !kind.is_some_and(|k| policy.filters.kind_matches(k)) {
                        continue;
                    }
                }
                by_digest
                    .entry(m.digest.clone())
                    .or_insert_with(|| (m.media_type.clone(), Vec::new()))
                    .1
                    .push(tag);
            }
            let destination = Self::destination(policy, endpoint, &name);
            for (digest, (_, tags)) in by_digest {
                tasks.push(new_task(
                    Operation::Copy,
                    &name,
                    &destination,
                    Some(digest),
                    tags,
                ));
            }
        }
        Ok(tasks)
    }
}

/// A tag of the referrers tag schema (`sha256-<hex>`): a registry's index
/// of referrers, copied with its subject, never as a tag of its own.
pub fn is_referrers_tag(tag: &str) -> bool {
    tag.strip_prefix("sha256-")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

pub(crate) fn new_task(
    operation: Operation,
    repository: &str,
    destination: &str,
    digest: Option<Digest>,
    tags: Vec<String>,
) -> Task {
    Task {
        execution: String::new(),
        seq: 0,
        operation,
        repository: repository.to_owned(),
        destination: destination.to_owned(),
        digest,
        tags,
        status: Status::Pending,
        attempts: 0,
        not_before_ms: 0,
        bytes: 0,
        node: None,
        message: None,
        started_ms: None,
        finished_ms: None,
    }
}
