//! agora's transport: the members of a committee linked over TCP, each link framed, encrypted and
//! mutually authenticated, for a node whose engine stays sans-IO.
//!
//! - **Links.** One TCP connection per pair of members; the member with the smaller id dials, the
//!   other accepts. A lost link is dialled again with exponential backoff and jitter
//!   ([`NetLimits::backoff_min`] to [`NetLimits::backoff_max`]); a dialler that comes back
//!   replaces its old link.
//! - **Handshake.** Noise `NN` (X25519, ChaCha20-Poly1305, BLAKE2s) with the committee as
//!   prologue, then a hello each way: the member's own key signs the handshake hash and its side
//!   (see [`Hello`]). A non-member, an impersonator, a replayed or reflected hello, a member
//!   dialling from the wrong side and a handshake that does not finish within
//!   [`NetLimits::handshake_timeout`] are refused and counted by reason.
//! - **Frames.** tokio-util's `LengthDelimitedCodec`, one Noise message (at most 65,535 bytes)
//!   per frame, carrying a stream of length-prefixed messages of at most
//!   [`NetLimits::message_bytes_max`]. An oversized frame or message, or a frame that fails
//!   decryption, ends the link.
//! - **Queues.** Sending never waits: each peer has a queue of
//!   [`NetLimits::send_queue_messages`], and a message for a full queue is dropped and counted
//!   (consensus engines treat it as network loss). Queued messages go out many per write.
//!   Received messages wait for room in the node's inbox at most
//!   [`NetLimits::inbound_wait_max`] (TCP pushes back meanwhile), then are dropped and counted.
//! - **Admission.** Connections per remote address are rate-limited (a token bucket), and at most
//!   [`NetLimits::pending_handshakes_max`] handshakes run at once.
//!
//! tokio lives here and in the node, never in an engine, the simulator or the market. The
//! network runs on a runtime of its own; the node's threads use a [`NetSender`], and received
//! messages go to an [`Inbox`] (a crossbeam channel of [`Inbound`] messages, or the node's own).
//!
//! Where the ideas come from: commonware's authenticated p2p (an encrypted stream keyed by an
//! ephemeral exchange and bound to static identities, framed messages with a maximum size, rate
//! limits), Aptos's Noise IK against the trusted peer set, and narwhal's length-delimited tokio
//! framing.

mod config;
mod handshake;
mod link;
mod network;
mod stats;

pub use config::{ConfigError, NetConfig, NetLimits};
pub use handshake::{HandshakeError, Hello, NOISE_PATTERN, Side};
pub use network::{Inbound, Inbox, Listener, NetError, NetSender, Network, Offer, probe};
pub use stats::NetStats;
