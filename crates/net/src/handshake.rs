//! The handshake that opens a link: Noise NN for the session keys, then a signed hello each way
//! for the identities.
//!
//! `Noise_NN_25519_ChaChaPoly_BLAKE2s` gives both sides fresh ephemeral X25519 keys, session keys
//! with forward secrecy, and a handshake hash that names this session alone. The committee is the
//! prologue, so members of different committees never complete a handshake. Noise's static keys
//! would be a second identity per member; instead each side proves its committee identity with
//! the member key it already has, by signing the handshake hash and its side of the handshake
//! (`agora/net-hello/v1`), and sends that hello encrypted as its first message. The dialler
//! speaks first and the listener answers only a hello it accepts.
//!
//! What this refuses (each counted by its reason, see [`HandshakeError::reason`]):
//! - a hello from outside the committee, or from a member that should not dial this one;
//! - a hello signed by another key than the member's it names (impersonation);
//! - a hello replayed from another session: its signature is over another handshake hash;
//! - a hello reflected back to its sender: its signature is for the other side.
//!
//! Aptos authenticates its peers with Noise IK against the trusted set, and commonware with
//! signed static keys; the hello over the handshake hash is the channel binding both rest on,
//! done with the keys agora's committee already holds.

use std::sync::Arc;

use agora_crypto::{Signature, domain};
use agora_types::{Committee, NodeId, codec};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use snow::{HandshakeState, StatelessTransportState};
use tokio::net::TcpStream;

use crate::link::{FrameReader, FrameWriter, LinkError, NOISE_MESSAGE_MAX, Opener, Sealer};

/// The Noise protocol every link speaks.
pub const NOISE_PATTERN: &str = "Noise_NN_25519_ChaChaPoly_BLAKE2s";
/// The largest hello accepted.
const HELLO_BYTES_MAX: usize = 256;

/// Which end of a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The member that dialled.
    Dialler,
    /// The member that accepted.
    Listener,
}

/// A member's proof of identity on one link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The member it claims to be.
    pub member: NodeId,
    /// Its member key's signature over the handshake hash and the side it speaks for.
    pub signature: Signature,
}

impl Hello {
    fn signed_bytes(handshake_hash: &[u8], side: Side) -> Vec<u8> {
        let mut bytes = handshake_hash.to_vec();
        bytes.push(match side {
            Side::Dialler => 0,
            Side::Listener => 1,
        });
        bytes
    }

    /// `member`'s hello for the session with `handshake_hash`, spoken from `side`.
    pub fn sign(
        member: NodeId,
        key: &agora_crypto::SecretKey,
        handshake_hash: &[u8],
        side: Side,
    ) -> Self {
        let signature = key.sign(&domain::NET_HELLO, &Self::signed_bytes(handshake_hash, side));
        Self { member, signature }
    }

    /// Checks that this hello is the named member's, for this session and side.
    pub fn verify(
        &self,
        committee: &Committee,
        handshake_hash: &[u8],
        side: Side,
    ) -> Result<(), HandshakeError> {
        let key = committee.key(self.member).ok_or(HandshakeError::NotAMember(self.member))?;
        key.verify(&domain::NET_HELLO, &Self::signed_bytes(handshake_hash, side), &self.signature)
            .map_err(|_| HandshakeError::Impersonation(self.member))
    }
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The connection failed, closed or misbehaved (the reason it is counted under).
    #[error("connection: {0}")]
    Link(&'static str),
    /// It did not finish in time.
    #[error("timed out")]
    Timeout,
    /// The Noise handshake failed (another protocol, another committee, corrupted bytes).
    #[error("noise handshake failed")]
    Noise,
    /// The hello is not one.
    #[error("malformed hello")]
    MalformedHello,
    /// The hello names no member of the committee.
    #[error("node {0} is not a member")]
    NotAMember(NodeId),
    /// The hello is not signed by the member it names, or not for this session and side.
    #[error("hello not signed by node {0} for this session")]
    Impersonation(NodeId),
    /// A member dialled that should have been dialled (of each pair, the smaller id dials).
    #[error("node {0} should not dial this member")]
    WrongSide(NodeId),
    /// The member that answered is not the one dialled.
    #[error("dialled node {expected} and node {found} answered")]
    Unexpected {
        /// Who was dialled.
        expected: NodeId,
        /// Who answered.
        found: NodeId,
    },
}

impl HandshakeError {
    /// The name this failure is counted under.
    pub fn reason(&self) -> &'static str {
        match self {
            HandshakeError::Link(reason) => reason,
            HandshakeError::Timeout => "handshake timed out",
            HandshakeError::Noise => "noise handshake failed",
            HandshakeError::MalformedHello => "malformed hello",
            HandshakeError::NotAMember(_) => "hello from a non-member",
            HandshakeError::Impersonation(_) => "impersonation",
            HandshakeError::WrongSide(_) => "dialled by the wrong side",
            HandshakeError::Unexpected { .. } => "unexpected member answered",
        }
    }
}

impl From<LinkError> for HandshakeError {
    fn from(error: LinkError) -> Self {
        HandshakeError::Link(error.reason())
    }
}

/// Who this end of a link is.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    /// The member this end is.
    pub(crate) member: NodeId,
    /// The key it signs its hello with.
    pub(crate) key: agora_crypto::SecretKey,
}

/// An open, authenticated link.
pub(crate) struct Session {
    pub(crate) peer: NodeId,
    pub(crate) reader: FrameReader,
    pub(crate) opener: Opener,
    pub(crate) writer: FrameWriter,
    pub(crate) sealer: Sealer,
}

