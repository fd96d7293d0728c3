//! The client's address: the TCP peer, or — only when that peer is a configured trusted
//! proxy (`TOLLGATE_TRUSTED_PROXIES`, docs/security.md) — the rightmost `X-Forwarded-For` hop that
//! is not itself trusted. A client can put anything in `X-Forwarded-For`; only the hops
//! appended by proxies we trust are believed, so walking from the right and stopping at
//! the first untrusted address gives the address that connected to our outermost proxy.
//! `Forwarded` (RFC 7239) is not read.

use std::net::{IpAddr, SocketAddr};

use actix_web::http::header::HeaderMap;
use ipnet::IpNet;

#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// Parses `10.0.0.0/8, 192.168.1.7, ::1` (addresses or CIDRs, comma-separated).
    pub fn parse(list: &str) -> Result<TrustedProxies, String> {
        let mut nets = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let net = match item.parse::<IpNet>() {
                Ok(net) => net.trunc(),
                Err(_) => match item.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(ip),
                    Err(_) => {
                        return Err(format!(
                            "'{item}' is neither an IP address nor a CIDR (e.g. 10.0.0.0/8)"
                        ));
                    }
                },
            };
            nets.push(net);
        }
        Ok(TrustedProxies { nets })
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The client address of a request from `peer` carrying `headers`.
    pub fn client_ip(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let mut client = canonical(peer?.ip());
        if !self.trusts(client) {
            return Some(client);
        }
        // Several X-Forwarded-For headers are one list, in order (RFC 9110 §5.3).
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        for hop in hops.iter().rev() {
            // A hop that does not parse was not written by a proxy we trust: stop at the
            // last address we know.
            let Some(ip) = parse_hop(hop) else { break };
            client = canonical(ip);
            if !self.trusts(client) {
                break;
            }
        }
        Some(client)
    }
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:443`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    hop.parse::<SocketAddr>().ok().map(|s| s.ip())
}

/// IPv4-mapped IPv6 (`::ffff:1.2.3.4`, what a dual-stack listener reports) as IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append(
                HeaderName::from_static("x-forwarded-for"),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn peer(ip: &str) -> Option<SocketAddr> {
        Some(SocketAddr::new(ip.parse().unwrap(), 40000))
    }

    #[test]
    fn parses_addresses_and_cidrs() {
        let t = TrustedProxies::parse(" 10.0.0.0/8, 192.168.1.7 ,::1, 2001:db8::/32,").unwrap();
        assert!(t.trusts("10.1.2.3".parse().unwrap()));
        assert!(t.trusts("192.168.1.7".parse().unwrap()));
        assert!(!t.trusts("192.168.1.8".parse().unwrap()));
        assert!(t.trusts("::1".parse().unwrap()));
        assert!(t.trusts("2001:db8:1::5".parse().unwrap()));
        assert!(t.trusts("::ffff:10.0.0.1".parse().unwrap()), "mapped IPv4");
        assert!(TrustedProxies::parse("").unwrap().is_empty());
        let err = TrustedProxies::parse("10.0.0.0/8, proxy.local").unwrap_err();
        assert!(err.contains("proxy.local"), "{err}");
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_claims() {
        let t = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let h = headers(&["6.6.6.6"]);
        assert_eq!(
            t.client_ip(peer("203.0.113.9"), &h),
            Some("203.0.113.9".parse().unwrap())
        );
        let none = TrustedProxies::default();
        assert_eq!(
            none.client_ip(peer("10.0.0.1"), &h),
            Some("10.0.0.1".parse().unwrap())
        );
    }

    #[test]
    fn trusted_peer_gives_the_rightmost_untrusted_hop() {
        let t = TrustedProxies::parse("10.0.0.0/8").unwrap();
        // client forged 6.6.6.6; real client 198.51.100.4; then two of our proxies
        let h = headers(&["6.6.6.6, 198.51.100.4", "10.0.0.7"]);
        assert_eq!(
            t.client_ip(peer("10.0.0.2"), &h),
            Some("198.51.100.4".parse().unwrap())
        );
        // every hop trusted: the leftmost one
        let h = headers(&["10.9.9.9, 10.0.0.7"]);
        assert_eq!(
            t.client_ip(peer("10.0.0.2"), &h),
            Some("10.9.9.9".parse().unwrap())
        );
        // no header: the peer
        assert_eq!(
            t.client_ip(peer("10.0.0.2"), &headers(&[])),
            Some("10.0.0.2".parse().unwrap())
        );
        // garbage stops the walk at the last known address
        let h = headers(&["198.51.100.4, garbage"]);
        assert_eq!(
            t.client_ip(peer("10.0.0.2"), &h),
            Some("10.0.0.2".parse().unwrap())
        );
        // ports and brackets
        let h = headers(&["[2001:db8::9]:443"]);
        assert_eq!(
            t.client_ip(peer("10.0.0.2"), &h),
            Some("2001:db8::9".parse().unwrap())
        );
        let h = headers(&["198.51.100.4:5000"]);
        assert_eq!(
            t.client_ip(peer("::ffff:10.0.0.2"), &h),
            Some("198.51.100.4".parse().unwrap())
        );
    }
}
