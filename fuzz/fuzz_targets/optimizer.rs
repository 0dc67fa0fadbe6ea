//! Fuzz target: `load_optimizer_bytes` (what `load_optimizer` runs on a file's bytes, then
//! `Adam::load_state`) must never panic; what it accepts round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| specreg_fuzz::optimizer(data));
