//! jcp beside rsync itself: the same options on the same trees must leave the
//! same trees behind. Each case builds a fixture (a source, and a
//! destination that is out of date in many ways), runs `rsync -aH OPTIONS
//! src/ dst/` in one copy and `jcp OPTIONS src/ dst/` in others, locally,
//! pushed to a jsrv and pulled from it (jcp's defaults are rsync's `-aH`),
//! and compares the trees (source and destination: kind, permission bits,
//! content, file mtimes, symlink targets, which names share an inode) and
//! whether each run failed. rsync's exit code 23 (some files not
//! transferred) is jcp's 3, its 1 (a usage error) jcp's 2.
//!
//! Where jcp differs from rsync on purpose (README: a file found the same
//! by hash gets no `-b` backup; `--delete -b` moves a directory in the way
//! aside; `--delete` deletes after the transfer, not during it; a missing
//! destination's parents are made), no case asks for it. Needs rsync on the
//! PATH (`.ci/run` installs it).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use jsync_tests::bins::{bin, Jsrv};

/// One entry of a tree as compared; `owner` is its user and group ids.
#[derive(Debug, PartialEq, Eq)]
enum Node {
    Dir {
        mode: u32,
        owner: (u32, u32),
    },
    /// `data`: the size and a hash of the content; `group`: the first
    /// path (in sorted order) with the same inode; `xattrs`: its `user.`
    /// extended attributes.
    File {
        mode: u32,
        mtime: i64,
        data: String,
        group: String,
        owner: (u32, u32),
        xattrs: Vec<(String, Vec<u8>)>,
    },
    Link {
        target: Vec<u8>,
        owner: (u32, u32),
    },
    /// A device or FIFO: `mode` with its type bits.
    Special {
        mode: u32,
        rdev: u64,
        owner: (u32, u32),
    },
}

/// The `user.` extended attributes of the file at `p`, sorted.
fn user_xattrs(p: &Path) -> Vec<(String, Vec<u8>)> {
    let mut names = vec![0u8; 4096];
    let n = rustix::fs::llistxattr(p, &mut names).unwrap_or(0);
    let mut out: Vec<(String, Vec<u8>)> = names[..n]
        .split(|&b| b == 0)
        .filter(|n| n.starts_with(b"user."))
        .map(|n| {
            let name = String::from_utf8_lossy(n).into_owned();
            let mut value = vec![0u8; 4096];
            let len = rustix::fs::lgetxattr(p, name.as_str(), &mut value).unwrap_or(0);
            value.truncate(len);
            (name, value)
        })
        .collect();
    out.sort();
    out
}

/// `root`'s entries by path (escaped), in order.
fn snapshot(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), String> = BTreeMap::new();
    let mut paths: Vec<std::path::PathBuf> = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                dirs.push(p.clone());
            }
            paths.push(p);
        }
    }
    paths.sort();
    for p in paths {
        let rel = p.strip_prefix(root).unwrap();
        let name = rel.as_os_str().as_bytes().escape_ascii().to_string();
        let m = fs::symlink_metadata(&p).unwrap();
        let mode = m.permissions().mode() & 0o7777;
        let owner = (m.uid(), m.gid());
        let node = if m.file_type().is_symlink() {
            Node::Link {
                target: fs::read_link(&p).unwrap().as_os_str().as_bytes().to_vec(),
                owner,
            }
        } else if m.is_dir() {
            Node::Dir { mode, owner }
        } else if !m.is_file() {
            Node::Special {
                mode: m.mode(),
                rdev: m.rdev(),
                owner,
            }
        } else {
            let group = inodes
                .entry((m.dev(), m.ino()))
                .or_insert_with(|| name.clone())
                .clone();
            let data = fs::read(&p).unwrap();
            let mut h = std::collections::hash_map::DefaultHasher::new();
            std::hash::Hash::hash(&data, &mut h);
            Node::File {
                mode,
                mtime: m.mtime(),
                data: format!(
                    "{} bytes, {:016x}",
                    data.len(),
                    std::hash::Hasher::finish(&h)
                ),
                group,
                owner,
                xattrs: user_xattrs(&p),
            }
        };
        out.insert(name, node);
    }
    out
}

fn put(path: &Path, data: &[u8], mode: u32, secs: i64) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    set_time(path, secs);
}

fn set_time(path: &Path, secs: i64) {
    let t = filetime::FileTime::from_unix_time(secs, 0);
    filetime::set_symlink_file_times(path, t, t).unwrap();
}

