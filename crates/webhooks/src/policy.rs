//! Which addresses a webhook may be sent to.
//!
//! Webhook URLs are chosen by tenants, so without a policy they could point the server at its own
//! loopback, the private network behind it or a cloud metadata service (server-side request
//! forgery). Every address that is not publicly routable is refused unless an operator
//! allow-lists it. Names are not judged here: the sender checks the addresses a name resolves to,
//! at connect time, so a name cannot change between the check and the connection.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Why an address or URL is refused. The `Display` text is written for a problem+json `detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Refusal {
    #[error("the address is a loopback address")]
    Loopback,
    #[error("the address is in a private network range")]
    Private,
    #[error("the address is link-local")]
    LinkLocal,
    #[error("the address is a cloud metadata service")]
    Metadata,
    #[error("the address is unspecified")]
    Unspecified,
    #[error("the address is in the carrier-grade NAT shared address space")]
    SharedAddressSpace,
    #[error("the address is multicast")]
    Multicast,
    #[error("the address is the broadcast address")]
    Broadcast,
    #[error("the address is reserved for documentation")]
    Documentation,
    #[error("the address is in a reserved range")]
    Reserved,
    #[error("the URL scheme must be http or https")]
    BadScheme,
    #[error("the URL has no host")]
    MissingHost,
    #[error("the URL must not contain a user name or password")]
    Credentials,
    #[error("the host name resolves to no permitted address")]
    NoAddress,
}

impl Refusal {
    /// A short stable name, for metrics labels and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Loopback => "loopback",
            Self::Private => "private",
            Self::LinkLocal => "link_local",
            Self::Metadata => "metadata",
            Self::Unspecified => "unspecified",
            Self::SharedAddressSpace => "shared_address_space",
            Self::Multicast => "multicast",
            Self::Broadcast => "broadcast",
            Self::Documentation => "documentation",
            Self::Reserved => "reserved",
            Self::BadScheme => "bad_scheme",
            Self::MissingHost => "missing_host",
            Self::Credentials => "credentials",
            Self::NoAddress => "no_address",
        }
    }
}

/// The SSRF address policy: refuse every non-public address unless the allow-list covers it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    allow: Vec<IpNet>,
}

impl AddressPolicy {
    /// `allow` overrides refusals, for operators whose receivers really are internal (or for
    /// tests against 127.0.0.1). It never overrides the URL checks.
    pub fn new(allow: Vec<IpNet>) -> Self {
        Self { allow }
    }

    /// Refuses an address that is not publicly routable, unless allow-listed. An IPv6 address
    /// that embeds an IPv4 one (mapped, compatible, NAT64, 6to4, Teredo) is judged by the IPv4
    /// address it would reach, and allowed when that one is allow-listed.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Refusal> {
        if self.allowed(ip) {
            return Ok(());
        }
        match ip {
            IpAddr::V4(v4) => classify_v4(v4).map_or(Ok(()), Err),
            IpAddr::V6(v6) => {
                if let Some(refusal) = classify_v6(v6) {
                    return Err(refusal);
                }
                for v4 in embedded_v4(v6) {
                    if !self.allowed(IpAddr::V4(v4))
                        && let Some(refusal) = classify_v4(v4)
                    {
                        return Err(refusal);
                    }
                }
                Ok(())
            }
        }
    }

    /// Checks an endpoint URL when it is created: http or https only, a host, no credentials,
    /// and a literal IP host judged by [`Self::check_ip`]. A host name passes here; the sender
    /// checks the addresses it resolves to on every delivery.
    pub fn check_url(&self, url: &url::Url) -> Result<(), Refusal> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refusal::BadScheme);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refusal::Credentials);
        }
        match url.host() {
            None => Err(Refusal::MissingHost),
            Some(url::Host::Domain("")) => Err(Refusal::MissingHost),
            Some(url::Host::Domain(_)) => Ok(()),
            Some(url::Host::Ipv4(v4)) => self.check_ip(IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => self.check_ip(IpAddr::V6(v6)),
        }
    }

    fn allowed(&self, ip: IpAddr) -> bool {
        self.allow.iter().any(|net| net.contains(&ip))
    }
}

