//! The error type of the `nn` crate.

/// Everything that can go wrong in a layer, a loss or a [`Sequential`](crate::Sequential).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NnError {
    /// A tensor operation failed.
    #[error(transparent)]
    Tensor(#[from] specreg_tensor::Error),
    /// `backward` was called before `forward` cached what it needs.
    #[error("{layer}: backward called before forward")]
    BackwardBeforeForward {
        /// The layer's name.
        layer: String,
    },
    /// A pass was called out of order (e.g. `backward_tangent` before `backward` and
    /// `forward_tangent`).
    #[error("{layer}: {pass} called before {needs}")]
    OutOfOrder {
        /// The layer's name.
        layer: String,
        /// The pass that was called.
        pass: &'static str,
        /// The pass that must run first.
        needs: &'static str,
    },
    /// A layer got an input of the wrong shape.
    #[error("{layer}: expected input shape {expected}, got {got:?}")]
    ShapeMismatch {
        /// The layer's name.
        layer: String,
        /// What the layer accepts, in words (e.g. `[B, 784]`).
        expected: String,
        /// The shape it got.
        got: Vec<usize>,
    },
    /// No hidden representation of the network has this name.
    #[error("no hidden representation called {name:?}; valid names: {}", available.join(", "))]
    UnknownRepresentation {
        /// The name asked for.
        name: String,
        /// The network's representation names, in network order.
        available: Vec<String>,
    },
    /// A constructor or method argument is out of range.
    #[error("{what}: {reason}")]
    InvalidArgument {
        /// The constructor or method.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// An optimizer's state does not fit the parameters it is stepped with (their number or
    /// a shape changed between steps), or a saved state does not fit the optimizer.
    #[error("optimizer state: {param}: {reason}")]
    OptimizerState {
        /// The parameter (its position and name) or state entry.
        param: String,
        /// What is wrong.
        reason: String,
    },
    /// A state dict or checkpoint lacks a tensor the model needs.
    #[error("missing tensor {name}")]
    MissingTensor {
        /// The tensor's name (PyTorch naming, e.g. `0.weight`).
        name: String,
    },
    /// A state dict or checkpoint has a tensor the model does not.
    #[error("unexpected tensor {name}")]
    UnexpectedTensor {
        /// The tensor's name.
        name: String,
    },
    /// A tensor of a state dict or checkpoint has the wrong shape.
    #[error("tensor {name}: expected shape {expected:?}, found {found:?}")]
    TensorShape {
        /// The tensor's name.
        name: String,
        /// The model's shape.
        expected: Vec<usize>,
        /// The shape found.
        found: Vec<usize>,
    },
    /// A tensor of a state dict or checkpoint has the wrong element type.
    #[error("tensor {name}: expected dtype {expected}, found {found}")]
    TensorDType {
        /// The tensor's name.
        name: String,
        /// The model's dtype.
        expected: String,
        /// The dtype found.
        found: String,
    },
    /// A file is not a valid checkpoint (truncated, corrupt, or not safetensors).
    #[error("{file}: corrupt or invalid checkpoint: {reason}")]
    CorruptFile {
        /// The file.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A covariance that must be positive definite (whitening's batch covariance + εI)
    /// is not: its Cholesky factorisation failed at `pivot`.
    #[error("{layer}: covariance is not positive definite (Cholesky failed at pivot {pivot})")]
    NotPositiveDefinite {
        /// The layer (or representation) whose covariance failed.
        layer: String,
        /// The 0-based pivot where the factorisation broke down.
        pivot: usize,
    },
    /// A layer does not implement a pass (e.g. the second-order tangent passes of a layer
    /// that is never combined with the Jacobian regulariser).
    #[error("{layer}: {pass} is not supported")]
    Unsupported {
        /// The layer's name.
        layer: String,
        /// The pass.
        pass: &'static str,
    },
    /// A training hook or step (a regulariser) failed with its own error type. Match this
    /// variant and `downcast_ref` the box to the hook's error type (e.g. the regularizers
    /// crate's `RegularizerError`) to see which failure it was.
    #[error("{0}")]
    Hook(Box<dyn std::error::Error + Send + Sync + 'static>),
    /// A training step found a NaN or infinite value in its loss, a parameter gradient, its
    /// input or a layer's output, before the optimiser step (the parameters are unchanged).
    /// `epoch` is the caller's epoch number, `batch` the 0-based batch within it, `step` the
    /// number of optimiser steps taken before this one ([`Adam::steps_taken`](crate::Adam)).
    #[error(
        "training stopped at epoch {epoch}, batch {batch} (step {step}): {quantity}{}",
        seen_as(.seen)
    )]
    NonFinite {
        /// The epoch (as passed to the trainer).
        epoch: usize,
        /// The batch within the epoch (0-based).
        batch: usize,
        /// Optimiser steps taken before this one (0-based global step).
        step: u64,
        /// What was not finite: for a non-finite input or layer output, the first one along
        /// the forward pass.
        quantity: NonFiniteQuantity,
        /// When `quantity` is an input or activation: what the step's check saw first (the
        /// loss or a gradient, in words).
        seen: Option<String>,
    },
    /// A training step failed inside the step: a layer or regulariser refused it (a
    /// whitening Cholesky factorisation, an eigendecomposition, a regulariser's check such
    /// as `λ_τ ≤ 0`). `source` is the error itself; the step is numbered as in
    /// [`NnError::NonFinite`].
    #[error("training stopped at epoch {epoch}, batch {batch} (step {step}): {source}")]
    AtStep {
        /// The epoch (as passed to the trainer).
        epoch: usize,
        /// The batch within the epoch (0-based).
        batch: usize,
        /// Optimiser steps taken before this one (0-based global step).
        step: u64,
        /// What failed.
        source: Box<NnError>,
    },
    /// Preparing an epoch failed before its first step (e.g. a regulariser's refresh of its
    /// eigenvectors over the training set); `step` is the number of optimiser steps taken.
    #[error("training stopped before epoch {epoch} (step {step}): {source}")]
    BeforeEpoch {
        /// The epoch (as passed to the trainer).
        epoch: usize,
        /// Optimiser steps taken so far (the 0-based global step that was next).
        step: u64,
        /// What failed.
        source: Box<NnError>,
    },
}

/// What a training step found not finite (see [`NnError::NonFinite`]). Layers are named
/// `"{index}.{kind}"` with the representation they compute or lead to, e.g.
/// `2.linear (before fc2)`, `3.tanh (fc2)`, `6.linear (logits)`; parameters by their
/// checkpoint name `"{index}.{name}"` (`2.weight`).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum NonFiniteQuantity {
    /// A term of the loss: `the cross-entropy` or the regulariser's term.
    Loss {
        /// The term, in words.
        term: String,
        /// Its value (NaN or ±∞).
        value: f64,
    },
    /// The gradient of one parameter (the first, in network order, with a non-finite entry).
    Gradient {
        /// The parameter's checkpoint name (`2.weight`).
        parameter: String,
        /// The layer it belongs to.
        layer: String,
        /// How many of its entries are NaN or infinite.
        count: usize,
        /// Its number of entries.
        of: usize,
    },
    /// The output of the first layer of the forward pass whose output is not finite.
    Activation {
        /// The layer.
        layer: String,
        /// How many of its output values are NaN or infinite.
        count: usize,
        /// Its number of output values.
        of: usize,
    },
    /// The input batch itself.
    Input {
        /// How many input values are NaN or infinite.
        count: usize,
        /// The number of input values.
        of: usize,
    },
}

