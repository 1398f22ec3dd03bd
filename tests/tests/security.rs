//! Trust and handshake scenarios over real connections: foreign CAs, known-keys
//! lockdown and trust on first use, version mismatches, and TLS/plaintext mix-ups.
//! Each asserts on what the user is told, not just that something failed.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use jsync::identity::{self, Identity, Role, KNOWN_CLIENT_KEYS, KNOWN_SERVER_KEYS};
use jsync::tls::{self, TlsOptions};
use jsync::{ClientSecurity, Error, ServerSecurity, Services, Transport};
use jsync_tests::{client, Keys, TestServer, TRANSPORTS};
use proto::{Codec, HandshakeMsg, Hello};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn echo() -> Services {
    Services::new().with("echo", |peer| async move {
        while let Some(mut c) = peer.accept().await? {
            while let Some(f) = c.recv().await? {
                c.send(f).await?;
            }
            c.finish().await?;
        }
        Ok(())
    })
}

/// Client security from explicit parts (to mix a CA with another CA's certificate).
fn client_security(id: &Identity) -> ClientSecurity {
    ClientSecurity::Tls {
        tcp: tls::client_config(id, None, &TlsOptions::default()).unwrap(),
        quic: tls::quic_client_config(id, None, &TlsOptions::default()).unwrap(),
        named: None,
    }
}

