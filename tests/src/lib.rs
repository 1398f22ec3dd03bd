//! Shared support for jsync's integration tests: freshly made keys in temp dirs, a
//! started server on port 0, clients for each transport, and a TCP proxy that a
//! test can cut to simulate a dropped connection.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jsync::tls::TlsOptions;
use jsync::{Client, ClientSecurity, LinkOptions, Server, ServerSecurity, Services, Transport};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{oneshot, Notify};

pub mod bins;
pub mod meta;
pub mod randtree;
pub mod tree;

/// Both secure transports, for tests that must pass over each.
pub const TRANSPORTS: [Transport; 2] = [Transport::Tcp, Transport::Quic];

/// A config dir with a CA, server and client keys, as `jsrv init` makes them.
#[derive(Debug)]
pub struct Keys {
    pub dir: tempfile::TempDir,
}

impl Keys {
    pub fn new() -> Keys {
        let dir = tempfile::tempdir().expect("tempdir");
        jsync::identity::init(dir.path()).expect("init keys");
        Keys { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn client(&self) -> ClientSecurity {
        ClientSecurity::from_config_dir(self.path(), &TlsOptions::default())
            .expect("client security")
    }

    pub fn server(&self) -> ServerSecurity {
        ServerSecurity::from_config_dir(self.path(), &TlsOptions::default())
            .expect("server security")
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path().join(name)
    }
}

impl Default for Keys {
    fn default() -> Self {
        Self::new()
    }
}

/// A running in-process server; stops when dropped.
#[derive(Debug)]
pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    pub fn start(security: ServerSecurity, services: Services) -> TestServer {
        Self::start_with(security, services, fast_options())
    }

    pub fn start_with(
        security: ServerSecurity,
        services: Services,
        opts: LinkOptions,
    ) -> TestServer {
        let server = Server::bind_with("127.0.0.1:0".parse().unwrap(), security, services, opts)
            .expect("bind server");
        let addr = server.local_addr();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(async move {
            server
                .run(async {
                    let _ = rx.await;
                })
                .await
                .expect("server run");
        });
        TestServer {
            addr,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub fn addr_string(&self) -> String {
        self.addr.to_string()
    }

    /// Stops accepting and waits for the server to drain.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Short liveness timers so that tests about dead peers finish quickly.
pub fn fast_options() -> LinkOptions {
    LinkOptions {
        keepalive: Duration::from_millis(500),
        idle_timeout: Duration::from_secs(3),
        close_grace: Duration::from_millis(500),
        ..LinkOptions::default()
    }
}

/// A test server with `services`, and a client's link to it over `t`
/// (keep the server: dropping it stops it).
pub async fn serve(keys: &Keys, services: Services, t: Transport) -> (TestServer, jsync::Link) {
    let srv = TestServer::start(keys.server(), services);
    let link = client(keys.client(), Services::new(), t)
        .connect(&srv.addr_string())
        .await
        .unwrap();
    (srv, link)
}

pub fn client(security: ClientSecurity, services: Services, transport: Transport) -> Client {
    Client::new(security, services)
        .transport(transport)
        .options(fast_options())
}

/// A TCP or UDP relay between a client and a server that a test can cut at once
/// (both directions stop; TCP sockets are dropped, UDP datagrams are discarded).
#[derive(Debug)]
pub struct CutProxy {
    pub addr: SocketAddr,
    cut: Arc<Notify>,
}

impl CutProxy {
    /// A TCP relay whose cut resets both connections, as a dead middlebox would.
    pub async fn tcp(target: SocketAddr) -> CutProxy {
        Self::tcp_relay(target, true).await
    }

    /// A TCP relay whose cut stops forwarding but keeps both connections open, as
    /// a dead peer behind a silent network does: only keepalives can notice.
    pub async fn tcp_blackhole(target: SocketAddr) -> CutProxy {
        Self::tcp_relay(target, false).await
    }

    async fn tcp_relay(target: SocketAddr, reset: bool) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(Notify::new());
        let c = cut.clone();
        tokio::spawn(async move {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            let Ok(mut outbound) = TcpStream::connect(target).await else {
                return;
            };
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                _ = c.notified() => {
                    if reset {
                        // Zero linger sends RST (and does not block).
                        #[allow(deprecated)]
                        {
                            let _ = inbound.set_linger(Some(Duration::ZERO));
                            let _ = outbound.set_linger(Some(Duration::ZERO));
                        }
                    } else {
                        // Hold both sockets open and forward nothing.
                        tokio::time::sleep(Duration::from_secs(120)).await;
                    }
                }
            }
            let _ = inbound.shutdown().await;
        });
        CutProxy { addr, cut }
    }

    pub async fn udp(target: SocketAddr) -> CutProxy {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        back.connect(target).await.unwrap();
        let addr = front.local_addr().unwrap();
        let cut = Arc::new(Notify::new());
        let c = cut.clone();
        tokio::spawn(async move {
            let mut client: Option<SocketAddr> = None;
            let mut a = vec![0u8; 65536];
            let mut b = vec![0u8; 65536];
            loop {
                tokio::select! {
                    _ = c.notified() => return, // drop both sockets: silence, like a partition
                    r = front.recv_from(&mut a) => {
                        let Ok((n, from)) = r else { return };
                        client = Some(from);
                        let _ = back.send(&a[..n]).await;
                    }
                    r = back.recv(&mut b) => {
                        let Ok(n) = r else { return };
                        if let Some(to) = client {
                            let _ = front.send_to(&b[..n], to).await;
                        }
                    }
                }
            }
        });
        CutProxy { addr, cut }
    }

    pub fn cut(&self) {
        self.cut.notify_one();
    }
}

/// A TCP relay for tests that need a link to misbehave at an exact point: it
/// counts the bytes the client sends, and can pause (stop forwarding in both
/// directions while keeping the connections open) or cut (reset every
/// connection) on demand or once a given number of client bytes has passed,
/// so that "while file X is in flight" does not depend on timing.
#[derive(Debug)]
pub struct Relay {
    pub addr: SocketAddr,
    state: Arc<RelayState>,
}

#[derive(Debug)]
struct RelayState {
    /// Client-to-server bytes forwarded so far, over all connections.
    forwarded: std::sync::atomic::AtomicU64,
    /// Pause once `forwarded` reaches this (0: never).
    pause_after: std::sync::atomic::AtomicU64,
    /// Cut once `forwarded` reaches this (0: never).
    cut_after: std::sync::atomic::AtomicU64,
    paused: tokio::sync::watch::Sender<bool>,
    cut: tokio::sync::watch::Sender<bool>,
}

impl Relay {
    /// A relay to `target`, accepting any number of connections.
    pub async fn tcp(target: SocketAddr) -> Relay {
        use std::sync::atomic::AtomicU64;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(RelayState {
            forwarded: AtomicU64::new(0),
            pause_after: AtomicU64::new(0),
            cut_after: AtomicU64::new(0),
            paused: tokio::sync::watch::channel(false).0,
            cut: tokio::sync::watch::channel(false).0,
        });
        let st = state.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let Ok(outbound) = TcpStream::connect(target).await else {
                    continue;
                };
                let (ir, iw) = inbound.into_split();
                let (or, ow) = outbound.into_split();
                tokio::spawn(relay_pump(ir, ow, st.clone(), true));
                tokio::spawn(relay_pump(or, iw, st.clone(), false));
            }
        });
        Relay { addr, state }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Client-to-server bytes forwarded so far.
    pub fn forwarded(&self) -> u64 {
        self.state
            .forwarded
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Stops forwarding (both directions) once `bytes` client bytes have passed.
    pub fn pause_after(&self, bytes: u64) {
        self.state
            .pause_after
            .store(bytes, std::sync::atomic::Ordering::SeqCst);
    }

    /// Resets every connection once `bytes` client bytes have passed.
    pub fn cut_after(&self, bytes: u64) {
        self.state
            .cut_after
            .store(bytes, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn pause(&self) {
        self.state.paused.send_replace(true);
    }

    pub fn resume(&self) {
        self.state
            .pause_after
            .store(0, std::sync::atomic::Ordering::SeqCst);
        self.state.paused.send_replace(false);
    }

    pub fn is_paused(&self) -> bool {
        *self.state.paused.borrow()
    }

    pub fn cut(&self) {
        self.state.cut.send_replace(true);
    }

    pub fn is_cut(&self) -> bool {
        *self.state.cut.borrow()
    }
}

/// Waits until a watched flag has the value `want` (the guard `wait_for`
/// returns is not `Send`, so it is dropped here).
async fn until(rx: &mut tokio::sync::watch::Receiver<bool>, want: bool) {
    let _ = rx.wait_for(|v| *v == want).await;
}

/// Copies one direction of a relayed connection, honouring pause and cut.
async fn relay_pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    st: Arc<RelayState>,
    upstream: bool,
) {
    use std::sync::atomic::Ordering::SeqCst;
    use tokio::io::AsyncReadExt;
    let mut cut = st.cut.subscribe();
    let mut paused = st.paused.subscribe();
    let reset = |from: &tokio::net::tcp::OwnedReadHalf, to: &tokio::net::tcp::OwnedWriteHalf| {
        // Zero linger: closing sends RST, as a dead middlebox would.
        #[allow(deprecated)]
        {
            let _ = from.as_ref().set_linger(Some(Duration::ZERO));
            let _ = to.as_ref().set_linger(Some(Duration::ZERO));
        }
    };
    let mut buf = vec![0u8; 16 << 10];
    loop {
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => {
                    let _ = to.shutdown().await;
                    return;
                }
                Ok(n) => n,
            },
            _ = until(&mut cut, true) => {
                reset(&from, &to);
                return;
            }
        };
        tokio::select! {
            _ = until(&mut paused, false) => {}
            _ = until(&mut cut, true) => {
                reset(&from, &to);
                return;
            }
        }
        tokio::select! {
            r = to.write_all(&buf[..n]) => if r.is_err() {
                return;
            },
            _ = until(&mut cut, true) => {
                reset(&from, &to);
                return;
            }
        }
        if upstream {
            let total = st.forwarded.fetch_add(n as u64, SeqCst) + n as u64;
            let pause_at = st.pause_after.load(SeqCst);
            if pause_at > 0 && total >= pause_at {
                st.pause_after.store(0, SeqCst);
                st.paused.send_replace(true);
            }
            let cut_at = st.cut_after.load(SeqCst);
            if cut_at > 0 && total >= cut_at {
                st.cut.send_replace(true);
            }
        }
    }
}

/// Deterministic pseudo-random bytes (xorshift), so failures replay.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}
