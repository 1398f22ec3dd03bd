//! rsync's filter rules through the real binaries, locally, pushed to a
//! jsrv and pulled from it: `--filter` (`-f`) rules with their modifiers,
//! `merge` files, per-directory rule files (`dir-merge`, `-F`, `-FF`), the
//! sides rules speak for (`hide` only hides, `protect` only protects), and
//! `-C`. The sender reads the per-directory files of its tree; the receiver
//! reads those of the destination for `--delete`, as rsync's do.

use std::path::Path;
use std::process::Output;

use jsync_tests::bins::{assert_fails as fails, assert_ok as ok, ways, Sources};
use jsync_tests::tree::files_in;

fn put(path: &Path, data: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

/// A source with per-directory `.rsync-filter` files: `a/` leaves out `*.o`
/// and its own `local-only` (anchored there); `a/b/` keeps only `keep.txt`
/// (its rule file too is left out by its own `- *`).
fn make_source(src: &Path) {
    for f in [
        "keep.o",
        "x.o",
        "local-only",
        "top.txt",
        "secret.key",
        "a/y.o",
        "a/local-only",
        "a/kept.txt",
        "a/b/z.o",
        "a/b/keep.txt",
        "a/b/other.txt",
        "c/w.o",
        ".git/HEAD",
        "d/notes~",
        "d/scratch.tmp",
        "d/fine.txt",
    ] {
        put(&src.join(f), f);
    }
    put(
        &src.join("a/.rsync-filter"),
        "# rules of a/\n- *.o\n- /local-only\n",
    );
    put(&src.join("a/b/.rsync-filter"), "+ keep.txt\n- *\n");
    put(&src.join("d/.cvsignore"), "*.tmp  other.tmp\n");
}

/// Runs `jcp OPTIONS src/ dst` each way from an empty destination (made by
/// `prepare` first) and checks the files there against `want`.
fn each_way(options: &[&str], prepare: impl Fn(&Path), want: &[&str]) {
    each_way_then(options, prepare, |dst, out, what| {
        ok(out, what);
        assert_eq!(files_in(dst), want, "{what}");
    });
}

/// [`each_way`], with `check(dst, output, what)` on each run.
fn each_way_then(options: &[&str], prepare: impl Fn(&Path), check: impl Fn(&Path, &Output, &str)) {
    let setup = Sources::new(make_source);
    for (way, dst, from, to) in ways(setup.work.path(), &setup.root, &setup.src_arg()) {
        let _ = std::fs::remove_dir_all(&dst);
        std::fs::create_dir_all(&dst).unwrap();
        prepare(&dst);
        let mut args = options.to_vec();
        args.extend([from.as_str(), to.as_str()]);
        let what = format!("{way} {}", options.join(" "));
        check(&dst, &setup.srv.jcp(setup.keys.path(), &args), &what);
    }
}

#[test]
fn per_directory_rule_files_and_filter_rules_choose_what_is_sent() {
    let opts = [
        "-F",
        "--filter=- top.txt",
        "-f",
        "hide *.key",
        "-f",
        "exclude .git/",
    ];
    let want = [
        "a/.rsync-filter",
        "a/b/keep.txt",
        "a/kept.txt",
        "c/w.o",
        "d/.cvsignore",
        "d/fine.txt",
        "d/notes~",
        "d/scratch.tmp",
        "keep.o",
        "local-only",
        "x.o",
    ];
    each_way(&opts, |_| {}, &want);
    // -FF also leaves out the rule files themselves. `-! PATTERN` leaves
    // out all the pattern does not match, directories too, so `+ */` first.
    // The rule files' rules come first (-F is given first).
    let opts = ["-FF", "-f", "+ */", "--filter", "-! *.txt"];
    let want = ["a/b/keep.txt", "a/kept.txt", "d/fine.txt", "top.txt"];
    each_way(&opts, |_| {}, &want);
    each_way(&["--filter", "-! *.txt", "-F"], |_| {}, &["top.txt"]);
    // A selection (--files-from) reads the rule files of the directories on
    // the way to each listed path: a/b/'s leaves out a/b/z.o, listed or not.
    let list = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(list.path(), "a/b/z.o\na/b/other.txt\na/b/keep.txt\nc\n").unwrap();
    let from = list.path().to_str().unwrap();
    let want = ["a/b/keep.txt", "c/w.o"];
    each_way(&["-F", "-r", "--files-from", from], |_| {}, &want);
    // A listed directory's walk starts with the rules of those above it.
    std::fs::write(list.path(), "a/b\n").unwrap();
    each_way(
        &["-F", "-r", "--files-from", from],
        |_| {},
        &["a/b/keep.txt"],
    );
}

#[test]
fn merge_files_and_cvs_exclude() {
    let work = tempfile::tempdir().unwrap();
    let rules = work.path().join("rules");
    // A merge file of rules, then one of patterns (`merge,-`).
    let patterns = work.path().join("patterns");
    put(&rules, "+ keep.o\n- *.o\nmerge,- PATTERNS\n");
    let text = std::fs::read_to_string(&rules).unwrap();
    put(
        &rules,
        &text.replace("PATTERNS", &patterns.display().to_string()),
    );
    put(&patterns, "*.key\n.rsync-filter\n");
    let merge = format!("merge {}", rules.display());
    let want = [
        "a/b/keep.txt",
        "a/b/other.txt",
        "a/kept.txt",
        "a/local-only",
        "d/.cvsignore",
        "d/fine.txt",
        "d/notes~",
        "d/scratch.tmp",
        "keep.o",
        "local-only",
        "top.txt",
    ];
    let mut with_git = want.to_vec();
    with_git.insert(0, ".git/HEAD");
    each_way(&["--filter", &merge], |_| {}, &with_git);
    // -C: CVS's list (*.o, *~, .git/), each directory's .cvsignore, after
    // the other rules (so `+ keep.o` still keeps it).
    let want = [
        "a/.rsync-filter",
        "a/b/.rsync-filter",
        "a/b/keep.txt",
        "a/b/other.txt",
        "a/kept.txt",
        "a/local-only",
        "d/.cvsignore",
        "d/fine.txt",
        "keep.o",
        "local-only",
        "secret.key",
        "top.txt",
    ];
    each_way(&["-C", "-f", "+ keep.o"], |_| {}, &want);
    // The same as rules (`-C` CVS's list, `:C` each .cvsignore), in place:
    // first, they exclude keep.o before `+ keep.o` is reached.
    let first: Vec<&str> = want.iter().copied().filter(|&f| f != "keep.o").collect();
    each_way(&["-f", "-C", "-f", ":C", "-f", "+ keep.o"], |_| {}, &first);
    each_way(
        &["-f", "exclude,C", "-f", "dir-merge,C", "-f", "+ keep.o"],
        |_| {},
        &first,
    );
}

#[test]
fn delete_leaves_what_the_receivers_rules_protect() {
    // The destination's own rule files count for what --delete removes: a/'s
    // (sent with the transfer) protects a/old.o; `protect` (receiver only)
    // keeps kept/ and `hide` (sender only) protects nothing.
    let prepare = |dst: &Path| {
        for f in [
            "a/old.o",
            "a/gone.txt",
            "kept/x",
            "secret.key",
            "extra.txt",
            "e/.rsync-filter",
        ] {
            put(&dst.join(f), "old");
        }
        put(&dst.join("e/.rsync-filter"), "- *.log\n");
        put(&dst.join("e/app.log"), "log");
        put(&dst.join("e/stale"), "stale");
    };
    let opts = [
        "-F",
        "--delete",
        "-f",
        "protect kept/",
        "-f",
        "hide secret.key",
        "-f",
        "- e/",
    ];
    let want = [
        "a/.rsync-filter",
        "a/b/keep.txt",
        "a/kept.txt",
        "a/old.o",
        "c/w.o",
        "d/.cvsignore",
        "d/fine.txt",
        "d/notes~",
        "d/scratch.tmp",
        ".git/HEAD",
        "e/.rsync-filter",
        "e/app.log",
        "e/stale",
        "keep.o",
        "kept/x",
        "local-only",
        "top.txt",
        "x.o",
    ];
    let mut want = want.to_vec();
    want.sort();
    each_way(&opts, prepare, &want);
}

#[test]
fn a_rule_file_that_does_not_parse_stops_its_directory() {
    let setup = Sources::new(|src| {
        make_source(src);
        put(&src.join("a/b/.rsync-filter"), "- ok\nnot a rule\n");
    });
    for (way, dst, from, to) in ways(setup.work.path(), &setup.root, &setup.src_arg()) {
        let what = format!("{way} -F");
        let out = setup.srv.jcp(setup.keys.path(), &["-F", &from, &to]);
        fails(
            &out,
            3,
            "a/b: not walked: .rsync-filter:2: bad filter rule \"not a rule\"",
            &what,
        );
        let got = files_in(&dst);
        assert!(got.contains(&"a/kept.txt".to_string()), "{what}: {got:?}");
        assert!(
            !got.iter().any(|f| f.starts_with("a/b/")),
            "{what}: {got:?}"
        );
    }
    // On the receiving side, nothing is deleted where the rules are
    // unknown, nor below; said once, for the directory of the file.
    let prepare = |dst: &Path| {
        put(&dst.join("c/.rsync-filter"), "-bad\n");
        put(&dst.join("c/extra"), "extra");
        put(&dst.join("c/sub/deeper/extra"), "extra");
    };
    each_way_then(&["-F", "--delete"], prepare, |dst, out, what| {
        let needle = "c: nothing deleted here or below: .rsync-filter:1: bad filter rule";
        fails(out, 3, needle, what);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.matches(".rsync-filter:1").count(), 1, "{what}: {err}");
        assert!(dst.join("c/extra").exists(), "{what}");
        assert!(dst.join("c/sub/deeper/extra").exists(), "{what}");
    });
}

