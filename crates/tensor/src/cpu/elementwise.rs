//! Elementwise maps, broadcasts and reductions on CPU arrays (ndarray + rayon).
//!
//! Maps over more than [`PAR_MIN`] elements run in parallel. Every reduction adds in a fixed
//! order, so results are bitwise reproducible whatever the thread count.

use ndarray::{ArcArray, Axis, IxDyn, Zip};

use super::contiguous;
use crate::{BinaryOp, Element, UnaryOp};

/// Below this many elements a map runs on the calling thread.
pub(crate) const PAR_MIN: usize = 1 << 15;

type Arr<T> = ArcArray<T, IxDyn>;

pub(crate) fn map<T: Element>(a: &Arr<T>, f: impl Fn(T) -> T + Sync + Send) -> Arr<T> {
    if let Some(s) = a.as_slice() {
        contiguous::map(a.shape(), s, f)
    } else if a.len() >= PAR_MIN {
        Zip::from(a).par_map_collect(|&x| f(x)).into_shared()
    } else {
        a.map(|&x| f(x)).into_shared()
    }
}

pub(crate) fn zip_map<T: Element>(
    a: &Arr<T>,
    b: ndarray::ArrayViewD<'_, T>,
    f: impl Fn(T, T) -> T + Sync + Send,
) -> Arr<T> {
    if a.shape() == b.shape()
        && let (Some(x), Some(y)) = (a.as_slice(), b.as_slice())
    {
        return contiguous::zip(a.shape(), x, y, f);
    }
    let z = Zip::from(a).and(b);
    if a.len() >= PAR_MIN {
        z.par_map_collect(|&x, &y| f(x, y)).into_shared()
    } else {
        z.map_collect(|&x, &y| f(x, y)).into_shared()
    }
}

pub(crate) fn unary<T: Element>(a: &Arr<T>, op: UnaryOp) -> Arr<T> {
    let one = T::one();
    let zero = T::zero();
    match op {
        UnaryOp::Neg => map(a, |x| -x),
        UnaryOp::Exp => map(a, |x| x.exp()),
        UnaryOp::Log => map(a, |x| x.ln()),
        UnaryOp::Sqrt => map(a, |x| x.sqrt()),
        UnaryOp::Sqr => map(a, |x| x * x),
        UnaryOp::Abs => map(a, |x| x.abs()),
        UnaryOp::Recip => map(a, |x| one / x),
        UnaryOp::Tanh => map(a, |x| x.tanh_kernel()),
        UnaryOp::Relu => map(a, |x| if x > zero { x } else { zero }),
        UnaryOp::Sigmoid => map(a, |x| one / (one + (-x).exp())),
        UnaryOp::Sign => map(a, |x| {
            if x > zero {
                one
            } else if x < zero {
                -one
            } else {
                x // ±0 stays, NaN stays NaN
            }
        }),
    }
}

/// Runs `$body` with `$f` bound to the closure of `$op` on `$t`: one monomorphised loop
/// per operation, so that each is inlined and vectorised (a function pointer would cost a
/// call per element).
macro_rules! with_binary {
    ($op:expr, $t:ty, |$f:ident| $body:expr) => {{
        let (one, zero) = (<$t>::one(), <$t>::zero());
        let _ = (one, zero);
        match $op {
            BinaryOp::Add => {
                let $f = |a: $t, b: $t| a + b;
                $body
            }
            BinaryOp::Sub => {
                let $f = |a: $t, b: $t| a - b;
                $body
            }
            BinaryOp::Mul => {
                let $f = |a: $t, b: $t| a * b;
                $body
            }
            BinaryOp::Div => {
                let $f = |a: $t, b: $t| a / b;
                $body
            }
            BinaryOp::Maximum => {
                let $f = |a: $t, b: $t| if a.is_nan() || a >= b { a } else { b };
                $body
            }
            BinaryOp::Minimum => {
                let $f = |a: $t, b: $t| if a.is_nan() || a <= b { a } else { b };
                $body
            }
            BinaryOp::TanhBackward => {
                let $f = |y: $t, g: $t| g * (one - y * y);
                $body
            }
            BinaryOp::SigmoidBackward => {
                let $f = |y: $t, g: $t| g * y * (one - y);
                $body
            }
            BinaryOp::ReluBackward => {
                let $f = |x: $t, g: $t| if x > zero { g } else { zero };
                $body
            }
            BinaryOp::Greater => {
                let $f = |a: $t, b: $t| if a > b { one } else { zero };
                $body
            }
            BinaryOp::Equal => {
                let $f = |a: $t, b: $t| if a == b { one } else { zero };
                $body
            }
        }
    }};
}

