//! Per-file requests and answers on a lane: what the receiver wants and has, the
//! new file's metadata, and the end-of-recipe check.

use crate::codec::{put_varint, Codec, Reader};
use crate::DecodeError;

/// How the receiver wants a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WantHow {
    /// It has nothing usable: send every byte.
    Full,
    /// It has an old version (or a partial one): its signature follows (`SIG`
    /// batches, `SIG_END`).
    Delta,
    /// Same size, different time (or `--checksum`): compare whole-file hashes
    /// first. Never in a [`Want`]: such files go many to a [`Checks`].
    HashCheck,
}

/// Receiver → sender: a file request on a lane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    /// The entry's number in the file list.
    pub index: u64,
    /// [`WantHow::Full`] or [`WantHow::Delta`]; a hash check goes in a [`Checks`].
    pub how: WantHow,
    /// For a delta: log2 of the average chunk size the signature was cut
    /// with, which the sender cuts its file with too (sent only for a delta;
    /// 0 otherwise). Which sizes a peer accepts is the sync engine's business.
    pub chunk_bits: u8,
    /// For a delta: the size of the file the signature was cut from (only a
    /// file of the same size can turn out to be it exactly, which a sender
    /// may answer with UNCHANGED instead of a recipe; jsync's does for
    /// large files, whose deltas stream; 0 otherwise).
    pub basis_size: u64,
}

impl Codec for Want {
    fn encode(&self, buf: &mut Vec<u8>) {
        put_varint(buf, self.index);
        buf.push(u8::from(self.how == WantHow::Delta));
        if self.how == WantHow::Delta {
            buf.push(self.chunk_bits);
            put_varint(buf, self.basis_size);
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let index = r.varint()?;
        let (how, chunk_bits, basis_size) = match r.u8()? {
            0 => (WantHow::Full, 0, 0),
            1 => (WantHow::Delta, r.u8()?, r.varint()?),
            tag => return Err(DecodeError::InvalidTag { what: "want", tag }),
        };
        Ok(Want {
            index,
            how,
            chunk_bits,
            basis_size,
        })
    }
}

/// Bytes of a whole-file BLAKE3 a [`Checks`] carries: 128 bits, as strong
/// against accidental equality as rsync's whole-file MD5, at half the bytes of
/// a full hash on the wire.
pub const CHECK_HASH: usize = 16;

/// Most files one [`Checks`] may hold.
pub const MAX_CHECKS: usize = 1024;

/// Receiver → sender (CHECKS): files whose size matches but whose time does not
/// (or every file, with `--checksum`), by entry number, each with the first
/// [`CHECK_HASH`] bytes of the BLAKE3 of the receiver's copy. Answered by one
/// VERDICTS message with a [`Verdict`] per file, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Checks(pub Vec<(u64, [u8; CHECK_HASH])>);

impl Codec for Checks {
    fn encode(&self, buf: &mut Vec<u8>) {
        put_varint(buf, self.0.len() as u64);
        for (index, hash) in &self.0 {
            put_varint(buf, *index);
            buf.extend_from_slice(hash);
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let n = batch_count(r, "hash check batch", MAX_CHECKS, 1 + CHECK_HASH)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let index = r.varint()?;
            let mut h = [0u8; CHECK_HASH];
            h.copy_from_slice(r.take(CHECK_HASH)?);
            out.push((index, h));
        }
        Ok(Checks(out))
    }
}

/// The sender's answer to one file of a [`Checks`] (records of a VERDICTS
/// message, in request order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// Same content, and the file is still as listed: the receiver sets the
    /// listed mode and time.
    Same,
    /// Same content; the file's metadata changed since it was listed.
    SameMeta(FileMeta),
    /// The content differs: the receiver asks again with a signature.
    Differs,
    /// The file could not be read (why).
    Failed(&'a str),
    /// It vanished before it could be read.
    Vanished(&'a str),
}

const VERDICT_SAME: u8 = 0;
const VERDICT_SAME_META: u8 = 1;
const VERDICT_DIFFERS: u8 = 2;
const VERDICT_FAILED: u8 = 3;
const VERDICT_VANISHED: u8 = 4;

impl Verdict<'_> {
    /// Appends the record.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        match self {
            Verdict::Same => buf.push(VERDICT_SAME),
            Verdict::SameMeta(m) => {
                buf.push(VERDICT_SAME_META);
                m.encode(buf);
            }
            Verdict::Differs => buf.push(VERDICT_DIFFERS),
            Verdict::Failed(m) => {
                buf.push(VERDICT_FAILED);
                crate::codec::put_str(buf, m);
            }
            Verdict::Vanished(m) => {
                buf.push(VERDICT_VANISHED);
                crate::codec::put_str(buf, m);
            }
        }
    }

    /// Decodes all the records of a VERDICTS payload, which must hold exactly
    /// `expected` of them (the number of files checked).
    pub fn decode_all(payload: &[u8], expected: usize) -> Result<Vec<Verdict<'_>>, DecodeError> {
        let mut r = Reader::new(payload);
        // Every record takes at least one byte: no allocation beyond the payload.
        let mut out = Vec::with_capacity(expected.min(payload.len()));
        while !r.is_empty() {
            if out.len() == expected {
                return Err(DecodeError::TrailingBytes(r.remaining()));
            }
            out.push(match r.u8()? {
                VERDICT_SAME => Verdict::Same,
                VERDICT_SAME_META => Verdict::SameMeta(FileMeta::decode(&mut r)?),
                VERDICT_DIFFERS => Verdict::Differs,
                VERDICT_FAILED => Verdict::Failed(r.str("failure", 64 << 10)?),
                VERDICT_VANISHED => Verdict::Vanished(r.str("failure", 64 << 10)?),
                tag => {
                    return Err(DecodeError::InvalidTag {
                        what: "verdict",
                        tag,
                    })
                }
            });
        }
        if out.len() != expected {
            return Err(DecodeError::Truncated {
                needed: expected,
                have: out.len(),
            });
        }
        Ok(out)
    }
}

