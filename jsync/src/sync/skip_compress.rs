//! Which files the sender leaves uncompressed (rsync's `--skip-compress`):
//! those whose names end in a suffix of formats that are compressed already
//! (`.gz`, `.jpg`, `.mp4`, ...). Compressing them again spends CPU on both
//! sides for nothing; the frame would go uncompressed anyway, after the
//! attempt.

use std::fmt;

/// rsync's default list of formats compressed already (as rsync 3.2's man
/// page gives it; 3.1 had a shorter one, and 3.2 no longer applies any).
const DEFAULT: &str = "3g2/3gp/7z/aac/ace/apk/avi/bz2/deb/dmg/ear/f4v/flac/flv/gpg/gz/iso/\
jar/jpeg/jpg/lrz/lz/lz4/lzma/lzo/m1a/m1v/m2a/m2ts/m2v/m4a/m4b/m4p/m4r/m4v/mka/mkv/mov/mp1/\
mp2/mp3/mp4/mpa/mpeg/mpg/mpv/mts/odb/odf/odg/odi/odm/odp/ods/odt/oga/ogg/ogm/ogv/ogx/opus/\
otg/oth/otp/ots/ott/oxt/png/qt/rar/rpm/rz/rzip/spx/squashfs/sxc/sxd/sxg/sxm/sxw/sz/tbz/tbz2/\
tgz/tlz/ts/txz/tzo/vob/war/webm/webp/xz/z/zip/zst";

/// One position of a suffix: a byte, or a class of bytes (`[ch]`).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Elem {
    Byte(u8),
    Class(Vec<u8>),
}

impl Elem {
    fn matches(&self, b: u8) -> bool {
        let b = b.to_ascii_lowercase();
        match self {
            Elem::Byte(x) => *x == b,
            Elem::Class(set) => set.contains(&b),
        }
    }
}

/// The suffixes whose files go uncompressed, as rsync's `--skip-compress`
/// took them (rsync 3.1; later rsyncs take the option but no longer apply
/// it): separated by `/`, without the dot, matched without regard to ASCII
/// case against what follows the last dot of the file's name (`x.tar.gz`
/// matches `gz`; a name that only starts with a dot, `.gz`, has no
/// suffix); `[...]` is a class of letters (`mp[34]`), and nothing else is
/// special. The default is rsync's list; an empty list compresses every
/// file.
#[derive(Clone, PartialEq, Eq)]
pub struct SkipCompress {
    /// As given, for [`fmt::Display`] (and so the service argument).
    text: String,
    suffixes: Vec<Vec<Elem>>,
}

impl Default for SkipCompress {
    fn default() -> Self {
        SkipCompress::parse(DEFAULT).expect("the default list parses")
    }
}

impl fmt::Debug for SkipCompress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SkipCompress({:?})", self.text)
    }
}

impl fmt::Display for SkipCompress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl SkipCompress {
    /// Parses a list (`gz/jpg/mp[34]`; empty for none). An unclosed `[`,
    /// an empty class, or a suffix given with its leading dot or holding
    /// one (`tar.gz`) is refused (rsync would take them as letters, which
    /// no suffix after a name's last dot matches).
    pub fn parse(text: &str) -> Result<SkipCompress, String> {
        let mut suffixes = Vec::new();
        for part in text.split('/').filter(|p| !p.is_empty()) {
            let bad = |why: &str| format!("--skip-compress: {part:?}: {why}");
            if part.starts_with('.') {
                return Err(bad("suffixes are given without their dot"));
            }
            if let Some((_, last)) = part.rsplit_once('.') {
                let hint = match last.is_empty() || last.contains(['[', ']']) {
                    true => String::new(),
                    false => format!(" (write {last})"),
                };
                return Err(bad(&format!(
                    "a suffix is what follows a name's last dot{hint}"
                )));
            }
            let mut elems = Vec::new();
            let mut bytes = part.bytes();
            while let Some(b) = bytes.next() {
                if b == b'[' {
                    let mut set = Vec::new();
                    loop {
                        match bytes.next() {
                            Some(b']') => break,
                            Some(c) => set.push(c.to_ascii_lowercase()),
                            None => return Err(bad("a '[' without its ']'")),
                        }
                    }
                    if set.is_empty() {
                        return Err(bad("an empty '[]'"));
                    }
                    elems.push(Elem::Class(set));
                } else {
                    elems.push(Elem::Byte(b.to_ascii_lowercase()));
                }
            }
            suffixes.push(elems);
        }
        Ok(SkipCompress {
            text: text.to_owned(),
            suffixes,
        })
    }

    /// Whether the file at `path` (its last component counts) goes
    /// uncompressed.
    pub fn skips(&self, path: &[u8]) -> bool {
        if self.suffixes.is_empty() {
            return false;
        }
        let name = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
        let Some(dot) = name.iter().rposition(|&b| b == b'.').filter(|&i| i > 0) else {
            return false;
        };
        let suffix = &name[dot + 1..];
        self.suffixes
            .iter()
            .any(|s| s.len() == suffix.len() && s.iter().zip(suffix).all(|(e, &b)| e.matches(b)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_list_skips_compressed_formats_in_any_case() {
        let d = SkipCompress::default();
        for (name, skipped) in [
            (&b"a.gz"[..], true),
            (b"dir/photo.JPG", true),
            (b"x.tar.gz", true),
            (b"movie.Mp4", true),
            (b".hidden.gz", true),
            (b"v.webm", true),
            (b"a.c", false),
            (b"gz", false),
            (b"x.gz.txt", false),
            (b"gz.dir/readme", false),
            (b".gz", false),
            (b"a.gz.", false),
            (b"a.gzz", false),
            (b"Makefile", false),
        ] {
            assert_eq!(d.skips(name), skipped, "{}", name.escape_ascii());
        }
    }

    #[test]
    fn lists_parse_as_rsyncs() {
        let l = SkipCompress::parse("mp[34]/Z").unwrap();
        assert!(l.skips(b"a.mp3") && l.skips(b"a.MP4") && !l.skips(b"a.mp5"));
        // Only what follows the last dot counts, as in rsync: a suffix
        // with a dot in it would never match.
        assert!(!l.skips(b"a.gz"));
        let e = SkipCompress::parse("mp3/tar.gz").unwrap_err();
        assert!(e.contains("\"tar.gz\"") && e.contains("(write gz)"), "{e}");
        for odd in ["gz.", "[.x]"] {
            let e = SkipCompress::parse(odd).unwrap_err();
            assert!(e.ends_with("last dot"), "{e}");
        }
        assert!(l.skips(b"a.z"), "case-blind");
        assert_eq!(l.to_string(), "mp[34]/Z");
        // Empty: every file is compressed; empty parts are passed over.
        let none = SkipCompress::parse("").unwrap();
        assert!(!none.skips(b"a.gz"));
        assert!(SkipCompress::parse("gz//jpg/").unwrap().skips(b"a.jpg"));
        // `*` and `?` are letters like any other.
        let star = SkipCompress::parse("*").unwrap();
        assert!(star.skips(b"a.*") && !star.skips(b"a.gz"));
        for bad in ["mp[34", "a[]", ".gz"] {
            assert!(SkipCompress::parse(bad).is_err(), "{bad}");
        }
    }
}
