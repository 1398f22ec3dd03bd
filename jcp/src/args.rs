//! jcp's command line in two steps, as ripgrep does: clap parses it into plain
//! values ([`Cli`]), then [`Cli::resolve`] checks how they fit together and turns
//! them into a [`Plan`] of what to do, with nothing left to interpret.

use std::path::PathBuf;
use std::time::SystemTime;

use clap::{ArgAction, Parser, ValueEnum};
use jsync::tls::TlsOptions;
use jsync::Transport;

use crate::deadline;
use crate::endpoint::{self, Endpoint, Remote};
use crate::exit::{self, UsageError};

/// The port jsrv listens on by default.
pub const DEFAULT_PORT: u16 = 7433;

/// The command line as typed.
#[derive(Debug, Parser)]
#[command(
    name = "jcp",
    version,
    about = "Copy files to, from or between directories with jsync (delta transfers)",
    long_about = "Copy files to, from or between directories with jsync.\n\n\
        Only what changed moves: files are cut into content-defined chunks and the \
        receiver reuses the chunks it already has. An operand is remote when it has a \
        ':' before any '/' (HOST:PATH, HOST: for the server's root, [IPv6]:PATH), \
        local otherwise. At most one operand may be remote; with none, jcp copies \
        locally without a daemon. As with rsync, SRC/ (trailing slash) copies the \
        contents of SRC (so do SRC/. and .), SRC without it copies the directory itself; \
        a DST with a trailing slash, or any DST of several SRCs, is a directory.",
    after_help = exit::HELP,
    override_usage = "jcp [OPTIONS] SRC... DST\n       jcp --keygen [--config-dir DIR]",
    // -h is rsync's --human-readable; help is --help (or -h alone, as in rsync).
    disable_help_flag = true,
    // A flag given twice (a script's options, then the same again) is
    // taken once, as in rsync; counted flags (-v, -i, -x, ...) still count.
    args_override_self = true,
)]
pub struct Cli {
    /// What to copy, then where: local paths or HOST:PATHs on one server,
    /// then a local path or HOST:PATH (several SRCs go into DST as a
    /// directory, as with scp and rsync)
    #[arg(value_name = "SRC... DST", required_unless_present = "keygen", num_args = 1..)]
    pub operands: Vec<std::ffi::OsString>,

    /// Make this machine's own client key (client.key in --config-dir; one
    /// already there is kept) and print its public key line, for the
    /// server's admin to sign with `jsrv sign`: as with ssh, the private
    /// key never leaves this machine
    #[arg(long, conflicts_with = "operands")]
    pub keygen: bool,

    /// Port of the jsrv daemon (long form only: -p is --perms, as in rsync)
    #[arg(long, value_name = "PORT", default_value_t = DEFAULT_PORT)]
    pub port: u16,

    /// Fail when the server has been silent for SECONDS (it is asked for a
    /// sign of life every quarter of that): rsync's I/O timeout. 0: never
    /// [default: 20]
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,

