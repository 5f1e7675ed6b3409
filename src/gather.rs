//! Gathering other agents' `/api/v1/results`: the mesh view behind `/api/v1/diagnosis` and
//! `meshprobe diagnose --agents`. Thin I/O: every fetch is bounded in time and size, and the
//! fan-out in concurrency; an agent that does not answer is reported, not fatal.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::model::ErrorClass;
use crate::probe::http::fetch;

/// Largest results document accepted from one agent (about 2,000 peers' worth).
pub const MAX_RESULTS_BYTES: usize = 8 * 1024 * 1024;

/// One agent's answer: its results JSON, or why there is none.
#[derive(Debug, Clone, PartialEq)]
pub struct Gathered {
    /// Who was asked (a node name, or the address given on the command line).
    pub source: String,
    pub addr: SocketAddr,
    pub result: Result<String, ErrorClass>,
}

/// Fetch `/api/v1/results` from every `(name, addr)`, at most `concurrency` at once, each within
/// `timeout`. The answers come back in the order asked.
pub async fn gather(
    agents: Vec<(String, SocketAddr)>,
    timeout: Duration,
    concurrency: usize,
) -> Vec<Gathered> {
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut set = JoinSet::new();
    for (i, (source, addr)) in agents.into_iter().enumerate() {
        let permits = permits.clone();
        set.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let result = fetch(addr, "/api/v1/results", timeout, MAX_RESULTS_BYTES)
                .await
                .and_then(|body| {
                    String::from_utf8(body.to_vec()).map_err(|_| ErrorClass::Protocol {
                        detail: "results are not UTF-8".into(),
                    })
                });
            (
                i,
                Gathered {
                    source,
                    addr,
                    result,
                },
            )
        });
    }
    let mut out = Vec::new();
    while let Some(done) = set.join_next().await {
        if let Ok(pair) = done {
            out.push(pair);
        }
    }
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, g)| g).collect()
}

/// Parse an agent address as given on a command line: `IP:PORT`, `http://IP:PORT` or
/// `http://IP:PORT/`. Names are refused: meshprobe never resolves DNS for probes.
pub fn parse_agent_addr(s: &str) -> Result<SocketAddr, String> {
    let t = s.trim();
    let t = t.strip_prefix("http://").unwrap_or(t);
    let t = t.strip_suffix('/').unwrap_or(t);
    t.parse().map_err(|_| {
        format!("agent {s:?}: expected IP:PORT or http://IP:PORT (e.g. http://198.19.1.10:9464)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;

    #[test]
    fn agent_addresses() {
        for ok in [
            "127.0.0.1:9464",
            "http://127.0.0.1:9464",
            "http://127.0.0.1:9464/",
            "[::1]:9464",
        ] {
            assert!(parse_agent_addr(ok).is_ok(), "{ok}");
        }
        for bad in [
            "node-1:9464",
            "http://node-1:9464",
            "127.0.0.1",
            "https://127.0.0.1:1/x",
        ] {
            let e = parse_agent_addr(bad).unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[tokio::test]
    async fn answers_errors_and_silence_come_back_in_order() {
        let good = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let good_addr = good.local_addr().unwrap();
        tokio::spawn(async move {
            let app =
                axum::Router::new().route("/api/v1/results", get(|| async { "{\"node\":\"a\"}" }));
            let _ = axum::serve(good, app).await;
        });
        // Accepts and never answers.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent_addr = silent.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = silent.accept().await {
                held.push(s);
            }
        });
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let t0 = std::time::Instant::now();
        let got = gather(
            vec![
                ("a".into(), good_addr),
                ("silent".into(), silent_addr),
                ("closed".into(), closed),
            ],
            Duration::from_millis(300),
            2,
        )
        .await;
        assert!(t0.elapsed() < Duration::from_secs(2));
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].result.as_deref(), Ok("{\"node\":\"a\"}"));
        assert_eq!(got[1].result, Err(ErrorClass::Timeout));
        assert_eq!(got[2].result, Err(ErrorClass::Refused));
    }
}
