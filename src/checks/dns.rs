//! The `dns` check: one query for one absolute name through the pod's resolver (or
//! `--dns-server`), with hickory-resolver.
//!
//! Rules, each so that one check is one query to the server, judged on its own: no cache (a
//! cached answer would say nothing about the server now), one attempt and one server at a time
//! (a retry or a second server would hide a lost query), no hosts file (`/etc/hosts` would
//! answer instead of the server), an absolute name (no search list), the whole lookup bounded
//! by `--timeout` on top of the resolver's own timeout.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RecordType};
use hickory_resolver::TokioResolver;
use tokio::time::Instant;

use super::Outcome;
use crate::model::IpFamilies;

/// The result labels a DNS check can report (`meshprobe_check_total{check="dns",result}`).
pub const RESULTS: [&str; 9] = [
    "ok",
    "nxdomain",
    "no_answer",
    "servfail",
    "refused",
    "rcode_other",
    "timeout",
    "io",
    "other",
];

/// A configured `dns` check.
pub struct DnsCheck {
    name: Name,
    record_type: RecordType,
    /// `Err`: why there is no resolver (no readable /etc/resolv.conf): every check fails with it.
    resolver: Result<TokioResolver, String>,
}

impl std::fmt::Debug for DnsCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsCheck")
            .field("name", &self.name.to_ascii())
            .field("record_type", &self.record_type)
            .field("resolver", &self.resolver.as_ref().map(|_| "ready"))
            .finish()
    }
}

impl DnsCheck {
    /// `name` absolute (as [`crate::config::dns_name`] makes it); `server` `None`: the name
    /// servers of /etc/resolv.conf. Asks AAAA with `--ip-family ipv6`, or `auto` when the
    /// (first) name server is IPv6 — a single-stack IPv6 cluster's DNS; else A. Must run inside
    /// a Tokio runtime.
    pub fn new(
        name: &str,
        server: Option<SocketAddr>,
        families: IpFamilies,
        timeout: Duration,
    ) -> Self {
        let name = Name::from_ascii(name).unwrap_or_else(|_| Name::root());
        let conf = match server {
            Some(addr) => {
                let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                for c in &mut ns.connections {
                    c.port = addr.port();
                }
                Ok((
                    ResolverConfig::from_name_servers(vec![ns]),
                    ResolverOpts::default(),
                ))
            }
            None => hickory_resolver::system_conf::read_system_conf()
                .map_err(|e| format!("cannot read /etc/resolv.conf: {e}")),
        };
        let server_v6 = conf
            .as_ref()
            .ok()
            .and_then(|(c, _)| c.name_servers().first())
            .is_some_and(|ns| ns.ip.is_ipv6());
        let record_type = match families {
            IpFamilies::Ipv6 => RecordType::AAAA,
            IpFamilies::Auto if server_v6 => RecordType::AAAA,
            _ => RecordType::A,
        };
        DnsCheck {
            name,
            record_type,
            resolver: conf.and_then(|(c, o)| resolver(c, o, timeout)),
        }
    }

    /// The record type asked for.
    pub fn record_type(&self) -> &'static str {
        if self.record_type == RecordType::AAAA {
            "AAAA"
        } else {
            "A"
        }
    }

    /// One query, answered or failed within `timeout`.
    pub async fn run(&self, timeout: Duration) -> Outcome {
        let start = Instant::now();
        let resolver = match &self.resolver {
            Ok(r) => r,
            Err(e) => return Outcome::failed("other", start.elapsed(), None, e.clone()),
        };
        let lookup = tokio::time::timeout(
            timeout,
            resolver.lookup(self.name.clone(), self.record_type),
        )
        .await;
        let took = start.elapsed();
        let answers = lookup.as_ref().ok().and_then(|r| r.as_ref().ok()).map(|l| {
            l.answers()
                .iter()
                .filter(|r| r.record_type() == self.record_type)
                .count()
        });
        let kind = match &lookup {
            Err(_) => "timeout",
            Ok(r) => classify(r.as_ref().map(|_| ())),
        };
        match (kind, answers) {
            ("ok", Some(n)) if n > 0 => Outcome {
                answers: Some(u32::try_from(n).unwrap_or(u32::MAX)),
                ..Outcome::ok(took)
            },
            // An answer without a record of the type asked (only a CNAME, say) is no answer.
            ("ok", _) => Outcome::failed("no_answer", took, None, "no records in the answer"),
            (kind, _) => {
                let detail = match lookup {
                    Err(_) => format!("no answer within {} ms", timeout.as_millis()),
                    Ok(Err(e)) => e.to_string(),
                    Ok(Ok(_)) => String::new(),
                };
                Outcome::failed(kind, took, None, detail)
            }
        }
    }
}

