//! Prometheus over HTTPS: Debian's `prometheus` serving TLS (`--web.config.file`) with a
//! certificate of a CA made here with `openssl`, scraping a real agent. `meshprobe diagnose
//! --prometheus https://…` answers with `--prometheus-ca` and with the CA in the system trust
//! store (`SSL_CERT_FILE`), and fails naming the TLS handshake against a store without it and
//! with another CA; the agent's own `--prometheus https://… --prometheus-ca` feeds its mesh
//! view above `--full-mesh-max`.
//!
//! Needs `prometheus` and `openssl`; the agent needs ICMP sockets (root, or the ping sysctl).

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::agent::Agent;
use support::net::{free_port, ip};
use support::prometheus::Prometheus;
use support::sys::{have_or_skip, peers_file, scratch_dir, sh, EXE};

/// A CA (`NAME-ca.pem`, `NAME-ca.key`) in `dir`, made with openssl.
fn make_ca(dir: &Path, name: &str) {
    let (pem, key) = (
        dir.join(format!("{name}-ca.pem")),
        dir.join(format!("{name}-ca.key")),
    );
    sh(&[
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "2",
        "-subj",
        &format!("/CN=meshprobe test CA {name}"),
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        pem.to_str().unwrap(),
    ]);
}

/// A server certificate for 127.0.0.1 signed by CA `ca`: (`server.pem`, `server.key`).
fn make_server_cert(dir: &Path, ca: &str) {
    let (csr, key, pem, ext) = (
        dir.join("server.csr"),
        dir.join("server.key"),
        dir.join("server.pem"),
        dir.join("server.ext"),
    );
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    sh(&[
        "openssl",
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        csr.to_str().unwrap(),
    ]);
    sh(&[
        "openssl",
        "x509",
        "-req",
        "-in",
        csr.to_str().unwrap(),
        "-CA",
        dir.join(format!("{ca}-ca.pem")).to_str().unwrap(),
        "-CAkey",
        dir.join(format!("{ca}-ca.key")).to_str().unwrap(),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        ext.to_str().unwrap(),
        "-out",
        pem.to_str().unwrap(),
    ]);
}

/// `meshprobe diagnose --prometheus URL ARGS… -o json` with extra environment: (exit code,
/// document, stderr).
fn diagnose(url: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, Value, String) {
    let out = Command::new(EXE)
        .args([
            "diagnose",
            "--prometheus",
            url,
            "-o",
            "json",
            "--timeout",
            "5s",
        ])
        .args(args)
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .envs(env.iter().copied())
        .output()
        .expect("run meshprobe diagnose");
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn diagnose_and_the_agent_read_prometheus_over_https() {
    if !have_or_skip("prometheus", "prometheus") || !have_or_skip("openssl", "openssl") {
        return;
    }
    let dir = scratch_dir("prom-tls");
    make_ca(&dir, "test");
    make_ca(&dir, "other");
    make_server_cert(&dir, "test");
    let ca = dir.join("test-ca.pem");
    let other = dir.join("other-ca.pem");

    // The agent: itself and one silent peer, --full-mesh-max 1 (a sampled plan), its mesh
    // view from the TLS Prometheus below.
    let prom_addr = SocketAddr::new(ip(1), free_port(ip(1)));
    let url = format!("https://{prom_addr}");
    let a_addr = SocketAddr::new(ip(131), free_port(ip(131)));
    let (_pdir, peers) = peers_file(
        "prom-tls-peers",
        &format!(
            "peers:\n  - {{node: tls-a, node_ip: 127.0.0.1, pod_ip: {}, port: {}}}\n  - {{node: tls-b, node_ip: 127.0.0.1, pod_ip: 127.0.0.132, port: {}}}\n",
            a_addr.ip(),
            a_addr.port(),
            free_port(ip(132))
        ),
    );
    let Some(agent) = Agent::spawn(
        "tls-a",
        a_addr,
        &[
            "--peers-file",
            peers.to_str().unwrap(),
            "--interval",
            "1s",
            "--timeout",
            "500ms",
            "--window",
            "8s",
            "--full-mesh-max",
            "1",
            "--prometheus",
            &url,
            "--prometheus-ca",
            ca.to_str().unwrap(),
        ],
    ) else {
        return;
    };

    std::fs::write(
        dir.join("web.yml"),
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
            dir.join("server.pem").display(),
            dir.join("server.key").display()
        ),
    )
    .unwrap();
    let _prom = Prometheus::start(
        &dir,
        prom_addr,
        &format!(
            "global: {{scrape_interval: 1s, scrape_timeout: 900ms}}\nscrape_configs:\n  - job_name: meshprobe\n    honor_labels: true\n    static_configs:\n      - targets: [\"{a_addr}\"]\n"
        ),
        Some(&dir.join("web.yml")),
    );
    let log = dir.join("prometheus.log");

    // With the CA given: answered once the agent's series are in.
    let ca_arg = ["--prometheus-ca", ca.to_str().unwrap()];
    let t0 = Instant::now();
    let (code, d, err) = loop {
        let (code, d, err) = diagnose(&url, &ca_arg, &[]);
        if code != 2 {
            break (code, d, err);
        }
        assert!(
            t0.elapsed() < Duration::from_secs(40),
            "diagnose over https: exit {code}: {err}\nprometheus log: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(code == 0 || code == 1, "exit {code}: {err}");
    assert_eq!(
        d["agents_answered"],
        serde_json::json!(["tls-a"]),
        "{d}\n{err}"
    );

    // The system trust store, holding the CA (SSL_CERT_FILE): the same.
    let store = [("SSL_CERT_FILE", ca.to_str().unwrap())];
    let (code, d, err) = diagnose(&url, &[], &store);
    assert!(code == 0 || code == 1, "exit {code}: {err}");
    assert_eq!(
        d["agents_answered"],
        serde_json::json!(["tls-a"]),
        "{d}\n{err}"
    );

    // A trust store without it, and another CA: exit 2 naming the handshake.
    let elsewhere = [("SSL_CERT_FILE", other.to_str().unwrap())];
    for (args, env) in [
        (&[][..], &elsewhere[..]),
        (&["--prometheus-ca", other.to_str().unwrap()][..], &[][..]),
    ] {
        let (code, _, err) = diagnose(&url, args, env);
        assert_eq!(code, 2, "{args:?} {env:?}: {err}");
        assert!(
            err.contains("TLS handshake with 127.0.0.1") && err.contains(&url),
            "{args:?} {env:?}: {err}"
        );
    }
    // Plain HTTP to the TLS port: an error, not a hang.
    let (code, _, err) = diagnose(&format!("http://{prom_addr}"), &[], &[]);
    assert_eq!(code, 2, "{err}");

    // The agent's mesh view comes from the same Prometheus, over TLS.
    let t0 = Instant::now();
    loop {
        let v = agent.json("/api/v1/diagnosis");
        if v["scope"]["source"] == "prometheus" {
            assert!(
                v["scope"]["note"].as_str().unwrap_or("").contains(&url),
                "{v}"
            );
            assert!(
                v["agents_answered"]
                    .as_array()
                    .is_some_and(|a| a.contains(&Value::from("tls-a"))),
                "{v}"
            );
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the agent's view is not from Prometheus: {v}\n{}",
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
