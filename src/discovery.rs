//! Discovery: where the peer set comes from. Every source publishes whole, validated peer sets
//! into a `tokio::sync::watch` channel; the probe loop takes the latest at each round.
//!
//! Sources: the peers file (here) and Kubernetes ([`crate::k8s::watch`]), chosen by
//! `--discovery`. The peers file is polled (stat every second, re-parse when its content
//! changes; this also follows Kubernetes ConfigMap symlink swaps, which inotify watches miss).
//! A bad edit keeps the last good set and is reported in logs, metrics and `/api/v1/results`.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

use crate::error::Error;
use crate::peers::{self, PeerSet, MAX_FILE_BYTES};

/// How the discovery source is doing, for metrics and the results API.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DiscoveryStatus {
    pub source: String,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    /// Why the last reload failed, while the file is still bad.
    pub last_error: Option<String>,
    /// Kubernetes discovery: peers probed without alarm for now (node NotReady or cordoned,
    /// agent Ready only for a moment).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<crate::k8s::peers::Held>,
    /// Kubernetes discovery: pods whose `meshprobe.io/probe` annotation was ignored, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bad_targets: Vec<crate::k8s::peers::BadAnnotation>,
    /// Kubernetes discovery: the Service the `service` check's ClusterIP is read from, and the
    /// target found or why there is none (`k8s::service`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<VipStatus>,
    /// Kubernetes discovery: the EndpointSlices the `apiserver_endpoints` check's addresses
    /// are read from (`default/kubernetes`), the target found or why there is none
    /// (`k8s::apiserver`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apiserver_endpoints: Option<VipStatus>,
}

/// Where the `service` check's ClusterIP comes from under Kubernetes discovery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VipStatus {
    /// The Service read, `NAMESPACE/NAME`.
    pub service: String,
    /// The check's `IP:PORT` from it; `None`: no `service` check.
    pub target: Option<String>,
    /// Why there is no check (no such Service, headless, no usable address or port, the API
    /// refusing), or why the last read failed while the last target is kept.
    pub reason: Option<String>,
}

/// Read and parse a peers file; errors name the file and the line or field.
pub fn load_peers_file(path: &Path) -> Result<(PeerSet, u64), Error> {
    let err = |message: String| Error::PeersFile {
        path: path.to_path_buf(),
        message,
    };
    let bytes = read_bounded(path).map_err(|e| err(e.message()))?;
    let text = std::str::from_utf8(&bytes).map_err(|e| err(format!("not UTF-8: {e}")))?;
    let set = peers::parse(text).map_err(err)?;
    Ok((set, fingerprint_bytes(&bytes)))
}

/// Why a peers file could not be read.
#[derive(Debug)]
enum ReadError {
    /// Missing, not a regular file (a FIFO would block the reader forever), unreadable.
    Io(String),
    /// Larger than [`MAX_FILE_BYTES`]: refused without reading it; the size and modification
    /// time fingerprint it, so it is reported once.
    TooLarge(u64),
}

impl ReadError {
    fn message(&self) -> String {
        match self {
            ReadError::Io(m) => m.clone(),
            ReadError::TooLarge(_) => format!("larger than {MAX_FILE_BYTES} bytes"),
        }
    }
}

