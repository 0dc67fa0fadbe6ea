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

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// The three experiments of the paper's section 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Experiment {
    /// Section 4.1: the shallow network, vanilla vs SpecReg.
    Exp1,
    /// Section 4.2: whitening the intermediate layer, SpecReg on the last layer.
    Exp2,
    /// Section 4.3: SpecReg on every layer vs Jacobian regularisation.
    Exp3,
}

impl Experiment {
    /// All experiments, in order.
    pub const ALL: [Experiment; 3] = [Experiment::Exp1, Experiment::Exp2, Experiment::Exp3];

    /// `exp1`, `exp2` or `exp3`.
    pub fn name(self) -> &'static str {
        match self {
            Experiment::Exp1 => "exp1",
            Experiment::Exp2 => "exp2",
            Experiment::Exp3 => "exp3",
        }
    }

    /// Parses `exp1`, `exp2`, `exp3` (also `1`, `2`, `3`).
    pub fn parse(s: &str) -> Option<Experiment> {
        match s.trim() {
            "exp1" | "1" => Some(Experiment::Exp1),
            "exp2" | "2" => Some(Experiment::Exp2),
            "exp3" | "3" => Some(Experiment::Exp3),
            _ => None,
        }
    }
}

/// The network of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// 784 → 2000 tanh → BatchNorm → 10 (experiment 1).
    Shallow,
    /// 784 → 1000 → 1000 → 1000 → 10, tanh.
    Mlp,
    /// conv 16 → conv 32 → fc 1000 → 10, tanh and max-pooling.
    Cnn,
}

impl ModelKind {
    /// The hidden representations of the network and their widths, in network order.
    pub fn hidden_layers(self) -> &'static [(&'static str, usize)] {
        match self {
            ModelKind::Shallow => &[("hidden", 2000)],
            ModelKind::Mlp => &[("fc1", 1000), ("fc2", 1000), ("fc3", 1000)],
            ModelKind::Cnn => &[("conv1", 2704), ("conv2", 800), ("fc1", 1000)],
        }
    }

    /// The last hidden representation (the one sensitivity maps are taken of).
    pub fn last_hidden(self) -> &'static str {
        let layers = self.hidden_layers();
        layers[layers.len() - 1].0
    }

    /// Width of hidden representation `name`, if the network has one.
    pub fn width(self, name: &str) -> Option<usize> {
        self.hidden_layers()
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, w)| w)
    }

    /// `shallow`, `mlp` or `cnn`.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Shallow => "shallow",
            ModelKind::Mlp => "mlp",
            ModelKind::Cnn => "cnn",
        }
    }
}

/// Floating-point type of the parameters and activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DTypeName {
    /// 32-bit (the default, as in the paper).
    #[default]
    F32,
    /// 64-bit.
    F64,
}

impl DTypeName {
    /// The tensor crate's dtype.
    pub fn dtype(self) -> specreg_tensor::DType {
        match self {
            DTypeName::F32 => specreg_tensor::DType::F32,
            DTypeName::F64 => specreg_tensor::DType::F64,
        }
    }
}

/// `[model]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Which network.
    pub kind: ModelKind,
    /// Parameter dtype (default `f32`).
    #[serde(default)]
    pub dtype: DTypeName,
}

/// `[train]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Number of epochs (≥ 1).
    pub epochs: usize,
    /// Mini-batch size (≥ 2: the batch covariance needs two samples); the last partial
    /// batch is kept.
    pub batch_size: usize,
    /// Adam (amsgrad) learning rate, in (0, 1].
    pub lr: f64,
    /// Train on the first `train_subset` training images only (default: all 60 000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_subset: Option<usize>,
    /// Images per forward pass when refreshing the eigenvectors or computing spectra
    /// (memory, not results; default 2000).
    #[serde(default = "default_chunk")]
    pub chunk: usize,
}

fn default_chunk() -> usize {
    2000
}

/// How per-batch eigenvalues are obtained (paper eq. 5 vs a full eigendecomposition).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EigenModeName {
    /// Eigenvectors fixed per epoch, λ̂_n = v_nᵀ Σ_batch v_n (the paper's scheme).
    #[default]
    Projected,
    /// Eigendecompose every batch covariance.
    Exact,
}

/// The spectral regulariser's layers: a list of names, or `"all"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LayerSelection {
    /// `"all"`: every hidden representation of the network.
    All(AllLayers),
    /// Explicit names.
    Names(Vec<String>),
}

