//! `jcp`: the jsync client, an scp/rsync-style copy command.
//!
//! `jcp [OPTIONS] SRC DST` pushes to or pulls from a `jsrv` daemon, or copies
//! locally, with jsync's delta engine. This file runs a resolved [`args::Plan`]
//! and turns the outcome into an exit code ([`exit`] documents them all):
//! 0 done, 1 local or other failure, 2 usage, 3 some files failed,
//! 4 connection or authentication failure, 24 some source files vanished,
//! 25 `--max-delete` stopped deletions, 30 `--stop-after`/`--stop-at`
//! stopped the run. A source alone (or `--list-only`)
//! is listed instead ([`listing`]).

mod args;
mod deadline;
mod endpoint;
mod exit;
mod listing;
mod progress;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use jsync::sync::{NoProgress, Report, SyncOptions};
use jsync::{ClientSecurity, Link, Services};

use args::{Direction, Plan, Selection};
use endpoint::shown_path;
use progress::Display;

#[tokio::main]
async fn main() -> ExitCode {
    let mut plan = match args::parse() {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("jcp: {e}\n\nFor more information, try '--help'.");
            return ExitCode::from(exit::USAGE);
        }
    };
    init_logging(plan.verbosity);
    if matches!(plan.direction, Direction::Keygen) {
        return keygen(&plan.config_dir);
    }
    let interrupt = tokio_util::sync::CancellationToken::new();
    plan.sync.interrupt = Some(interrupt.clone());
    watch_signals(interrupt.clone());
    let mut display = Display::new(plan.show_progress, plan.print_items);
    let typed = match &plan.direction {
        Direction::Local { dst, .. } | Direction::Pull { dst, .. } => {
            Some(dst.as_os_str().as_encoded_bytes())
        }
        Direction::Push { dst, .. } => Some(dst.path.as_bytes()),
        _ => None,
    };
    if let Some(typed) = typed {
        display = display.with_destination(typed, plan.mkpath);
    }
    if let Some(path) = &plan.log_file {
        let opened = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path);
        match opened {
            Ok(file) => display = display.with_log(file),
            Err(e) => {
                eprintln!("jcp: cannot open the log file {}: {e}", shown_path(path));
                return ExitCode::from(exit::USAGE);
            }
        }
        // (Arguments need not be UTF-8: shown as names are.)
        let args: Vec<String> = std::env::args_os()
            .map(|a| jsync::sync::escape_name(a.as_encoded_bytes()).into_owned())
            .collect();
        display.log(&args.join(" "));
    }
    let display = Arc::new(display);
    let mut result = run(&plan, display.clone()).await;
    // (A signal that came after the copy's last step still fails the run.)
    if interrupt.is_cancelled() && result.is_ok() {
        result = Err(jsync::Error::Interrupted.into());
    }
    display.finish(matches!(&result, Ok(r) if r.errors.is_empty()));
    // A message for stderr, and the log file (a server's text in it, an
    // error's say, reaches no terminal with its control characters).
    let say = |line: String| {
        let line = jsync::sync::escape_controls(&line);
        display.log(&line);
        eprintln!("{line}");
    };
    match result {
        Ok(report) => {
            // rsync's information, on stdout as its own, before the totals
            // (not with -q; the log file has it).
            for n in &report.notices {
                display.log(&n.message);
                if plan.verbosity > 0 {
                    let _ = writeln!(std::io::stdout().lock(), "{}", n.message);
                }
            }
            if plan.stats {
                // A closed stdout (`jcp --stats ... | head`) is not a failure of the copy.
                let _ = write!(
                    std::io::stdout().lock(),
                    "{}",
                    report.stats(plan.human_readable)
                );
            }
            if plan.summary {
                let _ = write!(
                    std::io::stdout().lock(),
                    "\n{}",
                    report.summary(plan.human_readable, plan.sync.dry_run)
                );
            }
            for w in &report.warnings {
                say(format!("jcp: warning: {}", about(w)));
            }
            for v in &report.vanished {
                say(format!("jcp: file has vanished: {}", shown(&v.path)));
            }
            if !report.vanished.is_empty() {
                say(format!(
                    "jcp: warning: {} vanished before {} could be transferred",
                    count(report.vanished.len(), "file"),
                    if report.vanished.len() == 1 {
                        "it"
                    } else {
                        "they"
                    }
                ));
            }
            if report.deletes_skipped > 0 {
                // (Once for all the sources' runs, in rsync's words.)
                say(format!(
                    "jcp: warning: Deletions stopped due to --max-delete limit ({} skipped)",
                    report.deletes_skipped
                ));
            }
            display.log(&format!(
                "{} files transferred, {} bytes on the wire, total size {}, {} deleted",
                report.files_transferred, report.wire_bytes, report.total_size, report.deleted
            ));
            if !report.errors.is_empty() {
                for e in &report.errors {
                    say(format!("jcp: {}", about(e)));
                }
                // (Not "the others were": there may be no others.)
                say(format!(
                    "jcp: {} could not be transferred (named above)",
                    count(report.errors.len(), "file")
                ));
                ExitCode::from(exit::PARTIAL)
            } else if report.deletes_skipped > 0 {
                ExitCode::from(exit::DELETE_LIMIT)
            } else if !report.vanished.is_empty() {
                ExitCode::from(exit::VANISHED)
            } else {
                ExitCode::from(exit::SUCCESS)
            }
        }
        Err(e) => {
            say(format!("jcp: {}", exit::describe(&e)));
            ExitCode::from(exit::code_for(&e))
        }
    }
}

