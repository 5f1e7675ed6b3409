//! `meshprobe probe TARGET`: ask one agent to probe a target from every agent now.
//!
//! Argument handling is pure ([`request_of`]); [`run`] sends the request, prints one progress
//! line per source node as its answer arrives, then the table (source × check) and the verdict
//! with evidence and next steps — or, with `-o json`, one JSON document. Exit status: 0
//! reachable from every source, 1 not, 2 on error (bad arguments, agent unreachable, refused).

use std::fmt::Write as _;

use clap::ValueEnum;

use crate::error::{Error, Result};
use crate::gather::parse_agent_addr;
use crate::ondemand::request::{
    body, parse_dns_server, parse_target, CheckSpec, TargetSpec, DNS_PREFIX, MAX_ICMP_COUNT,
};
use crate::ondemand::{client, Accepted, CheckOutcome, Line, SourceLine, Verdict};
use meshprobe_core::model::IpFamilies;
use meshprobe_core::parse::parse_duration;

#[derive(Debug, Clone, clap::Args)]
pub struct ProbeArgs {
    /// What to probe: IP, IP:PORT, a node name, pod/NAMESPACE/NAME (with --kube),
    /// svc/NAMESPACE/NAME (a Service's ClusterIP), or `dns NAME` (every source resolves NAME).
    pub target: String,
    /// With `dns`: the name to resolve.
    pub name: Option<String>,
    /// With `dns`: ask this server (IP or IP:PORT) instead of each source's own resolver.
    #[arg(long)]
    pub server: Option<String>,
    /// The agent to ask.
    #[arg(long, env = "MESHPROBE_AGENT", default_value = "http://127.0.0.1:9464")]
    pub agent: String,
    /// ICMP echoes per source (default 3; 0: no ICMP; ICMP lets the verdict tell the network
    /// from the service).
    #[arg(long)]
    pub icmp: Option<u16>,
    /// TCP connect to this port.
    #[arg(long)]
    pub tcp: Option<u16>,
    /// HTTP GET: PORT/PATH, e.g. 8080/healthz (PORT alone: path /).
    #[arg(long)]
    pub http: Option<String>,
    /// Path-MTU search with Don't-Fragment probes (at most 10 s per source: ok, mismatch,
    /// blackhole with the largest size that passed, loss or unknown).
    #[arg(long)]
    pub mtu: bool,
    /// Source nodes, comma-separated (default: every node).
    #[arg(long, value_delimiter = ',')]
    pub from: Vec<String>,
    /// Output: text for people, json for machines.
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    pub output: Output,
    /// Bearer token, when the agents require one.
    #[arg(long, env = "MESHPROBE_PROBE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Resolve pod/NAMESPACE/NAME targets through the Kubernetes API.
    #[arg(long)]
    pub kube: bool,
    /// Longest wait for the whole answer.
    #[arg(long, default_value = "60s")]
    pub timeout: String,
    /// Address families to probe a dual-stack target at: ipv4, ipv6, dual (both; refused
    /// when the target lacks one) or auto (default: every family the target has; a bare IP
    /// is one family).
    #[arg(long = "ip-family")]
    pub ip_family: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// The request body the arguments mean, or what is wrong with them.
pub fn request_of(a: &ProbeArgs) -> std::result::Result<serde_json::Value, String> {
    let from = (!a.from.is_empty()).then_some(a.from.as_slice());
    let family = match &a.ip_family {
        Some(w) => Some(IpFamilies::parse(w).map_err(|e| format!("--ip-family {e}"))?),
        None => None,
    };
    if a.target.trim() == "dns" {
        if family.is_some() {
            return Err("dns NAME: --ip-family does not apply (a name is resolved, not probed at an address)".into());
        }
        return dns_request_of(a, from);
    }
    let mut b = address_request_of(a, from)?;
    if let Some(f) = family.filter(|f| *f != IpFamilies::Auto) {
        b["family"] = serde_json::json!(f.as_str());
    }
    Ok(b)
}

/// The request of an address, node, pod or Service target (its family added by the caller).
fn address_request_of(
    a: &ProbeArgs,
    from: Option<&[String]>,
) -> std::result::Result<serde_json::Value, String> {
    if let Some(n) = &a.name {
        return Err(format!(
            "{n:?}: one target only (a second argument follows only `dns`, as in `probe dns NAME`)"
        ));
    }
    if a.server.is_some() {
        return Err("--server: only with `probe dns NAME`".into());
    }
    match parse_target(&a.target)? {
        TargetSpec::Pod { .. } if !a.kube => {
            return Err(format!(
                "target {:?}: pod targets are resolved through the Kubernetes API: add --kube",
                a.target
            ))
        }
        // The agent resolves it (an agent running --discovery kubernetes).
        TargetSpec::Pod { .. } => {}
        TargetSpec::Service { .. } => return service_request_of(a, from),
        _ => {}
    }
    let icmp = a.icmp.unwrap_or(3);
    if icmp > MAX_ICMP_COUNT {
        return Err(format!("--icmp {icmp}: at most {MAX_ICMP_COUNT}"));
    }
    let mut checks = Vec::new();
    if icmp > 0 {
        checks.push(CheckSpec::Icmp {
            count: icmp,
            size: 56,
        });
    }
    if let Some(port) = a.tcp {
        if port == 0 {
            return Err("--tcp 0: port must be 1-65535".into());
        }
        checks.push(CheckSpec::Tcp { port });
    }
    if let Some(h) = &a.http {
        checks.push(http_check(h)?);
    }
    if a.mtu {
        checks.push(CheckSpec::Mtu);
    }
    if checks.is_empty() {
        return Err("no checks: --icmp 0 and no --tcp, --http or --mtu".into());
    }
    Ok(body(a.target.trim(), &checks, from, None))
}

/// `probe svc/NAMESPACE/NAME [--tcp PORT] [--http PORT/PATH]`: the agents look the Service up
/// (its ClusterIP; by default a TCP connect to its first TCP port).
fn service_request_of(
    a: &ProbeArgs,
    from: Option<&[String]>,
) -> std::result::Result<serde_json::Value, String> {
    if a.icmp.is_some_and(|n| n > 0) || a.mtu {
        return Err(format!(
            "{}: --icmp and --mtu do not apply (a ClusterIP answers no ICMP); --tcp PORT or --http PORT/PATH",
            a.target.trim()
        ));
    }
    let mut checks = Vec::new();
    if let Some(port) = a.tcp {
        if port == 0 {
            return Err("--tcp 0: port must be 1-65535".into());
        }
        checks.push(CheckSpec::Tcp { port });
    }
    if let Some(h) = &a.http {
        checks.push(http_check(h)?);
    }
    let mut b = body(a.target.trim(), &checks, from, None);
    if checks.is_empty() {
        // The agent's default: TCP to the Service's first TCP port.
        if let Some(o) = b.as_object_mut() {
            o.remove("checks");
        }
    }
    Ok(b)
}

/// `--http PORT/PATH` (PORT alone: path /).
fn http_check(h: &str) -> std::result::Result<CheckSpec, String> {
    let (port, path) = match h.split_once('/') {
        Some((p, rest)) => (p, format!("/{rest}")),
        None => (h, "/".to_string()),
    };
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("--http {h:?}: expected PORT/PATH, e.g. 8080/healthz"))?;
    Ok(CheckSpec::Http { port, path })
}

