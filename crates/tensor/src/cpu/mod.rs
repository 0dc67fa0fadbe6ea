//! The CPU backend: ndarray storage, faer GEMM and factorisations, rayon for the rest.

pub(crate) mod batch_norm;
mod contiguous;
pub(crate) mod conv;
mod elementwise;
pub(crate) use elementwise::PAR_MIN;
mod optim;
pub(crate) mod pool;
#[cfg(test)]
mod test_util;

use ndarray::{ArcArray, Ix2, Ix4, IxDyn};

use crate::backend::{AdamParts, BackendStorage};
use crate::{AdamCoefficients, BinaryOp, DType, Element, Error, Result, UnaryOp, linalg};

/// Host storage: a shared, possibly strided ndarray of `f32` or `f64`.
#[derive(Debug, Clone)]
pub enum CpuStorage {
    /// 32-bit elements.
    F32(ArcArray<f32, IxDyn>),
    /// 64-bit elements.
    F64(ArcArray<f64, IxDyn>),
}

/// Applies a generic expression to whichever array a storage holds, rewrapping the result.
macro_rules! each {
    ($s:expr, $a:ident => $e:expr) => {
        match $s {
            CpuStorage::F32($a) => CpuStorage::F32($e),
            CpuStorage::F64($a) => CpuStorage::F64($e),
        }
    };
}

/// Like `each!` for two operands of the same dtype.
macro_rules! pair {
    ($op:literal, $l:expr, $r:expr, ($a:ident, $b:ident) => $e:expr) => {
        match ($l, $r) {
            (CpuStorage::F32($a), CpuStorage::F32($b)) => Ok(CpuStorage::F32($e)),
            (CpuStorage::F64($a), CpuStorage::F64($b)) => Ok(CpuStorage::F64($e)),
            (l, r) => Err(Error::DTypeMismatch {
                op: $op,
                lhs: l.dtype(),
                rhs: r.dtype(),
            }),
        }
    };
}

fn two<T: Element>(a: &ArcArray<T, IxDyn>) -> ndarray::ArrayView2<'_, T> {
    a.view()
        .into_dimensionality::<Ix2>()
        .expect("validated rank 2")
}

fn four<T: Element>(a: &ArcArray<T, IxDyn>) -> ndarray::ArrayView4<'_, T> {
    a.view()
        .into_dimensionality::<Ix4>()
        .expect("validated rank 4")
}

fn shared<T: Element, D: ndarray::Dimension>(a: ndarray::Array<T, D>) -> ArcArray<T, IxDyn> {
    a.into_dyn().into_shared()
}

fn invalid_argmax(op: &'static str) -> impl Fn(pool::InvalidArgmax) -> Error {
    move |pool::InvalidArgmax(v)| Error::InvalidArgument {
        op,
        reason: format!("argmax entry {v} is not a window offset 0, 1, 2 or 3"),
    }
}

fn cast<T: Element, U: Element>(a: &ArcArray<T, IxDyn>) -> ArcArray<U, IxDyn> {
    a.mapv(|x| U::of_f64(x.as_f64())).into_shared()
}

fn matmul_views<T: Element>(
    a: &ArcArray<T, IxDyn>,
    b: &ArcArray<T, IxDyn>,
    at: bool,
    bt: bool,
) -> ArcArray<T, IxDyn> {
    let (a, b) = (two(a), two(b));
    let a = if at { a.t() } else { a };
    let b = if bt { b.t() } else { b };
    shared(linalg::matmul(a, b))
}

fn eigh<T: Element>(a: &ArcArray<T, IxDyn>) -> Result<(ArcArray<T, IxDyn>, ArcArray<T, IxDyn>)> {
    let (v, u) = linalg::symmetric_eigen(two(a))?;
    Ok((shared(v), shared(u)))
}

