//! What the user sees while jcp runs: an overall bar (bytes, files, rate, ETA) and a
//! bar per large file, drawn with indicatif; and with `-i`, `-v`, `--out-format`
//! (or `-n`) one line per change, on stdout as rsync prints them.
//!
//! The sync engine calls the [`Progress`] hooks from many tasks, once per chunk, so
//! the hooks only touch atomics; the per-file map is locked only while a large file
//! is in flight, and indicatif's draw-rate limit decides when anything is drawn.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};
use jsync::sync::Progress;

use crate::args::ShowProgress;

/// Files at least this large get a bar of their own.
const LARGE_FILE: u64 = 8 << 20;
/// How often the overall bar's length follows the totals found so far.
const LENGTH_SYNC_MS: u64 = 50;

/// The progress display (or just the lines of changes when bars are off).
#[derive(Debug)]
pub struct Display {
    counts: Arc<Counts>,
    bars: Option<Bars>,
    itemize: bool,
    /// `--log-file`: where each change (and the run's start, errors and
    /// totals, through [`Display::log`]) is appended.
    log: Option<Mutex<std::fs::File>>,
    start: Instant,
    last_length_sync_ms: AtomicU64,
    /// The destination as typed, and whether `--mkpath` was given: for
    /// rsync's "created directory" line ([`made_line`]).
    destination: Option<(Vec<u8>, bool)>,
    /// That line was printed (several sources' runs each say it in a dry run).
    made_said: AtomicBool,
}

#[derive(Debug, Default)]
struct Counts {
    found_files: AtomicU64,
    found_bytes: AtomicU64,
    started_files: AtomicU64,
    started_bytes: AtomicU64,
    done_files: AtomicU64,
}

impl Counts {
    /// Files known so far: on a pull the local side never sees the file list, only
    /// the transfers, so take whichever count is larger.
    fn files_known(&self) -> u64 {
        self.found_files
            .load(Relaxed)
            .max(self.started_files.load(Relaxed))
    }

    fn bytes_known(&self) -> u64 {
        self.found_bytes
            .load(Relaxed)
            .max(self.started_bytes.load(Relaxed))
    }
}

#[derive(Debug)]
struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    per_file: Mutex<HashMap<String, ProgressBar>>,
    /// Entries in `per_file`, so small files never take the lock.
    large_active: AtomicUsize,
}

impl Display {
    /// A display drawing bars as `show` says, printing the lines of changes
    /// (itemized, `-v`'s names or an `--out-format`'s) when `itemize`.
    pub fn new(show: ShowProgress, itemize: bool) -> Display {
        let counts = Arc::new(Counts::default());
        let terminal = std::io::stderr().is_terminal();
        let target = match show {
            ShowProgress::Never => None,
            ShowProgress::IfTerminal if !terminal => None,
            ShowProgress::IfTerminal => Some(ProgressDrawTarget::stderr()),
            ShowProgress::Always if terminal => Some(ProgressDrawTarget::stderr()),
            ShowProgress::Always => Some(ProgressDrawTarget::term_like_with_hz(
                Box::new(RawStderr),
                4,
            )),
        };
        let bars = target.map(|t| Bars::new(t, counts.clone()));
        Display {
            counts,
            bars,
            itemize,
            log: None,
            start: Instant::now(),
            last_length_sync_ms: AtomicU64::new(0),
            destination: None,
            made_said: AtomicBool::new(false),
        }
    }

    /// This display, saying as rsync does when the run makes the
    /// destination `typed` (as the user typed it; `mkpath`: `--mkpath` was
    /// given, whose wording rsync uses then).
    pub fn with_destination(mut self, typed: &[u8], mkpath: bool) -> Display {
        self.destination = Some((typed.to_vec(), mkpath));
        self
    }

    /// This display, also appending to `log` (`--log-file`).
    pub fn with_log(mut self, log: std::fs::File) -> Display {
        self.log = Some(Mutex::new(log));
        self
    }

    /// Whether this display does anything at all.
    pub fn is_active(&self) -> bool {
        self.bars.is_some() || self.itemize || self.log.is_some()
    }

    /// Appends `line` to the log file, if there is one, after the time (UTC,
    /// as rsync's `YYYY/MM/DD HH:MM:SS`) and jcp's process id. A log that
    /// cannot be written does not stop the copy.
    pub fn log(&self, line: &str) {
        let Some(log) = &self.log else { return };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let stamp = jsync::civil::utc_stamp(now, ' ');
        // One write per line, so that runs sharing the file do not mix
        // their lines (the file is opened for appending).
        let line = format!("{stamp} [{}] {line}\n", std::process::id());
        let _ = log.lock().expect("poisoned").write_all(line.as_bytes());
    }

