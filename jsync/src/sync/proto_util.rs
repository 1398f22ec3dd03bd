//! Small helpers for speaking the sync messages on circuits: wrap a message in a
//! Fragment, decode a payload, and insist on the next message's op.

use proto::{Codec, Fragment, Op};

use crate::error::{Error, Result};

/// A fragment of op `op` whose payload is `msg`.
pub(crate) fn fragment<T: Codec>(op: Op, msg: &T) -> Fragment {
    let mut payload = Vec::new();
    msg.encode(&mut payload);
    Fragment::new(op).with_payload(payload)
}

/// Decodes a whole payload as `T`; anything left over is an error.
pub(crate) fn decode<T: Codec>(payload: &[u8], peer: &str) -> Result<T> {
    proto::decode_exact(payload).map_err(|source| Error::Protocol {
        peer: peer.into(),
        source,
    })
}
