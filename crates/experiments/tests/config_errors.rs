//! Config parsing: unknown keys, wrong types and out-of-range values are errors that name
//! the key; every shipped config and profile parses.

use std::path::Path;

use specreg_experiments::config::{Config, ModelKind};
use specreg_experiments::profile::{Profile, config_files};
use specreg_experiments::{ConfigError, Experiment};

const BASE: &str = r#"
experiment = "exp2"
variant = "mlp-specreg-last-b2"
seeds = [0, 1, 2]

[model]
kind = "mlp"

[train]
epochs = 100
batch_size = 1500
lr = 1e-4

[spectral]
layers = ["fc3"]
beta = 2.0
tau = 10
"#;

/// Parses `BASE` with `from` replaced by `to`, expecting an error; returns (key, message).
fn error_of(from: &str, to: &str) -> (String, String) {
    let text = BASE.replace(from, to);
    assert_ne!(text, BASE, "the replacement {from:?} did not apply");
    match Config::from_toml_str(&text, "test.toml") {
        Ok(c) => panic!("expected an error for {to:?}, got {c:?}"),
        Err(ConfigError::Invalid {
            key,
            message,
            origin,
        }) => {
            assert_eq!(origin, "test.toml");
            (key, message)
        }
        Err(other) => panic!("expected ConfigError::Invalid, got {other}"),
    }
}

#[test]
fn base_config_is_valid() {
    let c = Config::from_toml_str(BASE, "base").unwrap();
    assert_eq!(c.experiment, Experiment::Exp2);
    assert_eq!(c.model.kind, ModelKind::Mlp);
    assert_eq!(
        c.spectral.as_ref().unwrap().layer_names(c.model.kind),
        ["fc3"]
    );
}

#[test]
fn unknown_keys_are_named() {
    let (key, msg) = error_of("beta = 2.0", "betaa = 2.0");
    assert_eq!(key, "spectral.betaa");
    assert!(msg.contains("unknown field `betaa`"), "{msg}");
    let (key, msg) = error_of("lr = 1e-4", "lr = 1e-4\nmomentum = 0.9");
    assert_eq!(key, "train.momentum");
    assert!(msg.contains("unknown field"), "{msg}");
    let (key, _) = error_of("seeds = [0, 1, 2]", "seeds = [0]\nsed = 3");
    assert_eq!(key, "sed");
    let (key, _) = error_of("[spectral]", "[spectrall]");
    assert_eq!(key, "spectrall");
}

#[test]
fn wrong_types_are_named() {
    let (key, msg) = error_of("epochs = 100", "epochs = \"ten\"");
    assert_eq!(key, "train.epochs");
    assert!(msg.contains("invalid type"), "{msg}");
    let (key, _) = error_of("kind = \"mlp\"", "kind = \"resnet\"");
    assert_eq!(key, "model.kind");
    let (key, _) = error_of("seeds = [0, 1, 2]", "seeds = [0, \"one\"]");
    assert_eq!(key, "seeds[1]");
    let (key, _) = error_of("epochs = 100", "epochs = -3");
    assert_eq!(key, "train.epochs");
}

#[test]
fn negative_beta_is_rejected() {
    let (key, msg) = error_of("beta = 2.0", "beta = -1.0");
    assert_eq!(key, "spectral.beta");
    // The regulariser's own check, named under the config key.
    assert!(msg.contains("beta must be finite and ≥ 0, got -1"), "{msg}");
    let text = format!("{BASE}\n").replace(
        "[spectral]\nlayers = [\"fc3\"]\nbeta = 2.0\ntau = 10\n",
        "[jacobian]\nbeta = -0.01\n",
    );
    let err = Config::from_toml_str(&text, "j").unwrap_err().to_string();
    assert!(
        err.contains("jacobian.beta: must be finite and ≥ 0, got -0.01"),
        "{err}"
    );
}

#[test]
fn tau_at_or_above_width_is_rejected() {
    let (key, msg) = error_of("tau = 10", "tau = 1000");
    assert_eq!(key, "spectral.tau");
    assert_eq!(msg, "(1000) must be < width of fc3 (1000)");
    let (key, _) = error_of("tau = 10", "tau = 0");
    assert_eq!(key, "spectral.tau");
    assert!(Config::from_toml_str(&BASE.replace("tau = 10", "tau = 999"), "ok").is_ok());
    // The CNN's conv2 representation is 800 wide.
    let cnn = BASE
        .replace("kind = \"mlp\"", "kind = \"cnn\"")
        .replace("layers = [\"fc3\"]", "layers = [\"conv2\"]")
        .replace("tau = 10", "tau = 800");
    let err = Config::from_toml_str(&cnn, "c").unwrap_err().to_string();
    assert!(
        err.contains("spectral.tau: (800) must be < width of conv2 (800)"),
        "{err}"
    );
}

