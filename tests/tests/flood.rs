//! A peer that floods the daemon: asks without reading the answers, sends
//! to streams it never opened, announces frames it never sends, starts
//! services by the hundred, or opens connections and says nothing. Each
//! must end in a closed connection or a refusal, never in memory or
//! connection slots held without bound. The hostile client speaks the
//! wire format by hand over `jsrv --insecure-plaintext` (TLS changes
//! nothing past the handshake); the last test uses a real TLS server.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use jsync_tests::bins::Jsrv;
use jsync_tests::Keys;
use proto::{Codec, Compression, Fragment, Op};

/// jmux frame kinds (jsync/src/net/jmux.rs).
const OPEN: u8 = 0;
const DATA: u8 = 1;

fn mux(id: u32, kind: u8, len: usize) -> Vec<u8> {
    let mut h = id.to_be_bytes().to_vec();
    h.extend_from_slice(&[kind, 0, 0, 0]);
    h.extend_from_slice(&(len as u32).to_be_bytes());
    h
}

fn data(id: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = mux(id, DATA, payload.len());
    out.extend_from_slice(payload);
    out
}

fn frame(frag: &Fragment) -> Vec<u8> {
    let mut out = Vec::new();
    proto::encode_frame(frag, Compression::NONE, &mut out);
    out
}

/// A plaintext server and a raw connection to it that said hello and
/// opened its control stream.
fn hostile() -> (tempfile::TempDir, Jsrv, TcpStream) {
    let keys = Keys::new();
    let root = tempfile::tempdir().unwrap();
    let srv = Jsrv::start(keys.path(), root.path(), &["--insecure-plaintext"]);
    let s = raw(&srv);
    (root, srv, s)
}

fn raw(srv: &Jsrv) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    let mut hello = Vec::new();
    proto::HandshakeMsg::Hello(proto::Hello::ours("flood/0")).encode(&mut hello);
    s.write_all(&hello).unwrap();
    let mut open = mux(1, OPEN, 0);
    open.extend(data(
        1,
        &frame(&Fragment::new(Op::OPEN).with_subject("control")),
    ));
    s.write_all(&open).unwrap();
    s
}

/// jsrv's resident memory in MiB.
fn rss_mib(srv: &Jsrv) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", srv.child.id())).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    kb >> 10
}

/// Whether the server has closed `s`: its reads end (or fail) within `wait`.
fn closed_by_server(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let end = Instant::now() + wait;
    let mut buf = [0u8; 64 << 10];
    while Instant::now() < end {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return true,
        }
    }
    false
}

/// PINGs from a peer that never reads its PONGs: the replies queue up to
/// a bound, then the link fails (before, each PING kept about 126 bytes:
/// 6 GB in 30 s).
#[test]
fn pings_from_a_peer_that_does_not_read_end_its_connection() {
    let (_root, srv, mut s) = hostile();
    let ping = frame(&Fragment::new(Op::PING));
    let batch = data(1, &ping.repeat((256 << 10) / ping.len()));
    let began = Instant::now();
    let mut sent = 0usize;
    let refused = loop {
        if s.write_all(&batch).is_err() {
            break true;
        }
        sent += batch.len();
        if sent > 400 << 20 || began.elapsed() > Duration::from_secs(60) {
            break false;
        }
    };
    assert!(refused, "still taking PINGs after {} MiB", sent >> 20);
    assert!(rss_mib(&srv) < 200, "jsrv holds {} MiB", rss_mib(&srv));
}

/// DATA on a stream nobody opened is a protocol violation: the connection
/// ends (before, each frame queued a window grant that was never read).
#[test]
fn data_on_a_stream_never_opened_ends_the_connection() {
    let (_root, _srv, mut s) = hostile();
    s.write_all(&data(999, b"x").repeat(1000)).unwrap();
    assert!(closed_by_server(&mut s, Duration::from_secs(10)));
}

/// Streams that announce the largest compressed frame and send nothing
/// more hold no memory for it (before, 300 of them held 1.3 GB for 30 s).
#[test]
fn frames_announced_and_not_sent_hold_no_memory() {
    let (_root, srv, mut s) = hostile();
    let before = rss_mib(&srv);
    let mut head = (proto::MAX_FRAME as u32).to_be_bytes().to_vec();
    head.push(2); // zstd
    head.extend_from_slice(&[0; 300]);
    let mut out = Vec::new();
    for i in 0..300u32 {
        let id = 3 + 2 * i;
        out.extend(mux(id, OPEN, 0));
        out.extend(data(id, &head));
    }
    s.write_all(&out).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let after = rss_mib(&srv);
    assert!(after < before + 100, "{before} MiB -> {after} MiB");
}

/// A peer may have so many services running at once: the next START is
/// refused, saying why (before, 100,000 STARTs held 783 MB and 515 threads).
#[test]
fn services_started_at_once_are_bounded() {
    let (_root, _srv, mut s) = hostile();
    let mut starts = Vec::new();
    for part in 1..=300u64 {
        let mut f = Fragment::new(Op::START).with_subject("jsync.glob");
        f.part = part;
        f.args = vec!["*".into()];
        starts.extend(frame(&f));
    }
    s.write_all(&data(1, &starts)).unwrap();
    // The server's hello, then its control stream's frames.
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut head = [0u8; 8];
    s.read_exact(&mut head).unwrap();
    let mut body = vec![0u8; head[7] as usize];
    s.read_exact(&mut body).unwrap();
    let (mut control, mut refused) = (Vec::new(), 0);
    let end = Instant::now() + Duration::from_secs(20);
    while refused == 0 && Instant::now() < end {
        let mut h = [0u8; 12];
        s.read_exact(&mut h).unwrap();
        let len = u32::from_be_bytes([h[8], h[9], h[10], h[11]]) as usize;
        let mut payload = vec![0u8; if h[4] == DATA { len } else { 0 }];
        s.read_exact(&mut payload).unwrap();
        if u32::from_be_bytes([h[0], h[1], h[2], h[3]]) != 1 {
            continue;
        }
        control.extend(payload);
        while let Some(n) = proto::frame_len(&control).unwrap() {
            let frag = proto::decode_frame(&control[..n]).unwrap();
            control.drain(..n);
            if frag.op == Op::FAIL
                && frag
                    .error
                    .as_deref()
                    .is_some_and(|e| e.contains("services at once"))
            {
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "every START was taken");
}

/// Connections that open and say nothing hold at most a few of the
/// server's slots for each address, and only for seconds: a client from
/// another address is served at once (before, 12 silent sockets held all
/// 12 slots for the 10 s handshake timeout).
#[test]
fn silent_connections_from_one_address_do_not_lock_others_out() {
    let keys = Keys::new();
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("f"), b"served").unwrap();
    let srv = Jsrv::start(keys.path(), root.path(), &["--max-connections", "12"]);
    let idle: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(("127.0.0.1", srv.port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let dst = root.path().join("got");
    let out = srv.jcp(
        keys.path(),
        &[
            "--address",
            "127.0.0.2",
            "--contimeout=4",
            "127.0.0.1:f",
            dst.to_str().unwrap(),
        ],
    );
    jsync_tests::bins::assert_ok(&out, "a client from 127.0.0.2");
    assert_eq!(std::fs::read(&dst).unwrap(), b"served");
    drop(idle);
}
