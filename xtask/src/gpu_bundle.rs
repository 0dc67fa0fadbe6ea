//! `cargo xtask gpu-bundle [--out DIR]`: everything a GPU machine without a Rust toolchain
//! or network needs to check the CUDA backend in one command.
//!
//! Builds here, with `--features cuda`: the `specreg` binary, the tensor crate's test
//! executables (every CUDA test, and the NVRTC compile test), the gradient checks of nn,
//! regularizers and attacks written for both devices, and the GPU benches (tensor
//! `cuda_ops`, root `train_step`, attacks `pgd`); strips and gzips them
//! and writes them to `target/gpu-bundle/` (under `CARGO_TARGET_DIR` when set, or `--out`) with the experiment configs, MNIST
//! (when it is at hand: `SPECREG_DATA` or `../shared/data/mnist`), a copy of
//! `../shared/anchors/pytorch_step_times.py` and `run.sh`. On the GPU machine,
//! `./run.sh OUT_DIR` finds the CUDA libraries in the Python venv that holds PyTorch
//! (`site-packages/nvidia/*/lib`) and the driver's `libcuda.so.1`, then within 9 minutes
//! runs the CUDA tests, the GPU benches, the PyTorch anchor on CUDA, the calibration of
//! one training step per network (`specreg list --device cuda`) and experiment 1 (quick
//! profile) on CUDA, and writes `OUT_DIR/summary.md` with every figure and failure. Where
//! a prerequisite is missing it says which and exits with status 2.
//!
//! The bundle must stay under 64 MiB; the command checks that and fails otherwise.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};

/// Largest bundle the GPU machine accepts.
const MAX_BYTES: u64 = 64 << 20;

/// The integration tests of the upper crates whose gradient checks are stamped for both
/// devices by `specreg_tensor::test_device!`, by package.
const DEVICE_TESTS: [(&str, &[&str]); 3] = [
    (
        "specreg-nn",
        &[
            "layers",
            "sequential",
            "loss",
            "batch_statistics",
            "logit_jacobian",
            "model",
        ],
    ),
    (
        "specreg-regularizers",
        &[
            "spectral",
            "whitening",
            "whitening_statistics",
            "jacobian",
            "jacobian_stack",
        ],
    ),
    ("specreg-attacks", &["losses", "sensitivity"]),
];

/// The `run.sh` written into the bundle.
const RUN_SH: &str = include_str!("gpu_bundle_run.sh");

/// Runs cargo with `args` and returns the `executable` paths its JSON messages name.
fn cargo_executables(args: &[&str]) -> Result<Vec<PathBuf>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("==> cargo {}", args.join(" "));
    let out = Command::new(&cargo)
        .args(args)
        .args(["--message-format", "json"])
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("could not start {cargo}"))?;
    ensure!(
        out.status.success(),
        "`cargo {}` failed with {}",
        args.join(" "),
        out.status
    );
    let text = String::from_utf8_lossy(&out.stdout);
    const KEY: &str = "\"executable\":\"";
    let mut exes: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| {
            let start = l.find(KEY)? + KEY.len();
            let end = l[start..].find('"')? + start;
            Some(PathBuf::from(&l[start..end]))
        })
        .collect();
    exes.sort();
    exes.dedup();
    Ok(exes)
}

/// `conv-7258d8cb2e54c668` → `conv`: the target name cargo hashed.
fn target_name(exe: &Path) -> String {
    let stem = exe
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    match stem.rsplit_once('-') {
        Some((name, hash)) if hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()) => {
            name.to_string()
        }
        _ => stem,
    }
}

/// Copies `src` to `dst`, strips its symbols and compresses it to `dst.gz` (about a third
/// of the size; `run.sh` unpacks it).
fn copy_stripped(src: &Path, dst: &Path) -> Result<()> {
    std::fs::copy(src, dst).with_context(|| format!("copying {}", src.display()))?;
    let status = Command::new("strip")
        .arg(dst)
        .status()
        .context("could not run `strip` (install binutils)")?;
    ensure!(status.success(), "strip {} failed", dst.display());
    let status = Command::new("gzip")
        .args(["-9", "-n", "-f"])
        .arg(dst)
        .status()
        .context("could not run `gzip`")?;
    ensure!(status.success(), "gzip {} failed", dst.display());
    Ok(())
}

fn copy_dir(src: &Path, dst: &Path) -> Result<()> {
    std::fs::create_dir_all(dst)?;
    for entry in std::fs::read_dir(src).with_context(|| format!("reading {}", src.display()))? {
        let entry = entry?;
        let to = dst.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &to)?;
        } else {
            std::fs::copy(entry.path(), &to)
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}

fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        total += if entry.file_type()?.is_dir() {
            dir_bytes(&entry.path())?
        } else {
            entry.metadata()?.len()
        };
    }
    Ok(total)
}

