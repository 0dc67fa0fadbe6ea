//! What a sweep will cost before it starts, and how that compared with what it took.
//!
//! [`plan`] prices the work left in every selected run (epochs not yet trained, an
//! evaluation not yet written) with this machine's [`Calibration`], falling back to the
//! reference model of [`crate::cost`] for a run the calibration does not cover. After the
//! sweep, [`TimingRecord`] holds the estimate and the measured seconds per run and in
//! total; it is written to `timing.json` in the results folder.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::calibrate::Calibration;
use crate::config::Config;
use crate::cost::{RunEstimate, estimate, reference_units};
use crate::outputs::write_atomic;
use crate::shard::Shard;
use crate::sweep::{RunTime, statuses};

/// Which steps a command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Steps {
    /// Training.
    pub train: bool,
    /// Evaluation.
    pub eval: bool,
}

/// The estimate of one run's remaining work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedRun {
    /// `<experiment>/<variant>`.
    pub id: String,
    /// The seed.
    pub seed: u64,
    /// The remaining work.
    pub estimate: RunEstimate,
    /// Whether the estimate comes from this machine's calibration (else the reference
    /// model).
    pub calibrated: bool,
}

/// The remaining work of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Every selected run, in sweep order.
    pub runs: Vec<PlannedRun>,
}

impl Plan {
    /// The sum over runs.
    pub fn total(&self) -> RunEstimate {
        let mut t = RunEstimate::default();
        for r in &self.runs {
            t.add(&r.estimate);
        }
        t
    }

    /// Runs with work left.
    pub fn pending(&self) -> usize {
        self.runs
            .iter()
            .filter(|r| r.estimate.total() > 0.0)
            .count()
    }
}

/// Prices the remaining work of every run of `configs` under `out`.
pub fn plan(out: &Path, configs: &[Config], steps: Steps, calibration: &Calibration) -> Plan {
    let mut runs = Vec::new();
    let status = statuses(out, configs);
    let mut s = status.iter();
    for c in configs {
        let units = calibration.units(c);
        let calibrated = units.is_some();
        let units = units.unwrap_or_else(|| reference_units(c));
        for &seed in &c.seeds {
            let Some(st) = s.next() else { break };
            let stuck = matches!(
                st.state.as_str(),
                "diverged" | "other config" | "unreadable"
            );
            let epochs_left = if steps.train && !stuck {
                c.train.epochs.saturating_sub(st.epochs_done)
            } else {
                0
            };
            let evaluate = steps.eval && !stuck && !st.evaluated;
            runs.push(PlannedRun {
                id: c.id(),
                seed,
                estimate: estimate(c, &units, epochs_left, evaluate),
                calibrated,
            });
        }
    }
    Plan { runs }
}

/// `41 s`, `12.5 min`, `3.1 h`, `2.4 days`.
pub fn human(seconds: f64) -> String {
    if seconds < 90.0 {
        format!("{seconds:.0} s")
    } else if seconds < 90.0 * 60.0 {
        format!("{:.1} min", seconds / 60.0)
    } else if seconds < 36.0 * 3600.0 {
        format!("{:.1} h", seconds / 3600.0)
    } else {
        format!("{:.1} days", seconds / 86_400.0)
    }
}

/// `1234567` as `1.2 M`.
fn count(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.1} k", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} M", n as f64 / 1e6),
        _ => format!("{:.1} G", n as f64 / 1e9),
    }
}

