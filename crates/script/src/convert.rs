//! Redis's conversions between command replies and Lua values, both ways,
//! as `script_lua.c` does them.

use bytes::Bytes;
use elastickv_redis::number::format_score;
use elastickv_resp::Reply;
use mlua::{Lua, Table, Value};

/// Nesting a reply or a returned table may have (deeper is refused, like
/// Redis's Lua stack limit).
const MAX_DEPTH: usize = 1000;

/// An error as a script sees one: a table whose `err` field holds the code
/// and message (`luaPushErrorBuff`). `text` is what a client would get
/// after the `-`: `CODE message`, or a message alone, which gets `ERR`.
pub fn error_table(lua: &Lua, text: &[u8]) -> mlua::Result<Table> {
    let (code, message): (&[u8], &[u8]) = match text.iter().position(|&b| b == b' ') {
        Some(space) => (&text[..space], &text[space + 1..]),
        None => (b"ERR", text),
    };
    let mut end = message.len();
    while end > 0 && matches!(message[end - 1], b'\r' | b'\n') {
        end -= 1;
    }
    let mut start = 0;
    while start < end && matches!(message[start], b'\r' | b'\n') {
        start += 1;
    }
    let mut full = code.to_vec();
    full.push(b' ');
    full.extend_from_slice(&message[start..end]);
    let table = lua.create_table()?;
    table.raw_set("err", lua.create_string(&full)?)?;
    Ok(table)
}

/// An error table for a message of this server's own (no code: `ERR`).
pub fn plain_error_table(lua: &Lua, message: &str) -> mlua::Result<Table> {
    // `luaPushError(msg)`: a message without a leading '-' gets `ERR`.
    let table = lua.create_table()?;
    let mut full = b"ERR ".to_vec();
    full.extend_from_slice(message.trim_end_matches(['\r', '\n']).as_bytes());
    table.raw_set("err", lua.create_string(&full)?)?;
    Ok(table)
}

/// A command's reply as the script sees it, for a script speaking `resp`.
pub fn reply_to_lua(lua: &Lua, reply: &Reply, resp: u8) -> mlua::Result<Value> {
    reply_to_lua_at(lua, reply, resp, 0)
}

fn reply_to_lua_at(lua: &Lua, reply: &Reply, resp: u8, depth: usize) -> mlua::Result<Value> {
    if depth > MAX_DEPTH {
        return Err(mlua::Error::RuntimeError(
            "reached lua stack limit".to_string(),
        ));
    }
    let string = |b: &[u8]| lua.create_string(b).map(Value::String);
    let single = |field: &str, value: Value| -> mlua::Result<Value> {
        let t = lua.create_table()?;
        t.raw_set(field, value)?;
        Ok(Value::Table(t))
    };
    let array = |items: &mut dyn Iterator<Item = &Reply>| -> mlua::Result<Value> {
        let t = lua.create_table()?;
        for (i, item) in items.enumerate() {
            t.raw_set(i + 1, reply_to_lua_at(lua, item, resp, depth + 1)?)?;
        }
        Ok(Value::Table(t))
    };
    match reply {
        Reply::Simple(s) => single("ok", string(s)?),
        Reply::Error(e) => {
            let t = error_table(lua, e)?;
            t.raw_set("ignore_error_stats_update", true)?;
            Ok(Value::Table(t))
        }
        Reply::Integer(n) => Ok(Value::Number(*n as f64)),
        Reply::Bulk(b) => string(b),
        Reply::Null | Reply::NullArray => Ok(if resp == 2 {
            Value::Boolean(false)
        } else {
            Value::Nil
        }),
        Reply::Array(items) | Reply::Push(items) => array(&mut items.iter()),
        Reply::Set(items) if resp == 2 => array(&mut items.iter()),
        Reply::Set(items) => {
            let members = lua.create_table()?;
            for item in items {
                members.raw_set(reply_to_lua_at(lua, item, resp, depth + 1)?, true)?;
            }
            single("set", Value::Table(members))
        }
        Reply::Map(pairs) if resp == 2 => {
            array(&mut pairs.iter().flat_map(|(k, v)| [k, v].into_iter()))
        }
        Reply::Map(pairs) => {
            let map = lua.create_table()?;
            for (k, v) in pairs {
                map.raw_set(
                    reply_to_lua_at(lua, k, resp, depth + 1)?,
                    reply_to_lua_at(lua, v, resp, depth + 1)?,
                )?;
            }
            single("map", Value::Table(map))
        }
        Reply::Pairs(pairs) if resp == 2 => {
            array(&mut pairs.iter().flat_map(|(k, v)| [k, v].into_iter()))
        }
        Reply::Pairs(pairs) => {
            let t = lua.create_table()?;
            for (i, (k, v)) in pairs.iter().enumerate() {
                let pair = lua.create_table()?;
                pair.raw_set(1, reply_to_lua_at(lua, k, resp, depth + 1)?)?;
                pair.raw_set(2, reply_to_lua_at(lua, v, resp, depth + 1)?)?;
                t.raw_set(i + 1, pair)?;
            }
            Ok(Value::Table(t))
        }
        Reply::Double(text) if resp == 2 => string(text),
        Reply::Double(text) => {
            let value = std::str::from_utf8(text)
                .ok()
                .and_then(crate::vm::lua_str_to_number)
                .unwrap_or(f64::NAN);
            single("double", Value::Number(value))
        }
        Reply::Bool(b) if resp == 2 => Ok(Value::Number(if *b { 1.0 } else { 0.0 })),
        Reply::Bool(b) => Ok(Value::Boolean(*b)),
        Reply::Verbatim { text, .. } if resp == 2 => string(text),
        Reply::Verbatim { format, text } => {
            let inner = lua.create_table()?;
            inner.raw_set("string", lua.create_string(text)?)?;
            inner.raw_set("format", lua.create_string(format)?)?;
            single("verbatim_string", Value::Table(inner))
        }
    }
}

