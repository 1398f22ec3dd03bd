//! TLS 1.3 configurations for jsync's TCP (tokio-rustls) and QUIC (quinn) transports.
//!
//! Both ends authenticate with certificates issued by the private CA from
//! [`crate::identity`]: the server *requires* a client certificate, and each side
//! then checks the peer's public key against its known-keys file
//! ([`crate::known_keys`]). Only TLS 1.3 is offered, with the ring provider
//! (one crypto provider for rustls and quinn), no session resumption (every
//! connection goes through the full certificate and known-keys checks) and the
//! ALPN value [`ALPN`].
//!
//! Refusals are mapped to distinct TLS alerts so that the refused side can tell
//! the user why ([`explain`]):
//!
//! | refusal | local error | alert the peer receives |
//! | --- | --- | --- |
//! | certificate not signed by our CA | `InvalidCertificate(UnknownIssuer)` | `UnknownCA` |
//! | key not in read-only known-keys (lockdown) | `InvalidCertificate(ApplicationVerificationFailure)` | `AccessDenied` |
//! | known-keys file unreadable / malformed / not appendable | `InvalidCertificate(Other(KnownKeysError))` | `CertificateUnknown` |
//! | client sent no certificate | `NoCertificatesPresented` | `CertificateRequired` |
//! | certificate of the wrong role (EKU) | `InvalidCertificate(InvalidPurpose..)` | `UnsupportedCertificate` |
//! | server certificate not for [`SERVER_NAME`] | `InvalidCertificate(NotValidForName..)` | `BadCertificate` |
//!
//! In TLS 1.3 a client whose certificate is refused learns it at its first read
//! after the handshake, not at connect.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{NoServerSessionStorage, ParsedCertificate, WebPkiClientVerifier};
use rustls::{
    AlertDescription, CertificateError, DigitallySignedStruct, DistinguishedName, OtherError,
    RootCertStore, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::identity::{Identity, Role, CA_CERT, KNOWN_CLIENT_KEYS, KNOWN_SERVER_KEYS};
use crate::known_keys::{KeyVerdict, KnownKeys, KnownKeysError};

/// The ALPN protocol both sides must offer.
pub const ALPN: &[u8] = b"jsync";

/// The name in the server certificate's SAN, and the name every client asks for.
///
/// It is fixed on purpose: a jsync server is identified by its certificate
/// being issued by *our* CA (and, with a known-keys file, by its public key),
/// not by DNS. Servers are reached by IP address, through tunnels or under
/// several names, and DNS is not authenticated anyway; tying the certificate
/// to a host name would only make `init` ask for names and break when they
/// change, without adding security, since nobody but the holder of `ca.key`
/// can issue a certificate for this name.
pub const SERVER_NAME: &str = "jsync-server";

/// The ring provider, restricted to TLS 1.3 cipher suites, AES-128-GCM first,
/// then AES-256-GCM and CHACHA20-POLY1305. AES-128 takes 10 rounds per block
/// to AES-256's 14: a bulk copy over TLS spends a third less on encryption
/// (about 3% of an initial copy's time). It is TLS 1.3's mandatory suite, the
/// one QUIC protects its Initial packets with, and OpenSSH's default order
/// also puts AES-128 before AES-256.
pub fn provider() -> Arc<CryptoProvider> {
    provider_for(&TlsOptions::default())
}

/// The provider for `opts` (see [`TlsOptions::chacha_only`]).
pub fn provider_for(opts: &TlsOptions) -> Arc<CryptoProvider> {
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites.retain(|s| {
        s.tls13().is_some()
            && (!opts.chacha_only
                || s.suite() == rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256)
    });
    // A stable sort: the others keep rustls' order.
    p.cipher_suites
        .sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    Arc::new(p)
}

/// Knobs for the TLS configurations.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// Offer only TLS13_CHACHA20_POLY1305_SHA256 (faster than AES-GCM on CPUs
    /// without AES instructions). QUIC Initial packets still use AES-128-GCM, as
    /// the QUIC specification requires.
    pub chacha_only: bool,
}

/// Errors while building a TLS configuration. Messages name the config directory's files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsSetupError {
    /// The CA certificate cannot be used as a trust anchor.
    #[error("cannot use {path} as the CA: {reason}")]
    BadCa {
        /// The CA file.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
    /// rustls refused our certificate/key or the settings.
    #[error("cannot build the TLS {role} configuration from {dir}: {source}")]
    Rustls {
        /// Our role.
        role: Role,
        /// The config directory.
        dir: std::path::PathBuf,
        /// What rustls said.
        source: rustls::Error,
    },
    /// The identity is for the other role.
    #[error("the identity in {dir} is a {found} identity, but a {wanted} one is needed")]
    WrongRole {
        /// The config directory.
        dir: std::path::PathBuf,
        /// The role needed.
        wanted: Role,
        /// The role of the identity given.
        found: Role,
    },
    /// quinn refused the rustls configuration.
    #[error("cannot build the QUIC {role} configuration: {reason}")]
    Quic {
        /// Our role.
        role: Role,
        /// What quinn said.
        reason: String,
    },
}

/// The SubjectPublicKeyInfo DER of a certificate.
pub fn spki_of_cert(cert: &CertificateDer<'_>) -> Result<Vec<u8>, rustls::Error> {
    Ok(ParsedCertificate::try_from(cert)?
        .subject_public_key_info()
        .as_ref()
        .to_vec())
}

fn roots(ca: &CertificateDer<'_>) -> Result<Arc<RootCertStore>, rustls::Error> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone().into_owned())?;
    Ok(Arc::new(roots))
}

fn webpki_client_verifier(
    ca: &CertificateDer<'_>,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let roots = roots(ca).map_err(|e| e.to_string())?;
    WebPkiClientVerifier::builder_with_provider(roots, provider)
        .build()
        .map_err(|e| e.to_string())
}

