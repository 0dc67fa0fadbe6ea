//! The fused Adam update on the CPU: one pass over contiguous buffers, in parallel chunks.
//!
//! Each element is computed by the same expression in the same order whatever the chunking
//! or thread count (there is no reduction), so the bits never depend on them.

use std::mem::MaybeUninit;

use ndarray::{ArcArray, CowArray, IxDyn};
use rayon::prelude::*;

use super::elementwise::PAR_MIN;
use crate::backend::AdamParts;
use crate::{AdamCoefficients, Element};

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

type Arr<T> = ArcArray<T, IxDyn>;

/// The coefficients rounded to `T`, as the unfused tensor ops round them.
#[derive(Clone, Copy)]
struct Coef<T> {
    b1: T,
    omb1: T,
    b2: T,
    omb2: T,
    eps: T,
    wd: T,
    decay: bool,
    step: T,
    inv_sqrt_bias2: T,
    amsgrad: bool,
}

impl<T: Element> Coef<T> {
    fn new(k: &AdamCoefficients) -> Self {
        Self {
            b1: T::of_f64(k.beta1),
            omb1: T::of_f64(1.0 - k.beta1),
            b2: T::of_f64(k.beta2),
            omb2: T::of_f64(1.0 - k.beta2),
            eps: T::of_f64(k.eps),
            wd: T::of_f64(k.weight_decay),
            decay: k.weight_decay != 0.0,
            step: T::of_f64(k.step_size),
            inv_sqrt_bias2: T::of_f64(k.inv_sqrt_bias2),
            amsgrad: k.amsgrad,
        }
    }

    /// `(θ', m', v', v̂')` of one element. The `+ 0` terms are those of `scale(c)`, which
    /// is `x·c + 0` (they turn −0 into +0), kept so the bits equal the unfused ops'.
    #[inline(always)]
    fn update(&self, theta: T, g: T, m: T, v: T, vmax: Option<T>) -> (T, T, T, T) {
        let zero = T::zero();
        let g = if self.decay {
            g + (theta * self.wd + zero)
        } else {
            g
        };
        let m = (m * self.b1 + zero) + (g * self.omb1 + zero);
        let v = (v * self.b2 + zero) + ((g * g) * self.omb2 + zero);
        // `maximum` keeps its left operand when it is NaN or not smaller.
        let vhat = match vmax {
            Some(p) if self.amsgrad => {
                if p.is_nan() || p >= v {
                    p
                } else {
                    v
                }
            }
            _ => v,
        };
        let denom = (vhat.sqrt() * self.inv_sqrt_bias2 + zero) + self.eps;
        let theta = theta - ((m / denom) * self.step + zero);
        (theta, m, v, vhat)
    }
}

/// The operands of one chunk.
struct In<'a, T> {
    theta: &'a [T],
    grad: &'a [T],
    m: &'a [T],
    v: &'a [T],
    vmax: Option<&'a [T]>,
}

/// The outputs of one chunk (`vmax` only with AMSGrad).
struct Out<'a, T> {
    theta: &'a mut [MaybeUninit<T>],
    m: &'a mut [MaybeUninit<T>],
    v: &'a mut [MaybeUninit<T>],
    vmax: Option<&'a mut [MaybeUninit<T>]>,
}

fn run_chunk<T: Element>(k: &Coef<T>, start: usize, x: &In<'_, T>, o: Out<'_, T>) {
    let n = o.theta.len();
    let r = start..start + n;
    let (th, g, m, v) = (
        &x.theta[r.clone()],
        &x.grad[r.clone()],
        &x.m[r.clone()],
        &x.v[r],
    );
    let prev = x.vmax.map(|p| &p[start..start + n]);
    match o.vmax {
        Some(ovmax) => {
            for i in 0..n {
                let (a, b, c, d) = k.update(th[i], g[i], m[i], v[i], prev.map(|p| p[i]));
                o.theta[i].write(a);
                o.m[i].write(b);
                o.v[i].write(c);
                ovmax[i].write(d);
            }
        }
        None => {
            for i in 0..n {
                let (a, b, c, _) = k.update(th[i], g[i], m[i], v[i], None);
                o.theta[i].write(a);
                o.m[i].write(b);
                o.v[i].write(c);
            }
        }
    }
}

fn contiguous<T: Element>(a: &Arr<T>) -> CowArray<'_, T, IxDyn> {
    a.as_standard_layout()
}

fn slice<'a, T: Element>(a: &'a CowArray<'_, T, IxDyn>) -> &'a [T] {
    a.as_slice().expect("standard layout is contiguous")
}

/// One fused Adam update of `theta` (see `Tensor::adam_update`); operands share a shape.
pub(crate) fn adam_update<T: Element>(
    theta: &Arr<T>,
    grad: &Arr<T>,
    m: &Arr<T>,
    v: &Arr<T>,
    vmax: Option<&Arr<T>>,
    k: &AdamCoefficients,
) -> AdamParts<Arr<T>> {
    let coef = Coef::<T>::new(k);
    let (th, g, mm, vv) = (
        contiguous(theta),
        contiguous(grad),
        contiguous(m),
        contiguous(v),
    );
    let vm = vmax.map(contiguous);
    let x = In {
        theta: slice(&th),
        grad: slice(&g),
        m: slice(&mm),
        v: slice(&vv),
        vmax: vm.as_ref().map(slice),
    };
    let n = x.theta.len();
    let mut bufs: [Vec<T>; 4] =
        std::array::from_fn(|i| Vec::with_capacity(if i < 3 || k.amsgrad { n } else { 0 }));
    {
        let [b0, b1, b2, b3] = &mut bufs;
        let (o0, o1, o2) = (
            &mut b0.spare_capacity_mut()[..n],
            &mut b1.spare_capacity_mut()[..n],
            &mut b2.spare_capacity_mut()[..n],
        );
        let o3 = k.amsgrad.then(|| &mut b3.spare_capacity_mut()[..n]);
        if n < PAR_MIN {
            let out = Out {
                theta: o0,
                m: o1,
                v: o2,
                vmax: o3,
            };
            run_chunk(&coef, 0, &x, out);
        } else {
            let chunks = o0
                .par_chunks_mut(CHUNK)
                .zip(o1.par_chunks_mut(CHUNK))
                .zip(o2.par_chunks_mut(CHUNK))
                .enumerate();
            match o3 {
                Some(o3) => {
                    chunks
                        .zip(o3.par_chunks_mut(CHUNK))
                        .for_each(|((c, ((theta, m), v)), vmax)| {
                            let out = Out {
                                theta,
                                m,
                                v,
                                vmax: Some(vmax),
                            };
                            run_chunk(&coef, c * CHUNK, &x, out);
                        })
                }
                None => chunks.for_each(|(c, ((theta, m), v))| {
                    let out = Out {
                        theta,
                        m,
                        v,
                        vmax: None,
                    };
                    run_chunk(&coef, c * CHUNK, &x, out);
                }),
            }
        }
    }
    let shape = theta.shape().to_vec();
    let [b0, b1, b2, b3] = bufs;
    let arr = |mut b: Vec<T>| {
        // SAFETY: `run_chunk` wrote every one of the first `n` slots of each output it was
        // given, and the chunks cover `0..n`.
        unsafe { b.set_len(n) };
        ArcArray::from_shape_vec(IxDyn(&shape), b).expect("the buffer has the shape's length")
    };
    AdamParts {
        param: arr(b0),
        exp_avg: arr(b1),
        exp_avg_sq: arr(b2),
        max_exp_avg_sq: k.amsgrad.then(|| arr(b3)),
    }
}
