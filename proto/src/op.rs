//! Operation codes: what a [`crate::Fragment`] asks the other side to do.
//!
//! Like rustls's wire enums, [`Op`] is a newtype over the wire `u16` with
//! named constants rather than a Rust `enum`, so a fragment carrying an op
//! this build has never heard of still decodes, and the runtime decides what
//! to do with it (typically: fail the circuit with a clear message).
//!
//! Codes `0x0000..=0x00FF` belong to the peer/circuit runtime; services
//! define their own from [`Op::USER`] up.

use std::fmt;

/// An operation code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Op(pub u16);

impl Op {
    /// No operation (the default).
    pub const NONE: Self = Self(0);
    /// The first fragment on a new circuit.
    pub const OPEN: Self = Self(1);
    /// Ask the other side to start a peer of the service named in `subject`.
    pub const START: Self = Self(2);
    /// The peer asked for by `START` is running.
    pub const STARTED: Self = Self(3);
    /// A peer or circuit failed; `error` says why.
    pub const FAIL: Self = Self(4);
    /// The connection is closing; `error` gives the reason.
    pub const GOAWAY: Self = Self(5);
    /// Liveness probe.
    pub const PING: Self = Self(6);
    /// Answer to `PING`.
    pub const PONG: Self = Self(7);
    /// Close the circuit in both directions.
    pub const CLOSE: Self = Self(8);
    /// Half-close: the sender is done sending on this circuit.
    pub const FIN: Self = Self(9);
    /// Reserved (the handshake has its own message type).
    pub const HELLO: Self = Self(10);
    /// The first code available to services.
    pub const USER: Self = Self(0x0100);
    /// Generic data, the first user op.
    pub const DATA: Self = Self(0x0100);

    /// Whether the code is in the runtime's reserved range `0x0000..=0x00FF`.
    pub fn is_runtime(self) -> bool {
        self.0 < Self::USER.0
    }

    /// The constant's name for the codes defined here.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::NONE => "NONE",
            Self::OPEN => "OPEN",
            Self::START => "START",
            Self::STARTED => "STARTED",
            Self::FAIL => "FAIL",
            Self::GOAWAY => "GOAWAY",
            Self::PING => "PING",
            Self::PONG => "PONG",
            Self::CLOSE => "CLOSE",
            Self::FIN => "FIN",
            Self::HELLO => "HELLO",
            Self::DATA => "DATA",
            _ => return None,
        })
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "op {:#06x}", self.0),
        }
    }
}

impl From<u16> for Op {
    fn from(code: u16) -> Self {
        Op(code)
    }
}

impl From<Op> for u16 {
    fn from(op: Op) -> Self {
        op.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMED: [Op; 12] = [
        Op::NONE,
        Op::OPEN,
        Op::START,
        Op::STARTED,
        Op::FAIL,
        Op::GOAWAY,
        Op::PING,
        Op::PONG,
        Op::CLOSE,
        Op::FIN,
        Op::HELLO,
        Op::DATA,
    ];

    #[test]
    fn names_are_unique_and_displayed() {
        let mut names: Vec<_> = NAMED.iter().map(|op| op.name().unwrap()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), NAMED.len());
        assert_eq!(Op::OPEN.to_string(), "OPEN");
        assert_eq!(Op::DATA.to_string(), "DATA");
        assert_eq!(Op(0x1234).to_string(), "op 0x1234");
        assert_eq!(Op(0x42).to_string(), "op 0x0042");
        assert_eq!(Op(0x1234).name(), None);
    }

    #[test]
    fn runtime_range() {
        for op in &NAMED[..11] {
            assert!(op.is_runtime(), "{op}");
        }
        assert!(Op(0xff).is_runtime());
        assert!(!Op::USER.is_runtime());
        assert!(!Op::DATA.is_runtime());
        assert!(!Op(u16::MAX).is_runtime());
        assert_eq!(Op::default(), Op::NONE);
    }

    #[test]
    fn conversions() {
        assert_eq!(Op::from(5), Op::GOAWAY);
        assert_eq!(u16::from(Op::FIN), 9);
    }
}
