//! A link: one authenticated connection between two nodes, with its control
//! circuit, the table of peers on it, and liveness checks.
//!
//! Driving contract: [`Link::establish`] takes a connection that finished its
//! handshake and spawns four tasks — the control reader (dispatches START, STARTED,
//! FAIL, CLOSE, GOAWAY, PING), the control writer (sends queued control fragments and
//! pings), a watchdog (declares the link dead after `idle_timeout` of silence; a
//! peer that asks without reading the answers fails it at [`CONTROL_BACKLOG`]) and the
//! inbound dispatcher (reads each new stream's OPEN fragment and hands the circuit to
//! the peer it names). When any of them sees the connection end, [`Link::fail`]
//! records the reason once and cancels every peer, so every open circuit errors.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use proto::{Compression, Fragment, Negotiated, Op};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::circuit::Circuit;
use super::framing::{read_frame, write_frame};
use super::peer::{Ended, Peer, PeerState};
use super::services::Services;
use crate::error::{Error, Result};
use crate::net::counting::{Counted, WireCounter};
use crate::net::handshake::Side;
use crate::net::mux::{Mux, RawStream};
use crate::net::tcp::{over_stream, Established, PeerCert};
use crate::net::LinkOptions;

/// The parts of a link that peers and circuits need to word their errors.
#[derive(Debug)]
pub(crate) struct LinkShared {
    /// Who is on the other end, e.g. "server 127.0.0.1:7433".
    pub name: String,
    pub token: CancellationToken,
    failure: Mutex<Option<String>>,
}

impl LinkShared {
    pub(crate) fn failure(&self) -> Option<String> {
        self.failure.lock().expect("poisoned").clone()
    }
}

struct PeerEntry {
    state: Arc<PeerState>,
    /// Where circuits the other end opens go; dropped (so `accept` yields
    /// `None`) once the other end is done and all it opened have arrived.
    incoming: Option<mpsc::UnboundedSender<Circuit>>,
    local_done: bool,
    /// Circuits of the other end handed to `accept` so far.
    delivered: u64,
    /// How many circuits the other end opened in all, from its CLOSE: the
    /// CLOSE can overtake the last of them (they travel on their own streams).
    announced: Option<u64>,
}

impl PeerEntry {
    fn new(state: Arc<PeerState>, incoming: mpsc::UnboundedSender<Circuit>) -> PeerEntry {
        PeerEntry {
            state,
            incoming: Some(incoming),
            local_done: false,
            delivered: 0,
            announced: None,
        }
    }

    /// Ends `incoming` once every circuit the other end announced has been
    /// delivered; true when the entry can go (both ends done).
    fn settle(&mut self) -> bool {
        if self.announced.is_some_and(|n| self.delivered >= n) {
            self.incoming = None;
        }
        self.local_done && self.incoming.is_none()
    }
}

/// How many failed peers' reasons a link keeps for circuits still on their
/// way to them ([`LinkInner::failed`]).
const FAILED_KEPT: usize = 64;

struct LinkInner {
    shared: Arc<LinkShared>,
    side: Side,
    mux: Mux,
    services: Arc<Services>,
    negotiated: Negotiated,
    allowed: Arc<[Compression]>,
    fingerprint: Option<String>,
    /// See [`Link::sealed`].
    sealed: bool,
    /// Both ends are in this process: a service's failure is the caller's own
    /// error on the other end, not something to log here as well.
    in_process: bool,
    peers: Mutex<HashMap<u32, PeerEntry>>,
    /// The services the other side started here, while they run
    /// ([`Link::services_ended`]).
    running: tokio_util::task::TaskTracker,
    /// Why our most recently failed peers failed, newest last: a circuit the
    /// other side opened to one of them before it heard of the failure is
    /// refused with that reason (the one it would otherwise race to report)
    /// rather than "no peer".
    failed: Mutex<std::collections::VecDeque<(u32, String)>>,
    pending: Mutex<HashMap<u32, oneshot::Sender<std::result::Result<u32, String>>>>,
    next_peer: AtomicU32,
    next_circuit: AtomicU32,
    control: mpsc::UnboundedSender<Outgoing>,
    /// Fragments in `control` not yet written ([`CONTROL_BACKLOG`]).
    backlog: std::sync::atomic::AtomicUsize,
    ended: watch::Receiver<Option<String>>,
    ended_tx: watch::Sender<Option<String>>,
    wire: WireCounter,
    _endpoint: Option<quinn::Endpoint>,
}

