//! Where each peer node's raft transport can be reached, from this node's
//! point of view: the `--peers` list, plus nodes added to the cluster
//! since (their address comes with the membership change).

use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Clone, Default)]
pub struct PeerDirectory {
    addrs: Arc<parking_lot::RwLock<BTreeMap<u64, String>>>,
}

impl PeerDirectory {
    pub fn new(addrs: BTreeMap<u64, String>) -> PeerDirectory {
        PeerDirectory {
            addrs: Arc::new(parking_lot::RwLock::new(addrs)),
        }
    }

    pub fn get(&self, node: u64) -> Option<String> {
        self.addrs.read().get(&node).cloned()
    }

    /// Records `node`'s address unless one is known already (an operator's
    /// `--peers` entry wins over an address learned later). Returns true if
    /// the node is new.
    pub fn learn(&self, node: u64, addr: &str) -> bool {
        let mut addrs = self.addrs.write();
        if addrs.contains_key(&node) || addr.is_empty() {
            return false;
        }
        addrs.insert(node, addr.to_string());
        true
    }

    pub fn all(&self) -> BTreeMap<u64, String> {
        self.addrs.read().clone()
    }
}
