//! Bitmaps: SETBIT, GETBIT, BITCOUNT, BITPOS, BITOP, BITFIELD and
//! BITFIELD_RO over string values,
//! bit 0 being the most significant bit of the first byte, as in Redis.
//! Writes are the `BitmapWrite` messages of the raft log.

use bytes::{Bytes, BytesMut};
use elastickv_resp::Reply;

use crate::command::{Command, ParseResult, eq};
use crate::db::{ReadView, WriteView};
use crate::errors;
use crate::exec::{ExecResult, wrongtype};
use crate::keyspace::{KeyspaceRead, KeyspaceWrite};
use crate::log::{self, bitmap_write};
use crate::number::parse_i64;
use crate::record::{Record, Value};
use crate::table::*;

const WRITE_BITMAP_SLOW: &[&str] = &["@write", "@bitmap", "@slow"];
const READ_BITMAP_FAST: &[&str] = &["@read", "@bitmap", "@fast"];
const READ_BITMAP_SLOW: &[&str] = &["@read", "@bitmap", "@slow"];

/// Strings may grow to 512 MB (`proto-max-bulk-len`): bit offsets stop
/// there.
const MAX_BYTES: u64 = 512 * 1024 * 1024;

/// The bitmap commands' table entries.
pub(crate) static COMMANDS: &[CommandSpec] = &[
    keyed(
        "setbit",
        4,
        &["write", "denyoom"],
        WRITE_BITMAP_SLOW,
        RW_ACCESS_UPDATE,
        parse_setbit,
    ),
    keyed(
        "getbit",
        3,
        &["readonly", "fast"],
        READ_BITMAP_FAST,
        RO_ACCESS,
        parse_getbit,
    ),
    keyed(
        "bitcount",
        -2,
        &["readonly"],
        READ_BITMAP_SLOW,
        RO_ACCESS,
        parse_bitcount,
    ),
    keyed(
        "bitpos",
        -3,
        &["readonly"],
        READ_BITMAP_SLOW,
        RO_ACCESS,
        parse_bitpos,
    ),
    keyed(
        "bitfield",
        -2,
        &["write", "denyoom"],
        WRITE_BITMAP_SLOW,
        &[KeySpec {
            notes: Some("This command allows both access and modification of the key"),
            flags: &["RW", "access", "update", "variable_flags"],
            begin_index: 1,
            find: FindKeys::Range {
                last_key: 0,
                key_step: 1,
            },
        }],
        parse_bitfield,
    ),
    keyed(
        "bitfield_ro",
        -2,
        &["readonly", "fast"],
        READ_BITMAP_FAST,
        RO_ACCESS,
        parse_bitfield_ro,
    ),
    CommandSpec {
        name: "bitop",
        arity: -4,
        flags: &["write", "denyoom"],
        first_key: 2,
        last_key: -1,
        step: 1,
        acl: WRITE_BITMAP_SLOW,
        tips: NONE,
        key_specs: &[
            ks(&["OW", "update"], 2, 0, 1),
            ks(&["RO", "access"], 3, -1, 1),
        ],
        subcommands: &[],
        route: Route::SameShard,
        parse: Some(parse_bitop),
    },
];

/// A bitmap read. Ranges are checked after the lookup, as Redis does (a
/// missing key answers 0 whatever follows), so they travel as sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Read {
    GetBit(Bytes, u64),
    BitCount(Bytes, Vec<Bytes>),
    BitPos {
        key: Bytes,
        bit: bool,
        range: Vec<Bytes>,
    },
    /// BITFIELD (or BITFIELD_RO) with GETs only.
    BitField(Bytes, Vec<log::bit_field::Op>),
}

fn bitmap_write(command: bitmap_write::Command) -> Command {
    Command::Write(log::Write {
        family: Some(log::write::Family::Bitmaps(log::BitmapWrite {
            command: Some(command),
        })),
    })
}

/// `getBitOffsetFromArgument`: a bit offset inside the largest string.
fn bit_offset(raw: &[u8]) -> Result<u64, Reply> {
    match parse_i64(raw) {
        Some(n) if n >= 0 && (n.unsigned_abs() >> 3) < MAX_BYTES => Ok(n.unsigned_abs()),
        _ => Err(Reply::static_error(
            "ERR bit offset is not an integer or out of range",
        )),
    }
}

