//! Seeded random trees, random edits and a full-metadata comparison, so sync
//! tests can check many tree shapes instead of one hand-made tree.
//!
//! A test builds a tree from a seed ([`build`]), syncs it, compares the two
//! trees with [`snapshot`] + [`diff`] (and [`sparse_ok`] for holes), then
//! applies random edits ([`edit`]) and syncs again. Everything is a pure
//! function of the seed, so [`run_seeds`] prints the seed of a failing case and
//! `JSYNC_SEED=N` replays it alone.
//!
//! What a tree holds is chosen by [`Features`]: [`Features::basic`] is files,
//! directories and symlinks with plain names and ordinary modes, and
//! [`Features::all`] adds hard links, sparse files, `user.*` xattrs, odd names
//! (non-UTF-8 bytes, newlines, leading dashes, spaces, a 255-byte name, a
//! 20-level path) and setuid/setgid/sticky modes. Tests turn features on as the
//! engine learns them; a [`Snapshot`] taken with a feature off does not compare
//! what that feature is about (xattrs, hard-link groups).
//!
//! Every entry gets an explicit mtime with nanoseconds (symlinks too, and
//! directories last, deepest first), so a sync that drops any timestamp shows up
//! in the diff. Trees are small (about 20 to 120 entries, plus the deep path)
//! but hold a few files of 100 KiB to 2 MiB whose content repeats itself, so
//! chunk reuse is exercised, and sparse files of a few MiB that take little
//! disk. Modes always leave the owner able to enter directories, and edits of
//! files without owner write permission add it for the write, so the trees can
//! be edited without root; setting setuid/setgid bits exactly needs root.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use filetime::FileTime;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

/// A tiny seeded PRNG (splitmix64): fast, good enough for test data, and the
/// same sequence everywhere for a given seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// A number in `lo..hi` (`lo` when the range is empty).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo))
    }

    /// True with the given chance in percent.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }

    /// Appends `n` random bytes.
    pub fn bytes_into(&mut self, out: &mut Vec<u8>, n: usize) {
        let end = out.len() + n;
        while out.len() < end {
            let x = self.next_u64().to_le_bytes();
            let k = (end - out.len()).min(8);
            out.extend_from_slice(&x[..k]);
        }
    }
}

/// Which kinds of things a random tree (and its edits) may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    /// Groups of 2-3 names for one inode; snapshots compare the groups.
    pub hardlinks: bool,
    /// Files with multi-MiB holes (see [`sparse_ok`]).
    pub sparse: bool,
    /// `user.*` extended attributes on files and directories; snapshots
    /// compare them.
    pub xattrs: bool,
    /// Names with non-UTF-8 bytes, newlines, tabs, leading dashes and spaces,
    /// a 255-byte name, glob characters, and a path 20 directories deep.
    pub odd_names: bool,
    /// setuid, setgid and sticky bits.
    pub special_modes: bool,
}

impl Features {
    /// Everything.
    pub fn all() -> Features {
        Features {
            hardlinks: true,
            sparse: true,
            xattrs: true,
            odd_names: true,
            special_modes: true,
        }
    }

    /// Files, directories and symlinks with plain names and ordinary modes.
    pub fn basic() -> Features {
        Features {
            hardlinks: false,
            sparse: false,
            xattrs: false,
            odd_names: false,
            special_modes: false,
        }
    }
}

// ---------------------------------------------------------------------------
// Paths

/// `root` joined with a relative path of raw bytes (the empty path is `root`).
pub fn full(root: &Path, rel: &[u8]) -> PathBuf {
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(OsStr::from_bytes(rel))
    }
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut v = dir.to_vec();
    if !v.is_empty() {
        v.push(b'/');
    }
    v.extend_from_slice(name);
    v
}

fn parent(rel: &[u8]) -> &[u8] {
    match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => &rel[..i],
        None => b"",
    }
}

fn depth(rel: &[u8]) -> usize {
    if rel.is_empty() {
        0
    } else {
        rel.iter().filter(|&&b| b == b'/').count() + 1
    }
}

fn is_inside(rel: &[u8], dir: &[u8]) -> bool {
    rel.len() > dir.len() && rel.starts_with(dir) && rel[dir.len()] == b'/'
}

