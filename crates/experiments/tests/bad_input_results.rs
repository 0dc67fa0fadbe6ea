//! The bad-input catalogue, results folders and disks: a folder written by an incompatible
//! version, a run whose files were edited after it was evaluated, a read-only results
//! folder and a full disk. Each case must end `specreg` with a non-zero exit and one clear
//! message naming the file and what is wrong, leave nothing half-written and leave
//! finished runs untouched.
//!
//! The disk cases mount a file system of their own (a read-only bind mount, a 256 KiB
//! tmpfs) in a private mount namespace (`unshare --user --map-root-user --mount`), so they
//! need no root and touch nothing outside the test's temp folder; where the kernel allows
//! no user namespaces they say so and pass.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::mnist;

const CONFIG: &str = r#"
experiment = "exp2"
variant = "results-test"
seeds = [1]

[model]
kind = "mlp"

[train]
epochs = 1
batch_size = 250
lr = 1e-4
train_subset = 500
min_batch_ratio = 0.0

[eval]
test_subset = 200
batch_size = 200
fgsm_eps = [0.0, 0.1]
pgd_eps = [0.0, 0.1]
pgd_steps = 2
noise_sigma = [0.0, 0.5]
strong_eps = [0.1]
apgd_steps = 2
spectrum_images = 500
sensitivity_ranks = [1, 2]
sensitivity_images = 200
"#;

fn specreg(cache: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_specreg"));
    c.args(args)
        .env("SPECREG_COMMIT", "results-test")
        .env("XDG_CACHE_HOME", cache);
    c
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A failed command whose stderr holds exactly one `error:` line (and no warning), which
/// contains every one of `words`; returns that line.
fn one_error(out: &Output, words: &[&str]) -> String {
    let err = stderr(out);
    assert!(!out.status.success(), "succeeded:\n{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "not one error line:\n{err}");
    assert!(
        !err.contains("panicked") && !err.lines().any(|l| l.starts_with("warning")),
        "{err}"
    );
    for w in words {
        assert!(errors[0].contains(w), "{w:?} not in {:?}", errors[0]);
    }
    errors[0].to_string()
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                out.push((p, bytes));
            }
        }
    }
    out.sort();
    out
}

/// A results folder with one trained and evaluated run, and the config that made it.
struct Finished {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    config: PathBuf,
    out: PathBuf,
    cache: PathBuf,
    data: PathBuf,
}

impl Finished {
    fn new() -> Finished {
        let data = mnist();
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let config = root.join("results-test.toml");
        std::fs::write(&config, CONFIG).unwrap();
        let out = root.join("results");
        let cache = root.join("cache");
        let f = Finished {
            _tmp: tmp,
            root,
            config,
            out,
            cache,
            data,
        };
        let done = f.run("run", &f.out);
        assert!(done.status.success(), "{}", stderr(&done));
        f
    }

    fn args<'a>(&'a self, command: &'a str, out: &'a Path) -> Vec<&'a str> {
        vec![
            command,
            "--config",
            self.config.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--data",
            self.data.to_str().unwrap(),
            "--threads",
            "2",
            "--quiet",
        ]
    }

    fn run(&self, command: &str, out: &Path) -> Output {
        specreg(&self.cache, &self.args(command, out))
            .output()
            .unwrap()
    }

    fn run_dir(&self) -> PathBuf {
        self.out.join("exp2/results-test/seed1")
    }

    fn report(&self) -> Output {
        specreg(
            &self.cache,
            &["report", "--out", self.out.to_str().unwrap(), "--quiet"],
        )
        .output()
        .unwrap()
    }
}

/// Edits `file` of the finished run with `edit`, checks that `report`, `eval` and `run`
/// refuse the folder naming `file` (and `what`), that none of them changed anything, and
/// restores the file.
fn refused_after_edit(f: &Finished, file: &str, edit: impl Fn(&str) -> String, what: &str) {
    let path = f.run_dir().join(file);
    let original = std::fs::read_to_string(&path).unwrap();
    let edited = edit(&original);
    assert_ne!(edited, original, "the edit of {file} changed nothing");
    std::fs::write(&path, &edited).unwrap();
    let before = snapshot(&f.out);
    let name = path.display().to_string();
    one_error(&f.report(), &[&name, what]);
    for command in ["eval", "run"] {
        let out = f.run(command, &f.out);
        assert!(!out.status.success(), "{command} accepted an edited {file}");
        assert!(stderr(&out).contains(&name), "{}", stderr(&out));
    }
    let after = snapshot(&f.out);
    let changed: Vec<&PathBuf> = before
        .iter()
        .zip(&after)
        .filter(|(a, b)| a != b)
        .map(|(a, _)| &a.0)
        .collect();
    // `eval` and `run` may write their timing records; nothing of the run itself changes.
    assert!(
        changed.iter().all(|p| p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("timing"))),
        "{changed:?}"
    );
    std::fs::write(&path, original).unwrap();
    assert!(f.report().status.success());
}

