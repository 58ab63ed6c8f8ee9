//! One Lua 5.1 interpreter set up as Redis 7.0 sets up its own: the same
//! libraries, a read-only global table, the `redis` API, Redis's error
//! handler, and a hook that lets a running script be stopped.
//!
//! Scripts run on the node that received them, outside the raft loop (see
//! `elastickv_redis::effects`); a node keeps a few interpreters so scripts
//! on different shards run side by side.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use elastickv_redis::number::format_score;
use elastickv_redis::table::CommandSpec;
use elastickv_resp::Reply;
use mlua::{Function, HookTriggers, Lua, LuaOptions, MultiValue, StdLib, Table, Value};

use crate::convert::{error_table, lua_to_reply, number, plain_error_table, reply_to_lua};

/// What a library function written in Rust returns: values, or the message
/// of the error to raise at its caller's line (as `luaL_error` does).
pub type LibResult<T> = Result<T, LibError>;

/// An error a library function raises: a message (raised at its caller's
/// position, like `luaL_error`) or an error table (raised as is, like
/// `redis.call`'s).
#[derive(Debug)]
pub enum LibError {
    Message(String),
    /// `luaL_argerror`: argument `index` is wrong; the message names the
    /// function as its caller called it.
    Arg(usize, String),
    Table(Table),
}

impl From<String> for LibError {
    fn from(message: String) -> Self {
        LibError::Message(message)
    }
}

impl From<mlua::Error> for LibError {
    fn from(e: mlua::Error) -> Self {
        LibError::Message(e.to_string())
    }
}

/// A library function written in Rust.
pub type LibFn = Box<dyn Fn(&Lua, MultiValue) -> LibResult<MultiValue> + Send + Sync>;

/// Redis's version, as scripts read it.
pub const REDIS_VERSION: &str = "7.0.15";
const REDIS_VERSION_NUM: u32 = (7 << 16) | 15;

/// The chunk name of this module's own Lua code; its frames are skipped
/// when an error is located in the user's script.
pub(crate) const INTERNAL_CHUNK: &str = "=ekv";

/// How many VM instructions run between checks for SCRIPT KILL and for
/// the busy threshold (Redis's figure).
const HOOK_EVERY: u32 = 100_000;

/// An interpreter's memory cap: a script that builds more than this gets
/// "not enough memory".
pub const MEMORY_LIMIT: usize = 1 << 30;

/// `luaL_typerror`: argument `index` should have been `expected`.
pub fn arg_error(index: usize, expected: &str, value: &Value, argc: usize) -> LibError {
    let got = if index > argc {
        "no value"
    } else {
        value.type_name()
    };
    LibError::Arg(index, format!("{expected} expected, got {got}"))
}

/// `luaL_checknumber`: argument `index` (1-based) as a number; numbers,
/// and strings Lua converts to numbers.
pub fn number_arg(args: &MultiValue, index: usize) -> LibResult<f64> {
    let value = args.get(index - 1).cloned().unwrap_or(Value::Nil);
    let parsed = match &value {
        Value::String(s) => s.to_str().ok().and_then(|t| lua_str_to_number(&t)),
        other => number(other),
    };
    parsed.ok_or_else(|| arg_error(index, "number", &value, args.len()))
}

/// `luaL_optinteger`: like [`number_arg`], `default` when absent or nil.
pub fn optional_integer_arg(args: &MultiValue, index: usize, default: i64) -> LibResult<i64> {
    match args.get(index - 1) {
        None | Some(Value::Nil) => Ok(default),
        Some(_) => number_arg(args, index).map(|n| n as i64),
    }
}

/// `luaL_checklstring`: argument `index` as bytes; strings, and numbers
/// as Lua prints them.
pub fn string_arg(args: &MultiValue, index: usize) -> LibResult<Vec<u8>> {
    match args.get(index - 1) {
        Some(Value::String(s)) => Ok(s.as_bytes().to_vec()),
        Some(n @ (Value::Number(_) | Value::Integer(_))) => Ok(lua_number_string(n).into_bytes()),
        other => Err(arg_error(
            index,
            "string",
            other.unwrap_or(&Value::Nil),
            args.len(),
        )),
    }
}

/// Lua 5.1's `lua_str2number`: a decimal (as `strtod`) or a `0x`
/// hexadecimal integer, with surrounding white space.
pub fn lua_str_to_number(text: &str) -> Option<f64> {
    let trimmed = text.trim_matches(|c: char| c.is_ascii_whitespace());
    if trimmed.is_empty() {
        return None;
    }
    let (negative, unsigned) = match trimmed.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, trimmed.strip_prefix('+').unwrap_or(trimmed)),
    };
    if let Some(hex) = unsigned
        .strip_prefix("0x")
        .or_else(|| unsigned.strip_prefix("0X"))
    {
        let value = u64::from_str_radix(hex, 16).ok()? as f64;
        return Some(if negative { -value } else { value });
    }
    trimmed.parse::<f64>().ok()
}

/// The registry name of the table where a run keeps its bindings
/// (`call`, `setresp`) and an error table being raised (`pending`).
pub(crate) const SLOT: &str = "elastickv.slot";

/// What a Rust function raises when the error is a table: the table waits
/// in the slot, and the error handler (or `pcall`) picks it up.
pub(crate) const RAISED: &str = "elastickv: error table raised";

