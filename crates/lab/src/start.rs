//! Starting the lab's contents: the network, the peers file, and each node's target and agent
//! process, recorded in the state as soon as it runs.

use meshprobe_core::error::{Error, Result};

use crate::plan::{self, Topology, AGENT_PORT, WEB_PORT};
use crate::state::{self, Proc, State};
use crate::{run, UpArgs};

/// Build the network, write the peers file, start targets and agents (recorded in `st`).
pub(crate) async fn build(
    topo: &Topology,
    a: &UpArgs,
    exe: &std::path::Path,
    st: &mut State,
) -> Result<()> {
    run::run_all(&topo.up_cmds()).await?;
    let dir = state::state_dir(&topo.prefix);
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let peers = dir.join("peers.json");
    let body = serde_json::to_vec_pretty(&plan::peers_file(topo))
        .map_err(|e| Error::Lab(format!("peers file: {e}")))?;
    std::fs::write(&peers, body)?;
    // Where the Services and the DNS server are, for users and later tools (the peers file's
    // schema is the agents' and stays as it is).
    let services = serde_json::to_vec_pretty(&plan::services::services_file(topo))
        .map_err(|e| Error::Lab(format!("services file: {e}")))?;
    std::fs::write(dir.join("services.json"), services)?;
    crate::dns::serve(topo).await?;
    let ca = dir.join(crate::apiserver::CA_FILE);
    crate::apiserver::serve(topo, &ca)?;

    let exe_s = exe.display().to_string();
    for n in topo.all_nodes() {
        let listen = listen_on(topo, n.web_ip, WEB_PORT);
        let args = ["serve", "--listen", &listen, "--name", &n.web_name];
        start(st, &n.web_ns, &exe_s, &args, &logs, "web", &n.name, false)?;
    }
    let mut checks = topo.agent_check_args();
    checks.extend(["--apiserver-ca".to_string(), ca.display().to_string()]);
    for n in topo.all_nodes() {
        let listen = listen_on(topo, n.probe_ip, AGENT_PORT);
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
        args.extend(checks.iter().map(String::as_str));
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

/// Where a pod's server listens: its address (`[ip]:port` for IPv6: a bare `ip:port` would read
/// as another IPv6 address), or `[::]:port` in a dual-stack lab, one socket for both families
/// (IPV6_V6ONLY off: `meshprobe agent` sets it so, `serve` has the namespace's default, 0).
fn listen_on(topo: &Topology, ip: std::net::IpAddr, port: u16) -> String {
    match topo.family {
        plan::IpFamily::Dual => format!("[::]:{port}"),
        plan::IpFamily::Ipv4 | plan::IpFamily::Ipv6 => {
            std::net::SocketAddr::new(ip, port).to_string()
        }
    }
}

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
