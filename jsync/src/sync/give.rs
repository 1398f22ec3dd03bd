//! The sending role ("giver"): walk the source, stream the file list, and answer
//! each file circuit the receiver opens with a recipe built from FastCDC chunks.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use proto::sync::{
    self as msg, Entry, EntryBatch, EntryKind, FileMeta, Recipe, Source, Stats, Want, WantHow,
};
use proto::{Compression, Fragment};
use tokio::sync::mpsc;

use super::chunker::{self, ChunkRef, DigestBuilder, Hash};
use super::fsroot::{FsRoot, Kind, RelPath};
use super::proto_util::{decode, expect, fragment};
use super::Progress;
use crate::error::{Error, Result};
use crate::runtime::{Circuit, Peer};

/// Flush a recipe fragment once it holds this much.
const RECIPE_FLUSH: usize = 256 << 10;
/// Flush a LIST batch at this many entries (sooner when the walker pauses).
const LIST_BATCH: usize = 512;

/// What to send: a base inside a confined root, and how the receiver should place it.
#[derive(Debug)]
pub(crate) struct GiveSpec {
    pub fs: FsRoot,
    pub base: RelPath,
    pub source: Source,
}

impl GiveSpec {
    /// A local source path as given on the command line (trailing slash = contents).
    pub(crate) fn local(src: &Path) -> Result<GiveSpec> {
        let contents = src.as_os_str().as_bytes().ends_with(b"/");
        let meta = std::fs::symlink_metadata(src)
            .map_err(|e| Error::io(format!("cannot read {}", src.display()), e))?;
        if meta.is_dir() {
            let fs = FsRoot::open(src).map_err(fs_err)?;
            let name = std::fs::canonicalize(src)
                .ok()
                .and_then(|p| p.file_name().map(|n| n.as_bytes().to_vec()))
                .unwrap_or_default();
            return Ok(GiveSpec {
                fs,
                base: FsRoot::check(b"").map_err(fs_err)?,
                source: Source {
                    kind: EntryKind::Dir,
                    contents: contents || name.is_empty(),
                    name,
                },
            });
        }
        let name = src
            .file_name()
            .ok_or_else(|| Error::Fs(format!("{}: not a file name", src.display())))?;
        let parent = match src.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let fs = FsRoot::open(&parent).map_err(fs_err)?;
        Ok(GiveSpec {
            base: FsRoot::check(name.as_bytes()).map_err(fs_err)?,
            fs,
            source: Source {
                kind: if meta.file_type().is_symlink() {
                    EntryKind::Symlink
                } else {
                    EntryKind::File
                },
                name: name.as_bytes().to_vec(),
                contents: false,
            },
        })
    }

    /// A source named by a client, relative to a server's root.
    pub(crate) fn in_root(fs: FsRoot, src: &str) -> Result<GiveSpec> {
        let contents = src.ends_with('/');
        let base = FsRoot::check(src.trim_end_matches('/').as_bytes()).map_err(fs_err)?;
        let meta = fs
            .lstat(&base)
            .map_err(fs_err)?
            .ok_or_else(|| Error::Fs(format!("{src}: no such file or directory on the server")))?;
        let name = base
            .file_name()
            .map(|n| n.as_bytes().to_vec())
            .unwrap_or_default();
        let kind = match meta.kind {
            Kind::Dir => EntryKind::Dir,
            Kind::File => EntryKind::File,
            Kind::Symlink => EntryKind::Symlink,
            Kind::Fifo | Kind::CharDev | Kind::BlockDev | Kind::Socket => {
                return Err(Error::Fs(format!("{src}: not a file or directory")))
            }
        };
        Ok(GiveSpec {
            fs,
            source: Source {
                kind,
                contents: kind == EntryKind::Dir && (contents || base.is_root()),
                name,
            },
            base,
        })
    }

    /// The confined path of an entry path (relative to the base) from the wire.
    fn entry_path(&self, path: &[u8]) -> Result<RelPath> {
        let mut full = self.base.as_bytes().to_vec();
        if !path.is_empty() {
            if !full.is_empty() {
                full.push(b'/');
            }
            full.extend_from_slice(path);
        }
        FsRoot::check(&full).map_err(fs_err)
    }
}

