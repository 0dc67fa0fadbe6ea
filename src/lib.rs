//! # specreg
//!
//! A reproduction of Nassar et al., "On 1/n neural representation and robustness"
//! (NeurIPS 2020), as a set of small crates. This facade re-exports them so the workspace's
//! integration tests and benches (and users who want everything) can depend on one crate:
//!
//! - [`tensor`]: `f32`/`f64` tensors with a run-time device, the numerical kernels.
//! - [`data`]: the IDX reader, MNIST / Fashion-MNIST and seeded mini-batching.
//! - [`nn`]: layers, losses, Adam, the paper's networks and the training loop.
//! - [`regularizers`]: the spectral regulariser, whitening, Jacobian penalties and spectrum
//!   metrics.
//! - [`attacks`]: FGSM, PGD, white noise, robustness curves with sanity flags, and
//!   eigenvalue sensitivity maps.
//!
//! ```
//! use specreg::tensor::{Device, Tensor};
//! let x = Tensor::from_array(ndarray::array![[1.0f32, 2.0], [3.0, 4.0]]);
//! assert_eq!(x.device(), Device::Cpu);
//! ```
#![warn(missing_docs)]

pub use specreg_attacks as attacks;
pub use specreg_data as data;
pub use specreg_nn as nn;
pub use specreg_regularizers as regularizers;
pub use specreg_tensor as tensor;
