//! The integrity of an evaluated run's folder: the results format it was written in, and
//! the SHA-256 of every file the summary was computed from.
//!
//! `summary.json` is the last file evaluation writes. It records [`RESULTS_FORMAT`], the
//! SHA-256 of each other file of the run folder (`config.toml`, `metrics.jsonl` without
//! its wall-clock `seconds`, `model.safetensors`, `robustness.csv`, `spectrum.csv`, the
//! sensitivity maps, …) and, in its last field `digest`, the SHA-256 of its own text with
//! that field empty. Whoever reads a run back (`specreg report`, `specreg eval` deciding
//! whether a run is up to date, `specreg list`) checks all three, so a folder written by an
//! incompatible version or a file edited by hand is named, instead of being reported or
//! silently overwritten.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::evaluation::Summary;

/// The version of the results layout this build writes and reads. Format 1 is every
/// folder written before formats were recorded (its summaries have no `format` field).
pub const RESULTS_FORMAT: u32 = 2;

/// The name of the summary file in a run folder.
pub const SUMMARY_FILE: &str = "summary.json";

/// Why a run folder's results cannot be read back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResultsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file is not in the form this version writes (not JSON, a missing or mistyped
    /// field, a malformed CSV row).
    #[error("{path}: {message}")]
    Malformed {
        /// The file (with `:line` for CSV rows).
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The folder was written by a specreg with another results format.
    #[error(
        "{path}: written in results format {found}, but this specreg reads format {expected}; \
         report it with the specreg that wrote it, or evaluate again into a new --out folder"
    )]
    Format {
        /// The summary file.
        path: PathBuf,
        /// The format it records (1: written before formats were recorded).
        found: u64,
        /// [`RESULTS_FORMAT`].
        expected: u32,
    },
    /// A file changed after the run was evaluated.
    #[error(
        "{path}: edited after the run was evaluated ({what}); restore it, or delete {summary} \
         and run `specreg eval` to evaluate the run again"
    )]
    Edited {
        /// The edited file.
        path: PathBuf,
        /// The summary that recorded its digest.
        summary: PathBuf,
        /// How it differs, in words.
        what: String,
    },
}

