//! Identities: the private CA and the server/client key pairs it signs.
//!
//! jsync authenticates both ends of every connection with X.509 certificates
//! issued by a small private certificate authority that `init` creates in the
//! config directory (like `ssh-keygen`, but with a CA so that the server and
//! every client can check each other without a name service). This module
//! creates those files safely (private keys are created with mode 0600 in one
//! step and are never overwritten), loads them back for the TLS layer and
//! computes ssh-style fingerprints for people to compare. A client may
//! instead have a key of its own ([`keygen`]), whose public line the CA's
//! holder signs ([`sign_client`]), as with ssh keys.
//!
//! Layout of a config directory (default `$JSYNC_CONFIG_DIR`, else
//! `~/.config/jsync`):
//!
//! | file | who needs it | secret |
//! | --- | --- | --- |
//! | `ca.key` | only `init` and [`sign_client`], to issue certificates | yes |
//! | `ca.crt` | server and clients | no |
//! | `server.crt`, `server.key` | the server | key: yes |
//! | `client.crt`, `client.key` | each client machine | key: yes |
//! | `known_client_keys` | the server (optional) | no |
//! | `known_server_keys` | a client (optional) | no |

use std::fmt;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The CA certificate (public; needed by the server and every client).
pub const CA_CERT: &str = "ca.crt";
/// The CA private key (secret; needed only to issue certificates).
pub const CA_KEY: &str = "ca.key";
/// The server's certificate.
pub const SERVER_CERT: &str = "server.crt";
/// The server's private key.
pub const SERVER_KEY: &str = "server.key";
/// The client's certificate.
pub const CLIENT_CERT: &str = "client.crt";
/// The client's private key.
pub const CLIENT_KEY: &str = "client.key";
/// On the server: the client keys it knows (see [`crate::known_keys`]).
pub const KNOWN_CLIENT_KEYS: &str = "known_client_keys";
/// On a client: the server keys it knows (see [`crate::known_keys`]).
pub const KNOWN_SERVER_KEYS: &str = "known_server_keys";

/// Environment variable that overrides the default config directory.
pub const CONFIG_DIR_ENV: &str = "JSYNC_CONFIG_DIR";

/// Mode of private key files.
const KEY_MODE: u32 = 0o600;
/// Mode of certificate files (public data).
const CERT_MODE: u32 = 0o644;
/// Mode of a config directory that `init` creates.
const DIR_MODE: u32 = 0o700;

/// `$JSYNC_CONFIG_DIR` if set and not empty, else `~/.config/jsync`.
pub fn default_config_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(CONFIG_DIR_ENV) {
        if !dir.is_empty() {
            return PathBuf::from(dir);
        }
    }
    #[allow(deprecated)] // not deprecated any more on current Rust; fine on unix
    let home = std::env::home_dir().unwrap_or_else(|| PathBuf::from("."));
    home.join(".config").join("jsync")
}

/// Which end of a connection an identity (or an error message) belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The daemon (`jsrv`).
    Server,
    /// A client (`jcp`).
    Client,
}

impl Role {
    /// `"server"` or `"client"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Client => "client",
        }
    }

    /// The other end.
    pub fn peer(self) -> Role {
        match self {
            Role::Server => Role::Client,
            Role::Client => Role::Server,
        }
    }

    /// File names of this role's certificate and key.
    pub fn files(self) -> (&'static str, &'static str) {
        match self {
            Role::Server => (SERVER_CERT, SERVER_KEY),
            Role::Client => (CLIENT_CERT, CLIENT_KEY),
        }
    }

    /// The known-keys file in which this role records its *peers'* keys.
    pub fn known_keys_file(self) -> &'static str {
        match self {
            Role::Server => KNOWN_CLIENT_KEYS,
            Role::Client => KNOWN_SERVER_KEYS,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Errors while creating or loading identity files. Every message names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The config directory could not be created.
    #[error("cannot create config directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A file could not be read; `hint` says what to do if it is missing.
    #[error("cannot read {path}: {source}{hint}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
        /// Empty, or a parenthesised hint starting with a space.
        hint: String,
    },
    /// A new file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A file does not hold what it should.
    #[error("{path} is not a valid {what}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// "PEM private key", "PEM certificate", ...
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A private key file is readable or writable by group or others.
    #[error(
        "permissions {mode:04o} for {path} are too open: a private key must not be accessible \
         by group or others (run `chmod 600 {path}`)"
    )]
    KeyTooOpen {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A config directory, key or certificate that another user could
    /// replace (sshd's StrictModes): whoever could, could be trusted.
    #[error("{path}: {why}: another user could replace the keys and certificates jsync trusts")]
    NotPrivate {
        /// The directory or file.
        path: PathBuf,
        /// "writable by group or others (mode 0777; run `chmod go-w PATH`)", ...
        why: String,
    },
    /// A certificate does not carry the public key of its key file.
    #[error("{cert} does not belong to {key}: their public keys differ")]
    KeyMismatch {
        /// The certificate.
        cert: PathBuf,
        /// The key.
        key: PathBuf,
    },
    /// A certificate is not a valid certificate of its role issued by the CA.
    #[error("{cert} is not a valid {role} certificate issued by {ca}: {reason}")]
    NotIssuedByCa {
        /// The certificate.
        cert: PathBuf,
        /// The CA certificate.
        ca: PathBuf,
        /// Server or client.
        role: Role,
        /// What the verifier said.
        reason: String,
    },
    /// `init` would have to sign a certificate but the CA key is not there.
    #[error("cannot issue {cert}: {ca_key} is missing (the CA's private key is needed to sign certificates; {ca_cert} exists, so a new CA is not made)")]
    NoCaKey {
        /// The certificate that needed signing.
        cert: PathBuf,
        /// The missing CA key.
        ca_key: PathBuf,
        /// The existing CA certificate.
        ca_cert: PathBuf,
    },
    /// A certificate exists but its private key does not.
    #[error("{cert} exists but {key} does not; remove {cert} to make a new key pair")]
    OrphanCert {
        /// The certificate.
        cert: PathBuf,
        /// The missing key.
        key: PathBuf,
    },
    /// Key generation or signing failed.
    #[error("cannot create {path}: {reason}")]
    Generate {
        /// The file being created.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// What `init` did with one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileAction {
    /// The file did not exist and was created (a new key, or a certificate for a new key).
    Created,
    /// A certificate was issued for a key that already existed.
    Issued,
    /// The file existed and was kept unchanged.
    Kept,
    /// The file does not exist and was not needed (only `ca.key`, kept offline).
    Absent,
}

impl fmt::Display for FileAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileAction::Created => "created",
            FileAction::Issued => "issued for the existing key",
            FileAction::Kept => "kept",
            FileAction::Absent => "absent (not needed)",
        })
    }
}

