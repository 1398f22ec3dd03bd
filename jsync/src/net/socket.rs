//! Socket setup that tokio does not expose: SO_REUSEADDR, TCP keepalive, large UDP
//! buffers, and binding TCP and UDP to one port number.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};
use tokio::net::{TcpListener, TcpStream};

/// UDP buffer size for QUIC sockets: with the kernel default quinn loses packets on
/// a busy loopback (see shared/CRATES.md), 4 MiB removes the loss.
const UDP_BUFFER: usize = 4 << 20;

/// Binds a TCP listener and a UDP socket on the same port. With port 0 the OS picks
/// the TCP port and UDP takes the same number (retried if UDP has it taken).
pub(crate) fn bind_pair(addr: SocketAddr) -> io::Result<(TcpListener, UdpSocket)> {
    let tries = if addr.port() == 0 { 16 } else { 1 };
    let mut last = None;
    for _ in 0..tries {
        let tcp = bind_tcp(addr)?;
        let port = tcp.local_addr()?.port();
        match bind_udp(SocketAddr::new(addr.ip(), port)) {
            Ok(udp) => return Ok((tcp, udp)),
            // (Said: TCP's port was free, so `ss -ltn` shows nothing.)
            Err(e) => {
                last = Some(io::Error::new(
                    e.kind(),
                    format!("UDP port {port} (QUIC): {e}"),
                ))
            }
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free port for both TCP and UDP")))
}

/// A TCP listener with SO_REUSEADDR, so a restarted daemon can bind at once.
pub(crate) fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(false).ok();
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// A UDP socket for QUIC with 4 MiB buffers.
pub(crate) fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(false).ok();
    }
    // Best effort: the kernel caps these at net.core.[rw]mem_max.
    socket.set_recv_buffer_size(UDP_BUFFER).ok();
    socket.set_send_buffer_size(UDP_BUFFER).ok();
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// TCP_NODELAY (frames are already batched) and keepalive probes, so a peer that
/// vanished without a FIN is noticed by the kernel too.
pub(crate) fn tune_tcp(stream: &TcpStream, keepalive: Duration) -> io::Result<()> {
    stream.set_nodelay(true)?;
    // The kernel counts in whole seconds and refuses 0.
    let keepalive = keepalive.max(Duration::from_secs(1));
    let ka = TcpKeepalive::new()
        .with_time(keepalive)
        .with_interval(keepalive);
    SockRef::from(stream).set_tcp_keepalive(&ka)
}
