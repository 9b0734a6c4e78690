//! The running network: a tokio runtime of its own, one task per peer that keeps its link up, an
//! accept loop, and a handle the node's threads send through without ever waiting.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agora_types::{Committee, NodeId};
use bytes::Bytes;
use crossbeam_channel::TrySendError;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::{sleep, timeout};

use crate::config::{ConfigError, NetConfig, NetLimits};
use crate::handshake::{self, HandshakeError, Hello, Identity, Session, Side};
use crate::link::{FrameReader, LinkError, Opener};
use crate::stats::{Counters, NetStats};

/// A message from a peer, for the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    /// The authenticated member it came from.
    pub from: NodeId,
    /// Its bytes, exactly as the peer's node handed them to its network.
    pub bytes: Bytes,
}

/// How handing a message to the node went.
#[derive(Debug)]
pub enum Offer {
    /// Taken.
    Taken,
    /// No room now: the message comes back, to be offered again or dropped.
    Full(Inbound),
    /// The node is gone: the link stops reading.
    Gone,
}

/// Where a network hands what it receives: the node's inbox.
pub trait Inbox: Send + Sync + 'static {
    /// Offers `message`, never waiting.
    fn offer(&self, message: Inbound) -> Offer;
}

impl Inbox for crossbeam_channel::Sender<Inbound> {
    fn offer(&self, message: Inbound) -> Offer {
        match self.try_send(message) {
            Ok(()) => Offer::Taken,
            Err(TrySendError::Full(message)) => Offer::Full(message),
            Err(TrySendError::Disconnected(_)) => Offer::Gone,
        }
    }
}

/// Why a network could not start.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The configuration cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The runtime or the listener failed.
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
}

/// A listening socket, bound before the network starts (so that a test or a testnet can bind
/// port 0 and learn the port it got).
#[derive(Debug)]
pub struct Listener(std::net::TcpListener);

impl Listener {
    /// Binds `addr`.
    pub fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok(Self(listener))
    }

    /// The address it is bound to.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// Sends to peers from any thread, never waiting: a message for a peer whose queue is full is
/// dropped and counted.
#[derive(Debug, Clone)]
pub struct NetSender {
    queues: Arc<BTreeMap<NodeId, mpsc::Sender<Bytes>>>,
    counters: Arc<Counters>,
    message_bytes_max: usize,
}

impl NetSender {
    /// Queues `bytes` for `to`; `false` if it was dropped (not a peer, over the size bound, or
    /// the peer's queue is full).
    pub fn send(&self, to: NodeId, bytes: Bytes) -> bool {
        let Some(queue) = self.queues.get(&to) else {
            self.counters.count_drop("send to a non-peer");
            return false;
        };
        if bytes.len() > self.message_bytes_max {
            self.counters.count_drop("oversized message to send");
            return false;
        }
        match queue.try_send(bytes) {
            Ok(()) => true,
            Err(_) => {
                self.counters.count_drop("peer queue full");
                false
            }
        }
    }

    /// Queues `bytes` for every peer (one shared buffer).
    pub fn broadcast(&self, bytes: Bytes) {
        for peer in self.queues.keys() {
            self.send(*peer, bytes.clone());
        }
    }

    /// The peers it sends to.
    pub fn peers(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.queues.keys().copied()
    }

    /// The network's counts so far.
    pub fn stats(&self) -> NetStats {
        self.counters.snapshot()
    }
}

/// One member's network, running until [`Network::shutdown`] or drop.
#[derive(Debug)]
pub struct Network {
    runtime: Option<Runtime>,
    sender: NetSender,
    counters: Arc<Counters>,
    shutdown: watch::Sender<bool>,
}

/// What every task of one network shares.
struct Shared {
    identity: Identity,
    committee: Committee,
    limits: NetLimits,
    counters: Arc<Counters>,
    inbound: Box<dyn Inbox>,
}

