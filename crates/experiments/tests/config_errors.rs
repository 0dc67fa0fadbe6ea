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
    assert_eq!(msg, "must be ≥ 0, got -1");
    let text = format!("{BASE}\n").replace(
        "[spectral]\nlayers = [\"fc3\"]\nbeta = 2.0\ntau = 10\n",
        "[jacobian]\nbeta = -0.01\n",
    );
    let err = Config::from_toml_str(&text, "j").unwrap_err().to_string();
    assert!(err.contains("jacobian.beta: must be ≥ 0"), "{err}");
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
    assert_eq!(files.len(), 30, "4 + 16 + 10 configs expected");
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
        for f in &files {
            let c = p.load_config(f).unwrap();
            if p.includes(&c.id()) {
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
