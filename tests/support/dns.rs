//! A DNS responder for tests: UDP on a loopback address, answering every query the way its
//! current [`Mode`] says (records, an rcode, or silence), counting the queries it got.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hickory_resolver::proto::op::{Message, OpCode, ResponseCode};
use hickory_resolver::proto::rr::rdata::A;
use hickory_resolver::proto::rr::{RData, Record};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// How the responder answers.
#[derive(Debug, Clone)]
pub enum Mode {
    /// NOERROR with these A records (an AAAA query gets none of them: NOERROR, no answer).
    Answer(Vec<Ipv4Addr>),
    /// NOERROR, no records.
    NoAnswer,
    NxDomain,
    ServFail,
    Refused,
    /// No reply at all.
    Silent,
    /// These A records to the next query, then silence (the mode becomes [`Mode::Silent`]):
    /// of two sources asking at once, one is answered and the other not (its resolver's
    /// retransmissions included).
    Once(Vec<Ipv4Addr>),
}

pub struct Responder {
    pub addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    queries: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Responder {
    /// Serve on `ip`, a free port.
    pub async fn start(ip: std::net::IpAddr, mode: Mode) -> Responder {
        let socket = UdpSocket::bind((ip, 0))
            .await
            .expect("bind the DNS responder");
        let addr = socket.local_addr().unwrap();
        let mode = Arc::new(Mutex::new(mode));
        let queries = Arc::new(AtomicUsize::new(0));
        let (m, q) = (mode.clone(), queries.clone());
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(request) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                q.fetch_add(1, Ordering::SeqCst);
                let mode = {
                    let mut now = m.lock().unwrap();
                    match now.clone() {
                        Mode::Once(ips) => {
                            *now = Mode::Silent;
                            Mode::Answer(ips)
                        }
                        other => other,
                    }
                };
                if let Some(reply) = answer(&request, &mode) {
                    let _ = socket.send_to(&reply, from).await;
                }
            }
        });
        Responder {
            addr,
            mode,
            queries,
            task,
        }
    }

    pub fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// Queries received so far.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn answer(request: &Message, mode: &Mode) -> Option<Vec<u8>> {
    let code = match mode {
        Mode::Silent | Mode::Once(_) => return None,
        Mode::Answer(_) | Mode::NoAnswer => ResponseCode::NoError,
        Mode::NxDomain => ResponseCode::NXDomain,
        Mode::ServFail => ResponseCode::ServFail,
        Mode::Refused => ResponseCode::Refused,
    };
    let mut reply = Message::error_msg(request.metadata.id, OpCode::Query, code);
    reply.metadata.recursion_desired = request.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.metadata.authoritative = true;
    reply.add_queries(request.queries.iter().cloned());
    if let (Mode::Answer(ips), Some(q)) = (mode, request.queries.first()) {
        if q.query_type() == hickory_resolver::proto::rr::RecordType::A {
            for ip in ips {
                reply.add_answer(Record::from_rdata(q.name().clone(), 5, RData::A(A(*ip))));
            }
        }
    }
    reply.to_vec().ok()
}