pub(crate) fn fs_err(e: super::fsroot::FsError) -> Error {
    Error::Fs(e.to_string())
}

/// Runs the sender role until the receiver's report arrives.
pub(crate) async fn give(
    peer: Peer,
    spec: GiveSpec,
    compression: Compression,
    progress: Arc<dyn Progress>,
) -> Result<Stats> {
    let spec = Arc::new(spec);
    let mut control = peer.accept().await?.ok_or_else(|| Error::Violation {
        peer: peer.link().peer_name().into(),
        what: "the receiver ended before opening its control circuit".into(),
    })?;
    control.send(fragment(msg::SOURCE, &spec.source)).await?;

    // Serve file requests while the list is still being walked and sent.
    let server = {
        let peer = peer.clone();
        let spec = spec.clone();
        let progress = progress.clone();
        tokio::spawn(async move {
            let mut tasks = tokio::task::JoinSet::new();
            while let Ok(Some(c)) = peer.accept().await {
                tasks.spawn(serve_file(c, spec.clone(), compression, progress.clone()));
                while tasks.try_join_next().is_some() {}
            }
            while tasks.join_next().await.is_some() {}
        })
    };

    let (tx, mut rx) = mpsc::channel::<WalkItem>(1024);
    let walker = {
        let spec = spec.clone();
        tokio::task::spawn_blocking(move || walk(&spec, &tx))
    };
    let mut batch = Vec::with_capacity(LIST_BATCH);
    let mut count = 0u64;
    loop {
        let item = match rx.try_recv() {
            Ok(item) => Some(item),
            Err(mpsc::error::TryRecvError::Empty) => {
                if !batch.is_empty() {
                    send_batch(&mut control, &mut batch).await?;
                }
                rx.recv().await
            }
            Err(mpsc::error::TryRecvError::Disconnected) => None,
        };
        match item {
            Some(WalkItem::Entry(e)) => {
                progress.found(&String::from_utf8_lossy(&e.path), e.size);
                batch.push(e);
                count += 1;
                if batch.len() >= LIST_BATCH {
                    send_batch(&mut control, &mut batch).await?;
                }
            }
            Some(WalkItem::Error(path, message)) => {
                send_batch(&mut control, &mut batch).await?;
                let f = Fragment::new(msg::WALK_ERROR)
                    .with_payload(path)
                    .with_error(message);
                control.send(f).await?;
            }
            None => break,
        }
    }
    send_batch(&mut control, &mut batch).await?;
    walker
        .await
        .map_err(|e| Error::io("file walker", std::io::Error::other(e)))?;
    control
        .send(Fragment::new(msg::LIST_END).with_part(count))
        .await?;
    progress.walk_done();

    let report = expect(&mut control, msg::REPORT, "the receiver's report").await?;
    let stats: Stats = decode(&report.payload, peer.link().peer_name())?;
    control.finish().await?;
    let _ = control.recv().await;
    server.abort();
    Ok(stats)
}

async fn send_batch(control: &mut Circuit, batch: &mut Vec<Entry>) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let b = EntryBatch(std::mem::take(batch));
    control
        .send_with(fragment(msg::LIST, &b), Compression::ZSTD)
        .await
}

enum WalkItem {
    Entry(Entry),
    Error(Vec<u8>, String),
}

fn mtime_of(m: &std::fs::Metadata) -> (i64, u32) {
    (m.mtime(), m.mtime_nsec().clamp(0, 999_999_999) as u32)
}