/// How the link's own tasks hold it: they do not keep it alive.
type WeakLink = Weak<LinkInner>;

fn upgrade(weak: &WeakLink) -> Option<Link> {
    weak.upgrade().map(|inner| Link { inner })
}

/// Why a link whose every handle went closes: the other side reads it.
const DROPPED: &str = "every handle to it was dropped";

impl Drop for LinkInner {
    /// The last handle went without [`Link::close`]: closes the link as it
    /// would, so that the connection, its tasks and the services the other
    /// side runs for it end too.
    fn drop(&mut self) {
        if self.shared.token.is_cancelled() {
            return; // it ended already
        }
        {
            let mut f = self.shared.failure.lock().expect("poisoned");
            if f.is_none() {
                *f = Some(format!("connection closed: {DROPPED}"));
            }
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // (No runtime left to write a goodbye: the connection's own
            // tasks are gone with it.)
            self.shared.token.cancel();
            return;
        };
        tracing::debug!(peer = %self.shared.name, "link dropped without close");
        let control = self.control.clone();
        let (shared, mux, endpoint) =
            (self.shared.clone(), self.mux.clone(), self._endpoint.take());
        runtime.spawn(async move {
            say_goaway(&control, DROPPED).await;
            shared.token.cancel();
            mux.close(DROPPED).await;
            drop(endpoint);
        });
    }
}

/// Queues a GOAWAY carrying `reason` on the control stream and waits (up
/// to 2 s) for it to be written: what the other side reads as why the link
/// ended.
async fn say_goaway(control: &mpsc::UnboundedSender<Outgoing>, reason: &str) {
    let (tx, rx) = oneshot::channel();
    let goaway = Fragment::new(Op::GOAWAY).with_error(reason);
    if control.send(Outgoing::GoAway(goaway, tx)).is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(2), rx).await;
    }
}

enum Outgoing {
    Frag(Fragment),
    /// Write this GOAWAY, then report that it left.
    GoAway(Fragment, oneshot::Sender<()>),
}

/// A connection to another node. Cheap to clone.
///
/// It lasts until it is closed ([`Link::close`]), lost, or no longer held:
/// every clone, [`Peer`] and [`Circuit`] on it holds it, and so does each
/// service the other side started here while it runs. When the last of them
/// goes, the link closes as [`Link::close`] would, telling the other side
/// "every handle was dropped" (its own tasks, keepalives included, hold it
/// only weakly). Close it when done, to give the other side a reason of your
/// own; [`Link::services_ended`] first waits for the services the other side
/// started here.
#[derive(Clone)]
pub struct Link {
    inner: Arc<LinkInner>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("peer", &self.inner.shared.name)
            .field("side", &self.inner.side)
            .finish()
    }
}

/// How long a new inbound stream may take to name its peer (its OPEN is
/// the first thing the opener writes).
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
const CONTROL: &str = "control";
/// Control fragments waiting to be written before the link fails: replies
/// (PONG, STARTED, FAIL) to a peer that asks faster than it reads them
/// would otherwise pile up without bound.
const CONTROL_BACKLOG: usize = 16_384;
/// Services the other side may have running here at once.
const MAX_SERVICES: usize = 256;

