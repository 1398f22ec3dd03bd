//! Reading and writing whole frames on one multiplexed stream: the thin async
//! driver around `proto`'s two-phase frame decoder.

use std::pin::Pin;

use proto::{Compression, DecodeError, Fragment, HEADER_LEN};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::net::mux::FrameRead;

/// Why reading a frame did not produce one.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The stream ended before a partial frame was complete.
    Truncated,
    /// The stream failed underneath.
    Io(std::io::Error),
    /// The bytes do not decode.
    Decode(DecodeError),
}

/// A frame buffer keeps up to this much between frames (a compressed RECIPE
/// fits); one grown for a larger frame is given back afterwards.
const KEEP: usize = 2 << 20;

/// Bytes after the header read first to find where the payload starts: a
/// fragment's fields (circuit, op, subject, args) nearly always fit.
const PEEK: usize = 256;

/// Reads one frame. `Ok(None)` is a clean end of stream between frames.
///
/// An uncompressed payload (file data) is read straight into the fragment's
/// own buffer, never zeroed and never copied: the first bytes of the frame
/// tell where its payload starts. When the stream holds the payload as one
/// piece of its own ([`FrameRead::poll_take_exact`]), that piece becomes the
/// payload and nothing is read at all. Other frames are read into `buf`, scratch
/// space reused across calls that grows only as bytes arrive, and decoded
/// from there.
pub(crate) async fn read_frame<R: FrameRead>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> Result<Option<Fragment>, ReadError> {
    let mut head = [0u8; HEADER_LEN + PEEK];
    let mut have = 0;
    while have < HEADER_LEN {
        let n = r
            .read(&mut head[have..HEADER_LEN])
            .await
            .map_err(ReadError::Io)?;
        if n == 0 {
            return if have == 0 {
                Ok(None)
            } else {
                Err(ReadError::Truncated)
            };
        }
        have += n;
    }
    // The header alone bounds the length (and rejects oversized frames) before we
    // allocate anything.
    let total = match proto::frame_len_from_header(&head).map_err(ReadError::Decode)? {
        Some(total) => total,
        None => unreachable!("a whole header always yields a length"),
    };
    // The fields are read a read at a time until they decode: over jsync's
    // multiplexer a read ends where the sender's write of the head ended, so
    // a payload written on its own can then be taken as it arrived.
    let peeked = total.min(head.len());
    let mut have = HEADER_LEN;
    let decoded = loop {
        if let Some(d) = proto::decode_frame_head(&head[..have]).map_err(ReadError::Decode)? {
            break Some(d);
        }
        if have == peeked {
            break None;
        }
        let n = r
            .read(&mut head[have..peeked])
            .await
            .map_err(ReadError::Io)?;
        if n == 0 {
            return Err(ReadError::Truncated);
        }
        have += n;
    };
    let head = &head[..have];
    if let Some((mut frag, used, len)) = decoded {
        if used == have && len > 0 {
            let taken = std::future::poll_fn(|cx| Pin::new(&mut *r).poll_take_exact(cx, len))
                .await
                .map_err(ReadError::Io)?;
            if let Some(payload) = taken {
                frag.payload = payload;
                return Ok(Some(frag));
            }
        }
        let mut payload = Vec::with_capacity(len);
        payload.extend_from_slice(&head[used..]);
        while payload.len() < len {
            let want = len - payload.len();
            let n = r
                .read_buf(&mut bytes::BufMut::limit(&mut payload, want))
                .await
                .map_err(ReadError::Io)?;
            if n == 0 {
                return Err(ReadError::Truncated);
            }
        }
        frag.payload = payload;
        return Ok(Some(frag));
    }
    // (The buffer grows as bytes arrive, never ahead of them to the length
    // a header claims: a peer that announces large frames and sends
    // nothing holds no memory for them.)
    buf.clear();
    buf.extend_from_slice(head);
    while buf.len() < total {
        let want = total - buf.len();
        let n = r
            .read_buf(&mut bytes::BufMut::limit(&mut *buf, want))
            .await
            .map_err(ReadError::Io)?;
        if n == 0 {
            return Err(ReadError::Truncated);
        }
    }
    let res = proto::decode_frame(&buf[..total])
        .map(Some)
        .map_err(ReadError::Decode);
    if buf.len() > KEEP {
        buf.truncate(KEEP);
        buf.shrink_to_fit();
    }
    res
}

/// Uncompressed payloads from this size on are written after their frame's
/// head instead of being copied into it.
const DIRECT_PAYLOAD: usize = 16 << 10;

/// Encodes and writes one frame; `buf` is scratch space reused across calls.
pub(crate) async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    frag: &Fragment,
    compression: Compression,
    buf: &mut Vec<u8>,
) -> std::io::Result<()> {
    write_frame_at(w, frag, compression, proto::ZSTD_DEFAULT_LEVEL, buf).await
}

