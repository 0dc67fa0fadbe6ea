//! `specreg`: train, evaluate and report the experiments of Nassar et al. (NeurIPS 2020).

mod cli;
mod commands;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use clap::Parser;
use specreg_data::{DatasetKind, Mnist};
use specreg_experiments::ConfigError;
use specreg_experiments::config::{Config, Experiment, table_sets};
use specreg_experiments::estimate::{Steps, TimingRecord};
use specreg_experiments::outputs::git_commit;
use specreg_experiments::profile::Profile;
use specreg_experiments::progress::Progress;
use specreg_experiments::report::write_report;
use specreg_experiments::runner::Context;
use specreg_experiments::shard::shard_configs;
use specreg_experiments::sweep::{Selection, SweepReport, evaluate_all, spectrum_all, train_all};
use specreg_tensor::Device;

use crate::cli::{Cli, Command, Global, Select};
use crate::commands::{Estimates, list, report, slurm};

/// Large buffers freed by one step are reused by the next instead of being mapped afresh
/// (see `BufferCache`); the numbers are unchanged.
#[global_allocator]
static ALLOC: specreg_tensor::BufferCache = specreg_tensor::BufferCache::new();

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

pub(crate) fn selection(select: &Select, global: &Global) -> Result<Selection> {
    let profile = if select.profile == "paper"
        && !select.configs.join("profiles").join("paper.toml").is_file()
    {
        Profile::paper()
    } else {
        Profile::load(&select.profile, &select.configs)?
    };
    let only = select
        .only
        .iter()
        .map(|s| {
            Experiment::parse(s)
                .with_context(|| format!("--only: unknown experiment {s:?} (exp1, exp2, exp3)"))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Selection {
        files: select.config.clone(),
        configs_dir: select.configs.clone(),
        profile,
        only,
        seed: global.seed,
        device: global.device.clone(),
    })
}

pub(crate) fn set_threads(threads: Option<usize>) -> Result<usize> {
    let n = match threads {
        Some(0) => bail!("--threads must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
        .context("setting up the thread pool")?;
    Ok(n)
}

/// The file of `--profile` (as [`Profile::load`] finds it).
fn profile_file(select: &Select) -> PathBuf {
    Profile::path(&select.profile, &select.configs)
}

/// A config error about a key that one of the profile's override tables sets (the last of
/// them in merge order: `all`, the experiment, the network) says so: the value to fix is
/// in the profile's file, not in the config's.
fn name_the_override(e: anyhow::Error, select: &Select, profile: &Profile) -> anyhow::Error {
    let Some(ConfigError::Invalid { origin, key, .. }) = e.downcast_ref::<ConfigError>() else {
        return e;
    };
    let Ok(raw) = Config::read_table(Path::new(origin)) else {
        return e;
    };
    let Some((label, _)) = profile
        .labelled_overrides_for(&raw)
        .into_iter()
        .rev()
        .find(|(_, t)| table_sets(t, key))
    else {
        return e;
    };
    let section = key
        .rsplit_once('.')
        .map(|(parent, _)| format!(".{parent}"))
        .unwrap_or_default();
    anyhow::anyhow!(
        "{e:#} (set by [overrides.{label}{section}] of profile {})",
        profile_file(select).display()
    )
}

/// Ends the command with the one error that stopped a sweep because the results folder
/// cannot be written (nothing after it, timing and report included, could be written).
fn stop_if_unwritable(r: &SweepReport) -> Result<()> {
    match &r.stopped {
        Some(msg) => bail!("{msg}; stopped: the results folder cannot be written"),
        None => Ok(()),
    }
}

fn summarize(progress: &Progress, what: &str, r: &SweepReport) {
    progress.log(&format!(
        "{what}: {} done ({} resumed), {} already done, {} diverged, {} not ready, {} errors",
        r.done,
        r.resumed,
        r.skipped,
        r.diverged,
        r.not_ready,
        r.errors.len()
    ));
}

/// MNIST from `--data`, else from `SPECREG_DATA` or the per-user cache; when it is in none
/// of them, it is downloaded into the cache (digest-checked) first.
fn load_mnist(dir: Option<&std::path::Path>, progress: &Progress) -> Result<Mnist> {
    if let Some(dir) = dir {
        return Mnist::load(dir)
            .with_context(|| format!("loading MNIST from --data {}", dir.display()));
    }
    if let Err(specreg_data::DataError::NotFound { .. }) =
        specreg_data::locate(DatasetKind::Mnist, None)
    {
        progress.log("MNIST is not in SPECREG_DATA or the cache; downloading it into the cache");
    }
    specreg_data::load_or_download(DatasetKind::Mnist, None).context(
        "loading MNIST (pass --data DIR or set SPECREG_DATA to the folder of the four files)",
    )
}

fn run(cli: Cli) -> Result<ExitCode> {
    let global = &cli.global;
    let progress = Progress::new(global.quiet);
    let select = match &cli.command {
        Command::Report(args) => {
            if !args.only.is_empty() && args.profile.is_none() {
                bail!(
                    "--only {} needs --profile: it narrows the runs the profile expects, and \
                     without --profile the report expects none",
                    args.only.join(",")
                );
            }
            return report(args, global, &progress);
        }
        Command::Slurm(args) => return slurm(args, global, &progress),
        Command::Train(s)
        | Command::Eval(s)
        | Command::Spectrum(s)
        | Command::Run(s)
        | Command::List(s) => s,
    };
    let sel = selection(select, global)?;
    let all = sel
        .configs()
        .map_err(|e| name_the_override(e, select, &sel.profile))?;
    if all.is_empty() {
        bail!("no config selected (check --config, --configs, --profile and --only)");
    }
    let shard = select.shard;
    let configs = shard_configs(&all, shard);
    if configs.is_empty() {
        progress.log(&format!(
            "shard {shard} has no runs (the selection has {} runs)",
            all.iter().map(|c| c.seeds.len()).sum::<usize>()
        ));
        return Ok(ExitCode::SUCCESS);
    }
    let threads = set_threads(global.threads)?;
    let device_name = global
        .device
        .clone()
        .unwrap_or_else(|| configs[0].device.clone());
    if let Some(c) = configs.iter().find(|c| c.device != device_name) {
        bail!(
            "{} asks for device {:?} but another config asks for {device_name:?}; pass --device",
            c.id(),
            c.device
        );
    }
    let device = Device::parse(&device_name).with_context(|| format!("device {device_name:?}"))?;
    let commit = git_commit();
    let steps = Steps {
        train: matches!(
            cli.command,
            Command::Train(_) | Command::Run(_) | Command::List(_)
        ),
        eval: matches!(
            cli.command,
            Command::Eval(_) | Command::Run(_) | Command::List(_)
        ),
    };
    let estimates = (steps.train || steps.eval).then(|| {
        Estimates::new(
            &global.out,
            &configs,
            steps,
            (&device, &device_name, threads, &commit),
            &progress,
        )
    });
    if let Command::List(_) = &cli.command {
        let estimates = estimates.context("list always estimates")?;
        list(&global.out, &configs, &estimates);
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(e) = &estimates {
        for line in e.describe(shard, &sel.profile.name).lines() {
            progress.log(line);
        }
    }
    let data = load_mnist(global.data.as_deref(), &progress)?;
    let ctx = Context {
        data: &data,
        out: global.out.clone(),
        device,
        device_name,
        threads,
        commit,
        progress: &progress,
    };
    let mut errors = 0;
    let started = std::time::Instant::now();
    let (mut train_times, mut eval_times) = (Vec::new(), Vec::new());
    if steps.train {
        let r = train_all(&ctx, &configs);
        stop_if_unwritable(&r)?;
        summarize(&progress, "train", &r);
        errors += r.errors.len();
        train_times = r.timings;
    }
    if steps.eval {
        let r = evaluate_all(&ctx, &configs);
        stop_if_unwritable(&r)?;
        summarize(&progress, "eval", &r);
        errors += r.errors.len();
        eval_times = r.timings;
    }
    if let Command::Spectrum(_) = cli.command {
        let r = spectrum_all(&ctx, &configs);
        stop_if_unwritable(&r)?;
        summarize(&progress, "spectrum", &r);
        errors += r.errors.len();
    }
    if let Some(e) = &estimates {
        let record = TimingRecord::new(
            &e.plan,
            &e.calibration,
            &sel.profile.name,
            shard,
            &train_times,
            &eval_times,
            started.elapsed(),
        );
        let command = match cli.command {
            Command::Train(_) => "train",
            Command::Eval(_) => "eval",
            _ => "run",
        };
        let path = TimingRecord::path(&global.out, command, shard);
        record.write(&path)?;
        progress.log(&format!("{} (kept in {})", record.line(), path.display()));
        if let Some(ratio) = record.calibration_off_by() {
            let what = format!(
                "the median run's estimate was {ratio:.2}× its measured time: this machine's \
                 calibration and its speed now disagree (one of them was measured while the \
                 machine was busy, or the host changed)"
            );
            match e.calibration.forget() {
                Ok(true) => progress.warn(&format!(
                    "{what}; it is dropped from the cache, so the next command measures afresh"
                )),
                Ok(false) => progress.warn(&what),
                Err(err) => progress.warn(&format!("{what}; dropping it failed: {err:#}")),
            }
        }
    }
    if let Command::Run(s) = &cli.command {
        if shard.is_all() {
            let path = write_report(&global.out, Some(&s.profile))?;
            progress.log(&format!("wrote {}", path.display()));
        } else {
            progress.log(&format!(
                "shard {shard} done; once every shard has finished, `specreg report --profile \
                 {} --out {}` merges them",
                s.profile,
                global.out.display()
            ));
        }
    }
    if errors > 0 {
        eprintln!("{errors} run(s) failed; see the messages above");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
