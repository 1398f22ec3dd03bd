//! Content-defined chunking: how both sides of a sync agree on which parts of a
//! file they already share.
//!
//! A file is cut with FastCDC v2020 (the cut points depend on the content only,
//! so an insertion moves the boundaries near it and no others) and each chunk is
//! named by its BLAKE3 hash. The receiver cuts the file it already has and sends
//! the list as its *signature* ([`encode_sig_batch`]); the sender cuts its new
//! file the same way and sends only the chunks whose names the receiver lacks.
//! [`chunk_list_digest`] lets the receiver check a rebuilt file against the
//! sender's chunk list without hashing its bytes a second time, and
//! [`file_hash`] is the cheap first test for "same size, different mtime".
//!
//! Files are streamed through one fixed buffer ([`BLOCK`] bytes; two for a large
//! file): memory does not grow with the file beyond the chunk list the caller
//! keeps. A small file is cut and hashed on one core (many are chunked in
//! parallel instead); a large one on two, one cutting a block while the other
//! hashes the chunks of the block before.
//!
//! The parameters below are part of the protocol: two peers that cut with
//! different sizes or normalization share no chunks. The `pinned_cut_points`
//! test guards them.

use std::io::{self, Read};

use fastcdc::v2020::{self, Normalization};
use proto::{put_varint, DecodeError, Reader};

/// Smallest chunk FastCDC cuts (except the last one of a file). Even, as
/// fastcdc 5 requires.
pub(crate) const MIN_CHUNK: u32 = 2 * 1024;
/// The size FastCDC aims for.
pub(crate) const AVG_CHUNK: u32 = 8 * 1024;
/// Largest chunk: a run with no cut point is split here.
pub(crate) const MAX_CHUNK: u32 = 64 * 1024;
/// FastCDC's normalization: level 1 keeps most chunks near [`AVG_CHUNK`].
const LEVEL: Normalization = Normalization::Level1;

/// The chunk sizes FastCDC aims for in one file's delta. They grow with the
/// square root of the file's size, as rsync's blocks do: small chunks keep a
/// small file's delta small (an edit sends the chunk around it), large ones
/// keep a large file's signature small. The average is the power of two at or
/// above that root: 2 KiB for files up to 4 MiB (most of a source tree), 4
/// KiB to 16 MiB, [`AVG_CHUNK`] to 64 MiB, then 16 KiB (to 256 MiB), 32 KiB
/// (to 1 GiB), 64 KiB (to 4 GiB) and 128 KiB (larger files); the smallest
/// chunk is a quarter of it and the largest eight times it, as with
/// [`AVG_CHUNK`]. The receiver chooses it from the new file's size and names
/// it in its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Chunking {
    /// log2 of the average.
    bits: u8,
}

impl Chunking {
    /// [`MIN_CHUNK`], [`AVG_CHUNK`], [`MAX_CHUNK`].
    pub(crate) const DEFAULT: Chunking = Chunking {
        bits: AVG_CHUNK.trailing_zeros() as u8,
    };
    const MAX_BITS: u8 = 17;
    const MIN_BITS: u8 = 11;

    /// The chunking for a file of `size` bytes.
    pub(crate) fn for_size(size: u64) -> Chunking {
        // ceil(log2(size)), halved and rounded up: log2 of sqrt(size), up.
        let log2 = 64 - size.saturating_sub(1).leading_zeros();
        let bits = log2.div_ceil(2);
        Chunking {
            bits: (bits as u8).clamp(Self::MIN_BITS, Self::MAX_BITS),
        }
    }

    /// The chunking named by a peer, if it is one of ours.
    pub(crate) fn from_bits(bits: u8) -> Option<Chunking> {
        (Self::MIN_BITS..=Self::MAX_BITS)
            .contains(&bits)
            .then_some(Chunking { bits })
    }

    /// Its name on the wire: log2 of the average.
    pub(crate) fn bits(self) -> u8 {
        self.bits
    }

    /// Its sizes from [`Chunking::DEFAULT`]'s, scaled by a power of two.
    fn scaled(self, size: u32) -> usize {
        let d = Self::DEFAULT.bits;
        if self.bits >= d {
            (size as usize) << (self.bits - d)
        } else {
            (size as usize) >> (d - self.bits)
        }
    }

    pub(crate) fn min(self) -> usize {
        self.scaled(MIN_CHUNK)
    }

    pub(crate) fn avg(self) -> usize {
        self.scaled(AVG_CHUNK)
    }

    /// The largest chunk it cuts (at most 1 MiB).
    pub(crate) fn max(self) -> usize {
        self.scaled(MAX_CHUNK)
    }
}

/// Bytes read from the file per refill. Buffers from 128 KiB to 4 MiB cut at
/// the same speed here (the copy into the buffer costs ~3%), so the size is
/// chosen to exceed a caller's 1 MiB `BufReader`: such a reader then hands our
/// reads straight to the file instead of copying them through its own buffer.
pub(crate) const BLOCK: usize = 4 << 20;

