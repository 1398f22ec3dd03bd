//! The peer/circuit runtime: symmetric nodes that offer named services, and the
//! circuits that carry Fragments between the two ends of a running service.
//!
//! ```text
//!  node A (client)                         node B (server)
//!  Services {"pull": f}                    Services {"push": g}
//!      |  Client::connect ------ link ------ Server::run  |
//!      |  link.start("push") ==> B runs g(peer_b)          |
//!      |  peer_a.open() ------ circuit ----> peer_b.accept()
//!      |  peer_a.accept() <--- circuit ----- peer_b.open()
//! ```
//! Either side can start a service on the other, so "push" and "pull" are the same
//! code run from opposite ends.

mod circuit;
mod framing;
mod link;
mod node;
mod peer;
mod services;

pub use circuit::{Circuit, CircuitReceiver, CircuitSender};
pub use link::Link;
pub use node::{AddrFamily, Client, Server};
pub use peer::Peer;
pub use services::{ServiceFn, Services};
