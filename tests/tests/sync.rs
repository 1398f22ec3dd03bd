//! The main job through the real binaries: jsrv started on port 0 with fresh keys,
//! jcp pushing and pulling trees over TLS and QUIC, deltas, no-op re-runs, local
//! copies, path escapes, and a server killed mid-transfer.

use std::io::{Seek, SeekFrom, Write};

use std::process::Output;

use jsync_tests::bins::{run, stat, Jsrv};
use jsync_tests::tree::{assert_same_tree, make_tree, snapshot};
use jsync_tests::{pseudo_random, Keys};

const MB: usize = 1 << 20;

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({:?}):\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[derive(Clone, Copy, PartialEq)]
enum Wire {
    Tls,
    Quic,
    /// `--insecure-plaintext` on both sides: the one transport that does not
    /// authenticate every byte, so files sent whole carry a BLAKE3 digest.
    Plaintext,
}

fn transport_args(wire: Wire) -> Vec<&'static str> {
    match wire {
        Wire::Tls => vec![],
        Wire::Quic => vec!["--quic"],
        Wire::Plaintext => vec!["--insecure-plaintext"],
    }
}

fn push_pull_delta_noop(wire: Wire) {
    let keys = Keys::new();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let root = work.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    make_tree(&src, 50 * MB);
    let srv_args: &[&str] = if wire == Wire::Plaintext {
        &["--insecure-plaintext"]
    } else {
        &[]
    };
    let srv = Jsrv::start(keys.path(), &root, srv_args);
    let t = transport_args(wire);
    let with =
        |extra: &[&str]| -> Vec<String> { t.iter().chain(extra).map(|s| s.to_string()).collect() };
    let jcp = |args: Vec<String>| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        srv.jcp(keys.path(), &refs)
    };

    // Push a tree, with its contents landing in root/dst.
    let src_arg = format!("{}/", src.display());
    let out = jcp(with(&["--stats", &src_arg, "127.0.0.1:dst"]));
    ok(&out, "push");
    assert_same_tree(&src, &root.join("dst"));

    // Pull it back elsewhere.
    let pulled = work.path().join("pulled");
    let out = jcp(with(&[
        "--stats",
        "127.0.0.1:dst/",
        pulled.to_str().unwrap(),
    ]));
    ok(&out, "pull");
    assert_same_tree(&src, &pulled);

    // Edit the large file: insert near the start, overwrite the middle, append.
    let big = src.join("big.bin");
    let mut data = std::fs::read(&big).unwrap();
    data.splice(1000..1000, b"INSERTED BYTES".iter().copied());
    let mid = data.len() / 2;
    data[mid..mid + 4096].copy_from_slice(&pseudo_random(4096, 99));
    data.extend_from_slice(&pseudo_random(10_000, 5));
    std::fs::write(&big, &data).unwrap();
    let out = jcp(with(&["--stats", &src_arg, "127.0.0.1:dst"]));
    ok(&out, "delta push");
    assert_same_tree(&src, &root.join("dst"));
    let wire = stat(&out.stdout, "Bytes on the wire:");
    assert!(
        wire < (data.len() / 20) as u64,
        "delta moved {wire} bytes on the wire for a {} byte file",
        data.len()
    );
    assert!(stat(&out.stdout, "Reused data:") > (data.len() * 9 / 10) as u64);
    assert_eq!(stat(&out.stdout, "Files transferred:"), 1);
    assert_eq!(stat(&out.stdout, "Transferred size:"), data.len() as u64);

    // Nothing changed: nothing moves.
    let out = jcp(with(&["--stats", &src_arg, "127.0.0.1:dst"]));
    ok(&out, "no-op push");
    assert_eq!(stat(&out.stdout, "Files transferred:"), 0);
    assert_eq!(stat(&out.stdout, "Literal data:"), 0);
    assert_eq!(stat(&out.stdout, "Transferred size:"), 0);
    assert!(stat(&out.stdout, "Bytes on the wire:") < 64 * 1024);
}

#[test]
fn push_pull_delta_and_noop_over_tls() {
    push_pull_delta_noop(Wire::Tls);
}

#[test]
fn push_pull_delta_and_noop_over_quic() {
    push_pull_delta_noop(Wire::Quic);
}

#[test]
fn push_pull_delta_and_noop_over_plaintext() {
    push_pull_delta_noop(Wire::Plaintext);
}

#[test]
fn a_source_ending_in_a_dot_copies_the_contents_as_rsync_does() {
    let work = tempfile::tempdir().unwrap();
    let a = work.path().join("a");
    make_tree(&a, MB);
    for (i, (cwd, src)) in [
        (a.clone(), "."),
        (work.path().to_path_buf(), "a/."),
        (a.join("nested"), ".."),
    ]
    .into_iter()
    .enumerate()
    {
        let dst = work.path().join(format!("dst{i}"));
        let out = std::process::Command::new(jsync_tests::bins::bin("jcp"))
            .current_dir(cwd)
            .args([src, dst.to_str().unwrap()])
            .output()
            .unwrap();
        ok(&out, &format!("jcp {src}"));
        assert_same_tree(&a, &dst);
    }
}

#[test]
fn local_copy_needs_no_daemon() {
    let work = tempfile::tempdir().unwrap();
    let a = work.path().join("a");
    make_tree(&a, 3 * MB);
    let b = work.path().join("b");
    let out = run(
        "jcp",
        &["--stats", &format!("{}/", a.display()), b.to_str().unwrap()],
    );
    ok(&out, "local copy");
    assert_same_tree(&a, &b);
    // Without a trailing slash the directory itself goes inside an existing target.
    let out = run("jcp", &[a.to_str().unwrap(), b.to_str().unwrap()]);
    ok(&out, "local copy into");
    assert_same_tree(&a, &b.join("a"));
    // A file copied to an existing directory lands inside it.
    let out = run(
        "jcp",
        &[a.join("README.txt").to_str().unwrap(), b.to_str().unwrap()],
    );
    ok(&out, "file into dir");
    assert_eq!(std::fs::read(b.join("README.txt")).unwrap(), b"hello\n");
}

/// A directory is never copied onto a file (rsync refuses too: the file
/// would go): locally, pushed and pulled, with or without a trailing slash
/// on the source, and as a dry run; the file stays as it was.
#[test]
fn a_directory_is_not_copied_onto_a_file() {
    let keys = Keys::new();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    let src = work.path().join("src");
    make_tree(&src, MB);
    make_tree(&root.join("tree"), MB);
    std::fs::write(root.join("file"), b"kept\n").unwrap();
    let local = work.path().join("file");
    std::fs::write(&local, b"kept\n").unwrap();
    let srv = Jsrv::start(keys.path(), &root, &[]);
    let src_s = src.to_str().unwrap();
    let contents = format!("{src_s}/");
    let local_s = local.to_str().unwrap();
    let cases: [(&str, Vec<&str>); 5] = [
        ("local", vec![&contents, local_s]),
        ("local, the directory itself", vec![src_s, local_s]),
        ("local, dry run", vec!["-n", &contents, local_s]),
        ("push", vec![&contents, "127.0.0.1:file"]),
        ("pull", vec!["127.0.0.1:tree/", local_s]),
    ];
    for (what, args) in cases {
        let out = srv.jcp(keys.path(), &args);
        assert_eq!(out.status.code(), Some(1), "{what}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("file: not a directory, so a directory cannot be copied to it")
                && !err.contains("peer"),
            "{what}: {err}"
        );
        assert_eq!(std::fs::read(&local).unwrap(), b"kept\n", "{what}");
        assert_eq!(std::fs::read(root.join("file")).unwrap(), b"kept\n");
    }
}

