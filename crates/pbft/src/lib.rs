//! PBFT (Castro & Liskov, "Practical Byzantine Fault Tolerance", OSDI 1999; TOCS 2002) as a
//! sans-IO engine for agora.
//!
//! n = 3f+1 replicas; the primary of view v is replica v mod n. The rules, in the paper's terms,
//! and where they live here:
//!
//! - **Requests**: clients' transactions reach the primary (backups forward them; counted as
//!   `forward`). A transaction is executed once: the mempool refuses known ids, and a
//!   pre-prepare repeating an executed or in-flight transaction is refused (`check_block`).
//! - **Pre-prepare** (`propose`, `on_pre_prepare`): the primary assigns sequence numbers to
//!   batches bounded by count and bytes and broadcasts PRE-PREPARE(v, n, d) with the batch. A
//!   backup accepts it only if the signature and digest check, it is in view v, it has not
//!   accepted another digest for (v, n), and h < n ≤ H. Several sequence numbers may be in
//!   flight at once (pipelining within the watermarks).
//! - **Prepare / commit** (`advance`): *prepared* is the pre-prepare plus 2f matching prepares
//!   from distinct backups (the pre-prepare does not count as a prepare, and neither does a
//!   prepare signed by the primary); then COMMIT; *committed-local* is prepared plus 2f+1
//!   matching commits. Execution is in sequence order, with no gaps.
//! - **Replies**: every replica sends a REPLY for what it executes; the replica a client used
//!   counts the client's transaction final at f+1 matching replies (client-side latency).
//! - **Checkpoints** (`execute`, `on_checkpoint`): every K sequence numbers a replica signs the
//!   digest of its executed log; 2f+1 matching CHECKPOINTs make it stable, the log below it is
//!   garbage-collected, and the watermarks move: h = stable, H = h + L.
//! - **View change** (`start_view_change`, `on_view_change`, `send_new_view`, `on_new_view`): a
//!   backup's timer runs while a request it knows of is not executed; on expiry it sends its
//!   waiting requests to every replica (as a client without a reply retransmits to all, so that
//!   f+1 timers run even when only f replicas' clients were ignored) and broadcasts
//!   VIEW-CHANGE(v+1, stable checkpoint with proof, P = prepared proofs above it, each with its
//!   block). The new primary, with 2f+1 view changes, broadcasts NEW-VIEW(v+1, V, O), where O
//!   re-issues a pre-prepare for every sequence number between the highest stable checkpoint and
//!   the highest prepared one, with the digest of the highest-view prepared proof or a null
//!   request for gaps; V travels with the proofs' blocks stripped (signatures cover the stripped
//!   form), so each block is sent once, in O. Backups recompute O's digests to check it. The wait for NEW-VIEW backs off (T, 2T, 4T, …, capped at
//!   [`PbftConfig::new_view_doublings_max`] doublings); a replica
//!   that sees f+1 view changes for higher views joins the smallest. A PRE-PREPARE that
//!   overtakes the NEW-VIEW of its view is held (bounded, [`PbftConfig::early_pre_prepares_max`])
//!   and checked once the view is installed, since no primary sends a pre-prepare twice; a
//!   replica that restarts mid view change sends its VIEW-CHANGE again and re-arms its timers;
//!   a replica asked by a VIEW-CHANGE for a lower view than the one it is changing to relays
//!   the signed view changes it holds for that view and above, since their senders may have
//!   crashed (`tests/stalls.rs` pins all three).
//! - **State transfer** (`start_fetch`, `on_blocks`): a replica that learns of a stable
//!   checkpoint beyond what it executed fetches the executed blocks from its signers, checks them
//!   against the certified log digest, and executes them.
//!
//! The agreed value d is the digest of a block the primary builds once: a request prepared in one
//! view is re-issued in the next with the same block, so with the same sequence number and
//! digest. Every queue and map is bounded; messages outside the watermarks, for views far ahead,
//! or otherwise invalid are dropped and counted by reason ([`PbftStats`]).

mod messages;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use agora_consensus::{
    BatchLimits, BlockStatus, BlockView, ChainView, Ctx, MempoolError, Protocol, Submitted,
    VoteKeeper, VoteOutcome,
};
use agora_crypto::{Digest, Domain, SecretKey};
use agora_types::{Batch, Block, Committee, Height, NodeId, Phase, SeqNo, Transaction, View, Vote};
use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;

pub use messages::{
    CheckpointProof, NewView, PbftMessage, PrePrepare, PreparedProof, Reply, ViewChange,
    checkpoint_statement, compute_o, null_block, primary, statement,
};

/// The executed-log digest chain: `d_n = H(d_(n-1) ‖ block_n)`; checkpoints sign it.
static LOG: Domain = Domain::new("agora/pbft-log/v1");

/// The digest of the empty executed log.
pub fn genesis_log_digest() -> Digest {
    LOG.hash(b"")
}

fn chain(log: &Digest, block: &Digest) -> Digest {
    LOG.hasher().update_digest(log).update_digest(block).finalize()
}

/// Settings of a PBFT replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PbftConfig {
    /// K: a checkpoint every K sequence numbers.
    pub checkpoint_interval: u64,
    /// L: the log window; sequence numbers in (h, h + L] are accepted. A multiple of K.
    pub log_window: u64,
    /// T: the view-change timeout (NEW-VIEW waits back off from it: T, 2T, 4T, …).
    pub view_timeout_ns: u64,
    /// At most this many doublings of the NEW-VIEW wait (T · 2^k at most): the paper's
    /// unbounded backoff, after a run of failed view changes before GST, grew past any
    /// deadline a client would wait (swarm seeds 680002041 and 680017641: seven view changes
    /// with nothing executed, then a crashed or silent primary, left a wait of 128 T). The cap
    /// must stay above the time a view change takes once the network is timely.
    pub new_view_doublings_max: u32,
    /// Batch bounds for pre-prepares.
    pub batch: BatchLimits,
    /// Sequence numbers the primary keeps in flight (pre-prepared, not executed) at most.
    pub max_inflight: u64,
    /// Executed blocks kept to serve state transfer.
    pub retained_blocks: usize,
    /// Messages for views more than this ahead are dropped.
    pub future_views_max: u64,
    /// Blocks sent in one state-transfer answer at most.
    pub fetch_blocks_max: usize,
    /// Pre-prepares held at most for views this replica has not entered yet: a primary sends
    /// NEW-VIEW and then its first PRE-PREPAREs, and the network may deliver them in the other
    /// order. Held ones are checked once the view is installed.
    pub early_pre_prepares_max: usize,
    /// Executed transaction ids remembered to refuse pre-prepares that repeat them.
    pub executed_memory: usize,
    /// Follow every non-empty batch with one more, empty when nothing is pending, so that an
    /// application that orders a block by its successor's digest (the market's canonical order)
    /// never waits for traffic to see its last block executed. Off by default.
    pub close_batches: bool,
    /// A deliberately broken rule, for proving that tests catch it. Never set outside tests.
    pub weaken: Option<PbftWeakening>,
}

