//! Fuzzes frame decoding: `decode_frame` on the raw input, `decode_frame_head`
//! on every prefix of it (a head plus the rest must be the whole frame), and a
//! `FrameDecoder` fed the same bytes in input-chosen pieces, which must
//! agree with one another and never panic or over-allocate.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::{
    decode_frame, decode_frame_head, encode_frame, frame_len, Compression, FrameDecoder,
};

fuzz_target!(|data: &[u8]| {
    // Phase one and two on the whole input.
    let _ = frame_len(data);
    let whole = decode_frame(data);

    // A head found in any prefix, with the bytes after it as the payload, is
    // what decode_frame makes of the whole frame.
    for cut in 0..=data.len().min(300) {
        if let Ok(Some((mut head, used, len))) = decode_frame_head(&data[..cut]) {
            assert!(used <= cut);
            if used + len == data.len() {
                head.payload = data[used..].to_vec();
                assert_eq!(whole.as_ref(), Ok(&head));
            }
        }
    }

    // The first byte picks the split sizes; the rest is the stream.
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let mut decoder = FrameDecoder::new();
    let mut at = 0;
    let mut step = usize::from(seed % 64) + 1;
    let mut frames = Vec::new();
    let mut failed = false;
    while at < stream.len() && !failed {
        let end = (at + step).min(stream.len());
        decoder.feed(&stream[at..end]);
        at = end;
        step = step * 7 % 61 + 1;
        loop {
            match decoder.next() {
                Ok(Some(frag)) => frames.push(frag),
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
    }
    if !failed {
        let _ = decoder.finish();
    }

    // Whatever decodes re-encodes into something that decodes the same.
    for frag in frames.iter().chain(whole.as_ref().ok()) {
        for alg in [Compression::NONE, Compression::LZ4, Compression::ZSTD] {
            let mut wire = Vec::new();
            encode_frame(frag, alg, &mut wire);
            assert_eq!(decode_frame(&wire).as_ref(), Ok(frag));
        }
    }
});