/// A local copy into a directory inside its own source copies the source
/// as it was, not the copy it is making (rsync's result on a first run;
/// cp refuses): the destination is left out of what is sent, and a second
/// run adds nothing beneath it.
#[test]
fn a_copy_inside_its_own_source_does_not_copy_itself() {
    // (The source's own mtime moves as the copy is made inside it.)
    let same_beneath = |a: &std::path::Path, b: &std::path::Path| {
        let (mut a, mut b) = (snapshot(a), snapshot(b));
        a.remove(&b""[..]);
        b.remove(&b""[..]);
        assert_eq!(a, b);
    };
    let work = tempfile::tempdir().unwrap();
    let s = work.path().join("s");
    make_tree(&s, MB);
    let orig = work.path().join("orig");
    let slash = |p: &std::path::Path| format!("{}/", p.display());
    ok(&run("jcp", &[&slash(&s), orig.to_str().unwrap()]), "copy");
    let inner = s.join("inner");
    let inner_s = inner.to_str().unwrap();
    ok(
        &run("jcp", &[s.to_str().unwrap(), inner_s]),
        "s into s/inner",
    );
    same_beneath(&orig, &inner.join("s"));
    let deeper = slash(&inner.join("deeper"));
    ok(
        &run("jcp", &[&slash(&s), &deeper]),
        "s/ into s/inner/deeper/",
    );
    // (The existing inner/s is copied as the tree it is; deeper is not.)
    same_beneath(&orig, &inner.join("deeper/inner/s"));
    assert!(!inner.join("deeper/inner/deeper").exists());
    // Once there, the landing place itself is what is left out.
    ok(&run("jcp", &[s.to_str().unwrap(), inner_s]), "again");
    let mut again = snapshot(&inner.join("s"));
    again.retain(|k, _| !k.starts_with(b"inner"));
    let mut want = snapshot(&orig);
    want.remove(&b""[..]);
    again.remove(&b""[..]);
    assert_eq!(want, again);
    assert_eq!(
        std::fs::read_dir(inner.join("s/inner")).unwrap().count(),
        1,
        "only deeper: no s beneath"
    );
}

/// `--fsync` flushes every received file to disk before it takes its name, and
/// without the flag nothing is flushed. An fsync cannot be seen from outside
/// on any file system, so jcp runs under strace (`.ci/run` installs it).
#[test]
fn fsync_flushes_each_file_before_it_replaces_the_target() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    let names = ["a", "b", "sub/c"];
    for (i, name) in names.iter().enumerate() {
        std::fs::write(src.join(name), pseudo_random(1000 * (i + 1), i as u64)).unwrap();
    }
    for (flag, dst) in [(Some("--fsync"), "synced"), (None, "plain")] {
        let trace = tmp.path().join(format!("{dst}.strace"));
        let mut cmd = std::process::Command::new("strace");
        cmd.args(["-f", "-qq", "-o"])
            .arg(&trace)
            .args([
                "-e",
                "trace=fsync,fdatasync,rename,renameat,renameat2,link,linkat",
            ])
            .arg(jsync_tests::bins::bin("jcp"))
            .args(flag)
            .arg(format!("{}/", src.display()))
            .arg(tmp.path().join(dst));
        let out = cmd
            .output()
            .expect("strace must be installed for this test (.ci/run installs it)");
        ok(&out, &format!("jcp {flag:?} under strace"));
        assert_same_tree(&src, &tmp.path().join(dst));
        // In the order strace saw them: completed flushes, and the three
        // targets taking their names (a temp renamed, or an unnamed file linked).
        let log = std::fs::read_to_string(&trace).unwrap();
        let mut flushed = 0;
        let mut placed = 0;
        for line in log.lines() {
            let done = !line.contains("<unfinished");
            if done && (line.contains("fsync(") || line.contains("fsync resumed>")) {
                flushed += 1;
            }
            let target = names.iter().any(|n| {
                let base = n.rsplit('/').next().unwrap();
                line.contains(&format!(", \"{base}\")")) || line.contains(&format!(", \"{base}\","))
            });
            // A temp renamed over its target, or an unnamed file linked in.
            let renamed = line.contains("rename") && line.contains(".jsync-tmp.");
            let linked = line.contains("linkat(") && line.ends_with("= 0");
            if (renamed || linked) && target {
                placed += 1;
                if flag.is_some() {
                    assert!(
                        flushed >= placed,
                        "file {placed} took its name before it was flushed:\n{log}"
                    );
                }
            }
        }
        assert_eq!(placed, names.len(), "renames onto the targets:\n{log}");
        if flag.is_some() {
            assert!(flushed >= names.len(), "{flushed} flushes:\n{log}");
        } else {
            assert_eq!(flushed, 0, "flushes without --fsync:\n{log}");
        }
    }
}

#[test]
fn paths_outside_the_root_are_refused() {
    let keys = Keys::new();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    let outside = work.path().join("outside");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("escape-link")).unwrap();
    std::fs::write(outside.join("secret"), b"secret").unwrap();
    // (`a/..` is the root: `a/../../x` climbs out of it.)
    std::fs::create_dir(root.join("a")).unwrap();
    let src = work.path().join("f.txt");
    std::fs::write(&src, b"payload").unwrap();
    let srv = Jsrv::start(keys.path(), &root, &[]);
    for dst in [
        "127.0.0.1:../x",
        "127.0.0.1:/etc/x",
        "127.0.0.1:a/../../x",
        "127.0.0.1:escape-link/x",
    ] {
        let out = srv.jcp(keys.path(), &[src.to_str().unwrap(), dst]);
        assert!(!out.status.success(), "push to {dst} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("escapes") || err.contains("outside"),
            "push to {dst}: {err}"
        );
        if dst.contains(":/") {
            assert!(err.contains("relative to the root it serves"), "{err}");
        }
    }
    // Pulling through the link or with .. reads nothing outside.
    for from in [
        "127.0.0.1:escape-link/secret",
        "127.0.0.1:../outside/secret",
    ] {
        let dst = work.path().join("got");
        let out = srv.jcp(keys.path(), &[from, dst.to_str().unwrap()]);
        assert!(!out.status.success(), "pull from {from} succeeded");
        assert!(!dst.exists(), "pull from {from} wrote {}", dst.display());
    }
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        1,
        "something was written outside the root"
    );
}

