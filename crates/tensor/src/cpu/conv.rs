//! 2-D convolution kernels (cross-correlation, like PyTorch's `conv2d`) on the CPU:
//! stride 1, no padding, no dilation, any kernel size `KH × KW`, NCHW layout.
//!
//! Shapes, with `OH = H - KH + 1` and `OW = W - KW + 1`:
//!
//! * forward, [`conv2d`]: `x: [B, C, H, W]`, `w: [O, C, KH, KW]` → `y: [B, O, OH, OW]`,
//!   `y[b,o,i,j] = Σ_{c,p,q} w[o,c,p,q] · x[b,c,i+p,j+q]`;
//! * input gradient, [`conv2d_backward_input`]: `g = dL/dy: [B, O, OH, OW]`, `w` →
//!   `dL/dx: [B, C, OH+KH-1, OW+KW-1]`, `dx[b,c,r,s] = Σ_{o,p,q} w[o,c,p,q] · g[b,o,r-p,s-q]`
//!   over the terms with `0 ≤ r-p < OH`, `0 ≤ s-q < OW` (the adjoint of the forward map in
//!   `x`);
//! * weight gradient, [`conv2d_backward_weight`]: `x`, `g` → `dL/dw: [O, C, KH, KW]`,
//!   `dw[o,c,p,q] = Σ_{b,i,j} g[b,o,i,j] · x[b,c,i+p,j+q]` (the adjoint in `w`).
//!
//! Method: im2col + GEMM (faer, sequential) per chunk of samples; the chunks run in parallel
//! with rayon. The patch matrix uses a *row-padded* column layout: for one sample, column
//! `n ∈ [0, NP)`, `NP = (OH-1)·W + OW`, stands for the output position `(n / W, n % W)`, and
//! `col[(c,p,q), n] = x[c, p·W + q + n]` (flat index into the `H × W` plane). So each patch row
//! is one contiguous copy of the input plane, and col2im is one contiguous add per row, instead
//! of `OH` short copies of `OW` floats. The columns with `n % W ≥ OW` (the gaps, `W-OW` per
//! output row) are padding: their forward outputs are dropped, and in the two backward passes
//! they are set to zero, so they contribute exact zeros (also for non-finite inputs). Then
//! `y = W · col` (`W: [O, C·KH·KW]`), `dcol = Wᵀ · g` followed by col2im (scatter-add), and
//! `dW = g · colᵀ`. A chunk puts the patch matrices of its samples side by side
//! (`[C·KH·KW, S·NP]`), so each GEMM is large while the buffers stay bounded (about
//! `COL_TARGET` floats per chunk, never the whole batch).
//!
//! Determinism: the chunking depends only on the shapes, never on the number of threads or on
//! work stealing. Forward and input gradient write disjoint outputs per chunk. The weight
//! gradient (a sum over the batch) computes one partial sum per fixed chunk of
//! `WGRAD_CHUNK` samples in parallel and adds the partials sequentially in chunk order, so
//! equal inputs give equal bits whatever the thread count.
//!
//! Inputs may be arbitrary strided views; non-standard layouts are copied to standard layout
//! first. Shape mismatches are programmer errors (the tensor layer validates shapes first)
//! and panic with a message.

use faer::{Accum, MatMut, MatRef, Par};
use ndarray::{Array4, ArrayView4};
use rayon::prelude::*;

use crate::Element;
use crate::conv_geometry::ConvGeometry as Geom;

/// Target size, in floats, of one chunk's patch matrix plus GEMM operand (512 KiB: in L2).
const COL_TARGET: usize = 1 << 17;
/// Upper bound on the samples per chunk for the forward and input-gradient passes.
const MAX_CHUNK: usize = 64;
/// Samples per partial sum of the weight gradient (fixed, so the reduction order is fixed).
const WGRAD_CHUNK: usize = 32;

/// Samples per chunk so that the chunk's `per_sample`-float buffers total about
/// `COL_TARGET` floats; depends only on the shapes.
fn chunk_samples(per_sample: usize, max: usize) -> usize {
    (COL_TARGET / per_sample.max(1)).clamp(1, max)
}

/// A borrowed dense matrix over a slice: element `(i, j)` lives at `data[i * rs + j * cs]`.
#[derive(Clone, Copy, Debug)]
struct Mat<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a, T> Mat<'a, T> {
    fn new(data: &'a [T], rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            rs,
            cs,
        }
    }
}

