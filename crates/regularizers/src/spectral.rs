//! The spectral regulariser of eq. 2 (Nassar et al. 2020), in projected and exact mode.
//!
//! For a hidden representation `H: [B, N]` with batch covariance eigenvalues
//! `λ_1 ≥ … ≥ λ_N`, the target spectrum is `γ_n = κ n^(−α)` with `κ = λ_τ τ^α` (so
//! `γ_τ = λ_τ`; `κ` is held constant when differentiating) and the penalty is
//!
//! `R = (1/N) Σ_{n ≥ τ} [ (λ_n/γ_n − 1)² + max(0, λ_n/γ_n − 1) ]`,
//!
//! which punishes eigenvalues above the power law more than those below it (the `n = τ`
//! term is zero, so ranks `τ + 1 ..= N` are the penalised ones; the 1-based rank convention
//! and how it maps to the paper's `τ = 10` and the reference code's anchor at rank 11 are in
//! [`SpectralLayer::tau`]). The training loss adds `β · R` per regularised layer. The
//! per-batch penalties themselves are in [`crate::penalty`], re-exported here.
//!
//! **Projected mode** (eq. 5, the default): the eigenvectors `V` of the layer's covariance
//! over the whole training set are recomputed at the start of each epoch
//! ([`SpectralRegularizer::refresh`]) and held fixed; per batch, `λ̂_n = ‖H_c v_n‖²/(B − 1)`
//! and the gradient flows through `H` only: `∂R/∂H = (2/(B − 1)) H_c V diag(∂R/∂λ̂) Vᵀ`.
//! It costs two `B × N × N` GEMMs. By default the projected eigenvalues are sorted
//! descending before the penalty, as in the reference implementation
//! ([`SpectralRegularizer::with_sort_projected`]; `false` keeps `V`'s column order, the
//! full-data spectrum's order).
//!
//! **Exact mode** eigendecomposes the batch covariance every step, `O(N³)`.

use ndarray::ArrayView2;
use specreg_nn::{ForwardPass, HookOutput, Network, NnError, TrainHook};
use specreg_tensor::{DType, Tensor};

use crate::covariance::representation_statistics;
use crate::error::{RegularizerError, Result, invalid};
pub use crate::penalty::{
    SpectralValue, exact_penalty, projected_eigenvalues, projected_penalty,
    projected_penalty_sorted, spectral_penalty, spectral_penalty_tensor,
};
use crate::penalty::{batch_eigen, check_lambda_tau, relative_error};
use crate::spectrum::eigen_descending;

/// The regularisation of one hidden representation.
#[derive(Debug, Clone, PartialEq)]
pub struct SpectralLayer {
    /// The representation's name in the [`Network`] (`hidden`, `fc1`, `conv2`, …).
    pub name: String,
    /// Target decay exponent `α` of `γ_n = κ n^(−α)` (the paper: 1).
    pub alpha: f64,
    /// Anchor rank `τ`, 1-based: `κ = λ_τ τ^α` (`λ_τ` is `lambda[τ − 1]`), and ranks
    /// `τ + 1 ..= N` are penalised. The paper's text: `τ = 10` (anchor at rank 10, ranks
    /// 11..N penalised; the default of [`SpectralLayer::new`]). The public reference code
    /// (`start=10`, 0-based) anchors at rank 11 and penalises ranks 12..N: `τ = 11` here.
    /// Must be below the width.
    pub tau: usize,
    /// Weight `β` of this layer's penalty in the loss (the paper: 1, 2 or 5).
    pub beta: f64,
}

impl SpectralLayer {
    /// A layer with the paper's `α = 1`, `τ = 10` (anchor rank 10) and the given `β`.
    pub fn new(name: impl Into<String>, beta: f64) -> Self {
        Self {
            name: name.into(),
            alpha: 1.0,
            tau: 10,
            beta,
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |reason: String| {
            Err(invalid(
                format!("spectral regulariser of {}", self.name),
                reason,
            ))
        };
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return bad(format!("alpha must be finite and > 0, got {}", self.alpha));
        }
        if self.tau == 0 {
            return bad("tau is a 1-based rank and must be ≥ 1, got 0".into());
        }
        if !(self.beta.is_finite() && self.beta >= 0.0) {
            return bad(format!("beta must be finite and ≥ 0, got {}", self.beta));
        }
        Ok(())
    }
}