/// A relative path for messages: quoted, UTF-8 shown as text (with `\n` and
/// the like escaped), other bytes as `\xNN`; the root is `(root)`.
pub fn show(rel: &[u8]) -> String {
    if rel.is_empty() {
        return "(root)".to_string();
    }
    let mut s = String::from("\"");
    for chunk in rel.utf8_chunks() {
        for c in chunk.valid().chars() {
            s.extend(c.escape_debug());
        }
        for b in chunk.invalid() {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s.push('"');
    s
}

fn show_time(t: (i64, i64)) -> String {
    format!("{}.{:09}", t.0, t.1)
}

// ---------------------------------------------------------------------------
// Walking

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum T {
    File,
    Dir,
    Link,
    Other,
}

impl T {
    fn of(m: &fs::Metadata) -> T {
        let ft = m.file_type();
        if ft.is_symlink() {
            T::Link
        } else if ft.is_dir() {
            T::Dir
        } else if ft.is_file() {
            T::File
        } else {
            T::Other
        }
    }

    fn name(self) -> &'static str {
        match self {
            T::File => "file",
            T::Dir => "dir",
            T::Link => "symlink",
            T::Other => "special file",
        }
    }
}

#[derive(Debug, Clone)]
struct Ent {
    rel: Vec<u8>,
    t: T,
    meta: fs::Metadata,
}

/// Every entry under `root` except the root, not following symlinks, in a
/// fixed order (depth first, names sorted by bytes).
fn list(root: &Path) -> Vec<Ent> {
    fn walk(root: &Path, dir: &[u8], out: &mut Vec<Ent>) {
        let mut names: Vec<Vec<u8>> = fs::read_dir(full(root, dir))
            .unwrap_or_else(|e| panic!("read_dir {}: {e}", show(dir)))
            .map(|e| e.unwrap().file_name().into_vec())
            .collect();
        names.sort();
        for n in names {
            let rel = join(dir, &n);
            let meta = fs::symlink_metadata(full(root, &rel)).unwrap();
            let t = T::of(&meta);
            out.push(Ent { rel, t, meta });
            if t == T::Dir {
                let rel = out.last().unwrap().rel.clone();
                walk(root, &rel, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, b"", &mut out);
    out
}

fn mtime_of(m: &fs::Metadata) -> (i64, i64) {
    (m.mtime(), m.mtime_nsec())
}

// ---------------------------------------------------------------------------
// Xattrs

fn is_unsupported(e: rustix::io::Errno) -> bool {
    e == rustix::io::Errno::NOTSUP || e == rustix::io::Errno::OPNOTSUPP
}

/// Whether the file system under `dir` takes `user.*` xattrs (the probe sets
/// and removes one on `dir`, which changes only its ctime).
pub fn xattrs_supported(dir: &Path) -> bool {
    let name = "user.jsync-randtree-probe";
    match rustix::fs::lsetxattr(dir, name, b"1", rustix::fs::XattrFlags::empty()) {
        Ok(()) => {
            let _ = rustix::fs::lremovexattr(dir, name);
            true
        }
        Err(_) => false,
    }
}

/// The `user.*` xattrs of a path (not following symlinks), sorted by name.
pub fn user_xattrs(p: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let size = match rustix::fs::llistxattr_query(p) {
        Ok(n) => n,
        Err(e) if is_unsupported(e) => return Vec::new(),
        Err(e) => panic!("llistxattr {}: {e}", p.display()),
    };
    if size == 0 {
        return Vec::new();
    }
    let mut buf = vec![0u8; size];
    let n = rustix::fs::llistxattr(p, &mut buf[..]).unwrap();
    buf.truncate(n);
    let mut out = Vec::new();
    for name in buf.split(|&b| b == 0).filter(|n| n.starts_with(b"user.")) {
        let len = rustix::fs::lgetxattr_query(p, name).unwrap();
        let mut value = vec![0u8; len];
        let n = if len == 0 {
            0
        } else {
            rustix::fs::lgetxattr(p, name, &mut value[..]).unwrap()
        };
        value.truncate(n);
        out.push((name.to_vec(), value));
    }
    out.sort();
    out
}

fn set_xattr(p: &Path, name: &[u8], value: &[u8]) {
    rustix::fs::lsetxattr(p, name, value, rustix::fs::XattrFlags::empty()).unwrap_or_else(|e| {
        panic!(
            "setxattr {} on {}: {e}",
            String::from_utf8_lossy(name),
            p.display()
        )
    });
}

// ---------------------------------------------------------------------------
// The generator

const STEMS: &[&str] = &[
    "alpha", "beta", "gamma", "delta", "notes", "data", "src", "lib", "main", "README", "Makefile",
    "config", "index", "image", "log", "cache", "build", "docs", "test", "util", "x", "a.b",
];
const EXTS: &[&str] = &[
    "", "", "", ".txt", ".rs", ".bin", ".c", ".h", ".json", ".tar.gz", ".md", ".o",
];

/// Odd but legal names (none is `.` or `..` or has `/` or NUL).
const ODD_NAMES: &[&[u8]] = &[
    b"raw-\xff-name",
    b"caf\xe9",
    b"\xff\xfe",
    b"line\nbreak",
    b"\n",
    b"-rf",
    b"--help",
    b"-",
    b" leading space",
    b"trailing space ",
    b"two  spaces",
    b"tab\tname",
    b"\xc3\xa9t\xc3\xa9",
    b"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
    b"*star?[q]{a,b}",
    b"back\\slash",
    b".hidden",
    b"..dots",
    b"'quote\"",
    b"#hash;semi",
    b"~tilde",
    b"%25percent",
    b"\x01ctrl\x7f",
];

const FILE_MODES: &[u32] = &[
    0o644, 0o644, 0o644, 0o600, 0o755, 0o700, 0o640, 0o664, 0o444, 0o400,
];
const FILE_SPECIAL_MODES: &[u32] = &[0o4755, 0o2755, 0o6755, 0o4711, 0o1644];
const DIR_MODES: &[u32] = &[0o755, 0o755, 0o755, 0o700, 0o750, 0o775];
const DIR_SPECIAL_MODES: &[u32] = &[0o1777, 0o2755, 0o2775, 0o3777, 0o1755];

const XATTR_NAMES: &[&str] = &[
    "user.comment",
    "user.mime_type",
    "user.checksum",
    "user.jsync.test",
    "user.empty",
    "user.x",
];

const ABSOLUTE_TARGETS: &[&[u8]] = &[
    b"/etc/hostname",
    b"/nonexistent/jsync/absolute-target",
    b"/",
    b"/tmp/../etc//passwd",
];

const BUILD_SALT: u64 = 0x6275_696c_6400_0001;
const EDIT_SALT: u64 = 0x6564_6974_0000_0002;

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", p.display()));
}

fn set_mtime(p: &Path, t: T, time: FileTime) {
    let r = if t == T::Link {
        filetime::set_symlink_file_times(p, time, time)
    } else {
        filetime::set_file_mtime(p, time)
    };
    r.unwrap_or_else(|e| panic!("set mtime of {}: {e}", p.display()));
}

/// Runs `f` with owner write permission on `p`, restoring the mode afterwards.
fn writable<R>(p: &Path, f: impl FnOnce() -> R) -> R {
    let mode = fs::symlink_metadata(p).unwrap().mode() & 0o7777;
    let add = mode & 0o200 == 0;
    if add {
        chmod(p, mode | 0o200);
    }
    let r = f();
    if add {
        chmod(p, mode);
    }
    r
}

struct Gen<'a> {
    root: &'a Path,
    rng: Rng,
    f: Features,
    /// Xattrs wanted and supported here.
    xattrs: bool,
    /// How many more files of 100 KiB..2 MiB may be made.
    big_left: u32,
}

impl Gen<'_> {
    fn new<'r>(root: &'r Path, seed: u64, salt: u64, f: &Features) -> Gen<'r> {
        let mut rng = Rng::new(seed ^ salt);
        rng.next_u64();
        Gen {
            root,
            rng,
            f: *f,
            xattrs: false,
            big_left: 0,
        }
    }

    fn path(&self, rel: &[u8]) -> PathBuf {
        full(self.root, rel)
    }

    fn exists(&self, rel: &[u8]) -> bool {
        fs::symlink_metadata(self.path(rel)).is_ok()
    }

    fn plain_name(&mut self) -> Vec<u8> {
        let stem = *self.rng.pick(STEMS);
        let ext = *self.rng.pick(EXTS);
        if self.rng.chance(40) {
            format!("{stem}_{}{ext}", self.rng.below(100)).into_bytes()
        } else {
            format!("{stem}{ext}").into_bytes()
        }
    }

    /// A name not yet used in `dir`.
    fn fresh_name(&mut self, dir: &[u8]) -> Vec<u8> {
        let mut attempt = 0u32;
        loop {
            let mut name = if self.f.odd_names && self.rng.chance(25) {
                self.rng.pick(ODD_NAMES).to_vec()
            } else {
                self.plain_name()
            };
            if attempt >= 3 {
                name.extend_from_slice(format!("-{attempt}").as_bytes());
            }
            if !self.exists(&join(dir, &name)) {
                return name;
            }
            attempt += 1;
        }
    }

    fn file_mode(&mut self) -> u32 {
        if self.f.special_modes && self.rng.chance(12) {
            *self.rng.pick(FILE_SPECIAL_MODES)
        } else {
            *self.rng.pick(FILE_MODES)
        }
    }

    fn dir_mode(&mut self) -> u32 {
        if self.f.special_modes && self.rng.chance(20) {
            *self.rng.pick(DIR_SPECIAL_MODES)
        } else {
            *self.rng.pick(DIR_MODES)
        }
    }

    /// A time between 2000 and 2036, usually with nanoseconds.
    fn time(&mut self) -> FileTime {
        let s = self.rng.range(946_684_800, 2_100_000_000) as i64;
        let ns = match self.rng.below(10) {
            0 => 0,
            1 => self.rng.below(1_000_000) as u32 * 1000,
            _ => self.rng.below(1_000_000_000) as u32,
        };
        FileTime::from_unix_time(s, ns)
    }

    /// A new time different from `old`.
    fn new_time(&mut self, old: (i64, i64)) -> FileTime {
        loop {
            let t = self.time();
            if (t.unix_seconds(), t.nanoseconds() as i64) != old {
                return t;
            }
        }
    }

    fn file_size(&mut self) -> usize {
        let n = match self.rng.below(100) {
            0..=9 => 0,
            10..=44 => self.rng.range(1, 101),
            45..=79 => self.rng.range(101, 8 * KIB),
            80..=91 => self.rng.range(8 * KIB, 100 * KIB),
            _ if self.big_left > 0 => {
                self.big_left -= 1;
                self.rng.range(100 * KIB, 2 * MIB + 1)
            }
            _ => self.rng.range(8 * KIB, 100 * KIB),
        };
        n as usize
    }

    /// Content that repeats itself (random runs, copies of earlier regions,
    /// runs of one byte, text lines), so chunks recur within and across files.
    fn content(&mut self, len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len);
        while v.len() < len {
            let left = len - v.len();
            match self.rng.below(10) {
                0..=4 => {
                    let n = (self.rng.range(256, 32 * KIB) as usize).min(left);
                    self.rng.bytes_into(&mut v, n);
                }
                5..=7 if v.len() >= 4096 => {
                    let n = (self.rng.range(KIB, 64 * KIB) as usize)
                        .min(v.len())
                        .min(left);
                    let start = self.rng.below((v.len() - n + 1) as u64) as usize;
                    v.extend_from_within(start..start + n);
                }
                8 => {
                    let n = (self.rng.range(1, 16 * KIB) as usize).min(left);
                    let b = *self.rng.pick(&[0u8, b' ', 0xff]);
                    v.resize(v.len() + n, b);
                }
                _ => {
                    let n = (self.rng.range(16, 8 * KIB) as usize).min(left);
                    let end = v.len() + n;
                    while v.len() < end {
                        let line = format!(
                            "line {}: the quick brown fox {}\n",
                            self.rng.below(1000),
                            self.rng.below(10)
                        );
                        v.extend_from_slice(line.as_bytes());
                    }
                    v.truncate(end);
                }
            }
        }
        v
    }

    /// Writes a new file with a random mode and mtime; returns the mode.
    fn new_file(&mut self, rel: &[u8], data: &[u8]) -> u32 {
        let p = self.path(rel);
        fs::write(&p, data).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        let mode = self.file_mode();
        chmod(&p, mode);
        let t = self.time();
        set_mtime(&p, T::File, t);
        mode
    }

    /// A new empty directory with a random mode (its mtime is set later).
    fn new_dir(&mut self, rel: &[u8]) -> u32 {
        let p = self.path(rel);
        fs::create_dir(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        let mode = self.dir_mode();
        chmod(&p, mode);
        mode
    }

    fn new_symlink(&mut self, rel: &[u8], target: &[u8]) {
        let p = self.path(rel);
        std::os::unix::fs::symlink(OsStr::from_bytes(target), &p)
            .unwrap_or_else(|e| panic!("symlink {}: {e}", p.display()));
        let t = self.time();
        set_mtime(&p, T::Link, t);
    }

    /// A sparse file: data, a hole of 2-6 MiB, data (or no data before or
    /// after the hole, or no data at all). Returns (head, hole, tail).
    fn sparse_file(&mut self, rel: &[u8]) -> (u64, u64, u64) {
        let p = self.path(rel);
        let variant = self.rng.below(6);
        let head = if variant == 5 {
            0
        } else {
            self.rng.range(1, 64 * KIB)
        };
        let hole = self.rng.range(2 * MIB, 6 * MIB);
        let tail = if variant >= 4 {
            0
        } else {
            self.rng.range(1, 64 * KIB)
        };
        let head_data = self.content(head as usize);
        let tail_data = self.content(tail as usize);
        let write = || {
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&p)
                .unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
            file.set_len(head + hole + tail).unwrap();
            file.write_all_at(&head_data, 0).unwrap();
            file.write_all_at(&tail_data, head + hole).unwrap();
        };
        if fs::symlink_metadata(&p).is_ok() {
            writable(&p, write);
        } else {
            write();
            let mode = self.file_mode();
            chmod(&p, mode);
        }
        let t = self.time();
        set_mtime(&p, T::File, t);
        (head, hole, tail)
    }

    fn set_random_xattrs(&mut self, rel: &[u8]) {
        let p = self.path(rel);
        for _ in 0..self.rng.range(1, 4) {
            let name = *self.rng.pick(XATTR_NAMES);
            let value = self.xattr_value();
            set_xattr(&p, name.as_bytes(), &value);
        }
    }

    fn xattr_value(&mut self) -> Vec<u8> {
        let mut v = Vec::new();
        match self.rng.below(4) {
            0 => {}
            1 => v.extend_from_slice(format!("text value {}", self.rng.below(1000)).as_bytes()),
            2 => {
                let n = self.rng.range(1, 64) as usize;
                self.rng.bytes_into(&mut v, n);
            }
            _ => {
                let n = self.rng.range(64, 512) as usize;
                self.rng.bytes_into(&mut v, n);
            }
        }
        v
    }

    /// A symlink target for a link in `dir`: relative to an existing file or
    /// directory, dangling, absolute, or (with odd names) odd bytes.
    fn link_target(
        &mut self,
        dir: &[u8],
        files: &[Vec<u8>],
        dirs: &[Vec<u8>],
        kind: u64,
    ) -> Vec<u8> {
        let up = b"../".repeat(depth(dir));
        let relative_to = |to: &[u8]| -> Vec<u8> {
            let mut t = up.clone();
            t.extend_from_slice(to);
            while t.ends_with(b"/") {
                t.pop();
            }
            if t.is_empty() {
                t.push(b'.');
            }
            t
        };
        match kind {
            0..=3 if !files.is_empty() => {
                let to = self.rng.pick(files).clone();
                relative_to(&to)
            }
            0..=5 => {
                let to = self.rng.pick(dirs).clone();
                relative_to(&to)
            }
            6 => b"no-such-file".to_vec(),
            7 => {
                let mut t = relative_to(b"");
                t.extend_from_slice(b"/../missing/target");
                t
            }
            8 => self.rng.pick(ABSOLUTE_TARGETS).to_vec(),
            _ if self.f.odd_names => self.rng.pick(ODD_NAMES).to_vec(),
            _ => {
                let mut t = b"./".to_vec();
                t.extend(self.plain_name());
                t
            }
        }
    }

    fn pick_link_kind(&mut self) -> u64 {
        self.rng.below(10)
    }

    /// Directories of the tree, deepest first (then by name), root last.
    fn set_dir_times(&mut self, only_if: impl Fn(&[u8], (i64, i64)) -> bool) -> Vec<Vec<u8>> {
        let mut dirs: Vec<(Vec<u8>, (i64, i64))> = list(self.root)
            .into_iter()
            .filter(|e| e.t == T::Dir)
            .map(|e| (e.rel, mtime_of(&e.meta)))
            .collect();
        dirs.push((Vec::new(), mtime_of(&fs::metadata(self.root).unwrap())));
        dirs.sort_by(|a, b| depth(&b.0).cmp(&depth(&a.0)).then_with(|| a.0.cmp(&b.0)));
        let mut set = Vec::new();
        for (rel, old) in dirs {
            if only_if(&rel, old) {
                let t = self.new_time(old);
                set_mtime(&self.path(&rel), T::Dir, t);
                set.push(rel);
            }
        }
        set
    }
}

