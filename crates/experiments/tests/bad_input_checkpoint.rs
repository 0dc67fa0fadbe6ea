//! The bad-input catalogue, checkpoints: a broken `model.safetensors` of a trained run
//! (read by `specreg eval`) or a broken resume checkpoint under `checkpoint/epoch-XXXX/`
//! (read when `specreg train` resumes) makes the command exit non-zero with one error line
//! naming the file and what is wrong, writes nothing, and leaves every run as it was.
//!
//! The cases are one table ([`CASES`]): what is done to which file, and the words the
//! error must contain.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tiny MLP run; its variant's name is `{variant}`, its length `{epochs}` epochs.
fn config(variant: &str, kind: &str, epochs: usize) -> String {
    format!(
        r#"experiment = "exp2"
variant = "{variant}"
seeds = [0]

[model]
kind = "{kind}"

[train]
epochs = {epochs}
batch_size = 100
lr = 1e-4
train_subset = 300
min_batch_ratio = 0.0

[eval]
test_subset = 100
batch_size = 100
fgsm_eps = [0.0, 0.1]
pgd_eps = [0.0, 0.1]
pgd_steps = 2
noise_sigma = [0.0, 0.5]
strong_eps = [0.1]
apgd_steps = 2
spectrum_images = 300
sensitivity_images = 100
"#
    )
}

/// Which file a case breaks, and so which command reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    /// `seed0/model.safetensors`, read by `specreg eval`.
    Final,
    /// `seed0/checkpoint/epoch-0001/model.safetensors`, read when `specreg train` resumes.
    ResumeModel,
    /// `seed0/checkpoint/epoch-0001/optimizer.safetensors`, read when training resumes.
    ResumeOptimizer,
}

impl Target {
    fn rel(self) -> &'static str {
        match self {
            Target::Final => "model.safetensors",
            Target::ResumeModel => "checkpoint/epoch-0001/model.safetensors",
            Target::ResumeOptimizer => "checkpoint/epoch-0001/optimizer.safetensors",
        }
    }
}

/// What a case does to the file.
#[derive(Debug, Clone, Copy)]
enum Damage {
    /// Keeps the first half of the bytes.
    Truncate,
    /// Renames tensor `0.weight` to `0.wieght`.
    RenameTensor,
    /// Swaps the two dimensions of `0.weight`'s shape (same size, wrong shape).
    TransposeShape,
    /// Declares `0.weight` as `I32` (same size, wrong dtype).
    WrongDtype,
    /// Writes NaN over the first 3 values of `0.bias` (model) or `0.exp_avg` (optimiser).
    NanValues,
    /// Replaces the file with the same file of the tiny CNN run.
    OtherArchitecture,
    /// Replaces the file with the same file of another MLP config (2 epochs).
    OtherConfig,
    /// Replaces the file with the same file of an MLP config of the same seed and length
    /// but another learning rate.
    OtherSettings,
}

