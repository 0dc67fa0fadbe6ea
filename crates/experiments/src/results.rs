//! The results model: every evaluated run under a results folder, grouped by experiment
//! and variant, with the per-seed numbers the report and the claims read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use crate::checkpoint::{Checkpoints, Status};
use crate::config::Role;
use crate::evaluation::Summary;
pub use crate::integrity::{
    RESULTS_FORMAT, ResultsError, RobustnessRow, parse_robustness_csv, parse_summary, verify_run,
};
use crate::stats::{interpolate, mean, std};

/// All evaluated runs of one variant.
#[derive(Debug, Clone)]
pub struct VariantResults {
    /// `exp1`, …
    pub experiment: String,
    /// The variant's name.
    pub variant: String,
    /// The run folders, by seed.
    pub dirs: Vec<(u64, PathBuf)>,
    /// The summaries, in seed order.
    pub runs: Vec<Summary>,
}

impl VariantResults {
    /// `shallow`, `mlp` or `cnn`.
    pub fn model(&self) -> &str {
        self.runs.first().map_or("", |r| r.model.as_str())
    }

    /// The claim role of the variant's config (`None` for results written before roles
    /// existed, or for configs without one).
    pub fn role(&self) -> Option<Role> {
        self.runs.first().and_then(|r| r.role)
    }

    /// Seeds evaluated.
    pub fn seeds(&self) -> usize {
        self.runs.len()
    }

    /// The curve of `attack` (`fgsm`, `pgd`, `noise`): grid, mean and std over seeds.
    /// Runs whose grid differs from the first run's are left out.
    pub fn curve(&self, attack: &str) -> Option<(Vec<f64>, Vec<f64>, Vec<f64>)> {
        let curves: Vec<_> = self
            .runs
            .iter()
            .filter_map(|r| r.curves.iter().find(|c| c.attack == attack))
            .collect();
        let grid = curves.first()?.strengths.clone();
        let same: Vec<_> = curves.iter().filter(|c| c.strengths == grid).collect();
        let mut m = Vec::new();
        let mut s = Vec::new();
        for i in 0..grid.len() {
            let v: Vec<f64> = same.iter().map(|c| c.accuracies[i]).collect();
            m.push(mean(&v));
            s.push(std(&v));
        }
        Some((grid, m, s))
    }

    /// Per seed, the mean accuracy of `attack` over its grid points with strength > 0 (a
    /// robustness score: the normalised area under the curve).
    pub fn scores(&self, attack: &str) -> Vec<f64> {
        self.runs
            .iter()
            .filter_map(|r| r.curves.iter().find(|c| c.attack == attack))
            .filter_map(|c| {
                let v: Vec<f64> = c
                    .strengths
                    .iter()
                    .zip(&c.accuracies)
                    .filter(|(s, _)| **s > 0.0)
                    .map(|(_, a)| *a)
                    .collect();
                (!v.is_empty()).then(|| mean(&v))
            })
            .collect()
    }

    /// Per seed, the accuracy of `attack` at `strength` (interpolated between grid points).
    pub fn at(&self, attack: &str, strength: f64) -> Vec<f64> {
        self.runs
            .iter()
            .filter_map(|r| r.curves.iter().find(|c| c.attack == attack))
            .filter_map(|c| interpolate(&c.strengths, &c.accuracies, strength))
            .collect()
    }

    /// Per seed, the clean accuracy.
    pub fn clean(&self) -> Vec<f64> {
        self.runs.iter().map(|r| r.clean_accuracy).collect()
    }

    /// Per seed, the fitted α of the last hidden layer.
    pub fn alphas(&self) -> Vec<f64> {
        self.runs
            .iter()
            .filter_map(|r| r.spectra.last().and_then(|s| s.alpha))
            .collect()
    }

    /// Per seed, the 90%-variance dimension of the last hidden layer.
    pub fn effective_dimensions(&self) -> Vec<f64> {
        self.runs
            .iter()
            .filter_map(|r| r.spectra.last().map(|s| s.effective_dimension as f64))
            .collect()
    }

    /// Every sanity flag of every seed, prefixed with the seed.
    pub fn flags(&self) -> Vec<String> {
        self.runs
            .iter()
            .flat_map(|r| {
                r.flags
                    .iter()
                    .map(move |f| format!("seed {}: {f}", r.provenance.seed))
            })
            .collect()
    }
}

/// Every evaluated run under `out`, grouped by experiment and variant.
#[derive(Debug, Clone, Default)]
pub struct Results {
    /// By `<experiment>/<variant>`.
    pub variants: BTreeMap<String, VariantResults>,
    /// Runs that stopped with an error, `(run folder, message)`.
    pub failed: Vec<(PathBuf, String)>,
    /// Runs that are trained but not evaluated, or not finished.
    pub incomplete: Vec<PathBuf>,
}

impl Results {
    /// Scans `out/<experiment>/<variant>/seed<k>/`.
    ///
    /// # Errors
    /// Unreadable folders, and a run whose summary is of another results format, malformed,
    /// or no longer matches the run's files ([`ResultsError`]).
    pub fn scan(out: &Path) -> Result<Results> {
        let mut results = Results::default();
        for exp in ["exp1", "exp2", "exp3"] {
            let dir = out.join(exp);
            if !dir.is_dir() {
                continue;
            }
            let mut variants: Vec<PathBuf> = read_dirs(&dir)?;
            variants.sort();
            for vdir in variants {
                let variant = file_name(&vdir);
                let mut seeds: Vec<(u64, PathBuf)> = read_dirs(&vdir)?
                    .into_iter()
                    .filter_map(|d| {
                        let seed = file_name(&d).strip_prefix("seed")?.parse().ok()?;
                        Some((seed, d))
                    })
                    .collect();
                seeds.sort();
                let mut v = VariantResults {
                    experiment: exp.into(),
                    variant: variant.clone(),
                    dirs: Vec::new(),
                    runs: Vec::new(),
                };
                for (seed, d) in seeds {
                    let state = Checkpoints::new(d.join("checkpoint")).load().ok().flatten();
                    if let Some(crate::checkpoint::RunState {
                        status: Status::Failed { error },
                        ..
                    }) = &state
                    {
                        results.failed.push((d.clone(), error.error.clone()));
                        continue;
                    }
                    match verify_run(&d)? {
                        Some(s) => {
                            v.dirs.push((seed, d));
                            v.runs.push(s);
                        }
                        None => results.incomplete.push(d),
                    }
                }
                if !v.runs.is_empty() {
                    results.variants.insert(format!("{exp}/{variant}"), v);
                }
            }
        }
        Ok(results)
    }

    /// The variant `<experiment>/<variant>`, if evaluated.
    pub fn get(&self, id: &str) -> Option<&VariantResults> {
        self.variants.get(id)
    }

    /// The variants of `experiment` and network `model` that play `role`.
    pub fn with_role(&self, experiment: &str, model: &str, role: Role) -> Vec<&VariantResults> {
        self.variants
            .values()
            .filter(|v| v.experiment == experiment && v.model() == model && v.role() == Some(role))
            .collect()
    }

    /// The variants of `experiment` (and of network `model`, when given).
    pub fn of(&self, experiment: &str, model: Option<&str>) -> Vec<&VariantResults> {
        self.variants
            .values()
            .filter(|v| v.experiment == experiment && model.is_none_or(|m| v.model() == m))
            .collect()
    }
}

fn read_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        if p.is_dir() {
            out.push(p);
        }
    }
    Ok(out)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