impl Link {
    /// Turns an established connection into a running link.
    pub(crate) async fn establish(
        mut est: Established,
        side: Side,
        services: Arc<Services>,
        opts: &LinkOptions,
        name: String,
    ) -> Result<Link> {
        let control = match est.control.take() {
            Some(c) => c,
            None => control_stream(&mut est, side, &name, opts).await?,
        };
        let token = CancellationToken::new();
        let shared = Arc::new(LinkShared {
            name,
            token,
            failure: Mutex::new(None),
        });
        let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
        let (ended_tx, ended) = watch::channel(None);
        let allowed: Arc<[Compression]> = est.negotiated.compression.clone().into();
        let link = Link {
            inner: Arc::new(LinkInner {
                shared,
                side,
                mux: est.driven.mux.clone(),
                services,
                negotiated: est.negotiated.clone(),
                allowed,
                fingerprint: est.cert.fingerprint.clone(),
                sealed: est.sealed,
                in_process: est.in_process,
                peers: Mutex::new(HashMap::new()),
                running: tokio_util::task::TaskTracker::new(),
                failed: Mutex::new(std::collections::VecDeque::new()),
                pending: Mutex::new(HashMap::new()),
                next_peer: AtomicU32::new(1),
                next_circuit: AtomicU32::new(match side {
                    Side::Client => 1,
                    Side::Server => 2,
                }),
                control: ctl_tx,
                backlog: std::sync::atomic::AtomicUsize::new(0),
                ended,
                ended_tx,
                wire: est.wire.clone(),
                _endpoint: est.endpoint.take(),
            }),
        };
        let heard = Arc::new(Mutex::new(Instant::now()));
        let RawStream { read, write } = control;
        // The link's own tasks hold it weakly: it ends when its users let
        // go of it (`Drop for LinkInner`), not when these do.
        let weak = link.weak();
        tokio::spawn(control_writer(weak.clone(), write, ctl_rx, opts.keepalive));
        tokio::spawn(control_reader(weak.clone(), read, heard.clone()));
        tokio::spawn(watchdog(
            weak.clone(),
            heard,
            opts.keepalive,
            opts.idle_timeout,
        ));
        tokio::spawn(inbound(weak.clone(), est.driven.inbound));
        let mut mux_ended = est.driven.ended;
        tokio::spawn(async move {
            let reason = loop {
                if let Some(r) = mux_ended.borrow_and_update().clone() {
                    break r;
                }
                if mux_ended.changed().await.is_err() {
                    break "connection closed".to_string();
                }
            };
            fail_after_reader(&weak, &reason).await;
        });
        Ok(link)
    }

    fn weak(&self) -> WeakLink {
        Arc::downgrade(&self.inner)
    }

    /// Who is on the other end (for messages), e.g. "server 127.0.0.1:7433".
    pub fn peer_name(&self) -> &str {
        &self.inner.shared.name
    }

    /// The other side's certificate key fingerprint ("SHA256:..."), if TLS.
    pub fn remote_fingerprint(&self) -> Option<&str> {
        self.inner.fingerprint.as_deref()
    }

    /// Whether the transport authenticates every byte itself (TLS 1.3 or QUIC,
    /// whose AEAD rejects any altered record) or never leaves the process (an
    /// in-process pair); false over `--insecure-plaintext`.
    pub fn sealed(&self) -> bool {
        self.inner.sealed
    }

    /// What the hello settled: protocol version and shared compression algorithms.
    pub fn negotiated(&self) -> &Negotiated {
        &self.inner.negotiated
    }

    /// Bytes this connection has moved so far, both directions, as they crossed
    /// the socket (TLS and multiplexer overhead included; UDP payloads for QUIC).
    pub fn wire_bytes(&self) -> u64 {
        self.inner.wire.total()
    }

    /// [`Link::wire_bytes`] in each direction: bytes sent, bytes received.
    pub fn wire_sent_received(&self) -> (u64, u64) {
        self.inner.wire.sent_received()
    }

    /// Why the link ended, once it has.
    pub fn failure(&self) -> Option<String> {
        self.inner.shared.failure()
    }

    /// True once the link ended.
    pub fn is_closed(&self) -> bool {
        self.inner.shared.token.is_cancelled()
    }

    /// Waits until the link ends and returns why.
    pub async fn closed(&self) -> String {
        let mut rx = self.inner.ended.clone();
        loop {
            if let Some(r) = rx.borrow_and_update().clone() {
                return r;
            }
            if rx.changed().await.is_err() {
                return "link dropped".into();
            }
        }
    }