/// `probe dns NAME [--server IP[:PORT]]`: one `dns` check, the name in the target.
fn dns_request_of(
    a: &ProbeArgs,
    from: Option<&[String]>,
) -> std::result::Result<serde_json::Value, String> {
    let name = a
        .name
        .as_deref()
        .ok_or("dns: the name to resolve is missing, e.g. `probe dns kubernetes.default.svc.cluster.local`")?;
    if a.icmp.is_some() || a.tcp.is_some() || a.http.is_some() || a.mtu || a.kube {
        return Err("dns NAME: --icmp, --tcp, --http, --mtu and --kube do not apply (one DNS query from each source)".into());
    }
    let target = format!("{DNS_PREFIX}{name}");
    // Checked here for a clear message; the agent checks it again.
    parse_target(&target)?;
    let server = match &a.server {
        Some(s) => Some(parse_dns_server(s).map_err(|e| format!("--server {e}"))?),
        None => None,
    };
    let checks = [CheckSpec::Dns {
        name: String::new(),
        server,
    }];
    Ok(body(&target, &checks, from, None))
}

/// Everything the agent answered.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Answer {
    pub accepted: Option<Accepted>,
    pub sources: Vec<SourceLine>,
    pub verdict: Option<Verdict>,
}

pub async fn run(args: ProbeArgs) -> Result<u8> {
    let req = request_of(&args).map_err(Error::Config)?;
    let addr = parse_agent_addr(&args.agent).map_err(Error::Config)?;
    let timeout = parse_duration(&args.timeout)
        .map_err(|e| Error::Config(format!("--timeout {:?}: {e}", args.timeout)))?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut headers = Vec::new();
    if let Some(t) = &args.token {
        headers.push(("authorization", format!("Bearer {t}")));
    }
    let mut a = client::post(
        addr,
        "/api/v1/probe",
        &headers,
        req.to_string().into_bytes(),
        deadline,
    )
    .await
    .map_err(|e| Error::NoAnswer(format!("agent {addr}: {e}")))?;
    if a.status != 200 {
        let text = a.text(64 * 1024).await.unwrap_or_default();
        let why = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| text.trim().chars().take(300).collect());
        return Err(Error::NoAnswer(format!(
            "agent {addr} refused the probe (HTTP {}): {why}",
            a.status
        )));
    }
    let json = args.output == Output::Json;
    let mut answer = Answer::default();
    loop {
        let line = a
            .next_line()
            .await
            .map_err(|e| Error::NoAnswer(format!("agent {addr}: {e}")))?;
        let Some(line) = line else { break };
        let parsed: Line = serde_json::from_str(&line).map_err(|e| {
            Error::NoAnswer(format!(
                "agent {addr}: unexpected answer line ({e}): {line:.200}"
            ))
        })?;
        match parsed {
            Line::Accepted(acc) => {
                let msg = accepted_text(&acc);
                if json {
                    eprintln!("{msg}");
                } else {
                    println!("{msg}");
                }
                answer.accepted = Some(acc);
            }
            Line::Source(s) => {
                let msg = progress(&s);
                if json {
                    eprintln!("{msg}");
                } else {
                    println!("{msg}");
                }
                answer.sources.push(s);
            }
            Line::Verdict(v) => answer.verdict = Some(v),
        }
    }
    // The table in the order the sources were listed, whatever order they answered in.
    if let Some(acc) = &answer.accepted {
        let order = &acc.sources;
        answer
            .sources
            .sort_by_key(|s| order.iter().position(|n| *n == s.node));
    }
    let Some(v) = &answer.verdict else {
        return Err(Error::NoAnswer(format!(
            "agent {addr}: the answer ended before the verdict"
        )));
    };
    let code = if v.reachable { 0 } else { 1 };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&answer).map_err(|e| Error::Config(e.to_string()))?
        );
    } else {
        print!("\n{}\n{}", table(&answer.sources), verdict_text(v));
    }
    Ok(code)
}