/// Checks a per-layer `α` schedule `α_1 ≥ α_2 ≥ … ≥ α_D = 1` (the paper's proposed
/// extension: faster decay in early layers, `1/n` at the last). Every `α` must be finite
/// and positive.
pub fn check_alpha_schedule(alphas: &[f64]) -> Result<()> {
    let bad = |reason: String| Err(invalid("alpha schedule", reason));
    let Some(&last) = alphas.last() else {
        return bad("is empty".into());
    };
    if let Some((i, a)) = alphas
        .iter()
        .enumerate()
        .find(|(_, a)| !(a.is_finite() && **a > 0.0))
    {
        return bad(format!("alpha[{i}] = {a} must be finite and > 0"));
    }
    if let Some(i) = (1..alphas.len()).find(|&i| alphas[i] > alphas[i - 1]) {
        return bad(format!(
            "must be non-increasing, but alpha[{i}] = {} > alpha[{}] = {}",
            alphas[i],
            i - 1,
            alphas[i - 1]
        ));
    }
    if last != 1.0 {
        return bad(format!("must end at 1 (the 1/n law), ends at {last}"));
    }
    Ok(())
}

/// How the eigenvalues are obtained per batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EigenMode {
    /// Eigenvectors fixed per epoch from the whole training set (eq. 5).
    #[default]
    Projected,
    /// Eigendecomposition of every batch's covariance.
    Exact,
}

/// The spectral regulariser of a network: one [`SpectralLayer`] per regularised
/// representation, plugged into [`specreg_nn::train_epoch`] as its [`TrainHook`].
///
/// Per step it reads nothing back itself: each layer's `R_l` and `λ_τ` (and, on the first
/// batch after a refresh, the diagnostic) go into [`HookOutput::scalars`], which the
/// training loop reads with the loss in the step's one host read and hands back to
/// [`TrainHook::observe`]; that is where `λ_τ ≤ 0` becomes
/// [`RegularizerError::RankBelowTau`] (carried in [`NnError::Hook`], inside the loop's
/// [`NnError::AtStep`]), a non-finite `λ_τ` [`RegularizerError::NonFiniteRepresentation`]
/// and a non-finite `R_l` [`RegularizerError::NonFiniteTerm`], before the optimiser step.
///
/// ```no_run
/// # use specreg_regularizers::{EigenMode, SpectralLayer, SpectralRegularizer};
/// # use specreg_nn::{Adam, AdamConfig, Network, train_epoch};
/// # use specreg_tensor::{DType, Device, Rng};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let mut rng = Rng::new(0);
/// # let mut net = Network::shallow(&mut rng, DType::F32, &Device::Cpu)?;
/// # let mut adam = Adam::new(AdamConfig::new(1e-3))?;
/// # let images = ndarray::Array2::<f32>::zeros((10, 784)); let labels = [0u8; 10];
/// # let batches = vec![(0..10).collect::<Vec<_>>()];
/// let mut spec = SpectralRegularizer::new(vec![SpectralLayer::new("hidden", 2.0)], EigenMode::Projected)?;
/// for epoch in 0..2 {
///     spec.refresh(&mut net, images.view(), 2000)?; // eigenvectors over the training set
///     let stats = train_epoch(&mut net, &mut adam, images.view(), &labels, &batches, epoch,
///                             &mut spec)?;
///     let terms = spec.take_epoch_terms(); // mean R per layer
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SpectralRegularizer {
    layers: Vec<SpectralLayer>,
    mode: EigenMode,
    eigenvectors: Vec<Option<Tensor>>,
    sort_projected: bool,
    diagnose: bool,
    measure_next: bool,
    term_sums: Vec<f64>,
    term_samples: usize,
    eigen_errors: Vec<Option<f64>>,
    /// Batches seen (the `step` of [`RegularizerError::NonFiniteRepresentation`]).
    steps: usize,
    /// What the last [`SpectralRegularizer::hook`] left for [`TrainHook::observe`].
    pending: Option<Pending>,
}

