//! Chained HotStuff (Maofan Yin, Dahlia Malkhi, Michael K. Reiter, Guy Golan Gueta and Ittai
//! Abraham, "HotStuff: BFT Consensus with Linearity and Responsiveness", PODC 2019) as a
//! sans-IO engine for agora, with a switch for the two-chain commit rule of its descendants
//! (Jolteon, in Diem and Aptos, and HotStuff-2).
//!
//! RULES
//!
//! ## Why the two-chain rule is safe, and what it costs
//!
//! SAFETY
//!
//! ## Beyond the paper
//!
//! BEYOND

mod config;
mod drop;
mod messages;
mod persist;
mod sync;
mod tree;
mod view;
mod vote;

pub use config::{ChainRule, HotStuffConfig, HotStuffWeakening, LeaderRule};
pub use drop::HotStuffDrop;
pub use messages::{
    HotStuffMessage, Proposal, Timeout, TimeoutCertificate, qc_view, timeout_statement,
};

use std::collections::BTreeMap;

use agora_consensus::{
    BlockView, ChainView, ConfigError, Ctx, Equivocation, Forwarding, MempoolError, Protocol,
    RecentIds, RestoreError, Submitted, VoteKeeper,
};
use agora_crypto::{Digest, SecretKey};
use agora_types::bytes::Bytes;
use agora_types::{
    Block, Certificate, Committee, Height, NodeId, Phase, Round, Statement, Transaction, Vote,
};
use serde::Serialize;

use crate::tree::Tree;

/// HotStuff's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HotStuffTimer {
    /// The timer of a view (see [`HotStuffConfig::timeout_ns`]); it runs again while the view
    /// lasts.
    View(u64),
    /// A leader with nothing to propose proposes an empty block now
    /// ([`HotStuffConfig::empty_block_after_ns`]).
    ProposeEmpty(u64),
}

/// What a node dropped or noticed, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HotStuffStats {
    /// Messages dropped, by reason.
    pub dropped: BTreeMap<&'static str, u64>,
    /// Equivocations detected (two votes of one member in one view, as a next leader saw them).
    pub equivocations: u64,
    /// Commits refused because they would fork the finalized log (needs > f Byzantine).
    pub conflicting_finality: u64,
    /// Votes for blocks this node cast.
    pub votes_cast: u64,
    /// Timeouts this node signed.
    pub timeouts_cast: u64,
    /// Proposals this node refused to vote for because of its lock (or, in the two-chain
    /// rule, of a timeout certificate).
    pub votes_refused: u64,
    /// QCs this node formed from votes, as a next leader.
    pub qcs_formed: u64,
    /// Timeout certificates this node formed.
    pub tcs_formed: u64,
    /// Blocks this node proposed.
    pub proposals: u64,
    /// Times a view's timer fired.
    pub timer_firings: u64,
    /// Sync requests this node sent.
    pub syncs_sent: u64,
    /// Messages for views at or below the finalized tip, ignored: the votes a quorum did not
    /// need, and QCs and proposals sent again.
    pub late: u64,
}

/// The certificate that brought a node into its view, sent again at its timer.
#[derive(Debug, Clone)]
pub(crate) enum Entered {
    Qc(Certificate),
    Tc(TimeoutCertificate),
}