/// Gives every entry below `dir` (and `dir`) the time `secs`.
fn settle(dir: &Path, secs: i64) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if fs::symlink_metadata(&p).unwrap().is_dir() {
            settle(&p, secs);
        } else {
            set_time(&p, secs);
        }
    }
    set_time(dir, secs);
}

const T: i64 = 1_600_000_000;

/// Files, links of every kind, a hard-linked pair, modes, and a destination
/// with older, newer, same-content and extra entries.
fn everyday(root: &Path) {
    let (s, d) = (root.join("src"), root.join("dst"));
    for (f, data) in [
        ("a.txt", &b"alpha\n"[..]),
        ("b.o", b"obj"),
        (".hidden", b"h"),
        ("same.txt", b"same"),
        ("cache/x.tmp", b"tmp"),
        ("sub/c.txt", &[b'c'; 5000]),
        ("sub/deep/d.bin", &[7; 25_600]),
        ("exec.sh", b"#!/bin/sh\n"),
    ] {
        put(&s.join(f), data, 0o644, T);
    }
    fs::create_dir(s.join("empty")).unwrap();
    fs::set_permissions(s.join("exec.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(s.join("a.txt"), fs::Permissions::from_mode(0o640)).unwrap();
    symlink("a.txt", s.join("link")).unwrap();
    symlink("/etc/passwd", s.join("abs-link")).unwrap();
    symlink("missing", s.join("dangling")).unwrap();
    symlink("../../outside", s.join("sub/unsafe")).unwrap();
    fs::hard_link(s.join("a.txt"), s.join("hard")).unwrap();
    fs::write(root.join("list"), "a.txt\nsub\nlink\nsub/deep/d.bin\n").unwrap();
    fs::write(root.join("list2"), "sub/\ncache/.\n").unwrap();
    fs::write(root.join("list0"), "a.txt\0sub/deep\0").unwrap();
    for list in ["list", "list2", "list0"] {
        set_time(&root.join(list), T);
    }
    settle(&s, T);
    put(&d.join("a.txt"), b"old alpha\n", 0o644, T + 50_000_000);
    put(&d.join("same.txt"), b"same", 0o644, T - 100_000_000);
    put(&d.join("b.o"), b"newer here", 0o644, T + 300_000_000);
    put(&d.join("sub/c.txt"), &[b'd'; 5000], 0o644, T + 100_000_000);
    put(&d.join("extra.txt"), b"x", 0o644, T + 50_000_000);
    put(&d.join("extra.o"), b"x", 0o644, T + 50_000_000);
    put(&d.join("extra-dir/in/f"), b"f", 0o644, T + 50_000_000);
    fs::create_dir(d.join("extra-empty")).unwrap();
    put(&d.join("sub/stale.txt"), b"x", 0o644, T + 50_000_000);
    put(&d.join("cache/old.tmp"), b"x", 0o644, T + 50_000_000);
    // A --compare-dest directory whose copies differ from the source's in
    // mode, in mtime, or not at all.
    let alt = root.join("alt");
    put(&alt.join("a.txt"), b"alpha\n", 0o600, T);
    put(&alt.join("same.txt"), b"same", 0o644, T);
    put(&alt.join("b.o"), b"obj", 0o644, T + 7);
    put(&alt.join("sub/c.txt"), &[b'c'; 5000], 0o644, T);
    symlink("a.txt", alt.join("link")).unwrap();
    symlink("elsewhere", alt.join("dangling")).unwrap();
    settle(&alt, T);
    set_time(&alt.join("b.o"), T + 7);
}

/// Entries that change kind, names with odd bytes, and modes beyond 0777.
fn kinds(root: &Path) {
    let (s, d) = (root.join("src"), root.join("dst"));
    put(&s.join("was_dir"), b"now a file", 0o644, T);
    put(&d.join("was_dir/inner/f"), b"old", 0o644, T + 50_000_000);
    put(&s.join("was_empty_dir"), b"now a file", 0o644, T);
    fs::create_dir_all(d.join("was_empty_dir")).unwrap();
    put(&s.join("was_file/child"), b"child", 0o644, T);
    put(&d.join("was_file"), b"old file", 0o644, T + 50_000_000);
    symlink("target", s.join("was_plain")).unwrap();
    symlink("target", s.join("dir_to_link")).unwrap();
    put(&d.join("dir_to_link/inner"), b"old", 0o644, T + 50_000_000);
    put(&d.join("was_plain"), b"plain", 0o644, T + 50_000_000);
    put(&s.join("was_link"), b"now regular", 0o644, T);
    symlink("elsewhere", d.join("was_link")).unwrap();
    put(&s.join("with space.txt"), b"sp", 0o644, T);
    put(&s.join("new\nline"), b"nl", 0o644, T);
    put(&s.join("\u{fc}n\u{ef}.txt"), b"u", 0o644, T);
    put(
        &s.join(std::ffi::OsStr::from_bytes(b"bad\xffname")),
        b"bad",
        0o644,
        T,
    );
    put(&s.join("ro"), b"ro", 0o444, T);
    put(&s.join("setuid"), b"su", 0o4755, T);
    put(&s.join("samesize"), b"AAAA", 0o644, T + 100);
    put(&d.join("samesize"), b"BBBB", 0o644, T + 100);
    fs::create_dir_all(s.join("dir/sub")).unwrap();
    symlink("../../escape", s.join("dir/sub/up2")).unwrap();
    symlink("../was_file", s.join("dir/ok_up")).unwrap();
    symlink("dir", s.join("dirlink")).unwrap();
    settle(&s, T);
}

/// Per-directory rule files (`.rsync-filter`, `.gitignore`, `.cvsignore`)
/// and a destination with excluded and extra entries.
fn rules(root: &Path) {
    let (s, d) = (root.join("src"), root.join("dst"));
    for f in [
        "a.txt",
        "b.txt",
        "ab.c",
        "core",
        "x.o",
        ".hid",
        "sub/c.txt",
        "sub/d.o",
        "sub/deep/e.txt",
        "sub/deep/f.bin",
        "other/g.txt",
        "other/CVS/Entries",
        "other/i.tmp",
        "log/1.log",
        "log/keep.log",
    ] {
        put(&s.join(f), f.as_bytes(), 0o644, T);
    }
    put(&s.join(".rsync-filter"), b"- *.bin\n", 0o644, T);
    put(&s.join("sub/.rsync-filter"), b"- c.txt\n", 0o644, T);
    put(&s.join("sub/deep/.gitignore"), b"e.txt\n", 0o644, T);
    put(&s.join("other/.cvsignore"), b"*.tmp\n", 0o644, T);
    // Rules whose lines end with NUL (-0).
    put(
        &s.join("log/.nul-rules"),
        b"- 1.log\0+ keep.log\0- *\0",
        0o644,
        T,
    );
    fs::write(root.join("nul"), "- *.o\0+ sub/\0- ab.c\0").unwrap();
    set_time(&root.join("nul"), T);
    settle(&s, T);
    for f in [
        "extra.txt",
        "x.o",
        "sub/extra.o",
        "sub/deep/old.bin",
        "log/old.log",
        "other/i.tmp",
        "zz/keep.me",
    ] {
        put(&d.join(f), b"old", 0o644, T + 50_000_000);
    }
}

/// A file with two `user.` attributes, whose copy in the destination has
/// another (for rules on attribute names).
fn xattrs(root: &Path) {
    use rustix::fs::XattrFlags;
    let (s, d) = (root.join("src"), root.join("dst"));
    put(&s.join("xa"), b"xattr", 0o644, T);
    for (name, value) in [("user.test", &b"value"[..]), ("user.other", b"v2")] {
        rustix::fs::setxattr(s.join("xa"), name, value, XattrFlags::empty()).unwrap();
    }
    put(&s.join("plain"), b"p", 0o644, T);
    settle(&s, T);
    put(&d.join("xa"), b"xattr", 0o644, T);
    rustix::fs::setxattr(d.join("xa"), "user.stale", b"old", XattrFlags::empty()).unwrap();
}

/// Owners and groups other than the tester's, a setgid file, devices, a
/// FIFO and extended attributes (as root).
fn owners(root: &Path) {
    use rustix::fs::{makedev, mknodat, FileType, Mode, XattrFlags, CWD};
    let (s, d) = (root.join("src"), root.join("dst"));
    let own = |p: &Path, uid: u32, gid: u32| {
        std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
    };
    put(&s.join("mine"), b"m", 0o644, T);
    put(&s.join("theirs"), b"t", 0o644, T);
    own(&s.join("theirs"), 1234, 4321);
    put(&s.join("sgid"), b"s", 0o644, T);
    own(&s.join("sgid"), 1234, 4321);
    fs::set_permissions(s.join("sgid"), fs::Permissions::from_mode(0o2755)).unwrap();
    put(&s.join("daemon"), b"d", 0o644, T);
    own(&s.join("daemon"), 1, 1);
    fs::create_dir(s.join("dir")).unwrap();
    own(&s.join("dir"), 1234, 1234);
    symlink("mine", s.join("link")).unwrap();
    own(&s.join("link"), 1234, 4321);
    mknodat(
        CWD,
        s.join("fifo"),
        FileType::Fifo,
        Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    own(&s.join("fifo"), 1234, 0);
    let (kind, null) = (FileType::CharacterDevice, makedev(1, 3));
    mknodat(CWD, s.join("null"), kind, Mode::from_raw_mode(0o666), null).unwrap();
    put(&s.join("xa"), b"xattr", 0o644, T);
    for (name, value) in [("user.test", &b"value"[..]), ("user.other", b"v2")] {
        rustix::fs::setxattr(s.join("xa"), name, value, XattrFlags::empty()).unwrap();
    }
    settle(&s, T);
    put(&d.join("xa"), b"xattr", 0o644, T);
    rustix::fs::setxattr(d.join("xa"), "user.stale", b"old", XattrFlags::empty()).unwrap();
    put(&d.join("theirs"), b"t", 0o644, T);
}

/// How jcp is run beside rsync's local copy: locally, pushed to a jsrv
/// serving the fixture's parent, or pulled from it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Way {
    Local,
    Push,
    Pull,
}

/// What a run left: its exit code (rsync's 23 as jcp's 3), the whole
/// fixture's tree (source, destination, backups, lists), and its stderr.
type Outcome = (Option<i32>, BTreeMap<String, Node>, String);

/// Runs `cmd` in `root` (which holds src/ and dst/) and takes its outcome.
fn outcome(mut cmd: Command, root: &Path, what: &str) -> Outcome {
    let out = cmd
        .current_dir(root)
        .env("HOME", root)
        .env_remove("CVSIGNORE")
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e} (rsync must be installed: .ci/run does)"));
    // (rsync's 23, some files not transferred, is jcp's 3; its 1, a
    // syntax or usage error, jcp's 2.)
    let code = match out.status.code() {
        Some(23) => Some(3),
        Some(1) if what == "rsync" => Some(2),
        c => c,
    };
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (code, snapshot(root), stderr)
}

/// What differs between rsync's outcome and jcp's.
fn differences(r: &Outcome, j: &Outcome) -> Vec<String> {
    let mut diffs = Vec::new();
    if r.0 != j.0 {
        diffs.push(format!(
            "exit: rsync {:?}, jcp {:?}\n  rsync: {}\n  jcp: {}",
            r.0, j.0, r.2, j.2
        ));
    }
    let (a, b) = (&r.1, &j.1);
    for k in a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))) {
        if a.get(k) != b.get(k) {
            diffs.push(format!("{k}: rsync {:?}, jcp {:?}", a.get(k), b.get(k)));
        }
    }
    diffs
}

