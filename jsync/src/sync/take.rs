//! The receiving role ("taker"): read the file list as it streams, decide per
//! entry what is needed, and fetch changed files over a few lanes with requests
//! pipelined ahead of the answers. Each file is rebuilt from old chunks, new
//! bytes and holes in a temporary file that is checked and renamed into place.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use proto::sync::{
    self as msg, Entry, EntryBatch, EntryKind, FileMeta, HardLink, IdNames, Made, RecipeOp,
    RecipeReader, Source, Stats, StatsError, Want, WantHow, WholeFile,
};
use proto::{Compression, Fragment};
use tokio::sync::{mpsc, Mutex, Semaphore};
use tokio::task::JoinSet;

use super::alt::{AltHow, Alts, Found};
use super::backup::Backups;
use super::chunker::{self, ChunkRef, Chunking, DigestBuilder, MAX_CHUNK};
use super::destdir::{at_or_above, open_side_dir, strip, DestMap};
use super::filter::{DirScope, ScopeError, Scopes};
use super::fsroot::{FsRoot, Kind, Meta, Partials, RelPath, TempFile, Times};
use super::give::fs_err;
use super::itemize::{Attrs, Change, Item, Update};
use super::proto_util::{decode, fragment};
use super::report::{Counters, FileError};
use super::{ids, Filter, Progress};
use crate::error::{Error, Result};
use crate::runtime::{CircuitReceiver, CircuitSender, Peer};

/// Old chunks copied into a rebuilt file are read and written in runs of up to
/// this many bytes (consecutive chunks that lie back to back in the old file).
const COPY_RUN_MAX: u64 = 1 << 20;
/// Signature batches of this many chunk refs.
const SIG_BATCH: usize = 2048;
/// Requests one lane may have outstanding, weighted by size (see [`weight`]).
const LANE_WINDOW: u32 = 64;
/// A file larger than this whose size matches but whose time does not goes
/// straight to a delta instead of a hash check first: the receiver cuts its
/// copy while the sender reads along, and one that is the same after all
/// comes back UNCHANGED. A check hashes the file on both sides one after the
/// other, and a file that differs is then read twice more: measured on 1 GiB,
/// a file edited in place takes 55% less time this way, an unchanged one 14%
/// more (and its signature, about 0.05% of the file, crosses the wire). Files
/// this small and smaller keep the check (a source tree's largest files are
/// mostly the same, and their checks go many to a message); so do all with
/// `-c` (most files are the same, and a hash costs less than a cut), `-W`,
/// and `--*-dest` copies. The size where chunks start to grow.
const DELTA_NOT_CHECK_MIN: u64 = 64 << 20;

/// Where to put what arrives.
#[derive(Debug)]
pub(crate) struct TakeSpec {
    pub fs: Arc<FsRoot>,
    /// The destination as named (relative to the root); "" is the root.
    pub dst: RelPath,
    /// Named with a trailing slash: a directory, made if missing, so that a
    /// single file goes inside it instead of taking its name (as in rsync).
    pub dir: bool,
    /// Directories already made above `dst` for this run: a local
    /// destination's missing parents, made to open its root.
    pub made_above: u64,
    /// A destination on this machine (not a server's): `/` filter rules
    /// see its absolute path (on a server, its path beneath the root).
    pub local: bool,
}

/// Receiver options.
#[derive(Clone)]
pub(crate) struct TakeOptions {
    pub checksum: bool,
    /// Same size counts as same content (`--size-only`).
    pub size_only: bool,
    /// What to leave alone by choice.
    pub skips: Skips,
    /// Lanes (circuits carrying file requests) to open.
    pub lanes: usize,
    /// Remove entries the sender does not have.
    pub delete: bool,
    /// Change nothing; report what would change.
    pub dry_run: bool,
    /// Itemize changes at all (`-i`, `-n`, a log format); otherwise no
    /// line is made.
    pub itemize: bool,
    /// Send each change's line for [`Progress::itemize`] (`-i`, `-n`): not
    /// for a log format alone, whose lines go by themselves.
    pub show_items: bool,
    /// With `itemize`, unchanged entries too (`-ii`).
    pub itemize_unchanged: bool,
    /// [`super::SyncOptions::names_unchanged`] (`-vv`).
    pub names_unchanged: bool,
    /// Read old files without moving their access times (`--open-noatime`).
    pub open_noatime: bool,
    /// Allocate each file written to its size first (`--preallocate`).
    pub preallocate: bool,
    /// Send itemized changes to the sender too (it is the one with a user).
    pub items_to_sender: bool,
    /// Receiver entries this excludes are safe from `delete`...
    pub filter: Arc<Filter>,
    /// ...unless this is set.
    pub delete_excluded: bool,
    /// Which extended attributes to make as listed: `-X`'s, `-A`'s (ACLs).
    pub kept: super::fsroot::Kept,
    /// Names of multiply-linked inodes are kept linked (`-H`); local names
    /// of one inode the source has apart are taken apart ([`untangle`]).
    pub hard_links: bool,
    /// Ignore owner names; use the sender's ids as they are.
    pub numeric_ids: bool,
    /// `fsync` each file before renaming it into place.
    pub fsync: bool,
    /// `--delete` enters no directory on another filesystem than the
    /// destination's (`-x`).
    pub one_file_system: bool,
    /// The owner and group every entry gets (`--chown`, as root).
    pub chown: Option<ids::Chown>,
    /// Leave out symlinks that lead outside the transfer (`--safe-links`).
    pub safe_links: bool,
    /// Keep what is replaced or deleted (`--backup`).
    pub backup: Option<super::Backup>,
    /// Where a file the destination lacks may be found already.
    pub alt_dest: Option<super::AltDest>,
    /// The backup directory and those of `alt_dest` must lie beneath the
    /// destination's root (the receiver is a server).
    pub side_dirs_confined: bool,
    /// Tell the sender which entries are in place (PLACED), for
    /// `--remove-source-files`.
    pub confirm_placed: bool,
    /// Delete at most this many entries (`--max-delete`).
    pub max_delete: Option<u64>,
    /// Keep owners and groups (as root; `--no-owner`, `--no-group` turn
    /// them off).
    pub owner: bool,
    pub group: bool,
    /// Give entries the sender's permission bits; without, rsync's
    /// `--no-perms` ([`Ctx::wanted_mode`]).
    pub perms: bool,
    /// Without `perms`, regular files follow the sender's executability (`-E`).
    pub executability: bool,
    /// Give entries the sender's modification times (`--no-times` turns it off).
    pub times: bool,
    /// Seconds apart that modification times may be and count as the same
    /// (`--modify-window`; 0: exact).
    pub modify_window: u64,
    /// Changed files come whole: no signature of the old file, no hash
    /// check unless `checksum` (`-W`; a partial file is still resumed).
    pub whole_file: bool,
    /// A file the destination lacks may start from a similar one beside
    /// it (`--fuzzy`).
    pub fuzzy: bool,
    /// With `fuzzy`, also from one in the same directory of a `--*-dest`
    /// directory (`-yy`).
    pub fuzzy_alts: bool,
    /// Received files are renamed into place together at the end
    /// (`--delay-updates`).
    pub delay_updates: bool,
    /// Partial files live in this directory inside each directory
    /// (`--partial-dir`).
    pub partial_dir: Option<String>,
    /// Temp files are made in this directory (`-T`), named from the
    /// destination directory as `--backup-dir` is.
    pub temp_dir: Option<String>,
    /// A symlink to a directory beneath the root stands for the directory
    /// the sender has (`-K`).
    pub keep_dirlinks: bool,
    /// The sender may list missing paths, each a deletion of what is here
    /// (`--delete-missing-args`); without it, one is a protocol violation.
    pub delete_missing: bool,
    /// A non-empty directory may be removed where a non-directory goes or
    /// a missing source's deletion asks (`--force`, or any `--delete`).
    pub force: bool,
    /// The sender may mark the directories on the way to listed paths as
    /// implied (`--no-implied-dirs`); without it, one is a protocol
    /// violation.
    pub no_implied_dirs: bool,
    /// Whether this side asked for a listing (`-R`, `--files-from`): a
    /// pull's receiver knows; a server's takes the pushing client's word,
    /// since that client is the sender anyway.
    pub listing_asked: bool,
    /// Directories' times are left alone (`-O`).
    pub omit_dir_times: bool,
    /// Symlinks' times are left alone (`-J`).
    pub omit_link_times: bool,
    /// Delete once the list is complete, before any file is requested.
    pub delete_before: bool,
    /// Delete even after the sender's I/O errors.
    pub ignore_errors: bool,
    /// Leave 4 KiB blocks of zeros as holes (`-S`).
    pub sparse: bool,
    /// Make a new directory only for something other than a directory to
    /// go in (`-m`).
    pub prune_empty_dirs: bool,
    /// Lines in this format instead of itemized ones (`--out-format`).
    pub out_format: Option<Arc<super::OutFormat>>,
    /// Each change also in this format, for a log file (`--log-file-format`).
    pub log_format: Option<Arc<super::OutFormat>>,
    /// Owners and groups given in place of the sender's (`--usermap`,
    /// `--groupmap`).
    pub usermap: Option<super::IdMap>,
    pub groupmap: Option<super::IdMap>,
    pub progress: Arc<dyn Progress>,
}

/// Runs the receiver role; returns what it did (also sent to the sender).
pub(crate) async fn take(peer: Peer, spec: TakeSpec, mut opts: TakeOptions) -> Result<Stats> {
    let name = peer.link().peer_name().to_string();
    let (control_tx, mut control) = peer.open().await?.split();
    let first = control.recv().await?;
    let source: Source = match first {
        Some(f) if f.op == msg::SOURCE => decode(&f.payload, &name)?,
        other => {
            return Err(Error::Violation {
                peer: name,
                what: format!(
                    "expected the source description, got {}",
                    other.map(|f| f.op.to_string()).unwrap_or("the end".into())
                ),
            })
        }
    };
    check_source_name(&source, &name)?;
    if source.listed && (source.kind != EntryKind::Dir || !opts.listing_asked) {
        return Err(Error::Violation {
            peer: name,
            what: "a listing (-R, --files-from) this side did not ask for".into(),
        });
    }
    // (A missing source makes nothing: it only deletes.)
    let missing = source.kind == EntryKind::Missing;
    if missing && !opts.delete_missing {
        return Err(missing_unasked(&name, &super::escape_name(&source.name)));
    }
    // Before anything is made: a name this side does not know fails the run.
    let given = match &opts.chown {
        Some(c) => c.resolve().map_err(Error::Usage)?,
        None => (None, None),
    };
    let resolve = |m: &Option<super::IdMap>, what, lookup| {
        m.as_ref()
            .map(|m| m.resolve(what, lookup).map_err(Error::Usage))
            .transpose()
    };
    let maps = (
        resolve(&opts.usermap, "user", ids::uid_by_name)?,
        resolve(&opts.groupmap, "group", ids::gid_by_name)?,
    );
    let (base, placed_new, made) = placement(&spec, &source, opts.dry_run || missing)?;
    if let Some(d) = &opts.partial_dir {
        spec.fs.set_partial_dir(std::ffi::OsStr::new(d));
    }
    // Backups (and the --*-dest directories) mirror the tree beneath the
    // destination directory: the one named, or a single file's.
    let dir = source.kind == EntryKind::Dir;
    let map = DestMap {
        work: if dir { base.clone() } else { RelPath::root() },
        dest: if dir {
            spec.dst.clone()
        } else {
            base.parent().unwrap_or_else(RelPath::root)
        },
    };
    let backups = match &opts.backup {
        // A dry run replaces nothing.
        Some(b) if !opts.dry_run => {
            let protect = opts.delete && !opts.delete_excluded;
            let confined = opts.side_dirs_confined;
            Some(Backups::open(b, &spec.fs, map.clone(), confined, protect)?)
        }
        _ => None,
    };
    let mut warnings = Vec::new();
    let placed_at = base.clone();
    let (fs, base, made_here) = confine(
        &spec,
        base,
        source.kind,
        opts.dry_run,
        backups.as_ref(),
        opts.keep_dirlinks,
    )?;
    // A base directory placement made (a destination named as a
    // directory, for contents) is as new as one confine made.
    let made_base = made_here || placed_new;
    let temp_inside = match &opts.temp_dir {
        Some(d) if !missing => {
            let (inside, warning) = use_temp_dir(d, &spec.fs, &fs, &map, &opts)?;
            warnings.extend(warning);
            inside
        }
        _ => None,
    };
    let alts = match &opts.alt_dest {
        Some(a) => {
            // Entries' paths are beneath the directory's own root once
            // confine made one (not in a dry run of a new destination).
            let map = DestMap {
                work: if dir && base.is_root() {
                    placed_at
                } else {
                    RelPath::root()
                },
                dest: map.dest.clone(),
            };
            let confined = opts.side_dirs_confined;
            Some(Alts::open(a, &spec.fs, map, confined, |w| {
                warnings.push(w)
            })?)
        }
        None => None,
    };
    opts.filter = super::rooted_filter(&opts.filter, &source, super::Side::Receiver);
    if opts.delete_excluded && !opts.filter.is_empty() {
        // Excluded entries are deleted too: only the receiver's own rules
        // (`protect`, `risk`, `-r`) still keep what they match.
        opts.filter = Arc::new(opts.filter.own_rules_only());
    }
    if opts.filter.has_abs_rules() {
        let dir = super::abs_root(spec.fs.path(), spec.dst.as_bytes(), spec.local);
        opts.filter = Arc::new(opts.filter.with_abs_root(&dir));
    }
    if opts.filter.has_xattr_rules() {
        // What `-X` keeps is narrowed by the rules for attribute names.
        opts.kept.names = Some(opts.filter.clone());
    }
    if opts.open_noatime {
        fs.set_open_noatime();
        if let Some(a) = &alts {
            a.set_open_noatime();
        }
    }
    let counters = Arc::new(Counters::default());
    for w in warnings {
        counters.warning("", w);
    }
    let (items, writer) = control_writer(control_tx, opts.progress.clone(), opts.items_to_sender);
    if made.dirs > 0 {
        let _ = writer.send(Outgoing::Made(made));
    }
    let ctx = Arc::new(Ctx {
        peer: peer.clone(),
        fs: fs.clone(),
        counters: counters.clone(),
        progress: opts.progress.clone(),
        items,
        opts: opts.clone(),
        root: ids::is_root(),
        owners: std::sync::Mutex::new(Owners::default()),
        given,
        maps,
        partials: std::sync::Mutex::new(HashMap::new()),
        started: now_ctime(),
        linked_here: std::sync::Mutex::new(Vec::new()),
        listings: Default::default(),
        rule_scopes: Default::default(),
        whole_digest: super::give::whole_digest(peer.link()),
        kept: Arc::new(KeptBudget::new()),
        base: base.clone(),
        prefix: super::shown_prefix(&source),
        backups,
        temp_inside,
        alts,
        fuzzy: opts.fuzzy.then(super::fuzzy::Fuzzy::default),
        staged: opts.delay_updates.then(Default::default),
        umask: if opts.perms { 0 } else { umask() },
        made_dest: made_base && source.kind == EntryKind::Dir && source.contents,
        in_place: (!opts.times && opts.hard_links).then(Default::default),
        compared_out: Default::default(),
    });
    if missing {
        delete_missing(&ctx, &base, Some(&source.name));
    } else if source.kind != EntryKind::Dir && !opts.dry_run {
        // A single file: its directory may hold a temp file a crashed run left.
        if let Some(parent) = base.parent() {
            clean_temps(&ctx, &parent);
        }
    }

    // Jobs go to the lanes a handful at a time (one wake-up per handful), so a
    // lane can fill a CHECKS or WANTS batch from what it was handed.
    let (jobs_tx, jobs_rx) = mpsc::channel::<Vec<FileJob>>(16);
    let jobs_rx = Arc::new(Mutex::new(jobs_rx));
    let mut lanes = JoinSet::new();
    for _ in 0..opts.lanes.max(1) {
        lanes.spawn(run_lane(ctx.clone(), jobs_rx.clone()));
    }
    // Only the lanes hold the jobs' receiving end: once they are all gone
    // (the connection lost), handing them jobs fails instead of waiting
    // for good.
    drop(jobs_rx);

    let mut dirs: Vec<(RelPath, Entry)> = Vec::new();
    // Directories this run made.
    let mut fresh = DirSet::default();
    if made_base {
        fresh.0.insert(base.as_bytes().to_vec());
    }
    let mut seen = Seen::default();
    let mut walk_errors = false;
    let mut index = 0u64;
    // Hard links: the path of each leader by entry number, and the followers.
    let mut leaders: HashMap<u64, (RelPath, Entry)> = HashMap::new();
    // Followers: path, entry, leader's number, own number.
    let mut followers: Vec<(RelPath, Entry, u64, u64)> = Vec::new();
    // What --update, --ignore-existing, --existing and the size limits left
    // alone: directories (with all they hold) and the first names of
    // hard-linked files.
    let mut skipped = DirSet::default();
    let mut skipped_leaders: HashSet<u64> = HashSet::new();
    // A first name left alone (or failed) does not leave out its other
    // names: each is weighed as itself (as rsync's), and the first taken
    // leads the rest in its place (by the first name's number).
    let mut stand_ins: HashMap<u64, u64> = HashMap::new();
    // With --delete-before, requests wait until the deletions are done.
    let mut held: Vec<Vec<FileJob>> = Vec::new();
    let mut unmade = Unmade::default();
    loop {
        let f = control.recv().await?.ok_or_else(|| Error::Violation {
            peer: name.clone(),
            what: "the file list ended without LIST_END".into(),
        })?;
        match f.op {
            msg::LIST => {
                let batch: EntryBatch = decode(&f.payload, &name)?;
                let mut handful = Vec::with_capacity(JOBS_HANDFUL);
                let mut handful_weight = 0;
                for mut entry in batch.0 {
                    ctx.localize_acls(&mut entry);
                    let i = index;
                    index += 1;
                    // The path as shown in messages (made only when needed).
                    let shown = |e: &Entry| ctx.shown(&e.path).into_owned();
                    // A single file's list holds the file alone: anything
                    // more would be written through what that entry made;
                    // a missing source's holds nothing.
                    if missing || (source.kind != EntryKind::Dir && !entry.path.is_empty()) {
                        let why = match missing {
                            true => "refused: the source is missing, and lists nothing",
                            false => "refused: the source is a single file, listed as itself alone",
                        };
                        counters.error(&shown(&entry), why);
                        continue;
                    }
                    // (Only a listing's directories on the way, and only
                    // when asked to, are implied.)
                    if entry.implied
                        && (!opts.no_implied_dirs || !source.listed || entry.path.is_empty())
                    {
                        return Err(Error::Violation {
                            peer: name,
                            what: format!(
                                "{}: an implied directory, which only --no-implied-dirs asks for \
                                 (on the way to a path listed with -R or --files-from)",
                                shown(&entry)
                            ),
                        });
                    }
                    if entry.kind == EntryKind::Missing {
                        // (Only a listing, `--files-from`, names paths the
                        // source may lack, and only when asked to.)
                        if !opts.delete_missing || !source.listed || !opts.listing_asked {
                            return Err(missing_unasked(&name, &shown(&entry)));
                        }
                        match join(&base, &entry.path) {
                            Ok(rel) => delete_missing(&ctx, &rel, None),
                            Err(e) => counters.error(&shown(&entry), e.to_string()),
                        }
                        continue;
                    }
                    Counters::add(&counters.files_checked, 1);
                    let rel = match join(&base, &entry.path) {
                        Ok(r) => r,
                        Err(e) => {
                            counters.error(&shown(&entry), e.to_string());
                            continue;
                        }
                    };
                    // -m: a directory waits for something to go in it.
                    let waits = opts.prune_empty_dirs
                        && entry.kind == EntryKind::Dir
                        && !entry.path.is_empty();
                    // (An unlisted directory, whose contents the sender did
                    // not list, is never deleted, made or not.)
                    if opts.delete && (!waits || entry.unlisted) {
                        seen.insert(&rel);
                    }
                    if opts.prune_empty_dirs {
                        unmade.leave_all_but_parents_of(&rel);
                        if waits {
                            unmade.0.push((rel, entry));
                            continue;
                        }
                        for (r, mut e) in unmade.0.drain(..) {
                            if opts.delete && !e.unlisted {
                                seen.insert(&r);
                            }
                            match plan(&ctx, &r, &mut e, &mut fresh, &mut skipped) {
                                Ok(Plan::Dir) => dirs.push((r, e)),
                                Ok(_) => {}
                                Err(err) => {
                                    let err = failed_entry(&r, &e, err, &mut skipped);
                                    counters.error(&shown(&e), err)
                                }
                            }
                        }
                    }
                    match entry.link {
                        HardLink::Leader => {
                            leaders.insert(i, (rel.clone(), entry.clone()));
                        }
                        HardLink::Follower(first) if entry.kind == EntryKind::File => {
                            let leader = stand_ins.get(&first).copied().unwrap_or(first);
                            if !skipped_leaders.contains(&leader) {
                                // (Each name counts in the total, as in
                                // rsync's; a planned one counts there.)
                                Counters::add(&counters.total_size, entry.size);
                                followers.push((rel, entry, leader, i));
                                continue;
                            }
                            // (Planned below as a first name; left alone
                            // or failed too, the next name tries.)
                            stand_ins.insert(first, i);
                            entry.link = HardLink::Leader;
                            leaders.insert(i, (rel.clone(), entry.clone()));
                        }
                        _ => {}
                    }
                    match plan(&ctx, &rel, &mut entry, &mut fresh, &mut skipped) {
                        Ok(Plan::LeftOut) => {}
                        Ok(Plan::InPlace) => ctx.placed(i),
                        Ok(Plan::Skipped) => {
                            if entry.link == HardLink::Leader {
                                skipped_leaders.insert(i);
                            }
                        }
                        Ok(Plan::Compared) => {
                            ctx.placed(i);
                            if entry.link == HardLink::Leader {
                                skipped_leaders.insert(i);
                            }
                        }
                        Ok(Plan::Dir) => dirs.push((rel, entry)),
                        Ok(Plan::Fetch(how, change, local)) => {
                            let job = FileJob {
                                index: i,
                                rel,
                                shown: shown(&entry),
                                entry,
                                how,
                                change,
                                retry: false,
                                partial: false,
                                local,
                            };
                            handful_weight += weight(job.entry.size);
                            handful.push(job);
                            if handful.len() >= JOBS_HANDFUL || handful_weight >= HANDFUL_WEIGHT {
                                handful_weight = 0;
                                let full = std::mem::take(&mut handful);
                                if opts.delete_before {
                                    held.push(full);
                                } else if jobs_tx.send(full).await.is_err() {
                                    break;
                                }
                            }
                        }
                        Err(e) => {
                            // (The other names of a first name that failed
                            // are each tried as themselves.)
                            if entry.link == HardLink::Leader {
                                skipped_leaders.insert(i);
                            }
                            let e = failed_entry(&rel, &entry, e, &mut skipped);
                            counters.error(&shown(&entry), e);
                        }
                    }
                }
                // (If the lanes are gone, their error is the run's.)
                if !handful.is_empty() {
                    if opts.delete_before {
                        held.push(handful);
                    } else {
                        let _ = jobs_tx.send(handful).await;
                    }
                }
            }
            msg::IDS => {
                let names: IdNames = decode(&f.payload, &name)?;
                ctx.learn_names(&names);
            }
            msg::WALK_ERROR => {
                walk_errors = true;
                let path = super::walk_error_path(&ctx.prefix, &f.payload);
                let message = f.error.unwrap_or_default();
                if message.contains("No such file or directory") {
                    counters.vanished(&path, message);
                } else {
                    counters.error(&path, message);
                }
            }
            msg::LIST_END => break,
            other => {
                return Err(Error::Violation {
                    peer: name,
                    what: format!("unexpected {other} in the file list"),
                })
            }
        }
    }
    let deletion = Deletion {
        walk_errors,
        dirs: &dirs,
        fresh: &fresh,
        source: &source,
        base: &base,
    };
    let mut seen = Some(seen);
    if opts.delete && opts.delete_before {
        deletion.run(&ctx, seen.take().unwrap_or_default()).await?;
    }
    for h in held {
        if jobs_tx.send(h).await.is_err() {
            break;
        }
    }
    drop(jobs_tx);
    while let Some(res) = lanes.join_next().await {
        match res {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(Error::io("lane", std::io::Error::other(e))),
        }
    }
    if peer.link().is_closed() {
        return Err(Error::ConnectionLost {
            peer: name,
            reason: peer.link().failure().unwrap_or_default(),
        });
    }
    // --delay-updates: what arrived goes in place now, before the second
    // names of hard links (which link to it) and --delete.
    ctx.place_staged();
    untangle(&ctx);
    for (rel, e, leader, i) in followers {
        if skipped.holds(&rel) {
            continue;
        }
        if link_follower(&ctx, &rel, &e, leader, leaders.get(&leader)) {
            ctx.placed(i);
        }
    }
    if let Some(seen) = seen.filter(|_| opts.delete) {
        deletion.run(&ctx, seen).await?;
    }
    if let Some(b) = &ctx.backups {
        // (Before the directory times: one of them may hold it.)
        b.remove_if_unused();
    }
    if !opts.dry_run {
        // Directory times last, deepest first, so writing into them does not undo it.
        dirs.sort_by_key(|(r, _)| {
            std::cmp::Reverse(
                r.as_bytes().iter().filter(|&&b| b == b'/').count() + usize::from(!r.is_root()),
            )
        });
        for (rel, e) in dirs {
            // Only what differs now that the contents are in place: an
            // up-to-date directory is not touched at all (not even its ctime).
            let res = match fs.lstat(&rel) {
                Ok(Some(here)) => match ctx.kept_dirlink(&rel, &here) {
                    // (-K: the attributes go to where the link leads.)
                    Ok(Some((at, here))) => ctx.finish_dir(&at, &here, &e),
                    Ok(None) => ctx.finish_dir(&rel, &here, &e),
                    Err(err) => Err(err),
                },
                Ok(None) => Ok(()),
                Err(err) => Err(err.to_string()),
            };
            if let Err(err) = res {
                let err = doing(&rel, "cannot set the directory's attributes", &err);
                // (The destination itself is `.`, as rsync says it.)
                let shown = Some(ctx.shown_rel(&rel)).filter(|s| !s.is_empty());
                counters.error(shown.as_deref().unwrap_or("."), err);
            }
        }
    }
    let stats = stats_of(&counters);
    drop(ctx);
    let _ = writer.send(Outgoing::Report(stats.clone()));
    drop(writer);
    // The control writer sends the report and finishes; the sender then
    // finishes. The run is complete by now: a sender that closes the whole
    // connection as soon as it has the report (a client does) may end it
    // before its circuit's end arrives, and that is no failure.
    let mut stats = stats;
    while let Ok(Some(f)) = control.recv().await {
        // Source files the sender did not remove (--remove-source-files).
        if f.op == msg::SENDER_ERRORS {
            let msg::SenderErrors(list) = decode(&f.payload, &name)?;
            stats.errors.extend(list);
        }
    }
    Ok(stats)
}

