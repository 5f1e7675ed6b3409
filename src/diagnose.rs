//! `meshprobe diagnose`: which pods cannot reach which, and why — from the command line.
//!
//! * `--agent URL`: ask one agent for its mesh view (`GET /api/v1/diagnosis`): it gathers its
//!   peers' results from inside the cluster network. The usual way in.
//! * `--agents URL,URL,…`: gather `/api/v1/results` from each agent here and diagnose locally
//!   (when this machine can reach every agent).
//! * `--prometheus URL`: build the same input from meshprobe's metrics in Prometheus
//!   ([`crate::promsource`]): one server answers for every agent (large clusters).
//! * `--results FILE,FILE,…`: saved `/api/v1/results` documents, diagnosed offline (an
//!   incident's evidence replayed, a capture turned into a test fixture); or one saved
//!   `/api/v1/diagnosis?include=inputs`, replayed from exactly what that view rested on.
//!
//! Exit status: 0 healthy, 1 findings, 2 error (bad arguments, no agent answered). Agents that
//! do not answer are evidence, not an error, as long as one does.

use std::net::SocketAddr;
use std::time::Duration;

use clap::ValueEnum;

use crate::diagnosis::{diagnose_inputs, AgentReport, Inputs, Params};
use crate::error::{Error, Result};
use crate::gather::{gather, parse_agent_addr, MAX_RESULTS_BYTES};
use crate::mesh::{MeshDiagnosis, Unanswered};
use crate::promclient::{self, PromUrl};
use crate::promsource;
use meshprobe_core::parse::parse_duration;

#[derive(Debug, Clone, clap::Args)]
pub struct DiagnoseArgs {
    /// One agent to ask for its mesh view, e.g. http://127.0.0.1:9464.
    #[arg(
        long,
        conflicts_with_all = ["agents", "prometheus", "results"],
        required_unless_present_any = ["agents", "prometheus", "results"]
    )]
    pub agent: Option<String>,
    /// Saved /api/v1/results documents (one agent each), comma-separated: diagnosed offline.
    /// Agents without a document are reported missing. Or one saved
    /// /api/v1/diagnosis?include=inputs document: replayed from exactly what it rested on.
    #[arg(long, value_delimiter = ',', value_name = "FILE", conflicts_with_all = ["agents", "prometheus", "kube"])]
    pub results: Vec<std::path::PathBuf>,
    /// Agents to gather results from directly, comma-separated.
    #[arg(long, value_delimiter = ',', conflicts_with = "prometheus")]
    pub agents: Vec<String>,
    /// Build the matrix from meshprobe's metrics in this Prometheus (http[s]://HOST:PORT[/PREFIX]).
    /// Auth from the environment: MESHPROBE_PROMETHEUS_TOKEN (bearer), or
    /// MESHPROBE_PROMETHEUS_USER and MESHPROBE_PROMETHEUS_PASSWORD (basic).
    #[arg(long)]
    pub prometheus: Option<String>,
    /// With --prometheus: extra label matchers for every query, e.g. 'cluster="prod"'.
    #[arg(long, requires = "prometheus")]
    pub prometheus_match: Option<String>,
    /// With an https:// --prometheus: trust the CA certificates of this PEM file instead of
    /// the system's trust store.
    #[arg(long, requires = "prometheus", value_name = "FILE")]
    pub prometheus_ca: Option<std::path::PathBuf>,
    /// Output: text for people, json for machines.
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    pub output: Output,
    /// How long to wait for each agent (or each Prometheus query).
    #[arg(long, default_value = "5s")]
    pub timeout: String,
    /// Add Kubernetes facts (node conditions, CNI pods, target pods and their events,
    /// NetworkPolicies) from the cluster of the current kubeconfig (with --agents; an agent
    /// running --discovery kubernetes adds them to its own view; or with --prometheus).
    #[arg(long)]
    pub kube: bool,
    /// With --kube: the API server URL instead of the kubeconfig (e.g. behind `kubectl proxy`).
    #[arg(long, requires = "kube")]
    pub kube_api: Option<String>,
    /// With --kube: label selector of the agent pods (the sources NetworkPolicies must admit).
    #[arg(long, default_value = crate::config::DEFAULT_SELECTOR)]
    pub selector: String,
    /// Also write the answer with what it rested on (every agent's results as read, the agents
    /// that did not answer, the facts) to FILE, as `/api/v1/diagnosis?include=inputs` does:
    /// `diagnose --results FILE` replays it, for a bug report or a post-mortem.
    #[arg(long, value_name = "FILE", conflicts_with = "agent")]
    pub save_inputs: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

