//! Gathering other agents' `/api/v1/results`: the mesh view behind `/api/v1/diagnosis` and
//! `meshprobe diagnose --agents`. Thin I/O: every fetch is bounded in time and size, and the
//! fan-out in concurrency; an agent that does not answer is reported, not fatal. An agent the
//! answering ones already find down is not waited for ([`crate::mesh::not_waited_for`]).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::diagnosis::AgentReport;
use crate::model::ErrorClass;
use crate::probe::http::fetch;

/// Largest results document accepted from one agent (about 2,000 peers' worth).
pub const MAX_RESULTS_BYTES: usize = 8 * 1024 * 1024;

/// One agent's answer: its results document, or why there is none (a fetch error, a document
/// that does not parse, or why it was not waited for).
#[derive(Debug, Clone, PartialEq)]
pub struct Gathered {
    /// Who was asked (a node name, or the address given on the command line).
    pub source: String,
    pub addr: SocketAddr,
    pub result: Result<AgentReport, String>,
}

impl Gathered {
    /// An answer as it came over the wire: the body parsed as a results document.
    pub fn from_wire(source: String, addr: SocketAddr, body: Result<String, ErrorClass>) -> Self {
        let result = body.map_err(|e| e.to_string()).and_then(|text| {
            AgentReport::from_json(&text).map_err(|e| format!("bad results JSON: {e}"))
        });
        Gathered {
            source,
            addr,
            result,
        }
    }
}

/// How the reason of an agent given up on starts (in `agents_unreachable[].error`).
pub const NOT_WAITED_FOR: &str = "not waited for";

/// The late rule: once few agents are still pending ([`few_pending`]), one whose fetch has run
/// longer than [`late_after`] is not waited for either. Agents answer in milliseconds (5–35 ms
/// on the lab); one that has not after many times the slowest answer is most likely cut off,
/// and waiting out the timeout (5 s for `diagnose`) would delay every answer by as much.
pub const LATE_FLOOR: Duration = Duration::from_millis(500);
/// See [`LATE_FLOOR`].
pub const LATE_FACTOR: u32 = 4;

/// How long a pending fetch may run once the others answered: [`LATE_FACTOR`] × the slowest
/// successful answer so far, at least [`LATE_FLOOR`].
pub fn late_after(slowest: Duration) -> Duration {
    (slowest * LATE_FACTOR).max(LATE_FLOOR)
}

/// Whether `pending` of `asked` agents are few enough for the late rule: at most a quarter,
/// at least one. So a fan-out still waiting for its concurrency permits is never cut short.
pub fn few_pending(pending: usize, asked: usize) -> bool {
    pending <= (asked / 4).max(1)
}

