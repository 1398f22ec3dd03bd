//! File-list entries, streamed in batches as the sender walks its tree, and the
//! owner-name table that lets a root receiver map owners by name as rsync does.
//!
//! Entries are numbered in the order they are sent (0, 1, 2, ... across all
//! batches); per-file requests and hard links refer to entries by that number, so
//! a path crosses the wire once.

use crate::codec::{put_bytes, put_varint, Codec, Reader};
use crate::DecodeError;

/// Longest path in an entry (Linux PATH_MAX).
pub const MAX_PATH: usize = 4096;
/// Most entries in one batch.
pub const MAX_BATCH: usize = 65_536;
/// Most extended attributes on one entry.
pub const MAX_XATTRS: usize = 1024;
/// Longest extended attribute name (Linux XATTR_NAME_MAX).
pub const MAX_XATTR_NAME: usize = 255;
/// Longest extended attribute value (Linux XATTR_SIZE_MAX).
pub const MAX_XATTR_VALUE: usize = 64 << 10;

/// What kind of filesystem object an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum EntryKind {
    /// A regular file.
    #[default]
    File,
    /// A directory.
    Dir,
    /// A symbolic link (its target travels in [`Entry::target`]).
    Symlink,
    /// A named pipe.
    Fifo,
    /// A character device ([`Entry::rdev`]).
    CharDev,
    /// A block device ([`Entry::rdev`]).
    BlockDev,
    /// A path the sender was asked for and does not have
    /// (`--delete-missing-args`): the receiver deletes what it has there. As
    /// a [`Source`]'s kind, a missing source, listed as nothing.
    Missing,
}

impl EntryKind {
    fn code(self) -> u8 {
        match self {
            EntryKind::File => 0,
            EntryKind::Dir => 1,
            EntryKind::Symlink => 2,
            EntryKind::Fifo => 3,
            EntryKind::CharDev => 4,
            EntryKind::BlockDev => 5,
            EntryKind::Missing => 6,
        }
    }

    fn from_code(c: u8) -> Result<Self, DecodeError> {
        Ok(match c {
            0 => EntryKind::File,
            1 => EntryKind::Dir,
            2 => EntryKind::Symlink,
            3 => EntryKind::Fifo,
            4 => EntryKind::CharDev,
            5 => EntryKind::BlockDev,
            6 => EntryKind::Missing,
            tag => {
                return Err(DecodeError::InvalidTag {
                    what: "entry kind",
                    tag,
                })
            }
        })
    }

    /// Whether this is a device node or a FIFO.
    pub fn is_special(self) -> bool {
        matches!(
            self,
            EntryKind::Fifo | EntryKind::CharDev | EntryKind::BlockDev
        )
    }
}

/// How an entry takes part in a group of hard links (files sharing an inode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HardLink {
    /// Its inode has one name (or hard links are not preserved).
    #[default]
    None,
    /// The first name of an inode with several: sent like any file.
    Leader,
    /// Another name of the inode whose leader is the entry with this number.
    Follower(u64),
}

/// One entry of the file list. `path` is relative to the transfer's base, with
/// `/` separators; the empty path is the base itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Entry {
    pub path: Vec<u8>,
    pub kind: EntryKind,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Content size for files, 0 otherwise.
    pub size: u64,
    /// Modification time: seconds since the epoch and nanoseconds.
    pub mtime: (i64, u32),
    /// Symlink target, byte for byte; empty otherwise.
    pub target: Vec<u8>,
    /// Owner and group ids (names, when sent, travel in [`IdNames`]).
    pub uid: u32,
    pub gid: u32,
    /// Device number of a device node; 0 otherwise.
    pub rdev: u64,
    pub link: HardLink,
    /// Extended attributes, sorted by name (sent only when asked for).
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// A directory whose contents were not listed: a mount point the sender
    /// did not cross (`-x`). The receiver makes it but deletes nothing in it,
    /// since the list says nothing about what it holds.
    pub unlisted: bool,
    /// A directory on the way to a path sent with `-R` or `--files-from`
    /// whose attributes are not sent (`--no-implied-dirs`): the receiver
    /// leaves what it has there as it is, a symlink to a directory too, and
    /// makes a missing one with default attributes. Always also `unlisted`.
    pub implied: bool,
    /// Access time (seconds since the epoch, nanoseconds), sent with `-U`
    /// (rsync's `--atimes`) for what is not a directory.
    pub atime: Option<(i64, u32)>,
}