/// Deliberate bugs ("mutants") the swarm campaign must catch, kept so that it cannot silently
/// lose its teeth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PbftWeakening {
    /// Every quorum (prepared, committed, checkpoint, view change) one vote smaller than
    /// ⌈(n + f + 1)/2⌉.
    QuorumOneSmaller,
    /// The primary's pre-prepare counts as one of the 2f prepares.
    PrePrepareCountsAsPrepare,
}

impl PbftConfig {
    /// K = 16, L = 64, the given T, default batches, 8 in flight, 1,024 retained blocks, 16
    /// early pre-prepares held.
    pub fn new(view_timeout_ns: u64) -> Self {
        Self {
            checkpoint_interval: 16,
            log_window: 64,
            view_timeout_ns,
            new_view_doublings_max: 3,
            batch: BatchLimits::default(),
            max_inflight: 8,
            retained_blocks: 1_024,
            future_views_max: 16,
            fetch_blocks_max: 64,
            early_pre_prepares_max: 16,
            executed_memory: 1_000_000,
            close_batches: false,
            weaken: None,
        }
    }
}

/// PBFT's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PbftTimer {
    /// A request is pending in this view: on expiry, move to the next view.
    Request(View),
    /// Waiting for NEW-VIEW of this view.
    NewView(View),
    /// Retry state transfer.
    Fetch,
    /// While a view change to this view is pending, send this replica's VIEW-CHANGE again (a
    /// partition or loss may have dropped it; the paper's retransmission).
    ResendViewChange(View),
}

/// What a replica dropped or did, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PbftStats {
    /// Messages dropped, by reason.
    pub dropped: BTreeMap<&'static str, u64>,
    /// View changes this replica started.
    pub view_changes: u64,
    /// New views it entered.
    pub new_views: u64,
    /// Checkpoints that became stable.
    pub stable_checkpoints: u64,
    /// Blocks executed after state transfer.
    pub transferred_blocks: u64,
    /// Pre-prepares it sent (as primary).
    pub pre_prepares: u64,
    /// Transactions left out at execution because an earlier sequence number executed them.
    pub duplicates_skipped: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Normal,
    ViewChanging,
}

#[derive(Debug, Clone)]
struct Slot {
    pre_prepare: PrePrepare,
    prepared_at: Option<u64>,
    committed: bool,
    commit_sent: bool,
}

#[derive(Debug, Clone)]
struct Executed {
    block: Block,
    prepared_at: Option<u64>,
    executed_at: u64,
}

/// One PBFT replica; see the crate docs.
#[derive(Debug)]
pub struct Pbft {
    config: PbftConfig,
    committee: Committee,
    n: usize,
    quorum: usize,
    me: NodeId,
    key: SecretKey,
    view: View,
    status: Status,
    last_normal_view: View,
    slots: BTreeMap<u64, Slot>,
    prepared: BTreeMap<u64, PreparedProof>,
    votes: VoteKeeper,
    checkpoints: VoteKeeper,
    next_seq: u64,
    last_executed: u64,
    log_digest: Digest,
    own_checkpoints: BTreeMap<u64, Digest>,
    stable: CheckpointProof,
    executed: BTreeMap<u64, Executed>,
    executed_ids: FxHashSet<Digest>,
    executed_order: VecDeque<Digest>,
    view_changes: BTreeMap<View, BTreeMap<NodeId, ViewChange>>,
    new_view_sent: Option<View>,
    /// The NEW-VIEW that started the current view (none in view 0), for replicas that missed it.
    current_new_view: Option<NewView>,
    /// When each lagging replica was last sent `current_new_view`.
    new_view_relayed_at: FxHashMap<NodeId, u64>,
    /// When each replica asking for a lower view was last sent the view changes we hold.
    view_changes_relayed_at: FxHashMap<NodeId, u64>,
    /// This replica's latest VIEW-CHANGE, resent until its view is installed.
    my_view_change: Option<ViewChange>,
    /// Pre-prepares for views not yet entered, by (view, sequence number), checked when the
    /// view is installed; at most `early_pre_prepares_max`, the nearest views kept.
    early_pre_prepares: BTreeMap<(View, u64), PrePrepare>,
    attempts: u32,
    request_timer: bool,
    fetch_target: Option<CheckpointProof>,
    fetch_buffer: BTreeMap<u64, Block>,
    fetch_round: usize,
    submitted_at: FxHashMap<Digest, u64>,
    replies: BTreeMap<u64, BTreeMap<Digest, BTreeSet<NodeId>>>,
    client_latencies_ns: Vec<u64>,
    stats: PbftStats,
}

/// Latencies kept at most (one per client transaction).
const CLIENT_LATENCIES_MAX: usize = 10_000_000;

impl Pbft {
    /// Replica `me` of `committee`, signing with `key`.
    pub fn new(config: PbftConfig, committee: Committee, me: NodeId, key: SecretKey) -> Self {
        assert!(config.checkpoint_interval > 0 && config.log_window >= config.checkpoint_interval);
        assert!(config.view_timeout_ns > 0, "T must be positive");
        let n = committee.n();
        let quorum = match config.weaken {
            Some(PbftWeakening::QuorumOneSmaller) => committee.byzantine_quorum() - 1,
            _ => committee.byzantine_quorum(),
        };
        let votes_max = (config.log_window as usize + 2) * n * 4;
        Self {
            votes: VoteKeeper::new(quorum.max(2) - 1, votes_max),
            checkpoints: VoteKeeper::new(quorum, votes_max),
            stable: CheckpointProof::genesis(genesis_log_digest()),
            log_digest: genesis_log_digest(),
            config,
            committee,
            n,
            quorum,
            me,
            key,
            view: View(0),
            status: Status::Normal,
            last_normal_view: View(0),
            slots: BTreeMap::new(),
            prepared: BTreeMap::new(),
            next_seq: 1,
            last_executed: 0,
            own_checkpoints: BTreeMap::new(),
            executed: BTreeMap::new(),
            executed_ids: FxHashSet::default(),
            executed_order: VecDeque::new(),
            view_changes: BTreeMap::new(),
            new_view_sent: None,
            current_new_view: None,
            new_view_relayed_at: FxHashMap::default(),
            view_changes_relayed_at: FxHashMap::default(),
            my_view_change: None,
            early_pre_prepares: BTreeMap::new(),
            attempts: 0,
            request_timer: false,
            fetch_target: None,
            fetch_buffer: BTreeMap::new(),
            fetch_round: 0,
            submitted_at: FxHashMap::default(),
            replies: BTreeMap::new(),
            client_latencies_ns: Vec::new(),
            stats: PbftStats::default(),
        }
    }