/// The literal string `"all"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AllLayers {
    /// Every hidden layer.
    All,
}

/// The power-law exponent: one value for every layer, or one per regularised layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AlphaSetting {
    /// The same α for all layers.
    One(f64),
    /// One α per regularised layer, in network order (α_1 ≥ … ≥ α_D = 1).
    PerLayer(Vec<f64>),
}

/// `[spectral]`: the spectral regulariser of eq. 2.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpectralConfig {
    /// Regularised representations.
    pub layers: LayerSelection,
    /// Strength β ≥ 0.
    pub beta: f64,
    /// Cut-off τ (1-based rank from which eigenvalues are regularised); 1 ≤ τ < width.
    #[serde(default = "default_tau")]
    pub tau: usize,
    /// Target exponent α (default 1).
    #[serde(default = "default_alpha")]
    pub alpha: AlphaSetting,
    /// Projected (eq. 5) or exact eigenvalues.
    #[serde(default)]
    pub mode: EigenModeName,
}

fn default_tau() -> usize {
    10
}

fn default_alpha() -> AlphaSetting {
    AlphaSetting::One(1.0)
}

impl SpectralConfig {
    /// The regularised representation names for `model`, in network order.
    pub fn layer_names(&self, model: ModelKind) -> Vec<String> {
        match &self.layers {
            LayerSelection::All(_) => model
                .hidden_layers()
                .iter()
                .map(|(n, _)| n.to_string())
                .collect(),
            LayerSelection::Names(names) => {
                let mut out: Vec<String> = Vec::new();
                for (n, _) in model.hidden_layers() {
                    if names.iter().any(|m| m == n) {
                        out.push(n.to_string());
                    }
                }
                out
            }
        }
    }

    /// α for each regularised layer (same order as [`SpectralConfig::layer_names`]).
    pub fn alphas(&self, count: usize) -> Vec<f64> {
        match &self.alpha {
            AlphaSetting::One(a) => vec![*a; count],
            AlphaSetting::PerLayer(v) => v.clone(),
        }
    }
}

/// `[whitening]`: the whitening layer of eq. 10, inserted after one representation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhiteningConfig {
    /// The representation to whiten (`fc2` for the MLP, `conv2` for the CNN).
    pub layer: String,
    /// Diagonal loading of the covariance before the Cholesky factorisation (> 0).
    #[serde(default = "default_whiten_eps")]
    pub eps: f64,
}

fn default_whiten_eps() -> f64 {
    1e-5
}

/// Which Jacobian penalty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JacobianKindName {
    /// Eq. 11: β_J/B Σ ‖∂L/∂x‖².
    #[default]
    InputLoss,
    /// The reference code's logit Jacobian with random projections (Hoffman et al.).
    Logit,
}

/// `[jacobian]`: Jacobian regularisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JacobianConfig {
    /// Which penalty (default `input-loss`, eq. 11).
    #[serde(default)]
    pub kind: JacobianKindName,
    /// Strength β_J ≥ 0 (paper: 0.01).
    pub beta: f64,
    /// Random projections per batch for the `logit` kind (≥ 1).
    #[serde(default = "default_projections")]
    pub projections: usize,
}

fn default_projections() -> usize {
    1
}

/// `[eval]`: robustness, spectrum and sensitivity evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// Evaluate on the first `test_subset` test images (default: all 10 000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_subset: Option<usize>,
    /// Images per forward pass during evaluation.
    #[serde(default = "default_eval_batch")]
    pub batch_size: usize,
    /// FGSM radii ε (L∞, pixels in [0, 1]).
    pub fgsm_eps: Vec<f64>,
    /// PGD radii ε.
    pub pgd_eps: Vec<f64>,
    /// PGD steps (paper: 40).
    #[serde(default = "default_pgd_steps")]
    pub pgd_steps: usize,
    /// PGD step size η (paper: 0.01).
    #[serde(default = "default_pgd_step")]
    pub pgd_step_size: f64,
    /// Start PGD from a uniform random point of the ε-ball (the paper starts at the image).
    #[serde(default)]
    pub pgd_random_start: bool,
    /// Standard deviations σ of the white Gaussian noise.
    pub noise_sigma: Vec<f64>,
    /// Training images the spectra are computed over (default: the training set used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spectrum_images: Option<usize>,
    /// Eigenvalue ranks (1-based) of the last hidden layer whose sensitivity maps are drawn.
    #[serde(default = "default_ranks")]
    pub sensitivity_ranks: Vec<usize>,
    /// Images the sensitivity maps are computed over (default: the spectrum images).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensitivity_images: Option<usize>,
}