/// A BLAKE3 hash.
pub(crate) type Hash = [u8; 32];

/// One chunk of a file: where it is and what it is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkRef {
    /// BLAKE3 of the chunk's bytes.
    pub hash: Hash,
    /// Where the chunk starts in the file.
    pub offset: u64,
    /// Its length: 1 to its [`Chunking`]'s largest.
    pub len: u32,
}

/// Streams `reader` and calls `f(offset, bytes)` for each chunk in order, without
/// naming it. Returns the total length. This is [`for_each_chunk`] minus BLAKE3.
#[allow(
    dead_code,
    reason = "the chunking bench measures cutting without hashing"
)]
pub(crate) fn for_each_cut<R: Read>(
    reader: R,
    f: impl FnMut(u64, &[u8]) -> io::Result<()>,
) -> io::Result<u64> {
    cut_with_block(reader, BLOCK, Chunking::DEFAULT, f)
}

/// The loop behind [`for_each_cut`], with the buffer size as a parameter so
/// tests can force many refills.
///
/// The buffer holds `buf[start..end]` not yet cut. A cut is final once at
/// least a largest chunk's bytes are there (FastCDC never looks further), or at end
/// of input; otherwise the tail, less than one chunk, moves to the front and
/// the rest of the buffer is refilled. FastCDC's free `cut` works on the slice
/// in place: no allocation or copy per chunk.
fn cut_with_block<R: Read>(
    mut reader: R,
    block: usize,
    c: Chunking,
    mut f: impl FnMut(u64, &[u8]) -> io::Result<()>,
) -> io::Result<u64> {
    let max = c.max();
    debug_assert!(block >= 2 * max, "the buffer must hold two largest chunks");
    let mut buf = vec![0u8; block];
    let (mut start, mut end) = (0usize, 0usize);
    let mut offset = 0u64;
    let mut eof = false;
    loop {
        if !eof {
            buf.copy_within(start..end, 0);
            end -= start;
            start = 0;
            (end, eof) = fill(&mut reader, &mut buf, end)?;
        }
        while end - start >= max || (eof && start < end) {
            let n = cut_point(&buf[start..end], c);
            f(offset, &buf[start..start + n])?;
            start += n;
            offset += n as u64;
        }
        if eof {
            return Ok(offset);
        }
    }
}