const F_LEADER: u8 = 1;
const F_FOLLOWER: u8 = 2;
const F_XATTRS: u8 = 4;
const F_RDEV: u8 = 8;
const F_UNLISTED: u8 = 16;
const F_IMPLIED: u8 = 32;
const F_ATIME: u8 = 64;
const F_KNOWN: u8 = F_LEADER | F_FOLLOWER | F_XATTRS | F_RDEV | F_UNLISTED | F_IMPLIED | F_ATIME;

impl Entry {
    /// The size a listing shows, as rsync's: a symlink's is its target's
    /// length.
    pub fn shown_size(&self) -> u64 {
        match self.kind {
            EntryKind::Symlink => self.target.len() as u64,
            _ => self.size,
        }
    }

    /// Size, mtime and mode as listed: what a file's content and times should be.
    pub fn file_meta(&self) -> super::FileMeta {
        super::FileMeta {
            size: self.size,
            mtime: self.mtime,
            mode: self.mode,
        }
    }
}

impl Codec for Entry {
    fn encode(&self, buf: &mut Vec<u8>) {
        put_bytes(buf, &self.path);
        buf.push(self.kind.code());
        let mut flags = 0;
        match self.link {
            HardLink::None => {}
            HardLink::Leader => flags |= F_LEADER,
            HardLink::Follower(_) => flags |= F_FOLLOWER,
        }
        if !self.xattrs.is_empty() {
            flags |= F_XATTRS;
        }
        if self.rdev != 0 {
            flags |= F_RDEV;
        }
        if self.unlisted {
            flags |= F_UNLISTED;
        }
        if self.implied {
            flags |= F_IMPLIED;
        }
        if self.atime.is_some() {
            flags |= F_ATIME;
        }
        buf.push(flags);
        put_varint(buf, u64::from(self.mode));
        put_varint(buf, self.size);
        put_time(buf, self.mtime);
        if let Some(atime) = self.atime {
            put_time(buf, atime);
        }
        put_varint(buf, u64::from(self.uid));
        put_varint(buf, u64::from(self.gid));
        if self.kind == EntryKind::Symlink {
            put_bytes(buf, &self.target);
        }
        if let HardLink::Follower(leader) = self.link {
            put_varint(buf, leader);
        }
        if self.rdev != 0 {
            put_varint(buf, self.rdev);
        }
        if !self.xattrs.is_empty() {
            put_varint(buf, self.xattrs.len() as u64);
            for (name, value) in &self.xattrs {
                put_bytes(buf, name);
                put_bytes(buf, value);
            }
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let path = r.bytes("entry path", MAX_PATH)?.to_vec();
        let kind = EntryKind::from_code(r.u8()?)?;
        let flags = r.u8()?;
        if flags & !F_KNOWN != 0
            || flags & (F_LEADER | F_FOLLOWER) == F_LEADER | F_FOLLOWER
            || (flags & F_UNLISTED != 0 && kind != EntryKind::Dir)
            || (flags & F_IMPLIED != 0 && flags & F_UNLISTED == 0)
            || (flags & F_ATIME != 0 && kind == EntryKind::Dir)
        {
            return Err(DecodeError::InvalidTag {
                what: "entry flags",
                tag: flags,
            });
        }
        let mode = u32_field(r, "mode")?;
        let size = r.varint()?;
        let mtime = time(r, "mtime nanoseconds")?;
        let atime = match flags & F_ATIME {
            0 => None,
            _ => Some(time(r, "atime nanoseconds")?),
        };
        let uid = u32_field(r, "uid")?;
        let gid = u32_field(r, "gid")?;
        let target = if kind == EntryKind::Symlink {
            r.bytes("symlink target", MAX_PATH)?.to_vec()
        } else {
            Vec::new()
        };
        let link = if flags & F_FOLLOWER != 0 {
            HardLink::Follower(r.varint()?)
        } else if flags & F_LEADER != 0 {
            HardLink::Leader
        } else {
            HardLink::None
        };
        let rdev = if flags & F_RDEV != 0 { r.varint()? } else { 0 };
        let mut xattrs = Vec::new();
        if flags & F_XATTRS != 0 {
            // Each attribute takes at least two length bytes.
            let n = r.count("xattr count", MAX_XATTRS, 2)?;
            for _ in 0..n {
                let name = r.bytes("xattr name", MAX_XATTR_NAME)?.to_vec();
                let value = r.bytes("xattr value", MAX_XATTR_VALUE)?.to_vec();
                xattrs.push((name, value));
            }
        }
        Ok(Entry {
            path,
            kind,
            mode,
            size,
            mtime,
            target,
            uid,
            gid,
            rdev,
            link,
            xattrs,
            unlisted: flags & F_UNLISTED != 0,
            implied: flags & F_IMPLIED != 0,
            atime,
        })
    }
}

/// A time: seconds since the epoch (big-endian, two's complement) and
/// nanoseconds.
fn put_time(buf: &mut Vec<u8>, (secs, nanos): (i64, u32)) {
    buf.extend_from_slice(&secs.to_be_bytes());
    buf.extend_from_slice(&nanos.to_be_bytes());
}

/// A time [`put_time`] wrote; nanoseconds past a second are refused.
fn time(r: &mut Reader<'_>, what: &'static str) -> Result<(i64, u32), DecodeError> {
    let secs = r.u64()? as i64;
    let nanos = r.u32()?;
    if nanos >= 1_000_000_000 {
        return Err(DecodeError::FieldTooLarge {
            what,
            len: u64::from(nanos),
            max: 999_999_999,
        });
    }
    Ok((secs, nanos))
}

fn u32_field(r: &mut Reader<'_>, what: &'static str) -> Result<u32, DecodeError> {
    let v = r.varint()?;
    u32::try_from(v).map_err(|_| DecodeError::FieldTooLarge {
        what,
        len: v,
        max: u64::from(u32::MAX),
    })
}

/// A batch of entries (one LIST fragment's payload).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EntryBatch(pub Vec<Entry>);

/// The fewest bytes one encoded entry takes.
const MIN_ENTRY: usize = 19;

impl Codec for EntryBatch {
    fn encode(&self, buf: &mut Vec<u8>) {
        put_varint(buf, self.0.len() as u64);
        for e in &self.0 {
            e.encode(buf);
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        // Bound the count by what is there before allocating.
        let n = r.count("entry batch", MAX_BATCH, MIN_ENTRY)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(Entry::decode(r)?);
        }
        Ok(EntryBatch(out))
    }
}

/// Names of owner and group ids, sent before the first entry that uses them
/// (IDS), so a receiver running as root can map them to its own ids.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IdNames {
    pub users: Vec<(u32, Vec<u8>)>,
    pub groups: Vec<(u32, Vec<u8>)>,
}

