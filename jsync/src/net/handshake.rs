//! The jsync hello exchange on a fresh byte stream, and telling TLS from plaintext.
//!
//! The client speaks first (a [`proto::HandshakeMsg::Hello`]); the server always
//! answers with its own hello, even when the versions differ, so that *both* sides
//! can report "we speak 1, the peer speaks 2" rather than one side seeing a reset.
//! Messages are read exactly, never past their end: the bytes after a hello belong
//! to the multiplexer.

use std::pin::Pin;
use std::task::{Context, Poll};

use proto::{Codec, HandshakeMsg, Hello, Negotiated};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::error::{Error, Result};

/// Which end of the connection we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Opened the connection.
    Client,
    /// Accepted it.
    Server,
}

/// Reads one handshake message, byte-exact.
pub(crate) async fn read_msg<S: AsyncRead + Unpin>(
    io: &mut S,
    peer: &str,
    side: Side,
) -> Result<HandshakeMsg> {
    let mut buf = Vec::with_capacity(64);
    let mut byte = [0u8; 1];
    let total = loop {
        match proto::handshake_len(&buf) {
            Ok(Some(n)) => break n,
            Ok(None) => {}
            Err(source) => return Err(protocol(peer, source)),
        }
        let n = io.read(&mut byte).await.map_err(|e| lost(peer, e, side))?;
        if n == 0 {
            return Err(Error::ConnectionLost {
                peer: peer.into(),
                reason: "connection closed during the handshake".into(),
            });
        }
        buf.push(byte[0]);
    };
    let have = buf.len();
    buf.resize(total, 0);
    io.read_exact(&mut buf[have..])
        .await
        .map_err(|e| lost(peer, e, side))?;
    let mut r = proto::Reader::new(&buf);
    let msg = HandshakeMsg::decode(&mut r).map_err(|s| protocol(peer, s))?;
    r.expect_end().map_err(|s| protocol(peer, s))?;
    Ok(msg)
}

pub(crate) async fn write_msg<S: AsyncWrite + Unpin>(
    io: &mut S,
    msg: &HandshakeMsg,
    peer: &str,
    side: Side,
) -> Result<()> {
    let mut buf = Vec::with_capacity(64);
    msg.encode(&mut buf);
    io.write_all(&buf).await.map_err(|e| lost(peer, e, side))?;
    io.flush().await.map_err(|e| lost(peer, e, side))
}

/// Runs the hello exchange from `side`'s point of view.
pub(crate) async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    side: Side,
    agent: &str,
    peer: &str,
) -> Result<Negotiated> {
    let ours = Hello::ours(agent);
    let theirs = match side {
        Side::Client => {
            write_msg(io, &HandshakeMsg::Hello(ours.clone()), peer, side).await?;
            read_msg(io, peer, side).await?
        }
        Side::Server => {
            let theirs = read_msg(io, peer, side).await?;
            write_msg(io, &HandshakeMsg::Hello(ours.clone()), peer, side).await?;
            theirs
        }
    };
    if let HandshakeMsg::Hello(h) = &theirs {
        tracing::debug!(peer, agent = %h.agent, version = h.version, "hello");
    }
    proto::negotiate(&ours, &theirs).map_err(|source| Error::Handshake {
        peer: peer.into(),
        source,
    })
}

fn protocol(peer: &str, source: proto::DecodeError) -> Error {
    Error::Protocol {
        peer: peer.into(),
        source,
    }
}

/// An IO failure during the hello. Under TLS 1.3 a server that refuses our client
/// certificate says so only now, at our first read: report that as a TLS failure.
fn lost(peer: &str, e: std::io::Error, side: Side) -> Error {
    if super::security::is_tls_error(&e) {
        let role = match side {
            Side::Client => crate::identity::Role::Client,
            Side::Server => crate::identity::Role::Server,
        };
        return Error::Tls {
            peer: peer.into(),
            reason: crate::tls::explain_io(&e, role),
        };
    }
    Error::ConnectionLost {
        peer: peer.into(),
        reason: e.to_string(),
    }
}

/// Wraps a stream and keeps the first bytes read from it, so that when a TLS
/// handshake fails we can see whether the server answered in jsync plaintext
/// (it runs with `--insecure-plaintext`) and say so instead of "corrupt message".
#[derive(Debug)]
pub(crate) struct Sniff<S> {
    inner: S,
    seen: Vec<u8>,
}

const SNIFF_LEN: usize = 512;

impl<S> Sniff<S> {
    pub(crate) fn new(inner: S) -> Self {
        Sniff {
            inner,
            seen: Vec::new(),
        }
    }

    /// If the first bytes the peer sent are a jsync refusal, its reason.
    pub(crate) fn plaintext_refusal(&self) -> Option<String> {
        if !proto::looks_like_jsync(&self.seen) {
            return None;
        }
        let n = proto::handshake_len(&self.seen).ok().flatten()?;
        match HandshakeMsg::decode(&mut proto::Reader::new(&self.seen[..n])) {
            Ok(HandshakeMsg::Refuse { reason }) => Some(reason),
            Ok(HandshakeMsg::Hello(_)) => Some("the server speaks plaintext jsync".into()),
            Err(_) => Some("the server speaks plaintext jsync".into()),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Sniff<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        if this.seen.len() < SNIFF_LEN {
            let new = &buf.filled()[before..];
            let take = new.len().min(SNIFF_LEN - this.seen.len());
            this.seen.extend_from_slice(&new[..take]);
        }
        res
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Sniff<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
