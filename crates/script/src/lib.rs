//! Lua scripting for elastickv, as Redis 7.0 has it: EVAL's scripts and
//! FUNCTION's libraries run in Lua 5.1 with Redis's sandbox, libraries
//! (`bit`, `cjson`, `cmsgpack`, `struct`), `redis.*` API, type conversions
//! and error texts, byte for byte.
//!
//! This crate knows nothing of shards or raft: a script calls commands
//! through a [`Host`], which the node implements over one shard's snapshot
//! (see `elastickv_redis::effects` for how the effects are replicated).
//!
//! # Layout
//!
//! - [`vm`]: one sandboxed interpreter: building it, running a script,
//!   the `redis` API, errors, SCRIPT KILL.
//! - [`convert`]: replies to Lua values and back.
//! - [`functions`]: FUNCTION's libraries and FCALL; [`dump`]: FUNCTION
//!   DUMP's payload.
//! - [`bit`], [`cjson`], [`cmsgpack`], [`structlib`]: the libraries, as
//!   the C ones Redis embeds behave.

pub mod bit;
pub mod cjson;
pub mod cmsgpack;
pub mod convert;
pub mod dump;
pub mod functions;
pub mod structlib;
pub mod vm;

pub use functions::{FunctionInfo, LibraryInfo, library_name};
pub use vm::{Host, Invocation, RunControl, Vm};

/// The SHA1 of `data` in lower-case hex, as scripts are named.
pub fn sha1hex(data: &[u8]) -> String {
    sha1_smol::Sha1::from(data).digest().to_string()
}

/// The flags a script declares in its `#!lua` shebang line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScriptFlags {
    /// No shebang: EVAL's compatibility mode.
    pub compat: bool,
    pub no_writes: bool,
    pub allow_oom: bool,
    pub allow_stale: bool,
    pub no_cluster: bool,
    pub allow_cross_slot_keys: bool,
}

/// A script's shebang line, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shebang {
    pub flags: ScriptFlags,
    /// Bytes before the code (the shebang without its line feed, which
    /// stays so line numbers do not move).
    pub skip: usize,
}

impl Shebang {
    /// `evalExtractShebangFlags`: the error is Redis's text (a client gets
    /// it after `ERR `).
    pub fn parse(body: &[u8]) -> Result<Shebang, String> {
        if !body.starts_with(b"#!") {
            return Ok(Shebang {
                flags: ScriptFlags {
                    compat: true,
                    ..ScriptFlags::default()
                },
                skip: 0,
            });
        }
        let Some(end) = body.iter().position(|&b| b == b'\n') else {
            return Err("Invalid script shebang".into());
        };
        let line = String::from_utf8_lossy(&body[..end]);
        let mut parts = line.split_ascii_whitespace();
        let Some(engine) = parts.next() else {
            return Err("Invalid engine in script shebang".into());
        };
        if engine != "#!lua" {
            return Err(format!("Unexpected engine in script shebang: {engine}"));
        }
        let mut flags = ScriptFlags::default();
        for part in parts {
            let Some(list) = part.strip_prefix("flags=") else {
                return Err(format!("Unknown lua shebang option: {part}"));
            };
            for flag in list.split(',').filter(|f| !f.is_empty()) {
                match flag {
                    "no-writes" => flags.no_writes = true,
                    "allow-oom" => flags.allow_oom = true,
                    "allow-stale" => flags.allow_stale = true,
                    "no-cluster" => flags.no_cluster = true,
                    "allow-cross-slot-keys" => flags.allow_cross_slot_keys = true,
                    other => return Err(format!("Unexpected flag in script shebang: {other}")),
                }
            }
        }
        Ok(Shebang { flags, skip: end })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shebangs_as_redis_reads_them() {
        assert!(Shebang::parse(b"return 1").unwrap().flags.compat);
        let s = Shebang::parse(b"#!lua flags=no-writes,allow-oom\nreturn 1").unwrap();
        assert!(s.flags.no_writes && s.flags.allow_oom && !s.flags.compat);
        assert_eq!(s.skip, 31);
        assert_eq!(
            Shebang::parse(b"#!lua"),
            Err("Invalid script shebang".into())
        );
        assert_eq!(
            Shebang::parse(b"#!python\n"),
            Err("Unexpected engine in script shebang: #!python".into())
        );
        assert_eq!(
            Shebang::parse(b"#!lua flags=bogus\n"),
            Err("Unexpected flag in script shebang: bogus".into())
        );
        assert_eq!(
            Shebang::parse(b"#!lua name=x\n"),
            Err("Unknown lua shebang option: name=x".into())
        );
        assert_eq!(sha1hex(b""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    }
}