/// The error for an entry [`plan`] failed: a directory that could not be
/// made (or made way for) takes what it holds with it, skipped without an
/// error each, as rsync's "Skipping any contents from this failed
/// directory" (each of them said "No such file or directory" before).
fn failed_entry(rel: &RelPath, e: &Entry, why: String, skipped: &mut DirSet) -> String {
    // (One skipped already, a -K link refused, says so itself.)
    if e.kind != EntryKind::Dir || !skipped.0.insert(rel.as_bytes().to_vec()) {
        return why;
    }
    format!("{why}; skipping what it holds")
}

/// What goes out on the control circuit.
enum Outgoing {
    /// What was made for the destination: said first.
    Made(Made),
    Item(String),
    /// A change in the log file's format.
    LogItem(String),
    /// An entry in place (`--remove-source-files`).
    Placed(u64),
    Report(Stats),
}

/// Starts the task that owns the sending half of the control circuit: itemized
/// lines go to the progress hooks and (batched) to the sender; the report ends it.
fn control_writer(
    mut tx: CircuitSender,
    progress: Arc<dyn Progress>,
    to_sender: bool,
) -> (Items, mpsc::UnboundedSender<Outgoing>) {
    let (out, mut rx) = mpsc::unbounded_channel::<Outgoing>();
    tokio::spawn(async move {
        let mut batch = String::new();
        let mut log_batch = String::new();
        let mut placed = Vec::new();
        while let Some(first) = rx.recv().await {
            let mut next = Some(first);
            let mut report = None;
            while let Some(m) = next.take() {
                match m {
                    Outgoing::Made(made) => {
                        progress.made_destination(made.dirs, made.itself);
                        if to_sender {
                            let f = fragment(msg::MADE, &made);
                            if tx.send_with(f, Compression::NONE).await.is_err() {
                                return;
                            }
                        }
                    }
                    Outgoing::Item(line) => {
                        progress.itemize(&line);
                        if to_sender {
                            batch.push_str(&line);
                            batch.push('\n');
                        }
                    }
                    Outgoing::LogItem(line) => {
                        progress.log_item(&line);
                        if to_sender {
                            log_batch.push_str(&line);
                            log_batch.push('\n');
                        }
                    }
                    Outgoing::Placed(index) => placed.push(index),
                    Outgoing::Report(stats) => {
                        report = Some(stats);
                        break;
                    }
                }
                if batch.len() + log_batch.len() < 64 << 10 && placed.len() < msg::MAX_PLACED {
                    next = rx.try_recv().ok();
                }
            }
            for (op, lines) in [(msg::ITEMS, &mut batch), (msg::LOG_ITEMS, &mut log_batch)] {
                if !lines.is_empty() {
                    let f = Fragment::new(op).with_payload(std::mem::take(lines).into_bytes());
                    if tx.send_with(f, Compression::ZSTD).await.is_err() {
                        return;
                    }
                }
            }
            if !placed.is_empty() {
                let f = fragment(msg::PLACED, &msg::Placed(std::mem::take(&mut placed)));
                if tx.send_with(f, Compression::ZSTD).await.is_err() {
                    return;
                }
            }
            if let Some(stats) = report {
                let _ = tx
                    .send_with(fragment(msg::REPORT, &stats), Compression::NONE)
                    .await;
                let _ = tx.finish().await;
                return;
            }
        }
    });
    (Items(out.clone()), out)
}

/// Where itemized lines go.
#[derive(Clone)]
struct Items(mpsc::UnboundedSender<Outgoing>);

impl Items {
    fn send(&self, line: String) {
        let _ = self.0.send(Outgoing::Item(line));
    }

    fn log(&self, line: String) {
        let _ = self.0.send(Outgoing::LogItem(line));
    }

    fn placed(&self, index: u64) {
        let _ = self.0.send(Outgoing::Placed(index));
    }
}

fn stats_of(c: &Counters) -> Stats {
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let list = |l: &std::sync::Mutex<Vec<FileError>>| {
        l.lock()
            .expect("poisoned")
            .iter()
            .map(|e| StatsError {
                path: e.path.as_bytes().to_vec(),
                message: e.message.clone(),
            })
            .collect::<Vec<_>>()
    };
    let errors = list(&c.errors);
    Stats {
        files_checked: get(&c.files_checked),
        files_transferred: get(&c.files_transferred),
        transferred_size: get(&c.transferred_size),
        bytes_literal: get(&c.bytes_literal),
        bytes_reused: get(&c.bytes_reused),
        total_size: get(&c.total_size),
        deleted: get(&c.deleted),
        deletes_skipped: get(&c.deletes_skipped),
        errors_omitted: errors.len().saturating_sub(msg::MAX_ERRORS) as u64,
        errors,
        vanished: list(&c.vanished),
        warnings: list(&c.warnings),
        notices: list(&c.notices),
    }
}

/// Where the source lands, as rsync places it; whether that is a
/// directory made here (a destination named as a directory,
/// [`TakeSpec::dir`], is made first, not in a dry run); and the directories
/// made, or a dry run would make, to put the destination in place (for
/// rsync's "created directory" line; none for a missing source).
fn placement(spec: &TakeSpec, source: &Source, dry_run: bool) -> Result<(RelPath, bool, Made)> {
    // The destination and the directories above it not there yet, read
    // before anything is made (a missing source makes nothing).
    let missing = source.kind == EntryKind::Missing;
    let absent = if missing {
        0
    } else {
        missing_dirs(&spec.fs, &spec.dst)?
    };
    // A directory is not copied onto what is there and is not one (a
    // file, a symlink to one): that would remove it. rsync refuses too
    // ("destination must be a directory").
    if source.kind == EntryKind::Dir
        && absent == 0
        && !spec.dst.is_root()
        && !is_dir_within(&spec.fs, &spec.dst)?
    {
        return Err(Error::Fs(format!(
            "{}: not a directory, so a directory cannot be copied to it",
            spec.dst.display()
        )));
    }
    // The destination itself is a directory (made here or where the
    // directory source is placed), or else a file takes its name and only
    // its parents are made (none when it is there, as a directory or not).
    let itself = spec.dir || source.kind == EntryKind::Dir;
    let made = match missing {
        true => Made::default(),
        false => Made {
            dirs: spec.made_above
                + if itself {
                    absent
                } else {
                    absent.saturating_sub(1)
                },
            itself,
        },
    };
    let mut made_new = false;
    if spec.dir && !dry_run && !spec.dst.is_root() {
        made_new = absent > 0;
        spec.fs.mkdir_all(&spec.dst, 0o777).map_err(fs_err)?;
    }
    let into = |name: &[u8]| -> Result<RelPath> { join(&spec.dst, name).map_err(fs_err) };
    let placed = match (source.kind, source.contents) {
        (EntryKind::Dir, true) => return Ok((spec.dst.clone(), made_new, made)),
        (EntryKind::Dir, false) => into(&source.name),
        _ => {
            if spec.dir || is_dir_within(&spec.fs, &spec.dst)? {
                into(&source.name)
            } else {
                // The file takes the destination's name; the directories on
                // the way are made as a local copy makes them (rsync's
                // --mkpath).
                match spec.dst.parent() {
                    Some(parent) if !dry_run && !parent.is_root() => {
                        spec.fs.mkdir_all(&parent, 0o777).map_err(fs_err)?
                    }
                    _ => {}
                }
                Ok(spec.dst.clone())
            }
        }
    };
    // (Only the destination itself counts: what goes into it is not it.)
    Ok((placed?, false, made))
}

/// Whether `rel` is a directory, or a symlink to one beneath the root.
fn is_dir_within(fs: &FsRoot, rel: &RelPath) -> Result<bool> {
    Ok(matches!(
        fs.stat_follow_within(rel).map_err(fs_err)?,
        Some(Meta {
            kind: Kind::Dir,
            ..
        })
    ))
}

/// How many of `rel` and the directories above it (beneath the root) do
/// not exist yet.
fn missing_dirs(fs: &FsRoot, rel: &RelPath) -> Result<u64> {
    let mut n = 0;
    let mut at = Some(rel.clone());
    while let Some(p) = at.filter(|p| !p.is_root()) {
        if fs.lstat(&p).map_err(fs_err)?.is_some() {
            break;
        }
        n += 1;
        at = p.parent();
    }
    Ok(n)
}

/// A source placed by its name (a file, or a directory without a trailing
/// slash) must name one entry: an empty name, `.` or a path would put it on
/// the destination itself or deeper than the sender may choose.
fn check_source_name(source: &Source, peer: &str) -> Result<()> {
    if source.kind == EntryKind::Dir && source.contents {
        return Ok(());
    }
    let n = &source.name;
    if n.is_empty() || n == b"." || n == b".." || n.contains(&b'/') || n.contains(&0) {
        return Err(Error::Violation {
            peer: peer.into(),
            what: format!(
                "the source's name \"{}\" is not one file name",
                n.escape_ascii()
            ),
        });
    }
    Ok(())
}

/// Where a directory's entries go: its destination directory as a root of
/// its own ([`FsRoot::sub`]), made first if need be (replacing a non-directory,
/// as the list's own entry for it would), so that no entry, not even through a
/// symlink the list itself makes, is written outside it. Returns the root to
/// work in, the base within it, and whether the base directory is new. A
/// single file stays where [`placement`] put it (its list is that file alone),
/// and so does a dry run's destination that does not exist yet (nothing is
/// written, and nothing beneath it exists to be read).
fn confine(
    spec: &TakeSpec,
    base: RelPath,
    kind: EntryKind,
    dry_run: bool,
    backups: Option<&Backups>,
    keep_dirlinks: bool,
) -> Result<(Arc<FsRoot>, RelPath, bool)> {
    if kind != EntryKind::Dir || base.is_root() {
        return Ok((spec.fs.clone(), base, false));
    }
    let fs = &spec.fs;
    let here = fs.lstat(&base).map_err(fs_err)?;
    // -K: a symlink to a directory stands for it, the top one too; and the
    // destination the user named is followed whatever the options, as the
    // kernel follows `DST/` and rsync's receiver its `chdir(DST)` (a push of
    // `src/` to `host:current`, `current` leading to `release-9`, goes into
    // `release-9`), here only beneath the root.
    let dirlink = match &here {
        Some(m) if (keep_dirlinks || base == spec.dst) && m.kind == Kind::Symlink => {
            dirlink_target(fs, &base, &base.display()).map_err(Error::Fs)?
        }
        _ => None,
    };
    if let Some((at, _)) = dirlink {
        return Ok((
            Arc::new(fs.sub(&at).map_err(fs_err)?),
            RelPath::root(),
            false,
        ));
    }
    let made = match here {
        Some(m) if m.kind == Kind::Dir => false,
        _ if dry_run => return Ok((spec.fs.clone(), base, false)),
        other => {
            if other.is_some() {
                match backups {
                    Some(b) => b
                        .keep_top(fs, &base)
                        .map_err(|e| Error::Fs(format!("{}: {e}", base.display())))?,
                    None => fs.remove(&base).map_err(fs_err)?,
                }
            }
            fs.mkdir_all(&base, 0o777).map_err(fs_err)?;
            true
        }
    };
    let sub = fs.sub(&base).map_err(fs_err)?;
    Ok((Arc::new(sub), RelPath::root(), made))
}

/// `-T`: opens the temp directory `name` (named as `--backup-dir` is,
/// from `top` by `map`) and has `fs`, the root the receiver works in, make
/// its temp files there. Returns where the directory lies beneath that
/// root, if it does (for `--delete` to leave alone), and a warning when it
/// is on another mount than the destination directory: temp files are then
/// made beside their files, as without `-T` (jcp never copies a file over
/// its old version in place, which is what rsync does then). The directory
/// must exist, except in a dry run, which makes no temp files.
fn use_temp_dir(
    name: &str,
    top: &Arc<FsRoot>,
    fs: &FsRoot,
    map: &DestMap,
    opts: &TakeOptions,
) -> Result<(Option<RelPath>, Option<String>)> {
    let named = |what: &str| Error::Fs(format!("--temp-dir {name}: {what}"));
    let confined = opts.side_dirs_confined;
    let dir = match open_side_dir("--temp-dir", name, top, map, confined, false)? {
        Some(dir) => dir,
        None if opts.dry_run => return Ok((None, None)),
        None => return Err(named("no such directory")),
    };
    let inside = dir.at.as_ref().and_then(|at| strip(at, &map.work));
    if opts.dry_run {
        return Ok((inside, None));
    }
    let same = fs
        .set_temp_dir(&dir.fs)
        .map_err(|e| named(&e.to_string()))?;
    let warning = (!same).then(|| {
        format!(
            "--temp-dir {name} is on another filesystem than the destination: \
             temp files are made beside their files"
        )
    });
    Ok((inside, warning))
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

/// [`FsRoot::dirlink_target`] for `-K`, its errors naming the link as
/// `shown`: one that does not resolve beneath the root (it leads out of the
/// directory the transfer writes into, or for the top directory's own link
/// out of the local destination directory or the server's root; or it
/// loops; or, with the fallback resolver of kernels before 5.6, any link)
/// says why -K does not follow it.
fn dirlink_target(
    fs: &FsRoot,
    rel: &RelPath,
    shown: &str,
) -> std::result::Result<Option<(RelPath, Meta)>, String> {
    fs.dirlink_target(rel).map_err(|e| match e {
        super::fsroot::FsError::Escape { .. } => format!(
            "{shown}: -K follows only symlinks that resolve to a directory beneath the directory the transfer writes into; this one does not"
        ),
        e => e.to_string(),
    })
}

/// Whether what the receiver has (`have`) is of the sender's `kind`, so
/// that without `perms` it keeps its mode.
fn same_kind(have: Kind, kind: EntryKind) -> bool {
    matches!(
        (have, kind),
        (Kind::File, EntryKind::File)
            | (Kind::Dir, EntryKind::Dir)
            | (Kind::Symlink, EntryKind::Symlink)
            | (Kind::Fifo, EntryKind::Fifo)
            | (Kind::CharDev, EntryKind::CharDev)
            | (Kind::BlockDev, EntryKind::BlockDev)
    )
}

/// Now, as a file's ctime reads (`CLOCK_REALTIME`).
fn now_ctime() -> (i64, u32) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (now.as_secs() as i64, now.subsec_nanos())
}

/// This process's umask, which new entries' modes go through without
/// `perms` (as rsync's do): read from /proc (asking the kernel would mean
/// setting it, which other threads could see); 0o022 where /proc does not
/// say.
fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find_map(|l| l.strip_prefix("Umask:"))?;
            u32::from_str_radix(line.trim(), 8).ok()
        })
        .unwrap_or_else(|| {
            tracing::warn!("cannot read the umask from /proc/self/status; taking 022");
            0o022
        })
}

/// Cleans what a crashed run left in `dir`; remembers the directory when it
/// holds partial files (only those directories are searched for them).
/// With `--delete`, keeps the names the directory held for the deletion pass.
fn clean_temps(ctx: &Ctx, dir: &RelPath) {
    match ctx.fs.clean_stale_temps_scan(dir) {
        Ok(scan) => {
            if scan.cleaned > 0 {
                tracing::info!(dir = %dir.display(), temps = scan.cleaned, "cleaned what a crashed run left");
            }
            if scan.partials != Partials::None {
                ctx.partials
                    .lock()
                    .expect("poisoned")
                    .insert(dir.as_bytes().to_vec(), scan.partials);
            }
            if ctx.opts.delete {
                ctx.listings
                    .lock()
                    .expect("poisoned")
                    .insert(dir.as_bytes().to_vec(), scan.names);
            }
        }
        // (What cannot be read here fails, named, as files arrive in it.)
        Err(e) => {
            tracing::debug!(dir = %dir.display(), error = %e, "cannot clean stale temp files")
        }
    }
}

/// What the receiving side shares between the list reader and the lanes.
struct Ctx {
    peer: Peer,
    fs: Arc<FsRoot>,
    /// This process's umask, for new entries' modes without `perms`.
    umask: u32,
    /// The run made the destination directory (the base, where the
    /// source's contents go) before the list came: without `perms` it
    /// keeps the mode it was made with, as rsync's.
    made_dest: bool,
    /// Without `times` (and with `hard_links`): the entries in place, so
    /// that a follower links only to a first name that is (its time no
    /// longer tells).
    in_place: Option<std::sync::Mutex<HashSet<u64>>>,
    /// In a dry run: the first names a `--compare-dest` copy found the same
    /// by hash (`-c`), which their other names follow in being left out
    /// (a real run tells by their absence).
    compared_out: std::sync::Mutex<HashSet<u64>>,
    counters: Arc<Counters>,
    progress: Arc<dyn Progress>,
    items: Items,
    opts: TakeOptions,
    /// Whether owners can be set (the receiver runs as root).
    root: bool,
    owners: std::sync::Mutex<Owners>,
    /// The owner and group `--chown` gives every entry, in local ids.
    given: (Option<u32>, Option<u32>),
    /// `--usermap` and `--groupmap`, looked up here.
    maps: (Option<ids::ResolvedIdMap>, Option<ids::ResolvedIdMap>),
    /// The partial files interrupted runs left, by directory.
    partials: std::sync::Mutex<HashMap<Vec<u8>, Partials>>,
    /// When the run started, as a ctime: a partial file changed since is
    /// another run's, going on now, and is not removed.
    started: (i64, u32),
    /// With `-H`: listed files (none a second name) the destination had
    /// linked to other names, for [`untangle`].
    linked_here: std::sync::Mutex<Vec<(RelPath, Entry)>>,
    /// With `--delete`: what each existing directory held when it was scanned
    /// for temp files (everything added since is the sender's, so not deleted).
    listings: std::sync::Mutex<HashMap<Vec<u8>, super::fsroot::Listing>>,
    /// With `--delete` and `dir-merge` rules: the per-directory rules of each
    /// destination directory (by its path under the base), read once.
    rule_scopes: std::sync::Mutex<Scopes>,
    /// Whether files sent whole carry a digest ([`super::give::whole_digest`]).
    whole_digest: bool,
    /// Descriptors of hashed files kept open until their verdict.
    kept: Arc<KeptBudget>,
    /// Where the list's entries go, and what the user sees before their
    /// paths ([`super::shown_prefix`]).
    base: RelPath,
    prefix: Vec<u8>,
    /// With `--backup`: where what is replaced or deleted is kept.
    backups: Option<Backups>,
    /// With `-T`: where its directory lies beneath the root, which
    /// `--delete` leaves alone.
    temp_inside: Option<RelPath>,
    /// With `--compare-dest`, `--copy-dest`, `--link-dest`: where files the
    /// destination lacks may be found.
    alts: Option<Alts>,
    /// With `--fuzzy`: a basis for a file the destination lacks, among its
    /// siblings.
    fuzzy: Option<super::fuzzy::Fuzzy>,
    /// With `--delay-updates`: received files waiting (as their partial
    /// files) to be renamed into place at the end: where, the staged file's
    /// device and inode, entry number, and the path as the user sees it.
    staged: Option<std::sync::Mutex<Vec<Staged>>>,
}

