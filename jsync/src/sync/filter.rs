//! Include/exclude rules, as rsync's `--include`, `--exclude`, `--include-from`,
//! `--exclude-from` and `--filter` have them, so users can say which parts of a
//! tree a sync moves (and, with deletion, which parts of the destination it
//! leaves alone).
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
//! * rsync's `--filter` syntax ([`Filter::add_rule`]): `+`/`-` with the `!`
//!   (not matching), `s` and `r` (one side) modifiers; `hide`/`show`
//!   (sender-side) and `protect`/`risk` (receiver-side); `!` to clear;
//!   `merge FILE`, read where the rules are given (never by a server); and
//!   `dir-merge NAME`, whose rules come from a file of that name in each
//!   directory a walk enters ([`Filter::enter`], [`DirScope`]). A directory's
//!   rules come before its parent's, sit where the `dir-merge` rule sits in
//!   the list, apply below it unless `n`, and anchor `/x` at the directory.
//!   Each side keeps only the rules for it ([`Filter::for_side`]).
//!
//!   The `p` modifier makes a rule perishable: it does not count inside a
//!   directory `--delete` is removing ([`Filter::is_excluded_in_deleted`]).
//!
//!   The `C` modifier is CVS's way: `-C` puts rsync's CVS excludes in place
//!   ([`Filter::add_cvs_excludes`]); on a merge (`:C`, `.C`) every word of
//!   the file is an exclude, not inherited, and the file is `.cvsignore`
//!   unless named.
//!
//!   The `x` modifier makes a rule one for extended attribute names, not
//!   paths ([`Filter::excludes_xattr`]): which of the attributes `-X` keeps
//!   the sender sends and the receiver sets or removes (`-x security.*`).
//!
//!   The `/` modifier matches a rule against the whole path
//!   ([`Filter::with_abs_root`]: where the transfer root lies).
//!
//! Not supported (yet): `x` and `/` rules and merges (and `-C`) inside a
//! per-directory file, rsync's scan of the directories above the transfer
//! for a `dir-merge /NAME`, POSIX character classes (`[[:alpha:]]`) and
//! case-insensitive matching.

use std::io::BufRead;
use std::sync::Arc;

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
    /// A rule (`--filter`, a merge file's line, the wire form) did not parse.
    #[error("bad filter rule {rule:?}: {reason}")]
    BadRule { rule: String, reason: String },
    /// A per-directory rule file (`dir-merge`) could not be read or used.
    #[error("{path}: {reason}")]
    DirFile { path: String, reason: String },
}

/// Which side of a transfer a rule speaks for: rsync's `s` and `r`
/// modifiers. `hide`/`show` are sender-side excludes/includes (what is
/// listed), `protect`/`risk` receiver-side ones (what `--delete` leaves).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Both,
    Sender,
    Receiver,
}

impl Side {
    /// Whether a rule for `self` counts on side `on` (`Both`: a filter not
    /// yet given to one side keeps every rule).
    fn applies(self, on: Side) -> bool {
        self == Side::Both || on == Side::Both || self == on
    }

    fn modifier(self) -> &'static str {
        match self {
            Side::Both => "",
            Side::Sender => "s",
            Side::Receiver => "r",
        }
    }
}

/// Merge files nest at most this deep (a file merging itself fails).
const MAX_MERGE_DEPTH: usize = 8;

/// At most this many rules in one per-directory file (each is a compiled
/// pattern tried on every entry below it; a server reads these files for
/// any client).
const MAX_DIR_FILE_RULES: usize = 10_000;

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
    /// `!`: the rule applies to what the pattern does not match.
    negate: bool,
    side: Side,
    /// `/PATTERN`: matched from where the rule was given (the transfer's
    /// root, or a per-directory file's directory), not at any depth.
    anchored: bool,
    /// `p`: not counted inside a directory being deleted (so what it keeps
    /// from `--delete` does not keep that directory).
    perishable: bool,
    /// `x`: matched against extended attribute names (what `-X` keeps),
    /// never against paths.
    xattr: bool,
    /// `/`: matched against the entry's absolute path
    /// ([`Filter::with_abs_root`]).
    abs: bool,
}

impl Rule {
    fn new(kind: RuleKind, pattern: &str, negate: bool, side: Side) -> Result<Rule, FilterError> {
        let alts = compile(pattern).map_err(|reason| FilterError::BadPattern {
            pattern: pattern.to_string(),
            reason,
        })?;
        Ok(Rule {
            kind,
            pattern: pattern.to_string(),
            alts,
            negate,
            side,
            anchored: pattern.starts_with('/'),
            perishable: false,
            xattr: false,
            abs: false,
        })
    }

    /// The rule with its `p` modifier.
    fn perishable(mut self, perishable: bool) -> Rule {
        self.perishable = perishable;
        self
    }

    /// The rule with its `x` modifier.
    fn xattr(mut self, xattr: bool) -> Rule {
        self.xattr = xattr;
        self
    }

    /// The rule with its `/` modifier.
    fn abs(mut self, abs: bool) -> Rule {
        self.abs = abs;
        self
    }

    fn matches(&self, path: &Candidate<'_>, is_dir: bool) -> bool {
        let hit = self
            .alts
            .iter()
            .any(|a| (is_dir || !a.dir_only) && a.matcher.is_match_candidate(path));
        hit != self.negate
    }

    /// The rule in rsync's syntax (`-! PATTERN`, `+s PATTERN`, `-p PATTERN`,
    /// `-x NAME`, `-/ /ABSOLUTE`).
    fn to_arg(&self) -> String {
        let neg = if self.negate { "!" } else { "" };
        let abs = if self.abs { "/" } else { "" };
        let p = if self.perishable { "p" } else { "" };
        let x = if self.xattr { "x" } else { "" };
        let kind = self.kind.prefix().trim_end();
        format!(
            "{kind}{neg}{abs}{p}{x}{} {}",
            self.side.modifier(),
            self.pattern
        )
    }
}

/// `dir-merge NAME` (`: NAME`): rules read from a file of this name in each
/// directory a walk enters, for that directory and (unless `n`) those below.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DirMerge {
    name: String,
    /// `+`/`-`: every line is a pattern of this kind.
    kind: Option<RuleKind>,
    /// Not with `n`: the rules also apply in subdirectories.
    inherit: bool,
    /// `e`: the rule files themselves are excluded.
    exclude_self: bool,
    /// `w`: a file is split into words at whitespace, not into lines.
    words: bool,
    /// `s`/`r`: the file's rules are for one side.
    side: Side,
    /// `p`: the file's rules are perishable.
    perishable: bool,
}

impl DirMerge {
    fn to_arg(&self) -> String {
        let kind = self.kind.map_or("", |k| k.prefix().trim_end());
        let n = if self.inherit { "" } else { "n" };
        let e = if self.exclude_self { "e" } else { "" };
        let w = if self.words { "w" } else { "" };
        let p = if self.perishable { "p" } else { "" };
        format!(":{kind}{n}{e}{w}{p}{} {}", self.side.modifier(), self.name)
    }
}

#[derive(Debug, Clone)]
enum Entry {
    Rule(Rule),
    DirMerge(DirMerge),
}

/// An ordered list of include/exclude rules; see the module docs.
#[derive(Debug, Clone)]
pub struct Filter {
    entries: Vec<Entry>,
    /// Prepended (with a `/`) to every path asked about: the name of a source
    /// directory copied as itself, whose parent is the transfer root.
    prefix: Vec<u8>,
    /// The side asking: rules for the other side are passed over.
    side: Side,
    /// Whether rules for both sides count (not for a receiver with
    /// `--delete-excluded`: only its own `protect`/`risk` rules do).
    shared: bool,
    /// `-0`: rule files' lines end with NUL, not newline.
    nul_lines: bool,
    /// Where the paths asked about lie, for `/` rules: the transfer root's
    /// absolute path without its leading `/` (on a server, its path
    /// beneath the root it serves, as rsync's daemon has it in a module).
    abs_root: Vec<u8>,
}

