//! rsync-grade fidelity of `jcp` and `jsrv`, driving the real binaries: seeded
//! random trees (hard links, holes, `user.*` xattrs, odd names, setuid bits)
//! round-tripped locally and pushed and pulled over TLS and QUIC, then edited on
//! both sides and synced again; dry runs that touch nothing (ctime included);
//! `-i` lines; include/exclude rules under `--delete`; hard links; sparse files;
//! xattrs; FIFOs, devices and sockets; odd names; files that vanish or change
//! while a transfer is under way; resuming an interrupted file; owners.
//!
//! The random cases print their seed; `JSYNC_SEED=N cargo test -p jsync-tests
//! --test fidelity NAME` replays one. `JSYNC_SEEDS=N cargo test -p jsync-tests
//! --test fidelity -- --ignored` runs N seeds locally (2000 by default).
//!
//! These tests run as root (owners, devices); the ones that need it say so and
//! return early otherwise.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use filetime::FileTime;
use jsync_tests::bins::{assert_ok, bin, describe, run, stat, succeeded, Jsrv};
use jsync_tests::meta::{assert_untouched, metadata_with_ctime, temp_leftovers};
use jsync_tests::randtree::{
    self, build, edit, full, run_seeds, same, show, snapshot, sparse_ok, Features, Rng, Snapshot,
};
use jsync_tests::{pseudo_random, Keys, Relay};

const MIB: u64 = 1 << 20;

// ---------------------------------------------------------------------------
// Where a test's trees live and how jcp is run on them

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Net {
    Tls,
    Quic,
}

/// Which way a sync goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    /// `jcp src/ dst`, no daemon.
    Local,
    /// `jcp src/ 127.0.0.1:name` to a jsrv.
    Push(Net),
    /// `jcp 127.0.0.1:name/ dst` from a jsrv.
    Pull(Net),
}

/// One test's world: a work directory and, for remote ways, fresh keys and one
/// jsrv serving `work/root`, shared by every case of the test. (Fields drop in
/// order: the server stops before its root is removed.)
struct World {
    srv: Option<Jsrv>,
    keys: Option<Keys>,
    work: tempfile::TempDir,
    way: Way,
}

/// One case's source and destination, and how jcp names them.
#[derive(Debug, Clone)]
struct Pair {
    src: PathBuf,
    dst: PathBuf,
    src_arg: String,
    dst_arg: String,
    /// What to remove when the case is done.
    dirs: Vec<PathBuf>,
}

impl World {
    fn new(way: Way) -> World {
        let work = tempfile::tempdir().unwrap();
        fs::create_dir_all(work.path().join("root")).unwrap();
        fs::create_dir_all(work.path().join("cases")).unwrap();
        let (keys, srv) = if way == Way::Local {
            (None, None)
        } else {
            let keys = Keys::new();
            let srv = Jsrv::start(keys.path(), &work.path().join("root"), &[]);
            (Some(keys), Some(srv))
        };
        World {
            srv,
            keys,
            work,
            way,
        }
    }

    /// The server's root (unused locally).
    fn root(&self) -> PathBuf {
        self.work.path().join("root")
    }

    /// A fresh source and destination for the case `name` (neither created).
    fn pair(&self, name: &str) -> Pair {
        let local = self.work.path().join("cases").join(name);
        let remote = self.root().join(name);
        let slash = |p: &Path| format!("{}/", p.display());
        match self.way {
            Way::Local => Pair {
                src: local.join("src"),
                dst: local.join("dst"),
                src_arg: slash(&local.join("src")),
                dst_arg: local.join("dst").display().to_string(),
                dirs: vec![local],
            },
            Way::Push(_) => Pair {
                src: local.join("src"),
                dst: remote.clone(),
                src_arg: slash(&local.join("src")),
                dst_arg: format!("127.0.0.1:{name}"),
                dirs: vec![local, remote],
            },
            Way::Pull(_) => Pair {
                src: remote.clone(),
                dst: local.join("dst"),
                src_arg: format!("127.0.0.1:{name}/"),
                dst_arg: local.join("dst").display().to_string(),
                dirs: vec![local, remote],
            },
        }
    }

    /// `jcp ARGS`, with the port, keys and transport of this world.
    fn jcp(&self, args: &[&str]) -> Output {
        match (self.way, &self.srv, &self.keys) {
            (Way::Push(net) | Way::Pull(net), Some(srv), Some(keys)) => {
                let mut all: Vec<&str> = Vec::new();
                if net == Net::Quic {
                    all.push("--quic");
                }
                all.extend_from_slice(args);
                srv.jcp(keys.path(), &all)
            }
            _ => run("jcp", args),
        }
    }

    /// `jcp OPTS SRC DST` for a pair.
    fn sync(&self, p: &Pair, opts: &[&str]) -> Output {
        let mut args: Vec<&str> = opts.to_vec();
        args.push(&p.src_arg);
        args.push(&p.dst_arg);
        self.jcp(&args)
    }