/// A path for messages: `.` for the transfer's base.
fn shown(path: &str) -> &str {
    if path.is_empty() {
        "."
    } else {
        path
    }
}

/// `jcp --keygen`: this machine's own client key, and its public key line on
/// stdout (what to do with it on stderr).
fn keygen(dir: &Path) -> ExitCode {
    let comment = format!(
        "{}@{}",
        std::env::var("USER").unwrap_or_else(|_| "jcp".into()),
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "localhost".into())
    );
    match jsync::identity::keygen(dir, &comment) {
        Ok(r) => {
            let done = match r.key.action {
                jsync::identity::FileAction::Created => "made",
                _ => {
                    "already there, kept: if it is the one `jsrv init` made, copied here, \
                     every client that copied it shares it; remove it (and client.crt) to \
                     make this machine's own"
                }
            };
            eprintln!(
                "jcp: client key {} ({done}): {}\n\
                 Have the server's admin sign the line below (`jsrv sign --name NAME FILE`, \
                 or `-` for stdin), then put what it prints in {} and the server's \
                 {} beside it.",
                r.fingerprint,
                r.key.path.display(),
                dir.join(jsync::identity::CLIENT_CERT).display(),
                jsync::identity::CA_CERT,
            );
            println!("{}", r.line);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("jcp: {e}");
            ExitCode::from(exit::FAILURE)
        }
    }
}

/// tracing to stderr: `RUST_LOG` if set, else by `-q`/`-v` (warnings, with
/// `-q` too, as the README promises: a key recorded or refused is one, and
/// a quiet cron job is who must see it; with `-v` too, whose list of
/// changes goes to stdout; jcp's own
/// info with `-vv`, debug with `-vvv`). The library's info lines are the
/// embedded peer's server-side log of a local copy ("push received"), not for
/// a user who asked for the list of files. Colours only on a terminal, and
/// not with `NO_COLOR` set.
fn init_logging(verbosity: u8) {
    use std::io::IsTerminal;
    let default = match verbosity {
        0..=2 => "warn",
        3 => "warn,jcp=info",
        _ => "debug",
    };
    let logs = tracing_subscriber::fmt()
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default.into()),
        )
        .with_writer(std::io::stderr);
    // A warning reads as a message to the user; times and modules are for
    // debugging (-vvvv).
    match verbosity {
        0..=3 => logs.without_time().with_target(false).init(),
        _ => logs.init(),
    }
}

/// `PATH: MESSAGE`, or the message alone for one about the run (or a
/// source's top, which it names).
fn about(e: &jsync::sync::FileError) -> String {
    match e.path.is_empty() {
        true => e.message.clone(),
        false => format!("{}: {}", shown(&e.path), e.message),
    }
}

