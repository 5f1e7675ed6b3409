//! `meshprobe lab`: a multi-node cluster network built from network namespaces.
//!
//! * [`plan`]: the topology, address plan and the commands that build and remove it (pure).
//! * [`fault`]: fault parsing and the commands that apply and undo each fault (pure).
//! * [`run`]: the thin runner executing commands (timeouts, errors naming the command).
//! * [`state`]: the state directory shared by `up`, `fault`, `clear`, `status` and `down`.
//! * [`netns`]: sockets inside the lab's namespaces, for the live view's proxies and `status`.
//! * [`summary`]: a short reachability summary of an agent's `/api/v1/results` (pure).

pub mod fault;
pub mod netns;
pub mod plan;
pub mod run;
pub mod state;
pub mod summary;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Subcommand;

/// `println!` into a String.
macro_rules! outln {
    ($o:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($o, $($arg)*);
    }};
}

use fault::Fault;
use meshprobe_core::error::{Error, Result};
use plan::{Topology, AGENT_PORT, WEB_PORT};
use state::{Proc, Proxy, State};

#[derive(Debug, clap::Args)]
#[command(
    about = "Build a multi-node network from namespaces on this machine, run agents in it, inject faults",
    long_about = "Build a Kubernetes-like network out of network namespaces on this machine (nodes in \
zones joined by a router, a probe pod running `meshprobe agent` and a target pod running \
`meshprobe serve` on every node), serve each agent's page on 127.0.0.1, and inject faults. \
Without a subcommand: `lab up`. Needs root."
)]
pub struct LabArgs {
    /// Namespace name prefix: the lab's namespaces are PREFIX-fabric, PREFIX-router, PREFIX-nI,
    /// PREFIX-nI-probe, PREFIX-nI-web; its state lives in /run/meshprobe-lab/PREFIX.
    #[arg(long, global = true, default_value = "mp")]
    pub prefix: String,
    #[command(subcommand)]
    pub command: Option<LabCommand>,
    #[command(flatten)]
    pub up: Box<UpArgs>,
}

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Build the lab, start agents and targets, serve the live view; Ctrl-C tears it all down.
    Up(Box<UpArgs>),
    /// Inject a fault: KIND ARGS… (without KIND: list the kinds).
    Fault {
        kind: Option<String>,
        args: Vec<String>,
    },
    /// Undo every active fault (or just the one named) and flush cached path MTUs.
    Clear {
        kind: Option<String>,
        args: Vec<String>,
    },
    /// Topology, processes, active faults and each agent's readiness and reachability.
    Status {
        /// Print JSON (state, namespaces, processes, each agent's /api/v1/results).
        #[arg(long)]
        json: bool,
    },
    /// Remove everything the lab made (also after a crash or kill -9 of `lab up`).
    Down,
}

#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 4)]
    pub nodes: u16,
    /// Number of zones (nodes are spread round-robin).
    #[arg(long, default_value_t = 2)]
    pub zones: u16,
    /// Agents' probe interval.
    #[arg(long, default_value = "2s")]
    pub interval: String,
    /// Agents' per-probe timeout.
    #[arg(long, default_value = "1s")]
    pub timeout: String,
    /// Agents' statistics window.
    #[arg(long, default_value = "30s")]
    pub window: String,
    /// Agents' ICMP echoes per probe (agent default when unset).
    #[arg(long)]
    pub icmp_count: Option<u16>,
    /// Agents' `--full-mesh-max`: above this many nodes they probe a sampled plan (agent
    /// default when unset), e.g. `--nodes 12 --full-mesh-max 8` to watch the plan at work.
    #[arg(long)]
    pub full_mesh_max: Option<u32>,
    /// Agents' path-MTU check interval (`0s`: off); shorter than the agent's 30 s default so
    /// MTU faults show within seconds.
    #[arg(long, default_value = "10s")]
    pub mtu_interval: String,
    /// Live view: node I's agent is served on 127.0.0.1:(PORT_BASE + I - 1); 0 picks free ports.
    #[arg(long, default_value_t = AGENT_PORT)]
    pub port_base: u16,
    /// The meshprobe binary to run in the pods [default: this executable].
    #[arg(long)]
    pub exe: Option<PathBuf>,
    /// Run the agents without CAP_NET_RAW, as `deploy/components/restricted` does: ICMP
    /// datagram sockets for echoes and path-MTU discovery (routers' errors from the error queue).
    #[arg(long)]
    pub unprivileged: bool,
}

