//! Per-file requests and confirmations: what the receiver wants and has, the new
//! file's metadata, and the end-of-recipe check.

use crate::codec::{put_bytes, Codec, Reader};
use crate::DecodeError;

use super::entry::MAX_PATH;

/// How the receiver wants a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WantHow {
    /// It has nothing usable: send every byte.
    Full,
    /// It has an old version: its signature follows (`SIG` batches, `SIG_END`).
    Delta,
    /// Same size, different time (or `--checksum`): compare whole-file hashes
    /// first; the receiver's hash is in [`Want::hash`].
    HashCheck,
}

/// Receiver → sender: the first message on a file circuit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    /// Path relative to the transfer's base.
    pub path: Vec<u8>,
    pub how: WantHow,
    /// BLAKE3 of the receiver's file, for [`WantHow::HashCheck`].
    pub hash: Option<[u8; 32]>,
}

impl Codec for Want {
    fn encode(&self, buf: &mut Vec<u8>) {
        put_bytes(buf, &self.path);
        buf.push(match self.how {
            WantHow::Full => 0,
            WantHow::Delta => 1,
            WantHow::HashCheck => 2,
        });
        match &self.hash {
            Some(h) => {
                buf.push(1);
                buf.extend_from_slice(h);
            }
            None => buf.push(0),
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let path = r.bytes("wanted path", MAX_PATH)?.to_vec();
        let how = match r.u8()? {
            0 => WantHow::Full,
            1 => WantHow::Delta,
            2 => WantHow::HashCheck,
            tag => return Err(DecodeError::InvalidTag { what: "want", tag }),
        };
        let hash = match r.u8()? {
            0 => None,
            1 => Some(hash32(r)?),
            tag => {
                return Err(DecodeError::InvalidTag {
                    what: "hash flag",
                    tag,
                })
            }
        };
        if how == WantHow::HashCheck && hash.is_none() {
            return Err(DecodeError::InvalidTag {
                what: "hash check without a hash",
                tag: 2,
            });
        }
        Ok(Want { path, how, hash })
    }
}

pub(crate) fn hash32(r: &mut Reader<'_>) -> Result<[u8; 32], DecodeError> {
    let mut h = [0u8; 32];
    h.copy_from_slice(r.take(32)?);
    Ok(h)
}

/// The sender's view of the file it sends (META, SAME).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMeta {
    pub size: u64,
    pub mtime: (i64, u32),
    pub mode: u32,
}

impl Codec for FileMeta {
    fn encode(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&self.size.to_be_bytes());
        buf.extend_from_slice(&self.mtime.0.to_be_bytes());
        buf.extend_from_slice(&self.mtime.1.to_be_bytes());
        buf.extend_from_slice(&self.mode.to_be_bytes());
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let size = r.u64()?;
        let secs = r.u64()? as i64;
        let nanos = r.u32()?;
        if nanos >= 1_000_000_000 {
            return Err(DecodeError::FieldTooLarge {
                what: "mtime nanoseconds",
                len: u64::from(nanos),
                max: 999_999_999,
            });
        }
        let mode = r.u32()?;
        Ok(FileMeta {
            size,
            mtime: (secs, nanos),
            mode,
        })
    }
}

/// The end of a recipe: the new file's size and its chunk-list digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct End {
    pub size: u64,
    pub digest: [u8; 32],
}

impl Codec for End {
    fn encode(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&self.size.to_be_bytes());
        buf.extend_from_slice(&self.digest);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(End {
            size: r.u64()?,
            digest: hash32(r)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode_exact, encode_to_vec};

    #[test]
    fn roundtrips_and_rejections() {
        let w = Want {
            path: b"a/b\xff".to_vec(),
            how: WantHow::HashCheck,
            hash: Some([7; 32]),
        };
        assert_eq!(decode_exact::<Want>(&encode_to_vec(&w)).unwrap(), w);
        let bad = Want { hash: None, ..w };
        assert!(decode_exact::<Want>(&encode_to_vec(&bad)).is_err());
        let m = FileMeta {
            size: 9,
            mtime: (-5, 3),
            mode: 0o4755,
        };
        assert_eq!(decode_exact::<FileMeta>(&encode_to_vec(&m)).unwrap(), m);
        let e = End {
            size: 1,
            digest: [1; 32],
        };
        let bytes = encode_to_vec(&e);
        assert_eq!(decode_exact::<End>(&bytes).unwrap(), e);
        assert!(decode_exact::<End>(&bytes[..20]).is_err());
    }
}
