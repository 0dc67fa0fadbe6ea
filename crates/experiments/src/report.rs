//! `REPORT.md` and its figures: per experiment the analogue of the paper's figures
//! (eigenspectra, FGSM / PGD / noise curves with mean ± 1 std bands, sensitivity-map
//! grids), a table per experiment, and the claims table of [`crate::claims`].

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::claims::evaluate_claims;
use crate::config::Role;
use crate::outputs::{Provenance, write_atomic};
use crate::plots::{
    CurveSeries, SensitivityRow, SpectrumSeries, curve_plot, sensitivity_grid, spectrum_plot,
};
pub use crate::results::{Results, VariantResults};
use crate::stats::{mean, on_grid, std};

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
    crate::kill_points::phase("report");
    // Temp files of a report writer that was killed (figures, REPORT.md, timing records).
    crate::outputs::remove_stale_temps(out);
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
    let provenances = results
        .variants
        .values()
        .flat_map(|v| v.runs.iter().map(|r| &r.provenance));
    for line in settings_lines(provenances) {
        let _ = writeln!(md, "{line}");
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
             squares on log-log axes with weights 1/n over the rank range each run's reading \
             names (cut to min(N, images − 1) and the last positive eigenvalue) of the last \
             hidden layer's spectrum; d90 is the smallest k whose top-k eigenvalues hold 90% \
             of the variance. Accuracies are percentages, mean ± 1 std over seeds; values at \
             an ε that is not on the run's grid are linearly interpolated (marked *).\n"
        );
        md.push_str(&readings_section(&results));
    }

    for (exp, model, title) in GROUPS {
        let mut group = results.of(exp, Some(model));
        if group.is_empty() {
            continue;
        }
        let _ = writeln!(md, "## {title}\n");
        // Experiment 3's vanilla net is experiment 2's (same training config): without its
        // own, the figures and table borrow experiment 2's and say so.
        if exp == "exp3" && !group.iter().any(|v| v.role() == Some(Role::Vanilla)) {
            let borrowed = results.with_role("exp2", model, Role::Vanilla);
            for v in &borrowed {
                let _ = writeln!(
                    md,
                    "The vanilla {model} shown here is `exp2/{}` (the same training config).\n",
                    v.variant
                );
            }
            group.extend(borrowed);
        }
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
            &format!(
                "{title}: eigenspectrum of {layer} ({})",
                group[0].runs[0].reading.ranks
            ),
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
            (
                "fgsm-bn-batch",
                "FGSM, BatchNorm on batch statistics",
                "ε (L∞)",
            ),
            (
                "pgd-bn-batch",
                "PGD, BatchNorm on batch statistics",
                "ε (L∞)",
            ),
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
        md.push_str(&extra_attack_table(&group));
    }

    let _ = writeln!(md, "## Claims of section 4\n");
    let _ = writeln!(
        md,
        "Runs are picked by the `role` in their configs. A variant's robustness score under an \
         attack is its mean accuracy over the grid points with ε > 0. Each verdict names its \
         test (one-sided at α = 0.05; Welch's t for two variants; non-superiority and TOST \
         with a ±{} margin for \"not more robust\" and \"comparable\"), its margin and the \
         seeds per variant; with fewer than {} seeds per variant no test is run and the \
         verdict is a *preview* of where the point estimates lean. **For SpecReg the β with \
         the best mean PGD score on the test set stands for the family, as the paper shows \
         its best β: that selection uses the test set, which favours SpecReg.** Sanity \
         flags are those the attack checks raised on the runs involved.\n",
        crate::claims::EQUIVALENCE_MARGIN,
        crate::claims::MIN_SEEDS
    );
    let _ = writeln!(
        md,
        "| # | claim | verdict | test | numbers | sanity flags |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    for (i, c) in evaluate_claims(&results).iter().enumerate() {
        let flags = if c.flags.is_empty() {
            "none".to_string()
        } else {
            format!("{}: {}", c.flags.len(), c.flags[0])
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            i + 1,
            c.claim,
            c.verdict.label(),
            c.test.replace('|', "\\|"),
            c.numbers.replace('|', "\\|"),
            flags.replace('|', "\\|")
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
    crate::kill_points::phase("report written");
    Ok(path)
}

/// The report's lines naming where the runs were computed: one line when every run shares
/// its commit, device, thread count and CPU kernels, else one per combination with its run
/// count, so results from mixed machines (a cluster's nodes) say so.
fn settings_lines<'a>(provenances: impl Iterator<Item = &'a Provenance>) -> Vec<String> {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for p in provenances {
        let line = format!(
            "commit `{}`, device `{}`, {} threads, CPU kernels `{}`",
            p.commit, p.device, p.threads, p.cpu_kernels
        );
        *counts.entry(line).or_default() += 1;
    }
    match counts.len() {
        0 => Vec::new(),
        1 => counts.into_keys().map(|l| format!("- {l}")).collect(),
        n => std::iter::once(format!(
            "- the runs were computed in {n} settings (not bit-comparable between them):"
        ))
        .chain(
            counts
                .into_iter()
                .map(|(l, k)| format!("  - {l}: {k} run{}", if k == 1 { "" } else { "s" })),
        )
        .collect(),
    }
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
            "seeds={} commit={} device={} threads={} cpu_kernels={}",
            seeds.join(","),
            r.provenance.commit,
            r.provenance.device,
            r.provenance.threads,
            r.provenance.cpu_kernels
        ),
        None => String::new(),
    }
}

