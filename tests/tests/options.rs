//! rsync's options for what to leave alone (`-u`, `--ignore-existing`,
//! `--existing`, `--size-only`, `--max-size`, `--min-size`) or not to (`-I`),
//! `--chmod`, `--chown`, `--bwlimit`, what to keep of what is replaced or
//! deleted (`-b`, `--backup-dir`, `--suffix`), and its habits on the
//! command line (`-avhP`, `-h` alone for help), through the real binaries:
//! each option locally, pushed to a jsrv and pulled from it, against one
//! destination state.

use std::path::Path;
use std::process::Output;

use filetime::FileTime;
use jsync_tests::bins::{assert_fails as fails, assert_ok as ok, run, ways, Jsrv, Sources};
use jsync_tests::tree::files_in;
use jsync_tests::Keys;

/// Base of the test's mtimes (2024-01-01).
const T: i64 = 1_704_067_200;

fn put(path: &Path, data: &[u8], mtime: i64) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
    filetime::set_file_mtime(path, FileTime::from_unix_time(mtime, 0)).unwrap();
}

fn mtime(path: &Path) -> i64 {
    FileTime::from_last_modification_time(&std::fs::symlink_metadata(path).unwrap()).unix_seconds()
}

fn read(path: &Path) -> Option<Vec<u8>> {
    std::fs::read(path).ok()
}

/// Asserts what `dir/name` holds (`None`: nothing there).
fn holds(dir: &Path, name: &str, data: Option<&[u8]>, what: &str) {
    assert_eq!(read(&dir.join(name)).as_deref(), data, "{what}: {name}");
}

/// The source: files the destination has newer, older, of the same size,
/// and files and a directory it lacks (one pair of names hard-linked).
fn make_source(src: &Path) {
    put(&src.join("newer_here.txt"), b"from the source\n", T);
    put(&src.join("older_here.txt"), b"newer content\n", T + 100);
    put(&src.join("same_size.txt"), b"abcd", T + 200);
    put(&src.join("same_stamp.txt"), b"source", T + 300);
    put(&src.join("only_there.txt"), b"new file\n", T);
    put(&src.join("new_dir/inner.txt"), b"inner\n", T);
    put(&src.join("linked_a"), b"linked\n", T);
    std::fs::hard_link(src.join("linked_a"), src.join("linked_b")).unwrap();
}

/// The destination before each run.
fn make_destination(dst: &Path) {
    let _ = std::fs::remove_dir_all(dst);
    put(&dst.join("newer_here.txt"), b"edited here!!!!!\n", T + 500);
    put(&dst.join("older_here.txt"), b"old\n", T);
    put(&dst.join("same_size.txt"), b"wxyz", T + 100);
    // The same size and mtime, other content: what only -c or -I finds.
    put(&dst.join("same_stamp.txt"), b"destin", T + 300);
    // What the source lacks (only --delete removes it), and an earlier
    // backup (which -b's --delete keeps).
    put(&dst.join("extra.txt"), b"extra\n", T);
    put(&dst.join("extra_dir/deep/x"), b"x\n", T);
    put(&dst.join("earlier.txt~"), b"earlier\n", T);
}

