//! `--itemize-changes` lines: one per changed entry, saying what changed, in a
//! format close to rsync's so that habits (and scripts that grep them) carry over.
//!
//! A line is `YXcstpoguax PATH`:
//!
//! * `Y`, the update: `>` content is received, `c` an item is created or
//!   replaced locally (a directory, symlink, device, FIFO), `h` a hard link to
//!   another entry, `.` only attributes change, `*` a message (`*deleting`).
//! * `X`, the kind: `f` file, `d` directory, `L` symlink, `D` device, `S` FIFO.
//! * then one letter per attribute, `.` when unchanged: `c` content (a
//!   checksum or symlink target differs), `s` size, `t` modification time
//!   (`T`: set to the time of the transfer, with `--no-times`), `p`
//!   permissions, `o` owner, `g` group, `u` unused, `a` ACL (unused), `x`
//!   extended attributes. A new entry shows `+++++++++` instead.
//!
//! Directories end with `/` and symlinks show `-> target`, as in rsync.
//! Deletions read `*deleting   PATH`.

use proto::sync::EntryKind;

/// What changed on one entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Change {
    pub new: bool,
    pub content: bool,
    pub size: bool,
    pub time: bool,
    /// The access time (`-U`): `u`.
    pub atime: bool,
    /// The new content keeps the time it was written (`--no-times`): `T`.
    pub transfer_time: bool,
    pub perms: bool,
    pub owner: bool,
    pub group: bool,
    pub xattrs: bool,
    /// ACLs (`-A`).
    pub acls: bool,
}

impl Change {
    /// Whether anything changed at all.
    pub(crate) fn any(&self) -> bool {
        self.new
            || self.content
            || self.size
            || self.time
            || self.atime
            || self.transfer_time
            || self.perms
            || self.owner
            || self.group
            || self.xattrs
            || self.acls
    }
}

/// The update letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Update {
    /// `>`: file content received.
    Received,
    /// `c`: created or replaced locally.
    Created,
    /// `.`: attributes only.
    Attrs,
}

fn kind_letter(kind: EntryKind) -> char {
    match kind {
        EntryKind::File => 'f',
        EntryKind::Dir => 'd',
        EntryKind::Symlink => 'L',
        EntryKind::CharDev | EntryKind::BlockDev => 'D',
        EntryKind::Fifo => 'S',
        // (Never itemized itself: its deletion is, as a file's or a
        // directory's.)
        EntryKind::Missing => '?',
    }
}

/// The attributes an `--out-format` line may show of an entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Attrs {
    pub size: u64,
    pub mtime: i64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// One changed entry: what an itemized line (`-i`) or an `--out-format`
/// line says of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Item {
    /// `YXcstpoguax`, or `*deleting`.
    code: String,
    kind: EntryKind,
    path: Vec<u8>,
    /// ` -> TARGET` of a symlink, ` => LEADER` of a hard link.
    link: Option<(&'static str, Vec<u8>)>,
    attrs: Attrs,
}

impl Item {
    /// An entry received, made or brought up to date; `target` is a
    /// symlink's target.
    pub(crate) fn changed(
        update: Update,
        kind: EntryKind,
        c: &Change,
        path: &[u8],
        target: &[u8],
        attrs: Attrs,
    ) -> Item {
        let mut code = String::with_capacity(11);
        code.push(match update {
            Update::Received => '>',
            Update::Created => 'c',
            Update::Attrs => '.',
        });
        code.push(kind_letter(kind));
        if c.new {
            code.push_str("+++++++++");
        } else {
            for (on, letter) in [
                (c.content, 'c'),
                (c.size, 's'),
                (c.time || c.transfer_time, if c.time { 't' } else { 'T' }),
                (c.perms, 'p'),
                (c.owner, 'o'),
                (c.group, 'g'),
                (c.atime, 'u'),
                (c.acls, 'a'),
                (c.xattrs, 'x'),
            ] {
                code.push(if on { letter } else { '.' });
            }
        }
        // An entry where nothing changed (shown only with -ii) reads
        // `.f          PATH`, as rsync's.
        if update != Update::Received && code[2..].bytes().all(|b| b == b'.') {
            code.truncate(2);
            code.push_str("         ");
        }
        let link = (kind == EntryKind::Symlink).then(|| (" -> ", target.to_vec()));
        Item {
            code,
            kind,
            path: path.to_vec(),
            link,
            attrs,
        }
    }