    /// The current view (the target view while a view change is under way).
    pub fn view(&self) -> View {
        self.view
    }

    /// True while waiting for a NEW-VIEW.
    pub fn is_view_changing(&self) -> bool {
        self.status == Status::ViewChanging
    }

    /// The last executed sequence number.
    pub fn last_executed(&self) -> SeqNo {
        SeqNo(self.last_executed)
    }

    /// The last stable checkpoint (h).
    pub fn stable_checkpoint(&self) -> SeqNo {
        self.stable.seq
    }

    /// Entries in the message log (slots above the stable checkpoint), for boundedness checks.
    pub fn log_len(&self) -> usize {
        self.slots.len() + self.prepared.len()
    }

    /// Votes held (prepares, commits and checkpoints), for boundedness checks.
    pub fn votes_held(&self) -> usize {
        self.votes.len() + self.checkpoints.len()
    }

    /// Client-side finality latencies (submission → f+1 matching replies) of the transactions
    /// clients submitted to this replica.
    pub fn client_latencies_ns(&self) -> &[u64] {
        &self.client_latencies_ns
    }

    /// Drops and events.
    pub fn stats(&self) -> &PbftStats {
        &self.stats
    }

    fn primary_of(&self, view: View) -> NodeId {
        primary(view, self.n)
    }

    fn is_primary(&self) -> bool {
        self.primary_of(self.view) == self.me
    }

    fn drop_message(&mut self, reason: &'static str) {
        *self.stats.dropped.entry(reason).or_default() += 1;
    }

    fn high_watermark(&self) -> u64 {
        self.stable.seq.0 + self.config.log_window
    }

    fn in_window(&self, seq: u64) -> bool {
        seq > self.stable.seq.0 && seq <= self.high_watermark()
    }

    // ----- requests -------------------------------------------------------------------------

    fn forward(&self, ctx: &mut Ctx<'_, Self>, txs: Vec<Transaction>) {
        let mut to = BTreeSet::from([self.primary_of(self.view)]);
        if self.status == Status::ViewChanging {
            to.insert(self.primary_of(self.last_normal_view));
        }
        to.remove(&self.me);
        for replica in to {
            ctx.send(replica, PbftMessage::Forward(txs.clone()));
        }
    }

    /// The requests waiting in the mempool (but those `skip` names), a bounded number, as
    /// batch-sized FORWARD messages.
    fn pending_forwards(
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

    /// A backup's timer runs while a request it knows of is not executed: one in its mempool,
    /// or one in a pre-prepare it accepted.
    /// Backups and the primary alike: a primary whose requests do not execute within T is as
    /// stuck as its backups (it may be the primary of a view everyone else has left, having
    /// missed the NEW-VIEW), and asking to change view is how it finds out.
    fn ensure_request_timer(&mut self, ctx: &mut Ctx<'_, Self>) {
        if self.status != Status::Normal || self.request_timer {
            return;
        }
        let pending_slot = self.slots.range(self.last_executed + 1..).next().is_some();
        if pending_slot || !ctx.mempool().is_empty() {
            self.request_timer = true;
            ctx.set_timer(PbftTimer::Request(self.view), self.config.view_timeout_ns);
        }
    }

    fn restart_request_timer(&mut self, ctx: &mut Ctx<'_, Self>) {
        if self.request_timer {
            ctx.cancel_timer(PbftTimer::Request(self.view));
            self.request_timer = false;
        }
        self.ensure_request_timer(ctx);
    }

    // ----- normal case ----------------------------------------------------------------------

    /// The primary assigns the next sequence numbers to batches of pending requests, as long as
    /// the window and the in-flight bound allow.
    fn propose(&mut self, ctx: &mut Ctx<'_, Self>) {
        if !self.is_primary() || self.status != Status::Normal {
            return;
        }
        self.next_seq = self.next_seq.max(self.last_executed + 1);
        // Called on every arriving request: while the pipeline is full (the common case under
        // load) return before collecting the in-flight ids, which costs a hash insert for every
        // transaction in flight.
        let room = |me: &Self| {
            me.next_seq <= me.high_watermark()
                && me.next_seq - me.last_executed <= me.config.max_inflight
        };
        // With `close_batches`, a non-empty last block is owed an empty successor.
        let owes_successor = |me: &Self| {
            me.config.close_batches
                && me.block_at(me.next_seq - 1).is_some_and(|b| !b.batch().is_empty())
        };
        if !room(self) || (ctx.mempool().is_empty() && !owes_successor(self)) {
            return;
        }
        let mut in_flight: FxHashSet<Digest> = self
            .slots
            .range(self.last_executed + 1..)
            .flat_map(|(_, s)| {
                s.pre_prepare.block.batch().transactions().iter().map(Transaction::id)
            })
            .collect();
        while room(self) {
            let txs = ctx.mempool().select(&self.config.batch, &|id| in_flight.contains(id));
            if txs.is_empty() && !owes_successor(self) {
                return;
            }
            in_flight.extend(txs.iter().map(Transaction::id));
            let seq = self.next_seq;
            let parent = self.block_at(seq - 1).map_or(Digest::ZERO, Block::digest);
            let batch = Batch::new(txs).expect("batch limits are within the type's limits");
            let block = Block::new(
                parent,
                agora_types::Round(self.view.0),
                Height(seq),
                self.me,
                ctx.now_ns(),
                batch,
            );
            let vote = Vote::sign(
                statement(Phase::PrePrepare, self.view, SeqNo(seq), block.digest()),
                self.me,
                &self.key,
            );
            let pre_prepare = PrePrepare { vote, block };
            self.stats.pre_prepares += 1;
            ctx.broadcast(PbftMessage::PrePrepare(pre_prepare.clone()));
            self.slots.insert(
                seq,
                Slot { pre_prepare, prepared_at: None, committed: false, commit_sent: false },
            );
            self.next_seq += 1;
            self.advance(ctx, seq);
        }
    }

    /// The block this replica has at `seq`: pre-prepared, or executed and retained.
    fn block_at(&self, seq: u64) -> Option<&Block> {
        self.slots
            .get(&seq)
            .map(|s| &s.pre_prepare.block)
            .or_else(|| self.executed.get(&seq).map(|e| &e.block))
    }

    fn on_pre_prepare(&mut self, ctx: &mut Ctx<'_, Self>, pp: PrePrepare) {
        let entered = self.status == Status::Normal && pp.view() == self.view;
        if !entered && pp.view() >= self.view {
            return self.hold_early_pre_prepare(pp);
        }
        if !entered {
            return self.drop_message("pre-prepare not for the current view");
        }
        let seq = pp.seq().0;
        if !self.in_window(seq) {
            return self.drop_message("pre-prepare outside the watermarks");
        }
        if self.is_primary() {
            return self.drop_message("pre-prepare to the primary");
        }
        if let Some(slot) = self.slots.get(&seq)
            && slot.pre_prepare.view() == self.view
        {
            if slot.pre_prepare.digest() != pp.digest() {
                self.drop_message("conflicting pre-prepare");
            }
            return;
        }
        if let Err(reason) = pp.check(&self.committee, ctx.checker()) {
            return self.drop_message(reason);
        }
        if let Err(reason) = self.check_block(&pp.block, seq) {
            return self.drop_message(reason);
        }
        self.accept_pre_prepare(ctx, pp);
        self.ensure_request_timer(ctx);
    }

    /// A pre-prepare for a view this replica has not entered (its NEW-VIEW is still on the way,
    /// or this replica is behind) is held, not dropped: with exactly a quorum of replicas up,
    /// one backup that dropped it would stall the view, since no primary sends a pre-prepare
    /// twice. Only the structure is checked here; the signature and the batch are checked when
    /// the view is installed. When full, the pre-prepares of the farthest views give way.
    fn hold_early_pre_prepare(&mut self, pp: PrePrepare) {
        if pp.view().0 > self.view.0 + self.config.future_views_max
            || pp.vote.voter != self.primary_of(pp.view())
        {
            return self.drop_message("pre-prepare for a far view or from another replica");
        }
        let key = (pp.view(), pp.seq().0);
        if self.early_pre_prepares.contains_key(&key) {
            return;
        }
        if self.early_pre_prepares.len() >= self.config.early_pre_prepares_max {
            match self.early_pre_prepares.last_key_value() {
                Some((last, _)) if *last > key => {
                    self.early_pre_prepares.pop_last();
                    self.drop_message("early pre-prepare given way to a nearer view");
                }
                _ => return self.drop_message("too many early pre-prepares"),
            }
        }
        self.early_pre_prepares.insert(key, pp);
    }

    /// The view is installed: check the pre-prepares held for it, forget older ones.
    fn replay_early_pre_prepares(&mut self, ctx: &mut Ctx<'_, Self>) {
        let later = self.early_pre_prepares.split_off(&(View(self.view.0 + 1), 0));
        let held = std::mem::replace(&mut self.early_pre_prepares, later);
        for ((view, _), pp) in held {
            if view == self.view {
                self.on_pre_prepare(ctx, pp);
            }
        }
    }

    /// A backup accepts a pre-prepare: it enters the log and the backup prepares it.
    fn accept_pre_prepare(&mut self, ctx: &mut Ctx<'_, Self>, pp: PrePrepare) {
        let (view, seq, digest) = (pp.view(), pp.seq(), pp.digest());
        self.slots.insert(
            seq.0,
            Slot { pre_prepare: pp, prepared_at: None, committed: false, commit_sent: false },
        );
        let prepare = Vote::sign(statement(Phase::Prepare, view, seq, digest), self.me, &self.key);
        ctx.broadcast(PbftMessage::Prepare(prepare));
        self.votes.add_verified(&prepare);
        self.advance(ctx, seq.0);
    }

    /// Validity of a batch, whoever proposed it: within bounds, no transaction twice, none
    /// already executed, none in another sequence number of this view.
    fn check_block(&self, block: &Block, seq: u64) -> Result<(), &'static str> {
        let batch = block.batch();
        if batch.len() > self.config.batch.txs_max
            || batch.encoded().len() > self.config.batch.bytes_max.saturating_add(8)
        {
            return Err("batch over the limits");
        }
        let others: FxHashSet<Digest> = self
            .slots
            .iter()
            .filter(|(s, slot)| {
                **s != seq && slot.pre_prepare.view() == self.view && **s > self.last_executed
            })
            .flat_map(|(_, slot)| {
                slot.pre_prepare.block.batch().transactions().iter().map(Transaction::id)
            })
            .collect();
        let mut seen = FxHashSet::default();
        for tx in batch.transactions() {
            let id = tx.id();
            if !seen.insert(id) || self.executed_ids.contains(&id) || others.contains(&id) {
                return Err("batch repeats a transaction");
            }
        }
        Ok(())
    }

