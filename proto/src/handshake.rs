//! The handshake: the first message each side sends, before any frame.
//!
//! It exists to fail early and clearly: a peer that is not jsync at all (bad
//! magic, or a TLS client on the plain port: see [`crate::looks_like_tls`]), a jsync
//! of another protocol version, or a peer that refuses us, is reported as
//! such instead of as a garbled frame later on. It also settles which
//! compression algorithms both sides can use.
//!
//! Wire layout of a [`HandshakeMsg`]:
//!
//! | bytes | field                                                   |
//! |-------|---------------------------------------------------------|
//! | 0..4  | [`MAGIC`] `"JSYN"`                                      |
//! | 4..6  | protocol version, `u16` big-endian                      |
//! | 6     | kind: 0 hello, 1 refuse                                 |
//! | 7..   | varint body length (≤ 4096), then the body              |
//!
//! Hello body: varint count + one byte per compression code, then the agent
//! (varint length + UTF-8). Refuse body: the reason (varint length + UTF-8).
//!
//! The version sits at a fixed offset and the body is length-prefixed, so a
//! message from any future version decodes far enough to report its version:
//! for a version other than ours the body is read on a best-effort basis and
//! never makes decoding fail, and [`crate::negotiate`] then reports
//! [`crate::HandshakeError::VersionMismatch`].

use crate::codec::{put_str, Codec, Reader};
use crate::{put_bytes, Compression, DecodeError};

/// The first four bytes a jsync peer sends.
pub const MAGIC: [u8; 4] = *b"JSYN";
/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 19;
/// Longest handshake body.
pub const HANDSHAKE_BODY_MAX: usize = 4096;
/// Longest whole handshake message.
pub const HANDSHAKE_MAX: usize = 4096 + 16;

const KIND_HELLO: u8 = 0;
const KIND_REFUSE: u8 = 1;
/// Magic, version and kind.
const FIXED_LEN: usize = 7;

/// What a side offers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// Its protocol version.
    pub version: u16,
    /// Compression algorithms it supports, preferred first. Unknown codes
    /// from a newer peer are kept.
    pub compression: Vec<Compression>,
    /// Software name and version, e.g. `"jsync/0.1.0"`.
    pub agent: String,
}

impl Hello {
    /// This build's hello: [`PROTOCOL_VERSION`], zstd then lz4 then none.
    pub fn ours(agent: &str) -> Hello {
        Hello {
            version: PROTOCOL_VERSION,
            compression: vec![Compression::ZSTD, Compression::LZ4, Compression::NONE],
            agent: agent.to_owned(),
        }
    }

    fn encode_body(&self, body: &mut Vec<u8>) {
        let codes: Vec<u8> = self.compression.iter().map(|c| c.0).collect();
        put_bytes(body, &codes);
        put_str(body, &self.agent);
    }

    fn decode_body(version: u16, r: &mut Reader<'_>) -> Result<Hello, DecodeError> {
        let codes = r.bytes("compression list", HANDSHAKE_BODY_MAX)?;
        let agent = r.str("agent", HANDSHAKE_BODY_MAX)?.to_owned();
        Ok(Hello {
            version,
            compression: codes.iter().map(|&c| Compression(c)).collect(),
            agent,
        })
    }
}

/// A handshake message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandshakeMsg {
    /// An offer.
    Hello(Hello),
    /// A refusal, sent instead of a hello (or in answer to one).
    Refuse {
        /// Why, for the other side's user.
        reason: String,
    },
}

impl Codec for HandshakeMsg {
    /// A `Refuse` is sent with our [`PROTOCOL_VERSION`].
    ///
    /// In debug builds, panics if the body exceeds [`HANDSHAKE_BODY_MAX`].
    fn encode(&self, buf: &mut Vec<u8>) {
        let mut body = Vec::new();
        let (version, kind) = match self {
            HandshakeMsg::Hello(hello) => {
                hello.encode_body(&mut body);
                (hello.version, KIND_HELLO)
            }
            HandshakeMsg::Refuse { reason } => {
                put_str(&mut body, reason);
                (PROTOCOL_VERSION, KIND_REFUSE)
            }
        };
        debug_assert!(body.len() <= HANDSHAKE_BODY_MAX, "handshake body too large");
        buf.extend_from_slice(&MAGIC);
        buf.extend_from_slice(&version.to_be_bytes());
        buf.push(kind);
        put_bytes(buf, &body);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let magic = r.take(4)?;
        if magic != MAGIC {
            return Err(bad_magic(magic));
        }
        let version = r.u16()?;
        let kind = r.u8()?;
        let body = r.bytes("handshake body", HANDSHAKE_BODY_MAX)?;
        let mut body = Reader::new(body);
        if version == PROTOCOL_VERSION {
            let msg = match kind {
                KIND_HELLO => HandshakeMsg::Hello(Hello::decode_body(version, &mut body)?),
                KIND_REFUSE => HandshakeMsg::Refuse {
                    reason: body.str("reason", HANDSHAKE_BODY_MAX)?.to_owned(),
                },
                tag => {
                    return Err(DecodeError::InvalidTag {
                        what: "handshake kind",
                        tag,
                    })
                }
            };
            body.expect_end()?;
            return Ok(msg);
        }
        // Another version: keep what reads as ours, never fail on the body.
        Ok(match kind {
            KIND_REFUSE => HandshakeMsg::Refuse {
                reason: match body.str("reason", HANDSHAKE_BODY_MAX) {
                    Ok(reason) => reason.to_owned(),
                    Err(_) => format!("(unreadable refusal from protocol version {version})"),
                },
            },
            _ => HandshakeMsg::Hello(Hello::decode_body(version, &mut body).unwrap_or(Hello {
                version,
                compression: Vec::new(),
                agent: String::new(),
            })),
        })
    }
}

