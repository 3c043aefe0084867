//! What a token server sends back, as the HTTP adapter uses it: the
//! lifetime (`expires_in`, any u64) goes into the token cache, and the
//! scopes of a challenge are parsed, merged and keyed. Never panics; a
//! fresh token is found again under its key; scopes print back to
//! themselves.
#![no_main]

use std::time::{Duration, Instant, SystemTime};

use libfuzzer_sys::fuzz_target;
use ocimirror::registry::http::Secret;
use ocimirror::registry::http::auth::{
    Scope, TokenCache, parse_scope_list, token_key, token_lifetime,
};

fuzz_target!(|input: &[u8]| {
    let Some((lifetime, rest)) = input.split_first_chunk::<8>() else {
        return;
    };
    // Any number a server may send, NaN and infinities included.
    let expires_in = match u64::from_le_bytes(*lifetime) {
        0 => None,
        n => Some(f64::from_bits(n)),
    };
    let scopes = parse_scope_list(&String::from_utf8_lossy(rest));
    for s in &scopes {
        let printed = s.to_string();
        assert_eq!(Scope::parse(&printed).as_ref(), Some(s), "{printed:?}");
    }
    let key = token_key("https://auth.example/token", "registry.example", &scopes);
    let mut cache = TokenCache::default();
    let now = Instant::now();
    let ttl = token_lifetime(expires_in, None, SystemTime::now());
    cache.insert(key.clone(), Secret::new("t"), ttl, now);
    assert!(cache.get(&key, now, Duration::from_secs(1)).is_some());
});