/// Walks the source (never following symlinks) and streams entries.
fn walk(spec: &GiveSpec, tx: &mpsc::Sender<WalkItem>) {
    let root: PathBuf = spec.fs.path().join(OsStr::from_bytes(spec.base.as_bytes()));
    let send = |item| tx.blocking_send(item).is_ok();
    if spec.source.kind != EntryKind::Dir {
        let item = match std::fs::symlink_metadata(&root) {
            Ok(m) => entry_for(spec, &spec.base, Vec::new(), &m),
            Err(e) => WalkItem::Error(Vec::new(), e.to_string()),
        };
        send(item);
        return;
    }
    for item in walkdir::WalkDir::new(&root)
        .follow_links(false)
        .sort_by_file_name()
    {
        let item = match item {
            Ok(de) => {
                let rel = de
                    .path()
                    .strip_prefix(&root)
                    .map(|p| p.as_os_str().as_bytes().to_vec())
                    .unwrap_or_default();
                match de.metadata() {
                    Ok(m) => match spec.entry_path(&rel) {
                        Ok(full) => entry_for(spec, &full, rel, &m),
                        Err(e) => WalkItem::Error(rel, e.to_string()),
                    },
                    Err(e) => WalkItem::Error(rel, e.to_string()),
                }
            }
            Err(e) => {
                let rel = e
                    .path()
                    .and_then(|p| p.strip_prefix(&root).ok())
                    .map(|p| p.as_os_str().as_bytes().to_vec())
                    .unwrap_or_default();
                let msg = e
                    .io_error()
                    .map(|io| io.to_string())
                    .unwrap_or_else(|| e.to_string());
                WalkItem::Error(rel, msg)
            }
        };
        if !send(item) {
            return;
        }
    }
}

fn entry_for(spec: &GiveSpec, full: &RelPath, rel: Vec<u8>, m: &std::fs::Metadata) -> WalkItem {
    let ft = m.file_type();
    let (kind, size, target) = if ft.is_dir() {
        (EntryKind::Dir, 0, Vec::new())
    } else if ft.is_file() {
        (EntryKind::File, m.len(), Vec::new())
    } else if ft.is_symlink() {
        match spec.fs.read_link(full) {
            Ok(t) => (EntryKind::Symlink, 0, t),
            Err(e) => return WalkItem::Error(rel, e.to_string()),
        }
    } else {
        return WalkItem::Error(
            rel,
            "not a regular file, directory or symlink: skipped".into(),
        );
    };
    WalkItem::Entry(Entry {
        path: rel,
        kind,
        mode: m.mode() & 0o7777,
        size,
        mtime: mtime_of(m),
        target,
    })
}

/// Answers one file circuit; failures go to the receiver as the circuit's reason.
async fn serve_file(
    mut c: Circuit,
    spec: Arc<GiveSpec>,
    compression: Compression,
    progress: Arc<dyn Progress>,
) {
    let peer = "the receiver".to_string();
    let want = match expect(&mut c, msg::WANT, "a file request").await {
        Ok(f) => match decode::<Want>(&f.payload, &peer) {
            Ok(w) => w,
            Err(e) => return fail(&mut c, &e.to_string()).await,
        },
        Err(e) => {
            tracing::debug!(error = %e, "file circuit ended before its request");
            return;
        }
    };
    let shown = String::from_utf8_lossy(&want.path).into_owned();
    if let Err(e) = serve_inner(&mut c, &spec, &want, compression, &*progress, &shown).await {
        tracing::debug!(path = %shown, error = %e, "sending failed");
        fail(&mut c, &e.to_string()).await;
    }
    progress.file_done(&shown, 0);
}

async fn fail(c: &mut Circuit, reason: &str) {
    let _ = c.fail(reason).await;
}