/// A received file waiting as its partial file (`--delay-updates`).
struct Staged {
    rel: RelPath,
    /// The staged file's device and inode: only it is put in place.
    id: (u64, u64),
    index: u64,
    shown: String,
}

/// How many hashed files may stay open awaiting their verdicts: a quarter of
/// the descriptors this process may open, at most [`KEPT_MAX`]. A file over
/// the budget is closed after hashing and found again by its path.
struct KeptBudget {
    open: std::sync::atomic::AtomicUsize,
    max: usize,
}

/// See [`KeptBudget`]: the most it keeps open, whatever the limit (eight lanes
/// with a CHECKS of 256 files each in flight hold 2,048).
const KEPT_MAX: usize = 4096;

impl KeptBudget {
    fn new() -> KeptBudget {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(u64::MAX);
        KeptBudget {
            open: Default::default(),
            max: usize::try_from(limit / 4)
                .unwrap_or(usize::MAX)
                .min(KEPT_MAX),
        }
    }

    /// Keeps `file` open if the budget allows.
    fn keep(self: &Arc<Self>, file: File) -> Option<Kept> {
        if self.open.fetch_add(1, Ordering::Relaxed) < self.max {
            Some(Kept {
                file,
                budget: self.clone(),
            })
        } else {
            self.open.fetch_sub(1, Ordering::Relaxed);
            None
        }
    }
}

/// A hashed file kept open until its verdict: a file found the same then gets
/// its time through the descriptor, with no path to look up twice more.
struct Kept {
    file: File,
    budget: Arc<KeptBudget>,
}

impl Drop for Kept {
    fn drop(&mut self) {
        self.budget.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The sender's owner and group ids mapped to ours by name (IDS).
#[derive(Default)]
struct Owners {
    users: HashMap<u32, u32>,
    groups: HashMap<u32, u32>,
    /// The sender's names for its ids (for `--usermap`/`--groupmap`).
    user_names: HashMap<u32, Vec<u8>>,
    group_names: HashMap<u32, Vec<u8>>,
}

impl Ctx {
    /// Whether two modification times count as the same (`--modify-window`).
    fn same_mtime(&self, a: (i64, u32), b: (i64, u32)) -> bool {
        super::same_mtime(a, b, self.opts.modify_window)
    }

    /// rsync's quick check: whether the receiver's file `m` has the size and
    /// modification time (only the size, with `--size-only`) of `e`.
    fn quick_check(&self, m: &Meta, e: &Entry) -> bool {
        m.size == e.size && (self.same_mtime(m.mtime, e.mtime) || self.opts.size_only)
    }

    /// Entry `index` is in place: the sender may remove its source
    /// (`--remove-source-files`).
    fn placed(&self, index: u64) {
        if self.opts.confirm_placed {
            self.items.placed(index);
        }
        if let Some(set) = &self.in_place {
            set.lock().expect("poisoned").insert(index);
        }
    }

    /// Puts the received file `temp` in place as `job`'s with `meta`'s mode
    /// and mtime, or with `--delay-updates` stages it for the end (true
    /// then: its PLACED waits for the rename).
    fn put_in_place(
        &self,
        temp: TempFile,
        meta: &FileMeta,
        job: &FileJob,
    ) -> std::result::Result<bool, String> {
        let meta = self.as_applied(job, meta);
        let times = Times {
            mtime: self.applied_mtime(meta.mtime),
            atime: job.entry.atime,
        };
        let Some(staged) = &self.staged else {
            temp.commit(meta.mode, times, self.opts.fsync)
                .map_err(|e| e.to_string())?;
            return Ok(false);
        };
        let id = temp
            .stage(meta.mode, times, self.opts.fsync)
            .map_err(|e| e.to_string())?;
        let mut staged = staged.lock().expect("poisoned");
        staged.push(Staged {
            rel: job.rel.clone(),
            id,
            index: job.index,
            shown: job.shown.clone(),
        });
        Ok(true)
    }

    /// `--delay-updates`: renames what was staged into place, in list order.
    fn place_staged(&self) {
        let Some(staged) = &self.staged else {
            return;
        };
        let mut files = std::mem::take(&mut *staged.lock().expect("poisoned"));
        files.sort_unstable_by_key(|s| s.index);
        for s in files {
            match self.fs.place_partial(&s.rel, s.id) {
                Ok(()) => self.placed(s.index),
                Err(super::fsroot::FsError::Io { source, .. }) => {
                    let why = format!("cannot put it in place (--delay-updates): {source}");
                    self.counters.error(&s.shown, why)
                }
                Err(e) => self.counters.error(&s.shown, e.to_string()),
            }
        }
    }

    /// Before `rel` is replaced by a new entry: its backup, with `--backup`.
    fn keep_replaced(&self, rel: &RelPath) -> std::result::Result<(), String> {
        match &self.backups {
            Some(b) => b.keep_replaced(&self.fs, rel),
            None => Ok(()),
        }
    }

    /// Removes `rel`, a directory with all it holds (entering none on
    /// another filesystem than `dev`'s); with `--backup`, moves it to its
    /// backup instead.
    fn remove(&self, rel: &RelPath, dev: Option<u64>) -> std::result::Result<(), String> {
        match &self.backups {
            // (An empty directory just goes: rsync keeps no backup of one.)
            Some(b) => match self.fs.remove_empty_dir(rel) {
                Ok(true) => Ok(()),
                _ => b.keep_removed(&self.fs, rel),
            },
            None => self.fs.remove_all_on(rel, dev).map_err(|e| e.to_string()),
        }
    }

    /// Removes the directory at `rel` for an entry of another kind (backed
    /// up with `--backup`; an empty one just goes), once [`Ctx::way_out`]
    /// allowed it ([`Ctx::clear_dir`]). Without `force` only an empty one
    /// goes (should it fill meanwhile, it stays and this fails).
    fn make_way(&self, rel: &RelPath, home: Option<u64>) -> std::result::Result<(), String> {
        match self.opts.force {
            true => self.remove(rel, home),
            false => self.fs.remove(rel).map_err(|e| e.to_string()),
        }
    }

    /// [`Ctx::make_way`], or in a dry run only [`Ctx::way_out`]'s answer.
    /// What the directory holds is deleted as `--delete` deletes, counted
    /// (as rsync counts it) and held by `--max-delete`: a directory holding
    /// more than the limit leaves stays whole and the entry fails, as
    /// rsync's "could not make way" (which deletes up to the limit first).
    /// With `-x`, one holding another filesystem stays whole too.
    fn clear_dir(&self, rel: &RelPath) -> std::result::Result<(), String> {
        self.way_out(rel)?;
        let home = match (self.opts.one_file_system, rel.parent()) {
            (true, Some(parent)) => self.fs.lstat(&parent).map_err(|e| e.to_string())?,
            _ => None,
        }
        .map(|m| m.dev);
        // (0 for an empty one, read once.)
        let held = self
            .fs
            .count_beneath(rel, home)
            .map_err(|e| format!("could not make way for it: {e}"))?;
        let deleted = &self.counters.deleted;
        let max = self.opts.max_delete.unwrap_or(u64::MAX);
        let reserved = deleted.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |done| {
            done.checked_add(held).filter(|&n| n <= max)
        });
        if reserved.is_err() {
            Counters::add(&self.counters.deletes_skipped, held);
            return Err(format!(
                "could not make way for it: deleting the {held} entries the directory \
                 there holds would pass --max-delete's limit"
            ));
        }
        // (Listed before they go, said once they have; a listing that
        // fails costs only its lines.)
        let mut gone = Vec::new();
        if self.opts.itemize && held > 0 {
            let _ = self.items_beneath(rel, &mut gone);
        }
        if !self.opts.dry_run {
            self.make_way(rel, home).inspect_err(|_| {
                deleted.fetch_sub(held, Ordering::Relaxed);
            })?;
        }
        for item in &gone {
            self.send_item(item);
        }
        Ok(())
    }

    /// A `*deleting` item for each entry the directory at `rel` holds, all
    /// the way down, in the order `--delete` deletes them (rsync's lines
    /// for what making way deletes; not the directory's own), into `out`.
    fn items_beneath(&self, rel: &RelPath, out: &mut Vec<Item>) -> std::result::Result<(), String> {
        let mut names = self.fs.read_dir(rel).map_err(|e| e.to_string())?;
        rsync_order(&mut names);
        for (name, is_dir) in names {
            let child = rel.join(std::ffi::OsStr::from_bytes(&name));
            if is_dir {
                self.items_beneath(&child, out)?;
            }
            let shown = self.shown_bytes(self.under_base(&child));
            out.push(Item::deleting(&shown, is_dir));
        }
        Ok(())
    }

    /// Why the directory at `rel` may not make way for an entry of another
    /// kind, as rsync's: it holds anything and neither `--force` nor
    /// `--delete` is on ([`Ctx::refuse_full_dir`]), or it holds what the
    /// receiver's rules protect (perishable rules do not count). Only
    /// reads: a dry run asks too.
    fn way_out(&self, rel: &RelPath) -> std::result::Result<(), String> {
        self.refuse_full_dir(rel, "replace")?;
        if self.opts.filter.has_path_rules() && protected_inside(self, rel, None)? {
            return Err(
                "cannot make way for it: the directory there holds protected entries".into(),
            );
        }
        Ok(())
    }

    /// An error when the directory at `rel` holds anything and `force` is
    /// off (rsync "could not make way" or "cannot delete non-empty
    /// directory"); `what` is what was to be done to it.
    fn refuse_full_dir(&self, rel: &RelPath, what: &str) -> std::result::Result<(), String> {
        if self.opts.force || self.fs.is_empty_dir(rel).map_err(|e| e.to_string())? {
            return Ok(());
        }
        Err(format!(
            "cannot {what} a directory that is not empty without --force or --delete (as rsync)"
        ))
    }

    /// Maps the sender's names to local ids (as root, or for ACLs' named
    /// users and groups, which need no root; not with `--numeric-ids`).
    fn learn_names(&self, names: &IdNames) {
        if !(self.root || self.opts.kept.acls) || self.opts.numeric_ids {
            return;
        }
        let mut o = self.owners.lock().expect("poisoned");
        if self.maps.0.is_some() {
            o.user_names.extend(names.users.iter().cloned());
        }
        if self.maps.1.is_some() {
            o.group_names.extend(names.groups.iter().cloned());
        }
        for (id, n) in &names.users {
            if let Some(local) = ids::uid_by_name(n) {
                o.users.insert(*id, local);
            }
        }
        for (id, n) in &names.groups {
            if let Some(local) = ids::gid_by_name(n) {
                o.groups.insert(*id, local);
            }
        }
    }

    /// The local owner and group an entry should get; `None` when owners are
    /// not ours to set (not root), as rsync skips them silently, and either
    /// one `None` where it is not kept (`--no-owner`, `--no-group`; `--chown`
    /// still gives its own).
    fn owner_of(&self, e: &Entry) -> Option<(Option<u32>, Option<u32>)> {
        if !self.root {
            return None;
        }
        let o = self.owners.lock().expect("poisoned");
        let (uid, gid) = self.given;
        let uid = uid.or_else(|| self.opts.owner.then(|| self.local_uid(&o, e.uid)));
        let gid = gid.or_else(|| self.opts.group.then(|| self.local_gid(&o, e.gid)));
        Some((uid, gid))
    }

    /// The local user id for the sender's `uid`: by `--usermap` first, then
    /// by the sender's name for it, then the number itself.
    fn local_uid(&self, o: &Owners, uid: u32) -> u32 {
        let named = o.user_names.get(&uid).map(Vec::as_slice);
        let mapped = self.maps.0.as_ref().and_then(|m| m.map(uid, named));
        mapped.unwrap_or_else(|| o.users.get(&uid).copied().unwrap_or(uid))
    }

    /// [`Ctx::local_uid`] for groups (`--groupmap`).
    fn local_gid(&self, o: &Owners, gid: u32) -> u32 {
        let named = o.group_names.get(&gid).map(Vec::as_slice);
        let mapped = self.maps.1.as_ref().and_then(|m| m.map(gid, named));
        mapped.unwrap_or_else(|| o.groups.get(&gid).copied().unwrap_or(gid))
    }

    /// `e` with the named users and groups of its ACLs (`-A`) mapped to
    /// local ids, as owners are (names learned so far: the sender sends an
    /// id's name before the first entry that uses it), and its access ACL's
    /// owner, mask and other entries those of its mode.
    fn localize_acls(&self, e: &mut Entry) {
        if !self.opts.kept.acls || e.xattrs.is_empty() {
            return;
        }
        let o = self.owners.lock().expect("poisoned");
        let mode = e.mode;
        for (name, value) in &mut e.xattrs {
            if super::acl::is_acl(name) {
                *value = super::acl::map_ids(
                    value,
                    |u| self.local_uid(&o, u),
                    |g| self.local_gid(&o, g),
                );
            }
            // (--chmod may have changed the mode the ACL must agree with.)
            if name.as_slice() == super::acl::ACCESS {
                *value = super::acl::with_mode(value, mode);
            }
        }
    }

    /// Whether a job can go in a WANTS: a small file wanted whole, with no
    /// partial file to resume from.
    fn batchable(&self, job: &FileJob) -> bool {
        job.how == WantHow::Full
            && job.entry.size <= BATCH_FILE_MAX
            && !self.may_have_partial(&job.rel)
    }

    /// Whether a job can go in a CHECKS: a same-size file to compare by
    /// hash (one with a partial file too: found the same, that goes;
    /// differing, the delta asked for then resumes from it). A large one
    /// goes as a delta, which finds it unchanged as cheaply, unless the
    /// content is compared anyway (`-c`, `-W`, a `--*-dest` copy) or
    /// nothing may be asked for (a dry run).
    fn checkable(&self, job: &FileJob) -> bool {
        job.how == WantHow::HashCheck
            && (job.entry.size <= DELTA_NOT_CHECK_MIN
                || self.opts.dry_run
                || self.opts.checksum
                || self.opts.whole_file
                || job.local.alt().is_some())
    }

    /// An entry the sender lists under a partial file's name is the
    /// user's, not a partial file (the list comes in name order, so before
    /// the file it would be the partial of).
    fn listed_partial_name(&self, rel: &RelPath) {
        let Some(name) = rel
            .file_name()
            .filter(|n| super::fsroot::is_partial_name(n.as_bytes()))
        else {
            return;
        };
        let dir = rel
            .parent()
            .map(|p| p.as_bytes().to_vec())
            .unwrap_or_default();
        if let Some(p) = self.partials.lock().expect("poisoned").get_mut(&dir) {
            p.listed(name.as_bytes());
        }
    }

    /// Removes the partial file an interrupted run left of `rel`, if any:
    /// `rel` is up to date, and nothing is to resume from it.
    fn drop_partial(&self, rel: &RelPath) {
        if self.may_have_partial(rel) {
            if let Err(e) = self.fs.remove_partial_before(rel, self.started) {
                tracing::debug!(path = %rel.display(), error = %e, "cannot remove a stale partial file");
            }
        }
    }

    /// Whether `rel` may have a partial file an interrupted run left
    /// (one of its name was there when its directory was read).
    fn may_have_partial(&self, rel: &RelPath) -> bool {
        let dirs = self.partials.lock().expect("poisoned");
        if dirs.is_empty() {
            return false;
        }
        let (Some(dir), Some(name)) = (rel.parent(), rel.file_name()) else {
            return false;
        };
        dirs.get(dir.as_bytes()).is_some_and(|p| p.has(name))
    }

    /// Not as root: an existing directory `rel` (`here`) this user may not
    /// read, write or enter (a copy of a read-only tree, run again) is
    /// given them for the run, as rsync's receiver does; [`Ctx::finish_dir`]
    /// sets its mode at the end, as it sees the change. (One it cannot
    /// change, another user's, fails its entries as before.)
    fn open_up(&self, rel: &RelPath, here: &Meta) {
        if !self.root && here.mode & 0o700 != 0o700 {
            let _ = self.fs.set_mode(rel, (here.mode | 0o700) & 0o7777);
        }
    }

    /// Gives directory `rel` (`here`) the sender's attributes, once its
    /// contents are in place: only what differs (an up-to-date directory is
    /// not touched, not even its ctime).
    fn finish_dir(&self, rel: &RelPath, here: &Meta, e: &Entry) -> std::result::Result<(), String> {
        // (Without `perms`, a new directory keeps the setgid bit it
        // inherited, as rsync's does.)
        let kept;
        let e = if self.opts.perms {
            e
        } else {
            kept = Entry {
                mode: (e.mode & !0o2000) | (here.mode & 0o2000),
                ..e.clone()
            };
            &kept
        };
        let c = self.attr_change(rel, here, e);
        self.update_attrs(rel, e, &c)
            .and_then(|()| match c.time {
                true => self.fs.set_times(rel, e.mtime, true),
                false => Ok(()),
            })
            .map_err(|err| err.to_string())
    }

    /// With `-K`, where a symlink at `rel` (`here`) leads when that is a
    /// directory beneath the root: the directory's path and metadata, which
    /// stand for `rel` when the sender has a directory there. `None` for
    /// anything else (a symlink to no directory is replaced, as rsync's).
    fn kept_dirlink(
        &self,
        rel: &RelPath,
        here: &Meta,
    ) -> std::result::Result<Option<(RelPath, Meta)>, String> {
        if !self.opts.keep_dirlinks || here.kind != Kind::Symlink {
            return Ok(None);
        }
        dirlink_target(&self.fs, rel, &self.shown_rel(rel))
            .map_err(|e| format!("{e}; left as it is, with nothing sent into it"))
    }

    /// What differs in attributes between what is here and the entry.
    fn attr_change(&self, rel: &RelPath, here: &Meta, e: &Entry) -> Change {
        let mut c = self.meta_change(here, e);
        if matches!(e.kind, EntryKind::File | EntryKind::Dir) {
            (c.xattrs, c.acls) = self.xattr_change(|| self.fs.xattrs(rel), e);
        }
        c
    }

    /// [`Ctx::attr_change`] but for extended attributes and ACLs: time,
    /// mode, owner and group.
    fn meta_change(&self, here: &Meta, e: &Entry) -> Change {
        let mut c = Change {
            time: self.keeps_time(e.kind) && !self.same_mtime(here.mtime, e.mtime),
            // (Whole seconds, as rsync compares them: some filesystems
            // keep no finer access time.)
            atime: e.atime.is_some_and(|a| a.0 != here.atime.0),
            perms: here.mode != e.mode && here.kind != Kind::Symlink,
            ..Change::default()
        };
        if let Some((uid, gid)) = self.owner_of(e) {
            c.owner = uid.is_some_and(|u| here.uid != u);
            c.group = gid.is_some_and(|g| here.gid != g);
        }
        c
    }

    /// Whether the extended attributes (first) and ACLs that are kept
    /// differ from what `have` reads (both when they cannot be read; none
    /// read unless some are kept).
    fn xattr_change(
        &self,
        have: impl FnOnce() -> std::result::Result<Vec<(Vec<u8>, Vec<u8>)>, super::fsroot::FsError>,
        e: &Entry,
    ) -> (bool, bool) {
        let kept = &self.opts.kept;
        if !kept.any() {
            return (false, false);
        }
        match have() {
            Ok(have) => kept.differences(&have, &e.xattrs),
            Err(_) => (kept.xattrs, kept.acls),
        }
    }

    /// The times a new entry gets: the sender's mtime where kept, and its
    /// atime with `-U`.
    fn times_of(&self, e: &Entry) -> Times {
        Times {
            mtime: self.keeps_time(e.kind).then_some(e.mtime),
            atime: e.atime,
        }
    }

    /// Whether entries of this kind get the sender's modification time (not
    /// directories with `-O`, not symlinks with `-J`).
    fn keeps_time(&self, kind: EntryKind) -> bool {
        self.opts.times
            && match kind {
                EntryKind::Dir => !self.opts.omit_dir_times,
                EntryKind::Symlink => !self.opts.omit_link_times,
                _ => true,
            }
    }

    /// The permission bits an entry the sender lists with `sent` gets where
    /// the receiver has `here`: `sent`, or without `perms` rsync's choice
    /// for `--no-perms` (its `dest_mode`): an entry of the same kind keeps
    /// its bits (with `-E`, a regular file loses its execute bits when the
    /// sender's has none, and gains them where it can be read when the
    /// sender's has one and it had none); anything else gets the sender's
    /// access bits less the umask (no setuid, setgid or sticky bit).
    fn wanted_mode(&self, sent: u32, kind: EntryKind, here: Option<&Meta>) -> u32 {
        if self.opts.perms {
            return sent;
        }
        match here {
            Some(m) if same_kind(m.kind, kind) => {
                let mut mode = m.mode & 0o7777;
                if self.opts.executability && kind == EntryKind::File {
                    if sent & 0o111 == 0 {
                        mode &= !0o111;
                    } else if mode & 0o111 == 0 {
                        mode |= (mode & 0o444) >> 2;
                    }
                }
                mode
            }
            _ => sent & 0o777 & !self.umask,
        }
    }

    /// The sender's view of `job`'s file as this side applies it: without
    /// `perms`, with the mode planning chose ([`Ctx::wanted_mode`]).
    fn as_applied(&self, job: &FileJob, meta: &FileMeta) -> FileMeta {
        FileMeta {
            mode: if self.opts.perms {
                meta.mode
            } else {
                job.entry.mode
            },
            ..*meta
        }
    }

    /// The modification time a received file gets: the sender's, or with
    /// `--no-times` none (it keeps the time it was written).
    fn applied_mtime(&self, mtime: (i64, u32)) -> Option<(i64, u32)> {
        self.keeps_time(EntryKind::File).then_some(mtime)
    }

    /// Sets owner (as root) and xattrs (with -X) and ACLs (-A) of an
    /// existing entry; the owner first, since chown clears setuid bits and
    /// file capabilities (and the mode after: an ACL sets permission bits).
    fn set_owner_and_xattrs(
        &self,
        rel: &RelPath,
        e: &Entry,
    ) -> std::result::Result<(), super::fsroot::FsError> {
        if let Some((uid, gid)) = self.owner_of(e) {
            let here = self.fs.lstat(rel)?;
            let differs =
                |m: &Meta| uid.is_some_and(|u| m.uid != u) || gid.is_some_and(|g| m.gid != g);
            if here.is_some_and(|m| differs(&m)) {
                self.fs.chown(rel, uid, gid)?;
            }
        }
        if self.opts.kept.any() && matches!(e.kind, EntryKind::File | EntryKind::Dir) {
            self.fs.set_xattrs(rel, &e.xattrs, &self.opts.kept)?;
        }
        Ok(())
    }

    /// Brings the attributes of an entry whose content is right up to date.
    fn update_attrs(
        &self,
        rel: &RelPath,
        e: &Entry,
        c: &Change,
    ) -> std::result::Result<(), super::fsroot::FsError> {
        if c.owner || c.group || c.xattrs || c.acls {
            self.set_owner_and_xattrs(rel, e)?;
        }
        if c.perms || c.owner || c.group || c.acls {
            self.fs.set_mode(rel, e.mode)?;
        }
        if (c.time || c.atime) && e.kind != EntryKind::Dir {
            let times = Times {
                mtime: c.time.then_some(e.mtime),
                atime: e.atime,
            };
            self.fs.set_times(rel, times, false)?;
        }
        Ok(())
    }

    /// An entry's path as the user sees it ([`super::shown_path`]).
    fn shown<'a>(&self, path: &'a [u8]) -> std::borrow::Cow<'a, str> {
        super::shown_path(&self.prefix, path)
    }

    /// [`Ctx::shown`] as bytes, for itemized lines.
    fn shown_bytes(&self, path: &[u8]) -> Vec<u8> {
        super::shown_bytes(&self.prefix, path)
    }

    /// A path beneath the base, relative to the base (as entries are).
    fn under_base<'a>(&self, rel: &'a RelPath) -> &'a [u8] {
        let b = rel.as_bytes();
        b.strip_prefix(self.base.as_bytes())
            .map(|p| p.strip_prefix(b"/").unwrap_or(p))
            .unwrap_or(b)
    }

    /// The per-directory filter rules (`dir-merge`) in force in destination
    /// directory `dir`, from the destination's own rule files, read from the
    /// base down once each (as rsync's receiver does for its deletions).
    fn rule_scope(&self, dir: &RelPath) -> std::result::Result<DirScope, ScopeError> {
        let mut read = |d: &[u8], name: &str| {
            let dir = join(&self.base, d).map_err(|e| e.to_string())?;
            self.fs
                .read_rule_file(&dir, name)
                .map_err(|e| e.to_string())
        };
        let mut scopes = self.rule_scopes.lock().expect("poisoned");
        let key = self.under_base(dir);
        scopes.at(&self.opts.filter, key, &mut read)
    }

    /// Whether `--delete` leaves `rel` alone: the receiver's rules (`scope`,
    /// those of its directory) exclude it, or it is the backup directory.
    /// Inside a directory being deleted (`in_deleted`), rules marked
    /// perishable (`p`) do not count, as in rsync.
    fn spared(&self, scope: &DirScope, rel: &RelPath, is_dir: bool, in_deleted: bool) -> bool {
        self.spared_as(scope, rel, self.under_base(rel), is_dir, in_deleted)
    }

    /// [`Ctx::spared`] with the rules matched against `path` (a missing
    /// source's own name).
    fn spared_as(
        &self,
        scope: &DirScope,
        rel: &RelPath,
        path: &[u8],
        is_dir: bool,
        in_deleted: bool,
    ) -> bool {
        let filter = &self.opts.filter;
        let excluded = match in_deleted {
            true => filter.is_excluded_in_deleted(scope, path, is_dir),
            false => filter.is_excluded_in(scope, path, is_dir),
        };
        excluded
            || self.backups.as_ref().is_some_and(|b| b.protects(rel))
            || self
                .temp_inside
                .as_ref()
                .is_some_and(|t| at_or_above(rel, t))
    }

    /// A path beneath the base (`rel`) as the user sees it.
    fn shown_rel(&self, rel: &RelPath) -> String {
        self.shown(self.under_base(rel)).into_owned()
    }

    /// Reports a change when itemizing or dry-running.
    fn item(&self, update: Update, e: &Entry, c: &Change) {
        if !self.opts.itemize {
            return;
        }
        // (New content without --times keeps the time it is written.)
        let c = &Change {
            transfer_time: !self.opts.times && !c.new && (c.content || update == Update::Received),
            ..*c
        };
        if c.any() || self.shows_unchanged() {
            let path = self.shown_bytes(&e.path);
            self.send_item(&Item::changed(
                update,
                e.kind,
                c,
                &path,
                &e.target,
                attrs_of(e),
            ));
        }
    }

    /// The temp file a new file of `size` bytes is written into (`unnamed`:
    /// [`FsRoot::create_unnamed`], for one written at once), allocated to
    /// its size first with `--preallocate`.
    fn new_file(
        &self,
        rel: &RelPath,
        size: u64,
        unnamed: bool,
    ) -> std::result::Result<TempFile, super::fsroot::FsError> {
        let mut temp = match unnamed {
            true => self.fs.create_unnamed(rel)?,
            false => self.fs.create_temp(rel)?,
        };
        if self.opts.preallocate {
            temp.preallocate(size)?;
        }
        Ok(temp)
    }

    /// Itemizes a file received (or in a dry run one that would be): one
    /// the destination had gets new content.
    fn item_received(&self, e: &Entry, c: &Change) {
        let content = c.content || !c.new;
        self.item(Update::Received, e, &Change { content, ..*c });
    }

    /// In a dry run: counts and itemizes a file that would be received.
    fn would_receive(&self, e: &Entry, c: &Change) {
        Counters::add(&self.counters.files_transferred, 1);
        Counters::add(&self.counters.transferred_size, e.size);
        self.item_received(e, c);
    }

    /// Whether a file found the same by hash whose time alone differs gets
    /// an inode of its own, built from its old one, rather than the new
    /// time set on its inode: when that has other names (an earlier
    /// snapshot's, made with `cp -al` or `--link-dest`), which would take
    /// the time too. rsync sends such a file anew (its quick check saw
    /// another time), and so the snapshot keeps its time; not with `-c`,
    /// where rsync too finds it up to date and sets the time in place.
    fn new_inode_for_time(&self, nlink: u64) -> bool {
        nlink > 1 && !self.opts.checksum
    }

    /// Whether unchanged entries get items: for `-ii`'s lines, or for
    /// `-vv`'s `NAME is uptodate`.
    fn shows_unchanged(&self) -> bool {
        self.opts.itemize_unchanged || self.opts.names_unchanged
    }

    /// Sends `item`'s line (itemized, or in the `--out-format`), if it has
    /// one, and its line for the log file (`--log-file-format`; an
    /// unchanged entry's only with `-ii`).
    fn send_item(&self, item: &Item) {
        if self.opts.show_items {
            let line = match self.line_of(self.opts.out_format.as_deref(), item) {
                // (-vv's lines are stdout's alone, as rsync's.)
                None if self.opts.names_unchanged && self.opts.out_format.is_some() => {
                    item.unchanged_line()
                }
                line => line,
            };
            if let Some(line) = line {
                self.items.send(line);
            }
        }
        let logged = self.opts.itemize_unchanged || !item.unchanged();
        if let Some(f) = self.opts.log_format.as_ref().filter(|_| logged) {
            if let Some(line) = self.line_of(Some(f), item) {
                self.items.log(line);
            }
        }
    }

    /// The line for a changed entry: itemized (`-i`), or in `format` (an
    /// `--out-format`, which without `%i` shows only transfers).
    fn line_of(&self, format: Option<&super::OutFormat>, item: &Item) -> Option<String> {
        match format {
            None => Some(item.line()),
            Some(f) if f.itemizes() || item.transferred() => {
                // The client is the sender when the receiver is remote.
                let op = if self.opts.items_to_sender {
                    "send"
                } else {
                    "recv"
                };
                Some(f.render_item(item, op))
            }
            Some(_) => None,
        }
    }
}

