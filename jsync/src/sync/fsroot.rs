//! Confined file access for the sync engine: every read and write of a sync run
//! goes through an [`FsRoot`], so a hostile peer cannot reach outside the root.
//!
//! Peers name files with relative byte strings. A server must never read or
//! write outside its root, whatever the peer sends: `..`, absolute paths, or
//! symlinks it created earlier in the root that point elsewhere. Checking path
//! strings is not enough for the last case, so resolution happens in the kernel:
//!
//! * [`FsRoot::check`] turns a wire path into a [`RelPath`]: relative, no `..`,
//!   no NUL. Empty and `.` components are dropped, so `a/./b`, `a//b` and `a/b/`
//!   all mean `a/b`, and `""` or `"."` mean the root itself.
//! * The directory holding a target is opened with
//!   `openat2(root, parent, O_PATH|O_DIRECTORY, RESOLVE_BENEATH|RESOLVE_NO_MAGICLINKS)`.
//!   Symlinked directories that stay inside the root work; any that lead out
//!   (absolute targets, too many `..`, `/proc` magic links) fail with
//!   [`FsError::Escape`].
//! * The final component is then used with `*at` calls relative to that
//!   directory and `O_NOFOLLOW`/`AT_SYMLINK_NOFOLLOW`, so a final symlink is
//!   never followed for a write: replacing a symlink replaces the link itself.
//!
//! Without `openat2` (kernels before 5.6, or a seccomp filter that answers
//! `ENOSYS`/`EPERM`) paths are walked one component at a time with
//! `O_NOFOLLOW|O_DIRECTORY`. That fallback is stricter: every symlink in a
//! directory position is refused, even one that would stay inside the root.
//!
//! New file content is written to a [`TempFile`] beside its target and renamed
//! over it by [`TempFile::commit`]; an uncommitted temp file is removed on drop.

use std::collections::hash_map::RandomState;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{
    self as rfs, AtFlags, Dir, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps, CWD,
};
use rustix::io::Errno;

/// Marks temp files: `.<name>.jsync-tmp.<16 hex digits>`.
const TEMP_MARK: &[u8] = b".jsync-tmp.";
/// Hex digits of randomness at the end of a temp name.
const TEMP_RAND: usize = 16;
/// Longest slice of the target name kept in a temp name, so the whole name
/// stays within `NAME_MAX` (255): 1 + 227 + 11 + 16 = 255.
const TEMP_NAME_KEEP: usize = 255 - 1 - TEMP_MARK.len() - TEMP_RAND;
/// Attempts at a fresh temp name, and at an `openat2` the kernel asks to retry.
const RETRIES: usize = 16;

/// Why a confined file operation failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FsError {
    /// The path is not a valid wire path (absolute, `..`, NUL), or resolving it
    /// would leave the root (a symlink pointing outside, a magic link, or in the
    /// fallback resolver any symlink in a directory position).
    #[error("{path}: path escapes the root")]
    Escape { path: String },
    /// The operating system refused; `path` is the relative path, lossily shown.
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
}

impl FsError {
    fn io(path: impl Into<String>, source: impl Into<io::Error>) -> FsError {
        FsError::Io {
            path: path.into(),
            source: source.into(),
        }
    }

    fn is_not_found(&self) -> bool {
        matches!(self, FsError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// A checked path relative to a root: `/`-separated components, none of them
/// empty, `.` or `..`. The root itself is the empty path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct RelPath {
    bytes: Vec<u8>,
}

impl RelPath {
    /// The root itself.
    pub fn root() -> RelPath {
        RelPath { bytes: Vec::new() }
    }

    /// This path with one more component. `name` must be a single component
    /// (a name from a directory listing); anything else is refused later, when
    /// the path is resolved.
    pub fn join(&self, name: &OsStr) -> RelPath {
        debug_assert!(
            valid_component(name.as_bytes()),
            "not a single path component: {name:?}"
        );
        let mut bytes = self.bytes.clone();
        if !bytes.is_empty() {
            bytes.push(b'/');
        }
        bytes.extend_from_slice(name.as_bytes());
        RelPath { bytes }
    }

    /// The containing directory; `None` for the root.
    pub fn parent(&self) -> Option<RelPath> {
        if self.is_root() {
            return None;
        }
        let end = self.bytes.iter().rposition(|&b| b == b'/').unwrap_or(0);
        Some(RelPath {
            bytes: self.bytes[..end].to_vec(),
        })
    }

    /// The last component; `None` for the root.
    pub fn file_name(&self) -> Option<&OsStr> {
        if self.is_root() {
            return None;
        }
        let start = self
            .bytes
            .iter()
            .rposition(|&b| b == b'/')
            .map_or(0, |i| i + 1);
        Some(OsStr::from_bytes(&self.bytes[start..]))
    }

    pub fn is_root(&self) -> bool {
        self.bytes.is_empty()
    }

    /// For messages: lossy UTF-8, and `.` for the root (also a valid wire path).
    pub fn display(&self) -> String {
        if self.is_root() {
            ".".to_owned()
        } else {
            String::from_utf8_lossy(&self.bytes).into_owned()
        }
    }

    /// The normalized wire form: empty for the root.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn components(&self) -> impl Iterator<Item = &OsStr> {
        self.bytes
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty())
            .map(OsStr::from_bytes)
    }

    /// Re-checks the invariant before a path reaches the kernel, in case a
    /// [`RelPath::join`] was handed something that is not a single name.
    fn confined(&self) -> Result<(), FsError> {
        let ok = self.is_root() || self.bytes.split(|&b| b == b'/').all(valid_component);
        if ok {
            Ok(())
        } else {
            Err(escape(&self.bytes))
        }
    }
}

fn valid_component(c: &[u8]) -> bool {
    !c.is_empty() && c != b"." && c != b".." && !c.contains(&b'/') && !c.contains(&0)
}

fn escape(raw: &[u8]) -> FsError {
    FsError::Escape {
        path: String::from_utf8_lossy(raw).into_owned(),
    }
}

/// What kind of file a path names (not following a final symlink for `lstat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
    Symlink,
    Other,
}

