//! Client replies (§4.1): every replica replies for what it executes; a client counts its
//! transaction final at f+1 matching replies.

use std::collections::BTreeSet;

use agora_consensus::Ctx;
use agora_types::{NodeId, SeqNo};

use crate::{CLIENT_LATENCIES_MAX, Pbft, PbftDrop, Reply};

impl Pbft {
    /// §4.1: A REPLY arrives, counted for the transactions this replica's clients submitted.
    pub(crate) fn on_reply(&mut self, ctx: &mut Ctx<'_, Self>, from: NodeId, reply: Reply) {
        let seq = reply.seq;
        if seq.0 <= self.stable.seq.0.saturating_sub(self.config.log_window)
            || seq > self.high_watermark() + self.config.log_window
        {
            return self.drop_message(PbftDrop::ReplyOutsideWindow);
        }
        self.replies.entry(seq).or_default().entry(reply.digest).or_default().insert(from);
        self.check_client(ctx, seq);
    }

    /// §4.1: The client's view: its transaction is final once f+1 replicas reply with the same
    /// result.
    pub(crate) fn check_client(&mut self, ctx: &mut Ctx<'_, Self>, seq: SeqNo) {
        let Some(executed) = self.executed.get(&seq) else { return };
        let digest = executed.block.digest();
        let matching = self.replies.get(&seq).and_then(|r| r.get(&digest)).map_or(0, BTreeSet::len);
        if matching < self.committee.one_honest() {
            return;
        }
        let now = ctx.now_ns();
        for tx in executed.block.batch().transactions() {
            if let Some(t0) = self.submitted_at.remove(&tx.id())
                && self.client_latencies_ns.len() < CLIENT_LATENCIES_MAX
            {
                self.client_latencies_ns.push(now.saturating_sub(t0));
            }
        }
    }
}
