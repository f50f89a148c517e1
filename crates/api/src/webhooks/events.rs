//! The event types an endpoint can subscribe to: every `action` a write commits
//! (`ctx.commit(Change { action, .. })`), since each becomes an outbox event of that type.

/// Every event type, sorted. A new audited action is added here in the same change (the test
/// below finds the literal `action` fields of `Change`s; actions passed by name, like the tenant status changes in
/// `routes/tenants.rs`, must be added by hand).
pub const EVENT_TYPES: [&str; 24] = [
    "api_key.created",
    "api_key.revoked",
    "api_key.rotated",
    "api_key.used_from_new_ip",
    "export.completed",
    "export.requested",
    "tenant.created",
    "tenant.deleted",
    "tenant.reactivated",
    "tenant.restored",
    "tenant.suspended",
    "todo.created",
    "todo.deleted",
    "todo.updated",
    "token.revoked",
    "user.erased",
    "user.provisioned",
    "user.role_changed",
    "webhook_delivery.redelivered",
    "webhook_endpoint.created",
    "webhook_endpoint.deleted",
    "webhook_endpoint.disabled",
    "webhook_endpoint.secret_rotated",
    "webhook_endpoint.updated",
];

pub fn is_known(event_type: &str) -> bool {
    EVENT_TYPES.binary_search(&event_type).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_sorted_so_lookups_can_bisect_it() {
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
