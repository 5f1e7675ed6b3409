//! `svc/NAMESPACE/NAME` lookups, bounded like pods' ([`super::pods`]): the namespace
//! allow-list (`--probe-pod-namespaces`, the same list: a namespace whose pods may be named may
//! have its Services named) checked before any lookup, and answers (found or not) cached for
//! [`SERVICE_CACHE_TTL`] in a table of at most [`SERVICE_CACHE_MAX`] Services: each source
//! agent looks the Service up itself, so one request costs the API one call per agent at most
//! every 30 s.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::request::{Refusal, ResolvedService};
use super::wire::ServiceResolver;

/// How long a lookup's answer is reused.
pub const SERVICE_CACHE_TTL: Duration = Duration::from_secs(30);
/// Services remembered at most; beyond, expired answers and then the oldest are forgotten.
pub const SERVICE_CACHE_MAX: usize = 256;

type Key = (String, String);
type Entry = (Instant, Result<ResolvedService, String>);

/// The resolver behind a cache and the namespace allow-list.
pub struct Services {
    resolver: Arc<dyn ServiceResolver>,
    /// `--probe-pod-namespaces`: `None` allows every namespace.
    namespaces: Option<Vec<String>>,
    cache: Mutex<HashMap<Key, Entry>>,
}

impl Services {
    pub fn new(resolver: Arc<dyn ServiceResolver>, namespaces: Option<Vec<String>>) -> Services {
        Services {
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
                    "target {target}: namespace {namespace:?} is not one this agent resolves Services in (--probe-pod-namespaces)"
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The Service, from the cache when looked up less than [`SERVICE_CACHE_TTL`] ago.
    pub async fn resolve(&self, namespace: &str, name: &str) -> Result<ResolvedService, String> {
        let key = (namespace.to_string(), name.to_string());
        if let Some(hit) = self.cached(&key) {
            return hit;
        }
        let answer = self.resolver.resolve(namespace, name).await;
        self.store(key, answer.clone());
        answer
    }

    fn cached(&self, key: &Key) -> Option<Result<ResolvedService, String>> {
        let cache = self.cache.lock().ok()?;
        let (at, answer) = cache.get(key)?;
        (at.elapsed() < SERVICE_CACHE_TTL).then(|| answer.clone())
    }

    fn store(&self, key: Key, answer: Result<ResolvedService, String>) {
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        if cache.len() >= SERVICE_CACHE_MAX && !cache.contains_key(&key) {
            cache.retain(|_, (at, _)| at.elapsed() < SERVICE_CACHE_TTL);
            if cache.len() >= SERVICE_CACHE_MAX {
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
}

/// A fixed table of Services: the seam for tests without a Kubernetes API.
pub struct StaticServices(pub Vec<((String, String), ResolvedService)>);

impl ServiceResolver for StaticServices {
    fn resolve<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> crate::probe::BoxFuture<'a, Result<ResolvedService, String>> {
        Box::pin(async move {
            self.0
                .iter()
                .find(|((n, s), _)| n == namespace && s == name)
                .map(|(_, svc)| svc.clone())
                .ok_or_else(|| format!("get service {namespace}/{name}: 404 not found"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting(StaticServices, AtomicUsize);

    impl ServiceResolver for Counting {
        fn resolve<'a>(
            &'a self,
            namespace: &'a str,
            name: &'a str,
        ) -> crate::probe::BoxFuture<'a, Result<ResolvedService, String>> {
            self.1.fetch_add(1, Ordering::SeqCst);
            self.0.resolve(namespace, name)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn lookups_are_fenced_cached_and_bounded() {
        let web = ResolvedService {
            ip: "10.96.0.20".parse().unwrap(),
            ports: vec![80, 443],
        };
        let r = Arc::new(Counting(
            StaticServices(vec![(("shop".into(), "web".into()), web.clone())]),
            AtomicUsize::new(0),
        ));
        let svcs = Services::new(r.clone(), Some(vec!["shop".into()]));
        let e = svcs
            .admit("kube-system", "svc/kube-system/kube-dns")
            .unwrap_err();
        assert_eq!((e.status, e.code), (403, "target_not_allowed"));
        assert!(e.error.contains("--probe-pod-namespaces"), "{}", e.error);
        assert!(svcs.admit("shop", "svc/shop/web").is_ok());
        assert_eq!(svcs.resolve("shop", "web").await, Ok(web.clone()));
        assert_eq!(svcs.resolve("shop", "web").await, Ok(web));
        assert!(svcs.resolve("shop", "nope").await.is_err());
        assert!(svcs.resolve("shop", "nope").await.is_err());
        assert_eq!(r.1.load(Ordering::SeqCst), 2, "one lookup per Service");
        tokio::time::advance(SERVICE_CACHE_TTL + Duration::from_secs(1)).await;
        let _ = svcs.resolve("shop", "web").await;
        assert_eq!(r.1.load(Ordering::SeqCst), 3, "looked up again after 30 s");
        for i in 0..SERVICE_CACHE_MAX + 20 {
            let _ = svcs.resolve("shop", &format!("s-{i}")).await;
        }
        assert!(svcs.cache.lock().unwrap().len() <= SERVICE_CACHE_MAX);
    }
}
