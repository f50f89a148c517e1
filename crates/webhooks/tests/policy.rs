//! The SSRF address policy: every refusal class, embedded IPv4, the allow-list, URL checks.

use std::net::IpAddr;

use palisade_webhooks::{AddressPolicy, Refusal};

fn ip(text: &str) -> IpAddr {
    text.parse().expect("an address")
}

/// Every refusal class with IPv4 and IPv6 examples, including IPv6 forms that embed IPv4.
const REFUSED: &[(&str, Refusal)] = &[
    ("127.0.0.1", Refusal::Loopback),
    ("127.255.255.254", Refusal::Loopback),
    ("::1", Refusal::Loopback),
    ("10.0.0.1", Refusal::Private),
    ("172.16.0.1", Refusal::Private),
    ("172.31.255.255", Refusal::Private),
    ("192.168.1.1", Refusal::Private),
    ("fc00::1", Refusal::Private),
    ("fd12:3456::1", Refusal::Private),
    ("fec0::1", Refusal::Private),
    ("169.254.1.1", Refusal::LinkLocal),
    ("fe80::1", Refusal::LinkLocal),
    ("febf::1", Refusal::LinkLocal),
    ("169.254.169.254", Refusal::Metadata),
    ("169.254.170.2", Refusal::Metadata),
    ("100.100.100.200", Refusal::Metadata),
    ("168.63.129.16", Refusal::Metadata),
    ("fd00:ec2::254", Refusal::Metadata),
    ("0.0.0.0", Refusal::Unspecified),
    ("::", Refusal::Unspecified),
    ("100.64.0.1", Refusal::SharedAddressSpace),
    ("100.127.255.254", Refusal::SharedAddressSpace),
    ("224.0.0.1", Refusal::Multicast),
    ("239.255.255.250", Refusal::Multicast),
    ("ff02::1", Refusal::Multicast),
    ("255.255.255.255", Refusal::Broadcast),
    ("192.0.2.1", Refusal::Documentation),
    ("198.51.100.1", Refusal::Documentation),
    ("203.0.113.1", Refusal::Documentation),
    ("2001:db8::1", Refusal::Documentation),
    ("3fff::1", Refusal::Documentation),
    ("0.1.2.3", Refusal::Reserved),
    ("192.0.0.8", Refusal::Reserved),
    ("192.88.99.1", Refusal::Reserved),
    ("198.18.0.1", Refusal::Reserved),
    ("198.19.255.255", Refusal::Reserved),
    ("240.0.0.1", Refusal::Reserved),
    ("100::1", Refusal::Reserved),
    ("2001:2::1", Refusal::Reserved),
    // IPv4-mapped, IPv4-translated and IPv4-compatible IPv6.
    ("::ffff:127.0.0.1", Refusal::Loopback),
    ("::ffff:169.254.169.254", Refusal::Metadata),
    ("::ffff:0:10.0.0.1", Refusal::Private),
    ("::192.168.0.1", Refusal::Private),
    // NAT64, well-known and local-use prefixes.
    ("64:ff9b::10.1.1.1", Refusal::Private),
    ("64:ff9b::169.254.169.254", Refusal::Metadata),
    ("64:ff9b:1::7f00:1", Refusal::Loopback),
    // 6to4: 2002:AABB:CCDD:: embeds AA.BB.CC.DD.
    ("2002:7f00:1::", Refusal::Loopback),
    ("2002:a9fe:a9fe::1", Refusal::Metadata),
    // Teredo: the client address is the low 32 bits inverted; the server is bits 32..64.
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", Refusal::Loopback),
    ("2001:0:a00:1::1", Refusal::Private),
];

const PERMITTED: &[&str] = &[
    "93.184.215.14",
    "8.8.8.8",
    "172.32.0.1",
    "100.128.0.1",
    "203.0.114.1",
    "2606:4700::1111",
    "::ffff:93.184.215.14",
    "64:ff9b::808:808",
    "2002:5db8:d70e::1",
];

