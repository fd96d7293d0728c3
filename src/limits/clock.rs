//! The limits' clock: which fixed window a request falls in. Injectable so tests roll
//! windows and budget periods over without sleeping (docs/architecture.md, "Limits").

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Datelike, TimeZone, Utc};

/// Where "now" comes from.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// A clock shared with whoever moves it (a test keeps one handle, the engine another).
impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn now(&self) -> DateTime<Utc> {
        (**self).now()
    }
}

/// The system's clock (the default).
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
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
    fn now(&self) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(self.millis.load(Ordering::SeqCst))
            .single()
            .unwrap_or_else(Utc::now)
    }
}

/// A fixed UTC window: its start (which names its counter) and end, in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

impl Window {
    /// The UTC minute `now` falls in.
    pub fn minute(now: DateTime<Utc>) -> Window {
        let s = now.timestamp();
        let start = s - s.rem_euclid(60);
        Window {
            start,
            end: start + 60,
        }
    }

    /// The UTC day `now` falls in.
    pub fn day(now: DateTime<Utc>) -> Window {
        let s = now.timestamp();
        let start = s - s.rem_euclid(86_400);
        Window {
            start,
            end: start + 86_400,
        }
    }

    /// The UTC calendar month `now` falls in.
    pub fn month(now: DateTime<Utc>) -> Window {
        // Day counts by arithmetic, not through chrono's date constructors: a budget's
        // window is found on every request it limits.
        let first = |y: i32, m: u32| days_from_civil(i64::from(y), i64::from(m)) * 86_400;
        let (y, m) = (now.year(), now.month());
        let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
        Window {
            start: first(y, m),
            end: first(ny, nm),
        }
    }

    /// Whole seconds until the window ends (at least 1).
    pub fn seconds_left(&self, now: DateTime<Utc>) -> i64 {
        let left_ms = self.end * 1000 - now.timestamp_millis();
        ((left_ms + 999) / 1000).max(1)
    }
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

    #[test]
    fn windows_are_utc_boundaries() {
        let now = at("2026-12-31T23:59:30.250Z");
        let m = Window::minute(now);
        assert_eq!(m.start, at("2026-12-31T23:59:00Z").timestamp());
        assert_eq!(m.seconds_left(now), 30);
        let d = Window::day(now);
        assert_eq!(d.end, at("2027-01-01T00:00:00Z").timestamp());
        let mo = Window::month(now);
        assert_eq!(mo.start, at("2026-12-01T00:00:00Z").timestamp());
        assert_eq!(mo.end, at("2027-01-01T00:00:00Z").timestamp());
        let feb = Window::month(at("2028-02-29T12:00:00Z"));
        assert_eq!(feb.end, at("2028-03-01T00:00:00Z").timestamp());
    }

    #[test]
    fn month_starts_match_chrono_over_five_centuries() {
        for y in 1800..2300 {
            for m in 1..=12 {
                let expected = chrono::NaiveDate::from_ymd_opt(y, m, 1)
                    .unwrap()
                    .and_hms_opt(0, 0, 0)
                    .unwrap()
                    .and_utc()
                    .timestamp();
                let got = days_from_civil(i64::from(y), i64::from(m)) * 86_400;
                assert_eq!(got, expected, "{y}-{m:02}-01");
            }
        }
    }

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let c = ManualClock::new(at("2026-01-01T00:00:59Z"));
        assert_eq!(c.now(), at("2026-01-01T00:00:59Z"));
        c.advance(std::time::Duration::from_secs(2));
        assert_eq!(
            Window::minute(c.now()).start,
            at("2026-01-01T00:01:00Z").timestamp()
        );
    }
}
