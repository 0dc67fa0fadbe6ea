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
    /// The training loss became NaN or infinite.
    #[error("training diverged: loss {loss} at epoch {epoch}, batch {batch}")]
    Diverged {
        /// The epoch (as passed to the trainer).
        epoch: usize,
        /// The batch within the epoch (0-based).
        batch: usize,
        /// The non-finite loss.
        loss: f64,
    },
}

/// Result alias for the `nn` crate.
pub type Result<T> = std::result::Result<T, NnError>;
