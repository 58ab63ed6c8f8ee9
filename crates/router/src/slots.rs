//! Redis Cluster's key to slot mapping, and this node's slot to shard
//! mapping.

use elastickv_redis::command::Parsed;

/// Number of hash slots.
pub const SLOTS: u32 = 16384;

/// The hash slot of `key`: CRC16-XMODEM of the key, or of its hash tag
/// (the part between the first `{` and the next `}`, when non-empty), mod
/// 16384. Identical to Redis Cluster, so `{user1}:a` and `{user1}:b` share
/// a slot.
pub fn slot_for_key(key: &[u8]) -> u16 {
    let hashed = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    crc16::State::<crc16::XMODEM>::calculate(hashed) & 0x3fff
}

/// Which of `shards` shards owns `slot`. Shards own contiguous, nearly
/// equal slot ranges.
pub fn shard_for_slot(slot: u16, shards: u32) -> u32 {
    (u32::from(slot) * shards) / SLOTS
}

pub fn shard_for_key(key: &[u8], shards: u32) -> u32 {
    shard_for_slot(slot_for_key(key), shards)
}

/// The slots `first..end` owned by `shard`.
pub fn slot_range(shard: u32, shards: u32) -> (u32, u32) {
    // The first slot s with s * shards / SLOTS >= shard.
    let first = (shard * SLOTS).div_ceil(shards);
    let end = ((shard + 1) * SLOTS).div_ceil(shards);
    (first, end.min(SLOTS))
}

/// The keys of a parsed command, by argument position.
pub fn command_keys<'a>(parsed: &Parsed, args: &'a [bytes::Bytes]) -> Vec<(usize, &'a [u8])> {
    parsed
        .spec
        .key_positions(args)
        .into_iter()
        .map(|i| (i, args[i].as_ref()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis_cluster() {
        // Values from Redis Cluster (CLUSTER KEYSLOT).
        assert_eq!(slot_for_key(b"foo"), 12182);
        assert_eq!(slot_for_key(b"bar"), 5061);
        assert_eq!(slot_for_key(b""), 0);
        assert_eq!(slot_for_key(b"{user1}:a"), slot_for_key(b"user1"));
        assert_eq!(slot_for_key(b"{user1}:a"), slot_for_key(b"x{user1}y"));
        // Empty tag: the whole key is hashed.
        assert_eq!(slot_for_key(b"{}a"), crc(b"{}a"));
        // Only the first tag counts.
        assert_eq!(slot_for_key(b"{a}{b}"), slot_for_key(b"a"));
        assert_eq!(slot_for_key(b"{a"), crc(b"{a"));
    }

    fn crc(b: &[u8]) -> u16 {
        crc16::State::<crc16::XMODEM>::calculate(b) & 0x3fff
    }

    #[test]
    fn agrees_with_redis_protocol_crate() {
        for key in [
            "a",
            "hello",
            "{tag}rest",
            "x{}y",
            "12345678901234567890",
            "{{a}}",
        ] {
            assert_eq!(
                slot_for_key(key.as_bytes()),
                redis_protocol::redis_keyslot(key.as_bytes()),
                "{key}"
            );
        }
    }

    #[test]
    fn shard_ranges_partition_the_slots() {
        for shards in [1u32, 2, 3, 4, 7, 16, 100] {
            let mut next = 0;
            for shard in 0..shards {
                let (first, end) = slot_range(shard, shards);
                assert_eq!(first, next, "shards={shards} shard={shard}");
                assert!(end > first);
                for slot in [first, end - 1] {
                    assert_eq!(shard_for_slot(slot as u16, shards), shard);
                }
                next = end;
            }
            assert_eq!(next, SLOTS);
        }
    }
}