/// Builds a random tree under `root` (created if missing; it should be empty)
/// from `seed`: about 20 to 120 entries (plus a 20-level path with odd names)
/// of the kinds `f` allows, with random modes and mtimes on everything,
/// directories included (the root too). The same seed and features give the
/// same tree. Returns a description: a summary line, then notes (e.g. that the
/// file system refused xattrs, in which case none were set).
pub fn build(root: &Path, seed: u64, f: &Features) -> Vec<String> {
    fs::create_dir_all(root).unwrap();
    let mut g = Gen::new(root, seed, BUILD_SALT, f);
    let mut notes = Vec::new();
    if f.xattrs {
        g.xattrs = xattrs_supported(root);
        if !g.xattrs {
            notes.push(format!(
                "xattrs: the file system under {} refuses user xattrs; none were set",
                root.display()
            ));
        }
    }
    g.big_left = 3;
    let target = g.rng.range(20, 121) as usize;
    let mut dirs: Vec<Vec<u8>> = vec![Vec::new()];
    let mut files: Vec<Vec<u8>> = Vec::new();
    let root_mode = g.dir_mode();
    chmod(root, root_mode);

    // Directories, at most 5 deep.
    for _ in 0..target / 5 {
        let shallow: Vec<Vec<u8>> = dirs.iter().filter(|d| depth(d) < 5).cloned().collect();
        let parent = g.rng.pick(&shallow).clone();
        let name = g.fresh_name(&parent);
        let rel = join(&parent, &name);
        g.new_dir(&rel);
        dirs.push(rel);
    }

    // With odd names: one of each kind that must be there, and a deep path.
    let mut odd = 0;
    if f.odd_names {
        let mut long = b"long-".to_vec();
        while long.len() + 2 <= 255 {
            long.extend_from_slice("\u{e9}".as_bytes());
        }
        long.resize(255, b'x');
        let musts: [&[u8]; 7] = [
            &long,
            b"raw-\xff-name",
            b"caf\xe9",
            b"embedded\nnewline",
            b"-rf",
            b" leading space",
            b"trailing space ",
        ];
        for (i, name) in musts.iter().enumerate() {
            let dir = g.rng.pick(&dirs).clone();
            let rel = join(&dir, name);
            if g.exists(&rel) {
                continue;
            }
            if i == 2 {
                // A Latin-1 directory name with a file in it.
                g.new_dir(&rel);
                let inner = join(&rel, b"inside");
                let data = g.content(50);
                g.new_file(&inner, &data);
                files.push(inner);
                dirs.push(rel);
                odd += 2;
            } else {
                let n = g.rng.range(0, 200) as usize;
                let data = g.content(n);
                g.new_file(&rel, &data);
                files.push(rel);
                odd += 1;
            }
        }
        let mut rel = b"deep".to_vec();
        g.new_dir(&rel);
        for i in 1..20 {
            rel = join(&rel, format!("d{i:02}").as_bytes());
            g.new_dir(&rel);
        }
        let bottom = join(&rel, b"bottom.txt");
        g.new_file(&bottom, b"twenty levels down\n");
        files.push(bottom);
        odd += 21;
    }

    let n_links = (target / 8).max(3);
    let n_groups = (if f.hardlinks { g.rng.range(2, 4) } else { 0 }) as usize;
    let n_sparse = (if f.sparse { g.rng.range(1, 3) } else { 0 }) as usize;
    let n_files = target
        .saturating_sub(dirs.len() - 1 + n_links + 2 * n_groups + n_sparse)
        .max(5);

    // Regular files; the first one big, so chunk reuse is always exercised.
    let mut big = 0;
    for i in 0..n_files {
        let dir = g.rng.pick(&dirs).clone();
        let name = g.fresh_name(&dir);
        let rel = join(&dir, &name);
        let len = if i == 0 {
            g.big_left -= 1;
            g.rng.range(100 * KIB, 2 * MIB + 1) as usize
        } else {
            g.file_size()
        };
        if len as u64 >= 100 * KIB {
            big += 1;
        }
        let data = g.content(len);
        g.new_file(&rel, &data);
        files.push(rel);
    }

    let mut sparse = Vec::new();
    for _ in 0..n_sparse {
        let dir = g.rng.pick(&dirs).clone();
        let name = g.fresh_name(&dir);
        let rel = join(&dir, &name);
        g.sparse_file(&rel);
        sparse.push(rel);
    }

    // Symlinks: the first three are to a file, dangling and absolute.
    for i in 0..n_links {
        let dir = g.rng.pick(&dirs).clone();
        let name = g.fresh_name(&dir);
        let rel = join(&dir, &name);
        let kind = match i {
            0 => 0,
            1 => 6,
            2 => 8,
            _ => g.pick_link_kind(),
        };
        let target = g.link_target(&dir, &files, &dirs, kind);
        g.new_symlink(&rel, &target);
    }

    // Hard-link groups of 2-3 names.
    let mut linked: BTreeSet<Vec<u8>> = BTreeSet::new();
    let mut extra_names = 0;
    for _ in 0..n_groups {
        let first = g.rng.pick(&files).clone();
        if !linked.insert(first.clone()) {
            continue;
        }
        for _ in 0..g.rng.range(1, 3) {
            let dir = g.rng.pick(&dirs).clone();
            let name = g.fresh_name(&dir);
            let rel = join(&dir, &name);
            fs::hard_link(g.path(&first), g.path(&rel)).unwrap();
            extra_names += 1;
        }
    }

    // Empty directories.
    for _ in 0..g.rng.range(1, 3) {
        let shallow: Vec<Vec<u8>> = dirs.iter().filter(|d| depth(d) < 5).cloned().collect();
        let parent = g.rng.pick(&shallow).clone();
        let name = g.fresh_name(&parent);
        g.new_dir(&join(&parent, &name));
    }

    let mut with_xattrs = 0;
    if g.xattrs {
        for e in list(root) {
            if e.t != T::Link && g.rng.chance(20) {
                g.set_random_xattrs(&e.rel);
                with_xattrs += 1;
            }
        }
        if g.rng.chance(30) {
            g.set_random_xattrs(b"");
            with_xattrs += 1;
        }
    }

    g.set_dir_times(|_, _| true);

    let entries = list(root).len();
    let mut out = vec![format!(
        "seed {seed}: {entries} entries: {} files ({big} of 100 KiB+), {} dirs, \
         {n_links} symlinks, {} hard-link groups ({extra_names} extra names), \
         {} sparse files, {odd} odd-named entries, {with_xattrs} with xattrs",
        files.len(),
        dirs.len() - 1,
        linked.len(),
        sparse.len(),
    )];
    out.append(&mut notes);
    out
}