/// `op(T) X = B`, or for the right side `X op(T) = B` solved as `op(T)ᵀ Xᵀ = Bᵀ` on
/// transposed views (no copies) and returned as a transposed view.
fn solve_side<T: Element>(
    t: &ArcArray<T, IxDyn>,
    b: &ArcArray<T, IxDyn>,
    tri: linalg::Triangle,
    transpose: bool,
    left: bool,
) -> Result<ArcArray<T, IxDyn>> {
    if left {
        return Ok(shared(linalg::solve_triangular(
            two(t),
            two(b),
            tri,
            transpose,
        )?));
    }
    let xt = linalg::solve_triangular(two(t), two(b).t(), tri, !transpose)?;
    Ok(shared(xt.reversed_axes()))
}

impl CpuStorage {
    pub(crate) fn from_array<T: Element>(a: ArcArray<T, IxDyn>) -> Self {
        T::wrap(a)
    }
}

impl BackendStorage for CpuStorage {
    fn dims(&self) -> &[usize] {
        match self {
            CpuStorage::F32(a) => a.shape(),
            CpuStorage::F64(a) => a.shape(),
        }
    }

    fn dtype(&self) -> DType {
        match self {
            CpuStorage::F32(_) => DType::F32,
            CpuStorage::F64(_) => DType::F64,
        }
    }

    fn to_dtype(&self, dtype: DType) -> Result<Self> {
        Ok(match (self, dtype) {
            (CpuStorage::F32(_), DType::F32) | (CpuStorage::F64(_), DType::F64) => self.clone(),
            (CpuStorage::F32(a), DType::F64) => CpuStorage::F64(cast(a)),
            (CpuStorage::F64(a), DType::F32) => CpuStorage::F32(cast(a)),
        })
    }

    fn reshape(&self, dims: &[usize]) -> Result<Self> {
        Ok(each!(self, a => {
            let a = if a.is_standard_layout() { a.clone() } else { a.as_standard_layout().into_owned().into_shared() };
            a.into_shape_with_order(IxDyn(dims)).expect("validated element count")
        }))
    }

    fn permute(&self, axes: &[usize]) -> Result<Self> {
        Ok(each!(self, a => a.clone().permuted_axes(IxDyn(axes))))
    }

    fn unary(&self, op: UnaryOp) -> Result<Self> {
        Ok(each!(self, a => elementwise::unary(a, op)))
    }

    fn affine(&self, mul: f64, add: f64) -> Result<Self> {
        Ok(each!(self, a => elementwise::affine(a, mul, add)))
    }

    fn clamp(&self, lo: f64, hi: f64) -> Result<Self> {
        Ok(each!(self, a => elementwise::clamp(a, lo, hi)))
    }

    fn binary(&self, rhs: &Self, op: BinaryOp) -> Result<Self> {
        pair!("binary", self, rhs, (a, b) => elementwise::binary(a, b, op))
    }

    fn broadcast_along(&self, rhs: &Self, axis: usize, op: BinaryOp) -> Result<Self> {
        pair!("broadcast", self, rhs, (a, b) => elementwise::broadcast_along(a, b, axis, op))
    }

    fn sum_axis(&self, axis: usize) -> Result<Self> {
        Ok(each!(self, a => elementwise::sum_axis(a, axis)))
    }

    fn sum_all(&self) -> Result<f64> {
        Ok(match self {
            CpuStorage::F32(a) => elementwise::sum_all(a),
            CpuStorage::F64(a) => elementwise::sum_all(a),
        })
    }

    fn max_abs(&self) -> Result<f64> {
        Ok(match self {
            CpuStorage::F32(a) => elementwise::max_abs(a),
            CpuStorage::F64(a) => elementwise::max_abs(a),
        })
    }

    fn argmax_rows(&self) -> Result<Self> {
        Ok(each!(self, a => elementwise::argmax_rows(a)))
    }

    fn sum_all_f64(&self) -> Result<Self> {
        let total = self.sum_all()?;
        Ok(CpuStorage::F64(shared(ndarray::arr0(total))))
    }

    fn argsort_descending(&self) -> Result<Self> {
        Ok(each!(self, a => elementwise::argsort_descending(a)))
    }

    fn gather(&self, idx: &Self) -> Result<Self> {
        pair!("gather", self, idx, (a, i) =>
            elementwise::gather(a, i).map_err(|reason| Error::InvalidArgument { op: "gather", reason })?)
    }

