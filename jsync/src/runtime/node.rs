//! Nodes: a [`Client`] that connects out and a [`Server`] that accepts, both
//! offering the same kind of [`Services`] and producing the same kind of [`Link`].

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::{Link, Services};
use crate::error::{Error, Result};
use crate::net::handshake::Side;
use crate::net::{quic, socket, tcp, ClientSecurity, LinkOptions, ServerSecurity, Transport};

/// Connects to servers.
#[derive(Debug, Clone)]
pub struct Client {
    services: Arc<Services>,
    security: ClientSecurity,
    transport: Transport,
    opts: LinkOptions,
    family: Option<AddrFamily>,
    /// The address connections go out from (`--address`).
    local: Option<IpAddr>,
}

/// One kind of IP address, to connect over only (`-4`, `-6`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrFamily {
    V4,
    V6,
}

impl Client {
    /// A client offering `services` to the servers it connects to.
    pub fn new(security: ClientSecurity, services: Services) -> Self {
        Client {
            services: Arc::new(services),
            security,
            transport: Transport::Tcp,
            opts: LinkOptions::default(),
            family: None,
            local: None,
        }
    }

    /// TCP (TLS or plaintext) or QUIC.
    pub fn transport(mut self, t: Transport) -> Self {
        self.transport = t;
        self
    }

    /// Timeouts and keepalive.
    pub fn options(mut self, opts: LinkOptions) -> Self {
        self.opts = opts;
        self
    }

    /// Connects over addresses of `family` only (any, by default).
    pub fn family(mut self, family: Option<AddrFamily>) -> Self {
        self.family = family;
        self
    }

    /// A connection error, naming the local address it was tried from too
    /// when one was given (`--address`).
    fn naming_local(&self, e: Error) -> Error {
        match (self.local, e) {
            (Some(ip), Error::Connect { addr, source }) => Error::Connect {
                addr: format!("{addr} from {ip} (--address)"),
                source,
            },
            (_, e) => e,
        }
    }

    /// Connects from `local` (a local address: rsync's `--address`; by
    /// default the system picks one), and so over addresses of its family
    /// only.
    pub fn local_address(mut self, local: Option<IpAddr>) -> Self {
        self.local = local;
        self
    }

    /// Connects to `addr` ("host:port"), runs the handshake, and returns the
    /// link. A name with several addresses is tried at each in turn, as ssh
    /// does, until one answers (`localhost` may be `::1` first while the
    /// server listens on IPv4 only); a server that answers and then fails
    /// (its key, the handshake) is the answer.
    pub async fn connect(&self, addr: &str) -> Result<Link> {
        let family = match self.local {
            Some(IpAddr::V4(_)) => Some(AddrFamily::V4),
            Some(IpAddr::V6(_)) => Some(AddrFamily::V6),
            None => self.family,
        };
        let addrs = resolve(addr, family)
            .await
            .map_err(|e| self.naming_local(e))?;
        self.connect_any(addr, &addrs).await
    }

