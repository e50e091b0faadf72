//! The time the domain reads: Unix milliseconds from a [`Clock`] the
//! [`crate::Registry`] holds. Grace periods, upload claims and upload expiry
//! are all decided against it, so tests move time with a [`ManualClock`]
//! instead of sleeping; production runs on [`SystemClock`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;

    /// Seconds since the Unix epoch: what records keep.
    fn now(&self) -> u64 {
        self.now_ms() / 1000
    }
}

/// The machine's wall clock. Nodes of a cluster compare each other's
/// timestamps (claim expiry, GC's grace period), so their clocks must agree
/// to within the margins those leave.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to, for tests.
#[derive(Debug)]
pub struct ManualClock {
    ms: AtomicU64,
}

impl ManualClock {
    /// A clock at `ms` since the epoch.
    pub fn at_ms(ms: u64) -> Self {
        ManualClock {
            ms: AtomicU64::new(ms),
        }
    }

    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.ms.fetch_add(by, Ordering::SeqCst);
    }
}

impl Default for ManualClock {
    /// Starts at a fixed, realistic time (November 2027), so records carry
    /// plausible timestamps and "older than N seconds" never underflows.
    fn default() -> Self {
        ManualClock::at_ms(1_826_000_000_000)
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.ms.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_advanced() {
        let clock = ManualClock::at_ms(10_500);
        assert_eq!((clock.now_ms(), clock.now()), (10_500, 10));
        clock.advance(Duration::from_millis(600));
        assert_eq!((clock.now_ms(), clock.now()), (11_100, 11));
    }

    #[test]
    fn the_system_clock_reads_the_wall_clock() {
        let now = SystemClock.now_ms();
        // After 2025, and in milliseconds, not seconds.
        assert!(now > 1_735_689_600_000, "{now}");
        assert!(SystemClock.now().abs_diff(now / 1000) <= 1);
    }
}
