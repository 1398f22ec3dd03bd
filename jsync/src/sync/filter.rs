//! Include/exclude rules, as rsync's `--include`, `--exclude`, `--include-from`
//! and `--exclude-from` have them, so users can say which parts of a tree a sync
//! moves (and, with deletion, which parts of the destination it leaves alone).
//!
//! The rules are kept here, apart from the engine, so both ends of a transfer
//! can apply the same list: the client parses the command line, sends the list
//! over the wire in its lossless string form ([`Filter::to_args`] /
//! [`Filter::from_args`]) and each side asks [`Filter::is_excluded`] for every
//! entry it walks. Glob matching is done by the `globset` crate (from ripgrep),
//! on raw path bytes, so names that are not UTF-8 are matched like any other.
//!
//! # Semantics
//!
//! * A filter is an ordered list of rules, each an include or an exclude with a
//!   pattern. The **first** rule whose pattern matches a path decides; a path no
//!   rule matches is included. `--include '*.c' --exclude '*'` therefore keeps
//!   only C files (and, as in rsync, no directories: see below).
//! * Paths are relative to the transfer root, `/`-separated, with no leading
//!   slash. The root itself (the empty path) is never excluded. As in rsync,
//!   the transfer root of a directory named without a trailing slash (`src`) is
//!   its parent, so its entries are matched as `src/...`
//!   ([`Filter::under`]); with the slash (`src/`) it is the directory itself.
//! * A pattern starting with `/` is anchored at the transfer root: `/a/b` matches
//!   `a/b` only. Otherwise a pattern with no `/` (a trailing one aside) matches
//!   the last component at any depth (`*.o` matches `x.o` and `src/x.o`), and a
//!   pattern with an inner `/` (or with `**`) matches the end of the path at a
//!   component boundary: `a/b` matches `a/b` and `x/a/b`, not `xa/b`.
//! * A trailing `/` makes the rule match directories only.
//! * `*` matches any run of bytes but not `/`; `**` matches across `/`
//!   (`dir/**` is everything inside `dir`; `a/**/b` matches `a/b` and `a/x/y/b`;
//!   `a**b` matches `ab`, `axb` and `a/x/b`); `?` matches one byte other than `/`;
//!   `[...]` is a byte class (`[!...]` or `[^...]` negates it). A trailing
//!   `dir/***` matches `dir` itself (as a directory) and everything inside it.
//! * As in rsync, a backslash escapes a wildcard, but only in a pattern that has
//!   a wildcard (`*`, `?` or `[`); a pattern without one is matched literally,
//!   backslashes included. Braces are literal (rsync has no `{a,b}`).
//! * A rule says nothing about a path's parents: excluding a directory hides what
//!   is inside it only because the walker does not descend into an excluded
//!   directory, exactly as rsync behaves. That is why keeping `dir/*.c` under an
//!   `--exclude '*'` also needs `--include 'dir/'`. Callers must not descend
//!   into a directory for which [`Filter::is_excluded`] is true.
//!
//! Not supported (yet): rsync's full `--filter` syntax (merge files, `!` to
//! clear the list, modifiers such as `-/` or `+!`, per-directory rules), POSIX
//! character classes (`[[:alpha:]]`) and case-insensitive matching.

use std::io::BufRead;

use globset::{Candidate, GlobBuilder, GlobMatcher};

/// Whether a rule keeps or drops the paths it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    Include,
    Exclude,
}

impl RuleKind {
    fn prefix(self) -> &'static str {
        match self {
            RuleKind::Include => "+ ",
            RuleKind::Exclude => "- ",
        }
    }
}

