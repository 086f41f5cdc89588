//! Which peers are trusted proxies (`trustProxy`: a list of addresses and CIDR ranges), and the
//! client address a trusted proxy's `X-Forwarded-For` or `Forwarded` (RFC 7239) header names.
//!
//! Each proxy appends the address it received the request from, so the header reads left to
//! right from the client towards us, and only its right end was written by proxies we trust.
//! The client is the rightmost hop that is not a trusted proxy. A header from a peer that is not
//! trusted is ignored (anyone can send one), and so is a header that a trusted proxy would have
//! had to write malformed: then the peer address stays.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One entry of `trustProxy`: an address and how many leading bits must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    bits: u8,
}

impl Cidr {
    /// `10.0.0.0/8`, `127.0.0.1`, `::1`, `fd00::/8`. The address must be the start of its range
    /// (`10.1.0.0/8` is refused: it is a typo more often than not).
    pub fn parse(s: &str) -> Option<Cidr> {
        let (ip, bits) = match s.split_once('/') {
            Some((ip, bits)) => (ip, Some(bits)),
            None => (s, None),
        };
        let addr: IpAddr = ip.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) if !b.is_empty() && b.len() <= 3 && b.bytes().all(|c| c.is_ascii_digit()) => {
                b.parse().ok()?
            }
            Some(_) => return None,
        };
        if bits > max {
            return None;
        }
        let cidr = Cidr { addr: canonical(addr), bits };
        (cidr.network() == bits_of(cidr.addr)).then_some(cidr)
    }

    fn network(&self) -> u128 {
        let max = if self.addr.is_ipv4() { 32 } else { 128 };
        let mask = if self.bits == 0 { 0 } else { u128::MAX << (max - u32::from(self.bits)) };
        let mask = if self.addr.is_ipv4() { mask & u128::from(u32::MAX) } else { mask };
        bits_of(self.addr) & mask
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        if ip.is_ipv4() != self.addr.is_ipv4() {
            return false;
        }
        Cidr { addr: ip, bits: self.bits }.network() == self.network()
    }
}

fn bits_of(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, what a dual-stack socket reports) as IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Which header carries the chain of addresses (`proxyHeader`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx, HAProxy, AWS ALB).
    XForwardedFor,
    /// `Forwarded: for=client, for="[2001:db8::1]:4711"` (RFC 7239).
    Forwarded,
}

impl ProxyHeader {
    pub fn name(self) -> &'static str {
        match self {
            ProxyHeader::XForwardedFor => "x-forwarded-for",
            ProxyHeader::Forwarded => "forwarded",
        }
    }
}

/// The trusted proxies; empty: no peer is trusted and headers are never read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustProxy {
    cidrs: Vec<Cidr>,
}

impl TrustProxy {
    /// Parses every entry; the first one that is not an address or range is returned as the error.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<TrustProxy, String> {
        let cidrs = entries
            .iter()
            .map(|e| Cidr::parse(e.as_ref()).ok_or_else(|| e.as_ref().to_string()))
            .collect::<Result<_, _>>()?;
        Ok(TrustProxy { cidrs })
    }

    pub fn is_empty(&self) -> bool {
        self.cidrs.is_empty()
    }

    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.cidrs.iter().any(|c| c.contains(ip))
    }

    /// The client address for a request from `peer` whose proxy header values (every line, in
    /// arrival order) are `values`.
    pub fn resolve<'a>(
        &self,
        peer: IpAddr,
        header: ProxyHeader,
        values: impl DoubleEndedIterator<Item = &'a [u8]>,
    ) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        let mut last_trusted = peer;
        // Hops from the right: every value from the last line's end back to the first's start.
        for value in values.rev() {
            let Ok(value) = std::str::from_utf8(value) else { return peer };
            for hop in value.rsplit(',') {
                let hop = match header {
                    ProxyHeader::XForwardedFor => xff_hop(hop),
                    ProxyHeader::Forwarded => forwarded_hop(hop),
                };
                let Some(ip) = hop else { return peer };
                let ip = canonical(ip);
                if !self.trusts(ip) {
                    return ip;
                }
                last_trusted = ip;
            }
        }
        // Every hop is a trusted proxy: the leftmost is as close to the client as we know.
        last_trusted
    }
}

