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
//! New file content is written to a [`TempFile`] beside its target (or in the
//! `-T` directory, [`FsRoot::set_temp_dir`]) and renamed over it by
//! [`TempFile::commit`]; an uncommitted temp file is removed on drop,
//! or kept as `.<name>.jsync-partial` by [`TempFile::keep_as_partial`] for a
//! later run to resume from ([`FsRoot::partial`]). A small file written at once
//! is an unnamed inode instead ([`FsRoot::create_unnamed`], `O_TMPFILE`), linked
//! in at its name on commit: no temp name, lock or rename, and nothing left
//! behind by a killed run. Special files, hard links and symlinks are made under
//! a temp name and renamed into place.

use std::borrow::Cow;
use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rustix::fs::{
    self as rfs, AtFlags, Dir, FileType, Gid, Mode, OFlags, RenameFlags, ResolveFlags, SeekFrom,
    Timespec, Timestamps, Uid, XattrFlags, CWD,
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
/// Marks partial files: `.<name>.jsync-partial`, the name shortened exactly like
/// in temp names (to [`TEMP_NAME_KEEP`] bytes), so a temp's target always maps to
/// the same partial as the file it was written for.
const PARTIAL_MARK: &[u8] = b".jsync-partial";

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
    pub(crate) fn io(path: impl Into<String>, source: impl Into<io::Error>) -> FsError {
        FsError::Io {
            path: path.into(),
            source: source.into(),
        }
    }

    /// `PATH: DOING: CAUSE` ("cannot write: No space left on device"): the
    /// cause alone does not say which step failed. The cause's kind is
    /// kept.
    pub(crate) fn doing(path: impl Into<String>, doing: &str, e: impl Into<io::Error>) -> FsError {
        let e = e.into();
        FsError::io(path, io::Error::new(e.kind(), format!("{doing}: {e}")))
    }

    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self, FsError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }

    /// Not found, or a non-directory on the way: nothing is at the path.
    pub(crate) fn is_absent(&self) -> bool {
        self.is_not_found()
            || matches!(self, FsError::Io { source, .. } if source.kind() == io::ErrorKind::NotADirectory)
    }
}

/// A checked path relative to a root: `/`-separated components, none of them
/// empty, `.` or `..`. The root itself is the empty path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct RelPath {
    bytes: Vec<u8>,
    /// False once [`RelPath::join`] was handed something that is not a single
    /// name: the path is then refused wherever it is used.
    valid: bool,
}

impl RelPath {
    /// The root itself.
    pub fn root() -> RelPath {
        RelPath {
            bytes: Vec::new(),
            valid: true,
        }
    }

    /// This path with one more component. `name` must be a single component
    /// (a name from a directory listing); anything else is refused later, when
    /// the path is used.
    pub fn join(&self, name: &OsStr) -> RelPath {
        let mut bytes = Vec::with_capacity(self.bytes.len() + 1 + name.len());
        bytes.extend_from_slice(&self.bytes);
        if !bytes.is_empty() {
            bytes.push(b'/');
        }
        bytes.extend_from_slice(name.as_bytes());
        RelPath {
            bytes,
            valid: self.valid && valid_component(name.as_bytes()),
        }
    }

    /// The containing directory; `None` for the root.
    pub fn parent(&self) -> Option<RelPath> {
        if self.is_root() {
            return None;
        }
        Some(RelPath {
            bytes: self.parent_bytes().to_vec(),
            valid: self.valid,
        })
    }

    /// The wire form of [`RelPath::parent`] (empty for the root and its children).
    fn parent_bytes(&self) -> &[u8] {
        let end = self.bytes.iter().rposition(|&b| b == b'/').unwrap_or(0);
        &self.bytes[..end]
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

    /// For messages ([`super::escape_name`]), and `.` for the root (also a
    /// valid wire path).
    pub fn display(&self) -> String {
        if self.is_root() {
            ".".to_owned()
        } else {
            super::escape_name(&self.bytes).into_owned()
        }
    }

    /// The normalized wire form: empty for the root.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub(crate) fn components(&self) -> impl Iterator<Item = &OsStr> {
        self.bytes
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty())
            .map(OsStr::from_bytes)
    }

    /// Refuses the path before it reaches the kernel if a [`RelPath::join`]
    /// was handed something that is not a single name.
    fn confined(&self) -> Result<(), FsError> {
        if self.valid {
            Ok(())
        } else {
            Err(escape(&self.bytes))
        }
    }
}

fn valid_component(c: &[u8]) -> bool {
    !c.is_empty() && c != b"." && c != b".." && !c.contains(&b'/') && !c.contains(&0)
}

/// What an absolute path on a server is told (`host:/etc`).
const ABSOLUTE: &str = "(an absolute path: a server's paths are relative to the root it serves)";

fn escape(raw: &[u8]) -> FsError {
    FsError::Escape {
        path: super::escape_name(raw).into_owned(),
    }
}

/// What kind of file a path names (not following a final symlink for `lstat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
    Symlink,
    /// A named pipe.
    Fifo,
    /// A character device; [`Meta::rdev`] says which.
    CharDev,
    /// A block device; [`Meta::rdev`] says which.
    BlockDev,
    /// A Unix domain socket (can be listed, not recreated).
    Socket,
}

/// Extended attributes as (name, value) pairs, sorted by name when read.
pub(crate) type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// The metadata the sync engine compares and restores.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    pub kind: Kind,
    pub size: u64,
    /// Permission bits including setuid, setgid and sticky (`st_mode & 0o7777`).
    pub mode: u32,
    /// Seconds and nanoseconds since the epoch.
    pub mtime: (i64, u32),
    /// Status change time: moves on every write, and cannot be set by anyone.
    pub ctime: (i64, u32),
    pub ino: u64,
    pub dev: u64,
    pub nlink: u64,
    /// Owner and group ids.
    pub uid: u32,
    pub gid: u32,
    /// The device a [`Kind::CharDev`] or [`Kind::BlockDev`] stands for (0 otherwise).
    pub rdev: u64,
    /// Space allocated, in 512-byte units (`st_blocks`): less than `size` for a sparse file.
    pub blocks: u64,
    /// Access time (`-U` sends it): reading the file may move it, so two
    /// metadata that differ only here are the same.
    pub atime: (i64, u32),
}

impl PartialEq for Meta {
    fn eq(&self, o: &Meta) -> bool {
        // (Every field but the access time; a new one must be named here.)
        let Meta {
            kind,
            size,
            mode,
            mtime,
            ctime,
            ino,
            dev,
            nlink,
            uid,
            gid,
            rdev,
            blocks,
            atime: _,
        } = self;
        (*kind, *size, *mode, *mtime, *ctime, *ino, *dev)
            == (o.kind, o.size, o.mode, o.mtime, o.ctime, o.ino, o.dev)
            && (*nlink, *uid, *gid, *rdev, *blocks) == (o.nlink, o.uid, o.gid, o.rdev, o.blocks)
    }
}

impl Eq for Meta {}

impl Meta {
    // Field types of `struct stat` differ between architectures.
    #[allow(clippy::unnecessary_cast)]
    pub(crate) fn from_stat(st: &rfs::Stat) -> Meta {
        let kind = match FileType::from_raw_mode(st.st_mode as _) {
            FileType::RegularFile => Kind::File,
            FileType::Directory => Kind::Dir,
            FileType::Symlink => Kind::Symlink,
            FileType::Fifo => Kind::Fifo,
            FileType::CharacterDevice => Kind::CharDev,
            FileType::BlockDevice => Kind::BlockDev,
            FileType::Socket => Kind::Socket,
            // No other kinds exist on Linux; a mode with no type bits is
            // treated like a socket: listed, never opened or recreated.
            FileType::Unknown => Kind::Socket,
        };
        Meta {
            kind,
            size: st.st_size.max(0) as u64,
            mode: (st.st_mode as u32) & 0o7777,
            mtime: (
                st.st_mtime as i64,
                (st.st_mtime_nsec as u64).min(999_999_999) as u32,
            ),
            ctime: (
                st.st_ctime as i64,
                (st.st_ctime_nsec as u64).min(999_999_999) as u32,
            ),
            ino: st.st_ino as u64,
            dev: st.st_dev as u64,
            nlink: st.st_nlink as u64,
            uid: st.st_uid as u32,
            gid: st.st_gid as u32,
            rdev: st.st_rdev as u64,
            blocks: st.st_blocks.max(0) as u64,
            atime: (
                st.st_atime as i64,
                (st.st_atime_nsec as u64).min(999_999_999) as u32,
            ),
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
    /// Descriptors of directories resolved lately, by relative path: a tree's
    /// entries come directory by directory, so most lookups hit, and each saves
    /// a resolution from the root (an `openat2` and a `close`). A cached
    /// descriptor was beneath the root when it was resolved, like any other;
    /// every operation that removes or replaces a path drops what is cached at
    /// and below it.
    dirs: std::sync::Mutex<BTreeMap<Vec<u8>, Arc<OwnedFd>>>,
    /// `--partial-dir`: partial files live in this directory inside each
    /// directory, under their files' names ([`FsRoot::set_partial_dir`]).
    partial_dir: std::sync::OnceLock<OsString>,
    /// `-T`: temp files are made in this directory ([`FsRoot::set_temp_dir`]).
    temp_dir: std::sync::OnceLock<TempHome>,
    /// `--open-noatime`: files are opened for reading without moving their
    /// access times ([`FsRoot::set_open_noatime`]).
    noatime: std::sync::atomic::AtomicBool,
}

/// The directory `-T` names, and the mount it is on: a temp file is made
/// there only for a target on the same mount (a rename or link cannot
/// cross one).
#[derive(Debug, Clone)]
struct TempHome {
    fd: Arc<OwnedFd>,
    mount: (u64, u64),
    /// Its device and inode.
    id: (u64, u64),
}

/// The names in a directory, each with whether it is a directory.
pub(crate) type Listing = Vec<(Vec<u8>, bool)>;

/// What [`FsRoot::clean_stale_temps_scan`] did and saw.
pub(crate) struct TempScan {
    /// Temps removed or kept as partial files.
    pub cleaned: usize,
    /// The partial files the directory holds now.
    pub partials: Partials,
    /// The names it held when it was read.
    pub names: Listing,
}

/// The partial files a directory holds ([`TempScan`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) enum Partials {
    #[default]
    None,
    /// Beside their files, by name (`.<X>.jsync-partial`).
    Named(HashSet<Vec<u8>>),
    /// A partial directory (`--partial-dir`) is there: any file may have
    /// one (its names are not read).
    Any,
}

impl Partials {
    /// `name` is an entry the sender lists (named like a partial file, but
    /// the user's): not a partial file.
    pub(crate) fn listed(&mut self, name: &[u8]) {
        if let Partials::Named(names) = self {
            names.remove(name);
        }
    }

    /// Whether the file `name` of the directory may have a partial file.
    pub(crate) fn has(&self, name: &OsStr) -> bool {
        match self {
            Partials::None => false,
            Partials::Named(names) => names.contains(partial_name(name).as_bytes()),
            Partials::Any => true,
        }
    }

