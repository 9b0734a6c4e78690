//! Client requests (§4.1 of the OSDI paper, and §4.4's timer): a backup forwards what its
//! clients submit to the primary, and runs the timer that starts a view change while a request
//! it knows of is not executed.

use std::collections::BTreeSet;

use agora_consensus::{BatchLimits, Ctx};
use agora_crypto::Digest;
use agora_types::Transaction;

use crate::{Pbft, PbftMessage, PbftTimer, Status};

impl Pbft {
    /// §4.1: A replica passes its clients' requests to the primary (while changing view, to the
    /// last primary too).
    pub(crate) fn forward(&self, ctx: &mut Ctx<'_, Self>, txs: Vec<Transaction>) {
        let mut to = BTreeSet::from([self.primary_of(self.view)]);
        if self.status == Status::ViewChanging {
            to.insert(self.primary_of(self.last_normal_view));
        }
        to.remove(&self.me);
        for replica in to {
            ctx.send(replica, PbftMessage::Forward(txs.clone()));
        }
    }

    /// §4.1: The requests waiting in the mempool (but those `skip` names), a bounded number, as
    /// batch-sized FORWARD messages.
    pub(crate) fn pending_forwards(
        &self,
        ctx: &mut Ctx<'_, Self>,
        skip: &dyn Fn(&Digest) -> bool,
    ) -> Vec<PbftMessage> {
        let limits = BatchLimits {
            txs_max: self.config.batch.txs_max.saturating_mul(self.config.max_inflight as usize),
            bytes_max: agora_types::codec::MESSAGE_BYTES_MAX / 2,
        };
        let pending = ctx.mempool().select(&limits, skip);
        pending
            .chunks(self.config.batch.txs_max.max(1))
            .map(|chunk| PbftMessage::Forward(chunk.to_vec()))
            .collect()
    }

    /// §4.4: The timer runs while a request it knows of is not executed: one in its mempool,
    /// or one in a pre-prepare it accepted.
    /// Backups and the primary alike: a primary whose requests do not execute within T is as
    /// stuck as its backups (it may be the primary of a view everyone else has left, having
    /// missed the NEW-VIEW), and asking to change view is how it finds out.
    pub(crate) fn ensure_request_timer(&mut self, ctx: &mut Ctx<'_, Self>) {
        if self.status != Status::Normal || self.request_timer {
            return;
        }
        let pending_slot = self.slots.range(self.last_executed + 1..).next().is_some();
        if pending_slot || !ctx.mempool().is_empty() {
            self.request_timer = true;
            ctx.set_timer(PbftTimer::Request(self.view), self.config.view_timeout_ns);
        }
    }

    /// §4.4: Progress restarts the request timer for what still waits.
    pub(crate) fn restart_request_timer(&mut self, ctx: &mut Ctx<'_, Self>) {
        if self.request_timer {
            ctx.cancel_timer(PbftTimer::Request(self.view));
            self.request_timer = false;
        }
        self.ensure_request_timer(ctx);
    }
}
