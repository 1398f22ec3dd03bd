//! jsync's stream multiplexer for TLS/TCP (and in-process) links: many
//! circuits on one byte stream, each with its own flow-control window, so that
//! one stalled circuit slows only its own sender.
//!
//! It replaced yamux, which copied every byte written into a frame of its own
//! and handed it through a channel to one connection task, and on the other
//! side zeroed a buffer for every frame it read. Here a stream's writer writes
//! its frame header and bytes straight into the underlying stream (TLS copies
//! them once, into its records), and one reader task reads each frame's body
//! into a buffer of its own, never zeroed, from which the stream's reader
//! copies it once into the caller's; or, when the buffer is exactly a circuit
//! frame's payload (written on its own, up to [`MAX_DATA`], so it went out as
//! one DATA frame), hands the buffer itself over.
//!
//! Wire format: frames of a 12-byte header, stream id (u32 BE), kind (u8),
//! three zero bytes and a length (u32 BE), then for DATA only `length` bytes:
//!
//! | kind   | meaning                                                     |
//! | ------ | ----------------------------------------------------------- |
//! | OPEN   | the sender opens stream `id` (odd: the client's, even: the server's) |
//! | DATA   | `length` bytes (at most [`MAX_DATA`]) of the stream         |
//! | WINDOW | the receiver lets the sender send `length` more bytes       |
//! | FIN    | the sender sends no more DATA on the stream                 |
//! | GOAWAY | the sender closes the connection                            |
//!
//! There is no reset: a stream dropped without a shutdown is finished (FIN),
//! and DATA for a stream nobody reads any more is dropped and granted back.
//!
//! Flow control: each side may have at most [`WINDOW`] bytes of a stream's
//! DATA unacknowledged; the receiver grants them back (WINDOW) as the stream's
//! reader consumes them. A peer that sends more, or breaks the format, ends the
//! connection.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, watch, Notify, Semaphore};

use super::handshake::Side;
use super::mux::{Driven, Mux, RawStream};

const HEADER: usize = 12;

const OPEN: u8 = 0;
const DATA: u8 = 1;
const WINDOW_UPDATE: u8 = 2;
const FIN: u8 = 3;
const GOAWAY: u8 = 5;

/// The largest DATA frame; a larger write is split. A write up to this size
/// goes out as one frame (it waits for the window to take it whole), so a
/// frame's payload written on its own arrives as one buffer that the reader
/// takes without copying ([`super::mux::FrameRead::poll_take_exact`]).
const MAX_DATA: usize = 2 << 20;
/// Bytes of a stream's DATA that may be in flight unacknowledged.
const WINDOW: u32 = 4 << 20;
/// Consumed bytes are granted back once this many have piled up.
const GRANT_AT: u32 = WINDOW / 4;
// A writer waiting for room for a whole frame always gets it: at most
// GRANT_AT - 1 consumed bytes are ever held back from the sender.
const _: () = assert!(WINDOW as usize - GRANT_AT as usize >= MAX_DATA);
/// Streams the peer may have open at once.
const MAX_STREAMS: usize = 4096;
/// Why a connection ended that the peer ended cleanly (GOAWAY, or the end
/// of the stream at a frame boundary).
pub(crate) const CLEAN_END: &str = "connection closed";
/// Why a connection ended that this side closed.
pub(crate) const CLOSED_HERE: &str = "closed";
/// Received bytes all streams may hold unread before the reader task stops
/// reading the connection (TCP's own flow control then holds the peer): the
/// memory a peer can make us hold, whatever its windows.
const CONN_BUFFER: usize = 64 << 20;

fn header(id: u32, kind: u8, len: u32) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[..4].copy_from_slice(&id.to_be_bytes());
    h[4] = kind;
    h[8..].copy_from_slice(&len.to_be_bytes());
    h
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "connection closed")
}

/// One stream's state, shared by its two halves and the reader task.
struct Stream {
    /// Received bytes not yet read, and how far into the first chunk.
    chunks: VecDeque<Vec<u8>>,
    at: usize,
    /// Bytes received and not yet granted back.
    unacked: u32,
    /// Of those, bytes the reader has consumed.
    consumed: u32,
    recv_fin: bool,
    reader: Option<Waker>,
    /// Bytes we may still send.
    credit: u32,
    sent_fin: bool,
    writer: Option<Waker>,
    read_half: bool,
    write_half: bool,
}

impl Stream {
    /// Counts `n` bytes as read; returns what to grant back to the peer now
    /// (0 until [`GRANT_AT`] bytes have piled up).
    fn consume(&mut self, n: usize) -> u32 {
        self.consumed += n as u32;
        if self.consumed < GRANT_AT {
            return 0;
        }
        let grant = std::mem::take(&mut self.consumed);
        self.unacked -= grant;
        grant
    }