    /// Asks the other side to start a peer running `service` with `args`, and
    /// returns our end of the pair. The name and arguments go in one
    /// fragment, within its limits ([`proto::MAX_SUBJECT`] bytes of name,
    /// [`proto::MAX_ARGS`] arguments of [`proto::MAX_ARG`] bytes): more is
    /// [`Error::Usage`].
    pub async fn start(&self, service: &str, args: &[String]) -> Result<Peer> {
        let id = self.inner.next_peer.fetch_add(1, Ordering::Relaxed);
        let request = Fragment {
            part: u64::from(id),
            subject: service.to_string(),
            args: args.to_vec(),
            ..Fragment::new(Op::START)
        };
        request.validate().map_err(|e| {
            Error::Usage(format!(
                "cannot start {service:?} with these arguments: {e}"
            ))
        })?;
        let state = PeerState::new(self.inner.shared.clone());
        let (tx, rx) = mpsc::unbounded_channel();
        let (reply_tx, reply_rx) = oneshot::channel();
        self.inner
            .peers
            .lock()
            .expect("poisoned")
            .insert(id, PeerEntry::new(state.clone(), tx));
        self.inner
            .pending
            .lock()
            .expect("poisoned")
            .insert(id, reply_tx);
        self.send_control(request);
        let reply = tokio::select! {
            biased;
            r = reply_rx => r.map_err(|_| self.lost()),
            _ = self.inner.shared.token.cancelled() => Err(self.lost()),
        };
        let remote_id = match reply {
            Ok(Ok(remote)) => remote,
            Ok(Err(reason)) | Err(Error::Remote { reason, .. }) => {
                self.forget_peer(id);
                return Err(if reason.starts_with(NO_SERVICE) {
                    Error::NoSuchService {
                        peer: self.peer_name().into(),
                        service: service.into(),
                    }
                } else {
                    Error::Remote {
                        peer: self.peer_name().into(),
                        reason,
                    }
                });
            }
            Err(e) => {
                self.forget_peer(id);
                return Err(e);
            }
        };
        Ok(Peer::new(
            self.clone(),
            id,
            remote_id,
            service.to_string(),
            args.to_vec(),
            state,
            rx,
        ))
    }

    /// Waits until every service the other side started here has returned
    /// (after [`Link::close`], each has seen its circuits end and put away
    /// what it was doing: a receiver keeps its partial files).
    pub async fn services_ended(&self) {
        self.inner.running.close();
        self.inner.running.wait().await;
    }

    /// Closes the link on purpose: the other side learns `reason`, every circuit on
    /// both sides ends.
    pub async fn close(&self, reason: &str) {
        if self.is_closed() {
            return;
        }
        say_goaway(&self.inner.control, reason).await;
        self.end(&format!("connection closed: {reason}"), reason)
            .await;
    }

    /// Records why the link ended (first reason wins), ends every peer and closes
    /// the connection.
    pub(crate) async fn fail(&self, reason: &str) {
        self.end(reason, reason).await;
    }

    /// [`Link::fail`], telling a QUIC peer `theirs` (over TCP the reason
    /// goes in a GOAWAY, before).
    async fn end(&self, reason: &str, theirs: &str) {
        {
            let mut f = self.inner.shared.failure.lock().expect("poisoned");
            if f.is_some() {
                return;
            }
            *f = Some(reason.to_string());
        }
        tracing::debug!(peer = %self.inner.shared.name, reason, "link ended");
        self.inner.shared.token.cancel();
        self.inner.pending.lock().expect("poisoned").clear();
        self.inner.peers.lock().expect("poisoned").clear();
        let _ = self.inner.ended_tx.send(Some(reason.to_string()));
        self.inner.mux.close(theirs).await;
    }

    pub(crate) fn mux(&self) -> &Mux {
        &self.inner.mux
    }

    pub(crate) fn next_circuit_id(&self) -> u32 {
        self.inner.next_circuit.fetch_add(2, Ordering::Relaxed)
    }

    pub(crate) fn allowed_compression(&self) -> Arc<[Compression]> {
        self.inner.allowed.clone()
    }

    fn lost(&self) -> Error {
        Error::ConnectionLost {
            peer: self.peer_name().into(),
            reason: self.failure().unwrap_or_else(|| "connection closed".into()),
        }
    }

    fn send_control(&self, frag: Fragment) {
        let queued = self.inner.backlog.fetch_add(1, Ordering::Relaxed) + 1;
        if queued == CONTROL_BACKLOG + 1 {
            let link = self.clone();
            tokio::spawn(async move {
                link.fail("the peer asks faster than it reads the replies")
                    .await;
            });
        }
        if queued <= CONTROL_BACKLOG {
            let _ = self.inner.control.send(Outgoing::Frag(frag));
        }
    }

    fn forget_peer(&self, id: u32) {
        self.inner.peers.lock().expect("poisoned").remove(&id);
    }

