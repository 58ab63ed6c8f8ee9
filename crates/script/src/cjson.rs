//! The `cjson` library scripts get, as lua-cjson 2.1.0 (the one Redis
//! embeds, with its default settings) encodes and decodes: the same
//! escapes, number format, array detection, key order, limits and error
//! texts.

use elastickv_redis::number::{format_g, strtod_prefix};
use mlua::{LightUserData, Lua, MultiValue, Table, Value};

use crate::convert::number;
use crate::vm::{LibError, LibFn, LibResult, arg_error};

const MAX_DEPTH: usize = 1000;
/// Number precision (`%.14g`).
const PRECISION: i32 = 14;
/// Sparse arrays: an array whose largest index is above this and above
/// twice its number of items is refused.
const SPARSE_SAFE: f64 = 10.0;
const SPARSE_RATIO: f64 = 2.0;

/// `cjson.null`: a NULL light userdata.
pub fn null() -> Value {
    Value::LightUserData(LightUserData(std::ptr::null_mut()))
}

fn escape(byte: u8) -> Option<&'static str> {
    Some(match byte {
        b'"' => "\\\"",
        b'\\' => "\\\\",
        b'/' => "\\/",
        0x08 => "\\b",
        b'\t' => "\\t",
        b'\n' => "\\n",
        0x0c => "\\f",
        b'\r' => "\\r",
        0x7f => "\\u007f",
        _ => return None,
    })
}

fn append_string(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    for &b in s {
        match escape(b) {
            Some(e) => out.extend_from_slice(e.as_bytes()),
            None if b < 0x20 => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            None => out.push(b),
        }
    }
    out.push(b'"');
}

fn cannot(type_name: &str, reason: &str) -> LibError {
    LibError::Message(format!("Cannot serialise {type_name}: {reason}"))
}

fn append_number(out: &mut Vec<u8>, n: f64) -> LibResult<()> {
    if !n.is_finite() {
        return Err(cannot("number", "must not be NaN or Inf"));
    }
    out.extend_from_slice(format_g(n, PRECISION).as_bytes());
    Ok(())
}

/// The length of `t` as an array, or `None` for an object.
fn array_length(t: &Table) -> LibResult<Option<usize>> {
    let mut max = 0f64;
    let mut items = 0f64;
    for pair in t.pairs::<Value, Value>() {
        let (key, _) = pair?;
        match number(&key) {
            Some(k) if k != 0.0 && k.floor() == k && k >= 1.0 => {
                max = max.max(k);
                items += 1.0;
            }
            _ => return Ok(None),
        }
    }
    if max > items * SPARSE_RATIO && max > SPARSE_SAFE {
        return Err(cannot("table", "excessively sparse array"));
    }
    Ok(Some(max as usize))
}

fn append_value(out: &mut Vec<u8>, value: &Value, depth: usize) -> LibResult<()> {
    match value {
        Value::String(s) => append_string(out, &s.as_bytes()),
        Value::Number(_) | Value::Integer(_) => append_number(out, number(value).unwrap_or(0.0))?,
        Value::Boolean(true) => out.extend_from_slice(b"true"),
        Value::Boolean(false) => out.extend_from_slice(b"false"),
        Value::Nil => out.extend_from_slice(b"null"),
        Value::LightUserData(p) if p.0.is_null() => out.extend_from_slice(b"null"),
        Value::Table(t) => {
            let depth = depth + 1;
            if depth > MAX_DEPTH {
                return Err(LibError::Message(format!(
                    "Cannot serialise, excessive nesting ({depth})"
                )));
            }
            match array_length(t)? {
                Some(len) if len > 0 => {
                    out.push(b'[');
                    for i in 1..=len {
                        if i > 1 {
                            out.push(b',');
                        }
                        let item: Value = t.raw_get(i)?;
                        append_value(out, &item, depth)?;
                    }
                    out.push(b']');
                }
                _ => {
                    out.push(b'{');
                    let mut first = true;
                    for pair in t.pairs::<Value, Value>() {
                        let (key, item) = pair?;
                        if !first {
                            out.push(b',');
                        }
                        first = false;
                        match &key {
                            Value::Number(_) | Value::Integer(_) => {
                                out.push(b'"');
                                append_number(out, number(&key).unwrap_or(0.0))?;
                                out.extend_from_slice(b"\":");
                            }
                            Value::String(s) => {
                                append_string(out, &s.as_bytes());
                                out.push(b':');
                            }
                            other => {
                                return Err(cannot(
                                    other.type_name(),
                                    "table key must be a number or string",
                                ));
                            }
                        }
                        append_value(out, &item, depth)?;
                    }
                    out.push(b'}');
                }
            }
        }
        other => return Err(cannot(other.type_name(), "type not supported")),
    }
    Ok(())
}

