//! `--backup`: what the receiver is about to replace or delete is kept, as
//! rsync keeps it: beside it under a suffix (`name~`), or in a backup
//! directory that mirrors the destination's tree (`--backup-dir`).
//!
//! A file about to be replaced is hard-linked to its backup name first, so
//! the destination never lacks it (the new content is then renamed over it,
//! as always); what `--delete` removes, or what is in the way of an entry of
//! another kind, is renamed to its backup name, a directory with all it
//! holds. Both need the backup on the destination's filesystem, which is
//! checked before the run starts. A backup that cannot be made leaves its
//! entry as it was, and that entry fails alone. On a server the backup
//! directory must lie beneath the root.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use super::destdir::{at_or_above, open_side_dir, strip, DestMap, Made};
use super::fsroot::{FsError, FsRoot, Kind, RelPath};
use crate::error::{Error, Result};

/// The backup suffix when there is no backup directory (rsync's).
pub const DEFAULT_SUFFIX: &str = "~";

/// What `--backup`, `--backup-dir` and `--suffix` ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backup {
    /// Where backups go: beside what they keep (`None`), or this directory.
    /// A relative one is taken from the destination directory. On a server
    /// it must lie beneath the root, and an absolute one is taken from the
    /// root.
    pub dir: Option<String>,
    /// Added to each backup's name.
    pub suffix: String,
}

impl Backup {
    /// `--backup` with an optional `--backup-dir` and `--suffix`: the suffix
    /// defaults to `~` beside the file and to nothing in a backup directory.
    pub fn new(dir: Option<String>, suffix: Option<String>) -> std::result::Result<Backup, String> {
        let b = Backup {
            suffix: suffix
                .unwrap_or_else(|| if dir.is_some() { "" } else { DEFAULT_SUFFIX }.to_string()),
            dir,
        };
        b.check()?;
        Ok(b)
    }

    /// Refuses what cannot work: a suffix with a `/` or a NUL, an empty
    /// suffix without a backup directory (the backup would be the file
    /// itself), an empty directory name.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.suffix.contains(['/', '\0']) {
            return Err(format!(
                "--suffix {:?}: a suffix cannot hold '/'",
                self.suffix
            ));
        }
        match &self.dir {
            None if self.suffix.is_empty() => {
                Err("--suffix cannot be empty without --backup-dir: the backup would be the file itself".into())
            }
            Some(d) if d.is_empty() || d.contains('\0') => {
                Err(format!("--backup-dir {d:?}: not a usable directory name"))
            }
            _ => Ok(()),
        }
    }
}

/// A [`Backup`] resolved for one run of the receiver.
pub(crate) struct Backups {
    /// The backup directory's root; `None`: beside what is kept, in the
    /// receiver's own root.
    dir: Option<Arc<FsRoot>>,
    suffix: OsString,
    /// Where the receiver's entries go: backups in a directory mirror the
    /// tree beneath the destination directory.
    map: DestMap,
    /// The backup directory's path beneath the receiver's root, when it
    /// lies there: `--delete` leaves it alone.
    inside: Option<RelPath>,
    /// The directories made for the backup directory: gone again at the
    /// end if no backup went into them (rsync makes it only for a backup).
    made: Made,
    /// Backups made beside their files are safe from `--delete`.
    protect_suffixed: bool,
}

impl Backups {
    /// Resolves `spec` for a receiver placing entries by `map` beneath
    /// `top`, the destination's root. `confined`: the receiver is a server,
    /// and the backup directory must lie beneath `top`. The directory is
    /// made if missing.
    pub(crate) fn open(
        spec: &Backup,
        top: &Arc<FsRoot>,
        map: DestMap,
        confined: bool,
        protect_suffixed: bool,
    ) -> Result<Backups> {
        spec.check().map_err(Error::Usage)?;
        let mut out = Backups {
            dir: None,
            suffix: OsString::from(&spec.suffix),
            map,
            inside: None,
            protect_suffixed: false,
            made: Made::None,
        };
        let Some(name) = &spec.dir else {
            out.protect_suffixed = protect_suffixed;
            return Ok(out);
        };
        let named = |what: &str| Error::Fs(format!("--backup-dir {name}: {what}"));
        let dir = open_side_dir("--backup-dir", name, top, &out.map, confined, true)?
            .ok_or_else(|| named("not made"))?;
        let err = |e: FsError| named(&e.to_string());
        if dir.fs.dev().map_err(err)? != top.dev().map_err(err)? {
            return Err(named(
                "on another filesystem than the destination (backups are made by hard links and renames)",
            ));
        }
        if let Some(at) = &dir.at {
            if at == &out.map.work || at == &out.map.dest {
                return Err(named(
                    "is the destination itself: backups would replace what they keep",
                ));
            }
            out.inside = strip(at, &out.map.work);
        }
        out.dir = Some(dir.fs);
        out.made = dir.made;
        Ok(out)
    }

