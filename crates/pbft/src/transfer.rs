//! State transfer (TOCS 2002): a replica that learns of a stable checkpoint beyond what it
//! executed fetches the blocks from the checkpoint's signers and checks them against the
//! certified log digest.

use agora_consensus::Ctx;
use agora_types::{Block, NodeId, SeqNo};

use crate::persist::PbftRecord;
use crate::{Pbft, PbftDrop, PbftMessage, PbftTimer, chain};

impl Pbft {
    /// TOCS, state transfer: Asks the target checkpoint's signers, one after another, for the
    /// blocks up to it.
    pub(crate) fn start_fetch(&mut self, ctx: &mut Ctx<'_, Self>) {
        let Some(target) = &self.fetch_target else { return };
        let signers: Vec<NodeId> = match &target.certificate {
            Some(c) => c.signers().filter(|s| *s != self.me).collect(),
            None => return,
        };
        if signers.is_empty() {
            return;
        }
        let peer = signers[self.fetch_round % signers.len()];
        self.fetch_round += 1;
        let from = self
            .fetch_buffer
            .last_key_value()
            .map_or(self.last_executed, |(s, _)| (*s).max(self.last_executed))
            + 1;
        ctx.send(peer, PbftMessage::Fetch { from, to: target.seq });
        ctx.set_timer(PbftTimer::Fetch, self.config.view_timeout_ns / 2 + 1);
    }

    /// TOCS, state transfer: Answers a FETCH from the retained executed blocks, at most
    /// `fetch_blocks_max`.
    pub(crate) fn on_fetch(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        from_replica: NodeId,
        from: SeqNo,
        to: SeqNo,
    ) {
        if from > to {
            return self.drop_message(PbftDrop::EmptyFetch);
        }
        let blocks: Vec<Block> = self
            .executed
            .range(from..=to)
            .take(self.config.fetch_blocks_max)
            .map(|(_, e)| e.block.clone())
            .collect();
        if !blocks.is_empty() {
            ctx.send(from_replica, PbftMessage::Blocks(blocks));
        }
    }

    /// TOCS, state transfer: Fetched blocks are buffered until they reach the target checkpoint;
    /// they are executed only if their chain digest is the certified one.
    pub(crate) fn on_blocks(&mut self, ctx: &mut Ctx<'_, Self>, blocks: Vec<Block>) {
        let Some(target) = self.fetch_target.clone() else { return };
        for block in blocks.into_iter().take(self.config.fetch_blocks_max) {
            let seq = SeqNo(block.height().0);
            if seq > self.last_executed && seq <= target.seq {
                self.fetch_buffer.entry(seq).or_insert(block);
            }
        }
        let wanted = (self.last_executed.0 + 1..=target.seq.0).map(SeqNo);
        if !wanted.clone().all(|s| self.fetch_buffer.contains_key(&s)) {
            self.start_fetch(ctx);
            return;
        }
        let mut digest = self.log_digest;
        for s in wanted.clone() {
            digest = chain(&digest, &self.fetch_buffer[&s].digest());
        }
        if digest != target.digest {
            self.drop_message(PbftDrop::FetchMismatch);
            self.fetch_buffer.clear();
            self.start_fetch(ctx);
            return;
        }
        for s in wanted {
            let block = self.fetch_buffer.remove(&s).expect("checked above");
            self.stats.transferred_blocks += 1;
            self.slots.remove(&s);
            let record = self.persist(ctx, &PbftRecord::Fetched(block.clone()));
            self.execute(ctx, block, None, record, target.certificate.as_ref());
        }
        self.own_checkpoints.insert(target.seq, self.log_digest);
        self.fetch_buffer.clear();
        self.fetch_target = None;
        ctx.cancel_timer(PbftTimer::Fetch);
        // Executing the fetched blocks may already have made the target stable, from the
        // checkpoints this replica held for it.
        if target.seq > self.stable.seq {
            self.make_stable(ctx, target);
        }
        self.execute_ready(ctx);
    }
}