pub(crate) fn parse_setbit(args: &[Bytes]) -> ParseResult {
    let offset = bit_offset(&args[2])?;
    let on = match parse_i64(&args[3]) {
        Some(0) => false,
        Some(1) => true,
        _ => {
            return Err(Reply::static_error(
                "ERR bit is not an integer or out of range",
            ));
        }
    };
    Ok(bitmap_write(bitmap_write::Command::SetBit(log::SetBit {
        key: args[1].clone(),
        offset,
        on,
    })))
}

pub(crate) fn parse_getbit(args: &[Bytes]) -> ParseResult {
    Ok(Command::BitmapRead(Read::GetBit(
        args[1].clone(),
        bit_offset(&args[2])?,
    )))
}

pub(crate) fn parse_bitcount(args: &[Bytes]) -> ParseResult {
    Ok(Command::BitmapRead(Read::BitCount(
        args[1].clone(),
        args[2..].to_vec(),
    )))
}

pub(crate) fn parse_bitpos(args: &[Bytes]) -> ParseResult {
    let bit = match parse_i64(&args[2]) {
        Some(0) => false,
        Some(1) => true,
        Some(_) => return Err(Reply::static_error("ERR The bit argument must be 1 or 0.")),
        None => return Err(Reply::static_error(errors::NOT_INTEGER)),
    };
    Ok(Command::BitmapRead(Read::BitPos {
        key: args[1].clone(),
        bit,
        range: args[3..].to_vec(),
    }))
}

pub(crate) fn parse_bitop(args: &[Bytes]) -> ParseResult {
    use log::bit_op::Op;
    let op = if eq(&args[1], "and") {
        Op::And
    } else if eq(&args[1], "or") {
        Op::Or
    } else if eq(&args[1], "xor") {
        Op::Xor
    } else if eq(&args[1], "not") {
        Op::Not
    } else {
        return Err(Reply::static_error(errors::SYNTAX));
    };
    if op == Op::Not && args.len() != 4 {
        return Err(Reply::static_error(
            "ERR BITOP NOT must be called with a single source key.",
        ));
    }
    Ok(bitmap_write(bitmap_write::Command::BitOp(log::BitOp {
        op: op.into(),
        destination: args[2].clone(),
        keys: args[3..].to_vec(),
    })))
}

/// The string at `record`: `Ok(None)` if there is none, `Err(reply)` for
/// WRONGTYPE.
fn string_of(record: Option<Record>) -> Result<Option<(Bytes, Option<u64>)>, Reply> {
    match record {
        None => Ok(None),
        Some(Record {
            value: Value::String(s),
            expire_at,
            ..
        }) => Ok(Some((s, expire_at))),
        Some(_) => Err(wrongtype()),
    }
}

/// BITCOUNT/BITPOS's range over a string of `len` bytes: `(start, end,
/// first-byte mask, last-byte mask)` in bytes, with the masks of bits
/// outside a BIT range; `None` for an empty range.
fn byte_range(start: i64, end: i64, len: u64, in_bits: bool) -> Option<(u64, u64, u8, u8)> {
    let total = i64::try_from(if in_bits { len << 3 } else { len }).ok()?;
    let mut start = if start < 0 {
        total.saturating_add(start)
    } else {
        start
    };
    let mut end = if end < 0 {
        total.saturating_add(end)
    } else {
        end
    };
    start = start.max(0);
    end = end.max(0);
    if end >= total {
        end = total - 1;
    }
    if start > end {
        return None;
    }
    let (mut first_mask, mut last_mask) = (0u8, 0u8);
    if in_bits {
        first_mask = !((1u16 << (8 - (start & 7))) - 1) as u8;
        last_mask = ((1u16 << (7 - (end & 7))) - 1) as u8;
        start >>= 3;
        end >>= 3;
    }
    Some((start as u64, end as u64, first_mask, last_mask))
}

fn range_unit(word: &[u8]) -> Result<bool, Reply> {
    if eq(word, "bit") {
        Ok(true)
    } else if eq(word, "byte") {
        Ok(false)
    } else {
        Err(Reply::static_error(errors::SYNTAX))
    }
}