impl Default for Filter {
    fn default() -> Self {
        Filter {
            entries: Vec::new(),
            prefix: Vec::new(),
            side: Side::Both,
            shared: true,
            nul_lines: false,
            abs_root: Vec::new(),
        }
    }
}

/// The per-directory rules in force in one directory of a walk: read from
/// the `dir-merge` files in it and, unless `n`, in the directories above it
/// ([`Filter::enter`]). The default is the top's parent: none.
#[derive(Debug, Clone, Default)]
pub struct DirScope {
    /// Deepest directory first: a subdirectory's rules come before its
    /// parent's, as in rsync.
    layers: Vec<Arc<Layer>>,
}

/// The per-directory rules of directories reached by their paths rather than
/// by a walk that enters each in turn (a selection's listed paths, the
/// receiver's deletions): each read from the top down, once. A directory
/// whose rule file failed is remembered as failed (`None`), with all below.
#[derive(Debug, Default)]
pub struct Scopes(std::collections::HashMap<Vec<u8>, Option<DirScope>>);

/// Why [`Scopes::at`] has no rules for a directory.
#[derive(Debug)]
pub enum ScopeError {
    /// The rule file of directory `dir` (relative to the top; it or one
    /// above the directory asked for) failed: said once, here.
    Failed { dir: Vec<u8>, error: FilterError },
    /// A directory at or above the one asked for failed before (and was
    /// said then).
    Below,
}

impl Scopes {
    /// The rules in force in `dir` (relative to the top; "" is the top):
    /// `read(DIR, NAME)` gives the bytes of the rule file NAME in directory
    /// DIR, if there is one.
    pub fn at<F>(
        &mut self,
        filter: &Filter,
        dir: &[u8],
        read: &mut F,
    ) -> Result<DirScope, ScopeError>
    where
        F: FnMut(&[u8], &str) -> Result<Option<Vec<u8>>, String>,
    {
        if !filter.has_dir_merge() {
            return Ok(DirScope::default());
        }
        match self.0.get(dir) {
            Some(Some(s)) => return Ok(s.clone()),
            Some(None) => return Err(ScopeError::Below),
            None => {}
        }
        let parent = match dir.iter().rposition(|&b| b == b'/') {
            Some(i) => self.at(filter, &dir[..i], read),
            None if dir.is_empty() => Ok(DirScope::default()),
            None => self.at(filter, b"", read),
        };
        let scope = parent.and_then(|parent| {
            filter
                .enter(&parent, dir, |name| read(dir, name))
                .map_err(|error| ScopeError::Failed {
                    dir: dir.to_vec(),
                    error,
                })
        });
        self.0.insert(dir.to_vec(), scope.as_ref().ok().cloned());
        scope
    }
}

/// The rules one `dir-merge` file gave one directory.
#[derive(Debug)]
struct Layer {
    /// Which `dir-merge` entry of the filter read it.
    slot: usize,
    /// The directory, relative to the walk's top ("" for the top): the
    /// rules' patterns are matched relative to it (`/x` is the `x` beside
    /// the file).
    dir: Vec<u8>,
    rules: Vec<Rule>,
    inherit: bool,
    /// A `!` in the file: the rules of the directories above stop here.
    clear: bool,
}

/// What one rule string says (rsync's filter-rule syntax).
#[derive(Debug, PartialEq, Eq)]
enum Parsed<'a> {
    Rule {
        kind: RuleKind,
        negate: bool,
        side: Side,
        perishable: bool,
        /// `x`: a rule for extended attribute names.
        xattr: bool,
        /// `/`: matched against absolute paths.
        abs: bool,
        pattern: &'a str,
    },
    /// `!` / `clear`: the rules so far are dropped.
    Clear,
    /// `merge FILE` (`. FILE`): the file's rules, read once, in place.
    Merge {
        file: &'a str,
        kind: Option<RuleKind>,
        words: bool,
        side: Side,
        perishable: bool,
        /// `/`: the file's rules are matched against absolute paths.
        abs: bool,
        /// `x`: the file's rules are for extended attribute names.
        xattr: bool,
    },
    DirMerge(DirMerge),
    /// `-C` (an exclude with the `C` modifier, no pattern): rsync's CVS
    /// excludes in place ([`Filter::add_cvs_excludes`]).
    CvsExcludes,
}

/// What `-C` leaves out before any .cvsignore is read (rsync's list).
const CVS_IGNORE: &str = "RCS SCCS CVS CVS.adm RCSLOG cvslog.* tags TAGS .make.state \
    .nse_depinfo *~ #* .#* ,* _$* *$ *.old *.bak *.BAK *.orig *.rej .del-* *.a *.olb *.o \
    *.obj *.so *.exe *.Z *.elc *.ln core .svn/ .git/ .hg/ .bzr/";

/// CVS's per-directory (and `$HOME`) list of what to leave out.
const CVS_FILE: &str = ".cvsignore";

/// Reads one rule: `+ PAT`, `- PAT`, `include`/`exclude`/`hide`/`show`/
/// `protect`/`risk PAT`, `!`/`clear`, `merge FILE` (`.`), `dir-merge NAME`
/// (`:`), each with rsync's modifiers after the rule (`-!`, `exclude,s`,
/// `:n-`), then one space or `_`, then the pattern as it is. Two take no
/// pattern: `-C` (rsync's CVS excludes) and `:C`/`.C`, whose file is then
/// `.cvsignore`.
fn parse_rule(text: &str) -> Result<Parsed<'_>, String> {
    if matches!(text.trim_end(), "!" | "clear") {
        return Ok(Parsed::Clear);
    }
    const LONG: [(&str, char); 8] = [
        ("include", '+'),
        ("exclude", '-'),
        ("merge", '.'),
        ("dir-merge", ':'),
        ("hide", 'H'),
        ("show", 'S'),
        ("protect", 'P'),
        ("risk", 'R'),
    ];
    let (rule, rest) = match LONG.iter().find(|(word, _)| {
        text.strip_prefix(word)
            .is_some_and(|r| r.starts_with([',', ' ', '_']))
    }) {
        Some(&(word, c)) => {
            let r = &text[word.len()..];
            (c, r.strip_prefix(',').unwrap_or(r))
        }
        None => {
            let mut chars = text.chars();
            let c = chars.next().ok_or("an empty rule")?;
            if !"+-.:HSPR".contains(c) {
                return Err("expected a rule: +, -, ., :, H, S, P, R, !, or their names".into());
            }
            (c, chars.as_str())
        }
    };
    if rule == '-' && rest.trim_end() == "C" {
        return Ok(Parsed::CvsExcludes);
    }
    let (mods, arg) = match rest.find([' ', '_']) {
        Some(sep) => (&rest[..sep], &rest[sep + 1..]),
        None => (rest, ""),
    };
    let merge = matches!(rule, '.' | ':');
    let cvs = mods.contains('C');
    if cvs && !merge {
        return Err(match rule {
            '-' => "the C modifier takes no pattern, nor other modifiers (-C)".into(),
            _ => "the C modifier is for -C and merge rules only".into(),
        });
    }
    if cvs && (mods.contains('+') || mods.contains('-')) {
        return Err("the C modifier makes every word an exclude: not with + or -".into());
    }
    let arg = match arg.trim() {
        // `:C` and `.C` name .cvsignore when they name no file.
        "" if cvs => CVS_FILE,
        _ if mods.len() == rest.len() => {
            return Err("expected a space or '_' before the pattern".into())
        }
        _ => arg,
    };
    if arg.is_empty() {
        return Err("no pattern after the rule".into());
    }
    let unsupported = |m: char| format!("jcp does not support the '{m}' modifier");
    let side_of = |s: bool, r: bool| match (s, r) {
        (true, false) => Side::Sender,
        (false, true) => Side::Receiver,
        _ => Side::Both,
    };
    let (mut s, mut r, mut negate, mut perishable, mut xattr) = (false, false, false, false, false);
    let mut abs = false;
    if matches!(rule, '.' | ':') {
        let mut dm = DirMerge {
            name: String::new(),
            kind: None,
            inherit: true,
            exclude_self: false,
            words: false,
            side: Side::Both,
            perishable: false,
        };
        for m in mods.chars() {
            match m {
                '-' => dm.kind = Some(RuleKind::Exclude),
                '+' => dm.kind = Some(RuleKind::Include),
                'n' if rule == ':' => dm.inherit = false,
                'e' if rule == ':' => dm.exclude_self = true,
                'w' => dm.words = true,
                'p' => dm.perishable = true,
                's' => s = true,
                'r' => r = true,
                '/' if rule == '.' => abs = true,
                'x' if rule == '.' => xattr = true,
                '/' | 'x' => return Err(unsupported(m)),
                'n' | 'e' => return Err(format!("'{m}' is for dir-merge rules only")),
                // CVS's way: words, each an exclude (or `!`), not inherited.
                'C' => {
                    dm.kind = Some(RuleKind::Exclude);
                    dm.words = true;
                    dm.inherit = rule != ':';
                }
                _ => return Err(format!("unknown modifier '{m}'")),
            }
        }
        dm.side = side_of(s, r);
        if rule == '.' {
            return Ok(Parsed::Merge {
                file: arg,
                kind: dm.kind,
                words: dm.words,
                side: dm.side,
                perishable: dm.perishable,
                abs,
                xattr,
            });
        }
        // A leading '/' asks rsync to look in the directories above the
        // transfer too; jcp reads the files only inside the transfer.
        let name = arg.strip_prefix('/').unwrap_or(arg);
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err("a dir-merge file is a name, not a path".into());
        }
        dm.name = name.to_string();
        return Ok(Parsed::DirMerge(dm));
    }
    for m in mods.chars() {
        match m {
            '!' => negate = true,
            's' => s = true,
            'r' => r = true,
            'p' => perishable = true,
            'x' => xattr = true,
            '/' => abs = true,
            _ => return Err(format!("unknown modifier '{m}'")),
        }
    }
    let (kind, side) = match rule {
        '+' => (RuleKind::Include, side_of(s, r)),
        '-' => (RuleKind::Exclude, side_of(s, r)),
        'H' => (RuleKind::Exclude, Side::Sender),
        'S' => (RuleKind::Include, Side::Sender),
        'P' => (RuleKind::Exclude, Side::Receiver),
        _ => (RuleKind::Include, Side::Receiver),
    };
    Ok(Parsed::Rule {
        kind,
        negate,
        side,
        perishable,
        xattr,
        abs,
        pattern: arg,
    })
}

