//! jsrv as a daemon: read-only roots, many clients at once, clean shutdown on
//! SIGTERM, and a pull cut off by a dying server.

use std::io::Write;
use std::time::{Duration, Instant};

use jsync_tests::bins::{bin, Jsrv};
use jsync_tests::tree::{assert_same_tree, make_tree};
use jsync_tests::{pseudo_random, Keys};

/// The names in `dir`, sorted.
fn names_in(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_read_only_server_refuses_pushes_and_serves_pulls() {
    let keys = Keys::new();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    make_tree(&root.join("data"), 1 << 20);
    let srv = Jsrv::start(keys.path(), &root, &["--read-only"]);
    let src = work.path().join("f.txt");
    std::fs::write(&src, b"x").unwrap();
    let out = srv.jcp(keys.path(), &[src.to_str().unwrap(), "127.0.0.1:"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("read-only"));
    assert!(!root.join("f.txt").exists());
    let dst = work.path().join("copy");
    let out = srv.jcp(keys.path(), &["127.0.0.1:data/", dst.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_same_tree(&root.join("data"), &dst);
}

#[test]
fn many_clients_push_at_once() {
    let keys = Keys::new();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let src = work.path().join("src");
    make_tree(&src, 4 << 20);
    let srv = Jsrv::start(keys.path(), &root, &[]);
    let src_arg = format!("{}/", src.display());
    let children: Vec<_> = (0..6)
        .map(|i| {
            let mut cmd = std::process::Command::new(bin("jcp"));
            cmd.arg("--config-dir").arg(keys.path());
            cmd.args(["--port", &srv.port.to_string()]);
            if i % 2 == 1 {
                cmd.arg("--quic");
            }
            cmd.args([src_arg.as_str(), &format!("127.0.0.1:client{i}")]);
            cmd.output_async()
        })
        .collect();
    for (i, c) in children.into_iter().enumerate() {
        let out = c.join().unwrap();
        assert!(
            out.status.success(),
            "client {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_same_tree(&src, &root.join(format!("client{i}")));
    }
}

trait OutputAsync {
    fn output_async(&mut self) -> std::thread::JoinHandle<std::process::Output>;
}

impl OutputAsync for std::process::Command {
    fn output_async(&mut self) -> std::thread::JoinHandle<std::process::Output> {
        let child = self
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::spawn(move || child.wait_with_output().unwrap())
    }
}

#[test]
fn sigterm_stops_jsrv_cleanly() {
    let keys = Keys::new();
    let root = tempfile::tempdir().unwrap();
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let mut srv = Jsrv::start(keys.path(), root.path(), &[]);
        let pid = srv.child.id() as libc::pid_t;
        let status = std::process::Command::new("kill")
            .args([format!("-{sig}"), pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(15);
        let code = loop {
            if let Some(s) = srv.child.try_wait().unwrap() {
                break s.code();
            }
            assert!(
                Instant::now() < deadline,
                "jsrv did not exit after signal {sig}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(code, Some(0), "jsrv exit code after signal {sig}");
    }
}

/// SIGHUP (logrotate, `systemctl reload`) is said and ignored: it ended
/// jsrv and its transfers. SIGTERM in the middle of a push lets it run for
/// the grace period, then ends it, and the server keeps what arrived as its
/// partial file. (The server also waits for its services before it exits:
/// without that the process could end first, leaving a temp file, which
/// this test's timing does not show; a helper's script saw it.)
#[test]
fn sighup_is_ignored_and_sigterm_keeps_a_push_s_partial() {
    let keys = Keys::new();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let src = work.path().join("big.bin");
    let mut f = std::fs::File::create(&src).unwrap();
    for i in 0..8 {
        f.write_all(&pseudo_random(8 << 20, 700 + i)).unwrap();
    }
    drop(f);
    let mut srv = Jsrv::start(keys.path(), &root, &[]);
    let pid = srv.child.id().to_string();
    let kill = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap();
        assert!(ok.success());
    };
    kill("-HUP");
    std::thread::sleep(Duration::from_millis(300));
    assert!(srv.child.try_wait().unwrap().is_none(), "SIGHUP ended jsrv");
    // 64 MiB at 8 MB/s: still going when the signal comes.
    let push = std::process::Command::new(bin("jcp"))
        .arg("--config-dir")
        .arg(keys.path())
        .args(["--port", &srv.port.to_string(), "--bwlimit", "8M"])
        .args([src.to_str().unwrap(), "127.0.0.1:"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    kill("-TERM");
    let out = push.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while srv.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "jsrv did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
    let names = names_in(&root);
    assert_eq!(names, [".big.bin.jsync-partial"], "what the push left");
    let kept = std::fs::metadata(root.join(".big.bin.jsync-partial"))
        .unwrap()
        .len();
    assert!(kept > 0, "an empty partial");
}

#[test]
fn a_pull_cut_off_by_a_dying_server_leaves_the_local_file_intact() {
    let keys = Keys::new();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let mut f = std::fs::File::create(root.join("big.bin")).unwrap();
    for i in 0..40 {
        f.write_all(&pseudo_random(8 << 20, 500 + i)).unwrap();
    }
    drop(f);
    let local = work.path().join("local");
    std::fs::create_dir_all(&local).unwrap();
    let old = pseudo_random(1 << 20, 3);
    std::fs::write(local.join("big.bin"), &old).unwrap();
    // `jcp` pulling big.bin from the server on `port` into `local`.
    let pull = |port: u16| {
        let mut c = std::process::Command::new(bin("jcp"));
        c.arg("--config-dir").arg(keys.path()).args([
            "--port",
            &port.to_string(),
            "127.0.0.1:big.bin",
            local.to_str().unwrap(),
        ]);
        c
    };
    let mut srv = Jsrv::start(keys.path(), &root, &[]);
    let child = pull(srv.port)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline
        && !std::fs::read_dir(&local).unwrap().any(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .contains("jsync-tmp")
        })
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    srv.kill();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("127.0.0.1"));
    assert_eq!(
        std::fs::read(local.join("big.bin")).unwrap(),
        old,
        "the local file was torn"
    );
    // What arrived may be kept as the partial file a later run resumes from
    // (`--partial` semantics); no temp file may stay behind.
    let left = names_in(&local);
    assert!(
        left == ["big.bin"] || left == [".big.bin.jsync-partial", "big.bin"],
        "temp files left behind: {left:?}"
    );

    // A second pull completes and consumes the partial file.
    let srv = Jsrv::start(keys.path(), &root, &[]);
    let out = pull(srv.port).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        std::fs::read(local.join("big.bin")).unwrap()
            == std::fs::read(root.join("big.bin")).unwrap(),
        "the resumed pull did not complete the file"
    );
    assert_eq!(names_in(&local), ["big.bin"]);
}

/// `--timeout`: a server that stops answering (SIGSTOP, as a hung machine)
/// fails the pull once it has been silent that long, with the connection's
/// exit code, instead of after the default 20 s; the local file stays whole.
#[test]
fn timeout_gives_up_on_a_server_gone_silent() {
    use rustix::process::{kill_process, Pid, Signal};
    let keys = Keys::new();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("slow.bin"), pseudo_random(4 << 20, 77)).unwrap();
    let local = work.path().join("slow.bin");
    let mut srv = Jsrv::start(keys.path(), &root, &[]);
    // 4 MiB at 256 KiB/s: 16 s, unless the server falls silent first.
    let child = std::process::Command::new(bin("jcp"))
        .arg("--config-dir")
        .arg(keys.path())
        .args([
            "--port",
            &srv.port.to_string(),
            "-q",
            "--timeout=2",
            "--bwlimit=256",
        ])
        .args(["127.0.0.1:slow.bin", local.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let pid = Pid::from_child(&srv.child);
    kill_process(pid, Signal::STOP).unwrap();
    let stopped = Instant::now();
    let out = child.wait_with_output().unwrap();
    let waited = stopped.elapsed();
    kill_process(pid, Signal::CONT).unwrap();
    srv.kill();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    // (The silence it names is the one measured: 2 s or a little more.)
    assert!(err.contains("no response from the peer for "), "{err}");
    assert!(waited < Duration::from_secs(10), "gave up after {waited:?}");
    assert!(!local.exists(), "no torn file at the target");
}

/// The partial file a stopped copy of big.bin leaves.
const PARTIAL: &str = ".big.bin.jsync-partial";

/// After a copy of big.bin (`old` there, `new` sent) stopped part-way: the
/// target is as it was, never torn, and what arrived is kept as its partial
/// file. The receiver keeps it before it ends (jcp's in-process one before
/// jcp exits); jsrv does so once it has seen the connection close.
fn kept_as_partial(what: &str, dst: &std::path::Path, old: &[u8], new: &[u8]) {
    assert_eq!(
        std::fs::read(dst.join("big.bin")).unwrap(),
        old,
        "{what}: torn"
    );
    let waited = Instant::now();
    while what == "push"
        && !dst.join(PARTIAL).exists()
        && waited.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(names_in(dst), [PARTIAL, "big.bin"], "{what}");
    let kept = std::fs::read(dst.join(PARTIAL)).unwrap();
    assert!(
        !kept.is_empty() && new.starts_with(&kept),
        "{what}: the partial file is not what arrived"
    );
}

/// `--stop-after`: a copy still going when its time is up stops there, each
/// way (locally, pushed, pulled): rsync's exit code 30 and a message saying
/// why, the target left as it was (never torn), and what arrived of the
/// file in flight kept as its partial file where the receiver outlives the
/// stop (jsrv for a push, jcp itself for a pull), which the next run takes
/// up and finishes.
#[test]
fn stop_after_stops_a_copy_in_flight_each_way() {
    use jsync_tests::bins::{assert_fails, assert_ok, run};
    let keys = Keys::new();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let new = pseudo_random(4 << 20, 5);
    let old = pseudo_random(4 << 20, 6);
    std::fs::write(src.join("big.bin"), &new).unwrap();
    let root = work.path().join("root");
    std::fs::create_dir_all(root.join("pushed")).unwrap();
    let srv = Jsrv::start(keys.path(), &root, &[]);
    let src_arg = format!("{}/", src.display());
    // 4 MiB at 512 KiB/s takes 8 s; the limit comes after 1.8 s.
    let limited = ["--bwlimit=512", "--stop-after=0.03"];
    let local = work.path().join("local");
    let pulled = work.path().join("pulled");
    let pushed = root.join("pushed");
    for dst in [&local, &pulled, &pushed] {
        std::fs::create_dir_all(dst).unwrap();
        std::fs::write(dst.join("big.bin"), &old).unwrap();
    }
    type Jcp<'a> = &'a dyn Fn(&[&str]) -> std::process::Output;
    let ways: [(&str, &std::path::Path, Jcp<'_>); 3] = [
        ("local", &local, &|opts| {
            let mut args = opts.to_vec();
            args.extend([src_arg.as_str(), local.to_str().unwrap()]);
            run("jcp", &args)
        }),
        ("push", &pushed, &|opts| {
            let mut args = opts.to_vec();
            args.extend([src_arg.as_str(), "127.0.0.1:pushed/"]);
            srv.jcp(keys.path(), &args)
        }),
        ("pull", &pulled, &|opts| {
            let mut args = opts.to_vec();
            args.extend(["127.0.0.1:pushed/", pulled.to_str().unwrap()]);
            srv.jcp(keys.path(), &args)
        }),
    ];
    // (The pull takes what the push put there: the new file.)
    for (what, dst, jcp) in ways {
        let began = Instant::now();
        let out = jcp(&limited);
        let took = began.elapsed();
        assert_fails(&out, 30, "time limit", what);
        assert!(
            took >= Duration::from_millis(1700) && took < Duration::from_secs(6),
            "{what}: stopped after {took:?}"
        );
        kept_as_partial(what, dst, &old, &new);
        // The next run, without the limit, finishes the file.
        let out = jcp(&[]);
        assert_ok(&out, what);
        assert_eq!(std::fs::read(dst.join("big.bin")).unwrap(), new, "{what}");
        assert_eq!(names_in(dst), ["big.bin"], "{what}");
    }
}

/// SIGINT, SIGTERM or SIGHUP stop a copy in flight as rsync's do (exit 20,
/// saying so), each way: the target left as it was, what arrived kept as
/// its partial file (no temporary file left under a random name), which
/// the next run takes up and finishes.
#[test]
fn a_signal_stops_a_copy_in_flight_each_way() {
    use jsync_tests::bins::{assert_ok, bin};
    use rustix::process::Signal;
    let keys = Keys::new();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let new = pseudo_random(4 << 20, 7);
    let old = pseudo_random(4 << 20, 8);
    std::fs::write(src.join("big.bin"), &new).unwrap();
    let root = work.path().join("root");
    std::fs::create_dir_all(root.join("pushed")).unwrap();
    std::fs::write(root.join("pushed/big.bin"), &new).unwrap();
    let srv = Jsrv::start(keys.path(), &root, &[]);
    let src_arg = format!("{}/", src.display());
    let local = work.path().join("local");
    let pulled = work.path().join("pulled");
    let pushed = root.join("pushed-too");
    for dst in [&local, &pulled, &pushed] {
        std::fs::create_dir_all(dst).unwrap();
        std::fs::write(dst.join("big.bin"), &old).unwrap();
    }
    let port = srv.port.to_string();
    let ways: [(&str, &std::path::Path, Vec<&str>, Signal); 3] = [
        (
            "local",
            &local,
            vec![&src_arg, local.to_str().unwrap()],
            Signal::INT,
        ),
        (
            "push",
            &pushed,
            vec![&src_arg, "127.0.0.1:pushed-too/"],
            Signal::TERM,
        ),
        (
            "pull",
            &pulled,
            vec!["127.0.0.1:pushed/", pulled.to_str().unwrap()],
            Signal::HUP,
        ),
    ];
    for (what, dst, operands, sig) in ways {
        let jcp = |extra: &[&str]| {
            std::process::Command::new(bin("jcp"))
                .arg("--config-dir")
                .arg(keys.path())
                .args(["--port", &port])
                .args(extra)
                .args(&operands)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        // 4 MiB at 512 KiB/s takes 8 s; the signal comes after 1.5 s.
        let child = jcp(&["--bwlimit=512"]);
        std::thread::sleep(Duration::from_millis(1500));
        let pid = rustix::process::Pid::from_child(&child);
        rustix::process::kill_process(pid, sig).unwrap();
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(20), "{what}: {err}");
        assert!(
            err.contains("received SIG") && err.contains("interrupted"),
            "{what}: {err}"
        );
        kept_as_partial(what, dst, &old, &new);
        let out = jcp(&[]).wait_with_output().unwrap();
        assert_ok(&out, what);
        assert_eq!(std::fs::read(dst.join("big.bin")).unwrap(), new, "{what}");
        assert_eq!(names_in(dst), ["big.bin"], "{what}");
    }
}

/// `jsrv --max-connections 1`: while one client is served, the next waits
/// to be taken (and is served once the first is done), and one whose
/// --contimeout runs out first fails saying so (exit 4).
#[test]
fn max_connections_makes_the_next_client_wait() {
    let keys = Keys::new();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("slow.bin"), pseudo_random(1 << 20, 3)).unwrap();
    std::fs::write(root.join("quick.txt"), b"quick").unwrap();
    let srv = Jsrv::start(keys.path(), &root, &["--max-connections", "1"]);
    let dst = |name: &str| work.path().join(name).display().to_string();
    // 1 MiB at 256 KiB/s: about 3 s.
    let (slow_dst, waiting_dst, late_dst) = (dst("slow.bin"), dst("waiting.txt"), dst("late.txt"));
    let began = Instant::now();
    // A run's output and when it ended.
    let timed = |args: &[&str]| (srv.jcp(keys.path(), args), began.elapsed());
    std::thread::scope(|s| {
        let slow = s.spawn(|| timed(&["--bwlimit=256", "127.0.0.1:slow.bin", &slow_dst]));
        std::thread::sleep(Duration::from_millis(500));
        let waiting = s.spawn(|| timed(&["--contimeout=30", "127.0.0.1:quick.txt", &waiting_dst]));
        std::thread::sleep(Duration::from_millis(200));
        let late = srv.jcp(
            keys.path(),
            &["--contimeout=1", "127.0.0.1:quick.txt", &late_dst],
        );
        jsync_tests::bins::assert_fails(&late, 4, "timed out", "the late client");
        let (slow, slow_took) = slow.join().unwrap();
        let (waiting, waiting_took) = waiting.join().unwrap();
        jsync_tests::bins::assert_ok(&slow, "the slow client");
        jsync_tests::bins::assert_ok(&waiting, "the waiting client");
        assert!(
            waiting_took >= Duration::from_millis(2500) && slow_took >= Duration::from_millis(2500),
            "the second client was served before the first was done: {waiting_took:?}, {slow_took:?}"
        );
    });
    assert_eq!(
        std::fs::read(work.path().join("waiting.txt")).unwrap(),
        b"quick"
    );
    assert!(!work.path().join("late.txt").exists());
}

/// --stop-after bounds the connect too: a server that takes the connection
/// and never answers is given up at the limit (exit 30), each way and over
/// QUIC, not after --contimeout.
#[test]
fn stop_after_bounds_a_connect_that_never_answers() {
    use jsync_tests::bins::assert_fails;
    let keys = Keys::new();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("f.txt");
    std::fs::write(&src, b"x").unwrap();
    // Takes TCP connections and holds them; QUIC datagrams go unanswered.
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = tcp.local_addr().unwrap().port();
    let udp = std::net::UdpSocket::bind(("127.0.0.1", port)).unwrap();
    let held = std::thread::spawn(move || tcp.incoming().take(4).collect::<Vec<_>>());
    let dst = work.path().join("dst");
    let port = port.to_string();
    let (src, dst) = (src.to_str().unwrap(), dst.to_str().unwrap());
    for (what, quic, args) in [
        ("push", false, [src, "127.0.0.1:f.txt"]),
        ("pull", false, ["127.0.0.1:f.txt", dst]),
        ("QUIC push", true, [src, "127.0.0.1:f.txt"]),
    ] {
        let mut cmd = std::process::Command::new(bin("jcp"));
        cmd.arg("--config-dir").arg(keys.path());
        cmd.args(["--port", &port, "--contimeout=60", "--stop-after=0.02"]);
        if quic {
            cmd.arg("--quic");
        }
        let began = Instant::now();
        let out = cmd.args(args).output().unwrap();
        let took = began.elapsed();
        assert_fails(&out, 30, "time limit", what);
        assert!(
            took >= Duration::from_millis(1100) && took < Duration::from_secs(20),
            "{what}: stopped after {took:?}"
        );
    }
    drop(udp);
    // (Unblocks the listener's thread if fewer connections came.)
    for _ in 0..4 {
        let _ = std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap()));
    }
    held.join().unwrap();
}

/// A successful push is logged as received, never as a failed service: the
/// client closes the connection as soon as it has the report, which may
/// reach the server before the end of the client's circuit does.
#[test]
fn successful_pushes_are_logged_as_received_not_failed() {
    let keys = Keys::new();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let src = work.path().join("f.txt");
    std::fs::write(&src, b"pushed\n").unwrap();
    let (mut srv, log) = Jsrv::start_logged(keys.path(), &root, &[]);
    const PUSHES: usize = 20;
    for i in 0..PUSHES {
        let out = srv.jcp(
            keys.path(),
            &[src.to_str().unwrap(), &format!("127.0.0.1:f{i}.txt")],
        );
        assert!(out.status.success(), "push {i}: {out:?}");
    }
    assert!(srv.terminate().success());
    let log = log.join().unwrap();
    assert!(!log.contains("service failed"), "{log}");
    assert_eq!(log.matches("push received").count(), PUSHES, "{log}");
}

/// `-4` and `-6` connect over one kind of address only, as ssh's: a jsrv on
/// 127.0.0.1 is reached by name with -4 (and over QUIC), and not at all
/// with -6 (exit 4, saying why); both at once is a usage error.
#[test]
fn minus_4_and_minus_6_choose_the_kind_of_address() {
    use jsync_tests::bins::{assert_fails, assert_ok};
    let keys = Keys::new();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let srv = Jsrv::start(keys.path(), &root, &[]);
    let src = work.path().join("f.txt");
    std::fs::write(&src, b"x").unwrap();
    let src = src.to_str().unwrap();
    assert_ok(&srv.jcp(keys.path(), &["-4", src, "localhost:a"]), "-4");
    assert_ok(
        &srv.jcp(keys.path(), &["--ipv4", "--quic", src, "127.0.0.1:b"]),
        "-4 QUIC",
    );
    assert_eq!(std::fs::read(root.join("a")).unwrap(), b"x");
    assert_eq!(std::fs::read(root.join("b")).unwrap(), b"x");
    let out = srv.jcp(keys.path(), &["-6", src, "127.0.0.1:c"]);
    assert_fails(&out, 4, "no IPv6 address found", "-6");
    let out = srv.jcp(keys.path(), &["-4", src, "[::1]:c"]);
    assert_fails(&out, 4, "no IPv4 address found", "-4 to ::1");
    assert!(!root.join("c").exists());
    let out = srv.jcp(keys.path(), &["-4", "-6", src, "127.0.0.1:c"]);
    assert_fails(&out, 2, "cannot be used with", "-4 -6");
}

/// `--address` (rsync's): connections go out from the local address given,
/// over TCP and QUIC (jsrv's log names the client by it), and to the
/// server's addresses of its kind only; an address this host does not have
/// fails the run, naming it (exit 4), and one of the other kind than `-4`
/// or `-6` is a usage error.
#[test]
fn address_chooses_where_connections_come_from() {
    use jsync_tests::bins::{assert_fails, assert_ok};
    let keys = Keys::new();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let (mut srv, log) = Jsrv::start_logged(keys.path(), &root, &[]);
    let src = work.path().join("f.txt");
    std::fs::write(&src, b"x").unwrap();
    let src = src.to_str().unwrap();
    let from = ["--address", "127.0.0.2"];
    assert_ok(
        &srv.jcp(keys.path(), &[&from[..], &[src, "127.0.0.1:a"]].concat()),
        "TCP",
    );
    let quic = [&from[..], &["--quic", src, "127.0.0.1:b"]].concat();
    assert_ok(&srv.jcp(keys.path(), &quic), "QUIC");
    assert_eq!(std::fs::read(root.join("a")).unwrap(), b"x");
    assert_eq!(std::fs::read(root.join("b")).unwrap(), b"x");
    // 192.0.2.1 (TEST-NET-1) is no address of this host.
    let out = srv.jcp(keys.path(), &["--address", "192.0.2.1", src, "127.0.0.1:c"]);
    assert_fails(&out, 4, "from 192.0.2.1 (--address)", "an address not here");
    let out = srv.jcp(keys.path(), &["--address", "::1", src, "127.0.0.1:c"]);
    assert_fails(&out, 4, "no IPv6 address found", "an IPv6 --address");
    assert_fails(&out, 4, "from ::1 (--address)", "an IPv6 --address");
    assert!(!root.join("c").exists());
    let out = srv.jcp(keys.path(), &["--address", "::1", "-4", src, "127.0.0.1:c"]);
    assert_fails(&out, 2, "another kind", "--address ::1 -4");
    assert!(srv.terminate().success());
    let log = log.join().unwrap();
    let connected = |from: &str| {
        let from = format!("client {from}:");
        let lines = log.lines().filter(|l| l.contains("client connected"));
        lines.filter(|l| l.contains(&from)).count()
    };
    assert_eq!(connected("127.0.0.2"), 2, "{log}");
    assert_eq!(connected("127.0.0.1"), 0, "{log}");
}
