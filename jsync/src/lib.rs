//! # jsync
//!
//! The library behind `jcp` and `jsrv`: identities and trust, TLS 1.3 over TCP and
//! QUIC transports, and a symmetric peer/circuit runtime.
//!
//! A node (a [`Client`] or a [`Server`]) registers named service functions in
//! [`Services`]. Over a [`Link`] either side can start a service on the other
//! ([`Link::start`]) and get a [`Peer`]; both ends of the pair open and accept
//! [`Circuit`]s that carry [`proto::Fragment`]s in order, with per-circuit flow
//! control.
//!
//! ```
//! use jsync::{Link, Services};
//! use proto::{Fragment, Op};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A service that echoes every fragment back, then finishes.
//! let server = Services::new().with("echo", |peer| async move {
//!     while let Some(mut c) = peer.accept().await? {
//!         while let Some(f) = c.recv().await? {
//!             c.send(f).await?;
//!         }
//!         c.finish().await?;
//!     }
//!     Ok(())
//! });
//! // An in-process pair; over the network, use Client::connect and Server::run.
//! let (client, _server) = Link::pair(Services::new().into(), server.into()).await?;
//! let peer = client.start("echo", &[]).await?;
//! let mut c = peer.open().await?;
//! c.send(Fragment::new(Op::DATA).with_payload(b"hello".to_vec())).await?;
//! c.finish().await?;
//! assert_eq!(c.recv().await?.unwrap().payload, b"hello");
//! assert!(c.recv().await?.is_none());
//! # Ok(()) }
//! ```

//!
//! The sync engine ([`sync`]) runs on the same runtime; `jcp a b` is this call:
//!
//! ```
//! # #[tokio::main(flavor = "multi_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! std::fs::create_dir(dir.path().join("a"))?;
//! std::fs::write(dir.path().join("a/hello.txt"), "hi")?;
//! // A trailing slash syncs the directory's contents, as in rsync.
//! let opts = jsync::sync::SyncOptions::default();
//! let report = jsync::sync::local(&dir.path().join("a/"), &dir.path().join("b"), &opts).await?;
//! assert_eq!(std::fs::read_to_string(dir.path().join("b/hello.txt"))?, "hi");
//! assert_eq!(report.files_transferred, 1);
//! // Nothing changed: nothing is sent again.
//! let again = jsync::sync::local(&dir.path().join("a/"), &dir.path().join("b"), &opts).await?;
//! assert_eq!(again.files_transferred, 0);
//! # Ok(()) }
//! ```

pub mod civil;
pub mod error;
pub mod identity;
pub mod known_keys;
pub mod net;
pub mod runtime;
pub mod sync;
pub mod tls;

pub use error::{Error, Result};
pub use net::{ClientSecurity, LinkOptions, ServerSecurity, Transport};
pub use runtime::{
    AddrFamily, Circuit, CircuitReceiver, CircuitSender, Client, Link, Peer, Server, ServiceFn,
    Services,
};