pub async fn run(args: DiagnoseArgs) -> Result<u8> {
    let timeout = parse_duration(&args.timeout)
        .map_err(|e| Error::Config(format!("--timeout {:?}: {e}", args.timeout)))?;
    if args.kube && args.agent.is_some() {
        return Err(Error::Config(
            "--kube works with --agents or --prometheus (an agent adds Kubernetes facts itself)"
                .into(),
        ));
    }
    let kube = if args.kube {
        Some(crate::k8s::client(args.kube_api.as_deref()).await?)
    } else {
        None
    };
    let d = match (&args.agent, &args.prometheus) {
        _ if !args.results.is_empty() => from_files(&args.results)?,
        (Some(a), _) => ask_one(parse_agent_addr(a).map_err(Error::Config)?, timeout).await?,
        (None, Some(url)) => {
            let mut u = crate::promclient::PromUrl::parse(url)
                .and_then(|u| u.with_ca(args.prometheus_ca.as_deref()))
                .map_err(Error::Config)?;
            u.auth = crate::promclient::auth_from_env(|k| std::env::var(k).ok())
                .map_err(Error::Config)?;
            from_prometheus(
                &u,
                args.prometheus_match.as_deref(),
                timeout,
                kube.map(|c| (c, args.selector.clone())),
            )
            .await?
        }
        (None, None) => {
            let addrs = args
                .agents
                .iter()
                .map(|a| parse_agent_addr(a).map_err(Error::Config))
                .collect::<Result<Vec<_>>>()?;
            gather_here(addrs, timeout, kube.map(|c| (c, args.selector.clone()))).await?
        }
    };
    if let Some(f) = &args.save_inputs {
        save_view(f, &d)?;
    }
    match args.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&d).map_err(|e| Error::Config(e.to_string()))?
        ),
        Output::Text => print!("{}", render(&d)),
    }
    Ok(if d.diagnosis.healthy { 0 } else { 1 })
}

async fn ask_one(addr: SocketAddr, timeout: Duration) -> Result<MeshDiagnosis> {
    let body = crate::probe::http::fetch(addr, "/api/v1/diagnosis", timeout, MAX_RESULTS_BYTES)
        .await
        .map_err(|e| Error::NoAnswer(format!("agent {addr}: {e}")))?;
    serde_json::from_slice(&body)
        .map_err(|e| Error::NoAnswer(format!("agent {addr}: not a diagnosis document: {e}")))
}

/// Largest saved mesh view (`/api/v1/diagnosis?include=inputs`) read by `--results`: every
/// agent's results in one file.
const MAX_SAVED_VIEW_BYTES: u64 = 64 * 1024 * 1024;

/// Saved results documents, diagnosed as the agents' own would be; or one saved mesh view
/// (`/api/v1/diagnosis?include=inputs`), replayed exactly from what it rested on. A file that
/// cannot be read or is neither is a configuration error naming the file.
fn from_files(files: &[std::path::PathBuf]) -> Result<MeshDiagnosis> {
    let mut agents = Vec::new();
    for f in files {
        let bad = |e: String| Error::Config(format!("--results {}: {e}", f.display()));
        let meta = std::fs::metadata(f).map_err(|e| bad(e.to_string()))?;
        if meta.len() > MAX_SAVED_VIEW_BYTES {
            return Err(bad(format!(
                "{} bytes, at most {MAX_SAVED_VIEW_BYTES} allowed",
                meta.len()
            )));
        }
        let text = std::fs::read_to_string(f).map_err(|e| bad(e.to_string()))?;
        if let Some(view) = saved_view(&text).map_err(&bad)? {
            if files.len() > 1 {
                return Err(bad(
                    "a saved mesh view (with `inputs`) is replayed alone; give it as the only file"
                        .into(),
                ));
            }
            return Ok(replay(f, view));
        }
        if meta.len() > MAX_RESULTS_BYTES as u64 {
            return Err(bad(format!(
                "{} bytes, at most {MAX_RESULTS_BYTES} allowed for a results document",
                meta.len()
            )));
        }
        let r = AgentReport::from_json(&text)
            .map_err(|e| bad(format!("not a results document: {e}")))?;
        if r.node.is_empty() {
            return Err(bad("not a results document: no `node`".into()));
        }
        agents.push(r);
    }
    let agents_answered = agents.iter().map(|a| a.node.clone()).collect();
    let inputs = Inputs {
        agents,
        unreachable_agents: Vec::new(),
        nodes: Vec::new(),
        kube: None,
    };
    Ok(MeshDiagnosis {
        node: "saved results".into(),
        agents_answered,
        agents_unreachable: Vec::new(),
        diagnosis: diagnose_inputs(&inputs, &Params::default()),
        held: Vec::new(),
        scope: None,
        inputs,
    })
}

