//! Simplex (Benjamin Y. Chan and Rafael Pass, "Simplex Consensus: A Simple and Fast Consensus
//! Protocol", TCC 2023) as a sans-IO engine for agora.
//!
//! Simplex keeps Streamlet's shape, one vote on one block per round, but its rounds
//! (*iterations*) run at the speed of the network instead of on a clock. An iteration ends as
//! soon as its block, or its dummy block, is notarized, so on a timely network a block is
//! proposed every 2δ and final 3δ after its proposal, where δ is the real one-way delay; Δ
//! only sets the timer (3Δ) that skips an iteration whose leader is silent. A crashed leader
//! costs its iteration one timeout and one round of skip votes, not a stalled chain.
//!
//! Each of the paper's steps (§3) has its file, with the chain logic beneath them in
//! `chain.rs` and the control flow in this file's [`Protocol`] impl:
//!
//! | file | what it holds |
//! |---|---|
//! | `config.rs` | settings, the leader schedule, the weakenings the swarm must catch |
//! | `messages.rs` | signed proposals, votes, certificates and sync requests |
//! | `iteration.rs` | §3 "Propose", the iteration timer and moving to the next iteration |
//! | `vote.rs` | §3 "Vote", notarizations, skips and finalize votes |
//! | `finality.rs` | §3 "Finalize": committing, and the proofs kept to help others catch up |
//! | `chain.rs` | notarized blockchains with dummy blocks, finality, pruning |
//! | `catch_up.rs` | beyond the paper: forwarding, sync, late skips, bounded orphans |
//! | `persist.rs` | beyond the paper: what a node journals before it speaks, and its restore |
//!
//! ## The rules
//!
//! Each rule in the words of Chan and Pass (§3 of the paper unless marked), the function that
//! implements it, and the test that pins it. Scenario tests are in `tests/scenarios.rs`, the
//! chain's in `chain.rs`, persistence in `tests/persistence.rs`, and the swarm's in
//! `agora-lab`'s `tests/swarm.rs`.
//!
//! | § | rule | function | pinned by |
//! |---|---|---|---|
//! | 3 | "each iteration h has a leader L_h", chosen by a public hash (or round robin) | `config.rs` `LeaderRule::leader`; `Simplex::leader_of` | `a_crashed_leader_costs_its_iteration_one_timeout_and_the_chain_goes_on` |
//! | 3 "Propose" | the leader of h proposes a block extending a notarized blockchain of length h − 1 that it has seen | `iteration.rs` `propose`; `chain.rs` `Chain::parent_for` | `proposals_come_every_two_delta_and_finalize_three_delta_after`, `a_block_extends_a_notarized_chain_only_across_skipped_iterations` |
//! | 3 "Vote" | on seeing the first proposal of L_h for h, extending a notarized blockchain of length h − 1, a node votes for it | `vote.rs` `try_vote`; `chain.rs` `Chain::extends_notarized_chain` | `a_node_votes_once_per_iteration_and_only_on_a_notarized_chain`, `the_campaign_catches_a_simplex_vote_on_an_unnotarized_chain` |
//! | 3 | a block (or dummy block) with votes from at least 2n/3 nodes is notarized | `vote.rs` `on_vote`, `on_certified` (the shared [`VoteKeeper`]) | `the_campaign_catches_a_simplex_quorum_one_vote_short` |
//! | 3 "Timeout" | if the timer of h (3Δ) fires while in h, the node votes for the dummy block ⊥_h | `iteration.rs` `on_timeout` | `a_crashed_leader_costs_its_iteration_one_timeout_and_the_chain_goes_on` |
//! | 3 "Next iteration" | on seeing a notarized block of h, the node forwards the notarization, sends ⟨finalize, h⟩ if its timer of h has not fired, and moves to h + 1 | `vote.rs` `on_certified`; `iteration.rs` `leave_iteration` | `proposals_come_every_two_delta_and_finalize_three_delta_after`, `the_campaign_catches_a_simplex_finalize_after_a_skip` |
//! | 3 "Finalize" | on 2n/3 finalize votes of h, the node finalizes the notarized block of h and its prefix | `finality.rs` `try_finalize`; `chain.rs` `Chain::finalize` | `finality_takes_the_prefix_prunes_forks_and_refuses_a_conflict`, `proposals_come_every_two_delta_and_finalize_three_delta_after` |
//! | 3 | newly final blocks are output in log order, exactly once, with their proofs | `finality.rs` `commit_final` | `every_node_commits_the_same_log_once` |
//! | — | a node that cannot see a notarized chain up to its iteration votes, at its timeout, to skip the iterations no notarization covers (never one it sent finalize for), and asks a peer for what it misses | `catch_up.rs` `late_skips`, `ask_for_sync`; `finality.rs` `on_sync` | `a_node_cut_off_while_the_others_went_on_catches_up` |
//! | — | at each timeout a node sends again its votes of the iteration and the certificate that brought it there, so that messages lost before GST cost nothing after | `iteration.rs` `on_timeout` | `a_node_cut_off_while_the_others_went_on_catches_up` |
//! | 3 (its proof, for a node that crashes) | a vote, a skip and a finalize vote are each durable before they are sent; a restarted node never votes twice in an iteration, and never skips an iteration it sent finalize for | `vote.rs` `cast`; `persist.rs` `restore_vote` | `a_vote_is_durable_before_it_is_sent`, `a_restarted_node_keeps_its_votes_and_an_amnesiac_one_does_not` |
//! | — | dead forks, orphans, skips and hostile floods stay bounded | `chain.rs` `Chain::prune`; `catch_up.rs` `prune_orphans` | `a_million_hostile_messages_leave_state_and_memory_bounded` |
//!
//! ## Why finalize votes make it safe
//!
//! An honest node sends ⟨finalize, h⟩ only if it never voted to skip h, and after it does it
//! never will. A finalization of h holds votes of at least f + 1 honest nodes, so at most the
//! other f honest ones can vote to skip h: the dummy block of h is never notarized. Honest
//! nodes vote for one real block per iteration, so at most one real block of h is notarized.
//! Every notarized blockchain longer than h therefore holds that block at h, and the block is
//! final with its prefix. Late skips (beyond the paper, for links that lost messages before
//! GST) keep this: a node never skips an iteration it sent finalize for.
//!
//! ## Beyond the paper
//!
//! Transactions submitted to a node are forwarded in batches to the next two leaders, and
//! forwarded again only after they waited. A node that lacks a notarization or a block asks a
//! peer ([`SimplexMessage::Sync`]), who answers from its finalized blocks, kept with their
//! notarizations, and everything notarized above them. Messages for iterations far ahead are
//! dropped; every drop is counted by reason ([`SimplexStats`]).

