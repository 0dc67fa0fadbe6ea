//! Temporary naive pool (to be replaced).
use crate::Element;
use ndarray::{Array4, ArrayView4};
pub(crate) fn max_pool2d<T: Element>(x: ArrayView4<T>) -> (Array4<T>, Array4<T>) {
    let (b, c, h, w) = x.dim();
    let mut y = Array4::zeros((b, c, h / 2, w / 2));
    let mut a = y.clone();
    for ((n, ch, i, j), v) in y.indexed_iter_mut() {
        let mut best = 0;
        let mut m = x[[n, ch, 2 * i, 2 * j]];
        for k in 1..4 {
            let z = x[[n, ch, 2 * i + k / 2, 2 * j + k % 2]];
            if z > m || z.is_nan() {
                m = z;
                best = k;
            }
        }
        *v = m;
        a[[n, ch, i, j]] = T::of_f64(best as f64);
    }
    (y, a)
}
pub(crate) fn max_pool2d_backward<T: Element>(
    g: ArrayView4<T>,
    a: ArrayView4<T>,
    in_h: usize,
    in_w: usize,
) -> Array4<T> {
    let (b, c, _, _) = g.dim();
    let mut dx = Array4::zeros((b, c, in_h, in_w));
    for ((n, ch, i, j), &v) in g.indexed_iter() {
        let k = a[[n, ch, i, j]].as_f64() as usize;
        dx[[n, ch, 2 * i + k / 2, 2 * j + k % 2]] += v;
    }
    dx
}
pub(crate) fn max_pool2d_gather<T: Element>(t: ArrayView4<T>, a: ArrayView4<T>) -> Array4<T> {
    Array4::from_shape_fn(a.dim(), |(n, ch, i, j)| {
        let k = a[[n, ch, i, j]].as_f64() as usize;
        t[[n, ch, 2 * i + k / 2, 2 * j + k % 2]]
    })
}
