//! `--apiserver`, `--apiserver-endpoints`, `--apiserver-ca`: the API server checks' settings.
//!
//! Under Kubernetes discovery both checks are on by default where a pod has what in-cluster
//! clients use — the ClusterIP from `KUBERNETES_SERVICE_HOST`/`KUBERNETES_SERVICE_PORT`, the
//! endpoints from the `default/kubernetes` EndpointSlices, the service account's `ca.crt` — and
//! off where it has not (outside a pod); with the peers file they are off unless named. A check
//! named on the command line without a CA to verify against is refused (exit 2): it could only
//! fail, or trust any certificate.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::promclient::Tls;

/// The endpoints one `apiserver_endpoints` check asks, at most (a control plane has 1-5).
/// Here, not in `checks`: the checks read the configuration, not the reverse.
pub const MAX_ENDPOINTS: usize = 8;

/// In a pod: the service account's CA bundle and token (mounted by the kubelet).
pub const IN_CLUSTER_CA: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
pub const IN_CLUSTER_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// The API server checks (`None` in [`super::ChecksConfig`]: both off).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiserverConfig {
    /// The `apiserver` check's ClusterIP:PORT; `None`: off.
    pub vip: Option<SocketAddr>,
    /// The `apiserver_endpoints` check's fixed addresses (`--apiserver-endpoints`); empty: none
    /// fixed.
    pub endpoints: Vec<SocketAddr>,
    /// Read the endpoints from the `default/kubernetes` EndpointSlices (Kubernetes discovery
    /// without `--apiserver-endpoints`).
    pub endpoints_lookup: bool,
    /// The CA file the certificate is verified against, and the client settings built from it.
    pub ca: PathBuf,
    pub tls: Tls,
    /// The service account token sent as a Bearer header, re-read each run; `None`: none.
    pub token: Option<PathBuf>,
}

/// What the settings are made from: the flags (else their variables) as given, the pod's
/// variables, the discovery. The caller reads them, so this module needs nothing of its parent.
#[derive(Debug, Clone, Default)]
pub struct Raw {
    /// `--apiserver` / `MESHPROBE_APISERVER`.
    pub apiserver: Option<String>,
    /// `--apiserver-endpoints` / `MESHPROBE_APISERVER_ENDPOINTS`.
    pub endpoints: Option<String>,
    /// `--apiserver-ca` / `MESHPROBE_APISERVER_CA`.
    pub ca: Option<PathBuf>,
    /// `KUBERNETES_SERVICE_HOST`, `KUBERNETES_SERVICE_PORT`.
    pub service_host: Option<String>,
    pub service_port: Option<String>,
    /// `--discovery kubernetes`.
    pub kube: bool,
}

/// `IP:PORT` of an API server address, or the tail of an error message.
fn addr(s: &str) -> std::result::Result<SocketAddr, String> {
    match s.trim().parse::<SocketAddr>() {
        Ok(a) if a.port() != 0 && !a.ip().is_unspecified() && !a.ip().is_multicast() => Ok(a),
        _ => Err(format!(
            "{s:?}: expected IP:PORT, e.g. 10.96.0.1:443 or [fd00::1]:443"
        )),
    }
}

const APISERVER: &str = "--apiserver (or MESHPROBE_APISERVER)";
const ENDPOINTS: &str = "--apiserver-endpoints (or MESHPROBE_APISERVER_ENDPOINTS)";
const CA: &str = "--apiserver-ca (or MESHPROBE_APISERVER_CA)";

