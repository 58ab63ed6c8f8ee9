//! HyperLogLog: PFADD, PFCOUNT, PFMERGE.
//!
//! A HyperLogLog is a string in Redis's own format (`hyperloglog.c`):
//! a 16-byte header (`HYLL`, the encoding, a cached cardinality) and
//! 16384 six-bit registers, kept sparse (run-length opcodes) until the
//! sparse form would pass 3000 bytes or a register passes 32, then dense.
//! The same elements give the same bytes and the same counts as Redis, so
//! a value copied between the two (GET/SET, DUMP aside) keeps working.
//!
//! Writes are the `HyperLogLogWrite` messages of the raft log. PFCOUNT of
//! one key is one too: like Redis, it stores the cardinality it computed
//! in the header, and every replica must store the same bytes.

use bytes::Bytes;
use elastickv_resp::Reply;

use crate::command::{Command, ParseResult};
use crate::db::{ReadView, WriteView};
use crate::exec::{ExecResult, wrongtype};
use crate::keyspace::{KeyspaceRead, KeyspaceWrite};
use crate::log::{self, hyper_log_log_write};
use crate::record::{Record, Value};
use crate::table::*;

const WRITE_HLL_FAST: &[&str] = &["@write", "@hyperloglog", "@fast"];
const WRITE_HLL_SLOW: &[&str] = &["@write", "@hyperloglog", "@slow"];
const READ_HLL_SLOW: &[&str] = &["@read", "@hyperloglog", "@slow"];

const INVALID: &str = "INVALIDOBJ Corrupted HLL object detected";
const NOT_HLL: &str = "WRONGTYPE Key is not a valid HyperLogLog string value.";

/// The HyperLogLog commands' table entries.
pub(crate) static COMMANDS: &[CommandSpec] = &[
    keyed(
        "pfadd",
        -2,
        &["write", "denyoom", "fast"],
        WRITE_HLL_FAST,
        &[ks(&["RW", "insert"], 1, 0, 1)],
        parse_pfadd,
    ),
    CommandSpec {
        name: "pfcount",
        arity: -2,
        flags: &["readonly"],
        first_key: 1,
        last_key: -1,
        step: 1,
        acl: READ_HLL_SLOW,
        tips: NONE,
        key_specs: &[KeySpec {
            notes: Some(
                "RW because it may change the internal representation of the key, and propagate to replicas",
            ),
            ..ks(&["RW", "access"], 1, -1, 1)
        }],
        subcommands: &[],
        route: Route::SameShard,
        parse: Some(parse_pfcount),
    },
    CommandSpec {
        name: "pfmerge",
        arity: -2,
        flags: &["write", "denyoom"],
        first_key: 1,
        last_key: -1,
        step: 1,
        acl: WRITE_HLL_SLOW,
        tips: NONE,
        key_specs: &[
            ks(&["RW", "access", "insert"], 1, 0, 1),
            ks(&["RO", "access"], 2, -1, 1),
        ],
        subcommands: &[],
        route: Route::SameShard,
        parse: Some(parse_pfmerge),
    },
];

/// A HyperLogLog read: PFCOUNT of several keys (the count of their
/// union, which changes none of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    CountUnion(Vec<Bytes>),
}

fn hll_write(command: hyper_log_log_write::Command) -> Command {
    Command::Write(log::Write {
        family: Some(log::write::Family::HyperLogLog(log::HyperLogLogWrite {
            command: Some(command),
        })),
    })
}

pub(crate) fn parse_pfadd(args: &[Bytes]) -> ParseResult {
    Ok(hll_write(hyper_log_log_write::Command::PfAdd(log::PfAdd {
        key: args[1].clone(),
        elements: args[2..].to_vec(),
    })))
}

pub(crate) fn parse_pfcount(args: &[Bytes]) -> ParseResult {
    if args.len() > 2 {
        return Ok(Command::HyperLogLogRead(Read::CountUnion(
            args[1..].to_vec(),
        )));
    }
    Ok(hll_write(hyper_log_log_write::Command::PfCount(
        log::PfCount {
            key: args[1].clone(),
        },
    )))
}

pub(crate) fn parse_pfmerge(args: &[Bytes]) -> ParseResult {
    Ok(hll_write(hyper_log_log_write::Command::PfMerge(
        log::PfMerge {
            destination: args[1].clone(),
            sources: args[2..].to_vec(),
        },
    )))
}

