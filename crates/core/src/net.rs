//! IP prefixes (over `ipnet`) and the address fence every on-demand entry point shares (pure).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// An IP prefix: its network address (host bits cleared) and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub len: u8,
}

impl Cidr {
    /// `ADDR/LEN`; host bits are cleared (`10.1.2.3/8` is `10.0.0.0/8`).
    pub fn parse(s: &str) -> Option<Cidr> {
        let n: IpNet = s.trim().parse().ok()?;
        Some(Cidr::from_net(n.trunc()))
    }

    fn from_net(n: IpNet) -> Cidr {
        Cidr {
            addr: n.network(),
            len: n.prefix_len(),
        }
    }

    fn net(&self) -> IpNet {
        // The fields are public: a hand-built length past the family's maximum is clamped.
        let max = if self.addr.is_ipv4() { 32 } else { 128 };
        IpNet::new(self.addr, self.len.min(max))
            .map(|n| n.trunc())
            .unwrap_or_else(|_| IpNet::from(self.addr))
    }

    /// Whether `ip` falls in the prefix. `ip` is canonicalised first: `::ffff:10.1.2.3` is the
    /// IPv4 address 10.1.2.3 (the kernel sends to it as such), so it is in 10.0.0.0/8 and not
    /// in `::/0`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.net().contains(&ip.to_canonical())
    }

    /// Whether the whole of this prefix lies inside `outer`.
    pub fn inside(&self, outer: &Cidr) -> bool {
        outer.net().contains(&self.net())
    }
}

/// As text (`198.19.0.0/26`), the form users write and agents publish.
impl serde::Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Cidr, D::Error> {
        let text = String::deserialize(d)?;
        Cidr::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{text:?} is not a CIDR (ADDRESS/LENGTH, e.g. 198.19.0.0/26 or 2001:db8:1::/64)"
            ))
        })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// `ip` with all but its first `len` bits cleared: the prefix it falls in.
pub fn mask(ip: IpAddr, len: u8) -> IpAddr {
    let max = if ip.is_ipv4() { 32 } else { 128 };
    IpNet::new(ip, len.min(max)).map_or(ip, |n| n.network())
}

/// Why an address (already canonical) is never probed, whatever the allowed ranges say; `None`
/// when the never-list does not name it. Each entry is a place a probe must not reach: the
/// host itself by another name, every host on a link, or a provider's credential service.
pub fn never(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v) => {
            let o = v.octets();
            if o[0] == 0 {
                // The kernel routes 0.x.y.z (not only 0.0.0.0) to this host.
                Some("0.0.0.0/8 (this host, this network)")
            } else if o[0] == 169 && o[1] == 254 {
                Some(
                    "link-local 169.254.0.0/16 (cloud metadata and container-credential endpoints)",
                )
            } else if v.is_broadcast() {
                Some("the broadcast address")
            } else if v.is_multicast() {
                Some("a multicast address")
            } else {
                None
            }
        }
        IpAddr::V6(v) => {
            let s = v.segments();
            if v.is_unspecified() {
                Some("the unspecified address")
            } else if v.is_multicast() {
                Some("a multicast address")
            } else if s[0] & 0xffc0 == 0xfe80 {
                Some("link-local fe80::/10")
            } else if s[0] == 0xfd00 && s[1] == 0x0ec2 {
                Some("fd00:ec2::/32 (cloud metadata and container-credential endpoints)")
            } else {
                None
            }
        }
    }
}