/// The hexadecimal SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in digest {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The bytes of `metrics.jsonl` that the digest covers: every line as JSON with the
/// wall-clock `seconds` removed (which differ between two runs of the same config).
fn metrics_without_seconds(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(mut v) => {
                if let Some(o) = v.as_object_mut() {
                    o.remove("seconds");
                }
                out.push_str(&v.to_string());
            }
            // Not JSON: the digest covers the line as it is, so an edit still shows.
            Err(_) => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Whether a file of a run folder is covered by the summary's digests: every regular file
/// directly in it except the summary itself and temporary files.
fn covered(name: &str) -> bool {
    name != SUMMARY_FILE && !name.ends_with(".tmp") && !name.starts_with('.')
}

/// The SHA-256 of the file `name` of a run folder, as the summary records it.
fn file_digest(dir: &Path, name: &str) -> Result<String, ResultsError> {
    let path = dir.join(name);
    let bytes = std::fs::read(&path).map_err(|source| ResultsError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(if name == "metrics.jsonl" {
        sha256_hex(metrics_without_seconds(&String::from_utf8_lossy(&bytes)).as_bytes())
    } else {
        sha256_hex(&bytes)
    })
}

/// The covered files of the run folder `dir`, by name.
fn covered_files(dir: &Path) -> Result<Vec<String>, ResultsError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ResultsError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut names = Vec::new();
    for e in entries.flatten() {
        let is_file = e.file_type().is_ok_and(|t| t.is_file());
        let name = e.file_name().to_string_lossy().into_owned();
        if is_file && covered(&name) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// The SHA-256 of every covered file of the run folder `dir`.
///
/// # Errors
/// [`ResultsError::Io`] for an unreadable folder or file.
pub fn file_digests(dir: &Path) -> Result<BTreeMap<String, String>, ResultsError> {
    covered_files(dir)?
        .into_iter()
        .map(|name| Ok((name.clone(), file_digest(dir, &name)?)))
        .collect()
}

/// The `"digest"` line of a sealed summary with its value left out.
const DIGEST_EMPTY: &str = "\"digest\": \"\"";

/// The text of `summary.json` for `summary`: its format, the digests of the run folder's
/// files, and the digest of the text itself (the last field).
///
/// # Errors
/// [`ResultsError::Io`] for an unreadable run folder.
pub fn seal_summary(summary: &Summary, dir: &Path) -> Result<String, ResultsError> {
    let mut s = summary.clone();
    s.format = u64::from(RESULTS_FORMAT);
    s.files = file_digests(dir)?;
    s.digest = String::new();
    let unsealed = serde_json::to_string_pretty(&s).map_err(|e| ResultsError::Malformed {
        path: dir.join(SUMMARY_FILE).display().to_string(),
        message: format!("cannot serialise the summary: {e}"),
    })?;
    let digest = sha256_hex(unsealed.as_bytes());
    Ok(replace_last(
        &unsealed,
        DIGEST_EMPTY,
        &format!("\"digest\": \"{digest}\""),
    ))
}

fn replace_last(text: &str, from: &str, to: &str) -> String {
    match text.rfind(from) {
        Some(i) => format!("{}{to}{}", &text[..i], &text[i + from.len()..]),
        None => text.to_string(),
    }
}

/// Parses the text of a `summary.json` (from `origin`): its results format must be
/// [`RESULTS_FORMAT`] and every field present with its type. The digests are not checked
/// here (see [`verify_run`]).
///
/// # Errors
/// [`ResultsError::Malformed`] (naming the field) and [`ResultsError::Format`].
pub fn parse_summary(text: &str, origin: &Path) -> Result<Summary, ResultsError> {
    let malformed = |message: String| ResultsError::Malformed {
        path: origin.display().to_string(),
        message,
    };
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| malformed(format!("not JSON: {e}")))?;
    let Some(object) = value.as_object() else {
        return Err(malformed("not a JSON object".into()));
    };
    let found = match object.get("format") {
        None => 1,
        Some(f) => f
            .as_u64()
            .ok_or_else(|| malformed(format!("format: expected an integer, found {f}")))?,
    };
    if found != u64::from(RESULTS_FORMAT) {
        return Err(ResultsError::Format {
            path: origin.to_path_buf(),
            found,
            expected: RESULTS_FORMAT,
        });
    }
    serde_path_to_error::deserialize::<_, Summary>(value).map_err(|e| {
        let field = e.path().to_string();
        malformed(format!("{field}: {}", e.into_inner()))
    })
}

/// One row of a `robustness.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct RobustnessRow {
    /// The curve (`fgsm`, `pgd`, `noise`, …).
    pub attack: String,
    /// ε or σ.
    pub strength: f64,
    /// Accuracy at that strength.
    pub accuracy: f64,
    /// Correctly classified images.
    pub correct: usize,
    /// Images attacked.
    pub num_images: usize,
    /// Mean loss of the attacked images.
    pub mean_loss: f64,
    /// Largest step outside the ε-ball (0 for a sound attack).
    pub max_ball_violation: f64,
    /// Largest step outside [0, 1].
    pub max_clip_violation: f64,
    /// Input-gradient rows that were exactly zero at the attack's start.
    pub zero_gradient_rows: usize,
}

/// The header row of `robustness.csv`.
pub const ROBUSTNESS_HEADER: &str = "attack,strength,accuracy,correct,num_images,mean_loss,max_ball_violation,max_clip_violation,zero_gradient_rows";

/// Parses the text of a `robustness.csv` (from `origin`): `#` comment lines, the header,
/// then one row per attack and strength.
///
/// # Errors
/// [`ResultsError::Malformed`] naming the line and column.
pub fn parse_robustness_csv(text: &str, origin: &Path) -> Result<Vec<RobustnessRow>, ResultsError> {
    let at = |line: usize, message: String| ResultsError::Malformed {
        path: format!("{}:{line}", origin.display()),
        message,
    };
    let mut rows = Vec::new();
    let mut header = false;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if !header {
            if line != ROBUSTNESS_HEADER {
                return Err(at(n, format!("expected the header {ROBUSTNESS_HEADER:?}")));
            }
            header = true;
            continue;
        }
        let cells: Vec<&str> = line.split(',').collect();
        let columns: Vec<&str> = ROBUSTNESS_HEADER.split(',').collect();
        if cells.len() != columns.len() {
            return Err(at(
                n,
                format!("{} columns, expected {}", cells.len(), columns.len()),
            ));
        }
        let real = |k: usize| -> Result<f64, ResultsError> {
            cells[k]
                .parse::<f64>()
                .map_err(|_| at(n, format!("{}: not a number: {:?}", columns[k], cells[k])))
        };
        let count = |k: usize| -> Result<usize, ResultsError> {
            cells[k]
                .parse::<usize>()
                .map_err(|_| at(n, format!("{}: not a count: {:?}", columns[k], cells[k])))
        };
        if cells[0].is_empty() {
            return Err(at(n, "attack: empty".into()));
        }
        rows.push(RobustnessRow {
            attack: cells[0].to_string(),
            strength: real(1)?,
            accuracy: real(2)?,
            correct: count(3)?,
            num_images: count(4)?,
            mean_loss: real(5)?,
            max_ball_violation: real(6)?,
            max_clip_violation: real(7)?,
            zero_gradient_rows: count(8)?,
        });
    }
    if !header {
        return Err(at(text.lines().count().max(1), "no header row".into()));
    }
    Ok(rows)
}