    /// Stop copying after MINS minutes, as rsync's (a fraction too: 0.5 is
    /// 30 s): the connection is closed, each file in flight is left as its
    /// partial file for the next run to take up (none torn), and jcp exits
    /// with 30
    #[arg(
        long,
        value_name = "MINS",
        visible_alias = "time-limit",
        conflicts_with = "stop_at"
    )]
    pub stop_after: Option<String>,

    /// Stop copying at WHEN, in local time, as --stop-after does:
    /// [[[YY]YY-]MM-]DD[Thh:mm] (or with /), hh:mm or :mm; a part left out
    /// is the next that fits (14:00 the next 2 p.m., 1-30 the next January
    /// 30th at midnight, :30 the next half hour)
    #[arg(long, value_name = "WHEN")]
    pub stop_at: Option<String>,

    /// Give up connecting (and the handshake) after SECONDS [default: 10]
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub contimeout: Option<u64>,

    /// Connect over QUIC instead of TLS over TCP
    #[arg(long, conflicts_with = "insecure_plaintext")]
    pub quic: bool,

    /// Connect to the server's IPv4 addresses only (rsync's and ssh's -4)
    #[arg(short = '4', long, conflicts_with = "ipv6")]
    pub ipv4: bool,

    /// Connect to the server's IPv6 addresses only (rsync's and ssh's -6)
    #[arg(short = '6', long)]
    pub ipv6: bool,

    /// Connect from this local IP address (rsync's --address, ssh's -b),
    /// and so to the server's addresses of its kind only
    #[arg(long, value_name = "ADDR")]
    pub address: Option<std::net::IpAddr>,

    /// Where the client keys and known_server_keys live
    /// [default: $JSYNC_CONFIG_DIR, else ~/.config/jsync]
    #[arg(long, value_name = "DIR")]
    pub config_dir: Option<PathBuf>,

    /// No encryption, no authentication (the server must run with it too)
    #[arg(long)]
    pub insecure_plaintext: bool,

    /// Offer only the ChaCha20-Poly1305 cipher (faster without AES instructions)
    #[arg(long, conflicts_with = "insecure_plaintext")]
    pub chacha: bool,

    /// Compare the content of every file, not size and modification time
    #[arg(short, long)]
    pub checksum: bool,

    /// Do not take a file of the same size and time as up to date: as -c,
    /// its content is compared (only what differs moves)
    #[arg(short = 'I', long)]
    pub ignore_times: bool,

    /// Count modification times at most NUM seconds apart as the same, as
    /// rsync's --modify-window (1 for FAT's two-second times); 0, the
    /// default: to the nanosecond
    #[arg(short = '@', long, value_name = "NUM")]
    pub modify_window: Option<u64>,

    /// Take files of the same size as up to date, whatever their modification
    /// times (which are still brought over, with the mode). As in rsync, -c
    /// outranks it, and it outranks -I
    #[arg(long)]
    pub size_only: bool,

    /// Skip files that are newer in the destination than in the source
    #[arg(short = 'u', long)]
    pub update: bool,

    /// Skip whatever already exists in the destination (existing directories
    /// are still entered)
    #[arg(long)]
    pub ignore_existing: bool,

    /// Create nothing new in the destination, only update what is there (a
    /// new directory is skipped with everything in it)
    #[arg(long, alias = "ignore-non-existing")]
    pub existing: bool,

    /// Leave alone files larger than SIZE (bytes, or with a suffix K, M, G:
    /// units of 1024; KB, MB, GB: of 1000); they are still listed, so
    /// --delete keeps them
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_size: Option<u64>,

    /// Leave alone files smaller than SIZE (as --max-size)
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub min_size: Option<u64>,

    /// Lanes: connections' worth of pipelined file requests in flight at once
    #[arg(short = 'j', long, value_name = "N", default_value_t = 8,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallel: u16,

    /// Compression on the wire: auto (the default) compresses new data in
    /// deltas (zstd) but sends whole new files as they are; zstd or lz4
    /// compress everything (rsync's --compress-choice, --zc)
    #[arg(long, value_name = "ALG", value_enum, aliases = ["compress-choice", "zc"], overrides_with = "no_compress")]
    pub compress: Option<Compress>,

    /// zstd's level for what this run sends compressed (default 1; up to
    /// 22, smaller on the wire and slower; negative: faster), as rsync's
    /// --compress-level; implies -z unless --compress says otherwise
    #[arg(
        long,
        value_name = "NUM",
        alias = "zl",
        allow_negative_numbers = true,
        overrides_with = "no_compress"
    )]
    pub compress_level: Option<i32>,

    /// Send files with these suffixes uncompressed (already compressed
    /// formats), as rsync's --skip-compress: `gz/jpg/mp[34]`, case-blind;
    /// empty to compress every file (default: rsync's list of compressed
    /// formats)
    #[arg(long, value_name = "LIST")]
    pub skip_compress: Option<String>,

    /// Limit the file data sent to RATE a second: KiB by default, or with a
    /// unit as for --max-size (0 for no limit), as rsync's --bwlimit
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub bwlimit: Option<u64>,

    /// Compress everything with zstd (same as --compress zstd; with
    /// --compress, as rsync's -z with --zc, that says how)
    #[arg(short = 'z', overrides_with = "no_compress")]
    pub z: bool,

    /// Take back -z, --compress and --compress-level given before it, as
    /// rsync's --no-z: jcp's default (a delta's new data compressed)
    #[arg(long, visible_alias = "no-z", overrides_with_all = ["z", "compress", "compress_level"])]
    pub no_compress: bool,

    /// Delete files in the destination that are not in the source (after the
    /// transfer, so --delete-after and --delete-delay say the same)
    #[arg(long)]
    pub delete: bool,

    /// --delete (rsync's --delete-after)
    #[arg(long, hide = true)]
    pub delete_after: bool,

    /// --delete (rsync's --delete-delay; with --delete-during, as in rsync,
    /// the last one given counts)
    #[arg(long, hide = true, overrides_with = "delete_during")]
    pub delete_delay: bool,

    /// Delete as --delete, but before the transfer, once the whole file list
    /// has arrived (what is deleted frees its space first; no file is
    /// requested before). --delete-during and --del say the same: jcp does
    /// not delete directory by directory
    #[arg(long)]
    pub delete_before: bool,

    /// --delete-before (rsync's --delete-during)
    #[arg(
        long,
        visible_alias = "del",
        hide = true,
        overrides_with = "delete_delay"
    )]
    pub delete_during: bool,

    /// Delete even when the sender could not read everything (rsync's
    /// --ignore-errors); otherwise nothing is deleted then. Nothing is ever
    /// deleted in a directory the sender could not read, nor anywhere when
    /// it could not read the top. Without a delete option it does nothing,
    /// as in rsync
    #[arg(long)]
    pub ignore_errors: bool,

    /// Send changed files whole, without the delta algorithm (rsync's -W:
    /// the receiver does not read its old copy; best where the network is
    /// faster than the disks). A partial file an interrupted run left is
    /// still resumed
    #[arg(short = 'W', long, overrides_with = "no_whole_file")]
    pub whole_file: bool,

    /// Use the delta algorithm (the default)
    #[arg(long, visible_alias = "no-W")]
    pub no_whole_file: bool,

    /// Make no directory that would stay empty (of all but directories), as
    /// rsync's -m: with --include '*/' --include '*.jpg' --exclude '*',
    /// only the directories that hold a .jpg somewhere below
    #[arg(short = 'm', long)]
    pub prune_empty_dirs: bool,

    /// Give the receiving side's owners in place of the sender's, as rsync's
    /// --usermap: FROM:TO pairs, comma-separated, the first match wins; FROM
    /// a sender's name or wildcard (* also takes owners without a name), id,
    /// or LOW-HIGH range (with --numeric-ids only ids, ranges and *); TO a
    /// name or id on the receiving side, which sets owners only as root and
    /// not with --no-owner
    #[arg(long, value_name = "FROM:TO,...", conflicts_with = "chown")]
    pub usermap: Option<String>,

    /// As --usermap, for groups (rsync's --groupmap)
    #[arg(long, value_name = "FROM:TO,...", conflicts_with = "chown")]
    pub groupmap: Option<String>,

    /// Leave directories' modification times alone (rsync's -O, for
    /// filesystems that cannot keep them, as NFS shares may)
    #[arg(short = 'O', long)]
    pub omit_dir_times: bool,

    /// Leave symlinks' modification times alone (rsync's -J)
    #[arg(short = 'J', long)]
    pub omit_link_times: bool,

    /// Leave each aligned 4 KiB block of zeros a hole in the files received,
    /// as rsync's -S (without it, a source file's own holes are kept in
    /// files over 256 KiB)
    #[arg(short = 'S', long)]
    pub sparse: bool,

    /// Replace a non-empty directory with a non-directory (and let
    /// --delete-missing-args delete one), as rsync's --force: without it or
    /// --delete, such a directory stays and that entry fails
    #[arg(long)]
    pub force: bool,

    /// Print a line per changed entry in FORMAT instead (rsync's
    /// --out-format): %n path, %f path without a directory's /, %L
    /// ' -> target' or ' => first name', %i itemized code, %o send, recv or
    /// del., %l size, %M mtime (UTC), %B permissions, %U/%G owner/group ids,
    /// %t now (UTC), %%; a width as %-10n or %10l, %'l for 1,234. Without %i
    /// only what is received, made or deleted and directories whose
    /// attributes change; without %o or %i a deletion is `deleting NAME`
    #[arg(long, value_name = "FORMAT", visible_alias = "log-format")]
    pub out_format: Option<String>,

    /// Append what the run does to FILE, as rsync's --log-file: a line for
    /// the start (the command), one per change (itemized, or in the
    /// --log-file-format), each error and warning, and the totals, each after
    /// a UTC time and jcp's process id. FILE is opened before anything is
    /// copied
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,

    /// The --log-file's line per change, in --out-format's escapes
    /// (default '%i %n%L'; without %i as --out-format's; '' none). Without
    /// --log-file it does nothing, as in rsync
    #[arg(long, value_name = "FORMAT")]
    pub log_file_format: Option<String>,

    /// Change nothing; list what would change (in --itemize-changes form)
    #[arg(short = 'n', long)]
    pub dry_run: bool,

    /// Print one line per changed entry saying what changed (rsync's
    /// format); twice (-ii), unchanged entries too
    #[arg(short = 'i', long, action = ArgAction::Count)]
    pub itemize_changes: u8,

    /// Leave out paths matching PATTERN (rsync rules: the first matching
    /// --include/--exclude wins; see --help)
    #[arg(long, value_name = "PATTERN", action = ArgAction::Append)]
    pub exclude: Vec<String>,

    /// Keep paths matching PATTERN even if a later --exclude matches them
    #[arg(long, value_name = "PATTERN", action = ArgAction::Append)]
    pub include: Vec<String>,

    /// Read exclude patterns from FILE (one per line; '#' comments; '+ ' and
    /// '- ' prefixes make a line an include or an exclude)
    #[arg(long, value_name = "FILE", action = ArgAction::Append)]
    pub exclude_from: Vec<PathBuf>,

    /// Read include patterns from FILE (same format as --exclude-from)
    #[arg(long, value_name = "FILE", action = ArgAction::Append)]
    pub include_from: Vec<PathBuf>,

    /// Add a filter rule, as rsync's --filter: '- PATTERN', '+ PATTERN',
    /// 'hide'/'show' (sender only), 'protect'/'risk' (receiver only), '!'
    /// (clear), 'merge FILE' ('. FILE'), 'dir-merge NAME' (': NAME'), with
    /// rsync's modifiers ('-!', '+s', ':n-', ...); in order with --include and
    /// --exclude
    #[arg(
        short = 'f',
        long,
        value_name = "RULE",
        action = ArgAction::Append,
        allow_hyphen_values = true
    )]
    pub filter: Vec<String>,

    /// Read filter rules from each directory's .rsync-filter file ('dir-merge
    /// /.rsync-filter'), as rsync's -F; twice (-FF), also leave those files out
    #[arg(
        short = 'F',
        action = ArgAction::Append,
        num_args = 0,
        default_missing_value = "true",
        value_parser = clap::value_parser!(bool)
    )]
    pub filter_files: Vec<bool>,

    /// Leave out what CVS would (rsync's -C): its default list (*.o, *~,
    /// .git/, ...), $HOME/.cvsignore, $CVSIGNORE and each directory's
    /// .cvsignore, after every other rule
    #[arg(short = 'C', long)]
    pub cvs_exclude: bool,

    /// With --delete (or --delete-missing-args), delete at most NUM
    /// entries; the rest are skipped, a warning says how many, and jcp
    /// exits with 25 (rsync's --max-delete; 0: only warn about what would
    /// be deleted). It holds what making way for a file deletes too: a
    /// directory holding more than is left stays, and that entry fails
    /// (rsync's "could not make way")
    #[arg(long, value_name = "NUM")]
    pub max_delete: Option<u64>,

    /// Make the destination's missing parent directories: what jcp always
    /// does (accepted for rsync habits)
    #[arg(long)]
    pub mkpath: bool,

    /// Also delete excluded files in the destination (implies --delete,
    /// as rsync's)
    #[arg(long)]
    pub delete_excluded: bool,

    /// Do not cross filesystem boundaries: a directory on another filesystem
    /// is copied empty (twice: left out), and --delete enters none on the
    /// destination's side
    #[arg(short = 'x', long, action = ArgAction::Count)]
    pub one_file_system: u8,

    /// Change the permissions the destination gets, as rsync's --chmod:
    /// comma-separated chmod items (u+rw, go-w, a=rX), each optionally only
    /// for directories (D...) or files (F...), or octal (D755,F644)
    #[arg(long, value_name = "CHMOD")]
    pub chmod: Vec<String>,

    /// Give every entry this owner and group on the receiving side (which
    /// must run as root), as rsync's --chown: USER, USER:GROUP or :GROUP,
    /// names (looked up there) or numbers
    #[arg(long, value_name = "USER:GROUP")]
    pub chown: Option<String>,

    /// Keep what the destination had before it is replaced or deleted, as
    /// rsync's -b: beside it as NAME~ (--delete leaves those alone), or in
    /// --backup-dir
    #[arg(short = 'b', long)]
    pub backup: bool,

    /// With -b (implied), keep replaced and deleted entries in DIR, at the
    /// same path as in the destination directory (a relative DIR is taken
    /// from there; on a server DIR must lie beneath its root, and an
    /// absolute DIR is taken from the root). DIR must be on the
    /// destination's filesystem
    #[arg(long, value_name = "DIR")]
    pub backup_dir: Option<String>,

    /// Look in DIR for each file the destination lacks, as rsync's
    /// --compare-dest: one of the same size and time (with -c, the same
    /// content) there is left out of
    /// the destination, any other is the basis of its delta. DIR mirrors the
    /// destination directory (a relative DIR is taken from there); may be
    /// given up to 20 times
    #[arg(long, value_name = "DIR", conflicts_with_all = ["copy_dest", "link_dest"])]
    pub compare_dest: Vec<String>,

    /// As --compare-dest, but a file found the same is copied into the
    /// destination from DIR (no data crosses the wire)
    #[arg(long, value_name = "DIR", conflicts_with = "link_dest")]
    pub copy_dest: Vec<String>,

    /// As --copy-dest, but a file found the same (mode and owner too) is
    /// hard-linked from DIR: rsync's snapshot backups (DIR must be on the
    /// destination's filesystem to link; otherwise it is copied)
    #[arg(long, value_name = "DIR")]
    pub link_dest: Vec<String>,

    /// Remove from the sending side each file (not directory) the
    /// destination now has, transferred or already up to date, as rsync's
    /// --remove-source-files: a move. A file changed since it was sent
    /// stays (named in an error); a server asked for it must not be
    /// read-only
    #[arg(long, conflicts_with_all = ["copy_links", "copy_dirlinks", "copy_unsafe_links"])]
    pub remove_source_files: bool,

    /// Suffix for backups (default ~, or none with --backup-dir); without
    /// -b or --backup-dir it does nothing, as in rsync
    #[arg(long, value_name = "SUFFIX")]
    pub suffix: Option<String>,

    /// Copy extended attributes (user.*; trusted.* and security.* as root)
    #[arg(short = 'X', long)]
    pub xattrs: bool,

    /// Copy POSIX ACLs (access ACLs, and directories' default ACLs), as
    /// rsync's -A: named users and groups are mapped by name, as owners are
    /// (by number with --numeric-ids)
    #[arg(short = 'A', long)]
    pub acls: bool,

    /// Archive mode, rsync's -a (-rlptgoD): what jcp always does (accepted
    /// for rsync habits)
    #[arg(short = 'a', long)]
    pub archive: bool,

    /// Recurse into directories: what jcp always does (accepted for rsync
    /// habits); with --files-from, go into the directories listed
    #[arg(short = 'r', long)]
    pub recursive: bool,

    /// Copy directories without recursing, as rsync's -d (unless -r or -a
    /// is given too): a directory named with a trailing slash (or `.`)
    /// sends what it holds, and the directories in it arrive empty (what the
    /// destination has in them is left alone, by --delete too); one named
    /// without arrives empty itself
    #[arg(short = 'd', long)]
    pub dirs: bool,

    /// For a file the destination lacks, start from a similar file beside
    /// it, as rsync's -y: one of the same size and mtime, else the closest
    /// name with the same suffix (report-v1.pdf for report-v2.pdf), so only
    /// what differs crosses. Twice (-yy), as rsync's: also among the files
    /// of the same directory in each --compare-dest, --copy-dest or
    /// --link-dest DIR (a renamed file found in the last snapshot)
    #[arg(short = 'y', long, action = ArgAction::Count)]
    pub fuzzy: u8,

    /// Put every received file in place at the end of the run, together,
    /// as rsync's --delay-updates: until then the destination keeps its old
    /// files (the new ones wait under temp names beside them); a run that
    /// fails keeps them as partial files, so the next run sends nothing again
    #[arg(long)]
    pub delay_updates: bool,

    /// Keep partial files in directory DIR inside each directory, under
    /// their own names, as rsync's --partial-dir (`.rsync-partial` is the
    /// usual name), instead of beside them as .NAME.jsync-partial. DIR is a
    /// name (no `/`), made when needed and removed when empty; as in rsync,
    /// a rule `- DIR/` is added: DIR is not sent, and --delete keeps it
    #[arg(long, value_name = "DIR")]
    pub partial_dir: Option<String>,

    /// Make temp files in DIR instead of beside their files, as rsync's
    /// --temp-dir (a relative DIR is taken from the destination directory;
    /// on a server DIR must lie beneath its root, and an absolute DIR is
    /// taken from the root). DIR must exist, and --delete leaves it alone.
    /// A file on another filesystem than DIR still gets its temp beside it
    /// (with a warning when the destination directory is on another one):
    /// jcp renames new files into place and never copies one over its old
    /// version, as rsync does then
    #[arg(short = 'T', long, value_name = "DIR")]
    pub temp_dir: Option<String>,

    /// Pass over in silence a source, or a path --files-from lists, that
    /// does not exist, as rsync's --ignore-missing-args (other errors still
    /// count); with every source missing there is nothing to do
    #[arg(long)]
    pub ignore_missing_args: bool,

    /// Make each source, and each path --files-from lists, that does not
    /// exist a deletion of what the destination has in its place, as
    /// rsync's --delete-missing-args (as --delete deletes: the receiver's
    /// protect rules, --max-delete, --backup and -n hold; a directory goes
    /// whole). A source naming a directory's contents (gone/) is passed over
    #[arg(long)]
    pub delete_missing_args: bool,

    /// List the sources (like ls -l) instead of copying them, as rsync's
    /// --list-only: of several operands the last is the destination, not
    /// listed (nor used). A source alone lists too. One level unless -r or
    /// -a; times are UTC
    #[arg(long)]
    pub list_only: bool,

    /// Keep each source's path in the destination, as rsync's -R: `jcp -R
    /// src/a/f dst` makes dst/src/a/f (with the directories on the way); a
    /// `/./` in the source marks where the kept path starts
    /// (`/srv/./a/f` makes dst/a/f)
    #[arg(short = 'R', long, overrides_with = "no_relative")]
    pub relative: bool,

    /// Turn -R off, as rsync's --no-R: with --files-from, each listed path
    /// goes into the destination directory by its name alone (a directory
    /// with its contents only with -r)
    #[arg(long, visible_alias = "no-R")]
    pub no_relative: bool,

    /// With -R or --files-from, send the directories on the way to each
    /// path without their attributes, as rsync's: the destination's stay as
    /// they are (a symlink to a directory too, which what lies below goes
    /// through), missing ones are made as mkdir -p makes them
    #[arg(long)]
    pub no_implied_dirs: bool,

    /// Copy only the paths FILE lists (one per line, relative to the
    /// source directory; '-' reads stdin; blank lines and lines starting
    /// with '#' or ';' are skipped), each with the directories on the way,
    /// as rsync's --files-from: -R is implied, and a listed directory's
    /// contents only with -r (not with -a alone)
    #[arg(long, value_name = "FILE")]
    pub files_from: Option<PathBuf>,

    /// Lines of --files-from, --exclude-from, --include-from and of rule
    /// files (merge and dir-merge) end with NUL instead of newline, as
    /// rsync's -0
    #[arg(short = '0', long)]
    pub from0: bool,

    /// Copy symlinks as symlinks: what jcp does unless -L or --no-links
    /// (accepted for rsync habits)
    #[arg(short = 'l', long, overrides_with = "no_links")]
    pub links: bool,

    /// Skip symlinks, as rsync's --no-links (--no-l): none is made, and
    /// what the destination has in the place of one stays as it is (by
    /// --delete too); with -L what they lead to is copied as ever
    #[arg(long, visible_alias = "no-l")]
    pub no_links: bool,

    /// Copy what symlinks lead to instead of the links: from a local source
    /// wherever they lead, from a server's only beneath its root
    #[arg(short = 'L', long)]
    pub copy_links: bool,

    /// Copy a symlink to a directory as the directory, as rsync's -k; other
    /// symlinks stay links. As far as -L follows: from a server's source
    /// only beneath its root (a link leading out stays a link)
    #[arg(short = 'k', long)]
    pub copy_dirlinks: bool,

    /// Read files without moving their access times, as rsync's
    /// --open-noatime (O_NOATIME): the source's files, and the
    /// destination's old ones read for deltas, checks and --copy-dest,
    /// where the reading side may (it owns them, or runs as root)
    #[arg(long)]
    pub open_noatime: bool,

    /// Give what is received the source's access times, as rsync's
    /// --atimes (not directories; without it an entry's access time is set
    /// to its mtime); twice (-UU) also --open-noatime
    #[arg(short = 'U', long, action = ArgAction::Count)]
    pub atimes: u8,

    /// Allocate each file the destination gets to its size before writing
    /// it, as rsync's --preallocate (fallocate): one piece on disk, and a
    /// full disk fails the file at its start; with -S its blocks of zeros
    /// are punched out again
    #[arg(long)]
    pub preallocate: bool,

    /// Copy what a symlink leads to when the link is unsafe (absolute, or
    /// climbing above the transfer's top from where it sits), as rsync's
    /// --copy-unsafe-links; other symlinks stay links. As far as -L
    /// follows: from a server's source only beneath its root (a link
    /// leading out fails, named)
    #[arg(long)]
    pub copy_unsafe_links: bool,

    /// Keep a symlink to a directory in the destination where the source has
    /// a directory, as rsync's -K: what the source's directory holds goes
    /// into the one the link leads to, which must be beneath the directory
    /// the transfer writes into; a link leading out is left as it is, named
    /// in an error, and nothing is sent into it
    #[arg(short = 'K', long)]
    pub keep_dirlinks: bool,

    /// Leave out symlinks that are absolute or lead above the transfer's top
    /// from where they sit (each named in a warning), as rsync's --safe-links
    #[arg(long)]
    pub safe_links: bool,

    /// Keep modification times: what jcp does unless --no-times (accepted
    /// for rsync habits)
    #[arg(short = 't', long, overrides_with = "no_times")]
    pub times: bool,

    /// Do not keep modification times, as rsync's --no-times (--no-t): a
    /// received file keeps the time it was written, and nothing gets the
    /// source's time. Files are still compared by size and time, so one
    /// of another time is checked by hash on every run
    #[arg(long, visible_alias = "no-t")]
    pub no_times: bool,

    /// Keep permissions: what jcp does unless --no-perms (accepted for
    /// rsync habits, as in -rlptgoD)
    #[arg(short = 'p', long, overrides_with = "no_perms")]
    pub perms: bool,

    /// Do not keep permissions, as rsync's --no-perms (--no-p): what the
    /// destination has keeps its permissions (an updated file too), and a
    /// new entry gets the source's less the receiving side's umask, without
    /// setuid, setgid and sticky bits (a new directory still inherits its
    /// parent's setgid). For filesystems without Unix permissions, say.
    /// Not with -A (an access ACL holds the permission bits)
    #[arg(long, visible_alias = "no-p", conflicts_with = "acls")]
    pub no_perms: bool,

    /// Keep executability: with --no-perms, a regular file the destination
    /// has loses its execute bits when the source's has none, and gains
    /// them where it can be read when the source's has one (as rsync's
    /// -E); otherwise jcp keeps every permission bit anyway
    #[arg(short = 'E', long)]
    pub executability: bool,

    /// Keep names from a remote shell's word splitting: what jcp always
    /// does, passing paths to the server as arguments of the service it
    /// starts, never through a shell (accepted for rsync habits)
    #[arg(short = 's', long, visible_alias = "secluded-args")]
    pub protect_args: bool,

    /// Keep owners: what jcp always does where the receiving side runs as
    /// root, unless --no-owner (accepted for rsync habits)
    #[arg(short = 'o', long)]
    pub owner: bool,

    /// Do not keep owners: the receiving side (as root) leaves an existing
    /// entry's owner as it is and owns what it makes, as rsync's --no-o
    /// (for filesystems without owners, say)
    #[arg(long, visible_alias = "no-o", conflicts_with = "owner")]
    pub no_owner: bool,

    /// Keep groups: what jcp always does where the receiving side runs as
    /// root, unless --no-group (accepted for rsync habits)
    #[arg(short = 'g', long)]
    pub group: bool,

    /// Do not keep groups, as --no-owner for groups (rsync's --no-g)
    #[arg(long, visible_alias = "no-g", conflicts_with = "group")]
    pub no_group: bool,

    /// Copy device files: what jcp does unless --no-devices (accepted for
    /// rsync habits; devices are made only by a receiving side that runs
    /// as root). -D is --devices --specials
    #[arg(short = 'D', long, overrides_with_all = ["no_devices", "no_d"])]
    pub devices: bool,

    /// Skip device files, as rsync's --no-devices: none is made, and what
    /// the destination has in the place of one stays as it is (by --delete
    /// too)
    #[arg(long)]
    pub no_devices: bool,

    /// Copy FIFOs: what jcp does unless --no-specials (accepted for rsync
    /// habits; sockets are skipped, as rsync does)
    #[arg(long, overrides_with_all = ["no_specials", "no_d"])]
    pub specials: bool,

    /// Skip FIFOs, as --no-devices does device files (rsync's
    /// --no-specials)
    #[arg(long)]
    pub no_specials: bool,

    /// --no-devices --no-specials (rsync's --no-D)
    #[arg(long = "no-D")]
    pub no_d: bool,

    /// Keep hard links (the default; accepted for rsync habits)
    #[arg(short = 'H', long, overrides_with = "no_hard_links")]
    pub hard_links: bool,

    /// Copy each name of a multiply-linked file as a separate file
    #[arg(long, visible_alias = "no-H")]
    pub no_hard_links: bool,

    /// Set owners by number, not by name (owners are set only when the
    /// receiving side runs as root)
    #[arg(long)]
    pub numeric_ids: bool,

    /// fsync each received file before it replaces the old one (survives a
    /// power cut as old or new; slower on disks)
    #[arg(long)]
    pub fsync: bool,

    /// Print nothing but errors and warnings, as rsync's -q: no progress,
    /// and no -v, -i, --out-format, -n, --stats or --list-only output (it
    /// outranks them; --log-file is still written)
    #[arg(short, long)]
    pub quiet: bool,

    /// List what changes on stdout, as rsync's -v (its --out-format '%n%L':
    /// what is received or made, a directory whose attributes change,
    /// `deleting NAME`), then the bytes sent and received; -vv also lists
    /// what is up to date (`NAME is uptodate`), as rsync's, and jcp's own
    /// info logs on stderr; -vvv debug logs
    #[arg(short, long, action = ArgAction::Count)]
    pub verbose: u8,

    /// Show progress even when stderr is not a terminal
    #[arg(long)]
    pub progress: bool,

    /// Keep a partly received file when the connection breaks, for the next
    /// run to resume from: what jcp always does (accepted for rsync habits)
    #[arg(long)]
    pub partial: bool,

    /// Same as --partial --progress
    #[arg(short = 'P')]
    pub partial_progress: bool,

    /// Print transfer statistics to stdout at the end
    #[arg(long)]
    pub stats: bool,

    /// rsync's --info for what jcp reports: progress (progress2: jcp's
    /// progress is the whole transfer's), stats, name (-v); comma-separated,
    /// 0 after a flag turns it off
    #[arg(long, value_name = "FLAGS")]
    pub info: Vec<String>,

    /// Sizes in --stats in units of 1000 (K, M, G); twice for units of 1024
    #[arg(short = 'h', long, action = ArgAction::Count)]
    pub human_readable: u8,

    /// Print help (-h alone does too, as in rsync)
    #[arg(long, action = ArgAction::Help)]
    pub help: Option<bool>,
}