pub(crate) fn binary<T: Element>(a: &Arr<T>, b: &Arr<T>, op: BinaryOp) -> Arr<T> {
    with_binary!(op, T, |f| zip_map(a, b.view(), f))
}

pub(crate) fn broadcast_along<T: Element>(
    a: &Arr<T>,
    v: &Arr<T>,
    axis: usize,
    op: BinaryOp,
) -> Arr<T> {
    if let (Some(x), Some(y)) = (a.as_slice(), v.as_slice()) {
        return with_binary!(op, T, |f| contiguous::along(a.shape(), axis, x, y, f));
    }
    let mut shape = vec![1; a.ndim()];
    shape[axis] = v.len();
    let v = v
        .view()
        .into_shape_with_order(IxDyn(&shape))
        .expect("1-D vector reshapes");
    let v = v
        .broadcast(a.raw_dim())
        .expect("validated by the tensor layer");
    with_binary!(op, T, |f| zip_map(a, v.view(), f))
}

pub(crate) fn affine<T: Element>(a: &Arr<T>, mul: f64, add: f64) -> Arr<T> {
    let (m, c) = (T::of_f64(mul), T::of_f64(add));
    map(a, move |x| x * m + c)
}

pub(crate) fn clamp<T: Element>(a: &Arr<T>, lo: f64, hi: f64) -> Arr<T> {
    let (lo, hi) = (T::of_f64(lo), T::of_f64(hi));
    map(a, |x| {
        if x < lo {
            lo
        } else if x > hi {
            hi
        } else {
            x
        }
    })
}

pub(crate) fn sum_axis<T: Element>(a: &Arr<T>, axis: usize) -> Arr<T> {
    if axis == 0
        && a.ndim() == 2
        && a.shape()[1] >= 2
        && a.len() >= PAR_MIN
        && let Some(x) = a.as_slice()
    {
        return contiguous::column_sums(x, a.shape()[1]);
    }
    a.sum_axis(Axis(axis)).into_shared()
}

pub(crate) fn sum_all<T: Element>(a: &Arr<T>) -> f64 {
    a.iter().map(|x| x.as_f64()).sum()
}

pub(crate) fn max_abs<T: Element>(a: &Arr<T>) -> f64 {
    a.iter().fold(0.0f64, |m, x| {
        let v = x.as_f64().abs();
        if v.is_nan() || v > m { v } else { m }
    })
}

pub(crate) fn argmax_rows<T: Element>(a: &Arr<T>) -> Arr<T> {
    let idx: ndarray::Array1<T> = a
        .axis_iter(Axis(0))
        .map(|row| {
            let mut best = 0;
            for (j, &x) in row.iter().enumerate() {
                if x > row[best] {
                    best = j;
                }
            }
            T::of_f64(best as f64)
        })
        .collect();
    idx.into_dyn().into_shared()
}

pub(crate) fn index_select<T: Element>(a: &Arr<T>, idx: &[usize]) -> Arr<T> {
    a.select(Axis(0), idx).into_shared()
}

