//! One face for two multiplexers: yamux streams (libp2p's implementation) over a
//! TCP/TLS byte stream, and native QUIC streams. Each stream has its own flow-control window, which is what
//! lets one stalled circuit slow only its own sender.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::compat::{FuturesAsyncReadCompatExt, TokioAsyncReadCompatExt};

use super::handshake::Side;

pub(crate) type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
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
    /// Requests to the task that owns the yamux connection.
    Yamux(mpsc::UnboundedSender<YamuxCmd>),
    Quic(quinn::Connection),
}

pub(crate) enum YamuxCmd {
    Open(oneshot::Sender<io::Result<yamux::Stream>>),
    Close(oneshot::Sender<()>),
}

impl std::fmt::Debug for Mux {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mux::Yamux(_) => f.write_str("Mux::Yamux"),
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

/// yamux limits. Each stream may buffer up to its window (256 KiB, auto-tuned
/// upwards on fast links) without blocking any other stream; the connection-wide
/// cap bounds what all stalled streams together can hold.
const YAMUX_MAX_STREAMS: usize = 2048;
const YAMUX_CONN_WINDOW: usize = 1 << 30;
/// Data frames of up to this much (yamux's default is 16 KiB): fewer frames,
/// headers and TLS writes for bulk data.
const YAMUX_SPLIT: usize = 64 << 10;

fn split_yamux(stream: yamux::Stream) -> RawStream {
    let shared = Arc::new(SharedStream {
        stream: Mutex::new(stream.compat()),
        wakers: Arc::new(BothWakers::default()),
    });
    RawStream {
        read: Box::new(YamuxHalf {
            shared: shared.clone(),
            unread: None,
        }),
        write: Box::new(YamuxHalf {
            shared,
            unread: None,
        }),
    }
}

/// One yamux stream used from two tasks (a circuit's reader and writer).
///
/// `tokio::io::split` is not enough: a yamux stream sends window updates from
/// `poll_read` through the same command channel `poll_write` and `poll_flush`
/// wait on, and that channel remembers only the last task's waker. A reader
/// polling after a blocked writer silently takes the writer's wake-up, and the
/// writer sleeps forever (seen as a stalled lane with a request delivered but
/// its flush never returning). Every poll here therefore goes in with a waker
/// that wakes both halves; a spurious wake-up costs one extra poll.
struct SharedStream {
    stream: Mutex<tokio_util::compat::Compat<yamux::Stream>>,
    wakers: Arc<BothWakers>,
}

#[derive(Default)]
struct BothWakers {
    read: Mutex<Option<std::task::Waker>>,
    write: Mutex<Option<std::task::Waker>>,
}

impl futures::task::ArcWake for BothWakers {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        for slot in [&arc_self.read, &arc_self.write] {
            if let Some(w) = slot.lock().expect("poisoned").take() {
                w.wake();
            }
        }
    }
}

/// One direction of a yamux stream.
struct YamuxHalf {
    shared: Arc<SharedStream>,
    /// The read half's current chunk, as yamux received it, and how much of
    /// it has been read.
    unread: Option<(yamux::Packet, usize)>,
}

impl YamuxHalf {
    /// Polls the stream with a waker that wakes both halves, after recording
    /// this half's own waker in `slot`.
    fn with<R>(
        &self,
        cx: &mut std::task::Context<'_>,
        write_side: bool,
        f: impl FnOnce(
            Pin<&mut tokio_util::compat::Compat<yamux::Stream>>,
            &mut std::task::Context<'_>,
        ) -> Poll<R>,
    ) -> Poll<R> {
        let shared = &self.shared;
        let slot = if write_side {
            &shared.wakers.write
        } else {
            &shared.wakers.read
        };
        *slot.lock().expect("poisoned") = Some(cx.waker().clone());
        let waker = futures::task::waker(shared.wakers.clone());
        let mut both = std::task::Context::from_waker(&waker);
        let mut stream = shared.stream.lock().expect("poisoned");
        f(Pin::new(&mut *stream), &mut both)
    }
}

