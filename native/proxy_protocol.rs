//! The PROXY protocol header (HAProxy's `proxy-protocol.txt`, versions 1 and 2) that a load
//! balancer (HAProxy, AWS NLB, nginx) sends before anything else on a connection, naming the
//! client it accepted. Strict, incremental, and a pure function: the caller reads, calls
//! `parse` on everything received so far, and reads more while it answers `Need`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The 12 bytes that open a version 2 header.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The fixed part of a version 2 header: signature, version/command, family, length.
const V2_FIXED: usize = 16;
/// A version 1 line is at most 107 bytes, CRLF included (`proxy-protocol.txt` 2.1).
pub const V1_MAX_BYTES: usize = 107;

/// What the bytes received so far amount to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A valid start: at least this many more bytes are needed.
    Need(usize),
    /// A complete header of `consumed` bytes. `addr` is the client it names; None for a LOCAL
    /// (v2) or UNKNOWN (v1) header, whose connection is the proxy's own (health checks): the
    /// peer address stays.
    Done { addr: Option<SocketAddr>, consumed: usize },
    /// Not a valid header; the connection is dropped.
    Invalid(&'static str),
}

/// Parses the header at the start of `buf`. `max_v2_bytes` bounds a v2 header (fixed part and
/// address block with its TLVs): a longer one is invalid before it is read.
pub fn parse(buf: &[u8], max_v2_bytes: usize) -> Outcome {
    let Some(&first) = buf.first() else { return Outcome::Need(1) };
    match first {
        b'P' => parse_v1(buf),
        b'\r' => parse_v2(buf, max_v2_bytes),
        _ => Outcome::Invalid("not a PROXY protocol header"),
    }
}

fn parse_v1(buf: &[u8]) -> Outcome {
    const PREFIX: &[u8] = b"PROXY ";
    let n = buf.len().min(PREFIX.len());
    if buf[..n] != PREFIX[..n] {
        return Outcome::Invalid("not a PROXY protocol header");
    }
    let window = &buf[..buf.len().min(V1_MAX_BYTES)];
    let Some(cr) = window.iter().position(|&b| b == b'\r') else {
        if window.len() >= V1_MAX_BYTES {
            return Outcome::Invalid("PROXY v1 line too long");
        }
        if window.contains(&b'\n') {
            return Outcome::Invalid("PROXY v1 line without CR");
        }
        return Outcome::Need(1);
    };
    match window.get(cr + 1) {
        None if cr + 1 >= V1_MAX_BYTES => return Outcome::Invalid("PROXY v1 line too long"),
        None => return Outcome::Need(1),
        Some(b'\n') => {}
        Some(_) => return Outcome::Invalid("PROXY v1 line without LF"),
    }
    let consumed = cr + 2;
    let Ok(line) = std::str::from_utf8(&buf[PREFIX.len()..cr]) else {
        return Outcome::Invalid("PROXY v1 line is not ASCII");
    };
    if line.contains('\n') {
        return Outcome::Invalid("PROXY v1 line without CR");
    }
    let mut fields = line.split(' ');
    let family = fields.next().unwrap_or("");
    if family == "UNKNOWN" {
        // The rest of the line is to be ignored (the proxy could not name the client).
        return Outcome::Done { addr: None, consumed };
    }
    let (Some(src), Some(dst), Some(sport), Some(dport), None) =
        (fields.next(), fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Outcome::Invalid("PROXY v1 line must have 6 fields");
    };
    let (src, dst): (IpAddr, IpAddr) = match family {
        "TCP4" => match (src.parse::<Ipv4Addr>(), dst.parse::<Ipv4Addr>()) {
            (Ok(s), Ok(d)) => (s.into(), d.into()),
            _ => return Outcome::Invalid("PROXY v1 bad IPv4 address"),
        },
        "TCP6" => match (src.parse::<Ipv6Addr>(), dst.parse::<Ipv6Addr>()) {
            (Ok(s), Ok(d)) => (s.into(), d.into()),
            _ => return Outcome::Invalid("PROXY v1 bad IPv6 address"),
        },
        _ => return Outcome::Invalid("PROXY v1 unknown protocol family"),
    };
    let _ = dst;
    match (port(sport), port(dport)) {
        (Some(sport), Some(_)) => Outcome::Done { addr: Some(SocketAddr::new(src, sport)), consumed },
        _ => Outcome::Invalid("PROXY v1 bad port"),
    }
}