    fn scatter(&self, idx: &Self, len: usize) -> Result<Self> {
        pair!("scatter", self, idx, (a, i) =>
            elementwise::scatter(a, i, len).map_err(|reason| Error::InvalidArgument { op: "scatter", reason })?)
    }

    fn concat(parts: &[&Self]) -> Result<Self> {
        let dtype = parts.first().map_or(DType::F32, |p| p.dtype());
        if let Some(other) = parts.iter().find(|p| p.dtype() != dtype) {
            return Err(Error::DTypeMismatch {
                op: "concat",
                lhs: dtype,
                rhs: other.dtype(),
            });
        }
        Ok(match dtype {
            DType::F32 => {
                let arrs: Vec<&ArcArray<f32, IxDyn>> = parts
                    .iter()
                    .filter_map(|p| match p {
                        CpuStorage::F32(a) => Some(a),
                        CpuStorage::F64(_) => None,
                    })
                    .collect();
                CpuStorage::F32(elementwise::concat(&arrs))
            }
            DType::F64 => {
                let arrs: Vec<&ArcArray<f64, IxDyn>> = parts
                    .iter()
                    .filter_map(|p| match p {
                        CpuStorage::F64(a) => Some(a),
                        CpuStorage::F32(_) => None,
                    })
                    .collect();
                CpuStorage::F64(elementwise::concat(&arrs))
            }
        })
    }

    fn index_select(&self, idx: &[usize]) -> Result<Self> {
        Ok(each!(self, a => elementwise::index_select(a, idx)))
    }

    fn where_cond(&self, on_true: &Self, on_false: &Self) -> Result<Self> {
        match (self, on_true, on_false) {
            (CpuStorage::F32(m), CpuStorage::F32(t), CpuStorage::F32(f)) => {
                Ok(CpuStorage::F32(elementwise::where_cond(m, t, f)))
            }
            (CpuStorage::F64(m), CpuStorage::F64(t), CpuStorage::F64(f)) => {
                Ok(CpuStorage::F64(elementwise::where_cond(m, t, f)))
            }
            (m, t, f) => Err(Error::DTypeMismatch {
                op: "where_cond",
                lhs: m.dtype(),
                rhs: if m.dtype() != t.dtype() {
                    t.dtype()
                } else {
                    f.dtype()
                },
            }),
        }
    }

    fn adam_update(
        &self,
        grad: &Self,
        exp_avg: &Self,
        exp_avg_sq: &Self,
        max_exp_avg_sq: Option<&Self>,
        k: &AdamCoefficients,
    ) -> Result<AdamParts<Self>> {
        let mismatch = |other: &Self| Error::DTypeMismatch {
            op: "adam_update",
            lhs: self.dtype(),
            rhs: other.dtype(),
        };
        macro_rules! typed {
            ($variant:ident, $p:expr) => {{
                let ops = [grad, exp_avg, exp_avg_sq];
                let mut arrs = Vec::with_capacity(3);
                for s in ops {
                    match s {
                        CpuStorage::$variant(a) => arrs.push(a),
                        other => return Err(mismatch(other)),
                    }
                }
                let vmax = match max_exp_avg_sq {
                    None => None,
                    Some(CpuStorage::$variant(a)) => Some(a),
                    Some(other) => return Err(mismatch(other)),
                };
                let out = optim::adam_update($p, arrs[0], arrs[1], arrs[2], vmax, k);
                Ok(out.map(CpuStorage::$variant))
            }};
        }
        match self {
            CpuStorage::F32(p) => typed!(F32, p),
            CpuStorage::F64(p) => typed!(F64, p),
        }
    }

    fn matmul(&self, rhs: &Self, lhs_t: bool, rhs_t: bool) -> Result<Self> {
        pair!("matmul", self, rhs, (a, b) => matmul_views(a, b, lhs_t, rhs_t))
    }

    fn gram(&self) -> Result<Self> {
        Ok(each!(self, a => shared(linalg::gram(two(a)))))
    }

