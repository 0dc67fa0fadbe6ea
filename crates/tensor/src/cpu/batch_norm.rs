//! Fused batch-normalisation passes over a row-major `[rows, cols]` buffer.
//!
//! Each kernel evaluates, element by element, the same expressions in the same order as
//! the chain of broadcasts, products and column sums it replaces (see
//! `ops::batch_norm`), so the results are the same bits; it only reads the big operands
//! once instead of once per op and writes no intermediate. Column sums run from zero down
//! the rows in order, as [`super::contiguous::column_sums`] does.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::contiguous::{CHUNK, SUM_COLS};
use super::elementwise::PAR_MIN;
use crate::Element;

/// Runs `each(c, cols)` for every block of [`SUM_COLS`] columns `cols` (block `c`), in
/// parallel when the buffer is large. `each` fills its block of each output.
fn column_blocks<T: Element, const K: usize>(
    cols: usize,
    len: usize,
    each: impl Fn(std::ops::Range<usize>, &mut [&mut [T]; K]) + Sync + Send,
) -> [Vec<T>; K] {
    let mut out: [Vec<T>; K] = std::array::from_fn(|_| vec![T::zero(); cols]);
    let blocks = cols.div_ceil(SUM_COLS);
    let run = |c: usize, outs: &mut [&mut [T]; K]| {
        let range = c * SUM_COLS..(c * SUM_COLS + SUM_COLS).min(cols);
        each(range, outs);
    };
    // Split every output into its blocks, one task per block.
    let mut per_block: Vec<[&mut [T]; K]> = Vec::with_capacity(blocks);
    let mut rests: [&mut [T]; K] = out.each_mut().map(|v| v.as_mut_slice());
    for c in 0..blocks {
        let n = (cols - c * SUM_COLS).min(SUM_COLS);
        let heads = rests.each_mut().map(|r| {
            let (h, t) = std::mem::take(r).split_at_mut(n);
            *r = t;
            h
        });
        per_block.push(heads);
    }
    if len >= PAR_MIN {
        per_block
            .par_iter_mut()
            .enumerate()
            .for_each(|(c, outs)| run(c, outs));
    } else {
        for (c, outs) in per_block.iter_mut().enumerate() {
            run(c, outs);
        }
    }
    out
}

/// `Σ_r (x[r, j] − mean[j])²` per column `j`.
pub(crate) fn centred_sq_col_sums<T: Element>(x: &[T], mean: &[T]) -> Vec<T> {
    let cols = mean.len();
    let [sums] = column_blocks::<T, 1>(cols, x.len(), |range, [acc]| {
        let m = &mean[range.clone()];
        for row in x.chunks_exact(cols) {
            for ((a, &v), &mu) in acc.iter_mut().zip(&row[range.clone()]).zip(m) {
                let d = v - mu;
                *a += d * d;
            }
        }
    });
    sums
}

/// Per column `j`: `Σ γ g`, `Σ x̂ (γ g)`, `Σ g x̂` and `Σ g` over the rows, with
/// `g = grad[r, j]`, `x̂ = xhat[r, j]`, `γ = gamma[j]`.
pub(crate) fn backward_sums<T: Element>(grad: &[T], xhat: &[T], gamma: &[T]) -> [Vec<T>; 4] {
    let cols = gamma.len();
    column_blocks::<T, 4>(cols, grad.len(), |range, [su, sxu, sgx, sg]| {
        let gm = &gamma[range.clone()];
        for (grow, xrow) in grad.chunks_exact(cols).zip(xhat.chunks_exact(cols)) {
            let (g, xh) = (&grow[range.clone()], &xrow[range.clone()]);
            for j in 0..gm.len() {
                let u = g[j] * gm[j];
                su[j] += u;
                sxu[j] += xh[j] * u;
                sgx[j] += g[j] * xh[j];
                sg[j] += g[j];
            }
        }
    })
}

