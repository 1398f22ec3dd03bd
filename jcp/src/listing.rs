//! `jcp --list-only` (and `jcp SRC` alone): each entry on a line as rsync
//! prints it, `ls -l` style: permissions, size, modification time, path
//! (`name -> target` for a symlink). Times are UTC (jcp reads no time-zone
//! database).

use jsync::sync::{escape_name, mode_string, with_commas};
use proto::sync::{Entry, EntryKind};

/// One entry's line: `drwxr-xr-x          4,096 2024/01/01 12:00:00 path`.
pub fn line(e: &Entry) -> String {
    let mut path = escape_name(&e.path).into_owned();
    if e.kind == EntryKind::Symlink {
        path.push_str(" -> ");
        path.push_str(&escape_name(&e.target));
    }
    format!(
        "{} {:>14} {} {path}",
        mode_string(e.kind, e.mode),
        with_commas(e.shown_size()),
        jsync::civil::utc_stamp(e.mtime.0, ' ')
    )
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
            "lrwxrwxrwx              1 2000/02/29 23:59:59 l -> t"
        );
    }
}
