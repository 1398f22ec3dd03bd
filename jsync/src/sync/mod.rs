//! The sync engine: content-defined deltas between a sender ("giver") and a
//! receiver ("taker") running as a service pair over any [`Link`].
//!
//! The sender walks its tree and streams the file list as it goes; the receiver
//! compares each entry with what it has and, for each file that needs content,
//! queues a request on one of a few lanes (circuits): "send it whole", "here is
//! my hash, is it the same?", or "here is a compact description of my old file"
//! (FastCDC chunks named by BLAKE3). Requests are pipelined; the sender answers
//! each in order with a verdict, a whole small file, or a recipe — "copy your
//! chunk", "here are new bytes", "leave a hole" — and the receiver rebuilds the
//! file in a temporary file beside the target, checks the digest and renames it
//! into place. Push and pull are the same two roles started from opposite ends.

mod acl;
mod alt;
mod backup;
mod chmod;
pub(crate) mod chunker;
mod destdir;
mod escape;
mod filter;
pub(crate) mod fsroot;
mod fuzzy;
mod give;
mod glob;
pub(crate) mod ids;
mod itemize;
mod list;
mod proto_util;
mod remove;
mod report;
mod skip_compress;
mod take;
mod throttle;

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

pub use alt::{AltDest, AltHow};
pub use backup::Backup;
pub use chmod::{Chmod, ChmodError};
pub use escape::{escape_controls, escape_name};
pub use filter::{DirScope, Filter, FilterError, RuleKind, Side};
pub use give::names_contents;
pub use glob::{glob_quote, has_glob, remote_glob, GLOB};
pub use ids::{Chown, IdMap};
pub use itemize::{mode_string, with_commas, OutFormat};
pub use list::{list, list_local, Listing};
pub use report::{FileError, NoProgress, Progress, Report, StatsBlock, Summary};
pub use skip_compress::SkipCompress;

use crate::error::{Error, Result};
use crate::runtime::{Link, Services};
use fsroot::{FsRoot, RelPath};
use give::{fs_err, GiveOptions, GiveSpec};
use take::{TakeOptions, TakeSpec};

/// Service names a server registers.
pub const GIVE: &str = "jsync.give";
/// See [`GIVE`].
pub const TAKE: &str = "jsync.take";