/// The metadata the sync engine compares and restores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Meta {
    pub kind: Kind,
    pub size: u64,
    /// Permission bits including setuid, setgid and sticky (`st_mode & 0o7777`).
    pub mode: u32,
    /// Seconds and nanoseconds since the epoch.
    pub mtime: (i64, u32),
    pub ino: u64,
    pub dev: u64,
    pub nlink: u64,
}

impl Meta {
    // Field types of `struct stat` differ between architectures.
    #[allow(clippy::unnecessary_cast)]
    fn from_stat(st: &rfs::Stat) -> Meta {
        let kind = match FileType::from_raw_mode(st.st_mode as _) {
            FileType::RegularFile => Kind::File,
            FileType::Directory => Kind::Dir,
            FileType::Symlink => Kind::Symlink,
            _ => Kind::Other,
        };
        Meta {
            kind,
            size: st.st_size.max(0) as u64,
            mode: (st.st_mode as u32) & 0o7777,
            mtime: (
                st.st_mtime as i64,
                (st.st_mtime_nsec as u64).min(999_999_999) as u32,
            ),
            ino: st.st_ino as u64,
            dev: st.st_dev as u64,
            nlink: st.st_nlink as u64,
        }
    }
}

/// How paths are resolved beneath the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resolver {
    /// One `openat2` with `RESOLVE_BENEATH`: symlinks inside the root work.
    Openat2,
    /// Component by component with `O_NOFOLLOW`: no symlinks at all.
    Walk,
}

/// A directory that confines every file operation of a sync run.
#[derive(Debug)]
pub(crate) struct FsRoot {
    fd: OwnedFd,
    path: PathBuf,
    resolver: Resolver,
}

impl FsRoot {
    /// Opens an existing directory as a root. A symlink naming the root itself
    /// is followed; nothing beneath it ever is unless it stays inside.
    pub fn open(dir: &Path) -> Result<FsRoot, FsError> {
        let fd = rfs::open(
            dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| FsError::io(dir.display().to_string(), e))?;
        let probe = rfs::openat2(
            &fd,
            ".",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            beneath(),
        );
        let resolver = match probe {
            Err(Errno::NOSYS) | Err(Errno::PERM) => Resolver::Walk,
            _ => Resolver::Openat2,
        };
        Ok(FsRoot {
            fd,
            path: dir.to_path_buf(),
            resolver,
        })
    }

    /// Creates the directory and its parents as needed (like `mkdir -p`), then opens it.
    pub fn open_or_create(dir: &Path) -> Result<FsRoot, FsError> {
        std::fs::create_dir_all(dir).map_err(|e| FsError::io(dir.display().to_string(), e))?;
        FsRoot::open(dir)
    }

    /// The root as it was named when opened; for messages and the source walk.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Validates a wire path: relative, no `..` component, no NUL. Empty and `.`
    /// components are dropped (`a/./b` is `a/b`); `""` and `"."` name the root.
    pub fn check(rel: &[u8]) -> Result<RelPath, FsError> {
        if rel.first() == Some(&b'/') || rel.contains(&0) {
            return Err(escape(rel));
        }
        let mut bytes = Vec::with_capacity(rel.len());
        for c in rel.split(|&b| b == b'/') {
            match c {
                b"" | b"." => {}
                b".." => return Err(escape(rel)),
                _ => {
                    if !bytes.is_empty() {
                        bytes.push(b'/');
                    }
                    bytes.extend_from_slice(c);
                }
            }
        }
        Ok(RelPath { bytes })
    }