/// One line of an [`InitReport`].
#[derive(Debug, Clone)]
pub struct FileReport {
    /// File name inside the config directory.
    pub name: &'static str,
    /// Full path.
    pub path: PathBuf,
    /// What happened.
    pub action: FileAction,
}

/// What [`init`] did, the fingerprints of the three public keys and which files go where.
#[derive(Debug, Clone)]
pub struct InitReport {
    /// The config directory.
    pub dir: PathBuf,
    /// Every identity file, in the order ca, server, client.
    pub files: Vec<FileReport>,
    /// Fingerprint of the CA's public key.
    pub ca_fingerprint: String,
    /// Fingerprint of the server's public key.
    pub server_fingerprint: String,
    /// Fingerprint of the client's public key.
    pub client_fingerprint: String,
}

impl InitReport {
    /// The action taken for `name` (e.g. [`CA_KEY`]).
    pub fn action(&self, name: &str) -> Option<FileAction> {
        self.files.iter().find(|f| f.name == name).map(|f| f.action)
    }

    /// True if nothing was created or issued.
    pub fn unchanged(&self) -> bool {
        self.files
            .iter()
            .all(|f| matches!(f.action, FileAction::Kept | FileAction::Absent))
    }
}

impl fmt::Display for InitReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "jsync identity in {}:", self.dir.display())?;
        for file in &self.files {
            writeln!(f, "  {:<11} {}", file.name, file.action)?;
        }
        writeln!(f, "Public key fingerprints:")?;
        writeln!(f, "  CA      {}", self.ca_fingerprint)?;
        writeln!(f, "  server  {}", self.server_fingerprint)?;
        writeln!(f, "  client  {}", self.client_fingerprint)?;
        writeln!(
            f,
            "The server needs {CA_CERT}, {SERVER_CERT} and {SERVER_KEY} in its config directory."
        )?;
        writeln!(
            f,
            "A client machine needs {CA_CERT}, {CLIENT_CERT} and {CLIENT_KEY}: copy them into its \
             config directory ($JSYNC_CONFIG_DIR or ~/.config/jsync) and keep {CLIENT_KEY} mode 0600."
        )?;
        writeln!(
            f,
            "Keep {CA_KEY} secret (anyone holding it can make certificates both sides trust); it is \
             only needed to issue certificates and can be moved offline."
        )?;
        write!(
            f,
            "Optional key pinning: create an empty {KNOWN_CLIENT_KEYS} (server) or \
             {KNOWN_SERVER_KEYS} (client) to record keys on first use; make it read-only \
             (chmod 444) to refuse every key not listed."
        )
    }
}

/// A loaded identity: the CA to check peers against, and our own chain and key.
#[derive(Debug)]
pub struct Identity {
    /// Whose identity this is.
    pub role: Role,
    /// The config directory it was loaded from.
    pub dir: PathBuf,
    /// The CA certificate (the only trust anchor).
    pub ca: CertificateDer<'static>,
    /// Our certificate chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// Our private key.
    pub key: PrivateKeyDer<'static>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            role: self.role,
            dir: self.dir.clone(),
            ca: self.ca.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl Identity {
    /// Loads `ca.crt` and the role's certificate and key from `dir`, and checks
    /// that the key is private (no group/other permissions, like ssh), that the
    /// certificate carries the key's public key and that the CA issued it for
    /// this role.
    pub fn load(dir: &Path, role: Role) -> Result<Identity, IdentityError> {
        let (cert_name, key_name) = role.files();
        let ca_path = dir.join(CA_CERT);
        let cert_path = dir.join(cert_name);
        let key_path = dir.join(key_name);
        let hint = load_hint(dir, role);

        let (mut ca, ca_meta) = read_certs(&ca_path, &hint)?;
        let ca = ca.swap_remove(0);
        let (chain, cert_meta) = read_certs(&cert_path, &hint)?;
        let (key_pem, key_meta) = read_private(&key_path, &hint)?;
        let dir_meta = fs::metadata(dir).map_err(|source| IdentityError::Read {
            path: dir.to_path_buf(),
            hint: String::new(),
            source,
        })?;
        for (path, meta) in [
            (dir, &dir_meta),
            (&ca_path, &ca_meta),
            (&cert_path, &cert_meta),
            (&key_path, &key_meta),
        ] {
            only_ours(path, meta)?;
        }
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| IdentityError::Invalid {
            path: key_path.clone(),
            what: "PEM private key",
            reason: e.to_string(),
        })?;

        let key_spki = spki_of_private_key(&key_path, &key)?;
        let cert_spki =
            crate::tls::spki_of_cert(&chain[0]).map_err(|e| IdentityError::Invalid {
                path: cert_path.clone(),
                what: "certificate",
                reason: e.to_string(),
            })?;
        if key_spki != cert_spki {
            return Err(IdentityError::KeyMismatch {
                cert: cert_path,
                key: key_path,
            });
        }
        crate::tls::check_leaf(&ca, &chain, role).map_err(|e| IdentityError::NotIssuedByCa {
            cert: cert_path.clone(),
            ca: ca_path.clone(),
            role,
            reason: crate::tls::own_cert_refusal(&e),
        })?;

        Ok(Identity {
            role,
            dir: dir.to_path_buf(),
            ca,
            chain,
            key,
        })
    }

    /// The fingerprint of our own public key (see [`fingerprint_spki`]).
    pub fn fingerprint(&self) -> String {
        match crate::tls::spki_of_cert(&self.chain[0]) {
            Ok(spki) => fingerprint_spki(&spki),
            // `load` checked the certificate parses; keep this total anyway.
            Err(_) => "SHA256:?".to_string(),
        }
    }

