//! Iterations (the paper's §3): proposing, the iteration timer, and moving to the next
//! iteration when one is notarized.

use agora_consensus::Ctx;
use agora_crypto::{Digest, domain};
use agora_types::{Batch, Block, Certificate, Height, Round, Transaction};
use rustc_hash::FxHashSet;

use crate::persist::{CHECKPOINT_AFTER_RECORDS, SimplexRecord};
use crate::{Proposal, Simplex, SimplexMessage, SimplexTimer, SimplexWeakening, skip_statement};

impl Simplex {
    /// Enters `iteration` (only forwards): arms its timer, and lets its leader propose.
    pub(crate) fn enter_iteration(&mut self, ctx: &mut Ctx<'_, Self>, iteration: u64) {
        if iteration <= self.iteration {
            return;
        }
        ctx.cancel_timer(SimplexTimer::Timeout(self.iteration));
        self.iteration = iteration;
        self.entered_ns = ctx.now_ns();
        ctx.set_timer(SimplexTimer::Timeout(iteration), self.config.timeout_ns());
        self.first_proposal.retain(|h, _| *h >= iteration);
        if self.records_since_checkpoint >= CHECKPOINT_AFTER_RECORDS {
            self.checkpoint(ctx);
        }
        self.reforward(ctx);
    }

    /// §3 "Next iteration": the notarization `certificate` of `iteration` (of the block
    /// `block`, or of the dummy block when `None`) moves this node past it. Unless it voted
    /// to skip the iteration (its timer fired), it first sends ⟨finalize, h⟩.
    pub(crate) fn leave_iteration(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        iteration: u64,
        block: Option<Digest>,
        certificate: Certificate,
    ) {
        let votes = self.own_votes.get(&iteration).copied().unwrap_or_default();
        let skipped =
            votes.skip.is_some() && !self.config.weakened(SimplexWeakening::FinalizeAfterSkip);
        if let Some(digest) = block
            && !skipped
            && votes.finalize.is_none()
        {
            let statement = agora_types::Statement {
                phase: agora_types::Phase::Finalize,
                round: Round(iteration),
                height: Height(0),
                value: digest,
            };
            self.stats.finalize_votes_cast += 1;
            self.cast(ctx, statement);
        }
        self.entry_certificate = Some(certificate);
        self.enter_iteration(ctx, iteration + 1);
    }

    /// What may have become possible after anything this node learned: the leader proposes,
    /// the node votes for the current iteration's proposal, a waiting finalization applies.
    pub(crate) fn progress(&mut self, ctx: &mut Ctx<'_, Self>) {
        if self.iteration == 0 {
            return;
        }
        self.propose(ctx, false);
        self.try_vote(ctx);
        if let Some(finalization) = self.pending_finalization.take() {
            self.try_finalize(ctx, finalization);
        }
    }

    /// §3 "Propose": the leader of the current iteration, once it sees a notarized blockchain
    /// of length h − 1, proposes a block extending it, once. With nothing pending it waits
    /// [`SimplexConfig::empty_block_after_ns`](crate::SimplexConfig) into the iteration
    /// (`empty` says the wait is over).
    pub(crate) fn propose(&mut self, ctx: &mut Ctx<'_, Self>, empty: bool) {
        let h = self.iteration;
        if self.leader_of(h) != self.me || self.last_proposed >= h {
            return;
        }
        let Some(parent) = self.chain.parent_for(h).cloned() else { return };
        let in_chain = self.ids_on_unfinalized_chain(&parent.digest());
        let txs = ctx.mempool().select(&self.config.batch, &|id| in_chain.contains(id));
        let due = self.entered_ns.saturating_add(self.config.empty_block_after_ns);
        if txs.is_empty() && !empty && ctx.now_ns() < due {
            ctx.set_timer(SimplexTimer::ProposeEmpty(h), due - ctx.now_ns());
            return;
        }
        let batch = Batch::new(txs).expect("batch limits are within the type's limits");
        let height = Height(parent.height().0 + 1);
        let block = Block::new(parent.digest(), Round(h), height, self.me, ctx.now_ns(), batch);
        let signature = self.key.sign(&domain::PROPOSAL, block.digest().as_bytes());
        let proposal = Proposal { block, signature };
        self.stats.proposals += 1;
        self.last_proposed = h;
        self.persist(ctx, &SimplexRecord::Adopted(proposal.clone()));
        ctx.broadcast(SimplexMessage::Propose(proposal.clone()));
        self.on_proposal(ctx, self.me, proposal);
    }

    /// §3 "Timeout": the timer of the current iteration fired. The first time, the node votes
    /// for the iteration's dummy block; every time, it sends again its votes of the iteration
    /// and the certificate that brought it here (either may have been lost before GST), votes
    /// to skip the earlier iterations it cannot see covered, and asks a peer for what it
    /// misses. Then the timer runs again.
    pub(crate) fn on_timeout(&mut self, ctx: &mut Ctx<'_, Self>) {
        let h = self.iteration;
        self.stats.timeouts += 1;
        let votes = self.own_votes.get(&h).copied().unwrap_or_default();
        match votes.skip {
            None if votes.finalize.is_none() => {
                self.stats.skips_cast += 1;
                self.cast(ctx, skip_statement(h));
            }
            None => {}
            Some(skip) => ctx.broadcast(SimplexMessage::Vote(skip)),
        }
        if let Some(vote) = votes.block {
            ctx.broadcast(SimplexMessage::Vote(vote));
        }
        if let Some(certificate) = self.entry_certificate.clone() {
            ctx.broadcast(SimplexMessage::Certificate(certificate));
        }
        let missing = self.late_skips(ctx);
        if missing || !self.orphans.is_empty() || self.pending_finalization.is_some() {
            let peer = self.peer_for(h);
            self.ask_for_sync(ctx, peer);
        }
        ctx.set_timer(SimplexTimer::Timeout(h), self.config.timeout_ns());
    }

    /// The transaction ids already on the unfinalized chain ending at `tip`, which a proposal
    /// extending it must not repeat.
    pub(crate) fn ids_on_unfinalized_chain(&self, tip: &Digest) -> FxHashSet<Digest> {
        self.chain
            .unfinalized_ancestry(tip)
            .into_iter()
            .flat_map(|b| b.batch().transactions().iter().map(Transaction::id))
            .collect()
    }
}
