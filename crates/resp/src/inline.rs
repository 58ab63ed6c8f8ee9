//! Tokenizer for inline requests (`SET "a b" 'c'` typed into telnet),
//! matching Redis's `sdssplitargs` byte for byte.
//!
//! Tokens are separated by whitespace; a token may contain `"double"`
//! quoted parts (with `\n \r \t \b \a \xHH` escapes) and `'single'` quoted
//! parts (with `\'` only). A closing quote must be followed by whitespace or
//! the end of the line. The line ends at the first NUL byte, as it does for
//! Redis's C string handling.

/// Splits an inline request line into arguments, or `None` for unbalanced
/// quotes.
pub fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let end = line.iter().position(|&b| b == 0).unwrap_or(line.len());
    let line = &line[..end];
    // Reading past the end yields NUL, like the terminator of a C string.
    let at = |i: usize| line.get(i).copied().unwrap_or(0);

    let mut args = Vec::new();
    let mut p = 0;
    loop {
        while p < line.len() && is_space(line[p]) {
            p += 1;
        }
        if p >= line.len() {
            return Some(args);
        }
        let mut current = Vec::new();
        let mut in_double = false;
        let mut in_single = false;
        loop {
            let c = at(p);
            if in_double {
                if c == b'\\' && at(p + 1) == b'x' && is_hex(at(p + 2)) && is_hex(at(p + 3)) {
                    current.push(hex_value(at(p + 2)) * 16 + hex_value(at(p + 3)));
                    p += 3;
                } else if c == b'\\' && at(p + 1) != 0 {
                    p += 1;
                    current.push(match at(p) {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                } else if c == b'"' {
                    if at(p + 1) != 0 && !is_space(at(p + 1)) {
                        return None;
                    }
                    p += 1;
                    break;
                } else if c == 0 {
                    return None;
                } else {
                    current.push(c);
                }
            } else if in_single {
                if c == b'\\' && at(p + 1) == b'\'' {
                    p += 1;
                    current.push(b'\'');
                } else if c == b'\'' {
                    if at(p + 1) != 0 && !is_space(at(p + 1)) {
                        return None;
                    }
                    p += 1;
                    break;
                } else if c == 0 {
                    return None;
                } else {
                    current.push(c);
                }
            } else {
                match c {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => {
                        if c != 0 {
                            p += 1;
                        }
                        break;
                    }
                    b'"' => in_double = true,
                    b'\'' => in_single = true,
                    other => current.push(other),
                }
            }
            if at(p) != 0 {
                p += 1;
            }
        }
        args.push(current);
    }
}

/// C's `isspace` in the "C" locale.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn is_hex(b: u8) -> bool {
    b.is_ascii_hexdigit()
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> Option<Vec<String>> {
        split_args(s.as_bytes()).map(|v| {
            v.into_iter()
                .map(|a| String::from_utf8_lossy(&a).into_owned())
                .collect()
        })
    }

    #[test]
    fn plain_and_quoted_tokens() {
        assert_eq!(
            split("set a b"),
            Some(vec!["set".into(), "a".into(), "b".into()])
        );
        assert_eq!(
            split("  set   a\t b  "),
            Some(vec!["set".into(), "a".into(), "b".into()])
        );
        assert_eq!(
            split(r#"set "a b" 'c d'"#),
            Some(vec!["set".into(), "a b".into(), "c d".into()])
        );
        assert_eq!(
            split(r#"x "\x41\n" 'it\'s'"#),
            Some(vec!["x".into(), "A\n".into(), "it's".into()])
        );
        assert_eq!(split(r#"ab"cd""#), Some(vec!["abcd".into()]));
        assert_eq!(split(""), Some(vec![]));
    }

    #[test]
    fn unbalanced_or_glued_quotes() {
        assert_eq!(split(r#"set "a"#), None);
        assert_eq!(split(r#"set 'a"#), None);
        assert_eq!(split(r#"set "a"b"#), None);
        assert_eq!(split(r#"set 'a'b"#), None);
    }

    #[test]
    fn nul_ends_the_line() {
        assert_eq!(split_args(b"a\0b"), Some(vec![b"a".to_vec()]));
    }
}
