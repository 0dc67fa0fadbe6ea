//! Training one run (a config with one seed), resumable after a kill.
//!
//! A run is a function of (config, seed, thread count): the network is initialised from
//! `Rng::new(seed)`, epoch `e`'s shuffle from [`epoch_seed`]`(seed, e)`, and any other
//! randomness (the Jacobian's random projections) from the run's generator, whose state is
//! checkpointed with the model and the optimiser after every epoch (see
//! [`crate::checkpoint`]). Re-running a finished run does nothing; re-running an
//! unfinished one continues from its last complete epoch with identical bits.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result, bail};
use ndarray::{ArrayView2, s};
use specreg_data::{Mnist, batch_indices};
use specreg_nn::{Adam, AdamConfig, Network, NnError, evaluate, load_checkpoint, load_optimizer};
use specreg_nn::{NoHook, save_checkpoint, save_optimizer, train_epoch};
use specreg_regularizers::{
    EigenMode, JacobianKind, JacobianRegularizer, RegularizerError, SpectralLayer,
    SpectralRegularizer, Whitening, WhiteningStatistics,
};
use specreg_tensor::{Device, Rng};

use crate::checkpoint::{Checkpoints, RunState, Status};
use crate::config::{Config, EigenModeName, JacobianKindName, ModelKind, WhiteningStatisticsName};
use crate::metrics::{EpochRecord, ErrorRecord, write_metrics};
use crate::outputs::{Provenance, RunPaths, write_atomic};
use crate::progress::Progress;

/// What a sweep needs besides the config: data, destination, device and provenance.
#[derive(Debug)]
pub struct Context<'a> {
    /// MNIST, loaded once per command.
    pub data: &'a Mnist,
    /// The results root (`results/`).
    pub out: std::path::PathBuf,
    /// The device every run uses.
    pub device: Device,
    /// The device's name as given (`cpu`, `cuda:0`).
    pub device_name: String,
    /// Worker threads.
    pub threads: usize,
    /// The source commit.
    pub commit: String,
    /// Bars and logs.
    pub progress: &'a Progress,
}

impl Context<'_> {
    /// The provenance of a run with `seed`.
    pub fn provenance(&self, seed: u64) -> Provenance {
        Provenance {
            seed,
            commit: self.commit.clone(),
            device: self.device_name.clone(),
            threads: self.threads,
            cpu_kernels: specreg_tensor::linalg::cpu_kernels().to_string(),
        }
    }
}

/// How a training run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainOutcome {
    /// It had already finished earlier; nothing was done.
    AlreadyDone,
    /// It trained to its last epoch in this call (resumed from `resumed_from` epochs).
    Finished {
        /// Epochs that were already complete when this call started.
        resumed_from: usize,
    },
    /// It stopped with an error recorded in its metrics (now or in an earlier call); the
    /// checkpoint holds the last good epoch.
    Failed(String),
}

