//! The fragment: the one message type that flows over a connection once the
//! handshake is done.
//!
//! A fragment is one piece of a message on a circuit: which circuit, its
//! serial number, what it asks for ([`Op`]), a subject (a service name, a
//! path), a part number for multi-part messages, string arguments, an opaque
//! payload and an optional error text. Every field has a hard limit (the
//! `MAX_*` constants) that the decoder enforces before allocating.
//!
//! Wire layout of the fields, in order:
//!
//! | field   | encoding                                                |
//! |---------|---------------------------------------------------------|
//! | circuit | `u32` big-endian                                        |
//! | serial  | varint                                                  |
//! | op      | `u16` big-endian                                        |
//! | subject | varint length + UTF-8 (≤ [`MAX_SUBJECT`])               |
//! | part    | varint                                                  |
//! | args    | varint count (≤ [`MAX_ARGS`]), each varint length + UTF-8 (≤ [`MAX_ARG`]) |
//! | error   | `u8` 0 (none) or 1 followed by varint length + UTF-8 (≤ [`MAX_ERROR`]) |
//!
//! The standalone [`Codec`] encoding then adds the payload as varint length +
//! bytes. Inside a frame the payload is instead the tail of the frame body,
//! possibly compressed (see [`crate::frame`]).

use crate::codec::{put_str, put_varint, varint_len, Codec, Reader};
use crate::{put_bytes, DecodeError, Op, MAX_FRAME, MAX_PAYLOAD};

/// Longest subject, in bytes.
pub const MAX_SUBJECT: usize = 4096;
/// Longest single argument, in bytes.
pub const MAX_ARG: usize = 64 << 10;
/// Most arguments in one fragment.
pub const MAX_ARGS: usize = 1024;
/// Longest error text, in bytes.
pub const MAX_ERROR: usize = 64 << 10;
/// Bound on the encoded size of all fields but the payload, so that any valid
/// fragment fits in a frame of at most [`MAX_FRAME`] bytes.
pub const MAX_FIELDS: usize = MAX_FRAME - MAX_PAYLOAD;

/// One piece of a message on a circuit.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Fragment {
    /// The circuit it belongs to.
    pub circuit: u32,
    /// Its serial number on the circuit.
    pub serial: u64,
    /// What it asks for.
    pub op: Op,
    /// A service name, a path, ...: meaning depends on `op`.
    pub subject: String,
    /// Part number within a multi-part message.
    pub part: u64,
    /// String arguments.
    pub args: Vec<String>,
    /// Opaque data, at most [`MAX_PAYLOAD`] bytes.
    pub payload: Vec<u8>,
    /// Error text (with [`Op::FAIL`], [`Op::GOAWAY`], ...).
    pub error: Option<String>,
}

impl Fragment {
    /// An empty fragment with the given op.
    pub fn new(op: Op) -> Self {
        Fragment {
            op,
            ..Fragment::default()
        }
    }

    /// Sets the circuit.
    pub fn with_circuit(mut self, circuit: u32) -> Self {
        self.circuit = circuit;
        self
    }

    /// Sets the serial number.
    pub fn with_serial(mut self, serial: u64) -> Self {
        self.serial = serial;
        self
    }

