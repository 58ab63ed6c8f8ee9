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
use elastickv_redis::cmd::scripting::{Eval, Fcall, NOSCRIPT, RestorePolicy, ScriptRef};
use elastickv_redis::command::{Command, parse_args};

use crate::acl::AclCaller;
use elastickv_redis::effects::Speculation;
use elastickv_redis::log::scripts_change::Change;
use elastickv_redis::registry::{self, Recorded};
use elastickv_redis::table::CommandSpec;
use elastickv_redis::{ReadTime, errors, log};
use elastickv_resp::Reply;
use elastickv_router::{Backend, ShardView, slots};
use elastickv_script::dump::RestoreError;
use elastickv_script::{
    FunctionInfo, Host, Invocation, LibraryInfo, RunControl, Shebang, Vm, sha1hex,
};
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

const BUSY_EVAL: &str =
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.";
const BUSY_FUNCTION: &str =
    "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE.";

/// This node's scripts: the ones EVAL ran here, the ones every node keeps
/// (SCRIPT LOAD, replicated on shard 0; see `elastickv_redis::registry`),
/// the interpreters, and the scripts running now.
#[derive(Debug)]
pub struct Scripts {
    /// Scripts EVAL ran on this node, by SHA1 (as Redis caches them).
    ran: Mutex<HashMap<String, Bytes>>,
    /// The registry as last loaded from shard 0's applied state.
    recorded: Mutex<Recorded>,
    /// What its libraries register, in name order.
    infos: Mutex<Vec<LibraryInfo>>,
    /// Idle interpreters, each with the cache generation it compiled for.
    idle: Mutex<Vec<(u64, VmSlot)>>,
    /// Bumped when compiled scripts must be forgotten (SCRIPT FLUSH):
    /// interpreters of an older one drop what they compiled.
    generation: AtomicU64,
    /// Runs in progress, with the command that started each.
    running: Mutex<Vec<(Arc<RunControl>, Vec<Bytes>)>>,
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
            infos: Mutex::new(Vec::new()),
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
        // A script loaded changes the generation too: the libraries are
        // loaded again only when they changed.
        let libraries_changed = self.recorded.lock().libraries != fresh.libraries;
        let infos = libraries_changed.then(|| library_infos(&fresh.libraries));
        let mut recorded = self.recorded.lock();
        if fresh.script_flushes != recorded.script_flushes {
            self.ran.lock().clear();
            self.forget_compiled();
        }
        *recorded = fresh;
        if let Some(infos) = infos {
            *self.infos.lock() = infos;
        }
        Ok(())
    }

    /// For INFO: the scripts this node has (ran or recorded), and the
    /// libraries and functions recorded.
    pub fn counts(&self) -> (usize, usize, usize) {
        let scripts = {
            let ran = self.ran.lock();
            let recorded = self.recorded.lock();
            ran.len()
                + recorded
                    .scripts
                    .iter()
                    .filter(|(sha, _)| !ran.contains_key(sha))
                    .count()
        };
        let infos = self.infos.lock();
        let functions = infos.iter().map(|l| l.functions.len()).sum();
        (scripts, infos.len(), functions)
    }

    /// The recorded libraries' code, and the generation they are of.
    fn libraries(&self) -> (u64, Vec<Bytes>) {
        let recorded = self.recorded.lock();
        (
            recorded.generation,
            recorded.libraries.iter().map(|l| l.code.clone()).collect(),
        )
    }

    /// A recorded function (names compare without regard to case).
    fn function(&self, name: &str) -> Option<FunctionInfo> {
        self.infos
            .lock()
            .iter()
            .flat_map(|l| l.functions.iter())
            .find(|f| f.name.eq_ignore_ascii_case(name))
            .cloned()
    }

    fn library(&self, name: &str) -> Option<LibraryInfo> {
        self.infos.lock().iter().find(|l| l.name == name).cloned()
    }

    /// FUNCTION STATS: the function that has run longest here, and what
    /// the libraries hold.
    pub fn stats(&self) -> Reply {
        let bulk = |s: &str| Reply::Bulk(Bytes::copy_from_slice(s.as_bytes()));
        let running = self
            .running
            .lock()
            .iter()
            .filter(|(run, _)| run.is_function)
            .max_by_key(|(run, _)| run.elapsed())
            .map(|(run, command)| {
                Reply::Map(vec![
                    (bulk("name"), bulk(&run.name)),
                    (
                        bulk("command"),
                        Reply::Array(command.iter().cloned().map(Reply::Bulk).collect()),
                    ),
                    (
                        bulk("duration_ms"),
                        Reply::Integer(run.elapsed().as_millis() as i64),
                    ),
                ])
            })
            .unwrap_or(Reply::Null);
        let infos = self.infos.lock();
        let functions: usize = infos.iter().map(|l| l.functions.len()).sum();
        Reply::Map(vec![
            (bulk("running_script"), running),
            (
                bulk("engines"),
                Reply::Map(vec![(
                    bulk("LUA"),
                    Reply::Map(vec![
                        (bulk("libraries_count"), Reply::Integer(infos.len() as i64)),
                        (bulk("functions_count"), Reply::Integer(functions as i64)),
                    ]),
                )]),
            ),
        ])
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

    /// SCRIPT KILL (`functions` false) and FUNCTION KILL: stops the
    /// script or function that has run longest here. Nothing it wrote was
    /// applied, so even one that wrote can be stopped.
    pub fn kill(&self, functions: bool) -> Reply {
        let running = self.running.lock();
        let longest = running
            .iter()
            .filter(|(run, _)| run.is_function == functions)
            .max_by_key(|(run, _)| run.elapsed());
        match longest {
            Some((run, _)) => {
                run.kill();
                Reply::ok()
            }
            // Only the other kind runs: Redis's answer for that.
            None if !running.is_empty() => {
                Reply::static_error(if functions { BUSY_EVAL } else { BUSY_FUNCTION })
            }
            None => Reply::static_error("NOTBUSY No scripts in execution right now."),
        }
    }

    /// Redis's -BUSY for the kind of script that has run past the busy
    /// threshold here, if one has.
    fn busy(&self) -> Option<&'static str> {
        self.running
            .lock()
            .iter()
            .find(|(run, _)| run.is_busy())
            .map(|(run, _)| {
                if run.is_function {
                    BUSY_FUNCTION
                } else {
                    BUSY_EVAL
                }
            })
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
            None => new_vm()?,
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
                    Err(_) => {
                        if let Some(busy) = self.busy() {
                            return Err(Reply::static_error(busy));
                        }
                    }
                }
            }
        }
        Ok(held)
    }

    fn start(&self, control: &Arc<RunControl>, command: &[Bytes]) {
        self.running
            .lock()
            .push((control.clone(), command.to_vec()));
    }

    fn finish(&self, control: &Arc<RunControl>) {
        self.running
            .lock()
            .retain(|(run, _)| !Arc::ptr_eq(run, control));
    }
}

