//! Evaluating a trained run: clean accuracy, FGSM / PGD / white-noise robustness curves,
//! the eigenspectrum of every hidden layer and sensitivity maps of the last one.
//!
//! Outputs (in the run folder): `robustness.csv`, `spectrum.csv`, `sensitivity.csv`,
//! `sensitivity.png` and `summary.json`, which the report reads. Evaluation is skipped when
//! `summary.json` already matches the trained model and the evaluation settings.

use std::fmt::Write as _;

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};
use specreg_attacks::{EvalOptions, NetworkInMode, RobustnessCurve};
use specreg_nn::Mode;

use crate::attack_plan::attack_specs;
pub use crate::attack_plan::pgd_config;
use crate::checkpoint::{Checkpoints, Status};
use crate::config::{Config, Role};
use crate::outputs::{Provenance, RunPaths, write_atomic};
use crate::reading::Reading;
use crate::representations::{
    layer_statistics, sensitivity_maps, spectra_of, write_sensitivity, write_spectrum_csv,
};
use crate::runner::{Context, load_trained, test_slice};

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

/// Reads the summary of a run, if it was evaluated.
pub fn load_summary(paths: &RunPaths) -> Option<Summary> {
    read_summary(paths)
}