    /// A name already hard-linked to its first one (`-ii`):
    /// `hf          PATH`, as rsync's.
    pub(crate) fn linked(path: &[u8], attrs: Attrs) -> Item {
        Item {
            code: "hf         ".into(),
            kind: EntryKind::File,
            path: path.to_vec(),
            link: None,
            attrs,
        }
    }

    /// A name made a hard link to an earlier one (rsync's `=>`).
    pub(crate) fn hard_link(path: &[u8], leader: &[u8], attrs: Attrs) -> Item {
        Item {
            code: "hf+++++++++".into(),
            kind: EntryKind::File,
            path: path.to_vec(),
            link: Some((" => ", leader.to_vec())),
            attrs,
        }
    }

    /// A deletion.
    pub(crate) fn deleting(path: &[u8], is_dir: bool) -> Item {
        let kind = if is_dir {
            EntryKind::Dir
        } else {
            EntryKind::File
        };
        Item {
            code: "*deleting".into(),
            kind,
            path: path.to_vec(),
            link: None,
            attrs: Attrs::default(),
        }
    }

    /// The itemized line (`-i`): `YXcstpoguax PATH`.
    pub(crate) fn line(&self) -> String {
        let mut s = format!("{:<11} {}", self.code, shown(&self.path, self.kind));
        if let Some((arrow, to)) = &self.link {
            let to_kind = if *arrow == " => " {
                self.kind
            } else {
                EntryKind::Symlink
            };
            s.push_str(arrow);
            s.push_str(&shown(to, to_kind));
        }
        s
    }

    /// Whether an `--out-format` without `%i` (and so `-v`) shows it, as
    /// rsync's: what was received, made or deleted, and a directory whose
    /// attributes changed; not a change of another entry's attributes only.
    pub(crate) fn transferred(&self) -> bool {
        // (Nor is an unchanged name, `hf          PATH` or `.d          PATH`,
        // with -ii.)
        let changed = self.code.get(2..3) != Some(" ");
        let dir_changed = self.kind == EntryKind::Dir
            && self.code.bytes().skip(2).any(|b| b != b'.' && b != b' ');
        changed && (!self.code.starts_with('.') || dir_changed)
    }

    /// rsync's `-vv` line for an entry a format without `%i` does not show
    /// ([`Item::transferred`]): `NAME is uptodate` when nothing changed,
    /// the bare name when its attributes did; none for a directory.
    pub(crate) fn unchanged_line(&self) -> Option<String> {
        if self.kind == EntryKind::Dir || self.transferred() {
            return None;
        }
        let name = shown(&self.path, self.kind);
        match self.unchanged() {
            true => Some(format!("{name} is uptodate")),
            false => Some(name),
        }
    }

    /// Whether nothing changed (`-ii`'s `.f          PATH`).
    pub(crate) fn unchanged(&self) -> bool {
        self.code.get(2..3) == Some(" ")
    }

    /// Whether it is a deletion (`*deleting`).
    pub(crate) fn is_deletion(&self) -> bool {
        self.code.starts_with('*')
    }
}

/// rsync's `--out-format`: a line per changed entry made of text and
/// escapes, each with an optional width (`%-10n` left-justified, `%10l`
/// right) and, for numbers, `'` for thousands separators (`%'l`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutFormat {
    text: String,
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Escape {
        what: char,
        left: bool,
        width: usize,
        commas: bool,
    },
}

/// The escapes [`OutFormat`] knows, as rsync's.
const ESCAPES: &str = "nfLiolMBUGt";

/// Longest format, and widest field: a line stays far below what one
/// message carries (a server formats the lines a client asked for).
const MAX_FORMAT: usize = 1024;
const MAX_WIDTH: usize = 256;