/// Reads into `buf[end..]` until it is full or the input ends; returns the new
/// end and whether the input ended.
fn fill<R: Read>(reader: &mut R, buf: &mut [u8], mut end: usize) -> io::Result<(usize, bool)> {
    while end < buf.len() {
        match reader.read(&mut buf[end..]) {
            Ok(0) => return Ok((end, true)),
            Ok(n) => end += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((end, false))
}

/// The length of the chunk that starts `data` (FastCDC v2020 with the sizes
/// of `c`): a cut is final once `data` holds `c`'s largest chunk, or when it is
/// the rest of the input.
fn cut_point(data: &[u8], c: Chunking) -> usize {
    let (min, avg, max) = (c.min(), c.avg(), c.max());
    let (mask_s, mask_l) = v2020::select_masks(avg, LEVEL);
    let (_, n) = v2020::cut(
        data,
        min,
        avg,
        max,
        mask_s,
        mask_l,
        mask_s << 1,
        mask_l << 1,
    );
    n
}

/// Streams `reader` and calls `f(chunk_ref, chunk_bytes)` for each chunk in
/// order. Returns the total length. Errors from the reader or from `f` stop the
/// walk and are returned.
pub(crate) fn for_each_chunk<R: Read>(
    reader: R,
    f: impl FnMut(ChunkRef, &[u8]) -> io::Result<()>,
) -> io::Result<u64> {
    for_each_chunk_sized(reader, BLOCK as u64, Chunking::DEFAULT, f)
}

/// [`for_each_chunk`] with the expected size of the input, so that a small file
/// gets a small buffer instead of [`BLOCK`] bytes (a source tree is mostly small
/// files, and many are cut at once).
pub(crate) fn for_each_chunk_sized<R: Read>(
    reader: R,
    size_hint: u64,
    c: Chunking,
    mut f: impl FnMut(ChunkRef, &[u8]) -> io::Result<()>,
) -> io::Result<u64> {
    if size_hint >= PIPELINE_MIN {
        return for_each_chunk_pipelined(reader, BLOCK, c, f);
    }
    let block = usize::try_from(size_hint.saturating_add(1))
        .unwrap_or(BLOCK)
        .clamp(2 * c.max(), BLOCK);
    cut_with_block(reader, block, c, |offset, data| {
        let r = ChunkRef {
            hash: *blake3::hash(data).as_bytes(),
            offset,
            // A chunk is at most 1 MiB.
            len: data.len() as u32,
        };
        f(r, data)
    })
}

/// Inputs of at least this many bytes are cut and hashed on two threads.
pub(crate) const PIPELINE_MIN: u64 = 2 * BLOCK as u64;

/// A delta of a file at least this large streams both ways: the receiver
/// sends its chunks as it cuts, the sender reads its own file along with them
/// and sends its recipe as it goes, and the receiver rebuilds meanwhile.
pub(crate) const CONCURRENT_CUT_MIN: u64 = 1 << 20;

/// Items handed on `size` at a time to `send` (a thread's chunks or cuts to
/// the task that sends them on), and what is left by [`Batches::finish`].
pub(crate) struct Batches<T, F> {
    batch: Vec<T>,
    size: usize,
    send: F,
}

impl<T, F: FnMut(Vec<T>) -> io::Result<()>> Batches<T, F> {
    pub(crate) fn new(size: usize, send: F) -> Self {
        Batches {
            batch: Vec::with_capacity(size),
            size,
            send,
        }
    }

    pub(crate) fn push(&mut self, item: T) -> io::Result<()> {
        self.batch.push(item);
        if self.batch.len() < self.size {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.batch, Vec::with_capacity(self.size));
        (self.send)(full)
    }

    /// Sends the last, partial batch (if any).
    pub(crate) fn finish(mut self) -> io::Result<()> {
        match self.batch.is_empty() {
            true => Ok(()),
            false => (self.send)(std::mem::take(&mut self.batch)),
        }
    }
}

/// A block of a large input on its way through [`for_each_chunk_pipelined`]:
/// its bytes, where its chunks are (start in `buf`, length, file offset), and
/// their hashes once the hashing thread has filled them in.
struct CutBlock {
    buf: Vec<u8>,
    cuts: Vec<(usize, usize, u64)>,
    hashes: Vec<Hash>,
}

/// [`for_each_chunk`] for one large input, on two threads: while this one
/// reads and cuts a block, another hashes the chunks of the block before, so a
/// big file takes the longer of the two, not their sum (FastCDC's cut is
/// sequential; BLAKE3 of a chunk is not tied to the others). `f` still sees the
/// chunks in order, on this thread. Two buffers of `block` bytes take turns.
fn for_each_chunk_pipelined<R: Read>(
    mut reader: R,
    block: usize,
    c: Chunking,
    mut f: impl FnMut(ChunkRef, &[u8]) -> io::Result<()>,
) -> io::Result<u64> {
    let max = c.max();
    debug_assert!(block >= 2 * max, "the buffer must hold two largest chunks");
    let deliver = |b: &CutBlock, f: &mut dyn FnMut(ChunkRef, &[u8]) -> io::Result<()>| {
        for (&(at, n, offset), hash) in b.cuts.iter().zip(&b.hashes) {
            let r = ChunkRef {
                hash: *hash,
                offset,
                len: n as u32,
            };
            f(r, &b.buf[at..at + n])?;
        }
        Ok::<_, io::Error>(())
    };
    std::thread::scope(|scope| {
        let (to_hash, hash_rx) = std::sync::mpsc::sync_channel::<CutBlock>(1);
        let (hashed_tx, hashed) = std::sync::mpsc::sync_channel::<CutBlock>(1);
        scope.spawn(move || {
            for mut b in hash_rx {
                b.hashes.clear();
                let buf = &b.buf;
                b.hashes.extend(
                    b.cuts
                        .iter()
                        .map(|&(at, n, _)| *blake3::hash(&buf[at..at + n]).as_bytes()),
                );
                if hashed_tx.send(b).is_err() {
                    break;
                }
            }
        });
        let new_block = || CutBlock {
            buf: vec![0u8; block],
            cuts: Vec::new(),
            hashes: Vec::new(),
        };
        let mut cur = new_block();
        let mut spare = Some(new_block());
        let mut in_flight = false;
        let (mut end, mut offset, mut eof) = (0usize, 0u64, false);
        loop {
            if !eof {
                (end, eof) = fill(&mut reader, &mut cur.buf, end)?;
            }
            cur.cuts.clear();
            let mut pos = 0;
            while end - pos >= max || (eof && pos < end) {
                let n = cut_point(&cur.buf[pos..end], c);
                cur.cuts.push((pos, n, offset));
                pos += n;
                offset += n as u64;
            }
            // The next buffer: the spare, or the one being hashed once its
            // chunks have gone to `f`.
            let mut next = match spare.take() {
                Some(b) => b,
                None => {
                    let done = hashed.recv().map_err(|_| hasher_gone())?;
                    in_flight = false;
                    deliver(&done, &mut f)?;
                    done
                }
            };
            // The uncut tail (less than one chunk) starts the next block.
            next.buf[..end - pos].copy_from_slice(&cur.buf[pos..end]);
            end -= pos;
            if cur.cuts.is_empty() {
                spare = Some(cur);
            } else {
                to_hash.send(cur).map_err(|_| hasher_gone())?;
                in_flight = true;
            }
            cur = next;
            if eof && end == 0 {
                break;
            }
        }
        if in_flight {
            let done = hashed.recv().map_err(|_| hasher_gone())?;
            deliver(&done, &mut f)?;
        }
        Ok(offset)
    })
}

fn hasher_gone() -> io::Error {
    io::Error::other("the chunk hashing thread stopped")
}

/// The signature of a whole file: its chunk list.
#[allow(
    dead_code,
    reason = "API for callers that keep the whole list; tests and benches use it"
)]
pub(crate) fn signature<R: Read>(reader: R) -> io::Result<Vec<ChunkRef>> {
    let mut out = Vec::new();
    for_each_chunk(reader, |r, _| {
        out.push(r);
        Ok(())
    })?;
    Ok(out)
}

