//! Debian's HAProxy (installed by scripts/test) as a recording proxy in
//! front of a server: it logs every request's method, URI and
//! `Authorization` header, so a test can see what reached the storage
//! host. Random port, retried when taken; killed on drop.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Recorder {
    child: Child,
    dir: tempfile::TempDir,
    pub port: u16,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One recorded request.
#[derive(Debug)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    /// The `Authorization` header, empty when there was none.
    pub authorization: String,
}

impl Recorder {
    /// A proxy to `127.0.0.1:<target>`.
    pub fn start(target: u16) -> Recorder {
        for attempt in 0..20u64 {
            let port = super::garage::random_port().wrapping_add(attempt as u16 * 7);
            let dir = tempfile::tempdir().expect("tempdir");
            let config = format!(
                "global\n  log stdout format raw local0\n\
                 defaults\n  mode http\n  log global\n  timeout connect 5s\n  \
                 timeout client 60s\n  timeout server 60s\n\
                 frontend recorder\n  bind 127.0.0.1:{port}\n  \
                 http-request capture req.fhdr(Authorization) len 500\n  \
                 log-format \"%HM %HU %hr\"\n  default_backend target\n\
                 backend target\n  server t 127.0.0.1:{target}\n"
            );
            let file = dir.path().join("haproxy.cfg");
            std::fs::write(&file, config).expect("write haproxy.cfg");
            let log = std::fs::File::create(dir.path().join("requests.log")).expect("log");
            let mut child = Command::new("haproxy")
                .arg("-f")
                .arg(&file)
                .arg("-db")
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("haproxy could not be run ({e}): scripts/test installs it")
                });
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if child.try_wait().ok().flatten().is_some() {
                    break; // the port was taken: try another
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Recorder { child, dir, port };
                }
                assert!(Instant::now() < deadline, "haproxy did not listen");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("no free port for haproxy after 20 attempts");
    }

    /// The requests proxied so far.
    pub fn seen(&self) -> Vec<Seen> {
        let log = std::fs::read_to_string(self.dir.path().join("requests.log")).unwrap_or_default();
        log.lines()
            .filter_map(|l| {
                let (method, rest) = l.split_once(' ')?;
                let (uri, captured) = rest.split_once(' ')?;
                let authorization = captured.trim().strip_prefix('{')?.strip_suffix('}')?;
                Some(Seen {
                    method: method.to_owned(),
                    uri: uri.to_owned(),
                    authorization: authorization.to_owned(),
                })
            })
            .collect()
    }
}
