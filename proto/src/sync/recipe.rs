//! Recipes: how the receiver rebuilds a file from its old chunks and new bytes.
//!
//! A RECIPE payload is a sequence of operations, in file order: copy a run of the
//! receiver's own chunks (by index into the signature it sent), take these new
//! bytes as one piece, or leave a hole of this many zero bytes (a sparse file's
//! hole: neither sent nor written). Literal boundaries travel with the data so the
//! receiver can hash each piece once and check the digest at the end.

use crate::codec::{put_varint, Reader};
use crate::DecodeError;

const COPY: u8 = 0;
const LITERAL: u8 = 1;
const HOLE: u8 = 2;

/// One recipe step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecipeOp<'a> {
    /// Copy `count` consecutive chunks of the receiver's signature from `start`.
    Copy { start: u64, count: u64 },
    /// New bytes forming exactly one piece.
    Literal(&'a [u8]),
    /// A hole: this many zero bytes, not written.
    Hole(u64),
}

/// Builds one RECIPE payload, coalescing consecutive copies.
#[derive(Debug, Default)]
pub struct Recipe {
    buf: Vec<u8>,
    run: Option<(u64, u64)>,
    literal_bytes: usize,
}

impl Recipe {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends "copy chunk `index`" (merged with the previous copy when adjacent).
    pub fn copy(&mut self, index: u64) {
        match &mut self.run {
            Some((start, count)) if *start + *count == index => *count += 1,
            _ => {
                self.flush_run();
                self.run = Some((index, 1));
            }
        }
    }

    /// Appends one literal chunk.
    pub fn literal(&mut self, data: &[u8]) {
        self.flush_run();
        self.buf.push(LITERAL);
        put_varint(&mut self.buf, data.len() as u64);
        self.buf.extend_from_slice(data);
        self.literal_bytes += data.len();
    }

    /// Appends a hole of `len` zero bytes (nothing for 0).
    pub fn hole(&mut self, len: u64) {
        if len == 0 {
            return;
        }
        self.flush_run();
        self.buf.push(HOLE);
        put_varint(&mut self.buf, len);
    }

    fn flush_run(&mut self) {
        if let Some((start, count)) = self.run.take() {
            self.buf.push(COPY);
            put_varint(&mut self.buf, start);
            put_varint(&mut self.buf, count);
        }
    }

    /// Encoded size so far (to decide when to send).
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True when nothing was added.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty() && self.run.is_none()
    }

    /// True when the payload holds new bytes (worth compressing).
    pub fn has_literals(&self) -> bool {
        self.literal_bytes > 0
    }

    /// The payload; the builder is empty afterwards.
    pub fn take(&mut self) -> Vec<u8> {
        self.flush_run();
        self.literal_bytes = 0;
        std::mem::take(&mut self.buf)
    }
}

/// Iterates over the steps of a RECIPE payload.
#[derive(Debug)]
pub struct RecipeReader<'a> {
    r: Reader<'a>,
    max_chunk: usize,
}

impl<'a> RecipeReader<'a> {
    /// `max_chunk` bounds a literal chunk's length.
    pub fn new(payload: &'a [u8], max_chunk: usize) -> Self {
        RecipeReader {
            r: Reader::new(payload),
            max_chunk,
        }
    }
}

impl<'a> Iterator for RecipeReader<'a> {
    type Item = Result<RecipeOp<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.r.is_empty() {
            return None;
        }
        Some((|| match self.r.u8()? {
            COPY => {
                let start = self.r.varint()?;
                let count = self.r.varint()?;
                if count == 0 {
                    return Err(DecodeError::InvalidTag {
                        what: "empty copy run",
                        tag: COPY,
                    });
                }
                Ok(RecipeOp::Copy { start, count })
            }
            LITERAL => {
                let data = self.r.bytes("literal chunk", self.max_chunk)?;
                if data.is_empty() {
                    return Err(DecodeError::InvalidTag {
                        what: "empty literal",
                        tag: LITERAL,
                    });
                }
                Ok(RecipeOp::Literal(data))
            }
            HOLE => match self.r.varint()? {
                0 => Err(DecodeError::InvalidTag {
                    what: "empty hole",
                    tag: HOLE,
                }),
                len => Ok(RecipeOp::Hole(len)),
            },
            tag => Err(DecodeError::InvalidTag {
                what: "recipe op",
                tag,
            }),
        })())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_coalesce_and_everything_roundtrips() {
        let mut r = Recipe::new();
        r.copy(3);
        r.copy(4);
        r.copy(5);
        r.literal(b"new");
        r.hole(1 << 40);
        r.copy(9);
        assert!(r.has_literals());
        let payload = r.take();
        assert!(r.is_empty());
        let ops: Vec<_> = RecipeReader::new(&payload, 64)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            ops,
            vec![
                RecipeOp::Copy { start: 3, count: 3 },
                RecipeOp::Literal(b"new"),
                RecipeOp::Hole(1 << 40),
                RecipeOp::Copy { start: 9, count: 1 }
            ]
        );
    }

    #[test]
    fn malformed_recipes_are_errors() {
        for bad in [
            &[7u8][..],
            &[COPY, 1, 0],
            &[LITERAL, 0],
            &[LITERAL, 100, 1],
            &[COPY],
            &[HOLE, 0],
            &[HOLE],
        ] {
            assert!(
                RecipeReader::new(bad, 64).any(|op| op.is_err()),
                "{bad:?} decoded"
            );
        }
    }
}
