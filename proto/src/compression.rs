//! Payload compression: the algorithm codes on the wire and bounded
//! (bomb-proof) compress/decompress helpers.
//!
//! [`Compression`] is a newtype over the wire byte with named constants (as
//! rustls does for its codes), so a code from a newer peer still decodes and
//! can be reported or ignored instead of failing the whole message.
//! [`decompress`] never allocates more than the caller's `max_len`, whatever
//! the compressed data claims.

use std::fmt;
use std::str::FromStr;

use crate::DecodeError;

/// A compression algorithm, as its wire code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Compression(pub u8);

impl Compression {
    /// No compression.
    pub const NONE: Self = Self(0);
    /// LZ4 block format, with the uncompressed length in front (u32, LE).
    pub const LZ4: Self = Self(1);
    /// A zstd frame (at the sender's level: [`ZSTD_DEFAULT_LEVEL`] unless
    /// chosen).
    pub const ZSTD: Self = Self(2);

    /// Every algorithm this build knows, fastest to decode first.
    pub const ALL: [Self; 3] = [Self::NONE, Self::LZ4, Self::ZSTD];

    /// Whether this build can compress and decompress with it.
    pub fn is_known(self) -> bool {
        self.0 <= 2
    }

    /// `"none"`, `"lz4"`, `"zstd"`, or `"unknown"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::NONE => "none",
            Self::LZ4 => "lz4",
            Self::ZSTD => "zstd",
            _ => "unknown",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_known() {
            f.write_str(self.name())
        } else {
            write!(f, "compression {}", self.0)
        }
    }
}

/// The error of parsing a [`Compression`] from a name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown compression {0:?} (expected none, lz4 or zstd)")]
pub struct UnknownCompressionName(pub String);

impl FromStr for Compression {
    type Err = UnknownCompressionName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(Self::NONE),
            "lz4" => Ok(Self::LZ4),
            "zstd" => Ok(Self::ZSTD),
            _ => Err(UnknownCompressionName(s.to_owned())),
        }
    }
}

/// The zstd level a sender uses unless told otherwise: 1, the fastest of
/// the normal levels. The level is the sender's choice alone: any zstd frame
/// decodes the same way.
pub const ZSTD_DEFAULT_LEVEL: i32 = 1;

/// The zstd levels a sender may choose (rsync's `--compress-level` for zstd):
/// the fast (negative) levels, 0 for zstd's own default (3), and 1 to 22.
pub fn zstd_levels() -> std::ops::RangeInclusive<i32> {
    zstd::compression_level_range()
}