impl Network {
    /// Starts the network of `config.me` on `listener`: it dials the peers with larger ids,
    /// accepts the others, and hands every message received to `inbound`.
    pub fn start(
        config: NetConfig,
        listener: Listener,
        inbound: impl Inbox,
    ) -> Result<Self, NetError> {
        config.validate()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.limits.threads)
            .enable_io()
            .enable_time()
            .thread_name("agora-net")
            .build()?;
        let counters = Arc::new(Counters::default());
        let (shutdown, stop) = watch::channel(false);
        let shared = Arc::new(Shared {
            identity: Identity { member: config.me, key: config.key.clone() },
            committee: config.committee.clone(),
            limits: config.limits,
            counters: counters.clone(),
            inbound: Box::new(inbound),
        });
        let mut queues = BTreeMap::new();
        let mut routes = BTreeMap::new();
        for (&peer, &addr) in &config.peers {
            let (queue_tx, queue_rx) = mpsc::channel(config.limits.send_queue_messages);
            queues.insert(peer, queue_tx);
            // A link handed over by the accept loop replaces the one before it.
            let (route_tx, route_rx) = mpsc::channel::<Session>(2);
            if peer < config.me {
                routes.insert(peer, route_tx);
            }
            let task = PeerTask { shared: shared.clone(), peer, addr, stop: stop.clone() };
            runtime.spawn(task.run(queue_rx, route_rx));
        }
        let listener = {
            let _entered = runtime.enter();
            TcpListener::from_std(listener.0)?
        };
        runtime.spawn(accept_loop(shared, listener, Arc::new(routes), stop));
        let sender = NetSender {
            queues: Arc::new(queues),
            counters: counters.clone(),
            message_bytes_max: config.limits.message_bytes_max,
        };
        Ok(Self { runtime: Some(runtime), sender, counters, shutdown })
    }

    /// A handle to send through.
    pub fn sender(&self) -> NetSender {
        self.sender.clone()
    }

    /// The counts so far.
    pub fn stats(&self) -> NetStats {
        self.counters.snapshot()
    }

    /// Closes every link and stops the runtime, waiting at most a second for its tasks.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How a link ended.
enum LinkEnd {
    /// The network is stopping.
    Stop,
    /// The connection failed: dial again (or wait to be dialled).
    Lost,
    /// The peer dialled again: this link gives way to the new one.
    Replaced(Box<Session>),
}

/// Keeps one peer's link up: dials it (if this member has the smaller id) or waits for it, and
/// carries its queue over each link in turn.
struct PeerTask {
    shared: Arc<Shared>,
    peer: NodeId,
    addr: SocketAddr,
    stop: watch::Receiver<bool>,
}

impl PeerTask {
    async fn run(mut self, mut queue: mpsc::Receiver<Bytes>, mut routed: mpsc::Receiver<Session>) {
        let dialler = self.shared.identity.member < self.peer;
        let limits = self.shared.limits;
        let mut backoff = limits.backoff_min;
        let mut next = None;
        loop {
            let session = match next.take() {
                Some(session) => session,
                None if dialler => match self.dial().await {
                    Ok(session) => {
                        backoff = limits.backoff_min;
                        session
                    }
                    Err(error) => {
                        self.shared.counters.count_drop(error.reason());
                        if !self.pause(backoff).await {
                            return;
                        }
                        backoff = (backoff * 2).min(limits.backoff_max);
                        continue;
                    }
                },
                None => tokio::select! {
                    session = routed.recv() => match session {
                        Some(session) => session,
                        None => return,
                    },
                    _ = self.stop.changed() => return,
                },
            };
            match self.carry(session, &mut queue, &mut routed, dialler).await {
                LinkEnd::Stop => return,
                LinkEnd::Replaced(session) => next = Some(*session),
                LinkEnd::Lost if dialler => {
                    if !self.pause(limits.backoff_min).await {
                        return;
                    }
                }
                LinkEnd::Lost => {}
            }
        }
    }

