//! The big passes of 1-D batch normalisation over a `[B, F]` tensor, fused.
//!
//! BatchNorm's forward and backward are a chain of broadcasts along the columns, products
//! and column sums, each reading and writing a whole `[B, F]` tensor. On the CPU each
//! method here is one pass (two for the backward) that evaluates the same expressions in
//! the same order, so it returns the same bits as the chain; elsewhere (and for
//! non-contiguous CPU operands) it runs the chain itself. The `[F]` vectors (`mean`,
//! `inv_std`, `γ`, `β`, the column means of the backward) are the caller's.

use ndarray::{ArcArray, IxDyn};

use crate::storage::Storage;
use crate::{BinaryOp, DType, Element, Error, Result, Tensor};

/// The four column sums of the BatchNorm backward, from [`Tensor::batch_norm_backward_sums`].
#[derive(Debug, Clone)]
pub struct BatchNormSums {
    /// `Σ_b γ g`.
    pub grad_gamma: Tensor,
    /// `Σ_b x̂ (γ g)`.
    pub xhat_grad_gamma: Tensor,
    /// `Σ_b g x̂`: the gradient of `γ`.
    pub grad_xhat: Tensor,
    /// `Σ_b g`: the gradient of `β`.
    pub grad: Tensor,
}

/// The CPU buffer of a contiguous `T` tensor, if that is what `t` is.
fn host<T: Element>(t: &Tensor) -> Option<&[T]> {
    match &t.storage {
        Storage::Cpu(c) => T::unwrap_ref(c)?.as_slice(),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

fn cpu_tensor<T: Element>(v: Vec<T>, shape: &[usize]) -> Tensor {
    let a = ArcArray::from_shape_vec(IxDyn(shape), v).expect("the kernel fills the shape");
    Tensor::from_storage(Storage::Cpu(T::wrap(a)))
}

/// Runs the CPU kernel for the operands' dtype when every operand is a contiguous CPU
/// buffer; `None` sends the caller to the unfused chain.
macro_rules! on_host {
    ($dtype:expr, $shape:ident, [$($t:ident),+], |$T:ident| $body:expr) => {{
        fn run<$T: Element>($shape: &[usize], $($t: &Tensor),+) -> Option<Vec<Tensor>> {
            $(let $t = host::<$T>($t)?;)+
            Some($body)
        }
        match $dtype {
            DType::F32 => run::<f32>(&$shape, $($t),+),
            DType::F64 => run::<f64>(&$shape, $($t),+),
        }
    }};
}

fn bc(t: &Tensor, v: &Tensor, op: BinaryOp) -> Result<Tensor> {
    t.broadcast_along(v, 1, op)
}

impl Tensor {
    /// Checks that `self` is `[B, F]` and every vector is `[F]`, all of `self`'s dtype and
    /// device; a named, typed error otherwise.
    fn expect_batch_norm_operands(
        &self,
        op: &'static str,
        matrices: &[&Tensor],
        vectors: &[&Tensor],
    ) -> Result<()> {
        let (_, f) = match *self.shape() {
            [b, f] => (b, f),
            _ => {
                return Err(Error::RankMismatch {
                    op,
                    expected: 2,
                    got: self.shape().to_vec(),
                });
            }
        };
        for m in matrices {
            self.expect_same_shape(op, m)?;
        }
        for v in vectors {
            if v.shape() != [f] {
                return Err(Error::ShapeMismatch {
                    op,
                    lhs: self.shape().to_vec(),
                    rhs: v.shape().to_vec(),
                });
            }
        }
        for t in matrices.iter().chain(vectors) {
            if t.dtype() != self.dtype() {
                return Err(Error::DTypeMismatch {
                    op,
                    lhs: self.dtype(),
                    rhs: t.dtype(),
                });
            }
            if t.device() != self.device() {
                return Err(Error::DeviceMismatch {
                    op,
                    lhs: self.device(),
                    rhs: t.device(),
                });
            }
        }
        Ok(())
    }

    /// `Σ_b (x[b, f] − mean[f])²` of a `[B, F]` tensor: `B` times the biased variance when
    /// `mean` is the column mean.
    pub fn centred_sq_col_sums(&self, mean: &Tensor) -> Result<Tensor> {
        self.expect_batch_norm_operands("centred_sq_col_sums", &[], &[mean])?;
        let f = [mean.shape()[0]];
        let x = self;
        if let Some(mut out) = on_host!(self.dtype(), f, [x, mean], |T| {
            vec![cpu_tensor(
                crate::cpu::batch_norm::centred_sq_col_sums::<T>(x, mean),
                f,
            )]
        }) {
            return Ok(out.remove(0));
        }
        self.centred_sq_col_sums_unfused(mean)
    }

    fn centred_sq_col_sums_unfused(&self, mean: &Tensor) -> Result<Tensor> {
        bc(self, mean, BinaryOp::Sub)?.sqr()?.col_sums()
    }

    /// `(x̂, y)` of a `[B, F]` tensor `x = self`: `x̂ = (x − mean) ⊙ inv_std` and
    /// `y = x̂ ⊙ γ + β`, every vector `[F]` running along the columns.
    pub fn batch_norm_normalise(
        &self,
        mean: &Tensor,
        inv_std: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        self.expect_batch_norm_operands(
            "batch_norm_normalise",
            &[],
            &[mean, inv_std, gamma, beta],
        )?;
        let shape = self.shape().to_vec();
        let x = self;
        if let Some(out) = on_host!(self.dtype(), shape, [x, mean, inv_std, gamma, beta], |T| {
            let (xhat, y) = crate::cpu::batch_norm::normalise::<T>(x, mean, inv_std, gamma, beta);
            vec![cpu_tensor(xhat, shape), cpu_tensor(y, shape)]
        }) {
            let [xhat, y]: [Tensor; 2] = out.try_into().expect("two outputs");
            return Ok((xhat, y));
        }
        self.batch_norm_normalise_unfused(mean, inv_std, gamma, beta)
    }

    fn batch_norm_normalise_unfused(
        &self,
        mean: &Tensor,
        inv_std: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let xhat = bc(&bc(self, mean, BinaryOp::Sub)?, inv_std, BinaryOp::Mul)?;
        let y = bc(&bc(&xhat, gamma, BinaryOp::Mul)?, beta, BinaryOp::Add)?;
        Ok((xhat, y))
    }

    /// The column sums of the BatchNorm backward for the output gradient `g = self`
    /// (`[B, F]`), the normalised input `xhat` (`[B, F]`) and the scale `γ` (`[F]`).
    pub fn batch_norm_backward_sums(&self, xhat: &Tensor, gamma: &Tensor) -> Result<BatchNormSums> {
        self.expect_batch_norm_operands("batch_norm_backward_sums", &[xhat], &[gamma])?;
        let f = [gamma.shape()[0]];
        let g = self;
        let sums = match on_host!(self.dtype(), f, [g, xhat, gamma], |T| {
            crate::cpu::batch_norm::backward_sums::<T>(g, xhat, gamma)
                .into_iter()
                .map(|s| cpu_tensor(s, f))
                .collect()
        }) {
            Some(sums) => sums,
            None => return self.batch_norm_backward_sums_unfused(xhat, gamma),
        };
        let [grad_gamma, xhat_grad_gamma, grad_xhat, grad]: [Tensor; 4] =
            sums.try_into().expect("four sums");
        Ok(BatchNormSums {
            grad_gamma,
            xhat_grad_gamma,
            grad_xhat,
            grad,
        })
    }

    fn batch_norm_backward_sums_unfused(
        &self,
        xhat: &Tensor,
        gamma: &Tensor,
    ) -> Result<BatchNormSums> {
        let u = bc(self, gamma, BinaryOp::Mul)?;
        Ok(BatchNormSums {
            grad_gamma: u.col_sums()?,
            xhat_grad_gamma: xhat.mul(&u)?.col_sums()?,
            grad_xhat: self.mul(xhat)?.col_sums()?,
            grad: self.col_sums()?,
        })
    }

    /// The BatchNorm input gradient for the output gradient `g = self` (`[B, F]`):
    /// `((γ g − mean_u) − x̂ ⊙ mean_xu) ⊙ inv_std`, where `mean_u` and `mean_xu` are the
    /// column means of `γ g` and `x̂ (γ g)`.
    pub fn batch_norm_project(
        &self,
        gamma: &Tensor,
        mean_u: &Tensor,
        xhat: &Tensor,
        mean_xu: &Tensor,
        inv_std: &Tensor,
    ) -> Result<Tensor> {
        self.expect_batch_norm_operands(
            "batch_norm_project",
            &[xhat],
            &[gamma, mean_u, mean_xu, inv_std],
        )?;
        let shape = self.shape().to_vec();
        let g = self;
        if let Some(mut out) = on_host!(
            self.dtype(),
            shape,
            [g, gamma, mean_u, xhat, mean_xu, inv_std],
            |T| {
                let gx =
                    crate::cpu::batch_norm::project::<T>(g, gamma, mean_u, xhat, mean_xu, inv_std);
                vec![cpu_tensor(gx, shape)]
            }
        ) {
            return Ok(out.remove(0));
        }
        self.batch_norm_project_unfused(gamma, mean_u, xhat, mean_xu, inv_std)
    }

    fn batch_norm_project_unfused(
        &self,
        gamma: &Tensor,
        mean_u: &Tensor,
        xhat: &Tensor,
        mean_xu: &Tensor,
        inv_std: &Tensor,
    ) -> Result<Tensor> {
        let centred = bc(&bc(self, gamma, BinaryOp::Mul)?, mean_u, BinaryOp::Sub)?;
        let along = bc(xhat, mean_xu, BinaryOp::Mul)?;
        bc(&centred.sub(&along)?, inv_std, BinaryOp::Mul)
    }
}

#[cfg(test)]
mod tests {
    use crate::{DType, Device, Rng, Tensor};

    /// Shapes on both sides of the kernels' thresholds: a tiny batch (serial), and column
    /// counts that straddle a 256-column block and the parallel cut-off.
    const SHAPES: [[usize; 2]; 4] = [[3, 5], [70, 600], [257, 300], [40, 2000]];

    fn bits(t: &Tensor) -> Vec<u64> {
        match t.dtype() {
            DType::F32 => t
                .to_vec::<f32>()
                .unwrap()
                .iter()
                .map(|x| x.to_bits().into())
                .collect(),
            DType::F64 => t
                .to_vec::<f64>()
                .unwrap()
                .iter()
                .map(|x| x.to_bits())
                .collect(),
        }
    }

    fn operands(shape: [usize; 2], dtype: DType, seed: u64) -> (Tensor, [Tensor; 5]) {
        let (dev, mut rng) = (Device::Cpu, Rng::new(seed));
        let mut r = |s: &[usize], m: f64| Tensor::randn(s, m, 1.0, dtype, &mut rng, &dev).unwrap();
        let big = r(&shape, 0.3);
        let f = [shape[1]];
        (
            big,
            [r(&f, 0.1), r(&f, 1.0), r(&f, 1.0), r(&f, 0.0), r(&f, 0.0)],
        )
    }

    #[test]
    fn each_fused_pass_gives_the_bits_of_the_unfused_chain() {
        for dtype in [DType::F32, DType::F64] {
            for (k, shape) in SHAPES.into_iter().enumerate() {
                let (x, [mean, inv_std, gamma, beta, other]) = operands(shape, dtype, k as u64);
                let (xhat_big, _) = operands(shape, dtype, 100 + k as u64);
                assert_eq!(
                    bits(&x.centred_sq_col_sums(&mean).unwrap()),
                    bits(&x.centred_sq_col_sums_unfused(&mean).unwrap()),
                    "centred squares {shape:?} {dtype:?}"
                );
                let fused = x
                    .batch_norm_normalise(&mean, &inv_std, &gamma, &beta)
                    .unwrap();
                let chain = x
                    .batch_norm_normalise_unfused(&mean, &inv_std, &gamma, &beta)
                    .unwrap();
                assert_eq!(bits(&fused.0), bits(&chain.0), "x̂ {shape:?} {dtype:?}");
                assert_eq!(bits(&fused.1), bits(&chain.1), "y {shape:?} {dtype:?}");
                let fused = x.batch_norm_backward_sums(&xhat_big, &gamma).unwrap();
                let chain = x
                    .batch_norm_backward_sums_unfused(&xhat_big, &gamma)
                    .unwrap();
                for (a, b) in [
                    (&fused.grad_gamma, &chain.grad_gamma),
                    (&fused.xhat_grad_gamma, &chain.xhat_grad_gamma),
                    (&fused.grad_xhat, &chain.grad_xhat),
                    (&fused.grad, &chain.grad),
                ] {
                    assert_eq!(bits(a), bits(b), "backward sums {shape:?} {dtype:?}");
                }
                let fused = x.batch_norm_project(&gamma, &mean, &xhat_big, &other, &inv_std);
                let chain =
                    x.batch_norm_project_unfused(&gamma, &mean, &xhat_big, &other, &inv_std);
                assert_eq!(
                    bits(&fused.unwrap()),
                    bits(&chain.unwrap()),
                    "project {shape:?}"
                );
            }
        }
    }

    #[test]
    fn the_passes_match_their_formulas_elementwise() {
        let (x, [mean, inv_std, gamma, beta, _]) = operands([6, 7], DType::F64, 9);
        let (b, f) = (6, 7);
        let at = |t: &Tensor| t.to_vec::<f64>().unwrap();
        let (xv, m, s, g, be) = (at(&x), at(&mean), at(&inv_std), at(&gamma), at(&beta));
        let sums = at(&x.centred_sq_col_sums(&mean).unwrap());
        let (xhat, y) = x
            .batch_norm_normalise(&mean, &inv_std, &gamma, &beta)
            .unwrap();
        let (xh, yv) = (at(&xhat), at(&y));
        let bsum = x.batch_norm_backward_sums(&xhat, &gamma).unwrap();
        let (su, sxu, sgx, sg) = (
            at(&bsum.grad_gamma),
            at(&bsum.xhat_grad_gamma),
            at(&bsum.grad_xhat),
            at(&bsum.grad),
        );
        let proj = at(&x
            .batch_norm_project(&gamma, &mean, &xhat, &beta, &inv_std)
            .unwrap());
        for j in 0..f {
            let col = |v: &[f64], i: usize| v[i * f + j];
            let close =
                |a: f64, e: f64| assert!((a - e).abs() <= 1e-12 * (1.0 + e.abs()), "{a} vs {e}");
            close(sums[j], (0..b).map(|i| (col(&xv, i) - m[j]).powi(2)).sum());
            close(su[j], (0..b).map(|i| g[j] * col(&xv, i)).sum());
            close(
                sxu[j],
                (0..b).map(|i| col(&xh, i) * g[j] * col(&xv, i)).sum(),
            );
            close(sgx[j], (0..b).map(|i| col(&xv, i) * col(&xh, i)).sum());
            close(sg[j], (0..b).map(|i| col(&xv, i)).sum());
            for i in 0..b {
                close(col(&xh, i), (col(&xv, i) - m[j]) * s[j]);
                close(col(&yv, i), col(&xh, i) * g[j] + be[j]);
                let want = ((g[j] * col(&xv, i) - m[j]) - col(&xh, i) * be[j]) * s[j];
                close(col(&proj, i), want);
            }
        }
    }

    #[test]
    fn a_transposed_operand_takes_the_unfused_chain_and_agrees() {
        let (x, [mean, inv_std, gamma, beta, _]) = operands([300, 300], DType::F32, 3);
        let xt = x.t().unwrap();
        let dense =
            Tensor::from_vec(xt.to_vec::<f32>().unwrap(), &[300, 300], &Device::Cpu).unwrap();
        let a = xt
            .batch_norm_normalise(&mean, &inv_std, &gamma, &beta)
            .unwrap();
        let b = dense
            .batch_norm_normalise(&mean, &inv_std, &gamma, &beta)
            .unwrap();
        assert_eq!(bits(&a.1), bits(&b.1));
    }

    #[test]
    fn bad_operands_are_named_errors() {
        let (x, [mean, inv_std, gamma, beta, _]) = operands([4, 3], DType::F32, 1);
        let wrong = Tensor::zeros(&[4], DType::F32, &Device::Cpu).unwrap();
        let other_dtype = Tensor::zeros(&[3], DType::F64, &Device::Cpu).unwrap();
        let msg = |r: crate::Result<Tensor>| r.unwrap_err().to_string();
        assert!(msg(x.centred_sq_col_sums(&wrong)).contains("centred_sq_col_sums"));
        assert!(msg(mean.centred_sq_col_sums(&mean)).contains("centred_sq_col_sums"));
        let e = x
            .batch_norm_normalise(&mean, &inv_std, &other_dtype, &beta)
            .unwrap_err();
        assert!(matches!(
            e,
            crate::Error::DTypeMismatch {
                op: "batch_norm_normalise",
                ..
            }
        ));
        let e = x.batch_norm_backward_sums(&mean, &gamma).unwrap_err();
        assert!(matches!(
            e,
            crate::Error::ShapeMismatch {
                op: "batch_norm_backward_sums",
                ..
            }
        ));
        let e = x
            .batch_norm_project(&gamma, &wrong, &x, &mean, &inv_std)
            .unwrap_err();
        assert!(matches!(
            e,
            crate::Error::ShapeMismatch {
                op: "batch_norm_project",
                ..
            }
        ));
    }
}
