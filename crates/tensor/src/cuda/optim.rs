//! Launcher of the fused Adam kernel (`adam_*` in `elementwise.cu`).
//!
//! Compile-checked, not yet run on a GPU.

use super::kernels as k;
use super::storage::{CudaStorage, each, grid, launch, u};
use crate::Element as _;
use crate::backend::AdamParts;
use crate::{AdamCoefficients, Result};

impl CudaStorage {
    /// One Adam update of the parameter `self`; the tensor layer has checked shapes and
    /// devices, dtypes are checked here.
    pub(crate) fn adam_update(
        &self,
        grad: &CudaStorage,
        exp_avg: &CudaStorage,
        exp_avg_sq: &CudaStorage,
        max_exp_avg_sq: Option<&CudaStorage>,
        c: &AdamCoefficients,
    ) -> Result<AdamParts<CudaStorage>> {
        const OP: &str = "adam_update";
        each!(self, T, theta => {
            let g = grad.typed::<T>(OP)?;
            let m = exp_avg.typed::<T>(OP)?;
            let v = exp_avg_sq.typed::<T>(OP)?;
            let prev = max_exp_avg_sq.map(|s| s.typed::<T>(OP)).transpose()?;
            // 0: plain Adam; 1: AMSGrad with a running maximum; 2: AMSGrad's first step.
            let mode: i32 = match (c.amsgrad, prev) {
                (false, _) => 0,
                (true, Some(_)) => 1,
                (true, None) => 2,
            };
            let n = self.len();
            let (mut o_theta, mut o_m, mut o_v) =
                (self.dev.alloc::<T>(n)?, self.dev.alloc::<T>(n)?, self.dev.alloc::<T>(n)?);
            // Without AMSGrad the kernel writes no maximum; a one-element buffer stands in.
            let mut o_vmax = self.dev.alloc::<T>(if c.amsgrad { n } else { 1 })?;
            if n > 0 {
                let f = self.dev.function(k::ADAM, T::DTYPE)?;
                let t = |x: f64| T::of_f64(x);
                let decay: i32 = (c.weight_decay != 0.0).into();
                launch!(self.dev, f, grid(n);
                    theta, g, m, v, prev.unwrap_or(v),
                    &mut o_theta, &mut o_m, &mut o_v, &mut o_vmax,
                    &u(n), &mode, &decay,
                    &t(c.beta1), &t(1.0 - c.beta1), &t(c.beta2), &t(1.0 - c.beta2),
                    &t(c.eps), &t(c.weight_decay), &t(c.step_size), &t(c.inv_sqrt_bias2),
                )?;
            }
            let dims = self.dims.clone();
            Ok(AdamParts {
                param: self.make(o_theta, dims.clone()),
                exp_avg: self.make(o_m, dims.clone()),
                exp_avg_sq: self.make(o_v, dims.clone()),
                max_exp_avg_sq: c.amsgrad.then(|| self.make(o_vmax, dims)),
            })
        })
    }
}
