//! Run configurations: the TOML schema of `configs/**.toml`, loading with overrides, and
//! validation.
//!
//! A config describes one *variant* of one experiment (network, regularisers, training
//! and evaluation settings) and the seeds to run it with. Unknown keys are errors
//! (`deny_unknown_fields` everywhere), and every error names the key with its full dotted
//! path (`spectral.beta`, `train.epochs`).
//!
//! ```toml
//! experiment = "exp1"
//! variant = "specreg-b2"
//! seeds = [0, 1, 2]
//!
//! [model]
//! kind = "shallow"
//!
//! [train]
//! epochs = 50
//! batch_size = 3500
//! lr = 1e-3
//!
//! [spectral]
//! layers = ["hidden"]
//! beta = 2.0
//! ```

mod eval;
mod schema;
mod validate;

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

pub use eval::*;
pub use schema::*;
pub use validate::device_name_is_valid;

/// One variant of one experiment, and the seeds to run it with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `exp1`, `exp2` or `exp3`.
    pub experiment: Experiment,
    /// The variant's name: the results folder `results/<experiment>/<variant>/`.
    pub variant: String,
    /// One line for the report's tables.
    #[serde(default)]
    pub description: String,
    /// What the variant stands for in the paper's claims (absent: used by none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// Seeds; one run per seed.
    pub seeds: Vec<u64>,
    /// `cpu`, `cuda` or `cuda:N` (overridden by `--device`).
    #[serde(default = "default_device")]
    pub device: String,
    /// The network.
    pub model: ModelConfig,
    /// Training.
    pub train: TrainConfig,
    /// Spectral regulariser (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spectral: Option<SpectralConfig>,
    /// Whitening layer (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub whitening: Option<WhiteningConfig>,
    /// Jacobian regulariser (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jacobian: Option<JacobianConfig>,
    /// Evaluation (default: the paper's protocol).
    #[serde(default)]
    pub eval: EvalConfig,
}

fn default_device() -> String {
    "cpu".into()
}

/// Number of MNIST training images.
pub const MNIST_TRAIN: usize = 60_000;
/// Number of MNIST test images.
pub const MNIST_TEST: usize = 10_000;

impl Config {
    /// Parses a config from TOML text; `origin` names it in errors.
    ///
    /// # Errors
    /// [`ConfigError`] for invalid TOML, unknown keys, wrong types and out-of-range values,
    /// each naming the key.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    origin: origin.into(),
                    message: e.to_string(),
                })?;
        Config::from_table(table, origin)
    }

    /// Reads and parses a config file.
    ///
    /// # Errors
    /// [`ConfigError::Io`] and the errors of [`Config::from_toml_str`].
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with(path, &[])
    }

    /// Reads a config file, merges `overrides` into it (later tables win, key by key) and
    /// parses the result.
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn load_with(path: &Path, overrides: &[toml::Table]) -> Result<Config, ConfigError> {
        let mut table = Config::read_table(path)?;
        for o in overrides {
            merge_tables(&mut table, o);
        }
        Config::from_table(table, &path.display().to_string())
    }

    /// Reads a config file as a TOML table, neither merged nor validated.
    ///
    /// # Errors
    /// [`ConfigError::Io`] and [`ConfigError::Syntax`], naming the file.
    pub fn read_table(path: &Path) -> Result<toml::Table, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: origin.clone(),
            source,
        })?;
        text.parse()
            .map_err(|e: toml::de::Error| ConfigError::Syntax {
                origin,
                message: e.to_string(),
            })
    }

    /// Parses and validates an already parsed TOML table.
    ///
    /// # Errors
    /// As [`Config::from_toml_str`].
    pub fn from_table(table: toml::Table, origin: &str) -> Result<Config, ConfigError> {
        let config: Config =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                let key = e.path().to_string();
                ConfigError::Invalid {
                    origin: origin.into(),
                    key: if key == "." {
                        "(top level)".into()
                    } else {
                        key
                    },
                    message: one_line(&e.into_inner().to_string()),
                }
            })?;
        config
            .validate()
            .map_err(|(key, message)| ConfigError::Invalid {
                origin: origin.into(),
                key,
                message,
            })?;
        Ok(config)
    }

    /// The config as TOML text.
    pub fn to_toml(&self) -> String {
        // Serialising plain data to TOML cannot fail: every field has a TOML form.
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# unserialisable config: {e}\n"))
    }

    /// Number of training images a run uses.
    pub fn train_images(&self) -> usize {
        self.train
            .train_subset
            .unwrap_or(MNIST_TRAIN)
            .min(MNIST_TRAIN)
    }

    /// Number of test images the evaluation uses.
    pub fn test_images(&self) -> usize {
        self.eval.test_subset.unwrap_or(MNIST_TEST).min(MNIST_TEST)
    }

    /// `<experiment>/<variant>`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.experiment.name(), self.variant)
    }

    /// What a training run depends on, as canonical TOML: model, training, regularisers
    /// and the given seed (not the evaluation settings, description or seed list).
    pub fn training_fingerprint(&self, seed: u64) -> String {
        #[derive(Serialize)]
        struct Training<'a> {
            seed: u64,
            model: &'a ModelConfig,
            train: &'a TrainConfig,
            #[serde(skip_serializing_if = "Option::is_none")]
            spectral: &'a Option<SpectralConfig>,
            #[serde(skip_serializing_if = "Option::is_none")]
            whitening: &'a Option<WhiteningConfig>,
            #[serde(skip_serializing_if = "Option::is_none")]
            jacobian: &'a Option<JacobianConfig>,
        }
        let t = Training {
            seed,
            model: &self.model,
            train: &self.train,
            spectral: &self.spectral,
            whitening: &self.whitening,
            jacobian: &self.jacobian,
        };
        toml::to_string(&t).unwrap_or_default()
    }

    /// What an evaluation depends on besides the trained model, as canonical TOML.
    pub fn eval_fingerprint(&self) -> String {
        toml::to_string(&self.eval).unwrap_or_default()
    }
}

