//! Reading and writing whole frames on one multiplexed stream: the thin async
//! driver around `proto`'s two-phase frame decoder.

use proto::{Compression, DecodeError, Fragment, HEADER_LEN};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

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

/// A frame buffer keeps up to this much between frames (a FILES or RECIPE
/// frame fits); one grown for a larger frame is given back afterwards.
const KEEP: usize = 2 << 20;

/// Reads one frame. `Ok(None)` is a clean end of stream between frames. `buf`
/// is scratch space reused across calls: it stays initialized, so reading into
/// it zeroes nothing (a fresh buffer would be zeroed for every frame).
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> Result<Option<Fragment>, ReadError> {
    let mut header = [0u8; HEADER_LEN];
    let mut have = 0;
    while have < HEADER_LEN {
        let n = r.read(&mut header[have..]).await.map_err(ReadError::Io)?;
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
    let total = match proto::frame_len_from_header(&header).map_err(ReadError::Decode)? {
        Some(total) => total,
        None => unreachable!("a whole header always yields a length"),
    };
    if buf.len() < total {
        buf.resize(total, 0);
    }
    let frame = &mut buf[..total];
    frame[..HEADER_LEN].copy_from_slice(&header);
    r.read_exact(&mut frame[HEADER_LEN..])
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => ReadError::Truncated,
            _ => ReadError::Io(e),
        })?;
    let res = proto::decode_frame(frame)
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
    buf.clear();
    if compression == Compression::NONE && frag.payload.len() >= DIRECT_PAYLOAD {
        // A large payload goes out as it is, not copied into the frame first.
        proto::encode_frame_head(frag, buf);
        w.write_all(buf).await?;
        w.write_all(&frag.payload).await?;
    } else {
        proto::encode_frame(frag, compression, buf);
        w.write_all(buf).await?;
    }
    w.flush().await
}