/// What an option leaves: each existing file's content and mtime, and
/// whether the files the destination lacked were created.
struct Expect {
    newer_here: (&'static [u8], i64),
    older_here: (&'static [u8], i64),
    same_size: (&'static [u8], i64),
    new_files: bool,
}

fn check(dst: &Path, e: &Expect, what: &str) {
    let file = |name: &str, (data, t): (&[u8], i64)| {
        let p = dst.join(name);
        assert_eq!(read(&p).as_deref(), Some(data), "{what}: {name} content");
        assert_eq!(mtime(&p), t, "{what}: {name} mtime");
    };
    file("newer_here.txt", e.newer_here);
    file("older_here.txt", e.older_here);
    file("same_size.txt", e.same_size);
    for name in [
        "only_there.txt",
        "new_dir/inner.txt",
        "linked_a",
        "linked_b",
    ] {
        assert_eq!(
            dst.join(name).exists(),
            e.new_files,
            "{what}: {name} should {}exist",
            if e.new_files { "" } else { "not " }
        );
    }
    assert_eq!(dst.join("new_dir").exists(), e.new_files, "{what}: new_dir");
}

/// `jcp OPTION src/ dst` locally, pushed and pulled, each from the same
/// destination state, must leave what `e` says.
fn each_way(option: &str, e: Expect) {
    each_way_then(&[option], |dst, what| check(dst, &e, what));
}

/// `jcp OPTIONS src/ dst` locally, pushed and pulled, each from the same
/// destination state, then `check(dst, what)` on each destination.
fn each_way_then(options: &[&str], check: impl Fn(&Path, &str)) {
    // The server serves the source under src/ and receives pushes in dst/.
    let setup = Sources::new(make_source);
    let (keys, work, root, srv) = (&setup.keys, &setup.work, &setup.root, &setup.srv);
    let shown = options.join(" ");
    for (way, dst, from, to) in ways(work.path(), root, &setup.src_arg()) {
        make_destination(&dst);
        let mut args = options.to_vec();
        args.extend([from.as_str(), to.as_str()]);
        // (The local run names no server; the port and keys go unused.)
        let what = format!("{way} {shown}");
        ok(&srv.jcp(keys.path(), &args), &what);
        check(&dst, &what);
    }
}

/// `--files-from` with `--no-relative` (`--no-R`), as rsync's: each listed
/// path goes into the destination by its name alone, a listed directory
/// made without its contents (with them under -r), and a listed `dir/`
/// names its contents; locally, pushed and pulled.
#[test]
fn files_from_with_no_relative_places_paths_by_their_names() {
    let lists = tempfile::tempdir().unwrap();
    let list = lists.path().join("list");
    std::fs::write(&list, "only_there.txt\nnew_dir/inner.txt\n./new_dir\n").unwrap();
    let list = list.to_str().unwrap();
    each_way_then(&["--files-from", list, "--no-R"], |dst, what| {
        holds(dst, "only_there.txt", Some(b"new file\n"), what);
        holds(dst, "inner.txt", Some(b"inner\n"), what);
        assert!(dst.join("new_dir").is_dir(), "{what}");
        holds(dst, "new_dir/inner.txt", None, what);
        // (Nothing else is sent.)
        holds(dst, "older_here.txt", Some(b"old\n"), what);
    });
    each_way_then(
        &["--files-from", list, "--no-relative", "-r"],
        |dst, what| {
            holds(dst, "inner.txt", Some(b"inner\n"), what);
            holds(dst, "new_dir/inner.txt", Some(b"inner\n"), what);
        },
    );
    let contents = lists.path().join("contents");
    std::fs::write(&contents, "new_dir/\n").unwrap();
    let contents = contents.to_str().unwrap();
    each_way_then(&["--files-from", contents, "--no-R"], |dst, what| {
        holds(dst, "inner.txt", Some(b"inner\n"), what);
        assert!(!dst.join("new_dir").exists(), "{what}");
    });
}

/// A `--files-from` path the source does not have is an error (exit 3, as
/// rsync's failed link_stat gives 23), not a file that vanished mid-run
/// (24); the paths it has are sent all the same.
#[test]
fn a_listed_path_that_is_not_there_is_an_error() {
    let lists = tempfile::tempdir().unwrap();
    let list = lists.path().join("list");
    std::fs::write(&list, "only_there.txt\nnot_anywhere.txt\n").unwrap();
    let setup = Sources::new(make_source);
    let (keys, work, root, srv) = (&setup.keys, &setup.work, &setup.root, &setup.srv);
    for (way, dst, from, to) in ways(work.path(), root, &setup.src_arg()) {
        // (-L follows links: a path not there is no link without a referent.)
        for follow in [None, Some("-L")] {
            make_destination(&dst);
            let mut args = vec![
                "--files-from",
                list.to_str().unwrap(),
                from.as_str(),
                to.as_str(),
            ];
            args.extend(follow);
            let out = srv.jcp(keys.path(), &args);
            let what = format!("{way} {follow:?}");
            fails(
                &out,
                3,
                "not_anywhere.txt: no such file or directory",
                &what,
            );
            assert!(
                !String::from_utf8_lossy(&out.stderr).contains("vanished"),
                "{what}"
            );
            holds(&dst, "only_there.txt", Some(b"new file\n"), &what);
        }
    }
}

/// `--max-size` and `--min-size` leave alone regular files beyond the limits
/// (new or not); directories are made as ever.
#[test]
fn max_size_and_min_size_leave_files_beyond_the_limits_alone() {
    let has = holds;
    each_way_then(&["--max-size", "5"], |dst, what| {
        has(dst, "newer_here.txt", Some(b"edited here!!!!!\n"), what);
        has(dst, "older_here.txt", Some(b"old\n"), what);
        has(dst, "same_size.txt", Some(b"abcd"), what);
        assert_eq!(mtime(&dst.join("same_size.txt")), T + 200, "{what}");
        has(dst, "only_there.txt", None, what);
        has(dst, "new_dir/inner.txt", None, what);
        has(dst, "linked_a", None, what);
        has(dst, "linked_b", None, what);
        assert!(dst.join("new_dir").is_dir(), "{what}");
    });
    each_way_then(&["--min-size", "10"], |dst, what| {
        has(dst, "newer_here.txt", Some(b"from the source\n"), what);
        has(dst, "older_here.txt", Some(b"newer content\n"), what);
        has(dst, "same_size.txt", Some(b"wxyz"), what);
        assert_eq!(mtime(&dst.join("same_size.txt")), T + 100, "{what}");
        has(dst, "only_there.txt", None, what);
        has(dst, "new_dir/inner.txt", None, what);
        has(dst, "linked_a", None, what);
    });
}

#[test]
fn update_skips_files_newer_in_the_destination() {
    each_way(
        "-u",
        Expect {
            newer_here: (b"edited here!!!!!\n", T + 500),
            older_here: (b"newer content\n", T + 100),
            same_size: (b"abcd", T + 200),
            new_files: true,
        },
    );
}

#[test]
fn ignore_existing_only_adds_what_is_missing() {
    each_way(
        "--ignore-existing",
        Expect {
            newer_here: (b"edited here!!!!!\n", T + 500),
            older_here: (b"old\n", T),
            same_size: (b"wxyz", T + 100),
            new_files: true,
        },
    );
}

#[test]
fn existing_only_updates_what_is_there() {
    each_way(
        "--existing",
        Expect {
            newer_here: (b"from the source\n", T),
            older_here: (b"newer content\n", T + 100),
            same_size: (b"abcd", T + 200),
            new_files: false,
        },
    );
}

#[test]
fn size_only_takes_a_file_of_the_same_size_as_up_to_date() {
    // Same size: content kept, time brought over (as rsync does).
    each_way(
        "--size-only",
        Expect {
            newer_here: (b"from the source\n", T),
            older_here: (b"newer content\n", T + 100),
            same_size: (b"wxyz", T + 200),
            new_files: true,
        },
    );
}

/// Without any of them, every file is brought to the source's state: the
/// fixture itself is checked, so the tests above cannot pass by accident.
#[test]
fn without_options_every_file_takes_the_source_state() {
    each_way("-a", source_state());
}

/// Every file as the source has it.
fn source_state() -> Expect {
    Expect {
        newer_here: (b"from the source\n", T),
        older_here: (b"newer content\n", T + 100),
        same_size: (b"abcd", T + 200),
        new_files: true,
    }
}

/// `-I` (`--ignore-times`) takes no file as up to date by its size and
/// mtime: the one the quick check would leave alone is compared and
/// replaced.
#[test]
fn ignore_times_compares_what_the_quick_check_takes_as_up_to_date() {
    let stamp = |want: &[u8]| {
        let want = want.to_vec();
        move |dst: &Path, what: &str| {
            let p = dst.join("same_stamp.txt");
            assert_eq!(read(&p), Some(want.clone()), "{what}");
            assert_eq!(mtime(&p), T + 300, "{what}");
        }
    };
    each_way_then(&[], stamp(b"destin"));
    each_way_then(&["-I"], stamp(b"source"));
    each_way_then(&["--ignore-times"], stamp(b"source"));
}

/// `--chmod` (rsync's man page example): the destination gets the changed
/// modes, as though the source had them.
#[test]
fn chmod_changes_the_modes_the_destination_gets() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    each_way_then(&["--chmod=Dg+s,ug+w,Fo-w,+X"], |dst, what| {
        for f in [
            "newer_here.txt",
            "same_stamp.txt",
            "only_there.txt",
            "new_dir/inner.txt",
        ] {
            assert_eq!(mode(&dst.join(f)), 0o664, "{what}: {f}");
        }
        assert_eq!(mode(&dst.join("new_dir")), 0o2775, "{what}: new_dir");
    });
    // Without it, the source's own modes (the fixture's umask-made ones).
    each_way_then(&[], |dst, what| {
        assert_eq!(mode(&dst.join("new_dir")) & 0o2000, 0, "{what}");
        assert_eq!(mode(&dst.join("only_there.txt")) & 0o111, 0, "{what}");
    });
}

/// `--chown`: every entry gets the owner and group named (looked up on the
/// receiving side), where the receiver runs as root; elsewhere owners stay
/// the receiver's, as rsync leaves them. A name the receiver does not know
/// fails the run before anything is written.
#[test]
fn chown_gives_every_entry_the_owner_and_group() {
    use std::os::unix::fs::MetadataExt;
    let id = |args: &[&str]| {
        let out = std::process::Command::new(args[0])
            .args(&args[1..])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.trim()
            .rsplit(':')
            .find(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
            .map(|n| n.parse::<u32>().unwrap())
            .unwrap_or_else(|| panic!("{args:?}: {text:?}"))
    };
    let nobody = id(&["id", "-u", "nobody"]);
    let nogroup = id(&["getent", "group", "nogroup"]);
    let me = rustix::process::geteuid();
    let want = if me.is_root() {
        (nobody, nogroup)
    } else {
        (me.as_raw(), rustix::process::getegid().as_raw())
    };
    each_way_then(&["--chown=nobody:nogroup"], |dst, what| {
        for f in [
            "newer_here.txt",
            "only_there.txt",
            "new_dir",
            "new_dir/inner.txt",
            "linked_b",
        ] {
            let m = std::fs::symlink_metadata(dst.join(f)).unwrap();
            assert_eq!((m.uid(), m.gid()), want, "{what}: {f}");
        }
    });
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_source(&src);
    let dst = work.path().join("dst");
    let out = run(
        "jcp",
        &[
            "--chown=no-such-user-here",
            &format!("{}/", src.display()),
            dst.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no user called \"no-such-user-here\""),
        "{err}"
    );
    assert!(!dst.exists(), "nothing made");
}

/// `jcp -avhP --stats` as rsync users type it: -h is --human-readable (sizes
/// in K/M/G), -P is --partial --progress; `-h` alone prints the help.
#[test]
fn rsync_habits_avhp_and_h_alone() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    put(&src.join("big"), &vec![7u8; 3 << 20], T);
    let dst = work.path().join("dst");
    let out = run(
        "jcp",
        &[
            "-avhP",
            "--stats",
            &format!("{}/", src.display()),
            dst.to_str().unwrap(),
        ],
    );
    ok(&out, "jcp -avhP --stats");
    assert_eq!(read(&dst.join("big")).map(|d| d.len()), Some(3 << 20));
    let stats = String::from_utf8_lossy(&out.stdout);
    assert!(
        stats.contains("Total file size:      3.15M bytes"),
        "sizes in units of 1000: {stats}"
    );
    let out = run(
        "jcp",
        &[
            "-hh",
            "--stats",
            &format!("{}/", src.display()),
            dst.to_str().unwrap(),
        ],
    );
    ok(&out, "jcp -hh --stats");
    let stats = String::from_utf8_lossy(&out.stdout);
    assert!(
        stats.contains("Total file size:      3.00M bytes"),
        "sizes in units of 1024: {stats}"
    );

    // rsync's --info=progress2,stats2: whole-transfer progress and the stats.
    let out = run(
        "jcp",
        &[
            "--info=progress2,stats2",
            &format!("{}/", src.display()),
            work.path().join("info").to_str().unwrap(),
        ],
    );
    ok(&out, "jcp --info=progress2,stats2");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Total file size:"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("3.00 MiB/3.00 MiB"));

    // -E and -s: what jcp always does (an executable stays executable).
    {
        use std::os::unix::fs::PermissionsExt;
        let script = src.join("run.sh");
        put(&script, b"#!/bin/sh\n", T);
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o750)).unwrap();
        let to = work.path().join("es");
        let from = format!("{}/", src.display());
        ok(
            &run("jcp", &["-rtEs", &from, to.to_str().unwrap()]),
            "-rtEs",
        );
        let mode = std::fs::metadata(to.join("run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o750);
    }

    let out = run("jcp", &["-h"]);
    ok(&out, "jcp -h");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Usage: jcp"));
    let out = run("jcp", &["--help"]);
    ok(&out, "jcp --help");
    assert!(String::from_utf8_lossy(&out.stdout).contains("--human-readable"));

    // rsync's options jcp does not take: a usage error that says why, and
    // nothing copied.
    let to = work.path().join("never");
    let from = format!("{}/", src.display());
    for (args, why) in [
        (&["-av", "--inplace"][..], "never torn"),
        (&["-e", "ssh"], "run jsrv on the server"),
    ] {
        let mut args = args.to_vec();
        args.extend([from.as_str(), to.to_str().unwrap()]);
        let out = run("jcp", &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.starts_with("jcp: rsync's ") && err.contains(why),
            "{args:?}: {err}"
        );
        assert!(!to.exists(), "{args:?}");
    }
}

/// Files left alone still count in "Total file size", as in rsync: it is the
/// size of what the sender has (each name of a hard-linked file, and a
/// symlink's target's length), not of what moved; also when -H's first name
/// is left alone.
#[test]
fn skipped_files_count_in_the_total_size() {
    use jsync_tests::bins::stat;
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_source(&src);
    let target = "no/such/target";
    std::os::unix::fs::symlink(target, src.join("dangling")).unwrap();
    let src_arg = format!("{}/", src.display());
    let plain = work.path().join("plain");
    let out = run("jcp", &["--stats", &src_arg, plain.to_str().unwrap()]);
    ok(&out, "plain");
    let total = stat(&out.stdout, "Total file size:");
    let every_name: u64 = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .chain(
            std::fs::read_dir(src.join("new_dir"))
                .unwrap()
                .map(|e| e.unwrap().path()),
        )
        .filter(|p| p.is_file())
        .map(|p| p.metadata().unwrap().len())
        .sum();
    assert_eq!(total, every_name + target.len() as u64);
    let none = work.path().join("none");
    let out = run(
        "jcp",
        &["--existing", "--stats", &src_arg, none.to_str().unwrap()],
    );
    ok(&out, "--existing");
    assert_eq!(stat(&out.stdout, "Files transferred:"), 0);
    assert_eq!(stat(&out.stdout, "Total file size:"), total);
}

/// `--bwlimit 1M`: 2 MiB of file data take at least 1.5 s (the first piece
/// leaves at once, each next one when the ones before have had their time),
/// locally, pushed (jcp sends) and pulled (jsrv sends, told by jcp).
#[test]
fn bwlimit_paces_the_data_each_way() {
    use jsync_tests::pseudo_random;
    use std::time::{Duration, Instant};
    let keys = Keys::new();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..4u64 {
        std::fs::write(src.join(format!("f{i}")), pseudo_random(512 << 10, i)).unwrap();
    }
    let root = work.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let srv = Jsrv::start(keys.path(), &root, &[]);
    let src_arg = format!("{}/", src.display());
    let timed = |what: &str, out: &dyn Fn() -> Output, dst: &Path| {
        let began = Instant::now();
        let o = out();
        let took = began.elapsed();
        ok(&o, what);
        assert!(took >= Duration::from_millis(1500), "{what}: {took:?}");
        for i in 0..4u64 {
            assert_eq!(
                read(&dst.join(format!("f{i}"))),
                Some(pseudo_random(512 << 10, i)),
                "{what}"
            );
        }
    };
    let local = work.path().join("local");
    timed(
        "local",
        &|| {
            run(
                "jcp",
                &["--bwlimit", "1M", &src_arg, local.to_str().unwrap()],
            )
        },
        &local,
    );
    timed(
        "push",
        &|| {
            srv.jcp(
                keys.path(),
                &["--bwlimit", "1M", &src_arg, "127.0.0.1:pushed"],
            )
        },
        &root.join("pushed"),
    );
    let pulled = work.path().join("pulled");
    timed(
        "pull",
        &|| {
            srv.jcp(
                keys.path(),
                &[
                    "--bwlimit",
                    "1M",
                    "127.0.0.1:pushed/",
                    pulled.to_str().unwrap(),
                ],
            )
        },
        &pulled,
    );
}

/// `-b` keeps what a run replaces or deletes beside it as NAME~: the old
/// content of each replaced file, a deleted file, a deleted directory with
/// all it holds. Nothing is kept of what was up to date or new, and
/// --delete leaves earlier backups alone. Without -b nothing is kept.
#[test]
fn backup_keeps_what_is_replaced_or_deleted_beside_it() {
    let kept = |dst: &Path, what: &str| {
        let has = |name: &str, data: Option<&[u8]>| holds(dst, name, data, what);
        has("newer_here.txt~", Some(b"edited here!!!!!\n"));
        has("older_here.txt~", Some(b"old\n"));
        has("same_size.txt~", Some(b"wxyz"));
        // The old time goes with the old content.
        assert_eq!(mtime(&dst.join("older_here.txt~")), T, "{what}");
        has("extra.txt~", Some(b"extra\n"));
        // (A deleted directory goes entry by entry, as rsync's: its
        // files' backups keep it, with a warning.)
        has("extra_dir/deep/x~", Some(b"x\n"));
        has("earlier.txt~", Some(b"earlier\n"));
        // Up to date, or new: nothing to keep.
        has("same_stamp.txt~", None);
        has("only_there.txt~", None);
        has("extra.txt", None);
        has("extra_dir/deep/x", None);
    };
    each_way_then(&["-b", "--delete"], |dst, what| {
        check(dst, &source_state(), what);
        kept(dst, what);
    });
    each_way_then(&["--backup", "--suffix", ".old"], |dst, what| {
        check(dst, &source_state(), what);
        assert_eq!(
            read(&dst.join("older_here.txt.old")).as_deref(),
            Some(&b"old\n"[..]),
            "{what}"
        );
        assert_eq!(read(&dst.join("older_here.txt~")), None, "{what}");
    });
    each_way_then(&["--delete"], |dst, what| {
        check(dst, &source_state(), what);
        for name in [
            "older_here.txt~",
            "extra.txt~",
            "earlier.txt~",
            "extra_dir~",
        ] {
            assert!(!dst.join(name).exists(), "{what}: {name}");
        }
    });
}

/// `--backup-dir DIR` keeps them at the same paths beneath DIR, taken from
/// the destination directory: inside the destination (where --delete
/// leaves DIR alone) or beside it.
#[test]
fn backup_dir_keeps_them_in_a_tree_of_their_own() {
    let kept = |bak: &Path, what: &str| {
        let has = |name: &str, data: Option<&[u8]>| holds(bak, name, data, what);
        has("older_here.txt", Some(b"old\n"));
        has("same_size.txt", Some(b"wxyz"));
        has("extra.txt", Some(b"extra\n"));
        has("extra_dir/deep/x", Some(b"x\n"));
        has("same_stamp.txt", None);
        has("only_there.txt", None);
    };
    each_way_then(&["--backup-dir", "bak", "--delete"], |dst, what| {
        check(dst, &source_state(), what);
        kept(&dst.join("bak"), what);
        assert!(!dst.join("extra.txt").exists(), "{what}");
        assert!(!dst.join("bak/bak").exists(), "{what}");
    });
    each_way_then(&["--backup-dir", "../bak"], |dst, what| {
        let bak = dst.parent().unwrap().join("bak");
        assert_eq!(
            read(&bak.join("older_here.txt")).as_deref(),
            Some(&b"old\n"[..]),
            "{what}"
        );
        // Local and pulled destinations share a parent.
        std::fs::remove_dir_all(bak).unwrap();
    });
    // A directory sent by its name lands one level down, and so do its backups.
    let work = tempfile::tempdir().unwrap();
    let (src, dst) = (work.path().join("src"), work.path().join("dst"));
    put(&src.join("sub/f"), b"new\n", T + 1);
    put(&dst.join("src/sub/f"), b"old\n", T);
    let out = run(
        "jcp",
        &[
            "--backup-dir",
            "../bak",
            src.to_str().unwrap(),
            dst.to_str().unwrap(),
        ],
    );
    ok(&out, "jcp --backup-dir src dst");
    assert_eq!(
        read(&work.path().join("bak/src/sub/f")).as_deref(),
        Some(&b"old\n"[..])
    );
    assert_eq!(read(&dst.join("src/sub/f")).as_deref(), Some(&b"new\n"[..]));
    // The directories made for backups have the modes of those they
    // mirror (a private directory's backups stay private), as rsync's.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777;
    put(&src.join("sub/f"), b"newer\n", T + 2);
    for d in [src.join("sub"), dst.join("src/sub")] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    std::fs::set_permissions(dst.join("src"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o750)).unwrap();
    let out = run(
        "jcp",
        &[
            "--backup-dir",
            "../bak2",
            src.to_str().unwrap(),
            dst.to_str().unwrap(),
        ],
    );
    ok(&out, "jcp --backup-dir ../bak2 src dst");
    let bak2 = work.path().join("bak2");
    assert_eq!(
        read(&bak2.join("src/sub/f")).as_deref(),
        Some(&b"new\n"[..])
    );
    assert_eq!(mode(&bak2.join("src/sub")), 0o700);
    assert_eq!(mode(&bak2.join("src")), 0o750);
    // A run that keeps nothing leaves no backup directory, as rsync's
    // (which makes it only for a backup), each way.
    each_way_then(
        &["--backup-dir", "../none/bak", "--ignore-existing"],
        |dst, what| {
            let kept = Expect {
                newer_here: (b"edited here!!!!!\n", T + 500),
                older_here: (b"old\n", T),
                same_size: (b"wxyz", T + 100),
                new_files: true,
            };
            check(dst, &kept, what);
            assert!(!dst.parent().unwrap().join("none").exists(), "{what}");
        },
    );
    each_way_then(&["--backup-dir", "inside", "-c"], |dst, what| {
        assert!(dst.join("inside/same_stamp.txt").exists(), "{what}");
    });
}

/// A server keeps backups beneath its root: an absolute --backup-dir is
/// taken from the root, and one that leads out is refused before anything
/// is changed.
#[test]
fn a_servers_backup_dir_stays_beneath_its_root() {
    let keys = Keys::new();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_source(&src);
    let root = work.path().join("root");
    make_destination(&root.join("dst"));
    let srv = Jsrv::start(keys.path(), &root, &[]);
    let src_arg = format!("{}/", src.display());
    let out = srv.jcp(
        keys.path(),
        &["--backup-dir", "../../out", &src_arg, "127.0.0.1:dst"],
    );
    fails(
        &out,
        1,
        "leads outside the server's root",
        "--backup-dir ../../out",
    );
    assert!(!work.path().join("out").exists());
    assert_eq!(
        read(&root.join("dst/older_here.txt")).as_deref(),
        Some(&b"old\n"[..])
    );
    // Nor through a symlink in the root that leads out, as a backup
    // directory or a place to link or copy from (a file of the source's
    // size and time waits there): the run is refused before it starts.
    let outside = work.path().join("outside");
    put(
        &outside.join("older_here.txt"),
        b"secret content\n",
        T + 100,
    );
    std::os::unix::fs::symlink(&outside, root.join("out")).unwrap();
    for option in ["--backup-dir", "--link-dest", "--copy-dest"] {
        make_destination(&root.join("dst"));
        std::fs::remove_file(root.join("dst/older_here.txt")).unwrap();
        let out = srv.jcp(keys.path(), &[option, "../out", &src_arg, "127.0.0.1:dst"]);
        fails(&out, 1, "escapes the root", option);
        assert!(!root.join("dst/older_here.txt").exists(), "{option}");
        assert_eq!(files_in(&outside), ["older_here.txt"], "{option}");
    }
    std::fs::remove_file(root.join("out")).unwrap();
    make_destination(&root.join("dst"));
    ok(
        &srv.jcp(
            keys.path(),
            &["--backup-dir", "/keep", &src_arg, "127.0.0.1:dst"],
        ),
        "push --backup-dir /keep",
    );
    check(
        &root.join("dst"),
        &source_state(),
        "push --backup-dir /keep",
    );
    assert_eq!(
        read(&root.join("keep/older_here.txt")).as_deref(),
        Some(&b"old\n"[..])
    );
}

/// `--remove-source-files` makes a copy a move, locally, pushed and
/// pulled: each file the destination now has, received or found up to
/// date, leaves the source; one left alone (here by `-u`) stays, and so do
/// directories. Without it the source is untouched, and a read-only server
/// refuses it (a dry run excepted).
#[test]
fn remove_source_files_moves_what_the_destination_has() {
    let keys = Keys::new();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let srv = Jsrv::start(keys.path(), &root, &[]);
    let local_src = work.path().join("src");
    let server_src = root.join("src");
    let local_src_arg = format!("{}/", local_src.display());
    let (local, pulled) = (work.path().join("local"), work.path().join("pulled"));
    let (local_arg, pulled_arg) = (local.to_str().unwrap(), pulled.to_str().unwrap());
    let runs: [(&str, &Path, &Path, Vec<&str>); 3] = [
        ("local", &local_src, &local, vec![&local_src_arg, local_arg]),
        (
            "push",
            &local_src,
            &root.join("dst"),
            vec![&local_src_arg, "127.0.0.1:dst"],
        ),
        (
            "pull",
            &server_src,
            &pulled,
            vec!["127.0.0.1:src/", pulled_arg],
        ),
    ];
    for (how, src, dst, operands) in runs {
        let newer_kept = Expect {
            newer_here: (b"edited here!!!!!\n", T + 500),
            ..source_state()
        };
        let unmoved = (&[][..], files_in_source(), source_state());
        let moved = (
            &["--remove-source-files", "-u"][..],
            vec!["newer_here.txt".to_string()],
            newer_kept,
        );
        // With --delay-updates the sources go once their copies are in
        // place, at the end.
        let delayed = (
            &["--remove-source-files", "-u", "--delay-updates"][..],
            moved.1.clone(),
            Expect {
                newer_here: (b"edited here!!!!!\n", T + 500),
                ..source_state()
            },
        );
        for (options, left, expect) in [unmoved, moved, delayed] {
            let _ = std::fs::remove_dir_all(src);
            make_source(src);
            make_destination(dst);
            let what = format!("{how} {}", options.join(" "));
            let mut args = options.to_vec();
            args.extend(&operands);
            ok(&srv.jcp(keys.path(), &args), &what);
            assert_eq!(files_in(src), left, "{what}: the source");
            assert!(src.join("new_dir").is_dir(), "{what}: directories stay");
            check(dst, &expect, &what);
        }
    }
    let mut ro = Jsrv::start(keys.path(), &root, &["--read-only"]);
    make_source(&server_src);
    for (dry, code) in [(true, 0), (false, 1)] {
        let mut args = vec!["--remove-source-files", "127.0.0.1:src/", pulled_arg];
        if dry {
            args.insert(0, "-n");
        }
        let out = ro.jcp(keys.path(), &args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{}",
            jsync_tests::bins::describe(&out)
        );
        assert_eq!(
            files_in(&server_src),
            files_in_source(),
            "read-only, dry run {dry}"
        );
    }
    ro.terminate();
}

/// Every file [`make_source`] makes.
fn files_in_source() -> Vec<String> {
    [
        "linked_a",
        "linked_b",
        "new_dir/inner.txt",
        "newer_here.txt",
        "older_here.txt",
        "only_there.txt",
        "same_size.txt",
        "same_stamp.txt",
    ]
    .map(String::from)
    .to_vec()
}

fn inode(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).unwrap().ino()
}

/// `--link-dest`, `--copy-dest` and `--compare-dest` (rsync's snapshot
/// backups), locally, pushed and pulled into a new destination beside a
/// previous copy: a file the previous copy has the same is hard-linked,
/// copied, or left out; one it has otherwise is received (as a delta from
/// it); a directory that does not exist is passed over with a warning.
#[test]
fn link_copy_and_compare_dest_use_a_previous_copy() {
    let setup = Sources::new(make_source);
    let (keys, work, root, srv) = (&setup.keys, &setup.work, &setup.root, &setup.srv);
    let src = setup.src();
    // A large file whose previous copy lacks its last bytes.
    let big = jsync_tests::pseudo_random(256 << 10, 7);
    for s in [&src, &root.join("src")] {
        put(&s.join("big.bin"), &big, T);
    }
    // The previous copies (beside each destination): all the same but two.
    for prev in [work.path().join("prev"), root.join("prev")] {
        make_source(&prev);
        put(&prev.join("older_here.txt"), b"old\n", T);
        put(&prev.join("big.bin"), &big[..big.len() - 100], T - 1);
    }
    let src_arg = format!("{}/", src.display());
    let same = ["same_size.txt", "new_dir/inner.txt", "linked_a"];
    for how in ["--link-dest", "--copy-dest", "--compare-dest"] {
        for (way, dst, from, to) in ways(work.path(), root, &src_arg) {
            let _ = std::fs::remove_dir_all(&dst);
            let what = format!("{way} {how}");
            // A dry run into the destination not made yet shows what the
            // run does (it passed over a local `../prev`, looked up from
            // a destination that did not exist).
            let dry = [how, "../nowhere", how, "../prev", "-n", "-i", &from, &to];
            let dry = srv.jcp(keys.path(), &dry);
            ok(&dry, &format!("{what} -n"));
            let args = [
                how,
                "../nowhere",
                how,
                "../prev",
                "-i",
                "--stats",
                &from,
                &to,
            ];
            let out = srv.jcp(keys.path(), &args);
            ok(&out, &what);
            let lines = |out: &std::process::Output| {
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                let mut lines: Vec<String> = text
                    .lines()
                    .take_while(|l| !l.starts_with("Files checked:"))
                    .map(str::to_string)
                    .collect();
                lines.sort();
                lines
            };
            assert_eq!(lines(&dry), lines(&out), "{what}: the dry run's lines");
            // big.bin crosses as a delta from its previous copy.
            let literal = jsync_tests::bins::stat(&out.stdout, "Literal data:");
            assert!(
                literal < 64 << 10,
                "{what}: {literal} bytes of literal data"
            );
            assert_eq!(read(&dst.join("big.bin")), Some(big.clone()), "{what}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("../nowhere: no such directory"),
                "{what}: {err}"
            );
            let prev = dst.parent().unwrap().join("prev");
            // The one file that differs is received, whatever the option.
            holds(&dst, "older_here.txt", Some(b"newer content\n"), &what);
            assert_ne!(
                inode(&dst.join("older_here.txt")),
                inode(&prev.join("older_here.txt"))
            );
            for name in same {
                if how == "--compare-dest" {
                    assert!(!dst.join(name).exists(), "{what}: {name} left out");
                    continue;
                }
                holds(&dst, name, read(&src.join(name)).as_deref(), &what);
                assert_eq!(
                    mtime(&dst.join(name)),
                    mtime(&src.join(name)),
                    "{what}: {name}"
                );
                let linked = inode(&dst.join(name)) == inode(&prev.join(name));
                assert_eq!(linked, how == "--link-dest", "{what}: {name} linked");
            }
        }
    }
    // A server's stay beneath its root.
    let out = srv.jcp(
        keys.path(),
        &["--link-dest", "../../x", &src_arg, "127.0.0.1:dst2"],
    );
    fails(
        &out,
        1,
        "leads outside the server's root",
        "--link-dest ../../x",
    );
}

/// `--max-delete NUM` deletes at most NUM entries, warns of the rest and
/// exits with 25, locally, pushed and pulled; 0 only warns; a limit that
/// is not reached changes nothing. As in rsync, each entry a deleted
/// directory holds counts, and a directory's go first (deepest first).
#[test]
fn max_delete_stops_deleting_at_the_limit() {
    let setup = Sources::new(make_source);
    let (keys, work, root, srv) = (&setup.keys, &setup.work, &setup.root, &setup.srv);
    let src_arg = setup.src_arg();
    // make_destination leaves three entries the source lacks, five with
    // what extra_dir holds (deep/x, deep); as in rsync, extra_dir itself
    // is not counted as skipped when the limit kept what it holds.
    let extra = ["earlier.txt~", "extra.txt", "extra_dir/deep/x", "extra_dir"];
    for (max, code, left, skipped) in [
        ("1", 25, 3, 3),
        ("0", 25, 4, 4),
        ("4", 25, 1, 1),
        ("5", 0, 0, 0),
    ] {
        for (way, dst, from, to) in ways(work.path(), root, &src_arg) {
            make_destination(&dst);
            let what = format!("{way} --max-delete {max}");
            let out = srv.jcp(keys.path(), &["--delete", "--max-delete", max, &from, &to]);
            let shown = jsync_tests::bins::describe(&out);
            assert_eq!(out.status.code(), Some(code), "{what}: {shown}");
            let still = extra.iter().filter(|n| dst.join(n).exists()).count();
            assert_eq!(still, left, "{what}: {shown}");
            if code == 25 {
                let err = String::from_utf8_lossy(&out.stderr);
                assert!(
                    err.contains(&format!("({skipped} skipped)")),
                    "{what}: {err}"
                );
            }
            // Everything else is done.
            check(&dst, &source_state(), &what);
        }
    }
}

/// `--max-delete` holds what making way deletes too, as rsync's: a
/// directory in the way of a file (with `--force`) that holds more than the
/// limit leaves stays whole, that file fails ("could not make way", exit
/// 3) and the warning counts what was kept; within the limit it goes, each
/// entry it held counted as deleted and itemized (rsync's count and lines;
/// not the directory).
#[test]
fn max_delete_holds_making_way_too() {
    use jsync_tests::bins::stat;
    let prepare = |dst: &Path| put(&dst.join("only_there.txt/in/x"), b"x", T);
    each_way_out(&["--force", "--max-delete=1"], prepare, |dst, out, what| {
        assert_eq!(
            out.status.code(),
            Some(3),
            "{what}: {}",
            jsync_tests::bins::describe(out)
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("only_there.txt: could not make way for it")
                && err.contains("(2 skipped)"),
            "{what}: {err}"
        );
        holds(dst, "only_there.txt/in/x", Some(b"x"), what);
        holds(dst, "new_dir/inner.txt", Some(b"inner\n"), what);
    });
    each_way_out(
        &["--force", "--max-delete=2", "--stats", "-i"],
        prepare,
        |dst, out, what| {
            ok(out, what);
            holds(dst, "only_there.txt", Some(b"new file\n"), what);
            assert_eq!(stat(&out.stdout, "Deleted:"), 2, "{what}");
            // Each entry is itemized as rsync's, what it holds first; the
            // directory itself is not.
            let items = String::from_utf8_lossy(&out.stdout);
            assert!(
                items.contains("*deleting   only_there.txt/in/x\n*deleting   only_there.txt/in/\n")
                    && !items.contains("*deleting   only_there.txt/\n"),
                "{what}: {items}"
            );
        },
    );
}

/// A file pushed to a name in directories the server lacks gets them, as
/// a local copy does (rsync's --mkpath, accepted).
#[test]
fn missing_parent_directories_of_a_destination_are_made() {
    let keys = Keys::new();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let srv = Jsrv::start(keys.path(), &root, &[]);
    let file = work.path().join("f.txt");
    put(&file, b"f\n", T);
    let file = file.to_str().unwrap();
    ok(&srv.jcp(keys.path(), &[file, "127.0.0.1:a/b/name"]), "push");
    holds(&root, "a/b/name", Some(b"f\n"), "push");
    let local = work.path().join("x/y/name");
    ok(
        &srv.jcp(keys.path(), &["--mkpath", file, local.to_str().unwrap()]),
        "local",
    );
    holds(&work.path().join("x/y"), "name", Some(b"f\n"), "local");
}

/// With `-c`, what a `--*-dest` directory holds of the same size is compared
/// by content: the same content is taken (hard-linked only when its time
/// matches too, else copied), other content is received, even at the same
/// size and time (which without `-c` counts as the same, as in rsync).
#[test]
fn with_checksum_dest_directories_are_compared_by_content() {
    let setup = Sources::new(make_source);
    let (keys, work, root, srv) = (&setup.keys, &setup.work, &setup.root, &setup.srv);
    let src = setup.src();
    for prev in [work.path().join("prev"), root.join("prev")] {
        make_source(&prev);
        // Same size and time, other content; same content, other time.
        put(&prev.join("same_stamp.txt"), b"destin", T + 300);
        put(&prev.join("older_here.txt"), b"newer content\n", T);
    }
    let src_arg = format!("{}/", src.display());
    for how in ["--link-dest", "--copy-dest", "--compare-dest"] {
        for (way, dst, from, to) in ways(work.path(), root, &src_arg) {
            let _ = std::fs::remove_dir_all(&dst);
            let what = format!("{way} -c {how}");
            ok(
                &srv.jcp(keys.path(), &["-c", how, "../prev", &from, &to]),
                &what,
            );
            let prev = dst.parent().unwrap().join("prev");
            let linked = |name: &str| inode(&dst.join(name)) == inode(&prev.join(name));
            holds(&dst, "same_stamp.txt", Some(b"source"), &what);
            assert!(!linked("same_stamp.txt"), "{what}");
            if how == "--compare-dest" {
                for name in ["older_here.txt", "same_size.txt"] {
                    assert!(!dst.join(name).exists(), "{what}: {name} left out");
                }
                continue;
            }
            holds(&dst, "older_here.txt", Some(b"newer content\n"), &what);
            assert_eq!(mtime(&dst.join("older_here.txt")), T + 100, "{what}");
            assert!(!linked("older_here.txt"), "{what}: its time differs");
            holds(&dst, "same_size.txt", Some(b"abcd"), &what);
            assert_eq!(linked("same_size.txt"), how == "--link-dest", "{what}");
        }
    }
}

/// `--no-owner` and `--no-group` (as root): an entry whose content is up to
/// date keeps its owner and group, and what is made or replaced belongs to
/// the receiving user; without them every entry takes the source's.
#[test]
fn no_owner_and_no_group_leave_owners_to_the_receiver() {
    use std::os::unix::fs::{chown, MetadataExt};
    if !rustix::process::geteuid().is_root() {
        // Owners are set only as root (checked by the chown test above).
        return;
    }
    let setup = Sources::new(make_source);
    let (keys, work, root, srv) = (&setup.keys, &setup.work, &setup.root, &setup.srv);
    for s in [setup.src(), root.join("src")] {
        for f in ["same_stamp.txt", "older_here.txt", "only_there.txt"] {
            chown(s.join(f), Some(1234), Some(1235)).unwrap();
        }
    }
    let src_arg = setup.src_arg();
    for (options, up_to_date, made) in [
        (&["--no-o", "--no-g"][..], (4321, 4322), (0, 0)),
        (&["--no-owner"][..], (4321, 1235), (0, 1235)),
        (&[][..], (1234, 1235), (1234, 1235)),
    ] {
        for (way, dst, from, to) in ways(work.path(), root, &src_arg) {
            make_destination(&dst);
            // Up to date but for its owner (the quick check passes).
            chown(dst.join("same_stamp.txt"), Some(4321), Some(4322)).unwrap();
            let what = format!("{way} {options:?}");
            let mut args = options.to_vec();
            args.extend([from.as_str(), to.as_str()]);
            ok(&srv.jcp(keys.path(), &args), &what);
            let owner = |f: &str| {
                let m = std::fs::metadata(dst.join(f)).unwrap();
                (m.uid(), m.gid())
            };
            assert_eq!(owner("same_stamp.txt"), up_to_date, "{what}");
            assert_eq!(owner("older_here.txt"), made, "{what}: replaced");
            assert_eq!(owner("only_there.txt"), made, "{what}: new");
        }
    }
}

/// `--modify-window 1`: a file of the same size whose time is a second off
/// (as FAT keeps times) counts as up to date and is left as it is, time
/// included; without it the file is compared and replaced.
#[test]
fn modify_window_takes_close_times_as_the_same() {
    let setup = Sources::new(make_source);
    let (keys, work, root, srv) = (&setup.keys, &setup.work, &setup.root, &setup.srv);
    for s in [setup.src(), root.join("src")] {
        put(&s.join("coarse.txt"), b"new!", T + 601);
    }
    let src_arg = setup.src_arg();
    for (options, kept) in [(&["--modify-window", "1"][..], true), (&[][..], false)] {
        for (way, dst, from, to) in ways(work.path(), root, &src_arg) {
            make_destination(&dst);
            put(&dst.join("coarse.txt"), b"old!", T + 600);
            let what = format!("{way} {options:?}");
            let mut args = options.to_vec();
            args.extend([from.as_str(), to.as_str()]);
            ok(&srv.jcp(keys.path(), &args), &what);
            let (data, t): (&[u8], i64) = if kept {
                (b"old!", T + 600)
            } else {
                (b"new!", T + 601)
            };
            holds(&dst, "coarse.txt", Some(data), &what);
            assert_eq!(mtime(&dst.join("coarse.txt")), t, "{what}");
            // Times further apart are still told apart.
            check(&dst, &source_state(), &what);
        }
    }
}

/// A directory in the way of a file, as rsync's: an empty one makes way; one
/// that holds anything stays, and that file fails naming it, unless
/// `--force` or `--delete` (then it goes with all it holds); each way. And
/// `--delete-missing-args` deletes such a directory only so (else it is
/// left with a warning, no error, as rsync's).
#[test]
fn force_lets_a_file_replace_a_directory_that_holds_something() {
    let prepare = |dst: &Path| {
        put(&dst.join("only_there.txt/inside"), b"kept?", T);
        put(&dst.join("link/inside"), b"kept too?", T);
        std::fs::create_dir_all(dst.join("new_dir/inner.txt")).unwrap();
    };
    each_way_out(&["-i"], prepare, |dst, out, what| {
        fails(
            out,
            3,
            "only_there.txt: cannot replace a directory that is not empty without --force",
            what,
        );
        fails(
            out,
            3,
            "link: cannot replace a directory that is not empty",
            what,
        );
        // (What was not made is not itemized.)
        let items = String::from_utf8_lossy(&out.stdout);
        assert!(!items.contains(" link -> "), "{what}: {items}");
        assert!(!items.contains(" only_there.txt\n"), "{what}: {items}");
        assert!(dst.join("link/inside").exists(), "{what}");
        assert_eq!(
            read(&dst.join("only_there.txt/inside")).as_deref(),
            Some(&b"kept?"[..]),
            "{what}"
        );
        holds(dst, "new_dir/inner.txt", Some(b"inner\n"), what);
        holds(
            dst,
            "big.bin",
            Some(&jsync_tests::pseudo_random(256 << 10, 1)),
            what,
        );
    });
    for opt in ["--force", "--delete"] {
        each_way_out(&[opt], prepare, |dst, out, what| {
            ok(out, what);
            holds(dst, "only_there.txt", Some(b"new file\n"), what);
            holds(dst, "new_dir/inner.txt", Some(b"inner\n"), what);
        });
    }
    let work = tempfile::tempdir().unwrap();
    let (src, dst) = (work.path().join("src"), work.path().join("dst"));
    std::fs::create_dir_all(&src).unwrap();
    put(&dst.join("gone/inside"), b"x", T);
    let gone = format!("{}/gone", src.display());
    let args = [
        "--delete-missing-args",
        gone.as_str(),
        dst.to_str().unwrap(),
    ];
    // (Said and left, no error: rsync's "cannot delete non-empty
    // directory", exit 0.)
    let out = run("jcp", &args);
    ok(&out, "missing");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: gone: cannot delete a directory that is not empty"),
        "{err}"
    );
    assert!(dst.join("gone/inside").exists());
    let args = [
        "--delete-missing-args",
        "--force",
        gone.as_str(),
        dst.to_str().unwrap(),
    ];
    ok(&run("jcp", &args), "missing --force");
    assert!(!dst.join("gone").exists());
}