    /// [`Client::connect`] to the addresses `addrs` of `addr`, in order.
    pub(crate) async fn connect_any(&self, addr: &str, addrs: &[SocketAddr]) -> Result<Link> {
        let name = format!("server {addr}");
        let mut failed = None;
        for &sock in addrs {
            let est = match self.transport {
                Transport::Tcp => {
                    tcp::connect(sock, self.local, &name, &self.security, &self.opts).await
                }
                Transport::Quic => {
                    quic::connect(sock, self.local, &name, &self.security, &self.opts).await
                }
            };
            match est {
                Ok(est) => {
                    let services = self.services.clone();
                    return Link::establish(est, Side::Client, services, &self.opts, name).await;
                }
                Err(e) if unanswered(&e) => {
                    tracing::debug!(address = %sock, error = %e, "no answer; trying the next address");
                    failed = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        // Each address refused or silent: name them all.
        let tried = || {
            let each: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
            format!("{addr} (at {})", each.join(", "))
        };
        Err(match failed {
            Some(Error::Connect { source, .. }) if addrs.len() > 1 => {
                self.naming_local(Error::Connect {
                    addr: tried(),
                    source,
                })
            }
            Some(Error::Timeout { what, secs, .. }) if addrs.len() > 1 => {
                self.naming_local(Error::Timeout {
                    what,
                    peer: format!("server {}", tried()),
                    secs,
                })
            }
            Some(e) => self.naming_local(e),
            None => no_address(addr, "no address found"),
        })
    }
}

/// Whether a connection failed before any server answered (refused,
/// unreachable, silent), so another address of the name may do better.
fn unanswered(e: &Error) -> bool {
    match e {
        Error::Connect { .. } => true,
        Error::Timeout { what, .. } => matches!(*what, "connect" | "QUIC handshake"),
        _ => false,
    }
}

/// The addresses of `addr` ("host:port"), of `family` only if given, in
/// the resolver's order.
async fn resolve(addr: &str, family: Option<AddrFamily>) -> Result<Vec<SocketAddr>> {
    let addrs = tokio::net::lookup_host(addr)
        .await
        .map_err(|source| Error::Connect {
            addr: addr.into(),
            source,
        })?;
    let wanted = |a: &SocketAddr| match family {
        Some(AddrFamily::V4) => a.is_ipv4(),
        Some(AddrFamily::V6) => a.is_ipv6(),
        None => true,
    };
    let out: Vec<SocketAddr> = addrs.filter(wanted).collect();
    if out.is_empty() {
        return Err(match family {
            Some(AddrFamily::V4) => no_address(addr, "no IPv4 address found"),
            Some(AddrFamily::V6) => no_address(addr, "no IPv6 address found"),
            None => no_address(addr, "no address found"),
        });
    }
    Ok(out)
}

fn no_address(addr: &str, what: &str) -> Error {
    Error::Connect {
        addr: addr.into(),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, what),
    }
}

/// Accepts connections on one port over TCP and (unless plaintext) QUIC.
pub struct Server {
    tcp: TcpListener,
    quic: Option<quinn::Endpoint>,
    local: SocketAddr,
    services: Arc<Services>,
    security: ServerSecurity,
    opts: LinkOptions,
    max_connections: usize,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local", &self.local)
            .finish()
    }
}

impl Server {
    /// Connections served at once unless [`Server::max_connections`] says
    /// otherwise.
    pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

    /// Binds TCP and UDP on `addr` (port 0: any free port, the same for both).
    pub fn bind(addr: SocketAddr, security: ServerSecurity, services: Services) -> Result<Server> {
        Self::bind_with(addr, security, services, LinkOptions::default())
    }