    /// Sets the subject.
    pub fn with_subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = subject.into();
        self
    }

    /// Sets the part number.
    pub fn with_part(mut self, part: u64) -> Self {
        self.part = part;
        self
    }

    /// Sets the arguments.
    pub fn with_args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args = args.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the payload.
    pub fn with_payload(mut self, payload: impl Into<Vec<u8>>) -> Self {
        self.payload = payload.into();
        self
    }

    /// Sets the error text.
    pub fn with_error(mut self, error: impl Into<String>) -> Self {
        self.error = Some(error.into());
        self
    }

    /// Checks every limit the decoder will enforce, so a sender can refuse a
    /// fragment it built wrongly instead of having the peer reject it.
    pub fn validate(&self) -> Result<(), DecodeError> {
        fn limit(what: &'static str, len: usize, max: usize) -> Result<(), DecodeError> {
            if len > max {
                return Err(DecodeError::FieldTooLarge {
                    what,
                    len: len as u64,
                    max: max as u64,
                });
            }
            Ok(())
        }
        limit("subject", self.subject.len(), MAX_SUBJECT)?;
        limit("args", self.args.len(), MAX_ARGS)?;
        for arg in &self.args {
            limit("arg", arg.len(), MAX_ARG)?;
        }
        limit(
            "error",
            self.error.as_ref().map_or(0, String::len),
            MAX_ERROR,
        )?;
        limit("payload", self.payload.len(), MAX_PAYLOAD)?;
        limit("fragment fields", self.fields_len(), MAX_FIELDS)
    }

    /// How many bytes [`Fragment::encode_fields`] writes, counted without
    /// writing them (a sender checks every fragment it sends).
    fn fields_len(&self) -> usize {
        let str_len = |s: &str| varint_len(s.len() as u64) + s.len();
        4 + varint_len(self.serial)
            + 2
            + str_len(&self.subject)
            + varint_len(self.part)
            + varint_len(self.args.len() as u64)
            + self.args.iter().map(|a| str_len(a)).sum::<usize>()
            + 1
            + self.error.as_deref().map_or(0, str_len)
    }

    /// Appends every field but the payload.
    pub(crate) fn encode_fields(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&self.circuit.to_be_bytes());
        put_varint(buf, self.serial);
        buf.extend_from_slice(&self.op.0.to_be_bytes());
        put_str(buf, &self.subject);
        put_varint(buf, self.part);
        put_varint(buf, self.args.len() as u64);
        for arg in &self.args {
            put_str(buf, arg);
        }
        match &self.error {
            None => buf.push(0),
            Some(error) => {
                buf.push(1);
                put_str(buf, error);
            }
        }
    }

    /// Reads every field but the payload, which is left empty.
    /// Fails when the fields take more than [`MAX_FIELDS`] bytes, so that
    /// whatever decodes also passes [`Fragment::validate`].
    pub(crate) fn decode_fields(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let start = r.position();
        let circuit = r.u32()?;
        let serial = r.varint()?;
        let op = Op(r.u16()?);
        let subject = r.str("subject", MAX_SUBJECT)?.to_owned();
        let part = r.varint()?;
        let count = r.varint()?;
        if count > MAX_ARGS as u64 {
            return Err(DecodeError::FieldTooLarge {
                what: "args",
                len: count,
                max: MAX_ARGS as u64,
            });
        }
        // Each argument takes at least one byte: never reserve more entries
        // than there are bytes left.
        let mut args = Vec::with_capacity((count as usize).min(r.remaining()));
        for _ in 0..count {
            args.push(r.str("arg", MAX_ARG)?.to_owned());
        }
        let error = match r.u8()? {
            0 => None,
            1 => Some(r.str("error", MAX_ERROR)?.to_owned()),
            tag => return Err(DecodeError::InvalidTag { what: "error", tag }),
        };
        let len = r.position() - start;
        if len > MAX_FIELDS {
            return Err(DecodeError::FieldTooLarge {
                what: "fragment fields",
                len: len as u64,
                max: MAX_FIELDS as u64,
            });
        }
        Ok(Fragment {
            circuit,
            serial,
            op,
            subject,
            part,
            args,
            payload: Vec::new(),
            error,
        })
    }
}