/// `1 file`, `2 files`.
fn count(n: usize, what: &str) -> String {
    match n {
        1 => format!("1 {what}"),
        n => format!("{n} {what}s"),
    }
}

/// Does the copy the plan describes.
async fn run(plan: &Plan, display: Arc<Display>) -> anyhow::Result<Report> {
    let mut opts = plan.sync.clone();
    opts.progress = if display.is_active() {
        display
    } else {
        Arc::new(NoProgress)
    };
    // Several sources are copied one after the other into one report; every
    // local one is checked before anything is copied.
    let mut report = Report::default();
    match &plan.direction {
        Direction::Local { srcs, dst } => {
            let srcs = present(plan, srcs, &mut report)?;
            hold_deletions(&mut opts, &mut report);
            for src in &srcs {
                opts.max_delete = deletions_left(plan, &report);
                let (root, opts) = local_selection(plan, src, &opts);
                let r = jsync::sync::local(&root, dst, &opts)
                    .await
                    .with_context(|| {
                        format!("cannot copy {} to {}", shown_path(src), shown_path(dst))
                    })?;
                report.absorb(r);
            }
        }
        Direction::Push { srcs, dst } => {
            let srcs = present(plan, srcs, &mut report)?;
            hold_deletions(&mut opts, &mut report);
            if srcs.is_empty() {
                return Ok(report);
            }
            let link = connect(plan, &dst.address(plan.port)).await?;
            let result = async {
                for src in &srcs {
                    opts.max_delete = deletions_left(plan, &report);
                    let (root, opts) = local_selection(plan, src, &opts);
                    let r = jsync::sync::push(&link, &root, &dst.path, &opts)
                        .await
                        .with_context(|| format!("cannot copy {} to {dst}", shown_path(src)))?;
                    report.absorb(r);
                }
                anyhow::Ok(())
            }
            .await;
            close(&link, &result).await;
            result?;
        }
        Direction::ListLocal { srcs } => {
            // (--delete-missing-args keeps a missing source; nothing to list.)
            let there = |s: &&PathBuf| std::fs::symlink_metadata(s).is_ok();
            for src in present(plan, srcs, &mut report)?.iter().filter(there) {
                let (root, opts) = local_selection(plan, src, &opts);
                let listed = jsync::sync::list_local(&root, &opts, plan.list_recursive)
                    .await
                    .with_context(|| format!("cannot list {}", shown_path(src)))?;
                print_listing(plan, listed, &mut report);
            }
        }
        Direction::ListRemote { srcs } => {
            let link = connect(plan, &srcs[0].address(plan.port)).await?;
            let result = async {
                for src in &expand_wildcards(&link, srcs, false, plan, &mut report).await? {
                    let (path, opts) = remote_selection(plan, &src.path, &opts);
                    let listed = jsync::sync::list(&link, &path, &opts, plan.list_recursive)
                        .await
                        .with_context(|| format!("cannot list {src}"))?;
                    print_listing(plan, listed, &mut report);
                }
                anyhow::Ok(())
            }
            .await;
            close(&link, &result).await;
            result?;
        }
        Direction::Pull { srcs, dst } => {
            let link = connect(plan, &srcs[0].address(plan.port)).await?;
            let result = async {
                let srcs =
                    expand_wildcards(&link, srcs, plan.sync.delete, plan, &mut report).await?;
                hold_deletions(&mut opts, &mut report);
                // Several matches go into the destination as a directory.
                let dst = &if srcs.len() > 1 {
                    endpoint::dir_path(dst)
                } else {
                    dst.clone()
                };
                for src in &srcs {
                    opts.max_delete = deletions_left(plan, &report);
                    let (path, opts) = remote_selection(plan, &src.path, &opts);
                    let r = jsync::sync::pull(&link, &path, dst, &opts)
                        .await
                        .with_context(|| format!("cannot copy {src} to {}", shown_path(dst)))?;
                    report.absorb(r);
                }
                anyhow::Ok(())
            }
            .await;
            close(&link, &result).await;
            result?;
        }
        Direction::Keygen => unreachable!("main makes the key and returns first"),
    }
    Ok(report)
}

