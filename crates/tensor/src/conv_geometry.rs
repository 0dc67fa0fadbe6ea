//! The geometry of one valid (unpadded, stride-1) convolution, shared by the CPU and CUDA
//! kernels; each backend adds its own layout helpers in its own `impl` block.

/// Input `[C, H, W]` per sample and a `KH × KW` kernel, `KH ≤ H`, `KW ≤ W`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvGeometry {
    pub(crate) c: usize,
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) kh: usize,
    pub(crate) kw: usize,
}

impl ConvGeometry {
    /// Output height `H − KH + 1`.
    pub(crate) fn oh(&self) -> usize {
        self.h + 1 - self.kh
    }
    /// Output width `W − KW + 1`.
    pub(crate) fn ow(&self) -> usize {
        self.w + 1 - self.kw
    }
    /// Rows of the patch matrix, `C·KH·KW`.
    pub(crate) fn k(&self) -> usize {
        self.c * self.kh * self.kw
    }
    /// Elements of one input sample, `C·H·W`.
    pub(crate) fn in_len(&self) -> usize {
        self.c * self.h * self.w
    }
    /// Output positions per channel, `OH·OW`.
    pub(crate) fn out_plane(&self) -> usize {
        self.oh() * self.ow()
    }
}