/// A second client key pair signed by the same CA as `keys`.
fn second_client(keys: &Keys) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in [identity::CA_CERT, identity::CA_KEY] {
        std::fs::copy(keys.file(f), dir.path().join(f)).unwrap();
    }
    std::fs::set_permissions(
        dir.path().join(identity::CA_KEY),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    identity::init(dir.path()).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_certificate_from_another_ca_is_refused_by_the_client() {
    for t in TRANSPORTS {
        let server_keys = Keys::new();
        let client_keys = Keys::new(); // a different CA
        let srv = TestServer::start(server_keys.server(), echo());
        let err = client(client_keys.client(), Services::new(), t)
            .connect(&srv.addr_string())
            .await
            .unwrap_err();
        assert!(err.is_auth(), "{t}: {err:?}");
        let msg = err.to_string();
        assert!(msg.contains("not signed by our CA"), "{t}: {msg}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_certificate_from_another_ca_is_refused_by_the_server() {
    for t in TRANSPORTS {
        let server_keys = Keys::new();
        let other = Keys::new();
        // Trusts the server's CA, but presents a certificate from another CA.
        let mut id = Identity::load(other.path(), Role::Client).unwrap();
        id.ca = Identity::load(server_keys.path(), Role::Client).unwrap().ca;
        let srv = TestServer::start(server_keys.server(), echo());
        let err = client(client_security(&id), Services::new(), t)
            .connect(&srv.addr_string())
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(err.is_auth(), "{t}: {err:?}");
        assert!(msg.contains("does not trust our certificate"), "{t}: {msg}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tofu_records_a_new_client_key_and_lockdown_refuses_an_unknown_one() {
    for t in TRANSPORTS {
        let keys = Keys::new();
        let known = keys.file(KNOWN_CLIENT_KEYS);
        std::fs::write(&known, "").unwrap();
        let srv = TestServer::start(keys.server(), echo());

        // Writable file: the first client is recorded, by public key.
        let link = client(keys.client(), Services::new(), t)
            .connect(&srv.addr_string())
            .await
            .unwrap_or_else(|e| panic!("{t}: TOFU connect: {e}"));
        link.close("done").await;
        let recorded = std::fs::read_to_string(&known).unwrap();
        assert_eq!(recorded.lines().count(), 1, "{t}: {recorded}");
        assert!(recorded.starts_with("ed25519 "), "{t}: {recorded}");
        // ...with where it came from, as ssh's known_hosts would have it.
        assert!(
            recorded.contains(" from client 127.0.0.1:"),
            "{t}: {recorded}"
        );

        // Read-only file: lockdown. The recorded client still gets in...
        std::fs::set_permissions(&known, std::fs::Permissions::from_mode(0o444)).unwrap();
        let link = client(keys.client(), Services::new(), t)
            .connect(&srv.addr_string())
            .await
            .unwrap_or_else(|e| panic!("{t}: known key refused under lockdown: {e}"));
        link.close("done").await;

        // ...a new key from the same CA does not, and is told why.
        let other = second_client(&keys);
        let other_sec =
            ClientSecurity::from_config_dir(other.path(), &TlsOptions::default()).unwrap();
        let err = client(other_sec, Services::new(), t)
            .connect(&srv.addr_string())
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(err.is_auth(), "{t}: {err:?}");
        assert!(
            msg.contains("refused our client key") && msg.contains("lockdown"),
            "{t}: {msg}"
        );
        assert_eq!(
            std::fs::read_to_string(&known).unwrap(),
            recorded,
            "{t}: lockdown must not write"
        );
    }
}

/// A client records a new server's key with the address it reached it at.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_records_where_it_first_saw_a_server_key() {
    for t in TRANSPORTS {
        let keys = Keys::new();
        let srv = TestServer::start(keys.server(), echo());
        let known = keys.file(KNOWN_SERVER_KEYS);
        std::fs::write(&known, "").unwrap();
        let link = client(keys.client(), Services::new(), t)
            .connect(&srv.addr_string())
            .await
            .unwrap_or_else(|e| panic!("{t}: TOFU connect: {e}"));
        link.close("done").await;
        let recorded = std::fs::read_to_string(&known).unwrap();
        let from = format!(" from server {}\n", srv.addr_string());
        assert!(recorded.ends_with(&from), "{t}: {recorded}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_in_lockdown_refuses_an_unknown_server_key() {
    for t in TRANSPORTS {
        let keys = Keys::new();
        let srv = TestServer::start(keys.server(), echo());
        let client_dir = tempfile::tempdir().unwrap();
        for f in [
            identity::CA_CERT,
            identity::CLIENT_CERT,
            identity::CLIENT_KEY,
        ] {
            std::fs::copy(keys.file(f), client_dir.path().join(f)).unwrap();
        }
        std::fs::set_permissions(
            client_dir.path().join(identity::CLIENT_KEY),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let known = client_dir.path().join(KNOWN_SERVER_KEYS);
        std::fs::write(&known, "# no servers trusted yet\n").unwrap();
        std::fs::set_permissions(&known, std::fs::Permissions::from_mode(0o444)).unwrap();
        let sec =
            ClientSecurity::from_config_dir(client_dir.path(), &TlsOptions::default()).unwrap();
        let err = client(sec, Services::new(), t)
            .connect(&srv.addr_string())
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(err.is_auth(), "{t}: {err:?}");
        assert!(
            msg.contains("lockdown") && msg.contains(KNOWN_SERVER_KEYS),
            "{t}: {msg}"
        );
    }
}

/// The protocol version of a jsync from the future.
const FUTURE: u16 = proto::PROTOCOL_VERSION + 1;

/// A fake jsync server that answers any hello with a hello from the future.
async fn future_server(listener: TcpListener) {
    let (mut s, _) = listener.accept().await.unwrap();
    let mut buf = vec![0u8; 256];
    let _ = s.read(&mut buf).await.unwrap();
    let hello = HandshakeMsg::Hello(Hello {
        version: FUTURE,
        ..Hello::ours("jsync/9.0")
    });
    let mut out = Vec::new();
    hello.encode(&mut out);
    s.write_all(&out).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_version_mismatch_names_both_versions_on_both_sides() {
    // Client side: a server from the future.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(future_server(listener));
    let err = client(ClientSecurity::Plaintext, Services::new(), Transport::Tcp)
        .connect(&addr.to_string())
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Handshake {
                source: proto::HandshakeError::VersionMismatch {
                    local: proto::PROTOCOL_VERSION,
                    remote: FUTURE
                },
                ..
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("version {}", proto::PROTOCOL_VERSION))
            && msg.contains(&format!("version {FUTURE}")),
        "{msg}"
    );

    // Server side: a client from the future still gets our hello, so it can say
    // which version we speak, and the connection goes no further.
    let srv = TestServer::start(ServerSecurity::Plaintext, echo());
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    let mut out = Vec::new();
    HandshakeMsg::Hello(Hello {
        version: FUTURE,
        ..Hello::ours("jsync/9.0")
    })
    .encode(&mut out);
    s.write_all(&out).await.unwrap();
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).await.unwrap();
    let n = proto::handshake_len(&reply)
        .unwrap()
        .expect("a whole hello");
    match HandshakeMsg::decode(&mut proto::Reader::new(&reply[..n])).unwrap() {
        HandshakeMsg::Hello(h) => assert_eq!(h.version, proto::PROTOCOL_VERSION),
        other => panic!("expected our hello, got {other:?}"),
    }
    assert_eq!(reply.len(), n, "nothing may follow a failed handshake");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_version_mismatch_over_tls_is_reported_too() {
    let keys = Keys::new();
    let config = tls::server_config(
        &Identity::load(keys.path(), Role::Server).unwrap(),
        None,
        &TlsOptions::default(),
    )
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut s = tokio_rustls_accept(config, tcp).await;
        let mut buf = vec![0u8; 256];
        let _ = s.read(&mut buf).await.unwrap();
        let mut out = Vec::new();
        HandshakeMsg::Hello(Hello {
            version: FUTURE + 5,
            ..Hello::ours("jsync/9.0")
        })
        .encode(&mut out);
        s.write_all(&out).await.unwrap();
        s.flush().await.unwrap();
    });
    let err = client(keys.client(), Services::new(), Transport::Tcp)
        .connect(&addr.to_string())
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("version {}", proto::PROTOCOL_VERSION))
            && msg.contains(&format!("version {}", FUTURE + 5)),
        "{msg}"
    );
}

async fn tokio_rustls_accept(
    config: Arc<rustls::ServerConfig>,
    tcp: TcpStream,
) -> tokio_rustls::server::TlsStream<TcpStream> {
    tokio_rustls::TlsAcceptor::from(config)
        .accept(tcp)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_and_plaintext_mix_ups_are_named() {
    let keys = Keys::new();
    // A TLS client reaching a plaintext server.
    let plain = TestServer::start(ServerSecurity::Plaintext, echo());
    let err = client(keys.client(), Services::new(), Transport::Tcp)
        .connect(&plain.addr_string())
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("expects plaintext") && msg.contains("--insecure-plaintext"),
        "{msg}"
    );

    // A plaintext client reaching a TLS server.
    let secure = TestServer::start(keys.server(), echo());
    let err = client(ClientSecurity::Plaintext, Services::new(), Transport::Tcp)
        .connect(&secure.addr_string())
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("expects TLS"), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_quic_and_in_process_links_are_sealed() {
    let keys = Keys::new();
    let srv = TestServer::start(keys.server(), echo());
    for transport in TRANSPORTS {
        let link = client(keys.client(), Services::new(), transport)
            .connect(&srv.addr_string())
            .await
            .unwrap();
        assert!(link.sealed(), "{transport:?}");
    }
    let (a, b) = jsync::Link::pair(Services::new().into(), Services::new().into())
        .await
        .unwrap();
    assert!(a.sealed() && b.sealed());
}

#[tokio::test(flavor = "multi_thread")]
async fn plaintext_works_only_when_both_sides_ask_for_it() {
    let srv = TestServer::start(ServerSecurity::Plaintext, echo());
    let link = client(ClientSecurity::Plaintext, Services::new(), Transport::Tcp)
        .connect(&srv.addr_string())
        .await
        .unwrap();
    assert!(link.remote_fingerprint().is_none());
    // Nothing authenticates the bytes: files sent whole must carry a digest.
    assert!(!link.sealed());
    let peer = link.start("echo", &[]).await.unwrap();
    let mut c = peer.open().await.unwrap();
    c.send(proto::Fragment::new(proto::Op::DATA).with_payload(b"hi".to_vec()))
        .await
        .unwrap();
    c.finish().await.unwrap();
    assert_eq!(c.recv().await.unwrap().unwrap().payload, b"hi");
    // QUIC has no plaintext mode.
    let err = client(ClientSecurity::Plaintext, Services::new(), Transport::Quic)
        .connect(&srv.addr_string())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("QUIC is always encrypted"),
        "{err}"
    );
}

/// A server that presents a key other than the one recorded for its
/// address is said loudly, as ssh's "REMOTE HOST IDENTIFICATION HAS
/// CHANGED", naming the file and line on record, even with `-q`: recorded
/// beside it when the file is writable (keys are matched by key, as the
/// trust rules say), refused when it is read-only. Through the binaries: a
/// second server key signed by the same CA, at the address the record
/// names.
#[test]
fn a_changed_server_key_is_said_loudly_and_refused_in_lockdown() {
    use jsync_tests::bins::Jsrv;
    let keys = Keys::new();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let src = work.path().join("f");
    std::fs::write(&src, b"f").unwrap();
    let src = src.to_str().unwrap();
    let known = keys.file(KNOWN_SERVER_KEYS);
    std::fs::write(&known, "").unwrap();
    let first = Jsrv::start(keys.path(), &root, &[]);
    let out = first.jcp(keys.path(), &["-q", src, "127.0.0.1:f"]);
    jsync_tests::bins::assert_ok(&out, "first use");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("recorded new key"), "-q shows it: {said}");

    // Another server key under the same CA, where the first one was.
    let other = second_client(&keys);
    let second = Jsrv::start(other.path(), &root, &[]);
    let recorded = std::fs::read_to_string(&known).unwrap();
    let (was, now) = (
        format!("from server 127.0.0.1:{}", first.port),
        format!("from server 127.0.0.1:{}", second.port),
    );
    assert!(recorded.contains(&was), "{recorded}");
    std::fs::write(&known, recorded.replace(&was, &now)).unwrap();
    let on_record = format!("not the key {}:1 records for it", known.display());
    let out = second.jcp(keys.path(), &["-q", src, "127.0.0.1:f"]);
    jsync_tests::bins::assert_ok(&out, "writable: recorded");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("KEY CHANGED") && said.contains(&on_record),
        "{said}"
    );
    assert_eq!(std::fs::read_to_string(&known).unwrap().lines().count(), 2);

    // Read-only: refused, saying why.
    let first_line = std::fs::read_to_string(&known)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    std::fs::write(&known, format!("{first_line}\n")).unwrap();
    std::fs::set_permissions(&known, std::fs::Permissions::from_mode(0o444)).unwrap();
    let out = second.jcp(keys.path(), &["-q", src, "127.0.0.1:f"]);
    jsync_tests::bins::assert_fails(&out, 4, &on_record, "read-only: refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("KEY CHANGED: refusing it"));
}

/// What a known-keys file must be: a symlink to nothing is an error, not
/// an absent file (which would trust the CA alone: a lockdown list on an
/// unmounted disk let every client in), and so are a FIFO (read for good)
/// and a file past 1 MiB (`/dev/zero` was read without end). Keys and
/// certificates are read the same way.
#[test]
fn a_known_keys_file_that_is_not_one_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(KNOWN_CLIENT_KEYS);
    std::os::unix::fs::symlink(dir.path().join("unmounted/allowed"), &path).unwrap();
    let err = jsync::known_keys::KnownKeys::open(&path)
        .unwrap_err()
        .to_string();
    assert!(err.contains("a symlink to nothing"), "{err}");
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
    let err = jsync::known_keys::KnownKeys::open(&path)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a regular file"), "{err}");
    std::fs::remove_file(&path).unwrap();
    let fifo = rustix::fs::mknodat(
        rustix::fs::CWD,
        &path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    );
    fifo.unwrap();
    let err = jsync::known_keys::KnownKeys::open(&path)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not a regular file"),
        "a FIFO, not waited on: {err}"
    );
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, vec![b'#'; (16 << 20) + 1]).unwrap();
    let err = jsync::known_keys::KnownKeys::open(&path)
        .unwrap_err()
        .to_string();
    assert!(err.contains("larger than"), "{err}");
    // (Keys and certificates are read so too.)
    let keys = Keys::new();
    std::fs::remove_file(keys.file(identity::CA_CERT)).unwrap();
    std::os::unix::fs::symlink("/dev/zero", keys.file(identity::CA_CERT)).unwrap();
    let err = ClientSecurity::from_config_dir(keys.path(), &TlsOptions::default()).unwrap_err();
    assert!(
        err.to_string().contains("ca.crt: not a regular file"),
        "{err}"
    );
}

