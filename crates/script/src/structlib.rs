//! The `struct` library scripts get (Roberto Ierusalimschy's struct 0.2,
//! as Redis embeds it on a 64-bit little-endian machine): `pack`, `unpack`
//! and `size` over format strings of C types.

use mlua::{Lua, MultiValue, Table, Value};

use crate::convert::number;
use crate::vm::{LibError, LibResult, number_arg, optional_integer_arg, string_arg};

const MAX_INT_SIZE: usize = 32;
/// The largest alignment `!` takes by default (`double`'s on x86-64).
const MAX_ALIGN: usize = 8;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Endian {
    Big,
    Little,
}

struct Header {
    endian: Endian,
    align: usize,
}

impl Default for Header {
    fn default() -> Self {
        Header {
            endian: Endian::Little,
            align: 1,
        }
    }
}

struct Format<'a> {
    fmt: &'a [u8],
    pos: usize,
}

impl Format<'_> {
    fn next(&mut self) -> Option<u8> {
        let c = self.fmt.get(self.pos).copied();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn number(&mut self, default: usize) -> LibResult<usize> {
        if !self.fmt.get(self.pos).is_some_and(u8::is_ascii_digit) {
            return Ok(default);
        }
        let mut a: usize = 0;
        while let Some(&d) = self.fmt.get(self.pos).filter(|d| d.is_ascii_digit()) {
            let digit = usize::from(d - b'0');
            if a > (i32::MAX as usize) / 10 || a * 10 > (i32::MAX as usize) - digit {
                return Err(LibError::Message("integral size overflow".into()));
            }
            a = a * 10 + digit;
            self.pos += 1;
        }
        Ok(a)
    }

    /// `optsize`.
    fn size(&mut self, opt: u8) -> LibResult<usize> {
        Ok(match opt {
            b'B' | b'b' => 1,
            b'H' | b'h' => 2,
            b'L' | b'l' | b'T' | b'd' => 8,
            b'f' => 4,
            b'x' => 1,
            b'c' => self.number(1)?,
            b'i' | b'I' => {
                let size = self.number(4)?;
                if size > MAX_INT_SIZE {
                    return Err(LibError::Message(format!(
                        "integral size {size} is larger than limit of {MAX_INT_SIZE}"
                    )));
                }
                size
            }
            _ => 0,
        })
    }

    /// `controloptions`: endianness, alignment and spaces.
    fn control(&mut self, opt: u8, header: &mut Header) -> LibResult<()> {
        match opt {
            b' ' => {}
            b'>' => header.endian = Endian::Big,
            b'<' => header.endian = Endian::Little,
            b'!' => {
                let a = self.number(MAX_ALIGN)?;
                if !a.is_power_of_two() {
                    return Err(LibError::Message(format!(
                        "alignment {a} is not a power of 2"
                    )));
                }
                header.align = a;
            }
            other => {
                return Err(LibError::Arg(
                    1,
                    format!("invalid format option '{}'", other as char),
                ));
            }
        }
        Ok(())
    }
}

fn to_align(len: usize, header: &Header, opt: u8, size: usize) -> usize {
    if size == 0 || opt == b'c' {
        return 0;
    }
    let size = size.min(header.align);
    (size - (len & (size - 1))) & (size - 1)
}

fn put_integer(out: &mut Vec<u8>, n: f64, endian: Endian, size: usize) {
    let mut value: u64 = if n < 0.0 { n as i64 as u64 } else { n as u64 };
    let mut bytes = vec![0u8; size];
    for byte in bytes.iter_mut() {
        *byte = (value & 0xff) as u8;
        value >>= 8;
    }
    if endian == Endian::Big {
        bytes.reverse();
    }
    out.extend_from_slice(&bytes);
}

fn pack(lua: &Lua, args: MultiValue) -> LibResult<MultiValue> {
    let fmt = string_arg(&args, 1)?;
    let mut format = Format { fmt: &fmt, pos: 0 };
    let mut header = Header::default();
    let mut arg = 2;
    let mut total = 0usize;
    let mut out = Vec::new();
    while let Some(opt) = format.next() {
        let mut size = format.size(opt)?;
        let align = to_align(total, &header, opt, size);
        total += align;
        out.extend(std::iter::repeat_n(0u8, align));
        match opt {
            b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I' => {
                let n = number_arg(&args, arg)?;
                arg += 1;
                put_integer(&mut out, n, header.endian, size);
            }
            b'x' => out.push(0),
            b'f' => {
                let f = number_arg(&args, arg)? as f32;
                arg += 1;
                out.extend_from_slice(&match header.endian {
                    Endian::Little => f.to_le_bytes(),
                    Endian::Big => f.to_be_bytes(),
                });
            }
            b'd' => {
                let d = number_arg(&args, arg)?;
                arg += 1;
                out.extend_from_slice(&match header.endian {
                    Endian::Little => d.to_le_bytes(),
                    Endian::Big => d.to_be_bytes(),
                });
            }
            b'c' | b's' => {
                let s = string_arg(&args, arg)?;
                arg += 1;
                if size == 0 {
                    size = s.len();
                }
                if s.len() < size {
                    return Err(LibError::Arg(arg, "string too short".into()));
                }
                out.extend_from_slice(&s[..size]);
                if opt == b's' {
                    out.push(0);
                    size += 1;
                }
            }
            other => format.control(other, &mut header)?,
        }
        total += size;
    }
    Ok(MultiValue::from_vec(vec![Value::String(
        lua.create_string(&out)?,
    )]))
}

