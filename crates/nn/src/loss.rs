//! Mean softmax cross-entropy over a batch of logits `z: [B, K]` with labels `y ∈ 0..K`.
//!
//! `L = (1/B) Σ_n −log p_n[y_n]` with `p_n = softmax(z_n)`.
//!
//! * gradient: `∂L/∂z_n = (p_n − e_{y_n}) / B`;
//! * tangent along a logit direction `dz`: `R{p_n} = p_n ⊙ dz_n − p_n (p_nᵀ dz_n)` (the
//!   softmax Jacobian `diag(p) − p pᵀ` applied to `dz_n`), and the one-hot is constant, so
//!   `R{∂L/∂z_n} = (p_n ⊙ dz_n − p_n (p_nᵀ dz_n)) / B`.

use ndarray::Array2;
use specreg_tensor::{BinaryOp, DType, Tensor};

use crate::{NnError, Result};

/// The mean cross-entropy of `logits: [B, K]`, as a 0-D `f64` tensor on the logits' device
/// (per-sample losses summed in `f64` in sample order, then divided by `B`), and its
/// gradient with respect to the logits, `(softmax(z) − onehot(y))/B`. Nothing is read back
/// to the host.
///
/// # Errors
/// A batch of zero rows, `labels.len() ≠ B`, or a label `≥ K`.
pub fn softmax_cross_entropy(logits: &Tensor, labels: &[usize]) -> Result<(Tensor, Tensor)> {
    let (b, k) = logits.dims2()?;
    if b == 0 {
        return Err(NnError::ShapeMismatch {
            layer: "softmax_cross_entropy".into(),
            expected: "[B > 0, K]".into(),
            got: logits.shape().to_vec(),
        });
    }
    let total = logits.cross_entropy_per_sample(labels)?.sum_all_f64()?;
    let mean = total.div(&total.full_like(b as f64, &[])?)?;
    let grad = logits
        .softmax()?
        .sub(&one_hot(labels, k, logits)?)?
        .scale(1.0 / b as f64)?;
    Ok((mean, grad))
}

/// `onehot(y): [B, K]` in `like`'s dtype, on its device (uploaded; nothing is read back).
fn one_hot(labels: &[usize], classes: usize, like: &Tensor) -> Result<Tensor> {
    let mut m = Array2::<f64>::zeros((labels.len(), classes));
    for (i, &y) in labels.iter().enumerate() {
        m[[i, y]] = 1.0;
    }
    let t = Tensor::from_array(m);
    let t = if like.dtype() == DType::F64 {
        t
    } else {
        t.to_dtype(like.dtype())?
    };
    Ok(if like.device().is_cpu() {
        t
    } else {
        t.to_device(&like.device())?
    })
}

/// The per-sample cross-entropies `−log softmax(z_n)[y_n]`, shape `[B]`.
pub fn cross_entropy_per_sample(logits: &Tensor, labels: &[usize]) -> Result<Tensor> {
    Ok(logits.cross_entropy_per_sample(labels)?)
}

/// `R{∂L/∂z}`: the directional derivative of the mean cross-entropy's logit gradient along
/// `dz` (labels drop out: the one-hot term is constant).
pub fn softmax_cross_entropy_tangent(logits: &Tensor, dz: &Tensor) -> Result<Tensor> {
    let (b, _) = logits.dims2()?;
    if dz.shape() != logits.shape() || b == 0 {
        return Err(NnError::ShapeMismatch {
            layer: "softmax_cross_entropy_tangent".into(),
            expected: format!("{:?} with B > 0", logits.shape()),
            got: dz.shape().to_vec(),
        });
    }
    let p = logits.softmax()?;
    let pdz = p.mul(dz)?;
    let dots = pdz.sum_axis(1)?;
    let along = p.broadcast_along(&dots, 0, BinaryOp::Mul)?;
    Ok(pdz.sub(&along)?.scale(1.0 / b as f64)?)
}
