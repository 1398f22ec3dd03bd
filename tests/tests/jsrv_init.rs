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