/// The kinds of edit [`edit`] makes; each description starts with one of these.
pub const EDIT_KINDS: &[&str] = &[
    "create-file",
    "create-dir",
    "create-symlink",
    "delete",
    "delete-dir",
    "truncate",
    "grow",
    "insert",
    "overwrite",
    "same-size",
    "chmod",
    "touch",
    "rename",
    "retarget",
    "replace",
    "link-add",
    "link-break",
    "hole",
    "xattr",
];

/// Applies `n` random edits to the tree under `root` (as [`build`] made it,
/// or any tree) and returns one description per edit, plus (when any) a last
/// `dir-mtimes ...` line naming (up to ten of) the directories that were given
/// new random mtimes because their contents changed. Every edit changes what a
/// [`snapshot`] with the same features sees: content changes come with a new
/// mtime (same-size changes too), `touch` changes only the mtime, `xattr`
/// changes only an xattr (the mtime stays), `link-break` replaces one name of
/// a hard-link group with a copy of the same content, mode and mtime. The same
/// tree, seed and features give the same edits.
pub fn edit(root: &Path, seed: u64, f: &Features, n: usize) -> Vec<String> {
    let mut g = Gen::new(root, seed, EDIT_SALT, f);
    g.xattrs = f.xattrs && xattrs_supported(root);
    g.big_left = 1;
    let mut before: BTreeMap<Vec<u8>, (i64, i64)> = list(root)
        .into_iter()
        .filter(|e| e.t == T::Dir)
        .map(|e| (e.rel, mtime_of(&e.meta)))
        .collect();
    before.insert(Vec::new(), mtime_of(&fs::metadata(root).unwrap()));

    let mut kinds: Vec<(&str, u64)> = vec![
        ("create-file", 3),
        ("create-dir", 1),
        ("create-symlink", 1),
        ("delete", 2),
        ("delete-dir", 1),
        ("truncate", 1),
        ("grow", 2),
        ("insert", 2),
        ("overwrite", 2),
        ("same-size", 2),
        ("chmod", 1),
        ("touch", 1),
        ("rename", 2),
        ("retarget", 1),
        ("replace", 2),
    ];
    if f.hardlinks {
        kinds.push(("link-add", 1));
        kinds.push(("link-break", 1));
    }
    if f.sparse {
        kinds.push(("hole", 1));
    }
    if g.xattrs {
        kinds.push(("xattr", 1));
    }
    let total: u64 = kinds.iter().map(|k| k.1).sum();

    let mut out = Vec::new();
    let mut tries = 0;
    while out.len() < n {
        tries += 1;
        assert!(
            tries < 100 * (n + 1),
            "edit: no applicable edit after {tries} tries"
        );
        let mut x = g.rng.below(total);
        let kind = kinds
            .iter()
            .find(|k| {
                if x < k.1 {
                    true
                } else {
                    x -= k.1;
                    false
                }
            })
            .unwrap()
            .0;
        let ents = list(root);
        if let Some(d) = g.apply(kind, &ents) {
            out.push(d);
        }
    }

    let changed = g.set_dir_times(|rel, now| before.get(rel) != Some(&now));
    if !changed.is_empty() {
        let mut names: Vec<String> = changed.iter().take(10).map(|d| show(d)).collect();
        if changed.len() > 10 {
            names.push(format!("and {} more", changed.len() - 10));
        }
        out.push(format!("dir-mtimes {}", names.join(", ")));
    }
    out
}

