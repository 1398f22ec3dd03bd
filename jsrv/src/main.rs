//! `jsrv`: the jsync daemon's command line.
//!
//! `jsrv init` makes the keys a server and its clients need (like `ssh-keygen`,
//! with a private CA); `jsrv sign` signs a client's own key (`jcp --keygen`).
//! `jsrv --root DIR` serves that directory to `jcp` over TLS/TCP and QUIC on
//! one port ([`serve`]).
//!
//! Exit codes: 0 success (including a clean shutdown on SIGINT/SIGTERM); 1 the
//! command failed (keys could not be made or read, a key line that is not
//! one, the address cannot be bound, the root is not a directory); 2 usage
//! error (clap's).

mod serve;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit codes, documented in the README and in `jsrv --help`.
mod exit {
    /// The command failed (keys could not be made or read, cannot bind, ...).
    pub const FAILURE: u8 = 1;

    /// The text for `jsrv --help`.
    pub const HELP: &str = "\
Exit status:
  0  success; the server exits 0 after a clean shutdown on SIGINT or SIGTERM
  1  failure: keys cannot be made or read, a key to sign is not one (or --out
     exists), the address cannot be bound, the root is not a directory (the
     message names the path or address)
  2  usage error";
}

/// The address jsrv listens on unless told otherwise.
const DEFAULT_LISTEN: &str = "0.0.0.0:7433";

#[derive(Debug, Parser)]
#[command(
    name = "jsrv",
    version,
    about = "The jsync daemon: serves a directory to jcp over TLS/TCP and QUIC",
    long_about = "The jsync daemon.\n\n\
        Without a subcommand, serves --root to jcp clients over TLS 1.3 on TCP and over \
        QUIC, both on the same port. Prints 'jsrv listening on ADDR' to stdout once \
        ready; logs go to stderr (RUST_LOG, default info). SIGINT or SIGTERM stops \
        accepting, lets transfers drain, and exits 0.",
    after_help = exit::HELP,
    subcommand_negates_reqs = true
)]
struct Cli {
    /// Where keys, certificates and known-keys files live
    /// [default: $JSYNC_CONFIG_DIR, else ~/.config/jsync]
    #[arg(long, global = true, value_name = "DIR")]
    config_dir: Option<PathBuf>,

    #[command(flatten)]
    serve: ServeArgs,

    #[command(subcommand)]
    command: Option<Command>,
}

/// Options of serve mode (no subcommand).
#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// The directory to serve; clients cannot reach outside it
    #[arg(long, value_name = "DIR", required = true)]
    root: Option<PathBuf>,

    /// Address and port for TCP and QUIC (e.g. [::]:7433, 127.0.0.1:0 for any free
    /// port) [default: 0.0.0.0:7433]
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<SocketAddr>,

    /// Refuse pushes: clients may only pull
    #[arg(long)]
    read_only: bool,

    /// Serve at most N connections at once; more wait to be taken, each up
    /// to its client's --contimeout (rsyncd's "max connections" refuses
    /// them instead) [default: 256]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: Option<u32>,

    /// No encryption, no authentication, no QUIC: anyone who can reach the port
    /// can read (and unless --read-only, write) the root
    #[arg(long)]
    insecure_plaintext: bool,

    /// Offer only the ChaCha20-Poly1305 cipher (faster without AES instructions)
    #[arg(long, conflicts_with = "insecure_plaintext")]
    chacha: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make a private CA plus server and client key pairs signed by it. Existing
    /// keys are kept, never overwritten.
    Init,
    /// Sign a client's own key (the line `jcp --keygen` printed on the client)
    /// with this CA: prints the client's certificate (its client.crt) on
    /// stdout, or writes it to --out
    Sign {
        /// A file holding the public key line, or - for stdin
        #[arg(value_name = "FILE")]
        key: PathBuf,
        /// The client's name in its certificate's subject (letters, digits,
        /// '.', '-', '_', '@'; up to 48), which jsrv's log shows beside the
        /// client's address
        #[arg(long, value_parser = client_name)]
        name: Option<String>,
        /// Write the certificate to this new file (mode 0644) instead of stdout
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Make the certificate expire N days from today (1 to 36500), as
        /// ssh-keygen -V: the client is refused once it has. Without it, the
        /// certificate does not expire, like an ssh key
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=36500))]
        days: Option<u32>,
    },
}

/// A client name for `jsrv sign --name`.
fn client_name(s: &str) -> Result<String, String> {
    if !jsync::identity::is_client_name(s) {
        return Err("a name is 1 to 48 letters, digits, '.', '-', '_' or '@'".into());
    }
    Ok(s.to_owned())
}

impl ServeArgs {
    /// Whether any serve-mode option was given (they make no sense with `init`).
    fn any(&self) -> bool {
        self.root.is_some()
            || self.listen.is_some()
            || self.read_only
            || self.max_connections.is_some()
            || self.insecure_plaintext
            || self.chacha
    }
}

impl Cli {
    /// Parses the command line; exits 2 on a usage error.
    fn parse_checked() -> Cli {
        Self::check(Cli::parse()).unwrap_or_else(|e| e.exit())
    }

