//! Redis 7 functions: libraries (`#!lua name=...` code that registers
//! functions with `redis.register_function`), loaded into an interpreter
//! the way Redis's Lua engine loads them, and FCALL.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use elastickv_resp::Reply;
use mlua::{Function, HookTriggers, Lua, MultiValue, Table, Value};

use crate::ScriptFlags;
use crate::convert::plain_error_table;
use crate::vm::{
    INTERNAL_CHUNK, Invocation, LibError, LibFn, RunControl, SLOT, Target, Vm, install_functions,
};

/// How long a library's code may run while it is loaded (Redis's
/// `LOAD_TIMEOUT_MS`).
const LOAD_TIMEOUT: Duration = Duration::from_millis(500);

const NAME_RULE: &str = "Library names can only contain letters, numbers, or underscores(_) and must be at least one character long";

/// A function a library registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionInfo {
    pub name: String,
    pub description: Option<String>,
    pub flags: ScriptFlags,
}

/// A library as FUNCTION LIST describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibraryInfo {
    pub name: String,
    /// The whole code, shebang included.
    pub code: Bytes,
    pub functions: Vec<FunctionInfo>,
}

/// A function registered in an interpreter.
#[derive(Debug, Clone)]
pub(crate) struct Registered {
    pub(crate) callback: Function,
    pub(crate) info: FunctionInfo,
}

/// `[a-zA-Z0-9_]+`, as Redis requires of library and function names.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `functionExtractLibMetaData`: the engine, the library name, and where
/// the code starts (at the shebang's line feed).
fn metadata(code: &[u8]) -> Result<(String, String, usize), String> {
    if !code.starts_with(b"#!") {
        return Err("Missing library metadata".into());
    }
    let Some(end) = code.iter().position(|&b| b == b'\n') else {
        return Err("Invalid library metadata".into());
    };
    let line = String::from_utf8_lossy(&code[..end]);
    let mut parts = line.split_ascii_whitespace();
    let Some(engine) = parts.next() else {
        return Err("Invalid library metadata".into());
    };
    let engine = engine[2..].to_string();
    let mut name = None;
    for part in parts {
        if part.len() >= 5 && part[..5].eq_ignore_ascii_case("name=") {
            if name.is_some() {
                return Err(
                    "Invalid metadata value, name argument was given multiple times".into(),
                );
            }
            name = Some(part[5..].to_string());
            continue;
        }
        return Err(format!("Invalid metadata value given: {part}"));
    }
    let Some(name) = name else {
        return Err("Library name was not given".into());
    };
    Ok((engine, name, end))
}

/// The library's name, from its metadata (FUNCTION LOAD checks it before
/// anything else).
pub fn library_name(code: &[u8]) -> Result<String, String> {
    let (engine, name, _) = metadata(code)?;
    if !valid_name(&name) {
        return Err(NAME_RULE.into());
    }
    if !engine.eq_ignore_ascii_case("lua") {
        return Err(format!("Engine '{engine}' not found"));
    }
    Ok(name)
}

/// Reads `redis.register_function`'s flags table.
fn read_flags(flags: &Table) -> Option<ScriptFlags> {
    let mut out = ScriptFlags::default();
    for i in 1.. {
        let value: Value = flags.get(i).ok()?;
        let name = match value {
            Value::Nil => break,
            Value::String(s) => s.to_string_lossy(),
            Value::Number(_) | Value::Integer(_) => crate::vm::lua_number_string(&value),
            _ => return None,
        };
        match name.to_ascii_lowercase().as_str() {
            "no-writes" => out.no_writes = true,
            "allow-oom" => out.allow_oom = true,
            "allow-stale" => out.allow_stale = true,
            "no-cluster" => out.no_cluster = true,
            "allow-cross-slot-keys" => out.allow_cross_slot_keys = true,
            _ => return None,
        }
    }
    Some(out)
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.to_string_lossy()),
        Value::Number(_) | Value::Integer(_) => Some(crate::vm::lua_number_string(value)),
        _ => None,
    }
}

