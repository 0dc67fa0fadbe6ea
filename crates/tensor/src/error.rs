//! The tensor crate's error type.

use crate::{DType, Device};

/// Everything that can go wrong in a tensor operation.
///
/// Shape, dtype and device problems name the operation that found them; numerical failures
/// (a matrix that is not positive definite, an eigensolver that did not converge) get their
/// own variants so callers can react to them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Operand shapes are incompatible.
    #[error("{op}: incompatible shapes {lhs:?} and {rhs:?}")]
    ShapeMismatch {
        /// The operation.
        op: &'static str,
        /// Shape of the first operand.
        lhs: Vec<usize>,
        /// Shape of the second operand (or the requested shape).
        rhs: Vec<usize>,
    },
    /// An operand has the wrong number of dimensions.
    #[error("{op}: expected a rank-{expected} tensor, got shape {got:?}")]
    RankMismatch {
        /// The operation.
        op: &'static str,
        /// The rank the operation needs.
        expected: usize,
        /// The shape it got.
        got: Vec<usize>,
    },
    /// Operands have different element types.
    #[error("{op}: dtype mismatch, {lhs:?} vs {rhs:?}")]
    DTypeMismatch {
        /// The operation.
        op: &'static str,
        /// The first operand's dtype.
        lhs: DType,
        /// The second operand's dtype (or the requested one).
        rhs: DType,
    },
    /// Operands live on different devices.
    #[error("{op}: operands on different devices, {lhs:?} vs {rhs:?}")]
    DeviceMismatch {
        /// The operation.
        op: &'static str,
        /// The first operand's device.
        lhs: Device,
        /// The second operand's device.
        rhs: Device,
    },
    /// A buffer's length does not match the product of the requested shape.
    #[error("buffer of {len} elements cannot have shape {shape:?} ({expected} elements)")]
    ElementCount {
        /// The requested shape.
        shape: Vec<usize>,
        /// Its element count.
        expected: usize,
        /// The buffer's length.
        len: usize,
    },
    /// An argument is out of its valid range.
    #[error("{op}: {reason}")]
    InvalidArgument {
        /// The operation.
        op: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A class label is not below the number of classes.
    #[error("cross entropy: label {label} of sample {index} is out of range for {classes} classes")]
    LabelOutOfRange {
        /// Sample index within the batch.
        index: usize,
        /// The offending label.
        label: usize,
        /// Number of classes (columns of the logits).
        classes: usize,
    },
    /// Cholesky factorisation met a non-positive pivot.
    #[error("{op}: matrix is not positive definite (pivot {pivot} is not positive)")]
    NotPositiveDefinite {
        /// The operation.
        op: &'static str,
        /// Zero-based index of the failing pivot.
        pivot: usize,
    },
    /// The symmetric eigensolver did not converge.
    #[error("symmetric eigendecomposition of a {n}x{n} matrix did not converge")]
    EigenNoConvergence {
        /// Matrix size.
        n: usize,
    },
    /// A LAPACK routine (OpenBLAS path) returned a non-zero `info`.
    #[error("LAPACK {routine} failed: {message}")]
    Lapack {
        /// The routine.
        routine: &'static str,
        /// The library's message.
        message: String,
    },
    /// `Device::Cuda` was requested but this build has no CUDA support.
    #[error("CUDA device requested but specreg-tensor was built without the `cuda` feature")]
    NotCompiledWithCuda,
    /// A CUDA library could not be loaded.
    #[error(
        "CUDA library {library} could not be loaded (is the NVIDIA driver / CUDA toolkit \
         installed and on the loader path?)"
    )]
    CudaLibraryMissing {
        /// Which library (libcuda, libcublas, libcusolver, libnvrtc).
        library: &'static str,
    },
    /// A CUDA driver call failed.
    #[error("CUDA error in {op}: {message}")]
    Cuda {
        /// The operation.
        op: &'static str,
        /// The driver's message.
        message: String,
    },
    /// The operation has no kernel for this device yet.
    #[error("{op} is not implemented on {device:?}")]
    UnsupportedOnDevice {
        /// The operation.
        op: &'static str,
        /// The device.
        device: Device,
    },
}

/// Result alias for the tensor crate.
pub type Result<T> = std::result::Result<T, Error>;