impl Gen<'_> {
    fn pick_ent<'e>(&mut self, ents: &'e [Ent], pred: impl Fn(&Ent) -> bool) -> Option<&'e Ent> {
        let c: Vec<&Ent> = ents.iter().filter(|e| pred(e)).collect();
        if c.is_empty() {
            None
        } else {
            Some(c[self.rng.below(c.len() as u64) as usize])
        }
    }

    /// A directory (the root included) at most `max_depth` deep.
    fn pick_dir(&mut self, ents: &[Ent], max_depth: usize) -> Vec<u8> {
        let mut dirs: Vec<&[u8]> = vec![b""];
        dirs.extend(
            ents.iter()
                .filter(|e| e.t == T::Dir && depth(&e.rel) <= max_depth)
                .map(|e| e.rel.as_slice()),
        );
        self.rng.pick(&dirs).to_vec()
    }

    fn new_target(&mut self, dir: &[u8], ents: &[Ent]) -> Vec<u8> {
        let files: Vec<Vec<u8>> = ents
            .iter()
            .filter(|e| e.t == T::File)
            .map(|e| e.rel.clone())
            .collect();
        let mut dirs: Vec<Vec<u8>> = vec![Vec::new()];
        dirs.extend(ents.iter().filter(|e| e.t == T::Dir).map(|e| e.rel.clone()));
        let kind = self.pick_link_kind();
        self.link_target(dir, &files, &dirs, kind)
    }

    /// Makes one entry of kind `t` at `rel` (which must not exist).
    fn create(&mut self, rel: &[u8], t: T, ents: &[Ent]) -> String {
        match t {
            T::Dir => {
                let mode = self.new_dir(rel);
                let k = self.rng.below(3);
                for _ in 0..k {
                    let name = self.fresh_name(rel);
                    let len = self.file_size();
                    let data = self.content(len);
                    self.new_file(&join(rel, &name), &data);
                }
                format!("mode {mode:04o}, {k} files")
            }
            T::Link => {
                let target = self.new_target(parent(rel), ents);
                self.new_symlink(rel, &target);
                format!("-> {}", show(&target))
            }
            _ => {
                let len = self.file_size();
                let data = self.content(len);
                let mode = self.new_file(rel, &data);
                format!("{len} bytes, mode {mode:04o}")
            }
        }
    }

    fn apply(&mut self, kind: &str, ents: &[Ent]) -> Option<String> {
        let root = self.root;
        match kind {
            "create-file" => {
                let dir = self.pick_dir(ents, usize::MAX);
                let rel = join(&dir, &self.fresh_name(&dir));
                let copy_of = if self.rng.chance(20) {
                    self.pick_ent(ents, |e| e.t == T::File && e.meta.len() > 0)
                } else {
                    None
                };
                let what = match copy_of {
                    Some(src) => {
                        let data = fs::read(full(root, &src.rel)).unwrap();
                        let mode = self.new_file(&rel, &data);
                        format!("copy of {}, mode {mode:04o}", show(&src.rel))
                    }
                    None => self.create(&rel, T::File, ents),
                };
                Some(format!("create-file {} ({what})", show(&rel)))
            }
            "create-dir" => {
                let dir = self.pick_dir(ents, 4);
                let rel = join(&dir, &self.fresh_name(&dir));
                let what = self.create(&rel, T::Dir, ents);
                Some(format!("create-dir {} ({what})", show(&rel)))
            }
            "create-symlink" => {
                let dir = self.pick_dir(ents, usize::MAX);
                let rel = join(&dir, &self.fresh_name(&dir));
                let what = self.create(&rel, T::Link, ents);
                Some(format!("create-symlink {} {what}", show(&rel)))
            }
            "delete" => {
                let e = self.pick_ent(ents, |e| e.t != T::Dir)?;
                fs::remove_file(full(root, &e.rel)).unwrap();
                Some(format!("delete {} ({})", show(&e.rel), e.t.name()))
            }
            "delete-dir" => {
                let e = self.pick_ent(ents, |e| e.t == T::Dir)?;
                let inside = ents.iter().filter(|x| is_inside(&x.rel, &e.rel)).count();
                fs::remove_dir_all(full(root, &e.rel)).unwrap();
                Some(format!(
                    "delete-dir {} ({inside} entries inside)",
                    show(&e.rel)
                ))
            }
            "truncate" | "grow" | "insert" | "overwrite" | "same-size" => {
                let needs_data = kind != "grow";
                let e = self.pick_ent(ents, |e| {
                    e.t == T::File && (!needs_data || e.meta.len() > 0)
                })?;
                let p = full(root, &e.rel);
                let size = e.meta.len();
                let what = match kind {
                    "truncate" => {
                        let new = self.rng.below(size);
                        writable(&p, || {
                            OpenOptions::new()
                                .write(true)
                                .open(&p)
                                .unwrap()
                                .set_len(new)
                                .unwrap()
                        });
                        format!("{size} -> {new} bytes")
                    }
                    "grow" => {
                        let n = if self.rng.chance(10) {
                            self.rng.range(100 * KIB, 300 * KIB)
                        } else {
                            self.rng.range(1, 64 * KIB)
                        } as usize;
                        let data = self.content(n);
                        writable(&p, || {
                            OpenOptions::new()
                                .append(true)
                                .open(&p)
                                .unwrap()
                                .write_all(&data)
                                .unwrap()
                        });
                        format!("{size} -> {} bytes", size + n as u64)
                    }
                    "insert" => {
                        let at = self.rng.below(size + 1) as usize;
                        let n = self.rng.range(1, 4097) as usize;
                        let new = self.content(n);
                        let mut data = fs::read(&p).unwrap();
                        data.splice(at..at, new);
                        writable(&p, || fs::write(&p, &data).unwrap());
                        format!("{n} bytes at {at} (now {} bytes)", data.len())
                    }
                    _ => {
                        // Overwrite a region (or, for same-size, a few bytes) with
                        // different bytes: every byte is XORed with a non-zero one.
                        let max = if kind == "same-size" { 8 } else { 16 * KIB };
                        let at = self.rng.below(size);
                        let n = self.rng.range(1, max + 1).min(size - at);
                        let file = OpenOptions::new().read(true).open(&p);
                        let mut buf = vec![0u8; n as usize];
                        file.unwrap().read_exact_at(&mut buf, at).unwrap();
                        for b in &mut buf {
                            *b ^= self.rng.range(1, 256) as u8;
                        }
                        writable(&p, || {
                            OpenOptions::new()
                                .write(true)
                                .open(&p)
                                .unwrap()
                                .write_all_at(&buf, at)
                                .unwrap()
                        });
                        format!("{n} bytes at {at} of {size}")
                    }
                };
                let t = self.new_time(mtime_of(&e.meta));
                set_mtime(&p, T::File, t);
                Some(format!("{kind} {}: {what}, new mtime", show(&e.rel)))
            }
            "chmod" => {
                let e = self.pick_ent(ents, |e| e.t == T::File || e.t == T::Dir)?;
                let old = e.meta.mode() & 0o7777;
                let mut new = old;
                for _ in 0..10 {
                    new = if e.t == T::Dir {
                        self.dir_mode()
                    } else {
                        self.file_mode()
                    };
                    if new != old {
                        break;
                    }
                }
                if new == old {
                    new ^= 0o040;
                }
                chmod(&full(root, &e.rel), new);
                Some(format!("chmod {} {old:04o} -> {new:04o}", show(&e.rel)))
            }
            "touch" => {
                let e = self.pick_ent(ents, |e| e.t != T::Other)?;
                let t = self.new_time(mtime_of(&e.meta));
                set_mtime(&full(root, &e.rel), e.t, t);
                Some(format!(
                    "touch {} ({}, content unchanged)",
                    show(&e.rel),
                    e.t.name()
                ))
            }
            "rename" => {
                let e = self.pick_ent(ents, |_| true)?;
                let dirs: Vec<&Ent> = ents
                    .iter()
                    .filter(|d| d.t == T::Dir && d.rel != e.rel && !is_inside(&d.rel, &e.rel))
                    .collect();
                let mut dest_dirs: Vec<&[u8]> = vec![b""];
                dest_dirs.extend(dirs.iter().map(|d| d.rel.as_slice()));
                let dir = self.rng.pick(&dest_dirs).to_vec();
                // Sometimes onto an existing non-directory of another inode.
                let victim = if e.t != T::Dir && self.rng.chance(25) {
                    self.pick_ent(ents, |v| {
                        v.t != T::Dir
                            && v.rel != e.rel
                            && parent(&v.rel) == dir.as_slice()
                            && v.meta.ino() != e.meta.ino()
                    })
                } else {
                    None
                };
                let (to, note) = match victim {
                    Some(v) => (v.rel.clone(), " (replacing it)"),
                    None => (join(&dir, &self.fresh_name(&dir)), ""),
                };
                fs::rename(full(root, &e.rel), full(root, &to)).unwrap();
                Some(format!(
                    "rename {} {} -> {}{note}",
                    e.t.name(),
                    show(&e.rel),
                    show(&to)
                ))
            }
            "retarget" => {
                let e = self.pick_ent(ents, |e| e.t == T::Link)?;
                let p = full(root, &e.rel);
                let old = fs::read_link(&p).unwrap().into_os_string().into_vec();
                let mut new = self.new_target(parent(&e.rel), ents);
                if new == old {
                    new.extend_from_slice(b"-changed");
                }
                fs::remove_file(&p).unwrap();
                self.new_symlink(&e.rel, &new);
                Some(format!(
                    "retarget {}: {} -> {}",
                    show(&e.rel),
                    show(&old),
                    show(&new)
                ))
            }
            "replace" => {
                let e = self.pick_ent(ents, |e| e.t != T::Other)?;
                let others: Vec<T> = [T::File, T::Dir, T::Link]
                    .into_iter()
                    .filter(|t| *t != e.t)
                    .collect();
                let t = *self.rng.pick(&others);
                let p = full(root, &e.rel);
                if e.t == T::Dir {
                    fs::remove_dir_all(&p).unwrap();
                } else {
                    fs::remove_file(&p).unwrap();
                }
                let ents: Vec<Ent> = ents
                    .iter()
                    .filter(|x| x.rel != e.rel && !is_inside(&x.rel, &e.rel))
                    .cloned()
                    .collect();
                let what = self.create(&e.rel, t, &ents);
                Some(format!(
                    "replace {}: {} -> {} ({what})",
                    show(&e.rel),
                    e.t.name(),
                    t.name()
                ))
            }
            "link-add" => {
                let e = self.pick_ent(ents, |e| e.t == T::File)?;
                let dir = self.pick_dir(ents, usize::MAX);
                let rel = join(&dir, &self.fresh_name(&dir));
                fs::hard_link(full(root, &e.rel), full(root, &rel)).unwrap();
                Some(format!("link-add {} as {}", show(&e.rel), show(&rel)))
            }
            "link-break" => {
                let e = self.pick_ent(ents, |e| e.t == T::File && e.meta.nlink() > 1)?;
                let p = full(root, &e.rel);
                let data = fs::read(&p).unwrap();
                let xattrs = if self.xattrs {
                    user_xattrs(&p)
                } else {
                    Vec::new()
                };
                fs::remove_file(&p).unwrap();
                fs::write(&p, &data).unwrap();
                for (name, value) in &xattrs {
                    set_xattr(&p, name, value);
                }
                chmod(&p, e.meta.mode() & 0o7777);
                let (s, ns) = mtime_of(&e.meta);
                set_mtime(&p, T::File, FileTime::from_unix_time(s, ns as u32));
                Some(format!(
                    "link-break {}: now a copy (same content, mode and mtime)",
                    show(&e.rel)
                ))
            }
            "hole" => {
                let e = self.pick_ent(ents, |e| e.t == T::File);
                let (rel, was) = match e {
                    Some(e) => (e.rel.clone(), format!("{} bytes", e.meta.len())),
                    None => {
                        let dir = self.pick_dir(ents, usize::MAX);
                        (join(&dir, &self.fresh_name(&dir)), "new".to_string())
                    }
                };
                let (head, hole, tail) = self.sparse_file(&rel);
                Some(format!(
                    "hole {} (was {was}): {head} bytes, a {hole}-byte hole, {tail} bytes, new mtime",
                    show(&rel)
                ))
            }
            "xattr" => {
                let e = self.pick_ent(ents, |e| e.t == T::File || e.t == T::Dir)?;
                let p = full(root, &e.rel);
                let have = user_xattrs(&p);
                if !have.is_empty() && self.rng.chance(30) {
                    let (name, _) = self.rng.pick(&have);
                    rustix::fs::lremovexattr(&p, name.as_slice()).unwrap();
                    return Some(format!(
                        "xattr {}: remove {} (mtime unchanged)",
                        show(&e.rel),
                        show(name)
                    ));
                }
                let name = self.rng.pick(XATTR_NAMES).as_bytes().to_vec();
                let old = have
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.clone());
                let mut value = self.xattr_value();
                if Some(&value) == old.as_ref() {
                    value.push(b'!');
                }
                set_xattr(&p, &name, &value);
                Some(format!(
                    "xattr {}: set {} ({} bytes; mtime unchanged)",
                    show(&e.rel),
                    show(&name),
                    value.len()
                ))
            }
            other => panic!("unknown edit kind {other}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Snapshots

/// What an entry is, with what identifies its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    File {
        size: u64,
        hash: [u8; 32],
    },
    Dir,
    Symlink {
        target: Vec<u8>,
    },
    /// A FIFO, socket or device: the file-type bits of st_mode and st_rdev.
    Other {
        file_type: u32,
        rdev: u64,
    },
}

