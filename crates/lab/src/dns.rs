//! The lab's cluster DNS: `cluster.local` served from the DNS pod's namespace by `hickory-server`,
//! in the `lab up` process (its sockets made inside the pod's namespace, as the live view's
//! proxies are), and a one-query client for `lab status` and the tests.
//!
//! The zone is [`dns_records`] (the agents' headless name, the two ClusterIPs, the nodes),
//! authoritative: any other name in `cluster.local` is NXDOMAIN.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

/// What the client's callers name: the record type asked and the response code answered.
pub use hickory_proto::op::ResponseCode;
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::rdata::{A, AAAA, SOA};
pub use hickory_proto::rr::RecordType;
use hickory_proto::rr::{LowerName, Name, RData, Record};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};
use socket2::Type;

use crate::netns;
use crate::plan::services::{dns_records, DNS_PORT, ZONE};
use crate::plan::Topology;
use meshprobe_core::error::{Error, Result};

/// Records' TTL: short, a lab's answers change with its faults, not its records.
const TTL: u32 = 5;
/// A TCP client that sends nothing for this long is dropped (hickory's own guard).
const TCP_IDLE: Duration = Duration::from_secs(30);

/// The zone as hickory's in-memory handler: an SOA and every record of [`dns_records`].
fn zone(topo: &Topology) -> std::result::Result<InMemoryZoneHandler, String> {
    let origin = Name::from_ascii(ZONE).map_err(|e| format!("{ZONE}: {e}"))?;
    let mut h = InMemoryZoneHandler::empty(origin.clone(), ZoneType::Primary, AxfrPolicy::Deny);
    let ns = Name::from_ascii(format!("ns.dns.{ZONE}")).map_err(|e| e.to_string())?;
    let admin = Name::from_ascii(format!("hostmaster.{ZONE}")).map_err(|e| e.to_string())?;
    let serial = 1;
    let soa = SOA::new(ns, admin, serial, 7200, 1800, 86400, TTL);
    if !h.upsert_mut(Record::from_rdata(origin, TTL, RData::SOA(soa)), serial) {
        return Err("the zone's SOA was refused".into());
    }
    for (name, ip) in dns_records(topo) {
        let n = Name::from_ascii(&name).map_err(|e| format!("{name}: {e}"))?;
        let rdata = match ip {
            IpAddr::V4(a) => RData::A(A(a)),
            IpAddr::V6(a) => RData::AAAA(AAAA(a)),
        };
        if !h.upsert_mut(Record::from_rdata(n, TTL, rdata), serial) {
            return Err(format!("{name} {ip} was refused"));
        }
    }
    Ok(h)
}

/// Serve the zone on the DNS pod's address(es), UDP and TCP port 53, until the process ends.
/// Binds before returning, so a failure is the caller's error, not a silent missing server.
pub async fn serve(topo: &Topology) -> Result<()> {
    let handler = zone(topo).map_err(|e| Error::Lab(format!("DNS zone: {e}")))?;
    let origin =
        LowerName::from(Name::from_ascii(ZONE).map_err(|e| Error::Lab(format!("DNS zone: {e}")))?);
    let mut catalog = Catalog::new();
    catalog.upsert(origin, vec![Arc::new(handler)]);
    let mut server = hickory_server::Server::new(catalog);
    let ns = topo.dns_ns();
    let families = topo.families();
    for f in families {
        let addr = SocketAddr::new(topo.in_family(f).dns_pod_ip(), DNS_PORT);
        let bind_err =
            |what: &str, e: io::Error| Error::Lab(format!("DNS pod: {what} {addr} in {ns}: {e}"));
        let udp = netns::socket_in(&ns, &addr, Type::DGRAM).map_err(|e| bind_err("udp", e))?;
        udp.bind(&addr.into())
            .map_err(|e| bind_err("bind udp", e))?;
        udp.set_nonblocking(true).map_err(|e| bind_err("udp", e))?;
        let udp = tokio::net::UdpSocket::from_std(UdpSocket::from(udp))
            .map_err(|e| bind_err("udp", e))?;
        server.register_socket(udp);
        let tcp = netns::listen_in(&ns, addr).map_err(|e| bind_err("listen tcp", e))?;
        tcp.set_nonblocking(true).map_err(|e| bind_err("tcp", e))?;
        let tcp = tokio::net::TcpListener::from_std(tcp).map_err(|e| bind_err("tcp", e))?;
        server.register_listener(tcp, TCP_IDLE, 64 * 1024);
    }
    tokio::spawn(async move {
        if let Err(e) = server.block_until_done().await {
            errln!("meshprobe lab: the DNS server stopped: {e}");
        }
    });
    Ok(())
}

/// One DNS answer: its response code and the addresses it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub rcode: ResponseCode,
    pub ips: Vec<IpAddr>,
}

/// The query for `name` (`A` for an IPv4 address type, `AAAA` for IPv6), as wire bytes.
fn query_bytes(name: &str, rtype: RecordType, id: u16) -> io::Result<Vec<u8>> {
    let n = Name::from_ascii(name)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{name}: {e}")))?;
    let mut m = Message::query();
    m.metadata.id = id;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(n, rtype));
    m.to_vec().map_err(io::Error::other)
}