    /// Ends the display: per-file bars vanish, the overall bar stays as a summary
    /// line, full when `ok`.
    pub fn finish(&self, ok: bool) {
        let Some(bars) = &self.bars else { return };
        self.sync_length(true);
        for (_, pb) in bars.per_file.lock().expect("poisoned").drain() {
            pb.finish_and_clear();
        }
        if ok {
            bars.overall.finish();
        } else {
            bars.overall.abandon();
        }
    }

    /// Moves the overall bar's length to the total known so far, at most every
    /// [`LENGTH_SYNC_MS`] unless `force` (setting it takes indicatif's lock).
    fn sync_length(&self, force: bool) {
        let Some(bars) = &self.bars else { return };
        let now = self.start.elapsed().as_millis() as u64;
        let last = self.last_length_sync_ms.load(Relaxed);
        let due = now >= last + LENGTH_SYNC_MS
            && self
                .last_length_sync_ms
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok();
        if force || due {
            bars.overall.set_length(self.counts.bytes_known());
        }
    }
}

impl Bars {
    fn new(target: ProgressDrawTarget, counts: Arc<Counts>) -> Bars {
        let multi = MultiProgress::with_draw_target(target);
        let style = ProgressStyle::with_template(
            "{spinner:.green} [{elapsed_precise}] [{wide_bar:.cyan/blue}] \
             {bytes}/{total_bytes} {files} {binary_bytes_per_sec} ETA {eta}",
        )
        .expect("valid template")
        .with_key(
            "files",
            move |_: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(
                    w,
                    "{}/{}",
                    counts.done_files.load(Relaxed),
                    counts.files_known()
                );
            },
        )
        .progress_chars("=> ");
        let overall = multi.add(ProgressBar::new(0).with_style(style));
        overall.enable_steady_tick(Duration::from_millis(200));
        Bars {
            multi,
            overall,
            per_file: Mutex::new(HashMap::new()),
            large_active: AtomicUsize::new(0),
        }
    }

    fn file_bar(&self, path: &str, size: u64) -> ProgressBar {
        let style = ProgressStyle::with_template(
            "  {wide_msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec}",
        )
        .expect("valid template")
        .progress_chars("=> ");
        self.multi.add(
            ProgressBar::new(size)
                .with_style(style)
                .with_message(path.to_string()),
        )
    }
}

impl Progress for Display {
    fn found(&self, _path: &str, size: u64) {
        self.counts.found_files.fetch_add(1, Relaxed);
        self.counts.found_bytes.fetch_add(size, Relaxed);
        self.sync_length(false);
    }

    fn walk_done(&self) {
        self.sync_length(true);
    }

    fn file_started(&self, path: &str, size: u64) {
        self.counts.started_files.fetch_add(1, Relaxed);
        self.counts.started_bytes.fetch_add(size, Relaxed);
        self.sync_length(false);
        if let Some(bars) = &self.bars {
            if size >= LARGE_FILE {
                let pb = bars.file_bar(path, size);
                let mut map = bars.per_file.lock().expect("poisoned");
                match map.insert(path.to_string(), pb) {
                    Some(old) => old.finish_and_clear(),
                    None => {
                        bars.large_active.fetch_add(1, Relaxed);
                    }
                }
            }
        }
    }

    fn file_progress(&self, path: &str, n: u64) {
        let Some(bars) = &self.bars else { return };
        bars.overall.inc(n);
        if bars.large_active.load(Relaxed) > 0 {
            if let Some(pb) = bars.per_file.lock().expect("poisoned").get(path) {
                pb.inc(n);
            }
        }
    }

    fn log_item(&self, line: &str) {
        self.log(line);
    }

    fn made_destination(&self, dirs: u64, itself: bool) {
        let Some((typed, mkpath)) = &self.destination else {
            return;
        };
        if !self.itemize {
            return;
        }
        let Some(line) = made_line(typed, dirs, itself, *mkpath) else {
            return;
        };
        if !self.made_said.swap(true, Relaxed) {
            self.log(&line);
            self.itemize(&line);
        }
    }

    fn itemize(&self, line: &str) {
        if !self.itemize {
            return;
        }
        // stdout, as rsync: a closed stdout (`jcp -i ... | head`) must not panic.
        let print = || {
            let _ = writeln!(std::io::stdout().lock(), "{line}");
        };
        match &self.bars {
            Some(bars) => bars.multi.suspend(print),
            None => print(),
        }
    }

