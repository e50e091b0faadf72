//! The command line as a shell uses it.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};

/// `berth config check ... | head` closes stdout before berth has printed
/// everything: berth exits quietly with 141, as a Unix tool killed by
/// SIGPIPE does, instead of panicking.
#[test]
fn a_closed_stdout_ends_berth_quietly() {
    let (ours, theirs) = UnixStream::pair().unwrap();
    // The reading end is gone before berth writes a byte.
    drop(ours);
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/berth.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["config", "check", "--config", config])
        .stdout(Stdio::from(OwnedFd::from(theirs)))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(141), "{stderr}");
}
