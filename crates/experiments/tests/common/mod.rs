//! Shared by the sharding and Slurm tests: running `specreg`, and comparing two results
//! folders byte for byte apart from timing fields.
//!
//! Timing fields: `seconds` in every line of `metrics.jsonl` (wall time of an epoch), the
//! `timing*.json` files (estimate against measurement), and the run checkpoints
//! (`checkpoint/state.json` repeats the metrics, seconds included). Scheduler files
//! (`slurm/`: scripts and logs) exist only in a Slurm run. Everything else — `REPORT.md`,
//! the figures, every run's config, metrics, model, robustness, spectrum, sensitivity and
//! summary files — must be identical.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// MNIST as this crate's build script found it (`SPECREG_DATA`, the per-user cache, a
/// download: see `specreg_data::testing`), or `None` if it found none. A test that needs
/// MNIST must then be ignored: it carries
/// `#[cfg_attr(specreg_no_mnist, ignore = "MNIST not found at build time (see the cargo
/// warning): set SPECREG_DATA")]`. Panics if the folder found no longer holds the files.
pub fn data() -> Option<PathBuf> {
    (!cfg!(specreg_no_mnist)).then(mnist)
}

/// [`data`] for a test that cannot run without MNIST: panics, saying where the build
/// script looked, if there was none.
pub fn mnist() -> PathBuf {
    specreg_data::test_mnist_dir!()
}

/// The repository's `configs/` folder.
pub fn configs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../configs")
        .canonicalize()
        .unwrap()
}

/// `specreg <args>` in `cwd`, with a fixed commit and a private calibration cache.
pub fn specreg(cwd: &Path, cache: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_specreg"));
    c.current_dir(cwd)
        .args(args)
        .env("SPECREG_COMMIT", "shard-test")
        .env("XDG_CACHE_HOME", cache);
    c
}

/// Runs `cmd` and panics with its output unless it succeeds.
pub fn ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn skipped(rel: &Path) -> bool {
    let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
    rel.components().any(|c| {
        let c = c.as_os_str();
        c == "checkpoint" || c == "slurm"
    }) || (name.starts_with("timing") && name.ends_with(".json"))
}

fn files(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            if skipped(&rel) {
                continue;
            }
            if p.is_dir() {
                walk(&p, root, out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// `metrics.jsonl` with the `seconds` of every line removed.
fn metrics_without_seconds(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            if let Some(o) = v.as_object_mut() {
                o.remove("seconds");
            }
            v
        })
        .collect()
}

/// Every difference between results folders `a` and `b` apart from timing fields (empty:
/// identical). Also checks that `a` holds `REPORT.md` and at least `min_runs` summaries.
pub fn differences(a: &Path, b: &Path, min_runs: usize) -> Vec<String> {
    let (fa, fb) = (files(a), files(b));
    let mut diffs = Vec::new();
    for f in fa.iter().filter(|f| !fb.contains(f)) {
        diffs.push(format!("only in {}: {}", a.display(), f.display()));
    }
    for f in fb.iter().filter(|f| !fa.contains(f)) {
        diffs.push(format!("only in {}: {}", b.display(), f.display()));
    }
    for f in fa.iter().filter(|f| fb.contains(f)) {
        let (pa, pb) = (a.join(f), b.join(f));
        let same = if f.file_name().is_some_and(|n| n == "metrics.jsonl") {
            metrics_without_seconds(&pa) == metrics_without_seconds(&pb)
        } else {
            std::fs::read(&pa).unwrap() == std::fs::read(&pb).unwrap()
        };
        if !same {
            diffs.push(format!("differs: {}", f.display()));
        }
    }
    if !fa.iter().any(|f| f == Path::new("REPORT.md")) {
        diffs.push(format!("{} has no REPORT.md", a.display()));
    }
    let summaries = fa.iter().filter(|f| f.ends_with("summary.json")).count();
    if summaries < min_runs {
        diffs.push(format!(
            "only {summaries} evaluated runs, expected {min_runs}"
        ));
    }
    diffs
}

/// Temporary files (`*.tmp`) anywhere under `dir`.
pub fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "tmp") {
                out.push(p);
            }
        }
    }
    out
}
