//! Garbage collection and checkpoints (§4.3): every K sequence numbers a replica signs the
//! digest of its executed log; 2f+1 matching CHECKPOINTs make it stable, and the log below it
//! goes.

use agora_consensus::Ctx;
use agora_crypto::Digest;
use agora_types::{Phase, SeqNo, Vote};

use crate::{CheckpointProof, Pbft, PbftDrop, PbftTimer, checkpoint_statement};

impl Pbft {
    /// §4.3: A CHECKPOINT arrives, counted toward a stable certificate.
    pub(crate) fn on_checkpoint(&mut self, ctx: &mut Ctx<'_, Self>, vote: Vote) {
        let s = vote.statement;
        if s.phase != Phase::Checkpoint
            || s.round.0 != 0
            || !s.height.0.is_multiple_of(self.config.checkpoint_interval)
        {
            return self.drop_message(PbftDrop::NotACheckpoint);
        }
        let seq = SeqNo(s.height.0);
        if seq <= self.stable.seq {
            return;
        }
        if seq > self.stable.seq + 1_024 * self.config.checkpoint_interval {
            return self.drop_message(PbftDrop::CheckpointTooFarAhead);
        }
        if self.checkpoints.add(&vote, &self.committee, ctx.checker()).is_err() {
            return self.drop_message(PbftDrop::BadCheckpoint);
        }
        self.check_stable(ctx, seq, s.value);
    }

    /// §4.3: With 2f+1 matching checkpoints for `(seq, digest)`: stable if it is ours, else fetch.
    pub(crate) fn check_stable(&mut self, ctx: &mut Ctx<'_, Self>, seq: SeqNo, digest: Digest) {
        let s = checkpoint_statement(seq, digest);
        if seq <= self.stable.seq || self.checkpoints.signers(&s) < self.quorum {
            return;
        }
        let proof = CheckpointProof {
            seq,
            digest,
            certificate: Some(self.checkpoints.certificate_of(&s, None)),
        };
        self.adopt_checkpoint(ctx, proof);
    }

    /// §4.3: A certified checkpoint: stable if it matches the executed log, fetched if beyond it.
    pub(crate) fn adopt_checkpoint(&mut self, ctx: &mut Ctx<'_, Self>, proof: CheckpointProof) {
        if proof.seq <= self.stable.seq {
            return;
        }
        if self.last_executed >= proof.seq {
            if self.own_checkpoints.get(&proof.seq) == Some(&proof.digest) {
                self.make_stable(ctx, proof);
            } else {
                self.drop_message(PbftDrop::CheckpointDiffersFromLog);
            }
        } else if self.fetch_target.as_ref().is_none_or(|t| t.seq < proof.seq) {
            self.fetch_target = Some(proof);
            self.start_fetch(ctx);
        }
    }

    /// §4.3: The checkpoint is stable: drop the log at or below it; the window moves.
    pub(crate) fn make_stable(&mut self, ctx: &mut Ctx<'_, Self>, proof: CheckpointProof) {
        let h = proof.seq;
        // §4.3: a checkpoint is of an executed state, and h only moves forward.
        assert!(
            proof.seq > self.stable.seq && h <= self.last_executed,
            "the stable checkpoint moves forward and never passes the executed log"
        );
        self.stable = proof;
        self.stats.stable_checkpoints += 1;
        self.slots.retain(|s, _| *s > h);
        self.prepared.retain(|s, _| *s > h);
        self.prepared_records.retain(|s, _| *s > h);
        self.votes.retain(|st| st.height.0 > h.0);
        self.checkpoints.retain(|st| st.height.0 > h.0);
        self.own_checkpoints.retain(|s, _| *s > h);
        self.replies.retain(|s, _| *s + self.config.log_window > h);
        if self.fetch_target.as_ref().is_some_and(|t| t.seq <= h) {
            self.fetch_target = None;
            self.fetch_buffer.clear();
            ctx.cancel_timer(PbftTimer::Fetch);
        }
        // The journal before this point is not needed but for the blocks still live.
        self.checkpoint_due = true;
        self.propose(ctx);
    }
}
