//! The error type of the regularizers crate.
//!
//! The numerical failures a regulariser can meet get their own variants, so that a caller
//! can tell them apart (a representation whose rank fell below the anchor rank, NaN
//! activations, a projected regulariser used before its first refresh). Errors of the
//! network and of tensor operations are wrapped.
//!
//! These pieces run inside the nn crate's training loop, whose error type is
//! [`NnError`]: `From<RegularizerError> for NnError` puts a regulariser's error into
//! [`NnError::Hook`] (and unwraps a wrapped `NnError` again). The training loop puts an
//! error raised during a step into [`NnError::AtStep`] (naming the epoch, batch and
//! step); [`NnError::innermost`] unwraps it, and [`is_numerical_failure`] tells the run's
//! numerical failures from the program's errors. A caller of [`specreg_nn::train_epoch`]
//! gets a regulariser's error back with
//!
//! ```
//! # use specreg_nn::NnError;
//! # use specreg_regularizers::RegularizerError;
//! # let e: NnError = RegularizerError::RankBelowTau { layer: "fc3".into(), tau: 10, lambda_tau: 0.0 }.into();
//! # let e = e.at_step(0, 3, 3);
//! if let NnError::Hook(inner) = e.innermost()
//!     && let Some(RegularizerError::RankBelowTau { layer, .. }) = inner.downcast_ref()
//! {
//!     assert_eq!(layer, "fc3");
//! }
//! ```

use specreg_nn::NnError;

/// Everything that can go wrong in a regulariser, a whitening layer's setup or a spectrum.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegularizerError {
    /// The network (a forward or backward pass, an unknown representation name) failed.
    #[error(transparent)]
    Nn(#[from] NnError),
    /// A tensor operation failed.
    #[error(transparent)]
    Tensor(#[from] specreg_tensor::Error),
    /// The anchor eigenvalue `λ_τ` of a batch is not positive: the representation has rank
    /// below `τ`, and the target spectrum `κ n^(−α)` with `κ = λ_τ τ^α` is degenerate.
    #[error(
        "spectral regulariser of {layer}: λ_τ = λ_{tau} = {lambda_tau} is not positive: \
         the representation has rank below τ"
    )]
    RankBelowTau {
        /// The regularised representation.
        layer: String,
        /// The anchor rank `τ` (1-based).
        tau: usize,
        /// The batch's `λ_τ`.
        lambda_tau: f64,
    },
    /// A training batch's representation holds NaN or infinite values (seen through its
    /// eigenvalues).
    #[error("{layer}: the representation holds NaN or infinite values at step {step}")]
    NonFiniteRepresentation {
        /// The representation.
        layer: String,
        /// The regulariser's step (0-based count of batches since it was built).
        step: usize,
    },
    /// A regularised layer's penalty `R` is NaN or infinite although its `λ_τ` is finite and
    /// positive (an eigenvalue above the anchor is not finite, or a ratio `λ_n/γ_n`
    /// overflowed).
    #[error("spectral regulariser of {layer}: the penalty R is {value} at step {step}")]
    NonFiniteTerm {
        /// The regularised representation.
        layer: String,
        /// The penalty's value.
        value: f64,
        /// The regulariser's step (0-based count of batches since it was built).
        step: usize,
    },
    /// The eigendecomposition of a representation's covariance failed (the solver did not
    /// converge): the batch covariance in exact mode or for the diagnostic, or the
    /// training-set covariance of a refresh.
    #[error("{layer}: the eigendecomposition of the {matrix} ({n}×{n}) failed to converge")]
    EigenFailed {
        /// The representation.
        layer: String,
        /// Which covariance (`batch covariance`, `training-set covariance`).
        matrix: &'static str,
        /// Its size.
        n: usize,
    },
    /// A covariance over a data set holds NaN or infinite values (its representation did).
    #[error("covariance of {representation}: the representation holds NaN or infinite values")]
    NonFiniteCovariance {
        /// The representation.
        representation: String,
    },
    /// A projected-mode spectral regulariser was used before its first
    /// [`refresh`](crate::SpectralRegularizer::refresh).
    #[error(
        "spectral regulariser of {layer}: projected mode needs refresh() before the first batch"
    )]
    RefreshRequired {
        /// The representation.
        layer: String,
    },
    /// The anchor rank is not below the representation's width.
    #[error("spectral regulariser of {layer}: tau ({tau}) must be < the width ({width})")]
    TauNotBelowWidth {
        /// The representation (or `spectral penalty` for the bare function).
        layer: String,
        /// The anchor rank `τ`.
        tau: usize,
        /// The width `N`.
        width: usize,
    },
    /// Fewer samples than a covariance or a whitening needs.
    #[error("{what}: needs at least {needed} samples, got {got}")]
    TooFewSamples {
        /// What needed them.
        what: String,
        /// The least number that works.
        needed: usize,
        /// The number given.
        got: usize,
    },
    /// A tensor of the wrong shape.
    #[error("{what}: expected shape {expected}, got {got:?}")]
    ShapeMismatch {
        /// What received it.
        what: String,
        /// What is accepted, in words (e.g. `[b, 1000]`).
        expected: String,
        /// The shape given.
        got: Vec<usize>,
    },
    /// A constructor or method argument is out of range.
    #[error("{what}: {reason}")]
    InvalidArgument {
        /// The constructor or method.
        what: String,
        /// What is wrong.
        reason: String,
    },
}

