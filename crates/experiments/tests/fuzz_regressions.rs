//! The fuzz targets' entry functions (`fuzz/fuzz_targets/*.rs`) accept the real files they
//! are seeded with, and the inputs kept under `tests/fuzz_regressions/<target>/` behave.

mod common;

use std::path::Path;

use specreg_experiments::checkpoint::parse_state;
use specreg_experiments::metrics::parse_metrics;
use specreg_experiments::profile::config_files;
use specreg_experiments::results::{parse_robustness_csv, parse_summary};
use specreg_experiments::{Config, Profile};

#[test]
fn every_real_config_and_profile_parses() {
    let configs = common::configs();
    let files = config_files(&configs).unwrap();
    assert!(files.len() >= 36, "{} configs", files.len());
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let c = Config::from_toml_str(&text, &f.display().to_string()).unwrap();
        assert_eq!(Config::from_toml_str(&c.to_toml(), "written").unwrap(), c);
    }
    for name in ["smoke", "quick"] {
        let path = configs.join("profiles").join(format!("{name}.toml"));
        let text = std::fs::read_to_string(&path).unwrap();
        let p = Profile::from_toml_str(&text, &path.display().to_string(), name).unwrap();
        assert_eq!(p, Profile::load(name, &configs).unwrap());
        assert!(!p.include.is_empty());
    }
}

/// Found by the `run_state` fuzz target: a state whose loss `2.2970526814460755` reads
/// back 1 ULP off after one write and read (serde_json's default float parser is not
/// correctly rounded), so a resumed run's metrics could differ from an uninterrupted one's.
#[test]
fn run_state_floats_round_trip_exactly() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_regressions/run_state/float-roundtrip.json");
    let state = parse_state(&std::fs::read_to_string(&file).unwrap(), &file).unwrap();
    let written = serde_json::to_string_pretty(&state).unwrap();
    let again = parse_state(&written, Path::new("written.json")).unwrap();
    assert_eq!(
        again.records[0].loss.to_bits(),
        state.records[0].loss.to_bits()
    );
    assert_eq!(again, state);
}

#[test]
#[cfg_attr(
    specreg_no_mnist,
    ignore = "MNIST not found at build time (see the cargo warning): set SPECREG_DATA"
)]
fn a_real_runs_results_files_parse() {
    let Some(data) = common::data() else {
        eprintln!("skipping: MNIST not found (set SPECREG_DATA)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("tiny.toml");
    std::fs::write(
        &config,
        "experiment = \"exp2\"\nvariant = \"fuzz-seed\"\nseeds = [0]\n[model]\nkind = \"mlp\"\n\
         [train]\nepochs = 2\nbatch_size = 100\nlr = 1e-4\ntrain_subset = 300\n\
         min_batch_ratio = 0.0\n[eval]\ntest_subset = 100\nbatch_size = 100\n\
         fgsm_eps = [0.0, 0.1]\npgd_eps = [0.0, 0.1]\npgd_steps = 2\nnoise_sigma = [0.0, 0.5]\n\
         strong_eps = [0.1]\napgd_steps = 2\nspectrum_images = 300\nsensitivity_images = 100\n",
    )
    .unwrap();
    let out = tmp.path().join("out");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_specreg"));
    cmd.arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--out")
        .arg(&out);
    cmd.arg("--data")
        .arg(&data)
        .args(["--threads", "2", "--quiet"]);
    common::ok(&mut cmd);
    let run = out.join("exp2/fuzz-seed/seed0");
    let read = |rel: &str| std::fs::read_to_string(run.join(rel)).unwrap();
    let records = parse_metrics(&read("metrics.jsonl"), &run.join("metrics.jsonl")).unwrap();
    assert_eq!(records.iter().map(|r| r.epoch).collect::<Vec<_>>(), [1, 2]);
    let state = parse_state(&read("checkpoint/state.json"), Path::new("state.json")).unwrap();
    assert_eq!((state.epochs_done, state.records), (2, records));
    let summary = parse_summary(&read("summary.json"), Path::new("summary.json")).unwrap();
    assert_eq!(summary.model, "mlp");
    let rows = parse_robustness_csv(&read("robustness.csv"), Path::new("robustness.csv")).unwrap();
    assert!(
        rows.iter().any(|r| r.attack == "fgsm" && r.strength == 0.1),
        "{rows:?}"
    );
}
