//! Replication between berth and other registries, after Harbor's model:
//! endpoints (remote registries, secrets sealed at rest), policies (what
//! to copy, which way, where to, when), and executions of a policy made of
//! one task per artifact, run by workers on every node.
//!
//! # Layout
//!
//! - [`model`]: the records and the rules of filters and namespaces.
//! - [`keys`]: every `Kv` key, under `repl:`.
//! - [`crypto`]: sealing endpoint secrets (ChaCha20-Poly1305).
//! - [`cron`]: five-field schedules.
//! - [`side`]: berth (the domain `Registry`) and a remote (the registry
//!   client) behind one interface.
//! - [`copy`]: one task's transfer, throttled and stoppable.
//! - [`service`]: [`Replication`], the operations the API calls.
//! - `worker`: the task workers, cron scheduler and outbox subscriber.
//!
//! Calls go down the list. A task runs under a cluster lock
//! (`replication-task:<execution>:<seq>`) that is its lease: on etcd a
//! dead node's lock expires and another node's worker takes the task up
//! again. Copies are idempotent (what the destination has is skipped), so
//! a task run twice, or an event delivered twice, is only wasted work.

pub mod copy;
pub mod cron;
pub mod crypto;
pub mod error;
pub mod keys;
pub mod model;
pub mod service;
pub mod side;
mod worker;

pub use crypto::SecretKey;
pub use error::{ErrorKind, ReplError};
pub use model::*;
pub use service::{ExecutionDetail, Replication, Settings};
pub use worker::EventTrigger;

#[cfg(test)]
mod tests;
