//! The sending role ("giver"): walk the source, stream the file list, and answer
//! the receiver's pipelined file requests on its lanes, in order: a hash
//! verdict, a whole small file in one message, or a recipe of the receiver's own
//! chunks, new bytes and holes.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use proto::sync::{
    self as msg, Entry, EntryBatch, EntryKind, FileMeta, HardLink, Placed, Recipe, SenderErrors,
    Source, Stats, StatsError, Want, WantHow, MAX_PATH,
};
use proto::{Compression, Fragment};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::acl;
use super::chunker::{
    self, sig_hash, sig_limit, Chunking, DigestBuilder, Hash, SigHash, MAX_CHUNK,
};
use super::filter::{DirScope, ScopeError, Scopes};
use super::fsroot::{FsError, FsRoot, Kind, Meta, RelPath};
use super::proto_util::{decode, fragment};
use super::remove::Removals;
use super::{ids, Filter, Progress};
use crate::error::{Error, Result};
use crate::runtime::{Circuit, CircuitReceiver, Peer};
use rustix::fs::{AtFlags, FileType};

/// Flush a recipe fragment once it holds this much...
const RECIPE_FLUSH: usize = 256 << 10;
/// ...or once it covers this much of the file: a long run of copies is a few
/// bytes of recipe, and the receiver rebuilds while the rest is cut.
const RECIPE_FLUSH_COVERED: u64 = 32 << 20;
/// Flush a LIST batch at this many entries (sooner when the walker pauses).
const LIST_BATCH: usize = 512;
/// The walker hands entries over this many at a time (one wake-up each)...
const WALK_CHUNK: usize = 128;
/// ...or as soon as an entry comes once a chunk is this old (a slow walk still
/// streams; the walk's end sends what is left).
const WALK_CHUNK_AGE: std::time::Duration = std::time::Duration::from_millis(2);
/// Files up to this size asked for in full travel as one FILE message.
const WHOLE_MAX: u64 = 256 << 10;

/// What to send: a base inside a confined root, and how the receiver should place it.
#[derive(Debug)]
pub(crate) struct GiveSpec {
    pub fs: FsRoot,
    pub base: RelPath,
    pub source: Source,
    /// With `-L`, symlinks are followed wherever they lead (a local source,
    /// the user's own files, as rsync does); otherwise only while they stay
    /// beneath the root (a server's).
    pub follow_anywhere: bool,
    /// Only these paths beneath the base, each with the directories that
    /// lead to it ([`GiveSpec::select`]); sorted, normalized.
    pub only: Option<Vec<Vec<u8>>>,
    /// A source on this machine (not a server's): `/` filter rules see
    /// its absolute path ([`GiveSpec::transfer_root`]).
    pub local: bool,
    /// A path beneath the base the walk leaves out: where a local copy
    /// lands inside its own source (`jcp dir dir/sub`), so the copy is not
    /// copied into itself ([`super::local`]).
    pub avoid: Option<Vec<u8>>,
}

impl GiveSpec {
    /// A local source path as given on the command line (trailing slash, or a
    /// last component `.` or `..`, = contents, as in rsync).
    /// A symlink is followed as `follow` says.
    pub(crate) fn local(src: &Path, follow: Follow) -> Result<GiveSpec> {
        let contents = names_contents(src.as_os_str().as_bytes());
        let copy_dirlinks = follow.dirlinks;
        let copy_links = follow.links
            || follow.unsafe_links
                && unsafe_source(src.as_os_str().as_bytes(), || {
                    std::fs::read_link(src)
                        .ok()
                        .map(|t| t.into_os_string().into_vec())
                });
        let meta = if copy_links {
            std::fs::metadata(src).map_err(|e| no_referent(e, src))
        } else {
            std::fs::symlink_metadata(src)
        }
        .map_err(|e| Error::io(format!("cannot read {}", src.display()), e))?;
        let meta = match copy_dirlinks && meta.is_symlink() {
            true => match std::fs::metadata(src) {
                Ok(dir) if dir.is_dir() => dir,
                _ => meta,
            },
            false => meta,
        };
        if meta.is_dir() {
            let fs = FsRoot::open(src).map_err(fs_err)?;
            // Its name as given (a link to it, with -L or -k, names it as
            // in rsync); `.` and `..` name what they lead to.
            let name = src
                .file_name()
                .map(|n| n.as_bytes().to_vec())
                .or_else(|| {
                    let full = std::fs::canonicalize(src).ok()?;
                    full.file_name().map(|n| n.as_bytes().to_vec())
                })
                .unwrap_or_default();
            return Ok(GiveSpec {
                fs,
                base: FsRoot::check(b"").map_err(fs_err)?,
                source: Source {
                    kind: EntryKind::Dir,
                    contents: contents || name.is_empty(),
                    name,
                    listed: false,
                },
                follow_anywhere: true,
                only: None,
                avoid: None,
                local: true,
            });
        }
        let name = src
            .file_name()
            .ok_or_else(|| Error::Fs(format!("{}: not a file name", src.display())))?;
        let parent = match src.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let fs = FsRoot::open(&parent).map_err(fs_err)?;
        Ok(GiveSpec {
            base: FsRoot::check(name.as_bytes()).map_err(fs_err)?,
            fs,
            source: Source {
                kind: if meta.file_type().is_symlink() {
                    EntryKind::Symlink
                } else {
                    EntryKind::File
                },
                name: name.as_bytes().to_vec(),
                contents: false,
                listed: false,
            },
            follow_anywhere: true,
            only: None,
            avoid: None,
            local: true,
        })
    }

    /// Where the paths of the list lie, for `/` filter rules
    /// ([`super::abs_root`]): the directory the source is sent from (for
    /// anything but a directory's contents, the one holding it).
    fn transfer_root(&self) -> Vec<u8> {
        let mut dir = super::abs_root(self.fs.path(), self.base.as_bytes(), self.local);
        if !(self.source.kind == EntryKind::Dir && self.source.contents) {
            let end = dir.iter().rposition(|&b| b == b'/').unwrap_or(0);
            dir.truncate(end);
        }
        dir
    }

    /// A source named by a client, relative to a server's root. A symlink
    /// is followed as `follow` says, only while it stays beneath the root.
    pub(crate) fn in_root(fs: FsRoot, src: &str, follow: Follow) -> Result<GiveSpec> {
        let contents = names_contents(src.as_bytes());
        let base = FsRoot::check(src.trim_end_matches('/').as_bytes()).map_err(fs_err)?;
        let copy_dirlinks = follow.dirlinks;
        let copy_links = follow.links
            || follow.unsafe_links && unsafe_source(src.as_bytes(), || fs.read_link(&base).ok());
        let meta = if copy_links {
            fs.stat_follow_within(&base)
        } else {
            fs.lstat(&base)
        }
        .map_err(fs_err)?
        .ok_or_else(|| Error::Fs(format!("{src}: no such file or directory on the server")))?;
        let meta = match copy_dirlinks && meta.kind == Kind::Symlink {
            true => match fs.stat_follow_within(&base) {
                Ok(Some(dir)) if dir.kind == Kind::Dir => dir,
                _ => meta,
            },
            false => meta,
        };
        // A path naming a directory's contents (`dir/`, `dir/.`) names what
        // a symlink there leads to, as the kernel reads `dir/` (here only
        // while it stays beneath the root), and must name a directory.
        let meta = match contents && !base.is_root() {
            true => {
                let meta = match meta.kind {
                    Kind::Symlink => {
                        fs.stat_follow_within(&base)
                            .map_err(fs_err)?
                            .ok_or_else(|| {
                                Error::Fs(format!(
                                    "{src}: a symlink that leads nowhere on the server"
                                ))
                            })?
                    }
                    _ => meta,
                };
                if meta.kind != Kind::Dir {
                    return Err(Error::Fs(format!("{src}: not a directory")));
                }
                meta
            }
            false => meta,
        };
        let name = base
            .file_name()
            .map(|n| n.as_bytes().to_vec())
            .unwrap_or_default();
        let kind = match meta.kind {
            Kind::Dir => EntryKind::Dir,
            Kind::File => EntryKind::File,
            Kind::Symlink => EntryKind::Symlink,
            Kind::Fifo | Kind::CharDev | Kind::BlockDev | Kind::Socket => {
                return Err(Error::Fs(format!("{src}: not a file or directory")))
            }
        };
        Ok(GiveSpec {
            fs,
            source: Source {
                kind,
                contents: kind == EntryKind::Dir && (contents || base.is_root()),
                name,
                listed: false,
            },
            base,
            follow_anywhere: false,
            only: None,
            avoid: None,
            local: false,
        })
    }

    /// A source that does not exist, for `--delete-missing-args`: nothing
    /// is listed, and the receiver deletes what it has where the source
    /// would land. `fs` is never read. A path naming a directory's contents
    /// (a trailing slash, `.`) is refused: there is no one name to delete.
    pub(crate) fn missing(fs: FsRoot, src: &[u8], local: bool) -> Result<GiveSpec> {
        let shown = super::escape_name(src);
        let no_name = || Error::Fs(format!("{shown}: no such file or directory"));
        if names_contents(src) {
            return Err(no_name());
        }
        let name = src.rsplit(|&b| b == b'/').next().unwrap_or_default();
        let base = FsRoot::check(name).map_err(fs_err)?;
        let name = base.file_name().ok_or_else(no_name)?.as_bytes().to_vec();
        Ok(GiveSpec {
            fs,
            source: Source {
                kind: EntryKind::Missing,
                name,
                contents: false,
                listed: false,
            },
            base,
            follow_anywhere: false,
            only: None,
            avoid: None,
            local,
        })
    }

    /// Sends only `paths` beneath this directory (`-R`, `--files-from`),
    /// each with the directories that lead to it. Paths are taken as
    /// relative (leading slashes dropped, as rsync does); one that climbs
    /// out with `..` is refused.
    pub(crate) fn select(mut self, paths: &[Vec<u8>]) -> Result<GiveSpec> {
        if self.source.kind != EntryKind::Dir {
            return Err(Error::Fs(format!(
                "{}: not a directory (-R and --files-from paths are taken beneath one)",
                self.fs
                    .path()
                    .join(OsStr::from_bytes(self.base.as_bytes()))
                    .display()
            )));
        }
        let mut only = Vec::with_capacity(paths.len());
        for p in paths {
            let start = p.iter().position(|&b| b != b'/').unwrap_or(p.len());
            let rel = FsRoot::check(&p[start..]).map_err(|_| {
                Error::Usage(format!(
                    "{}: a listed path may not climb out with ..",
                    p.escape_ascii()
                ))
            })?;
            only.push(rel.as_bytes().to_vec());
        }
        only.sort_unstable();
        only.dedup();
        self.source.contents = true;
        self.source.listed = true;
        self.only = Some(only);
        Ok(self)
    }

    /// The metadata of what `full` leads to (`-L`): anywhere for a local
    /// source, only beneath the root for a server's.
    fn referent(&self, full: &RelPath) -> std::io::Result<Meta> {
        if self.follow_anywhere {
            let path = self.fs.path().join(OsStr::from_bytes(full.as_bytes()));
            return rustix::fs::stat(&path)
                .map(|st| Meta::from_stat(&st))
                .map_err(|e| no_referent(e.into(), &path));
        }
        match self.fs.stat_follow_within(full) {
            Ok(Some(m)) => Ok(m),
            // Found nothing where the link leads (or the link itself went).
            Ok(None) => Err(dangling()),
            Err(FsError::Escape { .. }) => Err(std::io::Error::other(
                "symlink leads outside the root (or is absolute): not followed",
            )),
            Err(FsError::Io { source, .. }) => Err(source),
        }
    }

    /// The extended attributes of what `full` leads to (`-L -X`), as
    /// [`GiveSpec::referent`].
    fn referent_xattrs(
        &self,
        full: &RelPath,
    ) -> std::result::Result<super::fsroot::Xattrs, FsError> {
        if !self.follow_anywhere {
            return self.fs.xattrs_follow_within(full);
        }
        let path = self.fs.path().join(OsStr::from_bytes(full.as_bytes()));
        super::fsroot::path_xattrs(&path).map_err(|e| FsError::io(full.display(), e))
    }

