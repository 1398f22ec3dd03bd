//! A hostile sender against the real receiver: a peer that speaks the sync
//! protocol but lists paths that climb out of the destination (`..`, absolute
//! paths, paths through symlinks it lists itself, hard links to files outside)
//! and sends content for all of them. Run both ways, as a server a client pulls
//! from and as a client pushing into a server, the receiver must write nothing
//! outside its destination, name each refused path, and still take the honest
//! entries of the same list. And a hostile receiver against the real sender:
//! it gets nothing the sender did not list as a file.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use jsync::sync::{self, SyncOptions, GIVE, TAKE};
use jsync::{Circuit, Peer, Services};
use jsync_tests::{client, Keys, TestServer, TRANSPORTS};
use proto::sync::{
    self as msg, Entry, EntryBatch, EntryKind, FileMeta, FileRecord, HardLink, Source, Verdict,
    Want, WantHow, Wants, WholeFile,
};
use proto::{decode_exact, encode_to_vec, Fragment};

/// The paths the hostile list must not get written, relative to `work`.
const ESCAPES: [&str; 3] = ["escape", "escape2", "escape3"];

fn file(path: &[u8], size: u64) -> Entry {
    Entry {
        path: path.to_vec(),
        kind: EntryKind::File,
        mode: 0o644,
        size,
        mtime: (1_700_000_000, 0),
        ..Entry::default()
    }
}

fn symlink(path: &[u8], target: &[u8]) -> Entry {
    Entry {
        path: path.to_vec(),
        kind: EntryKind::Symlink,
        mode: 0o777,
        mtime: (1_700_000_000, 0),
        target: target.to_vec(),
        ..Entry::default()
    }
}

/// What the hostile sender sends for every file it is asked for.
const EVIL: &[u8] = b"planted by a hostile peer\n";
/// The one honest file of the list, and its content.
const HONEST: &[u8] = b"ok.txt";
/// Files (named so) the hostile sender answers a delta for with UNCHANGED
/// (the receiver's chunks, it claims, with a digest of zeros), whatever they
/// are.
const UNCHANGED_LIE: &[u8] = b"lie";
/// Files (named so) the hostile sender answers with a recipe that is no
/// recipe.
const BAD_RECIPE: &[u8] = b"bad-recipe";
const HONEST_DATA: &[u8] = b"an honest file\n";

/// The hostile list, for a destination `dst_depth` levels below `work`, with
/// `work/outside` and the destination's sibling `beside` (each holding
/// `sentinel`) and an absolute path `abs` that must not come to exist.
fn hostile_list(dst_depth: usize, outside: &Path, abs: &Path) -> Vec<Entry> {
    // From the destination up to `work`, then into `outside`.
    let up = "../".repeat(dst_depth);
    let e = |s: String| s.into_bytes();
    let outside_abs = outside.as_os_str().as_encoded_bytes().to_vec();
    vec![
        file(HONEST, HONEST_DATA.len() as u64),
        // Climbing out by name.
        file(&e(format!("{up}escape")), EVIL.len() as u64),
        file(abs.as_os_str().as_encoded_bytes(), EVIL.len() as u64),
        file(&e(format!("a/../../{up}escape2")), EVIL.len() as u64),
        Entry {
            kind: EntryKind::Dir,
            mode: 0o755,
            ..file(b"sub", 0)
        },
        file(&e(format!("sub/../../{up}escape3")), EVIL.len() as u64),
        // Climbing out through symlinks the list itself makes (to `outside`,
        // which is outside a server's root, and `beside`, which is not).
        symlink(b"out", &outside_abs),
        file(b"out/planted", EVIL.len() as u64),
        symlink(b"up", &e(format!("{up}outside"))),
        file(b"up/planted", EVIL.len() as u64),
        // A hard link to a file outside, by way of a refused leader.
        Entry {
            link: HardLink::Leader,
            ..file(&e(format!("{up}outside/sentinel")), EVIL.len() as u64)
        },
        Entry {
            link: HardLink::Follower(10),
            ..file(b"stolen", EVIL.len() as u64)
        },
        // Next to the destination, still inside the receiver's own root.
        symlink(b"side", b"../beside"),
        file(b"side/planted", EVIL.len() as u64),
    ]
}

/// A directory sent by its contents (`src/`).
fn dir_source() -> Source {
    Source {
        kind: EntryKind::Dir,
        name: b"src".to_vec(),
        contents: true,
        listed: false,
    }
}

/// [`dir_source`] as a listing (`--files-from`, `-R`) sends it.
fn listing_source() -> Source {
    Source {
        listed: true,
        ..dir_source()
    }
}

/// A server whose GIVE is [`hostile_give`] of `source` and `entries`, and a
/// client connected to it over `t`.
async fn hostile_server(
    keys: &Keys,
    source: Source,
    entries: Vec<Entry>,
    t: jsync::Transport,
) -> (TestServer, jsync::Link) {
    hostile_server_with(keys, source, entries, t, hostile_lane).await
}

/// [`hostile_server`] whose lanes are answered by `lane`.
async fn hostile_server_with<L, F>(
    keys: &Keys,
    source: Source,
    entries: Vec<Entry>,
    t: jsync::Transport,
    lane: L,
) -> (TestServer, jsync::Link)
where
    L: Fn(Circuit, Vec<Entry>) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let services = Services::new().with(GIVE, move |peer| {
        let (source, entries, lane) = (source.clone(), entries.clone(), lane.clone());
        async move { hostile_give(peer, source, entries, lane).await.map(drop) }
    });
    jsync_tests::serve(keys, services, t).await
}

/// A single file sent under `name`.
fn file_source(name: &[u8]) -> Source {
    Source {
        kind: EntryKind::File,
        name: name.to_vec(),
        contents: false,
        listed: false,
    }
}