impl Codec for IdNames {
    fn encode(&self, buf: &mut Vec<u8>) {
        for list in [&self.users, &self.groups] {
            put_varint(buf, list.len() as u64);
            for (id, name) in list {
                put_varint(buf, u64::from(*id));
                put_bytes(buf, name);
            }
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut lists = [Vec::new(), Vec::new()];
        for list in &mut lists {
            let n = r.count("id name list", usize::MAX, 2)?;
            for _ in 0..n {
                let id = u32_field(r, "owner id")?;
                list.push((id, r.bytes("owner name", 256)?.to_vec()));
            }
        }
        let [users, groups] = lists;
        Ok(IdNames { users, groups })
    }
}

/// What the sender is sending, so the receiver can place it the way rsync would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// A directory or a single file (or symlink).
    pub kind: EntryKind,
    /// The source's own name (last path component).
    pub name: Vec<u8>,
    /// A directory given with a trailing slash: send its contents, not itself.
    pub contents: bool,
    /// Only some paths beneath the directory are sent, each with the
    /// directories that lead to it (`-R`, `--files-from`): the directory
    /// itself is not listed, and nothing in it is deleted.
    pub listed: bool,
}

const SOURCE_CONTENTS: u8 = 1;
const SOURCE_LISTED: u8 = 2;