    /// The target of symlink `full`. With `-k` its path may lead through
    /// links to directories: from a local source wherever they lead; in a
    /// server's root as [`FsRoot`] resolves every path (links beneath the
    /// root only, none with the fallback resolver). The link itself is not
    /// followed.
    fn read_link(&self, full: &RelPath, through_dirlinks: bool) -> std::io::Result<Vec<u8>> {
        if through_dirlinks && self.follow_anywhere {
            let path = self.fs.path().join(OsStr::from_bytes(full.as_bytes()));
            return std::fs::read_link(path).map(|t| t.into_os_string().into_vec());
        }
        self.fs
            .read_link(full)
            .map_err(|e| std::io::Error::other(e.to_string()))
    }

    /// Opens the regular file `full` leads to (`-L`), as [`GiveSpec::referent`].
    fn open_referent(&self, full: &RelPath) -> std::result::Result<(std::fs::File, Meta), FsError> {
        if !self.follow_anywhere {
            return self.fs.open_read_follow_within(full);
        }
        let path = self.fs.path().join(OsStr::from_bytes(full.as_bytes()));
        let fd = super::fsroot::without_atime(self.fs.read_flags(), super::fsroot::perm, |f| {
            rustix::fs::open(&path, f, rustix::fs::Mode::empty())
        })
        .map_err(|e| FsError::io(full.display(), e))?;
        super::fsroot::regular_file(fd, &full.display())
    }

    /// The confined path of an entry path (relative to the base) from the wire.
    pub(crate) fn entry_path(&self, path: &[u8]) -> Result<RelPath> {
        let mut full = self.base.as_bytes().to_vec();
        if !path.is_empty() {
            if !full.is_empty() {
                full.push(b'/');
            }
            full.extend_from_slice(path);
        }
        FsRoot::check(&full).map_err(fs_err)
    }
}

/// A symlink that leads nowhere (`-L`), said as rsync says it.
fn dangling() -> std::io::Error {
    std::io::Error::other("symlink has no referent")
}

/// `e`, from following `link`, as [`dangling`] if `link` exists (so it is a
/// link to nothing); other errors as they are.
fn no_referent(e: std::io::Error, link: &Path) -> std::io::Error {
    if e.kind() == std::io::ErrorKind::NotFound && std::fs::symlink_metadata(link).is_ok() {
        dangling()
    } else {
        e
    }
}

/// Whether a source path names a directory's contents rather than the
/// directory itself: rsync's rule, a trailing slash (`src/`) or a last
/// component `.` or `..` (`.`, `src/.`).
pub fn names_contents(path: &[u8]) -> bool {
    let last = path.rsplit(|&b| b == b'/').next().unwrap_or_default();
    path.ends_with(b"/") || last == b"." || last == b".."
}

pub(crate) fn fs_err(e: super::fsroot::FsError) -> Error {
    Error::Fs(e.to_string())
}

/// How the sender behaves.
#[derive(Clone)]
pub(crate) struct GiveOptions {
    /// Compression of new data in deltas (and of whole files with `compress_whole`).
    pub compression: Compression,
    /// Also compress files sent whole (`--compress ALG` rather than the default).
    pub compress_whole: bool,
    /// The zstd level of what this side compresses (`--compress-level`).
    pub compress_level: i32,
    /// Files sent uncompressed whatever `compression` says (`--skip-compress`).
    pub skip_compress: Arc<super::SkipCompress>,
    /// Which entries to leave out (the walk does not descend into excluded dirs).
    pub filter: Arc<Filter>,
    /// Which extended attributes to send: `-X`'s (all but the ACLs; the
    /// receiver keeps those it may), `-A`'s (the ACLs).
    pub kept: super::fsroot::Kept,
    /// Mark names of multiply-linked inodes (`-H`, on by default).
    pub hard_links: bool,
    /// Send owner ids without names (`--numeric-ids`).
    pub numeric_ids: bool,
    /// Do not cross filesystem boundaries (`-x`): 1 lists a directory on
    /// another filesystem without its contents, 2 leaves it out (`-xx`).
    pub one_file_system: u8,
    /// Send what symlinks lead to instead of the links (`-L`); see
    /// [`GiveSpec::follow_anywhere`] for how far.
    pub copy_links: bool,
    /// Send a symlink to a directory as the directory (`-k`), as far as
    /// `-L` would follow it; other symlinks stay links.
    pub copy_dirlinks: bool,
    /// Send a symlink that is unsafe (absolute, or climbing above the
    /// transfer's top from where it sits) as what it leads to, as far as
    /// `-L` would follow it (`--copy-unsafe-links`); other symlinks stay
    /// links.
    pub copy_unsafe_links: bool,
    /// Read files without moving their access times (`--open-noatime`).
    pub open_noatime: bool,
    /// List access times, of what is not a directory (`-U`).
    pub atimes: bool,
    /// Do not recurse (`-d` without `-r`): the directories met are listed
    /// without their contents (unlisted: the receiver deletes nothing in
    /// them), and a source directory named without a trailing slash alone.
    pub dirs_only: bool,
    /// A listed path (`--files-from`) the source lacks, or one on the way
    /// to it, is passed over in silence (`--ignore-missing-args`).
    pub ignore_missing: bool,
    /// ... and listed as missing, for the receiver to delete what it has
    /// there (`--delete-missing-args`, which implies `ignore_missing`).
    pub delete_missing: bool,
    /// Permission changes applied to the list (`--chmod`).
    pub chmod: Arc<super::Chmod>,
    /// Paces file data (`--bwlimit`).
    pub throttle: Option<Arc<super::throttle::Throttle>>,
    /// Remove what the receiver says it has in place
    /// (`--remove-source-files`).
    pub remove_source: bool,
    /// Send what a selected directory holds (`-R`; `--files-from`
    /// with `-r`).
    pub recurse_listed: bool,
    /// The directories on the way to a selected path go without their
    /// attributes (`--no-implied-dirs`).
    pub no_implied_dirs: bool,
    pub progress: Arc<dyn Progress>,
}

/// Which symlinks a source named by the user is sent as what it leads to
/// ([`GiveSpec::local`], [`GiveSpec::in_root`]): any (`-L`), one leading to
/// a directory (`-k`), an unsafe one (`--copy-unsafe-links`,
/// [`unsafe_source`]).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Follow {
    pub links: bool,
    pub dirlinks: bool,
    pub unsafe_links: bool,
}

impl Follow {
    /// The sync options' choice.
    pub(crate) fn of(o: &super::SyncOptions) -> Follow {
        Follow {
            links: o.copy_links,
            dirlinks: o.copy_dirlinks,
            unsafe_links: o.copy_unsafe_links,
        }
    }
}

impl GiveOptions {
    /// Whether some symlinks are sent as what they lead to (`-L`, `-k`,
    /// `--copy-unsafe-links`), so paths are opened through links.
    fn follows_links(&self) -> bool {
        self.copy_links || self.copy_dirlinks || self.copy_unsafe_links
    }
}

/// What the lanes share: the tree, and the files listed so far by entry number.
struct Giver {
    spec: GiveSpec,
    opts: GiveOptions,
    /// Entry number → path (relative to the base) and listed metadata of each
    /// regular file listed.
    files: RwLock<Vec<Option<Listed>>>,
    /// Whether files sent whole carry a digest (see [`whole_digest`]).
    whole_digest: bool,
    /// Shown before each path ([`super::shown_prefix`]).
    prefix: Vec<u8>,
    /// With `--remove-source-files`: what was listed, to remove.
    removals: Option<Removals>,
    /// The receiver's name, for errors that blame it.
    peer: String,
}

impl Giver {
    /// How the data of the listed file at `path` is compressed: sent whole
    /// (no basis on the receiver) or as a delta's new data.
    fn compression_of(&self, path: &[u8], whole: bool) -> Compression {
        // A single file's own path is empty: its name is the source's.
        let name = if path.is_empty() {
            &self.spec.source.name[..]
        } else {
            path
        };
        let o = &self.opts;
        if (whole && !o.compress_whole) || o.skip_compress.skips(name) {
            Compression::NONE
        } else {
            o.compression
        }
    }

    /// An entry's path as the user sees it ([`super::shown_path`]).
    fn shown<'a>(&self, path: &'a [u8]) -> std::borrow::Cow<'a, str> {
        super::shown_path(&self.prefix, path)
    }

    /// Waits for the turn of `n` bytes of file data under `--bwlimit`.
    async fn pace(&self, n: usize) {
        if let Some(t) = &self.opts.throttle {
            t.pace(n).await;
        }
    }
}

/// Whether files sent whole (no basis on the receiver) need a digest of their
/// content: only over plaintext. TLS and QUIC authenticate every record (an
/// altered, lost or reordered byte fails the connection) and an in-process pair
/// never leaves memory, so hashing every new byte on both sides would buy
/// nothing there. Anything rebuilt from the receiver's own chunks (deltas,
/// resumed partial files) is always checked against the sender's digest.
pub(crate) fn whole_digest(link: &crate::runtime::Link) -> bool {
    !link.sealed()
}

/// A regular file's path (relative to the base) and metadata as listed.
type Listed = (Vec<u8>, FileMeta);

impl Giver {
    /// The listed file with entry number `index`, or a protocol violation.
    fn file(&self, index: u64) -> Result<Vec<u8>> {
        self.listed(index).map(|(path, _)| path)
    }

    /// [`Giver::file`] with the metadata it was listed with.
    fn listed(&self, index: u64) -> Result<Listed> {
        let files = self.files.read().expect("poisoned");
        usize::try_from(index)
            .ok()
            .and_then(|i| files.get(i))
            .and_then(|p| p.clone())
            .ok_or_else(|| Error::Violation {
                peer: self.peer.clone(),
                what: format!("asked for entry {index}, which is not a listed file"),
            })
    }
}

/// Runs the sender role until the receiver's report arrives.
pub(crate) async fn give(peer: Peer, spec: GiveSpec, mut opts: GiveOptions) -> Result<Stats> {
    let progress = opts.progress.clone();
    opts.filter = super::rooted_filter(&opts.filter, &spec.source, super::Side::Sender);
    if opts.filter.has_abs_rules() {
        opts.filter = Arc::new(opts.filter.with_abs_root(&spec.transfer_root()));
    }
    if opts.open_noatime {
        spec.fs.set_open_noatime();
    }
    let prefix = super::shown_prefix(&spec.source);
    let removals = opts.remove_source.then(Removals::default);
    let giver = Arc::new(Giver {
        spec,
        opts,
        files: RwLock::new(Vec::new()),
        whole_digest: whole_digest(peer.link()),
        prefix,
        removals,
        peer: peer.link().peer_name().to_string(),
    });
    let control = peer.accept().await?.ok_or_else(|| Error::Violation {
        peer: peer.link().peer_name().into(),
        what: "the receiver ended before opening its control circuit".into(),
    })?;
    let (mut control, control_rx) = control.split();
    control.set_level(giver.opts.compress_level);
    control
        .send(fragment(msg::SOURCE, &giver.spec.source))
        .await?;

    // Answer the lanes while the list is still being walked and sent.
    let server = {
        let peer = peer.clone();
        let giver = giver.clone();
        tokio::spawn(async move {
            let mut lanes = tokio::task::JoinSet::new();
            while let Ok(Some(c)) = peer.accept().await {
                lanes.spawn(serve_lane(c, giver.clone()));
            }
            while lanes.join_next().await.is_some() {}
        })
    };
    // The receiver's itemized changes and its report come back on the control circuit.
    let reports = tokio::spawn(read_reports(
        control_rx,
        giver.clone(),
        peer.link().peer_name().to_string(),
    ));

    let (tx, mut rx) = mpsc::channel::<Vec<WalkItem>>(16);
    let walker = {
        let giver = giver.clone();
        tokio::task::spawn_blocking(move || walk(&giver.spec, &giver.opts, &tx))
    };
    let mut names = Names::default();
    // The entry number of the first name listed of each multiply-linked inode.
    let mut inodes: HashMap<(u64, u64), u64> = HashMap::new();
    let mut batch = Vec::with_capacity(LIST_BATCH);
    let mut count = 0u64;
    loop {
        // A LIST goes out when it is full or when the walker has nothing more yet.
        let chunk = match rx.try_recv() {
            Ok(chunk) => Some(chunk),
            Err(mpsc::error::TryRecvError::Empty) => {
                send_batch(&mut control, &mut batch).await?;
                rx.recv().await
            }
            Err(mpsc::error::TryRecvError::Disconnected) => None,
        };
        let Some(chunk) = chunk else { break };
        for item in chunk {
            // Entries are numbered here, in the order the receiver gets
            // them (`count`): files, removals and hard links refer to them so.
            let e = match item {
                WalkItem::Entry(e) => e,
                WalkItem::Linked(mut e, inode) => {
                    e.link = match inodes.entry(inode) {
                        std::collections::hash_map::Entry::Occupied(first) => {
                            HardLink::Follower(*first.get())
                        }
                        std::collections::hash_map::Entry::Vacant(v) => {
                            v.insert(count);
                            HardLink::Leader
                        }
                    };
                    e
                }
                WalkItem::Missing(path) => Entry {
                    path,
                    kind: EntryKind::Missing,
                    ..Entry::default()
                },
                WalkItem::Error(path, message) => {
                    send_batch(&mut control, &mut batch).await?;
                    let f = Fragment::new(msg::WALK_ERROR)
                        .with_payload(path)
                        .with_error(message);
                    control.send(f).await?;
                    continue;
                }
            };
            if e.kind != EntryKind::Missing {
                if !giver.opts.numeric_ids {
                    if let Some(new) = names.learn(&e) {
                        send_batch(&mut control, &mut batch).await?;
                        control
                            .send_with(fragment(msg::IDS, &new), Compression::ZSTD)
                            .await?;
                    }
                }
                progress.found(&giver.shown(&e.path), e.size);
            }
            if let Some(r) = &giver.removals {
                r.list(&e);
            }
            giver
                .files
                .write()
                .expect("poisoned")
                .push((e.kind == EntryKind::File).then(|| (e.path.clone(), e.file_meta())));
            batch.push(e);
            count += 1;
            if batch.len() >= LIST_BATCH {
                send_batch(&mut control, &mut batch).await?;
            }
        }
    }
    send_batch(&mut control, &mut batch).await?;
    walker
        .await
        .map_err(|e| Error::io("file walker", std::io::Error::other(e)))?;
    control
        .send(Fragment::new(msg::LIST_END).with_part(count))
        .await?;
    progress.walk_done();

    let (mut stats, unremoved) = reports
        .await
        .map_err(|e| Error::io("report reader", std::io::Error::other(e)))??;
    if !unremoved.is_empty() {
        // The receiver (the user's side in a pull) reports them too.
        let f = fragment(msg::SENDER_ERRORS, &SenderErrors(unremoved.clone()));
        control.send_with(f, Compression::ZSTD).await?;
        stats.errors.extend(unremoved);
    }
    control.finish().await?;
    server.abort();
    Ok(stats)
}