/// The position of the first bit equal to `bit` in `bytes`: -1 when
/// looking for a 1 that is not there; `8 * len` when looking for a 0 that
/// is not there (the string counts as zero-padded on the right), as
/// Redis's `redisBitpos`.
fn first_bit(bytes: &[u8], bit: bool) -> i64 {
    for (i, &byte) in bytes.iter().enumerate() {
        let probe = if bit { byte } else { !byte };
        if probe != 0 {
            return (i * 8) as i64 + i64::from(probe.leading_zeros() as u8);
        }
    }
    if bit { -1 } else { (bytes.len() * 8) as i64 }
}

/// BITFIELD's types: `i1`..`i64` and `u1`..`u63`.
fn bitfield_type(raw: &[u8]) -> Result<(bool, u32), Reply> {
    let error = || {
        Reply::static_error(
            "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.",
        )
    };
    let signed = match raw.first() {
        Some(b'i') => true,
        Some(b'u') => false,
        _ => return Err(error()),
    };
    match parse_i64(&raw[1..]) {
        Some(bits) if bits >= 1 && bits <= if signed { 64 } else { 63 } => {
            Ok((signed, bits as u32))
        }
        _ => Err(error()),
    }
}

/// A BITFIELD offset: bits, or `#n` for the n-th field of the type's width.
fn bitfield_offset(raw: &[u8], bits: u32) -> Result<u64, Reply> {
    let error = || Reply::static_error("ERR bit offset is not an integer or out of range");
    let (multiple, digits) = match raw.first() {
        Some(b'#') => (true, &raw[1..]),
        _ => (false, raw),
    };
    let n = parse_i64(digits).ok_or_else(error)?;
    let n = if multiple {
        n.checked_mul(i64::from(bits)).ok_or_else(error)?
    } else {
        n
    };
    if n < 0 || (n.unsigned_abs() >> 3) >= MAX_BYTES {
        return Err(error());
    }
    Ok(n.unsigned_abs())
}

fn parse_bitfield_ops(args: &[Bytes]) -> Result<Vec<log::bit_field::Op>, Reply> {
    use log::bit_field::op::{Kind, Overflow};
    let mut ops = Vec::new();
    let mut overflow = Overflow::Wrap;
    let mut j = 2;
    while j < args.len() {
        let remaining = args.len() - j - 1;
        let kind = if eq(&args[j], "get") && remaining >= 2 {
            Kind::Get
        } else if eq(&args[j], "set") && remaining >= 3 {
            Kind::Set
        } else if eq(&args[j], "incrby") && remaining >= 3 {
            Kind::Incrby
        } else if eq(&args[j], "overflow") && remaining >= 1 {
            j += 1;
            overflow = if eq(&args[j], "wrap") {
                Overflow::Wrap
            } else if eq(&args[j], "sat") {
                Overflow::Sat
            } else if eq(&args[j], "fail") {
                Overflow::Fail
            } else {
                return Err(Reply::static_error("ERR Invalid OVERFLOW type specified"));
            };
            j += 1;
            continue;
        } else {
            return Err(Reply::static_error(errors::SYNTAX));
        };
        let (signed, bits) = bitfield_type(&args[j + 1])?;
        let offset = bitfield_offset(&args[j + 2], bits)?;
        let value = if kind == Kind::Get {
            0
        } else {
            parse_i64(&args[j + 3]).ok_or_else(|| Reply::static_error(errors::NOT_INTEGER))?
        };
        ops.push(log::bit_field::Op {
            kind: kind.into(),
            signed,
            bits,
            offset,
            value,
            overflow: overflow.into(),
        });
        j += if kind == Kind::Get { 3 } else { 4 };
    }
    Ok(ops)
}

fn bitfield(args: &[Bytes], read_only: bool) -> ParseResult {
    use log::bit_field::op::Kind;
    let ops = parse_bitfield_ops(args)?;
    if ops.iter().all(|op| op.kind() == Kind::Get) {
        return Ok(Command::BitmapRead(Read::BitField(args[1].clone(), ops)));
    }
    if read_only {
        return Err(Reply::static_error(
            "ERR BITFIELD_RO only supports the GET subcommand",
        ));
    }
    Ok(bitmap_write(bitmap_write::Command::BitField(
        log::BitField {
            key: args[1].clone(),
            ops,
        },
    )))
}

