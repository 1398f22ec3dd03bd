//! The sync protocol's messages: what a sender and a receiver say to each other on
//! the circuits of a sync service pair. Each message is the payload of a Fragment
//! whose op (below) names it; all are encoded with [`Codec`](crate::Codec), paths as
//! raw bytes (file names are bytes, not text), hashes as raw 32-byte arrays.
//!
//! **Control circuit** (opened by the receiver): the sender sends `SOURCE`, then
//! `IDS` (owner names, before the entries that use them), `LIST` batches and
//! `WALK_ERROR`s as it walks, and `LIST_END`. Entries are numbered in the order
//! sent. When it sends its change lines to the sender (for the sender's
//! user), the receiver first sends `MADE` if it made (or a dry run would
//! make) directories for the destination. It may send `ITEMS` (itemized
//! changes, for the sender's user),
//! `LOG_ITEMS` (the same in the log file's format, when asked for) and, with
//! `--remove-source-files`, `PLACED` (entries it has in place) at any
//! time, and ends with `REPORT`; the sender then sends `SENDER_ERRORS` if it
//! failed to remove any of them, and ends its side.
//!
//! **Lanes** (a few circuits opened by the receiver): requests are pipelined,
//! answers come back in request order. A request is `WANT` (by entry number),
//! followed for a delta by `SIG` batches and `SIG_END`; `WANTS`: many small
//! files wanted whole, answered by `FILES` messages holding one record per file
//! in request order; or `CHECKS`: many files the receiver has with the right
//! size but another time, each with a truncated hash of its copy, answered by one
//! `VERDICTS` message (same, same with new metadata, differs, failed, vanished);
//! for a file that differs the receiver sends a `WANT` for a delta. An answer to
//! `WANT` is one of: `FILE` (a whole small file in one message), `META` then
//! `RECIPE`s then `END`, `META` then `UNCHANGED` (a delta found the file to be
//! the receiver's basis exactly), or `FILE_ERR` (this file failed or vanished;
//! the lane goes on). The answer to a delta of a large file may begin before
//! its request's `SIG_END`: the sender builds the recipe as the signature
//! comes, and copies only chunks it has already been sent. The receiver half-closes a lane when it has no more requests.
//!
//! **Wildcards** (`jsync.glob`, a service of its own): the server opens one
//! circuit and sends the paths the pattern matched as `GLOB_MATCHES`
//! messages, then ends it.

mod entry;
mod glob;
mod recipe;
mod stats;
mod want;

pub use entry::{
    Entry, EntryBatch, EntryKind, HardLink, IdNames, Source, MAX_PATH, MAX_XATTRS, MAX_XATTR_NAME,
    MAX_XATTR_VALUE,
};
pub use glob::{Matches, MAX_MATCHES};
pub use recipe::{Recipe, RecipeOp, RecipeReader};
pub use stats::{Made, Placed, SenderErrors, Stats, StatsError, MAX_ERRORS, MAX_PLACED};
pub use want::{
    begin_whole_file, begin_whole_record, Checks, End, FileMeta, FileRecord, FileRecords, Verdict,
    Want, WantHow, Wants, WholeFile, CHECK_HASH, MAX_CHECKS,
};

use crate::Op;

/// Sender → receiver: what is being sent ([`Source`]).
pub const SOURCE: Op = Op(0x0110);
/// Sender → receiver: a batch of file-list entries ([`EntryBatch`]).
pub const LIST: Op = Op(0x0111);
/// Sender → receiver: an entry that could not be listed (subject: path, error: why).
pub const WALK_ERROR: Op = Op(0x0112);
/// Sender → receiver: the file list is complete (part: number of entries).
pub const LIST_END: Op = Op(0x0113);
/// Receiver → sender: the outcome ([`Stats`]).
pub const REPORT: Op = Op(0x0114);
/// Sender → receiver: owner and group names ([`IdNames`]).
pub const IDS: Op = Op(0x0115);
/// Receiver → sender: itemized changes, one per line (UTF-8, paths lossy).
pub const ITEMS: Op = Op(0x0116);
/// Receiver → sender: entries now in place, for `--remove-source-files`
/// ([`Placed`]).
pub const PLACED: Op = Op(0x0117);
/// Sender → receiver, after `REPORT`: source files it did not remove
/// ([`SenderErrors`]).
pub const SENDER_ERRORS: Op = Op(0x0118);
/// Receiver → sender: changes in the format asked for the sender's log file
/// (`--log-file-format`), one per line as [`ITEMS`].
pub const LOG_ITEMS: Op = Op(0x0119);
/// Receiver → sender, first if at all: the directories it made for the
/// destination ([`Made`]).
pub const MADE: Op = Op(0x011A);
/// Receiver → sender: which file, and what the receiver has ([`Want`]).
pub const WANT: Op = Op(0x0120);
/// Receiver → sender: a batch of the receiver's chunk list (the signature).
pub const SIG: Op = Op(0x0121);
/// Receiver → sender: the signature is complete.
pub const SIG_END: Op = Op(0x0122);
/// Sender → receiver: the new file's metadata ([`FileMeta`]); recipe follows.
pub const META: Op = Op(0x0125);
/// Sender → receiver: part of the recipe ([`Recipe`]).
pub const RECIPE: Op = Op(0x0126);
/// Sender → receiver: the recipe is complete ([`End`]).
pub const END: Op = Op(0x0127);
/// Sender → receiver, after `META` instead of a recipe: the file is exactly
/// the receiver's basis as its signature listed it (every chunk in order,
/// nothing else, no holes), so nothing needs writing; with the [`End`] of
/// that chunk list, for the receiver to check by its chunks' full hashes.
pub const UNCHANGED: Op = Op(0x012E);
/// Sender → receiver: a whole small file ([`WholeFile`]).
pub const FILE: Op = Op(0x0128);
/// Sender → receiver: this file could not be sent (error: why; part 1 when it
/// vanished, 0 for a real error).
pub const FILE_ERR: Op = Op(0x0129);
/// Receiver → sender: small files wanted whole, by entry number ([`Wants`]).
pub const WANTS: Op = Op(0x012A);
/// Sender → receiver: records answering a [`WANTS`], in order ([`FileRecords`]).
pub const FILES: Op = Op(0x012B);
/// Receiver → sender: files to compare by whole-file hash ([`Checks`]).
pub const CHECKS: Op = Op(0x012C);
/// Sender → receiver: one [`Verdict`] per file of a [`CHECKS`], in order.
pub const VERDICTS: Op = Op(0x012D);
/// Server → client: paths a wildcard matched ([`Matches`]).
pub const GLOB_MATCHES: Op = Op(0x0130);