impl std::fmt::Display for NonFiniteQuantity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Loss { term, value } => write!(f, "{term} is {value}"),
            Self::Gradient {
                parameter,
                layer,
                count,
                of,
            } => write!(
                f,
                "gradient of {parameter} (layer {layer}) has {count} non-finite values of {of}"
            ),
            Self::Activation { layer, count, of } => write!(
                f,
                "output of layer {layer} has {count} non-finite values of {of} \
                 (the first layer whose output is not finite)"
            ),
            Self::Input { count, of } => {
                write!(f, "the input batch has {count} non-finite values of {of}")
            }
        }
    }
}

fn seen_as(seen: &Option<String>) -> String {
    seen.as_ref()
        .map_or_else(String::new, |s| format!("; the step saw {s}"))
}

impl NnError {
    /// This error as one of the step `(epoch, batch, step)` ([`NnError::AtStep`]); errors
    /// that already name their step are returned as they are.
    pub fn at_step(self, epoch: usize, batch: usize, step: u64) -> Self {
        match self {
            e @ (Self::NonFinite { .. } | Self::AtStep { .. } | Self::BeforeEpoch { .. }) => e,
            e => Self::AtStep {
                epoch,
                batch,
                step,
                source: Box::new(e),
            },
        }
    }

    /// This error as one that stopped training before epoch `epoch`, after `step` optimiser
    /// steps ([`NnError::BeforeEpoch`]); errors that already name their step are returned as
    /// they are.
    pub fn before_epoch(self, epoch: usize, step: u64) -> Self {
        match self {
            e @ (Self::NonFinite { .. } | Self::AtStep { .. } | Self::BeforeEpoch { .. }) => e,
            e => Self::BeforeEpoch {
                epoch,
                step,
                source: Box::new(e),
            },
        }
    }

    /// The error under any [`NnError::AtStep`] or [`NnError::BeforeEpoch`] wrapping.
    pub fn innermost(&self) -> &NnError {
        match self {
            Self::AtStep { source, .. } | Self::BeforeEpoch { source, .. } => source.innermost(),
            e => e,
        }
    }

    /// Whether this is a numerical failure of the network itself: a non-finite loss,
    /// gradient, input or activation ([`NnError::NonFinite`]), a
    /// Cholesky factorisation of a matrix that is not positive definite, or an
    /// eigendecomposition that did not converge, at a step or not. A hook's own errors
    /// ([`NnError::Hook`]) are the hook's to classify (the regularizers crate's
    /// `RegularizerError` has its numerical variants).
    pub fn is_numerical(&self) -> bool {
        use specreg_tensor::Error as T;
        matches!(
            self.innermost(),
            Self::NonFinite { .. }
                | Self::NotPositiveDefinite { .. }
                | Self::Tensor(T::NotPositiveDefinite { .. } | T::EigenNoConvergence { .. })
        )
    }
}

/// Result alias for the `nn` crate.
pub type Result<T> = std::result::Result<T, NnError>;
