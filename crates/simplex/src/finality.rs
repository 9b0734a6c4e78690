//! Finality (the paper's §3, "Finalize"), and what a node keeps of it to help others: a quorum
//! of finalize votes for iteration h finalizes h's notarized block and its whole prefix.

use agora_consensus::Ctx;
use agora_types::{Block, Certificate, Height, NodeId, Phase, Round};

use crate::chain::FinalizeError;
use crate::{Proposal, Simplex, SimplexDrop, SimplexMessage, block_statement, skip_statement};

impl Simplex {
    /// §3 "Finalize": applies the finalization `certificate`, unless a block on its path has
    /// not arrived (it waits, and the node asks for it) or it conflicts with what is final.
    pub(crate) fn try_finalize(&mut self, ctx: &mut Ctx<'_, Self>, certificate: Certificate) {
        let s = *certificate.statement();
        let h = s.round.0;
        if h <= self.chain.finalized_iteration() {
            return;
        }
        match self.chain.finalize(s.value, ctx.now_ns()) {
            Ok(blocks) => self.commit_final(ctx, blocks, certificate),
            Err(FinalizeError::Missing) => {
                if self.pending_finalization.as_ref().is_none_or(|p| p.statement().round.0 < h) {
                    self.pending_finalization = Some(certificate);
                }
            }
            Err(FinalizeError::Conflict) => self.stats.conflicting_finality += 1,
        }
    }

    /// Outputs newly final blocks in log order, exactly once each: every block with its
    /// notarization, the last also with the finalization. A node behind the finalized
    /// iteration moves past it.
    fn commit_final(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        blocks: Vec<Block>,
        finalization: Certificate,
    ) {
        let Some(tip) = blocks.last().cloned() else { return };
        let mut proofs = self.proofs_of(&blocks);
        if let Some(last) = proofs.last_mut() {
            last.push(finalization.clone());
        }
        for (block, proof) in
            self.note_finalized(blocks, Some(finalization)).into_iter().zip(proofs)
        {
            ctx.commit_proven(block, proof);
        }
        // The new finalized tip stands for everything the journal held before it.
        self.checkpoint(ctx);
        let h = tip.round().0;
        if h >= self.iteration {
            let notarization = block_statement(Phase::Vote, &tip);
            if self.keeper.is_certified(&notarization) {
                self.entry_certificate = Some(self.keeper.certificate_of(&notarization, None));
            }
            self.enter_iteration(ctx, h + 1);
        }
    }

    /// Each block's notarization, when this node holds it.
    pub(crate) fn proofs_of(&self, blocks: &[Block]) -> Vec<Vec<Certificate>> {
        blocks
            .iter()
            .map(|b| {
                let statement = block_statement(Phase::Vote, b);
                if self.keeper.is_certified(&statement) {
                    vec![self.keeper.certificate_of(&statement, None)]
                } else {
                    Vec::new()
                }
            })
            .collect()
    }

    /// What finality changes in the node's memory (the ids it refuses again, the proofs it
    /// keeps, what it prunes); returns the blocks to commit.
    pub(crate) fn note_finalized(
        &mut self,
        blocks: Vec<Block>,
        finalization: Option<Certificate>,
    ) -> Vec<Block> {
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
        let horizon = self.chain.finalized_iteration();
        self.keeper.prune_below(Round(horizon));
        self.first_proposal.retain(|h, _| *h > horizon);
        self.proposals_taken.retain(|h, _| *h > horizon);
        self.own_votes.retain(|h, _| *h > horizon);
        self.proposals.retain(|_, p| p.block.round().0 > horizon);
        if finalization.is_some() {
            self.last_finalization = finalization;
        }
        if self.pending_finalization.as_ref().is_some_and(|p| p.statement().round.0 <= horizon) {
            self.pending_finalization = None;
        }
        self.prune_orphans();
        blocks
    }

    /// Keeps a newly finalized block's signed proposal and notarization for
    /// [`Self::on_sync`] (before the votes below the new finalized tip are pruned).
    fn keep_finalized_proof(&mut self, block: &Block) {
        if self.config.sync_blocks_max == 0 {
            return;
        }
        let statement = block_statement(Phase::Vote, block);
        let Some(proposal) = self.proposals.get(&block.digest()).cloned() else { return };
        if !self.keeper.is_certified(&statement) {
            return;
        }
        let certificate = self.keeper.certificate_of(&statement, None);
        self.finalized_proofs.insert(block.height(), (proposal, certificate));
        while self.finalized_proofs.len() > self.config.sync_blocks_max {
            self.finalized_proofs.pop_first();
        }
    }

    /// A member asks for what this node holds above its finalized height: the finalized
    /// blocks it kept (each notarization, then the proposal), the last finalization, then the
    /// notarized blocks and the skips above the finalized tip. A member is answered at most
    /// once per timeout, so its two-byte requests cannot become a stream of blocks.
    pub(crate) fn on_sync(&mut self, ctx: &mut Ctx<'_, Self>, from: NodeId, finalized: Height) {
        if from == self.me || !self.committee.contains(from) {
            return;
        }
        let now = ctx.now_ns();
        let every = self.config.timeout_ns();
        if self.synced_at.get(&from).is_some_and(|t| now < t.saturating_add(every)) {
            return self.drop_message(SimplexDrop::SyncAskedTooSoon);
        }
        self.synced_at.insert(from, now);
        let above = Height(finalized.0.saturating_add(1));
        for (proposal, certificate) in self.finalized_proofs.range(above..).map(|(_, p)| p) {
            ctx.send(from, SimplexMessage::Certificate(certificate.clone()));
            ctx.send(from, SimplexMessage::Propose(proposal.clone()));
        }
        if let Some(finalization) = &self.last_finalization {
            ctx.send(from, SimplexMessage::Certificate(finalization.clone()));
        }
        let mut notarized: Vec<&Proposal> = self
            .proposals
            .values()
            .filter(|p| self.keeper.is_certified(&block_statement(Phase::Vote, &p.block)))
            .collect();
        notarized.sort_by_key(|p| (p.block.round(), p.block.height()));
        for proposal in notarized {
            let statement = block_statement(Phase::Vote, &proposal.block);
            ctx.send(
                from,
                SimplexMessage::Certificate(self.keeper.certificate_of(&statement, None)),
            );
            ctx.send(from, SimplexMessage::Propose(proposal.clone()));
        }
        let skips_max = 4 * self.config.sync_blocks_max.max(1);
        for j in self.chain.skipped().take(skips_max) {
            let certificate = self.keeper.certificate_of(&skip_statement(j), None);
            ctx.send(from, SimplexMessage::Certificate(certificate));
        }
    }
}