/// The per-variant table: clean and robust accuracy, α and d90 of the last hidden layer.
fn variant_table(group: &[&VariantResults]) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "| variant | seeds | epochs | train imgs | clean | FGSM 0.05 | FGSM 0.1 | FGSM 0.2 | PGD 0.05 | PGD 0.1 | PGD 0.2 | noise σ=0.5 | α | d90 | flags | reading |"
    );
    let _ = writeln!(
        md,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
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
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
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
            v.flags().len(),
            r0.reading.short()
        );
    }
    md.push('\n');
    md
}

/// Every distinct reading among the runs, in full, with the variants that use it.
fn readings_section(results: &Results) -> String {
    let mut by: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for v in results.variants.values() {
        if let Some(r) = v.runs.first() {
            let r = &r.reading;
            let mut parts = vec![format!("BatchNorm in the main attacks: {}", r.batchnorm)];
            if let Some(w) = &r.whitening {
                parts.push(format!("whitening: {w}"));
            }
            if let Some(j) = &r.jacobian {
                parts.push(format!("Jacobian penalty: {j}"));
            }
            if let Some(sp) = &r.spectral {
                parts.push(format!("spectral penalty: {sp}"));
            }
            parts.push(format!("PGD: {}", r.pgd_start));
            parts.push(format!("ranks: {}", r.ranks));
            by.entry(parts.join("; "))
                .or_default()
                .push(format!("{}/{}", v.experiment, v.variant));
        }
    }
    let mut md = String::from(
        "Readings (which interpretation of the paper each number uses; the tables' last \
         column abbreviates it). Curves named `*-bn-batch` attack with BatchNorm and \
         whitening on the attacked batch's statistics, in fixed-size batches in test-set \
         order, gradients through those statistics:\n\n",
    );
    for (reading, variants) in by {
        let _ = writeln!(md, "- {reading} — {}", variants.join(", "));
    }
    md.push('\n');
    md
}

/// The curves beyond FGSM / PGD / noise (stronger attacks, attack-time BatchNorm) at
/// ε = 0.05, 0.1, 0.2, one row per variant and attack, beside PGD for comparison.
fn extra_attack_table(group: &[&VariantResults]) -> String {
    let standard = ["fgsm", "noise"];
    let mut rows = String::new();
    for v in group {
        let mut names: Vec<String> = v.runs[0]
            .curves
            .iter()
            .map(|c| c.attack.clone())
            .filter(|a| !standard.contains(&a.as_str()))
            .collect();
        if names.len() <= 1 {
            continue;
        }
        names.sort_by_key(|n| (n != "pgd", n.clone()));
        for a in names {
            let cells: Vec<String> = [0.05, 0.1, 0.2]
                .iter()
                .map(|e| {
                    let grid = v.runs[0]
                        .curves
                        .iter()
                        .find(|c| c.attack == a)
                        .map(|c| c.strengths.clone())
                        .unwrap_or_default();
                    if on_grid(&grid, *e) {
                        pct(&v.at(&a, *e))
                    } else {
                        "—".into()
                    }
                })
                .collect();
            let _ = writeln!(rows, "| {} | {a} | {} |", v.variant, cells.join(" | "));
        }
    }
    if rows.is_empty() {
        return rows;
    }
    format!(
        "Stronger attacks and attack-time BatchNorm (accuracy %, grid points only):\n\n\
         | variant | attack | ε = 0.05 | ε = 0.1 | ε = 0.2 |\n|---|---|---|---|---|\n{rows}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provenance(seed: u64, cpu_kernels: &str) -> Provenance {
        Provenance {
            seed,
            commit: "abc".into(),
            device: "cpu".into(),
            threads: 2,
            cpu_kernels: cpu_kernels.into(),
        }
    }

    #[test]
    fn one_setting_is_one_line() {
        let p = [
            provenance(0, "faer x86_64+avx2+fma"),
            provenance(1, "faer x86_64+avx2+fma"),
        ];
        assert_eq!(
            settings_lines(p.iter()),
            ["- commit `abc`, device `cpu`, 2 threads, CPU kernels `faer x86_64+avx2+fma`"]
        );
        assert!(settings_lines([].iter()).is_empty());
    }

    #[test]
    fn mixed_machines_are_listed_with_their_run_counts() {
        let avx512 = "faer x86_64+avx512f+avx2+fma";
        let p = [
            provenance(0, "faer x86_64+avx2+fma"),
            provenance(1, avx512),
            provenance(2, avx512),
        ];
        assert_eq!(
            settings_lines(p.iter()),
            [
                "- the runs were computed in 2 settings (not bit-comparable between them):",
                "  - commit `abc`, device `cpu`, 2 threads, CPU kernels `faer x86_64+avx2+fma`: 1 run",
                "  - commit `abc`, device `cpu`, 2 threads, CPU kernels `faer x86_64+avx512f+avx2+fma`: 2 runs",
            ]
        );
    }
}
