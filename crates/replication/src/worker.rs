//! The background side: workers that run pending tasks (on every node,
//! each task under a cluster lock that is its lease, so a task whose node
//! died is taken up by another), the cron scheduler, and the outbox
//! subscriber that turns pushes and deletes into executions.

use crate::copy::{Control, Copier, STOPPED};
use crate::error::ReplError;
use crate::keys;
use crate::model::*;
use crate::service::{new_task, Replication};
use async_trait::async_trait;
use berth_core::events::{Event, EventKind, Subscriber};
use berth_core::{CoreError, LockGuard, Txn, Versioned};
use berth_oci::{Reference, RepoName};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How often a running task saves its progress and looks for a stop.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);

impl Replication {
    /// Starts this node's workers and cron scheduler.
    pub fn start(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        let workers = self.clone();
        let cron = self.clone();
        vec![
            tokio::spawn(async move {
                loop {
                    // On the tick, or at once when a task of this node ends
                    // (other nodes' tasks are seen on the tick).
                    tokio::select! {
                        _ = tokio::time::sleep(workers.settings.poll_interval) => {}
                        _ = workers.wake.notified() => {}
                    }
                    if let Err(e) = workers.tick().await {
                        tracing::warn!(error = %e, "replication: scheduling tasks");
                    }
                }
            }),
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    if let Err(e) = cron.fire_cron().await {
                        tracing::warn!(error = %e, "replication: cron triggers");
                    }
                }
            }),
        ]
    }

    fn running_here(&self) -> usize {
        self.running.lock().map(|r| r.len()).unwrap_or(usize::MAX)
    }

    /// One round: finishes executions whose tasks are all done, and starts
    /// the tasks this node has room for.
    pub async fn tick(self: &Arc<Self>) -> Result<(), ReplError> {
        let active = self.kv.scan_keys(keys::ACTIVE_PREFIX, None, 1000).await?;
        for key in active {
            let id = key[keys::ACTIVE_PREFIX.len()..].to_owned();
            if let Err(e) = self.tick_execution(&id).await {
                tracing::warn!(execution = %id, error = %e, "replication: execution");
            }
        }
        Ok(())
    }

    async fn tick_execution(self: &Arc<Self>, id: &str) -> Result<(), ReplError> {
        let Some((exec, seen)) = self.read::<Execution>(&keys::execution(id)).await? else {
            self.kv.delete(&keys::active(id)).await?;
            return Ok(());
        };
        let tasks: Vec<(String, Task, Versioned)> = self.scan_all(&keys::task_prefix(id)).await?;
        if tasks.iter().all(|(_, t, _)| t.status.is_final()) {
            return self.finish(exec, seen, &tasks).await;
        }
        let policy = self.policy(&exec.policy).await.ok();
        let concurrency = policy.as_ref().map_or(1, |p| p.concurrency as usize);
        let mut running = tasks
            .iter()
            .filter(|(_, t, _)| t.status == Status::Running)
            .count();
        let now = self.now_ms();
        for (key, task, _) in &tasks {
            if task.status.is_final() {
                continue;
            }
            if self.running.lock().map(|r| r.contains(key)).unwrap_or(true) {
                continue;
            }
            let stopping = exec.stop_requested || policy.is_none();
            if task.status == Status::Pending
                && !stopping
                && (running >= concurrency
                    || task.not_before_ms > now
                    || self.running_here() >= self.settings.workers)
            {
                continue;
            }
            // A running task not running here, or one to stop: its lock
            // tells whether its node still holds it.
            let lock = format!("replication-task:{id}:{:06}", task.seq);
            let Some(guard) = self.locks.try_lock(&lock, &self.node).await? else {
                continue;
            };
            let Some((mut task, seen)) = self.read::<Task>(key).await? else {
                continue;
            };
            if task.status.is_final() {
                continue;
            }
            if stopping {
                task.status = Status::Stopped;
                task.finished_ms = Some(now);
                task.message = Some(if policy.is_none() {
                    "the policy was deleted".into()
                } else {
                    STOPPED.into()
                });
                self.save_task(key, &task, &seen).await?;
                continue;
            }
            if task.status == Status::Pending {
                running += 1;
            } else if self.running_here() >= self.settings.workers {
                continue;
            }
            task.status = Status::Running;
            task.attempts += 1;
            task.node = Some(self.node.clone());
            task.started_ms = Some(now);
            task.bytes = 0;
            task.message = None;
            if !self.save_task(key, &task, &seen).await? {
                continue;
            }
            let Some(policy) = policy.clone() else {
                continue;
            };
            if let Ok(mut r) = self.running.lock() {
                r.insert(key.clone());
            }
            let this = self.clone();
            let key = key.clone();
            tokio::spawn(async move {
                this.run_task(&key, task, policy, guard).await;
                if let Ok(mut r) = this.running.lock() {
                    r.remove(&key);
                }
                this.wake.notify_one();
            });
        }
        Ok(())
    }

    async fn save_task(&self, key: &str, task: &Task, seen: &Versioned) -> Result<bool, ReplError> {
        let txn = Txn::new()
            .if_unchanged(key, Some(seen))
            .put(key, serde_json::to_vec(task)?);
        Ok(self.kv.commit(txn).await?)
    }

    /// Rewrites the task with `change` applied, whatever else changed.
    async fn update_task(&self, key: &str, change: impl Fn(&mut Task)) -> Result<(), ReplError> {
        for _ in 0..16 {
            let Some((mut task, seen)) = self.read::<Task>(key).await? else {
                return Ok(());
            };
            change(&mut task);
            if self.save_task(key, &task, &seen).await? {
                return Ok(());
            }
        }
        Err(ReplError::new(
            crate::error::ErrorKind::Unavailable,
            "task record contended",
        ))
    }

    async fn finish(
        &self,
        mut exec: Execution,
        seen: Versioned,
        tasks: &[(String, Task, Versioned)],
    ) -> Result<(), ReplError> {
        let any = |s: Status| tasks.iter().any(|(_, t, _)| t.status == s);
        exec.status = if any(Status::Failed) {
            Status::Failed
        } else if exec.stop_requested || any(Status::Stopped) {
            Status::Stopped
        } else {
            Status::Succeeded
        };
        exec.finished_ms = Some(self.now_ms());
        let key = keys::execution(&exec.id);
        let txn = Txn::new()
            .if_unchanged(&key, Some(&seen))
            .put(&key, serde_json::to_vec(&exec)?)
            .delete(keys::active(&exec.id));
        if self.kv.commit(txn).await? {
            self.prune(&exec.policy).await?;
        }
        Ok(())
    }

    /// Keeps the newest `keep_executions` finished executions of `policy`.
    pub(crate) async fn prune(&self, policy: &str) -> Result<(), ReplError> {
        let finished: Vec<Execution> = self
            .executions(Some(policy))
            .await?
            .into_iter()
            .filter(|e| e.status.is_final())
            .collect();
        for old in finished.iter().skip(self.settings.keep_executions) {
            let tasks = self
                .kv
                .scan_keys(&keys::task_prefix(&old.id), None, usize::MAX)
                .await?;
            for chunk in tasks.chunks(100) {
                let mut txn = Txn::new();
                for k in chunk {
                    txn = txn.delete(k.clone());
                }
                self.kv.commit(txn).await?;
            }
            self.kv.delete(&keys::execution(&old.id)).await?;
        }
        Ok(())
    }

    async fn run_task(&self, key: &str, task: Task, policy: Policy, guard: LockGuard) {
        let control = Control {
            rate: policy.bandwidth_kib * 1024,
            ..Control::default()
        };
        let work = self.attempt(&task, &policy, control.clone());
        tokio::pin!(work);
        let deadline = tokio::time::sleep(self.settings.task_timeout);
        tokio::pin!(deadline);
        let exec_key = keys::execution(&task.execution);
        let mut stop_seen_at: Option<tokio::time::Instant> = None;
        let outcome: Result<Vec<String>, (String, bool)> = loop {
            tokio::select! {
                r = &mut work => break r.map_err(|e| (e.message, e.retryable)),
                _ = &mut deadline => break Err((format!("timed out after {:?}", self.settings.task_timeout), true)),
                _ = tokio::time::sleep(WATCH_INTERVAL) => {
                    let bytes = control.bytes.load(Ordering::Relaxed);
                    let _ = self.update_task(key, |t| t.bytes = bytes).await;
                    let stop = match self.read::<Execution>(&exec_key).await {
                        Ok(Some((e, _))) => e.stop_requested,
                        Ok(None) => true,
                        Err(_) => false,
                    };
                    if stop || !guard.is_held() {
                        control.stopped.store(true, Ordering::SeqCst);
                        // The streams see the stop between two chunks; a
                        // transfer stuck waiting is dropped after a grace.
                        let at = *stop_seen_at.get_or_insert_with(tokio::time::Instant::now);
                        if at.elapsed() > Duration::from_secs(3) {
                            break Err((STOPPED.into(), false));
                        }
                    }
                }
            }
        };
        let bytes = control.bytes.load(Ordering::Relaxed);
        let now = self.now_ms();
        let stopped = control.is_stopped();
        let attempts = self.settings.attempts;
        let backoff = self.settings.backoff;
        let result = self
            .update_task(key, |t| {
                t.bytes = bytes;
                match &outcome {
                    Ok(notes) => {
                        t.status = Status::Succeeded;
                        t.finished_ms = Some(now);
                        t.message = (!notes.is_empty()).then(|| notes.join("; "));
                    }
                    Err(_) if stopped => {
                        t.status = Status::Stopped;
                        t.finished_ms = Some(now);
                        t.message = Some(STOPPED.into());
                    }
                    Err((message, retryable)) => {
                        t.message = Some(message.clone());
                        if *retryable && t.attempts < attempts {
                            t.status = Status::Pending;
                            let wait = backoff.as_millis() as u64 * (1 << (t.attempts - 1).min(16));
                            t.not_before_ms = now + wait;
                        } else {
                            t.status = Status::Failed;
                            t.finished_ms = Some(now);
                        }
                    }
                }
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(task = key, error = %e, "replication: recording a task's end");
        }
        drop(guard);
    }

    /// One attempt at a task; the notes it made.
    async fn attempt(
        &self,
        task: &Task,
        policy: &Policy,
        control: Control,
    ) -> Result<Vec<String>, crate::side::SideError> {
        use crate::side::SideError;
        let endpoint = self
            .read::<Endpoint>(&keys::endpoint(&policy.endpoint))
            .await
            .map_err(|e| SideError {
                message: e.message,
                retryable: true,
            })?
            .ok_or_else(|| SideError::fatal(format!("endpoint {} is gone", policy.endpoint)))?
            .0;
        let (src, dst) = self
            .sides(policy, &endpoint)
            .map_err(|e| SideError::fatal(e.message))?;
        let mut copier = Copier::new(src.as_ref(), dst.as_ref(), control, policy.overwrite);
        // Mount sources: the other destination repositories of the execution.
        if let Ok(tasks) = self.tasks(&task.execution).await {
            let mut siblings: Vec<RepoName> = tasks
                .iter()
                .filter_map(|t| RepoName::parse(&t.destination))
                .collect();
            siblings.sort_by(|a, b| a.as_str().cmp(b.as_str()));
            siblings.dedup();
            siblings.truncate(8);
            copier.siblings = siblings;
        }
        // The loop guard: what a pull brings is marked with its origin
        // before it lands (and its push event is emitted).
        if policy.direction == Direction::Pull {
            copier.origin = Some(crate::copy::Origin {
                kv: self.kv.clone(),
                endpoint: endpoint.name.clone(),
            });
        }
        copier.run(task).await?;
        Ok(copier.notes.lock().map(|n| n.clone()).unwrap_or_default())
    }

    /// Starts the executions of cron triggers due this minute, once per
    /// minute cluster-wide (a compare-and-swap on the policy's last fire).
    pub async fn fire_cron(self: &Arc<Self>) -> Result<(), ReplError> {
        let minute = self.now_ms() / 60_000 * 60;
        for p in self.policies().await? {
            let Some(text) = &p.triggers.cron else {
                continue;
            };
            if !p.enabled {
                continue;
            }
            let Ok(schedule) = crate::cron::Schedule::parse(text) else {
                continue;
            };
            if !schedule.matches(minute) {
                continue;
            }
            let key = keys::cron(&p.name);
            let seen = self.kv.get(&key).await?;
            if seen
                .as_ref()
                .is_some_and(|v| v.value == minute.to_string().into_bytes())
            {
                continue;
            }
            let txn = Txn::new()
                .if_unchanged(&key, seen.as_ref())
                .put(&key, minute.to_string().into_bytes());
            if !self.kv.commit(txn).await? {
                continue;
            }
            let this = self.clone();
            tokio::spawn(async move {
                if let Err(e) = this.run(&p.name, Trigger::Cron).await {
                    tracing::warn!(policy = %p.name, error = %e, "replication: cron run");
                }
            });
        }
        Ok(())
    }

    /// The executions an outbox event starts: one per matching push policy
    /// with an event trigger.
    pub async fn on_event(&self, event: &Event) -> Result<Vec<Execution>, ReplError> {
        let mut started = Vec::new();
        for p in self.policies().await? {
            if !p.enabled || !p.triggers.event || p.direction != Direction::Push {
                continue;
            }
            if !p.filters.repo_matches(&event.repo) {
                continue;
            }
            let Some((endpoint, _)) = self.read::<Endpoint>(&keys::endpoint(&p.endpoint)).await?
            else {
                continue;
            };
            let dest = Replication::destination(&p, &endpoint, &event.repo);
            let task = match event.kind {
                EventKind::ManifestPushed => {
                    let Some(digest) = event.digest.clone() else {
                        continue;
                    };
                    match &event.tag {
                        Some(tag) if !p.filters.tag_matches(tag) => continue,
                        None if event.subject.is_none() => continue,
                        _ => {}
                    }
                    // The loop guard: not back to where a pull brought it from.
                    let origin = self
                        .kv
                        .get(&keys::origin(&event.repo, digest.as_str()))
                        .await?;
                    if origin.is_some_and(|o| o.value == p.endpoint.as_bytes()) {
                        continue;
                    }
                    if event.tag.is_some() && !p.filters.kinds.is_empty() {
                        let Some(repo) = RepoName::parse(&event.repo) else {
                            continue;
                        };
                        let kind = match self
                            .registry
                            .manifest_get(&repo, &Reference::Digest(digest.clone()))
                            .await
                        {
                            Ok(m) => crate::copy::classify(&m.media_type, &m.body),
                            Err(_) => continue,
                        };
                        if !kind.is_some_and(|k| p.filters.kind_matches(k)) {
                            continue;
                        }
                    }
                    new_task(
                        Operation::Copy,
                        &event.repo,
                        &dest,
                        Some(digest),
                        event.tag.iter().cloned().collect(),
                    )
                }
                _ if !p.replicate_deletes => continue,
                EventKind::TagDeleted => {
                    let Some(tag) = &event.tag else { continue };
                    if !p.filters.tag_matches(tag) {
                        continue;
                    }
                    new_task(
                        Operation::DeleteTags,
                        &event.repo,
                        &dest,
                        event.digest.clone(),
                        vec![tag.clone()],
                    )
                }
                EventKind::ManifestDeleted => new_task(
                    Operation::DeleteManifest,
                    &event.repo,
                    &dest,
                    event.digest.clone(),
                    event.tags.clone(),
                ),
                EventKind::RepositoryDeleted => new_task(
                    Operation::DeleteRepository,
                    &event.repo,
                    &dest,
                    None,
                    Vec::new(),
                ),
            };
            started.push(
                self.record_execution(&p, Trigger::Event, vec![task], None)
                    .await?,
            );
        }
        Ok(started)
    }
}

/// The outbox subscriber: pushes and deletes at berth start executions of
/// the push policies with event triggers.
pub struct EventTrigger(pub Arc<Replication>);

#[async_trait]
impl Subscriber for EventTrigger {
    async fn handle(&self, event: &Event) -> Result<(), CoreError> {
        // Delivered at least once: a repeat makes a second execution,
        // which finds everything in place and copies nothing.
        self.0
            .on_event(event)
            .await
            .map(|_| ())
            .map_err(CoreError::from)
    }
}
