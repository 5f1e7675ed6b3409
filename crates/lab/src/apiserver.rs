//! The lab's API server stand-in: TLS `GET /readyz` answering `ok`, served in the `lab up`
//! process (as the DNS pod is, `crate::dns`) on node-1's node address, port 6443 — where
//! kubeadm's API server listens on a control-plane node, host network — behind the ClusterIP
//! `.1` port 443 (`kubernetes.default.svc`, kube-proxy's rules in `plan::services`). Its
//! certificate is for `kubernetes.default.svc` (and the addresses), signed by a CA made at
//! `lab up` and written to the state dir for the agents' `--apiserver-ca`.
//!
//! Certificates come from `rcgen` (ring, as rustls here): in-process, so the lab needs no
//! openssl binary and the tests make theirs the same way. Nothing read is trusted: a request
//! head is read up to 8 KiB within 5 s, then answered and the connection closed.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::netns;
use crate::plan::Topology;
use meshprobe_core::error::{Error, Result};

/// The name the certificate is for (what in-cluster clients verify).
pub const SERVER_NAME: &str = "kubernetes.default.svc";
/// The port the stand-in listens on (the endpoints'), and the ClusterIP's.
pub const ENDPOINT_PORT: u16 = 6443;
pub const VIP_PORT: u16 = 443;
/// The node whose node address serves it (a control-plane node).
pub const APISERVER_NODE: u16 = 1;
/// The CA file in the state dir.
pub const CA_FILE: &str = "apiserver-ca.crt";

/// Longest request head read, and how long a client may take to send it.
const MAX_HEAD: usize = 8192;
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// A CA and a server certificate it signed: PEM text.
#[derive(Debug, Clone)]
pub struct Pki {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// A fresh CA and a certificate for [`SERVER_NAME`], `kubernetes`, `kubernetes.default` and
/// `ips`, signed by it.
pub fn make_pki(ips: &[IpAddr]) -> Result<Pki> {
    let err = |e: rcgen::Error| Error::Lab(format!("API server certificate: {e}"));
    let ca_key = rcgen::KeyPair::generate().map_err(err)?;
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "meshprobe lab CA");
    let ca_cert = ca.self_signed(&ca_key).map_err(err)?;
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().map_err(err)?;
    let mut names: Vec<String> = [SERVER_NAME, "kubernetes", "kubernetes.default"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    names.extend(ips.iter().map(ToString::to_string));
    let mut params = rcgen::CertificateParams::new(names).map_err(err)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kube-apiserver");
    let cert = params.signed_by(&key, &issuer).map_err(err)?;
    Ok(Pki {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The server side's TLS settings from `pki`.
fn server_config(pki: &Pki) -> Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let err = |e: String| Error::Lab(format!("API server TLS: {e}"));
    let cert =
        CertificateDer::from_pem_slice(pki.cert_pem.as_bytes()).map_err(|e| err(e.to_string()))?;
    let key =
        PrivateKeyDer::from_pem_slice(pki.key_pem.as_bytes()).map_err(|e| err(e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .map_err(|e| err(e.to_string()))?;
    Ok(Arc::new(config))
}

/// Serve `/readyz` on `listener` until the process ends: 200 `ok` while `ready`, else 500
/// with the body kube-apiserver gives; any other path 404.
pub fn serve_on(listener: std::net::TcpListener, pki: &Pki, ready: Arc<AtomicBool>) -> Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config(pki)?);
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::Lab(format!("API server: {e}")))?;
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(|e| Error::Lab(format!("API server: {e}")))?;
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let (acceptor, ready) = (acceptor.clone(), ready.clone());
            tokio::spawn(async move {
                let _ = tokio::time::timeout(HEAD_TIMEOUT, answer(acceptor, tcp, ready)).await;
            });
        }
    });
    Ok(())
}

async fn answer(
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: tokio::net::TcpStream,
    ready: Arc<AtomicBool>,
) -> std::io::Result<()> {
    let mut tls = acceptor.accept(tcp).await?;
    let mut buf = vec![0u8; MAX_HEAD];
    let mut n = 0;
    while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
        if n == buf.len() {
            return Ok(());
        }
        match tls.read(&mut buf[n..]).await? {
            0 => return Ok(()),
            k => n += k,
        }
    }
    let line = buf[..n].split(|b| *b == b'\r').next().unwrap_or_default();
    let readyz = line.starts_with(b"GET /readyz ") || line.starts_with(b"GET /readyz?");
    let (code, body) = match (readyz, ready.load(Ordering::Relaxed)) {
        (true, true) => ("200 OK", "ok"),
        (true, false) => (
            "500 Internal Server Error",
            "[-]etcd failed: reason withheld\nreadyz check failed\n",
        ),
        (false, _) => ("404 Not Found", "not found\n"),
    };
    let resp = format!(
        "HTTP/1.1 {code}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(resp.as_bytes()).await?;
    tls.shutdown().await
}

/// The stand-in's addresses: node-1's node address in each family, port 6443.
pub fn endpoints(topo: &Topology) -> Vec<SocketAddr> {
    topo.views()
        .iter()
        .map(Topology::apiserver_endpoint)
        .collect()
}

/// Make the PKI, write the CA to `ca_path`, and serve on node-1's node address(es) in its
/// namespace. Binds before returning: a failure is the caller's error.
pub fn serve(topo: &Topology, ca_path: &std::path::Path) -> Result<()> {
    let eps = endpoints(topo);
    let mut ips: Vec<IpAddr> = eps.iter().map(|a| a.ip()).collect();
    ips.extend(topo.views().iter().map(|t| t.apiserver_vip()));
    let pki = make_pki(&ips)?;
    std::fs::write(ca_path, &pki.ca_pem)?;
    let ns = &topo.node(APISERVER_NODE).ns;
    let ready = Arc::new(AtomicBool::new(true));
    for addr in eps {
        let l = netns::listen_in(ns, addr)
            .map_err(|e| Error::Lab(format!("API server: listen {addr} in {ns}: {e}")))?;
        serve_on(l, &pki, ready.clone())?;
    }
    Ok(())
}