/// What a sync run should do.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SyncOptions {
    /// Compare content of every file, not size and mtime (`-c`).
    pub checksum: bool,
    /// Take a file of the same size as up to date, whatever its mtime
    /// (`--size-only`; its mtime and mode are still brought over).
    pub size_only: bool,
    /// Leave alone a receiver file newer than the sender's (`-u`).
    pub update: bool,
    /// Leave alone whatever the receiver already has (`--ignore-existing`;
    /// existing directories are still entered).
    pub ignore_existing: bool,
    /// Create nothing new on the receiver, only update what it has
    /// (`--existing`; a new directory is skipped with all it holds).
    pub existing: bool,
    /// Leave alone files larger than this many bytes (`--max-size`; they are
    /// still listed, so `--delete` keeps them).
    pub max_size: Option<u64>,
    /// Leave alone files smaller than this many bytes (`--min-size`).
    pub min_size: Option<u64>,
    /// Lanes: circuits carrying pipelined file requests.
    pub parallel: usize,
    /// Compression of new data in deltas and of the file list.
    pub compression: proto::Compression,
    /// Also compress files sent whole (off by default: on a fast link it costs
    /// more time than it saves; rsync's default is no compression at all).
    pub compress_whole: bool,
    /// The sender's zstd level (`--compress-level`; [`proto::zstd_levels`]).
    pub compress_level: i32,
    /// Files the sender does not compress (`--skip-compress`; rsync's list
    /// of compressed formats by default).
    pub skip_compress: SkipCompress,
    /// Remove receiver entries the sender does not have (`--delete`).
    pub delete: bool,
    /// Change nothing on either side; report what would change (`-n`).
    pub dry_run: bool,
    /// Report each change through [`Progress::itemize`] (`-i`).
    pub itemize: bool,
    /// With `itemize`, report unchanged entries too (`-ii`): `.f          PATH`.
    pub itemize_unchanged: bool,
    /// With an `out_format` without `%i` (where `itemize_unchanged` would
    /// show nothing): rsync's `-vv` lines besides the changes, `NAME is
    /// uptodate` for an entry (not a directory) found up to date, and the
    /// bare name of one whose attributes alone changed.
    pub names_unchanged: bool,
    /// Which entries to leave out; excluded receiver entries are also safe from
    /// `delete` unless `delete_excluded`.
    pub filter: Filter,
    /// With `delete`, also remove receiver entries the filter excludes.
    pub delete_excluded: bool,
    /// Copy extended attributes (`-X`).
    pub xattrs: bool,
    /// Copy POSIX ACLs (`-A`), their named users and groups mapped as
    /// owners are.
    pub acls: bool,
    /// Keep hard links: names sharing an inode on the sender share one on the
    /// receiver (`-H`; on by default).
    pub hard_links: bool,
    /// Map owners by number, not by name (`--numeric-ids`). Owners are only
    /// set when the receiving side runs as root.
    pub numeric_ids: bool,
    /// `fsync` each received file before it is renamed into place (`--fsync`):
    /// a file then survives a power cut as old or new. Off by default, as in
    /// rsync; the rename alone keeps a killed transfer from leaving a torn file.
    pub fsync: bool,
    /// Pace the file data the sender sends to this many bytes a second
    /// (before compression; 0: no limit). `--bwlimit`.
    pub bwlimit: u64,
    /// Do not cross filesystem boundaries (`-x`). The sender lists a
    /// directory on another filesystem than its source's without its
    /// contents (2, `-xx`: leaves it out); the receiver's `--delete` enters
    /// no directory on another filesystem than the destination's.
    pub one_file_system: u8,
    /// Send what symlinks lead to instead of the links (`-L`): from a local
    /// source wherever they lead, as rsync does; from a server's only while
    /// they stay beneath its root (others fail, named, and the rest is sent).
    pub copy_links: bool,
    /// Make symlinks, device files and FIFOs (all on by default): without
    /// one, the receiver leaves such entries out, and what it has in their
    /// place (`--no-links`, `--no-devices`, `--no-specials`, as rsync's).
    pub links: bool,
    pub devices: bool,
    pub specials: bool,
    /// Send a symlink to a directory as the directory (`-k`), as far as
    /// `copy_links` would follow it; other symlinks stay links.
    pub copy_dirlinks: bool,
    /// Send a symlink that is unsafe (absolute, or climbing above the
    /// transfer's top from where it sits) as what it leads to, as far as
    /// `copy_links` would follow it (`--copy-unsafe-links`); other symlinks
    /// stay links.
    pub copy_unsafe_links: bool,
    /// Open files for reading without moving their access times
    /// (`--open-noatime`, `O_NOATIME`), where this process may: the
    /// sender's files, and the receiver's old ones it reads.
    pub open_noatime: bool,
    /// Send access times and give them to what is received, what is not a
    /// directory (`-U`, rsync's `--atimes`); without it an entry's atime is
    /// set to its mtime.
    pub atimes: bool,
    /// The receiver allocates each file it writes to its size before the
    /// data goes in (`--preallocate`, `fallocate`), so a file is one piece
    /// on disk and a full disk fails it at the start; with `sparse` its
    /// blocks of zeros are then punched out again. Where the filesystem
    /// cannot, files are written as ever.
    pub preallocate: bool,
    /// Keep a symlink in the destination that leads to a directory where the
    /// source has a directory (`-K`): its contents and attributes go to the
    /// directory it leads to, which must be beneath the destination
    /// directory (a link leading out of it is refused, named, with what it
    /// holds).
    pub keep_dirlinks: bool,
    /// Transfer directories without recursing (`-d` without `-r`): a
    /// directory's contents go only when it is named with a trailing slash
    /// (or `.`), and the directories met there are made empty (their
    /// contents on the receiver left alone, `--delete` too).
    pub dirs_only: bool,
    /// A file the destination lacks takes a similar one beside it as the
    /// basis of its delta (`--fuzzy`): one of the same size and mtime, else
    /// the closest name with the same suffix.
    pub fuzzy: bool,
    /// With `fuzzy`, also search the same directory of each `--*-dest`
    /// directory (`-yy`, as rsync's).
    pub fuzzy_alts: bool,
    /// Rename received files into place together at the end
    /// (`--delay-updates`), so the destination changes in one short step.
    pub delay_updates: bool,
    /// Partial files live in this directory inside each directory, under
    /// their own names (`--partial-dir`; a plain name).
    pub partial_dir: Option<String>,
    /// Temp files are made in this directory (`-T`, `--temp-dir`): taken
    /// from the destination directory when relative; on a server it must
    /// lie beneath the root (an absolute one is taken from the root).
    pub temp_dir: Option<String>,
    /// A path `--files-from` lists that the source lacks is passed over
    /// in silence (`--ignore-missing-args`; jcp also drops such sources).
    pub ignore_missing_args: bool,
    /// Each missing source, and each missing `--files-from` path, becomes a
    /// deletion of what the destination has in its place
    /// (`--delete-missing-args`; implies `ignore_missing_args`).
    pub delete_missing_args: bool,
    /// A non-empty directory in the way of a non-directory, or where
    /// `--delete-missing-args` deletes, is removed with all it holds
    /// (`--force`; also whenever `delete` is on, as rsync's). Otherwise
    /// that entry fails and the directory stays.
    pub force: bool,
    /// Permission changes the sender applies to its list (`--chmod`), so
    /// the receiver takes them for the sender's modes.
    pub chmod: Chmod,
    /// The owner and group every entry gets (`--chown`), where the receiver
    /// runs as root; names are looked up on the receiving side.
    pub chown: Option<Chown>,
    /// The receiver leaves out symlinks that are absolute or lead above the
    /// transfer's top from where they sit (`--safe-links`), each named in a
    /// warning.
    pub safe_links: bool,
    /// Keep what the receiver replaces or deletes (`--backup`,
    /// `--backup-dir`, `--suffix`).
    pub backup: Option<Backup>,
    /// The sender removes each non-directory the receiver has in place
    /// (`--remove-source-files`), if it is still what was listed.
    pub remove_source_files: bool,
    /// Where a file the receiver lacks may be found already
    /// (`--compare-dest`, `--copy-dest`, `--link-dest`).
    pub alt_dest: Option<AltDest>,
    /// Send only these paths beneath the source directory, relative to it,
    /// each with the directories that lead to it (rsync's `-R` and
    /// `--files-from`; the receiver deletes nothing in those directories).
    pub only: Option<Vec<Vec<u8>>>,
    /// With `only`: send what a listed directory holds (`-R`;
    /// `--files-from` only with `-r`, as in rsync).
    pub recurse_listed: bool,
    /// With `only`: the directories on the way to each path are sent
    /// without their attributes, and the receiver leaves what it has there
    /// as it is, a symlink to a directory too (`--no-implied-dirs`).
    pub no_implied_dirs: bool,
    /// With `delete`: delete at most this many entries; the rest are
    /// counted in [`Report::deletes_skipped`] (`--max-delete`).
    pub max_delete: Option<u64>,
    /// Keep owners (where the receiver runs as root; on by default, as
    /// rsync's `-a`; `--no-owner` turns it off).
    pub owner: bool,
    /// Keep groups (as `owner`; `--no-group`).
    pub group: bool,
    /// Give entries the sender's permission bits (on by default, as rsync's
    /// `-a`). Off (`--no-perms`), as rsync's: what the receiver has keeps
    /// its bits (an updated file too), and a new entry gets the sender's
    /// bits less the receiver's umask, without setuid, setgid and sticky
    /// (a new directory still inherits its parent's setgid).
    pub perms: bool,
    /// With `perms` off, a regular file still follows the sender's
    /// executability (`-E`): it loses every execute bit when the sender's
    /// has none, and gains one where it can be read when the sender's has
    /// one and it had none.
    pub executability: bool,
    /// Give entries the sender's modification times (on by default, as
    /// rsync's `-a`). Off (`--no-times`): a received file keeps the time it
    /// was written, and nothing has its time set; size and time are still
    /// compared, so a file of another time is checked again by hash.
    pub times: bool,
    /// Modification times this many seconds apart count as the same
    /// (`--modify-window`, for filesystems that keep coarse times, as FAT's
    /// two seconds); 0: to the nanosecond.
    pub modify_window: u64,
    /// Send changed files whole, without the delta algorithm (`-W`): the
    /// receiver neither reads its old copy nor compares by hash (unless
    /// `checksum`), as rsync's `--whole-file`.
    pub whole_file: bool,
    /// Leave directories' modification times as they come (`-O`).
    pub omit_dir_times: bool,
    /// Leave symlinks' modification times as they come (`-J`).
    pub omit_link_times: bool,
    /// With `delete`: delete before the transfer, once the whole list has
    /// arrived (`--delete-before`), not after it.
    pub delete_before: bool,
    /// With `delete`: delete even when the sender reported I/O errors
    /// (`--ignore-errors`); otherwise nothing is deleted then.
    pub ignore_errors: bool,
    /// The receiver leaves each aligned 4 KiB block of zeros it receives a
    /// hole (`-S`); without it, a source file's own holes are kept in files
    /// larger than 256 KiB (smaller ones travel whole, as data).
    pub sparse: bool,
    /// The receiver makes a new directory only when something other than a
    /// directory goes in it, below it (`-m`, rsync's `--prune-empty-dirs`).
    pub prune_empty_dirs: bool,
    /// With `itemize`: lines in this format instead (`--out-format`), only
    /// for transfers unless it shows `%i`.
    pub out_format: Option<OutFormat>,
    /// Each change also in this format, for a log file
    /// (`--log-file-format`), to [`Progress::log_item`] (with `itemize`
    /// or without); only transfers unless it shows `%i`.
    pub log_format: Option<OutFormat>,
    /// Owners (`--usermap`) and groups (`--groupmap`) the receiver gives
    /// in place of the sender's, where it sets them (as root).
    pub usermap: Option<IdMap>,
    pub groupmap: Option<IdMap>,
    /// When the run (a copy or a listing) must stop, done or not (rsync's
    /// `--stop-at` and `--stop-after`): the connection is closed then, as if
    /// it had dropped (each file in flight is left as its partial file, none
    /// torn), and the run fails with [`Error::TimeLimit`]. By the wall clock, as
    /// rsync's: a machine that sleeps meanwhile stops when it wakes.
    pub stop_at: Option<std::time::SystemTime>,
    /// Stops the run when cancelled (jcp cancels it on SIGINT, SIGTERM or
    /// SIGHUP): as [`SyncOptions::stop_at`] does, the connection is
    /// closed, each file in flight is left as its partial file, and the
    /// run fails with [`Error::Interrupted`].
    pub interrupt: Option<tokio_util::sync::CancellationToken>,
    /// Progress hooks.
    pub progress: Arc<dyn Progress>,
}

impl SyncOptions {
    /// Resolves once [`SyncOptions::interrupt`] is cancelled; never
    /// without one.
    pub async fn interrupted(&self) {
        match &self.interrupt {
            Some(token) => token.cancelled().await,
            None => std::future::pending().await,
        }
    }
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            checksum: false,
            size_only: false,
            update: false,
            ignore_existing: false,
            existing: false,
            max_size: None,
            min_size: None,
            parallel: 8,
            compression: proto::Compression::ZSTD,
            compress_whole: false,
            compress_level: proto::ZSTD_DEFAULT_LEVEL,
            skip_compress: SkipCompress::default(),
            delete: false,
            dry_run: false,
            itemize: false,
            itemize_unchanged: false,
            names_unchanged: false,
            filter: Filter::default(),
            delete_excluded: false,
            xattrs: false,
            acls: false,
            hard_links: true,
            numeric_ids: false,
            fsync: false,
            bwlimit: 0,
            one_file_system: 0,
            copy_links: false,
            links: true,
            devices: true,
            specials: true,
            copy_dirlinks: false,
            copy_unsafe_links: false,
            open_noatime: false,
            atimes: false,
            preallocate: false,
            keep_dirlinks: false,
            dirs_only: false,
            fuzzy: false,
            fuzzy_alts: false,
            delay_updates: false,
            partial_dir: None,
            temp_dir: None,
            ignore_missing_args: false,
            delete_missing_args: false,
            force: false,
            chmod: Chmod::default(),
            chown: None,
            safe_links: false,
            backup: None,
            remove_source_files: false,
            alt_dest: None,
            only: None,
            recurse_listed: false,
            no_implied_dirs: false,
            max_delete: None,
            owner: true,
            group: true,
            perms: true,
            executability: false,
            times: true,
            modify_window: 0,
            whole_file: false,
            omit_dir_times: false,
            omit_link_times: false,
            delete_before: false,
            ignore_errors: false,
            sparse: false,
            prune_empty_dirs: false,
            out_format: None,
            log_format: None,
            usermap: None,
            groupmap: None,
            stop_at: None,
            interrupt: None,
            progress: Arc::new(NoProgress),
        }
    }
}