thread_local! {
    /// A compression context and the level it is set to.
    static ZSTD_C: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
    static ZSTD_D: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// Appends `data` compressed with `alg` to `out` (zstd at
/// [`ZSTD_DEFAULT_LEVEL`]).
///
/// [`Compression::NONE`] (and, since encoding cannot fail, an unknown code)
/// appends `data` as it is. The LZ4 form is the block format with the
/// uncompressed length in front as a little-endian `u32`.
pub fn compress(alg: Compression, data: &[u8], out: &mut Vec<u8>) {
    compress_at(alg, ZSTD_DEFAULT_LEVEL, data, out)
}

/// [`compress`] with zstd at `level` (clamped to [`zstd_levels`]; LZ4 has
/// one level).
pub fn compress_at(alg: Compression, level: i32, data: &[u8], out: &mut Vec<u8>) {
    match alg {
        Compression::LZ4 => out.extend_from_slice(&lz4_flex::block::compress_prepend_size(data)),
        Compression::ZSTD => {
            // One context per thread: creating one costs more than compressing
            // a small message. Only allocation failure can make compression
            // into a buffer of compress_bound() bytes fail.
            let start = out.len();
            out.resize(start + zstd::zstd_safe::compress_bound(data.len()), 0);
            let (low, high) = zstd_levels().into_inner();
            let level = level.clamp(low, high);
            let n = ZSTD_C.with(|c| {
                let mut c = c.borrow_mut();
                let (at, c) = c.get_or_insert_with(|| {
                    let c = zstd::bulk::Compressor::new(level).expect("a zstd context");
                    (level, c)
                });
                if *at != level {
                    c.set_compression_level(level)
                        .expect("a zstd level within its range");
                    *at = level;
                }
                c.compress_to_buffer(data, &mut out[start..])
                    .expect("zstd compression into a bounded buffer")
            });
            out.truncate(start + n);
        }
        _ => out.extend_from_slice(data),
    }
}

/// Appends the decompression of `data` with `alg` to `out`.
///
/// At most `max_len` bytes are produced or allocated: data that claims (or
/// turns out) to be longer is an error, [`DecodeError::FieldTooLarge`] when
/// the claim is visible up front, [`DecodeError::Decompress`] otherwise. On
/// error `out` is left as it was.
pub fn decompress(
    alg: Compression,
    data: &[u8],
    max_len: usize,
    out: &mut Vec<u8>,
) -> Result<(), DecodeError> {
    let start = out.len();
    let result = match alg {
        Compression::NONE => {
            if data.len() > max_len {
                Err(too_large(data.len() as u64, max_len))
            } else {
                out.extend_from_slice(data);
                Ok(())
            }
        }
        Compression::LZ4 => lz4_into(data, max_len, out),
        Compression::ZSTD => zstd_into(data, max_len, out),
        Compression(code) => Err(DecodeError::UnknownCompression(code)),
    };
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn too_large(len: u64, max_len: usize) -> DecodeError {
    DecodeError::FieldTooLarge {
        what: "decompressed payload",
        len,
        max: max_len as u64,
    }
}

fn lz4_into(data: &[u8], max_len: usize, out: &mut Vec<u8>) -> Result<(), DecodeError> {
    let alg = Compression::LZ4;
    let Some((size, block)) = data.split_first_chunk::<4>() else {
        return Err(DecodeError::Decompress {
            alg,
            reason: "missing the 4-byte length prefix".into(),
        });
    };
    let size = u32::from_le_bytes(*size) as usize;
    if size > max_len {
        return Err(too_large(size as u64, max_len));
    }
    let start = out.len();
    out.resize(start + size, 0);
    match lz4_flex::block::decompress_into(block, &mut out[start..]) {
        Ok(n) if n == size => Ok(()),
        Ok(n) => Err(DecodeError::Decompress {
            alg,
            reason: format!("expected {size} bytes, got {n}"),
        }),
        Err(e) => Err(DecodeError::Decompress {
            alg,
            reason: e.to_string(),
        }),
    }
}

fn zstd_into(data: &[u8], max_len: usize, out: &mut Vec<u8>) -> Result<(), DecodeError> {
    let alg = Compression::ZSTD;
    // The frame header may state the content size: refuse a bomb before
    // allocating anything, and allocate just enough for honest data.
    let capacity = match zstd::zstd_safe::get_frame_content_size(data) {
        Ok(Some(size)) if size > max_len as u64 => return Err(too_large(size, max_len)),
        Ok(Some(size)) => size as usize,
        Ok(None) => max_len,
        Err(_) => {
            return Err(DecodeError::Decompress {
                alg,
                reason: "not a zstd frame".into(),
            })
        }
    };
    let start = out.len();
    out.resize(start + capacity, 0);
    let n = ZSTD_D
        .with(|d| {
            let mut d = d.borrow_mut();
            let d = match &mut *d {
                Some(d) => d,
                None => d.insert(zstd::bulk::Decompressor::new()?),
            };
            d.decompress_to_buffer(data, &mut out[start..])
        })
        .map_err(|e| DecodeError::Decompress {
            alg,
            reason: e.to_string(),
        })?;
    out.truncate(start + n);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        b"jsync jsync jsync "
            .iter()
            .cycle()
            .take(10_000)
            .copied()
            .collect()
    }

    /// Text that compresses, but better at higher levels: words drawn by a
    /// small generator, so matches lie far apart.
    fn prose() -> Vec<u8> {
        let words = [
            "sync", "chunk", "delta", "peer", "circuit", "frame", "file", "hash",
        ];
        let mut x: u32 = 1;
        let mut out = Vec::new();
        while out.len() < 200_000 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            out.extend_from_slice(words[(x >> 16) as usize % words.len()].as_bytes());
            out.push(if x % 7 == 0 { b'\n' } else { b' ' });
        }
        out
    }

    #[test]
    fn zstd_levels_change_the_size_not_the_data() {
        let data = prose();
        let at = |level| {
            let mut out = Vec::new();
            compress_at(Compression::ZSTD, level, &data, &mut out);
            let mut back = Vec::new();
            decompress(Compression::ZSTD, &out, data.len(), &mut back).unwrap();
            assert_eq!(back, data, "level {level}");
            out.len()
        };
        // The one context per thread follows each call's level, both ways.
        let (fast, best, fast_again) = (at(1), at(19), at(1));
        assert!(
            best < fast * 9 / 10,
            "level 19: {best} bytes, level 1: {fast}"
        );
        assert_eq!(fast_again, fast);
        let mut plain = Vec::new();
        compress(Compression::ZSTD, &data, &mut plain);
        assert_eq!(plain.len(), fast, "the default level is 1");
        // Out of range levels are clamped, never a panic.
        assert_eq!(at(1000), at(*zstd_levels().end()));
        assert!(at(-1) > fast, "a fast level packs less");
    }

    #[test]
    fn names_display_and_parse() {
        for alg in Compression::ALL {
            assert!(alg.is_known());
            assert_eq!(alg.to_string().parse::<Compression>().unwrap(), alg);
        }
        assert_eq!("ZSTD".parse::<Compression>().unwrap(), Compression::ZSTD);
        assert!("brotli".parse::<Compression>().is_err());
        assert!(!Compression(9).is_known());
        assert_eq!(Compression(9).name(), "unknown");
        assert_eq!(Compression(9).to_string(), "compression 9");
    }

    #[test]
    fn roundtrip_each_algorithm() {
        let data = sample();
        for alg in Compression::ALL {
            let mut packed = vec![0xAA];
            compress(alg, &data, &mut packed);
            if alg != Compression::NONE {
                assert!(packed.len() < data.len() / 4, "{alg} did not compress");
            }
            let mut out = vec![0xBB];
            decompress(alg, &packed[1..], data.len(), &mut out).unwrap();
            assert_eq!(out[0], 0xBB);
            assert_eq!(&out[1..], &data[..]);
        }
    }

    #[test]
    fn bombs_are_refused_before_allocating() {
        let data = vec![0u8; 100_000];
        for alg in [Compression::LZ4, Compression::ZSTD, Compression::NONE] {
            let mut packed = Vec::new();
            compress(alg, &data, &mut packed);
            let mut out = Vec::new();
            let err = decompress(alg, &packed, 1000, &mut out).unwrap_err();
            assert!(
                matches!(
                    err,
                    DecodeError::FieldTooLarge {
                        len: 100_000,
                        max: 1000,
                        ..
                    }
                ),
                "{alg}: {err:?}"
            );
            assert!(out.capacity() < 100_000);
        }
        // An lz4 header claiming 4 GiB.
        let mut out = Vec::new();
        let err = decompress(
            Compression::LZ4,
            &[0xff, 0xff, 0xff, 0xff, 0],
            1 << 20,
            &mut out,
        )
        .unwrap_err();
        assert!(matches!(err, DecodeError::FieldTooLarge { .. }), "{err:?}");
    }

    #[test]
    fn zstd_without_content_size_is_still_bounded() {
        use std::io::Write;
        let mut enc = zstd::stream::Encoder::new(Vec::new(), 1).unwrap();
        enc.include_contentsize(false).unwrap();
        enc.write_all(&vec![7u8; 100_000]).unwrap();
        let packed = enc.finish().unwrap();
        assert!(matches!(
            zstd::zstd_safe::get_frame_content_size(&packed),
            Ok(None)
        ));
        let mut out = Vec::new();
        let err = decompress(Compression::ZSTD, &packed, 1000, &mut out).unwrap_err();
        assert!(matches!(err, DecodeError::Decompress { .. }), "{err:?}");
        assert!(out.is_empty());
        decompress(Compression::ZSTD, &packed, 100_000, &mut out).unwrap();
        assert_eq!(out, vec![7u8; 100_000]);
    }

    #[test]
    fn corrupt_data_is_an_error() {
        let data = sample();
        for alg in [Compression::LZ4, Compression::ZSTD] {
            let mut packed = Vec::new();
            compress(alg, &data, &mut packed);
            let cut = &packed[..packed.len() / 2];
            let mut out = vec![1, 2, 3];
            let err = decompress(alg, cut, 1 << 20, &mut out).unwrap_err();
            assert!(
                matches!(err, DecodeError::Decompress { .. }),
                "{alg}: {err:?}"
            );
            assert_eq!(out, [1, 2, 3]);
            let err = decompress(alg, &[1, 2], 1 << 20, &mut out).unwrap_err();
            assert!(
                matches!(err, DecodeError::Decompress { .. }),
                "{alg}: {err:?}"
            );
        }
        assert_eq!(
            decompress(Compression(7), b"x", 10, &mut Vec::new()),
            Err(DecodeError::UnknownCompression(7))
        );
    }
}
