//! Chained HotStuff (Maofan Yin, Dahlia Malkhi, Michael K. Reiter, Guy Golan Gueta and Ittai
//! Abraham, "HotStuff: BFT Consensus with Linearity and Responsiveness", PODC 2019) as a
//! sans-IO engine for agora, with a switch ([`ChainRule`]) for the two-chain commit rule of its
//! descendants (Jolteon, in Diem and Aptos; HotStuff-2).
//!
//! Every view has one leader. It proposes a block extending the block of the highest QC it
//! knows, and carries that QC. Replicas vote for it and send the vote to the *next* view's
//! leader, which gathers the QC and proposes in its turn: one proposal to all and n votes to
//! one per block, so messages grow with n (Streamlet's echo costs about n³, PBFT's and
//! Simplex's all-to-all votes about n²). On a timely network with one-way delay δ a block is
//! proposed every 2δ; the leader that gathers the QC completing a chain of three consecutive
//! views commits its first block 6δ after that block's proposal (4δ with two), and every other
//! replica δ later, when that leader's proposal carries the QC.
//!
//! | file | what it holds |
//! |---|---|
//! | `config.rs` | settings, the commit rule, the view timer and its backoff, the weakenings |
//! | `messages.rs` | proposals with their justify, votes, timeouts and timeout certificates |
//! | `vote.rs` | Algorithm 4's `onReceiveProposal`, `onReceiveVote`, `update` and `onCommit` |
//! | `view.rs` | the pacemaker: `onPropose`, the view timer, timeouts and timeout certificates |
//! | `tree.rs` | the blocks and their QCs, ancestry, commits and pruning |
//! | `sync.rs` | beyond the paper: forwarding, sync, bounded orphans |
//! | `persist.rs` | beyond the paper: what a node journals before it speaks, and its restore |
//!
//! ## The rules
//!
//! Each rule in the words of Yin et al. (Algorithms 4 and 5, §6 of the paper; the chained
//! protocol of §5), or of Jolteon (Gelashvili et al., FC 2022) for the two-chain switch, the
//! function that implements it, and the test that pins it. Scenario tests are in
//! `tests/scenarios.rs`, the rules driven by hand in `tests/vote_rule.rs`, the tree's in
//! `tree.rs`, and the swarm's in `agora-lab`'s `tests/swarm.rs`.
//!
//! | § | rule | function | pinned by |
//! |---|---|---|---|
//! | 5 | each view has a leader, chosen round robin or by a public hash | `LeaderRule::leader`; `HotStuff::leader_of` | `with_seven_members_one_crashed_leader_costs_two_views_in_either_rule` |
//! | Alg. 4 `onPropose`, Alg. 5 `onBeat` | the leader creates a leaf extending `b_leaf`, the block of `qc_high`, with `b.justify = qc_high`, and broadcasts it | `view.rs` `propose` | `three_chain_proposes_every_two_delta_and_commits_six_delta_after` |
//! | Alg. 4 `onReceiveProposal` | "if b_new.height > vheight ∧ (b_new extends b_lock ∨ b_new.justify.node.height > b_lock.height) then vheight ← b_new.height; send voteMsg to getLeader()" (the next view's) | `vote.rs` `try_vote`, `safe_to_vote`, `send_vote` | `a_node_votes_once_per_view_and_sends_its_vote_to_the_next_leader`, `three_chain_locks_on_the_two_chain_and_commits_on_three_consecutive_views`, `the_campaign_catches_a_hotstuff_vote_without_the_lock` |
//! | Alg. 4 `onReceiveVote` | n − f votes for a block form its QC, and `qc_high` rises to it | `vote.rs` `on_vote` (the shared [`VoteKeeper`]), `on_qc` | `the_campaign_catches_a_hotstuff_quorum_one_vote_short` |
//! | Alg. 4 `update` | "b'' ← b*.justify.node; b' ← b''.justify.node; b ← b'.justify.node; updateQCHigh(b*.justify); if b'.height > b_lock.height then b_lock ← b'" | `vote.rs` `on_qc`, `apply_commit_rule` | `three_chain_locks_on_the_two_chain_and_commits_on_three_consecutive_views` |
//! | Alg. 4 `update`, §5 | "if (b''.parent = b') ∧ (b'.parent = b) then onCommit(b)": a three-chain of direct parents, that is of consecutive views | `vote.rs` `apply_commit_rule` | `no_commit_without_consecutive_views`, `a_crashed_leader_in_four_under_round_robin_stops_three_chain_commits` |
//! | Alg. 4 `onCommit` | a committed block's uncommitted ancestors are executed first, in order | `vote.rs` `commit`, `commit_final`; `tree.rs` `Tree::commit` | `every_node_commits_the_same_log_once`, `commits_take_the_prefix_prune_forks_and_refuse_a_conflict` |
//! | Alg. 5 pacemaker | a replica that times out moves to the next view and tells the next leader its `qc_high` (NEW-VIEW). Here: a timeout to everyone, signed with the view of its `qc_high`; n − f of them form a timeout certificate that moves every replica to the next view and carries the highest QC (Jolteon's pacemaker; see below) | `view.rs` `on_view_timer`, `time_out`, `add_timeout`, `on_tc`, `accept_tc` | `a_crashed_leader_costs_two_views_and_the_chain_goes_on_two_chain`, `a_restarted_node_keeps_its_vote_lock_and_view_and_times_out_where_it_is` |
//! | Alg. 5 | the view timer backs off exponentially while views fail | `config.rs` `HotStuffConfig::timeout_ns`; `view.rs` `current_timeout_ns` | `a_crashed_leader_costs_two_views_and_the_chain_goes_on_two_chain` (3Δ, then 3Δ again for the second stalled view) |
//! | Jolteon §4 | two-chain: lock on the highest QC; commit b when a QC certifies its child of the next view; vote in view r only for a block whose QC is of r − 1, or, with a timeout certificate of r − 1, whose QC is at least as high as every QC that certificate's signers reported | `vote.rs` `safe_to_vote`, `apply_commit_rule` | `two_chain_commits_on_two_consecutive_views_and_votes_after_a_timeout_only_above_the_tc`, `two_chain_proposes_every_two_delta_and_commits_four_delta_after`, `the_campaign_catches_a_hotstuff_two_chain_commit_with_the_three_chain_lock` |
//! | Jolteon §4 | a replica that times out of a view votes in it no more | `view.rs` `time_out` (`last_voted`) | `a_vote_and_a_timeout_are_durable_before_they_leave` |
//! | the proofs, for a node that crashes | a vote, a timeout, a raised lock or `qc_high`, and a leader's proposal are durable before what depends on them leaves | `persist.rs`; `vote.rs` `try_vote`; `view.rs` `time_out`, `propose` | `a_vote_and_a_timeout_are_durable_before_they_leave`, `a_restarted_node_keeps_its_vote_lock_and_view_and_times_out_where_it_is` |
//! | — | f + 1 timeouts of a node's view make it time out too (from DiemBFT), so views stay in step | `view.rs` `add_timeout` | `a_crashed_leader_costs_two_views_and_the_chain_goes_on_two_chain` |
//! | — | hostile floods leave state unchanged and memory bounded | `vote.rs` `on_proposal`; `view.rs` `on_timeout_message`, `verify_tc`; `sync.rs` `prune_orphans` | `a_million_hostile_messages_leave_state_and_memory_bounded` |
//!
//! ## Timeout certificates rather than NEW-VIEW, and why
//!
//! The paper's pacemaker sends NEW-VIEW with `qc_high` to the next leader only, and leaves
//! keeping replicas in the same view to timers that back off. agora uses Jolteon's timeout
//! certificates instead, for two reasons. A timeout certificate moves every honest replica to
//! the next view within δ of the last timeout after GST, however far apart their timers
//! were, where NEW-VIEW leaves each replica on its own timer. And the two-chain rule needs
//! one: a vote after a failed view must know the highest QC a quorum reported, which is what a
//! certificate of signed timeouts, each naming its signer's `qc_high` view, proves. The cost
//! is a quadratic view change (every replica sends its timeout to every other) where
//! NEW-VIEW is linear; the steady state stays linear. A timeout certificate also carries the
//! highest QC its signers reported, so the next leader always extends it.
//!
//! ## Why the two-chain rule is safe, and what it costs
//!
//! Say block b of view r is committed: a QC certifies b′, its child of view r + 1. The QC of
//! b′ holds votes of 2f + 1 replicas, f + 1 of them honest, and each of those saw b's QC
//! (b′'s justify) before voting, so each holds a `qc_high` of view ≥ r from then on; and none
//! of them had timed out of view r + 1 before voting in it (a replica that timed out of a view
//! never votes in it), so every timeout any of them signs for a view above r reports a QC of
//! view ≥ r. Any block certified in a view above r + 1
//! has a QC of the view before it, or a timeout certificate of that view; that certificate's
//! 2f + 1 signers include one of those f + 1 honest replicas, whose timeout reported a QC of
//! view ≥ r, so the block's QC is of view ≥ r. By induction on the view, every QC of view ≥ r
//! certifies b or a descendant of it (a view has at most one certified block: honest replicas
//! vote once per view), and no block conflicting with b is ever certified, let alone
//! committed.
//!
//! What it costs: a two-chain commit needs two consecutive certified views, that is three
//! live leaders in a row (the third gathers the second's QC); the three-chain needs four. So
//! two chains commit 2δ sooner on a healthy network (4δ instead of 6δ), and far more often
//! when leaders are down: with one member in four crashed under round robin, the three-chain
//! rule never commits (`a_crashed_leader_in_four_under_round_robin_stops_three_chain_commits`).
//! The price is paid in view changes: a vote after a failed view is allowed only above the
//! timeout certificate's highest QC, so a view change must gather signed timeouts from a
//! quorum (the quadratic step above), where three-chain HotStuff's safe-node rule would let
//! a replica vote on its lock alone.
//!
//! The swarm keeps three mutants, and catches each (see the table). The third, two-chain
//! commits with the three-chain lock and safe-node vote, needs a Byzantine leader: honest
//! leaders always extend the highest QC, so only a stale proposal tempts it. The netsim
//! adversary `stale-fork` is that leader. It tells one member its block, whose QC lets that
//! member commit the grandparent under two chains, and holds the others' copy until their
//! timeouts of the view before reach it; then it tells them a block beside the grandparent,
//! with a timeout certificate made of their timeouts. Their three-chain lock (on the
//! grandparent's parent) lets them vote for it, and the stale branch is certified and
//! committed beside the committed grandparent. Jolteon's vote rule refuses it: its QC is
//! below the highest QC the certificate's signers reported.
//!
//! ## Beyond the paper
//!
//! Transactions submitted to a node are forwarded in batches to the next two leaders, and
//! forwarded again only after they waited. At each timer a node sends again its timeout, its
//! vote of the view and the certificate that brought it there. A node that lacks a block asks
//! a peer ([`HotStuffMessage::Sync`]), who answers with its last finalized blocks and every
//! block above them, each with its QC. Messages for views far ahead are dropped unless they
//! carry a certificate that verifies; every drop is counted by reason ([`HotStuffStats`]).

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
