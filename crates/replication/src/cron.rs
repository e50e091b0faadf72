//! Five-field cron schedules (`minute hour day-of-month month day-of-week`,
//! UTC), enough for replication triggers: `*`, numbers, ranges `a-b`,
//! steps `*/n` and `a-b/n`, and lists `a,b`. Day-of-week 0 and 7 are
//! Sunday. As in Vixie cron, when both day fields are restricted a day
//! matching either one fires.

/// A parsed schedule: for each field, the allowed values as a bit set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    days_restricted: bool,
    weekdays_restricted: bool,
}

fn field(text: &str, min: u32, max: u32, name: &str) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    let restricted = text != "*";
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("{name}: bad step in {part:?}"))?;
                (r, step)
            }
            None => (part, 1),
        };
        let num = |s: &str| -> Result<u32, String> {
            s.parse::<u32>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| format!("{name}: {s:?} is not in {min}-{max}"))
        };
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (num(a)?, num(b)?)
        } else {
            let n = num(range)?;
            // `5/15` means from 5 to the end, every 15.
            (n, if part.contains('/') { max } else { n })
        };
        if lo > hi {
            return Err(format!("{name}: empty range {range:?}"));
        }
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok((bits, restricted))
}

impl Schedule {
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "a cron schedule has 5 fields (minute hour day month weekday), not {}",
                fields.len()
            ));
        }
        let (minutes, _) = field(fields[0], 0, 59, "minute")?;
        let (hours, _) = field(fields[1], 0, 23, "hour")?;
        let (days, days_restricted) = field(fields[2], 1, 31, "day of month")?;
        let (months, _) = field(fields[3], 1, 12, "month")?;
        let (mut weekdays, weekdays_restricted) = field(fields[4], 0, 7, "day of week")?;
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1;
        }
        Ok(Schedule {
            minutes,
            hours,
            days,
            months,
            weekdays,
            days_restricted,
            weekdays_restricted,
        })
    }

    /// Whether the minute starting at Unix second `t` (UTC) is scheduled.
    pub fn matches(&self, t: u64) -> bool {
        let minute = (t / 60) % 60;
        let hour = (t / 3600) % 24;
        let days_since_epoch = t / 86_400;
        let (_, month, day) = civil_from_days(days_since_epoch as i64);
        // 1970-01-01 was a Thursday (4).
        let weekday = (days_since_epoch + 4) % 7;
        let bit = |set: u64, v: u64| set & (1 << v) != 0;
        let day_ok = match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => bit(self.days, day) || bit(self.weekdays, weekday),
            _ => bit(self.days, day) && bit(self.weekdays, weekday),
        };
        bit(self.minutes, minute) && bit(self.hours, hour) && bit(self.months, month) && day_ok
    }

    /// The first scheduled minute strictly after Unix second `t`, looking
    /// at most about four years ahead (`None` for `0 0 31 2 *`).
    pub fn next_after(&self, t: u64) -> Option<u64> {
        let mut m = (t / 60 + 1) * 60;
        let end = m + 4 * 366 * 86_400;
        while m < end {
            if self.matches(m) {
                return Some(m);
            }
            m += 60;
        }
        None
    }
}

/// (year, month 1-12, day 1-31) of days since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u64, u64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u64;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u64;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-12-06 13:07:00 UTC, a Sunday.
    const SUNDAY: u64 = 1_796_562_420;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(SUNDAY as i64 / 86_400), (2026, 12, 6));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn parse_table() {
        for bad in [
            "",
            "* * * *",
            "* * * * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 8",
            "*/0 * * * *",
            "5-1 * * * *",
            "a * * * *",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad:?}");
        }
        for good in [
            "* * * * *",
            "*/5 * * * *",
            "0 3 * * 1-5",
            "0,30 */2 1 1,7 0",
            "5/15 * * * 7",
        ] {
            assert!(Schedule::parse(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn next_table() {
        let cases: &[(&str, u64, u64)] = &[
            // (schedule, after, next)
            ("* * * * *", SUNDAY, SUNDAY + 60),
            ("*/5 * * * *", SUNDAY, SUNDAY + 3 * 60),
            ("0 * * * *", SUNDAY, SUNDAY + 53 * 60),
            ("0 0 * * *", SUNDAY, SUNDAY + 10 * 3600 + 53 * 60),
            // Monday 00:00.
            ("0 0 * * 1", SUNDAY, SUNDAY + 10 * 3600 + 53 * 60),
            // Sunday as 7: today is Sunday, 14:00.
            ("0 14 * * 7", SUNDAY, SUNDAY + 53 * 60),
            // 1st of next month (January 2027) at 00:00: 26 days later.
            (
                "0 0 1 * *",
                SUNDAY,
                SUNDAY + 25 * 86_400 + 10 * 3600 + 53 * 60,
            ),
            // Either day field: the 7th, or a Monday, whichever is first.
            ("0 0 7 * 3", SUNDAY, SUNDAY + 10 * 3600 + 53 * 60),
        ];
        for (text, after, next) in cases {
            let s = Schedule::parse(text).unwrap();
            assert_eq!(s.next_after(*after), Some(*next), "{text}");
        }
        assert_eq!(
            Schedule::parse("0 0 31 2 *").unwrap().next_after(SUNDAY),
            None
        );
    }
}