fn webpki_server_verifier(
    ca: &CertificateDer<'_>,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, String> {
    let roots = roots(ca).map_err(|e| e.to_string())?;
    WebPkiServerVerifier::builder_with_provider(roots, provider)
        .build()
        .map_err(|e| e.to_string())
}

/// Checks that `chain` is a valid certificate for `role` issued by `ca`, with
/// exactly the checks a peer will make (signature, validity, EKU, and for the
/// server the name [`SERVER_NAME`]).
pub(crate) fn check_leaf(
    ca: &CertificateDer<'_>,
    chain: &[CertificateDer<'static>],
    role: Role,
) -> Result<(), rustls::Error> {
    let Some((leaf, intermediates)) = chain.split_first() else {
        return Err(rustls::Error::NoCertificatesPresented);
    };
    let now = UnixTime::now();
    match role {
        Role::Server => {
            let v = webpki_server_verifier(ca, provider()).map_err(rustls::Error::General)?;
            let name = ServerName::try_from(SERVER_NAME).expect("valid DNS name");
            v.verify_server_cert(leaf, intermediates, &name, &[], now)?;
        }
        Role::Client => {
            let v = webpki_client_verifier(ca, provider()).map_err(rustls::Error::General)?;
            v.verify_client_cert(leaf, intermediates, now)?;
        }
    }
    Ok(())
}

/// Why [`check_leaf`] refused one of this machine's own certificates, in
/// words (rustls's say "peer" and give times as UNIX seconds).
pub(crate) fn own_cert_refusal(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer | C::BadSignature => {
                "it is not signed by that CA (issued by another `jsrv init`?)".into()
            }
            C::Expired | C::ExpiredContext { .. } => {
                "it has expired (have it signed again, or check this machine's clock)".into()
            }
            C::NotValidYet | C::NotValidYetContext { .. } => {
                "it is not valid yet: check this machine's clock".into()
            }
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
                "it is not a certificate for this role (wrong extended key usage)".into()
            }
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                format!("it is not issued for `{SERVER_NAME}`")
            }
            other => format!("{other:?}"),
        },
        other => other.to_string(),
    }
}

/// Runs the known-keys check for a certificate that passed the CA check and
/// turns a refusal into the rustls error that sends the right alert.
fn check_known(
    known: Option<&KnownKeys>,
    end_entity: &CertificateDer<'_>,
    who: &str,
) -> Result<(), rustls::Error> {
    let Some(known) = known else { return Ok(()) };
    let spki = spki_of_cert(end_entity)?;
    match known.check(&spki, who) {
        Ok(KeyVerdict::Known | KeyVerdict::Recorded | KeyVerdict::Unchecked) => Ok(()),
        // -> alert access_denied: "valid certificate, but access control said no".
        Err(KnownKeysError::NotAllowed { .. }) => Err(rustls::Error::InvalidCertificate(
            CertificateError::ApplicationVerificationFailure,
        )),
        // -> alert certificate_unknown; locally the typed error is kept for `explain`.
        Err(e) => {
            tracing::warn!("refusing {who}: {e}");
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(e)),
            )))
        }
    }
}

/// Server side: the CA check (client certificate mandatory), then `known_client_keys`.
struct ClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    provider: Arc<CryptoProvider>,
    known: Option<Arc<KnownKeys>>,
    who: String,
}

impl fmt::Debug for ClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientVerifier")
            .field("known", &self.known)
            .field("who", &self.who)
            .finish_non_exhaustive()
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        check_known(self.known.as_deref(), end_entity, &self.who)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Only TLS 1.3 is enabled; never reached.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Client side: the CA check for [`SERVER_NAME`], then `known_server_keys`.
struct ServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
    provider: Arc<CryptoProvider>,
    known: Option<Arc<KnownKeys>>,
    who: String,
}

impl fmt::Debug for ServerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerVerifier")
            .field("known", &self.known)
            .field("who", &self.who)
            .finish_non_exhaustive()
    }
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // Always check for SERVER_NAME, whatever name the caller connected with.
        let name = ServerName::try_from(SERVER_NAME).expect("valid DNS name");
        let verified =
            self.inner
                .verify_server_cert(end_entity, intermediates, &name, ocsp_response, now)?;
        check_known(self.known.as_deref(), end_entity, &self.who)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Only TLS 1.3 is enabled; never reached.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn check_role(id: &Identity, wanted: Role) -> Result<(), TlsSetupError> {
    if id.role == wanted {
        Ok(())
    } else {
        Err(TlsSetupError::WrongRole {
            dir: id.dir.clone(),
            wanted,
            found: id.role,
        })
    }
}

/// The server configuration: TLS 1.3 only, client certificate required and
/// verified against the CA, then against `known_client_keys` if given; ALPN set;
/// no resumption. Recorded keys get the comment "from client".
pub fn server_config(
    id: &Identity,
    known: Option<Arc<KnownKeys>>,
    opts: &TlsOptions,
) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
    server_config_for_peer(id, known, opts, "client")
}

/// Like [`server_config`], for one connection whose peer is described by `who`
/// (e.g. `"client 192.0.2.7:40022"`), which then appears in a recorded key's
/// comment and in log lines. Cheap enough to build per connection
/// (`TlsAcceptor::from`, quinn's `Incoming::accept_with`).
pub fn server_config_for_peer(
    id: &Identity,
    known: Option<Arc<KnownKeys>>,
    opts: &TlsOptions,
    who: &str,
) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
    check_role(id, Role::Server)?;
    let provider = provider_for(opts);
    let inner = webpki_client_verifier(&id.ca, provider.clone()).map_err(|reason| {
        TlsSetupError::BadCa {
            path: id.dir.join(CA_CERT),
            reason,
        }
    })?;
    let verifier = Arc::new(ClientVerifier {
        inner,
        provider: provider.clone(),
        known,
        who: who.to_string(),
    });
    let rustls_err = |source| TlsSetupError::Rustls {
        role: Role::Server,
        dir: id.dir.clone(),
        source,
    };
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(rustls_err)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(id.chain.clone(), id.key.clone_key())
        .map_err(rustls_err)?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    // No resumption: a resumed session would skip the certificate and known-keys checks.
    cfg.session_storage = Arc::new(NoServerSessionStorage {});
    cfg.send_tls13_tickets = 0;
    Ok(Arc::new(cfg))
}