/// `redis.register_function(name, callback)` or
/// `redis.register_function{function_name=..., callback=..., flags=...,
/// description=...}`, while a library loads: the registration goes to the
/// slot's `loading` list.
fn register_function(lua: &Lua, args: MultiValue) -> Result<MultiValue, LibError> {
    let raise = |message: &str| -> LibError {
        match plain_error_table(lua, message) {
            Ok(t) => LibError::Table(t),
            Err(e) => LibError::from(e),
        }
    };
    let slot: Table = lua.named_registry_value(SLOT)?;
    let Ok(Value::Table(loading)) = slot.raw_get::<Value>("loading") else {
        return Err(raise(
            "redis.register_function can only be called on FUNCTION LOAD command",
        ));
    };
    let (name, callback, description, flags) = match args.len() {
        1 => {
            let Value::Table(named) = &args[0] else {
                return Err(raise(
                    "calling redis.register_function with a single argument is only applicable to Lua table (representing named arguments).",
                ));
            };
            let (mut name, mut callback, mut description, mut flags) =
                (None, None, None, ScriptFlags::default());
            for pair in named.pairs::<Value, Value>() {
                let (key, value) = pair?;
                let Some(key) = text(&key) else {
                    return Err(raise(
                        "named argument key given to redis.register_function is not a string",
                    ));
                };
                match key.to_ascii_lowercase().as_str() {
                    "function_name" => match text(&value) {
                        Some(n) => name = Some(n),
                        None => {
                            return Err(raise(
                                "function_name argument given to redis.register_function must be a string",
                            ));
                        }
                    },
                    "description" => match text(&value) {
                        Some(d) => description = Some(d),
                        None => {
                            return Err(raise(
                                "description argument given to redis.register_function must be a string",
                            ));
                        }
                    },
                    "callback" => match value {
                        Value::Function(f) => callback = Some(f),
                        _ => {
                            return Err(raise(
                                "callback argument given to redis.register_function must be a function",
                            ));
                        }
                    },
                    "flags" => match &value {
                        Value::Table(t) => match read_flags(t) {
                            Some(f) => flags = f,
                            None => return Err(raise("unknown flag given")),
                        },
                        _ => {
                            return Err(raise(
                                "flags argument to redis.register_function must be a table representing function flags",
                            ));
                        }
                    },
                    _ => return Err(raise("unknown argument given to redis.register_function")),
                }
            }
            let Some(name) = name else {
                return Err(raise(
                    "redis.register_function must get a function name argument",
                ));
            };
            let Some(callback) = callback else {
                return Err(raise(
                    "redis.register_function must get a callback argument",
                ));
            };
            (name, callback, description, flags)
        }
        2 => {
            let Some(name) = text(&args[0]) else {
                return Err(raise(
                    "first argument to redis.register_function must be a string",
                ));
            };
            let Value::Function(callback) = &args[1] else {
                return Err(raise(
                    "second argument to redis.register_function must be a function",
                ));
            };
            (name, callback.clone(), None, ScriptFlags::default())
        }
        _ => {
            return Err(raise(
                "wrong number of arguments to redis.register_function",
            ));
        }
    };
    if !valid_name(&name) {
        return Err(raise(NAME_RULE));
    }
    for existing in loading.sequence_values::<Table>() {
        let existing: String = existing?.raw_get("name")?;
        if existing == name {
            return Err(raise("Function already exists in the library"));
        }
    }
    let entry = lua.create_table()?;
    entry.raw_set("name", name)?;
    entry.raw_set("callback", callback)?;
    if let Some(d) = description {
        entry.raw_set("description", d)?;
    }
    entry.raw_set("flags", flags_bits(flags))?;
    loading.raw_push(entry)?;
    Ok(MultiValue::new())
}

fn flags_bits(f: ScriptFlags) -> u32 {
    u32::from(f.no_writes)
        | u32::from(f.allow_oom) << 1
        | u32::from(f.allow_stale) << 2
        | u32::from(f.no_cluster) << 3
        | u32::from(f.allow_cross_slot_keys) << 4
}

fn flags_from_bits(bits: u32) -> ScriptFlags {
    ScriptFlags {
        compat: false,
        no_writes: bits & 1 != 0,
        allow_oom: bits & 2 != 0,
        allow_stale: bits & 4 != 0,
        no_cluster: bits & 8 != 0,
        allow_cross_slot_keys: bits & 16 != 0,
    }
}