    /// Whether the partial file named `partial` belongs to none of
    /// `names` (listed here by the sender): nothing will resume from it.
    pub(crate) fn orphan(partial: &[u8], names: &[Vec<u8>]) -> bool {
        !names
            .iter()
            .any(|n| partial_name(OsStr::from_bytes(n)).as_bytes() == partial)
    }
}

/// Directory descriptors an [`FsRoot`] keeps at most (then it starts over).
const DIR_CACHE: usize = 256;

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
            dirs: Default::default(),
            partial_dir: Default::default(),
            temp_dir: Default::default(),
            noatime: Default::default(),
        })
    }

    /// Creates the directory and its parents as needed (like `mkdir -p`), then opens it.
    pub fn open_or_create(dir: &Path) -> Result<FsRoot, FsError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            // (`mkdir` says "File exists" of a file in the way, and "Not a
            // directory" of what is beneath it: the file is named, as what
            // is not a directory.)
            let kinds = [io::ErrorKind::AlreadyExists, io::ErrorKind::NotADirectory];
            let in_way = kinds
                .contains(&e.kind())
                .then(|| {
                    dir.ancestors()
                        .find(|p| p.metadata().is_ok_and(|m| !m.is_dir()))
                })
                .flatten();
            match in_way {
                Some(p) => FsError::io(
                    p.display().to_string(),
                    io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
                ),
                None => FsError::io(dir.display().to_string(), e),
            }
        })?;
        FsRoot::open(dir)
    }

    /// The directory `rel` beneath this root as a root of its own, opened
    /// without following a final symlink: nothing beneath it can reach outside
    /// it, not even by a symlink to elsewhere in this root. A receiver works in
    /// its destination this way, so that symlinks a hostile sender lists cannot
    /// lead its files next to the destination. `rel` is not the root itself
    /// (which needs no new root).
    pub fn sub(&self, rel: &RelPath) -> Result<FsRoot, FsError> {
        let fd = self.resolve(rel, OFlags::PATH | OFlags::DIRECTORY, false)?;
        Ok(FsRoot {
            fd,
            path: self.path.join(OsStr::from_bytes(rel.as_bytes())),
            resolver: self.resolver,
            dirs: Default::default(),
            partial_dir: self.partial_dir.clone(),
            temp_dir: self.temp_dir.clone(),
            noatime: self.noatime.load(Ordering::Relaxed).into(),
        })
    }

    /// The root as it was named when opened; for messages and the source walk.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Validates a wire path: relative, no `..` component, no NUL. Empty and `.`
    /// components are dropped (`a/./b` is `a/b`); `""` and `"."` name the root.
    pub fn check(rel: &[u8]) -> Result<RelPath, FsError> {
        if rel.first() == Some(&b'/') {
            return Err(FsError::Escape {
                path: format!("{} {ABSOLUTE}", super::escape_name(rel)),
            });
        }
        if rel.contains(&0) {
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
        Ok(RelPath { bytes, valid: true })
    }

    /// A path a client typed, read as a remote shell reads it for scp and
    /// rsync, within the root: a leading `~` (alone or before `/`) is the
    /// root, which stands for a login's home here (`host:~/notes`); each
    /// `..` is the parent of the directory that what comes before it leads
    /// to (following symlinks while they stay beneath the root: `dl/..` is
    /// not lexically the root when `dl` leads to `d1/sub`), as rsync's
    /// server resolves it. A `..` that would climb above the root is an
    /// escape; an absolute path comes back as it is, for `check` to refuse.
    /// A path that named a directory's
    /// contents (a trailing `/`, `.` or `..`) still does (`d1/sub/..` is
    /// `d1/`); one without `~` or `..` comes back as it is, for
    /// [`FsRoot::check`].
    pub fn resolve_typed<'a>(&self, path: &'a str) -> Result<Cow<'a, str>, FsError> {
        let home = match path.strip_prefix('~') {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => Some(rest),
            _ => None,
        };
        let rest = home.unwrap_or(path);
        // (An absolute path is left for `check` to refuse.)
        if home.is_none() && path.starts_with('/') || !rest.split('/').any(|c| c == "..") {
            return Ok(match home {
                Some("") => Cow::Borrowed(""),
                Some(rest) => match rest.trim_start_matches('/') {
                    "" => Cow::Borrowed("."),
                    name => Cow::Owned(name.to_string()),
                },
                None => Cow::Borrowed(path),
            });
        }
        let mut at = RelPath::root();
        for c in rest.split('/') {
            match c {
                "" | "." => {}
                ".." => {
                    let escapes = || escape(path.as_bytes());
                    if at.is_root() {
                        return Err(escapes());
                    }
                    let Some((dir, _)) = self.dirlink_target(&at)? else {
                        use io::ErrorKind::{NotADirectory, NotFound};
                        let why = match self.lstat(&at)? {
                            Some(_) => io::Error::new(NotADirectory, "not a directory"),
                            None => io::Error::new(NotFound, "no such file or directory"),
                        };
                        return Err(FsError::io(at.display(), why));
                    };
                    at = dir.parent().ok_or_else(escapes)?;
                }
                name => at = at.join(OsStr::new(name)),
            }
        }
        let mut out = String::from_utf8(at.bytes).map_err(|e| {
            FsError::io(
                super::escape_name(e.as_bytes()),
                io::Error::other("a server path on the command line must be UTF-8"),
            )
        })?;
        if super::give::names_contents(rest.as_bytes()) {
            out.push_str(if out.is_empty() { "." } else { "/" });
        }
        Ok(Cow::Owned(out))
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

    /// Where the symlink `rel` leads when that is a directory beneath the
    /// root (`-K`): the directory's path beneath the root and its metadata.
    /// `None` when the link leads to anything else or nowhere; an escape
    /// error when it leads out of the root (or, with the fallback resolver,
    /// anywhere). The path is read back from `/proc/self/fd` once the
    /// kernel has resolved the link beneath the root (without `/proc`, an
    /// error).
    pub fn dirlink_target(&self, rel: &RelPath) -> Result<Option<(RelPath, Meta)>, FsError> {
        let fd = match self.resolve_follow(rel) {
            Ok(fd) => fd,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        let err = |e: io::Error| FsError::io(rel.display(), e);
        let meta = Meta::from_stat(&rfs::fstat(&fd).map_err(|e| err(e.into()))?);
        if meta.kind != Kind::Dir {
            return Ok(None);
        }
        let at = std::fs::read_link(proc_fd_path(&fd)).map_err(err)?;
        let root = std::fs::read_link(proc_fd_path(&self.fd)).map_err(err)?;
        let beneath = at.strip_prefix(&root).map_err(|_| escape(rel.as_bytes()))?;
        Ok(Some((FsRoot::check(beneath.as_os_str().as_bytes())?, meta)))
    }

    /// Opens a regular file for reading. A final symlink is refused, not
    /// followed; so is anything but a regular file (a FIFO would block).
    pub fn open_read(&self, rel: &RelPath) -> Result<File, FsError> {
        self.open_read_meta(rel).map(|(f, _)| f)
    }

    /// [`FsRoot::open_read`] with the metadata of what was opened (from the
    /// `fstat` that checks it, so the caller needs no second one).
    pub fn open_read_meta(&self, rel: &RelPath) -> Result<(File, Meta), FsError> {
        let (dir, name) = self.locate(rel)?;
        let flags = self.read_flags() | OFlags::NOFOLLOW;
        let fd = without_atime(flags, perm, |f| rfs::openat(&dir, name, f, Mode::empty()))
            .map_err(|e| match e {
                Errno::LOOP => FsError::io(rel.display(), not_followed()),
                e => FsError::io(rel.display(), e),
            })?;
        regular_file(fd, &rel.display())
    }

    /// [`FsRoot::open_read_meta`] that follows symlinks, the final one too,
    /// while they stay beneath the root (`-L` on a server; the fallback
    /// resolver follows none).
    pub fn open_read_follow_within(&self, rel: &RelPath) -> Result<(File, Meta), FsError> {
        let refused = |e: &FsError| {
            matches!(e, FsError::Io { source, .. }
                if source.raw_os_error() == Some(Errno::PERM.raw_os_error()))
        };
        let fd = without_atime(self.read_flags(), refused, |f| self.resolve(rel, f, true))?;
        regular_file(fd, &rel.display())
    }

    /// `--open-noatime`: from now on files are opened for reading with
    /// `O_NOATIME` (so reading them leaves their access times), where this
    /// process may (it owns them, or has `CAP_FOWNER`); others as before.
    pub(crate) fn set_open_noatime(&self) {
        self.noatime.store(true, Ordering::Relaxed);
    }

    /// How files are opened for reading here ([`READ_FLAGS`], with
    /// `--open-noatime` `O_NOATIME` too).
    pub(crate) fn read_flags(&self) -> OFlags {
        match self.noatime.load(Ordering::Relaxed) {
            true => READ_FLAGS | OFlags::NOATIME,
            false => READ_FLAGS,
        }
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

    /// A new, empty temp file (mode 0600) in the directory of `rel` (or the
    /// `-T` directory), named `.<name>.jsync-tmp.<random>`;
    /// [`TempFile::commit`] renames it over `rel`.
    pub fn create_temp(&self, rel: &RelPath) -> Result<TempFile, FsError> {
        let (dir, name) = self.locate_replaceable(rel)?;
        let home = self.temp_home(&dir);
        let flags =
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut last = Errno::EXIST;
        for _ in 0..RETRIES {
            let temp = temp_name(name);
            match rfs::openat(&home, &temp, flags, Mode::from_raw_mode(0o600)) {
                Ok(fd) => {
                    // Held while the temp is being written, so another run's
                    // cleanup can tell it from a crash's leftover. Waited for:
                    // a cleanup's probe holds it for an instant, and giving up
                    // would leave the temp unlocked, fair game for every later
                    // cleanup while it is written. (A cleanup that comes
                    // between the create and this lock can still take the
                    // temp; the commit then fails for this file, loudly.)
                    let _ = rfs::flock(&fd, rfs::FlockOperation::LockExclusive);
                    return Ok(TempFile {
                        file: File::from(fd),
                        dir,
                        home,
                        temp: Temp::Named(temp),
                        target: name.to_owned(),
                        shown: rel.display(),
                        partial_dir: self.partial_dir.get().cloned(),
                        preallocated: false,
                        done: false,
                    });
                }
                Err(Errno::EXIST) => last = Errno::EXIST,
                Err(e) => return Err(no_temp(rel, e)),
            }
        }
        Err(no_temp(rel, last))
    }

    /// [`FsRoot::create_temp`] for a file written at once (a small file that
    /// arrived whole): an unnamed inode (`O_TMPFILE`) in the target's directory
    /// (or the `-T` directory), which [`TempFile::commit`] links in at the
    /// target's name. That saves the
    /// temp name, its lock and the rename; and a run killed before the commit
    /// leaves nothing behind (no partial to resume from either, which a small
    /// file does not need). Where the filesystem has no unnamed files, or this
    /// process cannot link one in (no `CAP_DAC_READ_SEARCH` and no `/proc`), it
    /// is a named temp as with [`FsRoot::create_temp`].
    pub fn create_unnamed(&self, rel: &RelPath) -> Result<TempFile, FsError> {
        if LINK_VIA.get() == Some(&LinkVia::Unsupported) {
            return self.create_temp(rel);
        }
        let (dir, name) = self.locate_replaceable(rel)?;
        let home = self.temp_home(&dir);
        let flags = OFlags::RDWR | OFlags::TMPFILE | OFlags::CLOEXEC;
        let fd = match rfs::openat(&home, ".", flags, Mode::from_raw_mode(0o600)) {
            Ok(fd) => fd,
            // Filesystems without O_TMPFILE (and kernels that take it for a
            // plain O_DIRECTORY open).
            Err(Errno::OPNOTSUPP) | Err(Errno::ISDIR) | Err(Errno::INVAL) => {
                return self.create_temp(rel)
            }
            Err(e) => return Err(no_temp(rel, e)),
        };
        let via = probe_link_via(&fd, &home);
        if via == LinkVia::Unsupported {
            return self.create_temp(rel);
        }
        Ok(TempFile {
            file: File::from(fd),
            dir,
            home,
            temp: Temp::Unnamed(via),
            target: name.to_owned(),
            shown: rel.display(),
            partial_dir: self.partial_dir.get().cloned(),
            preallocated: false,
            done: false,
        })
    }

    /// Makes `rel` a symlink to `target`, atomically replacing whatever file or
    /// symlink was there (never following it). The target is stored as given.
    pub fn symlink(&self, target: &[u8], rel: &RelPath) -> Result<(), FsError> {
        let (dir, name) = self.locate_replaceable(rel)?;
        let target = OsStr::from_bytes(target);
        create_and_replace(dir.as_fd(), name, |temp| rfs::symlinkat(target, &dir, temp))
            .map_err(|e| FsError::io(rel.display(), e))
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

    /// Removes `rel` if it is an empty directory: whether it was one (a
    /// directory that holds anything, or anything else, stays).
    pub fn remove_empty_dir(&self, rel: &RelPath) -> Result<bool, FsError> {
        let (dir, name) = self.locate_replaceable(rel)?;
        match rfs::unlinkat(&dir, name, AtFlags::REMOVEDIR) {
            Ok(()) => Ok(true),
            Err(Errno::NOTEMPTY | Errno::EXIST | Errno::NOTDIR) => Ok(false),
            Err(e) => Err(FsError::io(rel.display(), e)),
        }
    }

    /// Whether directory `rel` holds nothing (read up to its first entry; a
    /// final symlink is not followed).
    pub fn is_empty_dir(&self, rel: &RelPath) -> Result<bool, FsError> {
        let fd = self.resolve(rel, OFlags::RDONLY | OFlags::DIRECTORY, false)?;
        let err = |e: Errno| FsError::io(rel.display(), e);
        let mut dir = Dir::new(fd).map_err(err)?;
        while let Some(entry) = dir.read() {
            let entry = entry.map_err(err)?;
            if !matches!(entry.file_name().to_bytes(), b"." | b"..") {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// How many entries directory `rel` holds, all the way down (symlinks
    /// counted, never followed): what removing it deletes. Given `dev`, a
    /// directory on another filesystem within it is an error naming it
    /// (`-x`: what removing it would not enter).
    pub fn count_beneath(&self, rel: &RelPath, dev: Option<u64>) -> Result<u64, FsError> {
        let fd = self.resolve(rel, OFlags::RDONLY | OFlags::DIRECTORY, false)?;
        count_tree(fd, dev, Path::new(&rel.display())).map_err(|e| FsError::io(rel.display(), e))
    }

    /// Removes `rel` and everything beneath it, like `rm -rf`: a missing path is
    /// fine, and symlinks are removed, never descended into. Given `dev`, it
    /// enters no directory on another filesystem (`--delete -x`): such a
    /// directory, and so each one above it, stays, and the error names it.
    pub fn remove_all_on(&self, rel: &RelPath, dev: Option<u64>) -> Result<(), FsError> {
        let (dir, name) = match self.locate_replaceable(rel) {
            Ok(found) => found,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        };
        remove_tree(dir.as_fd(), name, dev).map_err(|e| FsError::io(rel.display(), e))
    }

    /// The names in directory `rel` (not `.` and `..`), each with whether it is
    /// a directory (never following symlinks). For `--delete`.
    pub fn read_dir(&self, rel: &RelPath) -> Result<Listing, FsError> {
        self.list(rel).map(|(_, names)| names)
    }

    /// Reads directory `rel` whole: the open directory and its names.
    fn list(&self, rel: &RelPath) -> Result<(Dir, Listing), FsError> {
        let fd = self.resolve(rel, OFlags::RDONLY | OFlags::DIRECTORY, true)?;
        let err = |e: Errno| FsError::io(rel.display(), e);
        let mut dir = Dir::new(fd).map_err(err)?;
        let mut out = Vec::new();
        while let Some(entry) = dir.read() {
            let entry = entry.map_err(err)?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let is_dir = match entry.file_type() {
                FileType::Directory => true,
                // A filesystem that does not say: look (never following).
                FileType::Unknown => {
                    let name = name.to_vec();
                    let st = rfs::statat(
                        dir.fd().map_err(err)?,
                        name.as_slice(),
                        AtFlags::SYMLINK_NOFOLLOW,
                    );
                    st.map(|st| Meta::from_stat(&st).kind == Kind::Dir)
                        .map_err(err)?
                }
                _ => false,
            };
            out.push((name.to_vec(), is_dir));
        }
        Ok((dir, out))
    }

    /// Sets the times `times` gives (an mtime alone sets the atime too).
    /// With `follow`, a final symlink is followed while it stays beneath the
    /// root; without, the link itself is set. Nanoseconds above 999 999 999
    /// are clamped (they would mean "now"/"omit").
    pub fn set_times(
        &self,
        rel: &RelPath,
        times: impl Into<Times>,
        follow: bool,
    ) -> Result<(), FsError> {
        let Some(times) = times.into().timestamps() else {
            return Ok(());
        };
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
        chmod_nofollow(dir.as_fd(), name, mode).map_err(|e| FsError::io(rel.display(), e))
    }

    /// Sets the owner and/or group of `rel` (`None` leaves one unchanged),
    /// never following a final symlink: on a symlink it sets the link's own
    /// owner. Only root may give a file away; the kernel answers `EPERM`
    /// otherwise. Changing the owner of a regular file clears its setuid and
    /// setgid bits and its `security.capability` attribute, so set the mode
    /// and extended attributes afterwards.
    pub fn chown(&self, rel: &RelPath, uid: Option<u32>, gid: Option<u32>) -> Result<(), FsError> {
        let (dir, name) = self.locate(rel)?;
        let err = |e: Errno| FsError::io(rel.display(), e);
        let (uid, gid) = owner_ids(uid, gid).map_err(err)?;
        rfs::chownat(&dir, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW).map_err(err)
    }

    /// All extended attributes of `rel` as (name, value) pairs sorted by name,
    /// `system.*` (ACLs) included, never following a final symlink. Symlinks,
    /// FIFOs, devices and sockets give an empty list without being opened (a
    /// FIFO could block, a device could act; Linux allows no `user.*` on
    /// links), as does a filesystem without extended attributes. Files and
    /// directories are opened read-only, which needs read permission.
    pub fn xattrs(&self, rel: &RelPath) -> Result<Xattrs, FsError> {
        let (dir, name) = self.locate(rel)?;
        let err = |e: io::Error| FsError::io(rel.display(), e);
        match open_plain(dir.as_fd(), name, true).map_err(err)? {
            Some(fd) => fd_xattrs(fd.as_fd()).map_err(err),
            None => Ok(Vec::new()),
        }
    }

    /// The per-directory filter file `name` (`dir-merge`) in directory `dir`:
    /// see [`read_rule_file`]. Errors do not name the file (the caller does).
    pub(crate) fn read_rule_file(&self, dir: &RelPath, name: &str) -> io::Result<Option<Vec<u8>>> {
        let rel = dir.join(OsStr::new(name));
        let dir = match self.locate(&rel) {
            Ok((dir, _)) => dir,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(FsError::Io { source, .. }) => return Err(source),
            Err(e @ FsError::Escape { .. }) => return Err(io::Error::other(e.to_string())),
        };
        read_rule_file(dir.as_fd(), name)
    }

    /// Opens directory `rel` for reading its entries, following symlinks only
    /// while they stay beneath the root (the sender's walk: its top, and with
    /// `-L` a directory reached through a link).
    pub fn open_dir(&self, rel: &RelPath) -> Result<OwnedFd, FsError> {
        self.resolve(rel, OFlags::RDONLY | OFlags::DIRECTORY, true)
    }

    /// [`FsRoot::xattrs`] of what `rel` leads to, following symlinks while
    /// they stay beneath the root (`-L -X` on a server).
    pub fn xattrs_follow_within(&self, rel: &RelPath) -> Result<Xattrs, FsError> {
        let fd = self.resolve(rel, READ_FLAGS, true)?;
        fd_xattrs(fd.as_fd()).map_err(|e| FsError::io(rel.display(), e))
    }

    /// Makes the extended attributes of `rel` that `kept` covers equal to
    /// those in `want`: sets the missing and different ones, removes the
    /// unwanted ones; the others are left alone, on either side (see
    /// [`Kept::covers`]). A non-`user.*`, non-ACL attribute the kernel
    /// refuses with `EPERM` or `ENOTSUP` is skipped. Like [`FsRoot::xattrs`],
    /// only regular files and directories are touched (a no-op for other
    /// kinds) and a final symlink is never followed. Changing `user.*` needs
    /// write permission on the file (set them before making it read-only), a
    /// later [`FsRoot::chown`] drops `security.capability`, so set ownership
    /// first, and setting an ACL sets the permission bits it covers, so set
    /// the mode after.
    pub fn set_xattrs(
        &self,
        rel: &RelPath,
        want: &[(Vec<u8>, Vec<u8>)],
        kept: &Kept,
    ) -> Result<(), FsError> {
        let (dir, name) = self.locate(rel)?;
        let err = |e: io::Error| FsError::io(rel.display(), e);
        match open_plain(dir.as_fd(), name, true).map_err(err)? {
            Some(fd) => fd_set_xattrs(fd.as_fd(), want, kept).map_err(err),
            None => Ok(()),
        }
    }

    /// Makes `rel` a FIFO ([`Kind::Fifo`], any user may) or a character or
    /// block device numbered `rdev` ([`Kind::CharDev`], [`Kind::BlockDev`];
    /// root only, otherwise the kernel's `EPERM` is returned) with permission
    /// bits `mode & 0o7777` exactly. It is made under a temp name beside `rel`
    /// and renamed over it, so whatever non-directory was there is replaced
    /// atomically (a symlink itself, never its target). Sockets and the other
    /// kinds are refused: a socket only exists while a process listens on it.
    pub fn mknod(&self, rel: &RelPath, kind: Kind, mode: u32, rdev: u64) -> Result<(), FsError> {
        let (file_type, rdev) = match kind {
            Kind::Fifo => (FileType::Fifo, 0),
            Kind::CharDev => (FileType::CharacterDevice, rdev),
            Kind::BlockDev => (FileType::BlockDevice, rdev),
            Kind::Socket => {
                return Err(FsError::io(
                    rel.display(),
                    io::Error::new(io::ErrorKind::Unsupported, "sockets cannot be recreated"),
                ))
            }
            Kind::File | Kind::Dir | Kind::Symlink => {
                return Err(FsError::io(
                    rel.display(),
                    io::Error::new(io::ErrorKind::InvalidInput, "not a special file kind"),
                ))
            }
        };
        let (dir, name) = self.locate_replaceable(rel)?;
        let perms = Mode::from_raw_mode(mode & 0o7777);
        create_and_replace(dir.as_fd(), name, |temp| {
            rfs::mknodat(&dir, temp, file_type, perms, rdev)?;
            // mknod applied the umask; the node is not visible under `rel` yet.
            chmod_nofollow(dir.as_fd(), temp, mode)
        })
        .map_err(|e| FsError::io(rel.display(), e))
    }

    /// Makes `new` a hard link to `existing` (both confined; `existing` itself
    /// is linked, a symlink included, never its target). Whatever non-directory
    /// was at `new` is replaced atomically (link under a temp name, then
    /// rename). Nothing happens if both already name the same inode. Both must
    /// be on the same filesystem (`EXDEV` otherwise); directories are refused.
    pub fn hard_link(&self, existing: &RelPath, new: &RelPath) -> Result<(), FsError> {
        self.hard_link_into(existing, self, new)
    }

    /// [`FsRoot::hard_link`] with `new` beneath `dest`, this root or another
    /// on the same filesystem (a backup directory).
    pub fn hard_link_into(
        &self,
        existing: &RelPath,
        dest: &FsRoot,
        new: &RelPath,
    ) -> Result<(), FsError> {
        let (src_dir, src_name) = self.locate(existing)?;
        let (dir, name) = dest.locate_replaceable(new)?;
        let src = rfs::statat(&src_dir, src_name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| FsError::io(existing.display(), e))?;
        let src = Meta::from_stat(&src);
        if src.kind == Kind::Dir {
            return Err(FsError::io(existing.display(), Errno::ISDIR));
        }
        match rfs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => {
                let there = Meta::from_stat(&st);
                if (there.dev, there.ino) == (src.dev, src.ino) {
                    return Ok(());
                }
            }
            Err(Errno::NOENT) => {}
            Err(e) => return Err(FsError::io(new.display(), e)),
        }
        create_and_replace(dir.as_fd(), name, |temp| {
            rfs::linkat(&src_dir, src_name, &dir, temp, AtFlags::empty())
        })
        .map_err(|e| FsError::io(new.display(), e))
    }

    /// Moves `rel` (a directory with all it holds) to `to` beneath `dest`,
    /// this root or another on the same filesystem (a backup directory),
    /// replacing whatever was there: a non-directory atomically, anything
    /// else removed first. Neither path's final symlink is followed.
    pub fn rename_into(&self, rel: &RelPath, dest: &FsRoot, to: &RelPath) -> Result<(), FsError> {
        let (dir, name) = self.locate_replaceable(rel)?;
        let (to_dir, to_name) = dest.locate_replaceable(to)?;
        let err = |e: Errno| FsError::io(rel.display(), e);
        match rfs::renameat(&dir, name, &to_dir, to_name) {
            // A directory there, or a directory to put where a file is.
            Err(Errno::ISDIR | Errno::NOTDIR | Errno::NOTEMPTY | Errno::EXIST) => {
                remove_tree(to_dir.as_fd(), to_name, None)
                    .map_err(|e| FsError::io(to.display(), e))?;
                rfs::renameat(&dir, name, &to_dir, to_name).map_err(err)
            }
            other => other.map_err(err),
        }
    }

    /// The device of the root's filesystem.
    pub fn dev(&self) -> Result<u64, FsError> {
        rfs::fstat(&self.fd)
            .map(|st| Meta::from_stat(&st).dev)
            .map_err(|e| FsError::io(self.path.display().to_string(), e))
    }

    /// The partial file `.<name>.jsync-partial` kept beside `rel` (with
    /// `--partial-dir`, `DIR/<name>`) by
    /// [`TempFile::keep_as_partial`] or [`FsRoot::clean_stale_temps`], opened
    /// for reading; `None` if there is none. Anything there but a regular file
    /// (a symlink, a FIFO, a device) also gives `None` and is not opened.
    pub fn partial(&self, rel: &RelPath) -> Result<Option<File>, FsError> {
        let Some(p) = self.partial_of(rel)? else {
            return Ok(None);
        };
        match open_plain(p.at(), &p.name, false) {
            Ok(fd) => Ok(fd.map(File::from)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(FsError::io(rel.display(), e)),
        }
    }

    /// Where the partial file of `rel` is (beside it, or in the partial
    /// directory); `None` when there is no partial directory. An error names
    /// the partial directory (`PARENT/DIR`), which is what failed.
    fn partial_of<'r>(&self, rel: &'r RelPath) -> Result<Option<PartialAt<'r>>, FsError> {
        let (dir, target) = self.locate_replaceable(rel)?;
        let place = partial_place(self.partial_dir(), dir.as_fd(), target, false);
        let place = place.map_err(|e| match (self.partial_dir(), rel.parent()) {
            (Some(d), Some(parent)) => FsError::io(parent.join(d).display(), e),
            _ => FsError::io(rel.display(), e),
        })?;
        Ok(place.map(|(pdir, name)| PartialAt {
            dir,
            pdir,
            name,
            target,
        }))
    }

    /// `-T`: temp files are made in `dir` instead of beside their targets
    /// (for a target on another mount, still beside it). Stale temps a
    /// killed run of this user left there are removed first
    /// ([`remove_stale_temps`]): they are not resumed from. Returns whether
    /// `dir` is on the mount of this root (the destination directory). Set
    /// once, by the receiver, before any file is written.
    pub(crate) fn set_temp_dir(&self, dir: &FsRoot) -> Result<bool, FsError> {
        let err = |e: Errno| FsError::io(dir.path.display().to_string(), e);
        let (listed, names) = dir.list(&RelPath::root())?;
        remove_stale_temps(listed.fd().map_err(err)?, names);
        let home = rfs::openat(
            &dir.fd,
            ".",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(err)?;
        let mount = mount_of(home.as_fd()).map_err(err)?;
        let st = rfs::fstat(&home).map_err(err)?;
        let same = mount_of(self.fd.as_fd())
            .map_err(|e| FsError::io(self.path.display().to_string(), e))?
            == mount;
        let _ = self.temp_dir.set(TempHome {
            fd: Arc::new(home),
            mount,
            id: (st.st_dev, st.st_ino),
        });
        Ok(same)
    }

    /// Whether the directory open at `fd` is the `-T` directory, whose
    /// temps belong to targets anywhere (so they are not this directory's
    /// to resume from or remove while this run writes them).
    fn is_temp_home(&self, fd: BorrowedFd<'_>) -> bool {
        self.temp_dir
            .get()
            .is_some_and(|t| rfs::fstat(fd).is_ok_and(|st| (st.st_dev, st.st_ino) == t.id))
    }

    /// Where a temp file for a target in `dir` is made: the `-T` directory
    /// when it is on the same mount, else `dir` itself.
    fn temp_home(&self, dir: &Arc<OwnedFd>) -> Arc<OwnedFd> {
        match self.temp_dir.get() {
            Some(t) if mount_of(dir.as_fd()) == Ok(t.mount) => t.fd.clone(),
            _ => dir.clone(),
        }
    }

    /// The `--partial-dir` name, if one is set.
    fn partial_dir(&self) -> Option<&OsStr> {
        self.partial_dir.get().map(OsString::as_os_str)
    }

    /// `--partial-dir`: partial files go in directory `name` inside each
    /// directory (made when the first goes there, removed when the last
    /// leaves), under their files' own names. Set once, by the receiver,
    /// before any file is written.
    pub(crate) fn set_partial_dir(&self, name: &OsStr) {
        let _ = self.partial_dir.set(name.to_owned());
    }

    /// [`FsRoot::remove_partial`] when the partial file last changed before
    /// `before` (a ctime): one changed since is another run's, going on
    /// now (a `--delay-updates` run's staged file), and stays.
    pub fn remove_partial_before(&self, rel: &RelPath, before: (i64, u32)) -> Result<(), FsError> {
        let Some(p) = self.partial_of(rel)? else {
            return Ok(());
        };
        match rfs::statat(p.at(), &p.name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if Meta::from_stat(&st).ctime < before => {}
            Ok(_) | Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(FsError::io(rel.display(), e)),
        }
        self.unlink_partial(rel, p)
    }

    /// Removes the partial file kept for `rel` (beside it, or in the
    /// partial directory, which goes too once empty), if any (whatever kind of
    /// non-directory it is; a symlink is removed, not followed).
    pub fn remove_partial(&self, rel: &RelPath) -> Result<(), FsError> {
        match self.partial_of(rel)? {
            Some(p) => self.unlink_partial(rel, p),
            None => Ok(()),
        }
    }

    /// Removes the partial file of `rel` where `p` says it is.
    fn unlink_partial(&self, rel: &RelPath, p: PartialAt<'_>) -> Result<(), FsError> {
        match rfs::unlinkat(p.at(), &p.name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(FsError::io(rel.display(), e)),
        }
        tidy_partial_dir(self.partial_dir(), p.dir.as_fd());
        Ok(())
    }

    /// Renames the partial file kept for `rel` over it, if it is still
    /// the file `id` (device, inode) that [`TempFile::stage`] staged there
    /// (`--delay-updates`): not if another run, or another name whose
    /// partial name is the same, put something else under that name.
    pub fn place_partial(&self, rel: &RelPath, id: (u64, u64)) -> Result<(), FsError> {
        let err = |e: Errno| FsError::io(rel.display(), e);
        let p = self.partial_of(rel)?.ok_or_else(|| err(Errno::NOENT))?;
        let st = rfs::statat(p.at(), &p.name, AtFlags::SYMLINK_NOFOLLOW).map_err(err)?;
        let m = Meta::from_stat(&st);
        if (m.dev, m.ino) != id {
            return Err(FsError::io(
                rel.display(),
                io::Error::other("its staged copy was replaced meanwhile (another run?)"),
            ));
        }
        rfs::renameat(p.at(), &p.name, &p.dir, p.target).map_err(err)?;
        tidy_partial_dir(self.partial_dir(), p.dir.as_fd());
        Ok(())
    }

    /// Deals with the temp files a crash left in `rel_dir` (names of the form
    /// `.<X>.jsync-tmp.<16 hex digits>`): for each target `X` the largest
    /// non-empty regular one becomes `.<X>.jsync-partial`, the basis to resume
    /// from, unless a partial already exists; every other one is removed.
    /// Directories are left alone, and so is any temp a live run is writing: its
    /// writer holds an exclusive `flock` on it from [`FsRoot::create_temp`] until
    /// the temp is committed or dropped, and a crash releases it.
    /// Returns how many temps were removed or kept as partials.
    #[cfg(test)]
    pub fn clean_stale_temps(&self, rel_dir: &RelPath) -> Result<usize, FsError> {
        self.clean_stale_temps_scan(rel_dir).map(|s| s.cleaned)
    }

    /// [`FsRoot::clean_stale_temps`], also saying whether the directory holds
    /// partial files afterwards (so a sync looks for them only there), with the
    /// names it held (for `--delete`, which then need not read it again).
    pub fn clean_stale_temps_scan(&self, rel_dir: &RelPath) -> Result<TempScan, FsError> {
        let (dir, names) = self.list(rel_dir)?;
        let err = |e: Errno| FsError::io(rel_dir.display(), e);
        let dirfd = dir.fd().map_err(err)?;
        // (In the -T directory, set_temp_dir removed the stale temps; the
        // rest are this run's.)
        let temps: Vec<OsString> = match self.is_temp_home(dirfd) {
            true => Vec::new(),
            false => names
                .iter()
                .filter(|(name, is_dir)| !is_dir && is_temp_name(name))
                .map(|(name, _)| OsString::from_vec(name.clone()))
                .collect(),
        };
        let pdir_name = self.partial_dir();
        let in_partial_dir =
            |name: &[u8], is_dir: bool| is_dir && pdir_name.is_some_and(|p| p.as_bytes() == name);
        let mut partials = match names.iter().any(|(n, is_dir)| in_partial_dir(n, *is_dir)) {
            true => Partials::Any,
            false => Partials::Named(
                names
                    .iter()
                    .filter(|(n, is_dir)| !is_dir && is_partial_name(n))
                    .map(|(n, _)| n.clone())
                    .collect(),
            ),
        };
        let named = |name: &OsStr, e: Errno| FsError::io(rel_dir.join(name).display(), e);
        // Stale temps by target, in a stable order.
        let mut stale: BTreeMap<Vec<u8>, Vec<(OsString, Meta)>> = BTreeMap::new();
        for name in temps {
            let st = match rfs::statat(dirfd, &name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(named(&name, e)),
            };
            let meta = Meta::from_stat(&st);
            // A temp another run is still writing is locked by its writer.
            if meta.kind == Kind::Dir || in_use(dirfd, &name) {
                continue;
            }
            let target = temp_target(name.as_bytes()).to_vec();
            stale.entry(target).or_default().push((name, meta));
        }
        let mut cleaned = 0;
        for (target, mut temps) in stale {
            let largest = temps
                .iter()
                .enumerate()
                .filter(|(_, (_, m))| m.kind == Kind::File && m.size > 0)
                .max_by_key(|(_, (_, m))| m.size)
                .map(|(i, _)| i);
            if let Some(i) = largest {
                let (name, meta) = temps.swap_remove(i);
                let target = OsStr::from_bytes(&target);
                let kept = partial_place(pdir_name, dirfd, target, true).and_then(|place| {
                    let (pdir, partial) = place.ok_or(Errno::NOENT)?;
                    let at = pdir.as_ref().map_or(dirfd, |d| d.as_fd());
                    rename_noreplace(dirfd, &name, at, &partial)?;
                    Ok((pdir.is_some(), partial))
                });
                match kept {
                    Ok((in_pdir, partial)) => {
                        cleaned += 1;
                        match &mut partials {
                            Partials::Named(names) if !in_pdir => {
                                names.insert(partial.into_vec());
                            }
                            p => *p = Partials::Any,
                        }
                    }
                    // An existing partial is kept; this temp goes with the rest.
                    Err(Errno::EXIST) | Err(Errno::ISDIR) | Err(Errno::NOTDIR) => {
                        temps.push((name, meta))
                    }
                    Err(Errno::NOENT) => {}
                    // A partial directory that will not do (not ours, not
                    // a directory): the temp stays, for a run that can.
                    Err(_) if pdir_name.is_some() => {}
                    Err(e) => return Err(named(&name, e)),
                }
            }
            for (name, _) in temps {
                match rfs::unlinkat(dirfd, &name, AtFlags::empty()) {
                    Ok(()) => cleaned += 1,
                    Err(Errno::NOENT) | Err(Errno::ISDIR) => {}
                    Err(e) => return Err(named(&name, e)),
                }
            }
        }
        if partials == Partials::Named(HashSet::new()) {
            partials = Partials::None;
        }
        Ok(TempScan {
            cleaned,
            partials,
            names,
        })
    }

    /// An `O_PATH` descriptor of directory `rel` (symlinks within the root allowed
    /// with `openat2`, refused by the fallback).
    fn dir(&self, rel: &RelPath) -> Result<Arc<OwnedFd>, FsError> {
        rel.confined()?;
        self.dir_at(rel.as_bytes())
    }

    /// [`FsRoot::dir`] of the directory whose wire form is `bytes`, a prefix of
    /// a valid [`RelPath`] (so valid itself): a cache hit allocates nothing.
    fn dir_at(&self, bytes: &[u8]) -> Result<Arc<OwnedFd>, FsError> {
        if let Some(fd) = self.dirs.lock().expect("poisoned").get(bytes) {
            return Ok(fd.clone());
        }
        let rel = RelPath {
            bytes: bytes.to_vec(),
            valid: true,
        };
        let fd = Arc::new(self.resolve(&rel, OFlags::PATH | OFlags::DIRECTORY, true)?);
        let mut dirs = self.dirs.lock().expect("poisoned");
        if dirs.len() >= DIR_CACHE {
            dirs.clear();
        }
        dirs.insert(rel.as_bytes().to_vec(), fd.clone());
        Ok(fd)
    }

    /// Drops the cached descriptors of `rel` and of every directory beneath it
    /// (before `rel` is removed or replaced).
    fn forget_dirs(&self, rel: &RelPath) {
        let mut dirs = self.dirs.lock().expect("poisoned");
        let prefix = rel.as_bytes();
        let under: Vec<Vec<u8>> = dirs
            .range::<[u8], _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(prefix))
            .filter(|k| prefix.is_empty() || k.len() == prefix.len() || k[prefix.len()] == b'/')
            .cloned()
            .collect();
        for k in under {
            dirs.remove(&k);
        }
    }

    /// The directory holding `rel` and its final name; the root is (root, ".").
    fn locate<'r>(&self, rel: &'r RelPath) -> Result<(Arc<OwnedFd>, &'r OsStr), FsError> {
        match rel.file_name() {
            Some(name) => {
                rel.confined()?;
                let dir = self
                    .dir_at(rel.parent_bytes())
                    .map_err(|e| rename_err(e, rel))?;
                Ok((dir, name))
            }
            None => Ok((self.dir(rel)?, OsStr::new("."))),
        }
    }

    /// [`FsRoot::locate`] for operations that would remove or replace `rel`,
    /// which the root itself refuses.
    fn locate_replaceable<'r>(
        &self,
        rel: &'r RelPath,
    ) -> Result<(Arc<OwnedFd>, &'r OsStr), FsError> {
        if rel.is_root() {
            return Err(FsError::io(
                rel.display(),
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "cannot remove or replace the root directory",
                ),
            ));
        }
        self.forget_dirs(rel);
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

/// The metadata of an open file (`fstat`).
pub(crate) fn file_meta(file: &File) -> io::Result<Meta> {
    Ok(Meta::from_stat(&rfs::fstat(file)?))
}

/// Sets an open file's times as [`FsRoot::set_times`] does (`futimens`;
/// the owner may, whatever the descriptor's access mode).
pub(crate) fn set_file_times(file: &File, times: impl Into<Times>) -> io::Result<()> {
    Ok(set_fd_times(file.as_fd(), times.into())?)
}

/// How this process links an unnamed file (`O_TMPFILE`) in at a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkVia {
    /// `linkat(fd, "", AT_EMPTY_PATH)`: needs `CAP_DAC_READ_SEARCH` (or, since
    /// Linux 6.10, the credentials that opened the file).
    EmptyPath,
    /// `linkat("/proc/self/fd/N", AT_SYMLINK_FOLLOW)`: needs `/proc`.
    Proc,
    /// Neither: unnamed files are not used.
    Unsupported,
}

/// The method [`probe_link_via`] found; probed once per process.
static LINK_VIA: std::sync::OnceLock<LinkVia> = std::sync::OnceLock::new();

/// Finds (once) how to link the unnamed `fd` in, without making any name: each
/// method is asked to link it at `dir/.`, which exists, so a method that works
/// answers `EEXIST` (the old path is resolved before the new name) and one
/// that cannot answers `ENOENT` (or `EPERM`).
fn probe_link_via(fd: &OwnedFd, dir: &OwnedFd) -> LinkVia {
    *LINK_VIA.get_or_init(|| {
        if rfs::linkat(fd, "", dir, ".", AtFlags::EMPTY_PATH) == Err(Errno::EXIST) {
            LinkVia::EmptyPath
        } else if rfs::linkat(CWD, proc_fd_path(fd), dir, ".", AtFlags::SYMLINK_FOLLOW)
            == Err(Errno::EXIST)
        {
            LinkVia::Proc
        } else {
            LinkVia::Unsupported
        }
    })
}

/// Links the unnamed `file` in as `dir/name` (`EEXIST` if that name is taken).
fn link_unnamed_via(via: LinkVia, file: &File, dir: &OwnedFd, name: &OsStr) -> Result<(), Errno> {
    match via {
        LinkVia::EmptyPath => rfs::linkat(file, "", dir, name, AtFlags::EMPTY_PATH),
        LinkVia::Proc => rfs::linkat(CWD, proc_fd_path(file), dir, name, AtFlags::SYMLINK_FOLLOW),
        LinkVia::Unsupported => Err(Errno::NOTSUP),
    }
}

/// The mount and device `fd` is on, which a rename or link cannot cross:
/// its mount id where the kernel says (Linux 5.8; else 0, and bind mounts
/// of one filesystem look alike) and its device (a btrfs subvolume has one
/// of its own). A rename can still fail between directories of different
/// quota projects: that file then fails, named.
fn mount_of(fd: BorrowedFd<'_>) -> Result<(u64, u64), Errno> {
    match rfs::statx(fd, "", AtFlags::EMPTY_PATH, rfs::StatxFlags::MNT_ID) {
        Ok(st) => {
            let dev = rfs::makedev(st.stx_dev_major, st.stx_dev_minor);
            let has_id = st.stx_mask & rfs::StatxFlags::MNT_ID.bits() != 0;
            Ok((if has_id { st.stx_mnt_id } else { 0 }, dev))
        }
        Err(Errno::NOSYS) => rfs::fstat(fd).map(|st| (0, st.st_dev)),
        Err(e) => Err(e),
    }
}

/// Removes, from the `-T` directory open at `dir` (listed as `names`), the
/// temps a killed run of this user left: regular files with a temp name,
/// owned by this user, that no writer holds locked ([`locked`]; one that
/// cannot be opened to tell counts as in use). Others' files, and any this
/// user may not remove, stay: the directory may be shared (`-T /tmp`).
fn remove_stale_temps(dir: BorrowedFd<'_>, names: Listing) {
    let me = rustix::process::geteuid().as_raw();
    for (name, is_dir) in names {
        let name = OsString::from_vec(name);
        if is_dir || !is_temp_name(name.as_bytes()) {
            continue;
        }
        let ours = rfs::statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW).is_ok_and(|st| {
            FileType::from_raw_mode(st.st_mode) == FileType::RegularFile && st.st_uid == me
        });
        if ours && locked(dir, &name) == Some(false) {
            if let Err(e) = rfs::unlinkat(dir, &name, AtFlags::empty()) {
                tracing::debug!(name = ?name, error = %e, "cannot remove a stale temp");
            }
        }
    }
}