impl Codec for Fragment {
    fn encode(&self, buf: &mut Vec<u8>) {
        self.encode_fields(buf);
        put_bytes(buf, &self.payload);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut frag = Fragment::decode_fields(r)?;
        frag.payload = r.bytes("payload", MAX_PAYLOAD)?.to_vec();
        Ok(frag)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{decode_exact, encode_to_vec};

    pub(crate) fn full() -> Fragment {
        Fragment::new(Op::DATA)
            .with_circuit(7)
            .with_serial(300)
            .with_subject("docs/readme.md")
            .with_part(2)
            .with_args(["a", "", "ü"])
            .with_payload(b"payload".to_vec())
            .with_error("disk full")
    }

    /// The length [`Fragment::validate`] counts is what is written.
    #[test]
    fn fields_len_is_what_encode_fields_writes() {
        let big = Fragment::new(Op(0xfffe))
            .with_serial(u64::MAX)
            .with_part(1 << 40)
            .with_subject("s".repeat(300))
            .with_args(vec!["a".repeat(200); 3]);
        for frag in [Fragment::default(), full(), big] {
            let mut fields = Vec::new();
            frag.encode_fields(&mut fields);
            assert_eq!(frag.fields_len(), fields.len(), "{frag:?}");
        }
    }

    #[test]
    fn roundtrip() {
        for frag in [Fragment::default(), Fragment::new(Op::PING), full()] {
            frag.validate().unwrap();
            let bytes = encode_to_vec(&frag);
            assert_eq!(decode_exact::<Fragment>(&bytes).unwrap(), frag);
        }
    }

    #[test]
    fn trailing_bytes() {
        let mut bytes = encode_to_vec(&full());
        bytes.push(0);
        assert_eq!(
            decode_exact::<Fragment>(&bytes),
            Err(DecodeError::TrailingBytes(1))
        );
    }

    #[test]
    fn every_prefix_is_truncated() {
        let bytes = encode_to_vec(&full());
        for n in 0..bytes.len() {
            let err = decode_exact::<Fragment>(&bytes[..n]).unwrap_err();
            assert!(matches!(err, DecodeError::Truncated { .. }), "{n}: {err:?}");
        }
    }

    /// The fields of a fragment up to (not including) the args count.
    fn head(subject: &[u8]) -> Vec<u8> {
        let mut buf = vec![0, 0, 0, 1, 0, 1, 0];
        put_bytes(&mut buf, subject);
        buf.push(0);
        buf
    }

    #[test]
    fn invalid_utf8_in_each_text_field() {
        let bad = [0xff, 0xfe];
        let mut subject = head(&bad);
        subject.extend_from_slice(&[0, 0, 0]);
        let mut arg = head(b"s");
        arg.push(1);
        put_bytes(&mut arg, &bad);
        arg.extend_from_slice(&[0, 0]);
        let mut error = head(b"s");
        error.extend_from_slice(&[0, 1]);
        put_bytes(&mut error, &bad);
        error.push(0);
        for (bytes, what) in [(subject, "subject"), (arg, "arg"), (error, "error")] {
            assert_eq!(
                decode_exact::<Fragment>(&bytes),
                Err(DecodeError::InvalidUtf8 { what })
            );
        }
    }

    #[test]
    fn limits_are_enforced() {
        let mut many = head(b"s");
        put_varint(&mut many, MAX_ARGS as u64 + 1);
        assert!(matches!(
            decode_exact::<Fragment>(&many),
            Err(DecodeError::FieldTooLarge { what: "args", .. })
        ));
        let mut long = head(b"s");
        long.push(1);
        put_varint(&mut long, MAX_ARG as u64 + 1);
        assert!(matches!(
            decode_exact::<Fragment>(&long),
            Err(DecodeError::FieldTooLarge { what: "arg", .. })
        ));
        let subject = head(&vec![b'x'; MAX_SUBJECT + 1]);
        assert!(matches!(
            decode_exact::<Fragment>(&subject),
            Err(DecodeError::FieldTooLarge {
                what: "subject",
                ..
            })
        ));
        let mut tag = head(b"s");
        tag.extend_from_slice(&[0, 2]);
        assert_eq!(
            decode_exact::<Fragment>(&tag),
            Err(DecodeError::InvalidTag {
                what: "error",
                tag: 2
            })
        );
    }

    #[test]
    fn fields_over_their_total_bound() {
        let mut bytes = head(b"s");
        put_varint(&mut bytes, 5);
        for _ in 0..5 {
            put_bytes(&mut bytes, &vec![b'a'; MAX_ARG]);
        }
        bytes.extend_from_slice(&[0, 0]);
        assert!(matches!(
            decode_exact::<Fragment>(&bytes),
            Err(DecodeError::FieldTooLarge {
                what: "fragment fields",
                ..
            })
        ));
    }

    #[test]
    fn validate_reports_local_misuse() {
        let frag = Fragment::new(Op::DATA).with_args(vec!["x"; MAX_ARGS + 1]);
        assert!(matches!(
            frag.validate(),
            Err(DecodeError::FieldTooLarge { what: "args", .. })
        ));
        // Each arg is fine, but together they overflow a frame.
        let frag = Fragment::new(Op::DATA).with_args(vec!["x".repeat(MAX_ARG); 8]);
        assert!(matches!(
            frag.validate(),
            Err(DecodeError::FieldTooLarge {
                what: "fragment fields",
                ..
            })
        ));
        let frag = Fragment::new(Op::FAIL).with_error("e".repeat(MAX_ERROR + 1));
        assert!(frag.validate().is_err());
    }
}
