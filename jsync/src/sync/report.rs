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
    /// Bytes of file content sent as new data (before compression).
    pub bytes_literal: u64,
    /// Bytes of file content rebuilt from data the receiver already had.
    pub bytes_reused: u64,
    /// Total size of the regular files on the sending side.
    pub total_size: u64,
    /// Bytes that crossed the connection, both directions (frames, before TLS).
    pub wire_bytes: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Entries removed by `--delete` (or that would be, with `--dry-run`).
    pub deleted: u64,
    /// Files that could not be transferred, each with its path and cause.
    pub errors: Vec<FileError>,
    /// Source files that vanished before they could be sent (not errors, as in
    /// rsync, but the run is not complete either).
    pub vanished: Vec<FileError>,
    /// Things skipped on purpose that the user should know about.
    pub warnings: Vec<FileError>,
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
        self.bytes_literal += other.bytes_literal;
        self.bytes_reused += other.bytes_reused;
        self.total_size += other.total_size;
        self.wire_bytes += other.wire_bytes;
        self.elapsed += other.elapsed;
        self.deleted += other.deleted;
        self.errors.extend(other.errors);
        self.vanished.extend(other.vanished);
        self.warnings.extend(other.warnings);
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
    /// The `--stats` block.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        writeln!(f, "Files checked:        {}", self.files_checked)?;
        writeln!(f, "Files transferred:    {}", self.files_transferred)?;
        writeln!(f, "Total file size:      {} bytes", self.total_size)?;
        writeln!(f, "Literal data:         {} bytes", self.bytes_literal)?;
        writeln!(f, "Reused data:          {} bytes", self.bytes_reused)?;
        writeln!(f, "Bytes on the wire:    {} bytes", self.wire_bytes)?;
        writeln!(f, "Elapsed:              {secs:.3} s")?;
        writeln!(f, "Speed-up:             {:.2}", self.speedup())?;
        if self.deleted > 0 {
            writeln!(f, "Deleted:              {}", self.deleted)?;
        }
        if !self.errors.is_empty() {
            writeln!(f, "Failed files:         {}", self.errors.len())?;
        }
        if !self.vanished.is_empty() {
            writeln!(f, "Vanished files:       {}", self.vanished.len())?;
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
    /// One itemized change (`-i`), in the format of [`super::itemize`]; also
    /// used for `-n` listings.
    fn itemize(&self, _line: &str) {}
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
    pub bytes_literal: AtomicU64,
    pub bytes_reused: AtomicU64,
    pub total_size: AtomicU64,
    pub deleted: AtomicU64,
    pub errors: Mutex<Vec<FileError>>,
    pub vanished: Mutex<Vec<FileError>>,
    pub warnings: Mutex<Vec<FileError>>,
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
}

fn push(list: &Mutex<Vec<FileError>>, path: &str, message: String) {
    // Errors from confined file operations already start with the path.
    let message = match message
        .strip_prefix(path)
        .and_then(|m| m.strip_prefix(": "))
    {
        Some(rest) if !path.is_empty() => rest.to_string(),
        _ => message,
    };
    list.lock().expect("poisoned").push(FileError {
        path: path.to_string(),
        message,
    });
}
