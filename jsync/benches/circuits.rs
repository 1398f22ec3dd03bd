//! Loopback throughput of the peer/circuit runtime next to the raw transports it
//! runs on, measured in one run so that the ratio "circuit / raw stream" is
//! meaningful on a shared or noisy machine.
//!
//! For each transport (TLS 1.3 over TCP, QUIC) and cipher choice (the default
//! suites, AES-GCM first; CHACHA20-POLY1305 only) it moves N bytes one way and
//! times until the receiver has counted them all and replied:
//! - **raw stream**: one tokio-rustls stream, or one quinn stream, written in
//!   256 KiB chunks, with the same TLS configs and QUIC windows jsync uses;
//! - **1 circuit**: a [`jsync::Client`] linked to a [`jsync::Server`] sends N bytes
//!   as [`Op::DATA`] fragments of 256 KiB on one circuit; the service drains them
//!   and replies with the count;
//! - **16 circuits**: the same on 16 circuits at once, N bytes in total.
//!
//! Each fragment's payload is a fresh `Vec` (the API takes it by value), as a
//! reader filling one buffer per fragment would produce; the raw cases write from
//! one buffer. Handshakes are outside the timing (a link is set up once per case,
//! its circuits are opened inside it).
//!
//! Run: `cargo bench -p jsync --bench circuits [-- FILTER]`. Knobs:
//! `JSYNC_BENCH_MIB` (MiB per run, default 256) and `JSYNC_BENCH_RUNS` (timed runs
//! per case, default 5; the table shows the median). Without `--bench` (as under
//! `cargo test --all-targets`) it runs every case once on 8 MiB, as a smoke test.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use jsync::identity::{Identity, Role};
use jsync::tls::{self, TlsOptions};
use jsync::{
    Circuit, Client, ClientSecurity, LinkOptions, Server, ServerSecurity, Services, Transport,
};
use proto::{Fragment, Op};
use quinn::{Endpoint, EndpointConfig, TransportConfig, VarInt};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// Bytes per write on the raw streams and payload bytes per fragment.
const CHUNK: usize = 256 << 10;
/// As in `jsync/src/net/quic.rs`, so the raw quinn stream gets the same windows.
const QUIC_STREAM_WINDOW: u32 = 8 << 20;
const QUIC_CONN_WINDOW: u32 = 64 << 20;
/// As in `jsync/src/net/socket.rs`: smaller UDP buffers lose packets on loopback.
const UDP_BUFFER: usize = 4 << 20;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Raw,
    Circuits(usize),
}

#[derive(Clone, Copy, Debug)]
struct Case {
    transport: Transport,
    chacha: bool,
    kind: Kind,
}