/// The seed of epoch `epoch`'s shuffle (0-based) in a run with `seed`: a SplitMix64-style
/// mix, so neighbouring seeds and epochs give unrelated orders.
pub fn epoch_seed(seed: u64, epoch: usize) -> u64 {
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add((epoch as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Builds the run's network (with its whitening layer, if any), initialised from `rng`.
///
/// # Errors
/// Errors of the network builders and of [`Network::insert_after`].
pub fn build_network(config: &Config, rng: &mut Rng, device: &Device) -> Result<Network> {
    let dtype = config.model.dtype.dtype();
    let mut net = match config.model.kind {
        ModelKind::Shallow if config.model.batchnorm => Network::shallow(rng, dtype, device)?,
        ModelKind::Shallow => Network::shallow_without_batchnorm(rng, dtype, device)?,
        ModelKind::Mlp => Network::mlp(rng, dtype, device)?,
        ModelKind::Cnn => Network::cnn(rng, dtype, device)?,
    };
    if let Some(w) = &config.whitening {
        let width = config.model.kind.width(&w.layer).ok_or_else(|| {
            anyhow::anyhow!(
                "whitening.layer: {} has no layer {:?}",
                config.model.kind.name(),
                w.layer
            )
        })?;
        let statistics = match w.statistics {
            WhiteningStatisticsName::Batch => WhiteningStatistics::Batch,
            WhiteningStatisticsName::Running => WhiteningStatistics::Running,
        };
        let layer = Whitening::new(&w.layer, width, w.eps)?
            .with_statistics(statistics)
            .on(dtype, device)?;
        net.insert_after(&w.layer, Box::new(layer))?;
    }
    Ok(net)
}

/// The safetensors header of every model file of a run: one key, so the bytes do not
/// depend on hash-map order. `training` is the SHA-256 of the run's training fingerprint
/// ([`Config::training_fingerprint`]), so that a model of another config is recognised.
pub fn model_metadata(
    provenance: &Provenance,
    epoch: usize,
    training: &str,
) -> BTreeMap<String, String> {
    let value = serde_json::json!({
        "seed": provenance.seed,
        "commit": provenance.commit,
        "device": provenance.device,
        "threads": provenance.threads,
        "cpu_kernels": provenance.cpu_kernels,
        "epoch": epoch,
        "training": training,
    });
    BTreeMap::from([("specreg".to_string(), value.to_string())])
}

/// The SHA-256 of the training fingerprint of `config` with `seed`, as model files record
/// it.
pub fn training_digest(config: &Config, seed: u64) -> String {
    crate::integrity::sha256_hex(config.training_fingerprint(seed).as_bytes())
}

/// Loads the finished model of a run for evaluation.
///
/// # Errors
/// A missing or mismatched model file.
pub fn load_trained(config: &Config, paths: &RunPaths, device: &Device) -> Result<Network> {
    let mut rng = Rng::new(0);
    let mut net = build_network(config, &mut rng, device)?;
    let meta = load_checkpoint(paths.model(), net.sequential_mut())
        .with_context(|| format!("loading {}", paths.model().display()))?;
    crate::checkpoint::check_trained_model(&meta, paths, config)?;
    Ok(net)
}

/// Whether a training error is a numerical failure of this run, which is recorded as the
/// run's failure so that the sweep goes on, rather than an error of the program: a NaN or
/// infinite loss, gradient, input or activation, a whitening Cholesky factorisation or an
/// eigendecomposition that failed, a NaN or infinite representation, penalty or
/// covariance, or a representation whose anchor eigenvalue λ_τ is not positive, at a step
/// or before an epoch ([`specreg_regularizers::is_numerical_failure`]).
fn is_numerical_failure(e: &NnError) -> bool {
    match e.innermost() {
        NnError::Hook(inner) => inner
            .downcast_ref::<RegularizerError>()
            .is_some_and(RegularizerError::is_numerical),
        inner => inner.is_numerical(),
    }
}

/// The regulariser of a run.
pub(crate) enum Regularizer {
    None,
    Spectral(Box<SpectralRegularizer>),
    Jacobian(JacobianRegularizer),
}

pub(crate) fn regularizer(config: &Config) -> Result<Regularizer> {
    if let Some(s) = &config.spectral {
        let names = s.layer_names(config.model.kind);
        let alphas = s.alphas(names.len());
        specreg_regularizers::check_alpha_schedule(&alphas)?;
        let layers = names
            .into_iter()
            .zip(alphas)
            .map(|(name, alpha)| SpectralLayer {
                name,
                alpha,
                tau: s.tau,
                beta: s.beta,
            })
            .collect();
        let mode = match s.mode {
            EigenModeName::Projected => EigenMode::Projected,
            EigenModeName::Exact => EigenMode::Exact,
        };
        return Ok(Regularizer::Spectral(Box::new(
            SpectralRegularizer::new(layers, mode)?.with_sort_projected(s.sort_projected),
        )));
    }
    if let Some(j) = &config.jacobian {
        let kind = match j.kind {
            JacobianKindName::InputLoss => JacobianKind::InputLoss { beta: j.beta },
            JacobianKindName::Logit => JacobianKind::Logit {
                beta: j.beta,
                projections: j.projections,
            },
        };
        return Ok(Regularizer::Jacobian(JacobianRegularizer::new(kind)?));
    }
    Ok(Regularizer::None)
}

/// The first `n` rows of the training images and labels.
pub fn train_slice(data: &Mnist, n: usize) -> (ArrayView2<'_, f32>, &[u8]) {
    let n = n.min(data.train.len());
    (
        data.train.images().slice_move(s![..n, ..]),
        &data.train.labels()[..n],
    )
}

/// The first `n` rows of the test images and labels.
pub fn test_slice(data: &Mnist, n: usize) -> (ArrayView2<'_, f32>, &[u8]) {
    let n = n.min(data.test.len());
    (
        data.test.images().slice_move(s![..n, ..]),
        &data.test.labels()[..n],
    )
}

/// Trains `config` with `seed`, resuming from its checkpoint when there is one.
///
/// # Errors
/// A run folder holding a different config, unreadable checkpoints, and errors other than
/// divergence (divergence is recorded and returned as [`TrainOutcome::Failed`]).
pub fn train(ctx: &Context<'_>, config: &Config, seed: u64) -> Result<TrainOutcome> {
    let paths = RunPaths::new(&ctx.out, config, seed);
    let ckpt = Checkpoints::new(paths.checkpoint_dir());
    let fingerprint = config.training_fingerprint(seed);
    let provenance = ctx.provenance(seed);
    let previous = ckpt.load()?;
    if let Some(state) = &previous {
        if state.fingerprint != fingerprint {
            bail!(
                "{} holds a run of a different config (another profile?); remove that folder \
                 or choose another --out",
                paths.dir.display()
            );
        }
        match &state.status {
            Status::Finished if paths.model().is_file() => return Ok(TrainOutcome::AlreadyDone),
            Status::Failed { error } => return Ok(TrainOutcome::Failed(error.error.clone())),
            _ => {}
        }
    }
    std::fs::create_dir_all(&paths.dir)
        .with_context(|| format!("creating {}", paths.dir.display()))?;
    let mut resolved = config.clone();
    resolved.seeds = vec![seed];
    resolved.device = ctx.device_name.clone();
    let header = format!(
        "# resolved config of {} seed {seed}\n# {}\n",
        config.id(),
        provenance.line()
    );
    write_atomic(
        &paths.config(),
        format!("{header}{}", resolved.to_toml()).as_bytes(),
    )?;

    let mut rng = Rng::new(seed);
    let mut net = build_network(config, &mut rng, &ctx.device)?;
    let mut adam = Adam::new(AdamConfig::new(config.train.lr))?;
    let mut state = match previous {
        Some(state) if state.epochs_done > 0 => {
            let e = state.epochs_done;
            let meta = load_checkpoint(ckpt.model(e), net.sequential_mut())
                .with_context(|| format!("resuming from {}", ckpt.model(e).display()))?;
            crate::checkpoint::check_model_provenance(
                &meta,
                &ckpt.model(e),
                seed,
                e,
                &training_digest(config, seed),
            )?;
            if let Some(change) = crate::checkpoint::resume_settings_change(&meta, &provenance) {
                ctx.progress.log(&format!(
                    "warning: {} seed {seed}: resuming after epoch {e}, but {change}",
                    config.id()
                ));
            }
            load_optimizer(ckpt.optimizer(e), &mut adam)
                .with_context(|| format!("resuming from {}", ckpt.optimizer(e).display()))?;
            rng = Rng::from_state(state.rng);
            state
        }
        _ => {
            ckpt.clear()?;
            RunState {
                fingerprint,
                epochs_done: 0,
                rng: rng.state(),
                records: Vec::new(),
                status: Status::Training,
            }
        }
    };
    let resumed_from = state.epochs_done;
    if resumed_from > 0 {
        ctx.progress.log(&format!(
            "{} seed {seed}: resuming after epoch {resumed_from}",
            config.id()
        ));
    }
    let mut reg = regularizer(config)?;
    let (train_x, train_y) = train_slice(ctx.data, config.train_images());
    let (test_x, test_y) = test_slice(ctx.data, config.test_images());
    let epochs = config.train.epochs;
    let bar = ctx
        .progress
        .bar(epochs as u64, &format!("{} s{seed}", short_name(config)));
    bar.set_position(resumed_from as u64);
    for epoch in resumed_from..epochs {
        let start = std::time::Instant::now();
        let batches = batch_indices(
            train_x.nrows(),
            config.train.batch_size,
            Some(epoch_seed(seed, epoch)),
        )?;
        let stats = match &mut reg {
            Regularizer::None => train_epoch(
                &mut net,
                &mut adam,
                train_x,
                train_y,
                &batches,
                epoch,
                &mut NoHook,
            ),
            Regularizer::Spectral(spec) => spec
                .refresh(&mut net, train_x, config.train.chunk)
                .map_err(|e| NnError::from(e).before_epoch(epoch, adam.steps_taken()))
                .and_then(|()| {
                    train_epoch(
                        &mut net,
                        &mut adam,
                        train_x,
                        train_y,
                        &batches,
                        epoch,
                        spec.as_mut(),
                    )
                }),
            Regularizer::Jacobian(jac) => jac
                .train_epoch(
                    &mut net, &mut adam, train_x, train_y, &batches, epoch, &mut rng,
                )
                .map_err(NnError::from),
        };
        let stats = match stats {
            Ok(s) => s,
            Err(e) if is_numerical_failure(&e) => {
                let error = ErrorRecord {
                    epoch: epoch + 1,
                    error: e.to_string(),
                    provenance: provenance.clone(),
                };
                write_metrics(&paths.metrics(), &state.records, Some(&error))?;
                state.status = Status::Failed {
                    error: error.clone(),
                };
                ckpt.commit(&state)?;
                bar.abandon_with_message(if matches!(e, NnError::NonFinite { .. }) {
                    "diverged"
                } else {
                    "numerical failure"
                });
                return Ok(TrainOutcome::Failed(error.error));
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("{} seed {seed}, epoch {}", config.id(), epoch + 1));
            }
        };
        let (terms, eigen_error) = match &mut reg {
            Regularizer::Spectral(spec) => (spec.take_epoch_terms(), spec.take_eigen_errors()),
            Regularizer::Jacobian(_) => (
                vec![(
                    "jacobian".to_string(),
                    stats.extra_loss
                        / config
                            .jacobian
                            .as_ref()
                            .map_or(1.0, |j| j.beta.max(f64::MIN_POSITIVE)),
                )],
                Vec::new(),
            ),
            Regularizer::None => (Vec::new(), Vec::new()),
        };
        let test_accuracy = evaluate(&mut net, test_x, test_y, config.eval.batch_size)?;
        let record = EpochRecord {
            epoch: epoch + 1,
            loss: stats.loss,
            cross_entropy: stats.cross_entropy,
            regularizer: stats.extra_loss,
            terms: terms.into_iter().collect(),
            train_accuracy: stats.accuracy,
            test_accuracy,
            eigen_error: eigen_error.into_iter().collect(),
            seconds: start.elapsed().as_secs_f64(),
            provenance: provenance.clone(),
        };
        let done = epoch + 1;
        let meta = model_metadata(&provenance, done, &training_digest(config, seed));
        std::fs::create_dir_all(ckpt.epoch_dir(done))?;
        save_checkpoint(ckpt.model(done), net.sequential(), &meta)?;
        save_optimizer(ckpt.optimizer(done), &adam)?;
        state.records.push(record);
        state.epochs_done = done;
        state.rng = rng.state();
        if done == epochs {
            save_checkpoint(paths.model(), net.sequential(), &meta)?;
            state.status = Status::Finished;
        }
        ckpt.commit(&state)?;
        write_metrics(&paths.metrics(), &state.records, None)?;
        ctx.progress.note(&format!(
            "{} seed {seed}: epoch {done}/{epochs}, loss {:.4}, test accuracy {:.4}, {:.1} s",
            config.id(),
            stats.loss,
            test_accuracy,
            start.elapsed().as_secs_f64()
        ));
        bar.set_message(format!("test acc {:.3}", test_accuracy));
        bar.inc(1);
    }
    if state.status != Status::Finished || !paths.model().is_file() {
        // Every epoch was already done but the final model file was missing.
        let meta = model_metadata(&provenance, epochs, &training_digest(config, seed));
        save_checkpoint(paths.model(), net.sequential(), &meta)?;
        state.status = Status::Finished;
        ckpt.commit(&state)?;
        write_metrics(&paths.metrics(), &state.records, None)?;
    }
    bar.finish_and_clear();
    Ok(TrainOutcome::Finished { resumed_from })
}

/// A short label for progress bars.
pub fn short_name(config: &Config) -> String {
    let id: Vec<char> = config.id().chars().collect();
    id[id.len().saturating_sub(24)..].iter().collect()
}
