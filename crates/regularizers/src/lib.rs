//! # specreg-regularizers
//!
//! The regularisers and measurements of Nassar et al. (NeurIPS 2020), "On 1/n neural
//! representation and robustness", on top of the `specreg-nn` crate:
//!
//! - [`SpectralRegularizer`]: eq. 2's penalty pulling a representation's covariance
//!   spectrum towards `κ n^(−α)`, in projected mode (eq. 5: eigenvectors fixed per epoch)
//!   or exact mode (an eigendecomposition per batch), with a per-epoch diagnostic of how far
//!   the projected eigenvalues are from the exact ones and per-layer `α` schedules
//!   ([`check_alpha_schedule`]);
//! - [`Whitening`]: eq. 10's layer `L⁻¹(x − μ)`, differentiable through the Cholesky
//!   factorisation, whitening with each batch's statistics (the reference) or with running
//!   ones ([`WhiteningStatistics`]), to insert with [`specreg_nn::Network::insert_after`];
//! - [`JacobianRegularizer`]: eq. 11's input-gradient penalty and the logit-Jacobian
//!   variant of the reference code, both with exact second-order weight gradients;
//! - [`Spectrum`]: eigenspectra over a data set, power-law exponent, effective dimension
//!   and participation ratio.
//!
//! - [`representation_statistics`] and [`eigen_descending`]: the one dataset-covariance
//!   pass (all representations at once, accumulated in `f64` on the device) and the one
//!   eigendecomposition that the refresh, the spectra and the sensitivity maps share.
//!
//! Errors are [`RegularizerError`], with its own variants for the numerical failures
//! (`λ_τ ≤ 0`, NaN representations or penalties, a failed eigendecomposition, a missing
//! refresh). Inside the nn crate's training loop they travel in
//! [`NnError::Hook`](specreg_nn::NnError::Hook), wrapped in
//! [`NnError::AtStep`](specreg_nn::NnError::AtStep) with the step (see [`error`]);
//! [`is_numerical_failure`] tells a run's numerical failures from other errors.
//!
//! Every per-step computation stays on the network's device: the training loop makes one
//! host read per step, and a refresh one.
#![warn(missing_docs)]

pub mod covariance;
pub mod error;
pub mod jacobian;
pub mod penalty;
pub mod spectral;
pub mod spectrum;
pub mod whitening;

pub use covariance::{
    CovarianceAccumulator, RepresentationStatistics, chunk_ranges, representation_statistics,
};
pub use error::{RegularizerError, Result, is_numerical_failure};
pub use jacobian::{
    JacobianKind, JacobianRegularizer, JacobianStep, JacobianValue, jacobian_penalty,
    jacobian_penalty_grad,
};
pub use spectral::{
    EigenMode, SpectralLayer, SpectralRegularizer, SpectralValue, check_alpha_schedule,
    exact_penalty, projected_eigenvalues, projected_penalty, projected_penalty_sorted,
    spectral_penalty, spectral_penalty_tensor,
};
pub use spectrum::{PowerLaw, Spectrum, eigen_descending, layer_spectrum};
pub use whitening::{Whitening, WhiteningStatistics};