impl Case {
    fn name(&self) -> String {
        let t = match self.transport {
            Transport::Tcp => "tls-tcp",
            Transport::Quic => "quic",
        };
        let c = if self.chacha { "chacha" } else { "aes" };
        let k = match self.kind {
            Kind::Raw => "raw".to_string(),
            Kind::Circuits(1) => "1-circuit".to_string(),
            Kind::Circuits(n) => format!("{n}-circuits"),
        };
        format!("{t}/{c}/{k}")
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bench = args.iter().any(|a| a == "--bench");
    let filter = args.iter().find(|a| !a.starts_with('-')).cloned();
    let env = |name: &str, default: usize| -> usize {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (mib, runs) = if bench {
        (
            env("JSYNC_BENCH_MIB", 256),
            env("JSYNC_BENCH_RUNS", 5).max(1),
        )
    } else {
        (8, 1)
    };
    let total = mib << 20;

    let keys = tempfile::tempdir()?;
    jsync::identity::init(keys.path())?;

    let mut cases = Vec::new();
    for transport in [Transport::Tcp, Transport::Quic] {
        for chacha in [false, true] {
            for kind in [Kind::Raw, Kind::Circuits(1), Kind::Circuits(16)] {
                cases.push(Case {
                    transport,
                    chacha,
                    kind,
                });
            }
        }
    }
    cases.retain(|c| {
        filter
            .as_ref()
            .is_none_or(|f| c.name().contains(f.as_str()))
    });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    println!(
        "jsync circuits bench: {mib} MiB per run, median of {runs} run(s), {} worker threads, GB = 1e9 bytes",
        2
    );
    println!(
        "{:<28} {:>8} {:>17} {:>8}",
        "case", "GB/s", "min..max", "vs raw"
    );
    let mut raw_rate: Option<f64> = None;
    for case in cases {
        let mut times = rt.block_on(run_case(keys.path(), case, total, runs))?;
        times.sort();
        let rate = |d: Duration| total as f64 / d.as_secs_f64() / 1e9;
        let median = rate(times[times.len() / 2]);
        let (lo, hi) = (rate(times[times.len() - 1]), rate(times[0]));
        if case.kind == Kind::Raw {
            raw_rate = Some(median);
        }
        let ratio = match (case.kind, raw_rate) {
            (Kind::Circuits(_), Some(raw)) => format!("{:.0}%", 100.0 * median / raw),
            _ => "-".into(),
        };
        println!(
            "{:<28} {:>8.3} {:>8.3}..{:<8.3} {:>8}",
            case.name(),
            median,
            lo,
            hi,
            ratio
        );
    }
    Ok(())
}

/// Sets up `case`, then times `runs` transfers of `total` bytes (after one
/// untimed warm-up run).
async fn run_case(
    keys: &Path,
    case: Case,
    total: usize,
    runs: usize,
) -> anyhow::Result<Vec<Duration>> {
    let opts = TlsOptions {
        chacha_only: case.chacha,
    };
    let data: Arc<[u8]> = pattern(CHUNK).into();
    let mut times = Vec::with_capacity(runs);
    match case.kind {
        Kind::Raw => {
            for i in 0..=runs {
                let t = match case.transport {
                    Transport::Tcp => raw_tls(keys, &opts, &data, total).await?,
                    Transport::Quic => raw_quic(keys, &opts, &data, total).await?,
                };
                if i > 0 {
                    times.push(t);
                }
            }
        }
        Kind::Circuits(n) => {
            let server = Server::bind_with(
                "127.0.0.1:0".parse()?,
                ServerSecurity::from_config_dir(keys, &opts)?,
                sink_service(),
                LinkOptions::default(),
            )?;
            let addr = server.local_addr();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let served = tokio::spawn(server.run(async {
                let _ = stopped.await;
            }));
            let client = Client::new(
                ClientSecurity::from_config_dir(keys, &opts)?,
                Services::new(),
            )
            .transport(case.transport);
            let link = client.connect(&addr.to_string()).await?;
            let peer = link.start("sink", &[]).await?;
            for i in 0..=runs {
                let t = send_on_circuits(&peer, &data, total, n).await?;
                if i > 0 {
                    times.push(t);
                }
            }
            peer.close();
            link.close("bench done").await;
            let _ = stop.send(());
            served.await??;
        }
    }
    Ok(times)
}

/// Incompressible bytes (xorshift), so no layer can shortcut them.
fn pattern(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes `total` bytes from `data`, chunk by chunk.
async fn write_n<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    data: &[u8],
    total: usize,
) -> std::io::Result<()> {
    let mut left = total;
    while left > 0 {
        let n = left.min(data.len());
        w.write_all(&data[..n]).await?;
        left -= n;
    }
    w.flush().await
}

/// Reads until `total` bytes arrived.
async fn read_n<R: tokio::io::AsyncRead + Unpin>(r: &mut R, total: usize) -> anyhow::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0;
    while got < total {
        let n = r.read(&mut buf).await?;
        ensure!(n > 0, "stream ended after {got} of {total} bytes");
        got += n;
    }
    Ok(())
}

async fn raw_tls(
    keys: &Path,
    opts: &TlsOptions,
    data: &[u8],
    total: usize,
) -> anyhow::Result<Duration> {
    let server_cfg = tls::server_config(&Identity::load(keys, Role::Server)?, None, opts)?;
    let client_cfg = tls::client_config(&Identity::load(keys, Role::Client)?, None, opts)?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        tcp.set_nodelay(true)?;
        let mut s = tokio_rustls::TlsAcceptor::from(server_cfg)
            .accept(tcp)
            .await?;
        // A first byte tells the client the handshake is done on both sides.
        s.write_all(&[0]).await?;
        s.flush().await?;
        read_n(&mut s, total).await?;
        s.write_all(&[1]).await?;
        s.flush().await?;
        anyhow::Ok(())
    });
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let mut c = tokio_rustls::TlsConnector::from(client_cfg)
        .connect(ServerName::try_from(tls::SERVER_NAME)?, tcp)
        .await?;
    let mut byte = [0u8; 1];
    c.read_exact(&mut byte).await?;
    let start = Instant::now();
    write_n(&mut c, data, total).await?;
    c.read_exact(&mut byte).await?;
    let elapsed = start.elapsed();
    server.await??;
    Ok(elapsed)
}

/// The UDP payload jsync uses over loopback (net/quic.rs: packets as large as
/// the route allows, up to 6,500 bytes), so the raw stream is a fair baseline.
const QUIC_PAYLOAD: u16 = 6_500;

fn quic_endpoint_config() -> EndpointConfig {
    let mut c = EndpointConfig::default();
    c.max_udp_payload_size(QUIC_PAYLOAD).expect("valid size");
    c
}