/// What an `--out-format` line may show of a listed entry.
fn attrs_of(e: &Entry) -> Attrs {
    Attrs {
        size: e.shown_size(),
        mtime: e.mtime.0,
        mode: e.mode,
        uid: e.uid,
        gid: e.gid,
    }
}

enum Plan {
    /// The entry is now as listed (made, or found up to date).
    InPlace,
    /// Not made, with a warning (`--safe-links`, a device a non-root
    /// receiver cannot make), or not made in a dry run.
    LeftOut,
    /// Left alone by choice (`--update`, `--ignore-existing`, `--existing`,
    /// `--max-size`, `--min-size`).
    Skipped,
    /// Left out (or removed) because a `--compare-dest` directory holds it:
    /// as in rsync, a success, so `--remove-source-files` removes its
    /// source; a first name's other names are each weighed as themselves.
    Compared,
    Dir,
    /// How to ask, what changed, and the local file to start from.
    Fetch(WantHow, Change, Local),
}

/// A file whose content must be fetched.
struct FileJob {
    index: u64,
    rel: RelPath,
    entry: Entry,
    how: WantHow,
    change: Change,
    shown: String,
    /// Asked again after a DIFFERS answer (as a delta; with `-W`, whole).
    retry: bool,
    /// The basis is a partial file an interrupted run kept (removed once the
    /// file is in place).
    partial: bool,
    local: Local,
}

/// The local file a job's delta starts from, as planning found it.
#[derive(Clone)]
enum Local {
    /// The destination's own at the job's path, if it has one.
    Own,
    /// When it has none: the file at that path in `--*-dest` directory
    /// `i`, of `size` bytes.
    Alt { i: usize, size: u64 },
    /// When it has none: another file of the destination (`--fuzzy`), or
    /// of a `--*-dest` directory (`-yy`).
    Sibling(super::fuzzy::Basis),
}

impl Local {
    /// The `--*-dest` directory holding the file at the job's path.
    fn alt(&self) -> Option<usize> {
        match self {
            Local::Alt { i, .. } => Some(*i),
            _ => None,
        }
    }
}

/// A set of directories whose entries all get the same treatment: those this
/// run created (or, in a dry run, would create), where what the sender lists
/// cannot be there yet, so it is not looked up (an initial copy saves a
/// failing `lstat` per entry) and `--delete` has nothing to look for; and
/// those the skip options left alone, with everything in them. Entries come
/// after their directory, so a subdirectory of one joins the set in turn.
#[derive(Default)]
struct DirSet(HashSet<Vec<u8>>);

impl DirSet {
    /// Whether `rel`'s directory is one of them (for the root: whether the
    /// root itself is, e.g. made by [`confine`] for this run).
    fn holds(&self, rel: &RelPath) -> bool {
        let b = rel.as_bytes();
        if b.is_empty() {
            return self.0.contains(b);
        }
        !self.0.is_empty()
            && self
                .0
                .contains(&b[..b.iter().rposition(|&c| c == b'/').unwrap_or(0)])
    }
}

/// What the receiver leaves alone by choice, as rsync's options of the same
/// names: `update` (`-u`), `ignore_existing`, `existing`, `max_size`,
/// `min_size`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Skips {
    pub update: bool,
    pub ignore_existing: bool,
    pub existing: bool,
    pub max_size: Option<u64>,
    pub min_size: Option<u64>,
    /// `--modify-window`: for `-u`, times this close are the same.
    pub window: u64,
    /// Symlinks (`--no-links` skips them), device files (`--no-devices`)
    /// and FIFOs (`--no-specials`) are made.
    pub links: bool,
    pub devices: bool,
    pub specials: bool,
}

impl Skips {
    /// Whether entries of `kind` are made at all (not symlinks with
    /// `--no-links`, devices with `--no-devices`, FIFOs with
    /// `--no-specials`).
    pub(crate) fn makes(&self, kind: EntryKind) -> bool {
        match kind {
            EntryKind::Symlink => self.links,
            EntryKind::CharDev | EntryKind::BlockDev => self.devices,
            EntryKind::Fifo => self.specials,
            _ => true,
        }
    }

    /// Whether an entry of `kind` left alone is rsync's `skipping
    /// non-regular file`: one not made at all, and not left for
    /// `--existing` (new) or `--ignore-existing` (there) first, which rsync
    /// weighs before and says nothing of.
    pub(crate) fn says_nonregular(&self, here: Option<&Meta>, kind: EntryKind) -> bool {
        let left_first = match here {
            None => self.existing,
            Some(_) => self.ignore_existing,
        };
        !self.makes(kind) && !left_first
    }

    /// The receiver's part of the sync options.
    pub(crate) fn of(o: &super::SyncOptions) -> Skips {
        Skips {
            update: o.update,
            ignore_existing: o.ignore_existing,
            existing: o.existing,
            max_size: o.max_size,
            min_size: o.min_size,
            window: o.modify_window,
            links: o.links,
            devices: o.devices,
            specials: o.specials,
        }
    }

    /// Whether `e` is left alone, given what the receiver has at its place
    /// (as rsync decides: an existing directory is always entered, `-u`
    /// weighs only a regular file against a regular file, and the sizes only
    /// regular files).
    fn leaves_alone(&self, here: Option<&Meta>, e: &Entry) -> bool {
        if !self.makes(e.kind) {
            return true;
        }
        if e.kind == EntryKind::File
            && (self.max_size.is_some_and(|m| e.size > m)
                || self.min_size.is_some_and(|m| e.size < m))
        {
            return true;
        }
        match here {
            None => self.existing,
            Some(m) => {
                let both_dirs = m.kind == Kind::Dir && e.kind == EntryKind::Dir;
                (self.ignore_existing && !both_dirs)
                    || (self.update
                        && m.kind == Kind::File
                        && e.kind == EntryKind::File
                        && m.mtime > e.mtime
                        && !super::same_mtime(m.mtime, e.mtime, self.window))
            }
        }
    }
}

/// Decides what an entry needs; does the cheap work (dirs, links, attributes)
/// inline. In a dry run nothing is changed, only reported.
///
/// Without `perms`, `e` leaves with the mode this side gives it
/// ([`Ctx::wanted_mode`]).
fn plan(
    ctx: &Ctx,
    rel: &RelPath,
    e: &mut Entry,
    fresh: &mut DirSet,
    skipped: &mut DirSet,
) -> std::result::Result<Plan, String> {
    let fs = &ctx.fs;
    let dry = ctx.opts.dry_run;
    let s = |e: super::fsroot::FsError| e.to_string();
    let (kind, size) = (e.kind, e.size);
    // (A symlink's size, in rsync's total, is its target's length.)
    let link_len = e.target.len() as u64;
    let skip = |skipped: &mut DirSet| {
        match kind {
            EntryKind::Dir => {
                skipped.0.insert(rel.as_bytes().to_vec());
            }
            // Still part of what the sender has, as in rsync's total.
            EntryKind::File => Counters::add(&ctx.counters.total_size, size),
            EntryKind::Symlink => Counters::add(&ctx.counters.total_size, link_len),
            _ => {}
        }
        Ok(Plan::Skipped)
    };
    if skipped.holds(rel) {
        return skip(skipped);
    }
    ctx.listed_partial_name(rel);
    let looked = if fresh.holds(rel) {
        Ok(None)
    } else {
        fs.lstat(rel)
    };
    let here = match looked {
        Ok(h) => h,
        // In a dry run a parent may still be a file the run would replace.
        Err(super::fsroot::FsError::Io { source, .. })
            if dry && source.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) =>
        {
            None
        }
        Err(e) => return Err(s(e)),
    };
    // -K: a symlink to a directory stands for the directory (resolved
    // once, here), which the skip options enter as they do an existing one;
    // one -K will not follow is reported below, not skipped. An implied
    // directory that is there is left as it is, whatever it is: not the
    // sender's to skip.
    let dirlink = match &here {
        Some(m) if kind == EntryKind::Dir && !e.implied => Some(ctx.kept_dirlink(rel, m)),
        _ => None,
    };
    let standing = match &dirlink {
        Some(Ok(Some((_, m)))) => Some(m),
        _ => here.as_ref(),
    };
    let refused = matches!(dirlink, Some(Err(_)));
    let implied_here = e.implied && here.is_some();
    if !implied_here && !refused && ctx.opts.skips.leaves_alone(standing, e) {
        if ctx.opts.skips.says_nonregular(standing, kind) {
            let shown = ctx.shown(&e.path);
            ctx.counters
                .notice(&shown, format!("skipping non-regular file \"{shown}\""));
        }
        return skip(skipped);
    }
    // (A directory's may stand behind a -K link: decided below.)
    if kind != EntryKind::Dir {
        e.mode = ctx.wanted_mode(e.mode, kind, here.as_ref());
    }
    let new = Change {
        new: true,
        ..Change::default()
    };
    // Whatever is in the way of an entry of another kind goes first.
    // (A dry run only asks whether a directory would make way.)
    let clear = |m: &Meta| -> std::result::Result<(), String> {
        match m.kind {
            Kind::Dir => ctx.clear_dir(rel),
            _ if dry => Ok(()),
            _ if ctx.backups.is_some() => ctx.remove(rel, None),
            _ => fs.remove(rel).map_err(s),
        }
    };
    // What is there for a symlink, device or FIFO: a directory makes way,
    // anything else is kept with -b (the new entry is renamed over it).
    let make_room = || match &here {
        Some(m) if m.kind == Kind::Dir => clear(m),
        Some(_) if !dry => ctx.keep_replaced(rel),
        _ => Ok(()),
    };
    match e.kind {
        EntryKind::Dir if e.implied => {
            implied_dir(ctx, rel, e, here.as_ref(), &new, fresh, skipped)
        }
        EntryKind::Dir => {
            // -K: a symlink to a directory stands for it; one leading out
            // of the root is left alone, with what the sender has in it.
            let dirlink = dirlink.transpose().inspect_err(|_| {
                skipped.0.insert(rel.as_bytes().to_vec());
            })?;
            let dirlink = dirlink.flatten();
            let existing = match (&here, &dirlink) {
                (_, Some((at, m))) => Some((at, m)),
                (Some(m), None) if m.kind == Kind::Dir => Some((rel, m)),
                _ => None,
            };
            // (--no-perms: the destination directory this run made keeps
            // the mode it was made with, as rsync's.)
            let mut made = None;
            if !ctx.opts.perms && ctx.made_dest && existing.is_none() && *rel == ctx.base {
                made = fs.lstat(rel).ok().flatten().filter(|m| m.kind == Kind::Dir);
            }
            e.mode = ctx.wanted_mode(e.mode, kind, existing.map(|(_, m)| m).or(made.as_ref()));
            match existing {
                Some((at, m)) => {
                    // Mode, owner, xattrs and time are set after the contents.
                    if ctx.opts.itemize {
                        ctx.item(Update::Attrs, e, &ctx.attr_change(at, m, e));
                    }
                    // An existing directory may hold temp files a crashed run left.
                    if !dry {
                        ctx.open_up(at, m);
                        clean_temps(ctx, rel);
                    }
                }
                None => {
                    ctx.item(Update::Created, e, &new);
                    if let Some(m) = &here {
                        clear(m)?;
                    }
                    if !dry {
                        fs.mkdir_all(rel, 0o700 | e.mode).map_err(|err| {
                            doing(rel, "cannot make the directory", &err.to_string())
                        })?;
                    }
                    fresh.0.insert(rel.as_bytes().to_vec());
                }
            }
            Ok(Plan::Dir)
        }
        EntryKind::Symlink => {
            Counters::add(&ctx.counters.total_size, link_len);
            if ctx.opts.safe_links && super::unsafe_symlink(&ctx.shown_bytes(&e.path), &e.target) {
                let target = super::escape_name(&e.target);
                ctx.counters.warning(
                    &ctx.shown(&e.path),
                    format!("ignoring unsafe symlink to {target}"),
                );
                return Ok(Plan::LeftOut);
            }
            if let Some(plan) = compare_leaves_out(ctx, rel, e, here.as_ref()) {
                return Ok(plan);
            }
            if let Some(m) = &here {
                if m.kind == Kind::Symlink
                    && fs.read_link(rel).ok().as_deref() == Some(&e.target[..])
                {
                    // Same target: only the link's own time and owner may differ.
                    let c = ctx.attr_change(rel, m, e);
                    ctx.item(Update::Attrs, e, &c);
                    if !dry {
                        ctx.update_attrs(rel, e, &c).map_err(s)?;
                    }
                    return Ok(Plan::InPlace);
                }
            }
            let change = match &here {
                Some(m) if m.kind == Kind::Symlink => Change {
                    content: true,
                    time: ctx.keeps_time(e.kind) && !ctx.same_mtime(m.mtime, e.mtime),
                    ..Change::default()
                },
                _ => new,
            };
            // (Shown once the way is clear: a directory may refuse.)
            make_room()?;
            ctx.item(Update::Created, e, &change);
            if !dry {
                fs.symlink(&e.target, rel).map_err(s)?;
                ctx.set_owner_and_xattrs(rel, e).map_err(s)?;
                fs.set_times(rel, ctx.times_of(e), false).map_err(s)?;
            }
            Ok(Plan::InPlace)
        }
        EntryKind::Fifo | EntryKind::CharDev | EntryKind::BlockDev => {
            let kind = match e.kind {
                EntryKind::Fifo => Kind::Fifo,
                EntryKind::CharDev => Kind::CharDev,
                _ => Kind::BlockDev,
            };
            if kind != Kind::Fifo && !ctx.root {
                ctx.counters.warning(
                    &ctx.shown(&e.path),
                    "skipping device node (only root can create one)",
                );
                return Ok(Plan::LeftOut);
            }
            if let Some(plan) = compare_leaves_out(ctx, rel, e, here.as_ref()) {
                return Ok(plan);
            }
            if let Some(m) = &here {
                if m.kind == kind && (kind == Kind::Fifo || m.rdev == e.rdev) {
                    let c = ctx.attr_change(rel, m, e);
                    ctx.item(Update::Attrs, e, &c);
                    if !dry {
                        ctx.update_attrs(rel, e, &c).map_err(s)?;
                    }
                    return Ok(Plan::InPlace);
                }
            }
            make_room()?;
            ctx.item(Update::Created, e, &new);
            if !dry {
                fs.mknod(rel, kind, e.mode, e.rdev).map_err(s)?;
                ctx.set_owner_and_xattrs(rel, e).map_err(s)?;
                fs.set_mode(rel, e.mode).map_err(s)?;
                fs.set_times(rel, ctx.times_of(e), false).map_err(s)?;
            }
            Ok(Plan::InPlace)
        }
        // (Taken as a deletion before any plan: see `delete_missing`.)
        EntryKind::Missing => Err("a missing path cannot be made".into()),
        EntryKind::File => {
            Counters::add(&ctx.counters.total_size, e.size);
            if let Some(plan) = alt_for_existing(ctx, rel, e, here.as_ref())? {
                return Ok(plan);
            }
            // A local file linked to other names: whether those are names
            // the source has apart is for `untangle` to see at the end.
            if matches!(&here, Some(m) if m.kind == Kind::File && m.nlink > 1)
                && ctx.opts.hard_links
                && !dry
            {
                let noted = (rel.clone(), e.clone());
                ctx.linked_here.lock().expect("poisoned").push(noted);
            }
            let mut alt = None;
            let mut sibling = None;
            let (how, change) = match &here {
                None => match ctx
                    .alts
                    .as_ref()
                    .and_then(|a| a.find(rel, e, ctx.opts.checksum, ctx.opts.modify_window))
                {
                    // With -c, the content is compared first.
                    Some(Found::Same(i, m)) if ctx.opts.checksum => {
                        alt = Some((i, m.size));
                        (WantHow::HashCheck, new)
                    }
                    Some(Found::Same(i, m)) => return from_alt(ctx, rel, e, i, &m),
                    // (-W: no basis; the file comes whole.)
                    Some(Found::Basis(..)) if ctx.opts.whole_file => (WantHow::Full, new),
                    Some(Found::Basis(i, m)) => {
                        alt = Some((i, m.size));
                        (WantHow::Delta, new)
                    }
                    None => {
                        // (-W: no basis; a new directory has no siblings;
                        // a small file goes whole in a batch.)
                        let fuzzy = ctx.fuzzy.as_ref().filter(|_| {
                            !ctx.opts.whole_file
                                && !dry
                                && !fresh.holds(rel)
                                && e.size > BATCH_FILE_MAX
                        });
                        let alts = ctx.alts.as_ref().filter(|_| ctx.opts.fuzzy_alts);
                        sibling = fuzzy.and_then(|f| f.basis(fs, alts, rel, e));
                        match sibling {
                            Some(_) => (WantHow::Delta, new),
                            None => (WantHow::Full, new),
                        }
                    }
                },
                Some(m) if m.kind != Kind::File => {
                    clear(m)?;
                    let mut c = new;
                    c.new = m.kind != Kind::File;
                    if !c.new {
                        c.content = true;
                    }
                    (WantHow::Full, c)
                }
                Some(m) if ctx.quick_check(m, e) && !ctx.opts.checksum => {
                    let c = ctx.attr_change(rel, m, e);
                    ctx.item(Update::Attrs, e, &c);
                    if !dry {
                        ctx.update_attrs(rel, e, &c).map_err(s)?;
                        ctx.drop_partial(rel);
                    }
                    return Ok(Plan::InPlace);
                }
                Some(m) => {
                    let mut c = ctx.attr_change(rel, m, e);
                    c.size = m.size != e.size;
                    let how = if ctx.opts.whole_file && !ctx.opts.checksum {
                        WantHow::Full
                    } else if m.size == e.size {
                        WantHow::HashCheck
                    } else if m.size == 0 || ctx.opts.whole_file {
                        WantHow::Full
                    } else {
                        WantHow::Delta
                    };
                    (how, c)
                }
            };
            // A dry run compares content as a real run would (the lanes
            // hash the file here, or its --*-dest copy, and ask the
            // sender's verdict, which decides the line: rsync's dry run
            // with -c reads files too); anything else would be received.
            if dry && how != WantHow::HashCheck {
                ctx.would_receive(e, &change);
                return Ok(Plan::LeftOut);
            }
            let local = match (alt, sibling) {
                (Some((i, size)), _) => Local::Alt { i, size },
                (None, Some(basis)) => Local::Sibling(basis),
                (None, None) => Local::Own,
            };
            Ok(Plan::Fetch(how, change, local))
        }
    }
}

