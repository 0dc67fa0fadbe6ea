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
//! Errors are the nn crate's [`NnError`](specreg_nn::NnError): these pieces run inside its
//! training loop.
#![warn(missing_docs)]

pub mod covariance;
pub mod jacobian;
pub mod penalty;
pub mod spectral;
pub mod spectrum;
pub mod whitening;

pub use covariance::{CovarianceAccumulator, chunk_ranges, representation_covariances};
pub use jacobian::{JacobianKind, JacobianRegularizer, JacobianValue};
pub use spectral::{
    EigenMode, SpectralLayer, SpectralRegularizer, SpectralValue, check_alpha_schedule,
    exact_penalty, projected_penalty, projected_penalty_sorted, spectral_penalty,
};
pub use spectrum::{PowerLaw, Spectrum, layer_spectrum};
pub use whitening::{Whitening, WhiteningStatistics};