fn default_eval_batch() -> usize {
    1000
}

fn default_pgd_steps() -> usize {
    40
}

fn default_pgd_step() -> f64 {
    0.01
}

fn default_ranks() -> Vec<usize> {
    vec![1, 2, 3, 4, 5, 10, 20, 50]
}

/// The paper's ε grid: 0 to 0.3 in steps of 0.025 (each point the double nearest
/// `k/40`, so it prints as written: 0.075, not 0.07500000000000001).
pub fn paper_eps_grid() -> Vec<f64> {
    (0..=12).map(|k| k as f64 / 40.0).collect()
}

/// The paper's σ grid: 0 to 1 in steps of 0.1.
pub fn paper_sigma_grid() -> Vec<f64> {
    (0..=10).map(|k| k as f64 / 10.0).collect()
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            test_subset: None,
            batch_size: default_eval_batch(),
            fgsm_eps: paper_eps_grid(),
            pgd_eps: paper_eps_grid(),
            pgd_steps: default_pgd_steps(),
            pgd_step_size: default_pgd_step(),
            pgd_random_start: false,
            noise_sigma: paper_sigma_grid(),
            spectrum_images: None,
            sensitivity_ranks: default_ranks(),
            sensitivity_images: None,
        }
    }
}

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
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: origin.clone(),
            source,
        })?;
        let mut table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    origin: origin.clone(),
                    message: e.to_string(),
                })?;
        for o in overrides {
            merge_tables(&mut table, o);
        }
        Config::from_table(table, &origin)
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
                    message: e.into_inner().to_string(),
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

    /// Checks every value range; the error is `(key, message)`.
    fn validate(&self) -> Result<(), (String, String)> {
        let err = |key: &str, msg: String| Err((key.to_string(), msg));
        if self.variant.is_empty()
            || !self
                .variant
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return err(
                "variant",
                format!(
                    "must be a non-empty name of letters, digits, '-', '_' or '.', got {:?}",
                    self.variant
                ),
            );
        }
        if self.seeds.is_empty() {
            return err("seeds", "must list at least one seed".into());
        }
        if let Some(dup) = self
            .seeds
            .iter()
            .enumerate()
            .find(|(i, s)| self.seeds[..*i].contains(s))
        {
            return err("seeds", format!("seed {} is listed twice", dup.1));
        }
        let t = &self.train;
        if t.epochs == 0 {
            return err("train.epochs", "must be at least 1, got 0".into());
        }
        if t.batch_size < 2 {
            return err(
                "train.batch_size",
                format!("must be at least 2, got {}", t.batch_size),
            );
        }
        if !(t.lr.is_finite() && t.lr > 0.0 && t.lr <= 1.0) {
            return err("train.lr", format!("must be in (0, 1], got {}", t.lr));
        }
        if let Some(n) = t.train_subset
            && !(2..=MNIST_TRAIN).contains(&n)
        {
            return err(
                "train.train_subset",
                format!("must be in 2..=60000, got {n}"),
            );
        }
        if t.chunk == 0 {
            return err("train.chunk", "must be at least 1, got 0".into());
        }
        let model = self.model.kind;
        let names: Vec<&str> = model.hidden_layers().iter().map(|(n, _)| *n).collect();
        if let Some(s) = &self.spectral {
            if !(s.beta.is_finite() && s.beta >= 0.0) {
                return err("spectral.beta", format!("must be ≥ 0, got {}", s.beta));
            }
            if let LayerSelection::Names(list) = &s.layers {
                if list.is_empty() {
                    return err("spectral.layers", "must name at least one layer".into());
                }
                for n in list {
                    if !names.contains(&n.as_str()) {
                        return err(
                            "spectral.layers",
                            format!(
                                "{} has no hidden layer {n:?}; valid: {}, or \"all\"",
                                model.name(),
                                names.join(", ")
                            ),
                        );
                    }
                }
            }
            let layers = s.layer_names(model);
            if s.tau == 0 {
                return err("spectral.tau", "must be at least 1, got 0".into());
            }
            for l in &layers {
                let width = model.width(l).unwrap_or(0);
                if s.tau >= width {
                    return err(
                        "spectral.tau",
                        format!("({}) must be < width of {l} ({width})", s.tau),
                    );
                }
            }
            let alphas = s.alphas(layers.len());
            if alphas.len() != layers.len() {
                return err(
                    "spectral.alpha",
                    format!(
                        "gives {} values for {} regularised layers",
                        alphas.len(),
                        layers.len()
                    ),
                );
            }
            if let Some(a) = alphas.iter().find(|a| !(a.is_finite() && **a > 0.0)) {
                return err("spectral.alpha", format!("must be > 0, got {a}"));
            }
            if alphas.windows(2).any(|w| w[0] < w[1]) {
                return err(
                    "spectral.alpha",
                    format!("must not increase with depth, got {alphas:?}"),
                );
            }
        }
        if let Some(w) = &self.whitening {
            if !names.contains(&w.layer.as_str()) {
                return err(
                    "whitening.layer",
                    format!(
                        "{} has no hidden layer {:?}; valid: {}",
                        model.name(),
                        w.layer,
                        names.join(", ")
                    ),
                );
            }
            if !(w.eps.is_finite() && w.eps > 0.0) {
                return err("whitening.eps", format!("must be > 0, got {}", w.eps));
            }
        }
        if let Some(j) = &self.jacobian {
            if !(j.beta.is_finite() && j.beta >= 0.0) {
                return err("jacobian.beta", format!("must be ≥ 0, got {}", j.beta));
            }
            if j.projections == 0 {
                return err("jacobian.projections", "must be at least 1, got 0".into());
            }
            if self.spectral.is_some() {
                return err(
                    "jacobian",
                    "cannot be combined with [spectral] in one run".into(),
                );
            }
        }
        let e = &self.eval;
        if let Some(n) = e.test_subset
            && !(1..=MNIST_TEST).contains(&n)
        {
            return err("eval.test_subset", format!("must be in 1..=10000, got {n}"));
        }
        if e.batch_size == 0 {
            return err("eval.batch_size", "must be at least 1, got 0".into());
        }
        for (key, grid, hi) in [
            ("eval.fgsm_eps", &e.fgsm_eps, 1.0),
            ("eval.pgd_eps", &e.pgd_eps, 1.0),
            ("eval.noise_sigma", &e.noise_sigma, f64::MAX),
        ] {
            if grid.is_empty() {
                return err(key, "must list at least one value".into());
            }
            if let Some(v) = grid
                .iter()
                .find(|v| !(v.is_finite() && **v >= 0.0 && **v <= hi))
            {
                return err(key, format!("values must be in [0, {hi}], got {v}"));
            }
            if grid.windows(2).any(|w| w[0] >= w[1]) {
                return err(key, "must be strictly increasing".into());
            }
        }
        if e.pgd_steps == 0 {
            return err("eval.pgd_steps", "must be at least 1, got 0".into());
        }
        if !(e.pgd_step_size.is_finite() && e.pgd_step_size > 0.0) {
            return err(
                "eval.pgd_step_size",
                format!("must be > 0, got {}", e.pgd_step_size),
            );
        }
        if let Some(n) = e.spectrum_images
            && !(2..=MNIST_TRAIN).contains(&n)
        {
            return err(
                "eval.spectrum_images",
                format!("must be in 2..=60000, got {n}"),
            );
        }
        if let Some(n) = e.sensitivity_images
            && !(2..=MNIST_TRAIN).contains(&n)
        {
            return err(
                "eval.sensitivity_images",
                format!("must be in 2..=60000, got {n}"),
            );
        }
        let last_width = model.width(model.last_hidden()).unwrap_or(0);
        if let Some(r) = e
            .sensitivity_ranks
            .iter()
            .find(|r| **r == 0 || **r > last_width)
        {
            return err(
                "eval.sensitivity_ranks",
                format!("ranks are 1-based and at most {last_width}, got {r}"),
            );
        }
        Ok(())
    }
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
        };
        assert_eq!(s.layer_names(ModelKind::Mlp), ["fc1", "fc3"]);
        let all = SpectralConfig {
            layers: LayerSelection::All(AllLayers::All),
            ..s
        };
        assert_eq!(all.layer_names(ModelKind::Cnn), ["conv1", "conv2", "fc1"]);
    }
}
