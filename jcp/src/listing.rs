//! `jcp --list-only` (and `jcp SRC` alone): each entry on a line as rsync
//! prints it, `ls -l` style: permissions, size, modification time, path
//! (`name -> target` for a symlink). Times are UTC (jcp reads no time-zone
//! database).

use proto::sync::{Entry, EntryKind};

/// One entry's line: `drwxr-xr-x          4,096 2024/01/01 12:00:00 path`.
pub fn line(e: &Entry) -> String {
    let mut path = String::from_utf8_lossy(&e.path).into_owned();
    if e.kind == EntryKind::Symlink {
        path.push_str(" -> ");
        path.push_str(&String::from_utf8_lossy(&e.target));
    }
    format!(
        "{} {:>14} {} {path}",
        mode_string(e.kind, e.mode),
        with_commas(e.size),
        date(e.mtime.0)
    )
}

/// `drwxr-sr-t` and the like, as `ls -l` shows a kind and mode.
fn mode_string(kind: EntryKind, mode: u32) -> String {
    let kind = match kind {
        EntryKind::Dir => 'd',
        EntryKind::Symlink => 'l',
        EntryKind::Fifo => 'p',
        EntryKind::CharDev => 'c',
        EntryKind::BlockDev => 'b',
        EntryKind::File => '-',
    };
    let mut s = String::with_capacity(10);
    s.push(kind);
    // (bit for r, w, x; the special bit shown in the x place; its letter)
    let triads = [(6, 0o4000, 's'), (3, 0o2000, 's'), (0, 0o1000, 't')];
    for (shift, special, letter) in triads {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        let x = bits & 1 != 0;
        s.push(match (mode & special != 0, x) {
            (true, true) => letter,
            (true, false) => letter.to_ascii_uppercase(),
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    s
}

/// `1,234,567`, as rsync prints sizes.
fn with_commas(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `YYYY/MM/DD HH:MM:SS` in UTC for seconds since the epoch.
fn date(secs: i64) -> String {
    let (y, m, d, h, mi, s) = jsync::civil::utc_civil(secs);
    format!("{y:04}/{m:02}/{d:02} {h:02}:{mi:02}:{s:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_as_rsyncs() {
        let e = Entry {
            path: b"dir/f".to_vec(),
            kind: EntryKind::File,
            mode: 0o644,
            size: 1_234_567,
            mtime: (1_704_067_200, 0),
            ..Entry::default()
        };
        assert_eq!(
            line(&e),
            "-rw-r--r--      1,234,567 2024/01/01 00:00:00 dir/f"
        );
        let l = Entry {
            path: b"l".to_vec(),
            kind: EntryKind::Symlink,
            mode: 0o777,
            mtime: (951_782_400 + 86_399, 0),
            target: b"t".to_vec(),
            ..Entry::default()
        };
        assert_eq!(
            line(&l),
            "lrwxrwxrwx              0 2000/02/29 23:59:59 l -> t"
        );
    }

    #[test]
    fn modes_sizes_and_dates() {
        assert_eq!(mode_string(EntryKind::Dir, 0o2755), "drwxr-sr-x");
        assert_eq!(mode_string(EntryKind::Dir, 0o1777), "drwxrwxrwt");
        assert_eq!(mode_string(EntryKind::File, 0o4644), "-rwSr--r--");
        assert_eq!(mode_string(EntryKind::Fifo, 0), "p---------");
        assert_eq!(with_commas(0), "0");
        assert_eq!(with_commas(999), "999");
        assert_eq!(with_commas(1000), "1,000");
        assert_eq!(date(0), "1970/01/01 00:00:00");
        assert_eq!(date(-1), "1969/12/31 23:59:59");
        assert_eq!(date(4_102_444_800), "2100/01/01 00:00:00");
    }
}
