//! The node's local submission port, until the HTTP API replaces it: a TCP port (127.0.0.1 by
//! default) where a client sends signed transactions and asks for the node's status, and hears
//! back when each of its transactions is final.
//!
//! Frames are a 4-byte big-endian length and a postcard body: [`ClientRequest`] in,
//! [`ClientResponse`] out. A request over [`REQUEST_BYTES_MAX`] or one that does not decode
//! closes the connection. At most [`CONNECTIONS_MAX`] clients at once, and at most
//! [`WAITING_MAX`] transactions waiting to be final across them (beyond: `Busy`).

use std::collections::{BTreeMap, HashMap};
use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use agora_crypto::Digest;
use agora_runtime::ReplicaEvent;
use agora_types::{Transaction, codec};
use crossbeam_channel::{Receiver, Sender, bounded};
use serde::{Deserialize, Serialize};

use crate::NodeHandle;

/// The largest request accepted.
pub const REQUEST_BYTES_MAX: usize = 1024 * 1024;
/// Clients connected at once, at most.
pub const CONNECTIONS_MAX: usize = 64;
/// Transactions waiting to be final, across all clients, at most.
pub const WAITING_MAX: usize = 1_000_000;
/// Recent heights whose state digests the status reports.
const RECENT_HEIGHTS: usize = 256;
/// Responses queued for one client at most; beyond, they are dropped.
const RESPONSES_QUEUED: usize = 65_536;

/// What a client sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientRequest {
    /// A signed transaction to order.
    Submit(Box<Transaction>),
    /// The node's status.
    Status,
}

/// What the node answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientResponse {
    /// A transaction this client submitted is final, at `height`.
    Final {
        /// The transaction's id.
        tx: Digest,
        /// The height of its block.
        height: u64,
    },
    /// The transaction was not taken: the node is full. Submit it again later.
    Busy {
        /// The transaction's id.
        tx: Digest,
    },
    /// The node's status.
    Status(NodeStatus),
}

/// A node's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Its member id.
    pub id: u16,
    /// The last height it applied.
    pub height: u64,
    /// The peers it is linked to now.
    pub connected: Vec<u16>,
    /// The state digests of the most recent heights it applied.
    pub recent_digests: Vec<(u64, Digest)>,
    /// Messages it sent to its peers since it started.
    pub messages_sent: u64,
    /// Their bytes.
    pub bytes_sent: u64,
}

/// Writes one frame.
pub fn write_frame<T: Serialize>(out: &mut impl Write, value: &T) -> std::io::Result<()> {
    let body = codec::encode(value).map_err(std::io::Error::other)?;
    let length = u32::try_from(body.len()).map_err(std::io::Error::other)?;
    out.write_all(&length.to_be_bytes())?;
    out.write_all(&body)
}

/// Reads one frame of at most `max` bytes; `None` at the end of the stream.
pub fn read_frame<T: serde::de::DeserializeOwned + Serialize>(
    input: &mut impl Read,
    max: usize,
) -> std::io::Result<Option<T>> {
    let mut length = [0u8; 4];
    match input.read_exact(&mut length) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let length = u32::from_be_bytes(length) as usize;
    if length > max {
        return Err(std::io::Error::other(format!("a frame of {length} bytes")));
    }
    let mut body = vec![0u8; length];
    input.read_exact(&mut body)?;
    codec::decode_with_limit(&body, max).map(Some).map_err(std::io::Error::other)
}

/// What the connections and the event reader share.
#[derive(Default)]
struct Dispatch {
    /// Each waiting transaction's client: its connection number and its response queue.
    waiting: HashMap<Digest, (u64, Sender<ClientResponse>)>,
    height: u64,
    recent: BTreeMap<u64, Digest>,
}

/// The running submission port.
pub struct ClientService {
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
    addr: SocketAddr,
}

impl std::fmt::Debug for ClientService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientService").field("addr", &self.addr).finish()
    }
}