/// The HyperLogLog in `record`, or the reply Redis gives for anything
/// else (`isHLLObjectOrReply`).
fn hll_of(record: &Record) -> Result<Hll, Reply> {
    match &record.value {
        Value::String(s) => Hll::from_bytes(s).ok_or_else(|| Reply::static_error(NOT_HLL)),
        Value::Collection(_) => Err(wrongtype()),
    }
}

/// Whether `value` passes Redis's checks of a HyperLogLog.
pub(crate) fn is_hll(value: &[u8]) -> bool {
    Hll::valid(value)
}

/// Runs a HyperLogLog read.
pub(crate) fn execute_read<K: KeyspaceRead + ?Sized>(
    cmd: &Read,
    db: &ReadView<'_, K>,
) -> ExecResult {
    let Read::CountUnion(keys) = cmd;
    let mut max = vec![0u8; REGISTERS];
    for key in keys {
        let Some(record) = db.lookup(key)? else {
            continue;
        };
        let hll = match hll_of(&record) {
            Ok(hll) => hll,
            Err(reply) => return Ok(reply),
        };
        if hll.merge_into(&mut max).is_err() {
            return Ok(Reply::static_error(INVALID));
        }
    }
    let mut histogram = [0u32; 64];
    for &register in &max {
        histogram[usize::from(register & 63)] += 1;
    }
    Ok(Reply::Integer(
        i64::try_from(estimate(&histogram)).unwrap_or(i64::MAX),
    ))
}

/// Runs a HyperLogLog write at apply time.
pub(crate) fn execute_write<K: KeyspaceWrite + ?Sized>(
    db: &mut WriteView<'_, K>,
    cmd: &hyper_log_log_write::Command,
) -> ExecResult {
    use hyper_log_log_write::Command as C;
    match cmd {
        C::PfAdd(add) => {
            let previous = db.lookup(&add.key)?;
            let (mut hll, mut updated) = match &previous {
                None => (Hll::new(), true),
                Some(record) => match hll_of(record) {
                    Ok(hll) => (hll, false),
                    Err(reply) => return Ok(reply),
                },
            };
            for element in &add.elements {
                match hll.add(element) {
                    Ok(true) => updated = true,
                    Ok(false) => {}
                    Err(Corrupt) => return Ok(Reply::static_error(INVALID)),
                }
            }
            if updated {
                hll.invalidate_cache();
                store(db, &add.key, hll, previous.as_ref())?;
            }
            Ok(Reply::Integer(i64::from(updated)))
        }
        C::PfCount(count) => {
            let Some(previous) = db.lookup(&count.key)? else {
                return Ok(Reply::Integer(0));
            };
            let mut hll = match hll_of(&previous) {
                Ok(hll) => hll,
                Err(reply) => return Ok(reply),
            };
            if let Some(cached) = hll.cached() {
                return Ok(Reply::Integer(i64::try_from(cached).unwrap_or(i64::MAX)));
            }
            let Ok(card) = hll.count() else {
                return Ok(Reply::static_error(INVALID));
            };
            hll.set_cache(card);
            store(db, &count.key, hll, Some(&previous))?;
            Ok(Reply::Integer(i64::try_from(card).unwrap_or(i64::MAX)))
        }
        C::PfMerge(merge) => {
            // The destination is merged too, then written.
            let mut max = vec![0u8; REGISTERS];
            let mut dense = false;
            for key in std::iter::once(&merge.destination).chain(&merge.sources) {
                let Some(record) = db.lookup(key)? else {
                    continue;
                };
                let hll = match hll_of(&record) {
                    Ok(hll) => hll,
                    Err(reply) => return Ok(reply),
                };
                dense |= hll.is_dense();
                if hll.merge_into(&mut max).is_err() {
                    return Ok(Reply::static_error(INVALID));
                }
            }
            let previous = db.lookup(&merge.destination)?;
            let mut hll = match &previous {
                Some(record) => match hll_of(record) {
                    Ok(hll) => hll,
                    Err(reply) => return Ok(reply),
                },
                None => Hll::new(),
            };
            if dense && hll.make_dense().is_err() {
                return Ok(Reply::static_error(INVALID));
            }
            for (index, &value) in max.iter().enumerate() {
                if value != 0 && hll.set(index, value).is_err() {
                    return Ok(Reply::static_error(INVALID));
                }
            }
            hll.invalidate_cache();
            store(db, &merge.destination, hll, previous.as_ref())?;
            Ok(Reply::OK)
        }
    }
}