fn bad_magic(prefix: &[u8]) -> DecodeError {
    let mut found = [0u8; 4];
    let n = prefix.len().min(4);
    found[..n].copy_from_slice(&prefix[..n]);
    DecodeError::BadMagic { found }
}

/// Phase one for handshakes: `Ok(Some(n))` when a whole message of `n` bytes
/// is at the front of `buf`, `Ok(None)` when more bytes are needed. Fails as
/// soon as the bytes present cannot begin a handshake (wrong magic, even on
/// a partial one) or announce a body over [`HANDSHAKE_BODY_MAX`].
pub fn handshake_len(buf: &[u8]) -> Result<Option<usize>, DecodeError> {
    let n = buf.len().min(MAGIC.len());
    if buf[..n] != MAGIC[..n] {
        return Err(bad_magic(buf));
    }
    if buf.len() < FIXED_LEN {
        return Ok(None);
    }
    let mut r = Reader::new(&buf[FIXED_LEN..]);
    let len = match r.varint() {
        Ok(len) => len,
        Err(DecodeError::Truncated { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    if len > HANDSHAKE_BODY_MAX as u64 {
        return Err(DecodeError::FieldTooLarge {
            what: "handshake body",
            len,
            max: HANDSHAKE_BODY_MAX as u64,
        });
    }
    let total = FIXED_LEN + r.position() + len as usize;
    Ok((buf.len() >= total).then_some(total))
}

/// Appends a raw handshake message: for tests that need to forge one from
/// another protocol version.
#[cfg(test)]
pub(crate) fn forge(version: u16, kind: u8, body: &[u8]) -> Vec<u8> {
    let mut buf = MAGIC.to_vec();
    buf.extend_from_slice(&version.to_be_bytes());
    buf.push(kind);
    put_bytes(&mut buf, body);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode_exact, encode_to_vec, negotiate, HandshakeError};

    #[test]
    fn hello_and_refuse_roundtrip() {
        let mut odd = Hello::ours("jsync/9.9.9");
        odd.compression.push(Compression(42));
        for msg in [
            HandshakeMsg::Hello(Hello::ours("jsync/0.1.0")),
            HandshakeMsg::Hello(odd),
            HandshakeMsg::Refuse {
                reason: "no such module".into(),
            },
        ] {
            let bytes = encode_to_vec(&msg);
            assert!(bytes.len() <= HANDSHAKE_MAX);
            assert_eq!(&bytes[..4], b"JSYN");
            assert_eq!(&bytes[4..6], &PROTOCOL_VERSION.to_be_bytes());
            assert_eq!(handshake_len(&bytes), Ok(Some(bytes.len())));
            assert_eq!(decode_exact::<HandshakeMsg>(&bytes).unwrap(), msg);
        }
    }

    #[test]
    fn refuse_fails_negotiation() {
        let bytes = encode_to_vec(&HandshakeMsg::Refuse {
            reason: "too many connections".into(),
        });
        let msg = decode_exact::<HandshakeMsg>(&bytes).unwrap();
        let err = negotiate(&Hello::ours("a"), &msg).unwrap_err();
        assert_eq!(
            err.to_string(),
            "peer refused the connection: too many connections"
        );
    }

    #[test]
    fn future_version_with_longer_body_reports_its_version() {
        // A newer version's hello: our body layout plus fields we do not know.
        let (ours, next) = (PROTOCOL_VERSION, PROTOCOL_VERSION + 1);
        let mut body = Vec::new();
        Hello::ours("jsync/2.0.0").encode_body(&mut body);
        body.extend_from_slice(&[9; 100]);
        let bytes = forge(next, KIND_HELLO, &body);
        assert_eq!(handshake_len(&bytes), Ok(Some(bytes.len())));
        let msg = decode_exact::<HandshakeMsg>(&bytes).unwrap();
        let HandshakeMsg::Hello(hello) = &msg else {
            panic!("{msg:?}")
        };
        assert_eq!(hello.agent, "jsync/2.0.0");
        let err = negotiate(&Hello::ours("jsync/0.1.0"), &msg).unwrap_err();
        assert_eq!(
            err,
            HandshakeError::VersionMismatch {
                local: ours,
                remote: next
            }
        );
        let text = err.to_string();
        assert!(
            text.contains(&format!("version {ours}")) && text.contains(&format!("version {next}")),
            "{text}"
        );

        // A body in a layout we cannot read at all, and an unknown kind.
        for (kind, body) in [(KIND_HELLO, &[0xff; 7][..]), (7, &[][..])] {
            let msg = decode_exact::<HandshakeMsg>(&forge(next, kind, body)).unwrap();
            assert_eq!(
                negotiate(&Hello::ours("a"), &msg),
                Err(HandshakeError::VersionMismatch {
                    local: ours,
                    remote: next
                })
            );
        }
    }

    #[test]
    fn own_version_is_strict() {
        let mut body = Vec::new();
        Hello::ours("a").encode_body(&mut body);
        body.push(0);
        assert_eq!(
            decode_exact::<HandshakeMsg>(&forge(PROTOCOL_VERSION, KIND_HELLO, &body)),
            Err(DecodeError::TrailingBytes(1))
        );
        assert_eq!(
            decode_exact::<HandshakeMsg>(&forge(PROTOCOL_VERSION, 5, &[])),
            Err(DecodeError::InvalidTag {
                what: "handshake kind",
                tag: 5
            })
        );
        let bad_agent = [0, 2, 0xc3, 0x28];
        assert_eq!(
            decode_exact::<HandshakeMsg>(&forge(PROTOCOL_VERSION, KIND_HELLO, &bad_agent)),
            Err(DecodeError::InvalidUtf8 { what: "agent" })
        );
    }

    #[test]
    fn bad_magic() {
        let err = decode_exact::<HandshakeMsg>(b"GET / HTTP/1.1\r\n").unwrap_err();
        assert_eq!(err, DecodeError::BadMagic { found: *b"GET " });
        assert_eq!(
            handshake_len(b"JSX"),
            Err(DecodeError::BadMagic {
                found: [b'J', b'S', b'X', 0]
            })
        );
    }

    #[test]
    fn handshake_len_is_incremental() {
        let bytes = encode_to_vec(&HandshakeMsg::Hello(Hello::ours("jsync/0.1.0")));
        for n in 0..bytes.len() {
            assert_eq!(handshake_len(&bytes[..n]), Ok(None), "prefix {n}");
            assert!(matches!(
                decode_exact::<HandshakeMsg>(&bytes[..n]),
                Err(DecodeError::Truncated { .. })
            ));
        }
        let mut more = bytes.clone();
        more.extend_from_slice(b"next frame");
        assert_eq!(handshake_len(&more), Ok(Some(bytes.len())));
    }

    #[test]
    fn handshake_len_bounds() {
        let mut big = forge(1, KIND_HELLO, &[]);
        big.truncate(FIXED_LEN);
        crate::put_varint(&mut big, HANDSHAKE_BODY_MAX as u64 + 1);
        assert!(matches!(
            handshake_len(&big),
            Err(DecodeError::FieldTooLarge {
                what: "handshake body",
                ..
            })
        ));
        assert!(matches!(
            decode_exact::<HandshakeMsg>(&big),
            Err(DecodeError::FieldTooLarge { .. })
        ));
        let mut overlong = big[..FIXED_LEN].to_vec();
        overlong.extend_from_slice(&[0x80, 0x00]);
        assert_eq!(handshake_len(&overlong), Err(DecodeError::BadVarint));
        // A varint still incomplete after 9 bytes is merely incomplete.
        let mut partial = big[..FIXED_LEN].to_vec();
        partial.extend_from_slice(&[0x80; 9]);
        assert_eq!(handshake_len(&partial), Ok(None));
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        use proptest::prelude::*;
        proptest!(|(tail in proptest::collection::vec(any::<u8>(), 0..64), version in 0u16..4)| {
            let mut bytes = MAGIC.to_vec();
            bytes.extend_from_slice(&version.to_be_bytes());
            bytes.extend_from_slice(&tail);
            let _ = handshake_len(&bytes);
            let _ = decode_exact::<HandshakeMsg>(&bytes);
            let _ = decode_exact::<HandshakeMsg>(&tail);
        });
    }
}