#[test]
fn bad_rules_are_usage_errors() {
    let setup = Sources::new(make_source);
    let src = setup.src_arg();
    for (args, needle) in [
        (vec!["-f", "*.o"], "expected a rule"),
        (
            vec!["--filter", ":/ .rules"],
            "does not support the '/' modifier",
        ),
        (vec!["--filter", ": a/b"], "a name, not a path"),
        (
            vec!["--filter", "-C *.o"],
            "the C modifier takes no pattern",
        ),
        (
            vec!["--filter", "merge /nonexistent/rules"],
            "/nonexistent/rules",
        ),
    ] {
        let mut all = args.clone();
        all.extend([src.as_str(), "unused"]);
        let out = setup.srv.jcp(setup.keys.path(), &all);
        fails(&out, 2, needle, &args.join(" "));
    }
}

/// `-m`: no directory is made that would hold no file (only directories),
/// the usual partner of `--include '*/' ... --exclude '*'`. Without it every
/// directory the rules let in is made.
#[test]
fn prune_empty_dirs_makes_only_directories_that_hold_files() {
    for (pruned, extra) in [(true, &["-m"][..]), (false, &[][..])] {
        let mut args = vec!["--include", "*/", "--include", "*.txt", "--exclude", "*"];
        args.extend(extra);
        let prepare = |dst: &Path| std::fs::create_dir_all(dst.join("e")).unwrap();
        each_way_then(&args, prepare, |dst, out, what| {
            ok(out, what);
            let want = [
                "a/b/keep.txt",
                "a/b/other.txt",
                "a/kept.txt",
                "d/fine.txt",
                "top.txt",
            ];
            assert_eq!(files_in(dst), want, "{what}");
            for empty in ["c", ".git"] {
                assert_eq!(dst.join(empty).is_dir(), !pruned, "{what}: {empty}/");
            }
            assert!(
                dst.join("e").is_dir(),
                "{what}: an existing directory stays"
            );
        });
    }
    // A directory the destination has, empty in the source (of all but
    // directories), is left out as rsync's sender leaves it out: untouched
    // (its time stays), and removed by --delete. Without -m it is listed.
    let old = filetime::FileTime::from_unix_time(1_000_000_000, 0);
    let prepare = |dst: &Path| {
        std::fs::create_dir_all(dst.join("c")).unwrap();
        filetime::set_file_mtime(dst.join("c"), old).unwrap();
    };
    let rules = ["--include", "*/", "--include", "*.txt", "--exclude", "*"];
    for (extra, kept, touched) in [
        (&["-m"][..], true, false),
        (&["-m", "--delete"], false, false),
        (&["--delete"], true, true),
    ] {
        let mut args = rules.to_vec();
        args.extend(extra);
        each_way_then(&args, prepare, |dst, out, what| {
            ok(out, what);
            assert_eq!(dst.join("c").is_dir(), kept, "{what}: c/");
            if kept {
                let m = std::fs::metadata(dst.join("c")).unwrap();
                let t = filetime::FileTime::from_last_modification_time(&m);
                assert_eq!(t != old, touched, "{what}: c/'s time");
            }
        });
    }
}

