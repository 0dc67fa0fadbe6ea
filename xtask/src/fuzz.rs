//! `cargo xtask fuzz`: builds the cargo-fuzz targets under `fuzz/`, writes their seed
//! corpora from real files, and runs each target for a while.
//!
//! On the stable toolchain: `cargo fuzz build --sanitizer none` needs no nightly flag, so
//! that is the default; `--asan` builds with AddressSanitizer, whose `-Zsanitizer` flag
//! stable accepts only with `RUSTC_BOOTSTRAP=1`, which this task then sets. Either way
//! cargo-fuzz itself is needed: `cargo install cargo-fuzz --locked`.
//!
//! Seeds (`fuzz/corpus/<target>/seed-*`, git-ignored, never committed):
//! - `idx`, `idx_gzip`: the first images and labels of the real MNIST (found through
//!   `--data` or `SPECREG_DATA`), with a correct header, raw and gzip-compressed;
//! - checkpoints, optimiser states, `metrics.jsonl`, `state.json`, `summary.json` and
//!   `robustness.csv`: the files of a tiny real `specreg run` (one shallow, one MLP and one
//!   CNN config, a minute or two) under `fuzz/target/seed-run`;
//! - `config` and `profile`: every file under `configs/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use specreg_data::{IdxArray, read_idx, write_idx};

/// Every fuzz target (a `[[bin]]` of `fuzz/Cargo.toml`).
pub const TARGETS: &[&str] = &[
    "idx",
    "idx_gzip",
    "checkpoint_shallow",
    "checkpoint_mlp",
    "checkpoint_cnn",
    "optimizer",
    "config",
    "profile",
    "metrics",
    "run_state",
    "summary",
    "robustness",
];

/// The tiny configs of the seed run: (file stem, model, experiment).
const SEED_RUNS: &[(&str, &str, &str)] = &[
    ("shallow", "shallow", "exp1"),
    ("mlp", "mlp", "exp2"),
    ("cnn", "cnn", "exp2"),
];

fn seed_config(model: &str, experiment: &str) -> String {
    format!(
        r#"experiment = "{experiment}"
variant = "fuzz-seed-{model}"
seeds = [0]

[model]
kind = "{model}"

[train]
epochs = 1
batch_size = 100
lr = 1e-4
train_subset = 300
min_batch_ratio = 0.0

[eval]
test_subset = 100
batch_size = 100
fgsm_eps = [0.0, 0.1]
pgd_eps = [0.0, 0.1]
pgd_steps = 2
noise_sigma = [0.0, 0.5]
strong_eps = [0.1]
apgd_steps = 2
spectrum_images = 300
sensitivity_images = 100
"#
    )
}

struct Options {
    seconds: u64,
    targets: Vec<String>,
    asan: bool,
    build_only: bool,
    data: Option<PathBuf>,
    /// Where cargo builds the targets (default `fuzz/target`); CI keeps one outside its
    /// fresh clone so that the instrumented build is reused between runs.
    target_dir: Option<PathBuf>,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options {
        seconds: 20,
        targets: Vec::new(),
        asan: false,
        build_only: false,
        data: std::env::var_os("SPECREG_DATA").map(PathBuf::from),
        target_dir: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--seconds" => {
                let v = value()?;
                o.seconds = v
                    .parse()
                    .ok()
                    .filter(|&s| s > 0)
                    .with_context(|| format!("--seconds: {v:?} is not a positive integer"))?;
            }
            "--target" => {
                let t = value()?;
                if !TARGETS.contains(&t.as_str()) {
                    bail!(
                        "--target: unknown target {t:?}; targets: {}",
                        TARGETS.join(", ")
                    );
                }
                o.targets.push(t.clone());
            }
            "--data" => o.data = Some(PathBuf::from(value()?)),
            "--asan" => o.asan = true,
            "--build-only" => o.build_only = true,
            "--target-dir" => o.target_dir = Some(PathBuf::from(value()?)),
            other => bail!(
                "fuzz: unknown option {other:?}\n\nusage: cargo xtask fuzz [--seconds N] \
                 [--target NAME]... [--data DIR] [--asan] [--build-only] [--target-dir DIR]"
            ),
        }
    }
    if o.targets.is_empty() {
        o.targets = TARGETS.iter().map(|t| t.to_string()).collect();
    }
    Ok(o)
}