/// Reads the receiver's side of the control circuit: ITEMS lines go to the
/// progress hooks, PLACED entries are removed (`--remove-source-files`), and
/// REPORT ends the run (after the receiver's FIN). Returns the report and
/// the source files not removed.
async fn read_reports(
    mut rx: CircuitReceiver,
    giver: Arc<Giver>,
    peer: String,
) -> Result<(Stats, Vec<StatsError>)> {
    let mut stats = None;
    let mut unremoved = Vec::new();
    while let Some(f) = rx.recv().await? {
        match f.op {
            msg::ITEMS => {
                for line in String::from_utf8_lossy(&f.payload).lines() {
                    giver.opts.progress.itemize(&super::escape_controls(line));
                }
            }
            msg::MADE => {
                let made: msg::Made = decode(&f.payload, &peer)?;
                giver.opts.progress.made_destination(made.dirs, made.itself);
            }
            msg::LOG_ITEMS => {
                for line in String::from_utf8_lossy(&f.payload).lines() {
                    giver.opts.progress.log_item(&super::escape_controls(line));
                }
            }
            msg::PLACED if giver.removals.is_some() => {
                let placed: Placed = decode(&f.payload, &peer)?;
                let (giver, peer) = (giver.clone(), peer.clone());
                let failed = tokio::task::spawn_blocking(move || {
                    let shown = |p: &[u8]| giver.shown(p).into_owned();
                    match &giver.removals {
                        Some(r) => r.remove(&giver.spec, &placed.0, shown, &peer),
                        None => Ok(Vec::new()),
                    }
                })
                .await
                .map_err(|e| Error::io("source file remover", std::io::Error::other(e)))??;
                unremoved.extend(failed);
            }
            msg::REPORT if stats.is_none() => stats = Some(decode::<Stats>(&f.payload, &peer)?),
            other => {
                return Err(Error::Violation {
                    peer,
                    what: format!("unexpected {other} on the control circuit"),
                })
            }
        }
    }
    let stats = stats.ok_or_else(|| Error::Violation {
        peer,
        what: "the control circuit ended without a report".into(),
    })?;
    Ok((stats, unremoved))
}

async fn send_batch(
    control: &mut crate::runtime::CircuitSender,
    batch: &mut Vec<Entry>,
) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let b = EntryBatch(std::mem::take(batch));
    control
        .send_with(fragment(msg::LIST, &b), Compression::ZSTD)
        .await
}

enum WalkItem {
    Entry(Entry),
    /// A file whose inode has other names (`-H`): the list loop makes it
    /// the leader of the inode's names, or a follower of the first.
    Linked(Entry, (u64, u64)),
    Error(Vec<u8>, String),
    /// A listed path the source lacks, for the receiver to delete
    /// (`--delete-missing-args`).
    Missing(Vec<u8>),
}

/// Owner and group ids whose names were sent already.
#[derive(Default)]
struct Names {
    users: std::collections::HashSet<u32>,
    groups: std::collections::HashSet<u32>,
}

impl Names {
    /// The names of ids `e` uses (as owner and group, and in its ACLs) that
    /// were not sent yet (None if there are none).
    fn learn(&mut self, e: &Entry) -> Option<msg::IdNames> {
        let mut out = msg::IdNames::default();
        self.user(e.uid, &mut out);
        self.group(e.gid, &mut out);
        for (_, value) in e.xattrs.iter().filter(|(n, _)| acl::is_acl(n)) {
            let (users, groups) = acl::ids(value);
            users.into_iter().for_each(|u| self.user(u, &mut out));
            groups.into_iter().for_each(|g| self.group(g, &mut out));
        }
        (!out.users.is_empty() || !out.groups.is_empty()).then_some(out)
    }

    /// Adds the name of user `uid` to `out` unless sent already.
    fn user(&mut self, uid: u32, out: &mut msg::IdNames) {
        if self.users.insert(uid) {
            if let Some(n) = ids::user_name(uid) {
                out.users.push((uid, n));
            }
        }
    }

    /// Adds the name of group `gid` to `out` unless sent already.
    fn group(&mut self, gid: u32, out: &mut msg::IdNames) {
        if self.groups.insert(gid) {
            if let Some(n) = ids::group_name(gid) {
                out.groups.push((gid, n));
            }
        }
    }
}

fn mtime_of(m: &std::fs::Metadata) -> (i64, u32) {
    (m.mtime(), m.mtime_nsec().clamp(0, 999_999_999) as u32)
}

/// Walks the source (never following symlinks) and streams entries to the
/// list loop, which numbers them as the receiver will.
fn walk(spec: &GiveSpec, opts: &GiveOptions, tx: &mpsc::Sender<Vec<WalkItem>>) {
    let mut out = Handoff::new(tx);
    walk_into(spec, opts, &mut out);
    out.flush();
}

/// Hands walked items to the list loop [`WALK_CHUNK`] at a time, or after
/// [`WALK_CHUNK_AGE`], so the two threads do not wake each other per entry.
struct Handoff<'a> {
    tx: &'a mpsc::Sender<Vec<WalkItem>>,
    chunk: Vec<WalkItem>,
    started: std::time::Instant,
}

impl<'a> Handoff<'a> {
    fn new(tx: &'a mpsc::Sender<Vec<WalkItem>>) -> Self {
        Handoff {
            tx,
            chunk: Vec::with_capacity(WALK_CHUNK),
            started: std::time::Instant::now(),
        }
    }

    /// Adds one item; false once the list loop is gone (the walk should stop).
    fn push(&mut self, item: WalkItem) -> bool {
        if self.chunk.is_empty() {
            self.started = std::time::Instant::now();
        }
        self.chunk.push(item);
        if self.chunk.len() >= WALK_CHUNK || self.started.elapsed() >= WALK_CHUNK_AGE {
            return self.flush();
        }
        true
    }

    /// Sends what is held; false once the list loop is gone.
    fn flush(&mut self) -> bool {
        if self.chunk.is_empty() {
            return true;
        }
        let chunk = std::mem::replace(&mut self.chunk, Vec::with_capacity(WALK_CHUNK));
        self.tx.blocking_send(chunk).is_ok()
    }
}

/// The walk itself, item by item into `out`.
fn walk_into(spec: &GiveSpec, opts: &GiveOptions, out: &mut Handoff<'_>) {
    let mut send = |item| out.push(item);
    // (A missing source, `--delete-missing-args`: the receiver deletes what
    // it has there, and nothing is listed.)
    if spec.source.kind == EntryKind::Missing {
        return;
    }
    if let Some(paths) = &spec.only {
        return walk_selected(spec, opts, paths, opts.recurse_listed, &mut send);
    }
    if spec.source.kind != EntryKind::Dir {
        // (--copy-unsafe-links: the spec took an unsafe link for a file.)
        let unsafe_link = opts.copy_unsafe_links && spec.source.kind == EntryKind::File;
        let meta = if opts.copy_links || unsafe_link {
            spec.referent(&spec.base)
        } else {
            let path = spec.fs.path().join(OsStr::from_bytes(spec.base.as_bytes()));
            rustix::fs::lstat(&path)
                .map(|st| Meta::from_stat(&st))
                .map_err(Into::into)
        };
        let item = match meta {
            Ok(m) => entry_for(spec, opts, &spec.base, Vec::new(), &m),
            Err(e) => Some(WalkItem::Error(Vec::new(), e.to_string())),
        };
        if let Some(item) = item {
            send(item);
        }
        return;
    }
    // The top, as a symlink to it leads (beneath the root for a server).
    let top = spec
        .fs
        .open_dir(&spec.base)
        .map_err(|e| Error::Fs(format!("cannot read {e}")));
    let top = top.and_then(|fd| {
        let st = rustix::fs::fstat(&fd)
            .map_err(|e| Error::io(format!("cannot stat {}", spec.base.display()), e.into()))?;
        Ok((fd, Meta::from_stat(&st)))
    });
    let top = top.and_then(|(fd, m)| {
        let item = entry_for(spec, opts, &spec.base, Vec::new(), &m);
        let level = Level::read(fd, Vec::new(), &m)
            .and_then(|l| l.with_rules(&opts.filter, &DirScope::default()))
            .map_err(|e| Error::io(format!("cannot read {}", spec.base.display()), e));
        Ok((item, level?, m.dev))
    });
    let (item, top, top_dev) = match top {
        Ok(top) => top,
        Err(e) => {
            send(WalkItem::Error(Vec::new(), e.to_string()));
            return;
        }
    };
    // -d with a directory named without a trailing slash: itself alone.
    let alone = opts.dirs_only && !spec.source.contents;
    if let Some(item) = item {
        let item = match item {
            WalkItem::Entry(mut e) if alone => {
                e.unlisted = true;
                WalkItem::Entry(e)
            }
            other => other,
        };
        if !send(item) || alone {
            return;
        }
    }
    descend(spec, opts, top, top_dev, &mut send);
}

/// Walks what the directory `top` holds, depth first, in byte order, into
/// `send`; false once `send` is (the list loop is gone).
fn descend(
    spec: &GiveSpec,
    opts: &GiveOptions,
    top: Level,
    top_dev: u64,
    send: &mut impl FnMut(WalkItem) -> bool,
) -> bool {
    let mut stack = vec![top];
    loop {
        let Some(level) = stack.last_mut() else {
            return true;
        };
        let Some((name, ftype)) = level.names.next() else {
            stack.pop();
            continue;
        };
        let Some((item, into)) = visit(spec, opts, &stack, &name, ftype, top_dev) else {
            continue;
        };
        // A directory is read (and its rule files) before it is listed: one
        // that cannot be is listed unlisted, so that the receiver deletes
        // nothing in it, even with --ignore-errors.
        let child = into.map(|into| {
            let parent = stack.last().expect("in a directory");
            open_child(spec, parent, &name, &into.full, into.through_link)
                .and_then(|fd| Level::read(fd, into.rel.clone(), &into.meta))
                .and_then(|l| l.with_rules(&opts.filter, &parent.scope))
                .map_err(|e| (into.rel, e.to_string()))
        });
        if !send(unlisted_if_failed(item, child.as_ref())) {
            return false;
        }
        let sent = match child {
            None => true,
            Some(Ok(level)) => {
                stack.push(level);
                true
            }
            Some(Err((rel, why))) => send(WalkItem::Error(rel, why)),
        };
        if !sent {
            return false;
        }
    }
}

