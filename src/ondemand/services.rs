//! `svc/NAMESPACE/NAME` lookups, bounded like pods' ([`super::pods`]): the namespace
//! allow-list (`--probe-pod-namespaces`, the same list: a namespace whose pods may be named may
//! have its Services named) checked before any lookup, and answers (found or not) cached for
//! 30 s in a table of at most 256 Services: each source
//! agent looks the Service up itself, so one request costs the API one call per agent at most
//! every 30 s.

use std::sync::Arc;

use super::lookups::Lookups;
use super::request::{Refusal, ResolvedService};
use super::wire::ServiceResolver;

/// The resolver behind the shared allow-list and cache ([`super::lookups`]).
pub struct Services {
    resolver: Arc<dyn ServiceResolver>,
    lookups: Lookups<ResolvedService>,
}

impl Services {
    pub fn new(resolver: Arc<dyn ServiceResolver>, namespaces: Option<Vec<String>>) -> Services {
        Services {
            resolver,
            lookups: Lookups::new("Services", namespaces),
        }
    }

    /// Refused when `namespace` is not on the allow-list (nothing is looked up).
    pub fn admit(&self, namespace: &str, target: &str) -> Result<(), Refusal> {
        self.lookups.admit(namespace, target)
    }

    /// The Service, from the cache when looked up less than [`super::lookups::CACHE_TTL`] ago.
    pub async fn resolve(&self, namespace: &str, name: &str) -> Result<ResolvedService, String> {
        let lookup = || self.resolver.resolve(namespace, name);
        self.lookups.resolve(namespace, name, lookup).await
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
    use crate::ondemand::lookups::{CACHE_MAX, CACHE_TTL};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

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
        tokio::time::advance(CACHE_TTL + Duration::from_secs(1)).await;
        let _ = svcs.resolve("shop", "web").await;
        assert_eq!(r.1.load(Ordering::SeqCst), 3, "looked up again after 30 s");
        for i in 0..CACHE_MAX + 20 {
            let _ = svcs.resolve("shop", &format!("s-{i}")).await;
        }
        assert!(svcs.lookups.len() <= CACHE_MAX);
    }
}