/// Installs Rust library functions into `table`. They are C functions to
/// Lua, as Redis's are: an error message is raised at the caller's line
/// (`luaL_error`), an error table as is.
pub fn install_functions(
    lua: &Lua,
    table: &Table,
    functions: Vec<(&'static str, LibFn)>,
) -> mlua::Result<()> {
    for (name, f) in functions {
        let function = lua.create_function(move |lua, args: MultiValue| match f(lua, args) {
            Ok(values) => Ok(values),
            Err(LibError::Message(m)) => Err(mlua::Error::RuntimeError(format!(
                "{}{m}",
                caller_position(lua)
            ))),
            Err(LibError::Arg(index, m)) => Err(mlua::Error::RuntimeError(format!(
                "{}bad argument #{index} to '{}' ({m})",
                caller_position(lua),
                called_name(lua)
            ))),
            Err(LibError::Table(t)) => {
                let slot: Table = lua.named_registry_value(SLOT)?;
                slot.raw_set("pending", t)?;
                Err(mlua::Error::RuntimeError(RAISED.to_string()))
            }
        })?;
        table.raw_set(name, function)?;
    }
    Ok(())
}

/// The name the running C function was called by (`?` when not known,
/// as when `pcall` calls it), as `luaL_argerror` finds it.
fn called_name(lua: &Lua) -> String {
    lua.inspect_stack(0, |debug| debug.names().name.map(|n| n.into_owned()))
        .flatten()
        .unwrap_or_else(|| "?".to_string())
}

/// `luaL_where(L, 1)`: `source:line: ` of the Lua code calling the current
/// C function, or nothing.
fn caller_position(lua: &Lua) -> String {
    lua.inspect_stack(1, |debug| {
        let source = debug.source();
        match (source.short_src, debug.current_line()) {
            (Some(src), Some(line)) if source.what != "C" => format!("{src}:{line}: "),
            _ => String::new(),
        }
    })
    .unwrap_or_default()
}

/// The state of one script run that others may look at: whether it was
/// killed, whether it ran past the busy threshold, whether it wrote.
#[derive(Debug)]
pub struct RunControl {
    started: Instant,
    busy_after: Duration,
    killed: AtomicBool,
    busy: AtomicBool,
    wrote: AtomicBool,
    /// Whether the run is a function (FCALL) rather than EVAL.
    pub is_function: bool,
    /// The script's SHA1 or the function's name, for logs.
    pub name: String,
}

impl RunControl {
    pub fn new(name: String, is_function: bool, busy_after: Duration) -> Arc<RunControl> {
        Arc::new(RunControl {
            started: Instant::now(),
            busy_after,
            killed: AtomicBool::new(false),
            busy: AtomicBool::new(false),
            wrote: AtomicBool::new(false),
            is_function,
            name,
        })
    }

    /// Asks the script to stop at its next check.
    pub fn kill(&self) {
        self.killed.store(true, Ordering::Relaxed);
    }

    /// Whether it was asked to stop.
    pub fn killed(&self) -> bool {
        self.killed.load(Ordering::Relaxed)
    }

    /// Whether it has run longer than the busy threshold.
    pub fn is_busy(&self) -> bool {
        self.busy.load(Ordering::Relaxed)
    }

    /// Whether it called a write command.
    pub fn wrote(&self) -> bool {
        self.wrote.load(Ordering::Relaxed)
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// What runs the commands a script calls.
pub trait Host {
    /// Runs one command. It was checked against the command table first:
    /// known, with a valid arity, allowed in scripts, and not a write in a
    /// read-only script.
    fn call(&mut self, spec: &'static CommandSpec, args: &[Bytes]) -> Reply;

    /// Whether the user running the script may run `spec` with `args`;
    /// the error says why not (Redis's words, after "The user executing
    /// the script").
    fn permitted(
        &mut self,
        _spec: &'static CommandSpec,
        _args: &[Bytes],
    ) -> Result<(), &'static str> {
        Ok(())
    }
}

/// One script invocation.
pub struct Invocation<'a> {
    /// The script's SHA1, lower-case hex.
    pub sha: &'a str,
    /// Its body, compiled if this interpreter has not seen it.
    pub body: &'a [u8],
    pub keys: &'a [Bytes],
    pub args: &'a [Bytes],
    /// EVAL_RO, or a script declaring `no-writes`.
    pub read_only: bool,
}

/// Per-run state the `redis` API reads and changes.
struct RunState {
    resp: u8,
    read_only: bool,
}

/// Fills a library's table.
type Installer = fn(&Lua, &Table) -> mlua::Result<()>;

/// A sandboxed interpreter.
pub struct Vm {
    pub(crate) lua: Lua,
    /// The globals' real contents (the global table itself is an empty,
    /// read-only proxy in front of it).
    pub(crate) hidden: Table,
    /// Where each run puts the functions bound to its host.
    slot: Table,
    /// `xpcall` with Redis's error handler.
    pub(crate) runner: Function,
    /// The same for a function, called with its keys and arguments.
    function_runner: Function,
    /// The global table's metatable: FUNCTION LOAD points its `__index` at
    /// the library API while a library's code runs.
    pub(crate) globals_meta: Table,
    /// The library API (`redis.register_function`, `redis.log`).
    pub(crate) library_api: Table,
    /// Compiled scripts by SHA1.
    scripts: HashMap<String, Function>,
    /// Registered functions by lower-case name (see [`crate::functions`]).
    pub(crate) functions: HashMap<String, crate::functions::Registered>,
    /// The registry generation `functions` was loaded from.
    pub(crate) functions_generation: Option<u64>,
}

/// 48-bit linear congruential generator, as Redis's `redisLrand48` (so
/// `math.random` gives the same sequence for the same seed everywhere).
#[derive(Debug)]
struct Lrand48 {
    x: u64,
}

impl Lrand48 {
    const A: u64 = 0x5_DEEC_E66D;
    const C: u64 = 0xB;
    const MASK: u64 = (1 << 48) - 1;

    fn new() -> Self {
        Lrand48 {
            x: 0x1234_ABCD_330E,
        }
    }

    fn seed(&mut self, seed: i32) {
        self.x = (u64::from(seed as u32) << 16) | 0x330E;
    }

    fn next(&mut self) -> i32 {
        self.x = (Self::A.wrapping_mul(self.x).wrapping_add(Self::C)) & Self::MASK;
        (self.x >> 17) as i32
    }
}

impl Vm {
    pub fn new() -> mlua::Result<Vm> {
        let lua = Lua::new_with(
            StdLib::TABLE | StdLib::STRING | StdLib::MATH,
            LuaOptions::default(),
        )?;
        lua.set_memory_limit(MEMORY_LIMIT)?;
        lua.set_app_data(Lrand48::new());
        let globals = lua.globals();

        let redis = lua.create_table()?;
        let slot = lua.create_table()?;
        lua.set_named_registry_value(SLOT, slot.clone())?;
        install_redis_api(&lua, &redis)?;
        globals.raw_set("redis", redis)?;
        let libraries: [(&str, Installer); 4] = [
            ("bit", crate::bit::install),
            ("cjson", crate::cjson::install),
            ("cmsgpack", crate::cmsgpack::install),
            ("struct", crate::structlib::install),
        ];
        for (name, install) in libraries {
            let library = lua.create_table()?;
            install(&lua, &library)?;
            globals.raw_set(name, library)?;
        }
        let math: Table = globals.raw_get("math")?;
        install_functions(&lua, &math, math_random())?;
        for name in ["dofile", "loadfile", "print"] {
            globals.raw_set(name, Value::Nil)?;
        }

        let handler = lua.create_function(error_handler)?;
        let pcall_error = lua.create_function(pcall_error)?;
        let sandbox: Function = lua.load(SANDBOX).set_name(INTERNAL_CHUNK).into_function()?;
        let library_redis = lua.create_table()?;
        crate::functions::install_library_api(&lua, &library_redis)?;
        let (hidden, runner, function_runner, globals_meta, library_api): (
            Table,
            Function,
            Function,
            Table,
            Table,
        ) = sandbox.call((handler, pcall_error, library_redis))?;
        Ok(Vm {
            lua,
            hidden,
            slot,
            runner,
            function_runner,
            globals_meta,
            library_api,
            scripts: HashMap::new(),
            functions: HashMap::new(),
            functions_generation: None,
        })
    }

    /// Compiles `body` (SCRIPT LOAD, or EVAL of a script not seen yet):
    /// the error is Redis's for a script that does not compile.
    pub fn compile(&mut self, sha: &str, body: &[u8]) -> Result<(), Reply> {
        if self.scripts.contains_key(sha) {
            return Ok(());
        }
        let shebang = crate::Shebang::parse(body).map_err(|e| Reply::error(format!("ERR {e}")))?;
        let code = &body[shebang.skip..];
        let function = self
            .lua
            .load(code)
            .set_name("@user_script")
            .into_function()
            .map_err(|e| {
                Reply::error(format!(
                    "ERR Error compiling script (new function): {}",
                    syntax_message(&e)
                ))
            })?;
        self.scripts.insert(sha.to_string(), function);
        Ok(())
    }

    /// Drops every compiled script (SCRIPT FLUSH).
    pub fn forget_scripts(&mut self) {
        self.scripts.clear();
    }

    /// Runs a script; its reply, errors included.
    pub fn eval(
        &mut self,
        invocation: &Invocation<'_>,
        host: &mut dyn Host,
        control: &Arc<RunControl>,
    ) -> Reply {
        if let Err(reply) = self.compile(invocation.sha, invocation.body) {
            return reply;
        }
        let Some(function) = self.scripts.get(invocation.sha).cloned() else {
            return Reply::static_error("ERR script vanished");
        };
        self.run(Target::Script(function), invocation, host, control)
    }

    /// Runs a script or a function; its reply, errors included.
    pub(crate) fn run(
        &mut self,
        target: Target,
        invocation: &Invocation<'_>,
        host: &mut dyn Host,
        control: &Arc<RunControl>,
    ) -> Reply {
        match self.try_run(target, invocation, host, control) {
            Ok(reply) => reply,
            Err(e) => Reply::error(format!(
                "ERR Error running script {}: {}",
                invocation.sha,
                one_line_message(&e)
            )),
        }
    }

    fn try_run(
        &mut self,
        target: Target,
        invocation: &Invocation<'_>,
        host: &mut dyn Host,
        control: &Arc<RunControl>,
    ) -> mlua::Result<Reply> {
        let lua = &self.lua;
        let keys = string_array(lua, invocation.keys)?;
        let args = string_array(lua, invocation.args)?;
        // EVAL's scripts read KEYS and ARGV as globals; functions get
        // them as arguments.
        if matches!(target, Target::Script(_)) {
            self.hidden.raw_set("KEYS", keys.clone())?;
            self.hidden.raw_set("ARGV", args.clone())?;
        }
        let state = RefCell::new(RunState {
            resp: 2,
            read_only: invocation.read_only,
        });
        let hook_control = control.clone();
        lua.set_hook(
            HookTriggers::new().every_nth_instruction(HOOK_EVERY),
            move |lua, _debug| check_interrupt(lua, &hook_control),
        )?;
        let host = RefCell::new(host);
        let outcome = lua.scope(|scope| {
            let call = scope.create_function(|lua, (raise, args): (bool, MultiValue)| {
                call_command(lua, &state, &mut **host.borrow_mut(), control, raise, args)
            })?;
            let setresp = scope.create_function(|_lua, resp: u8| {
                state.borrow_mut().resp = resp;
                Ok(())
            })?;
            self.slot.raw_set("call", call)?;
            self.slot.raw_set("setresp", setresp)?;
            let outcome: (bool, Value) = match &target {
                Target::Script(f) => self.runner.call(f.clone())?,
                Target::Function(f) => self.function_runner.call((f.clone(), keys, args))?,
            };
            let resp = state.borrow().resp;
            self.slot.raw_set("call", Value::Nil)?;
            self.slot.raw_set("setresp", Value::Nil)?;
            Ok(match outcome {
                (true, value) => lua_to_reply(&value, resp),
                (false, Value::Table(err)) => located_error(&err, invocation.sha),
                (false, other) => Reply::error(format!(
                    "ERR Error running script {}, {}",
                    invocation.sha,
                    plain_message(&other)
                )),
            })
        });
        lua.remove_hook();
        self.hidden.raw_set("KEYS", Value::Nil)?;
        self.hidden.raw_set("ARGV", Value::Nil)?;
        outcome
    }
}

/// What a run calls: an EVAL script's chunk, or a registered function.
pub(crate) enum Target {
    Script(Function),
    Function(Function),
}

/// The message of a compile error, as Lua's `luaL_loadbuffer` puts it.
pub(crate) fn syntax_message(e: &mlua::Error) -> String {
    match e {
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

fn one_line_message(e: &mlua::Error) -> String {
    e.to_string().replace(['\r', '\n'], " ")
}

/// The text of an error value that is not a table.
pub(crate) fn plain_message(value: &Value) -> String {
    match value {
        Value::String(s) => s.to_string_lossy(),
        Value::Number(_) | Value::Integer(_) => lua_number_string(value),
        Value::Error(e) => root_cause(e),
        _ => "execution failure".to_string(),
    }
}

fn root_cause(e: &mlua::Error) -> String {
    match e {
        mlua::Error::CallbackError { cause, .. } => root_cause(cause),
        mlua::Error::RuntimeError(m) | mlua::Error::MemoryError(m) => m.clone(),
        other => other.to_string(),
    }
}

/// The error a failed script answers: its message, and where it was
/// raised (`luaCallFunction`).
fn located_error(err: &Table, sha: &str) -> Reply {
    let text = |name: &str| match err.raw_get::<Value>(name) {
        Ok(Value::String(s)) => Some(s.to_string_lossy()),
        Ok(n @ (Value::Number(_) | Value::Integer(_))) => Some(lua_number_string(&n)),
        _ => None,
    };
    let message = text("err").unwrap_or_default();
    let mut out = message;
    if let (Some(line), Some(source)) = (text("line"), text("source")) {
        out.push_str(&format!(" script: {sha}, on {source}:{line}."));
    }
    Reply::error(out.replace(['\r', '\n'], " "))
}

fn string_array(lua: &Lua, items: &[Bytes]) -> mlua::Result<Table> {
    let t = lua.create_table_with_capacity(items.len(), 0)?;
    for (i, item) in items.iter().enumerate() {
        t.raw_set(i + 1, lua.create_string(item)?)?;
    }
    Ok(t)
}

/// The count hook: stops a killed script (and keeps stopping it if it
/// catches the error), and notes when it passes the busy threshold.
fn check_interrupt(lua: &Lua, control: &Arc<RunControl>) -> mlua::Result<mlua::VmState> {
    if control.killed.load(Ordering::Relaxed) {
        tracing::warn!(script = %control.name, "Lua script killed by user with SCRIPT KILL.");
        // From now on at every instruction, so pcall cannot swallow it.
        let again = control.clone();
        lua.set_hook(
            HookTriggers::new().every_nth_instruction(1),
            move |_lua, debug| {
                // Only in the user's code: this module's own Lua (the
                // runner returning the error) must finish.
                let internal = debug.source().source.as_deref() == Some(INTERNAL_CHUNK);
                if again.killed.load(Ordering::Relaxed) && !internal {
                    Err(mlua::Error::RuntimeError(KILLED.to_string()))
                } else {
                    Ok(mlua::VmState::Continue)
                }
            },
        )?;
        return Err(mlua::Error::RuntimeError(KILLED.to_string()));
    }
    if !control.busy.load(Ordering::Relaxed) && control.started.elapsed() >= control.busy_after {
        control.busy.store(true, Ordering::Relaxed);
        tracing::warn!(
            elapsed_ms = control.started.elapsed().as_millis() as u64,
            script = %control.name,
            "Slow script detected: still in execution. You can try killing the script using the {} command.",
            if control.is_function { "FUNCTION KILL" } else { "SCRIPT KILL" }
        );
    }
    Ok(mlua::VmState::Continue)
}

const KILLED: &str = "Script killed by user with SCRIPT KILL...";

/// Redis's `__redis__err__handler`: makes every error a table with `err`,
/// and notes the user script's line it came from.
fn error_handler(lua: &Lua, err: Value) -> mlua::Result<Table> {
    let table = match err {
        Value::Table(t) => t,
        Value::Error(e) if root_cause(&e) == RAISED => take_pending(lua)?,
        Value::Error(e) if root_cause(&e) == KILLED => plain_error_table(lua, KILLED)?,
        other => {
            let t = lua.create_table()?;
            let text = match &other {
                Value::String(s) => s.as_bytes().to_vec(),
                Value::Error(e) => root_cause(e).into_bytes(),
                n @ (Value::Number(_) | Value::Integer(_)) => lua_number_string(n).into_bytes(),
                Value::Nil => b"nil".to_vec(),
                Value::Boolean(b) => b.to_string().into_bytes(),
                v => v.type_name().as_bytes().to_vec(),
            };
            let mut full = b"ERR ".to_vec();
            full.extend_from_slice(&text);
            t.raw_set("err", lua.create_string(&full)?)?;
            t
        }
    };
    // The first frame that is the user's code: not a C function, not this
    // module's Lua.
    for level in 1..32 {
        let frame = lua.inspect_stack(level, |debug| {
            let source = debug.source();
            let own = source.what == "C" || source.source.as_deref() == Some(INTERNAL_CHUNK);
            (
                own,
                source.source.map(|s| s.into_owned()),
                debug.current_line(),
            )
        });
        match frame {
            None => break,
            Some((true, _, _)) => continue,
            Some((false, source, line)) => {
                if let Some(source) = source {
                    table.raw_set("source", source)?;
                }
                if let Some(line) = line {
                    table.raw_set("line", line as f64)?;
                }
                break;
            }
        }
    }
    Ok(table)
}

/// The error table a Rust function raised.
fn take_pending(lua: &Lua) -> mlua::Result<Table> {
    let slot: Table = lua.named_registry_value(SLOT)?;
    let pending = slot.raw_get::<Value>("pending")?;
    slot.raw_set("pending", Value::Nil)?;
    match pending {
        Value::Table(t) => Ok(t),
        _ => plain_error_table(lua, "execution failure"),
    }
}

/// What Redis's `pcall` hands back for an error: an error table's `err`
/// string, the message of an error raised by a Rust function, or the
/// value itself.
fn pcall_error(lua: &Lua, err: Value) -> mlua::Result<Value> {
    let table = match err {
        Value::Error(e) if root_cause(&e) == RAISED => take_pending(lua)?,
        Value::Error(e) => return Ok(Value::String(lua.create_string(root_cause(&e))?)),
        Value::Table(t) => t,
        other => return Ok(other),
    };
    Ok(match table.raw_get::<Value>("err")? {
        message @ (Value::String(_) | Value::Number(_) | Value::Integer(_)) => message,
        _ => Value::Table(table),
    })
}

/// `redis.call` and `redis.pcall`: runs a command through the host.
/// Returns `(true, reply)`, or `(false, error table)` for `redis.call` to
/// raise.
fn call_command(
    lua: &Lua,
    state: &RefCell<RunState>,
    host: &mut dyn Host,
    control: &Arc<RunControl>,
    raise: bool,
    args: MultiValue,
) -> mlua::Result<(bool, Value)> {
    let fail = |message: &str| -> mlua::Result<(bool, Value)> {
        let t = plain_error_table(lua, message)?;
        t.raw_set("ignore_error_stats_update", true)?;
        Ok((!raise, Value::Table(t)))
    };
    if args.is_empty() {
        return fail("Please specify at least one argument for this redis lib call");
    }
    let mut argv = Vec::with_capacity(args.len());
    for arg in &args {
        match arg {
            Value::String(s) => argv.push(Bytes::copy_from_slice(&s.as_bytes())),
            Value::Number(n) => argv.push(format_score(*n)),
            Value::Integer(n) => argv.push(Bytes::from(n.to_string())),
            _ => return fail("Lua redis lib command arguments must be strings or integers"),
        }
    }
    let spec = match lookup(&argv) {
        Ok(spec) => spec,
        Err(message) => return fail(message),
    };
    if spec.flags.contains(&"noscript") {
        return fail("This Redis command is not allowed from script");
    }
    if let Err(message) = host.permitted(spec, &argv) {
        return fail(message);
    }
    let writes = spec.is_write() || spec.may_replicate();
    if writes && state.borrow().read_only {
        return fail("Write commands are not allowed from read-only scripts.");
    }
    if spec.is_write() {
        control.wrote.store(true, Ordering::Relaxed);
    }
    let reply = host.call(spec, &argv);
    let is_error = matches!(reply, Reply::Error(_));
    let value = reply_to_lua(lua, &reply, state.borrow().resp)?;
    Ok((!(raise && is_error), value))
}

/// The command (or subcommand) `args` names, as `lookupCommand` finds it.
fn lookup(args: &[Bytes]) -> Result<&'static CommandSpec, &'static str> {
    const UNKNOWN: &str = "Unknown Redis command called from script";
    const ARITY: &str = "Wrong number of args calling Redis command from script";
    let name = args.first().ok_or(UNKNOWN)?;
    let spec = elastickv_redis::table::lookup(name).ok_or(UNKNOWN)?;
    let spec = if spec.subcommands.is_empty() {
        spec
    } else {
        let sub = args.get(1).ok_or(ARITY)?;
        spec.subcommands
            .iter()
            .find(|s| s.subcommand_name().as_bytes().eq_ignore_ascii_case(sub))
            .ok_or(UNKNOWN)?
    };
    let argc = args.len() as i32;
    let arity_ok = if spec.arity >= 0 {
        argc == spec.arity
    } else {
        argc >= -spec.arity
    };
    if arity_ok { Ok(spec) } else { Err(ARITY) }
}

/// `redis.call` (`raise`) and `redis.pcall`: through the run's binding.
fn run_bound(lua: &Lua, raise: bool, args: MultiValue) -> LibResult<MultiValue> {
    let slot: Table = lua.named_registry_value(SLOT)?;
    let Ok(Value::Function(call)) = slot.raw_get::<Value>("call") else {
        let t = plain_error_table(
            lua,
            "redis.call/pcall can only be called inside a script invocation",
        )?;
        return Err(LibError::Table(t));
    };
    let (ok, value): (bool, Value) = call.call((raise, args))?;
    match (ok, value) {
        (false, Value::Table(t)) => Err(LibError::Table(t)),
        (_, value) => Ok(MultiValue::from_vec(vec![value])),
    }
}

/// Fills the `redis` table. `call`, `pcall` and `setresp` go through the
/// bindings of the run in progress (in the slot); outside a run there are
/// none.
fn install_redis_api(lua: &Lua, redis: &Table) -> mlua::Result<()> {
    let raise = |lua: &Lua, message: &str| -> LibError {
        match plain_error_table(lua, message) {
            Ok(t) => LibError::Table(t),
            Err(e) => LibError::from(e),
        }
    };
    let functions: Vec<(&'static str, LibFn)> = vec![
        (
            "call",
            Box::new(move |lua, args| run_bound(lua, true, args)),
        ),
        (
            "pcall",
            Box::new(move |lua, args| run_bound(lua, false, args)),
        ),
        (
            "setresp",
            Box::new(move |lua, args| {
                let slot: Table = lua.named_registry_value(SLOT)?;
                let Ok(Value::Function(setresp)) = slot.raw_get::<Value>("setresp") else {
                    return Err(raise(
                        lua,
                        "redis.setresp can only be called inside a script invocation",
                    ));
                };
                if args.len() != 1 {
                    return Err(raise(lua, "redis.setresp() requires one argument."));
                }
                let resp = match &args[0] {
                    n @ (Value::Number(_) | Value::Integer(_)) => number(n).map_or(0, |n| n as i64),
                    Value::String(s) => s
                        .to_str()
                        .ok()
                        .and_then(|t| lua_str_to_number(&t))
                        .map_or(0, |n| n as i64),
                    _ => 0,
                };
                if resp != 2 && resp != 3 {
                    return Err(raise(lua, "RESP version must be 2 or 3."));
                }
                setresp.call::<()>(resp)?;
                Ok(MultiValue::new())
            }),
        ),
        (
            "sha1hex",
            Box::new(move |lua, args| {
                if args.len() != 1 {
                    return Err(raise(lua, "wrong number of arguments"));
                }
                let data = match &args[0] {
                    Value::String(s) => s.as_bytes().to_vec(),
                    n @ (Value::Number(_) | Value::Integer(_)) => {
                        lua_number_text(lua, number(n).unwrap_or_default())
                    }
                    _ => Vec::new(),
                };
                let digest = crate::sha1hex(&data);
                Ok(MultiValue::from_vec(vec![Value::String(
                    lua.create_string(&digest)?,
                )]))
            }),
        ),
        (
            "error_reply",
            Box::new(|lua, args| {
                let table = match args.front() {
                    Some(Value::String(s)) if args.len() == 1 => {
                        let mut text = s.as_bytes().to_vec();
                        if text.first() == Some(&b'-') {
                            text.remove(0);
                        }
                        error_table(lua, &text)?
                    }
                    _ => plain_error_table(lua, "wrong number or type of arguments")?,
                };
                Ok(MultiValue::from_vec(vec![Value::Table(table)]))
            }),
        ),
        (
            "status_reply",
            Box::new(|lua, args| {
                let table = match args.front() {
                    Some(Value::String(s)) if args.len() == 1 => {
                        let t = lua.create_table()?;
                        t.raw_set("ok", s.clone())?;
                        t
                    }
                    _ => plain_error_table(lua, "wrong number or type of arguments")?,
                };
                Ok(MultiValue::from_vec(vec![Value::Table(table)]))
            }),
        ),
        (
            "log",
            Box::new(move |lua, args| {
                if args.len() < 2 {
                    return Err(raise(lua, "redis.log() requires two arguments or more."));
                }
                let level = match &args[0] {
                    n @ (Value::Number(_) | Value::Integer(_)) => number(n).map_or(0, |n| n as i64),
                    Value::String(s) => match s.to_str().ok().and_then(|t| lua_str_to_number(&t)) {
                        Some(n) => n as i64,
                        None => {
                            return Err(raise(lua, "First argument must be a number (log level)."));
                        }
                    },
                    _ => return Err(raise(lua, "First argument must be a number (log level).")),
                };
                if !(0..=3).contains(&level) {
                    return Err(raise(lua, "Invalid debug level."));
                }
                let words: Vec<String> = args
                    .iter()
                    .skip(1)
                    .filter_map(|v| match v {
                        Value::String(s) => Some(s.to_string_lossy()),
                        n @ (Value::Number(_) | Value::Integer(_)) => Some(
                            String::from_utf8_lossy(&lua_number_text(
                                lua,
                                number(n).unwrap_or_default(),
                            ))
                            .into_owned(),
                        ),
                        _ => None,
                    })
                    .collect();
                let text = words.join(" ");
                match level {
                    0 => tracing::debug!(target: "script", "{text}"),
                    1 => tracing::info!(target: "script", "{text}"),
                    2 => tracing::info!(target: "script", "{text}"),
                    _ => tracing::warn!(target: "script", "{text}"),
                }
                Ok(MultiValue::new())
            }),
        ),
        (
            "set_repl",
            Box::new(move |lua, args| {
                if args.len() != 1 {
                    return Err(raise(lua, "redis.set_repl() requires two arguments."));
                }
                let flags = match &args[0] {
                    n @ (Value::Number(_) | Value::Integer(_)) => number(n).map_or(0, |n| n as i64),
                    _ => 0,
                };
                if flags & !3 != 0 {
                    return Err(raise(
                        lua,
                        "Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or REPL_NONE.",
                    ));
                }
                Ok(MultiValue::new())
            }),
        ),
        (
            "replicate_commands",
            Box::new(|_lua, _args| Ok(MultiValue::from_vec(vec![Value::Boolean(true)]))),
        ),
        (
            "breakpoint",
            Box::new(|_lua, _args| Ok(MultiValue::from_vec(vec![Value::Boolean(false)]))),
        ),
        ("debug", Box::new(|_lua, _args| Ok(MultiValue::new()))),
        (
            "acl_check_cmd",
            Box::new(move |lua, args| {
                let argv: Vec<Bytes> = args
                    .iter()
                    .filter_map(|v| match v {
                        Value::String(s) => Some(Bytes::copy_from_slice(&s.as_bytes())),
                        Value::Number(n) => Some(format_score(*n)),
                        Value::Integer(n) => Some(Bytes::from(n.to_string())),
                        _ => None,
                    })
                    .collect();
                if argv.is_empty() {
                    return Err(raise(
                        lua,
                        "Please specify at least one argument for this redis lib call",
                    ));
                }
                if elastickv_redis::table::lookup(&argv[0]).is_none() {
                    return Err(raise(
                        lua,
                        "Invalid command passed to redis.acl_check_cmd()",
                    ));
                }
                Ok(MultiValue::from_vec(vec![Value::Boolean(true)]))
            }),
        ),
    ];
    install_functions(lua, redis, functions)?;
    for (name, level) in [
        ("LOG_DEBUG", 0),
        ("LOG_VERBOSE", 1),
        ("LOG_NOTICE", 2),
        ("LOG_WARNING", 3),
        ("REPL_NONE", 0),
        ("REPL_AOF", 1),
        ("REPL_SLAVE", 2),
        ("REPL_REPLICA", 2),
        ("REPL_ALL", 3),
    ] {
        redis.raw_set(name, f64::from(level))?;
    }
    redis.raw_set("REDIS_VERSION", REDIS_VERSION)?;
    redis.raw_set("REDIS_VERSION_NUM", f64::from(REDIS_VERSION_NUM))?;
    Ok(())
}

/// A number as Lua prints it (`%.14g`), by Lua itself.
fn lua_number_text(lua: &Lua, n: f64) -> Vec<u8> {
    match lua.coerce_string(Value::Number(n)) {
        Ok(Some(s)) => s.as_bytes().to_vec(),
        _ => Vec::new(),
    }
}

/// A number value's text as Lua's `tostring` gives it.
pub fn lua_number_string(value: &Value) -> String {
    match value {
        Value::Integer(n) => n.to_string(),
        Value::Number(n) if n.is_finite() && *n == n.trunc() && n.abs() < 1e15 => {
            format!("{}", *n as i64)
        }
        Value::Number(n) => format!("{n}"),
        _ => String::new(),
    }
}

/// `math.random` and `math.randomseed` on Redis's generator.
fn math_random() -> Vec<(&'static str, LibFn)> {
    vec![
        (
            "random",
            Box::new(|lua, args| {
                let r = {
                    let Some(mut rng) = lua.app_data_mut::<Lrand48>() else {
                        return Err(LibError::Message("no random generator".into()));
                    };
                    f64::from(rng.next() % i32::MAX) / f64::from(i32::MAX)
                };
                let value = match args.len() {
                    0 => r,
                    1 => {
                        let u = number_arg(&args, 1)? as i32;
                        if u < 1 {
                            return Err(LibError::Arg(1, "interval is empty".into()));
                        }
                        (r * f64::from(u)).floor() + 1.0
                    }
                    2 => {
                        let l = number_arg(&args, 1)? as i32;
                        let u = number_arg(&args, 2)? as i32;
                        if l > u {
                            return Err(LibError::Arg(2, "interval is empty".into()));
                        }
                        (r * (f64::from(u) - f64::from(l) + 1.0)).floor() + f64::from(l)
                    }
                    _ => return Err(LibError::Message("wrong number of arguments".into())),
                };
                Ok(MultiValue::from_vec(vec![Value::Number(value)]))
            }),
        ),
        (
            "randomseed",
            Box::new(|lua, args| {
                let seed = number_arg(&args, 1)? as i32;
                if let Some(mut rng) = lua.app_data_mut::<Lrand48>() {
                    rng.seed(seed);
                }
                Ok(MultiValue::new())
            }),
        ),
    ]
}

/// Locks the globals as Redis 7.0 does: the global table becomes an empty
/// proxy in front of the real one, reading a missing global is an error,
/// and no global or library table can be changed (not even with `rawset`
/// or `setmetatable`). Returns the real globals and the runner: `xpcall`
/// of a script with the error handler.
const SANDBOX: &str = r#"
local handler, pcall_error, library_redis = ...
local G = _G
local H = {}
local pairs, next, type, error, tostring = pairs, next, type, error, tostring
local rawset, setmetatable, xpcall, rawpcall = rawset, setmetatable, xpcall, pcall
for k, v in pairs(G) do H[k] = v end
for k in pairs(H) do G[k] = nil end
local readonly = setmetatable({}, {__mode = "k"})
local function deny() error("Attempt to modify a readonly table", 2) end
local function proxy(t)
  local p = {}
  setmetatable(p, {__index = t, __newindex = deny, __metatable = false})
  readonly[p] = true
  return p
end
for _, name in pairs({"string", "table", "math", "coroutine", "redis", "bit", "cjson", "cmsgpack", "struct"}) do
  if type(H[name]) == "table" then H[name] = proxy(H[name]) end
end
H.rawset = function(t, k, v)
  if readonly[t] then error("Attempt to modify a readonly table", 0) end
  return rawset(t, k, v)
end
H.setmetatable = function(t, m)
  if readonly[t] then error("Attempt to modify a readonly table", 0) end
  return setmetatable(t, m)
end
local function settle(ok, ...)
  if ok then return ok, ... end
  return false, pcall_error((...))
end
H.pcall = function(...) return settle(rawpcall(...)) end
H._G = G
setmetatable(H, {
  __index = function(_, k)
    error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 2)
  end,
  __metatable = false,
})
local globals_meta = {__index = H, __newindex = deny, __metatable = false}
setmetatable(G, globals_meta)
readonly[G] = true
-- What a library's code sees while FUNCTION LOAD runs it: `redis` with
-- register_function and logging, and nothing else.
local function strict(real)
  local p = {}
  setmetatable(p, {
    __index = function(_, k)
      local v = real[k]
      if v == nil then
        error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 2)
      end
      return v
    end,
    __newindex = deny,
    __metatable = false,
  })
  readonly[p] = true
  return p
end
for _, name in pairs({"log", "LOG_DEBUG", "LOG_VERBOSE", "LOG_NOTICE", "LOG_WARNING", "REDIS_VERSION", "REDIS_VERSION_NUM"}) do
  library_redis[name] = H.redis[name]
end
local library_api = strict({redis = strict(library_redis)})
local function run(f) return xpcall(f, handler) end
local function run_function(f, keys, args)
  return xpcall(function() return f(keys, args) end, handler)
end
return H, run, run_function, globals_meta, library_api
"#;

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;

    impl Host for Echo {
        fn call(&mut self, spec: &'static CommandSpec, args: &[Bytes]) -> Reply {
            match spec.name {
                "incr" => Reply::static_error("ERR value is not an integer or out of range"),
                "get" => Reply::Bulk(args[1].clone()),
                "set" => Reply::ok(),
                _ => Reply::Array(args.iter().cloned().map(Reply::Bulk).collect()),
            }
        }
    }

    fn eval(vm: &mut Vm, body: &str, keys: &[&str], args: &[&str]) -> Reply {
        let keys: Vec<Bytes> = keys
            .iter()
            .map(|k| Bytes::copy_from_slice(k.as_bytes()))
            .collect();
        let args: Vec<Bytes> = args
            .iter()
            .map(|k| Bytes::copy_from_slice(k.as_bytes()))
            .collect();
        let sha = crate::sha1hex(body.as_bytes());
        let control = RunControl::new(sha.clone(), false, Duration::from_secs(5));
        vm.eval(
            &Invocation {
                sha: &sha,
                body: body.as_bytes(),
                keys: &keys,
                args: &args,
                read_only: false,
            },
            &mut Echo,
            &control,
        )
    }

    fn bulk(s: &str) -> Reply {
        Reply::Bulk(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn values_convert_both_ways_as_in_redis() {
        let mut vm = Vm::new().unwrap();
        assert_eq!(eval(&mut vm, "return 3.99", &[], &[]), Reply::Integer(3));
        assert_eq!(eval(&mut vm, "return true", &[], &[]), Reply::Integer(1));
        assert_eq!(eval(&mut vm, "return false", &[], &[]), Reply::Null);
        assert_eq!(eval(&mut vm, "return nil", &[], &[]), Reply::Null);
        assert_eq!(
            eval(&mut vm, "return {1,'a',{2},nil,5}", &[], &[]),
            Reply::Array(vec![
                Reply::Integer(1),
                bulk("a"),
                Reply::Array(vec![Reply::Integer(2)])
            ])
        );
        assert_eq!(
            eval(&mut vm, "return {KEYS[1], ARGV[2]}", &["k"], &["a", "b"]),
            Reply::Array(vec![bulk("k"), bulk("b")])
        );
        assert_eq!(
            eval(&mut vm, "return redis.call('get', 12.5)", &[], &[]),
            bulk("12.5")
        );
        assert_eq!(
            eval(&mut vm, "return redis.status_reply('FINE')", &[], &[]),
            Reply::Simple(Bytes::from_static(b"FINE"))
        );
        assert_eq!(
            eval(&mut vm, "return redis.error_reply('MY err')", &[], &[]),
            Reply::static_error("MY err")
        );
        assert_eq!(
            eval(&mut vm, "redis.setresp(3); return {double=1.5}", &[], &[]),
            Reply::Double(Bytes::from_static(b"1.5"))
        );
    }

    #[test]
    fn errors_name_the_script_and_line() {
        let mut vm = Vm::new().unwrap();
        let body = "local x = 1\nreturn redis.call('incr', 'k')";
        let sha = crate::sha1hex(body.as_bytes());
        assert_eq!(
            eval(&mut vm, body, &[], &[]),
            Reply::error(format!(
                "ERR value is not an integer or out of range script: {sha}, on @user_script:2."
            ))
        );
        let body = "error('boom')";
        let sha = crate::sha1hex(body.as_bytes());
        assert_eq!(
            eval(&mut vm, body, &[], &[]),
            Reply::error(format!(
                "ERR user_script:1: boom script: {sha}, on @user_script:1."
            ))
        );
        assert_eq!(
            eval(&mut vm, "return redis.pcall('incr', 'k')", &[], &[]),
            Reply::static_error("ERR value is not an integer or out of range")
        );
        assert_eq!(
            eval(
                &mut vm,
                "local ok, e = pcall(redis.call, 'incr', 'k'); return e",
                &[],
                &[]
            ),
            // Redis's pcall hands back the error table's message.
            bulk("ERR value is not an integer or out of range")
        );
        let body = "return redis.call('nosuch')";
        let sha = crate::sha1hex(body.as_bytes());
        assert_eq!(
            eval(&mut vm, body, &[], &[]),
            Reply::error(format!(
                "ERR Unknown Redis command called from script script: {sha}, on @user_script:1."
            ))
        );
        assert_eq!(
            eval(&mut vm, "retur 1", &[], &[]),
            Reply::static_error(
                "ERR Error compiling script (new function): user_script:1: '=' expected near '1'"
            )
        );
    }

    #[test]
    fn globals_are_read_only() {
        let mut vm = Vm::new().unwrap();
        for (body, message) in [
            ("x = 1", "user_script:1: Attempt to modify a readonly table"),
            (
                "return y",
                "user_script:1: Script attempted to access nonexistent global variable 'y'",
            ),
            ("rawset(_G, 'x', 1)", "Attempt to modify a readonly table"),
            (
                "string.foo = 1",
                "user_script:1: Attempt to modify a readonly table",
            ),
            (
                "redis.call = nil",
                "user_script:1: Attempt to modify a readonly table",
            ),
        ] {
            let sha = crate::sha1hex(body.as_bytes());
            assert_eq!(
                eval(&mut vm, body, &[], &[]),
                Reply::error(format!("ERR {message} script: {sha}, on @user_script:1.")),
                "{body}"
            );
        }
        // Nothing leaked into later scripts.
        assert_eq!(
            eval(&mut vm, "return type(redis.call)", &[], &[]),
            bulk("function")
        );
    }

    #[test]
    fn a_killed_script_stops_even_inside_pcall() {
        let mut vm = Vm::new().unwrap();
        let body = "while true do pcall(function() while true do end end) end";
        let sha = crate::sha1hex(body.as_bytes());
        let control = RunControl::new(sha.clone(), false, Duration::from_millis(10));
        let killer = control.clone();
        let stop = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            assert!(killer.is_busy());
            killer.kill();
        });
        let reply = vm.eval(
            &Invocation {
                sha: &sha,
                body: body.as_bytes(),
                keys: &[],
                args: &[],
                read_only: false,
            },
            &mut Echo,
            &control,
        );
        stop.join().unwrap();
        assert_eq!(
            reply,
            Reply::error(format!(
                "ERR Script killed by user with SCRIPT KILL... script: {sha}, on @user_script:1."
            ))
        );
        // The interpreter is fine afterwards.
        assert_eq!(eval(&mut vm, "return 1", &[], &[]), Reply::Integer(1));
    }
}
