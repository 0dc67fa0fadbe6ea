//! Evaluating a trained run: clean accuracy, FGSM / PGD / white-noise robustness curves,
//! the eigenspectrum of every hidden layer and sensitivity maps of the last one.
//!
//! Outputs (in the run folder): `robustness.csv`, `spectrum.csv`, `sensitivity.csv`,
//! `sensitivity.png` and `summary.json`, which the report reads. Evaluation is skipped when
//! `summary.json` already matches the trained model and the evaluation settings.

use std::fmt::Write as _;

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};
use specreg_attacks::{
    EvalOptions, NetworkInMode, RepresentationSpectrum, RobustnessCurve, SensitivityOptions,
};
use specreg_nn::{Mode, Network};
use specreg_regularizers::{RepresentationStatistics, Spectrum, representation_statistics};

use crate::attack_plan::attack_specs;
pub use crate::attack_plan::pgd_config;
use crate::checkpoint::{Checkpoints, Status};
use crate::config::{Config, Role};
use crate::outputs::{Provenance, RunPaths, write_atomic};
use crate::plots::{SensitivityRow, sensitivity_grid};
use crate::reading::Reading;
use crate::runner::{Context, load_trained, test_slice, train_slice};

/// One robustness curve as stored in `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurveSummary {
    /// `fgsm`, `pgd` or `noise`.
    pub attack: String,
    /// Every parameter of the attack, in words.
    pub parameters: String,
    /// ε (or σ) grid.
    pub strengths: Vec<f64>,
    /// Accuracy at each grid value.
    pub accuracies: Vec<f64>,
}

/// Spectrum metrics of one hidden layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerSpectrum {
    /// Representation name.
    pub layer: String,
    /// Width N.
    pub width: usize,
    /// Whether the spectral regulariser acted on this layer.
    pub regularized: bool,
    /// Fitted rank exponent α (λ_n ∝ n^−α), `None` if the fit was impossible.
    pub alpha: Option<f64>,
    /// Weighted R² of the fit.
    pub r2: Option<f64>,
    /// Fitted rank range.
    pub fit_ranks: (usize, usize),
    /// Smallest k whose top-k eigenvalues hold 90% of the variance.
    pub effective_dimension: usize,
    /// Participation ratio (Σλ)²/Σλ².
    pub participation_ratio: f64,
    /// Normalised eigenvalues (for the report's figures), descending.
    pub normalized: Vec<f64>,
}

/// Everything the report needs from one evaluated run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// `exp1`, …
    pub experiment: String,
    /// The variant.
    pub variant: String,
    /// The config's description.
    pub description: String,
    /// `shallow`, `mlp` or `cnn`.
    pub model: String,
    /// The config's claim role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// Which reading of the paper every number of this run uses.
    #[serde(default)]
    pub reading: Reading,
    /// Training images used.
    pub train_images: usize,
    /// The training fingerprint of the evaluated model.
    pub training_fingerprint: String,
    /// The evaluation settings used.
    pub eval_fingerprint: String,
    /// Epochs the model was trained for.
    pub epochs: usize,
    /// Test images evaluated.
    pub test_images: usize,
    /// Clean test accuracy.
    pub clean_accuracy: f64,
    /// FGSM, PGD and noise curves.
    pub curves: Vec<CurveSummary>,
    /// Sanity flags raised by the attack checks, in words.
    pub flags: Vec<String>,
    /// Spectrum metrics of every hidden layer.
    pub spectra: Vec<LayerSpectrum>,
    /// The last hidden layer whose sensitivity maps were drawn.
    pub sensitivity_layer: String,
    /// Ranks of the sensitivity maps.
    pub sensitivity_ranks: Vec<usize>,
    /// Provenance.
    pub provenance: Provenance,
}

/// What [`evaluate_run`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalOutcome {
    /// The run has not finished training (or failed); nothing to evaluate.
    NotTrained,
    /// `summary.json` was up to date.
    AlreadyDone,
    /// Evaluated now.
    Evaluated,
}

fn read_summary(paths: &RunPaths) -> Option<Summary> {
    let text = std::fs::read_to_string(paths.summary()).ok()?;
    serde_json::from_str(&text).ok()
}

/// Whether the run's training finished, and its state.
fn finished(paths: &RunPaths) -> Result<bool> {
    let state = Checkpoints::new(paths.checkpoint_dir()).load()?;
    Ok(matches!(state, Some(s) if s.status == Status::Finished) && paths.model().is_file())
}

