//! `Storage`: which backend holds a tensor's data. Every op is one `match` here.

#[cfg(feature = "cuda")]
use std::sync::Arc;

use crate::backend::{AdamParts, BackendStorage};
use crate::cpu::CpuStorage;
use crate::{AdamCoefficients, BinaryOp, DType, Device, Error, Result, UnaryOp};

#[derive(Debug, Clone)]
pub(crate) enum Storage {
    Cpu(CpuStorage),
    #[cfg(feature = "cuda")]
    Cuda(Arc<crate::cuda::CudaStorage>),
}

/// Runs a backend method on whichever storage this is and rewraps the result.
macro_rules! one {
    ($self:expr, $s:ident => $e:expr) => {
        match $self {
            Storage::Cpu($s) => Ok(Storage::Cpu($e?)),
            #[cfg(feature = "cuda")]
            Storage::Cuda($s) => Ok(Storage::Cuda(Arc::new($e?))),
        }
    };
}

/// Runs a backend method on two storages that must share a device.
macro_rules! two {
    ($op:literal, $l:expr, $r:expr, ($a:ident, $b:ident) => $e:expr) => {
        match ($l, $r) {
            (Storage::Cpu($a), Storage::Cpu($b)) => Ok(Storage::Cpu($e?)),
            #[cfg(feature = "cuda")]
            (Storage::Cuda($a), Storage::Cuda($b)) if $a.ordinal() == $b.ordinal() => {
                Ok(Storage::Cuda(Arc::new($e?)))
            }
            #[allow(unreachable_patterns)]
            (l, r) => Err(Error::DeviceMismatch {
                op: $op,
                lhs: l.device(),
                rhs: r.device(),
            }),
        }
    };
}

/// Runs a backend method that returns two storages.
macro_rules! pair_out {
    ($self:expr, $s:ident => $e:expr) => {
        match $self {
            Storage::Cpu($s) => {
                let (a, b) = $e?;
                Ok((Storage::Cpu(a), Storage::Cpu(b)))
            }
            #[cfg(feature = "cuda")]
            Storage::Cuda($s) => {
                let (a, b) = $e?;
                Ok((Storage::Cuda(Arc::new(a)), Storage::Cuda(Arc::new(b))))
            }
        }
    };
}

/// Runs a backend method that returns a host value.
macro_rules! host {
    ($self:expr, $s:ident => $e:expr) => {
        match $self {
            Storage::Cpu($s) => $e,
            #[cfg(feature = "cuda")]
            Storage::Cuda($s) => $e,
        }
    };
}

