//! Serve mode: one root directory offered to `jcp` over TLS/TCP and QUIC on one
//! port, until SIGINT or SIGTERM.
//!
//! The order matters to the people and scripts watching: check the root and load
//! the keys (errors name the path), install the signal handlers, bind (errors name
//! the address), and only then print the single `jsrv listening on ADDR` line to
//! stdout, with the real port, so that a caller can start jsrv on port 0 and read
//! where it went. Shutdown stops accepting, lets the links drain, and returns.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use jsync::tls::TlsOptions;
use jsync::{Server, ServerSecurity};
use tokio::signal::unix::{signal, Signal, SignalKind};

/// What to serve and how, resolved from the command line.
#[derive(Debug)]
pub struct Plan {
    pub root: PathBuf,
    pub listen: SocketAddr,
    pub read_only: bool,
    /// Connections served at once; more wait to be accepted.
    pub max_connections: usize,
    pub plaintext: bool,
    pub tls: TlsOptions,
    pub config_dir: PathBuf,
}

/// Serves until a signal; `Ok` after a clean shutdown.
pub async fn serve(plan: Plan) -> anyhow::Result<()> {
    let root = check_root(&plan.root)?;
    let security = if plan.plaintext {
        ServerSecurity::Plaintext
    } else {
        ServerSecurity::from_config_dir(&plan.config_dir, &plan.tls).with_context(|| {
            format!(
                "cannot load the server keys from {}",
                plan.config_dir.display()
            )
        })?
    };
    let mut signals = Signals::install()?;
    // SIGHUP (logrotate, `systemctl reload`) ended the daemon and every
    // transfer: there is nothing to reload (keys are read at start), so it
    // is said and ignored.
    let mut hup = signal(SignalKind::hangup()).context("cannot install the SIGHUP handler")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!(
                "SIGHUP received: nothing to reload (restart jsrv to read new keys); ignored"
            );
        }
    });
    let services = jsync::sync::server_services(root.clone(), plan.read_only);
    let server =
        Server::bind(plan.listen, security, services)?.max_connections(plan.max_connections);
    let addr = server.local_addr();
    if plan.plaintext {
        tracing::warn!(
            "--insecure-plaintext: connections are NOT encrypted and NOT authenticated; \
             anyone who can reach {addr} can {} {} (QUIC is off)",
            if plan.read_only {
                "read"
            } else {
                "read and write"
            },
            root.display()
        );
    }
    tracing::info!(
        root = %root.display(),
        read_only = plan.read_only,
        quic = !plan.plaintext,
        "serving"
    );
    announce(addr).context("cannot write to stdout")?;

    let shutdown = async move {
        let which = signals.next().await;
        tracing::info!("{which} received: no new connections, draining transfers");
        // A second signal means "now": do not wait for the drain.
        tokio::spawn(async move {
            let which = signals.next().await;
            tracing::warn!("{which} received again: exiting without waiting");
            std::process::exit(1);
        });
    };
    server
        .run(shutdown)
        .await
        .with_context(|| format!("serving on {addr} failed"))?;
    tracing::info!("stopped");
    Ok(())
}

/// The root must be an existing directory; returned absolute, for the logs.
fn check_root(root: &std::path::Path) -> anyhow::Result<PathBuf> {
    let meta = std::fs::metadata(root)
        .with_context(|| format!("cannot serve {}: cannot read it", root.display()))?;
    anyhow::ensure!(
        meta.is_dir(),
        "cannot serve {}: not a directory",
        root.display()
    );
    std::fs::canonicalize(root).with_context(|| format!("cannot resolve {}", root.display()))
}

/// The one line on stdout that says we are ready, flushed at once.
fn announce(addr: SocketAddr) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "jsrv listening on {addr}")?;
    out.flush()
}

/// SIGINT and SIGTERM, installed before the ready line so that a signal sent as
/// soon as it appears is not lost.
struct Signals {
    int: Signal,
    term: Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        Ok(Signals {
            int: signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?,
            term: signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?,
        })
    }

    /// The name of the next signal that arrives.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_must_be_an_existing_directory() {
        let dir = std::env::temp_dir().join(format!("jsrv-root-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(check_root(&dir).unwrap().is_absolute());
        let file = dir.join("f");
        std::fs::write(&file, b"x").unwrap();
        let e = check_root(&file).unwrap_err().to_string();
        assert!(e.contains("not a directory") && e.contains("/f"), "{e}");
        let e = format!("{:#}", check_root(&dir.join("missing")).unwrap_err());
        assert!(e.contains("missing"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