#[test]
fn other_ranges_are_rejected() {
    assert_eq!(error_of("epochs = 100", "epochs = 0").0, "train.epochs");
    assert_eq!(error_of("lr = 1e-4", "lr = 0.0").0, "train.lr");
    assert_eq!(
        error_of("batch_size = 1500", "batch_size = 1").0,
        "train.batch_size"
    );
    assert_eq!(
        error_of("layers = [\"fc3\"]", "layers = [\"fc9\"]").0,
        "spectral.layers"
    );
    assert_eq!(error_of("seeds = [0, 1, 2]", "seeds = [1, 1]").0, "seeds");
    let (key, msg) = error_of("tau = 10", "tau = 10\nalpha = [1.0, 2.0]");
    assert_eq!(key, "spectral.alpha");
    assert!(msg.contains("2 values for 1"), "{msg}");
    let text = format!(
        "{BASE}\n[eval]\nfgsm_eps = [0.0, 0.2, 0.1]\npgd_eps = [0.1]\nnoise_sigma = [0.5]\n"
    );
    let err = Config::from_toml_str(&text, "e").unwrap_err().to_string();
    assert!(
        err.contains("eval.fgsm_eps: must be strictly increasing"),
        "{err}"
    );
    let err = Config::from_toml_str("experiment = ", "bad").unwrap_err();
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
}

#[test]
fn shipped_configs_and_profiles_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let files = config_files(&dir).unwrap();
    assert_eq!(files.len(), 36, "8 + 16 + 12 configs expected");
    let paper = Profile::paper();
    let mut ids = Vec::new();
    for f in &files {
        let c = paper.load_config(f).unwrap();
        assert_eq!(c.seeds, [0, 1, 2], "{}", c.id());
        ids.push(c.id());
    }
    for name in ["smoke", "quick"] {
        let p = Profile::load(name, &dir).unwrap();
        let mut included = 0;
        for (f, id) in files.iter().zip(&ids) {
            if p.includes(id) {
                let c = p.load_config(f).unwrap();
                included += 1;
                assert_eq!(c.seeds.len(), 1);
            }
        }
        for pattern in &p.include {
            assert!(
                ids.iter().any(|id| id == pattern),
                "{name}: {pattern} matches no config"
            );
        }
        assert_eq!(included, p.include.len());
    }
}

#[test]
fn unknown_profiles_and_missing_files_are_named() {
    let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    match Profile::load("quik", &configs) {
        Err(e @ ConfigError::UnknownProfile { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("\"quik\"") && msg.contains("quik.toml"),
                "{msg}"
            );
        }
        other => panic!("expected UnknownProfile, got {other:?}"),
    }
    match Config::load(Path::new("/nonexistent/specreg/x.toml")) {
        Err(e @ ConfigError::Io { .. }) => {
            assert_eq!(e.to_string(), "cannot read /nonexistent/specreg/x.toml");
        }
        other => panic!("expected Io, got {other:?}"),
    }
}

