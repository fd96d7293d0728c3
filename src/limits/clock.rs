//! The limits' clock: which fixed window a request falls in. Injectable so tests roll
//! windows and budget periods over without sleeping (docs/architecture.md, "Limits").

use std::cell::Cell;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, TimeZone, Utc};

/// Where "now" comes from: Unix milliseconds, the one reading every request takes (the
/// windows are plain arithmetic on it; no calendar type on the request's path).
pub trait Clock: Send + Sync {
    fn now_millis(&self) -> i64;

    /// The same instant as a date, for what is shown (the status endpoints).
    fn now(&self) -> DateTime<Utc> {
        to_datetime(self.now_millis())
    }
}

/// Unix milliseconds as a date (the epoch for one out of chrono's range).
pub fn to_datetime(millis: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(millis)
        .single()
        .unwrap_or_default()
}

/// A clock shared with whoever moves it (a test keeps one handle, the engine another).
impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn now_millis(&self) -> i64 {
        (**self).now_millis()
    }
}

/// The system's clock (the default).
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> i64 {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        // A clock set before 1970 counts as the epoch. Seconds and milliseconds apart: no
        // 128-bit arithmetic (`as_millis`) on every request.
        since.map_or(0, |d| {
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 1000);
            secs.saturating_mul(1000) + i64::from(d.subsec_millis())
        })
    }
}

/// A clock that stands still until moved (tests).
#[derive(Debug)]
pub struct ManualClock {
    millis: AtomicI64,
}

impl ManualClock {
    pub fn new(at: DateTime<Utc>) -> ManualClock {
        ManualClock {
            millis: AtomicI64::new(at.timestamp_millis()),
        }
    }

    pub fn set(&self, at: DateTime<Utc>) {
        self.millis.store(at.timestamp_millis(), Ordering::SeqCst);
    }

    pub fn advance(&self, by: std::time::Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.millis.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_millis(&self) -> i64 {
        self.millis.load(Ordering::SeqCst)
    }
}

/// A fixed UTC window: its start (which names its counter) and end, in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

impl Window {
    /// The UTC minute `now_ms` (Unix milliseconds) falls in.
    pub fn minute(now_ms: i64) -> Window {
        Window::fixed(now_ms, 60)
    }

    /// The UTC day `now_ms` falls in.
    pub fn day(now_ms: i64) -> Window {
        Window::fixed(now_ms, 86_400)
    }

    fn fixed(now_ms: i64, length: i64) -> Window {
        let s = now_ms.div_euclid(1000);
        let start = s - s.rem_euclid(length);
        Window {
            start,
            end: start + length,
        }
    }

    /// The UTC calendar month `now_ms` falls in.
    pub fn month(now_ms: i64) -> Window {
        thread_local! {
            /// The last day this thread found the month of, and that month: a budget's
            /// window is found on every request it limits, and changes once a month.
            static FOUND: Cell<(i64, Window)> = const { Cell::new((i64::MIN, Window { start: 0, end: 0 })) };
        }
        let day = now_ms.div_euclid(86_400_000);
        FOUND.with(|found| match found.get() {
            (d, window) if d == day => window,
            _ => {
                let window = Window::month_of_day(day);
                found.set((day, window));
                window
            }
        })
    }

    /// The month of the day `day` after 1970-01-01, by day arithmetic.
    fn month_of_day(day: i64) -> Window {
        let (y, m) = civil_month(day);
        let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
        Window {
            start: days_from_civil(y, m) * 86_400,
            end: days_from_civil(ny, nm) * 86_400,
        }
    }

    /// Whole seconds until the window ends (at least 1).
    pub fn seconds_left(&self, now_ms: i64) -> i64 {
        let left_ms = self.end.saturating_mul(1000).saturating_sub(now_ms);
        (left_ms.saturating_add(999) / 1000).max(1)
    }
}

/// The year and month (1–12) of the day `days` after 1970-01-01, proleptic Gregorian: the
/// inverse of [`days_from_civil`], by the same era arithmetic.
fn civil_month(days: i64) -> (i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let m = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let y = year_of_era + era * 400 + i64::from(m <= 2);
    (y, m)
}

/// Days from 1970-01-01 to the first day of month `m` (1–12) of year `y`, proleptic
/// Gregorian: the well-known era arithmetic (400-year eras of 146 097 days, years counted
/// from March so that the leap day comes last).
fn days_from_civil(y: i64, m: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = if m > 2 { m - 3 } else { m + 9 };
    let day_of_year = (153 * month_from_march + 2) / 5;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn ms(s: &str) -> i64 {
        at(s).timestamp_millis()
    }

    #[test]
    fn windows_are_utc_boundaries() {
        let now = ms("2026-12-31T23:59:30.250Z");
        let m = Window::minute(now);
        assert_eq!(m.start, at("2026-12-31T23:59:00Z").timestamp());
        assert_eq!(m.seconds_left(now), 30);
        let d = Window::day(now);
        assert_eq!(d.end, at("2027-01-01T00:00:00Z").timestamp());
        let mo = Window::month(now);
        assert_eq!(mo.start, at("2026-12-01T00:00:00Z").timestamp());
        assert_eq!(mo.end, at("2027-01-01T00:00:00Z").timestamp());
        let feb = Window::month(ms("2028-02-29T12:00:00Z"));
        assert_eq!(feb.end, at("2028-03-01T00:00:00Z").timestamp());
        // Before 1970: the minute still starts on its boundary.
        let early = Window::minute(ms("1969-12-31T23:59:59.500Z"));
        assert_eq!(early.start, at("1969-12-31T23:59:00Z").timestamp());
    }

    /// Every month's first and last millisecond, and its middle, fall in that month's
    /// window as chrono's calendar has it.
    #[test]
    fn months_match_chrono_over_five_centuries() {
        let first = |y: i32, m: u32| {
            chrono::NaiveDate::from_ymd_opt(y, m, 1)
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap()
                .and_utc()
                .timestamp()
        };
        for y in 1800..2300 {
            for m in 1..=12 {
                let start = first(y, m);
                let end = if m == 12 {
                    first(y + 1, 1)
                } else {
                    first(y, m + 1)
                };
                assert_eq!(days_from_civil(i64::from(y), i64::from(m)) * 86_400, start);
                let expected = Window { start, end };
                for at_ms in [start * 1000, (start + end) * 500, end * 1000 - 1] {
                    assert_eq!(Window::month(at_ms), expected, "{y}-{m:02} at {at_ms}");
                }
            }
        }
    }

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let c = ManualClock::new(at("2026-01-01T00:00:59Z"));
        assert_eq!(c.now(), at("2026-01-01T00:00:59Z"));
        c.advance(std::time::Duration::from_secs(2));
        assert_eq!(
            Window::minute(c.now_millis()).start,
            at("2026-01-01T00:01:00Z").timestamp()
        );
    }

    #[test]
    fn the_system_clock_reads_as_chrono_does() {
        let before = Utc::now().timestamp_millis();
        let read = SystemClock.now_millis();
        let after = Utc::now().timestamp_millis();
        assert!(
            (before..=after).contains(&read),
            "{before} ≤ {read} ≤ {after}"
        );
    }
}
