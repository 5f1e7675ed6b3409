//! `lab status [--json]`: the topology, processes and active faults from the state, and each
//! agent's readiness and reachability from its `/api/v1/results`.

use std::net::SocketAddr;
use std::time::Duration;

use meshprobe_core::error::Result;

use crate::plan::{Topology, AGENT_PORT};
use crate::state::{self, State};
use crate::{netns, run, summary};

/// `println!` into a String.
macro_rules! outln {
    ($o:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($o, $($arg)*);
    }};
}

pub(crate) async fn status(prefix: &str, json: bool) -> Result<u8> {
    let mut o = String::new();
    let code = status_into(&mut o, prefix, json).await;
    // One write, its error ignored: `lab status | head` must not panic on a closed pipe.
    use std::io::Write;
    let _ = std::io::stdout().write_all(o.as_bytes());
    code
}

async fn status_into(o: &mut String, prefix: &str, json: bool) -> Result<u8> {
    let st = State::load(prefix)?;
    let namespaces: Vec<String> = run::list_namespaces()
        .await?
        .into_iter()
        .filter(|ns| Topology::owns_namespace(prefix, ns))
        .collect();
    let Some(st) = st else {
        if json {
            outln!(
                o,
                "{}",
                serde_json::json!({"prefix": prefix, "state": null, "namespaces": namespaces})
            );
        } else if namespaces.is_empty() {
            outln!(o, "no lab with prefix {prefix:?}");
        } else {
            outln!(o,
                "no lab state for prefix {prefix:?}, but namespaces are left over: {} (`meshprobe lab --prefix {prefix} down` removes them)",
                namespaces.join(", ")
            );
        }
        return Ok(1);
    };
    let topo = &st.topology;
    let mut agents = serde_json::Map::new();
    for n in topo.all_nodes() {
        let addr = SocketAddr::new(n.probe_ip, AGENT_PORT);
        let v = if namespaces.contains(&n.probe_ns) {
            match netns::http_get_in(&n.probe_ns, addr, "/api/v1/results", Duration::from_secs(1))
                .await
            {
                Ok((200, body)) => serde_json::from_str(&body)
                    .unwrap_or_else(|e| serde_json::json!({"error": format!("bad JSON: {e}")})),
                Ok((code, _)) => serde_json::json!({"error": format!("HTTP {code}")}),
                Err(e) => serde_json::json!({"error": e.to_string()}),
            }
        } else {
            serde_json::json!({"error": "namespace missing"})
        };
        agents.insert(n.name.clone(), v);
    }
    let lab_alive = st.lab.as_ref().is_some_and(state::is_alive);
    if json {
        let procs: Vec<_> = st
            .processes
            .iter()
            .map(|p| {
                let mut v = serde_json::to_value(p).unwrap_or_default();
                v["alive"] = state::is_alive(p).into();
                v
            })
            .collect();
        outln!(
            o,
            "{}",
            serde_json::json!({
                "prefix": prefix, "state": st, "lab_alive": lab_alive, "namespaces": namespaces,
                "processes": procs, "agents": agents,
            })
        );
        return Ok(0);
    }
    outln!(o,
        "lab {prefix:?}: {} nodes in {} zones, {} (lab process {}), agents every {} (timeout {}, window {})",
        topo.nodes,
        topo.zones,
        st.phase,
        match &st.lab {
            Some(p) if lab_alive => format!("pid {} running", p.pid),
            Some(p) => format!("pid {} gone: run `down` to clean up", p.pid),
            None => "unknown".into(),
        },
        st.interval,
        st.timeout,
        st.window
    );
    outln!(
        o,
        "namespaces: {}/{} present",
        namespaces.len(),
        topo.namespaces().len()
    );
    outln!(
        o,
        "router: {} (zone legs {})",
        topo.router_ns(),
        (1..=topo.zones)
            .map(|z| format!("z{z} {}", topo.router_ip(z)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for n in topo.all_nodes() {
        let view = st
            .proxies
            .iter()
            .find(|p| p.node == n.name)
            .map(|p| format!("http://{}/", p.listen))
            .unwrap_or_default();
        let procs: Vec<String> = st
            .processes
            .iter()
            .filter(|p| p.node == n.name)
            .map(|p| {
                format!(
                    "{} pid {} {}",
                    p.role,
                    p.pid,
                    if state::is_alive(p) {
                        "running"
                    } else {
                        "exited"
                    }
                )
            })
            .collect();
        outln!(
            o,
            "  {} {} node {} pods {} | {} | {view}",
            n.name,
            n.zone_name,
            n.node_ip,
            n.pod_routes.join(" "),
            procs.join(", ")
        );
    }
    if st.faults.is_empty() {
        outln!(o, "faults: none");
    } else {
        outln!(o, "faults:");
        for f in &st.faults {
            outln!(o, "  {}", f.join(" "));
        }
    }
    outln!(o, "agents:");
    for (node, v) in &agents {
        outln!(o, "  {node}: {}", summary::one_line(v));
        for line in summary::failing(v).iter().take(12) {
            outln!(o, "      {line}");
        }
    }
    Ok(0)
}