/// A rule or a rule file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// The pattern is not a glob we can compile.
    #[error("bad filter pattern {pattern:?}: {reason}")]
    BadPattern { pattern: String, reason: String },
    /// A line of an `--include-from`/`--exclude-from` file was bad.
    #[error("{source_name}:{line}: {error}")]
    InFile {
        source_name: String,
        line: usize,
        #[source]
        error: Box<FilterError>,
    },
    /// Reading an `--include-from`/`--exclude-from` file failed.
    #[error("reading filter rules from {source_name}: {error}")]
    Read {
        source_name: String,
        #[source]
        error: std::io::Error,
    },
    /// A wire-form rule did not start with `"+ "` or `"- "`.
    #[error("bad filter rule {0:?}: expected \"+ PATTERN\" or \"- PATTERN\"")]
    BadRule(String),
}

/// One compiled way a rule can match (most rules have one; `a**b` and
/// `dir/***` expand to two or more).
#[derive(Debug, Clone)]
struct Alt {
    matcher: GlobMatcher,
    dir_only: bool,
}

#[derive(Debug, Clone)]
struct Rule {
    kind: RuleKind,
    /// The pattern as the user gave it, for the wire form.
    pattern: String,
    alts: Vec<Alt>,
}

impl Rule {
    fn matches(&self, path: &Candidate<'_>, is_dir: bool) -> bool {
        self.alts
            .iter()
            .any(|a| (is_dir || !a.dir_only) && a.matcher.is_match_candidate(path))
    }
}

/// An ordered list of include/exclude rules; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    rules: Vec<Rule>,
    /// Prepended (with a `/`) to every path asked about: the name of a source
    /// directory copied as itself, whose parent is the transfer root.
    prefix: Vec<u8>,
}

/// At most this many unbordered `**` in one pattern (each doubles the globs).
const MAX_INNER_DOUBLE_STARS: usize = 4;

impl Filter {
    /// True when there are no rules (everything is included).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Appends a rule. The pattern is taken as is: a leading `"+ "` or `"- "` is
    /// part of the pattern here (only [`Filter::add_from_reader`] reads those).
    pub fn add(&mut self, kind: RuleKind, pattern: &str) -> Result<(), FilterError> {
        let alts = compile(pattern).map_err(|reason| FilterError::BadPattern {
            pattern: pattern.to_string(),
            reason,
        })?;
        self.rules.push(Rule {
            kind,
            pattern: pattern.to_string(),
            alts,
        });
        Ok(())
    }

    /// Appends the rules of an `--include-from`/`--exclude-from` file: one
    /// pattern per line, `default` kind unless the line starts with `"+ "`
    /// (include) or `"- "` (exclude). Blank lines and lines starting with `#` or
    /// `;` are ignored; a trailing `\r` is dropped. `source_name` (a file name,
    /// or `-` for stdin) labels errors with the line number.
    pub fn add_from_reader(
        &mut self,
        r: impl BufRead,
        default: RuleKind,
        source_name: &str,
    ) -> Result<(), FilterError> {
        for (i, line) in r.split(b'\n').enumerate() {
            let line = line.map_err(|error| FilterError::Read {
                source_name: source_name.to_string(),
                error,
            })?;
            let in_file = |error: FilterError| FilterError::InFile {
                source_name: source_name.to_string(),
                line: i + 1,
                error: Box::new(error),
            };
            let line = line.strip_suffix(b"\r").unwrap_or(&line);
            let line = std::str::from_utf8(line).map_err(|_| {
                in_file(FilterError::BadPattern {
                    pattern: String::from_utf8_lossy(line).into_owned(),
                    reason: "not UTF-8".to_string(),
                })
            })?;
            if line.trim().is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            let (kind, pattern) = split_prefix(line).unwrap_or((default, line));
            self.add(kind, pattern).map_err(in_file)?;
        }
        Ok(())
    }

