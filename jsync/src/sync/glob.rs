//! Remote wildcards, as scp and rsync users type them: `jcp host:'logs/*.gz'
//! dst`. There is no remote shell to expand the pattern, so the server does,
//! beneath its root and by a shell's rules (`*`, `?` and `[...]` within one
//! name, a name starting with `.` matched only by a pattern starting with
//! `.`, `\` quoting the next character, matches sorted), and the client pulls
//! each match as a source of its own ([`remote_glob`]).

use std::borrow::Cow;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use globset::{Candidate, GlobBuilder, GlobMatcher};
use proto::sync::{self as msg, Matches, MAX_MATCHES};
use proto::Fragment;

use super::fsroot::FsRoot;
use super::proto_util::{decode, fragment};
use crate::error::{Error, Result};
use crate::runtime::{Link, Peer};

/// The service name a server registers for wildcard expansion.
pub const GLOB: &str = "jsync.glob";

/// Most paths one pattern may match (a pattern is for picking sources by
/// hand, not for listing a tree; pull the directory for that).
pub const MAX_TOTAL_MATCHES: usize = 100_000;

/// Whether `path` holds a wildcard (`*`, `?` or `[` not quoted by `\`).
pub fn has_glob(path: &str) -> bool {
    let mut quoted = false;
    for c in path.chars() {
        match c {
            _ if quoted => quoted = false,
            '\\' => quoted = true,
            '*' | '?' | '[' => return true,
            _ => {}
        }
    }
    false
}