pub(crate) fn parse_bitfield(args: &[Bytes]) -> ParseResult {
    bitfield(args, false)
}

pub(crate) fn parse_bitfield_ro(args: &[Bytes]) -> ParseResult {
    bitfield(args, true)
}

/// `getUnsignedBitfield`: `bits` bits at `offset` of `p` (zero past its
/// end), most significant first.
fn get_unsigned(p: &[u8], offset: u64, bits: u32) -> u64 {
    let mut value = 0u64;
    for j in 0..u64::from(bits) {
        let at = offset + j;
        let byte = p.get((at >> 3) as usize).copied().unwrap_or(0);
        value = (value << 1) | u64::from((byte >> (7 - (at & 7))) & 1);
    }
    value
}

fn get_signed(p: &[u8], offset: u64, bits: u32) -> i64 {
    let mut value = get_unsigned(p, offset, bits) as i64;
    if bits < 64 && value & (1i64 << (bits - 1)) != 0 {
        value |= -1i64 << bits;
    }
    value
}

/// `setUnsignedBitfield`; `p` is long enough.
fn set_unsigned(p: &mut [u8], offset: u64, bits: u32, value: u64) {
    for j in 0..u64::from(bits) {
        let bit = (value >> (u64::from(bits) - 1 - j)) & 1;
        let at = offset + j;
        let shift = 7 - (at & 7);
        let byte = &mut p[(at >> 3) as usize];
        *byte = (*byte & !(1 << shift)) | ((bit as u8) << shift);
    }
}

/// `checkUnsignedBitfieldOverflow`: whether `value + incr` overflows
/// `bits` unsigned bits, and the value to store then (WRAP and SAT).
fn unsigned_overflow(
    value: u64,
    incr: i64,
    bits: u32,
    overflow: log::bit_field::op::Overflow,
) -> Option<u64> {
    use log::bit_field::op::Overflow;
    let max = (1u64 << bits) - 1;
    let max_incr = max.wrapping_sub(value) as i64;
    let min_incr = (value as i64).wrapping_neg();
    let wrap = || value.wrapping_add(incr as u64) & !(u64::MAX << bits);
    if value > max || (incr > 0 && incr > max_incr) {
        Some(match overflow {
            Overflow::Wrap => wrap(),
            _ => max,
        })
    } else if incr < 0 && incr < min_incr {
        Some(match overflow {
            Overflow::Wrap => wrap(),
            _ => 0,
        })
    } else {
        None
    }
}

/// `checkSignedBitfieldOverflow`, likewise for signed fields.
fn signed_overflow(
    value: i64,
    incr: i64,
    bits: u32,
    overflow: log::bit_field::op::Overflow,
) -> Option<i64> {
    use log::bit_field::op::Overflow;
    let max = if bits == 64 {
        i64::MAX
    } else {
        (1i64 << (bits - 1)) - 1
    };
    let min = -max - 1;
    let max_incr = (max as u64).wrapping_sub(value as u64) as i64;
    let min_incr = min.wrapping_sub(value);
    let wrap = || {
        let mut c = (value as u64).wrapping_add(incr as u64);
        if bits < 64 {
            let msb = 1u64 << (bits - 1);
            let mask = u64::MAX << bits;
            if c & msb != 0 {
                c |= mask;
            } else {
                c &= !mask;
            }
        }
        c as i64
    };
    if value > max || (bits != 64 && incr > max_incr) || (value >= 0 && incr > 0 && incr > max_incr)
    {
        Some(match overflow {
            Overflow::Wrap => wrap(),
            _ => max,
        })
    } else if value < min
        || (bits != 64 && incr < min_incr)
        || (value < 0 && incr < 0 && incr < min_incr)
    {
        Some(match overflow {
            Overflow::Wrap => wrap(),
            _ => min,
        })
    } else {
        None
    }
}