    fn on_vote(&mut self, ctx: &mut Ctx<'_, Self>, vote: Vote, phase: Phase) {
        let s = vote.statement;
        if s.phase != phase {
            return self.drop_message("vote of the wrong phase");
        }
        let view = View(s.round.0);
        if view < self.view || view.0 > self.view.0 + self.config.future_views_max {
            return self.drop_message("vote for another view");
        }
        if !self.in_window(s.height.0) {
            return self.drop_message("vote outside the watermarks");
        }
        match self.votes.add(&vote, &self.committee, ctx.checker()) {
            Err(_) => return self.drop_message("bad vote"),
            Ok(VoteOutcome::Full) => return self.drop_message("vote limit"),
            Ok(_) => {}
        }
        if view == self.view && self.status == Status::Normal {
            self.advance(ctx, s.height.0);
        }
    }

    /// Moves one sequence number as far as its votes allow: prepared, commit sent, committed, then
    /// executes what can be executed in order.
    fn advance(&mut self, ctx: &mut Ctx<'_, Self>, seq: u64) {
        let Some(slot) = self.slots.get(&seq) else { return };
        let (view, digest) = (slot.pre_prepare.view(), slot.pre_prepare.digest());
        if view != self.view || self.status != Status::Normal {
            return;
        }
        let primary = self.primary_of(view);
        let prepare = statement(Phase::Prepare, view, SeqNo(seq), digest);
        let commit = statement(Phase::Commit, view, SeqNo(seq), digest);
        if slot.prepared_at.is_none() {
            // The pre-prepare is not a prepare, and neither is a prepare signed by the primary.
            let mut backups = self.votes.signers(&prepare)
                - usize::from(self.votes.has_signed(&prepare, primary));
            if self.config.weaken == Some(PbftWeakening::PrePrepareCountsAsPrepare) {
                backups += 1;
            }
            if backups + 1 < self.quorum {
                return;
            }
            let proof = PreparedProof {
                pre_prepare: slot.pre_prepare.vote,
                block: Some(slot.pre_prepare.block.clone()),
                prepares: self.votes.certificate_of(&prepare, Some(primary)),
            };
            self.prepared.insert(seq, proof);
            let slot = self.slots.get_mut(&seq).expect("present");
            slot.prepared_at = Some(ctx.now_ns());
        }
        let slot = self.slots.get_mut(&seq).expect("present");
        if !slot.commit_sent {
            slot.commit_sent = true;
            let vote = Vote::sign(commit, self.me, &self.key);
            ctx.broadcast(PbftMessage::Commit(vote));
            self.votes.add_verified(&vote);
        }
        let slot = self.slots.get_mut(&seq).expect("present");
        if !slot.committed && self.votes.signers(&commit) >= self.quorum {
            slot.committed = true;
        }
        self.execute_ready(ctx);
    }