/// With `--delete-excluded`, plain rules no longer keep anything, but the
/// receiver's own (`protect`) still do, as rsync's.
#[test]
fn delete_excluded_still_keeps_what_protect_rules_protect() {
    let prepare = |dst: &Path| {
        for f in ["keep.log", "other.log", "x.o"] {
            put(&dst.join(f), "old");
        }
    };
    let opts = [
        "--delete",
        "--delete-excluded",
        "-f",
        "protect keep.log",
        "-f",
        "- *.log",
    ];
    each_way_then(&opts, prepare, |dst, out, what| {
        ok(out, what);
        assert!(dst.join("keep.log").exists(), "{what}");
        assert!(!dst.join("other.log").exists(), "{what}");
        assert!(dst.join("x.o").exists(), "{what}: sent, not deleted");
    });
}

/// A directory --delete removes keeps what the receiver's rules protect in
/// it (its own rule files count too), and so stays, which rsync's
/// information line says; one with nothing protected goes whole.
#[test]
fn delete_keeps_protected_entries_inside_a_deleted_directory() {
    let prepare = |dst: &Path| {
        for f in [
            "gone/x.o",
            "gone/y",
            "gone/sub/z",
            "gone/sub/deep.o",
            "all/y",
            "own/keep",
        ] {
            put(&dst.join(f), "old");
        }
        put(&dst.join("own/.rsync-filter"), "- keep\n");
    };
    each_way_then(
        &["-F", "--delete", "--exclude", "*.o"],
        prepare,
        |dst, out, what| {
            ok(out, what);
            // (rsync's information, on stdout.)
            let said = String::from_utf8_lossy(&out.stdout);
            assert!(
                said.contains("cannot delete non-empty directory: gone\n"),
                "{what}: {said}"
            );
            for (f, kept) in [
                ("gone/x.o", true),
                ("gone/sub/deep.o", true),
                ("gone/y", false),
                ("gone/sub/z", false),
                ("all", false),
                ("own/keep", true),
                ("own/.rsync-filter", false),
            ] {
                assert_eq!(dst.join(f).exists(), kept, "{what}: {f}");
            }
        },
    );
}

