//! The forwarding path compared with Redis: seeded random command streams
//! and pipelines of hashes, lists, sets, sorted sets and every type at once
//! (with strings, HyperLogLog and keyspace commands mixed in) sent to a
//! node that leads no shard of a 3-node cluster, so every write crosses to
//! the leader and back and every read is served after a read barrier,
//! against redis-server 7.0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use elastickv_integration::diff::{
    Generator, comparable, compare, hash_command, list_command, mixed_command, set_command, show,
    zset_command,
};
use elastickv_integration::{Cluster, RedisOracle};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// A 3-node cluster whose shard leaders are all away from one node:
/// returns the cluster and that node.
fn cluster_with_a_follower() -> (Cluster, u64) {
    let cluster = Cluster::start(3, 2, &[], &[]);
    let ids = cluster.ids();
    let leaders = cluster.wait_for_leaders(&ids, Duration::from_secs(30));
    // Shard leaders settle on their preferred nodes (one per shard here),
    // so with two shards one node leads none.
    let follower = ids
        .iter()
        .copied()
        .find(|id| !leaders.contains(id))
        .expect("a node leading no shard");
    (cluster, follower)
}

#[test]
fn random_commands_through_a_follower_match_redis() {
    let (cluster, follower) = cluster_with_a_follower();
    let redis = RedisOracle::start();
    let (mut r, mut e) = (redis.raw(), cluster.node(follower).raw());
    let generators: [(&str, Generator); 5] = [
        ("hash", hash_command),
        ("list", list_command),
        ("set", set_command),
        ("zset", zset_command),
        ("mixed", mixed_command),
    ];
    for (family, command) in generators {
        for seed in 0..2u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut history = Vec::new();
            for _ in 0..400 {
                let cmd = command(&mut rng);
                compare(&mut r, &mut e, &cmd, &history);
                history.push(format!("{family} seed {seed}: {}", show(&cmd)));
            }
            r.call(&["FLUSHALL"]);
            e.call(&["FLUSHALL"]);
        }
    }
}

/// Pipelined commands through a follower answer like Redis, in order,
/// including reads that follow forwarded writes to the same key.
#[test]
fn pipelines_through_a_follower_match_redis() {
    let (cluster, follower) = cluster_with_a_follower();
    let redis = RedisOracle::start();
    let (mut r, mut e) = (redis.raw(), cluster.node(follower).raw());
    let mut rng = StdRng::seed_from_u64(11);
    let generators: [Generator; 5] = [
        hash_command,
        list_command,
        set_command,
        zset_command,
        mixed_command,
    ];
    for round in 0..30 {
        let command = generators[round % generators.len()];
        let cmds: Vec<Vec<Vec<u8>>> = (0..40).map(|_| command(&mut rng)).collect();
        for cmd in &cmds {
            r.send(cmd);
            e.send(cmd);
        }
        for cmd in &cmds {
            let (expected, got) = (r.read_reply(), e.read_reply());
            assert_eq!(
                String::from_utf8_lossy(&comparable(cmd, &expected)),
                String::from_utf8_lossy(&comparable(cmd, &got)),
                "pipelined through node {follower}: {}",
                show(cmd)
            );
        }
    }
}
