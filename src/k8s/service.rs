//! The `service` check's ClusterIP under Kubernetes discovery (without `--service`): one GET of
//! one Service (`--service-name`, `meshprobe-vip` in the agents' namespace by default,
//! deploy/base/service-vip.yaml), not a watch: a Service's ClusterIP changes only when it is
//! recreated, so a cluster-wide watch would cost every agent a stream for nothing. Re-read every
//! 5 minutes (± 10 %), and sooner — at most once a minute — while the check fails 3 times in a
//! row: a Service recreated with a new ClusterIP is then followed within about a minute, while a
//! node whose rules are broken (the fault the check is for) costs the API server one small GET
//! a minute, no more. The pure part, [`pick`], takes nothing from the API on trust.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use kube::{Api, Client};
use tokio::time::Instant;

use crate::checks::{Check, Checks, Kind};
use crate::config::ServiceRef;
use crate::discovery::{DiscoveryStatus, VipStatus};
use crate::model::{Family, IpFamilies};
use crate::probe::Prober;

/// The agents' port name (the DaemonSet's containerPort and the headless Service's port):
/// the Service's port of this name is the check's, else its first TCP port.
pub const AGENT_PORT_NAME: &str = "http";

/// Ports looked at, at most (the API allows many; the agents' Service has one).
const MAX_PORTS: usize = 64;

/// Longest text taken from the object into a reason (a garbage clusterIP, a port name).
const MAX_ECHO: usize = 64;

/// When the Service is read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Re-read this often (± 10 %).
    pub period: Duration,
    /// ... and sooner once the check failed this many times in a row,
    pub after_failures: u32,
    /// but never sooner than this after the last read.
    pub min_gap: Duration,
    /// After a failed read, retry after this, doubling up to `period`.
    pub retry: Duration,
    /// How often the check's failures are looked at.
    pub tick: Duration,
    /// Bound on one GET.
    pub timeout: Duration,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            period: Duration::from_secs(300),
            after_failures: 3,
            min_gap: Duration::from_secs(60),
            retry: Duration::from_secs(15),
            tick: Duration::from_secs(5),
            timeout: Duration::from_secs(5),
        }
    }
}

/// Which of a dual-stack Service's ClusterIPs the check takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyPref {
    /// `--ip-family ipv4|ipv6`: that family or no check.
    Only(Family),
    /// The agent's own pod's primary family, else the Service's primary (`spec.clusterIP`).
    Prefer(Family),
    /// The Service's primary.
    Primary,
}

impl FamilyPref {
    /// From `--ip-family` and the agent's own pod IP (its primary family), when known.
    pub fn of(families: IpFamilies, own_pod_ip: Option<IpAddr>) -> Self {
        match families {
            IpFamilies::Ipv4 => FamilyPref::Only(Family::Ipv4),
            IpFamilies::Ipv6 => FamilyPref::Only(Family::Ipv6),
            IpFamilies::Auto | IpFamilies::Dual => {
                own_pod_ip.map_or(FamilyPref::Primary, |ip| FamilyPref::Prefer(Family::of(ip)))
            }
        }
    }
}