/// Plays the sender of `source` on `peer`: lists `entries` and answers the
/// requests on each lane with `lane` ([`hostile_lane`]: every file with
/// content, the honest file's own, [`EVIL`] for the rest). Returns the
/// receiver's report.
async fn hostile_give<L, F>(
    peer: Peer,
    source: Source,
    entries: Vec<Entry>,
    lane: L,
) -> anyhow::Result<msg::Stats>
where
    L: Fn(Circuit, Vec<Entry>) -> F + Send + 'static,
    F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let control = peer
        .accept()
        .await?
        .context("the receiver opened no control circuit")?;
    let (mut tx, mut rx) = control.split();
    tx.send(Fragment::new(msg::SOURCE).with_payload(encode_to_vec(&source)))
        .await?;
    tx.send(Fragment::new(msg::LIST).with_payload(encode_to_vec(&EntryBatch(entries.clone()))))
        .await?;
    tx.send(Fragment::new(msg::LIST_END).with_part(entries.len() as u64))
        .await?;
    let (lane_tx, mut lane_rx) = tokio::sync::mpsc::unbounded_channel();
    let acceptor = {
        let peer = peer.clone();
        tokio::spawn(async move {
            while let Ok(Some(c)) = peer.accept().await {
                let _ = lane_tx.send(tokio::spawn(lane(c, entries.clone())));
            }
        })
    };
    let mut report = None;
    while let Some(f) = rx.recv().await? {
        if f.op == msg::REPORT {
            report = Some(decode_exact::<msg::Stats>(&f.payload)?);
        }
    }
    tx.finish().await?;
    acceptor.abort();
    // Every lane answered what it was asked without a protocol slip of its own.
    while let Ok(lane) = lane_rx.try_recv() {
        if lane.is_finished() {
            lane.await??;
        } else {
            lane.abort();
        }
    }
    report.context("the receiver sent no report")
}

/// What the hostile sender sends as `e`: the honest file's own content,
/// [`EVIL`] for every other entry, with `e`'s mode and time.
fn whole(e: &Entry) -> WholeFile<'static> {
    let data = if e.path == HONEST { HONEST_DATA } else { EVIL };
    WholeFile {
        meta: FileMeta {
            size: data.len() as u64,
            ..e.file_meta()
        },
        hash: *blake3::hash(data).as_bytes(),
        data,
    }
}

/// Answers one lane's requests until the receiver half-closes it.
async fn hostile_lane(mut c: Circuit, entries: Vec<Entry>) -> anyhow::Result<()> {
    let entry = |i: u64| {
        entries
            .get(i as usize)
            .context("asked for an unlisted entry")
    };
    while let Some(f) = c.recv().await? {
        if f.op == msg::WANTS {
            let wants: Wants = decode_exact(&f.payload)?;
            let mut payload = Vec::new();
            for i in wants.0 {
                FileRecord::Whole(whole(entry(i)?)).encode(&mut payload);
            }
            c.send(Fragment::new(msg::FILES).with_payload(payload))
                .await?;
        } else if f.op == msg::WANT {
            let want: Want = decode_exact(&f.payload)?;
            if want.how == WantHow::Delta {
                while let Some(s) = c.recv().await? {
                    if s.op == msg::SIG_END {
                        break;
                    }
                }
            }
            let e = entry(want.index)?;
            if e.path.starts_with(BAD_RECIPE) {
                let meta = encode_to_vec(&e.file_meta());
                c.send(Fragment::new(msg::META).with_payload(meta)).await?;
                c.send(Fragment::new(msg::RECIPE).with_payload(vec![0xff; 8]))
                    .await?;
                continue;
            }
            if e.path.starts_with(UNCHANGED_LIE) && want.how == WantHow::Delta {
                let meta = encode_to_vec(&e.file_meta());
                c.send(Fragment::new(msg::META).with_payload(meta)).await?;
                let end = msg::End {
                    size: e.size,
                    digest: [0; 32],
                };
                c.send(Fragment::new(msg::UNCHANGED).with_payload(encode_to_vec(&end)))
                    .await?;
                continue;
            }
            let mut payload = Vec::new();
            whole(entry(want.index)?).encode(&mut payload);
            c.send(Fragment::new(msg::FILE).with_payload(payload))
                .await?;
        } else if f.op == msg::CHECKS {
            let checks: msg::Checks = decode_exact(&f.payload)?;
            let mut payload = Vec::new();
            for _ in checks.0 {
                Verdict::Differs.encode(&mut payload);
            }
            c.send(Fragment::new(msg::VERDICTS).with_payload(payload))
                .await?;
        } else {
            anyhow::bail!("unexpected {} on a lane", f.op);
        }
    }
    c.finish().await?;
    Ok(())
}

/// How [`unchanged_lane`] answers.
#[derive(Clone)]
struct AsUnchanged {
    /// The bytes the receiver holds.
    theirs: Arc<Vec<u8>>,
    /// Runs just before the answer: what changes the receiver's copy after
    /// it was cut.
    meanwhile: Arc<dyn Fn() + Send + Sync>,
    /// The receiver's chunk lengths, learnt from an earlier signature of the
    /// same bytes. While they are known, the answer goes right after the
    /// signature's first batch, before its end.
    lens: Arc<Mutex<Option<Vec<usize>>>>,
    /// Signature batches that came after an answer.
    late: Arc<std::sync::atomic::AtomicUsize>,
}

impl AsUnchanged {
    fn new(theirs: Vec<u8>, meanwhile: impl Fn() + Send + Sync + 'static) -> AsUnchanged {
        AsUnchanged {
            theirs: Arc::new(theirs),
            meanwhile: Arc::new(meanwhile),
            lens: Arc::default(),
            late: Arc::default(),
        }
    }

    /// META, then UNCHANGED with the digest of the receiver's chunks of
    /// these lengths, as an honest sender whose file is exactly them sends.
    async fn answer(&self, c: &mut Circuit, e: &Entry, lens: &[usize]) -> anyhow::Result<()> {
        // The chunk-list digest (chunker.rs's chunk_list_digest, with its
        // DIGEST_CONTEXT): BLAKE3 in derive-key mode over each chunk's length
        // (u32 LE) and full hash.
        let mut digest = blake3::Hasher::new_derive_key("jsync 2026 chunk-list digest");
        let mut at = 0;
        for &len in lens {
            digest.update(&(len as u32).to_le_bytes());
            digest.update(blake3::hash(&self.theirs[at..at + len]).as_bytes());
            at += len;
        }
        anyhow::ensure!(at == self.theirs.len(), "the signature covers {at} bytes");
        (self.meanwhile)();
        c.send(Fragment::new(msg::META).with_payload(encode_to_vec(&e.file_meta())))
            .await?;
        let end = msg::End {
            size: e.size,
            digest: *digest.finalize().as_bytes(),
        };
        c.send(Fragment::new(msg::UNCHANGED).with_payload(encode_to_vec(&end)))
            .await?;
        Ok(())
    }
}

