//! When a run must stop: `--stop-after MINS` and `--stop-at WHEN`, as
//! rsync's. rsync reads WHEN in the local time zone and lets the user leave
//! out what they like (`14:00` is the next 2 p.m., `1-30` the next January
//! 30th at midnight, `:30` the next half hour); so does jcp, with the
//! system's zone as jiff reads it (everything jcp shows is in UTC, but a
//! time to stop at is typed as the clock on the wall says it).

use std::time::{Duration, SystemTime};

use jiff::civil::{Date, DateTime};
use jiff::{Timestamp, ZonedDateTime};

/// `--stop-after MINS`: the time `mins` minutes from `now`. rsync takes
/// whole minutes; a fraction is taken too (`0.5` is 30 seconds).
pub fn after(mins: &str, now: SystemTime) -> Result<SystemTime, String> {
    let bad = || format!("invalid --stop-after value: {mins} (minutes, more than 0)");
    let m: f64 = mins.parse().map_err(|_| bad())?;
    if !(m.is_finite() && m > 0.0) {
        return Err(bad());
    }
    Duration::try_from_secs_f64(m * 60.0)
        .ok()
        .and_then(|d| now.checked_add(d))
        .ok_or_else(bad)
}

/// `--stop-at WHEN`: the time WHEN names, read in the system's time zone
/// (see [`at`]).
pub fn at_local(when: &str) -> Result<SystemTime, String> {
    let stop = at(when, &ZonedDateTime::now())?;
    SystemTime::try_from(stop)
        .map_err(|_| format!("invalid --stop-at value: {when} (out of this system's range)"))
}

/// What WHEN (`[[[YY]YY-]MM-]DD[Thh:mm]`, `[T]hh:mm` or `:mm`; `/` for
/// `-` too) names after `now`, in `now`'s zone: the first time after now
/// that matches what it gives. A date without a time is its midnight; a
/// date with parts left out is the next that fits (`31`: the next month
/// with a 31st); a time without a date the next day it comes; `:mm` the
/// next hour it comes. A time that is not after `now` is an error, as is
/// a date that never comes (`2-30`).
pub fn at(when: &str, now: &ZonedDateTime) -> Result<Timestamp, String> {
    let given = Given::parse(when).ok_or_else(|| {
        format!("invalid --stop-at format: {when} (as [[[YY]YY-]MM-]DD[Thh:mm], hh:mm or :mm)")
    })?;
    // What is left out is now's, and the smallest part left out of the
    // date (or the hour, for `:mm`) moves on until the time is to come.
    let mut next = Next::Nothing;
    let year = match given.year {
        None => {
            next = Next::Year;
            i64::from(now.year())
        }
        // (Two digits: this century's, or the next.)
        Some(y) if y < 100 => {
            let mut y = 1900 + y;
            while y < i64::from(now.year()) {
                y += 100;
            }
            y
        }
        Some(y) => y,
    };
    let month = given.month.unwrap_or_else(|| {
        next = Next::Month;
        now.month()
    });
    let day = given.day.unwrap_or_else(|| {
        next = Next::Day;
        now.day()
    });
    let (hour, minute) = match (given.hour, given.minute) {
        (Some(h), Some(m)) => (h, m),
        (None, Some(m)) => {
            next = Next::Hour;
            (now.hour(), m)
        }
        _ => (0, 0),
    };
    let invalid = || format!("invalid --stop-at value: {when} (no such date or time)");
    let mut year = i16::try_from(year).map_err(|_| invalid())?;
    let (mut month, mut day, mut hour) = (month, day, hour);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return Err(invalid());
    }
    // (Bounded: a year moves on eight times at most to reach a 29th of
    // February, a month twice to reach a 31st.)
    for _ in 0..16 {
        if let Ok(date) = Date::new(year, month, day) {
            let stop = DateTime::from_parts(date, jiff::civil::time(hour, minute, 0, 0))
                .to_zoned_datetime(now.time_zone().clone())
                .map_err(|_| invalid())?
                .timestamp();
            if stop > now.timestamp() {
                return Ok(stop);
            }
        }
        match next {
            Next::Nothing => break,
            Next::Year => year = year.checked_add(1).ok_or_else(invalid)?,
            Next::Month => {
                (year, month) = if month == 12 {
                    (year.checked_add(1).ok_or_else(invalid)?, 1)
                } else {
                    (year, month + 1)
                }
            }
            Next::Day | Next::Hour => {
                let at = DateTime::new(year, month, day, hour, 0, 0, 0).map_err(|_| invalid())?;
                let later = match next {
                    Next::Day => at.checked_add(jiff::Span::new().days(1)),
                    _ => at.checked_add(jiff::Span::new().hours(1)),
                }
                .map_err(|_| invalid())?;
                (year, month, day, hour) = (later.year(), later.month(), later.day(), later.hour());
            }
        }
    }
    match Date::new(year, month, day) {
        Ok(_) => Err(not_future(when)),
        Err(_) => Err(invalid()),
    }
}

