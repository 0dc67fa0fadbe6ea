//! `REPORT.md` and its figures: per experiment the analogue of the paper's figures
//! (eigenspectra, FGSM / PGD / noise curves with mean ± 1 std bands, sensitivity-map
//! grids), a table per experiment, and the claims table of [`crate::claims`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use crate::checkpoint::{Checkpoints, Status};
use crate::claims::{Verdict, evaluate_claims};
use crate::evaluation::Summary;
use crate::outputs::write_atomic;
use crate::plots::{
    CurveSeries, SensitivityRow, SpectrumSeries, curve_plot, sensitivity_grid, spectrum_plot,
};
use crate::stats::{interpolate, mean, on_grid, std};

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
    /// Unreadable folders.
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
                    match std::fs::read_to_string(d.join("summary.json"))
                        .ok()
                        .and_then(|t| serde_json::from_str::<Summary>(&t).ok())
                    {
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

/// `mean ± std` of fractions, as percentages.
fn pct(v: &[f64]) -> String {
    if v.is_empty() {
        return "—".into();
    }
    if v.len() == 1 {
        format!("{:.1}", 100.0 * v[0])
    } else {
        format!("{:.1} ± {:.1}", 100.0 * mean(v), 100.0 * std(v))
    }
}

fn num(v: &[f64], digits: usize) -> String {
    if v.is_empty() {
        return "—".into();
    }
    if v.len() == 1 {
        format!("{:.*}", digits, v[0])
    } else {
        format!("{:.*} ± {:.*}", digits, mean(v), digits, std(v))
    }
}

/// Reads the sensitivity maps of a run (`sensitivity.csv`).
fn read_sensitivity(dir: &Path) -> Option<Vec<(usize, Vec<f64>)>> {
    let text = std::fs::read_to_string(dir.join("sensitivity.csv")).ok()?;
    let mut maps = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("rank"))
    {
        let mut it = line.split(',');
        let rank: usize = it.next()?.parse().ok()?;
        let vals: Vec<f64> = it.filter_map(|v| v.parse().ok()).collect();
        maps.push((rank, vals));
    }
    Some(maps)
}

/// The figure groups of the report: `(experiment, network, title)`.
const GROUPS: [(&str, &str, &str); 5] = [
    ("exp1", "shallow", "Experiment 1 (§4.1): shallow network"),
    (
        "exp2",
        "mlp",
        "Experiment 2 (§4.2): MLP, whitened 2nd layer",
    ),
    (
        "exp2",
        "cnn",
        "Experiment 2 (§4.2): CNN, whitened conv block",
    ),
    (
        "exp3",
        "mlp",
        "Experiment 3 (§4.3): MLP, every layer regularised",
    ),
    (
        "exp3",
        "cnn",
        "Experiment 3 (§4.3): CNN, every layer regularised",
    ),
];

