//! `svc/NAMESPACE/NAME` targets of `POST /api/v1/probe`: one `get` of the Service, read
//! strictly — its ClusterIP (none for a headless or ExternalName Service: refused, there is
//! no address to probe) and its TCP ports. The handler bounds the call and caches the answer.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use kube::{Api, Client};

use super::explain_client_error;
use crate::ondemand::ResolvedService;

/// Ports of one Service read, at most (a Service has a handful; the API allows more).
const MAX_PORTS: usize = 64;

pub struct KubeServiceResolver {
    pub client: Client,
}

impl crate::ondemand::wire::ServiceResolver for KubeServiceResolver {
    fn resolve<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> crate::probe::BoxFuture<'a, Result<ResolvedService, String>> {
        Box::pin(async move {
            let svc = Api::<Service>::namespaced(self.client.clone(), namespace)
                .get(name)
                .await
                .map_err(|e| {
                    explain_client_error(&format!("get service {namespace}/{name}"), &e)
                })?;
            service_of(&svc).map_err(|e| format!("service {namespace}/{name}: {e}"))
        })
    }
}

/// The ClusterIP and TCP ports of a Service object, or why it has none to probe.
pub fn service_of(svc: &Service) -> Result<ResolvedService, String> {
    let spec = svc.spec.as_ref().ok_or("no spec")?;
    let text = spec.cluster_ip.as_deref().unwrap_or("");
    if text.is_empty() || text == "None" {
        return Err(format!(
            "no ClusterIP (type {}{}): nothing to probe; probe its pods with pod/NAMESPACE/NAME",
            spec.type_.as_deref().unwrap_or("ClusterIP"),
            if text == "None" { ", headless" } else { "" }
        ));
    }
    let ip: IpAddr = text
        .parse()
        .map_err(|_| format!("ClusterIP {text:?} is not an IP address"))?;
    let ports = spec
        .ports
        .iter()
        .flatten()
        .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
        .filter_map(|p| u16::try_from(p.port).ok().filter(|p| *p > 0))
        .take(MAX_PORTS)
        .collect();
    Ok(ResolvedService { ip, ports })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_read_strictly() {
        let svc = |v: serde_json::Value| -> Service { serde_json::from_value(v).unwrap() };
        let ok = service_of(&svc(serde_json::json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"clusterIP": "10.96.0.20", "ports": [
                {"port": 53, "protocol": "UDP"}, {"port": 80}, {"port": 443, "protocol": "TCP"}]}
        })))
        .unwrap();
        assert_eq!(ok.ip, "10.96.0.20".parse::<IpAddr>().unwrap());
        assert_eq!(ok.ports, [80, 443]);
        let table = [
            (
                serde_json::json!({"spec": {"clusterIP": "None"}}),
                "headless",
            ),
            (
                serde_json::json!({"spec": {"type": "ExternalName", "externalName": "x.example"}}),
                "type ExternalName",
            ),
            (
                serde_json::json!({"spec": {"clusterIP": "ten"}}),
                "not an IP address",
            ),
            (serde_json::json!({}), "no spec"),
        ];
        for (v, want) in table {
            let e = service_of(&svc(v.clone())).unwrap_err();
            assert!(e.contains(want), "{v}: {e}");
        }
    }
}
