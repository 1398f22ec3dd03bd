//! The sync engine through the library API: local copies, pushes and pulls against
//! an in-process server, deltas and no-op runs, with trees compared byte for byte.

use std::path::Path;

use jsync::sync::{self, SyncOptions};
use jsync::Services;
use jsync_tests::tree::{assert_same_tree, make_tree};
use jsync_tests::{client, pseudo_random, Keys, TestServer, TRANSPORTS};

fn opts() -> SyncOptions {
    SyncOptions::default()
}

#[tokio::test(flavor = "multi_thread")]
async fn local_sync_copies_then_does_nothing() {
    let work = tempfile::tempdir().unwrap();
    let a = work.path().join("a");
    make_tree(&a, 2 << 20);
    let b = work.path().join("b");
    let r = sync::local(Path::new(&format!("{}/", a.display())), &b, &opts())
        .await
        .unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_same_tree(&a, &b);
    assert!(r.files_transferred > 5);
    let r = sync::local(Path::new(&format!("{}/", a.display())), &b, &opts())
        .await
        .unwrap();
    assert_eq!(r.files_transferred, 0, "{r}");
    assert_eq!(r.bytes_literal, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn push_and_pull_with_a_delta_over_each_transport() {
    for t in TRANSPORTS {
        let keys = Keys::new();
        let work = tempfile::tempdir().unwrap();
        let root = work.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        let src = work.path().join("src");
        make_tree(&src, 8 << 20);
        let srv = TestServer::start(keys.server(), sync::server_services(root.clone(), false));
        let link = client(keys.client(), Services::new(), t)
            .connect(&srv.addr_string())
            .await
            .unwrap();
        let src_arg = format!("{}/", src.display());
        let r = sync::push(&link, Path::new(&src_arg), "dst", &opts())
            .await
            .unwrap();
        assert!(r.errors.is_empty(), "{t}: {:?}", r.errors);
        assert_same_tree(&src, &root.join("dst"));

        let mut data = std::fs::read(src.join("big.bin")).unwrap();
        data.splice(100..100, pseudo_random(33, 1));
        std::fs::write(src.join("big.bin"), &data).unwrap();
        let r = sync::push(&link, Path::new(&src_arg), "dst", &opts())
            .await
            .unwrap();
        assert_same_tree(&src, &root.join("dst"));
        assert_eq!(r.files_transferred, 1, "{t}: {r}");
        assert!(r.bytes_literal < 200_000, "{t}: {r}");
        assert!(r.wire_bytes < 400_000, "{t}: {r}");

        let pulled = work.path().join("pulled");
        let r = sync::pull(&link, "dst/", &pulled, &opts()).await.unwrap();
        assert!(r.errors.is_empty(), "{t}: {:?}", r.errors);
        assert_same_tree(&src, &pulled);
        link.close("done").await;
    }
}

/// A file cut short to a small part of what the receiver has (a log
/// truncated, say): the receiver cuts only as much of its copy as a file of
/// the new size warrants (chunker's sig_limit: here about 5,300 chunks of 2 KiB,
/// 11 MB of the 32 MiB), so the signature stays small (about 95 KB; the whole
/// copy's would be 300 KB), and what the file keeps from the copy's start
/// still crosses as copies.
#[tokio::test(flavor = "multi_thread")]
async fn a_file_cut_short_sends_a_signature_for_its_new_size() {
    let keys = Keys::new();
    let work = tempfile::tempdir().unwrap();
    let (src, root) = (work.path().join("src"), work.path().join("root"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(root.join("dst")).unwrap();
    let old = pseudo_random(32 << 20, 31);
    std::fs::write(root.join("dst/log"), &old).unwrap();
    std::fs::write(src.join("log"), &old[..300 << 10]).unwrap();
    let services = sync::server_services(root.clone(), false);
    let (_srv, link) = jsync_tests::serve(&keys, services, TRANSPORTS[0]).await;
    let src_arg = format!("{}/", src.display());
    let r = sync::push(&link, Path::new(&src_arg), "dst", &opts())
        .await
        .unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_same_tree(&src, &root.join("dst"));
    assert_eq!(r.files_transferred, 1, "{r}");
    assert!(r.bytes_literal < 20_000, "{r}");
    assert!(r.wire_bytes < 150_000, "{r}");
    link.close("done").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn checksum_mode_finds_changes_the_quick_check_cannot_see() {
    let work = tempfile::tempdir().unwrap();
    let a = work.path().join("a");
    make_tree(&a, 1 << 20);
    let b = work.path().join("b");
    let src = format!("{}/", a.display());
    sync::local(Path::new(&src), &b, &opts()).await.unwrap();
    // Same size, same mtime, different bytes: invisible to size + mtime.
    let f = a.join("README.txt");
    let t = filetime::FileTime::from_last_modification_time(&std::fs::metadata(&f).unwrap());
    std::fs::write(&f, b"HELLO\n").unwrap();
    filetime::set_file_mtime(&f, t).unwrap();
    let r = sync::local(Path::new(&src), &b, &opts()).await.unwrap();
    assert_eq!(r.files_transferred, 0, "{r}");
    assert_eq!(std::fs::read(b.join("README.txt")).unwrap(), b"hello\n");
    let mut checksum = opts();
    checksum.checksum = true;
    let r = sync::local(Path::new(&src), &b, &checksum).await.unwrap();
    assert_eq!(r.files_transferred, 1, "{r}");
    assert_same_tree(&a, &b);
}

/// Regression: after comparing whole-file hashes the sender cut the same file
/// handle from its end, so a same-size file with new content arrived empty and
/// failed verification.
#[tokio::test(flavor = "multi_thread")]
async fn a_same_size_file_with_new_content_and_mtime_is_rebuilt() {
    let work = tempfile::tempdir().unwrap();
    let a = work.path().join("a");
    make_tree(&a, 1 << 20);
    let b = work.path().join("b");
    let src = format!("{}/", a.display());
    sync::local(Path::new(&src), &b, &opts()).await.unwrap();
    let mut data = std::fs::read(a.join("big.bin")).unwrap();
    data[500_000..500_010].copy_from_slice(b"0123456789");
    let t = filetime::FileTime::from_last_modification_time(
        &std::fs::metadata(a.join("big.bin")).unwrap(),
    );
    std::fs::write(a.join("big.bin"), &data).unwrap();
    filetime::set_file_mtime(
        a.join("big.bin"),
        filetime::FileTime::from_unix_time(t.unix_seconds() + 60, 5),
    )
    .unwrap();
    let r = sync::local(Path::new(&src), &b, &opts()).await.unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.files_transferred, 1, "{r}");
    assert!(r.bytes_reused > 900_000, "{r}");
    assert_same_tree(&a, &b);
}

/// Regression (found by bench/e2e.sh on the kernel tree): a symlink whose target
/// did not change kept its old mtime when only its time differed.
#[tokio::test(flavor = "multi_thread")]
async fn an_unchanged_symlink_still_gets_the_new_mtime() {
    let work = tempfile::tempdir().unwrap();
    let a = work.path().join("a");
    make_tree(&a, 1 << 20);
    let b = work.path().join("b");
    let src = format!("{}/", a.display());
    sync::local(Path::new(&src), &b, &opts()).await.unwrap();
    let link = a.join("link-to-readme");
    let t = filetime::FileTime::from_unix_time(1_700_000_123, 456);
    filetime::set_symlink_file_times(&link, t, t).unwrap();
    let r = sync::local(Path::new(&src), &b, &opts()).await.unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_same_tree(&a, &b);
}

/// `--remove-source-files` removes a source file only while it is what was
/// sent: one changed after it was sent (here by the itemize hook, which
/// sees the file's line before the sender is told it is in place) stays,
/// named in an error, pushed and pulled (where the server is the one that
/// kept it and tells the client).
#[tokio::test(flavor = "multi_thread")]
async fn a_source_file_changed_after_it_was_sent_is_not_removed() {
    struct Touch(std::path::PathBuf);
    impl sync::Progress for Touch {
        fn itemize(&self, line: &str) {
            if line.ends_with("touched.txt") {
                let later = filetime::FileTime::from_unix_time(2_000_000_000, 0);
                filetime::set_file_mtime(&self.0, later).unwrap();
            }
        }
    }
    let keys = Keys::new();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let srv = TestServer::start(keys.server(), sync::server_services(root.clone(), false));
    let link = client(keys.client(), Services::new(), TRANSPORTS[0])
        .connect(&srv.addr_string())
        .await
        .unwrap();
    let (local_src, server_src) = (work.path().join("src"), root.join("src"));
    for (pull, src) in [(false, &local_src), (true, &server_src)] {
        std::fs::create_dir_all(src).unwrap();
        std::fs::write(src.join("touched.txt"), b"touched").unwrap();
        std::fs::write(src.join("moved.txt"), b"moved").unwrap();
        let mut o = opts();
        o.remove_source_files = true;
        o.itemize = true;
        o.progress = std::sync::Arc::new(Touch(src.join("touched.txt")));
        let r = if pull {
            sync::pull(&link, "src/", &work.path().join("pulled"), &o).await
        } else {
            let src_arg = format!("{}/", src.display());
            sync::push(&link, Path::new(&src_arg), "dst", &o).await
        }
        .unwrap();
        let what = if pull { "pull" } else { "push" };
        assert_eq!(r.errors.len(), 1, "{what}: {:?}", r.errors);
        assert_eq!(r.errors[0].path, "touched.txt", "{what}");
        assert!(
            r.errors[0].message.contains("changed since it was sent"),
            "{what}: {:?}",
            r.errors
        );
        assert!(src.join("touched.txt").exists(), "{what}");
        assert!(!src.join("moved.txt").exists(), "{what}");
    }
}

/// A log format without `itemize` (`jcp --log-file` without `-i`): the
/// receiver makes each change's log line and no line for stdout, which
/// would cross the wire for nobody; locally, pushed and pulled.
#[tokio::test(flavor = "multi_thread")]
async fn a_log_format_alone_makes_log_lines_only() {
    #[derive(Default)]
    struct Lines {
        shown: std::sync::Mutex<Vec<String>>,
        logged: std::sync::Mutex<Vec<String>>,
    }
    impl sync::Progress for Lines {
        fn itemize(&self, line: &str) {
            self.shown.lock().unwrap().push(line.to_owned());
        }
        fn log_item(&self, line: &str) {
            self.logged.lock().unwrap().push(line.to_owned());
        }
    }
    let keys = Keys::new();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    std::fs::create_dir_all(root.join("src")).unwrap();
    std::fs::write(root.join("src/new.txt"), b"new").unwrap();
    let srv = TestServer::start(keys.server(), sync::server_services(root.clone(), false));
    let link = client(keys.client(), Services::new(), TRANSPORTS[0])
        .connect(&srv.addr_string())
        .await
        .unwrap();
    let src_arg = format!("{}/", root.join("src").display());
    for what in ["local", "push", "pull"] {
        let lines = std::sync::Arc::new(Lines::default());
        let mut o = opts();
        o.log_format = Some(sync::OutFormat::parse("%i %n%L").unwrap());
        o.progress = lines.clone();
        let r = match what {
            "local" => sync::local(Path::new(&src_arg), &work.path().join("local"), &o).await,
            "push" => sync::push(&link, Path::new(&src_arg), "pushed", &o).await,
            _ => sync::pull(&link, "src/", &work.path().join("pulled"), &o).await,
        }
        .unwrap();
        assert!(r.errors.is_empty(), "{what}: {:?}", r.errors);
        let mut logged = lines.logged.lock().unwrap().clone();
        logged.sort();
        assert_eq!(logged, [">f+++++++++ new.txt", "cd+++++++++ ./"], "{what}");
        assert!(lines.shown.lock().unwrap().is_empty(), "{what}");
    }
}

/// `--delay-updates`: no received file is in place before the last one
/// arrives (the receiver stages each as its partial file and renames them
/// all at the end); without it, each is in place by then. Pulled over one
/// lane, so the receiver takes the files in list order and starts the last
/// (large) one after the others are done; either way the run ends with the
/// source's tree.
#[tokio::test(flavor = "multi_thread")]
async fn delay_updates_puts_files_in_place_at_the_end() {
    /// At the start of `zz-last.bin`, which of the others are in place.
    struct Look {
        dst: std::path::PathBuf,
        src: std::path::PathBuf,
        in_place: std::sync::Mutex<Vec<(String, bool, bool)>>,
    }
    impl sync::Progress for Look {
        fn file_started(&self, path: &str, _size: u64) {
            if path != "zz-last.bin" {
                return;
            }
            let mut seen = self.in_place.lock().unwrap();
            for i in 0..20 {
                let name = format!("f{i:02}.txt");
                let now = std::fs::read(self.dst.join(&name)).ok();
                let new = std::fs::read(self.src.join(&name)).ok();
                // Staged, a file waits as its partial file.
                let partial = format!(".{name}.jsync-partial");
                let waiting = std::fs::read(self.dst.join(partial)).ok();
                let (placed, staged) = (now.is_some() && now == new, waiting == new);
                seen.push((name, placed, staged));
            }
        }
    }
    let keys = Keys::new();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    let src = root.join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..20 {
        std::fs::write(src.join(format!("f{i:02}.txt")), format!("new {i}")).unwrap();
    }
    std::fs::write(src.join("zz-last.bin"), pseudo_random(1 << 20, 3)).unwrap();
    let srv = TestServer::start(keys.server(), sync::server_services(root.clone(), false));
    let link = client(keys.client(), Services::new(), TRANSPORTS[0])
        .connect(&srv.addr_string())
        .await
        .unwrap();
    for delay in [true, false] {
        let dst = work.path().join(format!("dst-{delay}"));
        std::fs::create_dir_all(&dst).unwrap();
        // One file replaced, the rest new.
        std::fs::write(dst.join("f03.txt"), b"old").unwrap();
        let look = std::sync::Arc::new(Look {
            dst: dst.clone(),
            src: src.clone(),
            in_place: Default::default(),
        });
        let mut o = opts();
        o.delay_updates = delay;
        o.parallel = 1;
        o.progress = look.clone();
        let r = sync::pull(&link, "src/", &dst, &o).await.unwrap();
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_same_tree(&src, &dst);
        let seen = look.in_place.lock().unwrap();
        assert_eq!(seen.len(), 20, "{seen:?}");
        assert!(
            seen.iter()
                .all(|(_, placed, staged)| *placed != delay && *staged == delay),
            "delay {delay}: {seen:?}"
        );
    }
}

/// Where a sync of one large file runs: locally, pushed into a server's root,
/// or pulled out of it.
#[derive(Debug, Clone, Copy)]
enum Way {
    Local,
    Push,
    Pull,
}

/// Syncs the directory `src` to `dst` (`root` is the server's root; pulls
/// come from beneath it, pushes go beneath it).
async fn sync_way(
    way: Way,
    link: &jsync::Link,
    root: &Path,
    src: &Path,
    dst: &Path,
    o: &SyncOptions,
) -> sync::Report {
    let src_arg = format!("{}/", src.display());
    let rel = |p: &Path| p.strip_prefix(root).unwrap().to_str().unwrap().to_owned();
    let r = match way {
        Way::Local => sync::local(Path::new(&src_arg), dst, o).await,
        Way::Push => sync::push(link, Path::new(&src_arg), &rel(dst), o).await,
        Way::Pull => sync::pull(link, &format!("{}/", rel(src)), dst, o).await,
    }
    .unwrap();
    assert!(r.errors.is_empty(), "{way:?}: {:?}", r.errors);
    r
}

/// `dir/src` and `dir/dst`, made.
fn src_and_dst(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (src, dst) = (dir.join("src"), dir.join("dst"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&dst).unwrap();
    (src, dst)
}

/// A local sync of the contents of `src` into `dst` that reports no errors.
async fn local_ok(src: &Path, dst: &Path, o: &SyncOptions) -> sync::Report {
    let src_arg = format!("{}/", src.display());
    let r = sync::local(Path::new(&src_arg), dst, o).await.unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    r
}

/// A change made to a file's bytes.
type Change = fn(&mut Vec<u8>);

fn ino(p: &Path) -> u64 {
    std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap())
}

fn set_mtime(p: &Path, secs: i64) {
    filetime::set_file_mtime(p, filetime::FileTime::from_unix_time(secs, 0)).unwrap();
}

/// A large file's delta, each way over each transport. A copy that only has
/// a new mtime is found the same while the signature streams in, and keeps
/// its inode (nothing rewritten; no hash check first for a file over 64 MiB);
/// one changed in place, grown, cut short, or with bytes put in front, is
/// rebuilt exactly from its old chunks. The sender reads its file along with
/// the receiver's chunks as they come (those of a file this large average 16
/// KiB): a few that differ between ones that match go as literals (an edit in
/// place); more than a few in a row, and the rest is cut and matched.
#[tokio::test(flavor = "multi_thread")]
async fn large_file_deltas_each_way() {
    const SIZE: usize = 65 << 20;
    for t in TRANSPORTS {
        let keys = Keys::new();
        let work = tempfile::tempdir().unwrap();
        let root = work.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        let srv = TestServer::start(keys.server(), sync::server_services(root.clone(), false));
        let link = client(keys.client(), Services::new(), t)
            .connect(&srv.addr_string())
            .await
            .unwrap();
        for way in [Way::Local, Way::Push, Way::Pull] {
            let (src, dst) = match way {
                Way::Local => (work.path().join("src-l"), work.path().join("dst-l")),
                Way::Push => (work.path().join("src-p"), root.join("dst-p")),
                Way::Pull => (root.join("src-q"), work.path().join("dst-q")),
            };
            std::fs::create_dir_all(&src).unwrap();
            let big = src.join("big.bin");
            let mut data = pseudo_random(SIZE, 5);
            std::fs::write(&big, &data).unwrap();
            set_mtime(&big, 1_700_000_000);
            sync_way(way, &link, &root, &src, &dst, &opts()).await;
            assert_same_tree(&src, &dst);

            let what = format!("{t} {way:?}");
            let before = ino(&dst.join("big.bin"));
            set_mtime(&big, 1_700_000_100);
            let r = sync_way(way, &link, &root, &src, &dst, &opts()).await;
            assert_same_tree(&src, &dst);
            assert_eq!(r.files_transferred, 0, "{what} touched: {r}");
            assert_eq!(r.bytes_literal, 0, "{what} touched: {r}");
            assert_eq!(ino(&dst.join("big.bin")), before, "{what}: rewritten");

            // Each change, and the most literal bytes it may take: what it
            // wrote, and a few chunks around it.
            let changes: [(&str, Change, u64); 6] = [
                (
                    "edited",
                    |d| d[5_000_000..5_000_010].copy_from_slice(b"0123456789"),
                    150_000,
                ),
                (
                    "overwritten in place, a few chunks",
                    |d| d[20_000_000..20_060_000].copy_from_slice(&pseudo_random(60_000, 8)),
                    250_000,
                ),
                (
                    "overwritten in place, many chunks",
                    |d| d[30_000_000..30_600_000].copy_from_slice(&pseudo_random(600_000, 9)),
                    800_000,
                ),
                ("grown", |d| d.extend(pseudo_random(300_000, 6)), 450_000),
                ("cut short", |d| d.truncate(d.len() - (1 << 20)), 150_000),
                (
                    "put in front",
                    |d| {
                        d.splice(0..0, pseudo_random(1000, 7));
                    },
                    150_000,
                ),
            ];
            for (i, (change, apply, most)) in changes.into_iter().enumerate() {
                apply(&mut data);
                std::fs::write(&big, &data).unwrap();
                set_mtime(&big, 1_700_000_200 + i as i64);
                let r = sync_way(way, &link, &root, &src, &dst, &opts()).await;
                assert_same_tree(&src, &dst);
                assert_eq!(r.files_transferred, 1, "{what} {change}: {r}");
                assert!(r.bytes_literal < most, "{what} {change}: {r}");
                assert!(r.bytes_reused > (60 << 20), "{what} {change}: {r}");
            }
        }
        link.close("done").await;
    }
}

/// A delta whose basis is not the target (here a `--fuzzy` sibling) and that
/// the sender finds to be that basis exactly: the new file is made as a copy
/// of it, and the sibling is left as it was.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_file_the_same_as_its_fuzzy_basis_is_copied_from_it() {
    let work = tempfile::tempdir().unwrap();
    let (src, dst) = src_and_dst(work.path());
    let data = pseudo_random(2 << 20, 8);
    std::fs::write(src.join("new.bin"), &data).unwrap();
    std::fs::write(dst.join("old.bin"), &data).unwrap();
    // A sibling of the same size and mtime is the basis.
    set_mtime(&src.join("new.bin"), 1_700_000_000);
    set_mtime(&dst.join("old.bin"), 1_700_000_000);
    let old = ino(&dst.join("old.bin"));
    let mut o = opts();
    o.fuzzy = true;
    let r = local_ok(&src, &dst, &o).await;
    assert_eq!(r.files_transferred, 1, "{r}");
    assert_eq!(r.bytes_literal, 0, "{r}");
    assert_eq!(std::fs::read(dst.join("new.bin")).unwrap(), data);
    assert_eq!(std::fs::read(dst.join("old.bin")).unwrap(), data);
    assert_eq!(ino(&dst.join("old.bin")), old);
    assert_ne!(ino(&dst.join("new.bin")), old);
}

/// A basis with a hole whose data, back to back, is the new file: the new
/// file is the receiver's chunks exactly, but the copy here also holds the
/// hole (and so has another size), so it is rebuilt from those chunks.
#[tokio::test(flavor = "multi_thread")]
async fn a_basis_with_a_hole_is_rebuilt_even_when_its_chunks_are_the_file() {
    use std::os::unix::fs::FileExt;
    let work = tempfile::tempdir().unwrap();
    let (src, dst) = src_and_dst(work.path());
    let (a, b) = (pseudo_random(3 << 20, 9), pseudo_random(3 << 20, 10));
    std::fs::write(src.join("f.bin"), [&a[..], &b[..]].concat()).unwrap();
    let f = std::fs::File::create(dst.join("f.bin")).unwrap();
    f.write_all_at(&a, 0).unwrap();
    f.write_all_at(&b, (5 << 20) as u64).unwrap();
    drop(f);
    set_mtime(&dst.join("f.bin"), 1_600_000_000);
    let r = local_ok(&src, &dst, &opts()).await;
    assert_eq!(r.files_transferred, 1, "{r}");
    assert_eq!(r.bytes_literal, 0, "{r}");
    assert_same_tree(&src, &dst);
}

/// Regression (found by the fidelity seeds): a sparse source file whose
/// receiver has the same bytes written out (a dense copy, here one byte
/// longer) keeps its holes: the sender follows the receiver's chunks only
/// through its own first data, so its holes go as holes, not as copies of
/// the receiver's zeros.
#[tokio::test(flavor = "multi_thread")]
async fn a_sparse_file_stays_sparse_when_the_receivers_copy_is_dense() {
    use std::os::unix::fs::{FileExt, MetadataExt};
    let work = tempfile::tempdir().unwrap();
    let (src, dst) = src_and_dst(work.path());
    let (a, b) = (pseudo_random(1 << 20, 11), pseudo_random(1 << 20, 12));
    let f = std::fs::File::create(src.join("f.bin")).unwrap();
    f.write_all_at(&a, 0).unwrap();
    f.write_all_at(&b, 3 << 20).unwrap();
    drop(f);
    let dense = [&a[..], &vec![0; 2 << 20], &b[..], b"!"].concat();
    std::fs::write(dst.join("f.bin"), dense).unwrap();
    set_mtime(&dst.join("f.bin"), 1_600_000_000);
    let r = local_ok(&src, &dst, &opts()).await;
    assert_same_tree(&src, &dst);
    let m = std::fs::metadata(dst.join("f.bin")).unwrap();
    assert!(
        m.blocks() * 512 < (3 << 20),
        "not sparse: {} bytes",
        m.blocks() * 512
    );
    assert!(r.bytes_literal < 200_000, "{r}");
}

/// Bytes put in near the start of a file whose data alternates with runs of
/// zeros written out: the zero chunks match wherever the bytes were put in,
/// but only a chunk the receiver has once ends a run of differing ranges, so
/// the shifted data is cut and found, not sent again as edits in place.
#[tokio::test(flavor = "multi_thread")]
async fn an_insertion_before_runs_of_zeros_is_not_taken_for_edits_in_place() {
    let work = tempfile::tempdir().unwrap();
    let (src, dst) = src_and_dst(work.path());
    // Data of a few chunks, then zeros over many largest chunks (64 KiB).
    let mut data = Vec::new();
    for i in 0..64 {
        data.extend(pseudo_random(32 << 10, 100 + i));
        data.extend(vec![0u8; 512 << 10]);
    }
    std::fs::write(dst.join("f.bin"), &data).unwrap();
    set_mtime(&dst.join("f.bin"), 1_600_000_000);
    data.splice(1000..1000, pseudo_random(100, 7));
    std::fs::write(src.join("f.bin"), &data).unwrap();
    let r = local_ok(&src, &dst, &opts()).await;
    assert_same_tree(&src, &dst);
    assert!(r.bytes_literal < 600_000, "{r}");
}
