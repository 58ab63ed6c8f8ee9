//! EVAL and SCRIPT on a node.
//!
//! A script runs here, on the node the client is connected to, never in a
//! raft loop: after a linearizable read barrier on its shard, over one
//! snapshot of that shard, in an interpreter from this node's pool. Its
//! reads see the snapshot plus its own writes; its writes are collected as
//! effects, guarded by every key it looked at, and proposed as one entry
//! (see `elastickv_redis::effects`). If a key it saw changed before the
//! entry applied, nothing is applied and the script runs again on a newer
//! snapshot, so what a client gets is always the outcome of one run at one
//! point of the shard's log.
//!
//! A script's shard is the shard of its declared keys (which must share
//! one, else `-CROSSSLOT`). A script declaring none runs on the shard of
//! the first key it touches. It may touch undeclared keys of its shard.

use std::collections::HashMap;
use std::hash::Hasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use elastickv_redis::cmd::pubsub::publish_write;
use elastickv_redis::cmd::scripting::{Eval, NOSCRIPT, ScriptRef};
use elastickv_redis::command::{Command, parse_args};
use elastickv_redis::effects::Speculation;
use elastickv_redis::log::scripts_change::Change;
use elastickv_redis::registry::{self, Recorded};
use elastickv_redis::table::CommandSpec;
use elastickv_redis::{ReadTime, errors, log};
use elastickv_resp::Reply;
use elastickv_router::{Backend, ShardView, slots};
use elastickv_script::{Host, Invocation, RunControl, Shebang, Vm, sha1hex};
use elastickv_store::Store;
use parking_lot::Mutex;
use tokio::sync::OwnedMutexGuard;

use crate::NodeState;

/// How many times a script runs again after its effects met a changed
/// key, before the client gets an error.
const MAX_ATTEMPTS: usize = 64;

/// Redis's default `busy-reply-threshold` (ms): a script running longer
/// is reported, may be killed, and other scripts get `-BUSY`.
pub const DEFAULT_BUSY_MS: u64 = 5_000;

const BUSY: &str =
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.";

/// This node's scripts: the ones EVAL ran here, the ones every node keeps
/// (SCRIPT LOAD, replicated on shard 0; see `elastickv_redis::registry`),
/// the interpreters, and the scripts running now.
#[derive(Debug)]
pub struct Scripts {
    /// Scripts EVAL ran on this node, by SHA1 (as Redis caches them).
    ran: Mutex<HashMap<String, Bytes>>,
    /// The registry as last loaded from shard 0's applied state.
    recorded: Mutex<Recorded>,
    /// Idle interpreters, each with the cache generation it compiled for.
    idle: Mutex<Vec<(u64, VmSlot)>>,
    /// Bumped when compiled scripts must be forgotten (SCRIPT FLUSH):
    /// interpreters of an older one drop what they compiled.
    generation: AtomicU64,
    running: Mutex<Vec<Arc<RunControl>>>,
    busy_ms: AtomicU64,
    /// Runs that had to start again because a key they saw changed.
    pub conflicts: AtomicU64,
    /// Turns of scripts on the same keys (see [`Scripts::take_turn`]).
    turns: Vec<Arc<tokio::sync::Mutex<()>>>,
}

/// How many turns keys are spread over.
const TURNS: usize = 256;

/// An interpreter in the pool.
struct VmSlot(Vm);

impl std::fmt::Debug for VmSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vm")
    }
}

impl Default for Scripts {
    fn default() -> Self {
        Scripts {
            ran: Mutex::new(HashMap::new()),
            recorded: Mutex::new(Recorded::default()),
            idle: Mutex::new(Vec::new()),
            generation: AtomicU64::new(0),
            running: Mutex::new(Vec::new()),
            busy_ms: AtomicU64::new(DEFAULT_BUSY_MS),
            conflicts: AtomicU64::new(0),
            turns: (0..TURNS)
                .map(|_| Arc::new(tokio::sync::Mutex::new(())))
                .collect(),
        }
    }
}

impl Scripts {
    pub fn busy_ms(&self) -> u64 {
        self.busy_ms.load(Ordering::Relaxed)
    }

    pub fn set_busy_ms(&self, ms: u64) {
        self.busy_ms.store(ms, Ordering::Relaxed);
    }

