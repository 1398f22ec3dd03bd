//! The sync protocol's messages: what a sender and a receiver say to each other on
//! the circuits of a sync service pair. Each message is the payload of a Fragment
//! whose op (below) names it; all are encoded with [`Codec`](crate::Codec), paths as
//! raw bytes (file names are bytes, not text), hashes as raw 32-byte arrays.
//!
//! Control circuit (opened by the receiver): `SOURCE`, then `LIST` batches and
//! `WALK_ERROR`s as the sender walks, `LIST_END`; at the end the receiver answers
//! with `REPORT`. File circuits (one per file, opened by the receiver): `WANT`,
//! optional `SIG` batches and `SIG_END`; the sender answers `SAME` or `NEED_SIG`,
//! or `META`, `RECIPE`s and `END`; the receiver confirms with `DONE`.

mod entry;
mod recipe;
mod stats;
mod want;

pub use entry::{Entry, EntryBatch, EntryKind, Source};
pub use recipe::{Recipe, RecipeOp, RecipeReader};
pub use stats::{Stats, StatsError};
pub use want::{End, FileMeta, Want, WantHow};

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
/// Receiver → sender: which file, and what the receiver has ([`Want`]).
pub const WANT: Op = Op(0x0120);
/// Receiver → sender: a batch of the receiver's chunk list (the signature).
pub const SIG: Op = Op(0x0121);
/// Receiver → sender: the signature is complete.
pub const SIG_END: Op = Op(0x0122);
/// Sender → receiver: whole-file hashes match; only metadata differs ([`FileMeta`]).
pub const SAME: Op = Op(0x0123);
/// Sender → receiver: hashes differ; send your signature.
pub const NEED_SIG: Op = Op(0x0124);
/// Sender → receiver: the new file's metadata ([`FileMeta`]); recipe follows.
pub const META: Op = Op(0x0125);
/// Sender → receiver: part of the recipe ([`Recipe`]).
pub const RECIPE: Op = Op(0x0126);
/// Sender → receiver: the recipe is complete ([`End`]).
pub const END: Op = Op(0x0127);
/// Receiver → sender: the file is in place.
pub const DONE: Op = Op(0x0128);
