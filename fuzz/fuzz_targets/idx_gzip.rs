//! Fuzz target: the gzip path of `parse_idx`. The input is gzip-compressed before parsing,
//! so the fuzzer explores the IDX header and body behind the decoder; the result must be
//! what parsing the same bytes uncompressed gives (the same array, or an error of the
//! same kind).
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use specreg_data::{is_gzip, parse_idx};

fuzz_target!(|data: &[u8]| {
    if is_gzip(data) {
        return;
    }
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).expect("writing to memory");
    let gz = enc.finish().expect("writing to memory");
    let packed = parse_idx(&gz, "fuzz-input.gz");
    let plain = parse_idx(data, "fuzz-input");
    match (packed, plain) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(a), Err(b)) => assert_eq!(
            std::mem::discriminant(&a),
            std::mem::discriminant(&b),
            "gzip: {a}; raw: {b}"
        ),
        (a, b) => panic!("gzip and raw disagree: {a:?} vs {b:?}"),
    }
});