fn check_label(c: &CheckSpec) -> String {
    match c {
        CheckSpec::Icmp { count, .. } => format!("icmp ×{count}"),
        CheckSpec::Tcp { port } => format!("tcp :{port}"),
        CheckSpec::Http { port, path } => format!("http :{port}{path}"),
        CheckSpec::Mtu => "path MTU".into(),
        CheckSpec::Dns { server: None, .. } => "dns (its resolver)".into(),
        CheckSpec::Dns {
            server: Some(s), ..
        } => format!("dns @{s}"),
    }
}

pub fn accepted_text(a: &Accepted) -> String {
    let checks: Vec<String> = a.checks.iter().map(check_label).collect();
    if let Some(name) = a.target.label.strip_prefix(DNS_PREFIX) {
        return format!(
            "resolving {name} from {} node(s): {}; answers within {:.0}s",
            a.sources.len(),
            checks.join(", "),
            a.deadline_seconds.ceil()
        );
    }
    format!(
        "probing {} ({}{}) from {} node(s): {}; answers within {:.0}s",
        a.target.label,
        a.target
            .addrs()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        a.target
            .node
            .as_ref()
            .map_or(String::new(), |n| format!(", on {n}")),
        a.sources.len(),
        checks.join(", "),
        a.deadline_seconds.ceil()
    )
}

fn ms(s: Option<f64>) -> String {
    s.map_or("-".into(), |v| format!("{:.2} ms", v * 1000.0))
}

/// One line per source as it answers.
pub fn progress(s: &SourceLine) -> String {
    if !s.answered {
        return format!(
            "  {:<12} NO ANSWER  {}",
            s.node,
            s.error.as_deref().unwrap_or("")
        );
    }
    let failed: Vec<String> = s
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| {
            format!(
                "{}{}: {}",
                c.check,
                fam_suffix(c),
                c.error_text.as_deref().unwrap_or("failed")
            )
        })
        .collect();
    if failed.is_empty() {
        format!("  {:<12} ok         ({:.2}s)", s.node, s.elapsed_seconds)
    } else {
        format!("  {:<12} FAIL       {}", s.node, failed.join("; "))
    }
}