/// Index one past the last element a `rows × cols` matrix with strides `rs`, `cs` touches.
fn extent(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * rs + (cols - 1) * cs + 1
    }
}

/// `dst (← or +=) a · b`, with `dst` the `a.rows × b.cols` matrix over `dst` with strides
/// `(drs, dcs)`. Sequential faer GEMM; the extents are checked, which makes the raw views sound.
fn gemm<T: Element>(
    dst: &mut [T],
    drs: usize,
    dcs: usize,
    accum: Accum,
    a: Mat<'_, T>,
    b: Mat<'_, T>,
) {
    assert_eq!(a.cols, b.rows, "gemm: inner dimensions differ");
    let (m, n, k) = (a.rows, b.cols, a.cols);
    assert!(
        extent(m, n, drs, dcs) <= dst.len(),
        "gemm: dst out of bounds"
    );
    assert!(
        extent(m, k, a.rs, a.cs) <= a.data.len(),
        "gemm: lhs out of bounds"
    );
    assert!(
        extent(k, n, b.rs, b.cs) <= b.data.len(),
        "gemm: rhs out of bounds"
    );
    let s = |v: usize| isize::try_from(v).expect("stride overflows isize");
    // SAFETY: the pointers come from live slices (non-null even when empty), every element the
    // views can reach lies inside its slice (checked above), `dst` is borrowed mutably, so it
    // aliases neither operand, and the operands are only read.
    unsafe {
        let d = MatMut::from_raw_parts_mut(dst.as_mut_ptr(), m, n, s(drs), s(dcs));
        let l = MatRef::from_raw_parts(a.data.as_ptr(), m, k, s(a.rs), s(a.cs));
        let r = MatRef::from_raw_parts(b.data.as_ptr(), k, n, s(b.rs), s(b.cs));
        faer::linalg::matmul::matmul(d, accum, l, r, T::one(), Par::Seq);
    }
}

/// `dst.copy_from_slice(src)` for short rows (`OW` floats, 11 or 26 in the paper's layers), as
/// fixed-size 8-float moves instead of a `memcpy` call per row.
#[inline(always)]
fn copy_row<T: Element>(dst: &mut [T], src: &[T]) {
    const L: usize = 8;
    let n = dst.len();
    assert_eq!(n, src.len());
    if n < L {
        dst.copy_from_slice(src);
        return;
    }
    let mut i = 0;
    while i + L <= n {
        dst[i..i + L].copy_from_slice(&src[i..i + L]);
        i += L;
    }
    if i < n {
        // The last, partial block: an overlapping move of the final L floats.
        dst[n - L..].copy_from_slice(&src[n - L..]);
    }
}

/// `dst += src` elementwise, in fixed 8-float blocks (kept in vector registers) and a tail.
#[inline(always)]
fn add_assign<T: Element>(dst: &mut [T], src: &[T]) {
    const L: usize = 8;
    assert_eq!(dst.len(), src.len());
    let mut d = dst.chunks_exact_mut(L);
    let mut s = src.chunks_exact(L);
    for (db, sb) in (&mut d).zip(&mut s) {
        let sum: [T; L] = std::array::from_fn(|k| db[k] + sb[k]);
        db.copy_from_slice(&sum);
    }
    for (a, b) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *a += *b;
    }
}

/// `dst.fill(0.0)` for the short gaps (`KW-1` floats) of the padded layout, with fixed-size
/// stores instead of a `memset` call per gap.
#[inline(always)]
fn zero_short<T: Element>(dst: &mut [T]) {
    let z = [T::zero(); 8];
    let mut blocks = dst.chunks_exact_mut(8);
    for b in &mut blocks {
        b.copy_from_slice(&z);
    }
    // Constant-length copies per remainder length (a loop would become a `memset` call).
    let rest = blocks.into_remainder();
    match rest.len() {
        0 => {}
        1 => rest.copy_from_slice(&z[..1]),
        2 => rest.copy_from_slice(&z[..2]),
        3 => rest.copy_from_slice(&z[..3]),
        4 => rest.copy_from_slice(&z[..4]),
        5 => rest.copy_from_slice(&z[..5]),
        6 => rest.copy_from_slice(&z[..6]),
        _ => rest.copy_from_slice(&z[..7]),
    }
}