/// Writes `hll` at `key`, keeping the key's expiry.
fn store<K: KeyspaceWrite + ?Sized>(
    db: &mut WriteView<'_, K>,
    key: &[u8],
    hll: Hll,
    previous: Option<&Record>,
) -> Result<(), crate::keyspace::StorageError> {
    let expire_at = previous.and_then(|r| r.expire_at);
    db.store(
        key,
        &Record::string(Bytes::from(hll.bytes), expire_at),
        previous,
    )
}

// ------------------------------------------------------------ the format

const P: u32 = 14;
const Q: u32 = 64 - P;
const REGISTERS: usize = 1 << P;
const REGISTER_BITS: usize = 6;
const REGISTER_MAX: u8 = (1 << REGISTER_BITS) - 1;
const HEADER: usize = 16;
const DENSE_SIZE: usize = HEADER + (REGISTERS * REGISTER_BITS).div_ceil(8);
const DENSE: u8 = 0;
const SPARSE: u8 = 1;
/// `hll-sparse-max-bytes`, Redis's default.
const SPARSE_MAX_BYTES: usize = 3000;
const SPARSE_VAL_MAX_VALUE: u8 = 32;
const SPARSE_VAL_MAX_LEN: usize = 4;
const SPARSE_ZERO_MAX_LEN: usize = 64;
const SPARSE_XZERO_MAX_LEN: usize = 16384;
/// 0.5 / ln 2, as Redis writes it.
#[allow(clippy::excessive_precision)]
const ALPHA_INF: f64 = 0.721_347_520_444_481_703_680;

/// A HyperLogLog's bytes are inconsistent (a sparse form that does not
/// cover exactly the registers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Corrupt;

/// One sparse opcode: ZERO (run of zero registers, 1 byte), XZERO (a
/// longer run, 2 bytes) or VAL (a run of up to 4 registers of one value,
/// 1 byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opcode {
    Zero(usize),
    XZero(usize),
    Val(u8, usize),
}

impl Opcode {
    fn at(bytes: &[u8], p: usize) -> Opcode {
        let b = bytes[p];
        if b & 0xc0 == 0 {
            Opcode::Zero(usize::from(b & 0x3f) + 1)
        } else if b & 0xc0 == 0x40 {
            let low = bytes.get(p + 1).copied().unwrap_or(0);
            Opcode::XZero(((usize::from(b & 0x3f) << 8) | usize::from(low)) + 1)
        } else {
            Opcode::Val(((b >> 2) & 0x1f) + 1, usize::from(b & 0x3) + 1)
        }
    }

    /// Registers covered.
    fn span(self) -> usize {
        match self {
            Opcode::Zero(n) | Opcode::XZero(n) | Opcode::Val(_, n) => n,
        }
    }

    fn len(self) -> usize {
        match self {
            Opcode::XZero(_) => 2,
            _ => 1,
        }
    }

    fn write(self, out: &mut Vec<u8>) {
        match self {
            Opcode::Zero(n) => out.push((n - 1) as u8),
            Opcode::XZero(n) => {
                let l = n - 1;
                out.push((l >> 8) as u8 | 0x40);
                out.push((l & 0xff) as u8);
            }
            Opcode::Val(v, n) => out.push(((v - 1) << 2 | (n - 1) as u8) | 0x80),
        }
    }

    /// A zero run of `len` (> 0) registers as one opcode.
    fn zeros(len: usize) -> Opcode {
        if len > SPARSE_ZERO_MAX_LEN {
            Opcode::XZero(len)
        } else {
            Opcode::Zero(len)
        }
    }
}

/// A HyperLogLog string being read or changed.
struct Hll {
    bytes: Vec<u8>,
}

impl Hll {
    /// An empty one, sparse: XZERO runs covering every register.
    fn new() -> Hll {
        let mut bytes = Vec::with_capacity(HEADER + 2);
        bytes.extend_from_slice(b"HYLL");
        bytes.push(SPARSE);
        bytes.resize(HEADER, 0);
        let mut left = REGISTERS;
        while left > 0 {
            let run = left.min(SPARSE_XZERO_MAX_LEN);
            Opcode::XZero(run).write(&mut bytes);
            left -= run;
        }
        Hll { bytes }
    }