/// Read at most [`MAX_FILE_BYTES`] of a regular file (symlinks followed).
fn read_bounded(path: &Path) -> Result<Vec<u8>, ReadError> {
    let meta = std::fs::metadata(path).map_err(|e| ReadError::Io(format!("cannot open: {e}")))?;
    if !meta.is_file() {
        return Err(ReadError::Io("cannot open: not a regular file".into()));
    }
    if meta.len() > MAX_FILE_BYTES {
        let mtime = meta.modified().ok().map(|t| format!("{t:?}"));
        return Err(ReadError::TooLarge(fingerprint_bytes(
            format!("{}:{mtime:?}", meta.len()).as_bytes(),
        )));
    }
    let file = std::fs::File::open(path).map_err(|e| ReadError::Io(format!("cannot open: {e}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ReadError::Io(format!("cannot read: {e}")))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        // Grew between the stat and the read.
        return Err(ReadError::TooLarge(fingerprint_bytes(&bytes)));
    }
    Ok(bytes)
}

/// A source ready to run, the sender it publishes on, and a receiver holding the first set.
pub type Started = (
    FileDiscovery,
    watch::Sender<Arc<PeerSet>>,
    watch::Receiver<Arc<PeerSet>>,
);

/// Polls a peers file and publishes each new valid peer set.
pub struct FileDiscovery {
    path: PathBuf,
    poll: Duration,
    /// Fingerprint of the last content we acted on (good or bad), so a bad file is reported once.
    last: u64,
    status: Arc<Mutex<DiscoveryStatus>>,
}

impl FileDiscovery {
    /// Load the file once (a failure here is a configuration error: exit status 2) and return
    /// the source, ready to [`run`](Self::run), and a receiver holding the first set.
    pub fn start(
        path: PathBuf,
        poll: Duration,
        status: Arc<Mutex<DiscoveryStatus>>,
    ) -> Result<Started, Error> {
        let (set, last) = load_peers_file(&path)?;
        if let Ok(mut s) = status.lock() {
            s.source = format!("file:{}", path.display());
            s.reloads_ok = 1;
        }
        let (tx, rx) = watch::channel(Arc::new(set));
        Ok((
            FileDiscovery {
                path,
                poll,
                last,
                status,
            },
            tx,
            rx,
        ))
    }

    /// Check the file once; publish when its content changed and is valid.
    pub fn poll_once(&mut self, tx: &watch::Sender<Arc<PeerSet>>) {
        let text = match read_bounded(&self.path) {
            Ok(bytes) => bytes,
            Err(e @ ReadError::TooLarge(fp)) => {
                self.fail(fp, e.message());
                return;
            }
            Err(e @ ReadError::Io(_)) => {
                // Deleted, not a file or unreadable: keep probing the last good set, say so once.
                self.fail(0, e.message());
                return;
            }
        };
        let fp = fingerprint_bytes(&text);
        if fp == self.last {
            return;
        }
        let parsed = std::str::from_utf8(&text)
            .map_err(|e| format!("not UTF-8: {e}"))
            .and_then(peers::parse);
        match parsed {
            Ok(set) => {
                self.last = fp;
                if let Ok(mut s) = self.status.lock() {
                    s.reloads_ok += 1;
                    s.last_error = None;
                }
                tracing::info!(
                    file = %self.path.display(),
                    peers = set.peers.len(),
                    targets = set.targets.len(),
                    "peers file reloaded"
                );
                tx.send_replace(Arc::new(set));
            }
            Err(message) => self.fail(fp, message),
        }
    }

    fn fail(&mut self, fp: u64, message: String) {
        if fp == self.last && fp != 0 {
            return;
        }
        let first_report = self
            .status
            .lock()
            .map(|s| s.last_error.as_deref() != Some(message.as_str()))
            .unwrap_or(true);
        self.last = fp;
        if let Ok(mut s) = self.status.lock() {
            if first_report {
                s.reloads_failed += 1;
            }
            s.last_error = Some(message.clone());
        }
        if first_report {
            tracing::warn!(
                file = %self.path.display(),
                error = %message,
                "peers file rejected; keeping the last good peer set"
            );
        }
    }

    /// Poll until the receiver side is gone (the agent stopped).
    pub async fn run(mut self, tx: watch::Sender<Arc<PeerSet>>) {
        let mut tick = tokio::time::interval(self.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if tx.is_closed() {
                return;
            }
            self.poll_once(&tx);
        }
    }
}

fn fingerprint_bytes(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    // Never 0: 0 marks "unreadable".
    h.finish().max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("meshprobe-disc-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("peers.yaml")
    }

    const ONE: &str = "peers:\n  - {node: a, node_ip: 10.0.0.1, pod_ip: 10.1.0.1}\n";
    const TWO: &str = "peers:\n  - {node: a, node_ip: 10.0.0.1, pod_ip: 10.1.0.1}\n  - {node: b, node_ip: 10.0.0.2, pod_ip: 10.1.0.2}\n";

    #[test]
    fn a_bad_start_names_the_file_and_exits_2() {
        let path = tmp("bad-start");
        std::fs::write(&path, "peers:\n  - node: a\n").unwrap();
        let err = load_peers_file(&path).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("missing field `node_ip`"), "{msg}");
        let missing = load_peers_file(Path::new("/nonexistent/peers.yaml")).unwrap_err();
        assert!(missing
            .to_string()
            .contains("/nonexistent/peers.yaml: cannot open"));
    }

    #[test]
    fn edits_are_picked_up_and_bad_edits_keep_the_last_good_set() {
        let path = tmp("edits");
        std::fs::write(&path, ONE).unwrap();
        let status = Arc::new(Mutex::new(DiscoveryStatus::default()));
        let (mut d, tx, rx) =
            FileDiscovery::start(path.clone(), Duration::from_secs(1), status.clone()).unwrap();
        assert_eq!(rx.borrow().peers.len(), 1);

        d.poll_once(&tx);
        assert!(
            !rx.has_changed().unwrap(),
            "unchanged file publishes nothing"
        );

        std::fs::write(&path, TWO).unwrap();
        d.poll_once(&tx);
        assert!(rx.has_changed().unwrap());
        assert_eq!(rx.borrow().peers.len(), 2);

        let mut rx2 = rx.clone();
        rx2.mark_unchanged();
        std::fs::write(&path, "peers: [oops").unwrap();
        d.poll_once(&tx);
        d.poll_once(&tx);
        assert!(!rx2.has_changed().unwrap());
        assert_eq!(rx2.borrow().peers.len(), 2);
        {
            let s = status.lock().unwrap();
            assert_eq!(
                s.reloads_failed, 1,
                "a bad file is counted once, not every poll"
            );
            assert!(s.last_error.as_deref().unwrap().contains("line 1"));
        }

        std::fs::remove_file(&path).unwrap();
        d.poll_once(&tx);
        assert!(status
            .lock()
            .unwrap()
            .last_error
            .as_deref()
            .unwrap()
            .contains("cannot open: No such file"));
        assert_eq!(rx2.borrow().peers.len(), 2);

        std::fs::write(&path, ONE).unwrap();
        d.poll_once(&tx);
        assert_eq!(rx2.borrow().peers.len(), 1);
        assert_eq!(status.lock().unwrap().last_error, None);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn fifos_directories_and_huge_files_are_refused_without_blocking_or_reading() {
        let path = tmp("special");
        std::fs::write(&path, ONE).unwrap();
        let status = Arc::new(Mutex::new(DiscoveryStatus::default()));
        let (mut d, tx, rx) =
            FileDiscovery::start(path.clone(), Duration::from_secs(1), status.clone()).unwrap();
        let err = || {
            status
                .lock()
                .unwrap()
                .last_error
                .clone()
                .unwrap_or_default()
        };

        // A FIFO with no writer: opening it would block this thread forever.
        std::fs::remove_file(&path).unwrap();
        let fifo = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        d.poll_once(&tx);
        assert!(err().contains("not a regular file"), "{}", err());
        assert!(load_peers_file(&path)
            .unwrap_err()
            .to_string()
            .contains("not a regular file"));
        std::fs::remove_file(&path).unwrap();

        std::fs::create_dir(&path).unwrap();
        d.poll_once(&tx);
        assert!(err().contains("not a regular file"), "{}", err());
        std::fs::remove_dir(&path).unwrap();

        // Sparse: 1 GiB long, nothing allocated; refused from its size, reported once.
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(1 << 30).unwrap();
        let failed = status.lock().unwrap().reloads_failed;
        for _ in 0..3 {
            d.poll_once(&tx);
        }
        assert!(err().contains("larger than"), "{}", err());
        assert_eq!(status.lock().unwrap().reloads_failed, failed + 1);
        assert_eq!(rx.borrow().peers.len(), 1, "last good set kept");

        std::fs::write(&path, TWO).unwrap();
        d.poll_once(&tx);
        assert_eq!(rx.borrow().peers.len(), 2);
        assert_eq!(status.lock().unwrap().last_error, None);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