/// A jsrv serving a directory that fixtures are made in, and the keys.
struct Server {
    keys: jsync_tests::Keys,
    root: tempfile::TempDir,
    srv: Jsrv,
}

impl Server {
    fn new() -> Server {
        let keys = jsync_tests::Keys::new();
        let root = tempfile::tempdir().unwrap();
        let srv = Jsrv::start(keys.path(), root.path(), &[]);
        Server { keys, root, srv }
    }
}

/// Runs `opts` with rsync and with jcp (each of `ways`) on fresh copies of
/// `fixture`; returns what differs (nothing when they agree). `{list}`,
/// `{list2}`, `{list0}` and `{nul}` in an option stand for the fixture's
/// list and rule files. Options starting with `@` are the operands
/// (`src/ dst/` unless given; the last is the destination).
fn compare(server: &Server, fixture: fn(&Path), opts: &[&str], ways: &[Way]) -> Vec<String> {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("rsync");
    fixture(&root);
    let (operands, opts): (Vec<&str>, Vec<&str>) = opts.iter().partition(|o| o.starts_with('@'));
    let mut operands: Vec<&str> = operands.iter().map(|o| &o[1..]).collect();
    if operands.is_empty() {
        operands = vec!["src/", "dst/"];
    }
    let (dst_operand, src_operands) = operands.split_last().unwrap();
    let args = |root: &Path| -> Vec<String> {
        let files = ["list", "list2", "list0", "nul"];
        opts.iter()
            .map(|o| {
                files.iter().fold(o.to_string(), |o, name| {
                    o.replace(
                        &format!("{{{name}}}"),
                        &root.join(name).display().to_string(),
                    )
                })
            })
            .collect()
    };
    // (rsync 3.5.0 hangs on --no-links --existing --min-size=100 here, a
    // run jcp does in a moment.)
    let mut rsync = Command::new("timeout");
    rsync
        .args(["30", "rsync", "-aH"])
        .args(args(&root))
        .args(&operands);
    let want = outcome(rsync, &root, "rsync");
    let mut diffs = Vec::new();
    for &way in ways {
        let name = format!("{way:?}");
        let root = server.root.path().join(&name);
        let _ = fs::remove_dir_all(&root);
        fixture(&root);
        let remote = |p: &str| format!("127.0.0.1:{name}/{p}");
        let (srcs, dst): (Vec<String>, String) = match way {
            Way::Local => (
                src_operands.iter().map(|s| s.to_string()).collect(),
                dst_operand.to_string(),
            ),
            Way::Push => (
                src_operands.iter().map(|s| s.to_string()).collect(),
                remote(dst_operand),
            ),
            Way::Pull => (
                src_operands.iter().map(|s| remote(s)).collect(),
                dst_operand.to_string(),
            ),
        };
        let mut jcp = Command::new(bin("jcp"));
        jcp.arg("--config-dir").arg(server.keys.path());
        jcp.args(["--port", &server.srv.port.to_string()]);
        jcp.args(args(&root)).args(srcs).arg(dst);
        let got = outcome(jcp, &root, "jcp");
        diffs.extend(
            differences(&want, &got)
                .into_iter()
                .map(|d| format!("{name}: {d}")),
        );
    }
    diffs
}

