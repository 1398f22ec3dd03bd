//! Building test trees and comparing two trees the way a user would check a
//! sync: same names, kinds, bytes, permission bits, mtimes and symlink targets.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// What one entry of a tree looks like, for comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    File {
        mode: u32,
        mtime: (i64, i64),
        hash: [u8; 32],
        size: u64,
    },
    Dir {
        mode: u32,
        mtime: (i64, i64),
    },
    Symlink {
        target: Vec<u8>,
        mtime: (i64, i64),
    },
}

/// Every entry under `root` (not following symlinks), keyed by relative path bytes.
pub fn snapshot(root: &Path) -> BTreeMap<Vec<u8>, Node> {
    let mut out = BTreeMap::new();
    for e in walkdir_like(root) {
        let rel = e
            .strip_prefix(root)
            .unwrap()
            .as_os_str()
            .to_owned()
            .into_vec();
        let m = std::fs::symlink_metadata(&e).unwrap();
        let node = if m.file_type().is_symlink() {
            Node::Symlink {
                target: std::fs::read_link(&e).unwrap().into_os_string().into_vec(),
                mtime: (m.mtime(), m.mtime_nsec()),
            }
        } else if m.is_dir() {
            Node::Dir {
                mode: m.mode() & 0o7777,
                mtime: (m.mtime(), m.mtime_nsec()),
            }
        } else {
            let data = std::fs::read(&e).unwrap();
            Node::File {
                mode: m.mode() & 0o7777,
                mtime: (m.mtime(), m.mtime_nsec()),
                hash: *blake3::hash(&data).as_bytes(),
                size: data.len() as u64,
            }
        };
        out.insert(rel, node);
    }
    out
}

fn walkdir_like(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![root.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        let p = out[i].clone();
        i += 1;
        let m = std::fs::symlink_metadata(&p).unwrap();
        if m.is_dir() {
            let mut kids: Vec<_> = std::fs::read_dir(&p)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            kids.sort();
            out.extend(kids);
        }
    }
    out
}

/// Panics with the first difference between two trees (the root dir's own mtime
/// and mode are compared too).
pub fn assert_same_tree(expected: &Path, actual: &Path) {
    let a = snapshot(expected);
    let b = snapshot(actual);
    for (path, node) in &a {
        let shown = String::from_utf8_lossy(path);
        match b.get(path) {
            None => panic!("{shown:?} missing in {}", actual.display()),
            Some(other) => assert_eq!(node, other, "{shown:?} differs"),
        }
    }
    for path in b.keys() {
        assert!(
            a.contains_key(path),
            "{:?} is extra in {}",
            String::from_utf8_lossy(path),
            actual.display()
        );
    }
}

/// A tree with what users have: nested and empty dirs, empty files, a large file,
/// binary data, names with spaces and non-ASCII, odd modes and a symlink.
pub fn make_tree(root: &Path, big: usize) {
    let w = |rel: &str, data: &[u8]| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    };
    std::fs::create_dir_all(root).unwrap();
    w("README.txt", b"hello\n");
    w("empty", b"");
    w("dir one/with space.txt", b"spaces in names");
    w(
        "d\u{e9}j\u{e0}/\u{65e5}\u{672c}.txt",
        "non-ASCII names".as_bytes(),
    );
    w("nested/a/b/c/deep.bin", &crate::pseudo_random(100_000, 7));
    w("nested/a/sibling", b"x");
    w("big.bin", &crate::pseudo_random(big, 11));
    w("binary/zeros", &vec![0u8; 70_000]);
    w(
        "binary/all-bytes",
        &(0..=255u8).cycle().take(10_000).collect::<Vec<_>>(),
    );
    std::fs::create_dir_all(root.join("empty dir/also empty")).unwrap();
    std::os::unix::fs::symlink("README.txt", root.join("link-to-readme")).unwrap();
    std::fs::set_permissions(
        root.join("nested/a/sibling"),
        std::fs::Permissions::from_mode(0o751),
    )
    .unwrap();
    let raw = OsString::from_vec(b"raw-\xff-name".to_vec());
    std::fs::write(root.join(raw), b"non-UTF-8 name").unwrap();
    // Distinct mtimes, with nanoseconds, so time preservation is really checked.
    let mut n = 0;
    for p in walkdir_like(root).into_iter().rev() {
        n += 1;
        let t = filetime::FileTime::from_unix_time(
            1_600_000_000 + n * 1000,
            (n as u32) * 1_234_567 % 1_000_000_000,
        );
        filetime::set_symlink_file_times(&p, t, t).unwrap();
    }
}

/// The files (not directories) beneath `top`, sorted, as paths relative to
/// it.
pub fn files_in(top: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![top.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                dirs.push(p);
            } else {
                out.push(p.strip_prefix(top).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}
