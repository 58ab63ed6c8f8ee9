//! The scripts (SCRIPT LOAD) and function libraries (FUNCTION) every node
//! keeps: registry records replicated with shard 0, applied from
//! [`log::ScriptsChange`] entries.
//!
//! The node that takes SCRIPT LOAD or FUNCTION LOAD compiles the code and
//! finds the functions a library registers; applying only records it,
//! after the checks that depend on what is already recorded (a library of
//! that name, a function of that name in another library), so two nodes
//! loading at once get Redis's answers in log order. Every change bumps a
//! generation record, which nodes compare with what they loaded.

use bytes::Bytes;
use elastickv_resp::Reply;
use prost::Message;

use crate::keyspace::{KeyspaceWrite, StorageError};
use crate::log::{self, scripts_change::Change};

/// `s` + SHA1: a script's body.
pub const SCRIPT_PREFIX: &[u8] = b"s";
/// `l` + name: a library ([`log::Library`], without `replace`).
pub const LIBRARY_PREFIX: &[u8] = b"l";
/// Bumped by every change.
pub const GENERATION: &[u8] = b"g";
/// Bumped by SCRIPT FLUSH: nodes also forget the scripts EVAL cached.
pub const SCRIPT_FLUSHES: &[u8] = b"x";

fn named(prefix: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = prefix.to_vec();
    out.extend_from_slice(name);
    out
}

fn counter<K: KeyspaceWrite + ?Sized>(ks: &K, name: &[u8]) -> Result<u64, StorageError> {
    Ok(ks
        .registry_get(name)?
        .and_then(|raw| raw.try_into().ok().map(u64::from_be_bytes))
        .unwrap_or(0))
}

fn bump<K: KeyspaceWrite + ?Sized>(ks: &mut K, name: &[u8]) -> Result<(), StorageError> {
    let next = counter(ks, name)? + 1;
    ks.registry_put(name, next.to_be_bytes().to_vec())
}

/// The recorded libraries.
fn libraries<K: KeyspaceWrite + ?Sized>(ks: &K) -> Result<Vec<log::Library>, StorageError> {
    ks.registry_scan(LIBRARY_PREFIX)?
        .into_iter()
        .map(|(name, raw)| {
            log::Library::decode(raw.as_slice()).map_err(|e| {
                StorageError(format!(
                    "library record {:?}: {e}",
                    String::from_utf8_lossy(&name)
                ))
            })
        })
        .collect()
}

/// A function of `adding` that a library in `others` already has
/// (function names compare without regard to case, as in Redis).
fn colliding<'a>(adding: &'a [log::Library], others: &[log::Library]) -> Option<&'a str> {
    adding
        .iter()
        .flat_map(|library| library.functions.iter())
        .find(|f| {
            others
                .iter()
                .flat_map(|library| library.functions.iter())
                .any(|g| g.eq_ignore_ascii_case(f))
        })
        .map(String::as_str)
}

fn store_library<K: KeyspaceWrite + ?Sized>(
    ks: &mut K,
    library: &log::Library,
) -> Result<(), StorageError> {
    let record = log::Library {
        replace: false,
        ..library.clone()
    };
    ks.registry_put(
        &named(LIBRARY_PREFIX, library.name.as_bytes()),
        record.encode_to_vec(),
    )
}

fn delete_all<K: KeyspaceWrite + ?Sized>(ks: &mut K, prefix: &[u8]) -> Result<(), StorageError> {
    for (name, _) in ks.registry_scan(prefix)? {
        ks.registry_delete(&name)?;
    }
    Ok(())
}