fn encode(lua: &Lua, args: MultiValue) -> LibResult<MultiValue> {
    if args.len() != 1 {
        return Err(LibError::Arg(1, "expected 1 argument".into()));
    }
    let mut out = Vec::new();
    append_value(&mut out, &args[0], 0)?;
    Ok(MultiValue::from_vec(vec![Value::String(
        lua.create_string(&out)?,
    )]))
}

/// A token of the JSON text.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    ObjBegin,
    ObjEnd,
    ArrBegin,
    ArrEnd,
    Str(Vec<u8>),
    Number(f64),
    Boolean(bool),
    Null,
    Colon,
    Comma,
    End,
    /// What was wrong.
    Error(&'static str),
}

impl Token {
    fn name(&self) -> &'static str {
        match self {
            Token::ObjBegin => "T_OBJ_BEGIN",
            Token::ObjEnd => "T_OBJ_END",
            Token::ArrBegin => "T_ARR_BEGIN",
            Token::ArrEnd => "T_ARR_END",
            Token::Str(_) => "T_STRING",
            Token::Number(_) => "T_NUMBER",
            Token::Boolean(_) => "T_BOOLEAN",
            Token::Null => "T_NULL",
            Token::Colon => "T_COLON",
            Token::Comma => "T_COMMA",
            Token::End => "T_END",
            Token::Error(what) => what,
        }
    }
}

