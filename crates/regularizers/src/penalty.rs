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
//!
//! **On the device.** [`projected_penalty`], [`projected_penalty_sorted`] and
//! [`exact_penalty`] read nothing back to the host: the eigenvalues, `R`, `∂R/∂λ` and the
//! sort are tensor ops (in `f64`, as [`spectral_penalty`], the host reference, computes
//! them, operation for operation). Whether `λ_τ > 0` is therefore not checked there: it is
//! returned in [`SpectralValue::lambda_tau`] for the caller to read with the step's other
//! scalars ([`SpectralValue::check`] reads and checks it at once).

use specreg_tensor::{BinaryOp, DType, Tensor};

use crate::error::{RegularizerError, Result, invalid};

/// The penalty `R` of eq. 2 for eigenvalues `lambda` in rank order (`lambda[0]` is `λ_1`),
/// and `∂R/∂λ_n` with `κ` held constant (zero for `n ≤ τ`: the term at `n = τ` is zero by
/// the choice of `κ`). `tau` is the 1-based anchor rank (see the module docs). This is the
/// host reference of the device computation the penalties use.
///
/// # Errors
/// `τ` not below `N` ([`RegularizerError::TauNotBelowWidth`]), or `λ_τ` not positive
/// ([`RegularizerError::RankBelowTau`]: a representation of rank below `τ`).
pub fn spectral_penalty(lambda: &[f64], alpha: f64, tau: usize) -> Result<(f64, Vec<f64>)> {
    let n_total = lambda.len();
    check_tau(tau, n_total)?;
    let lam_tau = lambda[tau - 1];
    if !(lam_tau.is_finite() && lam_tau > 0.0) {
        return Err(RegularizerError::RankBelowTau {
            layer: "spectral penalty".into(),
            tau,
            lambda_tau: lam_tau,
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

fn check_tau(tau: usize, width: usize) -> Result<()> {
    if tau == 0 || tau >= width {
        return Err(RegularizerError::TauNotBelowWidth {
            layer: "spectral penalty".into(),
            tau,
            width,
        });
    }
    Ok(())
}

/// [`spectral_penalty`] on the device: `lambda: [N]` in `f64` (rank order) gives `R` (0-D),
/// `∂R/∂λ` (`[N]`) and `λ_τ` (`[1]`), all `f64`, with the same operations in the same order
/// as the host reference, so the same bits. `λ_τ > 0` is not checked (see the module docs):
/// where it fails, `R` and the gradient are not finite.
///
/// # Errors
/// `τ` not below `N`, or `lambda` not a 1-D `f64` tensor.
pub fn spectral_penalty_tensor(
    lambda: &Tensor,
    alpha: f64,
    tau: usize,
) -> Result<(Tensor, Tensor, Tensor)> {
    let n_total = match (lambda.shape(), lambda.dtype()) {
        (&[n], DType::F64) => n,
        _ => {
            return Err(RegularizerError::ShapeMismatch {
                what: "spectral penalty".into(),
                expected: "[N] in f64".into(),
                got: lambda.shape().to_vec(),
            });
        }
    };
    check_tau(tau, n_total)?;
    let tail = n_total - tau;
    let lam_tau = lambda.index_select_rows(&[tau - 1])?;
    let kappa = lam_tau.scale((tau as f64).powf(alpha))?;
    let powers: Vec<f64> = (tau..n_total)
        .map(|i| ((i + 1) as f64).powf(alpha))
        .collect();
    let inv_gamma = Tensor::from_vec(powers, &[1, tail], &lambda.device())?
        .broadcast_along(&kappa, 0, BinaryOp::Div)?
        .reshape(&[tail])?;
    let inv_n = 1.0 / n_total as f64;
    let l = lambda.index_select_rows(&(tau..n_total).collect::<Vec<_>>())?;
    let r = l.mul(&inv_gamma)?.add_scalar(-1.0)?;
    let hinge = r.greater(&r.full_like(0.0, &[tail])?)?;
    let value = r.sqr()?.add(&hinge.mul(&r)?)?.sum_all_f64()?.scale(inv_n)?;
    let grad_tail = r.scale(2.0)?.add(&hinge)?.scale(inv_n)?.mul(&inv_gamma)?;
    let grad = Tensor::concat(&[&lambda.full_like(0.0, &[tau])?, &grad_tail])?;
    Ok((value, grad, lam_tau))
}

/// The value, eigenvalues and gradient of the penalty for one batch, on the device.
#[derive(Debug, Clone)]
pub struct SpectralValue {
    /// `R` (without `β`), a 0-D `f64` tensor.
    pub value: Tensor,
    /// The eigenvalues the penalty was applied to (`[N]`, `f64`), in the order it used
    /// them: descending for exact mode and sorted projected mode, `V`'s column order for
    /// unsorted projected mode.
    pub eigenvalues: Tensor,
    /// `order[k]` is the eigenvector column whose eigenvalue is `eigenvalues[k]` (`[N]`,
    /// whole numbers in `f64`): the sorting permutation in sorted projected mode, the
    /// identity otherwise.
    pub order: Tensor,
    /// The anchor eigenvalue `λ_τ` (`[1]`, `f64`), which must be positive for `value` and
    /// `grad` to mean anything.
    pub lambda_tau: Tensor,
    /// `∂R/∂H`, `[B, N]`, in `H`'s dtype.
    pub grad: Tensor,
}

impl SpectralValue {
    /// Reads `λ_τ` (one host read) and checks it: finite (else
    /// [`RegularizerError::NonFiniteRepresentation`] at `step`) and positive (else
    /// [`RegularizerError::RankBelowTau`]). `layer` names the representation.
    pub fn check(&self, layer: &str, tau: usize, step: usize) -> Result<()> {
        check_lambda_tau(self.lambda_tau.to_scalar()?, layer, tau, step)
    }
}

/// The checks of [`SpectralValue::check`] on a value already read.
pub(crate) fn check_lambda_tau(
    lambda_tau: f64,
    layer: &str,
    tau: usize,
    step: usize,
) -> Result<()> {
    if !lambda_tau.is_finite() {
        return Err(RegularizerError::NonFiniteRepresentation {
            layer: layer.into(),
            step,
        });
    }
    if lambda_tau <= 0.0 {
        return Err(RegularizerError::RankBelowTau {
            layer: layer.into(),
            tau,
            lambda_tau,
        });
    }
    Ok(())
}

fn batch_rows(h: &Tensor, what: &str) -> Result<(usize, usize)> {
    let (b, n) = h.dims2()?;
    if b < 2 {
        return Err(RegularizerError::TooFewSamples {
            what: format!("{what} (a batch covariance)"),
            needed: 2,
            got: b,
        });
    }
    Ok((b, n))
}

/// `0, 1, …, n − 1` as an `f64` tensor on `like`'s device.
fn identity_order(n: usize, like: &Tensor) -> Result<Tensor> {
    let v: Vec<f64> = (0..n).map(|i| i as f64).collect();
    Ok(Tensor::from_vec(v, &[n], &like.device())?)
}

/// `R`, `λ` and `∂R/∂H` given eigenvectors `v: [N, N]`; `lambda` (exact mode) is already in
/// rank order, else the projected eigenvalues are computed and, when `sort`, sorted.
fn value_grad_with(
    hc: &Tensor,
    v: &Tensor,
    lambda: Option<Tensor>,
    alpha: f64,
    tau: usize,
    sort: bool,
) -> Result<SpectralValue> {
    let (b, n) = hc.dims2()?;
    let p = hc.matmul(v)?;
    let scale = 1.0 / (b as f64 - 1.0);
    let (lambda, order) = match lambda {
        Some(l) => (l, None),
        None => {
            let columns = column_variances(&p)?;
            if sort {
                let order = columns.argsort_descending()?;
                (columns.gather(&order)?, Some(order))
            } else {
                (columns, None)
            }
        }
    };
    let (value, dranked, lambda_tau) = spectral_penalty_tensor(&lambda, alpha, tau)?;
    // Back to V's columns through the permutation.
    let dranked = dranked.scale(2.0 * scale)?;
    let (dcolumn, order) = match order {
        Some(order) => (dranked.scatter(&order, n)?, order),
        None => (dranked, identity_order(n, hc)?),
    };
    let w = dcolumn.to_dtype(hc.dtype())?;
    let grad = p.broadcast_along(&w, 1, BinaryOp::Mul)?.matmul_nt(v)?;
    Ok(SpectralValue {
        value,
        eigenvalues: lambda,
        order,
        lambda_tau,
        grad,
    })
}

/// `‖p_n‖²/(B − 1)` of every column of the projection `p = H_c V: [B, N]`, in `f64`.
fn column_variances(p: &Tensor) -> Result<Tensor> {
    let (b, _) = p.dims2()?;
    Ok(p.sqr()?
        .col_sums()?
        .to_dtype(DType::F64)?
        .scale(1.0 / (b as f64 - 1.0))?)
}

/// The projected eigenvalues of eq. 5 alone, `λ̂_n = ‖H_c v_n‖²/(B − 1)` (`[N]`, `f64`, in
/// `V`'s column order): one `B × N × N` GEMM and one pass over its output.
pub fn projected_eigenvalues(h: &Tensor, v: &Tensor) -> Result<Tensor> {
    check_eigenvectors(h, v, "projected eigenvalues")?;
    column_variances(&h.center_rows()?.matmul(v)?)
}

fn check_eigenvectors(h: &Tensor, v: &Tensor, what: &str) -> Result<()> {
    let (_, n) = batch_rows(h, what)?;
    if v.shape() != [n, n] {
        return Err(RegularizerError::ShapeMismatch {
            what: format!("{what} (eigenvectors)"),
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

/// The centred batch, the eigenvalues (descending, `f64`, on the device) and the
/// eigenvectors of its unbiased covariance: what the exact penalty and the
/// projected-vs-exact diagnostic share.
pub(crate) fn batch_eigen(h: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
    batch_rows(h, "exact spectral penalty")?;
    let hc = h.center_rows()?;
    let (b, _) = hc.dims2()?;
    let sigma = hc.gram()?.scale(1.0 / (b as f64 - 1.0))?;
    let (lambda, v) = crate::spectrum::eigen_descending(&sigma)?;
    Ok((hc, lambda.to_dtype(DType::F64)?, v))
}

/// `‖a − e‖₂ / ‖e‖₂` of two `[K]` `f64` tensors, as a 0-D `f64` tensor (the denominator
/// floored at the smallest positive normal): the projected-vs-exact diagnostic.
pub(crate) fn relative_error(approx: &Tensor, exact: &Tensor) -> Result<Tensor> {
    if approx.shape() != exact.shape() {
        return Err(invalid(
            "relative error",
            format!("shapes {:?} and {:?} differ", approx.shape(), exact.shape()),
        ));
    }
    let num = approx.sub(exact)?.sqr()?.sum_all_f64()?;
    let den = exact.sqr()?.sum_all_f64()?;
    let floor = den.full_like(f64::MIN_POSITIVE, &[])?;
    Ok(num.div(&den.maximum(&floor)?)?.sqrt()?)
}