/// Runs BITFIELD's operations over `buffer` in order, as Redis does.
fn run_bitfield(buffer: &mut [u8], ops: &[log::bit_field::Op]) -> Vec<Reply> {
    use log::bit_field::op::{Kind, Overflow};
    let mut replies = Vec::with_capacity(ops.len());
    for op in ops {
        let (bits, offset) = (op.bits, op.offset);
        let fail = op.overflow() == Overflow::Fail;
        match (op.kind(), op.signed) {
            (Kind::Get, true) => replies.push(Reply::Integer(get_signed(buffer, offset, bits))),
            (Kind::Get, false) => {
                replies.push(Reply::Integer(get_unsigned(buffer, offset, bits) as i64));
            }
            (kind, true) => {
                let old = get_signed(buffer, offset, bits);
                let (new, wrapped, reply) = if kind == Kind::Incrby {
                    let wrapped = signed_overflow(old, op.value, bits, op.overflow());
                    let new = wrapped.unwrap_or_else(|| old.wrapping_add(op.value));
                    (new, wrapped, new)
                } else {
                    let wrapped = signed_overflow(op.value, 0, bits, op.overflow());
                    (wrapped.unwrap_or(op.value), wrapped, old)
                };
                if wrapped.is_some() && fail {
                    replies.push(Reply::Null);
                } else {
                    replies.push(Reply::Integer(reply));
                    set_unsigned(buffer, offset, bits, new as u64);
                }
            }
            (kind, false) => {
                let old = get_unsigned(buffer, offset, bits);
                let (new, wrapped, reply) = if kind == Kind::Incrby {
                    let wrapped = unsigned_overflow(old, op.value, bits, op.overflow());
                    let new = wrapped.unwrap_or_else(|| old.wrapping_add(op.value as u64));
                    (new, wrapped, new)
                } else {
                    let value = op.value as u64;
                    let wrapped = unsigned_overflow(value, 0, bits, op.overflow());
                    (wrapped.unwrap_or(value), wrapped, old)
                };
                if wrapped.is_some() && fail {
                    replies.push(Reply::Null);
                } else {
                    replies.push(Reply::Integer(reply as i64));
                    set_unsigned(buffer, offset, bits, new);
                }
            }
        }
    }
    replies
}

/// Runs a bitmap read.
pub(crate) fn execute_read<K: KeyspaceRead + ?Sized>(
    cmd: &Read,
    db: &ReadView<'_, K>,
) -> ExecResult {
    let key = match cmd {
        Read::GetBit(key, _)
        | Read::BitCount(key, _)
        | Read::BitPos { key, .. }
        | Read::BitField(key, _) => key,
    };
    let value = match string_of(db.lookup(key)?) {
        Ok(value) => value.map(|(s, _)| s),
        Err(reply) => return Ok(reply),
    };
    Ok(match cmd {
        Read::GetBit(_, offset) => {
            let byte = usize::try_from(offset >> 3).unwrap_or(usize::MAX);
            let set = value
                .as_ref()
                .and_then(|v| v.get(byte))
                .is_some_and(|b| b & (1 << (7 - (offset & 7))) != 0);
            Reply::Integer(i64::from(set))
        }
        Read::BitCount(_, range) => {
            let Some(v) = value else {
                return Ok(Reply::Integer(0));
            };
            let (start, end, first_mask, last_mask) = match range.len() {
                0 => {
                    if v.is_empty() {
                        return Ok(Reply::Integer(0));
                    }
                    (0, v.len() as u64 - 1, 0, 0)
                }
                2 | 3 => {
                    let start = match parse_i64(&range[0]) {
                        Some(n) => n,
                        None => return Ok(Reply::static_error(errors::NOT_INTEGER)),
                    };
                    let end = match parse_i64(&range[1]) {
                        Some(n) => n,
                        None => return Ok(Reply::static_error(errors::NOT_INTEGER)),
                    };
                    if start < 0 && end < 0 && start > end {
                        return Ok(Reply::Integer(0));
                    }
                    let in_bits = match range.get(2) {
                        Some(word) => match range_unit(word) {
                            Ok(in_bits) => in_bits,
                            Err(reply) => return Ok(reply),
                        },
                        None => false,
                    };
                    match byte_range(start, end, v.len() as u64, in_bits) {
                        Some(r) => r,
                        None => return Ok(Reply::Integer(0)),
                    }
                }
                _ => return Ok(Reply::static_error(errors::SYNTAX)),
            };
            let bytes = &v[start as usize..=end as usize];
            let mut count: i64 = bytes.iter().map(|b| i64::from(b.count_ones() as u8)).sum();
            count -= i64::from((bytes[0] & first_mask).count_ones() as u8);
            count -= i64::from((bytes[bytes.len() - 1] & last_mask).count_ones() as u8);
            Reply::Integer(count)
        }
        Read::BitField(_, ops) => {
            let mut buffer = value.map(|v| v.to_vec()).unwrap_or_default();
            Reply::Array(run_bitfield(&mut buffer, ops))
        }
        Read::BitPos { bit, range, .. } => {
            let Some(v) = value else {
                return Ok(Reply::Integer(if *bit { -1 } else { 0 }));
            };
            bitpos(&v, *bit, range)
        }
    })
}