/// A decimal port, 0-65535, without sign or leading zeros.
fn port(s: &str) -> Option<u16> {
    let valid = !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit());
    if !valid || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.parse().ok()
}

fn parse_v2(buf: &[u8], max_bytes: usize) -> Outcome {
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] != V2_SIGNATURE[..n] {
        return Outcome::Invalid("not a PROXY protocol header");
    }
    // The version, command and family bytes are checked as soon as they are here.
    if let Some(reason) = buf.get(12).and_then(|&ver_cmd| bad_ver_cmd(ver_cmd)) {
        return Outcome::Invalid(reason);
    }
    // The address family and transport are checked for LOCAL too: strict, and no proxy sends
    // anything but UNSPEC, TCP4 or TCP6 there.
    let addr_len = match buf.get(13) {
        None => 0,
        Some(0x00) => 0,
        Some(0x11) => 12,
        Some(0x21) => 36,
        Some(_) => return Outcome::Invalid("PROXY v2 unsupported address family or transport"),
    };
    if buf.len() < V2_FIXED {
        return Outcome::Need(V2_FIXED - buf.len());
    }
    let (ver_cmd, fam) = (buf[12], buf[13]);
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let total = V2_FIXED + len;
    if total > max_bytes {
        return Outcome::Invalid("PROXY v2 header too long");
    }
    let local = ver_cmd & 0x0f == 0;
    if len < addr_len {
        return Outcome::Invalid("PROXY v2 address block too short");
    }
    if buf.len() < total {
        return Outcome::Need(total - buf.len());
    }
    if local || fam == 0x00 {
        return Outcome::Done { addr: None, consumed: total };
    }
    let a = &buf[V2_FIXED..V2_FIXED + addr_len];
    let addr = if fam == 0x11 {
        let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
        SocketAddr::new(ip.into(), u16::from_be_bytes([a[8], a[9]]))
    } else {
        let mut ip = [0u8; 16];
        ip.copy_from_slice(&a[..16]);
        SocketAddr::new(Ipv6Addr::from(ip).into(), u16::from_be_bytes([a[32], a[33]]))
    };
    Outcome::Done { addr: Some(addr), consumed: total }
}

