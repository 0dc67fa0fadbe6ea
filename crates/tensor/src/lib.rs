//! # specreg-tensor
//!
//! `f32`/`f64` n-dimensional tensors whose [`Device`] is chosen at run time, with exactly
//! the operations the spectral-regularisation experiments of Nassar et al. (NeurIPS 2020)
//! need: matrix products (plain and transposed), covariances, activations and their
//! derivatives, softmax cross-entropy, 3×3 convolution and 2×2 max-pooling with their
//! backward passes, symmetric eigendecomposition, Cholesky and triangular solves.
//!
//! The design follows candle: a concrete [`Tensor`] holding a `Storage` enum, one small
//! backend trait underneath, no backend generics in user code. On the CPU the data is an
//! [`ndarray`] array (zero-copy in and out, see [`Tensor::from_array`] and
//! [`Tensor::as_array_view`]), GEMM and the factorisations run on faer, and elementwise work
//! on rayon. Every reduction adds in a fixed order, so the same inputs and thread count give
//! the same bits.
//!
//! Features: `cuda` (every op on cuBLAS, cuSOLVER and NVRTC kernels through cudarc with
//! dynamic loading, so it builds without CUDA installed and opening a device never panics;
//! compile-checked, not yet run on a GPU: see the `cuda` module) and `openblas` (GEMM
//! through system OpenBLAS, factorisations through LAPACK, for side-by-side comparison).
//!
//! Tests in every crate are written once for both devices with [`test_device!`] and the
//! helpers in [`testing`]: the CUDA twin skips at run time where no GPU can be opened.
//!
//! ```
//! use ndarray::array;
//! use specreg_tensor::{DType, Device, Rng, Tensor};
//!
//! # fn main() -> specreg_tensor::Result<()> {
//! // Hand an ndarray in, compute, and read it back without copying.
//! let x = Tensor::from_array(array![[1.0f32, 2.0], [3.0, 4.0], [5.0, 9.0]]);
//! let cov = x.covariance()?; // 2×2, unbiased
//! assert_eq!(cov.as_array_view::<f32>()?[[0, 0]], 4.0);
//!
//! // Eigenvalues come back in descending order.
//! let (lambda, _v) = cov.symmetric_eigen()?;
//! let l = lambda.to_vec::<f32>()?;
//! assert!(l[0] >= l[1]);
//!
//! // Seeded random tensors are identical on every device and run.
//! let mut rng = Rng::new(0);
//! let w = Tensor::rand_uniform(&[2, 3], -1.0, 1.0, DType::F32, &mut rng, &Device::Cpu)?;
//! let y = x.matmul(&w)?.tanh()?; // [3, 3]
//! assert_eq!(y.shape(), &[3, 3]);
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod backend;
mod buffer_cache;
mod conv_geometry;
mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
mod device;
mod dtype;
mod error;
mod host_reads;
pub mod linalg;
mod ops;
mod random;
mod sparse_matmul;
mod storage;
#[cfg(feature = "openblas")]
mod syevd;
mod tensor;
pub mod testing;

#[cfg(feature = "openblas")]
extern crate blas_src;

pub use backend::{BinaryOp, UnaryOp};
pub use buffer_cache::BufferCache;
pub use cpu::CpuStorage;
pub use device::Device;
pub use dtype::{DType, Element, tanh_f32};
pub use error::{Error, Result};
pub use host_reads::{HostReads, host_reads};
pub use linalg::{Side, Triangle};
pub use ops::{AdamCoefficients, AdamUpdate, BatchNormSums};
pub use random::Rng;
pub use tensor::Tensor;
