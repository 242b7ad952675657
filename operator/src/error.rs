//! The operator's error type. Each variant maps to a stable CamelCase [`Error::reason`] used as
//! the Event reason and the `reason` label of `paddock_reconcile_errors_total`.

/// Errors of a reconcile. API errors are transient (the controller requeues with backoff);
/// the others describe a spec the operator cannot act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("Kubernetes API error: {0}")]
    Kube(#[from] kube::Error),
    /// An object the operator built could not be serialized (a bug).
    #[error("serialization error: {0}")]
    Serialization(#[from] serde_json::Error),
    /// The object lacks a field the API server always sets (namespace, uid).
    #[error("object is missing {0}")]
    MissingField(&'static str),
    /// The reconcile's own bookkeeping went wrong (a bug): e.g. a decision kept asking for facts.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Stable CamelCase reason for Events and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube(_) => "KubeApiError",
            Error::Serialization(_) => "SerializationError",
            Error::MissingField(_) => "MissingField",
            Error::Internal(_) => "InternalError",
        }
    }
}

/// Result of a reconcile step.
pub type Result<T, E = Error> = std::result::Result<T, E>;