/// An entry whose path is longer than a file list carries (rsync's
/// "filename overflows max-path len"): named in an error, by the start of
/// its path, and not sent (nor, for a directory, what it holds), where
/// listing it would fail the whole run.
fn too_long(mut rel: Vec<u8>) -> WalkItem {
    let why = format!(
        "its path is {} bytes long, more than the {MAX_PATH} a file list carries: not sent",
        rel.len()
    );
    rel.truncate(SHOWN_OF_LONG_PATH);
    rel.extend_from_slice(b"...");
    WalkItem::Error(rel, why)
}

/// How much of a path [`too_long`] shows.
const SHOWN_OF_LONG_PATH: usize = 200;

/// A directory's entry, marked unlisted when what it holds could not be
/// read (`child`): the receiver then makes it but deletes nothing in it.
fn unlisted_if_failed<T, E>(item: WalkItem, child: Option<&std::result::Result<T, E>>) -> WalkItem {
    match (item, child) {
        (WalkItem::Entry(mut e), Some(Err(_))) => {
            e.unlisted = true;
            WalkItem::Entry(e)
        }
        (item, _) => item,
    }
}

/// The walk of a selection ([`GiveSpec::select`]): each listed path after the
/// directories that lead to it (each sent once, marked unlisted: the
/// receiver deletes nothing in them), and with `recurse` what a listed
/// directory holds (otherwise it too is unlisted). Paths a directory sent
/// whole already holds are not sent again.
fn walk_selected(
    spec: &GiveSpec,
    opts: &GiveOptions,
    paths: &[Vec<u8>],
    recurse: bool,
    send: &mut impl FnMut(WalkItem) -> bool,
) {
    let mut scopes = Scopes::default();
    let mut read = |dir: &[u8], name: &str| {
        let full = spec.entry_path(dir).map_err(|e| e.to_string())?;
        spec.fs
            .read_rule_file(&full, name)
            .map_err(|e| e.to_string())
    };
    let mut sent_dirs: std::collections::HashSet<Vec<u8>> = Default::default();
    let mut whole: std::collections::HashSet<Vec<u8>> = Default::default();
    let top_dev = match spec.fs.lstat(&spec.base) {
        Ok(Some(m)) => m.dev,
        other => {
            let why = other.err().map_or("not found".into(), |e| e.to_string());
            send(WalkItem::Error(Vec::new(), why));
            return;
        }
    };
    'paths: for path in paths {
        if path.len() > MAX_PATH {
            if !send(too_long(path.clone())) {
                return;
            }
            continue;
        }
        let prefixes: Vec<&[u8]> = path
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'/')
            .map(|(i, _)| &path[..i])
            .collect();
        // (The top sent whole, `.` listed with -r, holds every path.)
        let covered = |p: &[u8]| whole.contains(p) || whole.contains(&b""[..]);
        if prefixes.iter().any(|p| covered(p)) || covered(path) {
            continue;
        }
        for &dir in &prefixes {
            if sent_dirs.contains(dir) {
                continue;
            }
            match selected_entry(spec, opts, dir) {
                Err(_) if missing(spec, opts, dir) => {
                    // (Missing too: what the receiver has there goes.)
                    if opts.delete_missing && !send(WalkItem::Missing(path.clone())) {
                        return;
                    }
                    continue 'paths;
                }
                Ok((WalkItem::Entry(mut e), m)) if m.kind == Kind::Dir => {
                    e.unlisted = true;
                    e.implied = opts.no_implied_dirs;
                    sent_dirs.insert(dir.to_vec());
                    if !send(WalkItem::Entry(e)) {
                        return;
                    }
                }
                Ok(_) => {
                    let why = format!("{} is not a directory", super::escape_name(dir));
                    if !send(WalkItem::Error(path.clone(), why)) {
                        return;
                    }
                    continue 'paths;
                }
                Err(why) => {
                    if !send(WalkItem::Error(path.clone(), why)) {
                        return;
                    }
                    continue 'paths;
                }
            }
        }
        // The rules of the directory holding `path` (none above the top).
        let parent = prefixes.last().copied().unwrap_or_default();
        let scope = match path.is_empty() {
            true => Ok(DirScope::default()),
            false => scopes.at(&opts.filter, parent, &mut read),
        };
        let scope = match scope {
            Ok(scope) => scope,
            // Said once, for the directory whose rule file failed.
            Err(ScopeError::Failed { dir, error }) => {
                if !send(WalkItem::Error(dir, format!("not walked: {error}"))) {
                    return;
                }
                continue;
            }
            Err(ScopeError::Below) => continue,
        };
        let excluded = |is_dir| {
            opts.filter.has_path_rules() && opts.filter.is_excluded_in(&scope, path, is_dir)
        };
        let (item, m) = match selected_entry(spec, opts, path) {
            Ok(found) => found,
            Err(_) if missing(spec, opts, path) => {
                if opts.delete_missing && !send(WalkItem::Missing(path.clone())) {
                    return;
                }
                continue;
            }
            Err(why) => {
                if !send(WalkItem::Error(path.clone(), why)) {
                    return;
                }
                continue;
            }
        };
        let is_dir = m.kind == Kind::Dir;
        if !path.is_empty() && excluded(is_dir) {
            continue;
        }
        let item = match item {
            WalkItem::Entry(mut e) if is_dir => {
                if sent_dirs.contains(path) && !recurse {
                    continue;
                }
                e.unlisted = !recurse;
                WalkItem::Entry(e)
            }
            other => other,
        };
        // (Read before it is listed, as in `descend`.)
        let level = (is_dir && recurse).then(|| {
            spec.entry_path(path)
                .and_then(|full| spec.fs.open_dir(&full).map_err(fs_err))
                .and_then(|fd| {
                    Level::read(fd, path.clone(), &m)
                        .and_then(|l| l.with_rules(&opts.filter, &scope))
                        .map_err(|e| Error::io(super::escape_name(path), e))
                })
        });
        if !send(unlisted_if_failed(item, level.as_ref())) {
            return;
        }
        let Some(level) = level else { continue };
        sent_dirs.insert(path.clone());
        whole.insert(path.clone());
        match level {
            Ok(level) => {
                if !descend(spec, opts, level, top_dev, send) {
                    return;
                }
            }
            Err(e) => {
                if !send(WalkItem::Error(path.clone(), e.to_string())) {
                    return;
                }
            }
        }
    }
}

/// With `--ignore-missing-args`, whether the listed `path` (relative to the
/// base) is not there at all.
fn missing(spec: &GiveSpec, opts: &GiveOptions, path: &[u8]) -> bool {
    opts.ignore_missing
        && spec
            .entry_path(path)
            .is_ok_and(|full| matches!(spec.fs.lstat(&full), Ok(None)))
}

/// The entry for `path` (relative to the base) of a selection, and what it
/// is; or why there is none.
fn selected_entry(
    spec: &GiveSpec,
    opts: &GiveOptions,
    path: &[u8],
) -> std::result::Result<(WalkItem, Meta), String> {
    let full = spec.entry_path(path).map_err(|e| e.to_string())?;
    let unsafe_link = || {
        opts.copy_unsafe_links
            && spec
                .read_link(&full, true)
                .is_ok_and(|t| unsafe_here(spec, path, &t))
    };
    let meta = if opts.copy_links || unsafe_link() {
        // (Not there at all: as below, not a link without a referent.)
        if matches!(spec.fs.lstat(&full), Ok(None)) {
            return Err("no such file or directory".into());
        }
        spec.referent(&full).map_err(|e| e.to_string())?
    } else {
        match spec.fs.lstat(&full) {
            Ok(Some(m)) => dirlink(spec, opts, &full, m).0,
            // (Not there to begin with: an error, as rsync's failed
            // link_stat, not a file that vanished mid-run.)
            Ok(None) => return Err("no such file or directory".into()),
            Err(e) => return Err(e.to_string()),
        }
    };
    // (A socket lists as nothing, and is not sent.)
    let item = entry_for(spec, opts, &full, path.to_vec(), &meta)
        .ok_or_else(|| "a socket: not sent".to_string())?;
    Ok((item, meta))
}

/// `--copy-unsafe-links`: whether a symlink at `path` (beneath the base)
/// leading to `target` is unsafe where it sits in the transfer (absolute,
/// or climbing above its top), as rsync decides, so it is followed.
fn unsafe_here(spec: &GiveSpec, path: &[u8], target: &[u8]) -> bool {
    let shown = super::shown_bytes(&super::shown_prefix(&spec.source), path);
    super::unsafe_symlink(&shown, target)
}

/// [`unsafe_here`] for a source given by name (`src`, as on the command
/// line): at the transfer's top, where only its last component counts.
/// `target` reads the link (`None`: not a link).
fn unsafe_source(src: &[u8], target: impl FnOnce() -> Option<Vec<u8>>) -> bool {
    if names_contents(src) {
        return false;
    }
    let name = src
        .rsplit(|&b| b == b'/')
        .find(|c| !c.is_empty())
        .unwrap_or(src);
    target().is_some_and(|t| super::unsafe_symlink(name, &t))
}

/// With `-k`, a symlink that leads to a directory (as far as `-L` would
/// follow it) as that directory, and true; anything else as it is. A link
/// that cannot be followed stays a link.
fn dirlink(spec: &GiveSpec, opts: &GiveOptions, full: &RelPath, m: Meta) -> (Meta, bool) {
    if opts.copy_dirlinks && m.kind == Kind::Symlink {
        match spec.referent(full) {
            Ok(dir) if dir.kind == Kind::Dir => return (dir, true),
            _ => {}
        }
    }
    (m, false)
}

/// A directory the walk goes into after listing it.
struct Descent {
    rel: Vec<u8>,
    full: RelPath,
    meta: Meta,
    /// Reached through a symlink (`-L`).
    through_link: bool,
}

