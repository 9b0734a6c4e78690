//! Finality (the paper's §3, "Finalize") and what a node keeps of it to help others: three
//! adjacent notarized blocks with consecutive epochs finalize the chain up to the second.

use agora_consensus::Ctx;
use agora_types::{Block, Certificate, Epoch, Height, NodeId, Round, Vote};

use crate::tree::ConflictingFinality;
use crate::{Streamlet, StreamletDrop, StreamletMessage, vote_statement};

impl Streamlet {
    /// §3 "Finalize": outputs the newly final blocks in log order, exactly once each, and keeps
    /// their proofs for nodes that fall behind.
    pub(crate) fn commit_finalized(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        finalized: Result<Vec<Block>, ConflictingFinality>,
    ) {
        let blocks = match finalized {
            Ok(blocks) => blocks,
            Err(_) => {
                self.stats.conflicting_finality += 1;
                return;
            }
        };
        if blocks.is_empty() {
            return;
        }
        // Each block's notarization, taken before finality prunes the votes below the new tip:
        // with the notarizations of the blocks after it, it shows the block final.
        let proofs: Vec<Certificate> =
            blocks.iter().map(|b| self.keeper.certificate_of(&vote_statement(b), None)).collect();
        for (block, proof) in self.note_finalized(blocks).into_iter().zip(proofs) {
            ctx.commit_proven(block, vec![proof]);
        }
        // The new finalized tip stands for everything the journal held before it.
        self.checkpoint(ctx);
    }

    /// What finality changes in the node's memory (the ids it refuses again, the proofs it
    /// keeps, what it prunes); returns the blocks to commit.
    pub(crate) fn note_finalized(&mut self, blocks: Vec<Block>) -> Vec<Block> {
        if blocks.is_empty() {
            return blocks;
        }
        for block in &blocks {
            for tx in block.batch().transactions() {
                self.finalized_txs.insert(tx.id());
                self.forwarding.forget(&tx.id());
            }
            self.keep_finalized_proof(block);
        }
        let horizon = Epoch(self.tree.finalized_tip().round().0);
        self.progress_epoch = self.epoch;
        let kept = self.adopted.split_off(&horizon);
        self.adopted = kept;
        self.adopted_count = self.adopted.values().map(Vec::len).sum();
        self.own_votes = self.own_votes.split_off(&horizon);
        self.keeper.prune_below(Round(horizon.0));
        self.seen.retain(|e, _| *e >= horizon);
        self.proposals_taken.retain(|e, _| *e >= horizon);
        self.prune_orphans();
        blocks
    }

    /// Keeps a newly finalized block's signed proposal and notarization for [`Self::on_sync`]
    /// (before the votes below the new finalized tip are pruned).
    pub(crate) fn keep_finalized_proof(&mut self, block: &Block) {
        if self.config.sync_blocks_max == 0 {
            return;
        }
        let digest = block.digest();
        let epoch = Epoch(block.round().0);
        let proposal = self
            .adopted
            .get(&epoch)
            .and_then(|ps| ps.iter().find(|p| p.block.digest() == digest).cloned());
        let Some(proposal) = proposal else { return };
        let certificate = self.keeper.certificate_of(&vote_statement(block), None);
        self.finalized_proofs.insert(block.height(), (proposal, certificate));
        while self.finalized_proofs.len() > self.config.sync_blocks_max {
            self.finalized_proofs.pop_first();
        }
    }

    /// A member asks for the finalized blocks above its finalized height: send it, in height
    /// order, the kept proposals and the votes that notarized them, as echoes (they are
    /// checked like any proposal and vote). An honest node asks at most once per
    /// [`StreamletConfig::resync_after_epochs`], so a member is answered no more often than
    /// that: a Byzantine one cannot turn its two-byte requests into a stream of blocks.
    pub(crate) fn on_sync(&mut self, ctx: &mut Ctx<'_, Self>, from: NodeId, finalized: Height) {
        if from == self.me || !self.committee.contains(from) {
            return;
        }
        let every = self.config.resync_after_epochs.max(1);
        if self.synced_at.get(&from).is_some_and(|e| self.epoch.0 < e.0.saturating_add(every)) {
            return self.drop_message(StreamletDrop::SyncAskedTooSoon);
        }
        self.synced_at.insert(from, self.epoch);
        let above = Height(finalized.0.saturating_add(1));
        for (proposal, certificate) in self.finalized_proofs.range(above..).map(|(_, p)| p) {
            ctx.send(from, StreamletMessage::EchoPropose(proposal.clone()));
            let statement = *certificate.statement();
            for (voter, signature) in certificate.signatures() {
                let vote = Vote { statement, voter: *voter, signature: *signature };
                ctx.send(from, StreamletMessage::EchoVote(vote));
            }
        }
    }
}
