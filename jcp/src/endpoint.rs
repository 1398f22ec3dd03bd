//! Telling `host:path` from a local path, the way scp and rsync do, so that users
//! can type what their fingers already know.
//!
//! A string is remote when it has a `:` before any `/`: `host:path`, `host:` (the
//! server's root) and `[::1]:path` (an IPv6 literal in brackets). Everything else is
//! a local path, so `./a:b` and `/x:y` stay local. Paths are kept byte for byte,
//! including a trailing `/`, which means "the contents of" (rsync's rule) and is
//! interpreted by the sync engine, not here.

use std::fmt;
use std::path::PathBuf;

/// One side of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A path on this machine, as given.
    Local(PathBuf),
    /// A path under a server's root ("" is the root itself).
    Remote(Remote),
}

/// A `host:path` endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// A host name or an IP address, without brackets.
    pub host: String,
    /// The path relative to the server's root, as given (may be empty).
    pub path: String,
    /// The path names itself: its wildcard characters are not expanded
    /// (a path `--files-from` lists).
    pub literal: bool,
}

impl Remote {
    /// The `host:port` string to connect to, with brackets around IPv6 literals.
    pub fn address(&self, port: u16) -> String {
        if self.host.contains(':') {
            format!("[{}]:{port}", self.host)
        } else {
            format!("{}:{port}", self.host)
        }
    }
}

impl fmt::Display for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.path)
        } else {
            write!(f, "{}:{}", self.host, self.path)
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Local(p) => f.write_str(&shown_path(p)),
            Endpoint::Remote(r) => r.fmt(f),
        }
    }
}

/// A local path for messages, escaped as the engine shows names (a byte
/// that is not UTF-8 as `\#ooo`, not U+FFFD).
pub fn shown_path(p: &std::path::Path) -> std::borrow::Cow<'_, str> {
    jsync::sync::escape_name(p.as_os_str().as_encoded_bytes())
}

/// [`parse`] for an operand as typed, which need not be UTF-8: bytes that
/// are not make a local path (a server's paths travel as text).
pub fn parse_os(arg: &std::ffi::OsStr) -> Result<Endpoint, String> {
    let Some(text) = arg.to_str() else {
        // (U+FFFD holds no ':', '/' or '[': the form is the bytes' own.)
        return match parse(&arg.to_string_lossy()) {
            Ok(Endpoint::Local(_)) => Ok(Endpoint::Local(PathBuf::from(arg))),
            _ => Err(format!(
                "{0}: a path on a server is UTF-8 here (write ./{0} for a local path with a ':')",
                shown_path(std::path::Path::new(arg))
            )),
        };
    };
    parse(text)
}

/// Parses one command-line operand. Fails only on a remote form with no host.
pub fn parse(arg: &str) -> Result<Endpoint, String> {
    if let Some(rest) = arg.strip_prefix('[') {
        if let Some((host, path)) = rest.split_once("]:") {
            if host.is_empty() || host.contains('/') {
                return Err(format!("{arg:?}: no host between the brackets"));
            }
            return Ok(remote(host, path));
        }
    }
    let colon = arg.find(':');
    let slash = arg.find('/');
    match colon {
        Some(c) if slash.is_none_or(|s| c < s) => {
            let (host, path) = (&arg[..c], &arg[c + 1..]);
            // An IPv6 address without brackets (`fe80::1:path`), as scp
            // refuses it too: say how to write it.
            let head = &arg[..slash.unwrap_or(arg.len())];
            if let Some((addr, _)) = head.rsplit_once(':') {
                if addr.parse::<std::net::Ipv6Addr>().is_ok() {
                    let path = &arg[addr.len() + 1..];
                    return Err(format!(
                        "{arg:?}: an IPv6 address goes in brackets: write [{addr}]:{path}"
                    ));
                }
            }
            if host.is_empty() {
                return Err(format!(
                    "{arg:?}: no host before ':' (write ./{arg} for a local path)"
                ));
            }
            // rsync's daemon forms: jsrv serves one root, on --port.
            if path.starts_with(':') || path.starts_with("//") {
                return Err(format!(
                    "{arg:?}: an rsync daemon's form (host::module, rsync://host/module); \
                     jsrv serves one root, with no modules: write host:path (and \
                     --port PORT for another port)"
                ));
            }
            // scp and rsync habits: there is no user to log in as, the
            // client key says who connects.
            if let Some((user, bare)) = host.split_once('@') {
                return Err(format!(
                    "{arg:?}: jsync has no user names ({user}@): the client key says who \
                     connects; write {bare}:{path}"
                ));
            }
            Ok(remote(host, path))
        }
        _ => Ok(Endpoint::Local(PathBuf::from(arg))),
    }
}

impl Endpoint {
    /// The same place named as a directory (a trailing slash), as a
    /// destination of several sources is; a server's root already is one.
    pub fn into_dir(self) -> Endpoint {
        match self {
            Endpoint::Local(p) => Endpoint::Local(dir_path(&p)),
            Endpoint::Remote(mut r) if !r.path.is_empty() && !r.path.ends_with('/') => {
                r.path.push('/');
                Endpoint::Remote(r)
            }
            other => other,
        }
    }
}