/// The client configuration: TLS 1.3 only, presents the client certificate,
/// verifies the server against the CA for [`SERVER_NAME`] (whatever name is
/// passed to `connect`), then against `known_server_keys` if given; ALPN set;
/// no resumption.
pub fn client_config(
    id: &Identity,
    known: Option<Arc<KnownKeys>>,
    opts: &TlsOptions,
) -> Result<Arc<rustls::ClientConfig>, TlsSetupError> {
    client_config_for_peer(id, known, opts, "server")
}

/// Like [`client_config`], naming the server (e.g. `"server 192.0.2.1:7070"`) in
/// a recorded key's comment and in log lines.
pub fn client_config_for_peer(
    id: &Identity,
    known: Option<Arc<KnownKeys>>,
    opts: &TlsOptions,
    who: &str,
) -> Result<Arc<rustls::ClientConfig>, TlsSetupError> {
    check_role(id, Role::Client)?;
    let provider = provider_for(opts);
    let inner = webpki_server_verifier(&id.ca, provider.clone()).map_err(|reason| {
        TlsSetupError::BadCa {
            path: id.dir.join(CA_CERT),
            reason,
        }
    })?;
    let verifier = Arc::new(ServerVerifier {
        inner,
        provider: provider.clone(),
        known,
        who: who.to_string(),
    });
    let rustls_err = |source| TlsSetupError::Rustls {
        role: Role::Client,
        dir: id.dir.clone(),
        source,
    };
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(rustls_err)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
        .map_err(rustls_err)?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    cfg.resumption = Resumption::disabled();
    Ok(Arc::new(cfg))
}

/// The QUIC Initial packets' suite (always AES-128-GCM, RFC 9001 §5.2).
fn quic_initial_suite(role: Role) -> Result<rustls::quic::Suite, TlsSetupError> {
    rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256
        .tls13()
        .and_then(|s| s.quic_suite())
        .ok_or_else(|| TlsSetupError::Quic {
            role,
            reason: "ring has no QUIC AES-128-GCM suite".into(),
        })
}

/// [`server_config`] for quinn. Works with `chacha_only` too: the Initial
/// packets use AES-128-GCM regardless, 1-RTT data the configured suites.
pub fn quic_server_config(
    id: &Identity,
    known: Option<Arc<KnownKeys>>,
    opts: &TlsOptions,
) -> Result<Arc<quinn::crypto::rustls::QuicServerConfig>, TlsSetupError> {
    quic_server_config_for_peer(id, known, opts, "client")
}

/// [`server_config_for_peer`] for quinn (for `Incoming::accept_with`).
pub fn quic_server_config_for_peer(
    id: &Identity,
    known: Option<Arc<KnownKeys>>,
    opts: &TlsOptions,
    who: &str,
) -> Result<Arc<quinn::crypto::rustls::QuicServerConfig>, TlsSetupError> {
    let cfg = server_config_for_peer(id, known, opts, who)?;
    let initial = quic_initial_suite(Role::Server)?;
    quinn::crypto::rustls::QuicServerConfig::with_initial(cfg, initial)
        .map(Arc::new)
        .map_err(|e| TlsSetupError::Quic {
            role: Role::Server,
            reason: e.to_string(),
        })
}

/// [`client_config`] for quinn; see [`quic_server_config`] about `chacha_only`.
pub fn quic_client_config(
    id: &Identity,
    known: Option<Arc<KnownKeys>>,
    opts: &TlsOptions,
) -> Result<Arc<quinn::crypto::rustls::QuicClientConfig>, TlsSetupError> {
    quic_client_config_for_peer(id, known, opts, "server")
}

/// [`client_config_for_peer`] for quinn.
pub fn quic_client_config_for_peer(
    id: &Identity,
    known: Option<Arc<KnownKeys>>,
    opts: &TlsOptions,
    who: &str,
) -> Result<Arc<quinn::crypto::rustls::QuicClientConfig>, TlsSetupError> {
    let cfg = client_config_for_peer(id, known, opts, who)?;
    let initial = quic_initial_suite(Role::Client)?;
    quinn::crypto::rustls::QuicClientConfig::with_initial(cfg, initial)
        .map(Arc::new)
        .map_err(|e| TlsSetupError::Quic {
            role: Role::Client,
            reason: e.to_string(),
        })
}

/// Turns a handshake error into a sentence for users, from `side`'s point of
/// view. Files are named without their directory; see [`explain_in`].
pub fn explain(err: &rustls::Error, side: Role) -> String {
    explain_with(err, side, None)
}

/// Like [`explain`], naming files with their full path in `config_dir`.
pub fn explain_in(err: &rustls::Error, side: Role, config_dir: &Path) -> String {
    explain_with(err, side, Some(config_dir))
}

/// [`explain`] for the `io::Error` that tokio-rustls returns (it wraps the rustls error).
pub fn explain_io(err: &io::Error, side: Role) -> String {
    match err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        Some(e) => explain(e, side),
        // (A server at its limits drops a handshake unanswered, and one
        // that refuses a client may be gone before its alert arrives.)
        None if err.kind() == io::ErrorKind::UnexpectedEof && side == Role::Client => {
            format!(
                "the server closed the connection during the TLS handshake ({err}): it \
                 may be busy (at its connection limit) or have refused this client; its \
                 log says which"
            )
        }
        None if err.kind() == io::ErrorKind::UnexpectedEof => format!(
            "the {} closed the connection during the TLS handshake ({err})",
            side.peer()
        ),
        None => err.to_string(),
    }
}