impl Kind {
    fn name(&self) -> &'static str {
        match self {
            Kind::File { .. } => "file",
            Kind::Dir => "dir",
            Kind::Symlink { .. } => "symlink",
            Kind::Other { .. } => "special file",
        }
    }
}

/// One entry of a [`Snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    /// `st_mode & 0o7777` (always 0o777 for symlinks on Linux).
    pub mode: u32,
    /// Seconds and nanoseconds, for every kind (symlinks' own mtime).
    pub mtime: (i64, i64),
    /// `user.*` xattrs sorted by name; empty unless the snapshot was taken
    /// with [`Features::xattrs`].
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Everything a sync should preserve about a tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// By path relative to the root, as raw bytes. The root itself is the
    /// empty path (its mode, mtime and xattrs; its own name is not recorded).
    pub entries: BTreeMap<Vec<u8>, Entry>,
    /// With [`Features::hardlinks`]: for each inode with more than one name in
    /// the tree, its sorted names; the groups sorted. Empty otherwise.
    pub hardlinks: Vec<Vec<Vec<u8>>>,
}

fn entry(p: &Path, m: &fs::Metadata, f: &Features) -> Entry {
    let kind = match T::of(m) {
        T::File => {
            let mut h = blake3::Hasher::new();
            let mut file = File::open(p).unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
            let size = std::io::copy(&mut file, &mut h).unwrap();
            Kind::File {
                size,
                hash: *h.finalize().as_bytes(),
            }
        }
        T::Dir => Kind::Dir,
        T::Link => Kind::Symlink {
            target: fs::read_link(p).unwrap().into_os_string().into_vec(),
        },
        T::Other => Kind::Other {
            file_type: m.mode() & libc::S_IFMT,
            rdev: m.rdev(),
        },
    };
    Entry {
        kind,
        mode: m.mode() & 0o7777,
        mtime: mtime_of(m),
        xattrs: if f.xattrs { user_xattrs(p) } else { Vec::new() },
    }
}

