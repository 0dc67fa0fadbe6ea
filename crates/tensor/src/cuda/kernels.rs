//! The NVRTC kernel modules: their sources, the entry points the backend loads from each,
//! and their compilation.
//!
//! Each module is one `.cu` file under `cuda/kernels/`, read with `include_str!` and
//! compiled with [`prelude.cuh`](PRELUDE) in front of it (NVRTC has no system headers). A
//! device compiles a module the first time one of its kernels is needed, to a CUBIN for
//! exactly the device's `sm_XY` (loading a CUBIN avoids asking an older driver to JIT the
//! PTX of a newer NVRTC), and keeps it for the life of the process.
//!
//! Every kernel the backend launches is one of the [`Kernel`] constants below, so
//! [`kernel_modules`] lists every entry point the backend can load; the NVRTC compile test
//! (`tests/nvrtc.rs`) compiles each module for `sm_80` and `sm_90` and checks that each of
//! them is in the output.
//!
//! Compile-checked, not yet run on a GPU.

use std::ffi::CString;

use cudarc::nvrtc::{result as nvrtc, sys as nvrtc_sys};

use crate::{DType, Error, Result};

/// Definitions prepended to every module.
pub const PRELUDE: &str = include_str!("kernels/prelude.cuh");

/// Options every module is compiled with, besides `--gpu-architecture`. `--fmad=false`
/// keeps `a·b + c` two roundings, as on the CPU, so elementwise results match it bit for bit
/// wherever no transcendental function is involved.
pub const NVRTC_FLAGS: &[&str] = &["--fmad=false"];

/// One kernel module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Module {
    /// Maps, broadcasts, casts, masked choice, permutations, the fused Adam update.
    Elementwise,
    /// Sums and max-abs over everything, an axis or rows.
    Reduce,
    /// Row argmax, row selection, gather, scatter, argsort.
    Select,
    /// Softmax, cross-entropy, max-pooling, im2col and col2im.
    Nn,
    /// Post-processing of the eigendecomposition and the Cholesky factor.
    Linalg,
}

impl Module {
    /// Every module.
    pub const ALL: [Module; 5] = [
        Module::Elementwise,
        Module::Reduce,
        Module::Select,
        Module::Nn,
        Module::Linalg,
    ];

    /// The module's name (its file stem).
    pub fn name(self) -> &'static str {
        match self {
            Module::Elementwise => "elementwise",
            Module::Reduce => "reduce",
            Module::Select => "select",
            Module::Nn => "nn",
            Module::Linalg => "linalg",
        }
    }

    /// The module's own source, without the prelude.
    fn body(self) -> &'static str {
        match self {
            Module::Elementwise => include_str!("kernels/elementwise.cu"),
            Module::Reduce => include_str!("kernels/reduce.cu"),
            Module::Select => include_str!("kernels/select.cu"),
            Module::Nn => include_str!("kernels/nn.cu"),
            Module::Linalg => include_str!("kernels/linalg.cu"),
        }
    }

    /// The source NVRTC compiles: the prelude, then the module.
    pub fn source(self) -> String {
        format!("{PRELUDE}\n{}", self.body())
    }

    /// The entry points of this module that the backend loads.
    pub fn entry_points(self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = ALL
            .iter()
            .filter(|k| k.module == self)
            .flat_map(|k| k.names)
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }
}

/// One kernel: its module and its entry point for `f32` and for `f64` data (the same name
/// twice for kernels of one fixed type).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Kernel {
    pub(crate) module: Module,
    names: [&'static str; 2],
}

impl Kernel {
    /// The entry point for data of `dtype`.
    pub(crate) fn name(&self, dtype: DType) -> &'static str {
        match dtype {
            DType::F32 => self.names[0],
            DType::F64 => self.names[1],
        }
    }
}

macro_rules! kernels {
    ($($name:ident: $module:ident [$f32:literal, $f64:literal];)*) => {
        $(pub(crate) const $name: Kernel = Kernel { module: Module::$module, names: [$f32, $f64] };)*
        /// Every kernel the backend launches.
        const ALL: &[Kernel] = &[$($name),*];
    };
}

