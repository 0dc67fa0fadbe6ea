//! One opened CUDA device: its context and stream, the cuBLAS and cuSOLVER handles, the
//! compiled kernel modules, and the per-thread flag through which kernels report bad
//! indices.
//!
//! Opening a device probes libcuda, libcublas, libcusolver and libnvrtc first, because
//! cudarc's dynamic loader panics on a missing library; a missing one is
//! [`Error::CudaLibraryMissing`]. Devices are opened once per ordinal and cached for the
//! life of the process.
//!
//! **Bad indices.** Index arguments stored in tensors (gather and scatter positions, pool
//! argmax offsets) are checked on the device, as the CPU checks them, but a kernel cannot
//! return an error. A kernel that meets a bad index records the first one in the calling
//! thread's flag buffer; the next read of device data by that thread (a copy to the host,
//! `sum_all`, `max_abs`, `synchronize`) reports it as [`Error::InvalidArgument`] with the
//! CPU's message and clears the flag. So the error arrives at the next host read instead of
//! at the op, exactly as CUDA's own asynchronous errors do, and the hot paths need no
//! device→host copy to validate their indices.
//!
//! Compile-checked, not yet run on a GPU.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::ThreadId;

use cudarc::cublas::CudaBlas;
use cudarc::cusolver::safe::DnHandle;
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream};

use super::kernels::{self, Kernel, Module};
use crate::{DType, Error, Result};

/// Locks a mutex, recovering the data if another thread panicked while holding it (every
/// value guarded here stays valid whatever a panicking holder did).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Maps a driver error to [`Error::Cuda`] naming the operation.
pub(crate) fn driver(op: &'static str) -> impl Fn(cudarc::driver::DriverError) -> Error {
    move |e| Error::Cuda {
        op,
        message: e.to_string(),
    }
}

fn probe() -> Result<()> {
    // SAFETY: each probe only tries to dlopen the library by its usual names.
    let present = unsafe {
        [
            ("libcuda (driver)", cudarc::driver::sys::is_culib_present()),
            ("libcublas", cudarc::cublas::sys::is_culib_present()),
            ("libcusolver", cudarc::cusolver::sys::is_culib_present()),
            ("libnvrtc", cudarc::nvrtc::sys::is_culib_present()),
        ]
    };
    match present.iter().find(|(_, ok)| !ok) {
        Some((library, _)) => Err(Error::CudaLibraryMissing { library }),
        None => Ok(()),
    }
}

/// What a bad-index report names: the op, and how its message reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BadIndex {
    Gather = 1,
    Scatter = 2,
    PoolBackward = 3,
    PoolGather = 4,
}

impl BadIndex {
    fn of_code(code: u64) -> Option<Self> {
        [
            Self::Gather,
            Self::Scatter,
            Self::PoolBackward,
            Self::PoolGather,
        ]
        .into_iter()
        .find(|b| *b as u64 == code)
    }

    fn error(self, value: f64, bound: u64) -> Error {
        let (op, reason) = match self {
            Self::Gather | Self::Scatter => (
                if self == Self::Gather {
                    "gather"
                } else {
                    "scatter"
                },
                format!("index {value} is not a whole number below {bound}"),
            ),
            Self::PoolBackward | Self::PoolGather => (
                if self == Self::PoolBackward {
                    "max_pool2d_backward"
                } else {
                    "max_pool2d_gather"
                },
                format!("argmax entry {value} is not a window offset 0, 1, 2 or 3"),
            ),
        };
        Error::InvalidArgument { op, reason }
    }
}

thread_local! {
    /// Ordinals on which this thread launched an index-checking kernel since its last check.
    static DIRTY: RefCell<HashSet<usize>> = RefCell::new(HashSet::new());
}

/// An opened device. Shared by every tensor on it.
#[derive(Debug)]
pub(crate) struct DeviceState {
    pub(crate) ordinal: usize,
    pub(crate) ctx: Arc<CudaContext>,
    pub(crate) stream: Arc<CudaStream>,
    /// cuBLAS handles must not be used by two threads at once.
    pub(crate) blas: Mutex<CudaBlas>,
    /// cuSOLVER handle, likewise.
    pub(crate) solver: Mutex<DnHandle>,
    /// `sm_XY` of this device: kernels are compiled to a CUBIN for exactly this.
    arch: String,
    modules: Mutex<HashMap<Module, Arc<CudaModule>>>,
    functions: Mutex<HashMap<&'static str, CudaFunction>>,
    /// Each thread's bad-index flag `[code, value bits, bound]`.
    flags: Mutex<HashMap<ThreadId, CudaSlice<u64>>>,
}

/// Keeps freed device memory in the default stream-ordered pool instead of returning it to
/// the driver at every synchronisation (the pool's release threshold is 0 by default), so
/// the per-op allocations of a training step reuse memory as a caching allocator would.
fn keep_pool_memory(ctx: &CudaContext) -> Result<()> {
    use cudarc::driver::sys;
    if !ctx.has_async_alloc() {
        return Ok(());
    }
    let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
    let mut threshold: u64 = u64::MAX;
    // SAFETY: the device handle is live; `pool` and `threshold` are valid for the calls.
    let status = unsafe {
        match sys::cuDeviceGetDefaultMemPool(&mut pool, ctx.cu_device()) {
            sys::CUresult::CUDA_SUCCESS => sys::cuMemPoolSetAttribute(
                pool,
                sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                (&mut threshold as *mut u64).cast(),
            ),
            other => other,
        }
    };
    status
        .result()
        .map_err(driver("memory pool release threshold"))
}

/// Whether cuBLAS may use TF32 tensor cores for f32 GEMMs: `SPECREG_CUDA_TF32=1` when the
/// device is opened. Off by default (full f32 products, as on the CPU).
fn tf32_requested() -> bool {
    std::env::var("SPECREG_CUDA_TF32").is_ok_and(|v| v == "1")
}