/// BLAKE3 of the first `size` bytes of the stream (its expected length: no
/// read past it to find the end; callers compare the file's size afterwards),
/// on one core, through a per-thread buffer of 256 KiB (fewer reads than
/// blake3's own 64 KiB `update_reader`, still cache-sized; allocated once per
/// thread, not once per file: a tree holds tens of thousands of small files).
/// A stream that ends early is an `UnexpectedEof` error.
pub(crate) fn file_hash<R: Read>(mut reader: R, size: u64) -> io::Result<Hash> {
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUF.with(|buf| {
        let mut buf = buf.borrow_mut();
        if buf.is_empty() {
            buf.resize(256 << 10, 0);
        }
        let mut hasher = blake3::Hasher::new();
        let mut left = size;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            match reader.read(&mut buf[..want]) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the file shrank while it was read",
                    ))
                }
                Ok(n) => {
                    hasher.update(&buf[..n]);
                    left -= n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(*hasher.finalize().as_bytes())
    })
}

/// The BLAKE3 key-derivation context of [`chunk_list_digest`]: a digest of a
/// chunk list can never collide with the hash of some file's bytes.
const DIGEST_CONTEXT: &str = "jsync 2026 chunk-list digest";

/// Builds [`chunk_list_digest`] one chunk at a time, as chunks stream past.
#[derive(Debug, Clone)]
pub(crate) struct DigestBuilder {
    hasher: blake3::Hasher,
}

impl Default for DigestBuilder {
    fn default() -> Self {
        DigestBuilder {
            hasher: blake3::Hasher::new_derive_key(DIGEST_CONTEXT),
        }
    }
}

impl DigestBuilder {
    /// Adds the next chunk.
    pub(crate) fn push(&mut self, len: u32, hash: Hash) {
        let mut entry = [0u8; 36];
        entry[..4].copy_from_slice(&len.to_le_bytes());
        entry[4..].copy_from_slice(&hash);
        self.hasher.update(&entry);
    }