/// `path` with every wildcard character and `\` quoted by a `\`: a pattern
/// that matches the path itself, if it exists (`--ignore-missing-args`
/// asks the server so).
pub fn glob_quote(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 4);
    for c in path.chars() {
        if matches!(c, '*' | '?' | '[' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `comp` with its `\` quoting removed (a name without wildcards).
fn unquote(comp: &str) -> String {
    let mut out = String::with_capacity(comp.len());
    let mut quoted = false;
    for c in comp.chars() {
        if c == '\\' && !quoted {
            quoted = true;
        } else {
            out.push(c);
            quoted = false;
        }
    }
    out
}

/// One name's pattern for globset: braces are literal (a shell expands them
/// before globbing, and a name may hold one), the rest is globset's syntax;
/// `None` for one that is not well formed (`a[1`).
fn matcher(comp: &str) -> Option<GlobMatcher> {
    let mut pat = String::with_capacity(comp.len() + 4);
    let mut quoted = false;
    for c in comp.chars() {
        if quoted {
            pat.push(c);
            quoted = false;
        } else if c == '\\' {
            pat.push(c);
            quoted = true;
        } else {
            if c == '{' || c == '}' {
                pat.push('\\');
            }
            pat.push(c);
        }
    }
    GlobBuilder::new(&pat)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map(|g| g.compile_matcher())
        .ok()
}

/// Expands `pattern` (relative to the root of `fs`) into the paths it
/// matches, sorted, each ending in `/` when the pattern does (rsync's "the
/// contents of"; only directories match then). A directory that cannot be
/// read matches nothing, as in a shell; absolute patterns are refused, and
/// a leading `~` and `..` are taken only before the first wildcard (as in
/// any path from a client: [`FsRoot::resolve_typed`]). A name that is no
/// well-formed pattern (`a[1`) is taken as it is, as a shell takes it, and
/// a pattern that matches nothing matches its own name, if that is there.
pub(crate) fn expand(fs: &FsRoot, pattern: &str) -> std::result::Result<Vec<String>, String> {
    let pattern = &*resolve_prefix(fs, pattern)?;
    // (Absolute and `..` after a wildcard are refused as a client's path.)
    FsRoot::check(pattern.as_bytes()).map_err(|e| e.to_string())?;
    let slash = pattern.ends_with('/');
    let mut found: Vec<Vec<u8>> = vec![Vec::new()];
    for comp in pattern.split('/').filter(|c| !c.is_empty() && *c != ".") {
        let mut next = Vec::new();
        let m = match has_glob(comp) {
            true => matcher(comp),
            false => None,
        };
        if let Some(m) = m {
            let dots = comp.starts_with('.');
            for dir in &found {
                let Ok(rel) = FsRoot::check(dir) else {
                    continue;
                };
                let Ok(mut names) = fs.read_dir(&rel) else {
                    continue;
                };
                names.sort_unstable();
                for (name, _) in names {
                    if (dots || name.first() != Some(&b'.'))
                        && m.is_match_candidate(&Candidate::new(OsStr::from_bytes(&name)))
                    {
                        next.push(joined(dir, &name));
                        if next.len() > MAX_TOTAL_MATCHES {
                            return Err(format!(
                                "{pattern}: matches more than {MAX_TOTAL_MATCHES} paths"
                            ));
                        }
                    }
                }
            }
        } else {
            let name = unquote(comp);
            next.extend(found.iter().map(|dir| joined(dir, name.as_bytes())));
        }
        found = next;
    }
    // A pattern without wildcards (a quoted path: --ignore-missing-args
    // asking whether it is there) matches whatever is there, and only what
    // is not there is no match: any other error is said.
    let literal = !has_glob(pattern);
    let mut out = Vec::new();
    for path in found {
        let there = match FsRoot::check(&path) {
            Ok(rel) => fs.lstat(&rel),
            Err(e) => Err(e),
        };
        let exists = match there {
            Ok(Some(_)) if literal => true,
            // With a trailing slash only directories match, as in a shell,
            // and symlinks to them (beneath the root), which the pull then
            // reads through.
            Ok(Some(m)) => {
                use super::fsroot::Kind;
                let dir = |m: &super::fsroot::Meta| m.kind == Kind::Dir;
                !slash
                    || dir(&m)
                    || m.kind == Kind::Symlink
                        && FsRoot::check(&path)
                            .ok()
                            .and_then(|rel| fs.stat_follow_within(&rel).ok().flatten())
                            .is_some_and(|m| dir(&m))
            }
            Ok(None) => false,
            Err(e) if literal => return Err(e.to_string()),
            Err(_) => false,
        };
        if !exists {
            continue;
        }
        let mut p = String::from_utf8(path).map_err(|e| {
            format!(
                "{pattern} matches {}, whose name is not UTF-8: pull its directory instead",
                super::escape_name(e.as_bytes())
            )
        })?;
        if slash {
            p.push('/');
        }
        // (A name `~` is an entry of that name: asked for, `~` alone would
        // be the root, FsRoot::resolve_typed.)
        if p == "~" || p.starts_with("~/") {
            p.insert_str(0, "./");
        }
        out.push(p);
    }
    // A pattern that matches nothing stands for its own name with the
    // quoting taken away, as a shell passes such a word on (and rsync's
    // server reads it): `a[1].txt` names a file of that name.
    if out.is_empty() && !literal {
        return expand(fs, &glob_quote(&unquote(pattern)));
    }
    Ok(out)
}

/// `pattern` with its part before the first wildcard resolved on the
/// server (a leading `~`, each `..`: [`FsRoot::resolve_typed`]); the rest
/// as it is.
fn resolve_prefix<'a>(fs: &FsRoot, pattern: &'a str) -> std::result::Result<Cow<'a, str>, String> {
    let comps: Vec<&str> = pattern.split('/').collect();
    let wild = comps
        .iter()
        .position(|c| has_glob(c))
        .unwrap_or(comps.len());
    if comps[0] != "~" && !comps[..wild].iter().any(|c| unquote(c) == "..") {
        return Ok(Cow::Borrowed(pattern));
    }
    let prefix = unquote(&comps[..wild].join("/"));
    let resolved = fs.resolve_typed(&prefix).map_err(|e| e.to_string())?;
    let mut out = glob_quote(&resolved);
    if wild < comps.len() {
        if !out.is_empty() && !out.ends_with('/') {
            out.push('/');
        }
        out.push_str(&comps[wild..].join("/"));
    }
    Ok(Cow::Owned(out))
}

fn joined(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(dir.len() + 1 + name.len());
    p.extend_from_slice(dir);
    if !dir.is_empty() {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// The server's side of [`GLOB`]: expands the pattern (its one argument)
/// beneath `root` and sends the matches on the circuit the client opens.
pub(crate) async fn serve(peer: Peer, root: PathBuf) -> anyhow::Result<()> {
    let pattern = peer
        .args()
        .first()
        .ok_or_else(|| anyhow::anyhow!("no pattern given"))?
        .clone();
    let fs = FsRoot::open(&root).map_err(super::give::fs_err)?;
    let matches = tokio::task::spawn_blocking(move || expand(&fs, &pattern))
        .await?
        .map_err(anyhow::Error::msg)?;
    let mut c = peer
        .accept()
        .await?
        .ok_or_else(|| anyhow::anyhow!("the client ended before asking"))?;
    for batch in matches.chunks(MAX_MATCHES) {
        let m = Matches(batch.iter().map(|p| p.as_bytes().to_vec()).collect());
        c.send(fragment(msg::GLOB_MATCHES, &m)).await?;
    }
    c.finish().await?;
    // Done once the client has read it all and ended its side.
    while c.recv().await?.is_some() {}
    Ok(())
}

/// Asks the server on `link` which paths beneath its root `pattern` matches
/// (sorted; empty when none does).
pub async fn remote_glob(link: &Link, pattern: &str) -> Result<Vec<String>> {
    let peer = link.start(GLOB, &[pattern.to_string()]).await?;
    let name = || link.peer_name().to_string();
    // Our circuit: one the server opened could arrive after its "done".
    let mut c = peer.open().await?;
    c.finish().await?;
    let mut out = Vec::new();
    while let Some(f) = c.recv().await? {
        out.extend(matches_of(&f, &name())?);
        if out.len() > MAX_TOTAL_MATCHES {
            return Err(Error::Violation {
                peer: name(),
                what: format!("more than {MAX_TOTAL_MATCHES} matches for {pattern}"),
            });
        }
    }
    peer.close();
    Ok(out)
}

/// The paths in one answer message, which must be UTF-8 (the server checked).
fn matches_of(f: &Fragment, peer: &str) -> Result<Vec<String>> {
    if f.op != msg::GLOB_MATCHES {
        return Err(Error::Violation {
            peer: peer.into(),
            what: format!("expected wildcard matches, got {}", f.op),
        });
    }
    let m: Matches = decode(&f.payload, peer)?;
    m.0.into_iter()
        .map(|p| {
            String::from_utf8(p).map_err(|_| Error::Violation {
                peer: peer.into(),
                what: "a wildcard match that is not UTF-8".into(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (tempfile::TempDir, FsRoot) {
        let t = tempfile::tempdir().unwrap();
        for f in [
            "logs/a.gz",
            "logs/b.gz",
            "logs/c.txt",
            "logs/.hidden.gz",
            "logs/old/d.gz",
            "x/logs/e.gz",
            "br{ace}.txt",
            "star*.txt",
        ] {
            let p = t.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        }
        let fs = FsRoot::open(t.path()).unwrap();
        (t, fs)
    }

    #[test]
    fn wildcards_match_as_a_shell_would() {
        let (_t, fs) = tree();
        let e = |p: &str| expand(&fs, p).unwrap();
        assert_eq!(e("logs/*.gz"), ["logs/a.gz", "logs/b.gz"]);
        assert_eq!(e("logs/.*.gz"), ["logs/.hidden.gz"]);
        assert_eq!(e("logs/?.txt"), ["logs/c.txt"]);
        assert_eq!(e("logs/[ab].gz"), ["logs/a.gz", "logs/b.gz"]);
        assert_eq!(e("*/logs/*.gz"), ["x/logs/e.gz"]);
        assert_eq!(e("logs/*/"), ["logs/old/"]);
        assert_eq!(e("./logs/o*/d.gz"), ["logs/old/d.gz"]);
        assert_eq!(e("br{ace}.*"), ["br{ace}.txt"]);
        assert_eq!(e("star\\*.*"), ["star*.txt"]);
        assert!(e("logs/*.zip").is_empty());
        assert!(e("nowhere/*").is_empty());
    }

    /// With a trailing slash a symlink to a directory matches, as in a
    /// shell, while it leads beneath the root; a link to a file, or out
    /// of the root, does not.
    #[test]
    fn a_slash_matches_links_to_directories_beneath_the_root() {
        let (t, fs) = tree();
        let out = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("logs/old", t.path().join("lnk-dir")).unwrap();
        std::os::unix::fs::symlink("logs/a.gz", t.path().join("lnk-file")).unwrap();
        std::os::unix::fs::symlink(out.path(), t.path().join("lnk-out")).unwrap();
        assert_eq!(expand(&fs, "lnk-*/").unwrap(), ["lnk-dir/"]);
        assert_eq!(expand(&fs, "lnk-*").unwrap().len(), 3);
    }

    /// `~` and `..` before the first wildcard are resolved as the server
    /// resolves a path; a malformed pattern names itself, as in a shell.
    #[test]
    fn home_dot_dot_and_malformed_patterns_are_taken_as_a_shell_would() {
        let (t, fs) = tree();
        std::fs::write(t.path().join("a[1"), b"x").unwrap();
        std::os::unix::fs::symlink("logs/old", t.path().join("to-old")).unwrap();
        let e = |p: &str| expand(&fs, p).unwrap();
        assert_eq!(e("~/logs/*.txt"), ["logs/c.txt"]);
        assert_eq!(e("~/s*"), ["star*.txt"]);
        assert_eq!(e("logs/old/../*.txt"), ["logs/c.txt"]);
        assert_eq!(e("to-old/../*.txt"), ["logs/c.txt"]);
        assert_eq!(e("x/logs/../../logs/[ab].gz"), ["logs/a.gz", "logs/b.gz"]);
        assert_eq!(e("a[1"), ["a[1"]);
        assert!(e("b[1").is_empty());
        assert!(expand(&fs, "logs/*/../a.gz").is_err());
    }

    #[test]
    fn wildcards_stay_beneath_the_root() {
        let (_t, fs) = tree();
        assert!(expand(&fs, "../*").is_err());
        assert!(expand(&fs, "logs/../../*").is_err());
        assert!(expand(&fs, "/etc/*").is_err());
    }

    #[test]
    fn quoted_paths_match_themselves() {
        let (t, fs) = tree();
        std::os::unix::fs::symlink("logs", t.path().join("to-logs")).unwrap();
        let e = |p: &str| expand(&fs, &glob_quote(p));
        for p in [
            "logs/a.gz",
            "star*.txt",
            "br{ace}.txt",
            "logs/",
            "logs",
            "to-logs/",
        ] {
            assert!(!has_glob(&glob_quote(p)), "{p}");
            assert_eq!(e(p).unwrap(), [p], "{p}");
        }
        assert!(e("logs/missing").unwrap().is_empty());
        assert!(e("star?.txt").unwrap().is_empty(), "quoted: no wildcard");
        // Another error than "not there" is an error.
        assert!(e("logs/a.gz/x").is_err(), "through a file");
    }

    #[test]
    fn has_glob_sees_unquoted_wildcards() {
        assert!(has_glob("a/*.gz") && has_glob("f?") && has_glob("[ab]"));
        assert!(!has_glob("plain/path") && !has_glob("star\\*") && !has_glob("br{ace}"));
    }
}