/// BITPOS over string `v`, following `bitposCommand` step by step.
fn bitpos(v: &[u8], bit: bool, range: &[Bytes]) -> Reply {
    let len = v.len() as u64;
    let mut end_given = false;
    let (mut start, end, first_mask, last_mask) = match range.len() {
        0 => {
            if v.is_empty() {
                return Reply::Integer(-1);
            }
            (0, len - 1, 0u8, 0u8)
        }
        1..=3 => {
            let Some(start) = parse_i64(&range[0]) else {
                return Reply::static_error(errors::NOT_INTEGER);
            };
            let in_bits = match range.get(2) {
                Some(word) => match range_unit(word) {
                    Ok(in_bits) => in_bits,
                    Err(reply) => return reply,
                },
                None => false,
            };
            let end = match range.get(1) {
                Some(raw) => {
                    let Some(end) = parse_i64(raw) else {
                        return Reply::static_error(errors::NOT_INTEGER);
                    };
                    end_given = true;
                    end
                }
                None if in_bits => i64::try_from(len << 3).unwrap_or(i64::MAX) + 7,
                None => i64::try_from(len).unwrap_or(i64::MAX) - 1,
            };
            match byte_range(start, end, len, in_bits) {
                Some(r) => r,
                None => return Reply::Integer(-1),
            }
        }
        _ => return Reply::static_error(errors::SYNTAX),
    };
    let mut bytes = end - start + 1;
    let masked = |byte: u8, mask: u8| if bit { byte & !mask } else { byte | mask };
    let mut pos;
    'found: {
        if first_mask != 0 {
            let mut first = masked(v[start as usize], first_mask);
            if last_mask != 0 && bytes == 1 {
                first = masked(first, last_mask);
            }
            pos = first_bit(&[first], bit);
            if bytes == 1 || (pos != -1 && pos != 8) {
                break 'found;
            }
            start += 1;
            bytes -= 1;
        }
        let whole = bytes - u64::from(last_mask != 0);
        if whole > 0 {
            pos = first_bit(&v[start as usize..(start + whole) as usize], bit);
            if bytes == whole || (pos != -1 && pos != (whole << 3) as i64) {
                break 'found;
            }
            start += whole;
            bytes -= whole;
        }
        pos = first_bit(&[masked(v[end as usize], last_mask)], bit);
    }
    if end_given && !bit && pos == (bytes << 3) as i64 {
        return Reply::Integer(-1);
    }
    if pos != -1 {
        pos += (start << 3) as i64;
    }
    Reply::Integer(pos)
}