/// `--compress` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Compress {
    /// zstd for new data in deltas, none for whole new files
    Auto,
    /// Good ratio, fast (zstd level 1)
    Zstd,
    /// Fastest, lower ratio
    Lz4,
    /// Send data as it is
    None,
}

impl From<Compress> for proto::Compression {
    fn from(c: Compress) -> Self {
        match c {
            Compress::Auto | Compress::Zstd => proto::Compression::ZSTD,
            Compress::Lz4 => proto::Compression::LZ4,
            Compress::None => proto::Compression::NONE,
        }
    }
}

/// What to copy where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Direction {
    /// Local to local, in process.
    Local { srcs: Vec<PathBuf>, dst: PathBuf },
    /// Local to a server.
    Push { srcs: Vec<PathBuf>, dst: Remote },
    /// A server to local (every source on the same server).
    Pull { srcs: Vec<Remote>, dst: PathBuf },
    /// List local sources (`--list-only`, or a source alone).
    ListLocal { srcs: Vec<PathBuf> },
    /// List sources on a server.
    ListRemote { srcs: Vec<Remote> },
    /// Make this machine's client key and print its public key line
    /// (`--keygen`).
    Keygen,
}

/// Which paths beneath each source are sent (rsync's `-R` and
/// `--files-from`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// The whole source, placed by its name (without `-R`).
    Whole,
    /// The source's path is kept (`-R`): from `/./`, or all of it.
    Relative,
    /// These paths beneath the source directory (`--files-from`).
    Paths(Vec<Vec<u8>>),
}

impl Selection {
    /// The directory a source's paths are taken beneath, and the paths,
    /// for a source typed as `path` (a local path, or a server's path);
    /// `None` for the whole source. Without `/./` a relative `-R` path is taken
    /// beneath the current directory (a server's root for a pull), an
    /// absolute one beneath `/`.
    pub fn split(&self, path: &[u8]) -> Option<(Vec<u8>, Vec<Vec<u8>>)> {
        match self {
            Selection::Whole => None,
            Selection::Paths(paths) => Some((path.to_vec(), paths.clone())),
            Selection::Relative => {
                let marker = path.windows(3).position(|w| w == b"/./");
                let (root, rest) = match marker {
                    Some(i) => (path[..i].to_vec(), &path[i + 3..]),
                    None if path.starts_with(b"/") => (b"/".to_vec(), path),
                    None => (Vec::new(), path),
                };
                let end = rest.iter().rposition(|&b| b != b'/').map_or(0, |i| i + 1);
                let rest = rest[..end].to_vec();
                Some((root, vec![rest]))
            }
        }
    }
}

/// Reads a `--files-from` list: one path per line (per NUL with
/// `--from0`), blank entries and those starting with `#` or `;` skipped.
fn read_files_from(file: &std::path::Path, from0: bool) -> Result<Vec<Vec<u8>>, UsageError> {
    let data = if file == std::path::Path::new("-") {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut v).map(|_| v)
    } else {
        std::fs::read(file)
    }
    .map_err(|e| {
        let shown = endpoint::shown_path(file);
        // (rsync's `host:FILE` and `:FILE` read the list on the server.)
        let remote = file
            .to_str()
            .and_then(|f| f.split_once(':'))
            .is_some_and(|(host, _)| !host.contains('/'));
        match e.kind() {
            std::io::ErrorKind::NotFound if remote => UsageError(format!(
                "--files-from {shown}: no such file here, and jcp reads no list on a \
                 server (rsync's HOST:FILE form): copy the list here first"
            )),
            _ => UsageError(format!("--files-from {shown}: {e}")),
        }
    })?;
    let sep = if from0 { b'\0' } else { b'\n' };
    Ok(data
        .split(|&b| b == sep)
        .map(|l| {
            if from0 {
                l
            } else {
                l.strip_suffix(b"\r").unwrap_or(l)
            }
        })
        .filter(|l| !l.is_empty() && !l.starts_with(b"#") && !l.starts_with(b";"))
        .map(<[u8]>::to_vec)
        .collect())
}

/// When to draw progress bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShowProgress {
    /// Never (`-q`, or stderr is not a terminal).
    Never,
    /// When stderr is a terminal.
    IfTerminal,
    /// Always (`--progress`).
    Always,
}

/// Everything jcp needs to run, resolved from [`Cli`].
#[derive(Debug, Clone)]
pub struct Plan {
    pub direction: Direction,
    /// `-R` or `--files-from`: what of each source is sent.
    pub selection: Selection,
    /// A listing (`--list-only`) goes into directories (`-r`, `-a`).
    pub list_recursive: bool,
    pub port: u16,
    pub transport: Transport,
    /// `-4`, `-6`: the server's addresses of one kind only.
    pub family: Option<jsync::runtime::AddrFamily>,
    /// `--address`: where connections go out from.
    pub address: Option<std::net::IpAddr>,
    pub config_dir: PathBuf,
    pub plaintext: bool,
    pub tls: TlsOptions,
    /// Timeouts of the connection to a server (`--timeout`, `--contimeout`).
    pub link: jsync::LinkOptions,
    /// What to sync and how, as the library takes it (jcp sets the progress
    /// hooks when it runs).
    pub sync: jsync::sync::SyncOptions,
    pub show_progress: ShowProgress,
    /// 0: quiet, 1: normal, 2: list changes (`-v`), 3: jcp's info logs,
    /// 4+: debug logs.
    pub verbosity: u8,
    pub stats: bool,
    /// rsync's closing lines, bytes sent and received and the speedup
    /// (`-v`, `--stats`).
    pub summary: bool,
    /// `--stats` sizes: 0 in bytes, 1 in units of 1000, 2 of 1024 (`-h`, `-hh`).
    pub human_readable: u8,
    /// Print a line per change on stdout (`-i`, `--out-format`; `-n` too).
    pub print_items: bool,
    /// Append what the run did to this file (`--log-file`).
    pub log_file: Option<PathBuf>,
    /// `--mkpath`: jcp always makes the destination's parents; this only
    /// picks rsync's words for saying so.
    pub mkpath: bool,
}

/// The link's timeouts: `--timeout` the silence after which the server is
/// taken for dead (0: never; pings go out four times in it), `--contimeout`
/// the bound on connecting and on the handshake.
fn link_options(timeout: Option<u64>, contimeout: Option<u64>) -> jsync::LinkOptions {
    use std::time::Duration;
    let mut link = jsync::LinkOptions::default();
    match timeout {
        // "Never", as rsync's 0: a year.
        Some(0) => link.idle_timeout = Duration::from_secs(365 * 86_400),
        Some(secs) => {
            link.idle_timeout = Duration::from_secs(secs);
            link.keepalive = link.keepalive.min(Duration::from_millis(secs * 250));
        }
        None => {}
    }
    if let Some(secs) = contimeout {
        link.connect_timeout = Duration::from_secs(secs);
        link.handshake_timeout = Duration::from_secs(secs);
    }
    link
}

/// `--bwlimit` RATE in bytes a second: a number of KiB, or with a unit as
/// for [`parse_size`] (`B` for bytes), as rsync reads it.
fn parse_rate(s: &str) -> Result<u64, String> {
    let (n, unit) = number_and_unit(s, "a rate (e.g. 500, 500K, 1.5M)")?;
    let scale = if unit.is_empty() {
        1 << 10
    } else {
        unit_scale(s, &unit)?
    };
    scaled(s, n, scale)
}

/// `--max-size`/`--min-size` SIZE in bytes: bytes, or with a suffix K, M, G
/// or T (units of 1024, also written KiB...) or KB, MB, GB, TB (of 1000), as
/// rsync reads it.
fn parse_size(s: &str) -> Result<u64, String> {
    let (n, unit) = number_and_unit(s, "a size (e.g. 500, 100K, 1.5G)")?;
    scaled(s, n, unit_scale(s, &unit)?)
}

/// Bytes in one `unit` (lowercase): `b` or none 1, `k`/`kib` 1024, `kb`
/// 1000, and so on for m, g, t.
fn unit_scale(s: &str, unit: &str) -> Result<u64, String> {
    let (letter, rest) = unit.split_at(unit.len().min(1));
    let power = match letter {
        "" | "b" if rest.is_empty() => return Ok(1),
        "k" => 1,
        "m" => 2,
        "g" => 3,
        "t" => 4,
        _ => return Err(format!("{s:?}: the unit must be B, K, M, G or T")),
    };
    let base: u64 = match rest {
        "" | "ib" => 1024,
        "b" => 1000,
        _ => return Err(format!("{s:?}: the unit must be K, KiB or KB (or M, G, T)")),
    };
    Ok(base.pow(power))
}

/// A decimal number and the lowercase unit after it.
fn number_and_unit(s: &str, what: &str) -> Result<(f64, String), String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n = num.parse().map_err(|_| format!("{s:?} is not {what}"))?;
    Ok((n, unit.to_ascii_lowercase()))
}

/// `n` units of `scale` bytes, rounded.
fn scaled(s: &str, n: f64, scale: u64) -> Result<u64, String> {
    let bytes = (n * scale as f64).round();
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("{s:?} is too large"));
    }
    Ok(bytes as u64)
}

/// Parses `argv` (clap's errors exit as usage errors) and resolves it.
pub fn parse() -> Result<Plan, UsageError> {
    use clap::{CommandFactory, FromArgMatches};
    // `jcp -h` alone is a request for help (as in rsync): -h is otherwise
    // --human-readable.
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    if args.len() == 1 && args[0] == "-h" {
        let _ = Cli::command().print_help();
        std::process::exit(0);
    }
    let argv = std::iter::once("jcp".into()).chain(negations(args));
    let matches = match Cli::command().try_get_matches_from(argv) {
        Ok(m) => m,
        Err(e) => return Err(rsync_only(&e).unwrap_or_else(|| e.exit())),
    };
    keygen_alone(&matches)?;
    let cli = Cli::from_arg_matches(&matches).map_err(|e| e.exit())?;
    let rules = filter_rules(&matches);
    cli.resolve_with(rules)
}

/// rsync's `--no-OPTION` for options jcp has no `--no-` form of its own
/// (those are clap's): the negations, then the ids of the options each
/// takes back (their long names, aliases and letters are clap's). As in
/// rsync, the last word wins: a negation takes back what came before it
/// (`-avz --no-v`: no -v, `-vv` counted as none).
const NEGATIONS: &[(&[&str], &[&str])] = &[
    (&["--no-A", "--no-acls"], &["acls"]),
    (&["--no-X", "--no-xattrs"], &["xattrs"]),
    (&["--no-c", "--no-checksum"], &["checksum"]),
    (&["--no-i", "--no-itemize-changes"], &["itemize_changes"]),
    (&["--no-v", "--no-verbose"], &["verbose"]),
    (&["--no-x", "--no-one-file-system"], &["one_file_system"]),
    (&["--no-m", "--no-prune-empty-dirs"], &["prune_empty_dirs"]),
    (&["--no-S", "--no-sparse"], &["sparse"]),
    (&["--no-y", "--no-fuzzy"], &["fuzzy"]),
    (&["--no-O", "--no-omit-dir-times"], &["omit_dir_times"]),
    (&["--no-J", "--no-omit-link-times"], &["omit_link_times"]),
    (&["--no-U", "--no-atimes"], &["atimes"]),
    (&["--no-h", "--no-human-readable"], &["human_readable"]),
    (
        &["--no-s", "--no-protect-args", "--no-secluded-args"],
        &["protect_args"],
    ),
    (&["--no-d", "--no-dirs"], &["dirs"]),
    (&["--no-numeric-ids"], &["numeric_ids"]),
    // (-P is --partial --progress, and jcp always keeps partial files.)
    (&["--no-progress"], &["progress", "partial_progress"]),
];

/// rsync's `--no-OPTION`s for what jcp never does (its MOTD, `-8`'s
/// output, creation times, writing in place): jcp is as they ask already.
const NO_OPS: &[&str] = &[
    "--no-motd",
    "--no-8",
    "--no-8-bit-output",
    "--no-N",
    "--no-crtimes",
    "--no-inplace",
    "--no-append",
];

/// `args` (after the program's name) with rsync's negations
/// ([`NEGATIONS`], [`NO_OPS`]) applied: each one, and what it takes back
/// before it, left out. Values of options that take one are never read as
/// options; nothing after `--` is touched.
pub fn negations(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    use clap::CommandFactory;
    let cmd = Cli::command();
    let valued: Vec<&clap::Arg> = cmd
        .get_arguments()
        // (Counted or appended flags take no value: -F is one.)
        .filter(|a| {
            a.get_action().takes_values()
                && a.get_num_args().is_none_or(|n| n.takes_values())
                && !a.is_positional()
        })
        .collect();
    let long_valued = |name: &str| {
        valued.iter().any(|a| {
            a.get_long() == Some(name) || a.get_all_aliases().is_some_and(|v| v.contains(&name))
        })
    };
    let short_valued = |c: char| {
        valued.iter().any(|a| {
            a.get_short() == Some(c) || a.get_all_short_aliases().is_some_and(|v| v.contains(&c))
        })
    };
    // The flag letters of a short bundle: those before its first letter
    // that takes a value (the rest of it is that value).
    let flag_letters = |s: &str| -> usize {
        s.char_indices()
            .skip(1)
            .find(|&(_, c)| short_valued(c))
            .map_or(s.len(), |(i, _)| i)
    };
    // (Each kept word, and whether it is an option's value.)
    let mut out: Vec<(std::ffi::OsString, bool)> = Vec::new();
    let mut value_next = false;
    let mut rest = args.into_iter();
    while let Some(arg) = rest.next() {
        let Some(s) = arg.to_str().map(str::to_owned) else {
            out.push((arg, std::mem::take(&mut value_next)));
            continue;
        };
        if std::mem::take(&mut value_next) {
            out.push((arg, true));
            continue;
        }
        if s == "--" {
            out.push((arg, false));
            out.extend(rest.by_ref().map(|a| (a, true)));
            break;
        }
        if NO_OPS.contains(&s.as_str()) {
            continue;
        }
        if let Some((_, ids)) = NEGATIONS.iter().find(|n| n.0.contains(&s.as_str())) {
            // What the negation takes back, as clap knows the options.
            let taken: Vec<&clap::Arg> = cmd
                .get_arguments()
                .filter(|a| ids.contains(&a.get_id().as_str()))
                .collect();
            let longs: Vec<String> = taken
                .iter()
                .flat_map(|a| {
                    a.get_long()
                        .into_iter()
                        .chain(a.get_all_aliases().unwrap_or_default())
                })
                .map(|l| format!("--{l}"))
                .collect();
            let shorts: Vec<char> = taken
                .iter()
                .flat_map(|a| {
                    a.get_short()
                        .into_iter()
                        .chain(a.get_all_short_aliases().unwrap_or_default())
                })
                .collect();
            out.retain_mut(|(word, is_value)| {
                let Some(w) = word.to_str() else { return true };
                if *is_value {
                    return true;
                }
                if longs.iter().any(|l| l == w) {
                    return false;
                }
                match w.strip_prefix('-') {
                    Some(letters) if !letters.is_empty() && !letters.starts_with('-') => {
                        let end = flag_letters(w);
                        let kept: String =
                            w[1..end].chars().filter(|x| !shorts.contains(x)).collect();
                        let new = format!("-{kept}{}", &w[end..]);
                        if new == "-" {
                            return false;
                        }
                        *word = new.into();
                        true
                    }
                    _ => true,
                }
            });
            continue;
        }
        if let Some(name) = s.strip_prefix("--") {
            value_next = !name.contains('=') && long_valued(name);
        } else if s.starts_with('-') && s.len() > 1 {
            let end = flag_letters(&s);
            // (A value-taking letter last in its bundle takes the next word.)
            value_next =
                end < s.len() && end + s[end..].chars().next().map_or(0, char::len_utf8) == s.len();
        }
        out.push((arg, false));
    }
    out.into_iter().map(|(w, _)| w).collect()
}