    /// Adds a hole of `len` zero bytes (a sparse file's hole, never read as
    /// data). Its entry cannot collide with a chunk's: chunk lengths are at most
    /// 1 MiB ([`Chunking::max`]), far below the marker.
    pub(crate) fn push_hole(&mut self, len: u64) {
        let mut entry = [0u8; 36];
        entry[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        entry[4..12].copy_from_slice(&len.to_le_bytes());
        self.hasher.update(&entry);
    }

    /// The digest of the chunks pushed so far.
    pub(crate) fn finish(self) -> Hash {
        *self.hasher.finalize().as_bytes()
    }
}

/// A digest of a chunk list, to verify a rebuilt file without hashing its bytes
/// again: BLAKE3 in derive-key mode ([`DIGEST_CONTEXT`]) over
/// `len (u32 LE) || hash` of each chunk in order.
pub(crate) fn chunk_list_digest(chunks: impl IntoIterator<Item = (u32, Hash)>) -> Hash {
    let mut d = DigestBuilder::default();
    for (len, hash) in chunks {
        d.push(len, hash);
    }
    d.finish()
}

/// The most chunks of a signature worth sending for a file of `size` bytes:
/// as many as twice its size could be cut into at the smallest chunk size
/// its size is given, and 4,096 more. (A basis of the file's size is never
/// cut short unless it is sparse in very many extents smaller than a chunk,
/// each of which ends in a short chunk; what is past the limit then goes as
/// literals.) A receiver cuts its basis only that far (a basis far larger
/// than the new file, a log cut short say, would otherwise cost its whole cut
/// and a signature larger than the file); what the file takes from the rest
/// costs at most its own size in literals. A sender keeps no more than this
/// of what a receiver sends, whatever the receiver claims, so a hostile one
/// cannot make it hold more (about 70 bytes a chunk: 37 MB for a 4 GiB file,
/// whose honest signature is about 65,000 chunks).
pub(crate) fn sig_limit(size: u64) -> usize {
    let chunks = size.saturating_mul(2) / Chunking::for_size(size).min() as u64;
    usize::try_from(chunks.saturating_add(4096)).unwrap_or(usize::MAX)
}

/// Bytes of a chunk's hash in a signature: 128 bits, half the wire of a full
/// hash. A sender looks chunks up by them; a chunk it copies is still checked
/// by its full hash, which the receiver keeps, when the rebuilt file's chunk
/// list digest is compared (two chunks that share the first half of their
/// hashes make that check fail; they are never taken for each other).
pub(crate) const SIG_HASH: usize = 16;

/// A chunk's hash as a signature carries it.
pub(crate) type SigHash = [u8; SIG_HASH];

/// The signature's part of a hash.
pub(crate) fn sig_hash(h: &Hash) -> SigHash {
    let mut out = [0u8; SIG_HASH];
    out.copy_from_slice(&h[..SIG_HASH]);
    out
}

/// The fewest bytes one encoded chunk ref takes: a one-byte length and a hash.
const MIN_SIG_ENTRY: usize = 1 + SIG_HASH;

/// Appends a batch of chunk refs in the signature's wire form: a varint count,
/// then per chunk a varint length and the first [`SIG_HASH`] bytes of its
/// hash. Offsets are not sent: chunks lie back to back.
pub(crate) fn encode_sig_batch(chunks: &[ChunkRef], out: &mut Vec<u8>) {
    out.reserve(proto::varint_len(chunks.len() as u64) + chunks.len() * (3 + SIG_HASH));
    put_varint(out, chunks.len() as u64);
    for c in chunks {
        put_varint(out, u64::from(c.len));
        out.extend_from_slice(&c.hash[..SIG_HASH]);
    }
}

/// Decodes one [`encode_sig_batch`] payload into each chunk's length and
/// hash. Refuses more than `max_chunks` entries, lengths of 0 or above
/// `max_len`, truncated input and trailing bytes. Allocates for at most
/// `buf.len() / 17` entries, whatever count the peer claims.
pub(crate) fn decode_sig_batch(
    buf: &[u8],
    max_chunks: usize,
    max_len: usize,
) -> Result<Vec<(u32, SigHash)>, DecodeError> {
    let mut r = Reader::new(buf);
    let count = r.varint()?;
    if count > max_chunks as u64 {
        return Err(DecodeError::FieldTooLarge {
            what: "signature batch",
            len: count,
            max: max_chunks as u64,
        });
    }
    let fits = (r.remaining() / MIN_SIG_ENTRY) as u64;
    // `min` with a usize-derived value fits in usize.
    let mut out = Vec::with_capacity(count.min(fits) as usize);
    for _ in 0..count {
        let len = r.varint()?;
        if len == 0 {
            return Err(DecodeError::InvalidTag {
                what: "empty chunk length",
                tag: 0,
            });
        }
        if len > max_len as u64 {
            return Err(DecodeError::FieldTooLarge {
                what: "chunk length",
                len,
                max: max_len as u64,
            });
        }
        let mut hash = [0u8; SIG_HASH];
        hash.copy_from_slice(r.take(SIG_HASH)?);
        // `len <= max_len`, a chunk's length, fits in u32.
        out.push((len as u32, hash));
    }
    r.expect_end()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A deterministic pseudo-random buffer (xorshift64, fixed seed).
    fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.truncate(len);
        out
    }