fn not_future(when: &str) -> String {
    format!("--stop-at time is not in the future: {when}")
}

/// Which part of WHEN moves on while the time it names has passed.
#[derive(Debug, Clone, Copy)]
enum Next {
    Nothing,
    Year,
    Month,
    Day,
    Hour,
}

/// The parts WHEN gives.
#[derive(Debug, Default, PartialEq, Eq)]
struct Given {
    year: Option<i64>,
    month: Option<i8>,
    day: Option<i8>,
    hour: Option<i8>,
    minute: Option<i8>,
}

impl Given {
    fn parse(when: &str) -> Option<Given> {
        let mut given = Given::default();
        let (date, time) = match when.find(['T', 't']) {
            Some(i) => (&when[..i], Some(&when[i + 1..])),
            None if when.contains(':') => ("", Some(when)),
            None => (when, None),
        };
        if date.is_empty() && time.is_none() {
            return None;
        }
        if !date.is_empty() {
            let vals: Vec<u32> = date
                .split(['-', '/'])
                .map(|p| number(p, 4))
                .collect::<Option<_>>()?;
            let last = vals.len();
            if last > 3 {
                return None;
            }
            // The last is the day, the one before the month, the first
            // (of three) the year.
            given.day = Some(i8::try_from(vals[last - 1]).ok()?);
            if last >= 2 {
                given.month = Some(i8::try_from(vals[last - 2]).ok()?);
            }
            if last == 3 {
                given.year = Some(i64::from(vals[0]));
            }
        }
        match time {
            // (A date and its T, with no time: its midnight.)
            Some("") if !date.is_empty() => {}
            Some(t) => {
                let (h, m) = match t.split_once(':') {
                    // `:mm`, with no date.
                    Some(("", m)) if date.is_empty() && !when.starts_with(['T', 't']) => (None, m),
                    Some((h, m)) => (Some(h), m),
                    None => return None,
                };
                given.minute = Some(i8::try_from(number(m, 2)?).ok()?);
                given.hour = match h {
                    Some(h) => Some(i8::try_from(number(h, 2)?).ok()?),
                    None => None,
                };
            }
            None => {}
        }
        Some(given)
    }
}