/// `..` in a server path is taken as the kernel takes it, as rsync's
/// server does: the parent of where the path before it leads, through
/// symlinks beneath the root (`dl/..` is `d1`'s parent when `dl` leads
/// to `d1/sub`), for pulls, pushes and wildcards; climbing above the root
/// is refused as ever. (Every `..` was refused as "escapes the root".) A
/// leading `~` is the root (it made entries named `~`).
#[test]
fn home_and_dot_dot_in_a_server_path_are_resolved_beneath_the_root() {
    let keys = Keys::new();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    std::fs::create_dir_all(root.join("d1/sub")).unwrap();
    std::fs::create_dir_all(root.join("d2")).unwrap();
    std::fs::write(root.join("d1/one.txt"), b"one").unwrap();
    std::fs::write(root.join("d2/two.txt"), b"two").unwrap();
    std::fs::write(root.join("top.txt"), b"top").unwrap();
    std::os::unix::fs::symlink("d1/sub", root.join("dl")).unwrap();
    let srv = Jsrv::start(keys.path(), &root, &[]);
    for (from, want) in [
        ("127.0.0.1:d2/../top.txt", "top"),
        ("127.0.0.1:dl/../one.txt", "one"),
        ("127.0.0.1:d1/./sub/../../d2/two.txt", "two"),
        ("127.0.0.1:dl/../../d2/t*.txt", "two"),
        ("127.0.0.1:~/top.txt", "top"),
        ("127.0.0.1:~/d2/t*.txt", "two"),
    ] {
        let got = work.path().join("got.txt");
        let _ = std::fs::remove_file(&got);
        ok(&srv.jcp(keys.path(), &[from, got.to_str().unwrap()]), from);
        assert_eq!(std::fs::read_to_string(&got).unwrap(), want, "{from}");
    }
    let got = work.path().join("tree");
    ok(
        &srv.jcp(
            keys.path(),
            &["127.0.0.1:d1/sub/../", got.to_str().unwrap()],
        ),
        "d1/sub/../",
    );
    assert_same_tree(&root.join("d1"), &got);
    // `~` is the root (a login's home, to scp and rsync): no entry named `~`.
    let home = work.path().join("home.txt");
    std::fs::write(&home, b"home").unwrap();
    for dst in ["127.0.0.1:~", "127.0.0.1:~/", "127.0.0.1:~/d2/"] {
        ok(&srv.jcp(keys.path(), &[home.to_str().unwrap(), dst]), dst);
        assert!(!root.join("~").exists(), "{dst} made ~");
    }
    assert_eq!(std::fs::read(root.join("home.txt")).unwrap(), b"home");
    assert_eq!(std::fs::read(root.join("d2/home.txt")).unwrap(), b"home");
    let src = work.path().join("pushed.txt");
    std::fs::write(&src, b"pushed").unwrap();
    ok(
        &srv.jcp(keys.path(), &[src.to_str().unwrap(), "127.0.0.1:dl/../d3/"]),
        "push",
    );
    assert_eq!(
        std::fs::read_to_string(root.join("d1/d3/pushed.txt")).unwrap(),
        "pushed"
    );
    for (path, says) in [
        ("127.0.0.1:dl/../../..", "escapes the root"),
        ("127.0.0.1:top.txt/../d2", "top.txt: not a directory"),
        (
            "127.0.0.1:nothing/../d2",
            "nothing: no such file or directory",
        ),
        ("127.0.0.1:d1/../../*", "escapes the root"),
        ("127.0.0.1:d*/../top.txt", "escapes the root"),
        ("127.0.0.1:/d2/../top.txt", "an absolute path"),
    ] {
        let dst = work.path().join("bad");
        let out = srv.jcp(keys.path(), &[path, dst.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{path} succeeded: {err}");
        assert!(err.contains(says), "{path}: {err}");
        assert!(!dst.exists(), "{path} made {}", dst.display());
    }

    // An entry named `~` (an earlier version made them) is reached as
    // `./~`, and a wildcard's match of it is that entry, not the root.
    std::fs::create_dir_all(root.join("~")).unwrap();
    std::fs::write(root.join("~/notes.txt"), b"notes").unwrap();
    let got = work.path().join("tilde");
    for from in ["127.0.0.1:./~/*.txt", "127.0.0.1:~*"] {
        let _ = std::fs::remove_dir_all(&got);
        std::fs::create_dir_all(&got).unwrap();
        let to = format!("{}/", got.display());
        ok(&srv.jcp(keys.path(), &["-r", from, &to]), from);
        let want = match from.ends_with(".txt") {
            true => "notes.txt",
            false => "~/notes.txt",
        };
        assert_eq!(jsync_tests::tree::files_in(&got), [want], "{from}");
    }

    // A local destination named `~` is a directory of that name: no
    // server reads it (it was the destination's parent, and --delete
    // emptied it).
    let here = work.path().join("here");
    std::fs::create_dir_all(here.join("src")).unwrap();
    std::fs::write(here.join("src/a"), b"a").unwrap();
    std::fs::write(here.join("other"), b"other").unwrap();
    let (from, to) = (here.join("src/"), here.join("~"));
    let out = run(
        "jcp",
        &[
            "-r",
            "--delete",
            &format!("{}/", from.display()),
            to.to_str().unwrap(),
        ],
    );
    ok(&out, "jcp src/ ~");
    assert_eq!(std::fs::read(here.join("~/a")).unwrap(), b"a");
    assert!(here.join("src/a").exists() && here.join("other").exists());
}

/// A local destination beneath a file names the file as what is not a
/// directory (`mkdir`'s "File exists" was shown, or the path beneath it).
#[test]
fn a_destination_beneath_a_file_names_the_file() {
    let work = tempfile::tempdir().unwrap();
    let (f, file) = (work.path().join("f"), work.path().join("file"));
    std::fs::write(&f, b"x").unwrap();
    std::fs::write(&file, b"y").unwrap();
    for under in ["x", "x/y"] {
        let dst = file.join(under);
        let out = run("jcp", &[f.to_str().unwrap(), dst.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{under}: {err}");
        let says = format!("{}: not a directory", file.display());
        assert!(err.contains(&says), "{under}: {err}");
        assert_eq!(std::fs::read(&file).unwrap(), b"y");
    }
}

/// A file an interrupted run left as its partial file resumes from both
/// the partial (the new file's beginning) and the old file (most of the
/// rest), so only what changed crosses again: with the partial alone as
/// the basis, everything after the cut was sent whole (a 4 MiB file with
/// 64 KiB changed sent 2.5 MiB after a cut at 1.5 MiB). Locally and in a
/// push.
#[test]
fn a_resumed_file_takes_the_rest_from_its_old_copy() {
    let keys = Keys::new();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    let src = work.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&root).unwrap();
    // Changed: 512 KiB the partial has (the old file alone would send
    // them), and 64 KiB after the cut (the partial alone would send all).
    let old = pseudo_random(4 << 20, 1);
    let mut new = old.clone();
    new[256 << 10..768 << 10].copy_from_slice(&pseudo_random(512 << 10, 2));
    new[3 << 20..(3 << 20) + (64 << 10)].copy_from_slice(&pseudo_random(64 << 10, 3));
    std::fs::write(src.join("big"), &new).unwrap();
    let srv = Jsrv::start(keys.path(), &root, &[]);
    let local = work.path().join("local");
    for (dst, to, opts) in [
        (local.clone(), local.to_str().unwrap().to_string(), &[][..]),
        (root.join("dst"), "127.0.0.1:dst".to_string(), &[]),
        // -W asks for no signature of the old file: the partial alone.
        (root.join("dst"), "127.0.0.1:dst".to_string(), &["-W"]),
    ] {
        std::fs::create_dir_all(&dst).unwrap();
        std::fs::write(dst.join("big"), &old).unwrap();
        // Where an earlier run was cut: the new file's first 1.5 MiB.
        std::fs::write(dst.join(".big.jsync-partial"), &new[..3 << 19]).unwrap();
        let from = format!("{}/", src.display());
        let mut args = vec!["--stats", &from, &to];
        args.extend(opts);
        let out = srv.jcp(keys.path(), &args);
        ok(&out, &to);
        assert_eq!(std::fs::read(dst.join("big")).unwrap(), new, "{to}");
        assert!(!dst.join(".big.jsync-partial").exists(), "{to}");
        let literal = stat(&out.stdout, "Literal data:");
        match opts.is_empty() {
            true => assert!(literal < 384 << 10, "{to}: {literal} bytes sent again"),
            false => assert!(literal > 2 << 20, "{to} {opts:?}: {literal} bytes"),
        }
    }
}

/// A push into a destination that is a symlink to a directory beneath the
/// root goes into that directory, as rsync's (whose receiver changes into
/// it) and as a local copy does: `src/` to `host:current`, `current`
/// leading to `real`, fills `real` and leaves the link (it was replaced by
/// a new directory, silently); `--delete` deletes in `real`. One leading
/// out of the root is refused, nothing written there.
#[test]
fn a_push_into_a_symlinked_directory_goes_where_it_leads() {
    let keys = Keys::new();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    let src = work.path().join("src");
    make_tree(&src, 64 << 10);
    std::fs::create_dir_all(root.join("real")).unwrap();
    std::fs::write(root.join("real/old.txt"), b"old").unwrap();
    std::os::unix::fs::symlink("real", root.join("current")).unwrap();
    std::os::unix::fs::symlink(work.path(), root.join("out")).unwrap();
    let srv = Jsrv::start(keys.path(), &root, &[]);
    let from = format!("{}/", src.display());
    for (dst, extra) in [
        ("127.0.0.1:current", None),
        ("127.0.0.1:current/", None),
        ("127.0.0.1:current", Some("--delete")),
    ] {
        let mut args = vec![from.as_str(), dst];
        args.extend(extra);
        ok(&srv.jcp(keys.path(), &args), dst);
        let link = std::fs::symlink_metadata(root.join("current")).unwrap();
        assert!(
            link.file_type().is_symlink(),
            "{dst} {extra:?}: the link went"
        );
        let (want, mut got) = (snapshot(&src), snapshot(&root.join("real")));
        assert_eq!(got.remove(&b"old.txt"[..]).is_some(), extra.is_none());
        for (path, node) in want.iter().filter(|(p, _)| !p.is_empty()) {
            assert_eq!(got.get(path), Some(node), "{dst} {extra:?}: {path:?}");
        }
        std::fs::write(root.join("real/old.txt"), b"old").unwrap();
    }
    let before = std::fs::read_dir(work.path()).unwrap().count();
    let out = srv.jcp(keys.path(), &[from.as_str(), "127.0.0.1:out"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "push through out succeeded: {err}");
    assert!(err.contains("escapes the root"), "{err}");
    assert_eq!(std::fs::read_dir(work.path()).unwrap().count(), before);
}

/// A server path naming a directory's contents (`LINK/`) is read through
/// a symlink there, as the kernel reads a local `LINK/` and as rsync does,
/// while the link stays beneath the root; `FILE/` names no directory. (A
/// pull of `LINK/` made a local symlink: dangling, or to /etc, exit 0.)
#[test]
fn a_server_path_with_a_trailing_slash_names_a_directory() {
    let keys = Keys::new();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    make_tree(&root.join("d1"), 64 << 10);
    std::os::unix::fs::symlink("d1", root.join("dl")).unwrap();
    std::os::unix::fs::symlink(work.path(), root.join("out")).unwrap();
    std::fs::write(root.join("file"), b"x").unwrap();
    let srv = Jsrv::start(keys.path(), &root, &[]);
    for from in ["127.0.0.1:dl/", "127.0.0.1:dl/."] {
        let dst = work.path().join("got");
        let _ = std::fs::remove_dir_all(&dst);
        ok(&srv.jcp(keys.path(), &[from, dst.to_str().unwrap()]), from);
        assert!(
            std::fs::symlink_metadata(&dst).unwrap().is_dir(),
            "{from}: not a directory"
        );
        assert_same_tree(&root.join("d1"), &dst);
    }
    for (from, says) in [
        ("127.0.0.1:file/", "file/: not a directory"),
        ("127.0.0.1:out/", "escapes the root"),
    ] {
        let dst = work.path().join("bad");
        let out = srv.jcp(keys.path(), &[from, dst.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{from} succeeded: {err}");
        assert!(err.contains(says), "{from}: {err}");
        assert!(
            std::fs::symlink_metadata(&dst).is_err(),
            "{from} made {}",
            dst.display()
        );
    }
}

/// A partial file an interrupted run left is for its own file only: the
/// other files of its directory are compared as ever (they were all sent
/// again, each as a new inode, hard links to them cut, every run after),
/// and it goes once its file is up to date, or with --delete once the
/// source has no such file (it stayed for good).
#[test]
fn a_leftover_partial_file_is_for_its_own_file_and_goes_when_done() {
    use std::os::unix::fs::MetadataExt;
    let work = tempfile::tempdir().unwrap();
    let (src, dst) = (work.path().join("src"), work.path().join("dst"));
    std::fs::create_dir_all(&src).unwrap();
    for f in ["a", "b", "c"] {
        std::fs::write(src.join(f), pseudo_random(100 << 10, f.len() as u64)).unwrap();
    }
    let (s, d) = (format!("{}/", src.display()), format!("{}/", dst.display()));
    ok(&run("jcp", &["-a", &s, &d]), "first copy");
    let snap = work.path().join("snap");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::hard_link(dst.join("a"), snap.join("a")).unwrap();
    let inode = |p: &std::path::Path| std::fs::metadata(p).unwrap().ino();
    let before = inode(&dst.join("a"));
    // What interrupted runs could have left: of a file that is up to date,
    // and of one the source no longer has.
    std::fs::write(dst.join(".b.jsync-partial"), b"half of b").unwrap();
    std::fs::write(dst.join(".gone.jsync-partial"), b"half of gone").unwrap();
    let touched = filetime::FileTime::from_unix_time(1_600_000_000, 0);
    filetime::set_file_mtime(src.join("a"), touched).unwrap();

    // -c: nothing differs, nothing is sent.
    let out = run("jcp", &["-a", "-c", "-i", &s, &d]);
    ok(&out, "jcp -c");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(!said.contains(">f"), "jcp -c sent files:\n{said}");
    assert_eq!(inode(&dst.join("a")), before, "a was rewritten");
    assert!(
        !dst.join(".b.jsync-partial").exists(),
        "b is the same, its partial stayed"
    );
    assert!(
        dst.join(".gone.jsync-partial").exists(),
        "gone without --delete"
    );
    assert_eq!(std::fs::metadata(snap.join("a")).unwrap().nlink(), 2);
    // (Without -c, a new time on an inode with other names makes a new
    // one, as rsync's: the rewrite below is told by the inode alone.)
    std::fs::remove_file(snap.join("a")).unwrap();
    // A file whose time alone differs takes the time; one up to date loses
    // its partial file.
    std::fs::write(dst.join(".c.jsync-partial"), b"half of c").unwrap();
    let touched = filetime::FileTime::from_unix_time(1_600_000_100, 0);
    filetime::set_file_mtime(src.join("a"), touched).unwrap();
    let out = run("jcp", &["-a", "-i", "--delete", &s, &d]);
    ok(&out, "jcp --delete");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains(".f..t") && !said.contains(">f"), "{said}");
    assert_eq!(inode(&dst.join("a")), before, "a was rewritten");
    let mut left: Vec<_> = std::fs::read_dir(&dst)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["a", "b", "c"], "the partial files stayed");
    // Files of the source's named like partial files are the user's: sent,
    // and kept, run after run.
    std::fs::write(src.join(".a.jsync-partial"), b"mine").unwrap();
    std::fs::write(src.join(".gone.jsync-partial"), b"mine too").unwrap();
    for run_no in 0..3 {
        let out = run("jcp", &["-a", "--delete", &s, &d]);
        ok(&out, &format!("run {run_no}"));
        assert_eq!(
            std::fs::read(dst.join(".a.jsync-partial")).unwrap(),
            b"mine",
            "run {run_no}"
        );
        assert_eq!(
            std::fs::read(dst.join(".gone.jsync-partial")).unwrap(),
            b"mine too"
        );
    }
}

#[test]
fn killing_jsrv_mid_transfer_leaves_targets_intact_and_fails_loudly() {
    let keys = Keys::new();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    // The server already has an old version of the file.
    let old = pseudo_random(8 * MB, 1);
    std::fs::write(root.join("big.bin"), &old).unwrap();
    let src = work.path().join("big.bin");
    let mut f = std::fs::File::create(&src).unwrap();
    for i in 0..40 {
        f.write_all(&pseudo_random(8 * MB, 100 + i)).unwrap();
    }
    f.flush().unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    drop(f);
    let mut srv = Jsrv::start(keys.path(), &root, &[]);
    let child = std::process::Command::new(jsync_tests::bins::bin("jcp"))
        .arg("--config-dir")
        .arg(keys.path())
        .args([
            "--port",
            &srv.port.to_string(),
            src.to_str().unwrap(),
            "127.0.0.1:",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the server once the transfer is under way.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let temp_exists = std::fs::read_dir(&root).unwrap().any(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .contains("jsync-tmp")
        });
        if temp_exists || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    srv.kill();
    let out = child.wait_with_output().unwrap();
    assert!(
        !out.status.success(),
        "jcp succeeded although the server died"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("127.0.0.1"),
        "the message should name the server: {err}"
    );
    assert_eq!(
        std::fs::read(root.join("big.bin")).unwrap(),
        old,
        "the server's target file was torn"
    );
    assert_eq!(
        std::fs::metadata(&src).unwrap().len(),
        320 * MB as u64,
        "the client's source changed"
    );

    // A restarted server cleans up the temp file its crash left, and the push completes.
    let srv = Jsrv::start(keys.path(), &root, &[]);
    let out = srv.jcp(keys.path(), &[src.to_str().unwrap(), "127.0.0.1:"]);
    ok(&out, "push after restart");
    let leftovers: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains("jsync-tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temp files left behind: {leftovers:?}"
    );
    assert_eq!(
        std::fs::metadata(root.join("big.bin")).unwrap().len(),
        320 * MB as u64
    );
}

/// A pull whose server dies while many files are still queued fails at
/// once, naming the server (it used to wait for good: the receiver went on
/// handing jobs to lanes the lost connection had ended), and every file it
/// wrote is whole.
#[test]
fn killing_jsrv_mid_pull_of_many_files_fails_loudly() {
    let keys = Keys::new();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    let tree = root.join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    for i in 0..3000u64 {
        std::fs::write(tree.join(format!("f{i:04}")), pseudo_random(24 << 10, i)).unwrap();
    }
    let mut srv = Jsrv::start(keys.path(), &root, &[]);
    let dst = work.path().join("dst");
    let mut child = std::process::Command::new(jsync_tests::bins::bin("jcp"))
        .arg("--config-dir")
        .arg(keys.path())
        .args([
            "--port",
            &srv.port.to_string(),
            "--bwlimit=8M",
            "127.0.0.1:tree/",
        ])
        .arg(&dst)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let began = std::time::Instant::now();
    let arrived = || std::fs::read_dir(&dst).map_or(0, |d| d.count());
    while arrived() < 100 && began.elapsed() < std::time::Duration::from_secs(60) {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    srv.kill();
    let killed = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if killed.elapsed() > std::time::Duration::from_secs(30) {
            child.kill().unwrap();
            panic!("jcp still running 30 s after the server died");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server 127.0.0.1:"), "{err}");
    for e in std::fs::read_dir(&dst).unwrap() {
        let name = e.unwrap().file_name();
        let name = name.to_str().unwrap();
        if let Some(i) = name.strip_prefix('f').and_then(|n| n.parse::<u64>().ok()) {
            let got = std::fs::read(dst.join(name)).unwrap();
            assert_eq!(got, pseudo_random(24 << 10, i), "{name} is torn");
        }
    }
}

#[test]
fn a_file_changing_during_the_transfer_fails_alone_with_exit_code_3() {
    let work = tempfile::tempdir().unwrap();
    let a = work.path().join("a");
    make_tree(&a, 1 << 20);
    let busy = a.join("busy.log");
    std::fs::write(&busy, pseudo_random(4 * MB, 8)).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let busy = busy.clone();
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&busy)
                .unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                f.write_all(b"another log line\n").unwrap();
                std::thread::sleep(std::time::Duration::from_micros(50));
            }
        })
    };
    let b = work.path().join("b");
    // The writer appends every 50 µs; on a loaded machine it may not get to
    // run while the file is read, and then the copy is simply consistent
    // (exit 0). A few tries see it change.
    let mut out = run("jcp", &[&format!("{}/", a.display()), b.to_str().unwrap()]);
    for _ in 0..9 {
        if out.status.code() != Some(0) {
            break;
        }
        std::fs::remove_dir_all(&b).unwrap();
        out = run("jcp", &[&format!("{}/", a.display()), b.to_str().unwrap()]);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("busy.log") && err.contains("changed"), "{err}");
    // Everything else arrived; the busy file is absent rather than torn.
    assert!(!b.join("busy.log").exists());
    let a_time = filetime::FileTime::from_last_modification_time(&std::fs::metadata(&a).unwrap());
    std::fs::remove_file(&busy).unwrap();
    filetime::set_file_mtime(&a, a_time).unwrap();
    assert_same_tree(&a, &b);
}

/// Regression: with requests pipelined on one lane, a multiplexed stream is read and
/// written from two tasks; a window update sent from the reader used to take
/// the writer's wake-up, and the push stalled for good after a few files.
#[test]
fn many_files_through_one_lane_over_tls_do_not_stall() {
    let work = tempfile::tempdir().unwrap();
    let keys = Keys::new();
    let src = work.path().join("src");
    let root = work.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    for d in 0..20 {
        let dir = src.join(format!("d{d:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..60 {
            let len = 1 + (d * 60 + f) * 97 % 120_000;
            std::fs::write(
                dir.join(format!("f{f:02}")),
                pseudo_random(len, (d * 60 + f) as u64),
            )
            .unwrap();
        }
    }
    let srv = Jsrv::start(keys.path(), &root, &[]);
    let mut child = std::process::Command::new(jsync_tests::bins::bin("jcp"))
        .arg("--config-dir")
        .arg(keys.path())
        .args(["--port", &srv.port.to_string(), "-j", "1"])
        .arg(format!("{}/", src.display()))
        .arg("127.0.0.1:dst")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the push stalled (no progress for 60 s)");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(status.success(), "jcp failed: {status}");
    assert_same_tree(&src, &root.join("dst"));
}

/// Files whose content is the same but whose time moved get the sender's time
/// after a hash check, and nothing is sent for them, whether each hashed file
/// stays open until its verdict or (with few descriptors to spare, under
/// `ulimit -n 48`) most are closed and found again by their path.
#[test]
fn touched_files_get_their_times_with_or_without_descriptors_to_spare() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    for i in 0..300 {
        let p = src.join(format!("d{}/f{i}", i % 3));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, pseudo_random(100 + i * 7, i as u64)).unwrap();
    }
    for (n, limit) in [(0, None), (1, Some(48))] {
        let dst = tmp.path().join(format!("dst{n}"));
        ok(
            &run(
                "jcp",
                &[&format!("{}/", src.display()), dst.to_str().unwrap()],
            ),
            "first copy",
        );
        for i in 0..300 {
            let t = filetime::FileTime::from_unix_time(1_600_000_000 + i * 61 + n, 7);
            filetime::set_file_mtime(src.join(format!("d{}/f{i}", i % 3)), t).unwrap();
        }
        let mut cmd = std::process::Command::new("bash");
        let script = match limit {
            Some(l) => format!("ulimit -n {l} && exec \"$0\" \"$@\""),
            None => "exec \"$0\" \"$@\"".to_string(),
        };
        cmd.args(["-c", &script])
            .arg(jsync_tests::bins::bin("jcp"))
            .args(["--stats", &format!("{}/", src.display())])
            .arg(&dst);
        let out = cmd.output().unwrap();
        ok(
            &out,
            &format!("re-run after touching every file, limit {limit:?}"),
        );
        assert_eq!(stat(&out.stdout, "Literal data:"), 0, "limit {limit:?}");
        assert_eq!(
            stat(&out.stdout, "Files transferred:"),
            0,
            "limit {limit:?}"
        );
        assert_same_tree(&src, &dst);
    }
}

/// As in rsync, a destination written with a trailing slash is a directory:
/// made if it does not exist, and a single file lands inside it instead of
/// taking its name. Locally, pushed and pulled.
#[test]
fn a_destination_with_a_trailing_slash_is_a_directory() {
    let keys = Keys::new();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("served.txt"), b"from the server\n").unwrap();
    let file = work.path().join("note.txt");
    std::fs::write(&file, b"a note\n").unwrap();
    let srv = Jsrv::start(keys.path(), &root, &[]);

    let local = work.path().join("local");
    let out = run(
        "jcp",
        &[file.to_str().unwrap(), &format!("{}/", local.display())],
    );
    ok(&out, "local");
    assert_eq!(std::fs::read(local.join("note.txt")).unwrap(), b"a note\n");

    let out = srv.jcp(keys.path(), &[file.to_str().unwrap(), "127.0.0.1:pushed/"]);
    ok(&out, "push");
    assert_eq!(
        std::fs::read(root.join("pushed/note.txt")).unwrap(),
        b"a note\n"
    );

    let pulled = work.path().join("pulled");
    let out = srv.jcp(
        keys.path(),
        &["127.0.0.1:served.txt", &format!("{}/", pulled.display())],
    );
    ok(&out, "pull");
    assert_eq!(
        std::fs::read(pulled.join("served.txt")).unwrap(),
        b"from the server\n"
    );

    // Without the slash a file still takes the destination's name.
    let named = work.path().join("named");
    let out = run("jcp", &[file.to_str().unwrap(), named.to_str().unwrap()]);
    ok(&out, "local, no slash");
    assert_eq!(std::fs::read(&named).unwrap(), b"a note\n");
}

