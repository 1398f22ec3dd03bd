//! The registry of named service functions a node offers to its peers.
//!
//! Client and server register services the same way; a remote side asks for one by
//! name and the runtime runs it with a [`Peer`] handle paired with the asker.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;

use super::Peer;

/// A service function: runs for as long as its peer lives. Returning `Ok` tells the
/// other side "done" (its `accept` yields `None`); returning `Err` sends the error's
/// text to the other side, where every circuit of the pair fails with it.
pub type ServiceFn = Arc<dyn Fn(Peer) -> BoxFuture<'static, anyhow::Result<()>> + Send + Sync>;

/// Named services, shared by every link of a node.
#[derive(Clone, Default)]
pub struct Services {
    map: HashMap<String, ServiceFn>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.map.keys()).finish()
    }
}

impl Services {
    /// No services: such a node can still start services on the other side.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `f` under `name`, replacing any earlier one.
    pub fn register<F, Fut>(&mut self, name: &str, f: F) -> &mut Self
    where
        F: Fn(Peer) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.map
            .insert(name.to_string(), Arc::new(move |peer| Box::pin(f(peer))));
        self
    }

    /// Builder form of [`Services::register`].
    pub fn with<F, Fut>(mut self, name: &str, f: F) -> Self
    where
        F: Fn(Peer) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.register(name, f);
        self
    }

    pub(crate) fn get(&self, name: &str) -> Option<ServiceFn> {
        self.map.get(name).cloned()
    }

    /// The registered names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }
}
