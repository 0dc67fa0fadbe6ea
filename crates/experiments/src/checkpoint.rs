//! Per-epoch checkpoints and resuming.
//!
//! After every epoch the runner writes, in this order:
//! 1. `checkpoint/epoch-NNNN/model.safetensors` (weights and BatchNorm buffers),
//! 2. `checkpoint/epoch-NNNN/optimizer.safetensors` (Adam moments and step counts),
//! 3. `checkpoint/state.json` — the commit point: the epoch reached, the run's random
//!    generator state, the metrics so far and the run's status.
//!
//! Every file is written atomically (temp + rename), and `state.json` is written last, so
//! a kill at any moment leaves `state.json` pointing at a complete epoch folder. Older
//! epoch folders are removed once the new state is in place.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::metrics::{EpochRecord, ErrorRecord};
use crate::outputs::{Provenance, RunPaths, write_atomic};

/// Where a run stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "status")]
pub enum Status {
    /// Epochs remain.
    Training,
    /// Every epoch is done.
    Finished,
    /// The loss became NaN/Inf (or another error stopped training); the checkpoint is the
    /// last good epoch.
    Failed {
        /// The error line that was recorded.
        error: ErrorRecord,
    },
}

/// The resumable state of a run (`checkpoint/state.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// The training fingerprint of the config this run was started with.
    pub fingerprint: String,
    /// Completed epochs.
    pub epochs_done: usize,
    /// The run's random generator state after `epochs_done` epochs.
    pub rng: [u64; 4],
    /// Metrics of the completed epochs.
    pub records: Vec<EpochRecord>,
    /// Where the run stands.
    #[serde(flatten)]
    pub status: Status,
}

/// The checkpoint folder of one run.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    dir: PathBuf,
}

