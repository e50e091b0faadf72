//! HTTP-level conformance suite for the OCI Distribution Specification v1.1,
//! run against the real `berth` binary (one fresh server per test, on a free
//! port, in its own temporary data directory).
//!
//! Layout, one module per area of the spec:
//!
//! - `util`: the HTTP client wrapper, response assertions (every error body
//!   is checked against the spec's `{"errors":[{code,message}]}` shape),
//!   deterministic random content and builders for images, indexes and
//!   artifacts;
//! - `base`: `/v2/`, unsupported methods, repository names, routing;
//! - `blob_push`: monolithic, POST+PUT, streamed and chunked uploads,
//!   upload status and cancel, cross-repository mount;
//! - `blob_pull`: blob HEAD/GET, `Range`, repository scoping, delete;
//! - `manifests`: push by tag and digest of every supported manifest type,
//!   validation errors, exact-byte pulls, `Accept` negotiation, delete;
//! - `referrers`: `subject`, `OCI-Subject`, the referrers API and its filter;
//! - `discovery`: tags list and catalog, with pagination;
//! - `concurrency`: requests racing on one upload never corrupt a blob;
//! - `restart`: uploads and content surviving a crash and restart.

mod common;

mod conformance {
    pub mod util;

    mod base;
    mod blob_pull;
    mod blob_push;
    mod concurrency;
    mod discovery;
    mod manifests;
    mod referrers;
    mod restart;
}
