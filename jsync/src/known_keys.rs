//! Known-keys files: ssh-style public-key pinning on top of the CA check.
//!
//! The CA check alone trusts every certificate `ca.key` ever signed. A
//! known-keys file narrows that down, like ssh's `known_hosts` /
//! `authorized_keys`: the server keeps `known_client_keys`, a client keeps
//! `known_server_keys`, both in the config directory. What the file's
//! existence and permissions mean:
//!
//! * absent: only the CA check ([`TrustMode::CaOnly`]);
//! * writable: trust on first use ([`TrustMode::Tofu`]) — a new key that passed
//!   the CA check is appended with a comment saying when and from where it was
//!   first seen;
//! * read-only (no write bit at all, `mode & 0o222 == 0`, tested on the mode so
//!   that it also holds for root, who could write anyway): lockdown
//!   ([`TrustMode::Lockdown`]) — a key that is not listed is refused during the
//!   handshake.
//!
//! Keys are matched by public key, never by address or certificate, so a
//! re-issued certificate for the same key still matches. A peer whose
//! recorded comment names it (`from server HOST:PORT`) but which presents
//! another key is said loudly, as ssh's "REMOTE HOST IDENTIFICATION HAS
//! CHANGED", with the file and line of the key on record: recorded all
//! the same when the file is writable, refused when it is read-only. The format is one key
//! per line, `ed25519 <base64 of the raw 32-byte key> <comment>`; keys of other
//! algorithms are written `spki <base64 of the SubjectPublicKeyInfo DER>
//! <comment>`. `#` comments and blank lines are allowed. The file is re-read on
//! every check, so edits (and `chmod`) take effect for the next handshake without
//! a restart, as with ssh.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;

use crate::identity::fingerprint_spki;

/// DER prefix of an ed25519 SubjectPublicKeyInfo (RFC 8410): the 32-byte key follows.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// How a known-keys file is used; follows from whether it exists and its permission bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustMode {
    /// No file: only the CA check.
    CaOnly,
    /// Writable file: new keys are recorded (trust on first use).
    Tofu,
    /// Read-only file: keys not listed are refused.
    Lockdown,
}

/// The outcome of a successful [`KnownKeys::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyVerdict {
    /// The key is listed.
    Known,
    /// The key was not listed and has been appended (trust on first use).
    Recorded,
    /// There is no file: the key was not checked beyond the CA.
    Unchecked,
}

/// Errors of known-keys files. Every message names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KnownKeysError {
    /// The file exists but cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A new key could not be appended (the key is then refused: fail closed).
    #[error("cannot record a new key in {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A line cannot be parsed.
    #[error("{path}:{line}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// Lockdown: the key is not listed in the read-only file.
    #[error("key {fingerprint} is not in read-only {path} (lockdown)")]
    NotAllowed {
        /// Fingerprint of the refused key (see [`fingerprint_spki`]).
        fingerprint: String,
        /// The file.
        path: PathBuf,
    },
}

/// A refusal remembered for reporting (see [`KnownKeys::last_refusal`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Fingerprint of the refused key.
    pub fingerprint: String,
    /// Who presented it (as passed to [`KnownKeys::check`]).
    pub who: String,
    /// The line an administrator would add to the file to allow the key.
    pub line: String,
}

/// A known-keys file. `Send + Sync`: one value is shared by all handshakes.
#[derive(Debug)]
pub struct KnownKeys {
    path: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    mode: TrustMode,
    last_refusal: Option<Refusal>,
}

/// One key as it is written in the file: its type word and its base64 key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KeyId {
    kind: &'static str,
    key: Vec<u8>,
}

impl KeyId {
    fn from_spki(spki_der: &[u8]) -> KeyId {
        match spki_der.strip_prefix(&ED25519_SPKI_PREFIX[..]) {
            Some(raw) if raw.len() == 32 => KeyId {
                kind: "ed25519",
                key: raw.to_vec(),
            },
            _ => KeyId {
                kind: "spki",
                key: spki_der.to_vec(),
            },
        }
    }
}