pub async fn run(args: LabArgs) -> Result<u8> {
    plan::validate_prefix(&args.prefix).map_err(Error::Config)?;
    if !state::is_root() {
        return Err(Error::Privilege(
            "meshprobe lab needs root (it creates network namespaces, links and nftables rules); \
             run it with sudo"
                .into(),
        ));
    }
    let prefix = args.prefix.clone();
    match args.command {
        None => up(&prefix, *args.up).await,
        Some(LabCommand::Up(up_args)) => up(&prefix, *up_args).await,
        Some(LabCommand::Fault { kind: None, .. }) => {
            println!("Fault kinds (meshprobe lab fault KIND ARGS…):");
            for (k, a, what) in fault::KINDS {
                println!("  {:<34} {what}", format!("{k} {a}"));
            }
            Ok(0)
        }
        Some(LabCommand::Fault {
            kind: Some(kind),
            args,
        }) => inject(&prefix, &kind, &args).await,
        Some(LabCommand::Clear { kind, args }) => clear(&prefix, kind.as_deref(), &args).await,
        Some(LabCommand::Status { json }) => status(&prefix, json).await,
        Some(LabCommand::Down) => down(&prefix).await,
    }
}

/// `meshprobe` as the user should type it for this lab (exe path plus `--prefix` if not default).
fn command_line(exe: &std::path::Path, prefix: &str) -> String {
    let p = if prefix == "mp" {
        String::new()
    } else {
        format!(" --prefix {prefix}")
    };
    format!("{} lab{p}", exe.display())
}

// ---------------------------------------------------------------------------------------------
// up

async fn up(prefix: &str, a: UpArgs) -> Result<u8> {
    let topo = Topology::new(prefix, a.nodes, a.zones).map_err(Error::Config)?;
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
    eprintln!(
        "meshprobe lab {prefix:?}: building {} nodes in {} zones…",
        topo.nodes, topo.zones
    );
    let built = build(&topo, &a, &exe, &mut st).await;
    if let Err(e) = built {
        eprintln!("meshprobe lab: build failed, removing what was made: {e}");
        let _ = remove_everything(prefix, Some(&st), Some(me)).await;
        return Err(e);
    }
    let build_time = t0.elapsed();

    // Live view proxies.
    for (n, l) in listeners {
        let target = SocketAddr::V4(SocketAddrV4::new(n.probe_ip, AGENT_PORT));
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
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut reported = std::collections::HashSet::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = hup.recv() => break,
            _ = tick.tick() => {
                for p in &st.processes {
                    if !state::is_alive(p) && reported.insert(p.pid) {
                        eprintln!(
                            "meshprobe lab: {} on {} (pid {}) exited; see {}",
                            p.role, p.node, p.pid,
                            p.log.as_deref().map(|l| l.display().to_string()).unwrap_or_default()
                        );
                    }
                }
            }
        }
    }
    eprintln!("meshprobe lab {prefix:?}: tearing down…");
    let t1 = Instant::now();
    remove_everything(prefix, Some(&st), Some(me)).await?;
    eprintln!(
        "meshprobe lab {prefix:?}: removed (in {:.1}s)",
        t1.elapsed().as_secs_f64()
    );
    Ok(0)
}

/// Build the network, write the peers file, start targets and agents (recorded in `st`).
/// Start one of the lab's processes in namespace `ns`, logging to `<logs>/<node>-<role>.log`,
/// and record it in the state at once (so `down` finds it even if the next start fails).
#[allow(clippy::too_many_arguments)]
fn start(
    st: &mut State,
    ns: &str,
    exe: &str,
    args: &[&str],
    logs: &std::path::Path,
    role: &str,
    node: &str,
    without_net_raw: bool,
) -> Result<()> {
    let p = spawn_in(
        ns,
        exe,
        args,
        &logs.join(format!("{node}-{role}.log")),
        without_net_raw,
    )?;
    st.processes.push(Proc {
        role: role.into(),
        node: node.to_string(),
        ..p
    });
    st.save()?;
    Ok(())
}

