//! What a client or server needs to secure its connections, loaded from a config
//! directory in one call: identity, CA, known-keys file, TLS configs for TCP and QUIC.

use std::path::Path;
use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls_pki_types::CertificateDer;

use crate::error::Result;
use crate::identity::{self, Identity, Role};
use crate::known_keys::KnownKeys;
use crate::tls::{self, TlsOptions};

/// How a client secures its connections.
#[derive(Clone)]
#[non_exhaustive]
pub enum ClientSecurity {
    /// TLS 1.3 with client certificates, over TCP or QUIC.
    Tls {
        tcp: Arc<rustls::ClientConfig>,
        quic: Arc<QuicClientConfig>,
        /// Builds each connection's configurations anew, naming the server
        /// (its address) in a key it records and in its checks' log lines;
        /// without it, `tcp` and `quic` serve, naming it "server".
        named: Option<Arc<PeerNamed>>,
    },
    /// No encryption, no authentication. Only for `--insecure-plaintext` on both sides.
    Plaintext,
}

/// How a server secures its connections.
#[derive(Clone)]
#[non_exhaustive]
pub enum ServerSecurity {
    /// TLS 1.3 requiring client certificates, over TCP and QUIC.
    Tls {
        tcp: Arc<rustls::ServerConfig>,
        quic: Arc<QuicServerConfig>,
        /// As [`ClientSecurity::Tls`]'s: names each client by its address.
        named: Option<Arc<PeerNamed>>,
    },
    /// No encryption, no authentication; QUIC is off.
    Plaintext,
}

impl std::fmt::Debug for ClientSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClientSecurity::Tls { .. } => "ClientSecurity::Tls",
            ClientSecurity::Plaintext => "ClientSecurity::Plaintext",
        })
    }
}

impl std::fmt::Debug for ServerSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ServerSecurity::Tls { .. } => "ServerSecurity::Tls",
            ServerSecurity::Plaintext => "ServerSecurity::Plaintext",
        })
    }
}

impl ClientSecurity {
    /// Loads `client.crt`, `client.key`, `ca.crt` and `known_server_keys` from `dir`.
    pub fn from_config_dir(dir: &Path, opts: &TlsOptions) -> Result<Self> {
        let id = Identity::load(dir, Role::Client)?;
        let known = known_keys(dir, identity::KNOWN_SERVER_KEYS)?;
        Ok(ClientSecurity::Tls {
            tcp: tls::client_config(&id, known.clone(), opts)?,
            quic: tls::quic_client_config(&id, known.clone(), opts)?,
            named: Some(Arc::new(PeerNamed {
                id,
                known,
                opts: opts.clone(),
            })),
        })
    }
}

impl ServerSecurity {
    /// Loads `server.crt`, `server.key`, `ca.crt` and `known_client_keys` from `dir`.
    pub fn from_config_dir(dir: &Path, opts: &TlsOptions) -> Result<Self> {
        let id = Identity::load(dir, Role::Server)?;
        let known = known_keys(dir, identity::KNOWN_CLIENT_KEYS)?;
        Ok(ServerSecurity::Tls {
            tcp: tls::server_config(&id, known.clone(), opts)?,
            quic: tls::quic_server_config(&id, known.clone(), opts)?,
            named: Some(Arc::new(PeerNamed {
                id,
                known,
                opts: opts.clone(),
            })),
        })
    }
}

/// What a connection's TLS configuration is built from when it names its
/// peer ([`tls::server_config_for_peer`] and the like: cheap enough per
/// connection).
pub struct PeerNamed {
    id: Identity,
    known: Option<Arc<KnownKeys>>,
    opts: TlsOptions,
}

impl std::fmt::Debug for PeerNamed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerNamed").finish_non_exhaustive()
    }
}

impl PeerNamed {
    pub(crate) fn server_tcp(&self, peer: &str) -> Result<Arc<rustls::ServerConfig>> {
        Ok(tls::server_config_for_peer(
            &self.id,
            self.known.clone(),
            &self.opts,
            peer,
        )?)
    }

    pub(crate) fn server_quic(&self, peer: &str) -> Result<Arc<QuicServerConfig>> {
        let (id, known) = (&self.id, self.known.clone());
        Ok(tls::quic_server_config_for_peer(
            id, known, &self.opts, peer,
        )?)
    }

    pub(crate) fn client_tcp(&self, peer: &str) -> Result<Arc<rustls::ClientConfig>> {
        Ok(tls::client_config_for_peer(
            &self.id,
            self.known.clone(),
            &self.opts,
            peer,
        )?)
    }

    pub(crate) fn client_quic(&self, peer: &str) -> Result<Arc<QuicClientConfig>> {
        let (id, known) = (&self.id, self.known.clone());
        Ok(tls::quic_client_config_for_peer(
            id, known, &self.opts, peer,
        )?)
    }
}

fn known_keys(dir: &Path, name: &str) -> Result<Option<Arc<KnownKeys>>> {
    let known = KnownKeys::open(&dir.join(name))?;
    Ok(Some(Arc::new(known)))
}

/// What a peer's leaf certificate says of it, for logs and reports (nothing
/// over plaintext or in process).
#[derive(Debug, Clone, Default)]
pub(crate) struct PeerCert {
    /// Its key's fingerprint.
    pub fingerprint: Option<String>,
    /// A client's name in it (`jsrv sign --name`): `None` for a
    /// certificate without one (`init`'s shared client key, a server's).
    pub name: Option<String>,
}

impl PeerCert {
    /// Reads the leaf of `certs` once for both.
    pub(crate) fn of(certs: Option<&[CertificateDer<'static>]>) -> PeerCert {
        let Some(leaf) = certs.and_then(<[_]>::first) else {
            return PeerCert::default();
        };
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf.as_ref()) else {
            return PeerCert::default();
        };
        let cn = cert.subject().iter_common_name().next();
        let name = cn
            .and_then(|cn| cn.as_str().ok())
            .and_then(|cn| cn.strip_prefix(identity::CLIENT_CN_PREFIX))
            .and_then(|rest| rest.strip_prefix(' '))
            // Only what `jsrv sign --name` takes (a certificate made
            // otherwise names no one here: its name could forge a log
            // line's fields).
            .filter(|name| identity::is_client_name(name))
            .map(str::to_owned);
        PeerCert {
            fingerprint: Some(identity::fingerprint_spki(
                cert.tbs_certificate.subject_pki.raw,
            )),
            name,
        }
    }
}

/// True when an IO error carries a TLS failure (an alert, a bad certificate).
pub(crate) fn is_tls_error(e: &std::io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
}
