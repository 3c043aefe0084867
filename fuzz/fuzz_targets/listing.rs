//! A tag or catalog page as a registry sends it, and the `Link` header that
//! leads to the next one. Never panics; every kept name passes the grammar,
//! every dropped one fails it, and nothing is lost between the two.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ocimirror::oci::{RepoName, Tag};
use ocimirror::registry::http::{next_link, parse_catalog_page, parse_tag_page};

fuzz_target!(|input: &[u8]| {
    if let Ok(page) = parse_tag_page(input) {
        assert!(page.names.iter().all(|t| Tag::new(t).is_ok()));
        assert!(page.dropped.iter().all(|t| Tag::new(t).is_err()));
    }
    if let Ok(page) = parse_catalog_page(input) {
        assert!(page.names.iter().all(|r| RepoName::new(r).is_ok()));
        assert!(page.dropped.iter().all(|r| RepoName::new(r).is_err()));
    }
    let header = String::from_utf8_lossy(input);
    if let Some(next) = next_link([header.as_ref()]) {
        // The target is a part of the header, never invented.
        assert!(header.contains(&next));
    }
});
