//! The receiver's closing report: counts, bytes, and the files that failed.

use crate::codec::{put_bytes, put_str, put_varint, Codec, Reader};
use crate::DecodeError;

use super::entry::MAX_PATH;

/// Most per-file errors one report carries (the count of the rest is kept).
pub const MAX_ERRORS: usize = 10_000;

/// One file that failed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsError {
    pub path: Vec<u8>,
    pub message: String,
}

/// Receiver → sender at the end of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub files_checked: u64,
    pub files_transferred: u64,
    pub bytes_literal: u64,
    pub bytes_reused: u64,
    pub total_size: u64,
    pub errors: Vec<StatsError>,
    /// Errors beyond [`MAX_ERRORS`] that were counted but not listed.
    pub errors_omitted: u64,
}

impl Codec for Stats {
    fn encode(&self, buf: &mut Vec<u8>) {
        for v in [
            self.files_checked,
            self.files_transferred,
            self.bytes_literal,
            self.bytes_reused,
            self.total_size,
            self.errors_omitted,
        ] {
            put_varint(buf, v);
        }
        put_varint(buf, self.errors.len().min(MAX_ERRORS) as u64);
        for e in self.errors.iter().take(MAX_ERRORS) {
            put_bytes(buf, &e.path);
            put_str(buf, &e.message);
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut v = [0u64; 6];
        for x in &mut v {
            *x = r.varint()?;
        }
        let n = r.varint()?;
        if n > MAX_ERRORS as u64 || n > (r.remaining() / 2) as u64 {
            return Err(DecodeError::FieldTooLarge {
                what: "error list",
                len: n,
                max: MAX_ERRORS as u64,
            });
        }
        let mut errors = Vec::with_capacity(n as usize);
        for _ in 0..n {
            errors.push(StatsError {
                path: r.bytes("error path", MAX_PATH)?.to_vec(),
                message: r.str("error message", 64 << 10)?.to_string(),
            });
        }
        Ok(Stats {
            files_checked: v[0],
            files_transferred: v[1],
            bytes_literal: v[2],
            bytes_reused: v[3],
            total_size: v[4],
            errors_omitted: v[5],
            errors,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode_exact, encode_to_vec};

    #[test]
    fn stats_roundtrip_and_bounded_lists() {
        let s = Stats {
            files_checked: 10,
            files_transferred: 2,
            bytes_literal: 100,
            bytes_reused: 900,
            total_size: 1000,
            errors: vec![StatsError {
                path: b"x/\xff".to_vec(),
                message: "permission denied".into(),
            }],
            errors_omitted: 0,
        };
        assert_eq!(decode_exact::<Stats>(&encode_to_vec(&s)).unwrap(), s);
        let mut hostile = vec![0u8; 6];
        put_varint(&mut hostile, u64::MAX);
        assert!(decode_exact::<Stats>(&hostile).is_err());
    }
}