/// `s` quoted, at most [`MAX_ECHO`] characters of it.
fn echo(s: &str) -> String {
    let cut: String = s.chars().take(MAX_ECHO).collect();
    if cut.len() < s.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

/// A ClusterIP as the check may connect to it: an address, not unspecified, multicast or
/// broadcast.
fn cluster_ip(field: &str, s: &str) -> Result<IpAddr, String> {
    match s.trim().parse::<IpAddr>() {
        Ok(ip)
            if !ip.is_unspecified()
                && !ip.is_multicast()
                && ip != IpAddr::from([255, 255, 255, 255]) =>
        {
            Ok(ip)
        }
        _ => Err(format!("{field} {} is not a usable IP address", echo(s))),
    }
}

/// The check's `IP:PORT` from the Service, or why it has none. The address: `spec.clusterIPs`
/// (at most two: one per family) or `spec.clusterIP`, of the family `pref` asks for; the
/// port: the one named [`AGENT_PORT_NAME`], else the first TCP one, 1-65535.
pub fn pick(svc: &Service, pref: FamilyPref) -> Result<SocketAddr, String> {
    let spec = svc.spec.as_ref().ok_or("no spec")?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return Err("type ExternalName: no ClusterIP".into());
    }
    let primary = match spec.cluster_ip.as_deref().map(str::trim) {
        None | Some("") => return Err("no spec.clusterIP".into()),
        Some("None") => return Err("headless (spec.clusterIP: None): no ClusterIP".into()),
        Some(s) => cluster_ip("spec.clusterIP", s)?,
    };
    let mut ips = vec![primary];
    for (i, s) in spec.cluster_ips.iter().flatten().enumerate().take(2) {
        let ip = cluster_ip(&format!("spec.clusterIPs[{i}]"), s)?;
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    let of = |f: Family| ips.iter().copied().find(|ip| Family::of(*ip) == f);
    let ip = match pref {
        FamilyPref::Only(f) => of(f).ok_or_else(|| {
            let have: Vec<String> = ips.iter().map(ToString::to_string).collect();
            format!(
                "no {f} ClusterIP (has {}; --ip-family {f})",
                have.join(", ")
            )
        })?,
        FamilyPref::Prefer(f) => of(f).unwrap_or(primary),
        FamilyPref::Primary => primary,
    };
    let tcp: Vec<_> = spec
        .ports
        .iter()
        .flatten()
        .take(MAX_PORTS)
        .filter(|p| p.protocol.as_deref().is_none_or(|p| p == "TCP"))
        .collect();
    let port = tcp
        .iter()
        .find(|p| p.name.as_deref() == Some(AGENT_PORT_NAME))
        .or(tcp.first())
        .ok_or("no TCP port in spec.ports")?;
    let number = u16::try_from(port.port)
        .ok()
        .filter(|n| *n != 0)
        .ok_or_else(|| {
            format!(
                "spec.ports {} has port {}, not 1-65535",
                echo(port.name.as_deref().unwrap_or("")),
                port.port
            )
        })?;
    Ok(SocketAddr::new(ip, number))
}

/// What one read found.
#[derive(Debug, Clone, PartialEq)]
pub enum Read {
    /// The check's address.
    Target(SocketAddr),
    /// No check: the Service does not exist (a deployment may leave it out).
    Missing(String),
    /// No check, and why: the Service is unusable.
    NoCheck(String),
    /// The read failed (the API server, a timeout): the last target, if any, is kept.
    Failed(String),
}

/// Reads the Service and sets the `service` check's target in [`Checks`].
pub struct VipLookup {
    pub client: Client,
    pub service: ServiceRef,
    pub pref: FamilyPref,
    pub http: Arc<dyn Prober>,
    pub checks: Arc<Checks>,
    pub status: Arc<Mutex<DiscoveryStatus>>,
    pub schedule: Schedule,
}

impl VipLookup {
    /// One GET, within the schedule's timeout.
    pub async fn read(&self) -> Read {
        let api: Api<Service> = Api::namespaced(self.client.clone(), &self.service.namespace);
        let what = format!("get services {}", self.service);
        match tokio::time::timeout(self.schedule.timeout, api.get_opt(&self.service.name)).await {
            Err(_) => Read::Failed(format!(
                "kubernetes API, {what}: no answer within {}s",
                self.schedule.timeout.as_secs()
            )),
            Ok(Err(e)) => Read::Failed(super::explain_client_error(&what, &e)),
            Ok(Ok(None)) => Read::Missing(format!(
                "Service {} not found (deploy/base/service-vip.yaml; --service-name names another, none turns the check off)",
                self.service
            )),
            Ok(Ok(Some(svc))) => match pick(&svc, self.pref) {
                Ok(addr) => Read::Target(addr),
                Err(why) => Read::NoCheck(format!("Service {}: {why}", self.service)),
            },
        }
    }

    /// Act on a read: set or clear the check's target, say so in the status, and log a change
    /// once (not every read).
    pub fn apply(&self, read: &Read) {
        let service = self.service.to_string();
        // A panic elsewhere while holding the status must not stop the check's updates.
        let mut st = self.status.lock().unwrap_or_else(|p| p.into_inner());
        let before = st.service.clone();
        let kept = before.as_ref().and_then(|b| b.target.clone());
        let now = match read {
            Read::Target(addr) => {
                self.checks.set(
                    Kind::Service,
                    Some(Check::service(*addr, self.http.clone())),
                );
                VipStatus {
                    service,
                    target: Some(addr.to_string()),
                    reason: None,
                }
            }
            Read::Missing(why) | Read::NoCheck(why) => {
                self.checks.set(Kind::Service, None);
                VipStatus {
                    service,
                    target: None,
                    reason: Some(why.clone()),
                }
            }
            Read::Failed(why) => VipStatus {
                reason: Some(match &kept {
                    Some(t) => format!("{why} (keeping the last target {t})"),
                    None => why.clone(),
                }),
                service,
                target: kept,
            },
        };
        if before.as_ref() != Some(&now) {
            match (read, &now.target) {
                (Read::Target(_), Some(t)) => {
                    tracing::info!(service = %now.service, target = %t, "service check: the Service's ClusterIP")
                }
                // A missing Service is a deployment's choice (no service-vip.yaml).
                (Read::Missing(why), _) => {
                    tracing::info!(service = %now.service, reason = %why, "no service check: {why}")
                }
                (Read::NoCheck(why), _) => {
                    tracing::warn!(service = %now.service, reason = %why, "no service check: {why}")
                }
                (_, _) => {
                    let why = now.reason.as_deref().unwrap_or_default();
                    tracing::warn!(service = %now.service, reason = %why, "service check: cannot read its Service: {why}")
                }
            }
        }
        st.service = Some(now);
    }

    /// Read now, then on the schedule, until the task is dropped (the agent stops).
    pub async fn run(self) {
        let this = &self;
        on_schedule(
            self.schedule,
            &self.checks,
            Kind::Service,
            move || async move {
                let read = this.read().await;
                this.apply(&read);
                matches!(read, Read::Failed(_))
            },
        )
        .await
    }
}

/// Run `read_once` (true: the read failed) now and then on `s`, until the task is dropped:
/// every period (± 10 %), sooner after a failed read (`retry`, doubling up to the period) or
/// while the `kind` check keeps failing ([`reread_now`]).
pub(super) async fn on_schedule<F, Fut>(s: Schedule, checks: &Checks, kind: Kind, mut read_once: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut retry = s.retry;
    loop {
        let failed = read_once().await;
        let last = Instant::now();
        let next = if failed {
            let wait = retry;
            retry = (retry * 2).min(s.period);
            last + wait
        } else {
            retry = s.retry;
            last + jitter(s.period)
        };
        loop {
            tokio::time::sleep_until(next.min(Instant::now() + s.tick)).await;
            let now = Instant::now();
            if now >= next || reread_now(checks.failures_in_row(kind), now - last, &s) {
                break;
            }
        }
    }
}

/// `period` ± 10 %: agents started together (a rollout) do not read together.
pub(super) fn jitter(period: Duration) -> Duration {
    use rand::RngExt;
    super::watch::resync_delay(period, rand::rng().random::<f64>())
}

/// Whether a check failing `failures` times in a row, `since` the last read, reads again now.
pub fn reread_now(failures: u32, since: Duration, s: &Schedule) -> bool {
    failures >= s.after_failures && since >= s.min_gap
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(spec: serde_json::Value) -> Service {
        serde_json::from_value(json!({"metadata": {"name": "meshprobe-vip"}, "spec": spec}))
            .unwrap()
    }

    fn http(port: i32) -> serde_json::Value {
        json!([{"name": "http", "port": port, "protocol": "TCP"}])
    }

    const V4: FamilyPref = FamilyPref::Primary;

    #[test]
    fn the_cluster_ip_and_the_agents_port_are_picked() {
        let s = svc(json!({"clusterIP": "10.96.0.20", "ports": http(9464)}));
        assert_eq!(pick(&s, V4), Ok("10.96.0.20:9464".parse().unwrap()));
        // The port named http, else the first TCP one; UDP ones never.
        let ports = json!([
            {"name": "dns", "port": 53, "protocol": "UDP"},
            {"name": "metrics", "port": 9100},
            {"name": "http", "port": 9464, "protocol": "TCP"},
        ]);
        let s = svc(json!({"clusterIP": "10.96.0.20", "ports": ports}));
        assert_eq!(pick(&s, V4).unwrap().port(), 9464);
        let ports = json!([
            {"name": "dns", "port": 53, "protocol": "UDP"},
            {"name": "web", "port": 8080},
        ]);
        let s = svc(json!({"clusterIP": "10.96.0.20", "ports": ports}));
        assert_eq!(pick(&s, V4).unwrap().port(), 8080);
    }

    #[test]
    fn a_dual_stack_service_gives_the_agents_family() {
        let s = svc(json!({
            "clusterIP": "10.96.0.20",
            "clusterIPs": ["10.96.0.20", "fd00::14"],
            "ports": http(9464),
        }));
        let at = |p| pick(&s, p).map(|a| a.to_string());
        assert_eq!(at(FamilyPref::Primary), Ok("10.96.0.20:9464".into()));
        assert_eq!(
            at(FamilyPref::Prefer(Family::Ipv6)),
            Ok("[fd00::14]:9464".into())
        );
        assert_eq!(
            at(FamilyPref::Only(Family::Ipv6)),
            Ok("[fd00::14]:9464".into())
        );
        assert_eq!(
            at(FamilyPref::Prefer(Family::Ipv4)),
            Ok("10.96.0.20:9464".into())
        );
        // Single-stack IPv4: a preference falls back to it, --ip-family ipv6 has no check.
        let v4 = svc(
            json!({"clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"], "ports": http(9464)}),
        );
        assert_eq!(
            pick(&v4, FamilyPref::Prefer(Family::Ipv6)).map(|a| a.to_string()),
            Ok("10.96.0.20:9464".into())
        );
        let e = pick(&v4, FamilyPref::Only(Family::Ipv6)).unwrap_err();
        assert!(
            e.contains("no ipv6 ClusterIP") && e.contains("10.96.0.20"),
            "{e}"
        );
        // From --ip-family and the agent's own pod IP.
        let v6: IpAddr = "fd00:10::5".parse().unwrap();
        assert_eq!(
            FamilyPref::of(IpFamilies::Auto, Some(v6)),
            FamilyPref::Prefer(Family::Ipv6)
        );
        assert_eq!(FamilyPref::of(IpFamilies::Dual, None), FamilyPref::Primary);
        assert_eq!(
            FamilyPref::of(IpFamilies::Ipv4, Some(v6)),
            FamilyPref::Only(Family::Ipv4)
        );
    }

    /// Nothing from the API is taken on trust: every way a Service gives no usable address
    /// is no check, with a reason naming the field.
    #[test]
    fn unusable_services_give_no_check_and_say_why() {
        let long = "x".repeat(5000);
        let table: Vec<(serde_json::Value, &str)> = vec![
            (
                json!({"clusterIP": "None", "ports": http(9464)}),
                "headless",
            ),
            (json!({"ports": http(9464)}), "no spec.clusterIP"),
            (
                json!({"clusterIP": "", "ports": http(9464)}),
                "no spec.clusterIP",
            ),
            (
                json!({"type": "ExternalName", "externalName": "example.com"}),
                "ExternalName",
            ),
            (
                json!({"clusterIP": "10.96.0.300", "ports": http(9464)}),
                "spec.clusterIP \"10.96.0.300\" is not a usable IP address",
            ),
            (
                json!({"clusterIP": long, "ports": http(9464)}),
                "is not a usable IP address",
            ),
            (
                json!({"clusterIP": "0.0.0.0", "ports": http(9464)}),
                "spec.clusterIP \"0.0.0.0\"",
            ),
            (
                json!({"clusterIP": "224.0.0.1", "ports": http(9464)}),
                "spec.clusterIP \"224.0.0.1\"",
            ),
            (
                json!({"clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20", "zz"], "ports": http(9464)}),
                "spec.clusterIPs[1] \"zz\"",
            ),
            (json!({"clusterIP": "10.96.0.20"}), "no TCP port"),
            (
                json!({"clusterIP": "10.96.0.20", "ports": [{"port": 53, "protocol": "UDP"}]}),
                "no TCP port",
            ),
            (
                json!({"clusterIP": "10.96.0.20", "ports": http(70000)}),
                "has port 70000, not 1-65535",
            ),
            (
                json!({"clusterIP": "10.96.0.20", "ports": http(0)}),
                "has port 0",
            ),
            (
                json!({"clusterIP": "10.96.0.20", "ports": http(-1)}),
                "has port -1",
            ),
        ];
        for (spec, want) in table {
            let e = pick(&svc(spec.clone()), V4).unwrap_err();
            assert!(e.contains(want), "{spec}: {e} should contain {want}");
            assert!(e.len() < 200, "bounded: {e}");
        }
        let none: Service = serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap();
        assert_eq!(pick(&none, V4), Err("no spec".into()));
    }

    #[test]
    fn a_failing_check_rereads_the_service_at_most_once_a_gap() {
        let s = Schedule::default();
        let min = Duration::from_secs(60);
        assert!(!reread_now(2, min, &s), "two failures: not yet");
        assert!(!reread_now(3, min - Duration::from_secs(1), &s), "too soon");
        assert!(reread_now(3, min, &s));
        assert!(reread_now(50, min * 2, &s));
        assert!(!reread_now(0, Duration::from_secs(3600), &s));
        // The cost bound the module's comment states: 5 min period, 1 min while failing.
        assert_eq!((s.period, s.min_gap), (Duration::from_secs(300), min));
        assert!(s.timeout < s.tick * 2 && s.retry < s.period);
    }
}