    /// At the end of the run: a backup directory this run made and put
    /// nothing into is removed, as rsync, which makes it only for a backup,
    /// would not have made it.
    pub(crate) fn remove_if_unused(&self) {
        self.made.remove_if_empty();
    }

    /// Where `rel` (beneath the receiver's root) is kept, and in which root.
    fn target<'a>(&'a self, fs: &'a FsRoot, rel: &RelPath) -> (&'a FsRoot, RelPath) {
        match &self.dir {
            None => (fs, self.suffixed(rel)),
            Some(dir) => (dir, self.suffixed(&self.map.under_dest(rel))),
        }
    }

    /// `rel` with the suffix added to its name.
    fn suffixed(&self, rel: &RelPath) -> RelPath {
        let mut last = rel.file_name().unwrap_or_default().to_os_string();
        last.push(&self.suffix);
        rel.parent().unwrap_or_else(RelPath::root).join(&last)
    }

    /// Instead of removing the receiver's root itself, `work` beneath
    /// `top` (a file where a directory is to be made): moves it to its
    /// backup name.
    pub(crate) fn keep_top(&self, top: &FsRoot, work: &RelPath) -> std::result::Result<(), String> {
        let (root, to) = match &self.dir {
            None => (top, self.suffixed(work)),
            Some(_) => self.target(top, &RelPath::root()),
        };
        self.keep(top, work, root, &to, false)
    }

    /// Before `rel` (beneath the receiver's root, `fs`) is replaced by new
    /// content: links it to its backup name (a directory is moved there).
    pub(crate) fn keep_replaced(
        &self,
        fs: &FsRoot,
        rel: &RelPath,
    ) -> std::result::Result<(), String> {
        let (root, to) = self.target(fs, rel);
        self.keep(fs, rel, root, &to, true)
    }

    /// Instead of removing `rel`: moves it (a directory with all it holds)
    /// to its backup name.
    pub(crate) fn keep_removed(
        &self,
        fs: &FsRoot,
        rel: &RelPath,
    ) -> std::result::Result<(), String> {
        let (root, to) = self.target(fs, rel);
        self.keep(fs, rel, root, &to, false)
    }

    /// Links (`link`, unless `rel` is a directory) or moves `rel` to `to`
    /// beneath `root`, making `to`'s parents in a backup directory as
    /// needed. Nothing to keep if `rel` does not exist.
    fn keep(
        &self,
        fs: &FsRoot,
        rel: &RelPath,
        root: &FsRoot,
        to: &RelPath,
        link: bool,
    ) -> std::result::Result<(), String> {
        let err = |e| failed(to, e);
        let Some(here) = fs.lstat(rel).map_err(err)? else {
            return Ok(());
        };
        match to.parent() {
            Some(p) if self.dir.is_some() && !p.is_root() => {
                make_parents(fs, rel, root, &p).map_err(err)?
            }
            _ => {}
        }
        let res = if link && here.kind != Kind::Dir {
            fs.hard_link_into(rel, root, to)
        } else {
            fs.rename_into(rel, root, to)
        };
        match res {
            // Gone since it was looked at: nothing to keep.
            Err(e) if e.is_not_found() && fs.lstat(rel).is_ok_and(|m| m.is_none()) => Ok(()),
            res => res.map_err(err),
        }
    }

    /// Whether `--delete` must leave `rel` (beneath the receiver's root)
    /// alone: a backup made beside its file, or the backup directory or a
    /// directory holding it.
    pub(crate) fn protects(&self, rel: &RelPath) -> bool {
        let name = rel.file_name().unwrap_or_default().as_bytes();
        if self.protect_suffixed && name.ends_with(self.suffix.as_bytes()) {
            return true;
        }
        self.inside.as_ref().is_some_and(|b| at_or_above(rel, b))
    }
}