/// Writes `out/REPORT.md` and `out/figures/*`; returns the report's path.
///
/// # Errors
/// Unreadable results and figure errors.
pub fn write_report(out: &Path, profile: Option<&str>) -> Result<PathBuf> {
    let results = Results::scan(out)?;
    let figures = out.join("figures");
    std::fs::create_dir_all(&figures)?;
    let mut md = String::new();
    let first = results
        .variants
        .values()
        .flat_map(|v| v.runs.first())
        .next();
    let _ = writeln!(md, "# specreg report\n");
    let _ = writeln!(
        md,
        "Reproduction of Nassar et al. (NeurIPS 2020), \"On 1/n neural representation and \
         robustness\", sections 4.1–4.3, written by `specreg report` from `{}`.\n",
        out.display()
    );
    if let Some(p) = profile {
        let _ = writeln!(md, "- profile: **{p}**");
    }
    if let Some(r) = first {
        let _ = writeln!(
            md,
            "- commit `{}`, device `{}`, {} threads",
            r.provenance.commit, r.provenance.device, r.provenance.threads
        );
    }
    let n_runs: usize = results.variants.values().map(|v| v.runs.len()).sum();
    let _ = writeln!(
        md,
        "- {} variants, {n_runs} evaluated runs, {} failed, {} incomplete\n",
        results.variants.len(),
        results.failed.len(),
        results.incomplete.len()
    );
    if let Some(r) = first {
        let _ = writeln!(md, "Attack parameters (as run):\n");
        for c in &r.curves {
            let _ = writeln!(
                md,
                "- **{}**: {}; grid {:?}",
                c.attack, c.parameters, c.strengths
            );
        }
        let _ = writeln!(
            md,
            "\nα is the *rank* exponent of λ_n ∝ n^−α (Stringer et al.), fitted by least \
             squares on log-log axes with weights 1/n over ranks 11 to min(500, N) of the last \
             hidden layer's spectrum; d90 is the smallest k whose top-k eigenvalues hold 90% \
             of the variance. Accuracies are percentages, mean ± 1 std over seeds; values at \
             an ε that is not on the run's grid are linearly interpolated (marked *).\n"
        );
    }

    for (exp, model, title) in GROUPS {
        let group = results.of(exp, Some(model));
        if group.is_empty() {
            continue;
        }
        let _ = writeln!(md, "## {title}\n");
        let stem = format!("{exp}-{model}");
        let prov = provenance_line(&group);
        // Spectra of the last hidden layer (first seed of each variant).
        let series: Vec<SpectrumSeries> = group
            .iter()
            .filter_map(|v| {
                let s = v.runs.first()?.spectra.last()?;
                Some(SpectrumSeries {
                    label: v.variant.clone(),
                    eigenvalues: s.normalized.clone(),
                    alpha: s.alpha,
                    effective_dimension: s.effective_dimension,
                })
            })
            .collect();
        let layer = group[0]
            .runs
            .first()
            .and_then(|r| r.spectra.last())
            .map_or(String::new(), |s| s.layer.clone());
        let spec_stem = figures.join(format!("{stem}-spectrum"));
        match spectrum_plot(
            &spec_stem,
            &format!("{title}: eigenspectrum of {layer}"),
            &series,
            10,
            &prov,
        ) {
            Ok(()) => {
                let _ = writeln!(
                    md,
                    "![spectra](figures/{stem}-spectrum.png)\n\n*Eigenspectrum of `{layer}` \
                     (normalised, first seed), the 1/n line (grey), unregularised ranks n < 10 \
                     shaded, ★ at the 90%-variance dimension.* ([svg](figures/{stem}-spectrum.svg))\n"
                );
            }
            Err(e) => {
                let _ = writeln!(md, "Spectrum figure not drawn: {e:#}\n");
            }
        }
        for (attack, label, xlabel) in [
            ("fgsm", "FGSM", "ε (L∞)"),
            ("pgd", "PGD", "ε (L∞)"),
            ("noise", "white noise", "σ"),
        ] {
            let curves: Vec<CurveSeries> = group
                .iter()
                .filter_map(|v| {
                    let (x, mean, std) = v.curve(attack)?;
                    Some(CurveSeries {
                        label: format!(
                            "{} ({} seed{})",
                            v.variant,
                            v.runs.len(),
                            if v.runs.len() == 1 { "" } else { "s" }
                        ),
                        x,
                        mean,
                        std,
                        dashed: v.variant.contains("whitened"),
                    })
                })
                .collect();
            if curves.is_empty() {
                continue;
            }
            let f = figures.join(format!("{stem}-{attack}"));
            match curve_plot(&f, &format!("{title}: {label}"), xlabel, &curves, &prov) {
                Ok(()) => {
                    let _ = writeln!(
                        md,
                        "![{label}](figures/{stem}-{attack}.png) ([svg](figures/{stem}-{attack}.svg))\n"
                    );
                }
                Err(e) => {
                    let _ = writeln!(md, "{label} figure not drawn: {e:#}\n");
                }
            }
        }
        let rows: Vec<SensitivityRow> = group
            .iter()
            .filter_map(|v| {
                let (_, dir) = v.dirs.first()?;
                Some(SensitivityRow {
                    label: v.variant.clone(),
                    maps: read_sensitivity(dir)?,
                })
            })
            .collect();
        if !rows.is_empty() {
            let f = figures.join(format!("{stem}-sensitivity"));
            match sensitivity_grid(
                &f,
                &format!("{title}: ∂λ_n/∂x of {layer} (first seed)"),
                &rows,
                &prov,
            ) {
                Ok(()) => {
                    let _ = writeln!(
                        md,
                        "![sensitivity](figures/{stem}-sensitivity.png)\n\n*Sensitivity maps \
                         ∂λ_n/∂x (eq. 9), blue negative, red positive, each map scaled to its \
                         own largest magnitude.*\n"
                    );
                }
                Err(e) => {
                    let _ = writeln!(md, "Sensitivity figure not drawn: {e:#}\n");
                }
            }
        }
        md.push_str(&variant_table(&group));
    }

    let _ = writeln!(md, "## Claims of section 4\n");
    let _ = writeln!(
        md,
        "A variant is *more robust* than another under an attack when its robustness score \
         (mean accuracy over the grid points with ε > 0, averaged over seeds) exceeds the \
         other's by more than max(1 point, the combined std over seeds); for SpecReg the β \
         with the best PGD score is used, as the paper shows its best β. Sanity flags are \
         those the attack checks raised on the runs involved.\n"
    );
    let _ = writeln!(md, "| # | claim | verdict | numbers | sanity flags |");
    let _ = writeln!(md, "|---|---|---|---|---|");
    for (i, c) in evaluate_claims(&results).iter().enumerate() {
        let verdict = match c.verdict {
            Verdict::Supported => "**supported**",
            Verdict::NotSupported => "**not supported**",
            Verdict::Inconclusive => "inconclusive",
        };
        let flags = if c.flags.is_empty() {
            "none".to_string()
        } else {
            format!("{}: {}", c.flags.len(), c.flags[0])
        };
        let _ = writeln!(
            md,
            "| {} | {} | {verdict} | {} | {} |",
            i + 1,
            c.claim,
            c.numbers.replace('|', "/"),
            flags.replace('|', "/")
        );
    }
    md.push('\n');
    if !results.failed.is_empty() {
        let _ = writeln!(md, "## Runs that stopped\n");
        for (d, e) in &results.failed {
            let _ = writeln!(md, "- `{}`: {e}", d.display());
        }
        md.push('\n');
    }
    if !results.incomplete.is_empty() {
        let _ = writeln!(md, "## Runs not yet evaluated\n");
        for d in &results.incomplete {
            let _ = writeln!(md, "- `{}`", d.display());
        }
        md.push('\n');
    }
    let path = out.join("REPORT.md");
    write_atomic(&path, md.as_bytes())?;
    Ok(path)
}

