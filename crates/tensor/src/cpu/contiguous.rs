//! Elementwise kernels on contiguous (row-major) buffers: the fast path of
//! [`super::elementwise`].
//!
//! ndarray's `Zip` over dynamic-rank arrays pays an index computation per element and, for
//! a broadcast operand, walks the strided path; these loops run over plain slices instead,
//! so the closure is inlined and the loop vectorised. Each output element is written
//! exactly once by the same expression as on the general path, so the results are the
//! same bits; only the speed differs.

use std::mem::MaybeUninit;

use ndarray::{ArcArray, IxDyn};
use rayon::prelude::*;

use crate::Element;

use super::elementwise::PAR_MIN;

/// Elements per parallel task.
pub(crate) const CHUNK: usize = 1 << 14;

/// A `shape`-shaped array whose chunk starting at flat index `start` is written by
/// `fill(start, chunk)`, in parallel when it is large. `fill` must write every slot of its
/// chunk.
fn filled<T: Element>(
    shape: &[usize],
    fill: impl Fn(usize, &mut [MaybeUninit<T>]) + Sync + Send,
) -> ArcArray<T, IxDyn> {
    let n: usize = shape.iter().product();
    let mut buf: Vec<T> = Vec::with_capacity(n);
    let out = &mut buf.spare_capacity_mut()[..n];
    if n >= PAR_MIN {
        out.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(c, chunk)| fill(c * CHUNK, chunk));
    } else {
        fill(0, out);
    }
    // SAFETY: every caller's `fill` writes each slot of the chunk it is given, and the
    // chunks cover `0..n`, so the first `n` elements are initialised.
    unsafe { buf.set_len(n) };
    ArcArray::from_shape_vec(IxDyn(shape), buf).expect("the buffer has the shape's length")
}

/// `f(a[i])` of a contiguous `a`.
pub(crate) fn map<T: Element>(
    shape: &[usize],
    a: &[T],
    f: impl Fn(T) -> T + Sync + Send,
) -> ArcArray<T, IxDyn> {
    filled(shape, |start, out| {
        for (o, &x) in out.iter_mut().zip(&a[start..]) {
            o.write(f(x));
        }
    })
}

/// `f(a[i], b[i])` of two contiguous operands of one shape.
pub(crate) fn zip<T: Element>(
    shape: &[usize],
    a: &[T],
    b: &[T],
    f: impl Fn(T, T) -> T + Sync + Send,
) -> ArcArray<T, IxDyn> {
    filled(shape, |start, out| {
        for ((o, &x), &y) in out.iter_mut().zip(&a[start..]).zip(&b[start..]) {
            o.write(f(x, y));
        }
    })
}

/// `f(a[…, j, …], v[j])` of a contiguous `a` whose axis `axis` has `v.len()` entries.
pub(crate) fn along<T: Element>(
    shape: &[usize],
    axis: usize,
    a: &[T],
    v: &[T],
    f: impl Fn(T, T) -> T + Sync + Send,
) -> ArcArray<T, IxDyn> {
    let len = v.len();
    let inner: usize = shape[axis + 1..].iter().product();
    filled(shape, |start, out| {
        let end = start + out.len();
        let mut i = start;
        while i < end {
            let (o, x) = (&mut out[i - start..], &a[i..end]);
            if inner == 1 {
                // A run of consecutive `j` along the last axis: zip with `v`.
                let j = i % len;
                let run = (len - j).min(end - i);
                for ((o, &x), &y) in o[..run].iter_mut().zip(&x[..run]).zip(&v[j..]) {
                    o.write(f(x, y));
                }
                i += run;
            } else {
                // A run of one `j`: every element meets the same `v[j]`.
                let (j, k) = ((i / inner) % len, i % inner);
                let run = (inner - k).min(end - i);
                let y = v[j];
                for (o, &x) in o[..run].iter_mut().zip(&x[..run]) {
                    o.write(f(x, y));
                }
                i += run;
            }
        }
    })
}

/// Columns per parallel task of [`column_sums`] (their partial sums stay in L1).
pub(crate) const SUM_COLS: usize = 256;

/// The column sums of a row-major `[rows, cols]` buffer, as a `[cols]` array.
///
/// Each column is summed from `0` down its rows in order, exactly as ndarray's `sum_axis`
/// over the outer axis does (`res = res + row`, row by row), so the bits are the same; the
/// columns are split across threads, which changes nothing in any column's order.
pub(crate) fn column_sums<T: Element>(x: &[T], cols: usize) -> ArcArray<T, IxDyn> {
    let mut out = vec![T::zero(); cols];
    out.par_chunks_mut(SUM_COLS)
        .enumerate()
        .for_each(|(c, acc)| {
            let cols_here = c * SUM_COLS..c * SUM_COLS + acc.len();
            for row in x.chunks_exact(cols) {
                for (a, &v) in acc.iter_mut().zip(&row[cols_here.clone()]) {
                    *a += v;
                }
            }
        });
    ArcArray::from_shape_vec(IxDyn(&[cols]), out).expect("one sum per column")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn along_matches_an_indexed_loop_on_every_axis_and_across_chunk_edges() {
        // Sizes that straddle CHUNK and PAR_MIN, so runs cross chunk boundaries.
        for shape in [
            vec![3, 5],
            vec![2, 3, 4],
            vec![7, 3, 1 << 12],
            vec![5, 1 << 13, 3],
        ] {
            let n: usize = shape.iter().product();
            let a: Vec<f64> = (0..n).map(|i| i as f64 * 0.5).collect();
            for axis in 0..shape.len() {
                let len = shape[axis];
                let v: Vec<f64> = (0..len).map(|j| 1000.0 * j as f64).collect();
                let inner: usize = shape[axis + 1..].iter().product();
                let got = along(&shape, axis, &a, &v, |x, y| x + y);
                let want: Vec<f64> = (0..n).map(|i| a[i] + v[(i / inner) % len]).collect();
                assert_eq!(
                    got.as_slice().unwrap(),
                    want.as_slice(),
                    "{shape:?} axis {axis}"
                );
            }
        }
    }

    #[test]
    fn map_and_zip_write_every_element_once() {
        let n = 3 * CHUNK + 17;
        let a: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let b: Vec<f32> = (0..n).map(|i| 2.0 * i as f32).collect();
        let m = map(&[n], &a, |x| x + 1.0);
        let z = zip(&[n], &a, &b, |x, y| y - x);
        for i in 0..n {
            assert_eq!(m[i], a[i] + 1.0);
            assert_eq!(z[i], a[i]);
        }
    }
}