    /// Catches up with the registry as this node last applied it: a
    /// point read when nothing changed.
    fn refresh(&self, store: &Store) -> Result<(), Reply> {
        let unreadable = |e: String| Reply::error(format!("ERR cannot read the scripts: {e}"));
        let generation = store
            .registry(0, registry::GENERATION)
            .map_err(|e| unreadable(e.to_string()))?;
        let generation = registry::decode_all(&generation)
            .map_err(unreadable)?
            .generation;
        if self.recorded.lock().generation == generation && generation != 0 {
            return Ok(());
        }
        let all = store
            .registry(0, b"")
            .map_err(|e| unreadable(e.to_string()))?;
        let fresh = registry::decode_all(&all).map_err(unreadable)?;
        let mut recorded = self.recorded.lock();
        if fresh.script_flushes != recorded.script_flushes {
            self.ran.lock().clear();
            self.forget_compiled();
        }
        *recorded = fresh;
        Ok(())
    }

    /// The body of a script this node has, ran or recorded.
    fn body(&self, sha: &str) -> Option<Bytes> {
        if let Some(body) = self.ran.lock().get(sha) {
            return Some(body.clone());
        }
        self.recorded
            .lock()
            .scripts
            .iter()
            .find(|(s, _)| s == sha)
            .map(|(_, body)| body.clone())
    }

    fn remember(&self, sha: &str, body: Bytes) {
        self.ran.lock().insert(sha.to_string(), body);
    }

    fn forget_compiled(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
        self.idle.lock().clear();
    }

    /// SCRIPT KILL: stops the script that has run longest here.
    pub fn kill(&self) -> Reply {
        let running = self.running.lock();
        match running
            .iter()
            .filter(|run| !run.is_function)
            .max_by_key(|run| run.elapsed())
        {
            Some(run) => {
                run.kill();
                Reply::ok()
            }
            None => Reply::static_error("NOTBUSY No scripts in execution right now."),
        }
    }

    /// Whether a script here has run past the busy threshold.
    fn busy(&self) -> bool {
        self.running.lock().iter().any(|run| run.is_busy())
    }

    /// Runs `f` with an idle interpreter (or a new one).
    fn with_vm<T>(&self, f: impl FnOnce(&mut Vm) -> T) -> Result<T, Reply> {
        let generation = self.generation.load(Ordering::Relaxed);
        let taken = self.idle.lock().pop();
        let mut vm = match taken {
            Some((g, VmSlot(mut vm))) => {
                if g != generation {
                    vm.forget_scripts();
                }
                vm
            }
            None => Vm::new()
                .map_err(|e| Reply::error(format!("ERR cannot start a Lua interpreter: {e}")))?,
        };
        let out = f(&mut vm);
        let mut idle = self.idle.lock();
        if self.generation.load(Ordering::Relaxed) == generation {
            idle.push((generation, VmSlot(vm)));
        }
        Ok(out)
    }

    /// Waits until no other script on one of `keys` runs on this node
    /// (`-BUSY` if one has run past the busy threshold meanwhile). Keys
    /// map to a fixed set of turns, taken in order, so two scripts never
    /// wait for each other.
    async fn take_turn(&self, keys: &[Bytes]) -> Result<Vec<OwnedMutexGuard<()>>, Reply> {
        let mut stripes: Vec<usize> = keys
            .iter()
            .map(|key| {
                let mut hasher = fnv::FnvHasher::default();
                hasher.write(key);
                (hasher.finish() % TURNS as u64) as usize
            })
            .collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut held = Vec::with_capacity(stripes.len());
        for stripe in stripes {
            let turn = self.turns[stripe].clone();
            loop {
                match tokio::time::timeout(Duration::from_millis(50), turn.clone().lock_owned())
                    .await
                {
                    Ok(guard) => {
                        held.push(guard);
                        break;
                    }
                    Err(_) if self.busy() => return Err(Reply::static_error(BUSY)),
                    Err(_) => {}
                }
            }
        }
        Ok(held)
    }

    fn start(&self, control: &Arc<RunControl>) {
        self.running.lock().push(control.clone());
    }

    fn finish(&self, control: &Arc<RunControl>) {
        self.running.lock().retain(|run| !Arc::ptr_eq(run, control));
    }
}

/// The store this node applies to.
fn store(state: &NodeState) -> &Store {
    &state.router.backend().store
}

/// SCRIPT LOAD: compiled here (a script that does not compile is
/// refused), then recorded on shard 0 for every node.
pub async fn load(state: &NodeState, body: Bytes) -> Reply {
    let scripts = &state.scripts;
    let sha = sha1hex(&body);
    match scripts.with_vm(|vm| vm.compile(&sha, &body)) {
        Ok(Ok(())) => {}
        Ok(Err(reply)) | Err(reply) => return reply,
    }
    scripts.remember(&sha, body.clone());
    let change = log::ScriptsChange {
        change: Some(Change::ScriptLoad(log::Script { sha, body })),
    };
    let reply = state.router.scripts_change(change).await;
    if !reply.is_error() {
        let _ = scripts.refresh(store(state));
    }
    reply
}