/// `--keygen` copies nothing, so it takes no option but `--config-dir`
/// (one would be silently dropped: `--keygen -n` would still make the key).
fn keygen_alone(m: &clap::ArgMatches) -> Result<(), UsageError> {
    use clap::{parser::ValueSource, CommandFactory};
    if !m.get_flag("keygen") {
        return Ok(());
    }
    let cmd = Cli::command();
    let given = cmd.get_arguments().find(|a| {
        let id = a.get_id().as_str();
        m.value_source(id) == Some(ValueSource::CommandLine)
            && !["keygen", "config_dir"].contains(&id)
    });
    match given {
        Some(a) => {
            let name = match (a.get_long(), a.get_short()) {
                (Some(long), _) => format!("--{long}"),
                (None, Some(short)) => format!("-{short}"),
                (None, None) => a.get_id().to_string(),
            };
            Err(UsageError(format!(
                "--keygen makes a key and copies nothing: it takes only --config-dir, not {name}"
            )))
        }
        None => Ok(()),
    }
}

/// Why rsync's options that jcp does not take are not taken, by name: the
/// usage error says so rather than clap's guess at a similar option
/// (`--inplace` is not a misspelt `--include`).
const RSYNC_ONLY: &[(&[&str], &str)] = &[
    (
        &["--inplace", "--append", "--append-verify"],
        "jcp writes each file beside its target and renames it into place, so a file is \
         old or new, never torn; writing into the target would give that up",
    ),
    (
        &["--no-partial"],
        "jcp always keeps a partly received file for the next run to resume from (the \
         old file stays whole until the new one replaces it)",
    ),
    (
        &["-e", "--rsh", "--rsync-path", "-M", "--remote-option"],
        "jcp reaches the server's jsrv itself, over TLS or QUIC (--port PORT), not through \
         a remote shell: run jsrv on the server (see the README's quick start)",
    ),
    (
        &["--daemon", "--password-file"],
        "the server is jsrv, which takes clients by their certificates (jsrv --help)",
    ),
    (
        &["-B", "--block-size"],
        "jcp cuts files where their content says (FastCDC), in chunks sized by the \
         file's size: there is no block size to set",
    ),
    (
        &["--checksum-choice", "--cc", "--checksum-seed"],
        "jcp compares content by BLAKE3, always",
    ),
    (
        &["-N", "--crtimes"],
        "creation times cannot be set on Linux",
    ),
    (
        &["--super", "--no-super", "--fake-super", "--copy-as"],
        "owners are set where the receiving side runs as root, and only there",
    ),
    (
        &["-8", "--8-bit-output"],
        "valid UTF-8 is shown as it is already; other bytes as \\#ooo",
    ),
    (&["--remove-sent-files"], "it is --remove-source-files"),
    (
        &[
            "--no-r",
            "--no-recursive",
            "--inc-recursive",
            "--i-r",
            "--no-inc-recursive",
            "--no-i-r",
        ],
        "jcp recurses as -a does, listing as it goes; -d (--dirs) copies directories \
         without going into them",
    ),
    (&["--old-dirs", "--old-d"], "it is -d (--dirs)"),
    (
        &["--copy-devices", "--write-devices"],
        "jcp copies a device file as a device (as root), never what it holds",
    ),
    (
        &["--trust-sender"],
        "the receiver checks every name a sender lists, always",
    ),
    (
        &["--protocol", "--early-input", "--msgs2stderr", "--stderr"],
        "it is about rsync's own protocol and remote shell, which jcp does not use",
    ),
    (
        &[
            "--iconv",
            "--write-batch",
            "--only-write-batch",
            "--read-batch",
            "--munge-links",
            "--max-alloc",
            "--sockopts",
            "--outbuf",
            "--blocking-io",
            "--debug",
            "--old-args",
        ],
        "jcp does not have it",
    ),
];

/// The usage error for an rsync option jcp does not take, when that is
/// what clap stopped at.
fn rsync_only(e: &clap::Error) -> Option<UsageError> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::UnknownArgument {
        return None;
    }
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    let name = arg.split_once('=').map_or(arg.as_str(), |(n, _)| n);
    RSYNC_ONLY
        .iter()
        .find(|(names, _)| names.contains(&name))
        .map(|(_, why)| UsageError(format!("rsync's {name} is not supported: {why}")))
}

/// A filter rule source in command-line order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleArg {
    Include(String),
    Exclude(String),
    IncludeFrom(PathBuf),
    ExcludeFrom(PathBuf),
    /// A `--filter` rule (and each `-F`, as the rule it stands for).
    Filter(String),
}

/// The rule each `-F` stands for: the first, then the second.
const F_RULES: [&str; 2] = ["dir-merge /.rsync-filter", "- .rsync-filter"];

/// The --include/--exclude(-from) options in the order they were given: rsync's
/// first-match-wins rules depend on it.
pub fn filter_rules(m: &clap::ArgMatches) -> Vec<RuleArg> {
    let mut out: Vec<(usize, RuleArg)> = Vec::new();
    let mut take = |id: &str, make: &dyn Fn(String) -> RuleArg| {
        if let (Some(vals), Some(idx)) = (m.get_many::<String>(id), m.indices_of(id)) {
            out.extend(idx.zip(vals.cloned().map(make)));
        }
    };
    take("include", &RuleArg::Include);
    take("exclude", &RuleArg::Exclude);
    take("filter", &RuleArg::Filter);
    if let Some(idx) = m.indices_of("filter_files") {
        let rules = F_RULES.iter().map(|r| RuleArg::Filter(r.to_string()));
        out.extend(idx.zip(rules));
    }
    let mut take_path = |id: &str, make: &dyn Fn(PathBuf) -> RuleArg| {
        if let (Some(vals), Some(idx)) = (m.get_many::<PathBuf>(id), m.indices_of(id)) {
            out.extend(idx.zip(vals.cloned().map(make)));
        }
    };
    take_path("include_from", &RuleArg::IncludeFrom);
    take_path("exclude_from", &RuleArg::ExcludeFrom);
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

/// The filter of `rules` (command-line order), then with `cvs` (`-C`) what
/// CVS ignores, as rsync appends it; `from0` (`-0`): rule files' lines end
/// with NUL.
fn build_filter(
    rules: &[RuleArg],
    cvs: bool,
    from0: bool,
) -> Result<jsync::sync::Filter, UsageError> {
    use jsync::sync::RuleKind;
    let mut f = jsync::sync::Filter::default();
    f.set_nul_lines(from0);
    let bad = |e: jsync::sync::FilterError| UsageError(e.to_string());
    for r in rules {
        match r {
            RuleArg::Include(p) => f.add(RuleKind::Include, p).map_err(bad)?,
            RuleArg::Exclude(p) => f.add(RuleKind::Exclude, p).map_err(bad)?,
            RuleArg::Filter(rule) => f.add_rule(rule).map_err(bad)?,
            RuleArg::IncludeFrom(path) | RuleArg::ExcludeFrom(path) => {
                let kind = if matches!(r, RuleArg::IncludeFrom(_)) {
                    RuleKind::Include
                } else {
                    RuleKind::Exclude
                };
                let file = std::fs::File::open(path).map_err(|e| {
                    UsageError(format!("cannot read {}: {e}", endpoint::shown_path(path)))
                })?;
                f.add_from_reader(
                    std::io::BufReader::new(file),
                    kind,
                    &endpoint::shown_path(path),
                )
                .map_err(bad)?;
            }
        }
    }
    if cvs {
        // As rsync's -C (`-f -C -f :C`), after every other rule.
        f.add_cvs_excludes().map_err(bad)?;
        f.add_rule(":C").map_err(bad)?;
    }
    Ok(f)
}

/// Whether each of `paths` names an entry placed by its name (no trailing
/// slash, `.` or `..`: not a directory's contents), and no two by the same
/// name: what several sources need to go with `--delete`.
pub(crate) fn by_distinct_names<'a>(paths: impl Iterator<Item = &'a [u8]>) -> bool {
    let mut names = std::collections::HashSet::new();
    for p in paths {
        let name = p.rsplit(|&b| b == b'/').next().unwrap_or_default();
        if name.is_empty() || jsync::sync::names_contents(p) || !names.insert(name) {
            return false;
        }
    }
    true
}

/// Source operands: all local, or all on one server (`literal`: paths
/// that name themselves, never expanded as wildcards).
fn sources(
    typed: &[std::ffi::OsString],
    literal: bool,
) -> Result<(Vec<PathBuf>, Vec<Remote>), UsageError> {
    let mut local = Vec::new();
    let mut remote: Vec<Remote> = Vec::new();
    for t in typed {
        match endpoint::parse_os(t).map_err(UsageError)? {
            Endpoint::Local(p) => local.push(p),
            Endpoint::Remote(mut r) => {
                r.literal = literal;
                if let Some(first) = remote.first() {
                    if first.host != r.host {
                        return Err(UsageError(format!(
                            "{r}: every remote source must be on one server ({})",
                            first.host
                        )));
                    }
                }
                remote.push(r)
            }
        }
    }
    if !local.is_empty() && !remote.is_empty() {
        return Err(UsageError(
            "sources are either all local or all on one server".into(),
        ));
    }
    Ok((local, remote))
}

impl Cli {
    /// Whether the run deletes: `--delete` in any of its forms, or
    /// `--delete-excluded`, which implies it (as rsync's).
    fn deletes(&self) -> bool {
        self.delete || self.deletes_before() || self.delete_excluded || self.deletes_after()
    }

    /// `--delete-before` or `--delete-during` (`--del`).
    fn deletes_before(&self) -> bool {
        self.delete_before || self.delete_during
    }

    /// `--delete-after` or `--delete-delay` (jcp's `--delete`).
    fn deletes_after(&self) -> bool {
        self.delete_after || self.delete_delay
    }

    /// rsync's rule: one `--delete-WHEN` at most (`--delete` goes with any;
    /// `--delete-during` and `--delete-delay` are one of rsync's settings,
    /// the last one given counting).
    fn check_delete_when(&self) -> Result<(), UsageError> {
        let whens = [
            self.delete_before,
            self.delete_during || self.delete_delay,
            self.delete_after,
        ];
        match whens.iter().filter(|&&w| w).count() {
            0 | 1 => Ok(()),
            _ => Err(UsageError(
                "you may not combine multiple --delete-WHEN options (--delete-before, \
                 --delete-during, --delete-delay, --delete-after), as in rsync"
                    .into(),
            )),
        }
    }

    /// Whether `--files-from` goes with `--no-relative`: each listed path a
    /// source of its own ([`Cli::listed_apart`]).
    fn lists_apart(&self) -> bool {
        self.files_from.is_some() && self.no_relative
    }

    /// `--files-from FILE` with `--no-relative`: each listed path beneath
    /// the source directory as a source of its own, then the destination
    /// (none when `listing`). A listed `dir/`, `dir/.` or `.` names the
    /// directory's contents, as rsync's (it keeps a trailing `/`). (A
    /// server's are marked literal by [`Cli::direction`]: no wildcards.)
    fn listed_apart(
        &self,
        file: &std::path::Path,
        listing: bool,
    ) -> Result<Vec<std::ffi::OsString>, UsageError> {
        use std::os::unix::ffi::{OsStrExt, OsStringExt};
        let (src, dst) = match (self.operands.as_slice(), listing) {
            // (--list-only SRC DST: DST is not used, as in rsync.)
            ([src] | [src, _], true) => (src, None),
            ([src, dst], false) => (src, Some(dst)),
            _ => {
                return Err(UsageError(
                    "--files-from takes one source directory (the paths are beneath it)".into(),
                ))
            }
        };
        let mut out = Vec::new();
        for path in read_files_from(file, self.from0)? {
            let shown = || jsync::sync::escape_name(&path).into_owned();
            let parts: Vec<&[u8]> = path
                .split(|&b| b == b'/')
                .filter(|c| !c.is_empty() && *c != b".")
                .collect();
            if parts.contains(&&b".."[..]) {
                return Err(UsageError(format!(
                    "--files-from: {}: a listed path may not climb out with ..",
                    shown()
                )));
            }
            let contents = path.ends_with(b"/") || path.ends_with(b"/.") || path == b".";
            let mut listed = parts.join(&b'/');
            let mut s = src.as_bytes().to_vec();
            // (A listed `~` is a name, as rsync reads it: on its own after
            // `host:` it would be the server's root.)
            if s.ends_with(b":") && parts.first() == Some(&&b"~"[..]) {
                listed.splice(0..0, *b"./");
            }
            if !listed.is_empty() && !s.is_empty() && !s.ends_with(b"/") && !s.ends_with(b":") {
                s.push(b'/');
            }
            s.extend_from_slice(&listed);
            if contents && !s.ends_with(b"/") && !s.ends_with(b":") {
                s.push(b'/');
            }
            out.push(std::ffi::OsString::from_vec(s));
        }
        out.extend(dst.cloned());
        Ok(out)
    }

