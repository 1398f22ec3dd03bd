//! Listing a source instead of copying it (`jcp --list-only`, or `jcp SRC`
//! with no destination, as rsync does): the sender walks and lists exactly as
//! for a copy (filters, `-L`, `-x` and all); this side reads the list, asks
//! for no file, and ends the run with an empty report. A server's source is
//! listed through its `jsync.give` service, so a read-only server lists too.

use std::path::Path;
use std::sync::Arc;

use proto::sync::{self as msg, Entry, EntryBatch, Source, Stats};
use proto::Compression;

use super::give::{self, GiveSpec};
use super::proto_util::{decode, fragment};
use super::report::FileError;
use super::{Args, NoProgress, SyncOptions, GIVE};
use crate::error::{Error, Result};
use crate::runtime::{Link, Peer, Services};

/// What a listing found.
#[derive(Debug, Default)]
pub struct Listing {
    /// The entries as listed, each path as rsync shows it: relative to where
    /// a copy would put the source (`.` for a directory's contents, its
    /// name for the directory itself).
    pub entries: Vec<Entry>,
    /// Entries the sender could not list, each with why.
    pub errors: Vec<FileError>,
    /// Entries that vanished while they were listed.
    pub vanished: Vec<FileError>,
}

/// Lists `src` on the server at the other end of `link` (trailing-slash
/// rules as for a pull). Without `recursive`, only the source itself, and a
/// directory's own entries when its contents are named (`dir/`).
pub async fn list(link: &Link, src: &str, opts: &SyncOptions, recursive: bool) -> Result<Listing> {
    let peer = link.start(GIVE, &Args::encode_give(src, opts)?).await?;
    super::until(opts, link, read_list(peer, recursive)).await
}

/// [`list`] for a local source, through an in-process peer.
pub async fn list_local(src: &Path, opts: &SyncOptions, recursive: bool) -> Result<Listing> {
    const LOCAL_GIVE: &str = "jsync.give-local";
    // Checked here, so that a bad source fails as itself.
    let follow = super::give::Follow::of(opts);
    GiveSpec::local(src, follow)?;
    let args = Args::parse(&Args::encode("", opts)).map_err(|e| Error::Usage(e.to_string()))?;
    let give_opts = args.give_options(Arc::new(NoProgress));
    let (src, only) = (src.to_path_buf(), opts.only.clone());
    let services = Services::new().with(LOCAL_GIVE, move |peer| {
        let (src, only, give_opts) = (src.clone(), only.clone(), give_opts.clone());
        async move {
            let mut spec = GiveSpec::local(&src, follow)?;
            if let Some(only) = &only {
                spec = spec.select(only)?;
            }
            give::give(peer, spec, give_opts).await?;
            Ok(())
        }
    });
    let (a, _b) = Link::pair(Arc::new(Services::new()), Arc::new(services)).await?;
    let peer = a.start(LOCAL_GIVE, &[]).await?;
    let listing = super::until(opts, &a, read_list(peer, recursive)).await;
    a.close("done").await;
    listing.map_err(super::own_failure)
}

/// Plays the receiver's part of a run that only reads the list.
async fn read_list(peer: Peer, recursive: bool) -> Result<Listing> {
    let name = peer.link().peer_name().to_string();
    let (mut tx, mut control) = peer.open().await?.split();
    let violation = |what: String| Error::Violation {
        peer: name.clone(),
        what,
    };
    let source: Source = match control.recv().await? {
        Some(f) if f.op == msg::SOURCE => decode(&f.payload, &name)?,
        _ => return Err(violation("expected the source description".into())),
    };
    let prefix = super::shown_prefix(&source);
    let mut out = Listing::default();
    loop {
        let f = control
            .recv()
            .await?
            .ok_or_else(|| violation("the file list ended without LIST_END".into()))?;
        match f.op {
            msg::LIST => {
                let batch: EntryBatch = decode(&f.payload, &name)?;
                for mut e in batch.0 {
                    // (A path the source lacks, `--delete-missing-args`:
                    // nothing to list.)
                    if e.kind == proto::sync::EntryKind::Missing {
                        continue;
                    }
                    // Not recursive: the source, and a directory's own
                    // entries when its contents are listed.
                    let depth_ok =
                        e.path.is_empty() || (source.contents && !e.path.contains(&b'/'));
                    if !recursive && !depth_ok {
                        continue;
                    }
                    e.path = super::shown_bytes(&prefix, &e.path);
                    if e.path.is_empty() {
                        e.path = b".".to_vec();
                    }
                    out.entries.push(e);
                }
            }
            msg::IDS => {}
            msg::WALK_ERROR => {
                let path = super::walk_error_path(&prefix, &f.payload);
                let message = f.error.unwrap_or_default();
                let gone = message.contains("No such file or directory");
                let list = if gone {
                    &mut out.vanished
                } else {
                    &mut out.errors
                };
                list.push(FileError { path, message });
            }
            msg::LIST_END => break,
            other => return Err(violation(format!("unexpected {other} in the file list"))),
        }
    }
    // Nothing is asked for: the run ends with an empty report.
    tx.send_with(fragment(msg::REPORT, &Stats::default()), Compression::NONE)
        .await?;
    tx.finish().await?;
    while let Ok(Some(_)) = control.recv().await {}
    Ok(out)
}
