//! The receiving role ("taker"): read the file list as it streams, decide per
//! entry what is needed, and rebuild changed files from old chunks plus new bytes
//! in a temporary file that is checked, synced and renamed into place.

use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use proto::sync::{
    self as msg, Entry, EntryBatch, EntryKind, FileMeta, RecipeOp, RecipeReader, Source, Stats,
    StatsError, Want, WantHow,
};
use proto::{Compression, Fragment};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use super::chunker::{self, ChunkRef, DigestBuilder, MAX_CHUNK};
use super::fsroot::{FsRoot, Kind, Meta, RelPath};
use super::give::{blocking, fs_err};
use super::proto_util::{decode, expect, fragment};
use super::report::Counters;
use super::Progress;
use crate::error::{Error, Result};
use crate::runtime::{Circuit, Peer};

/// Signature batches of this many chunk refs.
const SIG_BATCH: usize = 2048;

/// Where to put what arrives.
#[derive(Debug)]
pub(crate) struct TakeSpec {
    pub fs: Arc<FsRoot>,
    /// The destination as named (relative to the root); "" is the root.
    pub dst: RelPath,
}

/// Receiver options.
#[derive(Clone)]
pub(crate) struct TakeOptions {
    pub checksum: bool,
    pub parallel: usize,
    pub progress: Arc<dyn Progress>,
}

/// Runs the receiver role; returns what it did (also sent to the sender).
pub(crate) async fn take(peer: Peer, spec: TakeSpec, opts: TakeOptions) -> Result<Stats> {
    let name = peer.link().peer_name().to_string();
    let mut control = peer.open().await?;
    let source: Source = decode(
        &expect(&mut control, msg::SOURCE, "the source description")
            .await?
            .payload,
        &name,
    )?;
    let base = placement(&spec, &source)?;
    if source.kind != EntryKind::Dir {
        // A single file: its directory may hold a temp file a crashed run left.
        if let Some(parent) = base.parent() {
            if let Err(e) = spec.fs.clean_stale_temps(&parent) {
                tracing::warn!(dir = %parent.display(), error = %e, "cannot clean stale temp files");
            }
        }
    }
    let counters = Arc::new(Counters::default());
    let limit = Arc::new(Semaphore::new(opts.parallel.max(1)));
    let mut tasks = JoinSet::new();
    let mut dirs: Vec<(RelPath, u32, (i64, u32))> = Vec::new();
    let job = Job {
        peer: peer.clone(),
        fs: spec.fs.clone(),
        counters: counters.clone(),
        progress: opts.progress.clone(),
    };
    loop {
        let f = control.recv().await?.ok_or_else(|| Error::Violation {
            peer: name.clone(),
            what: "the file list ended without LIST_END".into(),
        })?;
        match f.op {
            msg::LIST => {
                let batch: EntryBatch = decode(&f.payload, &name)?;
                for entry in batch.0 {
                    Counters::add(&counters.files_checked, 1);
                    let shown = String::from_utf8_lossy(&entry.path).into_owned();
                    let rel = match join(&base, &entry.path) {
                        Ok(r) => r,
                        Err(e) => {
                            counters.error(&shown, e.to_string());
                            continue;
                        }
                    };
                    match plan(&job, &rel, &entry, opts.checksum) {
                        Ok(Plan::Nothing) => {}
                        Ok(Plan::Dir) => dirs.push((rel, entry.mode, entry.mtime)),
                        Ok(Plan::Fetch(how)) => {
                            let permit = limit.clone().acquire_owned().await.expect("open");
                            let job = job.clone();
                            tasks.spawn(async move {
                                let _permit = permit;
                                job.fetch(rel, entry, how).await;
                            });
                            while tasks.try_join_next().is_some() {}
                        }
                        Err(e) => counters.error(&shown, e),
                    }
                }
            }
            msg::WALK_ERROR => counters.error(
                &String::from_utf8_lossy(&f.payload),
                f.error.unwrap_or_default(),
            ),
            msg::LIST_END => break,
            other => {
                return Err(Error::Violation {
                    peer: name,
                    what: format!("unexpected {other} in the file list"),
                })
            }
        }
    }
    while tasks.join_next().await.is_some() {}
    if peer.link().is_closed() {
        return Err(Error::ConnectionLost {
            peer: name,
            reason: peer.link().failure().unwrap_or_default(),
        });
    }
    // Directory times last, deepest first, so writing into them does not undo it.
    dirs.sort_by_key(|(r, _, _)| {
        std::cmp::Reverse(
            r.as_bytes().iter().filter(|&&b| b == b'/').count() + usize::from(!r.is_root()),
        )
    });
    for (rel, mode, mtime) in dirs {
        if let Err(e) = spec
            .fs
            .set_mode(&rel, mode)
            .and_then(|_| spec.fs.set_times(&rel, mtime, true))
        {
            counters.error(&rel.display(), e.to_string());
        }
    }
    let stats = stats_of(&counters);
    control
        .send_with(fragment(msg::REPORT, &stats), Compression::NONE)
        .await?;
    control.finish().await?;
    let _ = control.recv().await;
    Ok(stats)
}

