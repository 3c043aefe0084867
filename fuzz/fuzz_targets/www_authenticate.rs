//! `parse_challenges` on any `WWW-Authenticate` value: never panics, and
//! every challenge it returns has a lower-case scheme and parameter names.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ocimirror::registry::http::auth::parse_challenges;

fuzz_target!(|input: &str| {
    for c in parse_challenges(input) {
        assert!(!c.scheme.is_empty());
        assert_eq!(c.scheme, c.scheme.to_ascii_lowercase());
        for name in c.params.keys() {
            assert_eq!(name, &name.to_ascii_lowercase());
        }
    }
});