/// A number of one to `most` digits.
fn number(s: &str, most: usize) -> Option<u32> {
    if s.is_empty() || s.len() > most || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::tz::TimeZone;

    /// Now, for these tests: Tuesday 2026-12-01 11:47:30 in UTC.
    fn now() -> ZonedDateTime {
        zoned((2026, 12, 1, 11, 47, 30), TimeZone::UTC)
    }

    /// A time, to the second, in zone `tz`.
    fn zoned((y, mo, d, h, mi, s): (i16, i8, i8, i8, i8, i8), tz: TimeZone) -> ZonedDateTime {
        DateTime::new(y, mo, d, h, mi, s, 0)
            .unwrap()
            .to_zoned_datetime(tz)
            .unwrap()
    }

    fn utc(y: i16, mo: i8, d: i8, h: i8, mi: i8) -> Timestamp {
        zoned((y, mo, d, h, mi, 0), TimeZone::UTC).timestamp()
    }

    #[test]
    fn each_part_left_out_is_the_next_that_fits() {
        let now = now();
        for (when, stop) in [
            ("2026-12-31T23:59", utc(2026, 12, 31, 23, 59)),
            ("2026/12/31t23:59", utc(2026, 12, 31, 23, 59)),
            ("27-01-02", utc(2027, 1, 2, 0, 0)),
            ("2027-01-02T", utc(2027, 1, 2, 0, 0)),
            // A month and day: this year's, or the next.
            ("12-25", utc(2026, 12, 25, 0, 0)),
            ("1-30", utc(2027, 1, 30, 0, 0)),
            ("12-01T12:00", utc(2026, 12, 1, 12, 0)),
            ("12-01T11:00", utc(2027, 12, 1, 11, 0)),
            // A day alone: this month's, or the next month that has it.
            ("2", utc(2026, 12, 2, 0, 0)),
            ("1", utc(2027, 1, 1, 0, 0)),
            ("31T08:00", utc(2026, 12, 31, 8, 0)),
            ("14", utc(2026, 12, 14, 0, 0)),
            // A time: today's, or tomorrow's.
            ("14:00", utc(2026, 12, 1, 14, 0)),
            ("T14:00", utc(2026, 12, 1, 14, 0)),
            ("11:47", utc(2026, 12, 2, 11, 47)),
            ("0:0", utc(2026, 12, 2, 0, 0)),
            // A minute: this hour's, or the next hour's.
            (":59", utc(2026, 12, 1, 11, 59)),
            (":47", utc(2026, 12, 1, 12, 47)),
            (":05", utc(2026, 12, 1, 12, 5)),
        ] {
            assert_eq!(at(when, &now), Ok(stop), "{when}");
        }
    }

    #[test]
    fn the_next_february_29th_and_31st_are_found() {
        let now = now();
        assert_eq!(at("2-29", &now), Ok(utc(2028, 2, 29, 0, 0)));
        // From the end of January the next 31st is in March.
        let jan31 = zoned((2027, 1, 31, 12, 0, 0), TimeZone::UTC);
        assert_eq!(at("31", &jan31), Ok(utc(2027, 3, 31, 0, 0)));
        assert_eq!(at("30", &jan31), Ok(utc(2027, 3, 30, 0, 0)));
        // At the end of an hour, the next minute comes in the next day.
        let late = zoned((2026, 12, 31, 23, 50, 0), TimeZone::UTC);
        assert_eq!(at(":10", &late), Ok(utc(2027, 1, 1, 0, 10)));
    }

    #[test]
    fn the_zone_is_nows() {
        let now = zoned(
            (2026, 12, 1, 11, 0, 0),
            TimeZone::fixed(jiff::tz::offset(2)),
        );
        // 14:00 at UTC+2 is 12:00 UTC.
        assert_eq!(at("14:00", &now), Ok(utc(2026, 12, 1, 12, 0)));
    }

    #[test]
    fn a_past_time_or_a_date_that_never_comes_is_refused() {
        let now = now();
        for when in ["2026-12-01T11:00", "2025-06-01", "26-11-30"] {
            let e = at(when, &now).unwrap_err();
            assert!(e.contains("not in the future"), "{when}: {e}");
        }
        for when in [
            "2027-02-30",
            "2-30",
            "13-01",
            "32",
            "24:00",
            "12:60",
            "",
            "T",
            "T14",
            "1-2-3-4",
            "2026-12-31T23",
            "2026-12-31T23:59:59",
            "2026-12-31 23:59",
            "+1",
            "12345",
            "1:2:3",
            "5-:30",
            "12-31T:30",
        ] {
            let e = at(when, &now).unwrap_err();
            assert!(e.starts_with("invalid --stop-at"), "{when}: {e}");
        }
    }

    #[test]
    fn stop_after_takes_minutes_and_fractions() {
        let now = SystemTime::now();
        assert_eq!(after("2", now), Ok(now + Duration::from_secs(120)));
        assert_eq!(after("0.5", now), Ok(now + Duration::from_secs(30)));
        for bad in ["0", "-1", "x", "", "inf", "NaN", "1e300"] {
            let e = after(bad, now).unwrap_err();
            assert!(e.starts_with("invalid --stop-after value"), "{bad}: {e}");
        }
    }
}