    /// Our peer `id` is done (`reason` None; it opened `opened` circuits) or
    /// cancelled (`reason` Some).
    pub(crate) fn peer_done(&self, id: u32, remote_id: u32, reason: Option<&str>, opened: u64) {
        let mut peers = self.inner.peers.lock().expect("poisoned");
        let remove = match peers.get_mut(&id) {
            Some(e) => {
                e.local_done = true;
                reason.is_some() || e.incoming.is_none()
            }
            None => false,
        };
        if remove {
            peers.remove(&id);
        }
        drop(peers);
        let mut frag = Fragment {
            subject: "peer".into(),
            part: u64::from(remote_id),
            args: vec![opened.to_string()],
            ..Fragment::new(Op::CLOSE)
        };
        frag.error = reason.map(str::to_string);
        self.send_control(frag);
    }

    /// Why there is no peer `id` here, for a circuit opened to it.
    fn failure_of(&self, id: u32) -> String {
        let failed = self.inner.failed.lock().expect("poisoned");
        match failed.iter().rev().find(|(failed, _)| *failed == id) {
            Some((_, why)) => why.clone(),
            None => format!("no peer {id} on this side"),
        }
    }

    pub(crate) fn peer_failed(&self, id: u32, remote_id: u32, reason: &str) {
        {
            let mut failed = self.inner.failed.lock().expect("poisoned");
            if failed.len() >= FAILED_KEPT {
                failed.pop_front();
            }
            failed.push_back((id, reason.to_string()));
        }
        self.forget_peer(id);
        self.send_control(Fragment {
            subject: "peer".into(),
            part: u64::from(remote_id),
            ..Fragment::new(Op::FAIL).with_error(reason)
        });
    }

    /// Handles one control fragment from the other side; a GOAWAY's
    /// reason comes back for the reader to end the link with (before the
    /// connection's end that follows it, which would say less).
    fn dispatch(&self, frag: Fragment) -> Option<String> {
        let part = u32::try_from(frag.part).unwrap_or(u32::MAX);
        match frag.op {
            Op::PING => self.send_control(Fragment::new(Op::PONG)),
            Op::PONG => {}
            Op::START => self.start_service(part, frag.subject, frag.args),
            Op::STARTED => {
                let remote = frag
                    .args
                    .first()
                    .and_then(|a| a.parse::<u32>().ok())
                    .ok_or_else(|| "malformed STARTED reply".to_string());
                if let Some(tx) = self.inner.pending.lock().expect("poisoned").remove(&part) {
                    let _ = tx.send(remote);
                }
            }
            Op::FAIL if frag.subject == "start" => {
                if let Some(tx) = self.inner.pending.lock().expect("poisoned").remove(&part) {
                    let _ = tx.send(Err(frag.error.unwrap_or_default()));
                }
            }
            Op::FAIL => {
                let entry = self.inner.peers.lock().expect("poisoned").remove(&part);
                if let Some(e) = entry {
                    let reason = frag
                        .error
                        .unwrap_or_else(|| "failed (no reason given)".into());
                    e.state.end(Ended::RemoteFailed(reason));
                }
            }
            Op::CLOSE => {
                let mut peers = self.inner.peers.lock().expect("poisoned");
                match frag.error {
                    Some(reason) => {
                        if let Some(e) = peers.remove(&part) {
                            e.state.end(Ended::RemoteCancelled(reason));
                        }
                    }
                    None => {
                        // Circuits it opened may still be on their way.
                        let opened = frag.args.first().and_then(|a| a.parse().ok());
                        let remove = match peers.get_mut(&part) {
                            Some(e) => {
                                e.announced = Some(opened.unwrap_or(0));
                                e.settle()
                            }
                            None => false,
                        };
                        if remove {
                            peers.remove(&part);
                        }
                    }
                }
            }
            Op::GOAWAY => {
                // (The peer's words, logged: with no control characters.)
                let reason = frag.error.unwrap_or_default();
                let reason = crate::sync::escape_controls(&reason);
                return Some(format!("the peer closed the connection: {reason}"));
            }
            other => {
                tracing::warn!(peer = %self.peer_name(), op = %other, "ignoring unknown control op")
            }
        }
        None
    }

