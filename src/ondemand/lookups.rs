//! What `pod/NAMESPACE/NAME` and `svc/NAMESPACE/NAME` lookups share: the namespace allow-list
//! (`--probe-pod-namespaces`), checked before any lookup, and the answers (found or not) cached
//! for [`CACHE_TTL`] in a table of at most [`CACHE_MAX`] entries, so repeated requests cost the
//! Kubernetes API nothing more.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::request::Refusal;

/// How long a lookup's answer is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(30);
/// Entries remembered at most; beyond, expired answers and then the oldest are forgotten.
pub const CACHE_MAX: usize = 256;

type Key = (String, String);
/// A lookup's answer and when it was had.
type Entry<T> = (Instant, Result<T, String>);

/// The allow-list and the cache for one kind of object (`what`: "pods", "Services").
pub struct Lookups<T> {
    what: &'static str,
    /// `None` allows every namespace.
    namespaces: Option<Vec<String>>,
    cache: Mutex<HashMap<Key, Entry<T>>>,
}

impl<T: Clone> Lookups<T> {
    pub fn new(what: &'static str, namespaces: Option<Vec<String>>) -> Lookups<T> {
        Lookups {
            what,
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
                    "target {target}: namespace {namespace:?} is not one this agent resolves {} in (--probe-pod-namespaces)",
                    self.what
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The answer for `namespace/name`: cached when had less than [`CACHE_TTL`] ago, else
    /// `lookup`'s (not called on a hit), then cached.
    pub async fn resolve<F: Future<Output = Result<T, String>>>(
        &self,
        namespace: &str,
        name: &str,
        lookup: impl FnOnce() -> F,
    ) -> Result<T, String> {
        let key = (namespace.to_string(), name.to_string());
        if let Some(hit) = self.cached(&key) {
            return hit;
        }
        let answer = lookup().await;
        self.store(key, answer.clone());
        answer
    }

    fn cached(&self, key: &Key) -> Option<Result<T, String>> {
        let cache = self.cache.lock().ok()?;
        let (at, answer) = cache.get(key)?;
        (at.elapsed() < CACHE_TTL).then(|| answer.clone())
    }

    fn store(&self, key: Key, answer: Result<T, String>) {
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        if cache.len() >= CACHE_MAX && !cache.contains_key(&key) {
            cache.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
            if cache.len() >= CACHE_MAX {
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
    pub(super) fn len(&self) -> usize {
        self.cache.lock().unwrap().len()
    }
}