/// The settings from `raw` and the in-cluster files at `ca_default` and `token_default`
/// (parameters so tests need no pod).
pub fn config(
    raw: &Raw,
    ca_default: &Path,
    token_default: &Path,
) -> Result<Option<ApiserverConfig>> {
    let cfg = |flag: &str, tail: String| Error::Config(format!("{flag} {tail}"));
    // `None`: not given; `Some(None)`: `none`.
    let vip_flag = match raw.apiserver.as_deref().map(str::trim) {
        None => None,
        Some("none") => Some(None),
        Some(s) => Some(Some(addr(s).map_err(|t| cfg(APISERVER, t))?)),
    };
    let eps_flag = match raw.endpoints.as_deref().map(str::trim) {
        None => None,
        Some("none") => Some(None),
        Some(s) => {
            let list = s
                .split(',')
                .filter(|p| !p.trim().is_empty())
                .map(addr)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|t| cfg(ENDPOINTS, t))?;
            if list.is_empty() || list.len() > MAX_ENDPOINTS {
                return Err(cfg(
                    ENDPOINTS,
                    format!("{s:?}: expected 1 to {MAX_ENDPOINTS} IP:PORT, comma-separated"),
                ));
            }
            Some(Some(list))
        }
    };
    // The pod's own view of the ClusterIP, as client-go's in-cluster config reads it.
    let vip_env = || -> Result<Option<SocketAddr>> {
        let (Some(host), Some(port)) = (&raw.service_host, &raw.service_port) else {
            return Ok(None);
        };
        let joined = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, port.trim().parse().unwrap_or(0)).to_string(),
            Err(_) => format!("{host}:{port}"),
        };
        addr(&joined).map(Some).map_err(|tail| {
            Error::Config(format!(
                "KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT {tail}; --apiserver none turns the check off"
            ))
        })
    };
    let vip = match vip_flag {
        Some(v) => v,
        None if raw.kube => vip_env()?,
        None => None,
    };
    let named = matches!(vip_flag, Some(Some(_))) || matches!(eps_flag, Some(Some(_)));
    let (endpoints, endpoints_lookup) = match eps_flag {
        Some(Some(list)) => (list, false),
        Some(None) => (Vec::new(), false),
        None => (Vec::new(), raw.kube),
    };
    if vip.is_none() && endpoints.is_empty() && !endpoints_lookup {
        return Ok(None);
    }
    let ca = match &raw.ca {
        Some(p) => p.clone(),
        None if ca_default.exists() => ca_default.to_path_buf(),
        // Outside a pod the defaults have nothing to verify against: off.
        None if !named => return Ok(None),
        None => {
            return Err(Error::Config(format!(
            "the API server checks need the CA to verify it: {CA} FILE ({} exists only in a pod)",
            ca_default.display()
        )))
        }
    };
    let tls = crate::promclient::ca_file_config(&ca, CA).map_err(Error::Config)?;
    Ok(Some(ApiserverConfig {
        vip,
        endpoints,
        endpoints_lookup,
        ca,
        tls,
        token: token_default.exists().then(|| token_default.to_path_buf()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AgentArgs, AgentConfig, Discovery, Env};
    use std::collections::HashMap;

    /// As the agent resolves it: the flags, the environment, the discovery.
    fn config(
        a: &AgentArgs,
        env: &dyn Env,
        d: &Discovery,
        ca_default: &Path,
        token_default: &Path,
    ) -> Result<Option<ApiserverConfig>> {
        super::config(
            &crate::config::apiserver_raw(a, env, d),
            ca_default,
            token_default,
        )
    }

    fn env(vars: &[(&str, &str)]) -> HashMap<String, String> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn kube() -> Discovery {
        let a = AgentArgs {
            node_name: Some("n1".into()),
            discovery: Some("kubernetes".into()),
            ..Default::default()
        };
        match AgentConfig::resolve(&a, &env(&[("POD_NAMESPACE", "mp")])) {
            Ok(c) => c.discovery,
            Err(e) => panic!("{e}"),
        }
    }

    /// A CA file (rcgen) in a fresh directory, and the directory.
    fn ca_file(name: &str) -> (PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(format!("mp-apica-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let path = dir.join("ca.crt");
        std::fs::write(&path, cert.pem()).unwrap();
        (dir, path)
    }

    /// Defaults: on under Kubernetes where a pod's files and variables are, off outside a pod
    /// and with the peers file; named checks need a CA; bad values exit 2 naming the flag.
    #[test]
    fn apiserver_checks_settings() {
        let (dir, ca) = ca_file("settings");
        let none = dir.join("absent");
        let token = dir.join("token");
        std::fs::write(&token, "t").unwrap();
        let k = kube();
        let pod = env(&[
            ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
        ]);
        let a = AgentArgs::default();
        // In a pod: both on, the token sent.
        let c = config(&a, &pod, &k, &ca, &token).unwrap().unwrap();
        assert_eq!(c.vip, Some("10.96.0.1:443".parse().unwrap()));
        assert!(c.endpoints.is_empty() && c.endpoints_lookup);
        assert_eq!(
            (c.ca.as_path(), c.token.as_deref()),
            (ca.as_path(), Some(token.as_path()))
        );
        // IPv6 ClusterIP as the kubelet sets it (bare address).
        let v6 = env(&[
            ("KUBERNETES_SERVICE_HOST", "fd00::1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
        ]);
        let c = config(&a, &v6, &k, &ca, &none).unwrap().unwrap();
        assert_eq!(c.vip, Some("[fd00::1]:443".parse().unwrap()));
        assert_eq!(c.token, None);
        // Outside a pod (no CA file): off; with the peers file: off.
        assert_eq!(config(&a, &pod, &k, &none, &none).unwrap(), None);
        assert_eq!(
            config(&a, &pod, &Discovery::File, &ca, &none).unwrap(),
            None
        );
        // `none` turns each off.
        let off = AgentArgs {
            apiserver: Some("none".into()),
            apiserver_endpoints: Some("none".into()),
            ..Default::default()
        };
        assert_eq!(config(&off, &pod, &k, &ca, &none).unwrap(), None);
        let no_vip = AgentArgs {
            apiserver: Some("none".into()),
            ..Default::default()
        };
        let c = config(&no_vip, &pod, &k, &ca, &none).unwrap().unwrap();
        assert_eq!((c.vip, c.endpoints_lookup), (None, true));
        // Named with the peers file and a CA file.
        let named = AgentArgs {
            apiserver: Some("198.18.96.1:443".into()),
            apiserver_endpoints: Some("198.18.0.2:6443, 198.18.0.3:6443".into()),
            apiserver_ca: Some(ca.clone()),
            ..Default::default()
        };
        let c = config(&named, &env(&[]), &Discovery::File, &none, &none)
            .unwrap()
            .unwrap();
        assert_eq!(c.vip, Some("198.18.96.1:443".parse().unwrap()));
        assert_eq!(c.endpoints.len(), 2);
        assert!(!c.endpoints_lookup);
        // Refusals, each naming what is wrong.
        let mut nine: Vec<String> = (1..=9).map(|i| format!("10.0.0.{i}:6443")).collect();
        let table: Vec<(AgentArgs, HashMap<String, String>, &str)> = vec![
            (
                AgentArgs {
                    apiserver_ca: None,
                    ..named.clone()
                },
                env(&[]),
                "need the CA to verify it: --apiserver-ca (or MESHPROBE_APISERVER_CA) FILE",
            ),
            (
                AgentArgs {
                    apiserver: Some("10.96.0.1".into()),
                    ..named.clone()
                },
                env(&[]),
                "--apiserver (or MESHPROBE_APISERVER) \"10.96.0.1\": expected IP:PORT",
            ),
            (
                AgentArgs {
                    apiserver_endpoints: Some(nine.join(",")),
                    ..named.clone()
                },
                env(&[]),
                "--apiserver-endpoints (or MESHPROBE_APISERVER_ENDPOINTS)",
            ),
            (
                AgentArgs {
                    apiserver_endpoints: Some("10.0.0.1:6443,x".into()),
                    ..named.clone()
                },
                env(&[]),
                "\"x\": expected IP:PORT",
            ),
            (
                AgentArgs {
                    apiserver_ca: Some(dir.join("nope.crt")),
                    ..named.clone()
                },
                env(&[]),
                "--apiserver-ca (or MESHPROBE_APISERVER_CA) ",
            ),
            (
                AgentArgs {
                    apiserver_ca: Some(token.clone()),
                    ..named.clone()
                },
                env(&[]),
                "no certificate in the file",
            ),
        ];
        for (a, e, want) in table {
            let err = config(&a, &e, &Discovery::File, &none, &none)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{err} should contain {want}");
        }
        // A broken pod variable names itself.
        let bad = env(&[
            ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
            ("KUBERNETES_SERVICE_PORT", "https"),
        ]);
        let err = config(&a, &bad, &k, &ca, &none).unwrap_err().to_string();
        assert!(err.contains("KUBERNETES_SERVICE_HOST"), "{err}");
        nine.truncate(8);
        let eight = AgentArgs {
            apiserver_endpoints: Some(nine.join(",")),
            ..named.clone()
        };
        let c = config(&eight, &env(&[]), &Discovery::File, &none, &none).unwrap();
        assert_eq!(c.unwrap().endpoints.len(), 8, "8 is the cap, allowed");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