    fn log_softmax(&self) -> Result<Self> {
        Ok(each!(self, a => elementwise::log_softmax(a)))
    }

    fn cross_entropy(&self, labels: &[usize]) -> Result<(Self, Self)> {
        Ok(match self {
            CpuStorage::F32(a) => {
                let (l, g) = elementwise::cross_entropy(a, labels);
                (CpuStorage::F32(l), CpuStorage::F32(g))
            }
            CpuStorage::F64(a) => {
                let (l, g) = elementwise::cross_entropy(a, labels);
                (CpuStorage::F64(l), CpuStorage::F64(g))
            }
        })
    }

    fn conv2d(&self, w: &Self) -> Result<Self> {
        pair!("conv2d", self, w, (x, w) => shared(conv::conv2d(four(x), four(w))))
    }

    fn conv2d_backward_input(&self, w: &Self) -> Result<Self> {
        pair!("conv2d_backward_input", self, w, (g, w) =>
            shared(conv::conv2d_backward_input(four(g), four(w))))
    }

    fn conv2d_backward_weight(&self, grad_out: &Self, kh: usize, kw: usize) -> Result<Self> {
        pair!("conv2d_backward_weight", self, grad_out, (x, g) =>
            shared(conv::conv2d_backward_weight(four(x), four(g), kh, kw)))
    }

    fn max_pool2d(&self) -> Result<(Self, Self)> {
        Ok(match self {
            CpuStorage::F32(a) => {
                let (y, idx) = pool::max_pool2d(four(a));
                (CpuStorage::F32(shared(y)), CpuStorage::F32(shared(idx)))
            }
            CpuStorage::F64(a) => {
                let (y, idx) = pool::max_pool2d(four(a));
                (CpuStorage::F64(shared(y)), CpuStorage::F64(shared(idx)))
            }
        })
    }

    fn max_pool2d_backward(&self, argmax: &Self, in_h: usize, in_w: usize) -> Result<Self> {
        pair!("max_pool2d_backward", self, argmax, (g, a) =>
            shared(pool::max_pool2d_backward(four(g), four(a), in_h, in_w)
                .map_err(invalid_argmax("max_pool2d_backward"))?))
    }

    fn max_pool2d_gather(&self, argmax: &Self) -> Result<Self> {
        pair!("max_pool2d_gather", self, argmax, (t, a) =>
            shared(pool::max_pool2d_gather(four(t), four(a))
                .map_err(invalid_argmax("max_pool2d_gather"))?))
    }

    fn symmetric_eigen(&self) -> Result<(Self, Self)> {
        Ok(match self {
            CpuStorage::F32(a) => {
                let (v, u) = eigh(a)?;
                (CpuStorage::F32(v), CpuStorage::F32(u))
            }
            CpuStorage::F64(a) => {
                let (v, u) = eigh(a)?;
                (CpuStorage::F64(v), CpuStorage::F64(u))
            }
        })
    }

    fn cholesky(&self) -> Result<Self> {
        Ok(match self {
            CpuStorage::F32(a) => CpuStorage::F32(shared(linalg::cholesky(two(a))?)),
            CpuStorage::F64(a) => CpuStorage::F64(shared(linalg::cholesky(two(a))?)),
        })
    }

    fn solve_triangular(&self, b: &Self, lower: bool, transpose: bool, left: bool) -> Result<Self> {
        let tri = if lower {
            linalg::Triangle::Lower
        } else {
            linalg::Triangle::Upper
        };
        match (self, b) {
            (CpuStorage::F32(t), CpuStorage::F32(b)) => {
                Ok(CpuStorage::F32(solve_side(t, b, tri, transpose, left)?))
            }
            (CpuStorage::F64(t), CpuStorage::F64(b)) => {
                Ok(CpuStorage::F64(solve_side(t, b, tri, transpose, left)?))
            }
            (l, r) => Err(Error::DTypeMismatch {
                op: "solve_triangular",
                lhs: l.dtype(),
                rhs: r.dtype(),
            }),
        }
    }
}
