//! The TOML schema of a run's network, training and regularisers: `[model]`, `[train]`,
//! `[spectral]`, `[whitening]`, `[jacobian]`, and the claim `role` of a variant.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use specreg_nn::{Mode, Network};
use specreg_tensor::{DType, Device, Rng, Tensor};

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
    /// The hidden representations of the network and their widths, in network order, as
    /// the nn crate builds it (see [`ModelKind::architecture`]); empty only if the nn
    /// crate cannot build the network, which config validation reports.
    pub fn hidden_layers(self) -> &'static [(String, usize)] {
        self.architecture().unwrap_or(&[])
    }

    /// The hidden representations and widths of the network, read once per process from
    /// the network itself: the nn crate's constructor (seed 0, `f32`, CPU) and one `Eval`
    /// forward pass of a zero image, so that names and widths cannot drift from the model.
    ///
    /// # Errors
    /// The nn crate's error, as text, if it cannot build or run the network.
    pub fn architecture(self) -> std::result::Result<&'static [(String, usize)], &'static str> {
        static TABLE: OnceLock<[Architecture; 3]> = OnceLock::new();
        let table = TABLE.get_or_init(|| {
            [ModelKind::Shallow, ModelKind::Mlp, ModelKind::Cnn].map(|kind| {
                read_architecture(kind)
                    .map_err(|e| format!("building the {} network: {e}", kind.name()))
            })
        });
        let index = match self {
            ModelKind::Shallow => 0,
            ModelKind::Mlp => 1,
            ModelKind::Cnn => 2,
        };
        match &table[index] {
            Ok(layers) => Ok(layers.as_slice()),
            Err(e) => Err(e.as_str()),
        }
    }

    /// The last hidden representation (the one sensitivity maps are taken of).
    pub fn last_hidden(self) -> &'static str {
        self.hidden_layers()
            .last()
            .map_or("", |(name, _)| name.as_str())
    }

    /// Width of hidden representation `name`, if the network has one.
    pub fn width(self, name: &str) -> Option<usize> {
        self.hidden_layers()
            .iter()
            .find(|(n, _)| n == name)
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

/// A network's `(representation, width)` list, or why it could not be read.
type Architecture = std::result::Result<Vec<(String, usize)>, String>;

/// Builds `kind` and reads each representation's name and per-sample width from a forward
/// pass of one zero image. It runs on a private one-thread pool, so that reading a config
/// neither sets up nor sizes rayon's global pool (the binary sizes it from `--threads`
/// afterwards).
fn read_architecture(kind: ModelKind) -> Architecture {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .map_err(|e| e.to_string())?;
    pool.install(|| read_architecture_here(kind))
        .map_err(|e| e.to_string())
}

fn read_architecture_here(kind: ModelKind) -> specreg_nn::Result<Vec<(String, usize)>> {
    let (mut rng, cpu) = (Rng::new(0), Device::Cpu);
    let mut net = match kind {
        ModelKind::Shallow => Network::shallow(&mut rng, DType::F32, &cpu)?,
        ModelKind::Mlp => Network::mlp(&mut rng, DType::F32, &cpu)?,
        ModelKind::Cnn => Network::cnn(&mut rng, DType::F32, &cpu)?,
    };
    let x = Tensor::zeros(&[1, 784], DType::F32, &cpu)?;
    let pass = net.forward(&x, Mode::Eval)?;
    net.hidden_names()
        .into_iter()
        .map(|name| {
            let width = pass.get(name).map(|h| h.elem_count()).ok_or_else(|| {
                specreg_nn::NnError::UnknownRepresentation {
                    name: name.to_string(),
                    available: Vec::new(),
                }
            })?;
            Ok((name.to_string(), width))
        })
        .collect()
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
    /// Whether the shallow network has its BatchNorm layer (default `true`, as in the
    /// paper's section 4.1; `false` is the reference's exp-1 vanilla net and the paper's
    /// appendix variant). Only the shallow network has BatchNorm.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub batchnorm: bool,
}

pub(crate) fn yes() -> bool {
    true
}

pub(crate) fn is_true(b: &bool) -> bool {
    *b
}

/// What a variant stands for in the paper's claims; the claims pick their runs by
/// `(experiment, model, role)`, never by variant name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// No regulariser, no whitening.
    Vanilla,
    /// The spectral regulariser (any layers, any β).
    Specreg,
    /// A whitened layer, no regulariser.
    Whitened,
    /// A whitened layer and the spectral regulariser.
    SpecregWhitened,
    /// The Jacobian baseline of section 4.3 as the reference trains it (logit Jacobian).
    Jacobian,
    /// The Jacobian penalty of the paper's eq. 11 (input gradient of the loss).
    JacobianEq11,
    /// Experiment 1's vanilla net without BatchNorm (appendix).
    VanillaNoBn,
    /// Experiment 1's SpecReg net without BatchNorm (appendix).
    SpecregNoBn,
}