impl OutFormat {
    /// Reads a format: `%n` the path (`/` after a directory), `%f` the path
    /// without it, `%L` ` -> TARGET` or ` => LEADER`, `%i` the itemized
    /// code, `%o` the operation (`send`, `recv`, `del.`), `%l` the size,
    /// `%M` the modification time (UTC), `%B` the permission bits, `%U` and
    /// `%G` the owner and group numbers, `%t` the time now (UTC), `%%`.
    /// rsync's other escapes are refused, named.
    pub fn parse(format: &str) -> Result<OutFormat, String> {
        if format.len() > MAX_FORMAT {
            return Err(format!("a format is at most {MAX_FORMAT} bytes"));
        }
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut chars = format.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                text.push(c);
                continue;
            }
            let (mut left, mut commas, mut digits) = (false, false, String::new());
            let what = loop {
                match chars.next() {
                    Some('-') if digits.is_empty() => left = true,
                    Some('\'') if digits.is_empty() => commas = true,
                    Some(d) if d.is_ascii_digit() => digits.push(d),
                    Some(w) => break w,
                    None => return Err(format!("{format:?}: a '%' ends it")),
                }
            };
            if what == '%' && !left && !commas && digits.is_empty() {
                text.push('%');
                continue;
            }
            if !ESCAPES.contains(what) {
                return Err(format!(
                    "{format:?}: %{what} is not one jcp knows (it has %n %f %L %i %o %l %M %B %U %G %t %%)"
                ));
            }
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            let width = match digits.parse::<usize>() {
                Ok(w) if w <= MAX_WIDTH => w,
                Ok(_) | Err(_) if !digits.is_empty() => {
                    return Err(format!("{format:?}: a width is at most {MAX_WIDTH}"))
                }
                _ => 0,
            };
            pieces.push(Piece::Escape {
                what,
                left,
                width,
                commas,
            });
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(OutFormat {
            text: format.to_string(),
            pieces,
        })
    }

    /// Whether it shows the itemized code (`%i`): then it is a line for
    /// every changed entry, as `-i`; otherwise only for transfers.
    pub fn itemizes(&self) -> bool {
        self.has('i')
    }

    /// Whether it shows escape `what`.
    fn has(&self, what: char) -> bool {
        self.pieces
            .iter()
            .any(|p| matches!(p, Piece::Escape { what: w, .. } if *w == what))
    }

    /// The line for `item`, which this format shows: a deletion is
    /// `deleting %n` unless the format shows `%o` or `%i`, as rsync's.
    pub(crate) fn render_item(&self, item: &Item, op: &str) -> String {
        if item.is_deletion() && !self.has('o') && !self.has('i') {
            format!("deleting {}", shown(&item.path, item.kind))
        } else {
            self.render(item, op)
        }
    }

    /// The line for `item`; `op` is what `%o` says of a transfer.
    pub(crate) fn render(&self, item: &Item, op: &str) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            let (what, left, width, commas) = match p {
                Piece::Text(t) => {
                    out.push_str(t);
                    continue;
                }
                Piece::Escape {
                    what,
                    left,
                    width,
                    commas,
                } => (*what, *left, *width, *commas),
            };
            let a = &item.attrs;
            let number = |n: u64| {
                if commas {
                    with_commas(n)
                } else {
                    n.to_string()
                }
            };
            let value = match what {
                'n' => shown(&item.path, item.kind),
                'f' => shown(&item.path, EntryKind::File),
                'L' => match &item.link {
                    Some((arrow, to)) => format!("{arrow}{}", super::escape_name(to)),
                    None => String::new(),
                },
                // (Eleven wide, as rsync's: `*deleting` and two spaces.)
                'i' => format!("{:<11}", item.code),
                'o' if item.code.starts_with('*') => "del.".into(),
                'o' => op.into(),
                'l' => number(a.size),
                'M' => crate::civil::utc_stamp(a.mtime, '-'),
                'B' => mode_string(item.kind, a.mode)[1..].to_string(),
                'U' => number(a.uid.into()),
                'G' => number(a.gid.into()),
                _ => {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs() as i64);
                    crate::civil::utc_stamp(now, ' ')
                }
            };
            match (left, value.chars().count() < width) {
                (true, true) => out.push_str(&format!("{value:<width$}")),
                (false, true) => out.push_str(&format!("{value:>width$}")),
                _ => out.push_str(&value),
            }
        }
        out
    }
}

