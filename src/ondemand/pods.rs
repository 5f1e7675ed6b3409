//! `pod/NAMESPACE/NAME` lookups, bounded by [`super::lookups`]: the namespace allow-list, and
//! answers (found or not) cached for 30 s in a table of at most 256.

use std::sync::Arc;

use super::lookups::Lookups;
use super::request::{Refusal, ResolvedPod};
use super::wire::{Admit, PodResolver};

/// The resolver behind the shared allow-list and cache ([`super::lookups`]).
pub struct Pods {
    resolver: Arc<dyn PodResolver>,
    lookups: Lookups<ResolvedPod>,
}

impl Pods {
    pub fn new(resolver: Arc<dyn PodResolver>, namespaces: Option<Vec<String>>) -> Pods {
        Pods {
            resolver,
            lookups: Lookups::new("pods", namespaces),
        }
    }

    /// Refused when `namespace` is not on the allow-list (nothing is looked up).
    pub fn admit(&self, namespace: &str, target: &str) -> Result<(), Refusal> {
        self.lookups.admit(namespace, target)
    }

    /// The pod, from the cache when looked up less than [`super::lookups::CACHE_TTL`] ago.
    pub async fn resolve(
        &self,
        namespace: &str,
        name: &str,
        admit: Admit<'_>,
    ) -> Result<ResolvedPod, String> {
        let lookup = || self.resolver.resolve(namespace, name, admit);
        self.lookups.resolve(namespace, name, lookup).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ondemand::lookups::CACHE_MAX;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// Knows one pod, shop/web at 198.19.2.11; counts lookups.
    #[derive(Default)]
    struct Counting(AtomicUsize);

    impl PodResolver for Counting {
        fn resolve<'a>(
            &'a self,
            namespace: &'a str,
            name: &'a str,
            _admit: Admit<'a>,
        ) -> crate::probe::BoxFuture<'a, Result<ResolvedPod, String>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                if (namespace, name) == ("shop", "web") {
                    Ok(ResolvedPod {
                        ip: "198.19.2.11".parse().unwrap(),
                        ips: Vec::new(),
                        node: Some("node-2".into()),
                        facts: Default::default(),
                    })
                } else {
                    Err(format!("get pod {namespace}/{name}: 404"))
                }
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn answers_are_cached_for_30s_and_the_table_is_bounded() {
        let r = Arc::new(Counting::default());
        let pods = Pods::new(r.clone(), None);
        let lookups = || r.0.load(Ordering::SeqCst);
        assert!(pods.resolve("shop", "web", &|_| true).await.is_ok());
        assert!(pods.resolve("shop", "web", &|_| true).await.is_ok());
        assert!(pods.resolve("shop", "nope", &|_| true).await.is_err());
        assert!(pods.resolve("shop", "nope", &|_| true).await.is_err());
        assert_eq!(lookups(), 2, "one lookup per pod, found or not");
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(pods.resolve("shop", "web", &|_| true).await.is_ok());
        assert_eq!(lookups(), 2);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(pods.resolve("shop", "web", &|_| true).await.is_ok());
        assert_eq!(lookups(), 3, "looked up again after 30 s");
        for i in 0..CACHE_MAX + 50 {
            let _ = pods.resolve("shop", &format!("p-{i}"), &|_| true).await;
        }
        assert!(pods.lookups.len() <= CACHE_MAX, "{}", pods.lookups.len());
    }

    #[test]
    fn the_namespace_allow_list() {
        let pods = Pods::new(
            Arc::new(Counting::default()),
            Some(vec!["shop".into(), "web".into()]),
        );
        assert!(pods.admit("shop", "pod/shop/x").is_ok());
        let r = pods.admit("kube-system", "pod/kube-system/x").unwrap_err();
        assert_eq!((r.status, r.code), (403, "target_not_allowed"));
        assert!(r.error.contains("--probe-pod-namespaces"), "{}", r.error);
        let open = Pods::new(Arc::new(Counting::default()), None);
        assert!(open.admit("kube-system", "pod/kube-system/x").is_ok());
    }
}
