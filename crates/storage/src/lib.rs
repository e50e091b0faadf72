//! Blob storage backends for berth: implementations of the
//! [`berth_core::BlobStore`] port. A filesystem store that several nodes may
//! share over CephFS or NFS, and an S3 store (Garage, Ceph RGW, MinIO, AWS).

mod fs;
mod s3;

pub use fs::FsBlobStore;
pub use s3::{MultipartUpload, S3BlobStore, S3Client, S3Config};