async fn serve_inner(
    c: &mut Circuit,
    spec: &GiveSpec,
    want: &Want,
    compression: Compression,
    progress: &dyn Progress,
    shown: &str,
) -> Result<()> {
    let rel = spec.entry_path(&want.path)?;
    let file = spec.fs.open_read(&rel).map_err(fs_err)?;
    let before = file
        .metadata()
        .map_err(|e| Error::io(format!("cannot stat {shown}"), e))?;
    let meta = FileMeta {
        size: before.len(),
        mtime: mtime_of(&before),
        mode: before.mode() & 0o7777,
    };
    let mut how = want.how;
    let mut file = file;
    if how == WantHow::HashCheck {
        let (f, hash) = blocking(move || {
            let h = chunker::file_hash(&file)?;
            // The same handle is cut next if the hashes differ.
            std::io::Seek::rewind(&mut &file)?;
            Ok((file, h))
        })
        .await
        .map_err(|e| Error::io(format!("cannot read {shown}"), e))?;
        file = f;
        if Some(hash) == want.hash {
            c.send(fragment(msg::SAME, &meta)).await?;
            c.finish().await?;
            let _ = c.recv().await;
            return Ok(());
        }
        c.send(Fragment::new(msg::NEED_SIG)).await?;
        how = WantHow::Delta;
    }
    progress.file_started(shown, meta.size);

    // Cut our file while the receiver's signature streams in.
    let (chunk_tx, mut chunk_rx) = mpsc::channel::<(ChunkRef, Vec<u8>)>(64);
    let size = meta.size;
    let cutter = tokio::task::spawn_blocking(move || {
        let total = chunker::for_each_chunk_sized(&file, size, |r, data| {
            chunk_tx
                .blocking_send((r, data.to_vec()))
                .map_err(|_| std::io::Error::other("receiver gone"))
        });
        total.map(|n| (n, file))
    });
    let have: HashMap<Hash, u64> = if how == WantHow::Delta {
        receive_signature(c).await?
    } else {
        HashMap::new()
    };

    c.send(fragment(msg::META, &meta)).await?;
    let mut recipe = Recipe::new();
    let mut digest = DigestBuilder::default();
    while let Some((r, data)) = chunk_rx.recv().await {
        digest.push(r.len, r.hash);
        match have.get(&r.hash) {
            Some(&i) => recipe.copy(i),
            None => recipe.literal(&data),
        }
        progress.file_progress(shown, u64::from(r.len));
        if recipe.len() >= RECIPE_FLUSH {
            send_recipe(c, &mut recipe, compression).await?;
        }
    }
    send_recipe(c, &mut recipe, compression).await?;
    let (total, file) = cutter
        .await
        .map_err(|e| Error::io("chunker", std::io::Error::other(e)))?
        .map_err(|e| Error::io(format!("cannot read {shown}"), e))?;
    let after = file
        .metadata()
        .map_err(|e| Error::io(format!("cannot stat {shown}"), e))?;
    if total != meta.size || after.len() != meta.size || mtime_of(&after) != meta.mtime {
        return Err(Error::Content(format!(
            "{shown}: file changed while being sent"
        )));
    }
    c.send(fragment(
        msg::END,
        &msg::End {
            size: total,
            digest: digest.finish(),
        },
    ))
    .await?;
    c.finish().await?;
    // Wait for the receiver to finish its side (it has checked and placed the file).
    let _ = c.recv().await;
    Ok(())
}

async fn send_recipe(c: &mut Circuit, recipe: &mut Recipe, compression: Compression) -> Result<()> {
    if recipe.is_empty() {
        return Ok(());
    }
    let alg = if recipe.has_literals() {
        compression
    } else {
        Compression::NONE
    };
    let payload = recipe.take();
    c.send_with(Fragment::new(msg::RECIPE).with_payload(payload), alg)
        .await
}

/// Reads SIG batches until SIG_END into "hash → first chunk index".
async fn receive_signature(c: &mut Circuit) -> Result<HashMap<Hash, u64>> {
    let mut have = HashMap::new();
    let mut index = 0u64;
    let mut offset = 0u64;
    loop {
        let f = c.recv().await?.ok_or_else(|| Error::Violation {
            peer: "the receiver".into(),
            what: "circuit ended inside the signature".into(),
        })?;
        match f.op {
            msg::SIG => {
                let refs = chunker::decode_sig_batch(&f.payload, offset, usize::MAX).map_err(
                    |source| Error::Protocol {
                        peer: "the receiver".into(),
                        source,
                    },
                )?;
                for r in refs {
                    have.entry(r.hash).or_insert(index);
                    index += 1;
                    offset += u64::from(r.len);
                }
            }
            msg::SIG_END => return Ok(have),
            other => {
                return Err(Error::Violation {
                    peer: "the receiver".into(),
                    what: format!("unexpected {other} inside a signature"),
                })
            }
        }
    }
}

/// Runs blocking file work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| std::io::Error::other(format!("worker failed: {e}")))?
}