/// [`explain`] for a quinn connection error: QUIC carries TLS alerts as
/// `CRYPTO_ERROR` codes (0x100 + alert), both the one we sent and the one we got.
pub fn explain_quic(err: &quinn::ConnectionError, side: Role) -> String {
    let alert_of = |code: quinn::TransportErrorCode| {
        let code = u64::from(code);
        (0x100..0x200)
            .contains(&code)
            .then(|| AlertDescription::from((code - 0x100) as u8))
    };
    match err {
        // We refused: translate the alert we sent back to the local error it stands for.
        quinn::ConnectionError::TransportError(te) => match alert_of(te.code) {
            Some(alert) => match local_error_for_sent_alert(alert) {
                Some(local) => explain(&local, side),
                None => format!("TLS handshake failed: {}", te.reason),
            },
            None => err.to_string(),
        },
        // The peer refused.
        quinn::ConnectionError::ConnectionClosed(cc) => match alert_of(cc.error_code) {
            Some(alert) => explain(&rustls::Error::AlertReceived(alert), side),
            None => err.to_string(),
        },
        _ => err.to_string(),
    }
}

fn local_error_for_sent_alert(alert: AlertDescription) -> Option<rustls::Error> {
    use rustls::Error as E;
    Some(match alert {
        AlertDescription::UnknownCA => E::InvalidCertificate(CertificateError::UnknownIssuer),
        AlertDescription::AccessDenied => {
            E::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
        }
        AlertDescription::CertificateRequired => E::NoCertificatesPresented,
        AlertDescription::UnsupportedCertificate => {
            E::InvalidCertificate(CertificateError::InvalidPurpose)
        }
        AlertDescription::BadCertificate => E::InvalidCertificate(CertificateError::BadEncoding),
        AlertDescription::CertificateExpired => E::InvalidCertificate(CertificateError::Expired),
        AlertDescription::NoApplicationProtocol => E::NoApplicationProtocol,
        _ => return None,
    })
}

