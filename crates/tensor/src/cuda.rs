//! CUDA device handling through cudarc (dynamic loading).
//!
//! Opening a device probes libcuda, libcublas, libcusolver and libnvrtc first, because
//! cudarc's dynamic loader panics on a missing library; a missing one is
//! [`Error::CudaLibraryMissing`]. Contexts are created once per ordinal and cached.
//! Tensors can be moved to and from a CUDA device; the compute kernels are not written yet,
//! so every op on CUDA storage returns [`Error::UnsupportedOnDevice`] (never a silent CPU
//! fallback).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::{CudaContext, CudaSlice, CudaStream};

use crate::backend::BackendStorage;
use crate::cpu::CpuStorage;
use crate::{BinaryOp, DType, Device, Error, Result, UnaryOp};

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

fn driver(op: &'static str) -> impl Fn(cudarc::driver::DriverError) -> Error {
    move |e| Error::Cuda {
        op,
        message: e.to_string(),
    }
}

/// The cached context of device `ordinal`, created on first use.
pub(crate) fn context(ordinal: usize) -> Result<Arc<CudaContext>> {
    static CONTEXTS: OnceLock<Mutex<HashMap<usize, Arc<CudaContext>>>> = OnceLock::new();
    let map = CONTEXTS.get_or_init(|| Mutex::new(HashMap::new()));
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(ctx) = map.get(&ordinal) {
        return Ok(ctx.clone());
    }
    probe()?;
    let ctx = CudaContext::new(ordinal).map_err(driver("open device"))?;
    map.insert(ordinal, ctx.clone());
    Ok(ctx)
}

pub(crate) fn synchronize(ordinal: usize) -> Result<()> {
    context(ordinal)?
        .synchronize()
        .map_err(driver("synchronize"))
}

#[derive(Debug)]
enum CudaData {
    F32(CudaSlice<f32>),
    F64(CudaSlice<f64>),
}

/// Device memory of one tensor: a contiguous row-major buffer.
#[derive(Debug)]
pub(crate) struct CudaStorage {
    data: CudaData,
    dims: Vec<usize>,
    ordinal: usize,
    stream: Arc<CudaStream>,
}

impl CudaStorage {
    pub(crate) fn ordinal(&self) -> usize {
        self.ordinal
    }

    pub(crate) fn from_cpu(cpu: &CpuStorage, ordinal: usize) -> Result<Self> {
        let stream = context(ordinal)?.default_stream();
        let up = driver("host to device copy");
        let (data, dims) = match cpu {
            CpuStorage::F32(a) => {
                let v: Vec<f32> = a.as_standard_layout().iter().copied().collect();
                (
                    CudaData::F32(stream.clone_htod(&v).map_err(up)?),
                    a.shape().to_vec(),
                )
            }
            CpuStorage::F64(a) => {
                let v: Vec<f64> = a.as_standard_layout().iter().copied().collect();
                (
                    CudaData::F64(stream.clone_htod(&v).map_err(up)?),
                    a.shape().to_vec(),
                )
            }
        };
        Ok(Self {
            data,
            dims,
            ordinal,
            stream,
        })
    }

    pub(crate) fn to_cpu(&self) -> Result<CpuStorage> {
        let down = driver("device to host copy");
        let shape = ndarray::IxDyn(&self.dims);
        Ok(match &self.data {
            CudaData::F32(s) => {
                let v = self.stream.clone_dtoh(s).map_err(down)?;
                CpuStorage::F32(
                    ndarray::ArrayD::from_shape_vec(shape, v)
                        .expect("dims")
                        .into_shared(),
                )
            }
            CudaData::F64(s) => {
                let v = self.stream.clone_dtoh(s).map_err(down)?;
                CpuStorage::F64(
                    ndarray::ArrayD::from_shape_vec(shape, v)
                        .expect("dims")
                        .into_shared(),
                )
            }
        })
    }

    fn unsupported<T>(&self, op: &'static str) -> Result<T> {
        Err(Error::UnsupportedOnDevice {
            op,
            device: Device::Cuda(self.ordinal),
        })
    }
}