/// Records every entry under `root` (not following symlinks), including the
/// root itself under the empty path. Xattrs and hard-link groups are recorded
/// only when `f` enables them.
pub fn snapshot(root: &Path, f: &Features) -> Snapshot {
    let mut s = Snapshot::default();
    let m = fs::symlink_metadata(root).unwrap_or_else(|e| panic!("{}: {e}", root.display()));
    s.entries.insert(Vec::new(), entry(root, &m, f));
    let mut inodes: BTreeMap<(u64, u64), Vec<Vec<u8>>> = BTreeMap::new();
    for e in list(root) {
        let p = full(root, &e.rel);
        if f.hardlinks && e.t == T::File && e.meta.nlink() > 1 {
            inodes
                .entry((e.meta.dev(), e.meta.ino()))
                .or_default()
                .push(e.rel.clone());
        }
        s.entries.insert(e.rel, entry(&p, &e.meta, f));
    }
    s.hardlinks = inodes
        .into_values()
        .filter(|g| g.len() > 1)
        .map(|mut g| {
            g.sort();
            g
        })
        .collect();
    s.hardlinks.sort();
    s
}

fn show_group(g: &[Vec<u8>]) -> String {
    let names: Vec<String> = g.iter().map(|p| show(p)).collect();
    format!("[{}]", names.join(", "))
}