/// Resizes a scratch buffer (contents unspecified afterwards; callers overwrite what they read).
fn scratch<T: Element>(buf: &mut Vec<T>, len: usize) -> &mut [T] {
    if buf.len() < len {
        buf.resize(len, T::zero());
    }
    &mut buf[..len]
}

impl Geom {
    /// Row-padded columns per sample, `NP = (OH-1)·W + OW` (see the module docs).
    fn np(&self) -> usize {
        (self.oh() - 1) * self.w + self.ow()
    }

    /// Zeroes the gaps of one padded row `cols` (`NP` floats): after each of the first `OH-1`
    /// output rows, the `W-OW` columns that follow it.
    #[inline(always)]
    fn zero_gaps<T: Element>(&self, cols: &mut [T]) {
        let ow = self.ow();
        if ow < self.w {
            for out_row in cols.chunks_exact_mut(self.w) {
                zero_short(&mut out_row[ow..]);
            }
        }
    }

    /// Writes the patches of one sample `x: [C, H, W]` into columns `off .. off + NP` of the
    /// row-major patch matrix `col` (row stride `ld`). The gap columns get input values, or
    /// zeros when `zero_gaps`.
    fn im2col<T: Element>(&self, x: &[T], col: &mut [T], ld: usize, off: usize, zero_gaps: bool) {
        let (np, hw) = (self.np(), self.h * self.w);
        let mut row = 0;
        for plane in x.chunks_exact(hw) {
            for p in 0..self.kh {
                for q in 0..self.kw {
                    let start = p * self.w + q;
                    let dst = &mut col[row * ld + off..row * ld + off + np];
                    dst.copy_from_slice(&plane[start..start + np]);
                    if zero_gaps {
                        self.zero_gaps(dst);
                    }
                    row += 1;
                }
            }
        }
    }

    /// Adds columns `off .. off + NP` of the row-major patch gradient `dcol` (row stride `ld`)
    /// onto one sample `dx: [C, H, W]`: the adjoint of `im2col`. The gap columns of `dcol` are
    /// zeroed first (they are zero already for finite weights, as the gradient's gaps are), so
    /// they add exact zeros.
    fn col2im<T: Element>(&self, dcol: &mut [T], ld: usize, off: usize, dx: &mut [T]) {
        let (np, hw) = (self.np(), self.h * self.w);
        let mut row = 0;
        for plane in dx.chunks_exact_mut(hw) {
            for p in 0..self.kh {
                for q in 0..self.kw {
                    let start = p * self.w + q;
                    let src = &mut dcol[row * ld + off..row * ld + off + np];
                    self.zero_gaps(src);
                    add_assign(&mut plane[start..start + np], src);
                    row += 1;
                }
            }
        }
    }

    /// Copies output-shaped planes `g: [S, O, OH·OW]` into the padded matrix
    /// `buf: [O, S·NP]` (sample `s` in columns `s·NP ..`), with zero gaps.
    fn gather<T: Element>(&self, g: &[T], o: usize, buf: &mut [T]) {
        let (ow, w, np, plane) = (self.ow(), self.w, self.np(), self.out_plane());
        let n = g.len() / (o * plane) * np;
        for (s, gs) in g.chunks_exact(o * plane).enumerate() {
            for (oi, src) in gs.chunks_exact(plane).enumerate() {
                let dst = &mut buf[oi * n + s * np..oi * n + (s + 1) * np];
                for (i, srow) in src.chunks_exact(ow).enumerate() {
                    copy_row(&mut dst[i * w..i * w + ow], srow);
                }
                self.zero_gaps(dst);
            }
        }
    }

    /// The inverse of `gather`, dropping the gaps: `buf: [O, S·NP]` → `y: [S, O, OH·OW]`.
    fn scatter<T: Element>(&self, buf: &[T], o: usize, y: &mut [T]) {
        let (ow, w, np, plane) = (self.ow(), self.w, self.np(), self.out_plane());
        let n = y.len() / (o * plane) * np;
        for (s, ys) in y.chunks_exact_mut(o * plane).enumerate() {
            for (oi, dst) in ys.chunks_exact_mut(plane).enumerate() {
                let src = &buf[oi * n + s * np..oi * n + (s + 1) * np];
                for (i, drow) in dst.chunks_exact_mut(ow).enumerate() {
                    copy_row(drow, &src[i * w..i * w + ow]);
                }
            }
        }
    }
}