    fn execute_ready(&mut self, ctx: &mut Ctx<'_, Self>) {
        loop {
            let next = self.last_executed + 1;
            let Some(slot) = self.slots.get(&next) else { break };
            if !slot.committed || slot.pre_prepare.view() != self.view {
                break;
            }
            let (block, prepared_at) = (slot.pre_prepare.block.clone(), slot.prepared_at);
            self.execute(ctx, block, prepared_at);
        }
    }

    /// Executes the next block: commit it, chain it into the log digest, reply, checkpoint.
    fn execute(&mut self, ctx: &mut Ctx<'_, Self>, block: Block, prepared_at: Option<u64>) {
        let seq = self.last_executed + 1;
        debug_assert_eq!(block.height().0, seq);
        self.last_executed = seq;
        self.log_digest = chain(&self.log_digest, &block.digest());
        // PBFT orders requests, not unique ones: two views can each prepare the same request at
        // different sequence numbers, and a view change then keeps both (a request committed
        // anywhere must survive). Like the paper's client timestamps, execution keeps the first:
        // the block committed to the application leaves out what was executed before. Every
        // replica executes the same log from the same start, so they all leave out the same.
        let mut repeated = Vec::new();
        for (i, tx) in block.batch().transactions().iter().enumerate() {
            let id = tx.id();
            if !self.executed_ids.insert(id) {
                repeated.push(i);
                continue;
            }
            self.executed_order.push_back(id);
            if self.executed_order.len() > self.config.executed_memory
                && let Some(old) = self.executed_order.pop_front()
            {
                self.executed_ids.remove(&old);
            }
        }
        if repeated.is_empty() {
            ctx.commit(block.clone());
        } else {
            self.stats.duplicates_skipped += repeated.len() as u64;
            let fresh = block.batch().transactions().iter().enumerate();
            let fresh = fresh.filter(|(i, _)| repeated.binary_search(i).is_err());
            let batch = Batch::new(fresh.map(|(_, tx)| tx.clone()).collect())
                .expect("a subset of a valid batch is valid");
            let h = block.header();
            ctx.commit(Block::new(h.parent, h.round, h.height, h.proposer, h.created_at_ns, batch));
        }
        let digest = block.digest();
        self.executed.insert(seq, Executed { block, prepared_at, executed_at: ctx.now_ns() });
        while self.executed.len() > self.config.retained_blocks {
            self.executed.pop_first();
        }
        let reply = Reply { seq: SeqNo(seq), digest };
        ctx.broadcast(PbftMessage::Reply(reply));
        self.on_reply(ctx, self.me, reply);
        if seq.is_multiple_of(self.config.checkpoint_interval) {
            self.own_checkpoints.insert(seq, self.log_digest);
            let vote =
                Vote::sign(checkpoint_statement(SeqNo(seq), self.log_digest), self.me, &self.key);
            ctx.broadcast(PbftMessage::Checkpoint(vote));
            self.checkpoints.add_verified(&vote);
            self.check_stable(ctx, SeqNo(seq), self.log_digest);
        }
        // Progress in this view: the backoff starts over, and the timer restarts for what is left.
        self.attempts = 0;
        self.restart_request_timer(ctx);
        self.propose(ctx);
    }

    // ----- replies --------------------------------------------------------------------------

    fn on_reply(&mut self, ctx: &mut Ctx<'_, Self>, from: NodeId, reply: Reply) {
        let seq = reply.seq.0;
        if seq <= self.stable.seq.0.saturating_sub(self.config.log_window)
            || seq > self.high_watermark() + self.config.log_window
        {
            return self.drop_message("reply outside the window");
        }
        self.replies.entry(seq).or_default().entry(reply.digest).or_default().insert(from);
        self.check_client(ctx, seq);
    }