fn stats_of(c: &Counters) -> Stats {
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    Stats {
        files_checked: get(&c.files_checked),
        files_transferred: get(&c.files_transferred),
        bytes_literal: get(&c.bytes_literal),
        bytes_reused: get(&c.bytes_reused),
        total_size: get(&c.total_size),
        errors: c
            .errors
            .lock()
            .expect("poisoned")
            .iter()
            .map(|e| StatsError {
                path: e.path.as_bytes().to_vec(),
                message: e.message.clone(),
            })
            .collect(),
        errors_omitted: 0,
    }
}

/// Where the source lands, as rsync places it.
fn placement(spec: &TakeSpec, source: &Source) -> Result<RelPath> {
    let into = |name: &[u8]| -> Result<RelPath> { join(&spec.dst, name).map_err(fs_err) };
    match (source.kind, source.contents) {
        (EntryKind::Dir, true) => Ok(spec.dst.clone()),
        (EntryKind::Dir, false) => into(&source.name),
        _ => {
            let is_dir = matches!(
                spec.fs.stat_follow_within(&spec.dst).map_err(fs_err)?,
                Some(Meta {
                    kind: Kind::Dir,
                    ..
                })
            );
            if is_dir {
                into(&source.name)
            } else {
                Ok(spec.dst.clone())
            }
        }
    }
}

fn join(base: &RelPath, path: &[u8]) -> std::result::Result<RelPath, super::fsroot::FsError> {
    let mut full = base.as_bytes().to_vec();
    if !path.is_empty() {
        if !full.is_empty() {
            full.push(b'/');
        }
        full.extend_from_slice(path);
    }
    FsRoot::check(&full)
}

enum Plan {
    Nothing,
    Dir,
    Fetch(WantHow),
}

#[derive(Clone)]
struct Job {
    peer: Peer,
    fs: Arc<FsRoot>,
    counters: Arc<Counters>,
    progress: Arc<dyn Progress>,
}

/// Decides what an entry needs; does the cheap work (dirs, links) inline.
fn plan(job: &Job, rel: &RelPath, e: &Entry, checksum: bool) -> std::result::Result<Plan, String> {
    let fs = &job.fs;
    let here = fs.lstat(rel).map_err(|e| e.to_string())?;
    match e.kind {
        EntryKind::Dir => {
            match here.map(|m| m.kind) {
                // An existing directory may hold temp files a crashed run left.
                Some(Kind::Dir) => {
                    if let Err(e) = fs.clean_stale_temps(rel) {
                        tracing::warn!(dir = %rel.display(), error = %e, "cannot clean stale temp files");
                    }
                }
                Some(_) => {
                    fs.remove_all(rel).map_err(|e| e.to_string())?;
                    fs.mkdir_all(rel, 0o700 | e.mode)
                        .map_err(|e| e.to_string())?;
                }
                None => fs
                    .mkdir_all(rel, 0o700 | e.mode)
                    .map_err(|e| e.to_string())?,
            }
            Ok(Plan::Dir)
        }
        EntryKind::Symlink => {
            if let Some(m) = &here {
                if m.kind == Kind::Symlink
                    && fs.read_link(rel).ok().as_deref() == Some(&e.target[..])
                {
                    // Same target: only the link's own time may differ.
                    if m.mtime != e.mtime {
                        fs.set_times(rel, e.mtime, false)
                            .map_err(|e| e.to_string())?;
                    }
                    return Ok(Plan::Nothing);
                }
                if m.kind == Kind::Dir {
                    fs.remove_all(rel).map_err(|e| e.to_string())?;
                }
            }
            fs.symlink(&e.target, rel).map_err(|e| e.to_string())?;
            let _ = fs.set_times(rel, e.mtime, false);
            Ok(Plan::Nothing)
        }
        EntryKind::File => {
            Counters::add(&job.counters.total_size, e.size);
            let how = match here {
                None => WantHow::Full,
                Some(m) if m.kind == Kind::Dir => {
                    fs.remove_all(rel).map_err(|e| e.to_string())?;
                    WantHow::Full
                }
                Some(m) if m.kind != Kind::File => {
                    fs.remove(rel).map_err(|e| e.to_string())?;
                    WantHow::Full
                }
                Some(m) if m.size == e.size && m.mtime == e.mtime && !checksum => {
                    if m.mode != e.mode {
                        fs.set_mode(rel, e.mode).map_err(|e| e.to_string())?;
                    }
                    return Ok(Plan::Nothing);
                }
                Some(m) if m.size == e.size => WantHow::HashCheck,
                Some(m) if m.size == 0 => WantHow::Full,
                Some(_) => WantHow::Delta,
            };
            Ok(Plan::Fetch(how))
        }
    }
}

