//! rsync's `-R/--relative` and `--files-from` through the real binaries,
//! locally, pushed to a jsrv and pulled from it: only the paths named are
//! sent, each with the directories on the way, and `--delete` deletes only
//! in the directories sent whole.

use std::path::{Path, PathBuf};

use jsync_tests::bins::{assert_fails as fails, assert_ok as ok, Sources};
use jsync_tests::tree::files_in;

fn make_source(src: &Path) {
    for (path, data) in [
        ("a/b/f", "f\n"),
        ("a/g", "g\n"),
        ("c/h", "h\n"),
        ("top", "top\n"),
        ("skip", "skip\n"),
    ] {
        let p = src.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
}

/// The sources of these tests, made by [`make_source`].
struct Setup(Sources);

impl std::ops::Deref for Setup {
    type Target = Sources;
    fn deref(&self) -> &Sources {
        &self.0
    }
}

impl Setup {
    fn new() -> Setup {
        Setup(Sources::new(make_source))
    }

    /// Runs `jcp OPTIONS SRC DST` locally, pushed and pulled, where the
    /// source is `local_src` (a local path) or `remote_src` (on the server),
    /// each into a fresh destination that `prepare` fills first; returns
    /// each destination, named by the way it was reached.
    fn each_way(
        &self,
        options: &[&str],
        local_src: &str,
        remote_src: &str,
        prepare: impl Fn(&Path),
    ) -> Vec<(&'static str, PathBuf)> {
        let w = self.work.path();
        let ways = [
            ("local", w.join("local"), local_src.to_string()),
            ("push", self.root.join("dst"), local_src.to_string()),
            ("pull", w.join("pulled"), format!("127.0.0.1:{remote_src}")),
        ];
        let mut out = Vec::new();
        for (way, dst, src) in ways {
            let _ = std::fs::remove_dir_all(&dst);
            std::fs::create_dir_all(&dst).unwrap();
            prepare(&dst);
            let to = match way {
                "push" => "127.0.0.1:dst/".to_string(),
                _ => format!("{}/", dst.display()),
            };
            let mut args = options.to_vec();
            args.extend([src.as_str(), to.as_str()]);
            ok(
                &self.srv.jcp(self.keys.path(), &args),
                &format!("{way} {options:?}"),
            );
            out.push((way, dst));
        }
        out
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn relative_keeps_each_sources_path_from_the_marker() {
    let s = Setup::new();
    let local = format!("{}/./src/a/b", s.work.path().display());
    for (way, dst) in s.each_way(&["-R"], &local, "src/a/b", |_| {}) {
        assert_eq!(files_in(&dst), strings(&["src/a/b/f"]), "{way}");
    }
    // From the marker: the path after /./ is kept.
    let local = format!("{}/src/./a", s.work.path().display());
    for (way, dst) in s.each_way(&["--relative"], &local, "src/./a", |_| {}) {
        assert_eq!(files_in(&dst), strings(&["a/b/f", "a/g"]), "{way}");
    }
}

#[test]
fn files_from_sends_what_is_listed_and_recurses_only_with_r() {
    let s = Setup::new();
    let list = s.work.path().join("list");
    std::fs::write(&list, "a/b/f\n# a comment\n\n; another\nc\n/top\n").unwrap();
    let from = format!("--files-from={}", list.display());
    let local = format!("{}/src", s.work.path().display());
    for (way, dst) in s.each_way(&[&from], &local, "src", |_| {}) {
        assert_eq!(files_in(&dst), strings(&["a/b/f", "top"]), "{way}");
        assert!(dst.join("c").is_dir(), "{way}: c is listed, empty");
    }
    for (way, dst) in s.each_way(&[&from, "-r"], &local, "src", |_| {}) {
        assert_eq!(files_in(&dst), strings(&["a/b/f", "c/h", "top"]), "{way}");
    }
    // `.` with -r is the whole tree, each path in it sent once.
    std::fs::write(&list, ".\na/b/f\n").unwrap();
    let dst = s.work.path().join("whole");
    let dst_arg = dst.display().to_string();
    let out = s
        .srv
        .jcp(s.keys.path(), &[&from, "-r", "-i", &local, &dst_arg]);
    ok(&out, "--files-from . -r");
    let items = String::from_utf8_lossy(&out.stdout);
    assert_eq!(items.matches("a/b/f").count(), 1, "{items}");
    assert_eq!(files_in(&dst).len(), 5, "{items}");
    // NUL-separated, as find -print0 writes.
    std::fs::write(&list, "a/g\0top\0").unwrap();
    for (way, dst) in s.each_way(&[&from, "-0"], &local, "src", |_| {}) {
        assert_eq!(files_in(&dst), strings(&["a/g", "top"]), "{way}");
    }
}

/// `--delete` deletes in the directories sent whole (`-R`'s source,
/// `--files-from -r`'s directories), never in those on the way to a path.
#[test]
fn delete_stays_in_the_directories_sent_whole() {
    let s = Setup::new();
    let extras = |dst: &Path| {
        for p in ["a/extra", "a/b/extra", "outside"] {
            std::fs::create_dir_all(dst.join(p).parent().unwrap()).unwrap();
            std::fs::write(dst.join(p), "extra\n").unwrap();
        }
    };
    let local = format!("{}/src/./a/b", s.work.path().display());
    for (way, dst) in s.each_way(&["-R", "--delete"], &local, "src/./a/b", extras) {
        let want = ["a/b/f", "a/extra", "outside"];
        assert_eq!(files_in(&dst), strings(&want), "{way}");
    }
    let list = s.work.path().join("list");
    std::fs::write(&list, "a/b\n").unwrap();
    let from = format!("--files-from={}", list.display());
    let local = format!("{}/src", s.work.path().display());
    for (way, dst) in s.each_way(&[&from, "--delete"], &local, "src", extras) {
        // Without -r, a/b itself is not sent whole either.
        let want = ["a/b/extra", "a/extra", "outside"];
        assert_eq!(files_in(&dst), strings(&want), "{way}");
    }
    for (way, dst) in s.each_way(&[&from, "-r", "--delete"], &local, "src", extras) {
        let want = ["a/b/f", "a/extra", "outside"];
        assert_eq!(files_in(&dst), strings(&want), "{way}");
    }
}

#[test]
fn listed_paths_stay_beneath_the_source_and_take_one_source() {
    let s = Setup::new();
    let list = s.work.path().join("list");
    std::fs::write(&list, "a/../../root/src/top\n").unwrap();
    let from = format!("--files-from={}", list.display());
    let dst = s.work.path().join("out");
    let dst_arg = dst.display().to_string();
    let local = format!("{}/src", s.work.path().display());
    // Refused before anything is sent, locally as by the server.
    for src in [local.as_str(), "127.0.0.1:src"] {
        let out = s.srv.jcp(s.keys.path(), &[&from, src, &dst_arg]);
        fails(&out, 1, "may not climb out", src);
        assert!(!dst.join("top").exists());
    }
    let out = s.srv.jcp(s.keys.path(), &[&from, &local, &local, &dst_arg]);
    fails(&out, 2, "one source directory", "two sources");
    // A listed path that is not there is named, an error (3, rsync's 23
    // for its failed link_stat; not 24, a file that vanished mid-run); the
    // rest is sent.
    std::fs::write(&list, "top\nmissing\n").unwrap();
    let out = s.srv.jcp(s.keys.path(), &[&from, &local, &dst_arg]);
    fails(
        &out,
        3,
        "missing: no such file or directory",
        "a missing listed path",
    );
    assert!(dst.join("top").exists());
}

/// `--ignore-missing-args`: a listed path (or one on the way to it) or a
/// source that does not exist is passed over in silence, locally, pushed
/// and pulled; without it the run says so and fails, and a missing local
/// source among several fails alone, the others copied (exit 3, rsync's
/// 23; a server's sources are found one after the other).
#[test]
fn ignore_missing_args_passes_over_what_is_not_there() {
    let s = Setup::new();
    let list = s.work.path().join("list");
    std::fs::write(&list, "a/g\nnot/there\nmissing\ntop\n").unwrap();
    let from = format!("--files-from={}", list.display());
    let local = format!("{}/src", s.work.path().display());
    for (way, dst) in s.each_way(&[&from, "--ignore-missing-args"], &local, "src", |_| {}) {
        assert_eq!(files_in(&dst), strings(&["a/g", "top"]), "{way}");
    }
    let dst = s.work.path().join("strict");
    let out = s
        .srv
        .jcp(s.keys.path(), &[&from, &local, dst.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "without the option: {out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("missing"),
        "{out:?}"
    );
    // Sources: one there, one not.
    let w = s.work.path();
    let (top, gone) = (format!("{local}/top"), format!("{local}/gone"));
    for (way, srcs, to) in [
        (
            "local",
            [top.clone(), gone.clone()],
            format!("{}/", w.join("l").display()),
        ),
        (
            "push",
            [top.clone(), gone.clone()],
            "127.0.0.1:p/".to_string(),
        ),
        (
            "pull",
            ["127.0.0.1:src/top".into(), "127.0.0.1:src/gone".into()],
            format!("{}/", w.join("q").display()),
        ),
    ] {
        let args = ["--ignore-missing-args", &srcs[0], &srcs[1], &to];
        ok(&s.srv.jcp(s.keys.path(), &args), way);
        let got = match way {
            "push" => s.root.join("p"),
            "local" => w.join("l"),
            _ => w.join("q"),
        };
        assert_eq!(files_in(&got), strings(&["top"]), "{way}");
        let args = [srcs[0].as_str(), &srcs[1], &to];
        let _ = std::fs::remove_dir_all(&got);
        let out = s.srv.jcp(s.keys.path(), &args);
        assert!(!out.status.success(), "{way} without the option");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("gone"),
            "{way}: {out:?}"
        );
        if way != "pull" {
            // As rsync's: the missing one fails alone, the other is copied.
            assert_eq!(out.status.code(), Some(3), "{way}: {out:?}");
            assert_eq!(files_in(&got), strings(&["top"]), "{way}");
        }
    }
    // Every source missing: nothing to do, pushed or pulled.
    let out = s.srv.jcp(
        s.keys.path(),
        &["--ignore-missing-args", &gone, "127.0.0.1:z/"],
    );
    ok(&out, "all missing");
    assert!(!s.root.join("z").exists());
    let to = w.join("none");
    let args = [
        "--ignore-missing-args",
        "127.0.0.1:src/gone",
        to.to_str().unwrap(),
    ];
    ok(&s.srv.jcp(s.keys.path(), &args), "all missing, pulled");
    assert!(!to.exists());
    // Another error than "not there" still counts.
    let args = [
        "--ignore-missing-args",
        "127.0.0.1:src/top/x",
        to.to_str().unwrap(),
    ];
    let out = s.srv.jcp(s.keys.path(), &args);
    assert!(!out.status.success(), "through a file: {out:?}");
}

/// `--delete-missing-args`, locally, pushed and pulled: a path
/// `--files-from` lists that the source lacks (a file, a directory with
/// what it holds, under --force as in rsync, a file in a directory the
/// source lacks) is deleted from
/// the destination, itemized as rsync's
/// `*deleting`; one the receiver's rules protect stays, and so does
/// everything in a dry run. A missing source deletes what the destination
/// has in its place, beside the sources that are there.
#[test]
fn delete_missing_args_deletes_what_the_source_lacks() {
    let s = Setup::new();
    let list = s.work.path().join("list");
    std::fs::write(&list, "a/g\nnot/there\nold\nolddir\nkept\ntop\n").unwrap();
    let from = format!("--files-from={}", list.display());
    let local = format!("{}/src", s.work.path().display());
    let prepare = |dst: &Path| {
        for f in ["old", "olddir/x/y", "kept", "other", "not/there"] {
            let p = dst.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "old\n").unwrap();
        }
    };
    let opts = [
        from.as_str(),
        "--delete-missing-args",
        "--force",
        "-f",
        "P kept",
        "-i",
    ];
    for (way, dst) in s.each_way(&opts, &local, "src", prepare) {
        let want = ["a/g", "kept", "other", "top"];
        assert_eq!(files_in(&dst), strings(&want), "{way}");
        assert!(!dst.join("olddir").exists(), "{way}");
    }
    for (way, dst) in s.each_way(&[opts[0], opts[1], opts[2], "-n"], &local, "src", prepare) {
        let want = ["kept", "not/there", "old", "olddir/x/y", "other"];
        assert_eq!(files_in(&dst), strings(&want), "{way}: a dry run");
    }
    // --max-delete holds (exit 25, as rsync's): one deleted, the rest
    // skipped, each entry olddir holds counted as rsync counts them.
    let dst = s.work.path().join("max");
    std::fs::create_dir_all(&dst).unwrap();
    prepare(&dst);
    let args = [
        opts[0],
        opts[1],
        opts[2],
        "--max-delete=1",
        &local,
        dst.to_str().unwrap(),
    ];
    let out = s.srv.jcp(s.keys.path(), &args);
    fails(
        &out,
        25,
        "Deletions stopped due to --max-delete limit (4 skipped)",
        "max",
    );
    let left = ["kept", "not/there", "old", "olddir/x/y", "other"];
    let left = left.iter().filter(|f| dst.join(f).exists()).count();
    assert_eq!(left, 4, "one deleted");
    // Each source is a run of its own; --max-delete counts over them all.
    let (a, b) = (format!("{local}/gone1"), format!("{local}/gone2"));
    let dst = s.work.path().join("max2");
    for gone in ["gone1", "gone2"] {
        std::fs::create_dir_all(dst.join(gone)).unwrap();
    }
    let args = [
        "--delete-missing-args",
        "--max-delete=1",
        &a,
        &b,
        dst.to_str().unwrap(),
    ];
    let out = s.srv.jcp(s.keys.path(), &args);
    let says = "Deletions stopped due to --max-delete limit (1 skipped)";
    fails(&out, 25, says, "max, two sources");
    assert!(!dst.join("gone1").exists() && dst.join("gone2").exists());
    // Itemized, as rsync's.
    let dst = s.work.path().join("items");
    std::fs::create_dir_all(&dst).unwrap();
    prepare(&dst);
    let out = s.srv.jcp(
        s.keys.path(),
        &[
            opts[0],
            opts[1],
            opts[2],
            "-i",
            &local,
            dst.to_str().unwrap(),
        ],
    );
    ok(&out, "itemized");
    let items = String::from_utf8_lossy(&out.stdout);
    for line in [
        "*deleting   old\n",
        "*deleting   olddir/\n",
        "*deleting   kept\n",
    ] {
        assert!(items.contains(line), "{line:?} in {items}");
    }
    // Sources: one there, one not, and one the destination keeps.
    let w = s.work.path();
    let (top, gone, kept) = (
        format!("{local}/top"),
        format!("{local}/old"),
        format!("{local}/kept"),
    );
    for (way, srcs, to, got) in [
        (
            "local",
            [top.clone(), gone.clone(), kept.clone()],
            format!("{}/", w.join("l").display()),
            w.join("l"),
        ),
        (
            "push",
            [top.clone(), gone.clone(), kept.clone()],
            "127.0.0.1:p/".to_string(),
            s.root.join("p"),
        ),
        (
            "pull",
            [
                "127.0.0.1:src/top".into(),
                "127.0.0.1:src/old".into(),
                "127.0.0.1:src/kept".into(),
            ],
            format!("{}/", w.join("q").display()),
            w.join("q"),
        ),
    ] {
        let _ = std::fs::remove_dir_all(&got);
        std::fs::create_dir_all(&got).unwrap();
        prepare(&got);
        let args = [
            "--delete-missing-args",
            "-f",
            "P kept",
            &srcs[0],
            &srcs[1],
            &srcs[2],
            &to,
        ];
        ok(&s.srv.jcp(s.keys.path(), &args), way);
        let want = ["kept", "not/there", "olddir/x/y", "other", "top"];
        assert_eq!(files_in(&got), strings(&want), "{way}");
    }
}

/// Hard links (`-H`) in a listing whose entries the sender does not all
/// walk alike: two missing paths (`--delete-missing-args`) and an excluded
/// one sorting before a file's two names (a list is sent sorted; one of
/// each would leave the old counts even by chance). Each side numbers the entries the
/// receiver gets, so the second name is linked to the first (before, the
/// sender's count drifted from the receiver's: linked to the wrong entry).
#[test]
fn hard_links_after_missing_and_excluded_listed_paths() {
    let s = Setup(Sources::new(|src| {
        std::fs::create_dir_all(src).unwrap();
        std::fs::write(src.join("h1"), "linked\n").unwrap();
        std::fs::hard_link(src.join("h1"), src.join("h2")).unwrap();
        std::fs::write(src.join("a.tmp"), "left out\n").unwrap();
        std::fs::write(src.join("y"), "y\n").unwrap();
    }));
    let list = s.work.path().join("list");
    std::fs::write(&list, "gone\na.tmp\nb-gone\nh1\ny\nh2\n").unwrap();
    let from = format!("--files-from={}", list.display());
    let local = format!("{}/src", s.work.path().display());
    let opts = [
        from.as_str(),
        "-H",
        "--delete-missing-args",
        "-f",
        "- *.tmp",
    ];
    for (way, dst) in s.each_way(&opts, &local, "src", |_| {}) {
        assert_eq!(files_in(&dst), strings(&["h1", "h2", "y"]), "{way}");
        use std::os::unix::fs::MetadataExt;
        let ino = |n: &str| std::fs::metadata(dst.join(n)).unwrap().ino();
        assert_eq!(ino("h1"), ino("h2"), "{way}: one inode");
        assert_ne!(ino("h1"), ino("y"), "{way}");
        assert_eq!(std::fs::read(dst.join("h2")).unwrap(), b"linked\n", "{way}");
    }
}

/// `--remove-source-files` with `--delete-missing-args`: the receiver names
/// the entries in place by number, missing ones counted, and the sender
/// removes exactly those (before, its count left the missing entries out
/// and it removed the wrong files).
#[test]
fn remove_source_files_after_a_missing_listed_path() {
    let work = tempfile::tempdir().unwrap();
    let (src, dst) = (work.path().join("src"), work.path().join("dst"));
    std::fs::create_dir_all(&src).unwrap();
    for f in ["a", "b", "c"] {
        std::fs::write(src.join(f), f).unwrap();
    }
    let list = work.path().join("list");
    std::fs::write(&list, "0-gone\na\nb\n").unwrap();
    let from = format!("--files-from={}", list.display());
    let args = [
        from.as_str(),
        "--delete-missing-args",
        "--remove-source-files",
        &format!("{}/", src.display()),
        &format!("{}/", dst.display()),
    ];
    ok(&jsync_tests::bins::run("jcp", &args), "moved");
    assert_eq!(files_in(&dst), strings(&["a", "b"]));
    assert_eq!(
        files_in(&src),
        strings(&["c"]),
        "only what arrived is removed"
    );
}

/// `--no-implied-dirs`, as rsync's: the directories on the way to a path
/// sent with `-R` go without their attributes, so the destination's stay as
/// they are (mode, time, and a symlink to a directory, which the file then
/// goes through), and a missing one is made as `mkdir -p` makes it.
/// Without it, as in rsync, they take the source's attributes and a
/// symlink in the way is replaced by a directory.
#[test]
fn no_implied_dirs_leaves_the_directories_on_the_way_as_they_are() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777;
    let mtime = |p: &Path| {
        filetime::FileTime::from_last_modification_time(&std::fs::metadata(p).unwrap())
            .unix_seconds()
    };
    let set_mtime = |p: &Path, t: i64| {
        filetime::set_file_mtime(p, filetime::FileTime::from_unix_time(t, 0)).unwrap()
    };
    let s = Setup::new();
    for src in [s.work.path().join("src"), s.root.join("src")] {
        std::fs::set_permissions(src.join("a"), std::fs::Permissions::from_mode(0o750)).unwrap();
        set_mtime(&src.join("a"), 1_600_000_000);
    }
    let local = format!("{}/src/./a/b/f", s.work.path().display());
    let remote = "src/./a/b/f";
    // The destination has a/ of another mode and time, and a/b a symlink
    // to a directory beside it.
    let linked = |dst: &Path| {
        std::fs::create_dir_all(dst.join("real")).unwrap();
        std::fs::create_dir(dst.join("a")).unwrap();
        std::os::unix::fs::symlink("../real", dst.join("a/b")).unwrap();
        std::fs::set_permissions(dst.join("a"), std::fs::Permissions::from_mode(0o711)).unwrap();
        set_mtime(&dst.join("a"), 1_700_000_000);
    };
    let options = ["-R", "--no-implied-dirs"];
    for (way, dst) in s.each_way(&options, &local, remote, linked) {
        assert!(dst.join("a/b").is_symlink(), "{way}: the link stays");
        assert_eq!(std::fs::read(dst.join("real/f")).unwrap(), b"f\n", "{way}");
        assert_eq!(mode(&dst.join("a")), 0o711, "{way}");
        assert_eq!(mtime(&dst.join("a")), 1_700_000_000, "{way}");
    }
    // --ignore-existing leaves alone what is there, not the way to it.
    let ignoring = ["-R", "--no-implied-dirs", "--ignore-existing"];
    for (way, dst) in s.each_way(&ignoring, &local, remote, linked) {
        assert!(dst.join("a/b").is_symlink(), "{way}: the link stays");
        assert_eq!(std::fs::read(dst.join("real/f")).unwrap(), b"f\n", "{way}");
    }
    for (way, dst) in s.each_way(&["-R"], &local, remote, linked) {
        assert!(
            !dst.join("a/b").is_symlink(),
            "{way}: a directory in its place"
        );
        assert_eq!(std::fs::read(dst.join("a/b/f")).unwrap(), b"f\n", "{way}");
        assert!(!dst.join("real/f").exists(), "{way}");
        assert_eq!(mode(&dst.join("a")), 0o750, "{way}");
        assert_eq!(mtime(&dst.join("a")), 1_600_000_000, "{way}");
    }
    // Missing ones are made as mkdir -p makes them (jsrv has the test's umask).
    let umask = jsync_tests::meta::umask();
    for (way, dst) in s.each_way(&options, &local, remote, |_| {}) {
        assert_eq!(std::fs::read(dst.join("a/b/f")).unwrap(), b"f\n", "{way}");
        assert_eq!(mode(&dst.join("a")), 0o777 & !umask, "{way}");
        assert_ne!(mtime(&dst.join("a")), 1_600_000_000, "{way}");
    }
    // A file where a directory is implied stays; nothing goes into it, and
    // the run says so.
    let dst = s.work.path().join("file-in-the-way");
    std::fs::create_dir_all(&dst).unwrap();
    std::fs::write(dst.join("a"), b"a file\n").unwrap();
    let to = format!("{}/", dst.display());
    let out = jsync_tests::bins::run("jcp", &["-R", "--no-implied-dirs", &local, &to]);
    fails(&out, 3, "--no-implied-dirs", "a file in the way");
    assert_eq!(std::fs::read(dst.join("a")).unwrap(), b"a file\n");
}
