//! The raft threads and their handle.
//!
//! Each raft thread owns a set of shard engines (shard `s` on thread
//! `s % threads`), so shards' fsyncs, applies and reads proceed in
//! parallel on several cores. Async callers talk to a shard's thread
//! through bounded channels and wake it by unparking it; a thread never
//! waits on anything but its own disk writes and the next tick.
//!
//! Each round: take the queued requests, step the queued inbound messages,
//! tick if due, issue one ReadIndex per shard for the reads that arrived,
//! then run the two-phase ready cycle of every engine around one synced log
//! write. While the thread is inside that write, new proposals queue up and
//! share the next one: group commit falls out of the loop's shape.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

use elastickv_store::{LogBatch, ShardId, Store};
use parking_lot::Mutex;
use raft::prelude::Message;
use tokio::sync::{oneshot, watch};

use crate::answers::{Answer, Courier};
use crate::engine::{
    ConfReply, EngineConfig, EngineLinks, LeaseView, MemberAdded, MembershipChange, ProposalReply,
    ReadWaiter, SNAPSHOT_QUEUE_CAPACITY, ShardEngine, ShardStatus, SnapshotJob, StateMachine,
};
use crate::error::{EngineError, ProposeError, StepError};
use crate::limits::RaftLimits;
use crate::mailbox::StepLane;
use crate::metrics;
use crate::outbox::Outbox;
use crate::reads::ReadPoint;

/// Requests queued for the raft thread beyond this wait (async
/// backpressure) instead of growing memory.
const REQUEST_QUEUE_CAPACITY: usize = 16 * 1024;

enum Request<O> {
    Propose {
        shard: ShardId,
        data: Vec<u8>,
        reply: ProposalReply<O>,
    },
    /// Hand leadership of `shard` to node `to`.
    TransferLeader {
        shard: ShardId,
        to: u64,
    },
    ChangeMembership {
        shard: ShardId,
        change: MembershipChange,
        reply: ConfReply,
    },
    /// How sending a snapshot of `shard` to `to` went.
    ReportSnapshot {
        shard: ShardId,
        to: u64,
        delivered: bool,
    },
    Shutdown,
}

/// Reads waiting for a shard's next ReadIndex, per shard. Readers add
/// themselves here and wake the raft thread, which takes each shard's whole
/// list once per round: a pipeline of N reads costs one ReadIndex and no
/// queue traffic per read. `None` once the raft thread has stopped.
type PendingReads = Arc<Vec<Mutex<Option<Vec<ReadWaiter>>>>>;

/// One raft thread, as its callers reach it.
struct ThreadLink<O> {
    requests: flume::Sender<Request<O>>,
    thread: Thread,
    join: Mutex<Option<JoinHandle<()>>>,
}

struct Shared<O> {
    threads: Vec<ThreadLink<O>>,
    /// The thread of each shard (an index into `threads`).
    thread_of: Vec<usize>,
    reads: PendingReads,
    steps: Vec<StepLane>,
    statuses: Vec<Arc<Mutex<ShardStatus>>>,
    leases: Vec<Arc<Mutex<LeaseView>>>,
    limits: Vec<RaftLimits>,
    outbox: Arc<Outbox>,
    snapshots: flume::Receiver<SnapshotJob>,
    members: flume::Receiver<MemberAdded>,
    /// `Some(reason)` once a raft thread has stopped.
    stopped: watch::Receiver<Option<String>>,
}

impl<O> Shared<O> {
    fn link(&self, shard: ShardId) -> Option<&ThreadLink<O>> {
        self.threads.get(*self.thread_of.get(shard as usize)?)
    }
}

/// A cloneable handle to the raft thread.
pub struct RaftHandle<O> {
    shared: Arc<Shared<O>>,
}

impl<O> Clone for RaftHandle<O> {
    fn clone(&self) -> Self {
        RaftHandle {
            shared: self.shared.clone(),
        }
    }
}