/// Well-known instance metadata services: AWS/GCP/Azure/OpenStack/Oracle (169.254.169.254),
/// AWS ECS task metadata (169.254.170.2), Alibaba Cloud (100.100.100.200) and the Azure
/// WireServer (168.63.129.16), which sits in public space and so needs naming.
const METADATA_V4: [Ipv4Addr; 4] = [
    Ipv4Addr::new(169, 254, 169, 254),
    Ipv4Addr::new(169, 254, 170, 2),
    Ipv4Addr::new(100, 100, 100, 200),
    Ipv4Addr::new(168, 63, 129, 16),
];
/// AWS's IPv6 instance metadata endpoint.
const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);

fn classify_v4(ip: Ipv4Addr) -> Option<Refusal> {
    let [a, b, c, _] = ip.octets();
    if METADATA_V4.contains(&ip) {
        Some(Refusal::Metadata)
    } else if ip.is_unspecified() {
        Some(Refusal::Unspecified)
    } else if ip.is_broadcast() {
        Some(Refusal::Broadcast)
    } else if a == 127 {
        Some(Refusal::Loopback)
    } else if a == 10 || (a == 172 && (16..=31).contains(&b)) || (a == 192 && b == 168) {
        Some(Refusal::Private)
    } else if a == 169 && b == 254 {
        Some(Refusal::LinkLocal)
    } else if a == 100 && (64..=127).contains(&b) {
        Some(Refusal::SharedAddressSpace)
    } else if (224..=239).contains(&a) {
        Some(Refusal::Multicast)
    } else if (a, b, c) == (192, 0, 2) || (a, b, c) == (198, 51, 100) || (a, b, c) == (203, 0, 113) {
        Some(Refusal::Documentation)
    } else if a == 0 || (a, b, c) == (192, 0, 0) || (a, b, c) == (192, 88, 99) {
        // "This network", IETF protocol assignments, the deprecated 6to4 relay anycast.
        Some(Refusal::Reserved)
    } else if (a == 198 && (18..=19).contains(&b)) || a >= 240 {
        // Benchmarking, and the future-use block.
        Some(Refusal::Reserved)
    } else {
        None
    }
}

fn classify_v6(ip: Ipv6Addr) -> Option<Refusal> {
    let s = ip.segments();
    if ip == METADATA_V6 {
        Some(Refusal::Metadata)
    } else if ip.is_unspecified() {
        Some(Refusal::Unspecified)
    } else if ip.is_loopback() {
        Some(Refusal::Loopback)
    } else if s[0] & 0xfe00 == 0xfc00 || s[0] & 0xffc0 == 0xfec0 {
        // Unique local (fc00::/7) and the deprecated site-local (fec0::/10).
        Some(Refusal::Private)
    } else if s[0] & 0xffc0 == 0xfe80 {
        Some(Refusal::LinkLocal)
    } else if s[0] & 0xff00 == 0xff00 {
        Some(Refusal::Multicast)
    } else if (s[0], s[1]) == (0x2001, 0x0db8) || s[0] & 0xfff0 == 0x3ff0 {
        // 2001:db8::/32 and 3fff::/20 (RFC 9637).
        Some(Refusal::Documentation)
    } else if (s[0], s[1], s[2], s[3]) == (0x0100, 0, 0, 0) || (s[0], s[1], s[2]) == (0x2001, 2, 0) {
        // Discard-only (100::/64) and benchmarking (2001:2::/48).
        Some(Refusal::Reserved)
    } else {
        None
    }
}

/// The IPv4 addresses an IPv6 address would reach through a translation or tunnelling scheme.
fn embedded_v4(ip: Ipv6Addr) -> Vec<Ipv4Addr> {
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        // IPv4-mapped ::ffff:a.b.c.d and IPv4-translated ::ffff:0:a.b.c.d.
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0xffff, 0, _, _] => vec![low],
        // IPv4-compatible ::a.b.c.d (deprecated, still routed by some stacks).
        [0, 0, 0, 0, 0, 0, _, _] => vec![low],
        // NAT64 well-known prefix 64:ff9b::/96 and local-use 64:ff9b:1::/48.
        [0x0064, 0xff9b, 0, 0, 0, 0, _, _] | [0x0064, 0xff9b, 0x0001, ..] => vec![low],
        // 6to4 2002:AABB:CCDD::/48.
        [0x2002, hi, lo, ..] => vec![Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)],
        // Teredo 2001:0::/32: the server in bits 32..64, the client obfuscated in the low 32.
        [0x2001, 0, server_hi, server_lo, ..] => vec![
            Ipv4Addr::new((server_hi >> 8) as u8, server_hi as u8, (server_lo >> 8) as u8, server_lo as u8),
            Ipv4Addr::from(!u32::from(low)),
        ],
        _ => Vec::new(),
    }
}
