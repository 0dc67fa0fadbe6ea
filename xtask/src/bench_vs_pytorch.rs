//! `cargo xtask bench-vs-pytorch`: PyTorch's step times (`../shared/anchors/
//! pytorch_step_times.py`, in a local venv made on first use) and our criterion benches,
//! back to back in one sitting, as one table: both medians, their ratio, our FLOPs per step
//! and the fraction of the GEMM rate measured in the same sitting.
//!
//! Only a ratio from one sitting means anything on a shared machine, so the command always
//! runs both sides; `--only` narrows both to the rows whose name contains a substring.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::flops::{self, Row};

const USAGE: &str =
    "usage: cargo xtask bench-vs-pytorch [--threads N] [--steps N] [--only SUBSTRING]
                                   [--venv DIR] [--script FILE] [--out DIR]

  --threads N   threads on both sides (torch.set_num_threads, RAYON_NUM_THREADS); default 2
  --steps N     timed PyTorch steps per training case (median reported); default 5
  --openblas    our side built with the `openblas` feature (system OpenBLAS GEMM, LAPACK
                ?syevd) instead of the default faer build
  --only S      only the rows whose name contains S (e.g. mlp, cnn_spec, eigh)
  --venv DIR    the PyTorch venv; default $SPECREG_TORCH_VENV or ~/.cache/specreg/pytorch-venv,
                created with `python3 -m venv` + `pip install torch numpy` on first use
                (PyPI's Linux wheel of torch pulls its CUDA libraries: about 3 GB)
  --script FILE the PyTorch anchor; default ../shared/anchors/pytorch_step_times.py
  --out DIR     where the table (table.md) and the raw timings (timings.json) go;
                default target/bench-vs-pytorch";

/// The command line.
#[derive(Debug)]
struct Options {
    threads: usize,
    steps: usize,
    only: Option<String>,
    /// Our linear-algebra backend: "faer" (default) or "openblas".
    backend: &'static str,
    venv: PathBuf,
    script: PathBuf,
    out: PathBuf,
}

fn default_venv() -> PathBuf {
    if let Some(v) = std::env::var_os("SPECREG_TORCH_VENV") {
        return PathBuf::from(v);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("target"));
    cache.join("specreg").join("pytorch-venv")
}

fn parse(args: &[String], root: &Path) -> Result<Options> {
    let mut o = Options {
        threads: 2,
        steps: 5,
        only: None,
        backend: "faer",
        venv: default_venv(),
        script: root.join("../shared/anchors/pytorch_step_times.py"),
        out: root.join("target/bench-vs-pytorch"),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .with_context(|| format!("bench-vs-pytorch: {name} needs a value\n\n{USAGE}"))
        };
        let count = |name: &str, v: String| -> Result<usize> {
            match v.parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => bail!("bench-vs-pytorch: {name} must be a positive whole number, got {v:?}"),
            }
        };
        match a.as_str() {
            "--threads" => o.threads = count("--threads", value("--threads")?)?,
            "--steps" => o.steps = count("--steps", value("--steps")?)?,
            "--only" => o.only = Some(value("--only")?),
            "--openblas" => o.backend = "openblas",
            "--venv" => o.venv = PathBuf::from(value("--venv")?),
            "--script" => o.script = PathBuf::from(value("--script")?),
            "--out" => o.out = PathBuf::from(value("--out")?),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0)
            }
            other => bail!("bench-vs-pytorch: unknown option {other:?}\n\n{USAGE}"),
        }
    }
    if !o.script.is_file() {
        bail!(
            "bench-vs-pytorch: the PyTorch anchor {} is missing (pass --script FILE)",
            o.script.display()
        );
    }
    Ok(o)
}

