//! Number parsing and formatting with Redis's exact rules.

use bytes::Bytes;

pub use elastickv_resp::request::parse_redis_int as parse_i64;

/// Why an INCRBYFLOAT could not be computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloatError {
    /// An operand is not a float Redis accepts.
    NotAFloat,
    /// The sum is NaN or infinite.
    NanOrInfinity,
}

/// `current + increment` computed and formatted exactly as Redis 7.0's
/// INCRBYFLOAT does (long double arithmetic, `%.17Lf` with trailing zeros
/// trimmed). `current` is `None` for a missing key.
pub fn incr_by_float(current: Option<&[u8]>, increment: &[u8]) -> Result<Bytes, FloatError> {
    let mut out = vec![0u8; 6 * 1024];
    match ffi::incr_by_float(current, increment, &mut out) {
        Ok(len) => {
            out.truncate(len);
            Ok(Bytes::from(out))
        }
        Err(2) => Err(FloatError::NanOrInfinity),
        Err(_) => Err(FloatError::NotAFloat),
    }
}

/// Whether `s` parses as a Redis float (`string2ld`).
pub fn is_valid_float(s: &[u8]) -> bool {
    ffi::is_long_double(s)
}

/// Parses an unsigned cursor the way `strtoul` does for SCAN: leading
/// whitespace is refused, a sign is allowed, overflow is refused, and a
/// negative number wraps as C does.
pub fn parse_scan_cursor(s: &[u8]) -> Option<u64> {
    let (negative, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() {
        // strtoul consumes nothing: the cursor is 0 if the whole input was
        // empty, otherwise the sign is left over and the cursor is invalid.
        return s.is_empty().then_some(0);
    }
    let mut value: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(if negative {
        value.wrapping_neg()
    } else {
        value
    })
}

/// Formats an integer reply value as Redis stores it.
pub fn format_i64(n: i64) -> Bytes {
    Bytes::copy_from_slice(itoa::Buffer::new().format(n).as_bytes())
}

/// A score or weight as Redis parses one (`string2d`): the whole argument,
/// no leading space, not NaN, not out of range.
pub fn parse_score(s: &[u8]) -> Option<f64> {
    ffi::string2d(s)
}

/// One end of a score range without its `(` (`zslParseRange`): as `strtod`
/// reads it, so leading spaces, hexadecimal and the empty string (0) pass.
pub fn parse_range_score(s: &[u8]) -> Option<f64> {
    ffi::range_strtod(s)
}

/// A SORT weight (`sortCommandGeneric`): `strtod` to the first NUL, not
/// NaN, not out of range.
pub fn parse_sort_weight(s: &[u8]) -> Option<f64> {
    ffi::sort_strtod(s)
}

/// Why a blocking command's timeout was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutError {
    NotAFloat,
    Negative,
}

/// A blocking command's timeout in seconds (a float, `0.1` is 100 ms) as
/// milliseconds rounded up, as Redis reads it.
pub fn parse_timeout_seconds(s: &[u8]) -> Result<u64, TimeoutError> {
    ffi::timeout_seconds_ms(s)
}

/// A double as Redis replies with one (`addReplyDouble`): `%.17g`, and
/// `inf`/`-inf`.
pub fn format_score(value: f64) -> Bytes {
    if value.is_infinite() {
        return Bytes::from_static(if value > 0.0 { b"inf" } else { b"-inf" });
    }
    let mut buf = [0u8; 64];
    let len = ffi::format_g17(value, &mut buf);
    Bytes::copy_from_slice(&buf[..len])
}

/// C's `strtod` at the start of `s`: the value and how many bytes it
/// used (0: none, no number there).
pub fn strtod_prefix(s: &[u8]) -> (f64, usize) {
    ffi::strtod_prefix(s)
}