fn proc_fd_path(fd: &impl AsRawFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Gives the open file the times `times` gives.
fn set_fd_times(file: BorrowedFd<'_>, times: Times) -> Result<(), Errno> {
    match times.timestamps() {
        Some(t) => rfs::futimens(file, &t),
        None => Ok(()),
    }
}

/// The times to give an entry: its mtime (`None`: leave it), and its atime
/// (`-U`; without it, the mtime's, or left alone when the mtime is).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Times {
    pub mtime: Option<(i64, u32)>,
    pub atime: Option<(i64, u32)>,
}

impl From<(i64, u32)> for Times {
    fn from(mtime: (i64, u32)) -> Times {
        Times {
            mtime: Some(mtime),
            atime: None,
        }
    }
}

impl From<Option<(i64, u32)>> for Times {
    fn from(mtime: Option<(i64, u32)>) -> Times {
        Times { mtime, atime: None }
    }
}

impl Times {
    /// What `utimensat` takes, or `None` when there is nothing to set.
    fn timestamps(self) -> Option<Timestamps> {
        let spec = |(secs, nanos): (i64, u32)| Timespec {
            tv_sec: secs,
            tv_nsec: nanos.min(999_999_999).into(),
        };
        let omit = Timespec {
            tv_sec: 0,
            tv_nsec: rfs::UTIME_OMIT,
        };
        let access = self.atime.or(self.mtime)?;
        Some(Timestamps {
            last_access: spec(access),
            last_modification: self.mtime.map_or(omit, spec),
        })
    }
}