/// The host-side facts of a step whose scalars are still on the device.
#[derive(Debug, Clone, Copy)]
struct Pending {
    step: usize,
    batch: usize,
    measured: bool,
}

impl SpectralRegularizer {
    /// A regulariser for `layers` in `mode`, with the projected-vs-exact diagnostic on and
    /// the projected eigenvalues sorted per batch (the reference's behaviour).
    ///
    /// # Errors
    /// No layers, a repeated name, or a layer with `α ≤ 0`, `τ = 0` or `β < 0`.
    pub fn new(layers: Vec<SpectralLayer>, mode: EigenMode) -> Result<Self> {
        if layers.is_empty() {
            return Err(invalid("spectral regulariser", "needs at least one layer"));
        }
        for (i, l) in layers.iter().enumerate() {
            l.validate()?;
            if layers[..i].iter().any(|o| o.name == l.name) {
                return Err(invalid(
                    "spectral regulariser",
                    format!("layer {:?} is listed twice", l.name),
                ));
            }
        }
        let k = layers.len();
        Ok(Self {
            layers,
            mode,
            eigenvectors: vec![None; k],
            sort_projected: true,
            diagnose: true,
            measure_next: mode == EigenMode::Projected,
            term_sums: vec![0.0; k],
            term_samples: 0,
            eigen_errors: vec![None; k],
            steps: 0,
            pending: None,
        })
    }

    /// Turns the per-epoch projected-vs-exact eigenvalue diagnostic on or off (it costs one
    /// batch eigendecomposition per layer per epoch).
    pub fn with_diagnostic(mut self, on: bool) -> Self {
        self.diagnose = on;
        self
    }

    /// Whether projected mode sorts each batch's projected eigenvalues descending before the
    /// penalty ([`projected_penalty_sorted`], the default and the reference's behaviour) or
    /// keeps them in the order of the fixed eigenvectors ([`projected_penalty`]). Exact mode's
    /// eigenvalues are always descending.
    pub fn with_sort_projected(mut self, sort: bool) -> Self {
        self.sort_projected = sort;
        self
    }

    /// Whether projected eigenvalues are sorted per batch.
    pub fn sort_projected(&self) -> bool {
        self.sort_projected
    }

    /// The regularised layers.
    pub fn layers(&self) -> &[SpectralLayer] {
        &self.layers
    }

    /// The mode.
    pub fn mode(&self) -> EigenMode {
        self.mode
    }

    /// The fixed eigenvectors of layer `i` (projected mode, after a refresh).
    pub fn eigenvectors(&self, i: usize) -> Option<&Tensor> {
        self.eigenvectors.get(i).and_then(Option::as_ref)
    }

    /// Projected mode: recomputes every layer's eigenvectors from its covariance over
    /// `images` (the whole training set, `Eval` mode, `f64` accumulation and
    /// eigendecomposition, in the deterministic chunks of
    /// [`chunk_ranges`](crate::chunk_ranges)`(M, batch_size)`), and arms the diagnostic for
    /// the next batch. Exact mode: does nothing. Call it at the start of every epoch.
    ///
    /// The covariance is that of the representations the `Eval` forward pass produces:
    /// BatchNorm and running-statistics whitening use their running statistics, while a
    /// [`Whitening`](crate::Whitening) layer with batch statistics (the default, as the
    /// reference) whitens each chunk with the chunk's own statistics, as a training batch is.
    /// For those, use a `batch_size ≥` the layer's [`min_batch`](crate::Whitening::min_batch)
    /// (`N + 1`), ideally the training batch size; the reference forwards the whole set at
    /// once (`batch_size ≥ M`).
    ///
    /// Host reads: one (the covariances' finiteness check); the eigenvectors stay on the
    /// device.
    pub fn refresh(
        &mut self,
        net: &mut Network,
        images: ArrayView2<'_, f32>,
        batch_size: usize,
    ) -> Result<()> {
        if self.mode == EigenMode::Exact {
            return Ok(());
        }
        let names: Vec<&str> = self.layers.iter().map(|l| l.name.as_str()).collect();
        let stats = representation_statistics(net, &names, images, batch_size)?;
        let (dtype, _) = net.dtype_device();
        for (slot, (st, layer)) in self
            .eigenvectors
            .iter_mut()
            .zip(stats.iter().zip(&self.layers))
        {
            let width = st.covariance.shape()[0];
            if layer.tau >= width {
                return Err(RegularizerError::TauNotBelowWidth {
                    layer: layer.name.clone(),
                    tau: layer.tau,
                    width,
                });
            }
            let (_, v) = eigen_descending(&st.covariance)
                .map_err(|e| e.eigen_of(&layer.name, "training-set covariance"))?;
            *slot = Some(v.to_dtype(dtype)?);
        }
        self.measure_next = true;
        Ok(())
    }

