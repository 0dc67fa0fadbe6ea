//! Fuzz target: `parse_metrics` (what `read_metrics` runs on a `metrics.jsonl`) must never
//! panic; the records it accepts serialise again.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use specreg_experiments::metrics::parse_metrics;

fuzz_target!(|data: &[u8]| {
    let Some(text) = specreg_fuzz::text(data) else {
        return;
    };
    let Ok(records) = parse_metrics(text, Path::new("metrics.jsonl")) else {
        return;
    };
    for r in &records {
        serde_json::to_string(r).expect("an accepted record serialises");
    }
});
