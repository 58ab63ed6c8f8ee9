//! Routing of keyed commands to shards: key -> slot -> shard, then one
//! shard, several shards in parallel (fan-out, merged back in request
//! order), or a refusal when a command that Redis makes atomic would span
//! shards.
//!
//! # Layout
//!
//! - [`slots`]: Redis Cluster slot hashing and the slot -> shard map.
//! - [`Router`]: runs a parsed command over a [`Backend`].
//! - [`Backend`]: what the router needs from the node: linearizable read
//!   barriers, views of a shard's data, and proposals through a shard's
//!   log. The node implements it over raft and the store; tests implement
//!   it in memory.
//!
//! # Atomicity
//!
//! MSET, MSETNX, RENAME, RENAMENX, SMOVE, SINTER, SUNIONSTORE and the
//! like must be atomic, so all their keys must live on one shard (one raft
//! log; reads see one point in time of it). Keys in different slots of the same
//! shard are fine; keys on different shards get Redis Cluster's
//! `-CROSSSLOT` error. DEL, UNLINK, EXISTS and MGET are not atomic across
//! keys in Redis Cluster either, and fan out.

pub mod slots;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use elastickv_redis::cmd::{keys, strings};
use elastickv_redis::command::{Command, Parsed};
use elastickv_redis::exec::{self, ScanStep};
use elastickv_redis::keyspace::StorageError;
use elastickv_redis::keyspace::{KeyCounts, KeyspaceRead, KeyspaceScan};
use elastickv_redis::{ReadTime, Route, command, errors, log};
use elastickv_resp::Reply;
use futures::future::join_all;

pub use slots::{SLOTS, shard_for_key, shard_for_slot, slot_for_key, slot_range};

/// A read-only view of one shard's data.
pub trait ShardView: KeyspaceRead + KeyspaceScan {}
impl<T: KeyspaceRead + KeyspaceScan + ?Sized> ShardView for T {}

/// The node, as the router sees it.
pub trait Backend: Send + Sync + 'static {
    fn shard_count(&self) -> u32;

    /// This node's wall clock (Unix ms): a hint for expiry, never the
    /// judge (see [`ReadTime`]).
    fn now_ms(&self) -> u64;

    /// Resolves once `shard` may be read linearizably here, with the shard
    /// clock of the state a read will see.
    fn read_barrier(&self, shard: u32) -> impl Future<Output = Result<u64, Reply>> + Send;

    /// Moves `shard`'s replicated clock up to its leader's wall clock
    /// (through the log; unless that was done since `asked_at`), then
    /// resolves like [`Backend::read_barrier`].
    fn advance_clock(
        &self,
        shard: u32,
        asked_at: Instant,
    ) -> impl Future<Output = Result<u64, Reply>> + Send;

    /// Runs `f` over a view of `shard`'s data, never a half-installed
    /// snapshot of it. With `snapshot`, every lookup `f` makes sees one
    /// point in time (a multi-key read needs that, and a long scan should
    /// use it so it holds nothing up); without, `f` must be short.
    fn with_view<T>(&self, shard: u32, snapshot: bool, f: impl FnOnce(&dyn ShardView) -> T) -> T;

    /// The key counts of `shard`, as of its last apply.
    fn key_counts(&self, shard: u32) -> KeyCounts;

    /// Queues `write` on `shard`'s log and returns a future of the reply
    /// produced by applying it. Submissions made one after another are
    /// queued in that order.
    fn submit(&self, shard: u32, write: log::Write) -> impl Future<Output = ReplyFuture> + Send;

    /// Queues a transaction (MULTI ... EXEC) on `shard`'s log, like
    /// [`Backend::submit`].
    fn submit_transaction(
        &self,
        shard: u32,
        transaction: log::Transaction,
    ) -> impl Future<Output = ReplyFuture> + Send;

    /// Queues a change to the scripts and function libraries on shard 0's
    /// log (see `elastickv_redis::registry`), like [`Backend::submit`].
    fn submit_scripts(
        &self,
        change: log::ScriptsChange,
    ) -> impl Future<Output = ReplyFuture> + Send;
}

/// The completion of a started command.
pub type ReplyFuture = Pin<Box<dyn Future<Output = Reply> + Send + 'static>>;

fn ready(reply: Reply) -> ReplyFuture {
    Box::pin(std::future::ready(reply))
}

pub struct Router<B> {
    backend: Arc<B>,
    shards: u32,
}

impl<B> Clone for Router<B> {
    fn clone(&self) -> Self {
        Router {
            backend: self.backend.clone(),
            shards: self.shards,
        }
    }
}

fn storage_error(e: StorageError) -> Reply {
    Reply::error(format!("ERR {e}"))
}