    /// This batch's `Σ_l β_l R_l` (0-D, `f64`) and the injected gradients `β_l ∂R_l/∂H_l`,
    /// with, as [`HookOutput::scalars`], each layer's `R_l` and `λ_τ` (then, on a
    /// diagnostic batch, each layer's projected-vs-exact error) for
    /// [`TrainHook::observe`]. Nothing is read back here.
    ///
    /// # Errors
    /// A layer the pass lacks, `τ` not below a width, a batch of fewer than two rows, or
    /// projected mode before the first [`refresh`](Self::refresh).
    fn hook(&mut self, pass: &ForwardPass) -> Result<HookOutput> {
        self.pending = None;
        let mut values = Vec::with_capacity(2 * self.layers.len());
        let mut errors = Vec::new();
        let mut injections = Vec::with_capacity(self.layers.len());
        let mut total: Option<Tensor> = None;
        let mut batch = 0;
        let measure = self.measure_next && self.diagnose && self.mode == EigenMode::Projected;
        for (i, layer) in self.layers.iter().enumerate() {
            let h = pass
                .get(&layer.name)
                .ok_or_else(|| NnError::UnknownRepresentation {
                    name: layer.name.clone(),
                    available: pass.hidden.iter().map(|(n, _)| n.clone()).collect(),
                })?;
            let (b, n) = h.dims2()?;
            if layer.tau >= n {
                return Err(RegularizerError::TauNotBelowWidth {
                    layer: layer.name.clone(),
                    tau: layer.tau,
                    width: n,
                });
            }
            batch = b;
            let sv = match self.mode {
                EigenMode::Exact => exact_penalty(h, layer.alpha, layer.tau)
                    .map_err(|e| e.eigen_of(&layer.name, "batch covariance"))?,
                EigenMode::Projected => {
                    let v = self.eigenvectors[i].as_ref().ok_or_else(|| {
                        RegularizerError::RefreshRequired {
                            layer: layer.name.clone(),
                        }
                    })?;
                    if self.sort_projected {
                        projected_penalty_sorted(h, v, layer.alpha, layer.tau)?
                    } else {
                        projected_penalty(h, v, layer.alpha, layer.tau)?
                    }
                }
            };
            if measure {
                // Only the batch eigenvalues are needed, not the exact gradient.
                let (_, exact, _) =
                    batch_eigen(h).map_err(|e| e.eigen_of(&layer.name, "batch covariance"))?;
                let ranks: Vec<usize> = (layer.tau - 1..n).collect();
                errors.push(relative_error(
                    &sv.eigenvalues.index_select_rows(&ranks)?,
                    &exact.index_select_rows(&ranks)?,
                )?);
            }
            let weighted = sv.value.scale(layer.beta)?;
            total = Some(match total {
                Some(t) => t.add(&weighted)?,
                None => sv.value.full_like(0.0, &[])?.add(&weighted)?,
            });
            values.push(sv.value);
            values.push(sv.lambda_tau.to_dtype(DType::F64)?);
            injections.push((layer.name.clone(), sv.grad.scale(layer.beta)?));
        }
        self.pending = Some(Pending {
            step: self.steps,
            batch,
            measured: measure,
        });
        self.steps += 1;
        values.extend(errors);
        Ok(HookOutput {
            extra: total,
            injections,
            scalars: values,
        })
    }