    /// [`Server::bind`] with explicit link options.
    pub fn bind_with(
        addr: SocketAddr,
        security: ServerSecurity,
        services: Services,
        opts: LinkOptions,
    ) -> Result<Server> {
        let listen_err = |source| Error::Listen {
            addr: addr.to_string(),
            source,
        };
        let (tcp, quic) = match security {
            ServerSecurity::Plaintext => (socket::bind_tcp(addr).map_err(listen_err)?, None),
            ServerSecurity::Tls { .. } => {
                let (tcp, udp) = socket::bind_pair(addr).map_err(listen_err)?;
                (
                    tcp,
                    quic::server_endpoint(udp, &security, &opts).map_err(listen_err)?,
                )
            }
        };
        let local = tcp.local_addr().map_err(listen_err)?;
        Ok(Server {
            tcp,
            quic,
            local,
            services: Arc::new(services),
            security,
            opts,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
        })
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// At most this many connections at once; more wait in the kernel's backlog.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Serves until `shutdown` resolves; then stops accepting, closes every link
    /// with "server shutting down" after the links' grace period, waits (up to
    /// 10 s) for their services to put away what they were doing, and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let limit = Arc::new(Semaphore::new(self.max_connections));
        let handshaking = Handshaking::default();
        // More than half the connection slots taken.
        let busy = || limit.available_permits() < self.max_connections / 2;
        let mut tasks = JoinSet::new();
        let (links_tx, mut links_rx) = tokio::sync::mpsc::unbounded_channel::<Link>();
        let mut links: Vec<Link> = Vec::new();
        tokio::pin!(shutdown);
        loop {
            // (Connections that ended are collected as new ones come.)
            while tasks.try_join_next().is_some() {}
            let permit = tokio::select! {
                _ = &mut shutdown => break,
                p = limit.clone().acquire_owned() => p.expect("semaphore open"),
            };
            tokio::select! {
                _ = &mut shutdown => break,
                Some(l) = links_rx.recv() => { links.retain(|l| !l.is_closed()); links.push(l); drop(permit); }
                r = self.tcp.accept() => {
                    let (stream, addr) = match r {
                        Ok(x) => x,
                        Err(e) => { tracing::warn!(error = %e, "accept failed"); continue; }
                    };
                    let Some(turn) = handshaking.enter(addr.ip(), busy()) else { continue };
                    let ctx = self.conn_ctx(links_tx.clone());
                    tasks.spawn(async move {
                        let name = format!("client {addr}");
                        // A client speaks first: one that does not, soon,
                        // gives its connection slot back.
                        let spoke = tokio::time::timeout(FIRST_WORDS, stream.readable()).await;
                        if !matches!(spoke, Ok(Ok(()))) {
                            tracing::debug!(peer = %name, "dropped: said nothing");
                            return;
                        }
                        let est = tcp::accept(stream, &name, &ctx.security, &ctx.opts).await;
                        drop(turn);
                        ctx.finish(est, name, permit).await;
                    });
                }
                Some(incoming) = accept_quic(self.quic.as_ref()) => {
                    // A busy server first has a new address prove it is
                    // real (QUIC's retry): spoofed packets cost no slot.
                    let busy = busy();
                    if busy && !incoming.remote_address_validated() && incoming.may_retry() {
                        let _ = incoming.retry();
                        continue;
                    }
                    let Some(turn) = handshaking.enter(incoming.remote_address().ip(), busy) else {
                        incoming.refuse();
                        continue;
                    };
                    let ctx = self.conn_ctx(links_tx.clone());
                    tasks.spawn(async move {
                        let name = format!("client {}", incoming.remote_address());
                        let est = quic::accept(incoming, &name, &ctx.security, &ctx.opts).await;
                        drop(turn);
                        ctx.finish(est, name, permit).await;
                    });
                }
            }
        }
        tracing::info!("shutting down: no new connections");
        drop(self.tcp);
        while let Ok(l) = links_rx.try_recv() {
            links.push(l);
        }
        let grace = self.opts.close_grace;
        let all_closed = async {
            for l in &links {
                l.closed().await;
            }
        };
        let _ = tokio::time::timeout(grace, all_closed).await;
        for l in &links {
            l.close("server shutting down").await;
        }
        // Each service puts away what it was doing (a receiver keeps what
        // arrived as partial files) before the process may end.
        let put_away = async {
            for l in &links {
                l.services_ended().await;
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), put_away).await;
        tasks.abort_all();
        if let Some(ep) = &self.quic {
            ep.close(quinn::VarInt::from_u32(0), b"server shutting down");
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), ep.wait_idle()).await;
        }
        Ok(())
    }

    fn conn_ctx(&self, links: tokio::sync::mpsc::UnboundedSender<Link>) -> ConnCtx {
        ConnCtx {
            services: self.services.clone(),
            security: self.security.clone(),
            opts: self.opts.clone(),
            links,
        }
    }
}

/// How long a new TCP connection may stay silent before it is dropped.
const FIRST_WORDS: std::time::Duration = std::time::Duration::from_secs(5);
/// Handshakes one address (an IPv6 /64) may have going at once while more
/// than half the connection slots are taken; more connections from it are
/// then dropped at once (as sshd's per-source limit): a client that opens
/// connections and never finishes them cannot take the last slots. (Not
/// below half: clients behind one proxy or NAT share an address.)
const HANDSHAKES_PER_ADDRESS: usize = 8;

/// Addresses with handshakes going: how many each, and whether a drop was
/// logged since it last had none (one warning per flood, not per socket).
#[derive(Default, Clone)]
struct Handshaking(Arc<std::sync::Mutex<std::collections::HashMap<IpAddr, (usize, bool)>>>);