    /// Path of the CA certificate this identity trusts.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join(CA_CERT)
    }

    /// Path of the known-keys file for our peers' keys in our config dir.
    pub fn known_keys_path(&self) -> PathBuf {
        self.dir.join(self.role.known_keys_file())
    }
}

/// `"SHA256:<base64 without padding>"` of a SubjectPublicKeyInfo DER, in the style of
/// `ssh-keygen -l` (but hashing the X.509 SPKI, not ssh's key blob).
pub fn fingerprint_spki(spki_der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, spki_der);
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest.as_ref())
    )
}

fn load_hint(dir: &Path, role: Role) -> String {
    match role {
        Role::Server => format!(" (run `jsrv init --config-dir {}` first)", dir.display()),
        // (Only the server's CA certificate missing.)
        Role::Client if dir.join(CLIENT_KEY).exists() && dir.join(CLIENT_CERT).exists() => {
            format!(
                " (copy the server's {CA_CERT}, from the `jsrv init` that signed {CLIENT_CERT}, \
                 into {})",
                dir.display()
            )
        }
        // (A key of its own, made by `jcp --keygen`, waits for its certificate.)
        Role::Client if dir.join(CLIENT_KEY).exists() => format!(
            " (this client's key is made: have the server's admin sign its line, which \
             `jcp --keygen` prints again, with `jsrv sign`, then put the certificate in {} \
             as {CLIENT_CERT}, beside the server's {CA_CERT})",
            dir.display()
        ),
        Role::Client => format!(
            " (run `jcp --keygen` and have the server's admin sign its line with `jsrv \
             sign`, or copy the server's {CA_CERT}, {CLIENT_CERT} and {CLIENT_KEY} into {})",
            dir.display()
        ),
    }
}

/// The most a key or certificate file may hold.
const MAX_KEY_FILE: u64 = 1 << 20;

/// Reads a configuration file: a regular file (a FIFO would block the
/// handshake for good; it is opened without waiting, then looked at) of at
/// most `max` bytes (`/dev/zero` would be read without end). Its contents,
/// and what the open file is (its mode, for the known-keys files).
pub(crate) fn read_config_file(path: &Path, max: u64) -> io::Result<(Vec<u8>, fs::Metadata)> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    let mut out = Vec::new();
    io::Read::read_to_end(&mut io::Read::take(f, max + 1), &mut out)?;
    if out.len() as u64 > max {
        let why = format!("larger than {max} bytes");
        return Err(io::Error::new(io::ErrorKind::InvalidData, why));
    }
    Ok((out, meta))
}

/// A key or certificate file's contents, and what the open file is.
fn read_file(path: &Path, hint: &str) -> Result<(Vec<u8>, fs::Metadata), IdentityError> {
    read_config_file(path, MAX_KEY_FILE).map_err(|source| IdentityError::Read {
        path: path.to_path_buf(),
        hint: if source.kind() == io::ErrorKind::NotFound {
            hint.to_string()
        } else {
            String::new()
        },
        source,
    })
}

/// Refuses a directory or file (`meta`, as it was read) that a user other
/// than this one (or root) could change, as sshd's StrictModes: writable
/// by group or others, or another user's. (Checked once the files were
/// read, so that a missing one is said as missing, with its hint, first.)
fn only_ours(path: &Path, meta: &fs::Metadata) -> Result<(), IdentityError> {
    use std::os::unix::fs::MetadataExt;
    let mode = meta.mode() & 0o7777;
    let me = rustix::process::geteuid().as_raw();
    let why = if mode & 0o022 != 0 {
        format!(
            "writable by group or others (mode {mode:04o}; run `chmod go-w {}`)",
            path.display()
        )
    } else if meta.uid() != me && meta.uid() != 0 {
        format!(
            "belongs to user {}, not to this one ({me}) or root",
            meta.uid()
        )
    } else {
        return Ok(());
    };
    Err(IdentityError::NotPrivate {
        path: path.to_path_buf(),
        why,
    })
}

