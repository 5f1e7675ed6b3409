//! `lab status [--json]`: the topology, processes and active faults from the state, and each
//! agent's readiness and reachability from its `/api/v1/results`.

use std::net::SocketAddr;
use std::time::Duration;

use meshprobe_core::error::Result;

use crate::fault::Scoped;
use crate::plan::services::{self, DNS_NODE, DNS_PORT};
use crate::plan::{IpFamily, Topology, AGENT_PORT};
use crate::state::{self, State};
use crate::{dns, netns, run, summary};

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
    let dns = dns_check(topo, &namespaces).await;
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
                "services": services::services_file(topo),
                "dns_answering": dns.is_ok(),
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
    // The DNS answer is asked in the primary family; the Services' lines are per family.
    let dns_line = match &dns {
        Ok(()) => "answering".to_string(),
        Err(e) => format!("not answering ({e})"),
    };
    for t in topo.families().iter().map(|f| topo.in_family(*f)) {
        outln!(
            o,
            "services: kube-dns {} udp+tcp -> DNS pod {} on node-{DNS_NODE} ({}): {dns_line}",
            SocketAddr::new(t.dns_vip(), DNS_PORT),
            t.dns_pod_ip(),
            topo.dns_ns(),
        );
        outln!(
            o,
            "          meshprobe-vip {} tcp -> {} agent pods (nft table {} {} on every node)",
            SocketAddr::new(t.agents_vip(), AGENT_PORT),
            topo.nodes,
            t.nft_family(),
            t.service_table(),
        );
        outln!(
            o,
            "          kubernetes {} tcp -> API server stand-in {} (TLS /readyz, CA {})",
            SocketAddr::new(t.apiserver_vip(), crate::apiserver::VIP_PORT),
            t.apiserver_endpoint(),
            crate::apiserver::CA_FILE,
        );
    }
    outln!(
        o,
        "          all in {}",
        state::state_dir(&topo.prefix)
            .join("services.json")
            .display()
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
            outln!(o, "  {}", fault_line(topo, f));
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

/// Whether the DNS pod answers its own zone, asked from inside its namespace (so `dns-down`,
/// which drops port 53 there, shows; a node's faults do not).
async fn dns_check(topo: &Topology, namespaces: &[String]) -> std::result::Result<(), String> {
    let ns = topo.dns_ns();
    if !namespaces.contains(&ns) {
        return Err(format!("namespace {ns} missing"));
    }
    let t = topo.in_family(topo.families()[0]);
    let server = SocketAddr::new(t.dns_pod_ip(), DNS_PORT);
    let rtype = dns::rtype_for(server.ip());
    let ask = move || {
        dns::query_udp_in(
            &ns,
            server,
            services::DNS_NAME,
            rtype,
            Duration::from_secs(1),
        )
    };
    match tokio::task::spawn_blocking(ask).await {
        Ok(Ok(a)) if !a.ips.is_empty() => Ok(()),
        Ok(Ok(a)) => Err(format!("rcode {}", a.rcode)),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// An active fault as `status` shows it: its words (the `clear` arguments), and in a dual-stack
/// lab the families it acts on, so a fault on both reads apart from one confined to one.
fn fault_line(topo: &Topology, words: &[String]) -> String {
    let line = words.join(" ");
    if topo.family != IpFamily::Dual {
        return line;
    }
    match Scoped::from_words(topo, words).map(|f| f.family) {
        Ok(Some(f)) => format!("{line}  ({} only)", f.as_str()),
        Ok(None) => format!("{line}  (ipv4 and ipv6)"),
        Err(_) => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dual_labs_faults_show_their_families() {
        let w = |l: &str| l.split(' ').map(str::to_string).collect::<Vec<_>>();
        let v4 = Topology::new("mp", 4, 2).unwrap();
        let dual = v4.clone().with_family(IpFamily::Dual).unwrap();
        assert_eq!(
            fault_line(&dual, &w("cni node-3 --family ipv4")),
            "cni node-3 --family ipv4  (ipv4 only)"
        );
        assert_eq!(
            fault_line(&dual, &w("cni node-3")),
            "cni node-3  (ipv4 and ipv6)"
        );
        // A single-family lab's line is its words, as before the flag.
        assert_eq!(fault_line(&v4, &w("cni node-3")), "cni node-3");
    }
}
