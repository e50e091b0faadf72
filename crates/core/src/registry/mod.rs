//! [`Registry`]: the distribution API's operations, over `Kv` and
//! `BlobStore`. Submodules split it by concern: blob uploads, manifests, and
//! content discovery. Visibility of anything pushed is decided by one `Kv`
//! transaction that happens only after the bytes are verified and durable.

pub mod admin;
mod blobs;
mod claims;
mod discovery;
pub mod fsck;
pub mod gc;
mod import;
mod lifecycle;
mod manifests;
mod outbox;
pub mod policy;
mod pulls;
mod records;
#[cfg(test)]
mod tests;
mod upload_limits;
mod uploads;

pub use discovery::Page;
pub use gc::{GcOptions, GcReport};
pub use manifests::{ManifestContent, ManifestPut};
pub use pulls::PullRecord;
pub use records::*;
pub use upload_limits::UploadLimits;
pub use uploads::UploadStatus;

use crate::blob::BlobStore;
use crate::clock::{Clock, SystemClock};
use crate::error::CoreError;
use crate::kv::{Kv, Versioned};
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// How many times a transaction that lost a race is retried before the
/// caller is told the service is busy.
const TXN_RETRIES: usize = 16;

#[derive(Clone)]
pub struct Registry {
    kv: Arc<dyn Kv>,
    blobs: Arc<dyn BlobStore>,
    /// A link rewrites its blob's record only when the record was last
    /// touched longer ago than this (seconds); see `lifecycle`.
    touch_secs: u64,
    tag_cache: Arc<discovery::TagCache>,
    /// When this node last noted a pull of each manifest (see `pulls`).
    pulls_noted: Arc<std::sync::Mutex<std::collections::HashMap<String, u64>>>,
    upload_limits: UploadLimits,
    /// Every time the domain records or compares (see `clock`).
    clock: Arc<dyn Clock>,
}

impl Registry {
    pub fn new(kv: Arc<dyn Kv>, blobs: Arc<dyn BlobStore>) -> Self {
        Registry {
            kv,
            blobs,
            touch_secs: 0,
            tag_cache: Arc::default(),
            pulls_noted: Arc::default(),
            upload_limits: UploadLimits::default(),
            clock: Arc::new(SystemClock),
        }
    }

    /// Reads time from `clock` instead of the system's: tests move it to
    /// expire claims, uploads and grace periods without waiting.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Unix seconds, as records keep them.
    pub(crate) fn now(&self) -> u64 {
        self.clock.now()
    }

    /// Unix milliseconds, for upload claims.
    pub(crate) fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Lets links skip rewriting a blob record touched less than `secs`
    /// ago, so that concurrent pushes of one popular layer do not all
    /// contend for its record. Safe when `secs` is below the GC grace
    /// period by more than the clock skew between nodes: such a blob is
    /// too young to collect anyway. [`Registry::for_grace_period`] picks it.
    pub fn with_touch_interval(mut self, secs: u64) -> Self {
        self.touch_secs = secs;
        self
    }

    /// The touch interval for a GC grace period: a minute, or less with a
    /// short grace (10 s of margin for clock skew; none below that).
    pub fn for_grace_period(self, grace_secs: u64) -> Self {
        self.with_touch_interval(grace_secs.saturating_sub(10).min(60))
    }

    pub(crate) fn kv(&self) -> &Arc<dyn Kv> {
        &self.kv
    }

    pub fn blobs(&self) -> &Arc<dyn BlobStore> {
        &self.blobs
    }

    /// Reads and decodes a record, with its version for a later check.
    async fn read<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<(T, Versioned)>, CoreError> {
        match self.kv.get(key).await? {
            None => Ok(None),
            Some(v) => Ok(Some((serde_json::from_slice(&v.value)?, v))),
        }
    }
}

impl Registry {
    /// Visits every entry under `prefix` in key order, one bounded page of
    /// `Kv` reads at a time.
    async fn for_each_under(
        &self,
        prefix: &str,
        mut visit: impl FnMut(String, Versioned) -> Result<(), CoreError>,
    ) -> Result<(), CoreError> {
        const PAGE: usize = 500;
        let mut after: Option<String> = None;
        loop {
            let page = self.kv.scan(prefix, after.as_deref(), PAGE).await?;
            let full = page.len() == PAGE;
            after = page.last().map(|(k, _)| k.clone());
            for (key, value) in page {
                visit(key, value)?;
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// Every entry under `prefix`, read a page at a time.
    async fn all_under(&self, prefix: &str) -> Result<Vec<(String, Versioned)>, CoreError> {
        let mut all = Vec::new();
        self.for_each_under(prefix, |key, v| {
            all.push((key, v));
            Ok(())
        })
        .await?;
        Ok(all)
    }
}

pub(crate) fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Serializing plain records of strings and numbers cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

fn contention() -> CoreError {
    CoreError::unavailable("metadata transaction kept conflicting; try again")
}