/// One line (or word) of a rule file: with `kind` (a merge's `+` or `-`)
/// a pattern of that kind, or `!`; otherwise a rule.
fn parse_line(item: &str, kind: Option<RuleKind>) -> Result<Parsed<'_>, String> {
    match kind {
        Some(_) if item == "!" => Ok(Parsed::Clear),
        Some(kind) => Ok(Parsed::Rule {
            kind,
            negate: false,
            side: Side::Both,
            perishable: false,
            xattr: false,
            abs: false,
            pattern: item,
        }),
        None => parse_rule(item),
    }
}

fn bad_rule(rule: &str, reason: String) -> FilterError {
    FilterError::BadRule {
        rule: rule.to_string(),
        reason,
    }
}

/// The rules (or patterns) of a rule file's text: lines (or with `words`,
/// whitespace-separated words), without blank lines and, by lines, `#` or
/// `;` comments; a trailing `\r` is dropped. With `nul` (`-0`) lines end
/// with NUL instead, as in rsync, and keep any `\r` or `\n`.
fn rule_lines(text: &[u8], words: bool, nul: bool) -> impl Iterator<Item = (usize, &[u8])> {
    let end = if nul { b'\0' } else { b'\n' };
    let lines = text
        .split(move |&b| b == end)
        .enumerate()
        .map(move |(i, l)| {
            let l = if nul {
                l
            } else {
                l.strip_suffix(b"\r").unwrap_or(l)
            };
            (i + 1, l)
        });
    lines.flat_map(move |(n, l)| {
        let items: Vec<&[u8]> = if words {
            l.split(|b| b.is_ascii_whitespace())
                .filter(|w| !w.is_empty())
                .collect()
        } else if l.trim_ascii().is_empty() || l.starts_with(b"#") || l.starts_with(b";") {
            Vec::new()
        } else {
            vec![l]
        };
        items.into_iter().map(move |w| (n, w))
    })
}

/// At most this many unbordered `**` in one pattern (each doubles the globs).
const MAX_INNER_DOUBLE_STARS: usize = 4;

impl Filter {
    /// True when there are no rules (everything is included).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends a rule. The pattern is taken as is: a leading `"+ "` or `"- "` is
    /// part of the pattern here ([`Filter::add_from_reader`] and
    /// [`Filter::add_rule`] read those).
    pub fn add(&mut self, kind: RuleKind, pattern: &str) -> Result<(), FilterError> {
        self.add_plain(kind, pattern, false)
    }

    /// [`Filter::add`] of a perishable rule (`p`: see
    /// [`Filter::is_excluded_in_deleted`]), as `-C`'s default patterns are.
    pub fn add_perishable(&mut self, kind: RuleKind, pattern: &str) -> Result<(), FilterError> {
        self.add_plain(kind, pattern, true)
    }