/// One `X-Forwarded-For` element: an address, optionally with a port (`1.2.3.4:5`,
/// `[::1]:5`), which some proxies append.
fn xff_hop(hop: &str) -> Option<IpAddr> {
    address_with_port(hop.trim_matches(|c| c == ' ' || c == '\t'))
}

/// One `Forwarded` element (`for=...;proto=https;by=...`): its `for` parameter's address.
/// `unknown`, obfuscated identifiers (`_hidden`) and a missing `for` name no address.
fn forwarded_hop(element: &str) -> Option<IpAddr> {
    let mut found = None;
    for pair in element.split(';') {
        let pair = pair.trim_matches(|c| c == ' ' || c == '\t');
        let (name, value) = pair.split_once('=')?;
        if !name.eq_ignore_ascii_case("for") {
            continue;
        }
        if found.is_some() {
            return None;
        }
        // IPv6 and ports need a quoted string; a bare token can only be an IPv4 address.
        found = Some(match value.strip_prefix('"') {
            Some(rest) => {
                address_with_port(rest.strip_suffix('"').filter(|v| !v.contains('"') && !v.contains('\\'))?)?
            }
            None => IpAddr::V4(value.parse().ok()?),
        });
    }
    found
}

/// `1.2.3.4`, `1.2.3.4:80`, `[2001:db8::1]`, `[2001:db8::1]:80`, or a bare IPv6 address.
fn address_with_port(s: &str) -> Option<IpAddr> {
    if let Some(rest) = s.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(valid_port)) {
            return None;
        }
        return ip.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    let (ip, port) = s.rsplit_once(':')?;
    if !valid_port(port) {
        return None;
    }
    ip.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

