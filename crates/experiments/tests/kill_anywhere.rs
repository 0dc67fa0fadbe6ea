//! Kill anywhere: a multi-run sweep is killed with SIGKILL again and again — mid-batch,
//! mid-checkpoint write, mid-evaluation, mid-write of a run's results and mid-report — and
//! resumed with the same command each time. The final results must equal an uninterrupted
//! sweep's: `REPORT.md`, every `robustness.csv`, `summary.json`, `spectrum.csv`, figure
//! and model byte for byte, every `metrics.jsonl` byte for byte apart from its wall-clock
//! `seconds`; and no file anywhere may be truncated or left as a temp file.
//!
//! Kills inside a phase are timed from outside: the binary logs when each phase begins
//! (`SPECREG_PHASE_LOG`), and the harness sends SIGKILL at a random fraction of that
//! phase's length in the uninterrupted sweep. A file write is too short to hit that way,
//! so those kills come from inside: `SPECREG_KILL_AT=KIND:N` makes the process SIGKILL
//! itself halfway through the bytes of its N-th write of that kind.
//!
//! The kill times come from a fixed seed. `SPECREG_KILL_SEED=S` picks other times and
//! `SPECREG_KILL_ROUNDS=R` repeats the whole schedule R times (each round another set of
//! times) for a longer run.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use common::{configs, differences, mnist, temp_files};

/// Three runs (the shallow net with and without the spectral regulariser, the MLP), two
/// epochs each, every attack: a sweep of a few seconds per run.
const PROFILE: &str = r#"
description = "kill-anywhere test sweep"
include = ["exp1/vanilla", "exp1/specreg-b2", "exp2/mlp-vanilla"]

[overrides.all]
seeds = [0]

[overrides.all.train]
epochs = 2
train_subset = 1000
batch_size = 250
min_batch_ratio = 0.0

[overrides.all.eval]
test_subset = 200
batch_size = 200
fgsm_eps = [0.0, 0.1]
pgd_eps = [0.0, 0.1]
pgd_steps = 5
pgd_step_size = 0.05
noise_sigma = [0.0, 0.5]
strong_eps = [0.1]
apgd_steps = 5
spectrum_images = 1000
sensitivity_ranks = [1, 2, 5]
sensitivity_images = 500
"#;

/// A small deterministic generator for the kill times (splitmix64).
struct Times(u64);

