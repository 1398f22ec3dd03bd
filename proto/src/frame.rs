//! Framing of fragments on a byte stream, in two phases (as in mini-redis's
//! `frame.rs`): [`frame_len`] answers "is a whole frame at the front of this
//! buffer?", where "not yet" is a normal answer, then [`decode_frame`] parses
//! exactly one whole frame. The split keeps partial reads out of the parser
//! and lets a reader reject an oversized frame from its 5-byte header, before
//! buffering or allocating its body.
//!
//! Layout: a header of [`HEADER_LEN`] bytes, `len: u32` big-endian (bytes
//! after the header, at most [`MAX_FRAME`]) and `flags: u8` (low 4 bits: the
//! [`Compression`] of the payload, high 4 bits reserved, zero), then the body:
//! the fragment's fields (see [`crate::fragment`]) followed by the payload,
//! compressed as the flags say, running to the end of the frame.

use crate::codec::Reader;
use crate::compression::{compress_at, decompress, ZSTD_DEFAULT_LEVEL};
use crate::{Compression, DecodeError, Fragment};

/// Bytes in a frame header.
pub const HEADER_LEN: usize = 5;
/// Most (uncompressed) payload bytes in one fragment.
pub const MAX_PAYLOAD: usize = 4 << 20;
/// Most bytes after the header of one frame.
pub const MAX_FRAME: usize = MAX_PAYLOAD + (256 << 10);

/// Mask of the compression code in the flags byte.
const COMPRESSION_MASK: u8 = 0x0f;

/// Appends one frame carrying `frag` to `out`, its payload compressed with
/// `compression` when that makes it smaller (otherwise, or for
/// [`Compression::NONE`] or an unknown code, the payload goes as it is).
///
/// # Panics
///
/// In debug builds, when `frag` breaks a limit of the protocol
/// ([`Fragment::validate`]), e.g. a payload over [`MAX_PAYLOAD`]: splitting
/// data into fragments is the caller's job, and sending such a frame anyway
/// (in release builds) only gets it rejected by the peer.
pub fn encode_frame(frag: &Fragment, compression: Compression, out: &mut Vec<u8>) {
    encode_frame_at(frag, compression, ZSTD_DEFAULT_LEVEL, out)
}

/// [`encode_frame`] with zstd at `level` ([`compress_at`]): the level is the
/// sender's choice and does not show in the frame.
pub fn encode_frame_at(frag: &Fragment, compression: Compression, level: i32, out: &mut Vec<u8>) {
    debug_assert_eq!(frag.validate(), Ok(()), "fragment breaks protocol limits");
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    frag.encode_fields(out);
    let payload_at = out.len();
    let mut flags = Compression::NONE;
    if compression != Compression::NONE && compression.is_known() && !frag.payload.is_empty() {
        compress_at(compression, level, &frag.payload, out);
        if out.len() - payload_at < frag.payload.len() {
            flags = compression;
        } else {
            out.truncate(payload_at);
        }
    }
    if flags == Compression::NONE {
        out.extend_from_slice(&frag.payload);
    }
    let len = out.len() - start - HEADER_LEN;
    let len = u32::try_from(len).expect("frame length fits in u32");
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    out[start + 4] = flags.0;
}

/// Encodes the start of an uncompressed frame, everything but the payload,
/// which the caller sends right after it: for large payloads, which need not
/// be copied into the frame. `head + payload` equals [`encode_frame`] with
/// [`Compression::NONE`].
pub fn encode_frame_head(frag: &Fragment, out: &mut Vec<u8>) {
    debug_assert_eq!(frag.validate(), Ok(()), "fragment breaks protocol limits");
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    frag.encode_fields(out);
    let len = out.len() - start - HEADER_LEN + frag.payload.len();
    let len = u32::try_from(len).expect("frame length fits in u32");
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    out[start + 4] = Compression::NONE.0;
}

/// Encodes one frame into a fresh vector (see [`encode_frame`]).
pub fn frame_to_vec(frag: &Fragment, compression: Compression) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(frag, compression, &mut out);
    out
}

