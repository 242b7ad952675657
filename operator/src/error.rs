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
    /// A run's `spec.prompt` could not be read from the API server for a write that carries it
    /// (the run has none there, or was replaced): the write is not made with an empty prompt.
    #[error("prompt unavailable: {0}")]
    PromptUnavailable(String),
    /// The reconcile's own bookkeeping went wrong (a bug): e.g. a decision kept asking for facts.
    #[error("internal error: {0}")]
    Internal(String),
    /// An error in one stage of the AgentRun reconcile (read, write, status write), with what
    /// it was doing (a fact it read, a write it made).
    #[error("{stage} {what}: {source}")]
    Stage {
        /// The stage.
        stage: Stage,
        /// What it was doing, e.g. `Pool` or `StartPod`.
        what: String,
        /// The error.
        source: Box<Error>,
    },
}

/// The stages of the AgentRun reconcile ([`crate::controller::agentrun`]): reading facts,
/// making the plan's writes, writing the status. Each has its own retry policy
/// ([`Error::retry_after`]) and its own `reason` label on `paddock_reconcile_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Reading a fact (the API server or the cache).
    Read,
    /// One of the plan's writes (a pod, a gate, a Workload, an artifact, a deletion).
    Write,
    /// The status write (server-side apply of `status`).
    Status,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Read => "reading",
            Stage::Write => "writing",
            Stage::Status => "writing the status of",
        })
    }
}

impl Error {
    /// Stable CamelCase reason for Events and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube(_) => "KubeApiError",
            Error::Serialization(_) => "SerializationError",
            Error::MissingField(_) => "MissingField",
            Error::PromptUnavailable(_) => "PromptUnavailable",
            Error::Internal(_) => "InternalError",
            Error::Stage { stage: Stage::Read, .. } => "ReadFailed",
            Error::Stage {
                stage: Stage::Write, ..
            } => "WriteFailed",
            Error::Stage {
                stage: Stage::Status,
                source,
                ..
            } if source.is_conflict() => "StatusConflict",
            Error::Stage {
                stage: Stage::Status, ..
            } => "StatusWriteFailed",
        }
    }
}

impl Error {
    /// This error as one of `stage`, doing `what`.
    pub fn at(self, stage: Stage, what: impl Into<String>) -> Error {
        Error::Stage {
            stage,
            what: what.into(),
            source: Box::new(self),
        }
    }

    /// Whether the API server answered 409 Conflict.
    pub fn is_conflict(&self) -> bool {
        match self {
            Error::Kube(kube::Error::Api(e)) => e.code == 409,
            Error::Stage { source, .. } => source.is_conflict(),
            _ => false,
        }
    }

    /// How long the controller waits before it reconciles the object again: a status write
    /// that lost a conflict at once (the watch brings the newer object; 1 s), a failed read soon
    /// (2 s; the cache or the API server catching up), a failed write later (5 s, as any other
    /// API error), a bug much later (60 s; it will fail again, but the object is not given up).
    pub fn retry_after(&self) -> std::time::Duration {
        let secs = match self {
            Error::Stage {
                stage: Stage::Status, ..
            } if self.is_conflict() => 1,
            Error::Stage { stage: Stage::Read, .. } => 2,
            Error::Internal(_) | Error::Serialization(_) | Error::MissingField(_) => 60,
            Error::Stage { source, .. } if matches!(**source, Error::Internal(_)) => 60,
            _ => 5,
        };
        std::time::Duration::from_secs(secs)
    }
}

/// Result of a reconcile step.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16) -> Error {
        Error::Kube(kube::Error::Api(
            kube::core::Status::failure("refused", "Reason").with_code(code).boxed(),
        ))
    }

    #[test]
    fn each_stage_has_its_reason_and_retry() {
        let cases = [
            (api(500).at(Stage::Read, "Pool"), "ReadFailed", 2),
            (api(500).at(Stage::Write, "StartPod"), "WriteFailed", 5),
            (api(409).at(Stage::Status, "AgentRun"), "StatusConflict", 1),
            (api(500).at(Stage::Status, "AgentRun"), "StatusWriteFailed", 5),
            (api(500), "KubeApiError", 5),
            (Error::Internal("loop".into()), "InternalError", 60),
        ];
        for (e, reason, secs) in cases {
            assert_eq!((e.reason(), e.retry_after().as_secs()), (reason, secs), "{e}");
        }
        let message = api(404).at(Stage::Read, "Pool").to_string();
        assert!(message.starts_with("reading Pool: Kubernetes API error: "), "{message}");
    }
}