    fn remove(&self, p: &Pair) {
        for d in &p.dirs {
            let _ = fs::remove_dir_all(d);
        }
    }
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Writes a file (and its parents) with a mode and an mtime of `secs`.
fn put(path: &Path, data: &[u8], mode: u32, secs: i64) {
    if let Some(d) = path.parent() {
        fs::create_dir_all(d).unwrap();
    }
    fs::write(path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    set_mtime(path, secs);
}

fn set_mtime(path: &Path, secs: i64) {
    let t = FileTime::from_unix_time(secs, 123_456_789);
    filetime::set_symlink_file_times(path, t, t).unwrap();
}

fn lstat(p: &Path) -> fs::Metadata {
    fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn exists(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok()
}

fn stdout_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The `-i` lines of an output (`YXcstpoguax PATH` and `*deleting   PATH`),
/// leaving out anything else, such as `--stats`.
fn itemized(out: &Output) -> Vec<String> {
    stdout_lines(out)
        .into_iter()
        .filter(|l| {
            let b = l.as_bytes();
            l.starts_with("*deleting")
                || (b.len() > 12
                    && b[11] == b' '
                    && b".>ch".contains(&b[0])
                    && b"fdLDS".contains(&b[1]))
        })
        .collect()
}

fn expect_line(out: &Output, want: &str) {
    assert!(
        stdout_lines(out).iter().any(|l| l == want),
        "no line {want:?} in the output: {}",
        describe(out)
    );
}

/// The one itemized line about `path` (`YXcstpoguax PATH`).
fn line_about(out: &Output, path: &str) -> String {
    let found: Vec<String> = stdout_lines(out)
        .into_iter()
        .filter(|l| l.get(12..) == Some(path) && !l.starts_with("*deleting"))
        .collect();
    assert_eq!(found.len(), 1, "lines about {path:?}: {}", describe(out));
    found.into_iter().next().unwrap()
}

fn same_tree(src: &Path, dst: &Path, f: &Features) {
    if let Err(e) = same(&snapshot(src, f), &snapshot(dst, f)) {
        panic!("{} and {} differ:\n{e}", src.display(), dst.display());
    }
}

/// Files, directories and symlinks plus hard-link groups.
fn with_hardlinks() -> Features {
    Features {
        hardlinks: true,
        ..Features::basic()
    }
}

fn with_xattrs() -> Features {
    Features {
        xattrs: true,
        ..Features::basic()
    }
}

// ---------------------------------------------------------------------------
// 1. Random trees

/// Salt for the seed of the destination's own edits.
const DST_EDIT_SALT: u64 = 0x6473_745f_6564_6974;

/// `actual` cut down to the paths `expected` has (and its hard-link groups to
/// those names), for a sync without `--delete` into a destination that holds
/// entries of its own.
fn only_source_paths(actual: Snapshot, expected: &Snapshot) -> Snapshot {
    let mut s = actual;
    s.entries.retain(|p, _| expected.entries.contains_key(p));
    s.hardlinks = s
        .hardlinks
        .into_iter()
        .map(|g| {
            g.into_iter()
                .filter(|n| expected.entries.contains_key(n))
                .collect::<Vec<_>>()
        })
        .filter(|g| g.len() > 1)
        .collect();
    s.hardlinks.sort();
    s
}

/// Everything a sync must have achieved: the same snapshot (only for the
/// source's paths when `extra_allowed`), holes kept, no temp files left.
fn check_copy(src: &Path, dst: &Path, f: &Features, extra_allowed: bool) -> Result<(), String> {
    let want = snapshot(src, f);
    let mut got = snapshot(dst, f);
    if extra_allowed {
        got = only_source_paths(got, &want);
    }
    let mut problems = Vec::new();
    if let Err(e) = same(&want, &got) {
        problems.push(e);
    }
    problems.extend(sparse_ok(src, dst));
    let left = temp_leftovers(dst);
    if !left.is_empty() {
        let names: Vec<String> = left.iter().map(|p| show(p)).collect();
        problems.push(format!("temp files left behind: {}", names.join(", ")));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// Builds the tree of `seed`, syncs it into an empty destination, edits the
/// source (and for some seeds the destination), syncs again; compares after
/// each sync. With `delete` the destination must end up the same as the source;
/// without, every source path must be right.
fn round_trip(w: &World, seed: u64, delete: bool) -> Result<(), String> {
    let p = w.pair(&format!("seed-{seed}"));
    let r = round_trip_in(w, &p, seed, delete);
    w.remove(&p);
    r
}

fn round_trip_in(w: &World, p: &Pair, seed: u64, delete: bool) -> Result<(), String> {
    let f = Features::all();
    let mut story = build(&p.src, seed, &f);
    let mut opts = vec!["-X"];
    // (Without --delete, --force lets a file take the place of a directory
    // that holds something, as rsync needs it to.)
    opts.push(if delete { "--delete" } else { "--force" });
    let told = |what: String, story: &[String]| {
        format!(
            "{what}\n--- jcp {} ({:?}); the case:\n{}",
            opts.join(" "),
            w.way,
            story.join("\n")
        )
    };

    let out = w.sync(p, &opts);
    succeeded(&out, "the first sync").map_err(|e| told(e, &story))?;
    check_copy(&p.src, &p.dst, &f, false)
        .map_err(|e| told(format!("after the first sync:\n{e}"), &story))?;

    let mut rng = Rng::new(seed ^ 0x5eed);
    let n = rng.range(1, 13) as usize;
    story.extend(
        edit(&p.src, seed, &f, n)
            .into_iter()
            .map(|e| format!("source edit: {e}")),
    );
    let dst_edited = rng.chance(40);
    if dst_edited {
        let n = rng.range(1, 8) as usize;
        story.extend(
            edit(&p.dst, seed ^ DST_EDIT_SALT, &f, n)
                .into_iter()
                .map(|e| format!("destination edit: {e}")),
        );
    }
    let out = w.sync(p, &opts);
    succeeded(&out, "the second sync").map_err(|e| told(e, &story))?;
    // Without --delete, entries the source no longer has stay behind.
    check_copy(&p.src, &p.dst, &f, !delete)
        .map_err(|e| told(format!("after the edits and a second sync:\n{e}"), &story))
}

#[test]
fn random_trees_round_trip_locally_with_delete() {
    let w = World::new(Way::Local);
    run_seeds(0..100, |seed| round_trip(&w, seed, true));
}

#[test]
fn random_trees_round_trip_locally_without_delete() {
    let w = World::new(Way::Local);
    run_seeds(100..200, |seed| round_trip(&w, seed, false));
}

/// 50 seeds one way over the network, half of them with `--delete`.
fn remote_round_trips(way: Way, first: u64) {
    let w = World::new(way);
    run_seeds(first..first + 50, |seed| {
        round_trip(&w, seed, seed % 2 == 0)
    });
}

#[test]
fn random_trees_push_over_tls() {
    remote_round_trips(Way::Push(Net::Tls), 1000);
}

#[test]
fn random_trees_pull_over_tls() {
    remote_round_trips(Way::Pull(Net::Tls), 2000);
}

#[test]
fn random_trees_push_over_quic() {
    remote_round_trips(Way::Push(Net::Quic), 3000);
}

#[test]
fn random_trees_pull_over_quic() {
    remote_round_trips(Way::Pull(Net::Quic), 4000);
}

/// Thousands of seeds locally (`JSYNC_SEEDS`, 2000 by default), half with
/// `--delete`: run on purpose, with `-- --ignored`.
#[test]
#[ignore = "minutes long; run with -- --ignored (JSYNC_SEEDS=N to choose how many)"]
fn random_trees_round_trip_locally_thousands_of_seeds() {
    let n: u64 = std::env::var("JSYNC_SEEDS")
        .ok()
        .map(|s| s.trim().parse().expect("JSYNC_SEEDS: a number"))
        .unwrap_or(2000);
    let w = World::new(Way::Local);
    run_seeds(100_000..100_000 + n, |seed| {
        round_trip(&w, seed, seed % 2 == 0)
    });
}

/// A tree that is up to date is left alone: no file moves and nothing in the
/// destination (or the source) is rewritten, chmodded or touched (ctime).
fn second_run_is_a_no_op(way: Way, seeds: std::ops::Range<u64>) {
    let w = World::new(way);
    let f = Features::all();
    run_seeds(seeds, |seed| {
        let p = w.pair(&format!("noop-{seed}"));
        build(&p.src, seed, &f);
        let r = (|| {
            succeeded(&w.sync(&p, &["-X"]), "the first sync")?;
            let (src, dst) = (metadata_with_ctime(&p.src), metadata_with_ctime(&p.dst));
            let out = w.sync(&p, &["-X", "--delete", "--stats", "-i"]);
            succeeded(&out, "the second sync")?;
            if !itemized(&out).is_empty() {
                return Err(format!("an up-to-date sync itemized: {}", describe(&out)));
            }
            assert_untouched(&p.src, &src, "an up-to-date sync");
            assert_untouched(&p.dst, &dst, "an up-to-date sync");
            let moved = stat(&out.stdout, "Files transferred:");
            let literal = stat(&out.stdout, "Literal data:");
            if moved != 0 || literal != 0 {
                return Err(format!(
                    "an up-to-date sync moved {moved} files, {literal} literal bytes: {}",
                    describe(&out)
                ));
            }
            Ok(())
        })();
        w.remove(&p);
        r
    });
}

#[test]
fn an_up_to_date_tree_is_left_alone_locally() {
    second_run_is_a_no_op(Way::Local, 500..505);
}

#[test]
fn an_up_to_date_tree_is_left_alone_on_a_server() {
    second_run_is_a_no_op(Way::Push(Net::Tls), 600..605);
}

// ---------------------------------------------------------------------------
// 2. Dry runs

/// Sets up a synced tree, edits both sides, adds known differences, then runs
/// `-n` in several forms: neither tree may change in any way (content, mode,
/// owner, times including ctime, xattrs, inode numbers, no temp files), and the
/// output must list what a real run would do.
fn dry_run_touches_nothing(way: Way, f: Features, extra: &[&str]) {
    let w = World::new(way);
    let p = w.pair("dry");
    build(&p.src, 4242, &f);
    assert_ok(&w.sync(&p, extra), "the first sync");
    edit(&p.src, 4243, &f, 10);
    edit(&p.dst, 4244, &f, 6);
    put(&p.src.join("dry-new-file"), b"new", 0o644, 1_700_000_001);
    fs::create_dir(p.src.join("dry-new-dir")).unwrap();
    put(
        &p.src.join("dry-changed"),
        b"version two",
        0o644,
        1_700_000_002,
    );
    put(&p.dst.join("dry-changed"), b"v1", 0o644, 1_600_000_000);
    put(&p.dst.join("dry-only-in-destination"), b"old", 0o644, 1);
    let src_before = metadata_with_ctime(&p.src);
    let dst_before = metadata_with_ctime(&p.dst);

    // (--force: the edits may leave a directory with something in it where
    // the source has a file, which a dry run reports as the real run would.)
    for opts in [
        &["-n", "--force"][..],
        &["-n", "--delete"],
        &["--dry-run", "-i", "--delete", "-c"],
    ] {
        let mut opts = opts.to_vec();
        opts.extend_from_slice(extra);
        let what = format!("jcp {} ({way:?})", opts.join(" "));
        let out = w.sync(&p, &opts);
        assert_ok(&out, &what);
        assert_untouched(&p.src, &src_before, &what);
        assert_untouched(&p.dst, &dst_before, &what);
        expect_line(&out, ">f+++++++++ dry-new-file");
        expect_line(&out, "cd+++++++++ dry-new-dir/");
        let changed = line_about(&out, "dry-changed");
        assert!(
            changed.starts_with(">f") && changed.as_bytes()[3] == b's',
            "{what}: {changed:?} should say the content and size change"
        );
        let deleting = stdout_lines(&out)
            .into_iter()
            .any(|l| l == "*deleting   dry-only-in-destination");
        assert_eq!(
            deleting,
            opts.contains(&"--delete"),
            "{what}: is the deletion listed? {}",
            describe(&out)
        );
    }

    // A dry run into a destination that does not exist creates nothing.
    let mut q = w.pair("dry-missing");
    q.src = p.src.clone();
    q.src_arg = p.src_arg.clone();
    let out = w.sync(&q, &["-n"]);
    assert_ok(&out, "a dry run into a missing destination");
    for made in [q.dst.clone(), w.work.path().join("cases/dry-missing")] {
        assert!(!exists(&made), "a dry run created {}", made.display());
    }
    expect_line(&out, ">f+++++++++ dry-new-file");
    assert_untouched(&p.src, &src_before, "a dry run into a missing destination");
}

/// Files, directories and symlinks with odd names and modes: what the engine
/// has handled from the start.
fn plain_features() -> Features {
    Features {
        odd_names: true,
        special_modes: true,
        ..Features::basic()
    }
}

#[test]
fn dry_run_touches_neither_tree_and_lists_the_changes_locally() {
    dry_run_touches_nothing(Way::Local, plain_features(), &[]);
}

#[test]
fn dry_run_touches_neither_tree_and_lists_the_changes_on_a_server() {
    dry_run_touches_nothing(Way::Push(Net::Tls), plain_features(), &[]);
}

#[test]
fn dry_run_with_xattrs_hard_links_and_holes_touches_nothing() {
    dry_run_touches_nothing(Way::Local, Features::all(), &["-X"]);
    dry_run_touches_nothing(Way::Push(Net::Tls), Features::all(), &["-X"]);
}

// ---------------------------------------------------------------------------
// 3. -i

fn itemized_lines(way: Way) {
    let w = World::new(way);
    let p = w.pair("items");
    let s = &p.src;
    put(&s.join("a.txt"), b"alpha", 0o644, 1_600_000_001);
    put(&s.join("b.txt"), b"bravo", 0o644, 1_600_000_002);
    put(&s.join("c.txt"), b"charlie", 0o644, 1_600_000_003);
    put(&s.join("gone.txt"), b"gone", 0o644, 1_600_000_004);
    put(&s.join("same.txt"), b"same", 0o644, 1_600_000_005);
    put(&s.join("sub/inner.txt"), b"inner", 0o644, 1_600_000_006);
    std::os::unix::fs::symlink("a.txt", s.join("ln")).unwrap();

    let out = w.sync(&p, &["-i"]);
    assert_ok(&out, "first -i run");
    for want in [
        ">f+++++++++ a.txt",
        ">f+++++++++ same.txt",
        ">f+++++++++ sub/inner.txt",
        "cd+++++++++ sub/",
        "cL+++++++++ ln -> a.txt",
    ] {
        expect_line(&out, want);
    }

    // A size change, a mode change alone, a mode and time change, a deletion,
    // a new directory and a new symlink.
    put(&s.join("a.txt"), b"alpha, longer", 0o644, 1_600_000_101);
    fs::set_permissions(s.join("b.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(s.join("c.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    set_mtime(&s.join("c.txt"), 1_600_000_103);
    fs::remove_file(s.join("gone.txt")).unwrap();
    fs::create_dir(s.join("newdir")).unwrap();
    std::os::unix::fs::symlink("a.txt", s.join("newlink")).unwrap();

    let out = w.sync(&p, &["-i", "--delete"]);
    assert_ok(&out, "second -i run");
    let a = line_about(&out, "a.txt");
    assert!(
        a.starts_with(">f") && a.as_bytes()[3] == b's' && a.as_bytes()[4] == b't',
        "a.txt grew and has a new mtime: {a:?}"
    );
    expect_line(&out, ".f...p..... b.txt");
    let c = line_about(&out, "c.txt");
    assert!(
        c.as_bytes()[1] == b'f' && &c.as_bytes()[4..6] == b"tp" && c.len() == 17,
        "c.txt has a new mode and mtime: {c:?}"
    );
    expect_line(&out, "*deleting   gone.txt");
    expect_line(&out, "cd+++++++++ newdir/");
    expect_line(&out, "cL+++++++++ newlink -> a.txt");
    for quiet in ["same.txt", "inner.txt", " ln -> "] {
        assert!(
            !stdout_lines(&out).iter().any(|l| l.contains(quiet)),
            "unchanged {quiet:?} itemized: {}",
            describe(&out)
        );
    }
    same_tree(&p.src, &p.dst, &Features::basic());

    // Nothing left to do: nothing itemized.
    let out = w.sync(&p, &["-i", "--delete"]);
    assert_ok(&out, "third -i run");
    assert!(
        itemized(&out).is_empty(),
        "an up-to-date run itemized: {}",
        describe(&out)
    );
}

#[test]
fn itemize_changes_says_what_changed_locally() {
    itemized_lines(Way::Local);
}

#[test]
fn itemize_changes_says_what_changed_on_a_server() {
    itemized_lines(Way::Push(Net::Tls));
}

/// A destination named as a directory (`dst/`) that does not exist is
/// made, and itemized as made (`cd+++++++++ ./`, as rsync's), each way.
#[test]
fn a_destination_named_as_a_directory_is_itemized_as_made() {
    for way in [Way::Local, Way::Push(Net::Tls), Way::Pull(Net::Tls)] {
        let w = World::new(way);
        let p = w.pair("made");
        put(&p.src.join("f.txt"), b"eff", 0o644, 1_600_000_001);
        let out = w.jcp(&["-i", &p.src_arg, &format!("{}/", p.dst_arg)]);
        assert_ok(&out, "into dst/");
        expect_line(&out, "cd+++++++++ ./");
        expect_line(&out, ">f+++++++++ f.txt");
        same_tree(&p.src, &p.dst, &Features::basic());
    }
}

/// A source named without a trailing slash (or a single file) lands under its
/// name, and -i and -v show each path as rsync does: relative to the
/// destination, under that name (`src/f.txt`, `f.txt`), not relative to the
/// source.
fn named_sources_show_paths_under_their_name(way: Way) {
    let w = World::new(way);
    let p = w.pair("named");
    put(&p.src.join("f.txt"), b"eff", 0o644, 1_600_000_001);
    put(&p.src.join("sub/g.txt"), b"gee", 0o644, 1_600_000_002);
    let (dir_arg, name) = match way {
        Way::Pull(_) => ("127.0.0.1:named".to_string(), "named"),
        _ => (p.src.display().to_string(), "src"),
    };
    // (Each path under the source's name: the directory's line after
    // `dir`, the files' after `file`.)
    let expect_paths = |out: &Output, dir: &str, file: &str| {
        expect_line(out, &format!("{dir}{name}/"));
        for path in ["f.txt", "sub/g.txt"] {
            expect_line(out, &format!("{file}{name}/{path}"));
        }
    };
    let out = w.jcp(&["-i", "-v", &dir_arg, &p.dst_arg]);
    assert_ok(&out, "a directory by name");
    expect_paths(&out, "cd+++++++++ ", ">f+++++++++ ");
    // (-v beside -i lists nothing more, as rsync's: its closing lines.)
    let no_names = |out: &Output| {
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.lines().any(|l| l.starts_with("sent "))
                && stdout.lines().filter(|l| l.ends_with("f.txt")).count() == 1
                && out.stderr.is_empty(),
            "-i -v: {}",
            describe(out)
        );
    };
    no_names(&out);
    // Without -i, -v lists them in rsync's '%n%L'.
    let again = w.pair("named-again");
    let out = w.jcp(&["-v", &dir_arg, &again.dst_arg]);
    assert_ok(&out, "-v");
    expect_paths(&out, "", "");
    let file_arg = format!("{dir_arg}/f.txt");
    let out = w.jcp(&["-i", "-v", &file_arg, &format!("{}/one/", p.dst_arg)]);
    assert_ok(&out, "a single file");
    expect_line(&out, ">f+++++++++ f.txt");
    no_names(&out);
}

#[test]
fn named_sources_show_paths_under_their_name_locally() {
    named_sources_show_paths_under_their_name(Way::Local);
}

#[test]
fn named_sources_show_paths_under_their_name_in_a_push() {
    named_sources_show_paths_under_their_name(Way::Push(Net::Tls));
}

#[test]
fn named_sources_show_paths_under_their_name_in_a_pull() {
    named_sources_show_paths_under_their_name(Way::Pull(Net::Tls));
}

// ---------------------------------------------------------------------------
// 4. Include and exclude rules

fn filter_source(src: &Path) {
    for (rel, data) in [
        ("a.c", "int main;"),
        ("a.o", "object a"),
        ("keep.o", "object to keep"),
        ("sub/b.c", "int b;"),
        ("sub/b.o", "object b"),
        ("build/inner.txt", "inside an excluded directory"),
        ("build/x.o", "object x"),
    ] {
        put(&src.join(rel), data.as_bytes(), 0o644, 1_650_000_000);
    }
}

fn assert_present(root: &Path, rels: &[&str], absent: &[&str], what: &str) {
    for rel in rels {
        assert!(
            exists(&root.join(rel)),
            "{what}: {rel} should be in {}",
            root.display()
        );
    }
    for rel in absent {
        assert!(
            !exists(&root.join(rel)),
            "{what}: {rel} should not be in {}",
            root.display()
        );
    }
}

fn filters(way: Way) {
    let w = World::new(way);

    // --exclude under --delete: excluded files are neither sent nor deleted.
    let p = w.pair("exclude");
    filter_source(&p.src);
    put(&p.dst.join("old.o"), b"old object", 0o644, 1);
    put(&p.dst.join("sub/old.o"), b"old object", 0o644, 1);
    put(&p.dst.join("stale.txt"), b"stale", 0o644, 1);
    let what = "--delete --exclude '*.o'";
    assert_ok(&w.sync(&p, &["--delete", "--exclude", "*.o"]), what);
    assert_present(
        &p.dst,
        &["a.c", "sub/b.c", "build/inner.txt", "old.o", "sub/old.o"],
        &["a.o", "keep.o", "sub/b.o", "build/x.o", "stale.txt"],
        what,
    );
    // --delete-excluded removes them; alone, it implies --delete (as
    // rsync's).
    put(&p.dst.join("stale2.txt"), b"stale", 0o644, 1);
    let what = "--delete-excluded --exclude '*.o'";
    assert_ok(
        &w.sync(&p, &["--delete-excluded", "--exclude", "*.o"]),
        what,
    );
    assert_present(
        &p.dst,
        &["a.c", "sub/b.c", "build/inner.txt"],
        &["old.o", "sub/old.o", "a.o", "keep.o", "stale2.txt"],
        what,
    );

    // The first matching rule wins.
    let p = w.pair("include-first");
    filter_source(&p.src);
    let what = "--include keep.o --exclude '*.o'";
    assert_ok(
        &w.sync(&p, &["--include", "keep.o", "--exclude", "*.o"]),
        what,
    );
    assert_present(&p.dst, &["keep.o", "a.c"], &["a.o", "sub/b.o"], what);
    let p = w.pair("exclude-first");
    filter_source(&p.src);
    let what = "--exclude '*.o' --include keep.o";
    assert_ok(
        &w.sync(&p, &["--exclude", "*.o", "--include", "keep.o"]),
        what,
    );
    assert_present(&p.dst, &["a.c"], &["keep.o", "a.o"], what);

    // Rules from a file, with a comment and a blank line.
    let p = w.pair("exclude-from");
    filter_source(&p.src);
    let rules = w.work.path().join("rules");
    fs::write(&rules, "# build products\n\n*.o\nbuild/\n").unwrap();
    let what = "--exclude-from FILE";
    assert_ok(
        &w.sync(&p, &["--exclude-from", rules.to_str().unwrap()]),
        what,
    );
    assert_present(
        &p.dst,
        &["a.c", "sub/b.c"],
        &["a.o", "keep.o", "sub/b.o", "build"],
        what,
    );

    // An excluded directory is not descended into (a later rule that would
    // include a file inside it never sees the file), and --delete leaves the
    // destination's copy of it alone.
    let p = w.pair("exclude-dir");
    filter_source(&p.src);
    put(&p.dst.join("build/artifact.bin"), b"built here", 0o644, 1);
    let what = "--delete --exclude build --include '*.txt'";
    assert_ok(
        &w.sync(
            &p,
            &["--delete", "--exclude", "build", "--include", "*.txt"],
        ),
        what,
    );
    assert_present(
        &p.dst,
        &["a.c", "a.o", "build/artifact.bin"],
        &["build/inner.txt", "build/x.o"],
        what,
    );

    // A source named without a trailing slash is copied as itself, and its
    // parent is the transfer root: an anchored rule names the directory too,
    // as in rsync (`--exclude /src/build`), and reaches no deeper `build`.
    let p = w.pair("anchored");
    filter_source(&p.src);
    put(&p.src.join("sub/build/deep.txt"), b"deeper", 0o644, 1);
    let name = p.src.file_name().unwrap().to_str().unwrap().to_owned();
    let inside = p.dst.join(&name);
    put(&inside.join("build/here.txt"), b"excluded, kept", 0o644, 1);
    put(&inside.join("stale.txt"), b"not in the source", 0o644, 1);
    let rule = format!("/{name}/build");
    let what = format!("--delete --exclude {rule} with SRC (no slash)");
    let src = p.src_arg.trim_end_matches('/');
    assert_ok(
        &w.jcp(&["--delete", "--exclude", &rule, src, &p.dst_arg]),
        &what,
    );
    assert_present(
        &inside,
        &["a.c", "sub/build/deep.txt", "build/here.txt"],
        &["build/inner.txt", "stale.txt"],
        &what,
    );
}

#[test]
fn exclude_and_include_rules_first_match_wins_locally() {
    filters(Way::Local);
}

#[test]
fn exclude_and_include_rules_first_match_wins_pulling() {
    filters(Way::Pull(Net::Tls));
}

#[test]
fn exclude_and_include_rules_first_match_wins_on_a_server() {
    filters(Way::Push(Net::Tls));
}

#[test]
fn exclude_and_include_rules_first_match_wins_from_a_server_over_quic() {
    filters(Way::Pull(Net::Quic));
}

// ---------------------------------------------------------------------------
// 5. Hard links

fn hard_links(way: Way) {
    let w = World::new(way);
    let p = w.pair("links");
    let s = &p.src;
    put(
        &s.join("a"),
        b"one inode, three names",
        0o640,
        1_600_000_000,
    );
    fs::create_dir(s.join("sub")).unwrap();
    fs::hard_link(s.join("a"), s.join("b")).unwrap();
    fs::hard_link(s.join("a"), s.join("sub/c")).unwrap();
    put(&s.join("d"), b"a file of its own", 0o644, 1_600_000_001);
    let ino = |rel: &str| lstat(&p.dst.join(rel)).ino();
    let nlink = |rel: &str| lstat(&p.dst.join(rel)).nlink();

    assert_ok(&w.sync(&p, &[]), "first sync");
    same_tree(&p.src, &p.dst, &with_hardlinks());
    assert!(ino("a") == ino("b") && ino("a") == ino("sub/c") && ino("a") != ino("d"));
    assert_eq!((nlink("a"), nlink("d")), (3, 1));

    // Break one name off (a copy with the same content, mode and mtime, so
    // only the link count tells), add a name to the group, link another file.
    let data = fs::read(s.join("b")).unwrap();
    fs::remove_file(s.join("b")).unwrap();
    put(&s.join("b"), &data, 0o640, 1_600_000_000);
    fs::hard_link(s.join("a"), s.join("sub/f")).unwrap();
    fs::hard_link(s.join("d"), s.join("e")).unwrap();
    assert_ok(&w.sync(&p, &["--delete"]), "second sync");
    same_tree(&p.src, &p.dst, &with_hardlinks());
    assert!(ino("a") != ino("b"), "b was split off in the source");
    assert!(ino("a") == ino("sub/c") && ino("a") == ino("sub/f"));
    assert_eq!(ino("d"), ino("e"));
    assert_eq!((nlink("a"), nlink("b"), nlink("d")), (3, 1, 2));

    // The names of one inode regrouped in the source, nothing else changed
    // (sub/c now with g, a with sub/f): each group an inode of its own.
    fs::remove_file(s.join("sub/c")).unwrap();
    put(&s.join("sub/c"), &data, 0o640, 1_600_000_000);
    fs::hard_link(s.join("sub/c"), s.join("g")).unwrap();
    assert_ok(&w.sync(&p, &["--delete"]), "regrouped");
    same_tree(&p.src, &p.dst, &with_hardlinks());
    assert!(ino("a") == ino("sub/f") && ino("sub/c") == ino("g"));
    assert_ne!(ino("a"), ino("sub/c"));

    // A name split off with another mode while the one left gets another
    // too: each keeps its own (both were set on the one inode, the split
    // name's last).
    fs::remove_file(s.join("sub/f")).unwrap();
    put(&s.join("sub/f"), &data, 0o600, 1_600_000_000);
    fs::set_permissions(s.join("a"), fs::Permissions::from_mode(0o644)).unwrap();
    assert_ok(&w.sync(&p, &["--delete"]), "split with other attributes");
    same_tree(&p.src, &p.dst, &with_hardlinks());
    assert_ne!(ino("a"), ino("sub/f"));

    // A name outside the transfer (a snapshot made with `cp -al`, a
    // --link-dest copy) keeps its link, and nothing is sent again, as with
    // rsync.
    let snapshot = |name: &str| p.dst.with_file_name(format!("links-snapshot-{name}"));
    for name in ["a", "b"] {
        fs::hard_link(p.dst.join(name), snapshot(name)).unwrap();
    }
    let out = w.sync(&p, &["--delete", "--stats"]);
    assert_ok(&out, "with a snapshot");
    assert_eq!(stat(&out.stdout, "Files transferred:"), 0);
    for name in ["a", "b"] {
        assert_eq!(ino(name), lstat(&snapshot(name)).ino(), "{name}");
        fs::remove_file(snapshot(name)).unwrap();
    }
    assert_eq!((nlink("a"), nlink("b")), (1, 1));

    // A file whose time changed but not its content gets an inode of its
    // own where a name outside the transfer shares its inode, as rsync
    // sends it anew: the snapshot keeps its time (setting the new time on
    // the shared inode rewrote the snapshot's). A group's names (sub/c, g)
    // go to the new inode together.
    let snapshot = |name: &str| snapshot(&name.replace('/', "-"));
    for name in ["b", "sub/c"] {
        fs::hard_link(p.dst.join(name), snapshot(name)).unwrap();
        set_mtime(&s.join(name), 1_650_000_000);
    }
    let dry = w.sync(&p, &["--delete", "-n", "-i"]);
    assert_ok(&dry, "a dry run");
    let lines = String::from_utf8_lossy(&dry.stdout).into_owned();
    // (g is the group's first name: sub/c follows it.)
    for name in ["b", "g"] {
        assert!(
            lines
                .lines()
                .any(|l| l.starts_with(">f") && l.ends_with(&format!(" {name}"))),
            "{name} not shown as received:\n{lines}"
        );
    }
    assert_ok(&w.sync(&p, &["--delete"]), "a new time with a snapshot");
    same_tree(&p.src, &p.dst, &with_hardlinks());
    for name in ["b", "sub/c"] {
        let snap = lstat(&snapshot(name));
        assert_ne!(ino(name), snap.ino(), "{name}");
        assert_eq!(snap.mtime(), 1_600_000_000, "{name}");
        fs::remove_file(snapshot(name)).unwrap();
    }
    assert_eq!((nlink("b"), nlink("sub/c")), (1, 2));
    assert_eq!(ino("sub/c"), ino("g"));

    // A first name that -u or --ignore-existing leaves alone does not
    // leave out its other names, as rsync's: each is weighed as itself, a
    // missing one sent and the next linked to it; one the destination has
    // newer is left alone too.
    for opt in ["-u", "--ignore-existing"] {
        let r = w.pair(&format!("left-alone{opt}"));
        put(&r.src.join("a"), b"new", 0o640, 1_600_000_000);
        for name in ["h1", "h2", "h3"] {
            fs::hard_link(r.src.join("a"), r.src.join(name)).unwrap();
        }
        put(&r.dst.join("a"), b"kept", 0o644, 1_700_000_000);
        put(&r.dst.join("h1"), b"kept too", 0o644, 1_700_000_000);
        assert_ok(&w.sync(&r, &[opt]), opt);
        let read = |rel: &str| fs::read(r.dst.join(rel)).unwrap();
        assert_eq!(
            (read("a"), read("h1")),
            (b"kept".to_vec(), b"kept too".to_vec())
        );
        assert_eq!(
            (read("h2"), read("h3")),
            (b"new".to_vec(), b"new".to_vec()),
            "{opt}"
        );
        let (h2, h3) = (lstat(&r.dst.join("h2")), lstat(&r.dst.join("h3")));
        assert_eq!(
            (h2.ino(), h2.nlink(), h2.mode() & 0o7777),
            (h3.ino(), 2, 0o640),
            "{opt}"
        );
    }

    // --existing: a first name the destination lacks is left out, and a
    // later name it has is updated as itself.
    let r = w.pair("left-alone-existing");
    put(&r.src.join("a"), b"new", 0o640, 1_600_000_000);
    fs::hard_link(r.src.join("a"), r.src.join("h1")).unwrap();
    fs::hard_link(r.src.join("a"), r.src.join("h2")).unwrap();
    put(&r.dst.join("h1"), b"old", 0o644, 1_500_000_000);
    assert_ok(&w.sync(&r, &["--existing"]), "--existing");
    assert!(!r.dst.join("a").exists() && !r.dst.join("h2").exists());
    assert_eq!(fs::read(r.dst.join("h1")).unwrap(), b"new");

    // --no-hard-links: every name is a file of its own.
    let mut q = w.pair("no-links");
    q.src = p.src.clone();
    q.src_arg = p.src_arg.clone();
    assert_ok(&w.sync(&q, &["--no-hard-links"]), "--no-hard-links");
    same_tree(&q.src, &q.dst, &Features::basic());
    for rel in ["a", "b", "sub/c", "sub/f", "d", "e"] {
        assert_eq!(
            lstat(&q.dst.join(rel)).nlink(),
            1,
            "{rel} with --no-hard-links"
        );
    }
}

#[test]
fn hard_links_are_kept_locally() {
    hard_links(Way::Local);
}

#[test]
fn hard_links_are_kept_on_a_server() {
    hard_links(Way::Push(Net::Tls));
}

// ---------------------------------------------------------------------------
// 6. Sparse files

fn sparse(way: Way) {
    const SIZE: u64 = 64 * MIB;
    let w = World::new(way);
    let p = w.pair("sparse");
    fs::create_dir_all(&p.src).unwrap();
    let path = p.src.join("disk.img");
    let f = fs::File::create(&path).unwrap();
    f.write_all_at(&pseudo_random(MIB as usize, 61), 0).unwrap();
    f.write_all_at(&pseudo_random(MIB as usize, 62), SIZE - MIB)
        .unwrap();
    f.set_len(SIZE).unwrap();
    drop(f);
    if lstat(&path).blocks() * 512 > 8 * MIB {
        eprintln!("the file system under the temp dir does not keep holes; skipping");
        return;
    }
    let hash = |p: &Path| {
        let mut h = blake3::Hasher::new();
        std::io::copy(&mut fs::File::open(p).unwrap(), &mut h).unwrap();
        h.finalize()
    };
    let check = |what: &str| {
        let m = lstat(&p.dst.join("disk.img"));
        assert_eq!(m.len(), SIZE, "{what}: size");
        assert!(
            m.blocks() * 512 <= 4 * MIB,
            "{what}: {} bytes allocated for 2 MiB of data in a 64 MiB file",
            m.blocks() * 512
        );
        assert_eq!(hash(&path), hash(&p.dst.join("disk.img")), "{what}");
        assert!(sparse_ok(&p.src, &p.dst).is_empty(), "{what}");
    };

    let out = w.sync(&p, &["--stats"]);
    assert_ok(&out, "sparse copy");
    check("a new sparse file");
    let literal = stat(&out.stdout, "Literal data:");
    assert!(
        (2 * MIB..3 * MIB).contains(&literal),
        "Literal data {literal} for 2 MiB of data and 62 MiB of holes: {}",
        describe(&out)
    );

    // A change in the data keeps the holes in the rebuilt file.
    let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(b"changed bytes near the start", 4096)
        .unwrap();
    drop(f);
    set_mtime(&path, 1_700_000_000);
    let out = w.sync(&p, &["--stats"]);
    assert_ok(&out, "sparse delta");
    check("a changed sparse file");
}

#[test]
fn sparse_files_keep_their_holes_locally() {
    sparse(Way::Local);
}

#[test]
fn sparse_files_keep_their_holes_over_tls() {
    sparse(Way::Push(Net::Tls));
}

// ---------------------------------------------------------------------------
// 7. Extended attributes

fn set_xattr(p: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(p, name, value, rustix::fs::XattrFlags::empty())
        .unwrap_or_else(|e| panic!("setxattr {name} on {}: {e}", p.display()));
}

fn xattrs(way: Way) {
    let w = World::new(way);
    let p = w.pair("xattrs");
    let s = &p.src;
    put(&s.join("f.txt"), b"with attributes", 0o644, 1_600_000_000);
    put(&s.join("g.txt"), b"one attribute", 0o644, 1_600_000_001);
    fs::create_dir(s.join("d")).unwrap();
    if !randtree::xattrs_supported(s) {
        eprintln!("the file system under the temp dir refuses user xattrs; skipping");
        return;
    }
    set_xattr(&s.join("f.txt"), "user.one", b"1");
    set_xattr(&s.join("f.txt"), "user.two", b"two");
    set_xattr(&s.join("f.txt"), "user.empty", b"");
    set_xattr(&s.join("g.txt"), "user.g", &pseudo_random(3000, 5));
    set_xattr(&s.join("d"), "user.dir", b"on a directory");
    set_mtime(&s.join("d"), 1_600_000_002);
    assert_ok(&w.sync(&p, &["-X"]), "first -X sync");
    same_tree(&p.src, &p.dst, &with_xattrs());

    // Change, remove and add attributes; no mtime moves.
    let before = snapshot(&p.src, &Features::basic());
    set_xattr(&s.join("f.txt"), "user.one", b"changed");
    rustix::fs::lremovexattr(s.join("f.txt"), "user.two").unwrap();
    set_xattr(&s.join("f.txt"), "user.three", &pseudo_random(300, 6));
    rustix::fs::lremovexattr(s.join("g.txt"), "user.g").unwrap();
    set_xattr(&s.join("d"), "user.dir", b"changed on a directory");
    assert_eq!(
        before,
        snapshot(&p.src, &Features::basic()),
        "setting xattrs changed something else"
    );
    assert_ok(&w.sync(&p, &["-X"]), "second -X sync");
    same_tree(&p.src, &p.dst, &with_xattrs());
}

#[test]
fn xattrs_are_copied_changed_and_removed_locally() {
    xattrs(Way::Local);
}

#[test]
fn xattrs_are_copied_changed_and_removed_on_a_server() {
    xattrs(Way::Push(Net::Tls));
}

// ---------------------------------------------------------------------------
// 8. FIFOs, devices and sockets

fn special_files(way: Way) {
    use rustix::fs::{makedev, mknodat, FileType, Mode, CWD};
    if !is_root() {
        eprintln!("not root: devices cannot be made; skipping");
        return;
    }
    let w = World::new(way);
    let p = w.pair("special");
    let s = &p.src;
    put(&s.join("plain.txt"), b"plain", 0o644, 1_600_000_000);
    let nodes = [
        ("fifo", FileType::Fifo, 0o640, 0),
        ("null-like", FileType::CharacterDevice, 0o600, makedev(1, 3)),
        ("loop-like", FileType::BlockDevice, 0o660, makedev(7, 123)),
    ];
    for (name, kind, mode, dev) in nodes {
        mknodat(CWD, s.join(name), kind, Mode::from_raw_mode(mode), dev)
            .unwrap_or_else(|e| panic!("mknod {name}: {e}"));
        fs::set_permissions(s.join(name), fs::Permissions::from_mode(mode)).unwrap();
        set_mtime(&s.join(name), 1_600_000_100);
    }
    let _socket = std::os::unix::net::UnixListener::bind(s.join("socket")).unwrap();
    set_mtime(s, 1_600_000_200);

    let out = w.sync(&p, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(lstat(&p.dst.join("fifo")).file_type().is_fifo());
    for (name, _, _, dev) in &nodes[1..] {
        assert_eq!(lstat(&p.dst.join(name)).rdev(), *dev, "{name}");
    }
    assert!(!exists(&p.dst.join("socket")), "the socket was copied");
    let mut want = snapshot(s, &Features::basic());
    want.entries.remove(&b"socket"[..]);
    if let Err(e) = same(&want, &snapshot(&p.dst, &Features::basic())) {
        panic!("special files differ:\n{e}");
    }
}

#[test]
fn fifos_and_devices_are_created_and_sockets_skipped_locally() {
    special_files(Way::Local);
}

#[test]
fn fifos_and_devices_are_created_and_sockets_skipped_on_a_server() {
    special_files(Way::Push(Net::Tls));
}

#[test]
fn a_receiver_that_is_not_root_skips_devices_with_a_warning() {
    use rustix::fs::{makedev, mknodat, FileType, Mode, CWD};
    use std::os::unix::process::CommandExt;
    const NOBODY: u32 = 65534;
    if !is_root() {
        eprintln!("not root: devices cannot be made; skipping");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    fs::set_permissions(work.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let src = work.path().join("src");
    put(&src.join("plain.txt"), b"plain", 0o644, 1_600_000_000);
    mknodat(
        CWD,
        src.join("fifo"),
        FileType::Fifo,
        Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    mknodat(
        CWD,
        src.join("null-like"),
        FileType::CharacterDevice,
        Mode::from_raw_mode(0o644),
        makedev(1, 3),
    )
    .unwrap();
    fs::set_permissions(&src, fs::Permissions::from_mode(0o755)).unwrap();
    let dst = work.path().join("dst");
    fs::create_dir(&dst).unwrap();
    std::os::unix::fs::chown(&dst, Some(NOBODY), Some(NOBODY)).unwrap();
    let out = Command::new(bin("jcp"))
        .uid(NOBODY)
        .gid(NOBODY)
        .arg(format!("{}/", src.display()))
        .arg(&dst)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("null-like"),
        "no warning about the device: {err}"
    );
    assert!(!exists(&dst.join("null-like")), "a device was made");
    assert!(lstat(&dst.join("fifo")).file_type().is_fifo(), "no FIFO");
    assert_eq!(fs::read(dst.join("plain.txt")).unwrap(), b"plain");
}

// ---------------------------------------------------------------------------
// 9. Names

fn odd_names(way: Way) {
    let w = World::new(way);
    let p = w.pair("names");
    let s = &p.src;
    fs::create_dir_all(s).unwrap();
    let mut long_utf8 = "long-".to_string();
    while long_utf8.len() + 3 <= 255 {
        long_utf8.push('\u{65e5}');
    }
    while long_utf8.len() < 255 {
        long_utf8.push('x');
    }
    let names: Vec<Vec<u8>> = vec![
        b"raw-\xff\xfe-bytes".to_vec(),
        b"latin1-caf\xe9".to_vec(),
        b"new\nline".to_vec(),
        b"-rf".to_vec(),
        b"--delete".to_vec(),
        b"-".to_vec(),
        b"tab\there".to_vec(),
        b"back\\slash".to_vec(),
        b"*?[glob]{x}".to_vec(),
        b" leading and trailing space ".to_vec(),
        b"colon:in:name".to_vec(),
        "\u{65e5}\u{672c}\u{8a9e}.txt".as_bytes().to_vec(),
        vec![b'n'; 255],
        long_utf8.into_bytes(),
    ];
    for (i, n) in names.iter().enumerate() {
        put(
            &full(s, n),
            format!("file {i}\n").as_bytes(),
            0o644,
            1_600_000_000 + i as i64,
        );
    }
    // A directory with an odd name, and a symlink to an odd name.
    put(
        &full(s, b"-dir\n/in\xffside"),
        b"inside",
        0o644,
        1_600_000_100,
    );
    std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(b"new\nline"), s.join("link")).unwrap();
    // 30 levels deep, with names long enough for a path of about 2 KiB.
    let mut deep = s.to_path_buf();
    for i in 0..30 {
        deep.push(format!("level-{i:02}-{}", "d".repeat(60)));
    }
    put(
        &deep.join("bottom"),
        b"thirty levels down",
        0o644,
        1_600_000_200,
    );
    let mut d = deep.clone();
    while d != *s {
        set_mtime(&d, 1_600_000_300);
        d.pop();
    }
    set_mtime(s, 1_600_000_400);

    assert_ok(&w.sync(&p, &[]), "odd names");
    same_tree(&p.src, &p.dst, &Features::basic());

    // Change some, delete one: deltas and deletions with the same names.
    put(&full(s, b"-rf"), b"changed -rf", 0o600, 1_700_000_000);
    put(
        &full(s, b"new\nline"),
        b"changed newline",
        0o644,
        1_700_000_001,
    );
    put(
        &deep.join("bottom"),
        b"changed at the bottom",
        0o644,
        1_700_000_002,
    );
    fs::remove_file(full(s, b"--delete")).unwrap();
    fs::remove_file(full(s, b"raw-\xff\xfe-bytes")).unwrap();
    assert_ok(&w.sync(&p, &["--delete"]), "odd names again");
    same_tree(&p.src, &p.dst, &Features::basic());
}

#[test]
fn odd_names_and_deep_paths_sync_locally() {
    odd_names(Way::Local);
}

#[test]
fn odd_names_and_deep_paths_sync_over_tls() {
    odd_names(Way::Push(Net::Tls));
}

// ---------------------------------------------------------------------------
// 10. Files that vanish or change during a transfer

/// A push through a [`Relay`] that pauses once `pause_at` client bytes have
/// passed: one lane (`-j 1`), so the sender answers requests in list order and
/// opens a file only when it gets to it.
struct PausedPush {
    child: Option<Child>,
    relay: Relay,
    _srv: Jsrv,
    _keys: Keys,
    work: tempfile::TempDir,
}

impl PausedPush {
    /// Starts `jcp -j 1 src/ 127.0.0.1:dst` (plus `opts`) through the relay and
    /// waits until it pauses.
    async fn start(files: &[(&str, Vec<u8>)], pause_at: u64, opts: &[&str]) -> PausedPush {
        Self::start_with(files, |_, _| {}, pause_at, opts).await
    }

    /// [`PausedPush::start`], after `setup(src, dst)` has added to both trees.
    async fn start_with(
        files: &[(&str, Vec<u8>)],
        setup: impl FnOnce(&Path, &Path),
        pause_at: u64,
        opts: &[&str],
    ) -> PausedPush {
        let work = tempfile::tempdir().unwrap();
        let root = work.path().join("root");
        let src = work.path().join("src");
        fs::create_dir_all(root.join("dst")).unwrap();
        for (i, (name, data)) in files.iter().enumerate() {
            put(&src.join(name), data, 0o644, 1_600_000_000 + i as i64);
        }
        setup(&src, &root.join("dst"));
        let keys = Keys::new();
        let srv = Jsrv::start(keys.path(), &root, &[]);
        let relay = Relay::tcp(format!("127.0.0.1:{}", srv.port).parse().unwrap()).await;
        relay.pause_after(pause_at);
        let child = Command::new(bin("jcp"))
            .arg("--config-dir")
            .arg(keys.path())
            .args(["--port", &relay.port().to_string(), "-j", "1"])
            .args(opts)
            .arg(format!("{}/", src.display()))
            .arg("127.0.0.1:dst")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut push = PausedPush {
            child: Some(child),
            relay,
            _srv: srv,
            _keys: keys,
            work,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !push.relay.is_paused() {
            if let Some(status) = push.child.as_mut().unwrap().try_wait().unwrap() {
                let out = push.child.take().unwrap().wait_with_output().unwrap();
                panic!(
                    "jcp ended ({status}) before the relay paused: {}",
                    describe(&out)
                );
            }
            assert!(Instant::now() < deadline, "the relay never paused");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        push
    }

    fn src(&self) -> PathBuf {
        self.work.path().join("src")
    }

    fn dst(&self) -> PathBuf {
        self.work.path().join("root/dst")
    }

    /// The premise of a paused push: none of `names` has arrived yet (the
    /// first is in flight; the sender has not opened the others).
    fn assert_not_arrived(&self, names: &[&str]) {
        for n in names {
            assert!(
                !exists(&self.dst().join(n)),
                "{n} arrived before the pause: the sender no longer sends one file \
                 at a time in name order with -j 1, so this test must be rearranged"
            );
        }
    }

    /// Lets the transfer go on and waits for jcp.
    fn finish(mut self) -> (Output, Self) {
        self.relay.resume();
        let out = self.child.take().unwrap().wait_with_output().unwrap();
        (out, self)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_deleted_after_listing_is_reported_as_vanished_with_exit_24() {
    let big = pseudo_random(24 * MIB as usize, 71);
    let files = [
        ("a-big.bin", big.clone()),
        ("b-victim.txt", b"listed, then deleted".to_vec()),
        ("c-after.txt", b"sent after the victim".to_vec()),
    ];
    // Paused in the middle of a-big.bin: the list has gone out (it is small),
    // and the one lane reaches b-victim.txt only after a-big.bin.
    let push = PausedPush::start(&files, 4 * MIB, &[]).await;
    push.assert_not_arrived(&["a-big.bin", "b-victim.txt", "c-after.txt"]);
    fs::remove_file(push.src().join("b-victim.txt")).unwrap();
    let (out, push) = push.finish();
    assert_eq!(out.status.code(), Some(24), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("vanished") && err.contains("b-victim.txt"),
        "{err}"
    );
    assert_eq!(fs::read(push.dst().join("a-big.bin")).unwrap(), big);
    assert_eq!(
        fs::read(push.dst().join("c-after.txt")).unwrap(),
        b"sent after the victim"
    );
    assert!(!exists(&push.dst().join("b-victim.txt")));
    assert!(temp_leftovers(&push.dst()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_changed_while_being_sent_fails_alone_with_exit_3_and_is_not_torn() {
    let big = pseudo_random(24 * MIB as usize, 72);
    let files = [
        ("a-big.bin", big),
        ("b-after.txt", b"sent after the changed file".to_vec()),
    ];
    let push = PausedPush::start(&files, 4 * MIB, &[]).await;
    push.assert_not_arrived(&["a-big.bin", "b-after.txt"]);
    // Appended to while the sender is in the middle of reading it.
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(push.src().join("a-big.bin"))
        .unwrap();
    std::io::Write::write_all(&mut f, b"appended mid-transfer").unwrap();
    drop(f);
    let (out, push) = push.finish();
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("a-big.bin") && err.contains("changed"),
        "{err}"
    );
    assert!(
        !exists(&push.dst().join("a-big.bin")),
        "a torn a-big.bin was put in place"
    );
    assert_eq!(
        fs::read(push.dst().join("b-after.txt")).unwrap(),
        b"sent after the changed file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_name_is_not_linked_to_a_first_name_that_failed() {
    let big = pseudo_random(24 * MIB as usize, 73);
    let push = PausedPush::start_with(
        &[("a-big.bin", big)],
        |src, dst| {
            fs::hard_link(src.join("a-big.bin"), src.join("b-link.bin")).unwrap();
            put(&dst.join("a-big.bin"), b"old content", 0o644, 1_500_000_000);
        },
        4 * MIB,
        &[],
    )
    .await;
    // The first name fails (it changes while being sent); the old a-big.bin
    // stays, and the second name must not become a link to that stale file.
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(push.src().join("a-big.bin"))
        .unwrap();
    std::io::Write::write_all(&mut f, b"appended mid-transfer").unwrap();
    drop(f);
    let (out, push) = push.finish();
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("b-link.bin") && err.contains("not linked"),
        "{err}"
    );
    assert_eq!(
        fs::read(push.dst().join("a-big.bin")).unwrap(),
        b"old content"
    );
    assert!(
        !exists(&push.dst().join("b-link.bin")),
        "b-link.bin was linked to the stale first name"
    );
}

// ---------------------------------------------------------------------------
// 11. Resuming an interrupted file

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_file_is_resumed_from_what_arrived() {
    // Kept beside the file, and with --partial-dir in a directory of its
    // own; with -T the temp is written in another directory, then kept;
    // with --preallocate the temp, as long as the whole file, is kept
    // holding only what arrived.
    for (partial_dir, temp_dir, preallocate) in [
        (None, None, false),
        (Some(".rsync-partial"), None, false),
        (None, Some("scratch"), false),
        (None, None, true),
    ] {
        resume_after_a_cut(partial_dir, temp_dir, preallocate).await;
    }
}

async fn resume_after_a_cut(
    partial_dir: Option<&'static str>,
    temp_dir: Option<&'static str>,
    preallocate: bool,
) {
    const SIZE: usize = 64 << 20;
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    fs::create_dir_all(&root).unwrap();
    let src = work.path().join("big.bin");
    let data = pseudo_random(SIZE, 81);
    fs::write(&src, &data).unwrap();
    // The server has an unrelated older version, which nothing may tear.
    let old = pseudo_random(4 << 20, 82);
    fs::write(root.join("big.bin"), &old).unwrap();
    if let Some(d) = temp_dir {
        fs::create_dir(root.join(d)).unwrap();
    }
    let keys = Keys::new();
    let srv = Jsrv::start(keys.path(), &root, &[]);
    let relay = Relay::tcp(format!("127.0.0.1:{}", srv.port).parse().unwrap()).await;
    relay.cut_after(40 << 20);
    let jcp = |port: u16| {
        let keys = keys.path().to_path_buf();
        let src = src.clone();
        tokio::task::spawn_blocking(move || {
            let mut cmd = Command::new(bin("jcp"));
            cmd.arg("--config-dir")
                .arg(&keys)
                .args(["--port", &port.to_string(), "--stats"]);
            if let Some(d) = partial_dir {
                cmd.arg(format!("--partial-dir={d}"));
            }
            if let Some(d) = temp_dir {
                cmd.args(["-T", d]);
            }
            if preallocate {
                cmd.arg("--preallocate");
            }
            cmd.arg(&src).arg("127.0.0.1:").output().unwrap()
        })
    };

    // Where the temp is written while the data comes: in -T's directory,
    // else beside its file (watched until the push ends).
    let watch = TempWatch::start(&root, temp_dir);
    let out = jcp(relay.port()).await.unwrap();
    let (in_temp_dir, beside) = watch.stop();
    assert!(
        relay.is_cut(),
        "the push ended before the cut: {}",
        describe(&out)
    );
    assert_eq!(
        (in_temp_dir, beside),
        (temp_dir.is_some(), temp_dir.is_none()),
        "where the temp was written (in {temp_dir:?}, beside the file)"
    );
    assert_eq!(out.status.code(), Some(4), "{}", describe(&out));
    assert_eq!(
        fs::read(root.join("big.bin")).unwrap(),
        old,
        "the interrupted push changed the target"
    );
    // Let the server notice the dead connection and put away what arrived.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline
        && temp_leftovers(&root)
            .iter()
            .any(|p| p.windows(11).any(|w| w == b".jsync-tmp."))
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Some(d) = partial_dir {
        let kept = fs::metadata(root.join(d).join("big.bin")).map(|m| m.len());
        assert!(
            kept.as_ref().is_ok_and(|&n| n > 0),
            "no partial in {d}: {kept:?}"
        );
    }
    if temp_dir.is_some() || preallocate {
        let kept = fs::metadata(root.join(".big.bin.jsync-partial")).map(|m| m.len());
        assert!(
            kept.as_ref().is_ok_and(|&n| n > 0 && n < SIZE as u64),
            "no partial beside the file, or one as long as the whole: {kept:?}"
        );
    }

    let out = jcp(srv.port).await.unwrap();
    assert_ok(&out, "the resumed push");
    assert!(
        fs::read(root.join("big.bin")).unwrap() == data,
        "the resumed file is wrong"
    );
    let literal = stat(&out.stdout, "Literal data:");
    assert!(
        literal < 48 << 20,
        "the resumed push sent {literal} literal bytes of {SIZE}, though about 40 MiB had arrived: {}",
        describe(&out)
    );
    let left = temp_leftovers(&root);
    assert!(left.is_empty(), "left behind: {left:?}");
    if let Some(d) = temp_dir {
        let held = fs::read_dir(root.join(d)).unwrap().count();
        assert_eq!(held, 0, "{d} still holds files");
    }
    if let Some(d) = partial_dir {
        assert!(!root.join(d).exists(), "{d} is removed once empty");
    }
}

/// Watches, from another thread, whether a temp file (`.NAME.jsync-tmp.*`)
/// shows in the root and in its directory `temp_dir`.
struct TempWatch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    seen: std::thread::JoinHandle<(bool, bool)>,
}

impl TempWatch {
    fn start(root: &Path, temp_dir: Option<&str>) -> TempWatch {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (root, dir) = (root.to_path_buf(), temp_dir.map(|d| root.join(d)));
        let flag = stop.clone();
        let seen = std::thread::spawn(move || {
            let has_temp = |d: &Path| {
                fs::read_dir(d).is_ok_and(|it| {
                    it.flatten()
                        .any(|e| jsync_tests::meta::is_temp_name(e.file_name().as_bytes()))
                })
            };
            let (mut in_dir, mut beside) = (false, false);
            while !flag.load(Ordering::Acquire) {
                in_dir |= dir.as_deref().is_some_and(has_temp);
                beside |= has_temp(&root);
                std::thread::sleep(Duration::from_millis(2));
            }
            (in_dir, beside)
        });
        TempWatch { stop, seen }
    }

    /// Whether a temp showed in the temp directory, and in the root.
    fn stop(self) -> (bool, bool) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        self.seen.join().unwrap()
    }
}

// ---------------------------------------------------------------------------
// 12. Owners

fn owners(way: Way, opts: &[&str]) {
    use std::os::unix::fs::{chown, lchown};
    if !is_root() {
        eprintln!("not root: cannot give files away; skipping");
        return;
    }
    let w = World::new(way);
    let p = w.pair("owners");
    let s = &p.src;
    put(
        &s.join("owned.txt"),
        b"owned by nobody known",
        0o644,
        1_600_000_000,
    );
    put(
        &s.join("group-only.txt"),
        b"root's, another group",
        0o644,
        1_600_000_001,
    );
    put(&s.join("dir/inside.txt"), b"inside", 0o644, 1_600_000_002);
    put(&s.join("root.txt"), b"root's", 0o644, 1_600_000_003);
    std::os::unix::fs::symlink("owned.txt", s.join("link")).unwrap();
    chown(s.join("owned.txt"), Some(4242), Some(4243)).unwrap();
    chown(s.join("group-only.txt"), None, Some(4244)).unwrap();
    chown(s.join("dir"), Some(4245), Some(4246)).unwrap();
    lchown(s.join("link"), Some(4247), Some(4248)).unwrap();
    let what = format!("jcp {}SRC DST ({way:?})", opts.join(" ") + " ");
    assert_ok(&w.sync(&p, opts), &what);
    for rel in [
        "owned.txt",
        "group-only.txt",
        "dir",
        "dir/inside.txt",
        "root.txt",
        "link",
    ] {
        let (a, b) = (lstat(&s.join(rel)), lstat(&p.dst.join(rel)));
        assert_eq!(
            (b.uid(), b.gid()),
            (a.uid(), a.gid()),
            "{what}: owner of {rel}"
        );
    }
    // Still there after a change, and the mode survives the chown.
    put(&s.join("owned.txt"), b"changed", 0o4755, 1_700_000_000);
    chown(s.join("owned.txt"), Some(4242), Some(4243)).unwrap();
    fs::set_permissions(s.join("owned.txt"), fs::Permissions::from_mode(0o4755)).unwrap();
    assert_ok(&w.sync(&p, opts), &what);
    let b = lstat(&p.dst.join("owned.txt"));
    assert_eq!(
        (b.uid(), b.gid(), b.mode() & 0o7777),
        (4242, 4243, 0o4755),
        "{what}"
    );
}

#[test]
fn owners_are_kept_when_root_receives_locally() {
    owners(Way::Local, &[]);
    owners(Way::Local, &["--numeric-ids"]);
}

#[test]
fn owners_are_kept_when_root_receives_on_a_server() {
    owners(Way::Push(Net::Tls), &[]);
    owners(Way::Push(Net::Tls), &["--numeric-ids"]);
}
