//! Which network addresses the gateway may dial when private upstreams are not allowed
//! (`TOLLGATE_ALLOW_PRIVATE_UPSTREAMS`). A leaf: it imports nothing of the gateway, so the
//! admin validation (write time) and the upstream connector (connect time, every address
//! actually dialled) use the same rule (docs/architecture.md, "Upstream pools and the
//! address guard").

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The reserved range `ip` falls in — a short, operator-facing name for the log — or
/// `None` for an address the gateway may dial.
///
/// IPv6 forms that carry an IPv4 address (mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`,
/// NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are judged by the IPv4 address they carry.
pub fn blocked_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => blocked_v4(v4),
        IpAddr::V6(v6) => blocked_v6(v6),
    }
}

/// `true` when `ip` is in a reserved range ([`blocked_range`]).
pub fn is_private_ip(ip: IpAddr) -> bool {
    blocked_range(ip).is_some()
}

fn blocked_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let range = match ip.octets() {
        [0, ..] => "this network 0.0.0.0/8 (incl. unspecified)",
        [10, ..] => "private 10.0.0.0/8",
        [100, b, ..] if (64..128).contains(&b) => "shared address space (CGNAT) 100.64.0.0/10",
        [127, ..] => "loopback 127.0.0.0/8",
        [169, 254, ..] => "link-local 169.254.0.0/16 (incl. cloud metadata)",
        [172, b, ..] if (16..32).contains(&b) => "private 172.16.0.0/12",
        [192, 0, 0, _] => "IETF protocol assignments 192.0.0.0/24",
        [192, 168, ..] => "private 192.168.0.0/16",
        [198, 18 | 19, ..] => "benchmarking 198.18.0.0/15",
        [224..=239, ..] => "multicast 224.0.0.0/4",
        // 240.0.0.0/4 is reserved and never routed; it ends with the broadcast address.
        [255, 255, 255, 255] => "broadcast 255.255.255.255",
        [240..=255, ..] => "reserved 240.0.0.0/4",
        _ => return None,
    };
    Some(range)
}

fn blocked_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_unspecified() {
        return Some("IPv6 unspecified ::");
    }
    if ip.is_loopback() {
        return Some("IPv6 loopback ::1");
    }
    let carried = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    // The IPv4 address an IPv6 form carries, judged by the IPv4 rule.
    let embedded = match s {
        [0, 0, 0, 0, 0, 0xffff, hi, lo] => Some(carried(hi, lo)), // mapped ::ffff:0:0/96
        [0, 0, 0, 0, 0, 0, hi, lo] => Some(carried(hi, lo)),      // compatible ::/96
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(carried(hi, lo)), // NAT64 64:ff9b::/96
        [0x2002, hi, lo, ..] => Some(carried(hi, lo)),            // 6to4 2002::/16
        _ => None,
    };
    if let Some(v4) = embedded {
        return blocked_v4(v4).map(|_| "IPv6 form of a blocked IPv4 address");
    }
    let range = match s[0] {
        // Local-use NAT64 (RFC 8215): the translator is on the operator's own network.
        0x64 if s[1] == 0xff9b && s[2] == 1 => "local-use NAT64 64:ff9b:1::/48",
        x if x & 0xfe00 == 0xfc00 => "IPv6 unique-local fc00::/7",
        x if x & 0xffc0 == 0xfe80 => "IPv6 link-local fe80::/10",
        x if x & 0xffc0 == 0xfec0 => "IPv6 site-local fec0::/10 (deprecated)",
        x if x & 0xff00 == 0xff00 => "IPv6 multicast ff00::/8",
        _ => return None,
    };
    Some(range)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked(s: &str) -> bool {
        is_private_ip(s.parse().unwrap())
    }

    #[test]
    fn every_reserved_ipv4_range_is_blocked_at_both_ends() {
        for ip in [
            "0.0.0.0",
            "0.255.255.255",
            "127.0.0.1",
            "127.255.255.254",
            "10.0.0.0",
            "10.255.255.255",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.0.1",
            "192.168.255.255",
            "169.254.0.1",
            "169.254.169.254",
            "169.254.255.255",
            "100.64.0.0",
            "100.127.255.255",
            "198.18.0.0",
            "198.19.255.255",
            "192.0.0.0",
            "192.0.0.255",
            "224.0.0.1",
            "239.255.255.255",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(blocked(ip), "{ip} must be blocked");
        }
    }

    #[test]
    fn public_ipv4_addresses_and_range_neighbours_pass() {
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "104.18.6.192",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
        ] {
            assert!(!blocked(ip), "{ip} must pass");
        }
    }

    #[test]
    fn reserved_ipv6_ranges_are_blocked() {
        for ip in [
            "::",
            "::1",
            "fc00::1",
            "fdff:ffff::1",
            "fd00:ec2::254",
            "fe80::1",
            "febf:ffff::1",
            "fec0::1",
            "ff02::1",
            "ff0e::1",
            "64:ff9b:1::1",
        ] {
            assert!(blocked(ip), "{ip} must be blocked");
        }
    }

    #[test]
    fn ipv6_forms_carrying_a_blocked_ipv4_address_are_blocked() {
        for ip in [
            // mapped
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::ffff:169.254.169.254",
            "::ffff:0.0.0.0",
            "::ffff:100.64.0.1",
            // compatible
            "::127.0.0.1",
            "::10.0.0.1",
            "::169.254.169.254",
            "::192.168.1.1",
            // NAT64
            "64:ff9b::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::192.168.0.1",
            "64:ff9b::198.18.0.1",
            // 6to4: 2002:AABB:CCDD::/48 carries AA.BB.CC.DD
            "2002:7f00:1::",
            "2002:a9fe:a9fe::1",
            "2002:c0a8:101:1::1",
            "2002:0a00:0001::",
        ] {
            assert!(blocked(ip), "{ip} must be blocked");
        }
    }

    #[test]
    fn public_ipv6_addresses_and_forms_carrying_public_ipv4_pass() {
        for ip in [
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "2a00:1450:4001:80b::200e",
            "::ffff:8.8.8.8",
            "::8.8.8.8",
            "64:ff9b::8.8.8.8",
            "2002:0808:0808::1",
            "fbff::1",
            "64:ff9b:2::1",
        ] {
            assert!(!blocked(ip), "{ip} must pass");
        }
    }

    #[test]
    fn the_range_is_named_for_the_log() {
        assert_eq!(
            blocked_range("169.254.169.254".parse().unwrap()),
            Some("link-local 169.254.0.0/16 (incl. cloud metadata)")
        );
        assert_eq!(
            blocked_range("::ffff:127.0.0.1".parse().unwrap()),
            Some("IPv6 form of a blocked IPv4 address")
        );
        assert_eq!(blocked_range("8.8.8.8".parse().unwrap()), None);
    }
}