/// One HotStuff node; see the crate docs.
#[derive(Debug)]
pub struct HotStuff {
    config: HotStuffConfig,
    committee: Committee,
    n: u16,
    me: NodeId,
    key: SecretKey,
    quorum: usize,
    /// The view this node is in (0 before it starts).
    view: u64,
    /// When it entered it.
    entered_ns: u64,
    tree: Tree,
    /// Votes for blocks, counted by the next leader.
    keeper: VoteKeeper,
    /// Timeouts of views at or above the current one, by view and signer.
    timeouts: BTreeMap<u64, BTreeMap<NodeId, Timeout>>,
    /// Timeout certificates of recent views: the highest QC view each reports (what a vote in
    /// the next view must reach, under the two-chain rule), and the last one whole.
    tc_high: BTreeMap<u64, u64>,
    last_tc: Option<TimeoutCertificate>,
    /// The paper's `qc_high`: the highest QC this node holds (`None`: genesis's).
    high_qc: Option<Certificate>,
    /// The QC of the locked block (`None`: genesis).
    locked: Option<Certificate>,
    /// The paper's `vheight`, as a view: the last view this node voted or timed out in.
    last_voted: u64,
    /// This node's last vote and its timeout of the current view, sent again at the timer.
    own_vote: Option<Vote>,
    own_timeout: Option<Timeout>,
    /// The last view this node proposed in.
    last_proposed: u64,
    entered: Option<Entered>,
    /// The first validly signed proposal of each view's leader (only that one may get a vote).
    first_proposal: BTreeMap<u64, Digest>,
    /// Signed proposals of the blocks in the tree above the finalized tip, by digest.
    proposals: BTreeMap<Digest, Proposal>,
    orphans: BTreeMap<Digest, Vec<Proposal>>,
    orphan_count: usize,
    orphan_bytes: usize,
    /// Validly signed proposals taken, per view (pruned below finality).
    proposals_taken: BTreeMap<u64, usize>,
    /// A block the commit rule made final whose path back to the tip has not all arrived.
    pending_commit: Option<(Digest, Vec<Certificate>)>,
    /// The last view in which this node refused to vote (counted once per view).
    refused_in: u64,
    finalized_txs: RecentIds,
    forwarding: Forwarding,
    /// The last finalized blocks (at most `sync_blocks_max`), by height, each with its signed
    /// proposal and its QC, for nodes that fell behind.
    finalized_proofs: BTreeMap<Height, (Proposal, Certificate)>,
    /// When each member was last answered a SYNC.
    synced_at: BTreeMap<NodeId, u64>,
    /// This node asks for a sync again no sooner than this.
    next_sync_ns: u64,
    /// Restored from a journal, or restarted with its memory: it asks its peers on start.
    restarted: bool,
    records_since_checkpoint: usize,
    stats: HotStuffStats,
}

impl HotStuff {
    /// Node `me` of `committee`, signing with `key`; an error names the first bad setting (see
    /// [`HotStuffConfig::validate`]) or a `me` outside the committee.
    pub fn new(
        config: HotStuffConfig,
        committee: Committee,
        me: NodeId,
        key: SecretKey,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        ConfigError::member(&committee, me)?;
        let n = u16::try_from(committee.n()).expect("committees have at most 1024 members");
        let quorum = if config.weakened(HotStuffWeakening::QuorumOneSmaller) {
            committee.notarization_quorum() - 1
        } else {
            committee.notarization_quorum()
        }
        .max(1);
        Ok(Self {
            tree: Tree::rooted(Block::genesis(), None, config.history_max, config.early_qcs_max),
            keeper: VoteKeeper::new(quorum, config.votes_max),
            quorum,
            config,
            committee,
            n,
            me,
            key,
            view: 0,
            entered_ns: 0,
            timeouts: BTreeMap::new(),
            tc_high: BTreeMap::new(),
            last_tc: None,
            high_qc: None,
            locked: None,
            last_voted: 0,
            own_vote: None,
            own_timeout: None,
            last_proposed: 0,
            entered: None,
            first_proposal: BTreeMap::new(),
            proposals: BTreeMap::new(),
            orphans: BTreeMap::new(),
            orphan_count: 0,
            orphan_bytes: 0,
            proposals_taken: BTreeMap::new(),
            pending_commit: None,
            refused_in: 0,
            finalized_txs: RecentIds::new(config.finalized_memory),
            forwarding: Forwarding::new(config.finalized_memory),
            finalized_proofs: BTreeMap::new(),
            synced_at: BTreeMap::new(),
            next_sync_ns: 0,
            restarted: false,
            records_since_checkpoint: 0,
            stats: HotStuffStats::default(),
        })
    }

    /// The view this node is in.
    pub fn view(&self) -> u64 {
        self.view
    }

    /// The leader of `view`.
    pub fn leader_of(&self, view: u64) -> NodeId {
        self.config.leader.leader(self.n, Round(view))
    }

    /// The last finalized block.
    pub fn finalized_tip(&self) -> &Block {
        self.tree.finalized_tip()
    }

    /// The view of the highest QC this node holds (the paper's `qc_high`).
    pub fn high_qc_view(&self) -> u64 {
        qc_view(self.high_qc.as_ref())
    }

    /// The view of the block this node is locked on.
    pub fn locked_view(&self) -> u64 {
        qc_view(self.locked.as_ref())
    }

    /// The last view this node voted or timed out in.
    pub fn last_voted_view(&self) -> u64 {
        self.last_voted
    }

    /// Two votes of one member in one view for different blocks, as this node saw them.
    pub fn equivocation_evidence(&self) -> &[Equivocation] {
        self.keeper.evidence()
    }

    /// Drops and events, by reason.
    pub fn stats(&self) -> &HotStuffStats {
        &self.stats
    }

    fn drop_message(&mut self, reason: HotStuffDrop) {
        *self.stats.dropped.entry(reason.as_str()).or_default() += 1;
    }