/// Writes `d` with its inputs (the `?include=inputs` document) to `f`; a file that cannot be
/// written is an error naming it.
fn save_view(f: &std::path::Path, d: &MeshDiagnosis) -> Result<()> {
    let bad = |e: String| Error::Config(format!("--save-inputs {}: {e}", f.display()));
    let file = std::fs::File::create(f).map_err(|e| bad(e.to_string()))?;
    let mut w = std::io::BufWriter::new(file);
    serde_json::to_writer(&mut w, &crate::mesh::WithInputs::of(d))
        .map_err(|e| bad(e.to_string()))?;
    std::io::Write::flush(&mut w).map_err(|e| bad(e.to_string()))
}

/// The `inputs` of a saved mesh view, if `text` is one (a JSON object with an `inputs` key).
fn saved_view(text: &str) -> std::result::Result<Option<Inputs>, String> {
    #[derive(serde::Deserialize)]
    struct View {
        inputs: Option<serde_json::Value>,
    }
    let Ok(View {
        inputs: Some(inputs),
    }) = serde_json::from_str::<View>(text)
    else {
        return Ok(None);
    };
    let inputs: Inputs = serde_json::from_value(inputs)
        .map_err(|e| format!("a saved mesh view whose `inputs` do not parse: {e}"))?;
    if inputs.agents.iter().any(|a| a.node.is_empty()) {
        return Err("a saved mesh view with a results document without `node`".into());
    }
    Ok(Some(inputs))
}

/// A saved mesh view diagnosed again from exactly what it rested on (the Kubernetes holds of
/// the live view are not replayed: they need the cluster).
fn replay(f: &std::path::Path, inputs: Inputs) -> MeshDiagnosis {
    let agents_answered = inputs.agents.iter().map(|a| a.node.clone()).collect();
    let agents_unreachable = inputs
        .unreachable_agents
        .iter()
        .map(|n| crate::mesh::Unanswered {
            node: n.clone(),
            error: "did not answer the saved view".into(),
        })
        .collect();
    MeshDiagnosis {
        node: format!("saved view {}", f.display()),
        agents_answered,
        agents_unreachable,
        diagnosis: diagnose_inputs(&inputs, &Params::default()),
        held: Vec::new(),
        scope: None,
        inputs,
    }
}

async fn gather_here(
    addrs: Vec<SocketAddr>,
    timeout: Duration,
    kube: Option<(kube::Client, String)>,
) -> Result<MeshDiagnosis> {
    let asked = addrs.iter().map(|a| (a.to_string(), *a)).collect();
    // An agent the others already find down is not waited for (`mesh::not_waited_for`).
    let gathered = gather(asked, timeout, 16, crate::mesh::not_waited_for).await;
    let mut agents = Vec::new();
    let mut failed = Vec::new();
    for g in gathered {
        match g.result {
            Ok(r) => agents.push(r),
            Err(e) => failed.push((g.addr, e)),
        }
    }
    if agents.is_empty() {
        let why: Vec<String> = failed.iter().map(|(a, e)| format!("{a}: {e}")).collect();
        return Err(Error::NoAnswer(format!(
            "no agent answered ({})",
            why.join("; ")
        )));
    }
    // Name the silent agents by the pod IP their peers know them by.
    let mut unanswered = Vec::new();
    for (addr, error) in failed {
        let node = agents
            .iter()
            .flat_map(|a| &a.peers)
            .find(|p| p.pod_ip == Some(addr.ip()))
            .map(|p| p.node.clone());
        match node {
            Some(node) => unanswered.push(Unanswered { node, error }),
            None => eprintln!(
                "meshprobe: agent {addr} did not answer ({error}) and no peer knows it; left out"
            ),
        }
    }
    let agents_answered = agents.iter().map(|a| a.node.clone()).collect();
    let kube = kube_facts(kube, &agents, timeout).await;
    let inputs = Inputs {
        agents,
        unreachable_agents: unanswered.iter().map(|u| u.node.clone()).collect(),
        nodes: Vec::new(),
        kube,
    };
    Ok(MeshDiagnosis {
        node: "this machine".into(),
        agents_answered,
        agents_unreachable: unanswered,
        diagnosis: diagnose_inputs(&inputs, &Params::default()),
        held: Vec::new(),
        scope: None,
        inputs,
    })
}