    /// A reader that returns at most `sizes[i % sizes.len()]` bytes per read.
    struct Dribble<'a> {
        data: &'a [u8],
        sizes: Vec<usize>,
        i: usize,
    }

    impl Read for Dribble<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let want = self.sizes[self.i % self.sizes.len()];
            self.i += 1;
            let n = want.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// Cut and hashed on two threads, any input gives the chunks one thread
    /// gives, in order, with the bytes that go with them: whatever the buffer
    /// size, however short the reads, at block boundaries and at the end.
    #[test]
    fn two_threads_cut_and_hash_as_one_does() {
        let block = 2 * MAX_CHUNK as usize;
        let data = pseudo_random(5 * block + 12_345, 7);
        for len in [
            0,
            1,
            5000,
            block - 1,
            block,
            block + 1,
            3 * block,
            data.len(),
        ] {
            let data = &data[..len];
            let want = sig_of(data);
            for sizes in [vec![usize::MAX], vec![1000, 70_000, 3]] {
                let reader = Dribble { data, sizes, i: 0 };
                let mut got = Vec::new();
                let total =
                    for_each_chunk_pipelined(reader, block, Chunking::DEFAULT, |r, bytes| {
                        let at = r.offset as usize;
                        assert_eq!(bytes, &data[at..at + r.len as usize]);
                        got.push(r);
                        Ok(())
                    })
                    .unwrap();
                assert_eq!(total, len as u64);
                assert!(got == want, "{len} bytes: the chunk lists differ");
            }
        }
        // An error from the callback or the reader stops the walk.
        let e = for_each_chunk_pipelined(Cursor::new(&data), block, Chunking::DEFAULT, |r, _| {
            if r.offset > block as u64 {
                Err(io::Error::other("enough"))
            } else {
                Ok(())
            }
        })
        .unwrap_err();
        assert_eq!(e.to_string(), "enough");
        /// Some blocks' worth of bytes, then a read error.
        struct FailsLater<'a>(&'a [u8]);
        impl Read for FailsLater<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0.is_empty() {
                    return Err(io::Error::other("disk on fire"));
                }
                let n = buf.len().min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let failing = FailsLater(&data[..3 * block]);
        let e =
            for_each_chunk_pipelined(failing, block, Chunking::DEFAULT, |_, _| Ok(())).unwrap_err();
        assert_eq!(e.to_string(), "disk on fire");
    }

    fn lens(chunks: &[ChunkRef]) -> Vec<u32> {
        chunks.iter().map(|c| c.len).collect()
    }

    fn sig_of(data: &[u8]) -> Vec<ChunkRef> {
        signature(Cursor::new(data)).unwrap()
    }

    fn hex(h: &Hash) -> String {
        h.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A file's chunk sizes grow with the square root of its size, in steps
    /// of two, from a 2 KiB average (files up to 4 MiB) through the pinned
    /// sizes (to 64 MiB) to 128 KiB; peers name them by log2 of the average,
    /// and nothing else is taken. A large file cut with its chunking gets chunks of those sizes.
    #[test]
    fn chunking_grows_with_the_file() {
        let d = Chunking::DEFAULT;
        assert_eq!(
            (d.min(), d.avg(), d.max()),
            (MIN_CHUNK as usize, AVG_CHUNK as usize, MAX_CHUNK as usize)
        );
        for (size, avg) in [
            (0, 2 << 10),
            (1, 2 << 10),
            (4 << 20, 2 << 10),
            ((4 << 20) + 1, 4 << 10),
            (16 << 20, 4 << 10),
            ((16 << 20) + 1, 8 << 10),
            (64 << 20, 8 << 10),
            ((64 << 20) + 1, 16 << 10),
            (1 << 30, 32 << 10),
            (2 << 30, 64 << 10),
            (4 << 30, 64 << 10),
            ((4 << 30) + 1, 128 << 10),
            (u64::MAX, 128 << 10),
        ] {
            let c = Chunking::for_size(size);
            assert_eq!(c.avg(), avg, "{size}");
            assert_eq!((c.min(), c.max()), (avg / 4, avg * 8), "{size}");
            assert_eq!(Chunking::from_bits(c.bits()), Some(c));
        }
        for bits in [0, 10, 18, 255] {
            assert_eq!(Chunking::from_bits(bits), None, "{bits}");
        }
        let big = Chunking::for_size(2 << 30);
        let data = pseudo_random(6 << 20, 3);
        let mut lens = Vec::new();
        for_each_chunk_sized(Cursor::new(&data), data.len() as u64, big, |r, _| {
            lens.push(r.len as usize);
            Ok(())
        })
        .unwrap();
        let (last, most) = lens.split_last().unwrap();
        assert!(most.iter().all(|&n| (big.min()..=big.max()).contains(&n)));
        assert!(*last <= big.max());
        let mean = data.len() / lens.len();
        assert!((big.avg() / 2..big.avg() * 2).contains(&mean), "{mean}");
    }

    /// Pins the cut points: a change of size, mask or normalization (which
    /// would make peers of different versions share no chunks) fails here. The
    /// digest also pins the chunk names and the digest's format.
    #[test]
    fn pinned_cut_points() {
        let data = pseudo_random(1 << 20, 0x6a73_796e_6332_3026);
        let sig = sig_of(&data);
        assert_eq!(
            lens(&sig[..12]),
            [11142, 2918, 8307, 9655, 2138, 15638, 11087, 9133, 9535, 16508, 12450, 13517]
        );
        assert_eq!((sig.len(), sig[105].len), (106, 2600));
        let digest = chunk_list_digest(sig.iter().map(|c| (c.len, c.hash)));
        assert_eq!(
            hex(&digest),
            "31414338911bc00f7c04d032e2ec72d5177c1539be432d9d062877feafb4e52a"
        );
    }

    #[test]
    fn chunks_tile_the_input_within_bounds() {
        let data = pseudo_random(3 << 20, 1);
        let sig = sig_of(&data);
        let mut offset = 0u64;
        for (i, c) in sig.iter().enumerate() {
            assert_eq!(c.offset, offset);
            assert!(c.len <= MAX_CHUNK);
            assert!(c.len >= MIN_CHUNK || i == sig.len() - 1);
            let bytes = &data[offset as usize..(offset + u64::from(c.len)) as usize];
            assert_eq!(&c.hash, blake3::hash(bytes).as_bytes());
            offset += u64::from(c.len);
        }
        assert_eq!(offset, data.len() as u64);
    }

    /// The streaming loop cuts exactly where fastcdc's own iterator over the
    /// whole buffer does.
    #[test]
    fn matches_fastcdc_over_the_whole_buffer() {
        let data = pseudo_random(2 << 20, 2);
        let want: Vec<(u64, u32)> = v2020::FastCDC::with_level(
            &data,
            MIN_CHUNK as usize,
            AVG_CHUNK as usize,
            MAX_CHUNK as usize,
            LEVEL,
        )
        .map(|c| (c.offset as u64, c.length as u32))
        .collect();
        let got: Vec<(u64, u32)> = sig_of(&data).iter().map(|c| (c.offset, c.len)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn chunking_ignores_read_sizes_and_buffer_size() {
        let mut data = pseudo_random(600 << 10, 3);
        // A run of zeroes has no cut point: it exercises MAX_CHUNK cuts at a refill.
        data.extend(std::iter::repeat_n(0u8, 200 << 10));
        data.extend(pseudo_random(100_001, 4));
        let want = sig_of(&data);
        let random_sizes = pseudo_random(97, 5)
            .iter()
            .map(|&b| usize::from(b) * 300 + 1)
            .collect::<Vec<_>>();
        for sizes in [vec![1], vec![7], vec![4096], random_sizes] {
            for block in [2 * MAX_CHUNK as usize, 3 * MAX_CHUNK as usize + 5, BLOCK] {
                let reader = Dribble {
                    data: &data,
                    sizes: sizes.clone(),
                    i: 0,
                };
                let mut got = Vec::new();
                let total = cut_with_block(reader, block, Chunking::DEFAULT, |offset, bytes| {
                    got.push(ChunkRef {
                        hash: *blake3::hash(bytes).as_bytes(),
                        offset,
                        len: bytes.len() as u32,
                    });
                    Ok(())
                })
                .unwrap();
                assert_eq!(total, data.len() as u64);
                assert_eq!(got, want, "read sizes {:?}, block {block}", &sizes[..1]);
            }
        }
    }

    #[test]
    fn an_insertion_changes_only_nearby_chunks() {
        let old = pseudo_random(4 << 20, 6);
        let mut new = old.clone();
        new.splice(10_000..10_000, pseudo_random(100, 7));
        let (a, b) = (sig_of(&old), sig_of(&new));
        let have: std::collections::HashSet<Hash> = a.iter().map(|c| c.hash).collect();
        let missing = b.iter().filter(|c| !have.contains(&c.hash)).count();
        assert!(b.len() > 400, "{} chunks", b.len());
        assert!(
            (1..=3).contains(&missing),
            "{missing} of {} chunks changed",
            b.len()
        );
    }

    #[test]
    fn empty_input() {
        let mut calls = 0;
        let total = for_each_chunk(Cursor::new(&[][..]), |_, _| {
            calls += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!((total, calls), (0, 0));
        assert!(sig_of(&[]).is_empty());
        assert_eq!(
            file_hash(Cursor::new(&[][..]), 0).unwrap(),
            *blake3::hash(b"").as_bytes()
        );
        assert_eq!(
            chunk_list_digest([]),
            *blake3::Hasher::new_derive_key(DIGEST_CONTEXT)
                .finalize()
                .as_bytes()
        );
    }

    #[test]
    fn a_short_input_is_one_chunk() {
        let data = pseudo_random(100, 8);
        let sig = sig_of(&data);
        assert_eq!(lens(&sig), [100]);
        assert_eq!(sig[0].hash, *blake3::hash(&data).as_bytes());
    }

    #[test]
    fn errors_propagate() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk on fire"))
            }
        }
        let e = for_each_chunk(Failing, |_, _| Ok(())).unwrap_err();
        assert_eq!(e.to_string(), "disk on fire");
        let e = file_hash(Failing, 1).unwrap_err();
        assert_eq!(e.to_string(), "disk on fire");

        let data = pseudo_random(1 << 20, 9);
        let mut seen = 0;
        let e = for_each_chunk(Cursor::new(&data), |_, _| {
            seen += 1;
            if seen == 3 {
                return Err(io::Error::other("stop"));
            }
            Ok(())
        })
        .unwrap_err();
        assert_eq!((e.to_string().as_str(), seen), ("stop", 3));
    }

    #[test]
    fn file_hash_is_blake3_of_the_bytes() {
        for len in [1, 1000, 256 << 10, (1 << 20) + 17] {
            let data = pseudo_random(len, 10);
            let reader = Dribble {
                data: &data,
                sizes: vec![100_000, 3],
                i: 0,
            };
            assert_eq!(
                file_hash(reader, len as u64).unwrap(),
                *blake3::hash(&data).as_bytes()
            );
            // Only the expected length is read; a shorter stream is an error.
            let mut longer = data.clone();
            longer.extend_from_slice(b"more");
            assert_eq!(
                file_hash(Cursor::new(&longer), len as u64).unwrap(),
                *blake3::hash(&data).as_bytes()
            );
            let e = file_hash(Cursor::new(&data), len as u64 + 1).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        }
    }

    #[test]
    fn chunk_list_digest_covers_order_and_lengths() {
        let (h1, h2) = ([1u8; 32], [2u8; 32]);
        let base = chunk_list_digest([(10, h1), (20, h2)]);
        assert_ne!(base, chunk_list_digest([(20, h2), (10, h1)]));
        assert_ne!(base, chunk_list_digest([(11, h1), (20, h2)]));
        assert_ne!(base, chunk_list_digest([(10, h1)]));
        let mut b = DigestBuilder::default();
        b.push(10, h1);
        b.push(20, h2);
        assert_eq!(b.finish(), base);
        // Domain separation: not the plain hash of the same bytes.
        let mut plain = Vec::new();
        for (len, h) in [(10u32, h1), (20, h2)] {
            plain.extend_from_slice(&len.to_le_bytes());
            plain.extend_from_slice(&h);
        }
        assert_ne!(base, *blake3::hash(&plain).as_bytes());
    }

    #[test]
    fn sig_batch_roundtrip() {
        let sig = sig_of(&pseudo_random(1 << 20, 11));
        let (first, rest) = sig.split_at(40);
        let mut buf = Vec::new();
        encode_sig_batch(first, &mut buf);
        let wire = |c: &[ChunkRef]| -> Vec<(u32, SigHash)> {
            c.iter().map(|r| (r.len, sig_hash(&r.hash))).collect()
        };
        assert_eq!(
            decode_sig_batch(&buf, first.len(), MAX_CHUNK as usize).unwrap(),
            wire(first)
        );
        buf.clear();
        encode_sig_batch(rest, &mut buf);
        assert_eq!(
            decode_sig_batch(&buf, usize::MAX, MAX_CHUNK as usize).unwrap(),
            wire(rest)
        );
        buf.clear();
        encode_sig_batch(&[], &mut buf);
        assert_eq!(buf, [0]);
        assert!(decode_sig_batch(&buf, 0, MAX_CHUNK as usize)
            .unwrap()
            .is_empty());
    }

    fn entry(len: u64, out: &mut Vec<u8>) {
        put_varint(out, len);
        out.extend_from_slice(&[7u8; SIG_HASH]);
    }

    #[test]
    fn sig_batch_decode_errors() {
        let mut good = Vec::new();
        put_varint(&mut good, 2);
        entry(5, &mut good);
        entry(u64::from(MAX_CHUNK), &mut good);
        let ok = decode_sig_batch(&good, 2, MAX_CHUNK as usize).unwrap();
        assert_eq!(ok, [(5, [7; SIG_HASH]), (MAX_CHUNK, [7; SIG_HASH])]);

        // Truncated: at every cut of the input, including inside a varint.
        for n in 0..good.len() {
            assert!(
                matches!(
                    decode_sig_batch(&good[..n], 2, MAX_CHUNK as usize),
                    Err(DecodeError::Truncated { .. })
                ),
                "cut at {n}"
            );
        }
        // Trailing bytes.
        let mut long = good.clone();
        long.push(0);
        assert_eq!(
            decode_sig_batch(&long, 2, MAX_CHUNK as usize),
            Err(DecodeError::TrailingBytes(1))
        );
        // Too many.
        assert!(matches!(
            decode_sig_batch(&good, 1, MAX_CHUNK as usize),
            Err(DecodeError::FieldTooLarge { len: 2, max: 1, .. })
        ));
        // Zero length.
        let mut zero = vec![1];
        entry(0, &mut zero);
        assert!(matches!(
            decode_sig_batch(&zero, 10, MAX_CHUNK as usize),
            Err(DecodeError::InvalidTag { tag: 0, .. })
        ));
        // Oversized length.
        let mut big = vec![1];
        entry(u64::from(MAX_CHUNK) + 1, &mut big);
        assert!(matches!(
            decode_sig_batch(&big, 10, MAX_CHUNK as usize),
            Err(DecodeError::FieldTooLarge { len, .. }) if len == u64::from(MAX_CHUNK) + 1
        ));
        // A huge claimed count with no bytes behind it allocates nothing big
        // and fails as truncated.
        let mut huge = Vec::new();
        put_varint(&mut huge, u64::MAX);
        assert!(matches!(
            decode_sig_batch(&huge, usize::MAX, MAX_CHUNK as usize),
            Err(DecodeError::Truncated { .. })
        ));
    }
}