/// Evaluates a finished run (robustness, spectra, sensitivity maps, summary), unless its
/// summary is already up to date.
///
/// # Errors
/// Unreadable checkpoints and errors of the attacks, spectra and plots.
pub fn evaluate_run(ctx: &Context<'_>, config: &Config, seed: u64) -> Result<EvalOutcome> {
    let paths = RunPaths::new(&ctx.out, config, seed);
    if !finished(&paths)? {
        return Ok(EvalOutcome::NotTrained);
    }
    let training = config.training_fingerprint(seed);
    let eval = config.eval_fingerprint();
    if let Some(s) = read_summary(&paths)
        && s.training_fingerprint == training
        && s.eval_fingerprint == eval
        && paths.robustness().is_file()
        && paths.spectrum().is_file()
    {
        return Ok(EvalOutcome::AlreadyDone);
    }
    let provenance = ctx.provenance(seed);
    let mut net = load_trained(config, &paths, &ctx.device)?;
    let (test_x, test_y) = test_slice(ctx.data, config.test_images());

    // Robustness curves, one bar step per gradient evaluation.
    let specs = attack_specs(config, seed);
    let total: u64 = specs.iter().map(|a| a.cost).sum();
    let bar = ctx.progress.bar(total, &format!("attack s{seed}"));
    let options = EvalOptions {
        batch_size: config.eval.batch_size,
        subset: None,
        monotone_tolerance: 1,
    };
    let mut curves: Vec<(String, String, RobustnessCurve)> = Vec::new();
    let mut modes: Vec<Mode> = Vec::new();
    for spec in specs {
        bar.set_message(format!("{} {}", config.id(), spec.name));
        let curve = match spec.mode {
            Mode::Eval => specreg_attacks::robustness_curve(
                &mut net,
                test_x,
                test_y,
                &spec.attack,
                &spec.grid,
                &options,
            ),
            mode => specreg_attacks::robustness_curve(
                &mut NetworkInMode::new(&mut net, mode)?,
                test_x,
                test_y,
                &spec.attack,
                &spec.grid,
                &options,
            ),
        }
        .with_context(|| format!("{} seed {seed}: {}", config.id(), spec.name))?;
        ctx.progress.note(&format!(
            "{} seed {seed}: {} done, clean accuracy {:.4}",
            config.id(),
            spec.name,
            curve.clean_accuracy
        ));
        curves.push((spec.name.to_string(), spec.params, curve));
        modes.push(spec.mode);
        bar.inc(spec.cost);
    }
    bar.finish_and_clear();
    let mut flags: Vec<String> = curves
        .iter()
        .flat_map(|(_, _, c)| c.flags.iter().map(|f| f.to_string()))
        .collect();
    // The attack-order checks compare curves of one classifier: the eval-mode curves among
    // themselves, the BatchNorm-batch-statistics ones among themselves.
    for batch in [false, true] {
        let group: Vec<RobustnessCurve> = curves
            .iter()
            .zip(&modes)
            .filter(|(_, m)| m.uses_batch_statistics() == batch)
            .map(|(c, _)| c.2.clone())
            .collect();
        let prefix = if batch {
            "BatchNorm on batch statistics: "
        } else {
            ""
        };
        flags.extend(
            specreg_attacks::cross_curve_flags(&group)?
                .iter()
                .map(|f| format!("{prefix}{f}")),
        );
    }
    let clean_accuracy = curves[0].2.clean_accuracy;
    write_robustness_csv(&paths, &provenance, &curves, &flags)?;

    // One pass over the spectrum images gives every hidden layer's statistics: the spectra
    // of all layers, and the sensitivity maps' spectrum when they use the same images.
    let statistics = layer_statistics(ctx, config, &mut net)?;
    let spectra = spectra_of(config, &statistics)?;
    write_spectrum_csv(&paths, &provenance, &spectra)?;

    // Sensitivity maps of the last hidden layer.
    let layer = config.model.kind.last_hidden().to_string();
    let maps = sensitivity_maps(ctx, config, &mut net, &layer, &statistics)?;
    write_sensitivity(&paths, &provenance, config, &layer, &maps)?;

    let summary = Summary {
        experiment: config.experiment.name().into(),
        variant: config.variant.clone(),
        description: config.description.clone(),
        model: config.model.kind.name().into(),
        role: config.role,
        reading: Reading::of(config),
        train_images: config.train_images(),
        training_fingerprint: training,
        eval_fingerprint: eval,
        epochs: config.train.epochs,
        test_images: test_y.len(),
        clean_accuracy,
        curves: curves
            .iter()
            .map(|(name, params, c)| CurveSummary {
                attack: name.clone(),
                parameters: format!(
                    "{params}; {} test images, batch {}",
                    c.num_images, c.batch_size
                ),
                strengths: c.strengths(),
                accuracies: c.accuracies(),
            })
            .collect(),
        flags,
        spectra,
        sensitivity_layer: layer,
        sensitivity_ranks: maps.iter().map(|m| m.0).collect(),
        provenance,
    };
    write_atomic(
        &paths.summary(),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    Ok(EvalOutcome::Evaluated)
}

/// Spectrum metrics of every hidden layer over the config's spectrum images.
///
/// # Errors
/// Errors of the covariance and eigendecomposition.
pub fn spectra(
    ctx: &Context<'_>,
    config: &Config,
    net: &mut Network,
) -> Result<Vec<LayerSpectrum>> {
    spectra_of(config, &layer_statistics(ctx, config, net)?)
}

/// The number of spectrum images of `config` that the data set has.
fn spectrum_images(ctx: &Context<'_>, config: &Config) -> usize {
    config
        .eval
        .spectrum_images
        .unwrap_or(config.train_images())
        .min(ctx.data.train.len())
}

/// Every hidden layer's mean and covariance over the config's spectrum images, from one
/// `Eval` pass in the chunks of `train.chunk`.
///
/// # Errors
/// Errors of the forward pass and the accumulation.
pub fn layer_statistics(
    ctx: &Context<'_>,
    config: &Config,
    net: &mut Network,
) -> Result<Vec<RepresentationStatistics>> {
    let (x, _) = train_slice(ctx.data, spectrum_images(ctx, config));
    let names: Vec<&str> = config
        .model
        .kind
        .hidden_layers()
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    representation_statistics(net, &names, x, config.train.chunk)
        .with_context(|| format!("statistics of {}", names.join(", ")))
}

/// Spectrum metrics of every hidden layer from its statistics.
///
/// # Errors
/// A failed eigendecomposition.
pub fn spectra_of(
    config: &Config,
    statistics: &[RepresentationStatistics],
) -> Result<Vec<LayerSpectrum>> {
    let regularized = config
        .spectral
        .as_ref()
        .map(|s| s.layer_names(config.model.kind))
        .unwrap_or_default();
    let mut out = Vec::new();
    for (stats, (name, width)) in statistics.iter().zip(config.model.kind.hidden_layers()) {
        let s = Spectrum::of_covariance(&stats.covariance)
            .with_context(|| format!("spectrum of {name}"))?;
        out.push(layer_metrics(
            name,
            *width,
            regularized.iter().any(|r| r == name),
            &s,
            stats.count,
            config.eval.fit_ranks,
        ));
    }
    Ok(out)
}

/// The metrics of one spectrum computed from `images` samples: the fit runs over the
/// 1-based ranks `fit_ranks[0]` to min(`fit_ranks[1]`, N, images − 1), cut before the first
/// non-positive eigenvalue.
pub fn layer_metrics(
    name: &str,
    width: usize,
    regularized: bool,
    s: &Spectrum,
    images: usize,
    fit_ranks: [usize; 2],
) -> LayerSpectrum {
    let positive = s.eigenvalues.iter().take_while(|v| **v > 0.0).count();
    let first = fit_ranks[0];
    let last = fit_ranks[1]
        .min(s.len())
        .min(images.saturating_sub(1))
        .min(positive);
    let fit = s.power_law(first, last).ok();
    LayerSpectrum {
        layer: name.to_string(),
        width,
        regularized,
        alpha: fit.map(|f| f.alpha).filter(|a| a.is_finite()),
        r2: fit.map(|f| f.r2).filter(|a| a.is_finite()),
        fit_ranks: (first, last),
        effective_dimension: s.effective_dimension(0.9).unwrap_or(0),
        participation_ratio: s.participation_ratio(),
        normalized: s.normalized(),
    }
}

fn write_robustness_csv(
    paths: &RunPaths,
    provenance: &Provenance,
    curves: &[(String, String, RobustnessCurve)],
    flags: &[String],
) -> Result<()> {
    let mut text = format!("# {}\n", provenance.line());
    for (name, params, _) in curves {
        let _ = writeln!(text, "# {name}: {params}");
    }
    for f in flags {
        let _ = writeln!(text, "# sanity flag: {f}");
    }
    text.push_str(
        "attack,strength,accuracy,correct,num_images,mean_loss,max_ball_violation,max_clip_violation,zero_gradient_rows\n",
    );
    for (name, _, c) in curves {
        for p in &c.points {
            let _ = writeln!(
                text,
                "{name},{},{},{},{},{},{},{},{}",
                p.strength,
                p.accuracy,
                p.correct,
                c.num_images,
                p.mean_loss,
                p.max_ball_violation,
                p.max_clip_violation,
                p.zero_gradient_rows
            );
        }
    }
    write_atomic(&paths.robustness(), text.as_bytes())
}

/// Writes `spectrum.csv`: `layer,rank,eigenvalue_normalized,cumulative_variance`.
///
/// # Errors
/// I/O errors.
pub fn write_spectrum_csv(
    paths: &RunPaths,
    provenance: &Provenance,
    spectra: &[LayerSpectrum],
) -> Result<()> {
    let mut text = format!("# {}\n", provenance.line());
    for s in spectra {
        let _ = writeln!(
            text,
            "# {}: width {}, regularized {}, alpha {} (rank exponent, ranks {}..={}, R² {}), \
             90%-variance dimension {}, participation ratio {:.2}",
            s.layer,
            s.width,
            s.regularized,
            s.alpha.map_or("n/a".into(), |a| format!("{a:.4}")),
            s.fit_ranks.0,
            s.fit_ranks.1,
            s.r2.map_or("n/a".into(), |a| format!("{a:.4}")),
            s.effective_dimension,
            s.participation_ratio
        );
    }
    text.push_str("layer,rank,normalized_eigenvalue,cumulative_variance\n");
    for s in spectra {
        let mut acc = 0.0;
        for (i, v) in s.normalized.iter().enumerate() {
            acc += v;
            let _ = writeln!(text, "{},{},{v:e},{acc}", s.layer, i + 1);
        }
    }
    write_atomic(&paths.spectrum(), text.as_bytes())
}

/// Sensitivity maps `∂λ_n/∂x` (eq. 9) of representation `layer` at the config's ranks,
/// each a 784-vector (28×28, row-major).
///
/// # Errors
/// Errors of the attacks crate's sensitivity computation.
pub fn sensitivity_maps(
    ctx: &Context<'_>,
    config: &Config,
    net: &mut Network,
    layer: &str,
    statistics: &[RepresentationStatistics],
) -> Result<Vec<(usize, Vec<f64>)>> {
    let n = config
        .eval
        .sensitivity_images
        .or(config.eval.spectrum_images)
        .unwrap_or(config.train_images())
        .min(ctx.data.train.len());
    let (x, _) = train_slice(ctx.data, n);
    let options = SensitivityOptions {
        batch_size: config.train.chunk,
        ..SensitivityOptions::default()
    };
    // The spectrum pass's statistics serve when the maps are over the same images (the
    // paper profile's default); other images need their own statistics pass first.
    let shared = statistics
        .iter()
        .find(|s| s.name == layer && n == spectrum_images(ctx, config));
    let spectrum = match shared {
        Some(s) => RepresentationSpectrum::from_statistics(s),
        None => RepresentationSpectrum::compute(net, x, layer, options.batch_size),
    }
    .with_context(|| format!("spectrum of {layer} for its sensitivity maps"))?;
    let maps = specreg_attacks::sensitivity_maps_from(
        net,
        x,
        &spectrum,
        &config.eval.sensitivity_ranks,
        &options,
    )
    .with_context(|| format!("sensitivity maps of {layer}"))?;
    Ok(maps
        .ranks
        .iter()
        .zip(&maps.maps)
        .map(|(r, m)| (*r, m.iter().copied().collect()))
        .collect())
}

fn write_sensitivity(
    paths: &RunPaths,
    provenance: &Provenance,
    config: &Config,
    layer: &str,
    maps: &[(usize, Vec<f64>)],
) -> Result<()> {
    let mut text = format!(
        "# {}\n# d lambda_n / d x of {layer} (eq. 9), one row per rank, 784 pixels row-major\nrank",
        provenance.line()
    );
    for p in 0..784 {
        let _ = write!(text, ",p{p}");
    }
    text.push('\n');
    for (rank, m) in maps {
        let _ = write!(text, "{rank}");
        for v in m {
            let _ = write!(text, ",{v:e}");
        }
        text.push('\n');
    }
    write_atomic(&paths.sensitivity_csv(), text.as_bytes())?;
    let row = SensitivityRow {
        label: config.variant.clone(),
        maps: maps.to_vec(),
    };
    sensitivity_grid(
        &paths.sensitivity_png().with_extension(""),
        &format!(
            "{} seed {}: ∂λ_n/∂x of {layer}",
            config.id(),
            provenance.seed
        ),
        &[row],
        &provenance.line(),
    )
}

/// Reads the summary of a run, if it was evaluated.
pub fn load_summary(paths: &RunPaths) -> Option<Summary> {
    read_summary(paths)
}