/// `jcp OPTIONS src/ dst` each way from [`make_destination`]'s state
/// (after `prepare(dst)`); `check(dst, output, what)` on each.
fn each_way_out(options: &[&str], prepare: impl Fn(&Path), check: impl Fn(&Path, &Output, &str)) {
    let setup = Sources::new(|src| {
        make_source(src);
        put(
            &src.join("big.bin"),
            &jsync_tests::pseudo_random(256 << 10, 1),
            T,
        );
        put(
            &src.join("same.bin"),
            &jsync_tests::pseudo_random(64 << 10, 2),
            T,
        );
        std::os::unix::fs::symlink("new_dir/inner.txt", src.join("link")).unwrap();
        let link = FileTime::from_unix_time(T, 0);
        filetime::set_symlink_file_times(src.join("link"), link, link).unwrap();
        filetime::set_file_mtime(src.join("new_dir"), link).unwrap();
    });
    let (keys, work, root, srv) = (&setup.keys, &setup.work, &setup.root, &setup.srv);
    for (way, dst, from, to) in ways(work.path(), root, &setup.src_arg()) {
        make_destination(&dst);
        prepare(&dst);
        let mut args = options.to_vec();
        args.extend([from.as_str(), to.as_str()]);
        let what = format!("{way} {}", options.join(" "));
        let out = srv.jcp(keys.path(), &args);
        check(&dst, &out, &what);
    }
}

