//! ACL SETUSER rules from the input (space-separated words), then a
//! command checked against the user. Nothing may panic; rules either all
//! apply or change nothing; a user's description (what ACL SAVE writes)
//! loads, decides the command the same way, and reads back unchanged from
//! then on. (The first description may differ in form: `%RW~*` reads back
//! as `~*`, as in Redis.)
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
    let rebuilt = rebuild(&user);
    let again = rebuild(&rebuilt);
    assert_eq!(again.describe(), rebuilt.describe());
    let args: Vec<Bytes> = command
        .split(' ')
        .map(|w| Bytes::copy_from_slice(w.as_bytes()))
        .collect();
    if let Ok(spec) = resolve(&args) {
        assert_eq!(user.check(spec, &args), rebuilt.check(spec, &args));
    }
});

/// A user made from `user`'s description.
fn rebuild(user: &User) -> User {
    let description = user.describe();
    let words: Vec<Bytes> = description
        .split(' ')
        .map(|w| Bytes::copy_from_slice(w.as_bytes()))
        .collect();
    let mut rebuilt = User::new(b"fuzz");
    rebuilt
        .apply_all(&words)
        .unwrap_or_else(|e| panic!("its own description {description:?} was refused: {e}"));
    rebuilt
}
