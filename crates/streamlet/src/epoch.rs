//! Epochs and proposals (the paper's §3, "Propose"): at the start of epoch e its leader
//! proposes a block extending one of the longest notarized chains it has seen.

use agora_consensus::Ctx;
use agora_crypto::{Digest, domain};
use agora_types::{Batch, Block, Epoch, Height, Round, Transaction};
use rustc_hash::FxHashSet;

use crate::persist::{CHECKPOINT_AFTER_RECORDS, StreamletRecord};
use crate::{Proposal, Streamlet, StreamletMessage, StreamletTimer};

impl Streamlet {
    /// §3 "Propose": a new epoch starts on the clock; its leader proposes and every node arms
    /// the timers of the next epoch, whatever happened in this one.
    pub(crate) fn enter_epoch(&mut self, ctx: &mut Ctx<'_, Self>, epoch: Epoch) {
        self.epoch = epoch;
        let next = Epoch(epoch.0 + 1);
        let now = ctx.now_ns();
        ctx.set_timer(
            StreamletTimer::EpochStart(next),
            self.config.epoch_start_ns(next).saturating_sub(now),
        );
        let mid = self.config.epoch_start_ns(epoch) + self.config.delta_ns;
        if mid > now {
            ctx.set_timer(StreamletTimer::MidEpoch(epoch), mid - now);
        }
        self.first_proposal.retain(|e, _| *e >= epoch);
        if self.records_since_checkpoint >= CHECKPOINT_AFTER_RECORDS {
            self.checkpoint(ctx);
        }
        let stall = self.config.resync_after_epochs.max(1);
        if epoch.0 >= self.progress_epoch.0.saturating_add(stall) {
            self.resync(ctx);
        }
        // A leader that restarted in its own epoch has already proposed in it.
        if self.leader_of(epoch) == self.me && self.last_proposed < epoch {
            self.propose(ctx);
        }
        self.try_vote_current(ctx);
    }

    /// The leader's rule: extend a longest notarized chain with a batch of pending transactions
    /// that are not already on that chain.
    pub(crate) fn propose(&mut self, ctx: &mut Ctx<'_, Self>) {
        let parent = self.tree.best_tip().clone();
        let in_chain = self.ids_on_unfinalized_chain(&parent.digest());
        let txs = ctx.mempool().select(&self.config.batch, &|id| in_chain.contains(id));
        let batch = Batch::new(txs).expect("batch limits are within the type's limits");
        let height = Height(parent.height().0 + 1);
        let block =
            Block::new(parent.digest(), Round(self.epoch.0), height, self.me, ctx.now_ns(), batch);
        let signature = self.key.sign(&domain::PROPOSAL, block.digest().as_bytes());
        let proposal = Proposal { block, signature };
        self.stats.proposals += 1;
        self.last_proposed = self.epoch;
        self.persist(ctx, &StreamletRecord::Adopted(proposal.clone()));
        ctx.broadcast(StreamletMessage::Propose(proposal.clone()));
        self.on_proposal(ctx, self.me, proposal);
    }

    /// The transaction ids already on the unfinalized chain ending at `tip`, which a proposal
    /// extending it must not repeat.
    pub(crate) fn ids_on_unfinalized_chain(&self, tip: &Digest) -> FxHashSet<Digest> {
        self.tree
            .unfinalized_ancestry(tip)
            .into_iter()
            .flat_map(|b| b.batch().transactions().iter().map(Transaction::id))
            .collect()
    }
}
