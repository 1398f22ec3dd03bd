//! `--compare-dest`, `--copy-dest` and `--link-dest`, as rsync's: other
//! directories on the receiving side, mirroring the destination directory's
//! tree, where a file the destination lacks may be found already (a
//! previous snapshot, say). A file there of the same size and modification
//! time (with `-c`: of the same size, then the same content by hash) is
//! taken as the sender's: the destination leaves it out (`--compare-dest`),
//! gets a local copy (`--copy-dest`), or gets a hard link to it
//! (`--link-dest`, when time, mode and owner match too; otherwise a copy).
//! Any other regular file there is the basis of the file's delta, so only
//! what differs crosses the wire. A destination file whose copy there is
//! the sender's with the same attributes is removed with `--compare-dest`
//! (which also leaves out a symlink, device or FIFO held the same, so the
//! destination holds only what differs from the directory) and linked to
//! it with `--link-dest`. Directories
//! are tried in the order given; one that does not exist is named in a
//! warning and passed over.

use std::fs::File;
use std::sync::Arc;

use proto::sync::{Entry, EntryKind};

use super::destdir::{open_side_dir, DestMap};
use super::fsroot::{FsError, FsRoot, Kind, Meta, RelPath};
use crate::error::Result;

/// Most directories one option may name (rsync's limit).
pub const MAX_ALT_DIRS: usize = 20;

/// What is done with a file found in one of the directories.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AltHow {
    /// Leave it out of the destination (`--compare-dest`).
    Compare,
    /// Copy it into the destination (`--copy-dest`).
    Copy,
    /// Hard-link it into the destination (`--link-dest`).
    Link,
}

impl AltHow {
    /// The option's name, for messages; also its wire form without `--`.
    pub fn option(self) -> &'static str {
        match self {
            AltHow::Compare => "--compare-dest",
            AltHow::Copy => "--copy-dest",
            AltHow::Link => "--link-dest",
        }
    }

    /// From [`AltHow::option`]'s name without the dashes.
    pub fn parse(s: &str) -> Option<AltHow> {
        [AltHow::Compare, AltHow::Copy, AltHow::Link]
            .into_iter()
            .find(|h| &h.option()[2..] == s)
    }
}

/// `--compare-dest`, `--copy-dest` or `--link-dest` with their directories
/// (one kind at a time, as in rsync).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AltDest {
    pub how: AltHow,
    /// Taken from the destination directory when relative; on a server they
    /// must lie beneath its root (an absolute one is taken from the root).
    pub dirs: Vec<String>,
}

impl AltDest {
    /// Refuses what cannot work: no directory, too many, an empty name.
    pub fn check(&self) -> std::result::Result<(), String> {
        let option = self.how.option();
        if self.dirs.is_empty() || self.dirs.len() > MAX_ALT_DIRS {
            return Err(format!(
                "{option}: between 1 and {MAX_ALT_DIRS} directories, not {}",
                self.dirs.len()
            ));
        }
        match self.dirs.iter().find(|d| d.is_empty() || d.contains('\0')) {
            Some(d) => Err(format!("{option} {d:?}: not a usable directory name")),
            None => Ok(()),
        }
    }
}

/// An [`AltDest`] resolved for one run of the receiver.
pub(crate) struct Alts {
    pub how: AltHow,
    dirs: Vec<Arc<FsRoot>>,
    map: DestMap,
}

/// What a directory holds for a file (one the destination lacks, or with
/// `--compare-dest` and `--link-dest` one it has).
pub(crate) enum Found {
    /// The same size and time, in directory `.0`.
    Same(usize, Meta),
    /// Another regular file, in directory `.0`: a basis for the delta.
    Basis(usize, Meta),
}

