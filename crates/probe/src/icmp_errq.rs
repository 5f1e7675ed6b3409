//! Routers' ICMP errors for echoes sent on a **datagram** socket (no CAP_NET_RAW).
//!
//! A raw socket receives a router's "unreachable" as a packet, which surge-ping hands over like
//! a reply. A datagram ("ping") socket never does; with `IP_RECVERR` / `IPV6_RECVERR` set, the
//! kernel queues the error on the socket's error queue instead: a `sock_extended_err` (origin
//! ICMP, type, code, next-hop MTU), the router (`SO_EE_OFFENDER`), the destination the echo
//! went to (the message's address) and the quoted echo header (its sequence number).
//!
//! [`ErrQueue`] reads that queue for the echo prober's shared surge-ping socket, through a
//! duplicate of its descriptor registered for error readiness only (surge-ping keeps reading
//! replies from the original; it ignores the one failed read a pending error causes), and hands
//! each error to the echo waiting for (destination, sequence). The map of waiters holds only
//! echoes in flight, each removing itself when it ends; the reader is one task, stopped with
//! the prober. Parsing is pure ([`echo_error`], shared with the datagram path-MTU prober; table tests
//! below).

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};

use tokio::io::unix::AsyncFd;
use tokio::io::{Interest, Ready};
use tokio::sync::oneshot;

use crate::errqueue::{echo_error, extended_err, recv_errqueue};
use crate::sockopt::set_int;
use meshprobe_core::model::ErrorClass;

type Waiters = Arc<Mutex<HashMap<(IpAddr, u16), oneshot::Sender<ErrorClass>>>>;