    /// The other side asks us to run `service`; `remote_id` is its end of the pair.
    fn start_service(&self, remote_id: u32, service: String, args: Vec<String>) {
        if self.inner.running.len() >= MAX_SERVICES {
            self.send_control(Fragment {
                subject: "start".into(),
                part: u64::from(remote_id),
                ..Fragment::new(Op::FAIL)
                    .with_error(format!("more than {MAX_SERVICES} services at once"))
            });
            return;
        }
        let Some(f) = self.inner.services.get(&service) else {
            // (The peer's words: logged with no control characters.)
            let service = crate::sync::escape_controls(&service);
            tracing::warn!(peer = %self.peer_name(), %service, "request for an unknown service");
            self.send_control(Fragment {
                subject: "start".into(),
                part: u64::from(remote_id),
                ..Fragment::new(Op::FAIL).with_error(format!("{NO_SERVICE} {service:?}"))
            });
            return;
        };
        let id = self.inner.next_peer.fetch_add(1, Ordering::Relaxed);
        let state = PeerState::new(self.inner.shared.clone());
        let (tx, rx) = mpsc::unbounded_channel();
        self.inner
            .peers
            .lock()
            .expect("poisoned")
            .insert(id, PeerEntry::new(state.clone(), tx));
        // Registered before STARTED leaves, so circuits opened right after find it.
        self.send_control(Fragment {
            part: u64::from(remote_id),
            args: vec![id.to_string()],
            ..Fragment::new(Op::STARTED)
        });
        let peer = Peer::new(
            self.clone(),
            id,
            remote_id,
            service.clone(),
            args,
            state,
            rx,
        );
        self.inner.running.spawn(async move {
            // A service that panics fails its peer, as one that returns an
            // error does (the other side would wait on it for good).
            let run = std::panic::AssertUnwindSafe(f(peer.clone()));
            let done = match futures::FutureExt::catch_unwind(run).await {
                Ok(done) => done,
                Err(panic) => Err(anyhow::anyhow!(
                    "service {service} panicked: {}",
                    panic_text(panic.as_ref())
                )),
            };
            match done {
                Ok(()) => peer.close(),
                Err(e) => {
                    // (It may quote the peer: logged with no control characters.)
                    let reason = crate::error::chain_text(e.as_ref());
                    let reason = crate::sync::escape_controls(&reason);
                    let name = peer.link().peer_name();
                    if peer.link().inner.in_process {
                        tracing::debug!(peer = %name, %service, %reason, "service failed");
                    } else {
                        tracing::warn!(peer = %name, %service, %reason, "service failed");
                    }
                    peer.fail(&reason);
                }
            }
        });
    }

    /// Hands a newly opened inbound circuit to the peer its OPEN names.
    fn deliver(&self, target: u32, circuit: Circuit) -> std::result::Result<(), String> {
        let mut peers = self.inner.peers.lock().expect("poisoned");
        let Some(e) = peers.get_mut(&target) else {
            return Err(format!("no peer {target} accepting circuits"));
        };
        let sent = match &e.incoming {
            Some(tx) => tx
                .send(circuit)
                .map_err(|_| format!("peer {target} no longer accepts circuits")),
            None => Err(format!("no peer {target} accepting circuits")),
        };
        e.delivered += 1;
        if e.settle() {
            peers.remove(&target);
        }
        sent
    }

    /// An in-process pair of linked nodes (no sockets, no TLS): what `jcp a b` uses.
    pub async fn pair(a: Arc<Services>, b: Arc<Services>) -> Result<(Link, Link)> {
        let (x, y) = tokio::io::duplex(1 << 20);
        let (x, wire_a) = Counted::new(x);
        let (y, wire_b) = Counted::new(y);
        let opts = LinkOptions::default();
        let ca = over_stream(
            x,
            Side::Client,
            &opts.agent,
            "local peer",
            PeerCert::default(),
            wire_a,
            true,
        );
        let cb = over_stream(
            y,
            Side::Server,
            &opts.agent,
            "local peer",
            PeerCert::default(),
            wire_b,
            true,
        );
        let (mut ea, mut eb) = tokio::try_join!(ca, cb)?;
        (ea.in_process, eb.in_process) = (true, true);
        tokio::try_join!(
            Link::establish(ea, Side::Client, a, &opts, "local peer".into()),
            Link::establish(eb, Side::Server, b, &opts, "local peer".into()),
        )
    }
}

