//! The commands of `specreg` that plan rather than compute: `list` (with the estimate of
//! every run), `report` (merging whatever is finished and naming what is missing) and
//! `slurm` (a job array and its report job), and the cost estimate shared by them and by
//! the sweeps.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use specreg_experiments::calibrate::{Calibration, MachineTimes, calibrate, machine_key};
use specreg_experiments::config::Config;
use specreg_experiments::cost::memory_mib;
use specreg_experiments::estimate::{Plan, Steps, describe, human, long_sweep_hint, plan};
use specreg_experiments::outputs::{git_commit, remove_stale_temps};
use specreg_experiments::progress::Progress;
use specreg_experiments::report::write_report;
use specreg_experiments::shard::{Shard, shard_configs};
use specreg_experiments::slurm::{SlurmJob, time_limit_minutes};
use specreg_experiments::sweep::statuses;
use specreg_tensor::Device;

use crate::cli::{Global, ReportArgs, Select, SlurmArgs};
use crate::{selection, set_threads};

/// This machine's calibration and the priced remaining work of a selection.
pub struct Estimates {
    /// The calibration (empty when it failed: every run is then priced by the reference
    /// model, and a warning says why).
    pub calibration: Calibration,
    /// The remaining work.
    pub plan: Plan,
}

impl Estimates {
    /// Calibrates what `configs` need (cached per machine) and prices their remaining
    /// work under `out`.
    pub fn new(
        out: &Path,
        configs: &[Config],
        steps: Steps,
        (device, device_name, threads, commit): (&Device, &str, usize, &str),
        progress: &Progress,
    ) -> Estimates {
        let calibration = calibrate(configs, device, device_name, threads, commit, progress)
            .unwrap_or_else(|e| {
                progress.warn(&format!(
                    "calibration failed ({e:#}); estimating with the reference model"
                ));
                Calibration {
                    machine: machine_key(device_name, threads),
                    times: MachineTimes::default(),
                    measured_seconds: 0.0,
                    cache: None,
                }
            });
        let plan = plan(out, configs, steps, &calibration);
        Estimates { calibration, plan }
    }

    /// The lines printed before a sweep.
    pub fn describe(&self, shard: Shard, profile: &str) -> String {
        describe(&self.plan, &self.calibration, shard, profile)
    }
}

/// `specreg list`: every selected run, its state and the estimate of its remaining work.
pub fn list(out: &Path, configs: &[Config], estimates: &Estimates) {
    println!(
        "{:<40} {:>5} {:>9} {:<13} {:<9} {:>10}",
        "run", "seed", "epochs", "state", "evaluated", "estimate"
    );
    for (s, p) in statuses(out, configs).iter().zip(&estimates.plan.runs) {
        let left = p.estimate.total();
        println!(
            "{:<40} {:>5} {:>4}/{:<4} {:<13} {:<9} {:>10}",
            s.id,
            s.seed,
            s.epochs_done,
            s.epochs,
            s.state,
            if s.evaluated { "yes" } else { "no" },
            if left > 0.0 { human(left) } else { "-".into() }
        );
    }
    let total = estimates.plan.total();
    println!(
        "total: {} runs, {} with work left, estimated {} on {}",
        estimates.plan.runs.len(),
        estimates.plan.pending(),
        human(total.total()),
        estimates.calibration.machine
    );
    if let Some(hint) = long_sweep_hint(total.total()) {
        println!("{hint}");
    }
}