/// Whether `name` can be a `--partial-dir`: a plain name, made inside each
/// directory (not `.` or `..`, no `/`, no wildcard).
pub fn plain_partial_dir(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '*', '?', '[', '\\'])
}

/// Server side: the services that let clients push into and pull from `root`
/// (and expand wildcards beneath it). With `read_only`, pushes are refused.
pub fn server_services(root: PathBuf, read_only: bool) -> Services {
    services(root, read_only, true, 0)
}

/// [`server_services`]; `confined`: the backup and `--*-dest` directories a
/// push names must lie beneath `root` (not so for the in-process peer of a
/// local sync, where the user may write anywhere); `made_above`: the
/// directories a local sync made above the destination to open `root`
/// ([`TakeSpec::made_above`]).
fn services(root: PathBuf, read_only: bool, confined: bool, made_above: u64) -> Services {
    let give_root = root.clone();
    let glob_root = root.clone();
    Services::new()
        .with(GLOB, move |peer| glob::serve(peer, glob_root.clone()))
        .with(GIVE, move |peer| {
            let root = give_root.clone();
            async move {
                let args = Args::parse(peer.args())?;
                if read_only && args.opts.remove_source_files && !args.opts.dry_run {
                    anyhow::bail!(
                        "this server is read-only (jsrv --read-only): --remove-source-files is refused"
                    );
                }
                let fs = FsRoot::open(&root).map_err(fs_err)?;
                let src = typed_path(&fs, &args.path, confined)?;
                let o = &args.opts;
                // (--delete-missing-args: a missing source is listed as such.)
                let gone = o.delete_missing_args
                    && o.only.is_none()
                    && FsRoot::check(src.as_bytes())
                        .is_ok_and(|p| matches!(fs.lstat(&p), Ok(None)));
                let mut spec = match gone {
                    true => GiveSpec::missing(fs, src.as_bytes(), false)?,
                    false => GiveSpec::in_root(fs, &src, give::Follow::of(o))?,
                };
                if let Some(only) = &args.opts.only {
                    spec = spec.select(only)?;
                }
                let stats = give::give(peer, spec, args.give_options(Arc::new(NoProgress))).await?;
                let (path, files) = (escape_controls(&args.path), stats.files_transferred);
                tracing::info!(%path, files, errors = stats.errors.len(), "pull served");
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
                let dst = typed_path(&fs, &args.path, confined)?;
                let spec = TakeSpec {
                    dst: FsRoot::check(dst.trim_end_matches('/').as_bytes()).map_err(fs_err)?,
                    dir: names_dir(dst.as_bytes()),
                    fs: Arc::new(fs),
                    made_above,
                    local: !confined,
                };
                let mut opts = args.take_options(Arc::new(NoProgress), true);
                opts.side_dirs_confined = confined;
                let stats = take::take(peer, spec, opts).await?;
                let (path, files) = (escape_controls(&args.path), stats.files_transferred);
                tracing::info!(%path, files, errors = stats.errors.len(), "push received");
                Ok(())
            }
        })
}

/// The yes/no options the service arguments carry, each as `NAME=0|1`
/// under its [`SyncOptions`] field's name: [`encode_flags`] and
/// [`parse_flag`] from one list.
macro_rules! flag_options {
    ($($field:ident),* $(,)?) => {
        /// The yes/no options' names.
        #[cfg(test)]
        const FLAG_NAMES: &[&str] = &[$(stringify!($field)),*];

        /// Appends each yes/no option as `NAME=0|1`.
        fn encode_flags(o: &SyncOptions, out: &mut Vec<String>) {
            $(out.push(format!(concat!(stringify!($field), "={}"), u8::from(o.$field)));)*
        }

        /// Sets the yes/no option named `k`; false when `k` names none.
        fn parse_flag(o: &mut SyncOptions, k: &str, on: bool) -> bool {
            match k {
                $(stringify!($field) => o.$field = on,)*
                _ => return false,
            }
            true
        }
    };
}

flag_options!(
    checksum,
    size_only,
    update,
    ignore_existing,
    existing,
    compress_whole,
    delete,
    dry_run,
    itemize,
    itemize_unchanged,
    names_unchanged,
    delete_excluded,
    xattrs,
    acls,
    hard_links,
    numeric_ids,
    fsync,
    copy_links,
    copy_dirlinks,
    copy_unsafe_links,
    open_noatime,
    atimes,
    links,
    devices,
    specials,
    preallocate,
    keep_dirlinks,
    dirs_only,
    fuzzy,
    fuzzy_alts,
    delay_updates,
    ignore_missing_args,
    delete_missing_args,
    force,
    safe_links,
    remove_source_files,
    recurse_listed,
    no_implied_dirs,
    owner,
    group,
    perms,
    executability,
    times,
    whole_file,
    omit_dir_times,
    omit_link_times,
    delete_before,
    ignore_errors,
    sparse,
    prune_empty_dirs,
);

/// The arguments a client passes when it starts a service: the path, then
/// `key=value` options (unknown keys, from a newer client, are ignored).
#[derive(Debug)]
struct Args {
    path: String,
    /// The options as the starter gave them (its progress hooks stay with it).
    opts: SyncOptions,
}

impl Args {
    fn encode(path: &str, opts: &SyncOptions) -> Vec<String> {
        let mut out = vec![path.to_string()];
        encode_flags(opts, &mut out);
        out.extend([
            format!("parallel={}", opts.parallel),
            format!("compress={}", opts.compression),
            format!("compress_level={}", opts.compress_level),
            format!("skip_compress={}", opts.skip_compress),
            format!("bwlimit={}", opts.bwlimit),
            format!("one_file_system={}", opts.one_file_system),
            format!("modify_window={}", opts.modify_window),
        ]);
        if !opts.chmod.is_empty() {
            out.push(format!("chmod={}", opts.chmod));
        }
        if let Some(c) = &opts.chown {
            out.push(format!("chown={c}"));
        }
        if let Some(f) = &opts.out_format {
            out.push(format!("out_format={f}"));
        }
        if let Some(f) = &opts.log_format {
            out.push(format!("log_format={f}"));
        }
        if let Some(m) = &opts.usermap {
            out.push(format!("usermap={m}"));
        }
        if let Some(d) = &opts.partial_dir {
            out.push(format!("partial_dir={d}"));
        }
        if let Some(d) = &opts.temp_dir {
            out.push(format!("temp_dir={d}"));
        }
        if let Some(m) = &opts.groupmap {
            out.push(format!("groupmap={m}"));
        }
        if let Some(a) = &opts.alt_dest {
            let how = &a.how.option()[2..];
            out.extend(a.dirs.iter().map(|d| format!("{how}={d}")));
        }
        if let Some(b) = &opts.backup {
            out.push(format!("backup_suffix={}", b.suffix));
            out.extend(b.dir.iter().map(|d| format!("backup_dir={d}")));
        }
        let sizes = [
            ("max_size", opts.max_size),
            ("min_size", opts.min_size),
            ("max_delete", opts.max_delete),
        ];
        out.extend(
            sizes
                .iter()
                .filter_map(|(k, v)| v.map(|n| format!("{k}={n}"))),
        );
        out.extend(
            opts.filter
                .to_args()
                .into_iter()
                .map(|r| format!("filter={r}")),
        );
        if opts.filter.nul_lines() {
            out.push("filter_nul=1".into());
        }
        out
    }

