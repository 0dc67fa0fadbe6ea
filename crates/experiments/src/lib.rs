//! # specreg-experiments
//!
//! The library behind the `specreg` binary: experiments 1–3 of Nassar et al. (NeurIPS
//! 2020), "On 1/n neural representation and robustness", end to end.
//!
//! - [`config`]: the TOML schema of `configs/**.toml` (unknown keys and out-of-range values
//!   are errors naming the key) and [`profile`]: which configs a sweep runs and with which
//!   reductions (`smoke`, `quick`, `paper`);
//! - [`runner`]: one resumable training run (per-epoch atomic checkpoints of model,
//!   optimiser and random state, see [`checkpoint`]), with [`metrics`] per epoch;
//! - [`evaluation`]: clean and robust accuracy (FGSM, PGD, noise), spectra of every hidden
//!   layer and sensitivity maps of the last one;
//! - [`plots`] and [`report`]: figures (PNG and SVG) and `REPORT.md` with a claims table;
//! - [`sweep`]: the loops behind the CLI's commands, with [`progress`] bars;
//! - [`outputs`]: the results layout, atomic writes and provenance;
//! - [`shard`]: `--shard K/N`, a cost-balanced share of a sweep; [`slurm`]: job-array
//!   scripts; [`cost`], [`calibrate`] and [`estimate`]: what a sweep will cost here.
#![warn(missing_docs)]

mod attack_plan;
pub mod calibrate;
pub mod checkpoint;
pub mod claims;
pub mod config;
pub mod cost;
pub mod error;
pub mod estimate;
pub mod evaluation;
pub mod hypothesis;
pub mod integrity;
pub mod kill_points;
pub mod metrics;
pub mod outputs;
pub mod plots;
mod probes;
pub mod profile;
pub mod progress;
pub mod reading;
pub mod report;
pub mod representations;
pub mod results;
pub mod runner;
pub mod shard;
pub mod slurm;
pub mod stats;
pub mod sweep;

pub use config::{Config, Experiment, ModelKind};
pub use error::ConfigError;
pub use profile::Profile;
