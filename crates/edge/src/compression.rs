//! Response compression (gzip, brotli) for bodies big enough to be worth it.

use serde::{Deserialize, Serialize};
use tower_http::compression::{
    CompressionLayer, DefaultPredicate, Predicate,
    predicate::{And, SizeAbove},
};

/// The `[compression]` configuration section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompressionConfig {
    pub enabled: bool,
    /// Bodies smaller than this are sent as they are: compressing them costs more than it saves.
    pub min_size_bytes: u16,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        Self { enabled: true, min_size_bytes: 1024 }
    }
}

/// The predicate: tower-http's defaults (no images, gRPC or event streams) and the size threshold.
pub type CompressWhen = And<DefaultPredicate, SizeAbove>;

impl CompressionConfig {
    /// The layer, or `None` when disabled.
    pub fn layer(&self) -> Option<CompressionLayer<CompressWhen>> {
        self.enabled.then(|| {
            CompressionLayer::new()
                .gzip(true)
                .br(true)
                .compress_when(DefaultPredicate::new().and(SizeAbove::new(self.min_size_bytes)))
        })
    }
}