    /// [`Args::encode`] for the sender's service (GIVE): with the paths of
    /// a selection (`-R`, `--files-from`), newline-separated in arguments of at most
    /// [`proto::MAX_ARG`] bytes. Paths must be UTF-8 without newlines.
    fn encode_give(path: &str, opts: &SyncOptions) -> Result<Vec<String>> {
        let mut out = Args::encode(path, opts);
        let Some(only) = &opts.only else {
            return Ok(out);
        };
        let mut arg = String::from("only=");
        for (i, p) in only.iter().enumerate() {
            let p = std::str::from_utf8(p)
                .ok()
                .filter(|p| !p.contains('\n'))
                .ok_or_else(|| {
                    Error::Usage(format!(
                        "{}: a listed path of a pull must be UTF-8 without newlines",
                        p.escape_ascii()
                    ))
                })?;
            if arg.len() + 1 + p.len() > proto::MAX_ARG && arg.len() > "only=".len() {
                out.push(std::mem::replace(&mut arg, String::from("only=")));
            } else if i > 0 {
                arg.push('\n');
            }
            arg.push_str(p);
        }
        out.push(arg);
        Ok(out)
    }

    fn parse(args: &[String]) -> anyhow::Result<Args> {
        let path = args
            .first()
            .ok_or_else(|| anyhow::anyhow!("no path given"))?
            .clone();
        let mut out = Args {
            path,
            opts: SyncOptions::default(),
        };
        let mut rules = Vec::new();
        let mut nul_lines = false;
        let (mut suffix, mut backup_dir) = (None, None);
        for a in &args[1..] {
            let (k, v) = a
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("malformed option {a:?}"))?;
            if parse_flag(&mut out.opts, k, v == "1") {
                continue;
            }
            match k {
                "max_size" => out.opts.max_size = Some(v.parse()?),
                "min_size" => out.opts.min_size = Some(v.parse()?),
                "max_delete" => out.opts.max_delete = Some(v.parse()?),
                "parallel" => out.opts.parallel = v.parse::<usize>()?.clamp(1, 64),
                "compress" => {
                    out.opts.compression = v
                        .parse()
                        .map_err(|_| anyhow::anyhow!("unknown compression {v:?}"))?
                }
                "compress_level" => out.opts.compress_level = v.parse()?,
                "skip_compress" => {
                    out.opts.skip_compress = SkipCompress::parse(v).map_err(anyhow::Error::msg)?
                }
                "bwlimit" => out.opts.bwlimit = v.parse()?,
                "one_file_system" => out.opts.one_file_system = v.parse::<u8>()?.min(2),
                "partial_dir" => {
                    if !plain_partial_dir(v) {
                        anyhow::bail!("--partial-dir {v:?}: a plain name is needed");
                    }
                    out.opts.partial_dir = Some(v.to_string());
                }
                "temp_dir" => out.opts.temp_dir = Some(v.to_string()),
                "modify_window" => out.opts.modify_window = v.parse()?,
                "usermap" => out.opts.usermap = Some(IdMap::parse(v).map_err(anyhow::Error::msg)?),
                "groupmap" => {
                    out.opts.groupmap = Some(IdMap::parse(v).map_err(anyhow::Error::msg)?)
                }
                "out_format" => {
                    out.opts.out_format = Some(OutFormat::parse(v).map_err(anyhow::Error::msg)?)
                }
                "log_format" => {
                    out.opts.log_format = Some(OutFormat::parse(v).map_err(anyhow::Error::msg)?)
                }
                "only" => {
                    let only = out.opts.only.get_or_insert_with(Vec::new);
                    only.extend(v.split('\n').map(|p| p.as_bytes().to_vec()));
                }
                "chmod" => out.opts.chmod = Chmod::parse(v)?,
                "chown" => out.opts.chown = Some(Chown::parse(v).map_err(anyhow::Error::msg)?),
                "filter" => rules.push(v.to_string()),
                "filter_nul" => nul_lines = v == "1",
                "backup_suffix" => suffix = Some(v.to_string()),
                k if AltHow::parse(k).is_some() => {
                    let how = AltHow::parse(k).expect("matched");
                    let alt = out.opts.alt_dest.get_or_insert(AltDest {
                        how,
                        dirs: Vec::new(),
                    });
                    if alt.how != how {
                        anyhow::bail!("{} and {} cannot be mixed", alt.how.option(), how.option());
                    }
                    alt.dirs.push(v.to_string());
                }
                "backup_dir" => backup_dir = Some(v.to_string()),
                _ => {} // options from a newer client: ignored
            }
        }
        out.opts.filter = Filter::from_args(&rules)?;
        out.opts.filter.set_nul_lines(nul_lines);
        if out.opts.acls && !out.opts.perms {
            anyhow::bail!("-A cannot go with --no-perms (an access ACL holds the permission bits)");
        }
        if let Some(a) = &out.opts.alt_dest {
            a.check().map_err(anyhow::Error::msg)?;
        }
        let o = &out.opts;
        if o.remove_source_files && (o.copy_links || o.copy_dirlinks || o.copy_unsafe_links) {
            // What was sent is what a link leads to; removing the link
            // would not move it, and removing its referent is not asked.
            anyhow::bail!(
                "--remove-source-files cannot be used with -L, -k or --copy-unsafe-links"
            );
        }
        if suffix.is_some() || backup_dir.is_some() {
            out.opts.backup = Some(Backup::new(backup_dir, suffix).map_err(anyhow::Error::msg)?);
        }
        Ok(out)
    }

    /// The extended attributes that travel and are kept (`-X`, `-A`).
    fn kept(&self) -> fsroot::Kept {
        fsroot::Kept {
            xattrs: self.opts.xattrs,
            acls: self.opts.acls,
            names: None,
        }
    }

    fn give_options(&self, progress: Arc<dyn Progress>) -> GiveOptions {
        GiveOptions {
            compression: self.opts.compression,
            compress_whole: self.opts.compress_whole,
            compress_level: self.opts.compress_level,
            skip_compress: Arc::new(self.opts.skip_compress.clone()),
            filter: Arc::new(self.opts.filter.clone()),
            kept: self.kept(),
            hard_links: self.opts.hard_links,
            numeric_ids: self.opts.numeric_ids,
            one_file_system: self.opts.one_file_system,
            copy_links: self.opts.copy_links,
            copy_dirlinks: self.opts.copy_dirlinks,
            copy_unsafe_links: self.opts.copy_unsafe_links,
            open_noatime: self.opts.open_noatime,
            atimes: self.opts.atimes,
            dirs_only: self.opts.dirs_only,
            ignore_missing: self.opts.ignore_missing_args || self.opts.delete_missing_args,
            delete_missing: self.opts.delete_missing_args,
            chmod: Arc::new(self.opts.chmod.clone()),
            throttle: (self.opts.bwlimit > 0)
                .then(|| Arc::new(throttle::Throttle::new(self.opts.bwlimit))),
            remove_source: self.opts.remove_source_files && !self.opts.dry_run,
            recurse_listed: self.opts.recurse_listed,
            no_implied_dirs: self.opts.no_implied_dirs,
            progress,
        }
    }

    /// `remote`: the receiver runs on the server, so itemized lines go back to
    /// the client (which prints them).
    fn take_options(&self, progress: Arc<dyn Progress>, remote: bool) -> TakeOptions {
        // (Lines are made for stdout, a dry run's listing or a log file.)
        let lines = self.opts.itemize || self.opts.dry_run || self.opts.log_format.is_some();
        TakeOptions {
            checksum: self.opts.checksum,
            size_only: self.opts.size_only,
            skips: take::Skips::of(&self.opts),
            lanes: self.opts.parallel,
            delete: self.opts.delete,
            dry_run: self.opts.dry_run,
            itemize: lines,
            show_items: self.opts.itemize || self.opts.dry_run,
            itemize_unchanged: self.opts.itemize_unchanged,
            names_unchanged: self.opts.names_unchanged,
            open_noatime: self.opts.open_noatime,
            preallocate: self.opts.preallocate,
            items_to_sender: remote && lines,
            filter: Arc::new(self.opts.filter.clone()),
            delete_excluded: self.opts.delete_excluded,
            kept: self.kept(),
            hard_links: self.opts.hard_links,
            numeric_ids: self.opts.numeric_ids,
            fsync: self.opts.fsync,
            one_file_system: self.opts.one_file_system > 0,
            chown: self.opts.chown.clone(),
            safe_links: self.opts.safe_links,
            backup: self.opts.backup.clone(),
            alt_dest: self.opts.alt_dest.clone(),
            side_dirs_confined: remote,
            confirm_placed: self.opts.remove_source_files && !self.opts.dry_run,
            max_delete: self.opts.max_delete,
            owner: self.opts.owner,
            group: self.opts.group,
            perms: self.opts.perms,
            executability: self.opts.executability,
            times: self.opts.times,
            modify_window: self.opts.modify_window,
            whole_file: self.opts.whole_file,
            fuzzy: self.opts.fuzzy,
            fuzzy_alts: self.opts.fuzzy_alts,
            delay_updates: self.opts.delay_updates,
            partial_dir: self.opts.partial_dir.clone(),
            temp_dir: self.opts.temp_dir.clone(),
            keep_dirlinks: self.opts.keep_dirlinks,
            delete_missing: self.opts.delete_missing_args,
            force: self.opts.force || self.opts.delete,
            no_implied_dirs: self.opts.no_implied_dirs,
            listing_asked: true,
            omit_dir_times: self.opts.omit_dir_times,
            omit_link_times: self.opts.omit_link_times,
            delete_before: self.opts.delete_before,
            ignore_errors: self.opts.ignore_errors,
            sparse: self.opts.sparse,
            prune_empty_dirs: self.opts.prune_empty_dirs,
            out_format: self.opts.out_format.clone().map(Arc::new),
            log_format: self.opts.log_format.clone().map(Arc::new),
            usermap: self.opts.usermap.clone(),
            groupmap: self.opts.groupmap.clone(),
            progress,
        }
    }
}

