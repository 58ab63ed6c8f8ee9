//! Connected clients, for CLIENT LIST / CLIENT INFO and INFO clients.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use elastickv_redis::command::KillFilter;
use parking_lot::Mutex;
use tokio::sync::Notify;

#[derive(Debug, Clone)]
pub struct ClientEntry {
    pub addr: SocketAddr,
    pub laddr: SocketAddr,
    pub name: Option<Bytes>,
    pub created: Instant,
    pub last_active: Instant,
    pub last_command: String,
    pub resp: u8,
    /// Commands queued in MULTI; -1 outside a transaction.
    pub multi: i64,
    /// Told by CLIENT KILL: the connection closes.
    pub kill: Arc<Notify>,
    /// CLIENT UNBLOCK's way to a blocked command.
    pub unblock: Arc<Unblock>,
    /// The ACL user it runs as.
    pub user: Bytes,
}

/// A connection's blocked command, as CLIENT UNBLOCK sees it.
#[derive(Debug, Default)]
pub struct Unblock {
    blocked: std::sync::atomic::AtomicBool,
    /// Unblocked with ERROR rather than TIMEOUT.
    error: std::sync::atomic::AtomicBool,
    notify: Notify,
}

impl Unblock {
    pub fn set_blocked(&self, blocked: bool) {
        self.blocked.store(blocked, Ordering::SeqCst);
    }

    /// Resolves when CLIENT UNBLOCK is told; `true` for ERROR.
    pub async fn unblocked(&self) -> bool {
        self.notify.notified().await;
        self.error.load(Ordering::SeqCst)
    }

    /// Unblocks the command if one is blocked.
    fn unblock(&self, error: bool) -> bool {
        if !self.blocked.swap(false, Ordering::SeqCst) {
            return false;
        }
        self.error.store(error, Ordering::SeqCst);
        self.notify.notify_one();
        true
    }
}

#[derive(Debug, Default)]
pub struct Clients {
    next_id: AtomicU64,
    entries: Mutex<BTreeMap<u64, ClientEntry>>,
}

impl Clients {
    pub fn register(&self, addr: SocketAddr, laddr: SocketAddr) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let now = Instant::now();
        self.entries.lock().insert(
            id,
            ClientEntry {
                addr,
                laddr,
                name: None,
                created: now,
                last_active: now,
                last_command: "NULL".into(),
                resp: 2,
                multi: -1,
                kill: Arc::new(Notify::new()),
                unblock: Arc::default(),
                user: Bytes::from_static(b"default"),
            },
        );
        metrics::gauge!("elastickv_connected_clients").increment(1.0);
        id
    }

    pub fn unregister(&self, id: u64) {
        if self.entries.lock().remove(&id).is_some() {
            metrics::gauge!("elastickv_connected_clients").decrement(1.0);
        }
    }

    pub fn count(&self) -> usize {
        self.entries.lock().len()
    }

    pub fn update(&self, id: u64, f: impl FnOnce(&mut ClientEntry)) {
        if let Some(entry) = self.entries.lock().get_mut(&id) {
            f(entry);
        }
    }

    pub fn get(&self, id: u64) -> Option<ClientEntry> {
        self.entries.lock().get(&id).cloned()
    }

    /// CLIENT KILL: signals every connection `filter` matches, except
    /// `me` (the one asking) with SKIPME; returns how many matched and
    /// whether `me` is one of them.
    pub fn kill(&self, filter: &KillFilter, me: u64) -> (usize, bool) {
        let matches = |bytes: &Option<Bytes>, value: &SocketAddr| {
            bytes
                .as_ref()
                .is_none_or(|b| b.as_ref() == value.to_string().as_bytes())
        };
        let mut killed = 0;
        let mut killed_me = false;
        let mut entries = self.entries.lock();
        let mut closed = Vec::new();
        for (&id, entry) in entries.iter() {
            if !matches(&filter.addr, &entry.addr)
                || !matches(&filter.laddr, &entry.laddr)
                || filter.id.is_some_and(|want| want != id)
                // Every connection here is a normal one.
                || filter
                    .kind
                    .as_ref()
                    .is_some_and(|k| !k.eq_ignore_ascii_case(b"normal"))
                || (id == me && filter.skip_me)
            {
                continue;
            }
            if id == me {
                killed_me = true;
            } else {
                entry.kill.notify_one();
                closed.push(id);
            }
            killed += 1;
        }
        // Gone from the list at once, as Redis frees them at once: a second
        // CLIENT KILL or CLIENT LIST does not find them while their tasks
        // wind down (which unregister them again, harmlessly).
        for id in closed {
            if entries.remove(&id).is_some() {
                metrics::gauge!("elastickv_connected_clients").decrement(1.0);
            }
        }
        (killed, killed_me)
    }

    /// CLIENT UNBLOCK: whether connection `id` had a blocked command.
    pub fn unblock(&self, id: u64, error: bool) -> bool {
        self.entries
            .lock()
            .get(&id)
            .is_some_and(|e| e.unblock.unblock(error))
    }

    /// What CLIENT UNBLOCK signals for connection `id`.
    pub fn unblock_signal(&self, id: u64) -> Option<Arc<Unblock>> {
        self.entries.lock().get(&id).map(|e| e.unblock.clone())
    }

    /// What CLIENT KILL signals for connection `id`.
    pub fn kill_signal(&self, id: u64) -> Option<Arc<Notify>> {
        self.entries.lock().get(&id).map(|e| e.kill.clone())
    }

    /// Disconnects every client running as one of `users` (deleted).
    pub fn kill_users(&self, users: &[Bytes]) {
        for entry in self.entries.lock().values() {
            if users.contains(&entry.user) {
                entry.kill.notify_one();
            }
        }
    }

    pub fn all(&self) -> Vec<(u64, ClientEntry)> {
        self.entries
            .lock()
            .iter()
            .map(|(id, e)| (*id, e.clone()))
            .collect()
    }
}

/// One CLIENT LIST line, in Redis's field order. Fields describing Redis
/// internals this server does not have (buffers, pub/sub) read as zero.
pub fn describe(id: u64, e: &ClientEntry) -> String {
    let now = Instant::now();
    format!(
        "id={id} addr={} laddr={} fd=0 name={} age={} idle={} flags={} db=0 sub=0 psub=0 ssub=0 \
         multi={} qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 \
         tot-mem=0 events=r cmd={} user={} redir=-1 resp={}\n",
        e.addr,
        e.laddr,
        e.name
            .as_ref()
            .map_or(String::new(), |n| String::from_utf8_lossy(n).into_owned()),
        now.duration_since(e.created).as_secs(),
        now.duration_since(e.last_active).as_secs(),
        // Redis's `x`: in a MULTI context.
        if e.multi >= 0 { "x" } else { "N" },
        e.multi,
        e.last_command,
        String::from_utf8_lossy(&e.user),
        e.resp,
    )
}