/// `-W`: a changed file comes whole (its old copy is no basis), and one of
/// the same size and another time is sent, not compared by hash (unless
/// `-c`); without it only the changed bytes cross.
#[test]
fn whole_file_sends_changed_files_whole() {
    use jsync_tests::bins::stat;
    let prepare = |dst: &Path| {
        let mut big = jsync_tests::pseudo_random(256 << 10, 1);
        big[100_000..100_010].copy_from_slice(b"0123456789");
        put(&dst.join("big.bin"), &big, T + 5);
        put(
            &dst.join("same.bin"),
            &jsync_tests::pseudo_random(64 << 10, 2),
            T + 5,
        );
    };
    let (big, same) = (256 << 10, 64 << 10);
    for (options, least, most) in [
        (&["-W"][..], big + same, u64::MAX),
        (&["-W", "-c"][..], big, big + same - 1),
        (&[][..], 0, 100_000),
    ] {
        let mut args = options.to_vec();
        args.push("--stats");
        each_way_out(&args, prepare, |dst, out, what| {
            ok(out, what);
            let literal = stat(&out.stdout, "Literal data:");
            assert!(
                (least..=most).contains(&literal),
                "{what}: {literal} literal bytes"
            );
            assert_eq!(
                read(&dst.join("big.bin")),
                Some(jsync_tests::pseudo_random(big as usize, 1))
            );
            assert_eq!(mtime(&dst.join("same.bin")), T, "{what}");
        });
    }
}

/// `-O` leaves directories' times, `-J` symlinks' times, as they come.
#[test]
fn omit_dir_times_and_omit_link_times() {
    let ltime = |p: &Path| mtime(p);
    for (options, dir_kept, link_kept) in [
        (&["-O"][..], false, true),
        (&["-J"][..], true, false),
        (&[][..], true, true),
    ] {
        each_way_out(
            options,
            |_| {},
            |dst, out, what| {
                ok(out, what);
                assert_eq!(
                    ltime(&dst.join("new_dir")) == T,
                    dir_kept,
                    "{what}: new_dir"
                );
                assert_eq!(ltime(&dst.join("link")) == T, link_kept, "{what}: link");
                assert_eq!(
                    mtime(&dst.join("new_dir/inner.txt")),
                    T,
                    "{what}: files keep theirs"
                );
            },
        );
    }
}

/// `--delete-before` (`--delete-during`, `--del`) deletes before any file
/// is received: its `*deleting` lines come first. `--delete` deletes after.
#[test]
fn delete_before_deletes_before_the_transfer() {
    for (option, before) in [
        ("--delete-before", true),
        ("--delete-during", true),
        ("--del", true),
        ("--delete", false),
    ] {
        each_way_out(
            &[option, "-i"],
            |_| {},
            |dst, out, what| {
                ok(out, what);
                let text = String::from_utf8_lossy(&out.stdout);
                let lines: Vec<&str> = text.lines().collect();
                let at = |p: &str| lines.iter().position(|l| l.starts_with(p));
                let (deleted, received) = (at("*deleting"), at(">f"));
                let (Some(deleted), Some(received)) = (deleted, received) else {
                    panic!("{what}: {text}");
                };
                assert_eq!(deleted < received, before, "{what}: {text}");
                assert!(!dst.join("extra.txt").exists(), "{what}");
                check(dst, &source_state(), what);
            },
        );
    }
}

/// `--ignore-errors`: deletion goes ahead after the sender's I/O errors
/// (a per-directory rule file that does not parse); without it nothing is
/// deleted then.
#[test]
fn ignore_errors_deletes_despite_io_errors() {
    let setup = Sources::new(|src| {
        make_source(src);
        put(&src.join("bad/.rsync-filter"), b"not a rule\n", T);
    });
    let (keys, work, root, srv) = (&setup.keys, &setup.work, &setup.root, &setup.srv);
    for (options, deleted) in [(&["--ignore-errors"][..], true), (&[][..], false)] {
        for (way, dst, from, to) in ways(work.path(), root, &setup.src_arg()) {
            make_destination(&dst);
            // What the unreadable directory holds here is never deleted: the
            // sender lists it as unlisted.
            put(&dst.join("bad/precious"), b"keep", T);
            let mut args = vec!["-F", "--delete"];
            args.extend(options);
            args.extend([from.as_str(), to.as_str()]);
            let what = format!("{way} {}", args.join(" "));
            fails(
                &srv.jcp(keys.path(), &args),
                3,
                "bad: not walked: .rsync-filter:1",
                &what,
            );
            assert_eq!(!dst.join("extra.txt").exists(), deleted, "{what}");
            assert!(dst.join("bad/precious").exists(), "{what}");
        }
    }
}

/// `-S`: blocks of zeros arrive as holes, in a small file sent whole and in
/// a large one rebuilt from a recipe; without it they are written (the
/// content is the same either way), and only a large file's own holes are
/// kept. `--preallocate` (rsync's) allocates each file whole before it is
/// written, its holes too, unless `-S` punches its blocks of zeros out
/// again.
#[test]
fn sparse_and_preallocate_decide_what_is_a_hole() {
    use std::os::unix::fs::{FileExt, MetadataExt};
    let mut small = vec![0u8; 200 << 10];
    small[150_000] = 1;
    let mut large = vec![0u8; 2 << 20];
    large[1 << 20] = 1;
    let mut holey = vec![0u8; 1 << 20];
    holey[(1 << 20) - 1] = 1;
    // Small enough to go in a batch with others.
    let mut tiny = vec![0u8; 48 << 10];
    tiny[20_000] = 1;
    let setup = Sources::new(|src| {
        put(&src.join("tiny.bin"), &tiny, T);
        put(&src.join("small.bin"), &small, T);
        put(&src.join("large.bin"), &large, T);
        // A hole of a megabyte but its last byte, in the source itself.
        let f = std::fs::File::create(src.join("holey.bin")).unwrap();
        f.write_all_at(&[1], (1 << 20) - 1).unwrap();
        filetime::set_file_mtime(src.join("holey.bin"), FileTime::from_unix_time(T, 0)).unwrap();
    });
    let (keys, work, root, srv) = (&setup.keys, &setup.work, &setup.root, &setup.srv);
    // Whether zeros written (small, large) and the source's hole (holey)
    // arrive as holes.
    for (options, zeros, hole) in [
        (&["-S"][..], true, true),
        (&[][..], false, true),
        (&["--preallocate"], false, false),
        (&["--preallocate", "-S"], true, true),
    ] {
        for (way, dst, from, to) in ways(work.path(), root, &setup.src_arg()) {
            let _ = std::fs::remove_dir_all(&dst);
            let mut args = options.to_vec();
            args.extend([from.as_str(), to.as_str()]);
            for pass in ["new", "rebuilt"] {
                let what = format!("{way} {options:?} {pass}");
                if pass == "rebuilt" {
                    // Rebuilt by a delta from what the destination has.
                    let f = std::fs::OpenOptions::new()
                        .write(true)
                        .open(dst.join("large.bin"));
                    f.unwrap().write_all_at(b"edited", 100).unwrap();
                    filetime::set_file_mtime(
                        dst.join("large.bin"),
                        FileTime::from_unix_time(T + 1, 0),
                    )
                    .unwrap();
                }
                ok(&srv.jcp(keys.path(), &args), &what);
                for (name, data, sparse) in [
                    ("tiny.bin", &tiny, zeros),
                    ("small.bin", &small, zeros),
                    ("large.bin", &large, zeros),
                    ("holey.bin", &holey, hole),
                ] {
                    let p = dst.join(name);
                    assert_eq!(read(&p).as_ref(), Some(data), "{what}: {name}");
                    let allocated = std::fs::metadata(&p).unwrap().blocks() * 512;
                    let expect = if sparse {
                        allocated < 64 << 10
                    } else {
                        allocated >= data.len() as u64
                    };
                    assert!(expect, "{what}: {name}: {allocated} bytes allocated");
                }
            }
        }
    }
}

/// `--out-format`: a line per entry received, made or deleted, in the
/// format, on stdout whoever receives; `%i` makes it a line per change.
#[test]
fn out_format_lines_each_way() {
    each_way_out(
        &["--delete", "--out-format", "%o|%n%L|%'l|%B"],
        |_| {},
        |_, out, what| {
            ok(out, what);
            let text = String::from_utf8_lossy(&out.stdout);
            let op = if what.starts_with("pull") {
                "recv"
            } else {
                "send"
            };
            for want in [
                format!("{op}|only_there.txt|9|rw-r--r--"),
                format!("{op}|big.bin|262,144|rw-r--r--"),
                format!("{op}|new_dir/|0|rwxr-xr-x"),
                format!("{op}|link -> new_dir/inner.txt|17|rwxrwxrwx"),
                "del.|extra.txt|0|---------".to_string(),
            ] {
                assert!(
                    text.lines().any(|l| l == want),
                    "{what}: no {want:?} in\n{text}"
                );
            }
            // Attributes alone are not a transfer (same_stamp.txt is up to
            // date by size and time; its mode is the same).
            assert!(!text.contains("same_stamp"), "{what}: {text}");
        },
    );
    each_way_out(
        &["--out-format", "%i %n"],
        |_| {},
        |_, out, what| {
            ok(out, what);
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.lines().any(|l| l == ">f+++++++++ only_there.txt"),
                "{what}: {text}"
            );
        },
    );
}

/// `--usermap` and `--groupmap` (as root): the first pair that matches the
/// sender's owner, by name, wildcard, id or range, gives the receiver's
/// (`*` takes owners without a name too); unmatched owners are kept.
#[test]
fn usermap_and_groupmap_give_the_receivers_owners() {
    use std::os::unix::fs::{chown, MetadataExt};
    if !rustix::process::geteuid().is_root() {
        // Owners are set only as root (checked by the chown test above).
        return;
    }
    let setup = Sources::new(make_source);
    let (keys, work, root, srv) = (&setup.keys, &setup.work, &setup.root, &setup.srv);
    for s in [setup.src(), root.join("src")] {
        chown(s.join("only_there.txt"), Some(1234), Some(1235)).unwrap();
    }
    let src_arg = setup.src_arg();
    for (options, of_root, of_1234) in [
        (
            &["--usermap", "ro*:501", "--groupmap", "0:502"][..],
            (501, 502),
            (1234, 1235),
        ),
        (
            &["--usermap", "1000-2000:601,*:602", "--groupmap", "*:603"][..],
            (602, 603),
            (601, 603),
        ),
    ] {
        for (way, dst, from, to) in ways(work.path(), root, &src_arg) {
            make_destination(&dst);
            let mut args = options.to_vec();
            args.extend([from.as_str(), to.as_str()]);
            let what = format!("{way} {options:?}");
            ok(&srv.jcp(keys.path(), &args), &what);
            let owner = |f: &str| {
                let m = std::fs::metadata(dst.join(f)).unwrap();
                (m.uid(), m.gid())
            };
            assert_eq!(owner("new_dir/inner.txt"), of_root, "{what}");
            assert_eq!(owner("only_there.txt"), of_1234, "{what}");
        }
    }
    let out = srv.jcp(
        keys.path(),
        &[
            "--usermap",
            "*:no-such-user-here",
            &src_arg,
            "127.0.0.1:dst",
        ],
    );
    fails(
        &out,
        1,
        "no user called \"no-such-user-here\"",
        "an unknown TO",
    );
}

/// A POSIX ACL as Linux keeps it in `system.posix_acl_*`: owner rw, user
/// `uid` with `perm`, group r, mask rw, others r.
fn acl(uid: u32, perm: u16) -> Vec<u8> {
    acl_masked(uid, perm, 6)
}

/// [`acl`] with mask `mask`.
fn acl_masked(uid: u32, perm: u16, mask: u16) -> Vec<u8> {
    let none = u32::MAX;
    let mut out = 2u32.to_le_bytes().to_vec();
    for (tag, p, id) in [
        (0x01u16, 6u16, none),
        (0x02, perm, uid),
        (0x04, 4, none),
        (0x10, mask, none),
        (0x20, 4, none),
    ] {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&p.to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
    }
    out
}

const ACCESS: &str = "system.posix_acl_access";
const DEFAULT: &str = "system.posix_acl_default";

fn set_acl(path: &Path, name: &str, value: &[u8]) {
    rustix::fs::setxattr(path, name, value, rustix::fs::XattrFlags::empty())
        .unwrap_or_else(|e| panic!("{name} on {}: {e}", path.display()));
}

