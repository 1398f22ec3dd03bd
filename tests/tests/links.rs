//! `-L` (`--copy-links`) through the real binaries: what symlinks lead to is
//! sent instead of the links. From a local source (jcp copying locally or
//! pushing) they are followed wherever they lead, as rsync does; from a
//! server's only while they stay beneath its root, so a pull cannot read
//! outside it. Dangling links and loops fail alone, named. And
//! `--safe-links`: the receiver leaves out links that lead outside the
//! transfer. And `-k` (`--copy-dirlinks`): only links to directories are
//! followed.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Output;

use jsync_tests::bins::{assert_ok as ok, run, Jsrv};
use jsync_tests::Keys;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Outside any source: a file and a directory that links lead to.
fn make_outside(outside: &Path) {
    std::fs::create_dir_all(outside.join("d")).unwrap();
    std::fs::write(outside.join("file"), "outside\n").unwrap();
    std::fs::write(outside.join("d/x"), "outside dir\n").unwrap();
    // A link in a directory that links lead to (-k keeps it a link).
    symlink("x", outside.join("d/sl")).unwrap();
}

/// A source whose links lead inside it, outside it (absolute and relative),
/// nowhere, and to a directory they are in.
fn make_source(src: &Path, outside: &Path) {
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::create_dir_all(src.join("inner_dir")).unwrap();
    std::fs::write(src.join("real.txt"), "real\n").unwrap();
    std::fs::write(src.join("inner_dir/f"), "inner\n").unwrap();
    symlink("f", src.join("inner_dir/sl")).unwrap();
    symlink("real.txt", src.join("link_in")).unwrap();
    symlink("inner_dir", src.join("dirlink_in")).unwrap();
    symlink(outside.join("file"), src.join("abs_out")).unwrap();
    let rel_out = Path::new("../../outside/d");
    assert!(src.join(rel_out).exists(), "the fixture's relative link");
    symlink(rel_out, src.join("dirlink_out")).unwrap();
    symlink("nowhere", src.join("dangling")).unwrap();
    symlink("..", src.join("sub/loop")).unwrap();
    // For -L -X: the attributes of what a link leads to.
    for p in [src.join("real.txt"), src.join("inner_dir")] {
        rustix::fs::setxattr(&p, "user.where", b"inside", rustix::fs::XattrFlags::empty())
            .unwrap_or_else(|e| panic!("setxattr on {}: {e}", p.display()));
    }
}

/// A test's files: `work/outside` ([`make_outside`]); the local source
/// `work/tree/src` (so that `../../outside` from it leads to
/// `work/outside`) and the server's `root/src`, each made by
/// [`make_source`] when asked for; and a jsrv serving `work/root`.
struct Tree {
    keys: Keys,
    work: tempfile::TempDir,
    src: std::path::PathBuf,
    root: std::path::PathBuf,
    srv: Jsrv,
}

fn tree(local: bool, served: bool) -> Tree {
    let keys = Keys::new();
    let work = tempfile::tempdir().unwrap();
    let outside = work.path().join("outside");
    make_outside(&outside);
    let src = work.path().join("tree/src");
    if local {
        make_source(&src, &outside);
    }
    let root = work.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    if served {
        make_source(&root.join("src"), &outside);
    }
    let srv = Jsrv::start(keys.path(), &root, &[]);
    Tree {
        keys,
        work,
        src,
        root,
        srv,
    }
}

fn xattr(p: &Path) -> Vec<u8> {
    let mut buf = vec![0; 64];
    let n = rustix::fs::lgetxattr(p, "user.where", &mut buf)
        .unwrap_or_else(|e| panic!("user.where of {}: {e}", p.display()));
    buf.truncate(n);
    buf
}

fn read(p: &Path) -> String {
    let m = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert!(m.is_file(), "{} is a regular file", p.display());
    std::fs::read_to_string(p).unwrap()
}

