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

/// A `jsrv` process serving a root on a free port; killed when dropped.
#[derive(Debug)]
pub struct Jsrv {
    pub child: std::process::Child,
    pub port: u16,
}

impl Jsrv {
    /// Starts `jsrv --config-dir KEYS --root ROOT --listen 127.0.0.1:0 EXTRA...` and
    /// waits for its "listening on" line. Its log (warnings) goes to the test's stderr.
    pub fn start(keys: &std::path::Path, root: &std::path::Path, extra: &[&str]) -> Jsrv {
        Jsrv::spawn(
            &[],
            keys,
            root,
            extra,
            "warn",
            std::process::Stdio::inherit(),
        )
    }

    /// [`Jsrv::start`] through `wrapper`: `WRAPPER... jsrv ARGS...` (say, a
    /// shell in a mount namespace of its own that ends with `exec "$@"`, so
    /// the process is jsrv's).
    pub fn start_wrapped(
        wrapper: &[String],
        keys: &std::path::Path,
        root: &std::path::Path,
        extra: &[&str],
    ) -> Jsrv {
        Jsrv::spawn(
            wrapper,
            keys,
            root,
            extra,
            "warn",
            std::process::Stdio::inherit(),
        )
    }

    /// [`Jsrv::start`] with its log at info level kept: the handle yields all
    /// of it once jsrv has exited (see [`Jsrv::terminate`]).
    pub fn start_logged(
        keys: &std::path::Path,
        root: &std::path::Path,
        extra: &[&str],
    ) -> (Jsrv, std::thread::JoinHandle<String>) {
        use std::io::Read;
        let mut srv = Jsrv::spawn(&[], keys, root, extra, "info", std::process::Stdio::piped());
        let mut stderr = srv.child.stderr.take().unwrap();
        let log = std::thread::spawn(move || {
            let mut s = String::new();
            stderr.read_to_string(&mut s).unwrap();
            s
        });
        (srv, log)
    }

    fn spawn(
        wrapper: &[String],
        keys: &std::path::Path,
        root: &std::path::Path,
        extra: &[&str],
        log_level: &str,
        stderr: std::process::Stdio,
    ) -> Jsrv {
        use std::io::BufRead;
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin("jsrv"));
                c
            }
            None => Command::new(bin("jsrv")),
        };
        let mut child = cmd
            .arg("--config-dir")
            .arg(keys)
            .arg("--root")
            .arg(root)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", log_level)
            .stdout(std::process::Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start jsrv");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("jsrv listening on ")
            .unwrap_or_else(|| panic!("unexpected jsrv output {line:?}"));
        let port = addr.rsplit(':').next().unwrap().parse().unwrap();
        Jsrv { child, port }
    }

    /// Stops jsrv with SIGTERM (a clean shutdown) and waits for it to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("signal jsrv");
        self.child.wait().expect("wait for jsrv")
    }

    /// `jcp --config-dir KEYS -p PORT ARGS...` against this server.
    pub fn jcp(&self, keys: &std::path::Path, args: &[&str]) -> Output {
        Command::new(bin("jcp"))
            // -C reads $HOME/.cvsignore and $CVSIGNORE: not the tester's.
            .env("HOME", keys)
            .env_remove("CVSIGNORE")
            .arg("--config-dir")
            .arg(keys)
            .args(["--port", &self.port.to_string()])
            .args(args)
            .output()
            .expect("run jcp")
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Jsrv {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The number after `label` in `jcp --stats` output.
pub fn stat(stdout: &[u8], label: &str) -> u64 {
    let text = String::from_utf8_lossy(stdout);
    text.lines()
        .find_map(|l| l.strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {label:?} in output:\n{text}"))
}

/// An output's exit code, stdout and stderr, for failure messages.
pub fn describe(out: &Output) -> String {
    format!(
        "exit code {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `Ok` when the run exited with 0, else its output as the error.
pub fn succeeded(out: &Output, what: &str) -> Result<(), String> {
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed: {}", describe(out)))
    }
}

/// Panics with the output unless the run exited with `code` and said
/// `needle` on stderr.
pub fn assert_fails(out: &Output, code: i32, needle: &str, what: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.code() != Some(code) || !err.contains(needle) {
        panic!(
            "{what}: expected exit {code} and {needle:?} on stderr: {}",
            describe(out)
        );
    }
}

/// Panics with the output unless the run exited with 0.
pub fn assert_ok(out: &Output, what: &str) {
    if let Err(e) = succeeded(out, what) {
        panic!("{e}");
    }
}

/// A source made twice, locally (`work/src`) and on a jsrv serving `root`
/// (as `root/src`), with the server and its keys: for running one command
/// locally, pushed and pulled.
#[derive(Debug)]
pub struct Sources {
    pub keys: crate::Keys,
    pub work: tempfile::TempDir,
    pub root: PathBuf,
    pub srv: Jsrv,
}

impl Sources {
    /// `make` builds the source in the directory it is given.
    pub fn new(make: impl Fn(&std::path::Path)) -> Sources {
        let keys = crate::Keys::new();
        let work = tempfile::tempdir().unwrap();
        let root = work.path().join("root");
        make(&root.join("src"));
        make(&work.path().join("src"));
        let srv = Jsrv::start(keys.path(), &root, &[]);
        Sources {
            keys,
            work,
            root,
            srv,
        }
    }

    /// The local source.
    pub fn src(&self) -> PathBuf {
        self.work.path().join("src")
    }

    /// The local source's contents as an operand (`work/src/`).
    pub fn src_arg(&self) -> String {
        format!("{}/", self.src().display())
    }
}

/// The three ways each option is tried: locally, pushed to a jsrv serving
/// `root` (into `root/dst`) and pulled from it (`root/src/`); each with its
/// destination directory and its source and destination operands.
pub fn ways(
    work: &std::path::Path,
    root: &std::path::Path,
    src_arg: &str,
) -> [(&'static str, PathBuf, String, String); 3] {
    let (local, pulled) = (work.join("local"), work.join("pulled"));
    let shown = |p: &std::path::Path| p.display().to_string();
    [
        ("local", local.clone(), src_arg.to_string(), shown(&local)),
        (
            "push",
            root.join("dst"),
            src_arg.to_string(),
            "127.0.0.1:dst".into(),
        ),
        (
            "pull",
            pulled.clone(),
            "127.0.0.1:src/".into(),
            shown(&pulled),
        ),
    ]
}