/// `cargo fuzz <sub> <flags> [rest]` in `fuzz/`.
fn cargo_fuzz(root: &Path, sub: &str, o: &Options, rest: &[String]) -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut c = Command::new(cargo);
    c.current_dir(root.join("fuzz")).args(["fuzz", sub, "-O"]);
    if let Some(dir) = &o.target_dir {
        c.arg("--target-dir").arg(dir);
    }
    let asan = o.asan;
    if asan {
        c.env("RUSTC_BOOTSTRAP", "1");
    } else {
        c.args(["--sanitizer", "none"]);
    }
    c.args(rest);
    c
}

fn status(mut c: Command, what: &str) -> Result<bool> {
    eprintln!("==> {what}");
    Ok(c.status()
        .with_context(|| format!("starting {what}"))?
        .success())
}

pub fn fuzz(args: &[String]) -> Result<()> {
    let o = parse(args)?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let root = root.canonicalize().context("the repository root")?;
    let probe = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["fuzz", "--version"])
        .output();
    if !probe.is_ok_and(|p| p.status.success()) {
        bail!("cargo-fuzz is not installed: cargo install cargo-fuzz --locked");
    }
    let start = Instant::now();
    let mut build = cargo_fuzz(&root, "build", &o, &[]);
    if o.targets.len() == 1 {
        build.arg(&o.targets[0]);
    }
    if !status(build, "cargo fuzz build")? {
        bail!("building the fuzz targets failed");
    }
    eprintln!("==> built in {:.0} s", start.elapsed().as_secs_f64());
    if o.build_only {
        return Ok(());
    }
    let mut seeds = Seeds::new(&root, o.data.clone());
    let mut failed = Vec::new();
    for t in &o.targets {
        let corpus = root.join("fuzz/corpus").join(t);
        seeds.write(t, &corpus)?;
        let rest = vec![
            t.clone(),
            corpus.display().to_string(),
            "--".into(),
            format!("-max_total_time={}", o.seconds),
        ];
        let run = cargo_fuzz(&root, "run", &o, &rest);
        if !status(run, &format!("fuzz {t} for {} s", o.seconds))? {
            failed.push(t.clone());
        }
    }
    if !failed.is_empty() {
        bail!(
            "fuzz targets failed: {} (inputs under fuzz/artifacts/<target>/)",
            failed.join(", ")
        );
    }
    Ok(())
}

/// Writes the seed corpora, running the seed training run at most once.
struct Seeds {
    root: PathBuf,
    data: Option<PathBuf>,
    run: Option<PathBuf>,
}

impl Seeds {
    fn new(root: &Path, data: Option<PathBuf>) -> Seeds {
        Seeds {
            root: root.to_path_buf(),
            data,
            run: None,
        }
    }

    fn mnist(&self) -> Result<&Path> {
        self.data.as_deref().context(
            "the IDX and results seeds are cut from the real MNIST: pass --data DIR or set \
             SPECREG_DATA",
        )
    }

    /// The results folder of the tiny seed run.
    fn results(&mut self) -> Result<PathBuf> {
        if let Some(r) = &self.run {
            return Ok(r.clone());
        }
        let base = self.root.join("fuzz/target/seed-run");
        let out = base.join("results");
        let done = SEED_RUNS.iter().all(|(stem, _, exp)| {
            let run = out.join(exp).join(format!("fuzz-seed-{stem}/seed0"));
            run.join("summary.json").is_file()
        });
        if !done {
            let data = self.mnist()?.to_path_buf();
            std::fs::create_dir_all(&base)?;
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut c = Command::new(cargo);
            c.current_dir(&self.root).args([
                "run",
                "--release",
                "-p",
                "specreg-experiments",
                "--bin",
                "specreg",
                "--",
                "run",
                "--quiet",
            ]);
            for (stem, model, exp) in SEED_RUNS {
                let file = base.join(format!("{stem}.toml"));
                std::fs::write(&file, seed_config(model, exp))?;
                c.arg("--config").arg(file);
            }
            c.arg("--out").arg(&out).arg("--data").arg(data);
            if !status(c, "the seed run (specreg run of three tiny configs)")? {
                bail!("the seed run failed");
            }
        }
        self.run = Some(out.clone());
        Ok(out)
    }