/// A source that is missing among several fails alone, as with rsync and
/// scp: named, the others copied, exit 3 (rsync's 23), locally, pushed and
/// pulled. When none can be read the run fails (exit 1).
#[test]
fn a_missing_source_among_several_fails_alone() {
    let keys = Keys::new();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let srv = Jsrv::start(keys.path(), &root, &[]);
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    std::fs::write(&a, b"a").unwrap();
    std::fs::write(&b, b"b").unwrap();
    let gone = work.path().join("gone");
    let local = format!("{}/", work.path().join("local").display());
    let (a, b, gone) = (
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        gone.to_str().unwrap(),
    );
    for (what, dst, got) in [
        ("local", local.as_str(), work.path().join("local")),
        ("push", "127.0.0.1:inbox/", root.join("inbox")),
    ] {
        let out = srv.jcp(keys.path(), &[a, gone, b, dst]);
        jsync_tests::bins::assert_fails(&out, 3, "gone: cannot read it: No such file", what);
        assert_eq!(std::fs::read(got.join("a")).unwrap(), b"a", "{what}");
        assert_eq!(std::fs::read(got.join("b")).unwrap(), b"b", "{what}");
        let out = srv.jcp(keys.path(), &[gone, gone, dst]);
        jsync_tests::bins::assert_fails(&out, 1, "cannot read", what);
    }
    let pulled = work.path().join("pulled");
    let to = format!("{}/", pulled.display());
    let (a, gone, b) = ("127.0.0.1:inbox/a", "127.0.0.1:gone", "127.0.0.1:inbox/b");
    let out = srv.jcp(keys.path(), &[a, gone, b, &to]);
    let said = "127.0.0.1:gone: no such file or directory on the server";
    jsync_tests::bins::assert_fails(&out, 3, said, "pull");
    assert_eq!(std::fs::read(pulled.join("a")).unwrap(), b"a");
    assert_eq!(std::fs::read(pulled.join("b")).unwrap(), b"b");
    let out = srv.jcp(keys.path(), &[gone, gone, &to]);
    jsync_tests::bins::assert_fails(&out, 1, "no such file", "pull, none there");
}