impl<B: Backend> Router<B> {
    pub fn new(backend: Arc<B>) -> Router<B> {
        let shards = backend.shard_count();
        Router { backend, shards }
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    pub fn shards(&self) -> u32 {
        self.shards
    }

    /// Runs a keyed or shard-wide command (any route but `Local`) to the
    /// end.
    pub async fn execute(&self, parsed: Parsed, args: Vec<Bytes>) -> Reply {
        self.start(parsed, args).await.await
    }

    /// Starts a command: its writes are queued on their shards' logs before
    /// this returns, so commands started one after another by a connection
    /// are applied in that order. The returned future finishes it.
    pub async fn start(&self, parsed: Parsed, args: Vec<Bytes>) -> ReplyFuture {
        match parsed.spec.route {
            Route::Key => {
                // Argument 1 for most; OBJECT ENCODING and the like name
                // theirs at 2.
                let Some(&(_, key)) = slots::command_keys(&parsed, &args).first() else {
                    return ready(Reply::static_error(errors::SYNTAX));
                };
                let shard = shard_for_key(key, self.shards);
                match parsed.command {
                    Command::Write(write) => self.backend.submit(shard, write).await,
                    command => {
                        let this = self.clone();
                        Box::pin(async move { this.read_on(shard, &command).await })
                    }
                }
            }
            Route::SameShard => {
                let mut shards = slots::command_keys(&parsed, &args)
                    .into_iter()
                    .map(|(_, key)| shard_for_key(key, self.shards));
                let Some(first) = shards.next() else {
                    return ready(Reply::static_error(errors::SYNTAX));
                };
                if shards.any(|s| s != first) {
                    return ready(Reply::static_error(errors::CROSSSLOT));
                }
                match parsed.command {
                    Command::Write(write) => self.backend.submit(first, write).await,
                    // SINTER and the like: one point in time of the shard.
                    command => {
                        let this = self.clone();
                        Box::pin(async move {
                            this.read_with(first, true, |view, time| {
                                exec::execute_read(&command, view, time)
                            })
                            .await
                            .unwrap_or_else(|reply| reply)
                        })
                    }
                }
            }
            Route::FanOut => self.fan_out(parsed, args).await,
            Route::AllShards => match parsed.command {
                Command::Keys(pattern) => {
                    let this = self.clone();
                    Box::pin(async move { this.keys(&pattern).await })
                }
                Command::Write(write) => {
                    // FLUSHDB / FLUSHALL: every shard clears itself.
                    let mut pending = Vec::with_capacity(self.shards as usize);
                    for shard in 0..self.shards {
                        pending.push(self.backend.submit(shard, write.clone()).await);
                    }
                    Box::pin(async move {
                        join_all(pending)
                            .await
                            .into_iter()
                            .find(Reply::is_error)
                            .unwrap_or(Reply::OK)
                    })
                }
                _ => ready(Reply::static_error("ERR command is not routed to shards")),
            },
            Route::Scan => {
                let this = self.clone();
                Box::pin(async move {
                    match &parsed.command {
                        Command::Scan(scan) => this.scan(scan).await,
                        _ => Reply::static_error(errors::SYNTAX),
                    }
                })
            }
            Route::Server => match parsed.command {
                Command::DbSize => {
                    let this = self.clone();
                    Box::pin(async move { this.dbsize().await })
                }
                Command::RandomKey => {
                    let this = self.clone();
                    Box::pin(async move { this.random_key().await })
                }
                _ => ready(Reply::static_error("ERR command is not routed to shards")),
            },
            Route::Local => ready(Reply::static_error("ERR command is not routed to shards")),
        }
    }

    /// How many shards there are.
    pub fn shard_count(&self) -> u32 {
        self.shards
    }

    /// The shard `key` lives on.
    pub fn shard_of(&self, key: &[u8]) -> u32 {
        shard_for_key(key, self.shards)
    }

    /// The shards of a parsed command's keys, each once, in key order.
    pub fn key_shards(&self, parsed: &Parsed, args: &[Bytes]) -> Vec<u32> {
        let mut shards: Vec<u32> = Vec::new();
        for (_, key) in slots::command_keys(parsed, args) {
            let shard = self.shard_of(key);
            if !shards.contains(&shard) {
                shards.push(shard);
            }
        }
        shards
    }

    /// WATCH: how `keys`, all on `shard`, look now (whether each exists,
    /// and its revision), read linearizably.
    pub async fn watch(&self, shard: u32, keys: &[Bytes]) -> Result<Vec<log::WatchedKey>, Reply> {
        self.read_with(shard, true, |view, time| {
            exec::watch_revisions(view, time, keys)
        })
        .await
    }

    /// Proposes `write` on `shard` (a blocking pop's attempt), like a
    /// command's write.
    pub async fn start_write(&self, shard: u32, write: log::Write) -> ReplyFuture {
        self.backend.submit(shard, write).await
    }

    /// EXEC: proposes `transaction` on `shard` and answers with its replies
    /// (nil when a watched key changed).
    pub async fn transaction(&self, shard: u32, transaction: log::Transaction) -> Reply {
        self.backend
            .submit_transaction(shard, transaction)
            .await
            .await
    }

    /// SCRIPT LOAD, SCRIPT FLUSH and FUNCTION's changes: proposed on
    /// shard 0, answered once applied.
    pub async fn scripts_change(&self, change: log::ScriptsChange) -> Reply {
        self.backend.submit_scripts(change).await.await
    }

    async fn read_on(&self, shard: u32, command: &Command) -> Reply {
        let snapshot = match command {
            Command::StringRead(strings::Read::MGet(keys))
            | Command::KeyRead(keys::Read::Exists(keys)) => keys.len() > 1,
            _ => false,
        };
        self.read_with(shard, snapshot, |view, time| {
            exec::execute_read(command, view, time)
        })
        .await
        .unwrap_or_else(|reply| reply)
    }

    /// Runs `read` linearizably on `shard`, judging expiry by the shard's
    /// replicated clock. If some key is due by this node's clock but not
    /// yet by the shard's, the shard clock is first moved up to the
    /// leader's and `read` runs again: whatever this node's clock says,
    /// once a read anywhere saw a key expired, no later read sees it.
    async fn read_with<T>(
        &self,
        shard: u32,
        snapshot: bool,
        read: impl Fn(&dyn ShardView, &ReadTime) -> Result<T, StorageError>,
    ) -> Result<T, Reply> {
        let asked_at = Instant::now();
        let replicated = self.backend.read_barrier(shard).await?;
        let time = ReadTime::new(replicated, self.backend.now_ms());
        let out = self
            .backend
            .with_view(shard, snapshot, |view| read(view, &time))
            .map_err(storage_error)?;
        if !time.undecided() {
            return Ok(out);
        }
        let replicated = self.backend.advance_clock(shard, asked_at).await?;
        let time = ReadTime::settled(replicated, self.backend.now_ms());
        self.backend
            .with_view(shard, snapshot, |view| read(view, &time))
            .map_err(storage_error)
    }

    /// DEL/UNLINK/EXISTS/MGET over keys on any shards.
    async fn fan_out(&self, parsed: Parsed, args: Vec<Bytes>) -> ReplyFuture {
        let keys: Vec<(usize, u32)> = slots::command_keys(&parsed, &args)
            .into_iter()
            .map(|(pos, key)| (pos, shard_for_key(key, self.shards)))
            .collect();
        // (shard, argument positions of its keys), in first-seen order.
        let mut groups: Vec<(u32, Vec<usize>)> = Vec::new();
        for &(pos, shard) in &keys {
            match groups.iter_mut().find(|(s, _)| *s == shard) {
                Some((_, positions)) => positions.push(pos),
                None => groups.push((shard, vec![pos])),
            }
        }
        if groups.len() == 1 {
            let shard = groups[0].0;
            return match parsed.command {
                Command::Write(write) => self.backend.submit(shard, write).await,
                command => {
                    let this = self.clone();
                    Box::pin(async move { this.read_on(shard, &command).await })
                }
            };
        }
        let sub_args = |positions: &[usize]| -> Vec<Bytes> {
            std::iter::once(args[0].clone())
                .chain(positions.iter().map(|&p| args[p].clone()))
                .collect()
        };
        if parsed.spec.is_write() {
            // DEL and UNLINK: each shard deletes its own keys.
            let mut pending = Vec::with_capacity(groups.len());
            for (shard, positions) in &groups {
                let keys = positions.iter().map(|&p| args[p].clone()).collect();
                pending.push(self.backend.submit(*shard, command::del(keys)).await);
            }
            return Box::pin(async move { sum_integers(join_all(pending).await) });
        }
        let subs: Vec<(u32, Vec<usize>, Vec<Bytes>)> = groups
            .into_iter()
            .map(|(shard, positions)| {
                let sub = sub_args(&positions);
                (shard, positions, sub)
            })
            .collect();
        let this = self.clone();
        let total_keys = keys.len();
        Box::pin(async move {
            let replies = join_all(subs.iter().map(|(shard, _, sub)| {
                let this = &this;
                async move {
                    match elastickv_redis::parse(sub) {
                        Ok(p) => this.read_on(*shard, &p.command).await,
                        Err(reply) => reply,
                    }
                }
            }))
            .await;
            match parsed.command {
                Command::StringRead(strings::Read::MGet(_)) => {
                    let mut merged = vec![Reply::Null; total_keys];
                    for ((_, positions, _), reply) in subs.iter().zip(replies) {
                        let Reply::Array(values) = reply else {
                            return reply;
                        };
                        for (pos, value) in positions.iter().zip(values) {
                            // Key positions start at argument 1.
                            if let Some(slot) = merged.get_mut(pos - 1) {
                                *slot = value;
                            }
                        }
                    }
                    Reply::Array(merged)
                }
                _ => sum_integers(replies),
            }
        })
    }

    async fn keys(&self, pattern: &[u8]) -> Reply {
        let parts = join_all((0..self.shards).map(|shard| async move {
            let (first, end) = slot_range(shard, self.shards);
            // A point in time: a long scan holds nothing up meanwhile.
            self.read_with(shard, true, |view, time| {
                exec::keys_in(view, first, end, pattern, time)
            })
            .await
        }))
        .await;
        let mut keys = Vec::new();
        for part in parts {
            match part {
                Ok(found) => keys.extend(found.into_iter().map(Reply::Bulk)),
                Err(reply) => return reply,
            }
        }
        Reply::Array(keys)
    }

    async fn dbsize(&self) -> Reply {
        let barriers = join_all((0..self.shards).map(|s| self.backend.read_barrier(s))).await;
        if let Some(Err(reply)) = barriers.into_iter().find(Result::is_err) {
            return reply;
        }
        let total: u64 = (0..self.shards)
            .map(|s| self.backend.key_counts(s).keys)
            .sum();
        Reply::Integer(i64::try_from(total).unwrap_or(i64::MAX))
    }

    /// RANDOMKEY: a shard drawn by its share of the keys, a random slot in
    /// it, and a random live key of the first slot from there (wrapping
    /// around the shard, then trying the other shards) that has one. Not
    /// exactly uniform over keys (keys after empty slots come up more
    /// often), as Redis's is not either.
    async fn random_key(&self) -> Reply {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::from_entropy();
        let counts: Vec<u64> = (0..self.shards)
            .map(|s| self.backend.key_counts(s).keys)
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return Reply::Null;
        }
        let mut pick = rng.gen_range(0..total);
        let first = counts
            .iter()
            .position(|&c| {
                if pick < c {
                    true
                } else {
                    pick -= c;
                    false
                }
            })
            .unwrap_or(0) as u32;
        let shards = std::iter::once(first).chain((0..self.shards).filter(move |&s| s != first));
        for shard in shards {
            let (start, end) = slot_range(shard, self.shards);
            if start >= end {
                continue;
            }
            let from = rng.gen_range(start..end);
            for (mut cursor, stop) in [(from, end), (start, from)] {
                while cursor < stop {
                    let step = self
                        .read_with(shard, true, |view, time| {
                            exec::scan_slots(view, cursor, stop, 1, None, None, time)
                        })
                        .await;
                    let step = match step {
                        Ok(step) => step,
                        Err(reply) => return reply,
                    };
                    if !step.keys.is_empty() {
                        let at = rng.gen_range(0..step.keys.len());
                        return Reply::Bulk(step.keys[at].clone());
                    }
                    match step.next_slot {
                        Some(next) => cursor = next,
                        None => break,
                    }
                }
            }
        }
        Reply::Null
    }