    /// The client's view: its transaction is final once f+1 replicas reply with the same result.
    fn check_client(&mut self, ctx: &mut Ctx<'_, Self>, seq: u64) {
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

    // ----- checkpoints and state transfer -------------------------------------------------------

    fn on_checkpoint(&mut self, ctx: &mut Ctx<'_, Self>, vote: Vote) {
        let s = vote.statement;
        if s.phase != Phase::Checkpoint
            || s.round.0 != 0
            || !s.height.0.is_multiple_of(self.config.checkpoint_interval)
        {
            return self.drop_message("not a checkpoint");
        }
        let seq = s.height.0;
        if seq <= self.stable.seq.0 {
            return;
        }
        if seq > self.stable.seq.0 + 1_024 * self.config.checkpoint_interval {
            return self.drop_message("checkpoint too far ahead");
        }
        if self.checkpoints.add(&vote, &self.committee, ctx.checker()).is_err() {
            return self.drop_message("bad checkpoint");
        }
        self.check_stable(ctx, SeqNo(seq), s.value);
    }

    /// With 2f+1 matching checkpoints for `(seq, digest)`: stable if it is ours, else fetch.
    fn check_stable(&mut self, ctx: &mut Ctx<'_, Self>, seq: SeqNo, digest: Digest) {
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

    fn adopt_checkpoint(&mut self, ctx: &mut Ctx<'_, Self>, proof: CheckpointProof) {
        if proof.seq <= self.stable.seq {
            return;
        }
        if self.last_executed >= proof.seq.0 {
            if self.own_checkpoints.get(&proof.seq.0) == Some(&proof.digest) {
                self.make_stable(ctx, proof);
            } else {
                self.drop_message("stable checkpoint differs from the executed log");
            }
        } else if self.fetch_target.as_ref().is_none_or(|t| t.seq < proof.seq) {
            self.fetch_target = Some(proof);
            self.start_fetch(ctx);
        }
    }

    /// The checkpoint is stable: garbage-collect everything at or below it; the window moves.
    fn make_stable(&mut self, ctx: &mut Ctx<'_, Self>, proof: CheckpointProof) {
        let h = proof.seq.0;
        self.stable = proof;
        self.stats.stable_checkpoints += 1;
        self.slots.retain(|s, _| *s > h);
        self.prepared.retain(|s, _| *s > h);
        self.votes.retain(|st| st.height.0 > h);
        self.checkpoints.retain(|st| st.height.0 > h);
        self.own_checkpoints.retain(|s, _| *s > h);
        self.replies.retain(|s, _| *s + self.config.log_window > h);
        if self.fetch_target.as_ref().is_some_and(|t| t.seq.0 <= h) {
            self.fetch_target = None;
            self.fetch_buffer.clear();
            ctx.cancel_timer(PbftTimer::Fetch);
        }
        self.propose(ctx);
    }

    fn start_fetch(&mut self, ctx: &mut Ctx<'_, Self>) {
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
        ctx.send(peer, PbftMessage::Fetch { from: SeqNo(from), to: target.seq });
        ctx.set_timer(PbftTimer::Fetch, self.config.view_timeout_ns / 2 + 1);
    }

    fn on_fetch(&mut self, ctx: &mut Ctx<'_, Self>, from_replica: NodeId, from: SeqNo, to: SeqNo) {
        if from > to {
            return self.drop_message("empty fetch");
        }
        let blocks: Vec<Block> = self
            .executed
            .range(from.0..=to.0)
            .take(self.config.fetch_blocks_max)
            .map(|(_, e)| e.block.clone())
            .collect();
        if !blocks.is_empty() {
            ctx.send(from_replica, PbftMessage::Blocks(blocks));
        }
    }

    /// Fetched blocks are buffered until they reach the target checkpoint; they are executed only
    /// if their chain digest is the certified one.
    fn on_blocks(&mut self, ctx: &mut Ctx<'_, Self>, blocks: Vec<Block>) {
        let Some(target) = self.fetch_target.clone() else { return };
        for block in blocks.into_iter().take(self.config.fetch_blocks_max) {
            let seq = block.height().0;
            if seq > self.last_executed && seq <= target.seq.0 {
                self.fetch_buffer.entry(seq).or_insert(block);
            }
        }
        let wanted = self.last_executed + 1..=target.seq.0;
        if !wanted.clone().all(|s| self.fetch_buffer.contains_key(&s)) {
            self.start_fetch(ctx);
            return;
        }
        let mut digest = self.log_digest;
        for s in wanted.clone() {
            digest = chain(&digest, &self.fetch_buffer[&s].digest());
        }
        if digest != target.digest {
            self.drop_message("fetched blocks do not match the checkpoint");
            self.fetch_buffer.clear();
            self.start_fetch(ctx);
            return;
        }
        for s in wanted {
            let block = self.fetch_buffer.remove(&s).expect("checked above");
            self.stats.transferred_blocks += 1;
            self.slots.remove(&s);
            self.execute(ctx, block, None);
        }
        self.own_checkpoints.insert(target.seq.0, self.log_digest);
        self.fetch_buffer.clear();
        self.fetch_target = None;
        ctx.cancel_timer(PbftTimer::Fetch);
        self.make_stable(ctx, target);
        self.execute_ready(ctx);
    }

    // ----- view change --------------------------------------------------------------------------

    fn start_view_change(&mut self, ctx: &mut Ctx<'_, Self>, target: View) {
        if target <= self.view && self.status == Status::ViewChanging {
            return;
        }
        if self.request_timer {
            ctx.cancel_timer(PbftTimer::Request(self.view));
            self.request_timer = false;
        }
        ctx.cancel_timer(PbftTimer::NewView(self.view));
        self.view = target;
        self.status = Status::ViewChanging;
        self.attempts = self.attempts.saturating_add(1);
        self.stats.view_changes += 1;
        let prepared: Vec<PreparedProof> =
            self.prepared.range(self.stable.seq.0 + 1..).map(|(_, p)| p.clone()).collect();
        let vc = ViewChange::new(target, self.stable.clone(), prepared, self.me, &self.key);
        ctx.broadcast(PbftMessage::ViewChange(Box::new(vc.clone())));
        self.my_view_change = Some(vc.clone());
        ctx.set_timer(PbftTimer::ResendViewChange(target), self.config.view_timeout_ns);
        self.record_view_change(ctx, vc);
    }

    /// A replica that restarts in the middle of a view change has lost the timers that drive
    /// it: without them it would wait for good for a NEW-VIEW it may have missed while it was
    /// down, holding requests no one else has. It sends its VIEW-CHANGE again (a replica already
    /// in that view answers with the NEW-VIEW), and re-arms the resend and, with a quorum of view
    /// changes, the NEW-VIEW timeout.
    fn resume_view_change(&mut self, ctx: &mut Ctx<'_, Self>) {
        let view = self.view;
        if let Some(vc) = self.my_view_change.as_ref().filter(|vc| vc.new_view == view) {
            ctx.broadcast(PbftMessage::ViewChange(Box::new(vc.clone())));
        }
        ctx.set_timer(PbftTimer::ResendViewChange(view), self.config.view_timeout_ns);
        if self.view_changes.get(&view).map_or(0, BTreeMap::len) >= self.quorum {
            if self.primary_of(view) == self.me && self.new_view_sent != Some(view) {
                return self.send_new_view(ctx, view);
            }
            ctx.set_timer(PbftTimer::NewView(view), self.new_view_wait());
        }
    }

    /// How long to wait for a NEW-VIEW: T, doubled for each view change since the last
    /// execution, at most [`PbftConfig::new_view_doublings_max`] times.
    fn new_view_wait(&self) -> u64 {
        let doublings =
            u64::from(self.attempts).min(u64::from(self.config.new_view_doublings_max.min(20)));
        self.config.view_timeout_ns.saturating_mul(1u64 << doublings)
    }

    fn on_view_change(&mut self, ctx: &mut Ctx<'_, Self>, vc: ViewChange) {
        if vc.new_view <= self.last_normal_view
            || vc.new_view.0 > self.view.0 + self.config.future_views_max
        {
            return self.drop_message("view change for an old or far view");
        }
        if self.view_changes.get(&vc.new_view).is_some_and(|m| m.contains_key(&vc.replica)) {
            return;
        }
        if let Err(reason) = vc.check(
            &self.committee,
            genesis_log_digest(),
            self.config.log_window,
            true,
            ctx.checker(),
        ) {
            return self.drop_message(reason);
        }
        self.record_view_change(ctx, vc);
    }

    fn record_view_change(&mut self, ctx: &mut Ctx<'_, Self>, vc: ViewChange) {
        let view = vc.new_view;
        self.view_changes.entry(view).or_default().insert(vc.replica, vc);
        // f+1 replicas want views above ours: join the smallest of them.
        let ours = self.view;
        let mut wanting: BTreeMap<NodeId, View> = BTreeMap::new();
        for (v, by) in self.view_changes.range(View(ours.0 + 1)..) {
            for replica in by.keys() {
                wanting.entry(*replica).or_insert(*v);
            }
        }
        if wanting.len() >= self.committee.one_honest() {
            let smallest = *wanting.values().min().expect("non-empty");
            self.start_view_change(ctx, smallest);
            return;
        }
        if self.status != Status::ViewChanging || view != self.view {
            return;
        }
        let count = self.view_changes.get(&view).map_or(0, BTreeMap::len);
        if count < self.quorum {
            return;
        }
        let first_quorum = count == self.quorum;
        if self.primary_of(view) == self.me && self.new_view_sent != Some(view) {
            self.send_new_view(ctx, view);
            return;
        }
        // 2f+1 view changes: wait for NEW-VIEW, with a timeout that doubles each attempt.
        if first_quorum {
            ctx.set_timer(PbftTimer::NewView(view), self.new_view_wait());
        }
    }

    fn send_new_view(&mut self, ctx: &mut Ctx<'_, Self>, view: View) {
        let view_changes: Vec<ViewChange> =
            self.view_changes[&view].values().take(self.quorum).cloned().collect();
        let (_, entries) = compute_o(view, &view_changes, self.n);
        let mut pre_prepares = Vec::with_capacity(entries.len());
        for (seq, digest, block) in entries {
            // Every view change this primary accepted carried its proofs' blocks, so each chosen
            // digest has its block; should one be missing, sending O without it is impossible.
            let Some(block) = block else {
                return self.drop_message("new view without the block of a prepared request");
            };
            let vote =
                Vote::sign(statement(Phase::PrePrepare, view, seq, digest), self.me, &self.key);
            pre_prepares.push(PrePrepare { vote, block });
        }
        // V travels without the proofs' blocks: O carries each needed block once.
        let view_changes = view_changes.iter().map(ViewChange::stripped).collect();
        let nv = NewView { view, view_changes, pre_prepares };
        self.new_view_sent = Some(view);
        ctx.broadcast(PbftMessage::NewView(Box::new(nv.clone())));
        self.enter_new_view(ctx, nv);
    }

    fn on_new_view(&mut self, ctx: &mut Ctx<'_, Self>, nv: NewView) {
        if nv.view < self.view || (nv.view == self.view && self.status == Status::Normal) {
            return self.drop_message("new view for an old view");
        }
        // A NEW-VIEW proves itself (2f+1 signed view changes, O signed by the view's primary and
        // recomputed here), so it is accepted from whoever relays it: replicas pass it on to
        // one that missed it.
        if nv.view.0 > self.view.0 + self.config.future_views_max {
            return self.drop_message("new view too far ahead");
        }
        if let Err(reason) = self.check_new_view(ctx, &nv) {
            return self.drop_message(reason);
        }
        self.enter_new_view(ctx, nv);
    }

    /// V holds 2f+1 valid view changes for the view from distinct replicas, and O is what V says.
    fn check_new_view(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        nv: &NewView,
    ) -> Result<(), &'static str> {
        let mut replicas = BTreeSet::new();
        for vc in &nv.view_changes {
            if vc.new_view != nv.view || !replicas.insert(vc.replica) {
                return Err("new view with a duplicate or foreign view change");
            }
            vc.check(
                &self.committee,
                genesis_log_digest(),
                self.config.log_window,
                false,
                ctx.checker(),
            )?;
        }
        if replicas.len() < self.quorum {
            return Err("new view with too few view changes");
        }
        let (_, entries) = compute_o(nv.view, &nv.view_changes, self.n);
        if entries.len() != nv.pre_prepares.len() {
            return Err("new view's O is not what V says");
        }
        for ((seq, digest, null), pp) in entries.iter().zip(&nv.pre_prepares) {
            // A null request is recomputed whole; a prepared one is bound by its digest, and
            // the pre-prepare check below ties the carried block to that digest.
            let same_null = null.as_ref().is_none_or(|block| pp.block == *block);
            if pp.view() != nv.view || pp.seq() != *seq || pp.digest() != *digest || !same_null {
                return Err("new view's O is not what V says");
            }
            pp.check(&self.committee, ctx.checker())?;
        }
        Ok(())
    }

    /// `from` sent a message of `their_view`, older than the last view we installed: it missed
    /// the NEW-VIEW that started it (lost before GST, say). Send it, at most once per view
    /// timeout per replica, also while we are changing view again. Without this a replica
    /// that missed it stays behind for good, and when it is needed for a quorum, so does
    /// everyone (swarm seed 750008750: the primary of view 2 installed it and moved on to
    /// view 3 alone, while the three others, short of a quorum, waited for NEW-VIEW(2)).
    fn help_lagging(&mut self, ctx: &mut Ctx<'_, Self>, from: NodeId, their_view: View) {
        if from == self.me {
            return;
        }
        let Some(nv) = &self.current_new_view else { return };
        if nv.view <= their_view {
            return;
        }
        let now = ctx.now_ns();
        let due = self
            .new_view_relayed_at
            .get(&from)
            .is_none_or(|t| now.saturating_sub(*t) >= self.config.view_timeout_ns);
        if due && self.committee.contains(from) {
            self.new_view_relayed_at.insert(from, now);
            ctx.send(from, PbftMessage::NewView(Box::new(nv.clone())));
        }
    }

    /// `from` asks for a view below the one this replica is changing to: it missed the view
    /// changes that moved us on (lost before GST), and the replicas that sent them may have
    /// crashed since, so no one will send them again. Relay the signed VIEW-CHANGEs we hold for
    /// its view and above, at most once per view timeout per replica. With them it either has a
    /// quorum for its own view (and its NEW-VIEW timer runs out) or f+1 for higher ones (and it
    /// joins). Without this, replicas split across two view changes, each too few for a
    /// quorum, wait for good (swarm seed 660004073: n = 7, two crashed, three replicas in view 1
    /// and two in view 2).
    fn help_view_change(&mut self, ctx: &mut Ctx<'_, Self>, from: NodeId, their_view: View) {
        if their_view >= self.view || from == self.me || self.status != Status::ViewChanging {
            return;
        }
        let now = ctx.now_ns();
        let due = self
            .view_changes_relayed_at
            .get(&from)
            .is_none_or(|t| now.saturating_sub(*t) >= self.config.view_timeout_ns);
        if !due || !self.committee.contains(from) {
            return;
        }
        self.view_changes_relayed_at.insert(from, now);
        for by in self.view_changes.range(their_view..=self.view).map(|(_, by)| by) {
            for vc in by.values().filter(|vc| vc.replica != from) {
                ctx.send(from, PbftMessage::ViewChange(Box::new(vc.clone())));
            }
        }
    }

    fn enter_new_view(&mut self, ctx: &mut Ctx<'_, Self>, nv: NewView) {
        ctx.cancel_timer(PbftTimer::NewView(self.view));
        self.current_new_view = Some(nv.clone());
        self.new_view_relayed_at.clear();
        self.view_changes_relayed_at.clear();
        let (checkpoint, _) = compute_o(nv.view, &nv.view_changes, self.n);
        // Install O before anything else may propose: the status stays "view changing" until
        // the log of the new view is in place.
        self.view = nv.view;
        self.status = Status::ViewChanging;
        self.view_changes.retain(|v, _| *v > nv.view);
        // Votes of earlier views can never count again (a prepared request travels in
        // `prepared`, as a proof of its own): without this the keeper filled up over a run of
        // view changes with no stable checkpoint between them, refused every new vote, and
        // nothing prepared again (swarm seed 680013173).
        self.votes.retain(|st| st.round.0 >= nv.view.0);
        self.adopt_checkpoint(ctx, checkpoint);
        self.slots.clear();
        let is_primary = self.is_primary();
        let mut last = self.stable.seq.0;
        for pp in nv.pre_prepares {
            let seq = pp.seq().0;
            last = last.max(seq);
            if seq <= self.stable.seq.0 {
                continue;
            }
            if is_primary {
                let slot = Slot {
                    pre_prepare: pp,
                    prepared_at: None,
                    committed: false,
                    commit_sent: false,
                };
                self.slots.insert(seq, slot);
            } else {
                self.accept_pre_prepare(ctx, pp);
            }
        }
        self.next_seq = last.max(self.last_executed) + 1;
        self.status = Status::Normal;
        self.last_normal_view = nv.view;
        self.stats.new_views += 1;
        // Votes for this view that arrived early count now.
        let seqs: Vec<u64> = self.slots.keys().copied().collect();
        for seq in seqs {
            self.advance(ctx, seq);
        }
        // So do pre-prepares that overtook the NEW-VIEW.
        self.replay_early_pre_prepares(ctx);
        // Requests this replica holds may have gone to the old primary only: send them on.
        if !is_primary {
            let in_o: FxHashSet<Digest> = self
                .slots
                .values()
                .flat_map(|s| {
                    s.pre_prepare.block.batch().transactions().iter().map(Transaction::id)
                })
                .collect();
            for forward in self.pending_forwards(ctx, &|id| in_o.contains(id)) {
                ctx.send(self.primary_of(nv.view), forward);
            }
        }
        self.request_timer = false;
        self.ensure_request_timer(ctx);
        self.propose(ctx);
    }
}

impl Protocol for Pbft {
    type Message = PbftMessage;
    type Timer = PbftTimer;