/// The counts since `wire0` ([`Link::wire_sent_received`] at the start).
fn wire_since(link: &Link, wire0: (u64, u64)) -> (u64, u64) {
    let (sent, received) = link.wire_sent_received();
    (sent - wire0.0, received - wire0.1)
}

fn report_of(stats: proto::sync::Stats, wire: (u64, u64), start: Instant) -> Report {
    let list = |l: Vec<proto::sync::StatsError>| {
        let mut out: Vec<FileError> = l
            .into_iter()
            // (From a peer: its names were escaped where it made them, but
            // nothing of its text may reach a terminal unescaped.)
            .map(|e| FileError {
                path: escape_controls(&String::from_utf8_lossy(&e.path)).into_owned(),
                message: escape_controls(&e.message).into_owned(),
            })
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out
    };
    Report {
        deleted: stats.deleted,
        deletes_skipped: stats.deletes_skipped,
        vanished: list(stats.vanished),
        warnings: list(stats.warnings),
        notices: list(stats.notices),
        files_checked: stats.files_checked,
        files_transferred: stats.files_transferred,
        transferred_size: stats.transferred_size,
        bytes_literal: stats.bytes_literal,
        bytes_reused: stats.bytes_reused,
        total_size: stats.total_size,
        wire_bytes: wire.0 + wire.1,
        wire_sent: wire.0,
        wire_received: wire.1,
        elapsed: start.elapsed(),
        errors: list(stats.errors),
    }
}

/// Push: send local `src` to `dst` (a path relative to the server's root; "" is
/// the root). `src` follows rsync: a directory with a trailing slash sends its
/// contents, without one the directory itself; a file sent to an existing
/// directory lands inside it.
pub async fn push(link: &Link, src: &Path, dst: &str, opts: &SyncOptions) -> Result<Report> {
    let start = Instant::now();
    push_spec(link, give_spec(src, opts)?, dst, opts, start).await
}

/// What local `src` sends, as [`push`] reads it.
fn give_spec(src: &Path, opts: &SyncOptions) -> Result<GiveSpec> {
    let spec = match source_missing(src, opts) {
        // (Never read: a missing source lists nothing.)
        true => {
            let fs = FsRoot::open(Path::new("/")).map_err(fs_err)?;
            GiveSpec::missing(fs, src.as_os_str().as_encoded_bytes(), true)?
        }
        false => GiveSpec::local(src, give::Follow::of(opts))?,
    };
    match &opts.only {
        Some(only) => spec.select(only),
        None => Ok(spec),
    }
}

/// [`push`] of a source already read.
async fn push_spec(
    link: &Link,
    spec: GiveSpec,
    dst: &str,
    opts: &SyncOptions,
    start: Instant,
) -> Result<Report> {
    let wire0 = link.wire_sent_received();
    let peer = link.start(TAKE, &Args::encode(dst, opts)).await?;
    let args = Args::parse(&Args::encode(dst, opts)).map_err(|e| Error::Usage(e.to_string()))?;
    let give = give::give(peer.clone(), spec, args.give_options(opts.progress.clone()));
    let stats = until(opts, link, give).await?;
    peer.close();
    Ok(report_of(stats, wire_since(link, wire0), start))
}

/// Runs `job` on `link` until [`SyncOptions::stop_at`] or
/// [`SyncOptions::interrupt`], if either is given and comes first: then
/// the link is closed (the other side learns why), `job` winds down as
/// after a lost connection (keeping what arrived of each file in flight as
/// its partial file), and the run fails with [`Error::TimeLimit`] or
/// [`Error::Interrupted`].
async fn until<T>(
    opts: &SyncOptions,
    link: &Link,
    job: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    if opts.stop_at.is_none() && opts.interrupt.is_none() {
        return job.await;
    }
    tokio::pin!(job);
    let time_up = async {
        match opts.stop_at {
            Some(at) => until_time(at, std::future::pending::<()>()).await,
            None => std::future::pending().await,
        }
    };
    let (why, error) = tokio::select! {
        done = &mut job => return done,
        _ = time_up => (TIME_LIMIT, Error::TimeLimit),
        () = opts.interrupted() => (INTERRUPTED, Error::Interrupted),
    };
    link.close(why).await;
    // (Every circuit has ended: the job is only putting things away.)
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), job).await;
    Err(error)
}

/// Runs `fut` until it ends or the wall clock reaches `at`, whichever
/// comes first: its output, or `None` when the time came first. (The clock
/// is read again at least every second: tokio's timers do not count the
/// time a machine sleeps, nor see the clock set.)
pub async fn until_time<T>(
    at: std::time::SystemTime,
    fut: impl std::future::Future<Output = T>,
) -> Option<T> {
    tokio::pin!(fut);
    while let Ok(left) = at.duration_since(std::time::SystemTime::now()) {
        if left.is_zero() {
            break;
        }
        tokio::select! {
            biased;
            done = &mut fut => return Some(done),
            () = tokio::time::sleep(left.min(std::time::Duration::from_secs(1))) => {}
        }
    }
    None
}

/// Why a link closed at [`SyncOptions::stop_at`], as the other side hears it.
const TIME_LIMIT: &str = "stopping at the time limit the client was given";
/// Why a link closed at [`SyncOptions::interrupt`].
const INTERRUPTED: &str = "the client was interrupted";

