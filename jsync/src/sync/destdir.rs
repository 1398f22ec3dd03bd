//! The destination directory, and the directories a receiver is told about
//! relative to it: where `--backup-dir` keeps what is replaced, and where
//! `--compare-dest`, `--copy-dest` and `--link-dest` look for the files the
//! destination lacks. As in rsync, a relative name is taken from the
//! destination directory and the tree beneath it mirrors the destination's.
//! On a server each must lie beneath its root, and an absolute name is taken
//! from the root.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use super::fsroot::{FsError, FsRoot, RelPath};
use crate::error::{Error, Result};

/// Where a receiver's entries go: the root it works in (`work`) and the
/// destination directory (`dest`), both beneath the destination's root
/// (the server's root, or a local destination's parent); `dest` is `work`
/// or above it (a single file's directory, or the directory a directory
/// was sent into by its name).
#[derive(Debug, Clone)]
pub(crate) struct DestMap {
    pub work: RelPath,
    pub dest: RelPath,
}

impl DestMap {
    /// `rel` (beneath `work`) as a path beneath the destination directory;
    /// the receiver's root itself, when that is the destination directory,
    /// by its path beneath the destination's root.
    pub(crate) fn under_dest(&self, rel: &RelPath) -> RelPath {
        let full = join_rel(&self.work, rel);
        strip(&full, &self.dest)
            .filter(|r| !r.is_root())
            .unwrap_or(full)
    }
}

/// A directory named relative to the destination directory, opened as a
/// root of its own.
pub(crate) struct SideDir {
    pub fs: Arc<FsRoot>,
    /// Its path beneath the destination's root, when it lies there.
    pub at: Option<RelPath>,
    /// The directories `create` made for it, deepest first.
    pub made: Made,
}

/// Directories made for a side directory, deepest first: beneath the
/// destination's root (a server's, confined), or paths on this machine.
#[derive(Debug, Default)]
pub(crate) enum Made {
    #[default]
    None,
    Beneath(Arc<FsRoot>, Vec<RelPath>),
    Paths(Vec<std::path::PathBuf>),
}

impl Made {
    /// Removes what was made, deepest first, as far as it is still empty:
    /// a side directory nothing went into leaves nothing behind.
    pub(crate) fn remove_if_empty(&self) {
        match self {
            Made::None => {}
            Made::Beneath(top, dirs) => {
                for d in dirs {
                    if !matches!(top.remove_empty_dir(d), Ok(true)) {
                        break;
                    }
                }
            }
            Made::Paths(dirs) => {
                for d in dirs {
                    if std::fs::remove_dir(d).is_err() {
                        break;
                    }
                }
            }
        }
    }
}

