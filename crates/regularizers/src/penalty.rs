//! The per-batch penalty of eq. 2 and its gradient, in projected and exact mode.
//!
//! For eigenvalues `λ_1 ≥ … ≥ λ_N` the target spectrum is `γ_n = κ n^(−α)` with
//! `κ = λ_τ τ^α` (so `γ_τ = λ_τ`; `κ` is held constant when differentiating), and
//!
//! `R = (1/N) Σ_{n > τ} [ (λ_n/γ_n − 1)² + max(0, λ_n/γ_n − 1) ]`
//!
//! (the term at `n = τ` is zero by the choice of `κ`).
//!
//! **Ranks.** `τ` is a 1-based rank: the anchor is `λ_τ = lambda[τ − 1]` and ranks
//! `τ + 1 ..= N` are penalised. The paper's text (`τ = 10`) anchors at rank 10 and penalises
//! 11..N. The public reference code (`eigen_val_regulate(start=10)`, 0-based: `κ` from
//! `eigs[10]·11^α`, terms `n = 11..N−1`) anchors at 1-based rank 11 and penalises 12..N,
//! which is `τ = 11` here.
//!
//! **Projected eigenvalues** (eq. 5): `λ̂_n = ‖H_c v_n‖²/(B − 1) = v_nᵀ Σ_batch v_n` for
//! fixed eigenvectors `V`. [`projected_penalty`] keeps them in `V`'s column order (the
//! full-data spectrum's order); [`projected_penalty_sorted`] sorts them descending first,
//! as the reference does (`torch.sort(eig, descending=True)`), so `R` sees a proper
//! spectrum. Sorting is a permutation `π` with `λ̂_(k) = λ̂_{π(k)}`; the gradient goes back
//! to each column through it, `∂R/∂λ̂_{π(k)} = ∂R/∂λ̂_(k)` (ties keep column order: the sort
//! is stable). Either way `∂R/∂H = (2/(B − 1)) H_c V diag(∂R/∂λ̂) Vᵀ`: two `B × N × N`
//! GEMMs, with the gradient through `H` only.
//!
//! **Exact mode** eigendecomposes the batch covariance, `O(N³)`; the gradient uses
//! `dλ_n = v_nᵀ dΣ v_n`, which gives the same formula with the batch's own eigenvectors. It
//! never divides by eigenvalue gaps, so repeated eigenvalues are harmless.

use ndarray::Array1;
use specreg_nn::{NnError, Result};
use specreg_tensor::{BinaryOp, DType, Tensor};

/// The penalty `R` of eq. 2 for eigenvalues `lambda` in rank order (`lambda[0]` is `λ_1`),
/// and `∂R/∂λ_n` with `κ` held constant (zero for `n ≤ τ`: the term at `n = τ` is zero by
/// the choice of `κ`). `tau` is the 1-based anchor rank (see the module docs).
///
/// # Errors
/// `τ` not below `N`, or `λ_τ` not positive (a representation of rank below `τ`).
pub fn spectral_penalty(lambda: &[f64], alpha: f64, tau: usize) -> Result<(f64, Vec<f64>)> {
    let n_total = lambda.len();
    if tau == 0 || tau >= n_total {
        return Err(NnError::InvalidArgument {
            what: "spectral penalty".into(),
            reason: format!("tau ({tau}) must be ≥ 1 and < the width ({n_total})"),
        });
    }
    let lam_tau = lambda[tau - 1];
    if !(lam_tau.is_finite() && lam_tau > 0.0) {
        return Err(NnError::InvalidArgument {
            what: "spectral penalty".into(),
            reason: format!(
                "λ_τ = λ_{tau} = {lam_tau} is not positive: the representation has rank < τ"
            ),
        });
    }
    let kappa = lam_tau * (tau as f64).powf(alpha);
    let inv_n = 1.0 / n_total as f64;
    let mut value = 0.0;
    let mut grad = vec![0.0; n_total];
    // The anchor rank n = τ contributes r_τ = 0 by construction; it is skipped so that
    // rounding in r_τ cannot switch the hinge's one-sided derivative on and off.
    for (i, (&l, g)) in lambda.iter().zip(&mut grad).enumerate().skip(tau) {
        let inv_gamma = ((i + 1) as f64).powf(alpha) / kappa;
        let r = l * inv_gamma - 1.0;
        let hinge = if r > 0.0 { 1.0 } else { 0.0 };
        value += r * r + hinge * r;
        *g = inv_n * (2.0 * r + hinge) * inv_gamma;
    }
    Ok((value * inv_n, grad))
}

/// The value, eigenvalues and gradient of the penalty for one batch.
#[derive(Debug, Clone)]
pub struct SpectralValue {
    /// `R` (without `β`).
    pub value: f64,
    /// The eigenvalues the penalty was applied to, in the order it used them: descending
    /// for exact mode and sorted projected mode, `V`'s column order for unsorted projected
    /// mode.
    pub eigenvalues: Vec<f64>,
    /// `order[k]` is the eigenvector column whose eigenvalue is `eigenvalues[k]`: the
    /// sorting permutation in sorted projected mode, the identity otherwise.
    pub order: Vec<usize>,
    /// `∂R/∂H`, `[B, N]`, in `H`'s dtype.
    pub grad: Tensor,
}