    /// `bytes` if they pass Redis's checks of a HyperLogLog value.
    fn from_bytes(bytes: &[u8]) -> Option<Hll> {
        Hll::valid(bytes).then(|| Hll {
            bytes: bytes.to_vec(),
        })
    }

    /// The checks of `isHLLObjectOrReply`: magic, a known encoding, and
    /// the exact size of a dense one.
    fn valid(bytes: &[u8]) -> bool {
        bytes.len() >= HEADER
            && &bytes[..4] == b"HYLL"
            && bytes[4] <= SPARSE
            && (bytes[4] != DENSE || bytes.len() == DENSE_SIZE)
    }

    fn is_dense(&self) -> bool {
        self.bytes[4] == DENSE
    }

    fn invalidate_cache(&mut self) {
        self.bytes[15] |= 1 << 7;
    }

    fn cached(&self) -> Option<u64> {
        let card: [u8; 8] = self.bytes[8..16].try_into().ok()?;
        (card[7] & 0x80 == 0).then(|| u64::from_le_bytes(card))
    }

    fn set_cache(&mut self, card: u64) {
        self.bytes[8..16].copy_from_slice(&card.to_le_bytes());
    }

    /// Adds an element; `true` if a register grew.
    fn add(&mut self, element: &[u8]) -> Result<bool, Corrupt> {
        let (index, count) = pattern(element);
        self.set(index, count)
    }

    /// Raises register `index` to `count`; `true` if it grew.
    fn set(&mut self, index: usize, count: u8) -> Result<bool, Corrupt> {
        if self.is_dense() {
            Ok(dense_set(&mut self.bytes[HEADER..], index, count))
        } else {
            self.sparse_set(index, count)
        }
    }

    /// `hllSparseSet`: finds the opcode covering `index` and splits it,
    /// merging equal neighbours after; promotes to dense when a value
    /// does not fit a VAL opcode or the form would grow past its limit.
    fn sparse_set(&mut self, index: usize, count: u8) -> Result<bool, Corrupt> {
        if count > SPARSE_VAL_MAX_VALUE {
            return self.promote(index, count);
        }
        let end = self.bytes.len();
        let mut p = HEADER;
        let mut first = 0;
        let mut prev = None;
        let mut op = None;
        while p < end {
            let here = Opcode::at(&self.bytes, p);
            if index < first + here.span() {
                op = Some(here);
                break;
            }
            prev = Some(p);
            p += here.len();
            first += here.span();
        }
        let Some(op) = op else {
            return Err(Corrupt);
        };
        let last = first + op.span() - 1;
        let mut seq = Vec::with_capacity(5);
        match op {
            Opcode::Val(old, _) if old >= count => return Ok(false),
            Opcode::Val(_, 1) | Opcode::Zero(1) => Opcode::Val(count, 1).write(&mut seq),
            Opcode::Zero(_) | Opcode::XZero(_) => {
                if index != first {
                    Opcode::zeros(index - first).write(&mut seq);
                }
                Opcode::Val(count, 1).write(&mut seq);
                if index != last {
                    Opcode::zeros(last - index).write(&mut seq);
                }
            }
            Opcode::Val(current, _) => {
                if index != first {
                    Opcode::Val(current, index - first).write(&mut seq);
                }
                Opcode::Val(count, 1).write(&mut seq);
                if index != last {
                    Opcode::Val(current, last - index).write(&mut seq);
                }
            }
        }
        let grows = seq.len() > op.len();
        if grows && self.bytes.len() + seq.len() - op.len() > SPARSE_MAX_BYTES {
            return self.promote(index, count);
        }
        self.bytes.splice(p..p + op.len(), seq);
        self.merge_values(prev.unwrap_or(HEADER));
        Ok(true)
    }

    /// Merges adjacent VAL opcodes of one value, scanning up to five
    /// opcodes from `p` (step 4 of `hllSparseSet`).
    fn merge_values(&mut self, mut p: usize) {
        let mut scan = 5;
        while p < self.bytes.len() && scan > 0 {
            scan -= 1;
            let here = Opcode::at(&self.bytes, p);
            if let Opcode::Val(v1, l1) = here
                && p + 1 < self.bytes.len()
                && let Opcode::Val(v2, l2) = Opcode::at(&self.bytes, p + 1)
                && v1 == v2
                && l1 + l2 <= SPARSE_VAL_MAX_LEN
            {
                let mut merged = Vec::with_capacity(1);
                Opcode::Val(v1, l1 + l2).write(&mut merged);
                self.bytes[p + 1] = merged[0];
                self.bytes.remove(p);
                // Try the merged opcode against its right neighbour.
                continue;
            }
            p += here.len();
        }
    }

