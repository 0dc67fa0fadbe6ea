//! Shared by the bad-input catalogue (`bad_input_config`, `bad_input_cli`): a results folder
//! that already holds a finished run, the `specreg` command, and the checks every refused
//! input must pass: a non-zero exit, exactly one `error:` line, no panic, and not one byte
//! written, changed or removed anywhere in the test's folder (the results folder included).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use specreg_experiments::config::Config;
use specreg_experiments::outputs::RunPaths;

use crate::common;

/// The config the cases edit: valid, and small enough to train in seconds.
pub const BASE: &str = r#"
experiment = "exp1"
variant = "bad-input"
seeds = [0]

[model]
kind = "shallow"

[train]
epochs = 1
batch_size = 250
lr = 1e-3
train_subset = 500
# The catalogue checks refusals, not the batch-size rule.
min_batch_ratio = 0.0

[spectral]
layers = ["hidden"]
beta = 2.0
tau = 10

[eval]
test_subset = 200
batch_size = 200
fgsm_eps = [0.0, 0.1]
pgd_eps = [0.0, 0.1]
pgd_steps = 2
noise_sigma = [0.0, 0.5]
strong_eps = [0.1]
apgd_steps = 2
"#;

/// `BASE` under the variant name of the run that is already finished in every fixture.
pub fn finished_config() -> String {
    BASE.replace("variant = \"bad-input\"", "variant = \"finished\"")
}

/// `BASE` with each `(from, to)` edit applied (`from` empty: append `to`); panics if an
/// edit does not apply, so that no case silently tests the valid config.
pub fn edited(base: &str, edits: &[(&str, &str)]) -> String {
    let mut text = base.to_string();
    for (from, to) in edits {
        if from.is_empty() {
            text.push('\n');
            text.push_str(to);
            text.push('\n');
        } else {
            assert!(text.contains(from), "the edit {from:?} does not apply");
            text = text.replace(from, to);
        }
    }
    text
}

/// The `specreg` binary in `cwd`, with a private calibration cache and a fixed commit.
pub fn specreg(cwd: &Path, args: &[String]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_specreg"));
    c.current_dir(cwd)
        .args(args)
        .env("XDG_CACHE_HOME", cwd.join("cache"))
        .env("SPECREG_COMMIT", "bad-input")
        .env_remove("RUST_BACKTRACE");
    c
}

/// The run folder of seed 0 of `config` under `out`.
pub fn run_dir(out: &Path, config: &str) -> PathBuf {
    let c = Config::from_toml_str(config, "test").expect("the fixture's config is valid");
    RunPaths::new(out, &c, 0).dir
}

/// A results folder holding one finished run, made once per test binary: trained by
/// `specreg train` on MNIST when `common::data()` finds it, else a stand-in with the same
/// layout (the refusals are checked before any data is read, so either serves).
fn template() -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let name = std::env::current_exe()
            .ok()
            .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "bad-input".into());
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-finished"));
        if root.exists() {
            std::fs::remove_dir_all(&root).unwrap();
        }
        std::fs::create_dir_all(&root).unwrap();
        let out = root.join("out");
        let config = finished_config();
        let run = run_dir(&out, &config);
        if let Some(data) = common::data() {
            let file = root.join("finished.toml");
            std::fs::write(&file, &config).unwrap();
            let args = [
                "train".into(),
                "--config".into(),
                file.display().to_string(),
                "--out".into(),
                out.display().to_string(),
                "--data".into(),
                data.display().to_string(),
                "--threads".into(),
                "1".into(),
                "--quiet".into(),
            ];
            let o = specreg(&root, &args).output().unwrap();
            assert!(
                o.status.success(),
                "training the finished run: {}",
                text(&o)
            );
            // The command the cases run does write a run folder for a config it accepts.
            assert!(run.join("model.safetensors").is_file(), "{}", run.display());
        } else {
            eprintln!(
                "bad-input catalogue: MNIST not found (SPECREG_DATA); the finished run in each \
                 results folder is a stand-in"
            );
            std::fs::create_dir_all(&run).unwrap();
            std::fs::write(run.join("config.toml"), &config).unwrap();
            std::fs::write(run.join("metrics.jsonl"), "{\"epoch\":1}\n").unwrap();
            std::fs::write(run.join("model.safetensors"), [7u8; 4096]).unwrap();
            std::fs::write(out.join("timing-train.json"), "{}\n").unwrap();
        }
        out
    })
}

