//! Developer tasks: `cargo xtask ci` runs exactly what `.ci/run` runs.

use std::process::Command;

use anyhow::{Context, Result, bail};

const USAGE: &str = "usage: cargo xtask <ci | lint | test | extra>

  ci     lint, test and extra in that order: exactly the steps of .ci/run
  lint   cargo fmt --check, clippy -D warnings on all targets with and without --features cuda
  test   the README's test command: cargo test --workspace --release
  extra  the tensor tests again with --features openblas, and cargo bench --no-run";

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

fn main() -> Result<()> {
    let task = std::env::args().nth(1);
    match task.as_deref() {
        Some("ci") => lint()
            .and_then(|_| cargo(TEST_COMMAND))
            .and_then(|_| extra()),
        Some("extra") => extra(),
        Some("lint") => lint(),
        Some("test") => cargo(TEST_COMMAND),
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2)
        }
    }
}
