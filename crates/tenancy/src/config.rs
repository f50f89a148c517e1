use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where a request's tenant can come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TenantSource {
    /// The token's tenant claim (`auth.tenant_claim`).
    Claim,
    /// The `X-Tenant-ID` header: a slug or a uuid.
    Header,
    /// The subdomain of `tenancy.base_domain` in the `Host` header.
    Subdomain,
}

/// The `[tenancy]` configuration section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TenancyConfig {
    /// Sources consulted, in order; the first present one names the tenant and every other present
    /// one must agree (403 otherwise). A token's tenant claim must agree even when `claim` is not
    /// listed; leaving it out lets tokens without a claim choose a tenant by header or subdomain.
    pub resolution_order: Vec<TenantSource>,
    /// With `acme.example.com` as base domain, `t1.acme.example.com` names tenant `t1`.
    pub base_domain: Option<String>,
    /// How long a tenant lookup is reused. Suspension and deletion do not wait for it: the
    /// per-request user lookup re-reads the tenant's status (`users::find_in_live_tenant`), or
    /// the membership epoch says it changed.
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
    /// Most tenants (and unknown names) kept in the lookup cache, and most users in the
    /// membership cache.
    pub cache_capacity: u64,
    /// How long a user looked up for a request is reused while its tenant's membership epoch in
    /// Redis is unchanged (crate::membership). Bounds how long a change is missed if its epoch
    /// bump is lost. Zero, or no Redis, looks the user up on every request.
    #[serde(with = "humantime_serde")]
    pub membership_cache_ttl: Duration,
    /// Create the `demo` tenant at startup in development, so `palisade token --tenant demo` works.
    pub seed_demo_tenant: bool,
    /// How long a deleted tenant can be restored; after this the `tenant.purge` job erases its
    /// data for good (docs/data-rights.md).
    #[serde(with = "humantime_serde")]
    pub erasure_grace: Duration,
}

impl Default for TenancyConfig {
    fn default() -> Self {
        Self {
            resolution_order: vec![TenantSource::Claim, TenantSource::Header, TenantSource::Subdomain],
            base_domain: None,
            cache_ttl: Duration::from_secs(30),
            cache_capacity: 10_000,
            membership_cache_ttl: Duration::from_secs(10),
            seed_demo_tenant: true,
            erasure_grace: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

impl TenancyConfig {
    /// Every problem with this section.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.resolution_order.is_empty() {
            problems.push("tenancy.resolution_order is empty: no request could name a tenant".to_owned());
        }
        let mut seen = Vec::new();
        for source in &self.resolution_order {
            if seen.contains(source) {
                problems.push(format!("tenancy.resolution_order lists {source:?} twice"));
            }
            seen.push(*source);
        }
        if self.resolution_order.contains(&TenantSource::Subdomain) && self.base_domain.as_deref() == Some("") {
            problems.push("tenancy.base_domain is empty; unset it or name the domain".to_owned());
        }
        if self.cache_capacity == 0 {
            problems.push("tenancy.cache_capacity must be greater than 0".to_owned());
        }
        problems
    }
}