impl Handshaking {
    /// A turn for `ip`, or None (logged) when the server is `busy` and
    /// that address has all it may have.
    fn enter(&self, ip: IpAddr, busy: bool) -> Option<HandshakeTurn> {
        // (An IPv4 client of a dual-stack listener comes as ::ffff:a.b.c.d,
        // its own address: a /64 of those would be every IPv4 client.)
        let ip = match ip.to_canonical() {
            IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & u128::MAX << 64).into()),
            v4 => v4,
        };
        let mut all = self.0.lock().expect("poisoned");
        let (n, warned) = all.entry(ip).or_default();
        if busy && *n >= HANDSHAKES_PER_ADDRESS {
            if !std::mem::replace(warned, true) {
                tracing::warn!(%ip, "busy: dropping connections beyond {HANDSHAKES_PER_ADDRESS} handshakes from there");
            }
            return None;
        }
        *n += 1;
        Some(HandshakeTurn(self.clone(), ip))
    }
}

/// One handshake's place in [`Handshaking`], given back when dropped.
struct HandshakeTurn(Handshaking, IpAddr);

impl Drop for HandshakeTurn {
    fn drop(&mut self) {
        let mut all = (self.0).0.lock().expect("poisoned");
        if let Some((n, _)) = all.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                all.remove(&self.1);
            }
        }
    }
}

struct ConnCtx {
    services: Arc<Services>,
    security: ServerSecurity,
    opts: LinkOptions,
    links: tokio::sync::mpsc::UnboundedSender<Link>,
}

impl ConnCtx {
    /// Runs a handshaken connection until it ends, holding its connection permit.
    async fn finish(
        self,
        est: Result<tcp::Established>,
        name: String,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) {
        let est = match est {
            Ok(est) => est,
            Err(e) => {
                tracing::warn!(peer = %name, error = %e, "connection refused");
                return;
            }
        };
        // A client with a name in its certificate (`jsrv sign --name`) is
        // named by it in every line of its connection.
        let name = match &est.cert.name {
            Some(cn) => format!("{name} ({cn})"),
            None => name,
        };
        if let Some(fp) = &est.cert.fingerprint {
            tracing::info!(peer = %name, key = %fp, "client connected");
        }
        match Link::establish(est, Side::Server, self.services, &self.opts, name.clone()).await {
            Ok(link) => {
                let _ = self.links.send(link.clone());
                let reason = link.closed().await;
                tracing::info!(peer = %name, %reason, "client disconnected");
            }
            Err(e) => tracing::warn!(peer = %name, error = %e, "link setup failed"),
        }
        drop(permit);
    }
}