/// `.<name>.jsync-tmp.<16 hex digits>`, the name shortened to fit `NAME_MAX`.
fn temp_name(name: &OsStr) -> OsString {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    h.write_u32(*PID.get_or_init(std::process::id));
    let name = name.as_bytes();
    let mut out = Vec::with_capacity(255);
    out.push(b'.');
    out.extend_from_slice(&name[..name.len().min(TEMP_NAME_KEEP)]);
    out.extend_from_slice(TEMP_MARK);
    out.extend_from_slice(format!("{:016x}", h.finish()).as_bytes());
    OsString::from_vec(out)
}

/// Whether `name` has the form of a temp name, `.<X>.jsync-tmp.<16 lowercase
/// hex digits>` with a non-empty `X`.
pub(crate) fn is_temp_name(name: &[u8]) -> bool {
    let Some(head) = name.len().checked_sub(TEMP_RAND) else {
        return false;
    };
    let (rest, rand) = name.split_at(head);
    name.first() == Some(&b'.')
        && rest.len() > 1 + TEMP_MARK.len()
        && rest.ends_with(TEMP_MARK)
        && rand.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The (possibly shortened) target name inside a name that passed [`is_temp_name`].
fn temp_target(temp: &[u8]) -> &[u8] {
    &temp[1..temp.len() - TEMP_MARK.len() - TEMP_RAND]
}

/// `.<name>.jsync-partial`, the name shortened like in [`temp_name`] (so at most
/// 242 bytes).
fn partial_name(name: &OsStr) -> OsString {
    let name = name.as_bytes();
    let mut out = Vec::with_capacity(1 + TEMP_NAME_KEEP + PARTIAL_MARK.len());
    out.push(b'.');
    out.extend_from_slice(&name[..name.len().min(TEMP_NAME_KEEP)]);
    out.extend_from_slice(PARTIAL_MARK);
    OsString::from_vec(out)
}

/// Where a file's partial file is ([`FsRoot::partial_of`]).
struct PartialAt<'r> {
    /// The file's directory.
    dir: Arc<OwnedFd>,
    /// The partial directory, with `--partial-dir`.
    pdir: Option<OwnedFd>,
    /// The partial file's name there.
    name: OsString,
    /// The file's own name.
    target: &'r OsStr,
}

impl PartialAt<'_> {
    /// The directory holding the partial file.
    fn at(&self) -> BorrowedFd<'_> {
        self.pdir.as_ref().map_or(self.dir.as_fd(), |d| d.as_fd())
    }
}

/// Where the partial file of `name` in directory `dir` lives: the partial
/// directory's descriptor (`None`: `dir` itself) and the file's name there.
/// Beside the file as `.<name>.jsync-partial`, or with `--partial-dir`
/// (`pdir`) as `pdir/<name>`; `pdir` is made (mode 0700) with `create`,
/// and never followed if it is a symlink (an error, so nothing is written
/// or read through it). `None`: there is no partial directory.
fn partial_place(
    pdir: Option<&OsStr>,
    dir: BorrowedFd<'_>,
    name: &OsStr,
    create: bool,
) -> Result<Option<(Option<OwnedFd>, OsString)>, Errno> {
    let Some(pdir) = pdir else {
        return Ok(Some((None, partial_name(name))));
    };
    if create {
        match rfs::mkdirat(dir, pdir, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(e),
        }
    }
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = match rfs::openat(dir, pdir, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e),
    };
    // Ours alone: one another user made (or may write in) could swap what
    // it holds.
    let st = rfs::fstat(&fd)?;
    if st.st_uid != rustix::process::geteuid().as_raw() || st.st_mode & 0o022 != 0 {
        return Err(Errno::PERM);
    }
    Ok(Some((Some(fd), name.to_owned())))
}

/// Removes the partial directory `pdir` of `dir` if it is empty now.
fn tidy_partial_dir(pdir: Option<&OsStr>, dir: BorrowedFd<'_>) {
    if let Some(pdir) = pdir {
        let _ = rfs::unlinkat(dir, pdir, AtFlags::REMOVEDIR);
    }
}

/// Whether `name` has the form of a partial file name, `.<X>.jsync-partial`
/// with a non-empty `X` (for walks that should skip or clean them).
pub(crate) fn is_partial_name(name: &[u8]) -> bool {
    name.first() == Some(&b'.')
        && name.len() > 1 + PARTIAL_MARK.len()
        && name.len() <= 1 + TEMP_NAME_KEEP + PARTIAL_MARK.len()
        && name.ends_with(PARTIAL_MARK)
}

/// Renames `from` to `to` in `dir` unless `to` exists (`EEXIST` then). On a
/// filesystem without `RENAME_NOREPLACE`, checks first and renames, which a
/// concurrent creation of `to` could race; only used for partial files.
fn rename_noreplace(
    dir: BorrowedFd<'_>,
    from: &OsStr,
    to_dir: BorrowedFd<'_>,
    to: &OsStr,
) -> Result<(), Errno> {
    match rfs::renameat_with(dir, from, to_dir, to, RenameFlags::NOREPLACE) {
        Err(Errno::INVAL) => match rfs::statat(to_dir, to, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(_) => Err(Errno::EXIST),
            Err(Errno::NOENT) => rfs::renameat(dir, from, to_dir, to),
            Err(e) => Err(e),
        },
        other => other,
    }
}

/// Makes something new under a fresh temp name beside `name` in `dir` with
/// `make` (which answers `EEXIST` if the temp name is taken, and then is asked
/// again with another), and renames it over `name`: whatever non-directory was
/// there is replaced atomically. On failure the temp name is removed.
fn create_and_replace(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    make: impl Fn(&OsStr) -> Result<(), Errno>,
) -> Result<(), Errno> {
    for _ in 0..RETRIES {
        let temp = temp_name(name);
        match make(&temp) {
            Ok(()) => {}
            Err(Errno::EXIST) => continue,
            Err(e) => {
                // `make` may have failed after creating the temp (a random name
                // nothing else uses: creating it did not answer EEXIST).
                let _ = rfs::unlinkat(dir, &temp, AtFlags::empty());
                return Err(e);
            }
        }
        let res = rfs::renameat(dir, &temp, dir, name);
        // Also after success: if both names were already links to one inode
        // (a hard link racing with another), rename(2) did nothing.
        let _ = rfs::unlinkat(dir, &temp, AtFlags::empty());
        return res;
    }
    Err(Errno::EXIST)
}

/// Sets the permission bits (`mode & 0o7777`) of `name` in `dir` unless it is
/// a symlink (skipped), without following it and without opening it for I/O.
fn chmod_nofollow(dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> Result<(), Errno> {
    let fd = rfs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = rfs::fstat(&fd)?;
    if Meta::from_stat(&st).kind == Kind::Symlink {
        return Ok(());
    }
    let mode = Mode::from_raw_mode(mode & 0o7777);
    // fchmod refuses O_PATH descriptors; the /proc link names exactly this
    // inode. Without /proc, chmod by name: it was not a symlink a moment ago.
    match rfs::chmodat(CWD, proc_fd_path(&fd), mode, AtFlags::empty()) {
        Err(Errno::NOENT) => rfs::chmodat(dir, name, mode, AtFlags::empty()),
        other => other,
    }
}

/// Raw ids as the kernel's types. `u32::MAX` is refused: to `chown(2)` it
/// means "leave unchanged", not an id.
fn owner_ids(uid: Option<u32>, gid: Option<u32>) -> Result<(Option<Uid>, Option<Gid>), Errno> {
    if uid == Some(u32::MAX) || gid == Some(u32::MAX) {
        return Err(Errno::INVAL);
    }
    Ok((uid.map(Uid::from_raw), gid.map(Gid::from_raw)))
}

/// Opens `name` in `dir` read-only if it is a regular file (or, with `dirs`, a
/// directory), never following a final symlink and never opening any other
/// kind: the kind is checked on an `O_PATH` descriptor, and that same inode is
/// then reopened through `/proc/self/fd` (without `/proc`, by name, refusing
/// it if it is no longer the same inode). `None` for other kinds.
fn open_plain(dir: BorrowedFd<'_>, name: &OsStr, dirs: bool) -> io::Result<Option<OwnedFd>> {
    let path = rfs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = rfs::fstat(&path)?;
    match Meta::from_stat(&st).kind {
        Kind::File => {}
        Kind::Dir if dirs => {}
        _ => return Ok(None),
    }
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
    match rfs::open(proc_fd_path(&path), flags, Mode::empty()) {
        Err(Errno::NOENT) => {}
        other => return Ok(Some(other?)),
    }
    let fd = rfs::openat(dir, name, flags | OFlags::NOFOLLOW, Mode::empty())?;
    let again = rfs::fstat(&fd)?;
    if (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino) {
        return Err(io::Error::other("replaced while being opened"));
    }
    Ok(Some(fd))
}

/// All extended attributes of an open file, as (name, value) pairs sorted by
/// name, `system.*` (ACLs) included. A filesystem without extended attributes
/// (`ENOTSUP`) gives an empty list.
#[cfg(test)]
pub(crate) fn file_xattrs(file: &File) -> io::Result<Xattrs> {
    fd_xattrs(file.as_fd())
}

/// [`FsRoot::set_xattrs`] for an open file, such as a [`TempFile`]'s before
/// its commit: makes the attributes `kept` covers equal to `want`.
pub(crate) fn fset_xattrs(file: &File, want: &[(Vec<u8>, Vec<u8>)], kept: &Kept) -> io::Result<()> {
    fd_set_xattrs(file.as_fd(), want, kept)
}

/// The extended attributes of the file or directory `path` leads to,
/// wherever (`-L -X` from a local source).
pub(crate) fn path_xattrs(path: &Path) -> io::Result<Xattrs> {
    let fd = rfs::open(path, READ_FLAGS, Mode::empty())?;
    fd_xattrs(fd.as_fd())
}

/// See [`file_xattrs`].
fn fd_xattrs(fd: BorrowedFd<'_>) -> io::Result<Xattrs> {
    let names = match xattr_names(fd) {
        Ok(names) => names,
        Err(Errno::NOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        match xattr_value(fd, &name) {
            Ok(value) => out.push((name, value)),
            Err(Errno::NODATA) => {} // removed since the listing
            Err(e) => return Err(xattr_err(&name, e)),
        }
    }
    out.sort();
    Ok(out)
}

/// The attribute names of `fd`, unsorted.
fn xattr_names(fd: BorrowedFd<'_>) -> Result<Vec<Vec<u8>>, Errno> {
    for _ in 0..RETRIES {
        let len = rfs::flistxattr_query(fd)?;
        if len == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0; len];
        match rfs::flistxattr(fd, &mut buf) {
            Ok(len) => {
                buf.truncate(len);
                return Ok(buf
                    .split(|&b| b == 0)
                    .filter(|n| !n.is_empty())
                    .map(<[u8]>::to_vec)
                    .collect());
            }
            Err(Errno::RANGE) => continue, // grew since the query
            Err(e) => return Err(e),
        }
    }
    Err(Errno::RANGE)
}

/// The value of attribute `name` of `fd`.
fn xattr_value(fd: BorrowedFd<'_>, name: &[u8]) -> Result<Vec<u8>, Errno> {
    let name = OsStr::from_bytes(name);
    for _ in 0..RETRIES {
        let len = rfs::fgetxattr_query(fd, name)?;
        if len == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0; len];
        match rfs::fgetxattr(fd, name, &mut buf) {
            Ok(len) => {
                buf.truncate(len);
                return Ok(buf);
            }
            Err(Errno::RANGE) => continue, // grew since the query
            Err(e) => return Err(e),
        }
    }
    Err(Errno::RANGE)
}

/// Which extended attributes a receiver keeps equal to the sender's: `-X`'s
/// and `-A`'s (the ACLs, which Linux keeps as attributes).
#[derive(Debug, Clone, Default)]
pub(crate) struct Kept {
    /// `-X`: `user.*` always, `trusted.*` and `security.*` as root.
    pub xattrs: bool,
    /// `-A`: `system.posix_acl_access` and `system.posix_acl_default`.
    pub acls: bool,
    /// The filter whose rules for attribute names (`x`) narrow what `-X`
    /// keeps here: a name they leave out is neither set nor removed.
    pub names: Option<std::sync::Arc<super::filter::Filter>>,
}

impl Kept {
    /// Whether any attribute is kept.
    pub(crate) fn any(&self) -> bool {
        self.xattrs || self.acls
    }

    /// Whether attribute `name` is kept, by a process running as root or
    /// not: nothing else in `system.*`, no other namespace, and nothing the
    /// `x` rules leave out.
    pub(crate) fn covers(&self, name: &[u8], root: bool) -> bool {
        if super::acl::is_acl(name) {
            return self.acls;
        }
        self.xattrs
            && (name.starts_with(b"user.")
                || (root && (name.starts_with(b"trusted.") || name.starts_with(b"security."))))
            && !self.names.as_ref().is_some_and(|f| f.excludes_xattr(name))
    }

    /// Whether what is kept of `have` differs from `want`: (in attributes
    /// other than ACLs, in ACLs). Both lists sorted by name.
    pub(crate) fn differences(
        &self,
        have: &[(Vec<u8>, Vec<u8>)],
        want: &[(Vec<u8>, Vec<u8>)],
    ) -> (bool, bool) {
        let root = super::ids::is_root();
        let differ = |acl: bool| {
            let part = |n: &&(Vec<u8>, Vec<u8>)| {
                super::acl::is_acl(&n.0) == acl && self.covers(&n.0, root)
            };
            !have.iter().filter(part).eq(want.iter().filter(part))
        };
        (differ(false), differ(true))
    }
}

/// See [`FsRoot::set_xattrs`].
fn fd_set_xattrs(fd: BorrowedFd<'_>, want: &[(Vec<u8>, Vec<u8>)], kept: &Kept) -> io::Result<()> {
    let root = super::ids::is_root();
    let have = fd_xattrs(fd)?;
    let have: BTreeMap<&[u8], &[u8]> = have.iter().map(|(n, v)| (&n[..], &v[..])).collect();
    // A refusal on a namespace beyond user.* is not an error: an LSM or the
    // filesystem may keep those to itself. ACLs asked for (-A) must be set.
    let skippable = |name: &[u8], e: Errno| {
        !name.starts_with(b"user.")
            && !super::acl::is_acl(name)
            && matches!(e, Errno::PERM | Errno::NOTSUP)
    };
    // The ACLs last: setting one sets permission bits, and changing
    // user.* needs write permission.
    for acls in [false, true] {
        let ours = |name: &[u8]| super::acl::is_acl(name) == acls && kept.covers(name, root);
        for (name, value) in want {
            if !ours(name) || have.get(&name[..]) == Some(&&value[..]) {
                continue;
            }
            match rfs::fsetxattr(fd, OsStr::from_bytes(name), value, XattrFlags::empty()) {
                Ok(()) => {}
                Err(e) if skippable(name, e) => {}
                Err(e) => return Err(xattr_err(name, e)),
            }
        }
        for name in have.keys() {
            if !ours(name) || want.iter().any(|(n, _)| n == name) {
                continue;
            }
            match rfs::fremovexattr(fd, OsStr::from_bytes(name)) {
                Ok(()) | Err(Errno::NODATA) => {}
                Err(e) if skippable(name, e) => {}
                Err(e) => return Err(xattr_err(name, e)),
            }
        }
    }
    Ok(())
}

/// An error about one extended attribute, naming it.
fn xattr_err(name: &[u8], e: Errno) -> io::Error {
    let e = io::Error::from(e);
    io::Error::new(
        e.kind(),
        format!("extended attribute {}: {e}", super::escape_name(name)),
    )
}