async fn build(topo: &Topology, a: &UpArgs, exe: &std::path::Path, st: &mut State) -> Result<()> {
    run::run_all(&topo.up_cmds()).await?;
    let dir = state::state_dir(&topo.prefix);
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let peers = dir.join("peers.json");
    let body = serde_json::to_vec_pretty(&plan::peers_file(topo))
        .map_err(|e| Error::Lab(format!("peers file: {e}")))?;
    std::fs::write(&peers, body)?;

    let exe_s = exe.display().to_string();
    for n in topo.all_nodes() {
        let listen = format!("{}:{WEB_PORT}", n.web_ip);
        let args = ["serve", "--listen", &listen, "--name", &n.web_name];
        start(st, &n.web_ns, &exe_s, &args, &logs, "web", &n.name, false)?;
    }
    for n in topo.all_nodes() {
        let listen = format!("{}:{AGENT_PORT}", n.probe_ip);
        let peers_s = peers.display().to_string();
        let mut args = vec![
            "agent",
            "--node-name",
            &n.name,
            "--zone",
            &n.zone_name,
            "--listen",
            &listen,
            "--peers-file",
            &peers_s,
            "--interval",
            &a.interval,
            "--timeout",
            &a.timeout,
            "--window",
            &a.window,
            "--mtu-interval",
            &a.mtu_interval,
        ];
        let count = a.icmp_count.map(|c| c.to_string());
        if let Some(c) = &count {
            args.extend(["--icmp-count", c.as_str()]);
        }
        let fmm = a.full_mesh_max.map(|m| m.to_string());
        if let Some(m) = &fmm {
            args.extend(["--full-mesh-max", m.as_str()]);
        }
        start(
            st,
            &n.probe_ns,
            &exe_s,
            &args,
            &logs,
            "agent",
            &n.name,
            a.unprivileged,
        )?;
    }
    Ok(())
}

