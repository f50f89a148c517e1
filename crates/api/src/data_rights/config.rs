//! The `[exports]` configuration section (docs/configuration.md).

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ExportsConfig {
    /// A finished export (and its archive) is deleted this long after it was requested, by the
    /// `cleanup.exports` job.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// The largest archive kept, in bytes (compressed). Archives live in the database, so every
    /// replica can serve them; a larger one fails the export rather than bloat a row (see
    /// docs/data-rights.md for the trade-off).
    pub max_bytes: u64,
}

impl Default for ExportsConfig {
    fn default() -> Self {
        Self { retention: Duration::from_secs(7 * 24 * 3600), max_bytes: 256 * 1024 * 1024 }
    }
}

impl ExportsConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.retention.is_zero() {
            problems.push("exports.retention must be greater than 0".to_owned());
        }
        if self.max_bytes == 0 {
            problems.push("exports.max_bytes must be greater than 0".to_owned());
        }
        // PostgreSQL's bytea holds at most 1 GiB.
        if self.max_bytes > 1024 * 1024 * 1024 {
            problems
                .push("exports.max_bytes must be at most 1 GiB (1073741824), the largest value a row holds".to_owned());
        }
        problems
    }
}