/// Reads a private key file, which only its owner may access (the file
/// read is the one looked at).
fn read_private(path: &Path, hint: &str) -> Result<(Vec<u8>, fs::Metadata), IdentityError> {
    let (bytes, meta) = read_file(path, hint)?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(IdentityError::KeyTooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok((bytes, meta))
}

/// A certificate file's certificates (at least one), and what the open
/// file is.
fn read_certs(
    path: &Path,
    hint: &str,
) -> Result<(Vec<CertificateDer<'static>>, fs::Metadata), IdentityError> {
    let (pem, meta) = read_file(path, hint)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| IdentityError::Invalid {
            path: path.to_path_buf(),
            what: "PEM certificate file",
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(IdentityError::Invalid {
            path: path.to_path_buf(),
            what: "PEM certificate file",
            reason: "no CERTIFICATE block found".into(),
        });
    }
    Ok((certs, meta))
}

fn spki_of_private_key(path: &Path, key: &PrivateKeyDer<'_>) -> Result<Vec<u8>, IdentityError> {
    let kp = KeyPair::try_from(key).map_err(|e| IdentityError::Invalid {
        path: path.to_path_buf(),
        what: "private key",
        reason: e.to_string(),
    })?;
    Ok(kp.subject_public_key_info())
}

/// Creates the config directory (mode 0700) and whatever identity files are
/// missing in it. Existing key files are never touched; a missing certificate
/// is issued from its existing key; existing certificates are checked.
pub fn init(dir: &Path) -> Result<InitReport, IdentityError> {
    make_config_dir(dir)?;
    let mut files = Vec::new();
    let no_hint = "";

    // --- The CA.
    let ca_key_path = dir.join(CA_KEY);
    let ca_cert_path = dir.join(CA_CERT);
    let ca_cert_exists = exists(&ca_cert_path)?;
    let ca_key = if exists(&ca_key_path)? {
        files.push(report(dir, CA_KEY, FileAction::Kept));
        Some(load_key_pair(&ca_key_path)?)
    } else if ca_cert_exists {
        // The CA key may have been moved offline on purpose: fine unless we must sign.
        files.push(report(dir, CA_KEY, FileAction::Absent));
        None
    } else {
        let kp = new_key_pair(&ca_key_path)?;
        write_new(&ca_key_path, kp.serialize_pem().as_bytes(), KEY_MODE)?;
        files.push(report(dir, CA_KEY, FileAction::Created));
        Some(kp)
    };
    let ca_params = ca_key.as_ref().map(ca_params);
    let ca_cert: CertificateDer<'static> = if ca_cert_exists {
        let cert = read_certs(&ca_cert_path, no_hint)?.0.swap_remove(0);
        if let Some(kp) = &ca_key {
            let spki = crate::tls::spki_of_cert(&cert).map_err(|e| IdentityError::Invalid {
                path: ca_cert_path.clone(),
                what: "certificate",
                reason: e.to_string(),
            })?;
            if spki != kp.subject_public_key_info() {
                return Err(IdentityError::KeyMismatch {
                    cert: ca_cert_path,
                    key: ca_key_path,
                });
            }
        }
        files.push(report(dir, CA_CERT, FileAction::Kept));
        cert
    } else {
        let (Some(kp), Some(params)) = (&ca_key, &ca_params) else {
            unreachable!("a CA key exists or was created when ca.crt is missing")
        };
        let cert = params
            .self_signed(kp)
            .map_err(|e| generate_err(&ca_cert_path, e))?;
        write_new(&ca_cert_path, cert.pem().as_bytes(), CERT_MODE)?;
        let action = if files[0].action == FileAction::Created {
            FileAction::Created
        } else {
            FileAction::Issued
        };
        files.push(report(dir, CA_CERT, action));
        cert.der().clone()
    };
    let issuer = match (ca_params, ca_key) {
        (Some(params), Some(kp)) => Some(Issuer::new(params, kp)),
        _ => None,
    };

    // --- The leaves.
    let mut fingerprints = Vec::new();
    for role in [Role::Server, Role::Client] {
        let (cert_name, key_name) = role.files();
        let cert_path = dir.join(cert_name);
        let key_path = dir.join(key_name);
        let cert_exists = exists(&cert_path)?;
        let (kp, key_action) = if exists(&key_path)? {
            (load_key_pair(&key_path)?, FileAction::Kept)
        } else if cert_exists {
            return Err(IdentityError::OrphanCert {
                cert: cert_path,
                key: key_path,
            });
        } else {
            let kp = new_key_pair(&key_path)?;
            write_new(&key_path, kp.serialize_pem().as_bytes(), KEY_MODE)?;
            (kp, FileAction::Created)
        };
        files.push(report(dir, key_name, key_action));
        let spki = kp.subject_public_key_info();
        let chain = if cert_exists {
            let chain = read_certs(&cert_path, no_hint)?.0;
            let cert_spki =
                crate::tls::spki_of_cert(&chain[0]).map_err(|e| IdentityError::Invalid {
                    path: cert_path.clone(),
                    what: "certificate",
                    reason: e.to_string(),
                })?;
            if cert_spki != spki {
                return Err(IdentityError::KeyMismatch {
                    cert: cert_path,
                    key: key_path,
                });
            }
            files.push(report(dir, cert_name, FileAction::Kept));
            chain
        } else {
            let Some(issuer) = &issuer else {
                return Err(IdentityError::NoCaKey {
                    cert: cert_path,
                    ca_key: ca_key_path,
                    ca_cert: ca_cert_path,
                });
            };
            let cert = leaf_params(role, None)
                .and_then(|p| p.signed_by(&kp, issuer))
                .map_err(|e| generate_err(&cert_path, e))?;
            let chain = vec![cert.der().clone()];
            // Check before writing, so that a CA certificate we cannot sign for is reported
            // instead of leaving an unusable certificate behind.
            check_issued(&ca_cert, &chain, role, &cert_path, &ca_cert_path)?;
            write_new(&cert_path, cert.pem().as_bytes(), CERT_MODE)?;
            let action = if key_action == FileAction::Created {
                FileAction::Created
            } else {
                FileAction::Issued
            };
            files.push(report(dir, cert_name, action));
            chain
        };
        check_issued(&ca_cert, &chain, role, &cert_path, &ca_cert_path)?;
        fingerprints.push(fingerprint_spki(&spki));
    }

    let ca_spki = crate::tls::spki_of_cert(&ca_cert).map_err(|e| IdentityError::Invalid {
        path: ca_cert_path.clone(),
        what: "certificate",
        reason: e.to_string(),
    })?;
    let client_fingerprint = fingerprints.pop().unwrap_or_default();
    let server_fingerprint = fingerprints.pop().unwrap_or_default();
    Ok(InitReport {
        dir: dir.to_path_buf(),
        files,
        ca_fingerprint: fingerprint_spki(&ca_spki),
        server_fingerprint,
        client_fingerprint,
    })
}

/// What a client certificate's common name starts with; a name `jsrv sign
/// --name` gives follows it ([`is_client_name`]).
pub const CLIENT_CN_PREFIX: &str = "jsync client";

/// Whether `name` may name a client in its certificate (`jsrv sign
/// --name`): 1 to 48 ASCII letters, digits, `.`, `-`, `_` or `@`, so it
/// shows in a log line as it is.
pub fn is_client_name(name: &str) -> bool {
    let ok = |c: char| c.is_ascii_alphanumeric() || ".-_@".contains(c);
    !name.is_empty() && name.len() <= 48 && name.chars().all(ok)
}

/// An ed25519 key's public half as one line of text, as an ssh `.pub` line:
/// `ed25519 BASE64 COMMENT`, the 32 bytes of the key in base64, which is
/// also a line of a known-keys file ([`crate::known_keys`]), so the line can
/// go into a read-only `known_client_keys` as it is. What a client hands
/// its server's admin to sign ([`sign_client`]); no secret.
pub fn public_key_line(key: &KeyPair, comment: &str) -> String {
    crate::known_keys::key_line(&key.subject_public_key_info(), comment)
}

/// What [`keygen`] did.
#[derive(Debug)]
pub struct KeygenReport {
    /// The client key: created, or kept as it was.
    pub key: FileReport,
    /// Its public key line ([`public_key_line`]).
    pub line: String,
    /// Its fingerprint (`SHA256:...`), as the known-keys files show it.
    pub fingerprint: String,
}