/// Perishable rules (`p`, as rsync's) keep entries from --delete as any
/// rule does, but not inside a directory being deleted: that directory goes
/// whole, what they match with it. rsync marks `-C`'s own patterns so, and
/// the rules `--partial-dir` adds, so a directory the source no longer has
/// goes though it holds `*.o` files or a partial directory. (Without `p`,
/// the same rules keep the directory and what they match:
/// delete_keeps_protected_entries_inside_a_deleted_directory.)
#[test]
fn perishable_rules_do_not_keep_a_deleted_directory() {
    let prepare = |dst: &Path| {
        for f in [
            "gone/x.o",
            "gone/y",
            "gone/sub/deep.o",
            "gone/.part/f",
            "extra.o",
        ] {
            put(&dst.join(f), "old");
        }
    };
    for opts in [
        &["--delete", "-f", "-p *.o", "-f", "-p .part"][..],
        &["--delete", "-C", "--partial-dir", ".part"][..],
    ] {
        each_way_then(opts, prepare, |dst, out, what| {
            ok(out, what);
            let said = String::from_utf8_lossy(&out.stdout);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                !said.contains("cannot delete") && !err.contains("cannot delete"),
                "{what}: {said}{err}"
            );
            assert!(!dst.join("gone").exists(), "{what}");
            // Outside a deleted directory the rule keeps what it matches.
            assert!(dst.join("extra.o").exists(), "{what}");
        });
    }
}