/// Kubernetes facts for the nodes and targets of `agents`, within `timeout` (absent: none).
async fn kube_facts(
    kube: Option<(kube::Client, String)>,
    agents: &[AgentReport],
    timeout: Duration,
) -> Option<crate::diagnosis::KubeFacts> {
    let (client, selector) = kube?;
    let q = crate::k8s::fetch::query_from_reports(agents, &selector, None);
    match tokio::time::timeout(timeout, crate::k8s::fetch::fetch_facts(&client, &q)).await {
        Ok(f) => {
            for e in &f.errors {
                eprintln!("meshprobe: {e}");
            }
            Some(f)
        }
        Err(_) => {
            eprintln!(
                "meshprobe: kubernetes facts: no answer within {timeout:?}; diagnosing without them"
            );
            None
        }
    }
}

/// `--prometheus`: every query of [`promsource::QUERIES`] at once (each within `timeout`),
/// then the pure build and the engine. Unreachable Prometheus, a query error, or no meshprobe
/// series at all: an error naming the URL and the query (exit 2).
async fn from_prometheus(
    url: &PromUrl,
    matchers: Option<&str>,
    timeout: Duration,
    kube: Option<(kube::Client, String)>,
) -> Result<MeshDiagnosis> {
    let src = promclient::PromSource {
        url: url.clone(),
        matchers: matchers.map(str::to_string),
    };
    let answers = promclient::answers(&src, timeout)
        .await
        .map_err(Error::NoAnswer)?;
    if let Ok(dir) = std::env::var("MESHPROBE_RECORD_PROM") {
        record(&dir, &answers);
    }
    let mut built = promsource::build(&answers, matchers)
        .map_err(|e| Error::NoAnswer(format!("Prometheus at {}: {e}", url.display())))?;
    for n in &built.notes {
        eprintln!("meshprobe: Prometheus data: {n}");
    }
    built.inputs.kube = kube_facts(kube, &built.inputs.agents, timeout).await;
    let mut diagnosis = diagnose_inputs(&built.inputs, &Params::default());
    promsource::finish(&mut diagnosis, &url.display());
    Ok(MeshDiagnosis {
        node: format!("Prometheus at {}", url.display()),
        agents_answered: built.answered,
        agents_unreachable: built.unanswered,
        diagnosis,
        held: Vec::new(),
        scope: None,
        inputs: built.inputs,
    })
}

/// Test support (`MESHPROBE_RECORD_PROM=DIR`): the answers as one JSON document, for fixtures.
fn record(dir: &str, answers: &promsource::Answers) {
    let doc: serde_json::Map<String, serde_json::Value> = answers
        .iter()
        .map(|(m, samples)| {
            let result: Vec<serde_json::Value> = samples
                .iter()
                .map(|s| {
                    let v = if s.value.is_nan() {
                        "NaN".to_string()
                    } else if s.value.is_infinite() {
                        if s.value > 0.0 { "+Inf" } else { "-Inf" }.to_string()
                    } else {
                        s.value.to_string()
                    };
                    serde_json::json!({"metric": s.labels, "value": [0, v]})
                })
                .collect();
            (
                m.to_string(),
                serde_json::json!({"status": "success", "data": {"resultType": "vector", "result": result}}),
            )
        })
        .collect();
    let path = std::path::Path::new(dir).join(format!("prom-{}.json", std::process::id()));
    if let Err(e) = std::fs::write(&path, serde_json::Value::Object(doc).to_string()) {
        eprintln!("meshprobe: MESHPROBE_RECORD_PROM: {}: {e}", path.display());
    }
}

