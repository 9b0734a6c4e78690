//! What a run reports: the measures of `DESIGN.md` ("Measures"), per kind and per node.

use std::collections::BTreeMap;

use agora_crypto::Digest;
use agora_types::NodeId;
use serde::Serialize;

use crate::checker::Violation;

pub use agora_consensus::LatencySummary;

/// Messages and bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Traffic {
    /// Messages sent (each recipient of a broadcast counts once).
    pub messages: u64,
    /// Their encoded bytes.
    pub bytes: u64,
}

impl Traffic {
    pub(crate) fn add(&mut self, bytes: u64) {
        self.messages += 1;
        self.bytes += bytes;
    }
}

/// Messages that never reached an engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Drops {
    /// Lost by the network.
    pub loss: u64,
    /// Cut by a partition.
    pub partition: u64,
    /// Arrived at a crashed node.
    pub receiver_down: u64,
    /// Did not decode at the receiver.
    pub decode_error: u64,
}

/// What happened to client transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Submissions {
    /// Accepted by a node that was up and honest when it received them.
    pub accepted: u64,
    /// Already known to the receiving node.
    pub duplicate: u64,
    /// Refused by a full mempool (backpressure).
    pub rejected_full: u64,
    /// Sent to a node that was down.
    pub rejected_down: u64,
    /// Sent to a Byzantine node.
    pub to_byzantine: u64,
}

/// Where the finalized transactions came from (see the checker's validity rule).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FinalizedOrigins {
    /// Submitted by a client and accepted by an honest node: what
    /// [`Submissions::accepted`] counts, finalized.
    pub honest: u64,
    /// Submitted by a client only to a Byzantine node, which put it in a block.
    pub via_byzantine_node: u64,
    /// Signed by a declared Byzantine client (a Byzantine node trading from its own account).
    pub byzantine_client: u64,
    /// Carrying no valid signature: a forgery every application refuses.
    pub invalid_signature: u64,
}

impl FinalizedOrigins {
    /// What Byzantine nodes or clients put in the log: everything but `honest`.
    pub fn injected(&self) -> u64 {
        self.via_byzantine_node + self.byzantine_client + self.invalid_signature
    }
}

/// One block of the agreed log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FinalizedBlock {
    /// Height.
    pub height: u64,
    /// Epoch or view it was proposed in.
    pub round: u64,
    /// Who proposed it.
    pub proposer: NodeId,
    /// Its digest.
    pub digest: Digest,
    /// Transactions in it.
    pub txs: u64,
    /// When it was proposed (the header's creation time).
    pub proposed_at_ns: u64,
    /// When the first honest node finalized it.
    pub finalized_at_ns: u64,
}

/// One node at the end of the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeDetail {
    /// Which.
    pub node: NodeId,
    /// Not Byzantine.
    pub honest: bool,
    /// Up at the end.
    pub up: bool,
    /// Last finalized height.
    pub finalized_height: u64,
    /// Digest of its finalized log (block digests in order).
    pub log_digest: Digest,
    /// Its application's state digest.
    pub state_digest: Digest,
    /// What it sent.
    pub sent: Traffic,
    /// Bytes it received that did not decode.
    pub decode_errors: u64,
    /// Journal syncs its passes made.
    pub journal_syncs: u64,
    /// Bytes its journal holds at the end (pruned at the engine's checkpoints).
    pub journal_bytes: u64,
    /// Times it restarted, in any way.
    pub restarts: u64,
    /// Times it restarted as a fresh engine restored from its journal.
    pub recoveries: u64,
    /// Times it restarted with its application rebuilt from its block store (the newest
    /// snapshot, then the blocks after it).
    pub app_recoveries: u64,
    /// Times it crashed while a journal sync was in flight (losing part of what it wrote).
    pub crashes_mid_sync: u64,
}

/// Wall-clock speed of the simulator itself: the only part of a report that differs between two
/// runs of the same seed.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct SimSpeed {
    /// Wall-clock seconds the run took.
    pub wall_seconds: f64,
    /// Simulated events handled per wall-clock second.
    pub events_per_sec: f64,
    /// Message deliveries per wall-clock second.
    pub deliveries_per_sec: f64,
}

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct SimReport {
    /// Committee size.
    pub nodes: usize,
    /// The seed.
    pub seed: u64,
    /// Simulated time at the end.
    pub end_ns: u64,
    /// No invariant was broken.
    pub safety_ok: bool,
    /// What was broken.
    pub violations: Vec<Violation>,
    /// Client submissions.
    pub submissions: Submissions,
    /// Distinct transactions finalized by an honest node.
    pub txs_finalized: u64,
    /// Where those came from; the four counts add up to `txs_finalized`.
    pub finalized_origins: FinalizedOrigins,
    /// Finalized transactions per simulated second.
    pub tps_sim: f64,
    /// Submission → finalization at the node the client submitted to.
    pub latency: LatencySummary,
    /// The same per class of transaction, when the run set classes
    /// ([`Simulation::set_latency_classes`](crate::Simulation::set_latency_classes)).
    pub latency_by_class: Vec<(String, LatencySummary)>,
    /// All traffic.
    pub messages: Traffic,
    /// Traffic by message kind.
    pub by_kind: BTreeMap<&'static str, Traffic>,
    /// Messages that did not arrive.
    pub dropped: Drops,
    /// The agreed log.
    pub finalized_blocks: Vec<FinalizedBlock>,
    /// Per node.
    pub nodes_detail: Vec<NodeDetail>,
    /// Longest simulated time between two consecutive new heights of the agreed log.
    pub longest_stall_ns: u64,
    /// Simulated events handled.
    pub events: u64,
    /// Messages delivered to engines.
    pub deliveries: u64,
    /// Signature checks asked for, and how many were computed (the rest were memoized).
    pub signature_checks: (u64, u64),
    /// Digest of the trace: equal for two runs exactly when they were event-for-event equal.
    pub trace_digest: Digest,
    /// How fast the simulator ran (wall clock).
    pub speed: SimSpeed,
}

impl SimReport {
    /// The report as one JSON object.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("reports always serialize")
    }
}