impl KnownKeys {
    /// Opens (reads and validates) the file at `path`; an absent file means [`TrustMode::CaOnly`].
    pub fn open(path: &Path) -> Result<KnownKeys, KnownKeysError> {
        let (mode, _) = read(path)?;
        Ok(KnownKeys {
            path: path.to_path_buf(),
            state: Mutex::new(State {
                mode,
                last_refusal: None,
            }),
        })
    }

    /// The trust mode as of the last [`open`](Self::open) or [`check`](Self::check).
    pub fn mode(&self) -> TrustMode {
        self.lock().mode
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The last key refused by lockdown, for reporting after a failed handshake
    /// (the handshake error itself carries no detail).
    pub fn last_refusal(&self) -> Option<Refusal> {
        self.lock().last_refusal.clone()
    }

    /// The line that lists `spki_der` in a known-keys file, with a comment saying
    /// when and from whom (`who`) it was first seen.
    pub fn line_for(spki_der: &[u8], who: &str) -> String {
        key_line(
            spki_der,
            &format!("first seen {} from {}", utc_timestamp(), who.trim()),
        )
    }

    /// Checks a peer's public key (the SubjectPublicKeyInfo DER of a certificate
    /// that already passed the CA check). Re-reads the file first. `who` names the
    /// peer for the comment of a recorded key and for the log.
    pub fn check(&self, spki_der: &[u8], who: &str) -> Result<KeyVerdict, KnownKeysError> {
        let mut state = self.lock();
        let (mode, keys) = read(&self.path)?;
        state.mode = mode;
        if mode == TrustMode::CaOnly {
            return Ok(KeyVerdict::Unchecked);
        }
        let id = KeyId::from_spki(spki_der);
        if keys.iter().any(|k| k.id == id) {
            return Ok(KeyVerdict::Known);
        }
        let fingerprint = fingerprint_spki(spki_der);
        let line = Self::line_for(spki_der, who);
        let changed = recorded_for(&keys, who).map(|k| {
            format!(
                "{who} presents key {fingerprint}, not the key {}:{} records for it: \
                 if it was not given a new key, someone may be impersonating it",
                self.path.display(),
                k.line
            )
        });
        if mode == TrustMode::Lockdown {
            match &changed {
                Some(changed) => tracing::warn!(
                    "KEY CHANGED: refusing it: {changed}; to allow the new key, replace \
                     that line with: {line}"
                ),
                None => tracing::warn!(
                    "refusing {who}: key {fingerprint} is not in read-only {} (lockdown); \
                     to allow it, add this line: {line}",
                    self.path.display()
                ),
            }
            state.last_refusal = Some(Refusal {
                fingerprint: fingerprint.clone(),
                who: who.to_string(),
                line,
            });
            return Err(KnownKeysError::NotAllowed {
                fingerprint,
                path: self.path.clone(),
            });
        }
        self.append(&line)?;
        // Said by default, as ssh says "Permanently added ... to the list of
        // known hosts": trust on first use is only as good as someone noticing.
        match changed {
            Some(changed) => tracing::warn!(
                "KEY CHANGED: {changed}; recorded it beside the old one, as {} is \
                 writable (make it read-only to refuse keys it does not list)",
                self.path.display()
            ),
            None => tracing::warn!(
                "recorded new key {fingerprint} of {who} in {}",
                self.path.display()
            ),
        }
        Ok(KeyVerdict::Recorded)
    }

    /// Appends one line with a single `write` in append mode, so that concurrent
    /// writers (another process) do not interleave within a line. Never creates the file.
    fn append(&self, line: &str) -> Result<(), KnownKeysError> {
        let werr = |source| KnownKeysError::Write {
            path: self.path.clone(),
            source,
        };
        let mut f = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(werr)?;
        let len = f.metadata().map_err(werr)?.len();
        let mut text = String::new();
        if len > 0 && !ends_with_newline(&self.path) {
            text.push('\n');
        }
        text.push_str(line);
        text.push('\n');
        f.write_all(text.as_bytes()).map_err(werr)?;
        f.sync_data().map_err(werr)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves no broken invariant behind.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn ends_with_newline(path: &Path) -> bool {
    fs::read(path)
        .map(|b| b.last() == Some(&b'\n'))
        .unwrap_or(true)
}

/// The most a known-keys file may hold: about 150,000 keys, as trust on
/// first use adds a line per new one (and it is read at each handshake).
const MAX_FILE: u64 = 16 << 20;

/// A key the file lists, with its comment and where it is.
#[derive(Debug)]
struct Listed {
    id: KeyId,
    comment: String,
    /// 1-based line number.
    line: usize,
}

/// Another key on record for the same server `who` (the latest), by the
/// comment a first use wrote; never for a client, whose port differs each
/// time (and a NAT may give another client the same one).
fn recorded_for<'a>(keys: &'a [Listed], who: &str) -> Option<&'a Listed> {
    let seen_as = format!("from {}", who.trim());
    if !who.trim_start().starts_with("server ") {
        return None;
    }
    keys.iter().rev().find(|k| k.comment.ends_with(&seen_as))
}

/// Reads the file: its trust mode and the keys it lists. A symlink to
/// nothing is an error, not an absent file (which would trust the CA
/// alone), and so is anything but a regular file of at most [`MAX_FILE`]
/// bytes ([`crate::identity::read_config_file`]).
fn read(path: &Path) -> Result<(TrustMode, Vec<Listed>), KnownKeysError> {
    let rerr = |source| KnownKeysError::Read {
        path: path.to_path_buf(),
        source,
    };
    // (The mode is the open file's: one look at the file per check.)
    let (text, meta) = match crate::identity::read_config_file(path, MAX_FILE) {
        Ok(read) => read,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if fs::symlink_metadata(path).is_ok() {
                let why = "a symlink to nothing (a file not there would trust the CA alone)";
                return Err(rerr(io::Error::new(io::ErrorKind::NotFound, why)));
            }
            return Ok((TrustMode::CaOnly, vec![]));
        }
        Err(e) => return Err(rerr(e)),
    };
    let mode = if meta.permissions().mode() & 0o222 == 0 {
        TrustMode::Lockdown
    } else {
        TrustMode::Tofu
    };
    let text =
        String::from_utf8(text).map_err(|e| rerr(io::Error::new(io::ErrorKind::InvalidData, e)))?;
    Ok((mode, parse(path, &text)?))
}

