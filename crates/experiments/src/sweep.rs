//! The loops behind the CLI: choose configs, then train, evaluate or measure every
//! (config, seed) run, each failure reported and the sweep carried on.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

use crate::checkpoint::{Checkpoints, Status};
use crate::config::{Config, Experiment};
use crate::evaluation::{EvalOutcome, evaluate_run, load_summary, remove_summary};
use crate::integrity::seal_summary;
use crate::outputs::{RunPaths, remove_stale_temps, write_atomic};
use crate::profile::{Profile, config_files};
use crate::representations::{spectra, write_spectrum_csv};
use crate::runner::{Context, TrainOutcome, load_trained, train};

/// Which configs a command works on.
#[derive(Debug, Clone)]
pub struct Selection {
    /// Explicit config files (empty: every config under `configs_dir` the profile includes).
    pub files: Vec<PathBuf>,
    /// The configs folder.
    pub configs_dir: PathBuf,
    /// The profile (overrides and, without explicit files, the included configs).
    pub profile: Profile,
    /// Restrict to these experiments (empty: all).
    pub only: Vec<Experiment>,
    /// Run only this seed instead of the configs' seeds.
    pub seed: Option<u64>,
    /// Override every config's device.
    pub device: Option<String>,
}

impl Selection {
    /// The selected configs, resolved (profile overrides applied), sorted by experiment and
    /// file name.
    ///
    /// # Errors
    /// Any config that fails to load or validate (the whole selection is rejected: a typo in
    /// one config should not silently drop it from a sweep).
    pub fn configs(&self) -> Result<Vec<Config>> {
        let explicit = !self.files.is_empty();
        let files = if explicit {
            self.files.clone()
        } else {
            config_files(&self.configs_dir)?
        };
        let mut out = Vec::new();
        for f in &files {
            // A profile's overrides need only suit the configs it includes (the quick
            // profile's batch sizes break the batch-size rule of excluded ones), so the
            // selection is made on the raw file before validation.
            let raw = Config::read_table(f)?;
            if !explicit && raw_id(&raw).is_some_and(|id| !self.profile.includes(&id)) {
                continue;
            }
            let mut c = self.profile.config_from_table(raw, f)?;
            if !explicit && !self.profile.includes(&c.id()) {
                continue;
            }
            if !self.only.is_empty() && !self.only.contains(&c.experiment) {
                continue;
            }
            if let Some(s) = self.seed {
                c.seeds = vec![s];
            }
            if let Some(d) = &self.device {
                c.device = d.clone();
            }
            out.push(c);
        }
        if let Some(dup) = out
            .iter()
            .enumerate()
            .find(|(i, c)| out[..*i].iter().any(|o| o.id() == c.id()))
        {
            anyhow::bail!("two configs share the results folder {}", dup.1.id());
        }
        Ok(out)
    }
}

/// `<experiment>/<variant>` of a config table as written, before overrides and validation;
/// `None` when it lacks either (loading it then reports the error).
fn raw_id(table: &toml::Table) -> Option<String> {
    let exp = table.get("experiment")?.as_str()?;
    let variant = table.get("variant")?.as_str()?;
    Some(format!("{exp}/{variant}"))
}

/// The wall time one step of a sweep (training, evaluation, …) took on one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunTime {
    /// `<experiment>/<variant>`.
    pub id: String,
    /// The seed.
    pub seed: u64,
    /// Wall time of the step.
    pub elapsed: std::time::Duration,
}

/// Counts of what a sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// Runs done in this call.
    pub done: usize,
    /// Runs that were already complete.
    pub skipped: usize,
    /// Runs that resumed from a checkpoint.
    pub resumed: usize,
    /// Runs that diverged (now or before).
    pub diverged: usize,
    /// Runs not ready for this step (e.g. evaluating an unfinished run).
    pub not_ready: usize,
    /// Runs that failed with an error, with the message.
    pub errors: Vec<String>,
    /// The wall time of every run's step, in sweep order.
    pub timings: Vec<RunTime>,
    /// An error that stopped the whole sweep: the results folder cannot be written (a full
    /// disk, a read-only file system, no permission), so the other runs would fail alike.
    pub stopped: Option<String>,
}

/// Whether `e` says the results folder cannot be written at all (rather than that one run
/// failed): no space, a read-only file system, no permission, a quota.
pub fn is_storage_error(e: &anyhow::Error) -> bool {
    use std::io::ErrorKind;
    e.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                ErrorKind::StorageFull
                    | ErrorKind::ReadOnlyFilesystem
                    | ErrorKind::PermissionDenied
                    | ErrorKind::QuotaExceeded
            )
        })
    })
}

