//! 2-D convolution (stride 1, no padding) and 2×2 max-pooling, with their backward passes.

use crate::{Error, Result, Tensor};

impl Tensor {
    /// Cross-correlation of `x: [B, C, H, W]` with `w: [O, C, KH, KW]`, stride 1, no padding:
    /// `y[b,o,i,j] = Σ_{c,p,q} w[o,c,p,q] x[b,c,i+p,j+q]`, shape `[B, O, H−KH+1, W−KW+1]`.
    pub fn conv2d(&self, w: &Tensor) -> Result<Tensor> {
        let (_, c, h, wd) = self.dims4()?;
        let (_, wc, kh, kw) = w.dims4()?;
        if wc != c || kh == 0 || kw == 0 || kh > h || kw > wd {
            return Err(Error::ShapeMismatch {
                op: "conv2d",
                lhs: self.shape().to_vec(),
                rhs: w.shape().to_vec(),
            });
        }
        Ok(Tensor::from_storage(self.storage.conv2d(&w.storage)?))
    }

    /// Input gradient of [`Tensor::conv2d`]: `self` is `∂L/∂y: [B, O, OH, OW]`, the result is
    /// `∂L/∂x: [B, C, OH+KH−1, OW+KW−1]`.
    pub fn conv2d_backward_input(&self, w: &Tensor) -> Result<Tensor> {
        let (_, o, _, _) = self.dims4()?;
        let (wo, _, _, _) = w.dims4()?;
        if wo != o {
            return Err(Error::ShapeMismatch {
                op: "conv2d_backward_input",
                lhs: self.shape().to_vec(),
                rhs: w.shape().to_vec(),
            });
        }
        Ok(Tensor::from_storage(
            self.storage.conv2d_backward_input(&w.storage)?,
        ))
    }

    /// Weight gradient of [`Tensor::conv2d`]: `self` is the input `x`, `grad_out` is
    /// `∂L/∂y`; the result is `∂L/∂w: [O, C, KH, KW]`, summed over the batch in a fixed order.
    pub fn conv2d_backward_weight(
        &self,
        grad_out: &Tensor,
        kh: usize,
        kw: usize,
    ) -> Result<Tensor> {
        let (b, _, h, w) = self.dims4()?;
        let (gb, _, oh, ow) = grad_out.dims4()?;
        if gb != b || kh == 0 || kw == 0 || oh + kh - 1 != h || ow + kw - 1 != w {
            return Err(Error::ShapeMismatch {
                op: "conv2d_backward_weight",
                lhs: self.shape().to_vec(),
                rhs: grad_out.shape().to_vec(),
            });
        }
        Ok(Tensor::from_storage(self.storage.conv2d_backward_weight(
            &grad_out.storage,
            kh,
            kw,
        )?))
    }

    /// 2×2 max-pooling with stride 2 (odd sizes drop the last row/column, as PyTorch does).
    ///
    /// Returns the pooled tensor and the argmax: for each output, the offset of the maximum
    /// within its window, `2·dy + dx ∈ {0, 1, 2, 3}`, stored in the same dtype. Ties go to
    /// the first maximum in row-major order; NaN counts as the maximum.
    pub fn max_pool2d(&self) -> Result<(Tensor, Tensor)> {
        let (_, _, h, w) = self.dims4()?;
        if h < 2 || w < 2 {
            return Err(Error::InvalidArgument {
                op: "max_pool2d",
                reason: format!("input {:?} is smaller than the 2x2 window", self.shape()),
            });
        }
        let (y, idx) = self.storage.max_pool2d()?;
        Ok((Tensor::from_storage(y), Tensor::from_storage(idx)))
    }

    fn check_pool_pair(&self, argmax: &Tensor, op: &'static str) -> Result<()> {
        if self.shape() != argmax.shape() || self.rank() != 4 {
            return Err(Error::ShapeMismatch {
                op,
                lhs: self.shape().to_vec(),
                rhs: argmax.shape().to_vec(),
            });
        }
        Ok(())
    }

    /// Backward of [`Tensor::max_pool2d`]: routes `self = ∂L/∂y` to the argmax positions of an
    /// `in_h × in_w` input.
    pub fn max_pool2d_backward(&self, argmax: &Tensor, in_h: usize, in_w: usize) -> Result<Tensor> {
        self.check_pool_pair(argmax, "max_pool2d_backward")?;
        let (_, _, oh, ow) = self.dims4()?;
        if in_h / 2 != oh || in_w / 2 != ow {
            return Err(Error::InvalidArgument {
                op: "max_pool2d_backward",
                reason: format!("output {oh}x{ow} does not come from a {in_h}x{in_w} input"),
            });
        }
        Ok(Tensor::from_storage(self.storage.max_pool2d_backward(
            &argmax.storage,
            in_h,
            in_w,
        )?))
    }

    /// Picks `self[b, c, 2i+dy, 2j+dx]` at each stored argmax: the directional derivative of
    /// the pool along `self` (its R-operator).
    pub fn max_pool2d_gather(&self, argmax: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = self.dims4()?;
        let (ab, ac, oh, ow) = argmax.dims4()?;
        if (ab, ac, oh, ow) != (b, c, h / 2, w / 2) {
            return Err(Error::ShapeMismatch {
                op: "max_pool2d_gather",
                lhs: self.shape().to_vec(),
                rhs: argmax.shape().to_vec(),
            });
        }
        Ok(Tensor::from_storage(
            self.storage.max_pool2d_gather(&argmax.storage)?,
        ))
    }
}