    /// The step's scalars read back (`R_l`, `λ_τ` per layer, then the diagnostic errors):
    /// checks every `λ_τ` and `R_l`, then adds the terms to the epoch averages.
    fn observe_values(&mut self, values: &[f64]) -> Result<()> {
        let pending = self.pending.take().ok_or_else(|| {
            invalid(
                "spectral regulariser",
                "observe() called without a hook() before it",
            )
        })?;
        let k = self.layers.len();
        let expected = 2 * k + if pending.measured { k } else { 0 };
        if values.len() != expected {
            return Err(invalid(
                "spectral regulariser",
                format!("observe() got {} values, expected {expected}", values.len()),
            ));
        }
        for (layer, pair) in self.layers.iter().zip(values.chunks_exact(2)) {
            check_lambda_tau(pair[1], &layer.name, layer.tau, pending.step)?;
            if !pair[0].is_finite() {
                return Err(RegularizerError::NonFiniteTerm {
                    layer: layer.name.clone(),
                    value: pair[0],
                    step: pending.step,
                });
            }
        }
        for (sum, pair) in self.term_sums.iter_mut().zip(values.chunks_exact(2)) {
            *sum += pair[0] * pending.batch as f64;
        }
        self.term_samples += pending.batch;
        if pending.measured {
            for (slot, &e) in self.eigen_errors.iter_mut().zip(&values[2 * k..]) {
                *slot = Some(e);
            }
            self.measure_next = false;
        }
        Ok(())
    }

    /// Each layer's `R_l` (without `β`) averaged over the samples since the last call, and
    /// resets the averages.
    pub fn take_epoch_terms(&mut self) -> Vec<(String, f64)> {
        let m = self.term_samples.max(1) as f64;
        let out = self
            .layers
            .iter()
            .zip(&self.term_sums)
            .map(|(l, s)| (l.name.clone(), s / m))
            .collect();
        self.term_sums.iter_mut().for_each(|s| *s = 0.0);
        self.term_samples = 0;
        out
    }

    /// The diagnostic measured since the last call, per layer: the relative error
    /// `‖λ̂ − λ‖₂ / ‖λ‖₂` over ranks `n ≥ τ` between the projected eigenvalues the penalty
    /// used (sorted descending when [`Self::sort_projected`], else in `V`'s column order)
    /// and the exact (descending) eigenvalues of the same batch (the first batch after each
    /// refresh). Large values mean the fixed-eigenvector shortcut's assumption (slow drift
    /// within an epoch) is failing.
    pub fn take_eigen_errors(&mut self) -> Vec<(String, f64)> {
        self.layers
            .iter()
            .zip(&mut self.eigen_errors)
            .filter_map(|(l, e)| e.take().map(|e| (l.name.clone(), e)))
            .collect()
    }
}

/// The regulariser in [`specreg_nn::train_epoch`]: `regularize` gives this batch's
/// `Σ_l β_l R_l` (0-D, `f64`) and the injected gradients `β_l ∂R_l/∂H_l`, with, as
/// [`HookOutput::scalars`], each layer's `R_l` and `λ_τ` (then, on the first batch after a
/// refresh, each layer's projected-vs-exact error); `observe` must get their values back
/// (as the training loop does): it checks every `λ_τ` and adds the terms to the epoch
/// averages and the diagnostic.
///
/// `regularize` fails on a layer the pass lacks, `τ` not below a width, a batch of fewer
/// than two rows, or projected mode before the first [`refresh`](SpectralRegularizer::refresh)
/// ([`RegularizerError::RefreshRequired`]); `observe` on `λ_τ ≤ 0`
/// ([`RegularizerError::RankBelowTau`]), a non-finite `λ_τ`
/// ([`RegularizerError::NonFiniteRepresentation`]) or a non-finite `R_l`
/// ([`RegularizerError::NonFiniteTerm`]); an eigendecomposition that fails is
/// [`RegularizerError::EigenFailed`]. All carry the error in [`NnError::Hook`], which the
/// training loop wraps in [`NnError::AtStep`] with the step.
impl TrainHook for SpectralRegularizer {
    fn regularize(
        &mut self,
        pass: &ForwardPass,
        _labels: &[usize],
    ) -> specreg_nn::Result<HookOutput> {
        Ok(self.hook(pass)?)
    }

    fn observe(&mut self, values: &[f64]) -> specreg_nn::Result<()> {
        Ok(self.observe_values(values)?)
    }
}
