//! `jcp --list-only` and `jcp SRC` alone, through the real binaries: a
//! source listed as rsync lists it (`ls -l` style), locally and on a
//! server (a read-only one too), one level unless `-r`, with filters.

use std::path::Path;

use filetime::FileTime;
use jsync_tests::bins::{assert_fails as fails, assert_ok as ok, run, Jsrv};
use jsync_tests::Keys;

/// 2024-01-01 00:00:00 UTC.
const T: i64 = 1_704_067_200;

fn make_source(src: &Path) {
    for (path, data) in [("f.txt", "hello\n"), ("sub/g.o", "g"), ("sub/h.txt", "hh")] {
        let p = src.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
    }
    std::os::unix::fs::symlink("f.txt", src.join("link")).unwrap();
    std::fs::set_permissions(
        src.join("f.txt"),
        std::os::unix::fs::PermissionsExt::from_mode(0o640),
    )
    .unwrap();
    for p in ["f.txt", "sub/g.o", "sub/h.txt", "sub", "."] {
        filetime::set_file_mtime(src.join(p), FileTime::from_unix_time(T, 0)).unwrap();
    }
    filetime::set_symlink_file_times(
        src.join("link"),
        FileTime::from_unix_time(T, 0),
        FileTime::from_unix_time(T, 0),
    )
    .unwrap();
}

fn lines(out: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_source_is_listed_as_rsync_lists_it() {
    let keys = Keys::new();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    make_source(&root.join("src"));
    let srv = Jsrv::start(keys.path(), &root, &["--read-only"]);
    let local = format!("{}/", root.join("src").display());
    let top = [
        "drwxr-xr-x              0 2024/01/01 00:00:00 .",
        "-rw-r-----              6 2024/01/01 00:00:00 f.txt",
        "lrwxrwxrwx              5 2024/01/01 00:00:00 link -> f.txt",
        "drwxr-xr-x              0 2024/01/01 00:00:00 sub",
    ];
    for (how, src) in [("local", local.as_str()), ("server", "127.0.0.1:src/")] {
        // A source alone lists, as does --list-only.
        for args in [vec![src], vec!["--list-only", src]] {
            let out = srv.jcp(keys.path(), &args);
            ok(&out, &format!("{how} {args:?}"));
            assert_eq!(lines(&out), top, "{how} {args:?}");
        }
        let out = srv.jcp(keys.path(), &["-r", "--exclude", "*.o", src]);
        ok(&out, how);
        let mut all = top.to_vec();
        all.push("-rw-r--r--              2 2024/01/01 00:00:00 sub/h.txt");
        assert_eq!(lines(&out), all, "{how} -r");
    }
    // The directory itself, named without a slash.
    let out = srv.jcp(keys.path(), &["127.0.0.1:src"]);
    ok(&out, "server src");
    assert_eq!(
        lines(&out),
        ["drwxr-xr-x              0 2024/01/01 00:00:00 src"]
    );
    // Nothing is copied anywhere, and nothing there fails the run.
    let out = srv.jcp(keys.path(), &["127.0.0.1:missing"]);
    fails(&out, 1, "missing", "a server's missing source");
    let out = run("jcp", &[work.path().join("missing").to_str().unwrap()]);
    fails(&out, 1, "missing", "a missing local source");
}

/// `--list-only SRC DST`: DST is the destination, neither listed nor used
/// (as rsync's), locally and from a server; `-q` prints nothing at all,
/// of a listing or of a copy with `-i -v --stats`, while errors still
/// reach stderr.
#[test]
fn the_destination_of_list_only_is_not_listed_and_q_prints_nothing() {
    let keys = Keys::new();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    make_source(&root.join("src"));
    let srv = Jsrv::start(keys.path(), &root, &[]);
    let local = format!("{}/", root.join("src").display());
    let dst = work.path().join("dst");
    let dst = dst.to_str().unwrap();
    for (how, src) in [("local", local.as_str()), ("server", "127.0.0.1:src/")] {
        let out = srv.jcp(keys.path(), &["--list-only", src, dst]);
        ok(&out, how);
        assert_eq!(lines(&out).len(), 4, "{how}: {:?}", lines(&out));
        assert!(lines(&out)[0].ends_with(" ."), "{how}: {:?}", lines(&out));
        assert!(!Path::new(dst).exists(), "{how}: the destination was made");
        let out = srv.jcp(keys.path(), &["-q", "-r", "--list-only", src]);
        ok(&out, how);
        assert!(out.stdout.is_empty(), "{how}: {:?}", lines(&out));
    }
    // A copy with -q: done, and silent but for its errors.
    let loud = ["-i", "-vv", "--stats", "--progress"];
    let out = srv.jcp(keys.path(), &[&["-q"][..], &loud, &[&local, dst]].concat());
    ok(&out, "-q copy");
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
    assert_eq!(
        std::fs::read(Path::new(dst).join("f.txt")).unwrap(),
        b"hello\n"
    );
    let out = srv.jcp(
        keys.path(),
        &[&loud[..], &["-n", &local, "127.0.0.1:new"]].concat(),
    );
    ok(&out, "loud dry run");
    assert!(lines(&out).iter().any(|l| l.contains("f.txt")), "{out:?}");
    // rsync's --no-OPTION takes back what came before it (through the
    // binary's own parse).
    let quiet = work.path().join("quiet");
    let out = srv.jcp(
        keys.path(),
        &["-i", "--no-i", "--no-motd", &local, quiet.to_str().unwrap()],
    );
    ok(&out, "-i --no-i");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert_eq!(std::fs::read(quiet.join("f.txt")).unwrap(), b"hello\n");
    let missing = work.path().join("missing");
    let args = [&["-q"][..], &loud, &[missing.to_str().unwrap(), dst]].concat();
    let out = srv.jcp(keys.path(), &args);
    fails(&out, 1, "missing", "-q with a missing source");
    assert!(out.stdout.is_empty(), "{out:?}");
}
