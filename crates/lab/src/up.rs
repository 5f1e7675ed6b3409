//! `lab up`: check the options, bind the live view, build the lab, wait for the agents, print
//! what to try, and tear everything down on Ctrl-C, SIGTERM or SIGHUP.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use meshprobe_core::error::{Error, Result};

use crate::down::remove_everything;
use crate::plan::services::{self, DNS_PORT};
use crate::plan::{Topology, AGENT_PORT, WEB_PORT};
use crate::proxy::serve_proxy;
use crate::start::build;
use crate::state::{self, Proc, Proxy, State};
use crate::{command_line, netns, run, UpArgs};

pub(crate) async fn up(prefix: &str, a: UpArgs) -> Result<u8> {
    let topo = Topology::new(prefix, a.nodes, a.zones)
        .and_then(|t| t.with_addressing(a.pod_addressing))
        .and_then(|t| t.with_family(a.ip_family))
        .map_err(Error::Config)?;
    for (flag, v) in [
        ("interval", &a.interval),
        ("timeout", &a.timeout),
        ("window", &a.window),
    ] {
        meshprobe_core::parse::parse_duration(v)
            .map_err(|e| Error::Config(format!("--{flag} {v:?}: {e}")))?;
    }
    let interval =
        meshprobe_core::parse::parse_duration(&a.interval).unwrap_or(Duration::from_secs(2));
    // The agents would refuse it one by one after the network is built: say so now.
    let timeout =
        meshprobe_core::parse::parse_duration(&a.timeout).unwrap_or(Duration::from_secs(1));
    if timeout.is_zero() || timeout >= interval {
        return Err(Error::Config(format!(
            "--timeout {} must be above zero and below --interval {}",
            a.timeout, a.interval
        )));
    }
    let exe = match a.exe.clone() {
        Some(p) => p,
        None => std::env::current_exe()?,
    };
    if !exe.is_file() {
        return Err(Error::Config(format!(
            "--exe {}: no such file",
            exe.display()
        )));
    }

    // Every tool `up` and the fault commands run, before anything is built.
    crate::tools::ensure(!a.no_install).await?;

    let existing: Vec<String> = run::list_namespaces()
        .await?
        .into_iter()
        .filter(|ns| Topology::owns_namespace(prefix, ns))
        .collect();
    if State::load(prefix)?.is_some() || !existing.is_empty() {
        return Err(Error::Lab(format!(
            "a lab with prefix {prefix:?} already exists ({}); remove it with `meshprobe lab --prefix {prefix} down`, \
             or pick another --prefix",
            if existing.is_empty() {
                format!("state in {}", state::state_dir(prefix).display())
            } else {
                format!("namespaces {}", existing.join(", "))
            }
        )));
    }

    // Bind the live view first: a busy port should fail before anything is built.
    let mut listeners = Vec::new();
    for n in topo.all_nodes() {
        let port = if a.port_base == 0 {
            0
        } else {
            a.port_base.checked_add(n.index - 1).ok_or_else(|| {
                Error::Config(format!(
                    "--port-base {}: too high for {} nodes",
                    a.port_base, a.nodes
                ))
            })?
        };
        let l = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port))
            .await
            .map_err(|e| {
                Error::Lab(format!(
                    "live view: cannot listen on 127.0.0.1:{port}: {e} (choose another --port-base, or 0)"
                ))
            })?;
        listeners.push((n, l));
    }

    // Catch the stop signals before building: one that arrives mid-build is handled (by tearing
    // down) once the build returns, instead of killing the process with the lab half made.
    use tokio::signal::unix::{signal, SignalKind};
    let (mut int, mut term, mut hup) = (
        signal(SignalKind::interrupt())?,
        signal(SignalKind::terminate())?,
        signal(SignalKind::hangup())?,
    );

    let me = std::process::id();
    let mut st = State {
        topology: topo.clone(),
        phase: "building".into(),
        exe: exe.clone(),
        interval: a.interval.clone(),
        timeout: a.timeout.clone(),
        window: a.window.clone(),
        started_unix: state::now_unix(),
        lab: Some(Proc {
            role: "lab".into(),
            node: String::new(),
            ns: String::new(),
            pid: me,
            start_time: state::process_start_time(me),
            log: None,
        }),
        processes: Vec::new(),
        proxies: Vec::new(),
        faults: Vec::new(),
    };
    st.save()?;

    let t0 = Instant::now();
    errln!(
        "meshprobe lab {prefix:?}: building {} nodes in {} zones…",
        topo.nodes,
        topo.zones
    );
    let built = build(&topo, &a, &exe, &mut st).await;
    if let Err(e) = built {
        errln!("meshprobe lab: build failed, removing what was made: {e}");
        let _ = remove_everything(prefix, Some(&st), Some(me)).await;
        return Err(e);
    }
    let build_time = t0.elapsed();

    // Live view proxies.
    for (n, l) in listeners {
        let target = SocketAddr::new(n.probe_ip, AGENT_PORT);
        st.proxies.push(Proxy {
            node: n.name.clone(),
            listen: l.local_addr()?,
            target,
        });
        tokio::spawn(serve_proxy(l, n.probe_ns.clone(), target));
    }
    st.phase = "running".into();
    st.save()?;

    // Wait (bounded) for every agent to be ready, then tell the user what to do.
    let ready = wait_ready(&topo, &st, (interval * 4).max(Duration::from_secs(10))).await;
    print_guidance(&topo, &st, build_time, t0.elapsed(), &ready);

    // Run until told to stop; warn once about any pod process that dies.
    let mut reported = std::collections::HashSet::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = int.recv() => break,
            _ = term.recv() => break,
            _ = hup.recv() => break,
            _ = tick.tick() => {
                for p in &st.processes {
                    if !state::is_alive(p) && reported.insert(p.pid) {
                        errln!(
                            "meshprobe lab: {} on {} (pid {}) exited; see {}",
                            p.role, p.node, p.pid,
                            p.log.as_deref().map(|l| l.display().to_string()).unwrap_or_default()
                        );
                    }
                }
            }
        }
    }
    errln!("meshprobe lab {prefix:?}: tearing down…");
    let t1 = Instant::now();
    remove_everything(prefix, Some(&st), Some(me)).await?;
    errln!(
        "meshprobe lab {prefix:?}: removed (in {:.1}s)",
        t1.elapsed().as_secs_f64()
    );
    Ok(0)
}