    fn new() -> Stream {
        Stream {
            chunks: VecDeque::new(),
            at: 0,
            unacked: 0,
            consumed: 0,
            recv_fin: false,
            reader: None,
            credit: WINDOW,
            sent_fin: false,
            writer: None,
            read_half: true,
            write_half: true,
        }
    }

    fn wake(&mut self) {
        if let Some(w) = self.reader.take() {
            w.wake();
        }
        if let Some(w) = self.writer.take() {
            w.wake();
        }
    }
}

struct State {
    /// Every stream with a live half (a half removes its stream when it is
    /// the last to go).
    streams: HashMap<u32, Stream>,
    next_id: u32,
    /// The highest stream id the peer opened.
    peer_id: u32,
    peer_parity: u32,
    /// Why the connection ended, once it has.
    ended: Option<String>,
    /// Received bytes held in all streams' chunks.
    buffered: usize,
}

impl State {
    /// The stream of a live half.
    fn stream(&mut self, id: u32) -> &mut Stream {
        self.streams
            .get_mut(&id)
            .expect("a live half keeps its stream")
    }
}

/// The write side of the connection, used by every stream's writer in turn.
struct Writer {
    io: Box<dyn AsyncWrite + Send + Unpin>,
    /// Bytes to write before any new frame: control frames, and the rest of a
    /// frame the stream did not take whole.
    out: Vec<u8>,
    at: usize,
    /// Something was written since the last flush.
    dirty: bool,
}

impl Writer {
    fn poll_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.at < self.out.len() {
            let n = std::task::ready!(Pin::new(&mut self.io).poll_write(cx, &self.out[self.at..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.at += n;
            self.dirty = true;
        }
        self.out.clear();
        self.at = 0;
        Poll::Ready(Ok(()))
    }

    /// Writes one frame after what is queued. The frame is taken whole once
    /// this is ready: a part the stream does not accept now is queued.
    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
        head: [u8; HEADER],
        body: &[u8],
    ) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_out(cx))?;
        let bufs = [io::IoSlice::new(&head), io::IoSlice::new(body)];
        let n = std::task::ready!(Pin::new(&mut self.io).poll_write_vectored(cx, &bufs))?;
        if n == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        self.dirty = true;
        if n < HEADER {
            self.out.extend_from_slice(&head[n..]);
            self.out.extend_from_slice(body);
        } else if n < HEADER + body.len() {
            self.out.extend_from_slice(&body[n - HEADER..]);
        }
        Poll::Ready(Ok(()))
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_out(cx))?;
        if self.dirty {
            std::task::ready!(Pin::new(&mut self.io).poll_flush(cx))?;
            self.dirty = false;
        }
        Poll::Ready(Ok(()))
    }
}

/// How long closing waits for the GOAWAY and shutdown to leave.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// The write side of a connection that was dropped.
struct Gone;

