//! A single-node cluster through the real engine: proposals, reads, restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use elastickv_raft::limits::{ENV_MAX_INFLIGHT_MSGS, ENV_MAX_SIZE_PER_MSG};
use elastickv_raft::{EngineConfig, LimitsConfig, RaftHandle, Role, StateMachine, start};
use elastickv_store::{ApplyBatch, Store, StoreError, StoreOptions};

/// Payload `key=value`; output: (entry index, previous value).
struct KvMachine {
    applies: Arc<AtomicU64>,
}

impl StateMachine for KvMachine {
    type Output = (u64, Option<Vec<u8>>);

    fn apply(
        &mut self,
        batch: &mut ApplyBatch,
        index: u64,
        data: &[u8],
    ) -> Result<Self::Output, StoreError> {
        self.applies.fetch_add(1, Ordering::SeqCst);
        let split = data.iter().position(|&b| b == b'=').unwrap_or(data.len());
        let (key, value) = (&data[..split], data.get(split + 1..).unwrap_or_default());
        let previous = batch.get_meta(0, key)?;
        batch.put_meta(0, key, value.to_vec())?;
        Ok((index, previous))
    }
}

fn config() -> EngineConfig {
    EngineConfig {
        threads: 1,
        node_id: 1,
        election_tick: 10,
        heartbeat_tick: 1,
        tick: Duration::from_millis(10),
        lease_reads: true,
        limits: LimitsConfig::default(),
        initial_voters: vec![1],
        known_nodes: vec![1],
    }
}

fn boot(
    store: &Store,
    shards: u32,
    applies: &Arc<AtomicU64>,
) -> RaftHandle<(u64, Option<Vec<u8>>)> {
    let machines = (0..shards)
        .map(|shard| {
            (
                shard,
                KvMachine {
                    applies: applies.clone(),
                },
            )
        })
        .collect();
    start(&config(), store, machines, &|_| None).unwrap()
}

fn read(store: &Store, key: &[u8]) -> Option<Vec<u8>> {
    store.reader().get_meta(0, key).unwrap().map(|v| v.to_vec())
}

#[tokio::test]
async fn proposals_apply_in_order_and_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let applies = Arc::new(AtomicU64::new(0));
    let last_index;
    {
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let raft = boot(&store, 2, &applies);
        let (first, prev) = raft.propose(0, b"a=1".to_vec()).await.unwrap();
        assert_eq!(prev, None);
        let (second, prev) = raft.propose(0, b"a=2".to_vec()).await.unwrap();
        assert_eq!(prev.as_deref(), Some(&b"1"[..]));
        assert!(second > first);

        // Many concurrent proposals: all answered, each exactly once.
        let mut tasks = Vec::new();
        for i in 0..200u32 {
            let raft = raft.clone();
            tasks.push(tokio::spawn(async move {
                raft.propose(i % 2, format!("k{i}={i}").into_bytes()).await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        raft.read_barrier(0).await.unwrap();
        assert_eq!(read(&store, b"a").as_deref(), Some(&b"2"[..]));
        assert_eq!(read(&store, b"k198").as_deref(), Some(&b"198"[..]));

        let status = raft.status();
        assert_eq!(status.len(), 2);
        assert_eq!(status[0].role, Role::Leader);
        assert_eq!(status[0].leader, 1);
        assert_eq!(status[0].applied, status[0].commit);
        last_index = status[0].applied;
        raft.shutdown();
        assert!(matches!(
            raft.propose(0, b"x=1".to_vec()).await,
            Err(elastickv_raft::ProposeError::Stopped)
        ));
    }
    assert_eq!(applies.load(Ordering::SeqCst), 202);

    let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    let raft = boot(&store, 2, &applies);
    // Everything was applied before: nothing is replayed.
    raft.read_barrier(0).await.unwrap();
    assert_eq!(applies.load(Ordering::SeqCst), 202);
    let (index, prev) = raft.propose(0, b"a=3".to_vec()).await.unwrap();
    assert!(index > last_index);
    assert_eq!(prev.as_deref(), Some(&b"2"[..]));
    raft.shutdown();
}

#[tokio::test]
async fn unknown_shard_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    let raft = boot(&store, 1, &Arc::new(AtomicU64::new(0)));
    assert_eq!(
        raft.propose(5, b"a=1".to_vec()).await,
        Err(elastickv_raft::ProposeError::UnknownShard(5))
    );
    raft.shutdown();
}

/// Captures log output of one test without touching the global subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The log lines say exactly what the engine does with the environment.
#[test]
fn engines_log_their_resolved_limits() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let env = |var: &str| match var {
        v if v == ENV_MAX_INFLIGHT_MSGS => Some("lots".to_string()),
        v if v == ENV_MAX_SIZE_PER_MSG => Some("65536".to_string()),
        _ => None,
    };
    let mut cfg = config();
    cfg.limits.max_inflight_msgs = Some(64);
    let raft = tracing::subscriber::with_default(subscriber, || {
        let machines = (0..2)
            .map(|shard| {
                (
                    shard,
                    KvMachine {
                        applies: Arc::new(AtomicU64::new(0)),
                    },
                )
            })
            .collect();
        start(&cfg, &store, machines, &env).unwrap()
    });
    let limits = raft.limits(1).unwrap();
    // Invalid env: the compiled default, not the config's 64.
    assert_eq!(limits.max_inflight_msgs.value, 512);
    assert_eq!(limits.max_size_per_msg.value, 65536);
    assert_eq!(raft.step_queue_capacity(1), 512);
    raft.shutdown();

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let warns: Vec<&str> = text.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warns.len(), 2, "one WARN per engine:\n{text}");
    for line in &warns {
        assert!(line.contains(ENV_MAX_INFLIGHT_MSGS), "{line}");
        assert!(line.contains("\"lots\""), "{line}");
        assert!(line.contains("using the default 512"), "{line}");
    }
    let infos: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("flow-control limits resolved"))
        .collect();
    assert_eq!(infos.len(), 2, "one INFO per engine:\n{text}");
    for (shard, line) in infos.iter().enumerate() {
        for field in [
            "local_id=1".to_string(),
            format!("shard_id={shard}"),
            "max_inflight_msgs=512".into(),
            "max_inflight_msgs_source=default".into(),
            "max_size_per_msg_bytes=65536".into(),
            "max_size_per_msg_source=env".into(),
            "max_committed_size_per_ready_bytes=65536".into(),
        ] {
            assert!(line.contains(&field), "missing {field} in {line}");
        }
    }
}
