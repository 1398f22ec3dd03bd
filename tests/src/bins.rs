//! Finding and running the real `jcp` and `jsrv` binaries from tests.

use std::path::PathBuf;
use std::process::{Command, Output};

/// Path of a workspace binary, built by cargo for this test run.
pub fn bin(name: &str) -> PathBuf {
    // tests/ is a workspace member; the binaries land next to the test executable's
    // parent directory (target/<profile>/).
    let mut dir = std::env::current_exe().expect("current exe");
    dir.pop(); // deps/
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    if !path.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", name])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build -p {name} failed");
    }
    path
}

/// Runs a binary to completion with the given args.
pub fn run(name: &str, args: &[&str]) -> Output {
    Command::new(bin(name))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap_or_else(|e| panic!("run {name}: {e}"))
}
