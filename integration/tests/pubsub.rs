//! Pub/sub against redis-server 7.0 (subscription replies, subscribed-mode
//! rules over RESP2, RESP3 push frames, PUBSUB introspection) and across a
//! 3-node cluster: a message published on any node reaches subscribers on
//! every node, in publish order; a subscriber that stops reading is
//! disconnected while the others keep receiving.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use elastickv_integration::diff::{pair, run_script};
use elastickv_integration::{Cluster, RawClient, flood_keeping_reader_up};

const SCRIPT: &[&str] = &[
    "PUBLISH news hello",
    "SPUBLISH snews hello",
    "UNSUBSCRIBE",
    "PUNSUBSCRIBE",
    "SUNSUBSCRIBE",
    "PUBSUB NUMPAT",
    "PUBSUB NUMSUB news",
    "PUBSUB CHANNELS",
    "PUBSUB CHANNELS a b",
    "PUBSUB HELP",
    "SUBSCRIBE news",
    "SUBSCRIBE news",
    "PSUBSCRIBE n*",
    "SSUBSCRIBE snews",
    "GET k",
    "PING",
    "PING hi",
    "ECHO allowed-in-resp3",
    "UNSUBSCRIBE other",
    "UNSUBSCRIBE news",
    "PUNSUBSCRIBE",
    "SUNSUBSCRIBE snews",
    "PING",
    "GET k",
    "SUBSCRIBE again",
    "RESET",
    "PING",
    "COMMAND INFO subscribe publish spublish ssubscribe",
];

#[test]
fn pubsub_commands_match_redis() {
    let (_dir, node, redis) = pair("1");
    run_script(&mut redis.raw(), &mut node.raw(), SCRIPT);
}

#[test]
fn pubsub_commands_match_redis_over_resp3() {
    let (_dir, node, redis) = pair("4");
    let (mut r, mut e) = (redis.raw(), node.raw());
    r.call(&["HELLO", "3"]);
    e.call(&["HELLO", "3"]);
    run_script(&mut r, &mut e, SCRIPT);
}

/// The messages a subscriber receives, as Redis sends them, for the same
/// subscriptions and publishes on both servers.
#[test]
fn messages_are_pushed_as_redis_pushes_them() {
    let (_dir, node, redis) = pair("4");
    for resp3 in [false, true] {
        let mut frames = Vec::new();
        for port in [redis.port, node.port] {
            let (mut sub, mut publisher) = (
                RawClient::connect(port).unwrap(),
                RawClient::connect(port).unwrap(),
            );
            if resp3 {
                sub.call(&["HELLO", "3"]);
            }
            sub.call(&["SUBSCRIBE", "news"]);
            sub.call(&["PSUBSCRIBE", "ne*"]);
            sub.call(&["SSUBSCRIBE", "shard"]);
            assert_eq!(publisher.call(&["PUBLISH", "news", "hello"]), b":2\r\n");
            assert_eq!(publisher.call(&["SPUBLISH", "shard", "hi"]), b":1\r\n");
            let mut got = Vec::new();
            for _ in 0..3 {
                got.push(String::from_utf8(sub.read_reply()).unwrap());
            }
            got.sort();
            frames.push(got);
        }
        assert_eq!(frames[0], frames[1], "resp3: {resp3}");
    }
}

/// A message published on any node reaches subscribers on every node,
/// and one connection's messages arrive in the order it published them.
#[test]
fn messages_reach_subscribers_on_every_node_in_order() {
    let cluster = Cluster::start(3, 2, &[], &[]);
    let ids = cluster.ids();
    cluster.wait_for_leaders(&ids, Duration::from_secs(30));
    let mut subscribers: Vec<RawClient> = ids
        .iter()
        .map(|&id| {
            let mut sub = cluster.node(id).raw();
            assert_eq!(
                sub.call(&["SUBSCRIBE", "events"]),
                b"*3\r\n$9\r\nsubscribe\r\n$6\r\nevents\r\n:1\r\n"
            );
            sub.set_read_timeout(Duration::from_secs(10));
            sub
        })
        .collect();
    let mut publisher = cluster.node(ids[1]).raw();
    let total = 200;
    for i in 0..total {
        // Each node counts its own subscribers, as Redis Cluster does.
        assert_eq!(
            publisher.call(&["PUBLISH", "events", &format!("m{i}")]),
            b":1\r\n"
        );
    }
    for (n, sub) in subscribers.iter_mut().enumerate() {
        for i in 0..total {
            let expected = format!(
                "*3\r\n$7\r\nmessage\r\n$6\r\nevents\r\n${}\r\nm{i}\r\n",
                format!("m{i}").len()
            );
            assert_eq!(
                String::from_utf8(sub.read_reply()).unwrap(),
                expected,
                "subscriber on node {}",
                ids[n]
            );
        }
    }
}

/// A subscriber that never reads is disconnected once its outbox is
/// full; another subscriber keeps receiving everything.
#[test]
fn a_subscriber_that_stops_reading_is_disconnected() {
    let (_dir, node, _redis) = pair("1");
    let mut stalled = node.raw();
    stalled.call(&["SUBSCRIBE", "flood"]);
    let mut reader = node.raw();
    reader.call(&["SUBSCRIBE", "flood"]);
    reader.set_read_timeout(Duration::from_secs(30));
    let mut publisher = node.raw();
    let payload = "x".repeat(4096);
    flood_keeping_reader_up(&mut publisher, &mut reader, "flood", &payload, 20_000);
    let stats = String::from_utf8(publisher.call(&["INFO", "stats"])).unwrap();
    assert!(stats.contains("pubsub_channels:1\r\n"), "{stats}");
    let info = String::from_utf8(publisher.call(&["PUBSUB", "NUMSUB", "flood"])).unwrap();
    assert_eq!(
        info, "*2\r\n$5\r\nflood\r\n:1\r\n",
        "the stalled subscriber is still there"
    );
}