/// The venv's python, after creating the venv if it has no importable torch. A failed
/// install leaves the half-made venv under `<venv>.partial`, never at `venv`.
fn python(venv: &Path) -> Result<PathBuf> {
    let py = venv.join("bin/python");
    let has_torch = |py: &Path| {
        Command::new(py)
            .args(["-c", "import torch"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if py.is_file() && has_torch(&py) {
        return Ok(py);
    }
    if venv.exists() {
        bail!(
            "bench-vs-pytorch: {} exists but `import torch` fails in it; remove it to have it \
             made again, or pass --venv DIR",
            venv.display()
        );
    }
    let partial = venv.with_extension("partial");
    if partial.exists() {
        std::fs::remove_dir_all(&partial)
            .with_context(|| format!("removing the unfinished venv {}", partial.display()))?;
    }
    if let Some(parent) = partial.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    eprintln!(
        "==> making the PyTorch venv {} (first use: `pip install torch numpy`, about 3 GB)",
        venv.display()
    );
    run(Command::new("python3").arg("-m").arg("venv").arg(&partial))?;
    run(Command::new(partial.join("bin/pip")).args([
        "install",
        "--progress-bar",
        "off",
        "torch",
        "numpy",
    ]))?;
    // Only `bin/python` is used, and a venv finds itself from that path, so the move is
    // safe (the pip script's shebang still names the `.partial` path).
    std::fs::rename(&partial, venv)
        .with_context(|| format!("moving {} to {}", partial.display(), venv.display()))?;
    if !has_torch(&py) {
        bail!(
            "bench-vs-pytorch: torch was installed into {} but does not import",
            venv.display()
        );
    }
    Ok(py)
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("could not start {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// PyTorch's GEMM rate at our GEMM bench's shapes, in the same sitting (median of 5).
const TORCH_GEMM: &str = r#"
import json, sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
for m, k, n in [(3500, 784, 2000), (1500, 1000, 1000), (6000, 800, 1000)]:
    a = torch.rand(m, k); b = torch.rand(k, n); a @ b
    ts = []
    for _ in range(5):
        t = time.perf_counter(); a @ b; ts.append(time.perf_counter() - t)
    ts.sort()
    print(json.dumps({"case": f"gemm/{m}x{k}x{n}", "ms": 1e3 * ts[2]}), flush=True)
"#;

/// Runs the PyTorch side; returns its JSON lines keyed by `case`.
fn pytorch(o: &Options, py: &Path) -> Result<BTreeMap<String, Value>> {
    let mut out = BTreeMap::new();
    let only = o.only.as_deref().and_then(flops::torch_filter);
    let mut anchor = Command::new(py);
    anchor
        .arg(&o.script)
        .args(["--threads", &o.threads.to_string()])
        .args(["--steps", &o.steps.to_string()]);
    if let Some(f) = &only {
        anchor.args(["--only", f]);
    }
    let mut gemm = Command::new(py);
    gemm.args(["-c", TORCH_GEMM, &o.threads.to_string()]);
    for mut cmd in [anchor, gemm] {
        eprintln!("==> {cmd:?}");
        let res = cmd
            .output()
            .with_context(|| format!("could not start {}", py.display()))?;
        if !res.status.success() {
            bail!(
                "PyTorch side failed with {}:\n{}",
                res.status,
                String::from_utf8_lossy(&res.stderr)
            );
        }
        for line in String::from_utf8_lossy(&res.stdout).lines() {
            let v: Value = serde_json::from_str(line)
                .with_context(|| format!("PyTorch printed a line that is not JSON: {line:?}"))?;
            let case = v["case"]
                .as_str()
                .with_context(|| format!("PyTorch line without a case: {line}"))?
                .to_string();
            eprintln!("    {line}");
            out.insert(case, v);
        }
    }
    Ok(out)
}

/// Runs our criterion benches that the rows need.
fn ours(o: &Options) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let only = o.only.as_deref();
    let mut runs: Vec<Vec<String>> = Vec::new();
    let train: Vec<&Row> = flops::rows()
        .iter()
        .filter(|r| r.bench.starts_with("train_step/"))
        .filter(|r| only.is_none_or(|s| r.name.contains(s)))
        .collect();
    if !train.is_empty() {
        let ids: Vec<&str> = train
            .iter()
            .map(|r| r.bench.rsplit('/').next().unwrap())
            .collect();
        runs.push(bench_args(
            &["--bench", "train_step"],
            &format!("({})$", ids.join("|")),
        ));
    }
    let anchor: Vec<&str> = flops::rows()
        .iter()
        .filter(|r| r.bench.starts_with("regularizer_cost/anchor/"))
        .filter(|r| only.is_none_or(|s| r.name.contains(s)))
        .map(|r| r.bench.rsplit('/').next().unwrap())
        .collect();
    if !anchor.is_empty() {
        runs.push(bench_args(
            &["--bench", "regularizer_cost"],
            &format!("^regularizer_cost/anchor/({})$", anchor.join("|")),
        ));
    }
    if only.is_none_or(|s| "pgd40_mlp_b1000".contains(s)) {
        runs.push(bench_args(
            &["-p", "specreg-attacks", "--bench", "pgd"],
            "^pgd/linf_40_steps_mlp_b1000_cpu$",
        ));
    }
    runs.push(bench_args(
        &["--bench", "linalg"],
        &format!("^gemm/{}/cpu/", o.backend),
    ));
    for args in runs {
        let args = with_backend(args, o.backend);
        eprintln!("==> cargo {}", args.join(" "));
        let status = Command::new(&cargo)
            .args(&args)
            .env("RAYON_NUM_THREADS", o.threads.to_string())
            .env("SPECREG_BENCH_DEVICE", "cpu")
            .status()
            .with_context(|| format!("could not start {cargo}"))?;
        if !status.success() {
            bail!("`cargo {}` failed with {status}", args.join(" "));
        }
    }
    Ok(())
}

/// `args` built on `backend`. The tensor crate's feature reaches every package's benches
/// (`-p specreg-attacks` has no `openblas` feature of its own), and the benches' ids name
/// the backend the tensor crate reports (`linalg::BACKEND`), so they always agree.
fn with_backend(mut args: Vec<String>, backend: &str) -> Vec<String> {
    if backend == "openblas" {
        args.splice(
            1..1,
            ["--features".into(), "specreg-tensor/openblas".into()],
        );
    }
    args
}

fn bench_args(select: &[&str], filter: &str) -> Vec<String> {
    let mut a: Vec<String> = vec!["bench".into()];
    a.extend(select.iter().map(|s| s.to_string()));
    a.extend(["--".into(), filter.into()]);
    a
}

/// Every criterion result under `dir` written at or after `since`: full id → median in
/// milliseconds. Older results (an earlier sitting, a manual `cargo bench`) are left out,
/// so a bench that did not run in this sitting is reported missing instead of being
/// quoted from another day.
fn criterion_medians(dir: &Path, since: SystemTime) -> Result<BTreeMap<String, f64>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "benchmark.json")
                && p.parent().is_some_and(|q| q.ends_with("new"))
            {
                let read = |p: &Path| -> Result<Value> {
                    let text = std::fs::read_to_string(p)
                        .with_context(|| format!("reading {}", p.display()))?;
                    serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))
                };
                let id = read(&p)?["full_id"]
                    .as_str()
                    .with_context(|| format!("{} has no full_id", p.display()))?
                    .to_string();
                let est_path = p.with_file_name("estimates.json");
                let written = std::fs::metadata(&est_path)
                    .and_then(|m| m.modified())
                    .with_context(|| format!("reading the time of {}", est_path.display()))?;
                if written < since {
                    continue;
                }
                let est = read(&est_path)?;
                let ns = est["median"]["point_estimate"]
                    .as_f64()
                    .with_context(|| format!("no median next to {}", p.display()))?;
                out.insert(id, ns / 1e6);
            }
        }
    }
    Ok(out)
}