/// A source that could not be read is an I/O error, as one inside a source
/// is: no source's run deletes anything unless `--ignore-errors` (rsync:
/// "IO error encountered -- skipping file deletion"). A directory in the way
/// of a file is still replaced, as `--delete` lets it be.
fn hold_deletions(opts: &mut SyncOptions, report: &mut Report) {
    if opts.delete && !opts.ignore_errors && !report.errors.is_empty() {
        (opts.delete, opts.delete_excluded, opts.force) = (false, false, true);
        report.warnings.push(jsync::sync::FileError {
            path: String::new(),
            message: "a source could not be read: skipping deletion of what the sources lack"
                .into(),
        });
    }
}

/// `--max-delete` counts over the runs of every source, as rsync's over its
/// one list: a run may delete what the runs before it left of NUM.
fn deletions_left(plan: &Plan, report: &Report) -> Option<u64> {
    plan.sync
        .max_delete
        .map(|most| most.saturating_sub(report.deleted))
}

/// Remote sources with wildcards (`host:'logs/*.gz'`), expanded by the server
/// as a remote shell would for scp and rsync: each match is a source of its
/// own. A wildcard that matches nothing stands for its own name (quoting
/// taken away), and fails the run before anything is copied when that is
/// not there either; with `--delete`, several matches must each land under
/// a name of their own (not with `-R`), as several typed sources must (a
/// usage error).
async fn expand_wildcards(
    link: &Link,
    srcs: &[endpoint::Remote],
    delete: bool,
    plan: &Plan,
    report: &mut Report,
) -> anyhow::Result<Vec<endpoint::Remote>> {
    let delete_missing = plan.sync.delete_missing_args;
    let ignore_missing = plan.sync.ignore_missing_args || delete_missing;
    let mut out = Vec::with_capacity(srcs.len());
    // (Several sources: one that is not there fails alone, as a local one.)
    let mut missing = Vec::new();
    for src in srcs {
        // (A `\` quotes the next character, as in a shell: the expansion
        // takes it away.)
        let literal = src.literal || !jsync::sync::has_glob(&src.path) && !src.path.contains('\\');
        // (--delete-missing-args: a missing source is for the server to
        // name as missing, unless it names a directory's contents.)
        let keep_missing = delete_missing && !jsync::sync::names_contents(src.path.as_bytes());
        let asked = keep_missing || !ignore_missing && srcs.len() == 1;
        if literal && asked {
            out.push(src.clone());
            continue;
        }
        // (--ignore-missing-args: a literal source is asked for as a
        // pattern that matches itself, if it is there.)
        let pattern = match literal {
            true => jsync::sync::glob_quote(&src.path),
            false => src.path.clone(),
        };
        let matches = jsync::sync::remote_glob(link, &pattern)
            .await
            .with_context(|| format!("cannot expand {src}"))?;
        if literal {
            if !matches.is_empty() {
                out.push(src.clone());
            } else if !ignore_missing {
                missing.push(src.clone());
            }
            continue;
        }
        // (A pattern that matches nothing stands for its own name, if that
        // is there: the server's expansion says so.)
        if matches.is_empty() && ignore_missing {
            continue;
        }
        if matches.is_empty() {
            anyhow::bail!("{src}: nothing on the server matches");
        }
        out.extend(matches.into_iter().map(|path| endpoint::Remote {
            host: src.host.clone(),
            path,
            literal: true,
        }));
    }
    if out.is_empty() {
        // (None there: the server says why, as for a single source.)
        out = missing;
    } else {
        for src in missing {
            report.errors.push(jsync::sync::FileError {
                path: src.to_string(),
                message: "no such file or directory on the server".into(),
            });
        }
    }
    // (As several typed sources: matches under names of their own.)
    let apart = !matches!(plan.selection, Selection::Relative)
        && args::by_distinct_names(out.iter().map(|r| r.path.as_bytes()));
    if delete && out.len() > 1 && !apart {
        return Err(exit::UsageError(format!(
            "--delete with several sources, and the wildcards matched {}, not each \
             under a name of its own (run jcp once per source)",
            out.len()
        ))
        .into());
    }
    Ok(out)
}

