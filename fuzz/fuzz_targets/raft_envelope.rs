//! A peer's raft stream batch, as the receiving node decodes it: the
//! protobuf batch, then each envelope's raft message. Nothing may panic;
//! every message is either stepped or counted as invalid.
#![no_main]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use elastickv_transport::pb::RaftBatch;
use elastickv_transport::server::deliver;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(batch) = RaftBatch::decode(data) else {
        return;
    };
    let sent = batch.messages.len() as u32;
    let stepped = Arc::new(AtomicU32::new(0));
    let counter = stepped.clone();
    let step: elastickv_transport::StepFn = Arc::new(move |_, msg| {
        assert_eq!(msg.to, 2, "a message for another node was stepped");
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(())
    });
    let delivered = deliver(2, &step, batch);
    let ack = delivered.ack;
    assert_eq!(ack.accepted, stepped.load(Ordering::Relaxed));
    assert_eq!(ack.accepted + ack.refused + ack.invalid, sent);
});