/// What the walk makes of `name` in the directory on top of `stack`: nothing
/// (excluded, a socket, a mount point with `-xx`), or the item to send, and
/// whether to go into it. `top_dev` is the walk's filesystem (`-x`).
fn visit(
    spec: &GiveSpec,
    opts: &GiveOptions,
    stack: &[Level],
    name: &[u8],
    ftype: FileType,
    top_dev: u64,
) -> Option<(WalkItem, Option<Descent>)> {
    let parent = stack.last().expect("in a directory");
    let mut rel = parent.rel.clone();
    if !rel.is_empty() {
        rel.push(b'/');
    }
    rel.extend_from_slice(name);
    if spec.avoid.as_deref() == Some(&rel[..]) {
        return None;
    }
    if rel.len() > MAX_PATH {
        return Some((too_long(rel), None));
    }
    let failed = |rel: Vec<u8>, why: String| Some((WalkItem::Error(rel, why), None));
    let excluded = |rel: &[u8], is_dir: bool| {
        opts.filter.has_path_rules() && opts.filter.is_excluded_in(&parent.scope, rel, is_dir)
    };
    // What the directory entry says the name is, unless -L or -k follows
    // it or the filesystem does not say: enough for the filter, without a
    // stat.
    // (-L follows every symlink, --copy-unsafe-links the unsafe ones.)
    let follows = || {
        opts.copy_links
            || opts.copy_unsafe_links
                && parent.dir.fd().is_ok_and(|fd| {
                    rustix::fs::readlinkat(fd, OsStr::from_bytes(name), Vec::new())
                        .is_ok_and(|t| unsafe_here(spec, &rel, t.as_bytes()))
                })
    };
    let through_link = ftype == FileType::Symlink && follows();
    let known_dir = match ftype {
        _ if through_link => None,
        FileType::Symlink if opts.copy_dirlinks => None,
        FileType::Unknown => None,
        t => Some(t == FileType::Directory),
    };
    if known_dir.is_some_and(|is_dir| excluded(&rel, is_dir)) {
        return None;
    }
    let full = match spec.entry_path(&rel) {
        Ok(full) => full,
        Err(e) => return failed(rel, e.to_string()),
    };
    let meta = if through_link {
        spec.referent(&full)
    } else {
        parent
            .dir
            .fd()
            .and_then(|fd| {
                rustix::fs::statat(fd, OsStr::from_bytes(name), AtFlags::SYMLINK_NOFOLLOW)
            })
            .map(|st| Meta::from_stat(&st))
            .map_err(std::io::Error::from)
    };
    let (m, through_link) = match meta {
        Ok(m) if through_link => (m, true),
        // (A filesystem that does not say what its entries are: a symlink
        // is known only now.)
        Ok(m) if ftype == FileType::Unknown && m.kind == Kind::Symlink && follows() => {
            match spec.referent(&full) {
                Ok(m) => (m, true),
                Err(e) => return failed(rel, e.to_string()),
            }
        }
        Ok(m) => dirlink(spec, opts, &full, m),
        Err(e) => return failed(rel, e.to_string()),
    };
    let is_dir = m.kind == Kind::Dir;
    if known_dir.is_none() && excluded(&rel, is_dir) {
        return None;
    }
    if through_link && is_dir && stack.iter().any(|l| l.id == (m.dev, m.ino)) {
        let why = "symlink leads to a directory it is in (a loop): not followed";
        return failed(rel, why.into());
    }
    // A mount point (`-x`): listed as an empty directory with its own
    // attributes, as in rsync, or left out with `-xx`. With -d every
    // directory is listed so.
    let mount = opts.one_file_system > 0 && is_dir && m.dev != top_dev;
    if mount && opts.one_file_system > 1 {
        return None;
    }
    let unlisted = mount || (is_dir && opts.dirs_only);
    let item = match entry_for(spec, opts, &full, rel.clone(), &m)? {
        WalkItem::Entry(mut e) => {
            e.unlisted = unlisted;
            WalkItem::Entry(e)
        }
        other => return Some((other, None)),
    };
    let into = (is_dir && !unlisted).then_some(Descent {
        rel,
        full,
        meta: m,
        through_link,
    });
    Some((item, into))
}

/// A directory the walk is in: its open stream, its path relative to the
/// walk's top, its identity, and the names it holds not yet visited, in
/// byte order (rsync's, and the receiver's directories come before what they
/// hold).
struct Level {
    dir: rustix::fs::Dir,
    rel: Vec<u8>,
    /// Device and inode: with `-L`, a directory reached again through a link
    /// is a loop.
    id: (u64, u64),
    names: std::vec::IntoIter<(Vec<u8>, FileType)>,
    /// The per-directory filter rules in force here (`dir-merge`).
    scope: DirScope,
}

impl Level {
    /// Reads the directory open at `fd`, which must still be the one `meta`
    /// describes (a directory swapped meanwhile is not walked).
    fn read(fd: std::os::fd::OwnedFd, rel: Vec<u8>, meta: &Meta) -> std::io::Result<Level> {
        let st = rustix::fs::fstat(&fd)?;
        let now = Meta::from_stat(&st);
        if (now.dev, now.ino) != (meta.dev, meta.ino) {
            return Err(std::io::Error::other("replaced while being walked"));
        }
        let mut dir = rustix::fs::Dir::new(fd)?;
        let mut names = Vec::new();
        while let Some(entry) = dir.read() {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push((name.to_vec(), entry.file_type()));
            }
        }
        names.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(Level {
            dir,
            rel,
            id: (meta.dev, meta.ino),
            names: names.into_iter(),
            scope: DirScope::default(),
        })
    }

    /// Reads this directory's per-directory filter files (`dir-merge`) on top
    /// of the rules of its parent (`parent`); none without such a rule. A
    /// directory whose rule file cannot be read or parsed is not walked.
    fn with_rules(mut self, filter: &Filter, parent: &DirScope) -> std::io::Result<Level> {
        if filter.has_dir_merge() {
            let fd = self.dir.fd()?;
            let read =
                |name: &str| super::fsroot::read_rule_file(fd, name).map_err(|e| e.to_string());
            self.scope = filter
                .enter(parent, &self.rel, read)
                .map_err(|e| std::io::Error::other(format!("not walked: {e}")))?;
        }
        Ok(self)
    }
}

/// Opens a directory the walk goes into: relative to its parent, never
/// following a symlink; with `-L` through the link, beneath the root unless
/// the source is local.
fn open_child(
    spec: &GiveSpec,
    parent: &Level,
    name: &[u8],
    full: &RelPath,
    through_link: bool,
) -> std::io::Result<std::os::fd::OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    if through_link && !spec.follow_anywhere {
        return spec
            .fs
            .open_dir(full)
            .map_err(|e| std::io::Error::other(e.to_string()));
    }
    let mut flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    if !through_link {
        flags |= OFlags::NOFOLLOW;
    }
    let fd = rustix::fs::openat(
        parent.dir.fd()?,
        OsStr::from_bytes(name),
        flags,
        Mode::empty(),
    )?;
    Ok(fd)
}

/// The entry for one walked path; `None` for what is skipped on purpose (sockets).
fn entry_for(
    spec: &GiveSpec,
    opts: &GiveOptions,
    full: &RelPath,
    rel: Vec<u8>,
    m: &Meta,
) -> Option<WalkItem> {
    let (kind, size, target) = match m.kind {
        Kind::Dir => (EntryKind::Dir, 0, Vec::new()),
        Kind::File => (EntryKind::File, m.size, Vec::new()),
        Kind::Symlink => match spec.read_link(full, opts.copy_dirlinks || opts.copy_unsafe_links) {
            Ok(t) => (EntryKind::Symlink, 0, t),
            Err(e) => return Some(WalkItem::Error(rel, e.to_string())),
        },
        Kind::Fifo => (EntryKind::Fifo, 0, Vec::new()),
        Kind::CharDev => (EntryKind::CharDev, 0, Vec::new()),
        Kind::BlockDev => (EntryKind::BlockDev, 0, Vec::new()),
        Kind::Socket => {
            // Sockets are skipped, as rsync does: they cannot be copied.
            tracing::debug!(path = %super::escape_name(&rel), "skipping a socket");
            return None;
        }
    };
    // (Which name leads is for the list loop to say: only it numbers the
    // entries the receiver gets.)
    let inode =
        (kind == EntryKind::File && opts.hard_links && m.nlink > 1).then_some((m.dev, m.ino));
    let kept = &opts.kept;
    let xattrs = if kept.any() && matches!(kind, EntryKind::File | EntryKind::Dir) {
        let got = if opts.follows_links() {
            spec.referent_xattrs(full)
        } else {
            spec.fs.xattrs(full)
        };
        match got {
            Ok(mut x) => {
                x.retain(|(n, _)| {
                    if acl::is_acl(n) {
                        kept.acls
                    } else {
                        kept.xattrs && !opts.filter.excludes_xattr(n)
                    }
                });
                x
            }
            Err(e) => return Some(WalkItem::Error(rel, format!("cannot read xattrs: {e}"))),
        }
    } else {
        Vec::new()
    };
    let mode = match kind {
        EntryKind::Symlink => m.mode,
        _ => opts.chmod.apply(m.mode, kind == EntryKind::Dir),
    };
    let e = Entry {
        path: rel,
        kind,
        mode,
        size,
        mtime: m.mtime,
        target,
        uid: m.uid,
        gid: m.gid,
        rdev: if kind.is_special() { m.rdev } else { 0 },
        link: HardLink::None,
        xattrs,
        unlisted: false,
        implied: false,
        atime: (opts.atimes && kind != EntryKind::Dir).then_some(m.atime),
    };
    Some(match inode {
        Some(inode) => WalkItem::Linked(e, inode),
        None => WalkItem::Entry(e),
    })
}

/// Why answering one request did not work out.
enum Fail {
    /// This file could not be sent; the lane goes on (FILE_ERR).
    File { message: String, vanished: bool },
    /// The lane itself broke.
    Lane(Error),
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail::Lane(e)
    }
}

fn file_fail(shown: &str, what: &str, e: std::io::Error) -> Fail {
    Fail::File {
        vanished: e.kind() == std::io::ErrorKind::NotFound,
        message: format!("cannot {what} {shown}: {e}"),
    }
}

/// Answers one lane's requests, in order, until the receiver finishes it.
async fn serve_lane(mut c: Circuit, giver: Arc<Giver>) {
    c.set_level(giver.opts.compress_level);
    let peer = giver.peer.as_str();
    loop {
        let f = match c.recv().await {
            Ok(Some(f)) => f,
            Ok(None) => {
                let _ = c.finish().await;
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, "lane ended");
                return;
            }
        };
        let res = if f.op == msg::WANT {
            match decode::<Want>(&f.payload, peer) {
                Ok(want) => answer(&mut c, &giver, want).await,
                Err(e) => Err(e),
            }
        } else if f.op == msg::WANTS {
            match decode::<msg::Wants>(&f.payload, peer) {
                Ok(wants) => answer_many(&mut c, &giver, &wants.0).await,
                Err(e) => Err(e),
            }
        } else if f.op == msg::CHECKS {
            match decode::<msg::Checks>(&f.payload, peer) {
                Ok(checks) => answer_checks(&mut c, &giver, checks).await,
                Err(e) => Err(e),
            }
        } else {
            Err(Error::Violation {
                peer: peer.into(),
                what: format!("expected a file request, got {}", f.op),
            })
        };
        if let Err(e) = res {
            tracing::debug!(error = %e, "lane failed");
            let _ = c.fail(&e.to_string()).await;
            return;
        }
    }
}

/// Answers one request; only lane-breaking errors are returned.
async fn answer(c: &mut Circuit, giver: &Giver, want: Want) -> Result<()> {
    let path = giver.file(want.index)?;
    let shown = giver.shown(&path).into_owned();
    let size = match serve(c, giver, &path, &want, &shown).await {
        Ok(size) => size,
        Err(Fail::Lane(e)) => return Err(e),
        Err(Fail::File { message, vanished }) => {
            tracing::debug!(path = %shown, error = %message, "sending failed");
            c.send(
                Fragment::new(msg::FILE_ERR)
                    .with_part(u64::from(vanished))
                    .with_error(message),
            )
            .await?;
            0
        }
    };
    giver.opts.progress.file_done(&shown, size);
    Ok(())
}

/// Flush a FILES message once it holds this much.
const FILES_FLUSH: usize = 1 << 20;

/// Answers a WANTS: one record per file, in order, in as few FILES messages as
/// fit. Only lane-breaking errors are returned.
async fn answer_many(c: &mut Circuit, giver: &Giver, indices: &[u64]) -> Result<()> {
    let progress = &giver.opts.progress;
    // A message is compressed or not as a whole: one is sent where the
    // next file would be compressed otherwise (`--skip-compress`).
    let mut alg = None;
    let mut payload = Vec::new();
    for &index in indices {
        let path = giver.file(index)?;
        let this = giver.compression_of(&path, true);
        if let Some(before) = alg.filter(|&a| a != this && !payload.is_empty()) {
            let p = std::mem::take(&mut payload);
            giver.pace(p.len()).await;
            c.send_with(Fragment::new(msg::FILES).with_payload(p), before)
                .await?;
        }
        alg = Some(this);
        let shown = giver.shown(&path).into_owned();
        let size = match append_whole(giver, &path, &shown, &mut payload) {
            Ok(size) => {
                progress.file_started(&shown, size);
                progress.file_progress(&shown, size);
                size
            }
            Err(Fail::Lane(e)) => return Err(e),
            Err(Fail::File { message, vanished }) => {
                let rec = if vanished {
                    msg::FileRecord::Vanished(&message)
                } else {
                    msg::FileRecord::Failed(&message)
                };
                rec.encode(&mut payload);
                0
            }
        };
        progress.file_done(&shown, size);
        if payload.len() >= FILES_FLUSH {
            let p = std::mem::take(&mut payload);
            giver.pace(p.len()).await;
            c.send_with(Fragment::new(msg::FILES).with_payload(p), this)
                .await?;
        }
    }
    if let (false, Some(alg)) = (payload.is_empty(), alg) {
        giver.pace(payload.len()).await;
        c.send_with(Fragment::new(msg::FILES).with_payload(payload), alg)
            .await?;
    }
    Ok(())
}

