//! Router behaviour over an in-memory, multi-shard backend.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use bytes::Bytes;
use elastickv_redis::keyspace::{
    KeyCounts, KeyspaceRead, KeyspaceScan, KeyspaceWrite, MemKeyspace, RegistryRecords,
    StorageError, SubRange, SubVisitor,
};
use elastickv_redis::log::{self, LogEntry};
use elastickv_redis::replicated::apply;
use elastickv_resp::Reply;

use super::*;

/// One shard's data, keyed by (slot, key) like the real store.
#[derive(Default)]
struct SlotKeyspace {
    records: BTreeMap<(u16, Vec<u8>), Vec<u8>>,
    counts: KeyCounts,
    clock_ms: u64,
    applied: u64,
    /// Collections' sub-keys (and versions) are kept as the reference
    /// keyspace keeps them.
    subs: MemKeyspace,
}

impl KeyspaceRead for SlotKeyspace {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self
            .records
            .get(&(slot_for_key(key), key.to_vec()))
            .cloned())
    }
    fn sub_get(
        &self,
        key: &[u8],
        version: u64,
        sub: &[u8],
    ) -> Result<Option<Vec<u8>>, StorageError> {
        self.subs.sub_get(key, version, sub)
    }
    fn sub_scan(
        &self,
        key: &[u8],
        version: u64,
        range: SubRange<'_>,
        visit: &mut SubVisitor<'_>,
    ) -> Result<(), StorageError> {
        self.subs.sub_scan(key, version, range, visit)
    }
}

impl KeyspaceScan for SlotKeyspace {
    fn scan(
        &self,
        from_slot: u32,
        end_slot: u32,
        visit: &mut elastickv_redis::keyspace::ScanVisitor<'_>,
    ) -> Result<(), StorageError> {
        for ((slot, key), value) in self.records.range((from_slot as u16, Vec::new())..) {
            if u32::from(*slot) >= end_slot || visit(*slot, key, value).is_break() {
                break;
            }
        }
        Ok(())
    }
}

impl KeyspaceWrite for SlotKeyspace {
    fn put(&mut self, key: &[u8], record: Vec<u8>) -> Result<(), StorageError> {
        self.records
            .insert((slot_for_key(key), key.to_vec()), record);
        Ok(())
    }
    fn delete(&mut self, key: &[u8]) -> Result<(), StorageError> {
        self.records.remove(&(slot_for_key(key), key.to_vec()));
        Ok(())
    }
    fn sub_put(
        &mut self,
        key: &[u8],
        version: u64,
        sub: &[u8],
        value: Vec<u8>,
    ) -> Result<(), StorageError> {
        self.subs.sub_put(key, version, sub, value)
    }
    fn sub_delete(&mut self, key: &[u8], version: u64, sub: &[u8]) -> Result<(), StorageError> {
        self.subs.sub_delete(key, version, sub)
    }
    fn sub_delete_version(&mut self, key: &[u8], version: u64) -> Result<(), StorageError> {
        self.subs.sub_delete_version(key, version)
    }
    fn sub_delete_range(
        &mut self,
        key: &[u8],
        version: u64,
        from: &[u8],
        to: &[u8],
    ) -> Result<(), StorageError> {
        self.subs.sub_delete_range(key, version, from, to)
    }
    fn new_version(&mut self) -> u64 {
        self.subs.new_version()
    }
    fn index_expire(&mut self, _: &[u8], _: u64) -> Result<(), StorageError> {
        Ok(())
    }
    fn unindex_expire(&mut self, _: &[u8], _: u64) -> Result<(), StorageError> {
        Ok(())
    }
    fn clear(&mut self) -> Result<(), StorageError> {
        self.records.clear();
        self.subs.subs.clear();
        self.counts = KeyCounts::default();
        Ok(())
    }
    fn counts(&mut self) -> &mut KeyCounts {
        &mut self.counts
    }
    fn clock_ms(&self) -> u64 {
        self.clock_ms
    }
    fn set_clock_ms(&mut self, now_ms: u64) {
        self.clock_ms = now_ms;
    }
    fn dedup_get(&self, _: u64, _: u64, _: u64) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(None)
    }
    fn dedup_put(&mut self, _: u64, _: u64, _: u64, _: Vec<u8>) -> Result<(), StorageError> {
        Ok(())
    }
    fn dedup_purge(&mut self, _: u64) -> Result<(), StorageError> {
        Ok(())
    }
    // The registry is kept as the reference keyspace keeps it.
    fn registry_get(&self, name: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.subs.registry_get(name)
    }
    fn registry_put(&mut self, name: &[u8], record: Vec<u8>) -> Result<(), StorageError> {
        self.subs.registry_put(name, record)
    }
    fn registry_delete(&mut self, name: &[u8]) -> Result<(), StorageError> {
        self.subs.registry_delete(name)
    }
    fn registry_scan(&self, prefix: &[u8]) -> Result<RegistryRecords, StorageError> {
        self.subs.registry_scan(prefix)
    }
}

