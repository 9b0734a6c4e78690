//! The trace: every event of a run, in order, as data; and a digest of it.

use std::io::{self, Write};

use agora_crypto::{Digest, DomainHasher, domain};
use agora_types::{NodeId, codec};
use serde::Serialize;

use crate::config::TraceMode;

/// Why a message did not arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// The network lost it.
    Loss,
    /// A partition separated sender and receiver.
    Partition,
    /// The receiver was down when it arrived.
    ReceiverDown,
}

/// One thing that happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum TraceEvent {
    /// A message left `from` for `to`.
    Send {
        /// Simulated time.
        t_ns: u64,
        /// Sender.
        from: NodeId,
        /// Recipient.
        to: NodeId,
        /// Message kind (`"raw"` for injected bytes).
        kind: &'static str,
        /// Encoded size.
        bytes: u64,
        /// The protocol instance it belongs to, if the message says.
        instance: Option<u64>,
    },
    /// A message was handed to `to`'s engine.
    Deliver {
        /// Simulated time.
        t_ns: u64,
        /// Sender.
        from: NodeId,
        /// Recipient.
        to: NodeId,
        /// Message kind.
        kind: &'static str,
        /// When it left the sender.
        sent_ns: u64,
        /// The protocol instance it belongs to, if the message says.
        instance: Option<u64>,
    },
    /// A message was dropped.
    Drop {
        /// Simulated time.
        t_ns: u64,
        /// Sender.
        from: NodeId,
        /// Intended recipient.
        to: NodeId,
        /// Why.
        reason: DropReason,
    },
    /// Bytes that did not decode reached `to`.
    DecodeError {
        /// Simulated time.
        t_ns: u64,
        /// Sender.
        from: NodeId,
        /// Recipient.
        to: NodeId,
        /// How many bytes.
        bytes: u64,
    },
    /// A timer fired.
    Timer {
        /// Simulated time.
        t_ns: u64,
        /// Whose.
        node: NodeId,
    },
    /// A client submitted a transaction.
    Submit {
        /// Simulated time.
        t_ns: u64,
        /// To whom.
        node: NodeId,
        /// Its id.
        tx: Digest,
        /// Whether the node accepted it.
        accepted: bool,
    },
    /// A node finalized a block.
    Commit {
        /// Simulated time.
        t_ns: u64,
        /// Who.
        node: NodeId,
        /// Height.
        height: u64,
        /// Block digest.
        digest: Digest,
        /// Transactions in it.
        txs: u64,
    },
    /// A node crashed.
    Crash {
        /// Simulated time.
        t_ns: u64,
        /// Who.
        node: NodeId,
    },
    /// A node restarted.
    Restart {
        /// Simulated time.
        t_ns: u64,
        /// Who.
        node: NodeId,
    },
}

/// Collects the trace as configured.
#[derive(Debug)]
pub struct Trace {
    mode: TraceMode,
    hasher: DomainHasher,
    events: Vec<TraceEvent>,
    count: u64,
    /// The last event's encoding, reused so that hashing allocates nothing.
    scratch: Vec<u8>,
}

impl Trace {
    pub(crate) fn new(mode: TraceMode) -> Self {
        Self {
            mode,
            hasher: domain::TRACE.hasher(),
            events: Vec::new(),
            count: 0,
            scratch: Vec::new(),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.mode != TraceMode::Off
    }

    /// Adds `event` (callers check [`Trace::enabled`] first, to skip building it).
    pub(crate) fn push(&mut self, event: TraceEvent) {
        self.count += 1;
        self.scratch.clear();
        // An event is a few labels and numbers, far below the message limit.
        if codec::encode_into(&event, &mut self.scratch).is_ok() {
            self.hasher.update_u64(self.scratch.len() as u64).update(&self.scratch);
        }
        if self.mode == TraceMode::Record {
            self.events.push(event);
        }
    }

    /// The digest of every event so far (equal across runs exactly when the runs were equal).
    pub fn digest(&self) -> Digest {
        self.hasher.finalize()
    }

    /// Events recorded (empty unless the mode is [`TraceMode::Record`]).
    pub fn events(&self) -> &[TraceEvent] {
        &self.events
    }

    /// Events seen.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// True when nothing was traced.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Writes the recorded events as JSON lines.
    pub fn write_jsonl(&self, out: &mut dyn Write) -> io::Result<()> {
        for event in &self.events {
            serde_json::to_writer(&mut *out, event)?;
            out.write_all(b"\n")?;
        }
        Ok(())
    }
}
