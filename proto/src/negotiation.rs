//! Making sense of the peer's opening: settling a connection from two
//! hellos, and sniffing the first bytes of a stream.
//!
//! Kept apart from the message encoding in [`crate::handshake`] because this
//! is policy (which versions and algorithms are acceptable, what a stray TLS
//! client looks like), not wire format.

use crate::{Compression, HandshakeError, HandshakeMsg, Hello, MAGIC};

/// What both sides agreed on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// The protocol version in use.
    pub version: u16,
    /// Known algorithms both sides support, in the local preference order;
    /// always contains [`Compression::NONE`].
    pub compression: Vec<Compression>,
}

impl Negotiated {
    /// The algorithm to use by default: the most preferred common one.
    pub fn preferred(&self) -> Compression {
        self.compression
            .first()
            .copied()
            .unwrap_or(Compression::NONE)
    }

    /// Whether `alg` may be used on this connection.
    pub fn allows(&self, alg: Compression) -> bool {
        self.compression.contains(&alg)
    }
}

/// Settles the connection from our hello and the peer's message.
pub fn negotiate(local: &Hello, remote: &HandshakeMsg) -> Result<Negotiated, HandshakeError> {
    let remote = match remote {
        HandshakeMsg::Refuse { reason } => {
            return Err(HandshakeError::Refused {
                reason: reason.clone(),
            })
        }
        HandshakeMsg::Hello(hello) => hello,
    };
    if remote.version != local.version {
        return Err(HandshakeError::VersionMismatch {
            local: local.version,
            remote: remote.version,
        });
    }
    let mut compression = Vec::new();
    for &alg in &local.compression {
        if alg.is_known() && remote.compression.contains(&alg) && !compression.contains(&alg) {
            compression.push(alg);
        }
    }
    if !compression.contains(&Compression::NONE) {
        compression.push(Compression::NONE);
    }
    Ok(Negotiated {
        version: local.version,
        compression,
    })
}

/// Whether the first bytes from a peer look like a TLS record header
/// (handshake record `0x16`, major version `0x03`): a TLS client talking to
/// a plain listener, or the reverse. A shorter input matches when it is a
/// prefix of such a header; empty input matches nothing.
pub fn looks_like_tls(first: &[u8]) -> bool {
    match first {
        [] => false,
        [0x16] => true,
        [0x16, 0x03, ..] => true,
        _ => false,
    }
}

/// Whether the first bytes from a peer start with [`MAGIC`] (or are a
/// prefix of it, when shorter). Empty input matches nothing.
pub fn looks_like_jsync(first: &[u8]) -> bool {
    let n = first.len().min(MAGIC.len());
    n > 0 && first[..n] == MAGIC[..n]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(codes: &[u8]) -> HandshakeMsg {
        HandshakeMsg::Hello(Hello {
            version: crate::PROTOCOL_VERSION,
            compression: codes.iter().map(|&c| Compression(c)).collect(),
            agent: "peer".into(),
        })
    }

    #[test]
    fn picks_the_common_set_in_local_order() {
        let local = Hello::ours("me");
        let got = negotiate(&local, &hello(&[1, 0, 2])).unwrap();
        assert_eq!(
            got.compression,
            [Compression::ZSTD, Compression::LZ4, Compression::NONE]
        );
        assert_eq!(got.preferred(), Compression::ZSTD);
        assert_eq!(got.version, crate::PROTOCOL_VERSION);

        let got = negotiate(&local, &hello(&[1, 99])).unwrap();
        assert_eq!(got.compression, [Compression::LZ4, Compression::NONE]);
        assert!(got.allows(Compression::LZ4));
        assert!(!got.allows(Compression::ZSTD));

        // Nothing in common (and the peer forgot NONE): NONE still works.
        let got = negotiate(&local, &hello(&[99])).unwrap();
        assert_eq!(got.compression, [Compression::NONE]);
        assert_eq!(got.preferred(), Compression::NONE);
    }

    #[test]
    fn unknown_local_codes_and_duplicates_are_dropped() {
        let local = Hello {
            compression: vec![Compression(99), Compression::LZ4, Compression::LZ4],
            ..Hello::ours("me")
        };
        let got = negotiate(&local, &hello(&[99, 1, 0])).unwrap();
        assert_eq!(got.compression, [Compression::LZ4, Compression::NONE]);
    }

    #[test]
    fn refusal_and_version() {
        let local = Hello::ours("me");
        let refuse = HandshakeMsg::Refuse {
            reason: "maintenance".into(),
        };
        assert_eq!(
            negotiate(&local, &refuse),
            Err(HandshakeError::Refused {
                reason: "maintenance".into()
            })
        );
        let mut old = Hello::ours("old");
        old.version = 0;
        assert_eq!(
            negotiate(&local, &HandshakeMsg::Hello(old)),
            Err(HandshakeError::VersionMismatch {
                local: crate::PROTOCOL_VERSION,
                remote: 0
            })
        );
    }

    #[test]
    fn sniffing_first_bytes() {
        let client_hello = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01];
        assert!(looks_like_tls(&client_hello));
        assert!(looks_like_tls(&[0x16]));
        assert!(!looks_like_tls(&[]));
        assert!(!looks_like_tls(b"JSYN"));
        assert!(!looks_like_tls(&[0x16, 0x04]));
        assert!(!looks_like_jsync(&client_hello));

        assert!(looks_like_jsync(b"JSYN\x00\x01"));
        assert!(looks_like_jsync(b"JS"));
        assert!(!looks_like_jsync(b""));
        assert!(!looks_like_jsync(b"JSX"));
        assert!(!looks_like_jsync(b"GET / HTTP/1.1"));
    }
}
