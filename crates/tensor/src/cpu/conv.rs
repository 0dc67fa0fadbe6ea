//! Temporary naive conv (to be replaced).
use crate::Element;
use ndarray::{Array4, ArrayView4};
pub(crate) fn conv2d<T: Element>(x: ArrayView4<T>, w: ArrayView4<T>) -> Array4<T> {
    let (b, c, h, wd) = x.dim();
    let (o, _, kh, kw) = w.dim();
    Array4::from_shape_fn((b, o, h - kh + 1, wd - kw + 1), |(n, oc, i, j)| {
        let mut s = T::zero();
        for ci in 0..c {
            for p in 0..kh {
                for q in 0..kw {
                    s += w[[oc, ci, p, q]] * x[[n, ci, i + p, j + q]];
                }
            }
        }
        s
    })
}
pub(crate) fn conv2d_backward_input<T: Element>(g: ArrayView4<T>, w: ArrayView4<T>) -> Array4<T> {
    let (b, o, oh, ow) = g.dim();
    let (_, c, kh, kw) = w.dim();
    let mut dx = Array4::zeros((b, c, oh + kh - 1, ow + kw - 1));
    for n in 0..b {
        for oc in 0..o {
            for i in 0..oh {
                for j in 0..ow {
                    for ci in 0..c {
                        for p in 0..kh {
                            for q in 0..kw {
                                dx[[n, ci, i + p, j + q]] += w[[oc, ci, p, q]] * g[[n, oc, i, j]];
                            }
                        }
                    }
                }
            }
        }
    }
    dx
}
pub(crate) fn conv2d_backward_weight<T: Element>(
    x: ArrayView4<T>,
    g: ArrayView4<T>,
    kh: usize,
    kw: usize,
) -> Array4<T> {
    let (b, o, oh, ow) = g.dim();
    let c = x.dim().1;
    Array4::from_shape_fn((o, c, kh, kw), |(oc, ci, p, q)| {
        let mut s = T::zero();
        for n in 0..b {
            for i in 0..oh {
                for j in 0..ow {
                    s += x[[n, ci, i + p, j + q]] * g[[n, oc, i, j]];
                }
            }
        }
        s
    })
}
