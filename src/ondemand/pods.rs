//! `pod/NAMESPACE/NAME` lookups, bounded: an optional namespace allow-list checked before any
//! lookup, and answers (found or not) cached for [`POD_CACHE_TTL`] in a table of at most
//! [`POD_CACHE_MAX`] pods, so repeated requests cost the Kubernetes API nothing more.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::request::{Refusal, ResolvedPod};
use super::wire::{Admit, PodResolver};

/// How long a lookup's answer is reused.
pub const POD_CACHE_TTL: Duration = Duration::from_secs(30);
/// Pods remembered at most; beyond, expired answers and then the oldest are forgotten.
pub const POD_CACHE_MAX: usize = 256;

type Key = (String, String);
/// A lookup's answer and when it was had.
type Entry = (Instant, Result<ResolvedPod, String>);

/// The resolver behind a cache and a namespace allow-list.
pub struct Pods {
    resolver: Arc<dyn PodResolver>,
    /// `--probe-pod-namespaces`: `None` allows every namespace.
    namespaces: Option<Vec<String>>,
    cache: Mutex<HashMap<Key, Entry>>,
}

impl Pods {
    pub fn new(resolver: Arc<dyn PodResolver>, namespaces: Option<Vec<String>>) -> Pods {
        Pods {
            resolver,
            namespaces,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Refused when `namespace` is not on the allow-list (nothing is looked up).
    pub fn admit(&self, namespace: &str, target: &str) -> Result<(), Refusal> {
        match &self.namespaces {
            Some(list) if !list.iter().any(|n| n == namespace) => Err(Refusal::new(
                403,
                "target_not_allowed",
                format!(
                    "target {target}: namespace {namespace:?} is not one this agent resolves pods in (--probe-pod-namespaces)"
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The pod, from the cache when looked up less than [`POD_CACHE_TTL`] ago.
    pub async fn resolve(
        &self,
        namespace: &str,
        name: &str,
        admit: Admit<'_>,
    ) -> Result<ResolvedPod, String> {
        let key = (namespace.to_string(), name.to_string());
        if let Some(hit) = self.cached(&key) {
            return hit;
        }
        let answer = self.resolver.resolve(namespace, name, admit).await;
        self.store(key, answer.clone());
        answer
    }

    fn cached(&self, key: &Key) -> Option<Result<ResolvedPod, String>> {
        let cache = self.cache.lock().ok()?;
        let (at, answer) = cache.get(key)?;
        (at.elapsed() < POD_CACHE_TTL).then(|| answer.clone())
    }

    fn store(&self, key: Key, answer: Result<ResolvedPod, String>) {
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        if cache.len() >= POD_CACHE_MAX && !cache.contains_key(&key) {
            cache.retain(|_, (at, _)| at.elapsed() < POD_CACHE_TTL);
            if cache.len() >= POD_CACHE_MAX {
                let oldest = cache
                    .iter()
                    .min_by_key(|(_, (at, _))| *at)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    cache.remove(&k);
                }
            }
        }
        cache.insert(key, (Instant::now(), answer));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.cache.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

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
        for i in 0..POD_CACHE_MAX + 50 {
            let _ = pods.resolve("shop", &format!("p-{i}"), &|_| true).await;
        }
        assert!(pods.len() <= POD_CACHE_MAX, "{}", pods.len());
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
