//! Tests of the random tree generator itself (no jsync involved): it is
//! deterministic, its snapshots see every edit it makes, a faithful copy made by
//! GNU `cp -a` compares equal, and the features it is told to leave out stay
//! out.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use jsync_tests::randtree::{
    self, build, diff, edit, run_seeds, same, snapshot, sparse_ok, Features, Kind, EDIT_KINDS,
};

const SEEDS: std::ops::Range<u64> = 0..4;

/// `cp -a` with everything preserved and holes kept; `to` must not exist.
fn cp_a(from: &Path, to: &Path) -> Result<(), String> {
    let out = Command::new("cp")
        .args(["-a", "--preserve=all", "--sparse=always"])
        .arg(from)
        .arg(to)
        .output()
        .map_err(|e| format!("run cp: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cp -a failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

fn no_diff(what: &str, d: Vec<String>) -> Result<(), String> {
    if d.is_empty() {
        Ok(())
    } else {
        Err(format!("{what}:\n{}", d.join("\n")))
    }
}

#[test]
fn same_seed_same_tree_and_same_edits() {
    for f in [Features::all(), Features::basic()] {
        run_seeds(SEEDS, |seed| {
            let work = tempfile::tempdir().unwrap();
            let (a, b) = (work.path().join("a"), work.path().join("b"));
            let da = build(&a, seed, &f);
            let db = build(&b, seed, &f);
            assert_eq!(da, db);
            let sa = snapshot(&a, &f);
            no_diff("a vs itself", diff(&sa, &sa))?;
            no_diff("a vs a again", diff(&sa, &snapshot(&a, &f)))?;
            same(&sa, &snapshot(&b, &f)).map_err(|e| format!("two builds differ:\n{e}"))?;
            let ea = edit(&a, seed + 100, &f, 12);
            let eb = edit(&b, seed + 100, &f, 12);
            assert_eq!(ea, eb);
            same(&snapshot(&a, &f), &snapshot(&b, &f))
                .map_err(|e| format!("same edits differ:\n{e}\nedits:\n{}", ea.join("\n")))
        });
    }
}

#[test]
fn different_seeds_differ() {
    let work = tempfile::tempdir().unwrap();
    let f = Features::all();
    let mut seen = Vec::new();
    for seed in 0..3 {
        let root = work.path().join(seed.to_string());
        build(&root, seed, &f);
        let s = snapshot(&root, &f);
        for (other, t) in &seen {
            assert!(
                !diff(t, &s).is_empty(),
                "seeds {other} and {seed} built the same tree"
            );
        }
        seen.push((seed, s));
    }
}

#[test]
fn cp_a_copy_compares_equal_before_and_after_edits() {
    let f = Features::all();
    run_seeds(SEEDS, |seed| {
        let work = tempfile::tempdir().unwrap();
        let src = work.path().join("src");
        let desc = build(&src, seed, &f);
        let copy = work.path().join("copy");
        cp_a(&src, &copy)?;
        let ctx = desc.join("\n");
        no_diff(
            &format!("cp -a copy ({ctx})"),
            diff(&snapshot(&src, &f), &snapshot(&copy, &f)),
        )?;
        no_diff("sparse", sparse_ok(&src, &copy))?;

        let edits = edit(&src, seed, &f, 20);
        let copy2 = work.path().join("copy2");
        cp_a(&src, &copy2)?;
        let ctx = edits.join("\n");
        no_diff(
            &format!("cp -a after edits:\n{ctx}\n"),
            diff(&snapshot(&src, &f), &snapshot(&copy2, &f)),
        )?;
        no_diff("sparse after edits", sparse_ok(&src, &copy2))?;
        // The old copy no longer matches.
        if diff(&snapshot(&src, &f), &snapshot(&copy, &f)).is_empty() {
            return Err(format!("20 edits left no difference:\n{ctx}"));
        }
        Ok(())
    });
}

#[test]
fn a_plain_copy_is_caught() {
    // cp without -a loses mtimes, modes of special bits, hard links, xattrs and
    // holes: the comparison must notice.
    let f = Features::all();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    build(&src, 7, &f);
    let copy = work.path().join("copy");
    let out = Command::new("cp")
        .args(["-r", "--sparse=never"])
        .arg(&src)
        .arg(&copy)
        .output()
        .unwrap();
    assert!(out.status.success());
    let d = diff(&snapshot(&src, &f), &snapshot(&copy, &f));
    assert!(d.iter().any(|l| l.contains(": mtime ")), "{d:#?}");
    assert!(d.iter().any(|l| l.starts_with("hard links: ")), "{d:#?}");
    assert!(!sparse_ok(&src, &copy).is_empty());
}

#[test]
fn every_single_edit_shows_in_the_diff() {
    let mut kinds_seen = BTreeSet::new();
    for f in [Features::all(), Features::basic()] {
        run_seeds(SEEDS, |seed| {
            let work = tempfile::tempdir().unwrap();
            let root = work.path().join("t");
            build(&root, seed, &f);
            let mut before = snapshot(&root, &f);
            for i in 0..25 {
                let d = edit(&root, seed * 1000 + i, &f, 1);
                let kind = d[0].split(' ').next().unwrap().to_string();
                if !EDIT_KINDS.contains(&kind.as_str()) {
                    return Err(format!("unknown edit kind in {:?}", d[0]));
                }
                kinds_seen.insert(kind);
                let after = snapshot(&root, &f);
                if diff(&before, &after).is_empty() {
                    return Err(format!("edit made no visible difference: {d:?}"));
                }
                before = after;
            }
            Ok(())
        });
    }
    if randtree::replay_seed().is_none() {
        // With 200 edits every kind should have come up (the xattr kind only
        // where the file system takes user xattrs).
        let xattrs = randtree::xattrs_supported(&std::env::temp_dir());
        for k in EDIT_KINDS {
            if *k != "xattr" || xattrs {
                assert!(
                    kinds_seen.contains(*k),
                    "no {k} edit in 200: {kinds_seen:?}"
                );
            }
        }
    }
}

#[test]
fn dir_mtimes_change_with_their_contents() {
    let f = Features::basic();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("t");
    build(&root, 3, &f);
    let before = snapshot(&root, &f);
    let d = edit(&root, 3, &f, 10);
    let last = d.last().unwrap();
    assert!(last.starts_with("dir-mtimes "), "{d:?}");
    let after = snapshot(&root, &f);
    // Every directory that still exists and has a different entry list has a new mtime.
    for (p, e) in &after.entries {
        if e.kind != Kind::Dir {
            continue;
        }
        let Some(old) = before.entries.get(p) else {
            continue;
        };
        let kids = |s: &randtree::Snapshot| -> Vec<Vec<u8>> {
            s.entries
                .keys()
                .filter(|k| {
                    let parent = match k.iter().rposition(|&b| b == b'/') {
                        Some(i) => &k[..i],
                        None if k.is_empty() => return false,
                        None => b"",
                    };
                    parent == p.as_slice()
                })
                .cloned()
                .collect()
        };
        if kids(&before) != kids(&after) {
            assert_ne!(
                old.mtime,
                e.mtime,
                "{}: contents changed, mtime did not",
                randtree::show(p)
            );
        }
    }
}

#[test]
fn features_are_respected() {
    let work = tempfile::tempdir().unwrap();
    for seed in SEEDS {
        // Basic: plain names, no hard links, no special bits, no xattrs, no holes.
        let root = work.path().join(format!("basic{seed}"));
        let f = Features::basic();
        build(&root, seed, &f);
        edit(&root, seed, &f, 30);
        let s = snapshot(&root, &Features::all());
        assert!(s.hardlinks.is_empty());
        for (p, e) in &s.entries {
            assert!(
                p.iter().all(|&b| b.is_ascii_graphic() || b == b'/'),
                "odd name {} in a basic tree",
                randtree::show(p)
            );
            assert_eq!(e.mode & 0o7000, 0, "{}", randtree::show(p));
            assert!(e.xattrs.is_empty());
        }
        assert!(sparse_ok(&root, work.path().join("nowhere").as_path()).is_empty());

        // All: every feature shows up.
        let root = work.path().join(format!("all{seed}"));
        let f = Features::all();
        let desc = build(&root, seed, &f);
        let s = snapshot(&root, &f);
        let n = s.entries.len() - 1;
        assert!((20..=170).contains(&n), "{n} entries: {desc:?}");
        assert!(!s.hardlinks.is_empty(), "{desc:?}");
        assert!(s.hardlinks.iter().all(|g| (2..=3).contains(&g.len())));
        let has = |pred: &dyn Fn(&[u8]) -> bool| s.entries.keys().any(|p| pred(p));
        let last = |p: &[u8]| p.rsplit(|&b| b == b'/').next().unwrap().to_vec();
        assert!(has(&|p| p.contains(&0xff)));
        assert!(has(
            &|p| last(p).contains(&0xe9) && std::str::from_utf8(&last(p)).is_err()
        ));
        assert!(has(&|p| last(p).contains(&b'\n')));
        assert!(has(&|p| last(p).starts_with(b"-")));
        assert!(has(&|p| last(p).starts_with(b" ")));
        assert!(has(&|p| last(p).len() == 255));
        assert!(has(&|p| p.iter().filter(|&&b| b == b'/').count() >= 20));
        assert!(
            s.entries.values().any(|e| e.mode & 0o7000 != 0),
            "no special modes"
        );
        let files: Vec<u64> = s
            .entries
            .values()
            .filter_map(|e| match e.kind {
                Kind::File { size, .. } => Some(size),
                _ => None,
            })
            .collect();
        assert!(files.contains(&0));
        assert!(files.iter().any(|&n| (1..=100).contains(&n)));
        assert!(files.iter().any(|&n| n >= 100 << 10));
        let targets: Vec<&Vec<u8>> = s
            .entries
            .values()
            .filter_map(|e| match &e.kind {
                Kind::Symlink { target } => Some(target),
                _ => None,
            })
            .collect();
        assert!(targets.iter().any(|t| t.starts_with(b"/")));
        assert!(targets.iter().any(|t| t.as_slice() == b"no-such-file"));
        assert!(
            s.entries.iter().any(|(p, e)| !p.is_empty()
                && e.kind == Kind::Dir
                && !s
                    .entries
                    .keys()
                    .any(|k| k.starts_with(p) && k.len() > p.len() && k[p.len()] == b'/')),
            "no empty dir"
        );
        let sparse = s.entries.iter().any(|(p, e)| {
            let m = std::fs::symlink_metadata(randtree::full(&root, p)).unwrap();
            matches!(e.kind, Kind::File { .. }) && m.len() > m.blocks() * 512 + (1 << 20)
        });
        assert!(sparse, "no sparse file");
        if randtree::xattrs_supported(&root) {
            assert!(s.entries.values().any(|e| !e.xattrs.is_empty()), "{desc:?}");
            let t = snapshot(&root, &Features::basic());
            assert!(t.entries.values().all(|e| e.xattrs.is_empty()));
            assert!(t.hardlinks.is_empty());
        }
    }
}

#[test]
fn run_seeds_names_the_failing_seeds() {
    if randtree::replay_seed().is_some() {
        return;
    }
    let r = std::panic::catch_unwind(|| {
        run_seeds(0..6, |seed| match seed {
            3 => Err("boom".to_string()),
            5 => panic!("kaboom"),
            _ => Ok(()),
        })
    });
    let msg = *r.unwrap_err().downcast::<String>().unwrap();
    assert!(msg.contains("2 of 6 seeds failed"), "{msg}");
    assert!(msg.contains("seed 3: boom"), "{msg}");
    assert!(msg.contains("seed 5: panicked: kaboom"), "{msg}");
    assert!(msg.contains("JSYNC_SEED"), "{msg}");
    let mut ran = Vec::new();
    run_seeds(10..13, |s| {
        ran.push(s);
        Ok(())
    });
    assert_eq!(ran, [10, 11, 12]);
}