/// Forward convolution (cross-correlation), stride 1, no padding.
///
/// x: [B, C, H, W], w: [O, C, KH, KW] -> y: [B, O, H-KH+1, W-KW+1];
/// y[b,o,i,j] = Σ_{c,p,q} w[o,c,p,q]·x[b,c,i+p,j+q]
#[track_caller]
pub(crate) fn conv2d<T: Element>(x: ArrayView4<T>, w: ArrayView4<T>) -> Array4<T> {
    let (b, c, h, wd) = x.dim();
    let (o, wc, kh, kw) = w.dim();
    assert_eq!(
        c, wc,
        "conv2d: input has {c} channels but the kernel expects {wc}"
    );
    assert!(kh >= 1 && kw >= 1, "conv2d: empty kernel {kh}×{kw}");
    assert!(
        kh <= h && kw <= wd,
        "conv2d: kernel {kh}×{kw} larger than the input {h}×{wd}"
    );
    let g = Geom {
        c,
        h,
        w: wd,
        kh,
        kw,
    };
    let (k, np) = (g.k(), g.np());
    let mut y = Array4::<T>::zeros((b, o, g.oh(), g.ow()));
    if y.is_empty() || k == 0 {
        return y;
    }
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("standard layout");
    let w = w.as_standard_layout();
    let wm = Mat::new(w.as_slice().expect("standard layout"), o, k, k, 1);
    let ys = y.as_slice_mut().expect("fresh array");
    let s = chunk_samples((k + o) * np, MAX_CHUNK);
    ys.par_chunks_mut(s * o * g.out_plane())
        .zip(xs.par_chunks(s * g.in_len()))
        .for_each_init(
            || (Vec::new(), Vec::new()),
            |(colbuf, outbuf), (yc, xc)| {
                let n = xc.len() / g.in_len() * np;
                let col = scratch(colbuf, k * n);
                for (si, xsamp) in xc.chunks_exact(g.in_len()).enumerate() {
                    g.im2col(xsamp, col, n, si * np, false);
                }
                let out = scratch(outbuf, o * n);
                let cm = Mat::new(col, k, n, n, 1);
                gemm(out, n, 1, Accum::Replace, wm, cm);
                g.scatter(out, o, yc);
            },
        );
    y
}

/// Gradient of [`conv2d`] with respect to its input.
///
/// dL/dx given dL/dy: [B, O, OH, OW] and w: [O, C, KH, KW] -> [B, C, OH+KH-1, OW+KW-1]
#[track_caller]
pub(crate) fn conv2d_backward_input<T: Element>(
    grad_out: ArrayView4<T>,
    w: ArrayView4<T>,
) -> Array4<T> {
    let (b, o, oh, ow) = grad_out.dim();
    let (wo, c, kh, kw) = w.dim();
    assert_eq!(
        o, wo,
        "conv2d_backward_input: grad_out has {o} channels, the kernel {wo}"
    );
    assert!(
        kh >= 1 && kw >= 1,
        "conv2d_backward_input: empty kernel {kh}×{kw}"
    );
    let g = Geom {
        c,
        h: oh + kh - 1,
        w: ow + kw - 1,
        kh,
        kw,
    };
    let mut dx = Array4::<T>::zeros((b, c, g.h, g.w));
    if dx.is_empty() || grad_out.is_empty() {
        return dx;
    }
    let (k, np) = (g.k(), g.np());
    let go = grad_out.as_standard_layout();
    let gs = go.as_slice().expect("standard layout");
    let w = w.as_standard_layout();
    // Wᵀ: [C·KH·KW, O], element (r, o) at o·K + r.
    let wt = Mat::new(w.as_slice().expect("standard layout"), k, o, 1, k);
    let dxs = dx.as_slice_mut().expect("fresh array");
    let s = chunk_samples((k + o) * np, MAX_CHUNK);
    dxs.par_chunks_mut(s * g.in_len())
        .zip(gs.par_chunks(s * o * g.out_plane()))
        .for_each_init(
            || (Vec::new(), Vec::new()),
            |(gbuf, colbuf), (dxc, gc)| {
                let ns = dxc.len() / g.in_len();
                let n = ns * np;
                let gm = scratch(gbuf, o * n);
                g.gather(gc, o, gm);
                let dcol = scratch(colbuf, k * n);
                let gmat = Mat::new(gm, o, n, n, 1);
                gemm(dcol, n, 1, Accum::Replace, wt, gmat);
                // Write before col2im reads: a first read of the fresh (calloc'd) output would
                // map the shared zero page, and the following write would then take a
                // copy-on-write fault with a TLB shootdown across threads.
                dxc.fill(T::zero());
                for (si, dxsamp) in dxc.chunks_exact_mut(g.in_len()).enumerate() {
                    g.col2im(dcol, n, si * np, dxsamp);
                }
            },
        );
    dx
}