impl Alts {
    /// Opens the directories of `spec` for a receiver placing entries by
    /// `map` beneath `top`; `confined` as for [`open_side_dir`]. Each
    /// directory that does not exist goes to `missing`, named.
    pub(crate) fn open(
        spec: &AltDest,
        top: &Arc<FsRoot>,
        map: DestMap,
        confined: bool,
        mut missing: impl FnMut(String),
    ) -> Result<Alts> {
        spec.check().map_err(crate::error::Error::Usage)?;
        let option = spec.how.option();
        let mut dirs = Vec::new();
        for name in &spec.dirs {
            match open_side_dir(option, name, top, &map, confined, false)? {
                Some(d) => dirs.push(d.fs),
                None => missing(format!("{option} {name}: no such directory (passed over)")),
            }
        }
        Ok(Alts {
            how: spec.how,
            dirs,
            map,
        })
    }

    /// What the directories hold at `rel` (beneath the receiver's root) for
    /// entry `e`: the first of the same size and time (with `by_size`, the
    /// first of the same size: with `-c` its content is compared next, with
    /// `--size-only` that is all), else the first regular file. Unreadable
    /// places count as nothing there.
    pub(crate) fn find(
        &self,
        rel: &RelPath,
        e: &Entry,
        by_size: bool,
        window: u64,
    ) -> Option<Found> {
        let at = self.map.under_dest(rel);
        let mut basis = None;
        for (i, dir) in self.dirs.iter().enumerate() {
            match dir.lstat(&at) {
                Ok(Some(m)) if m.kind == Kind::File => {
                    if m.size == e.size && (by_size || super::same_mtime(m.mtime, e.mtime, window))
                    {
                        return Some(Found::Same(i, m));
                    }
                    basis.get_or_insert(Found::Basis(i, m));
                }
                _ => {}
            }
        }
        basis
    }