/// Makes `dir` beneath the backup directory `root` with the directories on
/// the way, each with the mode (and, as root, the owner) of the directory
/// of the receiver's root `fs` it mirrors, as rsync's: a backup of a
/// private directory's files stays private. `rel` (beneath `fs`) is what is
/// kept in `dir`; `dir` ends with `rel`'s parents, and may start with the
/// destination directory's own name (mirrored by `fs`'s root) or more
/// (made 0755, less the umask).
fn make_parents(
    fs: &FsRoot,
    rel: &RelPath,
    root: &FsRoot,
    dir: &RelPath,
) -> std::result::Result<(), FsError> {
    let names: Vec<&std::ffi::OsStr> = dir.components().collect();
    let parent = rel.parent().unwrap_or_else(RelPath::root);
    let mut mirrored: Vec<&std::ffi::OsStr> = parent.components().collect();
    if mirrored.len() > names.len() {
        // (Not a path that ends with rel's parents: mirror nothing.)
        mirrored.clear();
    }
    let above = names.len().saturating_sub(mirrored.len());
    let mut at = RelPath::root();
    for (i, name) in names.iter().enumerate() {
        at = at.join(name);
        if root.lstat(&at)?.is_some() {
            continue;
        }
        root.mkdir_all(&at, 0o755)?;
        let mirror = (i + 1)
            .checked_sub(above)
            .map(|n| mirrored[..n].iter().fold(RelPath::root(), |p, c| p.join(c)));
        let here = match mirror {
            Some(m) => fs.lstat(&m)?.filter(|m| m.kind == Kind::Dir),
            None => None,
        };
        if let Some(m) = here {
            if rustix::process::geteuid().is_root() {
                root.chown(&at, Some(m.uid), Some(m.gid))?;
            }
            root.set_mode(&at, m.mode)?;
        }
    }
    Ok(())
}

fn failed(to: &RelPath, e: FsError) -> String {
    let cause = match e {
        FsError::Io { source, .. } => source.to_string(),
        escape => escape.to_string(),
    };
    format!(
        "not replaced: cannot keep its backup {}: {cause}",
        to.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(p: &str) -> RelPath {
        FsRoot::check(p.as_bytes()).unwrap()
    }

    fn map(work: &str, dest: &str) -> DestMap {
        DestMap {
            work: rel(work),
            dest: rel(dest),
        }
    }

    #[test]
    fn options_that_cannot_work_are_refused() {
        assert_eq!(Backup::new(None, None).unwrap().suffix, "~");
        assert_eq!(Backup::new(Some("b".into()), None).unwrap().suffix, "");
        assert!(Backup::new(None, Some(String::new())).is_err());
        assert!(Backup::new(None, Some("a/b".into())).is_err());
        assert!(Backup::new(Some(String::new()), None).is_err());
        assert_eq!(
            Backup::new(Some("b".into()), Some(".old".into()))
                .unwrap()
                .suffix,
            ".old"
        );
    }

    #[test]
    fn backups_mirror_the_destination_directory() {
        let t = tempfile::tempdir().unwrap();
        let top = Arc::new(FsRoot::open(t.path()).unwrap());
        std::fs::create_dir_all(t.path().join("dst/src/sub")).unwrap();
        std::fs::write(t.path().join("dst/src/sub/f"), b"old").unwrap();
        let work_fs = top.sub(&rel("dst/src")).unwrap();
        let spec = Backup::new(Some("../bak".into()), None).unwrap();
        let b = Backups::open(&spec, &top, map("dst/src", "dst"), true, true).unwrap();
        b.keep_replaced(&work_fs, &rel("sub/f")).unwrap();
        // The file stays; its backup is a link to it, at the same path
        // beneath the backup directory as beneath the destination.
        assert_eq!(
            std::fs::read(t.path().join("bak/src/sub/f")).unwrap(),
            b"old"
        );
        assert!(t.path().join("dst/src/sub/f").exists());
        b.keep_removed(&work_fs, &rel("sub")).unwrap();
        assert!(!t.path().join("dst/src/sub").exists());
        assert_eq!(
            std::fs::read(t.path().join("bak/src/sub/f")).unwrap(),
            b"old"
        );
        // Nothing to keep is no failure.
        b.keep_removed(&work_fs, &rel("gone")).unwrap();
        assert!(Backups::open(
            &Backup::new(Some("../../..".into()), None).unwrap(),
            &top,
            map("dst/src", "dst"),
            true,
            true
        )
        .is_err());
        let itself = Backup::new(Some(".".into()), None).unwrap();
        assert!(Backups::open(&itself, &top, map("dst", "dst"), true, true).is_err());
    }

    #[test]
    fn delete_leaves_backups_alone() {
        let t = tempfile::tempdir().unwrap();
        let top = Arc::new(FsRoot::open(t.path()).unwrap());
        let beside = Backups::open(
            &Backup::new(None, None).unwrap(),
            &top,
            map("", ""),
            false,
            true,
        )
        .unwrap();
        assert!(beside.protects(&rel("a/f~")) && !beside.protects(&rel("a/f")));
        let spec = Backup::new(Some("keep/old".into()), None).unwrap();
        let inside = Backups::open(&spec, &top, map("", ""), true, true).unwrap();
        assert!(inside.protects(&rel("keep")) && inside.protects(&rel("keep/old")));
        assert!(!inside.protects(&rel("keep/other")) && !inside.protects(&rel("kee")));
        assert!(!inside.protects(&rel("f~")));
        let local = Backups::open(&spec, &top, map("", ""), false, true).unwrap();
        assert!(local.protects(&rel("keep/old")) && !local.protects(&rel("keep/older")));
    }
}