struct Case {
    name: &'static str,
    target: Target,
    damage: Damage,
    /// Words the one error line must contain (besides the file's path).
    expect: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        name: "final-truncated",
        target: Target::Final,
        damage: Damage::Truncate,
        expect: &["corrupt or invalid checkpoint"],
    },
    Case {
        name: "final-names",
        target: Target::Final,
        damage: Damage::RenameTensor,
        expect: &["missing tensor 0.weight"],
    },
    Case {
        name: "final-shape",
        target: Target::Final,
        damage: Damage::TransposeShape,
        expect: &[
            "tensor 0.weight",
            "expected shape [1000, 784]",
            "found [784, 1000]",
        ],
    },
    Case {
        name: "final-dtype",
        target: Target::Final,
        damage: Damage::WrongDtype,
        expect: &["tensor 0.weight", "expected dtype F32 or F64", "found I32"],
    },
    Case {
        name: "final-nan",
        target: Target::Final,
        damage: Damage::NanValues,
        expect: &["tensor 0.bias", "3 of 1000 values are not finite"],
    },
    Case {
        name: "final-architecture",
        target: Target::Final,
        damage: Damage::OtherArchitecture,
        expect: &[
            "tensor 0.weight",
            "expected shape [1000, 784]",
            "found [16, 1, 3, 3]",
        ],
    },
    Case {
        name: "final-config",
        target: Target::Final,
        damage: Damage::OtherConfig,
        expect: &["after epoch 2", "expects epoch 1", "another run or config"],
    },
    Case {
        name: "final-config-same-length",
        target: Target::Final,
        damage: Damage::OtherSettings,
        expect: &["trained with another config", "SHA-256"],
    },
    Case {
        name: "resume-truncated",
        target: Target::ResumeModel,
        damage: Damage::Truncate,
        expect: &["resuming from", "corrupt or invalid checkpoint"],
    },
    Case {
        name: "resume-names",
        target: Target::ResumeModel,
        damage: Damage::RenameTensor,
        expect: &["resuming from", "missing tensor 0.weight"],
    },
    Case {
        name: "resume-shape",
        target: Target::ResumeModel,
        damage: Damage::TransposeShape,
        expect: &[
            "resuming from",
            "expected shape [1000, 784]",
            "found [784, 1000]",
        ],
    },
    Case {
        name: "resume-dtype",
        target: Target::ResumeModel,
        damage: Damage::WrongDtype,
        expect: &["resuming from", "found I32"],
    },
    Case {
        name: "resume-nan",
        target: Target::ResumeModel,
        damage: Damage::NanValues,
        expect: &["tensor 0.bias", "3 of 1000 values are not finite"],
    },
    Case {
        name: "resume-architecture",
        target: Target::ResumeModel,
        damage: Damage::OtherArchitecture,
        expect: &["resuming from", "found [16, 1, 3, 3]"],
    },
    Case {
        name: "resume-config",
        target: Target::ResumeModel,
        damage: Damage::OtherConfig,
        expect: &["after epoch 2", "expects epoch 1"],
    },
    Case {
        name: "resume-config-same-length",
        target: Target::ResumeModel,
        damage: Damage::OtherSettings,
        expect: &["epoch-0001", "trained with another config"],
    },
    Case {
        name: "optimizer-truncated",
        target: Target::ResumeOptimizer,
        damage: Damage::Truncate,
        expect: &["resuming from", "corrupt or invalid checkpoint"],
    },
    Case {
        name: "optimizer-nan",
        target: Target::ResumeOptimizer,
        damage: Damage::NanValues,
        expect: &["tensor 0.exp_avg", "values are not finite"],
    },
];

/// A safetensors file's header and data section.
fn split(bytes: &[u8]) -> (serde_json::Value, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (
        serde_json::from_slice(&bytes[8..8 + n]).unwrap(),
        bytes[8 + n..].to_vec(),
    )
}

fn join(header: &serde_json::Value, data: &[u8]) -> Vec<u8> {
    let h = serde_json::to_vec(header).unwrap();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out
}

