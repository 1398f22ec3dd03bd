//! Scenarios for the peer/circuit runtime over real TLS/TCP and QUIC connections on
//! loopback: services on both sides, many circuits, flow control, half-close, and
//! what each side sees when things go wrong.

use std::time::Duration;

use jsync::{Error, Services, Transport};
use jsync_tests::{client, pseudo_random, serve, CutProxy, Keys, TestServer, TRANSPORTS};
use proto::{Fragment, Op};
use tokio::sync::mpsc;
use tokio::time::timeout;

fn data(payload: Vec<u8>) -> Fragment {
    Fragment::new(Op::DATA).with_payload(payload)
}

/// Reads the first circuit the other side opens until it ends, and says how it
/// ended ("clean end" or "error: ..."), whether the failure hit `accept` or `recv`.
async fn drain_outcome(peer: &jsync::Peer) -> String {
    let mut c = match peer.accept().await {
        Ok(Some(c)) => c,
        Ok(None) => return "no circuit".into(),
        Err(e) => return format!("error: {e}"),
    };
    loop {
        match c.recv().await {
            Ok(Some(_)) => continue,
            Ok(None) => return "clean end".into(),
            Err(e) => return format!("error: {e}"),
        }
    }
}

/// Echoes every fragment on every circuit, then finishes the circuit.
fn echo_services() -> Services {
    Services::new().with("echo", |peer| async move {
        while let Some(c) = peer.accept().await? {
            tokio::spawn(async move {
                let mut c = c;
                while let Some(f) = c.recv().await? {
                    c.send(f).await?;
                }
                c.finish().await?;
                Ok::<_, jsync::Error>(())
            });
        }
        Ok(())
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn services_on_both_sides_open_circuits_to_each_other() {
    for t in TRANSPORTS {
        let keys = Keys::new();
        // The server's service starts a service on the client and talks to it.
        let server = Services::new().with("ask-back", |peer| async move {
            let back = peer
                .link()
                .start("client-echo", &["from-server".into()])
                .await?;
            let mut c = back.open().await?;
            c.send(data(b"ping from server".to_vec())).await?;
            c.finish().await?;
            let reply = c.recv().await?.expect("client echoed");
            anyhow::ensure!(reply.payload == b"ping from server");
            anyhow::ensure!(reply.subject == "from-server");
            // And the client's circuits to us work too.
            let mut mine = peer.accept().await?.expect("client opened a circuit");
            let f = mine.recv().await?.expect("data");
            // Wait for the client's FIN before replying and dropping the circuit:
            // a circuit dropped early stops the other side's sending.
            anyhow::ensure!(mine.recv().await?.is_none(), "client kept sending");
            mine.send(data([b"server got: ".as_slice(), &f.payload].concat()))
                .await?;
            mine.finish().await?;
            Ok(())
        });
        let srv = TestServer::start(keys.server(), server);
        let client_services = Services::new().with("client-echo", |peer| async move {
            let tag = peer.args().first().cloned().unwrap_or_default();
            let mut c = peer.accept().await?.expect("server opened a circuit");
            while let Some(f) = c.recv().await? {
                c.send(f.with_subject(&tag)).await?;
            }
            c.finish().await?;
            Ok(())
        });
        let link = client(keys.client(), client_services, t)
            .connect(&srv.addr_string())
            .await
            .unwrap_or_else(|e| panic!("{t}: connect: {e}"));
        assert!(link.remote_fingerprint().unwrap().starts_with("SHA256:"));
        let peer = link.start("ask-back", &[]).await.unwrap();
        let mut c = peer.open().await.unwrap();
        c.send(data(b"hello".to_vec())).await.unwrap();
        c.finish().await.unwrap();
        let reply = c.recv().await.unwrap().expect("reply");
        assert_eq!(reply.payload, b"server got: hello", "{t}");
        assert!(c.recv().await.unwrap().is_none(), "{t}: FIN after reply");
        // The service returned Ok: our accept ends.
        assert!(timeout(Duration::from_secs(5), peer.accept())
            .await
            .unwrap()
            .unwrap()
            .is_none());
        link.close("done").await;
        srv.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_concurrent_circuits_on_one_connection() {
    for t in TRANSPORTS {
        let keys = Keys::new();
        let (_srv, link) = serve(&keys, echo_services(), t).await;
        let peer = link.start("echo", &[]).await.unwrap();
        let mut circuits = Vec::new();
        for _ in 0..1000 {
            circuits.push(peer.open().await.unwrap());
        }
        // All 1,000 are open at once; now use them concurrently.
        let mut tasks = tokio::task::JoinSet::new();
        for (i, mut c) in circuits.into_iter().enumerate() {
            tasks.spawn(async move {
                let body = format!("circuit {i}").into_bytes();
                c.send(data(body.clone()).with_part(i as u64)).await?;
                c.finish().await?;
                let f = c.recv().await?.expect("echo");
                assert_eq!(f.payload, body);
                assert_eq!(f.part, i as u64);
                assert!(c.recv().await?.is_none());
                Ok::<_, Error>(())
            });
        }
        let mut done = 0;
        while let Some(r) = timeout(Duration::from_secs(60), tasks.join_next())
            .await
            .unwrap()
        {
            r.unwrap().unwrap_or_else(|e| panic!("{t}: {e}"));
            done += 1;
        }
        assert_eq!(done, 1000, "{t}");
        link.close("done").await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_reader_slows_only_its_own_circuit() {
    let total: usize = std::env::var("JSYNC_TEST_STALL_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
        << 20;
    for t in TRANSPORTS {
        let keys = Keys::new();
        // The server never reads circuit 1; it drains circuit 2 and reports the count.
        let (stalled_tx, mut stalled_rx) = mpsc::unbounded_channel();
        let services = Services::new().with("sink", move |peer| {
            let stalled_tx = stalled_tx.clone();
            async move {
                let stalled = peer.accept().await?.expect("first circuit");
                let _ = stalled_tx.send(()); // hold it open, unread
                let mut fast = peer.accept().await?.expect("second circuit");
                let mut got = 0usize;
                while let Some(f) = fast.recv().await? {
                    got += f.payload.len();
                }
                fast.send(data(got.to_string().into_bytes())).await?;
                fast.finish().await?;
                drop(stalled);
                Ok(())
            }
        });
        let (_srv, link) = serve(&keys, services, t).await;
        let peer = link.start("sink", &[]).await.unwrap();
        let mut stalled = peer.open().await.unwrap();
        stalled.send(data(vec![1; 16])).await.unwrap();
        stalled_rx.recv().await.unwrap();
        // Fill the stalled circuit until its window is exhausted (the send blocks).
        let filler = tokio::spawn(async move {
            let chunk = vec![7u8; 1 << 20];
            loop {
                if stalled.send(data(chunk.clone())).await.is_err() {
                    break;
                }
            }
        });
        let mut fast = peer.open().await.unwrap();
        let chunk = pseudo_random(1 << 20, 42);
        let moved = timeout(Duration::from_secs(300), async {
            let mut sent = 0;
            while sent < total {
                fast.send(data(chunk.clone())).await.unwrap();
                sent += chunk.len();
            }
            fast.finish().await.unwrap();
            fast.recv().await.unwrap().expect("count")
        })
        .await
        .unwrap_or_else(|_| panic!("{t}: 200 MB did not move while another circuit was stalled"));
        assert_eq!(
            String::from_utf8(moved.payload).unwrap(),
            total.to_string(),
            "{t}"
        );
        assert!(
            !filler.is_finished(),
            "{t}: the stalled circuit should still be blocked"
        );
        filler.abort();
        link.close("done").await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn half_close_works_in_both_directions() {
    for t in TRANSPORTS {
        let keys = Keys::new();
        // Server: reads everything first (client half-closed), then sends its own
        // data, half-closes, and expects the client to still be able to send.
        let services = Services::new().with("half", |peer| async move {
            let mut c = peer.accept().await?.expect("circuit");
            let mut n = 0;
            while let Some(_f) = c.recv().await? {
                n += 1;
            }
            anyhow::ensure!(n == 3, "got {n} fragments before FIN");
            for i in 0..3u64 {
                c.send(data(vec![i as u8]).with_part(i)).await?;
            }
            c.finish().await?;
            // Second circuit: the server finishes first while reading.
            let mut d = peer.accept().await?.expect("second circuit");
            d.send(data(b"server done".to_vec())).await?;
            d.finish().await?;
            let mut got = Vec::new();
            while let Some(f) = d.recv().await? {
                got.extend(f.payload);
            }
            anyhow::ensure!(got == b"client still sending", "got {got:?}");
            Ok(())
        });
        let (_srv, link) = serve(&keys, services, t).await;
        let peer = link.start("half", &[]).await.unwrap();
        let mut c = peer.open().await.unwrap();
        for i in 0..3u64 {
            c.send(data(vec![i as u8]).with_part(i)).await.unwrap();
        }
        c.finish().await.unwrap();
        assert!(
            c.send(data(vec![9])).await.is_err(),
            "{t}: send after finish must fail"
        );
        for i in 0..3u64 {
            assert_eq!(c.recv().await.unwrap().unwrap().part, i, "{t}");
        }
        assert!(c.recv().await.unwrap().is_none(), "{t}");

        let mut d = peer.open().await.unwrap();
        let f = d.recv().await.unwrap().unwrap();
        assert_eq!(f.payload, b"server done");
        assert!(d.recv().await.unwrap().is_none(), "{t}: server half-closed");
        d.send(data(b"client still sending".to_vec()))
            .await
            .unwrap();
        d.finish().await.unwrap();
        assert!(
            timeout(Duration::from_secs(5), peer.accept())
                .await
                .unwrap()
                .unwrap()
                .is_none(),
            "{t}: service ended Ok"
        );
        link.close("done").await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cut_connection_fails_circuits_on_both_sides() {
    for t in TRANSPORTS {
        let keys = Keys::new();
        let (server_saw_tx, mut server_saw) = mpsc::unbounded_channel::<String>();
        let services = Services::new().with("stream", move |peer| {
            let tx = server_saw_tx.clone();
            async move {
                let _ = tx.send(drain_outcome(&peer).await);
                Ok(())
            }
        });
        let srv = TestServer::start(keys.server(), services);
        let proxy = match t {
            Transport::Tcp => CutProxy::tcp(srv.addr).await,
            Transport::Quic => CutProxy::udp(srv.addr).await,
        };
        let link = client(keys.client(), Services::new(), t)
            .connect(&proxy.addr.to_string())
            .await
            .unwrap();
        let peer = link.start("stream", &[]).await.unwrap();
        let mut c = peer.open().await.unwrap();
        for _ in 0..4 {
            c.send(data(vec![5; 64 << 10])).await.unwrap();
        }
        proxy.cut();
        // The client keeps sending or waits for a reply: either way it must fail.
        let client_outcome = timeout(Duration::from_secs(30), async {
            loop {
                if let Err(e) = c.send(data(vec![5; 64 << 10])).await {
                    break e;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{t}: client did not notice the cut"));
        assert!(
            matches!(client_outcome, Error::ConnectionLost { .. }),
            "{t}: client got {client_outcome:?}"
        );
        let server_outcome = timeout(Duration::from_secs(30), server_saw.recv())
            .await
            .unwrap_or_else(|_| panic!("{t}: server did not notice the cut"))
            .unwrap();
        assert!(
            server_outcome.starts_with("error: connection to client"),
            "{t}: server saw {server_outcome}"
        );
        // Over TCP the connection's own words (a reset, a TLS stream cut
        // short), not only "the peer closed the connection".
        if t == Transport::Tcp {
            assert!(
                server_outcome.contains("lost: connection error: "),
                "{t}: server saw {server_outcome}"
            );
        }
    }
}

/// A service that passes on the payloads of the first circuit opened to
/// it, and then how that circuit ended.
fn hold_services(
    got: mpsc::UnboundedSender<Vec<u8>>,
    saw: mpsc::UnboundedSender<String>,
) -> Services {
    Services::new().with("hold", move |peer| {
        let (got, saw) = (got.clone(), saw.clone());
        async move {
            let mut c = peer.accept().await?.expect("a circuit");
            let outcome = loop {
                match c.recv().await {
                    Ok(Some(f)) => {
                        let _ = got.send(f.payload.to_vec());
                    }
                    Ok(None) => break "clean end".to_string(),
                    Err(e) => break format!("error: {e}"),
                }
            };
            let _ = saw.send(outcome);
            Ok(())
        }
    })
}

/// A link is held by its clones, peers and circuits, not by its own tasks:
/// when a program drops the last of them without `close`, the link closes
/// and the other side's service learns why (it used to run, and keep its
/// connection, until the server stopped). A link closed on purpose gives
/// its reason (which raced the connection's end, saying less, and often
/// lost).
#[tokio::test(flavor = "multi_thread")]
async fn a_link_whose_every_handle_is_dropped_closes() {
    for t in TRANSPORTS {
        let keys = Keys::new();
        let (got_tx, mut got) = mpsc::unbounded_channel::<Vec<u8>>();
        let (saw_tx, mut saw) = mpsc::unbounded_channel::<String>();
        let (_srv, link) = serve(&keys, hold_services(got_tx, saw_tx), t).await;
        let peer = link.start("hold", &[]).await.unwrap();
        let mut c = peer.open().await.unwrap();
        c.send(data(b"one".to_vec())).await.unwrap();
        // The circuit alone keeps the link: it still carries data.
        drop((peer, link));
        tokio::time::sleep(Duration::from_millis(300)).await;
        c.send(data(b"two".to_vec())).await.unwrap();
        for want in [&b"one"[..], b"two"] {
            let got = timeout(Duration::from_secs(10), got.recv()).await;
            assert_eq!(got.unwrap().unwrap(), want, "{t}");
        }
        // Its last handle gone, the link closes and says why.
        drop(c);
        let outcome = timeout(Duration::from_secs(10), saw.recv())
            .await
            .unwrap_or_else(|_| panic!("{t}: the server's service still runs"))
            .unwrap();
        assert!(
            outcome.contains("the peer closed the connection: every handle to it was dropped"),
            "{t}: the server's service saw {outcome}"
        );

        let (got_tx, mut got) = mpsc::unbounded_channel::<Vec<u8>>();
        let (saw_tx, mut saw) = mpsc::unbounded_channel::<String>();
        let (_srv, link) = serve(&keys, hold_services(got_tx, saw_tx), t).await;
        let peer = link.start("hold", &[]).await.unwrap();
        let mut c = peer.open().await.unwrap();
        c.send(data(b"one".to_vec())).await.unwrap();
        let got = timeout(Duration::from_secs(10), got.recv()).await;
        assert_eq!(got.unwrap().unwrap(), b"one", "{t}");
        link.close("finished here").await;
        let outcome = timeout(Duration::from_secs(10), saw.recv())
            .await
            .unwrap_or_else(|_| panic!("{t}: the server's service still runs"))
            .unwrap();
        assert!(
            outcome.contains("the peer closed the connection: finished here"),
            "{t}: the server's service saw {outcome}"
        );
    }
}

/// A service may open circuits, fill them and return at once: its "done"
/// can overtake the circuits on the way, and the other side's `accept` still
/// yields each of them before it says there are no more.
#[tokio::test(flavor = "multi_thread")]
async fn circuits_a_finished_service_opened_are_all_accepted() {
    for t in TRANSPORTS {
        let keys = Keys::new();
        let services = Services::new().with("tell", |peer| async move {
            for i in 0..3u8 {
                let mut c = peer.open().await?;
                c.send(data(vec![i])).await?;
                c.finish().await?;
            }
            Ok(())
        });
        let (_srv, link) = serve(&keys, services, t).await;
        for round in 0..100 {
            let peer = link.start("tell", &[]).await.unwrap();
            let mut got = Vec::new();
            while let Some(mut c) = timeout(Duration::from_secs(10), peer.accept())
                .await
                .unwrap()
                .unwrap()
            {
                while let Some(f) = c.recv().await.unwrap() {
                    got.extend(f.payload);
                }
            }
            got.sort();
            assert_eq!(got, [0, 1, 2], "{t}, round {round}");
            peer.close();
        }
        link.close("done").await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_service_sends_its_reason_to_the_other_side() {
    for t in TRANSPORTS {
        let keys = Keys::new();
        let services = Services::new().with("fails", |peer| async move {
            let mut c = peer.accept().await?.expect("circuit");
            let _ = c.recv().await?;
            anyhow::bail!("disk full while writing /srv/x")
        });
        let (_srv, link) = serve(&keys, services, t).await;
        let peer = link.start("fails", &[]).await.unwrap();
        let mut c = peer.open().await.unwrap();
        // The service fails as soon as the frame arrives, so the send itself
        // may already see it; otherwise the next receive does.
        let err = match c.send(data(vec![1])).await {
            Err(e) => e,
            Ok(()) => timeout(Duration::from_secs(10), c.recv())
                .await
                .unwrap()
                .unwrap_err(),
        };
        assert!(
            err.to_string().contains("disk full while writing /srv/x"),
            "{t}: {err}"
        );
        assert!(matches!(err, Error::Remote { .. }), "{t}: {err:?}");

        let err = link.start("no-such", &[]).await.unwrap_err();
        assert!(matches!(err, Error::NoSuchService { .. }), "{t}: {err:?}");
        link.close("done").await;
    }
}

/// A service that panics fails its peer as one that returns an error does:
/// the other side's receive gets the panic's message (it waited for good),
/// and the link goes on.
#[tokio::test(flavor = "multi_thread")]
async fn a_service_that_panics_fails_its_peer() {
    for t in TRANSPORTS {
        let keys = Keys::new();
        let services = echo_services().with("panics", |peer| async move {
            let mut c = peer.accept().await?.expect("circuit");
            let _ = c.recv().await?;
            panic!("index out of bounds in the service");
        });
        let (_srv, link) = serve(&keys, services, t).await;
        let peer = link.start("panics", &[]).await.unwrap();
        let mut c = peer.open().await.unwrap();
        let err = match c.send(data(vec![1])).await {
            Err(e) => e,
            Ok(()) => timeout(Duration::from_secs(10), c.recv())
                .await
                .expect("the panic reaches the other side")
                .unwrap_err(),
        };
        assert!(matches!(err, Error::Remote { .. }), "{t}: {err:?}");
        assert!(
            err.to_string()
                .contains("panicked: index out of bounds in the service"),
            "{t}: {err}"
        );
        let err = timeout(Duration::from_secs(10), peer.accept())
            .await
            .expect("accept ends too")
            .unwrap_err();
        assert!(err.to_string().contains("panicked"), "{t}: {err}");
        // (The link still serves.)
        let echo = link.start("echo", &[]).await.unwrap();
        let mut c = echo.open().await.unwrap();
        c.send(data(b"still here".to_vec())).await.unwrap();
        assert_eq!(
            c.recv().await.unwrap().unwrap().payload,
            b"still here",
            "{t}"
        );
        link.close("done").await;
    }
}

/// What the protocol cannot carry is refused where it is asked for, as a
/// usage error, and nothing is sent: a service name or arguments over the
/// limits of one fragment to `start` (it failed the whole link), a subject,
/// argument or error text over them to `send`; a circuit to a closed peer.
/// The link and the circuit go on. A send dropped part-way leaves its
/// circuit unable to send, saying so.
#[tokio::test(flavor = "multi_thread")]
async fn what_the_protocol_cannot_carry_is_a_usage_error() {
    for t in TRANSPORTS {
        let keys = Keys::new();
        let (_srv, link) = serve(&keys, echo_services(), t).await;
        let usage = |r: Result<(), Error>, what: &str| match r {
            Err(Error::Usage(m)) => m,
            other => panic!("{t}: {what}: {other:?}"),
        };
        let long = "x".repeat(proto::MAX_ARG + 1);
        let r = link
            .start("echo", std::slice::from_ref(&long))
            .await
            .map(drop);
        assert!(usage(r, "long arg").contains("arg too large"), "{t}");
        let r = link
            .start(&"e".repeat(proto::MAX_SUBJECT + 1), &[])
            .await
            .map(drop);
        usage(r, "long name");
        let many = vec![String::new(); proto::MAX_ARGS + 1];
        usage(link.start("echo", &many).await.map(drop), "many args");

        let peer = link.start("echo", &[]).await.unwrap();
        let mut c = peer.open().await.unwrap();
        let too_much = [
            data(vec![]).with_subject("s".repeat(proto::MAX_SUBJECT + 1)),
            data(vec![]).with_args(vec![long.clone()]),
            data(vec![]).with_error("e".repeat(proto::MAX_ERROR + 1)),
            data(vec![0; proto::MAX_PAYLOAD + 1]),
        ];
        for f in too_much {
            usage(c.send(f).await, "send");
        }
        c.send(data(b"fits".to_vec())).await.unwrap();
        assert_eq!(c.recv().await.unwrap().unwrap().payload, b"fits", "{t}");

        // A send dropped while it waits on a full window, part-way.
        let mut stalled = peer.open().await.unwrap();
        let mut dropped = false;
        for _ in 0..64 {
            let f = data(vec![7; proto::MAX_PAYLOAD]);
            if timeout(Duration::from_millis(200), stalled.send(f))
                .await
                .is_err()
            {
                dropped = true;
                break;
            }
        }
        assert!(dropped, "{t}: the echo's window never filled");
        let m = usage(stalled.send(data(vec![1])).await, "after a dropped send");
        assert!(m.contains("dropped part-way"), "{t}: {m}");

        peer.close();
        usage(peer.open().await.map(drop), "open after close");
        link.close("done").await;
    }
}

/// A service that fails at once (a pull of a path the server refuses) races
/// the circuit the starter opens right away: the circuit reaches the other
/// side after the peer is gone. Its refusal carries the service's reason,
/// not "no peer N", so the starter reports what went wrong.
#[tokio::test(flavor = "multi_thread")]
async fn a_circuit_to_a_service_that_failed_at_once_carries_its_reason() {
    for t in TRANSPORTS {
        let keys = Keys::new();
        let services = Services::new().with("refuses", |_peer| async move {
            anyhow::bail!("src/x: path escapes the root")
        });
        let (_srv, link) = serve(&keys, services, t).await;
        for round in 0..200 {
            let peer = link.start("refuses", &[]).await.unwrap();
            let outcome = match peer.open().await {
                Err(e) => e.to_string(),
                Ok(mut c) => match timeout(Duration::from_secs(10), c.recv()).await.unwrap() {
                    Err(e) => e.to_string(),
                    Ok(f) => panic!("{t}, round {round}: a circuit to a failed peer: {f:?}"),
                },
            };
            assert!(
                outcome.contains("src/x: path escapes the root"),
                "{t}, round {round}: {outcome}"
            );
        }
        link.close("done").await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_a_peer_closes_its_circuits_on_both_sides() {
    for t in TRANSPORTS {
        let keys = Keys::new();
        let (saw_tx, mut saw) = mpsc::unbounded_channel::<String>();
        let services = Services::new().with("wait", move |peer| {
            let tx = saw_tx.clone();
            async move {
                let _ = tx.send(drain_outcome(&peer).await);
                Ok(())
            }
        });
        let (_srv, link) = serve(&keys, services, t).await;
        let peer = link.start("wait", &[]).await.unwrap();
        let mut c = peer.open().await.unwrap();
        c.send(data(vec![1])).await.unwrap();
        // Let the server take the first fragment... it waits for the next.
        let mut c2 = peer.open().await.unwrap();
        peer.cancel();
        assert!(matches!(
            c2.send(data(vec![1])).await,
            Err(Error::Cancelled)
        ));
        let remote = timeout(Duration::from_secs(10), saw.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(
            remote.starts_with("error: ") && remote.contains("cancelled"),
            "{t}: {remote}"
        );
        // The link itself is still fine.
        assert!(!link.is_closed());
        link.close("done").await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_peer_is_noticed_by_keepalives_within_the_idle_timeout() {
    // No RST, no FIN: the TCP connection stays open but nothing arrives. Only the
    // runtime's pings and idle watchdog (3 s in these tests) can notice.
    let keys = Keys::new();
    let srv = TestServer::start(keys.server(), echo_services());
    let proxy = CutProxy::tcp_blackhole(srv.addr).await;
    let link = client(keys.client(), Services::new(), Transport::Tcp)
        .connect(&proxy.addr.to_string())
        .await
        .unwrap();
    let peer = link.start("echo", &[]).await.unwrap();
    let mut c = peer.open().await.unwrap();
    c.send(data(b"before".to_vec())).await.unwrap();
    assert_eq!(c.recv().await.unwrap().unwrap().payload, b"before");
    proxy.cut();
    let started = std::time::Instant::now();
    let err = timeout(Duration::from_secs(20), c.recv())
        .await
        .expect("the dead peer was never noticed")
        .unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(err, Error::ConnectionLost { .. }), "{err:?}");
    assert!(err.to_string().contains("keepalive"), "{err}");
    assert!(
        waited < Duration::from_secs(10),
        "noticed only after {waited:?}"
    );
}
