//! Names and messages made safe to print. A file name may hold any byte but
//! `/` and NUL: a newline would split an itemized line in two for a script
//! reading them, and an escape sequence from a hostile peer's names (or its
//! messages) would reach the user's terminal, as scp's did. As rsync's
//! output does, such bytes are shown as `\#ooo` (octal); unlike rsync's
//! default, which escapes every byte above 127 unless `-8`, valid UTF-8 is
//! shown as it is (rsync's `-8` in a UTF-8 locale).

use std::borrow::Cow;
use std::fmt::Write;

/// Whether `c` is shown escaped: a control character (C0 but tab, DEL,
/// C1).
fn control(c: char) -> bool {
    c != '\t' && (c < ' ' || ('\u{7f}'..='\u{9f}').contains(&c))
}

/// Appends each byte of `bytes` as `\#ooo`.
fn push_octal(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        let _ = write!(out, "\\#{b:03o}");
    }
}

/// Whether `s` starts with what reads as an escape, `\#` and three digits:
/// its backslash is then shown escaped, so the output stays unambiguous.
fn looks_escaped(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 5 && b.starts_with(b"\\#") && b[2..5].iter().all(u8::is_ascii_digit)
}

/// A name (or path) as shown to the user: valid UTF-8 as it is, but each
/// byte of a control character, each byte that is not UTF-8, and the
/// backslash of a `\#ooo` already in the name as `\#ooo`, as rsync's.
pub fn escape_name(name: &[u8]) -> Cow<'_, str> {
    // Most names are printable ASCII without a backslash: one pass over the
    // bytes tells (this runs for every file of a transfer).
    if name
        .iter()
        .all(|&b| (b' '..=b'~').contains(&b) && b != b'\\')
    {
        return Cow::Borrowed(std::str::from_utf8(name).expect("ASCII is UTF-8"));
    }
    if let Ok(s) = std::str::from_utf8(name) {
        if !s.contains(|c: char| control(c) || c == '\\') {
            return Cow::Borrowed(s);
        }
    }
    let mut out = String::with_capacity(name.len() + 8);
    for chunk in name.utf8_chunks() {
        let valid = chunk.valid();
        for (i, c) in valid.char_indices() {
            if control(c) || (c == '\\' && looks_escaped(&valid[i..])) {
                push_octal(&mut out, c.encode_utf8(&mut [0; 4]).as_bytes());
            } else {
                out.push(c);
            }
        }
        push_octal(&mut out, chunk.invalid());
    }
    Cow::Owned(out)
}

/// Text from a peer (an itemized line, an error) as shown to the user:
/// control characters as `\#ooo`, the rest as it is. (Names in it were
/// escaped where they were made; this leaves those escapes alone.)
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.contains(control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if control(c) {
            push_octal(&mut out, c.encode_utf8(&mut [0; 4]).as_bytes());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_show_control_and_non_utf8_bytes_as_octal() {
        for (name, shown) in [
            (&b"plain/name.txt"[..], "plain/name.txt"),
            ("café/日本".as_bytes(), "café/日本"),
            (b"two\nlines", "two\\#012lines"),
            (b"tab\there", "tab\there"),
            (b"\x1b[31mred", "\\#033[31mred"),
            (b"del\x7f", "del\\#177"),
            // U+009B, the one-byte CSI, as UTF-8.
            (b"c1\xc2\x9b", "c1\\#302\\#233"),
            (b"latin1 caf\xe9", "latin1 caf\\#351"),
            (b"cut \xe6\x97", "cut \\#346\\#227"),
            (b"back\\slash", "back\\slash"),
            (b"looks \\#012 escaped", "looks \\#134#012 escaped"),
            (b"short \\#01", "short \\#01"),
            (b"", ""),
        ] {
            assert_eq!(escape_name(name), shown, "{name:?}");
        }
        assert!(matches!(escape_name(b"a/b"), Cow::Borrowed(_)));
    }

    #[test]
    fn peer_text_shows_control_characters_as_octal_and_keeps_escapes() {
        assert_eq!(escape_controls(">f+++++++++ a"), ">f+++++++++ a");
        assert_eq!(
            escape_controls("a\x1b]0;title\x07"),
            "a\\#033]0;title\\#007"
        );
        assert_eq!(escape_controls("x\r\ny"), "x\\#015\\#012y");
        assert_eq!(escape_controls("kept \\#012"), "kept \\#012");
        assert_eq!(escape_controls("\u{9b}2J"), "\\#302\\#2332J");
    }
}