/// The resolver: one server tried once, no cache, no hosts file, `timeout` per query (the
/// rest of resolv.conf's options kept).
fn resolver(
    config: ResolverConfig,
    options: ResolverOpts,
    timeout: Duration,
) -> Result<TokioResolver, String> {
    let mut builder = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
        .with_options(options);
    let o = builder.options_mut();
    o.timeout = timeout;
    // Retries after the first query (hickory's RetryDnsHandle): none.
    o.attempts = 0;
    o.num_concurrent_reqs = 1;
    o.cache_size = 0;
    // A zero cache may still hold an entry until its eviction runs: no entry outlives 0 s.
    o.positive_max_ttl = Some(Duration::ZERO);
    o.negative_max_ttl = Some(Duration::ZERO);
    o.use_hosts_file = ResolveHosts::Never;
    o.try_tcp_on_error = false;
    builder.build().map_err(|e| format!("DNS resolver: {e}"))
}

/// A lookup's result as a bounded label: `ok`, a response code, or how it failed.
pub fn classify(result: Result<(), &NetError>) -> &'static str {
    let e = match result {
        Ok(()) => return "ok",
        Err(e) => e,
    };
    match e {
        NetError::Timeout => "timeout",
        NetError::Dns(DnsError::NoRecordsFound(nr)) => match nr.response_code {
            ResponseCode::NXDomain => "nxdomain",
            ResponseCode::NoError => "no_answer",
            ResponseCode::ServFail => "servfail",
            ResponseCode::Refused => "refused",
            _ => "rcode_other",
        },
        NetError::Dns(DnsError::ResponseCode(code)) => match *code {
            ResponseCode::NXDomain => "nxdomain",
            ResponseCode::ServFail => "servfail",
            ResponseCode::Refused => "refused",
            _ => "rcode_other",
        },
        NetError::Io(_) => "io",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::net::NoRecords;
    use hickory_resolver::proto::op::Query;

    fn no_records(code: ResponseCode) -> NetError {
        let q = Query::query(Name::from_ascii("x.example.").unwrap(), RecordType::A);
        NetError::Dns(DnsError::NoRecordsFound(NoRecords::new(q, code)))
    }

    /// Every way a lookup ends maps to one of the bounded labels, rcodes by name.
    #[test]
    fn results_are_classified_into_bounded_labels() {
        let cases: Vec<(Result<(), NetError>, &str)> = vec![
            (Ok(()), "ok"),
            (Err(NetError::Timeout), "timeout"),
            (Err(no_records(ResponseCode::NXDomain)), "nxdomain"),
            (Err(no_records(ResponseCode::NoError)), "no_answer"),
            (
                Err(NetError::Dns(DnsError::ResponseCode(
                    ResponseCode::ServFail,
                ))),
                "servfail",
            ),
            (
                Err(NetError::Dns(DnsError::ResponseCode(ResponseCode::Refused))),
                "refused",
            ),
            (
                Err(NetError::Dns(DnsError::ResponseCode(ResponseCode::FormErr))),
                "rcode_other",
            ),
            (
                Err(NetError::from(std::io::Error::from(
                    std::io::ErrorKind::ConnectionRefused,
                ))),
                "io",
            ),
            (Err(NetError::NoConnections), "other"),
        ];
        for (r, want) in cases {
            let got = classify(r.as_ref().map(|_| ()));
            assert_eq!(got, want, "{r:?}");
            assert!(RESULTS.contains(&got));
        }
    }
}