impl Checkpoints {
    /// Checkpoints under `dir` (`<run>/checkpoint`).
    pub fn new(dir: PathBuf) -> Checkpoints {
        Checkpoints { dir }
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// The folder of epoch `epoch` (1-based).
    pub fn epoch_dir(&self, epoch: usize) -> PathBuf {
        self.dir.join(format!("epoch-{epoch:04}"))
    }

    /// The model file of epoch `epoch`.
    pub fn model(&self, epoch: usize) -> PathBuf {
        self.epoch_dir(epoch).join("model.safetensors")
    }

    /// The optimiser file of epoch `epoch`.
    pub fn optimizer(&self, epoch: usize) -> PathBuf {
        self.epoch_dir(epoch).join("optimizer.safetensors")
    }

    /// The last committed state, if any.
    ///
    /// # Errors
    /// An unreadable or corrupt `state.json`, or a state whose epoch files are missing.
    pub fn load(&self) -> Result<Option<RunState>> {
        let path = self.state_path();
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let state = parse_state(&text, &path)?;
        if state.epochs_done > 0 {
            for f in [
                self.model(state.epochs_done),
                self.optimizer(state.epochs_done),
            ] {
                if !f.is_file() {
                    bail!(
                        "{} says epoch {} is done, but {} is missing",
                        path.display(),
                        state.epochs_done,
                        f.display()
                    );
                }
            }
        }
        Ok(Some(state))
    }

    /// Commits `state` (whose epoch files must already be written) and removes the
    /// folders of other epochs.
    ///
    /// # Errors
    /// I/O errors.
    pub fn commit(&self, state: &RunState) -> Result<()> {
        let text = serde_json::to_string_pretty(state)?;
        write_atomic(&self.state_path(), text.as_bytes())?;
        let keep = self.epoch_dir(state.epochs_done);
        remove_other_epochs(&self.dir, &keep);
        Ok(())
    }

    /// Removes the whole checkpoint folder (used when a run is restarted from scratch).
    ///
    /// # Errors
    /// I/O errors.
    pub fn clear(&self) -> Result<()> {
        if self.dir.exists() {
            std::fs::remove_dir_all(&self.dir)
                .with_context(|| format!("removing {}", self.dir.display()))?;
        }
        Ok(())
    }
}

/// The run state in the text of a `checkpoint/state.json`; `origin` names the file in
/// errors.
///
/// # Errors
/// Text that is not a run state, or whose metrics disagree with its epoch count.
pub fn parse_state(text: &str, origin: &Path) -> Result<RunState> {
    let state: RunState = serde_json::from_str(text)
        .with_context(|| format!("{}: corrupt run state", origin.display()))?;
    if state.records.len() != state.epochs_done {
        bail!(
            "{}: corrupt run state: epochs_done is {} but it holds {} epoch records",
            origin.display(),
            state.epochs_done,
            state.records.len()
        );
    }
    if let Some((i, r)) = state
        .records
        .iter()
        .enumerate()
        .find(|(i, r)| r.epoch != i + 1)
    {
        bail!(
            "{}: corrupt run state: epoch record {} is numbered {}",
            origin.display(),
            i + 1,
            r.epoch
        );
    }
    Ok(state)
}

/// The seed, epoch and training digest a model file's `specreg` header entry (written by
/// [`crate::runner::model_metadata`]) records.
fn model_provenance(
    metadata: &BTreeMap<String, String>,
    file: &Path,
) -> Result<(u64, usize, String)> {
    let Some(text) = metadata.get("specreg") else {
        bail!(
            "{}: no `specreg` provenance in the safetensors header: not a model written by \
             `specreg train`",
            file.display()
        );
    };
    let value: serde_json::Value = serde_json::from_str(text).with_context(|| {
        format!(
            "{}: the `specreg` provenance in the safetensors header is not JSON",
            file.display()
        )
    })?;
    let field =
        |key: &str| {
            value.get(key).and_then(serde_json::Value::as_u64).with_context(|| {
            format!(
                "{}: the `specreg` provenance in the safetensors header has no integer {key:?}",
                file.display()
            )
        })
        };
    let seed = field("seed")?;
    let epoch = usize::try_from(field("epoch")?)
        .with_context(|| format!("{}: provenance epoch is out of range", file.display()))?;
    let training = value
        .get("training")
        .and_then(serde_json::Value::as_str)
        .with_context(|| {
            format!(
                "{}: the `specreg` provenance in the safetensors header has no \"training\" \
                 digest: written by an older specreg (results format 1)",
                file.display()
            )
        })?
        .to_string();
    Ok((seed, epoch, training))
}

/// Checks that the model file `file`, whose safetensors header is `metadata`, was written by
/// the run with `seed` after epoch `epoch` (a file copied from another run, or from another
/// config of the same architecture with another seed or length, is an error naming it).
///
/// # Errors
/// Missing or unreadable provenance, or a seed or epoch other than expected.
pub fn check_model_provenance(
    metadata: &BTreeMap<String, String>,
    file: &Path,
    seed: u64,
    epoch: usize,
    training: &str,
) -> Result<()> {
    let (found_seed, found_epoch, found_training) = model_provenance(metadata, file)?;
    if (found_seed, found_epoch) != (seed, epoch) {
        bail!(
            "{}: the model is from seed {found_seed} after epoch {found_epoch}, but this run \
             (seed {seed}) expects epoch {epoch}: a file from another run or config",
            file.display()
        );
    }
    if found_training != training {
        bail!(
            "{}: the model was trained with another config (its training settings' SHA-256 \
             is {found_training}, this run's is {training}): a file from another run",
            file.display()
        );
    }
    Ok(())
}

/// What differs between the settings that wrote a checkpoint (its model file's `specreg`
/// header entry, `metadata`) and `now`, the run resuming from it, among those that decide
/// the bits on a CPU: the thread count and the CPU kernels. `None` when they are the same
/// or the checkpoint does not record them (older files); else a sentence for the log,
/// since the resumed run is then not bit-identical to one that ran through.
pub fn resume_settings_change(
    metadata: &BTreeMap<String, String>,
    now: &Provenance,
) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(metadata.get("specreg")?).ok()?;
    let mut changes = Vec::new();
    if let Some(threads) = value.get("threads").and_then(serde_json::Value::as_u64)
        && threads != now.threads as u64
    {
        let plural = |n: u64| if n == 1 { "thread" } else { "threads" };
        changes.push(format!(
            "{threads} {}, now {}",
            plural(threads),
            now.threads
        ));
    }
    if let Some(kernels) = value.get("cpu_kernels").and_then(serde_json::Value::as_str)
        && kernels != now.cpu_kernels
    {
        changes.push(format!(
            "CPU kernels `{kernels}`, now `{}`",
            now.cpu_kernels
        ));
    }
    (!changes.is_empty()).then(|| {
        format!(
            "the checkpoint was written with {}: the finished run will not be bit-identical \
             to one that ran through on either",
            changes.join(" and ")
        )
    })
}