fn get_integer(bytes: &[u8], endian: Endian, signed: bool) -> f64 {
    let mut l: u64 = 0;
    let ordered: Vec<u8> = match endian {
        Endian::Big => bytes.to_vec(),
        Endian::Little => bytes.iter().rev().copied().collect(),
    };
    for b in ordered {
        l = (l << 8) | u64::from(b);
    }
    if !signed {
        return l as f64;
    }
    let bits = (bytes.len() * 8).min(64);
    if bits == 0 {
        return 0.0;
    }
    let mask = u64::MAX << (bits - 1);
    if l & mask != 0 {
        l |= mask;
    }
    l as i64 as f64
}

fn unpack(lua: &Lua, args: MultiValue) -> LibResult<MultiValue> {
    let fmt = string_arg(&args, 1)?;
    let data = string_arg(&args, 2)?;
    let start = optional_integer_arg(&args, 3, 1)?;
    if start <= 0 {
        return Err(LibError::Arg(3, "offset must be 1 or greater".into()));
    }
    let mut pos = (start - 1) as usize;
    let mut format = Format { fmt: &fmt, pos: 0 };
    let mut header = Header::default();
    let mut results: Vec<Value> = Vec::new();
    let too_short = || LibError::Arg(2, "data string too short".into());
    let ld = data.len();
    while let Some(opt) = format.next() {
        let mut size = format.size(opt)?;
        pos += to_align(pos, &header, opt, size);
        if !(size <= ld && pos <= ld - size) {
            return Err(too_short());
        }
        match opt {
            b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I' => {
                let signed = opt.is_ascii_lowercase();
                results.push(Value::Number(get_integer(
                    &data[pos..pos + size],
                    header.endian,
                    signed,
                )));
            }
            b'x' => {}
            b'f' => {
                let mut raw = [0u8; 4];
                raw.copy_from_slice(&data[pos..pos + 4]);
                let f = match header.endian {
                    Endian::Little => f32::from_le_bytes(raw),
                    Endian::Big => f32::from_be_bytes(raw),
                };
                results.push(Value::Number(f64::from(f)));
            }
            b'd' => {
                let mut raw = [0u8; 8];
                raw.copy_from_slice(&data[pos..pos + 8]);
                let d = match header.endian {
                    Endian::Little => f64::from_le_bytes(raw),
                    Endian::Big => f64::from_be_bytes(raw),
                };
                results.push(Value::Number(d));
            }
            b'c' => {
                if size == 0 {
                    let previous = results.last().and_then(number);
                    let Some(n) = previous else {
                        return Err(LibError::Message(
                            "format 'c0' needs a previous size".into(),
                        ));
                    };
                    size = n as usize;
                    results.pop();
                    if !(size <= ld && pos <= ld - size) {
                        return Err(too_short());
                    }
                }
                results.push(Value::String(lua.create_string(&data[pos..pos + size])?));
            }
            b's' => {
                let Some(end) = data[pos..].iter().position(|&b| b == 0) else {
                    return Err(LibError::Message("unfinished string in data".into()));
                };
                size = end + 1;
                results.push(Value::String(lua.create_string(&data[pos..pos + end])?));
            }
            other => format.control(other, &mut header)?,
        }
        pos += size;
    }
    results.push(Value::Number((pos + 1) as f64));
    Ok(MultiValue::from_vec(results))
}

fn size(_lua: &Lua, args: MultiValue) -> LibResult<MultiValue> {
    let fmt = string_arg(&args, 1)?;
    let mut format = Format { fmt: &fmt, pos: 0 };
    let mut header = Header::default();
    let mut pos = 0usize;
    while let Some(opt) = format.next() {
        let size = format.size(opt)?;
        pos += to_align(pos, &header, opt, size);
        if opt == b's' {
            return Err(LibError::Arg(1, "option 's' has no fixed size".into()));
        }
        if opt == b'c' && size == 0 {
            return Err(LibError::Arg(1, "option 'c0' has no fixed size".into()));
        }
        if !opt.is_ascii_alphanumeric() {
            format.control(opt, &mut header)?;
        }
        pos += size;
    }
    Ok(MultiValue::from_vec(vec![Value::Number(pos as f64)]))
}

/// Installs `pack`, `unpack` and `size`.
pub fn install(lua: &Lua, table: &Table) -> mlua::Result<()> {
    crate::vm::install_functions(
        lua,
        table,
        vec![
            ("pack", Box::new(pack)),
            ("unpack", Box::new(unpack)),
            ("size", Box::new(size)),
        ],
    )
}
