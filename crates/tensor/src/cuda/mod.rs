//! The CUDA backend: every tensor op on cuBLAS, cuSOLVER and NVRTC kernels, through cudarc
//! with dynamic loading (so a `cuda` build runs, and fails cleanly, where no CUDA is
//! installed).
//!
//! **Status: compile-checked, not yet run on a GPU.** The Rust code builds with the `cuda`
//! feature and every kernel source compiles with NVRTC for `sm_80` and `sm_90` on a CPU-only
//! machine (`tests/nvrtc.rs`); none of it has executed on a device yet. `cargo xtask
//! gpu-bundle` prepares the check for a GPU machine.
//!
//! Layout:
//! * `device`: opening a device (library probe, context, stream, cuBLAS and cuSOLVER
//!   handles, kernel cache) and the deferred reporting of bad indices;
//! * [`kernels`]: the `.cu` sources, their entry points and their NVRTC compilation;
//! * `storage`: the device buffer of a tensor, host transfers, launch helpers;
//! * `elementwise`, `nn`: the NVRTC kernels' launchers; `gemm`, `conv`: cuBLAS products
//!   and the im2col convolutions; `solver`: `syevd`, `potrf`, `trsm`;
//! * `backend`: the `BackendStorage` implementation.
//!
//! Semantics follow the CPU backend op for op (the same formulas, NaN rules, tie rules,
//! eigenvector signs and error variants). Results agree with the CPU to rounding: products
//! and reductions add in other orders; exp, log and f64 tanh come from CUDA's libdevice.
//! Every reduction is deterministic (fixed trees, no atomics), so a GPU run repeats its
//! own bits.

mod backend;
mod conv;
pub(crate) mod device;
mod elementwise;
mod gemm;
pub mod kernels;
mod nn;
mod optim;
mod solver;
mod storage;

pub(crate) use storage::CudaStorage;

/// Opens (once) CUDA device `ordinal`.
pub(crate) fn context(ordinal: usize) -> crate::Result<()> {
    device::device(ordinal).map(|_| ())
}

/// Waits for device `ordinal` to finish its queued work, then reports a pending bad index
/// recorded by this thread's kernels.
pub(crate) fn synchronize(ordinal: usize) -> crate::Result<()> {
    device::device(ordinal)?.synchronize()
}

// Tensors cross threads (rayon, the experiment runner): their CUDA storage must too.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<CudaStorage>();
};
