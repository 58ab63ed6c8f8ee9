//! Key lookup and storage with Redis's expiry rules, over a keyspace.
//!
//! Reads treat an expired key as missing. Writes do what Redis's
//! `lookupKeyWrite` does: an expired key found on the way is deleted first,
//! so a write command always starts from "missing" or "live". Storing and
//! deleting keep the shard's key counts and the expiry index in step.

use crate::keyspace::{KeyspaceRead, KeyspaceWrite, StorageError};
use crate::record::Record;

fn decode(key: &[u8], raw: &[u8]) -> Result<Record, StorageError> {
    Record::decode(raw)
        .map_err(|e| StorageError(format!("key {:?}: {e}", String::from_utf8_lossy(key))))
}

/// A read view at a point in time.
pub struct ReadView<'a, K: KeyspaceRead + ?Sized> {
    ks: &'a K,
    now: u64,
}

impl<'a, K: KeyspaceRead + ?Sized> ReadView<'a, K> {
    pub fn new(ks: &'a K, now_ms: u64) -> Self {
        ReadView { ks, now: now_ms }
    }

    pub fn now(&self) -> u64 {
        self.now
    }

    /// The live record of `key`.
    pub fn lookup(&self, key: &[u8]) -> Result<Option<Record>, StorageError> {
        match self.ks.get(key)? {
            Some(raw) => {
                let record = decode(key, &raw)?;
                Ok((!record.is_expired(self.now)).then_some(record))
            }
            None => Ok(None),
        }
    }
}

/// A write view at the timestamp of the entry being applied.
pub struct WriteView<'a, K: KeyspaceWrite + ?Sized> {
    ks: &'a mut K,
    now: u64,
}

impl<'a, K: KeyspaceWrite + ?Sized> WriteView<'a, K> {
    pub fn new(ks: &'a mut K, now_ms: u64) -> Self {
        WriteView { ks, now: now_ms }
    }

    pub fn now(&self) -> u64 {
        self.now
    }

    /// The live record of `key`; an expired one is deleted.
    pub fn lookup(&mut self, key: &[u8]) -> Result<Option<Record>, StorageError> {
        let Some(raw) = self.ks.get(key)? else {
            return Ok(None);
        };
        let record = decode(key, &raw)?;
        if record.is_expired(self.now) {
            self.remove(key, &record)?;
            return Ok(None);
        }
        Ok(Some(record))
    }

    /// Stores `record` under `key`. `previous` must be what
    /// [`WriteView::lookup`] returned for `key` (nothing changed since).
    pub fn store(
        &mut self,
        key: &[u8],
        record: &Record,
        previous: Option<&Record>,
    ) -> Result<(), StorageError> {
        let old_expiry = previous.and_then(|p| p.expire_at);
        if old_expiry != record.expire_at {
            if let Some(at) = old_expiry {
                self.ks.unindex_expire(key, at)?;
            }
            if let Some(at) = record.expire_at {
                self.ks.index_expire(key, at)?;
            }
        }
        self.ks.put(key, record.encode())?;
        let counts = self.ks.counts();
        if previous.is_none() {
            counts.keys += 1;
        }
        match (old_expiry.is_some(), record.expire_at.is_some()) {
            (false, true) => counts.expires += 1,
            (true, false) => counts.expires = counts.expires.saturating_sub(1),
            _ => {}
        }
        Ok(())
    }

    /// Deletes `key`, whose stored record is `previous`.
    pub fn remove(&mut self, key: &[u8], previous: &Record) -> Result<(), StorageError> {
        if let Some(at) = previous.expire_at {
            self.ks.unindex_expire(key, at)?;
        }
        self.ks.delete(key)?;
        let counts = self.ks.counts();
        counts.keys = counts.keys.saturating_sub(1);
        if previous.expire_at.is_some() {
            counts.expires = counts.expires.saturating_sub(1);
        }
        Ok(())
    }

    /// Deletes `key` if it is still due to expire at `expire_at` and that
    /// time has come; otherwise drops a stale index entry. Returns whether
    /// a key was deleted. This is how active expiry removes keys: through
    /// the log, with the proposer's clock.
    pub fn remove_if_expired(&mut self, key: &[u8], expire_at: u64) -> Result<bool, StorageError> {
        let record = match self.ks.get(key)? {
            Some(raw) => Some(decode(key, &raw)?),
            None => None,
        };
        match record {
            Some(record) if record.expire_at == Some(expire_at) => {
                if expire_at <= self.now {
                    self.remove(key, &record)?;
                    Ok(true)
                } else {
                    Ok(false)
                }
            }
            _ => {
                self.ks.unindex_expire(key, expire_at)?;
                Ok(false)
            }
        }
    }

    pub fn clear(&mut self) -> Result<(), StorageError> {
        self.ks.clear()
    }
}