/// Applies a change; the reply is Redis's for the command that made it.
pub fn apply<K: KeyspaceWrite + ?Sized>(
    change: &log::ScriptsChange,
    ks: &mut K,
) -> Result<Reply, StorageError> {
    let reply = match &change.change {
        Some(Change::ScriptLoad(script)) => {
            ks.registry_put(
                &named(SCRIPT_PREFIX, script.sha.as_bytes()),
                script.body.to_vec(),
            )?;
            Reply::Bulk(Bytes::from(script.sha.clone()))
        }
        Some(Change::ScriptFlush(_)) => {
            delete_all(ks, SCRIPT_PREFIX)?;
            bump(ks, SCRIPT_FLUSHES)?;
            Reply::ok()
        }
        Some(Change::FunctionLoad(library)) => {
            let mut others = libraries(ks)?;
            let existing = others.iter().position(|l| l.name == library.name);
            if let Some(at) = existing {
                if !library.replace {
                    return Ok(Reply::error(format!(
                        "ERR Library '{}' already exists",
                        library.name
                    )));
                }
                others.remove(at);
            }
            if let Some(f) = colliding(std::slice::from_ref(library), &others) {
                return Ok(Reply::error(format!("ERR Function {f} already exists")));
            }
            store_library(ks, library)?;
            Reply::Bulk(Bytes::from(library.name.clone()))
        }
        Some(Change::FunctionDelete(name)) => {
            let key = named(LIBRARY_PREFIX, name.as_bytes());
            if ks.registry_get(&key)?.is_none() {
                return Ok(Reply::static_error("ERR Library not found"));
            }
            ks.registry_delete(&key)?;
            Reply::ok()
        }
        Some(Change::FunctionFlush(_)) => {
            delete_all(ks, LIBRARY_PREFIX)?;
            Reply::ok()
        }
        Some(Change::FunctionRestore(restore)) => {
            let policy =
                log::RestorePolicy::try_from(restore.policy).unwrap_or(log::RestorePolicy::Append);
            let mut others = if policy == log::RestorePolicy::Flush {
                Vec::new()
            } else {
                libraries(ks)?
            };
            for library in &restore.libraries {
                if let Some(at) = others.iter().position(|l| l.name == library.name) {
                    if policy != log::RestorePolicy::Replace {
                        return Ok(Reply::error(format!(
                            "ERR Library {} already exists",
                            library.name
                        )));
                    }
                    others.remove(at);
                }
            }
            if let Some(f) = colliding(&restore.libraries, &others) {
                return Ok(Reply::error(format!("ERR Function {f} already exists")));
            }
            if policy == log::RestorePolicy::Flush {
                delete_all(ks, LIBRARY_PREFIX)?;
            }
            for library in &restore.libraries {
                store_library(ks, library)?;
            }
            Reply::ok()
        }
        None => return Ok(Reply::static_error("ERR unknown scripts change")),
    };
    bump(ks, GENERATION)?;
    Ok(reply)
}

/// What a node loads: every recorded script and library, and the
/// counters it compares with what it has.
#[derive(Debug, Default, Clone)]
pub struct Recorded {
    pub generation: u64,
    pub script_flushes: u64,
    /// (SHA1, body).
    pub scripts: Vec<(String, Bytes)>,
    pub libraries: Vec<log::Library>,
}

