//! Kubernetes: discovery of the agents and annotated targets, facts for the diagnosis, events.
//! Pure functions over typed k8s-openapi objects ([`peers`], [`targets`], [`facts`],
//! [`policy`], the planning in [`events`], [`service::pick`]) and a thin kube-rs layer
//! ([`watch`], [`fetch`], [`events::run`], [`service::VipLookup`]).

pub mod apiserver;
pub mod cap;
pub mod events;
pub mod facts;
pub mod fetch;
pub mod ondemand_svc;
pub mod peers;
pub mod policy;
pub mod service;
pub mod targets;
#[cfg(test)]
mod testobj;
pub mod watch;

/// A readable kube client error; 401/403 name the RBAC permission that is missing.
pub fn explain_client_error(action: &str, e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if s.code == 403 => format!(
            "kubernetes API: forbidden to {action}: {} (the ServiceAccount needs this permission; see deploy/base/rbac.yaml)",
            s.message
        ),
        kube::Error::Api(s) if s.code == 401 => {
            format!("kubernetes API: unauthorized to {action}: {} (check the service account token)", s.message)
        }
        kube::Error::Api(s) => format!("kubernetes API, {action}: {} {}", s.code, s.message),
        other => format!("kubernetes API, {action}: {other}"),
    }
}

/// Longest wait for one read from the API server. kube-rs sets none by default, so a list or
/// watch request to an API server that accepts the connection and never answers (or whose
/// connection silently died) would hang the watcher forever, its failure unseen. Above the
/// watches' own server-side timeout (kube-rs: 290 s), so a quiet watch is never cut.
pub const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(295);

/// Bound every read and write of a client configuration (see [`READ_TIMEOUT`]).
pub fn bounded(mut config: kube::Config) -> kube::Config {
    config.read_timeout = Some(READ_TIMEOUT);
    config.write_timeout = Some(READ_TIMEOUT);
    // Count from the request, not from when a pooled connection went idle.
    config.reset_reader_on_write = true;
    config
}

/// A client: `url` (tests, a local fake API server) or the in-cluster / kubeconfig
/// configuration. Every request is bounded in time by the client's timeouts ([`bounded`]) and
/// every response in size ([`cap`]).
pub async fn client(url: Option<&str>) -> Result<kube::Client, crate::error::Error> {
    use crate::error::Error;
    let config = match url {
        Some(u) => kube::Config::new(
            u.parse()
                .map_err(|e| Error::Config(format!("kubernetes API URL {u:?}: {e}")))?,
        ),
        None => kube::Config::infer().await.map_err(|e| {
            Error::Config(format!(
                "kubernetes: no in-cluster service account and no usable kubeconfig: {e}"
            ))
        })?,
    };
    let builder = kube::client::ClientBuilder::try_from(bounded(config))
        .map_err(|e| Error::Config(format!("kubernetes client: {e}")))?;
    Ok(builder
        .with_layer(&cap::CapLayer {
            max: cap::MAX_RESPONSE_BYTES,
        })
        .build())
}

/// How long fetched facts are reused: a dashboard refreshing every few seconds costs the API
/// server a handful of list calls per half minute per agent, at most.
pub const FACTS_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// The agent's facts, fetched on demand with a deadline and cached for [`FACTS_TTL`]; a slow
/// or failing API server yields the last facts (or none) instead of delaying the view.
pub struct FactsSource {
    pub client: kube::Client,
    pub selector: String,
    pub namespace: Option<String>,
    /// The last fetch missed its deadline (for logging once per outage).
    failing: std::sync::atomic::AtomicBool,
    cache: tokio::sync::Mutex<
        Option<(
            tokio::time::Instant,
            std::sync::Arc<crate::diagnosis::KubeFacts>,
        )>,
    >,
}

impl FactsSource {
    pub fn new(client: kube::Client, selector: String, namespace: Option<String>) -> Self {
        FactsSource {
            client,
            selector,
            namespace,
            failing: Default::default(),
            cache: tokio::sync::Mutex::new(None),
        }
    }

    pub async fn facts(
        &self,
        reports: &[crate::diagnosis::AgentReport],
        timeout: std::time::Duration,
    ) -> Option<std::sync::Arc<crate::diagnosis::KubeFacts>> {
        let mut cache = self.cache.lock().await;
        if let Some((at, f)) = cache.as_ref() {
            if at.elapsed() < FACTS_TTL {
                return Some(f.clone());
            }
        }
        let q = fetch::query_from_reports(reports, &self.selector, self.namespace.as_deref());
        match tokio::time::timeout(timeout, fetch::fetch_facts(&self.client, &q)).await {
            Ok(f) => {
                if self
                    .failing
                    .swap(false, std::sync::atomic::Ordering::Relaxed)
                {
                    tracing::info!("kubernetes facts: answering again");
                }
                let f = std::sync::Arc::new(f);
                *cache = Some((tokio::time::Instant::now(), f.clone()));
                Some(f)
            }
            Err(_) => {
                // Said once per outage (the view may be asked every few seconds).
                if self
                    .failing
                    .swap(true, std::sync::atomic::Ordering::Relaxed)
                {
                    tracing::debug!(
                        "kubernetes facts: no answer within {timeout:?}; using the last ones"
                    );
                } else {
                    tracing::warn!(
                        "kubernetes facts: no answer within {timeout:?}; using the last ones"
                    );
                }
                cache.as_ref().map(|(_, f)| f.clone())
            }
        }
    }
}