impl std::fmt::Display for OutFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// `drwxr-sr-t` and the like, as `ls -l` shows a kind and mode.
pub fn mode_string(kind: EntryKind, mode: u32) -> String {
    let kind = match kind {
        EntryKind::Dir => 'd',
        EntryKind::Symlink => 'l',
        EntryKind::Fifo => 'p',
        EntryKind::CharDev => 'c',
        EntryKind::BlockDev => 'b',
        EntryKind::File => '-',
        EntryKind::Missing => '?',
    };
    let mut s = String::with_capacity(10);
    s.push(kind);
    // (bit for r, w, x; the special bit shown in the x place; its letter)
    let triads = [(6, 0o4000, 's'), (3, 0o2000, 's'), (0, 0o1000, 't')];
    for (shift, special, letter) in triads {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        let x = bits & 1 != 0;
        s.push(match (mode & special != 0, x) {
            (true, true) => letter,
            (true, false) => letter.to_ascii_uppercase(),
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    s
}

/// `1,234,567`, as rsync prints sizes.
pub fn with_commas(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A path for display ([`super::escape_name`]), `.` for the base, `/` after
/// directories.
fn shown(path: &[u8], kind: EntryKind) -> String {
    let mut s = if path.is_empty() {
        ".".to_string()
    } else {
        super::escape_name(path).into_owned()
    };
    if kind == EntryKind::Dir {
        s.push('/');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(update: Update, kind: EntryKind, c: &Change, path: &[u8], target: &[u8]) -> String {
        Item::changed(update, kind, c, path, target, Attrs::default()).line()
    }

    #[test]
    fn lines_look_like_rsyncs() {
        let new = Change {
            new: true,
            ..Change::default()
        };
        assert_eq!(
            line(Update::Received, EntryKind::File, &new, b"a/b", b""),
            ">f+++++++++ a/b"
        );
        assert_eq!(
            line(Update::Created, EntryKind::Dir, &new, b"d", b""),
            "cd+++++++++ d/"
        );
        assert_eq!(
            line(Update::Created, EntryKind::Symlink, &new, b"l", b"../t"),
            "cL+++++++++ l -> ../t"
        );
        let c = Change {
            content: true,
            size: true,
            time: true,
            ..Change::default()
        };
        assert_eq!(
            line(Update::Received, EntryKind::File, &c, b"x", b""),
            ">fcst...... x"
        );
        let now = Change {
            content: true,
            transfer_time: true,
            ..Change::default()
        };
        assert_eq!(
            line(Update::Received, EntryKind::File, &now, b"x", b""),
            ">fc.T...... x"
        );
        let none = Change::default();
        assert_eq!(
            line(Update::Attrs, EntryKind::File, &none, b"x", b""),
            ".f          x"
        );
        assert_eq!(
            line(Update::Received, EntryKind::File, &none, b"x", b""),
            ">f......... x"
        );
        let p = Change {
            time: true,
            perms: true,
            xattrs: true,
            acls: true,
            ..Change::default()
        };
        assert!(p.any() && !Change::default().any());
        assert_eq!(
            line(Update::Attrs, EntryKind::Dir, &p, b"", b""),
            ".d..tp...ax ./"
        );
        assert_eq!(Item::deleting(b"old", true).line(), "*deleting   old/");
        let a = Attrs::default();
        assert_eq!(Item::hard_link(b"b", b"a", a).line(), "hf+++++++++ b => a");
        assert_eq!(Item::linked(b"b", a).line(), "hf          b");
        assert!(!Item::linked(b"b", a).transferred());
        assert!(Item::hard_link(b"b", b"a", a).transferred());
        assert_eq!(
            Item::deleting(b"f\xff", false).line(),
            "*deleting   f\\#377"
        );
    }

    #[test]
    fn out_format_lines() {
        let attrs = Attrs {
            size: 1_234_567,
            mtime: 1_700_000_000,
            mode: 0o4755,
            uid: 1000,
            gid: 100,
        };
        let new = Change {
            new: true,
            ..Change::default()
        };
        let file = Item::changed(Update::Received, EntryKind::File, &new, b"d/f", b"", attrs);
        let f = OutFormat::parse("%o %i %n%L [%-6l|%8l|%'l] %M %B %U:%G 100%%").unwrap();
        assert!(f.itemizes());
        assert_eq!(
            f.render(&file, "send"),
            "send >f+++++++++ d/f [1234567| 1234567|1,234,567] 2023/11/14-22:13:20 rwsr-xr-x 1000:100 100%"
        );
        assert_eq!(f.to_string(), "%o %i %n%L [%-6l|%8l|%'l] %M %B %U:%G 100%%");
        let link = Item::changed(Update::Created, EntryKind::Symlink, &new, b"l", b"t", attrs);
        let dir = Item::changed(Update::Created, EntryKind::Dir, &new, b"d", b"", attrs);
        let n = OutFormat::parse("%n%L|%f|%-4o|").unwrap();
        assert!(!n.itemizes());
        assert_eq!(n.render(&link, "recv"), "l -> t|l|recv|");
        assert_eq!(n.render(&dir, "recv"), "d/|d|recv|");
        assert_eq!(n.render(&Item::deleting(b"x", false), "recv"), "x|x|del.|");
        let h = Item::hard_link(b"b", b"a", attrs);
        assert_eq!(n.render(&h, "recv"), "b => a|b|recv|");
        // rsync's log-file default shows what an itemized line does, a
        // deletion's eleven-wide code too.
        let default = OutFormat::parse("%i %n%L").unwrap();
        for item in [&file, &link, &dir, &h, &Item::deleting(b"x\n", true)] {
            assert_eq!(default.render(item, "recv"), item.line());
        }
        let attrs_only = Change {
            time: true,
            ..Change::default()
        };
        assert!(!Item::changed(
            Update::Attrs,
            EntryKind::File,
            &attrs_only,
            b"x",
            b"",
            attrs
        )
        .transferred());
        assert!(file.transferred() && Item::deleting(b"x", true).transferred());
        // A directory whose attributes changed is shown (rsync -v prints
        // `d/` for .d..t......), one unchanged (-ii) is not.
        let dir_attrs = Item::changed(Update::Attrs, EntryKind::Dir, &attrs_only, b"d", b"", attrs);
        assert!(dir_attrs.transferred(), "{}", dir_attrs.line());
        let same = Item::changed(
            Update::Attrs,
            EntryKind::Dir,
            &Change::default(),
            b"d",
            b"",
            attrs,
        );
        assert!(!same.transferred(), "{}", same.line());
        // Without %o or %i a deletion is `deleting %n`, as rsync's.
        let names = OutFormat::parse("%n%L").unwrap();
        assert_eq!(
            names.render_item(&Item::deleting(b"d", true), "recv"),
            "deleting d/"
        );
        assert_eq!(names.render_item(&dir_attrs, "recv"), "d/");
        assert_eq!(
            n.render_item(&Item::deleting(b"x", false), "recv"),
            "x|x|del.|"
        );
        assert_eq!(
            default.render_item(&Item::deleting(b"x", false), "recv"),
            "*deleting   x"
        );
        assert!(OutFormat::parse("%t")
            .unwrap()
            .render(&file, "")
            .starts_with("20"));
        let long = "x".repeat(MAX_FORMAT + 1);
        for bad in [
            "%b",
            "%h %n",
            "50%",
            "%-",
            "%257n",
            "%99999999999999999999n",
            &long,
        ] {
            assert!(OutFormat::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn modes_and_sizes() {
        assert_eq!(mode_string(EntryKind::Dir, 0o2755), "drwxr-sr-x");
        assert_eq!(mode_string(EntryKind::Dir, 0o1777), "drwxrwxrwt");
        assert_eq!(mode_string(EntryKind::File, 0o4644), "-rwSr--r--");
        assert_eq!(mode_string(EntryKind::Fifo, 0), "p---------");
        assert_eq!(with_commas(0), "0");
        assert_eq!(with_commas(999), "999");
        assert_eq!(with_commas(1000), "1,000");
        assert_eq!(with_commas(1_234_567), "1,234,567");
    }
}
