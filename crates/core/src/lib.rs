//! The registry domain, written once over two ports:
//!
//! - [`kv::Kv`]: small transactional metadata (redb, etcd, memory);
//! - [`blob::BlobStore`]: content-addressed bytes (filesystem, S3, memory).
//!
//! The domain reads time from a [`clock::Clock`], so tests move it by hand.
//!
//! [`registry::Registry`] implements uploads, blobs, manifests, tags,
//! referrers and the catalog. It knows nothing of HTTP: the api crate calls
//! it and maps [`error::CoreError`] to responses. Calls go one way: api ->
//! core -> ports; adapters implement the ports and never call back.

pub mod blob;
pub mod blob_suite;
pub mod clock;
pub mod error;
pub mod events;
pub mod import;
pub mod keys;
pub mod kv;
pub mod kv_suite;
pub mod lock;
pub mod memory_blob;
pub mod memory_kv;
pub mod nodes;
pub mod registry;

pub use blob::{BlobStore, ByteStream, StoreError, UploadWriter};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::CoreError;
pub use kv::{Check, KeyRange, Kv, KvError, Op, Txn, Versioned};
pub use lock::{LocalLocks, LockGuard, Locks};
pub use memory_blob::MemoryBlobStore;
pub use memory_kv::MemoryKv;
pub use registry::Registry;
