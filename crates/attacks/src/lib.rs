//! # specreg-attacks
//!
//! Adversarial and noise robustness of classifiers, as evaluated in Nassar et al. (NeurIPS
//! 2020), "On 1/n neural representation and robustness", and eigenvalue sensitivity maps.
//!
//! * [`Classifier`]: logits and per-sample loss gradients of a batch, for the cross-entropy
//!   and, as a vector-Jacobian product, for any loss of the logits. The
//!   [`specreg_nn::Network`] models implement it in eval mode; [`NetworkInMode`] attacks one
//!   in another mode (BatchNorm and whitening on the batch's own statistics, gradients
//!   through them). Implement it for any other model to evaluate it here.
//! * [`fgsm`] (eq. 6), [`pgd`](fn@pgd) (eqs. 7–8, L∞ and L2, random start, restarts, early
//!   exit; see [`pgd`](mod@pgd) for the exact semantics) and [`white_noise`] on one batch.
//!   PGD ascends the cross-entropy or another [`AttackLoss`]: the Carlini–Wagner margin
//!   `max_{j≠y} z_j − z_y` (PGD-CW) or the DLR loss.
//! * [`apgd`](fn@apgd) (Croce & Hein 2020, L∞; see [`apgd`](mod@apgd)): APGD-CE and
//!   APGD-DLR, with momentum, step-size halving at the checkpoints [`apgd_checkpoints`]
//!   and a restart from the best point at each halving.
//! * [`robustness_curve`] / [`robustness_report`]: accuracy over an ε (or σ) grid on a whole
//!   test set, with every parameter recorded and the [`SanityFlag`]s a reviewer would raise
//!   (PGD above FGSM, a weaker attack beating a stronger one by more than a point
//!   ([`compare_attack_strength`]), exactly zero input gradients, accuracy rising with ε,
//!   strength 0 differing from clean accuracy, an image outside its ball or the pixel
//!   range, a PGD that cannot reach its ε).
//! * [`sensitivity_maps`] (eq. 9): `∂λ_n/∂x` for eigenvalues of a hidden layer's covariance
//!   over a data set, as 28×28 maps; [`sensitivity_maps_from`] reuses a
//!   [`RepresentationSpectrum`] built from statistics shared with other layers.
//!
//! Attacks keep every step on the classifier's device: losses, predictions and gradients
//! are tensors, the worst iterate is chosen with masks, and constraint violations and the
//! finiteness of losses and gradients are recorded there. An attack on a batch reads its
//! results in one host read (PGD with early exit adds one read per step); see
//! [`pgd`](mod@pgd).
//!
//! Results are plain structs (no serialisation here); strengths, accuracies and flags are
//! fields to read.
//!
//! ```
//! use ndarray::Array2;
//! use specreg_attacks::{Attack, EvalOptions, PgdConfig, robustness_report};
//! use specreg_nn::Network;
//! use specreg_tensor::{DType, Device, Rng};
//!
//! # fn main() -> specreg_attacks::Result<()> {
//! let mut rng = Rng::new(0);
//! let mut net = Network::mlp(&mut rng, DType::F32, &Device::Cpu)?;
//! let images = Array2::<f32>::from_shape_fn((8, 784), |(i, j)| ((i * 31 + j) % 17) as f32 / 16.0);
//! let labels = [0u8, 1, 2, 3, 4, 5, 6, 7];
//! let grid = vec![0.0, 0.05, 0.1];
//! let pgd = Attack::Pgd(PgdConfig { steps: 5, ..PgdConfig::linf(0.0) });
//! let report = robustness_report(
//!     &mut net,
//!     images.view(),
//!     &labels,
//!     &[(Attack::fgsm(), grid.clone()), (pgd, grid)],
//!     &EvalOptions { batch_size: 4, ..EvalOptions::default() },
//! )?;
//! assert_eq!(report.curves.len(), 2);
//! for curve in &report.curves {
//!     // At ε = 0 nothing moves: the accuracy is the clean accuracy.
//!     assert_eq!(curve.points[0].correct, curve.clean_correct);
//! }
//! for flag in &report.flags {
//!     println!("{flag}"); // e.g. "PGD: steps · η = 0.05 < ε = 0.1, …"
//! }
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

pub mod apgd;
mod attack;
mod classifier;
mod curve;
mod error;
mod fgsm;
mod flags;
mod iterates;
mod loss;
mod network;
mod noise;
mod output;
mod perturb;
pub mod pgd;
mod rowops;
mod sensitivity;
mod tracker;

pub use apgd::{ApgdConfig, apgd, apgd_checkpoints};
pub use attack::Attack;
pub use classifier::{Classifier, LossGradient, per_sample_loss};
pub use curve::{
    CurvePoint, EvalOptions, RobustnessCurve, RobustnessReport, robustness_curve, robustness_report,
};
pub use error::{AttackError, Result};
pub use fgsm::fgsm;
pub use flags::{
    ATTACK_ORDER_TOLERANCE, SanityFlag, compare_attack_strength, compare_pgd_fgsm,
    cross_curve_flags,
};
pub use loss::{AttackLoss, LogitGradient};
pub use network::NetworkInMode;
pub use noise::white_noise;
pub use output::AttackOutput;
pub use perturb::{ClipRange, Norm};
pub use pgd::{PgdConfig, StepSize, pgd};
pub use sensitivity::{
    RepresentationSpectrum, SensitivityMaps, SensitivityOptions, SensitivityReduction,
    sensitivity_maps, sensitivity_maps_from,
};
