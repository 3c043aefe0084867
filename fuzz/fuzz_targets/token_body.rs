//! A token server's JSON answer. Never panics, whatever `expires_in` or
//! `issued_at` say; a token that is accepted is never empty and its lifetime
//! is always within the adapter's clamp.
#![no_main]

use std::time::SystemTime;

use libfuzzer_sys::fuzz_target;
use ocimirror::registry::http::auth::{MAX_TOKEN_LIFETIME, MIN_TOKEN_LIFETIME};
use ocimirror::registry::http::parse_token_response;

fuzz_target!(|input: &[u8]| {
    if let Ok((token, lifetime)) = parse_token_response(input, SystemTime::now()) {
        assert!(!token.expose().is_empty());
        assert!((MIN_TOKEN_LIFETIME..=MAX_TOKEN_LIFETIME).contains(&lifetime));
    }
});
