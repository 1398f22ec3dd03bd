//! TCP connections: TLS 1.3 (or, on request, plaintext), the hello, then jsync's
//! multiplexer ([`super::jmux`]).
//!
//! A server peeks at the first bytes before the TLS handshake so that a client in the
//! wrong mode gets a sentence ("the server expects TLS") instead of a hang or
//! garbage; a TLS client keeps the first bytes it received for the same reason.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use proto::{HandshakeMsg, Negotiated};
use rustls_pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

use super::counting::{Counted, WireCounter};
use super::handshake::{self, Side, Sniff};
use super::mux::{self, Driven};
pub(crate) use super::security::PeerCert;
use super::security::{ClientSecurity, ServerSecurity};
use super::LinkOptions;
use crate::error::{Error, Result};
use crate::identity::Role;
use crate::tls::explain_io;

/// A connection after the handshake: the multiplexer plus what we learnt.
pub(crate) struct Established {
    pub driven: Driven,
    pub negotiated: Negotiated,
    /// What the peer's certificate says of it (nothing over plaintext).
    pub cert: PeerCert,
    /// A stream already open in both directions to use as the control circuit
    /// (QUIC runs the hello on it); None when the client opens one afterwards.
    pub control: Option<mux::RawStream>,
    /// Keeps a client's QUIC endpoint alive as long as the connection.
    pub endpoint: Option<quinn::Endpoint>,
    /// Counts the bytes the connection moves.
    pub wire: WireCounter,
    /// Whether the transport itself authenticates every byte (TLS and QUIC
    /// AEAD) or never leaves the process; false only for plaintext TCP.
    pub sealed: bool,
    /// Both ends are in this process ([`crate::Link::pair`]).
    pub in_process: bool,
}

pub(crate) async fn timed<T>(
    limit: Duration,
    what: &'static str,
    peer: &str,
    fut: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r,
        Err(_) => Err(Error::Timeout {
            what,
            peer: peer.into(),
            secs: limit.as_secs_f64(),
        }),
    }
}

/// The hello on a (secured or plaintext) byte stream, then the multiplexer on it: how every
/// stream-based connection becomes [`Established`] (TCP, and in-process pairs).
pub(crate) async fn over_stream<S>(
    mut io: S,
    side: Side,
    agent: &str,
    peer: &str,
    cert: PeerCert,
    wire: WireCounter,
    sealed: bool,
) -> Result<Established>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let negotiated = handshake::exchange(&mut io, side, agent, peer).await?;
    Ok(Established {
        driven: super::jmux::drive(io, side),
        negotiated,
        cert,
        control: None,
        endpoint: None,
        wire,
        sealed,
        in_process: false,
    })
}

pub(crate) async fn connect(
    addr: SocketAddr,
    local: Option<IpAddr>,
    peer: &str,
    security: &ClientSecurity,
    opts: &LinkOptions,
) -> Result<Established> {
    let tcp = timed(opts.connect_timeout, "connect", peer, async {
        let connected = match local {
            None => TcpStream::connect(addr).await,
            Some(ip) => {
                let socket = match ip {
                    IpAddr::V4(_) => TcpSocket::new_v4(),
                    IpAddr::V6(_) => TcpSocket::new_v6(),
                };
                let bound = socket.and_then(|s| s.bind(SocketAddr::new(ip, 0)).map(|()| s));
                match bound {
                    Ok(s) => s.connect(addr).await,
                    Err(e) => Err(e),
                }
            }
        };
        connected.map_err(|source| Error::Connect {
            addr: addr.to_string(),
            source,
        })
    })
    .await?;
    super::socket::tune_tcp(&tcp, opts.keepalive).map_err(|e| Error::io("socket options", e))?;
    let (tcp, wire) = Counted::new(tcp);
    timed(opts.handshake_timeout, "handshake", peer, async {
        match security {
            ClientSecurity::Plaintext => {
                let none = PeerCert::default();
                over_stream(tcp, Side::Client, &opts.agent, peer, none, wire.clone(), false).await
            }
            ClientSecurity::Tls {
                tcp: config, named, ..
            } => {
                let config = match named {
                    Some(named) => named.client_tcp(peer)?,
                    None => config.clone(),
                };
                let connector = tokio_rustls::TlsConnector::from(config);
                let name = ServerName::try_from(crate::tls::SERVER_NAME).expect("valid name");
                let mut tls = match connector.connect(name, Sniff::new(tcp)).into_fallible().await {
                    Ok(tls) => tls,
                    Err((e, sniff)) => {
                        let reason = match sniff.plaintext_refusal() {
                            Some(r) => format!(
                                "the server expects plaintext (it runs with --insecure-plaintext): {r}"
                            ),
                            None => explain_io(&e, Role::Client),
                        };
                        return Err(Error::Tls {
                            peer: peer.into(),
                            reason,
                        });
                    }
                };
                tls.get_mut().1.set_buffer_limit(Some(TLS_BUFFER));
                // TLS 1.3 reports a refused client certificate at our first read,
                // the server's hello: `exchange` words that as a TLS failure.
                let cert = PeerCert::of(tls.get_ref().1.peer_certificates());
                over_stream(tls, Side::Client, &opts.agent, peer, cert, wire.clone(), true).await
            }
        }
    })
    .await
}

