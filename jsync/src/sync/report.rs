//! What a sync did: counts, bytes, per-file failures, and the progress hooks a
//! front end (jcp's progress bars) plugs into.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// The outcome of one sync run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// Entries (files, dirs, links) the receiver looked at.
    pub files_checked: u64,
    /// Regular files whose content was (re)built on the receiver.
    pub files_transferred: u64,
    /// The sizes of those files (in a dry run, of those it would transfer):
    /// rsync's "Total transferred file size".
    pub transferred_size: u64,
    /// Bytes of file content sent as new data (before compression).
    pub bytes_literal: u64,
    /// Bytes of file content rebuilt from data the receiver already had.
    pub bytes_reused: u64,
    /// Total size of the regular files on the sending side (each hard-linked
    /// name), and of its symlinks' targets, as rsync's "total size".
    pub total_size: u64,
    /// Bytes that crossed the connection, both directions (frames, before TLS).
    pub wire_bytes: u64,
    /// Of [`Report::wire_bytes`], those this side sent.
    pub wire_sent: u64,
    /// Of [`Report::wire_bytes`], those this side received.
    pub wire_received: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Entries removed by `--delete` (or that would be, with `--dry-run`).
    pub deleted: u64,
    /// Deletions `--max-delete` held back.
    pub deletes_skipped: u64,
    /// Files that could not be transferred, each with its path and cause.
    pub errors: Vec<FileError>,
    /// Source files that vanished before they could be sent (not errors, as in
    /// rsync, but the run is not complete either).
    pub vanished: Vec<FileError>,
    /// Things skipped on purpose that the user should know about.
    pub warnings: Vec<FileError>,
    /// What rsync says as information, hidden by `-q`: each `message` is
    /// the whole line (`skipping non-regular file "l"`, `cannot delete
    /// non-empty directory: d`).
    pub notices: Vec<FileError>,
}

/// One file that could not be synced; the others still were.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// Path relative to the transfer's root (lossy UTF-8 for display).
    pub path: String,
    /// What went wrong, in words.
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl Report {
    /// Adds the outcome of another run to this one (several sources copied
    /// one after the other make one report).
    pub fn absorb(&mut self, other: Report) {
        self.files_checked += other.files_checked;
        self.files_transferred += other.files_transferred;
        self.transferred_size += other.transferred_size;
        self.bytes_literal += other.bytes_literal;
        self.bytes_reused += other.bytes_reused;
        self.total_size += other.total_size;
        self.wire_bytes += other.wire_bytes;
        self.wire_sent += other.wire_sent;
        self.wire_received += other.wire_received;
        self.elapsed += other.elapsed;
        self.deleted += other.deleted;
        self.deletes_skipped += other.deletes_skipped;
        self.errors.extend(other.errors);
        self.vanished.extend(other.vanished);
        self.warnings.extend(other.warnings);
        self.notices.extend(other.notices);
    }

    /// Total size divided by wire bytes (rsync's "speedup"); 0 when nothing moved.
    pub fn speedup(&self) -> f64 {
        if self.wire_bytes == 0 {
            0.0
        } else {
            self.total_size as f64 / self.wire_bytes as f64
        }
    }
}

impl fmt::Display for Report {
    /// The `--stats` block, sizes in bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.stats(0).fmt(f)
    }
}

impl Report {
    /// The `--stats` block with sizes in bytes (`human` 0), in units of 1000
    /// (1: `1.30G`, rsync's `-h`) or of 1024 (2: rsync's `-hh`).
    pub fn stats(&self, human: u8) -> StatsBlock<'_> {
        StatsBlock {
            report: self,
            human,
        }
    }

    /// rsync's closing lines (`-v`, `--stats`): the bytes sent and received
    /// and their rate, the total size and the speedup; sizes with thousands
    /// separators (`human` 0) or as [`Report::stats`] shows them.
    pub fn summary(&self, human: u8, dry_run: bool) -> Summary<'_> {
        Summary {
            report: self,
            human,
            dry_run,
        }
    }
}

