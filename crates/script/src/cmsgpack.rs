//! The `cmsgpack` library scripts get, as lua-cmsgpack 0.4.0 (the one
//! Redis embeds) packs and unpacks MessagePack: the same choice of
//! encodings, array detection, nesting limit and errors.

use mlua::{Lua, MultiValue, Table, Value};

use crate::convert::number;
use crate::vm::{LibError, LibResult, number_arg, optional_integer_arg, string_arg};

/// Tables nested deeper than this are packed as nil.
const MAX_NESTING: usize = 16;

fn encode_bytes(out: &mut Vec<u8>, s: &[u8]) {
    let len = s.len();
    if len < 32 {
        out.push(0xa0 | len as u8);
    } else if len <= 0xff {
        out.extend_from_slice(&[0xd9, len as u8]);
    } else if len <= 0xffff {
        out.push(0xda);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
    out.extend_from_slice(s);
}

fn encode_int(out: &mut Vec<u8>, n: i64) {
    if n >= 0 {
        if n <= 127 {
            out.push(n as u8);
        } else if n <= 0xff {
            out.extend_from_slice(&[0xcc, n as u8]);
        } else if n <= 0xffff {
            out.push(0xcd);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        } else if n <= 0xffff_ffff {
            out.push(0xce);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        } else {
            out.push(0xcf);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    } else if n >= -32 {
        out.push(n as i8 as u8);
    } else if n >= -128 {
        out.extend_from_slice(&[0xd0, n as i8 as u8]);
    } else if n >= -32768 {
        out.push(0xd1);
        out.extend_from_slice(&(n as i16).to_be_bytes());
    } else if n >= -2_147_483_648 {
        out.push(0xd2);
        out.extend_from_slice(&(n as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn encode_number(out: &mut Vec<u8>, n: f64) {
    // IS_INT64_EQUIVALENT: not infinite, and the same after a round trip
    // through int64.
    if !n.is_infinite() && (n as i64) as f64 == n {
        encode_int(out, n as i64);
    } else if f64::from(n as f32) == n {
        out.push(0xca);
        out.extend_from_slice(&(n as f32).to_be_bytes());
    } else {
        out.push(0xcb);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn encode_header(out: &mut Vec<u8>, n: usize, fix: u8, wide16: u8, wide32: u8) {
    if n <= 15 {
        out.push(fix | n as u8);
    } else if n <= 0xffff {
        out.push(wide16);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(wide32);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

/// `table_is_an_array`: only positive integer keys (32-bit), as many as
/// the largest.
fn is_array(t: &Table) -> LibResult<bool> {
    let (mut count, mut max) = (0f64, 0f64);
    for pair in t.pairs::<Value, Value>() {
        let (key, _) = pair?;
        match number(&key) {
            Some(n) if n > 0.0 && (n as i32) as f64 == n => {
                max = max.max(n);
                count += 1.0;
            }
            _ => return Ok(false),
        }
    }
    Ok(max == count)
}

fn encode_value(out: &mut Vec<u8>, value: &Value, level: usize) -> LibResult<()> {
    match value {
        Value::String(s) => encode_bytes(out, &s.as_bytes()),
        Value::Boolean(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Number(_) | Value::Integer(_) => encode_number(out, number(value).unwrap_or(0.0)),
        Value::Table(t) if level < MAX_NESTING => {
            if is_array(t)? {
                let len = t.raw_len();
                encode_header(out, len, 0x90, 0xdc, 0xdd);
                for i in 1..=len {
                    let item: Value = t.get(i)?;
                    encode_value(out, &item, level + 1)?;
                }
            } else {
                let pairs: Vec<(Value, Value)> =
                    t.pairs::<Value, Value>().collect::<mlua::Result<_>>()?;
                encode_header(out, pairs.len(), 0x80, 0xde, 0xdf);
                for (k, v) in &pairs {
                    encode_value(out, k, level + 1)?;
                    encode_value(out, v, level + 1)?;
                }
            }
        }
        _ => out.push(0xc0),
    }
    Ok(())
}

fn pack(lua: &Lua, args: MultiValue) -> LibResult<MultiValue> {
    if args.is_empty() {
        return Err(LibError::Arg(0, "MessagePack pack needs input.".into()));
    }
    let mut out = Vec::new();
    for arg in &args {
        encode_value(&mut out, arg, 0)?;
    }
    Ok(MultiValue::from_vec(vec![Value::String(
        lua.create_string(&out)?,
    )]))
}

/// Why decoding stopped.
enum Stop {
    /// Not enough data.
    Eof,
    BadFormat,
    Lua(mlua::Error),
}

impl From<mlua::Error> for Stop {
    fn from(e: mlua::Error) -> Self {
        Stop::Lua(e)
    }
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn left(&self) -> usize {
        self.data.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&[u8], Stop> {
        if self.left() < n {
            return Err(Stop::Eof);
        }
        let out = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn be(&mut self, n: usize) -> Result<u64, Stop> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    fn decode(&mut self, lua: &Lua) -> Result<Value, Stop> {
        let tag = *self.data.get(self.pos).ok_or(Stop::Eof)?;
        let int = |n: i64| Value::Number(n as f64);
        // Headers are read together with their first data byte checked,
        // as the C code's `mp_cur_need` does before consuming.
        let need = |c: &Self, n: usize| if c.left() < n { Err(Stop::Eof) } else { Ok(()) };
        Ok(match tag {
            0xcc..=0xd3 => {
                let width = match tag {
                    0xcc | 0xd0 => 1,
                    0xcd | 0xd1 => 2,
                    0xce | 0xd2 => 4,
                    _ => 8,
                };
                need(self, 1 + width)?;
                self.pos += 1;
                let raw = self.be(width)?;
                match tag {
                    0xd0 => int(i64::from(raw as u8 as i8)),
                    0xd1 => int(i64::from(raw as u16 as i16)),
                    0xd2 => int(i64::from(raw as u32 as i32)),
                    // lua_pushinteger of a uint64: the bits as an int64.
                    _ => int(raw as i64),
                }
            }
            0xc0 => {
                self.pos += 1;
                Value::Nil
            }
            0xc3 | 0xc2 => {
                self.pos += 1;
                Value::Boolean(tag == 0xc3)
            }
            0xca => {
                need(self, 5)?;
                self.pos += 1;
                Value::Number(f64::from(f32::from_bits(self.be(4)? as u32)))
            }
            0xcb => {
                need(self, 9)?;
                self.pos += 1;
                Value::Number(f64::from_bits(self.be(8)?))
            }
            0xd9..=0xdb => {
                let width = match tag {
                    0xd9 => 1,
                    0xda => 2,
                    _ => 4,
                };
                need(self, 1 + width)?;
                self.pos += 1;
                let len = self.be(width)? as usize;
                Value::String(lua.create_string(self.take(len)?)?)
            }
            0xdc..=0xdf => {
                let width = if tag == 0xdc || tag == 0xde { 2 } else { 4 };
                need(self, 1 + width)?;
                self.pos += 1;
                let len = self.be(width)? as usize;
                if tag <= 0xdd {
                    self.array(lua, len)?
                } else {
                    self.map(lua, len)?
                }
            }
            _ if tag & 0x80 == 0 => {
                self.pos += 1;
                int(i64::from(tag))
            }
            _ if tag & 0xe0 == 0xe0 => {
                self.pos += 1;
                int(i64::from(tag as i8))
            }
            _ if tag & 0xe0 == 0xa0 => {
                let len = usize::from(tag & 0x1f);
                need(self, 1 + len)?;
                self.pos += 1;
                Value::String(lua.create_string(self.take(len)?)?)
            }
            _ if tag & 0xf0 == 0x90 => {
                self.pos += 1;
                self.array(lua, usize::from(tag & 0xf))?
            }
            _ if tag & 0xf0 == 0x80 => {
                self.pos += 1;
                self.map(lua, usize::from(tag & 0xf))?
            }
            _ => return Err(Stop::BadFormat),
        })
    }

    fn array(&mut self, lua: &Lua, len: usize) -> Result<Value, Stop> {
        let t = lua.create_table()?;
        for i in 1..=len {
            let item = self.decode(lua)?;
            t.set(i, item)?;
        }
        Ok(Value::Table(t))
    }

    fn map(&mut self, lua: &Lua, len: usize) -> Result<Value, Stop> {
        let t = lua.create_table()?;
        for _ in 0..len {
            let key = self.decode(lua)?;
            let value = self.decode(lua)?;
            t.set(key, value)?;
        }
        Ok(Value::Table(t))
    }
}

/// `mp_unpack_full`: everything (`limit` 0 and `offset` 0), or up to
/// `limit` values from `offset`, then the offset to go on from.
fn unpack_full(lua: &Lua, args: &MultiValue, limit: i64, offset: i64) -> LibResult<MultiValue> {
    let data = string_arg(args, 1)?;
    let len = data.len();
    if offset < 0 || limit < 0 {
        return Err(LibError::Message(format!(
            "Invalid request to unpack with offset of {} and limit of {}.",
            offset as i32, len as i32
        )));
    }
    if offset as usize > len {
        return Err(LibError::Message(format!(
            "Start offset {} greater than input length {}.",
            offset as i32, len as i32
        )));
    }
    let decode_all = limit == 0 && offset == 0;
    let limit = if decode_all {
        i64::from(i32::MAX)
    } else {
        limit
    };
    let mut cursor = Cursor {
        data: &data,
        pos: offset as usize,
    };
    let mut values = Vec::new();
    let mut count = 0;
    while cursor.left() > 0 && count < limit {
        match cursor.decode(lua) {
            Ok(value) => values.push(value),
            Err(Stop::Eof) => return Err(LibError::Message("Missing bytes in input.".into())),
            Err(Stop::BadFormat) => {
                return Err(LibError::Message("Bad data format in input.".into()));
            }
            Err(Stop::Lua(e)) => return Err(e.into()),
        }
        count += 1;
    }
    if !decode_all {
        let next = if cursor.left() == 0 {
            -1.0
        } else {
            cursor.pos as f64
        };
        values.insert(0, Value::Number(next));
    }
    Ok(MultiValue::from_vec(values))
}

/// Installs `pack`, `unpack`, `unpack_one` and `unpack_limit`.
pub fn install(lua: &Lua, table: &Table) -> mlua::Result<()> {
    crate::vm::install_functions(
        lua,
        table,
        vec![
            ("pack", Box::new(pack)),
            (
                "unpack",
                Box::new(|lua, args| unpack_full(lua, &args, 0, 0)),
            ),
            (
                "unpack_one",
                Box::new(|lua, args| {
                    let offset = optional_integer_arg(&args, 2, 0)?;
                    unpack_full(lua, &args, 1, offset)
                }),
            ),
            (
                "unpack_limit",
                Box::new(|lua, args| {
                    let limit = number_arg(&args, 2)? as i64;
                    let offset = optional_integer_arg(&args, 3, 0)?;
                    unpack_full(lua, &args, limit, offset)
                }),
            ),
        ],
    )?;
    table.raw_set("_NAME", "cmsgpack")?;
    table.raw_set("_VERSION", "lua-cmsgpack 0.4.0")?;
    table.raw_set("_COPYRIGHT", "Copyright (C) 2012, Salvatore Sanfilippo")?;
    table.raw_set("_DESCRIPTION", "MessagePack C implementation for Lua")?;
    Ok(())
}