    /// Connects and runs the dialler's handshake, within the handshake timeout.
    async fn dial(&self) -> Result<Session, HandshakeError> {
        let shared = &self.shared;
        let attempt = async {
            let stream = TcpStream::connect(self.addr)
                .await
                .map_err(|_| HandshakeError::Link("connect failed"))?;
            let _ = stream.set_nodelay(true);
            let me = &shared.identity;
            let mut hello = |hash: &[u8]| Hello::sign(me.member, &me.key, hash, Side::Dialler);
            handshake::dial(
                stream,
                &mut hello,
                &shared.committee,
                self.peer,
                shared.limits.message_bytes_max,
            )
            .await
        };
        timeout(shared.limits.handshake_timeout, attempt)
            .await
            .unwrap_or(Err(HandshakeError::Timeout))
    }

    /// Waits `base` with jitter (between half and all of it); `false` if the network stops.
    async fn pause(&mut self, base: Duration) -> bool {
        let jitter = std::collections::hash_map::RandomState::new().build_hasher().finish();
        let wait = base / 2 + base.mul_f64((jitter % 1_000) as f64 / 2_000.0);
        tokio::select! {
            _ = sleep(wait) => true,
            _ = self.stop.changed() => false,
        }
    }

    /// Runs one link: a reader task hands what arrives to the node; this task writes the queue,
    /// many messages per write, until the link fails, is replaced, or the network stops.
    async fn carry(
        &mut self,
        session: Session,
        queue: &mut mpsc::Receiver<Bytes>,
        routed: &mut mpsc::Receiver<Session>,
        dialler: bool,
    ) -> LinkEnd {
        let Session { peer, reader, opener, mut writer, mut sealer } = session;
        let counters = &self.shared.counters;
        Counters::add(&counters.links_opened, 1);
        counters.set_connected(peer, true);
        let mut reading = tokio::spawn(read_loop(self.shared.clone(), peer, reader, opener));
        let limits = self.shared.limits;
        let end = loop {
            tokio::select! {
                _ = self.stop.changed() => break LinkEnd::Stop,
                ended = &mut reading => {
                    if let Ok(error) = ended
                        && matches!(
                            error,
                            LinkError::OversizedFrame
                                | LinkError::Decryption
                                | LinkError::OversizedMessage(_)
                        )
                    {
                        counters.count_drop(error.reason());
                    }
                    break LinkEnd::Lost;
                }
                session = routed.recv(), if !dialler => match session {
                    Some(session) => break LinkEnd::Replaced(Box::new(session)),
                    None => break LinkEnd::Stop,
                },
                message = queue.recv() => {
                    let Some(message) = message else { break LinkEnd::Stop };
                    let (mut count, mut bytes) = (1u64, message.len() as u64);
                    sealer.push(&message);
                    while sealer.pending() < limits.write_batch_bytes {
                        let Ok(message) = queue.try_recv() else { break };
                        sealer.push(&message);
                        count += 1;
                        bytes += message.len() as u64;
                    }
                    let write = async {
                        sealer.seal_into(&mut writer)?;
                        writer.flush().await
                    };
                    match timeout(limits.write_timeout, write).await {
                        Ok(Ok(())) => {
                            Counters::add(&counters.messages_sent, count);
                            Counters::add(&counters.bytes_sent, bytes);
                        }
                        Ok(Err(_)) | Err(_) => {
                            counters.count_drops("lost with a failed link", count);
                            break LinkEnd::Lost;
                        }
                    }
                }
            }
        };
        reading.abort();
        counters.set_connected(peer, false);
        end
    }
}

/// Reads one link until it fails: each whole message goes to the node's inbox.
async fn read_loop(
    shared: Arc<Shared>,
    peer: NodeId,
    mut reader: FrameReader,
    mut opener: Opener,
) -> LinkError {
    loop {
        let frame = match reader.next().await {
            Ok(frame) => frame,
            Err(error) => return error,
        };
        if let Err(error) = opener.open(&frame) {
            return error;
        }
        loop {
            match opener.next_message() {
                Ok(Some(bytes)) => {
                    if !deliver(&shared, Inbound { from: peer, bytes }).await {
                        return LinkError::Closed;
                    }
                }
                Ok(None) => break,
                Err(error) => return error,
            }
        }
    }
}