/// Text for people: who answered, then the findings.
pub fn render(d: &MeshDiagnosis) -> String {
    let mut out = format!(
        "mesh view from {}: {} agent(s) answered",
        d.node,
        d.agents_answered.len()
    );
    if !d.agents_unreachable.is_empty() {
        let silent: Vec<String> = d
            .agents_unreachable
            .iter()
            .map(|u| format!("{} ({})", u.node, u.error))
            .collect();
        out.push_str(&format!(", no answer from {}", silent.join(", ")));
    }
    out.push('\n');
    if let Some(scope) = &d.scope {
        out.push_str(&format!("scope: {}\n", scope.note));
    }
    out.push('\n');
    out.push_str(&d.diagnosis.to_text());
    out
}

#[cfg(test)]
mod results_files {
    use super::*;

    /// A recorded lab capture (node-4 down), one file per agent: the offline diagnosis is the
    /// one the engine gives the same documents, and names node-4.
    #[test]
    fn saved_results_are_diagnosed_as_the_agents_would() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/crates/diagnosis/tests/fixtures/onset/node-down-node-4.json"
        );
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let docs: Vec<String> = v["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.to_string())
            .collect();
        let dir = std::env::temp_dir().join(format!("mp-results-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files: Vec<std::path::PathBuf> = docs
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let f = dir.join(format!("{i}.json"));
                std::fs::write(&f, d).unwrap();
                f
            })
            .collect();
        let got = from_files(&files).unwrap();
        let want = crate::diagnosis::diagnose(
            &crate::diagnosis::Matrix::from_json_documents(&docs).unwrap(),
        );
        assert_eq!(got.diagnosis, want);
        assert!(
            got.diagnosis
                .findings
                .iter()
                .any(|f| f.nodes.iter().any(|n| n == "node-4")),
            "{}",
            got.diagnosis.to_text()
        );
        // A file that is no results document, or none at all: an error naming it.
        let junk = dir.join("junk.json");
        std::fs::write(&junk, "{\"peers\": 3}").unwrap();
        for (f, want) in [
            (junk.clone(), "junk.json: not a results document"),
            (dir.join("absent.json"), "absent.json: No such file"),
        ] {
            let e = from_files(&[files[0].clone(), f]).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A saved mesh view (`/api/v1/diagnosis?include=inputs`) replays from exactly its inputs —
    /// an agent that did not answer stays unanswered — and is refused with other files or when
    /// its inputs do not parse.
    #[test]
    fn a_saved_view_replays_from_what_it_rested_on() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/crates/diagnosis/tests/fixtures/onset/node-down-node-4.json"
        );
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let mut agents: Vec<AgentReport> = v["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| AgentReport::from_json(&d.to_string()).unwrap())
            .collect();
        agents.retain(|a| a.node != "node-4");
        let inputs = Inputs {
            agents,
            unreachable_agents: vec!["node-4".into()],
            nodes: Vec::new(),
            kube: None,
        };
        let want = diagnose_inputs(&inputs, &Params::default());
        let mut doc = serde_json::to_value(&want).unwrap();
        doc["inputs"] = serde_json::to_value(&inputs).unwrap();
        let dir = std::env::temp_dir().join(format!("mp-view-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let view = dir.join("view.json");
        std::fs::write(&view, doc.to_string()).unwrap();
        let got = from_files(std::slice::from_ref(&view)).unwrap();
        assert_eq!(got.diagnosis, want);
        assert_eq!(got.inputs, inputs);
        assert_eq!(got.agents_unreachable.len(), 1);
        assert_eq!(got.agents_unreachable[0].node, "node-4");
        // Not combinable; inputs that do not parse are named.
        let e = from_files(&[view.clone(), view.clone()])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("view.json: a saved mesh view") && e.contains("alone"),
            "{e}"
        );
        // What --save-inputs writes replays to the same answer from the same inputs; a file
        // that cannot be written is named.
        let saved = dir.join("saved.json");
        save_view(&saved, &got).unwrap();
        let again = from_files(std::slice::from_ref(&saved)).unwrap();
        assert_eq!(again.diagnosis, want);
        assert_eq!(again.inputs, inputs);
        let e = save_view(&dir.join("no/such/dir.json"), &got)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--save-inputs") && e.contains("dir.json"), "{e}");
        let broken = dir.join("broken.json");
        std::fs::write(&broken, r#"{"inputs": {"agents": 7}}"#).unwrap();
        let e = from_files(&[broken]).unwrap_err().to_string();
        assert!(
            e.contains("broken.json: a saved mesh view whose `inputs` do not parse"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
