//! Nodes: a [`Client`] that connects out and a [`Server`] that accepts, both
//! offering the same kind of [`Services`] and producing the same kind of [`Link`].

use std::future::Future;
use std::net::SocketAddr;
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
}

impl Client {
    /// A client offering `services` to the servers it connects to.
    pub fn new(security: ClientSecurity, services: Services) -> Self {
        Client {
            services: Arc::new(services),
            security,
            transport: Transport::Tcp,
            opts: LinkOptions::default(),
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

    /// Connects to `addr` ("host:port"), runs the handshake, and returns the link.
    pub async fn connect(&self, addr: &str) -> Result<Link> {
        let sock = resolve(addr).await?;
        let name = format!("server {addr}");
        let est = match self.transport {
            Transport::Tcp => tcp::connect(sock, &name, &self.security, &self.opts).await?,
            Transport::Quic => quic::connect(sock, &name, &self.security, &self.opts).await?,
        };
        Link::establish(est, Side::Client, self.services.clone(), &self.opts, name).await
    }
}

async fn resolve(addr: &str) -> Result<SocketAddr> {
    let mut addrs = tokio::net::lookup_host(addr)
        .await
        .map_err(|source| Error::Connect {
            addr: addr.into(),
            source,
        })?;
    addrs.next().ok_or_else(|| Error::Connect {
        addr: addr.into(),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "no address found"),
    })
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
            max_connections: 256,
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
    /// with "server shutting down" after the links' grace period, and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let limit = Arc::new(Semaphore::new(self.max_connections));
        let mut tasks = JoinSet::new();
        let (links_tx, mut links_rx) = tokio::sync::mpsc::unbounded_channel::<Link>();
        let mut links: Vec<Link> = Vec::new();
        tokio::pin!(shutdown);
        loop {
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
                    let ctx = self.conn_ctx(links_tx.clone());
                    tasks.spawn(async move {
                        let name = format!("client {addr}");
                        let est = tcp::accept(stream, &name, &ctx.security, &ctx.opts).await;
                        ctx.finish(est, name, permit).await;
                    });
                }
                Some(incoming) = accept_quic(self.quic.as_ref()) => {
                    let ctx = self.conn_ctx(links_tx.clone());
                    tasks.spawn(async move {
                        let name = format!("client {}", incoming.remote_address());
                        let est = quic::accept(incoming, &name, &ctx.security, &ctx.opts).await;
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
        if let Some(fp) = &est.fingerprint {
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