/// Whether local `src` is a missing source to list as such
/// (`--delete-missing-args`, not a `--files-from` or `-R` listing's top).
fn source_missing(src: &Path, opts: &SyncOptions) -> bool {
    opts.delete_missing_args
        && opts.only.is_none()
        && matches!(std::fs::symlink_metadata(src), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
}

/// Pull: fetch `src` (relative to the server's root; trailing-slash rules as in
/// [`push`]) into local `dst`.
pub async fn pull(link: &Link, src: &str, dst: &Path, opts: &SyncOptions) -> Result<Report> {
    let start = Instant::now();
    let wire0 = link.wire_sent_received();
    let spec = local_destination(dst, opts.dry_run)?;
    let peer = link.start(GIVE, &Args::encode_give(src, opts)?).await?;
    let args = Args::parse(&Args::encode(src, opts)).map_err(|e| Error::Usage(e.to_string()))?;
    let mut take_opts = args.take_options(opts.progress.clone(), false);
    take_opts.listing_asked = opts.only.is_some();
    let stats = until(opts, link, take::take(peer.clone(), spec, take_opts)).await?;
    peer.close();
    Ok(report_of(stats, wire_since(link, wire0), start))
}

/// Local sync through an in-process peer pair: the same engine, no daemon.
pub async fn local(src: &Path, dst: &Path, opts: &SyncOptions) -> Result<Report> {
    // (A missing source, --delete-missing-args, makes nothing: not even
    // the destination's parents.)
    let spec = local_destination(dst, opts.dry_run || source_missing(src, opts))?;
    let root = spec.fs.path().to_path_buf();
    // The in-process server takes the destination as a client names it.
    let slash = if spec.dir { "/" } else { "" };
    let dst_rel = format!("{}{slash}", spec.dst.display());
    let start = Instant::now();
    let mut give = give_spec(src, opts)?;
    give.avoid = landing_inside(&give, &root, &spec.dst);
    let (a, b) = Link::pair(
        Arc::new(Services::new()),
        Arc::new(services(root, false, false, spec.made_above)),
    )
    .await?;
    let report = push_spec(&a, give, &dst_rel, opts, start).await;
    a.close("done").await;
    // The in-process receiver puts away what it was doing (a run stopped
    // part-way keeps its partial files) before the caller goes on.
    let wait = std::time::Duration::from_secs(10);
    let _ = tokio::time::timeout(wait, b.services_ended()).await;
    report.map_err(own_failure)
}

/// A failure an in-process peer reported ([`Link::pair`]): this machine's
/// own, said without naming a peer.
fn own_failure(e: Error) -> Error {
    match e {
        Error::Remote { reason, .. } => Error::Fs(reason),
        e => e,
    }
}

/// Where a local copy of directory `give` lands inside that directory
/// (`jcp dir dir/sub`, `jcp dir/ dir/sub`), as a path beneath it for the
/// walk to leave out: the first directory on the way to the landing place
/// that is not there yet (the run makes it), else the landing place
/// itself. None when the copy lands outside the source, or on it.
fn landing_inside(give: &GiveSpec, root: &Path, dst: &RelPath) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    if give.source.kind != proto::sync::EntryKind::Dir {
        return None;
    }
    let src = std::fs::canonicalize(give.fs.path()).ok()?;
    let mut landing = std::fs::canonicalize(root).ok()?;
    if !dst.is_root() {
        landing.push(std::ffi::OsStr::from_bytes(dst.as_bytes()));
    }
    if !give.source.contents {
        landing.push(std::ffi::OsStr::from_bytes(&give.source.name));
    }
    let inside = landing.strip_prefix(&src).ok()?;
    let mut on_the_way: Vec<&Path> = inside.ancestors().collect();
    on_the_way.pop(); // ("": the source itself)
    let first_new = on_the_way
        .iter()
        .rev()
        .find(|p| std::fs::symlink_metadata(src.join(p)).is_err());
    let avoid = first_new.or(on_the_way.first())?;
    Some(avoid.as_os_str().as_bytes().to_vec())
}

/// Whether two modification times count as the same: to the nanosecond, or
/// with a `--modify-window` of `window` seconds, whole seconds at most that
/// far apart (as rsync compares them).
pub(crate) fn same_mtime(a: (i64, u32), b: (i64, u32), window: u64) -> bool {
    match window {
        0 => a == b,
        w => a.0.abs_diff(b.0) <= w,
    }
}

/// Whether a destination as typed ends in `/`: a directory ([`TakeSpec::dir`]).
/// The path a client named, read as a server reads a typed path
/// ([`FsRoot::resolve_typed`]: `~`, `..`); the in-process peer's are a
/// local path's names, `~` among them, taken as they are.
fn typed_path<'a>(fs: &FsRoot, path: &'a str, confined: bool) -> Result<Cow<'a, str>> {
    match confined {
        true => fs.resolve_typed(path).map_err(fs_err),
        false => Ok(Cow::Borrowed(path)),
    }
}

fn names_dir(dst: &[u8]) -> bool {
    dst.len() > 1 && dst.ends_with(b"/")
}