/// Gradient of [`conv2d`] with respect to its kernel.
///
/// dL/dw given x: [B, C, H, W] and dL/dy: [B, O, H-KH+1, W-KW+1] -> [O, C, KH, KW]
#[track_caller]
pub(crate) fn conv2d_backward_weight<T: Element>(
    x: ArrayView4<T>,
    grad_out: ArrayView4<T>,
    kh: usize,
    kw: usize,
) -> Array4<T> {
    let (b, c, h, wd) = x.dim();
    let (gb, o, oh, ow) = grad_out.dim();
    assert_eq!(
        b, gb,
        "conv2d_backward_weight: batch {b} of x differs from {gb} of grad_out"
    );
    assert!(
        kh >= 1 && kw >= 1,
        "conv2d_backward_weight: empty kernel {kh}×{kw}"
    );
    assert!(
        kh <= h && kw <= wd,
        "conv2d_backward_weight: kernel {kh}×{kw} larger than the input {h}×{wd}"
    );
    let g = Geom {
        c,
        h,
        w: wd,
        kh,
        kw,
    };
    assert!(
        (oh, ow) == (g.oh(), g.ow()),
        "conv2d_backward_weight: grad_out is {oh}×{ow}, expected {}×{}",
        g.oh(),
        g.ow()
    );
    let (k, np) = (g.k(), g.np());
    let mut dw = Array4::<T>::zeros((o, c, kh, kw));
    if dw.is_empty() || b == 0 {
        return dw;
    }
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("standard layout");
    let go = grad_out.as_standard_layout();
    let gs = go.as_slice().expect("standard layout");
    // Within a fixed chunk of WGRAD_CHUNK samples, sub-blocks of `sub` samples are accumulated
    // sequentially; everything here depends on the shapes only.
    let sub = chunk_samples((k + o) * np, WGRAD_CHUNK);
    let partials: Vec<Vec<T>> = xs
        .par_chunks(WGRAD_CHUNK * g.in_len())
        .zip(gs.par_chunks(WGRAD_CHUNK * o * g.out_plane()))
        .map_init(
            || (Vec::new(), Vec::new()),
            |(colbuf, gbuf), (xc, gc)| {
                let mut part = vec![T::zero(); o * k];
                let blocks = xc
                    .chunks(sub * g.in_len())
                    .zip(gc.chunks(sub * o * g.out_plane()));
                for (bi, (xb, gblk)) in blocks.enumerate() {
                    let ns = xb.len() / g.in_len();
                    let n = ns * np;
                    let col = scratch(colbuf, k * n);
                    // Zero gaps (not input values), so that non-finite inputs stay exact.
                    for (si, xsamp) in xb.chunks_exact(g.in_len()).enumerate() {
                        g.im2col(xsamp, col, n, si * np, true);
                    }
                    let gm = scratch(gbuf, o * n);
                    g.gather(gblk, o, gm);
                    let accum = if bi == 0 { Accum::Replace } else { Accum::Add };
                    let gmat = Mat::new(gm, o, n, n, 1);
                    // colᵀ: [S·NP, K], element (j, r) at r·n + j.
                    let colt = Mat::new(col, n, k, 1, n);
                    gemm(&mut part, k, 1, accum, gmat, colt);
                }
                part
            },
        )
        .collect();
    let dws = dw.as_slice_mut().expect("fresh array");
    for part in &partials {
        add_assign(dws, part);
    }
    dw
}

#[cfg(test)]
mod tests;