/// A file the destination lacks, found the same (size and time) in a
/// `--*-dest` directory: left out, copied, or linked (when its mode, owner
/// and attributes are the entry's too; otherwise copied).
fn from_alt(
    ctx: &Ctx,
    rel: &RelPath,
    e: &Entry,
    i: usize,
    there: &Meta,
) -> std::result::Result<Plan, String> {
    let alts = ctx.alts.as_ref().expect("found in them");
    if alts.how == AltHow::Compare {
        // Shown with what differs from the copy there (-ii: shown if
        // nothing does), as rsync's.
        ctx.item(Update::Attrs, e, &compared_change(ctx, rel, e, i, there));
        return Ok(Plan::Compared);
    }
    // (-ii: a link to the previous copy shows as an unchanged hard link, as
    // rsync's.)
    let linked = || {
        if ctx.opts.itemize && ctx.shows_unchanged() {
            ctx.send_item(&Item::linked(&ctx.shown_bytes(&e.path), attrs_of(e)));
        }
    };
    let copied = Change {
        new: true,
        ..Change::default()
    };
    // (As rsync's: modes and times count only where they are kept.)
    let linkable = alts.how == AltHow::Link
        && (there.mode == e.mode || !ctx.opts.perms)
        && (ctx.same_mtime(there.mtime, e.mtime) || !ctx.opts.times)
        && e.atime.is_none_or(|a| a.0 == there.atime.0)
        && ctx.owner_of(e).is_none_or(|(uid, gid)| {
            uid.is_none_or(|u| u == there.uid) && gid.is_none_or(|g| g == there.gid)
        })
        && (!ctx.opts.kept.any()
            || alts
                .xattrs(i, rel)
                .is_ok_and(|x| ctx.opts.kept.differences(&x, &e.xattrs) == (false, false)));
    if ctx.opts.dry_run {
        match linkable {
            true => linked(),
            false => ctx.item(Update::Created, e, &copied),
        }
        return Ok(Plan::LeftOut);
    }
    if linkable && alts.link(i, rel, &ctx.fs).is_ok() {
        linked();
        return Ok(Plan::InPlace);
    }
    // A copy: also where linking failed (another filesystem).
    let src = alts.open_read(i, rel).map_err(|e| e.to_string())?;
    let times = Times {
        mtime: ctx.applied_mtime(e.mtime),
        atime: e.atime,
    };
    let changed = "its copy in the --copy-dest/--link-dest directory changed while it was copied";
    copy_to(ctx, rel, &src, e.size, e, times, changed)?;
    ctx.item(Update::Created, e, &copied);
    Ok(Plan::InPlace)
}

/// What differs between entry `e` and the copy `there` that alternate
/// directory `i` holds at `rel`: modes only where they are kept (or
/// `-E`'s executability), times, owners, xattrs and ACLs as kept.
fn compared_change(ctx: &Ctx, rel: &RelPath, e: &Entry, i: usize, there: &Meta) -> Change {
    let mut c = ctx.meta_change(there, e);
    let exec = |mode: u32| mode & 0o111 != 0;
    c.perms &= ctx.opts.perms || (ctx.opts.executability && exec(there.mode) != exec(e.mode));
    if let Some(alts) = &ctx.alts {
        (c.xattrs, c.acls) = ctx.xattr_change(|| alts.xattrs(i, rel), e);
    }
    c
}

/// `--compare-dest`: a symlink, device or FIFO the destination lacks that a
/// compare directory holds the same (kind, target or device, and the
/// attributes kept) is left out, as rsync's (whose `--remove-source-files`
/// then keeps its source, unlike a file's).
fn compare_leaves_out(ctx: &Ctx, rel: &RelPath, e: &Entry, here: Option<&Meta>) -> Option<Plan> {
    let alts = ctx.alts.as_ref().filter(|a| a.how == AltHow::Compare)?;
    if here.is_some() {
        return None;
    }
    let (i, there) = alts.find_same_special(rel, e)?;
    let c = compared_change(ctx, rel, e, i, &there);
    if c.any() {
        return None;
    }
    ctx.item(Update::Attrs, e, &c);
    // (Not a success, as in rsync: --remove-source-files keeps its source.)
    Some(Plan::Skipped)
}

/// A destination file whose copy in a `--compare-dest` or `--link-dest`
/// directory is the source's (the same size and time, or size with
/// `--size-only`, and the attributes kept; not with `-c`), up to date or
/// not, as rsync's: `--compare-dest` removes it (the destination holds
/// only what differs from the directory), `--link-dest` makes it a hard
/// link to that copy (should linking fail, it is taken as any other
/// file). With `-b` what it replaces is kept (rsync keeps none). A
/// directory that is the destination itself changes nothing.
fn alt_for_existing(
    ctx: &Ctx,
    rel: &RelPath,
    e: &Entry,
    here: Option<&Meta>,
) -> std::result::Result<Option<Plan>, String> {
    let (Some(m), Some(alts)) = (here, &ctx.alts) else {
        return Ok(None);
    };
    if alts.how == AltHow::Copy || m.kind != Kind::File || ctx.opts.checksum {
        return Ok(None);
    }
    let found = alts.find(rel, e, ctx.opts.size_only, ctx.opts.modify_window);
    // (Already that copy, e.g. a second run: nothing to read, no xattrs.)
    let Some(Found::Same(i, there)) = found.filter(|f| match f {
        Found::Same(_, there) => (there.ino, there.dev) != (m.ino, m.dev),
        Found::Basis(..) => false,
    }) else {
        return Ok(None);
    };
    let c = compared_change(ctx, rel, e, i, &there);
    if c.any() {
        return Ok(None);
    }
    let dry = ctx.opts.dry_run;
    if alts.how == AltHow::Compare {
        ctx.item(Update::Attrs, e, &c);
        if !dry {
            ctx.remove(rel, None)?;
        }
        return Ok(Some(Plan::Compared));
    }
    if !dry {
        ctx.keep_replaced(rel)?;
        if alts.link(i, rel, &ctx.fs).is_err() {
            return Ok(None);
        }
    }
    // (-ii: shown as a link to the copy there, as rsync's.)
    if ctx.opts.itemize && ctx.shows_unchanged() {
        ctx.send_item(&Item::linked(&ctx.shown_bytes(&e.path), attrs_of(e)));
    }
    Ok(Some(match dry {
        true => Plan::LeftOut,
        false => Plan::InPlace,
    }))
}

/// Makes a follower name a hard link to its leader's file (the leader is
/// entry `leader_index`; after all fetches); whether the name is now that
/// link.
fn link_follower(
    ctx: &Ctx,
    rel: &RelPath,
    e: &Entry,
    leader_index: u64,
    leader: Option<&(RelPath, Entry)>,
) -> bool {
    let shown = ctx.shown(&e.path);
    let Some((leader, leader_entry)) = leader else {
        ctx.counters
            .error(&shown, "hard link to an entry that was not listed");
        return false;
    };
    let leader_path = &leader_entry.path;
    let fs = &ctx.fs;
    let (here, there) = (fs.lstat(rel), fs.lstat(leader));
    if let Ok(h) = &here {
        if ctx.opts.skips.leaves_alone(h.as_ref(), e) {
            return false;
        }
    }
    // The first name must hold the new content: if its transfer failed, linking
    // to what is there would give this name stale data.
    let leader_ok = matches!(&there, Ok(Some(m))
    if m.kind == Kind::File
        && m.size == leader_entry.size
        && match &ctx.in_place {
            // (--no-times: placed this run, received or found the same.)
            Some(set) => set.lock().expect("poisoned").contains(&leader_index),
            None => ctx.same_mtime(m.mtime, leader_entry.mtime),
        });
    // A first name --compare-dest left out (after comparing its content,
    // -c) leaves out its other names too.
    if ctx.opts.dry_run
        && ctx
            .compared_out
            .lock()
            .expect("poisoned")
            .contains(&leader_index)
    {
        return false;
    }
    if !leader_ok && !ctx.opts.dry_run {
        let compared = ctx.alts.as_ref().is_some_and(|a| a.how == AltHow::Compare);
        if compared && matches!(&there, Ok(None)) {
            return false;
        }
        ctx.counters.error(
            &shown,
            format!(
                "not linked: its first name {} was not transferred",
                ctx.shown(leader_path)
            ),
        );
        return false;
    }
    let linked =
        matches!((&here, &there), (Ok(Some(a)), Ok(Some(b))) if a.ino == b.ino && a.dev == b.dev);
    if linked {
        if ctx.opts.itemize && ctx.shows_unchanged() {
            ctx.send_item(&Item::linked(&ctx.shown_bytes(&e.path), attrs_of(e)));
        }
        return true;
    }
    // (Shown once the way is clear: a directory may refuse; a dry run
    // only asks.)
    let dry = ctx.opts.dry_run;
    let cleared = match &here {
        Ok(Some(m)) if m.kind == Kind::Dir => ctx.clear_dir(rel),
        Ok(Some(_)) if !dry => ctx.keep_replaced(rel),
        _ => Ok(()),
    };
    let item = || {
        if ctx.opts.itemize {
            let (path, leader) = (ctx.shown_bytes(&e.path), ctx.shown_bytes(leader_path));
            ctx.send_item(&Item::hard_link(&path, &leader, attrs_of(e)));
        }
    };
    let res = cleared.and_then(|()| {
        item();
        match dry {
            true => Ok(false),
            false => fs
                .hard_link(leader, rel)
                .map(|()| true)
                .map_err(|e| e.to_string()),
        }
    });
    res.unwrap_or_else(|err| {
        ctx.counters.error(&shown, err);
        false
    })
}

/// With `-H`: files the source has apart (each on its own, or the first of
/// its own names) that the destination holds as names of one inode, left as
/// they were because their content was up to date, are taken apart: the
/// first keeps the inode, each other one gets a copy of its own (its second
/// names then link to it). A file linked only to names outside the transfer
/// (a `--link-dest` copy, an earlier snapshot made with `cp -al`) keeps its
/// links, as rsync's does; one that got new content has a new inode already.
fn untangle(ctx: &Ctx) {
    let noted = std::mem::take(&mut *ctx.linked_here.lock().expect("poisoned"));
    let mut by_inode: HashMap<(u64, u64), Vec<(RelPath, Entry)>> = HashMap::new();
    for (rel, e) in noted {
        if let Ok(Some(m)) = ctx.fs.lstat(&rel) {
            if m.kind == Kind::File && m.nlink > 1 {
                by_inode.entry((m.dev, m.ino)).or_default().push((rel, e));
            }
        }
    }
    for names in by_inode.into_values().filter(|names| names.len() > 1) {
        // (Each name's attributes were set on the one inode, so the last
        // set are there: each name gets its own again.)
        let mut names = names.into_iter();
        let keeps = names.next();
        for (rel, e) in names {
            if let Err(err) = own_inode(ctx, &rel, &e, false) {
                ctx.counters.error(&ctx.shown(&e.path), err);
            }
        }
        if let Some((rel, e)) = keeps {
            if let Err(err) = own_inode(ctx, &rel, &e, true) {
                ctx.counters.error(&ctx.shown(&e.path), err);
            }
        }
    }
}

/// Gives the file at `rel` an inode of its own, a copy renamed over it
/// (unless it `keeps` the one it has, the others gone), with `e`'s mode,
/// times, owner and xattrs, as the entry is to have them.
fn own_inode(ctx: &Ctx, rel: &RelPath, e: &Entry, keeps: bool) -> std::result::Result<(), String> {
    let (src, m) = ctx.fs.open_read_meta(rel).map_err(|e| e.to_string())?;
    let times = Times {
        mtime: Some(match ctx.keeps_time(EntryKind::File) {
            true => e.mtime,
            false => m.mtime,
        }),
        atime: e.atime,
    };
    if keeps {
        let s = |e: super::fsroot::FsError| e.to_string();
        ctx.set_owner_and_xattrs(rel, e).map_err(s)?;
        ctx.fs.set_mode(rel, e.mode).map_err(s)?;
        return super::fsroot::set_file_times(&src, times).map_err(|err| err.to_string());
    }
    let changed = "it changed while it was copied to stand apart from its other names";
    copy_to(ctx, rel, &src, m.size, e, times, changed)
}

/// Writes a copy of `src` (`size` bytes) as the new file at `rel`, with
/// `e`'s mode, owner and xattrs and `times`; `changed` is the error when
/// it is not `size` bytes after all.
fn copy_to(
    ctx: &Ctx,
    rel: &RelPath,
    src: &File,
    size: u64,
    e: &Entry,
    times: Times,
    changed: &str,
) -> std::result::Result<(), String> {
    let temp = ctx.new_file(rel, size, false).map_err(|e| e.to_string())?;
    let n = std::io::copy(&mut &*src, &mut &temp.file)
        .map_err(|err| format!("{}: {err}", ctx.shown(&e.path)))?;
    if n != size {
        return Err(changed.into());
    }
    finish_file(ctx, &temp, e)?;
    temp.commit(e.mode, times, ctx.opts.fsync)
        .map_err(|e| e.to_string())
}

/// `-m`: directories not made (or, when the destination has them, not
/// touched) yet, outermost first. Each is planned, with those above it, only
/// when something other than a directory is to go in it; one the list has
/// left by then is empty (of all but directories) and counts as not listed,
/// as rsync's sender leaves it out: never made, and removed by `--delete`.
#[derive(Default)]
struct Unmade(Vec<(RelPath, Entry)>);

impl Unmade {
    /// Forgets the directories `rel` is not in: the list has left them.
    fn leave_all_but_parents_of(&mut self, rel: &RelPath) {
        while let Some((dir, _)) = self.0.last() {
            let inside = rel
                .as_bytes()
                .strip_prefix(dir.as_bytes())
                .is_some_and(|rest| rest.starts_with(b"/"));
            if inside {
                break;
            }
            self.0.pop();
        }
    }
}

/// What `--delete` needs of the list, once it has all arrived: after the
/// transfer, or with `--delete-before` before it.
struct Deletion<'a> {
    /// The sender could not read everything: its list may lack what it has.
    walk_errors: bool,
    dirs: &'a [(RelPath, Entry)],
    /// Directories this run created.
    fresh: &'a DirSet,
    source: &'a Source,
    base: &'a RelPath,
}

impl Deletion<'_> {
    /// Deletes what the destination's listed directories hold and the list
    /// (`seen`) lacks; nothing after the sender's I/O errors unless
    /// `--ignore-errors`.
    async fn run(&self, ctx: &Arc<Ctx>, seen: Seen) -> Result<()> {
        let counters = &ctx.counters;
        let top_listed = self.dirs.iter().any(|(r, _)| r == self.base);
        // (A selection's top is never listed: its errors are its paths'.)
        let top_unread = self.source.kind == EntryKind::Dir && !self.source.listed && !top_listed;
        if self.walk_errors && top_unread {
            // Not even with --ignore-errors: the list lacks everything.
            counters.warning(
                "",
                "the sender could not read the top directory: skipping deletion",
            );
            return Ok(());
        }
        if self.walk_errors && !ctx.opts.ignore_errors {
            counters.warning(
                "",
                "I/O errors on the sender: skipping deletion (nothing was deleted)",
            );
            return Ok(());
        }
        // A directory this run created holds only what the sender listed.
        // Nor is anything deleted where the sender did not look (a mount
        // point it did not cross).
        let mut scan: Vec<RelPath> = self
            .dirs
            .iter()
            .filter(|(r, e)| !self.fresh.0.contains(r.as_bytes()) && !e.unlisted)
            .map(|(r, _)| r.clone())
            .collect();
        // (A selection's top is not listed, and nothing in it is deleted.)
        if self.source.kind == EntryKind::Dir && !self.source.listed && !top_listed {
            scan.push(self.base.clone());
        }
        delete_all_extraneous(ctx, scan, seen).await
    }
}

/// The names the sender listed, by directory (for `--delete`): one map entry per
/// directory, not per path, and no hashing of every listed path.
#[derive(Default)]
struct Seen {
    dirs: HashMap<Vec<u8>, Vec<Vec<u8>>>,
    /// The directory of the latest names, and those names (entries come
    /// directory by directory, so most inserts touch only these).
    current: Vec<u8>,
    names: Vec<Vec<u8>>,
}

impl Seen {
    fn insert(&mut self, rel: &RelPath) {
        let Some(name) = rel.file_name() else { return };
        let parent = rel
            .parent()
            .map(|p| p.as_bytes().to_vec())
            .unwrap_or_default();
        if parent != self.current {
            self.flush();
            self.current = parent;
        }
        self.names.push(name.as_bytes().to_vec());
    }

    fn flush(&mut self) {
        if !self.names.is_empty() {
            let names = std::mem::take(&mut self.names);
            self.dirs
                .entry(std::mem::take(&mut self.current))
                .or_default()
                .extend(names);
        }
    }

    /// Sorted names listed in each directory.
    fn finish(mut self) -> HashMap<Vec<u8>, Vec<Vec<u8>>> {
        self.flush();
        for names in self.dirs.values_mut() {
            names.sort_unstable();
        }
        self.dirs
    }
}

/// Deletes what the scanned directories hold that the sender did not list,
/// in two halves at once (the sender is idle by now; the walk of thousands of
/// directories is the no-op run's tail). Itemized lines keep directory order.
async fn delete_all_extraneous(ctx: &Arc<Ctx>, scan: Vec<RelPath>, seen: Seen) -> Result<()> {
    let seen = Arc::new(seen.finish());
    // With -x, the destination's filesystem: deletion stays on it.
    let home = match ctx.opts.one_file_system {
        true => match ctx.fs.lstat(&ctx.base) {
            Ok(m) => m.map(|m| m.dev),
            Err(e) => {
                ctx.counters.error(&ctx.shown_rel(&ctx.base), e.to_string());
                return Ok(());
            }
        },
        false => None,
    };
    // (With --max-delete, one after the other: the limit then takes what
    // rsync's takes, in the same order.)
    let half = match ctx.opts.max_delete {
        Some(_) => scan.len(),
        None => scan.len().div_ceil(2),
    };
    let mut halves = Vec::new();
    let mut scan = scan;
    let second = scan.split_off(half);
    for part in [scan, second] {
        let (ctx, seen) = (ctx.clone(), seen.clone());
        halves.push(tokio::task::spawn_blocking(move || {
            let mut deleted = Vec::new();
            for dir in &part {
                delete_extraneous(&ctx, dir, &seen, home, &mut deleted);
            }
            deleted
        }));
    }
    for h in halves {
        let deleted = h
            .await
            .map_err(|e| Error::io("deletion", std::io::Error::other(e)))?;
        for item in &deleted {
            ctx.send_item(item);
        }
    }
    Ok(())
}

