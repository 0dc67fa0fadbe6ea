//! A sweep in which one run fails numerically: the run stops with an error naming the step
//! and the quantity, which its `metrics.jsonl` keeps; the sweep goes on with the next run
//! and exits successfully; `specreg report` lists the failed run with its error; and a
//! second `specreg run` leaves the failed run as it is.

mod common;

use std::path::Path;
use std::process::{Command, Output};

/// An MLP under eq. 11's Jacobian penalty with `β_J = 1e308`: `β_J · B` overflows `f64`,
/// so the first step's penalty is infinite (the cross-entropy is finite). Deterministic.
const DIVERGES: &str = r#"
experiment = "exp3"
variant = "guard-diverges"
description = "MLP, eq. 11 Jacobian penalty with beta_J B beyond f64"
seeds = [0]

[model]
kind = "mlp"

[train]
epochs = 1
batch_size = 250
lr = 1e-4
train_subset = 500
min_batch_ratio = 0.0

[jacobian]
kind = "input-loss"
beta = BETA

[eval]
test_subset = 200
batch_size = 200
fgsm_eps = [0.0, 0.1]
pgd_eps = [0.0, 0.1]
pgd_steps = 2
noise_sigma = [0.0, 0.5]
strong_eps = [0.1]
apgd_steps = 2
spectrum_images = 500
sensitivity_images = 200
"#;

const ERROR: &str = "training stopped at epoch 0, batch 0 (step 0): the Jacobian penalty is inf";

fn specreg(args: &[&str], out: &Path, configs: &[&Path]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_specreg"));
    c.args(args)
        .arg("--out")
        .arg(out)
        .args(["--threads", "2", "--quiet"]);
    for config in configs {
        c.arg("--config").arg(config);
    }
    c.output().unwrap()
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_numerically_failed_run_is_recorded_and_the_sweep_goes_on() {
    let Some(data) = common::data() else {
        eprintln!("skipped: MNIST not found (set SPECREG_DATA)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let diverges = tmp.path().join("diverges.toml");
    let finishes = tmp.path().join("finishes.toml");
    std::fs::write(&diverges, DIVERGES.replace("BETA", "1e308")).unwrap();
    let ok = DIVERGES
        .replace("BETA", "0.01")
        .replace("guard-diverges", "guard-finishes")
        .replace("with beta_J B beyond f64", "beta_J = 0.01");
    std::fs::write(&finishes, ok).unwrap();
    let out = tmp.path().join("results");
    let data = data.to_str().unwrap().to_string();
    let run = ["run", "--data", data.as_str()];

    // The failing run comes first; the sweep goes on and succeeds.
    let first = specreg(&run, &out, &[&diverges, &finishes]);
    assert_ok(&first, "specreg run");
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(
        stderr.contains(&format!("exp3/guard-diverges seed 0 stopped: {ERROR}")),
        "{stderr}"
    );

    // The failed run: one error line naming the step and the quantity, no model.
    let failed = out.join("exp3/guard-diverges/seed0");
    let metrics = std::fs::read_to_string(failed.join("metrics.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{metrics}");
    assert_eq!(lines[0]["epoch"], 1);
    assert_eq!(lines[0]["error"], ERROR);
    assert!(!failed.join("model.safetensors").exists());
    assert!(!failed.join("summary.json").exists());

    // The other run trained and was evaluated.
    let done = out.join("exp3/guard-finishes/seed0");
    let metrics = std::fs::read_to_string(done.join("metrics.jsonl")).unwrap();
    let record: serde_json::Value = serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
    assert_eq!(record["epoch"], 1, "{metrics}");
    assert!(record["loss"].as_f64().unwrap().is_finite(), "{metrics}");
    assert!(record.get("error").is_none(), "{metrics}");
    for f in ["model.safetensors", "summary.json", "robustness.csv"] {
        assert!(done.join(f).is_file(), "guard-finishes: {f} missing");
    }

    // `specreg report` lists the failed run and its error.
    std::fs::remove_file(out.join("REPORT.md")).unwrap();
    assert_ok(&specreg(&["report"], &out, &[]), "specreg report");
    let report = std::fs::read_to_string(out.join("REPORT.md")).unwrap();
    let stopped = report
        .split("## Runs that stopped")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .unwrap_or_else(|| panic!("no failed-run section:\n{report}"));
    let entry = stopped.lines().find(|l| l.starts_with("- ")).unwrap();
    assert!(
        entry.contains("exp3/guard-diverges/seed0") && entry.ends_with(ERROR),
        "{entry}"
    );
    assert!(!stopped.contains("guard-finishes"), "{stopped}");
    assert!(report.contains("| guard-finishes |"), "{report}");

    // Running the sweep again leaves the failed run as it was.
    let before = std::fs::read(failed.join("metrics.jsonl")).unwrap();
    assert_ok(&specreg(&run, &out, &[&diverges, &finishes]), "second run");
    assert_eq!(std::fs::read(failed.join("metrics.jsonl")).unwrap(), before);
}