const NO_SERVICE: &str = "no service named";

/// TCP only: the client opens the control stream right after the hello; the server
/// takes the first stream the client opens.
async fn control_stream(
    est: &mut Established,
    side: Side,
    name: &str,
    opts: &LinkOptions,
) -> Result<RawStream> {
    let lost = |reason: String| Error::ConnectionLost {
        peer: name.into(),
        reason,
    };
    match side {
        Side::Client => {
            let mut s = est
                .driven
                .mux
                .open()
                .await
                .map_err(|e| lost(format!("cannot open the control stream: {e}")))?;
            let open = Fragment::new(Op::OPEN).with_subject(CONTROL);
            write_frame(&mut s.write, &open, Compression::NONE, &mut Vec::new())
                .await
                .map_err(|e| lost(format!("cannot open the control stream: {e}")))?;
            Ok(s)
        }
        Side::Server => {
            let first =
                tokio::time::timeout(opts.handshake_timeout, est.driven.inbound.recv()).await;
            let mut s = match first {
                Ok(Some(s)) => s,
                Ok(None) => return Err(lost("closed before opening the control stream".into())),
                Err(_) => {
                    return Err(Error::Timeout {
                        what: "control stream",
                        peer: name.into(),
                        secs: opts.handshake_timeout.as_secs_f64(),
                    })
                }
            };
            match read_frame(&mut s.read, &mut Vec::new()).await {
                Ok(Some(f)) if f.op == Op::OPEN && f.subject == CONTROL => Ok(s),
                _ => Err(Error::Violation {
                    peer: name.into(),
                    what: "the first stream was not the control stream".into(),
                }),
            }
        }
    }
}

async fn control_writer(
    link: WeakLink,
    mut w: crate::net::mux::BoxWrite,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    keepalive: Duration,
) {
    let mut buf = Vec::new();
    let mut serial = 1u64; // serial 0 was the OPEN (TCP) or is unused (QUIC)
    let mut tick = tokio::time::interval(keepalive);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let Some(token) = upgrade(&link).map(|l| l.inner.shared.token.clone()) else {
        return;
    };
    loop {
        let (mut frag, done) = tokio::select! {
            _ = token.cancelled() => return,
            _ = tick.tick() => (Fragment::new(Op::PING), None),
            m = rx.recv() => match m {
                Some(Outgoing::Frag(f)) => {
                    if let Some(l) = upgrade(&link) {
                        l.inner.backlog.fetch_sub(1, Ordering::Relaxed);
                    }
                    (f, None)
                }
                Some(Outgoing::GoAway(f, done)) => (f, Some(done)),
                None => return,
            },
        };
        frag.serial = serial;
        serial += 1;
        if let Err(e) = write_frame(&mut w, &frag, Compression::NONE, &mut buf).await {
            fail_after_reader(&link, &format!("control stream write failed: {e}")).await;
            return;
        }
        if let Some(done) = done {
            let _ = done.send(());
        }
    }
}

/// Ends the link with `reason` unless the control reader ends it first,
/// within a second: the connection's end, seen here, may follow a GOAWAY
/// that the reader has yet to take (the peer's reason, which says more).
async fn fail_after_reader(link: &WeakLink, reason: &str) {
    if let Some(token) = upgrade(link).map(|l| l.inner.shared.token.clone()) {
        let _ = tokio::time::timeout(Duration::from_secs(1), token.cancelled()).await;
    }
    if let Some(l) = upgrade(link) {
        l.fail(reason).await;
    }
}