pub(crate) fn hash32(r: &mut Reader<'_>) -> Result<[u8; 32], DecodeError> {
    let mut h = [0u8; 32];
    h.copy_from_slice(r.take(32)?);
    Ok(h)
}

/// The sender's view of the file it sends (META, SAME, FILE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMeta {
    pub size: u64,
    pub mtime: (i64, u32),
    pub mode: u32,
}

impl Codec for FileMeta {
    fn encode(&self, buf: &mut Vec<u8>) {
        put_varint(buf, self.size);
        buf.extend_from_slice(&self.mtime.0.to_be_bytes());
        buf.extend_from_slice(&self.mtime.1.to_be_bytes());
        put_varint(buf, u64::from(self.mode));
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
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
        let mode = r.varint()?;
        if mode > 0o7777 {
            return Err(DecodeError::FieldTooLarge {
                what: "mode",
                len: mode,
                max: 0o7777,
            });
        }
        Ok(FileMeta {
            size,
            mtime: (secs, nanos),
            mode: mode as u32,
        })
    }
}

/// The end of a recipe: the new file's size and the digest of its pieces
/// (all zero for a file sent whole over a link that authenticates every byte
/// itself, TLS or QUIC, where both sides skip it; a delta always has one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct End {
    pub size: u64,
    pub digest: [u8; 32],
}

impl Codec for End {
    fn encode(&self, buf: &mut Vec<u8>) {
        put_varint(buf, self.size);
        buf.extend_from_slice(&self.digest);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(End {
            size: r.varint()?,
            digest: hash32(r)?,
        })
    }
}

/// A whole small file in one message (FILE): metadata, the BLAKE3 of the
/// content (all zero over a link that authenticates every byte itself, TLS or
/// QUIC, where both sides skip it), and the content (the rest of the payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WholeFile<'a> {
    pub meta: FileMeta,
    pub hash: [u8; 32],
    pub data: &'a [u8],
}

impl WholeFile<'_> {
    /// Appends the encoding.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        let slot = begin_whole_file(buf, &self.meta);
        buf[slot..slot + 32].copy_from_slice(&self.hash);
        buf.extend_from_slice(self.data);
    }

    /// Decodes a FILE payload; the data must be exactly `meta.size` bytes.
    pub fn decode(payload: &[u8]) -> Result<WholeFile<'_>, DecodeError> {
        let mut r = Reader::new(payload);
        let meta = FileMeta::decode(&mut r)?;
        let hash = hash32(&mut r)?;
        let data = r.rest();
        if data.len() as u64 != meta.size {
            return Err(DecodeError::FieldTooLarge {
                what: "whole file data",
                len: data.len() as u64,
                max: meta.size,
            });
        }
        Ok(WholeFile { meta, hash, data })
    }
}

/// The count of a request batch: at least one item and at most `max`, each at
/// least `min_len` bytes (see [`Reader::count`]).
fn batch_count(
    r: &mut Reader<'_>,
    what: &'static str,
    max: usize,
    min_len: usize,
) -> Result<usize, DecodeError> {
    match r.count(what, max, min_len)? {
        0 => Err(DecodeError::FieldTooLarge {
            what,
            len: 0,
            max: max as u64,
        }),
        n => Ok(n),
    }
}

/// Most files one [`Wants`] may ask for.
pub const MAX_WANTS: usize = 1024;

/// Receiver → sender: small files wanted whole, by entry number (WANTS).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Wants(pub Vec<u64>);