/// The ACL `name` of `path`, if it has one.
fn get_acl(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0; 4096];
    let n = rustix::fs::getxattr(path, name, &mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

/// `-A` brings access ACLs and directories' default ACLs over (a user
/// without a name keeps its number or takes `--usermap`'s; `daemon`'s is
/// mapped by name) and
/// removes those the source lacks, itemized with `a`; a second run finds
/// nothing to do. Without `-A` (with `-X` too) ACLs are left alone on both
/// sides, and a second run finds nothing to do either (it used to see the
/// source's ACL as an attribute to set again on every run).
#[test]
fn acls_travel_with_a_and_are_left_alone_without() {
    use std::os::unix::fs::PermissionsExt;
    let file_acl = acl(12345, 6);
    let dir_acl = acl(1, 4);
    let setup = Sources::new(|src| {
        make_source(src);
        put(&src.join("acl_dir/in.txt"), b"in\n", T);
        put(&src.join("acl.txt"), b"acl\n", T);
        set_acl(&src.join("acl.txt"), ACCESS, &file_acl);
        set_acl(&src.join("acl_dir"), ACCESS, &dir_acl);
        set_acl(&src.join("acl_dir"), DEFAULT, &file_acl);
        filetime::set_file_mtime(src.join("acl.txt"), FileTime::from_unix_time(T, 0)).unwrap();
    });
    let (keys, work, root, srv) = (&setup.keys, &setup.work, &setup.root, &setup.srv);
    let mapped = acl(54321, 6);
    // --chmod takes the group's write away: the mask follows the mode.
    let chmodded = acl_masked(12345, 6, 4);
    for (options, file_got, default_got) in [
        (&["-A"][..], &file_acl, &file_acl),
        (&["-aAX"], &file_acl, &file_acl),
        // Named users are mapped as owners are.
        (&["-A", "--usermap=12345:54321"], &mapped, &mapped),
        // (A default ACL has no mode to follow.)
        (&["-A", "--chmod=Fg-w"], &chmodded, &file_acl),
        (&["-X"], &file_acl, &file_acl),
        (&[], &file_acl, &file_acl),
    ] {
        let with = options.iter().any(|o| o.contains('A'));
        for (way, dst, from, to) in ways(work.path(), root, &setup.src_arg()) {
            make_destination(&dst);
            // Up to date but for an ACL the source lacks (its mask gives
            // the group write, so the mode differs too).
            put(&dst.join("only_there.txt"), b"new file\n", T);
            set_acl(&dst.join("only_there.txt"), ACCESS, &acl(777, 4));
            filetime::set_file_mtime(dst.join("only_there.txt"), FileTime::from_unix_time(T, 0))
                .unwrap();
            let what = format!("{way} {}", options.join(" "));
            let mut args = options.to_vec();
            args.extend(["-i", from.as_str(), to.as_str()]);
            let out = srv.jcp(keys.path(), &args);
            ok(&out, &what);
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            let got = |p: &str, n| get_acl(&dst.join(p), n);
            if with {
                assert_eq!(got("acl.txt", ACCESS).as_ref(), Some(file_got), "{what}");
                assert_eq!(got("acl_dir", ACCESS), Some(dir_acl.clone()), "{what}");
                assert_eq!(
                    got("acl_dir", DEFAULT).as_ref(),
                    Some(default_got),
                    "{what}"
                );
                assert_eq!(got("only_there.txt", ACCESS), None, "{what}");
                assert!(
                    stdout.contains(".f...p...a. only_there.txt"),
                    "{what}: {stdout}"
                );
            } else {
                assert_eq!(got("acl.txt", ACCESS), None, "{what}");
                assert_eq!(got("acl_dir", DEFAULT), None, "{what}");
                // Kept (its mask follows the mode the file gets).
                assert_eq!(
                    got("only_there.txt", ACCESS),
                    Some(acl_masked(777, 4, 4)),
                    "{what}"
                );
                assert!(
                    stdout.contains(".f...p..... only_there.txt"),
                    "{what}: {stdout}"
                );
            }
            // The mode the ACL gives (mask rw) is the source's (less
            // --chmod's g-w).
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            let chmod = if what.contains("g-w") { 0o020 } else { 0 };
            assert_eq!(
                mode(&dst.join("acl.txt")),
                mode(&setup.src().join("acl.txt")) & !chmod,
                "{what}"
            );
            let again = srv.jcp(keys.path(), &args);
            ok(&again, &what);
            assert_eq!(
                String::from_utf8_lossy(&again.stdout),
                "",
                "{what}: a second run"
            );
        }
    }
}

/// `-d` (without `-r`/`-a`): what the named directory holds arrives, its
/// directories empty; what the destination has in them stays, with
/// `--delete` too (which deletes only beside them). With `-r` it recurses
/// as ever.
#[test]
fn dirs_copies_directories_without_recursing() {
    let prepare = |dst: &Path| put(&dst.join("new_dir/kept.txt"), b"kept\n", T);
    for (options, recursed, deleted) in [
        (&["-d"][..], false, false),
        (&["-d", "--delete"], false, true),
        // With -m too: the directories met are unlisted, never deleted.
        (&["-d", "-m", "--delete"], false, true),
        (&["-d", "-r"], true, false),
    ] {
        each_way_out(options, prepare, |dst, out, what| {
            ok(out, what);
            holds(dst, "newer_here.txt", Some(b"from the source\n"), what);
            holds(dst, "only_there.txt", Some(b"new file\n"), what);
            holds(dst, "linked_b", Some(b"linked\n"), what);
            assert!(dst.join("new_dir").is_dir(), "{what}");
            holds(dst, "new_dir/kept.txt", Some(b"kept\n"), what);
            let inner = recursed.then_some(&b"inner\n"[..]);
            holds(dst, "new_dir/inner.txt", inner, what);
            assert_eq!(!dst.join("extra_dir").exists(), deleted, "{what}");
            assert_eq!(!dst.join("extra.txt").exists(), deleted, "{what}");
        });
    }
    // A directory named without a trailing slash arrives empty.
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_source(&src);
    let dst = work.path().join("dst");
    let out = run("jcp", &["-d", src.to_str().unwrap(), dst.to_str().unwrap()]);
    ok(&out, "-d src");
    assert!(dst.join("src").is_dir());
    assert_eq!(files_in(&dst), Vec::<String>::new(), "-d src");
}

/// `-y`: a file the destination lacks starts from a similar one beside it
/// (the closest name with the same suffix), so only what differs crosses;
/// without it, or when no name is close, the file comes whole. `-yy` looks
/// in the same directory of a `--link-dest` DIR too (`-y` does not).
#[test]
fn fuzzy_starts_a_new_file_from_a_similar_one_beside_it() {
    use jsync_tests::bins::stat;
    let big = 256 << 10;
    let near = |dst: &Path, name: &str, in_prev: bool| {
        let mut old = jsync_tests::pseudo_random(big, 1);
        old[100_000..100_010].copy_from_slice(b"0123456789");
        let dir = if in_prev {
            dst.parent().unwrap().join("prev")
        } else {
            dst.to_path_buf()
        };
        let _ = std::fs::remove_dir_all(dst.parent().unwrap().join("prev"));
        put(&dir.join(name), &old, T + 5);
    };
    let prev = "--link-dest=../prev";
    for (options, name, most, in_prev) in [
        (&["-y"][..], "bigg.bin", 100_000, false),
        (&["--fuzzy", "--delete"], "bigg.bin", 100_000, false),
        (&[], "bigg.bin", u64::MAX, false),
        (&["-y"], "big.dat", u64::MAX, false),
        (&["-y"], "zzzzzzz.bin", u64::MAX, false),
        (&["-yy", prev], "bigg.bin", 100_000, true),
        (&["-y", "-y", prev, "--delete"], "bigg.bin", 100_000, true),
        (&["-y", prev], "bigg.bin", u64::MAX, true),
        (&["-yy"], "bigg.bin", u64::MAX, true),
    ] {
        let mut args = options.to_vec();
        args.push("--stats");
        each_way_out(
            &args,
            |dst| near(dst, name, in_prev),
            |dst, out, what| {
                ok(out, what);
                let literal = stat(&out.stdout, "Literal data:");
                let least = if most == u64::MAX { big as u64 } else { 0 };
                assert!(
                    (least..=most).contains(&literal),
                    "{what} ({name}): {literal} literal bytes"
                );
                assert_eq!(
                    read(&dst.join("big.bin")),
                    Some(jsync_tests::pseudo_random(big, 1)),
                    "{what}"
                );
                let deleted = options.contains(&"--delete") || in_prev;
                assert_eq!(!dst.join(name).exists(), deleted, "{what}: {name}");
            },
        );
    }
}

/// `--delay-updates` (each way; the engine's tests check that files wait
/// for the end): the destination ends as the source, hard links included.
#[test]
fn delay_updates_ends_with_the_source_state() {
    each_way("--delay-updates", source_state());
    each_way_then(&["--delay-updates", "--delete"], |dst, what| {
        check(dst, &source_state(), what);
        assert_eq!(
            inode(&dst.join("linked_a")),
            inode(&dst.join("linked_b")),
            "{what}"
        );
        assert!(!dst.join("extra.txt").exists(), "{what}");
        let left: Vec<_> = files_in(dst)
            .into_iter()
            .filter(|n| n.contains("jsync"))
            .collect();
        assert!(left.is_empty(), "{what}: {left:?}");
    });
}

/// `--log-file FILE`: the command, a line per change (stdout stays empty
/// without `-i`), each warning and error, and the totals are appended to FILE, each
/// after a time and jcp's process id; a log that cannot be opened stops
/// the run before anything is copied.
#[test]
fn log_file_records_the_run() {
    let logs = tempfile::tempdir().unwrap();
    for print in [false, true] {
        let log = logs.path().join(format!("log-{print}"));
        let log_arg = format!("--log-file={}", log.display());
        // (--max-delete=0 for a warning: the deletions are skipped.)
        let mut options = vec![log_arg.as_str(), "--delete", "--max-delete=0"];
        if print {
            options.push("-i");
        }
        each_way_out(
            &options,
            |_| {},
            |dst, out, what| {
                fails(out, 25, "Deletions stopped", what);
                assert_eq!(out.stdout.is_empty(), !print, "{what}");
                holds(dst, "only_there.txt", Some(b"new file\n"), what);
            },
        );
        let text = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let count = |needle: &str| lines.iter().filter(|l| l.contains(needle)).count();
        // Three runs (local, push, pull).
        assert_eq!(count(&log_arg), 3, "{text}");
        assert_eq!(count("files transferred"), 3, "{text}");
        assert_eq!(count("jcp: warning: "), 3, "{text}");
        assert_eq!(count("] >f+++++++++ only_there.txt"), 3, "{text}");
        assert_eq!(count("] >fcst...... newer_here.txt"), 3, "{text}");
        for l in &lines {
            let (stamp, rest) = l.split_at(20);
            assert!(stamp.starts_with("20") && stamp.ends_with(' '), "{l}");
            assert!(rest.starts_with('[') && rest.contains("] "), "{l}");
        }
    }
    // Errors too (a rule file that does not parse), and the line that ends
    // them, as on stderr.
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    put(&src.join("bad/.rsync-filter"), b"not a rule\n", T);
    let log = work.path().join("log");
    let log_arg = format!("--log-file={}", log.display());
    let dst = work.path().join("dst");
    let out = run(
        "jcp",
        &["-F", &log_arg, src.to_str().unwrap(), dst.to_str().unwrap()],
    );
    fails(&out, 3, "not walked", "bad rules");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("] jcp: src/bad: not walked: .rsync-filter:1"),
        "{text}"
    );
    assert!(
        text.contains("] jcp: 1 file could not be transferred"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dst);
    let out = run(
        "jcp",
        &[
            "--log-file=/nonexistent/log",
            work.path().to_str().unwrap(),
            dst.to_str().unwrap(),
        ],
    );
    fails(
        &out,
        2,
        "cannot open the log file /nonexistent/log",
        "bad log",
    );
    assert!(!dst.exists());
}

/// `-U`: what is received gets the source's access times (files and
/// symlinks; directories keep theirs), each way: new entries, a file found
/// the same by hash, and a file up to date but for its access time
/// (itemized `u`), and a file copied rather than linked from a `--link-dest`
/// copy whose access time differs. `-UU` reads the source without moving
/// them. Without `-U` a received file's access time is its mtime.
#[test]
fn atimes_travel_with_u() {
    use std::os::unix::fs::MetadataExt;
    let atime = |p: &Path| {
        let m = std::fs::symlink_metadata(p).unwrap();
        (m.atime(), m.atime_nsec())
    };
    let set_atime = |p: &Path, a: i64| {
        let m = std::fs::symlink_metadata(p).unwrap();
        let mtime = FileTime::from_last_modification_time(&m);
        filetime::set_symlink_file_times(p, FileTime::from_unix_time(a, 5), mtime).unwrap();
    };
    // (Access times after the mtimes, years ago: reading would move them
    // where the mount is relatime.)
    let names = [("f", 7), ("same", 8), ("d/g", 9), ("l", 10)];
    let setup = Sources::new(|src| {
        put(&src.join("f"), b"file\n", T);
        put(&src.join("same"), b"same\n", T);
        put(&src.join("d/g"), b"deep\n", T);
        std::os::unix::fs::symlink("f", src.join("l")).unwrap();
        let t = FileTime::from_unix_time(T, 0);
        filetime::set_symlink_file_times(src.join("l"), t, t).unwrap();
        for (name, at) in names {
            set_atime(&src.join(name), T + at);
        }
    });
    let (keys, work, root, srv) = (&setup.keys, &setup.work, &setup.root, &setup.srv);
    for (way, dst, from, to) in ways(work.path(), root, &setup.src_arg()) {
        let src = match way {
            "pull" => root.join("src"),
            _ => setup.src(),
        };
        let jcp = |opts: &[&str]| {
            let mut args = opts.to_vec();
            args.extend([from.as_str(), to.as_str()]);
            let out = srv.jcp(keys.path(), &args);
            ok(&out, &format!("{way} {opts:?}"));
            String::from_utf8(out.stdout).unwrap()
        };
        // Without -U: the mtime's.
        jcp(&["-a"]);
        assert_eq!(atime(&dst.join("f")), (T, 0), "{way}");
        // With it: the source's, on new entries and on a file the same but
        // for its mtime (checked by hash).
        std::fs::remove_dir_all(&dst).unwrap();
        put(&dst.join("same"), b"same\n", T + 50);
        // (The run without -UU may have moved the source's.)
        for (name, at) in names {
            set_atime(&src.join(name), T + at);
        }
        jcp(&["-aUU"]);
        for (name, at) in names {
            assert_eq!(atime(&dst.join(name)), (T + at, 5), "{way}: {name}");
            assert_eq!(mtime(&dst.join(name)), T, "{way}: {name}");
            // (-UU: reading the source's files left their access times;
            // reading a symlink moves its own, O_NOATIME or not.)
            if name != "l" {
                assert_eq!(atime(&src.join(name)), (T + at, 5), "{way}: source {name}");
            }
        }
        // An access time alone brought up to date.
        set_atime(&src.join("f"), T + 20);
        let out = jcp(&["-aUU", "-i"]);
        assert!(out.lines().any(|l| l == ".f......u.. f"), "{way}: {out}");
        // (What already has the source's access time is left alone.)
        assert!(
            !out.contains(" same") && !out.contains(" d/g"),
            "{way}: {out}"
        );
        assert_eq!(atime(&dst.join("f")), (T + 20, 5), "{way}");
        // A previous copy with another access time is not linked to (the
        // link would carry its time) but copied, and given the source's.
        std::fs::remove_dir_all(&dst).unwrap();
        let prev = dst.parent().unwrap().join("prev");
        put(&prev.join("f"), b"file\n", T);
        set_atime(&prev.join("f"), T + 30);
        jcp(&["-aUU", "--link-dest=../prev"]);
        assert_eq!(atime(&dst.join("f")), (T + 20, 5), "{way}");
        assert_eq!(atime(&prev.join("f")), (T + 30, 5), "{way}");
        // With the same access time it is linked.
        std::fs::remove_dir_all(&dst).unwrap();
        set_atime(&prev.join("f"), T + 20);
        jcp(&["-aUU", "--link-dest=../prev"]);
        let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
        assert_eq!(
            ino(&dst.join("f")),
            ino(&prev.join("f")),
            "{way}: not linked"
        );
    }
}

/// `--no-links`, `--no-specials`, `--no-devices` and `--no-D`, as rsync's:
/// such entries are left out, each way, and what the destination has in
/// their place stays as it is, `--delete` or not, and each is said
/// (`skipping non-regular file "l"`, on stdout; not with `-q`); without
/// them they are made. (Devices only as root, where they can be made.)
#[test]
fn no_links_specials_and_devices_leave_those_entries_out() {
    use rustix::fs::{makedev, mknodat, FileType, Mode, CWD};
    let root_here = rustix::process::geteuid().is_root();
    let setup = Sources::new(|src| {
        put(&src.join("f"), b"file\n", T);
        std::os::unix::fs::symlink("f", src.join("l")).unwrap();
        mknodat(
            CWD,
            src.join("p"),
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        if rustix::process::geteuid().is_root() {
            let (kind, mode) = (FileType::CharacterDevice, Mode::from_raw_mode(0o600));
            mknodat(CWD, src.join("d"), kind, mode, makedev(1, 3)).unwrap();
        }
    });
    let (keys, work, root, srv) = (&setup.keys, &setup.work, &setup.root, &setup.srv);
    let kind = |p: &Path| std::fs::symlink_metadata(p).ok().map(|m| m.file_type());
    for (way, dst, from, to) in ways(work.path(), root, &setup.src_arg()) {
        for (opts, links, fifos, devices) in [
            (&["--no-l"][..], false, true, true),
            (&["--no-links", "--no-specials"], false, false, true),
            (&["--no-D"], true, false, false),
            (&["--no-devices"], true, true, false),
            (&["-a", "--no-D", "-D"], true, true, true),
            (&[], true, true, true),
        ] {
            let what = format!("{way} {opts:?}");
            let _ = std::fs::remove_dir_all(&dst);
            // What stands in their place: kept where they are left out.
            for name in ["l", "p", "d"] {
                put(&dst.join(name), b"here\n", T);
            }
            let mut args = opts.to_vec();
            args.extend(["--delete", from.as_str(), to.as_str()]);
            let out = srv.jcp(keys.path(), &args);
            ok(&out, &what);
            holds(&dst, "f", Some(b"file\n"), &what);
            // Each one left out is said, as rsync's (on stdout, not with -q).
            let said = String::from_utf8_lossy(&out.stdout);
            for (name, made) in [("l", links), ("p", fifos), ("d", devices || !root_here)] {
                let line = format!("skipping non-regular file \"{name}\"\n");
                assert_eq!(said.contains(&line), !made, "{what}: {name}: {said}");
            }
            if opts.len() == 1 {
                args.insert(0, "-q");
                let quiet = srv.jcp(keys.path(), &args);
                ok(&quiet, &what);
                assert!(quiet.stdout.is_empty(), "{what} -q");
                // What --ignore-existing leaves first is not said, as in
                // rsync (dst has l, p and d).
                args[0] = "--ignore-existing";
                let out = srv.jcp(keys.path(), &args);
                ok(&out, &what);
                let said = String::from_utf8_lossy(&out.stdout);
                assert!(
                    !said.contains("skipping"),
                    "{what} --ignore-existing: {said}"
                );
            }
            let made = |name: &str, made: bool, is: fn(&std::fs::FileType) -> bool| {
                let k = kind(&dst.join(name)).unwrap();
                match made {
                    true => assert!(is(&k), "{what}: {name} is {k:?}"),
                    // (Read only once it is known to be a file: a FIFO
                    // would block the read.)
                    false => {
                        assert!(k.is_file(), "{what}: {name} is {k:?}");
                        holds(&dst, name, Some(b"here\n"), &what);
                    }
                }
            };
            made("l", links, |k| k.is_symlink());
            made("p", fifos, std::os::unix::fs::FileTypeExt::is_fifo);
            if root_here {
                made("d", devices, std::os::unix::fs::FileTypeExt::is_char_device);
            }
        }
    }
}

/// `--log-file-format FORMAT`: the log's line per change is in a format of
/// its own, whatever stdout shows: rsync's `%i %n%L` without it (with an
/// `--out-format` too); without `%i` only what is received, made or
/// deleted; `''` none. It goes with `--log-file` only.
#[test]
fn log_file_format_chooses_the_log_lines() {
    let logs = tempfile::tempdir().unwrap();
    // The change lines of a log, after the time and process id (not the
    // command, warnings or totals).
    let changes = |log: &Path| -> Vec<String> {
        std::fs::read_to_string(log)
            .unwrap()
            .lines()
            .map(|l| l.split_once("] ").unwrap().1.to_owned())
            .filter(|l| {
                !l.contains("--log-file=") && !l.starts_with("jcp") && !l.contains("transferred")
            })
            .collect()
    };
    let runs = |name: &str, options: &[&str], check: &dyn Fn(&Output, &str)| {
        let log = logs.path().join(name);
        let log_arg = format!("--log-file={}", log.display());
        let mut all = vec![log_arg.as_str(), "--delete"];
        all.extend(options);
        each_way_out(&all, |_| {}, |_, out, what| check(out, what));
        changes(&log)
    };
    let printed = |out: &Output| String::from_utf8_lossy(&out.stdout).into_owned();
    // Its own format, beside another --out-format.
    let lines = runs(
        "own",
        &["--log-file-format=%o|%n|%l", "--out-format=%n"],
        &|out, what| {
            ok(out, what);
            assert!(
                printed(out).lines().any(|l| l == "only_there.txt"),
                "{what}"
            );
        },
    );
    let count = |lines: &[String], f: &dyn Fn(&str) -> bool| lines.iter().filter(|l| f(l)).count();
    assert_eq!(
        count(&lines, &|l| l.ends_with("|only_there.txt|9")),
        3,
        "{lines:?}"
    );
    assert_eq!(
        count(&lines, &|l| l.starts_with("del.|extra.txt|")),
        3,
        "{lines:?}"
    );
    // (Without %i: no itemized codes, and only transfers and deletions.)
    for l in &lines {
        let op = l.split('|').next().unwrap();
        assert!(["send", "recv", "del."].contains(&op), "{l}");
    }
    // rsync's default, whatever --out-format prints.
    let lines = runs("default", &["--out-format=%n"], &|out, what| {
        ok(out, what);
        assert!(
            printed(out).lines().any(|l| l == "only_there.txt"),
            "{what}"
        );
    });
    assert_eq!(
        count(&lines, &|l| l == ">f+++++++++ only_there.txt"),
        3,
        "{lines:?}"
    );
    assert_eq!(
        count(&lines, &|l| l == "*deleting   extra.txt"),
        3,
        "{lines:?}"
    );
    // '': no line per change in the log; -i still prints them.
    let lines = runs("none", &["--log-file-format=", "-i"], &|out, what| {
        ok(out, what);
        assert!(
            printed(out).contains(">f+++++++++ only_there.txt"),
            "{what}"
        );
    });
    assert_eq!(lines, Vec::<String>::new());
    // Without --log-file it does nothing, as rsync's (no log, no lines).
    each_way_out(
        &["--log-file-format=%n"],
        |_| {},
        |_, out, what| {
            ok(out, what);
            assert_eq!(printed(out), "", "{what}");
        },
    );
    // A format it knows, with --log-file.
    let log = logs.path().join("bad");
    let out = run(
        "jcp",
        &[
            &format!("--log-file={}", log.display()),
            "--log-file-format=%q",
            "a",
            "b",
        ],
    );
    fails(&out, 2, "--log-file-format: ", "bad format");
}

/// `--partial-dir`: a partial file there is resumed from (only the rest
/// crosses) and goes; with `--delay-updates` the files wait in it, and it is
/// gone once they are in place; what else the destination keeps in one is
/// left alone by `--delete` (rsync's added rules). A path is no name for it.
#[test]
fn partial_dir_holds_partial_files_and_is_kept_from_delete() {
    use jsync_tests::bins::stat;
    let big = 256 << 10;
    let prepare = |dst: &Path| {
        put(&dst.join(".part/left"), b"an older partial", T);
        // What an interrupted run kept of big.bin (the destination lacks it).
        let half = &jsync_tests::pseudo_random(big, 1)[..big / 2];
        put(&dst.join(".part/big.bin"), half, T);
    };
    let options = [
        "--partial-dir=.part",
        "--delay-updates",
        "--delete",
        "--stats",
    ];
    each_way_out(&options, prepare, |dst, out, what| {
        ok(out, what);
        let literal = stat(&out.stdout, "Literal data:");
        // same.bin (64 KiB) and the half of big.bin not kept, and small files.
        assert!(
            literal < (64 << 10) + big as u64 / 2 + 4096,
            "{what}: {literal}"
        );
        assert_eq!(
            read(&dst.join("big.bin")),
            Some(jsync_tests::pseudo_random(big, 1)),
            "{what}"
        );
        assert!(!dst.join(".part/big.bin").exists(), "{what}: used up");
        check(dst, &source_state(), what);
        assert!(!dst.join("extra.txt").exists(), "{what}");
        holds(dst, ".part/left", Some(b"an older partial"), what);
        assert!(!dst.join("new_dir/.part").exists(), "{what}");
        let waiting: Vec<_> = files_in(dst)
            .into_iter()
            .filter(|n| n.contains("jsync"))
            .collect();
        assert!(waiting.is_empty(), "{what}: {waiting:?}");
    });
    let setup = Sources::new(make_source);
    let out = setup.srv.jcp(
        setup.keys.path(),
        &["--partial-dir=a/b", &setup.src_arg(), "unused"],
    );
    fails(&out, 2, "--partial-dir a/b", "a path");
}

/// `-T DIR`: temp files are made in DIR (a relative DIR from the
/// destination directory), not beside their files: DIR sees them come and
/// go (its mtime moves) and the destination holds none; a temp a killed run
/// left in DIR goes; `--delete` leaves DIR alone inside the destination.
/// A missing DIR fails the run, named, as does one leading outside a
/// server's root; one on another filesystem than the destination is not
/// used, with a warning.
#[test]
fn temp_dir_holds_the_temp_files() {
    use std::os::unix::fs::MetadataExt;
    let old = FileTime::from_unix_time(T, 0);
    let beside = |dst: &Path| dst.parent().unwrap().join("tdir");
    let prepare = |dst: &Path| {
        let t = beside(dst);
        let _ = std::fs::remove_dir_all(&t);
        put(&t.join("mine"), b"the user's", T);
        filetime::set_file_mtime(&t, old).unwrap();
    };
    let no_temps = |dir: &Path, what: &str| {
        let temps: Vec<_> = files_in(dir)
            .into_iter()
            .filter(|n| n.contains("jsync"))
            .collect();
        assert!(temps.is_empty(), "{what}: {temps:?}");
    };
    each_way_out(&["-T", "../tdir"], prepare, |dst, out, what| {
        ok(out, what);
        check(dst, &source_state(), what);
        no_temps(dst, what);
        let t = beside(dst);
        no_temps(&t, what);
        holds(&t, "mine", Some(b"the user's"), what);
        // older_here.txt, replaced, had its temp there.
        assert!(mtime(&t) > T, "{what}: the temp dir was not used");
    });
    let stale = ".big.bin.jsync-tmp.0123456789abcdef";
    let inside = |dst: &Path| {
        put(
            &dst.join(".scratch").join(stale),
            b"left by a killed run",
            T,
        );
        put(&dst.join(".scratch/mine"), b"the user's", T);
    };
    each_way_out(&["-T", ".scratch", "--delete"], inside, |dst, out, what| {
        ok(out, what);
        check(dst, &source_state(), what);
        assert!(!dst.join("extra.txt").exists(), "{what}: deleted");
        holds(dst, ".scratch/mine", Some(b"the user's"), what);
        holds(dst, &format!(".scratch/{stale}"), None, what);
    });
    // A dry run says what the run would do: DIR stays, nothing is removed.
    each_way_out(
        &["-n", "-T", ".scratch", "--delete"],
        inside,
        |dst, out, what| {
            ok(out, what);
            let said = String::from_utf8_lossy(&out.stdout);
            let deleting = |l: &str| l.starts_with("*deleting") && l.ends_with(" extra.txt");
            assert!(said.lines().any(deleting), "{what}: {said}");
            assert!(!said.contains(".scratch"), "{what}: {said}");
            holds(
                dst,
                &format!(".scratch/{stale}"),
                Some(b"left by a killed run"),
                what,
            );
        },
    );
    let setup = Sources::new(make_source);
    let (keys, srv) = (setup.keys.path(), &setup.srv);
    let local = setup.work.path().join("local");
    let out = srv.jcp(keys, &["-T", "nope", &setup.src_arg(), "127.0.0.1:dst"]);
    fails(&out, 1, "--temp-dir nope: no such directory", "missing");
    let out = srv.jcp(keys, &["-T", "../..", &setup.src_arg(), "127.0.0.1:dst"]);
    fails(
        &out,
        1,
        "--temp-dir ../..: leads outside the server's root",
        "out",
    );
    let out = srv.jcp(keys, &["-T", "", &setup.src_arg(), "127.0.0.1:dst"]);
    fails(&out, 2, "--temp-dir: an empty directory name", "empty");
    // A directory on another filesystem (tmpfs /dev/shm, or /tmp when the
    // test runs there): left alone, with a warning.
    let here = std::fs::metadata(setup.work.path()).unwrap().dev();
    let elsewhere = ["/dev/shm", "/tmp", "/var/tmp", "/run"]
        .into_iter()
        .filter(|d| std::fs::metadata(d).is_ok_and(|m| m.dev() != here))
        .find_map(|d| tempfile::tempdir_in(d).ok())
        .expect("a writable second filesystem (/dev/shm, /tmp, /var/tmp or /run)");
    filetime::set_file_mtime(elsewhere.path(), old).unwrap();
    make_destination(&local);
    let t = elsewhere.path().to_str().unwrap();
    let out = srv.jcp(keys, &["-T", t, &setup.src_arg(), local.to_str().unwrap()]);
    ok(&out, "another filesystem");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("--temp-dir {t} is on another filesystem")),
        "{err}"
    );
    check(&local, &source_state(), "another filesystem");
    no_temps(&local, "another filesystem");
    assert_eq!(mtime(elsewhere.path()), T, "another filesystem: used");
}

