//! The one encoding trait and the primitives every message is built from.
//!
//! Following quinn-proto's `coding.rs`, there is a single [`Codec`] trait:
//! encoding appends to a `Vec<u8>` and cannot fail, decoding reads from a
//! [`Reader`] and returns a typed [`DecodeError`]. All integers are
//! big-endian; lengths and counters are LEB128 varints. Length-prefixed
//! strings are checked against the bytes actually present *before* anything
//! is allocated, so a hostile length costs nothing.

use crate::DecodeError;

/// A value with a wire encoding.
pub trait Codec: Sized {
    /// Appends the encoding of `self` to `buf`. Never fails.
    fn encode(&self, buf: &mut Vec<u8>);
    /// Reads one value from `r`, advancing it past the value.
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError>;
}

/// Encodes `value` into a fresh vector.
pub fn encode_to_vec<T: Codec>(value: &T) -> Vec<u8> {
    let mut buf = Vec::new();
    value.encode(&mut buf);
    buf
}

/// Decodes exactly one `T` from `buf`: leftover bytes are an error
/// ([`DecodeError::TrailingBytes`]).
pub fn decode_exact<T: Codec>(buf: &[u8]) -> Result<T, DecodeError> {
    let mut r = Reader::new(buf);
    let value = T::decode(&mut r)?;
    r.expect_end()?;
    Ok(value)
}

/// A cursor over a byte slice. On error its position is unspecified: decode
/// errors are fatal, so nobody resumes after one.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Whether everything has been read.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// How many bytes have been read so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Everything not yet read, consuming it.
    pub fn rest(&mut self) -> &'a [u8] {
        let rest = &self.buf[self.pos..];
        self.pos = self.buf.len();
        rest
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let have = self.remaining();
        if n > have {
            return Err(DecodeError::Truncated { needed: n, have });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    /// A big-endian `u16`.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        self.array().map(u16::from_be_bytes)
    }

    /// A big-endian `u32`.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        self.array().map(u32::from_be_bytes)
    }

    /// A big-endian `u64`.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        self.array().map(u64::from_be_bytes)
    }

    /// An unsigned LEB128 varint of at most 10 bytes, in its shortest form.
    ///
    /// Input that ends inside the varint is [`DecodeError::Truncated`];
    /// an overlong (non-minimal) or overflowing one is
    /// [`DecodeError::BadVarint`].
    pub fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for i in 0..10 {
            let byte = self.u8()?;
            if i == 9 && byte > 1 {
                // The tenth byte holds bit 63 only.
                return Err(DecodeError::BadVarint);
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                if byte == 0 && i > 0 {
                    // A final zero group: the same value fits in fewer bytes.
                    return Err(DecodeError::BadVarint);
                }
                return Ok(value);
            }
        }
        Err(DecodeError::BadVarint)
    }

    /// A varint length prefix followed by that many bytes. The length is
    /// checked against `max` and against the bytes present before anything
    /// is read or allocated.
    pub fn bytes(&mut self, what: &'static str, max: usize) -> Result<&'a [u8], DecodeError> {
        let len = self.varint()?;
        if len > max as u64 {
            return Err(DecodeError::FieldTooLarge {
                what,
                len,
                max: max as u64,
            });
        }
        // `len <= max` fits in usize.
        self.take(len as usize)
    }

    /// A varint count of items that follow, each at least `min_len` bytes long:
    /// refused when over `max` or when the bytes present cannot hold that many
    /// items, so a hostile count allocates nothing.
    pub fn count(
        &mut self,
        what: &'static str,
        max: usize,
        min_len: usize,
    ) -> Result<usize, DecodeError> {
        let n = self.varint()?;
        let room = (self.remaining() / min_len.max(1)).min(max);
        if n > room as u64 {
            return Err(DecodeError::FieldTooLarge {
                what,
                len: n,
                max: room as u64,
            });
        }
        // `n <= room` fits in usize.
        Ok(n as usize)
    }

    /// Like [`Reader::bytes`], and the bytes must be UTF-8.
    pub fn str(&mut self, what: &'static str, max: usize) -> Result<&'a str, DecodeError> {
        let bytes = self.bytes(what, max)?;
        std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8 { what })
    }

    /// `Ok` when everything has been read, [`DecodeError::TrailingBytes`]
    /// otherwise.
    pub fn expect_end(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }
}

