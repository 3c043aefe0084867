//! A configuration file with any content, loaded and resolved the way
//! `ocimirror once -c` does (no environment overrides). Never panics; a
//! configuration it accepts renders as TOML (`ocimirror config show`).
#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;

/// One scratch file per fuzzing process.
static PATH: LazyLock<PathBuf> = LazyLock::new(|| {
    std::env::temp_dir().join(format!("ocimirror-fuzz-config-{}.toml", std::process::id()))
});

fuzz_target!(|input: &[u8]| {
    if std::fs::write(&*PATH, input).is_err() {
        return;
    }
    let Ok(config) = ocimirror::config::load_with_env(&PATH, Vec::new()) else {
        return;
    };
    config
        .to_toml()
        .unwrap_or_else(|e| panic!("an accepted configuration does not render: {e}"));
});