/// The prologue binding a link to its committee: the digest of the members' keys in order.
fn prologue(committee: &Committee) -> [u8; 32] {
    let mut hasher = domain::NET_COMMITTEE.hasher();
    for member in committee.members() {
        hasher.update(committee.key(member).expect("a member has a key").as_bytes());
    }
    *hasher.finalize().as_bytes()
}

fn noise(committee: &Committee, side: Side) -> Result<HandshakeState, HandshakeError> {
    let params = NOISE_PATTERN.parse().map_err(|_| HandshakeError::Noise)?;
    let prologue = prologue(committee);
    let builder =
        snow::Builder::new(params).prologue(&prologue).map_err(|_| HandshakeError::Noise)?;
    match side {
        Side::Dialler => builder.build_initiator(),
        Side::Listener => builder.build_responder(),
    }
    .map_err(|_| HandshakeError::Noise)
}

async fn send_noise(
    state: &mut HandshakeState,
    writer: &mut FrameWriter,
) -> Result<(), HandshakeError> {
    let mut buffer = vec![0u8; NOISE_MESSAGE_MAX];
    let n = state.write_message(&[], &mut buffer).map_err(|_| HandshakeError::Noise)?;
    buffer.truncate(n);
    writer.push(Bytes::from(buffer))?;
    writer.flush().await?;
    Ok(())
}

async fn receive_noise(
    state: &mut HandshakeState,
    reader: &mut FrameReader,
) -> Result<(), HandshakeError> {
    let frame = reader.next().await?;
    let mut payload = vec![0u8; NOISE_MESSAGE_MAX];
    state.read_message(&frame, &mut payload).map_err(|_| HandshakeError::Noise)?;
    Ok(())
}

async fn send_hello(session: &mut Session, hello: &Hello) -> Result<(), HandshakeError> {
    let bytes = codec::encode(hello).map_err(|_| HandshakeError::MalformedHello)?;
    session.sealer.push(&bytes);
    session.sealer.seal_into(&mut session.writer)?;
    session.writer.flush().await?;
    Ok(())
}

async fn receive_hello(session: &mut Session) -> Result<Hello, HandshakeError> {
    loop {
        if let Some(bytes) = session.opener.next_message()? {
            return codec::decode_with_limit(&bytes, HELLO_BYTES_MAX)
                .map_err(|_| HandshakeError::MalformedHello);
        }
        let frame = session.reader.next().await?;
        session.opener.open(&frame)?;
    }
}

fn session(
    reader: FrameReader,
    writer: FrameWriter,
    transport: StatelessTransportState,
) -> Session {
    let transport = Arc::new(transport);
    Session {
        peer: NodeId(0),
        reader,
        // Until the peer is known, nothing longer than a hello is taken.
        opener: Opener::new(transport.clone(), HELLO_BYTES_MAX),
        writer,
        sealer: Sealer::new(transport),
    }
}

/// The Noise exchange of either side over `stream`: a session in transport mode, not yet
/// authenticated, and the handshake hash the hellos sign.
async fn noise_exchange(
    stream: TcpStream,
    committee: &Committee,
    side: Side,
) -> Result<(Session, Vec<u8>), HandshakeError> {
    let mut state = noise(committee, side)?;
    let (read, write) = stream.into_split();
    let (mut reader, mut writer) = (FrameReader::new(read), FrameWriter::new(write));
    if side == Side::Dialler {
        send_noise(&mut state, &mut writer).await?;
        receive_noise(&mut state, &mut reader).await?;
    } else {
        receive_noise(&mut state, &mut reader).await?;
        send_noise(&mut state, &mut writer).await?;
    }
    let hash = state.get_handshake_hash().to_vec();
    let transport = state.into_stateless_transport_mode().map_err(|_| HandshakeError::Noise)?;
    Ok((session(reader, writer, transport), hash))
}

/// Opens a link as the dialler over `stream`, to `expected`: the Noise handshake, the hello
/// `hello` makes from the handshake hash (a member's own signs it with [`Hello::sign`]), then the
/// listener's, which must be `expected`'s. No timeout here: the caller bounds it.
pub(crate) async fn dial(
    stream: TcpStream,
    hello: &mut (dyn FnMut(&[u8]) -> Hello + Send),
    committee: &Committee,
    expected: NodeId,
    message_bytes_max: usize,
) -> Result<Session, HandshakeError> {
    let (mut session, hash) = noise_exchange(stream, committee, Side::Dialler).await?;
    send_hello(&mut session, &hello(&hash)).await?;
    let theirs = receive_hello(&mut session).await?;
    theirs.verify(committee, &hash, Side::Listener)?;
    if theirs.member != expected {
        return Err(HandshakeError::Unexpected { expected, found: theirs.member });
    }
    session.peer = theirs.member;
    session.opener.set_message_bytes_max(message_bytes_max);
    Ok(session)
}

/// Opens a link as the listener over `stream`: the Noise handshake, the dialler's hello (a member
/// with a smaller id than this one), then this side's. No timeout here: the caller bounds it.
pub(crate) async fn accept(
    stream: TcpStream,
    me: &Identity,
    committee: &Committee,
    message_bytes_max: usize,
) -> Result<Session, HandshakeError> {
    let (mut session, hash) = noise_exchange(stream, committee, Side::Listener).await?;
    let theirs = receive_hello(&mut session).await?;
    theirs.verify(committee, &hash, Side::Dialler)?;
    if theirs.member >= me.member {
        return Err(HandshakeError::WrongSide(theirs.member));
    }
    send_hello(&mut session, &Hello::sign(me.member, &me.key, &hash, Side::Listener)).await?;
    session.peer = theirs.member;
    session.opener.set_message_bytes_max(message_bytes_max);
    Ok(session)
}