/// With `--delete`, a source that cannot be read stops every source's
/// deletions, as an I/O error inside one does (rsync: "IO error encountered
/// -- skipping file deletion"), unless `--ignore-errors`; the others are
/// still copied. Locally, pushed and pulled.
#[test]
fn a_missing_source_among_several_holds_deletions() {
    let keys = Keys::new();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    std::fs::create_dir_all(root.join("d")).unwrap();
    std::fs::write(root.join("d/kept"), b"k").unwrap();
    let srv = Jsrv::start(keys.path(), &root, &[]);
    let d = work.path().join("d");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("kept"), b"k").unwrap();
    let (d, gone) = (d.to_str().unwrap(), work.path().join("gone"));
    let gone = gone.to_str().unwrap();
    let pulled = work.path().join("pulled");
    let local = work.path().join("local");
    let cases = [
        ("local", [d, gone], format!("{}/", local.display()), local),
        (
            "push",
            [d, gone],
            "127.0.0.1:inbox/".into(),
            root.join("inbox"),
        ),
        (
            "pull",
            ["127.0.0.1:d", "127.0.0.1:gone"],
            format!("{}/", pulled.display()),
            pulled.clone(),
        ),
    ];
    for (what, srcs, dst, got) in cases {
        std::fs::create_dir_all(got.join("d")).unwrap();
        for (extra, deleted) in [(None, false), (Some("--ignore-errors"), true)] {
            let extraneous = got.join("d/extraneous");
            std::fs::write(&extraneous, b"x").unwrap();
            let mut args = vec!["-r", "--delete", srcs[0], srcs[1], &dst];
            args.extend(extra);
            let out = srv.jcp(keys.path(), &args);
            jsync_tests::bins::assert_fails(&out, 3, "gone", what);
            assert_eq!(std::fs::read(got.join("d/kept")).unwrap(), b"k", "{what}");
            assert_eq!(!extraneous.exists(), deleted, "{what} {extra:?}");
            let said = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                said.contains("skipping deletion"),
                !deleted,
                "{what}: {said}"
            );
        }
    }
}

