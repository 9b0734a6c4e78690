//! The application side of a replica: final blocks applied in order, inline or on a thread
//! of their own.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Instant;

use agora_crypto::Digest;
use agora_store::Outcome;
use agora_types::{Block, Certificate};
use crossbeam_channel::{Receiver, Sender};

use crate::replica::{ReplicaEvent, Shared};
use crate::verify::VerdictCheck;
use crate::{ReplicaLedger, ReplicaReport};

/// Final blocks queued for a replica's apply thread at most.
pub(crate) const APPLY_QUEUE_BLOCKS: usize = 256;

/// Blocks an apply thread takes from its queue before it stores them in one transaction.
const STORE_BATCH_BLOCKS: usize = 64;

/// The application side of a replica: it applies final blocks in order, verifying their
/// transactions, stores them with their state digests, and keeps what the report needs.
pub(crate) struct AppSide {
    /// The application over the replica's block store.
    pub(crate) ledger: ReplicaLedger,
    pub(crate) checker: VerdictCheck,
    /// Transactions applied, read by the run's end condition.
    pub(crate) finalized: Arc<AtomicU64>,
    pub(crate) height: u64,
    pub(crate) state_digest: Digest,
    pub(crate) recent_digests: BTreeMap<u64, Digest>,
    pub(crate) finalized_txs: u64,
    pub(crate) last_commit: Option<Instant>,
    pub(crate) shared: Arc<Shared>,
    /// Submission → applied here, for transactions submitted here, ns.
    pub(crate) applied_latencies_ns: Vec<u64>,
    /// The block store failed: nothing more is applied.
    pub(crate) store_error: Option<String>,
    /// Where each applied block is reported, if anywhere.
    pub(crate) events: Option<Sender<ReplicaEvent>>,
    /// Who is told each applied block's proof, if anyone.
    pub(crate) proofs: Option<crate::ProofSink>,
}

impl AppSide {
    /// Applies `block`, of which the transactions submitted at `mine` were submitted here; it
    /// is stored at the next [`AppSide::flush`]. A height the ledger holds (a restarted engine
    /// committing again) is skipped.
    pub(crate) fn apply(&mut self, block: &Block, proof: Vec<Certificate>, mine: &[Instant]) {
        if self.store_error.is_some() {
            return;
        }
        if let Some(sink) = &self.proofs {
            (sink.0)(block.height().0, &proof);
        }
        let applied = match self.ledger.apply(block.clone(), proof, &mut self.checker) {
            Ok(Outcome::Applied(applied)) => applied,
            Ok(Outcome::Held) => return,
            Err(error) => {
                self.store_error = Some(error.to_string());
                return;
            }
        };
        let height = block.height().0;
        if let Some(events) = &self.events {
            let _ = events
                .try_send(ReplicaEvent::Applied { height, state_digest: applied.state_digest });
        }
        self.state_digest = applied.state_digest;
        self.recent_digests.insert(height, applied.state_digest);
        while self.recent_digests.len() > 4_096 {
            self.recent_digests.pop_first();
        }
        self.last_commit = Some(Instant::now());
        // The counts go by height: a height applied before a crash that lost it from the store
        // is applied again after the restart, and counted once.
        if height <= self.height {
            return;
        }
        self.height = height;
        let now = Instant::now();
        for t0 in mine {
            self.applied_latencies_ns.push(now.saturating_duration_since(*t0).as_nanos() as u64);
        }
        // The load's window counts transactions until they are applied where they entered.
        self.shared.final_at_entry.fetch_add(mine.len() as u64, Ordering::Relaxed);
        let txs = block.batch().len() as u64;
        self.finalized_txs += txs;
        self.finalized.fetch_add(txs, Ordering::Relaxed);
    }

    /// Stores what was applied since the last flush, in one transaction.
    pub(crate) fn flush(&mut self) {
        if self.store_error.is_some() {
            return;
        }
        let started = Instant::now();
        match self.ledger.flush() {
            Ok(()) => self.shared.synced("blocks", started.elapsed()),
            Err(error) => self.store_error = Some(error.to_string()),
        }
    }

    /// Applies `first` and what else waits in `queue` (up to a batch), then stores them.
    pub(crate) fn apply_queued(&mut self, first: Final, queue: &Receiver<Final>) {
        for f in std::iter::once(first).chain(queue.try_iter().take(STORE_BATCH_BLOCKS - 1)) {
            self.apply(&f.block, f.proof, &f.mine);
        }
        self.flush();
    }

    pub(crate) fn fill(mut self, report: &mut ReplicaReport) {
        self.flush();
        report.store_error = self.store_error;
        report.height = self.height;
        report.state_digest = self.state_digest;
        report.recent_digests = self.recent_digests;
        report.finalized_txs = self.finalized_txs;
        report.last_commit = self.last_commit;
        report.verdict_hits = self.checker.hits;
        report.verdict_misses = self.checker.misses;
        report.applied_latencies_ns = self.applied_latencies_ns;
    }
}

/// Where a replica applies final blocks.
pub(crate) enum Apply {
    /// On its own thread, between consensus events.
    Inline(Box<AppSide>),
    /// On a thread of its own, fed through a bounded queue.
    Thread { blocks: Sender<Final>, handle: thread::JoinHandle<AppSide> },
}

/// A final block on its way to an apply thread: its proof, and the submission times of its
/// transactions that entered at this replica.
pub(crate) struct Final {
    pub(crate) block: Block,
    pub(crate) proof: Vec<Certificate>,
    pub(crate) mine: Vec<Instant>,
}