/// Poll every agent's `/readyz` until 200, its process dies, or `limit` passes.
async fn wait_ready(topo: &Topology, st: &State, limit: Duration) -> Vec<(String, String)> {
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    for n in topo.all_nodes() {
        let proc_ = st
            .processes
            .iter()
            .find(|p| p.role == "agent" && p.node == n.name);
        let addr = SocketAddr::new(n.probe_ip, AGENT_PORT);
        let verdict = loop {
            if let Some(p) = proc_ {
                if !state::is_alive(p) {
                    break "exited (see its log)".to_string();
                }
            }
            match netns::http_get_in(&n.probe_ns, addr, "/readyz", Duration::from_millis(500)).await
            {
                Ok((200, _)) => break "ready".to_string(),
                Ok((code, _)) if Instant::now() >= deadline => {
                    break format!("not ready (HTTP {code})")
                }
                Err(e) if Instant::now() >= deadline => break format!("not answering ({e})"),
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        };
        out.push((n.name.clone(), verdict));
    }
    out
}

fn print_guidance(
    topo: &Topology,
    st: &State,
    build: Duration,
    total: Duration,
    ready: &[(String, String)],
) {
    let cmd = command_line(&st.exe, &topo.prefix);
    let family = match topo.family {
        crate::plan::IpFamily::Ipv4 => String::new(),
        f => format!(", {}", f.as_str()),
    };
    outln!(
        "\nmeshprobe lab {:?} is up: {} nodes in {} zones, {} pod addressing{family} (network built in {:.1}s, agents checked after {:.1}s).\n",
        topo.prefix,
        topo.nodes,
        topo.zones,
        topo.addressing.as_str(),
        build.as_secs_f64(),
        total.as_secs_f64()
    );
    // Columns as wide as IPv4's, wider where IPv6 addresses need it.
    let nodes = topo.all_nodes();
    let widest = |min: usize, f: &dyn Fn(&crate::plan::Node) -> String| {
        nodes.iter().map(|n| f(n).len()).max().unwrap_or(0).max(min)
    };
    let w_ip = widest(13, &|n| n.node_ip.to_string());
    let w_agent = widest(20, &|n| SocketAddr::new(n.probe_ip, AGENT_PORT).to_string());
    let w_web = widest(20, &|n| SocketAddr::new(n.web_ip, WEB_PORT).to_string());
    outln!(
        "  {:<7} {:<7} {:<w_ip$} {:<36} {:<w_agent$} {:<w_web$} {:<28} agent",
        "node",
        "zone",
        "node IP",
        "pods routed as",
        "agent pod",
        "target pod",
        "live view"
    );
    for n in nodes {
        let view = st
            .proxies
            .iter()
            .find(|p| p.node == n.name)
            .map(|p| format!("http://{}/", p.listen))
            .unwrap_or_default();
        let r = ready
            .iter()
            .find(|(node, _)| *node == n.name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("?");
        outln!(
            "  {:<7} {:<7} {:<w_ip$} {:<36} {:<w_agent$} {:<w_web$} {:<28} {r}",
            n.name,
            n.zone_name,
            n.node_ip.to_string(),
            n.pod_routes.join(" "),
            SocketAddr::new(n.probe_ip, AGENT_PORT).to_string(),
            SocketAddr::new(n.web_ip, WEB_PORT).to_string(),
            view
        );
    }
    if let Some(p) = st.proxies.first() {
        outln!("\nLook (node-1's agent):");
        outln!("  http://{}/                  its page", p.listen);
        outln!("  http://{}/metrics           Prometheus metrics", p.listen);
        outln!(
            "  http://{}/api/v1/results    what it sees, as JSON",
            p.listen
        );
        outln!(
            "  http://{}/api/v1/diagnosis  what is broken and why (the whole mesh, gathered from every agent)",
            p.listen
        );
        outln!(
            "  {} diagnose --agent http://{}   the same, in the terminal",
            st.exe.display(),
            p.listen
        );
        let last = topo.node(topo.nodes);
        outln!(
            "  {} probe {} --http {WEB_PORT}/healthz --agent http://{}   is {}'s target reachable from every node, and if not, why?",
            st.exe.display(),
            SocketAddr::new(last.web_ip, WEB_PORT),
            p.listen,
            last.name
        );
    }
    let views: Vec<Topology> = topo.families().iter().map(|f| topo.in_family(*f)).collect();
    let tables: Vec<String> = views
        .iter()
        .map(|t| format!("{} {}", t.nft_family(), t.service_table()))
        .collect();
    outln!(
        "\nServices (kube-proxy's nftables-mode rules on every node, table {}; all in {}):",
        tables.join(" and "),
        state::state_dir(&topo.prefix)
            .join("services.json")
            .display()
    );
    // One line per family and Service (a dual lab: IPv4's, then IPv6's).
    for t in &views {
        outln!(
            "  kube-dns       {:<24} udp+tcp -> the DNS pod {} on node-1 ({}), zone {}",
            SocketAddr::new(t.dns_vip(), DNS_PORT).to_string(),
            t.dns_pod_ip(),
            topo.dns_ns(),
            services::ZONE
        );
        outln!(
            "  meshprobe-vip  {:<24} tcp     -> every agent pod, drawn at random",
            SocketAddr::new(t.agents_vip(), AGENT_PORT).to_string()
        );
        outln!(
            "  kubernetes     {:<24} tcp     -> the API server stand-in {} (TLS /readyz for {}, CA {})",
            SocketAddr::new(t.apiserver_vip(), crate::apiserver::VIP_PORT).to_string(),
            t.apiserver_endpoint(),
            crate::apiserver::SERVER_NAME,
            crate::apiserver::CA_FILE
        );
    }
    outln!(
        "  names: {} (every agent pod), {}, {}, node-N.nodes.{}",
        services::AGENTS_NAME,
        services::AGENTS_VIP_NAME,
        services::DNS_NAME,
        services::ZONE
    );
    let nodes = topo.nodes;
    let other_zone = (2..=nodes)
        .find(|&i| topo.zone_of(i) != 1)
        .unwrap_or(nodes.min(2));
    let same_zone = (2..=nodes)
        .find(|&i| topo.zone_of(i) == 1)
        .unwrap_or(nodes.min(2));
    outln!("\nBreak something (from another terminal, as root), watch the results, then clear:");
    let last = format!("node-{nodes}");
    let mut examples = vec![
        format!("fault route node-1 node-{same_zone}"),
        format!("fault node-down {last}"),
        format!("fault cni {last}"),
        format!("fault policy web-node-{other_zone}"),
        format!("fault reject web-node-{other_zone}"),
        format!("fault loss node-{other_zone} 30"),
        format!("fault mtu node-{other_zone} 1400"),
        format!("fault pmtu-blackhole node-{other_zone} 1400"),
    ];
    if topo.zones >= 2 {
        examples.push("fault partition zone-a zone-b".into());
    }
    examples.extend([
        format!("fault kube-proxy node-{other_zone}"),
        format!("fault kube-proxy node-{other_zone} stale"),
        "fault dns-down".to_string(),
        format!("fault dns-from {last}"),
        format!("fault conntrack node-{other_zone}"),
    ]);
    examples.extend(["status".to_string(), "clear".to_string()]);
    for e in examples {
        outln!("  {cmd} {e}");
    }
    outln!(
        "\nCtrl-C here tears the lab down (or: {cmd} down). Logs and state: {}\n",
        state::state_dir(&topo.prefix).display()
    );
}
