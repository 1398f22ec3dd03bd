//! QUIC connections (quinn): one endpoint per server socket, streams as circuits.
//!
//! The hello runs on the first bidirectional stream the client opens, which then
//! stays open as the control circuit.

use std::net::SocketAddr;
use std::sync::Arc;

use quinn::{Endpoint, EndpointConfig, TransportConfig, VarInt};

use super::counting::WireCounter;
use super::handshake::{self, Side};
use super::mux::{self, quic_reason, RawStream};
use super::security::{peer_fingerprint, ClientSecurity, ServerSecurity};
use super::tcp::{timed, Established};
use super::LinkOptions;
use crate::error::{Error, Result};
use crate::identity::Role;

/// Per-stream and per-connection receive windows. A stalled circuit can hold at most
/// its stream window, so the connection window must be several times larger.
/// 32 MiB keeps a 100 ms path at about 300 MB/s; the windows bound what each
/// side buffers (8/64 MiB had jsrv peak at 144 MB on the kernel tree, 4/32 at 80).
const STREAM_WINDOW: u32 = 4 << 20;
const CONN_WINDOW: u32 = 32 << 20;

fn transport(opts: &LinkOptions) -> Arc<TransportConfig> {
    let mut t = TransportConfig::default();
    t.max_concurrent_bidi_streams(VarInt::from_u32(16_384))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .stream_receive_window(VarInt::from_u32(STREAM_WINDOW))
        .receive_window(VarInt::from_u32(CONN_WINDOW))
        .send_window(u64::from(CONN_WINDOW))
        .keep_alive_interval(Some(opts.keepalive))
        .max_idle_timeout(opts.idle_timeout.try_into().ok());
    Arc::new(t)
}

/// A server endpoint on an already bound UDP socket.
pub(crate) fn server_endpoint(
    udp: std::net::UdpSocket,
    security: &ServerSecurity,
    opts: &LinkOptions,
) -> std::io::Result<Option<Endpoint>> {
    let ServerSecurity::Tls { quic, .. } = security else {
        return Ok(None);
    };
    let mut config = quinn::ServerConfig::with_crypto(quic.clone());
    config.transport_config(transport(opts));
    let runtime = quinn::default_runtime()
        .ok_or_else(|| std::io::Error::other("no async runtime for QUIC"))?;
    Endpoint::new(EndpointConfig::default(), Some(config), udp, runtime).map(Some)
}

pub(crate) async fn connect(
    addr: SocketAddr,
    peer: &str,
    security: &ClientSecurity,
    opts: &LinkOptions,
) -> Result<Established> {
    let ClientSecurity::Tls { quic, .. } = security else {
        return Err(Error::Usage(
            "QUIC is always encrypted; --insecure-plaintext works over TCP only".into(),
        ));
    };
    let local: SocketAddr = if addr.is_ipv6() {
        "[::]:0".parse().expect("addr")
    } else {
        "0.0.0.0:0".parse().expect("addr")
    };
    let connect_err = |source| Error::Connect {
        addr: addr.to_string(),
        source,
    };
    let udp = super::socket::bind_udp(local).map_err(connect_err)?;
    let runtime = quinn::default_runtime()
        .ok_or_else(|| connect_err(std::io::Error::other("no async runtime for QUIC")))?;
    let endpoint =
        Endpoint::new(EndpointConfig::default(), None, udp, runtime).map_err(connect_err)?;
    let mut config = quinn::ClientConfig::new(quic.clone());
    config.transport_config(transport(opts));
    let connecting = endpoint
        .connect_with(config, addr, crate::tls::SERVER_NAME)
        .map_err(|e| connect_err(std::io::Error::other(e)))?;
    let conn = timed(opts.connect_timeout, "QUIC handshake", peer, async {
        connecting
            .await
            .map_err(|e| conn_error(&e, peer, Role::Client))
    })
    .await?;
    let fingerprint = quic_fingerprint(&conn);
    timed(opts.handshake_timeout, "handshake", peer, async {
        let (send, recv) = conn
            .open_bi()
            .await
            .map_err(|e| conn_error(&e, peer, Role::Client))?;
        let mut control = RawStream {
            read: Box::new(recv),
            write: Box::new(send),
        };
        let negotiated = hello(&mut control, Side::Client, &opts.agent, peer, &conn).await?;
        Ok(Established {
            driven: mux::drive_quic(conn.clone()),
            negotiated,
            fingerprint,
            control: Some(control),
            endpoint: Some(endpoint),
            wire: WireCounter::Quic(conn),
            sealed: true,
        })
    })
    .await
}

/// Completes an incoming QUIC connection: TLS, then the hello on its first stream.
pub(crate) async fn accept(
    incoming: quinn::Incoming,
    peer: &str,
    opts: &LinkOptions,
) -> Result<Established> {
    timed(opts.handshake_timeout, "handshake", peer, async {
        let conn = incoming
            .await
            .map_err(|e| conn_error(&e, peer, Role::Server))?;
        let fingerprint = quic_fingerprint(&conn);
        let (send, recv) = conn
            .accept_bi()
            .await
            .map_err(|e| conn_error(&e, peer, Role::Server))?;
        let mut control = RawStream {
            read: Box::new(recv),
            write: Box::new(send),
        };
        let negotiated = hello(&mut control, Side::Server, &opts.agent, peer, &conn).await?;
        Ok(Established {
            driven: mux::drive_quic(conn.clone()),
            negotiated,
            fingerprint,
            control: Some(control),
            endpoint: None,
            wire: WireCounter::Quic(conn),
            sealed: true,
        })
    })
    .await
}

async fn hello(
    stream: &mut RawStream,
    side: Side,
    agent: &str,
    peer: &str,
    conn: &quinn::Connection,
) -> Result<proto::Negotiated> {
    let mut io = tokio::io::join(&mut stream.read, &mut stream.write);
    match handshake::exchange(&mut io, side, agent, peer).await {
        Ok(n) => Ok(n),
        // A refused client certificate closes the connection; its reason beats
        // "stream reset".
        Err(e) => match conn.close_reason() {
            Some(reason) => Err(conn_error(
                &reason,
                peer,
                match side {
                    Side::Client => Role::Client,
                    Side::Server => Role::Server,
                },
            )),
            None => {
                if let Error::Handshake { .. } = &e {
                    conn.close(VarInt::from_u32(2), e.to_string().as_bytes());
                }
                Err(e)
            }
        },
    }
}

fn quic_fingerprint(conn: &quinn::Connection) -> Option<String> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<rustls_pki_types::CertificateDer<'static>>>()
        .ok()?;
    peer_fingerprint(Some(&certs))
}

/// A failed QUIC connection as an error; TLS alerts are worded like the TCP ones.
fn conn_error(e: &quinn::ConnectionError, peer: &str, side: Role) -> Error {
    use quinn::ConnectionError as C;
    let is_crypto = |code: quinn::TransportErrorCode| (0x100..0x200).contains(&u64::from(code));
    match e {
        C::ConnectionClosed(c) if is_crypto(c.error_code) => Error::Tls {
            peer: peer.into(),
            reason: crate::tls::explain_quic(e, side),
        },
        C::TransportError(t) if is_crypto(t.code) => Error::Tls {
            peer: peer.into(),
            reason: crate::tls::explain_quic(e, side),
        },
        _ => Error::ConnectionLost {
            peer: peer.into(),
            reason: quic_reason(e),
        },
    }
}
