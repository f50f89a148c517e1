//! The event types an endpoint can subscribe to: every `action` a write commits
//! (`ctx.commit(Change { action, .. })`), since each becomes an outbox event of that type. The
//! platform's own are listed here; each resource declares its own in its module's `EVENTS`
//! (collected by `build.rs`), so adding a resource adds its events without editing this file.

use std::sync::LazyLock;

/// The platform's event types (tenants, tokens, users, exports), sorted. A new audited action
/// outside the resources is added here in the same change; actions passed by name, like the
/// tenant status changes in `routes/tenants.rs`, are not found by the test below and need care.
const PLATFORM: [&str; 11] = [
    "export.completed",
    "export.requested",
    "tenant.created",
    "tenant.deleted",
    "tenant.reactivated",
    "tenant.restored",
    "tenant.suspended",
    "token.revoked",
    "user.erased",
    "user.provisioned",
    "user.role_changed",
];

/// Every event type, sorted: the platform's and every resource's.
pub static EVENT_TYPES: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    let mut all: Vec<&'static str> =
        PLATFORM.iter().chain(crate::resources::EVENTS.iter().copied().flatten()).copied().collect();
    all.sort_unstable();
    all.dedup();
    all
});

pub fn is_known(event_type: &str) -> bool {
    EVENT_TYPES.binary_search(&event_type).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lists_are_sorted_so_lookups_can_bisect_them() {
        assert!(PLATFORM.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(EVENT_TYPES.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(is_known("todo.created") && !is_known("todo.exploded"));
    }

    /// Every action committed in the source is a known event type, so no write emits an event
    /// that no endpoint could subscribe to.
    #[test]
    fn every_committed_action_in_the_source_is_listed() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut missing = Vec::new();
        let mut stack = vec![root.join("api/src"), root.join("tenancy/src")];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("source dir") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let text = std::fs::read_to_string(&path).expect("source");
                for part in text.split("action: \"").skip(1) {
                    let action = part.split('"').next().unwrap_or_default();
                    if !is_known(action) {
                        missing.push(format!("{action} ({})", path.display()));
                    }
                }
            }
        }
        assert!(missing.is_empty(), "actions missing from EVENT_TYPES: {missing:?}");
    }
}