/// A chunk of an output that is being filled.
type Out<'a, T> = &'a mut [MaybeUninit<T>];

/// Rows per parallel task of a row-wise pass over `cols` columns.
fn rows_per_task(cols: usize) -> usize {
    (CHUNK / cols.max(1)).max(1)
}

/// Uninitialised room for `n` elements.
fn room<T>(n: usize) -> Vec<T> {
    Vec::with_capacity(n)
}

/// # Safety
/// Every one of the first `n` slots of `v` must have been written.
unsafe fn filled<T>(mut v: Vec<T>, n: usize) -> Vec<T> {
    // SAFETY: the caller has written the first `n` slots.
    unsafe { v.set_len(n) };
    v
}

/// `x̂ = (x − mean) ⊙ inv_std` and `y = x̂ ⊙ γ + β`, each vector running along the columns.
pub(crate) fn normalise<T: Element>(
    x: &[T],
    mean: &[T],
    inv_std: &[T],
    gamma: &[T],
    beta: &[T],
) -> (Vec<T>, Vec<T>) {
    let (n, cols) = (x.len(), mean.len());
    let (mut xhat, mut y) = (room::<T>(n), room::<T>(n));
    let row = |xr: &[T], hr: &mut [MaybeUninit<T>], yr: &mut [MaybeUninit<T>]| {
        for j in 0..cols {
            let h = (xr[j] - mean[j]) * inv_std[j];
            hr[j].write(h);
            yr[j].write(h * gamma[j] + beta[j]);
        }
    };
    let task = |(xs, (hs, ys)): (&[T], (Out<'_, T>, Out<'_, T>))| {
        for ((xr, hr), yr) in xs
            .chunks_exact(cols)
            .zip(hs.chunks_exact_mut(cols))
            .zip(ys.chunks_exact_mut(cols))
        {
            row(xr, hr, yr);
        }
    };
    let step = rows_per_task(cols) * cols;
    let (hs, ys) = (
        &mut xhat.spare_capacity_mut()[..n],
        &mut y.spare_capacity_mut()[..n],
    );
    if n >= PAR_MIN {
        x.par_chunks(step)
            .zip(hs.par_chunks_mut(step).zip(ys.par_chunks_mut(step)))
            .for_each(task);
    } else {
        task((x, (hs, ys)));
    }
    // SAFETY: the chunks cover `0..n` in whole rows, and `row` writes every slot of a row.
    unsafe { (filled(xhat, n), filled(y, n)) }
}

/// `((γ g − mean_u) − x̂ ⊙ mean_xu) ⊙ inv_std`, each vector running along the columns.
pub(crate) fn project<T: Element>(
    grad: &[T],
    gamma: &[T],
    mean_u: &[T],
    xhat: &[T],
    mean_xu: &[T],
    inv_std: &[T],
) -> Vec<T> {
    let (n, cols) = (grad.len(), gamma.len());
    let mut out = room::<T>(n);
    let task = |(gs, (xs, os)): (&[T], (&[T], Out<'_, T>))| {
        for ((gr, xr), or) in gs
            .chunks_exact(cols)
            .zip(xs.chunks_exact(cols))
            .zip(os.chunks_exact_mut(cols))
        {
            for j in 0..cols {
                let centred = gr[j] * gamma[j] - mean_u[j];
                or[j].write((centred - xr[j] * mean_xu[j]) * inv_std[j]);
            }
        }
    };
    let step = rows_per_task(cols) * cols;
    let os = &mut out.spare_capacity_mut()[..n];
    if n >= PAR_MIN {
        grad.par_chunks(step)
            .zip(xhat.par_chunks(step).zip(os.par_chunks_mut(step)))
            .for_each(task);
    } else {
        task((grad, (xhat, os)));
    }
    // SAFETY: the chunks cover `0..n` in whole rows, and the loop writes every slot.
    unsafe { filled(out, n) }
}
