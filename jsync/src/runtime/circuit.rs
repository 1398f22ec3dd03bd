//! Circuits: ordered, flow-controlled, bidirectional channels of Fragments between
//! two peers, each on its own multiplexed stream.
//!
//! Every fragment carries the circuit id and a per-direction serial number; the
//! receiver checks both, so a dropped or reordered fragment is a loud protocol error
//! rather than silent corruption. A circuit ends cleanly only by a FIN (half-close)
//! or CLOSE fragment: a stream that just stops is an error, and the error carries the
//! other side's reason when it sent one (a failed service, a lost connection).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use proto::{Compression, Fragment, Op};
use tokio::io::AsyncWriteExt;

use super::framing::{read_frame, write_frame_at, ReadError};
use super::link::Link;
use super::peer::PeerState;
use crate::error::{Error, Result};
use crate::net::mux::{BoxRead, BoxWrite};

/// How long an abruptly ended circuit waits for the reason (sent on the control
/// circuit, or the connection's end) to catch up before it reports its own words.
const REASON_GRACE: Duration = Duration::from_secs(2);

pub(crate) struct CircuitShared {
    pub id: u32,
    /// Held, not used: a circuit keeps its link open (see [`Link`]).
    _link: Link,
    pub peer: Arc<PeerState>,
    /// Set when either side closed the circuit in both directions.
    pub closed: AtomicBool,
}

impl CircuitShared {
    fn peer_name(&self) -> String {
        self.peer.link.name.clone()
    }

    /// The error for a stream that ended or failed without a FIN: the peer's or the
    /// connection's reason if it arrives in time, else `what`.
    async fn abnormal(&self, what: String) -> Error {
        let token = self.peer.token.clone();
        let _ = tokio::time::timeout(REASON_GRACE, token.cancelled()).await;
        if self.peer.token.is_cancelled() {
            return self.peer.error();
        }
        if self.closed.load(Ordering::Acquire) {
            return Error::Closed {
                peer: self.peer_name(),
                circuit: self.id,
            };
        }
        Error::ConnectionLost {
            peer: self.peer_name(),
            reason: format!("circuit {}: {what}", self.id),
        }
    }
}

/// A bidirectional circuit. Split it to send and receive from different tasks.
pub struct Circuit {
    tx: CircuitSender,
    rx: CircuitReceiver,
}

/// The sending half of a [`Circuit`].
pub struct CircuitSender {
    shared: Arc<CircuitShared>,
    w: BoxWrite,
    serial: u64,
    buf: Vec<u8>,
    compression: Compression,
    /// The zstd level of what this side compresses (its choice alone).
    level: i32,
    allowed: Arc<[Compression]>,
    sending: Sending,
}

/// Whether a [`CircuitSender`] can still send.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Sending {
    Open,
    /// A send holds the writer; if it is still so at the next call, that
    /// send was dropped part-way and may have left half a frame.
    Writing,
    /// Finished, failed or closed: our direction has ended.
    Ended,
}

/// The receiving half of a [`Circuit`].
pub struct CircuitReceiver {
    shared: Arc<CircuitShared>,
    r: BoxRead,
    /// Frame buffer reused across reads.
    buf: Vec<u8>,
    expect: u64,
    ended: bool,
}

impl std::fmt::Debug for Circuit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Circuit({})", self.tx.shared.id)
    }
}
impl std::fmt::Debug for CircuitSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CircuitSender({})", self.shared.id)
    }
}
impl std::fmt::Debug for CircuitReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CircuitReceiver({})", self.shared.id)
    }
}

impl Circuit {
    /// `send_serial`/`recv_serial`: the next serial in each direction (the opener's
    /// OPEN fragment used serial 0 of its direction).
    pub(crate) fn new(
        id: u32,
        link: Link,
        peer: Arc<PeerState>,
        r: BoxRead,
        w: BoxWrite,
        send_serial: u64,
        recv_serial: u64,
    ) -> Circuit {
        let allowed = link.allowed_compression();
        let shared = Arc::new(CircuitShared {
            id,
            _link: link,
            peer,
            closed: AtomicBool::new(false),
        });
        Circuit {
            tx: CircuitSender {
                shared: shared.clone(),
                w,
                serial: send_serial,
                buf: Vec::new(),
                compression: Compression::NONE,
                level: proto::ZSTD_DEFAULT_LEVEL,
                allowed,
                sending: Sending::Open,
            },
            rx: CircuitReceiver {
                shared,
                r,
                buf: Vec::new(),
                expect: recv_serial,
                ended: false,
            },
        }
    }

    /// This circuit's id, unique on its connection.
    pub fn id(&self) -> u32 {
        self.tx.shared.id
    }

    /// Sends a fragment (see [`CircuitSender::send`]).
    pub async fn send(&mut self, frag: Fragment) -> Result<()> {
        self.tx.send(frag).await
    }

    /// Sends a fragment with an explicit payload compression for this message.
    pub async fn send_with(&mut self, frag: Fragment, compression: Compression) -> Result<()> {
        self.tx.send_with(frag, compression).await
    }