/// `mask ≠ 0 ? t : f`, the mask either of the operands' shape or one entry per row.
pub(crate) fn where_cond<T: Element>(mask: &Arr<T>, t: &Arr<T>, f: &Arr<T>) -> Arr<T> {
    let zero = T::zero();
    if mask.shape() == t.shape() {
        let z = Zip::from(mask).and(t).and(f);
        return z
            .map_collect(|&m, &x, &y| if m != zero { x } else { y })
            .into_shared();
    }
    // Each output row is written once, from whichever operand the mask picks.
    let mut out = ndarray::ArrayD::<T>::uninit(t.raw_dim());
    for (((o, m), a), b) in out
        .axis_iter_mut(Axis(0))
        .zip(mask.iter())
        .zip(t.axis_iter(Axis(0)))
        .zip(f.axis_iter(Axis(0)))
    {
        if *m != zero { a } else { b }.assign_to(o);
    }
    // SAFETY: the loop visits every row of `out` (the mask has one entry per row, checked
    // by the tensor layer) and `assign_to` writes every element of each row.
    unsafe { out.assume_init() }.into_shared()
}

/// Row-wise `x − max − ln Σ exp(x − max)`.
pub(crate) fn log_softmax<T: Element>(a: &Arr<T>) -> Arr<T> {
    let mut out = a.to_owned();
    out.axis_iter_mut(Axis(0)).for_each(|mut row| {
        let max = row
            .iter()
            .fold(T::neg_infinity(), |m, &x| if x > m { x } else { m });
        // Subtract the max first and the log-sum second: adding them before subtracting
        // would round ln Σ to the scale of a large max.
        let log_sum = row.iter().map(|&x| (x - max).exp()).sum::<T>().ln();
        row.mapv_inplace(|x| (x - max) - log_sum);
    });
    out.into_shared()
}

/// Per-sample cross entropy and `softmax − onehot`.
pub(crate) fn cross_entropy<T: Element>(a: &Arr<T>, labels: &[usize]) -> (Arr<T>, Arr<T>) {
    let logp = log_softmax(a);
    let loss: ndarray::Array1<T> = labels
        .iter()
        .enumerate()
        .map(|(i, &y)| -logp[[i, y]])
        .collect();
    let mut grad = logp.mapv(|x| x.exp());
    for (i, &y) in labels.iter().enumerate() {
        grad[[i, y]] -= T::one();
    }
    (loss.into_dyn().into_shared(), grad.into_shared())
}

pub(crate) fn argsort_descending<T: Element>(a: &Arr<T>) -> Arr<T> {
    let v: Vec<T> = a.iter().copied().collect();
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&i, &j| v[j].as_f64().total_cmp(&v[i].as_f64()));
    let out: ndarray::Array1<T> = order.into_iter().map(|i| T::of_f64(i as f64)).collect();
    out.into_dyn().into_shared()
}

/// Reads a whole-number index stored as a float, or says why it is not one below `len`.
pub(crate) fn index_of<T: Element>(x: T, len: usize) -> std::result::Result<usize, String> {
    let f = x.as_f64();
    if f >= 0.0 && f.fract() == 0.0 && f < len as f64 {
        Ok(f as usize)
    } else {
        Err(format!("index {f} is not a whole number below {len}"))
    }
}

pub(crate) fn gather<T: Element>(a: &Arr<T>, idx: &Arr<T>) -> std::result::Result<Arr<T>, String> {
    let src: Vec<T> = a.iter().copied().collect();
    let out = idx
        .iter()
        .map(|&i| index_of(i, src.len()).map(|i| src[i]))
        .collect::<std::result::Result<ndarray::Array1<T>, String>>()?;
    Ok(out.into_dyn().into_shared())
}

pub(crate) fn scatter<T: Element>(
    a: &Arr<T>,
    idx: &Arr<T>,
    len: usize,
) -> std::result::Result<Arr<T>, String> {
    let mut out = ndarray::Array1::<T>::zeros(len);
    for (&v, &i) in a.iter().zip(idx.iter()) {
        out[index_of(i, len)?] = v;
    }
    Ok(out.into_dyn().into_shared())
}

pub(crate) fn concat<T: Element>(parts: &[&Arr<T>]) -> Arr<T> {
    let out: ndarray::Array1<T> = parts.iter().flat_map(|p| p.iter().copied()).collect();
    out.into_dyn().into_shared()
}