/// Findings that only concern held peers (node NotReady or cordoned, agent just Ready) are set
/// apart, not raised: such a peer has not had its chance yet. Pure. A finding is held when all
/// its nodes are held, or every pair it names touches a held node (`node-2 cannot reach
/// node-3` while node-3 goes NotReady).
pub fn hold_findings(
    mut d: crate::diagnosis::Diagnosis,
    held: &[peers::Held],
) -> (crate::diagnosis::Diagnosis, Vec<crate::diagnosis::Finding>) {
    if held.is_empty() {
        return (d, Vec::new());
    }
    let is_held = |n: &str| held.iter().any(|h| h.node == n);
    let (kept, set_apart): (Vec<_>, Vec<_>) = d.findings.into_iter().partition(|f| {
        let pairs_held =
            !f.pairs.is_empty() && f.pairs.iter().all(|[a, b]| is_held(a) || is_held(b));
        let nodes_held = !f.nodes.is_empty() && f.nodes.iter().all(|n| is_held(n));
        let only_held = nodes_held || pairs_held;
        !only_held
    });
    d.findings = kept;
    d.healthy = d.findings.is_empty();
    (d, set_apart)
}

#[cfg(test)]
mod tests {
    use super::peers::Held;
    use crate::diagnosis::{Cause, Diagnosis, Finding};

    fn f(nodes: &[&str], pairs: &[(&str, &str)]) -> Finding {
        Finding {
            cause: Cause::NodeDown,
            summary: String::new(),
            nodes: nodes.iter().map(|s| s.to_string()).collect(),
            pairs: pairs
                .iter()
                .map(|(a, b)| [a.to_string(), b.to_string()])
                .collect(),
            zones: vec![],
            targets: vec![],
            confidence: 0.9,
            evidence: vec![],
            next_steps: vec![],
            family: None,
        }
    }

    #[test]
    fn every_read_and_write_is_bounded_above_the_watch_timeout() {
        let c = super::bounded(kube::Config::new("http://127.0.0.1:1".parse().unwrap()));
        assert_eq!(c.read_timeout, Some(super::READ_TIMEOUT));
        assert_eq!(c.write_timeout, Some(super::READ_TIMEOUT));
        assert!(c.connect_timeout.is_some());
        assert!(c.reset_reader_on_write);
        // kube-rs watches ask the server to close after 290 s: a quiet watch is never cut.
        assert!(super::READ_TIMEOUT > std::time::Duration::from_secs(290));
    }

    #[tokio::test]
    async fn an_https_client_builds_with_the_one_crypto_provider() {
        // rustls picks its provider from the crate features: two would panic in-cluster.
        super::client(Some("https://127.0.0.1:1")).await.unwrap();
        match super::client(Some("not a url")).await {
            Ok(_) => panic!("a bad URL was accepted"),
            Err(e) => assert_eq!(e.exit_code(), 2),
        }
    }

    #[test]
    fn findings_about_held_peers_only_are_set_apart() {
        let held = [Held {
            node: "n3".into(),
            reason: "node_not_ready",
        }];
        let table: Vec<(Finding, bool)> = vec![
            (f(&["n3"], &[("n1", "n3")]), true),
            (f(&["n1", "n3"], &[]), false),
            (f(&[], &[("n1", "n3"), ("n3", "n2")]), true),
            (f(&[], &[("n1", "n3"), ("n1", "n2")]), false),
            (f(&[], &[]), false),
            (f(&["n1"], &[]), false),
            (f(&["n2", "n3"], &[("n2", "n3")]), true),
            (f(&["n1", "n2"], &[("n1", "n2")]), false),
        ];
        for (i, (finding, want_held)) in table.into_iter().enumerate() {
            let d = Diagnosis {
                healthy: false,
                findings: vec![finding],
            };
            let (d, apart) = super::hold_findings(d, &held);
            assert_eq!(apart.len() == 1, want_held, "case {i}");
            assert_eq!(d.healthy, want_held, "case {i}");
        }
        let d = Diagnosis {
            healthy: false,
            findings: vec![f(&["n3"], &[])],
        };
        let (d, apart) = super::hold_findings(d, &[]);
        assert!(apart.is_empty() && !d.healthy);
    }
}