    /// Receives the next fragment (see [`CircuitReceiver::recv`]).
    pub async fn recv(&mut self) -> Result<Option<Fragment>> {
        self.rx.recv().await
    }

    /// Half-close: "I am done sending". Receiving goes on.
    pub async fn finish(&mut self) -> Result<()> {
        self.tx.finish().await
    }

    /// Ends the circuit in both directions, on both sides.
    pub async fn close(mut self) -> Result<()> {
        self.tx.close().await
    }

    /// Sets the default payload compression for later [`Circuit::send`] calls.
    pub fn set_compression(&mut self, c: Compression) {
        self.tx.set_compression(c);
    }

    /// Sets the zstd level of later sends (see [`CircuitSender::set_level`]).
    pub fn set_level(&mut self, level: i32) {
        self.tx.set_level(level);
    }

    /// Tells the other side this circuit failed (see [`CircuitSender::fail`]).
    pub async fn fail(&mut self, reason: &str) -> Result<()> {
        self.tx.fail(reason).await
    }

    /// Splits into halves that can move to different tasks.
    pub fn split(self) -> (CircuitSender, CircuitReceiver) {
        (self.tx, self.rx)
    }

    /// Both halves, borrowed: to send and receive at once in one task.
    pub fn halves(&mut self) -> (&mut CircuitSender, &mut CircuitReceiver) {
        (&mut self.tx, &mut self.rx)
    }
}

impl CircuitSender {
    /// The circuit's id.
    pub fn id(&self) -> u32 {
        self.shared.id
    }

    /// Sets the default payload compression for later sends. An algorithm the peer
    /// did not offer in its hello falls back to none.
    pub fn set_compression(&mut self, c: Compression) {
        self.compression = c;
    }

    /// Sets the zstd level of later sends ([`proto::zstd_levels`]; default
    /// [`proto::ZSTD_DEFAULT_LEVEL`]): how hard this side compresses, which
    /// the peer need not know.
    pub fn set_level(&mut self, level: i32) {
        self.level = level;
    }

    /// Sends one fragment, in order; waits while the receiver's window is full.
    /// The circuit id and serial are filled in here. Runtime ops (below
    /// [`Op::USER`]) are reserved. A fragment over the protocol's limits
    /// ([`Fragment::validate`]: a payload of [`proto::MAX_PAYLOAD`] bytes,
    /// the subject, arguments and error text) is [`Error::Usage`], and
    /// nothing is sent: larger data goes in several fragments.
    ///
    /// Not cancel-safe: a send dropped before it completes (a timeout, a
    /// `select!` arm that lost) may have written part of a frame, so the
    /// circuit sends no more ([`Error::Usage`] from then on) and the other
    /// side sees it end mid-frame.
    pub async fn send(&mut self, frag: Fragment) -> Result<()> {
        self.send_with(frag, self.compression).await
    }

    /// Like [`CircuitSender::send`] with an explicit compression for this message
    /// ([`Compression::NONE`] for data that is already compressed).
    pub async fn send_with(&mut self, frag: Fragment, compression: Compression) -> Result<()> {
        if frag.op.is_runtime() {
            return Err(Error::Usage(format!(
                "op {} is reserved for the runtime",
                frag.op
            )));
        }
        // (The peer would reject it, failing the whole link; checked with
        // the numbers the frame will carry, which take room too.)
        let mut frag = frag;
        frag.circuit = self.shared.id;
        frag.serial = self.serial;
        if let Err(e) = frag.validate() {
            return Err(Error::Usage(format!(
                "the fragment breaks a limit of the protocol: {e}"
            )));
        }
        self.raw_send(frag, compression).await
    }