impl Role {
    /// The role's TOML name.
    pub fn name(self) -> &'static str {
        match self {
            Role::Vanilla => "vanilla",
            Role::Specreg => "specreg",
            Role::Whitened => "whitened",
            Role::SpecregWhitened => "specreg-whitened",
            Role::Jacobian => "jacobian",
            Role::JacobianEq11 => "jacobian-eq11",
            Role::VanillaNoBn => "vanilla-no-bn",
            Role::SpecregNoBn => "specreg-no-bn",
        }
    }
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
    /// (default 2000; with batch-statistics whitening the chunk is also the batch whose
    /// statistics whiten, so it must obey `min_batch_ratio` too).
    #[serde(default = "default_chunk")]
    pub chunk: usize,
    /// The smallest allowed ratio of the batch size to the width of the widest regularised
    /// or whitened representation (default 1.25, the reference's rule: a batch covariance
    /// of fewer samples than dimensions is rank-deficient). `0` switches the check off.
    #[serde(default = "default_min_batch_ratio")]
    pub min_batch_ratio: f64,
}

fn default_min_batch_ratio() -> f64 {
    1.25
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
#[serde(
    untagged,
    expecting = "expected a list of hidden-layer names (e.g. [\"fc3\"]) or \"all\""
)]
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
#[serde(
    untagged,
    expecting = "expected a number or a list of numbers, one per regularised layer"
)]
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
    /// Sort each batch's projected eigenvalues in descending order before the penalty
    /// (default `true`, as the reference does; `false` keeps the eigenvectors' order).
    #[serde(default = "yes")]
    pub sort_projected: bool,
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
                .map(|(n, _)| n.clone())
                .collect(),
            LayerSelection::Names(names) => {
                let mut out: Vec<String> = Vec::new();
                for (n, _) in model.hidden_layers() {
                    if names.iter().any(|m| m == n) {
                        out.push(n.clone());
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
    /// Which statistics whiten at evaluation (default `batch`, as the reference).
    #[serde(default)]
    pub statistics: WhiteningStatisticsName,
}

/// The statistics a whitening layer uses outside training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WhiteningStatisticsName {
    /// The current batch's mean and covariance, in training and evaluation alike (the
    /// reference's layer); attacks then differentiate through them.
    #[default]
    Batch,
    /// Running estimates kept during training (momentum 0.1), as BatchNorm does.
    Running,
}

impl WhiteningStatisticsName {
    /// `batch` or `running`.
    pub fn name(self) -> &'static str {
        match self {
            WhiteningStatisticsName::Batch => "batch",
            WhiteningStatisticsName::Running => "running",
        }
    }
}

fn default_whiten_eps() -> f64 {
    1e-5
}

/// Which Jacobian penalty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JacobianKindName {
    /// Eq. 11: β_J/B Σ ‖∂L/∂x‖².
    InputLoss,
    /// The reference code's logit Jacobian with random projections (Hoffman et al.): what
    /// produced the paper's "Jac" curves, so the default.
    #[default]
    Logit,
}

impl JacobianKindName {
    /// `input-loss` or `logit`.
    pub fn name(self) -> &'static str {
        match self {
            JacobianKindName::InputLoss => "input-loss (eq. 11)",
            JacobianKindName::Logit => "logit (Hoffman et al.)",
        }
    }
}

/// `[jacobian]`: Jacobian regularisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JacobianConfig {
    /// Which penalty (default `logit`, the reference's).
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
