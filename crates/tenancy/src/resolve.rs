//! Which tenant a request is for. Sources are consulted in the configured order; all present
//! ones, and the token's tenant claim whenever it has one, must name the same tenant. A token without a tenant claim may only choose a tenant by
//! header or subdomain when it carries `platform:admin` (otherwise any signed-in user could join
//! any tenant by sending a header).

use std::sync::Arc;

use uuid::Uuid;

use crate::{
    TenancyConfig, TenancyError, TenantSource, TenantStatus,
    tenants::{Tenant, TenantDirectory, is_valid_slug},
};

/// The tenant names a request carries, before lookup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Candidates {
    pub claim: Option<String>,
    pub header: Option<String>,
    pub subdomain: Option<String>,
}

impl Candidates {
    fn get(&self, source: TenantSource) -> Option<&str> {
        match source {
            TenantSource::Claim => self.claim.as_deref(),
            TenantSource::Header => self.header.as_deref(),
            TenantSource::Subdomain => self.subdomain.as_deref(),
        }
    }
}

fn label(source: TenantSource) -> &'static str {
    match source {
        TenantSource::Claim => "token's tenant claim",
        TenantSource::Header => "X-Tenant-ID header",
        TenantSource::Subdomain => "subdomain",
    }
}

/// Checks an `X-Tenant-ID` value: a slug or a uuid.
pub fn parse_header(raw: &[u8]) -> Result<String, TenancyError> {
    let value = std::str::from_utf8(raw).map_err(|_| TenancyError::MalformedTenantHeader)?.trim();
    if is_valid_slug(value) || Uuid::parse_str(value).is_ok() {
        Ok(value.to_owned())
    } else {
        Err(TenancyError::MalformedTenantHeader)
    }
}

/// `t1` from `t1.acme.example.com[:port]` with base domain `acme.example.com`.
pub fn subdomain(host: &str, base_domain: &str) -> Option<String> {
    let host = host.rsplit_once(':').map_or(
        host,
        |(name, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) { name } else { host }
        },
    );
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let base = base_domain.trim_matches('.').to_ascii_lowercase();
    let label = host.strip_suffix(&base)?.strip_suffix('.')?;
    (is_valid_slug(label)).then(|| label.to_owned())
}

/// Resolves the request's tenant; see the module documentation for the rules.
///
/// Enumeration: a caller who names a tenant besides its own (header or subdomain next to its
/// token's claim) gets the same 403 `tenant-mismatch` whether that tenant exists or not, after
/// the same lookups (every named tenant is looked up, either way); an unbound caller is refused
/// before any lookup. Only a single source naming an unknown tenant (the token's own claim, or a
/// platform admin's header) gets 404.
pub async fn resolve(
    config: &TenancyConfig,
    candidates: &Candidates,
    directory: &TenantDirectory,
    platform_admin: bool,
) -> Result<Arc<Tenant>, TenancyError> {
    // A token bound to a tenant is never used in another, even when the claim is not a
    // configured source: it then only has to agree with the tenant the sources chose.
    let claim_listed = config.resolution_order.contains(&TenantSource::Claim);
    let sources = config.resolution_order.iter().copied().chain((!claim_listed).then_some(TenantSource::Claim));
    let named: Vec<(TenantSource, &str)> =
        sources.filter_map(|source| candidates.get(source).map(|name| (source, name))).collect();
    if named.is_empty() {
        return Err(TenancyError::TenantRequired);
    }
    if claim_listed && candidates.claim.is_none() && !platform_admin {
        return Err(TenancyError::NotBoundToTenant);
    }
    let mut found = Vec::with_capacity(named.len());
    for (source, name) in &named {
        found.push((*source, *name, directory.find(name).await?));
    }
    let mut found = found.into_iter();
    let Some((first, first_name, chosen)) = found.next() else { return Err(TenancyError::TenantRequired) };
    for (source, _, tenant) in found {
        let agrees = matches!((&chosen, &tenant), (Some(a), Some(b)) if a.id == b.id);
        if !agrees {
            return Err(TenancyError::TenantMismatch(label(first), label(source)));
        }
    }
    let tenant = chosen.ok_or_else(|| TenancyError::TenantNotFound(first_name.to_owned()))?;
    refuse_unless_active(tenant.status)?;
    Ok(tenant)
}

/// A deleted tenant answers 410, a suspended one 403.
pub fn refuse_unless_active(status: TenantStatus) -> Result<(), TenancyError> {
    match status {
        TenantStatus::Active => Ok(()),
        TenantStatus::Suspended => Err(TenancyError::TenantSuspended),
        TenantStatus::Deleted => Err(TenancyError::TenantDeleted),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_must_be_a_slug_or_a_uuid() {
        assert_eq!(parse_header(b"acme").ok().as_deref(), Some("acme"));
        assert!(parse_header(b"0190d7a2-7c1e-7b3a-9b1e-1f2e3d4c5b6a").is_ok());
        assert!(parse_header(b"Robert'); DROP TABLE").is_err());
        assert!(parse_header(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn the_subdomain_is_the_label_before_the_base_domain() {
        assert_eq!(subdomain("t1.acme.example.com", "acme.example.com").as_deref(), Some("t1"));
        assert_eq!(subdomain("T1.Acme.example.com:8443", "acme.example.com").as_deref(), Some("t1"));
        assert_eq!(subdomain("acme.example.com", "acme.example.com"), None);
        assert_eq!(subdomain("a.b.acme.example.com", "acme.example.com"), None);
        assert_eq!(subdomain("evilacme.example.com", "acme.example.com"), None);
    }
}
