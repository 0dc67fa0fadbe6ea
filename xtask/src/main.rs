//! Developer tasks: `cargo xtask ci` runs what `.ci/run` runs, but for its CUDA and fuzz
//! steps, which install the NVRTC wheel and cargo-fuzz.

use std::process::Command;

use anyhow::{Context, Result, bail};

mod bench_vs_pytorch;
mod flops;
mod fuzz;
mod gpu_bundle;

const USAGE: &str =
    "usage: cargo xtask <ci | lint | test | smoke | extra | slurm | reproduce | gpu-bundle | fuzz |
                     bench-vs-pytorch>

  ci         lint, test, smoke, extra and (as root, with slurm-wlm installed) slurm in that
             order: the steps of .ci/run but its last two, which install things (the NVRTC
             wheel for the CUDA compile check, cargo-fuzz for `fuzz --seconds 10`)
  smoke      reproduce --profile smoke --out target/ci-smoke --quiet (every code path, ~1 min)
  lint       cargo fmt --check, clippy -D warnings on all targets with and without --features cuda
  test       the README's test command: cargo test --workspace --release
  extra      the tensor tests again with --features openblas, and cargo bench --no-run
  slurm      the Slurm test: a private one-node slurm-wlm cluster runs the smoke profile as a
             3-task job array plus the report job and must match a single-process run
             (needs root, apt-get install slurm-wlm munge, and SPECREG_DATA; ~2.5 min)
  reproduce  [--profile smoke|quick|paper] [--only exp1,exp2,exp3] [--device D] [--data DIR]
             [--out DIR] [--threads N] [--shard K/N] [--quiet]
             train, evaluate and report experiments 1-3 (default profile: paper, out: results);
             re-running resumes after a kill; --shard runs share K of N of the runs
  gpu-bundle [--out DIR]  build the CUDA check for a GPU machine into target/gpu-bundle:
             stripped --features cuda binaries (specreg, tensor tests, GPU bench) and a
             run.sh that runs them, the PyTorch anchor and experiment 1 there in < 9 min
  fuzz       [--seconds N] [--target NAME]... [--data DIR] [--asan] [--build-only]
             [--target-dir DIR]
             build the cargo-fuzz targets (stable: --sanitizer none; --asan sets
             RUSTC_BOOTSTRAP=1), write seed corpora from real files and run each for N s
  bench-vs-pytorch [--threads N] [--steps N] [--only S] [--venv DIR] [--script FILE] [--out DIR]
             PyTorch's anchor (../shared/anchors/pytorch_step_times.py, in a venv made on first
             use: ~3 GB) and our criterion benches back to back: a table of both medians,
             the ratio, our FLOPs and GEMM-rate fraction per row (~10 min; not in CI)";

/// The Slurm test (ignored in the plain test run: it needs root and slurm-wlm).
pub const SLURM_TEST: &[&str] = &[
    "test",
    "--release",
    "-p",
    "specreg-experiments",
    "--test",
    "slurm",
    "--",
    "--ignored",
];

/// The README's test command (release mode: the real-MNIST checks train networks).
pub const TEST_COMMAND: &[&str] = &["test", "--workspace", "--release"];

