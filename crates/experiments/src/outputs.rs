//! Where results go, atomic writes, and the provenance every output records.
//!
//! Layout of one run: `<out>/<experiment>/<variant>/seed<k>/` holding `config.toml`,
//! `metrics.jsonl`, `model.safetensors`, `checkpoint/`, `spectrum.csv`, `robustness.csv`,
//! `summary.json` and `sensitivity.png`.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::config::Config;

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, synced, then
/// renamed over `path`. Readers see the old file or the new one, never a partial one.
///
/// # Errors
/// Any I/O error, naming the file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let result = (|| -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    Ok(())
}

/// Who produced an output: recorded in every file of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// The run's seed.
    pub seed: u64,
    /// The git commit of the source tree (`unknown` outside a checkout).
    pub commit: String,
    /// The device (`cpu`, `cuda:0`).
    pub device: String,
    /// Worker threads (rayon pool size).
    pub threads: usize,
}

impl Provenance {
    /// One line for CSV comments and image metadata.
    pub fn line(&self) -> String {
        format!(
            "seed={} commit={} device={} threads={}",
            self.seed, self.commit, self.device, self.threads
        )
    }
}

/// The commit of the checkout containing the current directory, read from `.git` without
/// running git (`SPECREG_COMMIT` wins when set); `unknown` if there is none.
pub fn git_commit() -> String {
    if let Ok(c) = std::env::var("SPECREG_COMMIT")
        && !c.trim().is_empty()
    {
        return c.trim().to_string();
    }
    let Ok(mut dir) = std::env::current_dir() else {
        return "unknown".into();
    };
    loop {
        let git = dir.join(".git");
        if git.is_dir() {
            return read_head(&git).unwrap_or_else(|| "unknown".into());
        }
        if !dir.pop() {
            return "unknown".into();
        }
    }
}

fn read_head(git: &Path) -> Option<String> {
    let head = std::fs::read_to_string(git.join("HEAD")).ok()?;
    let head = head.trim();
    let Some(reference) = head.strip_prefix("ref: ") else {
        return Some(head.to_string());
    };
    if let Ok(c) = std::fs::read_to_string(git.join(reference)) {
        return Some(c.trim().to_string());
    }
    let packed = std::fs::read_to_string(git.join("packed-refs")).ok()?;
    packed.lines().find_map(|l| {
        let (hash, name) = l.split_once(' ')?;
        (name == reference).then(|| hash.to_string())
    })
}

/// The files of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPaths {
    /// `<out>/<experiment>/<variant>/seed<k>`.
    pub dir: PathBuf,
}

impl RunPaths {
    /// The run folder of `config` with `seed` under `out`.
    pub fn new(out: &Path, config: &Config, seed: u64) -> RunPaths {
        RunPaths {
            dir: out
                .join(config.experiment.name())
                .join(&config.variant)
                .join(format!("seed{seed}")),
        }
    }

    /// The resolved config of the run.
    pub fn config(&self) -> PathBuf {
        self.dir.join("config.toml")
    }
    /// Per-epoch metrics, one JSON object a line.
    pub fn metrics(&self) -> PathBuf {
        self.dir.join("metrics.jsonl")
    }
    /// The final model (safetensors).
    pub fn model(&self) -> PathBuf {
        self.dir.join("model.safetensors")
    }
    /// The checkpoint folder (per-epoch model, optimiser and state).
    pub fn checkpoint_dir(&self) -> PathBuf {
        self.dir.join("checkpoint")
    }
    /// Eigenvalues of every hidden layer.
    pub fn spectrum(&self) -> PathBuf {
        self.dir.join("spectrum.csv")
    }
    /// Accuracy under FGSM, PGD and noise.
    pub fn robustness(&self) -> PathBuf {
        self.dir.join("robustness.csv")
    }
    /// Scalar results of the evaluation (JSON).
    pub fn summary(&self) -> PathBuf {
        self.dir.join("summary.json")
    }
    /// The sensitivity-map grid.
    pub fn sensitivity_png(&self) -> PathBuf {
        self.dir.join("sensitivity.png")
    }
    /// The raw sensitivity maps (rank, pixel values).
    pub fn sensitivity_csv(&self) -> PathBuf {
        self.dir.join("sensitivity.csv")
    }
}