fn provenance_line(group: &[&VariantResults]) -> String {
    let seeds: Vec<String> = group
        .iter()
        .flat_map(|v| v.runs.iter().map(|r| r.provenance.seed.to_string()))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    match group.first().and_then(|v| v.runs.first()) {
        Some(r) => format!(
            "seeds={} commit={} device={} threads={}",
            seeds.join(","),
            r.provenance.commit,
            r.provenance.device,
            r.provenance.threads
        ),
        None => String::new(),
    }
}

/// The per-variant table: clean and robust accuracy, α and d90 of the last hidden layer.
fn variant_table(group: &[&VariantResults]) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "| variant | seeds | epochs | train imgs | clean | FGSM 0.05 | FGSM 0.1 | FGSM 0.2 | PGD 0.05 | PGD 0.1 | PGD 0.2 | noise σ=0.5 | α | d90 | flags |"
    );
    let _ = writeln!(
        md,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for v in group {
        let r0 = &v.runs[0];
        let cell = |attack: &str, s: f64| {
            let grid = r0
                .curves
                .iter()
                .find(|c| c.attack == attack)
                .map(|c| c.strengths.clone())
                .unwrap_or_default();
            let vals = v.at(attack, s);
            let mark = if !vals.is_empty() && !on_grid(&grid, s) {
                "*"
            } else {
                ""
            };
            format!("{}{mark}", pct(&vals))
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            v.variant,
            v.runs.len(),
            r0.epochs,
            r0.train_images,
            pct(&v.clean()),
            cell("fgsm", 0.05),
            cell("fgsm", 0.1),
            cell("fgsm", 0.2),
            cell("pgd", 0.05),
            cell("pgd", 0.1),
            cell("pgd", 0.2),
            cell("noise", 0.5),
            num(&v.alphas(), 2),
            num(&v.effective_dimensions(), 0),
            v.flags().len()
        );
    }
    md.push('\n');
    md
}
