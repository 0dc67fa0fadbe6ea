//! Fuzz target: `parse_summary` (how `specreg report` and resume read a `summary.json`)
//! must never panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use specreg_experiments::results::parse_summary;

fuzz_target!(|data: &[u8]| {
    if let Some(text) = specreg_fuzz::text(data) {
        let _ = parse_summary(text, Path::new("summary.json"));
    }
});
