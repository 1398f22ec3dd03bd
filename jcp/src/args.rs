//! jcp's command line in two steps, as ripgrep does: clap parses it into plain
//! values ([`Cli`]), then [`Cli::resolve`] checks how they fit together and turns
//! them into a [`Plan`] of what to do, with nothing left to interpret.

use std::path::PathBuf;

use clap::{ArgAction, Parser, ValueEnum};
use jsync::tls::TlsOptions;
use jsync::Transport;

use crate::endpoint::{self, Endpoint, Remote};
use crate::exit::{self, UsageError};

/// The port jsrv listens on by default.
pub const DEFAULT_PORT: u16 = 7433;

/// The command line as typed.
#[derive(Debug, Parser)]
#[command(
    name = "jcp",
    version,
    about = "Copy files to, from or between directories with jsync (delta transfers)",
    long_about = "Copy files to, from or between directories with jsync.\n\n\
        Only what changed moves: files are cut into content-defined chunks and the \
        receiver reuses the chunks it already has. An operand is remote when it has a \
        ':' before any '/' (HOST:PATH, HOST: for the server's root, [IPv6]:PATH), \
        local otherwise. At most one operand may be remote; with none, jcp copies \
        locally without a daemon. As with rsync, SRC/ (trailing slash) copies the \
        contents of SRC, SRC without it copies the directory itself.",
    after_help = exit::HELP,
)]
pub struct Cli {
    /// What to copy: a local path or HOST:PATH
    #[arg(value_name = "SRC")]
    pub src: String,

    /// Where to copy it: a local path or HOST:PATH
    #[arg(value_name = "DST")]
    pub dst: String,

    /// Port of the jsrv daemon
    #[arg(short, long, value_name = "PORT", default_value_t = DEFAULT_PORT)]
    pub port: u16,

    /// Connect over QUIC instead of TLS over TCP
    #[arg(long, conflicts_with = "insecure_plaintext")]
    pub quic: bool,

    /// Where the client keys and known_server_keys live
    /// [default: $JSYNC_CONFIG_DIR, else ~/.config/jsync]
    #[arg(long, value_name = "DIR")]
    pub config_dir: Option<PathBuf>,

    /// No encryption, no authentication (the server must run with it too)
    #[arg(long)]
    pub insecure_plaintext: bool,

    /// Offer only the ChaCha20-Poly1305 cipher (faster without AES instructions)
    #[arg(long, conflicts_with = "insecure_plaintext")]
    pub chacha: bool,

    /// Compare the content of every file, not size and modification time
    #[arg(short, long)]
    pub checksum: bool,

    /// Lanes: connections' worth of pipelined file requests in flight at once
    #[arg(short = 'j', long, value_name = "N", default_value_t = 8,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallel: u16,

    /// Compression on the wire: auto compresses new data in deltas (zstd) but
    /// sends whole new files as they are; zstd or lz4 compress everything
    #[arg(long, value_name = "ALG", value_enum, default_value_t = Compress::Auto)]
    pub compress: Compress,

    /// Compress everything with zstd (same as --compress zstd)
    #[arg(short = 'z', conflicts_with = "compress")]
    pub z: bool,

    /// Delete files in the destination that are not in the source
    #[arg(long)]
    pub delete: bool,

    /// Change nothing; list what would change (in --itemize-changes form)
    #[arg(short = 'n', long)]
    pub dry_run: bool,

    /// Print one line per changed entry saying what changed (rsync's format)
    #[arg(short = 'i', long)]
    pub itemize_changes: bool,

    /// No progress display, only errors
    #[arg(short, long, conflicts_with_all = ["verbose", "progress"])]
    pub quiet: bool,

    /// List each transferred file on stderr; twice or more for debug logs
    #[arg(short, long, action = ArgAction::Count)]
    pub verbose: u8,

    /// Show progress even when stderr is not a terminal
    #[arg(long)]
    pub progress: bool,

    /// Print transfer statistics to stdout at the end
    #[arg(long)]
    pub stats: bool,
}

/// `--compress` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Compress {
    /// zstd for new data in deltas, none for whole new files
    Auto,
    /// Good ratio, fast (zstd level 1)
    Zstd,
    /// Fastest, lower ratio
    Lz4,
    /// Send data as it is
    None,
}

impl From<Compress> for proto::Compression {
    fn from(c: Compress) -> Self {
        match c {
            Compress::Auto | Compress::Zstd => proto::Compression::ZSTD,
            Compress::Lz4 => proto::Compression::LZ4,
            Compress::None => proto::Compression::NONE,
        }
    }
}

/// What to copy where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Direction {
    /// Local to local, in process.
    Local { src: PathBuf, dst: PathBuf },
    /// Local to a server.
    Push { src: PathBuf, dst: Remote },
    /// A server to local.
    Pull { src: Remote, dst: PathBuf },
}

/// When to draw progress bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShowProgress {
    /// Never (`-q`, or stderr is not a terminal).
    Never,
    /// When stderr is a terminal.
    IfTerminal,
    /// Always (`--progress`).
    Always,
}

/// Everything jcp needs to run, resolved from [`Cli`].
#[derive(Debug, Clone)]
pub struct Plan {
    pub direction: Direction,
    pub port: u16,
    pub transport: Transport,
    pub config_dir: PathBuf,
    pub plaintext: bool,
    pub tls: TlsOptions,
    pub checksum: bool,
    pub parallel: usize,
    pub compression: proto::Compression,
    /// Compress whole files too (not just new data in deltas).
    pub compress_whole: bool,
    pub delete: bool,
    pub dry_run: bool,
    pub itemize: bool,
    pub show_progress: ShowProgress,
    /// 0: quiet, 1: normal, 2: list files, 3+: debug logs.
    pub verbosity: u8,
    pub stats: bool,
}