/// A full disk fails the file that does not fit, saying that writing it
/// failed (rsync: "write failed on"), and leaves no temp file; what fits is
/// copied. Locally and pushed, each destination a 1 MiB tmpfs in a mount
/// namespace of its own (the server's looked at through /proc/PID/root).
#[test]
fn a_full_disk_fails_the_file_that_does_not_fit() {
    let keys = Keys::new();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("big"), pseudo_random(3 << 20, 7)).unwrap();
    std::fs::write(src.join("small"), b"s").unwrap();
    let src_arg = format!("{}/", src.display());
    let names = |dir: &std::path::Path| {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let mount = |at: &std::path::Path, then: &str| {
        let script = format!(
            "set -e\nmount -t tmpfs -o size=1m none '{}'\nset +e\n{then}",
            at.display()
        );
        // (Not as root: in a user namespace too, as one_file_system's.)
        let flags = match rustix::process::geteuid().is_root() {
            true => "-m",
            false => "-rm",
        };
        ["unshare", flags, "sh", "-c", &script, "sh"].map(String::from)
    };
    let said = "big: cannot write: No space left on device";

    let dst = work.path().join("local");
    std::fs::create_dir_all(&dst).unwrap();
    let listed = work.path().join("listed");
    let then = format!(
        "\"$@\"\nrc=$?\nls -A '{}' > '{}'\nexit $rc",
        dst.display(),
        listed.display()
    );
    let out = std::process::Command::new("unshare")
        .args(&mount(&dst, &then)[1..])
        .arg(jsync_tests::bins::bin("jcp"))
        .args(["-r", &src_arg, dst.to_str().unwrap()])
        .output()
        .unwrap();
    jsync_tests::bins::assert_fails(&out, 3, said, "local");
    assert_eq!(
        std::fs::read_to_string(&listed).unwrap(),
        "small\n",
        "local"
    );

    let root = work.path().join("root");
    std::fs::create_dir_all(root.join("inbox")).unwrap();
    let wrapper = mount(&root.join("inbox"), "exec \"$@\"");
    let srv = Jsrv::start_wrapped(&wrapper, keys.path(), &root, &[]);
    let out = srv.jcp(keys.path(), &["-r", &src_arg, "127.0.0.1:inbox/"]);
    jsync_tests::bins::assert_fails(&out, 3, said, "push");
    let seen = format!(
        "/proc/{}/root{}",
        srv.child.id(),
        root.join("inbox").display()
    );
    assert_eq!(names(std::path::Path::new(&seen)), ["small"], "push");
}

/// An entry whose path is longer than the file list carries (4096 bytes,
/// rsync's limit too) fails alone, named, with nothing below it; the rest is
/// copied (it failed the whole run as malformed data). Locally, pushed and
/// pulled; the tree is made through directory descriptors, deeper than
/// PATH_MAX.
#[test]
fn a_path_too_long_for_the_list_fails_alone() {
    use rustix::fs::{mkdirat, openat, Mode, OFlags, CWD};
    let deep = |at: &std::path::Path| {
        std::fs::create_dir_all(at).unwrap();
        std::fs::write(at.join("normal"), b"ok").unwrap();
        let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC;
        let mut fd = openat(CWD, at, flags, Mode::empty()).unwrap();
        let name = "D".repeat(200);
        for _ in 0..22 {
            mkdirat(&fd, name.as_str(), Mode::from_raw_mode(0o755)).unwrap();
            fd = openat(&fd, name.as_str(), flags, Mode::empty()).unwrap();
        }
        let f = OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC;
        let f = openat(&fd, "f", f, Mode::from_raw_mode(0o644)).unwrap();
        rustix::io::write(&f, b"deep").unwrap();
    };
    let keys = Keys::new();
    let work = tempfile::tempdir().unwrap();
    let (src, root) = (work.path().join("src"), work.path().join("root"));
    deep(&src);
    deep(&root.join("src"));
    let srv = Jsrv::start(keys.path(), &root, &[]);
    let local = work.path().join("local");
    let pulled = work.path().join("pulled");
    let src_arg = format!("{}/", src.display());
    let cases = [
        (
            "local",
            src_arg.as_str(),
            local.to_str().unwrap(),
            local.clone(),
        ),
        (
            "push",
            src_arg.as_str(),
            "127.0.0.1:pushed",
            root.join("pushed"),
        ),
        (
            "pull",
            "127.0.0.1:src/",
            pulled.to_str().unwrap(),
            pulled.clone(),
        ),
    ];
    let said = "its path is 4220 bytes long, more than the 4096 a file list carries";
    for (what, from, to, got) in cases {
        let out = srv.jcp(keys.path(), &["-r", from, to]);
        jsync_tests::bins::assert_fails(&out, 3, said, what);
        assert_eq!(std::fs::read(got.join("normal")).unwrap(), b"ok", "{what}");
        assert!(got.join("D".repeat(200)).is_dir(), "{what}");
    }
}

/// Runs jcp and jsrv as a user who is not root: as root, as `nobody`
/// (65534) through `setpriv`, from links to the binaries in `work` (the
/// build's own path may be closed to it), with `work` and a copy of the
/// keys given to it (jsync takes no keys from another user's files: the
/// clients the tests run as root keep theirs); otherwise as the user the
/// tests run as.
struct Unprivileged {
    prefix: Vec<String>,
    jcp: std::path::PathBuf,
    jsrv: std::path::PathBuf,
    keys: std::path::PathBuf,
}

impl Unprivileged {
    fn new(work: &std::path::Path, keys: &Keys) -> Unprivileged {
        let root = rustix::process::geteuid().is_root();
        let (jcp, jsrv) = (work.join("jcp"), work.join("jsrv"));
        for (name, link) in [("jcp", &jcp), ("jsrv", &jsrv)] {
            let bin = jsync_tests::bins::bin(name);
            if std::fs::hard_link(&bin, link).is_err() {
                std::fs::copy(&bin, link).unwrap();
            }
        }
        let mut prefix = Vec::new();
        let mut own_keys = keys.path().to_path_buf();
        if root {
            own_keys = work.join("nobody-keys");
            let out = std::process::Command::new("cp")
                .arg("-a")
                .arg(keys.path())
                .arg(&own_keys)
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            let out = std::process::Command::new("chown")
                .args(["-R", "65534:65534"])
                .arg(work)
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            prefix = [
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
            ]
            .map(String::from)
            .to_vec();
        }
        Unprivileged {
            prefix,
            jcp,
            jsrv,
            keys: own_keys,
        }
    }

