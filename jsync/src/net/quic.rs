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
use super::security::{ClientSecurity, ServerSecurity};
use super::tcp::{timed, Established, PeerCert};
use super::LinkOptions;
use crate::error::{Error, Result};
use crate::identity::Role;

/// Per-stream and per-connection receive windows. A stalled circuit can hold at most
/// its stream window, so the connection window must be several times larger.
/// 32 MiB keeps a 100 ms path at about 300 MB/s; the windows bound what each
/// side buffers (8/64 MiB had jsrv peak at 144 MB on the kernel tree, 4/32 at 80).
const STREAM_WINDOW: u32 = 4 << 20;
const CONN_WINDOW: u32 = 32 << 20;

/// The largest UDP payload (packet) size we use or accept. Where the kernel's
/// route to the peer carries more than Ethernet's 1,500 bytes (loopback,
/// jumbo-frame LANs), packets grow up to this size, as TCP's segments grow to
/// the route's MTU: a QUIC copy over loopback then takes a quarter less time
/// than at quinn's 1,452. The bound has to fit segmentation offload: quinn
/// hands the kernel up to [`GSO_SEGMENTS`] packets in one UDP send, which must
/// fit one datagram ([`MAX_UDP_PAYLOAD`] bytes), or the kernel refuses the
/// batch (EMSGSIZE) and all its packets are lost (an 8,000-byte bound made a
/// loopback copy send 2.3 GB for 1.3 GB and take minutes).
const MTU_UPPER_BOUND: u16 = 6_500;
/// quinn's `MAX_TRANSMIT_SEGMENTS`: packets per segmentation-offload send.
const GSO_SEGMENTS: usize = 10;
/// The most a UDP datagram over IPv4 can carry (65,535 less 28 bytes of headers).
const MAX_UDP_PAYLOAD: usize = 65_507;
const _: () = assert!(MTU_UPPER_BOUND as usize * GSO_SEGMENTS <= MAX_UDP_PAYLOAD);
/// quinn's own MTU discovery bound, which fits an Ethernet path.
const DEFAULT_UPPER_BOUND: u16 = 1_452;

/// The UDP payload the kernel's route to `remote` carries (its MTU less IP
/// and UDP headers), at most [`MTU_UPPER_BOUND`]; `None` if unknown. Asks a
/// throwaway socket connected to `remote` (`IP_MTU`: no packet is sent).
fn route_payload(remote: SocketAddr) -> Option<u16> {
    let local: SocketAddr = if remote.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let probe = std::net::UdpSocket::bind(local).ok()?;
    probe.connect(remote).ok()?;
    let (mtu, headers) = if remote.is_ipv6() {
        (rustix::net::sockopt::ipv6_mtu(&probe).ok()?, 48)
    } else {
        (rustix::net::sockopt::ip_mtu(&probe).ok()?, 28)
    };
    let payload = mtu.checked_sub(headers)?;
    Some(
        u16::try_from(payload)
            .unwrap_or(u16::MAX)
            .min(MTU_UPPER_BOUND),
    )
}

/// Whether `ip` is this host's loopback (an IPv4-mapped one included).
fn is_loopback(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(v6.is_loopback(), |v4| v4.is_loopback()),
        v4 => v4.is_loopback(),
    }
}