/// Encrypted bytes rustls may hold for the socket (its default is 64 KiB). The
/// multiplexer hands it a DATA frame of up to 2 MiB at once; what TLS does not
/// take, the multiplexer must copy aside, so TLS takes several whole frames.
const TLS_BUFFER: usize = 8 << 20;

pub(crate) async fn accept(
    tcp: TcpStream,
    peer: &str,
    security: &ServerSecurity,
    opts: &LinkOptions,
) -> Result<Established> {
    super::socket::tune_tcp(&tcp, opts.keepalive).map_err(|e| Error::io("socket options", e))?;
    timed(opts.handshake_timeout, "handshake", peer, async {
        let first = peek_start(&tcp).await;
        let (tcp, wire) = Counted::new(tcp);
        match security {
            ServerSecurity::Plaintext => {
                let mut tcp = tcp;
                if proto::looks_like_tls(&first) {
                    let reason =
                        "this server runs with --insecure-plaintext and does not speak TLS";
                    refuse(&mut tcp, reason, peer).await;
                    return Err(Error::Tls {
                        peer: peer.into(),
                        reason: "the client spoke TLS; this server expects plaintext".into(),
                    });
                }
                over_stream(
                    tcp,
                    Side::Server,
                    &opts.agent,
                    peer,
                    PeerCert::default(),
                    wire.clone(),
                    false,
                )
                .await
            }
            ServerSecurity::Tls {
                tcp: config, named, ..
            } => {
                let mut tcp = tcp;
                if proto::looks_like_jsync(&first) && !first.is_empty() {
                    let reason = "the server expects TLS (the client used --insecure-plaintext)";
                    refuse(&mut tcp, reason, peer).await;
                    return Err(Error::Tls {
                        peer: peer.into(),
                        reason: "the client spoke plaintext; this server expects TLS".into(),
                    });
                }
                let config = match named {
                    Some(named) => named.server_tcp(peer)?,
                    None => config.clone(),
                };
                let acceptor = tokio_rustls::TlsAcceptor::from(config);
                let mut tls = acceptor.accept(tcp).await.map_err(|e| Error::Tls {
                    peer: peer.into(),
                    reason: explain_io(&e, Role::Server),
                })?;
                tls.get_mut().1.set_buffer_limit(Some(TLS_BUFFER));
                let cert = PeerCert::of(tls.get_ref().1.peer_certificates());
                over_stream(
                    tls,
                    Side::Server,
                    &opts.agent,
                    peer,
                    cert,
                    wire.clone(),
                    true,
                )
                .await
            }
        }
    })
    .await
}

/// The first bytes the client sent, without consuming them (at most 8; fewer if the
/// client is slow to send them — the caller's timeout bounds the wait).
async fn peek_start(tcp: &TcpStream) -> Vec<u8> {
    let mut buf = [0u8; 8];
    for _ in 0..50 {
        match tcp.peek(&mut buf).await {
            Ok(0) | Err(_) => return Vec::new(),
            Ok(n) if n >= 4 => return buf[..n].to_vec(),
            Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    match tcp.peek(&mut buf).await {
        Ok(n) => buf[..n].to_vec(),
        Err(_) => Vec::new(),
    }
}

async fn refuse<S: tokio::io::AsyncWrite + Unpin>(tcp: &mut S, reason: &str, peer: &str) {
    tracing::warn!(peer, reason, "refusing connection");
    let _ = handshake::write_msg(
        tcp,
        &HandshakeMsg::Refuse {
            reason: reason.into(),
        },
        peer,
        Side::Server,
    )
    .await;
    let _ = tcp.shutdown().await;
}
