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
    /// Whether the estimate came from this machine's calibration (else the reference
    /// model priced it).
    #[serde(default)]
    pub calibrated: bool,
}

impl RunTiming {
    /// Runs measured for less than this are not used to judge the calibration.
    pub const MIN_CHECKED_SECONDS: f64 = 10.0;
}

/// How far the median run's estimate may be from its measurement, as a factor either way,
/// before the calibration is judged wrong ([`TimingRecord::calibration_off_by`]). The
/// cost model's own error on the training runs checked against it was +1% to +21%; a
/// calibration timed while the machine was busy priced an evaluation 2.2× high.
pub const CALIBRATION_TOLERANCE: f64 = 1.5;

/// The measured seconds a command must have run, in runs of at least
/// [`RunTiming::MIN_CHECKED_SECONDS`], before its times judge the calibration.
pub const CALIBRATION_CHECK_SECONDS: f64 = 60.0;

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
                calibrated: r.calibrated,
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

    /// The median estimated / measured ratio of the calibrated runs that ran long enough
    /// to judge ([`RunTiming::MIN_CHECKED_SECONDS`]), when they ran [`CALIBRATION_CHECK_SECONDS`] in all
    /// and that median is more than [`CALIBRATION_TOLERANCE`] off either way: the sign
    /// that the calibration this command used does not describe the machine now (timed
    /// while it was busy, or on a host since replaced). The median, so that a run that
    /// diverged early and stopped cannot make the estimate look wrong.
    pub fn calibration_off_by(&self) -> Option<f64> {
        // (measured seconds, estimated / measured) of each run long enough to judge.
        let checked: Vec<(f64, f64)> = self
            .runs
            .iter()
            .filter(|r| r.calibrated)
            .filter_map(|r| {
                let measured = r.measured_train_seconds + r.measured_eval_seconds;
                let estimated = r.estimated_train_seconds + r.estimated_eval_seconds;
                (measured >= RunTiming::MIN_CHECKED_SECONDS)
                    .then(|| (measured, estimated / measured))
            })
            .collect();
        if checked.iter().map(|&(m, _)| m).sum::<f64>() < CALIBRATION_CHECK_SECONDS {
            return None;
        }
        let mut ratios: Vec<f64> = checked.into_iter().map(|(_, q)| q).collect();
        ratios.sort_by(f64::total_cmp);
        let median = crate::stats::median_sorted(&ratios)?;
        (!(1.0 / CALIBRATION_TOLERANCE..=CALIBRATION_TOLERANCE).contains(&median)).then_some(median)
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

    fn timing(estimated: f64, measured: f64, calibrated: bool) -> RunTiming {
        RunTiming {
            id: "exp1/a".into(),
            seed: 0,
            estimated_train_seconds: 0.75 * estimated,
            measured_train_seconds: 0.75 * measured,
            estimated_eval_seconds: 0.25 * estimated,
            measured_eval_seconds: 0.25 * measured,
            calibrated,
        }
    }

    fn record(runs: Vec<RunTiming>) -> TimingRecord {
        TimingRecord {
            machine: "m".into(),
            profile: "p".into(),
            shard: "1/1".into(),
            calibration_seconds: 0.0,
            estimated_seconds: 0.0,
            measured_seconds: 0.0,
            relative_error: None,
            runs,
        }
    }

    #[test]
    fn a_calibration_far_off_the_measured_runs_is_named() {
        // 2.2× high, as a calibration timed on a busy machine was.
        let busy = record(vec![timing(220.0, 100.0, true), timing(440.0, 200.0, true)]);
        assert!((busy.calibration_off_by().unwrap() - 2.2).abs() < 1e-12);
        // 1.6× low.
        let slow = record(vec![timing(100.0, 160.0, true)]);
        assert!((slow.calibration_off_by().unwrap() - 0.625).abs() < 1e-12);
        // Within the tolerance either way.
        assert_eq!(
            record(vec![timing(140.0, 100.0, true), timing(100.0, 140.0, true)])
                .calibration_off_by(),
            None
        );
        assert_eq!(
            record(vec![timing(149.0, 100.0, true)]).calibration_off_by(),
            None
        );
    }

    #[test]
    fn short_diverged_and_uncalibrated_runs_do_not_judge_the_calibration() {
        // Too little measured in all (4 × 12 s < 60 s), though each run is 3× off.
        let short = record((0..4).map(|_| timing(36.0, 12.0, true)).collect());
        assert_eq!(short.calibration_off_by(), None);
        // Runs under 10 s are left out, and do not count towards the 60 s either.
        let mut tiny: Vec<RunTiming> = (0..40).map(|_| timing(30.0, 9.0, true)).collect();
        tiny.push(timing(50.0, 50.0, true));
        assert_eq!(record(tiny).calibration_off_by(), None);
        // One run that diverged after an epoch is far off; the median is not.
        let diverged = record(vec![
            timing(100.0, 95.0, true),
            timing(100.0, 110.0, true),
            timing(100.0, 12.0, true),
        ]);
        assert_eq!(diverged.calibration_off_by(), None);
        // A run priced by the reference model says nothing about the calibration.
        let reference = record(vec![
            timing(500.0, 100.0, false),
            timing(100.0, 100.0, true),
            timing(100.0, 100.0, true),
        ]);
        assert_eq!(reference.calibration_off_by(), None);
        assert_eq!(
            record(vec![timing(500.0, 200.0, false)]).calibration_off_by(),
            None
        );
    }
}