    /// Metadata of `rel` without following a final symlink; `None` if it does not exist.
    pub fn lstat(&self, rel: &RelPath) -> Result<Option<Meta>, FsError> {
        let (dir, name) = match self.locate(rel) {
            Ok(found) => found,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        match rfs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(Meta::from_stat(&st))),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(FsError::io(rel.display(), e)),
        }
    }

    /// Metadata of what `rel` leads to, following symlinks only while they stay
    /// beneath the root (the fallback resolver refuses any symlink). For "is the
    /// destination an existing directory?". `None` if it does not exist.
    pub fn stat_follow_within(&self, rel: &RelPath) -> Result<Option<Meta>, FsError> {
        match self.resolve_follow(rel) {
            Ok(fd) => rfs::fstat(&fd)
                .map(|st| Some(Meta::from_stat(&st)))
                .map_err(|e| FsError::io(rel.display(), e)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Opens a regular file for reading. A final symlink is refused, not
    /// followed; so is anything but a regular file (a FIFO would block).
    pub fn open_read(&self, rel: &RelPath) -> Result<File, FsError> {
        let (dir, name) = self.locate(rel)?;
        let flags =
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
        let fd = rfs::openat(&dir, name, flags, Mode::empty()).map_err(|e| match e {
            Errno::LOOP => FsError::io(rel.display(), not_followed()),
            e => FsError::io(rel.display(), e),
        })?;
        let st = rfs::fstat(&fd).map_err(|e| FsError::io(rel.display(), e))?;
        if Meta::from_stat(&st).kind != Kind::File {
            return Err(FsError::io(
                rel.display(),
                io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"),
            ));
        }
        Ok(File::from(fd))
    }

    /// Creates `rel` and any missing parents with `mode` (less the umask). An
    /// existing directory is fine; an existing non-directory is an error naming
    /// that component's path.
    pub fn mkdir_all(&self, rel: &RelPath, mode: u32) -> Result<(), FsError> {
        rel.confined()?;
        let mut cur = self.dir(&RelPath::root())?;
        let mut prefix = RelPath::root();
        for name in rel.components() {
            prefix = prefix.join(name);
            match self.dir(&prefix) {
                Ok(fd) => {
                    cur = fd;
                    continue;
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
            match rfs::mkdirat(&cur, name, Mode::from_raw_mode(mode & 0o7777)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(FsError::io(prefix.display(), e)),
            }
            cur = self.dir(&prefix)?;
        }
        Ok(())
    }

    /// A new, empty temp file (mode 0600) in the directory of `rel`, named
    /// `.<name>.jsync-tmp.<random>`; [`TempFile::commit`] renames it over `rel`.
    pub fn create_temp(&self, rel: &RelPath) -> Result<TempFile, FsError> {
        let (dir, name) = self.locate_replaceable(rel)?;
        let flags =
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut last = Errno::EXIST;
        for _ in 0..RETRIES {
            let temp = temp_name(name);
            match rfs::openat(&dir, &temp, flags, Mode::from_raw_mode(0o600)) {
                Ok(fd) => {
                    return Ok(TempFile {
                        file: File::from(fd),
                        dir,
                        temp,
                        target: name.to_owned(),
                        shown: rel.display(),
                        done: false,
                    })
                }
                Err(Errno::EXIST) => last = Errno::EXIST,
                Err(e) => return Err(FsError::io(rel.display(), e)),
            }
        }
        Err(FsError::io(rel.display(), last))
    }

    /// Makes `rel` a symlink to `target`, atomically replacing whatever file or
    /// symlink was there (never following it). The target is stored as given.
    pub fn symlink(&self, target: &[u8], rel: &RelPath) -> Result<(), FsError> {
        let (dir, name) = self.locate_replaceable(rel)?;
        let target = OsStr::from_bytes(target);
        for _ in 0..RETRIES {
            let temp = temp_name(name);
            match rfs::symlinkat(target, &dir, &temp) {
                Ok(()) => {}
                Err(Errno::EXIST) => continue,
                Err(e) => return Err(FsError::io(rel.display(), e)),
            }
            return rfs::renameat(&dir, &temp, &dir, name).map_err(|e| {
                let _ = rfs::unlinkat(&dir, &temp, AtFlags::empty());
                FsError::io(rel.display(), e)
            });
        }
        Err(FsError::io(rel.display(), Errno::EXIST))
    }

    /// The target of the symlink `rel`, as bytes.
    pub fn read_link(&self, rel: &RelPath) -> Result<Vec<u8>, FsError> {
        let (dir, name) = self.locate(rel)?;
        rfs::readlinkat(&dir, name, Vec::new())
            .map(|t| t.into_bytes())
            .map_err(|e| FsError::io(rel.display(), e))
    }

    /// Removes a file, a symlink (never its target) or an empty directory.
    pub fn remove(&self, rel: &RelPath) -> Result<(), FsError> {
        let (dir, name) = self.locate_replaceable(rel)?;
        match rfs::unlinkat(&dir, name, AtFlags::empty()) {
            Err(Errno::ISDIR) => rfs::unlinkat(&dir, name, AtFlags::REMOVEDIR),
            other => other,
        }
        .map_err(|e| FsError::io(rel.display(), e))
    }

    /// Removes `rel` and everything beneath it, like `rm -rf`: a missing path is
    /// fine, and symlinks are removed, never descended into.
    pub fn remove_all(&self, rel: &RelPath) -> Result<(), FsError> {
        let (dir, name) = match self.locate_replaceable(rel) {
            Ok(found) => found,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        };
        remove_tree(dir.as_fd(), name).map_err(|e| FsError::io(rel.display(), e))
    }

    /// The names in directory `rel` (not `.` and `..`), each with whether it is
    /// a directory (never following symlinks). For `--delete`.
    pub fn read_dir(&self, rel: &RelPath) -> Result<Vec<(Vec<u8>, bool)>, FsError> {
        let fd = self.resolve(rel, OFlags::RDONLY | OFlags::DIRECTORY, true)?;
        let err = |e: Errno| FsError::io(rel.display(), e);
        let mut dir = Dir::new(fd).map_err(err)?;
        let mut out = Vec::new();
        while let Some(entry) = dir.read() {
            let entry = entry.map_err(err)?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                out.push((name.to_vec(), entry.file_type() == FileType::Directory));
            }
        }
        Ok(out)
    }

    /// Sets atime and mtime to `mtime`. With `follow`, a final symlink is
    /// followed while it stays beneath the root; without, the link itself is set.
    /// Nanoseconds above 999 999 999 are clamped (they would mean "now"/"omit").
    pub fn set_times(&self, rel: &RelPath, mtime: (i64, u32), follow: bool) -> Result<(), FsError> {
        let times = timestamps(mtime);
        let res = if follow {
            let fd = self.resolve_follow(rel)?;
            match rfs::utimensat(&fd, "", &times, AtFlags::EMPTY_PATH) {
                // Kernels before 5.8 lack AT_EMPTY_PATH here; go through the fd's /proc link.
                Err(Errno::INVAL) => {
                    rfs::utimensat(CWD, proc_fd_path(&fd), &times, AtFlags::empty())
                }
                other => other,
            }
        } else {
            let (dir, name) = self.locate(rel)?;
            rfs::utimensat(&dir, name, &times, AtFlags::SYMLINK_NOFOLLOW)
        };
        res.map_err(|e| FsError::io(rel.display(), e))
    }

    /// Sets the permission bits (`mode & 0o7777`). A final symlink is skipped:
    /// Linux has no modes on links, and following one could reach outside.
    pub fn set_mode(&self, rel: &RelPath, mode: u32) -> Result<(), FsError> {
        let (dir, name) = self.locate(rel)?;
        let err = |e: Errno| FsError::io(rel.display(), e);
        let fd = rfs::openat(
            &dir,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(err)?;
        let st = rfs::fstat(&fd).map_err(err)?;
        if Meta::from_stat(&st).kind == Kind::Symlink {
            return Ok(());
        }
        let mode = Mode::from_raw_mode(mode & 0o7777);
        // fchmod refuses O_PATH descriptors; the /proc link names exactly this
        // inode. Without /proc, chmod by name: it was not a symlink a moment ago.
        match rfs::chmodat(CWD, proc_fd_path(&fd), mode, AtFlags::empty()) {
            Err(Errno::NOENT) => rfs::chmodat(&dir, name, mode, AtFlags::empty()),
            other => other,
        }
        .map_err(err)
    }

    /// Removes temp files a crash left in `rel_dir` (names of the form
    /// `.<anything>.jsync-tmp.<16 hex digits>`; directories are left alone).
    /// Returns how many were removed.
    pub fn clean_stale_temps(&self, rel_dir: &RelPath) -> Result<usize, FsError> {
        let fd = self.resolve(rel_dir, OFlags::RDONLY | OFlags::DIRECTORY, true)?;
        let err = |e: Errno| FsError::io(rel_dir.display(), e);
        let mut dir = Dir::new(fd).map_err(err)?;
        let mut stale = Vec::new();
        while let Some(entry) = dir.read() {
            let entry = entry.map_err(err)?;
            let name = entry.file_name().to_bytes();
            if is_temp_name(name) && entry.file_type() != FileType::Directory {
                stale.push(OsString::from_vec(name.to_vec()));
            }
        }
        let dirfd = dir.fd().map_err(err)?;
        let mut removed = 0;
        for name in stale {
            match rfs::unlinkat(dirfd, &name, AtFlags::empty()) {
                Ok(()) => removed += 1,
                Err(Errno::NOENT) | Err(Errno::ISDIR) => {}
                Err(e) => return Err(FsError::io(rel_dir.join(&name).display(), e)),
            }
        }
        Ok(removed)
    }

    /// An `O_PATH` descriptor of directory `rel` (symlinks within the root allowed
    /// with `openat2`, refused by the fallback).
    fn dir(&self, rel: &RelPath) -> Result<OwnedFd, FsError> {
        self.resolve(rel, OFlags::PATH | OFlags::DIRECTORY, true)
    }

    /// The directory holding `rel` and its final name; the root is (root, ".").
    fn locate<'r>(&self, rel: &'r RelPath) -> Result<(OwnedFd, &'r OsStr), FsError> {
        match (rel.parent(), rel.file_name()) {
            (Some(parent), Some(name)) => {
                rel.confined()?;
                let dir = self.dir(&parent).map_err(|e| rename_err(e, rel))?;
                Ok((dir, name))
            }
            _ => Ok((self.dir(rel)?, OsStr::new("."))),
        }
    }

    /// [`FsRoot::locate`] for operations that would remove or replace `rel`,
    /// which the root itself refuses.
    fn locate_replaceable<'r>(&self, rel: &'r RelPath) -> Result<(OwnedFd, &'r OsStr), FsError> {
        if rel.is_root() {
            return Err(FsError::io(
                rel.display(),
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "cannot remove or replace the root directory",
                ),
            ));
        }
        self.locate(rel)
    }

    /// An `O_PATH` descriptor of what `rel` leads to after following symlinks
    /// beneath the root; the fallback refuses any symlink, final ones too.
    fn resolve_follow(&self, rel: &RelPath) -> Result<OwnedFd, FsError> {
        let fd = self.resolve(rel, OFlags::PATH, true)?;
        if self.resolver == Resolver::Walk {
            let st = rfs::fstat(&fd).map_err(|e| FsError::io(rel.display(), e))?;
            if Meta::from_stat(&st).kind == Kind::Symlink {
                return Err(escape(rel.as_bytes()));
            }
        }
        Ok(fd)
    }

    /// Opens `rel` beneath the root with `oflags` (plus `O_CLOEXEC`). Symlinks in
    /// directory positions are followed only while they stay beneath the root
    /// (never by the fallback); a final one only if `follow_last` (the fallback
    /// opens the link itself, which `O_PATH` allows).
    fn resolve(
        &self,
        rel: &RelPath,
        oflags: OFlags,
        follow_last: bool,
    ) -> Result<OwnedFd, FsError> {
        rel.confined()?;
        let oflags = oflags | OFlags::CLOEXEC;
        if rel.is_root() {
            return rfs::openat(&self.fd, ".", oflags, Mode::empty())
                .map_err(|e| FsError::io(rel.display(), e));
        }
        match self.resolver {
            Resolver::Openat2 => {
                let oflags = if follow_last {
                    oflags
                } else {
                    oflags | OFlags::NOFOLLOW
                };
                let path = OsStr::from_bytes(rel.as_bytes());
                let mut res = Err(Errno::AGAIN);
                for _ in 0..RETRIES {
                    res = rfs::openat2(&self.fd, path, oflags, Mode::empty(), beneath());
                    if !matches!(res, Err(Errno::AGAIN)) {
                        break;
                    }
                }
                res.map_err(|e| match e {
                    Errno::XDEV | Errno::LOOP => escape(rel.as_bytes()),
                    e => FsError::io(rel.display(), e),
                })
            }
            Resolver::Walk => self.walk(rel, oflags),
        }
    }

    fn walk(&self, rel: &RelPath, oflags: OFlags) -> Result<OwnedFd, FsError> {
        let names: Vec<&OsStr> = rel.components().collect();
        let mut cur: Option<OwnedFd> = None;
        for (i, name) in names.iter().enumerate() {
            let flags = if i + 1 == names.len() {
                oflags | OFlags::NOFOLLOW
            } else {
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
            };
            let at = cur.as_ref().map_or(self.fd.as_fd(), |fd| fd.as_fd());
            match rfs::openat(at, *name, flags, Mode::empty()) {
                Ok(fd) => cur = Some(fd),
                Err(e @ (Errno::NOTDIR | Errno::LOOP)) => {
                    let link = rfs::statat(at, *name, AtFlags::SYMLINK_NOFOLLOW)
                        .is_ok_and(|st| Meta::from_stat(&st).kind == Kind::Symlink);
                    return Err(if link {
                        escape(rel.as_bytes())
                    } else {
                        FsError::io(rel.display(), e)
                    });
                }
                Err(e) => return Err(FsError::io(rel.display(), e)),
            }
        }
        cur.ok_or_else(|| FsError::io(rel.display(), Errno::INVAL))
    }
}

/// Errors from resolving a parent name the full path, not the parent.
fn rename_err(e: FsError, rel: &RelPath) -> FsError {
    match e {
        FsError::Escape { .. } => escape(rel.as_bytes()),
        FsError::Io { source, .. } => FsError::io(rel.display(), source),
    }
}

fn beneath() -> ResolveFlags {
    ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS
}

fn not_followed() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "is a symbolic link (not followed)",
    )
}

