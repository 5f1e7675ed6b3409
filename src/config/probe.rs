//! The on-demand probe's settings, as `config` resolves them from the flags and environment.

/// On-demand probe settings (`--allow-cidr`, `--probe-token`, `--probe-max-concurrent`,
/// `--probe-rate`).
#[derive(Clone, PartialEq)]
pub struct ProbeConfig {
    /// Allowed besides the peer set's pod and node subnets.
    pub allow_cidrs: Vec<crate::net::Cidr>,
    pub token: Option<String>,
    pub max_concurrent: usize,
    pub rate_per_minute: u32,
    pub burst: u32,
    /// `--probe-pod-namespaces`: the namespaces `pod/NS/NAME` targets may name (`None`: any).
    pub pod_namespaces: Option<Vec<String>>,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            allow_cidrs: Vec::new(),
            token: None,
            max_concurrent: 4,
            rate_per_minute: 30,
            burst: 10,
            pod_namespaces: None,
        }
    }
}

impl std::fmt::Debug for ProbeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeConfig")
            .field("allow_cidrs", &self.allow_cidrs)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("max_concurrent", &self.max_concurrent)
            .field("rate_per_minute", &self.rate_per_minute)
            .field("burst", &self.burst)
            .field("pod_namespaces", &self.pod_namespaces)
            .finish()
    }
}

/// Shortest `--probe-token` accepted (bytes).
pub const MIN_TOKEN_LEN: usize = 16;