/// Every case of `cases` on `fixture`, jcp locally, pushed and pulled
/// (`local_only`: locally alone); fails naming each that differs.
fn agree(fixture: fn(&Path), cases: &[&[&str]], local_only: &[&[&str]]) {
    let server = Server::new();
    let mut failed = Vec::new();
    let all = [Way::Local, Way::Push, Way::Pull];
    let runs = cases.iter().map(|c| (c, &all[..]));
    for (opts, ways) in runs.chain(local_only.iter().map(|c| (c, &all[..1]))) {
        let diffs = compare(&server, fixture, opts, ways);
        if !diffs.is_empty() {
            failed.push(format!("jcp {}:\n  {}", opts.join(" "), diffs.join("\n  ")));
        }
    }
    // (Written for rsync 3.5; another version is named in the failure.)
    let version = Command::new("rsync").arg("--version").output();
    let version = version.map_or_else(
        |e| format!("rsync (which did not run: {e})"),
        |o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("rsync")
                .to_owned()
        },
    );
    assert!(
        failed.is_empty(),
        "jcp and {version} differ:\n{}",
        failed.join("\n")
    );
}

#[test]
fn everyday_options_leave_what_rsync_leaves() {
    agree(
        everyday,
        &[
            &[],
            &["--delete"],
            &["--delete-excluded", "--exclude=*.o"],
            &["--delete", "--exclude=cache/"],
            &["--delete", "--max-delete=0"],
            // (A deleted directory goes entry by entry, counted and backed
            // up each.)
            &["--delete", "--max-delete=2"],
            &["--delete", "-b", "-c"],
            &["--delete", "--backup-dir=../bk", "-c"],
            // (What outranks what, and what does nothing alone.)
            &["-c", "--size-only"],
            &["-I", "--size-only"],
            &["--ignore-errors", "--max-delete=1", "--suffix=.x"],
            &["-0", "--files-from={list0}"],
            // Several sources under names of their own, with --delete
            // (and --max-delete counting across them, given in name order).
            &["--delete", "@src/cache", "@src/sub", "@src/a.txt", "@dst/"],
            &[
                "--delete",
                "--max-delete=1",
                "@src/cache",
                "@src/sub",
                "@dst/",
            ],
            &["--delete", "-b", "@src/sub", "@src/empty", "@dst"],
            &["-u"],
            &["--existing"],
            &["--ignore-existing"],
            &["--size-only"],
            &["-c"],
            &["-I"],
            &["--include=*/", "--include=*.txt", "--exclude=*"],
            &["-m", "--include=*/", "--include=*.bin", "--exclude=*"],
            &["--safe-links"],
            &["--no-links"],
            // (-c: a file found the same by its hash, whatever its mtime,
            // gets no backup from jcp; rsync's quick check would make one.)
            &["--backup-dir=../bk", "-c"],
            &["--chmod=F600,D700"],
            &["--no-perms"],
            &["-E", "--no-perms"],
            &["-O"],
            &["--remove-source-files", "--exclude=*.o"],
            &["--files-from={list}"],
            &["-r", "--files-from={list}"],
            &["--files-from={list}", "--no-R"],
            &["--files-from={list}", "--no-relative", "-r"],
            &["--files-from={list2}", "--no-R"],
            &["--files-from={list2}", "--no-R", "-r"],
            &["--files-from={list2}", "-r"],
            &["--min-size=100"],
            &["--max-size=100", "--delete"],
            &["--copy-dest=../src"],
            &["--link-dest=../src"],
            &["--link-dest=../alt"],
            &["--compare-dest=../src"],
            &["--compare-dest=../src", "--size-only"],
            &["--compare-dest=../src", "-n"],
            &["--compare-dest=../alt"],
            &["--compare-dest=../alt", "--size-only"],
            &["--compare-dest=../alt", "-n"],
            &["--compare-dest=../alt", "--remove-source-files"],
            &["--prune-empty-dirs"],
            &["--ignore-missing-args"],
        ],
        // (A server follows no link out of its root: pulled, abs-link to
        // /etc/passwd is not copied.)
        &[&["-L"], &["--copy-unsafe-links"]],
    );
}