#[test]
fn batch_size_rule_names_the_layer() {
    // 1.25 × 1000 = 1250 > 1000.
    let (key, msg) = error_of("batch_size = 1500", "batch_size = 1000");
    assert_eq!(key, "train.batch_size");
    assert!(msg.contains("fc3 (1000)") && msg.contains("1250"), "{msg}");
    // The rule can be switched off.
    let ok = BASE.replace(
        "batch_size = 1500",
        "batch_size = 1000\nmin_batch_ratio = 0.0",
    );
    Config::from_toml_str(&ok, "t").unwrap();
    let (key, msg) = error_of("lr = 1e-4", "lr = 1e-4\nmin_batch_ratio = -1.0");
    assert_eq!(key, "train.min_batch_ratio");
    assert!(msg.contains("≥ 0"), "{msg}");
    // A last partial batch below the rule breaks a whitened layer (not the penalty).
    let short = "lr = 1e-4\ntrain_subset = 2000";
    Config::from_toml_str(&BASE.replace("lr = 1e-4", short), "t").unwrap();
    let whitened = format!(
        "{}\n[whitening]\nlayer = \"fc2\"\n",
        BASE.replace("lr = 1e-4", short)
    );
    match Config::from_toml_str(&whitened, "t") {
        Err(ConfigError::Invalid { key, message, .. }) => {
            assert_eq!(key, "train.batch_size");
            assert!(message.contains("last batch of 500"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn batch_statistics_evaluation_needs_fixed_size_batches() {
    let whitened = format!("{BASE}\n[whitening]\nlayer = \"fc2\"\n[eval]\ntest_subset = 3000\n");
    let c = Config::from_toml_str(&whitened, "t");
    match c {
        Err(ConfigError::Invalid { key, message, .. }) => {
            assert_eq!(key, "eval.batch_size");
            assert!(message.contains("divide the 3000 test images"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // Running statistics: independent samples, any batch.
    let running = whitened.replace(
        "layer = \"fc2\"",
        "layer = \"fc2\"\nstatistics = \"running\"",
    );
    Config::from_toml_str(&running, "t").unwrap();
    // Batch statistics: the evaluation batch obeys the width rule.
    let small = whitened.replace(
        "test_subset = 3000",
        "test_subset = 3000\nbatch_size = 1000",
    );
    match Config::from_toml_str(&small, "t") {
        Err(ConfigError::Invalid { key, message, .. }) => {
            assert_eq!(key, "eval.batch_size");
            assert!(message.contains("1250"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn new_fidelity_options_parse_and_validate() {
    let c = Config::from_toml_str(BASE, "t").unwrap();
    assert!(
        c.eval.pgd_random_start,
        "the paper protocol starts PGD at random"
    );
    assert_eq!(c.eval.fit_ranks, [11, 500]);
    assert!(c.spectral.as_ref().unwrap().sort_projected);
    assert_eq!(c.eval.strong_eps, [0.05, 0.1, 0.2]);
    let (key, _) = error_of("tau = 10", "tau = 10\n[eval]\nfit_ranks = [11, 12]");
    assert_eq!(key, "eval.fit_ranks");
    let (key, _) = error_of("tau = 10", "tau = 10\n[eval]\nstrong_eps = [0.2, 0.1]");
    assert_eq!(key, "eval.strong_eps");
    let (key, _) = error_of("tau = 10", "tau = 10\n[eval]\napgd_steps = 0");
    assert_eq!(key, "eval.apgd_steps");
    let (key, msg) = error_of("kind = \"mlp\"", "kind = \"mlp\"\nbatchnorm = false");
    assert_eq!(key, "model.batchnorm");
    assert!(msg.contains("only the shallow network"), "{msg}");
    let (key, msg) = error_of(
        "variant = \"mlp-specreg-last-b2\"",
        "variant = \"x\"\nrole = \"best\"",
    );
    assert_eq!(key, "role");
    assert!(msg.contains("unknown variant"), "{msg}");
}

#[test]
fn shipped_configs_carry_roles_and_the_reference_jacobian() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    for exp in ["exp1", "exp2", "exp3"] {
        for entry in std::fs::read_dir(root.join(exp)).unwrap() {
            let path = entry.unwrap().path();
            let c = Config::load(&path).unwrap();
            assert!(c.role.is_some(), "{} has no role", path.display());
            if let Some(j) = &c.jacobian {
                let eq11 = c.variant.ends_with("-eq11");
                assert_eq!(
                    j.kind == specreg_experiments::config::JacobianKindName::InputLoss,
                    eq11,
                    "{}",
                    c.variant
                );
            }
        }
    }
}

#[test]
fn alpha_schedules_follow_the_regularizer_rule() {
    // The library requires a schedule that ends at 1 (the 1/n law); validation used to
    // accept one that did not, which then failed when the run started.
    let (key, msg) = error_of("tau = 10", "tau = 10\nalpha = 2.0");
    assert_eq!(key, "spectral.alpha");
    assert!(msg.contains("must end at 1"), "{msg}");
}

#[test]
fn architecture_comes_from_the_network() {
    let mlp: Vec<(&str, usize)> = ModelKind::Mlp
        .hidden_layers()
        .iter()
        .map(|(n, w)| (n.as_str(), *w))
        .collect();
    assert_eq!(mlp, [("fc1", 1000), ("fc2", 1000), ("fc3", 1000)]);
    let cnn: Vec<(&str, usize)> = ModelKind::Cnn
        .hidden_layers()
        .iter()
        .map(|(n, w)| (n.as_str(), *w))
        .collect();
    assert_eq!(
        cnn,
        [
            ("conv1", 16 * 13 * 13),
            ("conv2", 32 * 5 * 5),
            ("fc1", 1000)
        ]
    );
    assert_eq!(ModelKind::Shallow.last_hidden(), "hidden");
    assert_eq!(ModelKind::Shallow.width("hidden"), Some(2000));
}
