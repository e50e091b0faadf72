//! Times as the APIs show them, and the time they compare with.

use berth_core::{Clock, SystemClock};

/// Unix seconds now, from the wall clock that the domain and the auth crate
/// read too (`berth_core::SystemClock`): robot expiry, "5 min ago".
pub fn now() -> u64 {
    SystemClock.now()
}

/// Unix seconds as RFC 3339 UTC, without a date library. The management
/// API and the UI format their times with it too.
pub fn rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        for (secs, shown) in [
            (0, "1970-01-01T00:00:00Z"),
            (1_795_564_800, "2026-11-25T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
        ] {
            assert_eq!(rfc3339(secs), shown);
        }
    }
}