/// Makes a client key of this machine's own, `client.key` (mode 0600, in
/// `dir`, made 0700 if missing), unless it has one, which is kept (never
/// overwritten), and returns its public key line: the ssh way of giving a
/// client an identity, its private key never leaving it. The server's admin
/// signs the line ([`sign_client`]); the certificate goes back as
/// `client.crt`, beside the CA's `ca.crt`.
pub fn keygen(dir: &Path, comment: &str) -> Result<KeygenReport, IdentityError> {
    make_config_dir(dir)?;
    let path = dir.join(CLIENT_KEY);
    if exists(&dir.join(CA_KEY))? {
        // The server's own config dir: its client.key is `init`'s, which
        // every client that copies it shares.
        return Err(IdentityError::Invalid {
            path,
            what: "key of this client's own",
            reason: format!(
                "it is the client key `jsrv init` made beside {CA_KEY}, which every client \
                 that copies it shares; make this machine's own in another config dir"
            ),
        });
    }
    let (kp, action) = if exists(&path)? {
        (load_key_pair(&path)?, FileAction::Kept)
    } else {
        let kp = new_key_pair(&path)?;
        write_new(&path, kp.serialize_pem().as_bytes(), KEY_MODE)?;
        (kp, FileAction::Created)
    };
    if kp.algorithm() != &rcgen::PKCS_ED25519 {
        return Err(IdentityError::Invalid {
            path,
            what: "ed25519 private key",
            reason: "another kind of key".into(),
        });
    }
    Ok(KeygenReport {
        key: report(dir, CLIENT_KEY, action),
        line: public_key_line(&kp, comment),
        fingerprint: fingerprint_spki(&kp.subject_public_key_info()),
    })
}

/// An ed25519 public key read from a line, to be signed.
struct Ed25519Public([u8; 32]);

impl PublicKeyData for Ed25519Public {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ED25519
    }
}

/// Parses a [`public_key_line`] (the one line of `text` that is not blank
/// or a `#` comment); `Err` says what is wrong with it.
fn parse_public_key_line(text: &str) -> Result<Ed25519Public, String> {
    if text.contains("PRIVATE KEY-----") {
        return Err(
            "it is a PRIVATE key, which never leaves its machine: sign the public \
                    key line `jcp --keygen` printed instead (and, if this one was sent \
                    anywhere, make a new key)"
                .into(),
        );
    }
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    let line = lines.next().unwrap_or_default();
    if lines.next().is_some() {
        return Err("it holds more than one key line (one client at a time)".into());
    }
    if line.is_empty() {
        return Err("it is empty".into());
    }
    crate::known_keys::ed25519_of_line(line).map(Ed25519Public)
}

/// A client certificate [`sign_client`] issued.
#[derive(Debug)]
pub struct Signed {
    /// The certificate, PEM: the client's `client.crt`.
    pub pem: String,
    /// The client key's fingerprint (`SHA256:...`), as the known-keys
    /// files show it.
    pub fingerprint: String,
}

/// Issues a client certificate for the key of a [`public_key_line`] (read
/// from `source`, named in errors) with the CA in `dir` (`ca.key` and
/// `ca.crt`), its subject naming the client `name` (`jsync client NAME`,
/// which jsrv's log shows beside the client's address; the known-keys
/// files name a client by its key's fingerprint). The certificate is
/// checked against the CA before it is returned.
pub fn sign_client(
    dir: &Path,
    line: &str,
    source: &Path,
    name: &str,
) -> Result<Signed, IdentityError> {
    sign_client_for(dir, line, source, name, None)
}

/// [`sign_client`] for a certificate that expires `days` days from today
/// (`jsrv sign --days`, as `ssh-keygen -s -V`): the client is refused once
/// it has, with no list to keep. `None`: one that does not expire, like an
/// ssh key.
pub fn sign_client_for(
    dir: &Path,
    line: &str,
    source: &Path,
    name: &str,
    days: Option<u32>,
) -> Result<Signed, IdentityError> {
    let key = parse_public_key_line(line).map_err(|reason| IdentityError::Invalid {
        path: source.to_path_buf(),
        what: "public key line",
        reason,
    })?;
    let (ca_key_path, ca_cert_path) = (dir.join(CA_KEY), dir.join(CA_CERT));
    let cert_path = Path::new(CLIENT_CERT);
    if !exists(&ca_key_path)? {
        return Err(IdentityError::NoCaKey {
            cert: cert_path.to_path_buf(),
            ca_key: ca_key_path,
            ca_cert: ca_cert_path,
        });
    }
    let ca_kp = load_key_pair(&ca_key_path)?;
    let ca_cert = read_certs(&ca_cert_path, &load_hint(dir, Role::Server))?
        .0
        .swap_remove(0);
    let issuer = Issuer::new(ca_params(&ca_kp), ca_kp);
    let name = Some(name.trim()).filter(|n| !n.is_empty());
    if let Some(name) = name.filter(|n| !is_client_name(n)) {
        return Err(IdentityError::Invalid {
            path: source.to_path_buf(),
            what: "client name",
            reason: format!("{name:?}: a name is 1 to 48 letters, digits, '.', '-', '_' or '@'"),
        });
    }
    let cert = leaf_params(Role::Client, name)
        .map(|mut p| {
            if let Some(days) = days {
                // (To the second: N days from now, not from a midnight.)
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                let then = now + std::time::Duration::from_secs(u64::from(days) * 86_400);
                p.not_after = rcgen::date_time_ymd(1970, 1, 1) + then;
            }
            p
        })
        .and_then(|p| p.signed_by(&key, &issuer))
        .map_err(|e| generate_err(cert_path, e))?;
    let chain = vec![cert.der().clone()];
    check_issued(&ca_cert, &chain, Role::Client, cert_path, &ca_cert_path)?;
    Ok(Signed {
        pem: cert.pem(),
        fingerprint: fingerprint_spki(&key.subject_public_key_info()),
    })
}

/// Makes the config directory (mode 0700) and its parents if missing.
fn make_config_dir(dir: &Path) -> Result<(), IdentityError> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|source| IdentityError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })
}

fn report(dir: &Path, name: &'static str, action: FileAction) -> FileReport {
    FileReport {
        name,
        path: dir.join(name),
        action,
    }
}