/// The transport settings for a connection with `remote` (`None`: the
/// defaults a server endpoint starts with).
///
/// Packet size: where the route carries more than Ethernet, MTU discovery may
/// probe up to what it carries (a path through a switch without jumbo frames
/// loses the probes and stays at what worked). Over loopback the route is the
/// whole path, so packets start at that size and no probe is needed (probing
/// up from 1,200 costs about 80 KB per connection).
fn transport(opts: &LinkOptions, remote: Option<SocketAddr>) -> Arc<TransportConfig> {
    let mut t = TransportConfig::default();
    let route = remote.and_then(|r| Some((r, route_payload(r)?)));
    if let Some((remote, payload)) = route.filter(|&(_, p)| p > DEFAULT_UPPER_BOUND) {
        let mut mtu = quinn::MtuDiscoveryConfig::default();
        mtu.upper_bound(payload);
        t.mtu_discovery_config(Some(mtu));
        if is_loopback(remote.ip()) {
            t.initial_mtu(payload);
        }
    }
    t.max_concurrent_bidi_streams(VarInt::from_u32(16_384))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .stream_receive_window(VarInt::from_u32(STREAM_WINDOW))
        .receive_window(VarInt::from_u32(CONN_WINDOW))
        .send_window(u64::from(CONN_WINDOW))
        .keep_alive_interval(Some(opts.keepalive))
        .max_idle_timeout(opts.idle_timeout.try_into().ok());
    Arc::new(t)
}

/// Tells peers (in the handshake's transport parameters) that packets of up
/// to [`MTU_UPPER_BOUND`] bytes are welcome (quinn's default is 1,472, which
/// caps the peer's packets whatever its route allows). Each side still sends
/// only what its own route to the other carries ([`transport`]).
fn endpoint_config() -> EndpointConfig {
    let mut c = EndpointConfig::default();
    c.max_udp_payload_size(MTU_UPPER_BOUND)
        .expect("a valid UDP payload size");
    c
}

/// The server's settings for a connection from `remote`.
fn server_config(
    quic: &Arc<quinn::crypto::rustls::QuicServerConfig>,
    opts: &LinkOptions,
    remote: Option<SocketAddr>,
) -> quinn::ServerConfig {
    let mut config = quinn::ServerConfig::with_crypto(quic.clone());
    config.transport_config(transport(opts, remote));
    config
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
    let config = server_config(quic, opts, None);
    let runtime = quinn::default_runtime()
        .ok_or_else(|| std::io::Error::other("no async runtime for QUIC"))?;
    Endpoint::new(endpoint_config(), Some(config), udp, runtime).map(Some)
}

pub(crate) async fn connect(
    addr: SocketAddr,
    local: Option<std::net::IpAddr>,
    peer: &str,
    security: &ClientSecurity,
    opts: &LinkOptions,
) -> Result<Established> {
    let ClientSecurity::Tls { quic, named, .. } = security else {
        return Err(Error::Usage(
            "QUIC is always encrypted; --insecure-plaintext works over TCP only".into(),
        ));
    };
    let bind: SocketAddr = match local {
        Some(ip) => SocketAddr::new(ip, 0),
        None if addr.is_ipv6() => "[::]:0".parse().expect("addr"),
        None => "0.0.0.0:0".parse().expect("addr"),
    };
    let connect_err = |source| Error::Connect {
        addr: addr.to_string(),
        source,
    };
    let udp = super::socket::bind_udp(bind).map_err(connect_err)?;
    let runtime = quinn::default_runtime()
        .ok_or_else(|| connect_err(std::io::Error::other("no async runtime for QUIC")))?;
    let endpoint = Endpoint::new(endpoint_config(), None, udp, runtime).map_err(connect_err)?;
    let quic = match named {
        Some(named) => named.client_quic(peer)?,
        None => quic.clone(),
    };
    let mut config = quinn::ClientConfig::new(quic);
    config.transport_config(transport(opts, Some(addr)));
    let connecting = endpoint
        .connect_with(config, addr, crate::tls::SERVER_NAME)
        .map_err(|e| connect_err(std::io::Error::other(e)))?;
    let conn = timed(opts.connect_timeout, "QUIC handshake", peer, async {
        connecting.await.map_err(|e| match e {
            // Nothing answered before quinn's idle timeout (when that is
            // the shorter): the same as no answer at all.
            quinn::ConnectionError::TimedOut => Error::Timeout {
                what: "QUIC handshake",
                peer: peer.to_string(),
                secs: opts.idle_timeout.as_secs_f64(),
            },
            e => conn_error(&e, peer, Role::Client),
        })
    })
    .await?;
    let cert = quic_peer(&conn);
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
            cert,
            control: Some(control),
            endpoint: Some(endpoint),
            wire: WireCounter::Quic(conn),
            sealed: true,
            in_process: false,
        })
    })
    .await
}