/// A deserialiser's message on one line: the TOML crate appends the key as a line of its
/// own (``in `train.lr` ``), which the error already names.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && (!l.starts_with("in `") || !l.ends_with('`')))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `error` with its message on one line (see [`Config::from_table`]'s messages): for errors
/// of deserialisers that repeat the key on a line of their own, such as a profile's.
pub fn one_line_error(error: ConfigError) -> ConfigError {
    match error {
        ConfigError::Invalid {
            origin,
            key,
            message,
        } => ConfigError::Invalid {
            origin,
            key,
            message: one_line(&message),
        },
        other => other,
    }
}

/// Whether `table` sets the dotted `key` of a [`ConfigError::Invalid`] (`train.lr`,
/// `seeds[1]`: an index names an element of the value the key sets).
pub fn table_sets(table: &toml::Table, key: &str) -> bool {
    let mut table = table;
    let mut parts = key.split('.').peekable();
    while let Some(part) = parts.next() {
        let name = part.split('[').next().unwrap_or(part);
        match table.get(name) {
            None => return false,
            Some(toml::Value::Table(inner)) if parts.peek().is_some() => table = inner,
            Some(_) => return parts.peek().is_none(),
        }
    }
    false
}

/// Merges `over` into `base`: tables merge key by key (recursively), anything else is
/// replaced.
pub fn merge_tables(base: &mut toml::Table, over: &toml::Table) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge_tables(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_grids_print_as_written() {
        let eps: Vec<String> = paper_eps_grid().iter().map(|e| e.to_string()).collect();
        assert_eq!(eps.len(), 13);
        assert_eq!(eps[3], "0.075");
        assert_eq!(eps[12], "0.3");
        let sigma: Vec<String> = paper_sigma_grid().iter().map(|s| s.to_string()).collect();
        assert_eq!(
            sigma,
            [
                "0", "0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9", "1"
            ]
        );
    }

    const MINIMAL: &str = r#"
experiment = "exp2"
variant = "mlp-vanilla"
seeds = [0]
[model]
kind = "mlp"
[train]
epochs = 1
batch_size = 10
lr = 1e-4
"#;

    #[test]
    fn minimal_gets_paper_eval_defaults() {
        let c = Config::from_toml_str(MINIMAL, "t").unwrap();
        assert_eq!(c.eval.fgsm_eps.len(), 13);
        assert!((c.eval.fgsm_eps[12] - 0.3).abs() < 1e-12);
        assert_eq!(c.eval.noise_sigma.len(), 11);
        assert_eq!(c.eval.pgd_steps, 40);
        assert_eq!(c.train_images(), 60_000);
        // Round trip through the resolved form.
        let again = Config::from_toml_str(&c.to_toml(), "t2").unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn merge_overrides_nested_keys_only() {
        let mut base: toml::Table = MINIMAL.parse().unwrap();
        let over: toml::Table = "[train]\nepochs = 3\n".parse().unwrap();
        merge_tables(&mut base, &over);
        let c = Config::from_table(base, "t").unwrap();
        assert_eq!((c.train.epochs, c.train.batch_size), (3, 10));
    }

    #[test]
    fn all_layers_resolve_in_network_order() {
        let s = SpectralConfig {
            layers: LayerSelection::Names(vec!["fc3".into(), "fc1".into()]),
            beta: 1.0,
            tau: 10,
            alpha: AlphaSetting::One(1.0),
            mode: EigenModeName::Projected,
            sort_projected: true,
        };
        assert_eq!(s.layer_names(ModelKind::Mlp), ["fc1", "fc3"]);
        let all = SpectralConfig {
            layers: LayerSelection::All(AllLayers::All),
            ..s
        };
        assert_eq!(all.layer_names(ModelKind::Cnn), ["conv1", "conv2", "fc1"]);
    }
}