/// The rules `--partial-dir DIR` adds are rsync's `-p DIR/` (and here `Pp
/// DIR/`): they match directories named DIR only, so a source file of that
/// name is sent and a source directory is not.
#[test]
fn partial_dir_rules_match_only_directories() {
    each_way_then(
        &["--partial-dir", "top.txt"],
        |_| {},
        |dst, out, what| {
            ok(out, what);
            let got = std::fs::read(dst.join("top.txt")).ok();
            assert_eq!(got.as_deref(), Some(&b"top.txt"[..]), "{what}");
        },
    );
    each_way_then(
        &["--partial-dir", "c"],
        |_| {},
        |dst, out, what| {
            ok(out, what);
            assert!(!dst.join("c").exists(), "{what}");
            assert!(dst.join("top.txt").exists(), "{what}");
        },
    );
}

/// A directory in the way of a file is not removed while it holds what the
/// receiver's rules protect, as in rsync ("cannot make way"), even with
/// --force: the run fails for that file, naming it, and the directory stays
/// as it was. A perishable rule does not hold it.
#[test]
fn a_directory_holding_protected_entries_does_not_make_way() {
    let prepare = |dst: &Path| {
        for f in ["top.txt/keep.o", "top.txt/other"] {
            put(&dst.join(f), "old");
        }
    };
    each_way_then(&["--force", "-f", "- *.o"], prepare, |dst, out, what| {
        fails(out, 3, "top.txt: cannot make way for it", what);
        assert!(dst.join("top.txt/keep.o").exists(), "{what}");
        assert!(dst.join("top.txt/other").exists(), "{what}");
        assert!(dst.join("a/kept.txt").exists(), "{what}: the rest arrives");
    });
    each_way_then(&["--force", "-f", "-p *.o"], prepare, |dst, out, what| {
        ok(out, what);
        assert_eq!(
            std::fs::read(dst.join("top.txt")).unwrap(),
            b"top.txt",
            "{what}"
        );
    });
}

/// With --backup-dir, a deleted directory that holds protected entries
/// keeps them and sends the rest, each entry, to the backups; one with
/// nothing protected goes there whole, its contents with it.
#[test]
fn backups_of_a_partly_deleted_directory_keep_what_they_hold() {
    let prepare = |dst: &Path| {
        for f in ["gone/x.o", "gone/y", "gone/sub/z", "all/y"] {
            put(&dst.join(f), "old");
        }
    };
    let opts = ["--delete", "--backup-dir", "bak", "--exclude", "*.o"];
    each_way_then(&opts, prepare, |dst, out, what| {
        ok(out, what);
        for (f, there) in [
            ("gone/x.o", true),
            ("gone/y", false),
            ("bak/gone/y", true),
            ("bak/gone/sub/z", true),
            ("all", false),
            ("bak/all/y", true),
        ] {
            assert_eq!(dst.join(f).exists(), there, "{what}: {f}");
        }
    });
}

/// A selection (--files-from) with a path that is not there: with
/// --ignore-errors the directories sent whole are still cleaned; without,
/// nothing is deleted.
#[test]
fn a_selection_with_errors_deletes_only_with_ignore_errors() {
    let list = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(list.path(), "c\nno-such-path\n").unwrap();
    let from_list = list.path().to_str().unwrap();
    for (extra, deleted) in [(&["--ignore-errors"][..], true), (&[][..], false)] {
        let mut args = vec!["-r", "--delete", "--files-from", from_list];
        args.extend(extra);
        let prepare = |dst: &Path| put(&dst.join("c/extra"), "old");
        each_way_then(&args, prepare, |dst, out, what| {
            assert!(
                !out.status.success(),
                "{what}: the missing path is an error"
            );
            assert_eq!(!dst.join("c/extra").exists(), deleted, "{what}");
            assert!(dst.join("c/w.o").exists(), "{what}");
        });
    }
}

