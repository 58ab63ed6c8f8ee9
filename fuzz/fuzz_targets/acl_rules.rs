//! ACL SETUSER rules from the input (space-separated words), then a
//! command checked against the user. Nothing may panic; rules either all
//! apply or change nothing; a user rebuilt from its own description reads
//! back the same and decides every command the same way.
#![no_main]

use bytes::Bytes;
use elastickv_redis::acl::User;
use elastickv_redis::command::resolve;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (rules, command) = text.split_once('\n').unwrap_or((&text, "get key"));
    let words: Vec<Bytes> = rules
        .split(' ')
        .map(|w| Bytes::copy_from_slice(w.as_bytes()))
        .collect();
    let mut user = User::new(b"fuzz");
    let before = user.clone();
    if user.apply_all(&words).is_err() {
        assert_eq!(user, before, "a refused SETUSER changed the user");
        return;
    }
    let description = user.describe();
    let rebuilt_words: Vec<Bytes> = description
        .split(' ')
        .map(|w| Bytes::copy_from_slice(w.as_bytes()))
        .collect();
    let mut rebuilt = User::new(b"fuzz");
    rebuilt
        .apply_all(&rebuilt_words)
        .unwrap_or_else(|e| panic!("its own description {description:?} was refused: {e}"));
    assert_eq!(rebuilt.describe(), description);
    let args: Vec<Bytes> = command
        .split(' ')
        .map(|w| Bytes::copy_from_slice(w.as_bytes()))
        .collect();
    if let Ok(spec) = resolve(&args) {
        assert_eq!(user.check(spec, &args), rebuilt.check(spec, &args));
    }
});
