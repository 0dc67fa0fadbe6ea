//! Command-line interface of `specreg`.

use std::path::PathBuf;
use std::str::FromStr;

use clap::{Args, Parser, Subcommand};
use specreg_experiments::config::{Experiment, device_name_is_valid};
use specreg_experiments::shard::Shard;

/// Reproduce the experiments of Nassar et al. (NeurIPS 2020), "On 1/n neural
/// representation and robustness": train, evaluate, and report.
#[derive(Debug, Parser)]
#[command(name = "specreg", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Options shared by every command.
    #[command(flatten)]
    pub global: Global,
}

/// Options shared by every command.
#[derive(Debug, Args)]
pub struct Global {
    /// Device: cpu, cuda or cuda:N (overrides the configs' `device`).
    #[arg(long, global = true, value_parser = device)]
    pub device: Option<String>,
    /// MNIST folder (default: $SPECREG_DATA, the per-user cache, system packages).
    #[arg(long, global = true)]
    pub data: Option<PathBuf>,
    /// Worker threads (default: all cores). Results are bit-identical only for the same
    /// thread count.
    #[arg(long, global = true, value_parser = at_least_one::<usize>)]
    pub threads: Option<usize>,
    /// Results folder.
    #[arg(long, global = true, default_value = "results")]
    pub out: PathBuf,
    /// Run only this seed (instead of the configs' seed lists).
    #[arg(long, global = true, allow_negative_numbers = true, value_parser = seed)]
    pub seed: Option<u64>,
    /// No progress bars or logs (warnings and errors are still printed).
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

/// Which configs a command acts on.
#[derive(Debug, Args, Clone)]
pub struct Select {
    /// Config files (repeatable). Without any, every config under --configs that the
    /// profile includes.
    #[arg(long = "config", value_name = "FILE")]
    pub config: Vec<PathBuf>,
    /// Folder of configs and of `profiles/`.
    #[arg(long, default_value = "configs")]
    pub configs: PathBuf,
    /// Profile: smoke, quick, paper, or a profile file.
    #[arg(long, default_value = "paper")]
    pub profile: String,
    /// Only these experiments (comma-separated: exp1,exp2,exp3), among the configs under
    /// --configs (not with --config, which names the configs itself).
    #[arg(long, value_delimiter = ',', value_parser = experiment, conflicts_with = "config")]
    pub only: Vec<String>,
    /// Only shard K of N (1-based): a deterministic share of the selected runs, balanced
    /// by estimated cost. Shards may run at the same time, on several machines, into one
    /// results folder; `specreg report` merges them.
    #[arg(long, value_name = "K/N", default_value = "1/1")]
    pub shard: Shard,
}

/// Options of `specreg report`.
#[derive(Debug, Args, Clone)]
pub struct ReportArgs {
    /// The profile name to print in the report; with it, the runs the profile selects
    /// (under --configs) that have no results yet are listed as missing.
    #[arg(long)]
    pub profile: Option<String>,
    /// Config files the report should expect (repeatable; instead of the profile's).
    #[arg(long = "config", value_name = "FILE")]
    pub config: Vec<PathBuf>,
    /// Folder of configs and of `profiles/`.
    #[arg(long, default_value = "configs")]
    pub configs: PathBuf,
    /// Only these experiments are expected (comma-separated; with --profile).
    #[arg(long, value_delimiter = ',', value_parser = experiment, conflicts_with = "config")]
    pub only: Vec<String>,
}

/// Options of `specreg slurm`.
#[derive(Debug, Args, Clone)]
pub struct SlurmArgs {
    /// The sweep to submit.
    #[command(flatten)]
    pub select: Select,
    /// Array tasks (shards). Default: enough that each task's estimate is under
    /// --hours-per-task, at most one per run.
    #[arg(long, value_parser = at_least_one::<usize>, conflicts_with = "hours_per_task")]
    pub shards: Option<usize>,
    /// Target hours of work per array task when --shards is not given.
    #[arg(long, default_value_t = 4.0, allow_negative_numbers = true)]
    pub hours_per_task: f64,
    /// Slurm partition (`#SBATCH --partition`).
    #[arg(long)]
    pub partition: Option<String>,
    /// Slurm account (`#SBATCH --account`).
    #[arg(long)]
    pub account: Option<String>,
    /// Override the per-task time limit, in minutes (default: from the estimate).
    #[arg(long, value_name = "MINUTES", value_parser = at_least_one::<u64>)]
    pub time: Option<u64>,
    /// Override the per-task memory request, in MiB (default: from the networks).
    #[arg(long, value_name = "MIB", value_parser = at_least_one::<u64>)]
    pub mem: Option<u64>,
    /// Where to write the scripts and logs/ (default: <out>/slurm).
    #[arg(long, value_name = "DIR")]
    pub script_dir: Option<PathBuf>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train runs (resuming unfinished ones, skipping finished ones).
    Train(Select),
    /// Evaluate trained runs: robustness curves, spectra, sensitivity maps.
    Eval(Select),
    /// Write spectrum.csv of trained runs.
    Spectrum(Select),
    /// Train, evaluate and write the report: the whole sweep.
    Run(Select),
    /// Write REPORT.md and the figures from whatever runs in the results folder are
    /// finished (e.g. merged from shards), and say which expected runs are missing.
    Report(ReportArgs),
    /// List the selected runs, their status and the estimated time of the work left.
    List(Select),
    /// Write a Slurm job array (one task per shard) and a dependent report job for the
    /// selected sweep, and print the sbatch line that submits them.
    Slurm(SlurmArgs),
}

/// A count that must be at least 1 (`--threads`, `--shards`, `--time`, `--mem`).
fn at_least_one<T: FromStr + PartialOrd + From<u8>>(s: &str) -> Result<T, String> {
    match s.trim().parse::<T>() {
        Ok(n) if n >= T::from(1) => Ok(n),
        Ok(_) => Err("must be at least 1".into()),
        Err(_) => Err("expected a whole number of at least 1".into()),
    }
}

/// A seed: a whole number from 0 to 2^64 - 1.
fn seed(s: &str) -> Result<u64, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("a seed is a whole number from 0 to {}", u64::MAX))
}

/// A device name the binary knows (whether the device exists is checked when it is opened).
fn device(s: &str) -> Result<String, String> {
    if device_name_is_valid(s) {
        Ok(s.trim().to_string())
    } else {
        Err("unknown device (expected cpu, cuda or cuda:N)".into())
    }
}

/// One experiment of `--only`.
fn experiment(s: &str) -> Result<String, String> {
    match Experiment::parse(s) {
        Some(e) => Ok(e.name().to_string()),
        None => Err("unknown experiment (expected exp1, exp2 or exp3)".into()),
    }
}