/// Decodes the registry's records (all of them, in name order).
pub fn decode_all(records: &[(Vec<u8>, Vec<u8>)]) -> Result<Recorded, String> {
    let mut out = Recorded::default();
    for (name, raw) in records {
        let as_counter = || -> Result<u64, String> {
            let bytes: [u8; 8] = raw.as_slice().try_into().map_err(|_| {
                format!(
                    "registry counter {:?} is not 8 bytes",
                    String::from_utf8_lossy(name)
                )
            })?;
            Ok(u64::from_be_bytes(bytes))
        };
        if name.as_slice() == GENERATION {
            out.generation = as_counter()?;
        } else if name.as_slice() == SCRIPT_FLUSHES {
            out.script_flushes = as_counter()?;
        } else if let Some(sha) = name.strip_prefix(SCRIPT_PREFIX) {
            out.scripts.push((
                String::from_utf8_lossy(sha).into_owned(),
                Bytes::copy_from_slice(raw),
            ));
        } else if name.starts_with(LIBRARY_PREFIX) {
            let library =
                log::Library::decode(raw.as_slice()).map_err(|e| format!("library record: {e}"))?;
            out.libraries.push(library);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyspace::MemKeyspace;

    fn library(name: &str, functions: &[&str], replace: bool) -> log::Library {
        log::Library {
            name: name.into(),
            code: Bytes::from(format!("#!lua name={name}\n")),
            functions: functions.iter().map(|f| f.to_string()).collect(),
            replace,
        }
    }

    fn load(ks: &mut MemKeyspace, library: log::Library) -> Reply {
        apply(
            &log::ScriptsChange {
                change: Some(Change::FunctionLoad(library)),
            },
            ks,
        )
        .unwrap()
    }

    fn recorded(ks: &MemKeyspace) -> Recorded {
        let all: Vec<_> = ks
            .registry
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        decode_all(&all).unwrap()
    }

    #[test]
    fn libraries_are_checked_against_what_is_recorded_in_log_order() {
        let mut ks = MemKeyspace::default();
        assert_eq!(
            load(&mut ks, library("a", &["f1", "f2"], false)),
            Reply::Bulk(Bytes::from_static(b"a"))
        );
        assert_eq!(
            load(&mut ks, library("a", &["f3"], false)),
            Reply::static_error("ERR Library 'a' already exists")
        );
        assert_eq!(
            load(&mut ks, library("b", &["F1"], false)),
            Reply::static_error("ERR Function F1 already exists")
        );
        // REPLACE may take back its own functions.
        assert_eq!(
            load(&mut ks, library("a", &["f1"], true)),
            Reply::Bulk(Bytes::from_static(b"a"))
        );
        assert_eq!(
            load(&mut ks, library("b", &["f2"], false)),
            Reply::Bulk(Bytes::from_static(b"b"))
        );
        let r = recorded(&ks);
        assert_eq!(r.libraries.len(), 2);
        assert_eq!(r.generation, 3);
        let restore =
            |ks: &mut MemKeyspace, policy: log::RestorePolicy, libs: Vec<log::Library>| {
                apply(
                    &log::ScriptsChange {
                        change: Some(Change::FunctionRestore(log::FunctionRestore {
                            libraries: libs,
                            policy: policy as i32,
                        })),
                    },
                    ks,
                )
                .unwrap()
            };
        assert_eq!(
            restore(
                &mut ks,
                log::RestorePolicy::Append,
                vec![library("a", &["x"], false)]
            ),
            Reply::static_error("ERR Library a already exists")
        );
        assert_eq!(
            restore(
                &mut ks,
                log::RestorePolicy::Replace,
                vec![library("a", &["f2"], false)]
            ),
            Reply::static_error("ERR Function f2 already exists")
        );
        assert_eq!(
            restore(
                &mut ks,
                log::RestorePolicy::Flush,
                vec![library("c", &["f2"], false)]
            ),
            Reply::ok()
        );
        let r = recorded(&ks);
        assert_eq!(
            r.libraries
                .iter()
                .map(|l| l.name.as_str())
                .collect::<Vec<_>>(),
            ["c"]
        );
    }

    #[test]
    fn script_flush_forgets_loaded_scripts_and_is_counted() {
        let mut ks = MemKeyspace::default();
        let script = log::ScriptsChange {
            change: Some(Change::ScriptLoad(log::Script {
                sha: "abc".into(),
                body: Bytes::from_static(b"return 1"),
            })),
        };
        assert_eq!(
            apply(&script, &mut ks).unwrap(),
            Reply::Bulk(Bytes::from_static(b"abc"))
        );
        assert_eq!(recorded(&ks).scripts.len(), 1);
        let flush = log::ScriptsChange {
            change: Some(Change::ScriptFlush(log::ScriptFlush {})),
        };
        assert_eq!(apply(&flush, &mut ks).unwrap(), Reply::ok());
        let r = recorded(&ks);
        assert!(r.scripts.is_empty());
        assert_eq!((r.script_flushes, r.generation), (1, 2));
    }
}