/// Answers a lane as an honest sender whose one file is exactly the
/// receiver's copy ([`AsUnchanged`]): every check "differs", and a delta
/// UNCHANGED, with the digest of the receiver's own chunks.
async fn unchanged_lane(
    mut c: Circuit,
    entries: Vec<Entry>,
    how: AsUnchanged,
) -> anyhow::Result<()> {
    while let Some(f) = c.recv().await? {
        if f.op == msg::CHECKS {
            let checks: msg::Checks = decode_exact(&f.payload)?;
            let mut payload = Vec::new();
            for _ in checks.0 {
                Verdict::Differs.encode(&mut payload);
            }
            c.send(Fragment::new(msg::VERDICTS).with_payload(payload))
                .await?;
            continue;
        }
        anyhow::ensure!(f.op == msg::WANT, "unexpected {} on a lane", f.op);
        let want: Want = decode_exact(&f.payload)?;
        anyhow::ensure!(want.how == WantHow::Delta, "asked for {:?}", want.how);
        let e = entries.get(want.index as usize).context("unlisted")?;
        let known = how.lens.lock().unwrap().clone();
        let (mut lens, mut answered) = (Vec::new(), false);
        loop {
            let s = c.recv().await?.context("signature cut short")?;
            if s.op == msg::SIG_END {
                break;
            }
            if answered {
                how.late.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            let mut r = proto::codec::Reader::new(&s.payload);
            for _ in 0..r.varint()? {
                lens.push(r.varint()? as usize);
                r.take(16)?;
            }
            if let Some(known) = known.as_ref().filter(|_| !answered) {
                how.answer(&mut c, e, known).await?;
                answered = true;
            }
        }
        if !answered {
            how.answer(&mut c, e, &lens).await?;
            *how.lens.lock().unwrap() = Some(lens);
        }
    }
    c.finish().await?;
    Ok(())
}

/// A temporary directory holding an empty directory `name`, and that
/// directory's path.
fn scratch(name: &str) -> (tempfile::TempDir, PathBuf) {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join(name);
    std::fs::create_dir(&dir).unwrap();
    (work, dir)
}

/// The scene: `work/outside/sentinel`, `beside/sentinel` next to where the
/// destination will be, and an absolute path outside `work` that must not come
/// to exist.
struct Scene {
    work: tempfile::TempDir,
    abs: PathBuf,
}

/// Makes `dir` holding only `sentinel`.
fn guarded(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("sentinel"), b"untouched\n").unwrap();
}

/// `dir` holds only its untouched `sentinel`, linked nowhere else.
fn assert_guarded(dir: &Path, what: &str) {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["sentinel"], "{what}: files appeared in {dir:?}");
    let sentinel = dir.join("sentinel");
    assert_eq!(std::fs::read(&sentinel).unwrap(), b"untouched\n", "{what}");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(&sentinel).unwrap().nlink(),
        1,
        "{what}: {sentinel:?} was hard-linked"
    );
}

impl Scene {
    fn new() -> Scene {
        let work = tempfile::tempdir().unwrap();
        guarded(&work.path().join("outside"));
        let abs = std::env::temp_dir().join(format!(
            "jsync-hostile-{}-{}",
            std::process::id(),
            work.path().file_name().unwrap().to_string_lossy()
        ));
        Scene { work, abs }
    }

    fn outside(&self) -> PathBuf {
        self.work.path().join("outside")
    }

    /// Nothing was written outside `dst` (whose parent holds `beside`); the
    /// honest file was.
    fn assert_contained(&self, dst: &Path, what: &str) {
        assert_guarded(&self.outside(), what);
        assert_guarded(&dst.parent().unwrap().join("beside"), what);
        for name in ESCAPES {
            let p = self.work.path().join(name);
            assert!(!p.exists(), "{what}: {p:?} was written");
        }
        assert!(!self.abs.exists(), "{what}: {:?} was written", self.abs);
        assert_eq!(
            std::fs::read(dst.join("ok.txt")).unwrap(),
            HONEST_DATA,
            "{what}: the honest file"
        );
        // What the symlinks lead to stays outside; nothing went through them.
        for link in ["out", "up"] {
            if let Ok(m) = std::fs::symlink_metadata(dst.join(link)) {
                assert!(
                    m.file_type().is_symlink(),
                    "{what}: {link} is not a symlink"
                );
            }
        }
        assert!(
            !dst.join("stolen").exists()
                || std::fs::read(dst.join("stolen")).unwrap() != b"untouched\n",
            "{what}: the sentinel's content was linked in"
        );
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.abs);
    }
}

