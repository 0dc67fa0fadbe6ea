//! Launchers for the softmax, cross-entropy and max-pooling kernels (`nn.cu`).
//!
//! Compile-checked, not yet run on a GPU.

use super::device::BadIndex;
use super::kernels as k;
use super::storage::{CudaStorage, each, grid, launch, u};
use crate::Element as _;
use crate::Result;

impl CudaStorage {
    pub(crate) fn log_softmax_rows(&self) -> Result<CudaStorage> {
        let (rows, cols) = (self.dims[0], self.dims[1]);
        each!(self, T, x => {
            let mut out = self.dev.alloc::<T>(rows * cols)?;
            if rows * cols > 0 {
                let f = self.dev.function(k::LOG_SOFTMAX, T::DTYPE)?;
                launch!(self.dev, f, grid(rows); x, &mut out, &u(rows), &u(cols))?;
            }
            Ok(self.make(out, self.dims.clone()))
        })
    }

    /// Per-sample loss `[B]` and `softmax − onehot` `[B, C]` (labels validated by the caller).
    pub(crate) fn cross_entropy_rows(
        &self,
        labels: &[usize],
    ) -> Result<(CudaStorage, CudaStorage)> {
        let (rows, cols) = (self.dims[0], self.dims[1]);
        let y: Vec<u64> = labels.iter().map(|&l| u(l)).collect();
        let y = self.dev.upload(&y, "upload labels")?;
        each!(self, T, x => {
            let mut loss = self.dev.alloc::<T>(rows)?;
            let mut grad = self.dev.alloc::<T>(rows * cols)?;
            if rows * cols > 0 {
                let f = self.dev.function(k::CROSS_ENTROPY, T::DTYPE)?;
                launch!(self.dev, f, grid(rows); x, &y, &mut loss, &mut grad, &u(rows), &u(cols))?;
            }
            Ok((self.make(loss, vec![rows]), self.make(grad, self.dims.clone())))
        })
    }

    pub(crate) fn max_pool(&self) -> Result<(CudaStorage, CudaStorage)> {
        let (b, c, h, w) = (self.dims[0], self.dims[1], self.dims[2], self.dims[3]);
        let (oh, ow) = (h / 2, w / 2);
        let n = b * c * oh * ow;
        let dims = vec![b, c, oh, ow];
        each!(self, T, x => {
            let mut y = self.dev.alloc::<T>(n)?;
            let mut arg = self.dev.alloc::<T>(n)?;
            if n > 0 {
                let f = self.dev.function(k::MAX_POOL, T::DTYPE)?;
                launch!(self.dev, f, grid(n);
                    x, &mut y, &mut arg, &u(b * c), &u(h), &u(w), &u(oh), &u(ow))?;
            }
            Ok((self.make(y, dims.clone()), self.make(arg, dims)))
        })
    }

    /// `self = ∂L/∂y: [B, C, OH, OW]` routed to the argmax positions of an `in_h × in_w` input.
    pub(crate) fn max_pool_backward(
        &self,
        argmax: &CudaStorage,
        in_h: usize,
        in_w: usize,
    ) -> Result<CudaStorage> {
        let (b, c, oh, ow) = (self.dims[0], self.dims[1], self.dims[2], self.dims[3]);
        let n = b * c * oh * ow;
        each!(self, T, g => {
            let a = argmax.typed::<T>("max_pool2d_backward")?;
            let mut dx = self.dev.zeros::<T>(b * c * in_h * in_w)?;
            if n > 0 {
                let f = self.dev.function(k::MAX_POOL_BACKWARD, T::DTYPE)?;
                let code = BadIndex::PoolBackward as u64;
                self.dev.with_flag(|flag| {
                    launch!(self.dev, f, grid(n);
                        g, a, &mut dx, &u(b * c), &u(oh), &u(ow), &u(in_h), &u(in_w), flag, &code)
                })?;
            }
            Ok(self.make(dx, vec![b, c, in_h, in_w]))
        })
    }

    /// `self = t: [B, C, H, W]` picked at each stored argmax offset → `[B, C, H/2, W/2]`.
    pub(crate) fn max_pool_gather(&self, argmax: &CudaStorage) -> Result<CudaStorage> {
        let (b, c, h, w) = (self.dims[0], self.dims[1], self.dims[2], self.dims[3]);
        let (oh, ow) = (h / 2, w / 2);
        let n = b * c * oh * ow;
        each!(self, T, t => {
            let a = argmax.typed::<T>("max_pool2d_gather")?;
            let mut y = self.dev.alloc::<T>(n)?;
            if n > 0 {
                let f = self.dev.function(k::MAX_POOL_GATHER, T::DTYPE)?;
                let code = BadIndex::PoolGather as u64;
                self.dev.with_flag(|flag| {
                    launch!(self.dev, f, grid(n);
                        t, a, &mut y, &u(b * c), &u(h), &u(w), &u(oh), &u(ow), flag, &code)
                })?;
            }
            Ok(self.make(y, vec![b, c, oh, ow]))
        })
    }
}