impl SlotKeyspace {
    fn apply(&mut self, entry: LogEntry) -> Reply {
        self.applied += 1;
        let index = self.applied;
        apply(self, index, &entry.to_bytes()).unwrap()
    }
}

struct MemBackend {
    shards: Vec<Mutex<SlotKeyspace>>,
    proposals: Mutex<Vec<(u32, log::Write)>>,
    /// This node's wall clock, and the leader's (which stamps entries).
    local_ms: std::sync::atomic::AtomicU64,
    leader_ms: std::sync::atomic::AtomicU64,
    clock_advances: std::sync::atomic::AtomicU64,
}

impl MemBackend {
    fn new(shards: u32) -> MemBackend {
        MemBackend {
            shards: (0..shards)
                .map(|_| Mutex::new(SlotKeyspace::default()))
                .collect(),
            proposals: Mutex::new(Vec::new()),
            local_ms: 1_000_000.into(),
            leader_ms: 1_000_000.into(),
            clock_advances: 0.into(),
        }
    }

    fn set_clocks(&self, local_ms: u64, leader_ms: u64) {
        use std::sync::atomic::Ordering::SeqCst;
        self.local_ms.store(local_ms, SeqCst);
        self.leader_ms.store(leader_ms, SeqCst);
    }
}

impl Backend for MemBackend {
    fn shard_count(&self) -> u32 {
        self.shards.len() as u32
    }
    fn now_ms(&self) -> u64 {
        self.local_ms.load(std::sync::atomic::Ordering::SeqCst)
    }
    async fn read_barrier(&self, shard: u32) -> Result<u64, Reply> {
        Ok(self.shards[shard as usize].lock().unwrap().clock_ms)
    }
    async fn advance_clock(&self, shard: u32, _: Instant) -> Result<u64, Reply> {
        use std::sync::atomic::Ordering::SeqCst;
        self.clock_advances.fetch_add(1, SeqCst);
        let mut ks = self.shards[shard as usize].lock().unwrap();
        ks.apply(LogEntry::tick(self.leader_ms.load(SeqCst)));
        Ok(ks.clock_ms)
    }
    fn with_view<T>(&self, shard: u32, _snapshot: bool, f: impl FnOnce(&dyn ShardView) -> T) -> T {
        let guard = self.shards[shard as usize].lock().unwrap();
        f(&*guard)
    }
    fn key_counts(&self, shard: u32) -> KeyCounts {
        self.shards[shard as usize].lock().unwrap().counts
    }
    async fn submit(&self, shard: u32, write: log::Write) -> ReplyFuture {
        self.proposals.lock().unwrap().push((shard, write.clone()));
        let mut entry = LogEntry::write(write, 0, 0);
        entry.request = None;
        entry.timestamp_ms = self.leader_ms.load(std::sync::atomic::Ordering::SeqCst);
        let reply = self.shards[shard as usize].lock().unwrap().apply(entry);
        Box::pin(std::future::ready(reply))
    }
    async fn submit_transaction(&self, shard: u32, transaction: log::Transaction) -> ReplyFuture {
        let mut entry = LogEntry::transaction(transaction, 0, 0);
        entry.request = None;
        entry.timestamp_ms = self.leader_ms.load(std::sync::atomic::Ordering::SeqCst);
        let reply = self.shards[shard as usize].lock().unwrap().apply(entry);
        Box::pin(std::future::ready(reply))
    }
    async fn submit_scripts(&self, change: log::ScriptsChange) -> ReplyFuture {
        let mut entry = LogEntry::scripts(change, 0, 0);
        entry.request = None;
        entry.timestamp_ms = self.leader_ms.load(std::sync::atomic::Ordering::SeqCst);
        let reply = self.shards[0].lock().unwrap().apply(entry);
        Box::pin(std::future::ready(reply))
    }
}