    fn on_start(&mut self, ctx: &mut Ctx<'_, Self>) {
        // A restarted replica has lost its timers.
        self.request_timer = false;
        self.ensure_request_timer(ctx);
        if self.status == Status::ViewChanging {
            self.resume_view_change(ctx);
        }
        if self.fetch_target.is_some() {
            self.start_fetch(ctx);
        }
        self.propose(ctx);
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_, Self>, from: NodeId, message: PbftMessage) {
        match message {
            PbftMessage::Forward(txs) => {
                for tx in txs.into_iter().take(self.config.batch.txs_max) {
                    if let Err(MempoolError::Full { .. }) = ctx.mempool().insert(tx) {
                        self.drop_message("mempool full");
                        break;
                    }
                }
                self.ensure_request_timer(ctx);
                self.propose(ctx);
            }
            PbftMessage::PrePrepare(pp) => {
                self.help_lagging(ctx, from, pp.view());
                self.on_pre_prepare(ctx, pp)
            }
            PbftMessage::Prepare(v) => {
                self.help_lagging(ctx, from, View(v.statement.round.0));
                self.on_vote(ctx, v, Phase::Prepare)
            }
            PbftMessage::Commit(v) => {
                self.help_lagging(ctx, from, View(v.statement.round.0));
                self.on_vote(ctx, v, Phase::Commit)
            }
            PbftMessage::Reply(r) => self.on_reply(ctx, from, r),
            PbftMessage::Checkpoint(v) => self.on_checkpoint(ctx, v),
            PbftMessage::ViewChange(vc) => {
                // Asking to move into (or below) our view: it missed how we got here.
                if vc.new_view <= self.view {
                    self.help_lagging(ctx, from, View(vc.new_view.0.saturating_sub(1)));
                    self.help_view_change(ctx, from, vc.new_view);
                }
                self.on_view_change(ctx, *vc)
            }
            PbftMessage::NewView(nv) => self.on_new_view(ctx, *nv),
            PbftMessage::Fetch { from: first, to } => self.on_fetch(ctx, from, first, to),
            PbftMessage::Blocks(blocks) => self.on_blocks(ctx, blocks),
        }
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_, Self>, timer: PbftTimer) {
        match timer {
            PbftTimer::Request(view) if view == self.view && self.status == Status::Normal => {
                self.request_timer = false;
                let pending_slot = self.slots.range(self.last_executed + 1..).next().is_some();
                if pending_slot || !ctx.mempool().is_empty() {
                    // As a PBFT client that gets no reply retransmits to every replica, this
                    // replica (standing in for its clients) sends its waiting requests to all:
                    // their timers start too, so f+1 replicas come to want the view change even
                    // when only f saw requests the failed primary ignored.
                    for forward in self.pending_forwards(ctx, &|_| false) {
                        ctx.broadcast(forward);
                    }
                    self.start_view_change(ctx, View(view.0 + 1));
                }
            }
            PbftTimer::NewView(view)
                if view == self.view && self.status == Status::ViewChanging =>
            {
                self.start_view_change(ctx, View(view.0 + 1));
            }
            PbftTimer::Fetch if self.fetch_target.is_some() => self.start_fetch(ctx),
            PbftTimer::ResendViewChange(view)
                if view == self.view && self.status == Status::ViewChanging =>
            {
                if let Some(vc) = &self.my_view_change {
                    ctx.broadcast(PbftMessage::ViewChange(Box::new(vc.clone())));
                }
                // Requests that reached only this replica (their forward lost before GST) must
                // not wait for a view only it wants: like a client's retransmission, to all.
                for forward in self.pending_forwards(ctx, &|_| false) {
                    ctx.broadcast(forward);
                }
                ctx.set_timer(PbftTimer::ResendViewChange(view), self.config.view_timeout_ns);
            }
            _ => {}
        }
    }

