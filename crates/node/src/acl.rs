//! The node's ACL users and its ACL LOG.
//!
//! Users live in each node's memory, as in Redis Cluster: `ACL SETUSER`
//! changes the node it is sent to. An ACL file (`aclfile`) given to every
//! node is how a cluster shares its users: loaded at start, again by
//! `ACL LOAD`, and written by `ACL SAVE`. Without a file, the node has the
//! default user, whose password is `requirepass` (none: `nopass`).
//!
//! Connections cache their user and compare a generation number before
//! each command, so a change (or a deletion, which also disconnects the
//! user's clients) reaches them at their next command.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use elastickv_redis::acl::Users;
use parking_lot::{Mutex, RwLock};

/// Most entries ACL LOG keeps (Redis's `acllog-max-len` default).
const LOG_MAX_LEN: usize = 128;

/// Entries this close in time with the same reason, context, object and
/// user are counted together (Redis's grouping delta).
const LOG_GROUPING_MS: u128 = 60_000;

/// One ACL LOG entry.
#[derive(Debug, Clone)]
pub struct LogEntry {
    pub count: u64,
    /// `command`, `key`, `channel` or `auth`.
    pub reason: &'static str,
    /// `toplevel`, `multi` or `lua`.
    pub context: &'static str,
    pub object: Bytes,
    pub username: Bytes,
    pub at: Instant,
    pub client_info: String,
}

/// The node's users, their generation, and the log of refusals.
pub struct Acl {
    users: RwLock<Arc<Users>>,
    generation: AtomicU64,
    log: Mutex<VecDeque<LogEntry>>,
    file: Option<PathBuf>,
    requirepass: Option<String>,
}

impl Acl {
    /// The users of `file` (if given), or just the default user; the
    /// default user's password is `requirepass` unless the file defines
    /// the default user.
    pub fn load(file: Option<&Path>, requirepass: Option<&str>) -> Result<Acl, String> {
        let users = match file {
            Some(path) => read_file(path, requirepass)?,
            None => Users::new(requirepass),
        };
        Ok(Acl {
            users: RwLock::new(Arc::new(users)),
            generation: AtomicU64::new(1),
            log: Mutex::new(VecDeque::new()),
            file: file.map(Path::to_path_buf),
            requirepass: requirepass.map(str::to_string),
        })
    }

    pub fn users(&self) -> Arc<Users> {
        self.users.read().clone()
    }

    /// Bumped by every change of the users.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Changes the users with `change` (on a copy, installed if it
    /// succeeds).
    pub fn modify<T, E>(&self, change: impl FnOnce(&mut Users) -> Result<T, E>) -> Result<T, E> {
        let mut guard = self.users.write();
        let mut users = (**guard).clone();
        let outcome = change(&mut users)?;
        *guard = Arc::new(users);
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(outcome)
    }

    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// ACL LOAD: the file's users replace the node's, or nothing changes.
    pub fn reload(&self) -> Result<(), String> {
        let Some(path) = &self.file else {
            return Err(NO_FILE.into());
        };
        let users = read_file(path, self.requirepass.as_deref())?;
        self.modify(|current| {
            *current = users;
            Ok::<(), String>(())
        })
    }

    /// ACL SAVE: the users to the file (written beside it, then renamed
    /// over it, so a crash leaves the old file or the new one).
    pub fn save(&self) -> Result<(), String> {
        let Some(path) = &self.file else {
            return Err(NO_FILE.into());
        };
        let text = self.users().to_acl_file();
        let staged = path.with_extension("tmp");
        let written = std::fs::write(&staged, text)
            .and_then(|()| std::fs::File::open(&staged).and_then(|f| f.sync_all()))
            .and_then(|()| std::fs::rename(&staged, path));
        written.map_err(|e| {
            tracing::warn!(path = %path.display(), error = %e, "ACL SAVE failed");
            "There was an error trying to save the ACLs. Please check the server logs for more \
             information"
                .to_string()
        })
    }

    /// Adds a refusal to the log, or counts it with a recent one like it.
    pub fn record(&self, mut entry: LogEntry) {
        let mut log = self.log.lock();
        let similar = log.iter().take(10).position(|e| {
            e.reason == entry.reason
                && e.context == entry.context
                && e.object == entry.object
                && e.username == entry.username
                && entry.at.duration_since(e.at).as_millis() <= LOG_GROUPING_MS
        });
        if let Some(at) = similar
            && let Some(mut existing) = log.remove(at)
        {
            existing.count += 1;
            existing.at = entry.at;
            existing.client_info = std::mem::take(&mut entry.client_info);
            log.push_front(existing);
            return;
        }
        log.push_front(entry);
        log.truncate(LOG_MAX_LEN);
    }

    /// The newest `count` entries.
    pub fn log_entries(&self, count: usize) -> Vec<LogEntry> {
        self.log.lock().iter().take(count).cloned().collect()
    }

    pub fn reset_log(&self) {
        self.log.lock().clear();
    }
}

/// Records a refusal of client `client_id` running as `username` in
/// ACL LOG.
pub fn record_refusal(
    state: &crate::NodeState,
    client_id: u64,
    username: Bytes,
    reason: &'static str,
    context: &'static str,
    object: Bytes,
) {
    let client_info = state
        .clients
        .get(client_id)
        .map(|entry| {
            crate::clients::describe(client_id, &entry)
                .trim_end()
                .to_string()
        })
        .unwrap_or_default();
    state.acl.record(LogEntry {
        count: 1,
        reason,
        context,
        object,
        username,
        at: Instant::now(),
        client_info,
    });
}

/// Who runs a script or an EXEC: the commands it runs are checked
/// against this user.
#[derive(Clone)]
pub struct AclCaller {
    pub user: Arc<elastickv_redis::acl::User>,
    pub username: Bytes,
    pub client_id: u64,
}

/// Redis's answer to ACL LOAD/SAVE without a file.
const NO_FILE: &str = "This Redis instance is not configured to use an ACL file. You may want to \
                       specify users via the ACL SETUSER command and then issue a CONFIG REWRITE \
                       (assuming you have a Redis configuration file set) in order to store users \
                       in the Redis configuration.";

fn read_file(path: &Path, requirepass: Option<&str>) -> Result<Users, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("Error loading ACLs, opening file '{}': {e}", path.display()))?;
    Users::from_acl_file(&text, requirepass).map_err(|e| format!("{}{e}", path.display()))
}