fn batch_rows(h: &Tensor, what: &str) -> Result<(usize, usize)> {
    let (b, n) = h.dims2()?;
    if b < 2 {
        return Err(NnError::InvalidArgument {
            what: what.into(),
            reason: format!("a covariance needs a batch of at least 2 samples, got {b}"),
        });
    }
    Ok((b, n))
}

/// The column indices of `lambda` by descending value, ties in column order.
fn descending_order(lambda: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..lambda.len()).collect();
    order.sort_by(|&a, &b| lambda[b].total_cmp(&lambda[a]));
    order
}

/// `R`, `λ` and `∂R/∂H` given eigenvectors `v: [N, N]`; `lambda` (exact mode) is already in
/// rank order, else the projected eigenvalues are computed and, when `sort`, sorted.
fn value_grad_with(
    hc: &Tensor,
    v: &Tensor,
    lambda: Option<Vec<f64>>,
    alpha: f64,
    tau: usize,
    sort: bool,
) -> Result<SpectralValue> {
    let (b, n) = hc.dims2()?;
    let p = hc.matmul(v)?;
    let scale = 1.0 / (b as f64 - 1.0);
    let (lambda, order) = match lambda {
        Some(l) => (l, (0..n).collect()),
        None => {
            let columns: Vec<f64> = p
                .sqr()?
                .col_sums()?
                .to_dtype(DType::F64)?
                .to_vec::<f64>()?
                .into_iter()
                .map(|s| s * scale)
                .collect();
            if sort {
                let order = descending_order(&columns);
                (order.iter().map(|&j| columns[j]).collect(), order)
            } else {
                (columns, (0..n).collect())
            }
        }
    };
    let (value, dranked) = spectral_penalty(&lambda, alpha, tau)?;
    // Back to V's columns through the permutation.
    let mut dcolumn = vec![0.0; n];
    for (&j, d) in order.iter().zip(&dranked) {
        dcolumn[j] = 2.0 * scale * d;
    }
    let w = Tensor::from_array(Array1::from(dcolumn)).to_dtype(hc.dtype())?;
    let w = if hc.device().is_cpu() {
        w
    } else {
        w.to_device(&hc.device())?
    };
    let grad = p.broadcast_along(&w, 1, BinaryOp::Mul)?.matmul_nt(v)?;
    Ok(SpectralValue {
        value,
        eigenvalues: lambda,
        order,
        grad,
    })
}

fn check_eigenvectors(h: &Tensor, v: &Tensor, what: &str) -> Result<()> {
    let (_, n) = batch_rows(h, what)?;
    if v.shape() != [n, n] {
        return Err(NnError::ShapeMismatch {
            layer: format!("{what} (eigenvectors)"),
            expected: format!("[{n}, {n}]"),
            got: v.shape().to_vec(),
        });
    }
    Ok(())
}

/// Projected mode (eq. 5) in `V`'s column order: `λ̂_n = ‖H_c v_n‖²/(B − 1)` with the fixed
/// eigenvectors `v: [N, N]` (columns in rank order, in `h`'s dtype), and `∂R/∂H` through `H`
/// only. The projected eigenvalues are not re-sorted (see [`projected_penalty_sorted`]).
pub fn projected_penalty(h: &Tensor, v: &Tensor, alpha: f64, tau: usize) -> Result<SpectralValue> {
    check_eigenvectors(h, v, "projected spectral penalty")?;
    value_grad_with(&h.center_rows()?, v, None, alpha, tau, false)
}

/// Projected mode with the projected eigenvalues sorted descending before the penalty (the
/// reference implementation's per-batch step); the gradient reaches each column of `v`
/// through the sorting permutation, reported in [`SpectralValue::order`].
pub fn projected_penalty_sorted(
    h: &Tensor,
    v: &Tensor,
    alpha: f64,
    tau: usize,
) -> Result<SpectralValue> {
    check_eigenvectors(h, v, "projected spectral penalty")?;
    value_grad_with(&h.center_rows()?, v, None, alpha, tau, true)
}

/// Exact mode: eigendecomposes the batch covariance of `h` (`O(N³)`) and differentiates
/// through `dλ_n = v_nᵀ dΣ v_n`.
pub fn exact_penalty(h: &Tensor, alpha: f64, tau: usize) -> Result<SpectralValue> {
    let (hc, lambda, v) = batch_eigen(h)?;
    value_grad_with(&hc, &v, Some(lambda), alpha, tau, false)
}

/// The centred batch, the eigenvalues (descending, `f64`) and the eigenvectors of its
/// unbiased covariance: what the exact penalty and the projected-vs-exact diagnostic share.
pub(crate) fn batch_eigen(h: &Tensor) -> Result<(Tensor, Vec<f64>, Tensor)> {
    batch_rows(h, "exact spectral penalty")?;
    let hc = h.center_rows()?;
    let (b, _) = hc.dims2()?;
    let sigma = hc.gram()?.scale(1.0 / (b as f64 - 1.0))?;
    let (lambda, v) = sigma.symmetric_eigen()?;
    let lambda = lambda.to_dtype(DType::F64)?.to_vec::<f64>()?;
    Ok((hc, lambda, v))
}