/// `1 run`, `3 runs`.
fn plural(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// The lines printed before a sweep starts: runs, epochs, attack evaluations, the wall
/// time on this machine and, over an hour, what to do instead.
pub fn describe(plan: &Plan, calibration: &Calibration, shard: Shard, profile: &str) -> String {
    let t = plan.total();
    let shard_words = if shard.is_all() {
        String::new()
    } else {
        format!(", shard {shard}")
    };
    let mut s = format!(
        "sweep (profile {profile}{shard_words}): {} selected, {} with work left; {} \
         training epochs; {} attack gradient evaluations planned (image × step; early exit \
         skips those of fooled images)\n",
        plural(plan.runs.len(), "run"),
        plan.pending(),
        t.epochs,
        count(t.attack_gradients),
    );
    let uncalibrated = plan.runs.iter().filter(|r| !r.calibrated).count();
    s.push_str(&format!(
        "estimated wall time on this machine ({}): {} (training {}, evaluation {}){}\n",
        calibration.machine,
        human(t.total()),
        human(t.train_seconds),
        human(t.eval_seconds),
        if uncalibrated > 0 {
            format!(
                "; {} priced by the reference model",
                plural(uncalibrated, "run")
            )
        } else {
            String::new()
        }
    ));
    if let Some(hint) = long_sweep_hint(t.total()) {
        s.push_str(hint);
        s.push('\n');
    }
    s
}

/// What to do instead of a sweep estimated at `seconds`, when that is over an hour.
pub fn long_sweep_hint(seconds: f64) -> Option<&'static str> {
    (seconds > 3600.0).then_some(
        "that is more than an hour: `--profile quick` runs a reduced protocol (under 15 \
         minutes on 2 cores), and `--shard K/N` runs a share K of N of the runs, so N \
         machines can split the sweep over one results folder (`specreg slurm` writes a \
         Slurm job array that does this; `specreg report` merges the shards)",
    )
}

/// One run's estimate against its measured seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunTiming {
    /// `<experiment>/<variant>`.
    pub id: String,
    /// The seed.
    pub seed: u64,
    /// Estimated training seconds.
    pub estimated_train_seconds: f64,
    /// Measured training seconds.
    pub measured_train_seconds: f64,
    /// Estimated evaluation seconds.
    pub estimated_eval_seconds: f64,
    /// Measured evaluation seconds.
    pub measured_eval_seconds: f64,
}

/// `timing.json`: the estimate against the measurement, per run and in total.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimingRecord {
    /// The machine the calibration belongs to.
    pub machine: String,
    /// The profile.
    pub profile: String,
    /// `K/N`.
    pub shard: String,
    /// Seconds spent calibrating in this call (0: all from the cache).
    pub calibration_seconds: f64,
    /// Estimated seconds of the sweep.
    pub estimated_seconds: f64,
    /// Measured seconds of the sweep (training and evaluation loops).
    pub measured_seconds: f64,
    /// (estimated − measured) / measured; `None` when nothing was measured.
    pub relative_error: Option<f64>,
    /// Per run.
    pub runs: Vec<RunTiming>,
}

impl TimingRecord {
    /// Pairs `plan` with the measured times of the training and evaluation loops.
    pub fn new(
        plan: &Plan,
        calibration: &Calibration,
        profile: &str,
        shard: Shard,
        train: &[RunTime],
        eval: &[RunTime],
        measured: Duration,
    ) -> TimingRecord {
        let find = |times: &[RunTime], id: &str, seed: u64| {
            times
                .iter()
                .filter(|t| t.id == id && t.seed == seed)
                .map(|t| t.elapsed.as_secs_f64())
                .sum::<f64>()
        };
        let runs = plan
            .runs
            .iter()
            .map(|r| RunTiming {
                id: r.id.clone(),
                seed: r.seed,
                estimated_train_seconds: r.estimate.train_seconds,
                measured_train_seconds: find(train, &r.id, r.seed),
                estimated_eval_seconds: r.estimate.eval_seconds,
                measured_eval_seconds: find(eval, &r.id, r.seed),
            })
            .collect();
        let estimated = plan.total().total();
        let measured = measured.as_secs_f64();
        TimingRecord {
            machine: calibration.machine.clone(),
            profile: profile.to_string(),
            shard: shard.to_string(),
            calibration_seconds: calibration.measured_seconds,
            estimated_seconds: estimated,
            measured_seconds: measured,
            relative_error: (measured > 0.0).then(|| (estimated - measured) / measured),
            runs,
        }
    }