#[test]
#[cfg_attr(
    specreg_no_mnist,
    ignore = "MNIST not found at build time (see the cargo warning): set SPECREG_DATA"
)]
fn folders_of_other_versions_and_edited_runs_are_refused() {
    let f = Finished::new();
    assert!(f.report().status.success(), "{}", stderr(&f.report()));

    // Edited after evaluation: each file the summary covers, and the summary itself.
    refused_after_edit(
        &f,
        "robustness.csv",
        |t| t.replacen("fgsm,0.1,", "fgsm,0.1,1", 1),
        "edited after the run was evaluated",
    );
    refused_after_edit(
        &f,
        "metrics.jsonl",
        |t| t.replacen("\"test_accuracy\":", "\"test_accuracy\":0.5,\"was\":", 1),
        "SHA-256 differs",
    );
    refused_after_edit(
        &f,
        "config.toml",
        |t| format!("{t}\n# tuned by hand\n"),
        "SHA-256 differs",
    );
    refused_after_edit(
        &f,
        "summary.json",
        |t| t.replacen("\"clean_accuracy\": 0.", "\"clean_accuracy\": 0.9", 1),
        "no longer matches the digest",
    );
    refused_after_edit(
        &f,
        "summary.json",
        |t| t.replacen("\"train_images\": 500", "\"train_images\": \"500\"", 1),
        "train_images",
    );

    // A results folder written by a version before formats were recorded (format 1: no
    // `format` field), and one of a later format.
    refused_after_edit(
        &f,
        "summary.json",
        |t| t.replacen("\"format\": 2,", "", 1),
        "written in results format 1, but this specreg reads format 2",
    );
    refused_after_edit(
        &f,
        "summary.json",
        |t| t.replacen("\"format\": 2,", "\"format\": 3,", 1),
        "written in results format 3",
    );

    // A file that appeared in the run folder after evaluation.
    let extra = f.run_dir().join("notes.txt");
    std::fs::write(&extra, "looks fine\n").unwrap();
    one_error(
        &f.report(),
        &["notes.txt", "appeared after the run was evaluated"],
    );
    std::fs::remove_file(&extra).unwrap();
    assert!(f.report().status.success());
}

/// Whether this kernel lets an unprivileged process mount in a namespace of its own.
fn namespaces_work() -> bool {
    Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "true"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs `script` (sh, with `$@` = `args`) in a private user and mount namespace.
fn in_namespace(script: &str, args: &[&str]) -> Output {
    Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .args(args)
        .output()
        .unwrap()
}

#[test]
#[cfg_attr(
    specreg_no_mnist,
    ignore = "MNIST not found at build time (see the cargo warning): set SPECREG_DATA"
)]
fn a_read_only_results_folder_is_named_and_left_alone() {
    if !namespaces_work() {
        eprintln!("skipping: no user namespaces here (unshare --user --mount failed)");
        return;
    }
    let f = Finished::new();
    let before = snapshot(&f.out);
    let mount = f.root.join("read-only");
    std::fs::create_dir_all(&mount).unwrap();
    let other = f.root.join("other.toml");
    std::fs::write(&other, CONFIG.replace("results-test", "other-test")).unwrap();
    let bin = env!("CARGO_BIN_EXE_specreg");
    // A new run into the read-only folder (its first write stops the sweep), then the
    // finished one again (skipped, but its timing record cannot be written).
    for config in [&other, &f.config] {
        let out = in_namespace(
            "mount --bind \"$1\" \"$2\" && mount -o remount,bind,ro \"$2\" && \
             XDG_CACHE_HOME=\"$5\" SPECREG_COMMIT=results-test \
             \"$3\" run --config \"$4\" --out \"$2\" --data \"$6\" --threads 2 --quiet",
            &[
                f.out.to_str().unwrap(),
                mount.to_str().unwrap(),
                bin,
                config.to_str().unwrap(),
                f.cache.to_str().unwrap(),
                f.data.to_str().unwrap(),
            ],
        );
        one_error(
            &out,
            &["Read-only file system", &mount.display().to_string()],
        );
    }
    assert!(snapshot(&f.out) == before, "the finished run changed");
}

#[test]
#[cfg_attr(
    specreg_no_mnist,
    ignore = "MNIST not found at build time (see the cargo warning): set SPECREG_DATA"
)]
fn a_full_disk_stops_the_sweep_without_half_written_files() {
    if !namespaces_work() {
        eprintln!("skipping: no user namespaces here (unshare --user --mount failed)");
        return;
    }
    let f = Finished::new();
    let disk = f.root.join("small-disk");
    std::fs::create_dir_all(&disk).unwrap();
    let listing = f.root.join("listing.txt");
    // The MLP's checkpoint alone is several MiB: a 256 KiB disk fills during the first
    // epoch's checkpoint. The listing of what was left is taken before the namespace (and
    // its tmpfs) goes away.
    let out = in_namespace(
        "mount -t tmpfs -o size=256k tmpfs \"$1\" || exit 99; \
         XDG_CACHE_HOME=\"$4\" SPECREG_COMMIT=results-test \
         \"$2\" run --config \"$3\" --out \"$1/results\" --data \"$5\" --threads 2 --quiet; \
         rc=$?; (cd \"$1\" && find . -type f) > \"$6\"; exit $rc",
        &[
            disk.to_str().unwrap(),
            env!("CARGO_BIN_EXE_specreg"),
            f.config.to_str().unwrap(),
            f.cache.to_str().unwrap(),
            f.data.to_str().unwrap(),
            listing.to_str().unwrap(),
        ],
    );
    assert_ne!(
        out.status.code(),
        Some(99),
        "mounting the tmpfs failed: {}",
        stderr(&out)
    );
    let line = one_error(&out, &["No space left on device", "cannot be written"]);
    assert!(line.contains(&disk.display().to_string()), "{line}");
    let left = std::fs::read_to_string(&listing).unwrap();
    let files: Vec<&str> = left.lines().collect();
    assert!(
        files.iter().all(|p| !p.ends_with(".tmp")),
        "temp files left: {files:?}"
    );
    // Only whole files remain: the resolved config; no model, no checkpoint state that
    // points at a missing epoch, no summary.
    for name in [
        "model.safetensors",
        "state.json",
        "summary.json",
        "metrics.jsonl",
    ] {
        assert!(
            !files.iter().any(|p| p.ends_with(name)),
            "{name} written on a full disk: {files:?}"
        );
    }
}