    /// Refuses serve-mode options next to a subcommand.
    fn check(cli: Cli) -> Result<Cli, clap::Error> {
        use clap::CommandFactory;
        if cli.command.is_some() && cli.serve.any() {
            return Err(Cli::command().error(
                clap::error::ErrorKind::ArgumentConflict,
                "--root, --listen, --read-only, --insecure-plaintext and --chacha are for \
                 serving, not for `jsrv init` or `jsrv sign`",
            ));
        }
        Ok(cli)
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse_checked();
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let dir = cli
        .config_dir
        .unwrap_or_else(jsync::identity::default_config_dir);
    let result = match cli.command {
        Some(Command::Init) => match jsync::identity::init(&dir) {
            Ok(report) => {
                println!("{report}");
                Ok(())
            }
            Err(e) => Err(e.into()),
        },
        Some(Command::Sign {
            key,
            name,
            out,
            days,
        }) => sign(&dir, &key, name, out.as_deref(), days),
        None => serve::serve(plan(cli.serve, dir)).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jsrv: {}", describe(&e));
            ExitCode::from(exit::FAILURE)
        }
    }
}

/// `jsrv sign`: a certificate for a client's own key.
/// The longest public key line `jsrv sign` reads.
const KEY_LINE_MAX: usize = 64 << 10;

fn sign(
    dir: &std::path::Path,
    key: &std::path::Path,
    name: Option<String>,
    out: Option<&std::path::Path>,
    days: Option<u32>,
) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let mut line = String::new();
    // (A public key line is a few hundred bytes: more is something else,
    // read no further, e.g. /dev/zero.)
    let limit = KEY_LINE_MAX as u64 + 1;
    let read = if key.as_os_str() == "-" {
        std::io::stdin()
            .take(limit)
            .read_to_string(&mut line)
            .map(drop)
    } else {
        std::fs::File::open(key).and_then(|f| f.take(limit).read_to_string(&mut line).map(drop))
    };
    read.map_err(|e| anyhow::anyhow!("cannot read {}: {e}", key.display()))?;
    if line.len() > KEY_LINE_MAX {
        anyhow::bail!(
            "{}: more than {} KiB: not a public key line (jcp --keygen writes one)",
            key.display(),
            KEY_LINE_MAX >> 10
        );
    }
    let name_or_none = name.as_deref().unwrap_or("");
    let signed = jsync::identity::sign_client_for(dir, &line, key, name_or_none, days)?;
    match out {
        // (Synced, never replacing a file, never half-written.)
        Some(path) => jsync::identity::write_new(path, signed.pem.as_bytes(), 0o644)?,
        None => std::io::stdout()
            .write_all(signed.pem.as_bytes())
            .and_then(|()| std::io::stdout().flush())
            .map_err(|e| anyhow::anyhow!("cannot write the certificate to stdout: {e}"))?,
    }
    eprintln!(
        "jsrv: signed client key {}{}{}: it goes in the client's config directory as {}, \
         beside this CA's {}",
        signed.fingerprint,
        name.map(|n| format!(" for {n}")).unwrap_or_default(),
        days.map(|n| format!(", valid for {n} days"))
            .unwrap_or_default(),
        jsync::identity::CLIENT_CERT,
        jsync::identity::CA_CERT,
    );
    Ok(())
}

/// `e` and its causes on one line, leaving out a cause whose text is already there
/// (jsync's errors print their source and also return it from `source()`).
fn describe(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line
}

/// Resolves serve mode's flags into what [`serve::serve`] needs.
fn plan(args: ServeArgs, config_dir: PathBuf) -> serve::Plan {
    serve::Plan {
        // clap makes --root required when there is no subcommand.
        root: args.root.expect("clap requires --root in serve mode"),
        listen: args
            .listen
            .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default address")),
        read_only: args.read_only,
        max_connections: args
            .max_connections
            .map_or(jsync::Server::DEFAULT_MAX_CONNECTIONS, |n| n as usize),
        plaintext: args.insecure_plaintext,
        tls: jsync::tls::TlsOptions {
            chacha_only: args.chacha,
        },
        config_dir,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("jsrv").chain(args.iter().copied()))
            .and_then(Cli::check)
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn init_needs_no_root() {
        let cli = parse(&["init", "--config-dir", "/k"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Init)));
        let cli = parse(&["--config-dir", "/k", "init"]).unwrap();
        assert_eq!(cli.config_dir.as_deref(), Some(std::path::Path::new("/k")));
    }

    #[test]
    fn serving_needs_a_root() {
        let e = parse(&[]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let cli = parse(&["--root", "/srv"]).unwrap();
        assert!(cli.command.is_none());
        let plan = plan(cli.serve, "/k".into());
        assert_eq!(plan.listen, DEFAULT_LISTEN.parse().unwrap());
        assert_eq!(plan.max_connections, jsync::Server::DEFAULT_MAX_CONNECTIONS);
        let cli = parse(&["--root", "/srv", "--max-connections", "3"]).unwrap();
        assert_eq!(super::plan(cli.serve, "/k".into()).max_connections, 3);
        assert!(parse(&["--root", "/srv", "--max-connections", "0"]).is_err());
        assert!(parse(&["init", "--max-connections", "3"]).is_err());
    }

    #[test]
    fn listen_accepts_ipv4_and_ipv6() {
        for a in ["0.0.0.0:7433", "[::]:7433", "127.0.0.1:0"] {
            let cli = parse(&["--root", "/srv", "--listen", a]).unwrap();
            assert_eq!(cli.serve.listen, Some(a.parse::<SocketAddr>().unwrap()));
        }
        assert_eq!(
            parse(&["--root", "/srv", "--listen", "nohost"])
                .unwrap_err()
                .exit_code(),
            2
        );
    }

    #[test]
    fn serve_flags_do_not_mix_with_init() {
        for args in [&["--root", "/srv", "init"][..], &["init", "--read-only"]] {
            assert_eq!(parse(args).unwrap_err().exit_code(), 2, "{args:?}");
        }
        assert!(parse(&["--root", "/srv", "--chacha", "--insecure-plaintext"]).is_err());
    }
}