mod catch_up;
mod chain;
mod config;
mod drop;
mod finality;
mod iteration;
mod messages;
mod persist;
mod vote;

pub use config::{LeaderRule, SimplexConfig, SimplexWeakening};
pub use drop::SimplexDrop;
pub use messages::{Proposal, SimplexMessage};

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

use crate::chain::Chain;

/// Simplex's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SimplexTimer {
    /// The timer of an iteration (3Δ after the node entered it, then again every 3Δ while it
    /// lasts).
    Timeout(u64),
    /// A leader with nothing to propose proposes an empty block now
    /// ([`SimplexConfig::empty_block_after_ns`]).
    ProposeEmpty(u64),
}

/// What a node dropped or noticed, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SimplexStats {
    /// Messages dropped, by reason.
    pub dropped: BTreeMap<&'static str, u64>,
    /// Equivocations detected (two votes of one member in one slot).
    pub equivocations: u64,
    /// Finalizations refused because they would fork the finalized log (needs > f Byzantine).
    pub conflicting_finality: u64,
    /// Votes for blocks this node cast.
    pub votes_cast: u64,
    /// Votes for dummy blocks this node cast at its timer.
    pub skips_cast: u64,
    /// Votes for dummy blocks of iterations behind its own this node cast (see `late_skips`).
    pub late_skips_cast: u64,
    /// Finalize votes this node cast.
    pub finalize_votes_cast: u64,
    /// Blocks this node proposed.
    pub proposals: u64,
    /// Times an iteration's timer fired.
    pub timeouts: u64,
    /// Sync requests this node sent.
    pub syncs_sent: u64,
    /// Messages for iterations at or below the finalized tip, ignored: the votes a quorum did
    /// not need, and certificates and proposals sent again.
    pub late: u64,
}

/// This node's own votes in one iteration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct OwnVotes {
    pub(crate) block: Option<Vote>,
    pub(crate) skip: Option<Vote>,
    pub(crate) finalize: Option<Vote>,
}