/// Stdout and stderr of `o`, for failure messages.
pub fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every path below `root` with its bytes (`None`: a folder).
pub type Snapshot = BTreeMap<PathBuf, Option<Vec<u8>>>;

/// The tree below `root`, byte for byte.
pub fn snapshot(root: &Path) -> Snapshot {
    fn walk(dir: &Path, root: &Path, out: &mut Snapshot) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            if path.is_dir() {
                out.insert(rel, None);
                walk(&path, root, out);
            } else {
                out.insert(rel, Some(std::fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = Snapshot::new();
    walk(root, root, &mut out);
    out
}

/// The paths that differ between two snapshots, each with what happened to it.
pub fn differences(before: &Snapshot, after: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    for (path, bytes) in after {
        match before.get(path) {
            None => out.push(format!("{} was created", path.display())),
            Some(old) if old != bytes => out.push(format!("{} was changed", path.display())),
            Some(_) => {}
        }
    }
    for path in before.keys().filter(|p| !after.contains_key(*p)) {
        out.push(format!("{} was removed", path.display()));
    }
    out
}

/// Lines clap adds after its one `error:` line.
fn clap_boilerplate(line: &str) -> bool {
    line.starts_with("Usage: ")
        || line.starts_with("For more information, try ")
        || line.trim_start().starts_with("tip: ")
}

/// A test's folder: `out/` holding the finished run, a `data` folder to pass as `--data`
/// (MNIST, or an empty folder), and room for the inputs the cases write.
pub struct Fixture {
    dir: tempfile::TempDir,
    /// The results folder.
    pub out: PathBuf,
    /// What the commands get as `--data`.
    pub data: PathBuf,
}

impl Fixture {
    /// A fresh folder whose `out/` is a copy of the finished-run template.
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        copy_tree(template(), &out);
        let data = common::data().unwrap_or_else(|| {
            let empty = dir.path().join("no-mnist");
            std::fs::create_dir_all(&empty).unwrap();
            empty
        });
        Fixture { dir, out, data }
    }

    /// The fixture's folder.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `text` to `rel` under the fixture's `inputs/` and returns its path.
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.root().join("inputs").join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Everything in the fixture's folder, byte for byte.
    pub fn snapshot(&self) -> Snapshot {
        snapshot(self.root())
    }

    /// Runs `specreg <args> --out OUT --data DATA` and checks that it refuses cleanly: a
    /// non-zero exit status (not a signal), no panic, exactly one `error:` line on stderr
    /// (besides clap's usage lines when `clap` is set), nothing on stderr otherwise, and the
    /// fixture's folder exactly as in `before`. Returns the error line, or what went wrong.
    pub fn refuse(&self, args: &[String], clap: bool, before: &Snapshot) -> Result<String, String> {
        let mut all = args.to_vec();
        all.extend([
            "--out".into(),
            self.out.display().to_string(),
            "--data".into(),
            self.data.display().to_string(),
        ]);
        let o = specreg(self.root(), &all).output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        let mut problems = Vec::new();
        match o.status.code() {
            Some(0) => problems.push("it exited 0".to_string()),
            None => problems.push(format!("it was killed ({})", o.status)),
            Some(_) => {}
        }
        if stderr.contains("panicked") || stderr.contains("backtrace") {
            problems.push("it panicked".into());
        }
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
        if errors.len() != 1 {
            problems.push(format!("{} error lines instead of one", errors.len()));
        }
        let others: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with("error"))
            .filter(|l| !(clap && clap_boilerplate(l)))
            .collect();
        if !others.is_empty() {
            problems.push(format!("other lines on stderr: {others:?}"));
        }
        let changed = differences(before, &self.snapshot());
        if !changed.is_empty() {
            problems.push(format!("the folder changed: {changed:?}"));
        }
        if problems.is_empty() {
            Ok(errors[0].to_string())
        } else {
            Err(format!(
                "`specreg {}`: {}\n{}",
                args.join(" "),
                problems.join("; "),
                text(&o)
            ))
        }
    }
}

/// Copies the tree at `from` to `to`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// Checks that `line` holds every word of `words`; returns what is missing.
pub fn missing_words(line: &str, words: &[&str]) -> Vec<String> {
    words
        .iter()
        .filter(|w| !line.contains(**w))
        .map(|w| format!("{w:?}"))
        .collect()
}

/// Panics with every failure, one per paragraph, if there are any; `total` is the number of
/// cases the table held.
pub fn report(failures: &[String], total: usize) {
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