/// A line of a known-keys file for the key of `spki_der`: `KIND BASE64
/// COMMENT` (`ed25519` and the raw key, or `spki` and the whole DER), its
/// comment's control characters made spaces so it stays one line.
pub(crate) fn key_line(spki_der: &[u8], comment: &str) -> String {
    let id = KeyId::from_spki(spki_der);
    let comment: String = comment
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let line = format!("{} {} {}", id.kind, B64.encode(&id.key), comment.trim());
    line.trim_end().to_owned()
}

fn parse(path: &Path, text: &str) -> Result<Vec<Listed>, KnownKeysError> {
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let id = parse_line(line).map_err(|reason| KnownKeysError::Malformed {
            path: path.to_path_buf(),
            line: i + 1,
            reason,
        })?;
        // (The comment: what follows the type and the key.)
        let comment = line.splitn(3, char::is_whitespace).nth(2).unwrap_or("");
        keys.push(Listed {
            id,
            comment: comment.trim().to_string(),
            line: i + 1,
        });
    }
    Ok(keys)
}

/// One key line, `KIND BASE64 [COMMENT]` (not blank, not a comment); also
/// what `jsrv sign` reads ([`crate::identity::sign_client`]).
fn parse_line(line: &str) -> Result<KeyId, String> {
    let mut words = line.split_whitespace();
    let kind = words.next().unwrap_or_default();
    let Some(b64) = words.next() else {
        return Err(format!(
            "expected `ed25519 <base64 key> <comment>`, found only `{kind}`"
        ));
    };
    let key = B64
        .decode(b64)
        .map_err(|e| format!("the key is not valid base64: {e}"))?;
    let kind = match kind {
        "ed25519" => {
            if key.len() != 32 {
                return Err(format!(
                    "an ed25519 key is 32 bytes, this one is {}",
                    key.len()
                ));
            }
            "ed25519"
        }
        "spki" => {
            if key.first() != Some(&0x30) {
                return Err("an spki key must be a DER SubjectPublicKeyInfo".into());
            }
            "spki"
        }
        other => {
            return Err(format!(
                "unknown key type `{other}` (expected `ed25519` or `spki`)"
            ))
        }
    };
    Ok(KeyId { kind, key })
}