    /// The operands: sources all local or all on one server, the destination
    /// on the other side (or local too). Several sources go into the
    /// destination as a directory (as if it ended in `/`), and cannot be
    /// combined with `--delete` (each would delete what the others copied).
    fn direction(&self) -> Result<Direction, UsageError> {
        if self.keygen {
            return Ok(Direction::Keygen);
        }
        // One operand, or --list-only: list, as rsync does.
        let listing = self.list_only || self.operands.len() == 1;
        // --files-from --no-R: the listed paths are the sources.
        let listed;
        let apart = self.lists_apart();
        let operands = match &self.files_from {
            Some(file) if apart => {
                listed = self.listed_apart(file, listing)?;
                &listed
            }
            _ => &self.operands,
        };
        if listing {
            // With --list-only the last of several operands is the
            // destination, as in rsync: not listed, nor used.
            let operands = match operands.split_last() {
                Some((_, srcs)) if self.list_only && !apart && !srcs.is_empty() => srcs,
                _ => operands,
            };
            let (local, remote) = sources(operands, apart)?;
            return Ok(if remote.is_empty() {
                Direction::ListLocal { srcs: local }
            } else {
                Direction::ListRemote { srcs: remote }
            });
        }
        let (dst_typed, src_typed) = operands
            .split_last()
            .ok_or_else(|| UsageError("no source and destination".into()))?;
        if src_typed.is_empty() && !apart {
            return Err(UsageError(
                "a destination is needed after the source".into(),
            ));
        }
        // (Listed paths go into the destination as a directory, however
        // many there are.)
        let several = src_typed.len() > 1 || apart;
        // (Named as typed: --delete-excluded implies --delete.)
        let delete = match self.delete || self.deletes_before() || self.deletes_after() {
            true => "--delete",
            false => "--delete-excluded",
        };
        if apart && self.deletes() {
            return Err(UsageError(format!(
                "{delete} does not go with --files-from --no-relative: each listed path is \
                 a source of its own, and would delete what the others copied"
            )));
        }
        let dst = endpoint::parse_os(dst_typed).map_err(UsageError)?;
        let dst = if several { dst.into_dir() } else { dst };
        let (local, remote) = sources(src_typed, apart)?;
        // Several sources are runs of their own, one after the other. With
        // --delete that is rsync's sync when each lands under a name of its
        // own (a directory named without a trailing slash, or a file):
        // rsync deletes only inside the directories it sends. Contents
        // (src/) share one directory, where each run would delete what the
        // others copied; so may paths kept with -R.
        if several && self.deletes() {
            let paths = local
                .iter()
                .map(|p| std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()))
                .chain(remote.iter().map(|r| r.path.as_bytes()));
            if self.relative || !by_distinct_names(paths) {
                return Err(UsageError(format!(
                    "{delete} with several sources: each must be named without a trailing \
                     slash (landing as DST/NAME), and no two by the same name; otherwise \
                     each would delete what the others copied (run jcp once per source)"
                )));
            }
        }
        Ok(match dst {
            Endpoint::Local(dst) if remote.is_empty() => Direction::Local { srcs: local, dst },
            Endpoint::Remote(dst) if remote.is_empty() => Direction::Push { srcs: local, dst },
            Endpoint::Local(dst) => Direction::Pull { srcs: remote, dst },
            Endpoint::Remote(b) => {
                return Err(UsageError(format!(
                    "both {0} and {b} are remote; one side must be local \
                     (write ./{0} for a local path with a ':')",
                    remote[0]
                )))
            }
        })
    }

    /// [`Cli::resolve_with`] for tests, with the rules in the order
    /// includes, excludes, include files, exclude files, `--filter`, `-F`.
    #[cfg(test)]
    pub fn resolve(self) -> Result<Plan, UsageError> {
        let mut rules: Vec<RuleArg> = self.include.iter().cloned().map(RuleArg::Include).collect();
        rules.extend(self.exclude.iter().cloned().map(RuleArg::Exclude));
        rules.extend(self.include_from.iter().cloned().map(RuleArg::IncludeFrom));
        rules.extend(self.exclude_from.iter().cloned().map(RuleArg::ExcludeFrom));
        rules.extend(self.filter.iter().cloned().map(RuleArg::Filter));
        let f_rules = F_RULES.iter().take(self.filter_files.len());
        rules.extend(f_rules.map(|r| RuleArg::Filter(r.to_string())));
        self.resolve_with(rules)
    }

    /// Checks the operands against each other and builds the plan, with the
    /// filter rules in command-line order (from [`filter_rules`]); each
    /// rule file is read once.
    pub fn resolve_with(self, rules: Vec<RuleArg>) -> Result<Plan, UsageError> {
        let mut filter = build_filter(&rules, self.cvs_exclude, self.from0)?;
        self.check_delete_when()?;
        if self.temp_dir.as_deref() == Some("") {
            return Err(UsageError("--temp-dir: an empty directory name".into()));
        }
        // (An IPv4 address written as IPv6, ::ffff:a.b.c.d, is IPv4.)
        let address = self.address.map(|ip| ip.to_canonical());
        match address {
            Some(ip) if (ip.is_ipv4() && self.ipv6) || (ip.is_ipv6() && self.ipv4) => {
                let other = if self.ipv4 { "-4" } else { "-6" };
                return Err(UsageError(format!(
                    "--address {ip} and {other}: another kind"
                )));
            }
            _ => {}
        }
        if let Some(d) = &self.partial_dir {
            if !jsync::sync::plain_partial_dir(d) {
                return Err(UsageError(format!(
                    "--partial-dir {d}: jcp takes a plain name, made inside each directory (like .rsync-partial)"
                )));
            }
            // As rsync's `-p DIR/`: a directory named DIR is not sent, and
            // is kept from deletion, --delete-excluded too; perishable, so a
            // directory the source no longer has goes though it holds DIR.
            for rule in [format!("-p {d}/"), format!("Pp {d}/")] {
                filter
                    .add_rule(&rule)
                    .map_err(|e| UsageError(e.to_string()))?;
            }
        }
        let direction = self.direction()?;
        let mut sync = jsync::sync::SyncOptions::default();
        // rsync's order: -c, then --size-only, then -I.
        sync.checksum = self.checksum || self.ignore_times && !self.size_only;
        sync.size_only = self.size_only && !self.checksum;
        sync.update = self.update;
        sync.ignore_existing = self.ignore_existing;
        sync.existing = self.existing;
        sync.max_size = self.max_size;
        sync.min_size = self.min_size;
        sync.parallel = usize::from(self.parallel);
        // A level says zstd, and implies -z, as in rsync, unless --compress
        // chose otherwise.
        let compress = match (self.compress, self.z || self.compress_level.is_some()) {
            (Some(c), _) => c,
            (None, true) => Compress::Zstd,
            (None, false) => Compress::Auto,
        };
        if let Some(level) = self.compress_level {
            if matches!(compress, Compress::Lz4 | Compress::None) {
                return Err(UsageError(format!(
                    "--compress-level sets zstd's level: not with --compress {}",
                    proto::Compression::from(compress)
                )));
            }
            if !proto::zstd_levels().contains(&level) {
                let (low, high) = proto::zstd_levels().into_inner();
                return Err(UsageError(format!(
                    "--compress-level {level}: zstd's levels are {low} to {high}"
                )));
            }
            sync.compress_level = level;
        }
        sync.compression = compress.into();
        // Compress whole files too (not just new data in deltas).
        sync.compress_whole = !matches!(compress, Compress::Auto);
        if let Some(list) = &self.skip_compress {
            sync.skip_compress = jsync::sync::SkipCompress::parse(list).map_err(UsageError)?;
        }
        sync.delete = self.deletes();
        sync.dry_run = self.dry_run;
        sync.itemize = self.itemize_changes > 0;
        sync.itemize_unchanged = self.itemize_changes > 1;
        sync.filter = filter;
        sync.delete_excluded = self.delete_excluded;
        sync.xattrs = self.xattrs;
        sync.acls = self.acls;
        sync.hard_links = !self.no_hard_links;
        sync.numeric_ids = self.numeric_ids;
        sync.fsync = self.fsync;
        sync.bwlimit = self.bwlimit.unwrap_or(0);
        sync.one_file_system = self.one_file_system.min(2);
        sync.copy_links = self.copy_links;
        sync.copy_dirlinks = self.copy_dirlinks;
        sync.copy_unsafe_links = self.copy_unsafe_links;
        sync.open_noatime = self.open_noatime || self.atimes > 1;
        sync.atimes = self.atimes > 0;
        sync.preallocate = self.preallocate;
        sync.keep_dirlinks = self.keep_dirlinks;
        // (--files-from --no-R sends a listed directory's contents only
        // with -r, as --files-from does.)
        sync.dirs_only = (self.dirs && !(self.recursive || self.archive))
            || (self.lists_apart() && !self.recursive);
        sync.fuzzy = self.fuzzy > 0;
        sync.fuzzy_alts = self.fuzzy > 1;
        sync.delay_updates = self.delay_updates;
        sync.partial_dir = self.partial_dir.clone();
        sync.temp_dir = self.temp_dir.clone();
        sync.ignore_missing_args = self.ignore_missing_args;
        sync.delete_missing_args = self.delete_missing_args;
        sync.force = self.force;
        sync.safe_links = self.safe_links;
        sync.chmod = jsync::sync::Chmod::parse(&self.chmod.join(","))
            .map_err(|e| UsageError(e.to_string()))?;
        sync.chown = match &self.chown {
            Some(c) => Some(jsync::sync::Chown::parse(c).map_err(UsageError)?),
            None => None,
        };
        sync.remove_source_files = self.remove_source_files;
        sync.max_delete = self.max_delete;
        sync.links = !self.no_links;
        sync.devices = !(self.no_devices || self.no_d);
        sync.specials = !(self.no_specials || self.no_d);
        sync.owner = !self.no_owner;
        sync.modify_window = self.modify_window.unwrap_or(0);
        sync.group = !self.no_group;
        sync.perms = !self.no_perms;
        sync.times = !self.no_times;
        sync.executability = self.executability;
        sync.delete_before = self.deletes_before();
        sync.ignore_errors = self.ignore_errors;
        sync.whole_file = self.whole_file && !self.no_whole_file;
        sync.omit_dir_times = self.omit_dir_times;
        sync.omit_link_times = self.omit_link_times;
        sync.sparse = self.sparse;
        sync.prune_empty_dirs = self.prune_empty_dirs;
        sync.no_implied_dirs = self.no_implied_dirs;
        let idmap = |m: &Option<String>| m.as_deref().map(jsync::sync::IdMap::parse).transpose();
        sync.usermap = idmap(&self.usermap).map_err(UsageError)?;
        sync.groupmap = idmap(&self.groupmap).map_err(UsageError)?;
        sync.stop_at = match (&self.stop_after, &self.stop_at) {
            (Some(mins), _) => Some(deadline::after(mins, SystemTime::now()).map_err(UsageError)?),
            (_, Some(when)) => Some(deadline::at_local(when).map_err(UsageError)?),
            _ => None,
        };
        let info = Info::parse(&self.info)?;
        // -v (--info=name) lists what changed as rsync's does: its
        // --out-format '%n%L', unless -i or a format says otherwise.
        let names = self.verbose > 0 || info.name;
        let out_format = match &self.out_format {
            Some(f) => Some(f.as_str()),
            None if names && !sync.itemize => Some("%n%L"),
            None => None,
        };
        if let Some(f) = out_format {
            sync.out_format = Some(jsync::sync::OutFormat::parse(f).map_err(UsageError)?);
            sync.itemize = true;
        }
        // -vv: unchanged entries too, as rsync's (itemized with -i, else
        // `NAME is uptodate`).
        if self.verbose > 1 {
            let itemized = sync.out_format.as_ref().is_none_or(|f| f.itemizes());
            sync.itemize_unchanged |= itemized;
            sync.names_unchanged = !itemized;
        }
        // Lines are printed when asked for; --log-file wants them too, in
        // a format of its own (rsync's '%i %n%L' unless told; '' none).
        // (-q outranks them all, as in rsync; no lines cross for them but a
        // dry run's, which are dropped here.)
        let print_items = (sync.itemize || sync.dry_run) && !self.quiet;
        sync.itemize &= !self.quiet;
        if self.log_file.is_some() {
            let format = self.log_file_format.as_deref().unwrap_or("%i %n%L");
            if !format.is_empty() {
                let parsed = jsync::sync::OutFormat::parse(format)
                    .map_err(|e| UsageError(format!("--log-file-format: {e}")))?;
                // (The receiver makes its lines; sync.itemize stays for
                // stdout's, which would cross the wire for nothing.)
                sync.log_format = Some(parsed);
            }
        }
        let selection = match &self.files_from {
            // (--no-R: each listed path is a source, placed by its name.)
            Some(_) if self.lists_apart() => Selection::Whole,
            Some(file) => {
                if self.operands.len() > 2 {
                    return Err(UsageError(
                        "--files-from takes one source directory (the paths are beneath it)".into(),
                    ));
                }
                sync.recurse_listed = self.recursive;
                Selection::Paths(read_files_from(file, self.from0)?)
            }
            None if self.relative => {
                sync.recurse_listed = true;
                Selection::Relative
            }
            None => Selection::Whole,
        };
        use jsync::sync::{AltDest, AltHow};
        for (how, dirs) in [
            (AltHow::Compare, &self.compare_dest),
            (AltHow::Copy, &self.copy_dest),
            (AltHow::Link, &self.link_dest),
        ] {
            if !dirs.is_empty() {
                let alt = AltDest {
                    how,
                    dirs: dirs.clone(),
                };
                alt.check().map_err(UsageError)?;
                sync.alt_dest = Some(alt);
            }
        }
        if self.backup || self.backup_dir.is_some() {
            sync.backup = Some(
                jsync::sync::Backup::new(self.backup_dir.clone(), self.suffix.clone())
                    .map_err(UsageError)?,
            );
        }
        let listing = matches!(
            direction,
            Direction::ListLocal { .. } | Direction::ListRemote { .. }
        );
        let show_progress = if self.quiet {
            ShowProgress::Never
        } else if self.progress || self.partial_progress || info.progress {
            ShowProgress::Always
        } else {
            ShowProgress::IfTerminal
        };
        Ok(Plan {
            direction,
            selection,
            list_recursive: self.recursive || self.archive,
            port: self.port,
            family: match (self.ipv4, self.ipv6) {
                (true, _) => Some(jsync::runtime::AddrFamily::V4),
                (_, true) => Some(jsync::runtime::AddrFamily::V6),
                _ => None,
            },
            address,
            transport: if self.quic {
                Transport::Quic
            } else {
                Transport::Tcp
            },
            config_dir: self
                .config_dir
                .unwrap_or_else(jsync::identity::default_config_dir),
            plaintext: self.insecure_plaintext,
            tls: TlsOptions {
                chacha_only: self.chacha,
            },
            link: link_options(self.timeout, self.contimeout),
            sync,
            show_progress,
            verbosity: if self.quiet {
                0
            } else if info.name {
                self.verbose.max(1).saturating_add(1)
            } else {
                self.verbose.saturating_add(1)
            },
            stats: (self.stats || info.stats) && !self.quiet,
            // (--info=name lists alone, as rsync's; a listing has no
            // transfer to sum up.)
            summary: (self.verbose > 0 || self.stats || info.stats) && !self.quiet && !listing,
            human_readable: self.human_readable.min(2),
            print_items,
            log_file: self.log_file,
            mkpath: self.mkpath,
        })
    }
}

/// What `--info` asks for (rsync's flags that jcp has a report for).
#[derive(Debug, Default)]
struct Info {
    progress: bool,
    stats: bool,
    name: bool,
}