/// The IPv4 addresses an IPv6 address may carry to an IPv4 host: NAT64 (`64:ff9b::/96`, and
/// `64:ff9b:1::/48` at each RFC 6052 prefix length), IPv4-compatible (`::a.b.c.d`) and 6to4
/// (`2002::/16`), each with the name of its form. IPv4-mapped addresses are not here: they are
/// canonicalised to IPv4 before any fence.
pub fn embedded_v4(v: Ipv6Addr) -> Vec<(Ipv4Addr, &'static str)> {
    let o = v.octets();
    let s = v.segments();
    let v4 = |a: usize, b: usize, c: usize, d: usize| Ipv4Addr::new(o[a], o[b], o[c], o[d]);
    let mut out = Vec::new();
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        out.push((v4(12, 13, 14, 15), "NAT64 64:ff9b::/96"));
    }
    if s[..3] == [0x64, 0xff9b, 1] {
        // RFC 6052: the IPv4 bits sit after the prefix, skipping bits 64-71.
        for at in [
            [6, 7, 9, 10],
            [7, 9, 10, 11],
            [9, 10, 11, 12],
            [12, 13, 14, 15],
        ] {
            out.push((v4(at[0], at[1], at[2], at[3]), "NAT64 64:ff9b:1::/48"));
        }
    }
    if s[..6] == [0; 6] && u128::from(v) > 1 {
        out.push((v4(12, 13, 14, 15), "IPv4-compatible ::a.b.c.d"));
    }
    if s[0] == 0x2002 {
        out.push((v4(2, 3, 4, 5), "6to4 2002::/16"));
    }
    out
}

/// Why the fence refused an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fenced {
    /// On the never-list (itself, or the IPv4 address it embeds): the reason.
    Never(String),
    /// Loopback, and no allowed range inside loopback holds it.
    Loopback,
    /// In none of the allowed ranges.
    Outside,
}