    /// Whether the first matching rule excludes `rel_path` (relative to the
    /// transfer root, or to the directory given to [`Filter::under`];
    /// `/`-separated, no leading slash; any bytes). `is_dir` says
    /// whether the entry is a directory, for directory-only rules. The root (an
    /// empty path) is never excluded.
    pub fn is_excluded(&self, rel_path: &[u8], is_dir: bool) -> bool {
        if rel_path.is_empty() || self.rules.is_empty() {
            return false;
        }
        let rooted;
        let path = if self.prefix.is_empty() {
            rel_path
        } else {
            rooted = [&self.prefix[..], b"/", rel_path].concat();
            &rooted[..]
        };
        let cand = Candidate::from_bytes(path);
        self.rules
            .iter()
            .find(|r| r.matches(&cand, is_dir))
            .is_some_and(|r| r.kind == RuleKind::Exclude)
    }

    /// The same rules for paths relative to directory `name` inside the transfer
    /// root: what a sync of `name` without a trailing slash walks (rsync
    /// matches `/name/x` there, not `/x`). An empty name changes nothing.
    pub fn under(&self, name: &[u8]) -> Filter {
        Filter {
            rules: self.rules.clone(),
            prefix: name.to_vec(),
        }
    }

    /// The rules in order as `"+ PATTERN"` / `"- PATTERN"` strings, one per rule;
    /// [`Filter::from_args`] reads them back into the same filter.
    pub fn to_args(&self) -> Vec<String> {
        self.rules
            .iter()
            .map(|r| format!("{}{}", r.kind.prefix(), r.pattern))
            .collect()
    }

    /// The inverse of [`Filter::to_args`]: each string must be `"+ PATTERN"` or
    /// `"- PATTERN"` (the pattern is everything after the two-byte prefix).
    pub fn from_args(args: &[String]) -> Result<Filter, FilterError> {
        let mut f = Filter::default();
        for a in args {
            let (kind, pattern) = split_prefix(a).ok_or_else(|| FilterError::BadRule(a.clone()))?;
            f.add(kind, pattern)?;
        }
        Ok(f)
    }
}

fn split_prefix(s: &str) -> Option<(RuleKind, &str)> {
    if let Some(p) = s.strip_prefix("+ ") {
        Some((RuleKind::Include, p))
    } else {
        s.strip_prefix("- ").map(|p| (RuleKind::Exclude, p))
    }
}

/// Turns an rsync pattern into the globset globs that together match the same
/// paths (as candidates relative to the root).
fn compile(pattern: &str) -> Result<Vec<Alt>, String> {
    let mut p = pattern;
    let anchored = if let Some(rest) = p.strip_prefix('/') {
        p = rest;
        true
    } else {
        false
    };
    // `dir/***`: the directory itself and everything in it.
    let triple = p.len() > 4 && p.ends_with("/***") || p == "***";
    let mut dir_only = false;
    if triple {
        p = p.strip_suffix("***").unwrap_or(p);
    } else if let Some(rest) = p.strip_suffix('/') {
        p = rest;
        dir_only = true;
    }
    if p.is_empty() && !triple {
        return Err("empty pattern".to_string());
    }
    if p.ends_with('/') && !triple {
        return Err("more than one trailing '/'".to_string());
    }

    // Each entry: (glob for globset, dir_only).
    let mut globs: Vec<(String, bool)> = Vec::new();
    if triple {
        let stem = p.trim_end_matches('/');
        if !stem.is_empty() {
            globs.extend(translate(stem)?.into_iter().map(|g| (g, true)));
        }
        let inside = format!("{p}**");
        globs.extend(translate(&inside)?.into_iter().map(|g| (g, false)));
    } else {
        globs.extend(translate(p)?.into_iter().map(|g| (g, dir_only)));
    }

    globs
        .into_iter()
        .map(|(g, dir_only)| {
            let g = if anchored { g } else { format!("**/{g}") };
            let matcher = GlobBuilder::new(&g)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| e.kind().to_string())?
                .compile_matcher();
            Ok(Alt { matcher, dir_only })
        })
        .collect()
}