/// Opens directory `name` (given with `option`, which errors name) for a
/// receiver placing entries by `map` beneath `top`. `confined`: the receiver
/// is a server, and the directory must lie beneath `top`. With `create` it
/// is made if missing; otherwise a missing one is `None`.
pub(crate) fn open_side_dir(
    option: &str,
    name: &str,
    top: &Arc<FsRoot>,
    map: &DestMap,
    confined: bool,
    create: bool,
) -> Result<Option<SideDir>> {
    let named = |what: &str| Error::Fs(format!("{option} {name}: {what}"));
    let err = |e: FsError| named(&e.to_string());
    if confined {
        let from = if name.starts_with('/') {
            RelPath::root()
        } else {
            map.dest.clone()
        };
        let at = beneath(&from, name.as_bytes())
            .ok_or_else(|| named("leads outside the server's root"))?;
        let mut made = Made::None;
        if create {
            // (What is missing, deepest first, before it is made.)
            let mut missing = Vec::new();
            let mut d = Some(at.clone());
            while let Some(p) = d.filter(|p| !p.is_root()) {
                if top.lstat(&p).map_err(err)?.is_some() {
                    break;
                }
                d = p.parent();
                missing.push(p);
            }
            top.mkdir_all(&at, 0o755).map_err(err)?;
            made = Made::Beneath(top.clone(), missing);
        } else if top.stat_follow_within(&at).map_err(err)?.is_none() {
            return Ok(None);
        }
        let fs = if at.is_root() {
            top.clone()
        } else {
            Arc::new(top.sub(&at).map_err(err)?)
        };
        return Ok(Some(SideDir {
            fs,
            at: Some(at),
            made,
        }));
    }
    // A dry run's destination may not exist yet (`snap.1` of
    // `--link-dest=../snap.0`): a `..` from it is taken from where it
    // would be, as the real run, which makes it first, takes it.
    let mut from = top.path().join(OsStr::from_bytes(map.dest.as_bytes()));
    let mut rest = Path::new(name).components().peekable();
    while let Some(c) = rest.peek() {
        use std::path::Component::{CurDir, ParentDir};
        match c {
            CurDir => {}
            ParentDir if std::fs::symlink_metadata(&from).is_err() && from.pop() => {}
            _ => break,
        }
        rest.next();
    }
    let path = from.join(rest.collect::<std::path::PathBuf>());
    let mut made = Made::None;
    let fs = if create {
        let missing: Vec<_> = path
            .ancestors()
            .take_while(|p| {
                !p.as_os_str().is_empty()
                    && matches!(std::fs::symlink_metadata(p), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
            })
            .map(Path::to_path_buf)
            .collect();
        made = Made::Paths(missing);
        FsRoot::open_or_create(&path)
    } else {
        match FsRoot::open(&path) {
            Err(e) if e.is_not_found() => return Ok(None),
            other => other,
        }
    }
    .map_err(err)?;
    Ok(Some(SideDir {
        fs: Arc::new(fs),
        at: within(top.path(), &path),
        made,
    }))
}

/// `rel` resolved from `from` by name alone, `..` climbing (never above the
/// root: `None`), `.` and empty components dropped.
fn beneath(from: &RelPath, rel: &[u8]) -> Option<RelPath> {
    let mut parts: Vec<&[u8]> = from
        .as_bytes()
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .collect();
    for c in rel.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    FsRoot::check(&parts.join(&b'/')).ok()
}

/// Whether `rel` is `dir` or a directory above it: what `--delete` leaves
/// standing for `dir` (the backup or temp directory) to stay.
pub(crate) fn at_or_above(rel: &RelPath, dir: &RelPath) -> bool {
    let (d, r) = (dir.as_bytes(), rel.as_bytes());
    d.starts_with(r) && (d.len() == r.len() || d[r.len()] == b'/')
}

/// `rel` beneath `base` as a path of its own (`None` if it is not beneath).
pub(crate) fn strip(rel: &RelPath, base: &RelPath) -> Option<RelPath> {
    let (r, b) = (rel.as_bytes(), base.as_bytes());
    if b.is_empty() {
        return Some(rel.clone());
    }
    match r.strip_prefix(b)? {
        [] => Some(RelPath::root()),
        [b'/', rest @ ..] => FsRoot::check(rest).ok(),
        _ => None,
    }
}

/// `a/b` (both valid, so the result is).
fn join_rel(a: &RelPath, b: &RelPath) -> RelPath {
    if a.is_root() {
        return b.clone();
    }
    if b.is_root() {
        return a.clone();
    }
    let mut bytes = a.as_bytes().to_vec();
    bytes.push(b'/');
    bytes.extend_from_slice(b.as_bytes());
    // (Unreachable: a refused path is refused again wherever it is used.)
    FsRoot::check(&bytes).unwrap_or_else(|_| a.join(OsStr::new("..")))
}

/// `path` as a path beneath `root` on disk (both resolved), if it is.
fn within(root: &Path, path: &Path) -> Option<RelPath> {
    let (root, path) = (root.canonicalize().ok()?, path.canonicalize().ok()?);
    let rest = path.strip_prefix(&root).ok()?;
    FsRoot::check(rest.as_os_str().as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(p: &str) -> RelPath {
        FsRoot::check(p.as_bytes()).unwrap()
    }

    #[test]
    fn a_side_directory_on_a_server_stays_beneath_its_root() {
        assert_eq!(beneath(&rel("d"), b"../bak"), Some(rel("bak")));
        assert_eq!(beneath(&rel("a/b"), b"./x/../y"), Some(rel("a/b/y")));
        assert_eq!(beneath(&rel("d"), b"../.."), None);
        assert_eq!(beneath(&RelPath::root(), b".."), None);
        assert_eq!(beneath(&RelPath::root(), b"/srv/bak"), Some(rel("srv/bak")));
    }

    #[test]
    fn paths_map_to_the_destination_directory() {
        let named = DestMap {
            work: rel("dst/src"),
            dest: rel("dst"),
        };
        assert_eq!(named.under_dest(&rel("sub/f")), rel("src/sub/f"));
        assert_eq!(named.under_dest(&RelPath::root()), rel("src"));
        let file = DestMap {
            work: RelPath::root(),
            dest: rel("dst"),
        };
        assert_eq!(file.under_dest(&rel("dst/f")), rel("f"));
        let contents = DestMap {
            work: rel("dst"),
            dest: rel("dst"),
        };
        assert_eq!(contents.under_dest(&rel("f")), rel("f"));
        assert_eq!(contents.under_dest(&RelPath::root()), rel("dst"));
    }

    #[test]
    fn a_missing_side_directory_is_made_only_when_asked() {
        let t = tempfile::tempdir().unwrap();
        let top = Arc::new(FsRoot::open(t.path()).unwrap());
        let map = DestMap {
            work: RelPath::root(),
            dest: RelPath::root(),
        };
        for confined in [true, false] {
            assert!(open_side_dir("--x", "missing", &top, &map, confined, false)
                .unwrap()
                .is_none());
            let d = open_side_dir("--x", "made", &top, &map, confined, true)
                .unwrap()
                .unwrap();
            assert_eq!(d.at, Some(rel("made")));
            std::fs::remove_dir(t.path().join("made")).unwrap();
        }
        let out = open_side_dir("--x", "../out", &top, &map, true, true);
        assert!(out.is_err_and(|e| e.to_string().contains("--x ../out: leads outside")));
    }
}