/// The one predicate every on-demand entry point uses (the request's target, a forwarded
/// request, a resolved pod, the `from` agents): `ip` canonicalised, checked against the
/// never-list (also through the IPv4 address it embeds), loopback admitted only by an allowed
/// range that lies inside loopback, then any allowed range. Ok: the canonical address, the one
/// to send to.
pub fn fence(ip: IpAddr, allowed: &[Cidr]) -> Result<IpAddr, Fenced> {
    let ip = ip.to_canonical();
    if let Some(why) = never(ip) {
        return Err(Fenced::Never(why.to_string()));
    }
    if let IpAddr::V6(v) = ip {
        for (v4, form) in embedded_v4(v) {
            let why = never(IpAddr::V4(v4)).or(v4.is_loopback().then_some("loopback"));
            if let Some(why) = why {
                return Err(Fenced::Never(format!("{form} embeds {v4}: {why}")));
            }
        }
    }
    if ip.is_loopback() {
        let lo = if ip.is_ipv4() {
            Cidr::parse("127.0.0.0/8")
        } else {
            Cidr::parse("::1/128")
        };
        let ok = lo.is_some_and(|lo| allowed.iter().any(|c| c.inside(&lo) && c.contains(ip)));
        return if ok { Ok(ip) } else { Err(Fenced::Loopback) };
    }
    if allowed.iter().any(|c| c.contains(ip)) {
        Ok(ip)
    } else {
        Err(Fenced::Outside)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        Cidr::parse(s).unwrap()
    }

    #[test]
    fn parse_and_contains() {
        assert_eq!(c("10.1.2.3/8"), c("10.0.0.0/8"));
        assert_eq!(c("10.0.0.0/8").to_string(), "10.0.0.0/8");
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "::/129",
            "x/8",
            "10.0.0.0/-1",
            "",
        ] {
            assert_eq!(Cidr::parse(bad), None, "{bad}");
        }
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let table: &[(&str, &str, bool)] = &[
            ("10.0.0.0/8", "10.255.1.1", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("10.0.0.0/8", "::ffff:10.1.2.3", true),
            ("::/0", "::ffff:10.1.2.3", false),
            ("::/0", "2001:db8::1", true),
            ("0.0.0.0/0", "2001:db8::1", false),
            ("2001:db8::/32", "2001:db8:1::1", true),
            ("2001:db8::/32", "2001:db9::1", false),
        ];
        for (net, addr, want) in table {
            assert_eq!(c(net).contains(ip(addr)), *want, "{net} ∋ {addr}");
        }
        assert!(c("127.0.0.0/24").inside(&c("127.0.0.0/8")));
        assert!(!c("0.0.0.0/0").inside(&c("127.0.0.0/8")));
        assert_eq!(mask(ip("10.1.2.3"), 16), ip("10.1.0.0"));
        assert_eq!(mask(ip("10.1.2.3"), 0), ip("0.0.0.0"));
    }

    #[test]
    fn the_fence() {
        let wide = [c("0.0.0.0/0"), c("::/0")];
        let lo = [c("127.0.0.0/24"), c("::/0")];
        enum W {
            Ok(&'static str),
            Never,
            Loopback,
            Outside,
        }
        // (address, allowed, want)
        let table: &[(&str, &[Cidr], W)] = &[
            ("198.18.0.1", &wide, W::Ok("198.18.0.1")),
            ("2001:db8::1", &wide, W::Ok("2001:db8::1")),
            ("::ffff:198.18.0.1", &wide, W::Ok("198.18.0.1")),
            ("::ffff:198.18.0.1", &[c("::/0")], W::Outside),
            ("10.0.0.1", &[c("198.18.0.0/15")], W::Outside),
            // The never-list: all of 0.0.0.0/8 and link-local, in every spelling.
            ("0.0.0.0", &wide, W::Never),
            ("0.1.2.3", &wide, W::Never),
            ("::ffff:0.0.0.0", &wide, W::Never),
            ("169.254.169.254", &wide, W::Never),
            ("169.254.170.2", &wide, W::Never),
            ("169.254.170.23", &wide, W::Never),
            ("::ffff:169.254.169.254", &wide, W::Never),
            ("64:ff9b::a9fe:a9fe", &wide, W::Never),
            ("64:ff9b::7f00:1", &wide, W::Never),
            ("64:ff9b::0.0.0.0", &wide, W::Never),
            ("64:ff9b:1:a9fe:a9:fe00::", &wide, W::Never),
            ("64:ff9b:1::7f00:1", &wide, W::Never),
            ("::169.254.169.254", &wide, W::Never),
            ("::127.0.0.1", &wide, W::Never),
            ("::0.0.0.2", &wide, W::Never),
            ("2002:a9fe:a9fe::1", &wide, W::Never),
            ("2002:7f00:1::1", &wide, W::Never),
            ("fe80::1", &wide, W::Never),
            ("febf::1", &wide, W::Never),
            ("fd00:ec2::254", &wide, W::Never),
            ("fd00:ec2::23", &wide, W::Never),
            ("fd00:ec2:1::1", &wide, W::Never),
            ("255.255.255.255", &wide, W::Never),
            ("224.0.0.1", &wide, W::Never),
            ("ff02::1", &wide, W::Never),
            ("::", &wide, W::Never),
            // Loopback: only through an allowed range inside loopback.
            ("127.0.0.1", &wide, W::Loopback),
            ("::ffff:127.0.0.1", &wide, W::Loopback),
            ("::1", &wide, W::Loopback),
            ("127.0.0.1", &lo, W::Ok("127.0.0.1")),
            ("::ffff:127.0.0.50", &lo, W::Ok("127.0.0.50")),
            ("127.0.1.1", &lo, W::Loopback),
            ("::1", &lo, W::Loopback),
            ("::1", &[c("::1/128")], W::Ok("::1")),
            // Neighbours of the never-list stay probe-able.
            ("1.0.0.1", &wide, W::Ok("1.0.0.1")),
            ("169.253.255.255", &wide, W::Ok("169.253.255.255")),
            ("169.255.0.1", &wide, W::Ok("169.255.0.1")),
            ("fec0::1", &wide, W::Ok("fec0::1")),
            ("fd00:ec3::1", &wide, W::Ok("fd00:ec3::1")),
            ("64:ff9b::c612:1", &wide, W::Ok("64:ff9b::c612:1")),
        ];
        for (addr, allowed, want) in table {
            let got = fence(addr.parse().unwrap(), allowed);
            let ok = match (want, &got) {
                (W::Ok(w), Ok(ip)) => *ip == w.parse::<IpAddr>().unwrap(),
                (W::Never, Err(Fenced::Never(_))) => true,
                (W::Loopback, Err(Fenced::Loopback)) => true,
                (W::Outside, Err(Fenced::Outside)) => true,
                _ => false,
            };
            assert!(ok, "{addr}: got {got:?}");
        }
        match fence("64:ff9b::a9fe:a9fe".parse().unwrap(), &wide) {
            Err(Fenced::Never(why)) => {
                assert!(
                    why.contains("NAT64") && why.contains("169.254.169.254"),
                    "{why}"
                )
            }
            other => panic!("{other:?}"),
        }
    }
}
