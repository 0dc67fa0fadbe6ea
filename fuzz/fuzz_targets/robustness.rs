//! Fuzz target: `parse_robustness_csv` (how `specreg report` and resume read a
//! `robustness.csv`) must never panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use specreg_experiments::results::parse_robustness_csv;

fuzz_target!(|data: &[u8]| {
    if let Some(text) = specreg_fuzz::text(data) {
        let _ = parse_robustness_csv(text, Path::new("robustness.csv"));
    }
});
