//! `-y/--fuzzy`, as rsync's: a file the destination lacks takes as the
//! basis of its delta a file in the same destination directory that looks
//! like an earlier version of it, so a renamed or re-versioned file
//! (`report-v1.pdf` → `report-v2.pdf`, `linux-6.1.tar` → `linux-6.2.tar`)
//! crosses as its changes rather than whole.
//!
//! As in rsync, a file of the same size and modification time wins
//! whatever its name; otherwise the name closest by edit distance among
//! those with the same suffix (what follows the last `.`), if it shares at
//! least half of the name. Only regular, non-empty files are candidates,
//! never jsync's own temp or partial files, nor one more than eight times
//! larger or smaller than the file; the first thousand of a directory (in
//! name order) are weighed, each only as far as it could still win, so a
//! directory of many similar names costs bounded work per file. (The
//! receiver asks only for files too large to go whole in a batch.) A directory is read (and its
//! files looked up) once for all the new files it gets; the last few such
//! directories are kept, since the sender's depth-first list comes back to
//! a directory after each subdirectory.
//!
//! With `-yy`, as rsync's, the same directory of each `--compare-dest`,
//! `--copy-dest` or `--link-dest` directory is searched too (a snapshot
//! backup's renamed file is found in the previous snapshot): a file of the
//! same size and time in any of them first (the destination's, then each
//! directory's in order), else the closest name among them all (on a tie,
//! the earlier).

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex};

use proto::sync::Entry;

use super::alt::Alts;
use super::fsroot::{is_partial_name, is_temp_name, FsRoot, Kind, RelPath};

/// Directories whose candidates are kept.
const KEPT_DIRS: usize = 32;
/// Candidates weighed per directory at most (the first in name order).
const MAX_CANDIDATES: usize = 1_000;
/// A candidate more than this many times larger or smaller than the file
/// is no basis worth reading.
const MAX_RATIO: u64 = 8;

/// A file that may serve as a basis.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Candidate {
    name: Vec<u8>,
    size: u64,
    mtime: (i64, u32),
}

/// A directory (which root: 0 the destination's, `i + 1` alternate
/// directory `i`; and its path there) and its candidates.
type Read = ((usize, Vec<u8>), Arc<Vec<Candidate>>);

/// A basis found: beneath the destination's root (`alt: None`) or beneath
/// `--*-dest` directory `alt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Basis {
    pub alt: Option<usize>,
    pub path: RelPath,
}

/// The receiver's fuzzy lookups, shared by its tasks.
#[derive(Default)]
pub(crate) struct Fuzzy {
    recent: Mutex<VecDeque<Read>>,
}

impl Fuzzy {
    /// A basis for `rel` (a file the destination lacks, listed as `e`)
    /// among its siblings beneath `fs`, and with `alts` (`-yy`) among
    /// what those directories hold in the same directory.
    pub(crate) fn basis(
        &self,
        fs: &FsRoot,
        alts: Option<&Alts>,
        rel: &RelPath,
        e: &Entry,
    ) -> Option<Basis> {
        let name = rel.file_name()?.as_bytes();
        let mut places = vec![(None, rel.parent()?, fs)];
        if let Some(alts) = alts {
            places.extend(alts.dirs_of(rel).map(|(i, dir, fs)| (Some(i), dir, fs)));
        }
        let lists: Vec<Arc<Vec<Candidate>>> = places
            .iter()
            .map(|(alt, dir, fs)| self.candidates(alt.map_or(0, |i| i + 1), fs, dir))
            .collect();
        let (k, best) = pick(&lists, name, e.size, e.mtime)?;
        let (alt, dir, _) = &places[k];
        Some(Basis {
            alt: *alt,
            path: dir.join(OsStr::from_bytes(&best.name)),
        })
    }

    /// The candidates of directory `dir` beneath root `root` (`fs`), read
    /// now or kept from before.
    fn candidates(&self, root: usize, fs: &FsRoot, dir: &RelPath) -> Arc<Vec<Candidate>> {
        let key = (root, dir.as_bytes().to_vec());
        {
            let recent = self.recent.lock().expect("poisoned");
            if let Some((_, c)) = recent.iter().find(|(d, _)| *d == key) {
                return c.clone();
            }
        }
        let found = Arc::new(read_candidates(fs, dir));
        let mut recent = self.recent.lock().expect("poisoned");
        if recent.len() >= KEPT_DIRS {
            recent.pop_front();
        }
        recent.push_back((key, found.clone()));
        found
    }
}

/// The regular, non-empty files of `dir` (none if it cannot be read).
fn read_candidates(fs: &FsRoot, dir: &RelPath) -> Vec<Candidate> {
    let Ok(mut names) = fs.read_dir(dir) else {
        return Vec::new();
    };
    names.retain(|(n, is_dir)| !is_dir && !is_temp_name(n) && !is_partial_name(n));
    names.sort_unstable();
    names.truncate(MAX_CANDIDATES);
    names
        .into_iter()
        .filter_map(|(name, _)| {
            let m = fs.lstat(&dir.join(OsStr::from_bytes(&name))).ok()??;
            (m.kind == Kind::File && m.size > 0).then_some(Candidate {
                name,
                size: m.size,
                mtime: m.mtime,
            })
        })
        .collect()
}

