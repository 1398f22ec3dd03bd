//! `--chmod`: rsync's permission changes applied to the file list as the
//! sender makes it, so the receiver takes them for the sender's own modes
//! (locally, pushed or pulled alike).
//!
//! The syntax is rsync's: comma-separated items, each optionally prefixed
//! with `D` (directories only) or `F` (everything else but symlinks), each
//! either an octal mode (`D755`) or chmod(1)'s symbolic form (`ug+rw`,
//! `go-w`, `a=rX`, `u+s`, `+t`; several operators in one item, as `u+r-w`).
//! With no `ugoa`, an item applies to all three classes (no umask).

use std::fmt;

/// Why a `--chmod` string was refused; names the item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid --chmod item {item:?}: {why}")]
pub struct ChmodError {
    item: String,
    why: &'static str,
}

/// Which entries an item applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Applies {
    All,
    Dirs,
    Files,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    /// Every permission bit set to this.
    Octal(u32),
    /// `who` (a mask of the u, g, o classes: 0o700, 0o070, 0o007) gains,
    /// loses or is set to `perms`.
    Symbolic { who: u32, action: u8, perms: Perms },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Perms {
    r: bool,
    w: bool,
    x: bool,
    /// `X`: execute, for directories and files someone may execute already.
    big_x: bool,
    s: bool,
    t: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    applies: Applies,
    op: Op,
}

/// A parsed `--chmod` (empty: changes nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chmod {
    rules: Vec<Rule>,
    /// The string it was parsed from, to pass on to a server.
    spec: String,
}

impl Chmod {
    /// Parses rsync's `--chmod` syntax; several `--chmod` options join with
    /// commas.
    pub fn parse(spec: &str) -> Result<Chmod, ChmodError> {
        let mut rules = Vec::new();
        for item in spec.split(',').filter(|i| !i.is_empty()) {
            let bad = |why| ChmodError {
                item: item.to_string(),
                why,
            };
            let (applies, rest) = match item.as_bytes()[0] {
                b'D' => (Applies::Dirs, &item[1..]),
                b'F' => (Applies::Files, &item[1..]),
                _ => (Applies::All, item),
            };
            if rest.is_empty() {
                return Err(bad("nothing to change"));
            }
            if rest.bytes().all(|b| b.is_ascii_digit()) {
                let mode = u32::from_str_radix(rest, 8).map_err(|_| bad("not an octal mode"))?;
                if mode > 0o7777 || rest.len() > 4 {
                    return Err(bad("an octal mode is at most 7777"));
                }
                rules.push(Rule {
                    applies,
                    op: Op::Octal(mode),
                });
                continue;
            }
            let bytes = rest.as_bytes();
            let mut i = 0;
            let mut who = 0;
            while i < bytes.len() && b"ugoa".contains(&bytes[i]) {
                who |= match bytes[i] {
                    b'u' => 0o700,
                    b'g' => 0o070,
                    b'o' => 0o007,
                    _ => 0o777,
                };
                i += 1;
            }
            if who == 0 {
                who = 0o777;
            }
            if i == bytes.len() {
                return Err(bad("no +, - or = after the classes"));
            }
            while i < bytes.len() {
                let action = bytes[i];
                if !b"+-=".contains(&action) {
                    return Err(bad("expected +, - or ="));
                }
                i += 1;
                let mut perms = Perms::default();
                while i < bytes.len() && !b"+-=".contains(&bytes[i]) {
                    match bytes[i] {
                        b'r' => perms.r = true,
                        b'w' => perms.w = true,
                        b'x' => perms.x = true,
                        b'X' => perms.big_x = true,
                        b's' => perms.s = true,
                        b't' => perms.t = true,
                        _ => return Err(bad("permissions are r, w, x, X, s and t")),
                    }
                    i += 1;
                }
                rules.push(Rule {
                    applies,
                    op: Op::Symbolic { who, action, perms },
                });
            }
        }
        Ok(Chmod {
            rules,
            spec: spec.to_string(),
        })
    }

    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The permission bits (`mode & 0o7777`) of an entry after the changes;
    /// `is_dir` picks the `D` or `F` items. Symlinks are not passed here.
    pub fn apply(&self, mut mode: u32, is_dir: bool) -> u32 {
        for rule in &self.rules {
            let applies = match rule.applies {
                Applies::All => true,
                Applies::Dirs => is_dir,
                Applies::Files => !is_dir,
            };
            if !applies {
                continue;
            }
            match &rule.op {
                Op::Octal(m) => mode = (mode & !0o7777) | m,
                Op::Symbolic { who, action, perms } => {
                    let executable = is_dir || mode & 0o111 != 0;
                    let mut bits = 0;
                    if perms.r {
                        bits |= 0o444;
                    }
                    if perms.w {
                        bits |= 0o222;
                    }
                    if perms.x || (perms.big_x && executable) {
                        bits |= 0o111;
                    }
                    bits &= who;
                    // The special bits go with their class: setuid with u,
                    // setgid with g, sticky with o.
                    let special = (if who & 0o700 != 0 { 0o4000 } else { 0 })
                        | (if who & 0o070 != 0 { 0o2000 } else { 0 })
                        | (if who & 0o007 != 0 { 0o1000 } else { 0 });
                    if perms.s {
                        bits |= special & 0o6000;
                    }
                    if perms.t {
                        bits |= special & 0o1000;
                    }
                    match action {
                        b'+' => mode |= bits,
                        b'-' => mode &= !bits,
                        _ => mode = (mode & !(who | special)) | bits,
                    }
                }
            }
        }
        mode
    }
}

