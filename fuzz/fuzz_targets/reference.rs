//! `ImageReference::from_str` on any UTF-8 input: never panics, and a
//! registry reference it accepts prints back to a string that parses to
//! the same reference.
#![no_main]

use std::str::FromStr;

use libfuzzer_sys::fuzz_target;
use ocimirror::oci::{ImageReference, Location};

fuzz_target!(|input: &str| {
    let Ok(r) = ImageReference::from_str(input) else {
        return;
    };
    if matches!(r.location, Location::Registry(_)) {
        let printed = r.to_string();
        let again = ImageReference::from_str(&printed)
            .unwrap_or_else(|e| panic!("{input:?} -> {printed:?} does not parse: {e}"));
        assert_eq!(again, r, "{input:?} -> {printed:?}");
    }
});