/// -C reads the user's lists where jcp runs: the words of
/// `$HOME/.cvsignore` and of `$CVSIGNORE` are excluded too, and a `!`
/// there drops rsync's list before it. One that cannot be read is passed
/// over, as rsync does.
#[test]
fn cvs_exclude_reads_the_users_lists() {
    let work = tempfile::tempdir().unwrap();
    let (src, home) = (work.path().join("src"), work.path().join("home"));
    for f in ["a.home", "b.env", "x.o", "keep.txt"] {
        put(&src.join(f), f);
    }
    let sync = |home_list: &str, dst: &str| {
        if !home_list.is_empty() {
            put(&home.join(".cvsignore"), home_list);
        }
        let dst = work.path().join(dst);
        let out = std::process::Command::new(jsync_tests::bins::bin("jcp"))
            .env("HOME", &home)
            .env("CVSIGNORE", "*.env")
            .args(["--config-dir", home.to_str().unwrap(), "-C"])
            .arg(format!("{}/", src.display()))
            .arg(&dst)
            .output()
            .unwrap();
        ok(&out, home_list);
        files_in(&dst)
    };
    assert_eq!(sync("*.home\n", "one"), ["keep.txt"]);
    assert_eq!(sync("! *.home\n", "two"), ["keep.txt", "x.o"]);
    // A directory where the file would be: not readable, passed over.
    std::fs::remove_file(home.join(".cvsignore")).unwrap();
    std::fs::create_dir(home.join(".cvsignore")).unwrap();
    assert_eq!(sync("", "three"), ["a.home", "keep.txt"]);
}

/// `/` rules see each side's whole path: a local tree's absolute path, a
/// server's path beneath the root it serves (as rsync's daemon matches
/// within a module). The sender's rules leave out what they match there,
/// the receiver's keep from `--delete` what they match there, and a rule
/// naming the other kind of path matches nothing.
#[test]
fn absolute_path_rules_see_where_each_side_is() {
    let setup = Sources::new(make_source);
    let local_src = setup.src().display().to_string();
    for (way, dst, from, to) in ways(setup.work.path(), &setup.root, &setup.src_arg()) {
        // Local paths named through `..`: as rsync sees them, with the `..`
        // taken out.
        let detour = |p: &Path| {
            let (parent, name) = (p.parent().unwrap(), p.file_name().unwrap());
            std::fs::create_dir_all(parent.join("x")).unwrap();
            format!("{}/x/../{}", parent.display(), name.to_str().unwrap())
        };
        let (from, to) = match way {
            "push" => (format!("{}/", detour(&setup.src())), to),
            "pull" => (from, detour(&dst)),
            _ => (format!("{}/", detour(&setup.src())), detour(&dst)),
        };
        let (src_seen, dst_seen, dst_elsewhere) = match way {
            "push" => (
                local_src.clone(),
                "/dst".to_string(),
                dst.display().to_string(),
            ),
            "pull" => (
                "/src".to_string(),
                dst.display().to_string(),
                "/dst".to_string(),
            ),
            _ => (
                local_src.clone(),
                dst.display().to_string(),
                "/dst".to_string(),
            ),
        };
        let _ = std::fs::remove_dir_all(&dst);
        for f in ["extra.txt", "gone.txt", "other.txt"] {
            put(&dst.join(f), "old");
        }
        let rules = [
            format!("-/ {src_seen}/top.txt"),
            format!("-/ {dst_seen}/a/kept.txt"),
            format!("P/ {dst_seen}/extra.txt"),
            format!("P/ {src_seen}/gone.txt"),
            format!("P/ {dst_elsewhere}/other.txt"),
        ];
        let mut args = vec!["--delete".to_string()];
        for r in &rules {
            args.extend(["--filter".to_string(), r.clone()]);
        }
        args.extend([from.clone(), to.clone()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = setup.srv.jcp(setup.keys.path(), &args);
        ok(&out, way);
        let files = files_in(&dst);
        let has = |f: &str| files.iter().any(|x| x == f);
        assert!(!has("top.txt"), "{way}: sent what the sender's rule names");
        assert!(has("keep.o"), "{way}: {files:?}");
        assert!(
            has("a/kept.txt"),
            "{way}: the sender took the destination's path"
        );
        assert!(
            has("extra.txt"),
            "{way}: deleted what the receiver's rule keeps"
        );
        assert!(
            !has("gone.txt"),
            "{way}: kept by a rule naming the source's path"
        );
        assert!(
            !has("other.txt"),
            "{way}: kept by a rule naming the other kind of path"
        );
    }
}
