//! Redis's glob matcher (`stringmatchlen` in util.c), ported byte for byte
//! so KEYS and SCAN MATCH select exactly the keys Redis would.
//!
//! Two C details are kept on purpose: reading past the end of either input
//! yields NUL (both are NUL-terminated in Redis), and character ranges
//! compare bytes as signed `char`, as x86-64 C does.

/// Whether `string` matches `pattern`.
pub fn matches(pattern: &[u8], string: &[u8]) -> bool {
    let mut skip_longer = false;
    match_impl(pattern, string, false, &mut skip_longer)
}

fn at(s: &[u8], i: usize) -> u8 {
    s.get(i).copied().unwrap_or(0)
}

fn signed(b: u8) -> i32 {
    i32::from(b as i8)
}

fn lower(c: i32) -> i32 {
    if (i32::from(b'A')..=i32::from(b'Z')).contains(&c) {
        c + 32
    } else {
        c
    }
}

fn match_impl(pattern: &[u8], string: &[u8], nocase: bool, skip_longer: &mut bool) -> bool {
    let (mut p, mut plen) = (0usize, pattern.len());
    let (mut s, mut slen) = (0usize, string.len());
    while plen > 0 && slen > 0 {
        match pattern[p] {
            b'*' => {
                while plen > 0 && at(pattern, p + 1) == b'*' {
                    p += 1;
                    plen -= 1;
                }
                if plen == 1 {
                    return true;
                }
                while slen > 0 {
                    if match_impl(
                        &pattern[p + 1..p + plen],
                        &string[s..s + slen],
                        nocase,
                        skip_longer,
                    ) {
                        return true;
                    }
                    if *skip_longer {
                        return false;
                    }
                    s += 1;
                    slen -= 1;
                }
                *skip_longer = true;
                return false;
            }
            b'?' => {
                s += 1;
                slen -= 1;
            }
            b'[' => {
                p += 1;
                plen -= 1;
                let not = at(pattern, p) == b'^';
                if not {
                    p += 1;
                    plen -= 1;
                }
                let mut matched = false;
                let c = at(string, s);
                loop {
                    if at(pattern, p) == b'\\' && plen >= 2 {
                        p += 1;
                        plen -= 1;
                        if at(pattern, p) == c {
                            matched = true;
                        }
                    } else if at(pattern, p) == b']' {
                        break;
                    } else if plen == 0 {
                        p -= 1;
                        plen += 1;
                        break;
                    } else if plen >= 3 && at(pattern, p + 1) == b'-' {
                        let (mut start, mut end) =
                            (signed(at(pattern, p)), signed(at(pattern, p + 2)));
                        let mut ch = signed(c);
                        if start > end {
                            std::mem::swap(&mut start, &mut end);
                        }
                        if nocase {
                            start = lower(start);
                            end = lower(end);
                            ch = lower(ch);
                        }
                        p += 2;
                        plen -= 2;
                        if ch >= start && ch <= end {
                            matched = true;
                        }
                    } else if nocase {
                        if lower(signed(at(pattern, p))) == lower(signed(c)) {
                            matched = true;
                        }
                    } else if at(pattern, p) == c {
                        matched = true;
                    }
                    p += 1;
                    plen -= 1;
                }
                if not {
                    matched = !matched;
                }
                if !matched {
                    return false;
                }
                s += 1;
                slen -= 1;
            }
            first => {
                let literal = if first == b'\\' && plen >= 2 {
                    p += 1;
                    plen -= 1;
                    at(pattern, p)
                } else {
                    first
                };
                let c = at(string, s);
                let equal = if nocase {
                    lower(signed(literal)) == lower(signed(c))
                } else {
                    literal == c
                };
                if !equal {
                    return false;
                }
                s += 1;
                slen -= 1;
            }
        }
        p += 1;
        plen -= 1;
        if slen == 0 {
            while at(pattern, p) == b'*' && plen > 0 {
                p += 1;
                plen -= 1;
            }
            break;
        }
    }
    plen == 0 && slen == 0
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn wildcards() {
        assert!(matches(b"*", b"anything"));
        assert!(matches(b"h?llo", b"hello"));
        assert!(!matches(b"h?llo", b"hllo"));
        assert!(matches(b"h*llo", b"heeeello"));
        assert!(matches(b"h*llo", b"hllo"));
        assert!(matches(b"a*b*c", b"aXXbYYc"));
        assert!(!matches(b"a*b*c", b"aXXbYY"));
        assert!(matches(b"abc*", b"abc"));
        assert!(matches(b"abc**", b"abc"));
        assert!(!matches(b"", b"a"));
        assert!(matches(b"", b""));
    }

    #[test]
    fn classes_and_escapes() {
        assert!(matches(b"h[ae]llo", b"hallo"));
        assert!(!matches(b"h[ae]llo", b"hillo"));
        assert!(matches(b"h[^e]llo", b"hallo"));
        assert!(!matches(b"h[^e]llo", b"hello"));
        assert!(matches(b"h[a-b]llo", b"hbllo"));
        assert!(matches(b"h[b-a]llo", b"hallo"));
        assert!(matches(b"h\\*llo", b"h*llo"));
        assert!(!matches(b"h\\*llo", b"hello"));
        assert!(matches(b"[\\]]", b"]"));
        // An unterminated class is matched up to the end of the pattern.
        assert!(matches(b"[abc", b"a"));
    }

    #[test]
    fn high_bytes_compare_as_signed_char() {
        // 0x80..0xff sort below ASCII in a signed range.
        assert!(matches(b"[\x80-a]", b"\x90"));
        assert!(matches(b"[\x80-a]", b"0"));
    }
}
