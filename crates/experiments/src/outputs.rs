//! Where results go, atomic writes, and the provenance every output records.
//!
//! Layout of one run: `<out>/<experiment>/<variant>/seed<k>/` holding `config.toml`,
//! `metrics.jsonl`, `model.safetensors`, `checkpoint/`, `spectrum.csv`, `robustness.csv`,
//! `summary.json` and `sensitivity.png`.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::config::Config;

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, synced, then
/// renamed over `path`. Readers see the old file or the new one, never a partial one.
///
/// The temporary name ([`temp_path`]) is unique to this host, process and write, so
/// processes on several machines sharing a results folder (NFS) never write into each
/// other's temporary files. Nothing is locked; a temporary file left by a crash is
/// removed by [`remove_stale_temps`] when its run is next touched.
///
/// # Errors
/// Any I/O error, naming the file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = temp_path(path);
    let result = (|| -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        // In two halves, so that the kill-anywhere test can end the process in between.
        let (first, second) = bytes.split_at(bytes.len() / 2);
        f.write_all(first)?;
        f.flush()?;
        crate::kill_points::mid_write(path);
        f.write_all(second)?;
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

/// This machine's host name, reduced to `[A-Za-z0-9_-]` (for temporary file names).
pub fn host_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let clean: String = host
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() {
        "host".into()
    } else {
        clean
    }
}

/// `<path>.<host>-<pid>-<n>.tmp`: the temporary file of one [`write_atomic`] call.
pub fn temp_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(format!(".{}-{}-{n}.tmp", host_name(), std::process::id()));
    PathBuf::from(tmp)
}

/// Temporary files older than this are stale whoever wrote them.
const STALE_AGE: Duration = Duration::from_secs(24 * 3600);

/// Removes temporary files (`*.tmp`) in `dir` and its sub-folders (two levels) that no
/// live writer owns: those of [`temp_path`] written on this host by a process that has
/// exited, and any older than a day (another host's, or the fixed-name ones of model
/// checkpoints). Returns how many were removed; unreadable folders are skipped.
pub fn remove_stale_temps(dir: &Path) -> usize {
    fn walk(dir: &Path, depth: usize, host: &str, removed: &mut usize) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                if depth > 0 {
                    walk(&p, depth - 1, host, removed);
                }
                continue;
            }
            let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if !name.ends_with(".tmp") {
                continue;
            }
            let old = meta
                .modified()
                .ok()
                .and_then(|m| m.elapsed().ok())
                .is_some_and(|age| age > STALE_AGE);
            let dead_here = temp_owner(name)
                .is_some_and(|(h, pid)| h == host && !Path::new(&format!("/proc/{pid}")).exists());
            if (old || dead_here) && std::fs::remove_file(&p).is_ok() {
                *removed += 1;
            }
        }
    }
    let mut removed = 0;
    walk(dir, 2, &host_name(), &mut removed);
    removed
}

/// The host and process id in a [`temp_path`] file name.
fn temp_owner(name: &str) -> Option<(&str, u32)> {
    let stem = name.strip_suffix(".tmp")?;
    let (_, tag) = stem.rsplit_once('.')?;
    let mut parts = tag.rsplitn(3, '-');
    let _n: u64 = parts.next()?.parse().ok()?;
    let pid: u32 = parts.next()?.parse().ok()?;
    Some((parts.next()?, pid))
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
    /// The CPU kernels that ran ([`specreg_tensor::linalg::cpu_kernels`]): with the same
    /// config, seed and thread count, two machines give the same bits only if this is the
    /// same. `unknown` in files written before it was recorded.
    #[serde(default = "unknown")]
    pub cpu_kernels: String,
}

fn unknown() -> String {
    "unknown".into()
}

impl Provenance {
    /// One line for CSV comments and image metadata.
    pub fn line(&self) -> String {
        format!(
            "seed={} commit={} device={} threads={} cpu_kernels={}",
            self.seed, self.commit, self.device, self.threads, self.cpu_kernels
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_unique_and_parse_back() {
        let a = temp_path(Path::new("/r/summary.json"));
        let b = temp_path(Path::new("/r/summary.json"));
        assert_ne!(a, b);
        let name = a.file_name().unwrap().to_str().unwrap().to_string();
        assert!(name.starts_with("summary.json.") && name.ends_with(".tmp"));
        let (host, pid) = temp_owner(&name).unwrap();
        assert_eq!(host, host_name());
        assert_eq!(pid, std::process::id());
        assert_eq!(temp_owner("model.safetensors.tmp"), None);
        assert_eq!(temp_owner("x.json.my-host-12-3.tmp"), Some(("my-host", 12)));
    }

    #[test]
    fn removes_only_temps_of_dead_writers() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("seed0");
        std::fs::create_dir_all(run.join("checkpoint")).unwrap();
        let host = host_name();
        // A process id above the kernel's maximum cannot be alive.
        let dead = run.join(format!("summary.json.{host}-4294967294-0.tmp"));
        let nested = run.join(format!("checkpoint/state.json.{host}-4294967294-1.tmp"));
        let live = run.join(format!("metrics.jsonl.{host}-{}-0.tmp", std::process::id()));
        let other = run.join("metrics.jsonl.otherhost-1-0.tmp");
        let fresh = run.join("model.safetensors.tmp");
        for p in [&dead, &nested, &live, &other, &fresh] {
            std::fs::write(p, b"x").unwrap();
        }
        write_atomic(&run.join("summary.json"), b"{}").unwrap();
        assert_eq!(remove_stale_temps(dir.path()), 2);
        assert!(!dead.exists() && !nested.exists());
        assert!(live.exists() && other.exists() && fresh.exists());
        assert_eq!(std::fs::read(run.join("summary.json")).unwrap(), b"{}");
        // write_atomic leaves nothing behind: the temps left are the three kept above.
        let mut temps: Vec<String> = std::fs::read_dir(&run)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        temps.sort();
        let mut expected: Vec<String> = [&live, &other, &fresh]
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        expected.sort();
        assert_eq!(temps, expected);
    }
}