/// Whether two numbers read back from different files are the same value (the JSON and
/// CSV readers may round the last bit differently).
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * a.abs().max(b.abs()).max(1.0)
}

/// Reads and checks the evaluated run in `dir`: `Ok(None)` when it has no summary (not
/// evaluated yet), else its summary once the format, the summary's own digest, the digest
/// of every file it covers and the rows of `robustness.csv` all agree.
///
/// # Errors
/// [`ResultsError`] naming the file that is unreadable, malformed, of another format,
/// edited, missing or new.
pub fn verify_run(dir: &Path) -> Result<Option<Summary>, ResultsError> {
    let path = dir.join(SUMMARY_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(ResultsError::Io { path, source }),
    };
    let summary = parse_summary(&text, &path)?;
    let edited = |file: PathBuf, what: String| ResultsError::Edited {
        path: file,
        summary: path.clone(),
        what,
    };
    let recorded = format!("\"digest\": \"{}\"", summary.digest);
    let own = sha256_hex(replace_last(&text, &recorded, DIGEST_EMPTY).as_bytes());
    if summary.digest.is_empty() || own != summary.digest {
        return Err(edited(
            path.clone(),
            "its text no longer matches the digest it recorded".into(),
        ));
    }
    let present = covered_files(dir)?;
    for (name, digest) in &summary.files {
        if !present.contains(name) {
            return Err(edited(dir.join(name), "the file is missing".into()));
        }
        if &file_digest(dir, name)? != digest {
            return Err(edited(
                dir.join(name),
                "its SHA-256 differs from the one summary.json recorded".into(),
            ));
        }
    }
    if let Some(extra) = present.iter().find(|n| !summary.files.contains_key(*n)) {
        return Err(edited(
            dir.join(extra),
            "the file appeared after the run was evaluated".into(),
        ));
    }
    let csv = dir.join("robustness.csv");
    let text = std::fs::read_to_string(&csv).map_err(|source| ResultsError::Io {
        path: csv.clone(),
        source,
    })?;
    let rows = parse_robustness_csv(&text, &csv)?;
    for c in &summary.curves {
        let mine: Vec<&RobustnessRow> = rows.iter().filter(|r| r.attack == c.attack).collect();
        let same = mine.len() == c.accuracies.len()
            && mine
                .iter()
                .zip(c.strengths.iter().zip(&c.accuracies))
                .all(|(r, (s, a))| close(r.strength, *s) && close(r.accuracy, *a));
        if !same {
            return Err(edited(
                csv.clone(),
                format!("its {} rows disagree with summary.json", c.attack),
            ));
        }
    }
    Ok(Some(summary))
}