async fn run(router: &Router<MemBackend>, line: &str) -> Reply {
    let args: Vec<Bytes> = line
        .split(' ')
        .map(|s| Bytes::copy_from_slice(s.as_bytes()))
        .collect();
    match elastickv_redis::parse(&args) {
        Ok(parsed) => router.execute(parsed, args).await,
        Err(reply) => reply,
    }
}

fn bulk(s: &str) -> Reply {
    Reply::Bulk(Bytes::copy_from_slice(s.as_bytes()))
}

/// Two keys that live on different shards of a 4-shard node.
fn keys_on_two_shards() -> (String, String) {
    let a = "a".to_string();
    let shard_a = shard_for_key(a.as_bytes(), 4);
    let b = (0..)
        .map(|i| format!("b{i}"))
        .find(|k| shard_for_key(k.as_bytes(), 4) != shard_a)
        .unwrap();
    (a, b)
}

#[tokio::test]
async fn atomic_commands_refuse_to_span_shards() {
    let router = Router::new(Arc::new(MemBackend::new(4)));
    let (a, b) = keys_on_two_shards();
    assert_eq!(
        run(&router, &format!("MSET {a} 1 {b} 2")).await,
        Reply::static_error(errors::CROSSSLOT)
    );
    assert_eq!(
        run(&router, &format!("RENAME {a} {b}")).await,
        Reply::static_error(errors::CROSSSLOT)
    );
    // Nothing was proposed for the refused commands.
    assert!(router.backend().proposals.lock().unwrap().is_empty());
    // Hash tags keep related keys together.
    assert_eq!(run(&router, "MSET {u}:a 1 {u}:b 2").await, Reply::OK);
    assert_eq!(run(&router, "RENAME {u}:a {u}:c").await, Reply::OK);
}

#[tokio::test]
async fn fan_out_merges_in_request_order() {
    let router = Router::new(Arc::new(MemBackend::new(4)));
    let (a, b) = keys_on_two_shards();
    run(&router, &format!("SET {a} va")).await;
    run(&router, &format!("SET {b} vb")).await;
    assert_eq!(
        run(&router, &format!("MGET {b} missing {a} {b}")).await,
        Reply::Array(vec![bulk("vb"), Reply::Null, bulk("va"), bulk("vb")])
    );
    assert_eq!(
        run(&router, &format!("EXISTS {a} {b} {a} nope")).await,
        Reply::Integer(3)
    );
    assert_eq!(run(&router, "DBSIZE").await, Reply::Integer(2));
    assert_eq!(
        run(&router, &format!("DEL {a} {b} nope")).await,
        Reply::Integer(2)
    );
    assert_eq!(run(&router, "DBSIZE").await, Reply::Integer(0));
}

#[tokio::test]
async fn scan_returns_every_key_once_for_any_count() {
    let router = Router::new(Arc::new(MemBackend::new(4)));
    let all: HashSet<String> = (0..300).map(|i| format!("key:{i}")).collect();
    for key in &all {
        run(&router, &format!("SET {key} v")).await;
    }
    for count in [1, 7, 100, 1000] {
        let mut seen = Vec::new();
        let mut cursor = "0".to_string();
        let mut calls = 0;
        loop {
            calls += 1;
            let Reply::Array(parts) = run(&router, &format!("SCAN {cursor} COUNT {count}")).await
            else {
                panic!("bad reply")
            };
            let (Reply::Bulk(next), Reply::Array(keys)) = (&parts[0], &parts[1]) else {
                panic!("bad reply")
            };
            for k in keys {
                let Reply::Bulk(k) = k else { panic!() };
                seen.push(String::from_utf8(k.to_vec()).unwrap());
            }
            cursor = String::from_utf8(next.to_vec()).unwrap();
            if cursor == "0" {
                break;
            }
        }
        assert_eq!(seen.len(), all.len(), "count {count}: duplicates or misses");
        assert_eq!(seen.iter().cloned().collect::<HashSet<_>>(), all);
        if count == 1000 {
            assert_eq!(calls, 1);
        }
    }
    let Reply::Array(keys) = run(&router, "KEYS key:1?").await else {
        panic!()
    };
    assert_eq!(keys.len(), 10);
    // Cursors past the last slot end the iteration.
    assert_eq!(
        run(&router, "SCAN 99999").await,
        Reply::Array(vec![bulk("0"), Reply::Array(vec![])])
    );
}

