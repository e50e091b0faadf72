//! The S3 [`berth_core::BlobStore`]: blobs and uploads in one bucket (Garage,
//! Ceph RGW, MinIO, AWS), spoken to over plain HTTP with SigV4 signing. Any
//! node can continue any upload: all state lives in the bucket.
//!
//! ```text
//! <bucket>/<prefix>
//! ├── blobs/
//! │   └── sha256/
//! │       └── ab/
//! │           └── ab12…ef                   committed blob, named by its hex digest
//! └── uploads/
//!     └── <id>/                             an upload in progress
//!         ├── s-<gen>-<base>                session <gen> writes from byte <base>
//!         └── c-<gen>-<start>-<end>         bytes [start, end) written by session <gen>
//! ```
//!
//! With `layout = "distribution"` committed blobs are the keys
//! `<prefix>docker/registry/v2/blobs/sha256/ab/ab12…ef/data` instead, where
//! CNCF Distribution's S3 driver with `rootdirectory = <prefix>` keeps them
//! (see [`crate::layout`]); uploads stay under `<prefix>uploads/`.
//!
//! Each `upload_writer` call is a session: it lists the upload's objects,
//! stores its marker, and writes its bytes as chunk objects of `part_size`
//! (the last one shorter), keeping at most two chunks in memory. Bytes of a
//! session count from its base up to the base of any later session, which is
//! how a rewind discards what lies past it without rewriting anything (see
//! `layout`). `commit_upload` completes one multipart upload straight into
//! the blob's key: chunks of 5 MiB or more become parts by UploadPartCopy
//! inside the store; shorter ones (the tails of `PATCH`es) are read back and
//! merged into parts of at least 5 MiB. Blobs under 5 MiB are one PutObject.
//! Both complete atomically, so a reader sees a whole blob or none.
//!
//! The design relies on listings that show every object written before (S3's
//! read-after-write consistency, which Garage, Ceph and MinIO provide too) and
//! on the registry's one-writer-per-upload claim. A commit that dies leaves a
//! multipart upload behind: [`S3BlobStore::abort_stale_multipart`] clears
//! those. The credentials need object read, write, delete and list rights.

mod client;
mod config;
mod layout;
mod multipart;
mod sigv4;
mod store;
mod xml;

pub use client::S3Client;
pub use config::S3Config;
pub use multipart::MultipartUpload;
pub use store::S3BlobStore;