/// What `libraries` register, loaded in a fresh interpreter (each was
/// checked when it was recorded).
fn library_infos(libraries: &[log::Library]) -> Vec<LibraryInfo> {
    let Ok(mut vm) = Vm::new() else {
        return Vec::new();
    };
    libraries
        .iter()
        .filter_map(|library| match vm.load_library(&library.code) {
            Ok(info) => Some(info),
            Err(e) => {
                tracing::warn!(library = %library.name, error = %e, "a recorded function library does not load");
                None
            }
        })
        .collect()
}

/// A fresh interpreter, or the error a client gets when none can start.
fn new_vm() -> Result<Vm, Reply> {
    Vm::new().map_err(|e| Reply::error(format!("ERR cannot start a Lua interpreter: {e}")))
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
    change_scripts(state, Change::ScriptLoad(log::Script { sha, body })).await
}

/// SCRIPT FLUSH: every node forgets every script.
pub async fn flush(state: &NodeState) -> Reply {
    change_scripts(state, Change::ScriptFlush(log::ScriptFlush {})).await
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
pub async fn eval(state: &NodeState, eval: Eval, caller: Option<AclCaller>) -> Reply {
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
        return Reply::static_error(WRITE_FLAG_RO);
    }
    let read_only = eval.read_only || (!shebang.flags.compat && shebang.flags.no_writes);
    let command = vec![Bytes::from_static(b"EVAL")];
    run(
        state,
        Runnable::Script { sha, body },
        &eval.keys,
        &eval.args,
        read_only,
        command,
        caller.as_ref(),
    )
    .await
}

const WRITE_FLAG_RO: &str = "ERR Can not execute a script with write flag using *_ro command.";