/// MNIST's four `.gz` files, if a folder holding them is at hand.
fn mnist_dir() -> Option<PathBuf> {
    let candidates = [
        std::env::var("SPECREG_DATA").ok().map(PathBuf::from),
        Some(PathBuf::from("../shared/data/mnist")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|d| d.join("train-images-idx3-ubyte.gz").exists())
}

/// `cargo xtask gpu-bundle [--out DIR]`.
pub fn gpu_bundle(args: &[String]) -> Result<()> {
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let out = match args {
        [] => PathBuf::from(target).join("gpu-bundle"),
        [flag, dir] if flag == "--out" => PathBuf::from(dir),
        _ => bail!("usage: cargo xtask gpu-bundle [--out DIR]"),
    };
    let anchor = Path::new("../shared/anchors/pytorch_step_times.py");
    ensure!(
        anchor.exists(),
        "{} is missing: the bundle carries a copy of the PyTorch anchor",
        anchor.display()
    );

    let specreg = cargo_executables(&[
        "build",
        "--release",
        "-p",
        "specreg-experiments",
        "--bin",
        "specreg",
        "--features",
        "cuda",
    ])?;
    let tests = cargo_executables(&[
        "test",
        "--release",
        "-p",
        "specreg-tensor",
        "--features",
        "cuda",
        "--no-run",
    ])?;
    let benches = cargo_executables(&[
        "bench",
        "-p",
        "specreg-tensor",
        "--features",
        "cuda",
        "--bench",
        "cuda_ops",
        "--no-run",
    ])?;
    // The training-step bench (root package) and the PGD bench (attacks, which has no
    // `cuda` feature of its own, so it is turned on in the tensor crate).
    let mut benches = benches;
    benches.extend(cargo_executables(&[
        "bench",
        "-p",
        "specreg",
        "--features",
        "cuda",
        "--bench",
        "train_step",
        "--no-run",
    ])?);
    benches.extend(cargo_executables(&[
        "bench",
        "-p",
        "specreg-attacks",
        "--features",
        "specreg-tensor/cuda",
        "--bench",
        "pgd",
        "--no-run",
    ])?);
    // The gradient checks of the upper crates, written for both devices (those crates
    // have no `cuda` feature of their own: it is turned on in the tensor crate).
    let mut tests = tests;
    for (package, names) in DEVICE_TESTS {
        let mut args = vec![
            "test",
            "--release",
            "-p",
            package,
            "--features",
            "specreg-tensor/cuda",
            "--no-run",
        ];
        for t in names {
            args.extend(["--test", t]);
        }
        tests.extend(cargo_executables(&args)?);
    }
    let specreg = specreg
        .iter()
        .find(|p| target_name(p) == "specreg")
        .context("cargo built no `specreg` executable")?;
    ensure!(!tests.is_empty(), "cargo built no test executables");
    ensure!(!benches.is_empty(), "cargo built no bench executable");

    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("removing {}", out.display()))?;
    }
    for sub in ["bin", "tests", "benches"] {
        std::fs::create_dir_all(out.join(sub))?;
    }
    copy_stripped(specreg, &out.join("bin").join("specreg"))?;
    for exe in &tests {
        let name = target_name(exe);
        // tests/common.rs is a helper module that cargo also builds as an empty test.
        if name != "common" {
            let dst = out.join("tests").join(&name);
            ensure!(
                !dst.with_extension("gz").exists(),
                "two test targets are named {name}: rename one"
            );
            copy_stripped(exe, &dst)?;
        }
    }
    for exe in &benches {
        copy_stripped(exe, &out.join("benches").join(target_name(exe)))?;
    }
    copy_dir(Path::new("configs"), &out.join("configs"))?;
    std::fs::copy(anchor, out.join("pytorch_step_times.py"))?;
    match mnist_dir() {
        Some(d) => copy_dir(&d, &out.join("data").join("mnist"))?,
        None => eprintln!(
            "==> warning: MNIST not found (SPECREG_DATA or ../shared/data/mnist): run.sh will \
             need SPECREG_DATA on the GPU machine"
        ),
    }
    let run = out.join("run.sh");
    std::fs::write(&run, RUN_SH)?;
    let status = Command::new("chmod").arg("+x").arg(&run).status()?;
    ensure!(status.success(), "chmod +x {}", run.display());

    let bytes = dir_bytes(&out)?;
    let mib = bytes as f64 / (1 << 20) as f64;
    ensure!(
        bytes <= MAX_BYTES,
        "the bundle is {mib:.1} MiB, over the 64 MiB limit"
    );
    eprintln!(
        "==> {} ({mib:.1} MiB): copy it to the GPU machine and run `./run.sh OUT_DIR` there",
        out.display()
    );
    Ok(())
}