fn cargo(args: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("==> cargo {}", args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
        .status()
        .with_context(|| format!("could not start {cargo}"))?;
    if !status.success() {
        bail!("`cargo {}` failed with {status}", args.join(" "));
    }
    Ok(())
}

fn lint() -> Result<()> {
    cargo(&["fmt", "--all", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--features",
        "cuda",
        "--",
        "-D",
        "warnings",
    ])
}

fn openblas_available() -> bool {
    [
        "/usr/lib/x86_64-linux-gnu/libopenblas.so",
        "/usr/lib/aarch64-linux-gnu/libopenblas.so",
        "/usr/lib/libopenblas.so",
    ]
    .iter()
    .any(|p| std::path::Path::new(p).exists())
}

fn extra() -> Result<()> {
    if openblas_available() {
        cargo(&[
            "test",
            "--release",
            "-p",
            "specreg-tensor",
            "--features",
            "openblas",
        ])?;
    } else {
        bail!(
            "libopenblas is not installed (apt-get install libopenblas-dev); .ci/run installs it"
        );
    }
    cargo(&["bench", "--workspace", "--no-run"])
}

/// `cargo xtask reproduce [options]`: builds `specreg` in release mode and runs
/// `specreg run` with the chosen profile; every option is passed through.
fn reproduce(args: &[String]) -> Result<()> {
    let mut profile = "paper".to_string();
    let mut pass: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (key, inline) = match a.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (a.clone(), None),
        };
        match key.as_str() {
            "--quiet" | "-q" => pass.push("--quiet".into()),
            "--profile" | "--only" | "--device" | "--data" | "--out" | "--threads" | "--shard" => {
                let value = match inline {
                    Some(v) => v,
                    None => it
                        .next()
                        .cloned()
                        .with_context(|| format!("{key} needs a value"))?,
                };
                if key == "--profile" {
                    if !["smoke", "quick", "paper"].contains(&value.as_str())
                        && !value.ends_with(".toml")
                    {
                        bail!(
                            "--profile must be smoke, quick, paper or a .toml file, got {value:?}"
                        );
                    }
                    profile = value;
                } else {
                    pass.push(key);
                    pass.push(value);
                }
            }
            other => bail!("reproduce: unknown option {other:?}\n\n{USAGE}"),
        }
    }
    let mut cmd: Vec<String> = [
        "run",
        "--release",
        "--package",
        "specreg-experiments",
        "--bin",
        "specreg",
        "--",
        "run",
        "--profile",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    cmd.push(profile);
    cmd.extend(pass);
    let refs: Vec<&str> = cmd.iter().map(String::as_str).collect();
    cargo(&refs)
}

/// The main job's smoke profile, run the way a user runs it, into `target/ci-smoke`
/// (about a minute; it needs MNIST through `SPECREG_DATA` or the cache).
fn smoke() -> Result<()> {
    let out = std::path::Path::new("target").join("ci-smoke");
    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("removing {}", out.display()))?;
    }
    reproduce(&[
        "--profile".into(),
        "smoke".into(),
        "--out".into(),
        out.display().to_string(),
        "--quiet".into(),
    ])
}

/// The Slurm test, as `.ci/run` runs it: only as root with slurm-wlm installed.
fn slurm_if_available() -> Result<()> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let installed = ["/usr/sbin/slurmctld", "/usr/bin/slurmctld"]
        .iter()
        .any(|p| std::path::Path::new(p).exists());
    if root && installed {
        cargo(SLURM_TEST)
    } else {
        eprintln!(
            "==> skipping the Slurm test: it needs root and slurm-wlm + munge \
             (.ci/run installs them)"
        );
        Ok(())
    }
}

fn main() -> Result<()> {
    let task = std::env::args().nth(1);
    match task.as_deref() {
        Some("ci") => lint()
            .and_then(|_| cargo(TEST_COMMAND))
            .and_then(|_| smoke())
            .and_then(|_| extra())
            .and_then(|_| slurm_if_available()),
        Some("extra") => extra(),
        Some("slurm") => cargo(SLURM_TEST),
        Some("smoke") => smoke(),
        Some("lint") => lint(),
        Some("test") => cargo(TEST_COMMAND),
        Some("gpu-bundle") => {
            let rest: Vec<String> = std::env::args().skip(2).collect();
            gpu_bundle::gpu_bundle(&rest)
        }
        Some("fuzz") => {
            let rest: Vec<String> = std::env::args().skip(2).collect();
            fuzz::fuzz(&rest)
        }
        Some("bench-vs-pytorch") => {
            let rest: Vec<String> = std::env::args().skip(2).collect();
            bench_vs_pytorch::bench_vs_pytorch(&rest)
        }
        Some("reproduce") => {
            let rest: Vec<String> = std::env::args().skip(2).collect();
            reproduce(&rest)
        }
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2)
        }
    }
}