impl Times {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi)`.
    fn fraction(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `1..=n`.
    fn pick(&mut self, n: usize) -> usize {
        1 + (self.next() % n as u64) as usize
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Sweep {
    cache: PathBuf,
    profile: PathBuf,
    data: PathBuf,
}

impl Sweep {
    /// `specreg run` of the test sweep into `<cwd>/results`, logging its phases to `log`
    /// (the report names its folder as given, so both sweeps write `results`).
    fn command(&self, cwd: &Path, log: &Path) -> Command {
        std::fs::create_dir_all(cwd).unwrap();
        let mut c = Command::new(env!("CARGO_BIN_EXE_specreg"));
        c.current_dir(cwd)
            .arg("run")
            .arg("--profile")
            .arg(&self.profile)
            .arg("--configs")
            .arg(configs())
            .arg("--data")
            .arg(&self.data)
            .args(["--out", "results"])
            .args(["--threads", "2", "--quiet"])
            .env("SPECREG_COMMIT", "kill-test")
            .env("XDG_CACHE_HOME", &self.cache)
            .env("SPECREG_PHASE_LOG", log)
            .env_remove("SPECREG_KILL_AT")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        c
    }
}

/// The lines of a phase log: `(milliseconds since the first phase, phase or write)`.
fn log_lines(log: &Path) -> Vec<(u64, String)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (ms, p) = l.split_once(' ')?;
            Some((ms.parse().ok()?, p.to_string()))
        })
        .collect()
}

/// The phases of a phase log, without its `write` lines.
fn phases(log: &Path) -> Vec<(u64, String)> {
    log_lines(log)
        .into_iter()
        .filter(|(_, p)| !p.starts_with("write "))
        .collect()
}

/// How many writes of `kind` the log records after the phase `after` began.
fn writes_after(log: &Path, after: &str, kind: &str) -> usize {
    let lines = log_lines(log);
    let start = lines.iter().position(|(_, p)| p == after).unwrap_or(0);
    let tag = format!("write {kind}");
    lines[start..].iter().filter(|(_, p)| *p == tag).count()
}

/// How a kill is aimed.
#[derive(Debug, Clone)]
enum Kill {
    /// SIGKILL from outside at `fraction` of the way through `phase`, which lasts
    /// `length` in the uninterrupted sweep.
    During {
        phase: String,
        length: Duration,
        fraction: f64,
    },
    /// The process kills itself halfway through its `n`-th write of `kind`.
    MidWrite { kind: &'static str, n: usize },
}

/// Whether `status` is a death by SIGKILL.
fn killed(status: ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.signal() == Some(9)
}

/// Runs the sweep in `cwd` and kills it as `kill` says; returns what happened.
fn run_and_kill(sweep: &Sweep, cwd: &Path, log: &Path, kill: &Kill) -> String {
    let _ = std::fs::remove_file(log);
    let mut cmd = sweep.command(cwd, log);
    if let Kill::MidWrite { kind, n } = kill {
        cmd.env("SPECREG_KILL_AT", format!("{kind}:{n}"));
    }
    let mut child = cmd.spawn().unwrap();
    let start = Instant::now();
    if let Kill::During {
        phase,
        length,
        fraction,
    } = kill
    {
        loop {
            assert!(
                start.elapsed() < Duration::from_secs(600),
                "phase {phase} never began"
            );
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the sweep ended ({status}) before phase {phase} began");
            }
            if phases(log).iter().any(|(_, p)| p == phase) {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(length.mul_f64(*fraction));
        // `kill` sends SIGKILL on Unix; a sweep that already ended is reported below.
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        killed(out.status),
        "{kill:?}: the sweep was not killed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let reached = phases(log).last().map(|p| p.1.clone()).unwrap_or_default();
    format!("{kill:?} (last phase begun: {reached})")
}

/// Every file under `dir` that is truncated or malformed for its kind.
fn truncated_files(dir: &Path) -> Vec<String> {
    let mut bad = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let bytes = std::fs::read(&p).unwrap();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let text = || String::from_utf8(bytes.clone()).unwrap_or_default();
            let whole = match p.extension().and_then(|x| x.to_str()).unwrap_or("") {
                "json" => serde_json::from_slice::<serde_json::Value>(&bytes).is_ok(),
                "jsonl" => {
                    !bytes.is_empty()
                        && bytes.ends_with(b"\n")
                        && text()
                            .lines()
                            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
                }
                "csv" if name == "robustness.csv" => {
                    specreg_experiments::results::parse_robustness_csv(&text(), &p).is_ok()
                }
                "csv" | "md" | "toml" | "svg" | "sbatch" => {
                    !bytes.is_empty() && bytes.ends_with(b"\n")
                }
                "png" => {
                    bytes.starts_with(b"\x89PNG\r\n\x1a\n")
                        && bytes.len() >= 12
                        && &bytes[bytes.len() - 8..bytes.len() - 4] == b"IEND"
                }
                "safetensors" => {
                    bytes.len() >= 8 && {
                        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
                        8 + n <= bytes.len()
                            && serde_json::from_slice::<serde_json::Value>(&bytes[8..8 + n])
                                .is_ok_and(|h| {
                                    // The last tensor's data must end at the file's end.
                                    let end = h
                                        .as_object()
                                        .into_iter()
                                        .flatten()
                                        .filter_map(|(_, t)| {
                                            t.get("data_offsets")?.get(1)?.as_u64()
                                        })
                                        .max()
                                        .unwrap_or(0);
                                    8 + n + end as usize == bytes.len()
                                })
                    }
                }
                _ => !bytes.is_empty(),
            };
            if !whole {
                bad.push(p.display().to_string());
            }
        }
    }
    bad
}

/// The first line in which two text files differ, for the failure message.
fn first_difference(a: &Path, b: &Path) -> Option<String> {
    let (ta, tb) = (
        std::fs::read_to_string(a).ok()?,
        std::fs::read_to_string(b).ok()?,
    );
    let (la, lb): (Vec<&str>, Vec<&str>) = (ta.lines().collect(), tb.lines().collect());
    (0..la.len().max(lb.len()))
        .find(|&i| la.get(i) != lb.get(i))
        .map(|i| {
            format!(
                "{} line {}:\n  uninterrupted: {:?}\n  killed:        {:?}",
                a.display(),
                i + 1,
                la.get(i),
                lb.get(i)
            )
        })
}

#[test]
#[cfg_attr(
    specreg_no_mnist,
    ignore = "MNIST not found at build time (see the cargo warning): set SPECREG_DATA"
)]
fn sweeps_killed_anywhere_resume_to_identical_results() {
    let data = mnist();
    let tmp = tempfile::tempdir().unwrap();
    let profile = tmp.path().join("kill-test.toml");
    std::fs::write(&profile, PROFILE).unwrap();
    let sweep = Sweep {
        cache: tmp.path().join("cache"),
        profile,
        data,
    };

    // The uninterrupted sweep, and how long each of its phases took.
    let reference_cwd = tmp.path().join("reference");
    let reference = reference_cwd.join("results");
    let log = tmp.path().join("reference.log");
    let out = sweep.command(&reference_cwd, &log).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let timeline = phases(&log);
    let mut lengths: Vec<(String, Duration)> = Vec::new();
    for pair in timeline.windows(2) {
        let ((from, p), (to, _)) = (&pair[0], &pair[1]);
        lengths.push((p.clone(), Duration::from_millis(to - from)));
    }
    assert_eq!(
        timeline.last().map(|p| p.1.as_str()),
        Some("report written"),
        "{timeline:?}"
    );
    let phase = |prefix: &str, k: usize| -> (String, Duration) {
        lengths
            .iter()
            .filter(|(p, _)| p.starts_with(prefix))
            .nth(k)
            .cloned()
            .unwrap_or_else(|| panic!("no phase {prefix} #{k} in {timeline:?}"))
    };
    // The writes of the report phase: figures, then REPORT.md.
    let reports = writes_after(&log, "report", "report");
    assert!(reports >= 2, "{reports} report writes");

    let mut times = Times(env_u64("SPECREG_KILL_SEED", 15));
    let rounds = env_u64("SPECREG_KILL_ROUNDS", 1);
    let killed_cwd = tmp.path().join("killed");
    let killed_dir = killed_cwd.join("results");
    let mut history = Vec::new();
    for _ in 0..rounds {
        let _ = std::fs::remove_dir_all(&killed_dir);
        let during = |prefix: &str, k: usize, times: &mut Times| {
            let (phase, length) = phase(prefix, k);
            Kill::During {
                phase,
                length,
                // Early enough that the phase has not ended on a faster pass.
                fraction: times.fraction(0.05, 0.6),
            }
        };
        // In sweep order: training (mid-batch, then mid-checkpoint write), evaluation
        // (mid-run, then mid-write of a run file), the report (mid-run, mid-write).
        let schedule = [
            during("train", 1, &mut times),
            Kill::MidWrite {
                kind: "checkpoint",
                n: times.pick(2),
            },
            during("train", 2, &mut times),
            during("eval", times.pick(3) - 1, &mut times),
            Kill::MidWrite {
                kind: "run",
                n: times.pick(4),
            },
            during("report", 0, &mut times),
            Kill::MidWrite {
                kind: "report",
                n: times.pick(reports),
            },
        ];
        for kill in &schedule {
            history.push(run_and_kill(
                &sweep,
                &killed_cwd,
                &tmp.path().join("killed.log"),
                kill,
            ));
        }
        // The last resume runs to the end.
        let out = sweep
            .command(&killed_cwd, &tmp.path().join("killed.log"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "the final resume failed after {history:#?}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let diffs = differences(&reference, &killed_dir, 3);
        let lines: Vec<String> = diffs
            .iter()
            .filter_map(|d| d.strip_prefix("differs: "))
            .filter_map(|f| first_difference(&reference.join(f), &killed_dir.join(f)))
            .collect();
        assert!(
            diffs.is_empty(),
            "after {history:#?}:\n{diffs:#?}\n{}",
            lines.join("\n")
        );
        let bad = truncated_files(&killed_dir);
        assert!(bad.is_empty(), "truncated after {history:#?}: {bad:#?}");
        let temps = temp_files(&killed_dir);
        assert!(temps.is_empty(), "temp files left: {temps:#?}");
    }
    eprintln!("kills: {history:#?}");
}