/// This process's umask (jcp and the jsrv the tests start inherit it).
fn test_umask() -> u32 {
    jsync_tests::meta::umask()
}

fn mode_of(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `--no-perms` (rsync's): what the destination has keeps its modes (an
/// updated file too); what is new gets the source's access bits less the
/// umask, without setuid, while a new directory still inherits its
/// parent's setgid; with `-E` a file the destination has follows the
/// source's executability. `--perms` after it, or neither, keeps the
/// source's modes.
#[test]
fn no_perms_keeps_the_destinations_modes_and_masks_new_ones() {
    let setup = Sources::new(|src| {
        put(&src.join("new.sh"), b"#!/bin/sh\n", T);
        set_mode(&src.join("new.sh"), 0o4777);
        put(&src.join("updated.txt"), b"new content\n", T + 100);
        set_mode(&src.join("updated.txt"), 0o600);
        put(&src.join("updated.sh"), b"#!/bin/sh -e\n", T + 100);
        set_mode(&src.join("updated.sh"), 0o700);
        put(&src.join("to_exec.sh"), b"same\n", T + 10);
        set_mode(&src.join("to_exec.sh"), 0o755);
        put(&src.join("to_plain.txt"), b"plain\n", T + 10);
        set_mode(&src.join("to_plain.txt"), 0o644);
        put(&src.join("new_dir/f"), b"f\n", T);
        set_mode(&src.join("new_dir/f"), 0o666);
        set_mode(&src.join("new_dir"), 0o777);
        put(&src.join("kept_dir/g"), b"g\n", T);
        set_mode(&src.join("kept_dir"), 0o755);
        std::fs::create_dir_all(src.join("sgid/sub")).unwrap();
        set_mode(&src.join("sgid"), 0o755);
        set_mode(&src.join("sgid/sub"), 0o755);
        set_mode(src, 0o700);
    });
    let (keys, work, root, srv) = (&setup.keys, &setup.work, &setup.root, &setup.srv);
    let um = test_umask();
    let new = |m: u32| m & 0o777 & !um;
    for (options, kept, exec) in [
        (&["--no-perms"][..], true, false),
        (&["--no-p", "-E"][..], true, true),
        (&["--no-perms", "--perms"][..], false, false),
        (&[][..], false, false),
    ] {
        for (way, dst, from, to) in ways(work.path(), root, &setup.src_arg()) {
            let _ = std::fs::remove_dir_all(&dst);
            put(&dst.join("updated.txt"), b"old\n", T);
            set_mode(&dst.join("updated.txt"), 0o664);
            put(&dst.join("updated.sh"), b"old\n", T);
            set_mode(&dst.join("updated.sh"), 0o640);
            put(&dst.join("to_exec.sh"), b"same\n", T);
            set_mode(&dst.join("to_exec.sh"), 0o644);
            put(&dst.join("to_plain.txt"), b"plain\n", T);
            set_mode(&dst.join("to_plain.txt"), 0o751);
            std::fs::create_dir_all(dst.join("kept_dir")).unwrap();
            set_mode(&dst.join("kept_dir"), 0o750);
            std::fs::create_dir_all(dst.join("sgid")).unwrap();
            set_mode(&dst.join("sgid"), 0o2775);
            let sgid = mode_of(&dst.join("sgid")) & 0o2000;
            let mut args = options.to_vec();
            args.extend([from.as_str(), to.as_str()]);
            let what = format!("{way} {}", options.join(" "));
            ok(&srv.jcp(keys.path(), &args), &what);
            holds(&dst, "updated.txt", Some(b"new content\n"), &what);
            let expected: &[(&str, u32)] = match (kept, exec) {
                (true, _) => &[
                    ("new.sh", new(0o777)),
                    ("updated.txt", 0o664),
                    ("updated.sh", if exec { 0o750 } else { 0o640 }),
                    ("to_exec.sh", if exec { 0o755 } else { 0o644 }),
                    ("to_plain.txt", if exec { 0o640 } else { 0o751 }),
                    ("new_dir", new(0o777)),
                    ("new_dir/f", new(0o666)),
                    ("kept_dir", 0o750),
                    ("sgid", 0o2775),
                    ("sgid/sub", new(0o755) | sgid),
                ],
                (false, _) => &[
                    ("new.sh", 0o4777),
                    ("updated.txt", 0o600),
                    ("updated.sh", 0o700),
                    ("to_exec.sh", 0o755),
                    ("to_plain.txt", 0o644),
                    ("new_dir", 0o777),
                    ("new_dir/f", 0o666),
                    ("kept_dir", 0o755),
                    ("sgid", 0o755),
                    ("sgid/sub", 0o755),
                ],
            };
            for (name, mode) in expected {
                assert_eq!(
                    mode_of(&dst.join(name)),
                    *mode,
                    "{what}: {name} (umask {um:o})"
                );
            }
        }
    }
    // A destination directory the run makes is made as mkdir makes it,
    // named with a trailing slash or not (the source's is 0700), and so are
    // the missing directories above it; the source's directory named
    // without a trailing slash is new inside it. Under umask 002 locally,
    // where 0777 and 0755 differ; pushed, under the test's own.
    let src_arg = setup.src_arg();
    let src_named = setup.src().display().to_string();
    let under_002 = |args: &[&str]| {
        let mut sh = std::process::Command::new("sh");
        sh.args(["-c", "umask 002; exec \"$0\" \"$@\""]);
        sh.arg(jsync_tests::bins::bin("jcp")).args(args);
        sh.output().unwrap()
    };
    for (options, made, top) in [(&["--no-perms"][..], 0o775, 0o775), (&[][..], 0o775, 0o700)] {
        for (i, slash) in ["", "/"].into_iter().enumerate() {
            let name = format!("made{i}{}", options.len());
            let local = work.path().join(&name).join("deep");
            let mut args = options.to_vec();
            let to = format!("{}{slash}", local.display());
            args.extend([src_arg.as_str(), to.as_str()]);
            ok(&under_002(&args), &to);
            let what = format!("{to} {options:?}");
            assert_eq!(mode_of(&local), top, "{what}: the destination");
            assert_eq!(mode_of(local.parent().unwrap()), made, "{what}: above it");
            let pushed = format!("127.0.0.1:{name}{slash}");
            let mut args = options.to_vec();
            args.extend([src_arg.as_str(), pushed.as_str()]);
            ok(&srv.jcp(keys.path(), &args), &pushed);
            let top = if options.is_empty() {
                0o700
            } else {
                new(0o777)
            };
            assert_eq!(mode_of(&root.join(&name)), top, "{pushed} {options:?}");
        }
        let named = work.path().join(format!("named{}", options.len()));
        let args = [options, &[src_named.as_str(), named.to_str().unwrap()]].concat();
        ok(&under_002(&args), "src named");
        assert_eq!(mode_of(&named), made, "{options:?}: made for src");
        assert_eq!(
            mode_of(&named.join("src")),
            0o700,
            "{options:?}: src itself"
        );
    }
}

/// `--no-times` (rsync's): nothing gets the source's modification time (a
/// received file keeps the time it was written, itemized `T`, a dry run's
/// too); a file whose content is the same keeps its own; hard links are
/// still made. `-t` after it, or neither, brings the source's.
#[test]
fn no_times_leaves_modification_times_alone() {
    let setup = Sources::new(|src| {
        put(&src.join("new.txt"), b"new\n", T);
        put(&src.join("linked_a"), b"linked\n", T);
        std::fs::hard_link(src.join("linked_a"), src.join("linked_b")).unwrap();
        put(&src.join("updated.txt"), b"new content\n", T + 100);
        put(&src.join("same.txt"), b"same\n", T + 10);
        put(&src.join("new_dir/f"), b"f\n", T);
        filetime::set_file_mtime(src.join("new_dir"), FileTime::from_unix_time(T, 0)).unwrap();
        std::os::unix::fs::symlink("new.txt", src.join("link")).unwrap();
        let t = FileTime::from_unix_time(T, 0);
        filetime::set_symlink_file_times(src.join("link"), t, t).unwrap();
    });
    let (keys, work, root, srv) = (&setup.keys, &setup.work, &setup.root, &setup.srv);
    for (options, kept) in [
        (&["--no-times", "-i"][..], false),
        (&["--no-times", "-H"][..], false),
        (&["--no-t", "-t"][..], true),
        (&["-t", "--no-t"][..], false),
        (&[][..], true),
    ] {
        for (way, dst, from, to) in ways(work.path(), root, &setup.src_arg()) {
            let _ = std::fs::remove_dir_all(&dst);
            put(&dst.join("updated.txt"), b"old\n", T);
            put(&dst.join("same.txt"), b"same\n", T + 5);
            let mut args = options.to_vec();
            args.extend([from.as_str(), to.as_str()]);
            let what = format!("{way} {}", options.join(" "));
            let before = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64
                - 1;
            let out = srv.jcp(keys.path(), &args);
            ok(&out, &what);
            if options.contains(&"-i") {
                // T: the time of the transfer.
                let items = String::from_utf8_lossy(&out.stdout);
                assert!(items.contains(">fcsT...... updated.txt"), "{what}: {items}");
            }
            holds(&dst, "updated.txt", Some(b"new content\n"), &what);
            for (name, source) in [
                ("new.txt", T),
                ("updated.txt", T + 100),
                ("new_dir", T),
                ("new_dir/f", T),
                ("link", T),
            ] {
                let t = mtime(&dst.join(name));
                if kept {
                    assert_eq!(t, source, "{what}: {name}");
                } else {
                    assert!(
                        t >= before,
                        "{what}: {name} has {t}, not the time it was made"
                    );
                }
            }
            let same = if kept { T + 10 } else { T + 5 };
            assert_eq!(mtime(&dst.join("same.txt")), same, "{what}: same.txt");
            let ino = |n: &str| {
                std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(dst.join(n)).unwrap())
            };
            assert_eq!(ino("linked_a"), ino("linked_b"), "{what}: linked");
            if !kept {
                // The next run finds all up to date, and changes nothing.
                let out = srv.jcp(keys.path(), &["-i", "--no-times", &from, &to]);
                ok(&out, &what);
                assert_eq!(String::from_utf8_lossy(&out.stdout), "", "{what}: again");
                // A dry run shows what a run would receive, T too (a
                // file of the same size, found to differ by hash).
                put(&dst.join("same.txt"), b"SAME\n", T + 5);
                let out = srv.jcp(keys.path(), &["-n", "--no-times", &from, &to]);
                ok(&out, &what);
                let items = String::from_utf8_lossy(&out.stdout);
                assert!(items.contains(">fc.T...... same.txt"), "{what}: {items}");
            }
        }
    }
}

/// `-ii` (rsync's): unchanged entries are itemized too, as
/// `.f          PATH` (`hf          PATH` for a name already linked to its
/// first); `-i` shows only what changes. A dry run with `-c` compares
/// content: a file found the same shows as unchanged.
#[test]
fn itemize_twice_shows_unchanged_entries() {
    for (options, shown) in [
        (&["-ii"][..], true),
        (&["-i"][..], false),
        (&["-n", "-c", "-ii"][..], true),
    ] {
        each_way_out(
            options,
            |dst| {
                let same = jsync_tests::pseudo_random(64 << 10, 2);
                put(&dst.join("same.bin"), &same, T);
                put(&dst.join("linked_a"), b"linked\n", T);
                std::fs::hard_link(dst.join("linked_a"), dst.join("linked_b")).unwrap();
            },
            |_, out, what| {
                ok(out, what);
                let items = String::from_utf8_lossy(&out.stdout);
                assert_eq!(items.contains("same.bin"), shown, "{what}: {items}");
                assert_eq!(
                    items.contains(".f          same.bin\n"),
                    shown,
                    "{what}: {items}"
                );
                if !options.contains(&"-n") {
                    assert_eq!(
                        items.contains("hf          linked_b\n"),
                        shown,
                        "{what}: {items}"
                    );
                }
                assert!(items.contains(">f+++++++++ big.bin\n"), "{what}: {items}");
            },
        );
    }
}

/// A run's itemized lines, sorted, and `--stats`' count of files
/// transferred (its other totals, and the closing lines, differ from run to
/// run).
fn items_and_count(out: &Output) -> Vec<String> {
    let out = String::from_utf8_lossy(&out.stdout);
    let stats = |l: &&str| {
        l.starts_with(char::is_uppercase)
            || l.starts_with("sent ")
            || l.starts_with("total size is ")
    };
    let shown = out.lines().filter(|l| {
        !stats(l) || l.starts_with("Files transferred") || l.starts_with("Transferred size")
    });
    let mut shown: Vec<String> = shown.map(str::to_string).collect();
    shown.sort();
    shown
}

/// Runs `jcp ARGS` for real, which must show the lines (and count) a dry
/// run of it showed, `dry` ([`items_and_count`]).
fn real_run_shows(srv: &Jsrv, keys: &Path, args: &[&str], dry: &[String], what: &str) {
    let real = srv.jcp(keys, args);
    ok(&real, what);
    let shown = items_and_count(&real);
    assert_eq!(dry, shown, "{what}: the dry run's lines and the real run's");
}

/// A dry run compares content where a real run would (by hash: a file of
/// the same size and another time, and with `-c` every file of the same
/// size), as rsync's does with `-c`: it shows the lines the real run then
/// shows, and changes nothing. A file only touched shows as `.f..t`, one
/// edited as received, and with `-c` one edited under the same size and
/// time too.
#[test]
fn dry_run_compares_content_as_a_real_run_would() {
    use jsync_tests::tree::snapshot;
    let setup = Sources::new(|src| {
        make_source(src);
        put(
            &src.join("touched.bin"),
            &jsync_tests::pseudo_random(64 << 10, 2),
            T,
        );
    });
    let (keys, work, root, srv) = (&setup.keys, &setup.work, &setup.root, &setup.srv);
    for checksum in [false, true] {
        for (way, dst, from, to) in ways(work.path(), root, &setup.src_arg()) {
            make_destination(&dst);
            put(
                &dst.join("touched.bin"),
                &jsync_tests::pseudo_random(64 << 10, 2),
                T + 7,
            );
            let mut args = vec!["-i", "--stats", from.as_str(), to.as_str()];
            if checksum {
                args.insert(0, "-c");
            }
            let what = format!("{way} {}", args[..args.len() - 2].join(" "));
            let before = snapshot(&dst);
            let mut dry = args.clone();
            dry.insert(0, "-n");
            let dry_out = srv.jcp(keys.path(), &dry);
            ok(&dry_out, &what);
            assert!(
                before == snapshot(&dst),
                "{what}: the dry run changed the destination"
            );
            let shown = items_and_count(&dry_out);
            let has = |line: &str| shown.iter().any(|l| l == line);
            let sent = if checksum { 7 } else { 6 };
            assert!(
                has(&format!("Files transferred:    {sent}")),
                "{what}: {shown:?}"
            );
            // The sizes of the files received, as they are in the source.
            let size = |name: &str| std::fs::metadata(setup.src().join(name)).unwrap().len();
            let received: u64 = shown
                .iter()
                .filter(|l| l.starts_with(">f"))
                .map(|l| size(&l[12..]))
                .sum();
            assert!(received > 0, "{what}: {shown:?}");
            assert!(
                has(&format!("Transferred size:     {received} bytes")),
                "{what}: {shown:?}"
            );
            assert!(has(".f..t...... touched.bin"), "{what}: {shown:?}");
            assert!(has(">fc.t...... same_size.txt"), "{what}: {shown:?}");
            assert_eq!(
                has(">fc........ same_stamp.txt"),
                checksum,
                "{what}: {shown:?}"
            );
            let stamp = shown.iter().any(|l| l.ends_with(" same_stamp.txt"));
            assert_eq!(stamp, checksum, "{what}: {shown:?}");
            real_run_shows(srv, keys.path(), &args, &shown, &what);
        }
    }
}

/// `-ii` shows what a `--compare-dest` directory holds as unchanged
/// (`.f          PATH`) and a file linked to a `--link-dest` directory's as
/// an unchanged hard link (`hf          PATH`), as rsync's, a dry run too;
/// `-i` shows neither.
#[test]
fn itemize_twice_shows_files_found_in_previous_copies() {
    let setup = Sources::new(make_source);
    let (keys, work, root, srv) = (&setup.keys, &setup.work, &setup.root, &setup.srv);
    for prev in [work.path().join("prev"), root.join("prev")] {
        make_source(&prev);
        set_mode(&prev.join("new_dir/inner.txt"), 0o600);
    }
    for (alt, code) in [("--compare-dest", ".f"), ("--link-dest", "hf")] {
        for options in [&["-ii"][..], &["-i"], &["-n", "-ii"], &["-i", "--no-perms"]] {
            for (way, dst, from, to) in ways(work.path(), root, &setup.src_arg()) {
                let _ = std::fs::remove_dir_all(&dst);
                std::fs::create_dir(&dst).unwrap();
                let what = format!("{way} {alt} {}", options.join(" "));
                let mut args = options.to_vec();
                args.extend([alt, "../prev", &from, &to]);
                let out = srv.jcp(keys.path(), &args);
                ok(&out, &what);
                let items = String::from_utf8_lossy(&out.stdout);
                let line = format!("{code}          only_there.txt\n");
                let twice = options.contains(&"-ii");
                let named = |name: &str| items.lines().filter(|l| l.ends_with(name)).count();
                assert_eq!(items.contains(&line), twice, "{what}: {items}");
                assert_eq!(named(" only_there.txt"), twice as usize, "{what}: {items}");
                // What differs from the copy there shows, with -i too (its
                // mode only where modes are kept).
                if alt == "--compare-dest" && options.contains(&"--no-perms") {
                    assert_eq!(named(" new_dir/inner.txt"), 0, "{what}: {items}");
                } else if alt == "--compare-dest" {
                    let perms = ".f...p..... new_dir/inner.txt\n";
                    assert!(items.contains(perms), "{what}: {items}");
                    assert_eq!(named(" new_dir/inner.txt"), 1, "{what}: {items}");
                }
            }
        }
    }
}

/// Names with control characters or bytes that are not UTF-8 are shown
/// escaped, `\#ooo`, as rsync's: in itemized lines, `--out-format` and
/// `--list-only` (one line per entry, whatever the name holds, and no escape
/// sequence reaches the terminal); the files keep their own names.
#[test]
fn odd_names_are_shown_escaped() {
    use std::os::unix::ffi::OsStrExt;
    let names: [(&[u8], &str); 4] = [
        (b"two\nlines", "two\\#012lines"),
        (b"caf\xe9", "caf\\#351"),
        (b"\x1b[31mred", "\\#033[31mred"),
        // What reads as an escape already: its backslash is escaped.
        (b"lit\\#012", "lit\\#134#012"),
    ];
    let setup = Sources::new(|src| {
        for (name, _) in names {
            put(&src.join(std::ffi::OsStr::from_bytes(name)), b"odd\n", T);
        }
        let link = src.join("link");
        std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(b"caf\xe9\n"), &link).unwrap();
        let t = FileTime::from_unix_time(T, 0);
        filetime::set_symlink_file_times(&link, t, t).unwrap();
    });
    let (keys, work, root, srv) = (&setup.keys, &setup.work, &setup.root, &setup.srv);
    for (way, dst, from, to) in ways(work.path(), root, &setup.src_arg()) {
        for options in [&["-i"][..], &["-n", "--out-format=%n"], &["--list-only"]] {
            let _ = std::fs::remove_dir_all(&dst);
            let what = format!("{way} {}", options.join(" "));
            let mut args = options.to_vec();
            args.push(&from);
            if options[0] != "--list-only" {
                args.push(&to);
            }
            let out = srv.jcp(keys.path(), &args);
            ok(&out, &what);
            let stdout = String::from_utf8(out.stdout.clone()).expect("UTF-8 output");
            // (The first run makes the destination, and says so.)
            let lines: Vec<&str> = stdout
                .lines()
                .filter(|l| !l.starts_with("created "))
                .collect();
            let link = match options[0] {
                "-n" => "link".to_string(),
                _ => "link -> caf\\#351\\#012".to_string(),
            };
            for shown in names.map(|(_, shown)| shown).into_iter().chain([&link[..]]) {
                let line = match options[0] {
                    "-i" if shown == link => format!("cL+++++++++ {shown}"),
                    "-i" => format!(">f+++++++++ {shown}"),
                    "-n" => shown.to_string(),
                    _ => format!(" {shown}"),
                };
                let n = lines.iter().filter(|l| l.ends_with(&line)).count();
                assert_eq!(n, 1, "{what}: {line} in {lines:?}");
            }
            assert_eq!(lines.len(), 6, "{what}: one line per entry: {lines:?}");
            assert!(!stdout.contains('\x1b'), "{what}: {stdout:?}");
        }
        ok(&srv.jcp(keys.path(), &[&from, &to]), way);
        for (name, _) in names {
            let file = dst.join(std::ffi::OsStr::from_bytes(name));
            assert_eq!(read(&file).as_deref(), Some(&b"odd\n"[..]), "{way}");
        }
    }
    // jcp's own messages show a path from its command line so too.
    let gone = work.path().join(std::ffi::OsStr::from_bytes(b"gone\n\xe9"));
    let out = std::process::Command::new(jsync_tests::bins::bin("jcp"))
        .arg(&gone)
        .arg(work.path().join("nowhere"))
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr.clone()).expect("UTF-8 message");
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("/gone\\#012\\#351: "), "{err}");
}