/// `specreg report`: merges the finished runs into `REPORT.md` and lists the expected
/// runs (those of `--profile` or `--config`) that have no results yet.
pub fn report(args: &ReportArgs, global: &Global, progress: &Progress) -> Result<ExitCode> {
    let removed = remove_stale_temps(&global.out);
    if removed > 0 {
        progress.log(&format!(
            "removed {removed} temporary files left by crashed writers"
        ));
    }
    let path = write_report(&global.out, args.profile.as_deref())?;
    progress.log(&format!("wrote {}", path.display()));
    if args.profile.is_none() && args.config.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    let select = Select {
        config: args.config.clone(),
        configs: args.configs.clone(),
        profile: args.profile.clone().unwrap_or_else(|| "paper".into()),
        only: args.only.clone(),
        shard: Shard::ALL,
    };
    let expected = match selection(&select, global).and_then(|s| s.configs()) {
        Ok(c) => c,
        Err(e) => {
            progress.warn(&format!("cannot tell which runs are missing: {e:#}"));
            return Ok(ExitCode::SUCCESS);
        }
    };
    let all = statuses(&global.out, &expected);
    let missing: Vec<_> = all.iter().filter(|s| !s.evaluated).collect();
    if missing.is_empty() {
        progress.log(&format!("the report holds all {} expected runs", all.len()));
    } else {
        progress.warn(&format!(
            "the report holds {} of {} expected runs; missing:",
            all.len() - missing.len(),
            all.len()
        ));
        for s in missing {
            progress.warn(&format!(
                "  {} seed {}: {} ({}/{} epochs), not evaluated",
                s.id, s.seed, s.state, s.epochs_done, s.epochs
            ));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn absolute(p: &Path) -> Result<std::path::PathBuf> {
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        Ok(std::env::current_dir()
            .context("reading the current folder")?
            .join(p))
    }
}

/// `specreg slurm`: writes the job array and the report job, prints the sbatch line.
pub fn slurm(args: &SlurmArgs, global: &Global, progress: &Progress) -> Result<ExitCode> {
    let select = &args.select;
    if !select.shard.is_all() {
        bail!("specreg slurm makes the shards itself (--shards N); drop --shard");
    }
    if args.shards == Some(0) {
        bail!("--shards must be at least 1");
    }
    if args.hours_per_task.is_nan() || args.hours_per_task <= 0.0 {
        bail!(
            "--hours-per-task must be positive, got {}",
            args.hours_per_task
        );
    }
    let sel = selection(select, global)?;
    let configs = sel.configs()?;
    let runs: usize = configs.iter().map(|c| c.seeds.len()).sum();
    if runs == 0 {
        bail!("no config selected (check --config, --configs, --profile and --only)");
    }
    let threads = set_threads(global.threads)?;
    let device_name = global
        .device
        .clone()
        .unwrap_or_else(|| configs[0].device.clone());
    let device = Device::parse(&device_name).with_context(|| format!("device {device_name:?}"))?;
    let both = Steps {
        train: true,
        eval: true,
    };
    let commit = git_commit();
    let est = Estimates::new(
        &global.out,
        &configs,
        both,
        (&device, &device_name, threads, &commit),
        progress,
    );
    let total = est.plan.total().total();
    let shards = args.shards.unwrap_or_else(|| {
        ((total / (3600.0 * args.hours_per_task)).ceil() as usize).clamp(1, runs)
    });
    // The longest shard's remaining work, priced on this machine.
    let mut longest = 0.0f64;
    for index in 1..=shards {
        let work: f64 = shard_configs(&configs, Shard::new(index, shards)?)
            .iter()
            .flat_map(|c| c.seeds.iter().map(move |&s| (c.id(), s)))
            .filter_map(|(id, seed)| {
                est.plan
                    .runs
                    .iter()
                    .find(|r| r.id == id && r.seed == seed)
                    .map(|r| r.estimate.total())
            })
            .sum();
        longest = longest.max(work);
    }
    let mut global_args = vec![
        "--out".to_string(),
        global.out.display().to_string(),
        "--threads".into(),
        threads.to_string(),
    ];
    for (flag, value) in [
        ("--device", global.device.clone()),
        (
            "--data",
            global.data.as_ref().map(|d| d.display().to_string()),
        ),
        ("--seed", global.seed.map(|s| s.to_string())),
    ] {
        if let Some(v) = value {
            global_args.extend([flag.to_string(), v]);
        }
    }
    let mut expect = vec![
        "--profile".to_string(),
        select.profile.clone(),
        "--configs".into(),
        select.configs.display().to_string(),
    ];
    if !select.only.is_empty() {
        expect.extend(["--only".into(), select.only.join(",")]);
    }
    for f in &select.config {
        expect.extend(["--config".into(), f.display().to_string()]);
    }
    let workdir = std::env::current_dir().context("reading the current folder")?;
    let script_dir = absolute(
        &args
            .script_dir
            .clone()
            .unwrap_or_else(|| global.out.join("slurm")),
    )?;
    let binary = std::env::current_exe().context("locating the specreg binary")?;
    let job = SlurmJob {
        name: format!("specreg-{}", sel.profile.name),
        binary: binary.canonicalize().unwrap_or(binary),
        workdir,
        global_args,
        run_args: expect.clone(),
        report_args: expect,
        shards,
        cpus_per_task: threads,
        mem_mib: args
            .mem
            .unwrap_or_else(|| configs.iter().map(memory_mib).max().unwrap_or(2000)),
        time_minutes: args.time.unwrap_or_else(|| time_limit_minutes(longest)),
        partition: args.partition.clone(),
        account: args.account.clone(),
        data_env: std::env::var("SPECREG_DATA").ok().filter(|d| !d.is_empty()),
        script_dir,
    };
    let (array, report) = job.write()?;
    progress.log(&format!(
        "{runs} runs in {shards} array tasks, each --cpus-per-task={threads} --mem={}M \
         --time={} min (the longest shard is estimated at {} on {}; all runs {})",
        job.mem_mib,
        job.time_minutes,
        human(longest),
        est.calibration.machine,
        human(total)
    ));
    progress.log(&format!(
        "wrote {} and {}; submit both with:",
        array.display(),
        report.display()
    ));
    println!("{}", job.sbatch_line());
    Ok(ExitCode::SUCCESS)
}