/// The data regions of the first `size` bytes of `file` as (offset, length)
/// pairs, in order, found with `lseek(SEEK_DATA/SEEK_HOLE)`: what is not
/// covered reads as zeros and need not be sent or written. A file that is all
/// hole gives an empty list; nothing reaches past `size`. A filesystem without
/// hole support (`EINVAL`) gives one region for the whole rest. The file
/// position is restored afterwards.
pub(crate) fn data_extents(file: &File, size: u64) -> io::Result<Vec<(u64, u64)>> {
    let saved = rfs::seek(file, SeekFrom::Current(0))?;
    let mut out = Vec::new();
    let mut pos = 0;
    let res = loop {
        if pos >= size {
            break Ok(());
        }
        let start = match rfs::seek(file, SeekFrom::Data(pos)) {
            Ok(start) => start,
            Err(Errno::NXIO) => break Ok(()), // only hole (or EOF) from pos on
            Err(Errno::INVAL) => {
                out.push((pos, size - pos));
                break Ok(());
            }
            Err(e) => break Err(e),
        };
        if start >= size {
            break Ok(());
        }
        let end = match rfs::seek(file, SeekFrom::Hole(start)) {
            Ok(end) => end.min(size),
            Err(Errno::NXIO) => size, // truncated meanwhile
            Err(e) => break Err(e),
        };
        // A file changing under us could answer nonsense; never loop on it.
        let end = if end > start { end } else { size };
        out.push((start, end - start));
        pos = end;
    };
    rfs::seek(file, SeekFrom::Start(saved))?;
    res?;
    Ok(out)
}

/// Whether a temp file is still being written: its writer holds an exclusive
/// `flock` on it ([`FsRoot::create_temp`]) until it commits, drops it or dies.
fn in_use(dir: BorrowedFd<'_>, name: &OsStr) -> bool {
    locked(dir, name) == Some(true)
}

/// Whether someone holds a temp file locked ([`in_use`]); `None` when it
/// cannot be opened to tell.
fn locked(dir: BorrowedFd<'_>, name: &OsStr) -> Option<bool> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = rfs::openat(dir, name, flags, Mode::empty()).ok()?;
    Some(matches!(
        rfs::flock(&fd, rfs::FlockOperation::NonBlockingLockExclusive),
        Err(Errno::WOULDBLOCK)
    ))
}

/// Opens with `flags`; where `O_NOATIME` among them is `refused` (the
/// file is another user's: `EPERM`), without it.
pub(crate) fn without_atime<T, E>(
    flags: OFlags,
    refused: impl Fn(&E) -> bool,
    open: impl Fn(OFlags) -> Result<T, E>,
) -> Result<T, E> {
    match open(flags) {
        Err(e) if flags.contains(OFlags::NOATIME) && refused(&e) => open(flags - OFlags::NOATIME),
        other => other,
    }
}

/// [`without_atime`]'s refusal for a system call's error.
pub(crate) fn perm(e: &Errno) -> bool {
    *e == Errno::PERM
}

/// How a file is opened for reading: no controlling terminal, and no wait
/// on a FIFO that took a regular file's place (it is refused after the open).
pub(crate) const READ_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::CLOEXEC)
    .union(OFlags::NOCTTY)
    .union(OFlags::NONBLOCK);

/// Per-directory filter files larger than this are refused.
const MAX_RULE_FILE: u64 = 1 << 20;

/// The bytes of the per-directory filter file (`dir-merge`) `name` in the
/// directory open at `dir`; `None` when there is none. Only a regular file,
/// never through a symlink (a rule file that cannot be read is an error, not
/// an empty list: its rules may hide what must not be sent or deleted).
pub(crate) fn read_rule_file(dir: BorrowedFd<'_>, name: &str) -> io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    // (Its kind is checked before it is opened for reading: a device or a
    // FIFO planted under the name is never opened.)
    let fd = match open_plain(dir, OsStr::new(name), false) {
        Ok(Some(fd)) => fd,
        Ok(None) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut text = Vec::new();
    File::from(fd)
        .take(MAX_RULE_FILE + 1)
        .read_to_end(&mut text)?;
    if text.len() as u64 > MAX_RULE_FILE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {} MiB", MAX_RULE_FILE >> 20),
        ));
    }
    Ok(Some(text))
}

/// `fd` as a file with its metadata if it is a regular file; an error naming
/// `shown` otherwise.
pub(crate) fn regular_file(fd: OwnedFd, shown: &str) -> Result<(File, Meta), FsError> {
    let st = rfs::fstat(&fd).map_err(|e| FsError::io(shown.to_string(), e))?;
    let meta = Meta::from_stat(&st);
    if meta.kind != Kind::File {
        return Err(FsError::io(
            shown.to_string(),
            io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"),
        ));
    }
    Ok((File::from(fd), meta))
}