/// Runs a bitmap write at apply time.
pub(crate) fn execute_write<K: KeyspaceWrite + ?Sized>(
    db: &mut WriteView<'_, K>,
    cmd: &bitmap_write::Command,
) -> ExecResult {
    use bitmap_write::Command as C;
    match cmd {
        C::SetBit(set) => {
            let previous = db.lookup(&set.key)?;
            let (old, expire_at) = match string_of(previous.clone()) {
                Ok(Some((s, expire_at))) => (s, expire_at),
                Ok(None) => (Bytes::new(), None),
                Err(reply) => return Ok(reply),
            };
            let byte = usize::try_from(set.offset >> 3).unwrap_or(usize::MAX);
            let mask = 1u8 << (7 - (set.offset & 7));
            let mut value = BytesMut::from(&old[..]);
            if value.len() <= byte {
                value.resize(byte + 1, 0);
            }
            let was = value[byte] & mask != 0;
            if set.on {
                value[byte] |= mask;
            } else {
                value[byte] &= !mask;
            }
            db.store(
                &set.key,
                &Record::string(value.freeze(), expire_at),
                previous.as_ref(),
            )?;
            Ok(Reply::Integer(i64::from(was)))
        }
        C::BitField(field) => {
            let previous = db.lookup(&field.key)?;
            let (old, expire_at) = match string_of(previous.clone()) {
                Ok(Some((s, expire_at))) => (s, expire_at),
                Ok(None) => (Bytes::new(), None),
                Err(reply) => return Ok(reply),
            };
            // Like lookupStringForBitCommand: the string grows to the
            // highest bit any SET or INCRBY touches, whatever happens.
            let highest = field
                .ops
                .iter()
                .filter(|op| op.kind() != log::bit_field::op::Kind::Get)
                .map(|op| op.offset + u64::from(op.bits) - 1)
                .max()
                .unwrap_or(0);
            let mut buffer = old.to_vec();
            let needed = usize::try_from(highest >> 3).unwrap_or(usize::MAX) + 1;
            if buffer.len() < needed {
                buffer.resize(needed, 0);
            }
            let replies = run_bitfield(&mut buffer, &field.ops);
            db.store(
                &field.key,
                &Record::string(Bytes::from(buffer), expire_at),
                previous.as_ref(),
            )?;
            Ok(Reply::Array(replies))
        }
        C::BitOp(op) => {
            use log::bit_op::Op;
            let mut sources = Vec::with_capacity(op.keys.len());
            for key in &op.keys {
                match string_of(db.lookup(key)?) {
                    Ok(value) => sources.push(value.map(|(s, _)| s).unwrap_or_default()),
                    Err(reply) => return Ok(reply),
                }
            }
            let longest = sources.iter().map(Bytes::len).max().unwrap_or(0);
            let previous = db.lookup(&op.destination)?;
            if longest == 0 {
                if let Some(previous) = &previous {
                    db.remove(&op.destination, previous)?;
                }
                return Ok(Reply::Integer(0));
            }
            let byte_of = |s: &Bytes, i: usize| s.get(i).copied().unwrap_or(0);
            let result: Vec<u8> = (0..longest)
                .map(|i| match op.op() {
                    Op::Not => !byte_of(&sources[0], i),
                    Op::And => sources.iter().fold(0xff, |acc, s| acc & byte_of(s, i)),
                    Op::Or => sources.iter().fold(0, |acc, s| acc | byte_of(s, i)),
                    Op::Xor => sources.iter().fold(0, |acc, s| acc ^ byte_of(s, i)),
                })
                .collect();
            db.store(
                &op.destination,
                &Record::string(Bytes::from(result), None),
                previous.as_ref(),
            )?;
            Ok(Reply::Integer(longest as i64))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_bit_follows_redis_bitpos() {
        assert_eq!(first_bit(&[0x00, 0x10], true), 11);
        assert_eq!(first_bit(&[0x00, 0x00], true), -1);
        assert_eq!(first_bit(&[0xff, 0xf0], false), 12);
        assert_eq!(first_bit(&[0xff, 0xff], false), 16);
        assert_eq!(first_bit(&[], false), 0);
    }

    #[test]
    fn bitpos_with_ranges() {
        let v = [0xffu8, 0xf0, 0x00];
        let r = |args: &[&str]| -> Reply {
            let range: Vec<Bytes> = args
                .iter()
                .map(|a| Bytes::copy_from_slice(a.as_bytes()))
                .collect();
            bitpos(&v, false, &range)
        };
        assert_eq!(r(&[]), Reply::Integer(12));
        assert_eq!(r(&["2"]), Reply::Integer(16));
        assert_eq!(r(&["0", "0"]), Reply::Integer(-1));
        assert_eq!(r(&["0", "7", "BIT"]), Reply::Integer(-1));
        assert_eq!(r(&["5", "12", "BIT"]), Reply::Integer(12));
    }
}