/// Prints a listing's entries on stdout; what could not be listed goes into
/// `report` (stderr and the exit code, as for a copy).
fn print_listing(plan: &Plan, listed: jsync::sync::Listing, report: &mut Report) {
    let mut out = std::io::stdout().lock();
    // (-q: nothing, as rsync's.)
    let shown = if plan.verbosity == 0 {
        &[][..]
    } else {
        &listed.entries[..]
    };
    for e in shown {
        // A closed stdout (`jcp host: | head`) is not a failure.
        if writeln!(out, "{}", listing::line(e)).is_err() {
            break;
        }
    }
    report.errors.extend(listed.errors);
    report.vanished.extend(listed.vanished);
}

/// [`local_selection`] for a server's source: the path to name to it, and the
/// options (the server's root stands for `/`).
fn remote_selection(plan: &Plan, path: &str, opts: &SyncOptions) -> (String, SyncOptions) {
    match plan.selection.split(path.as_bytes()) {
        Some((root, only)) => {
            let mut opts = opts.clone();
            opts.only = Some(only);
            let root = String::from_utf8_lossy(&root);
            (root.trim_start_matches('/').to_string(), opts)
        }
        None => (path.to_string(), opts.clone()),
    }
}

/// With `-R` or `--files-from`, the directory a local source's paths are
/// taken beneath (the current one for a relative `-R` path without `/./`),
/// and options that list the paths.
fn local_selection(plan: &Plan, src: &Path, opts: &SyncOptions) -> (PathBuf, SyncOptions) {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    match plan.selection.split(src.as_os_str().as_bytes()) {
        Some((root, only)) => {
            let root = if root.is_empty() {
                PathBuf::from(".")
            } else {
                PathBuf::from(std::ffi::OsString::from_vec(root))
            };
            let mut opts = opts.clone();
            opts.only = Some(only);
            (root, opts)
        }
        None => (src.to_path_buf(), opts.clone()),
    }
}

/// Fails early, before any connection, with a message naming a missing source.
fn check_source(plan: &Plan, src: &Path) -> anyhow::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let cannot = || format!("cannot read {}", shown_path(src));
    let m = std::fs::symlink_metadata(src).with_context(cannot)?;
    // A directory the walk is to list is read now, so that one it cannot
    // read is named as the source it is (the walk's error names only
    // its top, `.`) and fails before anything is made.
    let walked = !plan.sync.dirs_only && !matches!(plan.selection, Selection::Paths(_));
    let listed = m.is_dir()
        || m.is_symlink()
            && jsync::sync::names_contents(src.as_os_str().as_bytes())
            && std::fs::metadata(src).is_ok_and(|m| m.is_dir());
    if walked && listed {
        std::fs::read_dir(src).map(drop).with_context(cannot)?;
    }
    // (A file that cannot be opened is one too: with --delete it stops the
    // deletions, as in rsync. Not a FIFO, whose open would wait.)
    if m.is_file() {
        std::fs::File::open(src).map(drop).with_context(cannot)?;
    }
    Ok(())
}

/// The local sources, each checked before anything is copied: one that
/// cannot be read is an error in `report` and left out, unless none can be
/// (then the run fails); with
/// `--ignore-missing-args` those that do not exist are left out, and with
/// `--delete-missing-args` kept, for the destination to delete what it has
/// in their place (not one naming a directory's contents: `gone/`).
fn present(plan: &Plan, srcs: &[PathBuf], report: &mut Report) -> anyhow::Result<Vec<PathBuf>> {
    use std::os::unix::ffi::OsStrExt;
    let (ignore, delete) = (plan.sync.ignore_missing_args, plan.sync.delete_missing_args);
    let mut out = Vec::with_capacity(srcs.len());
    let mut unread = Vec::new();
    for src in srcs {
        let gone = matches!(std::fs::symlink_metadata(src), Err(e) if e.kind() == std::io::ErrorKind::NotFound);
        if gone && (ignore || delete) {
            if delete && !jsync::sync::names_contents(src.as_os_str().as_bytes()) {
                out.push(src.clone());
            }
            continue;
        }
        match check_source(plan, src) {
            Ok(()) => out.push(src.clone()),
            Err(e) => unread.push((src, e)),
        }
    }
    // One that cannot be read among others fails alone (as with rsync and
    // scp: the others are copied, exit 3); with none left, the run fails.
    if out.is_empty() && !unread.is_empty() {
        return Err(unread.swap_remove(0).1);
    }
    for (src, e) in unread {
        // (The causes below check_source's "cannot read SRC".)
        let message = e
            .chain()
            .nth(1)
            .map(jsync::error::chain_text)
            .unwrap_or_default();
        report.errors.push(jsync::sync::FileError {
            path: shown_path(src).into_owned(),
            message: format!("cannot read it: {message}"),
        });
    }
    Ok(out)
}