fn quic_transport() -> Arc<TransportConfig> {
    let mut t = TransportConfig::default();
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(QUIC_PAYLOAD);
    t.initial_mtu(QUIC_PAYLOAD).mtu_discovery_config(Some(mtu));
    t.stream_receive_window(VarInt::from_u32(QUIC_STREAM_WINDOW))
        .receive_window(VarInt::from_u32(QUIC_CONN_WINDOW))
        .send_window(u64::from(QUIC_CONN_WINDOW));
    Arc::new(t)
}

fn udp_socket() -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_recv_buffer_size(UDP_BUFFER).ok();
    s.set_send_buffer_size(UDP_BUFFER).ok();
    s.set_nonblocking(true)?;
    s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
    Ok(s.into())
}

async fn raw_quic(
    keys: &Path,
    opts: &TlsOptions,
    data: &[u8],
    total: usize,
) -> anyhow::Result<Duration> {
    let runtime = quinn::default_runtime().context("no runtime")?;
    let mut server_cfg = quinn::ServerConfig::with_crypto(tls::quic_server_config(
        &Identity::load(keys, Role::Server)?,
        None,
        opts,
    )?);
    server_cfg.transport_config(quic_transport());
    let server_ep = Endpoint::new(
        quic_endpoint_config(),
        Some(server_cfg),
        udp_socket()?,
        runtime.clone(),
    )?;
    let addr = server_ep.local_addr()?;
    let mut client_cfg = quinn::ClientConfig::new(tls::quic_client_config(
        &Identity::load(keys, Role::Client)?,
        None,
        opts,
    )?);
    client_cfg.transport_config(quic_transport());
    let client_ep = Endpoint::new(quic_endpoint_config(), None, udp_socket()?, runtime)?;

    let ep = server_ep.clone();
    let server = tokio::spawn(async move {
        let conn = ep.accept().await.context("no connection")?.await?;
        let (mut send, mut recv) = conn.accept_bi().await?;
        let mut byte = [0u8; 1];
        recv.read_exact(&mut byte).await?;
        send.write_all(&[0]).await?;
        read_n(&mut recv, total).await?;
        send.write_all(&[1]).await?;
        send.finish()?;
        // Keep the connection until the client has read the reply and closed.
        conn.closed().await;
        anyhow::Ok(())
    });
    let conn = client_ep
        .connect_with(client_cfg, addr, tls::SERVER_NAME)?
        .await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    // The stream reaches the server with its first byte; its echo means both sides
    // are ready.
    send.write_all(&[0]).await?;
    let mut byte = [0u8; 1];
    recv.read_exact(&mut byte).await?;
    let start = Instant::now();
    write_n(&mut send, data, total).await?;
    recv.read_exact(&mut byte).await?;
    let elapsed = start.elapsed();
    conn.close(VarInt::from_u32(0), b"done");
    server.await??;
    client_ep.wait_idle().await;
    server_ep.close(VarInt::from_u32(0), b"done");
    Ok(elapsed)
}

/// A service that drains every circuit opened to it and replies with the number of
/// payload bytes it got (in `part`).
fn sink_service() -> Services {
    Services::new().with("sink", |peer| async move {
        let mut circuits = JoinSet::new();
        while let Some(c) = peer.accept().await? {
            circuits.spawn(sink(c));
        }
        while let Some(r) = circuits.join_next().await {
            r??;
        }
        Ok(())
    })
}

async fn sink(mut c: Circuit) -> anyhow::Result<()> {
    let mut got = 0u64;
    while let Some(f) = c.recv().await? {
        got += f.payload.len() as u64;
    }
    c.send(Fragment::new(Op::DATA).with_part(got)).await?;
    c.finish().await?;
    Ok(())
}

/// Sends `total` bytes split over `n` circuits of `peer` at once; returns when every
/// circuit got its reply.
async fn send_on_circuits(
    peer: &jsync::Peer,
    data: &Arc<[u8]>,
    total: usize,
    n: usize,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for i in 0..n {
        let share = total / n + usize::from(i < total % n);
        let peer = peer.clone();
        let data = data.clone();
        tasks.spawn(async move {
            let mut c = peer.open().await?;
            let mut left = share;
            while left > 0 {
                let k = left.min(data.len());
                c.send(Fragment::new(Op::DATA).with_payload(data[..k].to_vec()))
                    .await?;
                left -= k;
            }
            c.finish().await?;
            let reply = c.recv().await?.context("no reply")?;
            ensure!(
                reply.part == share as u64,
                "sink counted {} of {share} bytes",
                reply.part
            );
            if c.recv().await?.is_some() {
                bail!("more than one reply");
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(start.elapsed())
}