    fn file_done(&self, path: &str, _size: u64) {
        self.counts.done_files.fetch_add(1, Relaxed);
        let Some(bars) = &self.bars else { return };
        if bars.large_active.load(Relaxed) > 0 {
            let removed = bars.per_file.lock().expect("poisoned").remove(path);
            if let Some(pb) = removed {
                bars.large_active.fetch_sub(1, Relaxed);
                pb.finish_and_clear();
                bars.multi.remove(&pb);
            }
        }
    }
}

/// rsync's line for the directories a run made to put the destination
/// `typed` in place: "created directory DST" for the destination alone, as
/// rsync's; otherwise its `--mkpath` line, "created N directories for DST"
/// (only DST's parents, "for PARENT", where a file takes DST's name). None
/// when nothing was made.
fn made_line(typed: &[u8], dirs: u64, itself: bool, mkpath: bool) -> Option<String> {
    let trimmed = match typed.iter().rposition(|&b| b != b'/') {
        Some(end) => &typed[..=end],
        None => typed,
    };
    let named = match itself {
        true => trimmed,
        false => &trimmed[..trimmed.iter().rposition(|&b| b == b'/')?],
    };
    let named = jsync::sync::escape_name(named);
    match dirs {
        0 => None,
        1 if itself && !mkpath => Some(format!("created directory {named}")),
        1 => Some(format!("created 1 directory for {named}")),
        n => Some(format!("created {n} directories for {named}")),
    }
}

/// stderr drawn with ANSI cursor moves whether or not it is a terminal, for
/// `--progress` when stderr is a pipe or a file.
#[derive(Debug)]
struct RawStderr;

impl RawStderr {
    fn put(&self, s: &str) -> std::io::Result<()> {
        std::io::stderr().lock().write_all(s.as_bytes())
    }

    fn cursor(&self, n: usize, code: char) -> std::io::Result<()> {
        if n == 0 {
            Ok(())
        } else {
            self.put(&format!("\x1b[{n}{code}"))
        }
    }
}

impl TermLike for RawStderr {
    fn width(&self) -> u16 {
        std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(100)
    }

    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        self.cursor(n, 'A')
    }

    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        self.cursor(n, 'B')
    }

    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        self.cursor(n, 'C')
    }

    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        self.cursor(n, 'D')
    }

    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.put(&format!("{s}\n"))
    }

    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.put(s)
    }

    fn clear_line(&self) -> std::io::Result<()> {
        self.put("\r\x1b[2K")
    }

    fn flush(&self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// rsync's words for what was made, the destination named as typed.
    #[test]
    fn made_lines_as_rsync() {
        for (typed, dirs, itself, mkpath, want) in [
            ("new/", 0, true, false, None),
            ("new/", 1, true, false, Some("created directory new")),
            (
                "/tmp/a/new",
                1,
                true,
                true,
                Some("created 1 directory for /tmp/a/new"),
            ),
            (
                "a/b/new",
                3,
                true,
                false,
                Some("created 3 directories for a/b/new"),
            ),
            (
                "a/b/name",
                2,
                false,
                false,
                Some("created 2 directories for a/b"),
            ),
            ("/", 1, true, false, Some("created directory /")),
            ("name", 1, false, false, None),
        ] {
            let got = made_line(typed.as_bytes(), dirs, itself, mkpath);
            assert_eq!(got.as_deref(), want, "{typed} {dirs} {itself} {mkpath}");
        }
    }

    #[test]
    fn counts_without_bars_and_large_files_get_and_lose_a_bar() {
        let d = Display::new(ShowProgress::Never, false);
        assert!(!d.is_active());
        d.found("a", 10);
        d.file_started("a", 10);
        d.file_progress("a", 10);
        d.file_done("a", 10);
        assert_eq!(d.counts.files_known(), 1);
        assert_eq!(d.counts.bytes_known(), 10);

        let target = ProgressDrawTarget::hidden();
        let d = Display {
            bars: Some(Bars::new(target, Arc::new(Counts::default()))),
            ..Display::new(ShowProgress::Never, false)
        };
        d.file_started("big", LARGE_FILE);
        d.file_started("small", 1);
        let bars = d.bars.as_ref().unwrap();
        assert_eq!(bars.large_active.load(Relaxed), 1);
        d.file_progress("big", 1 << 20);
        assert_eq!(bars.per_file.lock().unwrap()["big"].position(), 1 << 20);
        d.file_done("small", 1);
        d.file_done("big", LARGE_FILE);
        assert_eq!(bars.large_active.load(Relaxed), 0);
        d.finish(true);
    }
}
