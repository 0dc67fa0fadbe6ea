//! Per-epoch metrics (`metrics.jsonl`): one JSON object per epoch, and one error line if
//! the run diverged.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::outputs::{Provenance, write_atomic};

/// What one training epoch measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean total loss per sample (cross-entropy + regulariser).
    pub loss: f64,
    /// Mean cross-entropy per sample.
    pub cross_entropy: f64,
    /// Mean regulariser loss per sample (β-weighted, as added to the loss).
    pub regularizer: f64,
    /// Each regulariser term, unweighted (spectral: mean R_l per layer; `jacobian`).
    pub terms: BTreeMap<String, f64>,
    /// Training accuracy (train-mode logits, before each step).
    pub train_accuracy: f64,
    /// Test accuracy at the end of the epoch (eval mode, the evaluation's test images).
    pub test_accuracy: f64,
    /// Projected-vs-exact relative eigenvalue error per spectrally regularised layer.
    pub eigen_error: BTreeMap<String, f64>,
    /// Wall-clock seconds of the epoch (training and test evaluation).
    pub seconds: f64,
    /// Provenance.
    #[serde(flatten)]
    pub provenance: Provenance,
}

/// A divergence (NaN/Inf loss) or other failure that stopped a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorRecord {
    /// 1-based epoch in which the run stopped.
    pub epoch: usize,
    /// What went wrong.
    pub error: String,
    /// Provenance.
    #[serde(flatten)]
    pub provenance: Provenance,
}

/// Writes all records (and the error, if any) to `path`, atomically.
///
/// # Errors
/// Serialisation or I/O errors.
pub fn write_metrics(
    path: &Path,
    records: &[EpochRecord],
    error: Option<&ErrorRecord>,
) -> Result<()> {
    let mut text = String::new();
    for r in records {
        text.push_str(&serde_json::to_string(r)?);
        text.push('\n');
    }
    if let Some(e) = error {
        text.push_str(&serde_json::to_string(e)?);
        text.push('\n');
    }
    write_atomic(path, text.as_bytes())
}

/// Reads the epoch records of a `metrics.jsonl` (error lines are skipped).
///
/// # Errors
/// I/O errors and the errors of [`parse_metrics`].
pub fn read_metrics(path: &Path) -> Result<Vec<EpochRecord>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_metrics(&text, path)
}

/// The epoch records of the text of a `metrics.jsonl` (error lines are skipped); `origin`
/// names the file in errors.
///
/// # Errors
/// A line that is not JSON, or not an epoch or error record, naming the file and line.
pub fn parse_metrics(text: &str, origin: &Path) -> Result<Vec<EpochRecord>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not JSON", origin.display(), i + 1))?;
        if value.get("error").is_some() {
            continue;
        }
        out.push(
            serde_json::from_value(value)
                .with_context(|| format!("{}:{}: not an epoch record", origin.display(), i + 1))?,
        );
    }
    Ok(out)
}
