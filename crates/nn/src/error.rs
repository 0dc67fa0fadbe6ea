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
    /// A constructor or method argument is out of range.
    #[error("{what}: {reason}")]
    InvalidArgument {
        /// The constructor or method.
        what: String,
        /// What is wrong.
        reason: String,
    },
}

/// Result alias for the `nn` crate.
pub type Result<T> = std::result::Result<T, NnError>;
