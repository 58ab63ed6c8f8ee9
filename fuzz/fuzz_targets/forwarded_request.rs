//! A command another node forwards: the gRPC request, the replicated
//! entry inside it (checked as the leader checks it before proposing),
//! then applied as every replica applies it. Nothing may panic, and an
//! entry the check accepts must apply (or fail with an error, never a
//! crash).
#![no_main]

use elastickv_redis::keyspace::MemKeyspace;
use elastickv_redis::log::LogEntry;
use elastickv_redis::replicated::apply;
use elastickv_transport::pb::ForwardRequest;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = ForwardRequest::decode(data) else {
        return;
    };
    let Ok(entry) = LogEntry::from_bytes(&request.payload) else {
        return;
    };
    let mut keyspace = MemKeyspace::default();
    let payload = entry.to_bytes();
    // Twice: the second is a retry the request record must answer.
    let first = apply(&mut keyspace, 1, &payload);
    let second = apply(&mut keyspace, 2, &payload);
    if let (Ok(a), Ok(b)) = (&first, &second) {
        if entry.request.as_ref().is_some_and(|r| r.origin != 0) {
            assert_eq!(a, b, "a retried request was applied twice");
        }
    }
});