/// What `-L` sends from inside the source, whoever sends it.
fn check_inside(dst: &Path, what: &str) {
    assert_eq!(read(&dst.join("link_in")), "real\n", "{what}");
    assert_eq!(read(&dst.join("dirlink_in/f")), "inner\n", "{what}");
    assert!(!dst.join("dangling").exists(), "{what}");
    assert!(dst.join("sub").is_dir(), "{what}");
    assert!(
        std::fs::symlink_metadata(dst.join("sub/loop")).is_err(),
        "{what}: the loop is not sent"
    );
}

fn check_errors(err: &str, what: &str) {
    assert!(
        err.contains("dangling: symlink has no referent"),
        "{what}: {err}"
    );
    assert!(
        err.contains("sub/loop: symlink leads to a directory it is in (a loop)"),
        "{what}: {err}"
    );
}

#[test]
fn copy_links_from_a_local_source_follows_links_anywhere() {
    let Tree {
        keys,
        work,
        src,
        root,
        srv,
    } = tree(true, false);
    let src_arg = format!("{}/", src.display());

    let local = work.path().join("local");
    let out = run("jcp", &["-q", "-LX", &src_arg, local.to_str().unwrap()]);
    let pushed = srv.jcp(keys.path(), &["-q", "-LX", &src_arg, "127.0.0.1:dst"]);
    for (out, dst, what) in [(out, local, "local"), (pushed, root.join("dst"), "push")] {
        assert_eq!(out.status.code(), Some(3), "{what}: {}", stderr(&out));
        check_errors(&stderr(&out), what);
        check_inside(&dst, what);
        assert_eq!(xattr(&dst.join("link_in")), b"inside", "{what}");
        assert_eq!(xattr(&dst.join("dirlink_in")), b"inside", "{what}");
        assert_eq!(read(&dst.join("abs_out")), "outside\n", "{what}");
        assert_eq!(read(&dst.join("dirlink_out/x")), "outside dir\n", "{what}");
    }

    // A single file named through a link, and the same without -L: a link.
    let single = work.path().join("single");
    let link = src.join("abs_out");
    let out = run(
        "jcp",
        &["-q", "-L", link.to_str().unwrap(), single.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(read(&single), "outside\n");
    let plain = work.path().join("plain");
    let out = run("jcp", &["-q", &src_arg, plain.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    for name in ["link_in", "abs_out", "dirlink_in", "dangling", "sub/loop"] {
        let m = std::fs::symlink_metadata(plain.join(name)).unwrap();
        assert!(
            m.file_type().is_symlink(),
            "without -L, {name} stays a link"
        );
    }
}

#[test]
fn copy_links_from_a_server_stays_beneath_its_root() {
    let Tree {
        keys,
        work,
        root,
        srv,
        ..
    } = tree(false, true);
    let src = root.join("src");
    // Absolute, though it leads inside the root: the server's paths are
    // resolved beneath its root, where an absolute link has no place.
    symlink(src.join("real.txt"), src.join("abs_in")).unwrap();

    let pulled = work.path().join("pulled");
    let out = srv.jcp(
        keys.path(),
        &["-q", "-LX", "127.0.0.1:src/", pulled.to_str().unwrap()],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    check_errors(&err, "pull");
    check_inside(&pulled, "pull");
    assert_eq!(xattr(&pulled.join("link_in")), b"inside");
    assert_eq!(xattr(&pulled.join("dirlink_in")), b"inside");
    for name in ["abs_out", "dirlink_out", "abs_in"] {
        assert!(
            err.contains(&format!("{name}: symlink leads outside the root")),
            "{name}: {err}"
        );
        assert!(
            std::fs::symlink_metadata(pulled.join(name)).is_err(),
            "{name}"
        );
    }

    // A single file: through a link beneath the root, and one outside it.
    let y = work.path().join("y");
    let out = srv.jcp(
        keys.path(),
        &["-q", "-L", "127.0.0.1:src/link_in", y.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(read(&y), "real\n");
    let z = work.path().join("z");
    let out = srv.jcp(
        keys.path(),
        &["-q", "-L", "127.0.0.1:src/abs_out", z.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("escapes the root"),
        "{}",
        stderr(&out)
    );
    assert!(std::fs::symlink_metadata(&z).is_err(), "nothing written");
}

/// The target of the symlink `p` (which must be one).
fn link_target(p: &Path) -> String {
    let m = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert!(m.file_type().is_symlink(), "{} is a symlink", p.display());
    std::fs::read_link(p).unwrap().display().to_string()
}

/// `-k` (`--copy-dirlinks`): a symlink to a directory is sent as the
/// directory, other symlinks (to files, dangling) as links. From a local
/// source wherever the link leads, from a server's only beneath its root
/// (a link leading out stays a link). A link to a directory it is in is a
/// loop, named (exit 3). A source named through a link to a directory is
/// the directory.
#[test]
fn copy_dirlinks_sends_links_to_directories_as_directories() {
    let Tree {
        keys,
        work,
        src,
        root,
        srv,
    } = tree(true, true);
    let src_arg = format!("{}/", src.display());
    let (local, pulled) = (work.path().join("local"), work.path().join("pulled"));
    let runs = [
        (
            run("jcp", &["-q", "-k", &src_arg, local.to_str().unwrap()]),
            local,
            "local",
        ),
        (
            srv.jcp(keys.path(), &["-q", "-k", &src_arg, "127.0.0.1:dst"]),
            root.join("dst"),
            "push",
        ),
        (
            srv.jcp(
                keys.path(),
                &["-q", "-k", "127.0.0.1:src/", pulled.to_str().unwrap()],
            ),
            pulled,
            "pull",
        ),
    ];
    for (out, dst, what) in runs {
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(3), "{what}: {err}");
        assert!(
            err.contains("sub/loop: symlink leads to a directory it is in (a loop)"),
            "{what}: {err}"
        );
        assert_eq!(read(&dst.join("dirlink_in/f")), "inner\n", "{what}");
        assert_eq!(link_target(&dst.join("dirlink_in/sl")), "f", "{what}");
        assert_eq!(link_target(&dst.join("link_in")), "real.txt", "{what}");
        assert_eq!(link_target(&dst.join("dangling")), "nowhere", "{what}");
        assert!(link_target(&dst.join("abs_out")).ends_with("outside/file"));
        if what == "pull" {
            assert_eq!(
                link_target(&dst.join("dirlink_out")),
                "../../outside/d",
                "{what}: leads out of the root"
            );
        } else {
            assert_eq!(read(&dst.join("dirlink_out/x")), "outside dir\n", "{what}");
            assert_eq!(link_target(&dst.join("dirlink_out/sl")), "x", "{what}");
        }
    }
    // A source named through a link to a directory, without a slash: the
    // directory under the link's name, as in rsync.
    let link = src.join("dirlink_in");
    for follow in ["-k", "-L"] {
        let named = work.path().join(format!("named{follow}"));
        let to = named.to_str().unwrap();
        ok(
            &run("jcp", &["-q", follow, link.to_str().unwrap(), to]),
            follow,
        );
        assert_eq!(read(&named.join("dirlink_in/f")), "inner\n", "{follow}");
        assert!(!named.join("inner_dir").exists(), "{follow}");
    }
    let named = work.path().join("named_pull");
    let from = "127.0.0.1:src/dirlink_in";
    ok(
        &srv.jcp(keys.path(), &["-q", "-k", from, named.to_str().unwrap()]),
        "pull",
    );
    assert_eq!(read(&named.join("dirlink_in/f")), "inner\n");
}

/// `--safe-links`: links that are absolute or climb above the transfer's top
/// are left out, each named in a warning (exit 0); the others are kept as
/// links. Locally, pushed and pulled (the receiver decides).
#[test]
fn safe_links_leaves_out_links_that_lead_outside_the_transfer() {
    let keys = Keys::new();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    let make = |src: &Path| {
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("real.txt"), "real\n").unwrap();
        symlink("../real.txt", src.join("sub/up")).unwrap();
        symlink("../../x", src.join("sub/out")).unwrap();
        symlink("/etc/passwd", src.join("abs")).unwrap();
    };
    let src = work.path().join("src");
    make(&src);
    make(&root.join("src"));
    let srv = Jsrv::start(keys.path(), &root, &[]);
    let src_arg = format!("{}/", src.display());
    let local = work.path().join("local");
    let pulled = work.path().join("pulled");
    let runs = [
        (
            run(
                "jcp",
                &["-q", "--safe-links", &src_arg, local.to_str().unwrap()],
            ),
            local,
            "local",
        ),
        (
            srv.jcp(
                keys.path(),
                &["-q", "--safe-links", &src_arg, "127.0.0.1:dst"],
            ),
            root.join("dst"),
            "push",
        ),
        (
            srv.jcp(
                keys.path(),
                &[
                    "-q",
                    "--safe-links",
                    "127.0.0.1:src/",
                    pulled.to_str().unwrap(),
                ],
            ),
            pulled,
            "pull",
        ),
    ];
    for (out, dst, what) in runs {
        let err = stderr(&out);
        assert!(out.status.success(), "{what}: {err}");
        for (name, target) in [("sub/out", "../../x"), ("abs", "/etc/passwd")] {
            assert!(
                err.contains(&format!("{name}: ignoring unsafe symlink to {target}")),
                "{what}: {err}"
            );
            assert!(
                std::fs::symlink_metadata(dst.join(name)).is_err(),
                "{what}: {name}"
            );
        }
        let up = std::fs::read_link(dst.join("sub/up")).unwrap();
        assert_eq!(up, Path::new("../real.txt"), "{what}");
    }
    // Without it, every link is copied as it is.
    let plain = work.path().join("plain");
    let out = run("jcp", &["-q", &src_arg, plain.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(std::fs::read_link(plain.join("abs")).is_ok());
    assert!(std::fs::read_link(plain.join("sub/out")).is_ok());
}

/// `-K` (`--keep-dirlinks`), each way: a symlink in the destination that
/// leads to a directory where the source has a directory stays a link, and
/// what the source's directory holds goes into the one it leads to (its
/// extraneous entries deleted with `--delete`, its mtime the source's). A
/// link leading out of the destination is left as it is, named in an error
/// (exit 3), with nothing written through it. Without `-K` both links are
/// replaced by directories, as rsync's.
#[test]
fn keep_dirlinks_keeps_links_to_directories_in_the_destination() {
    use jsync_tests::bins::{assert_fails as fails, ways, Sources};
    let setup = Sources::new(|src| {
        std::fs::create_dir_all(src.join("d/sub")).unwrap();
        std::fs::create_dir_all(src.join("out")).unwrap();
        std::fs::write(src.join("d/f"), "new\n").unwrap();
        std::fs::write(src.join("d/sub/g"), "g\n").unwrap();
        std::fs::write(src.join("out/x"), "x\n").unwrap();
        std::fs::write(src.join("top.txt"), "top\n").unwrap();
        let t = filetime::FileTime::from_unix_time(1_500_000_000, 0);
        filetime::set_file_mtime(src.join("d"), t).unwrap();
    });
    let outside = setup.work.path().join("outside");
    let prepare = |dst: &Path| {
        std::fs::create_dir_all(dst.join("store")).unwrap();
        std::fs::write(dst.join("store/f"), "older\n").unwrap();
        std::fs::write(dst.join("store/stale"), "stale\n").unwrap();
        symlink("store", dst.join("d")).unwrap();
        let _ = std::fs::remove_dir_all(&outside);
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("keep"), "keep\n").unwrap();
        symlink(&outside, dst.join("out")).unwrap();
    };
    let is_link = |p: &Path| {
        std::fs::symlink_metadata(p)
            .unwrap()
            .file_type()
            .is_symlink()
    };
    for keep in [true, false] {
        for (way, dst, from, to) in ways(setup.work.path(), &setup.root, &setup.src_arg()) {
            let _ = std::fs::remove_dir_all(&dst);
            prepare(&dst);
            let mut args = vec!["-q", "--delete", "-f", "P /store"];
            if keep {
                args.push("-K");
            }
            args.extend([from.as_str(), to.as_str()]);
            let what = format!("{way} {}", args.join(" "));
            let out = setup.srv.jcp(setup.keys.path(), &args);
            assert_eq!(read(&dst.join("top.txt")), "top\n", "{what}");
            assert_eq!(read(&dst.join("d/f")), "new\n", "{what}");
            assert_eq!(read(&dst.join("d/sub/g")), "g\n", "{what}");
            assert!(!outside.join("x").exists(), "{what}: written outside");
            assert_eq!(read(&outside.join("keep")), "keep\n", "{what}");
            if keep {
                fails(&out, 3, "out: -K follows only symlinks", &what);
                assert!(
                    is_link(&dst.join("d")) && is_link(&dst.join("out")),
                    "{what}"
                );
                assert!(!dst.join("store/stale").exists(), "{what}: --delete");
                let m = std::fs::metadata(dst.join("store")).unwrap();
                assert_eq!(
                    m.modified().unwrap(),
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_500_000_000),
                    "{what}"
                );
            } else {
                ok(&out, &what);
                assert!(
                    !is_link(&dst.join("d")) && !is_link(&dst.join("out")),
                    "{what}"
                );
                assert_eq!(read(&dst.join("out/x")), "x\n", "{what}");
                assert_eq!(read(&dst.join("store/f")), "older\n", "{what}");
            }
        }
    }
    // With --ignore-existing a kept link is entered as the directory it
    // stands for: what is there stays, what is new goes in.
    for (way, dst, from, to) in ways(setup.work.path(), &setup.root, &setup.src_arg()) {
        let _ = std::fs::remove_dir_all(&dst);
        prepare(&dst);
        let args = ["-q", "-K", "--ignore-existing", from.as_str(), to.as_str()];
        let what = format!("{way} {}", args.join(" "));
        let out = setup.srv.jcp(setup.keys.path(), &args);
        fails(&out, 3, "out: -K follows only symlinks", &what);
        assert!(is_link(&dst.join("d")), "{what}");
        assert_eq!(read(&dst.join("store/f")), "older\n", "{what}");
        assert_eq!(read(&dst.join("store/sub/g")), "g\n", "{what}");
    }
    // The transfer's top directory (the source named without a trailing
    // slash) is kept as a link too.
    for (way, dst, from, to) in ways(setup.work.path(), &setup.root, &setup.src_arg()) {
        let _ = std::fs::remove_dir_all(&dst);
        std::fs::create_dir_all(dst.join("top")).unwrap();
        symlink("top", dst.join("src")).unwrap();
        let from = from.trim_end_matches('/');
        let args = ["-q", "-K", from, to.as_str()];
        let what = format!("{way} {}", args.join(" "));
        let out = setup.srv.jcp(setup.keys.path(), &args);
        ok(&out, &what);
        assert!(is_link(&dst.join("src")), "{what}");
        assert_eq!(read(&dst.join("top/top.txt")), "top\n", "{what}");
        assert_eq!(read(&dst.join("top/d/f")), "new\n", "{what}");
        // One leading out of the destination fails the run, writing nothing.
        std::fs::remove_file(dst.join("src")).unwrap();
        symlink(&outside, dst.join("src")).unwrap();
        let _ = std::fs::remove_dir_all(&outside);
        std::fs::create_dir_all(&outside).unwrap();
        let out = setup.srv.jcp(setup.keys.path(), &args);
        fails(&out, 1, "-K follows only symlinks", &what);
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "{what}");
        assert!(is_link(&dst.join("src")), "{what}");
    }
}

/// `--copy-unsafe-links` (rsync's), each way: a link that is absolute or
/// climbs above the transfer's top is sent as what it leads to (a file, a
/// directory with what it holds, whose own safe link stays a link); safe
/// links stay links, dangling or not. From a server only beneath its root:
/// links leading out fail, named (exit 3), and the rest is sent. A source
/// given by name that is an unsafe link is sent as what it leads to; a
/// safe one stays a link.
#[test]
fn copy_unsafe_links_follows_only_links_leading_out_of_the_transfer() {
    let Tree {
        keys,
        work,
        src,
        root,
        srv,
    } = tree(true, true);
    // Unsafe when the transfer's top is src itself (src/), safe when it is
    // src's parent (src, whose name then leads each path): by the path
    // in the transfer, as rsync judges.
    for s in [&src, &root.join("src")] {
        symlink("../../src/real.txt", s.join("sub/up2")).unwrap();
    }
    let src_arg = format!("{}/", src.display());
    let (local, pulled) = (work.path().join("local"), work.path().join("pulled"));
    let is_link = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_symlink());
    let runs = [
        (
            run(
                "jcp",
                &["--copy-unsafe-links", &src_arg, local.to_str().unwrap()],
            ),
            local,
            "local",
        ),
        (
            srv.jcp(
                keys.path(),
                &["--copy-unsafe-links", &src_arg, "127.0.0.1:dst"],
            ),
            root.join("dst"),
            "push",
        ),
        (
            srv.jcp(
                keys.path(),
                &[
                    "--copy-unsafe-links",
                    "127.0.0.1:src/",
                    pulled.to_str().unwrap(),
                ],
            ),
            pulled,
            "pull",
        ),
    ];
    for (out, dst, what) in runs {
        let err = stderr(&out);
        for name in [
            "link_in",
            "dirlink_in",
            "dangling",
            "sub/loop",
            "inner_dir/sl",
        ] {
            assert!(is_link(&dst.join(name)), "{what}: {name} stays a link");
        }
        assert_eq!(read(&dst.join("real.txt")), "real\n", "{what}");
        // (From the server too: it leads to a file beneath its root.)
        assert_eq!(read(&dst.join("sub/up2")), "real\n", "{what}");
        if what == "pull" {
            // The server's links lead out of its root: not followed.
            assert_eq!(out.status.code(), Some(3), "{what}: {err}");
            for name in ["abs_out", "dirlink_out"] {
                assert!(
                    err.contains(&format!("{name}: symlink leads outside the root")),
                    "{what}: {err}"
                );
                assert!(!dst.join(name).exists(), "{what}: {name}");
            }
            continue;
        }
        assert!(out.status.success(), "{what}: {err}");
        assert_eq!(read(&dst.join("abs_out")), "outside\n", "{what}");
        assert_eq!(read(&dst.join("dirlink_out/x")), "outside dir\n", "{what}");
        assert!(
            is_link(&dst.join("dirlink_out/sl")),
            "{what}: a safe link in it"
        );
    }
    // Sources given by name: an absolute link is followed, a safe one not.
    let (single, safe) = (work.path().join("single"), work.path().join("safe"));
    for (name, dst) in [("abs_out", &single), ("link_in", &safe)] {
        let out = run(
            "jcp",
            &[
                "--copy-unsafe-links",
                src.join(name).to_str().unwrap(),
                dst.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "{name}: {}", stderr(&out));
    }
    assert_eq!(read(&single), "outside\n");
    assert!(is_link(&safe), "a safe link named as the source");
    let named = work.path().join("named");
    let out = run(
        "jcp",
        &[
            "--copy-unsafe-links",
            src.to_str().unwrap(),
            named.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "src: {}", stderr(&out));
    assert!(
        is_link(&named.join("src/sub/up2")),
        "safe beneath src's name"
    );
    assert_eq!(read(&named.join("src/abs_out")), "outside\n");
    // Paths --files-from lists, likewise.
    let list = work.path().join("list");
    std::fs::write(&list, "abs_out\nlink_in\n").unwrap();
    let listed = work.path().join("listed");
    let out = run(
        "jcp",
        &[
            "--copy-unsafe-links",
            "--files-from",
            list.to_str().unwrap(),
            &src_arg,
            listed.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "--files-from: {}", stderr(&out));
    assert_eq!(read(&listed.join("abs_out")), "outside\n");
    assert!(is_link(&listed.join("link_in")), "--files-from: link_in");
}