/// Keys and certificates another user could replace are refused, as
/// sshd's StrictModes refuses them: a config directory or certificate
/// writable by group or others (a root jsrv took a world-writable
/// directory's keys, which any local user could swap for their own CA's,
/// and let that user's client write as root in the root).
#[test]
fn keys_another_user_could_replace_are_refused() {
    let keys = Keys::new();
    let load = || ServerSecurity::from_config_dir(keys.path(), &TlsOptions::default());
    assert!(load().is_ok());
    let chmod = |p: &std::path::Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    chmod(keys.path(), 0o777);
    let err = load().unwrap_err().to_string();
    assert!(
        err.contains("writable by group or others (mode 0777"),
        "{err}"
    );
    chmod(keys.path(), 0o700);
    for file in [identity::CA_CERT, identity::SERVER_CERT] {
        chmod(&keys.file(file), 0o664);
        let err = load().unwrap_err().to_string();
        assert!(err.contains("another user could replace"), "{file}: {err}");
        chmod(&keys.file(file), 0o644);
    }
    assert!(load().is_ok());
    // Another user's directory (as root, who can give it away).
    if rustix::process::geteuid().is_root() {
        std::os::unix::fs::chown(keys.path(), Some(65534), None).unwrap();
        let err = load().unwrap_err().to_string();
        assert!(err.contains("belongs to user 65534"), "{err}");
        std::os::unix::fs::chown(keys.path(), Some(0), None).unwrap();
        assert!(load().is_ok());
    }
}
