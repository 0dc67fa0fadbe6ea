//! `specreg slurm`: a Slurm job array that runs a sweep in shards, and a dependent job
//! that writes the report.
//!
//! The array script runs the same `specreg` binary, in the folder it was written from,
//! with the same options and `--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT`
//! (`--array=1-N`). Its requests come from the sweep's cost estimate: `--cpus-per-task`
//! is the thread count the estimate was calibrated with, `--mem` the largest run's
//! memory bound ([`crate::cost::memory_mib`]) and `--time` the longest shard's estimate
//! with a margin ([`time_limit_minutes`]). The report job starts once every array task
//! has succeeded (`--dependency=afterok:<array job>`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use crate::outputs::write_atomic;

/// A sweep's job array and its report job.
#[derive(Debug, Clone, PartialEq)]
pub struct SlurmJob {
    /// Job name (`specreg-<profile>`); the report job is `<name>-report`.
    pub name: String,
    /// The `specreg` binary (absolute).
    pub binary: PathBuf,
    /// The folder the jobs run in (absolute; relative options are relative to it).
    pub workdir: PathBuf,
    /// Options of every command before the subcommand (`--out`, `--threads`, …).
    pub global_args: Vec<String>,
    /// Options of `specreg run` (selection), without `--shard`.
    pub run_args: Vec<String>,
    /// Options of `specreg report`.
    pub report_args: Vec<String>,
    /// Array tasks (shards).
    pub shards: usize,
    /// `--cpus-per-task`.
    pub cpus_per_task: usize,
    /// `--mem` in MiB.
    pub mem_mib: u64,
    /// `--time` of one array task, in minutes.
    pub time_minutes: u64,
    /// `--partition`, if any.
    pub partition: Option<String>,
    /// `--account`, if any.
    pub account: Option<String>,
    /// `SPECREG_DATA` to export in the jobs, if set when the scripts were written.
    pub data_env: Option<String>,
    /// Where the scripts (and `logs/`) go (absolute).
    pub script_dir: PathBuf,
}

