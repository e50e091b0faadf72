//! Limits failed logins per user and per source address, in fixed windows.
//! Kept per node in memory: a cluster of N nodes allows at most N times the
//! limit, which still stops online guessing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct FailedLogins {
    window: Duration,
    per_user: u32,
    per_address: u32,
    counts: Mutex<HashMap<String, (Instant, u32)>>,
}

impl Default for FailedLogins {
    fn default() -> Self {
        FailedLogins::new(Duration::from_secs(300), 10, 50)
    }
}

impl FailedLogins {
    pub fn new(window: Duration, per_user: u32, per_address: u32) -> Self {
        FailedLogins {
            window,
            per_user,
            per_address,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// Whether login attempts for `user` from `address` are blocked now.
    pub fn blocked(&self, user: &str, address: &str) -> bool {
        let now = Instant::now();
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let over =
            |counts: &mut HashMap<String, (Instant, u32)>, key: String, limit: u32| match counts
                .get(&key)
            {
                Some((start, n)) if now.duration_since(*start) < self.window => *n >= limit,
                Some(_) => {
                    counts.remove(&key);
                    false
                }
                None => false,
            };
        over(&mut counts, format!("u:{user}"), self.per_user)
            || over(&mut counts, format!("a:{address}"), self.per_address)
    }

    pub fn record_failure(&self, user: &str, address: &str) {
        let now = Instant::now();
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if counts.len() > 100_000 {
            // Bound memory under a flood of distinct names.
            counts.retain(|_, (start, _)| now.duration_since(*start) < self.window);
        }
        for key in [format!("u:{user}"), format!("a:{address}")] {
            let entry = counts.entry(key).or_insert((now, 0));
            if now.duration_since(entry.0) >= self.window {
                *entry = (now, 0);
            }
            entry.1 += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit() {
        let l = FailedLogins::new(Duration::from_secs(60), 3, 5);
        for _ in 0..3 {
            assert!(!l.blocked("alice", "1.1.1.1"));
            l.record_failure("alice", "1.1.1.1");
        }
        assert!(l.blocked("alice", "2.2.2.2"), "per-user limit");
        assert!(!l.blocked("bob", "2.2.2.2"));
        l.record_failure("bob", "1.1.1.1");
        l.record_failure("carol", "1.1.1.1");
        assert!(l.blocked("dave", "1.1.1.1"), "per-address limit");
    }
}
