//! One link's bytes: length-delimited frames on TCP, each one Noise transport message, and inside
//! them a stream of length-prefixed messages.
//!
//! A Noise message holds at most 65,535 bytes, a consensus message up to megabytes; so the sender
//! writes each message as a 4-byte little-endian length and its bytes into a plaintext stream,
//! cuts that stream into chunks that fit a Noise message, and encrypts each chunk with the next
//! nonce. Queued messages share chunks, and one write carries them all. The receiver decrypts
//! frame after frame with the nonces in order (a dropped, replayed or reordered frame fails
//! authentication) and takes whole messages out of the stream, refusing a length above its
//! bound before it buffers a byte of it.

use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use snow::StatelessTransportState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

/// The largest Noise message.
pub(crate) const NOISE_MESSAGE_MAX: usize = 65_535;
/// The authentication tag each encrypted Noise message carries.
const TAG_BYTES: usize = 16;
/// Plaintext bytes in one frame, at most.
const CHUNK_MAX: usize = NOISE_MESSAGE_MAX - TAG_BYTES;
/// The length prefix of a message inside the stream.
const LENGTH_BYTES: usize = 4;

/// Why a link ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkError {
    /// The connection failed or closed.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// A frame longer than a Noise message.
    #[error("oversized frame")]
    OversizedFrame,
    /// A frame that does not decrypt with the next nonce: forged, corrupted, replayed or
    /// reordered.
    #[error("frame failed decryption")]
    Decryption,
    /// A message longer than the bound.
    #[error("message of {0} bytes over the bound")]
    OversizedMessage(usize),
    /// The peer closed the connection.
    #[error("closed by the peer")]
    Closed,
}

impl LinkError {
    /// The name this failure is counted under.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            LinkError::Io(_) => "connection error",
            LinkError::OversizedFrame => "oversized frame",
            LinkError::Decryption => "frame failed decryption",
            LinkError::OversizedMessage(_) => "oversized message",
            LinkError::Closed => "closed by the peer",
        }
    }
}

/// The frame codec: a 4-byte length, at most one Noise message.
pub(crate) fn frame_codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .max_frame_length(NOISE_MESSAGE_MAX)
        .new_codec()
}

/// Reads frames from a connection.
pub(crate) struct FrameReader {
    read: OwnedReadHalf,
    buffer: BytesMut,
    codec: LengthDelimitedCodec,
}

impl FrameReader {
    pub(crate) fn new(read: OwnedReadHalf) -> Self {
        Self { read, buffer: BytesMut::with_capacity(2 * NOISE_MESSAGE_MAX), codec: frame_codec() }
    }

    /// The next whole frame; [`LinkError::Closed`] at the end of the stream.
    pub(crate) async fn next(&mut self) -> Result<BytesMut, LinkError> {
        loop {
            match self.codec.decode(&mut self.buffer) {
                Ok(Some(frame)) => return Ok(frame),
                Ok(None) => {}
                Err(_) => return Err(LinkError::OversizedFrame),
            }
            if self.read.read_buf(&mut self.buffer).await? == 0 {
                return Err(LinkError::Closed);
            }
        }
    }
}

/// Writes frames to a connection, many in one system call.
pub(crate) struct FrameWriter {
    write: OwnedWriteHalf,
    out: BytesMut,
    codec: LengthDelimitedCodec,
}

impl FrameWriter {
    pub(crate) fn new(write: OwnedWriteHalf) -> Self {
        Self { write, out: BytesMut::new(), codec: frame_codec() }
    }

    /// Adds a frame to the next write.
    pub(crate) fn push(&mut self, frame: Bytes) -> Result<(), LinkError> {
        self.codec.encode(frame, &mut self.out).map_err(|_| LinkError::OversizedFrame)
    }

    /// Writes what was pushed.
    pub(crate) async fn flush(&mut self) -> Result<(), LinkError> {
        self.write.write_all(&self.out).await?;
        self.out.clear();
        Ok(())
    }
}

/// The sending half of a session: messages in, encrypted frames out.
pub(crate) struct Sealer {
    noise: Arc<StatelessTransportState>,
    nonce: u64,
    plain: Vec<u8>,
}

impl Sealer {
    pub(crate) fn new(noise: Arc<StatelessTransportState>) -> Self {
        Self { noise, nonce: 0, plain: Vec::new() }
    }

    /// Adds a message to the plaintext stream.
    pub(crate) fn push(&mut self, message: &[u8]) {
        let length = u32::try_from(message.len()).expect("messages are bounded far below 4 GiB");
        self.plain.extend_from_slice(&length.to_le_bytes());
        self.plain.extend_from_slice(message);
    }

    /// Bytes pushed and not yet sealed.
    pub(crate) fn pending(&self) -> usize {
        self.plain.len()
    }

    /// Encrypts what was pushed into frames for `writer`.
    pub(crate) fn seal_into(&mut self, writer: &mut FrameWriter) -> Result<(), LinkError> {
        for chunk in self.plain.chunks(CHUNK_MAX) {
            let mut frame = vec![0u8; chunk.len() + TAG_BYTES];
            let written = self
                .noise
                .write_message(self.nonce, chunk, &mut frame)
                .map_err(|_| LinkError::Decryption)?;
            frame.truncate(written);
            self.nonce += 1;
            writer.push(Bytes::from(frame))?;
        }
        self.plain.clear();
        Ok(())
    }
}

/// The receiving half of a session: encrypted frames in, messages out.
pub(crate) struct Opener {
    noise: Arc<StatelessTransportState>,
    nonce: u64,
    plain: BytesMut,
    chunk: Vec<u8>,
    message_bytes_max: usize,
}

impl Opener {
    pub(crate) fn new(noise: Arc<StatelessTransportState>, message_bytes_max: usize) -> Self {
        Self {
            noise,
            nonce: 0,
            plain: BytesMut::new(),
            chunk: vec![0; NOISE_MESSAGE_MAX],
            message_bytes_max,
        }
    }

    /// Changes the bound on a message's length (once the peer is known).
    pub(crate) fn set_message_bytes_max(&mut self, message_bytes_max: usize) {
        self.message_bytes_max = message_bytes_max;
    }

    /// Decrypts a frame with the next nonce onto the plaintext stream.
    pub(crate) fn open(&mut self, frame: &[u8]) -> Result<(), LinkError> {
        let read = self
            .noise
            .read_message(self.nonce, frame, &mut self.chunk)
            .map_err(|_| LinkError::Decryption)?;
        self.nonce += 1;
        self.plain.extend_from_slice(&self.chunk[..read]);
        // A length over the bound is refused as soon as it is readable.
        self.peek_length().map(|_| ())
    }

    fn peek_length(&self) -> Result<Option<usize>, LinkError> {
        let Some(prefix) = self.plain.get(..LENGTH_BYTES) else { return Ok(None) };
        let length = u32::from_le_bytes(prefix.try_into().expect("four bytes")) as usize;
        if length > self.message_bytes_max {
            return Err(LinkError::OversizedMessage(length));
        }
        Ok(Some(length))
    }

    /// The next whole message in the stream, if one is complete.
    pub(crate) fn next_message(&mut self) -> Result<Option<Bytes>, LinkError> {
        let Some(length) = self.peek_length()? else { return Ok(None) };
        if self.plain.len() < LENGTH_BYTES + length {
            return Ok(None);
        }
        self.plain.advance(LENGTH_BYTES);
        Ok(Some(self.plain.split_to(length).freeze()))
    }
}