async fn accept_quic(ep: Option<&quinn::Endpoint>) -> Option<quinn::Incoming> {
    match ep {
        Some(ep) => ep.accept().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One address (an IPv6 /64, an IPv4 address however it comes) has at most so many handshakes going once
    /// the server is busy, any number before; a turn given back counts no
    /// more.
    #[test]
    fn handshakes_per_address_are_limited_when_busy() {
        let h = Handshaking::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let turns: Vec<_> = (0..20).map(|_| h.enter(a, false).unwrap()).collect();
        assert!(h.enter(a, true).is_none(), "busy, 20 going");
        drop(turns);
        let mut turns: Vec<_> = (0..HANDSHAKES_PER_ADDRESS)
            .map(|_| h.enter(a, true).unwrap())
            .collect();
        assert!(h.enter(a, true).is_none());
        assert!(h.enter("192.0.2.2".parse().unwrap(), true).is_some());
        turns.pop();
        assert!(h.enter(a, true).is_some());
        let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
        let _same: Vec<_> = (0..HANDSHAKES_PER_ADDRESS)
            .map(|i| h.enter(v6(&format!("2001:db8::{i}")), true).unwrap())
            .collect();
        assert!(h.enter(v6("2001:db8::ffff:1"), true).is_none(), "one /64");
        assert!(h.enter(v6("2001:db8:0:1::1"), true).is_some());
        // IPv4 clients of a dual-stack listener each count as their own.
        let _mapped: Vec<_> = (0..HANDSHAKES_PER_ADDRESS)
            .map(|_| h.enter(v6("::ffff:198.51.100.1"), true).unwrap())
            .collect();
        assert!(h.enter(v6("::ffff:198.51.100.1"), true).is_none());
        assert!(h.enter(v6("::ffff:198.51.100.2"), true).is_some());
        assert!(
            h.enter("198.51.100.1".parse().unwrap(), true).is_none(),
            "the same"
        );
    }

    /// A name's addresses are tried in turn until one answers; one that
    /// answers and then fails is the answer, the rest untried.
    #[tokio::test]
    async fn a_name_s_addresses_are_tried_until_one_answers() {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let server = Server::bind(any, ServerSecurity::Plaintext, Services::new()).unwrap();
        let live = server.local_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        // Bound (so no one else takes the port) but not listening: refused.
        let closed = tokio::net::TcpSocket::new_v4().unwrap();
        closed.bind(any).unwrap();
        let dead = closed.local_addr().unwrap();
        // Something answers and hangs up at once.
        let rude = std::net::TcpListener::bind(any).unwrap();
        let rude_addr = rude.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in rude.incoming() {
                drop(s);
            }
        });
        let client = Client::new(ClientSecurity::Plaintext, Services::new());
        let link = client.connect_any("host", &[dead, live]).await.unwrap();
        link.close("done").await;
        let e = client.connect_any("host", &[dead]).await.unwrap_err();
        assert!(matches!(e, Error::Connect { .. }), "{e}");
        let also = tokio::net::TcpSocket::new_v4().unwrap();
        also.bind(any).unwrap();
        let dead2 = also.local_addr().unwrap();
        let e = client
            .connect_any("host", &[dead, dead2])
            .await
            .unwrap_err();
        let said = e.to_string();
        assert!(
            said.starts_with(&format!("cannot connect to host (at {dead}, {dead2}): ")),
            "{said}"
        );
        let e = client
            .connect_any("host", &[rude_addr, live])
            .await
            .unwrap_err();
        assert!(!matches!(e, Error::Connect { .. }), "{e}");
        let _ = stop.send(());
        task.await.unwrap().unwrap();
    }

    /// When every address of a name stays silent, the timeout names them
    /// all, as refusals do.
    #[tokio::test]
    async fn silent_addresses_are_each_named() {
        // A listener whose queue is full drops what else comes: a connect
        // to it waits until it times out.
        let full = || {
            let s =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            s.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
                .unwrap();
            s.listen(0).unwrap();
            let at = s.local_addr().unwrap().as_socket().unwrap();
            let queued: Vec<_> = (0..3)
                .filter_map(|_| {
                    std::net::TcpStream::connect_timeout(&at, std::time::Duration::from_millis(100))
                        .ok()
                })
                .collect();
            (s, queued, at)
        };
        let (_a, _qa, a) = full();
        let (_b, _qb, b) = full();
        let opts = LinkOptions {
            connect_timeout: std::time::Duration::from_millis(300),
            ..LinkOptions::default()
        };
        let client = Client::new(ClientSecurity::Plaintext, Services::new()).options(opts);
        let e = client.connect_any("host", &[a, b]).await.unwrap_err();
        let said = e.to_string();
        assert!(matches!(e, Error::Timeout { .. }), "{said}");
        assert!(
            said.contains(&format!("server host (at {a}, {b})")),
            "{said}"
        );
    }

    /// Only a failure before any server answered moves on to the next
    /// address: never one of TLS (an unknown key) or of the handshake.
    #[test]
    fn only_no_answer_tries_the_next_address() {
        let peer = || "server x".to_string();
        let timeout = |what| Error::Timeout {
            what,
            peer: peer(),
            secs: 1.0,
        };
        let refused = Error::Connect {
            addr: "x".into(),
            source: std::io::ErrorKind::ConnectionRefused.into(),
        };
        assert!(unanswered(&refused));
        assert!(unanswered(&timeout("connect")));
        assert!(unanswered(&timeout("QUIC handshake")));
        assert!(!unanswered(&timeout("handshake")));
        let tls = Error::Tls {
            peer: peer(),
            reason: "unknown server key".into(),
        };
        assert!(!unanswered(&tls));
    }

    #[tokio::test]
    async fn minus_4_and_minus_6_keep_one_kind_of_address() {
        let v4 = resolve("127.0.0.1:5", Some(AddrFamily::V4)).await.unwrap();
        assert_eq!(v4, ["127.0.0.1:5".parse().unwrap()]);
        let e = resolve("127.0.0.1:5", Some(AddrFamily::V6))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("no IPv6 address found"), "{e}");
        let e = resolve("[::1]:5", Some(AddrFamily::V4)).await.unwrap_err();
        assert!(e.to_string().contains("no IPv4 address found"), "{e}");
        assert_eq!(resolve("[::1]:5", None).await.unwrap().len(), 1);
    }
}
