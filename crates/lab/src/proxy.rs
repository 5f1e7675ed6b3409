//! The live view: 127.0.0.1 ports proxied to each agent inside its probe pod's namespace.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::netns;

/// The 127.0.0.1 → agent proxy: each connection gets a socket made inside the probe pod's
/// namespace. At most 64 connections at once; each one lasts at most 10 minutes.
pub(crate) async fn serve_proxy(listener: tokio::net::TcpListener, ns: String, target: SocketAddr) {
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