/// Reads whole chunks (yamux's frames as received) and copies them into the
/// caller's buffer, which may be uninitialized: yamux's own `AsyncRead` takes
/// an initialized slice, and tokio-util's adapter to it zeroes all of the
/// caller's unfilled buffer before every read (a 1 MiB payload read 64 KiB at
/// a time would be zeroed over and over).
impl AsyncRead for YamuxHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        use futures::StreamExt;
        let this = self.get_mut();
        loop {
            if let Some((chunk, at)) = &mut this.unread {
                let bytes = chunk.as_ref();
                let n = (bytes.len() - *at).min(buf.remaining());
                buf.put_slice(&bytes[*at..*at + n]);
                *at += n;
                if *at == bytes.len() {
                    this.unread = None;
                }
                return Poll::Ready(Ok(()));
            }
            if buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            let next = this.with(cx, false, |s, cx| s.get_mut().get_mut().poll_next_unpin(cx));
            match std::task::ready!(next) {
                // An empty chunk is not the end of the stream.
                Some(Ok(chunk)) if chunk.as_ref().is_empty() => {}
                Some(Ok(chunk)) => this.unread = Some((chunk, 0)),
                Some(Err(e)) => return Poll::Ready(Err(e)),
                // The end of the stream (or a reset one).
                None => return Poll::Ready(Ok(())),
            }
        }
    }
}