/// A dry run with `-c` compares files with a `--*-dest` directory's copies
/// as the real run does: it shows the lines the real run then shows (`-ii`:
/// what is left out, linked or copied, and what differs from its copy),
/// and counts the same files transferred.
#[test]
fn dry_run_with_checksum_compares_previous_copies_too() {
    let setup = Sources::new(make_source);
    let (keys, work, root, srv) = (&setup.keys, &setup.work, &setup.root, &setup.srv);
    for prev in [work.path().join("prev"), root.join("prev")] {
        make_source(&prev);
        // The same size and time as the source's, other content.
        put(&prev.join("same_stamp.txt"), b"destin", T + 300);
    }
    for alt in ["--compare-dest", "--link-dest", "--copy-dest"] {
        for (way, dst, from, to) in ways(work.path(), root, &setup.src_arg()) {
            let _ = std::fs::remove_dir_all(&dst);
            std::fs::create_dir(&dst).unwrap();
            let args = ["-c", "-ii", "--stats", alt, "../prev", &from, &to];
            let what = format!("{way} {alt}");
            let dry = srv.jcp(keys.path(), &[&["-n"][..], &args].concat());
            ok(&dry, &what);
            assert!(files_in(&dst).is_empty(), "{what}: the dry run made files");
            let shown = items_and_count(&dry);
            let line = ">f+++++++++ same_stamp.txt".to_string();
            assert!(shown.contains(&line), "{what}: {shown:?}");
            assert!(
                shown.contains(&"Files transferred:    1".into()),
                "{what}: {shown:?}"
            );
            real_run_shows(srv, keys.path(), &args, &shown, &what);
        }
    }
}

/// With `--no-perms`, `--link-dest` links a previous copy whatever its mode
/// (as rsync's: modes count only where they are kept); with them kept, one
/// of another mode is copied.
#[test]
fn link_dest_without_perms_links_whatever_the_mode() {
    let setup = Sources::new(make_source);
    let (keys, work, root, srv) = (&setup.keys, &setup.work, &setup.root, &setup.srv);
    for prev in [work.path().join("prev"), root.join("prev")] {
        make_source(&prev);
        set_mode(&prev.join("same_size.txt"), 0o600);
    }
    for (options, linked) in [(&["--no-perms"][..], true), (&[][..], false)] {
        for (way, dst, from, to) in ways(work.path(), root, &setup.src_arg()) {
            let _ = std::fs::remove_dir_all(&dst);
            let what = format!("{way} {}", options.join(" "));
            let mut args = options.to_vec();
            args.extend(["--link-dest", "../prev", &from, &to]);
            ok(&srv.jcp(keys.path(), &args), &what);
            let prev = dst.parent().unwrap().join("prev");
            let name = "same_size.txt";
            holds(&dst, name, Some(b"abcd"), &what);
            let same = inode(&dst.join(name)) == inode(&prev.join(name));
            assert_eq!(same, linked, "{what}: {name} linked");
        }
    }
}