fn check_issued(
    ca: &CertificateDer<'_>,
    chain: &[CertificateDer<'static>],
    role: Role,
    cert_path: &Path,
    ca_path: &Path,
) -> Result<(), IdentityError> {
    crate::tls::check_leaf(ca, chain, role).map_err(|e| IdentityError::NotIssuedByCa {
        cert: cert_path.to_path_buf(),
        ca: ca_path.to_path_buf(),
        role,
        reason: format!(
            "{} (remove {} and run init again to issue it from its key)",
            crate::tls::own_cert_refusal(&e),
            cert_path.display()
        ),
    })
}

fn exists(path: &Path) -> Result<bool, IdentityError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(IdentityError::Read {
            path: path.to_path_buf(),
            source,
            hint: String::new(),
        }),
    }
}

fn load_key_pair(path: &Path) -> Result<KeyPair, IdentityError> {
    let (pem, _) = read_private(path, "")?;
    let text = String::from_utf8(pem).map_err(|_| IdentityError::Invalid {
        path: path.to_path_buf(),
        what: "PEM private key",
        reason: "not text".into(),
    })?;
    KeyPair::from_pem(&text).map_err(|e| IdentityError::Invalid {
        path: path.to_path_buf(),
        what: "PEM private key",
        reason: e.to_string(),
    })
}

fn new_key_pair(path: &Path) -> Result<KeyPair, IdentityError> {
    KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(|e| generate_err(path, e))
}

fn generate_err(path: &Path, e: rcgen::Error) -> IdentityError {
    IdentityError::Generate {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// The CA's parameters. Its name is derived from its public key, so that
/// re-issuing `ca.crt` from the same `ca.key` gives the same issuer name (old
/// leaf certificates stay valid) and two different jsync CAs never share a name
/// (a certificate from the other CA is then reported as "unknown issuer").
fn ca_params(kp: &KeyPair) -> CertificateParams {
    let fp = fingerprint_spki(&kp.subject_public_key_info());
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "jsync");
    // 16 characters of base64 = 96 bits: unique enough for a name.
    dn.push(DnType::CommonName, format!("jsync CA {}", &fp[7..23]));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_not_before(&mut params);
    params
}

/// A leaf certificate's parameters for `role`, its common name `jsync
/// ROLE` (a client's followed by its `name`, [`CLIENT_CN_PREFIX`]).
fn leaf_params(role: Role, name: Option<&str>) -> Result<CertificateParams, rcgen::Error> {
    let mut params = match role {
        // The server name clients ask for: see `tls::SERVER_NAME` for why it is fixed.
        Role::Server => CertificateParams::new(vec![crate::tls::SERVER_NAME.to_string()])?,
        Role::Client => CertificateParams::default(),
    };
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "jsync");
    let cn = match name {
        Some(name) => format!("jsync {role} {name}"),
        None => format!("jsync {role}"),
    };
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![match role {
        Role::Server => ExtendedKeyUsagePurpose::ServerAuth,
        Role::Client => ExtendedKeyUsagePurpose::ClientAuth,
    }];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial()?);
    set_not_before(&mut params);
    // not_after stays at rcgen's far-future default: like ssh keys, jsync keys do not
    // expire; trust is withdrawn by replacing the CA or by known-keys lockdown.
    Ok(params)
}

fn random_serial() -> Result<SerialNumber, rcgen::Error> {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| rcgen::Error::RingUnspecified)?;
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x01; // no leading zero byte
    Ok(SerialNumber::from_slice(&bytes))
}

/// Sets `not_before` to yesterday (UTC), so that a peer whose clock is a little
/// behind still accepts a fresh certificate.
fn set_not_before(params: &mut CertificateParams) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (y, m, d, ..) =
        crate::civil::utc_civil(i64::try_from(now.saturating_sub(86_400)).unwrap_or(0));
    let y = i32::try_from(y).unwrap_or(1975);
    // Month and day are in range by construction.
    params.not_before = rcgen::date_time_ymd(y, m as u8, d as u8);
}