    /// Items held (blocks, proposals, orphans, votes and timeouts): what the flood test bounds.
    pub fn retained_items(&self) -> usize {
        self.tree.entries().count()
            + self.proposals.len()
            + self.orphan_count
            + self.keeper.len()
            + self.timeouts.values().map(BTreeMap::len).sum::<usize>()
    }
}

/// The statement of a vote for `block`. HotStuff statements carry no height (it is 0): a
/// member votes at most once per view, so the shared keeper's slot is the view.
fn block_statement(block: &Block) -> Statement {
    Statement { phase: Phase::Vote, round: block.round(), height: Height(0), value: block.digest() }
}

impl Protocol for HotStuff {
    type Message = HotStuffMessage;
    type Timer = HotStuffTimer;

    /// A fresh node enters view 1. A restarted one (from its journal, or with its memory)
    /// commits again what its QCs show final, arms the timer of the view it was in, and asks
    /// every peer for what it missed.
    fn on_start(&mut self, ctx: &mut Ctx<'_, Self>) {
        if self.view == 0 && !self.restarted {
            self.restarted = true;
            self.enter_view(ctx, 1, None);
        } else {
            self.view = self.view.max(1);
            if let Some(qc) = self.high_qc.clone() {
                self.apply_commit_rule(ctx, &qc);
            }
            ctx.set_timer(HotStuffTimer::View(self.view), self.current_timeout_ns());
            self.ask_everyone(ctx);
        }
        self.progress(ctx);
        self.flush_forwards(ctx);
    }

    /// Replays the journal: see the `persist` module for what each record is and why.
    fn restore(&mut self, records: &[Bytes]) -> Result<(), RestoreError> {
        self.restarted = true;
        self.restore_from(records)
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_, Self>, from: NodeId, message: HotStuffMessage) {
        match message {
            HotStuffMessage::Propose(p) => self.on_proposal(ctx, from, p),
            HotStuffMessage::Vote(v) => self.on_vote(ctx, v),
            HotStuffMessage::Timeout(t) => self.on_timeout_message(ctx, t),
            HotStuffMessage::Certificate(c) => {
                self.on_forwarded_qc(ctx, from, c);
            }
            HotStuffMessage::TimeoutCertificate(tc) => self.on_tc(ctx, tc),
            HotStuffMessage::Forward(txs) => self.on_forward(ctx, txs),
            HotStuffMessage::Sync { finalized } => self.on_sync(ctx, from, finalized),
        }
        self.progress(ctx);
        self.flush_forwards(ctx);
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_, Self>, timer: HotStuffTimer) {
        match timer {
            HotStuffTimer::View(v) if v == self.view => self.on_view_timer(ctx),
            HotStuffTimer::ProposeEmpty(v) if v == self.view => self.propose(ctx, true),
            HotStuffTimer::View(_) | HotStuffTimer::ProposeEmpty(_) => {}
        }
        self.progress(ctx);
        self.flush_forwards(ctx);
    }

    fn on_accepted(&mut self, ctx: &mut Ctx<'_, Self>, tx: Transaction) {
        // A leader waiting for something to propose has it now.
        if self.leader_of(self.view) == self.me && self.last_proposed < self.view {
            self.propose(ctx, false);
        }
        if self.forwarding.push(tx) >= self.config.forward_batch_max.min(self.config.batch.txs_max)
        {
            self.flush_forwards(ctx);
        }
    }
}

impl HotStuff {
    /// Transactions another node forwarded: into the mempool, noted as forwarded just now.
    fn on_forward(&mut self, ctx: &mut Ctx<'_, Self>, mut txs: Vec<Transaction>) {
        txs.truncate(self.config.batch.txs_max);
        let mut accepted = Vec::new();
        for tx in txs {
            match ctx.mempool().insert(tx.clone()) {
                Ok(Submitted::Accepted) => accepted.push(tx),
                Ok(Submitted::Duplicate) => {}
                Err(MempoolError::Full { .. }) => {
                    self.drop_message(HotStuffDrop::MempoolFull);
                    break;
                }
            }
        }
        self.forwarding.note(&accepted, self.view);
    }
}

impl ChainView for HotStuff {
    /// The live tree and the most recent pruned forks (so pictures show forks that lost).
    fn block_views(&self) -> Vec<BlockView> {
        let mut views: Vec<BlockView> = self
            .tree
            .entries()
            .chain(self.tree.dead_forks())
            .map(|e| BlockView::of(&e.block, e.votes, e.certified_at, e.finalized_at))
            .collect();
        views.sort_by_key(|v| (v.round, v.height, v.digest));
        views
    }
}