/// `--delete-missing-args`: the sender lacks `rel` (a path `--files-from`
/// lists, or a missing source named `source`: the rules see it by that
/// name), so what is here goes, as `--delete` deletes it: unless the
/// receiver's rules protect it, within `--max-delete`, itemized, kept as a
/// backup with `--backup`, and in a dry run only itemized. With `-x`, a
/// directory's contents on other filesystems stay.
fn delete_missing(ctx: &Ctx, rel: &RelPath, source: Option<&[u8]>) {
    let shown = || ctx.shown_rel(rel);
    let here = match ctx.fs.lstat(rel) {
        Ok(Some(m)) => m,
        // (Nothing here, or not even the directories on the way.)
        Ok(None) => return,
        Err(e) if e.is_absent() => return,
        Err(e) => return ctx.counters.error(&shown(), e.to_string()),
    };
    if rel.is_root() {
        return ctx
            .counters
            .error(&shown(), "refused: the destination itself is not deleted");
    }
    let is_dir = here.kind == Kind::Dir;
    let parent = rel.parent().unwrap_or_else(RelPath::root);
    let spared = match source {
        // (A source's own name; no per-directory rules above a transfer.)
        Some(name) => ctx.spared_as(&DirScope::default(), rel, name, is_dir, false),
        None => match scope_or_say(ctx, &parent) {
            Some(scope) => ctx.spared(&scope, rel, is_dir, false),
            None => true,
        },
    };
    if spared {
        return;
    }
    if is_dir {
        // (Said, and left: rsync's "cannot delete non-empty directory" is
        // no error either.)
        if let Err(e) = ctx.refuse_full_dir(rel, "delete") {
            return ctx.counters.warning(&shown(), e);
        }
    }
    let home = match ctx.opts.one_file_system {
        true => match ctx.fs.lstat(&parent) {
            Ok(m) => m.map(|m| m.dev),
            Err(e) => return ctx.counters.error(&shown(), e.to_string()),
        },
        false => None,
    };
    let mut deleted = Vec::new();
    delete_one(ctx, rel, is_dir, home, false, &mut deleted);
    for item in &deleted {
        ctx.send_item(item);
    }
}

/// A path listed as missing (`shown`) by a sender that was not asked for
/// them: `--delete-missing-args`, and a listing (`--files-from`) for a
/// path other than the source.
fn missing_unasked(peer: &str, shown: &str) -> Error {
    Error::Violation {
        peer: peer.into(),
        what: format!(
            "{shown}: listed as missing, which only --delete-missing-args asks for (and, below the source, only with -R or --files-from)"
        ),
    }
}

/// Removes what `dir` holds that the sender did not list (`seen`: the sorted
/// names listed in each directory); what goes is itemized in `gone`. With
/// `home` (`-x`), nothing on another filesystem than that is touched.
fn delete_extraneous(
    ctx: &Ctx,
    dir: &RelPath,
    seen: &HashMap<Vec<u8>, Vec<Vec<u8>>>,
    home: Option<u64>,
    gone: &mut Vec<Item>,
) {
    if let Some(home) = home {
        match ctx.fs.lstat(dir) {
            Ok(Some(m)) if m.dev == home => {}
            // A mount point, or gone.
            Ok(_) => return,
            Err(e) => {
                ctx.counters.error(&ctx.shown_rel(dir), e.to_string());
                return;
            }
        }
    }
    let listed = seen
        .get(dir.as_bytes())
        .map(Vec::as_slice)
        .unwrap_or_default();
    let fs = &ctx.fs;
    let scanned = ctx
        .listings
        .lock()
        .expect("poisoned")
        .remove(dir.as_bytes());
    let names = match scanned.map_or_else(|| fs.read_dir(dir), Ok) {
        Ok(n) => n,
        // A directory a dry run did not create (or would have replaced) has
        // nothing to delete.
        Err(super::fsroot::FsError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound
                || (ctx.opts.dry_run
                    && source.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error())) =>
        {
            return
        }
        Err(e) => {
            ctx.counters.error(&ctx.shown_rel(dir), e.to_string());
            return;
        }
    };
    let Some(scope) = scope_or_say(ctx, dir) else {
        return;
    };
    let mut names = names;
    rsync_order(&mut names);
    for (name, is_dir) in names {
        if listed.binary_search(&name).is_ok() {
            continue;
        }
        // A partial file of a name the source no longer has: nothing will
        // resume from it (it is not the user's entry: not itemized). Not
        // one changed since the run began: another run's, going on now.
        if !is_dir
            && !ctx.opts.dry_run
            && super::fsroot::is_partial_name(&name)
            && Partials::orphan(&name, listed)
        {
            let rel = dir.join(std::ffi::OsStr::from_bytes(&name));
            let stale = matches!(ctx.fs.lstat(&rel), Ok(Some(m)) if m.ctime < ctx.started);
            if stale {
                if let Err(e) = ctx.fs.remove(&rel) {
                    tracing::debug!(path = %rel.display(), error = %e, "cannot remove a stale partial file");
                }
            }
            continue;
        }
        // Temp files of transfers in flight and partial files kept for the
        // next run are not the user's entries.
        if super::fsroot::is_temp_name(&name) || super::fsroot::is_partial_name(&name) {
            continue;
        }
        let rel = dir.join(std::ffi::OsStr::from_bytes(&name));
        if !ctx.spared(&scope, &rel, is_dir, false) {
            delete_one(ctx, &rel, is_dir, home, false, gone);
        }
    }
}

/// Deletes `rel` (`--delete`, `--delete-missing-args`); whether it is
/// gone (or in a dry run would be). Counted against `--max-delete`,
/// itemized, removed (only itemized in a dry run). A directory goes as
/// rsync's goes: what it holds first, each entry on its own (counted,
/// itemized, kept with `-b`, held by `--max-delete`; in [`rsync_order`],
/// deepest first), then the directory once that emptied it. What the
/// receiver's rules protect stays, and so does the directory holding it,
/// with a warning; with `-x`, a directory on another filesystem is not
/// entered. `nested`: `rel` is inside a directory being deleted (when
/// `--max-delete` kept some of what a directory holds, rsync counts that
/// directory as skipped too only if it is such a one).
fn delete_one(
    ctx: &Ctx,
    rel: &RelPath,
    is_dir: bool,
    home: Option<u64>,
    nested: bool,
    gone: &mut Vec<Item>,
) -> bool {
    let deleted = &ctx.counters.deleted;
    let at_limit = || {
        let done = deleted.load(Ordering::Relaxed);
        ctx.opts.max_delete.is_some_and(|max| done >= max)
    };
    if is_dir {
        if elsewhere(ctx, rel, home) {
            let why = "on another filesystem (-x): not deleted";
            ctx.counters.error(&ctx.shown_rel(rel), why);
            return false;
        }
        match delete_unprotected(ctx, rel, home, gone) {
            Emptied::All => {}
            Emptied::Spared => {
                // (It holds what the rules protect; rsync's information.)
                let shown = ctx.shown_rel(rel);
                let line = format!("cannot delete non-empty directory: {shown}");
                ctx.counters.notice(&shown, line);
                return false;
            }
            Emptied::Not => {
                // What stays was said (an error, another filesystem), or
                // --max-delete held it, and so holds the directory too.
                if nested && at_limit() {
                    Counters::add(&ctx.counters.deletes_skipped, 1);
                }
                return false;
            }
        }
    }
    // Counted before it is made, so that the halves deleting at once
    // share --max-delete's limit.
    let before = deleted.fetch_add(1, Ordering::Relaxed);
    if ctx.opts.max_delete.is_some_and(|max| before >= max) {
        deleted.fetch_sub(1, Ordering::Relaxed);
        Counters::add(&ctx.counters.deletes_skipped, 1);
        return false;
    }
    let item = |gone: &mut Vec<Item>| {
        if ctx.opts.itemize {
            gone.push(Item::deleting(
                &ctx.shown_bytes(ctx.under_base(rel)),
                is_dir,
            ));
        }
    };
    if ctx.opts.dry_run {
        item(gone);
        return true;
    }
    if !is_dir {
        // (Said and counted once it is gone: one that stays is an error.)
        return match ctx.remove(rel, home) {
            Ok(()) => {
                item(gone);
                true
            }
            Err(e) => {
                deleted.fetch_sub(1, Ordering::Relaxed);
                not_deleted(ctx, rel, e);
                false
            }
        };
    }
    // (Emptied above; what came meanwhile, or -b's NAME~ backups of what
    // it held, keep it, as in rsync, which says so and goes on.)
    match ctx.fs.remove_empty_dir(rel) {
        Ok(true) => {
            item(gone);
            true
        }
        Ok(false) => {
            deleted.fetch_sub(1, Ordering::Relaxed);
            let shown = ctx.shown_rel(rel);
            let line = format!("cannot delete non-empty directory: {shown}");
            ctx.counters.notice(&shown, line);
            false
        }
        Err(e) => {
            deleted.fetch_sub(1, Ordering::Relaxed);
            not_deleted(ctx, rel, e.to_string());
            false
        }
    }
}

/// The error for an extraneous entry that could not be deleted: `PATH:
/// cannot delete it: CAUSE` (rsync's "delete_file: unlink(PATH) failed").
fn not_deleted(ctx: &Ctx, rel: &RelPath, e: String) {
    ctx.counters
        .error(&ctx.shown_rel(rel), doing(rel, "cannot delete it", &e));
}

/// `DOING: CAUSE` for an error about `rel`, `e`, which may start with
/// `rel`'s own path (a confined file operation's does): the step that
/// failed said, the path not twice.
fn doing(rel: &RelPath, what: &str, e: &str) -> String {
    let at = format!("{}: ", rel.display());
    format!("{what}: {}", e.strip_prefix(&at).unwrap_or(e))
}

/// What [`delete_unprotected`] left of a directory's entries.
enum Emptied {
    /// Nothing: every entry went (or in a dry run would).
    All,
    /// What the receiver's rules protect, at some depth.
    Spared,
    /// Something else: an error, another filesystem, `--max-delete`.
    Not,
}

/// rsync's order of deletion in a directory: its directories last name
/// first, then its other entries last name first.
fn rsync_order(names: &mut [(Vec<u8>, bool)]) {
    names.sort_unstable_by(|a, b| (b.1, &b.0).cmp(&(a.1, &a.0)));
}

/// The receiver's rules in directory `rel` ([`Ctx::rule_scope`]); `None`
/// when its rule file, or one above it, failed. Rules that cannot be read
/// may protect what is there, so nothing is deleted there; said once, for
/// the directory whose rule file failed.
fn scope_or_say(ctx: &Ctx, rel: &RelPath) -> Option<DirScope> {
    match ctx.rule_scope(rel) {
        Ok(scope) => Some(scope),
        Err(ScopeError::Failed { dir, error }) => {
            let why = format!("nothing deleted here or below: {error}");
            ctx.counters.error(&ctx.shown(&dir), why);
            None
        }
        Err(ScopeError::Below) => None,
    }
}