/// The raw ed25519 key of a key line ([`parse_line`]); a line of another
/// kind is refused.
pub(crate) fn ed25519_of_line(line: &str) -> Result<[u8; 32], String> {
    let id = parse_line(line)?;
    match id.key.try_into() {
        Ok(key) if id.kind == "ed25519" => Ok(key),
        _ => Err(format!("an `{}` key, not an ed25519 one", id.kind)),
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` for now.
fn utc_timestamp() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (y, mo, d, h, mi, s) = crate::civil::utc_civil(i64::try_from(secs).unwrap_or(0));
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ed_spki(byte: u8) -> Vec<u8> {
        let mut v = ED25519_SPKI_PREFIX.to_vec();
        v.extend([byte; 32]);
        v
    }

    fn set_mode(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn absent_file_is_ca_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_client_keys");
        let kk = KnownKeys::open(&path).unwrap();
        assert_eq!(kk.mode(), TrustMode::CaOnly);
        assert_eq!(
            kk.check(&ed_spki(1), "client").unwrap(),
            KeyVerdict::Unchecked
        );
        assert!(!path.exists(), "CaOnly never creates the file");
    }

    #[test]
    fn tofu_records_then_knows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_client_keys");
        fs::write(&path, "# my clients\n\n").unwrap();
        let kk = KnownKeys::open(&path).unwrap();
        assert_eq!(kk.mode(), TrustMode::Tofu);
        let verdict = kk.check(&ed_spki(7), "client 127.0.0.1:5555").unwrap();
        assert_eq!(verdict, KeyVerdict::Recorded);
        assert_eq!(kk.check(&ed_spki(7), "client").unwrap(), KeyVerdict::Known);
        let text = fs::read_to_string(&path).unwrap();
        let line = text.lines().nth(2).unwrap();
        assert!(
            line.starts_with(&format!("ed25519 {} first seen 2", B64.encode([7u8; 32]))),
            "{line}"
        );
        assert!(line.ends_with("from client 127.0.0.1:5555"), "{line}");
        // Another key: recorded too; a fresh open sees both.
        assert_eq!(kk.check(&ed_spki(8), "x").unwrap(), KeyVerdict::Recorded);
        let kk2 = KnownKeys::open(&path).unwrap();
        assert_eq!(kk2.check(&ed_spki(7), "y").unwrap(), KeyVerdict::Known);
        assert_eq!(kk2.check(&ed_spki(8), "y").unwrap(), KeyVerdict::Known);
    }

    #[test]
    fn a_key_on_record_is_found_for_a_server_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let lines = [
            KnownKeys::line_for(&ed_spki(1), "server h:1"),
            KnownKeys::line_for(&ed_spki(2), "client 10.0.0.1:5000"),
            KnownKeys::line_for(&ed_spki(3), "server h:1"),
        ];
        fs::write(&path, lines.join("\n")).unwrap();
        let (_, keys) = read(&path).unwrap();
        // (The latest for the address.)
        assert_eq!(recorded_for(&keys, "server h:1").map(|k| k.line), Some(3));
        assert!(recorded_for(&keys, "server h:10").is_none());
        assert!(recorded_for(&keys, "client 10.0.0.1:5000").is_none());
    }

    #[test]
    fn tofu_appends_newline_if_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let first = KnownKeys::line_for(&ed_spki(1), "a");
        fs::write(&path, &first).unwrap(); // no trailing newline
        let kk = KnownKeys::open(&path).unwrap();
        assert_eq!(kk.check(&ed_spki(2), "b").unwrap(), KeyVerdict::Recorded);
        assert_eq!(kk.check(&ed_spki(1), "b").unwrap(), KeyVerdict::Known);
        assert_eq!(fs::read_to_string(&path).unwrap().lines().count(), 2);
    }

    #[test]
    fn lockdown_refuses_unlisted_and_accepts_listed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_server_keys");
        fs::write(&path, KnownKeys::line_for(&ed_spki(1), "server") + "\n").unwrap();
        set_mode(&path, 0o444);
        let kk = KnownKeys::open(&path).unwrap();
        assert_eq!(kk.mode(), TrustMode::Lockdown);
        assert_eq!(kk.check(&ed_spki(1), "server").unwrap(), KeyVerdict::Known);
        let err = kk.check(&ed_spki(2), "server").unwrap_err();
        let fp = fingerprint_spki(&ed_spki(2));
        assert!(
            matches!(&err, KnownKeysError::NotAllowed { fingerprint, path: p } if *fingerprint == fp && p == &path)
        );
        assert_eq!(
            err.to_string(),
            format!("key {fp} is not in read-only {} (lockdown)", path.display())
        );
        let refusal = kk.last_refusal().unwrap();
        assert_eq!(refusal.fingerprint, fp);
        assert!(refusal.line.starts_with("ed25519 "));
        // Nothing was appended, even though root could write the file.
        assert_eq!(fs::read_to_string(&path).unwrap().lines().count(), 1);
        // chmod takes effect at the next check.
        set_mode(&path, 0o644);
        assert_eq!(
            kk.check(&ed_spki(2), "server").unwrap(),
            KeyVerdict::Recorded
        );
        assert_eq!(kk.mode(), TrustMode::Tofu);
    }

    #[test]
    fn non_ed25519_keys_use_spki_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        fs::write(&path, "").unwrap();
        let kk = KnownKeys::open(&path).unwrap();
        let spki = vec![0x30, 0x03, 0x02, 0x01, 0x05];
        assert_eq!(kk.check(&spki, "p").unwrap(), KeyVerdict::Recorded);
        assert!(fs::read_to_string(&path)
            .unwrap()
            .starts_with("spki MAMCAQU= "));
        assert_eq!(kk.check(&spki, "p").unwrap(), KeyVerdict::Known);
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_client_keys");
        let good = KnownKeys::line_for(&ed_spki(1), "a");
        for (text, line, what) in [
            (
                format!("# c\n{good}\nrsa AAAA x\n"),
                3,
                "unknown key type `rsa`",
            ),
            (format!("\n\ned25519\n{good}"), 3, "found only `ed25519`"),
            ("ed25519 !!!! c\n".to_string(), 1, "not valid base64"),
            ("ed25519 AAAA c\n".to_string(), 1, "32 bytes, this one is 3"),
        ] {
            fs::write(&path, text).unwrap();
            let err = KnownKeys::open(&path).unwrap_err();
            let msg = err.to_string();
            assert!(
                matches!(err, KnownKeysError::Malformed { line: l, .. } if l == line),
                "{msg}"
            );
            assert!(
                msg.starts_with(&format!("{}:{line}: ", path.display())),
                "{msg}"
            );
            assert!(msg.contains(what), "{msg}");
        }
    }
}