/// FCALL and FCALL_RO.
pub async fn fcall(state: &NodeState, fcall: Fcall, caller: Option<AclCaller>) -> Reply {
    let name = String::from_utf8_lossy(&fcall.function).into_owned();
    let function = match find_function(state, &name).await {
        Ok(Some(function)) => function,
        Ok(None) => return Reply::static_error("ERR Function not found"),
        Err(reply) => return reply,
    };
    let (keys, args) = match fcall.keys_and_args() {
        Ok(split) => split,
        Err(reply) => return reply,
    };
    if fcall.read_only && !function.flags.no_writes {
        return Reply::static_error(WRITE_FLAG_RO);
    }
    let read_only = fcall.read_only || function.flags.no_writes;
    let mut command = vec![Bytes::from_static(if fcall.read_only {
        b"FCALL_RO"
    } else {
        b"FCALL"
    })];
    command.push(fcall.function.clone());
    command.extend(fcall.rest.iter().cloned());
    run(
        state,
        Runnable::Function {
            name: function.name,
        },
        &keys,
        &args,
        read_only,
        command,
        caller.as_ref(),
    )
    .await
}

/// What a run executes.
enum Runnable {
    Script { sha: String, body: Bytes },
    Function { name: String },
}

impl Runnable {
    fn label(&self) -> &str {
        match self {
            Runnable::Script { sha, .. } => sha,
            Runnable::Function { name } => name,
        }
    }
}

