//! State transfer (TOCS 2002): a replica that learns of a stable checkpoint beyond what it
//! executed fetches the blocks from the checkpoint's signers and checks them against the
//! certified log digest.
//!
//! Beyond the paper, catching up between checkpoints: a replica that sees a sequence number
//! committed above its executed log, or that restarts, asks for the blocks it lacks, and takes
//! each on its own commit certificate. Without it a replica that missed the last blocks before
//! the load stopped waits for a checkpoint that never comes, and its request timer moves it into
//! a view change no one else wants (`tests/restart.rs` of `agora-runtime`, PBFT seed 2 under
//! load: the victim stayed at height 80 of 93, asking alone for view 1).

use agora_consensus::Ctx;
use agora_types::{NodeId, SeqNo, codec};

use crate::persist::PbftRecord;
use crate::{FetchedBlock, Pbft, PbftDrop, PbftMessage, PbftTimer, chain};

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
    /// `fetch_blocks_max` and half a message's bytes, each with its commit certificate when this
    /// replica holds one.
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
        // Whole blocks within half a message, and at least one (a block fits in a message).
        let mut bytes = 0;
        let blocks: Vec<FetchedBlock> = self
            .executed
            .range(from..=to)
            .take(self.config.fetch_blocks_max)
            .take_while(|(_, e)| {
                let len = e.block.encoded_len();
                bytes += len;
                bytes <= codec::MESSAGE_BYTES_MAX / 2 || bytes == len
            })
            .map(|(_, e)| FetchedBlock { block: e.block.clone(), commit: e.commit.clone() })
            .collect();
        if !blocks.is_empty() {
            ctx.send(from_replica, PbftMessage::Blocks(blocks));
        }
    }

    /// Fetched blocks: the next ones in sequence that carry a valid commit certificate execute at
    /// once; the others are buffered until they reach the target checkpoint, and execute only if
    /// their chain digest is the certified one (TOCS). An answer that moved the executed log is
    /// followed by a FETCH for the next page, to the same replica (which answers nothing when it
    /// has nothing more).
    pub(crate) fn on_blocks(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        sender: NodeId,
        blocks: Vec<FetchedBlock>,
    ) {
        let before = self.last_executed;
        for fetched in blocks.into_iter().take(self.config.fetch_blocks_max) {
            let seq = SeqNo(fetched.block.height().0);
            if seq <= self.last_executed {
                continue;
            }
            if seq == self.last_executed + 1 && fetched.commit.is_some() {
                if !fetched.certified(&self.committee, self.quorum, ctx.checker()) {
                    self.drop_message(PbftDrop::FetchedCommitInvalid);
                    break;
                }
                self.execute_fetched(ctx, fetched);
                continue;
            }
            if self.fetch_target.as_ref().is_some_and(|t| seq <= t.seq) {
                self.fetch_buffer.entry(seq).or_insert(fetched.block);
            }
        }
        self.fetch_buffer.retain(|s, _| *s > self.last_executed);
        if self.fetch_target.as_ref().is_some_and(|t| t.seq > self.last_executed) {
            self.transfer_to_checkpoint(ctx);
        } else if let Some(target) = self.fetch_target.clone() {
            // Certified blocks reached the target: it is stable now if it matches.
            self.fetch_target = None;
            self.fetch_buffer.clear();
            ctx.cancel_timer(PbftTimer::Fetch);
            self.adopt_checkpoint(ctx, target);
        }
        self.execute_ready(ctx);
        if self.last_executed > before {
            self.progressed_after_fetch(ctx, sender);
        }
    }

    /// A block fetched on its own commit certificate executes, journalled first like every
    /// fetched block.
    fn execute_fetched(&mut self, ctx: &mut Ctx<'_, Self>, fetched: FetchedBlock) {
        let seq = SeqNo(fetched.block.height().0);
        self.stats.transferred_blocks += 1;
        self.stats.certified_blocks += 1;
        self.slots.remove(&seq);
        let record =
            self.persist(ctx, &PbftRecord::Fetched(fetched.block.clone(), fetched.commit.clone()));
        self.execute(ctx, fetched.block, None, record, fetched.commit.as_ref());
    }

    /// TOCS, state transfer: with every block up to the target buffered and chaining into its
    /// certified log digest, executes them and makes the checkpoint stable; else asks again.
    fn transfer_to_checkpoint(&mut self, ctx: &mut Ctx<'_, Self>) {
        let Some(target) = self.fetch_target.clone() else { return };
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
            let record = self.persist(ctx, &PbftRecord::Fetched(block.clone(), None));
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
    }

    /// A restarted replica does not know how far the others went while it was down, and if the
    /// load stopped meanwhile no message will tell it: it asks every peer once for the blocks
    /// after its executed log (each reply that brings blocks leads to the next page).
    pub(crate) fn ask_what_was_missed(&mut self, ctx: &mut Ctx<'_, Self>) {
        let from = self.last_executed + 1;
        let to = from + (self.config.fetch_blocks_max as u64 - 1);
        ctx.broadcast(PbftMessage::Fetch { from, to });
    }

    /// After fetched blocks executed: the next page from the same replica, and the catch-up
    /// ends once it reached what was seen committed.
    fn progressed_after_fetch(&mut self, ctx: &mut Ctx<'_, Self>, sender: NodeId) {
        let from = self.last_executed + 1;
        let to = from + (self.config.fetch_blocks_max as u64 - 1);
        ctx.send(sender, PbftMessage::Fetch { from, to });
        if self.catch_up.as_ref().is_some_and(|c| c.to <= self.last_executed) {
            self.catch_up = None;
            ctx.cancel_timer(PbftTimer::CatchUp);
        }
    }

    /// The catch-up timer: while a sequence number seen committed is still above the executed
    /// log, ask one of its committers (in turn) for the blocks between, and look again later.
    pub(crate) fn continue_catch_up(&mut self, ctx: &mut Ctx<'_, Self>) {
        let Some(catch_up) = self.catch_up.as_mut() else { return };
        if catch_up.to <= self.last_executed {
            self.catch_up = None;
            return;
        }
        let peers: Vec<NodeId> = catch_up.from.iter().copied().filter(|p| *p != self.me).collect();
        if let Some(peer) = peers.get(catch_up.round % peers.len().max(1)) {
            catch_up.round += 1;
            let from = self.last_executed + 1;
            let to = catch_up.to.min(from + (self.config.fetch_blocks_max as u64 - 1));
            ctx.send(*peer, PbftMessage::Fetch { from, to });
        }
        ctx.set_timer(PbftTimer::CatchUp, self.config.view_timeout_ns / 4 + 1);
    }

    /// §4.4's request timer ran out while this replica knows of a sequence number committed
    /// above its executed log: the primary is at work and this replica is the one behind. A view
    /// change only it wants would take it out of the agreement, so it asks for the blocks first
    /// and waits one more period; `false` (go ahead with the view change) if it deferred at this
    /// executed position already and nothing came of it.
    pub(crate) fn defer_view_change(&mut self, ctx: &mut Ctx<'_, Self>) -> bool {
        let behind = self.catch_up.as_ref().is_some_and(|c| c.to > self.last_executed);
        if !behind || self.deferred_at == Some(self.last_executed) {
            return false;
        }
        self.deferred_at = Some(self.last_executed);
        self.stats.view_changes_deferred += 1;
        self.continue_catch_up(ctx);
        self.ensure_request_timer(ctx);
        true
    }
}