/// Parses a header: the body length and the payload's compression.
fn header(buf: &[u8]) -> Result<Option<(usize, Compression)>, DecodeError> {
    let Some(head) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    if len > MAX_FRAME {
        return Err(DecodeError::FrameTooLarge {
            len,
            max: MAX_FRAME,
        });
    }
    let flags = head[4];
    if flags & !COMPRESSION_MASK != 0 {
        return Err(DecodeError::ReservedFlags(flags));
    }
    let alg = Compression(flags & COMPRESSION_MASK);
    if !alg.is_known() {
        return Err(DecodeError::UnknownCompression(alg.0));
    }
    Ok(Some((len, alg)))
}

/// Phase one: the total length (header included) of the frame at the front
/// of `buf`, `Ok(None)` when more bytes are needed to know or to have it
/// all. Errors come from the header alone: a length over [`MAX_FRAME`], an
/// unknown compression, reserved flag bits.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, DecodeError> {
    Ok(header(buf)?
        .map(|(len, _)| HEADER_LEN + len)
        .filter(|&total| buf.len() >= total))
}

/// The total length (header included) of the frame that starts with `header`,
/// once just the header is known: lets a stream reader size its read exactly.
/// `Ok(None)` when fewer than [`HEADER_LEN`] bytes are given.
pub fn frame_len_from_header(header_bytes: &[u8]) -> Result<Option<usize>, DecodeError> {
    Ok(header(header_bytes)?.map(|(len, _)| HEADER_LEN + len))
}

/// Phase two: decodes `frame`, which must be exactly one whole frame, header
/// included. The payload is decompressed to at most [`MAX_PAYLOAD`] bytes.
pub fn decode_frame(frame: &[u8]) -> Result<Fragment, DecodeError> {
    let Some((len, alg)) = header(frame)? else {
        return Err(DecodeError::Truncated {
            needed: HEADER_LEN,
            have: frame.len(),
        });
    };
    let body = &frame[HEADER_LEN..];
    if body.len() < len {
        return Err(DecodeError::Truncated {
            needed: len,
            have: body.len(),
        });
    }
    if body.len() > len {
        return Err(DecodeError::TrailingBytes(body.len() - len));
    }
    let mut r = Reader::new(body);
    let mut frag = Fragment::decode_fields(&mut r)?;
    decompress(alg, r.rest(), MAX_PAYLOAD, &mut frag.payload).map_err(|e| match e {
        DecodeError::FieldTooLarge { len, max, .. } => DecodeError::FieldTooLarge {
            what: "payload",
            len,
            max,
        },
        e => e,
    })?;
    Ok(frag)
}