    fn promote(&mut self, index: usize, count: u8) -> Result<bool, Corrupt> {
        self.make_dense()?;
        dense_set(&mut self.bytes[HEADER..], index, count);
        Ok(true)
    }

    /// `hllSparseToDense`; the header (with its cache) is kept.
    fn make_dense(&mut self) -> Result<(), Corrupt> {
        if self.is_dense() {
            return Ok(());
        }
        let mut dense = vec![0u8; DENSE_SIZE];
        dense[..HEADER].copy_from_slice(&self.bytes[..HEADER]);
        dense[4] = DENSE;
        let mut index = 0;
        self.for_each_run(&mut |value, run| {
            if value > 0 {
                for register in index..index + run {
                    dense_set_exact(&mut dense[HEADER..], register, value);
                }
            }
            index += run;
        })?;
        self.bytes = dense;
        Ok(())
    }

    /// Visits the sparse form's runs as `(value, registers)`; fails unless
    /// they cover exactly every register.
    fn for_each_run(&self, visit: &mut dyn FnMut(u8, usize)) -> Result<(), Corrupt> {
        let mut p = HEADER;
        let mut covered = 0;
        while p < self.bytes.len() {
            let op = Opcode::at(&self.bytes, p);
            let value = match op {
                Opcode::Val(v, _) => v,
                _ => 0,
            };
            if value > 0 && covered + op.span() > REGISTERS {
                return Err(Corrupt);
            }
            visit(value, op.span().min(REGISTERS.saturating_sub(covered)));
            covered += op.span();
            p += op.len();
        }
        if covered == REGISTERS {
            Ok(())
        } else {
            Err(Corrupt)
        }
    }

    /// Raises `max[i]` to each register (`hllMerge`).
    fn merge_into(&self, max: &mut [u8]) -> Result<(), Corrupt> {
        if self.is_dense() {
            for (i, slot) in max.iter_mut().enumerate() {
                *slot = (*slot).max(dense_get(&self.bytes[HEADER..], i));
            }
            return Ok(());
        }
        let mut index = 0;
        self.for_each_run(&mut |value, run| {
            if value > 0 {
                for slot in &mut max[index..index + run] {
                    *slot = (*slot).max(value);
                }
            }
            index += run;
        })
    }

    /// The estimated cardinality (`hllCount`).
    fn count(&self) -> Result<u64, Corrupt> {
        let mut histogram = [0u32; 64];
        if self.is_dense() {
            for i in 0..REGISTERS {
                histogram[usize::from(dense_get(&self.bytes[HEADER..], i))] += 1;
            }
        } else {
            // A form that does not cover exactly the registers is
            // corrupt (`hllSparseRegHisto`).
            let mut p = HEADER;
            let mut covered = 0;
            while p < self.bytes.len() {
                let op = Opcode::at(&self.bytes, p);
                let value = match op {
                    Opcode::Val(v, _) => usize::from(v),
                    _ => 0,
                };
                histogram[value] += op.span() as u32;
                covered += op.span();
                p += op.len();
            }
            if covered != REGISTERS {
                return Err(Corrupt);
            }
        }
        Ok(estimate(&histogram))
    }
}

