//! Fuzz target: `Config::from_toml_str` must never panic; an accepted config writes back
//! (`to_toml`) to text that parses to the same config.
#![no_main]

use libfuzzer_sys::fuzz_target;
use specreg_experiments::Config;

fuzz_target!(|data: &[u8]| {
    let Some(text) = specreg_fuzz::text(data) else {
        return;
    };
    let Ok(config) = Config::from_toml_str(text, "fuzz.toml") else {
        return;
    };
    let _ = (config.id(), config.train_images(), config.test_images());
    let _ = (config.training_fingerprint(0), config.eval_fingerprint());
    let again = Config::from_toml_str(&config.to_toml(), "written.toml")
        .unwrap_or_else(|e| panic!("an accepted config does not read back: {e}"));
    assert_eq!(again, config);
});
