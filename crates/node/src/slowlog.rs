//! SLOWLOG: commands that took at least `slowlog-log-slower-than`
//! microseconds (10000 by default; negative turns it off, 0 logs every
//! command), newest first, at most `slowlog-max-len` of them (128), kept
//! the way Redis keeps them: at most 32 arguments, each cut at 128 bytes.
//! Both limits can be changed with CONFIG SET.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use elastickv_resp::Reply;
use parking_lot::Mutex;

const MAX_ARGS: usize = 32;
const MAX_ARG_BYTES: usize = 128;

struct Entry {
    id: u64,
    at_unix_s: u64,
    micros: u64,
    args: Vec<Bytes>,
    client: String,
    name: Bytes,
}

pub struct Slowlog {
    entries: Mutex<VecDeque<Entry>>,
    next_id: AtomicU64,
    slower_than_us: AtomicI64,
    max_len: AtomicU64,
}

impl Default for Slowlog {
    fn default() -> Self {
        Slowlog {
            entries: Mutex::new(VecDeque::new()),
            next_id: AtomicU64::new(0),
            slower_than_us: AtomicI64::new(10_000),
            max_len: AtomicU64::new(128),
        }
    }
}

/// Who sent a command, as SLOWLOG shows it.
#[derive(Debug, Clone, Default)]
pub struct ClientIdent {
    /// `ip:port`.
    pub peer: String,
    pub name: Bytes,
}

impl Slowlog {
    pub fn slower_than_us(&self) -> i64 {
        self.slower_than_us.load(Ordering::Relaxed)
    }

    pub fn max_len(&self) -> u64 {
        self.max_len.load(Ordering::Relaxed)
    }

    pub fn set_slower_than_us(&self, micros: i64) {
        self.slower_than_us.store(micros, Ordering::Relaxed);
    }

    /// Shortens the log at once if it is now too long, as Redis does.
    pub fn set_max_len(&self, len: u64) {
        self.max_len.store(len, Ordering::Relaxed);
        let mut entries = self.entries.lock();
        entries.truncate(usize::try_from(len).unwrap_or(usize::MAX));
    }

    /// Logs a command that took `elapsed`, if that is slow enough.
    pub fn record(&self, elapsed: Duration, args: &[Bytes], client: &ClientIdent) {
        let threshold = self.slower_than_us();
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        if threshold < 0 || micros < threshold.unsigned_abs() {
            return;
        }
        let kept = args.len().min(MAX_ARGS);
        let args = args[..kept]
            .iter()
            .enumerate()
            .map(|(j, arg)| {
                if kept != args.len() && j == kept - 1 {
                    Bytes::from(format!("... ({} more arguments)", args.len() - kept + 1))
                } else if arg.len() > MAX_ARG_BYTES {
                    let mut cut = arg[..MAX_ARG_BYTES].to_vec();
                    cut.extend_from_slice(
                        format!("... ({} more bytes)", arg.len() - MAX_ARG_BYTES).as_bytes(),
                    );
                    Bytes::from(cut)
                } else {
                    arg.clone()
                }
            })
            .collect();
        let at_unix_s = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let entry = Entry {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            at_unix_s,
            micros,
            args,
            client: client.peer.clone(),
            name: client.name.clone(),
        };
        let max = usize::try_from(self.max_len()).unwrap_or(usize::MAX);
        let mut entries = self.entries.lock();
        entries.push_front(entry);
        entries.truncate(max);
    }

    /// SLOWLOG GET: the newest `count` entries (-1: all).
    pub fn get(&self, count: i64) -> Reply {
        let entries = self.entries.lock();
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        Reply::Array(
            entries
                .iter()
                .take(count)
                .map(|e| {
                    Reply::Array(vec![
                        Reply::Integer(i64::try_from(e.id).unwrap_or(i64::MAX)),
                        Reply::Integer(i64::try_from(e.at_unix_s).unwrap_or(i64::MAX)),
                        Reply::Integer(i64::try_from(e.micros).unwrap_or(i64::MAX)),
                        Reply::Array(e.args.iter().cloned().map(Reply::Bulk).collect()),
                        Reply::Bulk(Bytes::from(e.client.clone())),
                        Reply::Bulk(e.name.clone()),
                    ])
                })
                .collect(),
        )
    }

    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn reset(&self) {
        self.entries.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_commands_are_cut_as_redis_cuts_them() {
        let log = Slowlog::default();
        log.set_slower_than_us(0);
        let mut args: Vec<Bytes> = (0..40).map(|i| Bytes::from(format!("a{i}"))).collect();
        args[1] = Bytes::from(vec![b'x'; 130]);
        log.record(Duration::from_micros(5), &args, &ClientIdent::default());
        let Reply::Array(entries) = log.get(-1) else {
            panic!()
        };
        let Reply::Array(entry) = &entries[0] else {
            panic!()
        };
        let Reply::Array(kept) = &entry[3] else {
            panic!()
        };
        assert_eq!(kept.len(), 32);
        assert_eq!(
            kept[31],
            Reply::Bulk(Bytes::from_static(b"... (9 more arguments)"))
        );
        let Reply::Bulk(cut) = &kept[1] else { panic!() };
        assert!(cut.ends_with(b"xx... (2 more bytes)"));
        assert_eq!(cut.len(), 128 + "... (2 more bytes)".len());
    }

    #[test]
    fn the_threshold_and_the_length_limit_hold() {
        let log = Slowlog::default();
        let client = ClientIdent::default();
        log.record(Duration::from_micros(9_999), &[], &client);
        assert!(log.is_empty());
        log.record(Duration::from_micros(10_000), &[], &client);
        assert_eq!(log.len(), 1);
        log.set_max_len(2);
        for _ in 0..5 {
            log.record(Duration::from_secs(1), &[], &client);
        }
        assert_eq!(log.len(), 2);
        log.set_slower_than_us(-1);
        log.reset();
        log.record(Duration::from_secs(9), &[], &client);
        assert!(log.is_empty());
    }
}
