//! One face for two multiplexers: jsync's own streams ([`super::jmux`]) over a
//! TCP/TLS byte stream, and native QUIC streams. Each stream has its own
//! flow-control window, which is what lets one stalled circuit slow only its
//! own sender.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};

pub(crate) type BoxRead = Box<dyn FrameRead + Send>;

/// A stream frames are read from. A stream that receives its bytes in pieces
/// of their own (jsync's multiplexer: one buffer per DATA frame) can hand over
/// a piece that is exactly a payload instead of copying it out.
pub(crate) trait FrameRead: AsyncRead + Unpin {
    /// The next `len` bytes as one buffer, if they arrived as exactly one
    /// piece; `Ok(None)` (nothing consumed) if not, or if the stream ended.
    /// Waits for the next piece when none is buffered.
    fn poll_take_exact(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        _len: usize,
    ) -> Poll<std::io::Result<Option<Vec<u8>>>> {
        Poll::Ready(Ok(None))
    }
}

impl<T: FrameRead + ?Sized> FrameRead for Box<T> {
    fn poll_take_exact(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        len: usize,
    ) -> Poll<std::io::Result<Option<Vec<u8>>>> {
        Pin::new(&mut **self).poll_take_exact(cx, len)
    }
}

impl FrameRead for quinn::RecvStream {}

#[cfg(test)]
impl FrameRead for &[u8] {}

pub(crate) type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// Both directions of one multiplexed stream.
pub(crate) struct RawStream {
    pub read: BoxRead,
    pub write: BoxWrite,
}

impl std::fmt::Debug for RawStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RawStream")
    }
}

/// Opens streams on an established connection. Cheap to clone.
#[derive(Clone)]
pub(crate) enum Mux {
    /// Our own multiplexer over a byte stream.
    Stream(super::jmux::Handle),
    Quic(quinn::Connection),
}

impl std::fmt::Debug for Mux {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mux::Stream(_) => f.write_str("Mux::Stream"),
            Mux::Quic(c) => write!(f, "Mux::Quic({})", c.remote_address()),
        }
    }
}

/// What the driver of a connection reports: streams the peer opened, and why the
/// connection ended once it has.
pub(crate) struct Driven {
    pub mux: Mux,
    pub inbound: mpsc::UnboundedReceiver<RawStream>,
    pub ended: watch::Receiver<Option<String>>,
}

impl Mux {
    pub(crate) async fn open(&self) -> io::Result<RawStream> {
        match self {
            Mux::Stream(handle) => handle.open(),
            Mux::Quic(conn) => {
                let (send, recv) = conn.open_bi().await.map_err(io::Error::other)?;
                Ok(RawStream {
                    read: Box::new(recv),
                    write: Box::new(send),
                })
            }
        }
    }

    /// Why the connection ended, when the transport knows it by now and
    /// says more than a stream that ended with it (QUIC carries the peer's
    /// reason itself, where its streams say "connection lost"; over TCP a
    /// reset or a violation, where the streams only end). Not for a clean
    /// end, or one this side made.
    pub(crate) fn ended_reason(&self) -> Option<String> {
        match self {
            Mux::Stream(handle) => handle
                .ended_reason()
                .filter(|r| r != super::jmux::CLEAN_END && r != super::jmux::CLOSED_HERE),
            Mux::Quic(conn) => conn.close_reason().map(|e| quic_reason(&e)),
        }
    }

    /// Closes the whole connection. QUIC carries `reason` to the peer natively; over
    /// a byte stream the runtime has already sent it on the control circuit.
    pub(crate) async fn close(&self, reason: &str) {
        match self {
            Mux::Stream(handle) => handle.close().await,
            Mux::Quic(conn) => {
                conn.close(quinn::VarInt::from_u32(1), reason.as_bytes());
            }
        }
    }
}

/// Spawns the accept loop of a QUIC connection.
pub(crate) fn drive_quic(conn: quinn::Connection) -> Driven {
    let (in_tx, inbound) = mpsc::unbounded_channel();
    let (end_tx, ended) = watch::channel(None);
    let c = conn.clone();
    tokio::spawn(async move {
        let reason = loop {
            match c.accept_bi().await {
                Ok((send, recv)) => {
                    let _ = in_tx.send(RawStream {
                        read: Box::new(recv),
                        write: Box::new(send),
                    });
                }
                Err(e) => break quic_reason(&e),
            }
        };
        tracing::debug!(%reason, "quic connection ended");
        let _ = end_tx.send(Some(reason));
    });
    Driven {
        mux: Mux::Quic(conn),
        inbound,
        ended,
    }
}

/// Words for a QUIC connection error, using the peer's own reason when it sent one.
pub(crate) fn quic_reason(e: &quinn::ConnectionError) -> String {
    match e {
        quinn::ConnectionError::ApplicationClosed(close) => {
            let text = String::from_utf8_lossy(&close.reason);
            // (The peer's words: shown and logged with no control characters.)
            let text = crate::sync::escape_controls(&text);
            if text.is_empty() {
                "the peer closed the connection".into()
            } else {
                format!("the peer closed the connection: {text}")
            }
        }
        quinn::ConnectionError::LocallyClosed => "connection closed".into(),
        quinn::ConnectionError::TimedOut => "no response from the peer (idle timeout)".into(),
        other => other.to_string(),
    }
}