/// `--open-noatime` (rsync's): reading files leaves their access times, the
/// source's and a destination file's read for a hash check; without it the
/// reads move them (as relatime does for an access time older than the
/// modification time).
#[test]
fn open_noatime_leaves_access_times_alone() {
    let setup = Sources::new(|src| {
        put(
            &src.join("big.bin"),
            &jsync_tests::pseudo_random(256 << 10, 1),
            T,
        );
        put(
            &src.join("same.bin"),
            &jsync_tests::pseudo_random(64 << 10, 2),
            T,
        );
    });
    let (keys, work, root, srv) = (&setup.keys, &setup.work, &setup.root, &setup.srv);
    let old = FileTime::from_unix_time(T - 1000, 0);
    let atime =
        |p: &Path| FileTime::from_last_access_time(&std::fs::metadata(p).unwrap()).unix_seconds();
    // (-c: the destination's copy of same.bin, of the same size and time, is
    // read and hashed, and left as it is.)
    for (options, kept) in [(&["--open-noatime", "-c"][..], true), (&["-c"][..], false)] {
        for (way, dst, from, to) in ways(work.path(), root, &setup.src_arg()) {
            let src = match way {
                "pull" => root.join("src"),
                _ => setup.src(),
            };
            let _ = std::fs::remove_dir_all(&dst);
            let same = jsync_tests::pseudo_random(64 << 10, 2);
            put(&dst.join("same.bin"), &same, T);
            for p in [
                src.join("big.bin"),
                src.join("same.bin"),
                dst.join("same.bin"),
            ] {
                filetime::set_file_atime(&p, old).unwrap();
            }
            let mut args = options.to_vec();
            args.extend([from.as_str(), to.as_str()]);
            let what = format!("{way} {}", options.join(" "));
            ok(&srv.jcp(keys.path(), &args), &what);
            holds(
                &dst,
                "big.bin",
                Some(&jsync_tests::pseudo_random(256 << 10, 1)),
                &what,
            );
            for p in [
                src.join("big.bin"),
                src.join("same.bin"),
                dst.join("same.bin"),
            ] {
                let left = atime(&p) == old.unix_seconds();
                assert_eq!(
                    left,
                    kept,
                    "{what}: {} accessed at {}",
                    p.display(),
                    atime(&p)
                );
            }
        }
    }
}

/// Text that compresses, better at higher zstd levels: words drawn by a
/// small generator.
fn prose(len: usize, seed: u32) -> Vec<u8> {
    let words = [
        "sync", "chunk", "delta", "peer", "circuit", "frame", "file", "hash", "lane",
    ];
    let mut x = seed;
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        out.extend_from_slice(words[(x >> 16) as usize % words.len()].as_bytes());
        out.push(if x % 7 == 0 { b'\n' } else { b' ' });
    }
    out.truncate(len);
    out
}

/// `--compress-level` and `--skip-compress`, pushed and pulled (the sender
/// is jsrv for a pull): with -z a file named as a compressed format
/// (`.jpg`, rsync's default list) crosses as it is, one on its own and one
/// batched with small files; with an empty list it is compressed too; a
/// higher level packs the same files smaller.
#[test]
fn compress_level_and_skip_compress_decide_what_is_packed() {
    const BIG: usize = 1 << 20;
    const SMALL: usize = 40 << 10;
    const N: u32 = 16;
    let setup = Sources::new(|src| {
        put(&src.join("notes.txt"), &prose(BIG, 1), T);
        put(&src.join("photo.jpg"), &prose(BIG, 2), T);
        // Small files go many to a message: .JPG and .txt in turn.
        for i in 0..N {
            put(
                &src.join(format!("small/{i:02}.JPG")),
                &prose(SMALL, 10 + i),
                T,
            );
            put(
                &src.join(format!("small/{i:02}.txt")),
                &prose(SMALL, 100 + i),
                T,
            );
        }
    });
    let (keys, work, root, srv) = (&setup.keys, &setup.work, &setup.root, &setup.srv);
    // What the .jpg files hold, and the .txt files.
    let jpg = (BIG + N as usize * SMALL) as u64;
    let txt = jpg;
    for (way, dst, from, to) in ways(work.path(), root, &setup.src_arg()) {
        if way == "local" {
            continue; // nothing crosses a wire
        }
        // Each run into an empty destination, or (`delta`) into one that
        // holds other versions of the two large files, which then go as
        // deltas, all new data.
        let run = |options: &[&str], delta: bool| {
            let _ = std::fs::remove_dir_all(&dst);
            if delta {
                put(&dst.join("notes.txt"), &prose(BIG, 7), T - 9);
                put(&dst.join("photo.jpg"), &prose(BIG, 8), T - 9);
            }
            let mut args = vec!["--stats"];
            args.extend(options);
            args.extend([from.as_str(), to.as_str()]);
            let what = format!("{way} {}", options.join(" "));
            let out = srv.jcp(keys.path(), &args);
            ok(&out, &what);
            holds(&dst, "notes.txt", Some(&prose(BIG, 1)), &what);
            holds(&dst, "photo.jpg", Some(&prose(BIG, 2)), &what);
            for i in 0..N {
                let name = format!("small/{i:02}.JPG");
                holds(&dst, &name, Some(&prose(SMALL, 10 + i)), &what);
                let name = format!("small/{i:02}.txt");
                holds(&dst, &name, Some(&prose(SMALL, 100 + i)), &what);
            }
            jsync_tests::bins::stat(&out.stdout, "Bytes on the wire:")
        };
        let wire = |options: &[&str]| run(options, false);
        let plain = wire(&["--compress", "none"]);
        let skipped = wire(&["-z"]);
        let packed = wire(&["-z", "--skip-compress="]);
        let best = wire(&["--compress-level", "19", "--skip-compress="]);
        // The .jpg files cross as they are: what -z saves is the rest's.
        assert!(
            skipped > jpg && skipped < plain - jpg / 2,
            "{way}: {skipped} of {plain}"
        );
        assert!(
            packed < skipped - jpg / 2,
            "{way}: {packed} with the .jpg files packed"
        );
        assert!(
            best < packed * 95 / 100,
            "{way}: level 19 {best}, level 1 {packed}"
        );
        // Skipping only .txt: the .jpg files are packed, the .txt not.
        let only_txt = wire(&["-z", "--skip-compress", "txt"]);
        assert!(
            only_txt > txt && only_txt < plain - jpg / 2,
            "{way}: {only_txt}"
        );
        // A delta's new data is compressed by default, but a .jpg's.
        let delta = run(&[], true);
        let delta_packed = run(&["--skip-compress="], true);
        assert!(
            delta > delta_packed + BIG as u64 / 2,
            "{way}: deltas {delta}, with the .jpg packed {delta_packed}"
        );
        // A single file sent as the source: its own name counts.
        let (one, from, to) = match way {
            "push" => (
                root.join("one"),
                setup.src().join("photo.jpg").display().to_string(),
                "127.0.0.1:one/".to_string(),
            ),
            _ => {
                let one = work.path().join("one");
                let to = format!("{}/", one.display());
                (one, "127.0.0.1:src/photo.jpg".into(), to)
            }
        };
        let single = |options: &[&str]| {
            let _ = std::fs::remove_dir_all(&one);
            let mut args = vec!["--stats", from.as_str(), to.as_str()];
            args.splice(0..0, options.iter().copied());
            let out = srv.jcp(keys.path(), &args);
            let what = format!("{way} one file {}", options.join(" "));
            ok(&out, &what);
            holds(&one, "photo.jpg", Some(&prose(BIG, 2)), &what);
            jsync_tests::bins::stat(&out.stdout, "Bytes on the wire:")
        };
        let (raw, packed) = (single(&["-z"]), single(&["-z", "--skip-compress="]));
        assert!(
            raw > BIG as u64 && packed < raw / 2,
            "{way}: one .jpg {raw}, packed {packed}"
        );
    }
}

/// `-v` lists what changed as rsync's does (its `--out-format '%n%L'`), on
/// stdout: what is received or made (symlinks with their target, hard
/// links with their first name), a directory whose attributes changed, and
/// each deletion as `deleting NAME`; not a file whose attributes alone
/// changed. Then rsync's closing lines: the bytes sent and received, the
/// total size (every name's, and each symlink's target length) and the
/// speedup. Nothing reaches stderr. `-vv` adds rsync's `NAME is uptodate`.
#[test]
fn verbose_lists_what_changed_as_rsync() {
    let prepare = |dst: &Path| {
        // A directory the destination has with another time, and a file
        // the same but for its mode.
        put(&dst.join("new_dir/inner.txt"), b"inner\n", T);
        filetime::set_file_mtime(dst.join("new_dir"), FileTime::from_unix_time(T + 9, 0)).unwrap();
        put(&dst.join("only_there.txt"), b"new file\n", T);
        std::fs::set_permissions(
            dst.join("only_there.txt"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
    };
    each_way_out(&["-v", "--delete"], prepare, |dst, out, what| {
        ok(out, what);
        assert!(
            out.stderr.is_empty(),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let (names, summary) = stdout
            .split_once("\n\n")
            .expect("a blank line before the summary");
        let mut names: Vec<&str> = names.lines().collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "./",
                "big.bin",
                "deleting earlier.txt~",
                "deleting extra.txt",
                "deleting extra_dir/",
                "deleting extra_dir/deep/",
                "deleting extra_dir/deep/x",
                "link -> new_dir/inner.txt",
                "linked_a",
                "linked_b => linked_a",
                "new_dir/",
                "newer_here.txt",
                "older_here.txt",
                "same.bin",
                "same_size.txt",
            ],
            "{what}: {stdout}"
        );
        holds(dst, "only_there.txt", Some(b"new file\n"), what);
        let every_name: u64 = files_in(dst)
            .iter()
            .map(|f| std::fs::symlink_metadata(dst.join(f)).unwrap().len())
            .sum();
        let lines: Vec<&str> = summary.lines().collect();
        assert_eq!(lines.len(), 2, "{what}: {summary}");
        assert!(
            lines[0].starts_with("sent ")
                && lines[0].contains(" bytes  received ")
                && lines[0].ends_with(" bytes/sec"),
            "{what}: {summary}"
        );
        let total = jsync::sync::with_commas(every_name);
        assert!(
            lines[1].starts_with(&format!("total size is {total}  speedup is ")),
            "{what}: {summary}"
        );
    });
    // -vv, as rsync's: besides, `NAME is uptodate` for each entry found up
    // to date (not a directory), and the bare name of a file whose
    // attributes alone changed.
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("log");
    let log_arg = format!("--log-file={}", log.display());
    each_way_out(&["-vv", &log_arg], prepare, |_, out, what| {
        ok(out, what);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        for want in [
            "same_stamp.txt is uptodate",
            "only_there.txt",
            "new_dir/",
            "newer_here.txt",
        ] {
            assert!(lines.contains(&want), "{what}: {want:?} in {stdout}");
        }
        assert!(
            !stdout.contains("/ is uptodate") && !stdout.contains("newer_here.txt is"),
            "{what}: {stdout}"
        );
    });
    // The log file has the changes alone (unchanged entries only with -ii),
    // as rsync's.
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("newer_here.txt")
            && !logged.contains("same_stamp.txt")
            && !logged.contains("is uptodate"),
        "{logged}"
    );
}

/// rsync's line for the destination a run makes: "created directory DST"
/// (DST as typed, before any other line) with -v or -i, "created N
/// directories for DST" where parents were missing too or with --mkpath
/// (for a single file taking DST's name, its parents: "for PARENT"); a dry
/// run says it and makes nothing; nothing when DST exists, nor with -q; the
/// log file has it. Locally, pushed and pulled; locally beside rsync.
#[test]
fn created_directory_lines_as_rsync() {
    let setup = Sources::new(|src| {
        put(&src.join("f.txt"), b"f\n", T);
        put(&src.join("sub/g.txt"), b"g\n", T);
    });
    let (keys, work, root, srv) = (&setup.keys, &setup.work, &setup.root, &setup.srv);
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("log");
    let log_arg = format!("--log-file={}", log.display());
    let local_src = setup.src_arg();
    for way in ["local", "push", "pull"] {
        std::fs::create_dir_all(work.path().join(way)).unwrap();
        std::fs::create_dir_all(root.join(way)).unwrap();
        // (operand, path on disk) of a destination named `rel`; a push's
        // shows without the host, as rsync's.
        let dst = |rel: &str| match way {
            "push" => (format!("127.0.0.1:{way}/{rel}"), root.join(way).join(rel)),
            _ => {
                let p = work.path().join(way).join(rel);
                (p.display().to_string(), p)
            }
        };
        let shown = |operand: &str| operand.trim_start_matches("127.0.0.1:").to_string();
        let (src, file) = match way {
            "pull" => (
                "127.0.0.1:src/".to_string(),
                "127.0.0.1:src/f.txt".to_string(),
            ),
            _ => (local_src.clone(), format!("{local_src}f.txt")),
        };
        let first_line = |args: &[&str], what: &str| {
            let out = srv.jcp(keys.path(), args);
            ok(&out, what);
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            stdout.lines().next().unwrap_or("").to_string()
        };
        let (new1, new1_path) = dst("new1");
        let what = format!("{way} -v");
        assert_eq!(
            first_line(&["-v", &log_arg, &src, &new1], &what),
            format!("created directory {}", shown(&new1)),
            "{what}"
        );
        assert!(new1_path.join("sub/g.txt").is_file(), "{what}");
        let logged = std::fs::read_to_string(&log).unwrap();
        assert!(
            logged.contains(&format!("] created directory {}\n", shown(&new1))),
            "{what}: {logged}"
        );
        let again = first_line(&["-v", &src, &format!("{new1}/")], &what);
        assert!(!again.starts_with("created"), "{what}: {again}");
        let (deep, deep_path) = dst("new2/a/b/");
        let what = format!("{way} -i");
        let out = srv.jcp(keys.path(), &["-i", &src, &deep]);
        ok(&out, &what);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = stdout.lines().take(2).collect();
        let named = shown(deep.trim_end_matches('/'));
        assert_eq!(
            lines,
            [
                format!("created 3 directories for {named}").as_str(),
                "cd+++++++++ ./"
            ],
            "{what}"
        );
        assert!(deep_path.join("f.txt").is_file(), "{what}");
        let (mk, _) = dst("new3");
        let what = format!("{way} --mkpath");
        assert_eq!(
            first_line(&["-v", "--mkpath", &src, &mk], &what),
            format!("created 1 directory for {}", shown(&mk)),
            "{what}"
        );
        let (one, one_path) = dst("new4/x/name.txt");
        let what = format!("{way} a file");
        let parent = one.strip_suffix("/name.txt").unwrap();
        assert_eq!(
            first_line(&["-v", &file, &one], &what),
            format!("created 2 directories for {}", shown(parent)),
            "{what}"
        );
        assert_eq!(std::fs::read(&one_path).unwrap(), b"f\n", "{what}");
        let (dry, dry_path) = dst("new5");
        let what = format!("{way} -n");
        assert_eq!(
            first_line(&["-vn", &src, &dry], &what),
            format!("created directory {}", shown(&dry)),
            "{what}"
        );
        assert!(!dry_path.exists(), "{what}");
        let (quiet, quiet_path) = dst("new6");
        let what = format!("{way} -q");
        assert_eq!(first_line(&["-vq", &src, &quiet], &what), "", "{what}");
        assert!(quiet_path.join("f.txt").is_file(), "{what}");
    }
    // rsync says the same of the same local runs (its --mkpath where
    // parents are missing, which it would not make without).
    let rsync_first = |args: &[&str]| {
        let out = std::process::Command::new("rsync")
            .args(args)
            .output()
            .expect("run rsync");
        ok(&out, &format!("rsync {args:?}"));
        created_lines(out)
    };
    let at = |name: &str| work.path().join(name).display().to_string();
    let file = format!("{local_src}f.txt");
    let src_dir = setup.src().display().to_string();
    let sub = format!("{local_src}sub");
    let cases = [
        vec!["-av", &local_src, "NEW/"],
        vec!["-a", "-i", &local_src, "NEW"],
        vec!["-av", "--mkpath", &local_src, "NEW/a/b"],
        vec!["-av", "--mkpath", &file, "NEW/x/name"],
        vec!["-av", &file, "NEW/"],
        vec!["-avn", &local_src, "NEW"],
        // (Each source's dry run would make it: said once.)
        vec!["-avn", &local_src, &file, "NEW/"],
        vec!["-avn", "--delete", &src_dir, &file, "NEW/"],
        vec!["-avn", &src_dir, &sub, "NEW/"],
    ];
    for (i, args) in cases.iter().enumerate() {
        let line = |tool: &str| {
            let target = at(&format!("{tool}{i}"));
            let mut a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            let last = a.last_mut().unwrap();
            *last = last.replace("NEW", &target);
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            let got = match tool {
                "rsync" => rsync_first(&a),
                _ => created_lines(srv.jcp(keys.path(), &a)),
            };
            (got.0.replace(&target, "NEW"), got.1)
        };
        assert_eq!(line("jcp"), line("rsync"), "{args:?}");
    }
}

/// The "created ..." lines a run printed on stdout, and whether they came
/// first (it must have succeeded).
fn created_lines(out: Output) -> (String, bool) {
    ok(&out, "a run");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| *l != "sending incremental file list")
        .collect();
    let created: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("created "))
        .collect();
    let first = lines[..created.len()] == created[..];
    (created.join("\n"), first)
}