impl Codec for Wants {
    fn encode(&self, buf: &mut Vec<u8>) {
        put_entry_numbers(buf, &self.0);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        entry_numbers(r, "file request batch", MAX_WANTS).map(Wants)
    }
}

/// A batch of entry numbers (WANTS, PLACED): the count, then each number.
pub(super) fn put_entry_numbers(buf: &mut Vec<u8>, numbers: &[u64]) {
    put_varint(buf, numbers.len() as u64);
    for i in numbers {
        put_varint(buf, *i);
    }
}

/// Reads what [`put_entry_numbers`] wrote: at least one, at most `max`.
pub(super) fn entry_numbers(
    r: &mut Reader<'_>,
    what: &'static str,
    max: usize,
) -> Result<Vec<u64>, DecodeError> {
    let n = batch_count(r, what, max, 1)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(r.varint()?);
    }
    Ok(out)
}

/// One answer in a FILES message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileRecord<'a> {
    /// The file, whole.
    Whole(WholeFile<'a>),
    /// It could not be sent (why).
    Failed(&'a str),
    /// It vanished before it could be sent.
    Vanished(&'a str),
}

const REC_WHOLE: u8 = 0;
const REC_FAILED: u8 = 1;
const REC_VANISHED: u8 = 2;

impl FileRecord<'_> {
    /// Appends the record.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        match self {
            FileRecord::Whole(w) => {
                let slot = begin_whole_record(buf, &w.meta);
                buf[slot..slot + 32].copy_from_slice(&w.hash);
                buf.extend_from_slice(w.data);
            }
            FileRecord::Failed(m) => {
                buf.push(REC_FAILED);
                crate::codec::put_str(buf, m);
            }
            FileRecord::Vanished(m) => {
                buf.push(REC_VANISHED);
                crate::codec::put_str(buf, m);
            }
        }
    }
}

/// Starts a [`FileRecord::Whole`] in `buf` whose data the caller appends
/// next, exactly `meta.size` bytes (read straight from the file, with no copy in
/// between); returns the offset of the 32-byte hash, zeroed, for the caller to
/// fill once the data is in. The result encodes as `FileRecord::Whole` does.
pub fn begin_whole_record(buf: &mut Vec<u8>, meta: &FileMeta) -> usize {
    let mut head = Vec::with_capacity(64);
    let slot = begin_whole_file(&mut head, meta);
    buf.push(REC_WHOLE);
    put_varint(buf, head.len() as u64 + meta.size);
    let at = buf.len();
    buf.extend_from_slice(&head);
    at + slot
}

/// Starts a [`WholeFile`] (a FILE payload) in `buf` in the same way: metadata
/// and a zeroed 32-byte hash slot, whose offset is returned; the caller appends
/// exactly `meta.size` bytes of data and fills the slot.
pub fn begin_whole_file(buf: &mut Vec<u8>, meta: &FileMeta) -> usize {
    meta.encode(buf);
    let slot = buf.len();
    buf.resize(slot + 32, 0);
    slot
}

/// Iterates over the records of a FILES payload.
#[derive(Debug)]
pub struct FileRecords<'a> {
    r: Reader<'a>,
}

impl<'a> FileRecords<'a> {
    pub fn new(payload: &'a [u8]) -> Self {
        FileRecords {
            r: Reader::new(payload),
        }
    }
}

