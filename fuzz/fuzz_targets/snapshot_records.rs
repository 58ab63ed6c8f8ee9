//! A snapshot's record stream as a receiving node checks it before
//! installing it, for a shard the input picks. Nothing may panic; every
//! record accepted lies in the shard's ranges, and the records read back
//! re-encode to the same bytes.
#![no_main]

use elastickv_store::ShardRanges;
use elastickv_store::snapshot::read_records;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, stream)) = data.split_first() else {
        return;
    };
    let shards = u32::from(pick % 8) + 1;
    let shard = u32::from(pick >> 3) % shards;
    let slots_per_shard = 16384 / shards;
    let ranges = ShardRanges {
        shard,
        first_slot: shard * slots_per_shard,
        end_slot: if shard + 1 == shards {
            16384
        } else {
            (shard + 1) * slots_per_shard
        },
    };
    let Ok(records) = read_records(stream, ranges) else {
        return;
    };
    let mut encoded = Vec::new();
    for (tag, key, value) in &records {
        encoded.push(*tag);
        encoded.extend_from_slice(&(key.len() as u32).to_be_bytes());
        encoded.extend_from_slice(key);
        encoded.extend_from_slice(&(value.len() as u32).to_be_bytes());
        encoded.extend_from_slice(value);
    }
    assert_eq!(encoded, stream, "records did not re-encode to their stream");
});
