//! Counting the bytes a connection really moves (TLS records and multiplexer
//! framing included), for `--stats` and the benchmarks' "bytes on the wire".

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Where a link's wire-byte count comes from.
#[derive(Debug, Clone)]
pub(crate) enum WireCounter {
    /// A byte stream we wrapped: bytes written and bytes read.
    Stream(Arc<Counts>),
    /// QUIC: UDP payload bytes sent and received, from quinn's statistics.
    Quic(quinn::Connection),
}

/// A wrapped stream's counts.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    written: AtomicU64,
    read: AtomicU64,
}

impl WireCounter {
    /// Bytes sent and bytes received so far.
    pub(crate) fn sent_received(&self) -> (u64, u64) {
        match self {
            WireCounter::Stream(n) => (
                n.written.load(Ordering::Relaxed),
                n.read.load(Ordering::Relaxed),
            ),
            WireCounter::Quic(c) => {
                let s = c.stats();
                (s.udp_tx.bytes, s.udp_rx.bytes)
            }
        }
    }

    /// Bytes moved so far, both directions.
    pub(crate) fn total(&self) -> u64 {
        let (sent, received) = self.sent_received();
        sent + received
    }
}

/// A stream wrapper that counts every byte read and written.
#[derive(Debug)]
pub(crate) struct Counted<S> {
    inner: S,
    count: Arc<Counts>,
}

impl<S> Counted<S> {
    pub(crate) fn new(inner: S) -> (Self, WireCounter) {
        let count = Arc::new(Counts::default());
        (
            Counted {
                inner,
                count: count.clone(),
            },
            WireCounter::Stream(count),
        )
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.count.read.fetch_add(n as u64, Ordering::Relaxed);
        res
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &res {
            self.count.written.fetch_add(*n as u64, Ordering::Relaxed);
        }
        res
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &res {
            self.count.written.fetch_add(*n as u64, Ordering::Relaxed);
        }
        res
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
