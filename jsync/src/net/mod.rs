//! Transports: how two jsync nodes reach each other and agree to talk.
//!
//! A connection is TLS 1.3 over TCP (streams multiplexed by jsync's own `jmux`) or QUIC (native
//! streams), or plain TCP when both sides explicitly ask for `--insecure-plaintext`.
//! Whatever the transport, the result is a `Mux` that opens and accepts
//! independent byte streams with their own flow-control windows, plus the outcome of
//! the versioned jsync handshake. The runtime ([`crate::runtime`]) builds circuits on
//! those streams and never needs to know which transport carries them.

pub(crate) mod counting;
pub(crate) mod handshake;
pub(crate) mod jmux;
pub(crate) mod mux;
pub(crate) mod quic;
pub mod security;
pub(crate) mod socket;
pub(crate) mod tcp;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

pub use security::{ClientSecurity, ServerSecurity};

/// Which transport a client uses. A server always listens on both, on one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// TLS 1.3 over TCP, or plain TCP with `--insecure-plaintext`.
    #[default]
    Tcp,
    /// QUIC (always TLS 1.3).
    Quic,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Tcp => "tcp",
            Transport::Quic => "quic",
        })
    }
}

impl FromStr for Transport {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tcp" | "tls" => Ok(Transport::Tcp),
            "quic" => Ok(Transport::Quic),
            other => Err(format!(
                "unknown transport {other:?} (expected tcp or quic)"
            )),
        }
    }
}

/// Timeouts and liveness settings shared by clients and servers.
#[derive(Debug, Clone)]
pub struct LinkOptions {
    /// Bound on establishing the TCP connection or the QUIC handshake.
    pub connect_timeout: Duration,
    /// Bound on the TLS handshake plus the jsync hello exchange.
    pub handshake_timeout: Duration,
    /// How often an idle link sends a ping.
    pub keepalive: Duration,
    /// A link that hears nothing for this long is declared dead.
    pub idle_timeout: Duration,
    /// How long a drain waits for in-flight work when the link closes on purpose.
    pub close_grace: Duration,
    /// Our name and version, sent in the hello (for logs on the other side).
    pub agent: String,
}

impl Default for LinkOptions {
    fn default() -> Self {
        LinkOptions {
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(20),
            close_grace: Duration::from_secs(5),
            agent: concat!("jsync/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}