impl Codec for Source {
    fn encode(&self, buf: &mut Vec<u8>) {
        buf.push(self.kind.code());
        put_bytes(buf, &self.name);
        let mut flags = 0;
        if self.contents {
            flags |= SOURCE_CONTENTS;
        }
        if self.listed {
            flags |= SOURCE_LISTED;
        }
        buf.push(flags);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let kind = EntryKind::from_code(r.u8()?)?;
        let name = r.bytes("source name", MAX_PATH)?.to_vec();
        let flags = r.u8()?;
        if flags & !(SOURCE_CONTENTS | SOURCE_LISTED) != 0 {
            return Err(DecodeError::InvalidTag {
                what: "source flags",
                tag: flags,
            });
        }
        Ok(Source {
            kind,
            name,
            contents: flags & SOURCE_CONTENTS != 0,
            listed: flags & SOURCE_LISTED != 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode_exact, encode_to_vec};

    fn entry(path: &[u8]) -> Entry {
        Entry {
            path: path.to_vec(),
            kind: EntryKind::File,
            mode: 0o644,
            size: 12345,
            mtime: (1_700_000_000, 999_999_999),
            uid: 1000,
            gid: 100,
            ..Entry::default()
        }
    }

    #[test]
    fn batches_roundtrip_with_byte_paths_and_every_field() {
        let mut link = entry(b"caf\xe9/\n-x");
        link.kind = EntryKind::Symlink;
        link.target = b"../elsewhere".to_vec();
        let mut leader = entry(b"a");
        leader.link = HardLink::Leader;
        leader.xattrs = vec![(b"user.k".to_vec(), vec![0, 1, 2])];
        let mut follower = entry(b"b");
        follower.link = HardLink::Follower(3);
        let mut dev = entry(b"dev/null");
        dev.kind = EntryKind::CharDev;
        dev.rdev = 0x103;
        let mut mount = entry(b"mnt");
        mount.kind = EntryKind::Dir;
        mount.unlisted = true;
        let mut on_the_way = mount.clone();
        on_the_way.path = b"a/b".to_vec();
        on_the_way.implied = true;
        let mut gone = entry(b"gone");
        gone.kind = EntryKind::Missing;
        let mut used = entry(b"used");
        used.atime = Some((-5, 999_999_999));
        used.xattrs = vec![(b"user.k".to_vec(), vec![3])];
        let batch = EntryBatch(vec![
            used,
            entry(b""),
            link,
            leader,
            follower,
            dev,
            mount,
            on_the_way,
            gone,
        ]);
        let bytes = encode_to_vec(&batch);
        assert_eq!(decode_exact::<EntryBatch>(&bytes).unwrap(), batch);
        let ids = IdNames {
            users: vec![(0, b"root".to_vec())],
            groups: vec![(100, b"users".to_vec())],
        };
        assert_eq!(decode_exact::<IdNames>(&encode_to_vec(&ids)).unwrap(), ids);
    }

    #[test]
    fn hostile_counts_and_fields_are_rejected() {
        let mut buf = Vec::new();
        put_varint(&mut buf, 1 << 40);
        assert!(matches!(
            decode_exact::<EntryBatch>(&buf),
            Err(DecodeError::FieldTooLarge { .. })
        ));
        let mut bad = encode_to_vec(&entry(b"a"));
        bad[2] = 7; // kind
        assert!(matches!(
            decode_exact::<Entry>(&bad),
            Err(DecodeError::InvalidTag { .. })
        ));
        let mut bad = encode_to_vec(&entry(b"a"));
        bad[3] = F_LEADER | F_FOLLOWER;
        assert!(decode_exact::<Entry>(&bad).is_err());
        // Only a directory can have its contents unlisted.
        let mut bad = encode_to_vec(&entry(b"a"));
        bad[3] = F_UNLISTED;
        assert!(decode_exact::<Entry>(&bad).is_err());
        // Implied is unlisted too.
        let mut d = entry(b"a");
        d.kind = EntryKind::Dir;
        let mut bad = encode_to_vec(&d);
        bad[3] = F_IMPLIED;
        assert!(decode_exact::<Entry>(&bad).is_err());
        let mut bad = encode_to_vec(&entry(b"a"));
        bad[3] = 0x80;
        assert!(decode_exact::<Entry>(&bad).is_err());
        let mut e = entry(b"a");
        e.mtime.1 = 1_000_000_000;
        assert!(decode_exact::<Entry>(&encode_to_vec(&e)).is_err());
        let mut e = entry(b"a");
        e.atime = Some((0, 1_000_000_000));
        assert!(decode_exact::<Entry>(&encode_to_vec(&e)).is_err());
        // No access time of a directory is sent.
        let mut d = entry(b"a");
        d.kind = EntryKind::Dir;
        d.atime = Some((1, 0));
        assert!(decode_exact::<Entry>(&encode_to_vec(&d)).is_err());
        // An xattr count far beyond the bytes present.
        let mut x = entry(b"a");
        x.xattrs = vec![(b"user.a".to_vec(), Vec::new())];
        let mut bytes = encode_to_vec(&x);
        let at = bytes.len() - 1 - 1 - 6 - 1;
        bytes[at] = 0x7f;
        assert!(decode_exact::<Entry>(&bytes).is_err());
        for (contents, listed) in [(false, false), (true, false), (true, true), (false, true)] {
            let s = Source {
                kind: EntryKind::Dir,
                name: b"x".to_vec(),
                contents,
                listed,
            };
            assert_eq!(decode_exact::<Source>(&encode_to_vec(&s)).unwrap(), s);
        }
        let mut bad = encode_to_vec(&Source {
            kind: EntryKind::Dir,
            name: Vec::new(),
            contents: true,
            listed: false,
        });
        *bad.last_mut().unwrap() = 4;
        assert!(decode_exact::<Source>(&bad).is_err());
    }
}