struct Parser<'a> {
    data: &'a [u8],
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    /// The byte at `i`, as the C code sees the text: NUL past the end.
    fn at(&self, i: usize) -> u8 {
        self.data.get(i).copied().unwrap_or(0)
    }

    /// The next token and the (0-based) position it starts at.
    fn next(&mut self) -> (Token, usize) {
        while matches!(self.at(self.pos), b' ' | b'\t' | b'\n' | b'\r') {
            self.pos += 1;
        }
        let start = self.pos;
        let c = self.at(self.pos);
        let simple = match c {
            b'{' => Some(Token::ObjBegin),
            b'}' => Some(Token::ObjEnd),
            b'[' => Some(Token::ArrBegin),
            b']' => Some(Token::ArrEnd),
            b',' => Some(Token::Comma),
            b':' => Some(Token::Colon),
            _ => None,
        };
        if let Some(token) = simple {
            self.pos += 1;
            return (token, start);
        }
        if c == 0 {
            return (Token::End, start);
        }
        let rest = &self.data[self.pos..];
        let token = match c {
            b'"' => self.string(),
            b'-' | b'0'..=b'9' => self.number(),
            _ if rest.starts_with(b"true") => {
                self.pos += 4;
                Token::Boolean(true)
            }
            _ if rest.starts_with(b"false") => {
                self.pos += 5;
                Token::Boolean(false)
            }
            _ if rest.starts_with(b"null") => {
                self.pos += 4;
                Token::Null
            }
            b'+' | b'i' | b'I' | b'n' | b'N' if self.invalid_number() => self.number(),
            _ => Token::Error("invalid token"),
        };
        let index = match token {
            // Errors inside a string point where they were found.
            Token::Error(_) if c == b'"' => self.pos,
            _ => start,
        };
        (token, index)
    }

    /// `json_is_invalid_number`: forms strtod reads that JSON does not
    /// have (accepted, as lua-cjson's default does).
    fn invalid_number(&self) -> bool {
        let mut p = self.pos;
        if self.at(p) == b'+' {
            return true;
        }
        if self.at(p) == b'-' {
            p += 1;
        }
        if self.at(p) == b'0' {
            let c2 = self.at(p + 1);
            return (c2 | 0x20) == b'x' || c2.is_ascii_digit();
        }
        if self.at(p) <= b'9' {
            return false;
        }
        let word = &self.data[p.min(self.data.len())..];
        let starts = |w: &[u8]| word.len() >= 3 && word[..3].eq_ignore_ascii_case(w);
        starts(b"inf") || starts(b"nan")
    }

    fn number(&mut self) -> Token {
        let rest = &self.data[self.pos..];
        let text_end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        let (value, used) = strtod_prefix(&rest[..text_end]);
        if used == 0 {
            return Token::Error("invalid number");
        }
        self.pos += used;
        Token::Number(value)
    }

    fn hex4(&self, at: usize) -> Option<u32> {
        let mut value = 0;
        for i in 0..4 {
            let digit = (self.at(at + i) as char).to_digit(16)?;
            value = (value << 4) | digit;
        }
        Some(value)
    }

    fn string(&mut self) -> Token {
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            let c = self.at(self.pos);
            if c == b'"' {
                break;
            }
            if c == 0 {
                return Token::Error("unexpected end of string");
            }
            if c != b'\\' {
                out.push(c);
                self.pos += 1;
                continue;
            }
            let unescaped = match self.at(self.pos + 1) {
                b'"' => b'"',
                b'\\' => b'\\',
                b'/' => b'/',
                b'b' => 0x08,
                b't' => b'\t',
                b'n' => b'\n',
                b'f' => 0x0c,
                b'r' => b'\r',
                b'u' => match self.unicode_escape(&mut out) {
                    Some(()) => continue,
                    None => return Token::Error("invalid unicode escape code"),
                },
                _ => return Token::Error("invalid escape code"),
            };
            out.push(unescaped);
            self.pos += 2;
        }
        self.pos += 1;
        Token::Str(out)
    }

    fn unicode_escape(&mut self, out: &mut Vec<u8>) -> Option<()> {
        let mut codepoint = self.hex4(self.pos + 2)?;
        let mut len = 6;
        if codepoint & 0xF800 == 0xD800 {
            if codepoint & 0x400 != 0 {
                return None;
            }
            if self.at(self.pos + 6) != b'\\' || self.at(self.pos + 7) != b'u' {
                return None;
            }
            let low = self.hex4(self.pos + 8)?;
            if low & 0xFC00 != 0xDC00 {
                return None;
            }
            codepoint = (((codepoint & 0x3FF) << 10) | (low & 0x3FF)) + 0x10000;
            len = 12;
        }
        let mut buf = [0u8; 4];
        let encoded: &[u8] = match codepoint {
            0..=0x7F => {
                buf[0] = codepoint as u8;
                &buf[..1]
            }
            0x80..=0x7FF => {
                buf[0] = ((codepoint >> 6) | 0xC0) as u8;
                buf[1] = ((codepoint & 0x3F) | 0x80) as u8;
                &buf[..2]
            }
            0x800..=0xFFFF => {
                buf[0] = ((codepoint >> 12) | 0xE0) as u8;
                buf[1] = (((codepoint >> 6) & 0x3F) | 0x80) as u8;
                buf[2] = ((codepoint & 0x3F) | 0x80) as u8;
                &buf[..3]
            }
            _ => {
                buf[0] = ((codepoint >> 18) | 0xF0) as u8;
                buf[1] = (((codepoint >> 12) & 0x3F) | 0x80) as u8;
                buf[2] = (((codepoint >> 6) & 0x3F) | 0x80) as u8;
                buf[3] = ((codepoint & 0x3F) | 0x80) as u8;
                &buf[..4]
            }
        };
        out.extend_from_slice(encoded);
        self.pos += len;
        Some(())
    }

    fn expected(&self, what: &str, token: &Token, index: usize) -> LibError {
        LibError::Message(format!(
            "Expected {what} but found {} at character {}",
            token.name(),
            index + 1
        ))
    }

    fn descend(&mut self) -> LibResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(LibError::Message(format!(
                "Found too many nested data structures ({}) at character {}",
                self.depth, self.pos
            )));
        }
        Ok(())
    }

    fn value(&mut self, lua: &Lua, token: Token, index: usize) -> LibResult<Value> {
        Ok(match token {
            Token::Str(s) => Value::String(lua.create_string(&s)?),
            Token::Number(n) => Value::Number(n),
            Token::Boolean(b) => Value::Boolean(b),
            Token::Null => null(),
            Token::ObjBegin => {
                self.descend()?;
                let table = lua.create_table()?;
                let (mut token, mut index) = self.next();
                if token != Token::ObjEnd {
                    loop {
                        let Token::Str(key) = &token else {
                            return Err(self.expected("object key string", &token, index));
                        };
                        let key = lua.create_string(key)?;
                        let (colon, at) = self.next();
                        if colon != Token::Colon {
                            return Err(self.expected("colon", &colon, at));
                        }
                        let (next, at) = self.next();
                        let item = self.value(lua, next, at)?;
                        table.raw_set(key, item)?;
                        let (after, at) = self.next();
                        if after == Token::ObjEnd {
                            break;
                        }
                        if after != Token::Comma {
                            return Err(self.expected("comma or object end", &after, at));
                        }
                        (token, index) = self.next();
                    }
                }
                self.depth -= 1;
                Value::Table(table)
            }
            Token::ArrBegin => {
                self.descend()?;
                let table = lua.create_table()?;
                let (mut token, mut index) = self.next();
                if token != Token::ArrEnd {
                    for i in 1.. {
                        let item = self.value(lua, token, index)?;
                        table.raw_set(i, item)?;
                        let (after, at) = self.next();
                        if after == Token::ArrEnd {
                            break;
                        }
                        if after != Token::Comma {
                            return Err(self.expected("comma or array end", &after, at));
                        }
                        (token, index) = self.next();
                    }
                }
                self.depth -= 1;
                Value::Table(table)
            }
            other => return Err(self.expected("value", &other, index)),
        })
    }
}