/// Read the answer to query `id` from wire bytes (anything else is an error, never a panic).
fn parse_answer(buf: &[u8], id: u16) -> io::Result<Answer> {
    let m = Message::from_vec(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    if m.metadata.id != id {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("answer to query {} instead of {id}", m.metadata.id),
        ));
    }
    let ips = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect();
    Ok(Answer {
        rcode: m.metadata.response_code,
        ips,
    })
}

/// A query id that differs between calls (a stale answer to an earlier query never matches).
fn next_id() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u16);
    NEXT.fetch_add(1, Ordering::Relaxed).wrapping_add(seed)
}

/// Ask `server` for `name`'s `rtype` over UDP from inside namespace `ns`; one attempt, `timeout`.
pub fn query_udp_in(
    ns: &str,
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
    timeout: Duration,
) -> io::Result<Answer> {
    let s = netns::socket_in(ns, &server, Type::DGRAM)?;
    let s = UdpSocket::from(s);
    s.set_read_timeout(Some(timeout))?;
    s.connect(server)?;
    let id = next_id();
    s.send(&query_bytes(name, rtype, id)?)?;
    let mut buf = [0u8; 4096];
    let n = s
        .recv(&mut buf)
        .map_err(|e| timed_out(e, server, timeout))?;
    parse_answer(&buf[..n], id)
}

/// A read timeout as what it is (the socket reports it as `WouldBlock`, "temporarily unavailable").
fn timed_out(e: io::Error, server: SocketAddr, timeout: Duration) -> io::Error {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no answer from {server} in {timeout:?}"),
        ),
        _ => e,
    }
}

/// Connect over TCP to `server` from inside namespace `ns` (for [`query_tcp_on`]).
pub fn connect_tcp_in(ns: &str, server: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    netns::connect_in_blocking(ns, server, timeout)
}

/// Ask over an open TCP connection (length-prefixed, RFC 1035 4.2.2); `timeout` for each
/// read and write.
pub fn query_tcp_on(
    s: &mut TcpStream,
    name: &str,
    rtype: RecordType,
    timeout: Duration,
) -> io::Result<Answer> {
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let id = next_id();
    let q = query_bytes(name, rtype, id)?;
    let len = u16::try_from(q.len()).map_err(io::Error::other)?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend(q);
    let server = s.peer_addr()?;
    s.write_all(&framed)
        .map_err(|e| timed_out(e, server, timeout))?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len)
        .map_err(|e| timed_out(e, server, timeout))?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf)?;
    parse_answer(&buf, id)
}

/// Ask `server` for `name` over a new TCP connection from inside namespace `ns`.
pub fn query_tcp_in(
    ns: &str,
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
    timeout: Duration,
) -> io::Result<Answer> {
    let mut s = connect_tcp_in(ns, server, timeout)?;
    query_tcp_on(&mut s, name, rtype, timeout)
}

/// `A` for an IPv4 lab, `AAAA` for an IPv6 one: the type that asks for `ip`'s family.
pub fn rtype_for(ip: IpAddr) -> RecordType {
    match ip {
        IpAddr::V4(_) => RecordType::A,
        IpAddr::V6(_) => RecordType::AAAA,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::services::{AGENTS_NAME, AGENTS_VIP_NAME};
    use crate::plan::IpFamily;

    #[test]
    fn the_zone_holds_every_record_and_the_wire_round_trips() {
        let t = Topology::new("mp", 4, 2)
            .unwrap()
            .with_family(IpFamily::Dual)
            .unwrap();
        let h = zone(&t).unwrap();
        // SOA + the records, each (name, type) an RRset.
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let sets = rt.block_on(async { h.records().await.len() });
        // SOA; agents A, AAAA; VIP A, AAAA; DNS A, AAAA; 4 nodes × A, AAAA.
        assert_eq!(sets, 1 + 2 + 2 + 2 + 8);
        let q = query_bytes(AGENTS_VIP_NAME, RecordType::A, 7).unwrap();
        let m = Message::from_vec(&q).unwrap();
        assert_eq!(m.queries[0].name().to_ascii(), AGENTS_VIP_NAME);
        // An answer is read back; garbage and a wrong id are errors, not panics.
        let mut r = Message::response(7, hickory_proto::op::OpCode::Query);
        r.add_answer(Record::from_rdata(
            Name::from_ascii(AGENTS_NAME).unwrap(),
            5,
            RData::A(A("198.19.1.10".parse().unwrap())),
        ));
        let bytes = r.to_vec().unwrap();
        let a = parse_answer(&bytes, 7).unwrap();
        assert_eq!(a.rcode, ResponseCode::NoError);
        assert_eq!(a.ips, ["198.19.1.10".parse::<IpAddr>().unwrap()]);
        assert!(parse_answer(&bytes, 8).is_err());
        assert!(parse_answer(b"\x00\x01garbage", 7).is_err());
        assert!(parse_answer(&[], 7).is_err());
    }
}