/// Writes a new file with `mode` without ever replacing an existing one: the
/// data goes to a temporary file created with that mode (never chmod'ed), is
/// synced, and is then hard-linked to its name, which fails if the name exists.
/// (Also for `jsrv sign --out`: a certificate is never half-written.)
pub fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<(), IdentityError> {
    let werr = |source| IdentityError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let nonce = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = dir.join(format!(".{name}.{}.{nonce}.tmp", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        match fs::hard_link(&tmp, path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
            Err(_) => {
                // A file system without hard links: fall back to an exclusive create,
                // which still never replaces an existing file.
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(mode)
                    .open(path)?;
                let written = f.write_all(data).and_then(|()| f.sync_all());
                if written.is_err() {
                    // (Ours, just made: nothing half-written stays.)
                    let _ = fs::remove_file(path);
                }
                written
            }
        }
    })();
    let _ = fs::remove_file(&tmp);
    result.map_err(werr)?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    fn set_mode(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    const ALL: [&str; 6] = [
        CA_KEY,
        CA_CERT,
        SERVER_CERT,
        SERVER_KEY,
        CLIENT_CERT,
        CLIENT_KEY,
    ];

    fn snapshot(dir: &Path) -> Vec<Vec<u8>> {
        ALL.iter().map(|n| fs::read(dir.join(n)).unwrap()).collect()
    }

    #[test]
    fn a_client_key_of_its_own_is_signed_by_the_ca() {
        let tmp = tempfile::tempdir().unwrap();
        let (srv, cli) = (tmp.path().join("srv"), tmp.path().join("cli"));
        init(&srv).unwrap();
        let made = keygen(&cli, " alice@laptop\n").unwrap();
        assert_eq!(made.key.action, FileAction::Created);
        assert_eq!(mode_of(&cli), 0o700);
        assert_eq!(mode_of(&cli.join(CLIENT_KEY)), 0o600);
        assert!(made.line.starts_with("ed25519 ") && made.line.ends_with(" alice@laptop"));
        // A second keygen keeps the key and gives the same line.
        let again = keygen(&cli, "alice@laptop").unwrap();
        assert_eq!(again.key.action, FileAction::Kept);
        assert_eq!(
            (again.line, again.fingerprint),
            (made.line.clone(), made.fingerprint.clone())
        );

        let text = format!("# from alice\n\n{}\n", made.line);
        let signed = sign_client(&srv, &text, Path::new("alice.pub"), "alice").unwrap();
        assert_eq!(signed.fingerprint, made.fingerprint);
        fs::write(cli.join(CLIENT_CERT), &signed.pem).unwrap();
        fs::copy(srv.join(CA_CERT), cli.join(CA_CERT)).unwrap();
        // The client's identity loads: its certificate is the CA's, for its key.
        let client = Identity::load(&cli, Role::Client).unwrap();
        assert_eq!(client.fingerprint(), made.fingerprint);
        assert_ne!(
            client.fingerprint(),
            Identity::load(&srv, Role::Client).unwrap().fingerprint()
        );
        // The line is a known-keys line too.
        let known = tmp.path().join("known");
        fs::write(&known, format!("{}\n", made.line)).unwrap();
        assert!(crate::known_keys::KnownKeys::open(&known).is_ok());

        // The server's own client key is init's shared one: not offered.
        let e = keygen(&srv, "x").unwrap_err().to_string();
        assert!(e.contains("every client that copies it shares"), "{e}");
        let two = format!("{}\n{}\n", made.line, made.line);
        for (bad, why) in [
            (two.as_str(), "more than one"),
            ("", "empty"),
            ("ssh-ed25519 AAAA", "unknown key type `ssh-ed25519`"),
            ("ed25519", "found only `ed25519`"),
            ("ed25519 !!!", "not valid base64"),
            ("ed25519 AAAA", "this one is 3"),
            ("spki MCowBQYDK2VwAyEA", "not an ed25519 one"),
        ] {
            let e = sign_client(&srv, bad, Path::new("k.pub"), "").unwrap_err();
            let e = e.to_string();
            assert!(e.contains("k.pub") && e.contains(why), "{bad:?}: {e}");
        }
        // Without the CA's private key nothing is signed.
        fs::remove_file(srv.join(CA_KEY)).unwrap();
        let e = sign_client(&srv, &made.line, Path::new("k.pub"), "").unwrap_err();
        assert!(matches!(e, IdentityError::NoCaKey { .. }), "{e}");
    }

    #[test]
    fn init_creates_private_keys_and_never_overwrites() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cfg").join("jsync");
        let report = init(&dir).unwrap();
        assert_eq!(mode_of(&dir), 0o700);
        for name in [CA_KEY, SERVER_KEY, CLIENT_KEY] {
            assert_eq!(mode_of(&dir.join(name)), 0o600, "{name}");
            assert_eq!(report.action(name), Some(FileAction::Created));
        }
        for name in [CA_CERT, SERVER_CERT, CLIENT_CERT] {
            assert_eq!(mode_of(&dir.join(name)) & !0o644, 0, "{name}");
            assert_eq!(report.action(name), Some(FileAction::Created));
        }
        // No temporary files left behind.
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 6);
        let text = report.to_string();
        for needle in [
            report.ca_fingerprint.as_str(),
            report.server_fingerprint.as_str(),
            report.client_fingerprint.as_str(),
            "A client machine needs ca.crt, client.crt and client.key",
            "The server needs ca.crt, server.crt and server.key",
        ] {
            assert!(text.contains(needle), "{needle} not in:\n{text}");
        }
        assert!(report.ca_fingerprint.starts_with("SHA256:"));
        assert_eq!(report.ca_fingerprint.len(), 7 + 43);

        let before = snapshot(&dir);
        let again = init(&dir).unwrap();
        assert!(again.unchanged(), "{again}");
        assert_eq!(snapshot(&dir), before, "a second init changes nothing");
        assert_eq!(again.server_fingerprint, report.server_fingerprint);

        // The identities load and their fingerprints are the report's.
        let server = Identity::load(&dir, Role::Server).unwrap();
        let client = Identity::load(&dir, Role::Client).unwrap();
        assert_eq!(server.fingerprint(), report.server_fingerprint);
        assert_eq!(client.fingerprint(), report.client_fingerprint);
        assert_ne!(server.fingerprint(), client.fingerprint());
        let _copy = client.clone();
    }

    #[test]
    fn missing_cert_is_reissued_from_existing_key() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let first = init(dir).unwrap();
        let key = fs::read(dir.join(SERVER_KEY)).unwrap();
        let cert = fs::read(dir.join(SERVER_CERT)).unwrap();
        fs::remove_file(dir.join(SERVER_CERT)).unwrap();
        let report = init(dir).unwrap();
        assert_eq!(report.action(SERVER_CERT), Some(FileAction::Issued));
        assert_eq!(report.action(SERVER_KEY), Some(FileAction::Kept));
        assert_eq!(report.server_fingerprint, first.server_fingerprint);
        assert_eq!(fs::read(dir.join(SERVER_KEY)).unwrap(), key);
        assert_ne!(fs::read(dir.join(SERVER_CERT)).unwrap(), cert);
        Identity::load(dir, Role::Server).unwrap();

        // The CA certificate too: same key, same name, so the leaves stay valid.
        fs::remove_file(dir.join(CA_CERT)).unwrap();
        let report = init(dir).unwrap();
        assert_eq!(report.action(CA_CERT), Some(FileAction::Issued));
        assert_eq!(report.ca_fingerprint, first.ca_fingerprint);
        Identity::load(dir, Role::Server).unwrap();
        Identity::load(dir, Role::Client).unwrap();
    }

    #[test]
    fn missing_leaf_key_pair_is_signed_by_existing_ca() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let first = init(dir).unwrap();
        let ca_key = fs::read(dir.join(CA_KEY)).unwrap();
        fs::remove_file(dir.join(CLIENT_KEY)).unwrap();
        fs::remove_file(dir.join(CLIENT_CERT)).unwrap();
        let report = init(dir).unwrap();
        assert_eq!(report.action(CA_KEY), Some(FileAction::Kept));
        assert_eq!(report.action(CLIENT_KEY), Some(FileAction::Created));
        assert_eq!(report.action(CLIENT_CERT), Some(FileAction::Created));
        assert_ne!(report.client_fingerprint, first.client_fingerprint);
        assert_eq!(fs::read(dir.join(CA_KEY)).unwrap(), ca_key);
        assert_eq!(mode_of(&dir.join(CLIENT_KEY)), 0o600);
        Identity::load(dir, Role::Client).unwrap();
    }

    #[test]
    fn offline_ca_key_and_orphans() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        init(dir).unwrap();
        fs::rename(dir.join(CA_KEY), dir.join("offline.key")).unwrap();
        let report = init(dir).unwrap();
        assert_eq!(report.action(CA_KEY), Some(FileAction::Absent));
        assert!(
            !dir.join(CA_KEY).exists(),
            "no new CA behind the user's back"
        );

        fs::remove_file(dir.join(CLIENT_CERT)).unwrap();
        let err = init(dir).unwrap_err();
        assert!(matches!(err, IdentityError::NoCaKey { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains(&dir.join(CA_KEY).display().to_string()),
            "{msg}"
        );

        fs::rename(dir.join("offline.key"), dir.join(CA_KEY)).unwrap();
        init(dir).unwrap();
        fs::remove_file(dir.join(SERVER_KEY)).unwrap();
        let err = init(dir).unwrap_err();
        assert!(matches!(err, IdentityError::OrphanCert { .. }), "{err}");
        assert!(err.to_string().contains("server.crt exists but"), "{err}");
    }

    #[test]
    fn existing_key_file_is_kept_even_if_unparsable() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        fs::write(dir.join(SERVER_KEY), "garbage").unwrap();
        set_mode(&dir.join(SERVER_KEY), 0o600);
        let err = init(dir).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("server.key is not a valid PEM private key"),
            "{msg}"
        );
        assert_eq!(fs::read(dir.join(SERVER_KEY)).unwrap(), b"garbage");
    }

    #[test]
    fn load_errors_name_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let err = Identity::load(dir, Role::Server).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("cannot read {}: ", dir.join(CA_CERT).display())),
            "{msg}"
        );
        assert!(
            msg.contains(&format!(
                "(run `jsrv init --config-dir {}` first)",
                dir.display()
            )),
            "{msg}"
        );
        let err = Identity::load(dir, Role::Client).unwrap_err();
        assert!(
            err.to_string()
                .contains("run `jcp --keygen` and have the server's admin sign its line"),
            "{err}"
        );

        init(dir).unwrap();
        // Only the CA's certificate missing: that is what it says to get.
        fs::rename(dir.join(CA_CERT), dir.join("ca.away")).unwrap();
        let err = Identity::load(dir, Role::Client).unwrap_err().to_string();
        assert!(
            err.contains("(copy the server's ca.crt, from the `jsrv init`"),
            "{err}"
        );
        fs::rename(dir.join("ca.away"), dir.join(CA_CERT)).unwrap();
        // A private key readable by others is refused, like ssh does.
        set_mode(&dir.join(CLIENT_KEY), 0o644);
        let err = Identity::load(dir, Role::Client).unwrap_err();
        assert!(
            matches!(err, IdentityError::KeyTooOpen { mode: 0o644, .. }),
            "{err}"
        );
        assert!(err.to_string().contains(&format!(
            "permissions 0644 for {} are too open",
            dir.join(CLIENT_KEY).display()
        )));
        set_mode(&dir.join(CLIENT_KEY), 0o600);

        // A certificate that is not the key's.
        fs::copy(dir.join(SERVER_CERT), dir.join(CLIENT_CERT)).unwrap();
        let err = Identity::load(dir, Role::Client).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{} does not belong to {}: their public keys differ",
                dir.join(CLIENT_CERT).display(),
                dir.join(CLIENT_KEY).display()
            )
        );

        // A certificate and key from another CA.
        let other = tempfile::tempdir().unwrap();
        init(other.path()).unwrap();
        for name in [CLIENT_CERT, CLIENT_KEY] {
            fs::remove_file(dir.join(name)).unwrap();
            fs::copy(other.path().join(name), dir.join(name)).unwrap();
        }
        let err = Identity::load(dir, Role::Client).unwrap_err();
        assert!(matches!(err, IdentityError::NotIssuedByCa { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!(
                "{} is not a valid client certificate issued by {}",
                dir.join(CLIENT_CERT).display(),
                dir.join(CA_CERT).display()
            )),
            "{msg}"
        );
        assert!(
            msg.ends_with("it is not signed by that CA (issued by another `jsrv init`?)"),
            "{msg}"
        );
        // init notices it too, instead of reporting a broken identity as fine.
        let err = init(dir).unwrap_err();
        assert!(matches!(err, IdentityError::NotIssuedByCa { .. }), "{err}");

        // Garbage certificate.
        fs::write(dir.join(SERVER_CERT), "not pem").unwrap();
        let err = Identity::load(dir, Role::Server).unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "{} is not a valid PEM certificate file",
                dir.join(SERVER_CERT).display()
            )),
            "{err}"
        );
    }

    #[test]
    fn default_dir_honours_env() {
        // The only test that touches the environment.
        std::env::set_var(CONFIG_DIR_ENV, "/some/where");
        assert_eq!(default_config_dir(), PathBuf::from("/some/where"));
        std::env::remove_var(CONFIG_DIR_ENV);
        assert!(default_config_dir().ends_with(".config/jsync"));
    }

    #[test]
    fn a_client_certificate_expires_after_the_days_asked_for() {
        let tmp = tempfile::tempdir().unwrap();
        let (srv, cli) = (tmp.path().join("srv"), tmp.path().join("cli"));
        init(&srv).unwrap();
        let made = keygen(&cli, "bob@laptop").unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let not_after = |days| {
            let signed = sign_client_for(&srv, &made.line, Path::new("b.pub"), "", days).unwrap();
            let der =
                rustls_pki_types::CertificateDer::from_pem_slice(signed.pem.as_bytes()).unwrap();
            let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
            cert.validity().not_after.timestamp()
        };
        let in_30 = not_after(Some(30));
        let then = now + 30 * 86_400;
        assert!((then - 5..=then + 5).contains(&in_30), "{in_30} {now}");
        // Without: like an ssh key, it does not expire (rcgen's far future).
        assert!(not_after(None) > now + 1000 * 365 * 86_400);
    }

    #[test]
    fn a_private_key_is_not_signed_and_is_called_one() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path()).unwrap();
        let key = fs::read_to_string(dir.path().join(CLIENT_KEY)).unwrap();
        let e = parse_public_key_line(&key).map(drop).unwrap_err();
        assert!(e.contains("PRIVATE key"), "{e}");
    }

    #[test]
    fn fingerprint_is_sha256_base64_unpadded() {
        // echo -n "" | sha256sum -> e3b0c442...; base64 of it without '='.
        assert_eq!(
            fingerprint_spki(b""),
            "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"
        );
    }
}