    /// Whether the tests run as root (and so this is `nobody`).
    fn as_nobody(&self) -> bool {
        !self.prefix.is_empty()
    }

    fn jcp(&self, args: &[&str]) -> Output {
        let mut cmd = std::process::Command::new(self.prefix.first().map_or("env", |p| p.as_str()));
        cmd.args(self.prefix.iter().skip(1))
            .arg(&self.jcp)
            .args(args);
        cmd.output().unwrap()
    }

    fn jsrv(&self, root: &std::path::Path) -> Jsrv {
        let script = format!("shift; exec '{}' \"$@\"", self.jsrv.display());
        let mut wrapper = self.prefix.clone();
        wrapper.extend(["sh", "-c", &script, "sh"].map(String::from));
        Jsrv::start_wrapped(&wrapper, &self.keys, root, &[])
    }
}

/// A copy of a read-only tree can be run again by its owner: the receiver
/// (not root) opens a directory it may not write for the run and gives it
/// its mode back at the end, as rsync's does (each file in it failed with
/// "Permission denied"). With -p and without, locally and pushed.
#[test]
fn a_read_only_tree_is_copied_again() {
    use std::os::unix::fs::PermissionsExt;
    let keys = Keys::new();
    let work = tempfile::tempdir().unwrap();
    let mode = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    let src = work.path().join("src");
    let root = work.path().join("root");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::create_dir_all(&root).unwrap();
    let write = |version: &str| {
        mode(&src, 0o755);
        mode(&src.join("sub"), 0o755);
        std::fs::write(src.join("a"), version).unwrap();
        std::fs::write(src.join("sub/b"), version).unwrap();
        mode(&src.join("sub"), 0o555);
        mode(&src, 0o555);
    };
    write("one");
    let user = Unprivileged::new(work.path(), &keys);
    let srv = user.jsrv(&root);
    let src_arg = format!("{}/", src.display());
    let local = work.path().join("local");
    let local_arg = local.to_str().unwrap();
    for (n, (version, flag)) in [("one", "-a"), ("two", "-a"), ("three", "-r")]
        .iter()
        .enumerate()
    {
        if n > 0 {
            write(version);
        }
        ok(
            &user.jcp(&[flag, &src_arg, local_arg]),
            &format!("local {flag} {version}"),
        );
        let out = srv.jcp(keys.path(), &[flag, &src_arg, "127.0.0.1:pushed"]);
        ok(&out, &format!("push {flag} {version}"));
        for got in [local.clone(), root.join("pushed")] {
            let what = format!("{} {flag} {version}", got.display());
            assert_eq!(
                std::fs::read_to_string(got.join("sub/b")).unwrap(),
                *version,
                "{what}"
            );
            assert_eq!(
                std::fs::read_to_string(got.join("a")).unwrap(),
                *version,
                "{what}"
            );
            for dir in [got.clone(), got.join("sub")] {
                let m = std::fs::metadata(&dir).unwrap().permissions().mode();
                assert_eq!(
                    m & 0o7777,
                    0o555,
                    "{what}: {} keeps its mode",
                    dir.display()
                );
            }
        }
    }
    // (The tempdir's removal needs to write in them.)
    for dir in [&src, &src.join("sub"), &local, &local.join("sub")] {
        mode(dir, 0o755);
    }
    for dir in [root.join("pushed"), root.join("pushed/sub")] {
        mode(&dir, 0o755);
    }
}