#[test]
fn changes_of_kind_and_odd_names_leave_what_rsync_leaves() {
    agree(
        kinds,
        &[
            &[],
            &["-n"],
            &["-n", "--force"],
            &["--force"],
            &["--delete"],
            &["-b"],
            &["-u"],
            &["--existing"],
            &["-c"],
            &["--size-only"],
            &["--safe-links", "--force"],
            &["--copy-unsafe-links", "--force"],
            &["-L", "--force"],
            &["-k", "--force"],
            &["-K", "--force"],
            &["--copy-dirlinks", "--force"],
            &["--chmod=D2775,F664", "--force"],
            &["--omit-dir-times", "--force"],
        ],
        &[],
    );
}

#[test]
fn filter_rules_leave_what_rsync_leaves() {
    agree(
        rules,
        &[
            &["--exclude=*/"],
            &["--exclude=/sub/deep"],
            &["--exclude=sub/*.txt"],
            &["--exclude=**/e.txt"],
            &["--exclude=[ab].*"],
            &["--exclude=sub/**"],
            &["--exclude=sub/***"],
            &["--filter=+ /sub/", "--filter=- /*"],
            &["--filter=+ /sub/***", "--filter=- /*"],
            &["-F"],
            &["-FF"],
            &["-F", "--delete-after"],
            &["-FF", "--delete"],
            &["--filter=:- .gitignore"],
            &["-0", "--filter=: .nul-rules"],
            &["-0", "--exclude-from={nul}"],
            &["-0", "--filter=merge {nul}", "--delete"],
            &["--filter=dir-merge .rsync-filter"],
            &["--delete", "--filter=R x.o"],
            &["--delete", "--filter=P *.o"],
            &["--delete", "--filter=H *.o"],
            &["--delete", "--filter=S *.o", "--exclude=*.o"],
            &["--delete", "--exclude=*.o", "--delete-excluded"],
            &["--exclude=.*"],
            &["--include=a*", "--exclude=*"],
            &["-C"],
            &["-C", "--delete-before"],
            &["--delete-before", "--delete-after"],
            &["--delete", "--exclude=log/", "--include=log/keep.log"],
            &["--include=log/", "--include=log/keep.log", "--exclude=*"],
            &[
                "--delete",
                "-m",
                "--include=*/",
                "--include=*.log",
                "--exclude=*",
            ],
            &["--exclude=/core"],
            &["--exclude=sub/deep/"],
            &["--exclude=*deep*"],
            &["--exclude=?.txt"],
            &["--delete", "--filter=-! *.txt"],
            &["--filter=- *.txt", "--filter=+ a.txt"],
            // `/`: matched against the whole path, the directories above
            // the transfer too (each side's own: the source's, the
            // destination's).
            &["--filter=-/ src/a.txt"],
            &["--filter=-/ src/sub/*.txt", "--filter=-/ *.o"],
            &["--filter=-/ src/a.txt", "@src", "@dst/"],
            &["--filter=-/ src/src/a.txt", "@src", "@dst/"],
            &["--delete", "--filter=P/ dst/extra.txt"],
            &["--delete", "--filter=-/ dst/sub/extra.o"],
            &["--delete", "--filter=-/r dst/zz/", "--filter=-/ src/core"],
        ],
        &[],
    );
}

