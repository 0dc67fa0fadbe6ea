//! Command-line interface of `specreg`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

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
    /// Write REPORT.md and the figures from the results folder.
    Report {
        /// The profile name to print in the report.
        #[arg(long)]
        profile: Option<String>,
    },
    /// List the selected runs and their status.
    List(Select),
}
