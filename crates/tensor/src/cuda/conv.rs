//! 2-D convolution (stride 1, no padding, NCHW) on the GPU: im2col + batched cuBLAS GEMM,
//! and col2im for the input gradient. Shapes and formulas as in `cpu/conv.rs`:
//!
//! * forward: `col_s = im2col(x_s): [K, P]` (`K = C·KH·KW`, `P = OH·OW`), then
//!   `y_s[O, P] = W[O, K] · col_s` for every sample `s` (one strided-batched GEMM, the
//!   kernel's stride 0);
//! * input gradient: `dcol_s = Wᵀ · g_s`, then `dx_s = col2im(dcol_s)` (a gather: each
//!   input element adds its `KH·KW` terms in a fixed order, no atomics);
//! * weight gradient: `dW_s = g_s · col_sᵀ` per sample (batched), then the per-sample
//!   partials are added over the batch in sample order by the reduction kernel, chunk after
//!   chunk: a fixed order, so the same inputs give the same bits.
//!
//! Samples are processed in chunks whose patch matrices total at most [`COL_BUDGET`]
//! elements, so memory stays bounded for any batch.
//!
//! Compile-checked, not yet run on a GPU.

use cudarc::driver::CudaSlice;

use super::gemm::{Blas, RowMajor, gemm_rm};
use super::kernels as k;
use super::storage::{CudaStorage, each, grid, launch, u};
use crate::Element as _;
use crate::Result;
use crate::conv_geometry::ConvGeometry as Geom;

/// Elements of one chunk's patch matrices (`S · K · P`): 32 Mi (128 MiB in f32).
const COL_BUDGET: usize = 1 << 25;

impl Geom {
    /// Samples per chunk for a batch of `b`.
    fn chunk(&self, b: usize) -> usize {
        (COL_BUDGET / (self.k() * self.out_plane()).max(1)).clamp(1, b.max(1))
    }
    /// The kernels' `(c, h, w, kh, kw, oh, ow)` arguments.
    fn args(&self) -> [u64; 7] {
        [
            u(self.c),
            u(self.h),
            u(self.w),
            u(self.kh),
            u(self.kw),
            u(self.oh()),
            u(self.ow()),
        ]
    }
}

impl CudaStorage {
    /// Writes the patch matrices of samples `s0 .. s0 + s` of `x` into `col: [s, K, P]`.
    fn im2col<T: Blas>(
        &self,
        x: &CudaSlice<T>,
        g: &Geom,
        s0: usize,
        s: usize,
        col: &mut CudaSlice<T>,
    ) -> Result<()> {
        let f = self.dev.function(k::IM2COL, T::DTYPE)?;
        let [c, h, w, kh, kw, oh, ow] = g.args();
        let src = x.slice(s0 * g.in_len()..(s0 + s) * g.in_len());
        launch!(self.dev, f, grid(s * g.k() * g.out_plane());
            &src, col, &u(s), &c, &h, &w, &kh, &kw, &oh, &ow)
    }

    pub(crate) fn conv_forward(&self, wt: &CudaStorage) -> Result<CudaStorage> {
        let (b, c, h, w) = (self.dims[0], self.dims[1], self.dims[2], self.dims[3]);
        let (o, kh, kw) = (wt.dims[0], wt.dims[2], wt.dims[3]);
        let g = Geom { c, h, w, kh, kw };
        let (nk, np) = (g.k(), g.out_plane());
        let dims = vec![b, o, g.oh(), g.ow()];
        each!(self, T, x => {
            let wb = wt.typed::<T>("conv2d")?;
            let total = b * o * np;
            if total == 0 || nk == 0 {
                return Ok(self.make(self.dev.zeros::<T>(total)?, dims));
            }
            let mut y = self.dev.alloc::<T>(total)?;
            let chunk = g.chunk(b);
            let mut col = self.dev.alloc::<T>(chunk * nk * np)?;
            for s0 in (0..b).step_by(chunk) {
                let s = chunk.min(b - s0);
                self.im2col(x, &g, s0, s, &mut col)?;
                let gm = RowMajor {
                    m: o, n: np, k: nk, at: false, bt: false, batch: s,
                    stride_a: 0, stride_b: nk * np, stride_c: o * np,
                };
                let mut ys = y.slice_mut(s0 * o * np..(s0 + s) * o * np);
                gemm_rm::<T, _, _, _>(&self.dev, gm, wb, &col, &mut ys)?;
            }
            Ok(self.make(y, dims))
        })
    }