impl DeviceState {
    fn open(ordinal: usize) -> Result<Self> {
        probe()?;
        let ctx = CudaContext::new(ordinal).map_err(driver("open device"))?;
        // SAFETY: this backend uses only the context's default stream, so the per-buffer
        // events that order work across streams are not needed (and cost two event
        // creations per allocation).
        unsafe { ctx.disable_event_tracking() };
        keep_pool_memory(&ctx)?;
        let (major, minor) = ctx
            .compute_capability()
            .map_err(driver("compute capability"))?;
        let stream = ctx.default_stream();
        let blas = CudaBlas::new(stream.clone()).map_err(|e| Error::Cuda {
            op: "cublasCreate",
            message: format!("{:?}", e.0),
        })?;
        let math = if tf32_requested() {
            cudarc::cublas::sys::cublasMath_t::CUBLAS_TF32_TENSOR_OP_MATH
        } else {
            cudarc::cublas::sys::cublasMath_t::CUBLAS_DEFAULT_MATH
        };
        // SAFETY: the handle is live (just created) and owned by `blas`.
        let status = unsafe { cudarc::cublas::sys::cublasSetMathMode(*blas.handle(), math) };
        super::solver::cublas_status("cublasSetMathMode", status)?;
        let solver = DnHandle::new(stream.clone()).map_err(|e| Error::Cuda {
            op: "cusolverDnCreate",
            message: format!("{:?}", e.0),
        })?;
        solver
            .set_deterministic_mode(
                cudarc::cusolver::sys::cusolverDeterministicMode_t::CUSOLVER_DETERMINISTIC_RESULTS,
            )
            .map_err(|e| Error::Cuda {
                op: "cusolverDnSetDeterministicMode",
                message: format!("{:?}", e.0),
            })?;
        Ok(Self {
            ordinal,
            ctx,
            stream,
            blas: Mutex::new(blas),
            solver: Mutex::new(solver),
            arch: format!("sm_{major}{minor}"),
            modules: Mutex::new(HashMap::new()),
            functions: Mutex::new(HashMap::new()),
            flags: Mutex::new(HashMap::new()),
        })
    }

    /// The kernel `k` for `dtype`, compiling and loading its module on first use.
    pub(crate) fn function(&self, k: Kernel, dtype: DType) -> Result<CudaFunction> {
        let name = k.name(dtype);
        if let Some(f) = lock(&self.functions).get(name) {
            return Ok(f.clone());
        }
        let module = {
            let mut modules = lock(&self.modules);
            match modules.get(&k.module) {
                Some(m) => m.clone(),
                None => {
                    let cubin = kernels::compile_cubin(k.module, &self.arch)?;
                    let m = self
                        .ctx
                        .load_module(cudarc::nvrtc::Ptx::from_binary(cubin))
                        .map_err(driver("load kernel module"))?;
                    modules.insert(k.module, m.clone());
                    m
                }
            }
        };
        let f = module
            .load_function(name)
            .map_err(driver("load kernel function"))?;
        lock(&self.functions).insert(name, f.clone());
        Ok(f)
    }

    /// Runs `f` with this thread's bad-index flag buffer (allocated zeroed on first use) and
    /// marks the thread as having to check it at its next read.
    pub(crate) fn with_flag<R>(
        &self,
        f: impl FnOnce(&mut CudaSlice<u64>) -> Result<R>,
    ) -> Result<R> {
        let id = std::thread::current().id();
        let mut flags = lock(&self.flags);
        let buf = match flags.entry(id) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(
                self.stream
                    .alloc_zeros::<u64>(3)
                    .map_err(driver("allocate the bad-index flag"))?,
            ),
        };
        DIRTY.with(|d| d.borrow_mut().insert(self.ordinal));
        f(buf)
    }

    /// Reports (and clears) a bad index recorded by this thread's kernels since the last
    /// check; a no-op, with no copy, when the thread launched no index-checking kernel.
    pub(crate) fn check_bad_index(&self) -> Result<()> {
        if !DIRTY.with(|d| d.borrow_mut().remove(&self.ordinal)) {
            return Ok(());
        }
        let id = std::thread::current().id();
        let mut flags = lock(&self.flags);
        let Some(buf) = flags.get_mut(&id) else {
            return Ok(());
        };
        let v = self
            .stream
            .clone_dtoh(buf)
            .map_err(driver("read the bad-index flag"))?;
        let (code, value, bound) = (v[0], f64::from_bits(v[1]), v[2]);
        if code == 0 {
            return Ok(());
        }
        self.stream
            .memset_zeros(buf)
            .map_err(driver("clear the bad-index flag"))?;
        Err(match BadIndex::of_code(code) {
            Some(b) => b.error(value, bound),
            None => Error::Cuda {
                op: "bad-index flag",
                message: format!("unknown code {code}"),
            },
        })
    }

    /// Waits for all queued work, then reports a pending bad index.
    pub(crate) fn synchronize(&self) -> Result<()> {
        self.stream.synchronize().map_err(driver("synchronize"))?;
        self.check_bad_index()
    }
}

/// The cached state of device `ordinal`, opened on first use.
pub(crate) fn device(ordinal: usize) -> Result<Arc<DeviceState>> {
    static DEVICES: OnceLock<Mutex<HashMap<usize, Arc<DeviceState>>>> = OnceLock::new();
    let mut map = lock(DEVICES.get_or_init(|| Mutex::new(HashMap::new())));
    if let Some(d) = map.get(&ordinal) {
        return Ok(d.clone());
    }
    let d = Arc::new(DeviceState::open(ordinal)?);
    map.insert(ordinal, d.clone());
    Ok(d)
}