/// [`Report::summary`], to print.
#[derive(Debug)]
pub struct Summary<'a> {
    report: &'a Report,
    human: u8,
    dry_run: bool,
}

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.report;
        // (A number without a unit has its thousands separated, as rsync's.)
        let b = |n: u64| match size(n, self.human) {
            s if s.ends_with(|c: char| c.is_ascii_digit()) => super::with_commas(n),
            s => s,
        };
        let secs = r.elapsed.as_secs_f64().max(1e-3);
        let rate = r.wire_bytes as f64 / secs;
        let rate = match self.human {
            0 => decimal(rate),
            h => match size(rate as u64, h) {
                s if s.ends_with(|c: char| c.is_ascii_digit()) => decimal(rate),
                s => s,
            },
        };
        writeln!(
            f,
            "sent {} bytes  received {} bytes  {rate} bytes/sec",
            b(r.wire_sent),
            b(r.wire_received)
        )?;
        writeln!(
            f,
            "total size is {}  speedup is {}{}",
            b(r.total_size),
            decimal(r.speedup()),
            if self.dry_run { " (DRY RUN)" } else { "" }
        )
    }
}

/// `v` with two decimals and thousands separators: `1,234.50`.
fn decimal(v: f64) -> String {
    let hundredths = (v * 100.0).round() as u64;
    format!(
        "{}.{:02}",
        super::with_commas(hundredths / 100),
        hundredths % 100
    )
}

/// [`Report::stats`]: the `--stats` block, to print.
#[derive(Debug)]
pub struct StatsBlock<'a> {
    report: &'a Report,
    human: u8,
}

/// `n` bytes as [`Report::stats`] shows them.
fn size(n: u64, human: u8) -> String {
    const UNITS: [&str; 6] = ["", "K", "M", "G", "T", "P"];
    let step = match human {
        0 => return n.to_string(),
        1 => 1000.0,
        _ => 1024.0,
    };
    let (mut v, mut i) = (n as f64, 0);
    while v >= step && i + 1 < UNITS.len() {
        v /= step;
        i += 1;
    }
    if i == 0 {
        n.to_string()
    } else {
        format!("{v:.2}{}", UNITS[i])
    }
}

impl fmt::Display for StatsBlock<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.report;
        let b = |n| size(n, self.human);
        let secs = r.elapsed.as_secs_f64();
        writeln!(f, "Files checked:        {}", r.files_checked)?;
        writeln!(f, "Files transferred:    {}", r.files_transferred)?;
        writeln!(f, "Transferred size:     {} bytes", b(r.transferred_size))?;
        writeln!(f, "Total file size:      {} bytes", b(r.total_size))?;
        writeln!(f, "Literal data:         {} bytes", b(r.bytes_literal))?;
        writeln!(f, "Reused data:          {} bytes", b(r.bytes_reused))?;
        writeln!(f, "Bytes on the wire:    {} bytes", b(r.wire_bytes))?;
        writeln!(f, "Elapsed:              {secs:.3} s")?;
        writeln!(f, "Speed-up:             {:.2}", r.speedup())?;
        if r.deleted > 0 {
            writeln!(f, "Deleted:              {}", r.deleted)?;
        }
        if !r.errors.is_empty() {
            writeln!(f, "Failed files:         {}", r.errors.len())?;
        }
        if !r.vanished.is_empty() {
            writeln!(f, "Vanished files:       {}", r.vanished.len())?;
        }
        Ok(())
    }
}

