//! Who is on the other end: the client's address and whether it reached us over HTTPS.
//!
//! The TCP peer is the truth unless it is one of our own proxies. Only then is `X-Forwarded-For`
//! read, from the right (each proxy appends the address it saw), skipping hops that are trusted
//! proxies too; the first untrusted hop is the client. A client that talks to us directly cannot
//! pick its own address (and so a fresh rate-limit bucket) by sending the header itself.
//! `X-Forwarded-Proto` is believed under the same condition; the server itself speaks plain HTTP.

use std::{
    convert::Infallible,
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use axum::{
    extract::{ConnectInfo, FromRequestParts, Request},
    http::{HeaderMap, request::Parts},
    response::Response,
};
use ipnet::IpNet;
/// The resolved address is an `ops` type, so crates that read it need not depend on the edge.
pub use palisade_ops::client_ip::{ClientIp, NoClientIp, ResolvedClient, client_ip_of};
use palisade_ops::hook::{After, Hook};
use serde::{Deserialize, Serialize};

static X_FORWARDED_FOR: &str = "x-forwarded-for";
static X_FORWARDED_PROTO: &str = "x-forwarded-proto";

/// The `[client_ip]` configuration section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientIpConfig {
    /// Proxies (load balancer, ingress) whose `X-Forwarded-For`/`X-Forwarded-Proto` are believed,
    /// as CIDRs or single addresses (`10.0.0.0/8`, `192.168.1.7`). Empty: the TCP peer is the
    /// client and forwarding headers are ignored.
    pub trusted_proxies: Vec<String>,
}

impl ClientIpConfig {
    /// Unparsable entries; outside development, also trusting every address (which would let
    /// anyone choose their own client address).
    pub fn problems(&self, production: bool) -> Vec<String> {
        let mut problems = Vec::new();
        for entry in self.entries() {
            match parse_net(entry) {
                Err(()) => problems.push(format!(
                    "client_ip.trusted_proxies: `{entry}` is not an IP address or CIDR (e.g. 10.0.0.0/8)"
                )),
                Ok(net) if production && net.prefix_len() == 0 => problems.push(format!(
                    "client_ip.trusted_proxies contains `{entry}`, which trusts every peer: any client could \
                     choose its own address with X-Forwarded-For; list only your proxies' networks"
                )),
                Ok(_) => {}
            }
        }
        problems
    }

    fn entries(&self) -> impl Iterator<Item = &str> {
        self.trusted_proxies.iter().map(|s| s.trim()).filter(|s| !s.is_empty())
    }
}

fn parse_net(raw: &str) -> Result<IpNet, ()> {
    raw.parse::<IpNet>().or_else(|_| raw.parse::<IpAddr>().map(IpNet::from)).map_err(drop)
}

/// Resolves the client address and scheme of a request; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct ClientIpResolver {
    trusted: Arc<[IpNet]>,
}

impl ClientIpResolver {
    pub fn new(config: &ClientIpConfig) -> Result<Self, Vec<String>> {
        let problems = config.problems(false);
        if !problems.is_empty() {
            return Err(problems);
        }
        let trusted: Vec<IpNet> = config.entries().filter_map(|entry| parse_net(entry).ok()).collect();
        Ok(Self { trusted: trusted.into() })
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The client behind `peer`, given the request's headers.
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> ResolvedClient {
        let peer = peer.to_canonical();
        if !self.is_trusted(peer) {
            return ResolvedClient { ip: peer, https: false };
        }
        let https = headers
            .get(X_FORWARDED_PROTO)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"));
        // Several header lines form one list, in order.
        let hops: Vec<&str> = headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            let Some(ip) = parse_hop(hop) else {
                // Garbage where an address should be: stop at the last hop a trusted proxy vouched for.
                break;
            };
            client = ip;
            if !self.is_trusted(ip) {
                break;
            }
        }
        ResolvedClient { ip: client, https }
    }
}

/// An `X-Forwarded-For` entry: an address, optionally with a port (`1.2.3.4:5678`, `[::1]:80`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>().ok().or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip())).map(|ip| ip.to_canonical())
}

/// Whether the client reached the edge over HTTPS (per a trusted proxy): an extractor, read from
/// the request's [`ResolvedClient`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Https(pub bool);

impl<S: Send + Sync> FromRequestParts<S> for Https {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Https(parts.extensions.get::<ResolvedClient>().is_some_and(|client| client.https)))
    }
}

/// Middleware (a [`Hook`]): puts the [`ResolvedClient`] (which [`ClientIp`] and [`Https`] read) in
/// the request extensions.
impl Hook for ClientIpResolver {
    type Carry = ();

    fn before(&self, request: &mut Request) -> Result<(), Response> {
        if let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>().copied() {
            let resolved = self.resolve(peer.ip(), request.headers());
            request.extensions_mut().insert(resolved);
        }
        Ok(())
    }

    fn after(&self, (): (), response: Response) -> After {
        After::Done(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn resolver(trusted: &[&str]) -> ClientIpResolver {
        let config = ClientIpConfig { trusted_proxies: trusted.iter().map(|s| (*s).to_owned()).collect() };
        ClientIpResolver::new(&config).expect("valid config")
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).expect("header value"));
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
        let r = resolver(&["10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "1.2.3.4"), ("x-forwarded-proto", "https")]);
        assert_eq!(r.resolve(ip("203.0.113.9"), &h), ResolvedClient { ip: ip("203.0.113.9"), https: false });
    }

    #[test]
    fn the_first_untrusted_hop_from_the_right_is_the_client() {
        let r = resolver(&["10.0.0.0/8", "192.168.0.1"]);
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.1.2.3"), ("x-forwarded-proto", "https")]);
        assert_eq!(r.resolve(ip("192.168.0.1"), &h), ResolvedClient { ip: ip("198.51.100.7"), https: true });
    }

    #[test]
    fn several_header_lines_are_one_list() {
        let r = resolver(&["10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "198.51.100.7"), ("x-forwarded-for", "10.0.0.2")]);
        assert_eq!(r.resolve(ip("10.0.0.1"), &h).ip, ip("198.51.100.7"));
    }

    #[test]
    fn garbage_in_the_chain_stops_at_the_last_vouched_hop() {
        let r = resolver(&["10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "1.1.1.1, not-an-ip, 10.0.0.5")]);
        assert_eq!(r.resolve(ip("10.0.0.1"), &h).ip, ip("10.0.0.5"));
    }

    #[test]
    fn a_trusted_peer_without_the_header_is_itself_the_client() {
        let r = resolver(&["10.0.0.0/8"]);
        assert_eq!(r.resolve(ip("10.0.0.1"), &HeaderMap::new()), ResolvedClient { ip: ip("10.0.0.1"), https: false });
    }

    #[test]
    fn ports_and_mapped_addresses_are_normalised() {
        let r = resolver(&["127.0.0.1"]);
        let h = headers(&[("x-forwarded-for", "[2001:db8::1]:443, 198.51.100.7:5000")]);
        assert_eq!(r.resolve(ip("::ffff:127.0.0.1"), &h).ip, ip("198.51.100.7"));
    }

    #[test]
    fn bad_entries_and_trust_everyone_are_problems() {
        let config = ClientIpConfig { trusted_proxies: vec!["10.0.0.0/33".into(), "0.0.0.0/0".into(), " ".into()] };
        assert_eq!(config.problems(false).len(), 1);
        assert_eq!(config.problems(true).len(), 2);
    }
}