#[test]
fn every_refusal_class_is_refused_for_ipv4_and_ipv6() {
    let policy = AddressPolicy::new(vec![]);
    for (address, expected) in REFUSED {
        assert_eq!(policy.check_ip(ip(address)), Err(*expected), "{address} should be refused as {expected:?}");
    }
}

#[test]
fn public_addresses_are_permitted() {
    let policy = AddressPolicy::new(vec![]);
    for address in PERMITTED {
        assert_eq!(policy.check_ip(ip(address)), Ok(()), "{address}");
    }
}

#[test]
fn the_allow_list_overrides_a_refusal_for_its_networks_only() {
    let policy = AddressPolicy::new(vec!["127.0.0.0/8".parse().expect("net"), "fd00:1::/32".parse().expect("net")]);
    assert_eq!(policy.check_ip(ip("127.0.0.1")), Ok(()));
    assert_eq!(policy.check_ip(ip("::ffff:127.0.0.1")), Ok(()));
    assert_eq!(policy.check_ip(ip("fd00:1::5")), Ok(()));
    assert_eq!(policy.check_ip(ip("::1")), Err(Refusal::Loopback));
    assert_eq!(policy.check_ip(ip("10.0.0.1")), Err(Refusal::Private));
    assert_eq!(policy.check_ip(ip("fd00:2::5")), Err(Refusal::Private));
}

#[test]
fn refusals_have_stable_labels_and_readable_text() {
    assert_eq!(Refusal::Metadata.label(), "metadata");
    assert_eq!(Refusal::SharedAddressSpace.label(), "shared_address_space");
    assert_eq!(Refusal::Loopback.to_string(), "the address is a loopback address");
}

#[test]
fn urls_are_checked_for_scheme_host_credentials_and_literal_addresses() {
    let policy = AddressPolicy::new(vec![]);
    let cases: &[(&str, Result<(), Refusal>)] = &[
        ("https://hooks.example.com/in", Ok(())),
        ("http://hooks.example.com:8080/in?x=1", Ok(())),
        ("https://93.184.215.14/in", Ok(())),
        ("https://[2606:4700::1111]/in", Ok(())),
        // Names are checked after DNS, at send time.
        ("http://localhost/in", Ok(())),
        ("ftp://hooks.example.com/in", Err(Refusal::BadScheme)),
        ("file:///etc/passwd", Err(Refusal::BadScheme)),
        ("gopher://127.0.0.1:6379/_", Err(Refusal::BadScheme)),
        ("unix:/var/run/docker.sock", Err(Refusal::BadScheme)),
        ("data:text/plain,hello", Err(Refusal::BadScheme)),
        ("https://user:pass@hooks.example.com/", Err(Refusal::Credentials)),
        ("https://token@hooks.example.com/", Err(Refusal::Credentials)),
        ("http://127.0.0.1:8080/", Err(Refusal::Loopback)),
        ("http://[::1]/", Err(Refusal::Loopback)),
        ("http://[::ffff:7f00:1]/", Err(Refusal::Loopback)),
        ("http://169.254.169.254/latest/meta-data/", Err(Refusal::Metadata)),
        ("http://[fd00:ec2::254]/", Err(Refusal::Metadata)),
        // The URL parser normalises numeric IPv4 spellings, so these are literal addresses too.
        ("http://2130706433/", Err(Refusal::Loopback)),
        ("http://0x7f.1/", Err(Refusal::Loopback)),
        ("http://0/", Err(Refusal::Unspecified)),
        ("http://10.1/", Err(Refusal::Private)),
    ];
    for (text, expected) in cases {
        let url = url::Url::parse(text).expect("parses");
        assert_eq!(policy.check_url(&url), *expected, "{text}");
    }
}

#[test]
fn the_allow_list_never_overrides_url_checks() {
    let policy = AddressPolicy::new(vec!["0.0.0.0/0".parse().expect("net")]);
    let url = url::Url::parse("https://user:pw@127.0.0.1/").expect("parses");
    assert_eq!(policy.check_url(&url), Err(Refusal::Credentials));
    let url = url::Url::parse("http://127.0.0.1/").expect("parses");
    assert_eq!(policy.check_url(&url), Ok(()));
}