    /// SCAN: the cursor is the next slot to visit. Whole slots are returned
    /// at a time, in slot order across shards, so every key present for the
    /// whole iteration is returned, and returned once.
    async fn scan(&self, scan: &elastickv_redis::command::ScanArgs) -> Reply {
        let mut keys = Vec::new();
        let mut cursor = scan.cursor;
        let mut examined = 0u64;
        let next_cursor = loop {
            if cursor >= u64::from(SLOTS) {
                break 0;
            }
            let slot = cursor as u32;
            let shard = shard_for_slot(slot as u16, self.shards);
            let (_, end) = slot_range(shard, self.shards);
            let budget = scan.count.saturating_sub(examined).max(1);
            let step: Result<ScanStep, Reply> = self
                .read_with(shard, true, |view, time| {
                    exec::scan_slots(
                        view,
                        slot,
                        end,
                        budget,
                        scan.pattern.as_deref(),
                        scan.type_name.as_deref(),
                        time,
                    )
                })
                .await;
            let step = match step {
                Ok(step) => step,
                Err(reply) => return reply,
            };
            examined += step.examined;
            keys.extend(step.keys.into_iter().map(Reply::Bulk));
            match step.next_slot {
                Some(next) => break u64::from(next),
                None if end >= SLOTS => break 0,
                None if examined >= scan.count => break u64::from(end),
                None => cursor = u64::from(end),
            }
        };
        Reply::Array(vec![
            Reply::Bulk(Bytes::from(next_cursor.to_string())),
            Reply::Array(keys),
        ])
    }
}

fn sum_integers(replies: Vec<Reply>) -> Reply {
    let mut total = 0i64;
    for reply in replies {
        match reply {
            Reply::Integer(n) => total += n,
            other => return other,
        }
    }
    Reply::Integer(total)
}

#[cfg(test)]
mod tests;