/// rsync wildcard syntax to globset syntax, as one or more globs (an `**` that
/// is not a whole path component matches across `/` in rsync but not in
/// globset, so `a**b` becomes `a*b` or `a*/**/*b`).
fn translate(p: &str) -> Result<Vec<String>, String> {
    if !p.contains(['*', '?', '[']) {
        return Ok(vec![escape_literal(p)]);
    }
    let chars: Vec<char> = p.chars().collect();
    let mut outs = vec![String::new()];
    let push = |outs: &mut Vec<String>, s: &str| outs.iter_mut().for_each(|o| o.push_str(s));
    let mut inner = 0;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' => {
                let mut s = String::from('\\');
                match chars.get(i + 1) {
                    Some(&n) => s.push(n),
                    None => s.push('\\'), // a lone trailing backslash is literal
                }
                push(&mut outs, &s);
                i += 2;
            }
            '[' => {
                // Copy the class verbatim: `[!]...]`, `[^]...]`, `[]...]` keep their
                // leading `]`. An unclosed class is left for globset to reject.
                let mut j = i + 1;
                if matches!(chars.get(j), Some('!' | '^')) {
                    j += 1;
                }
                if chars.get(j) == Some(&']') {
                    j += 1;
                }
                while j < chars.len() && chars[j] != ']' {
                    j += 1;
                }
                let end = (j + 1).min(chars.len());
                let s: String = chars[i..end].iter().collect();
                push(&mut outs, &s);
                i = end;
            }
            '{' | '}' => {
                push(&mut outs, &format!("[{c}]"));
                i += 1;
            }
            '*' => {
                let mut j = i;
                while j < chars.len() && chars[j] == '*' {
                    j += 1;
                }
                let n = j - i;
                let before_ok = i == 0 || chars[i - 1] == '/';
                let after_ok = j == chars.len() || chars[j] == '/';
                if n == 1 {
                    push(&mut outs, "*");
                } else if before_ok && after_ok {
                    push(&mut outs, "**");
                } else {
                    inner += 1;
                    if inner > MAX_INNER_DOUBLE_STARS {
                        return Err(format!(
                            "more than {MAX_INNER_DOUBLE_STARS} '**' inside path components"
                        ));
                    }
                    let mut crossing = outs.clone();
                    push(&mut outs, "*");
                    push(&mut crossing, "*/**/*");
                    outs.extend(crossing);
                }
                i = j;
            }
            _ => {
                let mut b = [0u8; 4];
                push(&mut outs, c.encode_utf8(&mut b));
                i += 1;
            }
        }
    }
    Ok(outs)
}