fn decode(lua: &Lua, args: MultiValue) -> LibResult<MultiValue> {
    if args.len() != 1 {
        return Err(LibError::Arg(1, "expected 1 argument".into()));
    }
    let text = match &args[0] {
        Value::String(s) => s.as_bytes().to_vec(),
        n @ (Value::Number(_) | Value::Integer(_)) => {
            format_g(number(n).unwrap_or(0.0), PRECISION).into_bytes()
        }
        other => return Err(arg_error(1, "string", other, args.len())),
    };
    if text.len() >= 2 && (text[0] == 0 || text[1] == 0) {
        return Err(LibError::Message(
            "JSON parser does not support UTF-16 or UTF-32".into(),
        ));
    }
    let mut parser = Parser {
        data: &text,
        pos: 0,
        depth: 0,
    };
    let (token, index) = parser.next();
    let value = parser.value(lua, token, index)?;
    let (end, at) = parser.next();
    if end != Token::End {
        return Err(parser.expected("the end", &end, at));
    }
    Ok(MultiValue::from_vec(vec![value]))
}

/// The library's functions; the settings ones answer lua-cjson's defaults.
pub fn install(lua: &Lua, table: &Table) -> mlua::Result<()> {
    let setting = |value: f64| -> LibFn {
        Box::new(move |_lua, _args| Ok(MultiValue::from_vec(vec![Value::Number(value)])))
    };
    crate::vm::install_functions(
        lua,
        table,
        vec![
            ("encode", Box::new(encode)),
            ("decode", Box::new(decode)),
            ("encode_max_depth", setting(MAX_DEPTH as f64)),
            ("decode_max_depth", setting(MAX_DEPTH as f64)),
            ("encode_number_precision", setting(f64::from(PRECISION))),
            (
                "encode_keep_buffer",
                Box::new(|_lua, _args| Ok(MultiValue::from_vec(vec![Value::Boolean(true)]))),
            ),
            (
                "encode_invalid_numbers",
                Box::new(|_lua, _args| Ok(MultiValue::from_vec(vec![Value::Boolean(false)]))),
            ),
            (
                "decode_invalid_numbers",
                Box::new(|_lua, _args| Ok(MultiValue::from_vec(vec![Value::Boolean(true)]))),
            ),
            (
                "encode_sparse_array",
                Box::new(|_lua, _args| {
                    Ok(MultiValue::from_vec(vec![
                        Value::Boolean(false),
                        Value::Number(SPARSE_RATIO),
                        Value::Number(SPARSE_SAFE),
                    ]))
                }),
            ),
        ],
    )?;
    table.raw_set("null", null())?;
    table.raw_set("_NAME", "cjson")?;
    table.raw_set("_VERSION", "2.1.0")?;
    Ok(())
}