impl AsyncWrite for Gone {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(closed()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Err(closed()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Wakes every task that waits for the connection's write side: the stream
/// underneath keeps one waker, and any of several writers may be waiting.
#[derive(Default)]
struct WakeAll(Mutex<Vec<Waker>>);

impl futures::task::ArcWake for WakeAll {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        let waiting = std::mem::take(&mut *arc_self.0.lock().expect("poisoned"));
        for w in waiting {
            w.wake();
        }
    }
}

struct Shared {
    state: Mutex<State>,
    /// The turn to use the writer: one permit, so that a writer waiting for
    /// its turn yields its thread instead of blocking it. Taken without
    /// queueing: a writer that finds it taken leaves its waker in
    /// `turn_waiting` and is woken when it is given back. (A queue hands the
    /// turn to the first in line, and a writer never polled again, a write
    /// cut short, would then hold it for good.)
    turn: Semaphore,
    turn_waiting: Mutex<Vec<Waker>>,
    writer: Mutex<Writer>,
    /// Control frames waiting for the writer. Lock order: `state` or
    /// `writer`, then `control`; never `state` and `writer` together.
    control: Mutex<Vec<u8>>,
    waiting: Arc<WakeAll>,
    /// Wakes the task that writes control frames when no stream is writing.
    flush: Notify,
    /// Wakes the reader task when readers made room under [`CONN_BUFFER`].
    room: Notify,
    /// Ends the reader task: we close, whatever the peer does.
    closing: tokio_util::sync::CancellationToken,
}

impl Shared {
    /// Queues a control frame and has it written soon.
    fn control(&self, id: u32, kind: u8, len: u32) {
        self.control
            .lock()
            .expect("poisoned")
            .extend_from_slice(&header(id, kind, len));
        self.flush.notify_one();
    }

    /// Runs `f` on the writer in the connection's turn, with queued control frames moved in first,
    /// waking `cx` (and any other waiting writer) when the stream can take more.
    fn with_writer<R>(
        &self,
        cx: &mut Context<'_>,
        f: impl FnOnce(&mut Writer, &mut Context<'_>) -> Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        let permit = match self.turn.try_acquire() {
            Ok(p) => p,
            Err(_) => {
                {
                    let mut waiting = self.turn_waiting.lock().expect("poisoned");
                    if !waiting.iter().any(|w| w.will_wake(cx.waker())) {
                        waiting.push(cx.waker().clone());
                    }
                }
                // The turn may have been given back before the waker was left.
                match self.turn.try_acquire() {
                    Ok(p) => p,
                    Err(_) => return Poll::Pending,
                }
            }
        };
        let res = self.in_turn(cx, f);
        drop(permit);
        let waiting = std::mem::take(&mut *self.turn_waiting.lock().expect("poisoned"));
        waiting.into_iter().for_each(Waker::wake);
        res
    }

    /// [`Shared::with_writer`]'s work, in our turn.
    fn in_turn<R>(
        &self,
        cx: &mut Context<'_>,
        f: impl FnOnce(&mut Writer, &mut Context<'_>) -> Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        let mut w = self.writer.lock().expect("poisoned");
        {
            let mut control = self.control.lock().expect("poisoned");
            if !control.is_empty() {
                w.out.extend_from_slice(&control);
                control.clear();
            }
        }
        {
            let mut waiting = self.waiting.0.lock().expect("poisoned");
            if !waiting.iter().any(|w| w.will_wake(cx.waker())) {
                waiting.push(cx.waker().clone());
            }
        }
        let waker = futures::task::waker(self.waiting.clone());
        let mut all = Context::from_waker(&waker);
        let res = f(&mut w, &mut all);
        if !w.out.is_empty() {
            // A frame's tail is queued: it goes out even if nobody flushes.
            self.flush.notify_one();
        }
        res
    }

    /// Takes `n` bytes off the connection's buffered count.
    fn unbuffer(&self, st: &mut State, n: usize) {
        let was_full = st.buffered >= CONN_BUFFER;
        st.buffered -= n;
        if was_full && st.buffered < CONN_BUFFER {
            self.room.notify_one();
        }
    }

    fn is_ended(&self) -> bool {
        self.state.lock().expect("poisoned").ended.is_some()
    }
}

/// Opens streams on one connection. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Handle {
    shared: Arc<Shared>,
}

impl Handle {
    /// Why the connection ended, once it has (its reader's words: "connection
    /// closed" for a clean end, "closed" when this side closed it).
    pub(crate) fn ended_reason(&self) -> Option<String> {
        self.shared.state.lock().expect("poisoned").ended.clone()
    }

    pub(crate) fn open(&self) -> io::Result<RawStream> {
        let id = {
            let mut st = self.shared.state.lock().expect("poisoned");
            if st.ended.is_some() {
                return Err(closed());
            }
            let id = st.next_id;
            st.next_id = id
                .checked_add(2)
                .ok_or_else(|| io::Error::other("out of stream ids"))?;
            st.streams.insert(id, Stream::new());
            // Queued under the lock: OPENs go out in the order of their ids,
            // which the peer checks.
            self.shared.control(id, OPEN, 0);
            id
        };
        Ok(halves(&self.shared, id))
    }

    /// Says goodbye and closes the write side of the connection; the peer then
    /// ends it.
    pub(crate) async fn close(&self) {
        self.shared.control(0, GOAWAY, 0);
        let said = std::future::poll_fn(|cx| {
            self.shared.with_writer(cx, |w, cx| {
                std::task::ready!(w.poll_flush(cx))?;
                Pin::new(&mut w.io).poll_shutdown(cx)
            })
        });
        // A peer that does not read cannot hold the connection open: after
        // a grace period it is dropped whether the GOAWAY left or not.
        let _ = tokio::time::timeout(CLOSE_GRACE, said).await;
        self.shared.closing.cancel();
    }
}

fn halves(shared: &Arc<Shared>, id: u32) -> RawStream {
    RawStream {
        read: Box::new(StreamRead {
            shared: shared.clone(),
            id,
        }),
        write: Box::new(StreamWrite {
            shared: shared.clone(),
            id,
        }),
    }
}

/// Starts the multiplexer on a secured (or plaintext) byte stream: spawns the
/// task that reads every frame, and the one that writes control frames.
pub(crate) fn drive<T>(io: T, side: Side) -> Driven
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (read, write) = tokio::io::split(io);
    let (first, peer_parity) = match side {
        Side::Client => (1, 0),
        Side::Server => (2, 1),
    };
    let shared = Arc::new(Shared {
        turn: Semaphore::new(1),
        turn_waiting: Mutex::default(),
        state: Mutex::new(State {
            streams: HashMap::new(),
            next_id: first,
            peer_id: 0,
            peer_parity,
            ended: None,
            buffered: 0,
        }),
        writer: Mutex::new(Writer {
            io: Box::new(write),
            out: Vec::new(),
            at: 0,
            dirty: false,
        }),
        control: Mutex::new(Vec::new()),
        waiting: Arc::default(),
        flush: Notify::new(),
        room: Notify::new(),
        closing: tokio_util::sync::CancellationToken::new(),
    });
    let (in_tx, inbound) = mpsc::unbounded_channel();
    let (end_tx, ended) = watch::channel(None);
    let s = shared.clone();
    tokio::spawn(async move {
        let reason = tokio::select! {
            reason = read_frames(read, &s, in_tx) => reason,
            () = s.closing.cancelled() => CLOSED_HERE.to_string(),
        };
        tracing::debug!(%reason, "connection ended");
        {
            let mut st = s.state.lock().expect("poisoned");
            st.ended = Some(reason.clone());
            for stream in st.streams.values_mut() {
                stream.wake();
            }
        }
        s.flush.notify_one();
        s.waiting
            .0
            .lock()
            .expect("poisoned")
            .drain(..)
            .for_each(Waker::wake);
        let _ = end_tx.send(Some(reason));
        // Our side of the connection ends too, so the peer sees it end now
        // rather than when the last stream here is dropped.
        let shut = std::future::poll_fn(|cx| {
            s.with_writer(cx, |w, cx| Pin::new(&mut w.io).poll_shutdown(cx))
        });
        let _ = tokio::time::timeout(CLOSE_GRACE, shut).await;
        // The read half went with the reading; with the write half gone
        // too, the connection itself is dropped (its socket closed), even
        // while streams here are still held.
        s.writer.lock().expect("poisoned").io = Box::new(Gone);
    });
    let s = shared.clone();
    tokio::spawn(async move {
        loop {
            s.flush.notified().await;
            if s.is_ended() {
                break;
            }
            let res = std::future::poll_fn(|cx| s.with_writer(cx, |w, cx| w.poll_flush(cx))).await;
            if res.is_err() {
                break;
            }
        }
    });
    Driven {
        mux: Mux::Stream(Handle { shared }),
        inbound,
        ended,
    }
}

/// Reads frames until the connection ends; returns why it did.
async fn read_frames<R: AsyncRead + Unpin>(
    mut r: R,
    shared: &Arc<Shared>,
    inbound: mpsc::UnboundedSender<RawStream>,
) -> String {
    let violation = |what: String| format!("protocol violation: {what}");
    let mut head = [0u8; HEADER];
    loop {
        // Readers that fall behind hold the whole connection back, not our memory.
        loop {
            let room = shared.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            if shared.state.lock().expect("poisoned").buffered < CONN_BUFFER {
                break;
            }
            room.await;
        }
        match r.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return CLEAN_END.into(),
            Err(e) => return format!("connection error: {}", crate::error::io_text(&e)),
        }
        let id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let kind = head[4];
        let len = u32::from_be_bytes([head[8], head[9], head[10], head[11]]);
        if head[5..8] != [0, 0, 0] {
            return violation("reserved header bytes set".into());
        }
        match kind {
            DATA => {
                if len as usize > MAX_DATA {
                    return violation(format!("a {len}-byte DATA frame (at most {MAX_DATA})"));
                }
                let mut body = Vec::with_capacity(len as usize);
                while body.len() < len as usize {
                    let want = len as usize - body.len();
                    match r.read_buf(&mut bytes::BufMut::limit(&mut body, want)).await {
                        Ok(0) => return "connection closed in the middle of a frame".into(),
                        Ok(_) => {}
                        Err(e) => {
                            return format!("connection error: {}", crate::error::io_text(&e))
                        }
                    }
                }
                let mut st = shared.state.lock().expect("poisoned");
                match st.streams.get_mut(&id) {
                    Some(s) if s.read_half && !s.recv_fin => {
                        if s.unacked.saturating_add(len) > WINDOW {
                            return violation(format!("stream {id} sent past its window"));
                        }
                        s.unacked += len;
                        if !body.is_empty() {
                            s.chunks.push_back(body);
                        }
                        if let Some(w) = s.reader.take() {
                            w.wake();
                        }
                        st.buffered += len as usize;
                    }
                    Some(s) if s.recv_fin => {
                        return violation(format!("stream {id} sent DATA after FIN"));
                    }
                    // Nobody reads it any more: drop it, and grant the bytes
                    // back so that the peer's writer does not stall (in
                    // batches, as a reader would: a grant per frame would
                    // let tiny frames fill our queue of grants).
                    Some(s) => {
                        if s.unacked.saturating_add(len) > WINDOW {
                            return violation(format!("stream {id} sent past its window"));
                        }
                        s.unacked += len;
                        let grant = s.consume(len as usize);
                        drop(st);
                        if grant > 0 {
                            shared.control(id, WINDOW_UPDATE, grant);
                        }
                    }
                    None => {
                        let never_opened = match id % 2 == st.peer_parity {
                            true => id > st.peer_id,
                            false => id >= st.next_id,
                        };
                        if never_opened {
                            return violation(format!("DATA on stream {id}, never opened"));
                        }
                        drop(st);
                        if len > 0 {
                            shared.control(id, WINDOW_UPDATE, len);
                        }
                    }
                }
            }
            WINDOW_UPDATE => {
                let mut st = shared.state.lock().expect("poisoned");
                if let Some(s) = st.streams.get_mut(&id) {
                    s.credit = s.credit.saturating_add(len);
                    if let Some(w) = s.writer.take() {
                        w.wake();
                    }
                }
            }
            FIN => {
                let mut st = shared.state.lock().expect("poisoned");
                if let Some(s) = st.streams.get_mut(&id) {
                    s.recv_fin = true;
                    s.wake();
                }
            }
            OPEN => {
                {
                    let mut st = shared.state.lock().expect("poisoned");
                    if id % 2 != st.peer_parity || id <= st.peer_id {
                        return violation(format!("stream id {id} opened out of order"));
                    }
                    if st.streams.len() >= MAX_STREAMS {
                        return violation(format!("more than {MAX_STREAMS} streams"));
                    }
                    st.peer_id = id;
                    st.streams.insert(id, Stream::new());
                }
                // Outside the lock: dropping unaccepted halves takes it.
                let _ = inbound.send(halves(shared, id));
            }
            GOAWAY => return CLEAN_END.into(),
            other => return violation(format!("unknown frame kind {other}")),
        }
    }
}