/// Hands a message to the node, waiting for room at most `inbound_wait_max` (while it waits
/// this link reads nothing, and TCP pushes back on the sender); then drops and counts it.
/// `false` if the node is gone.
async fn deliver(shared: &Shared, mut inbound: Inbound) -> bool {
    let deadline = Instant::now() + shared.limits.inbound_wait_max;
    let mut wait = Duration::from_micros(100);
    loop {
        let len = inbound.bytes.len() as u64;
        match shared.inbound.offer(inbound) {
            Offer::Taken => {
                Counters::add(&shared.counters.messages_received, 1);
                Counters::add(&shared.counters.bytes_received, len);
                return true;
            }
            Offer::Full(back) => {
                if Instant::now() >= deadline {
                    shared.counters.count_drop("node inbox full");
                    return true;
                }
                inbound = back;
                sleep(wait).await;
                wait = (wait * 2).min(Duration::from_millis(10));
            }
            Offer::Gone => return false,
        }
    }
}

/// A token bucket per remote address: a peer that keeps reconnecting is refused beyond its rate.
struct AcceptLimiter {
    rate: f64,
    burst: f64,
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl AcceptLimiter {
    /// Addresses remembered at most; beyond, the table starts over.
    const ADDRESSES_MAX: usize = 4_096;

    fn allows(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.buckets.len() >= Self::ADDRESSES_MAX && !self.buckets.contains_key(&ip) {
            self.buckets.clear();
        }
        let (tokens, at) = self.buckets.entry(ip).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Accepts connections: rate-limited per address, a bounded number of handshakes at once, each
/// within the handshake timeout; an authenticated link goes to its peer's task.
async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    routes: Arc<BTreeMap<NodeId, mpsc::Sender<Session>>>,
    mut stop: watch::Receiver<bool>,
) {
    let limits = shared.limits;
    let handshakes = Arc::new(Semaphore::new(limits.pending_handshakes_max));
    let mut limiter = AcceptLimiter {
        rate: f64::from(limits.accepts_per_sec),
        burst: f64::from(limits.accept_burst),
        buckets: HashMap::new(),
    };
    loop {
        let (stream, addr) = tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => {
                    // Out of descriptors, say: do not spin.
                    shared.counters.count_drop("accept failed");
                    sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        if !limiter.allows(addr.ip(), Instant::now()) {
            shared.counters.count_drop("connection rate limited");
            continue;
        }
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            shared.counters.count_drop("too many handshakes");
            continue;
        };
        let (shared, routes) = (shared.clone(), routes.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let _ = stream.set_nodelay(true);
            let attempt = handshake::accept(
                stream,
                &shared.identity,
                &shared.committee,
                shared.limits.message_bytes_max,
            );
            let session = match timeout(shared.limits.handshake_timeout, attempt).await {
                Ok(Ok(session)) => session,
                Ok(Err(error)) => return shared.counters.count_drop(error.reason()),
                Err(_) => return shared.counters.count_drop(HandshakeError::Timeout.reason()),
            };
            match routes.get(&session.peer) {
                Some(route) if route.try_send(session).is_ok() => {}
                Some(_) => shared.counters.count_drop("links replaced too fast"),
                None => shared.counters.count_drop("hello from a member that is not a peer"),
            }
        });
    }
}

/// Dials `addr` and runs the dialler's side of the handshake with the hello `hello` makes from
/// the handshake hash, expecting `expected` to answer; closes the link once it is open. For
/// tools and tests that check a member's authentication (an impersonation, a replayed hello):
/// a member's own network dials with [`Hello::sign`] and its own key.
pub async fn probe(
    addr: SocketAddr,
    committee: &Committee,
    expected: NodeId,
    hello: &mut (dyn FnMut(&[u8]) -> Hello + Send),
    within: Duration,
) -> Result<(), HandshakeError> {
    let attempt = async {
        let stream =
            TcpStream::connect(addr).await.map_err(|_| HandshakeError::Link("connect failed"))?;
        handshake::dial(stream, hello, committee, expected, 1024).await.map(drop)
    };
    timeout(within, attempt).await.unwrap_or(Err(HandshakeError::Timeout))
}