/// Whether what directory `rel` holds, at any depth, includes something the
/// receiver's rules (or a backup directory) protect, or, with `-x`, a
/// directory on another filesystem. Where the rules cannot be read, all is
/// taken as protected.
fn protected_inside(
    ctx: &Ctx,
    rel: &RelPath,
    home: Option<u64>,
) -> std::result::Result<bool, String> {
    let Some(scope) = scope_or_say(ctx, rel) else {
        return Ok(true);
    };
    for (name, is_dir) in ctx.fs.read_dir(rel).map_err(|e| e.to_string())? {
        let child = rel.join(std::ffi::OsStr::from_bytes(&name));
        if ctx.spared(&scope, &child, is_dir, true)
            || (is_dir && elsewhere(ctx, &child, home))
            || (is_dir && protected_inside(ctx, &child, home)?)
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// With `-x` (`home`), whether directory `rel` is on another filesystem.
fn elsewhere(ctx: &Ctx, rel: &RelPath, home: Option<u64>) -> bool {
    home.is_some_and(|home| matches!(ctx.fs.lstat(rel), Ok(Some(m)) if m.dev != home))
}

/// Deletes what directory `rel` holds but what the receiver's rules
/// protect, each entry through [`delete_one`] (a directory on another
/// filesystem, with `-x`, stays); what it left.
fn delete_unprotected(
    ctx: &Ctx,
    rel: &RelPath,
    home: Option<u64>,
    gone: &mut Vec<Item>,
) -> Emptied {
    let Some(scope) = scope_or_say(ctx, rel) else {
        // (Rules that cannot be read may protect anything here.)
        return Emptied::Spared;
    };
    let mut names = match ctx.fs.read_dir(rel) {
        Ok(names) => names,
        Err(e) => {
            ctx.counters.error(&ctx.shown_rel(rel), e.to_string());
            return Emptied::Not;
        }
    };
    rsync_order(&mut names);
    let (mut spared, mut kept) = (false, false);
    for (name, is_dir) in names {
        let child = rel.join(std::ffi::OsStr::from_bytes(&name));
        if ctx.spared(&scope, &child, is_dir, true) {
            spared = true;
            continue;
        }
        if !delete_one(ctx, &child, is_dir, home, true, gone) {
            kept = true;
        }
    }
    match (spared, kept) {
        (false, false) => Emptied::All,
        (true, _) => Emptied::Spared,
        (false, true) => Emptied::Not,
    }
}

/// One lane: a circuit whose requests are sent ahead of the answers.
async fn run_lane(ctx: Arc<Ctx>, jobs: Arc<Mutex<mpsc::Receiver<Vec<FileJob>>>>) -> Result<()> {
    // Open the circuit only when there is work (a no-op run opens none).
    let Some(first) = jobs.lock().await.recv().await else {
        return Ok(());
    };
    let (tx, rx) = ctx.peer.open().await?.split();
    let window = Arc::new(Semaphore::new(LANE_WINDOW as usize));
    let (pending_tx, pending_rx) = mpsc::unbounded_channel::<Pending>();
    let (retry_tx, retry_rx) = mpsc::unbounded_channel::<FileJob>();
    let reader = tokio::spawn({
        let (ctx, window) = (ctx.clone(), window.clone());
        async move {
            let read = lane_reader(ctx, rx, pending_rx, retry_tx, window.clone()).await;
            // A writer waiting for room in the window would wait for ever.
            window.close();
            read
        }
    });
    let written = lane_writer(&ctx, tx, first, jobs, retry_rx, pending_tx, window).await;
    let read = reader
        .await
        .map_err(|e| Error::io("lane reader", std::io::Error::other(e)))?;
    written.and(read)
}

/// A directory on the way to a selected path, sent without its attributes
/// (`--no-implied-dirs`): what the destination has there stays as it is,
/// a symlink to a directory beneath the root too (what lies below goes
/// through it), and a missing one is made as `mkdir -p` makes it (0777
/// less the umask), its time left as made. Anything else there is left
/// too, as an error, and nothing is sent into it.
fn implied_dir(
    ctx: &Ctx,
    rel: &RelPath,
    e: &Entry,
    here: Option<&Meta>,
    new: &Change,
    fresh: &mut DirSet,
    skipped: &mut DirSet,
) -> std::result::Result<Plan, String> {
    let dry = ctx.opts.dry_run;
    let leads_to_dir = |m: &Meta| match m.kind {
        Kind::Dir => Ok(true),
        Kind::Symlink => ctx
            .fs
            .dirlink_target(rel)
            .map(|at| at.is_some())
            .map_err(|e| e.to_string()),
        _ => Ok(false),
    };
    match here {
        Some(m) => match leads_to_dir(m) {
            Ok(true) => {
                // It may hold temp files a crashed run left (and partial
                // files, found by the path as listed).
                if !dry {
                    clean_temps(ctx, rel);
                }
                Ok(Plan::LeftOut)
            }
            not => {
                skipped.0.insert(rel.as_bytes().to_vec());
                let why = not.err().map(|e| format!(" ({e})")).unwrap_or_default();
                Err(format!(
                    "not a directory, nor a symlink to one beneath the destination{why}: left \
                     as it is (--no-implied-dirs), with nothing sent into it"
                ))
            }
        },
        None => {
            ctx.item(Update::Created, e, new);
            if !dry {
                ctx.fs.mkdir_all(rel, 0o777).map_err(|e| e.to_string())?;
            }
            fresh.0.insert(rel.as_bytes().to_vec());
            Ok(Plan::LeftOut)
        }
    }
}

/// A request sent, waiting for its answer.
enum Pending {
    File {
        job: Box<FileJob>,
        /// The chunks of the basis (old or partial file) the sender may copy.
        sig: SigFeed,
        basis: Option<BasisFile>,
        /// When the basis is the target itself: what it was when opened.
        own: Option<Meta>,
        permits: u32,
    },
    /// Small files asked for whole in one WANTS.
    Batch { jobs: Vec<FileJob>, permits: u32 },
    /// Files compared by hash in one CHECKS, each with what its local copy
    /// was when it was hashed.
    Checks {
        jobs: Vec<(FileJob, Checked)>,
        permits: u32,
    },
    /// No more new requests: the reader may end once retries are done.
    Drain,
}

/// Jobs handed to a lane at once: at most this many...
const JOBS_HANDFUL: usize = 64;
/// ...and at most this much [`weight`] (half a lane's window), so large files
/// still spread over the lanes (files of 8 MiB and more go one at a time).
const HANDFUL_WEIGHT: u32 = LANE_WINDOW / 2;
/// Most files in one WANTS.
const BATCH_MAX_FILES: usize = 256;
/// A WANTS stops growing once its files add up to this many bytes.
const BATCH_MAX_BYTES: u64 = 1 << 20;
/// Files up to this size may be asked for in a WANTS.
const BATCH_FILE_MAX: u64 = 64 << 10;
/// Most files in one CHECKS (well under [`msg::MAX_CHECKS`]).
const CHECKS_MAX_FILES: usize = 256;
/// A CHECKS stops growing once its files add up to this many bytes (both sides
/// read them all before the answer comes back).
const CHECKS_MAX_BYTES: u64 = 16 << 20;

fn weight(size: u64) -> u32 {
    (size / (256 << 10)).clamp(1, u64::from(LANE_WINDOW)) as u32
}

async fn lane_writer(
    ctx: &Arc<Ctx>,
    mut tx: CircuitSender,
    first: Vec<FileJob>,
    jobs: Arc<Mutex<mpsc::Receiver<Vec<FileJob>>>>,
    mut retries: mpsc::UnboundedReceiver<FileJob>,
    pending: mpsc::UnboundedSender<Pending>,
    window: Arc<Semaphore>,
) -> Result<()> {
    // Jobs taken from the queue (or given back by a batch) not yet requested.
    let mut ready = std::collections::VecDeque::from(first);
    let mut exhausted = false;
    loop {
        let job = match ready.pop_front() {
            Some(j) => j,
            None => {
                if let Ok(j) = retries.try_recv() {
                    j
                } else if exhausted {
                    match retries.recv().await {
                        Some(j) => j,
                        None => break,
                    }
                } else {
                    let mut q = jobs.lock().await;
                    tokio::select! {
                        biased;
                        j = retries.recv() => match j {
                            Some(j) => j,
                            None => break,
                        },
                        js = q.recv() => match js {
                            Some(js) => {
                                ready.extend(js);
                                continue;
                            }
                            None => {
                                exhausted = true;
                                let _ = pending.send(Pending::Drain);
                                continue;
                            }
                        },
                    }
                }
            }
        };
        let checkable = ctx.checkable(&job);
        if ctx.opts.dry_run && !checkable {
            // (A dry run asks for no file: one not compared by hash would
            // be received.)
            ctx.would_receive(&job.entry, &job.change);
            continue;
        }
        if checkable {
            // Files to compare by hash go many to a message, both ways.
            let mut batch = vec![job];
            let mut size = batch[0].entry.size;
            while batch.len() < CHECKS_MAX_FILES && size < CHECKS_MAX_BYTES {
                let Some(j) = next_if(&mut ready, &jobs, |j| ctx.checkable(j)) else {
                    break;
                };
                size += j.entry.size;
                batch.push(j);
            }
            let permits = weight(size);
            // (Closed: the reader failed, and its error is the lane's.)
            let Ok(p) = window.acquire_many(permits).await else {
                break;
            };
            p.forget();
            let c = ctx.clone();
            let (checked, unreadable) = tokio::task::spawn_blocking(move || hash_local(&c, batch))
                .await
                .map_err(|e| Error::io("hash worker", std::io::Error::other(e)))?;
            // A local file that cannot be read is asked for whole (a dry
            // run's would be).
            ready.extend(unreadable);
            if checked.is_empty() {
                window.add_permits(permits as usize);
                continue;
            }
            let checks = msg::Checks(checked.iter().map(|(j, _, h)| (j.index, *h)).collect());
            tx.send(fragment(msg::CHECKS, &checks)).await?;
            let jobs = checked.into_iter().map(|(j, m, _)| (j, m)).collect();
            if pending.send(Pending::Checks { jobs, permits }).is_err() {
                break;
            }
            if exhausted {
                let _ = pending.send(Pending::Drain);
            }
            continue;
        }
        let permits = weight(job.entry.size);
        let Ok(p) = window.acquire_many(permits).await else {
            break; // the reader failed; its error is the lane's
        };
        p.forget();
        if ctx.batchable(&job) {
            // Small new files go many to a message, both ways.
            let mut batch = vec![job];
            let mut permits = permits;
            let mut size = batch[0].entry.size;
            while batch.len() < BATCH_MAX_FILES && size < BATCH_MAX_BYTES {
                let Some(j) = next_if(&mut ready, &jobs, |j| ctx.batchable(j)) else {
                    break;
                };
                let w = weight(j.entry.size);
                match window.try_acquire_many(w) {
                    Ok(p) => p.forget(),
                    Err(_) => {
                        ready.push_front(j);
                        break;
                    }
                }
                permits += w;
                size += j.entry.size;
                batch.push(j);
            }
            let wants = msg::Wants(batch.iter().map(|j| j.index).collect());
            tx.send(fragment(msg::WANTS, &wants)).await?;
            if pending
                .send(Pending::Batch {
                    jobs: batch,
                    permits,
                })
                .is_err()
            {
                break;
            }
            if exhausted {
                let _ = pending.send(Pending::Drain);
            }
            continue;
        }
        let Prepared {
            job,
            sig,
            basis,
            own,
            basis_size,
        } = prepare(ctx, job).await;
        let want = Want {
            index: job.index,
            how: job.how,
            chunk_bits: Chunking::for_size(job.entry.size).bits(),
            basis_size,
        };
        tx.send(fragment(msg::WANT, &want)).await?;
        let delta = job.how == WantHow::Delta;
        let (sig, streaming) = match sig {
            _ if !delta => (SigFeed::ready(Vec::new()), None),
            Sig::Ready(sig) => {
                for batch in sig.chunks(SIG_BATCH) {
                    send_sig_batch(&mut tx, batch).await?;
                }
                (SigFeed::ready(sig), None)
            }
            Sig::Streaming { batches, cut } => {
                let (feed, filler) = SigFeed::streaming();
                (feed, Some((batches, cut, filler, job.shown.clone())))
            }
        };
        // The reader takes the answer as it comes: for a signature still
        // being cut, while it is sent (the sender's recipe starts before).
        let sent = pending.send(Pending::File {
            job: Box::new(job),
            sig,
            basis,
            own,
            permits,
        });
        if sent.is_err() {
            break; // the reader failed; its error is the lane's
        }
        if let Some((mut batches, cut, filler, shown)) = streaming {
            while let Some(batch) = batches.recv().await {
                if pending.is_closed() {
                    break; // the reader failed; its error is the lane's
                }
                let sig = sig_fragment(&batch);
                // (Fails only when the reader is gone; its error is the lane's.)
                let _ = filler.send(batch);
                tx.send(sig).await?;
            }
            // (A cut still going stops at its next batch.)
            drop(batches);
            // A cut stopped part-way by an error offers the chunks it got
            // to (sent already); copies from them are checked as made.
            let res = cut.await.map_err(|e| {
                Error::io(
                    format!("signature worker for {shown}"),
                    std::io::Error::other(e),
                )
            })?;
            if let Err(e) = res {
                tracing::debug!(path = %shown, error = %e, "cannot cut the local file");
            }
            drop(filler); // the signature is complete
        }
        if delta {
            tx.send(Fragment::new(msg::SIG_END)).await?;
        }
        if exhausted {
            let _ = pending.send(Pending::Drain);
        }
    }
    tx.finish().await
}

/// Sends one SIG batch of a delta request.
async fn send_sig_batch(tx: &mut CircuitSender, batch: &[ChunkRef]) -> Result<()> {
    tx.send(sig_fragment(batch)).await
}

/// A SIG message carrying `batch`.
fn sig_fragment(batch: &[ChunkRef]) -> Fragment {
    let mut payload = Vec::new();
    chunker::encode_sig_batch(batch, &mut payload);
    Fragment::new(msg::SIG).with_payload(payload)
}

/// The next job for a batch being filled, if one is at hand without waiting
/// (set aside earlier, or queued) and `fits`; one that does not fit is set
/// aside for the next request.
fn next_if(
    ready: &mut std::collections::VecDeque<FileJob>,
    jobs: &Mutex<mpsc::Receiver<Vec<FileJob>>>,
    fits: impl Fn(&FileJob) -> bool,
) -> Option<FileJob> {
    if ready.is_empty() {
        ready.extend(jobs.try_lock().ok()?.try_recv().ok()?);
    }
    let j = ready.pop_front()?;
    if fits(&j) {
        Some(j)
    } else {
        ready.push_front(j);
        None
    }
}

/// Hashes the local copies of a batch of files to check: each file with its
/// metadata as opened and the first bytes of its BLAKE3, and (second) the jobs
/// whose local file could not be read, to be asked for whole instead.
#[allow(clippy::type_complexity)]
fn hash_local(
    ctx: &Ctx,
    batch: Vec<FileJob>,
) -> (Vec<(FileJob, Checked, [u8; msg::CHECK_HASH])>, Vec<FileJob>) {
    let mut checked = Vec::with_capacity(batch.len());
    let mut unreadable = Vec::new();
    for mut job in batch {
        let opened = match (job.local.alt(), &ctx.alts) {
            (Some(i), Some(alts)) => alts.open_read_meta(i, &job.rel),
            _ => ctx.fs.open_read_meta(&job.rel),
        };
        let hashed = opened.map_err(|e| e.to_string()).and_then(|(f, m)| {
            let h = chunker::file_hash(&f, m.size).map_err(|e| e.to_string())?;
            let mut short = [0u8; msg::CHECK_HASH];
            short.copy_from_slice(&h[..msg::CHECK_HASH]);
            let kept = ctx.kept.keep(f);
            Ok((Checked { meta: m, kept }, short))
        });
        match hashed {
            Ok((m, h)) => checked.push((job, m, h)),
            Err(e) => {
                tracing::debug!(path = %job.shown, error = %e, "cannot hash the local file");
                job.how = WantHow::Full;
                unreadable.push(job);
            }
        }
    }
    (checked, unreadable)
}

/// A local file hashed for a check: its metadata as opened, and the file
/// itself while the budget allows.
struct Checked {
    meta: Meta,
    kept: Option<Kept>,
}

/// A request ready to go: the receiver's signature of what it has (or how it
/// is being made).
struct Prepared {
    job: FileJob,
    sig: Sig,
    basis: Option<BasisFile>,
    /// When the basis is the target itself: what it was when opened.
    own: Option<Meta>,
    /// The basis's size.
    basis_size: u64,
}

/// The chunks of a delta's basis: cut already (a small file), or being cut on
/// a thread of its own and sent batch by batch as they come, so the sender
/// reads its file along with them and its recipe starts before they end.
enum Sig {
    Ready(Vec<ChunkRef>),
    Streaming {
        batches: mpsc::Receiver<Vec<ChunkRef>>,
        /// How the cut ended.
        cut: tokio::task::JoinHandle<std::io::Result<()>>,
    },
}

/// A delta's signature as the lane reader sees it: complete, or still being
/// cut and sent by the lane writer, which passes each batch on here before
/// it sends it (so any chunk the sender's recipe copies is here by the time
/// the recipe arrives) and drops its end of the channel when it is done.
/// (Unbounded: it holds at most the signature this side cut, which
/// [`chunker::sig_limit`] bounds.)
struct SigFeed {
    have: Vec<ChunkRef>,
    more: Option<mpsc::UnboundedReceiver<Vec<ChunkRef>>>,
}

impl SigFeed {
    fn ready(have: Vec<ChunkRef>) -> SigFeed {
        SigFeed { have, more: None }
    }

    /// A feed being filled, and the lane writer's end of it.
    fn streaming() -> (SigFeed, mpsc::UnboundedSender<Vec<ChunkRef>>) {
        let (filler, more) = mpsc::unbounded_channel();
        let feed = SigFeed {
            have: Vec::new(),
            more: Some(more),
        };
        (feed, filler)
    }

    /// Takes the batches sent so far.
    fn catch_up(&mut self) {
        if let Some(more) = &mut self.more {
            while let Ok(batch) = more.try_recv() {
                self.have.extend(batch);
            }
        }
    }

    /// Waits for the whole signature (all of it that was sent, if the lane
    /// writer stopped).
    async fn complete(&mut self) {
        if let Some(mut more) = self.more.take() {
            while let Some(batch) = more.recv().await {
                self.have.extend(batch);
            }
        }
    }
}

/// Hashes or cuts the local file for a request; when that fails (the local file
/// went away or is unreadable), asks for the whole file instead.
async fn prepare(ctx: &Ctx, mut job: FileJob) -> Prepared {
    let mut wanted = std::mem::replace(&mut job.how, WantHow::Full);
    let mut out = Prepared {
        job,
        sig: Sig::Ready(Vec::new()),
        basis: None,
        own: None,
        basis_size: 0,
    };
    // What an interrupted run left of this file is the best basis: it is a
    // prefix of (a recent version of) the new file (even with -W: it is
    // what this transfer already sent); the old file, after it, has most
    // of the rest (not with -W, which asks for no signature of it).
    let has_partials = ctx.may_have_partial(&out.job.rel);
    let partial = match has_partials.then(|| ctx.fs.partial(&out.job.rel)) {
        Some(Ok(Some(f))) => {
            out.job.partial = true;
            Some(f)
        }
        _ => None,
    };
    let old_too = wanted != WantHow::Full && !ctx.opts.whole_file;
    if partial.is_some() {
        wanted = WantHow::Delta;
    }
    if wanted == WantHow::Full {
        return out;
    }
    let old = old_too.then(|| open_basis(ctx, &out.job)).flatten();
    let old = match (partial, old) {
        (Some(f), old) => {
            let size = f.metadata().map(|m| m.len()).unwrap_or(0);
            let mut basis = BasisFile::one(f, size);
            basis.tail = old.map(|(f, size, _)| (f, size));
            basis
        }
        (None, Some((f, size, own))) => {
            out.own = own;
            BasisFile::one(f, size)
        }
        (None, None) => return out,
    };
    let size = old.size();
    // (A file to check by hash that gets here had a partial file that went
    // away: a signature of the local file serves as well.)
    out.job.how = WantHow::Delta;
    out.basis_size = size;
    let chunking = Chunking::for_size(out.job.entry.size);
    let limit = chunker::sig_limit(out.job.entry.size);
    // (The reader copies from its own descriptor while the cut goes on.)
    let copy = (size >= chunker::CONCURRENT_CUT_MIN)
        .then(|| old.try_clone().ok())
        .flatten();
    if let Some(copy) = copy {
        out.basis = Some(copy);
        let (tx, batches) = mpsc::channel(4);
        let cut = tokio::task::spawn_blocking(move || {
            let mut batches = chunker::Batches::new(SIG_BATCH, |b| {
                tx.blocking_send(b)
                    .map_err(|_| std::io::Error::other("request abandoned"))
            });
            let res = signature(&old, chunking, limit, |r| batches.push(r));
            let _ = batches.finish();
            res
        });
        out.sig = Sig::Streaming { batches, cut };
        return out;
    }
    let cut = move || {
        let mut sig = Vec::new();
        signature(&old, chunking, limit, |r| {
            sig.push(r);
            Ok(())
        })
        .map(|()| (sig, old))
    };
    // (Off the async threads if large: a descriptor could not be spared.)
    let cut = if size >= chunker::CONCURRENT_CUT_MIN {
        super::give::blocking(cut).await
    } else {
        cut()
    };
    match cut {
        Ok((sig, old)) => {
            out.sig = Sig::Ready(sig);
            out.basis = Some(old);
        }
        Err(_) => out.job.how = WantHow::Full,
    }
    out
}

/// The local file a delta starts from, as planning found it
/// ([`Local`]): the file, its size, and when it is the target itself, what
/// it was when opened. `None` when it cannot be opened (the file comes whole).
fn open_basis(ctx: &Ctx, job: &FileJob) -> Option<(File, u64, Option<Meta>)> {
    use super::fuzzy::Basis as Sibling;
    let opened = match (&job.local, &ctx.alts) {
        (&Local::Alt { i, size }, Some(alts)) => {
            alts.open_read(i, &job.rel).map(|f| (f, size, None))
        }
        // (A sibling by its size now: it was looked up earlier.)
        (Local::Sibling(Sibling { alt: Some(i), path }), Some(alts)) => alts
            .open_read_meta_beneath(*i, path)
            .map(|(f, m)| (f, m.size, None)),
        (Local::Sibling(Sibling { path, .. }), _) => {
            ctx.fs.open_read_meta(path).map(|(f, m)| (f, m.size, None))
        }
        _ => ctx
            .fs
            .open_read_meta(&job.rel)
            .map(|(f, m)| (f, m.size, Some(m))),
    };
    opened.ok()
}

/// Cuts a local file's data regions (holes are not chunked) and gives each
/// chunk to `f`, in order: at most `limit` chunks ([`chunker::sig_limit`]),
/// the rest of the file is not read. A basis of two files is cut as one,
/// the second's chunks at offsets after the first's end.
fn signature(
    basis: &BasisFile,
    chunking: Chunking,
    limit: usize,
    mut f: impl FnMut(ChunkRef) -> std::io::Result<()>,
) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut left = limit;
    for (file, base, size) in basis.parts() {
        for (start, len) in super::fsroot::data_extents(file, size)? {
            if left == 0 {
                return Ok(());
            }
            let mut region = file.try_clone()?;
            region.seek(SeekFrom::Start(start))?;
            // The limit ends the cut with an error of its own, known by `left`.
            let cut = chunker::for_each_chunk_sized(region.take(len), len, chunking, |mut r, _| {
                r.offset += base + start;
                f(r)?;
                left -= 1;
                match left {
                    0 => Err(std::io::Error::other("enough chunks")),
                    _ => Ok(()),
                }
            });
            match cut {
                Err(_) if left == 0 => return Ok(()),
                other => other.map(drop)?,
            }
        }
    }
    Ok(())
}

/// What a delta's chunks are copied from: the local file, or an
/// interrupted run's partial file followed by the old file. The partial is
/// the new file's beginning, and the old file has most of the rest (the
/// old file alone would have the sender send again everything after the
/// cut that the partial lacks).
struct BasisFile {
    head: File,
    /// `head`'s size: where `tail`'s offsets begin.
    head_len: u64,
    tail: Option<(File, u64)>,
}

impl BasisFile {
    fn one(file: File, size: u64) -> BasisFile {
        BasisFile {
            head: file,
            head_len: size,
            tail: None,
        }
    }

    /// Each file, where its offsets begin, and its size.
    fn parts(&self) -> impl Iterator<Item = (&File, u64, u64)> {
        let tail = self.tail.as_ref().map(|(f, len)| (f, self.head_len, *len));
        std::iter::once((&self.head, 0, self.head_len)).chain(tail)
    }

    fn size(&self) -> u64 {
        self.head_len + self.tail.as_ref().map_or(0, |(_, len)| *len)
    }

    fn try_clone(&self) -> std::io::Result<BasisFile> {
        Ok(BasisFile {
            head: self.head.try_clone()?,
            head_len: self.head_len,
            tail: match &self.tail {
                Some((f, len)) => Some((f.try_clone()?, *len)),
                None => None,
            },
        })
    }

    /// Reads `buf` from `offset` of the two files as one (a run of chunks
    /// may end in the first and go on in the second).
    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
        let Some((tail, _)) = &self.tail else {
            return self.head.read_exact_at(buf, offset);
        };
        if offset < self.head_len {
            let n = buf.len().min((self.head_len - offset) as usize);
            self.head.read_exact_at(&mut buf[..n], offset)?;
            (buf, offset) = (&mut buf[n..], self.head_len);
        }
        match buf.is_empty() {
            true => Ok(()),
            false => tail.read_exact_at(buf, offset - self.head_len),
        }
    }
}

/// Reads a lane's answers in request order and applies them. A file whose
/// hash differs goes back to the writer as a delta request (a retry; with
/// `-W`, a request for the whole file); the
/// reader lets the writer end (by dropping `retry`) once the writer has no new
/// requests (a `Drain` marker) and no retry is still unanswered.
async fn lane_reader(
    ctx: Arc<Ctx>,
    mut rx: CircuitReceiver,
    mut pending: mpsc::UnboundedReceiver<Pending>,
    retry: mpsc::UnboundedSender<FileJob>,
    window: Arc<Semaphore>,
) -> Result<()> {
    let mut retries_out = 0usize;
    let mut retry = Some(retry);
    while let Some(p) = pending.recv().await {
        match p {
            Pending::Drain => {
                if retries_out == 0 {
                    retry = None;
                }
            }
            Pending::Batch { jobs, permits } => {
                // (With -W a retry is asked for whole, and may go in a batch.)
                retries_out -= jobs.iter().filter(|j| j.retry).count();
                receive_batch(&ctx, &mut rx, &jobs).await?;
                window.add_permits(permits as usize);
            }
            Pending::Checks { jobs, permits } => {
                let differ = receive_verdicts(&ctx, &mut rx, jobs).await?;
                window.add_permits(permits as usize);
                for mut job in differ {
                    let Some(r) = &retry else {
                        return Err(Error::io(
                            job.shown,
                            std::io::Error::other(
                                "a hash check was answered after the last request",
                            ),
                        ));
                    };
                    job.how = if ctx.opts.whole_file {
                        WantHow::Full
                    } else {
                        WantHow::Delta
                    };
                    job.change.content = true;
                    job.retry = true;
                    retries_out += 1;
                    let _ = r.send(job);
                }
            }
            Pending::File {
                job,
                mut sig,
                basis,
                own,
                permits,
            } => {
                if job.retry {
                    retries_out -= 1;
                }
                receive_file(&ctx, &mut rx, &job, &mut sig, basis.as_ref(), own.as_ref()).await?;
                window.add_permits(permits as usize);
                ctx.progress.file_done(&job.shown, job.entry.size);
            }
        }
    }
    // The sender finishes its side after ours.
    while rx.recv().await?.is_some() {}
    Ok(())
}

/// Reads the VERDICTS answering one CHECKS and applies them: files found the
/// same get the sender's mode and time. Returns the jobs to ask again (as deltas, or with `-W` whole)
/// (content differs, or the local copy changed since it was hashed).
async fn receive_verdicts(
    ctx: &Ctx,
    rx: &mut CircuitReceiver,
    jobs: Vec<(FileJob, Checked)>,
) -> Result<Vec<FileJob>> {
    let peer = || ctx.peer.link().peer_name().to_string();
    let f = rx.recv().await?.ok_or_else(|| Error::Violation {
        peer: peer(),
        what: "lane ended before the answer to a hash check".into(),
    })?;
    if f.op != msg::VERDICTS {
        return Err(Error::Violation {
            peer: peer(),
            what: format!("expected VERDICTS for a hash check, got {}", f.op),
        });
    }
    let verdicts =
        msg::Verdict::decode_all(&f.payload, jobs.len()).map_err(|source| Error::Protocol {
            peer: peer(),
            source,
        })?;
    let mut differ = Vec::new();
    for ((job, hashed), v) in jobs.into_iter().zip(verdicts) {
        let meta = match v {
            msg::Verdict::Same => job.entry.file_meta(),
            msg::Verdict::SameMeta(m) => m,
            // (A dry run asks for nothing: the verdict only decides the line.)
            msg::Verdict::Differs if ctx.opts.dry_run => {
                ctx.would_receive(&job.entry, &job.change);
                continue;
            }
            msg::Verdict::Differs => {
                differ.push(job);
                continue;
            }
            msg::Verdict::Failed(m) => {
                ctx.counters.error(&job.shown, m);
                continue;
            }
            msg::Verdict::Vanished(m) => {
                ctx.counters.vanished(&job.shown, m);
                continue;
            }
        };
        if let Some(i) = job.local.alt() {
            // Found the same in a --*-dest directory.
            let mut e = job.entry.clone();
            (e.mode, e.mtime) = (ctx.as_applied(&job, &meta).mode, meta.mtime);
            match from_alt(ctx, &job.rel, &e, i, &hashed.meta) {
                Ok(Plan::InPlace) => ctx.placed(job.index),
                Ok(Plan::Compared) => {
                    ctx.placed(job.index);
                    if ctx.opts.dry_run {
                        ctx.compared_out.lock().expect("poisoned").insert(job.index);
                    }
                }
                Ok(_) => {}
                Err(err) => ctx.counters.error(&job.shown, err),
            }
            ctx.progress.file_done(&job.shown, job.entry.size);
            continue;
        }
        if ctx.opts.dry_run {
            // Found the same: only its attributes' changes would be made,
            // but for a new time on an inode with other names, which gets
            // an inode of its own (`apply_same`).
            match job.change.time && ctx.new_inode_for_time(hashed.meta.nlink) {
                true => ctx.would_receive(&job.entry, &job.change),
                false => ctx.item(Update::Attrs, &job.entry, &job.change),
            }
            continue;
        }
        // (A checked file is never a retry: retries are deltas or whole.)
        match apply_same(ctx, &job, hashed, &meta) {
            Ok(true) => {
                ctx.drop_partial(&job.rel);
                ctx.placed(job.index);
                ctx.progress.file_done(&job.shown, job.entry.size);
            }
            Ok(false) => differ.push(job),
            Err(err) => ctx.counters.error(&job.shown, err),
        }
    }
    Ok(differ)
}

/// Gives a file whose content was found equal the sender's mode and time.
/// `false` if the local file is no longer the one that was hashed (its inode
/// or status-change time moved): it must be compared again; `false` too
/// when a new time would reach other names of its inode: it is built anew. When only its time
/// differs and the hashed file is still open, the check and the change go
/// through the descriptor (a file renamed away since keeps its old name's
/// time, and the file now at the name is left for the next run); otherwise
/// through the path, looked up afresh.
fn apply_same(
    ctx: &Ctx,
    job: &FileJob,
    hashed: Checked,
    meta: &FileMeta,
) -> std::result::Result<bool, String> {
    let Checked { meta: hashed, kept } = hashed;
    let meta = &ctx.as_applied(job, meta);
    let c = job.change;
    let by_fd =
        kept.filter(|_| !(c.owner || c.group || c.xattrs || c.acls) && hashed.mode == meta.mode);
    let here = match &by_fd {
        Some(k) => super::fsroot::file_meta(&k.file).map_err(|e| format!("{}: {e}", job.shown))?,
        None => match ctx.fs.lstat(&job.rel) {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(false),
            Err(e) => return Err(e.to_string()),
        },
    };
    if (here.dev, here.ino, here.ctime, here.size)
        != (hashed.dev, hashed.ino, hashed.ctime, meta.size)
    {
        return Ok(false);
    }
    // The entry with the sender's current mode and time (a copy only in the
    // rare case they changed since it was listed).
    let e = if *meta == job.entry.file_meta() {
        std::borrow::Cow::Borrowed(&job.entry)
    } else {
        let mut e = job.entry.clone();
        e.mode = meta.mode;
        e.mtime = meta.mtime;
        std::borrow::Cow::Owned(e)
    };
    let mut c = c;
    c.perms = here.mode != meta.mode;
    c.time = ctx.keeps_time(EntryKind::File) && !ctx.same_mtime(here.mtime, meta.mtime);
    if c.time && ctx.new_inode_for_time(here.nlink) {
        return Ok(false);
    }
    // (With -U the access time is set again: hashing the file may have
    // moved it.)
    let times = Times {
        mtime: c.time.then_some(e.mtime),
        atime: e.atime,
    };
    match by_fd {
        Some(k) => super::fsroot::set_file_times(&k.file, times)
            .map_err(|err| format!("{}: {err}", job.shown))?,
        None => {
            let apply = Change {
                atime: c.atime || e.atime.is_some(),
                ..c
            };
            ctx.update_attrs(&job.rel, &e, &apply)
                .map_err(|e| e.to_string())?
        }
    }
    ctx.item(Update::Attrs, &e, &c);
    Ok(true)
}

