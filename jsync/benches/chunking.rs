//! Single-core speed of the sync engine's chunker (`src/sync/chunker.rs`), next
//! to the libraries it is built on, so a slow result says which layer lost time.
//!
//! On N bytes of pseudo-random data in memory (default 256 MiB):
//! - `fastcdc_slice`: fastcdc's own v2020 iterator over the whole slice, the
//!   ceiling for cutting (no reads, no copies);
//! - `fastcdc_blake3_slice`: that plus BLAKE3 of each chunk, the ceiling for
//!   `for_each_chunk`;
//! - `for_each_cut`: the chunker's streaming loop from a `Cursor` (copies into
//!   its 4 MiB buffer, cuts in place), no hashing;
//! - `for_each_chunk`: the same plus BLAKE3 per chunk, what a sync does;
//! - `blake3_slice` and `file_hash`: BLAKE3 of the whole buffer in one call, and
//!   streamed through the chunker's `file_hash`.
//!
//! Plus the signature's wire form: encoding and decoding 100k chunk refs.
//! Throughputs are in decimal GB/s (criterion's `BytesDecimal`), like the
//! targets in `shared/CRATES.md`.
//!
//! The chunker is crate-private, so this bench compiles its source file as a
//! module of its own (`#[path]`); it is the same code the library runs.
//!
//! Run: `cargo bench -p jsync --bench chunking [-- FILTER]`. `JSYNC_BENCH_MIB`
//! sets N. Without `--bench` (as under `cargo test --all-targets`) criterion
//! runs each case once, on 8 MiB, as a smoke test.

use std::hint::black_box;
use std::io::Cursor;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use fastcdc::v2020::{FastCDC, Normalization};

#[allow(dead_code, reason = "the bench uses only part of the chunker's API")]
#[path = "../src/sync/chunker.rs"]
mod chunker;

use chunker::{ChunkRef, AVG_CHUNK, MAX_CHUNK, MIN_CHUNK};

/// Deterministic pseudo-random bytes (xorshift64).
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

fn data_len() -> usize {
    let bench = std::env::args().any(|a| a == "--bench");
    let default = if bench { 256 } else { 8 };
    let mib = std::env::var("JSYNC_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(default);
    mib << 20
}

fn throughput(c: &mut Criterion) {
    let data = pseudo_random(data_len(), 0x6a73_796e_6320_6265);
    let mut g = c.benchmark_group("chunking");
    g.throughput(Throughput::BytesDecimal(data.len() as u64))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8));

    g.bench_function("fastcdc_slice", |b| {
        b.iter(|| {
            FastCDC::with_level(
                black_box(&data),
                MIN_CHUNK as usize,
                AVG_CHUNK as usize,
                MAX_CHUNK as usize,
                Normalization::Level1,
            )
            .count()
        })
    });
    g.bench_function("fastcdc_blake3_slice", |b| {
        b.iter(|| {
            let mut x = 0u8;
            let cdc = FastCDC::with_level(
                black_box(&data),
                MIN_CHUNK as usize,
                AVG_CHUNK as usize,
                MAX_CHUNK as usize,
                Normalization::Level1,
            );
            for c in cdc {
                x ^= blake3::hash(&data[c.offset..c.offset + c.length]).as_bytes()[0];
            }
            x
        })
    });
    g.bench_function("for_each_cut", |b| {
        b.iter(|| {
            let mut n = 0usize;
            chunker::for_each_cut(Cursor::new(black_box(&data)), |_, _| {
                n += 1;
                Ok(())
            })
            .unwrap();
            n
        })
    });
    g.bench_function("for_each_chunk", |b| {
        b.iter(|| {
            let mut x = 0u8;
            chunker::for_each_chunk(Cursor::new(black_box(&data)), |r, _| {
                x ^= r.hash[0];
                Ok(())
            })
            .unwrap();
            x
        })
    });
    g.bench_function("blake3_slice", |b| {
        b.iter(|| blake3::hash(black_box(&data)))
    });
    g.bench_function("file_hash", |b| {
        b.iter(|| chunker::file_hash(Cursor::new(black_box(&data)), data.len() as u64).unwrap())
    });
    g.finish();
}

fn sig_wire(c: &mut Criterion) {
    const N: usize = 100_000;
    let lens = pseudo_random(N * 2, 7);
    let mut offset = 0u64;
    let refs: Vec<ChunkRef> = (0..N)
        .map(|i| {
            let len = u32::from(u16::from_le_bytes([lens[2 * i], lens[2 * i + 1]])) + 1;
            let r = ChunkRef {
                hash: *blake3::hash(&(i as u64).to_le_bytes()).as_bytes(),
                offset,
                len,
            };
            offset += u64::from(len);
            r
        })
        .collect();
    let mut wire = Vec::new();
    chunker::encode_sig_batch(&refs, &mut wire);

    let mut g = c.benchmark_group("signature_100k");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("encode", |b| {
        let mut out = Vec::new();
        b.iter(|| {
            out.clear();
            chunker::encode_sig_batch(black_box(&refs), &mut out);
            out.len()
        })
    });
    g.bench_function("decode", |b| {
        b.iter(|| {
            chunker::decode_sig_batch(black_box(&wire), N, chunker::MAX_CHUNK as usize).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, throughput, sig_wire);
criterion_main!(benches);