impl BackendStorage for CudaStorage {
    fn dims(&self) -> &[usize] {
        &self.dims
    }
    fn dtype(&self) -> DType {
        match self.data {
            CudaData::F32(_) => DType::F32,
            CudaData::F64(_) => DType::F64,
        }
    }
    fn to_dtype(&self, _: DType) -> Result<Self> {
        self.unsupported("to_dtype")
    }
    fn reshape(&self, _: &[usize]) -> Result<Self> {
        self.unsupported("reshape")
    }
    fn permute(&self, _: &[usize]) -> Result<Self> {
        self.unsupported("permute")
    }
    fn unary(&self, _: UnaryOp) -> Result<Self> {
        self.unsupported("unary")
    }
    fn affine(&self, _: f64, _: f64) -> Result<Self> {
        self.unsupported("affine")
    }
    fn clamp(&self, _: f64, _: f64) -> Result<Self> {
        self.unsupported("clamp")
    }
    fn binary(&self, _: &Self, _: BinaryOp) -> Result<Self> {
        self.unsupported("binary")
    }
    fn broadcast_along(&self, _: &Self, _: usize, _: BinaryOp) -> Result<Self> {
        self.unsupported("broadcast_along")
    }
    fn sum_axis(&self, _: usize) -> Result<Self> {
        self.unsupported("sum_axis")
    }
    fn sum_all(&self) -> Result<f64> {
        self.unsupported("sum_all")
    }
    fn max_abs(&self) -> Result<f64> {
        self.unsupported("max_abs")
    }
    fn argmax_rows(&self) -> Result<Self> {
        self.unsupported("argmax_rows")
    }
    fn sum_all_f64(&self) -> Result<Self> {
        self.unsupported("sum_all_f64")
    }
    fn argsort_descending(&self) -> Result<Self> {
        self.unsupported("argsort_descending")
    }
    fn gather(&self, _: &Self) -> Result<Self> {
        self.unsupported("gather")
    }
    fn scatter(&self, _: &Self, _: usize) -> Result<Self> {
        self.unsupported("scatter")
    }
    fn concat(parts: &[&Self]) -> Result<Self> {
        match parts.first() {
            Some(p) => p.unsupported("concat"),
            None => Err(Error::InvalidArgument {
                op: "concat",
                reason: "no parts".into(),
            }),
        }
    }
    fn index_select(&self, _: &[usize]) -> Result<Self> {
        self.unsupported("index_select")
    }
    fn where_cond(&self, _: &Self, _: &Self) -> Result<Self> {
        self.unsupported("where_cond")
    }
    fn matmul(&self, _: &Self, _: bool, _: bool) -> Result<Self> {
        self.unsupported("matmul")
    }
    fn log_softmax(&self) -> Result<Self> {
        self.unsupported("log_softmax")
    }
    fn cross_entropy(&self, _: &[usize]) -> Result<(Self, Self)> {
        self.unsupported("cross_entropy")
    }
    fn conv2d(&self, _: &Self) -> Result<Self> {
        self.unsupported("conv2d")
    }
    fn conv2d_backward_input(&self, _: &Self) -> Result<Self> {
        self.unsupported("conv2d_backward_input")
    }
    fn conv2d_backward_weight(&self, _: &Self, _: usize, _: usize) -> Result<Self> {
        self.unsupported("conv2d_backward_weight")
    }
    fn max_pool2d(&self) -> Result<(Self, Self)> {
        self.unsupported("max_pool2d")
    }
    fn max_pool2d_backward(&self, _: &Self, _: usize, _: usize) -> Result<Self> {
        self.unsupported("max_pool2d_backward")
    }
    fn max_pool2d_gather(&self, _: &Self) -> Result<Self> {
        self.unsupported("max_pool2d_gather")
    }
    fn symmetric_eigen(&self) -> Result<(Self, Self)> {
        self.unsupported("symmetric_eigen")
    }
    fn cholesky(&self) -> Result<Self> {
        self.unsupported("cholesky")
    }
    fn solve_triangular(&self, _: &Self, _: bool, _: bool, _: bool) -> Result<Self> {
        self.unsupported("solve_triangular")
    }
}