fn show_xattrs(x: &[(Vec<u8>, Vec<u8>)]) -> String {
    let items: Vec<String> = x
        .iter()
        .map(|(n, v)| format!("{}={} bytes", show(n), v.len()))
        .collect();
    format!("{{{}}}", items.join(", "))
}

/// The differences between an `expected` and an `actual` snapshot, one line
/// each (missing and extra paths, then each differing field, then hard-link
/// groups); empty when they are the same.
pub fn diff(expected: &Snapshot, actual: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    for (p, a) in &expected.entries {
        let Some(b) = actual.entries.get(p) else {
            out.push(format!("{}: missing ({} expected)", show(p), a.kind.name()));
            continue;
        };
        let at = show(p);
        if a.kind.name() != b.kind.name() {
            out.push(format!(
                "{at}: is a {}, expected a {}",
                b.kind.name(),
                a.kind.name()
            ));
            continue;
        }
        match (&a.kind, &b.kind) {
            (Kind::File { size: sa, hash: ha }, Kind::File { size: sb, hash: hb }) => {
                if sa != sb {
                    out.push(format!("{at}: size {sb}, expected {sa}"));
                } else if ha != hb {
                    out.push(format!("{at}: content differs (same size {sa})"));
                }
            }
            (Kind::Symlink { target: ta }, Kind::Symlink { target: tb }) if ta != tb => {
                out.push(format!(
                    "{at}: symlink to {}, expected {}",
                    show(tb),
                    show(ta)
                ));
            }
            (Kind::Other { .. }, Kind::Other { .. }) if a.kind != b.kind => {
                out.push(format!("{at}: {:?}, expected {:?}", b.kind, a.kind));
            }
            _ => {}
        }
        if a.mode != b.mode {
            out.push(format!(
                "{at}: mode {:04o}, expected {:04o}",
                b.mode, a.mode
            ));
        }
        if a.mtime != b.mtime {
            out.push(format!(
                "{at}: mtime {}, expected {}",
                show_time(b.mtime),
                show_time(a.mtime)
            ));
        }
        if a.xattrs != b.xattrs {
            out.push(format!(
                "{at}: xattrs {}, expected {}",
                show_xattrs(&b.xattrs),
                show_xattrs(&a.xattrs)
            ));
        }
    }
    for (p, b) in &actual.entries {
        if !expected.entries.contains_key(p) {
            out.push(format!("{}: extra ({})", show(p), b.kind.name()));
        }
    }
    let ga: BTreeSet<&Vec<Vec<u8>>> = expected.hardlinks.iter().collect();
    let gb: BTreeSet<&Vec<Vec<u8>>> = actual.hardlinks.iter().collect();
    for g in ga.difference(&gb) {
        out.push(format!(
            "hard links: {} expected as one inode, not so",
            show_group(g)
        ));
    }
    for g in gb.difference(&ga) {
        out.push(format!(
            "hard links: {} share an inode, not expected",
            show_group(g)
        ));
    }
    out
}

/// `Ok` when the snapshots are the same, else the differences (at most 40
/// lines) as the error.
pub fn same(expected: &Snapshot, actual: &Snapshot) -> Result<(), String> {
    let d = diff(expected, actual);
    if d.is_empty() {
        return Ok(());
    }
    let mut msg = d.iter().take(40).cloned().collect::<Vec<_>>().join("\n");
    if d.len() > 40 {
        msg.push_str(&format!("\n... and {} more differences", d.len() - 40));
    }
    Err(msg)
}

/// For every regular file under `src` that is sparse (its allocated size is
/// more than 1 MiB below its length), checks that the file of the same path
/// under `dst` is sparse too; returns one line per file that is not.
pub fn sparse_ok(src: &Path, dst: &Path) -> Vec<String> {
    let holes = |m: &fs::Metadata| m.len().saturating_sub(m.blocks() * 512);
    let mut out = Vec::new();
    for e in list(src) {
        if e.t != T::File || holes(&e.meta) <= MIB {
            continue;
        }
        let at = show(&e.rel);
        match fs::symlink_metadata(full(dst, &e.rel)) {
            Err(err) => out.push(format!("{at}: sparse in the source, missing ({err})")),
            Ok(m) if !m.is_file() => out.push(format!("{at}: sparse in the source, not a file")),
            Ok(m) if holes(&m) <= MIB => out.push(format!(
                "{at}: sparse in the source ({} of {} bytes allocated), not in the copy ({} allocated)",
                e.meta.blocks() * 512,
                e.meta.len(),
                m.blocks() * 512
            )),
            Ok(_) => {}
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Running seeded cases

/// The seed `JSYNC_SEED` asks to replay (decimal or `0x` hex), if set.
pub fn replay_seed() -> Option<u64> {
    let s = std::env::var("JSYNC_SEED").ok()?;
    let s = s.trim();
    let parsed = match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    Some(parsed.unwrap_or_else(|e| panic!("JSYNC_SEED={s:?}: {e}")))
}

/// Runs `case` for each seed (or only for `JSYNC_SEED` when that is set),
/// going on past failures, and panics listing every failing seed as
/// `seed N: message` (a panic inside a case counts as its failure).
pub fn run_seeds(
    seeds: impl IntoIterator<Item = u64>,
    mut case: impl FnMut(u64) -> Result<(), String>,
) {
    let seeds: Vec<u64> = match replay_seed() {
        Some(s) => vec![s],
        None => seeds.into_iter().collect(),
    };
    let mut failures = Vec::new();
    for &seed in &seeds {
        eprintln!("randtree: seed {seed}");
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(seed)));
        match r {
            Ok(Ok(())) => {}
            Ok(Err(msg)) => failures.push(format!("seed {seed}: {msg}")),
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "(non-string panic)".to_string());
                failures.push(format!("seed {seed}: panicked: {msg}"));
            }
        }
    }
    if !failures.is_empty() {
        panic!(
            "{} of {} seeds failed (replay one with JSYNC_SEED=N):\n{}",
            failures.len(),
            seeds.len(),
            failures.join("\n")
        );
    }
}
