//! Typed errors of the jsync runtime.
//!
//! Kept apart, as rustls and quinn do: what the *peer* did wrong ([`Error::Protocol`],
//! [`Error::Remote`]), what went wrong *underneath* (IO, TLS, a lost connection), and
//! what the *caller* did wrong ([`Error::Usage`]). Every variant that involves a peer
//! names it, so a message printed by `jcp` or `jsrv` says which side failed and why.

use std::io;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can fail while connecting, handshaking or running circuits.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The TCP connection or the QUIC endpoint could not be set up.
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    /// Binding a listening socket failed.
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: String, source: io::Error },
    /// A bounded step (connect, TLS handshake, jsync handshake) took too long.
    #[error("timed out during {what} with {peer} (after {secs:.1} s)")]
    Timeout {
        what: &'static str,
        peer: String,
        secs: f64,
    },
    /// TLS failed: certificates, known keys, or a peer that does not speak TLS.
    #[error("secure connection with {peer} failed: {reason}")]
    Tls { peer: String, reason: String },
    /// The versioned jsync handshake failed (version mismatch, refusal).
    #[error("handshake with {peer} failed: {source}")]
    Handshake {
        peer: String,
        source: proto::HandshakeError,
    },
    /// The peer sent bytes that do not decode.
    #[error("malformed data from {peer}: {source}")]
    Protocol {
        peer: String,
        source: proto::DecodeError,
    },
    /// The peer broke the runtime's rules (e.g. a fragment out of order).
    #[error("protocol violation by {peer}: {what}")]
    Violation { peer: String, what: String },
    /// The other side reported a fatal error (a failed service, a refused request).
    #[error("{peer} failed: {reason}")]
    Remote { peer: String, reason: String },
    /// The connection ended before the work was done.
    #[error("connection to {peer} lost: {reason}")]
    ConnectionLost { peer: String, reason: String },
    /// The circuit was closed (by either side) and cannot carry more fragments.
    #[error("circuit {circuit} to {peer} is closed")]
    Closed { peer: String, circuit: u32 },
    /// The local peer was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// The run reached the time it was to stop at
    /// ([`crate::sync::SyncOptions::stop_at`]) before it was done.
    #[error("stopped at the time limit before the end of the run")]
    TimeLimit,
    /// The run was interrupted ([`crate::sync::SyncOptions::interrupt`]):
    /// the files in flight are kept as partial files for the next run.
    #[error("interrupted: files in flight are kept as partial files for the next run")]
    Interrupted,
    /// The remote side has no service of that name.
    #[error("{peer} has no service named {service:?}")]
    NoSuchService { peer: String, service: String },
    /// Local IO outside the connection (files, sockets options).
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    /// Keys or certificates could not be loaded or made.
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    /// A known-keys file could not be read or is malformed.
    #[error(transparent)]
    KnownKeys(#[from] crate::known_keys::KnownKeysError),
    /// The TLS configuration could not be built.
    #[error(transparent)]
    TlsSetup(#[from] crate::tls::TlsSetupError),
    /// A file or path could not be used: it escapes the root, is missing, or an IO
    /// call on it failed (the message names it).
    #[error("{0}")]
    Fs(String),
    /// A file changed or failed verification while being synced.
    #[error("{0}")]
    Content(String),
    /// The caller misused the API (e.g. a payload over the frame limit).
    #[error("invalid use: {0}")]
    Usage(String),
}

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    /// True when the failure comes from the network or the peer rather than from
    /// local files or misuse (lets callers choose an exit code).
    pub fn is_connection(&self) -> bool {
        matches!(
            self,
            Error::Connect { .. }
                | Error::Timeout { .. }
                | Error::Tls { .. }
                | Error::Handshake { .. }
                | Error::ConnectionLost { .. }
        )
    }

    /// True for failures of authentication (certificates, known keys).
    pub fn is_auth(&self) -> bool {
        matches!(self, Error::Tls { .. })
    }
}

/// An I/O error's text without a link to documentation some libraries
/// append (rustls: "peer closed connection without sending TLS
/// close_notify: https://docs.rs/..."): it is for a program's log, not a
/// user's message.
pub(crate) fn io_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(": https://") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// `e` and its causes on one line, `: `-separated, each said once: an
/// error whose message already quotes its source (most of [`Error`]'s do,
/// so that `to_string` alone says what failed) does not repeat it, as
/// `{e:#}` would.
pub fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = String::new();
    let mut next = Some(e);
    while let Some(cause) = next {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
        next = cause.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_text_leaves_out_links() {
        let e = std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "peer closed connection without sending TLS close_notify: https://docs.rs/rustls/x",
        );
        assert_eq!(
            io_text(&e),
            "peer closed connection without sending TLS close_notify"
        );
        let e = std::io::Error::other("plain");
        assert_eq!(io_text(&e), "plain");
    }

    #[test]
    fn chain_text_says_each_cause_once() {
        let e = Error::Protocol {
            peer: "local peer".into(),
            source: proto::DecodeError::FieldTooLarge {
                what: "subject",
                len: 5000,
                max: 4096,
            },
        };
        let e = anyhow::Error::new(e).context("cannot copy a to b");
        assert_eq!(
            chain_text(e.as_ref()),
            "cannot copy a to b: malformed data from local peer: subject too large: 5000 \
             (the limit is 4096)"
        );
    }
}