/// Redis's MurmurHash64A (endian-neutral), seed 0xadc83b19.
fn murmur64a(key: &[u8], seed: u64) -> u64 {
    const M: u64 = 0xc6a4_a793_5bd1_e995;
    const R: u32 = 47;
    let mut h = seed ^ (key.len() as u64).wrapping_mul(M);
    let mut chunks = key.chunks_exact(8);
    for chunk in &mut chunks {
        let mut k = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h ^= k;
        h = h.wrapping_mul(M);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, &b) in tail.iter().enumerate() {
            h ^= u64::from(b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^= h >> R;
    h
}

/// The register an element falls in and the length of its run of zeros
/// plus one (`hllPatLen`).
fn pattern(element: &[u8]) -> (usize, u8) {
    let hash = murmur64a(element, 0xadc8_3b19);
    let index = (hash & (REGISTERS as u64 - 1)) as usize;
    let rest = (hash >> P) | (1u64 << Q);
    (index, rest.trailing_zeros() as u8 + 1)
}

/// Register `i` of dense registers (6 bits each, little-endian packed).
fn dense_get(registers: &[u8], i: usize) -> u8 {
    let byte = i * REGISTER_BITS / 8;
    let fb = (i * REGISTER_BITS) & 7;
    let b0 = u16::from(registers.get(byte).copied().unwrap_or(0));
    let b1 = u16::from(registers.get(byte + 1).copied().unwrap_or(0));
    (((b0 >> fb) | (b1 << (8 - fb))) & u16::from(REGISTER_MAX)) as u8
}

fn dense_set_exact(registers: &mut [u8], i: usize, value: u8) {
    let byte = i * REGISTER_BITS / 8;
    let fb = (i * REGISTER_BITS) & 7;
    let v = u16::from(value);
    let max = u16::from(REGISTER_MAX);
    registers[byte] &= !((max << fb) as u8);
    registers[byte] |= (v << fb) as u8;
    if let Some(next) = registers.get_mut(byte + 1) {
        *next &= !((max >> (8 - fb)) as u8);
        *next |= (v >> (8 - fb)) as u8;
    }
}

/// Raises register `i` to `count`; `true` if it grew.
fn dense_set(registers: &mut [u8], i: usize, count: u8) -> bool {
    if count > dense_get(registers, i) {
        dense_set_exact(registers, i, count);
        true
    } else {
        false
    }
}

fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let mut y = 1.0;
    let mut z = x;
    loop {
        x *= x;
        let previous = z;
        z += x * y;
        y += y;
        if previous == z {
            return z;
        }
    }
}

fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let mut y = 1.0;
    let mut z = 1.0 - x;
    loop {
        x = x.sqrt();
        let previous = z;
        y *= 0.5;
        z -= (1.0 - x) * (1.0 - x) * y;
        if previous == z {
            return z / 3.0;
        }
    }
}

/// Ertl's estimator over the register histogram, as `hllCount`.
fn estimate(histogram: &[u32; 64]) -> u64 {
    let m = REGISTERS as f64;
    let mut z = m * tau((m - f64::from(histogram[Q as usize + 1])) / m);
    for j in (1..=Q as usize).rev() {
        z += f64::from(histogram[j]);
        z *= 0.5;
    }
    z += m * sigma(f64::from(histogram[0]) / m);
    (ALPHA_INF * m * m / z).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_hll_is_redis_bytes() {
        // 16384 registers need one XZERO opcode of 16384: 0x7f 0xff.
        let hll = Hll::new();
        assert_eq!(&hll.bytes[..5], b"HYLL\x01");
        assert_eq!(&hll.bytes[HEADER..], &[0x7f, 0xff]);
        assert_eq!(hll.count(), Ok(0));
    }

    #[test]
    fn dense_registers_round_trip_at_every_bit_offset() {
        let mut registers = vec![0u8; DENSE_SIZE - HEADER];
        for i in [0, 1, 2, 3, 4, 5, 16382, 16383] {
            dense_set_exact(&mut registers, i, 63);
            assert_eq!(dense_get(&registers, i), 63);
            dense_set_exact(&mut registers, i, 5);
            assert_eq!(dense_get(&registers, i), 5);
        }
        assert_eq!(dense_get(&registers, 6), 0);
    }

    #[test]
    fn sparse_and_dense_forms_count_alike() {
        let mut sparse = Hll::new();
        for i in 0..200 {
            assert!(sparse.add(format!("e{i}").as_bytes()).is_ok());
        }
        assert!(!sparse.is_dense());
        let mut dense = Hll {
            bytes: sparse.bytes.clone(),
        };
        assert_eq!(dense.make_dense(), Ok(()));
        assert_eq!(sparse.count(), dense.count());
        let mut max = vec![0u8; REGISTERS];
        assert_eq!(sparse.merge_into(&mut max), Ok(()));
        let mut from_dense = vec![0u8; REGISTERS];
        assert_eq!(dense.merge_into(&mut from_dense), Ok(()));
        assert_eq!(max, from_dense);
    }

    #[test]
    fn a_truncated_sparse_form_is_corrupt() {
        let mut hll = Hll::new();
        hll.bytes.truncate(HEADER + 1);
        assert_eq!(hll.count(), Err(Corrupt));
        assert_eq!(hll.add(b"x"), Err(Corrupt));
    }
}
