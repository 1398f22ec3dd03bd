//! `--remove-source-files`, as rsync's: the sender removes each
//! non-directory the receiver says it has in place (received, or found up to
//! date), so a sync becomes a move.
//!
//! The receiver names entries by number (`PLACED`), so the sender removes
//! only what it listed itself, and only while each is still what it listed:
//! the same kind, and for a regular file the same size and modification time
//! (rsync's check). A file changed since it was listed stays, named in an
//! error. Directories stay, as in rsync; nothing is removed in a dry run
//! (the receiver places nothing, so it names nothing).

use std::sync::Mutex;

use proto::sync::{Entry, EntryKind, StatsError};

use super::fsroot::Kind;
use super::give::GiveSpec;
use crate::error::{Error, Result};

/// What the sender listed that it may be asked to remove.
#[derive(Default)]
pub(crate) struct Removals {
    /// By entry number: each non-directory's path (relative to the base) and
    /// what was listed; `None` for directories and for what is done with.
    listed: Mutex<Vec<Option<Listed>>>,
}

struct Listed {
    path: Vec<u8>,
    kind: EntryKind,
    size: u64,
    mtime: (i64, u32),
}

impl Removals {
    /// Records the next entry of the list (entries are numbered in order).
    pub(crate) fn list(&self, e: &Entry) {
        // (Neither a directory nor a path the source lacks is removed.)
        let kept = matches!(e.kind, EntryKind::Dir | EntryKind::Missing);
        let listed = (!kept).then(|| Listed {
            path: e.path.clone(),
            kind: e.kind,
            size: e.size,
            mtime: e.mtime,
        });
        self.listed.lock().expect("poisoned").push(listed);
    }

    /// Removes the entries numbered `placed` from `spec`'s tree; returns the ones it would not or could not remove, each with why
    /// (`shown` gives the path the user sees). A number that was never
    /// listed is a protocol violation by `peer`.
    pub(crate) fn remove(
        &self,
        spec: &GiveSpec,
        placed: &[u64],
        shown: impl Fn(&[u8]) -> String,
        peer: &str,
    ) -> Result<Vec<StatsError>> {
        let mut failed = Vec::new();
        for &index in placed {
            let taken = {
                let mut listed = self.listed.lock().expect("poisoned");
                let slot = usize::try_from(index)
                    .ok()
                    .and_then(|i| listed.get_mut(i))
                    .ok_or_else(|| Error::Violation {
                        peer: peer.into(),
                        what: format!("said entry {index} is in place, which was not listed"),
                    })?;
                slot.take()
            };
            let Some(l) = taken else { continue };
            if let Err(why) = remove_one(spec, &l) {
                failed.push(StatsError {
                    path: shown(&l.path).into_bytes(),
                    message: why,
                });
            }
        }
        Ok(failed)
    }
}

/// Removes one listed entry if it is still what was listed.
fn remove_one(spec: &GiveSpec, l: &Listed) -> std::result::Result<(), String> {
    let fs = &spec.fs;
    let full = spec.entry_path(&l.path).map_err(|e| e.to_string())?;
    let Some(here) = fs.lstat(&full).map_err(|e| e.to_string())? else {
        // Gone already: nothing left to remove.
        return Ok(());
    };
    let same_kind = matches!(
        (l.kind, here.kind),
        (EntryKind::File, Kind::File)
            | (EntryKind::Symlink, Kind::Symlink)
            | (EntryKind::Fifo, Kind::Fifo)
            | (EntryKind::CharDev, Kind::CharDev)
            | (EntryKind::BlockDev, Kind::BlockDev)
    );
    let same_file = l.kind != EntryKind::File || (here.size, here.mtime) == (l.size, l.mtime);
    if !same_kind || !same_file {
        return Err("changed since it was sent: not removed".into());
    }
    fs.remove(&full)
        .map_err(|e| format!("cannot remove the source file: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::fsroot::FsRoot;

    fn entry(path: &str, kind: EntryKind, size: u64, mtime: i64) -> Entry {
        Entry {
            path: path.as_bytes().to_vec(),
            kind,
            size,
            mtime: (mtime, 0),
            ..Entry::default()
        }
    }

    #[test]
    fn removes_only_what_was_listed_and_is_unchanged() {
        let t = tempfile::tempdir().unwrap();
        let put = |name: &str, data: &[u8], mtime: i64| {
            let p = t.path().join(name);
            std::fs::write(&p, data).unwrap();
            let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime as u64);
            let f = std::fs::File::options().write(true).open(&p).unwrap();
            f.set_modified(when).unwrap();
        };
        std::fs::create_dir(t.path().join("d")).unwrap();
        put("d/same", b"abc", 100);
        put("d/grown", b"abcdef", 100);
        put("d/touched", b"abc", 200);
        std::os::unix::fs::symlink("x", t.path().join("d/link")).unwrap();
        let fs = FsRoot::open(t.path()).unwrap();
        let r = Removals::default();
        r.list(&entry("", EntryKind::Dir, 0, 0));
        r.list(&entry("same", EntryKind::File, 3, 100));
        r.list(&entry("grown", EntryKind::File, 3, 100));
        r.list(&entry("touched", EntryKind::File, 3, 100));
        r.list(&entry("link", EntryKind::Symlink, 0, 0));
        r.list(&entry("gone", EntryKind::File, 1, 1));
        let spec = GiveSpec::in_root(fs, "d/", crate::sync::give::Follow::default()).unwrap();
        let shown = |p: &[u8]| String::from_utf8_lossy(p).into_owned();
        let failed = r
            .remove(&spec, &[0, 1, 2, 3, 4, 5, 1], shown, "peer")
            .unwrap();
        let names: Vec<&[u8]> = failed.iter().map(|e| &e.path[..]).collect();
        assert_eq!(names, [&b"grown"[..], b"touched"]);
        assert!(failed[0].message.contains("changed since it was sent"));
        assert!(!t.path().join("d/same").exists());
        assert!(t.path().join("d/grown").exists() && t.path().join("d/touched").exists());
        assert!(t.path().join("d").is_dir(), "directories stay");
        assert!(std::fs::symlink_metadata(t.path().join("d/link")).is_err());
        // A number never listed is the receiver's violation.
        assert!(r.remove(&spec, &[6], shown, "peer").is_err());
    }
}