/// The reader of one datagram socket's error queue and the echoes waiting on it.
pub struct ErrQueue {
    waiters: Waiters,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ErrQueue {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ErrQueue {
    /// Ask for errors on `fd` (`IP_RECVERR` / `IPV6_RECVERR`) and start reading them. `fd` is
    /// surge-ping's socket: borrowed, never closed here (a duplicate is read). Must run
    /// inside a Tokio runtime.
    pub fn start(fd: RawFd, v6: bool) -> io::Result<ErrQueue> {
        // SAFETY: fd is a live socket owned by the caller's client for the call's duration;
        // dup gives us a descriptor of our own to the same socket.
        let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
        if dup < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: dup is a fresh descriptor nobody else owns.
        let owned = unsafe { OwnedFd::from_raw_fd(dup) };
        if v6 {
            set_int(owned.as_raw_fd(), libc::IPPROTO_IPV6, libc::IPV6_RECVERR, 1)?;
        } else {
            set_int(owned.as_raw_fd(), libc::IPPROTO_IP, libc::IP_RECVERR, 1)?;
        }
        // SAFETY: the AsyncFd owns the descriptor, which stays open and the same until it is
        // dropped.
        let afd = unsafe { AsyncFd::register_with_interest(owned, Interest::ERROR) }?;
        let waiters: Waiters = Arc::default();
        let task = tokio::spawn(read(afd, v6, waiters.clone()));
        Ok(ErrQueue { waiters, task })
    }

    /// Wait for a router's error about the echo to `dest` with sequence `seq`: resolves with
    /// the error, or never. Register before sending; dropping it unregisters.
    pub fn wait(&self, dest: IpAddr, seq: u16) -> Waiter {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut w) = self.waiters.lock() {
            w.insert((dest, seq), tx);
        }
        Waiter {
            rx,
            key: (dest, seq),
            waiters: self.waiters.clone(),
        }
    }

    /// Echoes currently waiting (tests: nothing is left behind).
    pub fn waiting(&self) -> usize {
        self.waiters.lock().map(|w| w.len()).unwrap_or(0)
    }
}

/// One echo's registration; a future of the router's error.
pub struct Waiter {
    rx: oneshot::Receiver<ErrorClass>,
    key: (IpAddr, u16),
    waiters: Waiters,
}

impl Waiter {
    /// The error, when a router reports one; pending forever otherwise.
    pub async fn error(&mut self) -> ErrorClass {
        match (&mut self.rx).await {
            Ok(class) => class,
            Err(_) => std::future::pending().await,
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if let Ok(mut w) = self.waiters.lock() {
            w.remove(&self.key);
        }
    }
}

async fn read(afd: AsyncFd<OwnedFd>, v6: bool, waiters: Waiters) {
    let mut data = [0u8; 512];
    let mut control = [0u8; 256];
    loop {
        let Ok(mut guard) = afd.ready(Interest::ERROR).await else {
            return;
        };
        loop {
            match recv_errqueue(afd.get_ref(), &mut data, &mut control) {
                Ok((n, c, dest)) => {
                    let Some((dest, (seq, class))) = dest.zip(
                        extended_err(&control[..c]).and_then(|e| echo_error(&e, &data[..n], v6)),
                    ) else {
                        continue;
                    };
                    let tx = waiters.lock().ok().and_then(|mut w| w.remove(&(dest, seq)));
                    if let Some(tx) = tx {
                        let _ = tx.send(class);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // WouldBlock: drained. Anything else: wait for the next report.
                Err(_) => break,
            }
        }
        guard.clear_ready_matching(Ready::ERROR);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{icmpv4_error, icmpv6_error};
    use crate::errqueue::ExtendedErr;
    use std::net::Ipv4Addr;
    use std::os::fd::AsRawFd;

    fn ee(origin: u8, t: u8, code: u8, info: u32, offender: Option<IpAddr>) -> ExtendedErr {
        ExtendedErr {
            errno: 113,
            origin,
            icmp_type: t,
            code,
            info,
            offender,
        }
    }

    #[test]
    fn router_reports_about_echoes_are_read() {
        let router = IpAddr::V4(Ipv4Addr::new(198, 18, 250, 1));
        let router6: IpAddr = "2001:2::1".parse().unwrap();
        let (r, r6) = (Some(router), Some(router6));
        // An echo request as quoted: type 8, code 0, checksum, kernel's identifier, seq 0x0102.
        let q4 = [8u8, 0, 0xaa, 0xbb, 0x12, 0x34, 0x01, 0x02, 0, 0];
        let q6 = [128u8, 0, 0, 0, 0x12, 0x34, 0x01, 0x02];
        let seq = 0x0102;
        // (report, quote, v6, answer)
        type Row<'a> = (ExtendedErr, &'a [u8], bool, Option<(u16, ErrorClass)>);
        let table: Vec<Row> = vec![
            (
                ee(2, 3, 0, 0, r),
                &q4,
                false,
                Some((seq, icmpv4_error(3, 0, router, None))),
            ),
            (
                ee(2, 3, 1, 0, r),
                &q4,
                false,
                Some((seq, ErrorClass::HostUnreachable { from: r })),
            ),
            (
                ee(2, 3, 4, 1280, r),
                &q4,
                false,
                Some((
                    seq,
                    ErrorClass::FragNeeded {
                        from: r,
                        mtu: Some(1280),
                    },
                )),
            ),
            (
                ee(2, 11, 0, 0, r),
                &q4,
                false,
                Some((seq, icmpv4_error(11, 0, router, None))),
            ),
            // Not a router's report, or not about an echo request.
            (ee(1, 0, 0, 1500, None), &q4, false, None),
            (ee(2, 3, 1, 0, None), &q4, false, None),
            (ee(2, 3, 1, 0, r), &q4[..7], false, None),
            (ee(2, 3, 1, 0, r), &[0u8, 0, 0, 0, 0, 0, 1, 2], false, None),
            (ee(2, 5, 0, 0, r), &q4, false, None),
            (ee(3, 1, 0, 0, r6), &q4, false, None),
            // IPv6.
            (
                ee(3, 1, 0, 0, r6),
                &q6,
                true,
                Some((seq, icmpv6_error(1, 0, router6, None))),
            ),
            (
                ee(3, 2, 0, 1400, r6),
                &q6,
                true,
                Some((seq, icmpv6_error(2, 0, router6, Some(1400)))),
            ),
            (ee(2, 3, 1, 0, r), &q6, true, None),
        ];
        for (err, quoted, v6, want) in table {
            assert_eq!(echo_error(&err, quoted, v6), want, "{err:?} {quoted:?}");
        }
    }

    #[tokio::test]
    async fn a_waiter_unregisters_when_dropped() {
        // Any socket will do for the bookkeeping: a UDP one.
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let q = ErrQueue::start(sock.as_raw_fd(), false).unwrap();
        let dest = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let a = q.wait(dest, 1);
        let b = q.wait(dest, 2);
        assert_eq!(q.waiting(), 2);
        drop(a);
        assert_eq!(q.waiting(), 1);
        drop(b);
        assert_eq!(q.waiting(), 0);
    }
}