impl AsyncWrite for YamuxHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.with(cx, true, |s, cx| s.poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<io::Result<()>> {
        self.with(cx, true, |s, cx| s.poll_flush(cx))
    }

    fn poll_shutdown(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<io::Result<()>> {
        self.with(cx, true, |s, cx| s.poll_shutdown(cx))
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "connection closed")
}

impl Mux {
    pub(crate) async fn open(&self) -> io::Result<RawStream> {
        match self {
            Mux::Yamux(cmd) => {
                let (tx, rx) = oneshot::channel();
                cmd.send(YamuxCmd::Open(tx)).map_err(|_| closed())?;
                let stream = rx.await.map_err(|_| closed())??;
                Ok(split_yamux(stream))
            }
            Mux::Quic(conn) => {
                let (send, recv) = conn.open_bi().await.map_err(io::Error::other)?;
                Ok(RawStream {
                    read: Box::new(recv),
                    write: Box::new(send),
                })
            }
        }
    }

    /// Closes the whole connection. QUIC carries `reason` to the peer natively; over
    /// yamux the runtime has already sent it on the control circuit.
    pub(crate) async fn close(&self, reason: &str) {
        match self {
            Mux::Yamux(cmd) => {
                let (tx, rx) = oneshot::channel();
                if cmd.send(YamuxCmd::Close(tx)).is_ok() {
                    let _ = tokio::time::timeout(Duration::from_secs(2), rx).await;
                }
            }
            Mux::Quic(conn) => {
                conn.close(quinn::VarInt::from_u32(1), reason.as_bytes());
            }
        }
    }
}

/// Holds back a short write (a yamux frame header) and writes it together with
/// the next write (the frame's body) as one vectored write: TLS then seals them
/// into the same records, and the body is never copied into a buffer. A held
/// header with no body after it goes out on flush or shutdown.
struct Coalesce<T> {
    io: T,
    held: [u8; HELD_MAX],
    /// `held[start..len]` is still to be written.
    start: usize,
    len: usize,
}

/// Writes up to this long are held back (a yamux header is 12 bytes).
const HELD_MAX: usize = 16;

impl<T: AsyncWrite + Unpin> Coalesce<T> {
    fn new(io: T) -> Self {
        Coalesce {
            io,
            held: [0; HELD_MAX],
            start: 0,
            len: 0,
        }
    }

    /// Writes `held` plus as much of `buf` as the stream takes; `Ok(n)` counts
    /// only bytes of `buf`, and is 0 only when `buf` is empty.
    fn poll_write_with_held(
        &mut self,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        while self.start < self.len {
            let held = &self.held[self.start..self.len];
            let bufs = [io::IoSlice::new(held), io::IoSlice::new(buf)];
            let n = std::task::ready!(Pin::new(&mut self.io).poll_write_vectored(cx, &bufs))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            let from_held = n.min(held.len());
            self.start += from_held;
            if self.start == self.len {
                (self.start, self.len) = (0, 0);
                if n > from_held {
                    return Poll::Ready(Ok(n - from_held));
                }
            }
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Coalesce<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Coalesce<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.len == 0 && !buf.is_empty() && buf.len() <= HELD_MAX {
            this.held[..buf.len()].copy_from_slice(buf);
            this.len = buf.len();
            return Poll::Ready(Ok(buf.len()));
        }
        this.poll_write_with_held(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_write_with_held(cx, &[]))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_write_with_held(cx, &[]))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

/// Starts yamux on a secured (or plaintext) byte stream and spawns the task that
/// owns the connection: it opens streams on request, hands inbound streams over,
/// and drives all IO.
pub(crate) fn drive_yamux<T>(io: T, side: Side) -> Driven
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut config = yamux::Config::default();
    config
        .set_max_connection_receive_window(Some(YAMUX_CONN_WINDOW))
        .set_max_num_streams(YAMUX_MAX_STREAMS)
        .set_split_send_size(YAMUX_SPLIT);
    let mode = match side {
        Side::Client => yamux::Mode::Client,
        Side::Server => yamux::Mode::Server,
    };
    // yamux writes a frame's 12-byte header and its body in two calls, and TLS
    // would make each its own record (and system call): hold the header back
    // and write both at once, without copying the body.
    let io = Coalesce::new(io);
    let mut conn = yamux::Connection::new(io.compat(), config, mode);
    let (cmd_tx, mut cmd_rx) = mpsc::unbounded_channel::<YamuxCmd>();
    let (in_tx, inbound) = mpsc::unbounded_channel();
    let (end_tx, ended) = watch::channel(None);
    tokio::spawn(async move {
        let mut opening: VecDeque<oneshot::Sender<io::Result<yamux::Stream>>> = VecDeque::new();
        let mut closing: Option<oneshot::Sender<()>> = None;
        let mut commands_open = true;
        let reason = std::future::poll_fn(|cx| {
            while commands_open {
                match cmd_rx.poll_recv(cx) {
                    Poll::Ready(Some(YamuxCmd::Open(tx))) => opening.push_back(tx),
                    Poll::Ready(Some(YamuxCmd::Close(tx))) => closing = Some(tx),
                    Poll::Ready(None) => commands_open = false,
                    Poll::Pending => break,
                }
            }
            if closing.is_some() {
                return match conn.poll_close(cx) {
                    Poll::Ready(_) => {
                        if let Some(tx) = closing.take() {
                            let _ = tx.send(());
                        }
                        Poll::Ready("connection closed".to_string())
                    }
                    Poll::Pending => Poll::Pending,
                };
            }
            while !opening.is_empty() {
                match conn.poll_new_outbound(cx) {
                    Poll::Ready(Ok(stream)) => {
                        if let Some(tx) = opening.pop_front() {
                            let _ = tx.send(Ok(stream));
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(format!("connection error: {e}")),
                    Poll::Pending => break,
                }
            }
            loop {
                match conn.poll_next_inbound(cx) {
                    Poll::Ready(Some(Ok(stream))) => {
                        let _ = in_tx.send(split_yamux(stream));
                    }
                    Poll::Ready(Some(Err(e))) => {
                        return Poll::Ready(format!("connection error: {e}"))
                    }
                    Poll::Ready(None) => return Poll::Ready("connection closed".to_string()),
                    Poll::Pending => return Poll::Pending,
                }
            }
        })
        .await;
        for tx in opening {
            let _ = tx.send(Err(closed()));
        }
        tracing::debug!(%reason, "yamux connection ended");
        let _ = end_tx.send(Some(reason));
    });
    Driven {
        mux: Mux::Yamux(cmd_tx),
        inbound,
        ended,
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A writer that takes at most `max` bytes per call, across slices, and
    /// says `Pending` (waking itself) every other call.
    struct Trickle {
        out: Vec<u8>,
        max: usize,
        calls: usize,
        vectored: usize,
    }

    impl Trickle {
        fn take(&mut self, cx: &mut std::task::Context<'_>, bufs: &[&[u8]]) -> Poll<usize> {
            self.calls += 1;
            if self.calls % 2 == 0 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let mut n = 0;
            for b in bufs {
                let k = b.len().min(self.max - n);
                self.out.extend_from_slice(&b[..k]);
                n += k;
            }
            Poll::Ready(n)
        }
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.get_mut().take(cx, &[buf]).map(Ok)
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            this.vectored += 1;
            let slices: Vec<&[u8]> = bufs.iter().map(|b| &b[..]).collect();
            this.take(cx, &slices).map(Ok)
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(
            self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(
            self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn held_headers_go_out_whole_and_in_order_however_the_stream_takes_them() {
        // Frames as yamux writes them: a 12-byte header, then its body (or none).
        let mut frames: Vec<Vec<u8>> = Vec::new();
        for i in 0..20u8 {
            frames.push(vec![i; 12]);
            if i % 3 != 0 {
                frames.push(vec![100 + i; 1 + usize::from(i) * 7]);
            }
        }
        let want: Vec<u8> = frames.concat();
        for max in [1, 5, 12, 13, 40, 1 << 20] {
            let mut c = Coalesce::new(Trickle {
                out: Vec::new(),
                max,
                calls: 0,
                vectored: 0,
            });
            for f in &frames {
                c.write_all(f).await.unwrap();
                if f.len() == 12 && f[0] % 3 == 0 {
                    c.flush().await.unwrap(); // a header-only frame
                }
            }
            c.shutdown().await.unwrap();
            assert_eq!(c.io.out, want, "max {max}");
            assert!(c.io.vectored > 0, "max {max}: headers went out alone");
        }
    }

    /// A yamux stream delivers everything written to it, in order, to reads
    /// of any size into fresh (uninitialized) buffers, and then its end.
    #[tokio::test(flavor = "multi_thread")]
    async fn yamux_reads_fill_uninitialized_buffers_of_any_size() {
        use tokio::io::AsyncReadExt;
        let (a, b) = tokio::io::duplex(1 << 16);
        let client = drive_yamux(a, Side::Client);
        let mut server = drive_yamux(b, Side::Server);
        let mut out = client.mux.open().await.unwrap();
        // One write larger than a yamux frame, then small and empty ones.
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let writer = tokio::spawn(async move {
            out.write.write_all(&big).await.unwrap();
            for i in 0..50u8 {
                out.write.write_all(&[i; 3]).await.unwrap();
                out.write.write_all(&[]).await.unwrap();
            }
            out.write.shutdown().await.unwrap();
            (big, out)
        });
        let mut input = server.inbound.recv().await.unwrap();
        let mut got = Vec::new();
        for size in [1usize, 7, 12, 65_536, 100_000].iter().cycle() {
            let mut piece = Vec::with_capacity(*size);
            let n = input.read.read_buf(&mut piece).await.unwrap();
            if n == 0 {
                break;
            }
            assert!(n <= *size);
            got.extend_from_slice(&piece);
        }
        let (big, _out) = writer.await.unwrap();
        let mut want = big;
        for i in 0..50u8 {
            want.extend_from_slice(&[i; 3]);
        }
        assert_eq!(got.len(), want.len());
        assert!(got == want);
    }
}