/// [`write_frame`] with zstd at `level` ([`proto::encode_frame_at`]).
pub(crate) async fn write_frame_at<W: AsyncWrite + Unpin>(
    w: &mut W,
    frag: &Fragment,
    compression: Compression,
    level: i32,
    buf: &mut Vec<u8>,
) -> std::io::Result<()> {
    buf.clear();
    if compression == Compression::NONE && frag.payload.len() >= DIRECT_PAYLOAD {
        // A large payload goes out as it is, not copied into the frame first.
        proto::encode_frame_head(frag, buf);
        w.write_all(buf).await?;
        w.write_all(&frag.payload).await?;
    } else {
        proto::encode_frame_at(frag, compression, level, buf);
        w.write_all(buf).await?;
    }
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::{Op, MAX_FRAME};

    /// Frames that take each way through `read_frame`: uncompressed payloads
    /// read in place (small and large, with and without args), fields too long
    /// for the first peek, and compressed payloads.
    fn samples() -> Vec<(Fragment, Compression)> {
        let long_args = vec!["a".repeat(300), "b".repeat(5000)];
        vec![
            (Fragment::new(Op::DATA), Compression::NONE),
            (
                Fragment::new(Op::DATA).with_payload(vec![7; 10]),
                Compression::NONE,
            ),
            (
                Fragment::new(Op::DATA)
                    .with_subject("s")
                    .with_part(3)
                    .with_payload((0..100_000u32).map(|i| i as u8).collect::<Vec<u8>>()),
                Compression::NONE,
            ),
            (
                Fragment::new(Op::DATA)
                    .with_args(long_args.clone())
                    .with_payload(vec![1; 40_000]),
                Compression::NONE,
            ),
            (
                Fragment::new(Op::DATA).with_args(long_args),
                Compression::NONE,
            ),
            (
                Fragment::new(Op::DATA).with_payload(vec![b'z'; 50_000]),
                Compression::ZSTD,
            ),
        ]
    }

    async fn encoded(frag: &Fragment, alg: Compression) -> Vec<u8> {
        let mut out = Vec::new();
        write_frame(&mut out, frag, alg, &mut Vec::new())
            .await
            .unwrap();
        out
    }

    #[tokio::test]
    async fn frames_read_back_whole_one_after_another() {
        let mut stream = Vec::new();
        let samples = samples();
        for (frag, alg) in &samples {
            stream.extend(encoded(frag, *alg).await);
        }
        let mut r = &stream[..];
        let mut buf = Vec::new();
        for (frag, _) in &samples {
            let got = read_frame(&mut r, &mut buf).await.unwrap().unwrap();
            assert_eq!(&got, frag);
        }
        assert!(read_frame(&mut r, &mut buf).await.unwrap().is_none());
    }

    /// The same frames over jsync's multiplexer, where large uncompressed
    /// payloads are taken as the pieces they arrived in, with a payload bigger
    /// than one piece (copied) among them.
    #[tokio::test(flavor = "multi_thread")]
    async fn frames_read_back_whole_over_the_multiplexer() {
        use crate::net::handshake::Side;
        let mut samples = samples();
        samples.push((
            Fragment::new(Op::DATA).with_payload(vec![9; 3 << 20]),
            Compression::NONE,
        ));
        let (a, b) = tokio::io::duplex(1 << 16);
        let ca = crate::net::jmux::drive(a, Side::Client);
        let mut cb = crate::net::jmux::drive(b, Side::Server);
        let mut s = ca.mux.open().await.unwrap();
        let sent = samples.clone();
        let writer = tokio::spawn(async move {
            let mut buf = Vec::new();
            for (frag, alg) in &sent {
                write_frame(&mut s.write, frag, *alg, &mut buf)
                    .await
                    .unwrap();
            }
            s.write.shutdown().await.unwrap();
        });
        let mut r = cb.inbound.recv().await.unwrap().read;
        let mut buf = Vec::new();
        for (frag, _) in &samples {
            let got = read_frame(&mut r, &mut buf).await.unwrap().unwrap();
            assert!(&got == frag, "{:?}", frag.op);
        }
        assert!(read_frame(&mut r, &mut buf).await.unwrap().is_none());
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn a_frame_cut_anywhere_is_truncated() {
        for (frag, alg) in samples() {
            let frame = encoded(&frag, alg).await;
            let step = (frame.len() / 300).max(1);
            for cut in (1..frame.len()).step_by(step).chain([frame.len() - 1]) {
                let mut r = &frame[..cut];
                assert!(
                    matches!(
                        read_frame(&mut r, &mut Vec::new()).await,
                        Err(ReadError::Truncated)
                    ),
                    "cut at {cut} of {}",
                    frame.len()
                );
            }
        }
    }

    #[tokio::test]
    async fn oversized_and_malformed_frames_are_refused_before_allocating() {
        let mut buf = Vec::new();
        // A length over MAX_FRAME: refused from the header alone.
        let mut r = &[0xff, 0xff, 0xff, 0xff, 0, 1, 2, 3][..];
        assert!(matches!(
            read_frame(&mut r, &mut buf).await,
            Err(ReadError::Decode(DecodeError::FrameTooLarge { .. }))
        ));
        assert!(buf.capacity() < 1 << 20);
        // A frame of MAX_FRAME bytes, so a payload over MAX_PAYLOAD: refused from
        // its head, before the payload is read (or its buffer allocated).
        let mut huge = Vec::new();
        proto::encode_frame_head(&Fragment::new(Op::DATA), &mut huge);
        huge[..4].copy_from_slice(&(MAX_FRAME as u32).to_be_bytes());
        huge.extend_from_slice(&[0; PEEK]); // the payload's first bytes
        let mut r = &huge[..];
        assert!(matches!(
            read_frame(&mut r, &mut buf).await,
            Err(ReadError::Decode(DecodeError::FieldTooLarge {
                what: "payload",
                ..
            }))
        ));
        // Random bytes never panic; each read ends in a frame, an error or the end.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            let mut junk = Vec::new();
            for _ in 0..(seed % 300) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                junk.push(seed as u8);
            }
            // Small lengths, so that some junk decodes past the header.
            if junk.len() > 4 && seed % 2 == 0 {
                let len = (junk.len() - 5) as u32;
                junk[..4].copy_from_slice(&len.to_be_bytes());
                junk[4] = 0;
            }
            let mut r = &junk[..];
            let _ = read_frame(&mut r, &mut buf).await;
        }
    }
}