/// ` (ipv6)` on an outcome of a target probed at two families; nothing otherwise.
fn fam_suffix(c: &CheckOutcome) -> String {
    c.family
        .as_deref()
        .map_or(String::new(), |f| format!(" ({f})"))
}

fn outcome_label(c: &CheckOutcome) -> String {
    let label = match c.check.as_str() {
        "tcp" | "http" => format!(
            "{} :{}{}",
            c.check,
            c.port.unwrap_or(0),
            c.path.as_deref().unwrap_or("")
        ),
        "icmp" => format!("icmp ×{}", c.sent),
        "dns" => format!(
            "dns {}{}",
            c.record_type.as_deref().unwrap_or("?"),
            c.answers.map_or(String::new(), |n| format!(
                " ({n} answer{})",
                if n == 1 { "" } else { "s" }
            ))
        ),
        other => other.to_string(),
    };
    format!("{label}{}", fam_suffix(c))
}

/// Source node × check: result, RTT, loss, MTU, error.
pub fn table(sources: &[SourceLine]) -> String {
    let mut rows = vec![[
        "SOURCE".to_string(),
        "CHECK".into(),
        "RESULT".into(),
        "RTT".into(),
        "LOSS".into(),
        "MTU".into(),
        "ERROR".into(),
    ]];
    for s in sources {
        if !s.answered {
            rows.push([
                s.node.clone(),
                "-".into(),
                "no answer".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                s.error.clone().unwrap_or_default(),
            ]);
            continue;
        }
        for c in &s.checks {
            rows.push([
                s.node.clone(),
                outcome_label(c),
                if c.ok { "ok" } else { "FAIL" }.into(),
                ms(c.rtt_seconds),
                c.loss_ratio
                    .map_or("-".into(), |l| format!("{:.0}%", l * 100.0)),
                match (c.path_mtu, &c.mtu_state) {
                    (Some(m), Some(st)) => format!("{m} {st}"),
                    (None, Some(st)) => st.clone(),
                    _ => "-".into(),
                },
                c.error_text.clone().unwrap_or_default(),
            ]);
        }
    }
    let mut width = [0usize; 7];
    for r in &rows {
        for (w, cell) in width.iter_mut().zip(r.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i == 6 {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = width[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The verdict with its evidence and next steps.
pub fn verdict_text(v: &Verdict) -> String {
    let mut out = String::new();
    let total = v.reachable_from.len() + v.unreachable_from.len();
    let dns = v.target.label.strip_prefix(DNS_PREFIX);
    if let (Some(name), true) = (dns, v.reachable) {
        let _ = writeln!(
            out,
            "verdict: {name} resolves from every source ({total} of {total})"
        );
    } else if let Some(name) = dns {
        let _ = writeln!(
            out,
            "verdict: {name} does NOT resolve from {} ({} of {total} sources){}",
            v.unreachable_from.join(", "),
            v.unreachable_from.len(),
            if v.reachable_from.is_empty() {
                String::new()
            } else {
                format!("; it resolves from {}", v.reachable_from.join(", "))
            }
        );
        if !v.agents_unreachable.is_empty() {
            let _ = writeln!(
                out,
                "  agents that did not answer (evidence, e.g. node down): {}",
                v.agents_unreachable.join(", ")
            );
        }
    } else if v.reachable {
        let _ = writeln!(
            out,
            "verdict: {} is reachable from every source ({total} of {total})",
            v.target.label
        );
    } else {
        let _ = writeln!(
            out,
            "verdict: {} is NOT reachable from {} ({} of {total} sources)",
            v.target.label,
            v.unreachable_from.join(", "),
            v.unreachable_from.len()
        );
        if !v.agents_unreachable.is_empty() {
            let _ = writeln!(
                out,
                "  agents that did not answer (evidence, e.g. node down): {}",
                v.agents_unreachable.join(", ")
            );
        }
    }
    // Dual-stack: each family's part ("reachable" above is on every family).
    for f in &v.families {
        if f.reachable {
            let _ = writeln!(
                out,
                "  {} ({}): reachable from every source",
                f.family, f.ip
            );
        } else {
            let _ = writeln!(
                out,
                "  {} ({}): NOT reachable from {}",
                f.family,
                f.ip,
                f.unreachable_from.join(", ")
            );
        }
    }
    if let Some(c) = &v.caution {
        let _ = writeln!(out, "  CAUTION: {c}");
    }
    if v.diagnosis.findings.is_empty() {
        if !v.reachable {
            out.push_str(
                "  the diagnosis engine names no single cause for these answers (too few sources fail the same way); see the table\n",
            );
        }
        return out;
    }
    for f in &v.diagnosis.findings {
        let _ = writeln!(
            out,
            "\n[{}] {} (confidence {:.0}%)",
            f.cause,
            f.summary,
            f.confidence * 100.0
        );
        for e in &f.evidence {
            let _ = writeln!(out, "  evidence: {e}");
        }
        for n in &f.next_steps {
            let _ = writeln!(out, "  next: {n}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct P {
        #[command(flatten)]
        a: ProbeArgs,
    }

    fn args(v: &[&str]) -> ProbeArgs {
        P::try_parse_from(std::iter::once("probe").chain(v.iter().copied()))
            .unwrap()
            .a
    }

    #[test]
    fn arguments_to_requests() {
        let r = request_of(&args(&[
            "198.19.3.11:8080",
            "--http",
            "8080/healthz",
            "--from",
            "node-1,node-2",
        ]))
        .unwrap();
        assert_eq!(
            r,
            serde_json::json!({"target": "198.19.3.11:8080", "checks": [
                {"kind": "icmp", "count": 3, "size": 56},
                {"kind": "http", "port": 8080, "path": "/healthz"}],
                "from": ["node-1", "node-2"]})
        );
        let r = request_of(&args(&["node-2", "--icmp", "0", "--tcp", "22", "--mtu"])).unwrap();
        assert_eq!(
            r["checks"],
            serde_json::json!([{"kind": "tcp", "port": 22}, {"kind": "mtu"}])
        );
        assert!(r.get("from").is_none());
        let r = request_of(&args(&["10.0.0.1", "--http", "80"])).unwrap();
        assert_eq!(r["checks"][1]["path"], "/");
        // `dns NAME`: one dns check, the name in the target; --server with port 53 by default.
        let r = request_of(&args(&[
            "dns",
            "Web.Shop.svc.cluster.local",
            "--from",
            "node-2",
        ]))
        .unwrap();
        assert_eq!(
            r,
            serde_json::json!({"target": "dns/Web.Shop.svc.cluster.local",
                "checks": [{"kind": "dns"}], "from": ["node-2"]})
        );
        let r = request_of(&args(&["dns", "web.", "--server", "10.96.0.10"])).unwrap();
        assert_eq!(
            r["checks"],
            serde_json::json!([{"kind": "dns", "server": "10.96.0.10:53"}])
        );
        // A Service: as written, the agents look it up; TCP to its first port by default.
        let r = request_of(&args(&["svc/shop/web"])).unwrap();
        assert_eq!(r, serde_json::json!({"target": "svc/shop/web"}));
        let r = request_of(&args(&["svc/shop/web", "--http", "8080/healthz"])).unwrap();
        assert_eq!(
            r["checks"],
            serde_json::json!([{"kind": "http", "port": 8080, "path": "/healthz"}])
        );
        // --ip-family narrows a dual-stack target; auto (every family it has) is the default.
        let r = request_of(&args(&["pod/shop/web", "--kube", "--ip-family", "ipv6"])).unwrap();
        assert_eq!(r["family"], "ipv6");
        let r = request_of(&args(&["node-2", "--ip-family", "dual"])).unwrap();
        assert_eq!(r["family"], "dual");
        let r = request_of(&args(&["node-2", "--ip-family", "auto"])).unwrap();
        assert!(r.get("family").is_none());
        // A pod target goes to the agent as written; it resolves it.
        let r = request_of(&args(&["pod/default/web", "--kube"])).unwrap();
        assert_eq!(r["target"], "pod/default/web");
        // Errors name the argument.
        let bad: &[(&[&str], &str)] = &[
            (&["pod/default/web"], "add --kube"),
            (&["10.0.0.1", "--icmp", "15"], "--icmp 15: at most 14"),
            (&["10.0.0.1", "--icmp", "0"], "no checks"),
            (
                &["10.0.0.1", "--http", "web/x"],
                "--http \"web/x\": expected PORT/PATH",
            ),
            (&["10.0.0.1", "--tcp", "0"], "--tcp 0"),
            (&["1.2.3"], "not an IP"),
            (&["a b"], "as a node name"),
            (&["dns"], "the name to resolve is missing"),
            (&["dns", "a..b"], "expected a DNS name"),
            (&["dns", "web", "--tcp", "80"], "do not apply"),
            (&["dns", "web", "--icmp", "3"], "do not apply"),
            (
                &["dns", "web", "--server", "dns.local"],
                "--server \"dns.local\" is not IP",
            ),
            (&["10.0.0.1", "web"], "one target only"),
            (&["10.0.0.1", "--server", "10.0.0.2"], "--server: only with"),
            (
                &["svc/shop/web", "--icmp", "3"],
                "a ClusterIP answers no ICMP",
            ),
            (&["svc/shop/web", "--mtu"], "do not apply"),
            (&["svc/shop"], "expected svc/NAMESPACE/NAME"),
            (
                &["node-2", "--ip-family", "both"],
                "--ip-family \"both\": unknown IP family",
            ),
            (
                &["dns", "web", "--ip-family", "ipv6"],
                "--ip-family does not apply",
            ),
        ];
        for (v, want) in bad {
            let e = request_of(&args(v)).unwrap_err();
            assert!(e.contains(want), "{v:?}: {e}");
        }
    }

    #[test]
    fn table_and_verdict_text() {
        use crate::diagnosis::{Diagnosis, ErrorInfo};
        use crate::ondemand::Resolved;
        let ok = CheckOutcome {
            check: "icmp".into(),
            layer: None,
            ip: "198.19.3.11".parse().unwrap(),
            port: None,
            path: None,
            ok: true,
            sent: 3,
            received: 3,
            rtt_seconds: Some(0.000_21),
            loss_ratio: Some(0.0),
            path_mtu: None,
            expected_mtu: None,
            mtu_state: None,
            error: None,
            error_text: None,
            result: None,
            answers: None,
            record_type: None,
            family: None,
        };
        let failed = CheckOutcome {
            check: "http".into(),
            port: Some(8080),
            path: Some("/healthz".into()),
            ok: false,
            sent: 1,
            received: 0,
            rtt_seconds: None,
            loss_ratio: Some(1.0),
            error: Some(ErrorInfo {
                kind: "timeout".into(),
                ..ErrorInfo::default()
            }),
            error_text: Some("timeout".into()),
            ..ok.clone()
        };
        let sources = vec![
            SourceLine {
                node: "node-1".into(),
                zone: None,
                answered: true,
                error: None,
                ok: false,
                elapsed_seconds: 0.5,
                checks: vec![ok, failed],
                context: vec![],
            },
            SourceLine::silent(
                "node-3",
                None,
                "agent at 198.19.3.10:9464 did not answer: timeout".into(),
                3.2,
            ),
        ];
        let t = table(&sources);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "SOURCE  CHECK               RESULT     RTT      LOSS  MTU  ERROR"
        );
        assert_eq!(
            lines[1],
            "node-1  icmp ×3             ok         0.21 ms  0%    -"
        );
        assert_eq!(
            lines[2],
            "node-1  http :8080/healthz  FAIL       -        100%  -    timeout"
        );
        assert!(
            lines[3].starts_with("node-3  -                   no answer"),
            "{t}"
        );
        assert!(progress(&sources[0]).contains("FAIL       http: timeout"));
        assert!(progress(&sources[1]).contains("NO ANSWER"));
        // Two families: each row and failure says which.
        let mut dual = sources[0].clone();
        dual.checks[0].family = Some("ipv4".into());
        dual.checks[1].family = Some("ipv6".into());
        let t = table(std::slice::from_ref(&dual));
        assert!(t.contains("node-1  icmp ×3 (ipv4)  "), "{t}");
        assert!(t.contains("node-1  http :8080/healthz (ipv6)  FAIL"), "{t}");
        assert!(progress(&dual).contains("FAIL       http (ipv6): timeout"));
        let v = Verdict {
            target: Resolved {
                label: "198.19.3.11:8080".into(),
                ip: "198.19.3.11".parse().unwrap(),
                ips: Vec::new(),
                port: Some(8080),
                node: Some("node-3".into()),
            },
            reachable: false,
            reachable_from: vec![],
            unreachable_from: vec!["node-1".into(), "node-3".into()],
            agents_unreachable: vec!["node-3".into()],
            caution: None,
            families: Vec::new(),
            diagnosis: Diagnosis::new(vec![]),
        };
        let text = verdict_text(&v);
        assert!(
            text.starts_with(
                "verdict: 198.19.3.11:8080 is NOT reachable from node-1, node-3 (2 of 2 sources)"
            ),
            "{text}"
        );
        assert!(text.contains("did not answer (evidence, e.g. node down): node-3"));
        assert!(text.contains("names no single cause"));
    }
}
