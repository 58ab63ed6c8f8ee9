//! Differential testing against redis-server: scripted commands written
//! the way `redis-cli` takes them (quotes and escapes honoured, so empty
//! strings, spaces and binary bytes reach both servers), and reply
//! comparison that ignores only what Redis leaves unordered (KEYS, HKEYS,
//! HVALS and HGETALL list their items in hash-table order).

use crate::RawClient;

/// Splits a scripted command line like `redis-cli`: words separated by
/// spaces; `"..."` with `\"`, `\\`, `\n`, `\r`, `\t` and `\xHH` escapes;
/// `'...'` taken literally (`\'` for a quote). `""` is an empty argument.
pub fn words(line: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut chars = line.bytes().peekable();
    loop {
        while chars.next_if(|&c| c == b' ').is_some() {}
        let Some(&first) = chars.peek() else {
            return out;
        };
        let mut word = Vec::new();
        if first == b'"' || first == b'\'' {
            chars.next();
            while let Some(c) = chars.next() {
                if c == first {
                    break;
                }
                if c != b'\\' {
                    word.push(c);
                    continue;
                }
                match chars.next() {
                    Some(b'n') if first == b'"' => word.push(b'\n'),
                    Some(b'r') if first == b'"' => word.push(b'\r'),
                    Some(b't') if first == b'"' => word.push(b'\t'),
                    Some(b'x') if first == b'"' => {
                        let hex: Vec<u8> = (0..2).filter_map(|_| chars.next()).collect();
                        let text = std::str::from_utf8(&hex).unwrap_or("");
                        word.push(u8::from_str_radix(text, 16).unwrap_or(b'?'));
                    }
                    Some(other) => word.push(other),
                    None => word.push(b'\\'),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|&c| c != b' ') {
                word.push(c);
            }
        }
        out.push(word);
    }
}

pub fn show(cmd: &[Vec<u8>]) -> String {
    cmd.iter()
        .map(|a| format!("{:?}", String::from_utf8_lossy(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// How many consecutive items of `cmd`'s reply belong together when the
/// reply is compared without regard to order (`None`: order matters).
fn unordered_group(cmd: &[Vec<u8>]) -> Option<usize> {
    let name = String::from_utf8_lossy(cmd.first()?).to_ascii_lowercase();
    match name.as_str() {
        "keys" | "hkeys" | "hvals" => Some(1),
        "hgetall" => Some(2),
        // Only asked for the whole hash in scripts (a count at least its
        // size): RESP2's flat field/value list pairs up.
        "hrandfield" if cmd.len() == 4 => Some(2),
        "hrandfield" => Some(1),
        _ => None,
    }
}

/// A SCAN-family reply (`[cursor, [items]]`) with its items sorted in
/// groups of `group`.
fn sorted_scan(reply: &[u8], group: usize) -> Vec<u8> {
    let Some(line_end) = reply.windows(2).position(|w| w == b"\r\n") else {
        return reply.to_vec();
    };
    let at = line_end + 2;
    let Some(cursor_len) = value_len(&reply[at..]) else {
        return reply.to_vec();
    };
    let split = at + cursor_len;
    let mut out = reply[..split].to_vec();
    out.extend(sorted_items(&reply[split..], group));
    out
}

/// The length of the RESP value at the start of `bytes`.
fn value_len(bytes: &[u8]) -> Option<usize> {
    let line_end = bytes.windows(2).position(|w| w == b"\r\n")?;
    let head = std::str::from_utf8(&bytes[1..line_end]).ok()?;
    let after = line_end + 2;
    match bytes.first()? {
        b'$' | b'=' | b'!' => {
            let n: i64 = head.parse().ok()?;
            if n < 0 {
                Some(after)
            } else {
                Some(after + usize::try_from(n).ok()? + 2)
            }
        }
        b'*' | b'~' | b'%' | b'>' => {
            let n: i64 = head.parse().ok()?;
            let items = if bytes[0] == b'%' { 2 * n } else { n };
            let mut at = after;
            for _ in 0..items.max(0) {
                at += value_len(&bytes[at..])?;
            }
            Some(at)
        }
        _ => Some(after),
    }
}

/// `reply` with the items of its top-level aggregate sorted in groups of
/// `group` (a map's pairs count as two items).
pub fn sorted_items(reply: &[u8], group: usize) -> Vec<u8> {
    let Some(line_end) = reply.windows(2).position(|w| w == b"\r\n") else {
        return reply.to_vec();
    };
    if !matches!(reply.first(), Some(b'*' | b'~' | b'%')) {
        return reply.to_vec();
    }
    let head = &reply[..line_end + 2];
    let mut items = Vec::new();
    let mut at = line_end + 2;
    while at < reply.len() {
        let Some(len) = value_len(&reply[at..]) else {
            return reply.to_vec();
        };
        items.push(&reply[at..at + len]);
        at += len;
    }
    let mut groups: Vec<Vec<u8>> = items.chunks(group.max(1)).map(|g| g.concat()).collect();
    groups.sort();
    let mut out = head.to_vec();
    for g in groups {
        out.extend(g);
    }
    out
}

/// `reply` in the form replies to `cmd` are compared in.
pub fn comparable(cmd: &[Vec<u8>], reply: &[u8]) -> Vec<u8> {
    let name = cmd.first().map(|n| n.to_ascii_lowercase());
    if name.as_deref() == Some(b"hscan") {
        return sorted_scan(reply, 2);
    }
    match unordered_group(cmd) {
        Some(group) => sorted_items(reply, group),
        None => reply.to_vec(),
    }
}

/// Sends `cmd` to both servers and fails with the recent history if the
/// replies differ.
pub fn compare(redis: &mut RawClient, ekv: &mut RawClient, cmd: &[Vec<u8>], history: &[String]) {
    let expected = redis.call(cmd);
    let got = ekv.call(cmd);
    if comparable(cmd, &expected) != comparable(cmd, &got) {
        let recent: Vec<&String> = history.iter().rev().take(15).rev().collect();
        panic!(
            "reply mismatch for {}\n  redis:     {:?}\n  elastickv: {:?}\n  preceding commands: {:#?}",
            show(cmd),
            String::from_utf8_lossy(&expected),
            String::from_utf8_lossy(&got),
            recent
        );
    }
}

/// Runs scripted lines (see [`words`]) against both servers.
pub fn run_script(redis: &mut RawClient, ekv: &mut RawClient, lines: &[&str]) {
    let mut history = Vec::new();
    for line in lines {
        let cmd = words(line);
        compare(redis, ekv, &cmd, &history);
        history.push(line.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_honour_quotes_and_escapes() {
        let w = |line: &str| words(line);
        assert_eq!(
            w("SET k v"),
            vec![b"SET".to_vec(), b"k".to_vec(), b"v".to_vec()]
        );
        assert_eq!(
            w(r#"SET "a b" """#),
            vec![b"SET".to_vec(), b"a b".to_vec(), Vec::new()]
        );
        assert_eq!(w(r#"X "q\"\x00\n" 'it\'s'"#)[1], b"q\"\0\n".to_vec());
        assert_eq!(w(r#"X 'it\'s'"#)[1], b"it's".to_vec());
        assert_eq!(w("  A   B  ").len(), 2);
    }

    #[test]
    fn unordered_replies_compare_equal_whatever_the_order() {
        let a = b"*3\r\n$1\r\nb\r\n$1\r\na\r\n$0\r\n\r\n";
        let b = b"*3\r\n$0\r\n\r\n$1\r\na\r\n$1\r\nb\r\n";
        assert_eq!(sorted_items(a, 1), sorted_items(b, 1));
        let m1 = b"%2\r\n$1\r\nf\r\n$1\r\n1\r\n$1\r\ng\r\n$1\r\n2\r\n";
        let m2 = b"%2\r\n$1\r\ng\r\n$1\r\n2\r\n$1\r\nf\r\n$1\r\n1\r\n";
        assert_eq!(sorted_items(m1, 2), sorted_items(m2, 2));
        // Pairs stay pairs.
        let swapped = b"%2\r\n$1\r\nf\r\n$1\r\n2\r\n$1\r\ng\r\n$1\r\n1\r\n";
        assert_ne!(sorted_items(m1, 2), sorted_items(swapped, 2));
    }
}