/// `value` as C's `%.<precision>g` prints it (Lua prints numbers with
/// `%.14g`, and so does lua-cjson).
pub fn format_g(value: f64, precision: i32) -> String {
    let mut buf = [0u8; 64];
    let len = ffi::format_g(value, precision, &mut buf);
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

/// A double as Redis stores one in a compact sorted set (`d2string`):
/// integers in range print as integers, `-0` keeps its sign, the rest as
/// `%.17g`.
pub fn format_stored_score(value: f64) -> Bytes {
    const LIMIT: f64 = (i64::MAX / 2) as f64;
    if value.is_finite() && value != 0.0 && (-LIMIT..=LIMIT).contains(&value) {
        let integer = value as i64;
        if integer as f64 == value {
            return format_i64(integer);
        }
    }
    if value == 0.0 {
        return Bytes::from_static(if value.is_sign_negative() {
            b"-0"
        } else {
            b"0"
        });
    }
    format_score(value)
}

#[allow(unsafe_code)]
mod ffi {
    use std::os::raw::{c_char, c_int};

    unsafe extern "C" {
        fn ekv_incrbyfloat(
            current: *const c_char,
            current_len: usize,
            has_current: c_int,
            increment: *const c_char,
            increment_len: usize,
            out: *mut c_char,
            out_cap: usize,
            out_len: *mut usize,
        ) -> c_int;
        fn ekv_is_long_double(s: *const c_char, len: usize) -> c_int;
        fn ekv_string2d(s: *const c_char, len: usize, out: *mut f64) -> c_int;
        fn ekv_range_strtod(s: *const c_char, len: usize, out: *mut f64) -> c_int;
        fn ekv_format_g17(value: f64, out: *mut c_char, cap: usize) -> usize;
        fn ekv_strtod_prefix(s: *const c_char, len: usize, out: *mut f64) -> usize;
        fn ekv_format_g(value: f64, precision: c_int, out: *mut c_char, cap: usize) -> usize;
        fn ekv_sort_strtod(s: *const c_char, len: usize, out: *mut f64) -> c_int;
        fn ekv_timeout_seconds_ms(s: *const c_char, len: usize, out_ms: *mut i64) -> c_int;
    }

    pub(super) fn timeout_seconds_ms(s: &[u8]) -> Result<u64, super::TimeoutError> {
        let mut out = 0i64;
        // SAFETY: reads at most `len` bytes of a live slice and writes one
        // i64 into `out`.
        let status = unsafe { ekv_timeout_seconds_ms(s.as_ptr().cast(), s.len(), &mut out) };
        if status != 0 {
            return Err(super::TimeoutError::NotAFloat);
        }
        if out < 0 {
            return Err(super::TimeoutError::Negative);
        }
        Ok(out.unsigned_abs())
    }

    pub(super) fn sort_strtod(s: &[u8]) -> Option<f64> {
        let mut out = 0.0;
        // SAFETY: as for string2d.
        let ok = unsafe { ekv_sort_strtod(s.as_ptr().cast(), s.len(), &mut out) } != 0;
        ok.then_some(out)
    }

    pub(super) fn string2d(s: &[u8]) -> Option<f64> {
        let mut out = 0.0;
        // SAFETY: reads at most `len` bytes of a live slice and writes one
        // f64 into `out`.
        let ok = unsafe { ekv_string2d(s.as_ptr().cast(), s.len(), &mut out) } != 0;
        ok.then_some(out)
    }

    pub(super) fn range_strtod(s: &[u8]) -> Option<f64> {
        let mut out = 0.0;
        // SAFETY: as for string2d.
        let ok = unsafe { ekv_range_strtod(s.as_ptr().cast(), s.len(), &mut out) } != 0;
        ok.then_some(out)
    }

    pub(super) fn strtod_prefix(s: &[u8]) -> (f64, usize) {
        let mut out = 0.0;
        // SAFETY: reads at most `len` bytes of a live slice and writes one
        // f64 into `out`.
        let used = unsafe { ekv_strtod_prefix(s.as_ptr().cast(), s.len(), &mut out) };
        (out, used.min(s.len()))
    }

    pub(super) fn format_g(value: f64, precision: i32, out: &mut [u8]) -> usize {
        // SAFETY: writes at most `out.len()` bytes into a live buffer.
        let len = unsafe { ekv_format_g(value, precision, out.as_mut_ptr().cast(), out.len()) };
        len.min(out.len())
    }

    pub(super) fn format_g17(value: f64, out: &mut [u8]) -> usize {
        // SAFETY: writes at most `out.len()` bytes into a live buffer.
        let len = unsafe { ekv_format_g17(value, out.as_mut_ptr().cast(), out.len()) };
        len.min(out.len())
    }

    pub(super) fn incr_by_float(
        current: Option<&[u8]>,
        increment: &[u8],
        out: &mut [u8],
    ) -> Result<usize, i32> {
        let (cur_ptr, cur_len, has) = match current {
            Some(c) => (c.as_ptr(), c.len(), 1),
            None => (std::ptr::null(), 0, 0),
        };
        let mut out_len = 0usize;
        // SAFETY: every pointer comes with its length and points into a
        // live slice; the C side reads at most `len` bytes of each input,
        // writes at most `out_cap` bytes into `out` and one usize into
        // `out_len`.
        let status = unsafe {
            ekv_incrbyfloat(
                cur_ptr.cast(),
                cur_len,
                has,
                increment.as_ptr().cast(),
                increment.len(),
                out.as_mut_ptr().cast(),
                out.len(),
                &mut out_len,
            )
        };
        if status == 0 {
            Ok(out_len.min(out.len()))
        } else {
            Err(status)
        }
    }

    pub(super) fn is_long_double(s: &[u8]) -> bool {
        // SAFETY: reads at most `len` bytes of a live slice.
        unsafe { ekv_is_long_double(s.as_ptr().cast(), s.len()) != 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incr(cur: Option<&str>, by: &str) -> Result<String, FloatError> {
        incr_by_float(cur.map(str::as_bytes), by.as_bytes())
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
    }

    #[test]
    fn incrbyfloat_matches_redis_formatting() {
        assert_eq!(incr(None, "0.1").unwrap(), "0.1");
        assert_eq!(incr(Some("0.1"), "0.2").unwrap(), "0.3");
        assert_eq!(incr(Some("10.50"), "0.1").unwrap(), "10.6");
        assert_eq!(incr(Some("5.0e3"), "2.0e2").unwrap(), "5200");
        assert_eq!(incr(Some("3"), "-3").unwrap(), "0");
        assert_eq!(incr(Some("-1"), "0.5").unwrap(), "-0.5");
        assert_eq!(incr(Some("1"), "1e-20").unwrap(), "1");
    }

    #[test]
    fn incrbyfloat_errors() {
        assert_eq!(incr(Some("abc"), "1"), Err(FloatError::NotAFloat));
        assert_eq!(incr(None, " 1"), Err(FloatError::NotAFloat));
        assert_eq!(incr(None, "1 "), Err(FloatError::NotAFloat));
        assert_eq!(incr(None, ""), Err(FloatError::NotAFloat));
        assert_eq!(incr(None, "nan"), Err(FloatError::NotAFloat));
        assert_eq!(incr(None, "inf"), Err(FloatError::NanOrInfinity));
        assert_eq!(
            incr(Some("1e4932"), "1e4932"),
            Err(FloatError::NanOrInfinity)
        );
    }

    #[test]
    fn scores_parse_and_print_as_redis_does() {
        assert_eq!(parse_score(b"1.5"), Some(1.5));
        assert_eq!(parse_score(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_score(b"0x10"), Some(16.0));
        assert_eq!(parse_score(b" 1"), None);
        assert_eq!(parse_score(b""), None);
        assert_eq!(parse_score(b"nan"), None);
        assert_eq!(parse_score(b"1e400"), None);
        assert_eq!(parse_score(b"1\0"), None);
        assert_eq!(parse_range_score(b""), Some(0.0));
        assert_eq!(parse_range_score(b" 2"), Some(2.0));
        assert_eq!(parse_range_score(b"2\0junk"), Some(2.0));
        assert_eq!(parse_range_score(b"2x"), None);
        assert_eq!(parse_range_score(b"nan"), None);
        assert_eq!(format_score(0.1).as_ref(), b"0.10000000000000001");
        assert_eq!(format_score(3.0).as_ref(), b"3");
        assert_eq!(format_score(-0.0).as_ref(), b"-0");
        assert_eq!(format_score(1e20).as_ref(), b"1e+20");
        assert_eq!(format_score(f64::INFINITY).as_ref(), b"inf");
        assert_eq!(format_stored_score(1e17).as_ref(), b"100000000000000000");
        assert_eq!(format_stored_score(-0.0).as_ref(), b"-0");
        assert_eq!(format_stored_score(2.5).as_ref(), b"2.5");
    }

    #[test]
    fn scan_cursor_is_strtoul() {
        assert_eq!(parse_scan_cursor(b"0"), Some(0));
        assert_eq!(parse_scan_cursor(b""), Some(0));
        assert_eq!(parse_scan_cursor(b"+7"), Some(7));
        assert_eq!(parse_scan_cursor(b"007"), Some(7));
        assert_eq!(parse_scan_cursor(b"-1"), Some(u64::MAX));
        assert_eq!(parse_scan_cursor(b" 1"), None);
        assert_eq!(parse_scan_cursor(b"1x"), None);
        assert_eq!(parse_scan_cursor(b"-"), None);
        assert_eq!(parse_scan_cursor(b"18446744073709551616"), None);
    }
}
