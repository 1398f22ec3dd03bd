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
