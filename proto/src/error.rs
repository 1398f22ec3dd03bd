//! Errors of the wire format.
//!
//! Decoding untrusted bytes is the only thing in this crate that can fail, so
//! every way a peer can send something malformed has its own [`DecodeError`]
//! variant: the runtime logs it, and tests can assert on the exact cause.
//! Encoding never fails (see [`crate::Codec`]). [`HandshakeError`] adds the two
//! ways a well-formed handshake can still end the connection.

use crate::Compression;

/// Why a sequence of bytes is not a valid message.
///
/// Every decode error is fatal for the stream it came from: the byte stream
/// cannot be re-synchronised after a malformed frame.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended before the message did.
    #[error("truncated input: needed {needed} bytes but only {have} are available")]
    Truncated {
        /// How many bytes the message needs from the point where it stopped.
        needed: usize,
        /// How many bytes there were.
        have: usize,
    },
    /// A frame header announced a body larger than the protocol allows.
    #[error("frame too large: {len} bytes announced, the limit is {max}")]
    FrameTooLarge {
        /// The announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A field (a string, a list, a payload) is longer than its limit.
    #[error("{what} too large: {len} (the limit is {max})")]
    FieldTooLarge {
        /// Which field.
        what: &'static str,
        /// Its announced size (bytes, or entries for lists).
        len: u64,
        /// The limit.
        max: u64,
    },
    /// A text field is not valid UTF-8.
    #[error("{what} is not valid UTF-8")]
    InvalidUtf8 {
        /// Which field.
        what: &'static str,
    },
    /// A varint is longer than 10 bytes, overflows 64 bits, or is not in its
    /// shortest form.
    #[error("malformed varint (overlong, non-minimal or overflowing 64 bits)")]
    BadVarint,
    /// The stream does not start with the jsync magic bytes.
    #[error("not a jsync peer: expected magic \"JSYN\", found {found:02x?}")]
    BadMagic {
        /// The bytes found instead (zero-padded when the input was shorter).
        found: [u8; 4],
    },
    /// A frame's flags name a compression algorithm this side does not know.
    #[error("unknown compression algorithm code {0}")]
    UnknownCompression(u8),
    /// Compressed data could not be decompressed.
    #[error("corrupt {alg} data: {reason}")]
    Decompress {
        /// The algorithm in use.
        alg: Compression,
        /// What the decompressor said.
        reason: String,
    },
    /// Bytes were left over after a complete message.
    #[error("{0} unexpected trailing bytes after the message")]
    TrailingBytes(usize),
    /// A frame's flags byte has reserved bits set.
    #[error("reserved frame flag bits set: {0:#04x}")]
    ReservedFlags(u8),
    /// A one-byte tag (an option marker, a message kind) has a value that
    /// means nothing.
    #[error("invalid {what} tag {tag}")]
    InvalidTag {
        /// Which tag.
        what: &'static str,
        /// Its value.
        tag: u8,
    },
}

/// Why a handshake did not produce a usable connection.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// Both sides speak jsync but not the same protocol version.
    #[error(
        "incompatible protocol versions: this side speaks version {local}, \
         the peer speaks version {remote}"
    )]
    VersionMismatch {
        /// Our version.
        local: u16,
        /// The peer's version.
        remote: u16,
    },
    /// The peer answered with a refusal.
    #[error("peer refused the connection: {reason}")]
    Refused {
        /// The reason it gave.
        reason: String,
    },
    /// The peer's handshake message was malformed.
    #[error("malformed handshake: {0}")]
    Decode(#[from] DecodeError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_readable() {
        let e = DecodeError::Truncated { needed: 5, have: 2 };
        assert_eq!(
            e.to_string(),
            "truncated input: needed 5 bytes but only 2 are available"
        );
        let e = DecodeError::BadMagic { found: *b"GET " };
        assert!(e.to_string().contains("not a jsync peer"), "{e}");
        let e = DecodeError::Decompress {
            alg: Compression::ZSTD,
            reason: "bad".into(),
        };
        assert_eq!(e.to_string(), "corrupt zstd data: bad");
        let e = DecodeError::FieldTooLarge {
            what: "subject",
            len: 5000,
            max: 4096,
        };
        assert_eq!(e.to_string(), "subject too large: 5000 (the limit is 4096)");
    }

    #[test]
    fn handshake_messages() {
        let e = HandshakeError::VersionMismatch {
            local: 1,
            remote: 2,
        };
        assert_eq!(
            e.to_string(),
            "incompatible protocol versions: this side speaks version 1, \
             the peer speaks version 2"
        );
        let e = HandshakeError::Refused {
            reason: "busy".into(),
        };
        assert_eq!(e.to_string(), "peer refused the connection: busy");
        let e: HandshakeError = DecodeError::BadVarint.into();
        assert!(e.to_string().starts_with("malformed handshake: "), "{e}");
    }
}