/// For readers that want an uncompressed payload read straight into a buffer
/// of its own: decodes the head of the frame that `prefix` starts (its first
/// bytes, header included, at most the whole frame). Returns the fragment
/// without its payload, how many bytes of `prefix` the header and fields took,
/// and the payload's length; the payload is the frame's remaining bytes, as
/// they are. `Ok(None)` when the payload is compressed or `prefix` ends inside
/// the fields: read the whole frame and use [`decode_frame`]. Errors as
/// [`decode_frame`] would report them for the same frame.
pub fn decode_frame_head(prefix: &[u8]) -> Result<Option<(Fragment, usize, usize)>, DecodeError> {
    let Some((len, alg)) = header(prefix)? else {
        return Ok(None);
    };
    if alg != Compression::NONE {
        return Ok(None);
    }
    let body = &prefix[HEADER_LEN..prefix.len().min(HEADER_LEN + len)];
    let mut r = Reader::new(body);
    let frag = match Fragment::decode_fields(&mut r) {
        Ok(frag) => frag,
        Err(DecodeError::Truncated { .. }) if body.len() < len => return Ok(None),
        Err(e) => return Err(e),
    };
    let payload = len - r.position();
    if payload > MAX_PAYLOAD {
        return Err(DecodeError::FieldTooLarge {
            what: "payload",
            len: payload as u64,
            max: MAX_PAYLOAD as u64,
        });
    }
    Ok(Some((frag, HEADER_LEN + r.position(), payload)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_head_and_its_payload_are_the_uncompressed_frame() {
        let frag = Fragment::new(Op::DATA)
            .with_subject("s")
            .with_part(7)
            .with_payload(vec![5; 70_000]);
        let mut head = Vec::new();
        encode_frame_head(&frag, &mut head);
        head.extend_from_slice(&frag.payload);
        assert_eq!(head, frame_to_vec(&frag, Compression::NONE));
        assert_eq!(decode_frame(&head).unwrap(), frag);
    }

    #[test]
    fn a_frame_head_and_the_rest_decode_as_the_whole_frame() {
        let frags = [
            full().with_payload(vec![7; 3000]),
            full().with_payload(Vec::new()),
            Fragment::new(Op::DATA).with_payload(vec![1; 10]),
        ];
        for frag in frags {
            let frame = frame_to_vec(&frag, Compression::NONE);
            let mut heads = 0;
            for cut in 0..=frame.len() {
                let Some((mut head, used, payload)) = decode_frame_head(&frame[..cut]).unwrap()
                else {
                    continue;
                };
                heads += 1;
                assert!(used <= cut);
                assert_eq!(used + payload, frame.len());
                head.payload = frame[used..].to_vec();
                assert_eq!(head, frag);
            }
            // Every prefix that holds the fields has a head, and none shorter.
            let used = frame.len() - frag.payload.len();
            assert_eq!(heads, frame.len() + 1 - used);
        }
        // A compressed frame is left to decode_frame.
        let zstd = frame_to_vec(&compressible(), Compression::ZSTD);
        assert_eq!(decode_frame_head(&zstd), Ok(None));
        // Errors are decode_frame's.
        let mut big = frame_to_vec(&Fragment::new(Op::DATA), Compression::NONE);
        big[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            decode_frame_head(&big),
            Err(DecodeError::FrameTooLarge { .. })
        ));
        let mut bad = frame_to_vec(&Fragment::new(Op::DATA), Compression::NONE);
        bad[4] |= 0x80;
        assert_eq!(decode_frame_head(&bad), decode_frame(&bad).map(|_| None));
        // A payload over MAX_PAYLOAD is refused from the head alone.
        let mut huge = Vec::new();
        encode_frame_head(&Fragment::new(Op::DATA), &mut huge);
        huge[..4].copy_from_slice(&(MAX_FRAME as u32).to_be_bytes());
        assert!(matches!(
            decode_frame_head(&huge),
            Err(DecodeError::FieldTooLarge {
                what: "payload",
                ..
            })
        ));
    }

    #[test]
    fn frame_len_from_header_needs_only_the_header() {
        let frame = frame_to_vec(
            &Fragment::new(Op::DATA).with_payload(vec![1; 100]),
            Compression::NONE,
        );
        assert_eq!(frame_len_from_header(&frame[..HEADER_LEN - 1]), Ok(None));
        assert_eq!(
            frame_len_from_header(&frame[..HEADER_LEN]),
            Ok(Some(frame.len()))
        );
        let mut big = frame[..HEADER_LEN].to_vec();
        big[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            frame_len_from_header(&big),
            Err(DecodeError::FrameTooLarge { .. })
        ));
    }

    use super::*;
    use crate::compression::compress;
    use crate::fragment::tests::full;
    use crate::Op;
    use proptest::prelude::*;

    fn compressible() -> Fragment {
        full().with_payload(vec![b'z'; 50_000])
    }

    #[test]
    fn roundtrip_each_compression_and_flag_choice() {
        for alg in [Compression::NONE, Compression::LZ4, Compression::ZSTD] {
            let frame = frame_to_vec(&compressible(), alg);
            assert_eq!(frame[4], alg.0, "compressible payload uses {alg}");
            assert_eq!(frame_len(&frame), Ok(Some(frame.len())));
            assert_eq!(decode_frame(&frame).unwrap(), compressible());
            // An incompressible payload goes uncompressed.
            let frame = frame_to_vec(&full(), alg);
            assert_eq!(frame[4], 0);
            assert_eq!(decode_frame(&frame).unwrap(), full());
        }
        // An unknown code from the caller falls back to no compression.
        let frame = frame_to_vec(&compressible(), Compression(9));
        assert_eq!(frame[4], 0);
    }

    #[test]
    fn header_errors() {
        assert_eq!(frame_len(&[0, 0, 0]), Ok(None));
        assert_eq!(
            decode_frame(&[0, 0, 0]),
            Err(DecodeError::Truncated { needed: 5, have: 3 })
        );
        // A 4 GiB length is refused from the header alone.
        let huge = [0xff, 0xff, 0xff, 0xff, 0];
        let too_large = DecodeError::FrameTooLarge {
            len: u32::MAX as usize,
            max: MAX_FRAME,
        };
        assert_eq!(frame_len(&huge), Err(too_large.clone()));
        assert_eq!(decode_frame(&huge), Err(too_large));
        assert_eq!(
            frame_len(&[0, 0, 0, 1, 5]),
            Err(DecodeError::UnknownCompression(5))
        );
        assert_eq!(
            frame_len(&[0, 0, 0, 1, 0x10]),
            Err(DecodeError::ReservedFlags(0x10))
        );
    }

    #[test]
    fn body_truncated_and_trailing() {
        let frame = frame_to_vec(&full(), Compression::NONE);
        let cut = &frame[..frame.len() - 1];
        assert_eq!(frame_len(cut), Ok(None));
        assert!(matches!(
            decode_frame(cut),
            Err(DecodeError::Truncated { .. })
        ));
        let mut long = frame.clone();
        long.extend_from_slice(&[1, 2]);
        assert_eq!(frame_len(&long), Ok(Some(frame.len())));
        assert_eq!(decode_frame(&long), Err(DecodeError::TrailingBytes(2)));
        // A header whose length stops inside the fields.
        let mut short = frame[..HEADER_LEN + 3].to_vec();
        short[..4].copy_from_slice(&3u32.to_be_bytes());
        assert!(matches!(
            decode_frame(&short),
            Err(DecodeError::Truncated { .. })
        ));
    }

    /// A frame whose payload tail is `tail`, flagged with `alg`.
    fn raw_frame(alg: Compression, tail: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        Fragment::new(Op::DATA).encode_fields(&mut body);
        body.extend_from_slice(tail);
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.push(alg.0);
        frame.extend_from_slice(&body);
        frame
    }

    #[test]
    fn bombs_and_corrupt_payloads() {
        let big = vec![0u8; MAX_PAYLOAD + 1];
        for alg in [Compression::LZ4, Compression::ZSTD] {
            let mut packed = Vec::new();
            compress(alg, &big, &mut packed);
            let err = decode_frame(&raw_frame(alg, &packed)).unwrap_err();
            assert_eq!(
                err,
                DecodeError::FieldTooLarge {
                    what: "payload",
                    len: big.len() as u64,
                    max: MAX_PAYLOAD as u64
                }
            );
            // Corrupt data of an honest size.
            let mut packed = Vec::new();
            compress(alg, &vec![b'q'; 10_000], &mut packed);
            let err = decode_frame(&raw_frame(alg, &packed[..packed.len() / 2])).unwrap_err();
            assert!(matches!(err, DecodeError::Decompress { .. }), "{err:?}");
        }
        let err = decode_frame(&raw_frame(Compression::NONE, &big)).unwrap_err();
        assert!(matches!(
            err,
            DecodeError::FieldTooLarge {
                what: "payload",
                ..
            }
        ));
    }

    fn fragment() -> impl Strategy<Value = Fragment> {
        (
            any::<u32>(),
            any::<u64>(),
            any::<u16>(),
            ".{0,40}",
            any::<u64>(),
            proptest::collection::vec(".{0,20}", 0..6),
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..300),
                (any::<u8>(), 0usize..5000).prop_map(|(b, n)| vec![b; n]),
            ],
            proptest::option::of(".{0,40}"),
        )
            .prop_map(
                |(circuit, serial, op, subject, part, args, payload, error)| Fragment {
                    circuit,
                    serial,
                    op: Op(op),
                    subject,
                    part,
                    args,
                    payload,
                    error,
                },
            )
    }

    proptest! {
        #[test]
        fn frame_roundtrip(frag in fragment(), alg in 0u8..3) {
            let frame = frame_to_vec(&frag, Compression(alg));
            prop_assert_eq!(frame_len(&frame), Ok(Some(frame.len())));
            prop_assert_eq!(decode_frame(&frame)?, frag);
        }

        #[test]
        fn decode_frame_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = frame_len(&bytes);
            let _ = decode_frame(&bytes);
        }
    }
}