/// [`FsRoot::count_beneath`] of the open directory `fd`, at `path`.
fn count_tree(fd: OwnedFd, dev: Option<u64>, path: &Path) -> io::Result<u64> {
    if let Some(dev) = dev {
        if Meta::from_stat(&rfs::fstat(&fd)?).dev != dev {
            return Err(io::Error::other(format!(
                "{} is on another filesystem (-x)",
                path.display()
            )));
        }
    }
    let mut entries = Dir::new(fd)?;
    let mut dirs = Vec::new();
    let mut n = 0;
    while let Some(entry) = entries.read() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        n += 1;
        if matches!(entry.file_type(), FileType::Directory | FileType::Unknown) {
            dirs.push(OsString::from_vec(name.to_vec()));
        }
    }
    let fd = entries.fd()?;
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    for d in dirs {
        match rfs::openat(fd, &d, flags, Mode::empty()) {
            Ok(sub) => n += count_tree(sub, dev, &path.join(&d))?,
            // (Not a directory after all, or gone meanwhile.)
            Err(Errno::NOTDIR | Errno::LOOP | Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(n)
}

/// `rm -rf name` relative to `dir`, never following symlinks; given `dev`,
/// entering no directory on another filesystem.
fn remove_tree(dir: BorrowedFd<'_>, name: &OsStr, dev: Option<u64>) -> io::Result<()> {
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
    if let Some(dev) = dev {
        if Meta::from_stat(&rfs::fstat(&sub)?).dev != dev {
            return Err(io::Error::other(format!(
                "{} is on another filesystem (-x): not deleted",
                Path::new(name).display()
            )));
        }
    }
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
        remove_tree(fd, &n, dev)?;
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
    /// The target's directory.
    dir: Arc<OwnedFd>,
    /// Where the temp is: `dir`, or the `-T` directory.
    home: Arc<OwnedFd>,
    temp: Temp,
    target: OsString,
    shown: String,
    /// Where it goes if kept as a partial file (`--partial-dir`).
    partial_dir: Option<OsString>,
    /// Allocated to its size before it was written ([`TempFile::preallocate`]).
    preallocated: bool,
    done: bool,
}

/// Where a [`TempFile`]'s content lives until the commit.
#[derive(Debug)]
enum Temp {
    /// Under a temp name beside the target (or in the `-T` directory).
    Named(OsString),
    /// An unnamed inode ([`FsRoot::create_unnamed`]), linked in the way found.
    Unnamed(LinkVia),
}

impl TempFile {
    /// Sets mode (`& 0o7777`) and times (an mtime, unless `None`: the file
    /// keeps the time it was written; with `-U` an atime too) on the descriptor, syncs the file to disk if asked, and renames (or links) it over the target, from beside
    /// it or from the `-T` directory. A
    /// target symlink is replaced, not followed; on error the temp file is removed.
    pub fn commit(
        mut self,
        mode: u32,
        times: impl Into<Times>,
        fsync: bool,
    ) -> Result<(), FsError> {
        let file = self.file.as_fd();
        rfs::fchmod(file, Mode::from_raw_mode(mode & 0o7777))
            .and_then(|()| set_fd_times(file, times.into()))
            .and_then(|()| if fsync { rfs::fsync(file) } else { Ok(()) })
            .and_then(|()| {
                // An unnamed file goes straight to a free target name; an
                // existing target is replaced through a temp name, as always.
                if let Temp::Unnamed(via) = self.temp {
                    match link_unnamed_via(via, &self.file, &self.dir, &self.target) {
                        Err(Errno::EXIST) => {}
                        done => return done,
                    }
                }
                self.rename_to(&self.target.clone())
            })
            .map_err(|e| FsError::io(self.shown.clone(), e))?;
        self.done = true;
        Ok(())
    }

    /// [`TempFile::commit`] but for the rename (`--delay-updates`): sets
    /// mode and mtime, syncs if asked, and keeps the file as the target's
    /// partial file (replacing an older one), which
    /// [`FsRoot::place_partial`] renames into place at the end of the run.
    /// Under that name no other run's cleanup takes it for a crash's
    /// leftover, and if this run fails it is what the next one resumes from.
    /// Returns the file's device and inode, for [`FsRoot::place_partial`].
    pub fn stage(
        self,
        mode: u32,
        times: impl Into<Times>,
        fsync: bool,
    ) -> Result<(u64, u64), FsError> {
        let file = self.file.as_fd();
        let st = rfs::fchmod(file, Mode::from_raw_mode(mode & 0o7777))
            .and_then(|()| set_fd_times(file, times.into()))
            .and_then(|()| if fsync { rfs::fsync(file) } else { Ok(()) })
            .and_then(|()| rfs::fstat(file))
            .map_err(|e| FsError::io(self.shown.clone(), e))?;
        let m = Meta::from_stat(&st);
        self.keep_as_partial()?;
        Ok((m.dev, m.ino))
    }

    /// Renames the temp (named first if it is unnamed) to `to` in the
    /// target's directory.
    fn rename_to(&mut self, to: &OsStr) -> Result<(), Errno> {
        let dir = self.dir.clone();
        self.rename_into(dir.as_fd(), to)
    }

    /// An error about keeping the partial file, naming the partial
    /// directory when there is one.
    fn partial_err(&self, e: Errno) -> FsError {
        match &self.partial_dir {
            Some(d) => {
                let shown = Path::new(&self.shown);
                let at = shown.parent().unwrap_or(Path::new("")).join(d);
                FsError::io(at.display().to_string(), e)
            }
            None => FsError::io(self.shown.clone(), e),
        }
    }

    /// [`TempFile::rename_to`] `to` in directory `to_dir` (on the same
    /// filesystem).
    fn rename_into(&mut self, to_dir: BorrowedFd<'_>, to: &OsStr) -> Result<(), Errno> {
        let temp = match &self.temp {
            Temp::Named(temp) => temp.clone(),
            Temp::Unnamed(via) => self.name_it(*via)?,
        };
        rfs::renameat(&self.home, &temp, to_dir, to)
    }

    /// Links an unnamed temp in under a fresh temp name, locked first like
    /// every named temp so that no other run's cleanup takes it.
    fn name_it(&mut self, via: LinkVia) -> Result<OsString, Errno> {
        let _ = rfs::flock(&self.file, rfs::FlockOperation::LockExclusive);
        for _ in 0..RETRIES {
            let temp = temp_name(&self.target);
            match link_unnamed_via(via, &self.file, &self.home, &temp) {
                Ok(()) => {
                    self.temp = Temp::Named(temp.clone());
                    return Ok(temp);
                }
                Err(Errno::EXIST) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Errno::EXIST)
    }

    /// Writes all of `buf` at `offset` (`pwrite`), leaving the file position
    /// alone: pieces can arrive in any order, and ranges never written stay
    /// holes when the file is extended with [`TempFile::set_len`].
    pub fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), FsError> {
        self.file
            .write_all_at(buf, offset)
            .map_err(|e| FsError::doing(self.shown.clone(), "cannot write", e))
    }

    /// Allocates the file's `size` bytes on disk before it is written, and
    /// makes it that long (`fallocate`; rsync's `--preallocate`): the file
    /// is then laid out in one piece, and a full disk fails it now rather
    /// than part-way. (Its length too, so that [`TempFile::hole`] can punch
    /// holes anywhere in it: filesystems punch none past the end.) A
    /// filesystem that cannot is passed over (the file is written as
    /// ever); any other failure is the file's.
    pub fn preallocate(&mut self, size: u64) -> Result<(), FsError> {
        if size == 0 {
            return Ok(());
        }
        match rfs::fallocate(&self.file, rfs::FallocateFlags::empty(), 0, size) {
            Ok(()) => {
                self.preallocated = true;
                Ok(())
            }
            Err(Errno::OPNOTSUPP | Errno::NOSYS | Errno::INVAL) => Ok(()),
            Err(e) => Err(FsError::doing(self.shown.clone(), "cannot allocate it", e)),
        }
    }

    /// Whether [`TempFile::preallocate`] allocated the file.
    pub fn preallocated(&self) -> bool {
        self.preallocated
    }

    /// Leaves `len` bytes at `at` a hole: for a file [`TempFile::preallocate`]
    /// allocated, their blocks are given back (`FALLOC_FL_PUNCH_HOLE`);
    /// otherwise, a new file's, they are a hole already. Only space is at
    /// stake (allocated blocks not written read as zeros too), so a punch
    /// the filesystem refuses (ENOSPC splitting an extent) is passed over.
    pub fn hole(&self, at: u64, len: u64) {
        if !self.preallocated || len == 0 {
            return;
        }
        let punch = rfs::FallocateFlags::PUNCH_HOLE | rfs::FallocateFlags::KEEP_SIZE;
        if let Err(e) = rfs::fallocate(&self.file, punch, at, len) {
            tracing::debug!(path = %self.shown, error = %e, "cannot punch a hole");
        }
    }

    /// [`TempFile::write_at`], but each aligned 4 KiB block of `buf` that is
    /// all zeros is left a hole, not written (rsync's `-S`; see
    /// [`TempFile::hole`]). The file is new, so a hole reads as zeros; the
    /// caller sets its length after the last write (a hole at the end does
    /// not extend it).
    pub fn write_sparse_at(&self, buf: &[u8], offset: u64) -> Result<(), FsError> {
        const BLOCK: u64 = 4096;
        let mut run = 0; // start of the data not yet written
        let mut zeros = None; // start of the blocks of zeros met last
        let mut i = 0;
        while i < buf.len() {
            let at = offset + i as u64;
            let end = ((at / BLOCK + 1) * BLOCK - offset).min(buf.len() as u64) as usize;
            let whole_block = at % BLOCK == 0 && end - i == BLOCK as usize;
            if whole_block && buf[i..end].iter().all(|&b| b == 0) {
                self.write_at(&buf[run..i], offset + run as u64)?;
                run = end;
                zeros.get_or_insert(at);
            } else if let Some(z) = zeros.take() {
                self.hole(z, at - z);
            }
            i = end;
        }
        if let Some(z) = zeros {
            self.hole(z, offset + run as u64 - z);
        }
        self.write_at(&buf[run..], offset + run as u64)
    }

    /// Truncates or extends the file to `size` bytes (extending adds a hole).
    pub fn set_len(&self, size: u64) -> Result<(), FsError> {
        self.file
            .set_len(size)
            .map_err(|e| FsError::io(self.shown.clone(), e))
    }

    /// Sets the owner and/or group (`fchown`; `None` leaves one unchanged). Do
    /// it before [`TempFile::commit`]: a change of owner clears the setuid and
    /// setgid bits, which the commit then sets.
    pub fn set_owner(&self, uid: Option<u32>, gid: Option<u32>) -> Result<(), FsError> {
        let err = |e: Errno| FsError::io(self.shown.clone(), e);
        let (uid, gid) = owner_ids(uid, gid).map_err(err)?;
        rfs::fchown(&self.file, uid, gid).map_err(err)
    }

    /// Instead of discarding an unfinished file, renames it to
    /// `.<name>.jsync-partial` beside the target (with `--partial-dir`, to
    /// `DIR/<name>`, DIR made if need be), replacing an older partial, for a
    /// later run to find with [`FsRoot::partial`] and resume from. On error
    /// the temp file is removed.
    pub fn keep_as_partial(mut self) -> Result<(), FsError> {
        let mut tries = 0;
        loop {
            let place = partial_place(
                self.partial_dir.as_deref(),
                self.dir.as_fd(),
                &self.target,
                true,
            );
            let moved = match place {
                Ok(Some((Some(pdir), name))) => self.rename_into(pdir.as_fd(), &name),
                Ok(Some((None, name))) => self.rename_to(&name),
                Ok(None) => Err(Errno::NOENT),
                Err(e) => Err(e),
            };
            match moved {
                Ok(()) => break,
                // The partial directory went meanwhile (another emptied it).
                Err(Errno::NOENT) if self.partial_dir.is_some() && tries == 0 => tries += 1,
                Err(e) => return Err(self.partial_err(e)),
            }
        }
        self.done = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let (false, Temp::Named(temp)) = (self.done, &self.temp) {
            let _ = rfs::unlinkat(&self.home, temp, AtFlags::empty());
        }
    }
}

/// The error for a temp file [`FsRoot::create_temp`] or
/// [`FsRoot::create_unnamed`] could not make, as rsync's "mkstemp failed"
/// says (the cause alone reads as if the file were the problem).
fn no_temp(rel: &RelPath, e: Errno) -> FsError {
    FsError::doing(
        rel.display(),
        "cannot create a temp file in its directory",
        e,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What -X keeps.
    const X: Kept = Kept {
        xattrs: true,
        acls: false,
        names: None,
    };
    use crate::sync::ids;
    use std::io::{Read, Write};
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

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
        std::fs::create_dir(t.path().join("a")).unwrap();
        let a = RelPath::root().join(OsStr::new("a"));
        let bad = [
            a.join(OsStr::new(".."))
                .join(OsStr::new(".."))
                .join(OsStr::new("x")),
            a.join(OsStr::new("../x")),
            a.join(OsStr::new(".")),
            a.join(OsStr::new("")),
            a.join(OsStr::new("x\0")),
        ];
        for fs in roots(t.path()) {
            for bad in &bad {
                assert!(is_escape(fs.lstat(bad)), "{bad:?}");
                assert!(is_escape(fs.mkdir_all(bad, 0o755)), "{bad:?}");
                assert!(is_escape(fs.create_temp(bad)), "{bad:?}");
                // The parent of a refused path is refused too.
                assert!(is_escape(
                    fs.read_dir(&bad.join(OsStr::new("y")).parent().unwrap())
                ));
            }
            assert!(fs.lstat(&a).unwrap().is_some());
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
    fn a_sub_root_keeps_symlinks_from_leading_next_to_it() {
        let (_t, root, outside) = root_and_outside();
        std::fs::create_dir(root.join("dst")).unwrap();
        std::fs::create_dir(root.join("sibling")).unwrap();
        symlink("../sibling", root.join("dst/up")).unwrap();
        symlink(root.join("sibling"), root.join("dst/abs")).unwrap();
        symlink(&outside, root.join("dst/out")).unwrap();
        symlink("dst", root.join("lnk")).unwrap();
        for fs in roots(&root) {
            let sub = fs.sub(&rel(b"dst")).unwrap();
            assert_eq!(sub.path(), root.join("dst"));
            for dir in ["up", "abs", "out"] {
                let p = rel(format!("{dir}/x").as_bytes());
                assert!(is_escape(sub.create_temp(&p)), "{dir}");
                assert!(is_escape(sub.mkdir_all(&p, 0o755)), "{dir}");
                assert!(is_escape(sub.open_read(&p)), "{dir}");
                assert!(is_escape(sub.lstat(&p)), "{dir}");
                // The link itself is still there to see and replace.
                let link = sub.lstat(&rel(dir.as_bytes())).unwrap().unwrap();
                assert_eq!(link.kind, Kind::Symlink);
            }
            // A symlink is not followed to make a root.
            assert!(fs.sub(&rel(b"lnk")).is_err());
        }
        // What the sub-root is for: beneath the whole root, a symlink that stays
        // inside it is followed, into the destination's sibling.
        let whole = FsRoot::open(&root).unwrap();
        whole.mkdir_all(&rel(b"dst/up/made"), 0o755).unwrap();
        assert!(root.join("sibling/made").is_dir());
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
                assert!(is_escape(fs.remove_all_on(&p("x"), None)));
                assert!(is_escape(fs.symlink(b"/etc", &p("l"))));
                assert!(is_escape(fs.lstat(&p("x"))));
                assert!(is_escape(fs.stat_follow_within(&p("x"))));
                assert!(is_escape(fs.set_times(&p("x"), (1, 0), false)));
                assert!(is_escape(fs.set_mode(&p("x"), 0o777)));
                assert!(is_escape(fs.read_link(&p("x"))));
                assert!(is_escape(fs.clean_stale_temps(&p("x"))));
                assert!(is_escape(fs.clean_stale_temps(&rel(dir))));
                assert!(is_escape(fs.stat_follow_within(&rel(dir))));
                assert!(is_escape(fs.xattrs(&p("x"))));
                assert!(is_escape(fs.set_xattrs(&p("x"), &[], &X)));
                assert!(is_escape(fs.chown(&p("x"), Some(0), None)));
                assert!(is_escape(fs.mknod(&p("x"), Kind::Fifo, 0o644, 0)));
                assert!(is_escape(fs.hard_link(&p("x"), &rel(b"in"))));
                assert!(is_escape(fs.hard_link(&rel(b"in"), &p("x"))));
                assert!(is_escape(fs.partial(&p("x"))));
                assert!(is_escape(fs.remove_partial(&p("x"))));
                assert!(is_escape(fs.set_times(&rel(dir), (1, 0), true)));
            }
        }
        assert!(
            names(&outside).is_empty(),
            "something was created outside the root"
        );
    }

    #[test]
    fn a_replaced_directory_is_never_reached_through_a_cached_descriptor() {
        let (_t, root, _outside) = root_and_outside();
        std::fs::create_dir_all(root.join("d/sub")).unwrap();
        std::fs::create_dir_all(root.join("e/sub")).unwrap();
        std::fs::write(root.join("d/sub/x"), "old").unwrap();
        std::fs::write(root.join("e/sub/x"), "other").unwrap();
        let [fs, _] = roots(&root);
        let read = |p: &[u8]| {
            let mut s = String::new();
            fs.open_read(&rel(p))
                .unwrap()
                .read_to_string(&mut s)
                .unwrap();
            s
        };
        // Resolving d/sub/x caches d and d/sub.
        assert_eq!(read(b"d/sub/x"), "old");
        assert_eq!(fs.lstat(&rel(b"d/sub")).unwrap().unwrap().kind, Kind::Dir);
        // d is removed and becomes a symlink to e: d/sub/x now names e/sub/x.
        fs.remove_all_on(&rel(b"d"), None).unwrap();
        fs.symlink(b"e", &rel(b"d")).unwrap();
        assert_eq!(read(b"d/sub/x"), "other");
        // d becomes a file: nothing beneath it resolves any more.
        fs.remove(&rel(b"d")).unwrap();
        std::fs::write(root.join("d"), "file").unwrap();
        assert!(fs.open_read(&rel(b"d/sub/x")).is_err());
        assert!(fs.lstat(&rel(b"d/sub/x")).is_err());
        // Paths that merely share the prefix keep working.
        std::fs::create_dir_all(root.join("d-2")).unwrap();
        std::fs::write(root.join("d-2/y"), "y").unwrap();
        assert_eq!(read(b"d-2/y"), "y");
        fs.remove(&rel(b"d")).unwrap();
        assert_eq!(read(b"d-2/y"), "y");
    }

    /// `-T`: named and unnamed temps live in the temp directory until the
    /// commit puts them at their targets (elsewhere), a dropped one leaves
    /// nothing there, a kept partial goes beside its file, and an unlocked
    /// leftover there is removed when the directory is set.
    #[test]
    fn temp_files_live_in_the_temp_dir() {
        let (_t, root, scratch) = root_and_outside();
        std::fs::create_dir(root.join("d")).unwrap();
        std::fs::write(scratch.join(".f.jsync-tmp.0123456789abcdef"), "stale").unwrap();
        std::fs::write(scratch.join("other"), "kept").unwrap();
        let fs = FsRoot::open(&root).unwrap();
        assert!(fs.set_temp_dir(&FsRoot::open(&scratch).unwrap()).unwrap());
        assert_eq!(names(&scratch), ["other"]);
        let named: fn(&FsRoot, &RelPath) -> Result<TempFile, FsError> = FsRoot::create_temp;
        for create in [named, FsRoot::create_unnamed] {
            let mut tmp = create(&fs, &rel(b"d/f")).unwrap();
            tmp.file.write_all(b"new").unwrap();
            // (An unnamed file's path reads `DIR/#INODE (deleted)`.)
            let at = std::fs::read_link(proc_fd_path(&tmp.file)).unwrap();
            assert_eq!(at.parent(), Some(scratch.as_path()), "{at:?}");
            assert!(names(&root.join("d")).is_empty());
            tmp.commit(0o644, Some((1_000, 0)), false).unwrap();
            assert_eq!(std::fs::read(root.join("d/f")).unwrap(), b"new");
            assert_eq!(names(&scratch), ["other"]);
            let dropped = create(&fs, &rel(b"d/g")).unwrap();
            drop(dropped);
            assert_eq!(names(&scratch), ["other"]);
            assert_eq!(names(&root.join("d")), ["f"]);
            std::fs::remove_file(root.join("d/f")).unwrap();
        }
        let mut tmp = fs.create_temp(&rel(b"d/f")).unwrap();
        tmp.file.write_all(b"half").unwrap();
        tmp.keep_as_partial().unwrap();
        assert_eq!(names(&root.join("d")), [".f.jsync-partial"]);
        assert_eq!(names(&scratch), ["other"]);
    }

    /// `-T` in a directory others may share: only this user's unlocked
    /// regular temps go; a locked one (a live run's), another kind of file
    /// with a temp name, and (as root) another user's stay. The directory's
    /// own cleanup, when the transfer passes through it, leaves temps there
    /// alone too: they are this run's.
    #[test]
    fn only_stale_temps_of_this_user_leave_the_temp_dir() {
        use std::os::unix::fs::PermissionsExt;
        let (_t, root, scratch) = root_and_outside();
        let stale = |n: &str| format!(".{n}.jsync-tmp.0123456789abcdef");
        std::fs::write(scratch.join(stale("mine")), "stale").unwrap();
        std::fs::create_dir(scratch.join(stale("dir"))).unwrap();
        rustix::fs::mknodat(
            CWD,
            scratch.join(stale("fifo")),
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let other = FsRoot::open(&root).unwrap();
        other
            .set_temp_dir(&FsRoot::open(&scratch).unwrap())
            .unwrap();
        let live = other.create_temp(&rel(b"live")).unwrap();
        let foreign = rustix::process::geteuid().is_root().then(|| {
            let p = scratch.join(stale("theirs"));
            std::fs::write(&p, "theirs").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
            std::os::unix::fs::chown(&p, Some(65534), Some(65534)).unwrap();
            stale("theirs")
        });
        let fs = FsRoot::open(&scratch).unwrap();
        assert!(fs.set_temp_dir(&FsRoot::open(&scratch).unwrap()).unwrap());
        let left = names(&scratch);
        assert!(!left.contains(&stale("mine").into()), "{left:?}");
        let mut kept = vec![stale("dir"), stale("fifo")];
        kept.extend(foreign);
        let Temp::Named(live_name) = &live.temp else {
            panic!("a named temp")
        };
        kept.push(live_name.to_str().unwrap().to_string());
        for k in &kept {
            assert!(left.contains(&k.into()), "{k} went: {left:?}");
        }
        // Unlocked a moment (between its create and its lock), a temp of
        // this run in the directory is not a crash's leftover to its own
        // cleanup: nothing is renamed or removed.
        std::fs::write(scratch.join(stale("racing")), "this run's").unwrap();
        let before = names(&scratch);
        assert_eq!(fs.clean_stale_temps(&RelPath::root()).unwrap(), 0);
        assert_eq!(names(&scratch), before);
        drop(live);
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
            tmp.commit(0o644, Some((1_000, 0)), true).unwrap();
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
            fs.remove_all_on(&p("made"), None).unwrap();
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
        let named: fn(&FsRoot, &RelPath) -> Result<TempFile, FsError> = FsRoot::create_temp;
        for (n, create) in [named, FsRoot::create_unnamed].into_iter().enumerate() {
            for (i, fs) in roots(&root).into_iter().enumerate() {
                let link = rel(format!("link{n}{i}").as_bytes());
                symlink(outside.join("secret"), root.join(link.display())).unwrap();
                let mut tmp = create(&fs, &link).unwrap();
                tmp.file.write_all(b"new").unwrap();
                tmp.commit(0o600, Some((5, 0)), true).unwrap();
                assert_eq!(fs.lstat(&link).unwrap().unwrap().kind, Kind::File);
                assert_eq!(std::fs::read(root.join(link.display())).unwrap(), b"new");
            }
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
            fs.remove_all_on(&rel(b"tree"), None).unwrap();
            fs.remove_all_on(&rel(b"tree"), None).unwrap(); // already gone: fine
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
            fs.remove_all_on(&rel(b"full"), None).unwrap();
            assert!(fs.remove(&RelPath::root()).is_err());
            assert!(fs.remove_all_on(&RelPath::root(), None).is_err());
            assert!(fs.create_temp(&RelPath::root()).is_err());
            assert!(fs.symlink(b"x", &RelPath::root()).is_err());
            assert!(t.path().is_dir());
        }
    }

    #[test]
    fn sparse_writes_leave_whole_zero_blocks_as_holes_and_keep_the_content() {
        use std::os::unix::fs::MetadataExt;
        let t = tempfile::tempdir().unwrap();
        let fs = FsRoot::open(t.path()).unwrap();
        // Pieces at unaligned offsets: zeros that fill whole blocks, zeros
        // that straddle them, and data around.
        let mut want = vec![0u8; 64 << 10];
        want[..100].fill(7);
        want[20_000..20_010].fill(9);
        want[(64 << 10) - 1] = 1;
        let tmp = fs.create_temp(&rel(b"s")).unwrap();
        for (start, end) in [(0, 3), (3, 5_000), (5_000, 20_005), (20_005, 65_536)] {
            tmp.write_sparse_at(&want[start..end], start as u64)
                .unwrap();
        }
        tmp.set_len(want.len() as u64).unwrap();
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut &tmp.file, &mut got).unwrap();
        assert!(got == want, "content");
        let allocated = tmp.file.metadata().unwrap().blocks() * 512;
        assert!(allocated <= 4 * 4096, "{allocated} bytes allocated");
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
    fn unnamed_temps_are_linked_in_at_commit_and_leave_nothing_when_dropped() {
        let t = tempfile::tempdir().unwrap();
        for fs in roots(t.path()) {
            let mut tmp = fs.create_unnamed(&rel(b"new")).unwrap();
            assert!(
                matches!(tmp.temp, Temp::Unnamed(_)),
                "this filesystem has O_TMPFILE"
            );
            tmp.file.write_all(b"data").unwrap();
            assert!(
                names(t.path()).is_empty(),
                "nothing is named before the commit"
            );
            tmp.commit(0o640, Some((7, 8)), false).unwrap();
            assert_eq!(names(t.path()), ["new"]);
            let m = std::fs::symlink_metadata(t.path().join("new")).unwrap();
            assert_eq!(m.mode() & 0o7777, 0o640);
            assert_eq!((m.mtime(), m.mtime_nsec()), (7, 8));
            assert_eq!(std::fs::read(t.path().join("new")).unwrap(), b"data");

            // An existing target is replaced, through a temp name that is gone after.
            let old_ino = m.ino();
            let mut tmp = fs.create_unnamed(&rel(b"new")).unwrap();
            tmp.file.write_all(b"other").unwrap();
            tmp.commit(0o600, Some((9, 0)), false).unwrap();
            assert_eq!(names(t.path()), ["new"]);
            let m = std::fs::symlink_metadata(t.path().join("new")).unwrap();
            assert_ne!(m.ino(), old_ino);
            assert_eq!(std::fs::read(t.path().join("new")).unwrap(), b"other");

            let mut tmp = fs.create_unnamed(&rel(b"dropped")).unwrap();
            tmp.file.write_all(b"never placed").unwrap();
            drop(tmp);
            assert_eq!(names(t.path()), ["new"]);
            std::fs::remove_file(t.path().join("new")).unwrap();
        }
    }

    #[test]
    fn unnamed_temps_can_be_kept_as_partials() {
        let t = tempfile::tempdir().unwrap();
        for (i, fs) in roots(t.path()).into_iter().enumerate() {
            let big = rel(format!("big{i}").as_bytes());
            let mut tmp = fs.create_unnamed(&big).unwrap();
            tmp.file.write_all(b"half").unwrap();
            tmp.keep_as_partial().unwrap();
            let mut partial = fs.partial(&big).unwrap().expect("kept as a partial");
            let mut got = String::new();
            partial.read_to_string(&mut got).unwrap();
            assert_eq!(got, "half");
        }
    }

    #[test]
    fn both_ways_of_linking_an_unnamed_file_work_and_the_probe_names_nothing() {
        let t = tempfile::tempdir().unwrap();
        let dir = rfs::open(t.path(), OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let unnamed = |data: &[u8]| {
            let flags = OFlags::RDWR | OFlags::TMPFILE | OFlags::CLOEXEC;
            let mut f =
                File::from(rfs::openat(&dir, ".", flags, Mode::from_raw_mode(0o600)).unwrap());
            f.write_all(data).unwrap();
            f
        };
        for (via, name) in [(LinkVia::EmptyPath, "a"), (LinkVia::Proc, "b")] {
            let f = unnamed(name.as_bytes());
            // How the probe asks: an existing name, so nothing can be made.
            assert_eq!(
                link_unnamed_via(via, &f, &dir, OsStr::new(".")),
                Err(Errno::EXIST)
            );
            link_unnamed_via(via, &f, &dir, OsStr::new(name)).unwrap();
            assert_eq!(std::fs::read(t.path().join(name)).unwrap(), name.as_bytes());
            let again = unnamed(b"second");
            assert_eq!(
                link_unnamed_via(via, &again, &dir, OsStr::new(name)),
                Err(Errno::EXIST)
            );
        }
        let f = unnamed(b"probe");
        assert_ne!(probe_link_via(&f.into(), &dir), LinkVia::Unsupported);
        assert_eq!(names(t.path()), ["a", "b"]);
    }

    #[test]
    fn failed_commit_removes_the_temp_file() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("busy/child")).unwrap();
        let fs = FsRoot::open(t.path()).unwrap();
        let tmp = fs.create_temp(&rel(b"busy")).unwrap();
        let err = tmp.commit(0o644, Some((0, 0)), true).unwrap_err();
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
    fn noatime_falls_back_where_it_is_refused() {
        let tried = std::sync::Mutex::new(Vec::new());
        let open = |f: OFlags| {
            tried.lock().unwrap().push(f.contains(OFlags::NOATIME));
            match f.contains(OFlags::NOATIME) {
                true => Err(Errno::PERM),
                false => Ok(()),
            }
        };
        assert_eq!(
            without_atime(READ_FLAGS | OFlags::NOATIME, perm, open),
            Ok(())
        );
        assert_eq!(*tried.lock().unwrap(), [true, false]);
        // Without O_NOATIME asked, a refusal stands.
        let refused = |_| Err::<(), _>(Errno::PERM);
        assert_eq!(without_atime(READ_FLAGS, perm, refused), Err(Errno::PERM));
        let dir = tempfile::tempdir().unwrap();
        let fs = FsRoot::open(dir.path()).unwrap();
        assert!(!fs.read_flags().contains(OFlags::NOATIME));
        fs.set_open_noatime();
        assert!(fs.read_flags().contains(OFlags::NOATIME));
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
                tmp.commit(mode, Some(mtime), true).unwrap();
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
        // A crash: no Drop, but the descriptor (and its lock) goes with the process.
        let mut crashed = fs.create_temp(&rel(b"d/crashed")).unwrap();
        crashed.done = true;
        drop(crashed);
        std::fs::write(d.join(".a.jsync-tmp.0123456789abcdef"), b"").unwrap();
        symlink("x", d.join(".l.jsync-tmp.fedcba9876543210")).unwrap();
        let keep = [
            "normal",
            "a.jsync-tmp.0123456789abcdef",
            ".a.jsync-tmp.bak",
            ".a.jsync-tmp.0123456789ABCDEF",
            ".jsync-tmp.0123456789abcdef",
            "..jsync-tmp.0123456789abcdef",
            ".a.jsync-tmp.0123456789abcdef.old",
            ".dir.jsync-tmp.0123456789abcdef",
        ];
        for k in &keep[..7] {
            std::fs::write(d.join(k), b"").unwrap();
        }
        std::fs::create_dir(d.join(keep[7])).unwrap();
        let mut want: Vec<OsString> = keep.iter().map(OsString::from).collect();
        want.sort();
        // A temp another run is still writing (it holds the lock) is kept.
        let live = fs.create_temp(&rel(b"d/live")).unwrap();
        live.write_at(b"in flight", 0).unwrap();
        // Old enough: the empty ones and the symlink go, nothing else.
        assert_eq!(fs.clean_stale_temps(&rel(b"d")).unwrap(), 3);
        let mut with_live = want.clone();
        let Temp::Named(live_name) = &live.temp else {
            panic!("a named temp");
        };
        with_live.push(live_name.clone());
        with_live.sort();
        assert_eq!(names(&d), with_live);
        drop(live);
        assert_eq!(names(&d), want);
        assert_eq!(fs.clean_stale_temps(&rel(b"d")).unwrap(), 0);
    }

    #[test]
    fn a_scan_names_the_files_that_have_partials() {
        let t = tempfile::tempdir().unwrap();
        let fs = FsRoot::open(t.path()).unwrap();
        let long = "n".repeat(255);
        assert_eq!(
            fs.clean_stale_temps_scan(&RelPath::root())
                .unwrap()
                .partials,
            Partials::None
        );
        std::fs::write(t.path().join(partial_name(OsStr::new("kept"))), b"x").unwrap();
        // A crash's temp becomes a partial too.
        let mut tmp = fs.create_temp(&rel(long.as_bytes())).unwrap();
        tmp.write_at(b"half", 0).unwrap();
        tmp.done = true;
        drop(tmp);
        let partials = fs
            .clean_stale_temps_scan(&RelPath::root())
            .unwrap()
            .partials;
        assert!(partials.has(OsStr::new("kept")) && partials.has(OsStr::new(&long)));
        assert!(!partials.has(OsStr::new("other")));
        let listed = [b"kept".to_vec(), b"other".to_vec()];
        assert!(!Partials::orphan(
            partial_name(OsStr::new("kept")).as_bytes(),
            &listed
        ));
        assert!(Partials::orphan(
            partial_name(OsStr::new(&long)).as_bytes(),
            &listed
        ));
        // One changed since a time stays (another run's, going on now).
        let kept = rel(b"kept");
        fs.remove_partial_before(&kept, (1, 0)).unwrap();
        assert!(fs.partial(&kept).unwrap().is_some());
        fs.remove_partial_before(&kept, (i64::MAX, 0)).unwrap();
        assert!(fs.partial(&kept).unwrap().is_none());
        // With a partial directory, any file may have one.
        fs.set_partial_dir(OsStr::new(".p"));
        std::fs::create_dir(t.path().join(".p")).unwrap();
        let partials = fs
            .clean_stale_temps_scan(&RelPath::root())
            .unwrap()
            .partials;
        assert_eq!(partials, Partials::Any);
    }

    #[test]
    fn clean_stale_temps_keeps_the_largest_temp_as_the_partial() {
        let t = tempfile::tempdir().unwrap();
        let long = "n".repeat(255);
        for (i, fs) in roots(t.path()).into_iter().enumerate() {
            let dir = rel(format!("{i}").as_bytes());
            fs.mkdir_all(&dir, 0o755).unwrap();
            // A crash: the process dies, its descriptors (and lock) go, the
            // temp file stays.
            let crash = |name: &str, data: &[u8]| {
                let mut tmp = fs.create_temp(&dir.join(OsStr::new(name))).unwrap();
                tmp.write_at(data, 0).unwrap();
                tmp.done = true;
            };
            crash("big", b"small");
            crash("big", b"the largest one");
            crash("big", b"");
            crash("has", b"a temp larger than the partial");
            std::fs::write(t.path().join(format!("{i}/.has.jsync-partial")), b"old").unwrap();
            crash(&long, b"long");
            crash(&long, b"longer");
            // A FIFO under a temp name is removed, never kept or opened.
            let fifo = temp_name(OsStr::new("fifo"));
            fs.mknod(&dir.join(&fifo), Kind::Fifo, 0o600, 0).unwrap();
            assert_eq!(fs.clean_stale_temps(&dir).unwrap(), 7);
            let partial = |name: &str| {
                let mut s = String::new();
                fs.partial(&dir.join(OsStr::new(name)))
                    .unwrap()
                    .unwrap()
                    .read_to_string(&mut s)
                    .unwrap();
                s
            };
            assert_eq!(partial("big"), "the largest one");
            assert_eq!(partial("has"), "old");
            assert_eq!(partial(&long), "longer");
            assert!(fs.partial(&dir.join(OsStr::new("fifo"))).unwrap().is_none());
            let listed = names(&t.path().join(format!("{i}")));
            assert_eq!(listed.len(), 3, "{listed:?}");
            assert!(
                listed.iter().all(|n| is_partial_name(n.as_bytes())),
                "{listed:?}"
            );
        }
    }

    #[test]
    fn keep_as_partial_and_partial_round_trip() {
        let (_t, root, outside) = root_and_outside();
        std::fs::write(outside.join("secret"), b"secret").unwrap();
        let long = "p".repeat(255);
        for (i, fs) in roots(&root).into_iter().enumerate() {
            for name in [format!("f{i}"), format!("{long:.250}{i}")] {
                let f = rel(name.as_bytes());
                assert!(fs.partial(&f).unwrap().is_none());
                fs.remove_partial(&f).unwrap(); // none: fine
                for content in [&b"first"[..], b"second, longer"] {
                    let tmp = fs.create_temp(&f).unwrap();
                    tmp.write_at(content, 0).unwrap();
                    tmp.keep_as_partial().unwrap(); // replaces the older one
                    let mut got = Vec::new();
                    fs.partial(&f)
                        .unwrap()
                        .unwrap()
                        .read_to_end(&mut got)
                        .unwrap();
                    assert_eq!(got, content);
                }
                let pname = partial_name(OsStr::new(&name));
                assert!(pname.len() <= 255);
                assert!(is_partial_name(pname.as_bytes()));
                assert!(!is_temp_name(pname.as_bytes()));
                assert_eq!(names(&root), std::slice::from_ref(&pname));
                assert_eq!(fs.lstat(&f).unwrap(), None);
                fs.remove_partial(&f).unwrap();
                assert!(names(&root).is_empty());
                // Not a regular file there: no partial, nothing opened or followed.
                let at = root.join(&pname);
                symlink(outside.join("secret"), &at).unwrap();
                assert!(fs.partial(&f).unwrap().is_none());
                fs.remove_partial(&f).unwrap();
                fs.mknod(&rel(pname.as_bytes()), Kind::Fifo, 0o600, 0)
                    .unwrap();
                assert!(fs.partial(&f).unwrap().is_none());
                fs.remove_partial(&f).unwrap();
                assert!(names(&root).is_empty());
            }
            assert!(fs.partial(&RelPath::root()).is_err());
        }
        assert_eq!(std::fs::read(outside.join("secret")).unwrap(), b"secret");
        for odd in [
            &b".jsync-partial"[..],
            b"..jsync-partial",
            b"a.jsync-partial",
            b".a.jsync-partial.x",
        ] {
            assert!(!is_partial_name(odd), "{:?}", String::from_utf8_lossy(odd));
        }
    }

    #[test]
    fn meta_has_owner_device_and_blocks() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("f"), b"abc").unwrap();
        std::fs::File::create(t.path().join("sparse"))
            .unwrap()
            .set_len(64 << 20)
            .unwrap();
        let _sock = std::os::unix::net::UnixListener::bind(t.path().join("sock")).unwrap();
        let root = ids::is_root();
        for (i, fs) in roots(t.path()).into_iter().enumerate() {
            let m = fs.lstat(&rel(b"f")).unwrap().unwrap();
            let st = std::fs::symlink_metadata(t.path().join("f")).unwrap();
            assert_eq!((m.uid, m.gid, m.rdev), (st.uid(), st.gid(), 0));
            assert!(m.blocks >= 1);
            let m = fs.lstat(&rel(b"sparse")).unwrap().unwrap();
            assert_eq!((m.size, m.blocks), (64 << 20, 0));
            assert_eq!(fs.lstat(&rel(b"sock")).unwrap().unwrap().kind, Kind::Socket);
            let fifo = rel(format!("fifo{i}").as_bytes());
            fs.mknod(&fifo, Kind::Fifo, 0o640, 1234).unwrap();
            let m = fs.lstat(&fifo).unwrap().unwrap();
            assert_eq!((m.kind, m.mode, m.rdev), (Kind::Fifo, 0o640, 0));
            if root {
                for (kind, rdev) in [
                    (Kind::CharDev, rfs::makedev(1, 3)),
                    (Kind::BlockDev, rfs::makedev(7, 200)),
                ] {
                    let p = rel(format!("{kind:?}{i}").as_bytes());
                    fs.mknod(&p, kind, 0o600, rdev).unwrap();
                    let m = fs.lstat(&p).unwrap().unwrap();
                    assert_eq!((m.kind, m.mode, m.rdev, m.size), (kind, 0o600, rdev, 0));
                }
            }
        }
    }

    #[test]
    fn mknod_replaces_non_dirs_atomically_and_refuses_sockets() {
        let (_t, root, outside) = root_and_outside();
        std::fs::write(outside.join("secret"), b"s").unwrap();
        std::fs::create_dir(root.join("d")).unwrap();
        for fs in roots(&root) {
            std::fs::write(root.join("f"), b"x").unwrap();
            symlink(outside.join("secret"), root.join("l")).unwrap();
            for p in [&b"f"[..], b"l", b"new"] {
                // mode is exact, whatever the umask
                fs.mknod(&rel(p), Kind::Fifo, 0o666, 0).unwrap();
                let m = fs.lstat(&rel(p)).unwrap().unwrap();
                assert_eq!((m.kind, m.mode), (Kind::Fifo, 0o666));
            }
            assert!(fs.mknod(&rel(b"d"), Kind::Fifo, 0o644, 0).is_err());
            assert_eq!(fs.lstat(&rel(b"d")).unwrap().unwrap().kind, Kind::Dir);
            for kind in [Kind::Socket, Kind::File, Kind::Dir, Kind::Symlink] {
                let err = fs.mknod(&rel(b"s"), kind, 0o644, 0).unwrap_err();
                assert!(
                    matches!(&err, FsError::Io { path, .. } if path == "s"),
                    "{err}"
                );
            }
            assert!(fs.mknod(&RelPath::root(), Kind::Fifo, 0o644, 0).is_err());
            assert_eq!(names(&root), ["d", "f", "l", "new"]);
            for p in ["f", "l", "new"] {
                fs.remove(&rel(p.as_bytes())).unwrap();
            }
        }
        assert_eq!(std::fs::read(outside.join("secret")).unwrap(), b"s");
        assert_eq!(names(&outside), ["secret"]);
    }

    #[test]
    fn hard_link_links_the_name_itself_and_replaces_atomically() {
        let (_t, root, outside) = root_and_outside();
        std::fs::write(outside.join("secret"), b"s").unwrap();
        std::fs::create_dir(root.join("d")).unwrap();
        std::fs::write(root.join("src"), b"content").unwrap();
        symlink(outside.join("secret"), root.join("link")).unwrap();
        for (i, fs) in roots(&root).into_iter().enumerate() {
            let new = rel(format!("d/new{i}").as_bytes());
            std::fs::write(root.join(new.display()), b"old").unwrap();
            fs.hard_link(&rel(b"src"), &new).unwrap();
            let (a, b) = (fs.lstat(&rel(b"src")), fs.lstat(&new));
            let (a, b) = (a.unwrap().unwrap(), b.unwrap().unwrap());
            assert_eq!((a.ino, a.nlink), (b.ino, 2));
            assert_eq!(std::fs::read(root.join(new.display())).unwrap(), b"content");
            // Already the same inode: nothing happens, nothing is left behind.
            fs.hard_link(&rel(b"src"), &new).unwrap();
            fs.hard_link(&new, &rel(b"src")).unwrap();
            assert_eq!(fs.lstat(&new).unwrap().unwrap().nlink, 2);
            // A symlink is linked itself, never its target.
            let l = rel(format!("d/l{i}").as_bytes());
            fs.hard_link(&rel(b"link"), &l).unwrap();
            let m = fs.lstat(&l).unwrap().unwrap();
            assert_eq!(m.kind, Kind::Symlink);
            assert_eq!(m.ino, fs.lstat(&rel(b"link")).unwrap().unwrap().ino);
            // Over a symlink: the link is replaced.
            fs.hard_link(&rel(b"src"), &l).unwrap();
            assert_eq!(fs.lstat(&l).unwrap().unwrap().ino, a.ino);
            let err = fs.hard_link(&rel(b"missing"), &rel(b"x")).unwrap_err();
            assert!(
                matches!(&err, FsError::Io { path, .. } if path == "missing"),
                "{err}"
            );
            assert!(fs.hard_link(&rel(b"d"), &rel(b"x")).is_err());
            assert!(fs.hard_link(&rel(b"src"), &rel(b"d")).is_err());
            assert!(fs.hard_link(&rel(b"src"), &RelPath::root()).is_err());
            fs.remove(&new).unwrap();
            fs.remove(&l).unwrap();
        }
        assert_eq!(names(&root), ["d", "link", "src"]);
        assert!(names(&root.join("d")).is_empty());
        assert_eq!(std::fs::read(outside.join("secret")).unwrap(), b"s");
        assert_eq!(names(&outside), ["secret"]);
    }

    fn xa(pairs: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        pairs
            .iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    /// A POSIX ACL as the kernel stores it in `system.posix_acl_access`: the
    /// owner, user 1000 with read (`perm`), the group, a read mask and others.
    fn acl_with(perm: u16) -> Vec<u8> {
        super::super::acl::tests::value(&[
            (0x01, 6, u32::MAX),
            (0x02, perm, 1000),
            (0x04, 4, u32::MAX),
            (0x10, 4, u32::MAX),
            (0x20, 4, u32::MAX),
        ])
    }

    fn acl_blob() -> Vec<u8> {
        acl_with(4)
    }

    /// `x` rules narrow what is kept: a name they leave out is neither
    /// compared, set nor removed; the others as ever; ACLs are `-A`'s.
    #[test]
    fn xattr_rules_narrow_what_is_kept() {
        let mut filter = crate::sync::Filter::default();
        filter.add_rule("-x user.mine").unwrap();
        let kept = Kept {
            names: Some(std::sync::Arc::new(filter)),
            ..X
        };
        assert!(kept.covers(b"user.theirs", false) && !kept.covers(b"user.mine", false));
        assert!(!kept.covers(b"system.posix_acl_access", true));
        let have = xa(&[("user.mine", "here"), ("user.theirs", "old")]);
        let want = xa(&[("user.theirs", "old")]);
        assert_eq!(kept.differences(&have, &want), (false, false));
        assert_eq!(X.differences(&have, &want), (true, false));
        let (_t, root, _outside) = root_and_outside();
        let f = rel(b"f");
        std::fs::write(root.join("f"), b"x").unwrap();
        let fs = FsRoot::open(&root).unwrap();
        for (name, value) in [("user.mine", "here"), ("user.gone", "old")] {
            rfs::setxattr(root.join("f"), name, value.as_bytes(), XattrFlags::empty()).unwrap();
        }
        let want = xa(&[("user.mine", "sent"), ("user.new", "1")]);
        fs.set_xattrs(&f, &want, &kept).unwrap();
        assert_eq!(
            fs.xattrs(&f).unwrap(),
            xa(&[("user.mine", "here"), ("user.new", "1")])
        );
    }

    #[test]
    fn xattrs_are_read_and_made_equal_without_touching_acls() {
        let (_t, root, outside) = root_and_outside();
        std::fs::write(outside.join("secret"), b"s").unwrap();
        rfs::setxattr(
            outside.join("secret"),
            "user.out",
            b"x",
            XattrFlags::empty(),
        )
        .unwrap();
        let as_root = ids::is_root();
        for (i, fs) in roots(&root).into_iter().enumerate() {
            let f = rel(format!("f{i}").as_bytes());
            let d = rel(format!("d{i}").as_bytes());
            std::fs::write(root.join(f.display()), b"x").unwrap();
            fs.mkdir_all(&d, 0o755).unwrap();
            for p in [&f, &d] {
                assert_eq!(fs.xattrs(p).unwrap(), []);
                rfs::setxattr(
                    root.join(p.display()),
                    "system.posix_acl_access",
                    &acl_blob(),
                    XattrFlags::empty(),
                )
                .unwrap();
                let acl = (b"system.posix_acl_access".to_vec(), acl_blob());
                let want = xa(&[("user.b", "2"), ("user.a", ""), ("user.c", "\0bin")]);
                fs.set_xattrs(p, &want, &X).unwrap();
                let mut expect = want.clone();
                expect.push(acl.clone());
                expect.sort();
                assert_eq!(fs.xattrs(p).unwrap(), expect);
                // Changed, removed, kept; the ACL is not ours to remove.
                let want = xa(&[("user.b", "changed"), ("user.a", "")]);
                fs.set_xattrs(p, &want, &X).unwrap();
                let mut expect = want.clone();
                expect.push(acl.clone());
                expect.sort();
                assert_eq!(fs.xattrs(p).unwrap(), expect);
                if as_root {
                    let want = xa(&[("trusted.t", "1"), ("user.a", "")]);
                    fs.set_xattrs(p, &want, &X).unwrap();
                    let mut expect = want.clone();
                    expect.push(acl.clone());
                    expect.sort();
                    assert_eq!(fs.xattrs(p).unwrap(), expect);
                }
                // Wanting system.* does not set or change it either.
                fs.set_xattrs(p, &[(acl.0.clone(), b"junk".to_vec())], &X)
                    .unwrap();
                assert_eq!(fs.xattrs(p).unwrap(), std::slice::from_ref(&acl));
            }
            // Symlinks and FIFOs: empty, no-op, nothing opened (a FIFO would block).
            let l = rel(format!("l{i}").as_bytes());
            symlink(outside.join("secret"), root.join(l.display())).unwrap();
            let p = rel(format!("p{i}").as_bytes());
            fs.mknod(&p, Kind::Fifo, 0o644, 0).unwrap();
            for q in [&l, &p] {
                assert_eq!(fs.xattrs(q).unwrap(), []);
                fs.set_xattrs(q, &xa(&[("user.x", "1")]), &X).unwrap();
            }
            assert_eq!(fs.xattrs(&RelPath::root()).unwrap(), []);
            assert!(fs.xattrs(&rel(b"missing")).is_err());
            assert!(fs.set_xattrs(&rel(b"missing"), &[], &X).is_err());
            let err = fs
                .set_xattrs(&f, &xa(&[("user.", "bad name")]), &X)
                .unwrap_err();
            assert!(
                matches!(&err, FsError::Io { path, .. } if *path == f.display()),
                "{err}"
            );
            assert!(
                err.to_string().contains("extended attribute user."),
                "{err}"
            );
        }
        assert_eq!(
            file_xattrs(&File::open(outside.join("secret")).unwrap()).unwrap(),
            xa(&[("user.out", "x")])
        );
    }

    /// With `-A` the ACLs are set, changed and removed like `-X`'s
    /// attributes, and told apart from them in what differs.
    #[test]
    fn acls_are_kept_with_a() {
        let (_t, root, _outside) = root_and_outside();
        let both = Kept {
            xattrs: true,
            acls: true,
            names: None,
        };
        let access = |perm| (super::super::acl::ACCESS.to_vec(), acl_with(perm));
        for (i, fs) in roots(&root).into_iter().enumerate() {
            let f = rel(format!("f{i}").as_bytes());
            std::fs::write(root.join(f.display()), b"x").unwrap();
            let mut want = xa(&[("user.a", "1")]);
            want.push(access(4));
            want.sort();
            assert_eq!(both.differences(&[], &want), (true, true));
            assert_eq!(X.differences(&[], &want), (true, false));
            fs.set_xattrs(&f, &want, &both).unwrap();
            let have = fs.xattrs(&f).unwrap();
            assert_eq!(have, want);
            assert_eq!(both.differences(&have, &want), (false, false));
            // The ACL set its group bits: the mask's read.
            let mode = std::fs::metadata(root.join(f.display())).unwrap().mode();
            assert_eq!(mode & 0o070, 0o040, "{mode:o}");
            // Changed, then removed with the attribute.
            let mut changed = xa(&[("user.a", "1")]);
            changed.push(access(6));
            changed.sort();
            assert_eq!(both.differences(&have, &changed), (false, true));
            fs.set_xattrs(&f, &changed, &both).unwrap();
            assert_eq!(fs.xattrs(&f).unwrap(), changed);
            fs.set_xattrs(&f, &[], &both).unwrap();
            assert_eq!(fs.xattrs(&f).unwrap(), []);
            // -A alone leaves the other attributes alone.
            let only_acls = Kept {
                xattrs: false,
                acls: true,
                names: None,
            };
            rfs::setxattr(root.join(f.display()), "user.b", b"2", XattrFlags::empty()).unwrap();
            fs.set_xattrs(&f, &[access(4)], &only_acls).unwrap();
            let mut expect = vec![access(4)];
            expect.extend(xa(&[("user.b", "2")]));
            expect.sort();
            assert_eq!(fs.xattrs(&f).unwrap(), expect);
            assert_eq!(only_acls.differences(&expect, &[access(4)]), (false, false));
        }
    }

    /// A staged file (`--delay-updates`) has its mode and time and waits
    /// as the target's partial file (the old one replaced) until placed;
    /// small (unnamed) and named temps alike.
    #[test]
    fn a_staged_file_waits_as_the_partial_until_placed() {
        let t = tempfile::tempdir().unwrap();
        let fs = FsRoot::open(t.path()).unwrap();
        for (i, unnamed) in [false, true].into_iter().enumerate() {
            let f = rel(format!("f{i}").as_bytes());
            let path = t.path().join(f.display());
            std::fs::write(&path, b"old").unwrap();
            let older = t.path().join(partial_name(f.file_name().unwrap()));
            std::fs::write(&older, b"an older partial").unwrap();
            let tmp = match unnamed {
                true => fs.create_unnamed(&f),
                false => fs.create_temp(&f),
            }
            .unwrap();
            tmp.write_at(b"new", 0).unwrap();
            let id = tmp.stage(0o640, Some((1_000, 0)), false).unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), b"old");
            let mut partial = fs.partial(&f).unwrap().expect("staged as the partial");
            let mut got = Vec::new();
            partial.read_to_end(&mut got).unwrap();
            assert_eq!(got, b"new");
            // Another file under the partial name is not put in place.
            let moved = t.path().join("moved");
            std::fs::rename(&older, &moved).unwrap();
            std::fs::write(&older, b"someone else's").unwrap();
            assert!(fs.place_partial(&f, id).is_err());
            std::fs::rename(&moved, &older).unwrap();
            fs.place_partial(&f, id).unwrap();
            let m = std::fs::metadata(&path).unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), b"new");
            assert_eq!((m.mode() & 0o7777, m.mtime()), (0o640, 1_000));
            assert!(fs.partial(&f).unwrap().is_none());
        }
        assert_eq!(names(t.path()), ["f0", "f1"], "nothing else left");
    }

    /// `--partial-dir`: a kept partial goes in the directory (made then,
    /// removed when the last partial leaves it) under the file's own name,
    /// where a later run finds, stages, places or removes it; a crash's
    /// stale temp goes there too; a symlink planted under the directory's
    /// name is never followed.
    #[test]
    fn partial_files_live_in_the_partial_dir() {
        let (_t, root, outside) = root_and_outside();
        let fs = FsRoot::open(&root).unwrap();
        fs.set_partial_dir(OsStr::new(".p"));
        std::fs::create_dir(root.join("d")).unwrap();
        let f = rel(b"d/f");
        let keep = |data: &[u8]| {
            let tmp = fs.create_temp(&f).unwrap();
            tmp.write_at(data, 0).unwrap();
            tmp.keep_as_partial().unwrap();
        };
        let read_partial = || {
            let mut got = Vec::new();
            fs.partial(&f)
                .unwrap()
                .map(|mut p| p.read_to_end(&mut got).unwrap());
            got
        };
        keep(b"half");
        assert_eq!(std::fs::read(root.join("d/.p/f")).unwrap(), b"half");
        let m = std::fs::metadata(root.join("d/.p")).unwrap();
        assert_eq!(m.mode() & 0o777, 0o700);
        assert_eq!(names(&root.join("d")), [".p"]);
        assert_eq!(read_partial(), b"half");
        fs.remove_partial(&f).unwrap();
        assert!(fs.partial(&f).unwrap().is_none());
        assert!(names(&root.join("d")).is_empty(), "the empty .p went too");
        // Staged (--delay-updates) and placed.
        let tmp = fs.create_unnamed(&f).unwrap();
        tmp.write_at(b"whole", 0).unwrap();
        let id = tmp.stage(0o644, Some((1_000, 0)), false).unwrap();
        assert!(!root.join("d/f").exists());
        fs.place_partial(&f, id).unwrap();
        assert_eq!(std::fs::read(root.join("d/f")).unwrap(), b"whole");
        assert_eq!(names(&root.join("d")), ["f"]);
        // A crash's stale temp becomes the partial, in .p.
        std::fs::write(root.join("d").join(temp_name(OsStr::new("g"))), b"stale").unwrap();
        let scan = fs.clean_stale_temps_scan(&rel(b"d")).unwrap();
        assert!(scan.partials != Partials::None && scan.cleaned == 1);
        assert_eq!(std::fs::read(root.join("d/.p/g")).unwrap(), b"stale");
        std::fs::remove_dir_all(root.join("d/.p")).unwrap();
        // A .p others may write in is not used (one not ours neither).
        std::fs::create_dir(root.join("d/.p")).unwrap();
        std::fs::set_permissions(root.join("d/.p"), std::fs::Permissions::from_mode(0o777))
            .unwrap();
        let tmp = fs.create_temp(&f).unwrap();
        let err = tmp.keep_as_partial().unwrap_err();
        assert!(err.to_string().starts_with("d/.p: "), "{err}");
        assert!(names(&root.join("d/.p")).is_empty());
        std::fs::remove_dir(root.join("d/.p")).unwrap();
        // A symlink planted as .p is not followed.
        symlink(&outside, root.join("d/.p")).unwrap();
        let tmp = fs.create_temp(&f).unwrap();
        tmp.write_at(b"x", 0).unwrap();
        assert!(tmp.keep_as_partial().is_err());
        assert!(fs.partial(&f).is_err());
        assert!(names(&outside).is_empty(), "nothing went outside");
    }

    #[test]
    fn temp_file_xattrs_and_owner_survive_the_commit() {
        let t = tempfile::tempdir().unwrap();
        let fs = FsRoot::open(t.path()).unwrap();
        let tmp = fs.create_temp(&rel(b"f")).unwrap();
        let want = xa(&[("user.one", "1"), ("user.two", "2")]);
        fset_xattrs(&tmp.file, &want, &X).unwrap();
        assert_eq!(file_xattrs(&tmp.file).unwrap(), want);
        fset_xattrs(&tmp.file, &want[1..], &X).unwrap();
        let me = rustix::process::geteuid().as_raw();
        let (uid, gid) = if ids::is_root() {
            (4321, 8765)
        } else {
            (me, rustix::process::getegid().as_raw())
        };
        tmp.set_owner(Some(uid), Some(gid)).unwrap();
        assert!(tmp.set_owner(Some(u32::MAX), None).is_err());
        tmp.commit(0o6755, Some((5, 6)), true).unwrap();
        let m = fs.lstat(&rel(b"f")).unwrap().unwrap();
        assert_eq!((m.uid, m.gid, m.mode), (uid, gid, 0o6755));
        assert_eq!(fs.xattrs(&rel(b"f")).unwrap(), want[1..]);
    }

    #[test]
    fn chown_sets_the_link_itself_not_its_target() {
        if !ids::is_root() {
            // Giving files away needs root; the non-root answer is tested in
            // non_root_gets_eperm_for_root_only_operations.
            return;
        }
        let (_t, root, outside) = root_and_outside();
        std::fs::write(outside.join("secret"), b"s").unwrap();
        let before = std::fs::metadata(outside.join("secret")).unwrap();
        symlink(outside.join("secret"), root.join("link")).unwrap();
        std::fs::write(root.join("f"), b"x").unwrap();
        std::fs::create_dir(root.join("d")).unwrap();
        for (i, fs) in roots(&root).into_iter().enumerate() {
            let n = i as u32;
            for p in [&b"link"[..], b"f", b"d"] {
                fs.chown(&rel(p), Some(1000 + n), Some(2000 + n)).unwrap();
                let m = fs.lstat(&rel(p)).unwrap().unwrap();
                assert_eq!((m.uid, m.gid), (1000 + n, 2000 + n));
                fs.chown(&rel(p), None, Some(3000)).unwrap();
                fs.chown(&rel(p), None, None).unwrap();
                let m = fs.lstat(&rel(p)).unwrap().unwrap();
                assert_eq!((m.uid, m.gid), (1000 + n, 3000));
            }
            fs.chown(&RelPath::root(), Some(0), Some(0)).unwrap();
            assert!(fs.chown(&rel(b"missing"), Some(0), None).is_err());
            assert!(fs.chown(&rel(b"f"), None, Some(u32::MAX)).is_err());
        }
        let after = std::fs::metadata(outside.join("secret")).unwrap();
        assert_eq!((after.uid(), after.gid()), (before.uid(), before.gid()));
    }

    /// Runs `f` on a thread whose ids are `nobody`'s (65534): Linux keeps user
    /// ids per thread, so the rest of the test process stays root.
    fn as_nobody<T: Send>(f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| {
                let nobody = 65534;
                rustix::thread::set_thread_res_gid(
                    rfs::Gid::from_raw(nobody),
                    rfs::Gid::from_raw(nobody),
                    rfs::Gid::from_raw(nobody),
                )
                .unwrap();
                rustix::thread::set_thread_res_uid(
                    rfs::Uid::from_raw(nobody),
                    rfs::Uid::from_raw(nobody),
                    rfs::Uid::from_raw(nobody),
                )
                .unwrap();
                assert!(!ids::is_root());
                f()
            })
            .join()
            .unwrap()
        })
    }

    #[test]
    fn non_root_gets_eperm_for_root_only_operations() {
        if !ids::is_root() {
            // Needs root to become nobody on one thread; as non-root these
            // paths are what every test exercises anyway.
            return;
        }
        let t = tempfile::tempdir().unwrap();
        std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let root = t.path().join("n");
        std::fs::create_dir(&root).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::write(root.join("f"), b"x").unwrap();
        std::os::unix::fs::chown(root.join("f"), Some(65534), Some(65534)).unwrap();
        rfs::setxattr(root.join("f"), "trusted.keep", b"k", XattrFlags::empty()).unwrap();
        rfs::setxattr(root.join("f"), "user.gone", b"g", XattrFlags::empty()).unwrap();
        for (i, fs) in roots(&root).into_iter().enumerate() {
            let dev = rel(format!("dev{i}").as_bytes());
            let fifo = rel(format!("fifo{i}").as_bytes());
            as_nobody(|| {
                let err = fs
                    .mknod(&dev, Kind::CharDev, 0o600, rfs::makedev(1, 3))
                    .unwrap_err();
                assert!(
                    matches!(&err, FsError::Io { source, .. } if source.raw_os_error() == Some(libc::EPERM)),
                    "{err}"
                );
                fs.mknod(&fifo, Kind::Fifo, 0o600, 0).unwrap();
                let err = fs.chown(&rel(b"f"), Some(0), None).unwrap_err();
                assert!(matches!(&err, FsError::Io { .. }), "{err}");
                // trusted.* is neither visible nor managed: wanting it is skipped,
                // and the one there is not removed.
                let want = xa(&[("trusted.t", "1"), ("user.u", "2")]);
                fs.set_xattrs(&rel(b"f"), &want, &X).unwrap();
                assert_eq!(fs.xattrs(&rel(b"f")).unwrap(), xa(&[("user.u", "2")]));
            });
            assert_eq!(fs.lstat(&dev).unwrap(), None);
            let m = fs.lstat(&fifo).unwrap().unwrap();
            assert_eq!((m.kind, m.uid), (Kind::Fifo, 65534));
            assert_eq!(
                fs.xattrs(&rel(b"f")).unwrap(),
                xa(&[("trusted.keep", "k"), ("user.u", "2")])
            );
        }
    }

    #[test]
    fn data_extents_find_the_data_of_a_sparse_file() {
        const MIB: u64 = 1 << 20;
        let t = tempfile::tempdir().unwrap();
        let fs = FsRoot::open(t.path()).unwrap();
        let tmp = fs.create_temp(&rel(b"sparse")).unwrap();
        assert_eq!(data_extents(&tmp.file, 0).unwrap(), []);
        tmp.write_at(&[b'a'; 4096], 0).unwrap();
        tmp.write_at(&[b'b'; 4096], 10 * MIB).unwrap();
        tmp.set_len(20 * MIB).unwrap();
        tmp.commit(0o644, Some((1, 0)), true).unwrap();
        let m = fs.lstat(&rel(b"sparse")).unwrap().unwrap();
        assert_eq!(m.size, 20 * MIB);
        assert!(m.blocks * 512 < MIB, "{} blocks", m.blocks);
        let mut file = fs.open_read(&rel(b"sparse")).unwrap();
        let mut first = [0; 3];
        file.read_exact(&mut first).unwrap();
        let ext = data_extents(&file, m.size).unwrap();
        assert_eq!(ext.len(), 2, "{ext:?}");
        let covered = |at: u64| ext.iter().any(|&(o, l)| o <= at && at < o + l);
        for at in [0, 4095, 10 * MIB, 10 * MIB + 4095] {
            assert!(covered(at), "{at} in {ext:?}");
        }
        for at in [MIB, 5 * MIB, 10 * MIB - 1, 15 * MIB, 20 * MIB - 1] {
            assert!(!covered(at), "{at} in {ext:?}");
        }
        assert!(ext.windows(2).all(|w| w[0].0 + w[0].1 < w[1].0), "{ext:?}");
        // The position is restored for the next read.
        file.read_exact(&mut first).unwrap();
        assert_eq!(first, *b"aaa");
        // Never past `size`, even inside a data region.
        assert_eq!(data_extents(&file, 100).unwrap(), [(0, 100)]);
        let ext = data_extents(&file, 10 * MIB + 10).unwrap();
        assert_eq!(ext.last(), Some(&(10 * MIB, 10)));
        assert_eq!(data_extents(&file, 5 * MIB).unwrap().len(), 1);
        // All hole, and a size beyond the end.
        std::fs::File::create(t.path().join("hole"))
            .unwrap()
            .set_len(8 * MIB)
            .unwrap();
        let hole = fs.open_read(&rel(b"hole")).unwrap();
        assert_eq!(data_extents(&hole, 8 * MIB).unwrap(), []);
        assert_eq!(data_extents(&hole, 9 * MIB).unwrap(), []);
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
            tmp.commit(0o644, Some((1, 2)), true).unwrap();
            assert_eq!(fs.lstat(&file).unwrap().unwrap().size, 1);
            assert!(fs.open_read(&file).is_ok());
            let link = dir.join(OsStr::from_bytes(b"l\xff"));
            fs.symlink(b"na\xefve", &link).unwrap();
            assert_eq!(fs.read_link(&link).unwrap(), b"na\xefve");
            fs.symlink(b"\xfe/other", &link).unwrap(); // replaces atomically
            assert_eq!(fs.read_link(&link).unwrap(), b"\xfe/other");
            assert!(file.display().ends_with("caf\\#351/na\\#357ve"));
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