fn proc_fd_path(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

fn timestamps((secs, nanos): (i64, u32)) -> Timestamps {
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: nanos.min(999_999_999).into(),
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// `.<name>.jsync-tmp.<16 hex digits>`, the name shortened to fit `NAME_MAX`.
fn temp_name(name: &OsStr) -> OsString {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    let name = name.as_bytes();
    let mut out = Vec::with_capacity(255);
    out.push(b'.');
    out.extend_from_slice(&name[..name.len().min(TEMP_NAME_KEEP)]);
    out.extend_from_slice(TEMP_MARK);
    out.extend_from_slice(format!("{:016x}", h.finish()).as_bytes());
    OsString::from_vec(out)
}

pub(crate) fn is_temp_name(name: &[u8]) -> bool {
    let Some(head) = name.len().checked_sub(TEMP_RAND) else {
        return false;
    };
    let (rest, rand) = name.split_at(head);
    name.first() == Some(&b'.')
        && rest.len() > TEMP_MARK.len()
        && rest.ends_with(TEMP_MARK)
        && rand.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `rm -rf name` relative to `dir`, never following symlinks.
fn remove_tree(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    match rfs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(Errno::ISDIR) => {}
        Err(e) => return Err(e.into()),
    }
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let sub = match rfs::openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut entries = Dir::new(sub)?;
    let mut names = Vec::new();
    while let Some(entry) = entries.read() {
        let n = entry?.file_name().to_bytes().to_vec();
        if n != b"." && n != b".." {
            names.push(OsString::from_vec(n));
        }
    }
    let fd = entries.fd()?;
    for n in names {
        remove_tree(fd, &n)?;
    }
    match rfs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// New content for a file, written beside it and renamed over it on
/// [`TempFile::commit`]. Dropped uncommitted, it removes itself.
#[derive(Debug)]
pub(crate) struct TempFile {
    pub file: File,
    dir: OwnedFd,
    temp: OsString,
    target: OsString,
    shown: String,
    done: bool,
}

impl TempFile {
    /// Sets mode (`& 0o7777`) and mtime on the descriptor, syncs the file to
    /// disk and renames it over the target in the same directory. A target
    /// symlink is replaced, not followed; on error the temp file is removed.
    pub fn commit(mut self, mode: u32, mtime: (i64, u32)) -> Result<(), FsError> {
        let file = self.file.as_fd();
        rfs::fchmod(file, Mode::from_raw_mode(mode & 0o7777))
            .and_then(|()| rfs::futimens(file, &timestamps(mtime)))
            .and_then(|()| rfs::fsync(file))
            .and_then(|()| rfs::renameat(&self.dir, &self.temp, &self.dir, &self.target))
            .map_err(|e| FsError::io(self.shown.clone(), e))?;
        self.done = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.done {
            let _ = rfs::unlinkat(&self.dir, &self.temp, AtFlags::empty());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn rel(p: &[u8]) -> RelPath {
        FsRoot::check(p).unwrap()
    }

    /// The same root through both resolvers, so every confinement test also
    /// covers the fallback for kernels without `openat2`.
    fn roots(dir: &Path) -> [FsRoot; 2] {
        let fast = FsRoot::open(dir).unwrap();
        assert_eq!(fast.resolver, Resolver::Openat2, "this kernel has openat2");
        let mut walk = FsRoot::open(dir).unwrap();
        walk.resolver = Resolver::Walk;
        [fast, walk]
    }

    fn is_escape<T: std::fmt::Debug>(r: Result<T, FsError>) -> bool {
        matches!(r, Err(FsError::Escape { .. }))
    }

    fn names(dir: &Path) -> Vec<OsString> {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        v.sort();
        v
    }

    /// A root and, beside it, an empty directory that must stay untouched.
    fn root_and_outside() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        let outside = t.path().join("outside-dir");
        std::fs::create_dir(&root).unwrap();
        std::fs::create_dir(&outside).unwrap();
        (t, root, outside)
    }

    #[test]
    fn check_refuses_escapes() {
        for bad in [
            &b"../x"[..],
            b"..",
            b"/etc/passwd",
            b"/",
            b"a/../../x",
            b"a/..",
            b"a/b/../c",
            b"a\0b",
            b"\0",
        ] {
            assert!(
                is_escape(FsRoot::check(bad)),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn check_normalises_empty_and_dot_components() {
        assert_eq!(rel(b"a/./b").as_bytes(), b"a/b");
        assert_eq!(rel(b"./a//b/").as_bytes(), b"a/b");
        assert_eq!(rel(b"...").as_bytes(), b"...");
        for root in [&b""[..], b".", b"./", b"./."] {
            assert!(rel(root).is_root());
        }
    }

    #[test]
    fn relpath_helpers() {
        let p = rel(b"a/b/c");
        assert_eq!(p.file_name(), Some(OsStr::new("c")));
        assert_eq!(p.parent().unwrap().as_bytes(), b"a/b");
        assert_eq!(rel(b"a").parent(), Some(RelPath::root()));
        assert_eq!(RelPath::root().parent(), None);
        assert_eq!(RelPath::root().file_name(), None);
        assert_eq!(RelPath::root().join(OsStr::new("x")).as_bytes(), b"x");
        assert_eq!(p.join(OsStr::new("d")).display(), "a/b/c/d");
        assert_eq!(RelPath::root().display(), ".");
    }

    #[test]
    fn relpath_join_of_dotdot_is_refused_on_use() {
        let t = tempfile::tempdir().unwrap();
        let bad = RelPath {
            bytes: b"a/../../x".to_vec(),
        };
        for fs in roots(t.path()) {
            assert!(is_escape(fs.lstat(&bad)));
            assert!(is_escape(fs.mkdir_all(&bad, 0o755)));
        }
    }

    #[test]
    fn open_refuses_a_file_and_follows_a_root_symlink() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("f"), b"x").unwrap();
        assert!(matches!(
            FsRoot::open(&t.path().join("f")),
            Err(FsError::Io { .. })
        ));
        assert!(matches!(
            FsRoot::open(&t.path().join("missing")),
            Err(FsError::Io { .. })
        ));
        std::fs::create_dir(t.path().join("d")).unwrap();
        symlink("d", t.path().join("link")).unwrap();
        let fs = FsRoot::open(&t.path().join("link")).unwrap();
        assert_eq!(fs.lstat(&RelPath::root()).unwrap().unwrap().kind, Kind::Dir);
        let made = t.path().join("new/deeper");
        FsRoot::open_or_create(&made).unwrap();
        assert!(made.is_dir());
    }

    #[test]
    fn outside_symlink_as_intermediate_dir_is_refused() {
        let (_t, root, outside) = root_and_outside();
        symlink(&outside, root.join("evil")).unwrap();
        symlink("../outside-dir", root.join("rel-evil")).unwrap();
        symlink("..", root.join("up")).unwrap();
        std::fs::create_dir(root.join("sub")).unwrap();
        symlink("../..", root.join("sub/upup")).unwrap();
        for fs in roots(&root) {
            for dir in [
                &b"evil"[..],
                b"rel-evil",
                b"up/outside-dir",
                b"sub/upup/outside-dir",
            ] {
                let p = |name: &str| rel(&[dir, b"/", name.as_bytes()].concat());
                assert!(is_escape(fs.open_read(&p("x"))));
                assert!(is_escape(fs.create_temp(&p("x"))));
                assert!(is_escape(fs.mkdir_all(&p("new/deeper"), 0o755)));
                assert!(is_escape(fs.remove(&p("x"))));
                assert!(is_escape(fs.remove_all(&p("x"))));
                assert!(is_escape(fs.symlink(b"/etc", &p("l"))));
                assert!(is_escape(fs.lstat(&p("x"))));
                assert!(is_escape(fs.stat_follow_within(&p("x"))));
                assert!(is_escape(fs.set_times(&p("x"), (1, 0), false)));
                assert!(is_escape(fs.set_mode(&p("x"), 0o777)));
                assert!(is_escape(fs.read_link(&p("x"))));
                assert!(is_escape(fs.clean_stale_temps(&p("x"))));
                assert!(is_escape(fs.clean_stale_temps(&rel(dir))));
                assert!(is_escape(fs.stat_follow_within(&rel(dir))));
                assert!(is_escape(fs.set_times(&rel(dir), (1, 0), true)));
            }
        }
        assert!(
            names(&outside).is_empty(),
            "something was created outside the root"
        );
    }

    #[test]
    fn inside_symlink_as_intermediate_dir_works_with_openat2() {
        let (_t, root, _outside) = root_and_outside();
        std::fs::create_dir_all(root.join("real/deep")).unwrap();
        symlink("real", root.join("alias")).unwrap();
        symlink("../../real", root.join("real/deep/back")).unwrap();
        let [fs, walk] = roots(&root);
        for via in [&b"alias"[..], b"real/deep/back"] {
            let p = |name: &str| rel(&[via, b"/", name.as_bytes()].concat());
            let mut tmp = fs.create_temp(&p("f")).unwrap();
            tmp.file.write_all(b"hello").unwrap();
            tmp.commit(0o644, (1_000, 0)).unwrap();
            let mut s = String::new();
            fs.open_read(&p("f"))
                .unwrap()
                .read_to_string(&mut s)
                .unwrap();
            assert_eq!(s, "hello");
            fs.mkdir_all(&p("made/here"), 0o755).unwrap();
            assert_eq!(
                fs.stat_follow_within(&rel(via)).unwrap().unwrap().kind,
                Kind::Dir
            );
            // The fallback refuses every symlink in a directory position.
            assert!(is_escape(walk.open_read(&p("f"))));
            assert!(is_escape(walk.stat_follow_within(&rel(via))));
            fs.remove_all(&p("made")).unwrap();
            fs.remove(&p("f")).unwrap();
        }
        assert_eq!(names(&root.join("real")), ["deep"]);
        assert_eq!(fs.stat_follow_within(&rel(b"nope")).unwrap(), None);
    }

    #[test]
    fn final_symlink_is_not_followed_by_open_read() {
        let (_t, root, outside) = root_and_outside();
        std::fs::write(outside.join("secret"), b"s").unwrap();
        std::fs::write(root.join("inside"), b"i").unwrap();
        symlink(outside.join("secret"), root.join("out-link")).unwrap();
        symlink("inside", root.join("in-link")).unwrap();
        for fs in roots(&root) {
            for link in [&b"out-link"[..], b"in-link"] {
                let err = fs.open_read(&rel(link)).unwrap_err();
                assert!(matches!(err, FsError::Io { .. }), "{err}");
                assert!(err.to_string().contains("symbolic link"), "{err}");
            }
            assert!(fs.open_read(&rel(b"inside")).is_ok());
            assert!(fs.open_read(&RelPath::root()).is_err());
        }
    }

    #[test]
    fn commit_over_a_symlink_replaces_the_link_not_its_target() {
        let (_t, root, outside) = root_and_outside();
        std::fs::write(outside.join("secret"), b"original").unwrap();
        for (i, fs) in roots(&root).into_iter().enumerate() {
            let link = rel(format!("link{i}").as_bytes());
            symlink(outside.join("secret"), root.join(link.display())).unwrap();
            let mut tmp = fs.create_temp(&link).unwrap();
            tmp.file.write_all(b"new").unwrap();
            tmp.commit(0o600, (5, 0)).unwrap();
            assert_eq!(fs.lstat(&link).unwrap().unwrap().kind, Kind::File);
            assert_eq!(std::fs::read(root.join(link.display())).unwrap(), b"new");
        }
        assert_eq!(std::fs::read(outside.join("secret")).unwrap(), b"original");
        assert_eq!(names(&outside), ["secret"]);
    }

    #[test]
    fn remove_takes_the_link_not_the_target() {
        let (_t, root, outside) = root_and_outside();
        std::fs::write(outside.join("secret"), b"s").unwrap();
        std::fs::create_dir(outside.join("d")).unwrap();
        std::fs::write(outside.join("d/keep"), b"k").unwrap();
        for fs in roots(&root) {
            symlink(outside.join("secret"), root.join("f-link")).unwrap();
            symlink(outside.join("d"), root.join("d-link")).unwrap();
            std::fs::create_dir_all(root.join("tree/sub")).unwrap();
            symlink(outside.join("d"), root.join("tree/sub/d-link")).unwrap();
            std::fs::write(root.join("tree/sub/file"), b"x").unwrap();
            fs.remove(&rel(b"f-link")).unwrap();
            fs.remove(&rel(b"d-link")).unwrap();
            fs.remove_all(&rel(b"tree")).unwrap();
            fs.remove_all(&rel(b"tree")).unwrap(); // already gone: fine
            assert!(names(&root).is_empty());
            assert!(fs.remove(&rel(b"f-link")).is_err());
        }
        assert_eq!(names(&outside), ["d", "secret"]);
        assert_eq!(names(&outside.join("d")), ["keep"]);
    }

    #[test]
    fn remove_handles_empty_dirs_and_refuses_the_root() {
        let t = tempfile::tempdir().unwrap();
        for fs in roots(t.path()) {
            fs.mkdir_all(&rel(b"empty"), 0o755).unwrap();
            fs.remove(&rel(b"empty")).unwrap();
            fs.mkdir_all(&rel(b"full/x"), 0o755).unwrap();
            assert!(fs.remove(&rel(b"full")).is_err());
            fs.remove_all(&rel(b"full")).unwrap();
            assert!(fs.remove(&RelPath::root()).is_err());
            assert!(fs.remove_all(&RelPath::root()).is_err());
            assert!(fs.create_temp(&RelPath::root()).is_err());
            assert!(fs.symlink(b"x", &RelPath::root()).is_err());
            assert!(t.path().is_dir());
        }
    }

    #[test]
    fn dropped_temp_file_leaves_nothing_behind() {
        let t = tempfile::tempdir().unwrap();
        for fs in roots(t.path()) {
            let mut tmp = fs.create_temp(&rel(b"target")).unwrap();
            tmp.file.write_all(b"partial").unwrap();
            assert_eq!(names(t.path()).len(), 1);
            drop(tmp);
            assert!(names(t.path()).is_empty());
        }
    }

    #[test]
    fn failed_commit_removes_the_temp_file() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("busy/child")).unwrap();
        let fs = FsRoot::open(t.path()).unwrap();
        let tmp = fs.create_temp(&rel(b"busy")).unwrap();
        let err = tmp.commit(0o644, (0, 0)).unwrap_err();
        assert!(
            matches!(&err, FsError::Io { path, .. } if path == "busy"),
            "{err}"
        );
        assert_eq!(names(t.path()), ["busy"]);
    }

    #[test]
    fn temp_file_has_mode_0600_and_the_pattern_name() {
        let t = tempfile::tempdir().unwrap();
        let fs = FsRoot::open(t.path()).unwrap();
        let long = "n".repeat(255);
        for target in ["plain", long.as_str()] {
            let tmp = fs.create_temp(&rel(target.as_bytes())).unwrap();
            let listed = names(t.path());
            let name = listed[0].as_bytes();
            assert!(is_temp_name(name), "{:?}", listed[0]);
            assert!(name.len() <= 255);
            assert_eq!(
                tmp.file.metadata().unwrap().permissions().mode() & 0o7777,
                0o600
            );
        }
    }

    #[test]
    fn commit_sets_mode_and_mtime_exactly() {
        let t = tempfile::tempdir().unwrap();
        for fs in roots(t.path()) {
            fs.mkdir_all(&rel(b"d"), 0o755).unwrap();
            for (mode, mtime) in [
                (0o640, (1_600_000_000, 123_456_789)),
                (0o4751, (-1, 999_999_999)),
            ] {
                let mut tmp = fs.create_temp(&rel(b"d/f")).unwrap();
                tmp.file.write_all(b"data").unwrap();
                tmp.commit(mode, mtime).unwrap();
                let m = fs.lstat(&rel(b"d/f")).unwrap().unwrap();
                assert_eq!(
                    (m.kind, m.mode, m.mtime, m.size, m.nlink),
                    (Kind::File, mode, mtime, 4, 1)
                );
            }
        }
    }

    #[test]
    fn set_times_and_mode_respect_symlinks() {
        let (_t, root, outside) = root_and_outside();
        std::fs::write(outside.join("secret"), b"s").unwrap();
        std::fs::set_permissions(
            outside.join("secret"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let before = std::fs::metadata(outside.join("secret")).unwrap();
        symlink(outside.join("secret"), root.join("link")).unwrap();
        std::fs::create_dir(root.join("dir")).unwrap();
        symlink("dir", root.join("dir-link")).unwrap();
        for fs in roots(&root) {
            fs.set_times(&rel(b"link"), (7, 8), false).unwrap();
            assert_eq!(fs.lstat(&rel(b"link")).unwrap().unwrap().mtime, (7, 8));
            assert!(is_escape(fs.set_times(&rel(b"link"), (9, 0), true)));
            fs.set_mode(&rel(b"link"), 0o777).unwrap(); // skipped
            fs.set_mode(&rel(b"dir"), 0o711).unwrap();
            fs.set_times(&rel(b"dir"), (11, 12), true).unwrap();
            fs.set_mode(&RelPath::root(), 0o755).unwrap();
            fs.set_times(&RelPath::root(), (13, 14), false).unwrap();
            let m = fs.lstat(&rel(b"dir")).unwrap().unwrap();
            assert_eq!((m.kind, m.mode, m.mtime), (Kind::Dir, 0o711, (11, 12)));
            assert_eq!(fs.lstat(&RelPath::root()).unwrap().unwrap().mtime, (13, 14));
        }
        let [fast, walk] = roots(&root);
        fast.set_times(&rel(b"dir-link"), (21, 22), true).unwrap();
        assert_eq!(fast.lstat(&rel(b"dir")).unwrap().unwrap().mtime, (21, 22));
        assert!(is_escape(walk.set_times(&rel(b"dir-link"), (21, 22), true)));
        let after = std::fs::metadata(outside.join("secret")).unwrap();
        assert_eq!(after.permissions().mode() & 0o7777, 0o600);
        assert_eq!(after.modified().unwrap(), before.modified().unwrap());
    }

    #[test]
    fn clean_stale_temps_removes_only_temp_pattern_files() {
        let t = tempfile::tempdir().unwrap();
        let fs = FsRoot::open(t.path()).unwrap();
        fs.mkdir_all(&rel(b"d"), 0o755).unwrap();
        let d = t.path().join("d");
        std::mem::forget(fs.create_temp(&rel(b"d/crashed")).unwrap()); // a crash: no Drop
        std::fs::write(d.join(".a.jsync-tmp.0123456789abcdef"), b"").unwrap();
        symlink("x", d.join(".l.jsync-tmp.fedcba9876543210")).unwrap();
        let keep = [
            "normal",
            "a.jsync-tmp.0123456789abcdef",
            ".a.jsync-tmp.bak",
            ".a.jsync-tmp.0123456789ABCDEF",
            ".jsync-tmp.0123456789abcdef",
            ".a.jsync-tmp.0123456789abcdef.old",
            ".dir.jsync-tmp.0123456789abcdef",
        ];
        for k in &keep[..6] {
            std::fs::write(d.join(k), b"").unwrap();
        }
        std::fs::create_dir(d.join(keep[6])).unwrap();
        assert_eq!(fs.clean_stale_temps(&rel(b"d")).unwrap(), 3);
        let mut want: Vec<OsString> = keep.iter().map(OsString::from).collect();
        want.sort();
        assert_eq!(names(&d), want);
        assert_eq!(fs.clean_stale_temps(&rel(b"d")).unwrap(), 0);
    }

    #[test]
    fn non_utf8_names_round_trip() {
        let t = tempfile::tempdir().unwrap();
        for (i, fs) in roots(t.path()).into_iter().enumerate() {
            let dir = rel(format!("{i}/caf\u{e9}").as_bytes()).join(OsStr::from_bytes(b"caf\xe9"));
            let file = dir.join(OsStr::from_bytes(b"na\xefve"));
            fs.mkdir_all(&dir, 0o755).unwrap();
            let mut tmp = fs.create_temp(&file).unwrap();
            tmp.file.write_all(b"x").unwrap();
            tmp.commit(0o644, (1, 2)).unwrap();
            assert_eq!(fs.lstat(&file).unwrap().unwrap().size, 1);
            assert!(fs.open_read(&file).is_ok());
            let link = dir.join(OsStr::from_bytes(b"l\xff"));
            fs.symlink(b"na\xefve", &link).unwrap();
            assert_eq!(fs.read_link(&link).unwrap(), b"na\xefve");
            fs.symlink(b"\xfe/other", &link).unwrap(); // replaces atomically
            assert_eq!(fs.read_link(&link).unwrap(), b"\xfe/other");
            assert!(file.display().contains('\u{fffd}'));
            let listed = names(
                &t.path()
                    .join(format!("{i}/caf\u{e9}"))
                    .join(OsStr::from_bytes(b"caf\xe9")),
            );
            assert_eq!(
                listed,
                [OsStr::from_bytes(b"l\xff"), OsStr::from_bytes(b"na\xefve")]
            );
            assert_eq!(rel(file.as_bytes()), file);
        }
    }

    #[test]
    fn symlink_replaces_a_file_but_not_a_directory() {
        let t = tempfile::tempdir().unwrap();
        let fs = FsRoot::open(t.path()).unwrap();
        std::fs::write(t.path().join("f"), b"x").unwrap();
        fs.symlink(b"/anywhere", &rel(b"f")).unwrap();
        assert_eq!(fs.lstat(&rel(b"f")).unwrap().unwrap().kind, Kind::Symlink);
        fs.mkdir_all(&rel(b"d"), 0o755).unwrap();
        assert!(fs.symlink(b"x", &rel(b"d")).is_err());
        assert!(fs.symlink(b"bad\0target", &rel(b"g")).is_err());
        assert_eq!(names(t.path()), ["d", "f"]);
    }

    #[test]
    fn mkdir_all_over_an_existing_file_fails_naming_it() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("file"), b"x").unwrap();
        for fs in roots(t.path()) {
            for target in [&b"file"[..], b"file/sub/deeper"] {
                let err = fs.mkdir_all(&rel(target), 0o755).unwrap_err();
                assert!(
                    matches!(&err, FsError::Io { path, .. } if path == "file"),
                    "{err}"
                );
            }
        }
    }

    #[test]
    fn mkdir_all_creates_missing_dirs_and_is_idempotent() {
        let t = tempfile::tempdir().unwrap();
        for (i, fs) in roots(t.path()).into_iter().enumerate() {
            let p = rel(format!("{i}/a/b/c").as_bytes());
            fs.mkdir_all(&p, 0o755).unwrap();
            fs.mkdir_all(&p, 0o755).unwrap();
            fs.mkdir_all(&RelPath::root(), 0o755).unwrap();
            assert_eq!(fs.lstat(&p).unwrap().unwrap().kind, Kind::Dir);
        }
    }

    #[test]
    fn lstat_reports_missing_and_kinds() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("f"), b"abc").unwrap();
        symlink("f", t.path().join("l")).unwrap();
        for fs in roots(t.path()) {
            assert_eq!(fs.lstat(&rel(b"missing")).unwrap(), None);
            assert_eq!(fs.lstat(&rel(b"missing/deeper")).unwrap(), None);
            assert_eq!(fs.lstat(&rel(b"f")).unwrap().unwrap().size, 3);
            assert_eq!(fs.lstat(&rel(b"l")).unwrap().unwrap().kind, Kind::Symlink);
            assert_eq!(fs.lstat(&RelPath::root()).unwrap().unwrap().kind, Kind::Dir);
            assert!(fs.lstat(&rel(b"f/x")).is_err());
            assert_eq!(fs.read_link(&rel(b"l")).unwrap(), b"f");
        }
    }
}