/// An extraneous file `--delete` cannot delete is an error ("cannot delete
/// it"), not itemized as deleted nor counted (it was both). Needs a
/// directory the user running jcp cannot write: as root, one of root's,
/// with jcp run as `nobody`.
#[test]
fn a_deletion_that_fails_is_an_error_not_a_deletion() {
    let keys = Keys::new();
    let work = tempfile::tempdir().unwrap();
    let (src, dst) = (work.path().join("src"), work.path().join("dst"));
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("sub/a"), b"a").unwrap();
    let user = Unprivileged::new(work.path(), &keys);
    let src_arg = format!("{}/", src.display());
    let dst_arg = dst.to_str().unwrap();
    ok(&user.jcp(&["-a", &src_arg, dst_arg]), "first copy");
    if !user.as_nobody() {
        eprintln!("not root: no directory this user cannot write to test with");
        return;
    }
    std::fs::write(dst.join("sub/extra"), b"x").unwrap();
    let out = std::process::Command::new("chown")
        .args(["0:0"])
        .arg(dst.join("sub"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = user.jcp(&["-ai", "--stats", "--delete", &src_arg, dst_arg]);
    jsync_tests::bins::assert_fails(
        &out,
        3,
        "sub/extra: cannot delete it: Permission denied",
        "",
    );
    let said = String::from_utf8_lossy(&out.stdout);
    // (--stats shows "Deleted:" only for some.)
    assert!(
        !said.contains("deleting") && !said.contains("Deleted:"),
        "{said}"
    );
    assert!(dst.join("sub/extra").exists());
}

/// A source directory that cannot be read is named as the source it is:
/// locally before anything is made (exit 1; among several, it alone fails,
/// exit 3), and in a pull by the server's path ("cannot read top"; it said
/// ".: .: Permission denied"). Needs a user the directory is closed to: as
/// root, `nobody`.
#[test]
fn an_unreadable_source_directory_is_named() {
    use std::os::unix::fs::PermissionsExt;
    let keys = Keys::new();
    let work = tempfile::tempdir().unwrap();
    let (top, other) = (work.path().join("top"), work.path().join("other"));
    let root = work.path().join("root");
    for dir in [&top, &other, &root.join("top")] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("f"), b"f").unwrap();
    }
    let user = Unprivileged::new(work.path(), &keys);
    let closed = std::fs::Permissions::from_mode(0o000);
    std::fs::set_permissions(&top, closed.clone()).unwrap();
    std::fs::set_permissions(root.join("top"), closed).unwrap();
    let srv = user.jsrv(&root);
    let dst = work.path().join("dst");
    let (top_arg, dst_arg) = (format!("{}/", top.display()), dst.to_str().unwrap());
    let out = user.jcp(&["-a", &top_arg, dst_arg]);
    jsync_tests::bins::assert_fails(
        &out,
        1,
        &format!("cannot read {top_arg}: Permission denied"),
        "local",
    );
    assert!(!dst.exists(), "nothing made");
    let several = format!("{dst_arg}/");
    let out = user.jcp(&[
        "-a",
        top.to_str().unwrap(),
        other.to_str().unwrap(),
        &several,
    ]);
    jsync_tests::bins::assert_fails(&out, 3, "top: cannot read it: Permission denied", "several");
    assert!(dst.join("other/f").exists() && !dst.join("top").exists());
    // A file that cannot be read among several is one too: with --delete,
    // nothing is deleted.
    let file = work.path().join("closed");
    std::fs::write(&file, b"c").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o000)).unwrap();
    std::fs::write(dst.join("other/extraneous"), b"x").unwrap();
    let out = user.jcp(&[
        "-r",
        "--delete",
        file.to_str().unwrap(),
        other.to_str().unwrap(),
        &several,
    ]);
    jsync_tests::bins::assert_fails(&out, 3, "closed: cannot read it: Permission denied", "file");
    assert!(dst.join("other/extraneous").exists(), "no deletion");
    let pulled = work.path().join("pulled");
    for from in ["127.0.0.1:top/", "127.0.0.1:top"] {
        let out = srv.jcp(keys.path(), &["-a", from, pulled.to_str().unwrap()]);
        let said = String::from_utf8_lossy(&out.stderr);
        jsync_tests::bins::assert_fails(&out, 3, "cannot read top: Permission denied", from);
        assert!(!said.contains(".:"), "{said}");
    }
    std::fs::set_permissions(root.join("top"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&top, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A destination the user may not write says which step failed ("cannot
/// create a temp file in its directory", "cannot make the directory"), and a
/// directory that could not be made takes what it holds with it, without an
/// error each (they said "No such file or directory"), as rsync's
/// "Skipping any contents from this failed directory". Needs a directory the
/// user running jcp cannot write: as root, one of root's, jcp run as
/// `nobody`.
#[test]
fn an_unwritable_destination_says_what_failed() {
    let keys = Keys::new();
    let work = tempfile::tempdir().unwrap();
    let (src, dst) = (work.path().join("src"), work.path().join("dst"));
    std::fs::create_dir_all(src.join("sub")).unwrap();
    for f in ["a", "sub/b", "sub/c"] {
        std::fs::write(src.join(f), f).unwrap();
    }
    std::fs::create_dir_all(&dst).unwrap();
    let user = Unprivileged::new(work.path(), &keys);
    if !user.as_nobody() {
        eprintln!("not root: no directory this user cannot write to test with");
        return;
    }
    let out = std::process::Command::new("chown")
        .args(["0:0"])
        .arg(&dst)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = std::process::Command::new("touch")
        .args(["-d", "2020-01-01"])
        .arg(&dst)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = user.jcp(&["-a", &format!("{}/", src.display()), dst.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stderr);
    jsync_tests::bins::assert_fails(&out, 3, "a: cannot create a temp file in its directory", "");
    let made =
        "sub: cannot make the directory: Permission denied (os error 13); skipping what it holds";
    assert!(said.contains(made), "{said}");
    assert!(!said.contains("sub/"), "nothing below it: {said}");
    // (Its time, older than the source's, cannot be set: root's.)
    let times = ".: cannot set the directory's attributes: Operation not permitted";
    assert!(said.contains(times), "{said}");
    assert_eq!(
        said.lines().count(),
        4,
        "three errors, one closing line: {said}"
    );
}

/// Several sources go into the destination as a directory, as with scp and
/// rsync (`jcp *.txt host:dir`): locally, pushed and pulled (every remote
/// source on one server), with one report; what cannot work is refused.
#[test]
fn several_sources_go_into_the_destination_as_a_directory() {
    let keys = Keys::new();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    std::fs::create_dir_all(root.join("tree")).unwrap();
    std::fs::write(root.join("one.txt"), b"one\n").unwrap();
    std::fs::write(root.join("tree/two.txt"), b"two\n").unwrap();
    let a = work.path().join("a.txt");
    let b = work.path().join("b.txt");
    std::fs::write(&a, b"alpha\n").unwrap();
    std::fs::write(&b, b"bravo\n").unwrap();
    let dir = work.path().join("dir");
    make_tree(&dir, MB);
    let srcs = [
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        dir.to_str().unwrap(),
    ];
    let srv = Jsrv::start(keys.path(), &root, &[]);

    let check = |into: &std::path::Path, what: &str| {
        assert_eq!(
            std::fs::read(into.join("a.txt")).unwrap(),
            b"alpha\n",
            "{what}"
        );
        assert_eq!(
            std::fs::read(into.join("b.txt")).unwrap(),
            b"bravo\n",
            "{what}"
        );
        assert_same_tree(&dir, &into.join("dir"));
    };
    let local = work.path().join("local");
    let mut args = srcs.to_vec();
    args.extend(["--stats", local.to_str().unwrap()]);
    let out = run("jcp", &args);
    ok(&out, "local");
    check(&local, "local");
    let stats = String::from_utf8_lossy(&out.stdout);
    assert!(
        stats
            .lines()
            .any(|l| l.starts_with("Files transferred:") && !l.ends_with(" 0")),
        "one report for all sources: {stats}"
    );

    let mut args = srcs.to_vec();
    args.push("127.0.0.1:pushed");
    ok(&srv.jcp(keys.path(), &args), "push");
    check(&root.join("pushed"), "push");

    let pulled = work.path().join("pulled");
    let out = srv.jcp(
        keys.path(),
        &[
            "127.0.0.1:one.txt",
            "127.0.0.1:tree",
            pulled.to_str().unwrap(),
        ],
    );
    ok(&out, "pull");
    assert_eq!(std::fs::read(pulled.join("one.txt")).unwrap(), b"one\n");
    assert_eq!(
        std::fs::read(pulled.join("tree/two.txt")).unwrap(),
        b"two\n"
    );

    // (--delete with several sources only under names of their own: not
    // a directory's contents, nor two of one name.)
    let contents = format!("{}/", srcs[2]);
    for (args, what) in [
        (
            vec!["--delete", srcs[0], &contents, "x"],
            "--delete, contents",
        ),
        (
            vec!["--delete", srcs[0], srcs[0], "x"],
            "--delete, one name twice",
        ),
        (vec!["--delete", "-R", srcs[0], srcs[1], "x"], "--delete -R"),
        (
            vec![srcs[0], "127.0.0.1:one.txt", "x"],
            "local and remote sources",
        ),
        (vec!["h1:a", "h2:b", "x"], "two servers"),
    ] {
        let out = run("jcp", &args);
        assert_eq!(out.status.code(), Some(2), "{what}: {out:?}");
    }
    // Several sources into an existing file: nothing is copied.
    let file = work.path().join("file");
    std::fs::write(&file, b"keep\n").unwrap();
    let out = run("jcp", &[srcs[0], srcs[1], file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep\n");
}

/// A remote wildcard is expanded by the server, as a remote shell does for
/// scp and rsync (`jcp 'host:logs/*.gz' dst`): each match is pulled, several
/// into the destination as a directory, one under the destination's name;
/// dot files only for a pattern with a dot; nothing matched, or a pattern
/// reaching outside the root, fails before anything is written.
#[test]
fn remote_wildcards_pull_each_match() {
    let keys = Keys::new();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    for (f, data) in [
        ("logs/a.gz", "a"),
        ("logs/b.gz", "b"),
        ("logs/c.txt", "c"),
        ("logs/.hidden.gz", "h"),
        ("d1/x", "x"),
        ("d2/y", "y"),
        ("gl/a[1].txt", "literal"),
        ("gl/a1.txt", "one"),
        ("gl/b[2].txt", "two"),
        ("gl/report [draft", "draft"),
    ] {
        let p = root.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    let srv = Jsrv::start(keys.path(), &root, &[]);
    let names = |d: &std::path::Path| {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };

    let many = work.path().join("many");
    ok(
        &srv.jcp(
            keys.path(),
            &["127.0.0.1:logs/*.gz", many.to_str().unwrap()],
        ),
        "pull logs/*.gz",
    );
    assert_eq!(names(&many), ["a.gz", "b.gz"]);

    let single = work.path().join("single.txt");
    ok(
        &srv.jcp(
            keys.path(),
            &["127.0.0.1:logs/c*", single.to_str().unwrap()],
        ),
        "pull logs/c*",
    );
    assert_eq!(std::fs::read(&single).unwrap(), b"c");

    let dots = work.path().join("dots");
    ok(
        &srv.jcp(
            keys.path(),
            &["127.0.0.1:logs/.*", "127.0.0.1:d?/", dots.to_str().unwrap()],
        ),
        "pull logs/.* d?/",
    );
    assert_eq!(names(&dots), [".hidden.gz", "x", "y"]);

    // A name holding wildcard characters: quoted with `\` it matches only
    // itself; unquoted, a pattern that matches nothing stands for its
    // name (as a shell passes it on, and rsync reads it).
    for (pattern, want) in [
        ("127.0.0.1:gl/a\\[1\\].txt", "literal"),
        ("127.0.0.1:gl/a[1].txt", "one"),
        ("127.0.0.1:gl/b[2].txt", "two"),
        // (Not a well-formed pattern: the name itself, as in a shell.)
        ("127.0.0.1:gl/report [draft", "draft"),
    ] {
        // (A fresh copy each time: files of one size written together may
        // share an mtime, and the quick check would take one for another.)
        let got = work.path().join("got.txt");
        let _ = std::fs::remove_file(&got);
        ok(
            &srv.jcp(keys.path(), &[pattern, got.to_str().unwrap()]),
            pattern,
        );
        assert_eq!(std::fs::read_to_string(&got).unwrap(), want, "{pattern}");
    }

    let none = work.path().join("none");
    for (pattern, says) in [
        ("127.0.0.1:logs/*.zip", "nothing on the server matches"),
        ("127.0.0.1:../*", "escapes the root"),
    ] {
        let out = srv.jcp(keys.path(), &[pattern, none.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{pattern}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{pattern}: {err}");
        assert!(!none.exists(), "{pattern} wrote something");
    }
    // --delete: matches under names of their own, as several sources;
    // not with -R.
    let deleting = work.path().join("deleting");
    let out = srv.jcp(
        keys.path(),
        &[
            "--delete",
            "127.0.0.1:logs/*.gz",
            deleting.to_str().unwrap(),
        ],
    );
    ok(&out, "--delete logs/*.gz");
    assert_eq!(names(&deleting), ["a.gz", "b.gz"]);
    let out = srv.jcp(
        keys.path(),
        &["--delete", "-R", "127.0.0.1:logs/*", none.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not each under a name of its own"));
    assert!(!none.exists());
}