impl Cli {
    /// Checks the operands against each other and builds the plan.
    pub fn resolve(self) -> Result<Plan, UsageError> {
        let src = endpoint::parse(&self.src).map_err(UsageError)?;
        let dst = endpoint::parse(&self.dst).map_err(UsageError)?;
        let direction = match (src, dst) {
            (Endpoint::Local(src), Endpoint::Local(dst)) => Direction::Local { src, dst },
            (Endpoint::Local(src), Endpoint::Remote(dst)) => Direction::Push { src, dst },
            (Endpoint::Remote(src), Endpoint::Local(dst)) => Direction::Pull { src, dst },
            (Endpoint::Remote(a), Endpoint::Remote(b)) => {
                return Err(UsageError(format!(
                    "both {a} and {b} are remote; one side must be local \
                     (write ./{} for a local path with a ':')",
                    self.src
                )))
            }
        };
        let show_progress = if self.quiet {
            ShowProgress::Never
        } else if self.progress {
            ShowProgress::Always
        } else {
            ShowProgress::IfTerminal
        };
        Ok(Plan {
            direction,
            port: self.port,
            transport: if self.quic {
                Transport::Quic
            } else {
                Transport::Tcp
            },
            config_dir: self
                .config_dir
                .unwrap_or_else(jsync::identity::default_config_dir),
            plaintext: self.insecure_plaintext,
            tls: TlsOptions {
                chacha_only: self.chacha,
            },
            checksum: self.checksum,
            parallel: usize::from(self.parallel),
            compression: if self.z {
                proto::Compression::ZSTD
            } else {
                self.compress.into()
            },
            compress_whole: self.z || !matches!(self.compress, Compress::Auto),
            delete: self.delete,
            dry_run: self.dry_run,
            itemize: self.itemize_changes,
            show_progress,
            verbosity: if self.quiet {
                0
            } else {
                self.verbose.saturating_add(1)
            },
            stats: self.stats,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(args: &[&str]) -> Result<Plan, UsageError> {
        let mut argv = vec!["jcp"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).expect("parses").resolve()
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn directions() {
        let p = plan(&["a/", "srv:b"]).unwrap();
        assert!(matches!(p.direction, Direction::Push { ref src, .. } if src.as_os_str() == "a/"));
        let p = plan(&["[::1]:x/", "b"]).unwrap();
        assert!(
            matches!(p.direction, Direction::Pull { ref src, .. } if src.host == "::1" && src.path == "x/")
        );
        let p = plan(&["./a:b", "/c:d"]).unwrap();
        assert!(matches!(p.direction, Direction::Local { .. }));
    }

    #[test]
    fn both_remote_is_a_usage_error() {
        let e = plan(&["a:x", "b:y"]).unwrap_err();
        assert!(e.0.contains("a:x") && e.0.contains("b:y"), "{e}");
    }

    #[test]
    fn defaults() {
        let p = plan(&["a", "srv:"]).unwrap();
        assert_eq!(p.port, DEFAULT_PORT);
        assert_eq!(p.transport, Transport::Tcp);
        assert_eq!(p.parallel, 8);
        assert_eq!(p.compression, proto::Compression::ZSTD);
        assert!(!p.compress_whole && !p.delete && !p.dry_run && !p.itemize);
        assert_eq!(p.show_progress, ShowProgress::IfTerminal);
        assert_eq!(p.verbosity, 1);
    }

    #[test]
    fn options() {
        let p = plan(&[
            "-p",
            "9000",
            "--quic",
            "--chacha",
            "-c",
            "-j",
            "4",
            "--compress",
            "lz4",
            "-vv",
            "--progress",
            "a",
            "srv:",
        ])
        .unwrap();
        assert_eq!(p.port, 9000);
        assert_eq!(p.transport, Transport::Quic);
        assert!(p.tls.chacha_only && p.checksum);
        assert_eq!(p.parallel, 4);
        assert_eq!(p.compression, proto::Compression::LZ4);
        assert!(p.compress_whole);
        assert_eq!(p.verbosity, 3);
        assert_eq!(p.show_progress, ShowProgress::Always);
        let p = plan(&["-z", "--delete", "-n", "-i", "a", "b"]).unwrap();
        assert!(p.compress_whole && p.delete && p.dry_run && p.itemize);
        assert_eq!(p.compression, proto::Compression::ZSTD);
        let p = plan(&["-q", "a", "srv:"]).unwrap();
        assert_eq!((p.verbosity, p.show_progress), (0, ShowProgress::Never));
    }

    #[test]
    fn bad_combinations_are_clap_usage_errors() {
        for args in [
            &["jcp", "-q", "-v", "a", "b"][..],
            &["jcp", "--quic", "--insecure-plaintext", "a", "b"],
            &["jcp", "-j", "0", "a", "b"],
            &["jcp", "-z", "--compress", "lz4", "a", "b"],
            &["jcp", "--compress", "gzip", "a", "b"],
            &["jcp", "a"],
        ] {
            let e = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(e.exit_code(), i32::from(exit::USAGE), "{args:?}");
        }
    }
}
