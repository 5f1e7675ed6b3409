//! The image's file capability, end to end (root; needs `setcap` and `setpriv`): the binary
//! gets exactly the capability the Dockerfile's `setcap` line gives it, then runs as the
//! image's user (65532) the way the two shipped pod specs run it:
//!
//! * `deploy/components/raw-sockets` (NET_RAW in the bounding set, privilege escalation allowed): the agent
//!   raises CAP_NET_RAW itself (`caps::raise_net_raw`) and uses raw sockets for echoes and
//!   path-MTU discovery;
//! * `deploy/base` (Pod Security restricted: empty bounding set, no_new_privs): the binary still
//!   executes — a "+ep" file capability would make exec fail with EPERM here — and the agent
//!   uses ICMP datagram sockets for both (the pod's ping_group_range sysctl, set in a network
//!   namespace of its own).

mod support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::sys::{have, is_root, sh, spawn_logged, Netns, EXE};

/// The capability string of the Dockerfile's `setcap CAPS target/release/meshprobe`.
fn dockerfile_caps() -> String {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile"))
        .expect("Dockerfile");
    let words: Vec<&str> = text.split_whitespace().collect();
    let i = words
        .iter()
        .position(|w| *w == "setcap")
        .expect("the Dockerfile runs setcap");
    assert_eq!(
        words[i + 2],
        "target/release/meshprobe",
        "{:?}",
        &words[i..i + 3]
    );
    words[i + 1].to_string()
}

/// Run the agent as 65532 with `setpriv_extra`, optionally inside `ns`; its output until the
/// "agent starting" line (or exit, or 20 s).
fn agent_output(bin: &Path, dir: &Path, ns: Option<&str>, setpriv_extra: &[&str]) -> String {
    let peers = dir.join("peers.yaml");
    let mut argv: Vec<String> = Vec::new();
    if let Some(ns) = ns {
        argv.extend(["ip", "netns", "exec", ns].map(String::from));
    }
    argv.extend(
        [
            "setpriv",
            "--reuid",
            "65532",
            "--regid",
            "65532",
            "--clear-groups",
            "--inh-caps=-all",
        ]
        .map(String::from),
    );
    argv.extend(setpriv_extra.iter().map(|s| s.to_string()));
    argv.push("--".into());
    argv.push(bin.display().to_string());
    argv.extend(
        [
            "agent",
            "--node-name",
            "a",
            "--listen",
            "127.0.0.1:0",
            "--peers-file",
            &peers.display().to_string(),
        ]
        .map(String::from),
    );
    let log = dir.join(format!("agent-{}.log", ns.unwrap_or("host")));
    let mut child = spawn_logged(
        Command::new(&argv[0])
            .args(&argv[1..])
            .env("MESHPROBE_LOG", "meshprobe=info"),
        &log,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut text = String::new();
    while Instant::now() < deadline {
        text.clear();
        std::fs::File::open(&log)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        if text.contains("agent starting") || child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    text
}

#[test]
fn the_images_file_capability_works_with_both_pod_specs() {
    if !is_root() || !have("setcap") || !have("setpriv") || !have("ip") {
        eprintln!("skipped: needs root, setcap, setpriv and ip");
        return;
    }
    let caps = dockerfile_caps();
    // /tmp: every user can reach it (the binary runs as 65532). A nosuid mount ignores file
    // capabilities: nothing to learn there.
    let opts = Command::new("findmnt")
        .args(["-n", "-o", "OPTIONS", "--target", "/tmp"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    if opts.split(',').any(|o| o.trim() == "nosuid") {
        eprintln!("skipped: /tmp is mounted nosuid ({opts}), file capabilities are ignored there");
        return;
    }
    let dir = PathBuf::from(format!("/tmp/meshprobe-caps-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    sh(&["chmod", "755", &dir.display().to_string()]);
    let bin = dir.join("meshprobe");
    std::fs::copy(EXE, &bin).unwrap();
    sh(&["chmod", "755", &bin.display().to_string()]);
    sh(&["setcap", &caps, &bin.display().to_string()]);
    std::fs::write(
        dir.join("peers.yaml"),
        "peers:\n  - {node: a, node_ip: 127.0.0.1, pod_ip: 127.0.0.1}\n",
    )
    .unwrap();
    sh(&[
        "chmod",
        "644",
        &dir.join("peers.yaml").display().to_string(),
    ]);

    // components/raw-sockets: NET_RAW in the bounding set, privilege escalation allowed.
    let base = agent_output(&bin, &dir, None, &[]);
    eprintln!("base:\n{base}");
    assert!(
        base.contains("path-MTU discovery on raw ICMP sockets"),
        "{base}"
    );
    assert!(base.contains(r#"icmp_socket="raw""#), "{base}");

    // deploy/base: no capability at all, no_new_privs; the pod's sysctl allows
    // ICMP datagram sockets.
    let ns = format!("mpcaps-{}", std::process::id());
    let _ns = Netns(vec![ns.clone()]);
    sh(&["ip", "netns", "add", &ns]);
    sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
    sh(&[
        "ip",
        "netns",
        "exec",
        &ns,
        "sysctl",
        "-qw",
        "net.ipv4.ping_group_range=0 2147483647",
    ]);
    let restricted = agent_output(
        &bin,
        &dir,
        Some(&ns),
        &["--bounding-set", "-all", "--no-new-privs"],
    );
    eprintln!("restricted:\n{restricted}");
    assert!(
        !restricted.contains("Operation not permitted"),
        "the binary must execute without any capability (file capability {caps}): {restricted}"
    );
    assert!(
        restricted.contains("path-MTU discovery on datagram ICMP sockets"),
        "{restricted}"
    );
    assert!(
        restricted.contains(r#"icmp_socket="dgram""#),
        "{restricted}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