/// Runs `step` on every (config, seed) run under one progress bar labelled `label`; a run
/// whose `step` fails is logged and counted in [`SweepReport::errors`], and the sweep goes
/// on with the others, unless the results folder cannot be written
/// ([`is_storage_error`]): then the sweep stops with [`SweepReport::stopped`]. Before each run, temporary files that a crashed writer left in its
/// folder are removed; each run's wall time is kept in [`SweepReport::timings`].
fn for_each_run(
    ctx: &Context<'_>,
    configs: &[Config],
    label: &str,
    mut step: impl FnMut(&Config, u64, &mut SweepReport) -> Result<()>,
) -> SweepReport {
    let mut report = SweepReport::default();
    let runs: Vec<(&Config, u64)> = configs
        .iter()
        .flat_map(|c| c.seeds.iter().map(move |s| (c, *s)))
        .collect();
    let bar = ctx.progress.bar(runs.len() as u64, label);
    for (config, seed) in runs {
        bar.set_message(format!("{} seed {seed}", config.id()));
        remove_stale_temps(&RunPaths::new(&ctx.out, config, seed).dir);
        let start = std::time::Instant::now();
        let result = step(config, seed, &mut report);
        report.timings.push(RunTime {
            id: config.id(),
            seed,
            elapsed: start.elapsed(),
        });
        if let Err(e) = result {
            let msg = format!("{} seed {seed}: {e:#}", config.id());
            if is_storage_error(&e) {
                report.stopped = Some(msg);
                break;
            }
            ctx.progress.warn(&msg);
            report.errors.push(msg);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    report
}

/// Trains every selected run.
pub fn train_all(ctx: &Context<'_>, configs: &[Config]) -> SweepReport {
    for_each_run(ctx, configs, "train runs", |config, seed, report| {
        crate::kill_points::phase(&format!("train {} seed{seed}", config.id()));
        match train(ctx, config, seed)? {
            TrainOutcome::AlreadyDone => report.skipped += 1,
            TrainOutcome::Finished { resumed_from } => {
                report.done += 1;
                if resumed_from > 0 {
                    report.resumed += 1;
                }
            }
            TrainOutcome::Failed(msg) => {
                report.diverged += 1;
                ctx.progress
                    .warn(&format!("{} seed {seed} stopped: {msg}", config.id()));
            }
        }
        Ok(())
    })
}

/// Evaluates every selected run that finished training.
pub fn evaluate_all(ctx: &Context<'_>, configs: &[Config]) -> SweepReport {
    for_each_run(ctx, configs, "eval runs", |config, seed, report| {
        crate::kill_points::phase(&format!("eval {} seed{seed}", config.id()));
        match evaluate_run(ctx, config, seed)? {
            EvalOutcome::Evaluated => report.done += 1,
            EvalOutcome::AlreadyDone => report.skipped += 1,
            EvalOutcome::NotTrained => report.not_ready += 1,
        }
        Ok(())
    })
}

/// Writes `spectrum.csv` of every selected run that finished training.
pub fn spectrum_all(ctx: &Context<'_>, configs: &[Config]) -> SweepReport {
    for_each_run(ctx, configs, "spectra", |config, seed, report| {
        let paths = RunPaths::new(&ctx.out, config, seed);
        if !paths.model().is_file() {
            report.not_ready += 1;
            return Ok(());
        }
        // An evaluated run's summary covers spectrum.csv: check the folder first, and seal
        // the summary again over the new file.
        // (removed while spectrum.csv is rewritten, so that a kill in between leaves a run
        // to evaluate again rather than a summary that no longer matches).
        let summary = load_summary(&paths)?;
        let mut net = load_trained(config, &paths, &ctx.device)?;
        let s = spectra(ctx, config, &mut net)?;
        remove_summary(&paths)?;
        write_spectrum_csv(&paths, &ctx.provenance(seed), &s)?;
        if let Some(summary) = summary {
            write_atomic(
                &paths.summary(),
                seal_summary(&summary, &paths.dir)?.as_bytes(),
            )?;
        }
        report.done += 1;
        Ok(())
    })
}

/// The status of one run, for `specreg list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunStatus {
    /// `<experiment>/<variant>`.
    pub id: String,
    /// The seed.
    pub seed: u64,
    /// Completed epochs.
    pub epochs_done: usize,
    /// Epochs in the config.
    pub epochs: usize,
    /// `new`, `training`, `finished`, `diverged`, `other config` or `unreadable`.
    pub state: String,
    /// Whether `summary.json` exists.
    pub evaluated: bool,
}

/// The status of every selected run under `out`.
pub fn statuses(out: &Path, configs: &[Config]) -> Vec<RunStatus> {
    let mut v = Vec::new();
    for c in configs {
        for &seed in &c.seeds {
            let paths = RunPaths::new(out, c, seed);
            let (epochs_done, state) = match Checkpoints::new(paths.checkpoint_dir()).load() {
                Ok(None) => (0, "new".to_string()),
                Ok(Some(s)) if s.fingerprint != c.training_fingerprint(seed) => {
                    (s.epochs_done, "other config".into())
                }
                Ok(Some(s)) => (
                    s.epochs_done,
                    match s.status {
                        Status::Training => "training",
                        Status::Finished => "finished",
                        Status::Failed { .. } => "diverged",
                    }
                    .into(),
                ),
                Err(_) => (0, "unreadable".into()),
            };
            v.push(RunStatus {
                id: c.id(),
                seed,
                epochs_done,
                epochs: c.train.epochs,
                state,
                evaluated: matches!(load_summary(&paths), Ok(Some(_))),
            });
        }
    }
    v
}