/// Hooks for progress display; every method has a no-op default. Called from
/// many tasks at once.
pub trait Progress: Send + Sync {
    /// The sender found another entry; `size` is its content size (0 for dirs).
    fn found(&self, _path: &str, _size: u64) {}
    /// The file list is complete.
    fn walk_done(&self) {}
    /// A file transfer starts (content will be rebuilt), `size` bytes.
    fn file_started(&self, _path: &str, _size: u64) {}
    /// `n` more bytes of `path` were written on the receiver (new or reused).
    fn file_progress(&self, _path: &str, _n: u64) {}
    /// A file is finished (transferred, skipped or failed).
    fn file_done(&self, _path: &str, _size: u64) {}
    /// The receiver made `dirs` directories to put the destination in
    /// place (a dry run: would make), the destination itself among them or,
    /// where a single file takes the destination's name, only its parents
    /// (`itself` false); before any [`Progress::itemize`] line. For rsync's
    /// "created directory DST", which only the caller can word.
    fn made_destination(&self, _dirs: u64, _itself: bool) {}
    /// One itemized change (`-i`), in rsync's `-i` format (`>f.st...... NAME`); also
    /// used for `-n` listings.
    fn itemize(&self, _line: &str) {}
    /// The same change in [`super::SyncOptions::log_format`], when one is
    /// given: a line for a log file.
    fn log_item(&self, _line: &str) {}
}

/// Progress hooks show as their trait in the `Debug` of what holds them
/// ([`super::SyncOptions`]): they may be any type.
impl std::fmt::Debug for dyn Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dyn Progress")
    }
}

/// The progress sink that does nothing.
#[derive(Debug, Default)]
pub struct NoProgress;
impl Progress for NoProgress {}

/// Counters the engine updates while it runs, turned into a [`Report`] at the end.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub files_checked: AtomicU64,
    pub files_transferred: AtomicU64,
    pub transferred_size: AtomicU64,
    pub bytes_literal: AtomicU64,
    pub bytes_reused: AtomicU64,
    pub total_size: AtomicU64,
    pub deleted: AtomicU64,
    pub deletes_skipped: AtomicU64,
    pub errors: Mutex<Vec<FileError>>,
    pub vanished: Mutex<Vec<FileError>>,
    pub warnings: Mutex<Vec<FileError>>,
    pub notices: Mutex<Vec<FileError>>,
}

impl Counters {
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn error(&self, path: &str, message: impl Into<String>) {
        push(&self.errors, path, message.into());
    }

    pub(crate) fn vanished(&self, path: &str, message: impl Into<String>) {
        push(&self.vanished, path, message.into());
    }

    pub(crate) fn warning(&self, path: &str, message: impl Into<String>) {
        push(&self.warnings, path, message.into());
    }

    /// A [`Report::notices`] line about `path`: the first
    /// [`proto::sync::MAX_ERRORS`], as many as a server's report carries.
    pub(crate) fn notice(&self, path: &str, line: String) {
        let mut notices = self.notices.lock().expect("poisoned");
        if notices.len() < proto::sync::MAX_ERRORS {
            notices.push(FileError {
                path: fits_report(path),
                message: line,
            });
        }
    }
}

fn push(list: &Mutex<Vec<FileError>>, path: &str, message: String) {
    // Errors from confined file operations already start with the path, or
    // with its end: the path beneath the directory being written, which is
    // a root of its own (`src/f: f: cannot write` said it twice).
    let named = |head: &str| {
        path.strip_suffix(head)
            .is_some_and(|above| above.is_empty() || above.ends_with('/'))
    };
    let rest = message
        .strip_prefix(path)
        .and_then(|m| m.strip_prefix(": "))
        .or_else(|| {
            let (head, rest) = message.split_once(": ")?;
            (!head.is_empty() && named(head)).then_some(rest)
        });
    let message = match rest {
        Some(rest) if !path.is_empty() => rest.to_string(),
        _ => message,
    };
    list.lock().expect("poisoned").push(FileError {
        path: fits_report(path),
        message,
    });
}

