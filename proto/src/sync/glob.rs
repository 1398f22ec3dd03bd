//! The answer of a server to a remote wildcard (`jcp host:'logs/*.gz' dst`):
//! the paths beneath its root that the pattern matches, many to a message, so
//! that the client can pull each as a source of its own.

use crate::codec::{put_bytes, put_varint, Codec, Reader};
use crate::DecodeError;

use super::MAX_PATH;

/// Most paths in one [`Matches`] message.
pub const MAX_MATCHES: usize = 65_536;

/// Paths (relative to the server's root, as bytes) a pattern matched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matches(pub Vec<Vec<u8>>);

impl Codec for Matches {
    fn encode(&self, buf: &mut Vec<u8>) {
        put_varint(buf, self.0.len() as u64);
        for p in &self.0 {
            put_bytes(buf, p);
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let n = r.count("matched paths", MAX_MATCHES, 1)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(r.bytes("matched path", MAX_PATH)?.to_vec());
        }
        Ok(Matches(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode_exact, encode_to_vec};

    #[test]
    fn matches_round_trip_and_refuse_hostile_counts() {
        let m = Matches(vec![
            b"logs/a.gz".to_vec(),
            b"logs/\xff.gz".to_vec(),
            Vec::new(),
        ]);
        assert_eq!(decode_exact::<Matches>(&encode_to_vec(&m)).unwrap(), m);
        // A count the bytes cannot hold allocates nothing and is refused.
        let mut hostile = Vec::new();
        put_varint(&mut hostile, u64::MAX);
        assert!(decode_exact::<Matches>(&hostile).is_err());
        // A path longer than MAX_PATH is refused.
        let long = Matches(vec![vec![b'a'; MAX_PATH + 1]]);
        assert!(decode_exact::<Matches>(&encode_to_vec(&long)).is_err());
    }
}