/// Opens one engine per `(shard, state machine)` and starts the raft thread.
///
/// Engines are opened on the calling thread, so a storage problem is
/// reported here rather than after start-up.
pub fn start<SM: StateMachine>(
    cfg: &EngineConfig,
    store: &Store,
    machines: Vec<(ShardId, SM)>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<RaftHandle<SM::Output>, EngineError> {
    // Each engine resolves its limits once; the outbound lanes are sized
    // from those resolutions before the engines open.
    let resolutions: Vec<_> = machines
        .iter()
        .map(|_| RaftLimits::resolve(&cfg.limits, env))
        .collect();
    let capacities: Vec<usize> = resolutions
        .iter()
        .map(|(limits, _)| limits.outbound_lane_capacity())
        .collect();
    let outbox = Arc::new(Outbox::new(&cfg.peers(), &capacities));
    let (snapshots_tx, snapshots_rx) = flume::bounded(SNAPSHOT_QUEUE_CAPACITY);
    let (members_tx, members_rx) = flume::bounded(1024);
    let mut engines = Vec::with_capacity(machines.len());
    let mut steps = Vec::with_capacity(machines.len());
    let mut statuses = Vec::with_capacity(machines.len());
    let mut leases = Vec::with_capacity(machines.len());
    let mut limits = Vec::with_capacity(machines.len());
    for (expected, ((shard, sm), resolved)) in machines.into_iter().zip(resolutions).enumerate() {
        debug_assert_eq!(expected, shard as usize, "shards must be numbered 0..n");
        let status = Arc::new(Mutex::new(ShardStatus::default()));
        let lease = Arc::new(Mutex::new(LeaseView::default()));
        let (engine, lane) = ShardEngine::open(
            cfg,
            store,
            shard,
            sm,
            resolved,
            EngineLinks {
                status: status.clone(),
                lease: lease.clone(),
                outbox: outbox.clone(),
                snapshots: snapshots_tx.clone(),
                members: members_tx.clone(),
            },
        )?;
        steps.push(lane);
        limits.push(*engine.limits());
        statuses.push(status);
        leases.push(lease);
        engines.push(engine);
    }
    // Every interrupted install is finished (engines open above): what is
    // left in the staging directory belongs to cut transfers.
    store.remove_stale_snapshots();
    let reads: PendingReads = Arc::new(
        (0..engines.len())
            .map(|_| Mutex::new(Some(Vec::new())))
            .collect(),
    );
    let thread_count = cfg.threads.clamp(1, engines.len().max(1));
    let thread_of: Vec<usize> = (0..engines.len()).map(|s| s % thread_count).collect();
    let mut groups: Vec<Vec<ShardEngine<SM>>> = (0..thread_count).map(|_| Vec::new()).collect();
    for (shard, engine) in engines.into_iter().enumerate() {
        groups[thread_of[shard]].push(engine);
    }
    let (stopped_tx, stopped_rx) = watch::channel(None);
    let stopped_tx = Arc::new(stopped_tx);
    let courier = Courier::start()?;
    let mut threads = Vec::with_capacity(thread_count);
    for (i, engines) in groups.into_iter().enumerate() {
        let (requests_tx, requests_rx) = flume::bounded(REQUEST_QUEUE_CAPACITY);
        let worker = Worker {
            engines,
            requests: requests_rx,
            reads: reads.clone(),
            store: store.clone(),
            tick: cfg.tick,
            courier: courier.clone(),
            answers: Vec::new(),
        };
        let stopped_tx = stopped_tx.clone();
        let join = thread::Builder::new()
            .name(format!("raft-worker-{i}"))
            .spawn(move || {
                let result = std::panic::catch_unwind(AssertUnwindSafe(move || worker.run()));
                // Reported (the first thread to stop) to whoever waits on
                // `stopped()`: the node logs it and exits.
                let reason = match result {
                    Ok(Ok(())) => "shut down".to_string(),
                    Ok(Err(e)) => e.to_string(),
                    Err(panic) => {
                        let text = panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_else(|| "unknown panic".into());
                        format!("panic in the raft thread: {text}")
                    }
                };
                stopped_tx.send_if_modified(|current| {
                    if current.is_none() {
                        *current = Some(reason);
                        true
                    } else {
                        false
                    }
                });
            })?;
        threads.push(ThreadLink {
            requests: requests_tx,
            thread: join.thread().clone(),
            join: Mutex::new(Some(join)),
        });
    }
    Ok(RaftHandle {
        shared: Arc::new(Shared {
            threads,
            thread_of,
            reads,
            steps,
            statuses,
            leases,
            limits,
            outbox,
            snapshots: snapshots_rx,
            members: members_rx,
            stopped: stopped_rx,
        }),
    })
}

impl<O: Send + 'static> RaftHandle<O> {
    /// Queues `request` for `shard`'s raft thread and wakes it.
    async fn send(&self, shard: ShardId, request: Request<O>) -> Result<(), ProposeError> {
        let link = self
            .shared
            .link(shard)
            .ok_or(ProposeError::UnknownShard(shard))?;
        link.requests
            .send_async(request)
            .await
            .map_err(|_| ProposeError::Stopped)?;
        link.thread.unpark();
        Ok(())
    }

    fn wake(&self, shard: ShardId) {
        if let Some(link) = self.shared.link(shard) {
            link.thread.unpark();
        }
    }

    /// Replicates `data` through `shard`'s log and returns what applying it
    /// produced, once it is durable on a majority and applied here.
    pub async fn propose(&self, shard: ShardId, data: Vec<u8>) -> Result<O, ProposeError> {
        self.submit(shard, data).await?.await
    }

    /// Queues `data` for `shard`'s log and returns once it is queued:
    /// proposals submitted one after another enter the log in that order.
    /// The returned future resolves like [`RaftHandle::propose`].
    pub async fn submit(
        &self,
        shard: ShardId,
        data: Vec<u8>,
    ) -> Result<impl Future<Output = Result<O, ProposeError>> + Send + 'static, ProposeError> {
        let (reply, rx) = oneshot::channel();
        self.send(shard, Request::Propose { shard, data, reply })
            .await?;
        Ok(async move { rx.await.map_err(|_| ProposeError::Stopped)? })
    }

    /// Waits until this node may serve a linearizable read of `shard`: the
    /// leader confirmed its leadership after the call began and this
    /// replica applied everything committed before it. Returns the applied
    /// state the read may be served from.
    pub async fn read_barrier(&self, shard: ShardId) -> Result<ReadPoint, ProposeError> {
        // The leader under a lease answers here, without the raft thread.
        if let Some(lease) = self.shared.leases.get(shard as usize) {
            let view = *lease.lock();
            if view.serve_until.is_some_and(|until| Instant::now() < until) {
                return Ok(view.point);
            }
        }
        let pending = self
            .shared
            .reads
            .get(shard as usize)
            .ok_or(ProposeError::UnknownShard(shard))?;
        let (reply, rx) = oneshot::channel();
        match pending.lock().as_mut() {
            Some(waiters) => waiters.push(reply),
            None => return Err(ProposeError::Stopped),
        }
        self.wake(shard);
        rx.await.map_err(|_| ProposeError::Stopped)?
    }

    /// Asks `shard`'s leader (if it is this node) to hand leadership to
    /// node `to` once `to` has caught up.
    pub async fn transfer_leader(&self, shard: ShardId, to: u64) -> Result<(), ProposeError> {
        self.send(shard, Request::TransferLeader { shard, to })
            .await
    }

    /// Queues an inbound raft message without blocking; a full queue
    /// refuses it (and counts the refusal) so the sender can back off.
    pub fn step(&self, shard: ShardId, msg: Message) -> Result<(), StepError> {
        let lane = self
            .shared
            .steps
            .get(shard as usize)
            .ok_or(StepError::UnknownShard(shard))?;
        lane.try_push(msg)?;
        self.wake(shard);
        Ok(())
    }

    /// Inbound messages refused so far because `shard`'s queue was full.
    pub fn step_refusals(&self, shard: ShardId) -> u64 {
        self.shared
            .steps
            .get(shard as usize)
            .map_or(0, |lane| lane.refused())
    }

    /// Capacity of `shard`'s inbound step queue.
    pub fn step_queue_capacity(&self, shard: ShardId) -> usize {
        self.shared
            .steps
            .get(shard as usize)
            .map_or(0, |lane| lane.capacity())
    }

    /// The outbound lanes, for the network layer to drain.
    pub fn outbox(&self) -> Arc<Outbox> {
        self.shared.outbox.clone()
    }

    /// Snapshots for the network layer to send, each to be answered with
    /// [`RaftHandle::report_snapshot`].
    pub fn snapshot_jobs(&self) -> flume::Receiver<SnapshotJob> {
        self.shared.snapshots.clone()
    }

    /// Nodes that shards' configurations added, for the network layer to
    /// reach.
    pub fn members_added(&self) -> flume::Receiver<MemberAdded> {
        self.shared.members.clone()
    }

    /// Proposes a membership change of `shard` (this node must lead it)
    /// and waits until it is applied here.
    pub async fn change_membership(
        &self,
        shard: ShardId,
        change: MembershipChange,
    ) -> Result<(), ProposeError> {
        let (reply, rx) = oneshot::channel();
        self.send(
            shard,
            Request::ChangeMembership {
                shard,
                change,
                reply,
            },
        )
        .await?;
        rx.await.map_err(|_| ProposeError::Stopped)?
    }

    /// Tells `shard`'s raft whether its snapshot reached `to` (nothing
    /// to tell for an unknown shard or a stopped engine).
    pub async fn report_snapshot(&self, shard: ShardId, to: u64, delivered: bool) {
        let report = Request::ReportSnapshot {
            shard,
            to,
            delivered,
        };
        let _ = self.send(shard, report).await;
    }

    pub fn shard_count(&self) -> usize {
        self.shared.steps.len()
    }

    /// The resolved flow-control limits of `shard`'s engine.
    pub fn limits(&self, shard: ShardId) -> Option<RaftLimits> {
        self.shared.limits.get(shard as usize).copied()
    }

    pub fn shard_status(&self, shard: ShardId) -> Option<ShardStatus> {
        self.shared
            .statuses
            .get(shard as usize)
            .map(|s| s.lock().clone())
    }

    pub fn status(&self) -> Vec<ShardStatus> {
        self.shared
            .statuses
            .iter()
            .map(|s| s.lock().clone())
            .collect()
    }

    /// Resolves when the raft thread stops, with the reason.
    pub async fn stopped(&self) -> String {
        let mut rx = self.shared.stopped.clone();
        loop {
            if let Some(reason) = rx.borrow().clone() {
                return reason;
            }
            if rx.changed().await.is_err() {
                return "raft worker is gone".into();
            }
        }
    }

    /// Stops the raft thread and waits for it. Whatever is still pending
    /// fails with [`ProposeError::Stopped`].
    pub fn shutdown(&self) {
        for link in &self.shared.threads {
            // The queue may be full; a worker also stops when every sender
            // is gone, but the handle may be cloned elsewhere, so insist.
            while link.requests.try_send(Request::Shutdown).is_err() {
                if link.requests.is_disconnected() {
                    break;
                }
                link.thread.unpark();
                thread::sleep(Duration::from_millis(1));
            }
            link.thread.unpark();
        }
        for link in &self.shared.threads {
            if let Some(join) = link.join.lock().take() {
                let _ = join.join();
            }
        }
    }
}

