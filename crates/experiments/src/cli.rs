//! Command-line interface of `specreg`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
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
    #[arg(long, global = true)]
    pub device: Option<String>,
    /// MNIST folder (default: $SPECREG_DATA, the per-user cache, system packages).
    #[arg(long, global = true)]
    pub data: Option<PathBuf>,
    /// Worker threads (default: all cores). Results are bit-identical only for the same
    /// thread count.
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// Results folder.
    #[arg(long, global = true, default_value = "results")]
    pub out: PathBuf,
    /// Run only this seed (instead of the configs' seed lists).
    #[arg(long, global = true)]
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
    /// Only these experiments (comma-separated: exp1,exp2,exp3).
    #[arg(long, value_delimiter = ',')]
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
    /// Only these experiments are expected (comma-separated).
    #[arg(long, value_delimiter = ',')]
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
    #[arg(long)]
    pub shards: Option<usize>,
    /// Target hours of work per array task when --shards is not given.
    #[arg(long, default_value_t = 4.0)]
    pub hours_per_task: f64,
    /// Slurm partition (`#SBATCH --partition`).
    #[arg(long)]
    pub partition: Option<String>,
    /// Slurm account (`#SBATCH --account`).
    #[arg(long)]
    pub account: Option<String>,
    /// Override the per-task time limit, in minutes (default: from the estimate).
    #[arg(long, value_name = "MINUTES")]
    pub time: Option<u64>,
    /// Override the per-task memory request, in MiB (default: from the networks).
    #[arg(long, value_name = "MIB")]
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