/// The reading half of a stream.
struct StreamRead {
    shared: Arc<Shared>,
    id: u32,
}

impl AsyncRead for StreamRead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut grant = 0;
        let mut taken = 0;
        let res = {
            let mut st = this.shared.state.lock().expect("poisoned");
            let ended = st.ended.is_some();
            let s = st.stream(this.id);
            let res = if let Some(chunk) = s.chunks.front() {
                let n = (chunk.len() - s.at).min(buf.remaining());
                taken = n;
                buf.put_slice(&chunk[s.at..s.at + n]);
                s.at += n;
                if s.at == chunk.len() {
                    s.chunks.pop_front();
                    s.at = 0;
                }
                grant = s.consume(n);
                Poll::Ready(Ok(()))
            } else if s.recv_fin || ended || buf.remaining() == 0 {
                Poll::Ready(Ok(()))
            } else {
                s.reader = Some(cx.waker().clone());
                Poll::Pending
            };
            if taken > 0 {
                this.shared.unbuffer(&mut st, taken);
            }
            res
        };
        if grant > 0 {
            this.shared.control(this.id, WINDOW_UPDATE, grant);
        }
        res
    }
}

impl super::mux::FrameRead for StreamRead {
    fn poll_take_exact(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        len: usize,
    ) -> Poll<io::Result<Option<Vec<u8>>>> {
        let this = self.get_mut();
        let mut grant = 0;
        let res = {
            let mut st = this.shared.state.lock().expect("poisoned");
            let ended = st.ended.is_some();
            let s = st.stream(this.id);
            match s.chunks.front() {
                Some(chunk) if s.at == 0 && chunk.len() == len => {
                    let chunk = s.chunks.pop_front().expect("just seen");
                    grant = s.consume(len);
                    this.shared.unbuffer(&mut st, len);
                    Poll::Ready(Ok(Some(chunk)))
                }
                Some(_) => Poll::Ready(Ok(None)),
                None if s.recv_fin || ended => Poll::Ready(Ok(None)),
                None => {
                    s.reader = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        };
        if grant > 0 {
            this.shared.control(this.id, WINDOW_UPDATE, grant);
        }
        res
    }
}

impl Drop for StreamRead {
    fn drop(&mut self) {
        let mut grant = 0;
        {
            let mut st = self.shared.state.lock().expect("poisoned");
            if let Some(s) = st.streams.get_mut(&self.id) {
                // What was received and never read is granted back.
                grant = s.unacked;
                s.unacked = 0;
                s.consumed = 0;
                let unread = s.chunks.iter().map(Vec::len).sum::<usize>() - s.at;
                s.chunks.clear();
                s.at = 0;
                s.read_half = false;
                if !s.write_half {
                    st.streams.remove(&self.id);
                }
                self.shared.unbuffer(&mut st, unread);
            }
        }
        if grant > 0 {
            self.shared.control(self.id, WINDOW_UPDATE, grant);
        }
    }
}

/// The writing half of a stream.
struct StreamWrite {
    shared: Arc<Shared>,
    id: u32,
}

impl StreamWrite {
    /// Sends FIN once (queued after every DATA frame this half wrote).
    fn finish(&self) -> io::Result<()> {
        let mut st = self.shared.state.lock().expect("poisoned");
        if st.ended.is_some() {
            return Err(closed());
        }
        let s = st.stream(self.id);
        if !s.sent_fin {
            s.sent_fin = true;
            drop(st);
            self.shared.control(self.id, FIN, 0);
        }
        Ok(())
    }
}

impl AsyncWrite for StreamWrite {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let this = self.get_mut();
        let n = {
            let mut st = this.shared.state.lock().expect("poisoned");
            if st.ended.is_some() {
                return Poll::Ready(Err(closed()));
            }
            let s = st.stream(this.id);
            if s.sent_fin {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "write after shutdown",
                )));
            }
            let n = buf.len().min(MAX_DATA);
            if (s.credit as usize) < n {
                s.writer = Some(cx.waker().clone());
                return Poll::Pending;
            }
            n
        };
        let head = header(this.id, DATA, n as u32);
        std::task::ready!(this
            .shared
            .with_writer(cx, |w, cx| w.poll_frame(cx, head, &buf[..n])))?;
        this.shared
            .state
            .lock()
            .expect("poisoned")
            .stream(this.id)
            .credit -= n as u32;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.shared.is_ended() {
            return Poll::Ready(Err(closed()));
        }
        let this = self.get_mut();
        this.shared.with_writer(cx, |w, cx| w.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.finish()?;
        this.shared.with_writer(cx, |w, cx| w.poll_flush(cx))
    }
}