/// Answers a CHECKS with one VERDICTS message: each file hashed (off the async
/// threads, the whole batch at once) and compared with the receiver's hash.
async fn answer_checks(c: &mut Circuit, giver: &Arc<Giver>, checks: msg::Checks) -> Result<()> {
    // Every index must name a listed file; the files are read off-thread.
    let files = checks
        .0
        .iter()
        .map(|(index, hash)| giver.listed(*index).map(|(p, m)| (p, m, *hash)))
        .collect::<Result<Vec<_>>>()?;
    let g = giver.clone();
    let (payload, files) = blocking(move || {
        let mut payload = Vec::with_capacity(files.len());
        for (path, listed, hash) in &files {
            verdict(&g, path, listed, hash, &mut payload);
        }
        Ok((payload, files))
    })
    .await
    .map_err(|e| Error::io("hash check worker", e))?;
    c.send_with(
        Fragment::new(msg::VERDICTS).with_payload(payload),
        Compression::ZSTD,
    )
    .await?;
    for (path, _, _) in &files {
        giver.opts.progress.file_done(&giver.shown(path), 0);
    }
    Ok(())
}

/// Appends the verdict on one checked file: whether the file at `path` still
/// has the content the receiver hashed, and whether it is as listed.
fn verdict(
    giver: &Giver,
    path: &[u8],
    listed: &FileMeta,
    theirs: &[u8; msg::CHECK_HASH],
    out: &mut Vec<u8>,
) {
    let shown = giver.shown(path);
    let checked = || -> std::result::Result<msg::Verdict<'static>, Fail> {
        let (file, now) = open_listed(giver, path, &shown)?;
        let hash = match chunker::file_hash(&file, now.size) {
            Ok(h) => h,
            // It shrank while it was hashed: a delta will tell.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Ok(msg::Verdict::Differs)
            }
            Err(e) => return Err(file_fail(&shown, "read", e)),
        };
        // Changed while it was hashed, the hash means nothing: a delta will tell.
        if !unchanged_since(&file, &now).map_err(|e| file_fail(&shown, "stat", e))?
            || hash[..msg::CHECK_HASH] != theirs[..]
        {
            return Ok(msg::Verdict::Differs);
        }
        Ok(if now == *listed {
            msg::Verdict::Same
        } else {
            msg::Verdict::SameMeta(now)
        })
    };
    match checked() {
        Ok(v) => v.encode(out),
        Err(Fail::File { message, vanished }) if vanished => {
            msg::Verdict::Vanished(&message).encode(out)
        }
        Err(Fail::File { message, .. }) => msg::Verdict::Failed(&message).encode(out),
        Err(Fail::Lane(e)) => msg::Verdict::Failed(&e.to_string()).encode(out),
    }
}

/// Appends a whole-file record for a small file, read straight into `payload`
/// and checked to be unchanged while it was read; returns its size. On failure
/// `payload` is as it was.
fn append_whole(
    giver: &Giver,
    path: &[u8],
    shown: &str,
    payload: &mut Vec<u8>,
) -> std::result::Result<u64, Fail> {
    let (file, meta) = open_listed(giver, path, shown)?;
    // Listed as small; grown past what one message carries since.
    if meta.size > WHOLE_MAX {
        return Err(changed_while_sent(shown));
    }
    let start = payload.len();
    let slot = msg::begin_whole_record(payload, &meta);
    if let Err(e) = fill_whole(giver, &file, &meta, shown, payload, slot) {
        payload.truncate(start);
        return Err(e);
    }
    Ok(meta.size)
}

/// Appends `file`'s data (`meta` as opened) to a whole-file record or FILE
/// payload begun with its digest slot at `slot`, and fills the slot (left zero
/// when files sent whole carry no digest).
fn fill_whole(
    giver: &Giver,
    file: &std::fs::File,
    meta: &FileMeta,
    shown: &str,
    payload: &mut Vec<u8>,
    slot: usize,
) -> std::result::Result<(), Fail> {
    let data = payload.len();
    read_checked(file, meta, shown, payload)?;
    if giver.whole_digest {
        let hash = blake3::hash(&payload[data..]);
        payload[slot..slot + 32].copy_from_slice(hash.as_bytes());
    }
    Ok(())
}

/// Opens the listed file at `path` (only a regular file, and no symlink
/// unless `-L` follows it) with its size, mtime and mode as opened.
fn open_listed(
    giver: &Giver,
    path: &[u8],
    shown: &str,
) -> std::result::Result<(std::fs::File, FileMeta), Fail> {
    let rel = giver.spec.entry_path(path)?;
    let opened = if giver.opts.follows_links() {
        giver.spec.open_referent(&rel)
    } else {
        giver.spec.fs.open_read_meta(&rel)
    };
    let (file, m) = opened.map_err(|e| open_fail(shown, e))?;
    let meta = FileMeta {
        size: m.size,
        mtime: m.mtime,
        mode: giver.opts.chmod.apply(m.mode, false),
    };
    Ok((file, meta))
}

/// Appends the content of `file` to `buf` (exactly `meta.size` bytes) and
/// checks that the file did not change meanwhile.
fn read_checked(
    file: &std::fs::File,
    meta: &FileMeta,
    shown: &str,
    buf: &mut Vec<u8>,
) -> std::result::Result<(), Fail> {
    let start = buf.len();
    // Exactly the size opened: a file that grew since shows in the status
    // check after, so no read at the end of the file just to see it end.
    buf.reserve(meta.size as usize);
    file.take(meta.size)
        .read_to_end(buf)
        .map_err(|e| file_fail(shown, "read", e))?;
    if (buf.len() - start) as u64 != meta.size {
        return Err(changed_while_sent(shown));
    }
    check_unchanged(file, meta, shown)
}

/// Whether `file` still has the size and mtime it was opened with.
fn unchanged_since(file: &std::fs::File, meta: &FileMeta) -> std::io::Result<bool> {
    let after = file.metadata()?;
    Ok(after.len() == meta.size && mtime_of(&after) == meta.mtime)
}

/// [`unchanged_since`], or the file failed: it changed while being sent.
fn check_unchanged(
    file: &std::fs::File,
    meta: &FileMeta,
    shown: &str,
) -> std::result::Result<(), Fail> {
    match unchanged_since(file, meta) {
        Ok(true) => Ok(()),
        Ok(false) => Err(changed_while_sent(shown)),
        Err(e) => Err(file_fail(shown, "stat", e)),
    }
}

fn changed_while_sent(shown: &str) -> Fail {
    Fail::File {
        message: format!("{shown}: file changed while being sent"),
        vanished: false,
    }
}

fn open_fail(shown: &str, e: super::fsroot::FsError) -> Fail {
    match e {
        super::fsroot::FsError::Io { source, .. } => file_fail(shown, "open", source),
        e => Fail::File {
            message: e.to_string(),
            vanished: false,
        },
    }
}

async fn serve(
    c: &mut Circuit,
    giver: &Giver,
    path: &[u8],
    want: &Want,
    shown: &str,
) -> std::result::Result<u64, Fail> {
    let opened = open_listed(giver, path, shown);
    let basis = match want.how {
        WantHow::Delta => {
            let chunking =
                Chunking::from_bits(want.chunk_bits).ok_or_else(|| Error::Violation {
                    peer: giver.peer.clone(),
                    what: format!("no chunking of 2^{} bytes", want.chunk_bits),
                })?;
            match &opened {
                Ok((_, m)) if m.size >= chunker::CONCURRENT_CUT_MIN => Basis::Streamed(chunking),
                // Read whatever happens to the file, to keep the lane in step.
                _ => {
                    let size = opened.as_ref().map_or(0, |(_, m)| m.size);
                    Basis::Delta(Theirs::receive(c, &giver.peer, chunking, size).await?)
                }
            }
        }
        _ => Basis::Whole,
    };
    let (file, meta) = opened?;
    let progress = &giver.opts.progress;

    progress.file_started(shown, meta.size);
    let whole_alg = giver.compression_of(path, true);
    if matches!(basis, Basis::Whole) && meta.size <= WHOLE_MAX {
        // Read straight into the message, as for a batch of small files.
        let mut payload = Vec::with_capacity(meta.size as usize + 64);
        let slot = msg::begin_whole_file(&mut payload, &meta);
        fill_whole(giver, &file, &meta, shown, &mut payload, slot)?;
        giver.pace(payload.len()).await;
        c.send_with(Fragment::new(msg::FILE).with_payload(payload), whole_alg)
            .await?;
        progress.file_progress(shown, meta.size);
        return Ok(meta.size);
    }

    // The general case: a recipe built off the async threads and streamed.
    c.send(fragment(msg::META, &meta)).await?;
    let alg = match basis {
        Basis::Whole => whole_alg,
        _ => giver.compression_of(path, false),
    };
    let (tx, mut rx) = mpsc::channel::<(Vec<u8>, bool, u64)>(4);
    let (sig_tx, sig_rx) = std::sync::mpsc::channel();
    let size = meta.size;
    let basis_size = want.basis_size;
    let digest = !matches!(basis, Basis::Whole) || giver.whole_digest;
    let streamed = match basis {
        Basis::Streamed(chunking) => Some(chunking),
        _ => None,
    };
    let builder = tokio::task::spawn_blocking(move || {
        let recipe = |have: Option<&Theirs>| {
            build_recipe(&file, size, have, digest, &tx).map(|(end, digest)| Built {
                end,
                digest,
                unchanged: false,
            })
        };
        let out = match basis {
            Basis::Whole => recipe(None),
            Basis::Delta(have) => recipe(Some(&have)),
            Basis::Streamed(chunking) => {
                let maybe_same = basis_size == size;
                build_large(&file, size, chunking, maybe_same, sig_rx, &tx)
            }
        };
        out.map(|o| (o, file))
    });
    let (c_tx, c_rx) = c.halves();
    // Stops the sending between payloads, never inside one: a write cut
    // short would take the lane's writer with it, and the reason the lane
    // fails would not reach the receiver. (A write in hand waits for the
    // receiver to read, as every write does; one that never reads holds
    // its lane whatever happens here, until the link ends.)
    let stop = CancellationToken::new();
    let send = async {
        loop {
            let next = tokio::select! {
                biased;
                _ = stop.cancelled() => None,
                next = rx.recv() => next,
            };
            let Some((payload, literal, covered)) = next else {
                break;
            };
            let alg = if literal { alg } else { Compression::NONE };
            giver.pace(payload.len()).await;
            c_tx.send_with(Fragment::new(msg::RECIPE).with_payload(payload), alg)
                .await?;
            progress.file_progress(shown, covered);
        }
        Ok::<_, Error>(())
    };
    match streamed {
        Some(chunking) => {
            // The signature is read while the recipe goes out; whichever
            // fails first stops the other.
            let limit = sig_limit(size);
            let forward = async {
                tokio::select! {
                    biased;
                    r = forward_signature(c_rx, &giver.peer, sig_tx, chunking, limit) => r,
                    _ = stop.cancelled() => Ok(()),
                }
            };
            let failing = |r: Result<()>| {
                if r.is_err() {
                    stop.cancel();
                }
                r
            };
            let (forwarded, sent) = tokio::join!(async { failing(forward.await) }, async {
                failing(send.await)
            });
            forwarded?;
            sent?;
        }
        None => {
            drop(sig_tx);
            send.await?;
        }
    }
    let built = builder.await.map_err(|e| {
        let what = format!("recipe builder for {shown}");
        Fail::Lane(Error::io(what, std::io::Error::other(e)))
    })?;
    let (
        Built {
            end: total,
            digest,
            unchanged,
        },
        file,
    ) = built.map_err(|e| match e.kind() {
        // A literal read again after the cut: the file shrank meanwhile.
        std::io::ErrorKind::UnexpectedEof => changed_while_sent(shown),
        _ => file_fail(shown, "read", e),
    })?;
    if total != meta.size {
        return Err(changed_while_sent(shown));
    }
    check_unchanged(&file, &meta, shown)?;
    let end = msg::End {
        size: total,
        digest,
    };
    let op = if unchanged { msg::UNCHANGED } else { msg::END };
    c.send(fragment(op, &end)).await?;
    Ok(meta.size)
}