#[tokio::test]
async fn flush_clears_every_shard() {
    let router = Router::new(Arc::new(MemBackend::new(3)));
    for i in 0..50 {
        run(&router, &format!("SET k{i} v")).await;
    }
    assert_eq!(run(&router, "DBSIZE").await, Reply::Integer(50));
    assert_eq!(run(&router, "FLUSHALL").await, Reply::OK);
    assert_eq!(run(&router, "DBSIZE").await, Reply::Integer(0));
    let proposals = router.backend().proposals.lock().unwrap();
    let flushes: HashSet<u32> = proposals
        .iter()
        .filter(|(_, write)| {
            matches!(
                &write.family,
                Some(log::write::Family::Keys(log::KeyWrite {
                    command: Some(log::key_write::Command::Flush(_))
                }))
            )
        })
        .map(|(s, _)| *s)
        .collect();
    assert_eq!(flushes.len(), 3);
}

/// Expiry is judged by the shard's replicated clock; this node's clock
/// only says when to move that clock up to the leader's.
#[tokio::test]
async fn expiry_follows_the_shard_clock_whatever_this_node_says() {
    use std::sync::atomic::Ordering::SeqCst;
    let backend = Arc::new(MemBackend::new(1));
    let router = Router::new(backend.clone());
    backend.set_clocks(1_000, 1_000);
    assert_eq!(run(&router, "SET k v PX 100").await, Reply::ok());
    assert_eq!(run(&router, "SET other v").await, Reply::ok());

    // This node's clock runs 500 ms ahead; the leader's says the key has
    // 50 ms left: it is alive, with its time by the shard clock.
    backend.set_clocks(1_550, 1_050);
    assert_eq!(run(&router, "GET k").await, bulk("v"));
    assert_eq!(backend.clock_advances.load(SeqCst), 1);
    assert_eq!(run(&router, "PTTL k").await, Reply::Integer(50));
    // Once the leader's clock passes the expiry, the key is gone...
    backend.set_clocks(1_550, 1_150);
    assert_eq!(run(&router, "GET k").await, Reply::Null);
    // ...for every later reader, even one whose clock is far behind.
    backend.set_clocks(500, 500);
    assert_eq!(run(&router, "EXISTS k").await, Reply::Integer(0));
    assert_eq!(
        run(&router, "KEYS *").await,
        Reply::Array(vec![bulk("other")])
    );
    // And for writes stamped by a leader whose clock stepped back.
    assert_eq!(run(&router, "INCR k").await, Reply::Integer(1));
    // No clock advance when this node sees nothing due.
    let advances = backend.clock_advances.load(SeqCst);
    backend.set_clocks(2_000, 2_000);
    assert_eq!(run(&router, "GET other").await, bulk("v"));
    assert_eq!(backend.clock_advances.load(SeqCst), advances);
}

#[tokio::test]
async fn randomkey_answers_live_keys_from_every_shard() {
    let router = Router::new(Arc::new(MemBackend::new(4)));
    assert_eq!(run(&router, "RANDOMKEY").await, Reply::Null);
    for i in 0..200 {
        run(&router, &format!("SET k{i} v")).await;
    }
    let mut seen = HashSet::new();
    let mut shards = HashSet::new();
    for _ in 0..100 {
        let Reply::Bulk(key) = run(&router, "RANDOMKEY").await else {
            panic!("no key");
        };
        assert_eq!(
            run(
                &router,
                &format!("EXISTS {}", String::from_utf8_lossy(&key))
            )
            .await,
            Reply::Integer(1)
        );
        shards.insert(shard_for_key(&key, 4));
        seen.insert(key);
    }
    assert!(seen.len() >= 20, "{} distinct keys", seen.len());
    assert_eq!(shards.len(), 4);
    // One key left, on one shard: found from any starting point.
    run(&router, "FLUSHALL").await;
    run(&router, "SET lonely v").await;
    for _ in 0..20 {
        assert_eq!(run(&router, "RANDOMKEY").await, bulk("lonely"));
    }
}
