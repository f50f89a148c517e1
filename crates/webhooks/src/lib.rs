//! Outgoing webhooks as a library: Standard Webhooks signatures, the SSRF address policy, and a
//! sender that applies both. No database and no routes: the application stores endpoints and
//! schedules attempts, and calls into this crate to sign and send them.

pub mod policy;
pub mod sender;
pub mod signature;

pub use policy::{AddressPolicy, Refusal};
pub use sender::{Attempt, BoxFuture, Message, Outcome, Resolve, Sender, SenderConfig, SenderError, SystemResolver};
pub use signature::{
    DEFAULT_TOLERANCE, HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, SecretError, SigningSecret, VerifyError, sign,
    signature_header, verify,
};
