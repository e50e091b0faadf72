//! `berth import` against a real CNCF Distribution registry (Debian's
//! `docker-registry` 2.8) filled by real clients, then stopped, as
//! docs/migration.md tells users to do it:
//!
//! - `in_place`: berth configured on the Distribution's directory with
//!   `layout = "distribution"` adopts every blob where it lies (no byte
//!   copied), skips what it cannot serve saying why, changes nothing on a
//!   second run, and serves everything back byte-identical to skopeo and
//!   the Docker engine; new pushes land where Distribution keeps blobs;
//! - `copying`: berth on its own data directory copies from a Distribution
//!   directory elsewhere, verifying, and leaves the source untouched;
//! - `s3`: a Distribution on S3 (Garage) imported in place on the bucket;
//! - `crash`: an import killed with SIGKILL midway is finished by a rerun,
//!   and what the killed run made visible was consistent.
//!
//! `fixture` holds the Distribution, the fillers and the content walk.

mod common;

mod import {
    mod copying;
    mod crash;
    pub mod fixture;
    mod in_place;
    mod s3;
}
