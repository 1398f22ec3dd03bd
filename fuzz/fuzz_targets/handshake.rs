//! Fuzzes handshake decoding: `handshake_len` and `HandshakeMsg::decode`
//! must agree on where a message ends, never panic, and whatever decodes
//! must survive `negotiate` and re-encode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::{handshake_len, negotiate, Codec, HandshakeMsg, Hello, Reader, PROTOCOL_VERSION};

fuzz_target!(|data: &[u8]| {
    let len = handshake_len(data);
    let mut r = Reader::new(data);
    let decoded = HandshakeMsg::decode(&mut r);
    if let Ok(Some(n)) = len {
        assert!(n <= data.len());
    }
    let Ok(msg) = decoded else {
        return;
    };
    // A message that decodes was complete, and handshake_len saw its end.
    assert_eq!(len, Ok(Some(r.position())));
    let _ = negotiate(&Hello::ours("fuzz"), &msg);

    // Messages of our version re-encode to the same value.
    let ours = match &msg {
        HandshakeMsg::Hello(hello) => hello.version == PROTOCOL_VERSION,
        HandshakeMsg::Refuse { .. } => true,
    };
    if ours {
        let mut wire = Vec::new();
        msg.encode(&mut wire);
        let again = HandshakeMsg::decode(&mut Reader::new(&wire));
        assert_eq!(again.as_ref(), Ok(&msg));
    }
});
