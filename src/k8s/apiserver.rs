//! The `apiserver_endpoints` check's addresses under Kubernetes discovery (without
//! `--apiserver-endpoints`): the ready endpoints of the `default/kubernetes` EndpointSlices
//! (label `kubernetes.io/service-name=kubernetes`, what the API servers themselves maintain),
//! one bounded `list` in `default`, read like the `service` check's Service (`k8s::service`):
//! at start, every 5 minutes (± 10 %), and at most once a minute while the check fails 3 times
//! in a row — a control plane replaced is followed within about a minute, a node cut off from
//! it costs one small list a minute. A list, not a `get`: the slices' names are generated.
//! The pure part, [`pick`], takes nothing from the API on trust.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::ListParams;
use kube::{Api, Client};

use super::service::{on_schedule, FamilyPref, Schedule};
use crate::checks::apiserver::MAX_ENDPOINTS;
use crate::checks::{Check, Checks, Kind};
use crate::discovery::{DiscoveryStatus, VipStatus};
use crate::model::Family;

/// Where the slices are: the `kubernetes` Service in `default`.
pub const NAMESPACE: &str = "default";
pub const SELECTOR: &str = "kubernetes.io/service-name=kubernetes";
/// What the status and the logs call them.
const WHAT: &str = "EndpointSlices default/kubernetes";

/// Slices listed, and endpoints and ports looked at per slice, at most (one slice of 1-5
/// endpoints and one port in practice; an answer beyond these is cut, not trusted).
const MAX_SLICES: u32 = 8;
const MAX_SLICE_ENDPOINTS: usize = 64;
const MAX_PORTS: usize = 16;

/// The API servers' port name in the `kubernetes` Service's slices.
const PORT_NAME: &str = "https";

/// An endpoint address as the check may connect to it.
fn usable(ip: IpAddr) -> bool {
    !ip.is_unspecified() && !ip.is_multicast() && ip != IpAddr::from([255, 255, 255, 255])
}

/// The check's addresses from the slices, or why there are none: each IPv4/IPv6 slice's port
/// named `https` (else its first TCP port, 1-65535) with each endpoint not marked unready
/// (`conditions.ready` absent counts as ready, as the API defines it), of the family `pref`
/// asks for (`Prefer`: that family when it has any, else the other); sorted, deduplicated, at
/// most [`MAX_ENDPOINTS`].
pub fn pick(slices: &[EndpointSlice], pref: FamilyPref) -> Result<Vec<SocketAddr>, String> {
    let mut all: Vec<SocketAddr> = Vec::new();
    let mut skipped = Vec::new();
    for s in slices.iter().take(MAX_SLICES as usize) {
        let family = match s.address_type.as_str() {
            "IPv4" => Family::Ipv4,
            "IPv6" => Family::Ipv6,
            _ => continue,
        };
        let tcp: Vec<_> = s
            .ports
            .iter()
            .flatten()
            .take(MAX_PORTS)
            .filter(|p| p.protocol.as_deref().is_none_or(|p| p == "TCP"))
            .collect();
        let Some(port) = tcp
            .iter()
            .find(|p| p.name.as_deref() == Some(PORT_NAME))
            .or(tcp.first())
        else {
            skipped.push("a slice without a TCP port".to_string());
            continue;
        };
        let Some(port) = port
            .port
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0)
        else {
            skipped.push(format!("a port {:?}, not 1-65535", port.port));
            continue;
        };
        for e in s.endpoints.iter().take(MAX_SLICE_ENDPOINTS) {
            if e.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            // One address per endpoint (the API's rule); a bad one is skipped, not trusted.
            match e.addresses.first().map(|a| a.trim().parse::<IpAddr>()) {
                Some(Ok(ip)) if usable(ip) && Family::of(ip) == family => {
                    all.push(SocketAddr::new(ip, port))
                }
                _ => skipped.push("an endpoint without a usable address".into()),
            }
        }
    }
    let of = |f: Family| -> Vec<SocketAddr> {
        all.iter()
            .copied()
            .filter(|a| Family::of(a.ip()) == f)
            .collect()
    };
    let mut chosen = match pref {
        FamilyPref::Only(f) => of(f),
        FamilyPref::Prefer(f) if !of(f).is_empty() => of(f),
        FamilyPref::Prefer(_) | FamilyPref::Primary => all.clone(),
    };
    chosen.sort();
    chosen.dedup();
    chosen.truncate(MAX_ENDPOINTS);
    if chosen.is_empty() {
        let why = match pref {
            FamilyPref::Only(f) if !all.is_empty() => format!("no ready {f} endpoint"),
            _ => "no ready endpoint".into(),
        };
        return Err(if skipped.is_empty() {
            why
        } else {
            format!("{why} (skipped {})", skipped[0])
        });
    }
    Ok(chosen)
}