    fn on_transaction(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        tx: Transaction,
    ) -> Result<Submitted, MempoolError> {
        let outcome = ctx.mempool().insert(tx.clone())?;
        if outcome == Submitted::Accepted {
            if self.submitted_at.len() < CLIENT_LATENCIES_MAX {
                self.submitted_at.insert(tx.id(), ctx.now_ns());
            }
            if self.is_primary() && self.status == Status::Normal {
                self.propose(ctx);
            } else {
                self.forward(ctx, vec![tx]);
                self.ensure_request_timer(ctx);
            }
        }
        Ok(outcome)
    }
}

impl ChainView for Pbft {
    /// Executed blocks still retained (finalized) and the log above them (proposed or prepared).
    fn block_views(&self) -> Vec<BlockView> {
        let view_of = |block: &Block, status, prepared_at: Option<u64>, finalized_at| BlockView {
            digest: block.digest(),
            parent: block.parent(),
            round: block.round(),
            height: block.height(),
            proposer: block.proposer(),
            txs: block.batch().len(),
            status,
            votes: 0,
            proposed_at_ns: block.header().created_at_ns,
            notarized_at_ns: prepared_at,
            finalized_at_ns: finalized_at,
        };
        let mut views: Vec<BlockView> = self
            .executed
            .values()
            .map(|e| view_of(&e.block, BlockStatus::Finalized, e.prepared_at, Some(e.executed_at)))
            .collect();
        for (seq, slot) in self.slots.range(self.last_executed + 1..) {
            let status = if slot.prepared_at.is_some() {
                BlockStatus::Notarized
            } else {
                BlockStatus::Proposed
            };
            let _ = seq;
            views.push(view_of(&slot.pre_prepare.block, status, slot.prepared_at, None));
        }
        views
    }
}
