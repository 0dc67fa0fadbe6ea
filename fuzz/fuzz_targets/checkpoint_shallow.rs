//! Fuzz target: `load_checkpoint_bytes` (what `load_checkpoint` runs on a file's bytes)
//! into the shallow network must never panic; what it accepts is finite and round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use specreg_fuzz::{Arch, checkpoint};

fuzz_target!(|data: &[u8]| checkpoint(Arch::Shallow, data));
