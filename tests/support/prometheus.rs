//! Debian's `prometheus` started by a test: its config written to `DIR/prometheus.yml`, its data
//! in `DIR/data`, its log in `DIR/prometheus.log`; killed (and reaped) on drop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use super::sys::spawn_logged;

pub struct Prometheus {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    child: Child,
}

impl Prometheus {
    /// Start Prometheus on `addr` with `config` (the text of prometheus.yml) and, when given,
    /// `--web.config.file=WEB` (TLS). Not waited for: callers poll what they need.
    pub fn start(dir: &Path, addr: SocketAddr, config: &str, web: Option<&Path>) -> Prometheus {
        let file = dir.join("prometheus.yml");
        std::fs::write(&file, config).expect("write prometheus.yml");
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn");
        if let Some(web) = web {
            cmd.arg(format!("--web.config.file={}", web.display()));
        }
        let child = spawn_logged(&mut cmd, &dir.join("prometheus.log")).expect("start prometheus");
        Prometheus {
            addr,
            dir: dir.to_path_buf(),
            child,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// Panic with its log if it has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(st)) = self.child.try_wait() {
            panic!("prometheus exited ({st}): {}", self.log());
        }
    }

    /// Kill and reap it (also done on drop).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.stop();
    }
}
