//! Reading and consuming the outbox (see [`crate::events`]).

use super::{encode, Registry};
use crate::error::CoreError;
use crate::events::{Event, EventKind};
use crate::keys;
use crate::kv::Txn;
use berth_oci::RepoName;

impl Registry {
    /// A new event of `kind` in `repo`, stamped now.
    pub(super) fn event(&self, kind: EventKind, repo: &RepoName) -> Event {
        Event::new(kind, repo.as_str(), self.now_ms())
    }

    /// The oldest `limit` events not yet consumed, oldest first.
    pub async fn outbox(&self, limit: usize) -> Result<Vec<Event>, CoreError> {
        let page = self.kv.scan(keys::OUTBOX_PREFIX, None, limit).await?;
        page.into_iter()
            .map(|(_, v)| Ok(serde_json::from_slice(&v.value)?))
            .collect()
    }

    /// Removes consumed events (ids of [`Registry::outbox`]'s events).
    pub async fn outbox_done(&self, ids: &[String]) -> Result<(), CoreError> {
        for batch in ids.chunks(64) {
            let txn = batch
                .iter()
                .fold(Txn::new(), |txn, id| txn.delete(keys::outbox(id)));
            self.kv.commit(txn).await?;
        }
        Ok(())
    }
}

/// `txn`, also recording `event` in the outbox.
pub(super) fn with_event(txn: Txn, event: &Event) -> Txn {
    txn.put(keys::outbox(&event.id), encode(event))
}
