//! `jsrv init` as a user runs it: files, modes, fingerprints, and never
//! overwriting a key.

use std::os::unix::fs::PermissionsExt;

use jsync_tests::bins::run;

#[test]
fn jsrv_init_makes_keys_once_and_says_what_a_client_needs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg");
    let out = run("jsrv", &["init", "--config-dir", cfg.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for name in [
        "ca.key",
        "ca.crt",
        "server.key",
        "server.crt",
        "client.key",
        "client.crt",
    ] {
        assert!(cfg.join(name).exists(), "{name} missing");
    }
    for key in ["ca.key", "server.key", "client.key"] {
        let mode = std::fs::metadata(cfg.join(key))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{key} mode {mode:o}");
    }
    assert_eq!(text.matches("SHA256:").count(), 3, "{text}");
    assert!(text.contains("ca.crt, client.crt and client.key"), "{text}");

    let before = std::fs::read(cfg.join("client.key")).unwrap();
    let again = run("jsrv", &["init", "--config-dir", cfg.to_str().unwrap()]);
    assert!(again.status.success());
    assert!(String::from_utf8(again.stdout).unwrap().contains("kept"));
    assert_eq!(
        std::fs::read(cfg.join("client.key")).unwrap(),
        before,
        "a key was overwritten"
    );
}

#[test]
fn jsrv_init_uses_jsync_config_dir_and_fails_loudly() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(jsync_tests::bins::bin("jsrv"))
        .arg("init")
        .env("JSYNC_CONFIG_DIR", dir.path().join("env-cfg"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(dir.path().join("env-cfg/ca.crt").exists());

    // A config dir that cannot be created: non-zero exit and the path named.
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "").unwrap();
    let bad = blocker.join("cfg");
    let out = run("jsrv", &["init", "--config-dir", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(bad.to_str().unwrap()) || err.contains(blocker.to_str().unwrap()),
        "{err}"
    );
}

/// The ssh way: a client makes its own key (`jcp --keygen`, which prints
/// its public key line), the server's admin signs the line (`jsrv sign`),
/// and the client connects with that certificate; its private key never
/// left it. The server's writable known_client_keys records it (its own
/// key, not the shared client key `init` made), and the line, as it is,
/// is what a read-only known_client_keys takes to let in this client only.
#[test]
fn a_client_key_of_its_own_signed_by_jsrv_connects_and_is_pinned() {
    use jsync_tests::bins::{describe, Jsrv};
    use std::io::Write;
    let work = tempfile::tempdir().unwrap();
    let (srv_cfg, cli_cfg) = (work.path().join("srv"), work.path().join("cli"));
    let s = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    assert!(run("jsrv", &["init", "--config-dir", &s(&srv_cfg)])
        .status
        .success());

    // --keygen copies nothing, and takes no option that would.
    let out = run("jcp", &["--keygen", "-n", "--config-dir", &s(&cli_cfg)]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(!cli_cfg.exists());
    let out = run("jcp", &["--keygen", "--config-dir", &s(&cli_cfg)]);
    assert!(out.status.success(), "{}", describe(&out));
    let line = String::from_utf8(out.stdout).unwrap();
    assert!(line.starts_with("ed25519 "), "{line}");
    let fingerprint_in = |text: &[u8]| {
        String::from_utf8_lossy(text)
            .split_whitespace()
            .find(|w| w.starts_with("SHA256:"))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no fingerprint in {}", String::from_utf8_lossy(text)))
    };
    let made = fingerprint_in(&out.stderr);
    assert!(String::from_utf8_lossy(&out.stderr).contains("jsrv sign"));
    let mode = std::fs::metadata(cli_cfg.join("client.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // Signed from stdin, named, expiring in 30 days (the copies below use it).
    let out = run(
        "jsrv",
        &["sign", "--config-dir", &s(&srv_cfg), "--days", "0", "-"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    // Endless input is no key line: read no further than a key line goes.
    let out = run("jsrv", &["sign", "--config-dir", &s(&srv_cfg), "/dev/zero"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a public key line"),
        "{}",
        describe(&out)
    );
    let mut sign = std::process::Command::new(jsync_tests::bins::bin("jsrv"))
        .args(["sign", "--config-dir", &s(&srv_cfg), "--name", "alice"])
        .args(["--days", "30", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    sign.stdin
        .take()
        .unwrap()
        .write_all(line.as_bytes())
        .unwrap();
    let out = sign.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let pem = String::from_utf8(out.stdout).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    assert_eq!(
        fingerprint_in(&out.stderr),
        made,
        "sign names the key keygen made"
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("for alice, valid for 30 days"), "{said}");
    std::fs::write(cli_cfg.join("client.crt"), &pem).unwrap();
    std::fs::copy(srv_cfg.join("ca.crt"), cli_cfg.join("ca.crt")).unwrap();
    // From a file, to a new file with --out (mode 0644), which it never
    // replaces.
    let key_file = work.path().join("alice.pub");
    std::fs::write(&key_file, &line).unwrap();
    let sign_to = |out: &std::path::Path| {
        let args = [
            "sign",
            "--config-dir",
            &s(&srv_cfg),
            "--out",
            &s(out),
            &s(&key_file),
        ];
        run("jsrv", &args)
    };
    let again = work.path().join("again.crt");
    let out = sign_to(&again);
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "{}",
        describe(&out)
    );
    let written = std::fs::read_to_string(&again).unwrap();
    assert!(
        written.starts_with("-----BEGIN CERTIFICATE-----"),
        "{written}"
    );
    let mode = std::fs::metadata(&again).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o644);
    let out = sign_to(&cli_cfg.join("client.crt"));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(
        std::fs::read_to_string(cli_cfg.join("client.crt")).unwrap(),
        pem
    );

    // Trust on first use records this client's own key.
    let known = srv_cfg.join("known_client_keys");
    std::fs::write(&known, "").unwrap();
    let root = work.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let src = work.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"from alice\n").unwrap();
    let from = format!("{}/", src.display());
    let (mut srv, log) = Jsrv::start_logged(&srv_cfg, &root, &[]);
    let out = srv.jcp(&cli_cfg, &[&from, "127.0.0.1:dst"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(std::fs::read(root.join("dst/f")).unwrap(), b"from alice\n");
    let recorded = std::fs::read_to_string(&known).unwrap();
    let key = line.split_whitespace().nth(1).unwrap();
    assert!(recorded.contains(key), "{recorded}");
    assert_eq!(recorded.lines().count(), 1, "{recorded}");
    let out = srv.jcp(&cli_cfg, &["--quic", &from, "127.0.0.1:quic"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(srv.terminate().success());
    // jsrv's log names the client by its certificate's name and its key,
    // over TCP and QUIC.
    let log = log.join().unwrap();
    let named = log
        .lines()
        .filter(|l| l.contains("client connected") && l.contains("(alice)"))
        .filter(|l| l.contains(&made))
        .count();
    assert_eq!(named, 2, "{log}");

    // Lockdown: a read-only file holding alice's line lets her in, and not
    // the client key init made.
    std::fs::write(&known, &line).unwrap();
    std::fs::set_permissions(&known, std::fs::Permissions::from_mode(0o444)).unwrap();
    let srv = Jsrv::start(&srv_cfg, &root, &[]);
    let out = srv.jcp(&cli_cfg, &[&from, "127.0.0.1:again"]);
    assert!(out.status.success(), "{}", describe(&out));
    let out = srv.jcp(&srv_cfg, &[&from, "127.0.0.1:shared"]);
    assert_eq!(out.status.code(), Some(4), "{}", describe(&out));
    assert!(!root.join("shared").exists());
}