/// [`check_model_provenance`] for the final `model.safetensors` of the run in `paths`
/// (seed from its `seed<k>` folder name, as [`RunPaths::new`] names it) trained with
/// `config` (all its epochs).
///
/// # Errors
/// As [`check_model_provenance`], and a run folder not named `seed<k>`.
pub fn check_trained_model(
    metadata: &BTreeMap<String, String>,
    paths: &RunPaths,
    config: &Config,
) -> Result<()> {
    let seed = paths
        .dir
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("seed"))
        .and_then(|k| k.parse().ok())
        .with_context(|| format!("{}: not a run folder (seed<k>)", paths.dir.display()))?;
    check_model_provenance(
        metadata,
        &paths.model(),
        seed,
        config.train.epochs,
        &crate::runner::training_digest(config, seed),
    )
}

fn remove_other_epochs(dir: &Path, keep: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let is_epoch = p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("epoch-"));
        if is_epoch && p != keep && p.is_dir() {
            // A folder that cannot be removed only costs disk space.
            let _ = std::fs::remove_dir_all(&p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provenance(threads: usize, cpu_kernels: &str) -> Provenance {
        Provenance {
            seed: 3,
            commit: "abc".into(),
            device: "cpu".into(),
            threads,
            cpu_kernels: cpu_kernels.into(),
        }
    }

    #[test]
    fn a_resume_on_other_threads_or_kernels_is_named() {
        let avx2 = "faer x86_64+avx2+fma";
        let avx512 = "faer x86_64+avx512f+avx2+fma";
        let written = crate::runner::model_metadata(&provenance(2, avx2), 4, "digest");
        assert_eq!(resume_settings_change(&written, &provenance(2, avx2)), None);
        let kernels = resume_settings_change(&written, &provenance(2, avx512)).unwrap();
        assert!(
            kernels
                .contains("CPU kernels `faer x86_64+avx2+fma`, now `faer x86_64+avx512f+avx2+fma`")
                && !kernels.contains("threads"),
            "{kernels}"
        );
        let both = resume_settings_change(&written, &provenance(1, avx512)).unwrap();
        assert!(both.contains("2 threads, now 1 and CPU kernels"), "{both}");
        let one = crate::runner::model_metadata(&provenance(1, avx2), 4, "digest");
        let threads = resume_settings_change(&one, &provenance(2, avx2)).unwrap();
        assert!(
            threads.contains("written with 1 thread, now 2:"),
            "{threads}"
        );
    }

    #[test]
    fn a_checkpoint_without_kernels_compares_its_threads_only() {
        let old = BTreeMap::from([(
            "specreg".to_string(),
            r#"{"seed":3,"commit":"abc","device":"cpu","threads":2,"epoch":1,"training":"d"}"#
                .to_string(),
        )]);
        assert_eq!(
            resume_settings_change(&old, &provenance(2, "anything")),
            None
        );
        assert!(resume_settings_change(&old, &provenance(4, "anything")).is_some());
        assert_eq!(
            resume_settings_change(&BTreeMap::new(), &provenance(2, "x")),
            None
        );
    }
}
