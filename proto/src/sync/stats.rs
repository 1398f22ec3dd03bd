//! The receiver's closing report: counts, bytes, and the files that failed;
//! what it made to put the destination in place; with
//! `--remove-source-files`, the entries it has in place (as they are
//! done) and the sender's failures to remove them.

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
    /// The sizes of those files (or of those a dry run would transfer):
    /// rsync's "Total transferred file size".
    pub transferred_size: u64,
    pub bytes_literal: u64,
    pub bytes_reused: u64,
    pub total_size: u64,
    /// Entries removed by `--delete` (or that would be, in a dry run).
    pub deleted: u64,
    /// Deletions `--max-delete` held back.
    pub deletes_skipped: u64,
    /// Failures: the run did not do everything it was asked.
    pub errors: Vec<StatsError>,
    /// Errors beyond [`MAX_ERRORS`] that were counted but not listed.
    pub errors_omitted: u64,
    /// Source files that disappeared before they could be sent (rsync's
    /// "vanished"), listed apart from real errors.
    pub vanished: Vec<StatsError>,
    /// Things skipped on purpose that the user should know about (a device node
    /// a non-root receiver cannot create, deletion skipped after an I/O error).
    pub warnings: Vec<StatsError>,
    /// What rsync says as information (hidden by `-q`): the entry, and the
    /// whole line (`skipping non-regular file "l"`).
    pub notices: Vec<StatsError>,
}

fn put_list(buf: &mut Vec<u8>, list: &[StatsError]) {
    put_varint(buf, list.len().min(MAX_ERRORS) as u64);
    for e in list.iter().take(MAX_ERRORS) {
        put_bytes(buf, &e.path);
        put_str(buf, &e.message);
    }
}

fn get_list(r: &mut Reader<'_>) -> Result<Vec<StatsError>, DecodeError> {
    let n = r.count("error list", MAX_ERRORS, 2)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(StatsError {
            path: r.bytes("error path", MAX_PATH)?.to_vec(),
            message: r.str("error message", 64 << 10)?.to_string(),
        });
    }
    Ok(out)
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
            self.deleted,
            self.deletes_skipped,
            self.transferred_size,
        ] {
            put_varint(buf, v);
        }
        put_list(buf, &self.errors);
        put_list(buf, &self.vanished);
        put_list(buf, &self.warnings);
        put_list(buf, &self.notices);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut v = [0u64; 9];
        for x in &mut v {
            *x = r.varint()?;
        }
        let errors = get_list(r)?;
        let vanished = get_list(r)?;
        let warnings = get_list(r)?;
        let notices = get_list(r)?;
        Ok(Stats {
            files_checked: v[0],
            files_transferred: v[1],
            bytes_literal: v[2],
            bytes_reused: v[3],
            total_size: v[4],
            errors_omitted: v[5],
            deleted: v[6],
            deletes_skipped: v[7],
            transferred_size: v[8],
            errors,
            vanished,
            warnings,
            notices,
        })
    }
}

/// Most entry numbers one [`Placed`] carries.
pub const MAX_PLACED: usize = 4096;

/// Receiver → sender (PLACED), with `--remove-source-files`: entries (by
/// number) the receiver now has as listed, transferred or up to date.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Placed(pub Vec<u64>);

impl Codec for Placed {
    fn encode(&self, buf: &mut Vec<u8>) {
        super::want::put_entry_numbers(buf, &self.0);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        super::want::entry_numbers(r, "placed entries", MAX_PLACED).map(Placed)
    }
}

/// Receiver → sender (MADE), before anything else it says: the directories
/// it made to put the destination in place (or a dry run would make), for
/// rsync's "created directory DST" line, which only the client can word
/// (it knows the destination as the user typed it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Made {
    /// How many directories, the destination's parents included.
    pub dirs: u64,
    /// Whether the destination itself is one of them (otherwise, a single
    /// file taking the destination's name, only its parents are).
    pub itself: bool,
}

impl Codec for Made {
    fn encode(&self, buf: &mut Vec<u8>) {
        put_varint(buf, self.dirs);
        buf.push(self.itself as u8);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let dirs = r.varint()?;
        let itself = match r.u8()? {
            0 => false,
            1 => true,
            tag => return Err(DecodeError::InvalidTag { what: "made", tag }),
        };
        Ok(Made { dirs, itself })
    }
}

/// Sender → receiver (SENDER_ERRORS), after the report: source files the
/// sender did not remove, and why.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SenderErrors(pub Vec<StatsError>);

impl Codec for SenderErrors {
    fn encode(&self, buf: &mut Vec<u8>) {
        put_list(buf, &self.0);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        get_list(r).map(SenderErrors)
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
            transferred_size: 1000,
            bytes_literal: 100,
            bytes_reused: 900,
            total_size: 1000,
            errors: vec![StatsError {
                path: b"x/\xff".to_vec(),
                message: "permission denied".into(),
            }],
            errors_omitted: 0,
            deleted: 4,
            deletes_skipped: 2,
            vanished: vec![StatsError {
                path: b"gone".to_vec(),
                message: "vanished".into(),
            }],
            warnings: Vec::new(),
            notices: vec![StatsError {
                path: b"l".to_vec(),
                message: "skipping non-regular file \"l\"".into(),
            }],
        };
        assert_eq!(decode_exact::<Stats>(&encode_to_vec(&s)).unwrap(), s);
        let mut hostile = vec![0u8; 9];
        put_varint(&mut hostile, u64::MAX);
        assert!(decode_exact::<Stats>(&hostile).is_err());
    }

    #[test]
    fn made_roundtrips_and_rejects_a_bad_flag() {
        for m in [
            Made::default(),
            Made {
                dirs: 3,
                itself: true,
            },
        ] {
            assert_eq!(decode_exact::<Made>(&encode_to_vec(&m)).unwrap(), m);
        }
        assert!(decode_exact::<Made>(&[1, 2]).is_err());
        assert!(decode_exact::<Made>(&[1]).is_err());
    }

    #[test]
    fn placed_and_sender_errors_roundtrip_and_are_bounded() {
        let p = Placed(vec![0, 7, u64::MAX]);
        assert_eq!(decode_exact::<Placed>(&encode_to_vec(&p)).unwrap(), p);
        let mut hostile = Vec::new();
        put_varint(&mut hostile, MAX_PLACED as u64 + 1);
        assert!(decode_exact::<Placed>(&hostile).is_err());
        let mut short = Vec::new();
        put_varint(&mut short, 3);
        put_varint(&mut short, 1);
        assert!(decode_exact::<Placed>(&short).is_err());
        let e = SenderErrors(vec![StatsError {
            path: b"a/b".to_vec(),
            message: "changed since it was sent: not removed".into(),
        }]);
        assert_eq!(decode_exact::<SenderErrors>(&encode_to_vec(&e)).unwrap(), e);
        let mut hostile = Vec::new();
        put_varint(&mut hostile, u64::MAX);
        assert!(decode_exact::<SenderErrors>(&hostile).is_err());
    }
}