struct Worker<SM: StateMachine> {
    engines: Vec<ShardEngine<SM>>,
    requests: flume::Receiver<Request<SM::Output>>,
    reads: PendingReads,
    store: Store,
    tick: Duration,
    courier: Courier<SM::Output>,
    /// This round's answers, gathered from the engines.
    answers: Vec<Answer<SM::Output>>,
}

impl<SM: StateMachine> Worker<SM> {
    fn run(mut self) -> Result<(), EngineError> {
        let result = self.run_loop();
        // What applied before the loop ended is still answered as applied.
        self.send_answers();
        let reason = ProposeError::Stopped;
        for engine in &mut self.engines {
            engine.fail_all(reason.clone());
        }
        // Fail whatever is still queued.
        self.requests.drain().for_each(|request| match request {
            Request::Propose { reply, .. } => {
                let _ = reply.send(Err(ProposeError::Stopped));
            }
            Request::ChangeMembership { reply, .. } => {
                let _ = reply.send(Err(ProposeError::Stopped));
            }
            Request::TransferLeader { .. } | Request::ReportSnapshot { .. } | Request::Shutdown => {
            }
        });
        for engine in &self.engines {
            if let Some(pending) = self.reads.get(engine.shard() as usize) {
                for reply in pending.lock().take().into_iter().flatten() {
                    let _ = reply.send(Err(ProposeError::Stopped));
                }
            }
        }
        result
    }