/// Fills the library API's `redis` table (the rest is copied from the
/// script API by the sandbox).
pub(crate) fn install_library_api(lua: &Lua, redis: &Table) -> mlua::Result<()> {
    let functions: Vec<(&'static str, LibFn)> =
        vec![("register_function", Box::new(register_function))];
    install_functions(lua, redis, functions)
}

impl Vm {
    /// Loads a library's code: its functions become callable here (a
    /// library of the same name is replaced). The error is Redis's text
    /// (a client gets it after `ERR `).
    pub fn load_library(&mut self, code: &[u8]) -> Result<LibraryInfo, String> {
        let name = library_name(code)?;
        let (_, _, start) = metadata(code)?;
        let chunk = self
            .lua
            .load(&code[start..])
            .set_name("@user_function")
            .into_function()
            .map_err(|e| {
                format!(
                    "Error compiling function: {}",
                    crate::vm::syntax_message(&e)
                )
            })?;
        let registered = self
            .run_library(chunk)
            .map_err(|e| format!("Error registering functions: {e}"))?;
        if registered.is_empty() {
            return Err("No functions registered".into());
        }
        self.functions.retain(|_, r| {
            !registered
                .iter()
                .any(|(info, _)| info.name.eq_ignore_ascii_case(&r.info.name))
        });
        let mut functions = Vec::with_capacity(registered.len());
        for (info, callback) in registered {
            functions.push(info.clone());
            self.functions.insert(
                info.name.to_ascii_lowercase(),
                Registered { callback, info },
            );
        }
        Ok(LibraryInfo {
            name,
            code: Bytes::copy_from_slice(code),
            functions,
        })
    }

    /// Runs a library's top level with only the library API in sight, and
    /// collects what it registered.
    fn run_library(&mut self, chunk: Function) -> Result<Vec<(FunctionInfo, Function)>, String> {
        let loading = self.lua.create_table().map_err(|e| e.to_string())?;
        let slot: Table = self
            .lua
            .named_registry_value(SLOT)
            .map_err(|e| e.to_string())?;
        let prepare = || -> mlua::Result<()> {
            slot.raw_set("loading", loading.clone())?;
            self.globals_meta
                .raw_set("__index", self.library_api.clone())
        };
        prepare().map_err(|e| e.to_string())?;
        let started = Instant::now();
        let hooked = self.lua.set_hook(
            HookTriggers::new().every_nth_instruction(100_000),
            move |lua, debug| {
                let internal = debug.source().source.as_deref() == Some(INTERNAL_CHUNK);
                if started.elapsed() > LOAD_TIMEOUT && !internal {
                    let t = plain_error_table(lua, "FUNCTION LOAD timeout")?;
                    let slot: Table = lua.named_registry_value(SLOT)?;
                    slot.raw_set("pending", t)?;
                    return Err(mlua::Error::RuntimeError(crate::vm::RAISED.to_string()));
                }
                Ok(mlua::VmState::Continue)
            },
        );
        let outcome: mlua::Result<(bool, Value)> = match hooked {
            Ok(()) => self.runner.call(chunk),
            Err(e) => Err(e),
        };
        self.lua.remove_hook();
        let restore = || -> mlua::Result<()> {
            slot.raw_set("loading", Value::Nil)?;
            self.globals_meta.raw_set("__index", self.hidden.clone())
        };
        restore().map_err(|e| e.to_string())?;
        match outcome.map_err(|e| e.to_string())? {
            (true, _) => {}
            (false, Value::Table(err)) => {
                return Err(err
                    .raw_get::<String>("err")
                    .unwrap_or_else(|_| "ERR execution failure".into()));
            }
            (false, other) => return Err(format!("ERR {}", crate::vm::plain_message(&other))),
        }
        let mut out = Vec::new();
        for entry in loading.sequence_values::<Table>() {
            let read = |entry: Table| -> mlua::Result<(FunctionInfo, Function)> {
                let info = FunctionInfo {
                    name: entry.raw_get("name")?,
                    description: entry.raw_get("description")?,
                    flags: flags_from_bits(entry.raw_get("flags")?),
                };
                Ok((info, entry.raw_get("callback")?))
            };
            out.push(entry.and_then(read).map_err(|e| e.to_string())?);
        }
        Ok(out)
    }

    /// Drops every function, and loads `libraries` (each library's code)
    /// instead, noting `generation` as what they came from. A library that
    /// does not load any more (it did when it was recorded) is skipped and
    /// its error returned with the others.
    pub fn load_libraries(&mut self, generation: u64, libraries: &[Bytes]) -> Vec<String> {
        self.functions.clear();
        let errors = libraries
            .iter()
            .filter_map(|code| self.load_library(code).err())
            .collect();
        self.functions_generation = Some(generation);
        errors
    }

    /// The registry generation the loaded functions came from.
    pub fn functions_generation(&self) -> Option<u64> {
        self.functions_generation
    }

    /// The flags of a loaded function (looked up without regard to case).
    pub fn function_flags(&self, name: &str) -> Option<ScriptFlags> {
        self.functions
            .get(&name.to_ascii_lowercase())
            .map(|r| r.info.flags)
    }

    /// FCALL: runs a loaded function with `keys` and `args`.
    pub fn call_function(
        &mut self,
        name: &str,
        invocation: &Invocation<'_>,
        host: &mut dyn crate::Host,
        control: &Arc<RunControl>,
    ) -> Reply {
        let Some(registered) = self.functions.get(&name.to_ascii_lowercase()).cloned() else {
            return Reply::static_error("ERR Function not found");
        };
        let labelled = Invocation {
            sha: &registered.info.name,
            ..*invocation
        };
        self.run(
            Target::Function(registered.callback),
            &labelled,
            host,
            control,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Host;
    use elastickv_redis::table::CommandSpec;

    struct Echo;

    impl Host for Echo {
        fn call(&mut self, _spec: &'static CommandSpec, args: &[Bytes]) -> Reply {
            Reply::Bulk(args[1].clone())
        }
    }

    fn fcall(vm: &mut Vm, name: &str, keys: &[&str], args: &[&str]) -> Reply {
        let keys: Vec<Bytes> = keys
            .iter()
            .map(|k| Bytes::copy_from_slice(k.as_bytes()))
            .collect();
        let args: Vec<Bytes> = args
            .iter()
            .map(|k| Bytes::copy_from_slice(k.as_bytes()))
            .collect();
        let control = RunControl::new(name.to_string(), true, Duration::from_secs(5));
        vm.call_function(
            name,
            &Invocation {
                sha: "",
                body: b"",
                keys: &keys,
                args: &args,
                read_only: false,
            },
            &mut Echo,
            &control,
        )
    }

    #[test]
    fn libraries_register_functions_that_fcall_runs() {
        let mut vm = Vm::new().unwrap();
        let info = vm
            .load_library(
                b"#!lua name=lib\n\
                  local function helper(k) return 'got ' .. k end\n\
                  redis.register_function('first', function(keys, args) return helper(keys[1]) .. args[1] end)\n\
                  redis.register_function{function_name='second', callback=function() return redis.call('get', 'x') end, flags={'no-writes'}, description='reads'}",
            )
            .unwrap();
        assert_eq!(info.name, "lib");
        assert_eq!(info.functions.len(), 2);
        assert!(info.functions[1].flags.no_writes);
        assert_eq!(info.functions[1].description.as_deref(), Some("reads"));
        assert_eq!(
            fcall(&mut vm, "FIRST", &["k"], &["!"]),
            Reply::Bulk(Bytes::from_static(b"got k!"))
        );
        assert_eq!(
            fcall(&mut vm, "second", &[], &[]),
            Reply::Bulk(Bytes::from_static(b"x"))
        );
        assert_eq!(
            fcall(&mut vm, "third", &[], &[]),
            Reply::static_error("ERR Function not found")
        );
    }

    #[test]
    fn loading_errors_are_redis_texts() {
        let mut vm = Vm::new().unwrap();
        let load = |vm: &mut Vm, code: &str| vm.load_library(code.as_bytes()).unwrap_err();
        assert_eq!(
            load(&mut vm, "#!lua name=l\nredis.register_function()"),
            "Error registering functions: ERR wrong number of arguments to redis.register_function"
        );
        assert_eq!(
            load(&mut vm, "#!lua name=l\nredis.call('ping')"),
            "Error registering functions: ERR user_function:2: Script attempted to access nonexistent global variable 'call'"
        );
        assert_eq!(
            load(&mut vm, "#!lua name=l\nlocal x = string.len('a')"),
            "Error registering functions: ERR user_function:2: Script attempted to access nonexistent global variable 'string'"
        );
        assert_eq!(
            load(&mut vm, "#!lua name=l\nretur 1"),
            "Error compiling function: user_function:2: '=' expected near '1'"
        );
        assert_eq!(
            load(&mut vm, "#!lua name=l\nreturn 1"),
            "No functions registered"
        );
        assert_eq!(load(&mut vm, "no shebang"), "Missing library metadata");
        assert_eq!(load(&mut vm, "#!luaX name=x\n"), "Engine 'luaX' not found");
        assert_eq!(
            load(&mut vm, "#!lua name=l\nwhile true do end"),
            "Error registering functions: ERR FUNCTION LOAD timeout"
        );
        // After a failed load, scripts see the usual globals again.
        assert!(vm.load_library(b"#!lua name=ok\nredis.register_function('f', function() return string.len('ab') end)").is_ok());
        assert_eq!(fcall(&mut vm, "f", &[], &[]), Reply::Integer(2));
    }
}