/// Rules for attribute names (`x`): what is sent, set and removed, each
/// side by its own rules (`user.` attributes: any user may).
#[test]
fn xattr_rules_leave_what_rsync_leaves() {
    agree(
        xattrs,
        &[
            &["-X"],
            &["-X", "--filter=-x user.other"],
            &["-X", "--filter=-x user.stale"],
            &["-X", "--filter=-xr user.stale"],
            &["-X", "--filter=-xs user.stale", "--filter=-xs user.test"],
            &["-X", "--filter=-xs user.stale", "--filter=-xr user.none"],
            &["-X", "--filter=-x! user.t*"],
            &["-X", "--filter=+x user.test", "--filter=-x *"],
            &["-X", "--delete-excluded", "--filter=-x user.stale"],
            &["-X", "--filter=protect,x user.stale"],
            &["--filter=-x user.other"],
        ],
        &[],
    );
}

#[test]
fn owners_devices_and_xattrs_leave_what_rsync_leaves() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("not root: owners and devices cannot be made; skipping");
        return;
    }
    agree(
        owners,
        &[
            &[],
            &["--no-o"],
            &["--no-g"],
            &["--chown=5:6"],
            &["--chown=:7"],
            &["--usermap=1234:999"],
            &["--groupmap=4321:888"],
            &["--numeric-ids"],
            &["-X"],
            &["-X", "--delete"],
            &["--no-D"],
            &["--no-specials"],
            &["--no-devices"],
            &["--chmod=g-s"],
        ],
        &[],
    );
}