pub fn bench_vs_pytorch(args: &[String]) -> Result<()> {
    let root = std::env::current_dir()?;
    let o = parse(args, &root)?;
    if let Some(s) = &o.only
        && !flops::rows().iter().any(|r| r.name.contains(s.as_str()))
    {
        let names: Vec<&str> = flops::rows().iter().map(|r| r.name).collect();
        bail!(
            "bench-vs-pytorch: --only {s:?} matches no row (rows: {})",
            names.join(", ")
        );
    }
    let py = python(&o.venv)?;
    let started = std::time::Instant::now();
    // Criterion writes a result's files when the bench ends; allow for file systems
    // whose times are coarser than the clock.
    let since = SystemTime::now() - Duration::from_secs(2);
    let torch = pytorch(&o, &py)?;
    ours(&o)?;
    let medians = criterion_medians(&root.join("target/criterion"), since)?;
    let table = flops::table(&torch, &medians, o.only.as_deref(), o.threads, o.backend)?;
    std::fs::create_dir_all(&o.out).with_context(|| format!("creating {}", o.out.display()))?;
    let raw = serde_json::json!({ "pytorch": torch, "ours_ms": medians, "threads": o.threads });
    write_atomic(
        &o.out.join("timings.json"),
        &serde_json::to_string_pretty(&raw)?,
    )?;
    write_atomic(&o.out.join("table.md"), &table)?;
    println!("{table}");
    eprintln!(
        "==> one sitting of {:.1} min; written to {}",
        started.elapsed().as_secs_f64() / 60.0,
        o.out.join("table.md").display()
    );
    Ok(())
}

fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A criterion result for `id` with median `ms`, its estimates written at `when`.
    fn result(dir: &Path, id: &str, ms: f64, when: SystemTime) {
        let new = dir.join(id.replace('/', "_")).join("new");
        std::fs::create_dir_all(&new).unwrap();
        std::fs::write(
            new.join("benchmark.json"),
            format!(r#"{{"full_id":"{id}"}}"#),
        )
        .unwrap();
        let est = new.join("estimates.json");
        let ns = ms * 1e6;
        std::fs::write(&est, format!(r#"{{"median":{{"point_estimate":{ns}}}}}"#)).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&est)
            .unwrap()
            .set_modified(when)
            .unwrap();
    }

    #[test]
    fn medians_leave_out_results_older_than_the_sitting() {
        let dir = std::env::temp_dir().join(format!("specreg-medians-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let now = SystemTime::now();
        let hour = Duration::from_secs(3600);
        result(&dir, "gemm/openblas/cpu/f32/1x1x1", 5.0, now - hour);
        result(&dir, "gemm/faer/cpu/f32/1x1x1", 2.5, now);
        let got = criterion_medians(&dir, now - Duration::from_secs(2)).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got["gemm/faer/cpu/f32/1x1x1"], 2.5);
    }

    #[test]
    fn openblas_reaches_the_tensor_crate_from_every_package() {
        let root = bench_args(&["--bench", "linalg"], "^gemm/");
        let attacks = bench_args(&["-p", "specreg-attacks", "--bench", "pgd"], "^pgd/");
        for args in [root, attacks] {
            let built = with_backend(args.clone(), "openblas");
            assert_eq!(built[1..3], ["--features", "specreg-tensor/openblas"]);
            assert_eq!(built[3..], args[1..]);
            assert_eq!(with_backend(args.clone(), "faer"), args);
        }
    }
}
