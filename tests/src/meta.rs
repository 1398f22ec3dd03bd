//! Everything the file system says about a tree, change time included, for
//! tests that must prove an operation (a dry run, say) touched nothing: any
//! write, chmod, chown, utimes, xattr change, rename or new temp file shows up.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::randtree::{full, show, user_xattrs};

/// One entry as `lstat` and a read see it (atime left out: reading changes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FullMeta {
    /// `st_mode` with the file-type bits.
    pub mode: u32,
    pub ino: u64,
    pub nlink: u64,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
    pub size: u64,
    pub blocks: u64,
    pub mtime: (i64, i64),
    /// Changes with any write, chmod, chown, utimes, link count or xattr change.
    pub ctime: (i64, i64),
    /// BLAKE3 of a regular file's content.
    pub content: Option<[u8; 32]>,
    /// A symlink's target.
    pub target: Option<Vec<u8>>,
    /// `user.*` xattrs, sorted.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Every entry under `root`, the root itself included (as the empty path), by
/// relative path bytes. Regular files are read (FIFOs and devices are not
/// opened); nothing is written, so taking it changes no ctime.
pub fn metadata_with_ctime(root: &Path) -> BTreeMap<Vec<u8>, FullMeta> {
    fn walk(root: &Path, rel: Vec<u8>, out: &mut BTreeMap<Vec<u8>, FullMeta>) {
        let p = full(root, &rel);
        let m = fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let ft = m.file_type();
        let content = ft.is_file().then(|| {
            let mut h = blake3::Hasher::new();
            let mut f = fs::File::open(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            std::io::copy(&mut f, &mut h).unwrap();
            *h.finalize().as_bytes()
        });
        let target = ft
            .is_symlink()
            .then(|| fs::read_link(&p).unwrap().into_os_string().into_vec());
        out.insert(
            rel.clone(),
            FullMeta {
                mode: m.mode(),
                ino: m.ino(),
                nlink: m.nlink(),
                uid: m.uid(),
                gid: m.gid(),
                rdev: m.rdev(),
                size: m.len(),
                blocks: m.blocks(),
                mtime: (m.mtime(), m.mtime_nsec()),
                ctime: (m.ctime(), m.ctime_nsec()),
                content,
                target,
                xattrs: user_xattrs(&p),
            },
        );
        if ft.is_dir() {
            let mut names: Vec<Vec<u8>> = fs::read_dir(&p)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_vec())
                .collect();
            names.sort();
            for n in names {
                let mut child = rel.clone();
                if !child.is_empty() {
                    child.push(b'/');
                }
                child.extend_from_slice(&n);
                walk(root, child, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, Vec::new(), &mut out);
    out
}

/// One line per difference between two [`metadata_with_ctime`] snapshots.
pub fn changes(
    before: &BTreeMap<Vec<u8>, FullMeta>,
    after: &BTreeMap<Vec<u8>, FullMeta>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (p, a) in before {
        match after.get(p) {
            None => out.push(format!("{}: removed", show(p))),
            Some(b) if a != b => out.push(format!("{}: {a:?}\n    became {b:?}", show(p))),
            Some(_) => {}
        }
    }
    for p in after.keys() {
        if !before.contains_key(p) {
            out.push(format!("{}: appeared", show(p)));
        }
    }
    out
}

/// Panics listing every change under `root` since `before` was taken.
pub fn assert_untouched(root: &Path, before: &BTreeMap<Vec<u8>, FullMeta>, what: &str) {
    let c = changes(before, &metadata_with_ctime(root));
    assert!(
        c.is_empty(),
        "{what} changed {}:\n{}",
        root.display(),
        c.join("\n")
    );
}

/// Whether `name` is a jsync temp file's (`.X.jsync-tmp.N`).
pub fn is_temp_name(name: &[u8]) -> bool {
    name.windows(11).any(|w| w == b".jsync-tmp.")
}

/// Relative paths of jsync temp (`.X.jsync-tmp.N`) and partial
/// (`.X.jsync-partial`) files anywhere under `root`.
pub fn temp_leftovers(root: &Path) -> Vec<Vec<u8>> {
    all_paths(root)
        .into_iter()
        .filter(|p| {
            let name = p.rsplit(|&b| b == b'/').next().unwrap_or(p);
            is_temp_name(name) || name.ends_with(b".jsync-partial")
        })
        .collect()
}

/// This process's umask (`/proc/self/status`), which the binaries it
/// starts inherit.
pub fn umask() -> u32 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .unwrap();
    u32::from_str_radix(line.trim(), 8).unwrap()
}

fn all_paths(root: &Path) -> Vec<Vec<u8>> {
    fn walk(root: &Path, rel: Vec<u8>, out: &mut Vec<Vec<u8>>) {
        let p = full(root, &rel);
        let Ok(m) = fs::symlink_metadata(&p) else {
            return;
        };
        if m.is_dir() {
            let Ok(rd) = fs::read_dir(&p) else { return };
            for e in rd.flatten() {
                let mut child = rel.clone();
                if !child.is_empty() {
                    child.push(b'/');
                }
                child.extend_from_slice(&e.file_name().into_vec());
                out.push(child.clone());
                walk(root, child, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, Vec::new(), &mut out);
    out
}