/// Result alias for the regularizers crate.
pub type Result<T> = std::result::Result<T, RegularizerError>;

impl RegularizerError {
    /// Whether this is a numerical failure of the training run (as opposed to a wrong
    /// argument or a misuse): `λ_τ ≤ 0`, a non-finite representation, penalty or
    /// covariance, a failed eigendecomposition, or a numerical failure of the network
    /// ([`NnError::is_numerical`]).
    pub fn is_numerical(&self) -> bool {
        match self {
            Self::RankBelowTau { .. }
            | Self::NonFiniteRepresentation { .. }
            | Self::NonFiniteTerm { .. }
            | Self::NonFiniteCovariance { .. }
            | Self::EigenFailed { .. } => true,
            Self::Nn(e) => e.is_numerical(),
            Self::Tensor(e) => matches!(
                e,
                specreg_tensor::Error::NotPositiveDefinite { .. }
                    | specreg_tensor::Error::EigenNoConvergence { .. }
            ),
            _ => false,
        }
    }

    /// [`RegularizerError::EigenFailed`] for `layer`'s `matrix` in place of the tensor
    /// crate's `EigenNoConvergence`; any other error unchanged.
    pub(crate) fn eigen_of(self, layer: &str, matrix: &'static str) -> Self {
        match self {
            Self::Tensor(specreg_tensor::Error::EigenNoConvergence { n }) => Self::EigenFailed {
                layer: layer.into(),
                matrix,
                n,
            },
            e => e,
        }
    }
}

/// Whether a training error is a numerical failure of the run: [`NnError::is_numerical`],
/// or a numerical [`RegularizerError`] carried in [`NnError::Hook`], at a step
/// ([`NnError::AtStep`], [`NnError::BeforeEpoch`]) or not.
pub fn is_numerical_failure(e: &NnError) -> bool {
    match e.innermost() {
        NnError::Hook(inner) => inner
            .downcast_ref::<RegularizerError>()
            .is_some_and(RegularizerError::is_numerical),
        inner => inner.is_numerical(),
    }
}

impl From<RegularizerError> for NnError {
    /// A wrapped [`NnError`] comes back out as itself; any other error is carried in
    /// [`NnError::Hook`], from which `downcast_ref::<RegularizerError>()` recovers it.
    fn from(e: RegularizerError) -> Self {
        match e {
            RegularizerError::Nn(inner) => inner,
            other => NnError::Hook(Box::new(other)),
        }
    }
}

/// An [`RegularizerError::InvalidArgument`].
pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> RegularizerError {
    RegularizerError::InvalidArgument {
        what: what.into(),
        reason: reason.into(),
    }
}
