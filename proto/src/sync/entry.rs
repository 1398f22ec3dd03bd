//! File-list entries, streamed in batches as the sender walks its tree.

use crate::codec::{put_bytes, put_varint, Codec, Reader};
use crate::DecodeError;

/// Longest path in an entry (Linux PATH_MAX).
pub const MAX_PATH: usize = 4096;
/// Most entries in one batch.
pub const MAX_BATCH: usize = 65_536;

/// What kind of filesystem object an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (its target travels in [`Entry::target`]).
    Symlink,
}

impl EntryKind {
    fn code(self) -> u8 {
        match self {
            EntryKind::File => 0,
            EntryKind::Dir => 1,
            EntryKind::Symlink => 2,
        }
    }

    fn from_code(c: u8) -> Result<Self, DecodeError> {
        Ok(match c {
            0 => EntryKind::File,
            1 => EntryKind::Dir,
            2 => EntryKind::Symlink,
            tag => {
                return Err(DecodeError::InvalidTag {
                    what: "entry kind",
                    tag,
                })
            }
        })
    }
}

/// One entry of the file list. `path` is relative to the transfer's base, with
/// `/` separators; the empty path is the base itself.
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

impl Codec for Entry {
    fn encode(&self, buf: &mut Vec<u8>) {
        put_bytes(buf, &self.path);
        buf.push(self.kind.code());
        put_varint(buf, u64::from(self.mode));
        put_varint(buf, self.size);
        buf.extend_from_slice(&self.mtime.0.to_be_bytes());
        buf.extend_from_slice(&self.mtime.1.to_be_bytes());
        put_bytes(buf, &self.target);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let path = r.bytes("entry path", MAX_PATH)?.to_vec();
        let kind = EntryKind::from_code(r.u8()?)?;
        let mode = r.varint()?;
        let mode = u32::try_from(mode).map_err(|_| DecodeError::FieldTooLarge {
            what: "mode",
            len: mode,
            max: u64::from(u32::MAX),
        })?;
        let size = r.varint()?;
        let secs = r.u64()? as i64;
        let nanos = r.u32()?;
        if nanos >= 1_000_000_000 {
            return Err(DecodeError::FieldTooLarge {
                what: "mtime nanoseconds",
                len: u64::from(nanos),
                max: 999_999_999,
            });
        }
        let target = r.bytes("symlink target", MAX_PATH)?.to_vec();
        Ok(Entry {
            path,
            kind,
            mode,
            size,
            mtime: (secs, nanos),
            target,
        })
    }
}

/// A batch of entries (one LIST fragment's payload).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EntryBatch(pub Vec<Entry>);

impl Codec for EntryBatch {
    fn encode(&self, buf: &mut Vec<u8>) {
        put_varint(buf, self.0.len() as u64);
        for e in &self.0 {
            e.encode(buf);
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let n = r.varint()?;
        // Each entry takes at least 15 bytes: bound the count by what is there.
        if n > MAX_BATCH as u64 || n > (r.remaining() / 15) as u64 {
            return Err(DecodeError::FieldTooLarge {
                what: "entry batch",
                len: n,
                max: (r.remaining() / 15).min(MAX_BATCH) as u64,
            });
        }
        let mut out = Vec::with_capacity(n as usize);
        for _ in 0..n {
            out.push(Entry::decode(r)?);
        }
        Ok(EntryBatch(out))
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
}

impl Codec for Source {
    fn encode(&self, buf: &mut Vec<u8>) {
        buf.push(self.kind.code());
        put_bytes(buf, &self.name);
        buf.push(u8::from(self.contents));
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let kind = EntryKind::from_code(r.u8()?)?;
        let name = r.bytes("source name", MAX_PATH)?.to_vec();
        let contents = match r.u8()? {
            0 => false,
            1 => true,
            tag => {
                return Err(DecodeError::InvalidTag {
                    what: "contents flag",
                    tag,
                })
            }
        };
        Ok(Source {
            kind,
            name,
            contents,
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
            target: Vec::new(),
        }
    }

    #[test]
    fn batches_roundtrip_with_byte_paths() {
        let mut link = entry(b"caf\xe9/\n-x");
        link.kind = EntryKind::Symlink;
        link.target = b"../elsewhere".to_vec();
        let batch = EntryBatch(vec![entry(b""), link, entry(b"dir/file")]);
        let bytes = encode_to_vec(&batch);
        assert_eq!(decode_exact::<EntryBatch>(&bytes).unwrap(), batch);
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
        bad[2] = 9; // kind
        assert!(matches!(
            decode_exact::<Entry>(&bad),
            Err(DecodeError::InvalidTag { .. })
        ));
        let mut e = entry(b"a");
        e.mtime.1 = 1_000_000_000;
        assert!(decode_exact::<Entry>(&encode_to_vec(&e)).is_err());
        let s = Source {
            kind: EntryKind::Dir,
            name: b"x".to_vec(),
            contents: true,
        };
        assert_eq!(decode_exact::<Source>(&encode_to_vec(&s)).unwrap(), s);
    }
}