/// One Simplex node; see the crate docs.
#[derive(Debug)]
pub struct Simplex {
    config: SimplexConfig,
    committee: Committee,
    n: u16,
    me: NodeId,
    key: SecretKey,
    /// The iteration this node is in (0 before it starts).
    iteration: u64,
    /// When it entered it.
    entered_ns: u64,
    chain: Chain,
    keeper: VoteKeeper,
    /// The first validly signed proposal of each iteration's leader (only that one may get a
    /// vote).
    first_proposal: BTreeMap<u64, Digest>,
    /// Signed proposals of the blocks in the chain above the finalized tip, by digest.
    proposals: BTreeMap<Digest, Proposal>,
    orphans: BTreeMap<Digest, Vec<Proposal>>,
    orphan_count: usize,
    orphan_bytes: usize,
    /// Validly signed proposals taken, per iteration (pruned below finality).
    proposals_taken: BTreeMap<u64, usize>,
    /// This node's votes, by iteration, above the finalized tip.
    own_votes: BTreeMap<u64, OwnVotes>,
    /// The last iteration this node proposed in.
    last_proposed: u64,
    /// The certificate that moved this node into its iteration, sent again at each timeout.
    entry_certificate: Option<Certificate>,
    /// The finalization of the finalized tip, when this node has it.
    last_finalization: Option<Certificate>,
    /// A finalization whose block, or some block before it, has not arrived.
    pending_finalization: Option<Certificate>,
    finalized_txs: RecentIds,
    /// Submitted here and not yet forwarded to the next leaders, and when each pending
    /// transaction was last forwarded (bounded by `finalized_memory`).
    forwarding: Forwarding,
    /// The last finalized blocks (at most `sync_blocks_max`), by height, each with its signed
    /// proposal and its notarization, for nodes that fell behind.
    finalized_proofs: BTreeMap<Height, (Proposal, Certificate)>,
    /// When each member was last answered a SYNC (one answer per timeout each).
    synced_at: BTreeMap<NodeId, u64>,
    /// This node asks for a sync again no sooner than this.
    next_sync_ns: u64,
    /// Restored from a journal, or restarted with its memory: it asks its peers on start.
    restarted: bool,
    /// Records persisted since the last checkpoint.
    records_since_checkpoint: usize,
    /// Blocks that became final again while the journal was replayed, committed on start.
    recovered_commits: Vec<(Block, Vec<Certificate>)>,
    stats: SimplexStats,
}

impl Simplex {
    /// Node `me` of `committee`, signing with `key`; an error names the first bad setting (see
    /// [`SimplexConfig::validate`]) or a `me` outside the committee.
    pub fn new(
        config: SimplexConfig,
        committee: Committee,
        me: NodeId,
        key: SecretKey,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        ConfigError::member(&committee, me)?;
        let n = u16::try_from(committee.n()).expect("committees have at most 1024 members");
        let quorum = if config.weakened(SimplexWeakening::QuorumOneSmaller) {
            committee.notarization_quorum() - 1
        } else {
            committee.notarization_quorum()
        };
        Ok(Self {
            chain: Chain::rooted(Block::genesis(), config.history_max, config.skips_max),
            keeper: VoteKeeper::new(quorum.max(1), config.votes_max),
            config,
            committee,
            n,
            me,
            key,
            iteration: 0,
            entered_ns: 0,
            first_proposal: BTreeMap::new(),
            proposals: BTreeMap::new(),
            orphans: BTreeMap::new(),
            orphan_count: 0,
            orphan_bytes: 0,
            proposals_taken: BTreeMap::new(),
            own_votes: BTreeMap::new(),
            last_proposed: 0,
            entry_certificate: None,
            last_finalization: None,
            pending_finalization: None,
            finalized_txs: RecentIds::new(config.finalized_memory),
            forwarding: Forwarding::new(config.finalized_memory),
            finalized_proofs: BTreeMap::new(),
            synced_at: BTreeMap::new(),
            next_sync_ns: 0,
            restarted: false,
            records_since_checkpoint: 0,
            recovered_commits: Vec::new(),
            stats: SimplexStats::default(),
        })
    }

    /// The iteration this node is in.
    pub fn iteration(&self) -> u64 {
        self.iteration
    }

    /// The leader of `iteration`.
    pub fn leader_of(&self, iteration: u64) -> NodeId {
        self.config.leader.leader(self.n, Round(iteration))
    }

    /// The last finalized block.
    pub fn finalized_tip(&self) -> &Block {
        self.chain.finalized_tip()
    }