/// Appends `v` as an unsigned LEB128 varint (1 to 10 bytes).
pub fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// How many bytes [`put_varint`] writes for `v`.
pub fn varint_len(v: u64) -> usize {
    let bits = 64 - v.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

/// Appends a varint length and then `bytes`.
pub fn put_bytes(buf: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(buf, bytes.len() as u64);
    buf.extend_from_slice(bytes);
}

/// Appends a varint length and then the UTF-8 of `s`.
pub fn put_str(buf: &mut Vec<u8>, s: &str) {
    put_bytes(buf, s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn counts_are_bounded_by_the_limit_and_the_bytes_present() {
        let mut buf = Vec::new();
        put_varint(&mut buf, 3);
        buf.extend_from_slice(&[0; 6]);
        assert_eq!(Reader::new(&buf).count("x", 10, 2), Ok(3));
        assert!(
            Reader::new(&buf).count("x", 2, 2).is_err(),
            "over the limit"
        );
        assert!(
            Reader::new(&buf).count("x", 10, 3).is_err(),
            "not enough bytes"
        );
        let mut huge = Vec::new();
        put_varint(&mut huge, u64::MAX);
        assert!(Reader::new(&huge).count("x", usize::MAX, 1).is_err());
        assert_eq!(Reader::new(&[0]).count("x", 0, 0), Ok(0));
    }

    #[test]
    fn fixed_width_integers_are_big_endian() {
        let mut r = Reader::new(&[1, 0, 2, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 4, 5]);
        assert_eq!(r.u16().unwrap(), 0x0100);
        assert_eq!(r.u8().unwrap(), 2);
        assert_eq!(r.u32().unwrap(), 3);
        assert_eq!(r.u64().unwrap(), 4);
        assert_eq!(r.remaining(), 1);
        assert_eq!(r.expect_end(), Err(DecodeError::TrailingBytes(1)));
        assert_eq!(r.u16(), Err(DecodeError::Truncated { needed: 2, have: 1 }));
    }

    #[test]
    fn varint_known_encodings() {
        for (v, enc) in [
            (0u64, &[0u8][..]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (300, &[0xac, 0x02]),
            (
                u64::MAX,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ] {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            assert_eq!(buf, enc);
            assert_eq!(varint_len(v), enc.len());
            let mut r = Reader::new(&buf);
            assert_eq!(r.varint().unwrap(), v);
            assert!(r.is_empty());
        }
    }

    #[test]
    fn varint_rejects_bad_forms() {
        // Overlong: 1 encoded in two bytes.
        assert_eq!(
            Reader::new(&[0x81, 0x00]).varint(),
            Err(DecodeError::BadVarint)
        );
        // Overflow: the tenth byte carries more than bit 63.
        let mut over = vec![0xff; 9];
        over.push(0x02);
        assert_eq!(Reader::new(&over).varint(), Err(DecodeError::BadVarint));
        // Eleven bytes.
        let long = [0x80u8; 11];
        assert_eq!(Reader::new(&long).varint(), Err(DecodeError::BadVarint));
        // Ends inside the varint.
        assert_eq!(
            Reader::new(&[0x80]).varint(),
            Err(DecodeError::Truncated { needed: 1, have: 0 })
        );
    }

    #[test]
    fn strings_check_length_before_allocating() {
        // Claims u64::MAX / 2 bytes with 1 byte present.
        let mut buf = Vec::new();
        put_varint(&mut buf, u64::MAX / 2);
        buf.push(b'x');
        assert!(matches!(
            Reader::new(&buf).bytes("subject", usize::MAX),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(
            Reader::new(&buf).bytes("subject", 10),
            Err(DecodeError::FieldTooLarge {
                what: "subject",
                ..
            })
        ));
        let bad = [2u8, 0xc3, 0x28];
        assert_eq!(
            Reader::new(&bad).str("arg", 10),
            Err(DecodeError::InvalidUtf8 { what: "arg" })
        );
        let mut good = Vec::new();
        put_str(&mut good, "héllo");
        assert_eq!(Reader::new(&good).str("arg", 10).unwrap(), "héllo");
    }

    proptest! {
        #[test]
        fn varint_roundtrip(v: u64) {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            prop_assert_eq!(buf.len(), varint_len(v));
            let mut r = Reader::new(&buf);
            prop_assert_eq!(r.varint().unwrap(), v);
            prop_assert!(r.is_empty());
        }

        #[test]
        fn varint_never_panics(bytes: Vec<u8>) {
            let _ = Reader::new(&bytes).varint();
        }
    }
}