/// Completes an incoming QUIC connection: TLS, then the hello on its first stream.
pub(crate) async fn accept(
    incoming: quinn::Incoming,
    peer: &str,
    security: &ServerSecurity,
    opts: &LinkOptions,
) -> Result<Established> {
    let ServerSecurity::Tls { quic, named, .. } = security else {
        // A plaintext server has no QUIC endpoint to accept on.
        return Err(Error::Usage("QUIC is always encrypted".into()));
    };
    let quic = match named {
        Some(named) => &named.server_quic(peer)?,
        None => quic,
    };
    let config = server_config(quic, opts, Some(incoming.remote_address()));
    timed(opts.handshake_timeout, "handshake", peer, async {
        let conn = incoming
            .accept_with(Arc::new(config))
            .map_err(|e| conn_error(&e, peer, Role::Server))?
            .await
            .map_err(|e| conn_error(&e, peer, Role::Server))?;
        let cert = quic_peer(&conn);
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
            cert,
            control: Some(control),
            endpoint: None,
            wire: WireCounter::Quic(conn),
            sealed: true,
            in_process: false,
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

/// What the peer's certificate says of it.
fn quic_peer(conn: &quinn::Connection) -> PeerCert {
    let certs = conn.peer_identity().and_then(|id| {
        id.downcast::<Vec<rustls_pki_types::CertificateDer<'static>>>()
            .ok()
    });
    PeerCert::of(certs.as_deref().map(Vec::as_slice))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::counting::WireCounter;
    use crate::net::security::ClientSecurity;
    use crate::tls::TlsOptions;

    #[test]
    fn loopback_routes_carry_the_upper_bound() {
        let v4: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(route_payload(v4), Some(MTU_UPPER_BOUND));
        assert!(is_loopback(v4.ip()));
        assert!(is_loopback("::ffff:127.0.0.1".parse().unwrap()));
        assert!(is_loopback("::1".parse().unwrap()));
        assert!(!is_loopback("192.0.2.1".parse().unwrap()));
        assert!(!is_loopback("::ffff:192.0.2.1".parse().unwrap()));
    }

    fn mtu(est: &Established) -> u16 {
        match &est.wire {
            WireCounter::Quic(c) => c.stats().path.current_mtu,
            WireCounter::Stream(_) => panic!("not a QUIC connection"),
        }
    }

    /// Over loopback both sides send packets of the full bound from the
    /// start: no MTU probes, and each side's advertised limit lets the other.
    #[tokio::test(flavor = "multi_thread")]
    async fn loopback_connections_start_at_the_upper_bound() {
        let keys = tempfile::tempdir().unwrap();
        crate::identity::init(keys.path()).unwrap();
        let tls = TlsOptions::default();
        let server = ServerSecurity::from_config_dir(keys.path(), &tls).unwrap();
        let client = ClientSecurity::from_config_dir(keys.path(), &tls).unwrap();
        let opts = LinkOptions::default();
        let udp = super::super::socket::bind_udp("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = udp.local_addr().unwrap();
        let ep = server_endpoint(udp, &server, &opts).unwrap().unwrap();
        let accepted = tokio::spawn({
            let opts = opts.clone();
            async move {
                let incoming = ep.accept().await.unwrap();
                let est = accept(incoming, "client", &server, &opts).await.unwrap();
                (mtu(&est), est)
            }
        });
        let est = connect(addr, None, "server", &client, &opts).await.unwrap();
        let (server_mtu, _server_est) = accepted.await.unwrap();
        assert_eq!(mtu(&est), MTU_UPPER_BOUND);
        assert_eq!(server_mtu, MTU_UPPER_BOUND);
    }
}
