//! The jsync wire format: handshake, frames and fragments, with no IO.
//!
//! This crate only turns values into bytes and bytes back into values (like
//! quinn-proto): no sockets, no async runtime, no clocks. Transports (TLS,
//! QUIC, in-memory pipes in tests) feed it bytes and take messages out, so
//! the protocol can be tested and fuzzed on its own, and every transport
//! speaks exactly the same bytes.
//!
//! # A connection on the wire
//!
//! 1. Each side sends a [`HandshakeMsg`]: `"JSYN"`, the protocol version
//!    (`u16` BE, always at bytes 4..6), a kind byte (hello or refuse) and a
//!    length-prefixed body. [`handshake_len`] finds its end in a buffer;
//!    [`negotiate`] settles the version and the compression algorithms.
//! 2. Then a stream of frames, each carrying one [`Fragment`]:
//!
//! ```text
//! +----------------+----------+--------------------------------------------+
//! | len: u32 BE    | flags u8 | body: len bytes                            |
//! | (≤ MAX_FRAME)  | low 4 bits: Compression of the payload, high 4 bits: 0 |
//! +----------------+----------+--------------------------------------------+
//! body = circuit u32 BE | serial varint | op u16 BE | subject str | part varint
//!      | args: varint count, str each | error: u8 0, or 1 + str
//!      | payload: the rest of the body, compressed as flags say
//! str  = varint byte length + UTF-8
//! ```
//!
//! Varints are unsigned LEB128 in their shortest form, at most 10 bytes.
//! Every length is bounded ([`MAX_FRAME`], [`MAX_PAYLOAD`], [`MAX_SUBJECT`],
//! [`MAX_ARG`], [`MAX_ARGS`], [`MAX_ERROR`], [`HANDSHAKE_MAX`]) and checked
//! before any allocation, decompression included.
//!
//! Reading is two-phase: [`frame_len`] says whether a whole frame is
//! buffered (not yet is normal), [`decode_frame`] parses one.
//! [`FrameDecoder`] wraps both around a buffer.
//!
//! # Example
//!
//! ```
//! use proto::{encode_frame, Compression, FrameDecoder, Fragment, Op};
//!
//! let frag = Fragment::new(Op::DATA)
//!     .with_subject("docs/readme.md")
//!     .with_args(["mode=0644"])
//!     .with_payload(vec![b'x'; 4096]);
//! let mut wire = Vec::new();
//! encode_frame(&frag, Compression::ZSTD, &mut wire);
//! assert!(wire.len() < 4096, "the payload was compressed");
//!
//! // The bytes arrive in two pieces.
//! let (a, b) = wire.split_at(wire.len() / 2);
//! let mut decoder = FrameDecoder::new();
//! decoder.feed(a);
//! assert_eq!(decoder.next()?, None); // not a whole frame yet
//! decoder.feed(b);
//! assert_eq!(decoder.next()?, Some(frag));
//! decoder.finish()?; // clean end of stream
//! # Ok::<(), proto::DecodeError>(())
//! ```

pub mod codec;
pub mod compression;
pub mod decoder;
pub mod error;
pub mod fragment;
pub mod frame;
pub mod handshake;
pub mod negotiation;
pub mod op;
pub mod sync;

pub use codec::*;
pub use compression::*;
pub use decoder::*;
pub use error::*;
pub use fragment::*;
pub use frame::*;
pub use handshake::*;
pub use negotiation::*;
pub use op::*;