    /// Two votes of one member in one slot for different values, as this node saw them (the
    /// first records kept).
    pub fn equivocation_evidence(&self) -> &[Equivocation] {
        self.keeper.evidence()
    }

    /// Drops and events, by reason.
    pub fn stats(&self) -> &SimplexStats {
        &self.stats
    }

    fn drop_message(&mut self, reason: SimplexDrop) {
        *self.stats.dropped.entry(reason.as_str()).or_default() += 1;
    }
}

/// The statement of a vote for `block` (phase `Vote`) or of a finalize vote for it (phase
/// `Finalize`). Simplex statements carry no height (it is 0): a member votes at most once per
/// phase and iteration, whatever the height of the block, so the shared keeper's slot is the
/// iteration.
fn block_statement(phase: Phase, block: &Block) -> Statement {
    Statement { phase, round: block.round(), height: Height(0), value: block.digest() }
}

/// The statement of a vote for the dummy block of `iteration`.
fn skip_statement(iteration: u64) -> Statement {
    Statement {
        phase: Phase::Skip,
        round: Round(iteration),
        height: Height(0),
        value: Digest::ZERO,
    }
}

impl Protocol for Simplex {
    type Message = SimplexMessage;
    type Timer = SimplexTimer;

    /// A fresh node enters iteration 1. A restarted one (from its journal, or with its
    /// memory) commits what its journal showed final, arms the timer of the iteration it was
    /// in, and asks every peer for what it missed.
    fn on_start(&mut self, ctx: &mut Ctx<'_, Self>) {
        for (block, proof) in std::mem::take(&mut self.recovered_commits) {
            ctx.commit_proven(block, proof);
        }
        if self.iteration == 0 && !self.restarted {
            self.restarted = true;
            self.enter_iteration(ctx, 1);
        } else {
            self.iteration = self.iteration.max(1);
            ctx.set_timer(SimplexTimer::Timeout(self.iteration), self.config.timeout_ns());
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

    fn on_message(&mut self, ctx: &mut Ctx<'_, Self>, from: NodeId, message: SimplexMessage) {
        match message {
            SimplexMessage::Propose(p) => self.on_proposal(ctx, from, p),
            SimplexMessage::Vote(v) => self.on_vote(ctx, v),
            SimplexMessage::Certificate(c) => self.on_certificate(ctx, from, c),
            SimplexMessage::Forward(mut txs) => {
                txs.truncate(self.config.batch.txs_max);
                let mut accepted = Vec::new();
                for tx in txs {
                    match ctx.mempool().insert(tx.clone()) {
                        Ok(Submitted::Accepted) => accepted.push(tx),
                        Ok(Submitted::Duplicate) => {}
                        Err(MempoolError::Full { .. }) => {
                            self.drop_message(SimplexDrop::MempoolFull);
                            break;
                        }
                    }
                }
                // Someone forwarded these just now: no need to resend them soon.
                self.forwarding.note(&accepted, self.iteration);
            }
            SimplexMessage::Sync { finalized } => self.on_sync(ctx, from, finalized),
        }
        self.progress(ctx);
        self.flush_forwards(ctx);
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_, Self>, timer: SimplexTimer) {
        match timer {
            SimplexTimer::Timeout(h) if h == self.iteration => self.on_timeout(ctx),
            SimplexTimer::ProposeEmpty(h) if h == self.iteration => self.propose(ctx, true),
            SimplexTimer::Timeout(_) | SimplexTimer::ProposeEmpty(_) => {}
        }
        self.progress(ctx);
        self.flush_forwards(ctx);
    }

    fn on_accepted(&mut self, ctx: &mut Ctx<'_, Self>, tx: Transaction) {
        // A leader waiting for something to propose has it now.
        if self.leader_of(self.iteration) == self.me && self.last_proposed < self.iteration {
            self.propose(ctx, false);
        }
        if self.forwarding.push(tx) >= self.config.forward_batch_max.min(self.config.batch.txs_max)
        {
            self.flush_forwards(ctx);
        }
    }
}

impl ChainView for Simplex {
    /// The live chain and the most recent pruned forks (so pictures show forks that lost).
    fn block_views(&self) -> Vec<BlockView> {
        let mut views: Vec<BlockView> = self
            .chain
            .entries()
            .chain(self.chain.dead_forks())
            .map(|e| BlockView::of(&e.block, e.votes, e.notarized_at, e.finalized_at))
            .collect();
        views.sort_by_key(|v| (v.round, v.height, v.digest));
        views
    }
}