/// Version 2 with the LOCAL (0) or PROXY (1) command; anything else is refused.
fn bad_ver_cmd(ver_cmd: u8) -> Option<&'static str> {
    if ver_cmd >> 4 != 2 {
        Some("PROXY v2 unsupported version")
    } else if ver_cmd & 0x0f > 1 {
        Some("PROXY v2 unsupported command")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 536;

    fn v2(ver_cmd: u8, fam: u8, addr: &[u8], tlv: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(ver_cmd);
        out.push(fam);
        out.extend_from_slice(&((addr.len() + tlv.len()) as u16).to_be_bytes());
        out.extend_from_slice(addr);
        out.extend_from_slice(tlv);
        out
    }

    fn tcp4_block() -> Vec<u8> {
        let mut a = vec![192, 0, 2, 7, 10, 0, 0, 1];
        a.extend_from_slice(&51234u16.to_be_bytes());
        a.extend_from_slice(&443u16.to_be_bytes());
        a
    }

    fn tcp6_block() -> Vec<u8> {
        let src: Ipv6Addr = "2001:db8::17".parse().unwrap_or(Ipv6Addr::UNSPECIFIED);
        let mut a = src.octets().to_vec();
        a.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        a.extend_from_slice(&4711u16.to_be_bytes());
        a.extend_from_slice(&80u16.to_be_bytes());
        a
    }

    fn addr(s: &str) -> Option<SocketAddr> {
        s.parse().ok()
    }

    /// Every split of `input` into a prefix then the whole: a prefix is Need (or the same
    /// Invalid once the fault is in it), and the whole gives `expected`.
    fn split_independent(input: &[u8], expected: Outcome) {
        assert_eq!(parse(input, MAX), expected, "whole input");
        for cut in 0..input.len() {
            match parse(&input[..cut], MAX) {
                Outcome::Need(n) => assert!(n >= 1 && cut + n <= input.len().max(cut + 1)),
                Outcome::Invalid(r) => {
                    assert_eq!(expected, Outcome::Invalid(r), "prefix of {cut} bytes is invalid")
                }
                done => panic!("prefix of {cut} bytes parsed as {done:?}"),
            }
        }
    }

    #[test]
    fn v1_tcp4_and_tcp6() {
        let line = b"PROXY TCP4 192.0.2.7 10.0.0.1 51234 443\r\nGET /";
        let consumed = line.len() - 5;
        split_independent(&line[..consumed], Outcome::Done { addr: addr("192.0.2.7:51234"), consumed });
        assert_eq!(parse(line, MAX), Outcome::Done { addr: addr("192.0.2.7:51234"), consumed });
        let line = b"PROXY TCP6 2001:db8::17 ::1 4711 80\r\n";
        split_independent(line, Outcome::Done { addr: addr("[2001:db8::17]:4711"), consumed: line.len() });
    }

    #[test]
    fn v1_unknown_keeps_the_peer() {
        let line = b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n";
        split_independent(line, Outcome::Done { addr: None, consumed: line.len() });
        assert_eq!(parse(b"PROXY UNKNOWN\r\n", MAX), Outcome::Done { addr: None, consumed: 15 });
    }

    #[test]
    fn v1_the_longest_line_fits_and_one_more_byte_does_not() {
        let longest = b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        assert_eq!(longest.len(), V1_MAX_BYTES);
        assert!(matches!(parse(longest, MAX), Outcome::Done { consumed: V1_MAX_BYTES, .. }));
        let mut long = b"PROXY UNKNOWN ".to_vec();
        long.resize(V1_MAX_BYTES, b'x');
        assert_eq!(parse(&long, MAX), Outcome::Invalid("PROXY v1 line too long"));
        long.truncate(V1_MAX_BYTES - 1);
        long.push(b'\r');
        assert_eq!(parse(&long, MAX), Outcome::Invalid("PROXY v1 line too long"));
    }

    #[test]
    fn v1_rejects() {
        for bad in [
            &b"PROXY TCP4 192.0.2.7 10.0.0.1 51234\r\n"[..],
            b"PROXY TCP4 192.0.2.7 10.0.0.1 51234 443 9\r\n",
            b"PROXY TCP4  192.0.2.7 10.0.0.1 51234 443\r\n",
            b"PROXY TCP4 192.0.2.07 10.0.0.1 51234 443\r\n",
            b"PROXY TCP4 2001:db8::1 10.0.0.1 51234 443\r\n",
            b"PROXY TCP6 192.0.2.7 ::1 51234 443\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 65536 443\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 0443 443\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 +443 443\r\n",
            b"PROXY UDP4 192.0.2.7 10.0.0.1 1 2\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 1 2\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 1 2\rX",
            b"PROXY TCP4 1\xff2.0.2.7 10.0.0.1 1 2\r\n",
            b"proxy TCP4 192.0.2.7 10.0.0.1 1 2\r\n",
            b"GET / HTTP/1.1\r\n",
        ] {
            assert!(matches!(parse(bad, MAX), Outcome::Invalid(_)), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn garbage_is_refused_at_its_first_byte() {
        assert!(matches!(parse(b"G", MAX), Outcome::Invalid(_)));
        assert!(matches!(parse(b"PROXX", MAX), Outcome::Invalid(_)));
        assert!(matches!(parse(b"\r\n\r\n\0\r\nQUIX", MAX), Outcome::Invalid(_)));
        assert_eq!(parse(b"", MAX), Outcome::Need(1));
    }

    #[test]
    fn v2_proxy_tcp4_tcp6_with_tlvs() {
        let h = v2(0x21, 0x11, &tcp4_block(), &[]);
        split_independent(&h, Outcome::Done { addr: addr("192.0.2.7:51234"), consumed: h.len() });
        // TLVs (an AWS VPC endpoint id, say) are skipped.
        let h = v2(0x21, 0x21, &tcp6_block(), &[0xea, 0, 3, 1, 2, 3]);
        split_independent(&h, Outcome::Done { addr: addr("[2001:db8::17]:4711"), consumed: h.len() });
        let mut with_data = h.clone();
        with_data.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(
            parse(&with_data, MAX),
            Outcome::Done { addr: addr("[2001:db8::17]:4711"), consumed: h.len() }
        );
    }

    #[test]
    fn v2_local_and_unspec_keep_the_peer() {
        let h = v2(0x20, 0x00, &[], &[]);
        split_independent(&h, Outcome::Done { addr: None, consumed: 16 });
        // LOCAL with an address block: the block is skipped, not used.
        let h = v2(0x20, 0x11, &tcp4_block(), &[]);
        split_independent(&h, Outcome::Done { addr: None, consumed: h.len() });
        let h = v2(0x21, 0x00, &[], &[]);
        split_independent(&h, Outcome::Done { addr: None, consumed: 16 });
    }

    #[test]
    fn v2_rejects() {
        let block = tcp4_block();
        let cases = [
            (v2(0x11, 0x11, &block, &[]), "PROXY v2 unsupported version"),
            (v2(0x22, 0x11, &block, &[]), "PROXY v2 unsupported command"),
            (v2(0x21, 0x12, &block, &[]), "PROXY v2 unsupported address family or transport"),
            (v2(0x21, 0x31, &[0; 216], &[]), "PROXY v2 unsupported address family or transport"),
            (v2(0x21, 0x41, &block, &[]), "PROXY v2 unsupported address family or transport"),
            (v2(0x21, 0x11, &block[..11], &[]), "PROXY v2 address block too short"),
            (v2(0x21, 0x21, &block, &[]), "PROXY v2 address block too short"),
            (v2(0x21, 0x11, &block, &[0; MAX]), "PROXY v2 header too long"),
        ];
        for (h, reason) in cases {
            split_independent(&h, Outcome::Invalid(reason));
        }
    }

    #[test]
    fn v2_length_is_checked_before_the_bytes_arrive() {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert_eq!(parse(&h, MAX), Outcome::Invalid("PROXY v2 header too long"));
        h.truncate(15);
        assert_eq!(parse(&h, MAX), Outcome::Need(1));
    }

    #[test]
    fn every_byte_value_after_a_valid_prefix_is_handled() {
        // No input panics: every single byte appended to each prefix of a valid header.
        let h = v2(0x21, 0x11, &tcp4_block(), &[]);
        let line = b"PROXY TCP4 192.0.2.7 10.0.0.1 51234 443\r\n".to_vec();
        for valid in [h, line] {
            for cut in 0..valid.len() {
                for b in 0..=255u8 {
                    let mut input = valid[..cut].to_vec();
                    input.push(b);
                    let _ = parse(&input, MAX);
                }
            }
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// A valid header of either version (an arbitrary client), or arbitrary bytes.
        fn input() -> impl Strategy<Value = Vec<u8>> {
            let v1 = (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| {
                format!("PROXY TCP4 {} 10.0.0.1 {port} 443\r\n", Ipv4Addr::from(ip)).into_bytes()
            });
            let v2 = (any::<[u8; 16]>(), any::<u16>(), prop::collection::vec(any::<u8>(), 0..40)).prop_map(
                |(ip, port, tlv)| {
                    let mut a = ip.to_vec();
                    a.extend_from_slice(&[0; 16]);
                    a.extend_from_slice(&port.to_be_bytes());
                    a.extend_from_slice(&[0, 80]);
                    v2(0x21, 0x21, &a, &tlv)
                },
            );
            prop_oneof![2 => v1, 2 => v2, 1 => prop::collection::vec(any::<u8>(), 0..200)]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

            /// Split independence: every prefix of an input is `Need` (with no more asked than
            /// the whole would settle), the same `Invalid`, or, once the header is complete, the
            /// same `Done`; bytes behind a complete header change nothing.
            #[test]
            fn any_prefix_agrees_with_the_whole(bytes in input(), tail in prop::collection::vec(any::<u8>(), 0..20)) {
                let whole = parse(&bytes, MAX);
                for cut in 0..=bytes.len() {
                    match (parse(&bytes[..cut], MAX), whole) {
                        (Outcome::Need(n), _) => prop_assert!(n >= 1),
                        (Outcome::Invalid(a), Outcome::Invalid(b)) => prop_assert_eq!(a, b),
                        (got, Outcome::Done { consumed, .. }) => {
                            prop_assert!(cut >= consumed);
                            prop_assert_eq!(got, whole);
                        }
                        (got, want) => prop_assert!(false, "prefix {} gave {:?}, whole {:?}", cut, got, want),
                    }
                }
                if let Outcome::Done { .. } = whole {
                    let mut longer = bytes.clone();
                    longer.extend_from_slice(&tail);
                    prop_assert_eq!(parse(&longer, MAX), whole);
                }
            }
        }
    }
}