/// A Lua number, whichever way it came across (integral numbers arrive as
/// `Integer`).
pub fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => Some(*n),
        Value::Integer(n) => Some(*n as f64),
        _ => None,
    }
}

/// Replaces CR and LF with spaces, as Redis does to status and error
/// texts a script returns.
fn one_line(b: &[u8]) -> Bytes {
    b.iter()
        .map(|&c| if c == b'\r' || c == b'\n' { b' ' } else { c })
        .collect::<Vec<u8>>()
        .into()
}

/// A script's result as the reply its caller gets (`luaReplyToRedisReply`);
/// `resp` is the protocol the script chose with `redis.setresp`.
pub fn lua_to_reply(value: &Value, resp: u8) -> Reply {
    lua_to_reply_at(value, resp, 0)
}

fn lua_to_reply_at(value: &Value, resp: u8, depth: usize) -> Reply {
    if depth > MAX_DEPTH {
        return Reply::static_error("ERR reached lua stack limit");
    }
    match value {
        Value::String(s) => Reply::Bulk(Bytes::copy_from_slice(&s.as_bytes())),
        Value::Boolean(b) if resp == 2 => {
            if *b {
                Reply::Integer(1)
            } else {
                Reply::Null
            }
        }
        Value::Boolean(b) => Reply::Bool(*b),
        // C's (long long) cast of a double; out of range saturates here.
        Value::Number(n) => Reply::Integer(*n as i64),
        Value::Integer(n) => Reply::Integer(*n),
        Value::Table(t) => table_to_reply(t, resp, depth),
        _ => Reply::Null,
    }
}

fn table_to_reply(t: &Table, resp: u8, depth: usize) -> Reply {
    let field = |name: &str| t.raw_get::<Value>(name).unwrap_or(Value::Nil);
    if let Value::String(err) = field("err") {
        return Reply::Error(one_line(&err.as_bytes()));
    }
    if let Value::String(ok) = field("ok") {
        return Reply::Simple(one_line(&ok.as_bytes()));
    }
    if let Some(d) = number(&field("double")) {
        return Reply::Double(format_score(d));
    }
    if let Value::String(big) = field("big_number") {
        // Only RESP2's form exists here: a bulk string.
        return Reply::Bulk(one_line(&big.as_bytes()));
    }
    if let Value::Table(verbatim) = field("verbatim_string")
        && let Ok(Value::String(format)) = verbatim.raw_get::<Value>("format")
        && let Ok(Value::String(text)) = verbatim.raw_get::<Value>("string")
    {
        let format_bytes = format.as_bytes();
        let mut code = [b' '; 3];
        for (dst, src) in code.iter_mut().zip(format_bytes.iter()) {
            *dst = *src;
        }
        return Reply::Verbatim {
            format: code,
            text: Bytes::copy_from_slice(&text.as_bytes()),
        };
    }
    if let Value::Table(map) = field("map") {
        let pairs = map
            .pairs::<Value, Value>()
            .filter_map(Result::ok)
            .map(|(k, v)| {
                (
                    lua_to_reply_at(&k, resp, depth + 1),
                    lua_to_reply_at(&v, resp, depth + 1),
                )
            })
            .collect();
        return Reply::Map(pairs);
    }
    if let Value::Table(set) = field("set") {
        let members = set
            .pairs::<Value, Value>()
            .filter_map(Result::ok)
            .map(|(k, _)| lua_to_reply_at(&k, resp, depth + 1))
            .collect();
        return Reply::Set(members);
    }
    let mut items = Vec::new();
    for i in 1.. {
        match t.raw_get::<Value>(i) {
            Ok(Value::Nil) | Err(_) => break,
            Ok(item) => items.push(lua_to_reply_at(&item, resp, depth + 1)),
        }
    }
    Reply::Array(items)
}