/// What one read found.
#[derive(Debug, Clone, PartialEq)]
pub enum Read {
    Target(Vec<SocketAddr>),
    /// No check, and why.
    NoCheck(String),
    /// The read failed: the last target, if any, is kept.
    Failed(String),
}

/// Reads the slices and sets the `apiserver_endpoints` check's addresses in [`Checks`].
pub struct EndpointsLookup {
    pub client: Client,
    pub pref: FamilyPref,
    pub tls: Arc<rustls::ClientConfig>,
    pub token: Option<PathBuf>,
    pub checks: Arc<Checks>,
    pub status: Arc<Mutex<DiscoveryStatus>>,
    pub schedule: Schedule,
}

impl EndpointsLookup {
    /// One list, within the schedule's timeout.
    pub async fn read(&self) -> Read {
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), NAMESPACE);
        let what = format!("list endpointslices -n {NAMESPACE} -l {SELECTOR}");
        let lp = ListParams::default().labels(SELECTOR).limit(MAX_SLICES);
        match tokio::time::timeout(self.schedule.timeout, api.list(&lp)).await {
            Err(_) => Read::Failed(format!(
                "kubernetes API, {what}: no answer within {}s",
                self.schedule.timeout.as_secs()
            )),
            Ok(Err(e)) => Read::Failed(super::explain_client_error(&what, &e)),
            Ok(Ok(list)) => match pick(&list.items, self.pref) {
                Ok(addrs) => Read::Target(addrs),
                Err(why) => Read::NoCheck(format!("{WHAT}: {why}")),
            },
        }
    }

    /// Act on a read: set or clear the check, say so in the status, log a change once.
    pub fn apply(&self, read: &Read) {
        let mut st = self.status.lock().unwrap_or_else(|p| p.into_inner());
        let before = st.apiserver_endpoints.clone();
        let kept = before.as_ref().and_then(|b| b.target.clone());
        let now = match read {
            Read::Target(addrs) => {
                let check = Check::apiserver(
                    Kind::ApiserverEndpoints,
                    addrs.clone(),
                    self.tls.clone(),
                    self.token.clone(),
                );
                let target = check.target.clone();
                self.checks.set(Kind::ApiserverEndpoints, Some(check));
                VipStatus {
                    service: WHAT.into(),
                    target: Some(target),
                    reason: None,
                }
            }
            Read::NoCheck(why) => {
                self.checks.set(Kind::ApiserverEndpoints, None);
                VipStatus {
                    service: WHAT.into(),
                    target: None,
                    reason: Some(why.clone()),
                }
            }
            Read::Failed(why) => VipStatus {
                service: WHAT.into(),
                reason: Some(match &kept {
                    Some(t) => format!("{why} (keeping the last target {t})"),
                    None => why.clone(),
                }),
                target: kept,
            },
        };
        if before.as_ref() != Some(&now) {
            match (read, &now.target) {
                (Read::Target(_), Some(t)) => {
                    tracing::info!(target = %t, "apiserver_endpoints check: the API server's endpoints")
                }
                (_, _) => {
                    let why = now.reason.as_deref().unwrap_or_default();
                    tracing::warn!(reason = %why, "apiserver_endpoints check: {why}")
                }
            }
        }
        st.apiserver_endpoints = Some(now);
    }

    /// Read now, then on the schedule, until the task is dropped.
    pub async fn run(self) {
        let this = &self;
        let kind = Kind::ApiserverEndpoints;
        on_schedule(self.schedule, &self.checks, kind, move || async move {
            let read = this.read().await;
            this.apply(&read);
            matches!(read, Read::Failed(_))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn slice(v: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(v).unwrap()
    }

    fn v4(endpoints: serde_json::Value) -> EndpointSlice {
        slice(json!({
            "metadata": {"name": "kubernetes", "namespace": "default"},
            "addressType": "IPv4",
            "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}],
            "endpoints": endpoints,
        }))
    }

    fn addrs(v: &[&str]) -> Vec<SocketAddr> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn ready_endpoints_of_the_agents_family_sorted_and_capped() {
        let s = v4(json!([
            {"addresses": ["10.0.0.3"]},
            {"addresses": ["10.0.0.1"], "conditions": {"ready": true}},
            {"addresses": ["10.0.0.2"], "conditions": {"ready": false}},
            {"addresses": ["10.0.0.1"]},
        ]));
        assert_eq!(
            pick(std::slice::from_ref(&s), FamilyPref::Primary),
            Ok(addrs(&["10.0.0.1:6443", "10.0.0.3:6443"]))
        );
        // The port named https, else the first TCP one.
        let other = slice(json!({
            "addressType": "IPv6",
            "metadata": {},
            "ports": [{"name": "x", "port": 53, "protocol": "UDP"}, {"name": "api", "port": 443}],
            "endpoints": [{"addresses": ["fd00::1"]}],
        }));
        let both = [s.clone(), other];
        assert_eq!(
            pick(&both, FamilyPref::Only(Family::Ipv6)),
            Ok(addrs(&["[fd00::1]:443"]))
        );
        assert_eq!(
            pick(&both, FamilyPref::Prefer(Family::Ipv4)).unwrap().len(),
            2
        );
        assert_eq!(pick(&both, FamilyPref::Primary).unwrap().len(), 3);
        let many: Vec<serde_json::Value> = (1..=40)
            .map(|i| json!({"addresses": [format!("10.0.1.{i}")]}))
            .collect();
        assert_eq!(
            pick(&[v4(json!(many))], FamilyPref::Primary).unwrap().len(),
            MAX_ENDPOINTS
        );
    }

    /// Nothing from the API on trust: garbage addresses, wrong families, bad ports,
    /// FQDN slices are skipped; none left is no check, with a bounded reason. (Loopback is not
    /// refused: the agent dials it from its own pod, and the tests' API servers live there.)
    #[test]
    fn unusable_slices_give_no_check_and_say_why() {
        let long = "x".repeat(5000);
        let s = v4(json!([
            {"addresses": [long]},
            {"addresses": ["fd00::1"]},
            {"addresses": ["0.0.0.0"]},
            {"addresses": []},
            {"addresses": ["10.0.0.9"], "conditions": {"ready": false}},
        ]));
        let e = pick(&[s], FamilyPref::Primary).unwrap_err();
        assert!(
            e.starts_with("no ready endpoint (skipped an endpoint"),
            "{e}"
        );
        assert!(e.len() < 100, "{e}");
        let bad_port = slice(json!({
            "addressType": "IPv4", "metadata": {},
            "ports": [{"name": "https", "port": 70000}],
            "endpoints": [{"addresses": ["10.0.0.1"]}],
        }));
        let e = pick(&[bad_port], FamilyPref::Primary).unwrap_err();
        assert!(e.contains("not 1-65535"), "{e}");
        let fqdn = slice(json!({
            "addressType": "FQDN", "metadata": {},
            "ports": [{"name": "https", "port": 443}],
            "endpoints": [{"addresses": ["api.example.com"]}],
        }));
        assert_eq!(
            pick(&[fqdn], FamilyPref::Primary),
            Err("no ready endpoint".into())
        );
        assert_eq!(
            pick(&[], FamilyPref::Primary),
            Err("no ready endpoint".into())
        );
        let v4only = v4(json!([{"addresses": ["10.0.0.1"]}]));
        assert_eq!(
            pick(&[v4only], FamilyPref::Only(Family::Ipv6)),
            Err("no ready ipv6 endpoint".into())
        );
    }
}
