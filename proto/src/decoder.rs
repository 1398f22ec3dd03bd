//! A sans-IO frame reader: the caller feeds whatever bytes its transport
//! produced, in pieces of any size, and takes whole fragments out.
//!
//! It owns the two-phase loop of [`crate::frame`] so every transport (TLS
//! stream, QUIC stream, test pipe) frames the same way, and it tells a clean
//! end of stream (nothing buffered) from one that cut a frame in half.

use crate::{decode_frame, frame_len, DecodeError, Fragment, HEADER_LEN};

/// Buffers stream bytes and yields the fragments they contain.
///
/// Any error is fatal for the stream: there is no way to find the next frame
/// boundary after a malformed one.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Bytes of `buf` already consumed; compacted lazily.
    pos: usize,
}

impl FrameDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the stream.
    pub fn feed(&mut self, data: &[u8]) {
        if self.pos > 0 && self.pos >= self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The next whole fragment, `Ok(None)` when more bytes are needed.
    // Not an Iterator: `None` means "not yet", not "never again".
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Fragment>, DecodeError> {
        let pending = &self.buf[self.pos..];
        let Some(len) = frame_len(pending)? else {
            return Ok(None);
        };
        let frame = decode_frame(&pending[..len]);
        self.pos += len;
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        frame.map(Some)
    }

    /// Bytes fed but not yet returned as fragments.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// To be called at end of stream: `Ok` when nothing is buffered (a clean
    /// end), [`DecodeError::Truncated`] when the stream stopped inside a
    /// frame. Whole frames not yet taken with [`FrameDecoder::next`] are
    /// reported as [`DecodeError::TrailingBytes`].
    pub fn finish(&self) -> Result<(), DecodeError> {
        let pending = &self.buf[self.pos..];
        if pending.is_empty() {
            return Ok(());
        }
        if frame_len(pending)?.is_some() {
            return Err(DecodeError::TrailingBytes(pending.len()));
        }
        let needed = match pending.first_chunk::<4>() {
            Some(len) if pending.len() >= HEADER_LEN => {
                HEADER_LEN + u32::from_be_bytes(*len) as usize
            }
            _ => HEADER_LEN,
        };
        Err(DecodeError::Truncated {
            needed,
            have: pending.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{encode_frame, Compression, Op};
    use proptest::prelude::*;

    fn frags() -> Vec<Fragment> {
        vec![
            Fragment::new(Op::OPEN).with_circuit(1).with_subject("sync"),
            Fragment::new(Op::DATA)
                .with_circuit(1)
                .with_serial(1)
                .with_payload(vec![b'a'; 10_000]),
            Fragment::new(Op::PING),
            Fragment::new(Op::FAIL)
                .with_circuit(2)
                .with_error("no such file"),
        ]
    }

    fn stream(alg: Compression) -> Vec<u8> {
        let mut out = Vec::new();
        for frag in frags() {
            encode_frame(&frag, alg, &mut out);
        }
        out
    }

    fn drain(dec: &mut FrameDecoder, got: &mut Vec<Fragment>) {
        while let Some(frag) = dec.next().unwrap() {
            got.push(frag);
        }
    }

    #[test]
    fn fed_byte_by_byte() {
        for alg in [Compression::NONE, Compression::LZ4, Compression::ZSTD] {
            let bytes = stream(alg);
            let mut dec = FrameDecoder::new();
            let mut got = Vec::new();
            for b in &bytes {
                dec.feed(std::slice::from_ref(b));
                drain(&mut dec, &mut got);
            }
            assert_eq!(got, frags());
            assert_eq!(dec.buffered(), 0);
            dec.finish().unwrap();
        }
    }

    #[test]
    fn fed_all_at_once() {
        let mut dec = FrameDecoder::new();
        dec.feed(&stream(Compression::ZSTD));
        assert_eq!(
            dec.finish(),
            Err(DecodeError::TrailingBytes(dec.buffered()))
        );
        let mut got = Vec::new();
        drain(&mut dec, &mut got);
        assert_eq!(got, frags());
        assert_eq!(dec.finish(), Ok(()));
    }

    #[test]
    fn finish_clean_vs_truncated() {
        let dec = FrameDecoder::new();
        assert_eq!(dec.finish(), Ok(()));
        let bytes = stream(Compression::NONE);
        let first = frame_len(&bytes).unwrap().unwrap();
        let mut dec = FrameDecoder::new();
        dec.feed(&bytes[..2]);
        assert_eq!(
            dec.finish(),
            Err(DecodeError::Truncated { needed: 5, have: 2 })
        );
        dec.feed(&bytes[2..first - 1]);
        assert_eq!(dec.next(), Ok(None));
        assert_eq!(
            dec.finish(),
            Err(DecodeError::Truncated {
                needed: first,
                have: first - 1
            })
        );
    }

    #[test]
    fn oversized_header_fails_without_buffering_the_body() {
        let mut dec = FrameDecoder::new();
        dec.feed(&[0x7f, 0xff, 0xff, 0xff, 0]);
        assert!(matches!(dec.next(), Err(DecodeError::FrameTooLarge { .. })));
        assert!(matches!(
            dec.finish(),
            Err(DecodeError::FrameTooLarge { .. })
        ));
    }

    #[test]
    fn overlong_varint_inside_a_frame() {
        // circuit, then serial 0 written as two bytes.
        let body = [0, 0, 0, 1, 0x80, 0x00, 0, 0, 0, 0, 0, 0];
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.push(0);
        frame.extend_from_slice(&body);
        let mut dec = FrameDecoder::new();
        dec.feed(&frame);
        assert_eq!(dec.next(), Err(DecodeError::BadVarint));
    }

    proptest! {
        #[test]
        fn arbitrary_splits(cuts in proptest::collection::vec(0usize..30_000, 0..8), alg in 0u8..3) {
            let bytes = stream(Compression(alg));
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % bytes.len()).collect();
            cuts.sort_unstable();
            let mut dec = FrameDecoder::new();
            let mut got = Vec::new();
            let mut at = 0;
            for cut in cuts.into_iter().chain([bytes.len()]) {
                dec.feed(&bytes[at..cut]);
                at = cut;
                drain(&mut dec, &mut got);
            }
            prop_assert_eq!(got, frags());
            prop_assert_eq!(dec.finish(), Ok(()));
        }

        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut dec = FrameDecoder::new();
            dec.feed(&bytes);
            for _ in 0..bytes.len() + 1 {
                if !matches!(dec.next(), Ok(Some(_))) {
                    break;
                }
            }
            let _ = dec.finish();
        }

        #[test]
        fn never_panics_on_mutated_frames(
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
            cut in any::<usize>(),
            alg in 0u8..3,
        ) {
            let mut bytes = stream(Compression(alg));
            for (at, b) in edits {
                let at = at % bytes.len();
                bytes[at] = b;
            }
            bytes.truncate(cut % (bytes.len() + 1));
            let mut dec = FrameDecoder::new();
            dec.feed(&bytes);
            // Whatever still decodes is valid and re-encodes faithfully.
            while let Ok(Some(frag)) = dec.next() {
                prop_assert_eq!(frag.validate(), Ok(()));
                let mut wire = Vec::new();
                encode_frame(&frag, Compression(alg), &mut wire);
                prop_assert_eq!(decode_frame(&wire), Ok(frag));
            }
            let _ = dec.finish();
            let _ = decode_frame(&bytes);
        }
    }
}
