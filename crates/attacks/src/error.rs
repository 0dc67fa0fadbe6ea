//! The error type of the `attacks` crate.

/// Everything that can go wrong while attacking a model or computing a sensitivity map.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttackError {
    /// A tensor operation failed.
    #[error(transparent)]
    Tensor(#[from] specreg_tensor::Error),
    /// The network failed (shape mismatch, unknown representation, …).
    #[error(transparent)]
    Nn(#[from] specreg_nn::NnError),
    /// A data-set covariance or its eigendecomposition failed (the shared accumulator and
    /// eigen path of the regularizers crate, behind the sensitivity maps).
    #[error(transparent)]
    Regularizer(#[from] specreg_regularizers::RegularizerError),
    /// A user-supplied [`Classifier`](crate::Classifier) failed.
    #[error("classifier: {0}")]
    Model(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// An argument or configuration value is out of range.
    #[error("{what}: {reason}")]
    InvalidArgument {
        /// The function or configuration field.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// The data handed to an evaluation is inconsistent (lengths, widths, pixel range).
    #[error("{what}: {reason}")]
    InvalidData {
        /// The function that received the data.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// The classifier cannot do what the attack asks (e.g. differentiate a loss other than
    /// the cross-entropy).
    #[error("{what}: {reason}")]
    Unsupported {
        /// The method or attack.
        what: String,
        /// What is missing.
        reason: String,
    },
    /// A loss, gradient or eigenvalue came out NaN or infinite.
    #[error("{what}: non-finite value {value}{}", sample_suffix(*.sample))]
    NonFinite {
        /// The quantity that is not finite.
        what: String,
        /// The offending value, or NaN where a device-side check only records that some
        /// value of the sample was not finite (`0 · v` is NaN exactly when `v` is).
        value: f64,
        /// The sample (row of the batch) it belongs to, if a single one is to blame; `None`
        /// for a quantity of the whole data set (an eigenvalue).
        sample: Option<usize>,
    },
}

/// `" (sample i)"`, or nothing when no sample is to blame.
fn sample_suffix(sample: Option<usize>) -> String {
    sample.map_or_else(String::new, |i| format!(" (sample {i})"))
}

/// Result alias for the `attacks` crate.
pub type Result<T> = std::result::Result<T, AttackError>;

/// An [`AttackError::InvalidArgument`].
pub(crate) fn invalid(what: &str, reason: impl Into<String>) -> AttackError {
    AttackError::InvalidArgument {
        what: what.to_string(),
        reason: reason.into(),
    }
}

/// An [`AttackError::InvalidData`].
pub(crate) fn invalid_data(what: &str, reason: impl Into<String>) -> AttackError {
    AttackError::InvalidData {
        what: what.to_string(),
        reason: reason.into(),
    }
}