/// Start `ip netns exec NS exe args…` in its own process group, output appended to `log`.
/// `without_net_raw`: CAP_NET_RAW leaves the child's capability bounding set before it execs,
/// so neither `ip` nor the program it runs can ever hold it (root included).
fn spawn_in(
    ns: &str,
    exe: &str,
    args: &[&str],
    log: &std::path::Path,
    without_net_raw: bool,
) -> Result<Proc> {
    let out = std::fs::File::options()
        .create(true)
        .append(true)
        .open(log)?;
    let err = out.try_clone()?;
    let mut cmd = tokio::process::Command::new("ip");
    cmd.args(["netns", "exec", ns, exe])
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    if without_net_raw {
        // SAFETY: runs in the forked child before exec; prctl is a plain system call
        // (async-signal-safe), and nothing is allocated or locked.
        unsafe {
            cmd.pre_exec(|| {
                const CAP_NET_RAW: libc::c_ulong = 13;
                if libc::prctl(libc::PR_CAPBSET_DROP, CAP_NET_RAW, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let child = cmd
        .spawn()
        .map_err(|e| Error::Lab(format!("start {exe} {} in {ns}: {e}", args.join(" "))))?;
    let pid = child
        .id()
        .ok_or_else(|| Error::Lab(format!("{exe} in {ns} exited at once")))?;
    // `ip netns exec` execs the program in place: the PID is the program's. Tokio reaps it.
    drop(child);
    Ok(Proc {
        role: String::new(),
        node: String::new(),
        ns: ns.to_string(),
        pid,
        start_time: state::process_start_time(pid),
        log: Some(log.to_path_buf()),
    })
}

/// The 127.0.0.1 → agent proxy: each connection gets a socket made inside the probe pod's
/// namespace. At most 64 connections at once; each one lasts at most 10 minutes.
async fn serve_proxy(listener: tokio::net::TcpListener, ns: String, target: SocketAddr) {
    let limit = Arc::new(tokio::sync::Semaphore::new(64));
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            continue; // over the limit: drop the connection
        };
        let ns = ns.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match netns::connect_in(&ns, target, Duration::from_secs(2)).await {
                Ok(mut upstream) => {
                    let _ = tokio::time::timeout(
                        Duration::from_secs(600),
                        tokio::io::copy_bidirectional(&mut conn, &mut upstream),
                    )
                    .await;
                }
                Err(e) => {
                    use tokio::io::AsyncWriteExt;
                    let body =
                        format!("meshprobe lab: cannot reach the agent at {target} in {ns}: {e}\n");
                    let _ = conn
                        .write_all(
                            format!(
                                "HTTP/1.0 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                                body.len()
                            )
                            .as_bytes(),
                        )
                        .await;
                }
            }
        });
    }
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
        let addr = SocketAddr::V4(SocketAddrV4::new(n.probe_ip, AGENT_PORT));
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
    println!(
        "\nmeshprobe lab {:?} is up: {} nodes in {} zones (network built in {:.1}s, agents checked after {:.1}s).\n",
        topo.prefix,
        topo.nodes,
        topo.zones,
        build.as_secs_f64(),
        total.as_secs_f64()
    );
    println!(
        "  {:<7} {:<7} {:<13} {:<15} {:<20} {:<20} {:<28} agent",
        "node", "zone", "node IP", "pod subnet", "agent pod", "target pod", "live view"
    );
    for n in topo.all_nodes() {
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
        println!(
            "  {:<7} {:<7} {:<13} {:<15} {:<20} {:<20} {:<28} {r}",
            n.name,
            n.zone_name,
            n.node_ip.to_string(),
            n.pod_subnet,
            format!("{}:{AGENT_PORT}", n.probe_ip),
            format!("{}:{WEB_PORT}", n.web_ip),
            view
        );
    }
    if let Some(p) = st.proxies.first() {
        println!("\nLook (node-1's agent):");
        println!("  http://{}/                  its page", p.listen);
        println!("  http://{}/metrics           Prometheus metrics", p.listen);
        println!(
            "  http://{}/api/v1/results    what it sees, as JSON",
            p.listen
        );
        println!(
            "  http://{}/api/v1/diagnosis  what is broken and why (the whole mesh, gathered from every agent)",
            p.listen
        );
        println!(
            "  {} diagnose --agent http://{}   the same, in the terminal",
            st.exe.display(),
            p.listen
        );
        let last = topo.node(topo.nodes);
        println!(
            "  {} probe {}:{WEB_PORT} --http {WEB_PORT}/healthz --agent http://{}   is {}'s target reachable from every node, and if not, why?",
            st.exe.display(),
            last.web_ip,
            p.listen,
            last.name
        );
    }
    let nodes = topo.nodes;
    let other_zone = (2..=nodes)
        .find(|&i| topo.zone_of(i) != 1)
        .unwrap_or(nodes.min(2));
    let same_zone = (2..=nodes)
        .find(|&i| topo.zone_of(i) == 1)
        .unwrap_or(nodes.min(2));
    println!("\nBreak something (from another terminal, as root), watch the results, then clear:");
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
    examples.extend(["status".to_string(), "clear".to_string()]);
    for e in examples {
        println!("  {cmd} {e}");
    }
    println!(
        "\nCtrl-C here tears the lab down (or: {cmd} down). Logs and state: {}\n",
        state::state_dir(&topo.prefix).display()
    );
}

// ---------------------------------------------------------------------------------------------
// fault, clear

async fn inject(prefix: &str, kind: &str, args: &[String]) -> Result<u8> {
    State::require(prefix)?; // before locking: the lock file lives in the state dir
    let _lock = state::lock(prefix)?;
    let mut st = State::require(prefix)?;
    let topo = st.topology.clone();
    let f = Fault::parse(&topo, kind, args).map_err(Error::Config)?;
    for words in &st.faults {
        if let Ok(active) = Fault::parse(&topo, &words[0], &words[1..]) {
            if active.slot() == f.slot() {
                return Err(Error::Config(format!(
                    "{active} is already active; `{} clear {active}` first",
                    command_line(&st.exe, prefix)
                )));
            }
        }
    }
    if let Err(e) = run::run_all(&f.apply_cmds(&topo)).await {
        for c in f.clear_cmds(&topo) {
            let _ = run::run(&c.tolerant()).await;
        }
        return Err(e);
    }
    st.faults.push(f.words());
    st.save()?;
    let what = fault::KINDS
        .iter()
        .find(|k| k.0 == kind)
        .map(|k| k.2)
        .unwrap_or("");
    println!("fault injected: {f} ({what})");
    println!("undo it: {} clear", command_line(&st.exe, prefix));
    Ok(0)
}

async fn clear(prefix: &str, kind: Option<&str>, args: &[String]) -> Result<u8> {
    State::require(prefix)?;
    let _lock = state::lock(prefix)?;
    let mut st = State::require(prefix)?;
    let topo = st.topology.clone();
    let active: Vec<Fault> = st
        .faults
        .iter()
        .filter_map(|w| Fault::parse(&topo, &w[0], &w[1..]).ok())
        .collect();
    let chosen: Vec<Fault> = match kind {
        None => active.iter().rev().cloned().collect(),
        Some(kind) => {
            let f = Fault::parse(&topo, kind, args).map_err(Error::Config)?;
            match active.iter().find(|a| a.slot() == f.slot()) {
                Some(a) => vec![a.clone()],
                None => {
                    return Err(Error::Config(format!(
                        "{f} is not active (active: {})",
                        if active.is_empty() {
                            "none".to_string()
                        } else {
                            active
                                .iter()
                                .map(|a| a.to_string())
                                .collect::<Vec<_>>()
                                .join("; ")
                        }
                    )))
                }
            }
        }
    };
    let mut errors = Vec::new();
    for f in &chosen {
        match run::run_all(&f.clear_cmds(&topo)).await {
            Ok(()) => {
                println!("cleared: {f}");
                st.faults.retain(|w| *w != f.words());
            }
            Err(e) => errors.push(format!("{f}: {e}")),
        }
    }
    for c in topo.flush_cache_cmds() {
        run::run(&c).await?;
    }
    st.save()?;
    if chosen.is_empty() {
        println!("no active faults; flushed cached path MTUs");
    } else {
        println!("flushed cached path MTUs in every namespace");
    }
    if errors.is_empty() {
        Ok(0)
    } else {
        Err(Error::Lab(format!(
            "could not clear: {}",
            errors.join("; ")
        )))
    }
}

// ---------------------------------------------------------------------------------------------
// status

async fn status(prefix: &str, json: bool) -> Result<u8> {
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
        let addr = SocketAddr::V4(SocketAddrV4::new(n.probe_ip, AGENT_PORT));
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
            n.pod_subnet,
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

// ---------------------------------------------------------------------------------------------
// down

async fn down(prefix: &str) -> Result<u8> {
    let st = State::load(prefix)?;
    let me = std::process::id();
    let before = run::list_namespaces()
        .await?
        .into_iter()
        .filter(|ns| Topology::owns_namespace(prefix, ns))
        .count();
    // A running `lab up` tears down on SIGTERM; give it a moment, then make sure.
    if let Some(lab) = st.as_ref().and_then(|s| s.lab.clone()) {
        if lab.pid != me && state::is_alive(&lab) {
            state::signal(lab.pid, libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(15);
            while state::is_alive(&lab) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if state::is_alive(&lab) {
                state::signal(lab.pid, libc::SIGKILL);
            }
        }
    }
    let removed = remove_everything(prefix, st.as_ref(), Some(me)).await?;
    if before == 0 && removed.processes == 0 && st.is_none() {
        println!("nothing to remove for prefix {prefix:?}");
    } else {
        println!(
            "lab {prefix:?} removed: {before} namespaces, {} stray processes, state {}",
            removed.processes,
            state::state_dir(prefix).display()
        );
    }
    Ok(0)
}

struct Removed {
    processes: usize,
}

/// Kill every process the lab started (recorded PIDs still alive, and whatever runs in its
/// namespaces), delete its namespaces (with every link, route and nftables table in them) and
/// its state directory. Works from the state, and without it from the namespace prefix.
async fn remove_everything(prefix: &str, st: Option<&State>, skip: Option<u32>) -> Result<Removed> {
    if let Some(st) = st {
        let mut s = st.clone();
        s.phase = "stopping".into();
        let _ = s.save();
    }
    let namespaces: Vec<String> = run::list_namespaces()
        .await?
        .into_iter()
        .filter(|ns| Topology::owns_namespace(prefix, ns))
        .collect();
    let mut pids: Vec<u32> = st
        .map(|s| {
            s.processes
                .iter()
                .filter(|p| state::is_alive(p))
                .map(|p| p.pid)
                .collect()
        })
        .unwrap_or_default();
    for ns in &namespaces {
        pids.extend(run::namespace_pids(ns).await);
    }
    pids.sort_unstable();
    pids.dedup();
    pids.retain(|p| Some(*p) != skip && *p > 1);
    let alive = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                !s.rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
            })
            .unwrap_or(false)
    };
    for &p in &pids {
        state::signal(p, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while pids.iter().any(|&p| alive(p)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for &p in pids.iter().filter(|&&p| alive(p)) {
        state::signal(p, libc::SIGKILL);
    }
    run::run_all(&plan::down_cmds(prefix, &namespaces)).await?;
    let left: Vec<String> = run::list_namespaces()
        .await?
        .into_iter()
        .filter(|ns| Topology::owns_namespace(prefix, ns))
        .collect();
    let dir = state::state_dir(prefix);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    if !left.is_empty() {
        return Err(Error::Lab(format!(
            "namespaces still present after `ip netns del`: {}",
            left.join(", ")
        )));
    }
    Ok(Removed {
        processes: pids.len(),
    })
}