/// `path` as a report carries it: at most [`proto::sync::MAX_PATH`] bytes
/// (a shown path, with its prefix and escapes, can be longer than the
/// entry's; a longer one would fail the report, and so the whole run, at
/// the other side), cut at a character with `...`.
fn fits_report(path: &str) -> String {
    let max = proto::sync::MAX_PATH;
    if path.len() <= max {
        return path.to_string();
    }
    let mut end = max - 3;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &path[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message that starts with its path, or with the path's end (beneath
    /// a directory that was a root of its own), says it once.
    #[test]
    fn an_error_names_its_path_once() {
        let c = Counters::default();
        for (path, message) in [
            ("src/f19", "f19: cannot write: No space left on device"),
            ("src/f19", "src/f19: cannot write: No space left on device"),
            ("a: b", "a: b: cannot write: No space left on device"),
            ("src/pf", "new: cannot create a temp file"),
            ("src/xf19", "f19: cannot write"),
            ("src/f19", "cannot write"),
        ] {
            c.error(path, message);
        }
        let said: Vec<String> = c
            .errors
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.message.clone())
            .collect();
        assert_eq!(
            said,
            [
                "cannot write: No space left on device",
                "cannot write: No space left on device",
                "cannot write: No space left on device",
                "new: cannot create a temp file",
                "f19: cannot write",
                "cannot write",
            ]
        );
    }

    #[test]
    fn a_path_longer_than_a_report_carries_is_cut() {
        let long = format!("{}é{}", "a".repeat(4090), "b".repeat(100));
        let cut = fits_report(&long);
        assert!(
            cut.len() <= proto::sync::MAX_PATH && cut.ends_with("..."),
            "{}",
            cut.len()
        );
        assert!(cut.starts_with(&"a".repeat(4090)));
        assert_eq!(fits_report("short"), "short");
    }

    #[test]
    fn stats_sizes_in_bytes_or_human_units() {
        let r = Report {
            total_size: 1_304_000_000,
            transferred_size: 2_000,
            bytes_literal: 999,
            bytes_reused: 1536,
            wire_bytes: 8_791_060,
            ..Report::default()
        };
        let plain = r.stats(0).to_string();
        assert_eq!(plain, r.to_string());
        assert!(
            plain.contains("Total file size:      1304000000 bytes"),
            "{plain}"
        );
        let h = r.stats(1).to_string();
        assert!(h.contains("Total file size:      1.30G bytes"), "{h}");
        assert!(h.contains("Literal data:         999 bytes"), "{h}");
        assert!(h.contains("Transferred size:     2.00K bytes"), "{h}");
        assert!(h.contains("Reused data:          1.54K bytes"), "{h}");
        assert!(h.contains("Bytes on the wire:    8.79M bytes"), "{h}");
        let r = Report {
            wire_sent: 8_000_000,
            wire_received: 791_060,
            elapsed: Duration::from_millis(500),
            ..r
        };
        assert_eq!(
            r.summary(0, false).to_string(),
            "sent 8,000,000 bytes  received 791,060 bytes  17,582,120.00 bytes/sec\n\
             total size is 1,304,000,000  speedup is 148.33\n"
        );
        assert_eq!(
            r.summary(1, true).to_string(),
            "sent 8.00M bytes  received 791.06K bytes  17.58M bytes/sec\n\
             total size is 1.30G  speedup is 148.33 (DRY RUN)\n"
        );
        let under_a_kib = Report {
            wire_sent: 1_000,
            ..Report::default()
        };
        assert!(under_a_kib
            .summary(2, false)
            .to_string()
            .starts_with("sent 1,000 bytes  received 0 bytes"));
        let small = Report {
            wire_bytes: 445,
            wire_sent: 322,
            wire_received: 123,
            total_size: 10,
            elapsed: Duration::from_millis(500),
            ..Report::default()
        };
        // (rsync's own words for a small local copy.)
        assert_eq!(
            small.summary(1, false).to_string(),
            "sent 322 bytes  received 123 bytes  890.00 bytes/sec\n\
             total size is 10  speedup is 0.02\n"
        );
        let hh = r.stats(2).to_string();
        assert!(hh.contains("Reused data:          1.50K bytes"), "{hh}");
        assert!(hh.contains("Total file size:      1.21G bytes"), "{hh}");
    }
}
