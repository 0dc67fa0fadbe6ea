//! Typed errors of the configuration and profile layer (the runner uses `anyhow` on top).

/// A config or profile file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A profile name that is neither built in nor a file.
    #[error("unknown profile {name:?}: not smoke, quick or paper, and {path} does not exist")]
    UnknownProfile {
        /// The name given.
        name: String,
        /// Where a profile of that name was looked for.
        path: String,
    },
    /// The text is not valid TOML.
    #[error("{origin}: invalid TOML: {message}")]
    Syntax {
        /// The file (or other origin) of the text.
        origin: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A key is unknown, has the wrong type, or its value is out of range.
    #[error("{origin}: {key}: {message}")]
    Invalid {
        /// The file (or other origin) of the text.
        origin: String,
        /// The dotted path of the key (`spectral.beta`).
        key: String,
        /// What is wrong.
        message: String,
    },
}
