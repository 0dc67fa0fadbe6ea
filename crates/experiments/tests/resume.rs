//! A training run killed mid-epoch (a real process kill) and resumed ends with the same
//! metrics (seconds aside) and the same model bytes as an uninterrupted run.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
experiment = "exp2"
variant = "resume-test"
seeds = [3]

[model]
kind = "mlp"

[train]
epochs = 3
batch_size = 500
lr = 1e-4
train_subset = 4000
# Small batches keep the test short; it checks resumption, not the batch-size rule.
min_batch_ratio = 0.0

[spectral]
layers = ["fc3"]
beta = 2.0

[eval]
test_subset = 500
fgsm_eps = [0.0, 0.1]
pgd_eps = [0.0, 0.1]
pgd_steps = 2
noise_sigma = [0.0, 0.5]
strong_eps = [0.1]
apgd_steps = 2
"#;

fn train_cmd(config: &Path, out: &Path, data: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_specreg"));
    c.arg("train")
        .arg("--config")
        .arg(config)
        .arg("--out")
        .arg(out)
        .arg("--data")
        .arg(data)
        .args(["--threads", "2", "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

fn run_dir(out: &Path) -> PathBuf {
    out.join("exp2/resume-test/seed3")
}

/// The metrics lines with the wall-clock `seconds` removed.
fn metrics_without_seconds(out: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(run_dir(out).join("metrics.jsonl")).unwrap();
    text.lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("seconds");
            v
        })
        .collect()
}

fn epochs_done(out: &Path) -> usize {
    let path = run_dir(out).join("checkpoint/state.json");
    let Ok(text) = std::fs::read_to_string(path) else {
        return 0;
    };
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["epochs_done"].as_u64().unwrap() as usize
}

/// A safetensors file's header (as JSON) and its tensor bytes.
fn split_safetensors(bytes: &[u8]) -> (serde_json::Value, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    (header, bytes[8 + n..].to_vec())
}

#[test]
#[cfg_attr(
    specreg_no_mnist,
    ignore = "MNIST not found at build time (see the cargo warning): set SPECREG_DATA"
)]
fn killed_run_resumes_bit_identically() {
    let data = common::mnist();
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("resume.toml");
    std::fs::write(&config, CONFIG).unwrap();

    // The reference: one uninterrupted run.
    let reference = tmp.path().join("reference");
    let out = train_cmd(&config, &reference, &data).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The same run, killed during epoch 2: wait until epoch 1 is committed, then for about
    // half an epoch.
    let killed = tmp.path().join("killed");
    let mut child = train_cmd(&config, &killed, &data).spawn().unwrap();
    let start = Instant::now();
    while epochs_done(&killed) < 1 {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "epoch 1 never finished"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it was killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let first: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(reference.join("exp2/resume-test/seed3/metrics.jsonl"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let per_epoch = first["seconds"].as_f64().unwrap();
    assert!(per_epoch > 0.0);
    std::thread::sleep(Duration::from_secs_f64(per_epoch * 0.4));
    child.kill().unwrap();
    child.wait().unwrap();
    let done = epochs_done(&killed);
    assert!(
        (1..3).contains(&done),
        "the kill must land before the last epoch is committed (epochs done: {done})"
    );
    assert!(!run_dir(&killed).join("model.safetensors").exists());

    // Resume with the same command.
    let out = train_cmd(&config, &killed, &data).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(epochs_done(&killed), 3);

    let (a, b) = (
        metrics_without_seconds(&reference),
        metrics_without_seconds(&killed),
    );
    assert_eq!(a.len(), 3);
    assert_eq!(a, b, "metrics differ after resuming");
    for rel in [
        "model.safetensors",
        "checkpoint/epoch-0003/model.safetensors",
    ] {
        let x = std::fs::read(run_dir(&reference).join(rel)).unwrap();
        let y = std::fs::read(run_dir(&killed).join(rel)).unwrap();
        assert!(x == y, "{rel} differs after resuming");
    }
    // The optimiser file's header is a JSON map written in hash order by the nn crate, so
    // compare it as JSON and the tensor bytes exactly.
    let rel = "checkpoint/epoch-0003/optimizer.safetensors";
    let (hx, dx) = split_safetensors(&std::fs::read(run_dir(&reference).join(rel)).unwrap());
    let (hy, dy) = split_safetensors(&std::fs::read(run_dir(&killed).join(rel)).unwrap());
    assert_eq!(hx, hy, "optimizer header differs after resuming");
    assert!(dx == dy, "optimizer state differs after resuming");
    // Only the last epoch's checkpoint is kept.
    assert!(!run_dir(&killed).join("checkpoint/epoch-0002").exists());

    // A finished run is skipped: its files are not rewritten.
    let model = run_dir(&killed).join("model.safetensors");
    let before = std::fs::metadata(&model).unwrap().modified().unwrap();
    let out = train_cmd(&config, &killed, &data).output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        std::fs::metadata(&model).unwrap().modified().unwrap(),
        before
    );
}

#[test]
#[cfg_attr(
    specreg_no_mnist,
    ignore = "MNIST not found at build time (see the cargo warning): set SPECREG_DATA"
)]
fn a_different_config_in_the_same_folder_is_an_error() {
    let data = common::mnist();
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("a.toml");
    let short = CONFIG
        .replace("epochs = 3", "epochs = 1")
        .replace("train_subset = 4000", "train_subset = 500");
    std::fs::write(&config, &short).unwrap();
    let out_dir = tmp.path().join("out");
    let out = train_cmd(&config, &out_dir, &data).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&config, short.replace("lr = 1e-4", "lr = 2e-4")).unwrap();
    let out = train_cmd(&config, &out_dir, &data).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("holds a run of a different config"), "{err}");
}
