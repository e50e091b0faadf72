//! Blob storage backends for berth: implementations of the
//! [`berth_core::BlobStore`] port. Today a filesystem store that several
//! nodes may share over CephFS or NFS.

mod fs;

pub use fs::FsBlobStore;