/// SCRIPT FLUSH: every node forgets every script.
pub async fn flush(state: &NodeState) -> Reply {
    let change = log::ScriptsChange {
        change: Some(Change::ScriptFlush(log::ScriptFlush {})),
    };
    let reply = state.router.scripts_change(change).await;
    if !reply.is_error() {
        let _ = state.scripts.refresh(store(state));
    }
    reply
}

/// SCRIPT EXISTS, as of everything applied before it was asked.
pub async fn exists(state: &NodeState, shas: &[Bytes]) -> Reply {
    if let Err(reply) = state.router.backend().read_barrier(0).await {
        return reply;
    }
    if let Err(reply) = state.scripts.refresh(store(state)) {
        return reply;
    }
    Reply::Array(
        shas.iter()
            .map(|sha| {
                // SHA1s compare without regard to case, as in Redis.
                let known = std::str::from_utf8(sha)
                    .is_ok_and(|s| state.scripts.body(&s.to_ascii_lowercase()).is_some());
                Reply::Integer(i64::from(known))
            })
            .collect(),
    )
}

/// The body of `sha`, looked for again after everything applied so far
/// on shard 0 (a SCRIPT LOAD through another node) when not known here.
async fn find_script(state: &NodeState, sha: &str) -> Result<Option<Bytes>, Reply> {
    let scripts = &state.scripts;
    scripts.refresh(store(state))?;
    if let Some(body) = scripts.body(sha) {
        return Ok(Some(body));
    }
    state.router.backend().read_barrier(0).await?;
    scripts.refresh(store(state))?;
    Ok(scripts.body(sha))
}

/// How one run on a snapshot ended.
enum Run {
    /// The script's reply, and its effects if it wrote.
    Done(Reply, Option<log::Transaction>),
    /// A script without declared keys first touched a key of this shard:
    /// it runs again there.
    Rebind(u32),
    /// A key it touched is expired by this node's clock but not yet by the
    /// shard's: the shard clock moves up first.
    Undecided,
}

/// EVAL, EVALSHA and their `_RO` forms.
pub async fn eval(state: &NodeState, eval: Eval) -> Reply {
    let scripts = &state.scripts;
    let (sha, body) = match eval.script {
        ScriptRef::Body(body) => {
            let sha = sha1hex(&body);
            (sha, body)
        }
        ScriptRef::Sha(sha) => match find_script(state, &sha).await {
            Ok(Some(body)) => (sha, body),
            Ok(None) => return Reply::static_error(NOSCRIPT),
            Err(reply) => return reply,
        },
    };
    let shebang = match Shebang::parse(&body) {
        Ok(shebang) => shebang,
        Err(e) => return Reply::error(format!("ERR {e}")),
    };
    if eval.read_only && !shebang.flags.compat && !shebang.flags.no_writes {
        return Reply::static_error(
            "ERR Can not execute a script with write flag using *_ro command.",
        );
    }
    let read_only = eval.read_only || (!shebang.flags.compat && shebang.flags.no_writes);
    if scripts.busy() {
        return Reply::static_error(BUSY);
    }
    let router = &state.router;
    let mut declared = eval.keys.iter().map(|key| router.shard_of(key));
    let mut shard = match declared.next() {
        Some(first) if declared.all(|s| s == first) => first,
        Some(_) => return Reply::static_error(errors::CROSSSLOT),
        None => 0,
    };
    // Scripts on the same keys take turns on this node, each until its
    // effects applied: they would only void each other's.
    let _turn = match scripts.take_turn(&eval.keys).await {
        Ok(turn) => turn,
        Err(reply) => return reply,
    };
    let backend = router.backend();
    let mut settled = false;
    for attempt in 0..MAX_ATTEMPTS {
        let asked_at = Instant::now();
        let replicated = match backend.read_barrier(shard).await {
            Ok(replicated) => replicated,
            Err(reply) => return reply,
        };
        let time = if settled {
            ReadTime::settled(replicated, backend.now_ms())
        } else {
            ReadTime::new(replicated, backend.now_ms())
        };
        let control = RunControl::new(sha.clone(), false, Duration::from_millis(scripts.busy_ms()));
        scripts.start(&control);
        let run = tokio::task::block_in_place(|| {
            scripts.with_vm(|vm| {
                backend.with_view(shard, true, |view| {
                    let mut host = ShardHost {
                        state,
                        speculation: Speculation::new(view, &time),
                        shard,
                        bound: !eval.keys.is_empty(),
                        rebind: None,
                        control: &control,
                    };
                    let invocation = Invocation {
                        sha: &sha,
                        body: &body,
                        keys: &eval.keys,
                        args: &eval.args,
                        read_only,
                    };
                    let reply = vm.eval(&invocation, &mut host, &control);
                    match host.rebind {
                        Some(other) => Run::Rebind(other),
                        None if time.undecided() => Run::Undecided,
                        None => Run::Done(reply, host.speculation.into_effects()),
                    }
                })
            })
        });
        scripts.finish(&control);
        let (reply, effects) = match run {
            Err(reply) => return reply,
            Ok(Run::Rebind(other)) => {
                shard = other;
                continue;
            }
            Ok(Run::Undecided) => {
                if let Err(reply) = backend.advance_clock(shard, asked_at).await {
                    return reply;
                }
                settled = true;
                continue;
            }
            Ok(Run::Done(reply, effects)) => (reply, effects),
        };
        // EVAL caches what it ran, as Redis does (a script that does not
        // compile is not cached).
        if !matches!(&reply, Reply::Error(e) if e.starts_with(b"ERR Error compiling script")) {
            scripts.remember(&sha, body.clone());
        }
        // A killed script leaves nothing behind.
        let Some(effects) = effects.filter(|_| !control.killed()) else {
            return reply;
        };
        match router.transaction(shard, effects).await {
            Reply::NullArray => {
                scripts.conflicts.fetch_add(1, Ordering::Relaxed);
                // Others keep writing these keys: step aside a little,
                // more each time.
                if attempt >= 2 {
                    let pause = Duration::from_millis((attempt as u64).min(20));
                    tokio::time::sleep(pause).await;
                }
            }
            Reply::Error(e) => return Reply::Error(e),
            _ => return reply,
        }
    }
    Reply::static_error("ERR the script's keys kept changing while it ran; try again")
}