async fn control_reader(
    link: WeakLink,
    mut r: crate::net::mux::BoxRead,
    heard: Arc<Mutex<Instant>>,
) {
    let Some(token) = upgrade(&link).map(|l| l.inner.shared.token.clone()) else {
        return;
    };
    let mut buf = Vec::new();
    loop {
        let res = tokio::select! {
            _ = token.cancelled() => return,
            r = read_frame(&mut r, &mut buf) => r,
        };
        // (Gone: its last handle was dropped, and it is closing.)
        let Some(link) = upgrade(&link) else {
            return;
        };
        match res {
            Ok(Some(frag)) => {
                *heard.lock().expect("poisoned") = Instant::now();
                if let Some(reason) = link.dispatch(frag) {
                    return link.fail(&reason).await;
                }
            }
            Ok(None) => {
                let reason = link.inner.mux.ended_reason();
                let reason = reason
                    .as_deref()
                    .unwrap_or("the peer closed the connection");
                return link.fail(reason).await;
            }
            Err(e) => {
                let reason = match e {
                    super::framing::ReadError::Decode(d) => format!("malformed control data: {d}"),
                    super::framing::ReadError::Truncated => "connection cut mid-frame".into(),
                    super::framing::ReadError::Io(e) => {
                        format!("connection error: {}", crate::error::io_text(&e))
                    }
                };
                // (The connection's own reason, when it has one, says more.)
                let reason = link.inner.mux.ended_reason().unwrap_or(reason);
                return link.fail(&reason).await;
            }
        }
    }
}

async fn watchdog(link: WeakLink, heard: Arc<Mutex<Instant>>, keepalive: Duration, idle: Duration) {
    let Some(token) = upgrade(&link).map(|l| l.inner.shared.token.clone()) else {
        return;
    };
    let mut tick = tokio::time::interval(keepalive.min(idle / 2));
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tick.tick() => {}
        }
        let silent = heard.lock().expect("poisoned").elapsed();
        if silent > idle {
            let Some(link) = upgrade(&link) else {
                return;
            };
            link.fail(&format!(
                "no response from the peer for {:.0} s (keepalive)",
                silent.as_secs_f64()
            ))
            .await;
            return;
        }
    }
}

async fn inbound(link: WeakLink, mut streams: mpsc::UnboundedReceiver<RawStream>) {
    let Some(token) = upgrade(&link).map(|l| l.inner.shared.token.clone()) else {
        return;
    };
    loop {
        let stream = tokio::select! {
            _ = token.cancelled() => return,
            s = streams.recv() => match s { Some(s) => s, None => return },
        };
        let weak = link.clone();
        tokio::spawn(async move {
            let RawStream {
                mut read,
                mut write,
            } = stream;
            // (The link held weakly while the OPEN is awaited: streams
            // that never say one keep no link that was let go.)
            let first =
                tokio::time::timeout(OPEN_TIMEOUT, read_frame(&mut read, &mut Vec::new())).await;
            let Some(link) = upgrade(&weak) else {
                return;
            };
            let open = match first {
                Ok(Ok(Some(f))) if f.op == Op::OPEN && f.serial == 0 => f,
                _ => {
                    tracing::debug!(peer = %link.peer_name(), "dropping a stream without a valid OPEN");
                    return;
                }
            };
            let target = u32::try_from(open.part).unwrap_or(u32::MAX);
            let state = link
                .inner
                .peers
                .lock()
                .expect("poisoned")
                .get(&target)
                .map(|e| e.state.clone());
            let Some(state) = state else {
                let reason = link.failure_of(target);
                refuse_circuit(&mut write, open.circuit, reason).await;
                return;
            };
            // Acknowledge at once: it tells the opener the peer exists. An
            // opener that only writes may have stopped reading already (its
            // QUIC stream refuses the ack); what it wrote is delivered all
            // the same, and a dead connection fails the circuit on its own.
            let ack = Fragment {
                circuit: open.circuit,
                serial: 0,
                ..Fragment::new(Op::OPEN)
            };
            let _ = write_frame(&mut write, &ack, Compression::NONE, &mut Vec::new()).await;
            let circuit = Circuit::new(open.circuit, link.clone(), state, read, write, 1, 1);
            if let Err(reason) = link.deliver(target, circuit) {
                tracing::debug!(peer = %link.peer_name(), %reason, "circuit refused");
            }
        });
    }
}

async fn refuse_circuit(w: &mut crate::net::mux::BoxWrite, circuit: u32, reason: String) {
    let fail = Fragment {
        circuit,
        serial: 0,
        ..Fragment::new(Op::FAIL).with_error(reason)
    };
    let _ = write_frame(w, &fail, Compression::NONE, &mut Vec::new()).await;
}

/// What a panic said, when it said it with a string (as `panic!` does).
fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(s), _) => s,
        (_, Some(s)) => s,
        _ => "(no message)",
    }
}