/// A local destination: an existing directory is the root itself; otherwise the
/// parent (created if missing) is the root and the name is the target. A dry
/// run creates nothing: the nearest existing ancestor is the root instead.
fn local_destination(dst: &Path, dry_run: bool) -> Result<TakeSpec> {
    let dir = names_dir(dst.as_os_str().as_encoded_bytes());
    if dry_run && !dst.is_dir() {
        use std::os::unix::ffi::OsStrExt;
        let mut root = dst.to_path_buf();
        let mut rest: Vec<std::ffi::OsString> = Vec::new();
        loop {
            match root.file_name() {
                Some(name) if !root.is_dir() => {
                    rest.push(name.to_os_string());
                    root.pop();
                }
                _ => break,
            }
            if root.as_os_str().is_empty() {
                root = PathBuf::from(".");
                break;
            }
        }
        let rel: Vec<u8> = rest
            .iter()
            .rev()
            .map(|n| n.as_bytes())
            .collect::<Vec<_>>()
            .join(&b'/');
        return Ok(TakeSpec {
            fs: Arc::new(FsRoot::open(&root).map_err(fs_err)?),
            dst: FsRoot::check(&rel).map_err(fs_err)?,
            dir,
            made_above: 0,
            local: true,
        });
    }
    if dst.is_dir() {
        return Ok(TakeSpec {
            fs: Arc::new(FsRoot::open(dst).map_err(fs_err)?),
            dst: FsRoot::check(b"").map_err(fs_err)?,
            dir,
            made_above: 0,
            local: true,
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
    // (What is missing above the destination, counted before it is made.)
    let made_above = parent
        .ancestors()
        .take_while(|a| {
            !a.as_os_str().is_empty()
                && std::fs::symlink_metadata(a)
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
        })
        .count() as u64;
    Ok(TakeSpec {
        fs: Arc::new(FsRoot::open_or_create(&parent).map_err(fs_err)?),
        dst: FsRoot::check(name.as_bytes()).map_err(fs_err)?,
        dir,
        made_above,
        local: true,
    })
}

/// What the user sees before an entry's path: the source's name when the
/// source is placed by its name (`jcp src dst`, `jcp file dst`), so that paths
/// show as rsync shows them, relative to the destination (`src/f`, `file`);
/// nothing for a directory's contents (`jcp src/ dst`).
pub(crate) fn shown_prefix(source: &proto::sync::Source) -> Vec<u8> {
    if source.kind == proto::sync::EntryKind::Dir && source.contents {
        Vec::new()
    } else {
        source.name.clone()
    }
}

/// rsync's `--safe-links` rule: a symlink at `link` (its path from the
/// transfer's top) is unsafe if its target is absolute (or empty) or climbs
/// above that top from the link's directory.
pub(crate) fn unsafe_symlink(link: &[u8], target: &[u8]) -> bool {
    if target.is_empty() || target.starts_with(b"/") {
        return true;
    }
    let parts = |p: &'static [u8]| move |c: &&[u8]| !c.is_empty() && *c != p;
    // Directories between the top and the link.
    let mut depth = link.split(|&b| b == b'/').filter(parts(b".")).count() as i64 - 1;
    for c in target.split(|&b| b == b'/').filter(parts(b".")) {
        depth += if c == b".." { -1 } else { 1 };
        if depth < 0 {
            return true;
        }
    }
    false
}

/// An entry's path (relative to the source) as the user sees it, after
/// [`shown_prefix`].
pub(crate) fn shown_bytes(prefix: &[u8], path: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(prefix.len() + 1 + path.len());
    b.extend_from_slice(prefix);
    if !prefix.is_empty() && !path.is_empty() {
        b.push(b'/');
    }
    b.extend_from_slice(path);
    b
}

/// [`shown_bytes`] as text ([`escape_name`]), for progress and messages; no
/// copy without a prefix (a file's path is shown for each file).
pub(crate) fn shown_path<'a>(prefix: &[u8], path: &'a [u8]) -> std::borrow::Cow<'a, str> {
    if prefix.is_empty() {
        return escape_name(path);
    }
    escape_name(&shown_bytes(prefix, path)).into_owned().into()
}

/// The path a sender's walk error is reported under: [`shown_path`], but
/// none for the top of a directory's contents (`.`), which the sender's
/// message names as it has it ("cannot read top"): an error about the run.
pub(crate) fn walk_error_path(prefix: &[u8], path: &[u8]) -> String {
    match shown_path(prefix, path) {
        p if path.is_empty() && p == "." => String::new(),
        p => p.into_owned(),
    }
}

/// Where a side's paths lie, for `/` filter rules: `rel` beneath the
/// directory `root` this side opened; for a tree on this machine (`local`)
/// its absolute path, with `.` and `..` taken out as rsync's `change_dir`
/// takes them out; on a server the path beneath the root it serves (as
/// rsync's daemon matches within a module). Without a leading `/`.
pub(crate) fn abs_root(root: &Path, rel: &[u8], local: bool) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    use std::path::Component;
    let full = match local {
        true => std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf()),
        false => PathBuf::new(),
    };
    let full = full.join(std::ffi::OsStr::from_bytes(rel));
    let mut out: Vec<&[u8]> = Vec::new();
    for c in full.components() {
        match c {
            Component::Normal(n) => out.push(n.as_bytes()),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out.join(&b'/')
}

/// The filter as `side` applies it to `source`'s entries: a directory sent as
/// itself (no trailing slash) sits below the transfer root, so rules see its
/// entries as `NAME/...`, as rsync's do; the other side's rules are passed over.
fn rooted_filter(filter: &Arc<Filter>, source: &proto::sync::Source, side: Side) -> Arc<Filter> {
    if filter.is_empty() {
        return filter.clone();
    }
    let sided = filter.for_side(side);
    if source.kind != proto::sync::EntryKind::Dir || source.contents || source.name.is_empty() {
        return Arc::new(sided);
    }
    Arc::new(sided.under(&source.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/` rules' roots: a local tree's absolute path without `.` and `..`
    /// (a relative one from the current directory), a server's path
    /// beneath its root; no leading `/`.
    #[test]
    fn abs_roots_as_rsync_sees_them() {
        let root = Path::new("/home/u/./x/../src/");
        assert_eq!(abs_root(root, b"", true), b"home/u/src");
        assert_eq!(abs_root(root, b"sub/dst", true), b"home/u/src/sub/dst");
        assert_eq!(abs_root(Path::new("/"), b"", true), b"");
        assert_eq!(
            abs_root(Path::new("/srv/root"), b"mod/dst", false),
            b"mod/dst"
        );
        assert_eq!(abs_root(Path::new("/srv/root"), b"", false), b"");
        let cwd = std::env::current_dir().unwrap();
        let want = cwd.join("rel").as_os_str().as_encoded_bytes()[1..].to_vec();
        assert_eq!(abs_root(Path::new("./rel"), b"", true), want);
    }

    /// A job still going at its time limit ends there: the link closes, the
    /// job winds down, the run fails with `TimeLimit`; one done in time is
    /// its own result, and no limit leaves it alone.
    #[tokio::test]
    async fn until_stops_a_job_at_its_time() {
        use std::time::{Duration, SystemTime};
        let pair = || Link::pair(Arc::new(Services::new()), Arc::new(Services::new()));
        let stop = |at: Option<SystemTime>| SyncOptions {
            stop_at: at,
            ..SyncOptions::default()
        };
        let (a, _b) = pair().await.unwrap();
        let began = std::time::Instant::now();
        let at = SystemTime::now() + Duration::from_millis(300);
        let opts = stop(Some(at));
        let stuck = until(&opts, &a, async {
            a.closed().await;
            Ok(())
        });
        assert!(matches!(stuck.await, Err(Error::TimeLimit)));
        assert!(a.is_closed() && began.elapsed() < Duration::from_secs(5));
        let (a, _b) = pair().await.unwrap();
        let later = SystemTime::now() + Duration::from_secs(60);
        assert!(matches!(
            until(&stop(Some(later)), &a, async { Ok(7) }).await,
            Ok(7)
        ));
        assert!(!a.is_closed());
        let past = SystemTime::now() - Duration::from_secs(1);
        assert!(matches!(
            until(&stop(None), &a, async { Ok(8) }).await,
            Ok(8)
        ));
        let winds_down = async {
            a.closed().await;
            Ok(())
        };
        assert!(matches!(
            until(&stop(Some(past)), &a, winds_down).await,
            Err(Error::TimeLimit)
        ));
        // An interrupt ends it the same way, as Interrupted.
        let (a, _b) = pair().await.unwrap();
        let token = tokio_util::sync::CancellationToken::new();
        let opts = SyncOptions {
            interrupt: Some(token.clone()),
            ..stop(Some(later))
        };
        let cancel = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            token.cancel();
        };
        let (stuck, ()) = tokio::join!(
            until(&opts, &a, async {
                a.closed().await;
                Ok(())
            }),
            cancel
        );
        assert!(matches!(stuck, Err(Error::Interrupted)));
        assert!(a.is_closed());
    }

    #[test]
    fn service_arguments_carry_each_yes_no_option_either_way() {
        for name in FLAG_NAMES {
            for on in [false, true] {
                let mut opts = SyncOptions::default();
                assert!(parse_flag(&mut opts, name, on), "{name}");
                let back = Args::parse(&Args::encode("p", &opts)).unwrap().opts;
                let mut line = Vec::new();
                encode_flags(&back, &mut line);
                assert!(
                    line.contains(&format!("{name}={}", u8::from(on))),
                    "{name}={on}"
                );
            }
        }
        assert!(!parse_flag(
            &mut SyncOptions::default(),
            "no_such_option",
            true
        ));
    }

    #[test]
    fn service_arguments_carry_every_option_to_the_other_side() {
        let opts = SyncOptions {
            checksum: true,
            parallel: 3,
            delete: true,
            dry_run: true,
            itemize: true,
            itemize_unchanged: true,
            delete_excluded: true,
            xattrs: true,
            acls: true,
            hard_links: false,
            numeric_ids: true,
            fsync: true,
            bwlimit: 123_456,
            one_file_system: 2,
            copy_links: true,
            copy_dirlinks: true,
            copy_unsafe_links: true,
            open_noatime: true,
            preallocate: true,
            keep_dirlinks: true,
            delete_missing_args: true,
            dirs_only: true,
            fuzzy: true,
            fuzzy_alts: true,
            delay_updates: true,
            partial_dir: Some(".rsync-partial".into()),
            temp_dir: Some("../tmp dir".into()),
            ignore_missing_args: true,
            chmod: Chmod::parse("Dg+s,Fo-w").unwrap(),
            chown: Some(Chown::parse("1:2").unwrap()),
            safe_links: true,
            size_only: true,
            update: true,
            ignore_existing: true,
            existing: true,
            max_size: Some(10),
            min_size: Some(2),
            max_delete: Some(0),
            owner: false,
            executability: true,
            times: false,
            modify_window: 2,
            backup: Some(Backup::new(Some("../old".into()), Some(".1".into())).unwrap()),
            whole_file: true,
            omit_dir_times: true,
            omit_link_times: true,
            delete_before: true,
            ignore_errors: true,
            sparse: true,
            prune_empty_dirs: true,
            out_format: Some(OutFormat::parse("%o %n %'l").unwrap()),
            log_format: Some(OutFormat::parse("%i|%f").unwrap()),
            usermap: Some(IdMap::parse("0-9:1,*:2").unwrap()),
            groupmap: Some(IdMap::parse("root:3").unwrap()),
            compress_level: -5,
            skip_compress: SkipCompress::parse("mp[34]/txt").unwrap(),
            ..SyncOptions::default()
        };
        let a = Args::parse(&Args::encode("dst/x", &opts)).unwrap();
        assert_eq!(a.path, "dst/x");
        assert!(
            a.opts.checksum
                && a.opts.delete
                && a.opts.dry_run
                && a.opts.itemize
                && a.opts.delete_excluded
        );
        assert!(a.opts.xattrs && !a.opts.hard_links && a.opts.numeric_ids && a.opts.fsync);
        assert_eq!(a.opts.parallel, 3);
        assert_eq!(a.opts.bwlimit, 123_456);
        let g = a.give_options(Arc::new(NoProgress));
        assert!(g.one_file_system == 2 && g.copy_links && g.copy_dirlinks && g.dirs_only);
        assert!(g.copy_unsafe_links && g.open_noatime);
        assert!(g.ignore_missing && g.delete_missing);
        assert_eq!(g.compress_level, -5);
        assert!(g.skip_compress.skips(b"a/b.MP3") && !g.skip_compress.skips(b"a.gz"));
        // An empty list travels as one (every file compressed).
        let all = SyncOptions {
            skip_compress: SkipCompress::parse("").unwrap(),
            ..SyncOptions::default()
        };
        let all = Args::parse(&Args::encode("", &all)).unwrap().opts;
        assert!(!all.skip_compress.skips(b"a.gz"));
        // -0 travels with the rules (the other side's dir-merge files).
        assert!(!all.filter.nul_lines());
        let mut nul = SyncOptions::default();
        nul.filter.add_rule(": .rules").unwrap();
        nul.filter.set_nul_lines(true);
        let nul = Args::parse(&Args::encode("", &nul)).unwrap().opts.filter;
        assert!(nul.nul_lines() && nul.has_dir_merge());
        let kept = |k: &fsroot::Kept| (k.xattrs, k.acls, k.names.is_some());
        assert_eq!(kept(&g.kept), (true, true, false));
        assert_eq!(g.chmod.to_string(), "Dg+s,Fo-w");
        assert_eq!(g.chmod.apply(0o755, true), 0o2755);
        assert!(a.give_options(Arc::new(NoProgress)).throttle.is_some());
        assert!(Args::parse(&Args::encode("", &SyncOptions::default()))
            .unwrap()
            .give_options(Arc::new(NoProgress))
            .throttle
            .is_none());
        let t = a.take_options(Arc::new(NoProgress), true);
        assert!(t.fsync && t.checksum && t.delete && t.numeric_ids && t.one_file_system);
        assert_eq!(t.chown.map(|c| c.to_string()).as_deref(), Some("1:2"));
        assert!(t.safe_links && t.fuzzy && t.fuzzy_alts && t.delay_updates && t.keep_dirlinks);
        assert!(t.delete_missing);
        assert_eq!(t.partial_dir.as_deref(), Some(".rsync-partial"));
        assert_eq!(t.temp_dir.as_deref(), Some("../tmp dir"));
        let mut bad = Args::encode("", &SyncOptions::default());
        bad.push("partial_dir=../x".into());
        assert!(Args::parse(&bad).is_err());
        let acls = SyncOptions {
            acls: true,
            perms: false,
            ..SyncOptions::default()
        };
        assert!(
            Args::parse(&Args::encode("", &acls)).is_err(),
            "-A --no-perms"
        );
        assert_eq!(kept(&t.kept), (true, true, false));
        assert_eq!(t.backup, opts.backup);
        assert_eq!(t.max_delete, Some(0));
        assert!(!t.owner && t.group);
        assert!(t.perms && t.executability && !t.times);
        let np = SyncOptions {
            perms: false,
            ..SyncOptions::default()
        };
        let np = Args::parse(&Args::encode("", &np)).unwrap();
        assert!(!np.take_options(Arc::new(NoProgress), true).perms);
        assert!(t.itemize && t.itemize_unchanged && t.open_noatime && t.preallocate);
        assert_eq!((t.modify_window, t.skips.window), (2, 2));
        assert!(t.side_dirs_confined);
        assert!(t.whole_file && t.omit_dir_times && t.omit_link_times);
        assert!(t.delete_before && t.ignore_errors && t.sparse && t.prune_empty_dirs);
        assert_eq!(
            t.out_format.map(|f| f.to_string()).as_deref(),
            Some("%o %n %'l")
        );
        assert_eq!(
            t.log_format.map(|f| f.to_string()).as_deref(),
            Some("%i|%f")
        );
        assert_eq!(
            t.usermap.map(|m| m.to_string()).as_deref(),
            Some("0-9:1,*:2")
        );
        assert_eq!(t.groupmap.map(|m| m.to_string()).as_deref(), Some("root:3"));
        let plain = Args::parse(&Args::encode("", &SyncOptions::default())).unwrap();
        let p = plain.take_options(Arc::new(NoProgress), false);
        assert!(!(p.whole_file || p.omit_dir_times || p.omit_link_times));
        assert!(p.perms && !p.executability && p.times && !p.itemize_unchanged);
        assert!(!(p.delete_before || p.ignore_errors || p.sparse || p.prune_empty_dirs));
        let beside = SyncOptions {
            backup: Some(Backup::new(None, None).unwrap()),
            ..SyncOptions::default()
        };
        let b = Args::parse(&Args::encode("", &beside)).unwrap().opts.backup;
        assert_eq!(b, beside.backup);
        assert!(
            !Args::parse(&Args::encode("", &beside))
                .unwrap()
                .take_options(Arc::new(NoProgress), false)
                .side_dirs_confined
        );
        let k = &t.skips;
        assert!(t.size_only && k.update && k.ignore_existing && k.existing);
        assert_eq!((k.max_size, k.min_size), (Some(10), Some(2)));
        let d = Args::parse(&Args::encode("", &SyncOptions::default())).unwrap();
        assert!(!d.opts.fsync && d.opts.hard_links && !d.opts.delete);
        assert_eq!((d.opts.one_file_system, d.opts.copy_links), (0, false));
        assert!(!d.opts.xattrs && !d.opts.acls && !d.opts.copy_dirlinks && !d.opts.dirs_only);
        assert!(d.opts.chmod.is_empty() && d.opts.chown.is_none() && !d.opts.safe_links);
        assert!(d.opts.backup.is_none() && d.opts.alt_dest.is_none());
        let linked = SyncOptions {
            alt_dest: Some(AltDest {
                how: AltHow::Link,
                dirs: vec!["../a".into(), "/b".into()],
            }),
            ..SyncOptions::default()
        };
        let a = Args::parse(&Args::encode("", &linked)).unwrap();
        assert_eq!(a.opts.alt_dest, linked.alt_dest);
        assert_eq!(
            a.take_options(Arc::new(NoProgress), true).alt_dest,
            linked.alt_dest
        );
        let mixed = ["p".into(), "link-dest=a".into(), "copy-dest=b".into()];
        assert!(Args::parse(&mixed).is_err());
        let checksum = ["p".into(), "checksum=1".into(), "link-dest=a".into()];
        assert!(Args::parse(&checksum).is_ok_and(|a| a.opts.checksum && a.opts.alt_dest.is_some()));
        // A selection goes to the sender in arguments of bounded size.
        let long = vec![b'x'; 1000];
        let listed = SyncOptions {
            only: Some(
                (0..40)
                    .flat_map(|_| [Vec::new(), b"a/b".to_vec(), long.clone(), long.clone()])
                    .collect(),
            ),
            recurse_listed: true,
            ..SyncOptions::default()
        };
        let args = Args::encode_give("src", &listed).unwrap();
        assert!(args.iter().all(|a| a.len() <= proto::MAX_ARG));
        assert!(args.iter().filter(|a| a.starts_with("only=")).count() > 1);
        let a = Args::parse(&args).unwrap();
        assert_eq!(a.opts.only, listed.only);
        assert!(a.opts.recurse_listed && a.give_options(Arc::new(NoProgress)).recurse_listed);
        assert!(!Args::encode("src", &listed)
            .iter()
            .any(|a| a.starts_with("only=")));
        let newline = SyncOptions {
            only: Some(vec![b"a\nb".to_vec()]),
            ..SyncOptions::default()
        };
        assert!(Args::encode_give("", &newline).is_err());
        let t = d.take_options(Arc::new(NoProgress), true);
        let k = &t.skips;
        assert!(!t.size_only && !k.update && !k.ignore_existing && !k.existing);
        assert_eq!((k.max_size, k.min_size), (None, None));
        // Options from a newer client are ignored, malformed ones refused.
        assert!(Args::parse(&["p".into(), "future=1".into()]).is_ok());
        assert!(Args::parse(&["p".into(), "nonsense".into()]).is_err());
    }

    #[test]
    fn unsafe_symlinks_are_absolute_or_climb_above_the_top() {
        for (link, target, unsafe_) in [
            (&b"l"[..], &b"x"[..], false),
            (b"l", b"./x", false),
            (b"l", b"../x", true),
            (b"d/l", b"../x", false),
            (b"d/l", b"../../x", true),
            (b"d/l", b"a/../../x", false),
            (b"d/l", b"a/../../../x", true),
            (b"d/l", b"../d/../x", false),
            (b"d/e/l", b"../../x", false),
            (b"l", b"/etc/passwd", true),
            (b"l", b"", true),
            (b"d/l", b"..", false),
            (b"d/l", b"../..", true),
        ] {
            assert_eq!(
                unsafe_symlink(link, target),
                unsafe_,
                "{} -> {}",
                String::from_utf8_lossy(link),
                String::from_utf8_lossy(target)
            );
        }
    }
}
