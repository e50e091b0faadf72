//! Blob storage backends for berth: implementations of the
//! [`berth_core::BlobStore`] port. A filesystem store that several nodes may
//! share over CephFS or NFS, and an S3 store (Garage, Ceph RGW, MinIO, AWS),
//! each with committed blobs in berth's layout or in CNCF Distribution's
//! ([`layout`]); and readers of a Distribution storage tree on either
//! ([`tree`]: the [`berth_core::import::Tree`] port, for `berth import`).

mod fs;
pub mod layout;
mod s3;
pub mod tree;

pub use fs::FsBlobStore;
pub use layout::BlobLayout;
pub use s3::{MultipartUpload, S3BlobStore, S3Client, S3Config};
