//! jcp's exit codes, chosen so that scripts can tell "fix your command" from
//! "some files failed" from "the server could not be reached", and the one place
//! that maps an error to its code.
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | everything was transferred (or already up to date) |
//! | 1 | a local or other failure: a missing source, unreadable keys, a request the server refused |
//! | 2 | usage: bad options or operands (clap's own code for its errors) |
//! | 3 | some files could not be transferred; each is named on stderr, the others were transferred |
//! | 4 | connection or authentication failure: the server could not be reached, the TLS or jsync handshake failed, or the connection was lost |
//! | 20 | SIGINT, SIGTERM or SIGHUP stopped the run (rsync's code); files in flight are kept as partial files |
//! | 24 | some source files vanished before they could be sent (rsync's code); everything else was transferred |
//! | 25 | `--max-delete` stopped deletions (rsync's code); everything else was done |
//! | 30 | `--stop-after` or `--stop-at` stopped the run before it was done (rsync's code) |

use std::fmt;

/// Everything was done.
pub const SUCCESS: u8 = 0;
/// A local or other failure.
pub const FAILURE: u8 = 1;
/// Bad command line (clap exits with 2 for its own errors; ours match).
pub const USAGE: u8 = 2;
/// Some files could not be transferred.
pub const PARTIAL: u8 = 3;
/// Connection or authentication failure.
pub const CONNECTION: u8 = 4;
/// A signal stopped the run (rsync uses 20 too).
pub const INTERRUPTED: u8 = 20;
/// Some source files vanished during the run (rsync uses 24 too).
pub const VANISHED: u8 = 24;
/// `--max-delete` held deletions back (rsync uses 25 too).
pub const DELETE_LIMIT: u8 = 25;
/// `--stop-after`/`--stop-at` stopped the run (rsync's code for it too).
pub const TIME_LIMIT: u8 = 30;

/// The text for `jcp --help`.
pub const HELP: &str = "\
Exit status:
  0  all files transferred (or already up to date)
  1  a local or other failure (e.g. the source does not exist, keys cannot be read,
     the server refused the request)
  2  usage error
  3  some files could not be transferred (each is listed on stderr as
     'jcp: PATH: CAUSE'; the others were transferred)
  4  connection or authentication failure (server unreachable, TLS or handshake
     refused, connection lost)
  20 SIGINT, SIGTERM or SIGHUP stopped the run (files in flight are left as
     partial files for the next run)
  24 some source files vanished before they could be sent (each is listed on
     stderr as 'jcp: file has vanished: PATH'); everything else was transferred
  25 --max-delete stopped deletions (a warning says how many were skipped);
     everything else was done
  30 --stop-after or --stop-at stopped the copy before it was done (files in
     flight are left as partial files for the next run)";

/// A command line that parses but makes no sense (both operands remote, ...).
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// `e` and its causes on one line, `a: b: c`, leaving out a cause whose text the
/// line already holds (jsync's errors print their source themselves and also
/// return it from `source()`, so anyhow's `{:#}` would say it twice).
pub fn describe(e: &anyhow::Error) -> String {
    jsync::error::chain_text(e.as_ref())
}

/// The exit code for a run that failed with `e`.
pub fn code_for(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<UsageError>().is_some() {
        return USAGE;
    }
    let jsync_errors = || e.chain().filter_map(|c| c.downcast_ref::<jsync::Error>());
    if jsync_errors().any(|j| matches!(j, jsync::Error::TimeLimit)) {
        return TIME_LIMIT;
    }
    if jsync_errors().any(|j| matches!(j, jsync::Error::Interrupted)) {
        return INTERRUPTED;
    }
    if jsync_errors().any(|j| j.is_connection() || j.is_auth()) {
        CONNECTION
    } else {
        FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    fn io(kind: std::io::ErrorKind) -> std::io::Error {
        std::io::Error::new(kind, "x")
    }

    #[test]
    fn usage_errors_are_2() {
        let e = anyhow::Error::new(UsageError("both remote".into()));
        assert_eq!(code_for(&e), USAGE);
    }

    #[test]
    fn connection_failures_are_4_even_under_context() {
        let e: anyhow::Error = jsync::Error::Connect {
            addr: "host:7433".into(),
            source: io(std::io::ErrorKind::ConnectionRefused),
        }
        .into();
        assert_eq!(code_for(&e), CONNECTION);
        let r: Result<(), jsync::Error> = Err(jsync::Error::ConnectionLost {
            peer: "server host:7433".into(),
            reason: "reset".into(),
        });
        let e = r.context("cannot push a to host:b").unwrap_err();
        assert_eq!(code_for(&e), CONNECTION);
    }

    #[test]
    fn a_time_limit_is_30_even_under_context() {
        let r: Result<(), jsync::Error> = Err(jsync::Error::TimeLimit);
        let e = r.context("cannot copy a to host:b").unwrap_err();
        assert_eq!(code_for(&e), TIME_LIMIT);
    }

    #[test]
    fn auth_failures_are_4() {
        let e: anyhow::Error = jsync::Error::Tls {
            peer: "server host:7433".into(),
            reason: "unknown CA".into(),
        }
        .into();
        assert_eq!(code_for(&e), CONNECTION);
    }

    #[test]
    fn describe_says_each_cause_once() {
        let e: anyhow::Error = jsync::Error::Connect {
            addr: "host:7433".into(),
            source: std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused"),
        }
        .into();
        let e = e.context("cannot copy a to host:b");
        assert_eq!(
            describe(&e),
            "cannot copy a to host:b: cannot connect to host:7433: refused"
        );
    }

    #[test]
    fn local_and_remote_refusals_are_1() {
        let e = anyhow::Error::new(io(std::io::ErrorKind::NotFound)).context("cannot read /nope");
        assert_eq!(code_for(&e), FAILURE);
        let e: anyhow::Error = jsync::Error::Remote {
            peer: "server host:7433".into(),
            reason: "this server is read-only".into(),
        }
        .into();
        assert_eq!(code_for(&e), FAILURE);
    }
}