/// What a script's `redis.call` runs against: one shard's snapshot, with
/// the script's writes on top.
struct ShardHost<'s, 'v> {
    state: &'s NodeState,
    speculation: Speculation<'v, dyn ShardView + 'v>,
    shard: u32,
    /// Whether the shard is settled (declared keys, or a key touched).
    bound: bool,
    rebind: Option<u32>,
    control: &'s Arc<RunControl>,
}

const CROSS_SHARD: &str = "ERR Script attempted to access keys that do not hash to the same slot";

impl Host for ShardHost<'_, '_> {
    fn call(&mut self, spec: &'static CommandSpec, args: &[Bytes]) -> Reply {
        let parsed = match parse_args(spec, args) {
            Ok(parsed) => parsed,
            Err(reply) => return reply,
        };
        let shards: Vec<u32> = slots::command_keys(&parsed, args)
            .into_iter()
            .map(|(_, key)| self.state.router.shard_of(key))
            .collect();
        if let Some(&other) = shards.iter().find(|&&s| s != self.shard) {
            if !self.bound && shards.iter().all(|&s| s == other) {
                // Its first key is elsewhere: start over there.
                self.rebind = Some(other);
                self.control.kill();
            }
            return Reply::static_error(CROSS_SHARD);
        }
        if !shards.is_empty() {
            self.bound = true;
        }
        let command = match parsed.command {
            Command::Blocking { write, .. } => Command::Write(write),
            Command::Publish {
                channel,
                message,
                sharded,
            } => {
                let receivers = self.state.pubsub.receivers(&channel, sharded) as i64;
                let write = publish_write(channel, message, sharded);
                return match self.speculation.run(&Command::Write(write)) {
                    Ok(_) => Reply::Integer(receivers),
                    Err(e) => Reply::error(format!("ERR {e}")),
                };
            }
            Command::Ping(None) => return Reply::Simple(Bytes::from_static(b"PONG")),
            Command::Ping(Some(message)) | Command::Echo(message) => return Reply::Bulk(message),
            Command::Time => return crate::session::time_reply(),
            command @ (Command::Write(_)
            | Command::StringRead(_)
            | Command::KeyRead(_)
            | Command::HashRead(_)
            | Command::ListRead(_)
            | Command::SetRead(_)
            | Command::BitmapRead(_)
            | Command::SortedSetRead(_)
            | Command::HyperLogLogRead(_)
            | Command::SortRead(_)) => command,
            _ => {
                return Reply::error(format!(
                    "ERR '{}' cannot be called from a script on this server",
                    spec.name
                ));
            }
        };
        self.speculation
            .run(&command)
            .unwrap_or_else(|e| Reply::error(format!("ERR {e}")))
    }
}
