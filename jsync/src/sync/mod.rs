//! The sync engine: content-defined deltas between a sender ("giver") and a
//! receiver ("taker") running as a service pair over any [`Link`].
//!
//! The sender walks its tree and streams the file list as it goes; the receiver
//! compares each entry with what it has and, for each file that needs content,
//! opens a circuit to the sender with a compact binary description of its old
//! file (FastCDC chunks named by BLAKE3). The sender answers with a recipe —
//! "copy your chunk" or "here are new bytes" — and the receiver rebuilds the file
//! in a temporary file beside the target, checks the whole-file digest, syncs it
//! and renames it into place. Many files are in flight at once, each on its own
//! circuit. Push and pull are the same two roles started from opposite ends.

pub(crate) mod chunker;
pub(crate) mod filter;
pub(crate) mod fsroot;
mod give;
mod proto_util;
mod report;
mod take;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

pub use report::{FileError, NoProgress, Progress, Report};

use crate::error::{Error, Result};
use crate::runtime::{Link, Services};
use fsroot::FsRoot;
use give::{fs_err, GiveSpec};
use take::{TakeOptions, TakeSpec};

/// Service names a server registers.
pub const GIVE: &str = "jsync.give";
/// See [`GIVE`].
pub const TAKE: &str = "jsync.take";

/// What a sync run should do.
#[derive(Clone)]
#[non_exhaustive]
pub struct SyncOptions {
    /// Compare content of every file, not size and mtime (`-c`).
    pub checksum: bool,
    /// Most files in flight at once.
    pub parallel: usize,
    /// Compression for new data on the wire (the sender skips data that does not shrink).
    pub compression: proto::Compression,
    /// Progress hooks.
    pub progress: Arc<dyn Progress>,
}

impl std::fmt::Debug for SyncOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncOptions")
            .field("checksum", &self.checksum)
            .field("parallel", &self.parallel)
            .field("compression", &self.compression)
            .finish()
    }
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            checksum: false,
            parallel: 16,
            compression: proto::Compression::ZSTD,
            progress: Arc::new(NoProgress),
        }
    }
}

/// Server side: the services that let clients push into and pull from `root`.
/// With `read_only`, pushes are refused.
pub fn server_services(root: PathBuf, read_only: bool) -> Services {
    let give_root = root.clone();
    Services::new()
        .with(GIVE, move |peer| {
            let root = give_root.clone();
            async move {
                let args = Args::parse(peer.args())?;
                let fs = FsRoot::open(&root).map_err(fs_err)?;
                let spec = GiveSpec::in_root(fs, &args.path)?;
                let stats = give::give(peer, spec, args.compression, Arc::new(NoProgress)).await?;
                tracing::info!(path = %args.path, files = stats.files_transferred, "pull served");
                Ok(())
            }
        })
        .with(TAKE, move |peer| {
            let root = root.clone();
            async move {
                if read_only {
                    anyhow::bail!("this server is read-only (jsrv --read-only): pushes are refused");
                }
                let args = Args::parse(peer.args())?;
                let fs = FsRoot::open(&root).map_err(fs_err)?;
                let spec = TakeSpec {
                    dst: FsRoot::check(args.path.trim_end_matches('/').as_bytes()).map_err(fs_err)?,
                    fs: Arc::new(fs),
                };
                let opts = TakeOptions {
                    checksum: args.checksum,
                    parallel: args.parallel,
                    progress: Arc::new(NoProgress),
                };
                let stats = take::take(peer, spec, opts).await?;
                tracing::info!(path = %args.path, files = stats.files_transferred, errors = stats.errors.len(), "push received");
                Ok(())
            }
        })
}

/// The arguments a client passes when it starts a service: the path, then
/// `key=value` options.
#[derive(Debug)]
struct Args {
    path: String,
    checksum: bool,
    parallel: usize,
    compression: proto::Compression,
}

impl Args {
    fn encode(path: &str, opts: &SyncOptions) -> Vec<String> {
        vec![
            path.to_string(),
            format!("checksum={}", u8::from(opts.checksum)),
            format!("parallel={}", opts.parallel),
            format!("compress={}", opts.compression),
        ]
    }