    /// One line: estimate, measurement and error.
    pub fn line(&self) -> String {
        match self.relative_error {
            Some(e) => format!(
                "wall time: estimated {}, measured {}: the estimate was {:.0}% {}",
                human(self.estimated_seconds),
                human(self.measured_seconds),
                100.0 * e.abs(),
                if e >= 0.0 { "high" } else { "low" }
            ),
            None => format!(
                "wall time: estimated {}, nothing was measured",
                human(self.estimated_seconds)
            ),
        }
    }

    /// The file it is kept in: `timing[-<command>][-shard-K-of-N].json` under `out`.
    pub fn path(out: &Path, command: &str, shard: Shard) -> PathBuf {
        let mut name = String::from("timing");
        if command != "run" {
            name.push('-');
            name.push_str(command);
        }
        if !shard.is_all() {
            name.push('-');
            name.push_str(&shard.file_label());
        }
        out.join(format!("{name}.json"))
    }

    /// Writes the record atomically to `path`.
    ///
    /// # Errors
    /// I/O errors.
    pub fn write(&self, path: &Path) -> Result<()> {
        write_atomic(path, serde_json::to_string_pretty(self)?.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calibration() -> Calibration {
        Calibration {
            machine: "host | cpu | cpu | 2 threads".into(),
            times: Default::default(),
            measured_seconds: 0.0,
            cache: None,
        }
    }

    fn planned(id: &str, train: f64, eval: f64) -> PlannedRun {
        PlannedRun {
            id: id.into(),
            seed: 0,
            estimate: RunEstimate {
                epochs: 2,
                train_seconds: train,
                attack_gradients: 1_500_000,
                eval_seconds: eval,
            },
            calibrated: true,
        }
    }

    #[test]
    fn formats_durations() {
        assert_eq!(human(41.2), "41 s");
        assert_eq!(human(750.0), "12.5 min");
        assert_eq!(human(3.0 * 3600.0), "3.0 h");
        assert_eq!(human(2.5 * 86_400.0), "2.5 days");
        assert_eq!(count(1_500_000), "1.5 M");
    }

    #[test]
    fn names_quick_and_shard_only_past_an_hour() {
        let short = Plan {
            runs: vec![planned("exp1/a", 30.0, 10.0)],
        };
        let text = describe(&short, &calibration(), Shard::ALL, "smoke");
        assert!(text.contains("1 run selected") && text.contains("2 training epochs"));
        assert!(text.contains("1.5 M attack gradient"));
        assert!(
            text.contains("40 s (training 30 s, evaluation 10 s)"),
            "{text}"
        );
        assert!(!text.contains("--profile quick"));
        let long = Plan {
            runs: vec![planned("exp1/a", 3000.0, 1000.0)],
        };
        let text = describe(&long, &calibration(), Shard::new(2, 3).unwrap(), "paper");
        assert!(text.contains("shard 2/3") && text.contains("--profile quick"));
        assert!(text.contains("--shard K/N"));
    }

    #[test]
    fn records_estimate_against_measurement() {
        let plan = Plan {
            runs: vec![planned("exp1/a", 30.0, 10.0), planned("exp1/b", 60.0, 0.0)],
        };
        let t = |id: &str, s: u64| RunTime {
            id: id.into(),
            seed: 0,
            elapsed: Duration::from_secs(s),
        };
        let r = TimingRecord::new(
            &plan,
            &calibration(),
            "smoke",
            Shard::ALL,
            &[t("exp1/a", 20), t("exp1/b", 40)],
            &[t("exp1/a", 20)],
            Duration::from_secs(80),
        );
        assert_eq!(r.estimated_seconds, 100.0);
        assert_eq!(r.relative_error, Some(0.25));
        assert_eq!(r.runs[0].measured_train_seconds, 20.0);
        assert_eq!(r.runs[0].measured_eval_seconds, 20.0);
        assert!(r.line().contains("25% high"), "{}", r.line());
        let out = Path::new("/r");
        assert_eq!(
            TimingRecord::path(out, "run", Shard::ALL),
            out.join("timing.json")
        );
        assert_eq!(
            TimingRecord::path(out, "train", Shard::new(1, 3).unwrap()),
            out.join("timing-train-shard-1-of-3.json")
        );
    }
}