impl Info {
    fn parse(args: &[String]) -> Result<Info, UsageError> {
        let mut info = Info::default();
        for flag in args
            .iter()
            .flat_map(|a| a.split(','))
            .filter(|f| !f.is_empty())
        {
            let word = flag.trim_end_matches(|c: char| c.is_ascii_digit());
            let on = !flag[word.len()..].starts_with('0');
            match word.to_ascii_lowercase().as_str() {
                "progress" => info.progress = on,
                "stats" => info.stats = on,
                "name" => info.name = on,
                _ => {
                    return Err(UsageError(format!(
                        "--info {flag}: jcp reports progress, stats and name (rsync's other --info flags have no jcp report)"
                    )))
                }
            }
        }
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(args: &[&str]) -> Result<Plan, UsageError> {
        let mut argv = vec!["jcp"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).expect("parses").resolve()
    }

    #[test]
    fn bwlimit_reads_rates_as_rsync_does() {
        assert_eq!(parse_rate("100"), Ok(100 * 1024));
        assert_eq!(parse_rate("100K"), Ok(100 * 1024));
        assert_eq!(parse_rate("1.5M"), Ok(3 << 19));
        assert_eq!(parse_rate("2mb"), Ok(2_000_000));
        assert_eq!(parse_rate("1GiB"), Ok(1 << 30));
        assert_eq!(parse_rate("512b"), Ok(512));
        assert_eq!(parse_rate("0"), Ok(0));
        assert!(parse_rate("fast").is_err() && parse_rate("10X").is_err());
        assert_eq!(
            plan(&["--bwlimit", "2M", "a", "b"]).unwrap().sync.bwlimit,
            2 << 20
        );
        assert_eq!(plan(&["a", "b"]).unwrap().sync.bwlimit, 0);
    }

    #[test]
    fn delete_after_and_delete_delay_are_delete() {
        for flag in ["--delete", "--delete-after", "--delete-delay"] {
            let p = plan(&[flag, "a/", "b"]).unwrap();
            assert!(p.sync.delete && !p.sync.delete_before, "{flag}");
        }
        for flag in ["--delete-before", "--delete-during", "--del"] {
            let p = plan(&[flag, "--delete-excluded", "--ignore-errors", "a/", "b"]).unwrap();
            assert!(p.sync.delete && p.sync.delete_before, "{flag}");
            assert!(p.sync.delete_excluded && p.sync.ignore_errors, "{flag}");
            assert!(
                plan(&[flag, "a/", "c/", "b"]).is_err(),
                "{flag}: several sources"
            );
        }
        // One --delete-WHEN at most, as rsync's; --delete goes with any.
        for (a, b) in [
            ("--delete-before", "--delete-after"),
            ("--delete-before", "--delete-delay"),
            ("--delete-during", "--delete-before"),
            ("--delete-after", "--delete-delay"),
            ("--del", "--delete-after"),
        ] {
            let e = plan(&[a, b, "a/", "b"]).unwrap_err();
            assert!(e.0.contains("--delete-WHEN"), "{a} {b}: {e}");
        }
        // (--delete-during and --delete-delay: the last one counts, as in
        // rsync, where they are one setting.)
        for (flags, before) in [
            (&["--delete", "--delete-after"][..], false),
            (&["--delete-before", "--delete", "--delete-excluded"], true),
            (&["--del", "--delete-during"], true),
            (&["--del", "--delete-delay"], false),
            (&["--delete-delay", "--delete-during"], true),
        ] {
            let p = plan(&[flags, &["a/", "b"]].concat()).unwrap();
            assert!(p.sync.delete && p.sync.delete_before == before, "{flags:?}");
        }
        // --delete-excluded alone implies --delete, as rsync's.
        let alone = plan(&["--delete-excluded", "--ignore-errors", "a/", "b"]).unwrap();
        assert!(alone.sync.delete && !alone.sync.delete_before && alone.sync.delete_excluded);
        assert!(plan(&["--delete-excluded", "--max-delete=1", "a/", "b"]).is_ok());
        let e = plan(&["--delete-excluded", "a/", "c/", "b"]).unwrap_err();
        assert!(
            e.0.starts_with("--delete-excluded with several sources"),
            "{e}"
        );
        // (--ignore-errors alone deletes nothing, as rsync's.)
        let lone = plan(&["--ignore-errors", "a/", "b"]).unwrap();
        assert!(lone.sync.ignore_errors && !lone.sync.delete);
        let p = plan(&["-WOJS", "--force", "a/", "b"]).unwrap();
        assert!(p.sync.whole_file && p.sync.omit_dir_times && p.sync.omit_link_times);
        assert!(p.sync.sparse && !p.sync.prune_empty_dirs);
        assert!(plan(&["-m", "a/", "b"]).unwrap().sync.prune_empty_dirs);
        let p = plan(&["--usermap", "*:1", "--groupmap", "0-9:2", "a/", "b"]).unwrap();
        assert_eq!(p.sync.usermap.unwrap().to_string(), "*:1");
        assert!(plan(&["--usermap", "x", "a/", "b"]).is_err());
        let both = Cli::try_parse_from(["jcp", "--usermap", "*:1", "--chown", "a", "x/", "y"]);
        assert!(both.is_err(), "--usermap with --chown");
        let p = plan(&["--out-format", "%n%L", "a/", "b"]).unwrap();
        assert!(p.sync.itemize && p.sync.out_format.is_some());
        assert!(plan(&["--out-format", "%b", "a/", "b"]).is_err());
        assert!(!plan(&["-W", "--no-W", "a/", "b"]).unwrap().sync.whole_file);
        assert!(!plan(&["a/", "b"]).unwrap().sync.delete);
        let p = plan(&["-a", "--no-perms", "--no-times", "-E", "a/", "b"]).unwrap();
        assert!(!p.sync.perms && !p.sync.times && p.sync.executability);
        let p = plan(&["--no-p", "--perms", "--no-t", "-t", "a/", "b"]).unwrap();
        assert!(p.sync.perms && p.sync.times && !p.sync.executability);
        let p = plan(&["--perms", "--no-p", "-t", "--no-t", "a/", "b"]).unwrap();
        assert!(!p.sync.perms && !p.sync.times);
        let p = plan(&["a/", "b"]).unwrap();
        assert!(p.sync.perms && p.sync.times && !p.sync.itemize);
        let p = plan(&["-i", "a/", "b"]).unwrap();
        assert!(p.sync.itemize && !p.sync.itemize_unchanged);
        let p = plan(&["-ii", "a/", "b"]).unwrap();
        assert!(p.sync.itemize && p.sync.itemize_unchanged);
        let acls = Cli::try_parse_from(["jcp", "-A", "--no-perms", "a/", "b"]);
        assert!(acls.is_err(), "-A with --no-perms");
    }

    #[test]
    fn sizes_read_as_rsync_does() {
        assert_eq!(parse_size("500"), Ok(500));
        assert_eq!(parse_size("100K"), Ok(100 << 10));
        assert_eq!(parse_size("100KiB"), Ok(100 << 10));
        assert_eq!(parse_size("100kb"), Ok(100_000));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("2TB"), Ok(2_000_000_000_000));
        assert!(parse_size("big").is_err() && parse_size("10X").is_err());
        assert!(parse_size("10KX").is_err() && parse_size("10bb").is_err());
        assert_eq!(parse_size("7b"), Ok(7));
        let p = plan(&["--max-size", "1M", "--min-size", "10", "a", "b"]).unwrap();
        assert_eq!(
            (p.sync.max_size, p.sync.min_size),
            (Some(1 << 20), Some(10))
        );
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn directions() {
        let p = plan(&["a/", "srv:b"]).unwrap();
        assert!(
            matches!(p.direction, Direction::Push { ref srcs, .. } if srcs[0].as_os_str() == "a/")
        );
        let p = plan(&["[::1]:x/", "b"]).unwrap();
        assert!(
            matches!(p.direction, Direction::Pull { ref srcs, .. } if srcs[0].host == "::1" && srcs[0].path == "x/")
        );
        let p = plan(&["./a:b", "/c:d"]).unwrap();
        assert!(matches!(p.direction, Direction::Local { .. }));
    }

    #[test]
    fn rsync_habits_are_accepted_and_change_nothing() {
        let plain = format!("{:?}", plan(&["a", "srv:"]).unwrap());
        for habit in [
            &["-a"][..],
            &["-r"],
            &["-av"],
            &["--archive", "--recursive", "-H"],
            &["-rtv"],
            &["-rltgoD", "--perms"],
            &["-rlptgoD"],
            &["-avp"],
            &[
                "--links",
                "--times",
                "--owner",
                "--group",
                "--devices",
                "--specials",
            ],
        ] {
            let mut args = habit.to_vec();
            args.extend(["a", "srv:"]);
            let mut p = plan(&args).unwrap();
            // (-r and -a matter to a listing only; -v lists the changes,
            // tested below.)
            p.sync.out_format = None;
            p.sync.itemize = false;
            let p = Plan {
                verbosity: 1,
                list_recursive: false,
                print_items: false,
                summary: false,
                ..p
            };
            assert_eq!(format!("{p:?}"), plain, "{habit:?}");
        }
    }

    /// rsync's `--no-OPTION`: the last word wins, values stay values.
    #[test]
    fn rsync_negations_take_back_what_came_before() {
        let neg = |args: &[&str]| -> Vec<String> {
            negations(args.iter().map(|a| a.into()).collect())
                .into_iter()
                .map(|a| a.into_string().unwrap())
                .collect()
        };
        assert_eq!(neg(&["-avzc", "--no-c", "a", "b"]), ["-avz", "a", "b"]);
        assert_eq!(neg(&["-c", "--checksum", "--no-checksum", "-c"]), ["-c"]);
        assert_eq!(neg(&["-vv", "-v", "--no-v", "a"]), ["a"]);
        assert_eq!(neg(&["--no-motd", "--no-N", "-a"]), ["-a"]);
        // A value is never an option, nor what follows --.
        assert_eq!(
            neg(&["--exclude", "-c", "-c", "--no-c", "--", "-c", "--no-c"]),
            ["--exclude", "-c", "--", "-c", "--no-c"]
        );
        assert_eq!(neg(&["-Tc", "-c", "--no-c"]), ["-Tc"]);
        assert_eq!(neg(&["-cT", "x", "--no-c"]), ["-T", "x"]);
        assert_eq!(neg(&["-P", "--no-progress"]), Vec::<String>::new());
        // (-F takes no value.)
        assert_eq!(neg(&["-F", "-c", "--no-c"]), ["-F"]);
        assert_eq!(neg(&["-Fc", "--no-c", "a"]), ["-F", "a"]);
        // (An option's aliases are taken back too.)
        assert_eq!(neg(&["--secluded-args", "-s", "--no-s", "a"]), ["a"]);
        // Through the whole parse: what is left is as rsync leaves it.
        let plan_of = |args: &[&str]| {
            let argv = std::iter::once("jcp".into())
                .chain(negations(args.iter().map(|a| a.into()).collect()));
            Cli::try_parse_from(argv)
                .expect("parses")
                .resolve()
                .unwrap()
        };
        let p = plan_of(&["-acXAxHi", "--no-c", "--no-X", "--no-x", "--no-i", "a", "b"]);
        assert!(!p.sync.checksum && !p.sync.xattrs && p.sync.acls && p.sync.one_file_system == 0);
        assert!(!p.sync.itemize && p.sync.hard_links);
        let p = plan_of(&["-yy", "--no-y", "-m", "--no-prune-empty-dirs", "a", "b"]);
        assert!(!p.sync.fuzzy && !p.sync.prune_empty_dirs);
        let p = plan_of(&[
            "--no-H", "-OJUS", "--no-O", "--no-J", "--no-U", "--no-S", "a", "b",
        ]);
        assert!(!p.sync.hard_links && !p.sync.omit_dir_times && !p.sync.omit_link_times);
        assert!(!p.sync.atimes && !p.sync.sparse);
        let p = plan_of(&[
            "--numeric-ids",
            "--no-numeric-ids",
            "-hh",
            "--no-h",
            "--stats",
            "a",
            "b",
        ]);
        assert!(!p.sync.numeric_ids && p.human_readable == 0);
        // --no-z: jcp's default compression again.
        let default = plan_of(&["a", "b"]).sync;
        for args in [
            &["-z", "--no-z", "a", "b"][..],
            &[
                "--compress=lz4",
                "--compress-level=3",
                "--no-compress",
                "a",
                "b",
            ],
        ] {
            let p = plan_of(args).sync;
            assert_eq!(
                (p.compression, p.compress_whole, p.compress_level),
                (
                    default.compression,
                    default.compress_whole,
                    default.compress_level
                ),
                "{args:?}"
            );
        }
        assert!(plan_of(&["--no-z", "-z", "a", "b"]).sync.compress_whole);
    }

    #[test]
    fn keygen_takes_only_the_config_dir() {
        use clap::CommandFactory;
        let m = |args: &[&str]| {
            let mut argv = vec!["jcp"];
            argv.extend_from_slice(args);
            Cli::command().try_get_matches_from(argv)
        };
        assert!(keygen_alone(&m(&["--keygen"]).unwrap()).is_ok());
        assert!(keygen_alone(&m(&["--keygen", "--config-dir", "d"]).unwrap()).is_ok());
        for (args, named) in [
            (&["--keygen", "-n"][..], "--dry-run"),
            (&["--port", "9", "--keygen"], "--port"),
            (&["--keygen", "--quic"], "--quic"),
        ] {
            let e = keygen_alone(&m(args).unwrap()).unwrap_err();
            assert!(e.0.contains(named), "{args:?}: {e}");
        }
        assert!(m(&["--keygen", "a", "b"]).is_err(), "no operands");
        assert!(keygen_alone(&m(&["-n", "a", "b"]).unwrap()).is_ok());
    }

    #[test]
    fn rsyncs_options_jcp_lacks_say_so() {
        use clap::CommandFactory;
        for (args, name, why) in [
            (&["--inplace", "a", "b"][..], "--inplace", "never torn"),
            (
                &["-avz", "--append-verify", "a", "b"],
                "--append-verify",
                "never torn",
            ),
            (&["-e", "ssh", "a", "h:b"], "-e", "run jsrv"),
            (&["-ave", "ssh", "a", "h:b"], "-e", "run jsrv"),
            (&["--rsh=ssh -p 22", "a", "h:b"], "--rsh", "remote shell"),
            (
                &["--rsync-path", "sudo rsync", "a", "h:b"],
                "--rsync-path",
                "jsrv",
            ),
            (&["-avN", "a", "b"], "-N", "cannot be set"),
            (&["--block-size=4096", "a", "b"], "--block-size", "FastCDC"),
            (&["--iconv=utf8", "a", "b"], "--iconv", "not have"),
            (&["--write-batch=x", "a", "b"], "--write-batch", "not have"),
        ] {
            let mut argv = vec!["jcp"];
            argv.extend_from_slice(args);
            let e = Cli::command().try_get_matches_from(argv).unwrap_err();
            let u = rsync_only(&e).unwrap_or_else(|| panic!("{args:?}: {e}"));
            assert!(
                u.0.starts_with(&format!("rsync's {name} is not supported: ")),
                "{u}"
            );
            assert!(u.0.contains(why), "{u}");
        }
        // Other mistakes keep clap's message.
        for args in [
            &["--no-such-thing", "a", "b"][..],
            &["--port", "x", "a", "b"],
        ] {
            let mut argv = vec!["jcp"];
            argv.extend_from_slice(args);
            let e = Cli::command().try_get_matches_from(argv).unwrap_err();
            assert!(rsync_only(&e).is_none(), "{args:?}");
        }
        // Every name in the table is one jcp does not take.
        for (names, _) in RSYNC_ONLY {
            for name in *names {
                let e = Cli::command()
                    .try_get_matches_from(["jcp", name, "a", "b"])
                    .unwrap_err();
                assert!(rsync_only(&e).is_some(), "{name}: {e}");
            }
        }
    }

    #[test]
    fn compression_level_and_skip_list() {
        // A level implies -z (zstd for everything), as rsync's.
        let p = plan(&["--compress-level", "9", "a", "b"]).unwrap();
        assert_eq!(p.sync.compression, proto::Compression::ZSTD);
        assert!(p.sync.compress_whole);
        assert_eq!(p.sync.compress_level, 9);
        let p = plan(&["--zl=-3", "--compress", "auto", "a", "b"]).unwrap();
        assert!(!p.sync.compress_whole && p.sync.compress_level == -3);
        let p = plan(&["-z", "--compress-level", "0", "a", "b"]).unwrap();
        assert!(p.sync.compress_whole && p.sync.compress_level == 0);
        let d = plan(&["a", "b"]).unwrap();
        assert_eq!(d.sync.compress_level, proto::ZSTD_DEFAULT_LEVEL);
        assert!(!d.sync.compress_whole && d.sync.skip_compress.skips(b"x.jpg"));
        for bad in [
            &["--compress-level", "9", "--compress", "lz4", "a", "b"][..],
            &["--compress-level", "9", "--zc", "none", "a", "b"],
            &["--compress-level", "23", "a", "b"],
        ] {
            let e = plan(bad).unwrap_err();
            assert!(e.0.contains("--compress-level"), "{e}");
        }
        let p = plan(&["--compress-choice", "lz4", "a", "b"]).unwrap();
        assert_eq!(p.sync.compression, proto::Compression::LZ4);
        // rsync's -z with --zc: the choice says how.
        let p = plan(&["-z", "--zc=lz4", "a", "b"]).unwrap();
        assert!(p.sync.compression == proto::Compression::LZ4 && p.sync.compress_whole);
        let p = plan(&["-z", "--compress", "none", "a", "b"]).unwrap();
        assert_eq!(p.sync.compression, proto::Compression::NONE);
        let p = plan(&["--skip-compress", "txt/c", "a", "b"]).unwrap();
        assert!(p.sync.skip_compress.skips(b"a.TXT") && !p.sync.skip_compress.skips(b"a.jpg"));
        let p = plan(&["--skip-compress=", "a", "b"]).unwrap();
        assert!(!p.sync.skip_compress.skips(b"a.gz"));
        let e = plan(&["--skip-compress", "mp[3", "a", "b"]).unwrap_err();
        assert!(e.0.contains("mp[3"), "{e}");
    }

    #[test]
    fn both_remote_is_a_usage_error() {
        let e = plan(&["a:x", "b:y"]).unwrap_err();
        assert!(e.0.contains("a:x") && e.0.contains("b:y"), "{e}");
    }

    #[test]
    fn defaults() {
        let p = plan(&["a", "srv:"]).unwrap();
        assert_eq!(p.port, DEFAULT_PORT);
        assert_eq!(p.transport, Transport::Tcp);
        assert_eq!(p.sync.parallel, 8);
        assert_eq!(p.sync.compression, proto::Compression::ZSTD);
        assert!(!p.sync.compress_whole && !p.sync.delete && !p.sync.dry_run && !p.sync.itemize);
        assert_eq!(p.show_progress, ShowProgress::IfTerminal);
        assert_eq!(p.verbosity, 1);
    }

    #[test]
    fn options() {
        let p = plan(&[
            "--port",
            "9000",
            "--quic",
            "--chacha",
            "-c",
            "-j",
            "4",
            "--compress",
            "lz4",
            "-vv",
            "--progress",
            "a",
            "srv:",
        ])
        .unwrap();
        assert_eq!(p.port, 9000);
        assert_eq!(p.transport, Transport::Quic);
        assert!(p.tls.chacha_only && p.sync.checksum);
        assert_eq!(p.sync.parallel, 4);
        assert_eq!(p.sync.compression, proto::Compression::LZ4);
        assert!(p.sync.compress_whole);
        assert_eq!(p.verbosity, 3);
        assert_eq!(p.show_progress, ShowProgress::Always);
        // -v (--info=name) lists changes in rsync's '%n%L', and closes with
        // its summary; -i or a format of one's own outrank the names.
        let names = |args: &[&str]| {
            let p = plan(args).unwrap();
            let format = p.sync.out_format.as_ref().map(|f| f.to_string());
            (format, p.sync.itemize, p.print_items, p.summary)
        };
        let listed = (Some("%n%L".to_string()), true, true, true);
        assert_eq!(names(&["-av", "a", "b"]), listed);
        assert_eq!(
            names(&["--info=name", "a", "b"]),
            (Some("%n%L".to_string()), true, true, false)
        );
        assert!(!plan(&["-v", "--list-only", "a"]).unwrap().summary);
        assert_eq!(names(&["-iv", "a", "b"]), (None, true, true, true));
        assert_eq!(
            names(&["-v", "--out-format=%o %n", "a", "b"]),
            (Some("%o %n".to_string()), true, true, true)
        );
        assert_eq!(names(&["-a", "a", "b"]), (None, false, false, false));
        assert_eq!(names(&["--stats", "a", "b"]), (None, false, false, true));
        let twice = |args: &[&str]| {
            let p = plan(args).unwrap();
            (p.sync.itemize_unchanged, p.sync.names_unchanged)
        };
        assert_eq!(twice(&["-vv", "a", "b"]), (false, true));
        assert_eq!(twice(&["-ivv", "a", "b"]), (true, false));
        assert_eq!(twice(&["-v", "a", "b"]), (false, false));
        let quiet = names(&["-qv", "a", "b"]);
        assert!(!quiet.1 && !quiet.2 && !quiet.3, "{quiet:?}");
        let p = plan(&["-z", "--delete", "-n", "-i", "a", "b"]).unwrap();
        assert!(p.sync.compress_whole && p.sync.delete && p.sync.dry_run && p.sync.itemize);
        assert_eq!(p.sync.compression, proto::Compression::ZSTD);
        let p = plan(&["-q", "a", "srv:"]).unwrap();
        assert_eq!((p.verbosity, p.show_progress), (0, ShowProgress::Never));
        assert_eq!(p.sync.one_file_system, 0);
        assert_eq!(plan(&["-ax", "a", "b"]).unwrap().sync.one_file_system, 1);
        let p = plan(&["-xx", "--one-file-system", "a", "b"]).unwrap();
        assert_eq!(p.sync.one_file_system, 2);
        assert!(!p.sync.copy_links);
        assert!(plan(&["-aL", "a", "b"]).unwrap().sync.copy_links);
        assert!(plan(&["-d", "a", "b"]).unwrap().sync.dirs_only);
        assert!(plan(&["-y", "a", "b"]).unwrap().sync.fuzzy);
        assert!(!plan(&["-y", "a", "b"]).unwrap().sync.fuzzy_alts);
        let yy = plan(&["-yy", "a", "b"]).unwrap().sync;
        assert!(yy.fuzzy && yy.fuzzy_alts);
        assert!(
            plan(&["--delay-updates", "a", "b"])
                .unwrap()
                .sync
                .delay_updates
        );
        let logged = plan(&["--log-file", "l", "a", "b"]).unwrap();
        assert!(!logged.sync.itemize && !logged.print_items && logged.log_file.is_some());
        // The log's lines: rsync's format unless told; '' none.
        let format = |p: &Plan| p.sync.log_format.as_ref().map(|f| f.to_string());
        assert_eq!(format(&logged).as_deref(), Some("%i %n%L"));
        let own = plan(&["--log-file", "l", "--log-file-format=%o %f", "a", "b"]).unwrap();
        assert_eq!(format(&own).as_deref(), Some("%o %f"));
        let none = plan(&["--log-file", "l", "--log-file-format=", "a", "b"]).unwrap();
        assert!(format(&none).is_none() && !none.sync.itemize);
        assert!(format(&plan(&["-i", "a", "b"]).unwrap()).is_none());
        assert!(plan(&["-i", "a", "b"]).unwrap().print_items);
        assert!(!plan(&["-rd", "a", "b"]).unwrap().sync.dirs_only);
        assert!(!plan(&["-ad", "a", "b"]).unwrap().sync.dirs_only);
        let k = plan(&["-ak", "a", "b"]).unwrap().sync;
        assert!(k.copy_dirlinks && !k.copy_links);
        assert!(Cli::try_parse_from(["jcp", "-k", "--remove-source-files", "a", "b"]).is_err());
        let u = plan(&["--copy-unsafe-links", "a", "b"]).unwrap().sync;
        assert!(u.copy_unsafe_links && !u.copy_links && !u.copy_dirlinks);
        assert!(!k.copy_unsafe_links && !k.open_noatime);
        assert!(
            plan(&["--open-noatime", "a", "b"])
                .unwrap()
                .sync
                .open_noatime
        );
        assert!(!k.preallocate);
        // --no-links, --no-devices, --no-specials, --no-D; the last word wins.
        let kinds = |args: &[&str]| {
            let mut all = args.to_vec();
            all.extend(["a", "b"]);
            let s = plan(&all).unwrap().sync;
            (s.links, s.devices, s.specials)
        };
        assert_eq!(kinds(&["-a"]), (true, true, true));
        assert_eq!(kinds(&["-a", "--no-l"]), (false, true, true));
        assert_eq!(kinds(&["--no-links", "-l"]), (true, true, true));
        assert_eq!(kinds(&["-a", "--no-D"]), (true, false, false));
        assert_eq!(kinds(&["--no-D", "-D"]), (true, true, true));
        assert_eq!(kinds(&["--no-devices"]), (true, false, true));
        assert_eq!(kinds(&["--no-specials"]), (true, true, false));
        assert_eq!(kinds(&["--no-specials", "--specials"]), (true, true, true));
        // -U sends access times; -UU reads without moving them too.
        assert!(!k.atimes);
        let u = plan(&["-aU", "a", "b"]).unwrap().sync;
        assert!(u.atimes && !u.open_noatime);
        let uu = plan(&["-aUU", "a", "b"]).unwrap().sync;
        assert!(uu.atimes && uu.open_noatime);
        let from = plan(&["--address", "127.0.0.2", "a", "h:b"]).unwrap();
        assert_eq!(from.address, Some([127, 0, 0, 2].into()));
        assert!(plan(&["--address", "::1", "-6", "a", "h:b"]).is_ok());
        let mapped = plan(&["--address", "::ffff:127.0.0.2", "-4", "a", "h:b"]).unwrap();
        assert_eq!(mapped.address, Some([127, 0, 0, 2].into()));
        assert!(plan(&["--address", "::1", "-4", "a", "h:b"]).is_err());
        assert!(plan(&["--address", "127.0.0.1", "-6", "a", "h:b"]).is_err());
        assert!(Cli::try_parse_from(["jcp", "--address", "host.example", "a", "h:b"]).is_err());
        assert!(plan(&["--preallocate", "a", "b"]).unwrap().sync.preallocate);
        let moved = [
            "jcp",
            "--copy-unsafe-links",
            "--remove-source-files",
            "a",
            "b",
        ];
        assert!(Cli::try_parse_from(moved).is_err());
        assert!(plan(&["--safe-links", "a", "b"]).unwrap().sync.safe_links);
        assert!(!plan(&["a", "b"]).unwrap().sync.safe_links);
        assert!(plan(&["-I", "a", "b"]).unwrap().sync.checksum);
        let p = plan(&["--chmod", "Dg+s", "--chmod=Fo-w,+X", "a", "b"]).unwrap();
        assert_eq!(p.sync.chmod.to_string(), "Dg+s,Fo-w,+X");
        let p = plan(&["--info=progress2", "a", "b"]).unwrap();
        assert_eq!(
            (p.show_progress, p.stats, p.verbosity),
            (ShowProgress::Always, false, 1)
        );
        let p = plan(&["--info", "stats2,name1", "a", "b"]).unwrap();
        assert_eq!(
            (p.show_progress, p.stats, p.verbosity),
            (ShowProgress::IfTerminal, true, 2)
        );
        let p = plan(&["--stats", "--info=stats0", "a", "b"]).unwrap();
        assert!(p.stats, "--stats still asks");
        let e = plan(&["--info=flist2", "a", "b"]).unwrap_err();
        assert!(e.0.contains("--info flist2"), "{e}");
        let p = plan(&["--timeout", "8", "--contimeout=3", "a", "srv:"]).unwrap();
        assert_eq!(p.link.idle_timeout.as_secs(), 8);
        assert_eq!(p.link.keepalive.as_millis(), 2000);
        assert_eq!(p.link.connect_timeout.as_secs(), 3);
        assert_eq!(p.link.handshake_timeout.as_secs(), 3);
        let p = plan(&["--timeout=0", "a", "srv:"]).unwrap();
        assert!(p.link.idle_timeout.as_secs() > 86_400 * 300);
        // --stop-after (--time-limit) and --stop-at: when the run stops.
        use std::time::Duration;
        assert!(plan(&["a", "b"]).unwrap().sync.stop_at.is_none());
        for opt in ["--stop-after=2", "--time-limit=2"] {
            let before = SystemTime::now();
            let at = plan(&[opt, "a", "b"]).unwrap().sync.stop_at.unwrap();
            let d = at.duration_since(before).unwrap();
            assert!(
                d >= Duration::from_secs(120) && d < Duration::from_secs(125),
                "{opt}: {d:?}"
            );
        }
        let at = plan(&["--stop-at=:00", "a", "b"])
            .unwrap()
            .sync
            .stop_at
            .unwrap();
        let now = SystemTime::now();
        assert!(at > now && at < now + Duration::from_secs(3601));
        let e = plan(&["--stop-at=2020-01-01", "a", "b"]).unwrap_err();
        assert!(e.0.contains("not in the future"), "{e}");
        let e = plan(&["--stop-after=0", "a", "b"]).unwrap_err();
        assert!(e.0.contains("invalid --stop-after value: 0"), "{e}");
        assert!(Cli::try_parse_from(["jcp", "--stop-after=1", "--stop-at=:00", "a", "b"]).is_err());
        let d = plan(&["a", "srv:"]).unwrap().link;
        assert_eq!(
            (d.idle_timeout.as_secs(), d.connect_timeout.as_secs()),
            (20, 10)
        );
        assert!(Cli::try_parse_from(["jcp", "--contimeout=0", "a", "b"]).is_err());
        let b = |args: &[&str]| plan(args).unwrap().sync.backup;
        assert_eq!(b(&["a", "b"]), None);
        let beside = b(&["-b", "a", "b"]).unwrap();
        assert_eq!((beside.dir, beside.suffix.as_str()), (None, "~"));
        let into = b(&["--backup-dir", "../old", "a", "b"]).unwrap();
        assert_eq!(
            (into.dir.as_deref(), into.suffix.as_str()),
            (Some("../old"), "")
        );
        let both = b(&["-b", "--suffix", ".bak", "a", "b"]).unwrap();
        assert_eq!(both.suffix, ".bak");
        assert!(plan(&["-b", "--suffix", "", "a", "b"]).is_err());
        assert!(plan(&["-b", "--suffix", "x/y", "a", "b"]).is_err());
        assert!(
            plan(&["--remove-source-files", "a", "b"])
                .unwrap()
                .sync
                .remove_source_files
        );
        assert!(!plan(&["a", "b"]).unwrap().sync.remove_source_files);
        let p = plan(&["--delete", "--max-delete", "3", "--mkpath", "a", "b"]).unwrap();
        assert_eq!(p.sync.max_delete, Some(3));
        assert_eq!(plan(&["a", "b"]).unwrap().sync.max_delete, None);
        let p = plan(&["-a", "--no-o", "--no-group", "a", "b"]).unwrap();
        assert!(!p.sync.owner && !p.sync.group);
        let p = plan(&["a", "b"]).unwrap();
        assert!(p.sync.owner && p.sync.group);
        assert_eq!(p.sync.modify_window, 0);
        assert_eq!(plan(&["-@", "1", "a", "b"]).unwrap().sync.modify_window, 1);
        assert_eq!(
            plan(&["--modify-window=2", "a", "b"])
                .unwrap()
                .sync
                .modify_window,
            2
        );
        let alt = plan(&["--link-dest", "../a", "--link-dest", "/b", "a", "b"])
            .unwrap()
            .sync
            .alt_dest
            .unwrap();
        assert_eq!(alt.how, jsync::sync::AltHow::Link);
        assert_eq!(alt.dirs, ["../a", "/b"]);
        assert!(plan(&["--copy-dest", "", "a", "b"]).is_err());
        let p = plan(&["--chown", "www-data:www-data", "a", "b"]).unwrap();
        assert_eq!(p.sync.chown.unwrap().to_string(), "www-data:www-data");
        assert!(plan(&["--chown", ":", "a", "b"]).is_err());
        let e = plan(&["--chmod", "u+q", "a", "b"]).unwrap_err();
        assert!(e.0.contains("\"u+q\""), "{e}");
        assert!(plan(&["--ignore-times", "a", "b"]).unwrap().sync.checksum);
    }

    #[test]
    fn filter_rules_keep_command_line_order() {
        use clap::CommandFactory;
        let m = Cli::command()
            .try_get_matches_from([
                "jcp",
                "--exclude",
                "a",
                "--include",
                "b",
                "--exclude",
                "c",
                "x",
                "y",
            ])
            .unwrap();
        assert_eq!(
            filter_rules(&m),
            vec![
                RuleArg::Exclude("a".into()),
                RuleArg::Include("b".into()),
                RuleArg::Exclude("c".into())
            ]
        );
        // --filter and each -F (-FF: both of its rules) in their places.
        let m = Cli::command()
            .try_get_matches_from([
                "jcp",
                "-FF",
                "--exclude",
                "a",
                "-f",
                "- b",
                "--filter=+ c",
                "-F",
                "x",
                "y",
            ])
            .unwrap();
        let f = |r: &str| RuleArg::Filter(r.into());
        assert_eq!(
            filter_rules(&m),
            vec![
                f("dir-merge /.rsync-filter"),
                f("- .rsync-filter"),
                RuleArg::Exclude("a".into()),
                f("- b"),
                f("+ c"),
            ]
        );
        let p = plan(&["-C", "--filter", "+ keep.o", "a", "b"]).unwrap();
        let args = p.sync.filter.to_args();
        assert_eq!(args.first().map(String::as_str), Some("+ keep.o"));
        // rsync's own list is perishable.
        assert!(args.contains(&"-p *.o".to_string()) && args.contains(&"-p .git/".to_string()));
        assert_eq!(args.last().map(String::as_str), Some(":-nw .cvsignore"));
        let e = plan(&["--filter", "merge /nonexistent/rules", "a", "b"]).unwrap_err();
        assert!(e.0.contains("/nonexistent/rules"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("rules");
        std::fs::write(&list, "# comment\n+ keep.o\n*.o\n").unwrap();
        let p = plan(&["--exclude-from", list.to_str().unwrap(), "a", "b"]).unwrap();
        assert!(p.sync.filter.is_excluded(b"x.o", false));
        assert!(!p.sync.filter.is_excluded(b"keep.o", false));
        assert!(plan(&["--exclude-from", "/nonexistent/rules", "a", "b"]).is_err());
        let p = plan(&["-X", "--numeric-ids", "--no-hard-links", "a", "b"]).unwrap();
        assert!(p.sync.xattrs && p.sync.numeric_ids && !p.sync.hard_links && !p.sync.fsync);
        assert!(!p.sync.acls);
        let p = plan(&["-aAX", "a", "b"]).unwrap();
        assert!(p.sync.acls && p.sync.xattrs);
        assert!(plan(&["--fsync", "a", "b"]).is_ok_and(|p| p.sync.fsync));
    }

    #[test]
    fn relative_paths_split_at_the_marker() {
        let r = Selection::Relative;
        let split = |p: &str| {
            let (root, only) = r.split(p.as_bytes()).unwrap();
            (
                String::from_utf8(root).unwrap(),
                String::from_utf8(only[0].clone()).unwrap(),
            )
        };
        assert_eq!(split("a/b/c"), ("".into(), "a/b/c".into()));
        assert_eq!(split("/etc/hosts"), ("/".into(), "/etc/hosts".into()));
        assert_eq!(split("/srv/./a/b/"), ("/srv".into(), "a/b".into()));
        assert_eq!(split("x/./"), ("x".into(), "".into()));
        assert!(Selection::Whole.split(b"a").is_none());
        let list = Selection::Paths(vec![b"p".to_vec()]);
        assert_eq!(
            list.split(b"src"),
            Some((b"src".to_vec(), vec![b"p".to_vec()]))
        );
    }

    #[test]
    fn files_from_lists_skip_blanks_and_comments() {
        let t = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(t.path(), "a\r\n\n# c\n; c\nb c\n").unwrap();
        let got = read_files_from(t.path(), false).unwrap();
        assert_eq!(got, [b"a".to_vec(), b"b c".to_vec()]);
        std::fs::write(t.path(), "a\nb\0#c\0\0d").unwrap();
        let got = read_files_from(t.path(), true).unwrap();
        assert_eq!(got, [b"a\nb".to_vec(), b"d".to_vec()]);
        assert!(read_files_from(std::path::Path::new("/nonexistent/list"), false).is_err());
        for remote in ["host:list", ":list"] {
            let e = read_files_from(std::path::Path::new(remote), false).unwrap_err();
            assert!(
                e.0.contains("reads no list on a server"),
                "{remote}: {}",
                e.0
            );
        }
        let p = plan(&["-r", "--files-from", t.path().to_str().unwrap(), "a", "b"]).unwrap();
        assert!(p.sync.recurse_listed && matches!(p.selection, Selection::Paths(_)));
        let p = plan(&["-a", "--files-from", t.path().to_str().unwrap(), "a", "b"]).unwrap();
        assert!(
            !p.sync.recurse_listed,
            "-a alone does not recurse into the listed directories"
        );
        let p = plan(&["-R", "a", "b"]).unwrap();
        assert!(p.sync.recurse_listed && p.selection == Selection::Relative);
        // --no-R: the last of -R and --no-R wins; with --files-from each
        // listed path is a source beneath the source directory, into the
        // destination as a directory, a listed directory's contents only
        // with -r.
        assert_eq!(
            plan(&["-R", "--no-R", "a", "b"]).unwrap().selection,
            Selection::Whole
        );
        assert_eq!(
            plan(&["--no-R", "-R", "a", "b"]).unwrap().selection,
            Selection::Relative
        );
        // (A listed `d/`, `d/.` or `.` names a directory's contents, as
        // rsync's.)
        std::fs::write(t.path(), "x/y\n./d/\ne/.\n.\na*b\n").unwrap();
        let list = t.path().to_str().unwrap();
        let p = plan(&["--files-from", list, "--no-R", "src", "dst"]).unwrap();
        assert_eq!(p.selection, Selection::Whole);
        assert!(p.sync.dirs_only);
        let Direction::Local { srcs, dst } = &p.direction else {
            panic!("{:?}", p.direction)
        };
        let typed: Vec<&str> = srcs.iter().map(|s| s.to_str().unwrap()).collect();
        assert_eq!(typed, ["src/x/y", "src/d/", "src/e/", "src/", "src/a*b"]);
        assert_eq!(dst.to_str(), Some("dst/"));
        // A server's paths name themselves: no wildcards.
        let p = plan(&["--files-from", list, "--no-relative", "-r", "h:src", "dst"]).unwrap();
        assert!(!p.sync.dirs_only);
        let Direction::Pull { srcs, .. } = &p.direction else {
            panic!("{:?}", p.direction)
        };
        assert_eq!(
            (srcs[0].path.as_str(), srcs[4].path.as_str()),
            ("src/x/y", "src/a*b")
        );
        assert!(srcs.iter().all(|s| s.literal));
        // A listed `~` is a name, not the server's root (`h:~`).
        let tilde = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(tilde.path(), "~\n~/x\n").unwrap();
        let tl = tilde.path().to_str().unwrap();
        let p = plan(&["--files-from", tl, "--no-R", "-r", "h:", "dst"]).unwrap();
        let Direction::Pull { srcs, .. } = &p.direction else {
            panic!("{:?}", p.direction)
        };
        let typed: Vec<&str> = srcs.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(typed, ["./~", "./~/x"]);
        let p = plan(&["h:src/a*", "dst"]).unwrap();
        assert!(matches!(&p.direction, Direction::Pull { srcs, .. } if !srcs[0].literal));
        // Listing: the listed paths alone; an empty list, nothing.
        let p = plan(&["--files-from", list, "--no-R", "src"]).unwrap();
        assert!(matches!(&p.direction, Direction::ListLocal { srcs } if srcs.len() == 5));
        std::fs::write(t.path(), "# nothing\n").unwrap();
        let p = plan(&["--files-from", list, "--no-R", "src", "dst"]).unwrap();
        assert!(matches!(&p.direction, Direction::Local { srcs, .. } if srcs.is_empty()));
        // (One listed path goes into the destination as a directory too;
        // --delete is refused, as with several sources.)
        std::fs::write(t.path(), "x/y\n").unwrap();
        let p = plan(&["--files-from", list, "--no-R", "src", "dst"]).unwrap();
        assert!(
            matches!(&p.direction, Direction::Local { dst, .. } if dst == &PathBuf::from("dst/"))
        );
        let e = plan(&["--files-from", list, "--no-R", "--delete", "src", "dst"]).unwrap_err();
        assert!(e.0.contains("--no-relative"), "{e}");
        std::fs::write(t.path(), "x/../../etc\n").unwrap();
        let e = plan(&["--files-from", list, "--no-R", "src", "dst"]).unwrap_err();
        assert!(e.0.contains("climb out"), "{e}");
        assert!(plan(&["--files-from", list, "--no-R", "a", "b", "dst"]).is_err());
    }

    #[test]
    fn bad_combinations_are_clap_usage_errors() {
        for args in [
            &["jcp", "--quic", "--insecure-plaintext", "a", "b"][..],
            &["jcp", "-j", "0", "a", "b"],
            &["jcp", "--compress", "gzip", "a", "b"],
            &["jcp", "-L", "--remove-source-files", "a", "b"],
            &["jcp", "--link-dest", "x", "--copy-dest", "y", "a", "b"],
            &["jcp", "--compare-dest", "x", "--link-dest", "y", "a", "b"],
            &["jcp"],
        ] {
            let e = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(e.exit_code(), i32::from(exit::USAGE), "{args:?}");
        }
        // One operand lists it, as rsync does; so does --list-only, whose
        // last operand of several is the destination (neither listed nor
        // used, as in rsync).
        let p = plan(&["a"]).unwrap();
        assert!(matches!(p.direction, Direction::ListLocal { ref srcs } if srcs.len() == 1));
        let p = plan(&["-r", "--list-only", "h:a", "h:b", "dst"]).unwrap();
        assert!(
            matches!(p.direction, Direction::ListRemote { ref srcs } if srcs.len() == 2
                && srcs[1].path == "b")
        );
        assert!(p.list_recursive);
        let p = plan(&["--list-only", "a", "h:b"]).unwrap();
        assert!(
            matches!(p.direction, Direction::ListLocal { ref srcs } if srcs == &[PathBuf::from("a")])
        );
        assert!(plan(&["--list-only", "a", "h:b", "c"]).is_err());
    }

    /// Options rsync takes in any company: what outranks what, as in
    /// rsync, and those that do nothing without another (as in rsync, not
    /// usage errors).
    #[test]
    fn rsync_s_precedence_between_options() {
        // -c, then --size-only, then -I.
        let p = plan(&["-c", "--size-only", "a", "b"]).unwrap();
        assert!(p.sync.checksum && !p.sync.size_only);
        let p = plan(&["-I", "--size-only", "a", "b"]).unwrap();
        assert!(!p.sync.checksum && p.sync.size_only);
        let p = plan(&["-I", "-c", "--size-only", "a", "b"]).unwrap();
        assert!(p.sync.checksum && !p.sync.size_only);
        // -q outranks what prints.
        let p = plan(&["-q", "-vv", "-i", "-n", "--stats", "-P", "a", "b"]).unwrap();
        assert!(!p.print_items && !p.sync.itemize && !p.stats);
        assert_eq!(p.verbosity, 0);
        assert!(matches!(p.show_progress, ShowProgress::Never));
        let p = plan(&["-q", "--out-format=%n", "--info=name,stats", "a", "b"]).unwrap();
        assert!(!p.print_items && !p.sync.itemize && !p.stats && p.verbosity == 0);
        // ... but not the log file's lines.
        let p = plan(&["-q", "--log-file=l", "a", "b"]).unwrap();
        assert!(p.sync.log_format.is_some() && p.log_file.is_some());
        // Alone, these are taken but do nothing: no backups, deletions or
        // log lines come of them.
        type Check = fn(&Plan) -> bool;
        let cases: [(&[&str], Check); 5] = [
            (&["--suffix", ".bak"], |p| p.sync.backup.is_none()),
            (&["--max-delete", "3"], |p| p.sync.max_delete == Some(3)),
            (&["--ignore-errors"], |p| p.sync.ignore_errors),
            (&["--log-file-format", "%n"], |p| {
                p.sync.log_format.is_none()
            }),
            (&["-0"], |p| p.sync.filter.nul_lines()),
        ];
        for (alone, taken) in cases {
            let p = plan(&[alone, &["a", "b"]].concat()).unwrap();
            assert!(taken(&p), "{alone:?}");
            assert!(
                p.sync.backup.is_none() && !p.sync.delete && p.log_file.is_none(),
                "{alone:?}"
            );
        }
        assert!(plan(&["-0", "a", "b"]).unwrap().sync.filter.nul_lines());
        assert!(!plan(&["a", "b"]).unwrap().sync.filter.nul_lines());
        // Several sources: --max-delete counts over their runs.
        assert!(plan(&["--max-delete", "3", "a", "b", "c"]).is_ok());
        // A flag given twice is taken once (rsync's way; a script's options
        // and then the same again); counted ones count, lists gather, and
        // the last value wins.
        let p = plan(&[
            "-a",
            "-a",
            "--delete",
            "--delete",
            "-vv",
            "-v",
            "-i",
            "-i",
            "-x",
            "-x",
            "-UU",
            "-y",
            "-y",
            "--exclude",
            "x",
            "--exclude",
            "y",
            "-b",
            "--suffix",
            ".1",
            "--suffix",
            ".2",
            "-F",
            "-F",
            "a",
            "b",
        ])
        .unwrap();
        assert!(p.sync.delete && p.sync.fuzzy_alts && p.sync.open_noatime && p.sync.atimes);
        assert_eq!(p.verbosity, 4);
        assert!(p.sync.itemize && p.sync.itemize_unchanged);
        assert_eq!(p.sync.one_file_system, 2);
        assert_eq!(p.sync.backup.unwrap().suffix, ".2");
        let rules = p.sync.filter.to_args();
        assert!(rules.contains(&"- x".to_string()) && rules.contains(&"- y".to_string()));
        assert!(rules.contains(&"- .rsync-filter".to_string()), "{rules:?}");
        // (--max-delete counts over the sources' runs.)
        assert!(plan(&["--max-delete=3", "--delete-missing-args", "a", "b", "c"]).is_ok());
    }

    #[test]
    fn options_may_come_between_the_operands() {
        let p = plan(&["a", "--stats", "-i", "b", "srv:c"]).unwrap();
        assert!(p.stats && p.sync.itemize);
        assert!(
            matches!(p.direction, Direction::Push { ref srcs, ref dst } if srcs.len() == 2 && dst.path == "c/")
        );
    }

    #[test]
    fn several_sources_need_one_server_and_names_of_their_own_to_delete() {
        assert!(plan(&["h:a", "h:b", "dst"]).is_ok_and(
            |p| matches!(p.direction, Direction::Pull { ref srcs, ref dst } if srcs.len() == 2 && dst.as_os_str() == "dst/")
        ));
        for bad in [
            &["h:a", "g:b", "dst"][..],
            &["a", "h:b", "dst"],
            &["h:a", "h:b", "g:dst"],
            // --delete: contents, one name twice, -R, a server's root.
            &["--delete", "a/", "b", "dst"],
            &["--delete", "a", "b/.", "dst"],
            &["--delete", "x/a", "y/a", "dst"],
            &["--delete", "-R", "a", "b", "dst"],
            &["--delete", "h:", "h:b", "dst"],
            &["--delete-excluded", "h:a/", "h:b", "dst"],
        ] {
            assert!(plan(bad).is_err(), "{bad:?}");
        }
        for good in [
            &["--delete", "a", "b", "dst"][..],
            &["--delete", "x/a", "y/b", "f.txt", "h:dst"],
            &["--delete", "--max-delete=2", "h:x/a", "h:b", "dst"],
        ] {
            assert!(plan(good).is_ok(), "{good:?}");
        }
        assert!(by_distinct_names([&b"a"[..], b"b/c", b"d"].into_iter()));
        for names in [
            &[&b"a/"[..], b"b"][..],
            &[b"a", b"b/a"],
            &[b".", b"b"],
            &[b"", b"b"],
        ] {
            assert!(!by_distinct_names(names.iter().copied()), "{names:?}");
        }
    }
}
