//! Peers: the two ends of a running service. Each side holds a [`Peer`] handle;
//! either can open circuits to the other and accept the circuits the other opens.

use std::sync::{Arc, Mutex};

use proto::{Fragment, Op};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::circuit::Circuit;
use super::framing::write_frame;
use super::link::{Link, LinkShared};
use crate::error::{Error, Result};

/// Why a peer ended (the first reason wins).
#[derive(Debug, Clone)]
pub(crate) enum Ended {
    /// Cancelled here.
    Cancelled,
    /// Our side failed with this reason (already sent to the other side).
    Failed(String),
    /// The other side's service failed with this reason.
    RemoteFailed(String),
    /// The other side cancelled its peer.
    RemoteCancelled(String),
}

/// State shared by a peer and all its circuits.
#[derive(Debug)]
pub(crate) struct PeerState {
    /// Cancelled when the peer ends for any reason; a child of the link's token.
    pub token: CancellationToken,
    pub reason: Mutex<Option<Ended>>,
    pub link: Arc<LinkShared>,
}

impl PeerState {
    pub(crate) fn new(link: Arc<LinkShared>) -> Arc<Self> {
        Arc::new(PeerState {
            token: link.token.child_token(),
            reason: Mutex::new(None),
            link,
        })
    }

    /// Records why the peer ended (if nothing did before) and cancels its circuits.
    pub(crate) fn end(&self, why: Ended) {
        {
            let mut r = self.reason.lock().expect("poisoned");
            if r.is_none() {
                *r = Some(why);
            }
        }
        self.token.cancel();
    }

    /// The error every operation on an ended peer returns.
    pub(crate) fn error(&self) -> Error {
        let peer = self.link.name.clone();
        match self.reason.lock().expect("poisoned").clone() {
            Some(Ended::Cancelled) => Error::Cancelled,
            Some(Ended::Failed(reason)) => Error::Usage(format!("peer already failed: {reason}")),
            Some(Ended::RemoteFailed(reason)) => Error::Remote { peer, reason },
            Some(Ended::RemoteCancelled(reason)) => Error::Remote { peer, reason },
            None => match self.link.failure() {
                Some(reason) => Error::ConnectionLost { peer, reason },
                None => Error::Cancelled,
            },
        }
    }
}

/// One end of a service pair. Cheap to clone; all clones are the same peer.
#[derive(Clone)]
pub struct Peer {
    inner: Arc<PeerInner>,
}

struct PeerInner {
    link: Link,
    id: u32,
    remote_id: u32,
    service: String,
    args: Vec<String>,
    state: Arc<PeerState>,
    incoming: tokio::sync::Mutex<mpsc::UnboundedReceiver<Circuit>>,
    /// Circuits this end opened: its "done" says how many, so that the other
    /// end's `accept` waits for any still on their way.
    opened: std::sync::atomic::AtomicU64,
    /// Set by [`Peer::close`]: the other end counts no circuit opened later.
    closed: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("id", &self.inner.id)
            .field("remote_id", &self.inner.remote_id)
            .field("service", &self.inner.service)
            .finish()
    }
}

impl Peer {
    pub(crate) fn new(
        link: Link,
        id: u32,
        remote_id: u32,
        service: String,
        args: Vec<String>,
        state: Arc<PeerState>,
        incoming: mpsc::UnboundedReceiver<Circuit>,
    ) -> Peer {
        Peer {
            inner: Arc::new(PeerInner {
                link,
                id,
                remote_id,
                service,
                args,
                state,
                incoming: tokio::sync::Mutex::new(incoming),
                opened: std::sync::atomic::AtomicU64::new(0),
                closed: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// Our id for this peer on its link.
    pub fn id(&self) -> u32 {
        self.inner.id
    }

    /// The other side's id for its end of the pair.
    pub fn remote_id(&self) -> u32 {
        self.inner.remote_id
    }

    /// The service this pair runs.
    pub fn service(&self) -> &str {
        &self.inner.service
    }

    /// The arguments the starter passed.
    pub fn args(&self) -> &[String] {
        &self.inner.args
    }

    /// The connection this peer lives on (to start more services, for example).
    pub fn link(&self) -> &Link {
        &self.inner.link
    }

    /// True once the peer ended (cancelled, failed, or its link lost).
    pub fn is_ended(&self) -> bool {
        self.inner.state.token.is_cancelled()
    }

    /// Opens a new circuit to the other end of this pair; not once this end
    /// is closed ([`Peer::close`]: [`Error::Usage`]). The other end's
    /// [`Peer::accept`] takes circuits about in the order they were opened,
    /// not strictly: each is handed over once its first bytes arrive.
    pub async fn open(&self) -> Result<Circuit> {
        if self.inner.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(Error::Usage(format!(
                "peer {} is closed: it opens no more circuits",
                self.inner.id
            )));
        }
        let state = &self.inner.state;
        let link = &self.inner.link;
        let mut stream = tokio::select! {
            biased;
            _ = state.token.cancelled() => return Err(state.error()),
            s = link.mux().open() => s.map_err(|e| Error::ConnectionLost {
                peer: link.peer_name().into(),
                reason: link.failure().unwrap_or_else(|| format!("cannot open a stream: {e}")),
            })?,
        };
        let id = link.next_circuit_id();
        self.inner
            .opened
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let open = Fragment {
            circuit: id,
            serial: 0,
            part: u64::from(self.inner.remote_id),
            ..Fragment::new(Op::OPEN)
        };
        let mut buf = Vec::with_capacity(64);
        let sent = tokio::select! {
            biased;
            _ = state.token.cancelled() => return Err(state.error()),
            r = write_frame(&mut stream.write, &open, proto::Compression::NONE, &mut buf) => r,
        };
        sent.map_err(|e| Error::ConnectionLost {
            peer: link.peer_name().into(),
            reason: link
                .failure()
                .unwrap_or_else(|| format!("cannot open circuit {id}: {e}")),
        })?;
        Ok(Circuit::new(
            id,
            link.clone(),
            state.clone(),
            stream.read,
            stream.write,
            1,
            0,
        ))
    }

    /// The next circuit the other end opened to us. `Ok(None)` once the other end
    /// said it is done and every circuit it opened has been taken.
    pub async fn accept(&self) -> Result<Option<Circuit>> {
        let state = &self.inner.state;
        let mut incoming = self.inner.incoming.lock().await;
        tokio::select! {
            biased;
            _ = state.token.cancelled() => Err(state.error()),
            c = incoming.recv() => Ok(c),
        }
    }

    /// Tells the other end we are done: its `accept` yields `None` once it has
    /// taken every circuit we opened. Open circuits stay usable until they are
    /// finished.
    pub fn close(&self) {
        self.inner
            .closed
            .store(true, std::sync::atomic::Ordering::Release);
        let opened = self.inner.opened.load(std::sync::atomic::Ordering::Relaxed);
        self.inner
            .link
            .peer_done(self.inner.id, self.inner.remote_id, None, opened);
    }

    /// Ends this peer now: its circuits on both sides fail.
    pub fn cancel(&self) {
        self.inner.state.end(Ended::Cancelled);
        self.inner.link.peer_done(
            self.inner.id,
            self.inner.remote_id,
            Some("the other side cancelled the peer"),
            0,
        );
    }

    /// Reports a fatal error to the other end (its circuits and `accept` fail with
    /// `reason`) and ends this peer.
    pub fn fail(&self, reason: &str) {
        self.inner.state.end(Ended::Failed(reason.to_string()));
        self.inner
            .link
            .peer_failed(self.inner.id, self.inner.remote_id, reason);
    }
}