impl Drop for StreamWrite {
    fn drop(&mut self) {
        let mut st = self.shared.state.lock().expect("poisoned");
        let ended = st.ended.is_some();
        let Some(s) = st.streams.get_mut(&self.id) else {
            return;
        };
        // Dropped without a shutdown: the peer still sees the stream end.
        let fin = !s.sent_fin && !ended;
        s.sent_fin = true;
        s.write_half = false;
        if !s.read_half {
            st.streams.remove(&self.id);
        }
        drop(st);
        if fin {
            self.shared.control(self.id, FIN, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    /// [`super::drive`], taken apart.
    fn drive<T: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
        io: T,
        side: Side,
    ) -> (
        Handle,
        mpsc::UnboundedReceiver<RawStream>,
        watch::Receiver<Option<String>>,
    ) {
        let d = super::drive(io, side);
        let Mux::Stream(handle) = d.mux else {
            unreachable!("a byte stream's multiplexer")
        };
        (handle, d.inbound, d.ended)
    }

    /// A byte stream that takes at most `max` bytes per write (vectored or
    /// not) and says `Pending` (waking at once) every other call: frames are
    /// cut anywhere, and writers wait on one another.
    struct Trickle {
        io: DuplexStream,
        max: usize,
        calls: usize,
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            this.calls += 1;
            if this.calls % 2 == 0 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let n = buf.len().min(this.max);
            Pin::new(&mut this.io).poll_write(cx, &buf[..n])
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().io).poll_flush(cx)
        }

        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
        }
    }

    fn pattern(stream: usize, len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + stream * 7) as u8).collect()
    }

    /// Streams opened from both sides carry their bytes whole and in order,
    /// several at once, both ways, through a stream that cuts every write
    /// short; each ends with the other side's shutdown.
    #[tokio::test(flavor = "multi_thread")]
    async fn many_streams_both_ways_through_short_writes() {
        for max in [1000, 7, 70_000] {
            let (a, b) = tokio::io::duplex(1 << 16);
            let (ca, mut ina, _) = drive(
                Trickle {
                    io: a,
                    max,
                    calls: 0,
                },
                Side::Client,
            );
            let (cb, mut inb, _) = drive(
                Trickle {
                    io: b,
                    max,
                    calls: 0,
                },
                Side::Server,
            );
            let sizes = [0usize, 1, 5000, 300_000, 5 << 20];
            let mut tasks = Vec::new();
            for (k, &len) in sizes.iter().enumerate() {
                for (opener, n) in [(&ca, k), (&cb, k + 100)] {
                    let mut s = opener.open().unwrap();
                    tasks.push(tokio::spawn(async move {
                        let data = pattern(n, len);
                        // Write while reading the echo: the windows are smaller
                        // than the largest stream.
                        let writer = async {
                            for piece in data.chunks(100_000) {
                                s.write.write_all(piece).await.unwrap();
                            }
                            s.write.shutdown().await.unwrap();
                        };
                        let mut back = Vec::new();
                        let reader = s.read.read_to_end(&mut back);
                        let ((), got) = tokio::join!(writer, reader);
                        got.unwrap();
                        assert!(back == data, "stream {n} of {len} bytes (max {max})");
                    }));
                }
            }
            // Each side echoes what the other opened.
            for inbound in [&mut ina, &mut inb] {
                for _ in 0..sizes.len() {
                    let mut s = inbound.recv().await.unwrap();
                    tasks.push(tokio::spawn(async move {
                        let mut buf = vec![0u8; 9000];
                        loop {
                            let n = s.read.read(&mut buf).await.unwrap();
                            if n == 0 {
                                break;
                            }
                            s.write.write_all(&buf[..n]).await.unwrap();
                        }
                        s.write.shutdown().await.unwrap();
                    }));
                }
            }
            for t in tasks {
                t.await.unwrap();
            }
        }
    }

    /// A reader that reads nothing holds back only its own stream: its writer
    /// stops at the window, and another stream goes on.
    /// A write that found the writer busy and was never polled again (cut
    /// short by its caller, its stream kept) holds up no other stream: the
    /// turn is not handed to it in a queue.
    #[tokio::test]
    async fn a_write_cut_short_holds_up_no_other_stream() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let (ca, _ina, _) = drive(a, Side::Client);
        let (_cb, mut inb, _) = drive(b, Side::Server);
        let handle = &ca;
        let mut cut = handle.open().unwrap();
        let mut live = handle.open().unwrap();
        // Another writer has the turn when `cut` tries to write.
        let busy = handle.shared.turn.try_acquire().unwrap();
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let tried = Pin::new(&mut cut.write).poll_write(&mut cx, b"never");
        assert!(tried.is_pending());
        drop(busy);
        let moved = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            live.write.write_all(b"moves on").await?;
            live.write.flush().await
        })
        .await;
        assert!(moved.is_ok_and(|r| r.is_ok()), "the other stream stalled");
        let _cut_end = inb.recv().await.unwrap();
        let mut other = inb.recv().await.unwrap();
        let mut got = [0u8; 8];
        other.read.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"moves on");
        drop(cut);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_full_window_stalls_only_its_stream() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let (ca, _ina, _) = drive(a, Side::Client);
        let (_cb, mut inb, _) = drive(b, Side::Server);
        let mut stalled = ca.open().unwrap();
        let mut live = ca.open().unwrap();
        let big = vec![1u8; WINDOW as usize + 1];
        let blocked = tokio::time::timeout(
            std::time::Duration::from_millis(300),
            stalled.write.write_all(&big),
        )
        .await;
        assert!(blocked.is_err(), "wrote past the window");
        let _held = inb.recv().await.unwrap(); // never read
        let mut other = inb.recv().await.unwrap();
        live.write.write_all(b"still moving").await.unwrap();
        live.write.flush().await.unwrap();
        let mut got = [0u8; 12];
        other.read.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"still moving");
    }

    /// A write of up to MAX_DATA waits for the window to take it whole and
    /// arrives as one piece, which the reader takes as it is; asked for any
    /// other length, the reader takes nothing and the bytes read as usual.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_whole_write_arrives_as_one_piece_to_take() {
        use crate::net::mux::{BoxRead, FrameRead};
        async fn take(r: &mut BoxRead, len: usize) -> io::Result<Option<Vec<u8>>> {
            std::future::poll_fn(|cx| Pin::new(&mut *r).poll_take_exact(cx, len)).await
        }
        let (a, b) = tokio::io::duplex(1 << 16);
        let (ca, _ina, _) = drive(a, Side::Client);
        let (_cb, mut inb, _) = drive(b, Side::Server);
        let mut s = ca.open().unwrap();
        // All but 1000 bytes of the window in flight: the next write must wait.
        let first = pattern(1, WINDOW as usize - 1000);
        let whole = pattern(2, MAX_DATA);
        let writer = tokio::spawn(async move {
            s.write.write_all(&first).await.unwrap();
            s.write.write_all(&whole).await.unwrap();
            s.write.write_all(b"tail").await.unwrap();
            s.write.shutdown().await.unwrap();
        });
        let mut r = inb.recv().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        // The first write came in MAX_DATA pieces; a wrong length takes nothing.
        assert!(take(&mut r.read, MAX_DATA - 1).await.unwrap().is_none());
        let mut got = vec![0u8; WINDOW as usize - 1000];
        r.read.read_exact(&mut got).await.unwrap();
        assert!(got == pattern(1, WINDOW as usize - 1000));
        let piece = take(&mut r.read, MAX_DATA).await.unwrap();
        assert!(piece.expect("one piece") == pattern(2, MAX_DATA));
        assert!(take(&mut r.read, 3).await.unwrap().is_none());
        let mut tail = Vec::new();
        r.read.read_to_end(&mut tail).await.unwrap();
        assert_eq!(tail, b"tail");
        // At the end of the stream there is nothing to take.
        assert!(take(&mut r.read, 4).await.unwrap().is_none());
        writer.await.unwrap();
    }

    async fn peer_sends(frames: &[u8]) -> String {
        let (a, mut b) = tokio::io::duplex(1 << 22);
        let (_ca, _ina, mut ended) = drive(a, Side::Client);
        b.write_all(frames).await.unwrap();
        ended.changed().await.unwrap();
        let reason = ended.borrow().clone().unwrap();
        reason
    }

    fn frame(id: u32, kind: u8, len: u32, body: &[u8]) -> Vec<u8> {
        let mut f = header(id, kind, len).to_vec();
        f.extend_from_slice(body);
        f
    }

    /// A peer that breaks the format or its window ends the connection, with
    /// the reason, and nothing panics or allocates what it claims.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_misbehaving_peer_ends_the_connection() {
        let open = frame(2, OPEN, 0, &[]);
        let mut past_window = open.clone();
        for _ in 0..(WINDOW as usize / MAX_DATA) {
            past_window.extend(frame(2, DATA, MAX_DATA as u32, &vec![0; MAX_DATA]));
        }
        past_window.extend(frame(2, DATA, 1, &[0]));
        let mut reserved = frame(2, OPEN, 0, &[]);
        reserved[6] = 1;
        let mut after_fin = open.clone();
        after_fin.extend(frame(2, FIN, 0, &[]));
        after_fin.extend(frame(2, DATA, 1, &[0]));
        let mut reopened = open.clone();
        reopened.extend(frame(2, OPEN, 0, &[]));
        let cases: [(&str, Vec<u8>); 6] = [
            ("past its window", past_window),
            ("DATA frame", frame(2, DATA, u32::MAX, &[])),
            ("reserved", reserved),
            ("out of order", frame(1, OPEN, 0, &[])),
            ("after FIN", after_fin),
            ("out of order", reopened),
        ];
        for (want, bytes) in cases {
            let reason = peer_sends(&bytes).await;
            assert!(
                reason.contains("protocol violation") && reason.contains(want),
                "{want}: {reason}"
            );
        }
        let reason = peer_sends(&frame(0, 9, 0, &[])).await;
        assert!(reason.contains("unknown frame kind 9"), "{reason}");
    }

    /// When the connection ends, a stream's reader sees the end (the circuit
    /// above tells a clean finish from a cut) and its writer an error.
    #[tokio::test(flavor = "multi_thread")]
    async fn streams_end_with_their_connection() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let (ca, _ina, mut ended) = drive(a, Side::Client);
        let (_cb, mut inb, _) = drive(b, Side::Server);
        let mut s = ca.open().unwrap();
        s.write.write_all(b"x").await.unwrap();
        s.write.flush().await.unwrap();
        // The other side lets go of everything; we say goodbye, it answers
        // with the end of the connection.
        drop(inb.recv().await.unwrap());
        drop(_cb);
        drop(inb);
        ca.close().await;
        ended.changed().await.unwrap();
        let mut rest = Vec::new();
        assert_eq!(s.read.read_to_end(&mut rest).await.unwrap(), 0);
        assert!(s.write.write_all(b"more").await.is_err());
        assert!(ca.open().is_err());
    }

    /// Streams opened at once from many tasks all reach the peer: OPEN frames
    /// go out in the order of their ids, which the peer insists on.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_opens_keep_their_order() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let (ca, _ina, ended) = drive(a, Side::Client);
        let (_cb, mut inb, _) = drive(b, Side::Server);
        let mut tasks = Vec::new();
        for t in 0..8u8 {
            let ca = ca.clone();
            tasks.push(tokio::spawn(async move {
                let mut streams = Vec::new();
                for _ in 0..50 {
                    let mut s = ca.open().unwrap();
                    s.write.write_all(&[t]).await.unwrap();
                    s.write.flush().await.unwrap();
                    streams.push(s);
                }
                streams
            }));
        }
        let mut held = Vec::new();
        for t in tasks {
            held.extend(t.await.unwrap());
        }
        for _ in 0..400 {
            let mut s = inb.recv().await.unwrap();
            let mut byte = [0u8; 1];
            s.read.read_exact(&mut byte).await.unwrap();
            assert!(byte[0] < 8);
        }
        assert_eq!(*ended.borrow(), None);
    }
}
