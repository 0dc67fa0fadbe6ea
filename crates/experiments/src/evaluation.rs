//! Evaluating a trained run: clean accuracy, FGSM / PGD / white-noise robustness curves,
//! the eigenspectrum of every hidden layer and sensitivity maps of the last one.
//!
//! Outputs (in the run folder): `robustness.csv`, `spectrum.csv`, `sensitivity.csv`,
//! `sensitivity.png` and `summary.json`, which the report reads. Evaluation is skipped when
//! `summary.json` already matches the trained model and the evaluation settings.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};
use specreg_attacks::{EvalOptions, NetworkInMode, RobustnessCurve};
use specreg_nn::Mode;

use crate::attack_plan::attack_specs;
pub use crate::attack_plan::pgd_config;
use crate::checkpoint::{Checkpoints, Status};
use crate::config::{Config, Role};
use crate::integrity::{RESULTS_FORMAT, ROBUSTNESS_HEADER, ResultsError, seal_summary, verify_run};
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
    /// Input gradients the attack evaluated at each grid value, summed over the test
    /// images (empty in summaries written before it was recorded). With early exit this
    /// is what the attack actually cost; without, images × steps.
    #[serde(default)]
    pub gradient_evaluations: Vec<u64>,
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
    /// The results format ([`RESULTS_FORMAT`](crate::integrity::RESULTS_FORMAT)).
    pub format: u64,
    /// SHA-256 of every other file of the run folder when the summary was written
    /// (`metrics.jsonl` without its `seconds`), by file name.
    pub files: BTreeMap<String, String>,
    /// SHA-256 of this summary's text with this field empty (the last field).
    pub digest: String,
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

/// The run's summary once its format and digests check out (`None`: not evaluated yet).
fn read_summary(paths: &RunPaths) -> Result<Option<Summary>, ResultsError> {
    verify_run(&paths.dir)
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
    // A summary from another results format, or of a folder edited since, is an error
    // naming the file: evaluating again would overwrite what someone may still need.
    if let Some(s) = read_summary(&paths)?
        && s.training_fingerprint == training
        && s.eval_fingerprint == eval
    {
        return Ok(EvalOutcome::AlreadyDone);
    }
    // The stale summary goes first: a kill during the evaluation below must leave a run
    // that is not evaluated, not a summary whose digests no longer match the new files.
    remove_summary(&paths)?;
    let provenance = ctx.provenance(seed);
    let mut net = load_trained(config, &paths, &ctx.device)?;
    let (test_x, test_y) = test_slice(ctx.data, config.test_images());

    // Robustness curves, one bar step per gradient evaluation.
    let specs = attack_specs(config, seed, |mode| net.samples_independent(mode));
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
        let evaluated: u64 = curve.gradient_evaluations().iter().sum();
        let planned = spec.cost * curve.num_images as u64;
        let work = if spec.attack.early_exit() && planned > 0 {
            format!(
                ", early exit: {:.0}% of the planned gradient evaluations",
                100.0 * evaluated as f64 / planned as f64
            )
        } else {
            String::new()
        };
        ctx.progress.note(&format!(
            "{} seed {seed}: {} done, clean accuracy {:.4}{work}",
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
                gradient_evaluations: c.gradient_evaluations(),
            })
            .collect(),
        flags,
        spectra,
        sensitivity_layer: layer,
        sensitivity_ranks: maps.iter().map(|m| m.0).collect(),
        provenance,
        format: RESULTS_FORMAT.into(),
        files: BTreeMap::new(),
        digest: String::new(),
    };
    let sealed = seal_summary(&summary, &paths.dir)?;
    write_atomic(&paths.summary(), sealed.as_bytes())?;
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
    text.push_str(&format!("{ROBUSTNESS_HEADER}\n"));
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

/// Removes a run's `summary.json`, if there is one.
///
/// # Errors
/// I/O errors other than a missing file.
pub fn remove_summary(paths: &RunPaths) -> Result<()> {
    match std::fs::remove_file(paths.summary()) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", paths.summary().display()))
        }
        _ => Ok(()),
    }
}

/// Reads the summary of a run, if it was evaluated, after checking its format and the
/// digests of the run's files.
///
/// # Errors
/// [`ResultsError`] naming the file of another format, malformed or edited.
pub fn load_summary(paths: &RunPaths) -> Result<Option<Summary>, ResultsError> {
    read_summary(paths)
}