impl Job {
    /// Fetches one file; a failure is recorded (path and cause) and told to the sender.
    async fn fetch(self, rel: RelPath, entry: Entry, how: WantHow) {
        let shown = String::from_utf8_lossy(&entry.path).into_owned();
        let mut c = match self.peer.open().await {
            Ok(c) => c,
            Err(e) => return self.counters.error(&shown, e.to_string()),
        };
        if let Err(e) = self.fetch_inner(&mut c, &rel, &entry, how, &shown).await {
            self.counters.error(&shown, e.to_string());
            let _ = c.fail(&e.to_string()).await;
        }
        self.progress.file_done(&shown, entry.size);
    }

    async fn fetch_inner(
        &self,
        c: &mut Circuit,
        rel: &RelPath,
        entry: &Entry,
        how: WantHow,
        shown: &str,
    ) -> Result<()> {
        let fs = &self.fs;
        let hash = if how == WantHow::HashCheck {
            let old = fs.open_read(rel).map_err(fs_err)?;
            Some(
                blocking(move || chunker::file_hash(&old))
                    .await
                    .map_err(|e| Error::io(format!("cannot read {shown}"), e))?,
            )
        } else {
            None
        };
        let want = Want {
            path: entry.path.clone(),
            how,
            hash,
        };
        c.send(fragment(msg::WANT, &want)).await?;
        let mut sig: Vec<ChunkRef> = Vec::new();
        if how == WantHow::Delta {
            sig = self.send_signature(c, rel, shown).await?;
        }
        let first = c
            .recv()
            .await?
            .ok_or_else(|| ended("the file's metadata"))?;
        let meta_frag = match first.op {
            msg::SAME => {
                let meta: FileMeta = decode(&first.payload, "the sender")?;
                fs.set_mode(rel, meta.mode).map_err(fs_err)?;
                fs.set_times(rel, meta.mtime, false).map_err(fs_err)?;
                c.finish().await?;
                return Ok(());
            }
            msg::NEED_SIG => {
                sig = self.send_signature(c, rel, shown).await?;
                expect(c, msg::META, "the file's metadata").await?
            }
            msg::META => first,
            other => {
                return Err(Error::Violation {
                    peer: "the sender".into(),
                    what: format!("unexpected {other} for {shown}"),
                })
            }
        };
        let meta: FileMeta = decode(&meta_frag.payload, "the sender")?;
        self.progress.file_started(shown, meta.size);
        let old = if sig.is_empty() {
            None
        } else {
            Some(fs.open_read(rel).map_err(fs_err)?)
        };
        let mut temp = fs.create_temp(rel).map_err(fs_err)?;
        let mut out = BufWriter::with_capacity(1 << 20, &mut temp.file);
        let mut digest = DigestBuilder::default();
        let mut written = 0u64;
        let mut buf = vec![0u8; MAX_CHUNK as usize];
        let io = |e: std::io::Error| Error::io(format!("cannot write {shown}"), e);
        let end = loop {
            let f = c
                .recv()
                .await?
                .ok_or_else(|| ended("the end of the recipe"))?;
            match f.op {
                msg::RECIPE => {
                    for op in RecipeReader::new(&f.payload, MAX_CHUNK as usize) {
                        let op = op.map_err(|source| Error::Protocol {
                            peer: "the sender".into(),
                            source,
                        })?;
                        match op {
                            RecipeOp::Literal(data) => {
                                let h = blake3::hash(data);
                                out.write_all(data).map_err(io)?;
                                digest.push(data.len() as u32, *h.as_bytes());
                                written += data.len() as u64;
                                Counters::add(&self.counters.bytes_literal, data.len() as u64);
                                self.progress.file_progress(shown, data.len() as u64);
                            }
                            RecipeOp::Copy { start, count } => {
                                let old = old.as_ref().ok_or_else(|| bad_copy(shown))?;
                                let end =
                                    start.checked_add(count).ok_or_else(|| bad_copy(shown))?;
                                if end > sig.len() as u64 {
                                    return Err(bad_copy(shown));
                                }
                                for r in &sig[start as usize..end as usize] {
                                    let chunk = &mut buf[..r.len as usize];
                                    old.read_exact_at(chunk, r.offset).map_err(|e| {
                                        Error::io(format!("cannot read the old {shown}"), e)
                                    })?;
                                    if blake3::hash(chunk).as_bytes() != &r.hash {
                                        return Err(Error::Content(format!(
                                            "{shown}: the local file changed during the transfer"
                                        )));
                                    }
                                    out.write_all(chunk).map_err(io)?;
                                    digest.push(r.len, r.hash);
                                    written += u64::from(r.len);
                                    Counters::add(&self.counters.bytes_reused, u64::from(r.len));
                                    self.progress.file_progress(shown, u64::from(r.len));
                                }
                            }
                        }
                    }
                }
                msg::END => break decode::<msg::End>(&f.payload, "the sender")?,
                other => {
                    return Err(Error::Violation {
                        peer: "the sender".into(),
                        what: format!("unexpected {other} in the recipe for {shown}"),
                    })
                }
            }
        };
        out.flush().map_err(io)?;
        drop(out);
        if written != end.size || digest.finish() != end.digest || written != meta.size {
            return Err(Error::Content(format!(
                "{shown}: verification failed (the rebuilt file does not match the sender's)"
            )));
        }
        temp.commit(meta.mode, meta.mtime).map_err(fs_err)?;
        Counters::add(&self.counters.files_transferred, 1);
        if c.recv().await?.is_some() {
            return Err(Error::Violation {
                peer: "the sender".into(),
                what: format!("data after the end of {shown}"),
            });
        }
        c.finish().await?;
        Ok(())
    }