/// What a file's recipe is built against: nothing (the file goes whole),
/// the receiver's signature read in full first (a delta of a small file),
/// or its signature read while the recipe goes out (a large file's delta,
/// which starts before the signature ends).
enum Basis {
    Whole,
    Delta(Theirs),
    Streamed(Chunking),
}

/// Reads `file` (its data regions; holes become HOLE ops) and streams recipe
/// payloads: with the receiver's chunks (`have`), FastCDC chunks it already has
/// become copies; without, data goes as literal pieces of up to [`MAX_CHUNK`].
/// Sends `(payload, has_literals, bytes_covered)`; returns the size and digest
/// (all zero without `digest_wanted`: a file sent whole over a sealed link).
fn build_recipe(
    file: &std::fs::File,
    size: u64,
    have: Option<&Theirs>,
    digest_wanted: bool,
    tx: &mpsc::Sender<(Vec<u8>, bool, u64)>,
) -> std::io::Result<(u64, Hash)> {
    let mut out = RecipeOut::new(tx);
    let end = match have {
        Some(have) => cut_file(file, 0, size, have.chunking, |cut, data| {
            out.cut(cut, data, have)
        })?,
        None => {
            let mut buf = vec![0u8; MAX_CHUNK as usize];
            for_each_region(file, 0, size, |region| match region {
                Region::Hole(n) => out.hole(n),
                Region::Data { start, len } => {
                    let mut done = 0u64;
                    while done < len {
                        let want = (len - done).min(u64::from(MAX_CHUNK)) as usize;
                        let got = file.read_at(&mut buf[..want], start + done)?;
                        if got == 0 {
                            break;
                        }
                        let piece = &buf[..got];
                        let hash = match digest_wanted {
                            true => *blake3::hash(piece).as_bytes(),
                            false => [0; 32],
                        };
                        out.literal(piece, hash)?;
                        done += got as u64;
                    }
                    Ok(done)
                }
            })?
        }
    };
    out.finish(end, digest_wanted)
}

/// A part of a file as [`for_each_region`] walks it.
enum Region {
    /// A hole of this many bytes (`-S` on the receiver keeps it one).
    Hole(u64),
    /// Data from `start`, `len` bytes.
    Data { start: u64, len: u64 },
}

/// Walks `file`'s holes and data regions from `from` up to `size` in order;
/// `f` takes a data region and says how much of it it got through (less than
/// all: the file shrank, and the walk stops there). Returns the end reached.
fn for_each_region(
    file: &std::fs::File,
    from: u64,
    size: u64,
    mut f: impl FnMut(Region) -> std::io::Result<u64>,
) -> std::io::Result<u64> {
    let mut pos = from;
    for (start, len) in super::fsroot::data_extents(file, size)? {
        let end = start + len;
        if end <= pos {
            continue;
        }
        let start = start.max(pos);
        if start > pos {
            f(Region::Hole(start - pos))?;
        }
        let n = f(Region::Data {
            start,
            len: end - start,
        })?;
        pos = start + n;
        if pos != end {
            // Shorter than listed: the file shrank while being read.
            return Ok(pos);
        }
    }
    if size > pos {
        f(Region::Hole(size - pos))?;
        pos = size;
    }
    Ok(pos)
}

/// One step of a file cut for a delta.
enum Cut {
    Hole(u64),
    /// A chunk at its offset in the file.
    Chunk(chunker::ChunkRef),
}

/// Cuts `file`'s data regions from `from` with FastCDC, giving `f` each hole
/// and each chunk with its bytes, in order; returns the end reached (short of
/// `size`: the file shrank meanwhile).
fn cut_file(
    file: &std::fs::File,
    from: u64,
    size: u64,
    chunking: Chunking,
    mut f: impl FnMut(Cut, &[u8]) -> std::io::Result<()>,
) -> std::io::Result<u64> {
    for_each_region(file, from, size, |region| match region {
        Region::Hole(n) => f(Cut::Hole(n), &[]).map(|()| n),
        Region::Data { start, len } => {
            let mut region = file.try_clone()?;
            region.seek(SeekFrom::Start(start))?;
            chunker::for_each_chunk_sized(region.take(len), len, chunking, |mut r, data| {
                r.offset += start;
                f(Cut::Chunk(r), data)
            })
        }
    })
}

/// Receiver chunks in a row whose ranges may differ here while the file is
/// still taken to be edited in place (each then goes as a literal); past
/// this, the rest of the file is cut.
const IN_PLACE_MAX: usize = 8;

/// The recipe of a large file's delta, built while the receiver's signature
/// arrives (`sig`: its batches, in order; the channel closes at its end). The
/// file is read along with the receiver's chunks, hashing the same ranges: a
/// range that matches is a copy, sent at once (the receiver rebuilds while it
/// still cuts), and no cut is needed. A chunk or a few that differ followed
/// by one that matches again are an edit in place: their ranges go as
/// literals. More than [`IN_PLACE_MAX`] in a row (bytes put in or taken
/// out), the file's first hole, or its end, and the rest of the file is cut
/// ([`precut`], while the signature still arrives) and matched against the
/// whole signature. A file that is exactly the receiver's chunks sends no
/// recipe at all: it is UNCHANGED; so while one of the same size as the
/// receiver's (`maybe_same`) has matched from its start, its copies wait.
fn build_large(
    file: &std::fs::File,
    size: u64,
    chunking: Chunking,
    maybe_same: bool,
    sig: std::sync::mpsc::Receiver<Vec<(u32, SigHash)>>,
    tx: &mpsc::Sender<(Vec<u8>, bool, u64)>,
) -> std::io::Result<Built> {
    let mut theirs = Theirs::new(chunking, size);
    let mut out = RecipeOut::new(tx);
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file.try_clone()?);
    let mut buf = vec![0u8; chunking.max()];
    // Only the data from the start is read along: holes go as holes.
    let dense = match super::fsroot::data_extents(file, size)?.first() {
        Some(&(0, len)) => len,
        _ => 0,
    };
    // While the file has been the receiver's chunks so far: their lengths
    // and hashes here (their copies wait: a file that is exactly them needs
    // none).
    let mut same = maybe_same.then(Vec::new);
    // The receiver's chunks just passed whose ranges differ here: where, how
    // long, and their hash here.
    let mut differing: Vec<(u64, u32, Hash)> = Vec::new();
    let (mut at, mut next, mut complete) = (0u64, 0usize, false);
    loop {
        while next == theirs.order.len() && !complete {
            match sig.recv() {
                Ok(batch) => theirs.add(batch),
                Err(_) => complete = true,
            }
        }
        let Some(&(len, hash)) = theirs.order.get(next) else {
            break;
        };
        let n = len as usize;
        if at + u64::from(len) > dense || n > buf.len() {
            break;
        }
        match reader.read_exact(&mut buf[..n]) {
            Ok(()) => {}
            // Shrunk meanwhile: the cut of the rest says so.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
        let mine = *blake3::hash(&buf[..n]).as_bytes();
        // A chunk that differed before this one is taken back only at a match
        // of a chunk the receiver has once (or first): a run of equal chunks,
        // zeros written out say, matches wherever bytes were put in before it.
        let anchor = differing.is_empty() || theirs.index.get(&hash) == Some(&(next as u64));
        if sig_hash(&mine) == hash && anchor {
            // An edit in place ends here: what differed goes as it is.
            for (off, len, h) in std::mem::take(&mut differing) {
                let piece = &mut buf[..len as usize];
                file.read_exact_at(piece, off)?;
                out.literal(piece, h)?;
            }
            match &mut same {
                Some(held) => held.push((len, mine)),
                None => out.copy(next as u64, len, mine)?,
            }
        } else {
            out.differs(&mut same)?;
            differing.push((at, len, mine));
            if differing.len() > IN_PLACE_MAX {
                break;
            }
        }
        at += u64::from(len);
        next += 1;
    }
    let from = differing.first().map_or(at, |&(off, _, _)| off);
    if let Some(held) = same
        .as_ref()
        .filter(|_| complete && next == theirs.order.len())
    {
        if at == size {
            // The receiver checks these, its chunks by their full hashes.
            return Ok(Built {
                end: size,
                digest: chunker::chunk_list_digest(held.iter().copied()),
                unchanged: true,
            });
        }
    }
    out.differs(&mut same)?;
    let end = if from < size {
        let cuts = precut(file.try_clone()?, from, size, chunking);
        // The rest of the signature, for the cut's chunks to be looked up in.
        for batch in &sig {
            theirs.add(batch);
        }
        recipe_of_cuts(file, &theirs, cuts, &mut out)?
    } else {
        from
    };
    let (end, digest) = out.finish(end, true)?;
    Ok(Built {
        end,
        digest,
        unchanged: false,
    })
}

/// What [`precut`] hands on: a batch of cuts, then the end reached.
enum Precut {
    Cuts(Vec<Cut>),
    End(std::io::Result<u64>),
}

/// Cuts a large file from `from` on a thread of its own while the receiver's
/// signature arrives (the two cuts overlap); the cuts wait in the channel,
/// without their bytes, until [`recipe_of_cuts`] takes them.
fn precut(
    file: std::fs::File,
    from: u64,
    size: u64,
    chunking: Chunking,
) -> std::sync::mpsc::Receiver<Precut> {
    const BATCH: usize = 1024;
    let (tx, rx) = std::sync::mpsc::channel();
    tokio::task::spawn_blocking(move || {
        let mut batches = chunker::Batches::new(BATCH, |b| {
            tx.send(Precut::Cuts(b))
                .map_err(|_| std::io::Error::other("request abandoned"))
        });
        let end = cut_file(&file, from, size, chunking, |cut, _| batches.push(cut));
        let _ = batches.finish();
        let _ = tx.send(Precut::End(end));
    });
    rx
}

/// Adds the cuts of [`precut`] to `out`, looked up in the whole signature:
/// each chunk the receiver lacks is read again, from where the cut found it
/// (a file changed since shows in the status check after the recipe).
/// Returns the end the cut reached.
fn recipe_of_cuts(
    file: &std::fs::File,
    have: &Theirs,
    cuts: std::sync::mpsc::Receiver<Precut>,
    out: &mut RecipeOut<'_>,
) -> std::io::Result<u64> {
    let mut buf = vec![0u8; have.chunking.max()];
    for step in cuts {
        match step {
            Precut::Cuts(cuts) => {
                for cut in cuts {
                    let data = match &cut {
                        Cut::Chunk(r) if !have.index.contains_key(&sig_hash(&r.hash)) => {
                            let piece = &mut buf[..r.len as usize];
                            file.read_exact_at(piece, r.offset)?;
                            &piece[..]
                        }
                        _ => &[],
                    };
                    out.cut(cut, data, have)?;
                }
            }
            Precut::End(end) => return end,
        }
    }
    Err(std::io::Error::other("the chunk cutting thread stopped"))
}

/// What a file's recipe came to.
struct Built {
    /// The end of the file reached.
    end: u64,
    /// The digest of its chunk list (all zero when none was wanted).
    digest: Hash,
    /// The file is exactly the receiver's basis: no recipe was sent, and the
    /// answer is UNCHANGED.
    unchanged: bool,
}

/// The receiver's signature: where each chunk it has first is, its chunks in
/// order, and the chunk sizes it was cut with. At most [`sig_limit`] chunks
/// are kept; the rest is read and dropped.
struct Theirs {
    index: HashMap<SigHash, u64>,
    order: Vec<(u32, SigHash)>,
    chunking: Chunking,
    limit: usize,
}

impl Theirs {
    /// For a file of `size` bytes (0 when it could not be opened).
    fn new(chunking: Chunking, size: u64) -> Theirs {
        Theirs {
            index: HashMap::new(),
            order: Vec::new(),
            chunking,
            limit: sig_limit(size),
        }
    }

    /// The next batch of the signature.
    fn add(&mut self, batch: Vec<(u32, SigHash)>) {
        let room = self.limit.saturating_sub(self.order.len());
        for (len, hash) in batch.into_iter().take(room) {
            let i = self.order.len() as u64;
            self.index.entry(hash).or_insert(i);
            self.order.push((len, hash));
        }
    }

    /// Reads SIG batches until SIG_END.
    async fn receive(c: &mut Circuit, peer: &str, chunking: Chunking, size: u64) -> Result<Theirs> {
        let mut theirs = Theirs::new(chunking, size);
        let (_, rx) = c.halves();
        while let Some(batch) = next_sig_batch(rx, peer, chunking).await? {
            theirs.add(batch);
        }
        Ok(theirs)
    }
}