    /// Each directory with the path in it of the directory that holds
    /// `rel` there (`-yy` searches them): its index, that path, its root.
    pub(crate) fn dirs_of<'a>(
        &'a self,
        rel: &RelPath,
    ) -> impl Iterator<Item = (usize, RelPath, &'a FsRoot)> + 'a {
        let dir = self.map.under_dest(rel).parent();
        self.dirs
            .iter()
            .enumerate()
            .filter_map(move |(i, fs)| Some((i, dir.clone()?, &**fs)))
    }

    /// The first directory holding at `rel` a symlink, device or FIFO the
    /// same as `e` (the same kind, and the same target or device), and what
    /// it holds.
    pub(crate) fn find_same_special(&self, rel: &RelPath, e: &Entry) -> Option<(usize, Meta)> {
        let at = self.map.under_dest(rel);
        self.dirs.iter().enumerate().find_map(|(i, dir)| {
            let m = dir.lstat(&at).ok().flatten()?;
            let same = match (e.kind, m.kind) {
                (EntryKind::Symlink, Kind::Symlink) => dir.read_link(&at).ok()? == e.target,
                (EntryKind::Fifo, Kind::Fifo) => true,
                (EntryKind::CharDev, Kind::CharDev) | (EntryKind::BlockDev, Kind::BlockDev) => {
                    m.rdev == e.rdev
                }
                _ => false,
            };
            same.then_some((i, m))
        })
    }

    /// `--open-noatime` for every directory's files.
    pub(crate) fn set_open_noatime(&self) {
        for d in &self.dirs {
            d.set_open_noatime();
        }
    }

    /// Opens what directory `i` holds at `rel`, for reading.
    pub(crate) fn open_read(&self, i: usize, rel: &RelPath) -> std::result::Result<File, FsError> {
        self.dirs[i].open_read(&self.map.under_dest(rel))
    }

    /// [`Alts::open_read`] with the file's metadata.
    pub(crate) fn open_read_meta(
        &self,
        i: usize,
        rel: &RelPath,
    ) -> std::result::Result<(File, Meta), FsError> {
        self.dirs[i].open_read_meta(&self.map.under_dest(rel))
    }

    /// Opens `path` beneath directory `i` (a path in it, not mapped as the
    /// receiver's are: a `-yy` basis), with its metadata.
    pub(crate) fn open_read_meta_beneath(
        &self,
        i: usize,
        path: &RelPath,
    ) -> std::result::Result<(File, Meta), FsError> {
        self.dirs[i].open_read_meta(path)
    }

    /// The extended attributes of what directory `i` holds at `rel`.
    pub(crate) fn xattrs(
        &self,
        i: usize,
        rel: &RelPath,
    ) -> std::result::Result<super::fsroot::Xattrs, FsError> {
        self.dirs[i].xattrs(&self.map.under_dest(rel))
    }

    /// Makes `rel` beneath `fs` a hard link to what directory `i` holds.
    pub(crate) fn link(
        &self,
        i: usize,
        rel: &RelPath,
        fs: &FsRoot,
    ) -> std::result::Result<(), FsError> {
        self.dirs[i].hard_link_into(&self.map.under_dest(rel), fs, rel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_name_themselves_and_are_checked() {
        for how in [AltHow::Compare, AltHow::Copy, AltHow::Link] {
            assert_eq!(AltHow::parse(&how.option()[2..]), Some(how));
        }
        assert_eq!(AltHow::parse("other-dest"), None);
        let ok = AltDest {
            how: AltHow::Link,
            dirs: vec!["../prev".into()],
        };
        assert!(ok.check().is_ok());
        let none = AltDest {
            dirs: vec![],
            ..ok.clone()
        };
        assert!(none.check().is_err());
        let many = AltDest {
            dirs: vec!["d".into(); MAX_ALT_DIRS + 1],
            ..ok.clone()
        };
        assert!(many.check().is_err());
        let empty = AltDest {
            dirs: vec![String::new()],
            ..ok
        };
        assert!(empty.check().is_err());
    }

    #[test]
    fn the_first_same_file_wins_else_the_first_file_is_the_basis() {
        let t = tempfile::tempdir().unwrap();
        for (dir, data) in [("a", &b"other"[..]), ("b", b"same!"), ("c", b"same!")] {
            std::fs::create_dir_all(t.path().join(dir)).unwrap();
            std::fs::write(t.path().join(dir).join("f"), data).unwrap();
        }
        let mtime = |p: &str| {
            let m = std::fs::metadata(t.path().join(p)).unwrap();
            use std::os::unix::fs::MetadataExt;
            (m.mtime(), m.mtime_nsec() as u32)
        };
        let top = Arc::new(FsRoot::open(t.path()).unwrap());
        let map = DestMap {
            work: FsRoot::check(b"dst").unwrap(),
            dest: FsRoot::check(b"dst").unwrap(),
        };
        let spec = AltDest {
            how: AltHow::Link,
            dirs: vec![
                "../a".into(),
                "../gone".into(),
                "../b".into(),
                "../c".into(),
            ],
        };
        let mut warned = Vec::new();
        let alts = Alts::open(&spec, &top, map, true, |w| warned.push(w)).unwrap();
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert!(warned[0].contains("../gone"));
        let f = FsRoot::check(b"f").unwrap();
        let e = Entry {
            path: b"f".to_vec(),
            size: 5,
            mtime: mtime("b/f"),
            ..Entry::default()
        };
        // a/f has the size but (maybe) not the time of b/f: b/f wins.
        std::fs::write(t.path().join("a/f"), b"othe").unwrap();
        assert!(matches!(
            alts.find(&f, &e, false, 0),
            Some(Found::Same(1, _))
        ));
        let changed = Entry { mtime: (1, 0), ..e };
        assert!(matches!(
            alts.find(&f, &changed, false, 0),
            Some(Found::Basis(0, _))
        ));
        // With -c the size is enough to compare the content.
        assert!(matches!(
            alts.find(&f, &changed, true, 0),
            Some(Found::Same(1, _))
        ));
        let missing = FsRoot::check(b"nothing").unwrap();
        assert!(alts.find(&missing, &changed, false, 0).is_none());
    }
}