fn valid_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }

    fn trust(list: &[&str]) -> TrustProxy {
        TrustProxy::parse(list).unwrap_or_default()
    }

    fn xff(t: &TrustProxy, peer: &str, lines: &[&str]) -> IpAddr {
        t.resolve(ip(peer), ProxyHeader::XForwardedFor, lines.iter().map(|l| l.as_bytes()))
    }

    fn fwd(t: &TrustProxy, peer: &str, lines: &[&str]) -> IpAddr {
        t.resolve(ip(peer), ProxyHeader::Forwarded, lines.iter().map(|l| l.as_bytes()))
    }

    #[test]
    fn cidrs() {
        let t = trust(&["10.0.0.0/8", "127.0.0.1", "::1", "fd00::/8", "0.0.0.0/0"]);
        assert_eq!(t.cidrs.len(), 5);
        assert!(Cidr::parse("10.0.0.0/8").is_some_and(|c| c.contains(ip("10.255.1.2"))));
        assert!(Cidr::parse("10.0.0.0/8").is_some_and(|c| !c.contains(ip("11.0.0.1"))));
        assert!(Cidr::parse("10.0.0.0/8").is_some_and(|c| c.contains(ip("::ffff:10.1.2.3"))));
        assert!(Cidr::parse("127.0.0.1").is_some_and(|c| !c.contains(ip("127.0.0.2"))));
        assert!(Cidr::parse("fd00::/8").is_some_and(|c| c.contains(ip("fd12::1"))));
        assert!(Cidr::parse("fd00::/8").is_some_and(|c| !c.contains(ip("10.0.0.1"))));
        assert!(Cidr::parse("0.0.0.0/0").is_some_and(|c| c.contains(ip("8.8.8.8")) && !c.contains(ip("::2"))));
        assert!(Cidr::parse("::/0").is_some_and(|c| c.contains(ip("2001:db8::1"))));
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.1.0.0/8",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "host",
            "10.0.0.0/8/8",
            "1.2.3",
        ] {
            assert_eq!(Cidr::parse(bad), None, "{bad}");
        }
        assert_eq!(TrustProxy::parse(&["10.0.0.0/8", "nope"]), Err("nope".to_string()));
    }

    #[test]
    fn untrusted_peer_headers_are_ignored() {
        let t = trust(&["10.0.0.0/8"]);
        assert_eq!(xff(&t, "203.0.113.9", &["1.2.3.4"]), ip("203.0.113.9"));
        assert_eq!(xff(&TrustProxy::default(), "10.0.0.1", &["1.2.3.4"]), ip("10.0.0.1"));
    }

    #[test]
    fn rightmost_untrusted_hop_wins() {
        let t = trust(&["10.0.0.0/8", "127.0.0.1"]);
        assert_eq!(xff(&t, "127.0.0.1", &["198.51.100.1"]), ip("198.51.100.1"));
        // The client prepended a spoofed address; the proxy appended the real one.
        assert_eq!(xff(&t, "127.0.0.1", &["6.6.6.6, 198.51.100.1, 10.0.0.5"]), ip("198.51.100.1"));
        // Several header lines are one list, in order.
        assert_eq!(xff(&t, "127.0.0.1", &["6.6.6.6", "198.51.100.1,10.0.0.5"]), ip("198.51.100.1"));
        // Every hop trusted: the leftmost.
        assert_eq!(xff(&t, "127.0.0.1", &["10.0.0.9, 10.0.0.5"]), ip("10.0.0.9"));
        // No header: the peer.
        assert_eq!(xff(&t, "127.0.0.1", &[]), ip("127.0.0.1"));
        // Ports and IPv6.
        assert_eq!(xff(&t, "10.0.0.2", &["198.51.100.1:4711"]), ip("198.51.100.1"));
        assert_eq!(xff(&t, "10.0.0.2", &["[2001:db8::1]:4711"]), ip("2001:db8::1"));
        assert_eq!(xff(&t, "10.0.0.2", &["2001:db8::1"]), ip("2001:db8::1"));
        assert_eq!(xff(&t, "::ffff:10.0.0.2", &["::ffff:198.51.100.1"]), ip("198.51.100.1"));
    }

    #[test]
    fn malformed_where_a_trusted_proxy_wrote_falls_back_to_the_peer() {
        let t = trust(&["10.0.0.0/8", "127.0.0.1"]);
        for bad in ["", "not-an-ip", "1.2.3.4.5", "1.2.3.4:99999", "[::1", "1.2.3.4, , 10.0.0.5", "unknown"] {
            assert_eq!(xff(&t, "127.0.0.1", &[bad]), ip("127.0.0.1"), "{bad:?}");
        }
        // Garbage left of the client's hop is never looked at.
        assert_eq!(xff(&t, "127.0.0.1", &["garbage, 198.51.100.1"]), ip("198.51.100.1"));
        assert_eq!(
            t.resolve(ip("127.0.0.1"), ProxyHeader::XForwardedFor, [&b"\xff"[..]].into_iter()),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn forwarded() {
        let t = trust(&["10.0.0.0/8"]);
        assert_eq!(fwd(&t, "10.0.0.1", &["for=198.51.100.1"]), ip("198.51.100.1"));
        assert_eq!(fwd(&t, "10.0.0.1", &["for=\"[2001:db8:cafe::17]:4711\""]), ip("2001:db8:cafe::17"));
        assert_eq!(
            fwd(&t, "10.0.0.1", &["For=\"198.51.100.1:80\";proto=https;by=10.0.0.1"]),
            ip("198.51.100.1")
        );
        assert_eq!(
            fwd(&t, "10.0.0.1", &["for=6.6.6.6, for=198.51.100.1;proto=http, for=10.0.0.7"]),
            ip("198.51.100.1")
        );
        assert_eq!(fwd(&t, "10.0.0.1", &["for=6.6.6.6", "for=198.51.100.2"]), ip("198.51.100.2"));
        for bad in [
            "for=unknown",
            "for=_hidden",
            "proto=https",
            "for=\"1.2.3.4",
            "for=1.2.3.4;for=5.6.7.8",
            "for=[::1]",
            "garbage",
        ] {
            assert_eq!(fwd(&t, "10.0.0.1", &[bad]), ip("10.0.0.1"), "{bad:?}");
        }
        assert_eq!(fwd(&t, "203.0.113.9", &["for=198.51.100.1"]), ip("203.0.113.9"));
    }
}