    /// rsync's CVS excludes, here in the list (`-C`, which puts them after
    /// every other rule, and a `-C` rule): its own list of what CVS leaves
    /// out (perishable, as rsync's: a directory the source no longer has goes
    /// though it holds `*.o` files), then the words of `$HOME/.cvsignore` and
    /// of `$CVSIGNORE`, read where the rules are given (a `$HOME/.cvsignore`
    /// that cannot be read is passed over, as rsync does, with a warning in
    /// the log unless it does not exist). Each directory's `.cvsignore` is
    /// another rule (`:C`).
    pub fn add_cvs_excludes(&mut self) -> Result<(), FilterError> {
        let home = std::env::var_os("HOME").and_then(|home| {
            let path = std::path::Path::new(&home).join(CVS_FILE);
            match std::fs::read(&path) {
                Ok(text) => Some(String::from_utf8_lossy(&text).into_owned()),
                Err(e) => {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        tracing::warn!(path = %path.display(), error = %e, "-C: cannot read it; passed over");
                    }
                    None
                }
            }
        });
        let env = std::env::var_os("CVSIGNORE").map(|v| v.to_string_lossy().into_owned());
        self.add_cvs_lists(home.as_deref(), env.as_deref())
    }

    /// [`Filter::add_cvs_excludes`] with the user's lists given: each word
    /// an exclude, `!` dropping the CVS excludes before it (as in rsync).
    fn add_cvs_lists(&mut self, home: Option<&str>, env: Option<&str>) -> Result<(), FilterError> {
        let start = self.entries.len();
        for w in CVS_IGNORE.split_whitespace() {
            self.add_perishable(RuleKind::Exclude, w)?;
        }
        for w in [home, env]
            .into_iter()
            .flatten()
            .flat_map(str::split_whitespace)
        {
            match w {
                "!" => self.entries.truncate(start),
                w => self.add(RuleKind::Exclude, w)?,
            }
        }
        Ok(())
    }

    fn add_plain(
        &mut self,
        kind: RuleKind,
        pattern: &str,
        perishable: bool,
    ) -> Result<(), FilterError> {
        let rule = Rule::new(kind, pattern, false, Side::Both)?.perishable(perishable);
        self.entries.push(Entry::Rule(rule));
        Ok(())
    }

    /// Appends the rules of an `--include-from`/`--exclude-from` file: one
    /// pattern per line, `default` kind unless the line starts with `"+ "`
    /// (include) or `"- "` (exclude). Blank lines and lines starting with `#` or
    /// `;` are ignored; a trailing `\r` is dropped. `source_name` (a file name,
    /// or `-` for stdin) labels errors with the line number.
    pub fn add_from_reader(
        &mut self,
        mut r: impl BufRead,
        default: RuleKind,
        source_name: &str,
    ) -> Result<(), FilterError> {
        let mut text = Vec::new();
        r.read_to_end(&mut text)
            .map_err(|error| FilterError::Read {
                source_name: source_name.to_string(),
                error,
            })?;
        for (n, line) in rule_lines(&text, false, self.nul_lines) {
            let line = utf8_line(line, source_name, n)?;
            let (kind, pattern) = split_prefix(line).unwrap_or((default, line));
            self.add(kind, pattern)
                .map_err(|e| in_file(e, source_name, n))?;
        }
        Ok(())
    }

    /// Appends one rule in rsync's `--filter` syntax (`+ PAT`, `-! PAT`, `hide PAT`, ...):
    /// `!` drops the rules so far, and `merge FILE` reads FILE's rules (a
    /// path on this machine) into their place now.
    pub fn add_rule(&mut self, rule: &str) -> Result<(), FilterError> {
        self.add_rule_at(rule, 0)
    }

    fn add_rule_at(&mut self, rule: &str, depth: usize) -> Result<(), FilterError> {
        let parsed = parse_rule(rule).map_err(|reason| bad_rule(rule, reason))?;
        self.add_parsed(parsed, rule, depth)
    }

    /// Adds one parsed rule (`text` as given, for errors), reading a merge
    /// file's rules in its place.
    fn add_parsed(
        &mut self,
        parsed: Parsed<'_>,
        text: &str,
        depth: usize,
    ) -> Result<(), FilterError> {
        match parsed {
            Parsed::Rule {
                kind,
                negate,
                side,
                perishable,
                xattr,
                abs,
                pattern,
            } => {
                let rule = Rule::new(kind, pattern, negate, side)?
                    .perishable(perishable)
                    .xattr(xattr)
                    .abs(abs);
                self.entries.push(Entry::Rule(rule));
            }
            Parsed::Clear => self.entries.clear(),
            Parsed::DirMerge(dm) => self.entries.push(Entry::DirMerge(dm)),
            Parsed::CvsExcludes => self.add_cvs_excludes()?,
            Parsed::Merge {
                file,
                kind,
                words,
                side,
                perishable,
                abs,
                xattr,
            } => {
                if depth >= MAX_MERGE_DEPTH {
                    let reason = format!("merge files nested more than {MAX_MERGE_DEPTH} deep");
                    return Err(bad_rule(text, reason));
                }
                let text = std::fs::read(file).map_err(|error| FilterError::Read {
                    source_name: file.to_string(),
                    error,
                })?;
                for (n, line) in rule_lines(&text, words, self.nul_lines) {
                    let line = utf8_line(line, file, n)?;
                    let before = self.entries.len();
                    let added = parse_line(line, kind)
                        .map_err(|reason| bad_rule(line, reason))
                        .and_then(|parsed| self.add_parsed(parsed, line, depth + 1));
                    added.map_err(|e| in_file(e, file, n))?;
                    // The merge rule's `s`/`r` and `p` hold for what it merged.
                    for e in self.entries.iter_mut().skip(before) {
                        match e {
                            Entry::Rule(r) => {
                                r.side = if r.side == Side::Both { side } else { r.side };
                                r.perishable |= perishable;
                                r.abs |= abs;
                                r.xattr |= xattr;
                            }
                            Entry::DirMerge(d) => {
                                d.side = if d.side == Side::Both { side } else { d.side };
                                d.perishable |= perishable;
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// `-0`: the lines of rule files read from now on (`--exclude-from`,
    /// `merge`, and each directory's `dir-merge` files) end with NUL, not
    /// newline, as in rsync. [`Filter::to_args`] does not carry it: the
    /// sync options do.
    pub fn set_nul_lines(&mut self, nul: bool) {
        self.nul_lines = nul;
    }

    /// Whether rule files' lines end with NUL ([`Filter::set_nul_lines`]).
    pub fn nul_lines(&self) -> bool {
        self.nul_lines
    }

    /// The same filter as `side` applies it: the other side's rules (`s`,
    /// `r`, `hide`, `protect`, ...) are passed over.
    pub fn for_side(&self, side: Side) -> Filter {
        Filter {
            side,
            ..self.clone()
        }
    }

    /// The same filter with only the rules for its side itself (`s`/`r`,
    /// `hide`/`protect`/...): what a receiver with `--delete-excluded` keeps,
    /// as rsync's, which makes the plain rules the sender's.
    pub fn own_rules_only(&self) -> Filter {
        Filter {
            shared: false,
            ..self.clone()
        }
    }

    /// Whether a rule (or a `dir-merge` file's rules) for `side` counts here.
    fn counts(&self, side: Side) -> bool {
        side.applies(self.side) && (self.shared || side != Side::Both)
    }

    /// Whether walks must look for per-directory rule files ([`Filter::enter`]).
    pub fn has_dir_merge(&self) -> bool {
        self.entries.iter().any(|e| matches!(e, Entry::DirMerge(_)))
    }

    /// The rules in force in directory `dir` (relative to the walk's top)
    /// whose parent's are `parent`: `read(NAME)` gives the bytes of the rule
    /// file NAME in that directory, if there is one. A file that does not
    /// parse is an error naming it.
    pub fn enter(
        &self,
        parent: &DirScope,
        dir: &[u8],
        mut read: impl FnMut(&str) -> Result<Option<Vec<u8>>, String>,
    ) -> Result<DirScope, FilterError> {
        let mut layers = Vec::new();
        for (slot, e) in self.entries.iter().enumerate() {
            let Entry::DirMerge(dm) = e else { continue };
            // (A file of rules for the other side is not even read.)
            if !dm.side.applies(self.side) {
                continue;
            }
            // (The caller names the directory.)
            let shown = || dm.name.clone();
            let failed = |reason: String| FilterError::DirFile {
                path: shown(),
                reason,
            };
            let Some(text) = read(&dm.name).map_err(failed)? else {
                continue;
            };
            let mut rules = Vec::new();
            let mut clear = false;
            for (n, item) in rule_lines(&text, dm.words, self.nul_lines) {
                let at = |e: FilterError| in_file(e, &shown(), n);
                let item = utf8_line(item, &shown(), n)?;
                let parsed = parse_line(item, dm.kind).map_err(|r| at(bad_rule(item, r)))?;
                match parsed {
                    Parsed::Rule { xattr: true, .. } | Parsed::Rule { abs: true, .. } => {
                        return Err(at(FilterError::BadRule {
                            rule: item.to_string(),
                            reason: "jcp takes xattr (x) and absolute-path (/) rules from the \
                                     command line and merge files, not from a per-directory file"
                                .into(),
                        }))
                    }
                    Parsed::Rule {
                        kind,
                        negate,
                        side,
                        perishable,
                        xattr: false,
                        abs: false,
                        pattern,
                    } => {
                        let side = if side == Side::Both { dm.side } else { side };
                        if rules.len() == MAX_DIR_FILE_RULES {
                            let reason = format!("more than {MAX_DIR_FILE_RULES} rules");
                            return Err(failed(reason));
                        }
                        let rule = Rule::new(kind, pattern, negate, side).map_err(at)?;
                        rules.push(rule.perishable(perishable || dm.perishable));
                    }
                    Parsed::Clear => {
                        rules.clear();
                        clear = true;
                    }
                    Parsed::Merge { .. } | Parsed::DirMerge(_) | Parsed::CvsExcludes => {
                        return Err(at(FilterError::BadRule {
                            rule: item.to_string(),
                            reason: "jcp does not merge files (or -C) from a per-directory file"
                                .into(),
                        }))
                    }
                }
            }
            layers.push(Arc::new(Layer {
                slot,
                dir: dir.to_vec(),
                rules,
                inherit: dm.inherit,
                clear,
            }));
        }
        layers.extend(parent.layers.iter().filter(|l| l.inherit).cloned());
        Ok(DirScope { layers })
    }

    /// Whether the first matching rule excludes `rel_path` (relative to the
    /// transfer root, or to the directory given to [`Filter::under`];
    /// `/`-separated, no leading slash; any bytes). `is_dir` says
    /// whether the entry is a directory, for directory-only rules. The root (an
    /// empty path) is never excluded.
    pub fn is_excluded(&self, rel_path: &[u8], is_dir: bool) -> bool {
        self.is_excluded_in(&DirScope::default(), rel_path, is_dir)
    }

    /// [`Filter::is_excluded`] for an entry of the directory whose
    /// per-directory rules are `scope`.
    pub fn is_excluded_in(&self, scope: &DirScope, rel_path: &[u8], is_dir: bool) -> bool {
        self.excluded(scope, rel_path, is_dir, false)
    }

    /// [`Filter::is_excluded_in`] for an entry inside a directory that
    /// `--delete` is removing: perishable rules (`p`) do not count, as
    /// rsync's, so what only they keep does not keep the directory.
    pub fn is_excluded_in_deleted(&self, scope: &DirScope, rel_path: &[u8], is_dir: bool) -> bool {
        self.excluded(scope, rel_path, is_dir, true)
    }

    /// The same rules with `root` as where the paths asked about lie, for
    /// the `/` rules, which are matched against `ROOT/PATH` (`root` without
    /// its leading `/`; empty: the paths as they are).
    pub fn with_abs_root(&self, root: &[u8]) -> Filter {
        let root = root.strip_prefix(b"/").unwrap_or(root);
        let root = root.strip_suffix(b"/").unwrap_or(root);
        Filter {
            abs_root: root.to_vec(),
            ..self.clone()
        }
    }

    /// Whether any rule (or `dir-merge` file) can leave out a path: not
    /// so for a filter of `x` rules alone, which speak of attribute names.
    pub fn has_path_rules(&self) -> bool {
        self.entries.iter().any(|e| match e {
            Entry::Rule(r) => !r.xattr,
            Entry::DirMerge(_) => true,
        })
    }

    /// Whether there are `/` rules (matched against absolute paths).
    pub fn has_abs_rules(&self) -> bool {
        self.entries
            .iter()
            .any(|e| matches!(e, Entry::Rule(r) if r.abs))
    }

    /// Whether there are rules for extended attribute names (`x`) for this
    /// side.
    pub fn has_xattr_rules(&self) -> bool {
        self.entries
            .iter()
            .any(|e| matches!(e, Entry::Rule(r) if r.xattr && self.counts(r.side)))
    }

    /// Whether the rules for extended attribute names (`x`) leave out the
    /// attribute `name`: the first such rule that matches it decides, as
    /// rsync's; a name none matches is not left out. (The namespaces `-X`
    /// keeps at all are the caller's to say.)
    pub fn excludes_xattr(&self, name: &[u8]) -> bool {
        let cand = Candidate::from_bytes(name);
        self.entries
            .iter()
            .find_map(|e| match e {
                Entry::Rule(r) if r.xattr && self.counts(r.side) && r.matches(&cand, false) => {
                    Some(r.kind == RuleKind::Exclude)
                }
                _ => None,
            })
            .unwrap_or(false)
    }

    fn excluded(&self, scope: &DirScope, rel_path: &[u8], is_dir: bool, deleting: bool) -> bool {
        if rel_path.is_empty() || self.entries.is_empty() {
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
        // `/` rules see the path from the top of the filesystem (made once,
        // when one is reached).
        let absolute = std::cell::OnceCell::new();
        let absolute = || {
            absolute.get_or_init(|| match self.abs_root.is_empty() {
                true => path.to_vec(),
                false => [&self.abs_root[..], b"/", path].concat(),
            })
        };
        let decide = |r: &Rule, cand: &Candidate<'_>| {
            let counts = !r.xattr && self.counts(r.side) && !(deleting && r.perishable);
            (counts && r.matches(cand, is_dir)).then_some(r.kind == RuleKind::Exclude)
        };
        for (slot, e) in self.entries.iter().enumerate() {
            match e {
                Entry::Rule(r) => {
                    let found = match r.abs {
                        true => decide(r, &Candidate::from_bytes(absolute())),
                        false => decide(r, &cand),
                    };
                    if let Some(excluded) = found {
                        return excluded;
                    }
                }
                Entry::DirMerge(dm) => {
                    let name = rel_path.rsplit(|&b| b == b'/').next().unwrap_or(rel_path);
                    let counts = self.counts(dm.side) && !(deleting && dm.perishable);
                    if dm.exclude_self && counts && name == dm.name.as_bytes() {
                        return true;
                    }
                    for layer in scope.layers.iter().filter(|l| l.slot == slot) {
                        let inside = match layer.dir.is_empty() {
                            true => Some(rel_path),
                            false => rel_path
                                .strip_prefix(&layer.dir[..])
                                .and_then(|r| r.strip_prefix(b"/")),
                        };
                        if let Some(inside) = inside {
                            // `/x` from the file's directory; others, as
                            // rsync's, at the end of the whole path.
                            let here = Candidate::from_bytes(inside);
                            let found = layer
                                .rules
                                .iter()
                                .find_map(|r| decide(r, if r.anchored { &here } else { &cand }));
                            if let Some(excluded) = found {
                                return excluded;
                            }
                        }
                        if layer.clear {
                            break;
                        }
                    }
                }
            }
        }
        false
    }

    /// The same rules for paths relative to directory `name` inside the transfer
    /// root: what a sync of `name` without a trailing slash walks (rsync
    /// matches `/name/x` there, not `/x`). An empty name changes nothing.
    pub fn under(&self, name: &[u8]) -> Filter {
        Filter {
            prefix: name.to_vec(),
            ..self.clone()
        }
    }

    /// The rules in order in rsync's syntax, one string each (`"+ PATTERN"`,
    /// `"-! PATTERN"`, `":n- NAME"`); [`Filter::from_args`] reads them back
    /// into the same filter.
    pub fn to_args(&self) -> Vec<String> {
        self.entries
            .iter()
            .map(|e| match e {
                Entry::Rule(r) => r.to_arg(),
                Entry::DirMerge(d) => d.to_arg(),
            })
            .collect()
    }

    /// The inverse of [`Filter::to_args`]: include and exclude rules (with
    /// `!`, `s`, `r`, `p`, `x`) and `dir-merge` rules. `merge` and `!` are refused: a
    /// client's merge files are read on the client, never on a server.
    pub fn from_args(args: &[String]) -> Result<Filter, FilterError> {
        let mut f = Filter::default();
        for a in args {
            let bad = |reason: &str| FilterError::BadRule {
                rule: a.clone(),
                reason: reason.to_string(),
            };
            match parse_rule(a).map_err(|r| bad(&r))? {
                Parsed::Rule { .. } | Parsed::DirMerge(_) => f.add_rule(a)?,
                Parsed::Clear | Parsed::Merge { .. } | Parsed::CvsExcludes => {
                    return Err(bad("not a rule that travels (merge files, ! and -C are read where the rules are given)"))
                }
            }
        }
        Ok(f)
    }
}

/// A rule file's line as text; not UTF-8 is an error naming the line.
fn utf8_line<'a>(line: &'a [u8], source: &str, n: usize) -> Result<&'a str, FilterError> {
    std::str::from_utf8(line).map_err(|_| {
        in_file(
            FilterError::BadPattern {
                pattern: String::from_utf8_lossy(line).into_owned(),
                reason: "not UTF-8".to_string(),
            },
            source,
            n,
        )
    })
}

fn in_file(error: FilterError, source: &str, line: usize) -> FilterError {
    FilterError::InFile {
        source_name: source.to_string(),
        line,
        error: Box::new(error),
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
            matches!(e, FilterError::BadRule { ref rule, .. } if rule == "* x"),
            "{e}"
        );
        assert!(Filter::from_args(&["+".to_string()]).is_err());
        assert!(Filter::from_args(&["- a[".to_string()]).is_err());
    }

    fn rules(list: &[&str]) -> Filter {
        let mut f = Filter::default();
        for r in list {
            f.add_rule(r).unwrap_or_else(|e| panic!("{r}: {e}"));
        }
        f
    }

    #[test]
    fn filter_rule_syntax_short_and_long() {
        let f = rules(&[
            "+ keep.o",
            "exclude *.o",
            "include,s shown_only_to_sender",
            "-_under score",
            "-! *.c",
        ]);
        assert_eq!(
            f.to_args(),
            [
                "+ keep.o",
                "- *.o",
                "+s shown_only_to_sender",
                "- under score",
                "-! *.c"
            ]
        );
        assert!(!excl(&f, "keep.o"));
        assert!(excl(&f, "x.o"));
        assert!(excl(&f, "under score"));
        // `-!`: everything the pattern does not match.
        assert!(!excl(&f, "main.c"));
        assert!(excl(&f, "main.h"));
        // `!` drops what came before.
        let f = rules(&["- *.o", "!", "- *.h"]);
        assert_eq!(f.to_args(), ["- *.h"]);
        let f = rules(&["- *.o", "clear"]);
        assert!(f.is_empty());
        for (bad, why) in [
            ("*.o", "expected a rule"),
            ("-*.o", "expected a space"),
            ("- ", "no pattern"),
            (":/ .r", "does not support the '/'"),
            (":x f", "does not support the 'x'"),
            ("-q *.o", "unknown modifier 'q'"),
            (".n f", "dir-merge rules only"),
            (": a/b", "a name, not a path"),
            (": ..", "a name, not a path"),
            ("- a[", "bad filter pattern"),
        ] {
            let e = Filter::default().add_rule(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn sides_keep_their_rules() {
        let f = rules(&[
            "hide secret",
            "protect keep/",
            "- *.tmp",
            "risk *.bak",
            "show *.log",
            "- *.log",
            "-r local",
            "+s *.x",
        ]);
        assert_eq!(
            f.to_args(),
            [
                "-s secret",
                "-r keep/",
                "- *.tmp",
                "+r *.bak",
                "+s *.log",
                "- *.log",
                "-r local",
                "+s *.x"
            ]
        );
        let sender = f.for_side(Side::Sender);
        let receiver = f.for_side(Side::Receiver);
        assert!(excl(&sender, "secret") && !excl(&receiver, "secret"));
        assert!(!excl_dir(&sender, "keep") && excl_dir(&receiver, "keep"));
        assert!(excl(&sender, "a.tmp") && excl(&receiver, "a.tmp"));
        assert!(!excl(&sender, "a.log") && excl(&receiver, "a.log"));
        assert!(!excl(&sender, "local") && excl(&receiver, "local"));
        let back = Filter::from_args(&f.to_args()).unwrap();
        assert_eq!(back.to_args(), f.to_args());
        assert!(excl(&back.for_side(Side::Sender), "secret"));
    }

    #[test]
    fn merge_files_are_read_in_place_and_nest() {
        let dir = tempfile::tempdir().unwrap();
        let inner = dir.path().join("inner");
        std::fs::write(&inner, "- *.inner\n").unwrap();
        let outer = dir.path().join("outer");
        std::fs::write(
            &outer,
            format!(
                "# rules\n+ keep.o\n- *.o\nmerge {}\n: .rules\n",
                inner.display()
            ),
        )
        .unwrap();
        let f = rules(&["- first", &format!("merge {}", outer.display()), "- last"]);
        assert_eq!(
            f.to_args(),
            [
                "- first",
                "+ keep.o",
                "- *.o",
                "- *.inner",
                ": .rules",
                "- last"
            ]
        );
        // With a kind, each line is a pattern; `s` holds for what is merged.
        let words = dir.path().join("words");
        std::fs::write(&words, "a.o b.o\n+ c\n").unwrap();
        let f = rules(&[&format!("merge,-ws {}", words.display())]);
        assert_eq!(f.to_args(), ["-s a.o", "-s b.o", "-s +", "-s c"]);
        // A file merging itself stops at the depth limit.
        let me = dir.path().join("me");
        std::fs::write(&me, format!("merge {}\n", me.display())).unwrap();
        let e = Filter::default()
            .add_rule(&format!(". {}", me.display()))
            .unwrap_err();
        assert!(e.to_string().contains("nested more than"), "{e}");
        let e = Filter::default().add_rule(". /no/such/rules").unwrap_err();
        assert!(e.to_string().contains("/no/such/rules"), "{e}");
        // A server takes no merge rule (it would read its own files).
        assert!(Filter::from_args(&[". /etc/passwd".to_string()]).is_err());
        assert!(Filter::from_args(&["!".to_string()]).is_err());
    }

    /// The scope of `dir` given the rule files in `files` (directory, text).
    fn scope_of(f: &Filter, files: &[(&str, &str)], dir: &str) -> DirScope {
        let mut scope = DirScope::default();
        let mut at = String::new();
        let parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
        for i in 0..=parts.len() {
            if i > 0 {
                at = parts[..i].join("/");
            }
            scope = f
                .enter(&scope, at.as_bytes(), |name| {
                    assert_eq!(name, ".rules");
                    Ok(files
                        .iter()
                        .find(|(d, _)| *d == at)
                        .map(|(_, t)| t.as_bytes().to_vec()))
                })
                .unwrap();
        }
        scope
    }

    #[test]
    fn per_directory_rules_apply_below_their_directory() {
        let f = rules(&["- first", ": .rules", "- *.last"]);
        assert!(f.has_dir_merge());
        let files = [
            ("", "- *.top\n- /anchored\n"),
            ("a", "+ keep.top\n- *.a\n"),
            ("a/b", "!\n- *.b\n"),
        ];
        let at = |dir: &str, path: &str| {
            let scope = scope_of(&f, &files, dir);
            f.is_excluded_in(&scope, path.as_bytes(), false)
        };
        assert!(at("", "x.top"));
        assert!(at("", "anchored"));
        assert!(!at("a", "a/anchored"), "/ is the rule file's own directory");
        assert!(at("a", "a/x.top"), "inherited");
        assert!(!at("a", "a/keep.top"), "a subdirectory's rules come first");
        assert!(at("a", "a/x.a"));
        assert!(!at("", "x.a"), "not above its directory");
        // a/b's `!` stops the rules of the directories above.
        assert!(!at("a/b", "a/b/x.top") && !at("a/b", "a/b/x.a"));
        assert!(at("a/b", "a/b/x.b"));
        // Rules before and after the dir-merge keep their places.
        assert!(at("a", "a/first") && at("a/b", "a/b/y.last"));
        // Without the file's directory in the scope, its rules do not apply.
        assert!(!f.is_excluded(b"x.top", false));
    }

    #[test]
    fn per_directory_patterns_and_sides() {
        // In a/'s file, `/x` is a/x; `b/y` (not anchored) matches the end
        // of the whole path, as rsync's: a/b/y, and so does `a/b/z`.
        let f = rules(&[": .rules"]);
        let files = [("a", "- /x\n- b/y\n- a/b/z\n")];
        let a = scope_of(&f, &files, "a");
        let ab = scope_of(&f, &files, "a/b");
        assert!(f.is_excluded_in(&a, b"a/x", false));
        assert!(!f.is_excluded_in(&ab, b"a/b/x", false));
        assert!(f.is_excluded_in(&ab, b"a/b/y", false));
        assert!(f.is_excluded_in(&ab, b"a/b/z", false));
        // A receiver with --delete-excluded: plain rules no longer count,
        // its own (`protect`, `-r`, and those of a `:r` file) still do.
        let f = rules(&["- *.o", "protect keep.o", ": .rules", ":r .mine"]);
        let mut read = 0;
        let own = f.for_side(Side::Receiver).own_rules_only();
        let top = own
            .enter(&DirScope::default(), b"", |name| {
                read += 1;
                Ok(Some(match name {
                    ".rules" => b"- *.tmp\nP *.cfg\n".to_vec(),
                    _ => b"- *.mine\n".to_vec(),
                }))
            })
            .unwrap();
        assert_eq!(read, 2);
        assert!(!own.is_excluded_in(&top, b"x.o", false));
        assert!(own.is_excluded_in(&top, b"keep.o", false));
        assert!(!own.is_excluded_in(&top, b"x.tmp", false));
        assert!(own.is_excluded_in(&top, b"x.cfg", false));
        assert!(own.is_excluded_in(&top, b"x.mine", false));
        // The sender does not even read a file of receiver rules.
        let sender = f.for_side(Side::Sender);
        let names = std::cell::RefCell::new(Vec::new());
        sender
            .enter(&DirScope::default(), b"", |name| {
                names.borrow_mut().push(name.to_string());
                Ok(None)
            })
            .unwrap();
        assert_eq!(names.into_inner(), [".rules"]);
        // A per-directory file is refused past its rule limit.
        let big = "- x\n".repeat(MAX_DIR_FILE_RULES + 1);
        let e = f
            .enter(&DirScope::default(), b"d", |_| {
                Ok(Some(big.clone().into_bytes()))
            })
            .unwrap_err();
        assert!(e.to_string().contains("more than 10000 rules"), "{e}");
    }

    #[test]
    fn perishable_rules_do_not_count_inside_a_deleted_directory() {
        let f = rules(&["-p *.o", "Pp keep/", "- *.log"]);
        assert_eq!(f.to_args(), ["-p *.o", "-pr keep/", "- *.log"]);
        let back = Filter::from_args(&f.to_args()).unwrap();
        assert_eq!(back.to_args(), f.to_args());
        let none = DirScope::default();
        for f in [&f, &back] {
            assert!(f.is_excluded_in(&none, b"a.o", false));
            assert!(!f.is_excluded_in_deleted(&none, b"a.o", false));
            assert!(f.is_excluded_in(&none, b"keep", true));
            assert!(!f.is_excluded_in_deleted(&none, b"keep", true));
            assert!(f.is_excluded_in_deleted(&none, b"x.log", false));
        }
        // In a per-directory rule file too, or for all of one (`:p`), or
        // for all of a merged file (`.p`).
        let d = rules(&[": .rules"]);
        let top = scope_of(&d, &[("", "-p *.tmp\n- *.bak\n")], "");
        assert!(d.is_excluded_in(&top, b"x.tmp", false));
        assert!(!d.is_excluded_in_deleted(&top, b"x.tmp", false));
        assert!(d.is_excluded_in_deleted(&top, b"x.bak", false));
        let d = rules(&[":pe .rules"]);
        assert_eq!(d.to_args(), [":ep .rules"]);
        assert_eq!(
            Filter::from_args(&d.to_args()).unwrap().to_args(),
            d.to_args()
        );
        let top = scope_of(&d, &[("", "- *.bak\n")], "");
        for p in [&b"x.bak"[..], b".rules"] {
            assert!(d.is_excluded_in(&top, p, false));
            assert!(!d.is_excluded_in_deleted(&top, p, false));
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rules");
        std::fs::write(&file, "- *.bak\n").unwrap();
        let m = rules(&[&format!(".p {}", file.display())]);
        assert_eq!(m.to_args(), ["-p *.bak"]);
    }

    #[test]
    fn the_c_modifier_is_cvs_s_way() {
        // :C is each directory's .cvsignore, words, excludes, not inherited.
        for text in [":C", "dir-merge,C", ":C .cvsignore", ":C ", "dir-merge,C_"] {
            let f = rules(&[text]);
            assert_eq!(f.to_args(), [":-nw .cvsignore"], "{text}");
            assert_eq!(
                Filter::from_args(&f.to_args()).unwrap().to_args(),
                f.to_args()
            );
        }
        assert_eq!(rules(&[":C .ignore"]).to_args(), [":-nw .ignore"]);
        let f = rules(&[":C .rules"]);
        let files = [("", "*.tmp ! core")];
        let top = scope_of(&f, &files, "");
        assert!(f.is_excluded_in(&top, b"core", false));
        assert!(!f.is_excluded_in(&top, b"x.tmp", false), "! cleared it");
        assert!(!f.is_excluded_in(&scope_of(&f, &files, "d"), b"d/core", false));
        // .C FILE: the file's words, excludes.
        let t = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(t.path(), "*.bak\n+x\n").unwrap();
        let f = rules(&[&format!(".C {}", t.path().display())]);
        assert!(excl(&f, "a.bak") && excl(&f, "+x"), "{:?}", f.to_args());
        // -C: CVS's list in place (perishable), before the rules after it;
        // then the words of $HOME/.cvsignore and $CVSIGNORE, `!` dropping
        // what came before (as add_cvs_excludes reads them).
        // (Parsed here, not added: adding reads this tester's $HOME.)
        for text in ["-C", "exclude,C", "-C "] {
            assert!(
                matches!(parse_rule(text), Ok(Parsed::CvsExcludes)),
                "{text}"
            );
        }
        let mut f = Filter::default();
        f.add_cvs_lists(None, None).unwrap();
        f.add_rule("+ keep.o").unwrap();
        assert!(excl(&f, "keep.o") && excl(&f, "core"));
        assert!(f.is_excluded_in(&DirScope::default(), b".git", true));
        assert!(!f.is_excluded_in_deleted(&DirScope::default(), b"x.o", false));
        let mut f = rules(&["- early"]);
        f.add_cvs_lists(Some("*.home\nother"), Some("*.env"))
            .unwrap();
        assert!(excl(&f, "x.o") && excl(&f, "a.home") && excl(&f, "other"));
        assert!(excl(&f, "a.env") && excl(&f, "early") && !excl(&f, "main.c"));
        let mut f = rules(&["- early"]);
        f.add_cvs_lists(Some("*.home ! *.again"), None).unwrap();
        assert!(!excl(&f, "x.o") && !excl(&f, "a.home"), "! dropped them");
        assert!(
            excl(&f, "a.again") && excl(&f, "early"),
            "not the rules before"
        );
        assert!(excl(&rules(&["- C"]), "C"), "a pattern named C");
        // Only where the rules are given: not in a per-directory file, and
        // it does not travel (its words do).
        let mut f = Filter::default();
        f.add_cvs_lists(None, None).unwrap();
        assert!(f.to_args().iter().any(|a| a == "-p *.o"));
        assert!(Filter::from_args(&["-C".to_string()]).is_err());
        let e = rules(&[": .rules"])
            .enter(&DirScope::default(), b"", |_| Ok(Some(b"-C\n".to_vec())))
            .unwrap_err();
        assert!(e.to_string().contains("(or -C)"), "{e}");
        for (bad, why) in [
            ("-C *.o", "takes no pattern"),
            ("-Cp", "takes no pattern"),
            ("+C", "for -C and merge rules only"),
            ("+C x", "for -C and merge rules only"),
            (":C+", "not with + or -"),
            (":-C x", "not with + or -"),
            (".C- f", "not with + or -"),
        ] {
            let e = Filter::default().add_rule(bad).unwrap_err();
            assert!(e.to_string().contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn dir_merge_modifiers() {
        // n: not inherited; e: the rule files are excluded; -: patterns.
        let f = rules(&[":ne- .rules"]);
        assert_eq!(f.to_args(), [":-ne .rules"]);
        let files = [("", "*.o\n+ x\n")];
        let top = scope_of(&f, &files, "");
        assert!(f.is_excluded_in(&top, b"a.o", false));
        assert!(
            f.is_excluded_in(&top, b"+ x", false),
            "a pattern, not a rule"
        );
        assert!(f.is_excluded_in(&top, b".rules", false));
        assert!(f.is_excluded_in(&top, b"d/.rules", false));
        let below = scope_of(&f, &files, "d");
        assert!(!f.is_excluded_in(&below, b"d/a.o", false));
        // w: words; s: the file's rules are the sender's.
        let f = rules(&[":ws .rules"]);
        let files = [("", "-_a.o -_b.o")];
        let top = scope_of(&f, &files, "");
        let sender = f.for_side(Side::Sender);
        let receiver = f.for_side(Side::Receiver);
        assert!(sender.is_excluded_in(&top, b"b.o", false));
        assert!(!receiver.is_excluded_in(&top, b"b.o", false));
        assert_eq!(
            Filter::from_args(&f.to_args()).unwrap().to_args(),
            [":ws .rules"]
        );
        // A bad line names the file and the line; so does a read failure.
        let f = rules(&[": .rules"]);
        let e = f
            .enter(&DirScope::default(), b"d", |_| {
                Ok(Some(b"- ok\n-bad\n".to_vec()))
            })
            .unwrap_err();
        assert!(e.to_string().starts_with(".rules:2:"), "{e}");
        let e = f
            .enter(&DirScope::default(), b"", |_| {
                Err("Permission denied".into())
            })
            .unwrap_err();
        assert_eq!(e.to_string(), ".rules: Permission denied");
        let e = f
            .enter(&DirScope::default(), b"", |_| {
                Ok(Some(b"merge x\n".to_vec()))
            })
            .unwrap_err();
        assert!(e.to_string().contains("per-directory"), "{e}");
    }

    /// `/`: matched against `ROOT/PATH` once the root is known (anchored
    /// from the top, unanchored at the end, a single name the last
    /// component as ever); the others as before; carried by the wire form
    /// and by a merge's `/`; not from a per-directory file.
    #[test]
    fn absolute_path_rules() {
        let f = rules(&["-/ /home/u/src/a", "-/ src/sub/*.c", "-/ x.o", "- /b"]);
        assert!(f.has_abs_rules() && !rules(&["- /b"]).has_abs_rules());
        let at = f.with_abs_root(b"/home/u/src/");
        assert!(at.is_excluded(b"a", false));
        assert!(!at.is_excluded(b"sub/a", false));
        assert!(at.is_excluded(b"sub/k.c", false));
        assert!(!at.is_excluded(b"k.c", false));
        assert!(at.is_excluded(b"deep/x.o", false));
        assert!(at.is_excluded(b"b", false) && !at.is_excluded(b"d/b", false));
        // Beneath another root, or with none (the paths as they are).
        let there = f.with_abs_root(b"srv/other");
        assert!(!there.is_excluded(b"a", false));
        assert!(!there.is_excluded(b"sub/k.c", false));
        assert!(f.is_excluded(b"src/sub/k.c", false));
        // A directory sent as itself: its name is in the path.
        let under = f.under(b"src").with_abs_root(b"home/u");
        assert!(under.is_excluded(b"a", false));
        assert!(under.is_excluded(b"sub/k.c", false));
        let g = Filter::from_args(&f.to_args()).unwrap();
        assert_eq!(g.to_args(), f.to_args());
        assert_eq!(f.to_args()[0], "-/ /home/u/src/a");
        assert!(g.with_abs_root(b"/home/u/src").is_excluded(b"a", false));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("abs");
        std::fs::write(&file, "- /top/f\n").unwrap();
        let merged = rules(&[&format!("merge,/ {}", file.display())]);
        assert_eq!(merged.to_args(), ["-/ /top/f"]);
        let names = rules(&[&format!("merge,x {}", file.display())]);
        assert_eq!(names.to_args(), ["-x /top/f"]);
        let e = rules(&[": .rules"])
            .enter(&DirScope::default(), b"", |_| Ok(Some(b"-/ /a\n".to_vec())))
            .unwrap_err();
        assert!(e.to_string().contains("per-directory"), "{e}");
        let e = Filter::default().add_rule(":/ .rules").unwrap_err();
        assert!(e.to_string().contains("'/'"), "{e}");
    }

    /// `x`: rules for extended attribute names, apart from the paths',
    /// first match deciding, each side taking its own, travelling as given.
    #[test]
    fn xattr_rules() {
        let f = rules(&["-x user.secret", "+x user.*", "-x *", "- user.path"]);
        assert!(f.has_xattr_rules());
        assert!(f.excludes_xattr(b"user.secret"));
        assert!(!f.excludes_xattr(b"user.kept"));
        assert!(f.excludes_xattr(b"security.selinux"));
        // Paths are matched by the other rules alone, and names by these.
        assert!(!f.is_excluded(b"user.secret", false));
        assert!(f.is_excluded(b"user.path", false));
        assert!(!rules(&["- user.path"]).excludes_xattr(b"user.path"));
        assert!(!rules(&["- *"]).has_xattr_rules());
        // `!`: what the pattern does not match.
        let f = rules(&["-x! user.*"]);
        assert!(f.excludes_xattr(b"trusted.t"));
        assert!(!f.excludes_xattr(b"user.u"));
        // A side's rules count on that side only; --delete-excluded leaves
        // the receiver its own.
        let f = rules(&["-xs user.a", "-xr user.b", "-x user.c"]);
        let (sender, receiver) = (f.for_side(Side::Sender), f.for_side(Side::Receiver));
        assert!(sender.excludes_xattr(b"user.a") && !sender.excludes_xattr(b"user.b"));
        assert!(!receiver.excludes_xattr(b"user.a") && receiver.excludes_xattr(b"user.b"));
        assert!(receiver.excludes_xattr(b"user.c"));
        let own = receiver.own_rules_only();
        assert!(own.excludes_xattr(b"user.b") && !own.excludes_xattr(b"user.c"));
        assert!(!rules(&["-xs user.a"])
            .for_side(Side::Receiver)
            .has_xattr_rules());
        // protect/hide take it too; the wire form keeps it.
        let f = rules(&["protect,x user.p", "-!xr user.*"]);
        assert_eq!(f.to_args(), ["-xr user.p", "-!xr user.*"]);
        let g = Filter::from_args(&f.to_args()).unwrap();
        assert_eq!(g.to_args(), f.to_args());
        assert!(g.for_side(Side::Receiver).excludes_xattr(b"user.p"));
        // Not from a per-directory file.
        let e = rules(&[": .rules"])
            .enter(&DirScope::default(), b"", |_| {
                Ok(Some(b"-x user.a\n".to_vec()))
            })
            .unwrap_err();
        assert!(e.to_string().contains("per-directory"), "{e}");
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

    /// `-0`: rule files' lines end with NUL (a newline or `\r` is part of
    /// the line), in `--exclude-from`, `merge` and `dir-merge` files alike.
    #[test]
    fn nul_ended_rule_files() {
        let text = &b"*.o\0+ keep me\0\0# comment\0two\nlines\0crlf\r"[..];
        let mut f = Filter::default();
        f.set_nul_lines(true);
        f.add_from_reader(text, Exclude, "nul.txt").unwrap();
        assert_eq!(
            f.to_args(),
            ["- *.o", "+ keep me", "- two\nlines", "- crlf\r"]
        );
        // Without -0 the same bytes are lines at the newlines.
        let mut g = Filter::default();
        g.add_from_reader(text, Exclude, "nul.txt").unwrap();
        assert_eq!(g.to_args().len(), 2, "{:?}", g.to_args());

        let dir = tempfile::tempdir().unwrap();
        let merged = dir.path().join("merged");
        std::fs::write(&merged, b"- a\0- b\0").unwrap();
        let mut m = Filter::default();
        m.set_nul_lines(true);
        m.add_rule(&format!("merge {}", merged.display())).unwrap();
        m.add_rule(": .rules").unwrap();
        assert_eq!(m.to_args(), ["- a", "- b", ": .rules"]);
        let per_dir = |nul: bool| {
            let mut m = m.clone();
            m.set_nul_lines(nul);
            let scope = m
                .enter(&DirScope::default(), b"", |_| {
                    Ok(Some(b"- c\0- d".to_vec()))
                })
                .unwrap();
            ["c", "d"].map(|n| m.is_excluded_in(&scope, n.as_bytes(), false))
        };
        assert_eq!(per_dir(true), [true, true]);
        // (One line, "- c\0- d", without -0.)
        assert_eq!(per_dir(false), [false, false]);
    }
}