/// A glob matching exactly `p` (globset's own `escape` leaves backslashes alone).
fn escape_literal(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    for c in p.chars() {
        if matches!(c, '\\' | '*' | '?' | '[' | ']' | '{' | '}' | ',') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use RuleKind::{Exclude, Include};

    fn filter(rules: &[(RuleKind, &str)]) -> Filter {
        let mut f = Filter::default();
        for (k, p) in rules {
            f.add(*k, p).unwrap_or_else(|e| panic!("{e}"));
        }
        f
    }

    fn excl(f: &Filter, path: &str) -> bool {
        f.is_excluded(path.as_bytes(), false)
    }

    fn excl_dir(f: &Filter, path: &str) -> bool {
        f.is_excluded(path.as_bytes(), true)
    }

    #[test]
    fn under_a_directory_paths_are_matched_below_its_name() {
        let f = filter(&[
            (Exclude, "/src/build"),
            (Exclude, "/top.o"),
            (Exclude, "*.tmp"),
        ]);
        let src = f.under(b"src");
        // `jcp src dst`: the walk's "build" is the transfer root's "src/build".
        assert!(excl_dir(&src, "build"));
        assert!(!excl_dir(&src, "sub/build"));
        // Anchored at the root, above the source: matches nothing in it.
        assert!(!excl(&src, "top.o"));
        assert!(excl(&src, "deep/x.tmp"));
        // The same rules for `jcp src/ dst`.
        assert!(!excl_dir(&f, "build"));
        assert!(excl(&f, "top.o"));
        assert!(
            !src.is_excluded(b"", true),
            "the source itself is never excluded"
        );
    }

    /// Which of `paths` (a trailing `/` marks a directory) survive a walk that
    /// does not descend into excluded directories, as the engine will do.
    fn walk(f: &Filter, paths: &[&str]) -> Vec<String> {
        let mut kept = Vec::new();
        let mut dropped_dirs: Vec<String> = Vec::new();
        for p in paths {
            let (name, is_dir) = match p.strip_suffix('/') {
                Some(n) => (n, true),
                None => (*p, false),
            };
            if dropped_dirs
                .iter()
                .any(|d| name.starts_with(&format!("{d}/")))
            {
                continue;
            }
            if f.is_excluded(name.as_bytes(), is_dir) {
                if is_dir {
                    dropped_dirs.push(name.to_string());
                }
            } else {
                kept.push(p.to_string());
            }
        }
        kept
    }

    #[test]
    fn empty_filter_includes_everything() {
        let f = Filter::default();
        assert!(f.is_empty());
        assert!(!excl(&f, "a"));
        assert!(!excl_dir(&f, "a/b"));
        assert!(f.to_args().is_empty());
    }

    #[test]
    fn root_is_never_excluded() {
        let f = filter(&[(Exclude, "*"), (Exclude, "**")]);
        assert!(!f.is_excluded(b"", true));
        assert!(excl_dir(&f, "a"));
    }

    #[test]
    fn first_match_wins() {
        let f = filter(&[(Include, "*.c"), (Exclude, "*")]);
        assert!(!f.is_empty());
        assert!(!excl(&f, "main.c"));
        assert!(!excl(&f, "src/deep/x.c"));
        assert!(excl(&f, "main.h"));
        assert!(excl_dir(&f, "src"));
        // The other order: the exclude matches first.
        let f = filter(&[(Exclude, "*"), (Include, "*.c")]);
        assert!(excl(&f, "main.c"));
        // No rule matches: included.
        let f = filter(&[(Exclude, "*.o")]);
        assert!(!excl(&f, "a.c"));
        assert!(excl(&f, "a.o"));
        assert!(excl(&f, "x/y/a.o"));
    }

    #[test]
    fn include_dir_then_its_files_then_exclude_all() {
        let f = filter(&[(Include, "dir/"), (Include, "dir/*.c"), (Exclude, "*")]);
        let tree = [
            "a.c",
            "dir/",
            "dir/x.c",
            "dir/x.h",
            "dir/sub/",
            "dir/sub/y.c",
            "other/",
            "other/dir/",
            "other/dir/z.c",
            "other/dir/z.h",
        ];
        // `dir/sub` is excluded by `*` (`dir/` matches a component named `dir`).
        // `dir/` and `dir/*.c` float, so `other/dir/z.c` itself matches an
        // include -- but its parent `other` is excluded, so a walk never gets there.
        assert_eq!(walk(&f, &tree), ["dir/", "dir/x.c"]);
        assert!(!excl(&f, "other/dir/z.c"));
        // Without the directory include nothing inside dir survives a walk.
        let f = filter(&[(Include, "dir/*.c"), (Exclude, "*")]);
        assert!(walk(&f, &tree).is_empty());
        // `*.c` keeps C files at the top only: directories are excluded by `*`.
        let f = filter(&[(Include, "*.c"), (Exclude, "*")]);
        assert_eq!(walk(&f, &tree), ["a.c"]);
        // ... unless directories are included first.
        let f = filter(&[(Include, "*/"), (Include, "*.c"), (Exclude, "*")]);
        assert_eq!(
            walk(&f, &tree),
            [
                "a.c",
                "dir/",
                "dir/x.c",
                "dir/sub/",
                "dir/sub/y.c",
                "other/",
                "other/dir/",
                "other/dir/z.c"
            ]
        );
    }

    #[test]
    fn anchored_and_floating() {
        let f = filter(&[(Exclude, "/top")]);
        assert!(excl(&f, "top"));
        assert!(!excl(&f, "x/top"));
        assert!(!excl(&f, "top2"));

        let f = filter(&[(Exclude, "name")]);
        assert!(excl(&f, "name"));
        assert!(excl(&f, "a/b/name"));
        assert!(!excl(&f, "name/child")); // a rule does not match below its match
        assert!(!excl(&f, "a/xname"));

        // An inner slash: matched against the end of the path, at a boundary.
        let f = filter(&[(Exclude, "a/b")]);
        assert!(excl(&f, "a/b"));
        assert!(excl(&f, "x/a/b"));
        assert!(excl(&f, "x/y/a/b"));
        assert!(!excl(&f, "xa/b"));
        assert!(!excl(&f, "a/b/c"));
        assert!(!excl(&f, "a/bb"));

        let f = filter(&[(Exclude, "/a/b")]);
        assert!(excl(&f, "a/b"));
        assert!(!excl(&f, "x/a/b"));

        let f = filter(&[(Exclude, "/src/*.o")]);
        assert!(excl(&f, "src/x.o"));
        assert!(!excl(&f, "src/sub/x.o"));
        assert!(!excl(&f, "lib/src/x.o"));
        let f = filter(&[(Exclude, "src/*.o")]);
        assert!(excl(&f, "lib/src/x.o"));
    }

    #[test]
    fn directory_only_rules() {
        let f = filter(&[(Exclude, "build/")]);
        assert!(excl_dir(&f, "build"));
        assert!(excl_dir(&f, "a/build"));
        assert!(!excl(&f, "build"));
        assert!(!excl(&f, "a/build"));
        let f = filter(&[(Exclude, "/a/b/")]);
        assert!(excl_dir(&f, "a/b"));
        assert!(!excl(&f, "a/b"));
        assert!(!excl_dir(&f, "x/a/b"));
        // A directory-only include does not shield a file of that name.
        let f = filter(&[(Include, "keep/"), (Exclude, "*")]);
        assert!(!excl_dir(&f, "keep"));
        assert!(excl(&f, "keep"));
    }

    #[test]
    fn wildcards() {
        // `*` stays inside a component.
        let f = filter(&[(Exclude, "/a/*")]);
        assert!(excl(&f, "a/x"));
        assert!(excl(&f, "a/.hidden"));
        assert!(!excl(&f, "a/x/y"));
        // `?` is one byte, never `/`.
        let f = filter(&[(Exclude, "/a?c")]);
        assert!(excl(&f, "abc"));
        assert!(!excl(&f, "a/c"));
        assert!(!excl(&f, "ac"));
        assert!(!excl(&f, "abbc"));
        // Classes.
        let f = filter(&[(Exclude, "file[0-9].txt"), (Exclude, "x[!a-c]")]);
        assert!(excl(&f, "file7.txt"));
        assert!(!excl(&f, "fileA.txt"));
        assert!(excl(&f, "xd"));
        assert!(!excl(&f, "xb"));
        let f = filter(&[(Exclude, "[]a]"), (Exclude, "y[^]]")]);
        assert!(excl(&f, "]"));
        assert!(excl(&f, "a"));
        assert!(excl(&f, "yz"));
        assert!(!excl(&f, "y]"));
    }

    #[test]
    fn double_star() {
        let f = filter(&[(Exclude, "/dir/**")]);
        assert!(excl(&f, "dir/a"));
        assert!(excl(&f, "dir/a/b/c"));
        assert!(!excl_dir(&f, "dir"));
        assert!(!excl(&f, "x/dir/a"));

        let f = filter(&[(Exclude, "dir/**")]);
        assert!(excl(&f, "x/dir/a/b"));

        let f = filter(&[(Exclude, "/a/**/z")]);
        assert!(excl(&f, "a/z"));
        assert!(excl(&f, "a/b/z"));
        assert!(excl(&f, "a/b/c/z"));
        assert!(!excl(&f, "a/b/zz"));

        // `**` inside a component crosses slashes too (rsync, not globset, rules).
        let f = filter(&[(Exclude, "/a**b")]);
        assert!(excl(&f, "ab"));
        assert!(excl(&f, "axxb"));
        assert!(excl(&f, "a/b"));
        assert!(excl(&f, "ax/y/zb"));
        assert!(!excl(&f, "ax/y/bz"));
        assert!(!excl(&f, "x/ab"));

        // Without a slash but with `**`: the end of the full path.
        let f = filter(&[(Exclude, "**.tmp")]);
        assert!(excl(&f, "x.tmp"));
        assert!(excl(&f, "a/b/x.tmp"));
        assert!(!excl(&f, "a/b/x.tmpl"));

        let f = filter(&[(Exclude, "/a/**b/c")]);
        assert!(excl(&f, "a/b/c"));
        assert!(excl(&f, "a/xb/c"));
        assert!(excl(&f, "a/x/y/b/c"));
        assert!(!excl(&f, "a/x/c"));

        let f = filter(&[(Exclude, "**")]);
        assert!(excl(&f, "a"));
        assert!(excl_dir(&f, "a/b/c"));
    }

    #[test]
    fn triple_star() {
        let f = filter(&[(Include, "/keep/***"), (Exclude, "*")]);
        assert!(!excl_dir(&f, "keep"));
        assert!(excl(&f, "keep")); // as `keep/`: the directory only
        assert!(!excl(&f, "keep/a"));
        assert!(!excl_dir(&f, "keep/a/b"));
        assert!(excl(&f, "keeper"));
        assert!(excl(&f, "other"));
    }

    #[test]
    fn literal_patterns_and_escapes() {
        // Braces and commas are literal.
        let f = filter(&[(Exclude, "{a,b}"), (Exclude, "*.{x}")]);
        assert!(excl(&f, "{a,b}"));
        assert!(!excl(&f, "a"));
        assert!(excl(&f, "n.{x}"));
        assert!(!excl(&f, "n.x"));
        // Without wildcards a backslash is an ordinary byte...
        let f = filter(&[(Exclude, "back\\slash")]);
        assert!(excl(&f, "back\\slash"));
        assert!(!excl(&f, "backslash"));
        // ... with wildcards it escapes one.
        let f = filter(&[(Exclude, "star\\*-*")]);
        assert!(excl(&f, "star*-1"));
        assert!(!excl(&f, "starx-1"));
        // Spaces, dashes and dots are ordinary.
        let f = filter(&[(Exclude, "- odd name.txt"), (Exclude, ".git/")]);
        assert!(excl(&f, "d/- odd name.txt"));
        assert!(excl_dir(&f, ".git"));
        assert!(!excl(&f, "xgit"));
    }

    #[test]
    fn non_utf8_names() {
        let f = filter(&[(Exclude, "*.bin"), (Exclude, "/raw-?-name")]);
        assert!(f.is_excluded(b"d\xff\xe9r/x\xff.bin", false));
        assert!(f.is_excluded(b"raw-\xff-name", false));
        assert!(!f.is_excluded(b"raw-\xff\xfe-name", false)); // `?` is one byte
        assert!(!f.is_excluded(b"d\xff/x.bi\xff", false));
        let f = filter(&[(Include, "/\u{e9}t\u{e9}/"), (Exclude, "*")]);
        assert!(!f.is_excluded("\u{e9}t\u{e9}".as_bytes(), true));
        assert!(f.is_excluded(b"\xe9t\xe9", true)); // Latin-1 bytes are other names
        let f = filter(&[(Exclude, "/a/*/c")]);
        assert!(f.is_excluded(b"a/\xff\n\x01/c", false));
    }

    #[test]
    fn bad_patterns_are_typed_errors_naming_the_pattern() {
        let mut f = Filter::default();
        for bad in ["", "/", "a[b", "a//", "a**b**c**d**e**f"] {
            let e = f.add(Exclude, bad).unwrap_err();
            match &e {
                FilterError::BadPattern { pattern, .. } => assert_eq!(pattern, bad),
                other => panic!("{other:?}"),
            }
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
        assert!(f.is_empty());
        let e = Filter::from_args(&["* x".to_string()]).unwrap_err();
        assert!(
            matches!(e, FilterError::BadRule(ref r) if r == "* x"),
            "{e}"
        );
        assert!(Filter::from_args(&["+".to_string()]).is_err());
        assert!(Filter::from_args(&["- a[".to_string()]).is_err());
    }

    #[test]
    fn args_round_trip() {
        let rules = [
            (Include, "dir/"),
            (Include, "dir/*.c"),
            (Include, "/anchored/**"),
            (Exclude, "- looks like a prefix"),
            (Exclude, "+ so does this"),
            (Exclude, "with space "),
            (Exclude, " leading space"),
            (Exclude, "#not a comment"),
            (Exclude, "new\nline"),
            (Include, "a**b"),
            (Exclude, "*"),
        ];
        let f = filter(&rules);
        let args = f.to_args();
        assert_eq!(args[0], "+ dir/");
        assert_eq!(args[3], "- - looks like a prefix");
        assert_eq!(args[10], "- *");
        let g = Filter::from_args(&args).unwrap();
        assert_eq!(g.to_args(), args);
        let probe: &[(&[u8], bool)] = &[
            (b"dir", true),
            (b"dir", false),
            (b"dir/x.c", false),
            (b"anchored/q", false),
            (b"- looks like a prefix", false),
            (b"+ so does this", false),
            (b"with space ", false),
            (b"#not a comment", false),
            (b"new\nline", false),
            (b"a/x/b", false),
            (b"other", false),
        ];
        for (p, d) in probe {
            assert_eq!(f.is_excluded(p, *d), g.is_excluded(p, *d), "{p:?}");
        }
        assert!(g.is_excluded(b"- looks like a prefix", false));
        assert!(!g.is_excluded(b"a/x/b", false));
    }

    #[test]
    fn rules_from_a_file() {
        let text = "\
# a comment
; another comment

*.o
+ *.c
- *.h
+ keep/
   indented pattern
trailing space 
crlf\r
last without newline";
        let mut f = Filter::default();
        f.add_from_reader(text.as_bytes(), Exclude, "rules.txt")
            .unwrap();
        assert_eq!(
            f.to_args(),
            [
                "- *.o",
                "+ *.c",
                "- *.h",
                "+ keep/",
                "-    indented pattern",
                "- trailing space ",
                "- crlf",
                "- last without newline",
            ]
        );
        assert!(excl(&f, "x.o"));
        assert!(!excl(&f, "x.c"));
        assert!(excl(&f, "x.h"));
        assert!(excl(&f, "crlf"));

        // --include-from: the default flips, explicit prefixes do not.
        let mut g = Filter::default();
        g.add_from_reader("*.c\n- *.h\n".as_bytes(), Include, "-")
            .unwrap();
        assert_eq!(g.to_args(), ["+ *.c", "- *.h"]);

        // Appends after existing rules.
        let mut h = filter(&[(Exclude, "first")]);
        h.add_from_reader("second\n".as_bytes(), Exclude, "x")
            .unwrap();
        assert_eq!(h.to_args(), ["- first", "- second"]);

        // Errors name the source and the line.
        let mut bad = Filter::default();
        let e = bad
            .add_from_reader("ok\n\n# c\nbad[\n".as_bytes(), Exclude, "rules.txt")
            .unwrap_err();
        let shown = e.to_string();
        assert!(shown.starts_with("rules.txt:4:"), "{shown}");
        assert!(shown.contains("\"bad[\""), "{shown}");
        let e = Filter::default()
            .add_from_reader(&b"a\n\xff\n"[..], Exclude, "latin1.txt")
            .unwrap_err();
        assert!(e.to_string().starts_with("latin1.txt:2:"), "{e}");
    }
}