/// The best of the `lists` of candidates (in order) for a file `name` of
/// `size` and `mtime`: which list, and the candidate.
fn pick<'a>(
    lists: &'a [Arc<Vec<Candidate>>],
    name: &[u8],
    size: u64,
    mtime: (i64, u32),
) -> Option<(usize, &'a Candidate)> {
    let candidates = || {
        lists
            .iter()
            .enumerate()
            .flat_map(|(k, l)| l.iter().map(move |c| (k, c)))
    };
    if let Some(same) = candidates().find(|(_, c)| c.size == size && c.mtime == mtime) {
        return Some(same);
    }
    let suffix = |n: &[u8]| n.iter().rposition(|&b| b == b'.').map(|i| n[i..].to_vec());
    let wanted = suffix(name);
    // Closer than half the name, or not at all.
    let mut best = None;
    let mut bound = name.len().div_ceil(2);
    let near =
        |c: &Candidate| c.size <= size.saturating_mul(MAX_RATIO) && c.size >= size / MAX_RATIO;
    for (k, c) in candidates() {
        if !near(c) || suffix(&c.name) != wanted || c.name.len().abs_diff(name.len()) >= bound {
            continue;
        }
        if let Some(d) = distance_below(name, &c.name, bound) {
            bound = d;
            best = Some((k, c));
        }
    }
    best
}

/// The edit distance (insertions, deletions, substitutions) between `a`
/// and `b` if it is below `bound`; `None` as soon as it cannot be.
fn distance_below(a: &[u8], b: &[u8], bound: usize) -> Option<usize> {
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, &ca) in a.iter().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diag + usize::from(ca != cb))
                .min(above + 1)
                .min(row[j] + 1);
            diag = above;
        }
        // No later row has a smaller least value.
        if row.iter().min().is_some_and(|&m| m >= bound) {
            return None;
        }
    }
    Some(row[b.len()]).filter(|&d| d < bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str, size: u64, t: i64) -> Candidate {
        Candidate {
            name: name.as_bytes().to_vec(),
            size,
            mtime: (t, 0),
        }
    }

    #[test]
    fn edit_distance() {
        let d = |a: &[u8], b: &[u8]| distance_below(a, b, usize::MAX);
        assert_eq!(d(b"", b""), Some(0));
        assert_eq!(d(b"abc", b""), Some(3));
        assert_eq!(d(b"kitten", b"sitting"), Some(3));
        assert_eq!(d(b"report-v1.pdf", b"report-v2.pdf"), Some(1));
        assert_eq!(distance_below(b"kitten", b"sitting", 3), None);
        assert_eq!(distance_below(b"kitten", b"sitting", 4), Some(3));
        assert_eq!(distance_below(b"aaaaaaaa", b"bbbbbbbb", 2), None);
    }

    #[test]
    fn the_same_size_and_time_first_then_the_closest_name_with_the_suffix() {
        let list = [Arc::new(vec![
            c("notes.txt", 10, 1),
            c("report-v1.pdf", 500, 2),
            c("report-v10.pdf", 500, 3),
            c("report-v1.doc", 500, 4),
            c("other.bin", 77, 9),
        ])];
        let name = |n: &str, size, t| {
            pick(&list, n.as_bytes(), size, (t, 0)).map(|(k, c)| (k == 0).then_some(&c.name[..]))?
        };
        assert_eq!(name("report-v2.pdf", 600, 1), Some(&b"report-v1.pdf"[..]));
        // Far larger or smaller: none.
        assert_eq!(name("report-v2.pdf", 5_000, 1), None);
        assert_eq!(name("report-v2.pdf", 50, 1), None);
        // Size and time beat any name.
        assert_eq!(name("report-v2.pdf", 77, 9), Some(&b"other.bin"[..]));
        // Another suffix, or too far a name: none.
        assert_eq!(name("report-v2.odt", 600, 1), None);
        assert_eq!(name("summary.pdf", 600, 1), None);
        assert_eq!(name("x", 600, 1), None);
    }

    /// `-yy`: the lists of the destination and each `--*-dest` directory,
    /// in order: the same size and time in any first, then the closest
    /// name among them all, the earlier list on a tie.
    #[test]
    fn several_lists_same_first_then_closest_then_earlier() {
        let lists = [
            Arc::new(vec![c("report-v1.pdf", 500, 2), c("b-v11.pdf", 500, 2)]),
            Arc::new(vec![c("other.bin", 77, 9), c("b-v1.pdf", 500, 2)]),
            Arc::new(vec![c("report-v3.pdf", 500, 3), c("b-v12.pdf", 500, 2)]),
        ];
        let got = |n: &str, size, t| {
            pick(&lists, n.as_bytes(), size, (t, 0)).map(|(k, c)| (k, c.name.clone()))
        };
        // Size and time in a later list beat a close name in an earlier.
        assert_eq!(
            got("report-v2.pdf", 77, 9),
            Some((1, b"other.bin".to_vec()))
        );
        // A tie on distance: the destination's.
        assert_eq!(
            got("report-v2.pdf", 600, 1),
            Some((0, b"report-v1.pdf".to_vec()))
        );
        // A closer name in a later list wins.
        assert_eq!(got("b-v2.pdf", 600, 1), Some((1, b"b-v1.pdf".to_vec())));
    }
}
