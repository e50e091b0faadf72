//! The fixtures berth's tests share, and its benchmark with them: real
//! servers that berth talks to, each in a temporary directory, on ports
//! retried until free, and killed (by PID) when dropped —
//!
//! - [`ceph`]: a single-node Ceph (mon, mgr, OSD, radosgw, CephFS);
//! - [`garage`]: a single-node Garage S3 server;
//! - [`etcd`]: a three-member etcd cluster;
//! - [`slapd`]: an OpenLDAP server with a small directory;
//! - [`pki`]: a throwaway CA with server and client certificates;
//! - [`server`]: the `berth` binary itself (its path given by the test
//!   crate, see [`server::Binary`]) and a small registry client;
//! - [`registry_client`]: manifests, streams and pushes for the tests of
//!   berth's outbound client;
//! - [`webdriver`]: a headless Chromium driven over WebDriver;
//! - at the top: children killed on drop ([`Killed`]), commands that must
//!   succeed ([`run_ok`]), `tar`, HAProxy and the Docker CLI ([`Docker`]).
//!
//! The programs come from Debian's packages (Garage from `cargo install`),
//! installed by scripts/test; a missing one fails the test that needs it.

pub mod ceph;
pub mod distribution;
pub mod etcd;
pub mod garage;
pub mod pki;
mod process;
pub mod registry_client;
pub mod relay;
pub mod server;
pub mod slapd;
pub mod web;
pub mod webdriver;

pub use process::{haproxy, run, run_ok, stdout_ok, storage_options, tar, Docker, Dockerd, Killed};

/// A number different per process and per call, to pick ports and names
/// that parallel tests do not share.
pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish()
}
