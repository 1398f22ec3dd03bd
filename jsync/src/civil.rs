//! Calendar dates for the timestamps jsync writes and shows (certificate
//! validity, known-keys entries, `jcp --list-only`): UTC, since jsync reads
//! no time-zone database.

/// Seconds since the epoch (negative before it) to the UTC calendar: year,
/// month, day, hour, minute, second. Howard Hinnant's `civil_from_days`.
pub fn utc_civil(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    let rem = rem as u32;
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60)
}

/// `YYYY/MM/DD HH:MM:SS` in UTC, with `between` between the date and the
/// time (rsync's listings use a space, its `%M` a `-`).
pub fn utc_stamp(secs: i64, between: char) -> String {
    let (y, m, d, h, mi, s) = utc_civil(secs);
    format!("{y:04}/{m:02}/{d:02}{between}{h:02}:{mi:02}:{s:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(utc_civil(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(utc_civil(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(utc_civil(1_700_000_000), (2023, 11, 14, 22, 13, 20));
        assert_eq!(utc_stamp(1_700_000_000, '-'), "2023/11/14-22:13:20");
        assert_eq!(utc_stamp(0, ' '), "1970/01/01 00:00:00");
        assert_eq!(utc_stamp(-1, ' '), "1969/12/31 23:59:59");
        assert_eq!(utc_stamp(4_102_444_800, ' '), "2100/01/01 00:00:00");
        assert_eq!(utc_civil(-1), (1969, 12, 31, 23, 59, 59));
        assert_eq!(utc_civil(4_102_444_800), (2100, 1, 1, 0, 0, 0));
    }
}