kernels! {
    UNARY: Elementwise ["unary_f32", "unary_f64"];
    BINARY: Elementwise ["binary_f32", "binary_f64"];
    BROADCAST: Elementwise ["broadcast_f32", "broadcast_f64"];
    AFFINE: Elementwise ["affine_f32", "affine_f64"];
    CLAMP: Elementwise ["clamp_f32", "clamp_f64"];
    WHERE: Elementwise ["where_f32", "where_f64"];
    PERMUTE: Elementwise ["permute_f32", "permute_f64"];
    ADAM: Elementwise ["adam_f32", "adam_f64"];
    // Named by the dtype of the result.
    CAST_TO: Elementwise ["cast_f64_f32", "cast_f32_f64"];
    SUM_PARTIAL: Reduce ["sum_partial_f32", "sum_partial_f64"];
    MAX_ABS_PARTIAL: Reduce ["max_abs_partial_f32", "max_abs_partial_f64"];
    SUM_FINAL: Reduce ["sum_final", "sum_final"];
    MAX_ABS_FINAL: Reduce ["max_abs_final", "max_abs_final"];
    SUM_AXIS: Reduce ["sum_axis_f32", "sum_axis_f64"];
    SUM_ROWS: Reduce ["sum_rows_f32", "sum_rows_f64"];
    ARGMAX_ROWS: Select ["argmax_rows_f32", "argmax_rows_f64"];
    INDEX_SELECT: Select ["index_select_f32", "index_select_f64"];
    GATHER: Select ["gather_f32", "gather_f64"];
    SCATTER_CLAIM: Select ["scatter_claim_f32", "scatter_claim_f64"];
    SCATTER_WRITE: Select ["scatter_write_f32", "scatter_write_f64"];
    ARGSORT_DESC: Select ["argsort_desc_f32", "argsort_desc_f64"];
    LOG_SOFTMAX: Nn ["log_softmax_f32", "log_softmax_f64"];
    CROSS_ENTROPY: Nn ["cross_entropy_f32", "cross_entropy_f64"];
    MAX_POOL: Nn ["max_pool_f32", "max_pool_f64"];
    MAX_POOL_BACKWARD: Nn ["max_pool_backward_f32", "max_pool_backward_f64"];
    MAX_POOL_GATHER: Nn ["max_pool_gather_f32", "max_pool_gather_f64"];
    IM2COL: Nn ["im2col_f32", "im2col_f64"];
    COL2IM: Nn ["col2im_f32", "col2im_f64"];
    EIGEN_SIGNS: Linalg ["eigen_signs_f32", "eigen_signs_f64"];
    EIGEN_FINISH: Linalg ["eigen_finish_f32", "eigen_finish_f64"];
    ZERO_UPPER: Linalg ["zero_upper_f32", "zero_upper_f64"];
}

/// Whether libnvrtc can be loaded (without it nothing here can compile).
pub fn nvrtc_available() -> bool {
    // SAFETY: only tries to dlopen the library by its usual names.
    unsafe { nvrtc_sys::is_culib_present() }
}

fn nvrtc_error(op: &'static str) -> impl Fn(nvrtc::NvrtcError) -> Error {
    move |e| Error::Cuda {
        op,
        message: format!("{:?}", e.0),
    }
}

/// Compiles `module` for `arch` (e.g. `"sm_90"`) with [`NVRTC_FLAGS`] and returns the
/// CUBIN. A compile error is [`Error::Cuda`] carrying NVRTC's log; a missing libnvrtc is
/// [`Error::CudaLibraryMissing`]. Needs libnvrtc only: no GPU, no driver.
pub fn compile_cubin(module: Module, arch: &str) -> Result<Vec<u8>> {
    if !nvrtc_available() {
        return Err(Error::CudaLibraryMissing {
            library: "libnvrtc",
        });
    }
    let bad_string = |what: &str| Error::InvalidArgument {
        op: "nvrtc compile",
        reason: format!("{what} contains a NUL byte"),
    };
    let src = CString::new(module.source()).map_err(|_| bad_string("the kernel source"))?;
    let name = CString::new(format!("{}.cu", module.name())).map_err(|_| bad_string("the name"))?;
    let mut options = vec![format!("--gpu-architecture={arch}")];
    options.extend(NVRTC_FLAGS.iter().map(|s| s.to_string()));
    let prog =
        nvrtc::create_program(&src, Some(&name)).map_err(nvrtc_error("nvrtcCreateProgram"))?;
    // SAFETY: `prog` was just created and is destroyed exactly once below, after its last use.
    let out = unsafe { compile_and_take_cubin(prog, &options, module) };
    // SAFETY: as above.
    let destroyed = unsafe { nvrtc::destroy_program(prog) };
    let cubin = out?;
    destroyed.map_err(nvrtc_error("nvrtcDestroyProgram"))?;
    Ok(cubin)
}

/// # Safety
/// `prog` must be a live program from `nvrtcCreateProgram`.
unsafe fn compile_and_take_cubin(
    prog: nvrtc_sys::nvrtcProgram,
    options: &[String],
    module: Module,
) -> Result<Vec<u8>> {
    // SAFETY: `prog` is live (the caller's contract); the options are valid C strings.
    if let Err(e) = unsafe { nvrtc::compile_program(prog, options) } {
        // SAFETY: `prog` is live.
        let log = unsafe { nvrtc::get_program_log(prog) }
            .map(|l| {
                let bytes: Vec<u8> = l
                    .iter()
                    .take_while(|&&c| c != 0)
                    .map(|&c| c as u8)
                    .collect();
                String::from_utf8_lossy(&bytes).into_owned()
            })
            .unwrap_or_default();
        return Err(Error::Cuda {
            op: "nvrtc compile",
            message: format!("{} ({:?}): {log}", module.name(), e.0),
        });
    }
    let mut size = 0usize;
    // SAFETY: `prog` is live and compiled; `size` is a valid out-pointer.
    let status = unsafe { nvrtc_sys::nvrtcGetCUBINSize(prog, &mut size) };
    status.result().map_err(nvrtc_error("nvrtcGetCUBINSize"))?;
    let mut cubin = vec![0u8; size];
    // SAFETY: `cubin` has exactly the `size` bytes NVRTC asked for.
    let status = unsafe { nvrtc_sys::nvrtcGetCUBIN(prog, cubin.as_mut_ptr().cast()) };
    status.result().map_err(nvrtc_error("nvrtcGetCUBIN"))?;
    Ok(cubin)
}