/// Runs a script or a function on its shard, until its effects apply over
/// what it saw (or it wrote nothing).
async fn run(
    state: &NodeState,
    runnable: Runnable,
    keys: &[Bytes],
    args: &[Bytes],
    read_only: bool,
    command: Vec<Bytes>,
    caller: Option<&AclCaller>,
) -> Reply {
    let scripts = &state.scripts;
    if let Some(busy) = scripts.busy() {
        return Reply::static_error(busy);
    }
    let router = &state.router;
    let mut declared = keys.iter().map(|key| router.shard_of(key));
    let mut shard = match declared.next() {
        Some(first) if declared.all(|s| s == first) => first,
        Some(_) => return Reply::static_error(errors::CROSSSLOT),
        None => 0,
    };
    // Scripts on the same keys take turns on this node, each until its
    // effects applied: they would only void each other's.
    let _turn = match scripts.take_turn(keys).await {
        Ok(turn) => turn,
        Err(reply) => return reply,
    };
    let is_function = matches!(runnable, Runnable::Function { .. });
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
        let control = RunControl::new(
            runnable.label().to_string(),
            is_function,
            Duration::from_millis(scripts.busy_ms()),
        );
        scripts.start(&control, &command);
        let libraries = scripts.libraries();
        let run = tokio::task::block_in_place(|| {
            scripts.with_vm(|vm| {
                if is_function && vm.functions_generation() != Some(libraries.0) {
                    for error in vm.load_libraries(libraries.0, &libraries.1) {
                        tracing::warn!(error = %error, "a recorded function library does not load");
                    }
                }
                backend.with_view(shard, true, |view| {
                    let mut host = ShardHost {
                        state,
                        speculation: Speculation::new(view, &time),
                        shard,
                        bound: !keys.is_empty(),
                        rebind: None,
                        control: &control,
                        caller,
                    };
                    let reply = match &runnable {
                        Runnable::Script { sha, body } => {
                            let invocation = Invocation {
                                sha,
                                body,
                                keys,
                                args,
                                read_only,
                            };
                            vm.eval(&invocation, &mut host, &control)
                        }
                        Runnable::Function { name } => {
                            let invocation = Invocation {
                                sha: name,
                                body: b"",
                                keys,
                                args,
                                read_only,
                            };
                            vm.call_function(name, &invocation, &mut host, &control)
                        }
                    };
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
        if let Runnable::Script { sha, body } = &runnable
            && !matches!(&reply, Reply::Error(e) if e.starts_with(b"ERR Error compiling script"))
        {
            scripts.remember(sha, body.clone());
        }
        // A killed script leaves nothing behind.
        let Some(effects) = effects.filter(|_| !control.killed()) else {
            return reply;
        };
        match router.transaction(shard, effects).await {
            Reply::NullArray => {
                scripts.conflicts.fetch_add(1, Ordering::Relaxed);
                crate::metrics::script_conflict();
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

/// A function of the recorded libraries, looked for again after
/// everything applied so far on shard 0 when not known here.
async fn find_function(state: &NodeState, name: &str) -> Result<Option<FunctionInfo>, Reply> {
    let scripts = &state.scripts;
    scripts.refresh(store(state))?;
    if let Some(function) = scripts.function(name) {
        return Ok(Some(function));
    }
    state.router.backend().read_barrier(0).await?;
    scripts.refresh(store(state))?;
    Ok(scripts.function(name))
}

/// Loads `code` in a fresh interpreter: what it registers, or Redis's
/// error.
fn check_library(code: &[u8]) -> Result<LibraryInfo, Reply> {
    let mut vm = new_vm()?;
    vm.load_library(code)
        .map_err(|e| Reply::error(format!("ERR {e}")))
}

fn library_record(info: &LibraryInfo, replace: bool) -> log::Library {
    log::Library {
        name: info.name.clone(),
        code: info.code.clone(),
        functions: info.functions.iter().map(|f| f.name.clone()).collect(),
        replace,
    }
}

/// Proposes a change to the libraries and catches up with it.
/// Records a change to the scripts or libraries on shard 0 and brings
/// this node's view up to date. The change may have been applied by
/// another node's leader: a read barrier on shard 0 first waits until this
/// node's replica has applied it too, so what this node runs next sees it.
async fn change_scripts(state: &NodeState, change: Change) -> Reply {
    let reply = state
        .router
        .scripts_change(log::ScriptsChange {
            change: Some(change),
        })
        .await;
    if !reply.is_error() && state.router.backend().read_barrier(0).await.is_ok() {
        let _ = state.scripts.refresh(store(state));
    }
    reply
}

/// FUNCTION LOAD [REPLACE].
pub async fn function_load(state: &NodeState, replace: bool, code: Bytes) -> Reply {
    let name = match elastickv_script::library_name(&code) {
        Ok(name) => name,
        Err(e) => return Reply::error(format!("ERR {e}")),
    };
    // Redis refuses an existing library before compiling the code; the
    // log decides for good when the load applies.
    if let Err(reply) = state.scripts.refresh(store(state)) {
        return reply;
    }
    if !replace && state.scripts.library(&name).is_some() {
        return Reply::error(format!("ERR Library '{name}' already exists"));
    }
    let info = match tokio::task::block_in_place(|| check_library(&code)) {
        Ok(info) => info,
        Err(reply) => return reply,
    };
    change_scripts(state, Change::FunctionLoad(library_record(&info, replace))).await
}

/// FUNCTION DELETE.
pub async fn function_delete(state: &NodeState, name: Bytes) -> Reply {
    let name = String::from_utf8_lossy(&name).into_owned();
    change_scripts(state, Change::FunctionDelete(name)).await
}

/// FUNCTION FLUSH.
pub async fn function_flush(state: &NodeState) -> Reply {
    change_scripts(state, Change::FunctionFlush(log::FunctionFlush {})).await
}

/// FUNCTION RESTORE: the payload's libraries, checked as Redis loads them
/// (in order, into an empty set of their own), then joined to the
/// recorded ones by `policy` when applied.
pub async fn function_restore(state: &NodeState, payload: Bytes, policy: RestorePolicy) -> Reply {
    let codes = match elastickv_script::dump::restore(&payload) {
        Ok(codes) => codes,
        Err(RestoreError::Footer) => {
            return Reply::static_error("ERR DUMP payload version or checksum are wrong");
        }
        Err(RestoreError::Record(why)) => return Reply::error(format!("ERR {why}")),
    };
    let checked = tokio::task::block_in_place(|| -> Result<Vec<LibraryInfo>, Reply> {
        let mut vm = new_vm()?;
        let mut infos: Vec<LibraryInfo> = Vec::new();
        for code in &codes {
            let name = elastickv_script::library_name(code)
                .map_err(|e| Reply::error(format!("ERR {e}")))?;
            if infos.iter().any(|i| i.name == name) {
                return Err(Reply::error(format!("ERR Library '{name}' already exists")));
            }
            let info = vm
                .load_library(code)
                .map_err(|e| Reply::error(format!("ERR {e}")))?;
            let taken = info.functions.iter().find(|f| {
                infos
                    .iter()
                    .flat_map(|i| i.functions.iter())
                    .any(|g| g.name.eq_ignore_ascii_case(&f.name))
            });
            if let Some(f) = taken {
                return Err(Reply::error(format!(
                    "ERR Function {} already exists",
                    f.name
                )));
            }
            infos.push(info);
        }
        Ok(infos)
    });
    let infos = match checked {
        Ok(infos) => infos,
        Err(reply) => return reply,
    };
    let policy = match policy {
        RestorePolicy::Append => log::RestorePolicy::Append,
        RestorePolicy::Replace => log::RestorePolicy::Replace,
        RestorePolicy::Flush => log::RestorePolicy::Flush,
    };
    change_scripts(
        state,
        Change::FunctionRestore(log::FunctionRestore {
            libraries: infos.iter().map(|i| library_record(i, false)).collect(),
            policy: policy as i32,
        }),
    )
    .await
}

/// The libraries as of everything applied before the command was asked.
async fn current_libraries(state: &NodeState) -> Result<Vec<LibraryInfo>, Reply> {
    state.router.backend().read_barrier(0).await?;
    state.scripts.refresh(store(state))?;
    Ok(state.scripts.infos.lock().clone())
}

/// FUNCTION LIST [LIBRARYNAME pattern] [WITHCODE].
pub async fn function_list(state: &NodeState, pattern: Option<Bytes>, with_code: bool) -> Reply {
    let libraries = match current_libraries(state).await {
        Ok(libraries) => libraries,
        Err(reply) => return reply,
    };
    let bulk = |s: &str| Reply::Bulk(Bytes::copy_from_slice(s.as_bytes()));
    Reply::Array(
        libraries
            .into_iter()
            .filter(|library| {
                pattern.as_ref().is_none_or(|p| {
                    elastickv_redis::glob::matches(
                        &p.to_ascii_lowercase(),
                        &library.name.to_ascii_lowercase().into_bytes(),
                    )
                })
            })
            .map(|library| {
                let functions = library
                    .functions
                    .iter()
                    .map(|f| {
                        Reply::Map(vec![
                            (bulk("name"), bulk(&f.name)),
                            (
                                bulk("description"),
                                f.description.as_deref().map_or(Reply::Null, bulk),
                            ),
                            (
                                bulk("flags"),
                                Reply::Set(
                                    flag_names(f.flags)
                                        .into_iter()
                                        .map(|n| Reply::Simple(Bytes::from_static(n.as_bytes())))
                                        .collect(),
                                ),
                            ),
                        ])
                    })
                    .collect();
                let mut fields = vec![
                    (bulk("library_name"), bulk(&library.name)),
                    (bulk("engine"), bulk("LUA")),
                    (bulk("functions"), Reply::Array(functions)),
                ];
                if with_code {
                    fields.push((bulk("library_code"), Reply::Bulk(library.code.clone())));
                }
                Reply::Map(fields)
            })
            .collect(),
    )
}

/// A function's flags, in Redis's order.
fn flag_names(flags: elastickv_script::ScriptFlags) -> Vec<&'static str> {
    [
        (flags.no_writes, "no-writes"),
        (flags.allow_oom, "allow-oom"),
        (flags.allow_stale, "allow-stale"),
        (flags.no_cluster, "no-cluster"),
        (flags.allow_cross_slot_keys, "allow-cross-slot-keys"),
    ]
    .into_iter()
    .filter_map(|(set, name)| set.then_some(name))
    .collect()
}

/// FUNCTION DUMP.
pub async fn function_dump(state: &NodeState) -> Reply {
    match current_libraries(state).await {
        Ok(libraries) => Reply::Bulk(elastickv_script::dump::dump(
            &libraries.into_iter().map(|l| l.code).collect::<Vec<_>>(),
        )),
        Err(reply) => reply,
    }
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
    /// Whose rights the script's commands need (none: a connection whose
    /// user was deleted).
    caller: Option<&'s AclCaller>,
}

const CROSS_SHARD: &str = "ERR Script attempted to access keys that do not hash to the same slot";

impl Host for ShardHost<'_, '_> {
    fn permitted(
        &mut self,
        spec: &'static CommandSpec,
        args: &[Bytes],
    ) -> Result<(), &'static str> {
        use elastickv_redis::acl::Denied;
        const COMMAND: &str = "The user executing the script can't run this command or subcommand";
        let Some(caller) = self.caller else {
            return Err(COMMAND);
        };
        let Err(denied) = caller.user.check(spec, args) else {
            return Ok(());
        };
        let (reason, object, message) = match denied {
            Denied::Command => ("command", Bytes::from(spec.name), COMMAND),
            Denied::Key(pos) => (
                "key",
                args[pos].clone(),
                "The user executing the script can't access at least one of the keys mentioned \
                 in the command arguments",
            ),
            Denied::Channel(pos) => (
                "channel",
                args[pos].clone(),
                "The user executing the script can't publish to the channel mentioned in the \
                 command",
            ),
        };
        crate::acl::record_refusal(
            self.state,
            caller.client_id,
            caller.username.clone(),
            reason,
            "lua",
            object,
        );
        Err(message)
    }

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
