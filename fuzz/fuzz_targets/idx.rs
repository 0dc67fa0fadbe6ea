//! Fuzz target: `parse_idx` must never panic on arbitrary bytes (raw or gzip), and whatever
//! it accepts must survive an encode / parse round trip unchanged.
//!
//! Run with `cargo xtask fuzz --target idx` (see `xtask/src/fuzz.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use specreg_data::{encode_idx, parse_idx};

fuzz_target!(|data: &[u8]| {
    let Ok(array) = parse_idx(data, "fuzz-input") else {
        return;
    };
    assert_eq!(
        array.dims.iter().product::<usize>(),
        array.data.len(),
        "accepted array is inconsistent"
    );
    let bytes = encode_idx(&array).expect("an accepted array re-encodes");
    let again = parse_idx(&bytes, "re-encoded").expect("re-encoded bytes parse");
    assert_eq!(again, array);
});