    fn write(&mut self, target: &str, corpus: &Path) -> Result<()> {
        std::fs::create_dir_all(corpus)?;
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        let runs = |s: &mut Self| -> Result<Vec<(String, PathBuf)>> {
            let out = s.results()?;
            Ok(SEED_RUNS
                .iter()
                .map(|(stem, _, exp)| {
                    let d = out.join(exp).join(format!("fuzz-seed-{stem}/seed0"));
                    (stem.to_string(), d)
                })
                .collect())
        };
        let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
        match target {
            "idx" | "idx_gzip" => {
                for (name, arr) in mnist_cuts(self.mnist()?)? {
                    let raw = corpus.join(format!("seed-{name}"));
                    write_idx(&raw, &arr, false)?;
                    if target == "idx" {
                        write_idx(&corpus.join(format!("seed-{name}.gz")), &arr, true)?;
                    }
                }
            }
            t if t.starts_with("checkpoint_") => {
                let arch = t.trim_start_matches("checkpoint_");
                for (stem, d) in runs(self)? {
                    if stem == arch {
                        files.push((
                            "model.safetensors".into(),
                            read(&d.join("model.safetensors"))?,
                        ));
                    }
                }
            }
            "optimizer" | "metrics" | "run_state" | "summary" | "robustness" => {
                let rel = match target {
                    "optimizer" => "checkpoint/epoch-0001/optimizer.safetensors",
                    "metrics" => "metrics.jsonl",
                    "run_state" => "checkpoint/state.json",
                    "summary" => "summary.json",
                    _ => "robustness.csv",
                };
                for (stem, d) in runs(self)? {
                    let name = Path::new(rel).file_name().unwrap().to_string_lossy();
                    files.push((format!("{stem}-{name}"), read(&d.join(rel))?));
                }
            }
            "config" | "profile" => {
                let configs = self.root.join("configs");
                let mut stack = vec![configs.clone()];
                while let Some(dir) = stack.pop() {
                    for e in std::fs::read_dir(&dir)? {
                        let p = e?.path();
                        let in_profiles = p.starts_with(configs.join("profiles"));
                        if p.is_dir() {
                            stack.push(p);
                        } else if in_profiles == (target == "profile") {
                            let rel = p.strip_prefix(&configs).unwrap().display().to_string();
                            files.push((rel.replace('/', "-"), read(&p)?));
                        }
                    }
                }
            }
            other => bail!("no seeds for {other}"),
        }
        for (name, bytes) in files {
            std::fs::write(corpus.join(format!("seed-{name}")), bytes)?;
        }
        Ok(())
    }
}

/// Small, valid IDX arrays cut from the real MNIST: the first 3 test images and labels.
fn mnist_cuts(dir: &Path) -> Result<Vec<(String, IdxArray)>> {
    let mut out = Vec::new();
    for (file, dims) in [
        ("t10k-images-idx3-ubyte", vec![3usize, 28, 28]),
        ("t10k-labels-idx1-ubyte", vec![3]),
    ] {
        let path = [dir.join(file), dir.join(format!("{file}.gz"))]
            .into_iter()
            .find(|p| p.is_file())
            .with_context(|| format!("{file}(.gz) is not in {}", dir.display()))?;
        let full = read_idx(&path)?;
        let n: usize = dims.iter().product();
        let data = full.data.get(..n).context("MNIST file too short")?.to_vec();
        out.push((file.to_string(), IdxArray { dims, data }));
    }
    Ok(out)
}