impl<'a> Iterator for FileRecords<'a> {
    type Item = Result<FileRecord<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.r.is_empty() {
            return None;
        }
        Some((|| match self.r.u8()? {
            REC_WHOLE => {
                let body = self.r.bytes("file record", crate::MAX_PAYLOAD)?;
                Ok(FileRecord::Whole(WholeFile::decode(body)?))
            }
            REC_FAILED => Ok(FileRecord::Failed(self.r.str("failure", 64 << 10)?)),
            REC_VANISHED => Ok(FileRecord::Vanished(self.r.str("failure", 64 << 10)?)),
            tag => Err(DecodeError::InvalidTag {
                what: "file record",
                tag,
            }),
        })())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode_exact, encode_to_vec};

    #[test]
    fn roundtrips_and_rejections() {
        for w in [
            Want {
                index: 70_000,
                how: WantHow::Delta,
                chunk_bits: 16,
                basis_size: 5 << 30,
            },
            Want {
                index: 1,
                how: WantHow::Full,
                chunk_bits: 0,
                basis_size: 0,
            },
        ] {
            assert_eq!(decode_exact::<Want>(&encode_to_vec(&w)).unwrap(), w);
        }
        assert!(decode_exact::<Want>(&[0, 2]).is_err());
        // A delta names its chunking.
        assert!(decode_exact::<Want>(&[0, 1]).is_err());
        assert!(decode_exact::<Want>(&[0, 1, 13]).is_err());
        assert!(decode_exact::<Want>(&[0, 9]).is_err());
        assert!(decode_exact::<Want>(&[0]).is_err());
        let m = FileMeta {
            size: 9,
            mtime: (-5, 3),
            mode: 0o4755,
        };
        assert_eq!(decode_exact::<FileMeta>(&encode_to_vec(&m)).unwrap(), m);
        let bad = FileMeta {
            mode: 0o100644,
            ..m
        };
        assert!(decode_exact::<FileMeta>(&encode_to_vec(&bad)).is_err());
        let e = End {
            size: 1,
            digest: [1; 32],
        };
        let bytes = encode_to_vec(&e);
        assert_eq!(decode_exact::<End>(&bytes).unwrap(), e);
        assert!(decode_exact::<End>(&bytes[..20]).is_err());
        let w = WholeFile {
            meta: FileMeta { size: 3, ..m },
            hash: [2; 32],
            data: b"abc",
        };
        let mut buf = Vec::new();
        w.encode(&mut buf);
        assert_eq!(WholeFile::decode(&buf).unwrap(), w);
        assert!(WholeFile::decode(&buf[..buf.len() - 1]).is_err());
        // A FILE payload built in place (data read straight after the head).
        let mut file = Vec::new();
        let slot = begin_whole_file(&mut file, &w.meta);
        file.extend_from_slice(w.data);
        file[slot..slot + 32].copy_from_slice(&w.hash);
        assert_eq!(WholeFile::decode(&file).unwrap(), w);

        let ws = Wants(vec![1, 300, 70_000]);
        assert_eq!(decode_exact::<Wants>(&encode_to_vec(&ws)).unwrap(), ws);
        assert!(decode_exact::<Wants>(&[0]).is_err());
        assert!(decode_exact::<Wants>(&[0x7f]).is_err());
        let mut payload = Vec::new();
        let recs = [
            FileRecord::Whole(w.clone()),
            FileRecord::Failed("no"),
            FileRecord::Vanished("gone"),
        ];
        for r in &recs {
            r.encode(&mut payload);
        }
        let back: Vec<_> = FileRecords::new(&payload)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(back, recs);
        assert!(FileRecords::new(&[9]).any(|r| r.is_err()));
        // A record built in place encodes exactly as FileRecord::Whole does.
        let mut in_place = Vec::new();
        let slot = begin_whole_record(&mut in_place, &w.meta);
        in_place.extend_from_slice(w.data);
        in_place[slot..slot + 32].copy_from_slice(&w.hash);
        let mut whole = Vec::new();
        FileRecord::Whole(w.clone()).encode(&mut whole);
        assert_eq!(in_place, whole);
        assert!(FileRecords::new(&payload[..payload.len() - 1]).any(|r| r.is_err()));
    }

    #[test]
    fn checks_and_verdicts_roundtrip_and_reject_bad_input() {
        let c = Checks(vec![(0, [1; CHECK_HASH]), (83_000, [2; CHECK_HASH])]);
        let bytes = encode_to_vec(&c);
        assert_eq!(bytes.len(), 1 + 1 + 16 + 3 + 16);
        assert_eq!(decode_exact::<Checks>(&bytes).unwrap(), c);
        assert!(decode_exact::<Checks>(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode_exact::<Checks>(&[0]).is_err(), "an empty batch");
        // A count beyond the limit (or the bytes present) allocates nothing.
        let mut huge = Vec::new();
        crate::codec::put_varint(&mut huge, u64::MAX);
        assert!(decode_exact::<Checks>(&huge).is_err());
        let mut over = Vec::new();
        crate::codec::put_varint(&mut over, MAX_CHECKS as u64 + 1);
        over.resize(over.len() + (MAX_CHECKS + 1) * 17, 0);
        assert!(decode_exact::<Checks>(&over).is_err());

        let m = FileMeta {
            size: 5,
            mtime: (1, 2),
            mode: 0o644,
        };
        let vs = [
            Verdict::Same,
            Verdict::SameMeta(m),
            Verdict::Differs,
            Verdict::Failed("denied"),
            Verdict::Vanished("gone"),
        ];
        let mut payload = Vec::new();
        for v in &vs {
            v.encode(&mut payload);
        }
        assert_eq!(Verdict::decode_all(&payload, 5).unwrap(), vs);
        assert!(Verdict::decode_all(&payload, 4).is_err(), "one too many");
        assert!(Verdict::decode_all(&payload, 6).is_err(), "one too few");
        assert!(Verdict::decode_all(&payload[..payload.len() - 1], 5).is_err());
        assert!(Verdict::decode_all(&[9], 1).is_err(), "unknown tag");
        assert!(Verdict::decode_all(&[], 0).unwrap().is_empty());
    }
}