/// Each refused path is named in the receiver's errors (`shown`).
fn assert_named(shown: &[String], abs: &Path, what: &str) {
    let abs = abs.display().to_string();
    let needles = [
        "escape",
        "escape2",
        "escape3",
        "out/planted",
        "up/planted",
        "sentinel",
        "stolen",
        "side/planted",
    ];
    for needle in needles.iter().copied().chain([abs.as_str()]) {
        assert!(
            shown.iter().any(|p| p.ends_with(needle)),
            "{what}: no error names {needle}: {shown:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_server_cannot_make_a_pull_write_outside_its_destination() {
    for t in TRANSPORTS {
        let scene = Scene::new();
        let keys = Keys::new();
        // The pull's destination is work/dst: one level below work.
        let entries = hostile_list(1, &scene.outside(), &scene.abs);
        let (_srv, link) = hostile_server(&keys, dir_source(), entries, t).await;
        let dst = scene.work.path().join("dst");
        guarded(&scene.work.path().join("beside"));
        let what = format!("pull over {t}");
        let r = sync::pull(&link, "src/", &dst, &SyncOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        scene.assert_contained(&dst, &what);
        let shown: Vec<String> = r.errors.iter().map(|e| e.path.clone()).collect();
        assert_named(&shown, &scene.abs, &what);
        link.close("done").await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_client_cannot_make_a_push_write_outside_its_destination() {
    for t in TRANSPORTS {
        let scene = Scene::new();
        let keys = Keys::new();
        let root = scene.work.path().join("root");
        guarded(&root.join("beside"));
        let srv = TestServer::start(keys.server(), sync::server_services(root.clone(), false));
        let link = client(keys.client(), Services::new(), t)
            .connect(&srv.addr_string())
            .await
            .unwrap();
        // The push lands in root/dst: two levels below work.
        let entries = hostile_list(2, &scene.outside(), &scene.abs);
        let peer = link.start(TAKE, &["dst".to_string()]).await.unwrap();
        let what = format!("push over {t}");
        let report = hostile_give(peer, dir_source(), entries, hostile_lane)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e:#}"));
        scene.assert_contained(&root.join("dst"), &what);
        let shown: Vec<String> = report
            .errors
            .iter()
            .map(|e| String::from_utf8_lossy(&e.path).into_owned())
            .collect();
        assert_named(&shown, &scene.abs, &what);
        link.close("done").await;
    }
}

/// A sender that lists a path as missing (a deletion, with
/// `--delete-missing-args`), or names its source as missing, when the
/// receiver did not ask for that, or lists a missing path in a whole
/// directory (only a `--files-from` listing names paths the source may
/// lack): the run fails as a protocol violation, naming the path, and
/// nothing is deleted. Asked for, in a listing, a missing path climbing
/// out of the destination is refused, named, and nothing outside is
/// touched.
#[tokio::test(flavor = "multi_thread")]
async fn missing_paths_delete_only_when_asked_and_only_beneath_the_destination() {
    let keys = Keys::new();
    let (work, _) = scratch("unused");
    let dst = work.path().join("dst");
    std::fs::create_dir_all(&dst).unwrap();
    for f in ["victim", "src"] {
        std::fs::write(dst.join(f), "keep\n").unwrap();
    }
    std::fs::write(work.path().join("outside"), "keep\n").unwrap();
    let missing = |path: &[u8]| Entry {
        path: path.to_vec(),
        kind: EntryKind::Missing,
        ..Entry::default()
    };
    let gone_source = Source {
        kind: EntryKind::Missing,
        ..file_source(b"src")
    };
    let mut asked = SyncOptions::default();
    asked.delete_missing_args = true;
    let listing = listing_source();
    // A listing asked for, without --delete-missing-args; and with it.
    let mut listed = SyncOptions::default();
    listed.only = Some(vec![b"victim".to_vec()]);
    let mut asked_listed = asked.clone();
    asked_listed.only = listed.only.clone();
    let unasked = [
        (
            listing.clone(),
            vec![missing(b"victim")],
            listed,
            "victim: listed as missing",
        ),
        (
            gone_source,
            Vec::new(),
            SyncOptions::default(),
            "src: listed as missing",
        ),
        (
            dir_source(),
            vec![missing(b"victim")],
            asked.clone(),
            "victim: listed as missing",
        ),
        (
            listing.clone(),
            vec![missing(b"victim")],
            asked.clone(),
            "did not ask for",
        ),
    ];
    for (source, entries, opts, named) in unasked {
        let t = TRANSPORTS[0];
        let (_srv, link) = hostile_server(&keys, source, entries, t).await;
        let e = sync::pull(&link, "src", &dst, &opts)
            .await
            .expect_err("a deletion nobody asked for");
        let e = e.to_string();
        assert!(e.contains(named), "{e}");
        for f in ["victim", "src"] {
            assert!(dst.join(f).exists(), "{f}");
        }
        link.close("done").await;
    }
    let entries = vec![missing(b"../outside"), missing(b"victim")];
    let (_srv, link) = hostile_server(&keys, listing, entries, TRANSPORTS[0]).await;
    let r = sync::pull(&link, "src/", &dst, &asked_listed)
        .await
        .unwrap();
    assert!(work.path().join("outside").exists());
    assert!(!dst.join("victim").exists(), "asked for: deleted");
    assert!(
        r.errors.iter().any(|e| e.path.contains("outside")),
        "{:?}",
        r.errors
    );
    link.close("done").await;
}

/// A sender that marks a directory implied (`--no-implied-dirs`: the
/// receiver keeps what it has there, a symlink too) when the receiver did
/// not ask for that, outside a listing, or for the top itself: the run
/// fails as a protocol violation, naming the path, and the symlink the
/// receiver has there stays a symlink.
#[tokio::test(flavor = "multi_thread")]
async fn implied_directories_are_taken_only_when_asked_for() {
    let keys = Keys::new();
    let (work, _) = scratch("unused");
    let dst = work.path().join("dst");
    std::fs::create_dir_all(dst.join("real")).unwrap();
    std::os::unix::fs::symlink("real", dst.join("a")).unwrap();
    let implied = |path: &[u8]| Entry {
        path: path.to_vec(),
        kind: EntryKind::Dir,
        mode: 0o755,
        unlisted: true,
        implied: true,
        ..Entry::default()
    };
    let listing = listing_source();
    let mut listed = SyncOptions::default();
    listed.only = Some(vec![b"a/f".to_vec()]);
    let mut asked = listed.clone();
    asked.no_implied_dirs = true;
    let mut asked_whole = SyncOptions::default();
    asked_whole.no_implied_dirs = true;
    for (source, entries, opts, named) in [
        (
            listing.clone(),
            vec![implied(b"a")],
            listed,
            "a: an implied directory",
        ),
        (
            dir_source(),
            vec![implied(b"a")],
            asked_whole,
            "a: an implied directory",
        ),
        (listing, vec![implied(b"")], asked, "an implied directory"),
    ] {
        let (_srv, link) = hostile_server(&keys, source, entries, TRANSPORTS[0]).await;
        let e = sync::pull(&link, "src/", &dst, &opts)
            .await
            .expect_err("an implied directory nobody asked for");
        let e = e.to_string();
        assert!(e.contains(named), "{e}");
        assert!(dst.join("a").is_symlink(), "{e}");
        link.close("done").await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_server_sending_one_file_cannot_list_more_through_it() {
    let scene = Scene::new();
    let keys = Keys::new();
    // The file lands as work/new (which does not exist yet), so the receiver
    // works in work/; the file's own entry is a symlink to work/outside, and
    // a second entry would be written through it.
    let entries = vec![
        symlink(b"", b"outside"),
        file(b"planted", EVIL.len() as u64),
    ];
    let (_srv, link) = hostile_server(&keys, file_source(b"f"), entries, TRANSPORTS[0]).await;
    let r = sync::pull(
        &link,
        "f",
        &scene.work.path().join("new"),
        &SyncOptions::default(),
    )
    .await
    .unwrap();
    assert!(
        !scene.outside().join("planted").exists(),
        "written through the file's symlink"
    );
    assert!(
        r.errors.iter().any(|e| e.path == "f/planted"),
        "the extra entry is not named: {:?}",
        r.errors
    );
    link.close("done").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_source_name_that_is_not_one_file_name_is_refused() {
    // A file lands inside an existing destination directory under the name
    // the sender gives it: an empty name or `.` would make it the destination
    // itself, a path would land it deeper. The run fails, naming the problem,
    // and changes nothing.
    for name in [&b""[..], b".", b"a/b", b"sub/../x"] {
        let scene = Scene::new();
        let keys = Keys::new();
        let dst = scene.work.path().join("dst");
        guarded(&dst);
        std::fs::create_dir(dst.join("a")).unwrap();
        let entries = vec![file(b"", EVIL.len() as u64)];
        let (_srv, link) = hostile_server(&keys, file_source(name), entries, TRANSPORTS[0]).await;
        let what = format!("file named {:?}", name.escape_ascii().to_string());
        let r = sync::pull(&link, "f", &dst, &SyncOptions::default()).await;
        let err = r.expect_err(&what).to_string();
        assert!(err.contains("name"), "{what}: {err}");
        std::fs::remove_dir(dst.join("a")).unwrap();
        assert_guarded(&dst, &what);
        link.close("done").await;
    }
}

/// A hostile receiver against the real sender (a server's GIVE): requests
/// for what the list does not hold as a file (a listed symlink, numbers past
/// the end) and ops that are no request each end that lane with a reason and
/// no content; the server goes on serving.
#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_client_gets_nothing_the_server_did_not_list_as_a_file() {
    let keys = Keys::new();
    let (work, root) = scratch("root");
    std::fs::write(root.join("public.txt"), b"public\n").unwrap();
    std::fs::write(work.path().join("secret.txt"), b"secret\n").unwrap();
    std::os::unix::fs::symlink(work.path().join("secret.txt"), root.join("link")).unwrap();
    let give = ListedGive::start(&keys, &root).await;
    let (peer, link, entries) = (&give.peer, &give.link, &give.entries);
    let link_index = give.index(b"link");
    assert_eq!(entries[link_index as usize].kind, EntryKind::Symlink);
    let want = |index: u64| {
        Fragment::new(msg::WANT).with_payload(encode_to_vec(&Want {
            index,
            how: WantHow::Full,
            chunk_bits: 0,
            basis_size: 0,
        }))
    };
    let requests = [
        ("the symlink", want(link_index)),
        ("past the end", want(entries.len() as u64)),
        (
            "many past the end",
            Fragment::new(msg::WANTS).with_payload(encode_to_vec(&Wants(vec![u64::MAX]))),
        ),
        (
            "a check past the end",
            Fragment::new(msg::CHECKS)
                .with_payload(encode_to_vec(&msg::Checks(vec![(u64::MAX, [0; 16])]))),
        ),
        ("no request at all", Fragment::new(msg::REPORT)),
    ];
    let public = give.index(b"public.txt");
    let delta = |chunk_bits: u8| {
        Fragment::new(msg::WANT).with_payload(encode_to_vec(&Want {
            index: public,
            how: WantHow::Delta,
            chunk_bits,
            basis_size: 7,
        }))
    };
    // A chunk size no peer cuts with; a chunk larger than the one named
    // allows (8 KiB chunks are at most 64 KiB).
    let mut too_long = Vec::new();
    proto::put_varint(&mut too_long, 1);
    proto::put_varint(&mut too_long, (64 << 10) + 1);
    too_long.extend_from_slice(&[0; 16]);
    let requests = requests
        .map(|(what, f)| (what, vec![f]))
        .into_iter()
        .chain([
            ("chunks of 2^40 bytes", vec![delta(40)]),
            (
                "a chunk over the largest",
                vec![delta(13), Fragment::new(msg::SIG).with_payload(too_long)],
            ),
        ]);
    for (what, request) in requests {
        let mut lane = peer.open().await.unwrap();
        for f in request {
            lane.send(f).await.unwrap();
        }
        match lane.recv().await {
            Err(e) => assert!(!e.to_string().is_empty(), "{what}"),
            Ok(Some(f)) => panic!("{what}: answered with {}", f.op),
            Ok(None) => panic!("{what}: the lane ended without a reason"),
        }
    }
    peer.close();

    // Still serving: an honest pull gets the file, and the link as a link.
    let dst = work.path().join("pulled");
    let r = sync::pull(link, "", &dst, &SyncOptions::default())
        .await
        .unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(std::fs::read(dst.join("public.txt")).unwrap(), b"public\n");
    assert!(std::fs::symlink_metadata(dst.join("link"))
        .unwrap()
        .file_type()
        .is_symlink());
    link.close("done").await;
}

/// A scripted receiver's view of a real server of `root`: the server, the
/// link to it, its GIVE of the whole root, that service's control circuit
/// (kept open while the test asks on lanes of its own) and the entries it
/// listed.
struct ListedGive {
    _srv: TestServer,
    link: jsync::Link,
    peer: Peer,
    _control: jsync::CircuitSender,
    entries: Vec<Entry>,
}

impl ListedGive {
    async fn start(keys: &Keys, root: &Path) -> ListedGive {
        let srv = TestServer::start(
            keys.server(),
            sync::server_services(root.to_path_buf(), false),
        );
        let link = client(keys.client(), Services::new(), TRANSPORTS[0])
            .connect(&srv.addr_string())
            .await
            .unwrap();
        let peer = link.start(GIVE, &[String::new()]).await.unwrap();
        let (control, mut ctl_rx) = peer.open().await.unwrap().split();
        let mut entries = Vec::new();
        while let Some(f) = ctl_rx.recv().await.unwrap() {
            if f.op == msg::LIST {
                entries.extend(decode_exact::<EntryBatch>(&f.payload).unwrap().0);
            } else if f.op == msg::LIST_END {
                break;
            }
        }
        ListedGive {
            _srv: srv,
            link,
            peer,
            _control: control,
            entries,
        }
    }

    /// Ends the service and the link.
    async fn close(self) {
        self.peer.close();
        self.link.close("done").await;
    }

    /// The index of the entry listed as `path`.
    fn index(&self, path: &[u8]) -> u64 {
        self.entries.iter().position(|e| e.path == path).unwrap() as u64
    }
}

/// A step of a recipe, owned.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Copy(u64, u64),
    Literal(Vec<u8>),
    Hole(u64),
}

/// A SIG payload of these chunks (length, full hash: the first 16 bytes go).
fn sig_batch(chunks: impl IntoIterator<Item = (u64, blake3::Hash)>) -> Fragment {
    let chunks: Vec<_> = chunks.into_iter().collect();
    let mut b = Vec::new();
    proto::put_varint(&mut b, chunks.len() as u64);
    for (len, hash) in chunks {
        proto::put_varint(&mut b, len);
        b.extend_from_slice(&hash.as_bytes()[..16]);
    }
    Fragment::new(msg::SIG).with_payload(b)
}

/// A signature longer than the sender keeps is read to its end and dropped
/// past that, so a hostile receiver cannot make a server hold a signature of
/// any length, and the lane still answers: the file's chunk in the last
/// place kept comes back as a copy of it; one place further, as the file's
/// bytes. For a file under 256 bytes, answered once the signature is in,
/// the sender keeps 4,096 chunks; for one of 1 MiB, whose recipe is built
/// while the signature arrives, 8,192 (twice as many as 1 MiB has chunks of
/// 512 bytes, its smallest, and 4,096). The 1 MiB file is zeros: 64 chunks
/// of 16 KiB, its largest, all alike.
#[tokio::test(flavor = "multi_thread")]
async fn a_signature_is_kept_only_up_to_the_senders_limit() {
    let keys = Keys::new();
    let (_work, root) = scratch("root");
    let small: Vec<u8> = (0..250u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(root.join("small"), &small).unwrap();
    std::fs::write(root.join("zeros"), vec![0u8; 1 << 20]).unwrap();
    let give = ListedGive::start(&keys, &root).await;
    let zero_chunk = vec![0u8; 16 << 10];
    let cases: [(&[u8], &[u8], u64, usize); 2] = [
        (b"small", &small, 4096, 1),
        (b"zeros", &zero_chunk, 8192, 64),
    ];
    for (name, chunk, kept, chunks) in cases {
        let total = kept + 2;
        let chunk_hash = blake3::hash(chunk);
        for (at, step) in [
            (kept - 1, Step::Copy(kept - 1, 1)),
            (kept, Step::Literal(chunk.to_vec())),
        ] {
            let mut lane = give.peer.open().await.unwrap();
            let request = Want {
                index: give.index(name),
                how: WantHow::Delta,
                chunk_bits: 11,
                basis_size: total - 1 + chunk.len() as u64,
            };
            lane.send(Fragment::new(msg::WANT).with_payload(encode_to_vec(&request)))
                .await
                .unwrap();
            // One-byte chunks the file does not have, and its own in `at`.
            for start in (0..total).step_by(1024) {
                let chunks = (start..(start + 1024).min(total)).map(|i| match i == at {
                    true => (chunk.len() as u64, chunk_hash),
                    false => (1, blake3::hash(&i.to_le_bytes())),
                });
                lane.send(sig_batch(chunks)).await.unwrap();
            }
            lane.send(Fragment::new(msg::SIG_END)).await.unwrap();
            let mut steps = Vec::new();
            loop {
                let f = lane.recv().await.unwrap().expect("an answer to the delta");
                match f.op {
                    msg::META => {}
                    msg::RECIPE => {
                        for op in msg::RecipeReader::new(&f.payload, 1 << 20) {
                            steps.push(match op.unwrap() {
                                msg::RecipeOp::Copy { start, count } => Step::Copy(start, count),
                                msg::RecipeOp::Literal(d) => Step::Literal(d.to_vec()),
                                msg::RecipeOp::Hole(n) => Step::Hole(n),
                            });
                        }
                    }
                    msg::END => break,
                    other => panic!("answered with {other}"),
                }
            }
            let want: Vec<Step> = (0..chunks).map(|_| step.clone()).collect();
            let what = format!("{}: the file's chunk in place {at}", name.escape_ascii());
            assert_eq!(steps, want, "{what}");
        }
    }
    give.close().await;
}

/// A file that shrinks on the server while a scripted receiver still sends
/// the signature for its delta: the sender reads the signature to its end,
/// then gives the file up (FILE_ERR, naming it) instead of ending it, and
/// the lane stays in step (the next request on it gets its file).
#[tokio::test(flavor = "multi_thread")]
async fn a_file_that_shrinks_while_its_signature_streams_is_given_up_in_step() {
    let keys = Keys::new();
    let (_work, root) = scratch("root");
    std::fs::write(root.join("big"), jsync_tests::pseudo_random(8 << 20, 21)).unwrap();
    std::fs::write(root.join("small"), b"small\n").unwrap();
    let give = ListedGive::start(&keys, &root).await;
    let mut lane = give.peer.open().await.unwrap();
    let want = |path: &[u8], how| {
        let want = Want {
            index: give.index(path),
            how,
            chunk_bits: 12,
            basis_size: 8 << 20,
        };
        Fragment::new(msg::WANT).with_payload(encode_to_vec(&want))
    };
    // Chunks the file does not have: 2,048 of 4 KiB in each batch.
    let batch = |seed: u64| {
        sig_batch((0..2048u64).map(|i| {
            let h = blake3::hash(&[seed.to_le_bytes(), i.to_le_bytes()].concat());
            (4096, h)
        }))
    };
    lane.send(want(b"big", WantHow::Delta)).await.unwrap();
    lane.send(batch(0)).await.unwrap();
    // The sender has opened the file (its META says 8 MiB) and waits for the
    // rest of the signature before it reads what the receiver lacks; the
    // file shrinks meanwhile.
    let f = lane.recv().await.unwrap().expect("an answer to the delta");
    assert_eq!(f.op, msg::META);
    assert_eq!(decode_exact::<FileMeta>(&f.payload).unwrap().size, 8 << 20);
    std::fs::OpenOptions::new()
        .write(true)
        .open(root.join("big"))
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    lane.send(batch(1)).await.unwrap();
    lane.send(Fragment::new(msg::SIG_END)).await.unwrap();
    loop {
        let f = lane.recv().await.unwrap().expect("an answer to the delta");
        match f.op {
            msg::RECIPE => {}
            msg::FILE_ERR => {
                let e = f.error.unwrap_or_default();
                assert!(e.contains("big") && e.contains("changed"), "{e}");
                break;
            }
            other => panic!("answered with {other}"),
        }
    }
    lane.send(want(b"small", WantHow::Full)).await.unwrap();
    let f = lane.recv().await.unwrap().expect("an answer");
    assert_eq!(f.op, msg::FILE);
    assert_eq!(WholeFile::decode(&f.payload).unwrap().data, b"small\n");
    give.close().await;
}

/// A receiver that breaks its signature (an op that has no place in one)
/// while the sender is held inside a write of the recipe it already builds
/// (the receiver reads nothing until then, so the lane's window fills): the
/// sender finishes that write, stops, and the lane's failure names the
/// broken signature. (Cancelling the write instead would take the lane's
/// writer with it, and the lane would end without a reason.)
#[tokio::test(flavor = "multi_thread")]
async fn a_signature_broken_while_the_recipe_waits_fails_the_lane_with_its_reason() {
    let keys = Keys::new();
    let (_work, root) = scratch("root");
    let data = jsync_tests::pseudo_random(24 << 20, 33);
    std::fs::write(root.join("big"), &data).unwrap();
    let give = ListedGive::start(&keys, &root).await;
    let mut lane = give.peer.open().await.unwrap();
    let before = give.link.wire_bytes();
    let want = Want {
        index: give.index(b"big"),
        how: WantHow::Delta,
        chunk_bits: 12,
        basis_size: data.len() as u64,
    };
    lane.send(Fragment::new(msg::WANT).with_payload(encode_to_vec(&want)))
        .await
        .unwrap();
    // 4 KiB chunks over the first 16 MiB: every other one is the file's own,
    // the rest are not, so the sender answers with a copy and a literal in
    // turn (8 MiB of literals, twice the lane's window) before the
    // signature ends.
    let chunk = |i: usize| match i % 2 {
        0 => (4096, blake3::hash(&data[i * 4096..(i + 1) * 4096])),
        _ => (4096, blake3::hash(&i.to_le_bytes())),
    };
    for first in (0..4096).step_by(1024) {
        lane.send(sig_batch((first..first + 1024).map(chunk)))
            .await
            .unwrap();
    }
    // The sender fills the lane's window (4 MiB, which the link takes in
    // unread: 15 payloads of 256 KiB) and waits inside its next write:
    // watched on the link's byte count, which then stands still.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let (mut last, mut still) = (give.link.wire_bytes(), 0);
    while still < 15 {
        let filling = std::time::Instant::now() < deadline;
        assert!(filling, "the window never filled");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let now = give.link.wire_bytes();
        match now == last && now - before >= 3 << 20 {
            true => still += 1,
            false => (last, still) = (now, 0),
        }
    }
    lane.send(Fragment::new(msg::REPORT)).await.unwrap();
    let mut literal = 0;
    let reason = loop {
        match lane.recv().await {
            Ok(Some(f)) if f.op == msg::META => {}
            Ok(Some(f)) if f.op == msg::RECIPE => {
                for op in msg::RecipeReader::new(&f.payload, 1 << 20) {
                    if let msg::RecipeOp::Literal(d) = op.unwrap() {
                        literal += d.len();
                    }
                }
            }
            Ok(Some(f)) => panic!("answered with {}", f.op),
            Ok(None) => panic!("the lane ended without a reason"),
            Err(e) => break e.to_string(),
        }
    };
    let what = format!("{literal} bytes of literals came first ({reason})");
    assert!(literal >= 3 << 20, "the lane's window was full: {what}");
    assert!(reason.contains("inside a signature"), "{reason}");
    give.close().await;
}

/// A hostile sender that answers a delta with UNCHANGED for a file the
/// receiver's chunks do not make (they hold 2 MiB; it lists 3 MiB): the run
/// fails, naming the sender's answer, and the receiver's copy is as it was.
#[tokio::test(flavor = "multi_thread")]
async fn unchanged_for_a_file_of_another_size_is_refused() {
    let keys = Keys::new();
    let (_work, dst) = scratch("dst");
    let old = jsync_tests::pseudo_random(2 << 20, 4);
    std::fs::write(dst.join("lie.bin"), &old).unwrap();
    let entries = vec![file(b"lie.bin", 3 << 20)];
    let (_srv, link) = hostile_server(&keys, dir_source(), entries, TRANSPORTS[0]).await;
    let r = sync::pull(&link, "", &dst, &SyncOptions::default()).await;
    let err = match r {
        Err(e) => e.to_string(),
        Ok(r) => r.errors.iter().map(|e| e.message.clone()).collect(),
    };
    assert!(err.contains("UNCHANGED"), "{err}");
    assert_eq!(std::fs::read(dst.join("lie.bin")).unwrap(), old);
    link.close("done").await;
}

/// A hostile sender that answers a delta with UNCHANGED for a file of the
/// receiver's size, but with a digest that is not that of the receiver's
/// chunks: the file fails verification, and the receiver's copy keeps its
/// bytes and its time.
#[tokio::test(flavor = "multi_thread")]
async fn unchanged_with_a_wrong_digest_fails_verification() {
    use std::os::unix::fs::MetadataExt;
    let keys = Keys::new();
    let (_work, dst) = scratch("dst");
    let old = jsync_tests::pseudo_random(2 << 20, 5);
    std::fs::write(dst.join("lie-same-size.bin"), &old).unwrap();
    let before = std::fs::metadata(dst.join("lie-same-size.bin")).unwrap();
    // Same size, another time: checked by hash first (answered "differs"),
    // then asked for as a delta.
    let entries = vec![file(b"lie-same-size.bin", 2 << 20)];
    let (_srv, link) = hostile_server(&keys, dir_source(), entries, TRANSPORTS[0]).await;
    let r = sync::pull(&link, "", &dst, &SyncOptions::default())
        .await
        .unwrap();
    assert!(
        r.errors
            .iter()
            .any(|e| e.path == "lie-same-size.bin" && e.message.contains("verification failed")),
        "{:?}",
        r.errors
    );
    let after = std::fs::metadata(dst.join("lie-same-size.bin")).unwrap();
    assert_eq!(std::fs::read(dst.join("lie-same-size.bin")).unwrap(), old);
    assert_eq!(
        (after.mtime(), after.mtime_nsec()),
        (before.mtime(), before.mtime_nsec())
    );
    link.close("done").await;
}

/// A receiver's copy that changes after it was cut, before the sender
/// answers that the file is exactly those chunks (UNCHANGED, rightly so when
/// it was cut): the receiver does not just give the copy the sender's time
/// (which would make other bytes pass for synced); it rebuilds the file from
/// the chunks it cut, each checked against its hash. Rewritten with the same
/// bytes, the file is rebuilt (a new inode) and placed; with other bytes of
/// the same size, the rebuild fails for that file, naming it, and the copy
/// is left as it was written.
#[tokio::test(flavor = "multi_thread")]
async fn a_copy_changed_after_its_cut_is_not_taken_as_unchanged() {
    use std::os::unix::fs::MetadataExt;
    let keys = Keys::new();
    let old = jsync_tests::pseudo_random(2 << 20, 11);
    for same_bytes in [true, false] {
        let (_work, dst) = scratch("dst");
        let target = dst.join("f.bin");
        std::fs::write(&target, &old).unwrap();
        let ino = std::fs::metadata(&target).unwrap().ino();
        let written = if same_bytes {
            old.clone()
        } else {
            jsync_tests::pseudo_random(old.len(), 12)
        };
        let how = {
            let (target, written) = (target.clone(), written.clone());
            AsUnchanged::new(old.clone(), move || {
                use std::os::unix::fs::FileExt;
                // Past the clock tick of the copy's last change: a kernel
                // with coarse timestamps would give the write the same ctime.
                std::thread::sleep(std::time::Duration::from_millis(20));
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&target)
                    .unwrap();
                f.write_all_at(&written, 0).unwrap();
            })
        };
        // Same size, another time: checked by hash first, then a delta.
        let entries = vec![file(b"f.bin", old.len() as u64)];
        let lane = move |c, entries| unchanged_lane(c, entries, how.clone());
        let (_srv, link) =
            hostile_server_with(&keys, dir_source(), entries, TRANSPORTS[0], lane).await;
        let r = sync::pull(&link, "", &dst, &SyncOptions::default())
            .await
            .unwrap();
        let after = std::fs::metadata(&target).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), written);
        if same_bytes {
            assert!(r.errors.is_empty(), "{:?}", r.errors);
            assert_ne!(after.ino(), ino, "the copy was not rebuilt");
            assert_eq!((after.mtime(), after.mtime_nsec()), (1_700_000_000, 0));
        } else {
            assert!(
                r.errors.iter().any(|e| e.path == "f.bin"
                    && e.message.contains("changed during the transfer")),
                "{:?}",
                r.errors
            );
            assert_eq!(after.ino(), ino);
            assert_ne!(after.mtime(), 1_700_000_000);
        }
        link.close("done").await;
    }
}

/// An UNCHANGED that comes while the receiver still sends its signature (a
/// hasty or hostile sender's; an honest one answers after its end) is
/// checked only once the receiver's own cut is complete: a copy that is
/// exactly the sender's file takes the sender's time in place. (A first run
/// teaches the sender the receiver's chunks; the second answers after the
/// first of the signature's batches.)
#[tokio::test(flavor = "multi_thread")]
async fn an_unchanged_before_the_signature_ends_waits_for_it() {
    use std::os::unix::fs::MetadataExt;
    let keys = Keys::new();
    let (_work, dst) = scratch("dst");
    let target = dst.join("f.bin");
    // 16 MiB: about 4,000 chunks, in two batches or more.
    let old = jsync_tests::pseudo_random(16 << 20, 13);
    std::fs::write(&target, &old).unwrap();
    let ino = std::fs::metadata(&target).unwrap().ino();
    let how = AsUnchanged::new(old.clone(), || {});
    let entries = vec![file(b"f.bin", old.len() as u64)];
    let lane = {
        let how = how.clone();
        move |c, entries| unchanged_lane(c, entries, how.clone())
    };
    let (_srv, link) = hostile_server_with(&keys, dir_source(), entries, TRANSPORTS[0], lane).await;
    for round in ["after the signature", "before its end"] {
        // Another time than the sender's: checked by hash, then a delta.
        filetime::set_file_mtime(
            &target,
            filetime::FileTime::from_unix_time(1_600_000_000, 0),
        )
        .unwrap();
        let r = sync::pull(&link, "", &dst, &SyncOptions::default())
            .await
            .unwrap();
        assert!(r.errors.is_empty(), "{round}: {:?}", r.errors);
        let after = std::fs::metadata(&target).unwrap();
        assert_eq!(after.ino(), ino, "{round}");
        assert_eq!(
            (after.mtime(), after.mtime_nsec()),
            (1_700_000_000, 0),
            "{round}"
        );
    }
    assert!(how.late.load(std::sync::atomic::Ordering::Relaxed) > 0);
    assert_eq!(std::fs::read(&target).unwrap(), old);
    link.close("done").await;
}

/// A hostile sender that answers with a recipe that does not parse, while
/// the receiver's lane waits for room in its window to ask for the next
/// file (each is large enough to take the whole window): the run fails at
/// once, naming the protocol error, instead of waiting for ever.
#[tokio::test(flavor = "multi_thread")]
async fn a_broken_recipe_fails_the_run_while_more_files_wait() {
    let keys = Keys::new();
    let work = tempfile::tempdir().unwrap();
    let dst = work.path().join("dst");
    let entries = vec![
        file(b"bad-recipe-1.bin", 20 << 20),
        file(b"bad-recipe-2.bin", 20 << 20),
    ];
    let (_srv, link) = hostile_server(&keys, dir_source(), entries, TRANSPORTS[0]).await;
    let mut o = SyncOptions::default();
    o.parallel = 1;
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        sync::pull(&link, "", &dst, &o),
    )
    .await
    .expect("the run hung");
    let err = r.expect_err("a broken recipe").to_string();
    assert!(err.contains("recipe") || err.contains("protocol"), "{err}");
    assert!(!dst.join("bad-recipe-1.bin").exists());
    link.close("done").await;
}

/// Records itemized lines.
#[derive(Default)]
struct Lines(Mutex<Vec<String>>);

impl sync::Progress for Lines {
    fn itemize(&self, line: &str) {
        self.0.lock().unwrap().push(line.to_string());
    }
}

/// A hostile server's names and messages reach the user escaped: its
/// control characters (a terminal's escape sequences, a newline that would
/// split an itemized line) and bytes that are not UTF-8 show as `\#ooo`, as
/// rsync's, in itemized lines and in the report's errors; the entries are
/// still made under their own names.
#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_servers_names_and_messages_reach_the_user_escaped() {
    let scene = Scene::new();
    let keys = Keys::new();
    let name: &[u8] = b"esc\x1b[31m\nred\xe9";
    let target: &[u8] = b"\x1b]0;title\x07";
    let services = Services::new().with(GIVE, move |peer: Peer| async move {
        let (mut tx, mut rx) = peer.accept().await?.context("no control circuit")?.split();
        tx.send(Fragment::new(msg::SOURCE).with_payload(encode_to_vec(&dir_source())))
            .await?;
        let walk_error = Fragment::new(msg::WALK_ERROR)
            .with_payload(b"bad\x1b[2Jdir".to_vec())
            .with_error("cannot read\x1b]0;pwned\x07: denied");
        tx.send(walk_error).await?;
        let list = EntryBatch(vec![symlink(name, target)]);
        tx.send(Fragment::new(msg::LIST).with_payload(encode_to_vec(&list)))
            .await?;
        tx.send(Fragment::new(msg::LIST_END).with_part(1)).await?;
        while rx.recv().await?.is_some() {}
        tx.finish().await?;
        Ok(())
    });
    let (_srv, link) = jsync_tests::serve(&keys, services, TRANSPORTS[0]).await;
    let lines = Arc::new(Lines::default());
    let mut opts = SyncOptions::default();
    opts.itemize = true;
    opts.progress = lines.clone();
    let dst = scene.work.path().join("dst");
    let r = sync::pull(&link, "src/", &dst, &opts).await.unwrap();
    let made = std::fs::read_link(dst.join(std::ffi::OsStr::from_bytes(name))).unwrap();
    assert_eq!(made.as_os_str().as_bytes(), target, "the link as listed");
    let lines = lines.0.lock().unwrap().clone();
    assert!(
        lines.contains(&"cL+++++++++ esc\\#033[31m\\#012red\\#351 -> \\#033]0;title\\#007".into()),
        "{lines:?}"
    );
    let e = r
        .errors
        .iter()
        .find(|e| e.path.starts_with("bad"))
        .expect("the walk error");
    assert_eq!(e.path, "bad\\#033[2Jdir");
    assert_eq!(e.message, "cannot read\\#033]0;pwned\\#007: denied");
    let mut shown = lines.clone();
    shown.extend(
        r.errors
            .iter()
            .flat_map(|e| [e.path.clone(), e.message.clone()]),
    );
    for s in &shown {
        assert!(!s.contains(['\x1b', '\x07', '\n']), "{s:?}");
    }
    link.close("done").await;
}