fn damage(bytes: &[u8], how: Damage, others: [&[u8]; 3]) -> Vec<u8> {
    let [other_arch, other_config, other_settings] = others;
    let (mut h, mut data) = split(bytes);
    match how {
        Damage::OtherSettings => return other_settings.to_vec(),
        Damage::Truncate => return bytes[..bytes.len() / 2].to_vec(),
        Damage::OtherArchitecture => return other_arch.to_vec(),
        Damage::OtherConfig => return other_config.to_vec(),
        Damage::RenameTensor => {
            let t = h.as_object_mut().unwrap().remove("0.weight").unwrap();
            h["0.wieght"] = t;
        }
        Damage::TransposeShape => h["0.weight"]["shape"] = serde_json::json!([784, 1000]),
        Damage::WrongDtype => h["0.weight"]["dtype"] = serde_json::json!("I32"),
        Damage::NanValues => {
            // `0.bias` of a model, `0.exp_avg` of an optimiser state.
            let name = if h.get("0.bias").is_some() {
                "0.bias"
            } else {
                "0.exp_avg"
            };
            let start = h[name]["data_offsets"][0].as_u64().unwrap() as usize;
            for i in 0..3 {
                let at = start + 4 * i;
                data[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
            }
        }
    }
    join(&h, &data)
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

fn copy_tree(from: &Path, to: &Path) {
    for (rel, bytes) in snapshot(from) {
        let p = to.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
}

fn specreg(args: &[&str], config: &Path, out: &Path, data: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_specreg"));
    c.args(args)
        .arg("--config")
        .arg(config)
        .arg("--out")
        .arg(out)
        .arg("--data")
        .arg(data)
        .args(["--threads", "2", "--quiet"])
        .env("SPECREG_COMMIT", "bad-input-test");
    c
}

fn ok(mut c: Command) {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[cfg_attr(
    specreg_no_mnist,
    ignore = "MNIST not found at build time (see the cargo warning): set SPECREG_DATA"
)]
fn broken_checkpoints_are_one_clear_error_and_change_nothing() {
    let Some(data) = common::data() else {
        eprintln!("skipping: MNIST not found (set SPECREG_DATA)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let write = |name: &str, text: String| {
        let p = tmp.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let mlp = write("mlp.toml", config("bad-mlp", "mlp", 1));
    let cnn = write("cnn.toml", config("bad-cnn", "cnn", 1));
    let longer = write("longer.toml", config("bad-mlp-longer", "mlp", 2));
    let settings = write(
        "settings.toml",
        config("bad-mlp-lr", "mlp", 1).replace("lr = 1e-4", "lr = 2e-4"),
    );
    // The pristine results: the MLP run trained (not evaluated), beside a finished CNN run
    // and a 2-epoch MLP run of another config.
    let pristine = tmp.path().join("pristine");
    for c in [&mlp, &cnn, &longer, &settings] {
        ok(specreg(&["train"], c, &pristine, &data));
    }
    let run = |out: &Path, variant: &str| out.join("exp2").join(variant).join("seed0");
    let other_arch = |t: Target| std::fs::read(run(&pristine, "bad-cnn").join(t.rel())).unwrap();
    let other_config = |t: Target| {
        // The longer run keeps only its last epoch's checkpoint.
        let rel = t.rel().replace("epoch-0001", "epoch-0002");
        std::fs::read(run(&pristine, "bad-mlp-longer").join(rel)).unwrap()
    };
    let other_settings =
        |t: Target| std::fs::read(run(&pristine, "bad-mlp-lr").join(t.rel())).unwrap();
    assert_eq!(CASES.len(), 18);
    let mut failures = Vec::new();
    for case in CASES {
        let out = tmp.path().join(case.name);
        copy_tree(&pristine, &out);
        let dir = run(&out, "bad-mlp");
        let file = dir.join(case.target.rel());
        let bytes = std::fs::read(&file).unwrap();
        let broken = damage(
            &bytes,
            case.damage,
            [
                &other_arch(case.target),
                &other_config(case.target),
                &other_settings(case.target),
            ],
        );
        std::fs::write(&file, broken).unwrap();
        let cmd = if case.target == Target::Final {
            "eval"
        } else {
            // A run stopped after epoch 1 of 2 would resume from the epoch-1 files; here
            // the state says epoch 1 of the 1-epoch run is done but the run is unfinished,
            // which makes `train` load them.
            let state = dir.join("checkpoint/state.json");
            let text = std::fs::read_to_string(&state).unwrap();
            let text = text.replace("\"status\": \"finished\"", "\"status\": \"training\"");
            std::fs::write(&state, text).unwrap();
            std::fs::remove_file(dir.join("model.safetensors")).unwrap();
            "train"
        };
        let before = snapshot(&out);
        let result = specreg(&[cmd], &mlp, &out, &data).output().unwrap();
        let stderr = String::from_utf8_lossy(&result.stderr);
        // The one message: the line naming the file (`error: …` from `eval`; from `train`,
        // whose sweep goes on with the next run, `warning: <run>: …` before the count of
        // failed runs).
        let named = case.target.rel();
        let errors: Vec<&str> = stderr.lines().filter(|l| l.contains(named)).collect();
        let mut problems = Vec::new();
        if result.status.success() {
            problems.push("exit status 0".to_string());
        }
        if errors.len() != 1 {
            problems.push(format!("{} lines name the file", errors.len()));
        }
        let line = errors.first().copied().unwrap_or("");
        for word in std::iter::once(named).chain(case.expect.iter().copied()) {
            if !line.contains(word) {
                problems.push(format!("no {word:?} in the error"));
            }
        }
        let after = snapshot(&out);
        let changed: Vec<String> = before
            .keys()
            .chain(after.keys())
            .filter(|k| before.get(*k) != after.get(*k))
            // The sweep's own timing record (estimate against measurement) at the root is
            // not a run's file; every run folder must be byte-identical.
            .filter(|k| !k.to_string_lossy().starts_with("timing"))
            .map(|k| k.display().to_string())
            .collect();
        if !changed.is_empty() {
            problems.push(format!("files changed: {changed:?}"));
        }
        if !common::temp_files(&out).is_empty() {
            problems.push("temporary files left".into());
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{}: {}\n  stderr: {stderr}",
                case.name,
                problems.join("; ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}
