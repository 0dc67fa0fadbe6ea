//! Fuzz target: `parse_state` (what `Checkpoints::load` runs on `checkpoint/state.json`)
//! must never panic; an accepted state writes back to text that parses to the same state.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use specreg_experiments::checkpoint::parse_state;

fuzz_target!(|data: &[u8]| {
    let Some(text) = specreg_fuzz::text(data) else {
        return;
    };
    let Ok(state) = parse_state(text, Path::new("state.json")) else {
        return;
    };
    let written = serde_json::to_string_pretty(&state).expect("an accepted state serialises");
    // JSON holds no NaN or infinity, so a state whose numbers overflow to infinity on the
    // way in is written with nulls; any other accepted state must read back unchanged.
    if let Ok(again) = parse_state(&written, Path::new("written.json")) {
        assert_eq!(format!("{again:?}"), format!("{state:?}"));
    }
});