    /// Chunks our old file and streams its signature while it is being cut.
    async fn send_signature(
        &self,
        c: &mut Circuit,
        rel: &RelPath,
        shown: &str,
    ) -> Result<Vec<ChunkRef>> {
        let old = self.fs.open_read(rel).map_err(fs_err)?;
        let size = old.metadata().map(|m| m.len()).unwrap_or(0);
        let (tx, mut rx) = mpsc::channel::<Vec<ChunkRef>>(16);
        let cutter = tokio::task::spawn_blocking(move || {
            let mut batch = Vec::with_capacity(SIG_BATCH);
            chunker::for_each_chunk_sized(&old, size, |r, _| {
                batch.push(r);
                if batch.len() >= SIG_BATCH {
                    tx.blocking_send(std::mem::take(&mut batch))
                        .map_err(|_| std::io::Error::other("transfer ended"))?;
                }
                Ok(())
            })?;
            if !batch.is_empty() {
                let _ = tx.blocking_send(batch);
            }
            Ok::<_, std::io::Error>(())
        });
        let mut all = Vec::new();
        let mut payload = Vec::new();
        while let Some(batch) = rx.recv().await {
            payload.clear();
            chunker::encode_sig_batch(&batch, &mut payload);
            c.send(Fragment::new(msg::SIG).with_payload(payload.clone()))
                .await?;
            all.extend(batch);
        }
        cutter
            .await
            .map_err(|e| Error::io("chunker", std::io::Error::other(e)))?
            .map_err(|e| Error::io(format!("cannot read {shown}"), e))?;
        c.send(Fragment::new(msg::SIG_END)).await?;
        Ok(all)
    }
}

fn ended(what: &str) -> Error {
    Error::Violation {
        peer: "the sender".into(),
        what: format!("circuit ended before {what}"),
    }
}

fn bad_copy(shown: &str) -> Error {
    Error::Violation {
        peer: "the sender".into(),
        what: format!("{shown}: recipe copies a chunk we do not have"),
    }
}