    fn parse(args: &[String]) -> anyhow::Result<Args> {
        let path = args
            .first()
            .ok_or_else(|| anyhow::anyhow!("no path given"))?
            .clone();
        let mut out = Args {
            path,
            checksum: false,
            parallel: SyncOptions::default().parallel,
            compression: proto::Compression::ZSTD,
        };
        for a in &args[1..] {
            let (k, v) = a
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("malformed option {a:?}"))?;
            match k {
                "checksum" => out.checksum = v == "1",
                "parallel" => out.parallel = v.parse::<usize>()?.clamp(1, 1024),
                "compress" => {
                    out.compression = v
                        .parse()
                        .map_err(|_| anyhow::anyhow!("unknown compression {v:?}"))?
                }
                _ => {} // options from a newer client: ignored
            }
        }
        Ok(out)
    }
}

fn report_of(stats: proto::sync::Stats, wire_bytes: u64, start: Instant) -> Report {
    let mut errors: Vec<FileError> = stats
        .errors
        .into_iter()
        .map(|e| FileError {
            path: String::from_utf8_lossy(&e.path).into_owned(),
            message: e.message,
        })
        .collect();
    errors.sort_by(|a, b| a.path.cmp(&b.path));
    Report {
        files_checked: stats.files_checked,
        files_transferred: stats.files_transferred,
        bytes_literal: stats.bytes_literal,
        bytes_reused: stats.bytes_reused,
        total_size: stats.total_size,
        wire_bytes,
        elapsed: start.elapsed(),
        errors,
    }
}

/// Push: send local `src` to `dst` (a path relative to the server's root; "" is
/// the root). `src` follows rsync: a directory with a trailing slash sends its
/// contents, without one the directory itself; a file sent to an existing
/// directory lands inside it.
pub async fn push(link: &Link, src: &Path, dst: &str, opts: &SyncOptions) -> Result<Report> {
    let start = Instant::now();
    let wire0 = link.wire_bytes();
    let spec = GiveSpec::local(src)?;
    let peer = link.start(TAKE, &Args::encode(dst, opts)).await?;
    let stats = give::give(peer.clone(), spec, opts.compression, opts.progress.clone()).await?;
    peer.close();
    Ok(report_of(stats, link.wire_bytes() - wire0, start))
}

/// Pull: fetch `src` (relative to the server's root; trailing-slash rules as in
/// [`push`]) into local `dst`.
pub async fn pull(link: &Link, src: &str, dst: &Path, opts: &SyncOptions) -> Result<Report> {
    let start = Instant::now();
    let wire0 = link.wire_bytes();
    let spec = local_destination(dst)?;
    let peer = link.start(GIVE, &Args::encode(src, opts)).await?;
    let stats = take::take(
        peer.clone(),
        spec,
        TakeOptions {
            checksum: opts.checksum,
            parallel: opts.parallel,
            progress: opts.progress.clone(),
        },
    )
    .await?;
    peer.close();
    Ok(report_of(stats, link.wire_bytes() - wire0, start))
}

/// Local sync through an in-process peer pair: the same engine, no daemon.
pub async fn local(src: &Path, dst: &Path, opts: &SyncOptions) -> Result<Report> {
    let spec = local_destination(dst)?;
    let root = spec.fs.path().to_path_buf();
    let dst_rel = spec.dst.display();
    let (a, _b) = Link::pair(
        Arc::new(Services::new()),
        Arc::new(server_services(root, false)),
    )
    .await?;
    let report = push(&a, src, &dst_rel, opts).await;
    a.close("done").await;
    report
}

/// A local destination: an existing directory is the root itself; otherwise the
/// parent (created if missing) is the root and the name is the target.
fn local_destination(dst: &Path) -> Result<TakeSpec> {
    if dst.is_dir() {
        return Ok(TakeSpec {
            fs: Arc::new(FsRoot::open(dst).map_err(fs_err)?),
            dst: FsRoot::check(b"").map_err(fs_err)?,
        });
    }
    let name = dst
        .file_name()
        .ok_or_else(|| Error::Fs(format!("{}: not a usable destination", dst.display())))?;
    let parent = match dst.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    use std::os::unix::ffi::OsStrExt;
    Ok(TakeSpec {
        fs: Arc::new(FsRoot::open_or_create(&parent).map_err(fs_err)?),
        dst: FsRoot::check(name.as_bytes()).map_err(fs_err)?,
    })
}