    pub(crate) async fn raw_send(
        &mut self,
        mut frag: Fragment,
        compression: Compression,
    ) -> Result<()> {
        let token = self.shared.peer.token.clone();
        if token.is_cancelled() {
            return Err(self.shared.peer.error());
        }
        match self.sending {
            Sending::Open => {}
            Sending::Ended => {
                return Err(Error::Usage(format!(
                    "circuit {} already finished sending",
                    self.shared.id
                )))
            }
            Sending::Writing => {
                return Err(Error::Usage(format!(
                    "circuit {}: an earlier send was dropped part-way through a fragment \
                     (send is not cancel-safe), so it can send no more",
                    self.shared.id
                )))
            }
        }
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(Error::Closed {
                peer: self.shared.peer_name(),
                circuit: self.shared.id,
            });
        }
        frag.circuit = self.shared.id;
        frag.serial = self.serial;
        self.serial += 1;
        let compression = if self.allowed.contains(&compression) {
            compression
        } else {
            Compression::NONE
        };
        // The writer is this call's while it writes: a write cut short (the
        // peer ended, or the caller dropped this call) may have left half a
        // frame, so the writer goes with the call and the sender sends no
        // more. (The multiplexer gives its turn to no writer that is not
        // polled again, so nothing else waits on it meanwhile.)
        let mut w = self.take_writer();
        let res = tokio::select! {
            biased;
            _ = token.cancelled() => return Err(self.shared.peer.error()),
            r = write_frame_at(&mut w, &frag, compression, self.level, &mut self.buf) => r,
        };
        self.w = w;
        self.sending = Sending::Open;
        match res {
            Ok(()) => Ok(()),
            Err(e) => Err(self.shared.abnormal(format!("send failed: {e}")).await),
        }
    }

    /// Takes the writer out, leaving a sink; marks the sender writing
    /// until the writer is put back.
    fn take_writer(&mut self) -> BoxWrite {
        self.sending = Sending::Writing;
        std::mem::replace(&mut self.w, Box::new(tokio::io::sink()))
    }

    /// Ends our direction of the stream (the writer goes with it, as in
    /// [`CircuitSender::raw_send`], should the shutdown be cut short).
    async fn shut_down(&mut self) {
        let mut w = self.take_writer();
        self.sending = Sending::Ended;
        let _ = w.shutdown().await;
    }

    /// Half-close: sends FIN and closes our direction of the stream.
    pub async fn finish(&mut self) -> Result<()> {
        self.raw_send(Fragment::new(Op::FIN), Compression::NONE)
            .await?;
        self.shut_down().await;
        Ok(())
    }

    /// Closes the circuit in both directions; the other side's `recv` yields `None`
    /// and its sends fail with [`Error::Closed`].
    pub async fn close(&mut self) -> Result<()> {
        if self.sending == Sending::Open && !self.shared.closed.load(Ordering::Acquire) {
            let _ = self
                .raw_send(Fragment::new(Op::CLOSE), Compression::NONE)
                .await;
        }
        self.shared.closed.store(true, Ordering::Release);
        self.shut_down().await;
        Ok(())
    }

    /// Tells the other side this circuit failed, with `reason`, and closes our
    /// direction. Its `recv` returns [`Error::Remote`] carrying the reason.
    pub async fn fail(&mut self, reason: &str) -> Result<()> {
        self.raw_send(
            Fragment::new(Op::FAIL).with_error(reason),
            Compression::NONE,
        )
        .await?;
        self.shut_down().await;
        Ok(())
    }
}

impl CircuitReceiver {
    /// The circuit's id.
    pub fn id(&self) -> u32 {
        self.shared.id
    }

    async fn read_one(&mut self) -> Result<Fragment> {
        let token = self.shared.peer.token.clone();
        let res = tokio::select! {
            biased;
            _ = token.cancelled() => {
                self.ended = true;
                return Err(self.shared.peer.error());
            }
            r = read_frame(&mut self.r, &mut self.buf) => r,
        };
        let err = match res {
            Ok(Some(frag)) => return Ok(frag),
            Ok(None) => self.shared.abnormal("ended without finishing".into()).await,
            Err(ReadError::Truncated) => {
                self.shared
                    .abnormal("ended in the middle of a frame".into())
                    .await
            }
            Err(ReadError::Io(e)) => self.shared.abnormal(format!("receive failed: {e}")).await,
            Err(ReadError::Decode(source)) => Error::Protocol {
                peer: self.shared.peer_name(),
                source,
            },
        };
        self.ended = true;
        Err(err)
    }

    /// The next fragment in order. `Ok(None)` when the other side finished (FIN) or
    /// closed the circuit; an error when it failed, the connection was lost, or the
    /// stream ended without either.
    pub async fn recv(&mut self) -> Result<Option<Fragment>> {
        if self.ended {
            return Ok(None);
        }
        let frag = loop {
            let frag = self.read_one().await?;
            // The acceptor's acknowledgement (serial 0 of its direction) confirms the
            // circuit reached a peer; it carries nothing for the caller.
            if frag.op == Op::OPEN
                && frag.serial == 0
                && self.expect == 0
                && frag.circuit == self.shared.id
            {
                self.expect = 1;
                continue;
            }
            break frag;
        };
        if frag.circuit != self.shared.id || frag.serial != self.expect {
            self.ended = true;
            return Err(Error::Violation {
                peer: self.shared.peer_name(),
                what: format!(
                    "fragment for circuit {} serial {} arrived on circuit {} where serial {} was due",
                    frag.circuit, frag.serial, self.shared.id, self.expect
                ),
            });
        }
        self.expect += 1;
        match frag.op {
            Op::FIN => {
                self.ended = true;
                Ok(None)
            }
            Op::CLOSE => {
                self.ended = true;
                self.shared.closed.store(true, Ordering::Release);
                Ok(None)
            }
            Op::FAIL => {
                self.ended = true;
                Err(Error::Remote {
                    peer: self.shared.peer_name(),
                    reason: frag
                        .error
                        .unwrap_or_else(|| "circuit failed (no reason given)".into()),
                })
            }
            op if op.is_runtime() => {
                self.ended = true;
                Err(Error::Violation {
                    peer: self.shared.peer_name(),
                    what: format!("unexpected {op} on circuit {}", self.shared.id),
                })
            }
            _ => Ok(Some(frag)),
        }
    }
}