fn lock(dispatch: &Mutex<Dispatch>) -> std::sync::MutexGuard<'_, Dispatch> {
    dispatch.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ClientService {
    /// Serves `node` on `listener` until [`ClientService::stop`].
    pub fn start(listener: TcpListener, node: NodeHandle) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let dispatch = Arc::new(Mutex::new(Dispatch::default()));
        let events = {
            let (stop, dispatch, events) = (stop.clone(), dispatch.clone(), node.events());
            thread::Builder::new()
                .name("client-events".into())
                .spawn(move || read_events(&events, &dispatch, &stop))?
        };
        let accept = {
            let stop = stop.clone();
            thread::Builder::new()
                .name("client-accept".into())
                .spawn(move || accept_loop(&listener, &node, &dispatch, &stop))?
        };
        Ok(Self { stop, threads: vec![events, accept], addr })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting clients and reading events (a connected client's thread ends when it
    /// disconnects, or with the process).
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

fn read_events(events: &Receiver<ReplicaEvent>, dispatch: &Mutex<Dispatch>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(event) = events.recv_timeout(Duration::from_millis(50)) else { continue };
        let mut d = lock(dispatch);
        match event {
            ReplicaEvent::Applied { height, state_digest } => {
                d.height = d.height.max(height);
                d.recent.insert(height, state_digest);
                while d.recent.len() > RECENT_HEIGHTS {
                    d.recent.pop_first();
                }
            }
            ReplicaEvent::Final { tx, height } => {
                if let Some((_, client)) = d.waiting.remove(&tx) {
                    let _ = client.try_send(ClientResponse::Final { tx, height });
                }
            }
        }
    }
}

fn accept_loop(
    listener: &TcpListener,
    node: &NodeHandle,
    dispatch: &Arc<Mutex<Dispatch>>,
    stop: &Arc<AtomicBool>,
) {
    let connections = Arc::new(AtomicUsize::new(0));
    let mut next_id = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(_) => {
                thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        if connections.load(Ordering::Relaxed) >= CONNECTIONS_MAX {
            continue;
        }
        next_id += 1;
        connections.fetch_add(1, Ordering::Relaxed);
        let (node, dispatch, stop, connections) =
            (node.clone(), dispatch.clone(), stop.clone(), connections.clone());
        let id = next_id;
        let spawned = thread::Builder::new().name(format!("client-{id}")).spawn(move || {
            serve(stream, id, &node, &dispatch, &stop);
            connections.fetch_sub(1, Ordering::Relaxed);
        });
        if spawned.is_err() {
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// One client: requests read here, responses written by a thread of their own.
fn serve(
    stream: TcpStream,
    id: u64,
    node: &NodeHandle,
    dispatch: &Mutex<Dispatch>,
    stop: &AtomicBool,
) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_nodelay(true);
    let Ok(write_half) = stream.try_clone() else { return };
    let (responses, queue) = bounded::<ClientResponse>(RESPONSES_QUEUED);
    let writer = thread::spawn(move || {
        let mut out = BufWriter::new(write_half);
        while let Ok(first) = queue.recv() {
            for response in std::iter::once(first).chain(queue.try_iter()) {
                if write_frame(&mut out, &response).is_err() {
                    return;
                }
            }
            if out.flush().is_err() {
                return;
            }
        }
    });
    let mut input = BufReader::new(stream);
    while !stop.load(Ordering::Relaxed) {
        let request = match read_frame::<ClientRequest>(&mut input, REQUEST_BYTES_MAX) {
            Ok(Some(request)) => request,
            Ok(None) => break,
            Err(_) => break,
        };
        match request {
            ClientRequest::Submit(tx) => {
                let tx_id = tx.id();
                let taken = {
                    let mut d = lock(dispatch);
                    d.waiting.len() < WAITING_MAX
                        && d.waiting.insert(tx_id, (id, responses.clone())).is_none()
                };
                if !taken || !node.submit(*tx) {
                    if taken {
                        lock(dispatch).waiting.remove(&tx_id);
                    }
                    let _ = responses.try_send(ClientResponse::Busy { tx: tx_id });
                }
            }
            ClientRequest::Status => {
                let net = node.net_stats();
                let status = {
                    let d = lock(dispatch);
                    NodeStatus {
                        id: node.id().0,
                        height: d.height,
                        connected: net.connected.iter().map(|p| p.0).collect(),
                        recent_digests: d.recent.iter().map(|(h, d)| (*h, *d)).collect(),
                        messages_sent: net.messages_sent,
                        bytes_sent: net.bytes_sent,
                    }
                };
                let _ = responses.try_send(ClientResponse::Status(status));
            }
        }
    }
    lock(dispatch).waiting.retain(|_, (client, _)| *client != id);
    drop(responses);
    let _ = writer.join();
}