/// The next SIG batch of a signature; `None` at SIG_END.
async fn next_sig_batch(
    rx: &mut CircuitReceiver,
    peer: &str,
    chunking: Chunking,
) -> Result<Option<Vec<(u32, SigHash)>>> {
    let f = rx.recv().await?.ok_or_else(|| Error::Violation {
        peer: peer.into(),
        what: "circuit ended inside the signature".into(),
    })?;
    match f.op {
        msg::SIG => chunker::decode_sig_batch(&f.payload, usize::MAX, chunking.max())
            .map(Some)
            .map_err(|source| Error::Protocol {
                peer: peer.into(),
                source,
            }),
        msg::SIG_END => Ok(None),
        other => Err(Error::Violation {
            peer: peer.into(),
            what: format!("unexpected {other} inside a signature"),
        }),
    }
}

/// Reads a signature's batches until SIG_END, handing the first `limit`
/// chunks ([`sig_limit`]) to the recipe builder (which may have stopped
/// taking them) and dropping the rest, and closes its channel. (The channel
/// is unbounded: the builder may take nothing for a while, hashing or
/// waiting for the receiver to read its recipe, and what waits in the
/// channel is bounded by the limit alone.)
async fn forward_signature(
    rx: &mut CircuitReceiver,
    peer: &str,
    to: std::sync::mpsc::Sender<Vec<(u32, SigHash)>>,
    chunking: Chunking,
    mut limit: usize,
) -> Result<()> {
    while let Some(mut batch) = next_sig_batch(rx, peer, chunking).await? {
        batch.truncate(limit);
        limit -= batch.len();
        if !batch.is_empty() {
            let _ = to.send(batch);
        }
    }
    Ok(())
}

/// A recipe being built and sent in payloads of about [`RECIPE_FLUSH`], with
/// the digest of the data it covers.
struct RecipeOut<'a> {
    recipe: Recipe,
    digest: DigestBuilder,
    /// Bytes of the file covered since the last payload (for progress).
    covered: u64,
    tx: &'a mpsc::Sender<(Vec<u8>, bool, u64)>,
}

impl<'a> RecipeOut<'a> {
    fn new(tx: &'a mpsc::Sender<(Vec<u8>, bool, u64)>) -> Self {
        RecipeOut {
            recipe: Recipe::new(),
            digest: DigestBuilder::default(),
            covered: 0,
            tx,
        }
    }

    /// The file is no longer the receiver's chunks from the start: the
    /// copies held back for them (`same`) go into the recipe.
    fn differs(&mut self, same: &mut Option<Vec<(u32, Hash)>>) -> std::io::Result<()> {
        for (i, (len, hash)) in same.take().into_iter().flatten().enumerate() {
            self.copy(i as u64, len, hash)?;
        }
        Ok(())
    }

    fn hole(&mut self, n: u64) -> std::io::Result<u64> {
        self.recipe.hole(n);
        self.digest.push_hole(n);
        self.covered += n;
        self.flush(false).map(|()| n)
    }

    /// A piece sent as it is, with its hash for the digest.
    fn literal(&mut self, data: &[u8], hash: Hash) -> std::io::Result<()> {
        self.digest.push(data.len() as u32, hash);
        self.recipe.literal(data);
        self.covered += data.len() as u64;
        self.flush(false)
    }

    /// The receiver's chunk number `i`.
    fn copy(&mut self, i: u64, len: u32, hash: Hash) -> std::io::Result<()> {
        self.digest.push(len, hash);
        self.recipe.copy(i);
        self.covered += u64::from(len);
        self.flush(false)
    }

    /// A step of a delta: a chunk the receiver has becomes a copy, one it
    /// lacks a literal of `data`.
    fn cut(&mut self, cut: Cut, data: &[u8], have: &Theirs) -> std::io::Result<()> {
        match cut {
            Cut::Hole(n) => self.hole(n).map(|_| ()),
            Cut::Chunk(r) => match have.index.get(&sig_hash(&r.hash)) {
                Some(&i) => self.copy(i, r.len, r.hash),
                None => self.literal(data, r.hash),
            },
        }
    }

    fn flush(&mut self, force: bool) -> std::io::Result<()> {
        if self.recipe.is_empty()
            || (!force && self.recipe.len() < RECIPE_FLUSH && self.covered < RECIPE_FLUSH_COVERED)
        {
            return Ok(());
        }
        let literal = self.recipe.has_literals();
        let payload = self.recipe.take();
        self.tx
            .blocking_send((payload, literal, std::mem::take(&mut self.covered)))
            .map_err(|_| std::io::Error::other("transfer ended"))
    }

    /// Sends what is left; the end reached and the digest (all zero without
    /// `digest_wanted`: a file sent whole over a sealed link).
    fn finish(mut self, end: u64, digest_wanted: bool) -> std::io::Result<(u64, Hash)> {
        self.flush(true)?;
        let digest = if digest_wanted {
            self.digest.finish()
        } else {
            [0; 32]
        };
        Ok((end, digest))
    }
}

/// Runs blocking file work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| std::io::Error::other(format!("worker failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// The top of a local walk of `dir`, and the spec.
    fn top(dir: &Path, copy_links: bool) -> (GiveSpec, Level) {
        let follow = Follow {
            links: copy_links,
            ..Follow::default()
        };
        let spec = GiveSpec::local(&dir.join(""), follow).unwrap();
        let fd = spec.fs.open_dir(&spec.base).unwrap();
        let m = Meta::from_stat(&rustix::fs::fstat(&fd).unwrap());
        let level = Level::read(fd, Vec::new(), &m).unwrap();
        (spec, level)
    }

    fn lstat(p: &Path) -> Meta {
        Meta::from_stat(&rustix::fs::lstat(p).unwrap())
    }

    /// The walk stats an entry, then goes into it: a directory swapped for a
    /// symlink in between is not entered, nor one swapped for another
    /// directory (what the walk would read is not what it listed).
    #[test]
    fn a_directory_swapped_mid_walk_is_not_read() {
        let tmp = tempfile::tempdir().unwrap();
        let (src, outside) = (tmp.path().join("src"), tmp.path().join("outside"));
        std::fs::create_dir_all(src.join("d")).unwrap();
        std::fs::create_dir_all(outside.join("secret")).unwrap();
        let (spec, top) = top(&src, false);
        let listed = lstat(&src.join("d"));
        let full = spec.entry_path(b"d").unwrap();

        // (Made before the original goes, so it cannot take its inode.)
        std::fs::create_dir(src.join("other")).unwrap();
        std::fs::rename(src.join("d"), src.join("was_d")).unwrap();
        symlink(&outside, src.join("d")).unwrap();
        assert!(open_child(&spec, &top, b"d", &full, false).is_err());

        std::fs::remove_file(src.join("d")).unwrap();
        std::fs::rename(src.join("other"), src.join("d")).unwrap();
        let fd = open_child(&spec, &top, b"d", &full, false).unwrap();
        let err = Level::read(fd, b"d".to_vec(), &listed).err().unwrap();
        assert!(
            err.to_string().contains("replaced while being walked"),
            "{err}"
        );
        // The same directory as listed is read.
        let fd = open_child(&spec, &top, b"d", &full, false).unwrap();
        assert!(Level::read(fd, b"d".to_vec(), &lstat(&src.join("d"))).is_ok());
    }

    /// With -L, a server's walk goes through a link only beneath its root;
    /// a local one wherever the link leads.
    #[test]
    fn copy_links_enters_a_linked_directory_beneath_a_servers_root_only() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("src/inside")).unwrap();
        std::fs::create_dir_all(tmp.path().join("outside")).unwrap();
        symlink("inside", root.join("src/in")).unwrap();
        symlink("../../outside", root.join("src/out")).unwrap();
        let fs = FsRoot::open(&root).unwrap();
        let follow = Follow {
            links: true,
            ..Follow::default()
        };
        let spec = GiveSpec::in_root(fs, "src/", follow).unwrap();
        let fd = spec.fs.open_dir(&spec.base).unwrap();
        let m = Meta::from_stat(&rustix::fs::fstat(&fd).unwrap());
        let top = Level::read(fd, Vec::new(), &m).unwrap();
        let path = |p: &[u8]| spec.entry_path(p).unwrap();
        assert!(open_child(&spec, &top, b"in", &path(b"in"), true).is_ok());
        assert!(open_child(&spec, &top, b"out", &path(b"out"), true).is_err());
        assert!(spec.referent(&path(b"out")).is_err());

        let (local, top) = self::top(&root.join("src"), true);
        let out = local.entry_path(b"out").unwrap();
        assert!(open_child(&local, &top, b"out", &out, true).is_ok());
        assert!(local.referent(&out).is_ok());
    }

    /// The streamed path's forwarder hands on at most its limit of a
    /// signature (cutting a batch short) and reads the rest to its end:
    /// what waits in its unbounded channel for a busy recipe builder is
    /// bounded by the limit, whatever the receiver sends.
    #[tokio::test(flavor = "multi_thread")]
    async fn forward_signature_hands_on_at_most_its_limit() {
        use crate::runtime::{Link, Services};
        let (got_tx, got_rx) = tokio::sync::oneshot::channel();
        let got_tx = std::sync::Mutex::new(Some(got_tx));
        let services = Services::new().with("sig", move |peer| {
            let got_tx = got_tx.lock().unwrap().take();
            async move {
                let mut c = peer.accept().await?.expect("a circuit");
                let (to, batches) = std::sync::mpsc::channel();
                let chunking = Chunking::from_bits(11).unwrap();
                forward_signature(c.halves().1, "test", to, chunking, 2500).await?;
                let sizes: Vec<usize> = batches.try_iter().map(|b| b.len()).collect();
                let next = c.recv().await?.map(|f| f.op);
                let _ = got_tx.expect("one circuit").send((sizes, next));
                Ok(())
            }
        });
        let (a, _b) = Link::pair(Arc::new(Services::new()), Arc::new(services))
            .await
            .unwrap();
        let peer = a.start("sig", &[]).await.unwrap();
        let mut c = peer.open().await.unwrap();
        for b in 0..4u64 {
            let chunks: Vec<chunker::ChunkRef> = (0..1000u64)
                .map(|i| chunker::ChunkRef {
                    hash: *blake3::hash(&(b * 1000 + i).to_le_bytes()).as_bytes(),
                    offset: b * 1000 + i,
                    len: 1,
                })
                .collect();
            let mut payload = Vec::new();
            chunker::encode_sig_batch(&chunks, &mut payload);
            c.send(Fragment::new(msg::SIG).with_payload(payload))
                .await
                .unwrap();
        }
        c.send(Fragment::new(msg::SIG_END)).await.unwrap();
        c.send(Fragment::new(msg::REPORT)).await.unwrap();
        let (sizes, next) = got_rx.await.unwrap();
        assert_eq!(sizes, [1000, 1000, 500]);
        assert_eq!(
            next,
            Some(msg::REPORT),
            "read to the signature's end, no further"
        );
        a.close("done").await;
    }

    /// A signature longer than the file warrants is kept only up to
    /// [`sig_limit`]: the chunks after it are neither indexed nor held.
    #[test]
    fn a_signature_is_kept_up_to_its_limit() {
        // 1 GiB is cut into chunks of 8 KiB at least (32 KiB on average).
        assert_eq!(sig_limit(1 << 30), 2 * (1 << 17) + 4096);
        assert_eq!(sig_limit(0), 4096);
        let size = 1 << 20;
        let limit = sig_limit(size);
        let mut theirs = Theirs::new(Chunking::from_bits(11).unwrap(), size);
        let sig: Vec<(u32, SigHash)> = (0..limit + 1000)
            .map(|i| (1, sig_hash(blake3::hash(&i.to_le_bytes()).as_bytes())))
            .collect();
        for batch in sig.chunks(300) {
            theirs.add(batch.to_vec());
        }
        assert_eq!(theirs.order.len(), limit);
        assert_eq!(theirs.index.len(), limit);
        assert_eq!(
            theirs.index.get(&sig[limit - 1].1),
            Some(&(limit as u64 - 1))
        );
        assert_eq!(theirs.index.get(&sig[limit].1), None);
    }
}
