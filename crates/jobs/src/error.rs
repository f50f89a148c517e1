use palisade_store::StoreError;

/// Why the queue could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("job payload is not serializable: {0}")]
    Payload(#[from] serde_json::Error),
}

/// Why a job's attempt failed, as its handler says it. The message is stored in the job's
/// `last_error`, so it must not contain secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFailure(pub String);

impl<E: std::error::Error> From<E> for JobFailure {
    fn from(error: E) -> Self {
        Self(error.to_string())
    }
}

impl std::fmt::Display for JobFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