/// What a delta request offered the sender: its signature, the file cut, and
/// (when that is the target itself) what it was when opened.
#[derive(Clone, Copy)]
struct Basis<'a> {
    sig: &'a [ChunkRef],
    file: Option<&'a BasisFile>,
    own: Option<&'a Meta>,
}

/// Reads one answer and applies it. Local failures (cannot write, verification)
/// are recorded for the file and the rest of its answer is drained; only a
/// broken lane is an error. A delta's answer may start while its signature
/// is still being sent (`sig`).
async fn receive_file(
    ctx: &Ctx,
    rx: &mut CircuitReceiver,
    job: &FileJob,
    sig: &mut SigFeed,
    file: Option<&BasisFile>,
    own: Option<&Meta>,
) -> Result<()> {
    let peer = || ctx.peer.link().peer_name().to_string();
    let shown = &job.shown;
    let f = rx.recv().await?.ok_or_else(|| ended(&peer(), shown))?;
    match f.op {
        msg::FILE_ERR => {
            let message = f.error.unwrap_or_else(|| "the sender failed".into());
            if f.part == 1 {
                ctx.counters.vanished(shown, message);
            } else {
                ctx.counters.error(shown, message);
            }
            Ok(())
        }
        msg::FILE => {
            let whole = WholeFile::decode(&f.payload).map_err(|source| Error::Protocol {
                peer: peer(),
                source,
            })?;
            apply_whole(ctx, job, &whole);
            Ok(())
        }
        msg::META => {
            let meta: FileMeta = decode(&f.payload, &peer())?;
            ctx.progress.file_started(shown, meta.size);
            // A file sent whole over a sealed link comes without a digest.
            let verify = ctx.whole_digest || job.how == WantHow::Delta;
            // (Allocated to no more than the sender listed: META is its word too.)
            let mut build = Build::new(ctx, &job.rel, shown, verify, meta.size.min(job.entry.size));
            // A literal is one chunk, or a piece of a file sent whole.
            let largest = Chunking::for_size(job.entry.size)
                .max()
                .max(MAX_CHUNK as usize);
            loop {
                let f = match rx.recv().await {
                    Ok(Some(f)) => f,
                    Ok(None) => {
                        build.keep_partial();
                        return Err(ended(&peer(), shown));
                    }
                    Err(e) => {
                        build.keep_partial();
                        return Err(e);
                    }
                };
                match f.op {
                    msg::RECIPE => {
                        sig.catch_up();
                        for op in RecipeReader::new(&f.payload, largest) {
                            let op = op.map_err(|source| Error::Protocol {
                                peer: peer(),
                                source,
                            })?;
                            let n = build.apply(op, &sig.have, file);
                            if let Some(Err(v)) = n {
                                return Err(Error::Violation {
                                    peer: peer(),
                                    what: v,
                                });
                            }
                            if let Some(Ok(n)) = n {
                                ctx.progress.file_progress(shown, n);
                            }
                        }
                    }
                    msg::END => {
                        let end: msg::End = decode(&f.payload, &peer())?;
                        build.finish_and_place(ctx, &meta, &end, job);
                        return Ok(());
                    }
                    msg::UNCHANGED if job.how == WantHow::Delta && build.pos == 0 => {
                        let end: msg::End = decode(&f.payload, &peer())?;
                        sig.complete().await;
                        let basis = Basis {
                            sig: &sig.have,
                            file,
                            own,
                        };
                        return unchanged(ctx, job, build, &meta, &end, basis)
                            .map_err(|what| Error::Violation { peer: peer(), what });
                    }
                    msg::FILE_ERR => {
                        // The sender gave up on this file part-way (it changed
                        // or vanished); the temp file goes with `build`.
                        let message = f.error.unwrap_or_default();
                        if f.part == 1 {
                            ctx.counters.vanished(shown, message);
                        } else {
                            ctx.counters.error(shown, message);
                        }
                        return Ok(());
                    }
                    other => {
                        return Err(Error::Violation {
                            peer: peer(),
                            what: format!("unexpected {other} in the recipe for {shown}"),
                        })
                    }
                }
            }
        }
        other => Err(Error::Violation {
            peer: peer(),
            what: format!("unexpected {other} as the answer for {shown}"),
        }),
    }
}

/// Applies an UNCHANGED answer: the sender's file is the basis's chunks back
/// to back, and `end` their size and digest as the sender has them. A basis
/// that is the target itself, unchanged since it was cut and without holes,
/// only takes the sender's metadata; any other (a partial file, a sibling, a
/// `--*-dest` copy, one changed meanwhile) is copied whole into `build`,
/// checked as any copy is. `Err` for an answer that cannot be right (the
/// protocol is broken).
fn unchanged(
    ctx: &Ctx,
    job: &FileJob,
    mut build: Build<'_>,
    meta: &FileMeta,
    end: &msg::End,
    basis: Basis<'_>,
) -> std::result::Result<(), String> {
    let sig = basis.sig;
    let len: u64 = sig.iter().map(|r| u64::from(r.len)).sum();
    if len != meta.size || end.size != meta.size {
        return Err(format!(
            "{}: UNCHANGED for {} bytes, but our chunks hold {len}",
            job.shown, meta.size
        ));
    }
    // The sender matched our chunks by half their hashes: its digest of
    // them, by full hashes, must be ours.
    let ours = chunker::chunk_list_digest(sig.iter().map(|r| (r.len, r.hash)));
    if end.digest != ours {
        ctx.counters.error(
            &job.shown,
            format!("{}: verification failed (hash mismatch)", job.shown),
        );
        return Ok(());
    }
    if let Some(own) = basis.own.filter(|m| m.size == len) {
        let hashed = Checked {
            meta: own.clone(),
            kept: None,
        };
        match apply_same(ctx, job, hashed, meta) {
            Ok(true) => {
                ctx.placed(job.index);
                return Ok(());
            }
            // Changed since it was cut: the copies below are checked.
            Ok(false) => {}
            Err(err) => {
                ctx.counters.error(&job.shown, err);
                return Ok(());
            }
        }
    }
    if !sig.is_empty() {
        let all = RecipeOp::Copy {
            start: 0,
            count: sig.len() as u64,
        };
        if let Some(Err(v)) = build.apply(all, sig, basis.file) {
            return Err(v);
        }
    }
    build.finish_and_place(ctx, meta, end, job);
    Ok(())
}

/// Writes a whole small file beside its target, checks it, and puts it in place.
fn apply_whole(ctx: &Ctx, job: &FileJob, whole: &WholeFile<'_>) {
    let shown = &job.shown;
    let res = (|| -> std::result::Result<bool, String> {
        if ctx.whole_digest && blake3::hash(whole.data).as_bytes() != &whole.hash {
            return Err(format!("{shown}: verification failed (hash mismatch)"));
        }
        let temp = ctx
            .new_file(&job.rel, whole.meta.size, true)
            .map_err(|e| e.to_string())?;
        write_data(&temp, whole.data, 0, ctx.opts.sparse).map_err(|e| e.to_string())?;
        if ctx.opts.sparse {
            temp.set_len(whole.meta.size).map_err(|e| e.to_string())?;
        }
        finish_file(ctx, &temp, &job.entry)?;
        ctx.keep_replaced(&job.rel)?;
        ctx.put_in_place(temp, &whole.meta, job)
    })();
    ctx.progress.file_started(shown, whole.meta.size);
    ctx.progress.file_progress(shown, whole.meta.size);
    placed(ctx, job, res, whole.meta.size, 0);
}

/// Reads the FILES messages answering a WANTS until every file has its record.
async fn receive_batch(ctx: &Ctx, rx: &mut CircuitReceiver, jobs: &[FileJob]) -> Result<()> {
    let peer = || ctx.peer.link().peer_name().to_string();
    let mut next = jobs.iter();
    let mut left = jobs.len();
    while left > 0 {
        let f = rx
            .recv()
            .await?
            .ok_or_else(|| ended(&peer(), "a batch of small files"))?;
        if f.op != msg::FILES {
            return Err(Error::Violation {
                peer: peer(),
                what: format!("expected small files, got {}", f.op),
            });
        }
        for rec in msg::FileRecords::new(&f.payload) {
            let rec = rec.map_err(|source| Error::Protocol {
                peer: peer(),
                source,
            })?;
            let Some(job) = next.next() else {
                return Err(Error::Violation {
                    peer: peer(),
                    what: "more small files than were asked for".into(),
                });
            };
            left -= 1;
            match rec {
                msg::FileRecord::Whole(w) => apply_whole(ctx, job, &w),
                msg::FileRecord::Failed(m) => ctx.counters.error(&job.shown, m),
                msg::FileRecord::Vanished(m) => ctx.counters.vanished(&job.shown, m),
            }
            ctx.progress.file_done(&job.shown, job.entry.size);
        }
    }
    Ok(())
}

/// Records a file's outcome: counters and the itemized line, or its error.
fn placed(
    ctx: &Ctx,
    job: &FileJob,
    res: std::result::Result<bool, String>,
    literal: u64,
    reused: u64,
) {
    match res {
        Ok(staged) => {
            // (A staged file is the partial now, until it is placed.)
            if job.partial && !staged {
                if let Err(e) = ctx.fs.remove_partial(&job.rel) {
                    tracing::warn!(path = %job.shown, error = %e, "cannot remove the partial file");
                }
            }
            let c = &ctx.counters;
            Counters::add(&c.files_transferred, 1);
            Counters::add(&c.transferred_size, literal + reused);
            Counters::add(&c.bytes_literal, literal);
            Counters::add(&c.bytes_reused, reused);
            ctx.item_received(&job.entry, &job.change);
            // After its itemized line, which the sender then sees first (a
            // staged file's once it is renamed into place).
            if !staged {
                ctx.placed(job.index);
            }
        }
        Err(message) => ctx.counters.error(&job.shown, message),
    }
}

/// Owner and xattrs of a new file, set on the temp file before it is renamed
/// into place (the owner first: chown clears setuid bits and capabilities; the
/// mode follows in the commit).
fn finish_file(ctx: &Ctx, temp: &TempFile, e: &Entry) -> std::result::Result<(), String> {
    if let Some((uid, gid)) = ctx.owner_of(e).filter(|(u, g)| u.is_some() || g.is_some()) {
        // Always: a new file's group may be its directory's (setgid), not ours.
        temp.set_owner(uid, gid).map_err(|err| err.to_string())?;
    }
    if ctx.opts.kept.any() {
        super::fsroot::fset_xattrs(&temp.file, &e.xattrs, &ctx.opts.kept)
            .map_err(|err| format!("cannot set xattrs of {}: {err}", e.path.escape_ascii()))?;
    }
    Ok(())
}

/// A file being rebuilt from a recipe. The first local failure is kept and the
/// rest of the recipe is only checked, not applied.
struct Build<'a> {
    temp: std::result::Result<TempFile, String>,
    shown: &'a str,
    pos: u64,
    /// The digest of the pieces, when the sender sends one.
    digest: Option<DigestBuilder>,
    literal: u64,
    reused: u64,
    buf: Vec<u8>,
    /// Whether the file is large enough for its copied old chunks to be
    /// checked on a thread of their own, and that thread once started.
    large: bool,
    verifier: Option<Verifier>,
    /// Blocks of zeros are left holes (`-S`).
    sparse: bool,
    /// With `--preallocate`: the size to allocate the file to when the
    /// first op comes (none may: a file found unchanged is not written).
    preallocate: Option<u64>,
}

/// Writes received data into a file being made: with `sparse` (`-S`),
/// leaving its blocks of zeros as holes.
fn write_data(
    temp: &TempFile,
    data: &[u8],
    at: u64,
    sparse: bool,
) -> std::result::Result<(), super::fsroot::FsError> {
    if sparse {
        temp.write_sparse_at(data, at)
    } else {
        temp.write_at(data, at)
    }
}

/// Checks the old chunks copied into a large rebuilt file on a thread of its
/// own while the next run is read and written (a file of some GB would
/// otherwise spend a third of its rebuild hashing on one core). Each run goes
/// to it, written already, with its chunks' hashes; its buffer comes back for
/// another run. The verdict is taken before the file is put in place: until
/// then the rebuilt file is only a temp.
struct Verifier {
    runs: std::sync::mpsc::SyncSender<CopiedRun>,
    spare: std::sync::mpsc::Receiver<Vec<u8>>,
    /// Whether every chunk matched.
    done: std::thread::JoinHandle<bool>,
}

/// A run of old chunks as written, and each chunk's length and expected hash.
type CopiedRun = (Vec<u8>, Vec<(u32, chunker::Hash)>);

impl Verifier {
    fn start() -> Verifier {
        let (runs, todo) = std::sync::mpsc::sync_channel::<CopiedRun>(1);
        let (give_back, spare) = std::sync::mpsc::channel();
        let done = std::thread::spawn(move || {
            let mut all_match = true;
            for (buf, chunks) in todo {
                all_match =
                    all_match && chunks_match(&buf, chunks.iter().map(|(len, h)| (*len, h)));
                let _ = give_back.send(buf);
            }
            all_match
        });
        Verifier { runs, spare, done }
    }
}

/// Whether `buf` holds chunks of these lengths and BLAKE3 hashes, back to back.
fn chunks_match<'h>(
    buf: &[u8],
    mut chunks: impl Iterator<Item = (u32, &'h chunker::Hash)>,
) -> bool {
    let mut off = 0;
    chunks.all(|(len, hash)| {
        let piece = &buf[off..off + len as usize];
        off += len as usize;
        blake3::hash(piece).as_bytes() == hash
    })
}

/// The error of a rebuild whose old file changed after it was cut.
fn changed_during(shown: &str) -> String {
    format!("{shown}: the local file changed during the transfer")
}

impl<'a> Build<'a> {
    fn new(ctx: &Ctx, rel: &RelPath, shown: &'a str, verify: bool, size: u64) -> Build<'a> {
        Build {
            temp: ctx.fs.create_temp(rel).map_err(|e| e.to_string()),
            shown,
            pos: 0,
            digest: verify.then(DigestBuilder::default),
            literal: 0,
            reused: 0,
            buf: Vec::new(),
            large: size >= chunker::PIPELINE_MIN,
            verifier: None,
            sparse: ctx.opts.sparse,
            preallocate: ctx.opts.preallocate.then_some(size),
        }
    }

    /// Applies one op. `None` when nothing was written (a local failure
    /// already happened), `Some(Err)` for a recipe that breaks the protocol.
    fn apply(
        &mut self,
        op: RecipeOp<'_>,
        sig: &[ChunkRef],
        basis: Option<&BasisFile>,
    ) -> Option<std::result::Result<u64, String>> {
        let shown = self.shown;
        if let (Some(size), Ok(temp)) = (self.preallocate.take(), &mut self.temp) {
            if let Err(e) = temp.preallocate(size) {
                self.temp = Err(e.to_string());
            }
        }
        match op {
            RecipeOp::Hole(len) => {
                if let Some(d) = &mut self.digest {
                    d.push_hole(len);
                }
                // (Without -S, a preallocated file keeps the hole's blocks.)
                if let (true, Ok(temp)) = (self.sparse, &self.temp) {
                    temp.hole(self.pos, len);
                }
                self.pos = self.pos.saturating_add(len);
                Some(Ok(len))
            }
            RecipeOp::Literal(data) => {
                if let Some(d) = &mut self.digest {
                    d.push(data.len() as u32, *blake3::hash(data).as_bytes());
                }
                self.literal += data.len() as u64;
                let at = self.pos;
                self.pos += data.len() as u64;
                let temp = self.temp.as_ref().ok()?;
                if let Err(e) = write_data(temp, data, at, self.sparse) {
                    self.temp = Err(e.to_string());
                    return None;
                }
                Some(Ok(data.len() as u64))
            }
            RecipeOp::Copy { start, count } => {
                let bad = || format!("{shown}: recipe copies a chunk we do not have");
                let Some(end) = start.checked_add(count).filter(|&e| e <= sig.len() as u64) else {
                    return Some(Err(bad()));
                };
                let (Some(old), Some(digest)) = (basis, &mut self.digest) else {
                    return Some(Err(bad()));
                };
                let chunks = &sig[start as usize..end as usize];
                let mut n = 0u64;
                let mut i = 0;
                while i < chunks.len() {
                    // Chunks that lie back to back in the old file are read,
                    // checked and written as one run.
                    let first = &chunks[i];
                    let mut run = u64::from(first.len);
                    let mut j = i + 1;
                    while j < chunks.len()
                        && chunks[j].offset == first.offset + run
                        && run + u64::from(chunks[j].len) <= COPY_RUN_MAX
                    {
                        run += u64::from(chunks[j].len);
                        j += 1;
                    }
                    let run_chunks = &chunks[i..j];
                    i = j;
                    for r in run_chunks {
                        digest.push(r.len, r.hash);
                    }
                    let at = self.pos;
                    self.pos += run;
                    self.reused += run;
                    n += run;
                    let Ok(temp) = self.temp.as_ref() else {
                        continue;
                    };
                    if self.large && self.verifier.is_none() {
                        self.verifier = Some(Verifier::start());
                    }
                    // Read and written at once; each chunk is then checked
                    // against the signature, here or on the checker's thread,
                    // before the file is put in place.
                    let mut buf = match &self.verifier {
                        Some(v) => v.spare.try_recv().unwrap_or_default(),
                        None => std::mem::take(&mut self.buf),
                    };
                    buf.resize(run as usize, 0);
                    let res = old
                        .read_exact_at(&mut buf, first.offset)
                        .map_err(|e| format!("cannot read the old {shown}: {e}"))
                        .and_then(|()| {
                            write_data(temp, &buf, at, self.sparse).map_err(|e| e.to_string())
                        })
                        .and_then(|()| match &self.verifier {
                            Some(v) => {
                                let chunks = run_chunks.iter().map(|r| (r.len, r.hash)).collect();
                                v.runs
                                    .send((std::mem::take(&mut buf), chunks))
                                    .map_err(|_| format!("{shown}: the chunk checker stopped"))
                            }
                            None if chunks_match(
                                &buf,
                                run_chunks.iter().map(|r| (r.len, &r.hash)),
                            ) =>
                            {
                                Ok(())
                            }
                            None => Err(changed_during(shown)),
                        });
                    if self.verifier.is_none() {
                        self.buf = buf;
                    }
                    if let Err(e) = res {
                        self.temp = Err(e);
                    }
                }
                Some(Ok(n))
            }
        }
    }

    /// [`Build::finish`], and the outcome counted and itemized ([`placed`]).
    fn finish_and_place(self, ctx: &Ctx, meta: &FileMeta, end: &msg::End, job: &FileJob) {
        let (literal, reused) = (self.literal, self.reused);
        let res = self.finish(ctx, meta, end, job);
        placed(ctx, job, res, literal, reused);
    }

    /// Checks the rebuilt file against the sender's END and puts it in place
    /// ([`Ctx::put_in_place`]).
    fn finish(
        self,
        ctx: &Ctx,
        meta: &FileMeta,
        end: &msg::End,
        job: &FileJob,
    ) -> std::result::Result<bool, String> {
        let temp = self.temp?;
        if let Some(v) = self.verifier {
            drop(v.runs);
            if !v.done.join().unwrap_or(false) {
                return Err(changed_during(self.shown));
            }
        }
        let digest_ok = self.digest.is_none_or(|d| d.finish() == end.digest);
        if self.pos != end.size || end.size != meta.size || !digest_ok {
            return Err(format!(
                "{}: verification failed (the rebuilt file does not match the sender's)",
                self.shown
            ));
        }
        temp.set_len(end.size).map_err(|err| err.to_string())?;
        finish_file(ctx, &temp, &job.entry)?;
        ctx.keep_replaced(&job.rel)?;
        ctx.put_in_place(temp, meta, job)
    }

    /// The connection broke part-way: keep what arrived as the file's partial
    /// (the next run's basis), unless nothing did.
    fn keep_partial(self) {
        if let Ok(temp) = self.temp {
            // (A preallocated file is as long as the whole file would be:
            // only what arrived is kept.)
            if temp.preallocated() {
                let _ = temp.set_len(self.pos);
            }
            if self.pos > 0 {
                if let Err(e) = temp.keep_as_partial() {
                    tracing::warn!(path = %self.shown, error = %e, "cannot keep the partial file");
                }
            }
        }
    }
}

fn ended(peer: &str, shown: &str) -> Error {
    Error::Violation {
        peer: peer.into(),
        what: format!("lane ended in the answer for {shown}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A partial file and the old one read as one basis: offsets past the
    /// partial's end are the old file's, a read across the two is split,
    /// and the signature numbers the old file's chunks after the partial's.
    #[test]
    fn a_two_file_basis_reads_as_one() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, data: &[u8]| {
            std::fs::write(dir.path().join(name), data).unwrap();
            File::open(dir.path().join(name)).unwrap()
        };
        let mut basis = BasisFile::one(write("partial", b"0123456789"), 10);
        basis.tail = Some((write("old", b"abcdefghij"), 10));
        let read = |off: u64, len: usize| {
            let mut buf = vec![0; len];
            basis.read_exact_at(&mut buf, off).map(|()| buf)
        };
        assert_eq!(read(2, 3).unwrap(), b"234");
        assert_eq!(read(8, 5).unwrap(), b"89abc");
        assert_eq!(read(12, 8).unwrap(), b"cdefghij");
        assert!(read(15, 6).is_err());
        assert_eq!(basis.size(), 20);
        let mut offsets = Vec::new();
        signature(&basis, Chunking::for_size(20), 100, |r| {
            offsets.push((r.offset, r.len));
            Ok(())
        })
        .unwrap();
        assert_eq!(offsets, [(0, 10), (10, 10)]);
    }

    /// The chunk checker of large rebuilds says whether every chunk it was
    /// given matched its hash, a bad one among good ones included, and gives
    /// every buffer back.
    #[test]
    fn the_verifier_finds_a_chunk_that_is_not_what_its_hash_says() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        let hash = |b: &[u8]| *blake3::hash(b).as_bytes();
        for bad in [false, true] {
            let v = Verifier::start();
            let mut first = vec![(3000, hash(&data[..3000])), (2000, hash(&data[3000..]))];
            if bad {
                first[1].1[0] ^= 1;
            }
            v.runs.send((data.clone(), first)).unwrap();
            v.runs
                .send((data.clone(), vec![(5000, hash(&data))]))
                .unwrap();
            drop(v.runs);
            assert_eq!(v.done.join().unwrap(), !bad);
            assert_eq!(v.spare.iter().count(), 2);
        }
    }
}