impl fmt::Display for Chmod {
    /// The string it was parsed from (what [`Chmod::parse`] takes back).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(spec: &str, mode: u32, is_dir: bool) -> u32 {
        Chmod::parse(spec).unwrap().apply(mode, is_dir)
    }

    #[test]
    fn rsyncs_examples_and_chmods_forms() {
        // rsync's man page: "--chmod=Dg+s,ug+w,Fo-w,+X".
        let spec = "Dg+s,ug+w,Fo-w,+X";
        assert_eq!(apply(spec, 0o755, true), 0o2775);
        assert_eq!(apply(spec, 0o646, false), 0o664);
        assert_eq!(apply(spec, 0o644, false), 0o664, "X: no one may execute it");
        assert_eq!(apply(spec, 0o744, false), 0o775, "X: its owner may");
        // Deploy habits: D755 and F644 as octal, and the symbolic equivalent.
        assert_eq!(apply("D755,F644", 0o700, true), 0o755);
        assert_eq!(apply("D755,F644", 0o700, false), 0o644);
        let sym = "Du=rwx,Dgo=rx,Fu=rw,Fgo=r";
        assert_eq!(apply(sym, 0o700, true), 0o755);
        assert_eq!(apply(sym, 0o777, false), 0o644);
        // No classes: all three; several operators in one item.
        assert_eq!(apply("+x", 0o644, false), 0o755);
        assert_eq!(apply("u+x-w", 0o644, false), 0o544);
        assert_eq!(apply("a-rwx", 0o777, false), 0);
        // The special bits: setuid with u, setgid with g, sticky with o.
        assert_eq!(apply("u+s", 0o755, false), 0o4755);
        assert_eq!(apply("g+s", 0o755, true), 0o2755);
        assert_eq!(apply("+t", 0o777, true), 0o1777);
        assert_eq!(apply("u=rw", 0o4755, false), 0o0655, "= clears setuid");
        assert_eq!(apply("2775", 0o4644, true), 0o2775);
        // Later items see what earlier ones did.
        assert_eq!(apply("a=,u+r", 0o777, false), 0o400);
    }

    #[test]
    fn bad_items_are_refused_by_name() {
        for bad in ["Dz+r", "u", "D", "u+q", "99", "17777", "u*r", "ug"] {
            let e = Chmod::parse(bad).unwrap_err();
            assert!(e.to_string().contains(&format!("{bad:?}")), "{bad}: {e}");
        }
        assert!(Chmod::parse("").unwrap().is_empty());
        let c = Chmod::parse("Dg+s,Fo-w").unwrap();
        assert_eq!(Chmod::parse(&c.to_string()).unwrap(), c);
    }
}