/// A local path named as a directory: with a trailing slash.
pub fn dir_path(p: &std::path::Path) -> PathBuf {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    if p.as_os_str().as_bytes().ends_with(b"/") {
        return p.to_path_buf();
    }
    let mut b = p.as_os_str().to_owned().into_vec();
    b.push(b'/');
    PathBuf::from(std::ffi::OsString::from_vec(b))
}

fn remote(host: &str, path: &str) -> Endpoint {
    Endpoint::Remote(Remote {
        host: host.to_string(),
        path: path.to_string(),
        literal: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(host: &str, path: &str) -> Endpoint {
        remote(host, path)
    }

    fn l(p: &str) -> Endpoint {
        Endpoint::Local(PathBuf::from(p))
    }

    #[test]
    fn operands_that_are_not_utf8_are_local_paths() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        let os = |b: &[u8]| OsStr::from_bytes(b).to_owned();
        for b in [&b"caf\xe9"[..], b"dir/caf\xe9:x", b"./h:\xff"] {
            assert_eq!(parse_os(&os(b)), Ok(Endpoint::Local(PathBuf::from(os(b)))));
        }
        // (Text takes the usual way.)
        assert_eq!(parse_os(OsStr::new("h:x")), Ok(r("h", "x")));
        for b in [&b"h:caf\xe9"[..], b"[::1]:\xff"] {
            let e = parse_os(&os(b)).unwrap_err();
            assert!(e.contains("\\#") && e.contains("is UTF-8 here"), "{e}");
        }
    }

    #[test]
    fn host_and_path() {
        assert_eq!(parse("srv:dir/file").unwrap(), r("srv", "dir/file"));
        assert_eq!(parse("10.0.0.1:x").unwrap(), r("10.0.0.1", "x"));
        assert_eq!(parse("srv:/abs").unwrap(), r("srv", "/abs"));
    }

    #[test]
    fn host_alone_is_the_server_root() {
        assert_eq!(parse("srv:").unwrap(), r("srv", ""));
    }

    #[test]
    fn ipv6_literal_in_brackets() {
        assert_eq!(parse("[::1]:path").unwrap(), r("::1", "path"));
        assert_eq!(parse("[fe80::1]:").unwrap(), r("fe80::1", ""));
        let Endpoint::Remote(rem) = parse("[::1]:d/").unwrap() else {
            panic!("not remote")
        };
        assert_eq!(rem.address(7433), "[::1]:7433");
        assert_eq!(rem.to_string(), "[::1]:d/");
    }

    #[test]
    fn colon_after_a_slash_is_local() {
        assert_eq!(parse("./a:b").unwrap(), l("./a:b"));
        assert_eq!(parse("/x:y").unwrap(), l("/x:y"));
        assert_eq!(parse("dir/a:b").unwrap(), l("dir/a:b"));
    }

    #[test]
    fn plain_paths_are_local() {
        assert_eq!(parse("file").unwrap(), l("file"));
        assert_eq!(parse("/tmp/x").unwrap(), l("/tmp/x"));
        assert_eq!(parse("[notipv6").unwrap(), l("[notipv6"));
    }

    #[test]
    fn trailing_slash_is_kept() {
        assert_eq!(parse("dir/").unwrap(), l("dir/"));
        assert_eq!(parse("srv:dir/").unwrap(), r("srv", "dir/"));
        let Endpoint::Local(p) = parse("a/b/").unwrap() else {
            panic!("not local")
        };
        assert!(p.as_os_str().to_str().unwrap().ends_with('/'));
    }

    #[test]
    fn missing_host_is_refused() {
        assert!(parse(":x").is_err());
        assert!(parse("[]:x").is_err());
    }

    #[test]
    fn rsync_daemon_forms_are_refused_with_what_to_write_instead() {
        for arg in [
            "host::mod",
            "host::",
            "rsync://host/mod",
            "rsync://host:873/mod/x",
        ] {
            let e = parse(arg).unwrap_err();
            assert!(
                e.contains("rsync daemon") && e.contains("write host:path"),
                "{arg}: {e}"
            );
        }
        assert_eq!(parse("host:a::b").unwrap(), r("host", "a::b"));
        assert_eq!(parse("host:a//b").unwrap(), r("host", "a//b"));
    }

    #[test]
    fn an_ipv6_address_without_brackets_is_refused_with_what_to_write_instead() {
        for (arg, write) in [
            ("fe80::1:dir/x", "[fe80::1]:dir/x"),
            ("::1:x", "[::1]:x"),
            ("2001:db8::7:", "[2001:db8::7]:"),
        ] {
            let e = parse(arg).unwrap_err();
            assert!(
                e.contains("IPv6") && e.contains(&format!("write {write}")),
                "{arg}: {e}"
            );
        }
        assert_eq!(parse("[fe80::1]:dir").unwrap(), r("fe80::1", "dir"));
    }

    #[test]
    fn a_user_name_is_refused_with_what_to_write_instead() {
        let e = parse("alice@srv:dir").unwrap_err();
        assert!(e.contains("no user names") && e.contains("srv:dir"), "{e}");
        // An @ in a local path or in the remote path is just a character.
        assert_eq!(parse("./a@b:c").unwrap(), l("./a@b:c"));
        assert_eq!(parse("srv:a@b").unwrap(), r("srv", "a@b"));
    }

    #[test]
    fn address_of_a_named_host() {
        let Endpoint::Remote(rem) = parse("example.org:x").unwrap() else {
            panic!("not remote")
        };
        assert_eq!(rem.address(22), "example.org:22");
    }
}