/// Quotes `s` for a POSIX shell when it holds anything but `[A-Za-z0-9_./:=,+-]`.
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./:=,+-@%".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn join(args: &[String]) -> String {
    args.iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `--time` for an estimate of `seconds`: 1.5 × the estimate plus 10 minutes (the
/// estimate comes from the submitting machine, and compute nodes differ), in whole
/// minutes.
pub fn time_limit_minutes(seconds: f64) -> u64 {
    ((1.5 * seconds.max(0.0)) / 60.0).ceil() as u64 + 10
}

/// Slurm's `D-HH:MM:SS` form of `minutes`.
pub fn slurm_time(minutes: u64) -> String {
    let (d, rest) = (minutes / 1440, minutes % 1440);
    format!("{d}-{:02}:{:02}:00", rest / 60, rest % 60)
}

impl SlurmJob {
    /// The array script's path.
    pub fn array_path(&self) -> PathBuf {
        self.script_dir.join(format!("{}.sbatch", self.name))
    }

    /// The report script's path.
    pub fn report_path(&self) -> PathBuf {
        self.script_dir.join(format!("{}-report.sbatch", self.name))
    }

    /// The logs folder (Slurm does not create it; [`SlurmJob::write`] does).
    pub fn log_dir(&self) -> PathBuf {
        self.script_dir.join("logs")
    }

    fn header(&self, name: &str, lines: &[String]) -> String {
        let mut s = String::from("#!/bin/bash\n");
        let _ = writeln!(s, "#SBATCH --job-name={name}");
        for l in lines {
            let _ = writeln!(s, "#SBATCH {l}");
        }
        if let Some(p) = &self.partition {
            let _ = writeln!(s, "#SBATCH --partition={p}");
        }
        if let Some(a) = &self.account {
            let _ = writeln!(s, "#SBATCH --account={a}");
        }
        let _ = writeln!(s, "#SBATCH --chdir={}", self.workdir.display());
        let _ = writeln!(
            s,
            "#SBATCH --output={}/%x-%A_%a.out",
            self.log_dir().display()
        );
        s.push_str("set -euo pipefail\n");
        if let Some(d) = &self.data_env {
            let _ = writeln!(s, "export SPECREG_DATA={}", shell_quote(d));
        }
        let _ = writeln!(s, "cd {}", shell_quote(&self.workdir.display().to_string()));
        s
    }

    /// The job-array script: one task per shard.
    pub fn array_script(&self) -> String {
        let mut s = self.header(
            &self.name,
            &[
                format!("--array=1-{}", self.shards),
                "--ntasks=1".into(),
                format!("--cpus-per-task={}", self.cpus_per_task),
                format!("--mem={}M", self.mem_mib),
                format!("--time={}", slurm_time(self.time_minutes)),
            ],
        );
        let _ = writeln!(
            s,
            "# Array task K of N runs shard K/N of the sweep (balanced by estimated cost).\n\
             shard=\"${{SLURM_ARRAY_TASK_ID:?not an array task}}/${{SLURM_ARRAY_TASK_COUNT:-{}}}\"",
            self.shards
        );
        let _ = writeln!(
            s,
            "exec {} {} run {} --shard \"$shard\"",
            shell_quote(&self.binary.display().to_string()),
            join(&self.global_args),
            join(&self.run_args)
        );
        s
    }

    /// The report script: merges the shards' results into `REPORT.md`.
    pub fn report_script(&self) -> String {
        let mut s = self.header(
            &format!("{}-report", self.name),
            &[
                "--ntasks=1".into(),
                "--cpus-per-task=1".into(),
                "--mem=2000M".into(),
                format!("--time={}", slurm_time(30)),
                "--kill-on-invalid-dep=yes".into(),
            ],
        );
        let _ = writeln!(
            s,
            "exec {} {} report {}",
            shell_quote(&self.binary.display().to_string()),
            join(&self.global_args),
            join(&self.report_args)
        );
        s
    }

    /// The command that submits the array and then the report job after it.
    pub fn sbatch_line(&self) -> String {
        format!(
            "jid=$(sbatch --parsable {}) && sbatch --dependency=afterok:${{jid%%;*}} {}",
            shell_quote(&self.array_path().display().to_string()),
            shell_quote(&self.report_path().display().to_string())
        )
    }

    /// Writes both scripts (executable) and creates the logs folder; returns their paths.
    ///
    /// # Errors
    /// I/O errors, naming the file.
    pub fn write(&self) -> Result<(PathBuf, PathBuf)> {
        std::fs::create_dir_all(self.log_dir())
            .with_context(|| format!("creating {}", self.log_dir().display()))?;
        let (array, report) = (self.array_path(), self.report_path());
        write_atomic(&array, self.array_script().as_bytes())?;
        write_atomic(&report, self.report_script().as_bytes())?;
        for p in [&array, &report] {
            make_executable(p)?;
        }
        Ok((array, report))
    }
}

fn make_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut perm = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .permissions();
    perm.set_mode(0o755);
    std::fs::set_permissions(path, perm).with_context(|| format!("chmod {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> SlurmJob {
        SlurmJob {
            name: "specreg-smoke".into(),
            binary: "/opt/spec reg/specreg".into(),
            workdir: "/home/u/specreg".into(),
            global_args: vec![
                "--out".into(),
                "results".into(),
                "--threads".into(),
                "2".into(),
            ],
            run_args: vec!["--profile".into(), "smoke".into()],
            report_args: vec!["--profile".into(), "smoke".into()],
            shards: 3,
            cpus_per_task: 2,
            mem_mib: 1500,
            time_minutes: 25 * 60 + 7,
            partition: Some("cpu".into()),
            account: None,
            data_env: Some("/data/mnist".into()),
            script_dir: "/home/u/specreg/results/slurm".into(),
        }
    }

    #[test]
    fn array_script_requests_and_runs_each_shard() {
        let s = job().array_script();
        for line in [
            "#SBATCH --array=1-3",
            "#SBATCH --cpus-per-task=2",
            "#SBATCH --mem=1500M",
            "#SBATCH --time=1-01:07:00",
            "#SBATCH --partition=cpu",
            "#SBATCH --chdir=/home/u/specreg",
            "#SBATCH --output=/home/u/specreg/results/slurm/logs/%x-%A_%a.out",
            "export SPECREG_DATA=/data/mnist",
        ] {
            assert!(s.lines().any(|l| l == line), "missing {line:?} in\n{s}");
        }
        assert!(s.contains(
            "exec '/opt/spec reg/specreg' --out results --threads 2 run --profile smoke \
             --shard \"$shard\""
        ));
        assert!(
            s.contains("${SLURM_ARRAY_TASK_ID:?not an array task}/${SLURM_ARRAY_TASK_COUNT:-3}")
        );
        assert!(!s.contains("--account"));
    }

    #[test]
    fn report_job_depends_on_the_array() {
        let j = job();
        let r = j.report_script();
        assert!(r.contains("--job-name=specreg-smoke-report"));
        assert!(r.contains("report --profile smoke"));
        assert!(r.contains("--kill-on-invalid-dep=yes"));
        assert_eq!(
            j.sbatch_line(),
            "jid=$(sbatch --parsable /home/u/specreg/results/slurm/specreg-smoke.sbatch) && \
             sbatch --dependency=afterok:${jid%%;*} \
             /home/u/specreg/results/slurm/specreg-smoke-report.sbatch"
        );
    }

    #[test]
    fn quoting_and_times() {
        assert_eq!(shell_quote("a/b-c_1.toml"), "a/b-c_1.toml");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(slurm_time(59), "0-00:59:00");
        assert_eq!(slurm_time(3 * 1440 + 61), "3-01:01:00");
        assert_eq!(time_limit_minutes(0.0), 10);
        assert_eq!(time_limit_minutes(3600.0), 100);
    }

    #[test]
    fn writes_executable_scripts_and_the_log_folder() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let mut j = job();
        j.script_dir = dir.path().join("slurm");
        let (a, r) = j.write().unwrap();
        assert_eq!(std::fs::read_to_string(&a).unwrap(), j.array_script());
        assert_eq!(std::fs::read_to_string(&r).unwrap(), j.report_script());
        assert!(j.log_dir().is_dir());
        let mode = std::fs::metadata(&a).unwrap().permissions().mode();
        assert_eq!(mode & 0o111, 0o111);
    }
}
