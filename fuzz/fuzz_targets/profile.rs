//! Fuzz target: `Profile::from_toml_str` (what `Profile::load` runs on a file's text) must
//! never panic, nor must applying an accepted profile to every real config.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use specreg_experiments::{Config, Profile, profile::config_files};

/// Every config under `configs/`, as raw tables.
fn configs() -> &'static [(PathBuf, toml::Table)] {
    static CONFIGS: OnceLock<Vec<(PathBuf, toml::Table)>> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        let files = config_files(specreg_fuzz::configs_dir()).expect("configs/ is readable");
        files
            .into_iter()
            .map(|p| {
                let t = Config::read_table(&p).expect("a real config reads");
                (p, t)
            })
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some(text) = specreg_fuzz::text(data) else {
        return;
    };
    let Ok(profile) = Profile::from_toml_str(text, "fuzz.toml", "fuzz") else {
        return;
    };
    for (path, raw) in configs() {
        if let Ok(config) = profile.config_from_table(raw.clone(), path) {
            let _ = profile.includes(&config.id());
        }
    }
});