    fn send_answers(&mut self) {
        for engine in &mut self.engines {
            engine.take_answers(&mut self.answers);
        }
        self.courier.send(&mut self.answers);
    }

    /// This thread's engine of `shard`.
    fn engine(&mut self, shard: ShardId) -> Option<&mut ShardEngine<SM>> {
        self.engines.iter_mut().find(|e| e.shard() == shard)
    }

    fn run_loop(&mut self) -> Result<(), EngineError> {
        let mut log_batch = LogBatch::new(&self.store);
        let log_metrics = metrics::LogWriteMetrics::new();
        let mut next_tick = Instant::now() + self.tick;
        let mut readies = Vec::with_capacity(self.engines.len());
        loop {
            let mut busy = false;
            loop {
                match self.requests.try_recv() {
                    Ok(Request::Propose { shard, data, reply }) => {
                        busy = true;
                        match self.engine(shard) {
                            Some(engine) => engine.propose(data, reply),
                            None => {
                                let _ = reply.send(Err(ProposeError::UnknownShard(shard)));
                            }
                        }
                    }
                    Ok(Request::TransferLeader { shard, to }) => {
                        if let Some(engine) = self.engine(shard) {
                            engine.transfer_leader(to);
                        }
                    }
                    Ok(Request::ChangeMembership {
                        shard,
                        change,
                        reply,
                    }) => {
                        busy = true;
                        match self.engine(shard) {
                            Some(engine) => engine.change_membership(change, reply),
                            None => {
                                let _ = reply.send(Err(ProposeError::UnknownShard(shard)));
                            }
                        }
                    }
                    Ok(Request::ReportSnapshot {
                        shard,
                        to,
                        delivered,
                    }) => {
                        busy = true;
                        if let Some(engine) = self.engine(shard) {
                            engine.report_snapshot(to, delivered);
                        }
                    }
                    Ok(Request::Shutdown) => return Ok(()),
                    Err(flume::TryRecvError::Empty) => break,
                    Err(flume::TryRecvError::Disconnected) => return Ok(()),
                }
            }
            for engine in self.engines.iter_mut() {
                busy |= engine.drain_steps();
                let waiters = self
                    .reads
                    .get(engine.shard() as usize)
                    .and_then(|pending| pending.lock().as_mut().map(std::mem::take))
                    .unwrap_or_default();
                busy |= !waiters.is_empty();
                for reply in waiters {
                    engine.read(reply);
                }
            }
            let now = Instant::now();
            if now >= next_tick {
                for engine in &mut self.engines {
                    engine.tick();
                }
                next_tick += self.tick;
                if next_tick <= now {
                    // Fell behind (a long fsync): do not burst-tick.
                    next_tick = now + self.tick;
                }
            }
            for engine in &mut self.engines {
                engine.issue_reads();
            }

            readies.clear();
            for (i, engine) in self.engines.iter_mut().enumerate() {
                let shard = engine.shard();
                if let Some(rd) = engine
                    .ready_phase_a(&mut log_batch)
                    .map_err(|e| e.in_shard(shard))?
                {
                    readies.push((i, rd));
                }
            }
            if !log_batch.is_empty() {
                let must_sync = readies.iter().any(|(_, rd)| rd.must_sync());
                let (bytes, started) = (log_batch.size_in_bytes(), Instant::now());
                log_batch.write(must_sync)?;
                log_metrics.record(bytes, must_sync, started.elapsed().as_secs_f64());
            }
            for (i, rd) in readies.drain(..) {
                let engine = &mut self.engines[i];
                let shard = engine.shard();
                engine
                    .ready_phase_b(rd, &mut log_batch)
                    .map_err(|e| e.in_shard(shard))?;
            }
            for engine in &self.engines {
                engine.publish_status();
            }
            self.send_answers();

            if !busy && !self.engines.iter().any(|e| e.has_work()) {
                let wait = next_tick.saturating_duration_since(Instant::now());
                if !wait.is_zero() {
                    thread::park_timeout(wait);
                }
            }
        }
    }
}