/// Fetch `/api/v1/results` from every `(name, addr)`, at most `concurrency` at once, each within
/// `timeout`. After each answer, `give_up(answers so far, still pending)` names pending agents
/// (by their index in `agents`, with the reason) not to wait for any longer, and the late rule
/// ([`LATE_FLOOR`]) drops stragglers; both come back as errors saying why. Returns once every
/// agent answered, failed or was given up on, in the order asked.
pub async fn gather<F>(
    agents: Vec<(String, SocketAddr)>,
    timeout: Duration,
    concurrency: usize,
    mut give_up: F,
) -> Vec<Gathered>
where
    F: FnMut(&[&Gathered], &[(usize, &str, SocketAddr)]) -> Vec<(usize, String)>,
{
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    // When each fetch got its permit and started (the late rule counts from there).
    let started: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; agents.len()]));
    let mut set = JoinSet::new();
    let mut slots: Vec<Option<Gathered>> = vec![None; agents.len()];
    for (i, (source, addr)) in agents.iter().cloned().enumerate() {
        let permits = permits.clone();
        let started = started.clone();
        set.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let t0 = Instant::now();
            if let Ok(mut s) = started.lock() {
                s[i] = Some(t0);
            }
            let body = fetch(addr, "/api/v1/results", timeout, MAX_RESULTS_BYTES)
                .await
                .and_then(|body| {
                    String::from_utf8(body.to_vec()).map_err(|_| ErrorClass::Protocol {
                        detail: "results are not UTF-8".into(),
                    })
                });
            (i, t0.elapsed(), Gathered::from_wire(source, addr, body))
        });
    }
    let mut slowest: Option<Duration> = None;
    loop {
        let pending: Vec<usize> = (0..agents.len()).filter(|i| slots[*i].is_none()).collect();
        if pending.is_empty() {
            break;
        }
        // The next moment a pending fetch becomes late, if the late rule applies now.
        let late_at = slowest
            .filter(|_| few_pending(pending.len(), agents.len()))
            .and_then(|slow| {
                let s = started.lock().ok()?;
                pending
                    .iter()
                    .filter_map(|i| s[*i].map(|t| (*i, t + late_after(slow))))
                    .min_by_key(|(_, at)| *at)
            });
        // Every task ends within `timeout` (plus its wait for a permit), so this ends too.
        let done = match late_at {
            Some((i, at)) => tokio::select! {
                d = set.join_next() => d,
                _ = tokio::time::sleep_until(at.into()) => {
                    let waited = late_after(slowest.unwrap_or_default());
                    slots[i] = Some(Gathered {
                        source: agents[i].0.clone(),
                        addr: agents[i].1,
                        result: Err(format!(
                            "{}: no answer {} ms after the others answered (the slowest in {} ms)",
                            NOT_WAITED_FOR,
                            waited.as_millis(),
                            slowest.unwrap_or_default().as_millis()
                        )),
                    });
                    continue;
                }
            },
            None => set.join_next().await,
        };
        let Some(done) = done else { break };
        let Ok((i, took, g)) = done else { continue };
        if slots[i].is_some() {
            continue; // given up on already
        }
        if g.result.is_ok() {
            slowest = Some(slowest.map_or(took, |s| s.max(took)));
        }
        slots[i] = Some(g);
        let answered: Vec<&Gathered> = slots.iter().flatten().collect();
        let pending: Vec<(usize, &str, SocketAddr)> = agents
            .iter()
            .enumerate()
            .filter(|(i, _)| slots[*i].is_none())
            .map(|(i, (s, a))| (i, s.as_str(), *a))
            .collect();
        if pending.is_empty() {
            break;
        }
        let dropped = give_up(&answered, &pending);
        for (i, why) in dropped {
            if let Some(slot @ None) = slots.get_mut(i) {
                *slot = Some(Gathered {
                    source: agents[i].0.clone(),
                    addr: agents[i].1,
                    result: Err(why),
                });
            }
        }
    }
    // Dropping the set aborts the fetches given up on.
    drop(set);
    agents
        .into_iter()
        .zip(slots)
        .map(|((source, addr), g)| {
            g.unwrap_or(Gathered {
                source,
                addr,
                result: Err("the fetch task failed".into()),
            })
        })
        .collect()
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

    /// An agent answering `/api/v1/results` with `{"node": NODE}`.
    async fn answering(node: &'static str) -> SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let body = format!("{{\"node\":\"{node}\"}}");
        tokio::spawn(async move {
            let app = axum::Router::new().route(
                "/api/v1/results",
                get(move || {
                    let body = body.clone();
                    async move { body }
                }),
            );
            let _ = axum::serve(l, app).await;
        });
        addr
    }

    /// Accepts and never answers.
    async fn silent() -> SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                held.push(s);
            }
        });
        addr
    }

    #[tokio::test]
    async fn answers_errors_and_silence_come_back_in_order() {
        let (good_addr, silent_addr) = (answering("a").await, silent().await);
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let agents = vec![
            ("a".to_string(), good_addr),
            ("silent".to_string(), silent_addr),
            ("closed".to_string(), closed),
        ];
        let t0 = std::time::Instant::now();
        let got = gather(agents.clone(), Duration::from_millis(300), 2, |_, _| {
            Vec::new()
        })
        .await;
        assert!(t0.elapsed() < Duration::from_secs(2));
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].result.as_ref().map(|r| r.node.as_str()), Ok("a"));
        assert_eq!(got[1].result, Err("timeout".to_string()));
        assert_eq!(got[2].result, Err(ErrorClass::Refused.to_string()));

        // Given up on once "a" has answered: no wait for the silent one's timeout.
        let t0 = std::time::Instant::now();
        let got = gather(agents, Duration::from_secs(5), 3, |answered, pending| {
            assert!(answered.iter().all(|g| g.source != "silent"));
            pending
                .iter()
                .filter(|(_, s, _)| *s == "silent")
                .map(|(i, _, _)| (*i, "not waited for".to_string()))
                .collect()
        })
        .await;
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
        assert_eq!(got[1].source, "silent");
        assert_eq!(got[1].result, Err("not waited for".to_string()));
        assert!(got[0].result.is_ok());
    }

    #[tokio::test]
    async fn a_straggler_is_not_waited_for_once_the_others_answered() {
        let (good_addr, silent_addr) = (answering("a").await, silent().await);
        let mut agents: Vec<(String, SocketAddr)> =
            (0..4).map(|i| (format!("good-{i}"), good_addr)).collect();
        agents.push(("silent".into(), silent_addr));
        let t0 = std::time::Instant::now();
        let got = gather(agents.clone(), Duration::from_secs(5), 8, |_, _| Vec::new()).await;
        let took = t0.elapsed();
        assert!(
            took >= LATE_FLOOR && took < LATE_FLOOR + Duration::from_millis(700),
            "{took:?}"
        );
        assert!(got[..4].iter().all(|g| g.result.is_ok()));
        let why = got[4].result.clone().unwrap_err();
        assert!(why.starts_with(NOT_WAITED_FOR), "{why}");

        // Many still pending (a fan-out waiting for permits): the rule does not apply, the
        // timeout does.
        agents.push(("silent-2".into(), silent_addr));
        let t0 = std::time::Instant::now();
        let got = gather(agents, Duration::from_millis(900), 8, |_, _| Vec::new()).await;
        assert!(
            t0.elapsed() >= Duration::from_millis(900),
            "{:?}",
            t0.elapsed()
        );
        // The first to time out leaves the other one alone pending, and late by then.
        assert!(got[4].result.is_err() && got[5].result.is_err(), "{got:?}");
        assert!(
            got[4..]
                .iter()
                .any(|g| g.result == Err("timeout".to_string())),
            "{got:?}"
        );
    }

    #[test]
    fn the_late_rule_waits_for_many_times_the_slowest_answer_and_only_for_a_few() {
        let ms = Duration::from_millis;
        assert_eq!(late_after(ms(5)), LATE_FLOOR);
        assert_eq!(late_after(ms(300)), ms(1200));
        for (pending, asked, few) in [
            (1, 2, true),
            (1, 3, true),
            (2, 4, false),
            (1, 4, true),
            (2, 8, true),
            (3, 8, false),
            (50, 200, true),
            (51, 200, false),
        ] {
            assert_eq!(few_pending(pending, asked), few, "{pending} of {asked}");
        }
    }
}