impl Storage {
    pub(crate) fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
            #[cfg(feature = "cuda")]
            Storage::Cuda(s) => Device::Cuda(s.ordinal()),
        }
    }

    pub(crate) fn dims(&self) -> &[usize] {
        host!(self, s => s.dims())
    }

    pub(crate) fn dtype(&self) -> DType {
        host!(self, s => s.dtype())
    }

    /// A host copy (or the host storage itself).
    pub(crate) fn to_cpu(&self) -> Result<CpuStorage> {
        match self {
            Storage::Cpu(s) => Ok(s.clone()),
            #[cfg(feature = "cuda")]
            Storage::Cuda(s) => s.to_cpu(),
        }
    }

    pub(crate) fn to_device(&self, device: Device) -> Result<Storage> {
        if self.device() == device {
            return Ok(self.clone());
        }
        match device {
            Device::Cpu => Ok(Storage::Cpu(self.to_cpu()?)),
            #[cfg(feature = "cuda")]
            Device::Cuda(n) => Ok(Storage::Cuda(Arc::new(crate::cuda::CudaStorage::from_cpu(
                &self.to_cpu()?,
                n,
            )?))),
            #[cfg(not(feature = "cuda"))]
            Device::Cuda(_) => Err(Error::NotCompiledWithCuda),
        }
    }

    pub(crate) fn to_dtype(&self, d: DType) -> Result<Storage> {
        one!(self, s => s.to_dtype(d))
    }
    pub(crate) fn reshape(&self, dims: &[usize]) -> Result<Storage> {
        one!(self, s => s.reshape(dims))
    }
    pub(crate) fn permute(&self, axes: &[usize]) -> Result<Storage> {
        one!(self, s => s.permute(axes))
    }
    pub(crate) fn unary(&self, op: UnaryOp) -> Result<Storage> {
        one!(self, s => s.unary(op))
    }
    pub(crate) fn affine(&self, mul: f64, add: f64) -> Result<Storage> {
        one!(self, s => s.affine(mul, add))
    }
    pub(crate) fn clamp(&self, lo: f64, hi: f64) -> Result<Storage> {
        one!(self, s => s.clamp(lo, hi))
    }
    pub(crate) fn binary(&self, rhs: &Storage, op: BinaryOp) -> Result<Storage> {
        two!("binary", self, rhs, (a, b) => a.binary(b, op))
    }
    pub(crate) fn broadcast_along(
        &self,
        rhs: &Storage,
        axis: usize,
        op: BinaryOp,
    ) -> Result<Storage> {
        two!("broadcast", self, rhs, (a, b) => a.broadcast_along(b, axis, op))
    }
    pub(crate) fn sum_axis(&self, axis: usize) -> Result<Storage> {
        one!(self, s => s.sum_axis(axis))
    }
    pub(crate) fn sum_all(&self) -> Result<f64> {
        host!(self, s => s.sum_all())
    }
    pub(crate) fn max_abs(&self) -> Result<f64> {
        host!(self, s => s.max_abs())
    }
    pub(crate) fn argmax_rows(&self) -> Result<Storage> {
        one!(self, s => s.argmax_rows())
    }
    pub(crate) fn sum_all_f64(&self) -> Result<Storage> {
        one!(self, s => s.sum_all_f64())
    }
    pub(crate) fn argsort_descending(&self) -> Result<Storage> {
        one!(self, s => s.argsort_descending())
    }
    pub(crate) fn gather(&self, idx: &Storage) -> Result<Storage> {
        two!("gather", self, idx, (a, b) => a.gather(b))
    }
    pub(crate) fn scatter(&self, idx: &Storage, len: usize) -> Result<Storage> {
        two!("scatter", self, idx, (a, b) => a.scatter(b, len))
    }
    /// The 1-D storages `parts` (at least one, all on one device) one after another.
    pub(crate) fn concat(parts: &[&Storage]) -> Result<Storage> {
        let first = parts.first().ok_or(Error::InvalidArgument {
            op: "concat",
            reason: "no parts".into(),
        })?;
        if let Some(other) = parts.iter().find(|p| p.device() != first.device()) {
            return Err(Error::DeviceMismatch {
                op: "concat",
                lhs: first.device(),
                rhs: other.device(),
            });
        }
        match first {
            Storage::Cpu(_) => {
                let cpu: Vec<&CpuStorage> = parts
                    .iter()
                    .filter_map(|p| match p {
                        Storage::Cpu(c) => Some(c),
                        #[allow(unreachable_patterns)]
                        _ => None,
                    })
                    .collect();
                Ok(Storage::Cpu(CpuStorage::concat(&cpu)?))
            }
            #[cfg(feature = "cuda")]
            Storage::Cuda(_) => {
                let cuda: Vec<&crate::cuda::CudaStorage> = parts
                    .iter()
                    .filter_map(|p| match p {
                        Storage::Cuda(c) => Some(c.as_ref()),
                        _ => None,
                    })
                    .collect();
                Ok(Storage::Cuda(Arc::new(crate::cuda::CudaStorage::concat(
                    &cuda,
                )?)))
            }
        }
    }
    pub(crate) fn index_select(&self, idx: &[usize]) -> Result<Storage> {
        one!(self, s => s.index_select(idx))
    }
    /// The fused Adam update; the tensor layer has checked that every operand is on this
    /// storage's device.
    pub(crate) fn adam_update(
        &self,
        grad: &Storage,
        exp_avg: &Storage,
        exp_avg_sq: &Storage,
        max_exp_avg_sq: Option<&Storage>,
        k: &AdamCoefficients,
    ) -> Result<AdamParts<Storage>> {
        let mismatch = |other: &Storage| Error::DeviceMismatch {
            op: "adam_update",
            lhs: self.device(),
            rhs: other.device(),
        };
        match self {
            Storage::Cpu(p) => {
                fn cpu(s: &Storage) -> Option<&CpuStorage> {
                    match s {
                        Storage::Cpu(c) => Some(c),
                        #[allow(unreachable_patterns)]
                        _ => None,
                    }
                }
                let cpu = |s| cpu(s).ok_or_else(|| mismatch(s));
                let vmax = max_exp_avg_sq.map(cpu).transpose()?;
                let out = p.adam_update(cpu(grad)?, cpu(exp_avg)?, cpu(exp_avg_sq)?, vmax, k)?;
                Ok(out.map(Storage::Cpu))
            }
            #[cfg(feature = "cuda")]
            Storage::Cuda(p) => {
                fn cuda(s: &Storage, ordinal: usize) -> Option<&crate::cuda::CudaStorage> {
                    match s {
                        Storage::Cuda(c) if c.ordinal() == ordinal => Some(c.as_ref()),
                        _ => None,
                    }
                }
                let cuda = |s| cuda(s, p.ordinal()).ok_or_else(|| mismatch(s));
                let vmax = max_exp_avg_sq.map(cuda).transpose()?;
                let out = p.adam_update(cuda(grad)?, cuda(exp_avg)?, cuda(exp_avg_sq)?, vmax, k)?;
                Ok(out.map(|s| Storage::Cuda(Arc::new(s))))
            }
        }
    }
    pub(crate) fn where_cond(&self, on_true: &Storage, on_false: &Storage) -> Result<Storage> {
        match (self, on_true, on_false) {
            (Storage::Cpu(m), Storage::Cpu(t), Storage::Cpu(f)) => {
                Ok(Storage::Cpu(m.where_cond(t, f)?))
            }
            #[cfg(feature = "cuda")]
            (Storage::Cuda(m), Storage::Cuda(t), Storage::Cuda(f))
                if m.ordinal() == t.ordinal() && t.ordinal() == f.ordinal() =>
            {
                Ok(Storage::Cuda(Arc::new(m.where_cond(t, f)?)))
            }
            #[allow(unreachable_patterns)]
            (m, t, f) => Err(Error::DeviceMismatch {
                op: "where_cond",
                lhs: m.device(),
                rhs: if m.device() != t.device() {
                    t.device()
                } else {
                    f.device()
                },
            }),
        }
    }
    pub(crate) fn matmul(&self, rhs: &Storage, lt: bool, rt: bool) -> Result<Storage> {
        two!("matmul", self, rhs, (a, b) => a.matmul(b, lt, rt))
    }
    pub(crate) fn gram(&self) -> Result<Storage> {
        one!(self, s => s.gram())
    }
    pub(crate) fn log_softmax(&self) -> Result<Storage> {
        one!(self, s => s.log_softmax())
    }
    pub(crate) fn cross_entropy(&self, labels: &[usize]) -> Result<(Storage, Storage)> {
        pair_out!(self, s => s.cross_entropy(labels))
    }
    pub(crate) fn conv2d(&self, w: &Storage) -> Result<Storage> {
        two!("conv2d", self, w, (a, b) => a.conv2d(b))
    }
    pub(crate) fn conv2d_backward_input(&self, w: &Storage) -> Result<Storage> {
        two!("conv2d_backward_input", self, w, (a, b) => a.conv2d_backward_input(b))
    }
    pub(crate) fn conv2d_backward_weight(
        &self,
        g: &Storage,
        kh: usize,
        kw: usize,
    ) -> Result<Storage> {
        two!("conv2d_backward_weight", self, g, (a, b) => a.conv2d_backward_weight(b, kh, kw))
    }
    pub(crate) fn max_pool2d(&self) -> Result<(Storage, Storage)> {
        pair_out!(self, s => s.max_pool2d())
    }
    pub(crate) fn max_pool2d_backward(&self, idx: &Storage, h: usize, w: usize) -> Result<Storage> {
        two!("max_pool2d_backward", self, idx, (a, b) => a.max_pool2d_backward(b, h, w))
    }
    pub(crate) fn max_pool2d_gather(&self, idx: &Storage) -> Result<Storage> {
        two!("max_pool2d_gather", self, idx, (a, b) => a.max_pool2d_gather(b))
    }
    pub(crate) fn symmetric_eigen(&self) -> Result<(Storage, Storage)> {
        pair_out!(self, s => s.symmetric_eigen())
    }
    pub(crate) fn cholesky(&self) -> Result<Storage> {
        one!(self, s => s.cholesky())
    }
    pub(crate) fn solve_triangular(
        &self,
        b: &Storage,
        lower: bool,
        tr: bool,
        left: bool,
    ) -> Result<Storage> {
        two!("solve_triangular", self, b, (a, b) => a.solve_triangular(b, lower, tr, left))
    }
}