    /// `self = ∂L/∂y: [B, O, OH, OW]`, `wt: [O, C, KH, KW]` → `∂L/∂x: [B, C, H, W]`.
    pub(crate) fn conv_backward_input(&self, wt: &CudaStorage) -> Result<CudaStorage> {
        let (b, o, oh, ow) = (self.dims[0], self.dims[1], self.dims[2], self.dims[3]);
        let (c, kh, kw) = (wt.dims[1], wt.dims[2], wt.dims[3]);
        let g = Geom {
            c,
            h: oh + kh - 1,
            w: ow + kw - 1,
            kh,
            kw,
        };
        let (nk, np) = (g.k(), g.out_plane());
        let dims = vec![b, c, g.h, g.w];
        each!(self, T, gr => {
            let wb = wt.typed::<T>("conv2d_backward_input")?;
            let total = b * g.in_len();
            if total == 0 || o == 0 || np == 0 {
                return Ok(self.make(self.dev.zeros::<T>(total)?, dims));
            }
            let mut dx = self.dev.alloc::<T>(total)?;
            let chunk = g.chunk(b);
            let mut dcol = self.dev.alloc::<T>(chunk * nk * np)?;
            let f = self.dev.function(k::COL2IM, T::DTYPE)?;
            let [ca, ha, wa, kha, kwa, oha, owa] = g.args();
            for s0 in (0..b).step_by(chunk) {
                let s = chunk.min(b - s0);
                let gm = RowMajor {
                    m: nk, n: np, k: o, at: true, bt: false, batch: s,
                    stride_a: 0, stride_b: o * np, stride_c: nk * np,
                };
                let gs = gr.slice(s0 * o * np..(s0 + s) * o * np);
                gemm_rm::<T, _, _, _>(&self.dev, gm, wb, &gs, &mut dcol)?;
                let mut dxs = dx.slice_mut(s0 * g.in_len()..(s0 + s) * g.in_len());
                launch!(self.dev, f, grid(s * g.in_len());
                    &dcol, &mut dxs, &u(s), &ca, &ha, &wa, &kha, &kwa, &oha, &owa)?;
            }
            Ok(self.make(dx, dims))
        })
    }

    /// `self = x: [B, C, H, W]`, `grad_out: [B, O, OH, OW]` → `∂L/∂w: [O, C, KH, KW]`.
    pub(crate) fn conv_backward_weight(
        &self,
        grad_out: &CudaStorage,
        kh: usize,
        kw: usize,
    ) -> Result<CudaStorage> {
        let (b, c, h, w) = (self.dims[0], self.dims[1], self.dims[2], self.dims[3]);
        let o = grad_out.dims[1];
        let g = Geom { c, h, w, kh, kw };
        let (nk, np) = (g.k(), g.out_plane());
        let dims = vec![o, c, kh, kw];
        each!(self, T, x => {
            let gr = grad_out.typed::<T>("conv2d_backward_weight")?;
            if b == 0 || o * nk == 0 || np == 0 {
                return Ok(self.make(self.dev.zeros::<T>(o * nk)?, dims));
            }
            let chunk = g.chunk(b);
            let mut col = self.dev.alloc::<T>(chunk * nk * np)?;
            let mut parts = self.dev.alloc::<T>(chunk * o * nk)?;
            let mut acc: Option<CudaSlice<T>> = None;
            for s0 in (0..b).step_by(chunk) {
                let s = chunk.min(b - s0);
                self.im2col(x, &g, s0, s, &mut col)?;
                let gm = RowMajor {
                    m: o, n: nk, k: np, at: false, bt: true, batch: s,
                    stride_a: o * np, stride_b: nk * np, stride_c: o * nk,
                };
                let gs = gr.slice(s0 * o * np..(s0 + s) * o * np);
                gemm_rm::<T, _, _, _>(&self.dev, gm, &gs, &col, &mut parts)?;
                // Σ over this chunk's samples, in sample order.
                let sum = self.sum_strided::<T>(&parts, 1, s, o * nk)?;
                acc = Some(match acc {
                    None => sum,
                    Some(prev) => self.add_slices::<T>(&prev, &sum, o * nk)?,
                });
            }
            let out = match acc {
                Some(a) => a,
                None => self.dev.zeros::<T>(o * nk)?,
            };
            Ok(self.make(out, dims))
        })
    }

    /// `a + b` over `n` elements (the elementwise kernel's `Add`).
    fn add_slices<T: Blas>(
        &self,
        a: &CudaSlice<T>,
        b: &CudaSlice<T>,
        n: usize,
    ) -> Result<CudaSlice<T>> {
        let mut out = self.dev.alloc::<T>(n)?;
        let f = self.dev.function(k::BINARY, T::DTYPE)?;
        let add = super::elementwise::binary_code(crate::BinaryOp::Add);
        launch!(self.dev, f, grid(n); a, b, &mut out, &u(n), &add)?;
        Ok(out)
    }
}