fn explain_with(err: &rustls::Error, side: Role, dir: Option<&Path>) -> String {
    let file = |name: &str| match dir {
        Some(d) => d.join(name).display().to_string(),
        None => name.to_string(),
    };
    let peer = side.peer();
    let (our_known, peer_known) = match side {
        Role::Server => (KNOWN_CLIENT_KEYS, KNOWN_SERVER_KEYS),
        Role::Client => (KNOWN_SERVER_KEYS, KNOWN_CLIENT_KEYS),
    };
    let our_key = match side {
        Role::Server => "server key",
        Role::Client => "client key",
    };
    use rustls::Error as E;
    match err {
        // --- The peer refused us (it sent an alert).
        E::AlertReceived(alert) => match alert {
            AlertDescription::AccessDenied => format!(
                "the {peer} refused our {our_key} (it is not in the {peer}'s read-only \
                 {peer_known}: lockdown); ask the {peer}'s administrator to add it"
            ),
            AlertDescription::UnknownCA => format!(
                "the {peer} does not trust our certificate: it is not signed by the {peer}'s CA \
                 (our {} and the {peer}'s {CA_CERT} must come from the same `jsrv init`)",
                file(side.files().0)
            ),
            AlertDescription::CertificateRequired => format!(
                "the {peer} requires a client certificate and we sent none"
            ),
            AlertDescription::UnsupportedCertificate => format!(
                "the {peer} refused our certificate: it is not a {side} certificate \
                 (wrong extended key usage; is {} the right file?)",
                file(side.files().0)
            ),
            AlertDescription::BadCertificate => format!(
                "the {peer} refused our certificate as malformed or not issued for `{SERVER_NAME}`"
            ),
            AlertDescription::CertificateExpired => format!(
                "the {peer} says our certificate has expired or is not valid yet (check both clocks)"
            ),
            AlertDescription::CertificateUnknown => format!(
                "the {peer} could not check our certificate (an error on its side, e.g. an \
                 unreadable or malformed {peer_known}; see the {peer}'s log)"
            ),
            AlertDescription::DecryptError => format!(
                "the {peer} could not verify our certificate's signature (is our CA the same as the {peer}'s?)"
            ),
            AlertDescription::NoApplicationProtocol => format!(
                "the {peer} does not speak the jsync protocol (ALPN mismatch)"
            ),
            AlertDescription::ProtocolVersion => format!(
                "the {peer} does not support TLS 1.3, which jsync requires"
            ),
            AlertDescription::HandshakeFailure => format!(
                "the {peer} aborted the TLS handshake (no common cipher suite or key exchange?)"
            ),
            other => format!("the {peer} aborted the TLS handshake with alert {other:?}"),
        },
        // --- We refused the peer.
        E::NoCertificatesPresented => match side {
            Role::Server => format!(
                "the client presented no certificate; client certificates are required \
                 (the client needs {CA_CERT}, client.crt and client.key from `jsrv init`)"
            ),
            Role::Client => "the server presented no certificate".to_string(),
        },
        E::InvalidCertificate(cert_err) => match cert_err {
            CertificateError::UnknownIssuer => format!(
                "the {peer}'s certificate is not signed by our CA ({}): {}",
                file(CA_CERT),
                match side {
                    Role::Client => "the server was set up by another `jsrv init`, or it is \
                                     not the server you meant",
                    Role::Server => "it comes from another `jsrv init`",
                }
            ),
            CertificateError::BadSignature => format!(
                "the {peer}'s certificate has a bad signature (is it from another CA with the same name as ours, {}?)",
                file(CA_CERT)
            ),
            CertificateError::ApplicationVerificationFailure => format!(
                "refused the {peer}'s key: it is not in our read-only {} (lockdown)",
                file(our_known)
            ),
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                format!(
                    "the {peer}'s certificate is not a {peer} certificate (wrong extended key usage)"
                )
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!(
                    "the {peer}'s certificate is not issued for `{SERVER_NAME}`: it is not a jsync server certificate"
                )
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                format!("the {peer}'s certificate has expired")
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                format!("the {peer}'s certificate is not valid yet (check both clocks)")
            }
            CertificateError::Other(other) => match other.0.downcast_ref::<KnownKeysError>() {
                Some(kk) => format!("cannot check the {peer}'s key: {kk}"),
                None => format!("the {peer}'s certificate is invalid: {other}"),
            },
            other => format!("the {peer}'s certificate is invalid: {other}"),
        },
        E::NoApplicationProtocol => {
            format!("the {peer} does not speak the jsync protocol (ALPN mismatch)")
        }
        E::PeerIncompatible(why) => format!("the {peer} is incompatible: {why:?}"),
        // (What answers is not TLS at all: another service on that port.)
        E::InvalidMessage(_) | E::InappropriateHandshakeMessage { .. } => format!(
            "TLS error with the {peer}: {err} (is a jsync {peer} listening on that port?)"
        ),
        other => format!("TLS error with the {peer}: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    use rustls::{ClientConnection, Connection, ServerConnection};

    use super::*;
    use crate::identity::{init, CLIENT_CERT, CLIENT_KEY, SERVER_CERT, SERVER_KEY};
    use crate::known_keys::TrustMode;

    /// An `init`ed config dir with both identities loaded.
    struct Site {
        _tmp: tempfile::TempDir,
        dir: PathBuf,
        server: Identity,
        client: Identity,
    }

    fn site() -> Site {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        init(&dir).unwrap();
        Site {
            server: Identity::load(&dir, Role::Server).unwrap(),
            client: Identity::load(&dir, Role::Client).unwrap(),
            dir,
            _tmp: tmp,
        }
    }

    /// `id` with its trust anchor replaced by `other`'s CA.
    fn trusting(id: &Identity, other: &Site) -> Identity {
        Identity {
            ca: other.server.ca.clone(),
            ..id.clone()
        }
    }

    struct Outcome {
        client: Result<(), rustls::Error>,
        server: Result<(), rustls::Error>,
        client_conn: ClientConnection,
        server_conn: ServerConnection,
    }

    /// Moves everything `from` wants to send into `to`; returns whether bytes moved.
    fn pump(
        from: &mut Connection,
        to: &mut Connection,
        to_err: &mut Option<rustls::Error>,
    ) -> bool {
        let mut buf = Vec::new();
        while from.wants_write() {
            from.write_tls(&mut buf).unwrap();
        }
        if buf.is_empty() || to_err.is_some() {
            return false;
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            if to.read_tls(&mut rd).unwrap() == 0 {
                break;
            }
            if let Err(e) = to.process_new_packets() {
                *to_err = Some(e);
                break;
            }
        }
        true
    }

    /// Runs a handshake in memory, then a ping from the client and a pong from the
    /// server, so that a refusal of the client certificate reaches the client (TLS 1.3
    /// reports it at the client's first read).
    fn connect(ccfg: Arc<rustls::ClientConfig>, scfg: Arc<rustls::ServerConfig>) -> Outcome {
        use std::io::{Read, Write};
        // Any name: the verifier always checks SERVER_NAME.
        let name = ServerName::try_from("192.0.2.1").unwrap();
        let mut client = Connection::Client(ClientConnection::new(ccfg, name).unwrap());
        let mut server = Connection::Server(ServerConnection::new(scfg).unwrap());
        let (mut cerr, mut serr) = (None, None);
        let mut pinged = false;
        let mut ponged = false;
        let mut got_pong = false;
        for _ in 0..100 {
            let mut moved = pump(&mut client, &mut server, &mut serr);
            moved |= pump(&mut server, &mut client, &mut cerr);
            if cerr.is_none() && !client.is_handshaking() && !pinged {
                client.writer().write_all(b"ping").unwrap();
                pinged = true;
                moved = true;
            }
            if serr.is_none() && !server.is_handshaking() && !ponged {
                let mut buf = [0u8; 4];
                if server.reader().read_exact(&mut buf).is_ok() {
                    assert_eq!(&buf, b"ping");
                    server.writer().write_all(b"pong").unwrap();
                    ponged = true;
                    moved = true;
                }
            }
            if cerr.is_none() && ponged && !got_pong {
                let mut buf = [0u8; 4];
                if client.reader().read_exact(&mut buf).is_ok() {
                    assert_eq!(&buf, b"pong");
                    got_pong = true;
                }
            }
            if !moved {
                break;
            }
        }
        let (Connection::Client(client_conn), Connection::Server(server_conn)) = (client, server)
        else {
            unreachable!()
        };
        let client = match cerr {
            Some(e) => Err(e),
            None if got_pong => Ok(()),
            None => panic!("client neither failed nor got the pong"),
        };
        let server = match serr {
            Some(e) => Err(e),
            None if ponged => Ok(()),
            None => panic!("server neither failed nor got the ping"),
        };
        Outcome {
            client,
            server,
            client_conn,
            server_conn,
        }
    }

    fn known(path: PathBuf) -> Arc<KnownKeys> {
        Arc::new(KnownKeys::open(&path).unwrap())
    }

    fn connect_ids(
        server: &Identity,
        server_known: Option<Arc<KnownKeys>>,
        client: &Identity,
        client_known: Option<Arc<KnownKeys>>,
    ) -> Outcome {
        let opts = TlsOptions::default();
        connect(
            client_config(client, client_known, &opts).unwrap(),
            server_config(server, server_known, &opts).unwrap(),
        )
    }

    fn set_mode(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn same_ca_connects() {
        let s = site();
        let out = connect_ids(&s.server, None, &s.client, None);
        out.client.unwrap();
        out.server.unwrap();
        assert_eq!(out.client_conn.alpn_protocol(), Some(ALPN));
        assert_eq!(out.server_conn.alpn_protocol(), Some(ALPN));
        assert_eq!(
            out.client_conn.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );
        assert_eq!(
            out.client_conn.negotiated_cipher_suite().unwrap().suite(),
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
        );
        let client_cert = &out.server_conn.peer_certificates().unwrap()[0];
        assert_eq!(client_cert, &s.client.chain[0]);
    }

    #[test]
    fn client_cert_from_other_ca_is_refused() {
        let s = site();
        let other = site();
        // A client that trusts our server, but whose certificate comes from another CA.
        let stranger = trusting(&other.client, &s);
        let out = connect_ids(&s.server, None, &stranger, None);
        let serr = out.server.unwrap_err();
        assert_eq!(
            serr,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
        );
        assert_eq!(
            explain_in(&serr, Role::Server, &s.dir),
            format!(
                "the client's certificate is not signed by our CA ({}): it comes from \
                 another `jsrv init`",
                s.dir.join(CA_CERT).display()
            )
        );
        let cerr = out.client.unwrap_err();
        assert_eq!(
            cerr,
            rustls::Error::AlertReceived(AlertDescription::UnknownCA)
        );
        let msg = explain(&cerr, Role::Client);
        assert!(
            msg.starts_with(
                "the server does not trust our certificate: it is not signed by the server's CA"
            ),
            "{msg}"
        );
    }

    #[test]
    fn server_from_other_ca_is_refused_by_client() {
        let s = site();
        let other = site();
        let impostor = trusting(&other.server, &s);
        let out = connect_ids(&impostor, None, &s.client, None);
        let cerr = out.client.unwrap_err();
        assert_eq!(
            cerr,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
        );
        assert_eq!(
            explain_in(&cerr, Role::Client, &s.dir),
            format!(
                "the server's certificate is not signed by our CA ({}): the server was set \
                 up by another `jsrv init`, or it is not the server you meant",
                s.dir.join(CA_CERT).display()
            )
        );
        let serr = out.server.unwrap_err();
        assert_eq!(
            serr,
            rustls::Error::AlertReceived(AlertDescription::UnknownCA)
        );
        assert!(
            explain(&serr, Role::Server).starts_with("the client does not trust our certificate")
        );
    }

    #[test]
    fn client_cert_as_server_cert_is_refused() {
        let s = site();
        // The server presents the client's certificate and key.
        let confused = Identity {
            role: Role::Server,
            ..s.client.clone()
        };
        let out = connect_ids(&confused, None, &s.client, None);
        let cerr = out.client.unwrap_err();
        assert!(
            matches!(&cerr, rustls::Error::InvalidCertificate(_)),
            "{cerr:?}"
        );
        assert!(explain(&cerr, Role::Client).starts_with("the server's certificate is not"));
        assert!(out.server.is_err());
    }

    #[test]
    fn no_client_cert_is_refused() {
        let s = site();
        let provider = provider();
        let verifier = Arc::new(ServerVerifier {
            inner: webpki_server_verifier(&s.client.ca, provider.clone()).unwrap(),
            provider: provider.clone(),
            known: None,
            who: "server".into(),
        });
        let mut ccfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        ccfg.alpn_protocols = vec![ALPN.to_vec()];
        let scfg = server_config(&s.server, None, &TlsOptions::default()).unwrap();
        let out = connect(Arc::new(ccfg), scfg);
        let serr = out.server.unwrap_err();
        assert_eq!(serr, rustls::Error::NoCertificatesPresented);
        assert!(explain(&serr, Role::Server)
            .starts_with("the client presented no certificate; client certificates are required"));
        let cerr = out.client.unwrap_err();
        assert_eq!(
            cerr,
            rustls::Error::AlertReceived(AlertDescription::CertificateRequired)
        );
        assert_eq!(
            explain(&cerr, Role::Client),
            "the server requires a client certificate and we sent none"
        );
    }

    #[test]
    fn tofu_records_then_knows_on_both_sides() {
        let s = site();
        let kc = s.dir.join(KNOWN_CLIENT_KEYS);
        let ks = s.dir.join(KNOWN_SERVER_KEYS);
        fs::write(&kc, "").unwrap();
        fs::write(&ks, "# servers\n").unwrap();
        let (kc_keys, ks_keys) = (known(kc.clone()), known(ks.clone()));
        assert_eq!(kc_keys.mode(), TrustMode::Tofu);
        let opts = TlsOptions::default();
        let out = connect(
            client_config_for_peer(
                &s.client,
                Some(ks_keys.clone()),
                &opts,
                "server 192.0.2.1:7070",
            )
            .unwrap(),
            server_config_for_peer(
                &s.server,
                Some(kc_keys.clone()),
                &opts,
                "client 192.0.2.9:5555",
            )
            .unwrap(),
        );
        out.client.unwrap();
        out.server.unwrap();
        let kc_text = fs::read_to_string(&kc).unwrap();
        let ks_text = fs::read_to_string(&ks).unwrap();
        assert_eq!(kc_text.lines().count(), 1, "{kc_text}");
        assert!(kc_text.starts_with("ed25519 "), "{kc_text}");
        assert!(
            kc_text.trim_end().ends_with("from client 192.0.2.9:5555"),
            "{kc_text}"
        );
        assert!(
            ks_text.trim_end().ends_with("from server 192.0.2.1:7070"),
            "{ks_text}"
        );
        // Second connection: known, nothing appended.
        let spki = spki_of_cert(&s.client.chain[0]).unwrap();
        let out = connect_ids(&s.server, Some(kc_keys.clone()), &s.client, Some(ks_keys));
        out.client.unwrap();
        out.server.unwrap();
        assert_eq!(fs::read_to_string(&kc).unwrap(), kc_text);
        assert_eq!(fs::read_to_string(&ks).unwrap(), ks_text);
        assert_eq!(kc_keys.check(&spki, "client").unwrap(), KeyVerdict::Known);
    }

    #[test]
    fn lockdown_on_server_refuses_unknown_client_key() {
        let s = site();
        let other = site();
        let kc = s.dir.join(KNOWN_CLIENT_KEYS);
        // Lists some other client's key only.
        let other_spki = spki_of_cert(&other.client.chain[0]).unwrap();
        fs::write(&kc, KnownKeys::line_for(&other_spki, "elsewhere") + "\n").unwrap();
        set_mode(&kc, 0o444);
        let kc_keys = known(kc.clone());
        assert_eq!(kc_keys.mode(), TrustMode::Lockdown);

        let out = connect_ids(&s.server, Some(kc_keys.clone()), &s.client, None);
        let serr = out.server.unwrap_err();
        assert_eq!(
            serr,
            rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
        );
        assert_eq!(
            explain_in(&serr, Role::Server, &s.dir),
            format!(
                "refused the client's key: it is not in our read-only {} (lockdown)",
                kc.display()
            )
        );
        // The refusing side has the details.
        let refusal = kc_keys.last_refusal().unwrap();
        assert_eq!(refusal.fingerprint, s.client.fingerprint());
        let spki = spki_of_cert(&s.client.chain[0]).unwrap();
        assert!(matches!(
            kc_keys.check(&spki, "client"),
            Err(KnownKeysError::NotAllowed { fingerprint, .. }) if fingerprint == s.client.fingerprint()
        ));
        // The refused side is told why.
        let cerr = out.client.unwrap_err();
        assert_eq!(
            cerr,
            rustls::Error::AlertReceived(AlertDescription::AccessDenied)
        );
        let msg = explain(&cerr, Role::Client);
        assert!(
            msg.starts_with(
                "the server refused our client key (it is not in the server's read-only known_client_keys: lockdown)"
            ),
            "{msg}"
        );
        // Not appended, although the tests may run as root.
        assert_eq!(fs::read_to_string(&kc).unwrap().lines().count(), 1);

        // Once listed, the same key is accepted.
        set_mode(&kc, 0o644);
        fs::write(&kc, refusal.line + "\n").unwrap();
        set_mode(&kc, 0o444);
        let out = connect_ids(&s.server, Some(kc_keys.clone()), &s.client, None);
        out.client.unwrap();
        out.server.unwrap();
        assert_eq!(kc_keys.mode(), TrustMode::Lockdown);
    }

    #[test]
    fn lockdown_on_client_refuses_unknown_server_key() {
        let s = site();
        let ks = s.dir.join(KNOWN_SERVER_KEYS);
        fs::write(&ks, "# nobody yet\n").unwrap();
        set_mode(&ks, 0o400);
        let ks_keys = known(ks.clone());
        let out = connect_ids(&s.server, None, &s.client, Some(ks_keys.clone()));
        let cerr = out.client.unwrap_err();
        assert_eq!(
            cerr,
            rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
        );
        assert_eq!(
            explain(&cerr, Role::Client),
            "refused the server's key: it is not in our read-only known_server_keys (lockdown)"
        );
        assert_eq!(
            ks_keys.last_refusal().unwrap().fingerprint,
            s.server.fingerprint()
        );
        let serr = out.server.unwrap_err();
        assert_eq!(
            serr,
            rustls::Error::AlertReceived(AlertDescription::AccessDenied)
        );
        assert!(explain(&serr, Role::Server).starts_with(
            "the client refused our server key (it is not in the client's read-only known_server_keys: lockdown)"
        ));
    }

    #[test]
    fn broken_known_keys_file_fails_closed_with_certificate_unknown() {
        let s = site();
        let kc = s.dir.join(KNOWN_CLIENT_KEYS);
        fs::write(&kc, "").unwrap();
        let kc_keys = known(kc.clone());
        fs::write(&kc, "ed25519 short comment\n").unwrap(); // broken after open
        let out = connect_ids(&s.server, Some(kc_keys), &s.client, None);
        let serr = out.server.unwrap_err();
        let msg = explain(&serr, Role::Server);
        assert!(
            msg.starts_with(&format!(
                "cannot check the client's key: {}:1: ",
                kc.display()
            )),
            "{msg}"
        );
        let cerr = out.client.unwrap_err();
        assert_eq!(
            cerr,
            rustls::Error::AlertReceived(AlertDescription::CertificateUnknown)
        );
    }

    #[test]
    fn reissued_certificate_for_same_key_still_matches() {
        let s = site();
        let kc = s.dir.join(KNOWN_CLIENT_KEYS);
        fs::write(&kc, "").unwrap();
        let out = connect_ids(&s.server, Some(known(kc.clone())), &s.client, None);
        out.server.unwrap();
        set_mode(&kc, 0o444);

        let old_cert = fs::read(s.dir.join(CLIENT_CERT)).unwrap();
        let old_key = fs::read(s.dir.join(CLIENT_KEY)).unwrap();
        fs::remove_file(s.dir.join(CLIENT_CERT)).unwrap();
        init(&s.dir).unwrap();
        assert_ne!(fs::read(s.dir.join(CLIENT_CERT)).unwrap(), old_cert);
        assert_eq!(fs::read(s.dir.join(CLIENT_KEY)).unwrap(), old_key);
        let client = Identity::load(&s.dir, Role::Client).unwrap();
        assert_ne!(client.chain[0], s.client.chain[0]);

        let kc_keys = known(kc);
        assert_eq!(kc_keys.mode(), TrustMode::Lockdown);
        let out = connect_ids(&s.server, Some(kc_keys), &client, None);
        out.client.unwrap();
        out.server.unwrap();

        // The same holds for the server's certificate and known_server_keys.
        let ks = s.dir.join(KNOWN_SERVER_KEYS);
        fs::write(&ks, "").unwrap();
        connect_ids(&s.server, None, &client, Some(known(ks.clone())))
            .client
            .unwrap();
        set_mode(&ks, 0o444);
        fs::remove_file(s.dir.join(SERVER_CERT)).unwrap();
        assert!(fs::metadata(s.dir.join(SERVER_KEY)).is_ok());
        init(&s.dir).unwrap();
        let server = Identity::load(&s.dir, Role::Server).unwrap();
        connect_ids(&server, None, &client, Some(known(ks)))
            .client
            .unwrap();
    }

    #[test]
    fn chacha_only_negotiates_chacha() {
        let s = site();
        let chacha = TlsOptions { chacha_only: true };
        let default = TlsOptions::default();
        for (copts, sopts) in [(&chacha, &chacha), (&chacha, &default), (&default, &chacha)] {
            let out = connect(
                client_config(&s.client, None, copts).unwrap(),
                server_config(&s.server, None, sopts).unwrap(),
            );
            out.client.unwrap();
            out.server.unwrap();
            assert_eq!(
                out.server_conn.negotiated_cipher_suite().unwrap().suite(),
                rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
            );
        }
        assert_eq!(provider_for(&chacha).cipher_suites.len(), 1);
        let order: Vec<_> = provider().cipher_suites.iter().map(|s| s.suite()).collect();
        assert_eq!(
            order,
            [
                rustls::CipherSuite::TLS13_AES_128_GCM_SHA256,
                rustls::CipherSuite::TLS13_AES_256_GCM_SHA384,
                rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
            ]
        );
    }

    #[test]
    fn quic_configs_build_with_and_without_chacha_only() {
        let s = site();
        for opts in [TlsOptions::default(), TlsOptions { chacha_only: true }] {
            quic_server_config(&s.server, None, &opts).unwrap();
            quic_client_config(&s.client, None, &opts).unwrap();
        }
    }

    #[test]
    fn wrong_role_is_a_setup_error() {
        let s = site();
        let err = server_config(&s.client, None, &TlsOptions::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "the identity in {} is a client identity, but a server one is needed",
                s.dir.display()
            )
        );
        assert!(client_config(&s.server, None, &TlsOptions::default()).is_err());
    }

    #[test]
    fn explain_io_unwraps_tokio_rustls_errors() {
        let e = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(AlertDescription::AccessDenied),
        );
        assert!(explain_io(&e, Role::Client).starts_with("the server refused our client key"));
        // A server that hangs up says nothing: what that may mean is said.
        let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "tls handshake eof");
        let said = explain_io(&eof, Role::Client);
        assert!(
            said.contains("may be busy (at its connection limit)"),
            "{said}"
        );
        assert!(!explain_io(&eof, Role::Server).contains("busy"));
    }

    /// A real quinn handshake on loopback (chacha_only, client refused by lockdown):
    /// checks the `with_initial` setup and that both sides' errors explain the refusal.
    #[tokio::test]
    async fn quic_handshake_and_lockdown_refusal() {
        let s = site();
        let opts = TlsOptions { chacha_only: true };
        let kc = s.dir.join(KNOWN_CLIENT_KEYS);
        fs::write(&kc, "").unwrap();
        let kc_keys = known(kc.clone());

        let scfg = quic_server_config(&s.server, Some(kc_keys.clone()), &opts).unwrap();
        let server = quinn::Endpoint::server(
            quinn::ServerConfig::with_crypto(scfg),
            "127.0.0.1:0".parse().unwrap(),
        )
        .unwrap();
        let addr = server.local_addr().unwrap();
        let ccfg = quic_client_config(&s.client, None, &opts).unwrap();
        let mut client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        client.set_default_client_config(quinn::ClientConfig::new(ccfg));

        // 1. TOFU: accepted and recorded.
        let accept = tokio::spawn({
            let server = server.clone();
            async move {
                let conn = server.accept().await.unwrap().await?;
                let mut recv = conn.accept_uni().await?;
                let data = recv.read_to_end(16).await.unwrap();
                Ok::<_, quinn::ConnectionError>(data)
            }
        });
        let conn = client.connect(addr, "anything").unwrap().await.unwrap();
        let mut send = conn.open_uni().await.unwrap();
        send.write_all(b"hi").await.unwrap();
        send.finish().unwrap();
        assert_eq!(accept.await.unwrap().unwrap(), b"hi");
        conn.close(0u32.into(), b"bye");
        assert_eq!(fs::read_to_string(&kc).unwrap().lines().count(), 1);

        // 2. Lockdown with another key listed: refused, both sides say why.
        let other = site();
        let other_spki = spki_of_cert(&other.client.chain[0]).unwrap();
        fs::write(&kc, KnownKeys::line_for(&other_spki, "x") + "\n").unwrap();
        set_mode(&kc, 0o444);
        let accept = tokio::spawn({
            let server = server.clone();
            async move { server.accept().await.unwrap().await.map(|_| ()) }
        });
        let result = async {
            let conn = client.connect(addr, "anything").unwrap().await?;
            // TLS 1.3: the refusal arrives after the client finished its handshake.
            conn.accept_uni().await.map(|_| ())
        }
        .await;
        let cerr = result.unwrap_err();
        let msg = explain_quic(&cerr, Role::Client);
        assert!(
            msg.starts_with("the server refused our client key"),
            "{msg} ({cerr})"
        );
        let serr = accept.await.unwrap().unwrap_err();
        let msg = explain_quic(&serr, Role::Server);
        assert!(
            msg.starts_with("refused the client's key"),
            "{msg} ({serr})"
        );
        assert_eq!(
            kc_keys.last_refusal().unwrap().fingerprint,
            s.client.fingerprint()
        );
        client.wait_idle().await;
    }
}