/// Random sets of one to three options from a pool, on the everyday,
/// filter-rule and kind-changing fixtures, each way in turn: rsync's
/// outcome against jcp's.
/// Long, so not in the default run: `JSYNC_COMBOS=N` sets how many (200
/// unless told), `JSYNC_COMBO_SEED` where they start (the clock unless
/// told, printed on failure). Pairs known to differ on purpose (README)
/// are not drawn together.
#[test]
#[ignore = "long: random option sets against rsync (JSYNC_COMBOS)"]
fn random_option_sets_leave_what_rsync_leaves() {
    let n: usize = std::env::var("JSYNC_COMBOS").map_or(200, |v| v.parse().unwrap());
    let seed: u64 = std::env::var("JSYNC_COMBO_SEED").map_or_else(
        |_| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        },
        |v| v.parse().unwrap(),
    );
    let pool: &[&[&str]] = &[
        &["--delete"],
        &["--delete-excluded", "--exclude=*.o"],
        &["--delete-before"],
        &["-u"],
        &["--existing"],
        &["--ignore-existing"],
        &["--size-only"],
        &["-c"],
        &["-I"],
        &["-b", "-c"],
        &["--backup-dir=../bk", "-c"],
        &["--safe-links"],
        &["--no-links"],
        &["--chmod=F600,D700"],
        &["--chmod=g-s,o+w"],
        &["--no-perms"],
        &["-E"],
        &["-O"],
        &["-J"],
        &["-m"],
        &["--min-size=100"],
        &["--max-size=100"],
        &["--copy-dest=../alt"],
        &["--link-dest=../alt"],
        &["--compare-dest=../alt"],
        &["-n"],
        &["--remove-source-files"],
        &["--force"],
        &["-W"],
        &["--delay-updates"],
        &["--max-delete=1"],
        &["--exclude=sub/"],
        &["--exclude=*.txt"],
        &["--include=*/", "--include=*.txt", "--exclude=*"],
        &["-F"],
        &["--no-o", "--no-g"],
        &["--numeric-ids"],
        &["--modify-window=1"],
        &["-y"],
        &["-S"],
        &["--ignore-errors"],
        &["-k"],
        &["-K"],
        &["--delete-after"],
        &["-x"],
        &["--omit-dir-times"],
        &["--prune-empty-dirs"],
        &["--chmod=D2775,F664"],
        &["--chmod=u+x"],
        &["--whole-file"],
        &["-z"],
        &["--exclude=.*"],
        &["--filter=P extra*"],
        &["--filter=R *.o", "--delete-excluded"],
        &["-FF"],
        &["-C"],
        &["--ignore-missing-args"],
        &["--no-H"],
        &["--keep-dirlinks"],
        &["-i"],
        &["--filter=-/ src/sub/*"],
        &["--filter=P/ dst/extra*"],
        &["--filter=-/ *.o"],
    ];
    // (Documented differences: -b's backups of files the same by hash
    // (-b is drawn with -c); -c with a --*-dest DIR for
    // files the destination has; --remove-source-files with a --*-dest
    // DIR's symlinks, and with -k a usage error; --chmod's directory modes
    // and the directories --backup-dir makes (jcp gives a directory its
    // mode at the end, and the backup directory mirrors it before). rsync
    // 3.5.0 fails --compare-dest with --chmod or -z on -H's links
    // ("File-list index not in", or a hang; with --no-perms too), and
    // hangs on --existing with --min-size here. With -y and --no-perms
    // rsync gives a new file the mode of its fuzzy basis, not the
    // source's less the umask (its documented rule, which jcp follows). --delete deletes after the transfer (rsync's during),
    // so a per-directory rule file the run brings counts for it (-C, -F).
    // On the kinds fixture --ignore-existing leaves a file where the source
    // has a directory, and all the directory holds, alone (rsync sets the
    // file's time from the directory and fails on each entry beneath it),
    // -b with --delete moves a directory in the way aside whole, and
    // --max-delete keeps a directory in the way of a file whole where it
    // holds more than the limit leaves (rsync deletes up to the limit
    // first; both then fail "could not make way").
    // Not drawn: --no-t, which
    // leaves a file the same by hash untouched where rsync rewrites it,
    // and -d, which jcp takes without -a's -r, as rsync's -d alone.)
    let apart = |a: &str, b: &str| {
        let dest = |o: &str| o.ends_with("-dest=../alt");
        let has = |x: &str, y: &str| {
            (a.starts_with(x) && b.starts_with(y)) || (a.starts_with(y) && b.starts_with(x))
        };
        (dest(a) && dest(b))
            || (has("-c", "--") && (dest(a) || dest(b)))
            || (has("-b", "--") && (dest(a) || dest(b)))
            || (has("--backup-dir", "--") && (dest(a) || dest(b)))
            || (has("--remove-source-files", "--") && (dest(a) || dest(b)))
            || has("--remove-source-files", "-k")
            || (has("--chmod", "--") && (dest(a) || dest(b)))
            || (has("-z", "--") && (dest(a) || dest(b)))
            || (has("--no-perms", "--") && (dest(a) || dest(b)))
            || has("-y", "--no-perms")
            || has("--existing", "--min-size")
            || has("--chmod", "-b")
            || has("--chmod", "--backup-dir")
            || has("-C", "--delete")
            || has("-F", "--delete")
    };
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = |m: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % m as u64) as usize
    };
    let server = Server::new();
    let ways = [Way::Local, Way::Push, Way::Pull];
    let mut failed = Vec::new();
    for i in 0..n {
        let mut picked: Vec<&[&str]> = Vec::new();
        for _ in 0..1 + next(3) {
            let p = pool[next(pool.len())];
            let clash = picked
                .iter()
                .any(|q| q == &p || q.iter().any(|a| p.iter().any(|b| apart(a, b))));
            if !clash {
                picked.push(p);
            }
        }
        let opts: Vec<&str> = picked.concat();
        let (fixture, name): (fn(&Path), _) = match i % 3 {
            0 => (everyday, "everyday"),
            1 => (rules, "rules"),
            _ if opts.contains(&"--ignore-existing") => continue,
            _ if opts.iter().any(|o| o.starts_with("--max-delete")) => continue,
            _ if opts
                .iter()
                .any(|o| o.starts_with("-b") || o.starts_with("--backup-dir"))
                && opts.iter().any(|o| o.starts_with("--delete")) =>
            {
                continue
            }
            _ => (kinds, "kinds"),
        };
        let way = ways[(i / 3) % 3];
        let diffs = compare(&server, fixture, &opts, &[way]);
        if !diffs.is_empty() {
            failed.push(format!(
                "jcp {} ({way:?}, {name}):\n  {}",
                opts.join(" "),
                diffs.join("\n  ")
            ));
        }
    }
    assert!(
        failed.is_empty(),
        "seed {seed}: {} of {n} option sets differ from rsync:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

/// One option set, to look into what the random sets found:
/// `JSYNC_CASE='-c --delete' JSYNC_FIXTURE=rules cargo test -p jsync-tests
/// --test against_rsync one_case -- --ignored` (each way; `everyday`
/// unless told).
#[test]
#[ignore = "by hand: JSYNC_CASE"]
fn one_case() {
    let case = std::env::var("JSYNC_CASE").expect("JSYNC_CASE");
    let fixture: fn(&Path) = match std::env::var("JSYNC_FIXTURE").as_deref() {
        Ok("rules") => rules,
        Ok("kinds") => kinds,
        _ => everyday,
    };
    let opts: Vec<&str> = case.split_whitespace().collect();
    let diffs = compare(
        &Server::new(),
        fixture,
        &opts,
        &[Way::Local, Way::Push, Way::Pull],
    );
    assert!(diffs.is_empty(), "jcp {case}:\n  {}", diffs.join("\n  "));
}
