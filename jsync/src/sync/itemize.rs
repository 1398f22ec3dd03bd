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
//!   checksum or symlink target differs), `s` size, `t` modification time, `p`
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
    pub perms: bool,
    pub owner: bool,
    pub group: bool,
    pub xattrs: bool,
}

impl Change {
    /// Whether anything changed at all.
    pub(crate) fn any(&self) -> bool {
        self.new
            || self.content
            || self.size
            || self.time
            || self.perms
            || self.owner
            || self.group
            || self.xattrs
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
    }
}

/// One itemized line; `target` is a symlink's target (shown after `->`).
pub(crate) fn line(
    update: Update,
    kind: EntryKind,
    c: &Change,
    path: &[u8],
    target: &[u8],
) -> String {
    let mut s = String::with_capacity(12 + path.len());
    s.push(match update {
        Update::Received => '>',
        Update::Created => 'c',
        Update::Attrs => '.',
    });
    s.push(kind_letter(kind));
    if c.new {
        s.push_str("+++++++++");
    } else {
        for (on, letter) in [
            (c.content, 'c'),
            (c.size, 's'),
            (c.time, 't'),
            (c.perms, 'p'),
            (c.owner, 'o'),
            (c.group, 'g'),
            (false, 'u'),
            (false, 'a'),
            (c.xattrs, 'x'),
        ] {
            s.push(if on { letter } else { '.' });
        }
    }
    s.push(' ');
    s.push_str(&shown(path, kind));
    if kind == EntryKind::Symlink {
        s.push_str(" -> ");
        s.push_str(&String::from_utf8_lossy(target));
    }
    s
}

/// The line for a name made a hard link to an earlier one (rsync's `=>`).
pub(crate) fn hard_link(path: &[u8], leader: &[u8]) -> String {
    format!(
        "hf+++++++++ {} => {}",
        shown(path, EntryKind::File),
        shown(leader, EntryKind::File)
    )
}

/// The line for a deletion.
pub(crate) fn deleting(path: &[u8], is_dir: bool) -> String {
    let kind = if is_dir {
        EntryKind::Dir
    } else {
        EntryKind::File
    };
    format!("*deleting   {}", shown(path, kind))
}

/// A path for display: lossy UTF-8, `.` for the base, `/` after directories.
fn shown(path: &[u8], kind: EntryKind) -> String {
    let mut s = if path.is_empty() {
        ".".to_string()
    } else {
        String::from_utf8_lossy(path).into_owned()
    };
    if kind == EntryKind::Dir {
        s.push('/');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let p = Change {
            time: true,
            perms: true,
            xattrs: true,
            ..Change::default()
        };
        assert!(p.any() && !Change::default().any());
        assert_eq!(
            line(Update::Attrs, EntryKind::Dir, &p, b"", b""),
            ".d..tp....x ./"
        );
        assert_eq!(deleting(b"old", true), "*deleting   old/");
        assert_eq!(hard_link(b"b", b"a"), "hf+++++++++ b => a");
        assert_eq!(deleting(b"f\xff", false), "*deleting   f\u{fffd}");
    }
}