/// Loads the client keys and connects; jsync's errors name the server.
async fn connect(plan: &Plan, addr: &str) -> anyhow::Result<Link> {
    let security = if plan.plaintext {
        tracing::warn!(
            "--insecure-plaintext: this connection is neither encrypted nor authenticated"
        );
        ClientSecurity::Plaintext
    } else {
        ClientSecurity::from_config_dir(&plan.config_dir, &plan.tls).with_context(|| {
            format!(
                "cannot load the client keys from {}",
                plan.config_dir.display()
            )
        })?
    };
    let client = jsync::Client::new(security, Services::new())
        .transport(plan.transport)
        .family(plan.family)
        .local_address(plan.address)
        .options(plan.link.clone());
    let connecting = client.connect(addr);
    // --stop-after/--stop-at bound the connect too (by the wall clock, as
    // the copy): a server that does not answer is given up at the limit
    // (exit 30), not at --contimeout.
    let connecting = async {
        match plan.sync.stop_at {
            None => anyhow::Ok(connecting.await?),
            Some(at) => Ok(jsync::sync::until_time(at, connecting)
                .await
                .ok_or(jsync::Error::TimeLimit)
                .with_context(|| format!("cannot connect to {addr}"))??),
        }
    };
    let link = tokio::select! {
        link = connecting => link?,
        () = plan.sync.interrupted() => {
            return Err(jsync::Error::Interrupted).with_context(|| format!("cannot connect to {addr}"));
        }
    };
    tracing::info!(server = %addr, transport = %plan.transport, "connected");
    Ok(link)
}

/// Stops the run on SIGINT, SIGTERM or SIGHUP, as rsync's does (exit 20):
/// the copy closes its connection and keeps each file in flight as its
/// partial file for the next run, as when the connection drops. A second
/// signal, or a run that has not wound down 30 s later, ends jcp at once.
fn watch_signals(interrupt: tokio_util::sync::CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(int), Ok(term), Ok(hup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        return;
    };
    let mut signals = [(int, "SIGINT"), (term, "SIGTERM"), (hup, "SIGHUP")];
    // The name of the next of them to come.
    async fn next(signals: &mut [(tokio::signal::unix::Signal, &'static str); 3]) -> &'static str {
        let [(int, a), (term, b), (hup, c)] = signals;
        tokio::select! {
            _ = int.recv() => a,
            _ = term.recv() => b,
            _ = hup.recv() => c,
        }
    }
    tokio::spawn(async move {
        let name = next(&mut signals).await;
        interrupt.cancel();
        // (A terminal that hung up, or a pipe whose reader the same Ctrl-C
        // ended, cannot take it: no matter.)
        let _ = writeln!(
            std::io::stderr(),
            "jcp: received {name}: stopping (files in flight are kept for the next run)"
        );
        tokio::select! {
            _ = next(&mut signals) => {}
            () = tokio::time::sleep(std::time::Duration::from_secs(30)) => {}
        }
        std::process::exit(exit::INTERRUPTED.into());
    });
}

/// Closes the link, telling the server why when the run failed.
async fn close<T>(link: &Link, result: &anyhow::Result<T>) {
    match result {
        Ok(_) => link.close("done").await,
        Err(e) => {
            link.close(&format!("jcp failed: {}", exit::describe(e)))
                .await
        }
    }
}
